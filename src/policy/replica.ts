// Policy replication on a bare ClusterNode: the same steps the daemon's ClusterGlue
// (src/daemon/cluster.ts) takes for "pol/<id>" entries, without a service table or a
// store, so the 1 000-node simulator (bench/policy.ts --sim, test/policy-replica.test.ts)
// runs the daemon's own replication code on every simulated host.
//   - a change of the engine's rules is published when this node publishes it
//     (publishesRecord: it made the change, or its maker is not alive and it is a holder);
//   - a peer's pol/ entry is decoded and merged (decodePolicyEntry, mergePeerRecords), the
//     entries the node holds already at once;
//   - a membership change re-runs the publish check for every record (holders take over
//     the rules of a maker that died).
// The daemon batches the merge into its table refresh (one setImmediate); here it runs at
// the entry's arrival, which is the simulated time the daemon's refresh starts.
import type { ClusterNode } from '../cluster/node';
import { decodePolicyEntry, encodePolicyRecord, mergePeerRecords, publishesRecord } from '../daemon/cluster';
import type { PolicyEngine, PolicyRecord } from './decide';

/** What attachPolicyReplica returns: counters of what this node did (tests, benchmarks). */
export interface PolicyReplica {
  /** entries this node wrote (its own changes and the records it holds) */
  published: number;
  /** records taken from peers */
  merged: number;
  /** re-runs the publish check for every record (ClusterGlue does it after member events) */
  recheck(): void;
}

/**
 * Wires `engine` to `node` as the daemon does (see the top of this file). `warn` gets the
 * messages the daemon would log (a malformed entry or rule from a peer: ignored, never applied).
 */
export function attachPolicyReplica(node: ClusterNode, engine: PolicyEngine, warn: (m: string) => void = () => {}): PolicyReplica {
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
    rep.merged += mergePeerRecords(engine, [r], warn).length;
  };
  node.on('change', (ev) => take(ev.owner, ev.key, ev.value));
  // what the node holds already (the daemon's refresh reads every entry)
  for (const e of node.entries()) take(e.owner, e.key, e.value);
  node.on('member', () => rep.recheck());
  return rep;
}
