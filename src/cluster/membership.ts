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
//
// Gray failures (cfg.calmMembership, issue 11; docs/cluster.md "Gray failures"):
// * Witness: a failed probe accuses the target only if `probeWitnesses` (2) indirect-probe helpers
//   answered with a nack (each reached us and could not reach the target either). A prober that hears
//   from fewer is the likely culprit: it blames itself (Lifeguard, Dadgar et al. 2018, sec. IV-A
//   "nack" messages) instead of the target. Two, not one: a single nack may come from a helper whose
//   own link is the sick one (its ping or the target's ack was lost on the helper's side).
// * Quiet gossip (bandwidth under gray failures): suspicions learned second-hand from an anti-entropy
//   digest are not relayed (only first-hand accusations spread: SWIM's dissemination component carries
//   what a prober saw, Das et al. 2002 sec. 4; a digest's "suspect" is someone else's news, already
//   gossiped by its accuser), and neither suspicions nor alerts about a member that is already in our
//   pending cut are gossiped: the batched view change carries the removal (Rapid sec. 4.2, the cut is
//   what gets disseminated once it is stable).
// * Distinct accusers: a suspicion becomes "dead" only after `deadAccusers` distinct accusers, in the
//   spirit of Rapid's H-of-K alerts (Suresh et al., ATC'18, sec. 4.2); a lone (possibly sick) accuser
//   never gets anyone removed.
// * Flap damping per incarnation: a member that refuted `flapThreshold` suspicions raised by real
//   (witnessed) accusers within the flap window no longer clears a suspicion by refuting: its new
//   incarnation is accepted but the suspicion (and its accusers) carries over, so it is removed. Guard:
//   when more than max(3, flapGuardFraction * N) members flap at once the loss is network-wide and
//   nobody is damped, so uniform loss never hides healthy members.
// * Quarantine and probation: a removed member is no longer probed by SWIM nor gossiped to. Its K
//   observers (successors on K hash rings, Rapid's expander-like monitoring topology, sec. 4.1) send it
//   probation probes; one that answered every probe for the probation vouches for it, and it is
//   readmitted once `probationVouches` distinct observers vouched. The probation doubles with every
//   removal within the probation memory (bounded by probationMaxProbes).
// * Batched view changes: removals and readmissions enter a pending cut that is applied in one step
//   once no change arrived for viewSettleMs and no other member is half-way (between 1 and H-1
//   observer alerts: at most viewMaxAlertDelayMs; suspected but not ready: at most viewMaxDelayMs,
//   after the first change) (Rapid's multi-process cut detection, sec. 4.2,
//   without its consensus step: each side of a partition still moves on by itself).
// Papers: SWIM (Das, Gupta, Motivala, DSN 2002); Lifeguard (Dadgar, Phillips, Currey, 2018,
// arXiv:1707.00788); Rapid (Suresh et al., USENIX ATC 2018).

import type { ClusterConfig } from './config';
import {
  MsgType, MemberStateCode, encodeMsg,
  type AliveMsg, type SuspectMsg, type DeadMsg, type PingMsg, type PingReqMsg, type AckMsg, type NackMsg,
  type VouchMsg, type AlertMsg, hash2,
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
  /** Drop a queued broadcast that became useless (e.g. alerts about a member that is removed now). */
  unbroadcast(key: string): void;
  /** Send a packet made of exactly `msgs` (no piggybacked gossip): probation probes of removed members. */
  sendDirect(addr: string, msgs: Uint8Array[]): void;
  /** Probe over the reliable stream; resolves true on ack. */
  streamPing(addr: string, target: string): Promise<boolean>;
  /** A member changed state (or appeared). prev undefined = new member. */
  memberChanged(m: Member, prev: MemberState | undefined, prevInc: number): void;
}

interface AckWaiter { onAck: () => void; onNack?: () => void; timer: TimerHandle | null }

/** Pings per observer watch round (Membership.watchRound). */
const WATCH_PINGS = 3;

/** Accuser name used for suspicions that come from an anti-entropy digest (not a real accuser). */
const SYNC_ACCUSER = 'sync';

class Suspicion {
  readonly confirmers = new Set<string>();
  timer: TimerHandle | null = null;
  readonly start: number;
  /** the timer ran out while there were fewer than deadAccusers distinct accusers (calm mode) */
  expired = false;
  constructor(public inc: number, readonly k: number, readonly min: number, readonly max: number, now: number, from: string) {
    this.start = now;
    this.confirmers.add(from);
  }
  timeout(): number {
    const n = this.confirmers.size - 1; // confirmations beyond the first accuser
    if (this.k < 1) return this.min;
    const frac = Math.log(n + 1) / Math.log(this.k + 1);
    return Math.max(this.min, Math.floor(this.max - (this.max - this.min) * frac));
  }
  /** Distinct real accusers (anti-entropy "sync" suspicions do not count). */
  accusers(): number { return this.confirmers.size - (this.confirmers.has(SYNC_ACCUSER) ? 1 : 0); }
}

/** Gray-failure bookkeeping of one member (calm mode). Times are clock ms. */
interface GrayRecord {
  /** when suspicions of this member with a real (witnessed) accuser were refuted, and when it was removed */
  flaps: number[];
  /** when this member was removed (dead applied) */
  removals: number[];
  /** newest alive record heard from/about the member while it is removed */
  pending: AliveMsg | null;
  /** observers that vouched for it since its last removal */
  vouchers: Set<string>;
  /** observer side: start of the current run of answered probation probes (null = last probe failed) */
  cleanSince: number | null;
  /** observer side: a probation probe is in flight */
  probing: boolean;
  /** observer side: we already vouched since the last removal */
  vouched: boolean;
  /** alerts about incarnations below this one predate the member's last readmission and are ignored */
  alertFloor: number;
}

/** Observer side of one monitoring edge that is active (Rapid sec. 4.1): the subject is being watched. */
interface Watch {
  /** outcome of the last alertRounds rounds, true = failed */
  rounds: boolean[];
  /** clock time after which the watch ends unless renewed by a new suspicion or alert */
  until: number;
  probing: boolean;
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
  readonly stats = {
    probes: 0, probeFailures: 0, suspicionsRaised: 0, deadDeclared: 0, refutations: 0, nacksMissed: 0,
    /** failed probes that accused nobody because no helper witnessed the failure (calm mode) */
    unwitnessed: 0,
    /** refutations that did not clear a suspicion because the member was damped (calm mode) */
    damped: 0,
    /** members removed / readmitted by this node's view (calm mode) */
    removed: 0, readmitted: 0,
    /** batched view changes applied and vouches sent (calm mode) */
    viewChanges: 0, vouchesSent: 0,
    /** observer alerts sent (calm mode) */
    alertsSent: 0,
  };
  private readonly gray = new Map<string, GrayRecord>();
  /** pending cut: removals and readmissions waiting to be applied together */
  private readonly cutDead = new Map<string, DeadMsg>();
  private readonly cutAlive = new Map<string, AliveMsg>();
  private cutTimer: TimerHandle | null = null;
  private cutFirst = 0;
  /** the pending cut holds a removal decided by another node (it waited for stability already) */
  private remoteCut = false;
  private probationTimer: TimerHandle | null = null;
  /** observer side: members we watch because they were suspected (name -> watch) */
  private readonly watches = new Map<string, Watch>();
  /** alerts heard: member name -> observer name -> clock time the alert arrived */
  private readonly alerts = new Map<string, Map<string, number>>();
  /** members of the pending cut whose removal comes from H-of-K observer alerts (refutation does not cancel it) */
  private readonly cutByAlert = new Set<string>();
  /** K hash rings over all known members (observer topology); rebuilt lazily */
  private rings: Array<{ keys: Float64Array; names: string[] }> | null = null;

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
    if (this.cfg.calmMembership) this.scheduleProbation();
  }

  stop(): void {
    this.running = false;
    if (this.probeTimer) this.clock.clearTimeout(this.probeTimer);
    this.probeTimer = null;
    for (const t of [this.cutTimer, this.probationTimer]) if (t) this.clock.clearTimeout(t);
    this.cutTimer = null; this.probationTimer = null;
    this.cutDead.clear(); this.cutAlive.clear(); this.cutByAlert.clear();
    this.watches.clear(); this.alerts.clear();
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
      this.rings = null;
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
    if (this.cfg.calmMembership) {
      if (m.state === 'dead') {
        // Quarantined: a refutation does not bring a removed member back, its observers do (probation).
        // The removal moves to the refuted incarnation, so that nodes that accepted the refutation
        // before hearing of the removal (their copy is newer than ours) still apply it.
        const g = this.grayOf(m.name);
        if (!g.pending || a.inc > g.pending.inc || (a.inc === g.pending.inc && a.epoch > g.pending.epoch)) {
          g.pending = { ...a, addr: a.addr || m.addr };
        }
        if (a.inc > m.inc && g.vouchers.size === 0) {
          const prevInc = m.inc;
          m.inc = a.inc;
          m.epoch = Math.max(m.epoch, a.epoch);
          this.host.broadcast('m:' + m.name, encodeMsg({ t: MsgType.Dead, name: m.name, inc: m.inc, from: this.self.name }));
          this.host.memberChanged(m, 'dead', prevInc);
        }
        return false;
      }
      const sp = this.suspicions.get(m.name);
      const cut = this.cutDead.get(m.name);
      if ((sp || cut) && (this.isDamped(m.name) || this.cutByAlert.has(m.name))) {
        // Damped: accept the new incarnation but keep the suspicion (and its accusers) or the pending
        // removal, now at that incarnation, so that "dead" still applies everywhere.
        const prevInc = m.inc;
        m.inc = a.inc;
        if (a.addr) m.addr = a.addr;
        m.epoch = Math.max(m.epoch, a.epoch);
        if (sp) sp.inc = a.inc;
        if (cut) cut.inc = a.inc;
        this.stats.damped++;
        if (gossip) this.host.broadcast('m:' + a.name, encodeMsg(a));
        this.host.memberChanged(m, m.state, prevInc);
        return true;
      }
      if (cut) this.cutDead.delete(m.name);
      if (sp && sp.accusers() >= 1) this.grayOf(m.name).flaps.push(this.clock.now());
    }
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
    if (m && s.from !== SYNC_ACCUSER && (m.state === 'alive' || m.state === 'suspect')) this.maybeWatch(m.name);
    if (!m || s.inc < m.inc || m.state === 'dead' || m.state === 'left') return false;
    if (m.state === 'suspect' && s.inc === m.inc) {
      const sp = this.suspicions.get(m.name);
      if (sp && !sp.confirmers.has(s.from) && sp.confirmers.size <= Math.max(sp.k, this.cfg.deadAccusers)) {
        sp.confirmers.add(s.from);
        if (sp.expired) this.suspicionExpired(m.name, sp); else this.rescheduleSuspicion(m.name, sp);
        // re-gossip confirmations (calm mode: first-hand ones only, and not once the member is in our cut)
        if (this.relaySuspicion(s)) this.host.broadcast('s:' + m.name + ':' + s.from, encodeMsg(s));
        return true;
      }
      return false;
    }
    const prev = m.state; const prevInc = m.inc;
    m.inc = s.inc; m.state = 'suspect'; m.since = this.clock.now();
    this.startSuspicion(m, s.from);
    if (gossip && this.relaySuspicion(s)) this.host.broadcast('m:' + m.name, encodeMsg(s));
    this.host.memberChanged(m, prev, prevInc);
    // Lifeguard-style independent verification by a few random peers
    if (s.from !== this.self.name && this.cfg.suspicionVerifiers > 0) {
      const p = this.cfg.suspicionVerifiers / Math.max(1, this.liveCount - 2);
      if (this.rand() < p) this.verify(m);
    }
    return true;
  }

  /**
   * Whether a suspicion we accepted is gossiped on (calm mode, "quiet gossip"): not when it came from an
   * anti-entropy digest (second-hand: its accuser gossiped it already, and relaying digests re-spreads
   * every old suspicion each sync round), nor when the member is in our pending cut (the cut's removal
   * is what spreads, Rapid sec. 4.2). Stock mode relays everything (SWIM).
   */
  private relaySuspicion(s: SuspectMsg): boolean {
    if (!this.cfg.calmMembership) return true;
    return s.from !== SYNC_ACCUSER && !this.cutDead.has(s.name);
  }

  /** A member entered our pending cut: queued confirmations of its suspicion are useless now (quiet gossip). */
  private quietCut(name: string, sp = this.suspicions.get(name)): void {
    if (sp) for (const f of sp.confirmers) this.host.unbroadcast('s:' + name + ':' + f);
  }

  onDead(d: DeadMsg, gossip = true): boolean {
    if (d.name === this.self.name) {
      // Calm membership: refuting a removal cannot bring us back (our observers do, after the
      // probation), it would only feed flapping; a suspicion is still refuted (onSuspect).
      if (!this.leaving && d.inc >= this.self.inc && !this.cfg.calmMembership) this.refute(d.inc);
      return false;
    }
    const m = this.members.get(d.name);
    if (!m || d.inc < m.inc) return false;
    const left = d.from === d.name;
    if (m.state === 'left' || (m.state === 'dead' && !left)) {
      if (m.state === 'dead' && d.inc > m.inc) m.inc = d.inc; // removed again at a newer incarnation
      return false;
    }
    if (this.cfg.calmMembership && !left) {
      // A removal decided elsewhere joins the pending cut and is applied with the others of its batch
      // (same settle period); its sender already waited for the cut to be stable, so we do not wait
      // for our own half-way suspicions again.
      const cur = this.cutDead.get(m.name);
      if (cur && d.inc <= cur.inc) return false;
      this.cutDead.set(m.name, { ...d });
      this.quietCut(m.name);
      // relayed at once, not after our own settle period: a removal that waited for a commit at every
      // hop spread one settle period per hop and left a tail of nodes seconds behind
      if (gossip) this.host.broadcast('m:' + m.name, encodeMsg(d));
      this.remoteCut = true;
      this.scheduleCut();
      return true;
    }
    this.applyDead(m, d, gossip);
    return true;
  }

  private applyDead(m: Member, d: DeadMsg, gossip: boolean): void {
    const left = d.from === d.name;
    const prev = m.state; const prevInc = m.inc;
    m.inc = d.inc; m.state = left ? 'left' : 'dead'; m.since = this.clock.now();
    if (prev === 'alive' || prev === 'suspect') this.liveCount--;
    this.clearSuspicion(m.name);
    if (this.cfg.calmMembership && !left) {
      const g = this.grayOf(m.name);
      const now = this.clock.now();
      g.removals.push(now); g.flaps.push(now);
      g.pending = null; g.vouchers.clear(); g.cleanSince = null; g.vouched = false;
      this.stats.removed++;
      // the alerts did their job: stop relaying them (each one costs every node retransmitLimit sends)
      for (const o of this.alerts.get(m.name)?.keys() ?? []) this.host.unbroadcast('a:' + m.name + ':' + o);
      this.alerts.delete(m.name); this.watches.delete(m.name); this.cutByAlert.delete(m.name);
    }
    if (gossip) this.host.broadcast('m:' + m.name, encodeMsg(d));
    this.host.memberChanged(m, prev, prevInc);
  }

  /** Forget a dead member record (garbage collection). */
  forget(name: string): void {
    const m = this.members.get(name);
    if (!m || m === this.self) return;
    if (m.state === 'alive' || m.state === 'suspect') this.liveCount--;
    this.members.delete(name);
    this.gray.delete(name);
    this.cutDead.delete(name); this.cutAlive.delete(name); this.cutByAlert.delete(name);
    this.alerts.delete(name); this.watches.delete(name);
    this.rings = null;
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
    const m = this.members.get(name);
    if (!m || m.state !== 'suspect' || m.inc !== sp.inc || !this.running) { this.suspicions.delete(name); return; }
    if (this.cfg.calmMembership) {
      sp.timer = null;
      if (sp.accusers() < this.accusersNeeded()) {
        // Wait for more accusers (or a refutation), but not forever: a damped member cannot clear a
        // suspicion by refuting, so one that nobody else confirms within another maximum suspicion
        // timeout is given up (the member is alive again in our view).
        if (!sp.expired) {
          sp.expired = true;
          sp.timer = this.clock.setTimeout(() => this.abandonSuspicion(name, sp), sp.max);
        }
        return;
      }
      this.suspicions.delete(name);
      this.log.info('member ready to be declared dead', { member: name, inc: m.inc, accusers: sp.accusers() });
      this.stats.deadDeclared++;
      const d: DeadMsg = { t: MsgType.Dead, name, inc: m.inc, from: this.self.name };
      const cur = this.cutDead.get(name);
      if (!cur || d.inc > cur.inc) this.cutDead.set(name, d);
      this.quietCut(name, sp);
      this.scheduleCut();
      return;
    }
    this.suspicions.delete(name);
    this.log.info('member declared dead', { member: name, inc: m.inc, confirmations: sp.confirmers.size });
    this.stats.deadDeclared++;
    this.onDead({ t: MsgType.Dead, name, inc: m.inc, from: this.self.name });
  }

  private abandonSuspicion(name: string, sp: Suspicion): void {
    if (this.suspicions.get(name) !== sp) return;
    this.suspicions.delete(name);
    const m = this.members.get(name);
    if (!m || m.state !== 'suspect' || !this.running) return;
    this.log.debug('suspicion abandoned: too few accusers', { member: name, accusers: sp.accusers() });
    m.state = 'alive'; m.since = this.clock.now();
    this.host.memberChanged(m, 'suspect', m.inc);
  }

  private clearSuspicion(name: string): void {
    const sp = this.suspicions.get(name);
    if (!sp) return;
    if (sp.timer) this.clock.clearTimeout(sp.timer);
    this.suspicions.delete(name);
  }

  // ---------------------------------------------------------------- gray failures (calm mode)

  private grayOf(name: string): GrayRecord {
    let g = this.gray.get(name);
    if (!g) {
      g = { flaps: [], removals: [], pending: null, vouchers: new Set(), cleanSince: null, probing: false, vouched: false, alertFloor: 0 };
      this.gray.set(name, g);
    }
    return g;
  }

  /** Distinct accusers needed before "dead": deadAccusers, capped at N-2 (the others that can witness), >= 1. */
  private accusersNeeded(): number {
    return Math.max(1, Math.min(this.cfg.deadAccusers, this.liveCount - 2));
  }

  private recent(times: number[], windowMs: number): number {
    const since = this.clock.now() - windowMs;
    while (times.length > 0 && times[0]! < since) times.shift();
    return times.length;
  }

  /**
   * Whether refutations of `name` are damped: it flapped flapThreshold times within the flap window,
   * and the guard holds (at most max(3, flapGuardFraction * N) members flap at once; beyond that the
   * loss is network-wide and damping would hide healthy members).
   */
  isDamped(name: string): boolean {
    if (!this.cfg.calmMembership) return false;
    const g = this.gray.get(name);
    const w = this.cfg.flapWindowProbes * this.cfg.probeIntervalMs;
    if (!g || this.recent(g.flaps, w) < this.cfg.flapThreshold) return false;
    let flapping = 0;
    for (const r of this.gray.values()) if (this.recent(r.flaps, w) >= this.cfg.flapThreshold) flapping++;
    return flapping <= Math.max(3, this.cfg.flapGuardFraction * this.liveCount);
  }

  /** Probation of a removed member in ms: probationProbes * probeInterval, doubled per earlier removal within the memory, capped. */
  probationMs(name: string): number {
    const g = this.gray.get(name);
    const k = g ? this.recent(g.removals, this.cfg.probationMemoryProbes * this.cfg.probeIntervalMs) : 1;
    const base = this.cfg.probationProbes * this.cfg.probeIntervalMs;
    return Math.min(this.cfg.probationMaxProbes * this.cfg.probeIntervalMs, base * 2 ** Math.max(0, k - 1));
  }

  /**
   * Some member is "half-way": suspected by a real (witnessed) accuser but not ready to be removed.
   * Rapid blocks a cut while any member has between L and H alerts; witnessed accusations of healthy
   * members are rare enough that one accuser is our L.
   */
  private suspicionUnstable(): boolean {
    for (const [name, sp] of this.suspicions) {
      if (sp.accusers() >= 1 && !this.cutDead.has(name)) return true;
    }
    // a damped member that is not removed yet is on its way out (it flaps between suspect and alive)
    for (const name of this.gray.keys()) {
      const m = this.members.get(name);
      if (m && m.state === 'alive' && !this.cutDead.has(name) && this.isDamped(name)) return true;
    }
    return false;
  }

  private scheduleCut(): void {
    if (!this.running) return;
    const now = this.clock.now();
    if (!this.cutTimer) this.cutFirst = now;
    else this.clock.clearTimeout(this.cutTimer);
    this.cutTimer = this.clock.setTimeout(() => this.commitCut(), this.cfg.viewSettleMs);
  }

  /**
   * Apply the pending cut (removals and readmissions) in one step, unless another member is half-way
   * and the cut is younger than viewMaxDelayMs (then wait one more settle period). Rapid sec. 4.2.
   */
  private commitCut(): void {
    this.cutTimer = null;
    if (!this.running) return;
    // Rapid's rule: no cut while a member is half-way (L <= alerts < H), so that members that turned
    // sick together leave in one cut even when their alerts reach H seconds apart; bounded by
    // viewMaxAlertDelayMs (a member whose sickness ended before H alerts stays in the band until its
    // alerts expire). Half-way SWIM suspicions hold a cut for at most viewMaxDelayMs.
    const age = this.clock.now() - this.cutFirst;
    const waiting = (age < this.cfg.viewMaxAlertDelayMs && this.alertUnstable())
      || (!this.remoteCut && age < this.cfg.viewMaxDelayMs && this.suspicionUnstable());
    if (waiting) {
      this.cutTimer = this.clock.setTimeout(() => this.commitCut(), this.cfg.viewSettleMs);
      return;
    }
    this.log.debug('view change', {
      node: this.self.name, t: Math.round(this.clock.now()), remove: [...this.cutDead.keys()], readmit: [...this.cutAlive.keys()], waitedMs: age,
    });
    const dead = [...this.cutDead.values()];
    const alive = [...this.cutAlive.values()];
    const byAlert = new Set(this.cutByAlert);
    this.cutDead.clear(); this.cutAlive.clear(); this.cutByAlert.clear();
    this.remoteCut = false;
    let changed = 0;
    for (const d of dead) {
      const m = this.members.get(d.name);
      // an alert-based removal is not undone by a refutation heard meanwhile (alerts are not refutable)
      if (m && byAlert.has(d.name) && m.inc > d.inc) d.inc = m.inc;
      if (!m || d.inc < m.inc || m.state === 'dead' || m.state === 'left') continue;
      this.applyDead(m, d, true);
      changed++;
    }
    for (const a of alive) {
      const m = this.members.get(a.name);
      if (!m || m.state !== 'dead') continue;
      if (a.inc <= m.inc) a.inc = m.inc + 1; // alive(i) beats dead(j) only if i > j
      const prevInc = m.inc;
      m.inc = a.inc; if (a.addr) m.addr = a.addr; m.epoch = Math.max(m.epoch, a.epoch);
      m.state = 'alive'; m.since = this.clock.now();
      this.liveCount++;
      const g = this.grayOf(m.name);
      g.pending = null; g.vouchers.clear(); g.cleanSince = null; g.vouched = false;
      g.alertFloor = m.inc;
      this.stats.readmitted++;
      this.log.info('member readmitted after probation', { member: m.name, inc: m.inc });
      this.host.memberChanged(m, 'dead', prevInc);
      changed++;
    }
    if (changed > 0) this.stats.viewChanges++;
  }

  /** The K hash rings over every known member (Rapid's monitoring topology), built on demand. */
  private ringsNow(): Array<{ keys: Float64Array; names: string[] }> {
    if (this.rings) return this.rings;
    const names = [...this.members.keys()];
    const rings: Array<{ keys: Float64Array; names: string[] }> = [];
    for (let j = 0; j < this.cfg.observers; j++) {
      const keyed = names.map((n) => { const h = hash2(j + '/' + n); return { n, k: h[0] * 4294967296 + h[1] }; });
      keyed.sort((x, y) => x.k - y.k || (x.n < y.n ? -1 : 1));
      rings.push({ keys: Float64Array.from(keyed, (x) => x.k), names: keyed.map((x) => x.n) });
    }
    this.rings = rings;
    return rings;
  }

  /**
   * Observers of `name`: on each of the K rings, the first member after it that is alive or suspect in
   * our view (distinct, up to K). Every node computes the same set from the same view.
   */
  observersOf(name: string): string[] {
    const out: string[] = [];
    const rings = this.ringsNow();
    for (let j = 0; j < rings.length; j++) {
      const r = rings[j]!;
      const h = hash2(j + '/' + name);
      const key = h[0] * 4294967296 + h[1];
      let lo = 0; let hi = r.keys.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (r.keys[mid]! < key || (r.keys[mid] === key && r.names[mid]! <= name)) lo = mid + 1; else hi = mid; }
      for (let step = 0; step < r.names.length; step++) {
        const cand = r.names[(lo + step) % r.names.length]!;
        if (cand === name) continue;
        const cm = this.members.get(cand);
        if (cm && (cm.state === 'alive' || cm.state === 'suspect')) { if (!out.includes(cand)) out.push(cand); break; }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- observer alerts (calm mode)
  //
  // Rapid (Suresh et al., USENIX ATC 2018), sec. 4.1-4.2: every member has K observers on K rings; an
  // observer reports an alert about its subject after repeated failed probes, and the subject is removed
  // once H of its K observers alerted. Since the same K observers watch a subject and every node counts
  // the same alerts, nodes reach the decision at about the same time and removals of members that turned
  // sick together are cut together. Here the observers watch only once SWIM raised a witnessed
  // suspicion (or another observer alerted), which keeps the steady-state cost at SWIM's.

  /** Start (or extend) watching `name` if we are one of its observers. */
  private maybeWatch(name: string): void {
    if (!this.cfg.calmMembership || !this.running) return;
    const until = this.clock.now() + this.cfg.alertRounds * this.cfg.probationProbeEvery * this.cfg.probeIntervalMs;
    const w = this.watches.get(name);
    if (w) { w.until = Math.max(w.until, until); return; }
    if (!this.observersOf(name).includes(this.self.name)) return;
    this.watches.set(name, { rounds: [], until, probing: false });
  }

  /**
   * One watch round: WATCH_PINGS (3) pings probeTimeout/4 apart; failed if no ack came back within
   * probeTimeout of the last one. alertFailures failed rounds among the last alertRounds -> alert.
   * Under a uniform per-packet loss p a healthy member fails a round with q = (1-(1-p)^2)^3 (0.7 % at
   * p = 10 %, 4.7 % at 20 %), so with the defaults (3 of 20) an observer alerts about a healthy member
   * with probability ~C(20,3) q^3: 4e-4 at 10 %, 7 % at 20 % loss, and H = 3 of 5 observers at once
   * ~3e-3 at 20 % (the watch only starts after a witnessed suspicion). A member that drops everything
   * 1 s of every 5 s fails ~1.7 rounds per outage; one at 80 % loss 88 % of the rounds.
   */
  private watchRound(m: Member, w: Watch): void {
    w.probing = true;
    const seq = this.nextSeq();
    let acked = false;
    const waiter: AckWaiter = { onAck: () => { acked = true; }, timer: null };
    this.acks.set(seq, waiter);
    const ping = encodeMsg({ t: MsgType.Ping, seq, target: m.name, from: this.self.name, fromAddr: this.self.addr });
    const gap = Math.max(1, Math.floor(this.cfg.probeTimeoutMs / 4));
    for (let i = 0; i < WATCH_PINGS; i++) {
      const send = () => { if (this.running && !acked) this.host.sendDirect(m.addr, [ping]); };
      if (i === 0) send(); else this.clock.setTimeout(send, i * gap);
    }
    waiter.timer = this.clock.setTimeout(() => {
      this.acks.delete(seq);
      w.probing = false;
      if (!this.running || this.watches.get(m.name) !== w) return;
      w.rounds.push(!acked);
      if (w.rounds.length > this.cfg.alertRounds) w.rounds.shift();
      let failed = 0; for (const f of w.rounds) if (f) failed++;
      if (failed < this.cfg.alertFailures) return;
      this.watches.delete(m.name);
      const cur = this.members.get(m.name);
      if (!cur || (cur.state !== 'alive' && cur.state !== 'suspect')) return;
      this.stats.alertsSent++;
      this.onAlert({ t: MsgType.Alert, name: cur.name, inc: cur.inc, from: this.self.name });
    }, (WATCH_PINGS - 1) * gap + this.cfg.probeTimeoutMs);
  }

  private alertTtlMs(): number { return this.cfg.alertTtlProbes * this.cfg.probeIntervalMs; }

  /** Recent alerts about `name` from members of `obs` (its observers in our view). */
  private alertCount(name: string, obs: string[]): number {
    const al = this.alerts.get(name);
    if (!al) return 0;
    const since = this.clock.now() - this.alertTtlMs();
    let n = 0;
    for (const o of obs) { const t = al.get(o); if (t !== undefined && t >= since) n++; }
    return n;
  }

  /** H: alerts needed to remove a member with `observers` observers (alertQuorum capped at K, >= 1). */
  private alertsNeeded(observers: number): number {
    return Math.max(1, Math.min(this.cfg.alertQuorum, observers));
  }

  /**
   * An observer's alert about `a.name` (gossiped). Recorded and relayed once per TTL; the member joins
   * the pending cut once H of its observers alerted. A member cannot refute alerts about itself: its
   * observers readmit it after its probation.
   */
  onAlert(a: AlertMsg): void {
    if (!this.cfg.calmMembership || a.name === this.self.name) return;
    const m = this.members.get(a.name);
    if (!m || (m.state !== 'alive' && m.state !== 'suspect')) return;
    if (a.inc < this.grayOf(m.name).alertFloor) return; // about a sickness it already served probation for
    let al = this.alerts.get(a.name);
    if (!al) { al = new Map(); this.alerts.set(a.name, al); }
    const now = this.clock.now();
    const prev = al.get(a.from);
    if (prev !== undefined && now - prev < this.alertTtlMs()) return;
    al.set(a.from, now);
    // relayed while the member is not yet in our pending cut; beyond H alerts, the removal itself spreads
    if (!this.cutDead.has(a.name)) this.host.broadcast('a:' + a.name + ':' + a.from, encodeMsg(a));
    this.maybeWatch(a.name);
    this.checkAlerts(m);
  }

  private checkAlerts(m: Member): void {
    if (this.cutDead.has(m.name)) return;
    const obs = this.observersOf(m.name);
    const got = this.alertCount(m.name, obs);
    if (got < this.alertsNeeded(obs.length)) { this.scheduleCutIfPending(); return; }
    this.stats.deadDeclared++;
    this.log.info('member ready to be removed: H of K observers alerted', { member: m.name, inc: m.inc, alerts: got, observers: obs.length });
    this.cutDead.set(m.name, { t: MsgType.Dead, name: m.name, inc: m.inc, from: this.self.name });
    this.cutByAlert.add(m.name);
    this.quietCut(m.name);
    this.scheduleCut();
  }

  /** A new alert below H: a pending cut waits one more settle period (the alert may be the first of a batch). */
  private scheduleCutIfPending(): void {
    if (this.cutTimer && this.cutDead.size + this.cutAlive.size > 0) this.scheduleCut();
  }

  /**
   * Some live member has between 1 and H-1 recent observer alerts (Rapid's L..H band): a cut waits for
   * it, so that members that turned sick together leave together.
   */
  private alertUnstable(): boolean {
    const since = this.clock.now() - this.alertTtlMs();
    for (const [name, al] of this.alerts) {
      if (this.cutDead.has(name)) continue;
      const m = this.members.get(name);
      if (!m || (m.state !== 'alive' && m.state !== 'suspect')) continue;
      let recent = false; for (const t of al.values()) if (t >= since) { recent = true; break; }
      if (!recent) continue;
      const obs = this.observersOf(name);
      const got = this.alertCount(name, obs);
      if (got >= 1 && got < this.alertsNeeded(obs.length)) return true;
    }
    return false;
  }

  private scheduleProbation(): void {
    if (!this.running) return;
    // +-10 % jitter only: the rounds must stay close enough together that a recurring outage (e.g. 1 s
    // of every 5 s) always contains a whole round (see probationProbe).
    const every = this.cfg.probationProbeEvery * this.cfg.probeIntervalMs;
    this.probationTimer = this.clock.setTimeout(() => { this.probationTimer = null; this.probationTick(); this.scheduleProbation(); }, every * (0.9 + 0.2 * this.rand()));
  }

  /** Observer duty: probe the removed members we observe; vouch for those that passed their probation. */
  private probationTick(): void {
    if (!this.running || this.leaving) return;
    const now = this.clock.now();
    for (const [name, w] of this.watches) {
      const m = this.members.get(name);
      if (!m || (m.state !== 'alive' && m.state !== 'suspect') || now > w.until) { if (!w.probing) this.watches.delete(name); continue; }
      if (!w.probing) this.watchRound(m, w);
    }
    // every removed member has a gray record (applyDead), so only those are looked at
    for (const [name, g] of this.gray) {
      const m = this.members.get(name);
      if (!m || m.state !== 'dead') continue;
      if (g.probing || g.vouched) continue;
      if (!this.observersOf(m.name).includes(this.self.name)) { g.cleanSince = null; continue; }
      this.probationProbe(m, g);
    }
  }

  /**
   * One probation probe: 3 pings, probeTimeout/4 apart, each carrying the member's removal (so that it
   * learns it); answered if any ack arrives within probeTimeout of the last ping. A round lasts
   * 1.5 * probeTimeout, less than the round period, so rounds never overlap. Under a uniform per-packet
   * loss p a healthy member fails a round with (1-(1-p)^2)^3 (0.7 % at p = 10 %, 4.7 % at 20 %).
   */
  private probationProbe(m: Member, g: GrayRecord): void {
    g.probing = true;
    const seq = this.nextSeq();
    const startedAt = this.clock.now();
    let acked = false;
    const waiter: AckWaiter = { onAck: () => { acked = true; }, timer: null };
    this.acks.set(seq, waiter);
    const ping = encodeMsg({ t: MsgType.Ping, seq, target: m.name, from: this.self.name, fromAddr: this.self.addr });
    const dead = encodeMsg({ t: MsgType.Dead, name: m.name, inc: m.inc, from: this.self.name });
    const gap = Math.max(1, Math.floor(this.cfg.probeTimeoutMs / 4));
    for (let i = 0; i < 3; i++) {
      const send = () => { if (this.running && !acked && m.state === 'dead') this.host.sendDirect(m.addr, [ping, dead]); };
      if (i === 0) send(); else this.clock.setTimeout(send, i * gap);
    }
    waiter.timer = this.clock.setTimeout(() => {
      this.acks.delete(seq);
      g.probing = false;
      if (!this.running || m.state !== 'dead' || this.members.get(m.name) !== m) return;
      if (!acked) { g.cleanSince = null; return; }
      if (g.cleanSince === null) { g.cleanSince = startedAt; return; }
      if (this.clock.now() - g.cleanSince < this.probationMs(m.name)) return;
      // passed: vouch one above both its removal and its latest refutation we heard of. Nodes that heard
      // the refutation before the removal removed it at the refuted incarnation; a vouch at that very
      // incarnation would not readmit it there (alive(i) beats dead(j) only if i > j).
      const p = g.pending && g.pending.inc > m.inc ? g.pending : null;
      const v: VouchMsg = { t: MsgType.Vouch, name: m.name, addr: p?.addr || m.addr, inc: Math.max(m.inc, p?.inc ?? 0) + 1, epoch: Math.max(m.epoch, p?.epoch ?? 0), from: this.self.name };
      g.vouched = true;
      this.stats.vouchesSent++;
      this.onVouch(v);
    }, 2 * gap + this.cfg.probeTimeoutMs);
  }

  /**
   * Anti-entropy repair for missed vouches: a peer (`peer`, its name or address; '' = unknown) shows `a.name` alive
   * above the incarnation we removed it at. Once the member's probation has elapsed in our view too,
   * such a peer counts as a vouch (not relayed); probationVouches distinct peers readmit it. Before
   * that, or when the claim comes from the member itself or an unknown peer, it is only remembered.
   */
  onSyncAlive(a: AliveMsg, peer: string): void {
    const m = this.members.get(a.name);
    if (!m || m.state !== 'dead') { this.onAlive(a, true); return; }
    if (a.inc <= m.inc) return;
    const self = peer === '' || peer === m.name || peer === m.addr; // unknown peer, or the member's own claim
    if (self || this.clock.now() - m.since < this.probationMs(m.name)) {
      // third-party news, not the member's own refutation: remember it, but do not answer it with a
      // removal at that incarnation (that would undo a readmission that is under way elsewhere)
      const g = this.grayOf(m.name);
      if (!g.pending || a.inc > g.pending.inc) g.pending = { ...a };
      return;
    }
    this.onVouch({ t: MsgType.Vouch, name: a.name, addr: a.addr, inc: a.inc, epoch: a.epoch, from: 'sync/' + peer }, false);
  }

  /** A vouch from an observer: readmit `name` once probationVouches distinct observers vouched (batched). */
  onVouch(v: VouchMsg, relay = true): void {
    if (v.name === this.self.name) {
      // Being readmitted at v.inc: adopt it quietly (a refutation now would look like a new
      // incarnation to the nodes that have not readmitted us yet and be answered by a removal).
      if (v.inc > this.self.inc && !this.leaving) { this.self.inc = v.inc; this.host.memberChanged(this.self, this.self.state, v.inc); }
      return;
    }
    const m = this.members.get(v.name);
    if (!m || m.state !== 'dead' || v.inc <= m.inc) return;
    const g = this.grayOf(m.name);
    if (!g.pending || v.inc > g.pending.inc || (v.inc === g.pending.inc && v.epoch > g.pending.epoch)) {
      g.pending = { t: MsgType.Alive, name: v.name, addr: v.addr || m.addr, inc: v.inc, epoch: v.epoch };
    }
    if (g.vouchers.has(v.from)) return;
    g.vouchers.add(v.from);
    if (relay) this.host.broadcast('v:' + v.name + ':' + v.from, encodeMsg(v));
    const need = Math.max(1, Math.min(this.cfg.probationVouches, this.observersOf(m.name).length));
    if (g.vouchers.size >= need) {
      this.cutAlive.set(m.name, g.pending);
      this.scheduleCut();
    }
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
      if (this.cfg.calmMembership && expectedNacks > 0 && nacks < Math.min(this.cfg.probeWitnesses, expectedNacks)) {
        // Too few helpers witnessed the failure (Lifeguard's nacks, Dadgar et al. 2018 sec. IV-A, used
        // as witnesses): we cannot tell a dead target from our own bad link, nor a lone nack from a
        // helper whose own link is the sick one, and a sick node must not accuse healthy ones
        // (issue 11). Local health already went up above.
        this.stats.unwitnessed++;
        return;
      }
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
