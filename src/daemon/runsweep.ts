// Leftovers of root daemons that died without stopping (SIGKILL, a crash) in the shared
// hook directory (/run/ax: see hookSocketFor). Each such daemon leaves a hook socket, its
// DNS socket and its identity map (hook-TAG.sock, .sock.dns, .sock.map; the map is 512 KiB).
// A graceful stop removes its own; this sweeps what the others left.
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

/** Resolves true when something accepts a connection on the unix socket `path` (within `ms`). */
function listening(path: string, ms = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true); // no answer in time: assume alive (a busy daemon), never sweep it
    }, ms);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code !== 'ECONNREFUSED' && e.code !== 'ENOENT');
    });
  });
}

/** Files (absolute paths) some process has mapped, read from /proc/PID/maps (root sees all). */
function mappedFiles(): Set<string> {
  const out = new Set<string>();
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const pid of pids) {
    let maps = '';
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch {
      continue; // gone, or not ours to read
    }
    for (const line of maps.split('\n')) {
      const i = line.indexOf('/');
      if (i > 0 && line.includes('.sock.map')) out.add(line.slice(i).replace(/ \(deleted\)$/, ''));
    }
  }
  return out;
}

/**
 * Removes the hook-TAG.sock, hook-TAG.sock.dns and hook-TAG.sock.map files in `dir` of
 * daemons that are gone: the hook socket refuses connections (nothing listens), the map is
 * mapped by no process (no app of that daemon still runs: its hooks would keep reading it,
 * and a restarted daemon reuses it), and nothing there changed for `minAgeMs` (a daemon
 * that is starting). `keep` (this daemon's hook socket) is never touched. Returns the
 * number of daemons' sets removed. Never throws.
 */
export async function sweepStaleHookFiles(dir: string, keep: string, minAgeMs = 60_000): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  const now = Date.now();
  const candidates: string[] = [];
  const bases = new Set<string>();
  for (const n of names) {
    const m = /^(hook-[0-9a-f]{12}\.sock)(\.dns|\.map)?$/.exec(n);
    if (m) bases.add(m[1]!); // a map kept by a stop while apps ran outlives its socket
  }
  for (const n of bases) {
    const sock = join(dir, n);
    if (sock === keep) continue;
    const parts = [sock, `${sock}.dns`, `${sock}.map`];
    const young = parts.some((p) => {
      try {
        return now - statSync(p).mtimeMs < minAgeMs;
      } catch {
        return false;
      }
    });
    if (!young) candidates.push(sock);
  }
  if (candidates.length === 0) return 0;
  const mapped = mappedFiles();
  let removed = 0;
  for (const sock of candidates) {
    if (mapped.has(`${sock}.map`)) continue;
    if (await listening(sock)) continue;
    for (const p of [sock, `${sock}.dns`, `${sock}.map`]) rmSync(p, { force: true });
    removed++;
  }
  return removed;
}
