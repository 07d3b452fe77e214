// CRDT properties of the replicated table (src/cluster/table.ts).
import t from 'tap';
import { ReplicatedTable, type OwnerDelta } from '../src/cluster/table';
import { seededRandom } from '../src/cluster/sim';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | null | undefined) => (b ? new TextDecoder().decode(b) : null);

function mk(self: string, now = () => 0) { return new ReplicatedTable(self, { now }); }

interface Write { owner: string; epoch: number; counter: number; key: string; value: Uint8Array | null }

/** all writes of an owner, by replaying local operations on the owner's table */
function ownerHistory(owner: string, ops: Array<[string, string | null]>, epoch = 1): Write[] {
  const o = mk(owner);
  o.setLocalEpoch(epoch);
  return ops.map(([k, v]) => { const ver = o.localWrite(k, v === null ? null : enc(v)); return { owner, epoch: ver.epoch, counter: ver.counter, key: k, value: v === null ? null : enc(v) }; });
}

function state(tb: ReplicatedTable): string {
  return JSON.stringify([...tb.visible()].map((e) => [e.owner, e.key, dec(e.value), e.version.epoch, e.version.counter]).sort());
}

t.test('merge is commutative and idempotent (random delivery orders, duplicates)', async (t) => {
  const rand = seededRandom(42);
  const ops: Array<[string, string | null]> = [];
  for (let i = 0; i < 60; i++) {
    const k = 'k' + Math.floor(rand() * 8);
    ops.push([k, rand() < 0.3 ? null : 'v' + i]);
  }
  const writes = [...ownerHistory('a', ops), ...ownerHistory('b', ops.slice(0, 30))];
  const reference = mk('z');
  for (const w of writes) reference.applyEntry(w.owner, w.epoch, w.counter, w.key, w.value);
  for (let trial = 0; trial < 30; trial++) {
    const shuffled = writes.concat(writes.filter(() => rand() < 0.3)); // duplicates
    for (let i = shuffled.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!]; }
    const r = mk('z');
    for (const w of shuffled) r.applyEntry(w.owner, w.epoch, w.counter, w.key, w.value);
    t.equal(state(r), state(reference), `order ${trial}`);
    t.equal(r.digest('a').counter, 60); t.equal(r.hasGap('a'), false);
  }
});

t.test('deltas carry exactly what is missing; delta merge idempotent', async (t) => {
  const w = ownerHistory('a', [['x', '1'], ['y', '2'], ['x', '3'], ['z', '4'], ['y', null]]);
  const full = mk('p'); for (const e of w) full.applyEntry(e.owner, e.epoch, e.counter, e.key, e.value);
  const behind = mk('q'); for (const e of w.slice(0, 2)) behind.applyEntry(e.owner, e.epoch, e.counter, e.key, e.value);
  const d = full.deltaFor('a', 1, behind.digest('a').counter)!;
  t.same(d.entries.map((e) => e.key).sort(), ['x', 'y', 'z'], 'only entries written after counter 2');
  t.equal(d.snapshot, false);
  behind.applyDelta(d); behind.applyDelta(d);
  t.equal(state(behind), state(full));
  t.equal(full.deltaFor('a', 1, 5), null, 'nothing to send to an up-to-date peer');
});

t.test('tombstone beats stale write; deleted entry never resurrected', async (t) => {
  const w = ownerHistory('a', [['svc', 'v1'], ['svc', null]]);
  const r = mk('z');
  r.applyEntry('a', 1, 2, 'svc', null);     // tombstone first
  r.applyEntry('a', 1, 1, 'svc', enc('v1')); // stale write afterwards
  t.equal(r.get('a', 'svc')?.value, null, 'tombstone wins');
  t.equal([...r.visible()].length, 0);
  // stale peer delta with the old value
  const stale = mk('s'); stale.applyEntry('a', 1, 1, 'svc', enc('v1'));
  const sd = stale.deltaFor('a', 1, 0)!;
  r.applyDelta(sd);
  t.equal([...r.visible()].length, 0, 'stale delta ignored');
  void w;
});

t.test('tombstone GC: lagging peer gets a snapshot, not a resurrection', async (t) => {
  let now = 0;
  const full = mk('p', () => now);
  for (const e of ownerHistory('a', [['x', '1'], ['y', '2'], ['x', null], ['z', '3']])) full.applyEntry(e.owner, e.epoch, e.counter, e.key, e.value);
  now = 10_000;
  t.equal(full.gcTombstones(5_000), 1);
  const lag = mk('l'); lag.applyEntry('a', 1, 1, 'x', enc('1'));
  const d = full.deltaFor('a', 1, 1)!;
  t.equal(d.snapshot, true, 'peer below the GC floor gets a snapshot');
  lag.applyDelta(d);
  t.equal(lag.get('a', 'x'), undefined, 'x stays deleted');
  t.same([...lag.visible()].map((e) => e.key).sort(), ['y', 'z']);
});

t.test('new epoch supersedes all older entries at once', async (t) => {
  const r = mk('z');
  for (const e of ownerHistory('a', [['x', '1'], ['y', '2']], 1)) r.applyEntry(e.owner, e.epoch, e.counter, e.key, e.value);
  t.equal([...r.visible()].length, 2);
  r.observeEpoch('a', 2);
  t.equal([...r.visible()].length, 0, 'old epoch gone');
  r.applyEntry('a', 1, 3, 'old', enc('late')); // late write of the old epoch
  t.equal([...r.visible()].length, 0, 'late old-epoch write rejected');
  r.applyEntry('a', 2, 1, 'x', enc('new'));
  t.same([...r.visible()].map((e) => dec(e.value)), ['new']);
});

t.test('hidden on failure, restored on refute without re-registration; reaped owner not resurrected', async (t) => {
  const events: Array<[string, string | null]> = [];
  const r = new ReplicatedTable('z', { now: () => 0, onChange: (e) => events.push([e.key, dec(e.value)]) });
  for (const e of ownerHistory('a', [['x', '1'], ['y', '2']])) r.applyEntry(e.owner, e.epoch, e.counter, e.key, e.value);
  r.setHidden('a', true);
  t.equal([...r.visible()].length, 0, 'hidden');
  t.same(events.slice(-2).map((e) => e[1]), [null, null]);
  r.setHidden('a', false);
  t.equal([...r.visible()].length, 2, 'restored without any new write');
  r.setHidden('a', true);
  r.reapOwner('a');
  // stale peer still has the entries
  const stale = mk('s');
  for (const e of ownerHistory('a', [['x', '1'], ['y', '2']])) stale.applyEntry(e.owner, e.epoch, e.counter, e.key, e.value);
  t.equal(r.applyDelta(stale.deltaFor('a', 0, 0)!), 'rejected');
  t.equal(r.applyEntry('a', 1, 2, 'y', enc('2')), 'rejected');
  r.setHidden('a', false);
  t.equal([...r.visible()].length, 0, 'still nothing: owner tombstone');
  // owner restarts with a new epoch: accepted
  t.equal(r.applyEntry('a', 2, 1, 'x', enc('fresh')), 'applied');
  t.same([...r.visible()].map((e) => dec(e.value)), ['fresh']);
});

t.test('out-of-order delivery parks entries until the gap is filled', async (t) => {
  const w = ownerHistory('a', [['x', '1'], ['y', '2'], ['z', '3']]);
  const r = mk('z');
  t.equal(r.applyEntry('a', 1, 3, 'z', enc('3')), 'gap');
  t.equal(r.hasGap('a'), true);
  t.equal(r.get('a', 'z'), undefined, 'not applied before the gap closes');
  r.applyEntry('a', 1, 1, 'x', enc('1'));
  r.applyEntry('a', 1, 2, 'y', enc('2'));
  t.equal(r.digest('a').counter, 3);
  t.equal(dec(r.get('a', 'z')?.value), '3');
  void w;
});

t.test('local writes bump counters; bumpLocalEpoch renumbers', async (t) => {
  const r = mk('me');
  r.setLocalEpoch(4);
  t.same(r.localWrite('a', enc('1')), { epoch: 4, counter: 1 });
  t.same(r.localWrite('b', enc('2')), { epoch: 4, counter: 2 });
  r.localWrite('a', null);
  const rw = r.bumpLocalEpoch(6);
  t.same(rw.map((e) => [e.key, e.counter]), [['b', 1]]);
  t.equal(r.localEpoch(), 6);
});

const _unused: OwnerDelta | undefined = undefined; void _unused;
