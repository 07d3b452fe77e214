// Deterministic simulated network in virtual time.
//
// * SimClock: a discrete event queue (binary heap keyed by (time, seq)); implements Clock.
// * SimNetwork: packet loss, a one-way delay distribution, partitions between groups of
//   addresses, node crash (all traffic to/from it is dropped) and restart.
// * SimTransport: the Transport of one simulated node. Packets are delivered after a sampled
//   delay unless lost; requests model a TCP exchange: each direction is retransmitted after an
//   RTO for every loss, fails on partition/crash (after the timeout).
// Everything is driven by one seeded PRNG, so a run is reproducible.

import type { Clock, PacketHandler, RequestHandler, TimerHandle, Transport } from './transport';

/** mulberry32 PRNG */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimEvent { t: number; seq: number; fn: (() => void) | null; drain: boolean }

const drainMicrotasks = (): Promise<void> => new Promise((r) => setImmediate(r));

export class SimClock implements Clock {
  private heap: SimEvent[] = [];
  private seq = 0;
  private t = 0;
  events = 0;

  now(): number { return this.t; }

  setTimeout(fn: () => void, ms: number): TimerHandle { return this.schedule(fn, ms, false); }

  /** Schedule; `drain` = the callback settles promises, so run their continuations before the next event. */
  schedule(fn: () => void, ms: number, drain: boolean): TimerHandle {
    const ev: SimEvent = { t: this.t + Math.max(0, ms), seq: this.seq++, fn, drain };
    this.push(ev);
    return ev;
  }

  clearTimeout(h: TimerHandle): void { if (h) (h as SimEvent).fn = null; }

  /** Run events until virtual time `until` (inclusive). */
  async runUntil(until: number): Promise<void> {
    const h = this.heap;
    await drainMicrotasks();
    while (h.length > 0 && h[0]!.t <= until) {
      const ev = this.pop();
      this.t = ev.t;
      const fn = ev.fn;
      if (fn) {
        ev.fn = null; this.events++; fn();
        if (ev.drain) await drainMicrotasks();
      }
    }
    if (until > this.t) this.t = until;
  }

  /** Advance by ms. */
  advance(ms: number): Promise<void> { return this.runUntil(this.t + ms); }

  /** Run until pred() is true (checked every `step` ms) or `max` ms passed. Returns elapsed or -1. */
  async runUntilTrue(pred: () => boolean, max: number, step = 10): Promise<number> {
    const start = this.t;
    while (this.t - start < max) {
      if (pred()) return this.t - start;
      await this.advance(step);
    }
    return pred() ? this.t - start : -1;
  }

  pending(): number { return this.heap.length; }

  private less(a: SimEvent, b: SimEvent): boolean { return a.t < b.t || (a.t === b.t && a.seq < b.seq); }

  private push(ev: SimEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      const tmp = h[i]!; h[i] = h[p]!; h[p] = tmp; i = p;
    }
  }

  private pop(): SimEvent {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1; const r = l + 1;
        let m = i;
        if (l < n && this.less(h[l]!, h[m]!)) m = l;
        if (r < n && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        const tmp = h[i]!; h[i] = h[m]!; h[m] = tmp; i = m;
      }
    }
    return top;
  }
}

export interface SimNetworkOptions {
  seed?: number;
  /** packet loss probability 0..1 (applies to every datagram and every TCP segment attempt) */
  loss?: number;
  /** one-way delay sampler in ms; default: 1 + exponential(mean 4) capped at 100 */
  delay?: (rand: () => number) => number;
  /** TCP retransmission timeout used by the request model */
  rtoMs?: number;
  /** per-packet overhead the simulated transport reports (e.g. an auth envelope) */
  packetOverhead?: number;
}

/**
 * Loss model of one direction of one node: drop probability in [0, 1] of a datagram (or of one TCP
 * segment attempt) as a function of the virtual time in ms.
 */
export type LossFn = (tMs: number) => number;

/** Per-node, per-direction loss: `in` applies to what the node receives, `out` to what it sends. */
export interface NodeLoss { in?: LossFn; out?: LossFn }

export const defaultDelay = (rand: () => number): number => Math.min(100, 1 + -Math.log(1 - rand()) * 4);

export class SimNetwork {
  readonly clock = new SimClock();
  readonly rand: () => number;
  loss: number;
  delay: (rand: () => number) => number;
  readonly rtoMs: number;
  readonly packetOverhead: number;
  private readonly nodes = new Map<string, SimTransport>();
  private readonly down = new Set<string>();
  private group = new Map<string, number>();
  private readonly nodeLoss = new Map<string, NodeLoss>();
  /** bytes sent per address (packets + stream, both directions counted at the sender) */
  readonly bytesSent = new Map<string, number>();
  packetsSent = 0;
  packetsDropped = 0;

  constructor(opts: SimNetworkOptions = {}) {
    this.rand = seededRandom(opts.seed ?? 1);
    this.loss = opts.loss ?? 0;
    this.delay = opts.delay ?? defaultDelay;
    this.rtoMs = opts.rtoMs ?? 200;
    this.packetOverhead = opts.packetOverhead ?? 24;
  }

  transport(addr: string): SimTransport {
    const t = new SimTransport(this, addr);
    this.nodes.set(addr, t);
    this.down.delete(addr);
    return t;
  }

  /** Crash: the node stops answering and all its traffic is dropped. */
  crash(addr: string): void { this.down.add(addr); }
  isDown(addr: string): boolean { return this.down.has(addr); }

  /** Give one node (by address) its own loss model per direction; combines with the global `loss`. */
  setNodeLoss(addr: string, loss: NodeLoss): void { this.nodeLoss.set(addr, loss); }
  clearNodeLoss(addr: string): void { this.nodeLoss.delete(addr); }

  /** Probability that a datagram/segment from -> to is lost now: 1 - (1-global)(1-out(from))(1-in(to)). */
  dropProbability(from: string, to: string): number {
    let keep = 1 - this.loss;
    const t = this.clock.now();
    const lf = this.nodeLoss.get(from)?.out; if (lf) keep *= 1 - Math.min(1, Math.max(0, lf(t)));
    const lt = this.nodeLoss.get(to)?.in; if (lt) keep *= 1 - Math.min(1, Math.max(0, lt(t)));
    return 1 - keep;
  }

  /**
   * Drop every datagram for which `f(from, to, data)` is true (tests: e.g. a node that misses every copy
   * of one message while its probes still get through). `null` removes the filter.
   */
  setPacketFilter(f: ((from: string, to: string, data: Uint8Array) => boolean) | null): void { this.packetFilter = f; }
  private packetFilter: ((from: string, to: string, data: Uint8Array) => boolean) | null = null;

  /** Split addresses into groups; traffic between different groups is dropped. */
  partition(groups: string[][]): void {
    this.group = new Map();
    groups.forEach((g, i) => { for (const a of g) this.group.set(a, i + 1); });
  }
  heal(): void { this.group = new Map(); }

  reachable(a: string, b: string): boolean {
    if (this.down.has(a) || this.down.has(b)) return false;
    const ga = this.group.get(a) ?? 0; const gb = this.group.get(b) ?? 0;
    return ga === gb;
  }

  account(addr: string, n: number): void { this.bytesSent.set(addr, (this.bytesSent.get(addr) ?? 0) + n); }

  /** @internal */
  deliverPacket(from: string, to: string, data: Uint8Array): void {
    this.packetsSent++;
    this.account(from, data.length + this.packetOverhead);
    const p = this.dropProbability(from, to);
    if (!this.reachable(from, to) || (p > 0 && this.rand() < p) || this.packetFilter?.(from, to, data)) { this.packetsDropped++; return; }
    const d = this.delay(this.rand);
    this.clock.setTimeout(() => {
      if (!this.reachable(from, to)) return;
      this.nodes.get(to)?.receivePacket(from, data);
    }, d);
  }

  /** one-way TCP-ish latency with loss-driven retransmissions */
  private tcpLatency(from: string, to: string): number {
    let t = this.delay(this.rand);
    let tries = 0;
    const p = this.dropProbability(from, to);
    while (p > 0 && this.rand() < p && tries < 6) { t += this.rtoMs * 2 ** tries; tries++; }
    return t;
  }

  /** @internal */
  deliverRequest(from: string, to: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    this.account(from, data.length + 40);
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const timer = this.clock.schedule(() => { if (!settled) { settled = true; reject(new Error('request timeout')); } }, timeoutMs, true);
      if (!this.reachable(from, to)) return; // times out
      this.clock.schedule(() => {
        const target = this.nodes.get(to);
        if (!target || !this.reachable(from, to) || !target.requestHandler) return;
        let resp: Uint8Array | Promise<Uint8Array>;
        try { resp = target.requestHandler(from, data); } catch { return; }
        Promise.resolve(resp).then((r) => {
          this.account(to, r.length + 40);
          this.clock.schedule(() => {
            if (settled || !this.reachable(from, to)) return;
            settled = true;
            this.clock.clearTimeout(timer);
            resolve(r);
          }, this.tcpLatency(to, from), true);
        }, () => {});
      }, this.tcpLatency(from, to), true);
    });
  }

  totalBytes(): number { let s = 0; for (const v of this.bytesSent.values()) s += v; return s; }
}

export class SimTransport implements Transport {
  readonly packetOverhead: number;
  packetHandler: PacketHandler | null = null;
  requestHandler: RequestHandler | null = null;
  closed = false;
  constructor(private readonly net: SimNetwork, readonly addr: string) { this.packetOverhead = net.packetOverhead; }
  sendPacket(addr: string, data: Uint8Array): void { if (!this.closed) this.net.deliverPacket(this.addr, addr, data); }
  onPacket(h: PacketHandler): void { this.packetHandler = h; }
  request(addr: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error('transport closed'));
    return this.net.deliverRequest(this.addr, addr, data, timeoutMs);
  }
  onRequest(h: RequestHandler): void { this.requestHandler = h; }
  receivePacket(from: string, data: Uint8Array): void { if (!this.closed) this.packetHandler?.(from, data); }
  async start(): Promise<void> { this.closed = false; }
  async close(): Promise<void> { this.closed = true; this.packetHandler = null; this.requestHandler = null; }
}
