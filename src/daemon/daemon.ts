// The daemon: wires the store, the service table, the hook server and the API
// together, restores state at start and reaps what dead processes left behind.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { formatAddr, intToIpv4 } from '../common/addr';
import { AxNames } from '../dns/names';
import { DnsRelayServer } from '../dns/relay';
import { DnsResponder } from '../dns/server';
import { resolvConfServers, type HostPort } from '../dns/upstream';
import { makeLogger, type Logger } from '../common/log';
import { IdentityMap } from '../hookserver/identmap';
import { HookServer } from '../hookserver/server';
import { MapConst } from '../hookserver/proto';
import { SockDiag } from '../hookserver/sockdiag';
import { Store } from '../store/store';
import { PortPool } from '../table/ports';
import { ServiceTable, type App, type Sock } from '../table/table';
import { Audit } from '../audit/audit';
import { MetricsServer } from '../audit/metrics';
import { ApiServer } from './api';
import { ClusterGlue } from './cluster';
import type { DaemonConfig } from './config';
import { HookDispatcher } from './hooks';
import { PolicyEngine } from '../policy/decide';
import { PolicyRuntime } from '../policy/runtime';
import { pidAlive } from './trust';
import { UdpEgress } from './udpegress';
import { sweepStaleHookFiles } from './runsweep';

export { VERSION } from '../common/version';


/** True when something accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The host of "ip:port" or "[ipv6]:port" (unchanged when there is no port). */
function hostOfAddr(addr: string): string {
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(addr);
  if (v6) return v6[1];
  const v4 = /^([^:]+):\d+$/.exec(addr);
  return v4 ? v4[1] : addr;
}

export class Daemon {
  readonly log: Logger;
  readonly table: ServiceTable;
  readonly pool: PortPool;
  store!: Store;
  hooks!: HookDispatcher;
  /** nftables table confining UDP sockets handed to isolated apps (root daemons) */
  udpEgress?: UdpEgress;
  cluster: ClusterGlue | null = null;
  /** The audit recorder: every access decision (ax events, ax graph, /metrics). */
  audit!: Audit;
  private metrics: MetricsServer | null = null;
  /** The decision layer (src/policy/decide.ts): audit subscribes with policy.onDecision(fn). */
  readonly policy: PolicyEngine;
  policyRuntime!: PolicyRuntime;
  private hookServer!: HookServer;
  private api!: ApiServer;
  private sweeper: NodeJS.Timeout | null = null;
  private map: IdentityMap | null = null;
  private readonly diag = new SockDiag();
  /** app id -> number of open RunApp streams, and when the last one closed */
  private readonly attached = new Map<string, { streams: number; since: number }>();
  readonly startedAt = Date.now();
  private stopping: Promise<void> | null = null;
  /** start() finished: "stopped" is logged only for a daemon that ran (a start that failed,
   *  e.g. a second daemon racing for the same state, says why on stderr and nothing here). */
  private ready = false;
  /** The names ax answers (DNS responder and, through names.resolve, the hook's RESOLVE). */
  readonly names: AxNames;
  /** The DNS responder; null when --dns-listen off (or before start). */
  dns: DnsResponder | null = null;
  /** The responder's unix socket for isolated apps' relays (hook socket + ".dns"); null when the responder is off. */
  dnsRelay: DnsRelayServer | null = null;

  constructor(readonly config: DaemonConfig) {
    this.log = makeLogger(config.logLevel, config.logFile, `ax-daemon[${config.nodeName}]`);
    this.table = new ServiceTable(config.nodeName, config.vipRanges, config.lb);
    this.pool = new PortPool(config.ports);
    this.policy = new PolicyEngine({ node: config.nodeName, posture: config.policyDefault, denyErrno: config.policyDenyErrno, unknownPeers: config.policyUnknownPeers });
    this.names = new AxNames(this.table, config.dnsDomains);
  }

  /** Where the DNS responder listens (UDP and TCP), or null when it is off. */
  get dnsAddress(): HostPort | null {
    return this.dns?.address ?? null;
  }

  async start(): Promise<void> {
    const c = this.config;
    for (const path of [c.socket, c.hookSocket]) {
      if (await socketAnswers(path)) throw new Error(`another ax daemon is already serving ${path}; stop it first (ax status --socket ${c.socket})`);
    }
    this.store = await Store.open(c.stateDir, c.clean);
    this.store.onError = (e) => this.log.error(`state write failed: ${e.message}`);
    await this.restore();
    this.audit = await Audit.open(this.store.sublevel('audit'), { max: c.eventsMax, log: this.log });
    this.table.onChange((ch) => {
      if (ch.kind === 'app') {
        if (ch.deleted) this.store.del('app', ch.app.id);
        else this.store.put('app', ch.app.id, ch.app);
      } else if (ch.sock.node === c.nodeName) {
        if (ch.deleted) this.store.del('sock', String(ch.sock.id));
        else this.store.put('sock', String(ch.sock.id), ch.sock);
      }
    });
    if (c.cluster) this.cluster = new ClusterGlue(this.table, this.store, this.log, c.cluster, this.policy);
    this.map = this.openIdentityMap(`${c.hookSocket}.map`);
    // Root: UDP sockets handed to isolated apps are kept to their backends by nftables.
    const eg = UdpEgress.open(c.hookSocket, this.log);
    if (eg.egress) this.udpEgress = eg.egress;
    else this.log.debug(`isolated apps get no host UDP socket: ${eg.why}`);
    this.hooks = new HookDispatcher({
      udpEgress: this.udpEgress,
      table: this.table,
      pool: this.pool,
      hostIp: c.hostIp,
      log: this.log,
      alive: this.cluster?.alive,
      handoff: c.handoff,
      map: this.map ?? undefined,
      diag: this.diag,
      starting: (appId) => (this.attached.get(appId)?.streams ?? 0) > 0,
      names: this.names,
      policy: this.policy,
      isPeerHost: (ip) => this.isPeerHost(ip),
    });
    // Hooks learn from the map whether accepts are filtered (before any rule is restored).
    const map = this.map;
    if (map) {
      const flags = () => map.setFlags((this.policy.filtersAccept ? MapConst.F_ACCEPT : 0) | (this.policy.hasEgress ? MapConst.F_EGRESS : 0));
      flags();
      this.policy.onChange(flags);
    }
    // Every decision of the policy layer is an audit event (ax events, ax graph, /metrics).
    // Allowed publishes and lookups are not access to anything: only their refusals are kept.
    this.policy.onDecision((dec) => {
      if ((dec.op === 'publish' || dec.op === 'lookup') && dec.verdict === 'allow') return;
      this.audit.record({
        time: dec.at,
        verdict: dec.op === 'publish' && dec.verdict === 'deny' ? 'publish-refused' : dec.verdict,
        op: dec.op,
        // a peer outside ax (accept) is named by its address
        src: { appId: dec.src.app, name: dec.src.name || dec.src.addr || '', labels: dec.src.labels, node: dec.node },
        dst: {
          name: dec.dst.name,
          addr: dec.dst.real ?? (dec.dst.port ? `${dec.dst.vip}:${dec.dst.port}` : dec.dst.vip),
          appId: dec.dst.appId,
          labels: dec.dst.labels,
        },
        rule: dec.rule,
        detail: dec.dst.proto === 'udp' ? 'udp' : dec.reason,
      });
    });
    const cutEvent = (appId: string, dst: string, dport: number, peer?: string): void => {
      const app = this.table.getApp(appId);
      // the real host port the connection went to -> the service, as other events name it
      const svc = this.table.services().find((s) => s.hostPort === dport && (s.hostIp === dst || s.hostIp === dst.replace(/^::ffff:/, '')));
      if (peer) {
        // the server end of a connection from a peer outside ax (accept filtering)
        this.audit.record({
          time: Date.now(),
          verdict: 'revoke',
          op: 'accept',
          src: { appId: '', name: peer, labels: {}, node: '' },
          dst: svc ? { name: svc.name, addr: `${svc.vip}:${svc.vport}`, appId: svc.appId, labels: svc.labels } : { name: app?.name ?? '', addr: `${dst}:${dport}`, appId },
          rule: 'policy change',
          detail: 'an accepted connection from a peer outside ax no longer allowed was cut',
        });
        return;
      }
      this.audit.record({
        time: Date.now(),
        verdict: 'revoke',
        op: 'connect',
        src: { appId, name: app?.name ?? '', labels: app?.labels ?? {}, node: this.config.nodeName },
        dst: svc ? { name: svc.name, addr: `${svc.vip}:${svc.vport}`, appId: svc.appId, labels: svc.labels } : { name: '', addr: `${dst}:${dport}` },
        rule: 'policy change',
        detail: 'an established connection no longer allowed was cut',
      });
    };
    this.policyRuntime = new PolicyRuntime({
      engine: this.policy,
      store: this.store,
      table: this.table,
      log: this.log,
      pids: () => this.hooks.appPids(),
      onCut: cutEvent,
      isAxPeer: (ip) => {
        const idx = this.map ? this.map.indexOf(ip) : -1;
        return (idx > 0 && this.table.appBySource(idx) !== undefined) || this.isPeerHost(ip);
      },
    });
    await this.policyRuntime.start();
    this.hooks.onReaped = () => this.sweepApps();
    this.hookServer = new HookServer(c.hookSocket, this.hooks, this.log);
    await this.hookServer.listen();
    // What root daemons that died without stopping left beside ours (never ours, never in use).
    void sweepStaleHookFiles(dirname(c.hookSocket), c.hookSocket).then((n) => {
      if (n > 0) this.log.info(`removed the hook sockets and identity maps of ${n} daemon(s) that are gone from ${dirname(c.hookSocket)}`);
    });
    if (this.cluster) await this.cluster.start();
    if (c.dnsListen) {
      this.dns = new DnsResponder({
        listen: c.dnsListen,
        names: this.names,
        upstreams: c.dnsUpstream === 'resolv.conf' ? resolvConfServers() : c.dnsUpstream,
        log: this.log,
        tcpIdleMs: c.dnsTcpIdleMs,
        // need to know: a relayed query names its app; others are judged by their source address
        visible: (asker, name) => (asker.appId ? this.hooks.visibleToApp(asker.appId, name) : this.hooks.visibleTo(asker.ip, name)),
      });
      await this.dns.start();
      // isolated apps' relays (ax-dnsrelay) reach the responder here: their namespace has only loopback
      this.dnsRelay = new DnsRelayServer({
        path: `${c.hookSocket}.dns`,
        responder: this.dns,
        admit: (pid, uid, appToken) => this.hooks.admit(pid, uid, appToken),
        log: this.log,
      });
      await this.dnsRelay.listen();
      // hooks send their apps' DNS traffic here (native/udp.c, dns_redirect)
      const a = this.dns.address;
      if (a && this.map && !a.ip.includes(':')) this.map.setDns(a.ip, a.port);
    }
    this.api = new ApiServer(this);
    await this.api.listen(c.socket);
    if (c.metrics) {
      const m = new MetricsServer(
        {
          audit: this.audit,
          handoffs: () => this.hooks.handoffs,
          directHandoffs: () => this.hooks.directHandoffs,
          sessions: () => this.hooks.sessions().length,
          services: () => this.table.services().length,
          apps: () => this.table.listApps().length,
        },
        this.log,
      );
      await m.listen(c.metrics.host, c.metrics.port);
      this.metrics = m;
    }
    this.sweeper = setInterval(() => this.sweep(), c.orphanCheckMs);
    this.sweeper.unref();
    this.ready = true;
    this.log.info(
      `ready: api ${c.socket}, hook ${c.hookSocket}, state ${c.stateDir}, host ${c.hostIp}, ports ${c.ports.first}-${c.ports.last}, ` +
        `dns ${this.dns?.address ? formatAddr(this.dns.address) : 'off'}, ` +
        (c.metrics ? `metrics http://${c.metrics.host.includes(':') ? `[${c.metrics.host}]` : c.metrics.host}:${c.metrics.port}/metrics, ` : '') +
        `${this.table.listApps().length} apps and ${this.table.listSocks().length} sockets restored`,
    );
  }

  /**
   * The identity map every hook maps read-only (src/hookserver/identmap.ts): the
   * table generation (cached answers are used while it holds) and each local
   * app's source address -> VIP. Its directory is made first, so caching works
   * from a daemon's very first start.
   */
  private openIdentityMap(path: string): IdentityMap | null {
    const c = this.config;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
      const count = Math.min(2 ** (32 - c.sourceRange.bits), 1 << 20);
      const map = new IdentityMap(path, intToIpv4(c.sourceRange.base), count);
      this.table.sourceCount = count;
      for (const a of this.table.localApps()) {
        if (!a.srcIndex || a.srcIndex >= count) a.srcIndex = undefined;
        else map.set(a.srcIndex, a.vip);
      }
      map.setGeneration(this.table.generation);
      map.setRanges(c.vipRanges);
      this.table.onGeneration((g) => map.setGeneration(g));
      this.table.onChange((ch) => {
        if (ch.kind !== 'app' || ch.app.node !== c.nodeName || !ch.app.srcIndex) return;
        map.set(ch.app.srcIndex, ch.deleted ? '' : ch.app.vip);
      });
      return map;
    } catch (e) {
      this.log.warn(`no identity map (${(e as Error).message}): hooks ask for every connect and servers see clients' real addresses`);
      return null;
    }
  }

  private async restore(): Promise<void> {
    const apps = await this.store.list<App>('app');
    const socks = await this.store.list<Sock>('sock');
    const now = Date.now();
    for (const a of apps) {
      this.table.addApp(a);
      // An app's `ax run` gets a grace period to re-attach after a restart.
      this.attached.set(a.id, { streams: 0, since: now });
    }
    let dropped = 0;
    let live: Set<bigint> | null = null;
    try {
      live = this.diag.liveCookies();
    } catch {
      live = null;
    }
    for (const s of socks) {
      // A socket lives on after its process while anyone holds it: ask the kernel.
      const gone = live && s.cookie ? !live.has(BigInt(s.cookie)) : !pidAlive(s.pid);
      if (!this.table.getApp(s.appId) || gone) {
        dropped++;
        await this.store.del('sock', String(s.id));
        continue;
      }
      this.table.addSock(s);
      this.pool.reserve(s.hostPort);
    }
    if (dropped > 0) this.log.info(`restore: dropped ${dropped} sockets the kernel no longer has`);
    // An app whose `ax run` is gone and that has no socket left has ended while the
    // daemon was away: drop it now, so its name and VIP are free at once.
    let ended = 0;
    for (const a of this.table.localApps()) {
      if (pidAlive(a.runPid) || this.table.listSocks().some((s) => s.appId === a.id)) continue;
      this.attached.delete(a.id);
      this.table.removeApp(a.id);
      ended++;
    }
    if (ended > 0) this.log.info(`restore: ${ended} apps ended while the daemon was away`);
  }

  /** Whether ip is the host address of another cluster member (its apps are ax peers). */
  private isPeerHost(ip: string): boolean {
    if (!this.cluster) return false;
    for (const m of this.cluster.members()) if (m.name !== this.config.nodeName && hostOfAddr(m.address) === ip) return true;
    return false;
  }

  // ---- apps (used by the API) ------------------------------------------

  attach(appId: string): void {
    const a = this.attached.get(appId) ?? { streams: 0, since: Date.now() };
    a.streams++;
    this.attached.set(appId, a);
  }

  detach(appId: string): void {
    const a = this.attached.get(appId);
    if (!a) return;
    a.streams = Math.max(0, a.streams - 1);
    a.since = Date.now();
  }

  /** Removes what ended: sockets the kernel no longer has, then apps nobody runs any more. */
  sweep(): void {
    this.hooks.reapDead();
    this.sweepApps();
  }

  private sweepApps(): void {
    const now = Date.now();
    for (const app of this.table.localApps()) {
      const a = this.attached.get(app.id);
      if (a && a.streams > 0) continue;
      const since = a?.since ?? 0;
      const runAlive = pidAlive(app.runPid);
      // A detached app lives on while its processes or its sockets do (ax run was
      // killed, or the daemon restarted and ax run has not re-attached yet).
      if (this.hooks.hasSession(app.id)) continue;
      if (this.table.listSocks().some((s) => s.appId === app.id)) continue;
      if (runAlive && now - since < 10_000) continue;
      if (now - since < 1_000) continue;
      this.log.debug(`app ${app.id} (${app.name || '-'}) ended`);
      this.attached.delete(app.id);
      this.table.removeApp(app.id);
    }
  }

  /**
   * Stops the daemon and exits the process with `code`. Bounded: whatever is still
   * pending after `deadlineMs` (a peer that does not answer, a stuck close), the
   * process exits then.
   */
  stopAndExit(code = 0, deadlineMs = 2000): void {
    const t = setTimeout(() => {
      this.log.warn(`stop did not finish within ${deadlineMs} ms: exiting anyway`);
      process.exit(code);
    }, deadlineMs);
    t.unref();
    void this.stop().then(
      () => process.exit(code),
      (e: Error) => {
        this.log.error(`stop: ${e.message}`);
        process.exit(code);
      },
    );
  }

  async stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      if (this.sweeper) clearInterval(this.sweeper);
      await this.api?.close();
      await this.metrics?.close();
      // The cluster says goodbye best-effort: a peer that does not answer cannot hold the stop up.
      const cluster = this.cluster?.stop().catch((e: Error) => this.log.warn(`cluster stop: ${e.message}`));
      if (cluster) {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 1000)));
        if ((await Promise.race([cluster, late])) === 'late') this.log.warn('cluster stop: peers did not answer within 1 s; going on');
        clearTimeout(timer);
      }
      await this.dnsRelay?.close();
      // The identity map file is kept for a restart while apps run (their hooks have it
      // mapped and keep seeing the next daemon's changes); with none left, it goes.
      const idle = this.ready && this.hooks && this.hooks.sessions().length === 0 && !this.table.localApps().some((a) => pidAlive(a.runPid));
      await this.dns?.close();
      this.map?.setDns('', 0); // while no responder runs, apps' DNS goes to their own servers
      await this.hookServer?.close();
      this.hooks?.close();
      // Not while isolated apps may still hold sockets it marked: they would be unconfined.
      this.udpEgress?.close(!idle);
      // Generation 0 never matches: hooks stop using cached answers and ask (and reconnect).
      this.map?.close();
      if (idle && this.map) rmSync(this.map.path, { force: true });
      this.diag.close();
      await this.audit?.close().catch((e: Error) => this.log.warn(`audit: ${e.message}`));
      this.policyRuntime?.close();
      await this.store?.close();
      if (this.ready) this.log.info('stopped');
    })();
    return this.stopping;
  }
}
