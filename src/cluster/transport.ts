// Narrow interfaces between the gossip core and the outside world.
import { makeLogger, type Level, type LogFields, type Logger } from '../common/log';

/** Opaque timer handle. */
export type TimerHandle = unknown;

export interface Clock {
  /** milliseconds, monotonic */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(h: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref?.(); return t; },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

// Logging: the cluster uses the daemon's one logger (src/common/log.ts); its methods take an
// optional `fields` object, rendered as JSON on the line.
export { nullLogger, type Logger, type LogFields } from '../common/log';

/** A stderr logger for the cluster layer used on its own (a thin call of makeLogger). */
export function consoleLogger(prefix = 'cluster', level: Level = 'info'): Logger {
  return makeLogger(level, undefined, prefix);
}

export type PacketHandler = (from: string, data: Uint8Array) => void;
export type RequestHandler = (from: string, data: Uint8Array) => Promise<Uint8Array> | Uint8Array;

/**
 * What ClusterNode needs from the network: unreliable packets (probes, gossip) and reliable
 * request/response exchanges (join, anti-entropy, delta pulls, fallback probes).
 * Addresses are "host:port" strings as advertised by nodes.
 */
export interface Transport {
  /** Bytes of per-packet overhead the transport adds (counted against ClusterConfig.maxPacketSize). */
  readonly packetOverhead: number;
  /** Fire-and-forget datagram. Must never throw. */
  sendPacket(addr: string, data: Uint8Array): void;
  /** Register the handler for incoming (authenticated) packets. */
  onPacket(handler: PacketHandler): void;
  /** Reliable request/response. Rejects on timeout, refusal or network error. */
  request(addr: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Register the handler for incoming (authenticated) requests. */
  onRequest(handler: RequestHandler): void;
  /** Start listening (idempotent). */
  start(): Promise<void>;
  /** Stop listening and release sockets. */
  close(): Promise<void>;
}

/** Combine a packet transport (e.g. UDP) and a stream transport (e.g. gRPC) into one Transport. */
export function combineTransports(
  packets: Pick<Transport, 'packetOverhead' | 'sendPacket' | 'onPacket' | 'start' | 'close'>,
  stream: Pick<Transport, 'request' | 'onRequest' | 'start' | 'close'>,
): Transport {
  return {
    packetOverhead: packets.packetOverhead,
    sendPacket: (a, d) => packets.sendPacket(a, d),
    onPacket: (h) => packets.onPacket(h),
    request: (a, d, t) => stream.request(a, d, t),
    onRequest: (h) => stream.onRequest(h),
    start: async () => { await packets.start(); await stream.start(); },
    close: async () => { await Promise.allSettled([packets.close(), stream.close()]); },
  };
}

/** Rate-limited logging helper: at most one line per `intervalMs` per key, with a suppressed count. */
export class RateLimitedLog {
  private last = new Map<string, { at: number; suppressed: number }>();
  constructor(private readonly logger: Logger, private readonly intervalMs = 10_000, private readonly now: () => number = () => Date.now()) {}
  warn(key: string, msg: string, fields: LogFields = {}): void {
    const t = this.now();
    const s = this.last.get(key);
    if (s && t - s.at < this.intervalMs) { s.suppressed++; return; }
    this.logger.warn(msg, s && s.suppressed ? { ...fields, suppressed: s.suppressed } : fields);
    this.last.set(key, { at: t, suppressed: 0 });
    if (this.last.size > 1000) this.last.clear();
  }
}
