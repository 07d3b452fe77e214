// Piggyback queue (memberlist's TransmitLimitedQueue).
//
// Each queued broadcast is an encoded message plus an invalidation key: a newer broadcast with the
// same key (e.g. "m:<node>" for membership, "e:<owner>/<key>" for an entry) replaces the older one.
// getBroadcasts() fills a byte budget with the least-transmitted messages first; a message is
// dropped after retransmitMult * max(3, ceil(log10(N+1))) transmissions. When the queue is over its limit
// the most-transmitted messages are dropped first (anti-entropy repairs what is lost).

export interface Broadcast {
  key: string;
  msg: Uint8Array;
  transmits: number;
  /** called when the broadcast leaves the queue (sent enough times, invalidated or dropped) */
  done?: (reason: 'sent' | 'invalidated' | 'dropped') => void;
}

/**
 * Transmissions of one broadcast by one node: mult * max(3, ceil(log10(N+1))) for N live members.
 * memberlist uses mult * ceil(log10(N+1)); the floor of 3 keeps clusters under 1 000 nodes from missing
 * an update now and then (at N = 100, 8 sends left about one node in 2 500 to anti-entropy).
 */
export function retransmitLimit(mult: number, n: number): number {
  return mult * Math.max(3, Math.ceil(Math.log10(n + 1)));
}

export class BroadcastQueue {
  /** levels[i] = broadcasts that were transmitted i times (insertion ordered) */
  private levels: Array<Map<string, Broadcast>> = [];
  private byKey = new Map<string, Broadcast>();
  dropped = 0;

  constructor(private readonly maxItems: number) {}

  get size(): number { return this.byKey.size; }

  enqueue(key: string, msg: Uint8Array, done?: Broadcast['done']): void {
    const old = this.byKey.get(key);
    if (old) { this.levels[old.transmits]!.delete(key); this.byKey.delete(key); old.done?.('invalidated'); }
    const b: Broadcast = { key, msg, transmits: 0, ...(done ? { done } : {}) };
    this.level(0).set(key, b);
    this.byKey.set(key, b);
    while (this.byKey.size > this.maxItems) this.dropOne();
  }

  /** Remove a pending broadcast (e.g. superseded by newer knowledge). */
  invalidate(key: string): void {
    const old = this.byKey.get(key);
    if (!old) return;
    this.levels[old.transmits]!.delete(key);
    this.byKey.delete(key);
    old.done?.('invalidated');
  }

  /**
   * Messages that fit into `budget` bytes (each message costs its length), least transmitted first.
   * Each returned message counts one transmission.
   */
  getBroadcasts(budget: number, limit: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.byKey.size === 0) return out;
    let used = 0;
    const promoted: Broadcast[] = [];
    for (let lvl = 0; lvl < this.levels.length && used < budget; lvl++) {
      const m = this.levels[lvl]!;
      if (m.size === 0) continue;
      for (const b of m.values()) {
        if (used + b.msg.length > budget) { if (budget - used < 24) break; continue; }
        used += b.msg.length;
        out.push(b.msg);
        promoted.push(b);
      }
    }
    for (const b of promoted) {
      this.levels[b.transmits]!.delete(b.key);
      b.transmits++;
      if (b.transmits >= limit) { this.byKey.delete(b.key); b.done?.('sent'); }
      else this.level(b.transmits).set(b.key, b);
    }
    return out;
  }

  /** Broadcasts never transmitted yet (eager push pending). */
  get freshCount(): number { return this.levels[0]?.size ?? 0; }

  /**
   * Eager push (gossip on receipt): the broadcasts never transmitted yet that fit into `budget` bytes,
   * oldest first, counted as `copies` transmissions each (the caller sends the same packet to `copies`
   * peers). They then wait in the queue for their remaining `limit - copies` transmissions.
   */
  takeFresh(budget: number, copies: number, limit: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    const fresh = this.levels[0];
    if (!fresh || fresh.size === 0 || copies <= 0) return out;
    let used = 0;
    const taken: Broadcast[] = [];
    for (const b of fresh.values()) {
      if (used + b.msg.length > budget) continue;
      used += b.msg.length;
      out.push(b.msg);
      taken.push(b);
    }
    for (const b of taken) {
      fresh.delete(b.key);
      b.transmits = Math.min(limit, copies);
      if (b.transmits >= limit) { this.byKey.delete(b.key); b.done?.('sent'); }
      else this.level(b.transmits).set(b.key, b);
    }
    return out;
  }

  /** Reset (e.g. on stop). */
  clear(): void { this.levels = []; this.byKey.clear(); }

  private level(i: number): Map<string, Broadcast> {
    while (this.levels.length <= i) this.levels.push(new Map());
    return this.levels[i]!;
  }

  private dropOne(): void {
    for (let lvl = this.levels.length - 1; lvl >= 0; lvl--) {
      const m = this.levels[lvl]!;
      const first = m.values().next();
      if (!first.done) {
        const b = first.value;
        m.delete(b.key); this.byKey.delete(b.key); this.dropped++;
        b.done?.('dropped');
        return;
      }
    }
  }
}
