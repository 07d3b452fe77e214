// `ax events`: the audit trail (every access decision), from the daemon's ring.
import * as grpc from '@grpc/grpc-js';
import { defaultApiSocket } from '../common/paths';
import type { EventBatch__Output } from '../gen/ax/v1/EventBatch';
import type { StoredEvent } from '../audit/event';
import type { AuditStats } from '../audit/audit';
import { droppedNote, eventFromWire, statsFromWire } from '../audit/wire';
import { formatLabels } from '../policy/labels';
import { bool, parseFlags, str, UsageError, type FlagSpec } from './args';
import { ApiError, AxClient, DaemonUnreachable, unreachableMessage } from './client';
import { table } from './get';

export const EVENTS_USAGE = `usage: ax events [--follow] [--since DUR|TIME] [--limit N] [-o table|json] [--socket PATH]

Shows the audit trail: every access decision (allow, deny, revoke, publish-refused) with
its time, source app and labels, destination and the rule that decided it, oldest first.
The daemon keeps the newest --events-max of them (default 100000) across restarts; when
older ones were dropped, ax events says how many (on stderr; in the JSON as "stats").

flags:
  -f, --follow        keep printing new events as they happen (Ctrl-C ends)
  --since DUR|TIME    only events of the last DUR (30s, 5m, 2h, 1d) or since an RFC 3339
                      time (2026-01-31T12:00:00Z)
  --limit N           only the newest N events (with --follow: of those before it follows)
  -o table|json       json: {"events": [...], "stats": {...}}; with --follow one event per line

Reading events needs root, the daemon's user or its --api-group (they are operator data).
Allowed connects a hook makes from a cached answer (same backends, until the table
changes) do not reach the daemon and are not recorded: allow counts are a lower bound.
`;

const SPECS: FlagSpec[] = [
  { name: 'follow', short: 'f', kind: 'bool' },
  { name: 'since', kind: 'string' },
  { name: 'limit', kind: 'string' },
  { name: 'output', short: 'o', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

/**
 * --since: a duration back from `now` ("90s", "5m", "2h", "1d", "250ms") or an
 * RFC 3339 time ("2026-01-31T12:00:00Z", "...+02:00") → ms since the epoch.
 * Throws UsageError naming the flag.
 */
export function parseSince(text: string, now = Date.now(), flag = '--since'): number {
  const t = text.trim();
  const d = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(t);
  if (d) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[d[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return Math.max(1, now - Math.round(Number(d[1]) * unit));
  }
  if (/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/.test(t)) {
    const ms = Date.parse(t.replace(' ', 'T'));
    if (Number.isFinite(ms) && ms > 0) return ms;
  }
  throw new UsageError(`${flag} "${text}" is neither a duration (30s, 5m, 2h, 1d) nor an RFC 3339 time (2026-01-31T12:00:00Z)`);
}

/**
 * Resolves once everything written to stdout so far has reached the kernel. `ax`
 * exits right after a command returns, and a pipe whose reader is slower than us
 * holds the rest in Node's queue: without this, output past 64 KiB was lost.
 */
export function stdoutDrained(): Promise<void> {
  return new Promise((resolve) => process.stdout.write('', () => resolve()));
}

/** --limit: a whole number >= 1. */
function parseLimit(text: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) throw new UsageError(`--limit "${text}" is not a positive whole number`);
  return Number(text);
}

/** An event as JSON for people and scripts (RFC 3339 time beside the ms). */
export function eventJson(e: StoredEvent): object {
  return {
    seq: e.seq,
    time: new Date(e.time).toISOString(),
    time_ms: e.time,
    verdict: e.verdict,
    op: e.op,
    src: { app_id: e.src.appId, name: e.src.name, labels: e.src.labels, node: e.src.node ?? '' },
    dst: { name: e.dst.name, addr: e.dst.addr, app_id: e.dst.appId ?? '', labels: e.dst.labels ?? {} },
    rule: e.rule,
    ...(e.detail ? { detail: e.detail } : {}),
  };
}

const COLUMNS: Array<[string, (e: StoredEvent) => string]> = [
  ['TIME', (e) => new Date(e.time).toISOString()],
  ['VERDICT', (e) => e.verdict],
  ['OP', (e) => e.op],
  // A publish refused at `ax run` has no app yet: its source is the user who asked.
  // an app; the user of a refused `ax run`; a peer outside ax (accept events: its address)
  ['SOURCE', (e) => (e.src.appId ? e.src.name || e.src.appId : e.src.labels['ax.user'] ? `user:${e.src.labels['ax.user']}` : e.src.name || '?')],
  ['SRC-LABELS', (e) => formatLabels(e.src.labels) || '-'],
  ['DESTINATION', (e) => (e.dst.name ? `${e.dst.name} (${e.dst.addr})` : e.dst.addr)],
  ['RULE', (e) => e.rule],
];

/**
 * Column widths (characters) of `ax events -f` rows, which are printed as they come and so
 * cannot be measured ahead: an ISO time (24), the longest verdict ("publish-refused", 15),
 * the longest op ("connect", "publish": 7), then room for typical names, labels and addresses.
 */
export const STREAM_WIDTHS = [24, 15, 7, 20, 24, 32];

/**
 * One streamed table line: each cell but the last padded to its width in `widths` and
 * separated by two spaces, as `table` does. A cell longer than its width widens that
 * column in `widths` (changed in place) for the lines after it. Ends with a newline.
 */
export function streamRow(cells: string[], widths: number[]): string {
  return (
    cells
      .map((c, i) => {
        if (i === cells.length - 1) return c;
        if (widths[i] === undefined || c.length > widths[i]) widths[i] = c.length;
        return c.padEnd(widths[i]);
      })
      .join('  ') + '\n'
  );
}

export async function eventsMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) {
    process.stdout.write(EVENTS_USAGE);
    return 0;
  }
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const output = str(p, 'output') ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o ${output}: choose table or json`);
  const since = str(p, 'since') !== undefined ? parseSince(str(p, 'since')!) : 0;
  const limit = str(p, 'limit') !== undefined ? parseLimit(str(p, 'limit')!) : 0;
  const follow = bool(p, 'follow');
  const socket = str(p, 'socket') ?? defaultApiSocket();
  const client = new AxClient(socket);
  let lastNote = '';
  const note = (s: AuditStats, skipped: number) => {
    const text = droppedNote(s);
    if (text && text !== lastNote) process.stderr.write(`ax events: ${text}\n`);
    lastNote = text;
    if (skipped > 0) process.stderr.write(`ax events: ${skipped} events were skipped: this reader fell behind\n`);
  };
  try {
    const code = await new Promise<number>((resolve, reject) => {
      const stream = client.raw.Events({ since_ms: since, limit, follow });
      let got = false;
      let headerDone = false;
      let stats: AuditStats | null = null;
      const all: StoredEvent[] = [];
      /** Rows as they come, in fixed-width columns (STREAM_WIDTHS; a longer cell widens its column from then on). */
      const widths = [...STREAM_WIDTHS];
      const rows = (events: StoredEvent[]) => {
        if (!headerDone) process.stdout.write(streamRow(COLUMNS.map(([h]) => h), widths));
        headerDone = true;
        for (const e of events) process.stdout.write(streamRow(COLUMNS.map(([, f]) => f(e)), widths));
      };
      stream.on('data', (b: EventBatch__Output) => {
        got = true;
        const events = (b.events ?? []).map(eventFromWire);
        stats = statsFromWire(b.stats);
        if (!follow) all.push(...events);
        else if (output === 'json') for (const e of events) process.stdout.write(JSON.stringify(eventJson(e)) + '\n');
        else if (events.length > 0) rows(events);
        note(stats, Number(b.skipped ?? 0));
      });
      // 'status' OK is the successful end; grpc-js emits 'end' before 'error' for a refused call.
      stream.on('status', (st: grpc.StatusObject) => {
        if (st.code !== grpc.status.OK) return;
        if (follow) {
          process.stderr.write('ax events: the daemon ended the stream (it is stopping)\n');
          return resolve(1);
        }
        if (output === 'json') process.stdout.write(JSON.stringify({ events: all.map(eventJson), stats }, null, 2) + '\n');
        else process.stdout.write(all.length > 0 ? table(all, COLUMNS) : 'no events\n');
        resolve(0);
      });
      stream.on('error', (err: grpc.ServiceError) => {
        if (err.code === grpc.status.CANCELLED) return resolve(0);
        if (err.code === grpc.status.UNAVAILABLE) {
          if (got) {
            process.stderr.write('ax events: the daemon closed the stream (stopped?)\n');
            return resolve(1);
          }
          return reject(new DaemonUnreachable(unreachableMessage(socket, err)));
        }
        reject(new ApiError(err.code, err.details || err.message));
      });
      if (follow) {
        const stop = () => {
          stream.cancel();
          resolve(0);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      }
    });
    await stdoutDrained();
    return code;
  } finally {
    client.close();
  }
}
