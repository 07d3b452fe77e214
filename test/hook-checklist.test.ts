// The hook checklist (../shared/notes/hook-checklist.md) with small C programs
// (test/c/), each run natively against 127.0.0.1 and under ax against a virtual
// name and IP: non-blocking connect with epoll registered before connect, dup2
// onto a socket, fork then connect in the child, the getaddrinfo hint matrix,
// getpeername truncation, close_range, threads, and an IPv6 listener.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cbin as bin, clean, run, start, TestDaemon } from './helpers';

t.test('checklist programs natively and under ax', async (t) => {
  const d = await TestDaemon.start(t);
  const nat = start(bin('echoserver'), ['127.0.0.1', '0'], {}, t);
  const natPort = (await nat.waitFor(/listening ip=\S+ port=(\d+)/))[1];
  const srv = d.run(['--name', 'echo', '--ip', '10.2.0.1'], [bin('echoserver'), '0.0.0.0', '7']);
  await srv.waitFor(/listening ip=0\.0\.0\.0 port=7\b/);

  for (const prog of ['nbconnect', 'dup2', 'forkconnect', 'peername', 'closerange', 'threads']) {
    clean(t, `${prog} native`, await run(bin(prog), ['127.0.0.1', natPort]));
    clean(t, `${prog} ax by name`, await d.run(['--ip', '10.2.0.9'], [bin(prog), 'echo', '7']).result(30_000));
    clean(t, `${prog} ax by VIP`, await d.run([], [bin(prog), '10.2.0.1', '7']).result(30_000));
  }
  // The server saw the ax clients with their virtual IPs (client IP preservation).
  t.match(srv.stdout, /peer=10\.2\.0\.9:\d+/, 'server sees the client VIP');
  t.notMatch(srv.stdout, /peer=127\./, 'never the real loopback address');
  // getpeername through ax shows the virtual service address.
  const pn = await d.run([], [bin('peername'), 'echo', '7']).result();
  t.match(pn.stdout, /10\.2\.0\.1:7/, 'peer is the VIP');
});

t.test('non-blocking connect: refused at once by an app that is up, held until a starting app listens', async (t) => {
  const d = await TestDaemon.start(t);
  const closed = start(bin('echoserver'), ['127.0.0.1', '0'], {}, t);
  const port = (await closed.waitFor(/port=(\d+)/))[1];
  closed.kill('SIGKILL');
  await closed.exited;
  clean(t, 'native refused', await run(bin('nbconnect'), ['127.0.0.1', port, 'refused']));
  // An app that is up (listens on 7): a closed port refuses at once, as the kernel does.
  const up = d.run(['--name', 'up'], [bin('echoserver'), '0.0.0.0', '7']);
  await up.waitFor(/listening/);
  clean(t, 'ax refused', await d.run([], [bin('nbconnect'), 'up', '80', 'refused']).result());
  // Start in any order: a non-blocking client (nbconnect: EINPROGRESS, epoll, SO_ERROR) started before
  // its server connects, and is served once the server listens.
  const early = d.run(['--name', 'late', '--ip', '10.2.0.3'], ['sh', '-c', `sleep 1; exec ${bin('echoserver')} 0.0.0.0 7`]);
  await d.until('late registered', async () => (await d.get('apps')).some((a) => a.name === 'late'));
  const client = await d.run(['--ip', '10.2.0.4'], [bin('nbconnect'), 'late', '7']).result(20_000);
  clean(t, 'a non-blocking connect before the server listens is served when it does', client);
  await early.waitFor(/peer=10\.2\.0\.4:\d+/);
  t.pass('the late server accepted the early client, and saw its VIP');
  // curl (non-blocking connects) before python's http.server is up
  const www = mkdtempSync(join(tmpdir(), 'ax-late-'));
  chmodSync(www, 0o755);
  writeFileSync(join(www, 'index.html'), 'late page\n');
  const web = d.run(['--name', 'lateweb'], ['sh', '-c', 'sleep 1; exec python3 -m http.server 80'], { cwd: www });
  await d.until('lateweb registered', async () => (await d.get('apps')).some((a) => a.name === 'lateweb'));
  const curl = await d.run([], ['curl', '-sS', '--max-time', '10', 'http://lateweb/']).result(20_000);
  t.equal(curl.stdout, 'late page\n', `curl started before the server got the page (${curl.stderr.trim()})`);
  web.kill();
  early.kill();
  up.kill();
});

t.test('getaddrinfo hint matrix: ax names behave like a real name', async (t) => {
  const d = await TestDaemon.start(t);
  const app = d.run(['--name', 'named', '--ip', '10.4.0.1'], ['sleep', '60']);
  await d.until('named registered', async () => (await d.get('apps')).some((a) => a.name === 'named'));
  const parse = (s: string) => Object.fromEntries(s.trim().split('\n').map((l) => [l.split('=')[0], l.slice(l.indexOf('=') + 1)]));
  // The native reference, in a namespace with only loopback, as the suite's own is when alone: the
  // multi-host tests add addressed bridges to the suite's namespace while they run, and then glibc's
  // AI_ADDRCONFIG asks the (unreachable) DNS server for localhost and answers EAI_AGAIN.
  const native = parse((await run('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec ${bin('gai')} localhost 80`])).stdout);
  const ax = parse((await d.run([], [bin('gai'), 'named', '80']).result()).stdout);
  const axDot = parse((await d.run([], [bin('gai'), 'named.ax', '80']).result()).stdout);
  t.equal(ax.inet, '0 10.4.0.1:80');
  t.equal(ax.unspec, '0 10.4.0.1:80');
  t.equal(ax.null_hints, '0 10.4.0.1:80');
  t.equal(ax.inet6_v4mapped, '0 [::ffff:10.4.0.1]:80');
  t.equal(ax.canonname_value, 'named');
  t.equal(axDot.inet, '0 10.4.0.1:80', 'NAME.ax resolves too');
  t.equal(ax.gethostbyname, 'named 10.4.0.1');
  t.equal(ax.gethostbyname_r_small, 'ERANGE', 'reentrant variant reports ERANGE on a small buffer');
  t.equal(ax.gethostbyname_r, '10.4.0.1');
  t.match(ax.getnameinfo, /^0 named http$/, 'reverse lookup of the VIP');
  // Everything that does not depend on the name's address behaves as for a real name.
  for (const k of ['numerichost', 'addrconfig', 'canonname', 'passive_null', 'nonpassive_null', 'service_http', 'bad_service', 'getnameinfo_numeric', 'getnameinfo_short', 'gethostbyname2_r']) {
    t.equal((ax[k] ?? '').split(' ')[0], (native[k] ?? '').split(' ')[0], `${k}: same result code as native (${ax[k]} / ${native[k]})`);
  }
  // Names that are not ax names resolve as before (localhost through /etc/hosts).
  const other = parse((await d.run([], [bin('gai'), 'localhost', '80']).result()).stdout);
  t.equal(other.inet, native.inet, 'localhost unchanged under ax');
  app.kill();
});

t.test('IPv6: [::] listener reached by IPv4 and IPv6 clients; IPv6 client sockets', async (t) => {
  const d = await TestDaemon.start(t);
  const six = d.run(['--name', 'six'], [bin('v6listen'), '80', '3']);
  await six.waitFor(/listening port=80\b/);
  clean(t, 'ipv4 client by name', await d.run(['--ip', '10.6.0.2'], [bin('nbconnect'), 'six', '80']).result());
  const py = await d.run(['--ip', '10.6.0.3'], [
    'python3',
    '-c',
    `
import socket
vip = socket.getaddrinfo("six", 80, socket.AF_INET)[0][4][0]
s = socket.socket(socket.AF_INET6)
s.connect(("::ffff:" + vip, 80))
s.sendall(b"v6 hello\\n")
print("reply", s.recv(100).decode().strip())
print("peer", s.getpeername()[0])
`,
  ]).result();
  t.equal(py.code, 0, py.stderr);
  t.match(py.stdout, /reply v6 hello/);
  t.match(py.stdout, /peer ::ffff:10\.240\.\d+\.\d+/, 'IPv6 client sees the v4-mapped VIP');
  // A native client straight to the host port (not virtual): seen with its real address.
  const svc = (await d.get('services'))[0];
  clean(t, 'native client to the host port', await run(bin('nbconnect'), ['127.0.0.1', String(svc.host_port)]));
  const r = await six.result();
  t.equal(r.code, 0);
  t.match(r.stdout, /peer=\[?::ffff:10\.6\.0\.2\]?:\d+/, 'IPv4 ax client seen as its v4-mapped VIP');
  t.match(r.stdout, /peer=\[?::ffff:10\.6\.0\.3\]?:\d+/, 'IPv6 ax client seen as its VIP');
  t.match(r.stdout, /peer=\[?::ffff:127\.0\.0\.1\]?:\d+/, 'native client seen as itself');
});

t.test('fail closed when the daemon is gone; --fail-open passes through', async (t) => {
  const d = await TestDaemon.start(t);
  const nat = start(bin('echoserver'), ['127.0.0.1', '0'], {}, t);
  const port = (await nat.waitFor(/port=(\d+)/))[1];
  const prog = `
import socket, time, errno, sys
sys.stdin.readline()
for host in ["10.9.9.9", "127.0.0.1"]:
    try:
        s = socket.create_connection((host, ${port}), timeout=3); print(host, "connected")
    except OSError as e:
        print(host, errno.errorcode.get(e.errno, e.errno) if e.errno else type(e).__name__)
`;
  const closed = d.run([], ['python3', '-c', prog], { stdio: ['pipe', 'pipe', 'pipe'] });
  const open = d.run(['--fail-open'], ['python3', '-c', prog], { stdio: ['pipe', 'pipe', 'pipe'] });
  await d.until('apps registered', async () => (await d.get('apps')).length === 2);
  await d.stop();
  closed.child.stdin!.write('go\n');
  open.child.stdin!.write('go\n');
  const rc = await closed.result();
  const ro = await open.result();
  t.match(rc.stdout, /10\.9\.9\.9 ECONNREFUSED/, 'fail closed: a legal errno, no hang');
  t.match(rc.stdout, /127\.0\.0\.1 connected/, 'loopback needs no daemon');
  t.notMatch(ro.stdout, /10\.9\.9\.9 ECONNREFUSED/, 'fail open: passed through to the (empty) network');
  t.match(ro.stdout, /127\.0\.0\.1 connected/);
});
