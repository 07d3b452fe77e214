// ax on one host, with real programs: python3 http.server, curl, node servers.
// The suite runs in a loopback-only network namespace (scripts/test.mjs).
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AX, run, sleep, start, TestDaemon } from './helpers';

const www = mkdtempSync(join(tmpdir(), 'ax-www-'));
writeFileSync(join(www, 'index.html'), 'hello from web\n');
chmodSync(www, 0o755); // served by nobody in the first test

const NODE_ECHO = `
const net = require('net');
const port = Number(process.argv[1]);
const srv = net.createServer((c) => {
  console.log('accepted');
  c.write('peer ' + c.remoteAddress + '\\n');
  c.on('data', (d) => c.write(d));
});
srv.listen(port, () => console.log('listening ' + JSON.stringify(srv.address())));
`;

const NODE_CLIENT = `
const net = require('net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3] || 1)];
let left = n;
function one() {
  const c = net.connect({ host, port }, () => c.write('ping\\n'));
  let buf = '';
  c.on('data', (d) => { buf += d; if (buf.includes('ping')) { console.log(buf.trim().split('\\n')[0] + ' remote=' + c.remoteAddress + ':' + c.remotePort); c.end(); } });
  c.on('close', () => { if (--left > 0) one(); });
  c.on('error', (e) => { console.log('error ' + e.code); process.exitCode = 1; });
}
one();
`;

t.test('python http.server on port 80 as nobody, reached by name and by VIP with curl', async (t) => {
  const d = await TestDaemon.start(t);
  // setpriv: the server runs unprivileged; port 80 works because the host port is from the pool.
  const web = d.run(['--name', 'web', '--ip', '10.1.0.1'], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP on .* port 80/);
  const byName = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://web/']).result();
  t.equal(byName.stdout, 'hello from web\n', `curl http://web/ (${byName.stderr})`);
  t.equal(byName.code, 0);
  const byAx = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://web.ax/index.html']).result();
  t.equal(byAx.stdout, 'hello from web\n', 'curl http://web.ax/');
  const byVip = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://10.1.0.1/']).result();
  t.equal(byVip.stdout, 'hello from web\n', 'curl http://10.1.0.1/');

  const services = await d.get('services');
  t.equal(services.length, 1, 'one service');
  t.match(services[0], { name: 'web', vip: '10.1.0.1', vport: 80, host_ip: '127.0.0.1', proto: 'tcp' });
  t.ok(services[0].host_port >= 20000 && services[0].host_port !== 80, `host port ${services[0].host_port} comes from the pool`);
  // the tests read the table in-process (helpers apiGet); the command prints the same rows
  const json = await d.ax(['get', 'services', '-o', 'json']);
  t.same(JSON.parse(json.stdout), services, 'ax get services -o json: the same rows');
  // The server's access log shows the client's virtual IP, not 127.0.0.1.
  await web.waitFor(/^(::ffff:)?10\.240\.\d+\.\d+ - - .*"GET \/ HTTP/m);

  const table = await d.ax(['get', 'services']);
  t.match(table.stdout, /^NAME\s+VIRTUAL\s+HOST\s+PROTO\s+FAMILY\s+APPID\s+NODE\s+LABELS\n/);
  t.match(table.stdout, /\nweb\s+10\.1\.0\.1:80\s+127\.0\.0\.1:\d+\s+tcp\s+ipv4\s+[0-9a-f]{8}\s+\S+\s+zone=default\n/);
  const apps = await d.get('apps');
  t.ok(apps.some((a) => a.name === 'web' && a.vip === '10.1.0.1' && a.processes === 1 && a.services === 1), 'ax get apps shows web');
  const sockets = await d.ax(['get', 'sockets']);
  t.match(sockets.stdout, /listening\s+inet\s+10\.1\.0\.1:80\s+127\.0\.0\.1:\d+/);

  web.kill('SIGTERM');
  const r = await web.result();
  t.not(r.code, 0, 'python exits on SIGTERM passed through ax run');
  await d.until('service removed', async () => (await d.get('services')).length === 0);
  t.pass('service gone after the server exits');
});

t.test('node TCP server and client; client IP preservation; pool round robin', async (t) => {
  const d = await TestDaemon.start(t);
  const a = d.run(['--name', 'echo'], ['node', '-e', NODE_ECHO, '7000']);
  const b = d.run(['--name', 'echo'], ['node', '-e', NODE_ECHO, '7000']);
  await a.waitFor(/listening/);
  await b.waitFor(/listening/);
  const apps = await d.get('apps');
  t.equal(new Set(apps.map((x) => x.vip)).size, 1, 'two apps with one name share a VIP');
  const vip = apps[0].vip;
  const cli = await d.run(['--ip', '10.7.7.7'], ['node', '-e', NODE_CLIENT, 'echo', '7000', '4']).result();
  t.equal(cli.code, 0, cli.stderr);
  const lines = cli.stdout.trim().split('\n');
  t.equal(lines.length, 4);
  for (const l of lines) t.match(l, new RegExp(`^peer (::ffff:)?10\\.7\\.7\\.7 remote=${vip.replace(/\./g, '\\.')}:7000$`), 'server sees client VIP, client sees service VIP');
  const services = await d.get('services');
  t.equal(services.length, 2, 'two backends');
  // Round robin: 4 connections over 2 backends hit both, twice each. Each server
  // answers from its own host port, which the client cannot see; count server side.
  const accepted = (p: typeof a) => p.stdout.split('\n').filter((l) => l === 'accepted').length;
  await d.until('both servers to log their connections', async () => accepted(a) + accepted(b) >= 4, 5000);
  t.same([accepted(a), accepted(b)], [2, 2], 'round robin: each backend took 2 of the 4 connections');
  const again = await d.run([], ['node', '-e', NODE_CLIENT, `${vip}`, '7000', '2']).result();
  t.equal(again.code, 0, 'by VIP too');
});

t.test('pool balances round robin across backends', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = (tag: string) => `require('net').createServer((c)=>c.end('${tag}\\n')).listen(80,()=>console.log('up'))`;
  const a = d.run(['--name', 'rr'], ['node', '-e', srv('A')]);
  const b = d.run(['--name', 'rr'], ['node', '-e', srv('B')]);
  await a.waitFor(/up/);
  await b.waitFor(/up/);
  const got = await d.run([], ['sh', '-c', 'for i in 1 2 3 4 5 6; do curl -s --max-time 3 telnet://rr:80 </dev/null; done']).result();
  const counts = { A: 0, B: 0 } as Record<string, number>;
  for (const l of got.stdout.trim().split('\n')) counts[l] = (counts[l] ?? 0) + 1;
  t.same(counts, { A: 3, B: 3 }, `round robin: ${got.stdout.replace(/\n/g, ' ')}`);
});

t.test('closing the listener and SIGKILL remove the entries', async (t) => {
  const d = await TestDaemon.start(t);
  const prog = `
const s = require('net').createServer().listen(8080, () => {
  console.log('up');
  process.stdin.once('data', () => s.close(() => console.log('closed')));
});`;
  const p = d.run(['--name', 'closer'], ['node', '-e', prog], { stdio: ['pipe', 'pipe', 'pipe'] });
  await p.waitFor(/up/);
  t.equal((await d.get('services')).length, 1);
  p.child.stdin!.write('x');
  await p.waitFor(/closed/);
  await d.until('listener close removes the service', async () => (await d.get('services')).length === 0, 5000);
  t.pass('closed listener removed');

  const k = d.run(['--name', 'victim'], ['python3', '-u', '-m', 'http.server', '8081'], { cwd: www });
  await k.waitFor(/Serving HTTP/);
  t.equal((await d.get('services')).length, 1);
  // SIGKILL the python process itself (not ax run).
  const pid = (await run('pgrep', ['-n', '-f', 'http.server 8081'])).stdout.trim(); // newest: python, not ax run
  process.kill(Number(pid), 'SIGKILL');
  const r = await k.result();
  t.equal(r.signal ?? r.code, r.signal ? 'SIGKILL' : 137, 'ax run reports the signal');
  await d.until(
    'SIGKILLed app entries removed',
    async () => (await d.get('services')).length === 0 && !(await d.get('apps')).some((a) => a.name === 'victim'),
    5000,
  );
  t.pass('killed app removed');
});

t.test('a blocking connect waits for a registered service to listen; a non-blocking one is held, then reset if it never does', async (t) => {
  const d = await TestDaemon.start(t);
  // Register the name first, listen 3 s later.
  const late = d.run(['--name', 'late'], ['sh', '-c', `sleep 3; exec python3 -u -m http.server 80`], { cwd: www });
  await d.until('app registered', async () => (await d.get('apps')).length === 1);
  const t0 = Date.now();
  const c = await d.run(['--connect-wait', '10s'], ['python3', '-c', `
import socket
s = socket.create_connection(("late", 80), timeout=None)
s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
print(s.recv(100).split(b"\\r\\n")[0].decode())
`]).result();
  t.equal(c.stdout.trim(), 'HTTP/1.0 200 OK', `waited and connected (${c.stderr})`);
  t.ok(Date.now() - t0 >= 700, `it really waited (${Date.now() - t0} ms)`);
  late.kill();
  // Non-blocking connect to a registered app that never listens: held by a placeholder listener for the
  // connect-wait, then reset (the app did not take the port over).
  const idle = d.run(['--name', 'idle'], ['sleep', '30']);
  await d.until('idle registered', async () => (await d.get('apps')).some((a) => a.name === 'idle'));
  const nb = await d.run([], ['curl', '-sS', '--max-time', '15', 'http://idle/']).result(30_000);
  t.ok(nb.code === 56 || nb.code === 52, `curl (non-blocking connect) was held, then reset: exit ${nb.code} ${nb.stderr.trim()}`);
  t.match(nb.stderr, /reset|Empty reply/);
  // Blocking connect with a short bound: refused after the bound.
  const t1 = Date.now();
  const bl = await d.run(['--connect-wait', '700ms'], ['python3', '-c', `
import socket, errno
try:
    socket.create_connection(("idle", 80))
except OSError as e:
    print(errno.errorcode[e.errno])
`]).result();
  t.equal(bl.stdout.trim(), 'ECONNREFUSED');
  const waited = Date.now() - t1;
  t.ok(waited >= 600 && waited < 5000, `bounded wait (${waited} ms)`);
  idle.kill();
});

t.test('labels: connect allowed only with a shared label', async (t) => {
  const d = await TestDaemon.start(t);
  const web = d.run(['--name', 'secure', '--labels', 'team=blue'], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  const ok = await d.run(['--labels', 'team=blue,zone=x'], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result();
  t.equal(ok.stdout, 'hello from web\n', 'shared label: allowed');
  const denied = await d.run(['--labels', 'team=red'], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result();
  t.not(denied.code, 0, 'no shared label: denied');
  t.match(denied.stderr, /Permission denied|Couldn't connect|Failed to connect/);
  await d.proc.waitFor(/policy: app [0-9a-f]+ \(team=red\) may not connect to 10\.240\.\d+\.\d+:80/);
  const dflt = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result();
  t.not(dflt.code, 0, 'default zone does not reach team=blue');
});

t.test('a virtual ip:port bound twice gets EADDRINUSE; another app`s VIP gets EADDRNOTAVAIL', async (t) => {
  const d = await TestDaemon.start(t);
  const r = await d.run(['--ip', '10.3.0.1'], ['python3', '-c', `
import socket, errno
a = socket.socket(); a.bind(("0.0.0.0", 80)); a.listen()
b = socket.socket()
try:
    b.bind(("10.3.0.1", 80)); print("second bind ok")
except OSError as e:
    print("second", errno.errorcode[e.errno])
c = socket.socket()
try:
    c.bind(("10.240.0.200", 80)); print("foreign bind ok")
except OSError as e:
    print("foreign", errno.errorcode[e.errno])
e = socket.socket(); e.bind(("0.0.0.0", 0)); e.listen()
print("ephemeral", e.getsockname()[1] > 0, a.getsockname())
`]).result();
  t.match(r.stdout, /second EADDRINUSE/);
  t.match(r.stdout, /ephemeral True \('0\.0\.0\.0', 80\)/, 'getsockname shows the virtual port');
  const other = d.run(['--ip', '10.3.0.2'], ['sleep', '30']);
  await d.until('other registered', async () => (await d.get('apps')).some((a) => a.vip === '10.3.0.2'));
  const r2 = await d.run(['--ip', '10.3.0.1'], ['python3', '-c', `
import socket, errno
c = socket.socket()
try:
    c.bind(("10.3.0.2", 80)); print("foreign bind ok")
except OSError as e:
    print("foreign", errno.errorcode[e.errno])
`]).result();
  t.match(r2.stdout, /foreign EADDRNOTAVAIL/);
  other.kill();
});

t.test('UDP and real addresses keep working natively under ax', async (t) => {
  const d = await TestDaemon.start(t);
  const r = await d.run([], ['python3', '-c', `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"udp-ok", s.getsockname())
data, addr = s.recvfrom(100)
print(data.decode(), addr[0])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
k = socket.create_connection(l.getsockname())
a, peer = l.accept()
print("tcp-loopback", peer[0], k.getpeername() == l.getsockname())
`]).result();
  t.equal(r.stdout, 'udp-ok 127.0.0.1\ntcp-loopback 127.0.0.1 True\n', r.stderr);
});

t.test('exit status and children: ax run passes status through, the hook follows exec', async (t) => {
  const d = await TestDaemon.start(t);
  t.equal((await d.run([], ['sh', '-c', 'exit 7']).result()).code, 7);
  const sig = await d.run([], ['sh', '-c', 'kill -TERM $$']).result();
  t.equal(sig.signal, 'SIGTERM', 'death by signal is reproduced');
  const missing = await d.run([], ['no-such-command-ax']).result();
  t.equal(missing.code, 127);
  t.match(missing.stderr, /no-such-command-ax: command not found/);
  const web = d.run(['--name', 'kid'], ['sh', '-c', 'exec python3 -u -m http.server 80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  // sh → env -i (custom environment!) → curl: the hook is re-injected.
  const r = await d.run([], ['sh', '-c', 'env -i PATH=/usr/bin:/bin sh -c "curl -sS --max-time 5 http://kid/"']).result();
  t.equal(r.stdout, 'hello from web\n', `through sh and env -i (${r.stderr})`);
});

t.test('bad input: unreachable daemon', async (t) => {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.AX_CLUSTER_KEY;
  const ax = (args: string[]) => run(process.execPath, [AX, ...args], { env });
  // The flag messages are checked in-process in test/cli.test.ts.
  const dir = mkdtempSync(join(tmpdir(), 'ax-none-'));
  const r = await ax(['run', '--socket', join(dir, 'nope.sock'), '--no-start', '--', 'true']);
  t.equal(r.code, 1);
  t.match(r.stderr, /cannot reach the ax daemon at .*nope\.sock/);
  t.match(r.stderr, /start one with: ax daemon --socket/);
  const g = await ax(['get', 'apps', '--socket', join(dir, 'nope.sock')]);
  t.equal(g.code, 1);
  t.match(g.stderr, /cannot reach the ax daemon/);
});

t.test('garbage on the hook socket and the API socket: that peer is dropped, others served', async (t) => {
  const d = await TestDaemon.start(t);
  const web = d.run(['--name', 'steady'], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  const hookSock = d.socket.replace(/\.sock$/, '-hook.sock');
  const garbage = `
import socket, os, struct
def conn(p):
    s = socket.socket(socket.AF_UNIX); s.connect(p); return s
for payload in [os.urandom(384), b"AX01" + os.urandom(380), os.urandom(100), os.urandom(100000)]:
    s = conn("${hookSock}")
    try:
        s.sendall(payload); s.shutdown(socket.SHUT_WR); print("hook closed:", s.recv(10) == b"")
    except OSError as e:
        print("hook closed:", True)
    s.close()
# a valid header with an unknown op, and a request before HELLO
s = conn("${hookSock}")
s.sendall(struct.pack("<IHH", 0x31305841, 99, 0).ljust(384, b"\\0")); print("hook closed:", s.recv(10) == b"")
s = conn("${hookSock}")
s.sendall(struct.pack("<IHH", 0x31305841, 4, 0).ljust(384, b"\\0")); print("hook closed:", s.recv(10) == b"")
# a CLOSE note whose address has an impossible family
s = conn("${hookSock}")
s.sendall((struct.pack("<IHH", 0x31305841, 5, 0).ljust(56, b"\\0") + struct.pack("<H", 99)).ljust(384, b"\\0")); print("hook closed:", s.recv(10) == b"")
# a retired op number (CONNECTING, before the identity map)
s = conn("${hookSock}")
s.sendall(struct.pack("<IHH", 0x31305841, 10, 0).ljust(384, b"\\0")); print("hook closed:", s.recv(10) == b"")
# a LOOKUP whose peer address has an impossible family
s = conn("${hookSock}")
s.sendall((struct.pack("<IHH", 0x31305841, 11, 0).ljust(56, b"\\0") + struct.pack("<H", 77)).ljust(384, b"\\0")); print("hook closed:", s.recv(10) == b"")
a = conn("${d.socket}"); a.sendall(os.urandom(5000)); a.close()
a = conn("${d.socket}"); a.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + os.urandom(3000)); a.close()
`;
  const g = await run('python3', ['-c', garbage]);
  t.equal(g.stdout.trim().split('\n').filter((l) => l === 'hook closed: True').length, 9, `every bad peer dropped (${g.stdout}${g.stderr})`);
  await d.proc.waitFor(/dropped: bad magic/);
  await d.proc.waitFor(/dropped: .*unknown op 99/);
  await d.proc.waitFor(/dropped: .*before HELLO/);
  await d.proc.waitFor(/dropped: address family 99 is not AF_INET or AF_INET6/);
  await d.proc.waitFor(/dropped: unknown op 10\b/);
  await d.proc.waitFor(/dropped: address family 77 is not AF_INET or AF_INET6/);
  const ok = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://steady/']).result();
  t.equal(ok.stdout, 'hello from web\n', 'daemon still serves');
  t.equal((await d.get('services')).length, 1, 'API still serves');
  t.equal(d.proc.child.exitCode, null, 'daemon alive');
});

t.test('daemon SIGKILLed mid-session: connections keep flowing, state restored, hooks reconnect', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'durable'], ['node', '-e', NODE_ECHO, '9000']);
  await srv.waitFor(/listening/);
  // A client that keeps one connection open and sends a line every 100 ms,
  // then after "reconnect" on stdin makes a new connection.
  const prog = `
const net = require('net');
let n = 0;
const c = net.connect(9000, 'durable', () => console.log('connected'));
c.on('data', (d) => { for (const l of d.toString().split('\\n')) if (l.startsWith('tick')) console.log('echo ' + l); });
c.on('error', (e) => console.log('error ' + e.code));
const iv = setInterval(() => c.write('tick' + (n++) + '\\n'), 100);
process.stdin.on('data', () => {
  const c2 = net.connect(9000, 'durable', () => { c2.write('again\\n'); });
  c2.on('data', (d) => { if (d.toString().includes('again')) { console.log('new connection ok'); clearInterval(iv); c.end(); c2.end(); } });
  c2.on('error', (e) => console.log('new connection error ' + e.code));
});`;
  const cli = d.run([], ['node', '-e', prog], { stdio: ['pipe', 'pipe', 'pipe'] });
  await cli.waitFor(/echo tick3/);
  d.proc.kill('SIGKILL');
  await d.proc.exited;
  const before = (cli.stdout.match(/echo tick/g) ?? []).length;
  await sleep(600);
  const during = (cli.stdout.match(/echo tick/g) ?? []).length;
  t.ok(during > before + 2, `established connection keeps transferring with the daemon dead (${before} → ${during})`);
  await d.launch();
  await d.proc.waitFor(/1 sockets restored|2 apps and 1 sockets restored/);
  const services = await d.get('services');
  t.equal(services.length, 1, 'service restored from LevelDB');
  cli.child.stdin!.write('go\n');
  await cli.waitFor(/new connection ok/, 10_000);
  t.pass('new connect after restart works (hook reconnected)');
  const curl = await d.run([], ['sh', '-c', 'curl -s --max-time 3 telnet://durable:9000 </dev/null | head -1']).result();
  t.match(curl.stdout, /^peer /, 'new apps work too');
  // --clean drops the state.
  await d.stop();
  await d.launch(['--clean']);
  t.equal((await d.get('services')).length, 0, '--clean starts empty');
});

t.test('ax run starts a daemon by itself with the embedded defaults', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'ax-home-'));
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_STATE_HOME: join(home, 'state'), XDG_RUNTIME_DIR: join(home, 'run') };
  delete env.AX_SOCKET;
  const web = start(process.execPath, [AX, 'run', '--name', 'auto', '--', 'python3', '-u', '-m', 'http.server', '80'], { cwd: www, env }, t);
  await web.waitFor(/Serving HTTP/, 20_000);
  const r = await run(process.execPath, [AX, 'run', '--', 'curl', '-sS', '--max-time', '5', 'http://auto/'], { env });
  t.equal(r.stdout, 'hello from web\n');
  const st = await run(process.execPath, [AX, 'status'], { env });
  t.match(st.stdout, new RegExp(`state_dir\\s+${join(home, 'state', 'ax')}`), 'state in $XDG_STATE_HOME/ax');
  t.ok(existsSync(join(home, 'run', 'ax', 'ax.sock')), 'API socket in $XDG_RUNTIME_DIR/ax');
  // $XDG_RUNTIME_DIR is private (0700 here): a root daemon's hook socket goes where workers that drop privileges reach it
  t.match(st.stdout, /hook_socket\s+\/run\/ax\/hook-[0-9a-f]{12}\.sock/, 'hook socket in /run/ax (reachable after a privilege drop)');
  const pid = Number(/pid\s+(\d+)/.exec(st.stdout)?.[1]);
  web.kill();
  await web.result();
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  });
});

t.test('a second daemon on the same socket or state refuses to start, the first keeps serving', async (t) => {
  const d = await TestDaemon.start(t);
  const dir = mkdtempSync(join(tmpdir(), 'ax-second-'));
  const same = await run(process.execPath, [AX, 'daemon', '--socket', d.socket, '--state-dir', join(dir, 'state')]);
  t.equal(same.code, 1);
  t.match(same.stderr, /another ax daemon is already serving .*ax\.sock/);
  const state = await run(process.execPath, [AX, 'daemon', '--socket', join(dir, 'other.sock'), '--state-dir', d.stateDir]);
  t.equal(state.code, 1);
  t.match(state.stderr, /cannot open the state database in .*another ax daemon using this --state-dir/);
  t.equal((await d.get('apps')).length, 0, 'first daemon still answers');
});

t.test('redis-server (IPv4 and IPv6-only listeners on one port) with redis-cli by name', async (t) => {
  const d = await TestDaemon.start(t);
  const dir = mkdtempSync(join(tmpdir(), 'ax-redis-'));
  // No config file: redis binds "* -::*", i.e. 0.0.0.0:6379 and an IPV6_V6ONLY [::]:6379, as natively.
  // Clients arrive with their virtual IPs, not from loopback, so redis' protected mode must be off.
  const srv = d.run(['--name', 'redis'], ['redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--dir', dir]);
  await srv.waitFor(/Ready to accept connections/);
  const cli = (args: string[]) => d.run([], ['redis-cli', '-h', 'redis', '-p', '6379', ...args]).result();
  t.equal((await cli(['ping'])).stdout.trim(), 'PONG');
  t.equal((await cli(['set', 'greeting', 'hello-ax'])).stdout.trim(), 'OK');
  t.equal((await cli(['get', 'greeting'])).stdout.trim(), 'hello-ax');
  // Ten connections in a row all land on the IPv4 listener (the IPv6-only one cannot take them).
  const many = await d.run([], ['sh', '-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do redis-cli -h redis incr n; done']).result();
  t.equal(many.stdout.trim().split('\n').pop(), '10');
  const clients = await cli(['client', 'list']);
  t.match(clients.stdout, /addr=10\.240\.\d+\.\d+:\d+/, 'redis sees the client by its VIP');
  const socks = await d.get('sockets');
  t.equal(socks.filter((s) => s.state === 'listening').length, 2, 'both listeners registered');
  // ax get services: one row per listener, the IPv6-only one marked as such (it is never a backend)
  const rows = (await d.get('services')).filter((s) => s.name === 'redis');
  t.same(rows.map((s) => s.family).sort(), ['ipv4', 'ipv6-only'], 'the family of each listener');
  const table = (await d.ax(['get', 'services'])).stdout.split('\n').filter((l) => /^redis /.test(l));
  t.equal(table.length, 2);
  t.match(table.join('\n'), /\bipv4\b[\s\S]*\bipv6-only\b|\bipv6-only\b[\s\S]*\bipv4\b/, 'the table shows it');
});

t.test('--expose binds a virtual port on a fixed host port; --lb random balances too', async (t) => {
  const d = await TestDaemon.start(t, ['--lb', 'random']);
  const probe = await run('python3', ['-c', 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])']);
  const hostPort = Number(probe.stdout.trim());
  const web = d.run(['--name', 'exposed', '--expose', `80:${hostPort}`], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  const svc = (await d.get('services')).find((x) => x.name === 'exposed');
  t.equal(svc?.host_port, hostPort, 'the exposed host port is used, not one from the pool');
  // A plain client, not under ax, reaches the app on the exposed port.
  const plain = await run('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${hostPort}/`]);
  t.equal(plain.stdout, 'hello from web\n', 'reachable on the host port without ax');
  t.equal(await d.run([], ['curl', '-sS', '--max-time', '5', 'http://exposed/']).result().then((r) => r.stdout), 'hello from web\n');

  const srv = (tag: string) => `require('net').createServer((c)=>c.end('${tag}\\n')).listen(80,()=>console.log('up'))`;
  const a = d.run(['--name', 'rnd'], ['node', '-e', srv('A')]);
  const b = d.run(['--name', 'rnd'], ['node', '-e', srv('B')]);
  await a.waitFor(/up/);
  await b.waitFor(/up/);
  const got = await d.run([], ['sh', '-c', 'for i in $(seq 24); do curl -s --max-time 3 telnet://rnd:80 </dev/null; done']).result();
  const lines = got.stdout.trim().split('\n');
  t.equal(lines.length, 24);
  t.ok(lines.includes('A') && lines.includes('B'), `random over the pool reaches both backends (${lines.join('')})`);
  // Round robin strictly alternates (ABAB...: no two neighbours equal) for these
  // 24 one-connection processes. Random picks repeat a backend with probability
  // 1/2 per step: no repeat in 23 steps has probability 2^-23 (about 1e-7).
  const repeats = lines.slice(1).filter((l, i) => l === lines[i]).length;
  t.ok(repeats > 0, `random, not round robin: ${repeats} repeated picks in a row (round robin would have none)`);
});

t.test('several ax run started at once with no daemon: one daemon starts, every one of them runs', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'ax-race-'));
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_STATE_HOME: join(home, 'state'), XDG_RUNTIME_DIR: join(home, 'run') };
  delete env.AX_SOCKET;
  const rs = await Promise.all([1, 2, 3].map((i) => run(process.execPath, [AX, 'run', '--', 'sh', '-c', `echo ran ${i}`], { env, timeoutMs: 30_000 })));
  rs.forEach((r, i) => {
    t.equal(r.code, 0, `ax run ${i + 1}: ${r.stderr}`);
    t.equal(r.stdout.trim(), `ran ${i + 1}`);
  });
  const st = await run(process.execPath, [AX, 'status'], { env });
  const pid = Number(/pid\s+(\d+)/.exec(st.stdout)?.[1]);
  t.ok(pid > 0, 'one daemon answers');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  });
});
