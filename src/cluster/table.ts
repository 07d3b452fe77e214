// ReplicatedTable: a generic single-writer-per-entry CRDT.
//
// * Every entry belongs to exactly one owner (a node name) and only that owner writes it.
// * Version = (owner epoch, per-owner counter). Every local write bumps the owner's counter by
//   exactly one, so the counters of one owner form a gap-free sequence within an epoch.
// * Each replica keeps, per owner, a *complete watermark* `head`: it holds the latest version of
//   every entry of that owner written up to counter `head`. Entries that arrive out of order are
//   parked in `pending` until the gap is filled (by gossip or by an explicit pull).
//   Because of the watermark, anti-entropy needs only (epoch, head) per owner and sends exact
//   deltas: "everything of owner O with counter > head".
// * Deletes are versioned tombstones; tombstones older than the TTL are garbage collected and the
//   owner's `gcFloor` remembers the highest collected counter: a peer whose head is below the floor
//   gets a *snapshot* of the owner (authoritative set), so a deleted entry never comes back.
// * A new owner epoch (owner restarted) supersedes every entry of older epochs at once.
// * A dead owner's entries are hidden (not deleted); unhidden when the owner refutes; physically
//   removed by reapOwner(), which leaves an owner tombstone (epoch, head) so that stale peers
//   cannot push them back. A higher epoch, or an explicit unreap (owner proven alive), lifts it.
//
// Merge is commutative, associative and idempotent: the state of an owner is a function of the
// set of (epoch, counter, key, value) writes received, taking the max epoch and per key the max counter.

export interface Version { epoch: number; counter: number }

export interface EntryRecord {
  key: string;
  counter: number;
  /** null = tombstone */
  value: Uint8Array | null;
}

/** A range delta of one owner: all entries of `owner` in `epoch` with from < counter <= to. */
export interface OwnerDelta {
  owner: string;
  epoch: number;
  from: number;
  to: number;
  /** The entries are the complete state of the owner at `to` (replace, do not merge). */
  snapshot: boolean;
  entries: EntryRecord[];
}

export interface ChangeEvent {
  owner: string;
  key: string;
  /** null when the entry was deleted or hidden */
  value: Uint8Array | null;
  version: Version;
}

interface Entry extends EntryRecord { deletedAt: number }

export class OwnerState {
  epoch = 0;
  head = 0;
  gcFloor = 0;
  hidden = false;
  reaped = false;
  readonly entries = new Map<string, Entry>();
  readonly pending = new Map<number, { key: string; value: Uint8Array | null }>();
  tombstones = 0;
  constructor(readonly owner: string) {}
}

export type ApplyResult = 'applied' | 'duplicate' | 'stale' | 'gap' | 'rejected';

export class ReplicatedTable {
  private readonly owners = new Map<string, OwnerState>();
  private visibleCount = 0;

  constructor(
    readonly self: string,
    private readonly opts: {
      now: () => number;
      onChange?: (ev: ChangeEvent) => void;
      /** called when an owner's (epoch, head, reaped) changed: used for digest hashing */
      onOwnerTouched?: (owner: string) => void;
      maxPendingPerOwner?: number;
    },
  ) {}

  // ---------------------------------------------------------------- local writes

  /** Epoch of the local owner. Must be set (restore) before the first local write. */
  setLocalEpoch(epoch: number): void {
    const o = this.owner(this.self);
    if (epoch <= o.epoch) return;
    this.resetEpoch(o, epoch);
    this.touched(o);
  }

  localEpoch(): number { return this.owner(this.self).epoch; }

  /**
   * Move the local owner to a new epoch keeping its live entries (renumbered 1..n, tombstones
   * dropped): used when peers show that an earlier life of this node used our epoch already.
   * No change events are emitted (the visible content does not change). Returns the re-written entries.
   */
  bumpLocalEpoch(epoch: number): EntryRecord[] {
    const o = this.owner(this.self);
    if (epoch <= o.epoch) return [];
    const live = [...o.entries.values()].filter((e) => e.value !== null).sort((a, b) => a.counter - b.counter);
    o.entries.clear(); o.pending.clear(); o.tombstones = 0;
    o.epoch = epoch; o.head = 0; o.gcFloor = 0;
    const out: EntryRecord[] = [];
    for (const e of live) {
      o.head++;
      o.entries.set(e.key, { key: e.key, counter: o.head, value: e.value, deletedAt: 0 });
      out.push({ key: e.key, counter: o.head, value: e.value });
    }
    this.touched(o);
    return out;
  }

  /** An owner announced epoch `epoch` (e.g. in its alive message): older entries are superseded. */
  observeEpoch(owner: string, epoch: number): void {
    if (owner === this.self) return;
    const o = this.owner(owner);
    if (epoch <= o.epoch) return;
    this.resetEpoch(o, epoch);
    o.reaped = false;
    this.touched(o);
  }

  /** Write (or delete with value=null) a local entry. Returns the new version. */
  localWrite(key: string, value: Uint8Array | null): Version {
    const o = this.owner(this.self);
    if (o.epoch === 0) o.epoch = 1;
    const counter = o.head + 1;
    o.head = counter;
    this.put(o, key, counter, value);
    this.touched(o);
    return { epoch: o.epoch, counter };
  }

  // ---------------------------------------------------------------- remote merge

  /** Merge one gossiped write. */
  applyEntry(owner: string, epoch: number, counter: number, key: string, value: Uint8Array | null): ApplyResult {
    if (owner === this.self) return 'rejected';
    const o = this.owner(owner);
    if (epoch < o.epoch) return 'stale';
    if (o.reaped && epoch === o.epoch) return 'rejected';
    if (epoch > o.epoch) { this.resetEpoch(o, epoch); o.reaped = false; }
    if (counter <= o.head) return 'duplicate';
    if (counter === o.head + 1) {
      this.put(o, key, counter, value);
      o.head = counter;
      this.drain(o);
      this.touched(o);
      return 'applied';
    }
    if (o.pending.size < (this.opts.maxPendingPerOwner ?? 256)) o.pending.set(counter, { key, value });
    this.touched(o);
    return 'gap';
  }

  /** Merge a range delta (anti-entropy / pull). Returns true if the owner's head advanced. */
  applyDelta(d: OwnerDelta): ApplyResult {
    if (d.owner === this.self) return 'rejected';
    const o = this.owner(d.owner);
    if (d.epoch < o.epoch) return 'stale';
    if (o.reaped && d.epoch === o.epoch) return 'rejected';
    if (d.epoch > o.epoch) { this.resetEpoch(o, d.epoch); o.reaped = false; }
    if (d.to <= o.head) return 'duplicate';
    if (d.snapshot) {
      const keep = new Set<string>();
      for (const e of d.entries) {
        keep.add(e.key);
        const cur = o.entries.get(e.key);
        if (!cur || cur.counter < e.counter) this.put(o, e.key, e.counter, e.value);
      }
      for (const [k, cur] of o.entries) {
        if (!keep.has(k) && cur.counter <= d.to) this.remove(o, k);
      }
      o.head = d.to;
      o.gcFloor = Math.max(o.gcFloor, d.from);
      this.drain(o);
      this.touched(o);
      return 'applied';
    }
    if (d.from <= o.head) {
      for (const e of d.entries) {
        const cur = o.entries.get(e.key);
        if (!cur || cur.counter < e.counter) this.put(o, e.key, e.counter, e.value);
      }
      o.head = d.to;
      this.drain(o);
      this.touched(o);
      return 'applied';
    }
    // gap before the delta: park its entries
    for (const e of d.entries) {
      if (o.pending.size >= (this.opts.maxPendingPerOwner ?? 256)) break;
      if (e.counter > o.head) o.pending.set(e.counter, { key: e.key, value: e.value });
    }
    return 'gap';
  }

  /** Delta that brings a replica at (peerEpoch, peerHead) up to date with us, or null. */
  deltaFor(owner: string, peerEpoch: number, peerHead: number, maxEntries = Infinity): OwnerDelta | null {
    const o = this.owners.get(owner);
    if (!o || o.epoch === 0 || o.reaped) return null;
    if (o.epoch < peerEpoch || (o.epoch === peerEpoch && o.head <= peerHead)) return null;
    const snapshot = o.epoch > peerEpoch || peerHead < o.gcFloor;
    const from = snapshot ? 0 : peerHead;
    const entries: EntryRecord[] = [];
    for (const e of o.entries.values()) {
      if (snapshot || e.counter > from) entries.push({ key: e.key, counter: e.counter, value: e.value });
    }
    if (entries.length > maxEntries && !snapshot) {
      // send the lowest counters first so the receiver can advance its watermark
      entries.sort((a, b) => a.counter - b.counter);
      entries.length = maxEntries;
      return { owner, epoch: o.epoch, from, to: entries[entries.length - 1]!.counter, snapshot: false, entries };
    }
    return { owner, epoch: o.epoch, from, to: o.head, snapshot, entries };
  }

  // ---------------------------------------------------------------- owner lifecycle

  /** Hide (owner dead/left) or show (owner alive again) every entry of an owner. */
  setHidden(owner: string, hidden: boolean): void {
    const o = this.owner(owner);
    if (o.hidden === hidden) return;
    o.hidden = hidden;
    for (const e of o.entries.values()) {
      if (e.value === null) continue;
      this.visibleCount += hidden ? -1 : 1;
      this.emit(o, e.key, hidden ? null : e.value, e.counter);
    }
  }

  /** Physically remove a (hidden) owner's entries, keeping an owner tombstone at (epoch, head). */
  reapOwner(owner: string): void {
    const o = this.owners.get(owner);
    if (!o || owner === this.self) return;
    for (const k of [...o.entries.keys()]) this.remove(o, k);
    o.pending.clear();
    o.reaped = true;
    this.touched(o);
  }

  /** The owner proved to be alive after a reap: forget the tombstone and re-fetch everything. */
  unreapOwner(owner: string): void {
    const o = this.owners.get(owner);
    if (!o || !o.reaped) return;
    o.reaped = false;
    o.head = 0;
    o.gcFloor = 0;
    this.touched(o);
  }

  /** Forget an owner entirely (its member record was garbage collected). */
  forgetOwner(owner: string): void {
    const o = this.owners.get(owner);
    if (!o || owner === this.self) return;
    for (const k of [...o.entries.keys()]) this.remove(o, k);
    this.owners.delete(owner);
    this.opts.onOwnerTouched?.(owner);
  }

  /** Drop tombstones older than ttl. */
  gcTombstones(ttlMs: number): number {
    const cutoff = this.opts.now() - ttlMs;
    let n = 0;
    for (const o of this.owners.values()) {
      if (o.tombstones === 0) continue;
      for (const [k, e] of o.entries) {
        if (e.value === null && e.deletedAt <= cutoff) {
          o.entries.delete(k);
          o.tombstones--;
          o.gcFloor = Math.max(o.gcFloor, e.counter);
          n++;
        }
      }
    }
    return n;
  }

  // ---------------------------------------------------------------- queries

  ownerState(owner: string): OwnerState | undefined { return this.owners.get(owner); }
  ownerNames(): IterableIterator<string> { return this.owners.keys(); }
  /** (epoch, head) digest of an owner */
  digest(owner: string): Version { const o = this.owners.get(owner); return o ? { epoch: o.epoch, counter: o.head } : { epoch: 0, counter: 0 }; }
  hasGap(owner: string): boolean { const o = this.owners.get(owner); return !!o && o.pending.size > 0; }

  get(owner: string, key: string): { value: Uint8Array | null; version: Version } | undefined {
    const o = this.owners.get(owner);
    const e = o?.entries.get(key);
    if (!o || !e) return undefined;
    return { value: e.value, version: { epoch: o.epoch, counter: e.counter } };
  }

  /** Visible (not hidden, not deleted) entries. */
  *visible(): IterableIterator<{ owner: string; key: string; value: Uint8Array; version: Version }> {
    for (const o of this.owners.values()) {
      if (o.hidden) continue;
      for (const e of o.entries.values()) {
        if (e.value !== null) yield { owner: o.owner, key: e.key, value: e.value, version: { epoch: o.epoch, counter: e.counter } };
      }
    }
  }

  visibleSize(): number { return this.visibleCount; }

  /** Live (non-tombstone) entry count of one owner. */
  liveCount(owner: string): number { const o = this.owners.get(owner); return o ? o.entries.size - o.tombstones : 0; }

  /** Local entries (for persistence). */
  localEntries(): EntryRecord[] {
    const o = this.owners.get(this.self);
    return o ? [...o.entries.values()].map((e) => ({ key: e.key, counter: e.counter, value: e.value })) : [];
  }

  // ---------------------------------------------------------------- internals

  private owner(name: string): OwnerState {
    let o = this.owners.get(name);
    if (!o) { o = new OwnerState(name); this.owners.set(name, o); }
    return o;
  }

  private touched(o: OwnerState): void { this.opts.onOwnerTouched?.(o.owner); }

  private resetEpoch(o: OwnerState, epoch: number): void {
    for (const k of [...o.entries.keys()]) this.remove(o, k);
    o.pending.clear();
    o.epoch = epoch;
    o.head = 0;
    o.gcFloor = 0;
  }

  private drain(o: OwnerState): void {
    if (o.pending.size === 0) return;
    for (const c of [...o.pending.keys()]) if (c <= o.head) o.pending.delete(c);
    for (;;) {
      const p = o.pending.get(o.head + 1);
      if (!p) break;
      o.pending.delete(o.head + 1);
      o.head++;
      const cur = o.entries.get(p.key);
      if (!cur || cur.counter < o.head) this.put(o, p.key, o.head, p.value);
    }
  }

  private put(o: OwnerState, key: string, counter: number, value: Uint8Array | null): void {
    const prev = o.entries.get(key);
    const wasVisible = !!prev && prev.value !== null;
    if (prev && prev.value === null) o.tombstones--;
    o.entries.set(key, { key, counter, value, deletedAt: value === null ? this.opts.now() : 0 });
    if (value === null) o.tombstones++;
    if (!o.hidden) {
      if (value !== null && !wasVisible) this.visibleCount++;
      if (value === null && wasVisible) this.visibleCount--;
      if (value !== null || wasVisible) this.emit(o, key, value, counter);
    }
  }

  private remove(o: OwnerState, key: string): void {
    const prev = o.entries.get(key);
    if (!prev) return;
    o.entries.delete(key);
    if (prev.value === null) { o.tombstones--; return; }
    if (!o.hidden) { this.visibleCount--; this.emit(o, key, null, prev.counter); }
  }

  private emit(o: OwnerState, key: string, value: Uint8Array | null, counter: number): void {
    this.opts.onChange?.({ owner: o.owner, key, value, version: { epoch: o.epoch, counter } });
  }
}
