// The few libc calls Node cannot make: raw socket creation, bind/connect on an
// fd we own, and sendmsg() with SCM_RIGHTS. Called through koffi.
import koffi from 'koffi';
import { AF_INET, AF_INET6, type Addr } from '../common/addr';
import { formatIpv6, parseIpv6 } from './proto';

const lib = koffi.load('libc.so.6');

export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const SO_PEERCRED = 17;
const IPPROTO_IP = 0;
const IP_BIND_ADDRESS_NO_PORT = 24;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const SCM_RIGHTS = 1;
const MSG_NOSIGNAL = 0x4000;
const MSG_DONTWAIT = 0x40;

const c_socket = lib.func('int socket(int, int, int)');
const c_bind = lib.func('int bind(int, const void *, uint32_t)');
const c_connect = lib.func('int connect(int, const void *, uint32_t)');
const c_listen = lib.func('int listen(int, int)');
const c_close = lib.func('int close(int)');
const c_getsockname = lib.func('int getsockname(int, _Out_ void *, _Inout_ uint32_t *)');
const c_setsockopt = lib.func('int setsockopt(int, int, int, const void *, uint32_t)');
const c_getsockopt = lib.func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)');
const c_sendmsg = lib.func('intptr_t sendmsg(int, const void *, int)');
const c_send = lib.func('intptr_t send(int, const void *, size_t, int)');
const c_strerror = lib.func('const char *strerror(int)');
const c_getrlimit = lib.func('int getrlimit(int, _Out_ void *)');
const RLIMIT_NOFILE = 7;
const c_sysconf = lib.func('long sysconf(int)');
const SC_CLK_TCK = 2;

/** A failed libc call: which call and its errno. */
export class SysError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${c_strerror(errno)} (errno ${errno})`);
  }
}

/** The process's soft RLIMIT_NOFILE (Infinity when unlimited, 1024 if it cannot be read). */
export function nofileLimit(): number {
  const b = Buffer.alloc(16);
  if (Number(c_getrlimit(RLIMIT_NOFILE, b)) !== 0) return 1024;
  const cur = b.readBigUInt64LE(0);
  return cur >= 0xffffffffn ? Infinity : Number(cur);
}

let clkTck = 0;
/** Clock ticks per second (sysconf(_SC_CLK_TCK)), the unit of /proc/PID/stat start times. */
export function clockTicks(): number {
  if (clkTck === 0) {
    const n = Number(c_sysconf(SC_CLK_TCK));
    clkTck = n > 0 ? n : 100;
  }
  return clkTck;
}

/** The text of an errno (libc's strerror). */
export function strerror(errno: number): string {
  return c_strerror(errno) as string;
}

/** Encodes an address as struct sockaddr_in / sockaddr_in6 of the requested family. */
export function sockaddr(a: Addr, family: number = a.family): Buffer {
  if (family === AF_INET) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(a.port, 2);
    const ip = a.ip.startsWith('::ffff:') ? a.ip.slice(7) : a.ip;
    ip.split('.').forEach((p, i) => (b[4 + i] = Number(p)));
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(a.port, 2);
  const ip = a.family === AF_INET ? `::ffff:${a.ip}` : a.ip;
  parseIpv6(ip).copy(b, 8);
  return b;
}

/** Decodes struct sockaddr_in / sockaddr_in6; null for other families. */
export function parseSockaddr(b: Buffer): Addr | null {
  const family = b.readUInt16LE(0);
  if (family === AF_INET) return { family, port: b.readUInt16BE(2), ip: `${b[4]}.${b[5]}.${b[6]}.${b[7]}` };
  if (family === AF_INET6) return { family, port: b.readUInt16BE(2), ip: formatIpv6(b.subarray(8, 24)) };
  return null;
}

function check(call: string, rc: number | bigint): number {
  const n = Number(rc);
  if (n < 0) throw new SysError(call, koffi.errno());
  return n;
}

/** A new non-blocking, close-on-exec TCP socket. */
export function tcpSocket(family: number): number {
  return check('socket', c_socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

/** A non-blocking, close-on-exec UDP socket of `family`. Throws SysError. */
export function udpSocket(family: number): number {
  return check('socket', c_socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

/** SO_REUSEADDR, and SO_REUSEPORT when the app asked for it. */
export function setReuse(fd: number, reusePort: boolean): void {
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  check('setsockopt(SO_REUSEADDR)', c_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4));
  if (reusePort) check('setsockopt(SO_REUSEPORT)', c_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, one, 4));
}

/** IPV6_V6ONLY on or off (explicitly: the host's default may differ). */
export function setV6Only(fd: number, on: boolean): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(on ? 1 : 0);
  check('setsockopt(IPV6_V6ONLY)', c_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v, 4));
}

/** bind() to `a`, encoded in `family` (IPv4 v4-mapped for AF_INET6); throws SysError. */
export function bind(fd: number, a: Addr, family: number): void {
  const sa = sockaddr(a, family);
  check('bind', c_bind(fd, sa, sa.length));
}

/**
 * Binds a client socket to a source address, leaving the port to connect()
 * (IP_BIND_ADDRESS_NO_PORT, so ports are shared across destinations).
 */
export function bindNoPort(fd: number, a: Addr, family: number): void {
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  c_setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, one, 4);
  bind(fd, a, family);
}

/** listen(); throws SysError. */
export function listen(fd: number, backlog: number): void {
  check('listen', c_listen(fd, backlog));
}

/** Starts a connect; returns 0 when connected at once, else the errno (EINPROGRESS, ...). */
export function connect(fd: number, a: Addr, family: number): number {
  const sa = sockaddr(a, family);
  const rc = c_connect(fd, sa, sa.length) as number;
  return rc === 0 ? 0 : koffi.errno();
}

/** The socket's local address; throws SysError. */
export function getsockname(fd: number): Addr | null {
  const b = Buffer.alloc(28);
  const len = [28];
  check('getsockname', c_getsockname(fd, b, len));
  return parseSockaddr(b);
}

/** close(); errors ignored (the fd is gone either way on Linux). */
export function close(fd: number): void {
  c_close(fd);
}

/** Credentials of the process at the other end of a unix socket. */
export function peerCred(fd: number): { pid: number; uid: number; gid: number } {
  const r = getsockoptRaw(fd, SOL_SOCKET, SO_PEERCRED, 12);
  if (typeof r === 'number') throw new SysError('getsockopt(SO_PEERCRED)', r);
  return { pid: r.readInt32LE(0), uid: r.readUInt32LE(4), gid: r.readUInt32LE(8) };
}

/**
 * getsockopt(fd, level, name) into a buffer of `size` bytes: the bytes the
 * kernel wrote (a Buffer of that length), or the errno when it refused.
 */
export function getsockoptRaw(fd: number, level: number, name: number, size: number): Buffer | number {
  const b = Buffer.alloc(size);
  const len = [size];
  if (Number(c_getsockopt(fd, level, name, b, len)) < 0) return koffi.errno();
  return b.subarray(0, len[0]);
}

// struct msghdr and the control message are laid out by hand in one reusable
// buffer; koffi passes its address. Layout (x86_64/aarch64, LP64):
//   msghdr { void *name; u32 namelen; pad; iovec *iov; size_t iovlen;
//            void *control; size_t controllen; int flags; pad }      = 56 bytes
//   iovec  { void *base; size_t len }                                = 16 bytes
//   cmsghdr{ size_t len; int level; int type; int fd; pad }           = 24 bytes
const MSGHDR = 0;
const IOVEC = 56;
const CMSG = 72;
const FRAME = 96;
const scratch = Buffer.alloc(FRAME);
const scratchAddr = BigInt(koffi.address(scratch) as unknown as bigint);

/**
 * Sends `data` on unix socket `sock`, with `fd` attached as SCM_RIGHTS when >= 0.
 * Non-blocking; returns 0 or the errno.
 */
export function sendWithFd(sock: number, data: Buffer, fd: number): number {
  if (fd < 0) {
    const rc = Number(c_send(sock, data, data.length, MSG_NOSIGNAL | MSG_DONTWAIT));
    if (rc < 0) return koffi.errno();
    return rc === data.length ? 0 : 11;
  }
  const dataAddr = BigInt(koffi.address(data) as unknown as bigint);
  scratch.fill(0);
  scratch.writeBigUInt64LE(scratchAddr + BigInt(IOVEC), MSGHDR + 16); // msg_iov
  scratch.writeBigUInt64LE(1n, MSGHDR + 24); // msg_iovlen
  if (fd >= 0) {
    scratch.writeBigUInt64LE(scratchAddr + BigInt(CMSG), MSGHDR + 32); // msg_control
    scratch.writeBigUInt64LE(24n, MSGHDR + 40); // msg_controllen = CMSG_SPACE(4)
    scratch.writeBigUInt64LE(20n, CMSG); // cmsg_len = CMSG_LEN(4)
    scratch.writeInt32LE(SOL_SOCKET, CMSG + 8);
    scratch.writeInt32LE(SCM_RIGHTS, CMSG + 12);
    scratch.writeInt32LE(fd, CMSG + 16);
  }
  scratch.writeBigUInt64LE(dataAddr, IOVEC);
  scratch.writeBigUInt64LE(BigInt(data.length), IOVEC + 8);
  const rc = Number(c_sendmsg(sock, scratch, MSG_NOSIGNAL | MSG_DONTWAIT));
  if (rc < 0) return koffi.errno();
  if (rc !== data.length) return 11; // EAGAIN: a short write on a 384-byte message means the peer is not reading
  return 0;
}
