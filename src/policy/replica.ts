// Policy replication over the cluster: the one implementation of the steps for "pol/<id>"
// entries. The daemon (ClusterGlue, src/daemon/cluster.ts) attaches it to its ClusterNode;
// the 1 000-node simulator (bench/policy.ts --sim, test/policy-replica.test.ts) attaches it
// to every simulated node, so both run the same code.
//   - a change of the engine's rules is published when this node publishes it
//     (publishesRecord: it made the change, or its maker is not alive and it is a holder);
//   - a peer's pol/ entry is decoded and merged at its arrival (decodePolicyEntry,
//     mergePeerRecords), and the entries the node holds already (restored state) at once:
//     enforcement, and the revocation pass a merge queues, never wait for a table rebuild;
//   - a membership change re-runs the publish check for every record (holders take over
//     the rules of a maker that died; the HRW ranking moved).
//
// Why holders. Entries are single-writer (owned by a
// node) and a dead node's entries vanish, so a rule must outlive the host it was added
// on, but not be published by every node (N copies of each rule would cost every node
// O(N) deliveries per change): the node that made a change publishes it, and once that
// node is no longer alive the RULE_HOLDERS alive members that rank highest for the rule
// id by rendezvous hashing publish it (HRW: Thaler and Ravishankar, "Using name-based
// mappings to increase hit rates", IEEE/ACM ToN 1998). A change thus costs one entry's
// dissemination while its maker lives. When members come and go the ranking moves and
// the new holders publish what they know. Every node applies every record it
// sees (the newest revision (time, node) of each id wins: src/policy/decide.ts), so
// a rule outlives the host it was added on and reaches nodes that join later.
import type { ClusterNode } from '../cluster/node';
import { newer, type PolicyEngine, type PolicyRecord } from './decide';
import { checkRule } from './rules';

/** How many alive members (besides the node that made a change) publish each policy rule. */
export const RULE_HOLDERS = 3;

/** Rendezvous (HRW) weight of member `name` for key `id`: FNV-1a 32-bit of "name\0id", mixed. */
export function hrwScore(name: string, id: string): number {
  let h = 2166136261;
  const s = `${name}\0${id}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

/**
 * The `k` holders of key `id` among member `names` (HRW: the k highest hrwScore, ties
 * broken by name), in rank order. Independent of the order of `names`.
 */
export function rendezvousTop(id: string, names: string[], k: number): string[] {
  return [...new Set(names)]
    .map((n) => [n, hrwScore(n, id)] as const)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, k)
    .map(([n]) => n);
}

/** The value of a "pol/<id>" entry: the record as JSON (~190 bytes for a one-selector rule). */
export function encodePolicyRecord(r: PolicyRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r));
}

/**
 * Decodes the value of a replicated entry `key` ("pol/<id>") into a PolicyRecord. The rule
 * itself is not validated here (mergePeerRecords does). Throws an Error when the value is not
 * JSON or not a record of that id (id string, rev.t number, rev.node string).
 */
export function decodePolicyEntry(key: string, value: Uint8Array): PolicyRecord {
  const r = JSON.parse(new TextDecoder().decode(value)) as PolicyRecord;
  if (typeof r?.id !== 'string' || `pol/${r.id}` !== key || typeof r.rev?.t !== 'number' || typeof r.rev.node !== 'string') throw new Error('not a policy record');
  return r;
}

/**
 * Merges peers' records into `engine`: each record newer than what the engine has is validated
 * (checkRule; a malformed rule is reported through `warn` and ignored, never applied), then
 * the engine takes the newer revision of each id (PolicyEngine.merge). Returns the records taken.
 */
export function mergePeerRecords(engine: PolicyEngine, records: PolicyRecord[], warn: (m: string) => void): PolicyRecord[] {
  const ok: PolicyRecord[] = [];
  for (const r of records) {
    const have = engine.record(r.id);
    if (have && !newer(r.rev, have.rev)) continue;
    if (r.rule !== null) {
      try {
        r.rule = checkRule(r.rule);
      } catch (e) {
        warn(`ignoring invalid policy rule ${r.id} from ${r.rev.node}: ${(e as Error).message}`);
        continue;
      }
    }
    ok.push(r);
  }
  return engine.merge(ok);
}

/**
 * Whether node `self` publishes record `r` under its own name: it made the change
 * (r.rev.node), or its maker is not among the `alive` members and `self` ranks among the
 * RULE_HOLDERS highest of `self` and `alive` for r.id (rendezvousTop). While the maker is
 * alive its own entry carries the record to every node (and to nodes that join later, by
 * anti-entropy); the holders publish only once it is gone, so a change costs one entry's
 * dissemination, not RULE_HOLDERS + 1 (see the top of this file).
 */
export function publishesRecord(self: string, r: PolicyRecord, alive: string[]): boolean {
  if (r.rev.node === self) return true;
  if (alive.includes(r.rev.node)) return false;
  return rendezvousTop(r.id, [self, ...alive], RULE_HOLDERS).includes(self);
}


/** What attachPolicyReplica returns: counters of what this node did (tests, benchmarks). */
export interface PolicyReplica {
  /** entries this node wrote (its own changes and the records it holds) */
  published: number;
  /** records taken from peers */
  merged: number;
  /** re-runs the publish check for every record (after member events, and once a lone node has started) */
  recheck(): void;
}

/** Options of attachPolicyReplica. */
export interface PolicyReplicaOptions {
  /** A malformed entry or rule from a peer (ignored, never applied). Default: dropped. */
  warn?: (message: string) => void;
  /** Records taken from peers, after each merge that took any (the daemon logs them). */
  onMerged?: (records: PolicyRecord[]) => void;
  /**
   * Runs the re-check a member event asks for. Default: at once (the simulator's virtual
   * time). The daemon passes a batcher (one re-check per event-loop turn, however many
   * member events arrived in it).
   */
  defer?: (recheck: () => void) => void;
}

/**
 * Wires `engine` to `node` (see the top of this file). Attach after the node's saved state
 * is restored: the entries it holds then are merged at once.
 */
export function attachPolicyReplica(node: ClusterNode, engine: PolicyEngine, opts: PolicyReplicaOptions = {}): PolicyReplica {
  const warn = opts.warn ?? (() => {});
  const done = new Map<string, string>(); // id -> revision published
  const self = node.name;
  const rep: PolicyReplica = {
    published: 0,
    merged: 0,
    recheck: () => {
      const alive = aliveNow();
      for (const r of engine.allRecords()) publish(r, alive);
    },
  };
  const aliveNow = () => node.members().filter((m) => m.state === 'alive' && m.name !== self).map((m) => m.name);
  const publish = (r: PolicyRecord, alive?: string[]): void => {
    const rev = `${r.rev.t}/${r.rev.node}`;
    if (done.get(r.id) === rev) return;
    if (!publishesRecord(self, r, r.rev.node === self ? [] : (alive ?? aliveNow()))) return;
    done.set(r.id, rev);
    rep.published++;
    node.set(`pol/${r.id}`, encodePolicyRecord(r));
  };
  engine.onChange((c) => {
    let alive: string[] | undefined;
    for (const r of c.records) publish(r, r.rev.node === self ? [] : (alive ??= aliveNow()));
  });
  const take = (owner: string, key: string, value: Uint8Array | null): void => {
    if (value === null || owner === self || !key.startsWith('pol/')) return;
    let r: PolicyRecord;
    try {
      r = decodePolicyEntry(key, value);
    } catch (e) {
      warn(`ignoring malformed policy entry ${owner}/${key}: ${(e as Error).message}`);
      return;
    }
    const taken = mergePeerRecords(engine, [r], warn);
    rep.merged += taken.length;
    if (taken.length && opts.onMerged) opts.onMerged(taken);
  };
  node.on('change', (ev: { owner: string; key: string; value: Uint8Array | null }) => take(ev.owner, ev.key, ev.value));
  for (const e of node.entries()) take(e.owner, e.key, e.value);
  node.on('member', () => (opts.defer ? opts.defer(rep.recheck) : rep.recheck()));
  return rep;
}
