// A small leveled logger writing one line per event to stderr (or a file).
import { appendFileSync } from 'node:fs';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function makeLogger(level: Level = 'info', file?: string, prefix = 'ax'): Logger {
  const min = RANK[level];
  const out = (lvl: Level, msg: string) => {
    if (RANK[lvl] < min) return;
    const line = `${new Date().toISOString()} ${prefix} ${lvl} ${msg}\n`;
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
    debug: (m) => out('debug', m),
    info: (m) => out('info', m),
    warn: (m) => out('warn', m),
    error: (m) => out('error', m),
  };
}

/** Logs at most `perSecond` messages a second for one noisy source, then counts. */
export function rateLimited(log: Logger, perSecond = 20): (msg: string) => void {
  let windowStart = 0;
  let count = 0;
  let dropped = 0;
  return (msg) => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      if (dropped > 0) log.warn(`(${dropped} similar messages suppressed)`);
      windowStart = now;
      count = 0;
      dropped = 0;
    }
    if (++count <= perSecond) log.warn(msg);
    else dropped++;
  };
}
