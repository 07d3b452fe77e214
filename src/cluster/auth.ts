// Shared-key authentication for peer traffic (UDP envelopes and gRPC frames).
//
// HMAC-SHA256 under the cluster key, truncated to 16 bytes for datagrams (RFC 4868 style) and
// full length for stream frames. Every authenticated message carries a wall-clock timestamp and
// a random nonce: messages outside the skew window, or seen before within it, are refused.
// Several keys may be configured for rotation: the first signs, any verifies.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type KeyInput = string | Uint8Array;

export class ClusterKeys {
  private readonly keys: Buffer[];
  constructor(keys: KeyInput | KeyInput[]) {
    const list = Array.isArray(keys) ? keys : [keys];
    if (list.length === 0) throw new Error('cluster key: at least one key is required');
    this.keys = list.map((k, i) => {
      const b = typeof k === 'string' ? Buffer.from(k, 'utf8') : Buffer.from(k);
      if (b.length < 16) throw new Error(`cluster key #${i}: must be at least 16 bytes`);
      return b;
    });
  }

  sign(parts: Uint8Array[], len = 32): Buffer {
    const h = createHmac('sha256', this.keys[0]!);
    for (const p of parts) h.update(p);
    return h.digest().subarray(0, len);
  }

  verify(parts: Uint8Array[], mac: Uint8Array): boolean {
    for (const k of this.keys) {
      const h = createHmac('sha256', k);
      for (const p of parts) h.update(p);
      const d = h.digest().subarray(0, mac.length);
      if (mac.length >= 16 && d.length === mac.length && timingSafeEqual(d, mac)) return true;
    }
    return false;
  }
}

/**
 * Timestamp window + nonce cache against replays.
 *
 * The nonce cache lives in memory, so it is empty after a restart. To keep a restarted daemon from
 * accepting what was captured before, the guard also refuses anything stamped before it was created
 * (`notBeforeMs`, wall clock): every earlier message is stale for this life of the process, the way a
 * new epoch makes old entries stale. Cost: during the first moments after a start, messages from a
 * peer whose clock lags ours are refused for as long as the lag (they are retried by the protocol).
 * Exposure left: a replay of a message captured in the last (peer clock lead) ms before the restart.
 */
export class ReplayGuard {
  private cur = new Set<string>();
  private prev = new Set<string>();
  private rotatedAt = Date.now();
  readonly notBeforeMs: number;
  constructor(readonly windowMs = 30_000, private readonly maxEntries = 200_000, notBeforeMs = Date.now()) {
    this.notBeforeMs = notBeforeMs;
  }

  /** true if fresh (and remembers it), false if too old/new, stamped before this guard existed, or already seen. */
  check(tsMs: number, nonce: Uint8Array): boolean {
    const now = Date.now();
    if (Math.abs(now - tsMs) > this.windowMs) return false;
    if (tsMs < this.notBeforeMs) return false;
    if (now - this.rotatedAt > this.windowMs || this.cur.size > this.maxEntries) {
      this.prev = this.cur; this.cur = new Set(); this.rotatedAt = now;
    }
    const id = tsMs.toString(36) + Buffer.from(nonce).toString('base64');
    if (this.cur.has(id) || this.prev.has(id)) return false;
    this.cur.add(id);
    return true;
  }
}

export function nonce(n = 8): Buffer { return randomBytes(n); }

export function u64be(v: number): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(v)))); return b; }
