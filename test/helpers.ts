// Test helpers: a daemon per test file in its own temp dirs, programs run under
// `ax run`, and waiting on their output. Everything is torn down by t.teardown.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AxClient } from '../src/cli/client';
import { getRows } from '../src/cli/get';

export const ROOT = join(__dirname, '..');
export const AX = join(ROOT, 'dist', 'ax.js');
export const CBIN = join(ROOT, 'native', 'build');

if (!existsSync(AX)) throw new Error(`${AX} is missing: run npm run build first`);


interface Teardown {
  teardown(fn: () => unknown): void;
}

export class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess, readonly label: string) {
    child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      this.waiters.forEach((w) => w());
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.waiters.forEach((w) => w());
    });
    // Settled when the output is read to the end ('close'), or shortly after the exit when
    // something the process left running keeps its pipes open: a result read on 'exit'
    // alone can miss the last output of a loaded machine.
    this.exited = new Promise((resolve) => {
      let status: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      child.on('close', (code, signal) => resolve(status ?? { code, signal }));
      child.on('exit', (code, signal) => {
        status = { code, signal };
        setTimeout(() => resolve({ code, signal }), 500).unref();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Resolves with the first match of `re` in stdout+stderr; rejects after `ms`. */
  waitFor(re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let done = false;
      const check = () => {
        if (done) return;
        const m = re.exec(this.stdout) ?? re.exec(this.stderr);
        if (m) {
          done = true;
          clearTimeout(timer);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        done = true;
        reject(new Error(`${this.label}: no ${re} within ${ms} ms\nstdout: ${this.stdout.slice(-2000)}\nstderr: ${this.stderr.slice(-2000)}`));
      }, ms);
      this.waiters.push(check);
      check();
    });
  }

  /**
   * Waits until stdout holds at least `n` matches of `re` (a global regex), or `ms` pass;
   * resolves with the count then, never rejects (the caller asserts on it). Output of
   * another process arrives through its own pipe: a line it wrote before our client
   * finished may still be in flight when the client's result is in.
   */
  async count(re: RegExp, n: number, ms = 5_000): Promise<number> {
    const c = () => (this.stdout.match(re) ?? []).length;
    await this.waitFor(new RegExp(`(?:${re.source}[\\s\\S]*?){${n}}`, re.flags.replace('g', '')), ms).catch(() => undefined);
    return c();
  }

  async result(ms = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.killGroup();
        reject(new Error(`${this.label}: still running after ${ms} ms\nstdout: ${this.stdout.slice(-2000)}\nstderr: ${this.stderr.slice(-2000)}`));
      }, ms);
    });
    try {
      const r = await Promise.race([this.exited, timeout]);
      return { ...r, stdout: this.stdout, stderr: this.stderr };
    } finally {
      clearTimeout(timer);
    }
  }

  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
  }

  /** Kills the process and everything it started (its own process group). */
  killGroup(): void {
    if (!this.pid) return; // never spawned: -0 would be our own process group
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/**
 * What `ax get KIND -o json --socket SOCKET` prints, parsed: the same rows through the same code
 * (src/cli/get.ts, AxClient), answered in this process. Tests look at the table often, polling
 * for changes; an `ax get` process each time costs 0.3 s of CPU on a slow machine. The `ax get`
 * command itself is run by the tests of its output (tables, -o json, errors).
 * Throws DaemonUnreachable or ApiError as the CLI's client does.
 */
export async function apiGet(socket: string, kind: string): Promise<Array<Record<string, any>>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const client = new AxClient(socket);
  try {
    return JSON.parse(JSON.stringify(await getRows(client, kind)));
  } finally {
    client.close();
  }
}

export function start(cmd: string, args: string[], opts: SpawnOptions = {}, t?: Teardown): Proc {
  // A process group of its own, so teardown can kill what it started too.
  // tap's process-info hook adds itself to NODE_OPTIONS of every child it sees spawned, so
  // every node program a test starts (daemons, each `ax run` and `ax get`) would load it:
  // CPU, memory and a tracking file per process. `env -u` drops it (and execs the command:
  // same pid); programs under test run as they would for a user.
  const child = spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...opts });
  const p = new Proc(child, [cmd, ...args].join(' ').slice(0, 120));
  t?.teardown(() => p.killGroup());
  return p;
}

export async function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}) {
  return start(cmd, args, opts).result(opts.timeoutMs ?? 20_000);
}

let portBase = 20000 + (process.pid % 30) * 1000;

export class TestDaemon {
  readonly dir: string;
  readonly socket: string;
  readonly stateDir: string;
  proc!: Proc;
  readonly ports: string;

  constructor(
    private readonly t: Teardown,
    readonly extraArgs: string[] = [],
    dir?: string,
  ) {
    this.dir = dir ?? mkdtempSync(join(tmpdir(), 'ax-test-'));
    chmodSync(this.dir, 0o755); // unprivileged apps reach the sockets inside
    this.socket = join(this.dir, 'ax.sock');
    this.stateDir = join(this.dir, 'state');
    this.ports = `${portBase}-${portBase + 499}`;
    portBase += 500;
    t.teardown(async () => {
      await this.stop();
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  static async start(t: Teardown, extraArgs: string[] = []): Promise<TestDaemon> {
    const d = new TestDaemon(t, extraArgs);
    await d.launch();
    return d;
  }

  async launch(more: string[] = []): Promise<void> {
    this.proc = start(process.execPath, [AX, 'daemon', '--socket', this.socket, '--state-dir', this.stateDir, '--ports', this.ports, '--log-level', 'debug',
      // VIPs are allocated from 10.240/16; tests also pick --ip in 10.0-10.127 (an --ip must lie in a range).
      '--vip-range', '10.240.0.0/16', '--vip-range', '10.0.0.0/9', ...this.extraArgs, ...more]);
    await this.proc.waitFor(/ready: api/, 15_000);
  }

  async stop(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill('SIGTERM');
    const r = await Promise.race([this.proc.exited, new Promise((r) => setTimeout(r, 3000, null))]);
    if (r === null) this.proc.kill('SIGKILL');
  }

  /** Starts CMD under `ax run` against this daemon. */
  run(axArgs: string[], cmd: string[], opts: SpawnOptions = {}): Proc {
    return start(process.execPath, [AX, 'run', '--socket', this.socket, '--no-start', ...axArgs, '--', ...cmd], opts, this.t);
  }

  /** Runs an `ax` subcommand against this daemon. */
  ax(args: string[]) {
    return run(process.execPath, [AX, ...args, '--socket', this.socket]);
  }

  /** `ax get KIND -o json` of this daemon (answered in this process: apiGet). */
  get(kind: string): Promise<Array<Record<string, any>>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    return apiGet(this.socket, kind);
  }

  /** Polls until `fn` is true (services to appear, entries to go away...). */
  async until(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await fn()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A C checklist program from test/c/, built into native/build/test-NAME. */
export const cbin = (name: string) => join(CBIN, `test-${name}`);

/* eslint-disable @typescript-eslint/no-explicit-any */
interface Asserts {
  equal(...args: any[]): unknown;
  same(...args: any[]): unknown;
  ok(...args: any[]): unknown;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** A checklist program's run passed: exit 0, some "ok" lines and no "fail" line. */
export function clean(t: Asserts, what: string, r: { code: number | null; stdout: string; stderr: string }): void {
  t.equal(r.code, 0, `${what}: exit 0`);
  const fails = r.stdout.split('\n').filter((l) => l.startsWith('fail'));
  t.same(fails, [], `${what}: no failed checks\n${r.stdout}${r.stderr}`);
  t.ok(r.stdout.split('\n').some((l) => l.startsWith('ok')), `${what}: checks ran`);
}

export function have(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, cmd)));
}

/**
 * An ordinary user's ax: user nobody (65534) with a home, XDG_RUNTIME_DIR and state of
 * its own (a temporary directory `prefix`*), so `ax` starts a rootless daemon there.
 * ax(args) starts `ax ARGS` as nobody; nobody(args) is setpriv's argument list that runs
 * ARGS as nobody in that environment. The daemon is stopped and the home removed at teardown.
 */
export function nobodyAx(t: Teardown, prefix: string): { home: string; env: Record<string, string>; ax: (args: string[]) => Proc; nobody: (args: string[]) => string[] } {
  const home = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(home, 0o755);
  mkdirSync(join(home, 'run'), { mode: 0o700 });
  execFileSync('chown', ['-R', '65534:65534', home]);
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, XDG_RUNTIME_DIR: join(home, 'run'), XDG_STATE_HOME: join(home, 'state') };
  const nobody = (args: string[]) => ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...args];
  const ax = (args: string[]) => start('setpriv', nobody([process.execPath, AX, ...args]), { env }, t);
  t.teardown(async () => {
    await run('setpriv', nobody([process.execPath, AX, 'stop']), { env });
    rmSync(home, { recursive: true, force: true });
  });
  return { home, env, ax, nobody };
}

/**
 * A directory (mode 0777, under tmpdir, named `prefix`*) with an nginx.conf for a test
 * server: 2 workers (as `user` when given), pid, logs and temp files in the directory,
 * and the http `server` block given. Returns the directory and the config's path.
 */
export function nginxConf(prefix: string, server: string, user?: string): { dir: string; conf: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o777);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${user ? `user ${user};\n` : ''}worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  ${server}
}
`,
  );
  return { dir, conf };
}
