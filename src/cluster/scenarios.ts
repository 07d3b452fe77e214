// Gray-failure scenarios on the simulated network, and what they measure (issue 11).
// Shared by test/cluster-gray.test.ts (small N) and bench/gossip-sim.ts (N = 1 000).
//
// A run: N nodes start with full membership, settle for `warmupMs`, then a fraction of them
// (`faulty`, chosen by the seed) turns faulty for `faultMs`; afterwards the fault is lifted and the
// run goes on for `recoveryMs`. Throughout, one healthy node every `updateEveryMs` writes a
// service-table entry. Every second each healthy node's view is sampled.

import type { ClusterConfigInput } from './config';
import { hash2 } from './codec';
import { seededRandom, type LossFn } from './sim';
import { SimCluster } from './simcluster';
import type { Logger } from './transport';

/** The fault models of issue 11. */
export type ScenarioKind =
  /** nothing happens (baseline) */
  | 'none'
  /** faulty nodes crash (no leave) */
  | 'crash'
  /** faulty nodes lose 80 % of their packets in both directions */
  | 'loss80'
  /** faulty nodes drop everything for 1 s of every 5 s */
  | 'blink'
  /** faulty nodes lose 80 % of their incoming packets, 20 s on / 20 s off */
  | 'inflap';

export const SCENARIOS: Array<{ kind: ScenarioKind; label: string }> = [
  { kind: 'none', label: 'no fault' },
  { kind: 'crash', label: 'clean crash' },
  { kind: 'loss80', label: '80 % loss in and out' },
  { kind: 'blink', label: 'drops everything 1 s of every 5 s' },
  { kind: 'inflap', label: 'incoming 80 % loss 20 s on / 20 s off' },
];

export interface ScenarioOptions {
  kind: ScenarioKind;
  n: number;
  seed: number;
  /** fraction of nodes that turn faulty (at least one) */
  faulty: number;
  warmupMs?: number;
  faultMs?: number;
  /** time after the fault is lifted (a recovered node must come back) */
  recoveryMs?: number;
  updateEveryMs?: number;
  config?: Partial<ClusterConfigInput>;
  /** logger shared by every node (default: none) */
  logger?: Logger;
}

/** What a run measured. Times in ms (NaN = never), bandwidth in bytes per node per second. */
export interface ScenarioResult {
  kind: ScenarioKind;
  n: number;
  faultyNames: string[];
  /** healthy member went alive -> suspect in a healthy node's view, summed over observers */
  healthySuspected: number;
  /** healthy member removed (dead) in a healthy node's view, summed over observers */
  healthyRemoved: number;
  /** healthy nodes that had to refute at least once (raise their incarnation) */
  healthyRefuted: number;
  /** distinct views (sets of visible members) among healthy nodes over all samples of the fault period */
  distinctViews: number;
  /** samples of the fault period in which every healthy node had the same view, 0..1 */
  agreement: number;
  samples: number;
  /** first time after the fault started when every faulty node was hidden in every healthy view */
  removedEverywhereMs: number;
  /** after that time: fraction of (healthy observer, faulty member, sample) triples showing the faulty member, 0..1 */
  shownAfterRemoval: number;
  /** time after the fault ended until every healthy view showed every (recovered, not crashed) faulty node again */
  returnedMs: number;
  /** mean bytes sent per node per second during the fault period */
  bytesPerNodeSec: number;
  /** service-table updates written by healthy nodes during the fault: time until every healthy node had them */
  updateP50Ms: number;
  updateP99Ms: number;
  /** the slowest update (ms) */
  updateMaxMs: number;
  updatesUndelivered: number;
  /** batched view changes applied by healthy nodes (calm mode), summed */
  viewChanges: number;
}

function lossFor(kind: ScenarioKind, t0: number, t1: number): { in?: LossFn; out?: LossFn } | null {
  const during = (f: (dt: number) => number): LossFn => (t) => (t >= t0 && t < t1 ? f(t - t0) : 0);
  switch (kind) {
    case 'loss80': return { in: during(() => 0.8), out: during(() => 0.8) };
    case 'blink': { const f = during((dt) => (dt % 5000 < 1000 ? 1 : 0)); return { in: f, out: f }; }
    case 'inflap': return { in: during((dt) => (dt % 40_000 < 20_000 ? 0.8 : 0)) };
    default: return null;
  }
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Run one scenario; deterministic for a given seed and options. */
export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const warmup = o.warmupMs ?? 10_000;
  const faultMs = o.faultMs ?? 160_000;
  const recoveryMs = o.recoveryMs ?? (o.kind === 'none' || o.kind === 'crash' ? 0 : 60_000);
  const updateEvery = o.updateEveryMs ?? 2000;
  const c = new SimCluster({ n: o.n, seed: o.seed, ...(o.config ? { config: o.config } : {}), ...(o.logger ? { logger: o.logger } : {}) });
  const rand = seededRandom(o.seed * 31 + 7);
  const nf = o.kind === 'none' ? 0 : Math.max(1, Math.round(o.n * o.faulty));
  const faulty = new Set<number>();
  while (faulty.size < nf) faulty.add(Math.floor(rand() * o.n));
  const healthy = [...Array(o.n).keys()].filter((i) => !faulty.has(i));
  const faultyNames = new Set([...faulty].map(SimCluster.nodeName));
  const isFaultyName = (name: string) => faultyNames.has(name);

  // per healthy observer: XOR hash + count of hidden members, count of visible faulty members
  const hidX = new Uint32Array(o.n * 2);
  const hidN = new Int32Array(o.n);
  const visFaulty = new Int32Array(o.n).fill(nf);
  let healthySuspected = 0; let healthyRemoved = 0;
  let inFault = false;
  const hidden = (s: string | null) => s === 'dead' || s === 'left';
  for (const i of healthy) {
    c.nodes[i]!.on('member', (ev) => {
      const was = hidden(ev.previous); const is = hidden(ev.state);
      if (was !== is && ev.previous !== null) {
        const h = hash2(ev.name);
        hidX[2 * i] ^= h[0]; hidX[2 * i + 1] ^= h[1];
        hidN[i] += is ? 1 : -1;
        if (isFaultyName(ev.name)) visFaulty[i] += is ? -1 : 1;
      }
      if (inFault && !isFaultyName(ev.name)) {
        if (ev.state === 'suspect' && ev.previous === 'alive') healthySuspected++;
        if (is && !was && ev.state === 'dead') healthyRemoved++;
      }
    });
  }

  // update tracking
  const arrivals = new Map<string, { t0: number; seen: Set<number>; last: number }>();
  const healthySet = new Set(healthy);
  for (const i of healthy) {
    c.nodes[i]!.on('change', (ev) => {
      if (ev.value === null) return;
      const a = arrivals.get(ev.owner + '/' + ev.key + '@' + ev.version.counter);
      if (a && !a.seen.has(i)) { a.seen.add(i); a.last = c.clock.now() - a.t0; }
    });
  }

  await c.startSeeded();
  await c.clock.advance(warmup);
  const t0 = c.clock.now();
  const t1 = t0 + faultMs;
  const incBefore = healthy.map((i) => c.nodes[i]!.incarnation);
  const vcBefore = healthy.reduce((s, i) => s + c.nodes[i]!.metrics().viewChanges, 0);
  const loss = lossFor(o.kind, t0, t1);
  if (loss) for (const f of faulty) c.net.setNodeLoss(SimCluster.addr(f), loss);
  if (o.kind === 'crash') for (const f of faulty) await c.crash(f);
  inFault = true;
  const b0 = c.net.totalBytes();

  const views = new Set<string>();
  let samples = 0; let agreeing = 0;
  let removedAt = NaN; let shownAfter = 0; let pairsAfter = 0;
  let nextUpdate = 0; let u = 0;
  const stepMs = Math.min(1000, updateEvery);
  let nextSample = 0;
  for (let t = 0; t < faultMs; t += stepMs) {
    if (t >= nextUpdate) {
      const w = healthy[Math.floor(rand() * healthy.length)]!;
      const node = c.nodes[w]!;
      const v = node.set('svc/u' + (u++ % 64), new Uint8Array(32).fill(u & 255));
      arrivals.set(node.name + '/' + 'svc/u' + ((u - 1) % 64) + '@' + v.counter, { t0: c.clock.now(), seen: new Set([w]), last: 0 });
      nextUpdate += updateEvery;
    }
    await c.clock.advance(stepMs);
    if (t + stepMs < nextSample) continue;
    nextSample += 1000;
    samples++;
    let first: string | null = null; let same = true; let allHidden = true;
    for (const i of healthy) {
      const id = `${hidN[i]}:${hidX[2 * i]}:${hidX[2 * i + 1]}`;
      views.add(id);
      if (first === null) first = id; else if (id !== first) same = false;
      if (visFaulty[i]! > 0) allHidden = false;
    }
    if (same) agreeing++;
    if (nf > 0 && Number.isNaN(removedAt) && allHidden) removedAt = c.clock.now() - t0;
    if (!Number.isNaN(removedAt)) {
      for (const i of healthy) { shownAfter += visFaulty[i]!; pairsAfter += nf; }
    }
  }
  const bytesPerNodeSec = (c.net.totalBytes() - b0) / o.n / (faultMs / 1000);
  inFault = false;

  // recovery: the fault is lifted, recovered nodes must come back
  let returnedMs = NaN;
  if (recoveryMs > 0 && o.kind !== 'crash') {
    for (const f of faulty) c.net.clearNodeLoss(SimCluster.addr(f));
    const r = await c.clock.runUntilTrue(() => healthy.every((i) => visFaulty[i] === nf), recoveryMs, 250);
    returnedMs = r >= 0 ? r : NaN;
  } else {
    await c.clock.advance(3000);
  }

  const lat: number[] = []; let undelivered = 0;
  for (const a of arrivals.values()) {
    let all = true;
    for (const i of healthySet) if (!a.seen.has(i)) { all = false; break; }
    if (all) lat.push(a.last); else undelivered++;
  }
  const healthyRefuted = healthy.filter((i, k) => c.nodes[i]!.incarnation > incBefore[k]!).length;
  const viewChanges = healthy.reduce((s, i) => s + c.nodes[i]!.metrics().viewChanges, 0) - vcBefore;
  await c.stopAll();
  return {
    kind: o.kind, n: o.n, faultyNames: [...faultyNames],
    healthySuspected, healthyRemoved, healthyRefuted,
    distinctViews: views.size, agreement: samples ? agreeing / samples : 1, samples,
    removedEverywhereMs: removedAt, shownAfterRemoval: pairsAfter ? shownAfter / pairsAfter : 0,
    returnedMs, bytesPerNodeSec,
    updateP50Ms: pct(lat, 50), updateP99Ms: pct(lat, 99), updateMaxMs: lat.length ? Math.max(...lat) : NaN, updatesUndelivered: undelivered,
    viewChanges,
  };
}
