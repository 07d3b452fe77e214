// `ax run` as a wrapper: every signal a shell would send reaches the command,
// TTIN/TTOU do not stop the wrapper, the command never outlives a killed wrapper, daemonized
// children live on as natively, exit status passes through,
// and while the daemon is away it re-attaches with one retry chain (flat memory).
// Also the daemon's management: autostart note in status, ax logs -f, ax stop.
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AX, run, sleep, start, TestDaemon } from './helpers';

const SIGNALS = ['SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGTTIN', 'SIGTTOU', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGALRM', 'SIGTERM'] as const;

// Prints each signal it gets; exits 42 on SIGTERM.
const TRAP = `
import os, signal, sys, time
names = ${JSON.stringify(SIGNALS)}
def on(sig, frame):
    print('got ' + signal.Signals(sig).name, flush=True)
    if sig == signal.SIGTERM:
        sys.exit(42)
for n in names:
    signal.signal(getattr(signal, n), on)
print('ready', os.getpid(), flush=True)
while True:
    time.sleep(0.05)
`;

/** The process state letter from /proc/PID/stat (R, S, T = stopped, Z...). */
function state(pid: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
}

const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return state(pid) === 'Z';
  } catch {
    return true;
  }
};

t.test('every signal a shell would send reaches the command; exit status passes through; daemonized children live on', async (t) => {
  const d = await TestDaemon.start(t);
  const w = d.run([], ['python3', '-u', '-c', TRAP]);
  await w.waitFor(/ready \d+/);
  for (const sig of SIGNALS) {
    process.kill(w.pid, sig);
    await w.waitFor(new RegExp(`got ${sig}\\b`), 5000);
    t.pass(`${sig} reached the command`);
    if (sig === 'SIGTTIN' || sig === 'SIGTTOU') t.not(state(w.pid), 'T', `${sig} did not stop the wrapper`);
  }
  const r0 = await w.result();
  t.equal(r0.code, 42, 'the command\'s exit status is ax run\'s');

  // A daemonizing command: sh starts a background sleep and exits. As without ax, what it left in the
  // background keeps running (a daemonized server keeps its sockets and services); ax run exits with sh.
  const w1 = d.run([], ['sh', '-c', 'sleep 300 & echo "bg=$!"; exit 3']);
  const bg = Number((await w1.waitFor(/bg=(\d+)/))[1]);
  t.teardown(() => {
    try {
      process.kill(bg, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  const r1 = await w1.result();
  t.equal(r1.code, 3);
  t.notOk(gone(bg), `background child ${bg} lives on after the command exited, as natively`);
  t.not(state(bg), 'Z', 'and is no zombie of ax run');

  // ax run killed by SIGTERM: the command gets it and the wrapper dies the same way.
  const w2 = d.run([], ['sh', '-c', 'echo up; exec sleep 300']);
  await w2.waitFor(/up/);
  w2.kill('SIGTERM');
  const r2 = await w2.result();
  t.equal(r2.signal, 'SIGTERM');

  // ax run itself SIGKILLed (nothing it can do then): the command is not left behind.
  const w3 = d.run([], ['sh', '-c', 'echo "pid=$$"; exec sleep 300']);
  const cmdPid = Number((await w3.waitFor(/pid=(\d+)/))[1]);
  t.notOk(gone(cmdPid), 'the command runs');
  w3.kill('SIGKILL');
  await d.until('the command ended with ax run', async () => gone(cmdPid), 5000);
  t.ok(gone(cmdPid), 'SIGKILL of ax run ends the command too (parent-death signal)');
});

/** Resident memory of a process in KiB. */
function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

t.test('the daemon stopped and restarted while ax run waits: one retry chain, flat memory, re-attached', async (t) => {
  const d = await TestDaemon.start(t);
  const w = d.run(['--name', 'keeper'], ['sh', '-c', 'echo up; exec sleep 300']);
  await w.waitFor(/up/);
  const before = (await d.get('apps')).find((a) => a.name === 'keeper');
  t.ok(before, 'registered');
  await d.stop();
  await w.waitFor(/the daemon at \S+ is away \(none is running \(no socket there\)\); re-attaching the app when it is back/, 5000);
  await sleep(1000);
  const early = rssKiB(w.pid);
  await sleep(4000);
  const late = rssKiB(w.pid);
  t.ok(late - early < 16 * 1024, `wrapper memory flat while the daemon is down (${early} KiB -> ${late} KiB)`);
  const away = (w.stderr.match(/re-attaching/g) ?? []).length;
  t.equal(away, 1, 'one message, not one per attempt');
  t.notMatch(w.stderr, /start one with/, 'the note does not tell to start a daemon as if ax run were not running');
  t.match(w.stderr, /ax run does not start a daemon for an app that is already running/, 'it says what ax run does');
  await d.launch();
  await w.waitFor(/re-attached to the daemon/, 10_000);
  const after = (await d.get('apps')).find((a) => a.name === 'keeper');
  t.equal(after?.id, before?.id, 'the same app, re-attached');
  t.equal(w.child.exitCode, null, 'the wrapper and its command kept running');
  w.kill('SIGTERM');
  await w.result();
});

t.test('management: a daemon ax run started says so; ax logs [-f]; ax stop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-auto-'));
  // The socket directory does not exist yet: a first start on a fresh machine.
  const socket = join(dir, 'run', 'ax.sock');
  const env = { ...process.env, AX_STATE_DIR: join(dir, 'state') };
  t.teardown(() => run(process.execPath, [AX, 'stop', '--socket', socket], { env }));
  const r = await run(process.execPath, [AX, 'run', '--socket', socket, '--', 'true'], { env });
  t.equal(r.code, 0, `ax run started a daemon (${r.stderr})`);
  const st = await run(process.execPath, [AX, 'status', '--socket', socket], { env });
  t.equal(st.code, 0);
  const log = join(dir, 'state', 'daemon.log');
  t.match(st.stdout, new RegExp(`log_file\\s+${log.replace(/[.]/g, '\\.')}`));
  t.match(st.stdout, /This daemon was started by `ax run` \(pid \d+\) because none was running/);
  t.match(st.stdout, new RegExp(`Stop it with: ax daemon stop --socket ${socket}`));
  const json = JSON.parse((await run(process.execPath, [AX, 'status', '-o', 'json', '--socket', socket], { env })).stdout);
  t.ok(json.autostarted_by > 0 && json.log_file === log, 'status -o json has it too');

  const logs = await run(process.execPath, [AX, 'logs', '--socket', socket], { env });
  t.equal(logs.code, 0);
  t.match(logs.stdout, /info ready: api /);
  t.notMatch(logs.stdout, /no identity map/, 'the identity map (generation word) is made on a first start too');
  t.ok(existsSync(`${json.hook_socket}.map`), `identity map beside the hook socket (${json.hook_socket}.map)`);

  const follow = start(process.execPath, [AX, 'logs', '-f', '--socket', socket], { env }, t);
  await follow.waitFor(/ready: api/);
  t.equal((await run(process.execPath, [AX, 'run', '--socket', socket, '--name', 'followed', '--', 'true'], { env })).code, 0);
  // The daemon logs at info: a refused app is logged? Use stop, which is.
  const stop = await run(process.execPath, [AX, 'stop', '--socket', socket], { env });
  t.equal(stop.code, 0);
  t.match(stop.stdout, /stopped the ax daemon \(pid \d+\)/);
  await follow.waitFor(/shutdown requested by uid 0/, 5000);
  t.pass('ax logs -f shows what is logged after it started');
  follow.kill('SIGINT');
  t.equal((await follow.result()).code, 0, 'ax logs -f ends on SIGINT with 0');
  t.notOk(existsSync(socket), 'the socket is gone with the daemon');
});

/** Suspends daemon `d` (SIGSTOP: it listens but does not answer) until the test ends; returns its pid. */
function suspend(t: { teardown(fn: () => void): void }, d: TestDaemon): number {
  const pid = d.proc.child.pid!;
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  return pid;
}

t.test('a daemon that listens but does not answer (SIGSTOP): ax run says so and starts no second daemon', async (t) => {
  const d = await TestDaemon.start(t);
  const env = { ...process.env, AX_STATE_DIR: d.stateDir };
  const pid = suspend(t, d);
  const r = await run(process.execPath, [AX, 'run', '--socket', d.socket, '--', 'true'], { env, timeoutMs: 30_000 });
  t.equal(r.code, 1, 'ax run fails');
  t.match(r.stderr, /does not answer \(stopped or overloaded\?\)/, `the diagnosis is the stopped daemon (${r.stderr.trim()})`);
  t.notMatch(r.stderr, /started for you/, 'not a daemon it started itself');
  t.notOk(existsSync(join(d.stateDir, 'daemon.log')), 'no second daemon was started (it would log to daemon.log)');
  process.kill(pid, 'SIGCONT');
  const again = await run(process.execPath, [AX, 'run', '--socket', d.socket, '--', 'true'], { env });
  t.equal(again.code, 0, `once it runs again, ax run works (${again.stderr.trim()})`);
});

t.test('--no-start waits for a daemon that is busy for a few seconds (a loaded machine) instead of failing at once', async (t) => {
  const d = await TestDaemon.start(t);
  const pid = suspend(t, d);
  const pending = run(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--', 'true'], { timeoutMs: 30_000 });
  await new Promise((r) => setTimeout(r, 3000)); // longer than one Status call's 1.5 s deadline
  process.kill(pid, 'SIGCONT');
  const r = await pending;
  t.equal(r.code, 0, `ax run --no-start got its answer once the daemon ran again (${r.stderr.trim()})`);
});

t.test('after a daemon restart, ax get apps counts a running server that has not spoken to the new daemon yet', async (t) => {
  const d = await TestDaemon.start(t);
  const w = d.run(['--name', 'counted'], ['python3', '-u', '-m', 'http.server', '8099']);
  await w.waitFor(/Serving HTTP/);
  await d.until('counted listening', async () => (await d.get('services')).some((s) => s.name === 'counted'));
  const before = (await d.get('apps')).find((a) => a.name === 'counted');
  t.equal(before?.processes, 1, 'one process (python; ax run is not the app)');
  await d.stop();
  await w.waitFor(/is away \(.*\); re-attaching/, 5000);
  await d.launch();
  await w.waitFor(/re-attached to the daemon/, 10_000);
  const after = (await d.get('apps')).find((a) => a.name === 'counted');
  t.equal(after?.processes, 1, 'still one process: the server holding its restored socket, before any hook session');
  w.kill('SIGTERM');
  await w.result();
});

t.test('ax stop at a daemon that listens but does not answer (SIGSTOP): says so and exits 1, not "nothing to stop"', async (t) => {
  const d = await TestDaemon.start(t);
  const pid = suspend(t, d);
  const r = await run(process.execPath, [AX, 'stop', '--socket', d.socket], { timeoutMs: 15_000 });
  t.equal(r.code, 1, `ax stop fails (${r.stdout.trim()} ${r.stderr.trim()})`);
  t.notMatch(r.stdout, /nothing to stop/);
  t.match(r.stderr, /a daemon listens at \S+ but does not answer \(suspended with SIGSTOP, or overloaded\?\), so it cannot be asked to stop; .*kill -CONT/);
  process.kill(pid, 'SIGCONT');
  const st = await run(process.execPath, [AX, 'stop', '--socket', d.socket]);
  t.equal(st.code, 0, 'resumed, it stops');
  t.match(st.stdout, /stopped the ax daemon/);
});

t.test('autostart for a non-default --socket: its own state dir (not the default one), no directory trees', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-autodir-'));
  // No AX_STATE_DIR: the default state dir (here under XDG_STATE_HOME) is what a user has.
  const env: Record<string, string | undefined> = { ...process.env, XDG_STATE_HOME: join(dir, 'xdg-state'), XDG_RUNTIME_DIR: join(dir, 'xdg-run') };
  delete env.AX_STATE_DIR;
  delete env.AX_SOCKET;
  delete env.AX_RUN_DIR;
  mkdirSync(join(dir, 'xdg-run'));

  // A mistyped socket path: nothing is made, the missing directory is named.
  const typo = join(dir, 'nonexist', 'dir', 'ax.sock');
  t.teardown(() => run(process.execPath, [AX, 'stop', '--socket', typo], { env })); // had one been started
  const bad = await run(process.execPath, [AX, 'run', '--socket', typo, '--', 'true'], { env });
  t.equal(bad.code, 1, 'refused');
  t.match(bad.stderr, new RegExp(`the directory ${join(dir, 'nonexist')} does not exist`));
  t.notOk(existsSync(join(dir, 'nonexist')), 'no directory was created');
  t.notOk(existsSync(join(dir, 'xdg-state')), 'no state dir either');

  // Another socket: the daemon started for it does not take the default state dir.
  const other = join(dir, 'other', 'ax.sock');
  t.teardown(() => run(process.execPath, [AX, 'stop', '--socket', other], { env }));
  const r = await run(process.execPath, [AX, 'run', '--socket', other, '--', 'true'], { env });
  t.equal(r.code, 0, `started (${r.stderr.trim()})`);
  const st = JSON.parse((await run(process.execPath, [AX, 'status', '-o', 'json', '--socket', other], { env })).stdout);
  const def = join(dir, 'xdg-state', 'ax');
  t.match(st.state_dir, new RegExp(`^${def}/sockets/[0-9a-f]{12}$`), `its own state dir (${st.state_dir})`);
  t.equal(st.log_file, join(st.state_dir, 'daemon.log'));
  t.notOk(existsSync(join(def, 'LOCK')), 'the default state dir is not locked');
  // So a daemon for the default socket starts next to it.
  const defSock = join(dir, 'xdg-run', 'ax', 'ax.sock');
  t.teardown(() => run(process.execPath, [AX, 'stop'], { env }));
  const plain = await run(process.execPath, [AX, 'run', '--', 'true'], { env });
  t.equal(plain.code, 0, `a plain ax run starts the default daemon too (${plain.stderr.trim()})`);
  t.ok(existsSync(defSock), 'at the default socket');
  const logs = await run(process.execPath, [AX, 'logs', '--socket', other], { env });
  t.match(logs.stdout, /ready: api /, 'ax logs --socket shows that daemon\'s log');
});

t.test('a daemon ax run started that fails to come up: ax run prints its reason from the log', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-autofail-'));
  const env: Record<string, string | undefined> = { ...process.env };
  const broken = join(dir, 'broken');
  mkdirSync(join(broken, 'LOCK'), { recursive: true }); // LevelDB cannot lock a directory
  const fail = await run(process.execPath, [AX, 'run', '--socket', join(dir, 'b.sock'), '--', 'true'], { env: { ...env, AX_STATE_DIR: broken }, timeoutMs: 20_000 });
  t.equal(fail.code, 1);
  t.match(fail.stderr, /did not come up \(it exited with status 1\): cannot open the state database in \S+broken: IO error: \S+LOCK: Is a directory/, fail.stderr.trim());
});

t.test('ax run -- FILE that is not executable: permission denied, 126, as a shell says it', async (t) => {
  const d = await TestDaemon.start(t);
  for (const [cmd, what] of [['/etc/passwd', 'permission denied \\(not executable\\)'], ['/etc', 'is a directory']]) {
    const p = await run(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--', cmd]);
    t.equal(p.code, 126, `${cmd}: 126`);
    t.match(p.stderr, new RegExp(`^ax run: ${cmd}: ${what}\\n$`), p.stderr);
  }
  const missing = await run(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--', '/no/such/program']);
  t.equal(missing.code, 127, 'missing: 127 as before');
});

t.test('inside ax run --isolate, the ax CLI says the API is hidden on purpose and starts no daemon', async (t) => {
  const d = await TestDaemon.start(t);
  const inner = (args: string[]) => run(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--isolate', '--', process.execPath, AX, ...args], { timeoutMs: 20_000 });
  // The daemon's own socket (hidden inside: /dev/null is bound over it), as a user would pass it.
  for (const args of [['get', 'services', '--socket', d.socket], ['run', '--socket', d.socket, '--', 'true'], ['status', '--socket', d.socket]]) {
    const r = await inner(args);
    t.equal(r.code, 1, `ax ${args.join(' ')} inside: exit 1`);
    t.match(r.stderr, /^ax: the ax API is not reachable from inside an isolated app \(ax run --isolate hides it on purpose\); run ax on the host\n$/, r.stderr);
  }
});

t.test('ax events -f: streamed table rows line up with the header', async (t) => {
  const d = await TestDaemon.start(t);
  const follow = start(process.execPath, [AX, 'events', '-f', '--socket', d.socket], {}, t);
  const srv = d.run(['--name', 'evsrv'], ['python3', '-m', 'http.server', '--bind', '0.0.0.0', '8080']);
  await d.until('evsrv listens', async () => (await d.get('services')).some((s) => s.name === 'evsrv'));
  for (const name of ['c', 'a-longer-client']) {
    const r = await d.run(['--name', name], ['curl', '-sS', '-o', '/dev/null', '--max-time', '5', 'http://evsrv:8080/']).result();
    t.equal(r.code, 0, `${name} connected (${r.stderr.trim()})`);
  }
  await follow.waitFor(/a-longer-client/, 10_000);
  await sleep(200);
  const lines = follow.stdout.split('\n').filter(Boolean);
  t.match(lines[0], /^TIME +VERDICT +OP +SOURCE/, 'the header first');
  const starts = (line: string) => [...line.matchAll(/(?:^|\s{2,})(\S)/g)].map((m) => m.index! + m[0].length - 1);
  t.ok(lines.length >= 3, `header and two rows (${lines.length} lines)`);
  for (const row of lines.slice(1)) t.same(starts(row), starts(lines[0]), `columns line up: ${row}`);
  follow.kill('SIGINT');
  await follow.result();
  srv.kill('SIGTERM');
  await srv.result();
});
