// Cached connect answers: after the first connect to a virtual destination, a
// process connects from the cached answer (no round trip) while the daemon's
// table generation is unchanged and sends the daemon nothing; balancing stays per
// connection, servers still see the client's VIP (from its source address), and any table change
// (a backend leaving, policy-relevant apps changing) invalidates the cache.
import t from 'tap';
import { sleep, TestDaemon } from './helpers';

const SERVER = (tag: string) => `
const net = require('net');
const srv = net.createServer((c) => { c.end('${tag} ' + c.remoteAddress + '\\n'); });
srv.listen(80, () => console.log('up'));
process.stdin.on('data', () => srv.close(() => { console.log('closed'); process.exit(0); }));
`;

// One process: N connections in a row, one line per answer, on "go" lines from stdin.
const CLIENT = `
const net = require('net');
const [host, n] = [process.argv[1], Number(process.argv[2])];
function batch(left, done) {
  if (left === 0) return done();
  const c = net.connect(80, host);
  let buf = '';
  c.on('data', (d) => (buf += d));
  c.on('close', () => { console.log(buf.trim() || 'empty'); batch(left - 1, done); });
  c.on('error', (e) => console.log('error ' + e.code));
}
process.stdin.on('data', (d) => { for (const _ of d.toString().trim().split('\\n')) batch(n, () => console.log('batch done')); });
`;

t.test('one process: cached answers balance per connection, preserve the client IP, and follow table changes', async (t) => {
  const d = await TestDaemon.start(t);
  const a = d.run(['--name', 'pool'], ['node', '-e', SERVER('A')], { stdio: ['pipe', 'pipe', 'pipe'] });
  const b = d.run(['--name', 'pool'], ['node', '-e', SERVER('B')], { stdio: ['pipe', 'pipe', 'pipe'] });
  await a.waitFor(/up/);
  await b.waitFor(/up/);
  const cli = d.run(['--ip', '10.77.0.1'], ['node', '-e', CLIENT, 'pool', '6'], { stdio: ['pipe', 'pipe', 'pipe'] });
  cli.child.stdin!.write('go\n');
  await cli.waitFor(/batch done/);
  const first = cli.stdout.trim().split('\n').filter((l) => l !== 'batch done');
  t.same(first.map((l) => l.split(' ')[0]).sort(), ['A', 'A', 'A', 'B', 'B', 'B'], `six connections, both backends, alternating (${first.join(' | ')})`);
  for (const l of first) t.match(l, /^[AB] (::ffff:)?10\.77\.0\.1$/, 'every server saw the client VIP');
  const st = await d.ax(['status']);
  const direct = Number(/direct_handoffs\s+(\d+)/.exec(st.stdout)?.[1]);
  t.equal(direct, 1, 'the first connect asked the daemon; the next five used the cached answer and sent nothing');

  // Backend B leaves: the table changes, the cache is dropped, no connection goes to B.
  b.child.stdin!.write('x');
  await b.waitFor(/closed/);
  await d.until('B gone', async () => (await d.get('services')).length === 1);
  cli.stdout = '';
  cli.child.stdin!.write('go\n');
  await cli.waitFor(/batch done/);
  const second = cli.stdout.trim().split('\n').filter((l) => l !== 'batch done');
  t.same(second.map((l) => l.split(' ')[0]), ['A', 'A', 'A', 'A', 'A', 'A'], `after B left, all to A (${second.join(' | ')})`);

  // B comes back: the new backend is used again by the same process.
  const b2 = d.run(['--name', 'pool'], ['node', '-e', SERVER('B2')], { stdio: ['pipe', 'pipe', 'pipe'] });
  await b2.waitFor(/up/);
  cli.stdout = '';
  cli.child.stdin!.write('go\n');
  await cli.waitFor(/batch done/);
  const third = cli.stdout.trim().split('\n').filter((l) => l !== 'batch done');
  t.ok(third.some((l) => l.startsWith('B2')), `the new backend is picked up (${third.join(' | ')})`);
  cli.kill();
});

t.test('daemon restarted: cached answers are dropped and the hook reconnects', async (t) => {
  const d = await TestDaemon.start(t);
  const a = d.run(['--name', 'svc'], ['node', '-e', SERVER('A')], { stdio: ['pipe', 'pipe', 'pipe'] });
  await a.waitFor(/up/);
  const cli = d.run([], ['node', '-e', CLIENT, 'svc', '3'], { stdio: ['pipe', 'pipe', 'pipe'] });
  cli.child.stdin!.write('go\n');
  await cli.waitFor(/batch done/);
  await d.stop();
  await d.launch();
  await sleep(300);
  cli.stdout = '';
  cli.child.stdin!.write('go\n');
  await cli.waitFor(/batch done/);
  t.match(cli.stdout, /^A .*\nA .*\nA .*\nbatch done/, `connections after the restart work (${cli.stdout.trim()})`);
  await d.proc.waitFor(/hook session \d+ \(pid \d+, app \S+\): handoff direct/);
  t.pass('the hook opened a new session with the new daemon');
  cli.kill();
});
