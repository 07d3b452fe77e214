// The daemon's gRPC API (proto/ax.proto) on a unix socket.
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { AF_INET6, checkVipInRanges, checkVirtualIp, formatAddr, formatCidr } from '../common/addr';
import { rateLimited } from '../common/log';
import { loadProto } from '../common/protos';
import type { ProtoGrpcType } from '../gen/ax';
import type { App as AppMsg } from '../gen/ax/v1/App';
import type { AppList } from '../gen/ax/v1/AppList';
import type { AxDefinition, AxHandlers } from '../gen/ax/v1/Ax';
import type { ExposeRule as ExposeRuleMsg } from '../gen/ax/v1/ExposeRule';
import type { Member } from '../gen/ax/v1/Member';
import type { MemberList } from '../gen/ax/v1/MemberList';
import type { RunEvent } from '../gen/ax/v1/RunEvent';
import type { RunRequest__Output } from '../gen/ax/v1/RunRequest';
import type { Service } from '../gen/ax/v1/Service';
import type { ServiceList } from '../gen/ax/v1/ServiceList';
import type { ShutdownReply } from '../gen/ax/v1/ShutdownReply';
import type { SocketInfo } from '../gen/ax/v1/SocketInfo';
import type { SocketList } from '../gen/ax/v1/SocketList';
import type { StatusReply } from '../gen/ax/v1/StatusReply';
import type { EventBatch } from '../gen/ax/v1/EventBatch';
import type { EventsRequest__Output } from '../gen/ax/v1/EventsRequest';
import type { GraphReply } from '../gen/ax/v1/GraphReply';
import type { StoredEvent } from '../audit/event';
import { graphOf } from '../audit/graph';
import { eventToWire, graphToWire, statsToWire } from '../audit/wire';
import { checkClaims } from '../policy/claims';
import { ownerOf } from '../policy/decide';
import { checkRule, describeRule, type Rule } from '../policy/rules';
import type { PolicyPutRequest__Output } from '../gen/ax/v1/PolicyPutRequest';
import type { PolicyRemoveRequest__Output } from '../gen/ax/v1/PolicyRemoveRequest';
import type { PolicyReply } from '../gen/ax/v1/PolicyReply';
import type { PolicyRuleInfo } from '../gen/ax/v1/PolicyRuleInfo';
import { readFileSync } from 'node:fs';
import { DEFAULT_LABELS, parseLabels, type Labels } from '../policy/labels';
import type { App, ExposeRule, Sock } from '../table/table';
import type { Daemon } from './daemon';
import { VERSION } from './daemon';
import { ApiAccess, peerCredOf, socketFd, userName, type PeerCred } from './peer';

export function axService(): AxDefinition {
  const pkg = loadProto('ax.proto') as unknown as ProtoGrpcType;
  return pkg.ax.v1.Ax.service;
}

function fail(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }) as grpc.ServiceError;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Validates a RunRequest (name, ip syntax, labels syntax, expose rules); returns the
 * normalized pieces or throws an Error with the message. Ownership, ranges and label
 * claims are checked by the server with the caller's credentials.
 */
export function checkRunRequest(req: RunRequest__Output): { name: string; ip: string; labels: Labels; expose: ExposeRule[] } {
  const name = String(req.name ?? '');
  const ip = String(req.ip ?? '');
  if (name && !NAME_RE.test(name)) {
    throw new Error(`name "${name}": use 1-63 lowercase letters, digits and '-' (a DNS label), not starting or ending with '-'`);
  }
  if (ip) {
    const bad = checkVirtualIp(ip);
    if (bad) throw new Error(`--ip: ${bad}`);
  }
  const raw = req.labels ?? {};
  let labels: Labels;
  if (Object.keys(raw).length === 0) labels = { ...DEFAULT_LABELS };
  else {
    labels = parseLabels(
      Object.entries(raw)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    );
  }
  const expose: ExposeRule[] = [];
  for (const e of req.expose ?? []) {
    const port = Number(e.port);
    const hostPort = Number(e.host_port);
    if (!(port >= 1 && port <= 65535) || !(hostPort >= 1 && hostPort <= 65535)) {
      throw new Error(`--expose ${port}:${hostPort}: ports must be 1-65535`);
    }
    if (expose.some((x) => x.port === port)) throw new Error(`--expose: port ${port} is exposed twice`);
    expose.push({ port, hostIp: String(e.host_ip ?? ''), hostPort });
  }
  return { name, ip, labels, expose };
}

/** A refusal with its gRPC status code. */
export class Refused extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/** One accepted API connection and who is at the other end. */
interface Conn {
  id: number;
  sock: Socket;
  cred: PeerCred;
  acceptedAt: number;
  /** calls started on it, and calls in progress */
  calls: number;
  active: number;
  lastActive: number;
}

const PEER_PREFIX = 'ax-api-conn-';

/** `ax events --follow`: most new events held for one slow reader; beyond, the oldest are skipped (and counted). */
const FOLLOW_MAX = 10_000;

/**
 * The API server. Connections are accepted here (a net.Server on the unix
 * socket) so that the kernel's credentials of each peer (SO_PEERCRED) are read
 * before any byte of HTTP/2, then handed to grpc-js with a connection injector.
 * Each connection carries a unique tag as its remoteAddress, which grpc-js
 * returns as the call's getPeer(): that ties every call to the credentials of
 * the connection it arrived on. Connections are bounded: a handshake deadline
 * (no call soon after connecting), an idle timeout, and a per-uid cap.
 */
export class ApiServer {
  private server: grpc.Server | null = null;
  private net: Server | null = null;
  private path = '';
  private readonly conns = new Map<number, Conn>();
  private readonly perUid = new Map<number, number>();
  private nextConn = 1;
  private reaper: NodeJS.Timeout | null = null;
  private readonly access: ApiAccess;
  private readonly capWarn: (msg: string) => void;
  /** Open `ax events --follow` streams: ended (not cut) when the server closes. */
  private readonly followers = new Set<() => void>();

  constructor(private readonly d: Daemon) {
    this.access = new ApiAccess(process.getuid?.() ?? 0, d.config.apiGroup);
    this.capWarn = rateLimited(d.log, 5);
  }

  /** Serves the API on unix socket `path` (mode 0666: every call is authorized by its caller's credentials). */
  async listen(path: string): Promise<void> {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    rmSync(path, { force: true });
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 1 << 20 });
    server.addService(axService(), this.handlers());
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const ns = createServer((sock) => this.accept(sock, injector));
    ns.on('error', (e) => this.d.log.error(`api socket: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      ns.once('error', reject);
      ns.listen(path, () => {
        ns.off('error', reject);
        resolve();
      });
    });
    // Anyone may connect; what each caller may do is decided per call by its credentials.
    chmodSync(path, 0o666);
    this.server = server;
    this.net = ns;
    this.reaper = setInterval(() => this.reap(), Math.min(1000, Math.max(100, this.d.config.apiHandshakeMs / 4)));
    this.reaper.unref();
  }

  private accept(sock: Socket, injector: grpc.ConnectionInjector): void {
    let cred: PeerCred;
    try {
      cred = peerCredOf(socketFd(sock));
    } catch (e) {
      this.d.log.warn(`api: dropping a connection whose peer cannot be identified: ${(e as Error).message}`);
      sock.destroy();
      return;
    }
    const limited = cred.uid !== 0 && cred.uid !== this.access.daemonUid;
    const n = this.perUid.get(cred.uid) ?? 0;
    if (limited && n >= this.d.config.apiMaxConnsPerUid) {
      this.capWarn(`api: uid ${cred.uid} (pid ${cred.pid}) has ${n} connections open, the most one user may (--api-max-conns); refusing another`);
      sock.destroy();
      return;
    }
    this.perUid.set(cred.uid, n + 1);
    const id = this.nextConn++;
    const now = Date.now();
    const conn: Conn = { id, sock, cred, acceptedAt: now, calls: 0, active: 0, lastActive: now };
    this.conns.set(id, conn);
    // grpc-js reports this as each call's peer (ServerCall.getPeer()).
    Object.defineProperty(sock, 'remoteAddress', { value: `${PEER_PREFIX}${id}`, configurable: true });
    sock.on('error', () => {});
    sock.once('close', () => this.forget(conn));
    injector.injectConnection(sock);
  }

  private forget(conn: Conn): void {
    if (!this.conns.delete(conn.id)) return;
    const n = (this.perUid.get(conn.cred.uid) ?? 1) - 1;
    if (n <= 0) this.perUid.delete(conn.cred.uid);
    else this.perUid.set(conn.cred.uid, n);
  }

  /** Closes connections that made no call in time, or sat idle too long. */
  private reap(): void {
    const now = Date.now();
    const c = this.d.config;
    for (const conn of this.conns.values()) {
      const silent = conn.calls === 0 && now - conn.acceptedAt > c.apiHandshakeMs;
      const idle = conn.calls > 0 && conn.active === 0 && now - conn.lastActive > c.apiIdleMs;
      if (silent || idle) {
        this.d.log.debug(`api: closing ${silent ? 'a connection that made no call' : 'an idle connection'} of uid ${conn.cred.uid} (pid ${conn.cred.pid})`);
        conn.sock.destroy();
        this.forget(conn);
      }
    }
  }

  /** The connection a call arrived on; throws Refused when it cannot be told. */
  private connOf(call: { getPeer(): string }): Conn {
    const peer = call.getPeer();
    const conn = peer.startsWith(PEER_PREFIX) ? this.conns.get(Number(peer.slice(PEER_PREFIX.length))) : undefined;
    if (!conn) throw new Refused(grpc.status.UNAUTHENTICATED, 'the caller cannot be identified (its connection is gone)');
    return conn;
  }

  private begin(conn: Conn): () => void {
    conn.calls++;
    conn.active++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      conn.active--;
      conn.lastActive = Date.now();
    };
  }

  /** Stops accepting, lets calls in flight finish for up to 0.5 s, then closes every connection. */
  async close(): Promise<void> {
    if (this.reaper) clearInterval(this.reaper);
    for (const f of [...this.followers]) f();
    const s = this.server;
    this.net?.close();
    if (s) {
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          s.forceShutdown();
          r();
        }, 500);
        s.tryShutdown(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    for (const conn of this.conns.values()) conn.sock.destroy();
    this.conns.clear();
    this.perUid.clear();
    rmSync(this.path, { force: true });
  }

  private handlers(): AxHandlers {
    const d = this.d;
    const access = this.access;
    type Check = (p: PeerCred) => string | null;
    const read: Check = (p) => access.read(p);
    // Audit data says who talked to whom: operator data, with the same rights as the table.
    const audit: Check = (p) =>
      access.read(p) &&
      `uid ${p.uid} (${userName(p.uid)}) may not read this daemon's audit events: they are operator data; ` +
        (d.config.apiGroup
          ? `root, the daemon's user and members of group ${d.config.apiGroup.name} may read them`
          : `root and the daemon's user may read them (an operator can allow a group with ax daemon --api-group GROUP)`);
    const unary =
      <Req, Res>(check: Check, fn: (req: Req, who: PeerCred) => Res): grpc.handleUnaryCall<Req, Res> =>
      (call, cb) => {
        let done = () => {};
        try {
          const conn = this.connOf(call);
          done = this.begin(conn);
          const why = check(conn.cred);
          if (why) throw new Refused(grpc.status.PERMISSION_DENIED, why);
          cb(null, fn(call.request, conn.cred));
        } catch (e) {
          cb(e instanceof Refused ? fail(e.code, e.message) : fail(grpc.status.INTERNAL, (e as Error).message));
        } finally {
          done();
        }
      };
    return {
      Status: unary(read, (_req, who): StatusReply => ({
        node_name: d.config.nodeName,
        version: VERSION,
        pid: process.pid,
        state_dir: d.config.stateDir,
        hook_socket: d.config.hookSocket,
        host_ip: d.config.hostIp,
        ports: `${d.config.ports.first}-${d.config.ports.last}`,
        vip_range: d.table.vipRangeText,
        handoffs: d.hooks.handoffs,
        sessions: d.hooks.sessions().length,
        apps: d.table.listApps().length,
        services: d.table.services().length,
        uptime_seconds: (Date.now() - d.startedAt) / 1000,
        handoff: d.hooks.handoffMode,
        direct_handoffs: d.hooks.directHandoffs,
        api_socket: d.config.socket,
        log_file: d.config.logFile ?? '',
        autostarted_by: d.config.autostartedBy ?? 0,
        vip_ranges: d.config.vipRanges.map(formatCidr),
        daemon_uid: access.daemonUid,
        caller_uid: who.uid,
        caller_user: userName(who.uid),
        api_group: d.config.apiGroup?.name ?? '',
        label_policy: d.config.labelPolicy?.file ?? '',
        dns_address: d.dnsAddress ? formatAddr(d.dnsAddress) : '',
        dns_upstreams: d.dns && d.dns.upstreams !== 'none' ? d.dns.upstreams.map(formatAddr) : [],
        dns_domains: d.dns ? [...d.names.domains] : [],
        dns_queries: d.dns?.stats.queries ?? 0,
        dns_forwarded: d.dns?.stats.forwarded ?? 0,
        dns_bad: d.dns?.stats.bad ?? 0,
        policy_default: d.config.policyDefault,
        policy_rules: d.policy.rules().length,
        policy_unknown_peers: d.config.policyUnknownPeers,
      })),
      RunApp: (call) => this.runApp(call),
      ListApps: unary(read, (): AppList => ({
        apps: d.table.listApps().map((a): AppMsg => ({
          id: a.id,
          name: a.name,
          node: a.node,
          vip: a.vip,
          labels: a.labels,
          run_pid: a.runPid,
          processes: d.hooks.processCount(a.id),
          services: d.table.services().filter((s) => s.appId === a.id).length,
          expose: a.expose.map((e): ExposeRuleMsg => ({ port: e.port, host_ip: e.hostIp, host_port: e.hostPort })),
          uid: a.uid ?? 0,
          user: a.uid === undefined ? '' : a.node === d.config.nodeName ? userName(a.uid) : String(a.uid),
        })),
      })),
      // Need-to-know: a caller running inside an app sees only the services that app may reach.
      ListServices: unary(read, (_req, who): ServiceList => {
        const app = this.callerApp(who.pid);
        const all = d.table.services();
        return { services: (app ? all.filter((s) => d.policy.lookup(app, s).verdict === 'allow') : all).map(serviceOut) };
      }),
      PolicyPut: unary(
        (p) => access.daemonWide(p, 'change policy rules'),
        (req: PolicyPutRequest__Output, who): PolicyReply => {
          const rules: Rule[] = [];
          (req.rules_json ?? []).forEach((text, i) => {
            try {
              rules.push(checkRule(JSON.parse(text)));
            } catch (e) {
              throw new Refused(grpc.status.INVALID_ARGUMENT, `rule ${i + 1}: ${(e as Error).message}`);
            }
          });
          const recs = d.policy.put(rules);
          d.policyRuntime.sweepNow(); // what the change denies is cut before the caller hears back
          d.log.info(`policy: uid ${who.uid} set ${recs.map((r) => r.id).join(', ')}`);
          return { rules: recs.map(ruleOut), missing: [] };
        },
      ),
      PolicyRemove: unary(
        (p) => access.daemonWide(p, 'change policy rules'),
        (req: PolicyRemoveRequest__Output, who): PolicyReply => {
          const ids = (req.ids ?? []).map(String);
          const recs = d.policy.remove(ids);
          if (recs.length) d.policyRuntime.sweepNow(); // removing an allow can deny
          const gone = new Set(recs.map((r) => r.id));
          if (recs.length) d.log.info(`policy: uid ${who.uid} removed ${[...gone].join(', ')}`);
          return { rules: recs.map(ruleOut), missing: ids.filter((id) => !gone.has(id)) };
        },
      ),
      PolicyList: unary(read, (): PolicyReply => ({
        rules: d.policy
          .allRecords()
          .filter((r) => r.rule)
          .sort((a, b) => (a.id < b.id ? -1 : 1))
          .map(ruleOut),
        missing: [],
      })),
      ListSockets: unary(read, (): SocketList => ({
        sockets: d.table.listSocks().map((s): SocketInfo => ({
          id: s.id,
          app_id: s.appId,
          pid: s.pid,
          state: s.state,
          virtual_addr: formatAddr({ ip: s.vip, port: s.vport }),
          host_addr: formatAddr({ ip: s.hostIp, port: s.hostPort }),
          node: s.node,
          family: s.family === AF_INET6 ? 'inet6' : 'inet',
        })),
      })),
      ListMembers: unary(read, (): MemberList => ({
        members: d.cluster
          ? d.cluster.members().map((m): Member => ({ name: m.name, address: m.address, state: m.state, incarnation: m.incarnation, services: d.table.services().filter((s) => s.node === m.name).length }))
          : [{ name: d.config.nodeName, address: d.config.hostIp, state: 'alive', incarnation: 0, services: d.table.localServices().length }],
      })),
      Events: (call) => this.events(call, audit),
      Graph: (call, cb) => {
        let done = () => {};
        try {
          const conn = this.connOf(call);
          done = this.begin(conn);
          const why = audit(conn.cred);
          if (why) throw new Refused(grpc.status.PERMISSION_DENIED, why);
        } catch (e) {
          done();
          cb(e instanceof Refused ? fail(e.code, e.message) : fail(grpc.status.INTERNAL, (e as Error).message));
          return;
        }
        d.audit.edges(Number(call.request.since_ms) || 0).then(
          (edges): void => cb(null, graphToWire(graphOf(edges), d.audit.stats()) satisfies GraphReply),
          (e: Error) => cb(fail(grpc.status.INTERNAL, `audit: ${e.message}`)),
        ).finally(done);
      },
      Shutdown: unary(
        (p) => access.daemonWide(p, 'stop the daemon'),
        (_req, who): ShutdownReply => {
          d.log.info(`shutdown requested by uid ${who.uid} (pid ${who.pid})`);
          setImmediate(() => d.stopAndExit(0));
          return {};
        },
      ),
    };
  }

  /**
   * The local app a process runs in: the app whose `ax run` is an ancestor of `pid`
   * (/proc/PID/stat parent links), if any.
   */
  private callerApp(pid: number): App | undefined {
    const byRun = new Map<number, App>();
    for (const a of this.d.table.localApps()) if (a.runPid > 0) byRun.set(a.runPid, a);
    if (byRun.size === 0) return undefined;
    let p = pid;
    for (let i = 0; i < 64 && p > 1; i++) {
      const app = byRun.get(p);
      if (app) return app;
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        p = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  /**
   * Validates a new app's request for caller `who`; returns the app to add or
   * throws Refused with the status and the reason.
   */
  private newApp(req: RunRequest__Output, who: PeerCred): App {
    const d = this.d;
    let spec: ReturnType<typeof checkRunRequest>;
    try {
      spec = checkRunRequest(req);
    } catch (e) {
      throw new Refused(grpc.status.INVALID_ARGUMENT, (e as Error).message);
    }
    const privileged = who.uid === 0 || who.uid === this.access.daemonUid;
    const asked = Object.keys(req.labels ?? {}).length > 0 ? spec.labels : {};
    const claim = checkClaims(asked, who, privileged, d.config.labelPolicy);
    if (claim) throw new Refused(grpc.status.PERMISSION_DENIED, claim);
    if (spec.ip) {
      const bad = checkVipInRanges(spec.ip, d.config.vipRanges);
      if (bad) throw new Refused(grpc.status.INVALID_ARGUMENT, `--ip ${bad}`);
    }
    const user = `uid ${who.uid} (${userName(who.uid)})`;
    const labels: Labels = { ...spec.labels, 'ax.user': labelValue(userName(who.uid), who.uid), 'ax.node': labelValue(d.config.nodeName, 0) };
    if (spec.name) labels['ax.name'] = spec.name;
    // Publishing is policy: a name or VIP belongs to the uid that first published it, over the
    // whole cluster (replicated apps included), unless a publish rule lets this app serve it.
    const draft = { id: '', name: spec.name, vip: spec.ip, labels, uid: who.uid, node: d.config.nodeName, createdAt: Date.now() };
    const owned = (holders: App[]) => holders.map((a) => ({ ...a, uid: a.uid ?? this.access.daemonUid }));
    if (spec.name) {
      const holders = owned(d.table.holders(spec.name, ''));
      const dec = d.policy.publish(draft, spec.name, '', 0, 'tcp', holders);
      if (dec.verdict === 'deny') {
        const o = ownerOf(holders);
        throw new Refused(
          grpc.status.PERMISSION_DENIED,
          dec.rule === 'owner' && o
            ? `name "${spec.name}" belongs to uid ${o.uid} (${userName(o.uid!)}${o.node !== d.config.nodeName ? ` on ${o.node}` : ''}); ${user} cannot join its pool. Choose another --name, or add a publish rule allowing it (ax policy)`
            : `name "${spec.name}": ${dec.reason ?? `policy rule ${dec.rule} denies it`}`,
        );
      }
    }
    if (spec.ip) {
      const holders = owned(d.table.holders('', spec.ip));
      const dec = d.policy.publish(draft, spec.name, spec.ip, 0, 'tcp', holders);
      if (dec.verdict === 'deny') {
        const o = ownerOf(holders);
        throw new Refused(
          grpc.status.PERMISSION_DENIED,
          dec.rule === 'owner' && o
            ? `virtual IP ${spec.ip} belongs to uid ${o.uid} (${userName(o.uid!)}${o.node !== d.config.nodeName ? ` on ${o.node}` : ''}); ${user} cannot use it. Choose another --ip`
            : `virtual IP ${spec.ip}: ${dec.reason ?? `policy rule ${dec.rule} denies it`}`,
        );
      }
    }
    const conflict = d.table.checkApp(spec.name, spec.ip);
    if (conflict) throw new Refused(grpc.status.ALREADY_EXISTS, conflict);
    let vip: string;
    try {
      vip = d.table.vipFor(spec.name, spec.ip);
    } catch (e) {
      throw new Refused(grpc.status.RESOURCE_EXHAUSTED, (e as Error).message);
    }
    return {
      id: randomBytes(4).toString('hex'),
      name: spec.name,
      vip,
      labels,
      expose: spec.expose,
      token: randomBytes(12).toString('hex'),
      runPid: Number(req.run_pid) || 0,
      uid: who.uid,
      node: d.config.nodeName,
      createdAt: Date.now(),
    };
  }

  /**
   * Events: the events asked for (one or more messages), then (follow) the new ones as they
   * are recorded, grouped per 20 ms, until the caller cancels. A reader that falls
   * behind by more than FOLLOW_MAX events has the oldest skipped, and told how many.
   */
  private events(call: grpc.ServerWritableStream<EventsRequest__Output, EventBatch>, check: (p: PeerCred) => string | null): void {
    const audit = this.d.audit;
    let done = () => {};
    try {
      const conn = this.connOf(call);
      done = this.begin(conn);
      const why = check(conn.cred);
      if (why) throw new Refused(grpc.status.PERMISSION_DENIED, why);
    } catch (e) {
      done();
      call.emit('error', e instanceof Refused ? fail(e.code, e.message) : fail(grpc.status.INTERNAL, (e as Error).message));
      return;
    }
    const req = call.request;
    const live: StoredEvent[] = [];
    let skipped = 0;
    let lastSeq = 0;
    let ready = false;
    let timer: NodeJS.Timeout | null = null;
    let ended = false;
    const send = () => {
      timer = null;
      if (ended || !ready) return;
      if (call.writableNeedDrain) {
        call.once('drain', send);
        return;
      }
      const events = live.splice(0).filter((e) => e.seq > lastSeq);
      if (events.length === 0 && skipped === 0) return;
      if (events.length > 0) lastSeq = events[events.length - 1].seq;
      call.write({ events: events.map(eventToWire), stats: statsToWire(audit.stats()), skipped });
      skipped = 0;
    };
    const kick = () => {
      if (!timer && ready) timer = setTimeout(send, 20);
    };
    const unsubscribe = req.follow
      ? audit.subscribe((ev) => {
          if (live.length >= FOLLOW_MAX) {
            live.shift();
            skipped++;
          }
          live.push(ev);
          kick();
        })
      : () => {};
    const end = () => {
      if (ended) return;
      ended = true;
      if (timer) clearTimeout(timer);
      unsubscribe();
      this.followers.delete(finish);
      done();
    };
    const finish = () => {
      if (ended) return;
      send();
      call.end();
      end();
    };
    if (req.follow) this.followers.add(finish);
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
    // What is asked for, in messages of at most 1 000 events (any --events-max fits the message limits).
    void (async () => {
      let sent = false;
      for await (const events of audit.read(Number(req.since_ms) || 0, Number(req.limit) || 0, 1000)) {
        if (ended) return;
        lastSeq = events[events.length - 1].seq;
        sent = true;
        if (!call.write({ events: events.map(eventToWire), stats: statsToWire(audit.stats()), skipped: 0 })) {
          await new Promise<void>((r) => {
            call.once('drain', r);
            call.once('close', r);
          });
        }
      }
      if (ended) return;
      if (!sent) call.write({ events: [], stats: statsToWire(audit.stats()), skipped: 0 });
      if (!req.follow) {
        call.end();
        end();
        return;
      }
      ready = true;
      kick();
    })().catch((e: Error) => {
      if (ended) return;
      call.emit('error', fail(grpc.status.INTERNAL, `audit: ${e.message}`));
      end();
    });
  }

  private runApp(call: grpc.ServerWritableStream<RunRequest__Output, RunEvent>): void {
    const d = this.d;
    const req = call.request;
    let app: App | undefined;
    let done = () => {};
    try {
      const conn = this.connOf(call);
      done = this.begin(conn);
      const who = conn.cred;
      if (req.app_id) {
        app = d.table.getApp(String(req.app_id));
        if (!app || app.token !== req.token) throw new Refused(grpc.status.NOT_FOUND, `app ${String(req.app_id)} is not known to this daemon any more`);
        const why = this.access.changeApp(who, app.id, app.uid);
        if (why) throw new Refused(grpc.status.PERMISSION_DENIED, why);
      } else {
        app = this.newApp(req, who);
        d.table.addApp(app);
        d.log.debug(`app ${app.id} ${app.name || '-'} ${app.vip} started by uid ${who.uid}: ${String(req.command ?? '')}`);
      }
    } catch (e) {
      done();
      // emit('error') (not destroy) makes grpc-js send the status: the client sees the reason.
      call.emit('error', e instanceof Refused ? fail(e.code, e.message) : fail(grpc.status.INTERNAL, (e as Error).message));
      return;
    }
    const id = app.id;
    d.attach(id);
    call.write({ app_id: app.id, token: app.token, vip: app.vip, hook_socket: d.config.hookSocket, name: app.name });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      done();
      d.detach(id);
    };
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
  }
}

/** A label value ax sets: the text when it is a valid label value, else the fallback number. */
function labelValue(text: string, fallback: number): string {
  return /^[A-Za-z0-9._-]{1,63}$/.test(text) ? text : String(fallback);
}

function ruleOut(r: { id: string; rule: Rule | null; rev: { t: number; node: string } }): PolicyRuleInfo {
  return { id: r.id, rule_json: r.rule ? JSON.stringify(r.rule) : '', node: r.rev.node, updated_ms: r.rev.t, description: r.rule ? describeRule(r.rule) : 'removed' };
}

function serviceOut(s: Sock): Service {
  return {
    name: s.name,
    vip: s.vip,
    vport: s.vport,
    host_ip: s.hostIp,
    host_port: s.hostPort,
    proto: s.proto ?? 'tcp',
    app_id: s.appId,
    node: s.node,
    labels: s.labels,
    pid: s.pid,
    family: s.family === AF_INET6 ? (s.v6only ? 'ipv6-only' : 'ipv6') : 'ipv4',
  };
}
