// The hook's fail mode: a daemon that is alive but not answering (SIGSTOP) costs
// each hook call at most AX_DAEMON_WAIT_MS (default 1 s), then the call fails
// closed with a legal errno (or passes through with --fail-open), and the hook
// recovers when the daemon answers again. test/c/failmode.c makes one timed call
// per line.
import t from 'tap';
import { cbin as bin, TestDaemon, type Proc } from './helpers';

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
