// Codec: round trips, hard limits, fuzzing (random/mutated bytes only ever throw CodecError).
import t from 'tap';
import {
  CodecError, MsgType, decodePacket, decodeFrame, encodeMsg, encodePacket, encodeFrame, type Msg,
} from '../src/cluster/codec';
import { seededRandom } from '../src/cluster/sim';
import { resolveConfig, ConfigError } from '../src/cluster/config';

const samples: Msg[] = [
  { t: MsgType.Ping, seq: 7, target: 'b', from: 'a', fromAddr: '127.0.0.1:1' },
  { t: MsgType.PingReq, seq: 0xffffffff, target: 'c', targetAddr: '127.0.0.1:3', from: 'a', fromAddr: '127.0.0.1:1' },
  { t: MsgType.Ack, seq: 1, from: 'b' },
  { t: MsgType.Nack, seq: 2, from: 'b' },
  { t: MsgType.Alive, name: 'nöde-ü', addr: '[::1]:7946', inc: 2 ** 40, epoch: 3 },
  { t: MsgType.Suspect, name: 'x', inc: 5, from: 'y' },
  { t: MsgType.Dead, name: 'x', inc: 5, from: 'x' },
  { t: MsgType.Entry, owner: 'a', epoch: 1, counter: 9, key: 'svc/web', value: new Uint8Array([1, 2, 3]) },
  { t: MsgType.Entry, owner: 'a', epoch: 1, counter: 10, key: 'svc/web', value: null },
  { t: MsgType.Head, owner: 'a', epoch: 2, counter: 1 },
  { t: MsgType.SyncSummary, from: { name: 'a', addr: 'h:1', inc: 1, state: 0, epoch: 1, head: 3, reaped: false }, join: true, buckets: new Uint32Array([1, 2, 3, 4]) },
  { t: MsgType.SyncDigests, nb: 2, mismatched: [1], digests: [{ name: 'b', addr: 'h:2', inc: 4, state: 2, epoch: 7, head: 9, reaped: true }] },
  { t: MsgType.SyncPush, nb: 4, mismatched: [0, 3], digests: [], members: [], deltas: [{ owner: 'a', epoch: 1, from: 2, to: 5, snapshot: false, entries: [{ key: 'k', counter: 5, value: null }, { key: 'j', counter: 4, value: new Uint8Array(10) }] }] },
  { t: MsgType.SyncDeltas, members: [], deltas: [{ owner: 'a', epoch: 1, from: 0, to: 5, snapshot: true, entries: [] }] },
  { t: MsgType.Pull, owner: 'a', epoch: 1, head: 0 },
  { t: MsgType.Error, message: 'nope' },
];

const norm = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v) => (v instanceof Uint8Array || v instanceof Uint32Array ? Array.from(v) : v)));

t.test('round trip of every message type', async (t) => {
  for (const m of samples) {
    const out = decodePacket(encodePacket([encodeMsg(m)]));
    t.same(norm(out), norm([m]), `type ${m.t}`);
  }
  const pkt = encodePacket(samples.slice(0, 10).map(encodeMsg));
  t.equal(decodePacket(pkt).length, 10, 'compound packet');
  t.same(norm(decodeFrame(encodeFrame({ t: MsgType.Pull, owner: 'a', epoch: 1, head: 2 }))), norm({ t: MsgType.Pull, owner: 'a', epoch: 1, head: 2 }));
});

t.test('limits: oversized value/key, bad counts, truncation', async (t) => {
  const big = encodePacket([encodeMsg({ t: MsgType.Entry, owner: 'a', epoch: 1, counter: 1, key: 'k', value: new Uint8Array(5000) })]);
  t.throws(() => decodePacket(big, { maxKeyBytes: 256, maxValueBytes: 4096 }), CodecError);
  const longKey = encodePacket([encodeMsg({ t: MsgType.Entry, owner: 'a', epoch: 1, counter: 1, key: 'k'.repeat(300), value: null })]);
  t.throws(() => decodePacket(longKey, { maxKeyBytes: 256, maxValueBytes: 4096 }), CodecError);
  const good = encodePacket([encodeMsg(samples[12]!)]);
  for (let cut = 0; cut < good.length; cut++) if (cut !== 2) t.throws(() => decodePacket(good.subarray(0, cut)), CodecError); // 2 = empty packet, valid
  // a count claiming a billion items must not allocate
  const w = new Uint8Array([0xac, 1, MsgType.SyncDeltas, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]);
  t.throws(() => decodePacket(w), CodecError);
});

t.test('fuzz: random and mutated input never throws anything but CodecError', async (t) => {
  const rand = seededRandom(1234);
  const valid = samples.map((m) => encodePacket([encodeMsg(m)]));
  let decoded = 0; let rejected = 0;
  for (let i = 0; i < 60_000; i++) {
    let buf: Uint8Array;
    if (i % 3 === 0) {
      buf = new Uint8Array(Math.floor(rand() * 200));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rand() * 256);
      if (buf.length > 1 && rand() < 0.7) { buf[0] = 0xac; buf[1] = 1; }
    } else {
      buf = Uint8Array.from(valid[Math.floor(rand() * valid.length)]!);
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
      if (rand() < 0.2) buf = buf.subarray(0, Math.floor(rand() * buf.length));
    }
    try { decodePacket(buf); decoded++; } catch (e) {
      if (!(e instanceof CodecError)) { t.fail(`non-CodecError: ${String(e)} on ${Buffer.from(buf).toString('hex')}`); return; }
      rejected++;
    }
  }
  t.ok(rejected > 0 && decoded > 0, `decoded ${decoded}, rejected ${rejected}`);
});

t.test('config validation names the field', async (t) => {
  const fieldOf = (fn: () => unknown): string | undefined => {
    try { fn(); } catch (e) { return e instanceof ConfigError ? e.field : 'not a ConfigError'; }
    return undefined;
  };
  t.equal(fieldOf(() => resolveConfig({ name: '', advertiseAddr: '127.0.0.1:1' })), 'name');
  t.equal(fieldOf(() => resolveConfig({ name: 'a', advertiseAddr: 'nope' })), 'advertiseAddr');
  t.equal(fieldOf(() => resolveConfig({ name: 'a', advertiseAddr: '127.0.0.1:1', probeTimeoutMs: 5000 })), 'probeTimeoutMs');
  t.equal(fieldOf(() => resolveConfig({ name: 'a', advertiseAddr: '127.0.0.1:1', gossipIntervalMs: -1 })), 'gossipIntervalMs');
  const c = resolveConfig({ name: 'a', advertiseAddr: '127.0.0.1:7946' });
  t.equal(c.probeIntervalMs, 500);
});
