// In-process unit tests: the hook wire codec (src/hookserver/proto.ts) and the
// host port pool (src/table/ports.ts). No daemon, no subprocess.
import t from 'tap';
import { AF_INET, AF_INET6 } from '../src/common/addr';
import { ADDR_SIZE, AX_MAGIC, AX_MSG_SIZE, CACHE_MAX, decode, encode, formatIpv6, Layout, Off, Op, opName, parseIpv6, ProtocolError, ReplyFlag, Status } from '../src/hookserver/proto';
import { parsePort, parsePortRange, PortPool } from '../src/table/ports';

/** The error `fn` throws (or null). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return null;
}

t.test('codec: every field round-trips', async (t) => {
  const buf = encode({
    op: Op.CONNECT,
    seq: 0xfffffffe,
    status: Status.DIRECT,
    err: 111,
    sock: 0x80000001,
    arg: -5,
    pid: 4242,
    a: { family: AF_INET, ip: '10.1.2.3', port: 80 },
    b: { family: AF_INET6, ip: '2001:db8::1', port: 65535 },
    name: 'web.ax',
  });
  t.equal(buf.length, AX_MSG_SIZE);
  t.equal(buf.readUInt32LE(Off.magic), AX_MAGIC);
  const m = decode(buf);
  t.same(m, {
    op: Op.CONNECT,
    seq: 0xfffffffe,
    status: Status.DIRECT,
    err: 111,
    sock: 0x80000001,
    arg: -5,
    pid: 4242,
    a: { family: AF_INET, port: 80, ip: '10.1.2.3' },
    b: { family: AF_INET6, port: 65535, ip: '2001:db8::1' },
    name: 'web.ax',
  });
  t.equal(decode(encode({ op: Op.HELLO })).a, null, 'family 0 is no address');
});

t.test('codec: cacheable answers carry every backend and which are local in the cache payload', async (t) => {
  const backends = Array.from({ length: CACHE_MAX }, (_, i) => ({ family: AF_INET, ip: `127.0.0.${i + 1}`, port: 40000 + i }));
  const buf = encode({ op: Op.CONNECT, status: Status.DIRECT, cache: { generation: 7, backends, localMask: 0b101 } });
  t.equal(buf.readUInt16LE(Off.flags), ReplyFlag.CACHE);
  const C = Layout.ax_cache_answer.fields;
  t.equal(buf.readUInt32LE(Off.cache + C.generation.off), 7);
  t.equal(buf.readUInt32LE(Off.cache + C.n_backends.off), CACHE_MAX);
  t.equal(buf.readUInt32LE(Off.cache + C.local_mask.off), 0b101);
  for (let i = 0; i < CACHE_MAX; i++) {
    const off = Off.cache + C.backends.off + i * ADDR_SIZE;
    t.equal(buf.readUInt16LE(off), AF_INET);
    t.equal(buf.readUInt16LE(off + 2), 40000 + i);
    t.same([...buf.subarray(off + 8, off + 12)], [127, 0, 0, i + 1]);
  }
  t.same(decode(buf).cache, { generation: 7, backends, localMask: 0b101 }, 'decoded back');
  t.ok(thrown(() => encode({ op: Op.CONNECT, cache: { generation: 1, backends: [...backends, backends[0]] } })) instanceof ProtocolError, 'more than CACHE_MAX addresses');
  const lookup = decode(encode({ op: Op.LOOKUP, cookie: 0x1234567890abcdefn }));
  t.equal(lookup.cookie, 0x1234567890abcdefn, 'a LOOKUP carries the socket cookie');
});

t.test('codec: malformed frames are ProtocolErrors', async (t) => {
  const good = encode({ op: Op.RESOLVE, name: 'x' });
  t.ok(thrown(() => decode(good.subarray(0, 383))) instanceof ProtocolError, 'short frame');
  t.ok(thrown(() => decode(Buffer.concat([good, Buffer.alloc(1)]))) instanceof ProtocolError, 'long frame');
  const badMagic = Buffer.from(good);
  badMagic.writeUInt32LE(0xdeadbeef, Off.magic);
  t.throws(() => decode(badMagic), /bad magic/);
  // the numbers no op has (gaps, and the first past the highest)
  const ops = new Set<number>(Object.values(Op));
  const unknown = [0, ...Array.from({ length: Math.max(...ops) + 1 }, (_, i) => i).filter((i) => i > 0 && !ops.has(i)), Math.max(...ops) + 1, 0xffff];
  t.ok(unknown.length >= 4, `ops without a meaning: ${unknown.join(', ')}`);
  for (const op of unknown) {
    const b = Buffer.from(good);
    b.writeUInt16LE(op, Off.op);
    t.throws(() => decode(b), /unknown op/, `op ${op}`);
  }
  const noNul = Buffer.from(good);
  noNul.fill(0x41, Off.name, Off.name + Layout.ax_msg.fields.name.size);
  t.throws(() => decode(noNul), /not NUL terminated/);
  const badFamily = Buffer.from(good);
  badFamily.writeUInt16LE(1 /* AF_UNIX */, Off.a);
  t.throws(() => decode(badFamily), /address family 1/);
  t.throws(() => encode({ op: Op.RESOLVE, name: 'x'.repeat(256) }), /name too long/);
  t.doesNotThrow(() => encode({ op: Op.RESOLVE, name: 'x'.repeat(255) }), '255 bytes + NUL fit');
});

t.test('codec: random frames decode or throw ProtocolError, nothing else', async (t) => {
  // Deterministic xorshift: reproducible, still covers every field.
  let x = 0x9e3779b9;
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
  let decoded = 0;
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.alloc(AX_MSG_SIZE);
    for (let k = 0; k < AX_MSG_SIZE; k += 4) b.writeUInt32LE(rnd(), k);
    if (i % 2 === 0) {
      b.writeUInt32LE(AX_MAGIC, 0);
      b.writeUInt16LE(Object.values(Op)[rnd() % Object.values(Op).length], Off.op);
      b[Off.name + (rnd() % 200)] = 0;
      if (i % 4 === 0) b.writeUInt16LE([0, AF_INET, AF_INET6][rnd() % 3], Off.a);
      if (i % 4 === 0) b.writeUInt16LE([0, AF_INET, AF_INET6][rnd() % 3], Off.b);
    }
    try {
      decode(b);
      decoded++;
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      refused++;
    }
  }
  t.ok(decoded > 500, `${decoded} random frames with valid magic decoded`);
  t.ok(refused > 2500, `${refused} refused with ProtocolError`);
});

t.test('codec: IPv6 text forms (RFC 5952) and v4-mapped', async (t) => {
  const cases: Array<[string, string]> = [
    ['::', '::'],
    ['::1', '::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1'],
    ['fe80::1:2', 'fe80::1:2'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0'],
  ];
  for (const [input, canonical] of cases) t.equal(formatIpv6(parseIpv6(input)), canonical, input);
  t.equal(opName(Op.LOOKUP), 'LOOKUP');
  t.equal(opName(99), 'op#99');
});

t.test('port pool: allocates in order, skips used and refused ports, wraps, exhausts', async (t) => {
  const pool = new PortPool(parsePortRange('100-104'));
  t.equal(pool.allocate(() => true), 100);
  t.equal(pool.allocate((p) => p !== 101), 102, 'a port the kernel refuses is skipped');
  pool.reserve(103);
  t.equal(pool.allocate(() => true), 104, 'a reserved port is skipped');
  t.equal(pool.allocate(() => true), 101, 'wraps around to the refused one, now free');
  t.equal(pool.allocate(() => true), 0, 'exhausted');
  pool.release(102);
  t.equal(pool.allocate(() => true), 102, 'a released port comes back');
  pool.reserve(5); // outside the range: ignored
  pool.release(100);
  const tried: number[] = [];
  t.equal(pool.allocate((p) => (tried.push(p), false)), 0, 'every free port refused: 0');
  t.same(tried, [100], 'only free ports are tried, each once');
});

t.test('port pool: a throwing probe leaves the pool consistent', async (t) => {
  const pool = new PortPool({ first: 200, last: 201 });
  t.throws(() => pool.allocate(() => { throw new Error('EMFILE'); }), /EMFILE/);
  t.equal(pool.allocate(() => true), 201, 'the port whose probe threw was not taken; the cursor moved on');
  t.equal(pool.allocate(() => true), 200);
});

t.test('port ranges and ports parse strictly', async (t) => {
  t.same(parsePortRange(' 40000-60000 '), { first: 40000, last: 60000 });
  t.throws(() => parsePortRange('60000-40000'), /FIRST <= LAST/);
  t.throws(() => parsePortRange('0-10'), /need 1 <= FIRST/);
  t.throws(() => parsePortRange('1-65536'), /LAST <= 65535/);
  t.throws(() => parsePortRange('80'), /expected FIRST-LAST/);
  t.equal(parsePort('443', 'p'), 443);
  t.throws(() => parsePort('0', 'p'), /out of range/);
  t.throws(() => parsePort('8o', 'p'), /not a port number/);
});
