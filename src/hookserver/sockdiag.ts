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
const SOCK_DESTROY = 21;
const NLM_F_ACK = 0x4;
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
  /** AF_INET (2) or AF_INET6 (10), and IPPROTO_TCP (6) or IPPROTO_UDP (17) */
  family: number;
  protocol: number;
  /** local and remote address (dotted IPv4, or IPv6 text; v4-mapped IPv6 given as IPv4), remote port */
  src: string;
  dst: string;
  dport: number;
  /** the raw struct inet_diag_sockid (48 bytes): names the socket in SOCK_DESTROY */
  id: Buffer;
}

/** An address of an inet_diag_sockid as text (v4-mapped IPv6 as IPv4). */
function ipText(b: Buffer, off: number, family: number): string {
  if (family === 2) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  const w = [];
  for (let i = 0; i < 8; i++) w.push(b.readUInt16BE(off + 2 * i));
  if (w.slice(0, 5).every((x) => x === 0) && w[5] === 0xffff) return `${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  return w.map((x) => x.toString(16)).join(':');
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

  /** Sends one inet_diag_req_v2 (linux/inet_diag.h); returns its sequence number. */
  private request(type: number, flags: number, family: number, protocol: number, states: number, id: Buffer | null): number {
    const fd = this.open();
    const req = Buffer.alloc(16 + 56);
    req.writeUInt32LE(req.length, 0); // nlmsg_len
    req.writeUInt16LE(type, 4);
    req.writeUInt16LE(flags, 6);
    const seq = this.seq++;
    req.writeUInt32LE(seq, 8);
    req.writeUInt8(family, 16); // sdiag_family
    req.writeUInt8(protocol, 17); // sdiag_protocol
    req.writeUInt32LE(states >>> 0, 20); // idiag_states
    if (id) id.copy(req, 24); // struct inet_diag_sockid
    const kernel = Buffer.alloc(12);
    kernel.writeUInt16LE(AF_NETLINK, 0);
    if (Number(c_sendto(fd, req, req.length, 0, kernel, 12)) < 0) {
      const e = koffi.errno();
      this.close();
      throw new Error(`sock_diag: send: errno ${e}`);
    }
    return seq;
  }

  /**
   * Reads the answers to request `seq` until NLMSG_DONE or NLMSG_ERROR, handing each
   * SOCK_DIAG_BY_FAMILY message (offset of its payload, length) to `each`. Returns 0,
   * or the kernel's errno from NLMSG_ERROR. Throws when the socket fails.
   */
  private answers(seq: number, each: (m: number, len: number) => void): number {
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
          if (type === NLMSG_DONE) return 0;
          if (type === NLMSG_ERROR) return -this.buf.readInt32LE(off + 16);
          if (type === SOCK_DIAG_BY_FAMILY && len >= 16 + 72) each(off + 16, len);
        }
        off += (len + 3) & ~3;
      }
    }
  }

  /**
   * Every socket of `protocol` (IPPROTO_TCP = 6, default, or IPPROTO_UDP = 17) and `family`
   * (AF_INET = 2, AF_INET6 = 10) in one of `states` (bit i = TCP state i; UDP sockets are
   * TCP_CLOSE = 7 when unconnected, TCP_ESTABLISHED = 1 when connected) in the caller's
   * network namespace (struct inet_diag_msg).
   * Throws when the kernel refuses the request.
   */
  dump(family: number, states: number, protocol = IPPROTO_TCP): DiagSock[] {
    const out: DiagSock[] = [];
    const b = this.buf;
    const err = this.answers(this.request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, protocol, states, null), (m) => {
      const fam = b[m];
      out.push({
        cookie: (BigInt(b.readUInt32LE(m + 48)) << 32n) | BigInt(b.readUInt32LE(m + 44)),
        inode: b.readUInt32LE(m + 68),
        state: b[m + 1],
        port: b.readUInt16BE(m + 4),
        family: fam,
        protocol,
        dport: b.readUInt16BE(m + 6),
        src: ipText(b, m + 8, fam),
        dst: ipText(b, m + 24, fam),
        id: Buffer.from(b.subarray(m + 4, m + 52)),
      });
    });
    if (err !== 0) throw new Error(`sock_diag: kernel error ${err}`);
    return out;
  }

  /**
   * Destroys one socket from a dump (SOCK_DESTROY: the kernel aborts it, its owner's next
   * call gets ECONNABORTED, a TCP peer a RST). Needs CAP_NET_ADMIN and
   * CONFIG_INET_DIAG_DESTROY. Returns 0 or the errno (EPERM, EOPNOTSUPP, ENOENT, ...).
   */
  destroy(s: DiagSock): number {
    try {
      return this.answers(this.request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, s.family, s.protocol, 0xffffffff, s.id), () => {});
    } catch {
      return koffi.errno() || 110;
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
