// Accept filtering (issue 10): connections from peers outside ax reach a server under
// ax only when policy allows them (from_cidr rules, then --policy-unknown-peers); a
// denied one is reset before the app sees it and the server goes on accepting. Real
// servers (python http.server, python asyncio, node, nginx) and native curl from
// loopback addresses, compared with curl under ax.
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PolicyEngine } from '../src/policy/decide';
import { parsePolicyText } from '../src/policy/rules';
import { have, nginxConf, run, start, TestDaemon } from './helpers';

const www = mkdtempSync(join(tmpdir(), 'ax-pacc-'));
chmodSync(www, 0o755);
writeFileSync(join(www, 'index.html'), 'hello from web\n');

/** curl outside ax, from source address `src`: stdout and exit code. */
async function native(port: number, src = '127.0.0.1'): Promise<{ out: string; code: number | null }> {
  const r = await run('curl', ['-sS', '--max-time', '5', '--interface', src, `http://127.0.0.1:${port}/`]);
  return { out: r.stdout, code: r.code };
}

interface Ev {
  op: string;
  verdict: string;
  rule: string;
  src: { name: string };
  dst: { name: string };
  detail?: string;
}

async function acceptEvents(d: TestDaemon): Promise<Ev[]> {
  const r = await d.ax(['events', '-o', 'json']);
  if (r.code !== 0) throw new Error(`ax events: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { events: Ev[] }).events.filter((e) => e.op === 'accept');
}

async function hostPort(d: TestDaemon, name: string): Promise<number> {
  let port = 0;
  await d.until(`${name} listening`, async () => {
    port = (await d.get('services')).find((s) => s.name === name)?.host_port ?? 0;
    return port > 0;
  });
  return port;
}

t.test('--policy-unknown-peers deny: native peers are reset, ax peers connect, from_cidr rules admit, changes apply at the next accept', async (t) => {
  const d = await TestDaemon.start(t, ['--policy-unknown-peers', 'deny']);
  const web = d.run(['--name', 'web'], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  const port = await hostPort(d, 'web');

  // Two connections from each of two peers, nothing else changing the table meanwhile
  // (an `ax run` adds an app: a new generation, cached verdicts are asked again).
  const r1 = await native(port);
  t.not(r1.code, 0, `a native curl from 127.0.0.1 is refused (curl exit ${r1.code})`);
  t.equal(r1.out, '', 'and gets no answer');
  t.not((await native(port)).code, 0, 'the same peer again: refused (cached verdict)');
  t.not((await native(port, '127.0.0.9')).code, 0, 'another peer (127.0.0.9): refused');
  t.not((await native(port, '127.0.0.9')).code, 0, 'and again');
  const evs = await acceptEvents(d);
  t.equal(evs.length, 2, `one accept decision per peer IP for four connections: the daemon was asked once per peer (${evs.map((e) => e.src.name).join(' ')})`);
  t.match(evs[0], { verdict: 'deny', rule: 'default:unknown-peers-deny', src: { name: /^127\.0\.0\.1:\d+$/ }, dst: { name: 'web' } });
  t.match(evs[1], { verdict: 'deny', src: { name: /^127\.0\.0\.9:\d+$/ } });

  const byAx = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://web/']).result();
  t.equal(byAx.stdout, 'hello from web\n', 'a curl under ax connects (judged at its connect)');
  await web.waitFor(/^(::ffff:)?10\.240\.\d+\.\d+ - - .*"GET \/ HTTP/m);
  t.notMatch(web.stdout + web.stderr, /127\.0\.0\.[19] - - /, 'the server never logged a request from the native peers');

  // a from_cidr rule for 127.0.0.0/8 admits the native peer
  const add = await d.ax(['policy', 'add', 'lo', 'allow', '--from-cidr', '127.0.0.0/8', '--to', 'ax.name=web']);
  t.equal(add.code, 0, `policy add --from-cidr (${add.stderr.trim()})`);
  const r4 = await native(port);
  t.equal(r4.out, 'hello from web\n', 'with the from_cidr rule the native curl is answered');
  await web.waitFor(/^127\.0\.0\.1 - - .*"GET \/ HTTP/m);
  const evs2 = await acceptEvents(d);
  t.match(evs2[evs2.length - 1], { verdict: 'allow', rule: 'lo' }, 'the allow is recorded with its rule');

  // a deny rule for one address wins over the allow
  t.equal((await d.ax(['policy', 'add', 'not9', 'deny', '--from-cidr', '127.0.0.9'])).code, 0);
  t.not((await native(port, '127.0.0.9')).code, 0, 'deny wins: 127.0.0.9 refused');
  t.equal((await native(port)).out, 'hello from web\n', '127.0.0.1 still admitted');

  // the rule removed: the next accept from that peer is refused again
  t.equal((await d.ax(['policy', 'rm', 'lo'])).code, 0);
  const r5 = await native(port);
  t.not(r5.code, 0, 'rule removed: the next native connection is refused');
  const byAx2 = await d.run([], ['curl', '-sS', '--max-time', '5', 'http://web/']).result();
  t.equal(byAx2.stdout, 'hello from web\n', 'ax clients are unaffected');
  web.kill();
});

t.test('filtering off (no from_cidr rule, unknown peers allowed): the hook asks nothing at accept', async (t) => {
  const d = await TestDaemon.start(t);
  // the hook's own log says when it asks the daemon at accept
  const dbg = join(www, `hook-${process.pid}.log`);
  const web = d.run(['--name', 'web'], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www, env: { ...process.env, AX_HOOK_DEBUG: dbg } });
  await web.waitFor(/Serving HTTP/);
  const port = await hostPort(d, 'web');
  const asked = () => (existsSync(dbg) ? readFileSync(dbg, 'utf8').match(/accept on socket \d+: peer \w+ by the daemon/g) ?? [] : []).length;
  for (const src of ['127.0.0.1', '127.0.0.2']) t.equal((await native(port, src)).out, 'hello from web\n', `native curl from ${src} answered`);
  t.equal((await acceptEvents(d)).length, 0, 'no accept decision: the daemon was never asked');
  t.equal(asked(), 0, 'and the hook sent no message at accept (its log)');
  // a from_cidr rule turns filtering on at once (the map's flag), without restarting the app
  t.equal((await d.ax(['policy', 'add', 'no2', 'deny', '--from-cidr', '127.0.0.2/32'])).code, 0);
  t.not((await native(port, '127.0.0.2')).code, 0, 'a deny from_cidr rule resets 127.0.0.2');
  t.equal((await native(port, '127.0.0.1')).out, 'hello from web\n', '127.0.0.1 still allowed (--policy-unknown-peers allow)');
  t.same((await acceptEvents(d)).map((e) => `${e.verdict} ${e.rule}`), ['deny no2', 'allow default:unknown-peers-allow']);
  t.equal(asked(), 2, 'filtering on: the hook asked twice, once per peer');
  web.kill();
});

// Event-loop servers: non-blocking accept (accept4 SOCK_NONBLOCK) driven by epoll. Each
// answers "<tag> <peer address>" and closes.
const NODE = `require('net').createServer((c) => c.end('node ' + c.remoteAddress + '\\n')).listen(80, () => console.log('up'));`;
const ASYNCIO = `
import asyncio
async def h(r, w):
    w.write(('asyncio %s\\n' % w.get_extra_info('peername')[0]).encode()); await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(h, '0.0.0.0', 80); print('up', flush=True)
    async with s: await s.serve_forever()
asyncio.run(main())
`;

for (const [tag, cmd] of [
  ['node', ['node', '-e', NODE]],
  ['asyncio', ['python3', '-u', '-c', ASYNCIO]],
] as const) {
  t.test(`${tag} (epoll, non-blocking accept): a reset peer does not stall the loop`, async (t) => {
    const d = await TestDaemon.start(t, ['--policy-unknown-peers', 'deny']);
    const srv = d.run(['--name', tag], [...cmd]);
    await srv.waitFor(/up/);
    const port = await hostPort(d, tag);
    for (let i = 0; i < 3; i++) {
      t.not((await native(port)).code, 0, `native peer ${i + 1} refused`);
      const ok = await d.run(['--ip', '10.77.3.3'], ['curl', '-sS', '--http0.9', '--max-time', '5', `http://${tag}/`]).result();
      t.match(ok.stdout, new RegExp(`^${tag} (::ffff:)?10\\.77\\.3\\.3\\n$`), `then a curl under ax is served (${ok.stdout.trim() || ok.stderr.trim()})`);
    }
    // several at once: the refused ones are skipped, every ax client is served
    const all = await Promise.all([
      native(port),
      d.run(['--ip', '10.77.3.4'], ['curl', '-sS', '--http0.9', '--max-time', '5', `http://${tag}/`]).result(),
      native(port),
      d.run(['--ip', '10.77.3.5'], ['curl', '-sS', '--http0.9', '--max-time', '5', `http://${tag}/`]).result(),
    ]);
    t.not((all[0] as { code: number | null }).code, 0);
    t.not((all[2] as { code: number | null }).code, 0);
    t.match((all[1] as { stdout: string }).stdout, /10\.77\.3\.4/);
    t.match((all[3] as { stdout: string }).stdout, /10\.77\.3\.5/);
    srv.kill();
  });
}

t.test('nginx (workers, epoll): native peers reset, ax peers served', { skip: !have('nginx') && 'no nginx' }, async (t) => {
  const d = await TestDaemon.start(t, ['--policy-unknown-peers', 'deny']);
  const { dir, conf } = nginxConf('ax-nginx-acc-', 'server { listen 80; location / { return 200 "nginx $remote_addr\\n"; } }');
  const started = await d.run(['--name', 'ngx'], ['/usr/sbin/nginx', '-c', conf]).result();
  t.teardown(() => {
    try {
      process.kill(Number(readFileSync(join(dir, 'nginx.pid'), 'utf8')), 'SIGKILL');
    } catch {
      /* not running */
    }
  });
  t.equal(started.code, 0, `nginx started (${started.stderr.trim()})`);
  const port = await hostPort(d, 'ngx');
  for (let i = 0; i < 3; i++) {
    t.not((await native(port)).code, 0, `native peer ${i + 1} refused`);
    const ok = await d.run(['--ip', '10.77.4.4'], ['curl', '-sS', '--max-time', '5', 'http://ngx/']).result();
    t.equal(ok.stdout, 'nginx 10.77.4.4\n', 'a curl under ax is served');
  }
  t.notMatch(readFileSync(join(dir, 'access.log'), 'utf8'), /^127\.0\.0\.1 /m, 'nginx never logged the native peer');
  process.kill(Number(readFileSync(join(dir, 'nginx.pid'), 'utf8')), 'SIGQUIT');
});

t.test('from_cidr rules: schema errors name file, line and field; the decision layer judges peers by them', async (t) => {
  const err = (text: string) => {
    try {
      parsePolicyText(text, 'f.yaml');
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  t.match(err('- id: a\n  action: allow\n  from_cidr: [10.0.0.0/33]\n'), /^f\.yaml:3: rule 1 \(rule "a"\): from_cidr\.0: "10\.0\.0\.0\/33" is not an IPv4 CIDR/);
  t.match(err('- id: a\n  action: allow\n  from: tier=web\n  from_cidr: [10.0.0.0/8]\n'), /^f\.yaml:3: rule 1 \(rule "a"\): from: "from" selects ax apps/);
  t.match(err('- id: a\n  action: allow\n  cidr: [10.0.0.0/8]\n  from_cidr: [10.0.0.0/8]\n'), /^f\.yaml:4: rule 1 \(rule "a"\): from_cidr: a rule has either "from_cidr"/);
  t.match(err('- id: a\n  action: allow\n  kind: publish\n  names: [web]\n  from_cidr: [10.0.0.0/8]\n'), /from_cidr: "from_cidr" is for connect rules/);
  t.match(err('- id: a\n  action: allow\n  from_cidr: []\n'), /from_cidr: from_cidr needs at least one range/);
  const rules = parsePolicyText('- id: lan\n  action: allow\n  from_cidr: [192.168.0.0/16]\n  to: ax.name=web\n  ports: [80]\n- id: bad\n  action: deny\n  from_cidr: [192.168.1.7]\n', 'p.yaml');
  const e = new PolicyEngine({ node: 'n', posture: 'shared-label', denyErrno: 111, unknownPeers: 'deny' });
  t.equal(e.filtersAccept, true, 'unknown peers denied: accepts are filtered');
  e.put(rules);
  const web = { appId: 'w', name: 'web', vip: '10.240.0.1', vport: 80, labels: { 'ax.name': 'web' } };
  t.match(e.accept(undefined, web, '192.168.3.4:5555'), { verdict: 'allow', rule: 'lan' });
  t.match(e.accept(undefined, web, '192.168.1.7:5555'), { verdict: 'deny', rule: 'bad' }, 'deny wins');
  t.match(e.accept(undefined, { ...web, vport: 81 }, '192.168.3.4:5555'), { verdict: 'deny', rule: 'default:unknown-peers-deny' }, 'ports narrow it');
  t.match(e.accept(undefined, { ...web, name: 'db', labels: { 'ax.name': 'db' } }, '192.168.3.4'), { verdict: 'deny' }, 'to selects the service');
  t.match(e.accept(undefined, web, '[::1]:80'), { verdict: 'deny' }, 'IPv6 peers: only the posture');
  const app = { id: 'c', name: 'c', vip: '10.240.0.2', labels: { zone: 'default' }, node: 'n', createdAt: 1 };
  t.equal(e.connect(app, { ...web, labels: { zone: 'default' } }).verdict, 'allow', 'from_cidr rules do not judge ax apps');
  const off = new PolicyEngine({ node: 'n', posture: 'shared-label', denyErrno: 111, unknownPeers: 'allow' });
  t.equal(off.filtersAccept, false, 'no from_cidr rule, unknown peers allowed: no filtering');
  off.put(rules.slice(1));
  t.equal(off.filtersAccept, true, 'a from_cidr rule turns it on');
});

// accept4 called straight through libc (ctypes, so the hook is what answers): the flags
// and the address out-parameters of the connection returned after a refused one.
const ACCEPT4 = `
import ctypes, socket, fcntl, os, sys, errno, struct
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(16)
if sys.argv[1] == 'nonblock': s.setblocking(False)
print('up', flush=True)
for _ in sys.stdin:
    buf = ctypes.create_string_buffer(64); ln = ctypes.c_uint32(int(sys.argv[2]))
    fd = libc.accept4(s.fileno(), buf, ctypes.byref(ln), socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    if fd < 0:
        print('accept', errno.errorcode[ctypes.get_errno()], flush=True); continue
    ip = socket.inet_ntoa(buf.raw[4:8]) if ln.value >= 8 else '-'
    nb = 1 if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK else 0
    ce = 1 if fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC else 0
    print('peer %s len %d nonblock %d cloexec %d' % (ip, ln.value, nb, ce), flush=True)
    os.write(fd, b'hi\\n'); os.close(fd)
`;
/** A native client: connects, prints what it reads or how it ended. */
const NATIVE_CLIENT = `
import socket, sys
try:
    c = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
except ConnectionResetError:
    # the handshake completed and the server's reset came before connect() returned
    # (a blocking accept already waiting: the refusal can beat this process to the CPU)
    print('reset during connect', flush=True); sys.exit(0)
print('connected', flush=True)
try:
    d = c.recv(10); print('read', d.decode().strip() or 'eof', flush=True)
except ConnectionResetError:
    print('reset', flush=True)
`;

t.test('revocation: a rule change that denies a peer outside ax cuts its established connection (the server end)', async (t) => {
  const d = await TestDaemon.start(t);
  const keeper = `
import socket, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('0.0.0.0', 80)); l.listen(8)
print('up', flush=True)
def serve(c):
    while True:
        d = c.recv(100)
        if not d:
            break
        c.sendall(d)
while True:
    c, a = l.accept(); print('peer', a[0], flush=True); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
  const holder = `
import socket, sys, time
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5); s.settimeout(None)
s.sendall(b'ping'); print('echo', s.recv(10).decode(), flush=True)
try:
    d = s.recv(10); print('closed' if not d else 'data', flush=True)
except OSError as e:
    print('cut', e.__class__.__name__, flush=True)
`;
  const srv = d.run(['--name', 'keep', '--labels', 'tier=db'], ['python3', '-u', '-c', keeper]);
  await srv.waitFor(/up/);
  const port = await hostPort(d, 'keep');
  const c1 = start('python3', ['-u', '-c', holder, String(port)], {}, t);
  await c1.waitFor(/echo ping/);
  t.match(srv.stdout, /peer 127\.0\.0\.1/, 'the native peer is served (unknown peers allowed by default)');
  // a rule for some other range changes nothing for it
  t.equal((await d.ax(['policy', 'add', 'lan', 'deny', '--from-cidr', '192.168.0.0/16', '--to', 'tier=db'])).code, 0);
  await new Promise((r) => setTimeout(r, 300));
  t.notMatch(c1.stdout, /cut|closed/, 'a rule for another range leaves it alone');
  // a rule denying loopback peers cuts it
  const add = await d.ax(['policy', 'add', 'no-local', 'deny', '--from-cidr', '127.0.0.0/8', '--to', 'tier=db']);
  t.equal(add.code, 0, add.stderr);
  await c1.waitFor(/cut \w+|closed/);
  t.match(c1.stdout, /cut ConnectionResetError|cut ConnectionAbortedError|closed/, 'the peer outside ax sees its connection end');
  const ev = JSON.parse((await d.ax(['events', '-o', 'json'])).stdout) as { events: Array<Ev & { op: string }> };
  t.ok(ev.events.some((e) => e.verdict === 'revoke' && e.op === 'accept' && /^127\.0\.0\.1:\d+$/.test(e.src.name) && e.dst.name === 'keep'), 'a revoke event names the peer and the service');
  t.match((await d.ax(['events'])).stdout, /revoke\s+accept\s+127\.0\.0\.1:\d+\s/, 'the events table shows the peer as the source');
  const dot = (await d.ax(['graph'])).stdout;
  t.match(dot, /"127\.0\.0\.1"/, 'the graph draws the peer by its address');
  t.notMatch(dot, /"127\.0\.0\.1:\d+"/, 'one node per peer host, not per connection');
  srv.kill();
});

t.test('accept4 after a refused connection: blocking waits, non-blocking gives EAGAIN or the next one; flags and address kept', async (t) => {
  const d = await TestDaemon.start(t, ['--policy-unknown-peers', 'deny']);
  const axClient = (ip: string) => d.run(['--ip', ip], ['curl', '-sS', '--http0.9', '--max-time', '10', 'http://acc/']);
  const nativeClient = async (port: number) => {
    const c = start('python3', ['-u', '-c', NATIVE_CLIENT, String(port)], {}, t);
    await c.waitFor(/connected|reset/);
    return c;
  };

  // blocking listener: accept is already waiting when the refused peer arrives
  const blk = d.run(['--name', 'acc'], ['python3', '-u', '-c', ACCEPT4, 'block', '16'], { stdio: ['pipe', 'pipe', 'pipe'] });
  await blk.waitFor(/up/);
  let port = await hostPort(d, 'acc');
  blk.child.stdin!.write('go\n');
  const n1 = await nativeClient(port);
  await n1.waitFor(/reset|read/);
  t.match(n1.stdout, /reset/, 'the native peer is reset');
  const a1 = await axClient('10.77.5.5').result();
  t.equal(a1.stdout, 'hi\n', 'the ax client is served by the same accept call');
  await blk.waitFor(/peer .*\n/);
  t.equal(blk.stdout.trim().split('\n').pop(), 'peer 10.77.5.5 len 16 nonblock 1 cloexec 1', 'the blocking accept4 returned the next connection, flags and address as asked');
  blk.kill();
  await blk.exited;
  await d.until('acc gone', async () => (await d.get('services')).length === 0);

  // non-blocking listener, truncated address buffer (8 bytes: the kernel reports 16)
  const nb = d.run(['--name', 'acc'], ['python3', '-u', '-c', ACCEPT4, 'nonblock', '8'], { stdio: ['pipe', 'pipe', 'pipe'] });
  await nb.waitFor(/up/);
  port = await hostPort(d, 'acc');
  const n2 = await nativeClient(port);
  nb.child.stdin!.write('go\n');
  await nb.waitFor(/(accept \w+|peer .*)\n/);
  t.equal(nb.stdout.trim().split('\n').pop(), 'accept EAGAIN', 'only a refused connection pending: EAGAIN, as with nothing pending');
  await n2.waitFor(/reset|read/);
  t.match(n2.stdout, /reset/, 'the native peer is reset');
  // a refused one and an allowed one pending: one call returns the allowed one
  const n3 = await nativeClient(port);
  const a2p = axClient('10.77.5.6');
  await d.until('both pending', async () => (await run('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`])).stdout.trim().split('\n').filter(Boolean).length >= 2);
  nb.child.stdin!.write('go\n');
  const a2 = await a2p.result();
  t.equal(a2.stdout, 'hi\n', 'the ax client is served');
  await nb.waitFor(/peer .*\n/);
  t.equal(nb.stdout.trim().split('\n').pop(), 'peer 10.77.5.6 len 16 nonblock 1 cloexec 1', 'one non-blocking accept4 skipped the refused connection; the length says 16 though 8 were given');
  await n3.waitFor(/reset|read/);
  t.match(n3.stdout, /reset/);
  nb.kill();
});
