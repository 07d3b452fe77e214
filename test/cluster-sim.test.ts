// Membership and replication in the simulated network (virtual time, deterministic seeds).
import t from 'tap';
import { SimCluster } from '../src/cluster/simcluster';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

t.test('join through one member; an update reaches everyone', async (t) => {
  const c = new SimCluster({ n: 30, seed: 3 });
  await c.startJoining();
  const full = await c.clock.runUntilTrue(() => c.all((n) => n.members().filter((m) => m.state === 'alive').length === 30), 20_000, 50);
  t.ok(full >= 0, `all 30 nodes know each other after ${full} ms`);
  c.nodes[4]!.set('svc/web', enc('10.1.0.1:80'));
  const ms = await c.clock.runUntilTrue(() => c.all((n) => dec(n.get('n4', 'svc/web')?.value) === '10.1.0.1:80'), 10_000, 10);
  t.ok(ms >= 0 && ms < 3000, `update everywhere in ${ms} ms`);
  c.nodes[4]!.delete('svc/web');
  const del = await c.clock.runUntilTrue(() => c.all((n) => n.get('n4', 'svc/web') === undefined), 10_000, 10);
  t.ok(del >= 0 && del < 3000, `delete everywhere in ${del} ms`);
  await c.stopAll();
});

t.test('failure detected, services withdrawn everywhere within bound; leave is graceful', async (t) => {
  const c = new SimCluster({ n: 50, seed: 5 });
  await c.startSeeded();
  c.nodes[7]!.set('svc/a', enc('x'));
  await c.clock.advance(3000);
  t.ok(c.all((n) => n.get('n7', 'svc/a') !== undefined));
  await c.crash(7);
  const ms = await c.clock.runUntilTrue(() => c.all((n) => n.get('n7', 'svc/a') === undefined && n.memberState('n7') === 'dead'), 30_000, 20);
  t.ok(ms >= 0 && ms < 10_000, `crashed node withdrawn everywhere in ${ms} ms`);
  const leaving = c.nodes[9]!.leave();
  await c.clock.advance(3100);
  await leaving;
  const left = await c.clock.runUntilTrue(() => c.all((n, i) => i === 9 || n.memberState('n9') === 'left'), 10_000, 20);
  t.ok(left >= 0 && left < 3000, `leave seen everywhere in ${left} ms`);
  t.equal(c.totalMetric('deadDeclared') > 0, true);
  await c.stopAll();
});

t.test('nacks from indirect-probe helpers arrive while the asker listens (no health penalty for probing a crashed peer)', async (t) => {
  const c = new SimCluster({ n: 12, seed: 31 });
  await c.startSeeded();
  await c.clock.advance(2000);
  await c.crash(4);
  let maxHealth = 0;
  for (let s = 0; s < 40; s++) {
    await c.clock.advance(250);
    for (const i of c.liveIdx()) maxHealth = Math.max(maxHealth, c.nodes[i]!.health);
  }
  t.ok(c.totalMetric('suspicionsRaised') > 0, 'the crashed peer was probed and suspected');
  t.equal(c.totalMetric('nacksMissed'), 0, 'every helper nack arrived in time');
  t.equal(maxHealth, 0, 'no healthy node was penalised (Lifeguard local health stayed 0)');
  await c.stopAll();
});

t.test('false suspicion refuted by the owner restores its services without re-registration', async (t) => {
  const c = new SimCluster({ n: 20, seed: 11 });
  await c.startSeeded();
  c.nodes[3]!.set('svc/x', enc('1'));
  await c.clock.advance(3000);
  const before = c.nodes[3]!.incarnation;
  // cut n3 off long enough to be declared dead, then heal
  const others = c.liveIdx().filter((i) => i !== 3).map(SimCluster.addr);
  c.net.partition([[SimCluster.addr(3)], others]);
  const dead = await c.clock.runUntilTrue(() => c.all((n, i) => i === 3 || n.memberState('n3') === 'dead'), 60_000, 50);
  t.ok(dead > 0, `n3 declared dead after ${dead} ms`);
  t.ok(c.all((n, i) => i === 3 || n.get('n3', 'svc/x') === undefined), 'hidden everywhere');
  c.net.heal();
  const back = await c.clock.runUntilTrue(() => c.all((n) => n.memberState('n3') === 'alive' && dec(n.get('n3', 'svc/x')?.value) === '1'), 60_000, 50);
  t.ok(back >= 0, `refuted: alive and services visible again after ${back} ms`);
  t.ok(c.nodes[3]!.incarnation > before, 'incarnation raised to refute');
  t.equal(c.nodes[3]!.epoch, 1, 'same epoch: no re-registration happened');
  await c.stopAll();
});

t.test('no false "dead" at 10% packet loss, N=50, 10 simulated minutes', async (t) => {
  const c = new SimCluster({ n: 50, seed: 17, loss: 0.1 });
  await c.startSeeded();
  await c.clock.advance(600_000);
  const falseDead = c.count((n) => n.members().some((m) => m.state === 'dead'));
  t.equal(c.totalMetric('deadDeclared'), 0, `dead declared: ${c.totalMetric('deadDeclared')}, suspicions raised: ${c.totalMetric('suspicionsRaised')}, refutations: ${c.totalMetric('refutations')}`);
  t.equal(falseDead, 0);
  await c.stopAll();
});

t.test('partition then heal converges, deletes are not resurrected', async (t) => {
  const c = new SimCluster({ n: 24, seed: 23 });
  await c.startSeeded();
  for (let i = 0; i < 24; i++) c.nodes[i]!.set('svc/' + i, enc('v' + i));
  await c.clock.advance(5000);
  t.equal(c.nodes[0]!.entries().length, 24);
  const A = [...Array(12).keys()]; const B = A.map((i) => i + 12);
  c.net.partition([A.map(SimCluster.addr), B.map(SimCluster.addr)]);
  // during the partition: deletes and updates on both sides
  c.nodes[1]!.delete('svc/1');
  c.nodes[13]!.delete('svc/13');
  c.nodes[2]!.set('svc/2', enc('v2b'));
  await c.clock.advance(40_000); // long enough for each side to declare the other dead
  t.ok(c.nodes[0]!.memberState('n13') === 'dead', 'other side declared dead during the partition');
  c.net.heal();
  const ms = await c.clock.runUntilTrue(() => {
    const ref = JSON.stringify(c.nodes[0]!.entries().map((e) => e.owner + e.key + dec(e.value)).sort());
    return c.all((n) => n.members().every((m) => m.state === 'alive') && JSON.stringify(n.entries().map((e) => e.owner + e.key + dec(e.value)).sort()) === ref);
  }, 120_000, 100);
  t.ok(ms >= 0, `converged ${ms} ms after heal`);
  t.ok(c.all((n) => n.get('n1', 'svc/1') === undefined && n.get('n13', 'svc/13') === undefined), 'deleted entries stay deleted');
  t.ok(c.all((n) => dec(n.get('n2', 'svc/2')?.value) === 'v2b'), 'update made during the partition everywhere');
  t.equal(c.nodes[20]!.entries().length, 22);
  await c.stopAll();
});

t.test('restart with persisted state comes back with a new epoch; old entries superseded', async (t) => {
  const c = new SimCluster({ n: 12, seed: 29 });
  await c.startSeeded();
  c.nodes[5]!.set('svc/old', enc('1'));
  c.nodes[5]!.set('svc/keep', enc('1'));
  await c.clock.advance(3000);
  const epoch = c.nodes[5]!.epoch;
  await c.crash(5);
  await c.clock.advance(1000);
  const n5 = await c.restart(5, [0]);
  t.equal(n5.epoch, epoch + 1, 'epoch+1 after restart');
  n5.set('svc/keep', enc('2'));
  const ms = await c.clock.runUntilTrue(() => c.all((n) => n.memberState('n5') === 'alive' && n.get('n5', 'svc/old') === undefined && dec(n.get('n5', 'svc/keep')?.value) === '2'), 30_000, 20);
  t.ok(ms >= 0, `old epoch superseded everywhere in ${ms} ms`);
  await c.stopAll();
});
