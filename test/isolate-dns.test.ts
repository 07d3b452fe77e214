// DNS inside `ax run --isolate`: the namespace's resolv.conf names ax-dnsrelay on
// 127.0.0.53, which passes queries to the daemon's responder over the hook socket's
// path + ".dns" (admitted like a hook session). Programs with their own resolver (dig
// over UDP and TCP, node's c-ares) get ax names and forwarded names; garbage leaves the
// relay serving; the relay ends with the app; need-to-know policy sees the asking app.
// As root against a root daemon, and as nobody against a rootless daemon.
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { isolatedResolvConf } from '../src/cli/run';
import { AX, nobodyAx, run, start, TestDaemon } from './helpers';

const DNSMASQ = '/usr/sbin/dnsmasq';

/** An upstream for names that are not ax's, on the test namespace's loopback. */
async function upstream(tt: Parameters<typeof start>[3]): Promise<number> {
  const port = 25900 + (process.pid % 500);
  const up = start(DNSMASQ, ['--no-daemon', `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--address=/example.test/192.0.2.7'], {}, tt);
  await up.waitFor(/started/);
  return port;
}

/** Python inside the app: garbage at the relay (UDP and TCP), then a real query with a chosen id. */
const FUZZ = String.raw`
import os, random, socket, struct, sys
random.seed(7)
NS = ('127.0.0.53', 53)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(300):
    n = random.choice([0, 1, 5, 11, 12, 13, 40, 512, 1400])
    b = bytearray(os.urandom(n))
    if n >= 3 and i % 2: b[2] &= 0x7f  # a query bit pattern: reaches the responder, which judges it
    u.sendto(bytes(b), NS)
for i in range(20):
    c = socket.create_connection(NS, timeout=2)
    try:
        if i % 2: c.sendall(struct.pack('!H', random.choice([0, 5, 11])) + os.urandom(20))  # a frame too short for a header
        else: c.sendall(os.urandom(random.choice([1, 2, 3, 30, 300])))  # a partial frame, then gone
    except OSError:
        pass
    c.close()
# a well-formed query, id 0xBEEF: the answer keeps the id
name = sys.argv[1].encode()
q = struct.pack('!HHHHHH', 0xBEEF, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p for p in name.split(b'.')) + b'\0' + struct.pack('!HH', 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a fresh socket: no answers to the garbage queued
u.settimeout(3)
u.sendto(q, NS)
r = u.recv(2048)
print('id %04x rcode %d answers %d' % (struct.unpack('!H', r[:2])[0], r[3] & 15, struct.unpack('!H', r[6:8])[0]))
print('a', '.'.join(str(x) for x in r[-4:]))
`;

/** Host pids of processes in the pid namespace with this inode (from the host's /proc). */
function pidsInNs(inode: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readlinkSync(`/proc/${p}/ns/pid`) === inode) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

t.test('isolatedResolvConf: our nameserver only; search ax first, then the host\'s; options about how to ask', async (t) => {
  const host = '# host\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example lab.example.\noptions ndots:2 rotate timeout:1 inet6\n';
  t.equal(isolatedResolvConf(host).split('\n').filter((l) => !l.startsWith('#')).join('\n'), 'nameserver 127.0.0.53\nsearch ax corp.example lab.example\noptions ndots:2 timeout:1\n');
  t.match(isolatedResolvConf('domain only.example\n'), /^search ax only\.example$/m, 'a domain line is the search list');
  t.match(isolatedResolvConf(''), /^nameserver 127\.0\.0\.53\nsearch ax\n$/m);
  t.notMatch(isolatedResolvConf(''), /options/);
});

t.test('as root, root daemon: dig (UDP, TCP), c-ares, forwarding, garbage, policy, lifetime', { skip: !existsSync(DNSMASQ) && 'dnsmasq missing' }, async (t) => {
  const upPort = await upstream(t);
  const d = await TestDaemon.start(t, ['--dns-upstream', `127.0.0.1:${upPort}`]);
  const web = d.run(['--name', 'web', '--ip', '10.7.0.10', '--labels', 'role=web'], ['python3', '-m', 'http.server', '8000']);
  await web.waitFor(/Serving HTTP/);

  const iso = (cmd: string[], extra: string[] = []) => d.run(['--isolate', ...extra], cmd).result();
  const udp = await iso(['dig', '+short', '+time=2', '+tries=1', 'web']);
  t.equal(udp.stdout.trim(), '10.7.0.10', `dig web (UDP) inside: ${udp.stderr}`);
  const tcp = await iso(['dig', '+short', '+tcp', '+time=2', '+tries=1', 'web.ax']);
  t.equal(tcp.stdout.trim(), '10.7.0.10', `dig +tcp web.ax inside: ${tcp.stderr}`);
  const fwd = await iso(['dig', '+short', '+time=2', '+tries=1', 'example.test']);
  t.equal(fwd.stdout.trim(), '192.0.2.7', 'a name that is not ax is forwarded upstream');
  const resolv = await iso(['cat', '/etc/resolv.conf']);
  t.match(resolv.stdout, /^nameserver 127\.0\.0\.53$/m, 'the namespace\'s resolv.conf names the relay');
  t.notMatch(resolv.stdout, /^nameserver (?!127\.0\.0\.53$)/m, 'and no other server');

  const node = await iso([process.execPath, '-e',
    `const dns = require('dns');
     dns.resolve4('web', (e, a) => {
       if (e) { console.log('resolve4 error', e.code); process.exit(1); }
       dns.lookup('web', { family: 4 }, (e2, b) => console.log('resolve4', a.join(','), 'lookup', e2 ? e2.code : b));
     });`]);
  t.equal(node.stdout.trim(), 'resolve4 10.7.0.10 lookup 10.7.0.10', `c-ares on the wire and getaddrinfo through the hook agree: ${node.stderr}`);
  const gai = await iso(['python3', '-c', "import socket; print(socket.gethostbyname('web'), socket.gethostbyname('example.test'))"]);
  t.equal(gai.stdout.trim(), '10.7.0.10 192.0.2.7', `getaddrinfo (the hook's RESOLVE, then libc's own resolver for other names): ${gai.stderr}`);

  const fuzz = await iso(['sh', '-c', `python3 -c "$1" web.ax && dig +short +time=2 +tries=1 web && dig +short +tcp +time=2 +tries=1 web`, 'sh', FUZZ]);
  t.match(fuzz.stdout, /^id beef rcode 0 answers 1$/m, `after 320 garbage messages the relay answers, with the client's id: ${fuzz.stderr}`);
  t.match(fuzz.stdout, /^a 10\.7\.0\.10$/m);
  t.match(fuzz.stdout, /^10\.7\.0\.10\n10\.7\.0\.10$/m, 'and still serves dig over UDP and TCP');

  // The relay's connection speaks for its app: a deny rule hides web from zone=other only.
  const rule = await run(process.execPath, [AX, 'policy', 'add', 'hide-web', 'deny', '--to', 'role=web', '--from', 'zone=other', '--socket', d.socket]);
  t.equal(rule.code, 0, rule.stderr);
  const hidden = await iso(['dig', '+time=2', '+tries=1', 'web.ax'], ['--labels', 'zone=other']);
  t.match(hidden.stdout, /status: NXDOMAIN/, `an app the policy keeps from web does not see its name: ${hidden.stderr}`);
  const shown = await iso(['dig', '+short', '+time=2', '+tries=1', 'web.ax']);
  t.equal(shown.stdout.trim(), '10.7.0.10', 'another app still sees it');

  // A process of another app cannot open a relay connection with this app's id: not its descendant.
  const stranger = await run('python3', ['-c', `
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
h = b'AXDNS1 udp ' + sys.argv[2].encode(); s.sendall(struct.pack('!H', len(h)) + h)
s.settimeout(3); print('closed' if s.recv(10) == b'' else 'open')`, `${join(d.dir, 'ax-hook.sock')}.dns`, 'nosuchapp:token']);
  t.equal(stranger.stdout.trim(), 'closed', 'an unknown app (or wrong token) is refused');

  // Lifetime: the relay lives in the app's pid namespace and ends with it.
  const life = d.run(['--isolate'], ['sh', '-c', 'echo "ns $(readlink /proc/self/ns/pid) relays $(grep -l ax-dnsrelay /proc/[0-9]*/comm | wc -l)"; sleep 30']);
  const [, ns, relays] = await life.waitFor(/ns (\S+) relays (\d+)/);
  t.equal(relays, '1', 'one relay inside');
  t.ok(pidsInNs(ns).length >= 3, 'init, relay and the app are in the namespace');
  life.kill('SIGTERM');
  await life.result();
  let left = pidsInNs(ns);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = pidsInNs(ns);
  }
  t.same(left, [], 'no process (relay included) is left once the app exits');
  web.killGroup();
});

/** Python inside the app: 300 queries at once for names the (silent) upstream never answers, then what came back. */
const FLOOD = String.raw`
import socket, struct
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
def q(i):
    name = b'n%d.slow.test' % i
    return struct.pack('!HHHHHH', 0x1000 + i, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p for p in name.split(b'.')) + b'\0' + struct.pack('!HH', 1, 1)
for i in range(300):
    u.sendto(q(i), ('127.0.0.53', 53))
u.settimeout(10)
order = []
for _ in range(300):
    r = u.recv(2048)
    order.append((struct.unpack('!H', r[:2])[0] - 0x1000, r[3] & 15))
print('answers', len(order), 'distinct', len(set(i for i, _ in order)), 'servfail', sum(1 for _, c in order if c == 2))
print('first44', sorted(i for i, _ in order[:44]) == list(range(256, 300)))
`;

t.test('bounded: 300 queries in flight to a silent upstream: 256 relayed, the rest SERVFAIL at once; all answered, ids kept', async (t) => {
  const hole = start('python3', ['-c', "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); print('port', s.getsockname()[1], flush=True)\nwhile True: s.recv(4096)"], {}, t);
  const holePort = (await hole.waitFor(/port (\d+)/))[1];
  const d = await TestDaemon.start(t, ['--dns-upstream', `127.0.0.1:${holePort}`]);
  const web = d.run(['--name', 'web', '--ip', '10.7.0.11'], ['sleep', '30']);
  const r = await d.run(['--isolate'], ['sh', '-c', 'python3 -c "$1" && dig +short +time=2 +tries=1 web', 'sh', FLOOD]).result();
  t.match(r.stdout, /^answers 300 distinct 300 servfail 300$/m, `every query answered once (SERVFAIL: the upstream is silent), with its own id: ${r.stderr}`);
  t.match(r.stdout, /^first44 True$/m, 'the 44 over the bound of 256 were answered first (by the relay, not after the upstream timeout)');
  t.match(r.stdout, /^10\.7\.0\.11$/m, 'and the relay serves again');
  web.killGroup();
});

t.test('as nobody, rootless daemon: dig inside finds an isolated service', { skip: !existsSync(DNSMASQ) && 'dnsmasq missing' }, async (t) => {
  const { ax } = nobodyAx(t, 'ax-isodns-nobody-');
  const db = ax(['run', '--isolate', '--name', 'db', '--', '/usr/bin/python3', '-u', '-m', 'http.server', '8000']);
  await db.waitFor(/Serving HTTP/, 20_000);
  const vip = (JSON.parse((await ax(['get', 'services', '-o', 'json']).result()).stdout) as Array<{ name: string; vip: string }>).find((x) => x.name === 'db')?.vip;
  t.ok(vip, 'db is registered');
  const r = await ax(['run', '--isolate', '--', 'dig', '+short', '+time=2', '+tries=1', 'db']).result();
  const got = r.stdout.trim();
  t.equal(got, vip, `dig db inside an isolated app of a rootless daemon: ${r.stderr}`);
  const tcp = await ax(['run', '--isolate', '--', 'dig', '+short', '+tcp', '+time=2', '+tries=1', 'db.ax']).result();
  t.equal(tcp.stdout.trim(), vip, `over TCP too: ${tcp.stderr}`);
  db.killGroup();
});
