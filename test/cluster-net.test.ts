// Real transports on 127.0.0.1 only: UDP authentication, gRPC anti-entropy with deltas.
import t from 'tap';
import dgram from 'node:dgram';
import { UdpTransport } from '../src/cluster/udp';
import { GrpcTransport } from '../src/cluster/grpc';
import { ClusterNode, createNetworkTransport, systemClock } from '../src/cluster/index';
import type { Logger } from '../src/common/log';
import { encodeMsg, encodePacket } from '../src/cluster/codec';

const KEY = 'correct horse battery staple 0123';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const f = (m: string, x?: Record<string, unknown>) => { lines.push(m + (x ? ' ' + JSON.stringify(x) : '')); };
  return { lines, debug: () => {}, info: f, warn: f, error: f };
}
async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const p = s.address().port; s.close();
  return p;
}
async function waitFor(pred: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (pred()) return true; await sleep(20); }
  return pred();
}

t.test('UDP: authenticated packets delivered; wrong key, garbage, oversized and replays refused and logged', async (t) => {
  const [pa, pb, pc] = [await freePort(), await freePort(), await freePort()];
  const la = capture();
  const a = new UdpTransport({ bindAddr: `127.0.0.1:${pa}`, key: KEY, logger: la });
  const b = new UdpTransport({ bindAddr: `127.0.0.1:${pb}`, key: KEY });
  const evil = new UdpTransport({ bindAddr: `127.0.0.1:${pc}`, key: 'some other key, 16+ bytes long' });
  await a.start(); await b.start(); await evil.start();
  const got: string[] = [];
  a.onPacket((_f, d) => got.push(Buffer.from(d).toString()));
  b.sendPacket(`127.0.0.1:${pa}`, Buffer.from('hello'));
  evil.sendPacket(`127.0.0.1:${pa}`, Buffer.from('evil'));
  const raw = dgram.createSocket('udp4');
  raw.send(Buffer.from('garbage garbage garbage garbage garbage'), pa, '127.0.0.1');
  raw.send(Buffer.alloc(3000), pa, '127.0.0.1');
  // replay: capture a valid datagram sent by b and send it twice
  let captured: Buffer | null = null;
  const spy = dgram.createSocket('udp4');
  await new Promise<void>((r) => spy.bind(0, '127.0.0.1', () => r()));
  spy.on('message', (m) => { captured = m; });
  b.sendPacket(`127.0.0.1:${spy.address().port}`, Buffer.from('once'));
  await waitFor(() => captured !== null, 2000);
  raw.send(captured!, pa, '127.0.0.1'); raw.send(captured!, pa, '127.0.0.1');
  await waitFor(() => a.stats.rejectedReplay >= 1 && a.stats.rejectedSize >= 1, 2000);
  t.same(got.sort(), ['hello', 'once'], 'only authenticated, fresh packets reach the node (replay delivered once)');
  t.ok(a.stats.rejectedAuth >= 2, `rejected auth: ${a.stats.rejectedAuth}`);
  t.equal(a.stats.rejectedSize, 1, 'oversized dropped');
  t.equal(a.stats.rejectedReplay, 1, 'replay dropped');
  t.ok(la.lines.some((l) => l.includes('invalid MAC')), 'refusal logged');
  raw.close(); spy.close();
  await a.close(); await b.close(); await evil.close();
});

t.test('gRPC: peer with the wrong key refused and logged', async (t) => {
  const p = await freePort();
  const ls = capture();
  const server = new GrpcTransport({ bindAddr: `127.0.0.1:${p}`, key: KEY, logger: ls });
  server.onRequest(() => Buffer.from('pong'));
  await server.start();
  const good = new GrpcTransport({ bindAddr: '127.0.0.1:1', key: KEY });
  const bad = new GrpcTransport({ bindAddr: '127.0.0.1:1', key: 'wrong key wrong key wrong key' });
  t.equal(Buffer.from(await good.request(`127.0.0.1:${p}`, Buffer.from('ping'), 3000)).toString(), 'pong');
  await t.rejects(bad.request(`127.0.0.1:${p}`, Buffer.from('ping'), 3000), /unauthenticated/i);
  t.equal(server.stats.rejectedAuth, 1);
  t.ok(ls.lines.some((l) => l.includes('refused peer request')), 'logged');
  await good.close(); await bad.close(); await server.close();
});

t.test('two real nodes on 127.0.0.1: join, gossip, anti-entropy exchanges only deltas', async (t) => {
  const [pa, pb] = [await freePort(), await freePort()];
  const mk = (name: string, port: number) => {
    const addr = `127.0.0.1:${port}`;
    const tr = createNetworkTransport({ bindAddr: addr, key: KEY });
    return new ClusterNode({ name, advertiseAddr: addr, pushPullIntervalMs: 600_000 }, tr, systemClock, capture());
  };
  const a = mk('a', pa); const b = mk('b', pb);
  await a.start(); await b.start();
  for (let i = 0; i < 200; i++) a.set('svc/' + i, new Uint8Array(200).fill(i & 255));
  t.equal(await b.join([`127.0.0.1:${pa}`]), 1);
  t.ok(await waitFor(() => b.entries().length === 200 && a.memberState('b') === 'alive', 5000), 'b has a\'s 200 entries after join');
  // b misses updates (gossip lost): make a's piggyback queue forget them, then anti-entropy
  const aAny = a as unknown as { queue: { clear(): void } };
  for (let i = 0; i < 3; i++) a.set('svc/' + i, new TextEncoder().encode('changed'));
  a.delete('svc/5');
  aAny.queue.clear();
  await sleep(100);
  t.not(new TextDecoder().decode(b.get('a', 'svc/0')?.value), 'changed', 'b has not seen the update yet');
  const before = a.stats.bytesOut;
  await b.syncWith(`127.0.0.1:${pa}`, false);
  const sent = a.stats.bytesOut - before;
  t.equal(new TextDecoder().decode(b.get('a', 'svc/0')?.value), 'changed', 'update arrived by anti-entropy');
  t.equal(b.get('a', 'svc/5'), undefined, 'delete arrived by anti-entropy');
  t.equal(b.entries().length, 199);
  t.ok(sent < 2000, `a sent ${sent} bytes during the exchange (full table is ~45 KB): only the delta`);
  const again = a.stats.bytesOut;
  await b.syncWith(`127.0.0.1:${pa}`, false);
  t.ok(a.stats.bytesOut - again < 200, `in-sync exchange costs ${a.stats.bytesOut - again} bytes`);
  await b.leave(2000);
  t.ok(await waitFor(() => a.memberState('b') === 'left', 3000), 'graceful leave seen');
  await a.stop(); await b.stop();
});

t.test('UDP: a datagram captured before a restart is refused after it (replay across restarts)', async (t) => {
  const [pa, pb] = [await freePort(), await freePort()];
  const b = new UdpTransport({ bindAddr: `127.0.0.1:${pb}`, key: KEY });
  await b.start();
  // capture a valid datagram from b meant for a
  let captured: Buffer | null = null;
  const spy = dgram.createSocket('udp4');
  await new Promise<void>((r) => spy.bind(0, '127.0.0.1', () => r()));
  spy.on('message', (m) => { captured = m; });
  b.sendPacket(`127.0.0.1:${spy.address().port}`, Buffer.from('captured before the restart'));
  await waitFor(() => captured !== null, 2000);
  await sleep(5); // the restart happens strictly after the capture
  // a "restarts": a fresh transport (empty nonce cache) on the same port
  const a = new UdpTransport({ bindAddr: `127.0.0.1:${pa}`, key: KEY });
  await a.start();
  const got: string[] = [];
  a.onPacket((_f, d) => got.push(Buffer.from(d).toString()));
  const raw = dgram.createSocket('udp4');
  raw.send(captured!, pa, '127.0.0.1');
  b.sendPacket(`127.0.0.1:${pa}`, Buffer.from('fresh'));
  await waitFor(() => got.length >= 1 && a.stats.rejectedReplay >= 1, 2000);
  t.same(got, ['fresh'], 'only the fresh datagram is delivered');
  t.equal(a.stats.rejectedReplay, 1, 'the pre-restart datagram is refused as stale');
  raw.close(); spy.close();
  await a.close(); await b.close();
});

t.test('datagrams with a valid MAC but nonsense content change nothing and are counted', async (t) => {

  const [pa, pe] = [await freePort(), await freePort()];
  const la = capture();
  const a = new ClusterNode({ name: 'a', advertiseAddr: `127.0.0.1:${pa}` }, createNetworkTransport({ bindAddr: `127.0.0.1:${pa}`, key: KEY }), systemClock, la);
  await a.start();
  const evil = new UdpTransport({ bindAddr: `127.0.0.1:${pe}`, key: KEY }); // holds the key, sends garbage
  await evil.start();
  const bogus = [
    { t: 5, name: 'x\u0000y', addr: '127.0.0.1:9', inc: 0, epoch: 1 }, // control character in the name
    { t: 5, name: 'ghost1', addr: 'not an address', inc: 0, epoch: 1 }, // address does not parse
    { t: 5, name: 'ghost2', addr: '127.0.0.1:9', inc: 2 ** 40, epoch: 1 }, // incarnation beyond 2^32
    { t: 5, name: '', addr: '127.0.0.1:9', inc: 0, epoch: 1 }, // empty name
    { t: 10, name: 'ghost3', addr: '127.0.0.1:99999', inc: 1, epoch: 1, from: 'a' }, // port out of range
  ];
  for (const m of bogus) evil.sendPacket(`127.0.0.1:${pa}`, encodePacket([encodeMsg(m as never)]));
  // a valid message next to a bogus one: the whole packet is dropped
  evil.sendPacket(`127.0.0.1:${pa}`, encodePacket([encodeMsg({ t: 5, name: 'ok', addr: '127.0.0.1:9', inc: 0, epoch: 1 } as never), encodeMsg(bogus[1] as never)]));
  await waitFor(() => a.metrics().malformed >= 6, 3000);
  t.equal(a.metrics().malformed, 6, 'every nonsense packet counted');
  t.same(a.members().map((m) => m.name), ['a'], 'no bogus member was created');
  t.ok(la.lines.some((l) => l.includes('invalid content')), 'refusal logged');
  // a sane one still works: the node keeps serving
  evil.sendPacket(`127.0.0.1:${pa}`, encodePacket([encodeMsg({ t: 5, name: 'real', addr: '127.0.0.1:9', inc: 0, epoch: 1 } as never)]));
  t.ok(await waitFor(() => a.memberState('real') === 'alive', 2000), 'valid content still accepted');
  await evil.close(); await a.stop();
});
