// A cluster of ClusterNodes on a SimNetwork (shared by the tests and bench/gossip-sim.ts).

import type { ClusterConfigInput } from './config';
import { ClusterNode, type ClusterState } from './node';
import { SimNetwork, seededRandom, type SimNetworkOptions } from './sim';
import { nullLogger, type Logger } from './transport';

export interface SimClusterOptions extends SimNetworkOptions {
  n: number;
  config?: Partial<ClusterConfigInput>;
  logger?: Logger;
}

export class SimCluster {
  readonly net: SimNetwork;
  readonly nodes: ClusterNode[] = [];
  private readonly alive = new Set<number>();
  private readonly saved = new Map<number, ClusterState>();

  constructor(readonly opts: SimClusterOptions) {
    this.net = new SimNetwork(opts);
    for (let i = 0; i < opts.n; i++) this.nodes.push(this.make(i));
  }

  static addr(i: number): string { return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:7946`; }
  static nodeName(i: number): string { return `n${i}`; }

  get clock() { return this.net.clock; }

  private make(i: number): ClusterNode {
    const addr = SimCluster.addr(i);
    const node = new ClusterNode(
      { ...this.opts.config, name: SimCluster.nodeName(i), advertiseAddr: addr, random: seededRandom((this.opts.seed ?? 1) * 7919 + i * 104729 + this.nodes.length) },
      this.net.transport(addr), this.net.clock, this.opts.logger ?? nullLogger,
    );
    node.on('persist', (s) => this.saved.set(i, s));
    return node;
  }

  /** Start every node with full membership knowledge (fast bootstrap for large simulations). */
  async startSeeded(): Promise<void> {
    const recs = this.nodes.map((n) => ({ name: n.name, address: n.config.advertiseAddr }));
    for (let i = 0; i < this.nodes.length; i++) {
      this.nodes[i]!.seedMembers(recs);
      await this.nodes[i]!.start();
      this.alive.add(i);
    }
  }

  /** Start every node and join it through a random earlier node (exercises join). */
  async startJoining(): Promise<void> {
    for (let i = 0; i < this.nodes.length; i++) {
      await this.nodes[i]!.start();
      this.alive.add(i);
      if (i > 0) {
        const seed = SimCluster.addr(Math.floor(this.net.rand() * i));
        const p = this.nodes[i]!.join([seed]);
        await this.clock.advance(50);
        await p;
      }
    }
  }

  liveIdx(): number[] { return [...this.alive]; }
  isLive(i: number): boolean { return this.alive.has(i); }

  /** Crash node i: no leave, traffic dropped, timers stopped. */
  async crash(i: number): Promise<void> {
    this.net.crash(SimCluster.addr(i));
    this.alive.delete(i);
    await this.nodes[i]!.stop();
  }

  /**
   * Crashes (no leave) a random `pct` % of the nodes, at least one, drawn from the network's
   * seeded random source (the same victims for the same seed). Returns their indices.
   */
  async crashPercent(pct: number): Promise<Set<number>> {
    const n = this.nodes.length;
    const victims = new Set<number>();
    while (victims.size < Math.max(1, Math.round((n * pct) / 100))) victims.add(Math.floor(this.net.rand() * n));
    for (const v of victims) await this.crash(v);
    return victims;
  }

  /** Restart node i from its persisted state (new epoch) and rejoin through seeds. */
  async restart(i: number, seeds: number[]): Promise<ClusterNode> {
    const node = this.make(i);
    const st = this.saved.get(i);
    if (st) node.restore(st);
    this.nodes[i] = node;
    await node.start();
    this.alive.add(i);
    const p = node.join(seeds.map(SimCluster.addr)).catch(() => 0);
    await this.clock.advance(100);
    await p;
    return node;
  }

  /** Every live node sees `pred` true. */
  all(pred: (n: ClusterNode, i: number) => boolean): boolean {
    for (const i of this.alive) if (!pred(this.nodes[i]!, i)) return false;
    return true;
  }
  count(pred: (n: ClusterNode, i: number) => boolean): number {
    let c = 0;
    for (const i of this.alive) if (pred(this.nodes[i]!, i)) c++;
    return c;
  }

  totalMetric(k: 'deadDeclared' | 'suspicionsRaised' | 'refutations' | 'queueDropped' | 'pulls' | 'syncs' | 'malformed' | 'nacksMissed' | 'damped' | 'removed'): number {
    let s = 0;
    for (const n of this.nodes) s += n.metrics()[k];
    return s;
  }

  async stopAll(): Promise<void> { for (const n of this.nodes) await n.stop(); }
}
