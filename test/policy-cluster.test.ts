// Policy across hosts: network namespaces joined by a bridge (test/netns.ts),
// one daemon each. A rule added on one host is enforced on the others, cuts live
// connections there, and a name's owner uid holds across hosts.
import t from 'tap';
import { AX, run } from './helpers';
import { Bridge, type NsHost, until } from './netns';

const SERVER = `
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7000)); s.listen(64)
print('listening', flush=True)
def serve(c):
    while True:
        d = c.recv(100)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
const CLIENT = `
import socket, sys, errno
t = sys.argv[1]; h, p = t.rsplit(':', 1)
try:
    s = socket.create_connection((h, int(p)), timeout=5); s.sendall(b'ping'); print('ok' if s.recv(10) == b'ping' else 'bad')
except socket.gaierror: print('noname')
except OSError as e: print(errno.errorcode.get(e.errno, str(e.errno)))
`;
const HOLD = `
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
s.settimeout(None)
s.sendall(b'ping\\n'); print('got', s.recv(100).decode().strip(), flush=True)
try:
    while True:
        s.sendall(b'x'); d = s.recv(100)
        if not d: print('closed', flush=True); break
        time.sleep(0.05)
except OSError as e:
    print('cut', e.__class__.__name__, flush=True)
`;

t.test('policy on three hosts: added on a, enforced on c against a service on b; live connections cut; owners hold', async (t) => {
  const net = new Bridge('p', '10.98.0');
  t.teardown(() => net.destroy());
  const [a, b, c] = [net.host(1, 'a'), net.host(2, 'b'), net.host(3, 'c')];
  await a.startDaemon();
  await Promise.all([b.startDaemon(['--join', a.ip]), c.startDaemon(['--join', a.ip])]);
  await until('three alive members everywhere', async () => {
    for (const h of [a, b, c]) if ((await h.get('members')).filter((x) => x.state === 'alive').length !== 3) return false;
    return true;
  });
  const srv = b.run(['--name', 'echo', '--labels', 'team=blue'], ['python3', '-u', '-c', SERVER]);
  await srv.waitFor(/listening/);
  await until('echo visible on c', async () => (await c.get('services')).some((s) => s.name === 'echo'));
  const probe = async (h: NsHost, labels: string) => (await h.run(['--labels', labels], ['python3', '-c', CLIENT, 'echo:7000']).result()).stdout.trim();
  t.equal(await probe(c, 'team=blue,role=batch'), 'ok', 'before the rule: c -> echo on b works');
  const hold = c.run(['--labels', 'team=blue,role=batch'], ['python3', '-u', '-c', HOLD, 'echo']);
  await hold.waitFor(/got ping/);

  // The rule is added on a; c (client host) enforces it for a service on b.
  const add = await a.ax(['policy', 'add', 'no-batch', 'deny', '--from', 'role=batch', '--to', 'ax.name=echo']);
  t.equal(add.code, 0, `policy add on a (${add.stderr})`);
  await until('rule replicated to c', async () => (await c.ax(['policy', 'ls', '-o', 'json'])).stdout.includes('no-batch'));
  await hold.waitFor(/cut|closed/, 15_000);
  t.match(hold.stdout, /cut \w+Error|closed/, 'the live connection c -> b was cut on c');
  t.equal(await probe(c, 'team=blue,role=batch'), 'noname', 'denied on c: the name does not resolve');
  t.equal(await probe(c, 'team=blue'), 'ok', 'other clients on c unaffected');
  t.match(String((await b.ax(['policy', 'ls'])).stdout), /no-batch\s+deny connect from "role=batch" to "ax.name=echo"\s+a/, 'b lists the rule (origin a)');

  // Removed on b: allowed again on c.
  t.equal((await b.ax(['policy', 'rm', 'no-batch'])).code, 0);
  await until('removal replicated to c', async () => !(await c.ax(['policy', 'ls', '-o', 'json'])).stdout.includes('no-batch'));
  t.equal(await probe(c, 'team=blue,role=batch'), 'ok', 'removal replicated: allowed again');

  // The name "echo" belongs to root (its first publisher, on b): nobody on c cannot join its pool.
  const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/'];
  const foreign = await run('ip', ['netns', 'exec', c.ns, ...NOBODY, process.execPath, AX, 'run', '--socket', c.socket, '--no-start', '--name', 'echo', '--', 'true']);
  t.equal(foreign.code, 1, 'a foreign uid on another host is refused');
  t.match(foreign.stderr, /name "echo" belongs to uid 0 \(root on b\); uid 65534 \(nobody\) cannot join its pool/);
});

t.test('accept filtering across hosts: a client under ax on another member is an ax peer; a host outside the cluster is reset', async (t) => {
  const net = new Bridge('p', '10.98.0');
  t.teardown(() => net.destroy());
  const [a, b, outside] = [net.host(4, 'a'), net.host(5, 'b'), net.host(6, 'outside')]; // outside: no daemon
  await a.startDaemon();
  await b.startDaemon(['--join', a.ip, '--policy-unknown-peers', 'deny']);
  await until('two alive members', async () => (await b.get('members')).filter((x) => x.state === 'alive').length === 2);
  const srv = b.run(['--name', 'echo'], ['python3', '-u', '-c', SERVER]);
  await srv.waitFor(/listening/);
  await until('echo visible on a', async () => (await a.get('services')).some((s) => s.name === 'echo'));
  const hostPort = (await b.get('services')).find((s) => s.name === 'echo')!.host_port as number;
  const viaAx = (await a.run([], ['python3', '-c', CLIENT, 'echo:7000']).result()).stdout.trim();
  t.equal(viaAx, 'ok', 'a client under ax on member a reaches echo on b (an ax peer: judged at its own connect)');
  const native = await run('ip', ['netns', 'exec', outside.ns, 'python3', '-c', CLIENT, `${b.ip}:${hostPort}`]);
  t.match(native.stdout.trim(), /^(ECONNRESET|bad|EPIPE)$/, `a native client from ${outside.ip} (no member) is reset (${native.stdout.trim()})`);
  const ev = JSON.parse((await b.ax(['events', '-o', 'json'])).stdout) as { events: Array<{ op: string; verdict: string; src: { name: string } }> };
  const acc = ev.events.filter((e) => e.op === 'accept');
  t.same(acc.map((e) => `${e.verdict} ${e.src.name.split(':')[0]}`), [`deny ${outside.ip}`], 'one accept decision, for the outside peer only');
});
