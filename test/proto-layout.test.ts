// The hook wire format is defined twice: native/ax_proto.h (C) and
// src/hookserver/proto.ts (TypeScript). native/build/proto-layout, compiled from
// the header, prints every struct's size, every field's offset and size, every
// constant, and two messages built with the C structs. This test checks all of
// it against the Layout table and constants that proto.ts exports (and that its
// encode/decode use), and that the codec reads and writes the C bytes exactly.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AF_INET, AF_INET6 } from '../src/common/addr';
import {
  AX_MAGIC,
  AX_MSG_SIZE,
  AX_NAME_MAX,
  BindFlag,
  CACHE_MAX,
  ConnectFlag,
  DAEMON_WAIT_DEFAULT_MS,
  decode,
  encode,
  Env,
  HelloFlag,
  Layout,
  Lookup,
  MapConst,
  Op,
  ReplyFlag,
  Status,
  type Field,
} from '../src/hookserver/proto';
import { CBIN, ROOT } from './helpers';

interface CLayout {
  sizeof: Record<string, number>;
  fields: Record<string, { off: number; size: number }>;
  constants: Record<string, number | string>;
  samples: Record<string, string>;
}

const run = spawnSync(join(CBIN, 'proto-layout'), { encoding: 'utf8' });
if (run.status !== 0) throw new Error(`native/build/proto-layout failed (${run.status}): ${run.stderr}; run npm run build`);
const c = JSON.parse(run.stdout) as CLayout;
const header = readFileSync(join(ROOT, 'native', 'ax_proto.h'), 'utf8');

/** What the TypeScript side says, in the C program's terms. */
function tsLayout(): Pick<CLayout, 'sizeof' | 'fields' | 'constants'> {
  const sizeof: Record<string, number> = {};
  const fields: Record<string, { off: number; size: number }> = {};
  for (const [struct, l] of Object.entries(Layout)) {
    sizeof[struct] = l.size;
    for (const [name, f] of Object.entries(l.fields) as [string, Field][]) fields[`${struct}.${name}`] = { off: f.off, size: f.size };
  }
  const constants: Record<string, number | string> = {
    AX_MAGIC,
    AX_MSG_SIZE,
    AX_NAME_MAX,
    AX_CACHE_MAX: CACHE_MAX,
    AX_PAYLOAD_OFF: Layout.ax_msg.fields.payload.off,
    AX_PAYLOAD_SIZE: Layout.ax_msg.fields.payload.size,
    AX_DAEMON_WAIT_DEFAULT_MS: DAEMON_WAIT_DEFAULT_MS,
  };
  const groups: [string, Record<string, number | string>][] = [
    ['AX_OP_', Op],
    ['AX_ST_', Status],
    ['AX_RF_', ReplyFlag],
    ['AX_LK_', Lookup],
    ['AX_MAP_', MapConst],
    ['AX_HF_', HelloFlag],
    ['AX_BF_', BindFlag],
    ['AX_CF_', ConnectFlag],
    ['AX_ENV_', Env],
  ];
  for (const [prefix, g] of groups) for (const [k, v] of Object.entries(g)) constants[prefix + k] = v;
  return { sizeof, fields, constants };
}

t.test('every struct size, field offset and field size is the same in C and TypeScript', async (t) => {
  const ts = tsLayout();
  t.same(ts.sizeof, c.sizeof, 'struct sizes');
  // field by field, so a failure names the field
  for (const k of new Set([...Object.keys(c.fields), ...Object.keys(ts.fields)])) {
    t.same(ts.fields[k], c.fields[k], `field ${k}`);
  }
  t.equal(Object.keys(ts.fields).length, Object.keys(c.fields).length, 'same number of fields');
});

t.test('every constant has the same value in C and TypeScript', async (t) => {
  const ts = tsLayout();
  for (const k of new Set([...Object.keys(c.constants), ...Object.keys(ts.constants)])) {
    t.equal(ts.constants[k], c.constants[k], `constant ${k}`);
  }
});

t.test('the C program covers everything the header defines', async (t) => {
  // every #define AX_* and every enum constant AX_* in the header is printed
  const defined = new Set<string>();
  for (const m of header.matchAll(/^#define\s+(AX_\w+)/gm)) defined.add(m[1]);
  for (const m of header.matchAll(/^\s+(AX_\w+)\s*=/gm)) defined.add(m[1]);
  defined.delete('AX_PROTO_H');
  t.ok(defined.size > 20, `header parsed (${defined.size} constants)`);
  for (const name of defined) t.ok(name in c.constants, `${name} is printed by proto-layout`);
  // every member of every struct in the header is printed
  let structs = 0;
  for (const m of header.matchAll(/^struct (\w+) \{([\s\S]*?)\n\};/gm)) {
    structs++;
    const members = [...m[2].matchAll(/^\s+(?:struct\s+)?\w+\s+(\w+)(?:\[[^\]]*\])?;/gm)].map((x) => x[1]);
    t.ok(members.length > 0, `members of struct ${m[1]} parsed`);
    for (const f of members) t.ok(`${m[1]}.${f}` in c.fields, `${m[1]}.${f} is printed by proto-layout`);
  }
  t.equal(structs, Object.keys(Layout).length, 'every struct of the header is in Layout');
});

t.test('the fields of each struct tile it: no gap, no overlap, the union within its payload', async (t) => {
  for (const [struct, l] of Object.entries(Layout)) {
    const all = Object.entries(l.fields) as [string, Field][];
    const plain = all.filter(([, f]) => !f.union);
    const union = all.filter(([, f]) => f.union);
    let at = 0;
    for (const [name, f] of plain.sort((x, y) => x[1].off - y[1].off)) {
      t.equal(f.off, at, `${struct}.${name} starts where the previous field ends`);
      at = f.off + f.size;
    }
    if (union.length > 0) {
      const off = union[0][1].off;
      const size = Math.max(...union.map(([, f]) => f.size));
      for (const [name, f] of union) t.equal(f.off, off, `${struct}.${name} starts with the union`);
      t.equal(off, at, `${struct}: the union follows the last field`);
      at = off + size;
    }
    t.equal(at, l.size, `${struct}: fields end at its size`);
  }
  t.equal(AX_MSG_SIZE % 8, 0, 'message size is a multiple of 8');
  t.ok(AX_MSG_SIZE <= 512, 'message size <= 512');
});

t.test('the codec decodes messages built with the C structs and re-encodes them byte for byte', async (t) => {
  const cache = Buffer.from(c.samples.cache_reply, 'hex');
  t.equal(cache.length, AX_MSG_SIZE);
  const m = decode(cache);
  t.match(m, {
    op: Op.CONNECT,
    flags: ReplyFlag.CACHE,
    seq: 0x01020304,
    status: Status.DIRECT,
    sock: 0x7654321,
    arg: 0,
    pid: 0,
    a: { family: AF_INET, ip: '10.1.0.1', port: 80 },
    b: { family: AF_INET, ip: '127.0.0.1', port: 40001 },
    name: '',
  });
  t.same(m.cache, {
    generation: 0xdeadbeef,
    backends: [
      { family: AF_INET, ip: '127.0.0.1', port: 40000 },
      { family: AF_INET, ip: '127.0.0.1', port: 40001 },
      { family: AF_INET6, ip: '::ffff:127.0.0.2', port: 40002 },
    ],
    localMask: 0x5,
  });
  t.equal(encode(m).toString('hex'), c.samples.cache_reply, 'cache reply re-encoded identically');

  const named = Buffer.from(c.samples.named_request, 'hex');
  const n = decode(named);
  t.match(n, {
    op: Op.RESOLVE,
    seq: 7,
    sock: 9,
    arg: -2,
    pid: 4242,
    a: { family: AF_INET6, ip: 'fe80::1', port: 443, scopeId: 5 },
    b: null,
    name: 'web.ax',
  });
  t.equal(n.cache, undefined);
  t.equal(encode(n).toString('hex'), c.samples.named_request, 'named request re-encoded identically');
});

t.test('the codec rejects malformed payloads', async (t) => {
  const bad = Buffer.from(c.samples.cache_reply, 'hex');
  bad.writeUInt32LE(CACHE_MAX + 1, Layout.ax_msg.fields.cache.off + Layout.ax_cache_answer.fields.n_backends.off);
  t.throws(() => decode(bad), /backends/);
  bad.writeUInt32LE(0, Layout.ax_msg.fields.cache.off + Layout.ax_cache_answer.fields.n_backends.off);
  t.throws(() => decode(bad), /backends/);
  const noNul = Buffer.from(c.samples.named_request, 'hex');
  noNul.fill(0x61, Layout.ax_msg.fields.name.off, Layout.ax_msg.fields.name.off + AX_NAME_MAX);
  t.throws(() => decode(noNul), /NUL/);
  t.throws(() => encode({ op: Op.CONNECT, flags: ReplyFlag.CACHE }), /CACHE/);
  const tooMany = Array.from({ length: CACHE_MAX + 1 }, (_, i) => ({ family: AF_INET, ip: '127.0.0.1', port: 40000 + i }));
  t.throws(() => encode({ op: Op.CONNECT, cache: { generation: 1, backends: tooMany } }), /backends/);
});
