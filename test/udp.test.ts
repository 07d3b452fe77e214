// UDP: datagram programs get virtual addresses and names too (issue 7). Real
// programs — socat in both modes, a statsd-style sender, python servers and
// clients, dnsmasq, a C program batching with sendmmsg/recvmmsg — and the
// kernel's own behaviour as the reference (closed ports, unreachable
// addresses, bind conflicts). A last test checks in a namespace of its own, with
// a default route through a dummy interface, that no datagram to a virtual
// address ever leaves through a real interface.
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AX, cbin, run, start, TestDaemon } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'ax-udp-'));
chmodSync(work, 0o755);
const PY = '/usr/bin/python3';

function script(name: string, text: string): string {
  const p = join(work, name);
  writeFileSync(p, text);
  chmodSync(p, 0o755);
  return p;
}

/** A UDP echo server: prints each datagram's source as recvfrom reports it, answers in upper case.
 *  Argument PORT [6]: binds the wildcard:PORT; or unix:PATH: waits on a unix socket at PATH for
 *  a UDP socket passed over SCM_RIGHTS, forks, and the child serves it (the parent exits). */
const echo = script(
  'echo.py',
  `
import os, socket, sys
if sys.argv[1].startswith('unix:'):
    l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); l.bind(sys.argv[1][5:]); l.listen(1)
    print('waiting', flush=True)
    c, _ = l.accept()
    msg, fds, _, _ = socket.recv_fds(c, 10, 1)
    s = socket.socket(fileno=fds[0])
    if os.fork() > 0:
        os._exit(0)
else:
    fam = socket.AF_INET6 if sys.argv[2:] == ['6'] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', int(sys.argv[1])))
print('bound', s.getsockname()[:2], flush=True)
while True:
    d, a = s.recvfrom(2000)
    print('got', d.decode(), 'from', a[0], a[1], flush=True)
    s.sendto(d.upper(), a)
`,
);

/** A client: the same exchange unconnected (sendto/recvfrom) and connected (connect/send/recvfrom). */
const client = script(
  'client.py',
  `
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if sys.argv[3:] == ['6'] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b'unconnected', (host, port))
d, a = s.recvfrom(100)
print('reply', d.decode(), 'from', a[0], a[1], flush=True)
c = socket.socket(fam, socket.SOCK_DGRAM); c.settimeout(5)
c.connect((host, port))
c.send(b'connected')
d, a = c.recvfrom(100)
print('reply', d.decode(), 'from', a[0], a[1], 'peer', c.getpeername()[0], c.getpeername()[1], 'local', c.getsockname()[0], flush=True)
`,
);

/** What the kernel says: a connected socket's next call after a datagram to a closed port,
 *  an unconnected one's, and a datagram to an unreachable address. */
const errors = script(
  'errors.py',
  `
import socket, sys, errno
host, port = sys.argv[1], int(sys.argv[2])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
c.connect((host, port))
c.send(b'x')
try:
    c.recv(10); print('connected: data')
except OSError as e:
    print('connected:', errno.errorcode.get(e.errno, e.errno))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.5)
try:
    u.sendto(b'x', (host, port)); u.sendto(b'x', (host, port))
    print('unconnected: sent')
    u.recv(10); print('unconnected: data')
except socket.timeout:
    print('unconnected: silence')
except OSError as e:
    print('unconnected:', errno.errorcode.get(e.errno, e.errno))
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', (sys.argv[3], 9))
    print('unreachable: sent')
except OSError as e:
    print('unreachable:', errno.errorcode.get(e.errno, e.errno))
`,
);

t.test('a UDP service on a virtual address, reached by name with socat (connected and unconnected)', async (t) => {
  const d = await TestDaemon.start(t);
  const out = join(work, 'stats.txt');
  writeFileSync(out, '');
  d.run(['--name', 'stats', '--ip', '10.5.0.1'], ['socat', '-u', 'UDP-RECV:8125', `OPEN:${out},append`]);
  await d.until('the udp service', async () => (await d.get('services')).some((s) => s.name === 'stats' && s.proto === 'udp'));
  const svc = (await d.get('services')).find((s) => s.name === 'stats')!;
  t.equal(svc.vport, 8125, 'registered on its virtual port');
  t.equal(svc.proto, 'udp');
  for (const [mode, target] of [
    ['connected', 'UDP:stats:8125'],
    ['unconnected', 'UDP-SENDTO:stats:8125'],
    ['by VIP', 'UDP:10.5.0.1:8125'],
  ]) {
    const r = await run(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--', 'sh', '-c', `echo "hits:1|c ${mode}" | socat - ${target}`]);
    t.equal(r.code, 0, `socat ${mode}: ${r.stderr}`);
  }
  await d.until('three datagrams', async () => readFileSync(out, 'utf8').split('\n').filter(Boolean).length >= 3, 5000);
  t.same(readFileSync(out, 'utf8').trim().split('\n').sort(), ['hits:1|c by VIP', 'hits:1|c connected', 'hits:1|c unconnected']);
  // the table lists it beside a TCP service
  d.run(['--name', 'web', '--ip', '10.5.0.2'], [PY, '-m', 'http.server', '80']);
  await d.until('tcp service', async () => (await d.get('services')).some((s) => s.name === 'web'));
  const list = await d.ax(['get', 'services']);
  t.match(list.stdout, /stats\s+10\.5\.0\.1:8125\s+\S+\s+udp/);
  t.match(list.stdout, /web\s+10\.5\.0\.2:80\s+\S+\s+tcp/);
  // SRV by transport from the DNS responder (_udp.NAME / _tcp.NAME)
  const [ip, port] = String(JSON.parse((await d.ax(['status', '-o', 'json'])).stdout).dns_address).split(':');
  const srv = async (q: string) => (await run('dig', ['+short', '+time=2', '+tries=1', `@${ip}`, '-p', port, 'SRV', q])).stdout.trim();
  t.equal(await srv('_udp.stats.ax'), '0 0 8125 stats.ax.');
  t.equal(await srv('_tcp.stats.ax'), '', 'no tcp port on stats');
  t.equal(await srv('_tcp.web.ax'), '0 0 80 web.ax.');
});

t.test('a statsd-style sender: every datagram arrives, none goes to the daemon', async (t) => {
  const d = await TestDaemon.start(t);
  const count = script(
    'count.py',
    `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 8125)); s.settimeout(10)
print('ready', flush=True)
n = 0
while n < 300:
    d, a = s.recvfrom(100); n += 1
print('count', n, 'last from', a[0], flush=True)
`,
  );
  const srv = d.run(['--name', 'statsd', '--ip', '10.5.0.10'], [PY, count]);
  await srv.waitFor(/ready/);
  const before = (await d.ax(['status', '-o', 'json'])).stdout;
  const send = script(
    'send.py',
    `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(300):
    s.sendto(b'requests:1|c', ('statsd', 8125))
    if i % 50 == 49: time.sleep(0.01)
`,
  );
  const r = await d.run(['--name', 'agent', '--ip', '10.5.0.11'], [PY, send]).result();
  t.equal(r.code, 0, r.stderr);
  const m = await srv.waitFor(/count (\d+) last from (\S+)/);
  t.equal(m[1], '300', 'all 300 datagrams arrived');
  t.equal(m[2], '10.5.0.11', "the receiver sees the sender's VIP");
  const handoffs = (s: string) => JSON.parse(s).handoffs as number;
  const after = (await d.ax(['status', '-o', 'json'])).stdout;
  t.ok(handoffs(after) - handoffs(before) <= 2, `the daemon routed the flow once, not per datagram (${handoffs(before)} -> ${handoffs(after)})`);
});

t.test('a python echo server sees the client VIP; replies come back from the service VIP', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'echo', '--ip', '10.5.0.20'], [PY, echo, '7']);
  await srv.waitFor(/bound/);
  const r = await d.run(['--name', 'cli', '--ip', '10.5.0.21'], [PY, client, 'echo', '7']).result();
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /reply UNCONNECTED from 10\.5\.0\.20 7/, 'unconnected: the reply comes from the VIP');
  t.match(r.stdout, /reply CONNECTED from 10\.5\.0\.20 7 peer 10\.5\.0\.20 7 local 10\.5\.0\.21/, 'connected: peer and local are virtual');
  t.equal(await srv.count(/got unconnected from 10\.5\.0\.21 \d+/g, 1), 1, 'recvfrom shows the client VIP (unconnected)');
  t.equal(await srv.count(/got connected from 10\.5\.0\.21 \d+/g, 1), 1, 'recvfrom shows the client VIP (connected)');

  // IPv6 sockets, v4-mapped, on both ends
  const srv6 = d.run(['--name', 'echo6', '--ip', '10.5.0.22'], [PY, echo, '9', '6']);
  await srv6.waitFor(/bound/);
  const r6 = await d.run(['--name', 'cli6', '--ip', '10.5.0.23'], [PY, client, '::ffff:10.5.0.22', '9', '6']).result();
  t.equal(r6.code, 0, r6.stderr);
  t.match(r6.stdout, /reply UNCONNECTED from ::ffff:10\.5\.0\.22 9/);
  t.match(r6.stdout, /reply CONNECTED from ::ffff:10\.5\.0\.22 9 peer ::ffff:10\.5\.0\.22 9 local ::ffff:10\.5\.0\.23/);
  t.equal(await srv6.count(/got unconnected from ::ffff:10\.5\.0\.23 \d+/g, 1), 1);

  // sendmmsg / recvmmsg (a batching program, in C)
  const b = await d.run(['--name', 'batch', '--ip', '10.5.0.24'], [cbin('udpmmsg'), '10.5.0.20', '7', '5']).result();
  t.equal(b.code, 0, b.stdout + b.stderr);
  t.equal((b.stdout.match(/^reply M\d from 10\.5\.0\.20:7$/gm) ?? []).length, 5, `five replies from the VIP\n${b.stdout}`);
  t.equal(await srv.count(/got m\d from 10\.5\.0\.24 /g, 5), 5, 'the server saw the batch from the sender VIP');
});

t.test('a UDP socket inherited across exec (systemd-socket-activate) keeps its service and sees client VIPs', async (t) => {
  const d = await TestDaemon.start(t);
  // the launcher binds the socket under ax and execs the server with it on fd 3
  const inherit = script(
    'inherit.py',
    `
import socket
s = socket.socket(fileno=3)
print('local', *s.getsockname()[:2], flush=True)
while True:
    data, a = s.recvfrom(100)
    print('got', data.decode(), 'from', a[0], flush=True)
    s.sendto(data.upper(), a)
`,
  );
  const srv = d.run(['--name', 'inh', '--ip', '10.5.0.40'], ['systemd-socket-activate', '--datagram', '-l', '9000', PY, inherit]);
  await d.until('the udp service', async () => (await d.get('services')).some((x) => x.name === 'inh' && x.proto === 'udp' && x.vport === 9000));
  const r = await d.run(['--name', 'inhc', '--ip', '10.5.0.41'], [PY, '-c', "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(b'hi', ('inh', 9000)); d, a = s.recvfrom(100); print(d.decode(), a[0], a[1])"]).result();
  t.equal(r.stdout.trim(), 'HI 10.5.0.40 9000', `the reply comes from the service VIP\n${r.stderr}`);
  // the launcher binds [::]:9000 (dual stack): IPv4 peers appear v4-mapped, as natively
  await srv.waitFor(/got hi from ::ffff:10\.5\.0\.41/);
  t.match(srv.stdout, /^local :: 9000$/m, 'getsockname on the inherited socket: what the launcher bound, as natively');
});

t.test('closed ports, unregistered addresses and bind conflicts behave as the kernel does', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'up', '--ip', '10.5.0.30'], [PY, echo, '7']);
  await srv.waitFor(/bound/);
  // native reference: a closed loopback port and an address with no route (no default route here)
  const native = await run(PY, [errors, '127.0.0.1', '9', '10.99.0.1']);
  const virt = await d.run([], [PY, errors, '10.5.0.30', '9', '10.5.0.99']).result();
  t.equal(native.code, 0, native.stderr);
  t.equal(virt.code, 0, virt.stderr);
  t.match(native.stdout, /connected: ECONNREFUSED/);
  t.equal(virt.stdout, native.stdout, `same results as the kernel\nnative:\n${native.stdout}ax:\n${virt.stdout}`);

  // the same port bound twice: EADDRINUSE, as natively
  const twice = script(
    'twice.py',
    `
import socket, errno
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('0.0.0.0', 5000))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    b.bind(('0.0.0.0', 5000)); print('second bind: ok')
except OSError as e:
    print('second bind:', errno.errorcode[e.errno])
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(('0.0.0.0', 5000))
print('tcp on the same port: ok')
x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); x.bind(('0.0.0.0', 5001))
y = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); y.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); y.bind(('0.0.0.0', 5001))
print('SO_REUSEADDR on both: ok')
`,
  );
  const n2 = await run(PY, [twice]);
  const v2 = await d.run(['--name', 'twice', '--ip', '10.5.0.31'], [PY, twice]).result();
  t.equal(n2.stdout, 'second bind: EADDRINUSE\ntcp on the same port: ok\nSO_REUSEADDR on both: ok\n');
  t.equal(v2.stdout, n2.stdout, v2.stderr);
});

t.test('UDP pools: balanced per connected socket, one backend per flow for an unconnected sender', async (t) => {
  const d = await TestDaemon.start(t);
  const a = d.run(['--name', 'pool'], [PY, echo, '53']);
  const b = d.run(['--name', 'pool'], [PY, echo, '53']);
  await a.waitFor(/bound/);
  await b.waitFor(/bound/);
  const many = script(
    'many.py',
    `
import socket
for i in range(6):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5)
    c.connect(('pool', 53)); c.send(b'conn%d' % i); c.recv(100)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
for i in range(6):
    u.sendto(b'flow%d' % i, ('pool', 53)); u.recvfrom(100)
print('done', flush=True)
`,
  );
  const r = await d.run([], [PY, many]).result();
  t.equal(r.code, 0, r.stderr);
  // the servers' output comes through their own pipes: wait for all 12 lines
  const all = (re: RegExp) => (a.stdout.match(re) ?? []).length + (b.stdout.match(re) ?? []).length;
  await d.until('all datagrams printed', async () => all(/got (conn|flow)\d/g) >= 12, 5_000).catch(() => undefined);
  const conn = (p: typeof a) => (p.stdout.match(/got conn\d/g) ?? []).length;
  const flow = (p: typeof a) => (p.stdout.match(/got flow\d/g) ?? []).length;
  t.equal(conn(a) + conn(b), 6);
  t.ok(conn(a) >= 2 && conn(b) >= 2, `connected sockets are spread (${conn(a)} / ${conn(b)})`);
  t.ok((flow(a) === 6 && flow(b) === 0) || (flow(a) === 0 && flow(b) === 6), `one flow stays on one backend (${flow(a)} / ${flow(b)})`);
});

t.test('an unconnected sender alternating between services, and following a replaced backend', async (t) => {
  // Each datagram socket remembers its last flow each way (the hook's memo): a socket
  // that alternates destinations must still see every reply from the right VIP, and
  // one that keeps sending to a VIP must follow the table when the backend changes.
  const d = await TestDaemon.start(t);
  const a1 = d.run(['--name', 'ea', '--ip', '10.5.1.1'], [PY, echo, '7000']);
  const b = d.run(['--name', 'eb', '--ip', '10.5.1.2'], [PY, echo, '7000']);
  await a1.waitFor(/bound/);
  await b.waitFor(/bound/);
  const stop = join(work, 'alt.stop');
  const alt = script(
    'alt.py',
    `
import os, socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
for i in range(4):
    for svc in ('ea', 'eb'):
        u.sendto(b'p1-' + svc.encode(), (svc, 7000))
        d, a = u.recvfrom(100)
        print('reply', d.decode(), 'from', a[0], a[1], flush=True)
print('phase1 done', flush=True)
u.settimeout(0.1)
n = 0
deadline = time.time() + 20
while time.time() < deadline and not os.path.exists(sys.argv[1]):
    n += 1
    u.sendto(b'p2-%d' % n, ('ea', 7000))
    try:
        d, a = u.recvfrom(100)
        print('reply', d.decode(), 'from', a[0], a[1], flush=True)
    except socket.timeout:
        pass
print('stopped' if os.path.exists(sys.argv[1]) else 'timeout', flush=True)
`,
  );
  const c = d.run(['--ip', '10.5.1.9'], [PY, alt, stop]);
  await c.waitFor(/phase1 done/);
  const replies = c.stdout.split('\n').filter((l) => l.startsWith('reply P1-'));
  t.equal(replies.length, 8);
  t.ok(replies.every((l) => /^reply P1-EA from 10\.5\.1\.1 7000$/.test(l) || /^reply P1-EB from 10\.5\.1\.2 7000$/.test(l)), `each reply from its service's VIP:\n${replies.join('\n')}`);
  t.equal(replies.filter((l) => l.includes('EA')).length, 4);
  t.equal(await a1.count(/got p1-ea from 10\.5\.1\.9 /g, 4), 4, 'the server saw the client VIP on every datagram');
  // replace ea's backend while the same socket keeps sending: the new backend gets them
  await a1.waitFor(/got p2-/);
  a1.killGroup();
  await a1.exited;
  const a2 = d.run(['--name', 'ea', '--ip', '10.5.1.1'], [PY, echo, '7000']);
  await a2.waitFor(/got p2-\d+ from 10\.5\.1\.9 /, 15_000);
  writeFileSync(stop, '');
  await c.waitFor(/stopped|timeout/);
  t.match(c.stdout, /stopped/);
  t.match(c.stdout.split('phase1 done')[1], /reply P2-\d+ from 10\.5\.1\.1 7000/, 'replies of the new backend come from the VIP');
});

t.test('datagrams under churn: every reply shows the address it was sent to, while apps come and go', async (t) => {
  // test/c/udpfast.c: a pinger alternating two services from one unconnected socket, while
  // other threads create, connect and close sockets (changing the hook's fd table under the
  // pinger's lock-free reads, and showing each server thousands of client ports, more than
  // its flow tables hold) and reuse fd numbers across sockets with different peers. Apps
  // start and stop meanwhile, so the table's generation moves under the flows. Natively
  // first (the reference, and proof the program's checks pass), then under ax.
  // Found by this test: a server lost replies once its flow tables evicted a client, and a
  // reply arriving just after any table change showed the service's host port.
  const plain = script(
    'plain-echo.py',
    `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print('bound', flush=True)
while True:
    d, a = s.recvfrom(2000)
    s.sendto(d, a)
`,
  );
  const d = await TestDaemon.start(t);
  const na = start(PY, [plain, '127.0.0.1', '7431'], {}, t);
  const nb = start(PY, [plain, '127.0.0.1', '7432'], {}, t);
  const fa = d.run(['--name', 'fasta', '--ip', '10.5.3.1'], [PY, plain, '0.0.0.0', '7000']);
  const fb = d.run(['--name', 'fastb', '--ip', '10.5.3.2'], [PY, plain, '0.0.0.0', '7000']);
  await Promise.all([na.waitFor(/bound/), nb.waitFor(/bound/), fa.waitFor(/bound/), fb.waitFor(/bound/)]);
  const ROUNDS = '6000';
  const nat = await start(cbin('udpfast'), ['127.0.0.1', '7431', '127.0.0.1', '7432', ROUNDS], {}, t).result();
  t.equal(nat.code, 0, `native reference: ${nat.stdout}${nat.stderr}`);
  t.match(nat.stdout, /^ok rounds=6000 reused=\d+/m);
  const client = d.run(['--ip', '10.5.3.9'], [cbin('udpfast'), '10.5.3.1', '7000', '10.5.3.2', '7000', ROUNDS]);
  // apps starting and stopping while it runs: each moves the table's generation
  let churned = 0;
  const churn = (async () => {
    while (client.child.exitCode === null && churned < 20) {
      await d.run([], ['/bin/true']).result();
      churned++;
    }
  })();
  const ax = await client.result();
  await churn;
  t.equal(ax.code, 0, `under ax: ${ax.stdout}${ax.stderr}`);
  t.ok(churned >= 2, `apps came and went during the run (${churned})`);
  const reused = Number(/^ok rounds=6000 reused=(\d+)/m.exec(ax.stdout)?.[1] ?? 0);
  t.ok(reused > 0, `fd numbers were reused across sockets with different peers (${reused} times)`);
});

t.test('a server answers a client it heard from long ago, after thousands of other clients', async (t) => {
  // The server's socket A hears "hold" from a client, then its socket B serves 3000 other clients
  // (more than the process's flow table remembers), then the client says "go" on A and A replies:
  // the reply must reach it (A's receive memo still knows the client, whatever the table forgot).
  const srv = script(
    'two-sockets.py',
    `
import select, socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('0.0.0.0', 7100))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(('0.0.0.0', 7101))
print('bound', flush=True)
while True:
    for s in select.select([a, b], [], [])[0]:
        d, addr = s.recvfrom(2000)
        if s is b:
            s.sendto(d, addr)
        elif d == b'go':
            s.sendto(b'GO', addr)
`,
  );
  const cli = script(
    'hold-go.py',
    `
import os, socket, sys, time
x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); x.settimeout(3)
x.sendto(b'hold', ('longago', 7100))
n = 0
for i in range(3000):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
    c.sendto(b'x', ('longago', 7101))
    n += c.recv(10) == b'x'
    c.close()
print('others', n, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
x.sendto(b'go', ('longago', 7100))
try:
    d, a = x.recvfrom(10)
    print('reply', d.decode(), 'from', a[0], a[1], flush=True)
except socket.timeout:
    print('no reply', flush=True)
`,
  );
  const d = await TestDaemon.start(t);
  const s = d.run(['--name', 'longago', '--ip', '10.5.4.1'], [PY, srv]);
  await s.waitFor(/bound/);
  const go = join(work, 'longago.go');
  const c = d.run(['--ip', '10.5.4.9'], [PY, cli, go]);
  await c.waitFor(/^others/m, 30_000);
  // the reply to "go" needs no daemon message: the socket's receive memo knows its client
  const asked = async () => Number(/^direct_handoffs\s+(\d+)/m.exec((await d.ax(['status'])).stdout)?.[1] ?? NaN);
  const before = await asked();
  writeFileSync(go, '');
  const r = await c.result();
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^others 3000$/m);
  t.match(r.stdout, /^reply GO from 10\.5\.4\.1 7100$/m, r.stdout);
  t.equal(await asked(), before, 'no daemon message for the reply');
});

t.test('a UDP service socket passed over SCM_RIGHTS to another app, then to a forked child, keeps its service and identities', async (t) => {
  // The kernel socket is the unit: the app that bound it exits, a process of another
  // ax run receives it over a unix socket, forks, and the child serves it.
  const d = await TestDaemon.start(t);
  const path = join(work, 'fdpass.sock');
  const sender = script(
    'fdsend.py',
    `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9100))
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(sys.argv[1])
socket.send_fds(c, [b'fd'], [s.fileno()])
print('passed', flush=True)
`,
  );
  const rx = d.run([], [PY, echo, `unix:${path}`]);
  await rx.waitFor(/waiting/);
  const tx = await d.run(['--name', 'fdsrv', '--ip', '10.5.2.1'], [PY, sender, path]).result();
  t.equal(tx.code, 0, tx.stderr);
  await rx.waitFor(/bound/);
  t.match(rx.stdout, /bound \('0\.0\.0\.0', 9100\)/, 'getsockname as natively: the wildcard and the port the app bound');
  t.ok((await d.get('services')).some((x) => x.name === 'fdsrv' && x.proto === 'udp' && x.vport === 9100), 'the service outlives the app that bound it');
  const r = await d.run(['--ip', '10.5.2.9'], [PY, client, 'fdsrv', '9100']).result();
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /reply UNCONNECTED from 10\.5\.2\.1 9100/);
  t.match(r.stdout, /reply CONNECTED from 10\.5\.2\.1 9100/);
  t.match(rx.stdout, /got unconnected from 10\.5\.2\.9 \d+/, 'the child sees the client VIP');
  t.match(rx.stdout, /got connected from 10\.5\.2\.9 \d+/);
});

t.test('dnsmasq, a real Debian UDP server, serves DNS on a virtual port 53 without privilege', { skip: !existsSync('/usr/sbin/dnsmasq') && 'dnsmasq not installed' }, async (t) => {
  const d = await TestDaemon.start(t);
  const dns = d.run(
    ['--name', 'ns', '--ip', '10.5.0.53'],
    // --except-interface: any interface option turns off dnsmasq's local-service default
    // (which answers only sources on directly connected subnets; ax clients are VIPs).
    ['/usr/sbin/dnsmasq', '--no-daemon', '--port=53', '--no-resolv', '--no-hosts', '--except-interface=none0', '--address=/thing.test/192.0.2.9', '--log-queries'],
  );
  await d.until('dnsmasq bound', async () => (await d.get('services')).some((s) => s.name === 'ns' && s.proto === 'udp' && s.vport === 53));
  const r = await d.run([], ['dig', '+short', '+time=2', '+tries=1', '@10.5.0.53', 'thing.test']).result();
  t.equal(r.stdout.trim(), '192.0.2.9', `dig through the virtual address\n${r.stderr}`);
  const byName = await d.run([], ['dig', '+short', '+time=2', '+tries=1', '@ns', 'thing.test']).result();
  t.equal(byName.stdout.trim(), '192.0.2.9', 'and by the server name');
  await dns.waitFor(/query\[A\] thing\.test from 10\.240\.\d+\.\d+/);
});

t.test('no datagram to a virtual address leaves through a real interface', async (t) => {
  // A namespace of its own with a veth interface holding the default route, so a
  // virtual address that escaped would be counted there. The native run shows the
  // counter works (datagrams to the same addresses without ax are counted).
  const sh = script(
    'hidden.sh',
    `
set -e
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
ip link set lo up
ip link add axd0 type veth peer name axd1
echo 1 > /proc/sys/net/ipv6/conf/axd0/disable_ipv6 2>/dev/null || true
echo 1 > /proc/sys/net/ipv6/conf/axd1/disable_ipv6 2>/dev/null || true
ip addr add 192.0.2.1/24 dev axd0
ip link set axd1 up
ip link set axd0 up
ip route add default via 192.0.2.254
ip neigh replace 192.0.2.254 lladdr 02:00:00:00:00:01 dev axd0 nud permanent
tx() { awk '/axd0:/ { sub(/.*axd0:/, ""); print $10 }' /proc/net/dev; }
dir=$(mktemp -d); chmod 755 $dir
node ${AX} daemon --socket $dir/ax.sock --state-dir $dir/state --vip-range 10.5.0.0/16 --ports 41000-41100 >$dir/d.log 2>&1 &
for i in $(seq 50); do [ -S $dir/ax.sock ] && grep -q "ready:" $dir/d.log && break; sleep 0.1; done
node ${AX} run --socket $dir/ax.sock --no-start --name sink --ip 10.5.0.1 -- ${PY} ${echo} 7 >/dev/null &
sleep 1
start=$(tx)
# under ax: registered and unregistered VIPs, closed ports, connected and unconnected, by name
node ${AX} run --socket $dir/ax.sock --no-start -- ${PY} -c "
import socket
for host, port in [('10.5.0.1', 7), ('10.5.0.1', 9), ('10.5.0.77', 7), ('sink', 7)]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(5):
        try: s.sendto(b'x', (host, port))
        except OSError: pass
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        c.connect((host, port))
        for i in range(5): c.send(b'y')
    except OSError: pass
" || true
sleep 0.3
echo "ax $(( $(tx) - start ))"
start=$(tx)
${PY} -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5): s.sendto(b'x', ('10.5.0.1', 7))
"
sleep 0.3
echo "native $(( $(tx) - start ))"
`,
  );
  const r = await run('unshare', ['-n', 'bash', sh], { timeoutMs: 30_000 });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^ax 0$/m, `nothing left through the real interface under ax\n${r.stdout}${r.stderr}`);
  t.match(r.stdout, /^native 5$/m, 'the same datagrams without ax do (the counter works)');
});

