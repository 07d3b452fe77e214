// Glue between the daemon's service table and the cluster layer: this node's
// apps and listening services are published as replicated entries
// ("app/<id>", "svc/<id>", owner = this node); what other nodes publish is
// folded back into the table as remote apps and services. Backends whose node
// is not alive are skipped by load balancing.
//
// Policy rules travel as "pol/<id>" entries: src/policy/replica.ts (attached to this node).
import { ClusterNode, createNetworkTransport, systemClock, type ClusterState, type TlsPaths } from '../cluster';
import { withPrefix, type Logger } from '../common/log';
import type { PolicyEngine } from '../policy/decide';
import { attachPolicyReplica, type PolicyReplica } from '../policy/replica';
import type { Store } from '../store/store';
import type { App, ServiceTable, Sock } from '../table/table';

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
  /** Policy replication (present with a policy engine). */
  private replica?: PolicyReplica;
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
    this.node.on('change', () => this.queueRefresh());
    if (this.policy) {
      // pol/ entries: merged at their arrival, published by their holders (src/policy/replica.ts)
      this.replica = attachPolicyReplica(this.node, this.policy, {
        warn: (m) => this.log.warn(`cluster: ${m}`),
        onMerged: (taken) => this.log.info(`cluster: policy: ${taken.length} rule change(s) from peers (${taken.map((r) => `${r.rule ? 'set' : 'removed'} ${r.id}`).join(', ')})`),
        defer: (recheck) => this.queueHolderCheck(recheck),
      });
    }
    this.node.on('member', (m: { name: string; state: string; previous: string | null }) => {
      this.log.info(`cluster: member ${m.name} ${m.previous ?? 'new'} -> ${m.state}`);
      this.queueRefresh();
    });
    await this.node.start();
    // Publish what this node owns (restored state included).
    for (const a of this.table.localApps()) this.publishApp(a, false);
    for (const s of this.table.localServices()) this.publishSock(s, false);
    this.table.onChange((c) => (c.kind === 'app' ? this.publishApp(c.app, c.deleted) : this.publishSock(c.sock, c.deleted)));
    const seeds = [...new Set([...this.opts.join.map((j) => withPort(j, this.opts.gossipPort)), ...this.node.knownPeers()])];
    // Restored rules are published once the members are known (after the join: the member
    // events), so that only their holders publish them; alone, this node holds all.
    if (seeds.length === 0) this.replica?.recheck();
    if (seeds.length > 0) await this.joinLoop(seeds, true);
  }

  /** Joins through the seeds; keeps retrying in the background until one answers. */
  private async joinLoop(seeds: string[], first: boolean): Promise<void> {
    try {
      const n = await this.node.join(seeds);
      this.log.info(`cluster: joined through ${n} of ${seeds.length} seeds`);
      this.replica?.recheck();
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

  private holderCheckQueued = false;

  /** Member events: one publish re-check per event-loop turn, however many events came in it. */
  private queueHolderCheck(recheck: () => void): void {
    if (this.holderCheckQueued) return;
    this.holderCheckQueued = true;
    setImmediate(() => {
      this.holderCheckQueued = false;
      recheck();
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
    for (const e of this.node.entries()) {
      if (e.owner === this.table.node || e.key.startsWith('pol/')) continue; // pol/: the replica's
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
