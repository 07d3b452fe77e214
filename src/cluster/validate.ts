// Content validation of decoded peer messages (issue 9). A datagram or frame can carry a valid MAC
// (it came from a key holder: a buggy or compromised peer, or a replay) and still hold nonsense.
// Nothing may change membership or the table before it passed these checks; a message that fails
// them makes the node drop the whole packet or frame (logged, rate limited).

import { MsgType, type Msg, type OwnerDigest } from './codec';
import type { OwnerDelta } from './table';
import { parseAddr } from './config';

/** Largest incarnation / epoch accepted from a peer (2^32 - 1): leaves room to refute, rejects "infinite" values. */
export const MAX_INC = 0xffffffff;
/** Node names: 1..64 bytes of UTF-8 without control characters (same rule as ClusterConfig.name). */
export const MAX_NAME_BYTES = 64;

function badName(n: unknown): string | null {
  if (typeof n !== 'string' || n.length === 0) return 'empty name';
  if (Buffer.byteLength(n) > MAX_NAME_BYTES) return 'name too long';
  for (let i = 0; i < n.length; i++) { const c = n.charCodeAt(i); if (c < 0x20 || c === 0x7f) return 'control character in name'; }
  return null;
}

function badAddr(a: unknown, allowEmpty = false): string | null {
  if (allowEmpty && a === '') return null;
  if (typeof a !== 'string') return 'bad address';
  try { parseAddr(a); return null; } catch { return `bad address ${JSON.stringify(a.slice(0, 40))}`; }
}

function badInc(v: unknown, what: string): string | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_INC ? null : `${what} out of range`;
}

/** Why an owner digest (anti-entropy) is unacceptable, or null. Table-only owners have an empty address. */
export function digestProblem(d: OwnerDigest): string | null {
  return badName(d.name) ?? badAddr(d.addr, true) ?? badInc(d.inc, 'incarnation') ?? badInc(d.epoch, 'epoch');
}

function deltaProblem(d: OwnerDelta): string | null {
  return badName(d.owner) ?? badInc(d.epoch, 'epoch') ?? (d.entries.some((e) => e.key.length === 0) ? 'empty key' : null);
}

/**
 * Why a decoded message must not be applied, or null when it is acceptable. Checks names, addresses
 * and incarnation/epoch ranges of every field that can create or change a member or an entry.
 */
export function messageProblem(m: Msg): string | null {
  switch (m.t) {
    case MsgType.Ping: return badName(m.target) ?? badName(m.from) ?? badAddr(m.fromAddr);
    case MsgType.PingReq: return badName(m.target) ?? badAddr(m.targetAddr) ?? badName(m.from) ?? badAddr(m.fromAddr);
    case MsgType.Ack: case MsgType.Nack: return badName(m.from);
    case MsgType.Alive: return badName(m.name) ?? badAddr(m.addr) ?? badInc(m.inc, 'incarnation') ?? badInc(m.epoch, 'epoch');
    case MsgType.Suspect: case MsgType.Dead: case MsgType.Alert: return badName(m.name) ?? badName(m.from) ?? badInc(m.inc, 'incarnation');
    case MsgType.Vouch: return badName(m.name) ?? badAddr(m.addr) ?? badName(m.from) ?? badInc(m.inc, 'incarnation') ?? badInc(m.epoch, 'epoch');
    case MsgType.Entry: return badName(m.owner) ?? badInc(m.epoch, 'epoch') ?? (m.key.length === 0 ? 'empty key' : null);
    case MsgType.Head: return badName(m.owner) ?? badInc(m.epoch, 'epoch');
    case MsgType.SyncSummary: return digestProblem(m.from);
    case MsgType.SyncDigests: return firstProblem(m.digests.map(digestProblem));
    case MsgType.SyncPush: return firstProblem([...m.digests.map(digestProblem), ...m.members.map(digestProblem), ...m.deltas.map(deltaProblem)]);
    case MsgType.SyncDeltas: return firstProblem([...m.members.map(digestProblem), ...m.deltas.map(deltaProblem)]);
    case MsgType.Pull: return badName(m.owner) ?? badInc(m.epoch, 'epoch');
    case MsgType.Error: return null;
  }
  return 'unknown message';
}

function firstProblem(xs: Array<string | null>): string | null {
  for (const x of xs) if (x) return x;
  return null;
}
