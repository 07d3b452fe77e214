// UDP egress rules (issue 10): with a `cidr` rule in force, a datagram an app under ax
// sends to a real destination is judged (once per destination until the table or the
// rules change); denied, it is not sent and the call fails with EPERM, what a netfilter
// OUTPUT drop gives the same program natively (compared with an nft rule in the test's
// own network namespace). Connected UDP: the connect itself fails. DNS the hook
// redirects to the daemon's responder is not egress.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AX, cbin, have, run, start, TestDaemon } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'ax-udpeg-'));
chmodSync(work, 0o755);

/** Sends one datagram each with sendto, sendmsg and connect+send; prints "<how> sent|<errno>". */
const CLIENT = `
import socket, sys, errno
h, p = sys.argv[1], int(sys.argv[2])
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for what, fn in [('sendto', lambda: s.sendto(b'sendto\\n', (h, p))), ('sendmsg', lambda: s.sendmsg([b'sendmsg\\n'], [], 0, (h, p)))]:
    try:
        fn(); print(what, 'sent', flush=True)
    except OSError as e:
        print(what, name(e), flush=True)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    c.connect((h, p)); c.send(b'connected\\n'); print('connect+send sent', flush=True)
except OSError as e:
    print('connect+send', name(e), flush=True)
`;
/** A native UDP listener on 127.0.0.5 (port 0 = any): prints its port, then every datagram. */
const LISTENER = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.5', 0))
print('port', s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(100); print('got', d.decode().strip(), flush=True)
`;

interface Ev {
  op: string;
  verdict: string;
  rule: string;
  dst: { addr: string };
  detail?: string;
}

t.test('udp egress: allowed, denied (EPERM as natively under netfilter), cached per destination, protocol-scoped', { skip: !have('nft') && 'no nft' }, async (t) => {
  const d = await TestDaemon.start(t);
  const lis = start('python3', ['-u', '-c', LISTENER], {}, t);
  const port = Number((await lis.waitFor(/port (\d+)/))[1]);
  const ax = async () => (await d.run([], ['python3', '-u', '-c', CLIENT, '127.0.0.5', String(port)]).result()).stdout;
  const events = async (): Promise<Ev[]> => {
    const r = await d.ax(['events', '-o', 'json']);
    return (JSON.parse(r.stdout) as { events: Ev[] }).events.filter((e) => e.dst.addr === `127.0.0.5:${port}`);
  };

  t.equal(await ax(), 'sendto sent\nsendmsg sent\nconnect+send sent\n', 'no egress rule: every datagram leaves');
  await lis.waitFor(/got connected/);
  t.equal((await events()).length, 0, 'no egress rule: the daemon is not asked');

  t.equal((await d.ax(['policy', 'add', 'no5', 'deny', '--cidr', '127.0.0.5/32', '--protocol', 'udp'])).code, 0);
  const denied = await ax();
  t.equal(denied, 'sendto EPERM\nsendmsg EPERM\nconnect+send EPERM\n', 'denied: EPERM on every way of sending');
  const evs = await events();
  t.equal(evs.length, 1, 'three sends from one process to one destination: the daemon was asked once');
  t.match(evs[0], { op: 'connect', verdict: 'deny', rule: 'no5', detail: 'udp' });
  // natively, a netfilter OUTPUT drop of the same destination
  const nft = (args: string) => run('nft', args.split(' '));
  t.equal((await nft('add table inet axudpeg')).code, 0);
  t.teardown(() => nft('delete table inet axudpeg'));
  await run('nft', ['add', 'chain', 'inet', 'axudpeg', 'out', '{ type filter hook output priority 0 ; }']);
  await nft(`add rule inet axudpeg out ip daddr 127.0.0.5 udp dport ${port} drop`);
  const native = await run('python3', ['-u', '-c', CLIENT, '127.0.0.5', String(port)]);
  t.equal(native.stdout, denied, `the same program natively under a netfilter drop prints the same (${native.stdout.trim().replace(/\n/g, ' | ')})`);
  // sendmmsg (a C program batching three datagrams)
  const mmAx = (await d.run([], [cbin('udpmmsg'), '127.0.0.5', String(port), '3']).result()).stdout;
  const mmNative = (await run(cbin('udpmmsg'), ['127.0.0.5', String(port), '3'])).stdout;
  t.equal(mmAx, 'fail sendmmsg sent=-1 errno=1\n', 'sendmmsg denied: EPERM (1), nothing sent');
  t.equal(mmNative, mmAx, 'natively under the netfilter drop: the same');
  await nft('delete table inet axudpeg');
  t.notMatch(lis.stdout.split('got connected')[1] ?? '', /got/, 'the listener received nothing while denied');

  // a TCP-only rule does not touch datagrams; the change applies at the next send
  t.equal((await d.ax(['policy', 'add', 'no5', 'deny', '--cidr', '127.0.0.5/32', '--protocol', 'tcp'])).code, 0);
  t.equal(await ax(), 'sendto sent\nsendmsg sent\nconnect+send sent\n', 'a tcp rule: datagrams leave');
  // a rule without protocol applies to UDP too
  t.equal((await d.ax(['policy', 'add', 'no5', 'deny', '--cidr', '127.0.0.0/8'])).code, 0);
  t.equal(await ax(), 'sendto EPERM\nsendmsg EPERM\nconnect+send EPERM\n', 'a rule without protocol: denied');
  t.equal((await d.ax(['policy', 'add', 'ok5', 'allow', '--cidr', '127.0.0.5'])).code, 0);
  t.equal(await ax(), 'sendto EPERM\nsendmsg EPERM\nconnect+send EPERM\n', 'deny wins over an allow');
  t.equal((await d.ax(['policy', 'rm', 'no5'])).code, 0);
  t.equal(await ax(), 'sendto sent\nsendmsg sent\nconnect+send sent\n', 'deny removed: sent again');
  lis.kill();
});

t.test('DNS the hook redirects to the responder is not egress', { skip: !have('dig') && 'no dig' }, async (t) => {
  const resolv = join(work, 'resolv.conf');
  writeFileSync(resolv, 'nameserver 192.0.2.53\noptions timeout:2 attempts:1\n');
  chmodSync(resolv, 0o644);
  const d = await TestDaemon.start(t);
  d.run(['--name', 'web', '--ip', '10.6.1.10'], ['/usr/bin/python3', '-m', 'http.server', '80']);
  await d.until('web', async () => (await d.get('services')).some((s) => s.name === 'web'));
  t.equal((await d.ax(['policy', 'add', 'noudp', 'deny', '--cidr', '0.0.0.0/0', '--protocol', 'udp'])).code, 0);
  const dig = (server: string[]) =>
    run('unshare', ['-m', 'sh', '-c', `mount --bind ${resolv} /etc/resolv.conf && exec "$@"`, 'sh', process.execPath, AX, 'run', '--socket', d.socket, '--no-start', '--', 'dig', '+short', '+tries=1', '+time=2', ...server, 'web'], { timeoutMs: 20_000 });
  const r = await dig([]);
  t.equal(r.stdout.trim(), '10.6.1.10', `dig web through the redirect answers under a deny-all udp egress rule (${r.stderr.trim()})`);
  const direct = await dig(['@127.0.0.9']);
  t.match(direct.stdout + direct.stderr, /not permitted|EPERM|failed|timed out|no servers/i, `a DNS server that is not resolv.conf's is egress and refused (${(direct.stdout + direct.stderr).trim()})`);
});
