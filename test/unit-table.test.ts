// The service table in-process: names and VIPs, pools and balancing, the
// connect-wait states (waiting until an app is up, closed after), bind
// conflicts as the kernel has them, and per-app source indexes.
import t from 'tap';
import { AF_INET, AF_INET6, parseCidr } from '../src/common/addr';
import { ServiceTable, type App, type Sock } from '../src/table/table';
import { mayConnect } from '../src/policy/labels';

/** The shared-label rule as a pick predicate (the table itself decides no policy). */
const shares = (client: Record<string, string>) => (s: Sock) => mayConnect(client, s.labels);

const app = (id: string, vip: string, name = '', labels: Record<string, string> = { zone: 'default' }): App => ({
  id,
  name,
  vip,
  labels,
  expose: [],
  token: `tok-${id}`,
  runPid: process.pid,
  node: 'n1',
  createdAt: Date.now(),
});

let nextId = 1;
const sock = (a: App, vport: number, over: Partial<Sock> = {}): Sock => ({
  id: nextId++,
  appId: a.id,
  name: a.name,
  pid: process.pid,
  node: 'n1',
  family: AF_INET,
  vip: a.vip,
  vport,
  hostIp: '127.0.0.1',
  hostPort: 40000 + nextId,
  state: 'listening',
  labels: a.labels,
  reusePort: false,
  createdAt: Date.now(),
  ...over,
});

t.test('names resolve as NAME and NAME.ax; VIPs are taken from the range; the table knows what is virtual', async (t) => {
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const vip = table.vipFor('web', '');
  t.match(vip, /^10\.240\.\d+\.\d+$/);
  table.addApp(app('a', vip, 'web'));
  t.equal(table.resolve('web'), vip);
  t.equal(table.resolve('WEB.ax.'), vip, 'case and a trailing dot do not matter');
  t.equal(table.resolve('other'), undefined);
  t.equal(table.nameOf(vip), 'web');
  t.ok(table.isVirtual('10.240.9.9'), 'inside the range');
  t.notOk(table.isVirtual('192.0.2.1'), 'a real address');
  t.equal(table.vipFor('web', ''), vip, 'a pool shares its VIP');
  t.match(table.checkApp('web', '10.240.7.7'), /already has virtual IP/);
});

t.test('pick: unknown, waiting until the app is up, closed after; round robin over a pool; policy', async (t) => {
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const a = app('a', '10.240.0.5', 'web');
  const b = app('b', '10.240.0.5', 'web');
  table.addApp(a);
  t.same(table.pick('10.240.0.99', 80, shares({ zone: 'default' })), { kind: 'unknown' });
  t.same(table.pick('10.240.0.5', 80, shares({ zone: 'default' })), { kind: 'waiting' }, 'registered, never listened: wait');
  const s1 = sock(a, 80, { state: 'bound' });
  table.addSock(s1);
  table.setListening(s1.id);
  t.same(table.pick('10.240.0.5', 81, shares({ zone: 'default' })), { kind: 'closed' }, 'up (listened on 80): a closed port refuses');
  table.addApp(b);
  table.addSock(sock(b, 80));
  const picks = [0, 1, 2, 3].map(() => {
    const p = table.pick('10.240.0.5', 80, shares({ zone: 'default' }));
    return p.kind === 'backend' ? p.sock.appId : p.kind;
  });
  t.same(picks, ['a', 'b', 'a', 'b'], 'round robin per connection');
  const all = table.pick('10.240.0.5', 80, shares({ zone: 'default' }));
  t.equal(all.kind === 'backend' ? all.all.length : 0, 2, 'every allowed backend is listed');
  t.same(table.pick('10.240.0.5', 80, shares({ zone: 'secure' })), { kind: 'denied' }, 'no shared label');
  t.same(table.pick('10.240.0.5', 80, shares({ zone: 'default' }), (s) => s.appId !== 'a').kind, 'backend', 'a dead node is skipped');
});

t.test('bind conflicts as the kernel has them', async (t) => {
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const a = app('a', '10.240.0.5');
  table.addApp(a);
  table.addSock(sock(a, 80, { reusePort: true }));
  t.ok(table.conflicting('a', '10.240.0.5', 80, false, AF_INET), 'same port without SO_REUSEPORT');
  t.notOk(table.conflicting('a', '10.240.0.5', 80, true, AF_INET), 'both with SO_REUSEPORT');
  t.notOk(table.conflicting('a', '10.240.0.5', 80, false, AF_INET6, true), 'an IPv6-only bind of the port coexists');
  t.notOk(table.conflicting('a', '10.240.0.5', 81, false, AF_INET), 'another port');
});

t.test('source indexes: one per local app, reused as late as possible, found back by index', async (t) => {
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  table.sourceCount = 4; // indexes 1..3
  const apps = ['a', 'b', 'c'].map((id, i) => app(id, `10.240.0.${i + 1}`));
  for (const x of apps) table.addApp(x);
  t.same(
    apps.map((x) => x.srcIndex),
    [1, 2, 3],
  );
  t.equal(table.appBySource(2)?.id, 'b');
  table.removeApp('b');
  const d = app('d', '10.240.0.4');
  table.addApp(d);
  t.equal(d.srcIndex, 2, 'the only free index');
  const e = app('e', '10.240.0.6');
  table.addApp(e);
  t.notOk(e.srcIndex, 'none left: no source address (the server then sees the real one)');
  const remote = { ...app('r', '10.240.0.7'), node: 'n2' };
  table.addApp(remote);
  t.equal(remote.srcIndex, undefined, "another node's app gets none here");
});

t.test('every change bumps the generation that validates cached answers', async (t) => {
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const seen: number[] = [];
  table.onGeneration((g) => seen.push(g));
  const g0 = table.generation;
  const a = app('a', '10.240.0.5');
  table.addApp(a);
  const s = sock(a, 80, { state: 'bound' });
  table.addSock(s);
  table.setListening(s.id);
  table.removeSock(s.id);
  t.equal(seen.length, 4, 'app, socket, listen, removal');
  t.not(table.generation, g0);
  t.equal(new Set(seen).size, 4, 'all distinct');
});
