// The hook's fail mode: a daemon that is alive but not answering (SIGSTOP) costs
// each hook call at most AX_DAEMON_WAIT_MS (default 1 s), then the call fails
// closed with a legal errno (or passes through with --fail-open), and the hook
// recovers when the daemon answers again; with the daemon gone, a bind to a real
// address is done natively (a real address never needs the daemon) while the
// virtual ones fail closed. test/c/failmode.c makes one timed call per line.
import t from 'tap';
import { AX, cbin as bin, start, TestDaemon, type Proc } from './helpers';

/** Sends one command line and returns the answer line (the n-th of its kind). */
async function ask(p: Proc, line: string): Promise<Record<string, string>> {
  const kind = line.split(' ')[0];
  const answers = () => p.stdout.split('\n').slice(0, -1).filter((l) => l.startsWith(kind + ' ')); // complete lines
  const before = answers().length;
  p.child.stdin!.write(line + '\n');
  const end = Date.now() + 15_000;
  for (;;) {
    const done = answers();
    if (done.length > before) {
      return Object.fromEntries(done[before].split(' ').slice(1).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    }
    if (Date.now() > end) throw new Error(`no answer to "${line}"\nstdout: ${p.stdout}\nstderr: ${p.stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const PIPE = { stdio: ['pipe', 'pipe', 'pipe'] as ('pipe')[] };

t.test('a stopped daemon costs a hook call at most AX_DAEMON_WAIT_MS, then the fail mode; the hook recovers', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'echo', '--ip', '10.2.0.1'], [bin('echoserver'), '0.0.0.0', '7']);
  await srv.waitFor(/listening ip=0\.0\.0\.0 port=7\b/);

  const session = d.run([], [bin('failmode')], PIPE); // has a session when the daemon stops
  const fresh = d.run([], [bin('failmode')], PIPE); // first hook request while it is stopped
  const short = d.run([], [bin('failmode')], { ...PIPE, env: { ...process.env, AX_DAEMON_WAIT_MS: '300' } });
  const open = d.run(['--fail-open'], [bin('failmode')], PIPE);
  for (const p of [session, fresh, short, open]) await p.waitFor(/ready/);
  t.match(await ask(session, 'connect 10.2.0.1 7'), { r: '0' }, 'connects while the daemon answers');
  t.match(await ask(open, 'connect 10.2.0.1 7'), { r: '0' }, 'fail-open client connects while the daemon answers');

  process.kill(d.proc.pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(d.proc.pid, 'SIGCONT');
    } catch {
      // already gone
    }
  });
  try {
    // a new destination: not in the answer cache, so the daemon must be asked
    for (const [name, p] of [['with a session', session], ['first request', fresh]] as const) {
      const r = await ask(p, 'connect 10.2.0.1 8');
      t.match(r, { r: '-1', errno: 'ECONNREFUSED' }, `${name}: fails closed with ECONNREFUSED`);
      t.ok(Number(r.ms) >= 900 && Number(r.ms) <= 1500, `${name}: bounded by the 1 s default (${r.ms} ms)`);
    }
    const again = await ask(session, 'connect 10.2.0.1 9');
    t.ok(Number(again.ms) <= 1500, `a second call is bounded too (${again.ms} ms)`);
    const s = await ask(short, 'connect 10.2.0.1 8');
    t.match(s, { r: '-1', errno: 'ECONNREFUSED' });
    t.ok(Number(s.ms) >= 250 && Number(s.ms) <= 800, `AX_DAEMON_WAIT_MS=300 bounds it to 300 ms (${s.ms} ms)`);
    const o = await ask(open, 'connect 10.2.0.1 8');
    t.not(o.errno, 'ECONNREFUSED', `fail-open passes the connect through to the kernel (${o.errno})`);
    t.ok(Number(o.ms) <= 1500, `fail-open: bounded (${o.ms} ms)`);
    const g = await ask(session, 'resolve echo');
    t.ok(Number(g.ms) <= 1500, `getaddrinfo of a name is bounded too (${g.ms} ms, rc ${g.rc})`);
  } finally {
    process.kill(d.proc.pid, 'SIGCONT');
  }
  // the late replies to the abandoned requests are skipped; the sessions work again
  for (const [name, p] of [['with a session', session], ['first request', fresh], ['short bound', short]] as const) {
    const r = await ask(p, 'connect 10.2.0.1 7');
    t.match(r, { r: '0' }, `${name}: connects again once the daemon answers`);
  }
  for (const p of [session, fresh, short, open]) p.child.stdin!.end();
});

t.test('a stopped daemon: connects from cached answers wait for the one-way notes at most once', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'sink', '--ip', '10.5.0.1'], [bin('failmode')], PIPE);
  await srv.waitFor(/ready/);
  t.match(await ask(srv, 'serve 0.0.0.0 7'), { r: '0' });
  const cli = d.run([], [bin('failmode')], PIPE);
  await cli.waitFor(/ready/);
  t.match(await ask(cli, 'connect 10.5.0.1 7'), { r: '0' }, 'the first connect asks the daemon and caches its answer');
  process.kill(d.proc.pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(d.proc.pid, 'SIGCONT');
    } catch {
      // already gone
    }
  });
  let r: Record<string, string>;
  try {
    // 3000 cached connects send 6000 notes (2.3 MB), far more than the channel holds
    r = await ask(cli, 'connectn 10.5.0.1 7 3000');
  } finally {
    process.kill(d.proc.pid, 'SIGCONT');
  }
  t.equal(r.ok, '3000', 'every cached connect succeeded while the daemon was stopped');
  t.ok(Number(r.ms) < 4000, `one wait of AX_DAEMON_WAIT_MS for the full channel, not one per note (${r.ms} ms)`);
  t.match(await ask(cli, 'connect 10.5.0.1 8'), { r: '-1', errno: 'ECONNREFUSED' }, 'the daemon answers again (refused: no listener on 8)');
  t.match(await ask(cli, 'connectn 10.5.0.1 7 10'), { ok: '10' }, 'cached connects go on');
  cli.child.stdin!.end();
  srv.child.stdin!.end();
});

t.test('daemon gone: a real address binds natively, virtual ones fail closed', async (t) => {
  const d = await TestDaemon.start(t);
  // A real non-loopback address of this host (192.0.2.1, added to lo), in a
  // network namespace of the app's own (the hook reaches the daemon's unix socket anyway).
  const setup = 'ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec "$@"';
  const app = start(
    'unshare',
    ['-n', '--', 'sh', '-c', setup, 'sh', process.execPath, AX, 'run', '--socket', d.socket, '--no-start', '--ip', '10.3.0.1', '--', bin('failmode')],
    PIPE,
    t,
  );
  await app.waitFor(/ready/, 15_000);
  const up = await ask(app, 'bind 0.0.0.0 0');
  const [lo, hi] = d.ports.split('-').map(Number);
  const port = Number(/^0\.0\.0\.0:(\d+)$/.exec(up.name)?.[1]);
  t.ok(up.r === '0' && port >= lo && port <= hi, `daemon up: a wildcard bind is virtual (port ${port} from the daemon's pool)`);
  t.match(await ask(app, 'bind 192.0.2.1 0'), { r: '0', name: /^192\.0\.2\.1:\d+$/ }, 'daemon up: a real address binds natively');

  d.proc.kill('SIGKILL');
  await d.proc.exited;
  const real = await ask(app, 'bind 192.0.2.1 0');
  t.match(real, { r: '0', name: /^192\.0\.2\.1:\d+$/ }, 'daemon gone: a real address still binds natively');
  t.ok(Number(real.ms) < 500, `at once (${real.ms} ms)`);
  t.match(await ask(app, 'bind 192.0.2.77 0'), { r: '-1', errno: 'EADDRNOTAVAIL' }, 'a non-local address: the kernel refuses');
  t.match(await ask(app, 'bind 0.0.0.0 0'), { r: '-1', errno: 'EADDRNOTAVAIL' }, 'the wildcard (virtual) fails closed');
  t.match(await ask(app, 'bind 10.3.0.1 0'), { r: '-1', errno: 'EADDRNOTAVAIL' }, 'the app VIP fails closed');
  t.match(await ask(app, 'connect 10.2.0.1 7'), { r: '-1', errno: 'ECONNREFUSED' }, 'a virtual connect fails closed');
  t.match(await ask(app, 'bind 127.0.0.1 0'), { r: '0', name: /^127\.0\.0\.1:\d+$/ }, 'loopback binds natively');
  app.child.stdin!.end();
});
