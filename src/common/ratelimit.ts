// Rate limiting for noisy input: a token bucket, and a logger built on it that
// writes the first few lines of a flood and then one summary line per period
// with what it held back (so a fuzzer or a broken client cannot fill the log).
import type { LogFields, Logger } from './log';

/**
 * The classic token bucket: holds up to `capacity` tokens, refilled continuously at
 * `perSecond` tokens a second; take() spends one when there is one. Time comes from
 * `now` (ms) so tests can drive it.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly capacity: number,
    readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(capacity >= 1) || !(perSecond >= 0)) throw new Error(`token bucket: capacity ${capacity} must be >= 1 and rate ${perSecond} >= 0`);
    this.tokens = capacity;
    this.last = now();
  }

  /** Spends `n` tokens if the bucket has them; false (and nothing spent) otherwise. */
  take(n = 1): boolean {
    const t = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = t;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

export interface ThrottleOptions {
  /** Lines written at once before throttling starts. Default 5. */
  burst?: number;
  /** Lines a second after the burst (the bucket's refill). Default 0.1 (one per 10 s). */
  perSecond?: number;
  /** How often the summary of what was held back is written (ms). Default 10 000. */
  summaryMs?: number;
}

/**
 * A warn-level logger for one noisy source (e.g. bad DNS queries): lines pass while the
 * token bucket allows; the rest are counted per `kind`, and every `summaryMs` one line
 * says how many of each were not logged ("<prefix>: 2987 more not logged in the last 10 s
 * (malformed 2950, response 37)"). close() writes the last summary and stops the timer.
 */
export class ThrottledLog {
  private readonly bucket: TokenBucket;
  private readonly held = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private readonly summaryMs: number;

  constructor(
    private readonly log: Logger,
    private readonly prefix: string,
    opts: ThrottleOptions = {},
  ) {
    this.bucket = new TokenBucket(opts.burst ?? 5, opts.perSecond ?? 0.1);
    this.summaryMs = opts.summaryMs ?? 10_000;
  }

  /** Logs `msg` (warn) if the bucket allows, else counts it under `kind`. */
  warn(kind: string, msg: string, fields?: LogFields): void {
    if (this.bucket.take()) {
      this.log.warn(`${this.prefix}: ${msg}`, fields);
      return;
    }
    this.held.set(kind, (this.held.get(kind) ?? 0) + 1);
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.summaryMs);
      this.timer.unref();
    }
  }

  /** Writes the summary of what was held back (if anything) now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.held.size === 0) return;
    let total = 0;
    const parts: string[] = [];
    for (const [k, n] of this.held) {
      total += n;
      parts.push(`${k} ${n}`);
    }
    this.held.clear();
    this.log.warn(`${this.prefix}: ${total} more not logged in the last ${Math.round(this.summaryMs / 1000)} s (${parts.join(', ')})`);
  }

  close(): void {
    this.flush();
  }
}
