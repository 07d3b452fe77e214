// Glue between the daemon's service table and the cluster layer: this node's
// apps and listening services are published as replicated entries
// ("app/<id>", "svc/<id>", owner = this node); what other nodes publish is
// folded back into the table as remote apps and services. Backends whose node
// is not alive are skipped by load balancing.
//
// Policy rules travel as "pol/<id>" entries. Entries are single-writer (owned by a
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
import { ClusterNode, createNetworkTransport, systemClock, type ClusterState, type TlsPaths } from '../cluster';
import { withPrefix, type Logger } from '../common/log';
import { newer, type PolicyEngine, type PolicyRecord } from '../policy/decide';
import { checkRule } from '../policy/rules';
import type { Store } from '../store/store';
import type { App, ServiceTable, Sock } from '../table/table';

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
  return enc(r);
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

export interface ClusterOptions {
  /** This node's address other nodes reach (also where its listeners are bound). */
  advertise: string;
  /** UDP (probes, gossip) and TCP (gRPC: join, anti-entropy) port. Default 7946. */
  gossipPort: number;
  /** Seeds: "ip" or "ip:port" of any member. */
  join: string[];
  /** Shared cluster key(s), at least 16 bytes; the first signs, any verifies. */
  keys: string[];
  tls?: TlsPaths;
  /** Timing overrides (tests, tuning): ClusterConfig fields in milliseconds. */
  timing?: { probeIntervalMs?: number; probeTimeoutMs?: number; pushPullIntervalMs?: number; reapAfterMs?: number };
}

/** The parts of an app other nodes may see (never the token). */
type PublicApp = Omit<App, 'token'>;

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

export function withPort(addr: string, port: number): string {
  return /:\d+$/.test(addr) && !addr.includes('::') ? addr : `${addr}:${port}`;
}

export class ClusterGlue {
  readonly node: ClusterNode;
  private refreshQueued = false;
  private joinTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly table: ServiceTable,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly opts: ClusterOptions,
    private readonly policy?: PolicyEngine,
  ) {
    // The cluster logs through the daemon's logger (same Logger type; fields rendered as JSON).
    const clog = withPrefix(log, 'cluster: ');
    const addr = `${opts.advertise}:${opts.gossipPort}`;
    const transport = createNetworkTransport({ bindAddr: addr, key: opts.keys, ...(opts.tls ? { tls: opts.tls } : {}), logger: clog });
    this.node = new ClusterNode({ name: table.node, advertiseAddr: addr, ...(opts.timing ?? {}) }, transport, systemClock, clog);
  }

  async start(): Promise<void> {
    const saved = await this.store.get<ClusterState>('cluster', 'state');
    if (saved) {
      try {
        this.node.restore(saved);
      } catch (e) {
        this.log.warn(`cluster: saved state ignored: ${(e as Error).message}`);
      }
    }
    this.node.on('persist', (s: ClusterState) => this.store.put('cluster', 'state', s));
    this.node.on('change', (ev: { owner: string; key: string; value: Uint8Array | null }) => {
      // A policy record is merged at its arrival, not in the next refresh: enforcement (and the
      // revocation pass it queues) does not wait for a rebuild that reads every entry of the table.
      if (this.policy && ev.value !== null && ev.owner !== this.table.node && ev.key.startsWith('pol/')) {
        try {
          this.mergeRules([decodePolicyEntry(ev.key, ev.value)]);
        } catch (err) {
          this.log.warn(`cluster: ignoring malformed policy entry ${ev.owner}/${ev.key}: ${(err as Error).message}`);
        }
      }
      this.queueRefresh();
    });
    this.node.on('member', (m: { name: string; state: string; previous: string | null }) => {
      this.log.info(`cluster: member ${m.name} ${m.previous ?? 'new'} -> ${m.state}`);
      this.queueRefresh();
      this.queueHolderCheck();
    });
    await this.node.start();
    // Publish what this node owns (restored state included).
    for (const a of this.table.localApps()) this.publishApp(a, false);
    for (const s of this.table.localServices()) this.publishSock(s, false);
    this.table.onChange((c) => (c.kind === 'app' ? this.publishApp(c.app, c.deleted) : this.publishSock(c.sock, c.deleted)));
    const seeds = [...new Set([...this.opts.join.map((j) => withPort(j, this.opts.gossipPort)), ...this.node.knownPeers()])];
    if (this.policy) {
      // Restored rules are published once the members are known (after the join: the
      // member events), so that only their holders publish them; alone, this node holds all.
      if (seeds.length === 0) for (const r of this.policy.allRecords()) this.publishRule(r);
      this.policy.onChange((c) => {
        for (const r of c.records) this.publishRule(r);
      });
    }
    if (seeds.length > 0) await this.joinLoop(seeds, true);
  }

  /** Joins through the seeds; keeps retrying in the background until one answers. */
  private async joinLoop(seeds: string[], first: boolean): Promise<void> {
    try {
      const n = await this.node.join(seeds);
      this.log.info(`cluster: joined through ${n} of ${seeds.length} seeds`);
      this.queueHolderCheck();
    } catch (e) {
      const msg = (e as Error).message;
      this.log.warn(`cluster: join failed (${msg}); retrying every 2 s${first ? '' : ''}`);
      this.joinTimer = setTimeout(() => void this.joinLoop(seeds, false), 2000);
      this.joinTimer.unref();
    }
  }

  private publishApp(a: App, deleted: boolean): void {
    if (a.node !== this.table.node) return;
    if (deleted) this.node.delete(`app/${a.id}`);
    else {
      const { token: _token, ...pub } = a;
      this.node.set(`app/${a.id}`, enc(pub satisfies PublicApp));
    }
  }

  private publishSock(s: Sock, deleted: boolean): void {
    if (s.node !== this.table.node) return;
    if (deleted || s.state !== 'listening') this.node.delete(`svc/${s.id}`);
    else this.node.set(`svc/${s.id}`, enc(s));
  }

  /** Rule ids this node published, with the revision ("t/node") it published. */
  private readonly publishedRules = new Map<string, string>();

  /**
   * Publishes record r when this node holds it (see the top of this file): it made the
   * change, or it is among the RULE_HOLDERS alive members ranked highest for r.id.
   */
  private publishRule(r: PolicyRecord): void {
    const rev = `${r.rev.t}/${r.rev.node}`;
    if (this.publishedRules.get(r.id) === rev) return;
    const alive = this.node.members().filter((m) => m.state === 'alive').map((m) => m.name);
    if (!publishesRecord(this.table.node, r, alive)) return;
    this.publishedRules.set(r.id, rev);
    this.node.set(`pol/${r.id}`, encodePolicyRecord(r));
  }

  private holderCheckQueued = false;

  /** After membership changes: publish the rules this node now holds (HRW ranking moved). */
  private queueHolderCheck(): void {
    if (!this.policy || this.holderCheckQueued) return;
    this.holderCheckQueued = true;
    setImmediate(() => {
      this.holderCheckQueued = false;
      for (const r of this.policy!.allRecords()) this.publishRule(r);
    });
  }

  private queueRefresh(): void {
    if (this.refreshQueued) return;
    this.refreshQueued = true;
    setImmediate(() => {
      this.refreshQueued = false;
      this.refresh();
    });
  }

  /** Rebuilds the remote part of the table from the replicated entries. */
  private refresh(): void {
    const apps: App[] = [];
    const socks: Sock[] = [];
    const dec = new TextDecoder();
    const rules: PolicyRecord[] = [];
    for (const e of this.node.entries()) {
      if (e.owner === this.table.node) continue;
      if (e.key.startsWith('pol/')) {
        try {
          rules.push(decodePolicyEntry(e.key, e.value));
        } catch (err) {
          this.log.warn(`cluster: ignoring malformed policy entry ${e.owner}/${e.key}: ${(err as Error).message}`);
        }
        continue;
      }
      try {
        const v = JSON.parse(dec.decode(e.value)) as Record<string, unknown>;
        if (v.node !== e.owner) throw new Error(`entry claims node ${String(v.node)}`);
        if (e.key.startsWith('app/') && typeof v.vip === 'string' && typeof v.id === 'string') {
          apps.push({ ...(v as unknown as PublicApp), token: '' });
        } else if (e.key.startsWith('svc/') && typeof v.vip === 'string' && typeof v.hostPort === 'number') {
          socks.push(v as unknown as Sock);
        }
      } catch (err) {
        this.log.warn(`cluster: ignoring malformed entry ${e.owner}/${e.key}: ${(err as Error).message}`);
      }
    }
    this.table.setRemote(apps, socks);
    if (this.policy && rules.length) this.mergeRules(rules);
  }

  /** Takes the newer records of peers (each is validated: a malformed rule is ignored, not applied). */
  private mergeRules(records: PolicyRecord[]): void {
    const taken = mergePeerRecords(this.policy!, records, (m) => this.log.warn(`cluster: ${m}`));
    if (taken.length) this.log.info(`cluster: policy: ${taken.length} rule change(s) from peers (${taken.map((r) => `${r.rule ? 'set' : 'removed'} ${r.id}`).join(', ')})`);
  }

  /** Load balancing skips backends on nodes that are suspect, dead or gone. */
  alive = (s: Sock): boolean => s.node === this.table.node || this.node.memberState(s.node) === 'alive';

  members() {
    return this.node.members();
  }

  /**
   * Leave (best effort, at most 500 ms) and close the transports (the gRPC server is force-closed after
   * 800 ms): bounded at about 1.3 s even when peers are unreachable (issue 9).
   */
  async stop(): Promise<void> {
    if (this.joinTimer) clearTimeout(this.joinTimer);
    await this.node.leave(500).catch(() => {});
    await this.node.stop();
  }
}
