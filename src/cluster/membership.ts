// SWIM membership with Lifeguard refinements.
//
// * Probe one member per round (randomised round robin). Missing ack after probeTimeout ->
//   indirect probes through `indirectChecks` peers (+ optional probe over the reliable stream).
//   Still nothing at the end of the round -> the member becomes *suspect*.
// * Suspicion timeout (Lifeguard): starts at max = suspicionMaxMult * min and shrinks toward
//   min = suspicionMult * log10(N+1) * probeInterval as independent peers confirm the suspicion.
//   Peers that hear a fresh suspicion verify it themselves with probability verifiers/N.
// * Incarnation numbers: a node hearing it is suspect/dead raises its incarnation and gossips
//   alive (refutation). alive(i) beats suspect/dead(j) iff i > j; suspect beats alive at equal i;
//   dead beats both at equal i. Left is a dead declared by the node itself (graceful leave).
// * Local health multiplier (Lifeguard LHM): missed nacks / refutations slow our own probing
//   so that a slow node does not accuse healthy ones.

import type { ClusterConfig } from './config';
import {
  MsgType, MemberStateCode, encodeMsg,
  type AliveMsg, type SuspectMsg, type DeadMsg, type PingMsg, type PingReqMsg, type AckMsg, type NackMsg,
} from './codec';
import type { Clock, Logger, TimerHandle } from './transport';

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left';

export const STATE_CODE: Record<MemberState, MemberStateCode> = {
  alive: MemberStateCode.Alive, suspect: MemberStateCode.Suspect, dead: MemberStateCode.Dead, left: MemberStateCode.Left,
};
export const CODE_STATE: MemberState[] = ['alive', 'suspect', 'dead', 'left'];

export interface Member {
  name: string;
  addr: string;
  inc: number;
  state: MemberState;
  /** table epoch advertised by the member */
  epoch: number;
  /** clock time of the last state change */
  since: number;
}

/** What membership needs from the node that hosts it. */
export interface MembershipHost {
  /** Send a packet made of `msgs` (+ piggybacked broadcasts) to addr. */
  send(addr: string, msgs: Uint8Array[]): void;
  /** Queue a message for gossip dissemination under an invalidation key. */
  broadcast(key: string, msg: Uint8Array, done?: () => void): void;
  /** Probe over the reliable stream; resolves true on ack. */
  streamPing(addr: string, target: string): Promise<boolean>;
  /** A member changed state (or appeared). prev undefined = new member. */
  memberChanged(m: Member, prev: MemberState | undefined, prevInc: number): void;
}

interface AckWaiter { onAck: () => void; onNack?: () => void; timer: TimerHandle | null }

class Suspicion {
  readonly confirmers = new Set<string>();
  timer: TimerHandle | null = null;
  readonly start: number;
  constructor(readonly inc: number, readonly k: number, readonly min: number, readonly max: number, now: number, from: string) {
    this.start = now;
    this.confirmers.add(from);
  }
  timeout(): number {
    const n = this.confirmers.size - 1; // confirmations beyond the first accuser
    if (this.k < 1) return this.min;
    const frac = Math.log(n + 1) / Math.log(this.k + 1);
    return Math.max(this.min, Math.floor(this.max - (this.max - this.min) * frac));
  }
}

export class Membership {
  readonly members = new Map<string, Member>();
  /** probe order (names), shuffled, walked round robin */
  private probeList: string[] = [];
  private probeIdx = 0;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly acks = new Map<number, AckWaiter>();
  private readonly suspicions = new Map<string, Suspicion>();
  private probeTimer: TimerHandle | null = null;
  private running = false;
  /** Lifeguard local health score: 0 = healthy */
  awareness = 0;
  /** number of members in alive/suspect state (incl. self) */
  private liveCount = 1;
  readonly self: Member;
  private leaving = false;
  readonly stats = { probes: 0, probeFailures: 0, suspicionsRaised: 0, deadDeclared: 0, refutations: 0, nacksMissed: 0 };

  constructor(
    private readonly cfg: ClusterConfig,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly host: MembershipHost,
    private readonly rand: () => number,
    selfInc: number,
    selfEpoch: number,
  ) {
    this.seq = Math.floor(rand() * 0x7fffffff);
    this.self = { name: cfg.name, addr: cfg.advertiseAddr, inc: selfInc, state: 'alive', epoch: selfEpoch, since: clock.now() };
    this.members.set(this.self.name, this.self);
  }

  get numLive(): number { return this.liveCount; }

  // ---------------------------------------------------------------- lifecycle

  start(): void {
    if (this.running) return;
    this.running = true;
    this.broadcastAlive();
    this.scheduleProbe(this.rand() * this.cfg.probeIntervalMs);
  }

  stop(): void {
    this.running = false;
    if (this.probeTimer) this.clock.clearTimeout(this.probeTimer);
    this.probeTimer = null;
    for (const s of this.suspicions.values()) if (s.timer) this.clock.clearTimeout(s.timer);
    this.suspicions.clear();
    for (const a of this.acks.values()) if (a.timer) this.clock.clearTimeout(a.timer);
    this.acks.clear();
  }

  /** Announce our own departure (state left). */
  leave(done: () => void): void {
    this.leaving = true;
    const prev = this.self.state;
    this.self.state = 'left';
    this.self.since = this.clock.now();
    const msg: DeadMsg = { t: MsgType.Dead, name: this.self.name, inc: this.self.inc, from: this.self.name };
    this.host.broadcast('m:' + this.self.name, encodeMsg(msg), done);
    this.host.memberChanged(this.self, prev, this.self.inc);
  }

  setEpoch(epoch: number): void {
    if (epoch === this.self.epoch) return;
    this.self.epoch = epoch;
    this.broadcastAlive();
  }

  aliveMsgSelf(): AliveMsg {
    return { t: MsgType.Alive, name: this.self.name, addr: this.self.addr, inc: this.self.inc, epoch: this.self.epoch };
  }

  private broadcastAlive(): void {
    this.host.broadcast('m:' + this.self.name, encodeMsg(this.aliveMsgSelf()));
    this.host.memberChanged(this.self, this.self.state, this.self.inc);
  }

  // ---------------------------------------------------------------- state merge

  /** Apply an alive message (gossip, join or sync). Returns true if it changed our view. */
  onAlive(a: AliveMsg, gossip = true): boolean {
    if (a.name === this.self.name) {
      // an older incarnation of ourselves (e.g. before a restart) is still circulating
      if (a.inc > this.self.inc || a.epoch > this.self.epoch) {
        if (this.leaving) return false;
        this.self.inc = Math.max(this.self.inc, a.inc) + 1;
        if (a.epoch > this.self.epoch) this.self.epoch = a.epoch + 1; // node must re-publish: handled by host
        this.broadcastAlive();
      }
      return false;
    }
    let m = this.members.get(a.name);
    if (!m) {
      if (!a.addr) return false;
      m = { name: a.name, addr: a.addr, inc: a.inc, state: 'alive', epoch: a.epoch, since: this.clock.now() };
      this.members.set(m.name, m);
      this.liveCount++;
      // insert at a random position of the probe list
      const pl = this.probeList;
      pl.push(m.name);
      const pos = Math.floor(this.rand() * pl.length);
      pl[pl.length - 1] = pl[pos]!; pl[pos] = m.name;
      if (gossip) this.host.broadcast('m:' + a.name, encodeMsg(a));
      this.host.memberChanged(m, undefined, 0);
      return true;
    }
    const newer = a.inc > m.inc || (a.inc === m.inc && a.epoch > m.epoch && m.state === 'alive');
    if (!newer) return false;
    const prev = m.state; const prevInc = m.inc;
    m.inc = a.inc;
    if (a.addr) m.addr = a.addr;
    m.epoch = Math.max(m.epoch, a.epoch);
    this.clearSuspicion(m.name);
    if (prev !== 'alive') { m.state = 'alive'; m.since = this.clock.now(); if (prev === 'dead' || prev === 'left') this.liveCount++; }
    if (gossip) this.host.broadcast('m:' + a.name, encodeMsg(a));
    this.host.memberChanged(m, prev, prevInc);
    return true;
  }

  onSuspect(s: SuspectMsg, gossip = true): boolean {
    if (s.name === this.self.name) {
      if (s.inc >= this.self.inc && !this.leaving) this.refute(s.inc);
      return false;
    }
    const m = this.members.get(s.name);
    if (!m || s.inc < m.inc || m.state === 'dead' || m.state === 'left') return false;
    if (m.state === 'suspect' && s.inc === m.inc) {
      const sp = this.suspicions.get(m.name);
      if (sp && !sp.confirmers.has(s.from) && sp.confirmers.size <= sp.k) {
        sp.confirmers.add(s.from);
        this.rescheduleSuspicion(m.name, sp);
        this.host.broadcast('s:' + m.name + ':' + s.from, encodeMsg(s)); // re-gossip confirmations
        return true;
      }
      return false;
    }
    const prev = m.state; const prevInc = m.inc;
    m.inc = s.inc; m.state = 'suspect'; m.since = this.clock.now();
    this.startSuspicion(m, s.from);
    if (gossip) this.host.broadcast('m:' + m.name, encodeMsg(s));
    this.host.memberChanged(m, prev, prevInc);
    // Lifeguard-style independent verification by a few random peers
    if (s.from !== this.self.name && this.cfg.suspicionVerifiers > 0) {
      const p = this.cfg.suspicionVerifiers / Math.max(1, this.liveCount - 2);
      if (this.rand() < p) this.verify(m);
    }
    return true;
  }

  onDead(d: DeadMsg, gossip = true): boolean {
    if (d.name === this.self.name) {
      if (!this.leaving && d.inc >= this.self.inc) this.refute(d.inc);
      return false;
    }
    const m = this.members.get(d.name);
    if (!m || d.inc < m.inc) return false;
    const left = d.from === d.name;
    if (m.state === 'left' || (m.state === 'dead' && !left)) return false;
    const prev = m.state; const prevInc = m.inc;
    m.inc = d.inc; m.state = left ? 'left' : 'dead'; m.since = this.clock.now();
    if (prev === 'alive' || prev === 'suspect') this.liveCount--;
    this.clearSuspicion(m.name);
    if (gossip) this.host.broadcast('m:' + m.name, encodeMsg(d));
    this.host.memberChanged(m, prev, prevInc);
    return true;
  }

  /** Forget a dead member record (garbage collection). */
  forget(name: string): void {
    const m = this.members.get(name);
    if (!m || m === this.self) return;
    if (m.state === 'alive' || m.state === 'suspect') this.liveCount--;
    this.members.delete(name);
    this.clearSuspicion(name);
    const i = this.probeList.indexOf(name);
    if (i >= 0) { this.probeList.splice(i, 1); if (this.probeIdx > i) this.probeIdx--; }
  }

  private refute(inc: number): void {
    this.self.inc = Math.max(this.self.inc, inc) + 1;
    this.stats.refutations++;
    this.awareness = Math.min(this.cfg.awarenessMaxMultiplier - 1, this.awareness + 1);
    this.broadcastAlive();
  }

  // ---------------------------------------------------------------- suspicion timers

  private suspicionBounds(): { min: number; max: number; k: number } {
    const n = this.liveCount;
    const min = this.cfg.suspicionMult * Math.max(1, Math.log10(n + 1)) * this.cfg.probeIntervalMs;
    const max = this.cfg.suspicionMaxMult * min;
    const k = Math.min(this.cfg.suspicionConfirmations, Math.max(0, n - 2));
    return { min, max, k };
  }

  private startSuspicion(m: Member, from: string): void {
    this.clearSuspicion(m.name);
    const b = this.suspicionBounds();
    const sp = new Suspicion(m.inc, b.k, b.min, b.max, this.clock.now(), from);
    this.suspicions.set(m.name, sp);
    this.rescheduleSuspicion(m.name, sp);
  }

  private rescheduleSuspicion(name: string, sp: Suspicion): void {
    if (sp.timer) this.clock.clearTimeout(sp.timer);
    const remaining = Math.max(0, sp.start + sp.timeout() - this.clock.now());
    sp.timer = this.clock.setTimeout(() => this.suspicionExpired(name, sp), remaining);
  }

  private suspicionExpired(name: string, sp: Suspicion): void {
    if (this.suspicions.get(name) !== sp) return;
    this.suspicions.delete(name);
    const m = this.members.get(name);
    if (!m || m.state !== 'suspect' || m.inc !== sp.inc || !this.running) return;
    this.log.info('member declared dead', { member: name, inc: m.inc, confirmations: sp.confirmers.size });
    this.stats.deadDeclared++;
    this.onDead({ t: MsgType.Dead, name, inc: m.inc, from: this.self.name });
  }

  private clearSuspicion(name: string): void {
    const sp = this.suspicions.get(name);
    if (!sp) return;
    if (sp.timer) this.clock.clearTimeout(sp.timer);
    this.suspicions.delete(name);
  }

  // ---------------------------------------------------------------- probing

  private scale(ms: number): number { return ms * (this.awareness + 1); }

  private scheduleProbe(delay: number): void {
    if (!this.running) return;
    this.probeTimer = this.clock.setTimeout(() => this.probeRound(), delay);
  }

  private probeRound(): void {
    this.probeTimer = null;
    if (!this.running || this.leaving) return;
    const interval = this.scale(this.cfg.probeIntervalMs);
    const target = this.nextProbeTarget();
    this.scheduleProbe(interval);
    if (!target) return;
    this.stats.probes++;
    this.probe(target, interval, true);
  }

  private nextProbeTarget(): Member | null {
    const n = this.probeList.length;
    for (let i = 0; i < n; i++) {
      if (this.probeIdx >= this.probeList.length) {
        this.probeIdx = 0;
        shuffle(this.probeList, this.rand);
      }
      const m = this.members.get(this.probeList[this.probeIdx++]!);
      if (m && (m.state === 'alive' || m.state === 'suspect')) return m;
    }
    return null;
  }

  /** One SWIM probe of `m`; `round` = normal round (affects local health and raises suspicion). */
  private probe(m: Member, interval: number, round: boolean): void {
    const seq = this.nextSeq();
    const probeInc = m.inc;
    let acked = false;
    let expectedNacks = 0;
    let nacks = 0;
    const finish = (): void => {
      if (acked) return;
      this.acks.delete(seq);
      if (!this.running) return;
      this.stats.probeFailures++;
      if (expectedNacks > nacks) this.stats.nacksMissed += expectedNacks - nacks;
      if (round && expectedNacks > 0 && nacks < expectedNacks) {
        this.awareness = Math.min(this.cfg.awarenessMaxMultiplier - 1, this.awareness + (expectedNacks - nacks));
      }
      const cur = this.members.get(m.name);
      if (!cur || cur.inc !== probeInc || (cur.state !== 'alive' && cur.state !== 'suspect')) return;
      this.stats.suspicionsRaised++;
      this.onSuspect({ t: MsgType.Suspect, name: m.name, inc: cur.inc, from: this.self.name });
    };
    const waiter: AckWaiter = {
      onAck: () => {
        if (acked) return;
        acked = true;
        if (waiter.timer) this.clock.clearTimeout(waiter.timer);
        this.acks.delete(seq);
        if (round && this.awareness > 0) this.awareness--;
      },
      onNack: () => { nacks++; },
      timer: null,
    };
    this.acks.set(seq, waiter);
    const ping: PingMsg = { t: MsgType.Ping, seq, target: m.name, from: this.self.name, fromAddr: this.self.addr };
    this.host.send(m.addr, [encodeMsg(ping)]);
    waiter.timer = this.clock.setTimeout(() => {
      if (acked || !this.running) return;
      // indirect probes
      const helpers = this.randomMembers(this.cfg.indirectChecks, (x) => x.state === 'alive' && x.name !== m.name);
      expectedNacks = helpers.length;
      const req: PingReqMsg = { t: MsgType.PingReq, seq, target: m.name, targetAddr: m.addr, from: this.self.name, fromAddr: this.self.addr };
      const enc = encodeMsg(req);
      for (const h of helpers) this.host.send(h.addr, [enc]);
      if (this.cfg.streamFallbackProbe) {
        this.host.streamPing(m.addr, m.name).then((ok) => { if (ok) waiter.onAck(); }, () => {});
      }
      waiter.timer = this.clock.setTimeout(finish, Math.max(1, interval - this.scale(this.cfg.probeTimeoutMs)));
    }, this.scale(this.cfg.probeTimeoutMs));
  }

  private verify(m: Member): void {
    this.probe(m, this.cfg.probeIntervalMs, false);
  }

  private nextSeq(): number { this.seq = (this.seq + 1) >>> 0; return this.seq; }

  /** Up to k distinct random members (not self) satisfying pred. */
  randomMembers(k: number, pred: (m: Member) => boolean): Member[] {
    const out: Member[] = [];
    const list = this.probeList;
    const n = list.length;
    if (n === 0 || k <= 0) return out;
    const seen = new Set<string>();
    for (let tries = 0; tries < k * 4 + 8 && out.length < k; tries++) {
      const name = list[Math.floor(this.rand() * n)]!;
      if (seen.has(name)) continue;
      seen.add(name);
      const m = this.members.get(name);
      if (m && pred(m)) out.push(m);
    }
    if (out.length < k && n <= 4 * k + 8) {
      for (const name of list) {
        if (out.length >= k) break;
        if (seen.has(name)) continue;
        const m = this.members.get(name);
        if (m && pred(m)) out.push(m);
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- probe messages

  onPing(p: PingMsg): void {
    if (p.target !== this.self.name || this.leaving) return; // misdirected ping: drop (memberlist does the same)
    const ack: AckMsg = { t: MsgType.Ack, seq: p.seq, from: this.self.name };
    this.host.send(p.fromAddr, [encodeMsg(ack)]);
  }

  onPingReq(r: PingReqMsg): void {
    if (!this.running || this.leaving) return;
    const seq = this.nextSeq();
    let done = false;
    let nackTimer: TimerHandle | null = null;
    const waiter: AckWaiter = {
      onAck: () => {
        if (done) return; done = true;
        if (waiter.timer) this.clock.clearTimeout(waiter.timer);
        if (nackTimer) this.clock.clearTimeout(nackTimer);
        this.acks.delete(seq);
        this.host.send(r.fromAddr, [encodeMsg({ t: MsgType.Ack, seq: r.seq, from: this.self.name })]);
      },
      timer: null,
    };
    this.acks.set(seq, waiter);
    // The asker listens for indirect answers during (probeInterval - probeTimeout) after sending the
    // ping-req (at least that long: its local health only stretches it). The nack must arrive inside
    // that window, so it is sent after 80 % of it (memberlist sends it at 80 % of the probe timeout for
    // the same reason). Sending it after probeTimeout (= the whole window with the defaults) made every
    // nack arrive late and penalised healthy askers (issue 11). A late ack is still forwarded until
    // probeTimeout has passed.
    const nackAfter = nackDelayMs(this.cfg.probeIntervalMs, this.cfg.probeTimeoutMs);
    nackTimer = this.clock.setTimeout(() => {
      nackTimer = null;
      if (done) return;
      const nack: NackMsg = { t: MsgType.Nack, seq: r.seq, from: this.self.name };
      this.host.send(r.fromAddr, [encodeMsg(nack)]);
    }, nackAfter);
    waiter.timer = this.clock.setTimeout(() => {
      if (done) return; done = true;
      if (nackTimer) this.clock.clearTimeout(nackTimer);
      this.acks.delete(seq);
    }, Math.max(this.cfg.probeTimeoutMs, nackAfter + 1));
    this.host.send(r.targetAddr, [encodeMsg({ t: MsgType.Ping, seq, target: r.target, from: this.self.name, fromAddr: this.self.addr })]);
  }

  onAck(a: AckMsg): void { this.acks.get(a.seq)?.onAck(); }
  onNack(n: NackMsg): void { this.acks.get(n.seq)?.onNack?.(); }

  // ---------------------------------------------------------------- queries

  get(name: string): Member | undefined { return this.members.get(name); }
  isSuspected(name: string): boolean { return this.suspicions.has(name); }
}

/**
 * When a helper sends its nack for an indirect probe, in ms after receiving the ping-req:
 * 80 % of the asker's minimum listening window (probeInterval - probeTimeout), at least 1 ms.
 */
export function nackDelayMs(probeIntervalMs: number, probeTimeoutMs: number): number {
  return Math.max(1, Math.floor(0.8 * (probeIntervalMs - probeTimeoutMs)));
}

export function shuffle<T>(a: T[], rand: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i]!; a[i] = a[j]!; a[j] = t;
  }
}
