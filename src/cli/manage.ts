// Managing the daemon: `ax status`, `ax daemon stop` (`ax stop`), `ax logs [-f]`.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { defaultApiSocket } from '../common/paths';
import type { StatusReply__Output } from '../gen/ax/v1/StatusReply';
import { bool, parseFlags, str, UsageError, type FlagSpec } from './args';
import { autostartLogFile, AxClient, DaemonUnreachable, insideIsolatedApp } from './client';

export const STATUS_USAGE = `usage: ax status [-o table|json] [--socket PATH]

Shows the daemon: identity, sockets, log file, ranges, counters, and who you are to it.
Exits 1 with one line saying what to do when no daemon runs at the socket.
`;

export const STOP_USAGE = `usage: ax daemon stop [--socket PATH]    (also: ax stop)

Stops the daemon at the socket and waits until it is gone. Only root and the
daemon's own user may. Apps' state is kept unless the daemon runs with --clean.
`;

export const LOGS_USAGE = `usage: ax logs [-f] [--socket PATH]

Prints the daemon's log file (the path is in ax status); -f keeps printing what is
added, until interrupted. A daemon that logs to its terminal (no --log-file) has no file.
`;

const SOCKET: FlagSpec = { name: 'socket', kind: 'string' };
const HELP: FlagSpec = { name: 'help', short: 'h', kind: 'bool' };

/** The lines `ax status` prints for a Status reply (key, padded, value); only the fields it has are shown. */
export function formatStatus(s: Partial<StatusReply__Output>): string {
  const lines: Array<[string, string]> = [];
  const skip = new Set(['vip_ranges', 'caller_uid', 'caller_user', 'autostarted_by']);
  for (const [k, v] of Object.entries(s)) {
    if (skip.has(k)) continue;
    if (k === 'log_file') lines.push(['log_file', (v as string) || '(stderr of the daemon process)']);
    else if (k === 'api_group' || k === 'label_policy') lines.push([k, (v as string) || '-']);
    else if (k === 'dns_address') lines.push([k, (v as string) || 'off']);
    else if (k === 'dns_upstreams') lines.push([k, (v as string[]).length > 0 ? (v as string[]).join(', ') : s.dns_address ? 'none (other names are refused)' : '-']);
    else if (k === 'dns_domains') lines.push([k, s.dns_address ? ['ax', ...(v as string[])].join(', ') : '-']);
    else lines.push([k, String(v)]);
  }
  lines.push(['you', `uid ${String(s.caller_uid)} (${String(s.caller_user)})`]);
  let out = lines.map(([k, v]) => `${k.padEnd(15)} ${v}\n`).join('');
  if (Number(s.autostarted_by) > 0) {
    out += `\nThis daemon was started by \`ax run\` (pid ${String(s.autostarted_by)}) because none was running; it keeps running after\nits apps exit. Stop it with: ax daemon stop --socket ${String(s.api_socket)}\n`;
  }
  return out;
}

/** `ax status [-o table|json] [--socket PATH]`: returns the exit code (UsageError, DaemonUnreachable and ApiError propagate). */
export async function statusMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, [SOCKET, { name: 'output', short: 'o', kind: 'string' }, HELP]);
  if (bool(p, 'help')) {
    process.stdout.write(STATUS_USAGE);
    return 0;
  }
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const output = str(p, 'output') ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o ${output}: choose table or json`);
  const c = new AxClient(str(p, 'socket') ?? defaultApiSocket());
  try {
    const s = await c.call('Status');
    process.stdout.write(output === 'json' ? JSON.stringify(s, null, 2) + '\n' : formatStatus(s));
    return 0;
  } finally {
    c.close();
  }
}

/** True while `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * `ax daemon stop` / `ax stop`: asks the daemon to shut down and waits (up to 10 s) until its pid is
 * gone. 0 when stopped or when none runs; 1 when one listens but does not answer (suspended or
 * overloaded: it is not stopped); ApiError (PERMISSION_DENIED) when this user may not.
 */
export async function stopMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, [SOCKET, HELP]);
  if (bool(p, 'help')) {
    process.stdout.write(STOP_USAGE);
    return 0;
  }
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const socket = str(p, 'socket') ?? defaultApiSocket();
  const c = new AxClient(socket);
  try {
    let pid = 0;
    try {
      pid = Number((await c.call('Status', {}, 3000)).pid) || 0;
    } catch (e) {
      if (e instanceof DaemonUnreachable && insideIsolatedApp()) throw e; // the API is hidden, not absent
      if (e instanceof DaemonUnreachable && e.noAnswer) {
        // Something listens there but does not answer: a suspended (SIGSTOP) or overloaded
        // daemon. It cannot be asked to stop; saying "nothing to stop" would be wrong.
        process.stderr.write(
          `ax: a daemon listens at ${socket} but does not answer (suspended with SIGSTOP, or overloaded?), so it cannot be asked to stop; ` +
            `find its pid with: ss -xlp src ${socket}; then resume it (kill -CONT PID) and run ax stop again, or end it (kill PID)\n`,
        );
        return 1;
      }
      if (e instanceof DaemonUnreachable) {
        process.stdout.write(`no ax daemon is running at ${socket}; nothing to stop\n`);
        return 0;
      }
      // Status may be refused to this user while Shutdown says why it is refused too.
    }
    await c.call('Shutdown', {}, 5000);
    const deadline = Date.now() + 10_000;
    while (pid > 0 && alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (pid > 0 && alive(pid)) {
      process.stderr.write(`ax: the daemon (pid ${pid}) was asked to stop but still runs after 10s; see ax logs\n`);
      return 1;
    }
    process.stdout.write(`stopped the ax daemon${pid ? ` (pid ${pid})` : ''} at ${socket}\n`);
    return 0;
  } finally {
    c.close();
  }
}

/** Copies bytes [from, end) of `file` to stdout; returns the new offset. */
function copyFrom(file: string, from: number): number {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return from;
  }
  if (size < from) from = 0; // truncated or replaced: start over
  if (size === from) return from;
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    let pos = from;
    while (pos < size) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n <= 0) break;
      process.stdout.write(buf.subarray(0, n));
      pos += n;
    }
    return pos;
  } finally {
    closeSync(fd);
  }
}

/**
 * `ax logs [-f]`: prints the daemon's log file (from Status; without a daemon, the file an
 * autostarted one used); -f polls for growth every 250 ms until SIGINT/SIGTERM (exit 0).
 */
export async function logsMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, [SOCKET, { name: 'follow', short: 'f', kind: 'bool' }, HELP]);
  if (bool(p, 'help')) {
    process.stdout.write(LOGS_USAGE);
    return 0;
  }
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const socket = str(p, 'socket') ?? defaultApiSocket();
  const c = new AxClient(socket);
  let file = '';
  try {
    file = String((await c.call('Status', {}, 3000)).log_file ?? '');
    if (!file) {
      process.stderr.write(`ax: the daemon at ${socket} logs to its own stderr (it was started without --log-file), so there is no file to show\n`);
      return 1;
    }
  } catch (e) {
    if (!(e instanceof DaemonUnreachable) || insideIsolatedApp()) throw e;
    // No daemon at the default socket: show where the last one `ax run` started there
    // logged, if there is such a file (saying so). Another socket's daemon is not that one.
    file = autostartLogFile(socket);
    if (!existsSync(file)) throw e;
    process.stderr.write(`ax: no daemon is running at ${socket}; this is the log of the last one ax run started (${file})\n`);
  } finally {
    c.close();
  }
  if (!existsSync(file)) {
    process.stderr.write(`ax: the log file ${file} does not exist (yet)\n`);
    return 1;
  }
  let pos = copyFrom(file, 0);
  if (!bool(p, 'follow')) return 0;
  return new Promise<number>((resolve) => {
    const t = setInterval(() => (pos = copyFrom(file, pos)), 250);
    const stop = () => {
      clearInterval(t);
      resolve(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
