// What the benchmark scripts share: where the built programs are, the loopback-only
// network namespace every run that uses virtual addresses needs, and small helpers
// for the processes a run starts (bundled into each bench script by esbuild).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..');
/** The bundled CLI (npm run build). */
export const AX = join(ROOT, 'dist', 'ax.js');
/** bench/connect.c, built by npm run build. */
export const CONNECT = join(ROOT, 'native', 'build', 'bench-connect');

/**
 * Re-executes this script in a new network namespace with only loopback up
 * (`unshare -n`, so virtual addresses never become real packets) and exits with its
 * status; returns at once when already there (AX_ISOLATED set). `what` names the
 * benchmark in the error printed when the namespace cannot be made (not root).
 */
export function inLoopbackNamespace(what: string, script: string): void {
  if (process.env.AX_ISOLATED) return;
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, script, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, AX_ISOLATED: '1' },
  });
  if (r.error || r.status === null) console.error(`${what}: needs a private network namespace (unshare -n): run as root`);
  process.exit(r.status ?? 1);
}

/** A background process: out() is its stdout and stderr as they came, stdout() its stdout alone. */
export interface Bg {
  p: ChildProcess;
  out: () => string;
  stdout: () => string;
}

/** Every process bg() started, for the script's clean-up. */
export const procs: ChildProcess[] = [];

/** Starts `cmd` in the background; stdin 'pipe' for drivers fed line by line (lineDriver), else none. */
export function bg(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: 'ignore' | 'pipe' } = {}): Bg {
  const p = spawn(cmd, args, { stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let out = '';
  let stdout = '';
  p.stdout!.on('data', (d) => {
    out += d;
    stdout += d;
  });
  p.stderr!.on('data', (d) => (out += d));
  procs.push(p);
  return { p, out: () => out, stdout: () => stdout };
}

/** Waits until `h`'s output matches `re`; throws with the output after `ms` milliseconds. */
export async function waitOut(h: { out: () => string }, re: RegExp, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (!re.test(h.out())) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${re}: ${h.out().slice(-2000)}`);
    await sleep(20);
  }
}

/** Runs `cmd` to completion (at most `timeoutMs`); its stdout, or an Error with its output. */
export function fg(cmd: string, args: string[], timeoutMs = 120_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Whether `c` is on the PATH. */
export const has = (c: string): boolean => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The median of xs (NaN for none). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The next line `h` prints after `from` (an offset into its stdout), waiting on output events (no spinning). */
export function lineAfter(h: Bg, from: number, ms = 60_000): Promise<{ line: string; next: number }> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const text = h.stdout();
      const nl = text.indexOf('\n', from);
      if (nl < 0) return false;
      cleanup();
      resolve({ line: text.slice(from, nl).trim(), next: nl + 1 });
      return true;
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no line in ${ms} ms: ${h.out().slice(-500)}`));
    }, ms);
    const onData = () => void check();
    const cleanup = () => {
      clearTimeout(timer);
      h.p.stdout!.off('data', onData);
    };
    h.p.stdout!.on('data', onData);
    check();
  });
}

/**
 * A request/answer driver fed over stdin: ask() writes "go" and resolves with the
 * next line the process prints (the lines before the first call are skipped);
 * ask(false) only waits for the next line.
 */
export function lineDriver(h: Bg): (send?: boolean) => Promise<string> {
  let seen = h.stdout().length;
  return async (send = true) => {
    if (send) h.p.stdin!.write('go\n');
    const r = await lineAfter(h, seen, 600_000);
    seen = r.next;
    return r.line;
  };
}
