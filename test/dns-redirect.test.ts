// Programs with their own resolver find ax names (issue 7): the hook sends an
// app's DNS traffic for its resolv.conf servers to the daemon's responder, so
// dig (bind9's own resolver), node's dns.resolve (c-ares) and a TCP query reach
// it with no resolv.conf edit and no port 53 privilege. Names are answered the
// same whichever way a program asks (getaddrinfo through the hook, or DNS on
// the wire). Each client runs in a mount namespace whose /etc/resolv.conf
// names an unroutable server (192.0.2.53): an answer can only come from ax.
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AX, run, start, TestDaemon } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'ax-dnsr-'));
chmodSync(work, 0o755);
const resolv = join(work, 'resolv.conf');
writeFileSync(resolv, 'nameserver 192.0.2.53\noptions timeout:2 attempts:1\n');
chmodSync(resolv, 0o644);

/** CMD under `ax run`, in a mount namespace with our resolv.conf. */
function axClient(d: TestDaemon, cmd: string[]) {
  return run('unshare', ['-m', 'sh', '-c', `mount --bind ${resolv} /etc/resolv.conf && exec "$@"`, 'sh', process.execPath, AX, 'run', '--socket', d.socket, '--no-start', '--', ...cmd], {
    timeoutMs: 20_000,
  });
}

t.test('dig, node dns.resolve4 and getaddrinfo find ax names through the redirect, and agree', async (t) => {
  // an upstream for names that are not ax's
  const upPort = 25400 + (process.pid % 500); // test files run side by side in one namespace
  const up = start('/usr/sbin/dnsmasq', ['--no-daemon', `--port=${upPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--address=/example.test/192.0.2.7'], {}, t);
  await up.waitFor(/started/);
  const d = await TestDaemon.start(t, ['--dns-upstream', `127.0.0.1:${upPort}`]);
  d.run(['--name', 'web', '--ip', '10.6.0.10'], ['/usr/bin/python3', '-m', 'http.server', '80']);
  await d.until('web', async () => (await d.get('services')).some((s) => s.name === 'web'));

  for (const q of ['web', 'web.ax']) {
    const r = await axClient(d, ['dig', '+short', q]);
    t.equal(r.stdout.trim(), '10.6.0.10', `dig ${q} (UDP): ${r.stderr}`);
  }
  const tcp = await axClient(d, ['dig', '+short', '+tcp', 'web']);
  t.equal(tcp.stdout.trim(), '10.6.0.10', `dig +tcp web: ${tcp.stderr}`);
  const ptr = await axClient(d, ['dig', '+short', '-x', '10.6.0.10']);
  t.match(ptr.stdout.trim(), /^web\.ax\.$/, 'PTR of the VIP');
  const fwd = await axClient(d, ['dig', '+short', 'example.test']);
  t.equal(fwd.stdout.trim(), '192.0.2.7', 'a name that is not ax is forwarded upstream');
  const none = await axClient(d, ['dig', 'nosuchname.test']);
  t.match(none.stdout, /status: (NXDOMAIN|REFUSED|SERVFAIL)/, 'an unknown name gets a DNS error, not a hang');

  const node = await axClient(d, [
    process.execPath,
    '-e',
    `const dns = require('dns');
     dns.resolve4('web', (e, a) => {
       if (e) { console.log('resolve4 error', e.code); process.exit(1); }
       dns.lookup('web', { family: 4 }, (e2, b) => { console.log('resolve4', a.join(','), 'lookup', e2 ? e2.code : b); });
     });`,
  ]);
  t.equal(node.code, 0, node.stderr);
  t.equal(node.stdout.trim(), 'resolve4 10.6.0.10 lookup 10.6.0.10', 'c-ares on the wire and getaddrinfo through the hook agree');

  const py = await axClient(d, ['/usr/bin/python3', '-c', "import socket; print(socket.gethostbyname('web'))"]);
  t.equal(py.stdout.trim(), '10.6.0.10');

  // without ax the same dig finds nothing (the resolv.conf server does not exist)
  const native = await run('unshare', ['-m', 'sh', '-c', `mount --bind ${resolv} /etc/resolv.conf && exec dig +short +time=1 +tries=1 web`], { timeoutMs: 10_000 });
  t.notMatch(native.stdout, /10\.6\.0\.10/, 'natively the name does not resolve');
});

t.test('with the responder off, DNS traffic is left alone', { skip: !existsSync('/usr/sbin/dnsmasq') && 'dnsmasq missing' }, async (t) => {
  const d = await TestDaemon.start(t, ['--dns-listen', 'off']);
  d.run(['--name', 'web', '--ip', '10.6.0.11'], ['/usr/bin/python3', '-m', 'http.server', '80']);
  await d.until('web', async () => (await d.get('services')).some((s) => s.name === 'web'));
  const r = await axClient(d, ['dig', '+short', '+time=1', '+tries=1', 'web']);
  t.notMatch(r.stdout, /10\.6\.0\.11/, 'dig asks the real (unreachable) server');
  const py = await axClient(d, ['/usr/bin/python3', '-c', "import socket; print(socket.gethostbyname('web'))"]);
  t.equal(py.stdout.trim(), '10.6.0.11', 'getaddrinfo still resolves through the hook');
});

t.test("getaddrinfo: a hidden name and an unregistered NAME.ax are no such name (EAI_NONAME) at once; the system's resolver is never asked", async (t) => {
  // glibc's resolver sends its queries through libc-internal calls the hook cannot see, so
  // these must be answered by the hook: with the resolv.conf server unroutable, asking it
  // would give EAI_AGAIN ("temporary failure"), not EAI_NONAME.
  const d = await TestDaemon.start(t);
  d.run(['--name', 'secret', '--ip', '10.6.0.20', '--labels', 'team=b'], ['/usr/bin/python3', '-m', 'http.server', '80']);
  await d.until('secret', async () => (await d.get('services')).some((s) => s.name === 'secret'));
  t.equal((await d.ax(['policy', 'add', 'hide', 'deny', '--from', 'team=a', '--to', 'ax.name=secret'])).code, 0);
  const gai = `
import socket, sys
for n in sys.argv[1:]:
    try:
        print(n, socket.getaddrinfo(n, 80, socket.AF_INET)[0][4][0])
    except socket.gaierror as e:
        print(n, 'gaierror', e.errno)
    try:
        print(n, 'gethostbyname', socket.gethostbyname(n))
    except socket.gaierror as e:
        print(n, 'gethostbyname gaierror', e.errno)
`;
  const asA = await run('unshare', ['-m', 'sh', '-c', `mount --bind ${resolv} /etc/resolv.conf && exec "$@"`, 'sh', process.execPath, AX, 'run', '--socket', d.socket, '--no-start', '--labels', 'team=a', '--',
    '/usr/bin/python3', '-c', gai, 'secret', 'secret.ax', 'nosuch.ax', 'other.example'], { timeoutMs: 20_000 });
  t.match(asA.stdout, /^secret gaierror -2$/m, `hidden from team=a: EAI_NONAME (${asA.stdout})`);
  t.match(asA.stdout, /^secret\.ax gaierror -2$/m);
  t.match(asA.stdout, /^secret gethostbyname gaierror -2$|^secret gethostbyname gaierror 1$/m, 'gethostbyname: host not found');
  t.match(asA.stdout, /^nosuch\.ax gaierror -2$/m, 'an unregistered NAME.ax: EAI_NONAME');
  t.match(asA.stdout, /^other\.example gaierror -3$/m, 'a name outside ax still goes to the system resolver (unroutable here: EAI_AGAIN)');
  const asB = await axClient(d, ['/usr/bin/python3', '-c', gai, 'secret']);
  t.match(asB.stdout, /^secret 10\.6\.0\.20$/m, 'an app the rule does not deny resolves it');
});
