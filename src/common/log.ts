// The one logger of ax (daemon, hook server, cluster): a small leveled logger writing one
// line per event to stderr (or a file). Structured fields, when given, are appended to the
// line as JSON: "<time> <prefix> <level> <msg> {"k":v}".
import { appendFileSync } from 'node:fs';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Structured context of a log line (rendered as JSON after the message). */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/** `msg` followed by the fields as JSON; nothing is appended for absent or empty fields. */
export function formatLine(msg: string, fields?: LogFields): string {
  if (!fields || Object.keys(fields).length === 0) return msg;
  let json: string;
  try {
    json = JSON.stringify(fields, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    json = '{"fields":"(unserializable)"}';
  }
  return `${msg} ${json}`;
}

export function makeLogger(level: Level = 'info', file?: string, prefix = 'ax'): Logger {
  const min = RANK[level];
  const out = (lvl: Level, msg: string, fields?: LogFields) => {
    if (RANK[lvl] < min) return;
    const line = `${new Date().toISOString()} ${prefix} ${lvl} ${formatLine(msg, fields)}\n`;
    if (file) {
      try {
        appendFileSync(file, line);
        return;
      } catch {
        /* fall back to stderr */
      }
    }
    process.stderr.write(line);
  };
  return {
    debug: (m, f) => out('debug', m, f),
    info: (m, f) => out('info', m, f),
    warn: (m, f) => out('warn', m, f),
    error: (m, f) => out('error', m, f),
  };
}

/** Discards everything (simulations, tests, components built without a logger). */
export const nullLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A logger that prefixes every message of `log` with `prefix` (fields are passed through). */
export function withPrefix(log: Logger, prefix: string): Logger {
  return {
    debug: (m, f) => log.debug(prefix + m, f),
    info: (m, f) => log.info(prefix + m, f),
    warn: (m, f) => log.warn(prefix + m, f),
    error: (m, f) => log.error(prefix + m, f),
  };
}

/** Logs at most `perSecond` messages a second for one noisy source, then counts. */
export function rateLimited(log: Logger, perSecond = 20): (msg: string, fields?: LogFields) => void {
  let windowStart = 0;
  let count = 0;
  let dropped = 0;
  return (msg, fields) => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      if (dropped > 0) log.warn(`(${dropped} similar messages suppressed)`);
      windowStart = now;
      count = 0;
      dropped = 0;
    }
    if (++count <= perSecond) log.warn(msg, fields);
    else dropped++;
  };
}
