// Mirror of native/ax_proto.h. Keep in step with the header: the Layout table
// below is what encode/decode use, and test/proto-layout.test.ts compares it
// (and every constant here) with what native/build/proto-layout, compiled from
// the header, prints.
import { AF_INET, AF_INET6, type Addr } from '../common/addr';

export const AX_MAGIC = 0x31305841;
export const AX_MSG_SIZE = 384;
export const AX_NAME_MAX = 256;

export const Op = {
  HELLO: 1,
  BIND: 2,
  LISTEN: 3,
  CONNECT: 4,
  CLOSE: 5,
  RESOLVE: 6,
  REVERSE: 8,
  LOOKUP: 11,
  ACCEPT: 12,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];
const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
export function opName(op: number): string {
  return OP_NAMES.get(op) ?? `op#${op}`;
}

export const Status = { OK: 0, NATIVE: 1, PENDING: 2, ERR: 3, DIRECT: 4 } as const;

export const HelloFlag = { DIRECT: 0x1, FOREIGN: 0x2 } as const;

/** reply.flags */
export const ReplyFlag = { CACHE: 0x1, LOCAL: 0x2 } as const;
/** LOOKUP reply.arg (AX_LK_*): what the socket is to ax. */
export const Lookup = { BOUND: 1, LISTEN: 2, CONN: 3, ACCEPTED: 4 } as const;
/** The identity map file (struct ax_map_hdr, ax_map_ent). */
export const MapConst = { MAGIC: 0x504d5841, VERSION: 2, RANGES: 4, F_ACCEPT: 0x1, F_EGRESS: 0x2 } as const;
/** Backends in one cacheable DIRECT answer (struct ax_cache_answer). */
export const CACHE_MAX = 10;

export const BindFlag = { V6ONLY: 0x1, REUSEPORT: 0x2, AUTOBIND: 0x4, DGRAM: 0x8, REUSEADDR: 0x10 } as const;
export const ConnectFlag = { NONBLOCK: 0x1, WAIT: 0x2, DGRAM: 0x4, SENDTO: 0x8, HOST: 0x10 } as const;

/** Environment passed from `ax run` to the hooked program (AX_ENV_* in the header). */
export const Env = {
  SOCK: 'AX_HOOK_SOCK',
  APP: 'AX_APP',
  WAIT: 'AX_CONNECT_WAIT_MS',
  FAIL: 'AX_FAIL_MODE',
  DEBUG: 'AX_HOOK_DEBUG',
  /** bound in ms on every wait of one hook call for the daemon, then the fail mode applies */
  DAEMON_WAIT: 'AX_DAEMON_WAIT_MS',
} as const;
/** The hook's bound on waiting for the daemon when AX_DAEMON_WAIT_MS is not set. */
export const DAEMON_WAIT_DEFAULT_MS = 1000;

/** One field of a wire struct: byte offset within its struct and size in bytes. */
export interface Field {
  readonly off: number;
  readonly size: number;
  /** set on the members of struct ax_msg's payload union: they overlap */
  readonly union?: true;
}

const ADDR_SIZE_ = 24;
const CACHE_ANSWER_SIZE_ = 16 + ADDR_SIZE_ * CACHE_MAX;

/**
 * The byte layout of the wire structs (little endian), exactly as in
 * native/ax_proto.h.  encode/decode read and write through this table only.
 */
export const Layout = {
  ax_addr: {
    size: ADDR_SIZE_,
    fields: {
      family: { off: 0, size: 2 },
      port: { off: 2, size: 2 },
      scope_id: { off: 4, size: 4 },
      ip: { off: 8, size: 16 },
    },
  },
  ax_cache_answer: {
    size: CACHE_ANSWER_SIZE_,
    fields: {
      generation: { off: 0, size: 4 },
      n_backends: { off: 4, size: 4 },
      local_mask: { off: 8, size: 4 },
      reserved: { off: 12, size: 4 },
      backends: { off: 16, size: ADDR_SIZE_ * CACHE_MAX },
    },
  },
  ax_lookup: {
    size: 8,
    fields: {
      cookie: { off: 0, size: 8 },
    },
  },
  ax_map_hdr: {
    size: 72,
    fields: {
      generation: { off: 0, size: 4 },
      magic: { off: 4, size: 4 },
      version: { off: 8, size: 4 },
      src_base: { off: 12, size: 4 },
      src_count: { off: 16, size: 4 },
      dns_ip: { off: 20, size: 4 },
      dns_port: { off: 24, size: 4 },
      n_ranges: { off: 28, size: 4 },
      ranges: { off: 32, size: 32 },
      flags: { off: 64, size: 4 },
      reserved: { off: 68, size: 4 },
    },
  },
  ax_map_ent: {
    size: 8,
    fields: {
      vip: { off: 0, size: 4 },
      reserved: { off: 4, size: 4 },
    },
  },
  ax_msg: {
    size: AX_MSG_SIZE,
    fields: {
      magic: { off: 0, size: 4 },
      op: { off: 4, size: 2 },
      flags: { off: 6, size: 2 },
      seq: { off: 8, size: 4 },
      status: { off: 12, size: 4 },
      err: { off: 16, size: 4 },
      sock: { off: 20, size: 4 },
      arg: { off: 24, size: 4 },
      pid: { off: 28, size: 4 },
      a: { off: 32, size: ADDR_SIZE_ },
      b: { off: 56, size: ADDR_SIZE_ },
      name: { off: 80, size: AX_NAME_MAX, union: true },
      cache: { off: 80, size: CACHE_ANSWER_SIZE_, union: true },
      lookup: { off: 80, size: 8, union: true },
      payload: { off: 80, size: AX_MSG_SIZE - 80, union: true },
    },
  },
} as const satisfies Record<string, { size: number; fields: Record<string, Field> }>;

const M = Layout.ax_msg.fields;
const A = Layout.ax_addr.fields;
const C = Layout.ax_cache_answer.fields;
const L = Layout.ax_lookup.fields;

/** Byte offsets of struct ax_msg fields (from Layout). */
export const Off = Object.fromEntries(Object.entries(M).map(([k, f]) => [k, f.off])) as {
  readonly [K in keyof typeof M]: number;
};
export const ADDR_SIZE = Layout.ax_addr.size;

/** An address with its IPv6 scope id (struct ax_addr.scope_id; 0 / absent for none). */
export type WireAddr = Addr & { scopeId?: number };

/** The payload of a cacheable DIRECT answer (struct ax_cache_answer). */
export interface CacheAnswer {
  /** valid while the daemon's generation file holds this value */
  generation: number;
  /** every backend the client may use (1..CACHE_MAX), taken round robin */
  backends: Addr[];
  /** bit i: backends[i] is on this host (the hook binds the app's source address first) */
  localMask?: number;
}

export interface Msg {
  op: number;
  seq: number;
  status: number;
  err: number;
  sock: number;
  arg: number;
  pid: number;
  a: WireAddr | null;
  b: WireAddr | null;
  /** the payload as text (HELLO, RESOLVE, REVERSE); '' when the payload is a cache answer */
  name: string;
  /** reply.flags (ReplyFlag) */
  flags?: number;
  /** the payload of a cacheable DIRECT answer (flags ReplyFlag.CACHE) */
  cache?: CacheAnswer;
  /** LOOKUP request: the socket's SO_COOKIE */
  cookie?: bigint;
}

export class ProtocolError extends Error {}

function readAddr(buf: Buffer, off: number): WireAddr | null {
  const family = buf.readUInt16LE(off + A.family.off);
  if (family === 0) return null;
  const port = buf.readUInt16LE(off + A.port.off);
  const ip = off + A.ip.off;
  if (family === AF_INET) {
    return { family, port, ip: `${buf[ip]}.${buf[ip + 1]}.${buf[ip + 2]}.${buf[ip + 3]}` };
  }
  if (family === AF_INET6) {
    const a: WireAddr = { family, port, ip: formatIpv6(buf.subarray(ip, ip + A.ip.size)) };
    const scopeId = buf.readUInt32LE(off + A.scope_id.off);
    if (scopeId !== 0) a.scopeId = scopeId;
    return a;
  }
  throw new ProtocolError(`address family ${family} is not AF_INET or AF_INET6`);
}

function writeAddr(buf: Buffer, off: number, a: WireAddr | null): void {
  buf.fill(0, off, off + ADDR_SIZE);
  if (!a) return;
  buf.writeUInt16LE(a.family, off + A.family.off);
  buf.writeUInt16LE(a.port, off + A.port.off);
  if (a.family === AF_INET) {
    writeIpv4(buf, off + A.ip.off, a.ip);
  } else {
    parseIpv6(a.ip).copy(buf, off + A.ip.off);
    if (a.scopeId) buf.writeUInt32LE(a.scopeId, off + A.scope_id.off);
  }
}

/** Writes dotted-quad `ip` as 4 bytes at `off` (no intermediate arrays: hot path). */
function writeIpv4(buf: Buffer, off: number, ip: string): void {
  let v = 0;
  let k = 0;
  for (let i = 0; i < ip.length && k < 4; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      buf[off + k++] = v;
      v = 0;
    } else {
      v = v * 10 + (c - 48);
    }
  }
  if (k < 4) buf[off + k] = v;
}

/** Formats 16 bytes as the canonical (RFC 5952) text form, v4-mapped as ::ffff:a.b.c.d. */
export function formatIpv6(raw: Buffer): string {
  let mapped = true;
  for (let i = 0; i < 10; i++) if (raw[i] !== 0) mapped = false;
  if (mapped && raw[10] === 0xff && raw[11] === 0xff) return `::ffff:${raw[12]}.${raw[13]}.${raw[14]}.${raw[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(raw.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function parseIpv6(ip: string): Buffer {
  const out = Buffer.alloc(16);
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  const tail: number[] = [];
  if (v4) {
    const p = v4[1].split('.').map(Number);
    tail.push((p[0] << 8) | p[1], (p[2] << 8) | p[3]);
    text = text.slice(0, -v4[1].length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const hw = head ? head.split(':').filter((s) => s !== '').map((h) => parseInt(h, 16)) : [];
  const rw = rest !== undefined && rest !== '' ? rest.split(':').filter((s) => s !== '').map((h) => parseInt(h, 16)) : [];
  const words = new Array<number>(8).fill(0);
  hw.forEach((w, i) => (words[i] = w));
  const back = [...rw, ...tail];
  back.forEach((w, i) => (words[8 - back.length + i] = w));
  if (rest === undefined) tail.forEach((w, i) => (words[hw.length + i] = w));
  words.forEach((w, i) => out.writeUInt16BE(w & 0xffff, i * 2));
  return out;
}

function readCache(buf: Buffer): CacheAnswer {
  const base = M.cache.off;
  const n = buf.readUInt32LE(base + C.n_backends.off);
  if (n < 1 || n > CACHE_MAX) throw new ProtocolError(`cache answer with ${n} backends (1..${CACHE_MAX})`);
  const backends: Addr[] = [];
  for (let i = 0; i < n; i++) {
    const a = readAddr(buf, base + C.backends.off + i * ADDR_SIZE);
    if (!a) throw new ProtocolError(`cache answer backend ${i} has no address`);
    backends.push(a);
  }
  const localMask = buf.readUInt32LE(base + C.local_mask.off);
  const c: CacheAnswer = { generation: buf.readUInt32LE(base + C.generation.off), backends };
  if (localMask !== 0) c.localMask = localMask;
  return c;
}

function writeCache(out: Buffer, c: CacheAnswer): void {
  const base = M.cache.off;
  if (c.backends.length < 1 || c.backends.length > CACHE_MAX) {
    throw new ProtocolError(`cache answer with ${c.backends.length} backends (1..${CACHE_MAX})`);
  }
  out.writeUInt32LE(c.generation >>> 0, base + C.generation.off);
  out.writeUInt32LE(c.backends.length, base + C.n_backends.off);
  out.writeUInt32LE((c.localMask ?? 0) >>> 0, base + C.local_mask.off);
  c.backends.forEach((a, i) => writeAddr(out, base + C.backends.off + i * ADDR_SIZE, a));
}

/** Decodes one message; throws ProtocolError on anything malformed. */
export function decode(buf: Buffer): Msg {
  if (buf.length !== AX_MSG_SIZE) throw new ProtocolError(`message of ${buf.length} bytes, expected ${AX_MSG_SIZE}`);
  const magic = buf.readUInt32LE(M.magic.off);
  if (magic !== AX_MAGIC) throw new ProtocolError(`bad magic 0x${magic.toString(16)}`);
  const op = buf.readUInt16LE(M.op.off);
  if (!OP_NAMES.has(op)) throw new ProtocolError(`unknown op ${op}`);
  const flags = buf.readUInt16LE(M.flags.off);
  const m: Msg = {
    op,
    seq: buf.readUInt32LE(M.seq.off),
    status: buf.readInt32LE(M.status.off),
    err: buf.readInt32LE(M.err.off),
    sock: buf.readUInt32LE(M.sock.off),
    arg: buf.readInt32LE(M.arg.off),
    pid: buf.readUInt32LE(M.pid.off),
    a: readAddr(buf, M.a.off),
    b: readAddr(buf, M.b.off),
    name: '',
  };
  if (flags !== 0) m.flags = flags;
  if (flags & ReplyFlag.CACHE) {
    m.cache = readCache(buf);
  } else if (op === Op.LOOKUP) {
    m.cookie = buf.readBigUInt64LE(M.lookup.off + L.cookie.off);
  } else {
    const nameEnd = buf.indexOf(0, M.name.off);
    if (nameEnd < 0 || nameEnd >= M.name.off + M.name.size) throw new ProtocolError('name is not NUL terminated');
    m.name = buf.toString('utf8', M.name.off, nameEnd);
  }
  return m;
}

export function encode(m: Partial<Msg> & { op: number }, out: Buffer = Buffer.alloc(AX_MSG_SIZE)): Buffer {
  out.fill(0);
  out.writeUInt32LE(AX_MAGIC, M.magic.off);
  out.writeUInt16LE(m.op, M.op.off);
  out.writeUInt32LE(m.seq ?? 0, M.seq.off);
  out.writeInt32LE(m.status ?? 0, M.status.off);
  out.writeInt32LE(m.err ?? 0, M.err.off);
  out.writeUInt32LE(m.sock ?? 0, M.sock.off);
  out.writeInt32LE(m.arg ?? 0, M.arg.off);
  out.writeUInt32LE(m.pid ?? 0, M.pid.off);
  writeAddr(out, M.a.off, m.a ?? null);
  writeAddr(out, M.b.off, m.b ?? null);
  let flags = m.flags ?? 0;
  if (m.cache) {
    if (m.name) throw new ProtocolError('a message carries a name or a cache answer, not both');
    flags |= ReplyFlag.CACHE;
    writeCache(out, m.cache);
  } else if (flags & ReplyFlag.CACHE) {
    throw new ProtocolError('flag CACHE without a cache answer');
  } else if (m.cookie !== undefined) {
    out.writeBigUInt64LE(m.cookie, M.lookup.off + L.cookie.off);
  } else if (m.name) {
    const n = Buffer.from(m.name, 'utf8');
    if (n.length >= AX_NAME_MAX) throw new ProtocolError('name too long');
    n.copy(out, M.name.off);
  }
  if (flags) out.writeUInt16LE(flags, M.flags.off);
  return out;
}
