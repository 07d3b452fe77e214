// Asks the kernel which TCP sockets exist, by their identity (SO_COOKIE), over
// NETLINK_SOCK_DIAG. The daemon keys every socket it hands out by this cookie
// and learns from here, not from processes or close notes, when the last
// reference to a socket is gone: a service lives exactly as long as its socket.
//
// Protocol: linux/sock_diag.h and linux/inet_diag.h (SOCK_DIAG_BY_FAMILY with
// struct inet_diag_req_v2, answered by a dump of struct inet_diag_msg), the
// interface `ss` uses. Bound sockets that do not listen are dumped with the
// pseudo state TCP_BOUND_INACTIVE (Linux 6.8+); on older kernels they are not
// visible and callers treat them as alive.
import koffi from 'koffi';
import { getsockoptRaw } from './libc';

const lib = koffi.load('libc.so.6');
const c_socket = lib.func('int socket(int, int, int)');
const c_sendto = lib.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)');
const c_recv = lib.func('intptr_t recv(int, _Out_ void *, size_t, int)');
const c_close = lib.func('int close(int)');
const c_setsockopt = lib.func('int setsockopt(int, int, int, const void *, uint32_t)');

const AF_NETLINK = 16;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const SOL_SOCKET = 1;
const SO_COOKIE = 57;
const SO_RCVTIMEO = 20;
const TCP_LISTEN = 10;
/** Pseudo state for bound, non-listening sockets in dumps (Linux 6.8+, include/net/tcp_states.h). */
const TCP_BOUND_INACTIVE = 13;

/** One socket as the kernel reports it. */
export interface DiagSock {
  /** SO_COOKIE, unique for the kernel's lifetime. */
  cookie: bigint;
  /** inode of the socket (0 once no file refers to it). */
  inode: number;
  /** TCP state (10 = LISTEN, 13 = bound, inactive). */
  state: number;
  /** local port */
  port: number;
}

/** The kernel's socket cookie (SO_COOKIE) of `fd`, or 0n when it cannot be read. */
export function socketCookie(fd: number): bigint {
  const b = getsockoptRaw(fd, SOL_SOCKET, SO_COOKIE, 8);
  return typeof b === 'number' || b.length < 8 ? 0n : b.readBigUInt64LE(0);
}

/**
 * A NETLINK_SOCK_DIAG socket kept open for repeated dumps. Every call is
 * synchronous: the kernel fills the first reply buffer while handling the
 * request, and each recv() builds the next one, so nothing blocks for long
 * (a 1 s receive timeout bounds the pathological case).
 */
export class SockDiag {
  private fd = -1;
  private seq = 1;
  private readonly buf = Buffer.alloc(64 * 1024);
  /** Whether the kernel dumps bound, non-listening sockets (TCP_BOUND_INACTIVE). */
  boundInactive = true;

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

  /**
   * Every socket of `protocol` (IPPROTO_TCP = 6, default, or IPPROTO_UDP = 17) and `family`
   * (AF_INET = 2, AF_INET6 = 10) in one of `states` (bit i = TCP state i; UDP sockets are
   * TCP_CLOSE = 7 when unconnected, TCP_ESTABLISHED = 1 when connected) in the caller's
   * network namespace.
   * Throws when the kernel refuses the request.
   */
  dump(family: number, states: number, protocol = IPPROTO_TCP): DiagSock[] {
    const fd = this.open();
    const req = Buffer.alloc(16 + 56);
    req.writeUInt32LE(req.length, 0); // nlmsg_len
    req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
    req.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
    const seq = this.seq++;
    req.writeUInt32LE(seq, 8);
    req.writeUInt8(family, 16); // sdiag_family
    req.writeUInt8(protocol, 17); // sdiag_protocol
    req.writeUInt32LE(states >>> 0, 20); // idiag_states
    const kernel = Buffer.alloc(12);
    kernel.writeUInt16LE(AF_NETLINK, 0);
    if (Number(c_sendto(fd, req, req.length, 0, kernel, 12)) < 0) {
      const e = koffi.errno();
      this.close();
      throw new Error(`sock_diag: send: errno ${e}`);
    }
    const out: DiagSock[] = [];
    for (;;) {
      const n = Number(c_recv(fd, this.buf, this.buf.length, 0));
      if (n <= 0) {
        const e = koffi.errno();
        this.close();
        throw new Error(`sock_diag: recv: errno ${e}`);
      }
      let off = 0;
      while (off + 16 <= n) {
        const len = this.buf.readUInt32LE(off);
        const type = this.buf.readUInt16LE(off + 4);
        const mseq = this.buf.readUInt32LE(off + 8);
        if (len < 16 || off + len > n) break;
        if (mseq === seq) {
          if (type === NLMSG_DONE) return out;
          if (type === NLMSG_ERROR) {
            const err = -this.buf.readInt32LE(off + 16);
            if (err === 0) return out;
            throw new Error(`sock_diag: kernel error ${err}`);
          }
          if (type === SOCK_DIAG_BY_FAMILY && len >= 16 + 72) {
            const m = off + 16;
            const lo = this.buf.readUInt32LE(m + 4 + 40);
            const hi = this.buf.readUInt32LE(m + 4 + 44);
            out.push({
              cookie: (BigInt(hi) << 32n) | BigInt(lo),
              inode: this.buf.readUInt32LE(m + 68),
              state: this.buf[m + 1],
              port: this.buf.readUInt16BE(m + 4),
            });
          }
        }
        off += (len + 3) & ~3;
      }
    }
  }

  /**
   * Cookies of every TCP socket in this namespace that is listening or bound, and
   * of every UDP socket (IPv4 and IPv6). A socket whose cookie is missing here has
   * been closed by its last holder.
   */
  liveCookies(): Set<bigint> {
    const states = (1 << TCP_LISTEN) | (this.boundInactive ? 1 << TCP_BOUND_INACTIVE : 0);
    const live = new Set<bigint>();
    for (const family of [2, 10]) {
      for (const s of this.dump(family, states)) live.add(s.cookie);
      for (const s of this.dump(family, 0xffffffff, IPPROTO_UDP)) live.add(s.cookie);
    }
    return live;
  }
}
