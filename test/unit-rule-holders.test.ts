// Which nodes publish a policy rule (src/daemon/cluster.ts): the node that made the
// change and the RULE_HOLDERS alive members ranked highest for the rule id by
// rendezvous hashing, so a change costs the cluster a few copies, not one per node.
import t from 'tap';
import { hrwScore, rendezvousTop, RULE_HOLDERS } from '../src/policy/replica';

const names = Array.from({ length: 20 }, (_, i) => `node-${i}`);
const ids = Array.from({ length: 400 }, (_, i) => `rule-${i}`);

t.test('the holders of an id: k distinct members, whatever the order they are listed in', async (t) => {
  for (const id of ids.slice(0, 50)) {
    const top = rendezvousTop(id, names, RULE_HOLDERS);
    t.equal(top.length, RULE_HOLDERS);
    t.equal(new Set(top).size, RULE_HOLDERS);
    t.same(rendezvousTop(id, [...names].reverse(), RULE_HOLDERS), top, 'order of the member list does not matter');
    t.same(rendezvousTop(id, [...names, ...names], RULE_HOLDERS), top, 'duplicates do not matter');
  }
  t.same(rendezvousTop('r', ['only'], RULE_HOLDERS), ['only'], 'alone, a node holds every rule');
});

t.test('a member leaving moves only the ids it held (rendezvous hashing), and the load is spread', async (t) => {
  const held = new Map<string, number>(names.map((n) => [n, 0]));
  let moved = 0;
  const gone = names[7]!;
  const rest = names.filter((n) => n !== gone);
  for (const id of ids) {
    const before = rendezvousTop(id, names, RULE_HOLDERS);
    for (const n of before) held.set(n, held.get(n)! + 1);
    const after = rendezvousTop(id, rest, RULE_HOLDERS);
    if (!before.includes(gone)) t.same(after, before, `${id}: held by others, unchanged`);
    else {
      moved++;
      t.same(after.filter((n) => before.includes(n)).length, RULE_HOLDERS - 1, `${id}: the other holders stay`);
    }
  }
  // each of 20 members holds 400 * 3 / 20 = 60 ids on average
  for (const [n, c] of held) t.ok(c >= 30 && c <= 95, `${n} holds ${c} of ${ids.length} (about 60 expected)`);
  t.ok(moved > 0 && moved < ids.length / 2, `only the ids the leaving member held moved (${moved})`);
  t.not(hrwScore('a', 'x'), hrwScore('a', 'y'));
});
