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
import { readdirSync, readlinkSync } from 'node:fs';

const lib = koffi.load('libc.so.6');
const c_socket = lib.func('int socket(int, int, int)');
const c_sendto = lib.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)');
const c_recv = lib.func('intptr_t recv(int, _Out_ void *, size_t, int)');
const c_close = lib.func('int close(int)');
const c_setsockopt = lib.func('int setsockopt(int, int, int, const void *, uint32_t)');
const c_syscall3 = lib.func('long syscall(long, long, long, long)');
const c_shutdown = lib.func('int shutdown(int, int)');
const SYS_pidfd_open = 434;
const SYS_pidfd_getfd = 438;
const SHUT_RDWR = 2;

const AF_NETLINK = 16;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const SOCK_DESTROY = 21;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const IPPROTO_TCP = 6;
const TCP_ESTABLISHED = 1;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;

/** An established TCP connection as the kernel reports it. */
export interface Conn {
  family: number;
  /** local and remote address (dotted IPv4, or IPv6 text; v4-mapped IPv6 given as IPv4) and ports */
  src: string;
  sport: number;
  dst: string;
  dport: number;
  inode: number;
  cookie: bigint;
  /** the raw inet_diag_sockid (48 bytes), to name the socket in SOCK_DESTROY */
  id: Buffer;
}

function ipText(b: Buffer, off: number, family: number): string {
  if (family === 2) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  const w = [];
  for (let i = 0; i < 8; i++) w.push(b.readUInt16BE(off + 2 * i));
  if (w.slice(0, 5).every((x) => x === 0) && w[5] === 0xffff) return `${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  return w.map((x) => x.toString(16)).join(':');
}

/** A NETLINK_SOCK_DIAG socket for dumps of established connections and SOCK_DESTROY. */
export class ConnDiag {
  private fd = -1;
  private seq = 1;
  private readonly buf = Buffer.alloc(64 * 1024);

  private open(): number {
    if (this.fd >= 0) return this.fd;
    const fd = Number(c_socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (fd < 0) throw new Error(`sock_diag: socket(AF_NETLINK): errno ${koffi.errno()}`);
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(1n, 0);
    c_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
    this.fd = fd;
    return fd;
  }

  close(): void {
    if (this.fd >= 0) c_close(this.fd);
    this.fd = -1;
  }

  private send(type: number, flags: number, family: number, states: number, id: Buffer | null): number {
    const fd = this.open();
    const req = Buffer.alloc(16 + 56);
    req.writeUInt32LE(req.length, 0);
    req.writeUInt16LE(type, 4);
    req.writeUInt16LE(flags, 6);
    const seq = this.seq++;
    req.writeUInt32LE(seq, 8);
    req.writeUInt8(family, 16);
    req.writeUInt8(IPPROTO_TCP, 17);
    req.writeUInt32LE(states >>> 0, 20);
    if (id) id.copy(req, 24);
    const kernel = Buffer.alloc(12);
    kernel.writeUInt16LE(AF_NETLINK, 0);
    if (Number(c_sendto(fd, req, req.length, 0, kernel, 12)) < 0) {
      const e = koffi.errno();
      this.close();
      throw new Error(`sock_diag: send: errno ${e}`);
    }
    return seq;
  }

  /** Every established TCP connection of `family` (2 or 10) in the caller's network namespace. */
  established(family: number): Conn[] {
    const seq = this.send(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, 1 << TCP_ESTABLISHED, null);
    const out: Conn[] = [];
    for (;;) {
      const n = Number(c_recv(this.fd, this.buf, this.buf.length, 0));
      if (n <= 0) {
        const e = koffi.errno();
        this.close();
        throw new Error(`sock_diag: recv: errno ${e}`);
      }
      let off = 0;
      while (off + 16 <= n) {
        const len = this.buf.readUInt32LE(off);
        const type = this.buf.readUInt16LE(off + 4);
        if (len < 16 || off + len > n) break;
        if (this.buf.readUInt32LE(off + 8) === seq) {
          if (type === NLMSG_DONE) return out;
          if (type === NLMSG_ERROR) {
            const err = -this.buf.readInt32LE(off + 16);
            if (err === 0) return out;
            throw new Error(`sock_diag: kernel error ${err}`);
          }
          if (type === SOCK_DIAG_BY_FAMILY && len >= 16 + 72) {
            const m = off + 16;
            const fam = this.buf[m];
            const lo = this.buf.readUInt32LE(m + 44);
            const hi = this.buf.readUInt32LE(m + 48);
            out.push({
              family: fam,
              sport: this.buf.readUInt16BE(m + 4),
              dport: this.buf.readUInt16BE(m + 6),
              src: ipText(this.buf, m + 8, fam),
              dst: ipText(this.buf, m + 24, fam),
              inode: this.buf.readUInt32LE(m + 68),
              cookie: (BigInt(hi) << 32n) | BigInt(lo),
              id: Buffer.from(this.buf.subarray(m + 4, m + 52)),
            });
          }
        }
        off += (len + 3) & ~3;
      }
    }
  }

  /** Destroys one connection (SOCK_DESTROY). Returns 0 or the kernel's errno (EPERM, EOPNOTSUPP, ENOENT). */
  destroy(c: Conn): number {
    const seq = this.send(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, c.family, 0xffffffff, c.id);
    for (;;) {
      const n = Number(c_recv(this.fd, this.buf, this.buf.length, 0));
      if (n <= 0) {
        const e = koffi.errno();
        this.close();
        return e || 110;
      }
      let off = 0;
      while (off + 16 <= n) {
        const len = this.buf.readUInt32LE(off);
        if (len < 16 || off + len > n) break;
        if (this.buf.readUInt32LE(off + 8) === seq && this.buf.readUInt16LE(off + 4) === NLMSG_ERROR) return -this.buf.readInt32LE(off + 16);
        off += (len + 3) & ~3;
      }
    }
  }
}

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

/** Socket inodes held by process `pid` (its /proc/PID/fd links "socket:[N]"); empty if unreadable. */
export function socketInodesOf(pid: number): number[] {
  const out: number[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const l = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (l.startsWith('socket:[')) out.push(Number(l.slice(8, -1)));
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
  log: { warn(m: string): void; info(m: string): void; debug(m: string): void };
  /** Called for each connection cut: the app, and the real destination it was connected to. */
  onCut?: (appId: string, dst: string, dport: number) => void;
  /** 'auto' (default): SOCK_DESTROY, then pidfd_getfd + shutdown; 'pidfd': only the latter. */
  mode?: 'auto' | 'pidfd';
}

/**
 * Cuts this host's established connections that policy no longer allows.
 * Returns how many were cut.
 */
export class Revoker {
  private readonly diag = new ConnDiag();
  private warned = false;
  cut = 0;

  constructor(private readonly d: RevokeDeps) {}

  /** One pass over every established connection of this host's apps. */
  sweep(): number {
    const owner = new Map<number, string>();
    const holder = new Map<number, { pid: number; fd: number }>();
    for (const [appId, pids] of this.d.pids()) {
      for (const pid of pids) {
        for (const [ino, fd] of socketFdsOf(pid)) {
          owner.set(ino, appId);
          holder.set(ino, { pid, fd });
        }
      }
    }
    if (owner.size === 0) return 0;
    let n = 0;
    for (const family of [2, 10]) {
      let conns: Conn[];
      try {
        conns = this.diag.established(family);
      } catch (e) {
        this.warnOnce(`revocation: cannot list connections (${(e as Error).message})`);
        return n;
      }
      for (const c of conns) {
        const appId = owner.get(c.inode);
        if (!appId || this.d.allowed(appId, c.dst, c.dport) !== false) continue;
        let err = this.d.mode === 'pidfd' ? -1 : this.diag.destroy(c);
        if (err !== 0) {
          const h = holder.get(c.inode);
          const alt = h ? shutdownRemote(h.pid, h.fd) : -1;
          if (alt === 0) err = 0;
          else if (err === -1) err = alt;
        }
        if (err === 0) {
          n++;
          this.d.onCut?.(appId, c.dst, c.dport);
          this.d.log.info(`policy: cut app ${appId}'s connection ${c.src}:${c.sport} -> ${c.dst}:${c.dport} (no longer allowed)`);
        } else {
          this.warnOnce(`policy: cannot cut app ${appId}'s connection to ${c.dst}:${c.dport}: SOCK_DESTROY (needs CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY) and pidfd_getfd (needs ptrace access) both failed (errno ${err}); it lives until closed`);
        }
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
