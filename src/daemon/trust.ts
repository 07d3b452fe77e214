// Who may open a hook session for an app: the kernel says, not the bearer token.
//
// A session's pid and uid come from SO_PEERCRED. The process must descend from
// the `ax run` that registered the app (its `runPid`), or from a process that
// already holds (or held) an authenticated session of that app while it still
// runs — a double-forking server reparented to init keeps working when its
// parent said HELLO first. Ancestry is read from /proc/PID/stat (ppid and start
// time); every link is checked with start times (a parent starts no later than
// its child; an anchor is the same process only if its start time matches), so
// a recycled pid never passes. A process of another uid can only be in the tree
// when the tree switched to it (a privileged setuid, e.g. a worker dropping to
// `nobody`, or a setuid program it ran), so ancestry also decides the uid.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import koffi from 'koffi';
import * as libc from '../hookserver/libc';
import type { App, Sock } from '../table/table';

/** What /proc says about a process: parent, start time (clock ticks after boot), real uid. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  start: number;
}

/**
 * Reads /proc/PID/stat; null when the process is gone (or a zombie). Throws when
 * /proc cannot be read for another reason (the daemon out of fds): that is no
 * verdict on the process.
 */
export function procInfo(pid: number): ProcInfo | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return null;
    throw e;
  }
  // "pid (comm) S ppid ..." — comm may hold spaces and parentheses: split after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (f[0] === 'Z' || f[0] === 'X') return null;
  const ppid = Number(f[1]);
  const start = Number(f[19]);
  if (!Number.isFinite(ppid) || !Number.isFinite(start)) return null;
  return { pid, ppid, start };
}

/** True while the process exists and is not a zombie; unreadable /proc (the daemon out of fds) is no verdict: alive. */
export function pidAlive(pid: number): boolean {
  try {
    return procInfo(pid) !== null;
  } catch {
    return true;
  }
}

/** Real uid of a process (from /proc/PID/status), or -1. */
export function procUid(pid: number): number {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

let bootMs = -1;
/** Wall-clock time (ms) a process started, from its start ticks; btime is whole seconds, so this may be up to 1 s early. */
export function startWallMs(startTicks: number): number {
  if (bootMs < 0) {
    const m = /^btime\s+(\d+)/m.exec(readFileSync('/proc/stat', 'latin1'));
    bootMs = m ? Number(m[1]) * 1000 : 0;
  }
  return bootMs + (startTicks * 1000) / libc.clockTicks();
}

/** Slack for comparing a start time derived from ticks with a Date.now() stamp. */
const CLOCK_SLACK_MS = 2000;
/** Ancestry walks stop here (pid_max chains are far shorter in practice). */
const MAX_DEPTH = 512;
/** Anchors kept per app before dead ones are pruned. */
const MAX_ANCHORS = 4096;

/** The verdict on a session: allowed (and how), or refused (and why). */
export type Verdict = { ok: true; via: string } | { ok: false; why: string };

/** Per-app sets of processes (pid + start time) known to belong to the app. */
export class AppTrust {
  private readonly anchors = new Map<string, Map<number, number>>();
  /** app id -> uid of the `ax run` that registered it */
  private readonly owners = new Map<string, number>();

  /**
   * Anchors an app at its `ax run` process, if that process still is the one that
   * registered the app: it must have started before the app was created (a pid
   * recycled later has a later start time).
   */
  addApp(app: App): void {
    try {
      this.anchorRun(app);
    } catch {
      // /proc unreadable right now (out of fds): tried again at the app's first HELLO.
    }
  }

  private anchorRun(app: App): void {
    const p = procInfo(app.runPid);
    if (!p || startWallMs(p.start) > app.createdAt + CLOCK_SLACK_MS) return;
    this.add(app.id, p);
    this.owners.set(app.id, procUid(app.runPid));
  }

  /** Anchors a restored socket's process (after a daemon restart), with the same start-time check. */
  addSock(s: Sock): void {
    let p: ProcInfo | null;
    try {
      p = procInfo(s.pid);
    } catch {
      return;
    }
    if (!p || startWallMs(p.start) > s.createdAt + CLOCK_SLACK_MS) return;
    this.add(s.appId, p);
  }

  /**
   * Admits `pid` to the app because it holds one of the app's kernel sockets:
   * only inheritance or SCM_RIGHTS from the app can give it one. This keeps a
   * daemonized server (reparented away from `ax run`, its parents gone) and a
   * re-exec'd one (nginx binary upgrade) in their app. `inodes`: the app's
   * socket inodes. Returns false when the process holds none or is gone.
   * Reads /proc/PID/fd (root, or the daemon's own uid's processes).
   */
  adoptHolder(appId: string, pid: number, inodes: Set<number>): boolean {
    if (inodes.size === 0) return false;
    let names: string[];
    try {
      names = readdirSync(`/proc/${pid}/fd`);
    } catch {
      return false;
    }
    for (const n of names) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${n}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (!m || !inodes.has(Number(m[1]))) continue;
      const p = procInfo(pid);
      if (!p) return false;
      this.add(appId, p);
      return true;
    }
    return false;
  }

  /** Forgets a removed app. */
  /**
   * The app's anchored processes that still live (same pid and start time), but for
   * `except` (its `ax run`, which is ax's and not the app's). After a daemon restart
   * these are what is known of an app before its processes open hook sessions again.
   */
  livePids(appId: string, except = 0): number[] {
    const out: number[] = [];
    for (const [pid, start] of this.anchors.get(appId) ?? []) {
      if (pid === except) continue;
      try {
        if (procInfo(pid)?.start === start) out.push(pid);
      } catch {
        /* /proc unreadable now: not counted */
      }
    }
    return out;
  }

  removeApp(appId: string): void {
    this.anchors.delete(appId);
    this.owners.delete(appId);
  }

  /** The uid of the app's `ax run` (-1 if unknown). */
  owner(appId: string): number {
    return this.owners.get(appId) ?? -1;
  }

  /**
   * Decides whether process `pid` (uid `uid`, from SO_PEERCRED) may join `app`;
   * on success it becomes an anchor. Throws when /proc cannot be read (no verdict).
   */
  verify(app: App, pid: number, uid: number): Verdict {
    const appId = app.id;
    if (!this.anchors.has(appId)) this.anchorRun(app); // its registration found /proc unreadable
    const set = this.anchors.get(appId);
    if (!set || set.size === 0) return { ok: false, why: 'the app has no live process that registered it' };
    let cur = procInfo(pid);
    if (!cur) return { ok: false, why: `process ${pid} is gone` };
    const chain: ProcInfo[] = [];
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      chain.push(cur);
      if (set.get(cur.pid) === cur.start) {
        // Everything between the anchor and the session belongs to the app too.
        for (const p of chain) this.add(appId, p);
        const owner = this.owners.get(appId);
        const via = cur.pid === pid ? `process ${pid} itself` : `ancestor ${cur.pid}`;
        return { ok: true, via: owner !== undefined && owner >= 0 && owner !== uid ? `${via}, uid ${owner} -> ${uid}` : via };
      }
      if (cur.ppid <= 0) break;
      const parent = procInfo(cur.ppid);
      // A parent never starts after its child: a later start means the pid was recycled.
      if (!parent || parent.start > cur.start) break;
      cur = parent;
    }
    return { ok: false, why: `process ${pid} (uid ${uid}) does not descend from the app's ax run or its processes` };
  }

  private add(appId: string, p: ProcInfo): void {
    let set = this.anchors.get(appId);
    if (!set) this.anchors.set(appId, (set = new Map()));
    if (set.size >= MAX_ANCHORS && !set.has(p.pid)) {
      for (const [pid, start] of set) if (procInfo(pid)?.start !== start) set.delete(pid);
      if (set.size >= MAX_ANCHORS) return;
    }
    set.set(p.pid, p.start);
  }
}

// ---- Confining a socket handed to an isolated app -------------------------------------
//
// A TCP socket the daemon connected (or bound) in the host's network namespace can be
// re-aimed by its holder: connect(AF_UNSPEC) (or shutdown(SHUT_RD) on a listener)
// disconnects it (tcp_disconnect), and a second connect() then goes anywhere the host
// can reach. For an app in another network namespace (`ax run --isolate`) that would be
// an unmediated host socket. The daemon therefore attaches a classic BPF socket filter
// (SO_ATTACH_FILTER, Documentation/networking/filter.rst) and locks it (SO_LOCK_FILTER:
// the holder can neither detach nor replace it). Socket filters see every packet the
// socket receives (tcp_v4_rcv -> tcp_filter, for every TCP state); for TCP, BPF_ABS
// offsets start at the TCP header and SKF_NET_OFF reaches the IP header. Accepted
// sockets inherit their listener's filter and lock (sk_clone_lock).
//   connected socket: only packets from the peer the daemon connected it to pass, so a
//     re-aimed connect never completes (its SYN-ACK is dropped);
//   listener (and the connections it accepts): no SYN-ACK passes, so no connect made
//     from it (or from a connection it accepted) ever completes.
// What stays possible: a re-aimed socket sends SYNs (no data, no completed handshake).

const bpfLib = koffi.load('libc.so.6');
const SockFilter = koffi.struct('ax_sock_filter', { code: 'uint16', jt: 'uint8', jf: 'uint8', k: 'uint32' });
const SockFprog = koffi.struct('ax_sock_fprog', { len: 'uint16', filter: koffi.pointer(SockFilter) });
const c_setsockopt_prog = bpfLib.func('setsockopt', 'int', ['int', 'int', 'int', koffi.pointer(SockFprog), 'uint32']);
const c_socket = bpfLib.func('int socket(int, int, int)');
const c_close = bpfLib.func('int close(int)');
const c_setsockopt_int = bpfLib.func('setsockopt', 'int', ['int', 'int', 'int', koffi.pointer('int'), 'uint32']);

const SOL_SOCKET = 1;
const SO_ATTACH_FILTER = 26;
const SO_LOCK_FILTER = 44;
// Classic BPF opcodes (linux/bpf_common.h) and the network-header base (linux/filter.h).
const LD_W_ABS = 0x20;
const LD_H_ABS = 0x28;
const LD_B_ABS = 0x30;
const JEQ_K = 0x15;
const AND_K = 0x54;
const RET_K = 0x06;
const SKF_NET_OFF = 0xfff00000; // -0x100000 as u32
const ACCEPT = 0xffffffff;

/** One classic BPF instruction (struct sock_filter). */
export interface BpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/**
 * The filter program for a socket handed to an isolated app: `peer` is the address
 * the daemon connected it to (IPv4: source address and port must match; IPv6: the
 * port), or null for a listener (no SYN-ACK passes).
 */
export function confineProgram(peer: { ip: string; port: number } | null): BpfInsn[] {
  const I = (code: number, k: number, jt = 0, jf = 0): BpfInsn => ({ code, jt, jf, k: k >>> 0 });
  if (!peer) {
    return [I(LD_B_ABS, 13), I(AND_K, 0x12), I(JEQ_K, 0x12, 0, 1), I(RET_K, 0), I(RET_K, ACCEPT)];
  }
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(peer.ip) ?? /^::ffff:(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(peer.ip);
  const port = [I(LD_H_ABS, 0), I(JEQ_K, peer.port, 0, 1), I(RET_K, ACCEPT), I(RET_K, 0)];
  if (!v4) return port;
  const ip = ((Number(v4[1]) << 24) | (Number(v4[2]) << 16) | (Number(v4[3]) << 8) | Number(v4[4])) >>> 0;
  // ld [net+12] (IPv4 source); jeq ip ? next : drop; then the port check.
  return [I(LD_W_ABS, SKF_NET_OFF + 12), I(JEQ_K, ip, 0, 3), ...port];
}

/**
 * Attaches and locks the confinement filter on `fd` (see confineProgram). Returns
 * false when the kernel refuses socket filters to this process (EPERM: some kernels
 * refuse classic BPF to unprivileged users; the socket is then unconfined), true
 * when attached and locked. Throws an Error naming the errno for anything else.
 */
export function confineSocket(fd: number, peer: { ip: string; port: number } | null): boolean {
  const prog = confineProgram(peer);
  if (Number(c_setsockopt_prog(fd, SOL_SOCKET, SO_ATTACH_FILTER, { len: prog.length, filter: prog }, koffi.sizeof(SockFprog))) !== 0) {
    const errno = koffi.errno();
    if (errno === EPERM) return false;
    throw new Error(`SO_ATTACH_FILTER: errno ${errno}`);
  }
  if (Number(c_setsockopt_int(fd, SOL_SOCKET, SO_LOCK_FILTER, [1], 4)) !== 0) throw new Error(`SO_LOCK_FILTER: errno ${koffi.errno()}`);
  return true;
}

const EPERM = 1;

/** Whether this process may attach socket filters (what confineSocket needs): tried on a scratch socket. */
export function canConfine(): boolean {
  const fd = Number(c_socket(2, 1, 0));
  if (fd < 0) return false;
  try {
    return confineSocket(fd, null);
  } catch {
    return false;
  } finally {
    c_close(fd);
  }
}

/**
 * How many seccomp filters the kernel reports for a process (`Seccomp_filters:` in
 * /proc/PID/status, Linux 5.9+); 0 when none, unknown or the process is gone. An isolated
 * app started through ax-confine (native/confine.c: Landlock + a seccomp user-notification
 * filter) has one more than the daemon: its handed-in sockets are confined there even
 * when this daemon may not attach socket filters.
 */
export function seccompFilters(pid: number | 'self'): number {
  try {
    const m = /^Seccomp_filters:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

const SO_MARK = 36;

/**
 * Sets SO_MARK on `fd` (every packet it sends carries the mark: see src/daemon/udpegress.ts).
 * Needs CAP_NET_ADMIN over the socket's network namespace; throws an Error naming the errno
 * (EPERM without it).
 */
export function setSocketMark(fd: number, mark: number): void {
  if (Number(c_setsockopt_int(fd, SOL_SOCKET, SO_MARK, [mark | 0], 4)) !== 0) throw new Error(`SO_MARK: errno ${koffi.errno()}`);
}
