// Binary encoding of cluster messages.
//
// Packet (UDP, after the transport removed its authentication envelope):
//   u8 magic 0xAC | u8 version 1 | { u8 type | varint length | body }*
// Stream frame (gRPC bytes field): the same layout with exactly one message.
//
// Decoding is total: any input either decodes or throws CodecError. Lengths are bounded by the
// remaining input, strings by MAX_STR, counts by the bytes that are left, varints by 2^53.

import type { EntryRecord, OwnerDelta } from './table';

export class CodecError extends Error {
  constructor(message: string) { super(message); this.name = 'CodecError'; }
}

export const MAGIC = 0xac;
export const VERSION = 1;
export const MAX_STR = 1024;

export const enum MsgType {
  Ping = 1, PingReq = 2, Ack = 3, Nack = 4, Alive = 5, Suspect = 6, Dead = 7, Entry = 8, Head = 9, Vouch = 10, Alert = 11,
  SyncSummary = 20, SyncDigests = 21, SyncPush = 22, SyncDeltas = 23, Pull = 24, Error = 26,
}

export const enum MemberStateCode { Alive = 0, Suspect = 1, Dead = 2, Left = 3 }

export interface PingMsg { t: MsgType.Ping; seq: number; target: string; from: string; fromAddr: string }
export interface PingReqMsg { t: MsgType.PingReq; seq: number; target: string; targetAddr: string; from: string; fromAddr: string }
export interface AckMsg { t: MsgType.Ack; seq: number; from: string }
export interface NackMsg { t: MsgType.Nack; seq: number; from: string }
export interface AliveMsg { t: MsgType.Alive; name: string; addr: string; inc: number; epoch: number }
export interface SuspectMsg { t: MsgType.Suspect; name: string; inc: number; from: string }
export interface DeadMsg { t: MsgType.Dead; name: string; inc: number; from: string }
/**
 * An observer of a removed member vouches that it answered every probation probe for the whole
 * probation: `name` may be readmitted at incarnation `inc` (its refutation) once enough distinct
 * observers (`from`) vouched. See Membership.onVouch.
 */
export interface VouchMsg { t: MsgType.Vouch; name: string; addr: string; inc: number; epoch: number; from: string }
/**
 * An observer (`from`) of member `name` reports that its own probe rounds of `name` (seen at
 * incarnation `inc`) failed repeatedly: one of Rapid's K monitoring edges raising an alert (Suresh et al.,
 * ATC'18, sec. 4.1). Not refutable by the member; `name` is removed once H of its K observers alerted.
 * See Membership.onAlert.
 */
export interface AlertMsg { t: MsgType.Alert; name: string; inc: number; from: string }
export interface EntryMsg { t: MsgType.Entry; owner: string; epoch: number; counter: number; key: string; value: Uint8Array | null }
export interface HeadMsg { t: MsgType.Head; owner: string; epoch: number; counter: number }

/** Per-owner digest: membership record + table watermark. */
export interface OwnerDigest {
  name: string; addr: string; inc: number; state: MemberStateCode; epoch: number; head: number; reaped: boolean;
}
export interface SyncSummaryMsg { t: MsgType.SyncSummary; from: OwnerDigest; join: boolean; buckets: Uint32Array }
export interface SyncDigestsMsg { t: MsgType.SyncDigests; nb: number; mismatched: number[]; digests: OwnerDigest[] }
export interface SyncPushMsg { t: MsgType.SyncPush; nb: number; mismatched: number[]; digests: OwnerDigest[]; members: OwnerDigest[]; deltas: OwnerDelta[] }
export interface SyncDeltasMsg { t: MsgType.SyncDeltas; members: OwnerDigest[]; deltas: OwnerDelta[] }
export interface PullMsg { t: MsgType.Pull; owner: string; epoch: number; head: number }
export interface ErrorMsg { t: MsgType.Error; message: string }

export type PacketMsg = PingMsg | PingReqMsg | AckMsg | NackMsg | AliveMsg | SuspectMsg | DeadMsg | VouchMsg | AlertMsg | EntryMsg | HeadMsg;
export type StreamMsg = SyncSummaryMsg | SyncDigestsMsg | SyncPushMsg | SyncDeltasMsg | PullMsg | ErrorMsg | PingMsg | AckMsg;
export type Msg = PacketMsg | StreamMsg;

// ------------------------------------------------------------------ writer

const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: true });

export class Writer {
  buf: Uint8Array;
  pos = 0;
  constructor(size = 256) { this.buf = new Uint8Array(size); }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.pos));
    this.buf = nb;
  }
  u8(v: number): void { this.ensure(1); this.buf[this.pos++] = v & 0xff; }
  u32(v: number): void {
    this.ensure(4);
    const b = this.buf; const p = this.pos;
    b[p] = v >>> 24; b[p + 1] = (v >>> 16) & 0xff; b[p + 2] = (v >>> 8) & 0xff; b[p + 3] = v & 0xff;
    this.pos += 4;
  }
  varint(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) throw new CodecError(`varint out of range: ${v}`);
    this.ensure(8);
    while (v >= 0x80) { this.buf[this.pos++] = (v % 0x80) | 0x80; v = Math.floor(v / 0x80); }
    this.buf[this.pos++] = v;
  }
  bytes(b: Uint8Array): void { this.varint(b.length); this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; }
  str(s: string): void {
    // fast path for ASCII
    let ascii = s.length <= 127;
    if (ascii) for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) { ascii = false; break; }
    if (ascii) {
      this.ensure(1 + s.length);
      this.buf[this.pos++] = s.length;
      for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
      return;
    }
    const b = te.encode(s);
    if (b.length > MAX_STR) throw new CodecError('string too long');
    this.bytes(b);
  }
  finish(): Uint8Array { return this.buf.subarray(0, this.pos); }
}

// ------------------------------------------------------------------ reader

export class Reader {
  pos: number;
  constructor(readonly buf: Uint8Array, start = 0, readonly end = buf.length) { this.pos = start; }
  remaining(): number { return this.end - this.pos; }
  u8(): number { if (this.pos >= this.end) throw new CodecError('truncated'); return this.buf[this.pos++]!; }
  u32(): number {
    if (this.pos + 4 > this.end) throw new CodecError('truncated');
    const b = this.buf; const p = this.pos; this.pos += 4;
    return ((b[p]! << 24) >>> 0) + (b[p + 1]! << 16) + (b[p + 2]! << 8) + b[p + 3]!;
  }
  varint(): number {
    let v = 0; let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.u8();
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw new CodecError('varint too large');
        return v;
      }
      mul *= 0x80;
    }
    throw new CodecError('varint too long');
  }
  bytes(max: number): Uint8Array {
    const n = this.varint();
    if (n > max) throw new CodecError(`field too large (${n} > ${max})`);
    if (this.pos + n > this.end) throw new CodecError('truncated');
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  str(): string {
    const n = this.varint();
    if (n > MAX_STR) throw new CodecError('string too long');
    if (this.pos + n > this.end) throw new CodecError('truncated');
    const p = this.pos; this.pos += n;
    let ascii = true;
    for (let i = p; i < p + n; i++) if (this.buf[i]! > 0x7f) { ascii = false; break; }
    if (ascii) {
      let s = '';
      for (let i = p; i < p + n; i++) s += String.fromCharCode(this.buf[i]!);
      return s;
    }
    try { return td.decode(this.buf.subarray(p, p + n)); } catch { throw new CodecError('invalid utf-8'); }
  }
  /** A count of items each taking at least `minItemBytes`: bounded by the remaining input. */
  count(minItemBytes: number): number {
    const n = this.varint();
    if (n * minItemBytes > this.remaining()) throw new CodecError('count exceeds input');
    return n;
  }
}

// ------------------------------------------------------------------ limits

export interface Limits { maxKeyBytes: number; maxValueBytes: number }
const DEFAULT_LIMITS: Limits = { maxKeyBytes: 256, maxValueBytes: 4096 };

// ------------------------------------------------------------------ bodies

function writeDigest(w: Writer, d: OwnerDigest): void {
  w.str(d.name); w.str(d.addr); w.varint(d.inc); w.u8(d.state | (d.reaped ? 0x80 : 0)); w.varint(d.epoch); w.varint(d.head);
}
function readDigest(r: Reader): OwnerDigest {
  const name = r.str(); const addr = r.str(); const inc = r.varint(); const s = r.u8();
  const state = s & 0x7f;
  if (state > 3) throw new CodecError('bad member state');
  return { name, addr, inc, state: state as MemberStateCode, reaped: (s & 0x80) !== 0, epoch: r.varint(), head: r.varint() };
}
function writeDigests(w: Writer, ds: OwnerDigest[]): void { w.varint(ds.length); for (const d of ds) writeDigest(w, d); }
function readDigests(r: Reader): OwnerDigest[] {
  const n = r.count(7); const out: OwnerDigest[] = [];
  for (let i = 0; i < n; i++) out.push(readDigest(r));
  return out;
}
function writeIdx(w: Writer, xs: number[]): void { w.varint(xs.length); for (const x of xs) w.varint(x); }
function readIdx(r: Reader, nb: number): number[] {
  const n = r.count(1); const out: number[] = [];
  for (let i = 0; i < n; i++) { const x = r.varint(); if (x >= nb) throw new CodecError('bucket index out of range'); out.push(x); }
  return out;
}
function writeDeltas(w: Writer, ds: OwnerDelta[]): void {
  w.varint(ds.length);
  for (const d of ds) {
    w.str(d.owner); w.varint(d.epoch); w.varint(d.from); w.varint(d.to); w.u8(d.snapshot ? 1 : 0);
    w.varint(d.entries.length);
    for (const e of d.entries) {
      w.str(e.key); w.varint(e.counter);
      if (e.value === null) w.u8(1); else { w.u8(0); w.bytes(e.value); }
    }
  }
}
function readDeltas(r: Reader, lim: Limits): OwnerDelta[] {
  const n = r.count(6); const out: OwnerDelta[] = [];
  for (let i = 0; i < n; i++) {
    const owner = r.str(); const epoch = r.varint(); const from = r.varint(); const to = r.varint();
    const fl = r.u8(); if (fl > 1) throw new CodecError('bad delta flags');
    if (from > to) throw new CodecError('bad delta range');
    const m = r.count(3); const entries: EntryRecord[] = [];
    for (let j = 0; j < m; j++) {
      const key = r.str(); if (key.length > lim.maxKeyBytes) throw new CodecError('key too long');
      const counter = r.varint();
      if (counter < 1 || counter > to) throw new CodecError('entry counter outside delta range');
      const tomb = r.u8(); if (tomb > 1) throw new CodecError('bad entry flags');
      entries.push({ key, counter, value: tomb ? null : r.bytes(lim.maxValueBytes) });
    }
    out.push({ owner, epoch, from, to, snapshot: fl === 1, entries });
  }
  return out;
}

function writeBody(w: Writer, m: Msg): void {
  switch (m.t) {
    case MsgType.Ping: w.u32(m.seq); w.str(m.target); w.str(m.from); w.str(m.fromAddr); return;
    case MsgType.PingReq: w.u32(m.seq); w.str(m.target); w.str(m.targetAddr); w.str(m.from); w.str(m.fromAddr); return;
    case MsgType.Ack: case MsgType.Nack: w.u32(m.seq); w.str(m.from); return;
    case MsgType.Alive: w.str(m.name); w.str(m.addr); w.varint(m.inc); w.varint(m.epoch); return;
    case MsgType.Suspect: case MsgType.Dead: case MsgType.Alert: w.str(m.name); w.varint(m.inc); w.str(m.from); return;
    case MsgType.Vouch: w.str(m.name); w.str(m.addr); w.varint(m.inc); w.varint(m.epoch); w.str(m.from); return;
    case MsgType.Entry:
      w.str(m.owner); w.varint(m.epoch); w.varint(m.counter); w.str(m.key);
      if (m.value === null) w.u8(1); else { w.u8(0); w.bytes(m.value); }
      return;
    case MsgType.Head: w.str(m.owner); w.varint(m.epoch); w.varint(m.counter); return;
    case MsgType.SyncSummary:
      writeDigest(w, m.from); w.u8(m.join ? 1 : 0); w.varint(m.buckets.length);
      for (let i = 0; i < m.buckets.length; i++) w.u32(m.buckets[i]!);
      return;
    case MsgType.SyncDigests: w.varint(m.nb); writeIdx(w, m.mismatched); writeDigests(w, m.digests); return;
    case MsgType.SyncPush: w.varint(m.nb); writeIdx(w, m.mismatched); writeDigests(w, m.digests); writeDigests(w, m.members); writeDeltas(w, m.deltas); return;
    case MsgType.SyncDeltas: writeDigests(w, m.members); writeDeltas(w, m.deltas); return;
    case MsgType.Pull: w.str(m.owner); w.varint(m.epoch); w.varint(m.head); return;
    case MsgType.Error: w.str(m.message.slice(0, 200)); return;
  }
}

function readBody(t: number, r: Reader, lim: Limits): Msg {
  switch (t) {
    case MsgType.Ping: return { t, seq: r.u32(), target: r.str(), from: r.str(), fromAddr: r.str() };
    case MsgType.PingReq: return { t, seq: r.u32(), target: r.str(), targetAddr: r.str(), from: r.str(), fromAddr: r.str() };
    case MsgType.Ack: return { t, seq: r.u32(), from: r.str() };
    case MsgType.Nack: return { t, seq: r.u32(), from: r.str() };
    case MsgType.Alive: return { t, name: r.str(), addr: r.str(), inc: r.varint(), epoch: r.varint() };
    case MsgType.Suspect: return { t, name: r.str(), inc: r.varint(), from: r.str() };
    case MsgType.Dead: return { t, name: r.str(), inc: r.varint(), from: r.str() };
    case MsgType.Alert: return { t, name: r.str(), inc: r.varint(), from: r.str() };
    case MsgType.Vouch: return { t, name: r.str(), addr: r.str(), inc: r.varint(), epoch: r.varint(), from: r.str() };
    case MsgType.Entry: {
      const owner = r.str(); const epoch = r.varint(); const counter = r.varint(); const key = r.str();
      if (key.length > lim.maxKeyBytes) throw new CodecError('key too long');
      if (counter < 1) throw new CodecError('bad counter');
      const tomb = r.u8(); if (tomb > 1) throw new CodecError('bad entry flags');
      return { t, owner, epoch, counter, key, value: tomb ? null : r.bytes(lim.maxValueBytes) };
    }
    case MsgType.Head: return { t, owner: r.str(), epoch: r.varint(), counter: r.varint() };
    case MsgType.SyncSummary: {
      const from = readDigest(r); const j = r.u8(); if (j > 1) throw new CodecError('bad join flag');
      const n = r.varint();
      if (n > 1024 || (n & (n - 1)) !== 0 || n === 0) throw new CodecError('bad bucket count');
      if (n * 4 > r.remaining()) throw new CodecError('truncated');
      const buckets = new Uint32Array(n);
      for (let i = 0; i < n; i++) buckets[i] = r.u32();
      return { t, from, join: j === 1, buckets };
    }
    case MsgType.SyncDigests: { const nb = r.varint(); return { t, nb, mismatched: readIdx(r, nb), digests: readDigests(r) }; }
    case MsgType.SyncPush: {
      const nb = r.varint();
      return { t, nb, mismatched: readIdx(r, nb), digests: readDigests(r), members: readDigests(r), deltas: readDeltas(r, lim) };
    }
    case MsgType.SyncDeltas: return { t, members: readDigests(r), deltas: readDeltas(r, lim) };
    case MsgType.Pull: return { t, owner: r.str(), epoch: r.varint(), head: r.varint() };
    case MsgType.Error: return { t, message: r.str() };
    default: throw new CodecError(`unknown message type ${t}`);
  }
}

/** Encode one message body prefixed with type and length (to append to a packet). */
export function encodeMsg(m: Msg): Uint8Array {
  const body = new Writer(64);
  writeBody(body, m);
  const b = body.finish();
  const w = new Writer(b.length + 6);
  w.u8(m.t); w.bytes(b);
  return w.finish();
}

/** Assemble a packet from pre-encoded messages. */
export function encodePacket(parts: Uint8Array[]): Uint8Array {
  let n = 2;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  out[0] = MAGIC; out[1] = VERSION;
  let off = 2;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

export const PACKET_HEADER = 2;

/** Decode a packet into messages. Throws CodecError on any malformed input. */
export function decodePacket(buf: Uint8Array, lim: Limits = DEFAULT_LIMITS): Msg[] {
  if (!(buf instanceof Uint8Array)) throw new CodecError('not bytes');
  if (buf.length < 2) throw new CodecError('packet too short');
  if (buf[0] !== MAGIC) throw new CodecError('bad magic');
  if (buf[1] !== VERSION) throw new CodecError(`unsupported version ${buf[1]}`);
  const r = new Reader(buf, 2);
  const out: Msg[] = [];
  while (r.remaining() > 0) {
    if (out.length >= 1024) throw new CodecError('too many messages');
    const t = r.u8();
    const len = r.varint();
    if (len > r.remaining()) throw new CodecError('truncated message');
    const sub = new Reader(buf, r.pos, r.pos + len);
    const m = readBody(t, sub, lim);
    if (sub.remaining() !== 0) throw new CodecError('trailing bytes in message');
    r.pos += len;
    out.push(m);
  }
  return out;
}

/** Encode a single stream frame. */
export function encodeFrame(m: StreamMsg): Uint8Array { return encodePacket([encodeMsg(m)]); }

/** Decode a single stream frame. */
export function decodeFrame(buf: Uint8Array, lim: Limits = DEFAULT_LIMITS): StreamMsg {
  const ms = decodePacket(buf, lim);
  if (ms.length !== 1) throw new CodecError('frame must hold exactly one message');
  return ms[0] as StreamMsg;
}

// ------------------------------------------------------------------ hashing (digests)

/** Two independent 32-bit FNV-1a style hashes of a string (64 bits together). */
export function hash2(s: string): [number, number] {
  let a = 0x811c9dc5; let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995); b ^= b >>> 15;
  }
  a ^= a >>> 16; a = Math.imul(a, 0x85ebca6b); a ^= a >>> 13;
  b ^= b >>> 16; b = Math.imul(b, 0xc2b2ae35); b ^= b >>> 16;
  return [a >>> 0, b >>> 0];
}

export function nameBucket(name: string, nb: number): number {
  return hash2(name)[0] & (nb - 1);
}
