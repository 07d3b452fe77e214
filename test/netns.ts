// Several real hosts on one machine, for the multi-host tests: network namespaces
// joined by veth pairs on a bridge, each with its own address (SUBNET.N/24) and its
// own ax daemon. Created and removed by the test; traffic stays inside them.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiGet, AX, run, sleep, start, type Proc } from './helpers';

/** Runs a shell command; throws with its stderr when it fails. */
export function sh(cmd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
}

/** Polls `fn` every 150 ms until it holds; the time it took (ms), or throws after `ms`. */
export async function until(what: string, fn: () => Promise<boolean>, ms = 15_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await fn()) return Date.now() - t0;
    await sleep(150);
  }
  throw new Error(`timed out (${ms} ms) waiting for ${what}`);
}

/**
 * A bridge and the hosts on it. `prefix` (one or two letters) names the bridge,
 * namespaces and veth ends, with this process's pid, so test files running at the
 * same time do not collide; `subnet` is the hosts' /24 (e.g. "10.99.0").
 */
export class Bridge {
  readonly tag = String(process.pid % 100000);
  readonly name: string;
  readonly hosts: NsHost[] = [];

  constructor(
    readonly prefix: string,
    readonly subnet: string,
    readonly key = 'test-cluster-key-0123456789',
  ) {
    this.name = `ax${prefix}b${this.tag}`;
    sh(`ip link add ${this.name} type bridge && ip link set ${this.name} up`);
  }

  /** Host number i (its address SUBNET.i), called `name` (its --node-name); `make`: a subclass of NsHost. */
  host<H extends NsHost = NsHost>(i: number, name: string, make?: (b: Bridge, i: number, name: string) => H): H {
    const h = make ? make(this, i, name) : (new NsHost(this, i, name) as H);
    this.hosts.push(h);
    return h;
  }

  /** Kills every daemon and app, removes the namespaces, links, directories and the bridge. */
  destroy(): void {
    for (const h of this.hosts) h.destroy();
    spawnSync('ip', ['link', 'del', this.name]);
  }
}

/** One host: a network namespace on the bridge, a directory for its daemon's state and socket. */
export class NsHost {
  readonly ns: string;
  readonly ip: string;
  readonly dir: string;
  readonly socket: string;
  /** the host's end of its veth pair (on the bridge) */
  readonly dev: string;
  daemon!: Proc;
  readonly apps: Proc[] = [];

  constructor(
    readonly bridge: Bridge,
    readonly i: number,
    readonly name: string,
  ) {
    const { prefix, tag } = bridge;
    this.ns = `ax${prefix}${tag}-${i}`;
    this.ip = `${bridge.subnet}.${i}`;
    this.dir = mkdtempSync(join(tmpdir(), `ax-host-${name}-`));
    chmodSync(this.dir, 0o755);
    this.socket = join(this.dir, 'ax.sock');
    this.dev = `v${prefix}${tag}${i}`;
    const peer = `w${prefix}${tag}${i}`;
    sh(`ip netns add ${this.ns}`);
    sh(`ip link add ${this.dev} type veth peer name ${peer}`);
    sh(`ip link set ${peer} netns ${this.ns}`);
    sh(`ip -n ${this.ns} addr add ${this.ip}/24 dev ${peer}`);
    sh(`ip -n ${this.ns} link set ${peer} up && ip -n ${this.ns} link set lo up`);
    sh(`ip link set ${this.dev} master ${bridge.name} up`);
  }

  /** Starts this host's daemon (probe every 200 ms, anti-entropy every 2 s) and waits until it is ready. */
  async startDaemon(extra: string[] = [], opts: { key?: string; logLevel?: string } = {}): Promise<void> {
    this.daemon = start('ip', ['netns', 'exec', this.ns, process.execPath, AX, 'daemon', '--node-name', this.name, '--advertise', this.ip,
      '--socket', this.socket, '--state-dir', join(this.dir, 'state'), '--cluster-key', opts.key ?? this.bridge.key, '--probe-interval', '200ms',
      '--sync-interval', '2s', '--log-level', opts.logLevel ?? 'debug', ...extra]);
    await this.daemon.waitFor(/ready: api/, 20_000);
  }

  /** `ax run AXARGS -- CMD` in this host's namespace. */
  run(axArgs: string[], cmd: string[], cwd?: string): Proc {
    const p = start('ip', ['netns', 'exec', this.ns, process.execPath, AX, 'run', '--socket', this.socket, '--no-start', ...axArgs, '--', ...cmd], cwd ? { cwd } : {});
    this.apps.push(p);
    return p;
  }

  /** `ax ARGS` against this host's daemon. */
  ax(args: string[]) {
    return run(process.execPath, [AX, ...args, '--socket', this.socket]);
  }

  /** `ax get KIND -o json` of this host (answered in this process: apiGet). */
  async get(kind: string): Promise<Array<Record<string, any>>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      return await apiGet(this.socket, kind);
    } catch (e) {
      throw new Error(`${this.name}: ax get ${kind}: ${(e as Error).message}`);
    }
  }

  /** Kills the daemon and every app of this host at once. */
  killAll(): void {
    this.daemon?.killGroup();
    for (const a of this.apps) a.killGroup();
  }

  /** Takes the host's link to the bridge down or up (a partition). */
  link(up: boolean): void {
    sh(`ip link set ${this.dev} ${up ? 'up' : 'down'}`);
  }

  destroy(): void {
    this.killAll();
    spawnSync('ip', ['netns', 'del', this.ns]);
    spawnSync('ip', ['link', 'del', this.dev]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
