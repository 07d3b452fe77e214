// A socket's virtual identity belongs to the kernel socket, not to a process:
// listeners kept by children, sockets inherited across exec or received over
// SCM_RIGHTS, servers restarted at once, clients with chosen source ports,
// privilege-dropping workers. Each case runs real programs (python3, nginx,
// node cluster, memcached, systemd-socket-activate, curl) and compares with
// what the kernel does natively.
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cbin, clean, have, nginxConf, run, sleep, start, TestDaemon } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'ax-ident-'));
chmodSync(work, 0o755);
const PY = '/usr/bin/python3';

/** A TCP server that answers each connection with "<tag> <peer ip>:<peer port> <local ip>:<local port>". */
const SERVE = `
import socket, sys, os
def serve(s, tag):
    while True:
        c, peer = s.accept()
        c.sendall(('%s %s:%d %s:%d\\n' % (tag, peer[0], peer[1], *c.getsockname()[:2])).encode())
        c.close()
`;

/** A python client: one connection, prints the first line the server sends. */
const GET = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(s.makefile().readline().strip(), flush=True)
`;

function script(name: string, text: string): string {
  const p = join(work, name);
  writeFileSync(p, text);
  chmodSync(p, 0o644);
  return p;
}

const get = script('get.py', GET);

async function fetchLine(d: TestDaemon, host: string, port: number, ip = '10.77.0.9'): Promise<string> {
  const r = await d.run(['--ip', ip], [PY, get, host, String(port)]).result();
  return r.stdout.trim() || `error: ${r.stderr.trim().split('\n').pop()}`;
}

t.test('a listener kept by a child after the parent exits (double fork) stays registered', async (t) => {
  const d = await TestDaemon.start(t);
  const p = script(
    'forkserve.py',
    SERVE +
      `
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 80)); s.listen(16)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        null = os.open('/dev/null', os.O_RDWR)
        for f in (0, 1, 2): os.dup2(null, f)
        serve(s, 'child')
    os._exit(0)
s.close()
os.wait()
os.close(w)
print('child pid', os.read(r, 32).decode(), flush=True)
print('parent exits', flush=True)
`,
  );
  const srv = d.run(['--name', 'forked'], [PY, p]);
  const r = await srv.result();
  t.equal(r.code, 0, 'the parent exited');
  const child = Number(/child pid (\d+)/.exec(r.stdout)?.[1]);
  t.teardown(() => {
    try {
      process.kill(child, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  await sleep(600); // more than the daemon's sweep period
  t.equal((await d.get('services')).length, 1, 'the service is still in the table');
  t.match(await fetchLine(d, 'forked', 80), /^child (::ffff:)?10\.77\.0\.9:\d+ (0\.0\.0\.0|10\.240\.\d+\.\d+):80$/, 'the child serves, and sees the client VIP');
  process.kill(child, 'SIGKILL');
  await d.until('the service ends with the last holder of the listener', async () => (await d.get('services')).length === 0);
  t.pass('the service ended when the child, the last holder, died');
});

t.test('a socket inherited across exec keeps its virtual view (getsockname, and accept sees VIPs)', async (t) => {
  const d = await TestDaemon.start(t);
  const child = script(
    'exec2.py',
    SERVE +
      `
fd = int(sys.argv[1])
s = socket.socket(fileno=fd)
print('inherited', s.getsockname()[:2], flush=True)
serve(s, 'execd')
`,
  );
  const parent = script(
    'exec1.py',
    `
import socket, os, sys
s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(8)
os.set_inheritable(s.fileno(), True)
os.execv('${PY}', ['${PY}', '-u', '${child}', str(s.fileno())])
`,
  );
  const srv = d.run(['--name', 'execd'], [PY, '-u', parent]);
  await srv.waitFor(/inherited \(.*\)\n/);
  t.match(srv.stdout, /inherited \('0\.0\.0\.0', 8080\)/, `getsockname after exec is the virtual address (${srv.stdout.trim()})`);
  t.match(await fetchLine(d, 'execd', 8080), /^execd (::ffff:)?10\.77\.0\.9:\d+ \S+:8080$/, 'served after exec, client VIP seen');
  // The reference: the same programs without ax, in the same namespace.
  const native = start(PY, ['-u', parent], {}, t);
  await native.waitFor(/inherited \(.*\)\n/);
  t.equal(srv.stdout.split('\n')[0], native.stdout.split('\n')[0], 'the same getsockname as natively');
  native.killGroup();
});

t.test('inetd style: accept, then exec a handler that finds the client VIP on fd 0', async (t) => {
  const d = await TestDaemon.start(t);
  const handler = script(
    'handler.py',
    `
import socket
s = socket.socket(fileno=0)
peer = s.getpeername(); me = s.getsockname()
s.sendall(('handler %s:%d %s:%d\\n' % (peer[0], peer[1], me[0], me[1])).encode())
`,
  );
  const inetd = script(
    'inetd.py',
    `
import socket, os
s = socket.socket(); s.bind(('0.0.0.0', 79)); s.listen(8)
print('up', flush=True)
while True:
    c, _ = s.accept()
    if os.fork() == 0:
        os.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1)
        os.execv('${PY}', ['${PY}', '${handler}'])
    c.close()
    os.waitpid(-1, os.WNOHANG)
`,
  );
  const srv = d.run(['--name', 'finger', '--ip', '10.5.5.5'], [PY, '-u', inetd]);
  await srv.waitFor(/up/);
  t.match(await fetchLine(d, 'finger', 79, '10.77.0.42'), /^handler (::ffff:)?10\.77\.0\.42:\d+ 10\.5\.5\.5:79$/, 'the exec\'d handler sees both virtual ends');
});

t.test('systemd-socket-activate passes the listener to the service', { skip: !have('systemd-socket-activate') && 'no systemd-socket-activate' }, async (t) => {
  const d = await TestDaemon.start(t);
  const svc = script(
    'activated.py',
    SERVE +
      `
import os
assert os.environ.get('LISTEN_FDS') == '1'
s = socket.socket(fileno=3)
print('activated', s.getsockname()[:2], flush=True)
serve(s, 'activated')
`,
  );
  const srv = d.run(['--name', 'act'], ['systemd-socket-activate', '-l', '0.0.0.0:81', PY, '-u', svc]);
  await srv.waitFor(/Listening on/);
  const line = await fetchLine(d, 'act', 81);
  t.match(line, /^activated (::ffff:)?10\.77\.0\.9:\d+ \S+:81$/, `activated on the first connection (${line})`);
  await srv.waitFor(/activated \('0\.0\.0\.0', 81\)/);
  t.pass('the activated service sees the virtual address');
});

t.test('a server restarted at once on its port binds at once, 10 times in a row', async (t) => {
  const d = await TestDaemon.start(t);
  const one = script(
    'one.py',
    SERVE +
      `
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(('0.0.0.0', 80))
except OSError as e:
    print('bind failed', e.errno, flush=True); sys.exit(1)
s.listen(8); print('up', flush=True)
serve(s, 'gen')
`,
  );
  const driver = script(
    'restart.py',
    `
import subprocess, sys, time
ok = 0
for i in range(10):
    p = subprocess.Popen(['${PY}', '-u', '${one}'], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line == 'up': ok += 1
    else: print('run', i, line, flush=True)
    p.kill(); p.wait()
print('restarts ok', ok, flush=True)
`,
  );
  const r = await d.run(['--name', 'again'], [PY, '-u', driver]).result(60_000);
  t.match(r.stdout, /restarts ok 10/, `every restart bound at once (${r.stdout.trim()})`);
});

t.test('listeners closed and made again in a tight loop (iperf3 -s does it per test) all listen, while others close theirs', async (t) => {
  // Every close has the daemon ask the kernel which sockets live (sock_diag). A dump walks the
  // listening and the bound tables one after the other: a socket bound before the dump and
  // listening during it was in neither, was taken for gone, and its LISTEN refused (EBADF).
  const d = await TestDaemon.start(t);
  const loop = script(
    'relisten.py',
    `
import socket, sys
port, n, bad = int(sys.argv[1]), int(sys.argv[2]), 0
for i in range(n):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('::', port)); s.listen(8)
    except OSError as e:
        bad += 1; print('run', i, 'errno', e.errno, flush=True)
    s.close()
print('listened', n - bad, 'of', n, flush=True)
`,
  );
  const runs = [7001, 7002, 7003].map((port) => d.run(['--name', `relisten${port}`], [PY, '-u', loop, String(port), '300']).result(60_000));
  for (const r of await Promise.all(runs)) t.match(r.stdout, /listened 300 of 300/, `every listen worked (${r.stdout.trim().split('\n').slice(-3).join('; ')})`);
});

t.test('a client that binds a chosen source port keeps it (curl --local-port)', async (t) => {
  const d = await TestDaemon.start(t);
  const p = script('plain.py', SERVE + `\ns = socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(8); print('up', flush=True)\nserve(s, 'srv')\n`);
  const srv = d.run(['--name', 'lp'], [PY, '-u', p]);
  await srv.waitFor(/up/);
  const r = await d.run(['--ip', '10.77.0.5'], ['curl', '-sS', '--max-time', '5', '--local-port', '23000-23010', '--http0.9', 'http://lp/']).result();
  t.match(r.stdout, /^srv (::ffff:)?10\.77\.0\.5:230(0\d|10) /, `the server saw the client's VIP and chosen port (${r.stdout.trim()} ${r.stderr.trim()})`);
});

t.test('a closed port of a service that is up refuses at once, blocking or not', async (t) => {
  const d = await TestDaemon.start(t);
  const p = script('p80.py', SERVE + `\ns = socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(8); print('up', flush=True)\nserve(s, 'srv')\n`);
  const srv = d.run(['--name', 'cl'], [PY, '-u', p]);
  await srv.waitFor(/up/);
  const probe = `
import socket, time, sys
t0 = time.monotonic()
try:
    socket.create_connection(('cl', int(sys.argv[1])))
    print('connected')
except OSError as e:
    print('errno', e.errno, 'ms', int((time.monotonic() - t0) * 1000))
`;
  const r = await d.run([], [PY, '-c', probe, '81']).result();
  const m = /errno (\d+) ms (\d+)/.exec(r.stdout);
  t.equal(m?.[1], '111', `ECONNREFUSED (${r.stdout.trim()})`);
  t.ok(m && Number(m[2]) < 1000, `refused at once, not after the 5 s connect-wait (${m?.[2]} ms)`);
});

t.test('fd passing: node cluster workers under both scheduling policies', async (t) => {
  const d = await TestDaemon.start(t);
  const app = `
const cluster = require('cluster'), http = require('http');
if (cluster.isPrimary) {
  let up = 0;
  for (let i = 0; i < 2; i++) cluster.fork().on('message', () => { if (++up === 2) console.log('workers up'); });
  cluster.on('exit', (w, code) => console.log('worker died ' + code));
} else {
  const srv = http.createServer((req, res) => res.end('w' + cluster.worker.id + ' ' + req.socket.remoteAddress + ' ' + JSON.stringify(srv.address()) + '\\n'));
  srv.listen(80, () => process.send('up'));
  srv.on('error', (e) => { console.log('listen error ' + e.code); process.exit(3); });
}`;
  const appFile = script('cluster.js', app);
  for (const policy of ['rr', 'none']) {
    const srv = d.run(['--name', `nc${policy}`], ['node', appFile], { env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: policy } });
    await srv.waitFor(/workers up|listen error|worker died/, 15_000);
    t.notMatch(srv.stdout, /listen error|worker died/, `${policy}: workers listen (${srv.stdout.trim()})`);
    const lines: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await d.run(['--ip', '10.77.1.1'], ['curl', '-sS', '--max-time', '5', `http://nc${policy}/`]).result();
      lines.push(r.stdout.trim() || r.stderr.trim());
    }
    for (const l of lines) t.match(l, /^w\d (::ffff:)?10\.77\.1\.1 \{"address":"(::|0\.0\.0\.0)","family":"IPv[46]","port":80\}$/, `${policy}: ${l}`);
    srv.kill('SIGKILL');
    srv.killGroup();
  }
});

t.test('nginx: workers as nobody see client VIPs; binary upgrade (USR2, then QUIT) with traffic flowing', { skip: !have('nginx') && 'no nginx' }, async (t) => {
  const d = await TestDaemon.start(t);
  const { dir, conf } = nginxConf('ax-nginx-', 'server { listen 80; location / { return 200 "nginx $remote_addr $server_addr:$server_port\\n"; } }', 'nobody nogroup');
  // nginx re-executes argv[0] on USR2: start it by its full path
  const start = await d.run(['--name', 'ngx'], ['/usr/sbin/nginx', '-c', conf]).result();
  t.teardown(() => {
    for (const f of ['nginx.pid', 'nginx.pid.oldbin']) {
      try {
        process.kill(Number(readFileSync(join(dir, f), 'utf8')), 'SIGKILL');
      } catch {
        /* not running */
      }
    }
  });
  t.equal(start.code, 0, `nginx started and daemonized (${start.stderr.trim()})`);
  const curl = async () => (await d.run(['--ip', '10.77.2.2'], ['curl', '-sS', '--max-time', '3', 'http://ngx/']).result()).stdout.trim();
  t.match(await curl(), /^nginx 10\.77\.2\.2 10\.240\.\d+\.\d+:80$/, 'a nobody worker answers and sees the client VIP');
  const oldPid = Number(readFileSync(join(dir, 'nginx.pid'), 'utf8'));
  // traffic throughout the upgrade
  let failures = 0;
  let served = 0;
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const out = await curl();
      if (/^nginx /.test(out)) served++;
      else failures++;
    }
  })();
  t.teardown(() => {
    stop = true;
  });
  process.kill(oldPid, 'SIGUSR2');
  await d.until('new master', async () => {
    try {
      return Number(readFileSync(join(dir, 'nginx.pid'), 'utf8')) !== oldPid;
    } catch {
      return false;
    }
  });
  await sleep(500);
  process.kill(oldPid, 'SIGQUIT');
  await d.until('old master gone', async () => {
    try {
      process.kill(oldPid, 0);
      return false;
    } catch {
      return true;
    }
  });
  await sleep(500);
  stop = true;
  await loop;
  const newPid = Number(readFileSync(join(dir, 'nginx.pid'), 'utf8'));
  t.ok(served > 0, `${served} requests served during the upgrade`);
  t.equal(failures, 0, 'no request failed during the upgrade');
  t.match(await curl(), /^nginx 10\.77\.2\.2 /, 'the new master serves after the old one quit');
  t.notMatch(readFileSync(join(dir, 'error.log'), 'utf8'), /\[emerg\]/, 'no emergency in nginx error log');
  t.equal((await d.get('services')).length, 1, 'the service lives on');
  process.kill(newPid, 'SIGTERM');
  await d.until('service gone after nginx stops', async () => (await d.get('services')).length === 0);
  t.pass('the last close of the listener frees the service');
});

t.test('memcached -u nobody binds and serves under the default socket layout', { skip: !have('memcached') && 'no memcached' }, async (t) => {
  const d = await TestDaemon.start(t);
  const mc = d.run(['--name', 'mc'], ['memcached', '-u', 'nobody', '-p', '11211', '-U', '0', '-l', '0.0.0.0']);
  await d.until('memcached listening', async () => (await d.get('services')).some((s) => s.vport === 11211));
  const cli = `
import socket
s = socket.create_connection(('mc', 11211), timeout=5)
s.sendall(b'set k 0 0 2\\r\\nhi\\r\\nget k\\r\\n')
buf = b''
while b'END' not in buf: buf += s.recv(100)
print(buf.decode().replace('\\r\\n', '|'))
`;
  const r = await d.run([], [PY, '-c', cli]).result();
  t.match(r.stdout, /STORED\|VALUE k 0 2\|hi\|END/, `set and get (${r.stdout.trim()} ${r.stderr.trim()})`);
  mc.kill();
});

t.test('200 destinations from one process stay cached: no daemon message after the first round', async (t) => {
  const d = await TestDaemon.start(t);
  const many = script(
    'many.py',
    `
import socket, selectors
sel = selectors.DefaultSelector()
for p in range(1000, 1200):
    s = socket.socket(); s.bind(('0.0.0.0', p)); s.listen(64); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print('up', flush=True)
while True:
    for k, _ in sel.select():
        c, _ = k.fileobj.accept(); c.close()
`,
  );
  const srv = d.run(['--name', 'many'], [PY, '-u', many]);
  await srv.waitFor(/up/, 20_000);
  const client = `
import socket
for rnd in range(2):
    for p in range(1000, 1200):
        s = socket.create_connection(('many', p), timeout=5); s.close()
    print('round', rnd, flush=True)
`;
  const before = Number(/direct_handoffs\s+(\d+)/.exec((await d.ax(['status'])).stdout)?.[1]);
  const r = await d.run([], [PY, '-c', client]).result(60_000);
  t.match(r.stdout, /round 1/, `400 connects (${r.stderr.trim()})`);
  const after = Number(/direct_handoffs\s+(\d+)/.exec((await d.ax(['status'])).stdout)?.[1]);
  t.equal(after - before, 200, 'the daemon answered the first connect to each of the 200 destinations, and nothing after');
});

t.test('kernel semantics: second bind EINVAL, reconnect after a refusal, MSG_FASTOPEN, chosen source port', async (t) => {
  const d = await TestDaemon.start(t);
  const nat = start(cbin('echoserver'), ['127.0.0.1', '0'], {}, t);
  const natPort = (await nat.waitFor(/listening ip=\S+ port=(\d+)/))[1];
  const gone = start(cbin('echoserver'), ['127.0.0.1', '0'], {}, t);
  const closedPort = (await gone.waitFor(/port=(\d+)/))[1];
  gone.kill('SIGKILL');
  await gone.exited;
  const native = await run(cbin('semantics'), ['127.0.0.1', natPort, closedPort, '24001']);
  clean(t, 'native', native);
  const srv = d.run(['--name', 'sem'], [cbin('echoserver'), '0.0.0.0', '7']);
  await srv.waitFor(/listening ip=0\.0\.0\.0 port=7\b/);
  const ax = await d.run(['--ip', '10.77.3.3'], [cbin('semantics'), 'sem', '7', '8', '24002']).result(30_000);
  clean(t, 'under ax', ax);
  const first = (o: string) => /reconnect_first=(\d+)/.exec(o)?.[1];
  t.equal(first(ax.stdout), first(native.stdout), 'the connect after a refusal reports what the kernel reports natively');
  t.ok(await srv.count(/peer=10\.77\.3\.3:24002\b/g, 1) >= 1, 'the server saw the chosen source port and the client VIP');
});

t.test('an app that ended does not hold its name: not across a daemon restart, not with a placeholder', async (t) => {
  const d = await TestDaemon.start(t);
  // Its command exited: a non-blocking client is refused at once, not held for the connect-wait.
  const dead = await d.run(['--name', 'dead'], ['false']).result();
  t.equal(dead.code, 1);
  // curl gives up after 3 s (exit 28): a 5 s hold would show as that, not as a refusal
  const c = await d.run([], ['curl', '-sS', '--max-time', '3', 'http://dead/']).result(20_000);
  t.ok(c.code === 7 || c.code === 6, `refused or unknown at once, not held (exit ${c.code}: ${c.stderr.trim()})`);
  // ax run and the daemon both killed; the daemon restarts: the name is free at once.
  const web = d.run(['--name', 'gone'], ['sleep', '60']);
  await d.until('gone registered', async () => (await d.get('apps')).some((a) => a.name === 'gone'));
  d.proc.kill('SIGKILL');
  await d.proc.exited;
  web.kill('SIGKILL');
  await web.exited;
  await d.launch();
  const again = await d.run(['--name', 'gone', '--ip', '10.77.9.9'], ['true']).result();
  t.equal(again.code, 0, `the name is free right after the restart (${again.stderr.trim()})`);
});

t.test('name answers are kept per process until the table changes', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'named'], [PY, '-u', '-m', 'http.server', '80'], { cwd: work });
  await srv.waitFor(/Serving HTTP/);
  const log = join(work, 'resolve.log');
  const resolve = `
import socket
for i in range(50):
    socket.getaddrinfo('named', 80)
    socket.getaddrinfo('not-an-ax-name.invalid', 80) if False else None
print(socket.getaddrinfo('named', 80, socket.AF_INET)[0][4][0])
`;
  const r = await d.run([], [PY, '-c', resolve], { env: { ...process.env, AX_HOOK_DEBUG: log } }).result();
  t.match(r.stdout, /^10\.240\.\d+\.\d+$/m, `the name resolves (${r.stderr.trim()})`);
  const asked = readFileSync(log, 'utf8').split('\n').filter((l) => /resolve named: asking the daemon/.test(l)).length;
  t.ok(asked >= 1 && asked <= 2, `51 lookups, ${asked} asked the daemon (AF_UNSPEC and AF_INET are separate answers)`);
  srv.kill();
});

t.test('a corrupted identity map is refused by the hook: apps work on (no cache, real peers), the daemon serves on', async (t) => {
  const d = await TestDaemon.start(t);
  const map = join(d.dir, 'ax-hook.sock.map');
  const fd = openSync(map, 'r+');
  writeSync(fd, Buffer.from('JUNK'), 0, 4, 4); // the magic word
  closeSync(fd);
  const p = script('plain2.py', SERVE + `\ns = socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(8); print('up', flush=True)\nserve(s, 'srv')\n`);
  const log = join(work, 'badmap.log');
  const env = { env: { ...process.env, AX_HOOK_DEBUG: log } };
  const srv = d.run(['--name', 'badmap'], [PY, '-u', p], env);
  await srv.waitFor(/up/);
  const r = await d.run([], [PY, get, 'badmap', '80'], env).result();
  t.match(r.stdout, /^srv 127\.\d+\.\d+\.\d+:\d+ /, `served; without the map the server sees the client's real address (${r.stdout.trim()} ${r.stderr.trim()})`);
  t.match(readFileSync(log, 'utf8'), /identity map .*: unknown layout/, 'the hook said why it did not use the map');
  t.equal((await d.get('services')).length, 1, 'the daemon serves on');
});
