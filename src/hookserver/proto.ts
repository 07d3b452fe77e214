// Mirror of native/ax_proto.h. Keep in step with the header; test/proto.test.ts
// compiles a C program that prints the header's sizes and offsets and compares.
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
  PEER: 7,
  REVERSE: 8,
  CONNECTED: 9,
  CONNECTING: 10,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];
const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
export function opName(op: number): string {
  return OP_NAMES.get(op) ?? `op#${op}`;
}

export const Status = { OK: 0, NATIVE: 1, PENDING: 2, ERR: 3, DIRECT: 4 } as const;

export const HelloFlag = { DIRECT: 0x1 } as const;

/** reply.flags */
export const ReplyFlag = { CACHE: 0x1 } as const;
/** Backends in one cacheable DIRECT answer (carried in the name field). */
export const CACHE_MAX = 10;

export const BindFlag = { V6ONLY: 0x1, REUSEPORT: 0x2, AUTOBIND: 0x4 } as const;
export const ConnectFlag = { NONBLOCK: 0x1, WAIT: 0x2 } as const;

/** Byte offsets of struct ax_msg fields. */
export const Off = {
  magic: 0,
  op: 4,
  flags: 6,
  seq: 8,
  status: 12,
  err: 16,
  sock: 20,
  arg: 24,
  pid: 28,
  a: 32,
  b: 56,
  name: 80,
  pad: 336,
} as const;
export const ADDR_SIZE = 24;

export interface Msg {
  op: number;
  seq: number;
  status: number;
  err: number;
  sock: number;
  arg: number;
  pid: number;
  a: Addr | null;
  b: Addr | null;
  name: string;
  /** reply.flags (ReplyFlag) */
  flags?: number;
  /** addresses packed into the name field instead of text (cacheable DIRECT answers) */
  addrs?: Addr[];
}

export class ProtocolError extends Error {}

function readAddr(buf: Buffer, off: number): Addr | null {
  const family = buf.readUInt16LE(off);
  if (family === 0) return null;
  const port = buf.readUInt16LE(off + 2);
  if (family === AF_INET) {
    return { family, port, ip: `${buf[off + 8]}.${buf[off + 9]}.${buf[off + 10]}.${buf[off + 11]}` };
  }
  if (family === AF_INET6) {
    const raw = buf.subarray(off + 8, off + 24);
    return { family, port, ip: formatIpv6(raw) };
  }
  throw new ProtocolError(`address family ${family} is not AF_INET or AF_INET6`);
}

function writeAddr(buf: Buffer, off: number, a: Addr | null): void {
  buf.fill(0, off, off + ADDR_SIZE);
  if (!a) return;
  buf.writeUInt16LE(a.family, off);
  buf.writeUInt16LE(a.port, off + 2);
  if (a.family === AF_INET) {
    writeIpv4(buf, off + 8, a.ip);
  } else {
    parseIpv6(a.ip).copy(buf, off + 8);
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

/** Decodes one message; throws ProtocolError on anything malformed. */
export function decode(buf: Buffer): Msg {
  if (buf.length !== AX_MSG_SIZE) throw new ProtocolError(`message of ${buf.length} bytes, expected ${AX_MSG_SIZE}`);
  const magic = buf.readUInt32LE(Off.magic);
  if (magic !== AX_MAGIC) throw new ProtocolError(`bad magic 0x${magic.toString(16)}`);
  const op = buf.readUInt16LE(Off.op);
  if (!OP_NAMES.has(op)) throw new ProtocolError(`unknown op ${op}`);
  const nameEnd = buf.indexOf(0, Off.name);
  if (nameEnd < 0 || nameEnd >= Off.pad) throw new ProtocolError('name is not NUL terminated');
  return {
    op,
    seq: buf.readUInt32LE(Off.seq),
    status: buf.readInt32LE(Off.status),
    err: buf.readInt32LE(Off.err),
    sock: buf.readUInt32LE(Off.sock),
    arg: buf.readInt32LE(Off.arg),
    pid: buf.readUInt32LE(Off.pid),
    a: readAddr(buf, Off.a),
    b: readAddr(buf, Off.b),
    name: buf.toString('utf8', Off.name, nameEnd),
  };
}

export function encode(m: Partial<Msg> & { op: number }, out: Buffer = Buffer.alloc(AX_MSG_SIZE)): Buffer {
  out.fill(0);
  out.writeUInt32LE(AX_MAGIC, Off.magic);
  out.writeUInt16LE(m.op, Off.op);
  out.writeUInt32LE(m.seq ?? 0, Off.seq);
  out.writeInt32LE(m.status ?? 0, Off.status);
  out.writeInt32LE(m.err ?? 0, Off.err);
  out.writeUInt32LE(m.sock ?? 0, Off.sock);
  out.writeInt32LE(m.arg ?? 0, Off.arg);
  out.writeUInt32LE(m.pid ?? 0, Off.pid);
  writeAddr(out, Off.a, m.a ?? null);
  writeAddr(out, Off.b, m.b ?? null);
  if (m.flags) out.writeUInt16LE(m.flags, Off.flags);
  if (m.addrs) {
    if (m.addrs.length > CACHE_MAX) throw new ProtocolError('too many addresses');
    m.addrs.forEach((a, i) => writeAddr(out, Off.name + i * ADDR_SIZE, a));
  } else if (m.name) {
    const n = Buffer.from(m.name, 'utf8');
    if (n.length >= AX_NAME_MAX) throw new ProtocolError('name too long');
    n.copy(out, Off.name);
  }
  return out;
}
