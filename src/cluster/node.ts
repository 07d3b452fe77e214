// ClusterNode: the one object the daemon uses.
//
//   const node = new ClusterNode(config, transport, clock, logger);
//   node.restore(savedState)            // optional, before start(): comes back with epoch+1
//   await node.start();
//   await node.join(['10.0.0.2:7946']);
//   node.set('svc/web', bytes); node.delete('svc/web');
//   node.on('change', ev => ...); node.on('member', ev => ...); node.on('persist', st => save(st));
//   await node.leave(); await node.stop();

import { EventEmitter } from 'node:events';
import { resolveConfig, type ClusterConfig, type ClusterConfigInput } from './config';
import {
  MsgType, CodecError, MemberStateCode, decodePacket, decodeFrame, encodeFrame, encodeMsg, encodePacket, hash2,
  PACKET_HEADER,
  type Msg, type OwnerDigest, type StreamMsg, type SyncDigestsMsg, type SyncDeltasMsg, type EntryMsg, type HeadMsg,
  type SyncSummaryMsg, type SyncPushMsg, type Limits,
} from './codec';
import { ReplicatedTable, type OwnerDelta, type Version, type ChangeEvent } from './table';
import { BroadcastQueue, retransmitLimit, type Broadcast } from './broadcast';
import { Membership, STATE_CODE, CODE_STATE, type Member, type MemberState } from './membership';
import { messageProblem } from './validate';
import { RateLimitedLog, type Clock, type Logger, type Transport, type TimerHandle } from './transport';
import { withPrefix } from '../common/log';

export type { MemberState } from './membership';
export type { Version } from './table';

export interface EntryView { owner: string; key: string; value: Uint8Array; version: Version }
export interface MemberView {
  name: string; address: string; state: MemberState; incarnation: number; epoch: number; services: number;
}
export interface ChangeEventView { owner: string; key: string; value: Uint8Array | null; version: Version }
export interface MemberEventView extends MemberView { previous: MemberState | null }

/** JSON-serialisable persistent state (values base64). */
export interface ClusterState {
  version: 1;
  name: string;
  epoch: number;
  incarnation: number;
  /** last known peers, used as seeds on restart */
  peers: Array<{ name: string; address: string }>;
}

export class JoinError extends Error {
  constructor(readonly errors: string[]) { super(`join failed: ${errors.join('; ')}`); this.name = 'JoinError'; }
}

const FINE_BUCKETS = 64;

const GAP_PULL_DELAY_MS = 400;

export interface NodeStats {
  packetsIn: number; packetsOut: number; bytesIn: number; bytesOut: number;
  malformed: number; syncs: number; syncFailures: number; pulls: number; queueDropped: number;
}

export class ClusterNode extends EventEmitter {
  readonly config: ClusterConfig;
  private readonly rand: () => number;
  private readonly table: ReplicatedTable;
  private readonly membership: Membership;
  private readonly queue: BroadcastQueue;
  private readonly rl: RateLimitedLog;
  private readonly limits: Limits;
  private started = false;
  private stopped = false;
  private timers = new Set<TimerHandle>();
  private gossipTimer: TimerHandle | null = null;
  private eagerTimer: TimerHandle | null = null;
  /** lazy push: owner -> head announced on probe traffic until `until` (see lazyAfter) */
  private readonly recentHeads = new Map<string, { epoch: number; counter: number; until: number }>();
  private syncTimer: TimerHandle | null = null;
  private gcTimer: TimerHandle | null = null;
  private readonly reapTimers = new Map<string, TimerHandle>();
  private readonly pulls = new Map<string, { addr: string; epoch: number; counter: number; timer: TimerHandle | null; inflight: boolean }>();
  // digest hashing: per-owner 64-bit hash, XOR-accumulated per fine bucket
  private readonly ownerHash = new Map<string, [number, number]>();
  private readonly bucketHash = new Uint32Array(FINE_BUCKETS * 2);
  private readonly bucketOwners: Array<Set<string>> = Array.from({ length: FINE_BUCKETS }, () => new Set());
  private restoredPeers: Array<{ name: string; address: string }> = [];
  private selfInc = 0;
  private selfEpoch = 1;
  readonly stats: NodeStats = { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0, malformed: 0, syncs: 0, syncFailures: 0, pulls: 0, queueDropped: 0 };

  private readonly log: Logger;

  constructor(config: ClusterConfigInput, private readonly transport: Transport, private readonly clock: Clock, logger: Logger) {
    super();
    const log = withPrefix(logger, `cluster[${config.name}] `);
    this.log = log;
    this.config = resolveConfig(config);
    this.rand = this.config.random ?? Math.random;
    this.limits = { maxKeyBytes: this.config.maxKeyBytes, maxValueBytes: this.config.maxValueBytes };
    this.rl = new RateLimitedLog(log, 10_000, () => clock.now());
    this.queue = new BroadcastQueue(this.config.maxBroadcastQueue);
    this.table = new ReplicatedTable(this.config.name, {
      now: () => clock.now(),
      onChange: (ev) => this.onTableChange(ev),
      onOwnerTouched: (o) => this.touch(o),
      maxPendingPerOwner: this.config.maxPendingPerOwner,
    });
    this.membership = new Membership(this.config, clock, log, {
      send: (addr, msgs) => this.sendWithPiggyback(addr, msgs),
      sendDirect: (addr, msgs) => this.sendRaw(addr, msgs),
      broadcast: (key, msg, done) => this.enqueue(key, msg, done ? () => done() : undefined),
      unbroadcast: (key) => this.queue.invalidate(key),
      streamPing: (addr, target) => this.streamPing(addr, target),
      memberChanged: (m, prev, prevInc) => this.onMemberChanged(m, prev, prevInc),
    }, this.rand, 0, 1);
  }

  // ================================================================ lifecycle

  /** Restore persisted state. Call before start(). The node comes back with epoch+1, incarnation+1. */
  restore(state: ClusterState): void {
    if (this.started) throw new Error('restore() must be called before start()');
    if (!state || state.version !== 1 || typeof state.epoch !== 'number' || typeof state.incarnation !== 'number') {
      throw new Error('restore(): unsupported or corrupt cluster state');
    }
    if (state.name !== this.config.name) throw new Error(`restore(): state belongs to node ${state.name}, not ${this.config.name}`);
    this.selfEpoch = Math.max(this.selfEpoch, state.epoch + 1);
    this.selfInc = Math.max(this.selfInc, state.incarnation + 1);
    this.restoredPeers = Array.isArray(state.peers) ? state.peers.filter((p) => p && typeof p.address === 'string') : [];
  }

  /** Persistable state. Save it whenever the 'persist' event fires (and at shutdown). */
  exportState(): ClusterState {
    const peers: ClusterState['peers'] = [];
    for (const m of this.membership.members.values()) {
      if (m.name !== this.config.name && (m.state === 'alive' || m.state === 'suspect')) peers.push({ name: m.name, address: m.addr });
    }
    return { version: 1, name: this.config.name, epoch: this.membership.self.epoch, incarnation: this.membership.self.inc, peers };
  }

  /** Peers remembered by restore(), handy as join seeds after a restart. */
  knownPeers(): string[] { return this.restoredPeers.map((p) => p.address); }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.membership.self.inc = this.selfInc;
    this.membership.self.epoch = this.selfEpoch;
    this.table.setLocalEpoch(this.selfEpoch);
    this.touch(this.config.name);
    this.transport.onPacket((from, data) => this.onPacket(from, data));
    this.transport.onRequest((from, data) => this.onRequest(from, data));
    await this.transport.start();
    this.membership.start();
    this.scheduleGossip();
    this.scheduleSync();
    this.gcTimer = this.clock.setTimeout(() => this.gcTick(), 30_000);
    this.emit('persist', this.exportState());
  }

  /** Join through any of the seeds (addresses "host:port"). Resolves with the number of seeds reached. */
  async join(seeds: string[]): Promise<number> {
    if (!this.started) throw new Error('join() before start()');
    const errors: string[] = [];
    let ok = 0;
    for (const s of seeds) {
      if (s === this.config.advertiseAddr) continue;
      try {
        // a first exchange moves membership; a second one fetches whatever did not fit
        await this.syncWith(s, true);
        ok++;
      } catch (e) {
        errors.push(`${s}: ${(e as Error).message}`);
      }
    }
    if (ok === 0 && errors.length > 0) throw new JoinError(errors);
    return ok;
  }

  /** Graceful leave: gossip "left" and wait (bounded) until it has been sent enough times. */
  async leave(timeoutMs = 3000): Promise<void> {
    if (!this.started || this.stopped) return;
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = () => { if (!done) { done = true; this.clock.clearTimeout(t); resolve(); } };
      const t = this.clock.setTimeout(finish, timeoutMs);
      this.membership.leave(finish);
      if (this.membership.numLive <= 1) finish();
      else this.gossipTick(); // push it out right away
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.membership.stop();
    for (const t of [this.gossipTimer, this.eagerTimer, this.syncTimer, this.gcTimer]) if (t) this.clock.clearTimeout(t);
    for (const t of this.timers) this.clock.clearTimeout(t);
    for (const t of this.reapTimers.values()) this.clock.clearTimeout(t);
    for (const p of this.pulls.values()) if (p.timer) this.clock.clearTimeout(p.timer);
    this.timers.clear(); this.reapTimers.clear(); this.pulls.clear();
    this.queue.clear();
    await this.transport.close();
  }

  // ================================================================ data API

  /** Create or update a local entry (this node is its owner). */
  set(key: string, value: Uint8Array): Version {
    this.checkKey(key);
    if (!(value instanceof Uint8Array)) throw new TypeError('value must be a Uint8Array');
    if (value.length > this.config.maxValueBytes) throw new RangeError(`value too large (${value.length} > maxValueBytes ${this.config.maxValueBytes})`);
    const v = this.table.localWrite(key, value);
    this.broadcastEntry(key, v, value);
    return v;
  }

  /** Delete a local entry (versioned tombstone). Returns false if it did not exist. */
  delete(key: string): boolean {
    this.checkKey(key);
    const cur = this.table.get(this.config.name, key);
    if (!cur || cur.value === null) return false;
    const v = this.table.localWrite(key, null);
    this.broadcastEntry(key, v, null);
    return true;
  }

  /** Visible entries: owners that are alive or suspect (dead/left owners are hidden). */
  entries(): EntryView[] { return [...this.table.visible()]; }

  /** One visible entry or undefined. */
  get(owner: string, key: string): EntryView | undefined {
    const e = this.table.get(owner, key);
    if (!e || e.value === null) return undefined;
    const m = this.membership.get(owner);
    if (m && (m.state === 'dead' || m.state === 'left')) return undefined;
    return { owner, key, value: e.value, version: e.version };
  }

  members(): MemberView[] {
    const out: MemberView[] = [];
    for (const m of this.membership.members.values()) out.push(this.memberView(m));
    return out;
  }

  memberState(name: string): MemberState | undefined { return this.membership.get(name)?.state; }

  get name(): string { return this.config.name; }
  /** Current (epoch, incarnation) of this node. */
  get epoch(): number { return this.membership.self.epoch; }
  get incarnation(): number { return this.membership.self.inc; }
  /** Lifeguard local health score (0 = healthy). */
  get health(): number { return this.membership.awareness; }
  /** Counters for metrics. */
  metrics(): NodeStats & Membership['stats'] & { queue: number } {
    return { ...this.stats, ...this.membership.stats, queue: this.queue.size, queueDropped: this.queue.dropped };
  }

  // typed events
  override on(ev: 'change', fn: (e: ChangeEventView) => void): this;
  override on(ev: 'member', fn: (e: MemberEventView) => void): this;
  override on(ev: 'persist', fn: (s: ClusterState) => void): this;
  override on(ev: string, fn: Parameters<EventEmitter['on']>[1]): this { return super.on(ev, fn); }

  // ================================================================ internals: events

  private memberView(m: Member): MemberView {
    return { name: m.name, address: m.addr, state: m.state, incarnation: m.inc, epoch: m.epoch, services: this.table.liveCount(m.name) };
  }

  private onTableChange(ev: ChangeEvent): void {
    if (!this.started) return;
    this.emit('change', { owner: ev.owner, key: ev.key, value: ev.value, version: ev.version } satisfies ChangeEventView);
  }

  private onMemberChanged(m: Member, prev: MemberState | undefined, prevInc: number): void {
    this.touch(m.name);
    if (m.name === this.config.name) {
      if (m.epoch > this.table.localEpoch()) {
        // peers knew an epoch of ours at least as new as the current one: move on and re-publish
        const rewritten = this.table.bumpLocalEpoch(m.epoch);
        this.log.warn('epoch collision with an earlier life of this node; moved to a new epoch', { epoch: m.epoch });
        for (const e of rewritten) this.broadcastEntry(e.key, { epoch: m.epoch, counter: e.counter }, e.value);
      }
      if (prev !== m.state || prevInc !== m.inc) this.emit('persist', this.exportState());
      return;
    }
    this.table.observeEpoch(m.name, m.epoch);
    const hidden = m.state === 'dead' || m.state === 'left';
    this.table.setHidden(m.name, hidden);
    if (hidden && prev !== m.state) {
      const old = this.reapTimers.get(m.name);
      if (old) this.clock.clearTimeout(old);
      this.reapTimers.set(m.name, this.clock.setTimeout(() => this.reap(m.name), this.config.reapAfterMs));
    } else if (!hidden && (prev === 'dead' || prev === 'left')) {
      const t = this.reapTimers.get(m.name);
      if (t) { this.clock.clearTimeout(t); this.reapTimers.delete(m.name); }
      const os = this.table.ownerState(m.name);
      if (os?.reaped) {
        this.table.unreapOwner(m.name);
        this.schedulePull(m.name, m.addr, m.epoch, Number.MAX_SAFE_INTEGER, 0);
      }
    }
    if (prev !== m.state && this.started) {
      this.emit('member', { ...this.memberView(m), previous: prev ?? null } satisfies MemberEventView);
    }
  }

  private reap(name: string): void {
    this.reapTimers.delete(name);
    const m = this.membership.get(name);
    if (!m || (m.state !== 'dead' && m.state !== 'left')) return;
    this.table.reapOwner(name);
    this.log.debug('reaped owner', { owner: name });
  }

  private gcTick(): void {
    this.gcTimer = null;
    if (this.stopped) return;
    this.table.gcTombstones(this.config.tombstoneTtlMs);
    const now = this.clock.now();
    for (const m of [...this.membership.members.values()]) {
      if ((m.state === 'dead' || m.state === 'left') && now - m.since > this.config.deadMemberRetainMs) {
        this.membership.forget(m.name);
        this.table.forgetOwner(m.name);
        this.untouch(m.name);
      }
    }
    this.gcTimer = this.clock.setTimeout(() => this.gcTick(), 30_000);
  }

  // ================================================================ internals: gossip

  private checkKey(key: string): void {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('key must be a non-empty string');
    if (Buffer.byteLength(key) > this.config.maxKeyBytes) throw new RangeError(`key too long (> maxKeyBytes ${this.config.maxKeyBytes})`);
  }

  private budget(): number { return this.config.maxPacketSize - this.transport.packetOverhead - PACKET_HEADER; }

  private broadcastEntry(key: string, v: Version, value: Uint8Array | null): void {
    const msg: EntryMsg = { t: MsgType.Entry, owner: this.config.name, epoch: v.epoch, counter: v.counter, key, value };
    let enc = encodeMsg(msg);
    if (enc.length > this.budget() / 2) {
      // too big to piggyback: gossip the new head, receivers pull the delta over the stream
      const head: HeadMsg = { t: MsgType.Head, owner: this.config.name, epoch: v.epoch, counter: v.counter };
      enc = encodeMsg(head);
      this.enqueue('h:' + this.config.name, enc);
      return;
    }
    this.enqueue('e:' + this.config.name + '/' + key, enc, this.lazyAfter(this.config.name));
  }

  /**
   * Lazy push (Plumtree's IHAVE, Leitão et al., SRDS 2007, piggybacked on the failure detector's traffic):
   * once an entry of `owner` was sent its retransmit limit, this node announces the owner's head
   * (`HEAD(owner, epoch, counter)`, ~15 bytes) on the probes and acks it sends anyway for `lazyPushMs`.
   * Random push leaves a node without any copy with probability ~e^-(copies per node) (~1 in 10^5 at
   * N = 1 000 and 16 sends); such a node hears the HEAD on its next probe exchange and pulls the entry
   * from the owner instead of waiting for anti-entropy (~10 s).
   */
  private lazyAfter(owner: string): Broadcast['done'] {
    if (this.config.lazyPushMs <= 0) return undefined;
    return (reason) => {
      if (reason !== 'sent') return;
      const d = this.table.digest(owner);
      this.recentHeads.set(owner, { epoch: d.epoch, counter: d.counter, until: this.clock.now() + this.config.lazyPushMs });
    };
  }

  /** HEAD messages of the lazy-push window (expired ones are forgotten), at most `budget` bytes. */
  private lazyHeads(budget: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.recentHeads.size === 0) return out;
    const now = this.clock.now();
    let used = 0;
    for (const [owner, h] of this.recentHeads) {
      if (h.until <= now) { this.recentHeads.delete(owner); continue; }
      const enc = encodeMsg({ t: MsgType.Head, owner, epoch: h.epoch, counter: h.counter } satisfies HeadMsg);
      if (used + enc.length > budget) break;
      used += enc.length;
      out.push(enc);
    }
    return out;
  }

  private limit(): number { return retransmitLimit(this.config.retransmitMult, this.membership.numLive); }

  private sendWithPiggyback(addr: string, msgs: Uint8Array[]): void {
    let used = 0;
    for (const m of msgs) used += m.length;
    const extra = this.queue.getBroadcasts(this.budget() - used, this.limit());
    for (const m of extra) used += m.length;
    const heads = this.lazyHeads(this.budget() - used);
    this.sendRaw(addr, extra.length || heads.length ? msgs.concat(extra, heads) : msgs);
  }

  private sendRaw(addr: string, msgs: Uint8Array[]): void {
    const pkt = encodePacket(msgs);
    this.stats.packetsOut++;
    this.stats.bytesOut += pkt.length + this.transport.packetOverhead;
    this.transport.sendPacket(addr, pkt);
  }

  private scheduleGossip(): void {
    if (this.stopped) return;
    this.gossipTimer = this.clock.setTimeout(() => { this.gossipTimer = null; this.gossipTick(); this.scheduleGossip(); }, this.config.gossipIntervalMs);
  }

  /** Queue a broadcast and schedule its eager push (see `eagerPushNodes`). */
  private enqueue(key: string, msg: Uint8Array, done?: Broadcast['done']): void {
    this.queue.enqueue(key, msg, done);
    if (this.eagerTimer || this.stopped || this.config.eagerPushNodes === 0) return;
    // a zero-delay timer: everything new that arrived in the same packet (or the same write burst)
    // leaves in one packet
    this.eagerTimer = this.clock.setTimeout(() => { this.eagerTimer = null; this.eagerPush(); }, 0);
  }

  /**
   * Eager push: the broadcasts this node never sent go at once, in one packet, to `eagerPushNodes`
   * random alive peers (Plumtree's eager push, with random peers instead of a spanning tree: a new
   * message moves one network delay per hop instead of waiting for the next gossip tick, on average
   * half a tick, at each hop). Each copy counts toward the message's retransmit limit.
   */
  private eagerPush(): void {
    if (this.stopped || this.queue.freshCount === 0) return;
    const targets = this.membership.randomMembers(this.config.eagerPushNodes, (m) => m.state === 'alive');
    if (targets.length === 0) return;
    const msgs = this.queue.takeFresh(this.budget(), targets.length, this.limit());
    if (msgs.length === 0) return;
    for (const t of targets) this.sendRaw(t.addr, msgs);
  }

  private gossipTick(): void {
    if (this.stopped || this.queue.size === 0) return;
    const now = this.clock.now();
    // Calm membership does not gossip to removed (quarantined) members: their observers' probation
    // probes tell them they were removed, and extra traffic to a sick member only feeds its flapping.
    const toTheDead = this.config.calmMembership ? 0 : this.config.gossipToTheDeadMs;
    const targets = this.membership.randomMembers(this.config.gossipNodes, (m) =>
      m.state === 'alive' || m.state === 'suspect' || (m.state === 'dead' && now - m.since < toTheDead));
    const budget = this.budget();
    const limit = this.limit();
    for (const t of targets) {
      for (let p = 0; p < this.config.gossipMaxPacketsPerTarget; p++) {
        const msgs = this.queue.getBroadcasts(budget, limit);
        if (msgs.length === 0) break;
        this.sendRaw(t.addr, msgs);
        let n = 0; for (const m of msgs) n += m.length;
        if (n < budget * 0.75) break; // queue drained to a partial packet: no need for more
      }
    }
  }

  // ================================================================ internals: packets

  private onPacket(from: string, data: Uint8Array): void {
    if (this.stopped) return;
    this.stats.packetsIn++;
    this.stats.bytesIn += data.length + this.transport.packetOverhead;
    if (data.length > this.config.maxPacketSize) { this.rl.warn('oversize', 'dropped oversized packet', { from, size: data.length }); return; }
    let msgs: Msg[];
    try {
      msgs = decodePacket(data, this.limits);
    } catch (e) {
      this.stats.malformed++;
      this.rl.warn('malformed', 'dropped malformed packet', { from, error: e instanceof CodecError ? e.message : String(e) });
      return;
    }
    // Validate everything before anything changes: one nonsense message drops the whole packet.
    for (const m of msgs) {
      const problem = messageProblem(m);
      if (problem) {
        this.stats.malformed++;
        this.rl.warn('invalid', 'dropped authenticated packet with invalid content', { from, type: m.t, problem });
        return;
      }
    }
    for (const m of msgs) {
      try { this.handleMsg(from, m); } catch (e) {
        this.stats.malformed++;
        this.rl.warn('handler', 'error handling peer message', { from, type: m.t, error: String(e) });
      }
    }
  }

  private handleMsg(from: string, m: Msg): void {
    const ms = this.membership;
    switch (m.t) {
      case MsgType.Ping: ms.onPing(m); return;
      case MsgType.PingReq: ms.onPingReq(m); return;
      case MsgType.Ack: ms.onAck(m); return;
      case MsgType.Nack: ms.onNack(m); return;
      case MsgType.Alive: ms.onAlive(m); return;
      case MsgType.Suspect: ms.onSuspect(m); return;
      case MsgType.Dead: ms.onDead(m); return;
      case MsgType.Vouch: ms.onVouch(m); return;
      case MsgType.Alert: ms.onAlert(m); return;
      case MsgType.Entry: this.onEntry(from, m); return;
      case MsgType.Head: this.onHead(from, m); return;
      default: this.rl.warn('unexpected', 'unexpected message type on packet channel', { from, type: m.t });
    }
  }

  private onEntry(from: string, m: EntryMsg): void {
    if (m.owner === this.config.name) return;
    const r = this.table.applyEntry(m.owner, m.epoch, m.counter, m.key, m.value);
    if (r === 'applied') {
      // keep spreading (re-gossip), under the same invalidation key as the owner uses
      this.enqueue('e:' + m.owner + '/' + m.key, encodeMsg(m), this.lazyAfter(m.owner));
    } else if (r === 'gap') {
      this.enqueue('e:' + m.owner + '/' + m.key, encodeMsg(m));
      this.schedulePull(m.owner, this.pullSource(m.owner, from), m.epoch, m.counter, GAP_PULL_DELAY_MS);
    }
  }

  private onHead(from: string, m: HeadMsg): void {
    if (m.owner === this.config.name) return;
    const d = this.table.digest(m.owner);
    if (m.epoch < d.epoch || (m.epoch === d.epoch && m.counter <= d.counter)) return;
    this.enqueue('h:' + m.owner, encodeMsg(m));
    this.schedulePull(m.owner, this.pullSource(m.owner, from), m.epoch, m.counter, 0);
  }

  /**
   * Where to pull an owner's missing entries from: the owner itself while it is alive (it has all of
   * them and answers for itself), else the peer whose gossip showed the gap. Pulling from the relay
   * made one sick relay delay updates for everyone it gossiped to (issue 11, p99 of table updates).
   */
  private pullSource(owner: string, from: string): string {
    const m = this.membership.get(owner);
    return m && m.state === 'alive' ? m.addr : from;
  }

  /** Pull the delta of `owner` from `addr` unless the gap closes by itself within `delay`. */
  private schedulePull(owner: string, addr: string, epoch: number, counter: number, delay: number): void {
    const p = this.pulls.get(owner);
    if (p) {
      if (epoch > p.epoch || (epoch === p.epoch && counter > p.counter)) { p.epoch = epoch; p.counter = counter; p.addr = addr; }
      return;
    }
    const rec = { addr, epoch, counter, timer: null as TimerHandle | null, inflight: false };
    this.pulls.set(owner, rec);
    rec.timer = this.clock.setTimeout(() => { rec.timer = null; void this.runPull(owner, rec); }, delay);
  }

  private async runPull(owner: string, rec: { addr: string; epoch: number; counter: number; inflight: boolean }): Promise<void> {
    const d = this.table.digest(owner);
    const behind = rec.epoch > d.epoch || (rec.epoch === d.epoch && rec.counter > d.counter) || this.table.hasGap(owner);
    if (!behind || this.stopped) { this.pulls.delete(owner); return; }
    rec.inflight = true;
    this.stats.pulls++;
    try {
      const resp = await this.requestFrame(rec.addr, { t: MsgType.Pull, owner, epoch: d.epoch, head: d.counter });
      if (resp.t === MsgType.SyncDeltas) this.applySyncDeltas(resp);
    } catch (e) {
      this.log.debug('pull failed', { owner, from: rec.addr, error: (e as Error).message });
    } finally {
      this.pulls.delete(owner);
    }
  }

  // ================================================================ internals: stream requests

  private async requestFrame(addr: string, m: StreamMsg): Promise<StreamMsg> {
    const req = encodeFrame(m);
    this.stats.bytesOut += req.length;
    const resp = await this.transport.request(addr, req, this.config.streamTimeoutMs);
    this.stats.bytesIn += resp.length;
    if (resp.length > this.config.maxStreamMessageSize) throw new CodecError('response too large');
    const out = decodeFrame(resp, this.limits);
    if (out.t === MsgType.Error) throw new Error(`peer error: ${out.message}`);
    const problem = messageProblem(out);
    if (problem) { this.stats.malformed++; throw new CodecError(`invalid response content: ${problem}`); }
    return out;
  }

  private async streamPing(addr: string, target: string): Promise<boolean> {
    try {
      const r = await this.requestFrame(addr, { t: MsgType.Ping, seq: 0, target, from: this.config.name, fromAddr: this.config.advertiseAddr });
      return r.t === MsgType.Ack;
    } catch { return false; }
  }

  private onRequest(from: string, data: Uint8Array): Uint8Array {
    if (this.stopped) return encodeFrame({ t: MsgType.Error, message: 'stopped' });
    this.stats.bytesIn += data.length;
    let m: StreamMsg;
    try {
      if (data.length > this.config.maxStreamMessageSize) throw new CodecError('request too large');
      m = decodeFrame(data, this.limits);
      const problem = messageProblem(m);
      if (problem) throw new CodecError(`invalid content: ${problem}`);
    } catch (e) {
      this.stats.malformed++;
      this.rl.warn('malformed-stream', 'dropped malformed stream request', { from, error: (e as Error).message });
      return encodeFrame({ t: MsgType.Error, message: 'malformed request' });
    }
    let resp: StreamMsg;
    try {
      switch (m.t) {
        case MsgType.Ping:
          resp = m.target === this.config.name && this.membership.self.state === 'alive'
            ? { t: MsgType.Ack, seq: m.seq, from: this.config.name }
            : { t: MsgType.Error, message: 'not the target' };
          break;
        case MsgType.SyncSummary: resp = this.onSyncSummary(m); break;
        case MsgType.SyncPush: resp = this.onSyncPush(m); break;
        case MsgType.Pull: {
          const d = this.table.deltaFor(m.owner, m.epoch, m.head, this.maxDeltaEntries());
          resp = { t: MsgType.SyncDeltas, members: [], deltas: d ? [d] : [] };
          break;
        }
        default: resp = { t: MsgType.Error, message: 'unexpected request' };
      }
    } catch (e) {
      this.rl.warn('stream-handler', 'error handling stream request', { from, error: String(e) });
      resp = { t: MsgType.Error, message: 'internal error' };
    }
    const out = encodeFrame(resp);
    this.stats.bytesOut += out.length;
    return out;
  }

  private maxDeltaEntries(): number {
    return Math.max(16, Math.floor(this.config.maxStreamMessageSize / (this.config.maxValueBytes + this.config.maxKeyBytes + 32)));
  }

  // ================================================================ anti-entropy

  private scheduleSync(): void {
    if (this.stopped) return;
    const base = this.config.pushPullIntervalMs;
    const delay = base / 2 + this.rand() * base; // jitter, mean = base
    this.syncTimer = this.clock.setTimeout(() => {
      this.syncTimer = null;
      const peer = this.membership.randomMembers(1, (m) => m.state === 'alive')[0];
      if (peer) this.syncWith(peer.addr, false).catch((e) => this.log.debug('anti-entropy failed', { peer: peer.name, error: (e as Error).message }));
      this.reconnectTick();
      this.scheduleSync();
    }, delay);
  }

  /**
   * Serf-style reconnect: now and then try an anti-entropy exchange with a member we believe dead
   * (not left). After a partition heals this is what brings the two sides back together: the
   * exchange tells the "dead" side that it is considered dead, it refutes, and the news spreads.
   */
  private reconnectTick(): void {
    const dead: Member[] = [];
    let total = 0;
    for (const m of this.membership.members.values()) { total++; if (m.state === 'dead') dead.push(m); }
    if (dead.length === 0) return;
    if (this.rand() >= Math.min(1, (2 * dead.length) / total)) return;
    const m = dead[Math.floor(this.rand() * dead.length)]!;
    this.syncWith(m.addr, false).catch(() => {});
  }

  private chooseBuckets(): number {
    let nb = 1;
    const n = this.ownerHash.size;
    while (nb < FINE_BUCKETS && nb * 16 < n) nb *= 2;
    return nb;
  }

  private foldBuckets(nb: number): Uint32Array {
    const out = new Uint32Array(nb * 2);
    for (let i = 0; i < FINE_BUCKETS; i++) {
      const j = i & (nb - 1);
      out[2 * j] ^= this.bucketHash[2 * i]!;
      out[2 * j + 1] ^= this.bucketHash[2 * i + 1]!;
    }
    return out;
  }

  private ownersInBuckets(nb: number, idx: number[]): string[] {
    const want = new Set(idx);
    const out: string[] = [];
    for (let i = 0; i < FINE_BUCKETS; i++) {
      if (!want.has(i & (nb - 1))) continue;
      for (const n of this.bucketOwners[i]!) out.push(n);
    }
    return out;
  }

  /** One anti-entropy exchange (push-pull of deltas) with the node at addr. */
  async syncWith(addr: string, join: boolean): Promise<void> {
    this.stats.syncs++;
    try {
      const nb = join ? 1 : this.chooseBuckets();
      const summary: SyncSummaryMsg = { t: MsgType.SyncSummary, from: this.digestOf(this.config.name)!, join, buckets: this.foldBuckets(nb) };
      const r1 = await this.requestFrame(addr, summary);
      if (r1.t !== MsgType.SyncDigests) throw new CodecError('unexpected sync reply');
      if (r1.mismatched.length === 0) return;
      this.mergeDigests(r1.digests, false, addr);
      const theirs = new Map(r1.digests.map((d) => [d.name, d]));
      const mine = this.ownersInBuckets(r1.nb, r1.mismatched);
      const deltas = this.deltasFor(theirs, mine);
      const push: SyncPushMsg = {
        t: MsgType.SyncPush, nb: r1.nb, mismatched: r1.mismatched,
        digests: mine.map((n) => this.digestOf(n)).filter((d): d is OwnerDigest => d !== null),
        members: [], deltas,
      };
      const r2 = await this.requestFrame(addr, push);
      if (r2.t !== MsgType.SyncDeltas) throw new CodecError('unexpected sync reply');
      this.applySyncDeltas(r2);
    } catch (e) {
      this.stats.syncFailures++;
      throw e;
    }
  }

  private onSyncSummary(m: SyncSummaryMsg): SyncDigestsMsg {
    const nb = m.buckets.length / 2;
    if (!Number.isInteger(nb) || nb < 1 || nb > FINE_BUCKETS) throw new CodecError('bad bucket count');
    this.mergeDigests([m.from], true, m.from.name);
    const mine = this.foldBuckets(nb);
    const mismatched: number[] = [];
    for (let j = 0; j < nb; j++) if (mine[2 * j] !== m.buckets[2 * j] || mine[2 * j + 1] !== m.buckets[2 * j + 1]) mismatched.push(j);
    const digests = this.ownersInBuckets(nb, mismatched).map((n) => this.digestOf(n)).filter((d): d is OwnerDigest => d !== null);
    return { t: MsgType.SyncDigests, nb, mismatched, digests };
  }

  private onSyncPush(m: SyncPushMsg): SyncDeltasMsg {
    if (m.nb < 1 || m.nb > FINE_BUCKETS || (m.nb & (m.nb - 1)) !== 0) throw new CodecError('bad bucket count');
    this.mergeDigests(m.digests);
    for (const d of m.deltas) this.applyDelta(d);
    const theirs = new Map(m.digests.map((d) => [d.name, d]));
    const mine = this.ownersInBuckets(m.nb, m.mismatched);
    return { t: MsgType.SyncDeltas, members: [], deltas: this.deltasFor(theirs, mine) };
  }

  private deltasFor(theirs: Map<string, OwnerDigest>, mine: string[]): OwnerDelta[] {
    const out: OwnerDelta[] = [];
    let budget = this.config.maxStreamMessageSize - 64 * 1024;
    const maxE = this.maxDeltaEntries();
    for (const name of mine) {
      const t = theirs.get(name);
      if (t?.reaped) continue;
      const d = this.table.deltaFor(name, t?.epoch ?? 0, t?.head ?? 0, maxE);
      if (!d) continue;
      let size = 32;
      for (const e of d.entries) size += e.key.length + (e.value?.length ?? 0) + 12;
      if (size > budget) break; // the rest comes with the next exchange
      budget -= size;
      out.push(d);
    }
    return out;
  }

  private applySyncDeltas(m: SyncDeltasMsg): void {
    this.mergeDigests(m.members);
    for (const d of m.deltas) this.applyDelta(d);
  }

  private applyDelta(d: OwnerDelta): void {
    if (d.owner === this.config.name) return;
    const m = this.membership.get(d.owner);
    if (m && m.epoch > d.epoch) return;
    this.table.applyDelta(d);
  }

  /**
   * Merge remote member records (anti-entropy). Only `news` (the initiator's own record) is
   * re-gossiped; stale "dead" records only raise a local suspicion (as memberlist does).
   */
  private mergeDigests(ds: OwnerDigest[], news = false, peer = ''): void {
    const ms = this.membership;
    for (const d of ds) {
      const state = CODE_STATE[d.state]!;
      if (d.name === this.config.name) {
        // (calm membership: a removal is not refuted, the observers readmit us after the probation)
        if (state === 'dead' && this.config.calmMembership) continue;
        if (state !== 'alive' || d.inc > ms.self.inc || d.epoch > ms.self.epoch) {
          if (state === 'alive') ms.onAlive({ t: MsgType.Alive, name: d.name, addr: d.addr, inc: d.inc, epoch: d.epoch });
          else ms.onSuspect({ t: MsgType.Suspect, name: d.name, inc: d.inc, from: 'sync' });
        }
        continue;
      }
      if (!d.addr) continue;
      const cur = ms.get(d.name);
      const alive = { t: MsgType.Alive, name: d.name, addr: d.addr, inc: d.inc, epoch: d.epoch } as const;
      if (!cur) {
        if (state === 'alive' || state === 'suspect') ms.onAlive(alive, news);
        continue;
      }
      // a state change of a known member is news: gossip it so that the member can refute
      switch (state) {
        case 'alive':
          // calm membership: a peer that readmitted a member we still hold removed is a repair
          // path for missed vouches (Membership.onSyncAlive); otherwise the usual merge
          if (this.config.calmMembership && cur.state === 'dead') ms.onSyncAlive(alive, peer);
          else ms.onAlive(alive, true);
          break;
        case 'suspect': ms.onSuspect({ t: MsgType.Suspect, name: d.name, inc: d.inc, from: 'sync' }, true); break;
        case 'left': ms.onDead({ t: MsgType.Dead, name: d.name, inc: d.inc, from: d.name }, true); break;
        case 'dead':
          // Stock SWIM: a stale "dead" only raises a local suspicion so that the member refutes. Calm
          // membership ignores it: removals are decided by accusers, readmissions by observers.
          if (!this.config.calmMembership) ms.onSuspect({ t: MsgType.Suspect, name: d.name, inc: d.inc, from: 'sync' }, true);
          break;
      }
    }
  }

  /** @internal simulation/bench bootstrap: learn members without gossiping them. */
  seedMembers(ms: Array<{ name: string; address: string; incarnation?: number; epoch?: number }>): void {
    for (const m of ms) {
      if (m.name === this.config.name) continue;
      this.membership.onAlive({ t: MsgType.Alive, name: m.name, addr: m.address, inc: m.incarnation ?? 0, epoch: m.epoch ?? 1 }, false);
    }
  }

  // ================================================================ digests

  private digestOf(name: string): OwnerDigest | null {
    const m = this.membership.get(name);
    const os = this.table.ownerState(name);
    if (!m && !os) return null;
    return {
      name,
      addr: m?.addr ?? '',
      inc: m?.inc ?? 0,
      state: m ? STATE_CODE[m.state] : MemberStateCode.Alive,
      epoch: Math.max(m?.epoch ?? 0, os?.epoch ?? 0),
      head: os?.head ?? 0,
      reaped: os?.reaped ?? false,
    };
  }

  private touch(name: string): void {
    const d = this.digestOf(name);
    const old = this.ownerHash.get(name);
    const b = hash2(name)[0] & (FINE_BUCKETS - 1);
    if (old) { this.bucketHash[2 * b] ^= old[0]; this.bucketHash[2 * b + 1] ^= old[1]; }
    if (!d) { this.ownerHash.delete(name); this.bucketOwners[b]!.delete(name); return; }
    const h = hash2(`${name}\u0000${d.inc}\u0000${d.state}\u0000${d.epoch}\u0000${d.head}\u0000${d.reaped ? 1 : 0}`);
    this.ownerHash.set(name, h);
    this.bucketOwners[b]!.add(name);
    this.bucketHash[2 * b] ^= h[0]; this.bucketHash[2 * b + 1] ^= h[1];
  }

  private untouch(name: string): void {
    const old = this.ownerHash.get(name);
    if (!old) return;
    const b = hash2(name)[0] & (FINE_BUCKETS - 1);
    this.bucketHash[2 * b] ^= old[0]; this.bucketHash[2 * b + 1] ^= old[1];
    this.ownerHash.delete(name);
    this.bucketOwners[b]!.delete(name);
  }

  /** @internal for tests/bench: the root digest (equal roots = converged). */
  digestRoot(): string { const f = this.foldBuckets(1); return f[0]!.toString(16) + f[1]!.toString(16); }
}
