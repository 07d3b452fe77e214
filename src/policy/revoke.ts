// Revocation: when a policy change denies a connection that is already
// established, it is cut. The client's host does it: every host sees every rule
// change (cluster replication) and owns the client end of its apps' connections;
// cutting that end sends a reset to the server, wherever it runs.
//
// Mechanism: NETLINK_SOCK_DIAG (linux/inet_diag.h). A dump of established TCP
// sockets gives each one's 4-tuple, cookie and inode; the inode is mapped to an
// app through the fds of the app's processes (/proc/PID/fd); a socket whose
// destination is a service the app may no longer reach is destroyed with
// SOCK_DESTROY (kernel tcp_abort: the owner's next call gets ECONNABORTED, the
// peer a RST). SOCK_DESTROY needs CAP_NET_ADMIN in the socket's network namespace
// and CONFIG_INET_DIAG_DESTROY=y. Without them (a rootless daemon) the fallback
// takes a copy of the app's fd with pidfd_getfd(2) (Linux 5.6; needs ptrace
// access to the process: same uid, Yama permitting) and shuts the connection
// down (shutdown(SHUT_RDWR): the app reads EOF, the peer gets a FIN). When
// neither works it is logged once and the connection lives until it closes.
import koffi from 'koffi';
import { SockDiag, type DiagSock } from '../hookserver/sockdiag';
import { readdirSync, readlinkSync } from 'node:fs';

const lib = koffi.load('libc.so.6');
const c_close = lib.func('int close(int)');
const c_syscall3 = lib.func('long syscall(long, long, long, long)');
const c_shutdown = lib.func('int shutdown(int, int)');
const SYS_pidfd_open = 434;
const SYS_pidfd_getfd = 438;
const SHUT_RDWR = 2;
const TCP_ESTABLISHED = 1;

/** An established TCP connection as the kernel reports it (src/hookserver/sockdiag.ts). */
export type Conn = DiagSock;

/**
 * Shuts down the socket `fd` of process `pid` from outside (pidfd_open + pidfd_getfd,
 * then shutdown(SHUT_RDWR) on the copy). Returns 0 or the errno of the step that failed.
 */
export function shutdownRemote(pid: number, fd: number): number {
  const pidfd = Number(c_syscall3(SYS_pidfd_open, pid, 0, 0));
  if (pidfd < 0) return koffi.errno();
  try {
    const copy = Number(c_syscall3(SYS_pidfd_getfd, pidfd, fd, 0));
    if (copy < 0) return koffi.errno();
    try {
      return c_shutdown(copy, SHUT_RDWR) === 0 ? 0 : koffi.errno();
    } finally {
      c_close(copy);
    }
  } finally {
    c_close(pidfd);
  }
}

/** Socket fds of process `pid`: inode -> fd number (from /proc/PID/fd); empty if unreadable. */
export function socketFdsOf(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const l = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (l.startsWith('socket:[')) out.set(Number(l.slice(8, -1)), Number(fd));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}


/** What the revoker needs from the daemon. */
export interface RevokeDeps {
  /** pids of each local app's processes (hook sessions), by app id */
  pids: () => Map<string, Set<number>>;
  /** whether app `appId` may still use its connection to real address ip:port; undefined = not a service */
  allowed: (appId: string, ip: string, port: number) => boolean | undefined;
  /** whether real address ip:port is a TCP service's (a connection elsewhere is never policy's to cut) */
  isService: (ip: string, port: number) => boolean;
  /**
   * The server end of an accepted connection: whether a peer outside ax at peerIp may
   * still reach the local service listening on real ip:port (accept filtering);
   * undefined when ip:port is no local service or the peer is an ax app (judged at its
   * own connect: its client end is cut on its host).
   */
  peerAllowed?: (ip: string, port: number, peerIp: string) => boolean | undefined;
  log: { warn(m: string): void; info(m: string): void; debug(m: string): void };
  /**
   * Called for each connection cut: the app, and the real destination it was connected
   * to; for the server end of a connection from a peer outside ax, the service's real
   * address and `peer` ("ip:port").
   */
  onCut?: (appId: string, dst: string, dport: number, peer?: string) => void;
  /** 'auto' (default): SOCK_DESTROY, then pidfd_getfd + shutdown; 'pidfd': only the latter. */
  mode?: 'auto' | 'pidfd';
}

/**
 * Cuts this host's established connections that policy no longer allows.
 * Returns how many were cut.
 */
export class Revoker {
  private readonly diag = new SockDiag();
  private warned = false;
  cut = 0;

  constructor(private readonly d: RevokeDeps) {}

  /**
   * One pass over every established connection of this host's apps. The kernel's list
   * comes first (one sock_diag dump per family); only when some connection goes to a
   * service are the apps' fds read (/proc/PID/fd) to learn whose it is, and only until
   * every such connection's owner is known.
   */
  sweep(): number {
    // client ends (to a service) and server ends (a service's accepted connection from a peer outside ax)
    const candidates: Conn[] = [];
    const serverEnd = new Set<Conn>();
    for (const family of [2, 10]) {
      try {
        for (const c of this.diag.dump(family, 1 << TCP_ESTABLISHED)) {
          if (this.d.isService(c.dst, c.dport)) candidates.push(c);
          else if (this.d.peerAllowed?.(c.src, c.port, c.dst) !== undefined) {
            candidates.push(c);
            serverEnd.add(c);
          }
        }
      } catch (e) {
        this.warnOnce(`revocation: cannot list connections (${(e as Error).message})`);
        return 0;
      }
    }
    if (candidates.length === 0) return 0;
    const wanted = new Set(candidates.map((c) => c.inode));
    const owner = new Map<number, { appId: string; pid: number; fd: number }>();
    scan: for (const [appId, pids] of this.d.pids()) {
      for (const pid of pids) {
        for (const [ino, fd] of socketFdsOf(pid)) {
          if (!wanted.has(ino) || owner.has(ino)) continue;
          owner.set(ino, { appId, pid, fd });
          if (owner.size === wanted.size) break scan;
        }
      }
    }
    let n = 0;
    for (const c of candidates) {
      const o = owner.get(c.inode);
      const server = serverEnd.has(c);
      if (!o || (server ? this.d.peerAllowed!(c.src, c.port, c.dst) : this.d.allowed(o.appId, c.dst, c.dport)) !== false) continue;
      let err = this.d.mode === 'pidfd' ? -1 : this.diag.destroy(c);
      if (err !== 0) {
        const alt = shutdownRemote(o.pid, o.fd);
        if (alt === 0) err = 0;
        else if (err === -1) err = alt;
      }
      if (err === 0) {
        n++;
        if (server) this.d.onCut?.(o.appId, c.src, c.port, `${c.dst}:${c.dport}`);
        else this.d.onCut?.(o.appId, c.dst, c.dport);
        this.d.log.info(`policy: cut app ${o.appId}'s connection ${c.src}:${c.port} ${server ? '<-' : '->'} ${c.dst}:${c.dport} (no longer allowed)`);
      } else {
        this.warnOnce(`policy: cannot cut app ${o.appId}'s connection to ${c.dst}:${c.dport}: SOCK_DESTROY (needs CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY) and pidfd_getfd (needs ptrace access) both failed (errno ${err}); it lives until closed`);
      }
    }
    this.cut += n;
    return n;
  }

  private warnOnce(m: string): void {
    if (this.warned) return;
    this.warned = true;
    this.d.log.warn(m);
  }

  close(): void {
    this.diag.close();
  }
}
