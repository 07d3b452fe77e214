// The policy layer at run time: the engine's rule records are persisted (LevelDB,
// kind "policy"), every change invalidates the answers hooks cached (the table
// generation, exactly as a table change does) and cuts established connections
// the new rules deny (./revoke.ts). Cluster replication is in src/daemon/cluster.ts.
import { unmapV4 } from '../common/addr';
import type { Logger } from '../common/log';
import type { Store } from '../store/store';
import type { App, ServiceTable, Sock } from '../table/table';
import type { PolicyEngine, PolicyRecord } from './decide';
import { Revoker } from './revoke';


export interface PolicyRuntimeDeps {
  engine: PolicyEngine;
  store: Store;
  table: ServiceTable;
  log: Logger;
  /** pids of each local app's processes (hook sessions), by app id */
  pids: () => Map<string, Set<number>>;
  /** Told of every connection cut (the audit trail records a 'revoke' event; see RevokeDeps.onCut). */
  onCut?: (appId: string, dst: string, dport: number, peer?: string) => void;
  /** Whether ip is an ax app's address (a local source address, or another member's host). */
  isAxPeer?: (ip: string) => boolean;
}

export class PolicyRuntime {
  readonly revoker: Revoker;
  private sweepQueued = false;

  constructor(private readonly d: PolicyRuntimeDeps) {
    this.revoker = new Revoker({
      pids: d.pids,
      allowed: (appId, ip, port) => this.allowed(appId, ip, port),
      isService: (ip, port) => this.serviceAt(ip, port) !== undefined,
      peerAllowed: (ip, port, peerIp) => this.peerAllowed(ip, port, peerIp),
      log: d.log,
      onCut: d.onCut,
    });
  }

  /** Loads the saved records, then persists, invalidates and revokes on every change. */
  async start(): Promise<void> {
    const saved = await this.d.store.list<PolicyRecord>('policy');
    this.d.engine.merge(saved.filter((r) => r && typeof r.id === 'string' && r.rev && typeof r.rev.t === 'number'));
    if (saved.length) this.d.log.info(`policy: ${this.d.engine.rules().length} rules restored`);
    this.d.engine.onChange((c) => {
      for (const r of c.records) this.d.store.put('policy', r.id, r);
      this.d.table.invalidate();
      this.queueSweep();
    });
  }

  /**
   * Runs the revocation pass now (the API does it before answering `ax policy add|rm`, so a
   * change has cut what it denies, existing connections included, by the time it returns).
   * Returns how many connections were cut.
   */
  sweepNow(): number {
    try {
      return this.revoker.sweep();
    } catch (e) {
      this.d.log.warn(`policy: revocation pass failed: ${(e as Error).message}`);
      return 0;
    }
  }

  /** Runs a revocation pass soon (once for a burst of changes, e.g. replicated ones). */
  queueSweep(): void {
    if (this.sweepQueued) return;
    this.sweepQueued = true;
    // Right after the change's own work: existing connections are cut as soon as new ones
    // are refused. The pass is one sock_diag dump, and /proc reads only when a connection
    // goes to a service.
    setImmediate(() => {
      this.sweepQueued = false;
      this.sweepNow();
    });
  }

  /** TCP services by real "ip:port", rebuilt when the table's generation moves (a pass asks per connection). */
  private index: { gen: number; byAddr: Map<string, Sock> } = { gen: -1, byAddr: new Map() };

  /** The TCP service (any node's) listening on real ip:port, if any. */
  private serviceAt(ip: string, port: number): Sock | undefined {
    const gen = this.d.table.generation;
    if (this.index.gen !== gen) {
      const byAddr = new Map<string, Sock>();
      for (const s of this.d.table.services()) if ((s.proto ?? 'tcp') === 'tcp') byAddr.set(`${unmapV4(s.hostIp)}:${s.hostPort}`, s);
      this.index = { gen, byAddr };
    }
    return this.index.byAddr.get(`${unmapV4(ip)}:${port}`);
  }

  /** Whether local app `appId` may keep a connection to real ip:port (undefined: not a service). */
  allowed(appId: string, ip: string, port: number): boolean | undefined {
    const app: App | undefined = this.d.table.getApp(appId);
    if (!app) return undefined;
    const svc = this.serviceAt(ip, port);
    if (!svc || svc.appId === appId) return undefined;
    return this.d.engine.allowsApp(app, svc);
  }

  /** RevokeDeps.peerAllowed: judged only while accepts are filtered (as the hooks do). */
  peerAllowed(ip: string, port: number, peerIp: string): boolean | undefined {
    if (!this.d.engine.filtersAccept) return undefined;
    const svc = this.serviceAt(ip, port);
    if (!svc || svc.node !== this.d.table.node) return undefined;
    const peer = unmapV4(peerIp);
    if (this.d.isAxPeer?.(peer)) return undefined;
    return this.d.engine.allowsUnknownPeer(svc, peer);
  }

  close(): void {
    this.revoker.close();
  }
}
