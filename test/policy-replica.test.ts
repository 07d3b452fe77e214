// Policy replication in the simulator (src/cluster/sim.ts, virtual time), with the
// daemon's own replication code on every node (src/policy/replica.ts ->
// src/daemon/cluster.ts): a rule added at one node is enforced at every node well
// within a second; while its maker lives only the maker publishes it (one entry per
// change); once the maker is gone its rendezvous holders publish it, so the rule (and a
// removal) still reaches a node that comes back later.
import t from 'tap';
import { SimCluster } from '../src/cluster/simcluster';
import { PolicyEngine, type PolicyApp, type PolicyService } from '../src/policy/decide';
import { attachPolicyReplica, type PolicyReplica } from '../src/policy/replica';
import { checkRule } from '../src/policy/rules';

const N = 30;
const svc: PolicyService = { appId: 'echo', name: 'echo', vip: '10.240.0.9', vport: 7000, labels: { team: 'blue', 'ax.name': 'echo' } };
const app: PolicyApp = { id: 'batch', name: '', vip: '10.240.1.1', labels: { team: 'blue', role: 'batch' }, node: 'x', createdAt: 1 };
const rule = checkRule({ id: 'no-batch', action: 'deny', from: 'role=batch', to: 'ax.name=echo' });

function setup(c: SimCluster) {
  const engines: PolicyEngine[] = [];
  const replicas: PolicyReplica[] = [];
  const warnings: string[] = [];
  const attach = (i: number) => {
    engines[i] = new PolicyEngine({ node: c.nodes[i]!.name, posture: 'shared-label', denyErrno: 111, unknownPeers: 'allow' });
    replicas[i] = attachPolicyReplica(c.nodes[i]!, engines[i]!, { warn: (m) => warnings.push(m) });
  };
  c.nodes.forEach((_, i) => attach(i));
  const denies = (i: number) => !engines[i]!.allowsApp(app, svc);
  const written = () => replicas.reduce((a, r) => a + r.published, 0);
  return { engines, replicas, attach, denies, written, warnings };
}

t.test('a rule added at one node is enforced at every node within a second; only its maker publishes it', async (t) => {
  const c = new SimCluster({ n: N, seed: 3 });
  await c.startSeeded();
  await c.clock.advance(5000);
  const s = setup(c);
  t.equal(c.liveIdx().filter(s.denies).length, 0, 'nobody denies before the rule');
  s.engines[4]!.put([rule]);
  t.ok(s.denies(4), 'the maker enforces it at once');
  const took = await c.clock.runUntilTrue(() => c.liveIdx().every(s.denies), 5000, 5);
  t.ok(took >= 0 && took <= 1000, `every node denies after ${took} ms (bound 1 s)`);
  await c.clock.advance(3000);
  t.equal(s.written(), 1, 'one entry written for the change (the maker alive: no holder publishes)');
  s.engines[9]!.remove([rule.id]);
  t.ok((await c.clock.runUntilTrue(() => c.liveIdx().every((i) => !s.denies(i)), 5000, 5)) >= 0, 'a removal at another node reaches every node');
  t.same(s.warnings, [], 'nothing malformed');
  await c.stopAll();
});

t.test('once the maker is gone its holders publish: a node that was down learns the rule, and a later removal', async (t) => {
  // a dead node's entries are removed for good 20 s after it is declared dead (default 5 min)
  const c = new SimCluster({ n: N, seed: 5, config: { reapAfterMs: 20_000 } });
  await c.startSeeded();
  await c.clock.advance(5000);
  const s = setup(c);
  const late = 7;
  await c.crash(late); // down while the rule is added: its engine never sees it
  s.engines[2]!.put([rule]);
  await c.clock.advance(3000);
  t.ok(c.liveIdx().every(s.denies), 'every live node denies');
  t.equal(s.written(), 1, 'only the maker wrote an entry');
  await c.crash(2); // the maker dies: its entries vanish
  const holders = await c.clock.runUntilTrue(() => s.written() > 1, 60_000, 100);
  t.ok(holders >= 0, `holders published after the maker was declared dead (${holders} ms)`);
  await c.clock.advance(25_000); // the maker's entries are gone everywhere
  t.notOk(c.liveIdx().some((i) => c.nodes[i]!.entries().some((e) => e.owner === c.nodes[2]!.name)), "no node holds the maker's entries any more");
  t.ok(s.written() - 1 >= 1 && s.written() - 1 <= 6, `a few holders publish (${s.written() - 1})`);
  // The node that was down comes back with a fresh engine: it gets the rule from the holders' entries.
  const seeds = c.liveIdx().filter((i) => i !== late).slice(0, 3);
  await c.restart(late, seeds);
  s.attach(late);
  const got = await c.clock.runUntilTrue(() => s.denies(late), 60_000, 100);
  t.ok(got >= 0, `the returning node enforces the rule of a dead maker (${got} ms)`);
  // A removal made at a node that then dies is not undone by the maker's older entries elsewhere.
  s.engines[11]!.remove([rule.id]);
  await c.clock.advance(3000);
  t.ok(c.liveIdx().every((i) => !s.denies(i)), 'removed everywhere');
  await c.crash(11);
  const late2 = 13;
  await c.crash(late2);
  await c.clock.advance(40_000);
  await c.restart(late2, seeds);
  s.attach(late2);
  await c.clock.advance(30_000);
  const rec = s.engines[late2]!.record(rule.id);
  t.ok(rec && rec.rule === null, 'a node that comes back sees the removal (tombstone), not the rule');
  t.notOk(s.denies(late2), 'and allows');
  await c.stopAll();
});
