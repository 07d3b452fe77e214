// Answers the hook's requests: the socket handoff itself. Every real socket is
// created, bound or connected here, in the daemon's network namespace, and
// passed to the app; the daemon keeps no copy and sees no application data.
//
// Direct handoff: a process in the daemon's own network namespace could reach
// the host ports natively anyway, so creating its connected sockets here gains
// no enforcement. For such sessions (and `--handoff auto`, the default) CONNECT
// is answered DIRECT: policy and load balancing are decided here as always, but
// the hook binds the app's own source address (one per app, see identmap.ts)
// and connects the app's own socket to the picked address, so the server side
// learns the client's VIP from the peer address, with no message.
//
// Sockets are keyed by the kernel socket (SO_COOKIE), not by process: a socket
// the daemon bound stays in the table exactly while the kernel still has it
// (sock_diag), whoever holds it now; a hook that meets a socket it has no
// record of (after exec, received over SCM_RIGHTS) asks LOOKUP once.
import { timingSafeEqual } from 'node:crypto';
import { fstatSync, statSync } from 'node:fs';
import { AF_INET, AF_INET6, isWildcard, unmapV4, type Addr } from '../common/addr';
import type { IdentityMap } from '../hookserver/identmap';
import { socketCookie, type SockDiag } from '../hookserver/sockdiag';
import { rateLimited, type Logger } from '../common/log';
import { PolicyEngine } from '../policy/decide';
import { formatLabels } from '../policy/labels';
import type { Decision } from '../policy/decision';
import * as libc from '../hookserver/libc';
import { BindFlag, CACHE_MAX, ConnectFlag, HelloFlag, Lookup, Op, ProtocolError, ReplyFlag, Status, type Msg } from '../hookserver/proto';
import type { Dispatcher, Reply, Session } from '../hookserver/server';
import type { PortPool } from '../table/ports';
import type { App, Proto, ServiceTable, Sock } from '../table/table';
import { AppTrust, confineSocket, pidAlive, seccompFilters, type Verdict } from './trust';
import type { UdpEgress } from './udpegress';

/** auto: direct handoff for sessions in the daemon's network namespace; fd: always pass sockets. */
export type HandoffMode = 'auto' | 'fd';

const EPERM = 1;
const EBADF = 9;
const EACCES = 13;
const ENOENT = 2;
const EADDRINUSE = 98;
const EADDRNOTAVAIL = 99;
const ENETUNREACH = 101;
const ECONNREFUSED = 111;
const EAFNOSUPPORT = 97;
const ENOBUFS = 105;
/** Logged (rate-limited) when the kernel refuses socket filters to this daemon (see confineSocket). */
const UNCONFINED =
  'the kernel refuses socket filters to this daemon (EPERM) and an isolated app runs without ax-confine (Landlock, native/confine.c): the sockets handed to it are not confined, a raw connect(AF_UNSPEC) can re-aim them (see ax doctor)';

/**
 * The errno an app's bind() or connect() gets when the daemon's own socket call
 * failed: the kernel's bind/connect errnos pass through; the daemon running out
 * of fds or memory (EMFILE, ENFILE, ENOMEM, ...) is ENOBUFS, "insufficient
 * resources" in POSIX bind() and connect(), never EMFILE (the app's own fd
 * table is fine).
 */
export function sysErrno(e: libc.SysError, call: 'bind' | 'connect'): number {
  const passthrough = call === 'bind' ? [EACCES, EADDRINUSE, EADDRNOTAVAIL] : [EADDRNOTAVAIL, ENETUNREACH];
  return passthrough.includes(e.errno) ? e.errno : ENOBUFS;
}

export interface HookDeps {
  table: ServiceTable;
  pool: PortPool;
  hostIp: string;
  log: Logger;
  /** Whether a backend is usable (its node alive); local ones always are. */
  alive?: (s: Sock) => boolean;
  /** Default 'fd' (always correct); the daemon passes its config's mode. */
  handoff?: HandoffMode;
  /** The identity map (generation word + per-app source addresses) hooks map read-only. */
  map?: IdentityMap;
  /** sock_diag, to learn when the kernel's last reference to a socket is gone (absent: by process). */
  diag?: SockDiag;
  /** Whether an app's `ax run` is still attached (its command runs): only then may it still start
   *  listening, and a placeholder hold connects for it. Absent: every registered app may. */
  starting?: (appId: string) => boolean;
  /** The names ax answers (src/dns/names.ts), shared with the DNS responder so a name resolves the
   *  same through getaddrinfo and on the wire. Absent: the table's own names. */
  names?: { resolve(host: string): string | undefined; inAxZone?(host: string): boolean };
  /** The decision layer (publish, connect, lookup verdicts). Absent: the shared-label default,
   *  denied connects get ECONNREFUSED. */
  policy?: PolicyEngine;
  /** Whether `ip` (dotted IPv4 or IPv6) is the host address of another member of the cluster:
   *  connections from there are ax apps judged at their own host's connect. Absent: none. */
  isPeerHost?: (ip: string) => boolean;
  /** Root daemons: the nftables table that keeps the UDP sockets handed to isolated apps aimed
   *  at their backends (src/daemon/udpegress.ts). Absent: isolated apps get no host UDP socket. */
  udpEgress?: UdpEgress;
}


/** How long a placeholder listener waits for its app to bind the port (ms): the default connect-wait. */
const PLACEHOLDER_MS = 5000;
const PLACEHOLDER_BACKLOG = 128;

/** A listener that holds non-blocking connects to an app that is starting (see HookDispatcher.placeholder). */
interface Placeholder {
  fd: number;
  hostIp: string;
  hostPort: number;
  timer: NodeJS.Timeout;
}

/** Inode of a process's network namespace, or 0 when it cannot be read. */
export function netnsInode(pid: number | 'self'): number {
  if (pid !== 'self' && pid <= 0) return 0;
  try {
    return statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return 0;
  }
}

export class HookDispatcher implements Dispatcher {
  handoffs = 0;
  /** of which direct (no socket created here; connects made from cached answers are not seen) */
  directHandoffs = 0;
  readonly handoffMode: HandoffMode;
  private readonly selfNetns = netnsInode('self');
  /** This daemon's own seccomp filters (an app under ax-confine has more: see seccompFilters). */
  private readonly selfFilters = seccompFilters('self');
  private readonly refuseFd: number;
  private readonly refuseAddr: Addr;
  /** A closed UDP port: bound here and connected elsewhere, so the kernel answers any
   *  datagram to it with ICMP port-unreachable, exactly as for a port nobody serves. */
  private readonly refuseUdpFd: number;
  private readonly refuseUdpAddr: Addr;
  private readonly warn: (m: string) => void;
  private readonly liveSessions = new Map<number, Session>();
  /** SO_COOKIE (decimal) -> local socket id */
  private readonly byCookie = new Map<string, number>();
  private reapQueued = false;
  private diagBroken = false;
  /** vip:vport -> placeholder listener of an app that has not listened there yet */
  private readonly placeholders = new Map<string, Placeholder>();
  /** Called after sockets were found gone (the daemon frees apps that have nothing left). */
  onReaped: (n: number) => void = () => {};
  /** Which processes may open sessions for which app (SO_PEERCRED against the launch record). */
  readonly trust = new AppTrust();
  /** The decision layer every verdict here goes through. */
  readonly policy: PolicyEngine;

  constructor(private readonly d: HookDeps) {
    this.policy = d.policy ?? new PolicyEngine({ node: d.table.node, posture: 'shared-label', denyErrno: ECONNREFUSED, unknownPeers: 'allow' });
    this.warn = rateLimited(d.log);
    for (const app of d.table.localApps()) this.trust.addApp(app);
    for (const sock of d.table.listSocks()) if (sock.node === d.table.node) this.trust.addSock(sock);
    d.table.onChange((ch) => {
      if (ch.kind !== 'app' || ch.app.node !== d.table.node) return;
      if (ch.deleted) {
        this.trust.removeApp(ch.app.id);
        d.udpEgress?.removeApp(ch.app.id);
      }
      else this.trust.addApp(ch.app);
    });
    this.handoffMode = d.handoff ?? 'fd';
    // A rule change revokes what isolated apps' UDP sockets may still send to (udpegress.ts).
    const egress = d.udpEgress;
    if (egress) {
      this.policy.onChange(() => {
        const n = egress.prune((appId, backend) => {
          const app = d.table.getApp(appId);
          const svc = d.table.getSock(backend);
          return !!app && !!svc && this.policy.allowsApp(app, svc);
        });
        if (n > 0) d.log.debug(`udp egress: ${n} isolated flow(s) no longer allowed, revoked`);
      });
    }
    // A bound, never-listening socket: connecting to it is refused by the kernel
    // itself, which gives apps the exact ECONNREFUSED semantics, blocking or not.
    this.refuseFd = libc.tcpSocket(AF_INET);
    libc.bind(this.refuseFd, { family: AF_INET, ip: '127.0.0.1', port: 0 }, AF_INET);
    this.refuseAddr = libc.getsockname(this.refuseFd)!;
    this.refuseUdpFd = libc.udpSocket(AF_INET);
    libc.bind(this.refuseUdpFd, { family: AF_INET, ip: '127.0.0.1', port: 0 }, AF_INET);
    this.refuseUdpAddr = libc.getsockname(this.refuseUdpFd)!;
    libc.connect(this.refuseUdpFd, { family: AF_INET, ip: '127.0.0.1', port: 9 }, AF_INET);
    for (const s of d.table.listSocks()) if (s.cookie) this.byCookie.set(s.cookie, s.id);
  }

  close(): void {
    libc.close(this.refuseFd);
    libc.close(this.refuseUdpFd);
    for (const key of [...this.placeholders.keys()]) this.dropPlaceholder(key);
  }

  sessions(): Session[] {
    return [...this.liveSessions.values()];
  }

  handle(s: Session, m: Msg): Reply | null | Promise<Reply> {
    if (m.op === Op.HELLO) return this.hello(s, m);
    const app = s.appId ? this.d.table.getApp(s.appId) : undefined;
    if (!app) {
      // One-way notes are sent without the hook's lock and can race a reconnect
      // (reaching the new session before its HELLO): ignore, never drop.
      if (m.op === Op.CLOSE) return null;
      if (s.appId) return removedApp(m.op); // the app was removed under a live session
      throw new ProtocolError(`${m.op} before HELLO`);
    }
    switch (m.op) {
      case Op.BIND:
        return this.bind(s, app, m);
      case Op.LISTEN:
        return this.listen(s, m);
      case Op.CONNECT:
        return this.connect(s, app, m);
      case Op.CLOSE:
        // A hint only: some process closed its last copy. Whether the socket is
        // gone is the kernel's to say.
        this.scheduleReap();
        return null;
      case Op.RESOLVE: {
        // arg: the generation the answer holds for (hooks keep it until the table changes)
        const generation = this.d.table.generation;
        const vip = this.d.names ? this.d.names.resolve(m.name) : this.d.table.resolve(m.name);
        // ERR ENOENT: "no such name" (EAI_NONAME), answered by the hook, never asked of the
        // system's resolvers: a name the app may not reach (need-to-know) and an
        // unregistered name in an ax zone (NAME.ax, --dns-domain). Other names: NATIVE.
        if (vip) return this.visible(app, vip) ? { status: Status.OK, arg: generation, a: { family: AF_INET, ip: vip, port: 0 } } : { status: Status.ERR, err: ENOENT, arg: generation };
        if (this.d.names?.inAxZone?.(m.name)) return { status: Status.ERR, err: ENOENT, arg: generation };
        return { status: Status.NATIVE, arg: generation };
      }
      case Op.LOOKUP:
        return this.lookup(app, m);
      case Op.ACCEPT:
        return this.accept(app, m);
      case Op.REVERSE: {
        const name = m.a ? this.d.table.nameOf(unmapV4(m.a.ip)) : undefined;
        return name ? { status: Status.OK, name } : { status: Status.NATIVE };
      }
      default:
        throw new ProtocolError(`unexpected op ${m.op}`);
    }
  }

  /**
   * HELLO: the token names the app; the kernel's word on the peer (SO_PEERCRED
   * pid and uid) decides whether this process belongs to it. A refused session
   * gets EACCES and is closed.
   */
  private hello(s: Session, m: Msg): Reply {
    const [appId, token] = m.name.split(':');
    const app = appId ? this.d.table.getApp(appId) : undefined;
    if (!app || !sameToken(app.token, token ?? '')) {
      this.warn(`hook session ${s.id} (pid ${s.pid}, uid ${s.uid}): unknown app or wrong token "${appId ?? ''}"`);
      return { status: Status.ERR, err: EACCES, end: true };
    }
    if (s.appId && s.appId !== app.id) throw new ProtocolError(`HELLO for app ${app.id} in a session of app ${s.appId}`);
    const verdict = this.verdictFor(app, s.pid, s.uid);
    if (!verdict.ok) {
      this.warn(`hook session ${s.id} (pid ${s.pid}, uid ${s.uid}) refused for app ${app.id}: ${verdict.why}`);
      return { status: Status.ERR, err: EACCES, end: true };
    }
    s.appId = app.id;
    this.liveSessions.set(s.id, s);
    const foreign = !this.sameNetns(s.pid);
    const direct = (m.arg & HelloFlag.DIRECT) !== 0 && this.handoffMode === 'auto' && !foreign;
    s.data.direct = direct;
    // Outside our network namespace (ax run --isolate): sockets handed in are confined, by
    // our socket filters and, where ax-confine runs the app, by Landlock (kernel-reported).
    s.data.foreign = foreign;
    s.data.supervised = foreign && seccompFilters(s.pid) > this.selfFilters;
    this.d.log.debug(`hook session ${s.id} (pid ${s.pid}, app ${app.id}): handoff ${direct ? 'direct' : 'fd'}`);
    this.d.log.debug(`hook session ${s.id}: uid ${s.uid} admitted through ${verdict.via}`);
    const src = this.sourceOf(app);
    return {
      status: Status.OK,
      sock: s.id,
      // FOREIGN: the hook does not redirect DNS to our responder (out of its namespace's reach).
      arg: (direct ? HelloFlag.DIRECT : 0) | (foreign ? HelloFlag.FOREIGN : 0),
      a: { family: AF_INET, ip: app.vip, port: 0 },
      b: direct && src ? { family: AF_INET, ip: src, port: 0 } : null,
      name: this.d.map?.path ?? '',
    };
  }

  /** Whether process `pid` (SO_PEERCRED) belongs to `app`: its ancestry, or a socket of the app it holds (trust.ts). */
  private verdictFor(app: App, pid: number, uid: number): Verdict {
    const verdict = this.trust.verify(app, pid, uid);
    if (!verdict.ok && this.trust.adoptHolder(app.id, pid, this.socketInodes(app.id))) {
      return { ok: true, via: 'a socket of the app it holds (inherited or received)' };
    }
    return verdict;
  }

  /**
   * Admits a DNS relay connection (src/dns/relay.ts, from ax-dnsrelay inside an isolated
   * app) exactly as a hook session's HELLO: `appToken` is "<app id>:<token>", and the peer
   * process (`pid`, `uid` from SO_PEERCRED) must belong to that app. Returns the app's id,
   * or why not. Throws when /proc cannot be read (no verdict).
   */
  admit(pid: number, uid: number, appToken: string): { ok: true; appId: string } | { ok: false; why: string } {
    const [appId, token] = appToken.split(':');
    const app = appId ? this.d.table.getApp(appId) : undefined;
    if (!app || !sameToken(app.token, token ?? '')) return { ok: false, why: `unknown app or wrong token "${appId ?? ''}"` };
    const verdict = this.verdictFor(app, pid, uid);
    if (!verdict.ok) return { ok: false, why: verdict.why };
    this.d.log.debug(`dns relay for app ${app.id}: pid ${pid} uid ${uid} admitted through ${verdict.via}`);
    return { ok: true, appId: app.id };
  }

  /** For the DNS responder: whether the app `appId` (a relayed query's asker) may see `name`. */
  visibleToApp(appId: string, name: string): boolean {
    const vip = this.d.table.resolve(name);
    if (!vip) return true;
    const app = this.d.table.getApp(appId);
    if (!app) return this.policy.opts.unknownPeers === 'allow';
    return this.visible(app, vip);
  }

  /** Inodes of this node's sockets of an app (the kernel files it was handed). */
  private socketInodes(appId: string): Set<number> {
    const out = new Set<number>();
    for (const sock of this.d.table.listSocks()) if (sock.appId === appId && sock.inode) out.add(sock.inode);
    return out;
  }

  /** The app's own source address (dotted), or '' when it has none. */
  private sourceOf(app: App): string {
    return this.d.map && app.srcIndex ? this.d.map.sourceIp(app.srcIndex) : '';
  }

  /** The process is in the daemon's network namespace (same nsfs inode). */
  private sameNetns(pid: number): boolean {
    if (this.selfNetns === 0) return false;
    return netnsInode(pid) === this.selfNetns;
  }

  private bind(s: Session, app: App, m: Msg): Reply {
    const a = m.a;
    if (!a) throw new ProtocolError('BIND without an address');
    if (a.family !== AF_INET && a.family !== AF_INET6) return { status: Status.ERR, err: EAFNOSUPPORT };
    const ip = unmapV4(a.ip);
    const wildcard = isWildcard(a.ip);
    if (!wildcard && ip !== app.vip) {
      // Another app's virtual address cannot be bound; real addresses bind natively.
      return this.d.table.isVirtual(ip) ? { status: Status.ERR, err: EADDRNOTAVAIL } : { status: Status.NATIVE };
    }
    const family = a.family;
    const v6only = (m.arg & BindFlag.V6ONLY) !== 0;
    const reusePort = (m.arg & BindFlag.REUSEPORT) !== 0;
    const proto = m.arg & BindFlag.DGRAM ? 'udp' : 'tcp';
    // Publishing is policy: the name/VIP belongs to the uid that first published it (cluster-wide).
    const pub = this.policy.publish(app, app.name, app.vip, a.port, proto, this.d.table.holders(app.name, app.vip));
    if (pub.verdict === 'deny') {
      this.warn(`policy: app ${app.id} may not publish ${app.vip}:${a.port}: ${pub.reason ?? pub.rule}`);
      return { status: Status.ERR, err: EACCES };
    }
    // A host UDP socket bound for an app outside our namespace (--isolate) could sendto
    // anywhere: only a root daemon's nftables table (udpEgress) keeps it to replies and the
    // destinations allowed one by one (AX_CF_SENDTO); without it, such an app binds UDP in
    // its own namespace.
    if (proto === 'udp' && s.data.foreign === true && !this.d.udpEgress) return { status: Status.NATIVE };
    const reuseAddr = proto === 'udp' && (m.arg & BindFlag.REUSEADDR) !== 0;
    if (a.port !== 0 && this.conflict(app, a.port, reusePort, family, v6only, proto, reuseAddr)) return { status: Status.ERR, err: EADDRINUSE };
    // UDP sockets that share a virtual port (SO_REUSEADDR or SO_REUSEPORT on both) share
    // its host port, so the kernel applies its own rules (a connected socket gets its
    // peer's datagrams, the others the rest).
    const sharing =
      proto === 'udp' && a.port !== 0 && (reuseAddr || reusePort)
        ? this.d.table
            .listSocks()
            .find(
              (o) =>
                o.appId === app.id && o.proto === 'udp' && o.vip === app.vip && o.vport === a.port && o.node === this.d.table.node &&
                o.family === family && !!o.v6only === v6only &&
                ((reuseAddr && o.reuseAddr) || (reusePort && o.reusePort)),
            )
        : undefined;
    const rule = a.port !== 0 ? app.expose.find((r) => r.port === a.port) : undefined;
    let fd = -1;
    let hostIp = this.d.hostIp;
    if (family === AF_INET6 && v6only) hostIp = hostIp.startsWith('127.') ? '::1' : '::';
    // A UDP service on a loopback host IP is bound on the app's own source address: the
    // datagrams it sends carry the app's identity, as its connections do (udp.c).
    const src = this.sourceOf(app);
    if (proto === 'udp' && src && hostIp.startsWith('127.') && !rule) hostIp = family === AF_INET6 && v6only ? hostIp : src;
    const tryBind = (ipText: string, port: number): number => {
      const sfd = proto === 'udp' ? libc.udpSocket(family) : libc.tcpSocket(family);
      try {
        libc.setReuse(sfd, reusePort);
        if (family === AF_INET6) libc.setV6Only(sfd, v6only);
        libc.bind(sfd, { family: ipText.includes(':') ? AF_INET6 : AF_INET, ip: ipText, port }, family);
        return sfd;
      } catch (e) {
        libc.close(sfd);
        throw e;
      }
    };
    let hostPort: number;
    const ph =
      a.port !== 0 && proto === 'tcp' ? this.takePlaceholder(app.vip, a.port, family, reusePort || v6only || rule !== undefined) : undefined;
    try {
      if (sharing) {
        hostIp = sharing.hostIp;
        hostPort = sharing.hostPort;
        fd = tryBind(hostIp, hostPort);
      } else if (ph) {
        // Connections made while the app was starting wait in this socket's queue.
        fd = ph.fd;
        hostPort = ph.hostPort;
        hostIp = ph.hostIp;
      } else if (rule) {
        if (rule.hostIp) hostIp = rule.hostIp;
        fd = tryBind(hostIp, rule.hostPort);
        hostPort = rule.hostPort;
        this.d.pool.reserve(hostPort);
      } else {
        hostPort = this.d.pool.allocate((port) => {
          try {
            fd = tryBind(hostIp, port);
            return true;
          } catch (e) {
            if (e instanceof libc.SysError && e.errno === EADDRINUSE) return false;
            throw e;
          }
        });
        if (hostPort === 0) {
          this.warn(`host port pool ${this.d.pool.range.first}-${this.d.pool.range.last} is exhausted`);
          return { status: Status.ERR, err: EADDRNOTAVAIL };
        }
      }
    } catch (e) {
      if (e instanceof libc.SysError) {
        this.warn(`bind for app ${app.id} on ${hostIp}: ${e.message}`);
        return { status: Status.ERR, err: sysErrno(e, 'bind') };
      }
      throw e;
    }
    const vport = a.port !== 0 ? a.port : hostPort;
    if (a.port === 0 && this.conflict(app, vport, reusePort, family, v6only, proto, reuseAddr)) {
      // The pool gave a port some socket of this app already uses as a virtual port.
      libc.close(fd);
      this.d.pool.release(hostPort);
      return { status: Status.ERR, err: EADDRINUSE };
    }
    if (s.data.foreign === true) {
      // An app outside our network namespace (ax run --isolate) cannot re-aim it (trust.ts);
      // a UDP service's sends are confined by its mark (udpegress.ts: replies, and what the
      // app was allowed), not by a socket filter (that one is for TCP listeners).
      try {
        if (proto === 'udp') this.d.udpEgress!.markService(fd, app.id);
        else if (!confineSocket(fd, null) && s.data.supervised !== true) this.warn(UNCONFINED);
      } catch (e) {
        libc.close(fd);
        if (!ph) this.d.pool.release(hostPort);
        this.warn(`bind for app ${app.id}: ${(e as Error).message}`);
        return { status: Status.ERR, err: ENOBUFS };
      }
    }
    const seen = wildcard ? a.ip : family === AF_INET6 ? `::ffff:${app.vip}` : app.vip;
    const cookie = socketCookie(fd);
    let inode = 0;
    try {
      inode = fstatSync(fd).ino;
    } catch {
      /* no inode: the socket still works; only adoptHolder cannot use it */
    }
    const sock: Sock = {
      id: this.d.table.newSockId(),
      appId: app.id,
      name: app.name,
      pid: s.pid,
      node: this.d.table.node,
      family,
      vip: app.vip,
      vport,
      hostIp,
      hostPort,
      state: proto === 'udp' ? 'listening' : 'bound',
      labels: app.labels,
      reusePort,
      v6only: family === AF_INET6 && v6only,
      createdAt: Date.now(),
      cookie: cookie ? cookie.toString() : undefined,
      inode: inode || undefined,
      bindIp: seen,
      ...(proto === 'udp' ? { proto, reuseAddr } : {}),
    };
    this.d.table.addSock(sock);
    if (sock.cookie) this.byCookie.set(sock.cookie, sock.id);
    this.handoffs++;
    return { status: Status.OK, fd, sock: sock.id, a: { family, ip: seen, port: vport } };
  }

  /**
   * Whether vip:port is taken for this bind, as the kernel would say. A socket
   * the table still lists may have been closed by its last holder an instant
   * ago (a server restarted at once): the kernel is asked before refusing.
   */
  private conflict(app: App, port: number, reusePort: boolean, family: number, v6only: boolean, proto: Proto = 'tcp', reuseAddr = false): boolean {
    const c = () => this.d.table.conflicting(app.id, app.vip, port, reusePort, family, v6only, proto, reuseAddr);
    if (!c()) return false;
    return this.reapDead() === 0 || c() !== undefined;
  }

  private listen(s: Session, m: Msg): Reply {
    const sock = this.d.table.getSock(m.sock);
    if (!sock || sock.appId !== s.appId) return { status: Status.ERR, err: EBADF };
    this.d.table.setListening(sock.id);
    this.d.log.debug(`listening: ${sock.name || sock.appId} ${sock.vip}:${sock.vport} -> ${sock.hostIp}:${sock.hostPort}`);
    return { status: Status.OK, sock: sock.id };
  }

  private connect(s: Session, app: App, m: Msg): Reply | Promise<Reply> {
    const dest = m.a;
    const family = m.b?.family ?? AF_INET;
    if (!dest) throw new ProtocolError('CONNECT without an address');
    if (family !== AF_INET && family !== AF_INET6) throw new ProtocolError(`CONNECT for family ${family}`);
    const ip = unmapV4(dest.ip);
    if (!this.d.table.isVirtual(ip)) {
      // Egress: with rules for real destinations (cidr), a connect to one is judged here
      // (every TCP connect to a real address asks the daemon). Datagrams to real
      // destinations ask only while the map's F_EGRESS flag is set, once per destination
      // (the hook keeps the verdict for the generation in arg); denied: EPERM, what a
      // netfilter OUTPUT drop gives a UDP send natively.
      const dgram = (m.arg & ConnectFlag.DGRAM) !== 0;
      const generation = this.d.table.generation;
      if (this.policy.hasEgress) {
        const dec = this.policy.egress(app, ip, dest.port, dgram ? 'udp' : 'tcp');
        if (dec.verdict === 'deny') {
          this.warn(`policy: app ${app.id} (${formatLabels(app.labels)}) may not ${dgram ? 'send udp' : 'connect'} to ${ip}:${dest.port}: ${dec.reason ?? dec.rule}`);
          return dgram ? { status: Status.ERR, err: EPERM, arg: generation } : { status: Status.ERR, err: this.policy.opts.denyErrno };
        }
      }
      return dgram ? { status: Status.NATIVE, arg: generation } : { status: Status.NATIVE };
    }
    if (m.arg & ConnectFlag.DGRAM) {
      // A host UDP socket handed to an app outside our namespace could be re-aimed anywhere:
      // only a root daemon's nftables table (udpEgress) keeps it to its backend.
      if (s.data.foreign === true && !this.d.udpEgress) return { status: Status.ERR, err: ENETUNREACH };
      if (m.arg & ConnectFlag.SENDTO && s.data.foreign === true) return this.sendto(app, dest, ip, family, m);
      return this.datagram(s, app, dest, ip, family);
    }
    const pol = this.policy;
    const pick = this.d.table.pick(ip, dest.port, (b) => pol.allowsApp(app, b), this.d.alive);
    if (pick.kind === 'denied' || ((pick.kind === 'waiting' || pick.kind === 'closed') && !this.mayReachApp(app, ip, dest.port, 'tcp'))) {
      return this.deny(app, ip, dest.port, 'tcp');
    }
    switch (pick.kind) {
      case 'unknown':
        return { status: Status.ERR, err: ENETUNREACH };
      case 'waiting': {
        if (m.arg & ConnectFlag.WAIT) return { status: Status.PENDING };
        // A non-blocking connect cannot wait here: it connects to a placeholder
        // listener on the host port the app's first bind of that port will get,
        // and its connection is accepted once the app listens.
        const ph = m.arg & ConnectFlag.NONBLOCK ? this.placeholder(ip, dest.port) : undefined;
        if (!ph) return this.refuse(s, app, dest, family);
        const target: Addr = { family: AF_INET, ip: ph.hostIp, port: ph.hostPort };
        if (s.data.direct === true) return this.direct(dest, family, target, true);
        return this.handoff(s, app, dest, family, target, true);
      }
      case 'closed':
        return this.refuse(s, app, dest, family);
      case 'backend': {
        const b = pick.sock;
        pol.connect(app, b);
        const target: Addr = { family: b.hostIp.includes(':') ? AF_INET6 : AF_INET, ip: b.hostIp, port: b.hostPort };
        if (family === AF_INET && target.family === AF_INET6) return { status: Status.ERR, err: ENETUNREACH };
        const local = b.node === this.d.table.node;
        if (s.data.direct === true) {
          const r = this.direct(dest, family, target, local);
          this.cacheable(r, pick.all, family);
          return r;
        }
        return this.handoff(s, app, dest, family, target, local);
      }
    }
  }

  /**
   * ACCEPT: a connection from a peer that is no local ax app reached listening socket
   * m.sock (the hook asks only while the map's flags say accepts are filtered). A peer at
   * another cluster member's host address is an ax app (judged at its own host's connect):
   * allowed. Any other is judged by the decision layer (from_cidr rules, then
   * --policy-unknown-peers), which records the decision. arg: the generation the verdict
   * holds for (the hook keeps it per listening socket and peer IP until the table or the
   * rules change).
   */
  private accept(app: App, m: Msg): Reply {
    const generation = this.d.table.generation;
    const sock = this.d.table.getSock(m.sock);
    if (!sock || sock.appId !== app.id || !m.a) return { status: Status.NATIVE };
    const ip = unmapV4(m.a.ip);
    const idx = this.d.map ? this.d.map.indexOf(ip) : -1;
    if ((idx > 0 && this.d.table.appBySource(idx)) || this.d.isPeerHost?.(ip)) return { status: Status.OK, arg: generation };
    const peer = ip.includes(':') ? `[${ip}]:${m.a.port}` : `${ip}:${m.a.port}`;
    const d = this.policy.accept(undefined, sock, peer);
    if (d.verdict === 'allow') return { status: Status.OK, arg: generation };
    this.warn(`policy: connection from ${peer} to ${sock.name || sock.appId} (${sock.vip}:${sock.vport}) reset: ${d.reason ?? d.rule}`);
    return { status: Status.ERR, err: EACCES, arg: generation };
  }

  /**
   * Where datagrams to a virtual dest go (a UDP connect, or the first sendto of a flow):
   * a udp backend (balanced like TCP; cacheable, so the hook picks per flow); else,
   * when the VIP is a local app's, its own source address with the port as given (a
   * reply to a client of that app, whose socket is bound there); else a closed port.
   */
  private datagram(s: Session, app: App, dest: Addr, ip: string, family: number): Reply | Promise<Reply> {
    const f = this.udpFlow(app, dest, ip, family);
    if (!('target' in f)) return f;
    if (s.data.direct !== true) return this.handoffDgram(app, dest, family, f.target, f.local, s.data.foreign === true, f.backend);
    const r = this.direct(dest, family, f.target, f.local);
    if (f.all.length > 0) this.cacheable(r, f.all, family);
    return r;
  }

  /**
   * How a datagram from `app` to virtual `dest` (`ip`: its address as text) is judged, for
   * `datagram` and `sendto` alike. Returns a refusal (ENETUNREACH for an unknown VIP, or for an
   * IPv6 backend picked for an IPv4 socket; the policy's denial), else where the datagram goes:
   * `target`, the picked backend's host address (counted as a connect by the policy), or, for a
   * VIP with no service on that port, a reply to one of its app's clients (allowed when either
   * side may reach the other): that app's source address, or the refusing address; `all`: every
   * allowed backend; `local`: the target is on this node; `backend`: the picked socket's id.
   */
  private udpFlow(app: App, dest: Addr, ip: string, family: number): Reply | { target: Addr; all: Sock[]; local: boolean; backend?: number } {
    const pol = this.policy;
    const pick = this.d.table.pick(ip, dest.port, (b) => pol.allowsApp(app, b), this.d.alive, 'udp');
    if (pick.kind === 'unknown') return { status: Status.ERR, err: ENETUNREACH };
    if (pick.kind === 'denied' || (pick.kind !== 'backend' && !this.mayReachApp(app, ip, dest.port, 'udp') && !this.reachedBy(app, ip))) {
      return this.deny(app, ip, dest.port, 'udp');
    }
    if (pick.kind === 'backend') {
      pol.connect(app, pick.sock);
      const b = pick.sock;
      const target = { family: b.hostIp.includes(':') ? AF_INET6 : AF_INET, ip: b.hostIp, port: b.hostPort };
      if (family === AF_INET && target.family === AF_INET6) return { status: Status.ERR, err: ENETUNREACH };
      return { target, all: pick.all, local: b.node === this.d.table.node, backend: b.id };
    }
    const owner = this.d.table.localApps().find((a) => a.vip === ip);
    const src = owner ? this.sourceOf(owner) : '';
    return { target: src ? { family: AF_INET, ip: src, port: dest.port } : this.refuseUdpAddr, all: [], local: true };
  }

  /**
   * AX_CF_SENDTO (foreign sessions, root daemon): an isolated app's unconnected UDP socket
   * sends to virtual `dest`. Judged as `datagram` judges a flow; then every allowed backend
   * (or the one target of a reply to a client of the app owning the VIP, or the closed port)
   * becomes an element for the app's mark from its host sources (udpegress.ts) before the
   * answer. Without ConnectFlag.HOST the answer carries an unconnected host UDP socket bound
   * to the app's source address (port m.b.port if free, else any), marked; with it, none
   * (DIRECT: the app's socket is such a socket already). b: this datagram's backend; cache:
   * every backend (the hook keeps them under the generation).
   */
  private sendto(app: App, dest: Addr, ip: string, family: number, m: Msg): Reply | Promise<Reply> {
    const egress = this.d.udpEgress!;
    const f = this.udpFlow(app, dest, ip, family);
    if (!('target' in f)) return f;
    const target = f.target;
    // every allowed backend an IPv4 socket can reach (the hook picks among them per flow)
    const all = f.all.filter((b) => family === AF_INET6 || !b.hostIp.includes(':'));
    const targets = f.backend === undefined ? [{ ip: target.ip, port: target.port }] : all.map((b) => ({ ip: b.hostIp, port: b.hostPort, backend: b.id }));
    const host = (m.arg & ConnectFlag.HOST) !== 0;
    // The sources the app's host sockets have: its source address (unconnected senders) and
    // the host addresses its UDP services are bound on.
    const src = this.sourceOf(app) || this.d.hostIp;
    const sources = new Set([src]);
    for (const o of this.d.table.listSocks()) if (o.appId === app.id && o.proto === 'udp' && o.node === this.d.table.node) sources.add(o.hostIp);
    const reply: Reply = { status: host ? Status.DIRECT : Status.OK, a: dest, b: realDest(target, family) };
    if (all.length > 0) this.cacheable(reply, all, family);
    let fd = -1;
    if (!host) {
      try {
        fd = libc.udpSocket(family);
      } catch (e) {
        if (!(e instanceof libc.SysError)) throw e;
        this.warn(`udp send for isolated app ${app.id}: ${e.message}`);
        return { status: Status.ERR, err: sysErrno(e, 'connect') };
      }
      const port = m.b?.port ?? 0;
      try {
        try {
          libc.bind(fd, { family: src.includes(':') ? AF_INET6 : AF_INET, ip: src, port }, family);
        } catch (e) {
          if (port === 0 || !(e instanceof libc.SysError) || e.errno !== EADDRINUSE) throw e;
          libc.bind(fd, { family: src.includes(':') ? AF_INET6 : AF_INET, ip: src, port: 0 }, family);
        }
      } catch (e) {
        libc.close(fd);
        this.warn(`udp send for isolated app ${app.id}: source ${src}: ${(e as Error).message}`);
        return { status: Status.ERR, err: ENETUNREACH };
      }
      reply.fd = fd;
      reply.err = 0;
      this.handoffs++;
    }
    return egress.allowAll(host ? null : fd, app.id, [...sources], targets).then(
      () => reply,
      (e: Error) => {
        if (fd >= 0) libc.close(fd);
        this.warn(`udp send for isolated app ${app.id}: ${e.message}`);
        return { status: Status.ERR, err: ENETUNREACH };
      },
    );
  }

  /**
   * A denied connect: the decision is made (and published) against a listener of vip:port,
   * or the app owning the VIP; the app gets --policy-deny-errno at once, nothing is sent.
   */
  private deny(app: App, ip: string, port: number, proto: Proto): Reply {
    const svc = this.d.table.services().find((s) => s.vip === ip && s.vport === port && (s.proto ?? 'tcp') === proto);
    const owner = this.d.table.listApps().find((a) => a.vip === ip);
    const target = svc ?? { appId: owner?.id ?? '', name: owner?.name ?? '', vip: ip, vport: port, labels: owner?.labels ?? {}, proto };
    const d: Decision = this.policy.connect(app, target);
    const what = proto === 'udp' ? `send to udp ${ip}:${port}` : `connect to ${ip}:${port}`;
    this.warn(`policy: app ${app.id} (${formatLabels(app.labels)}) may not ${what}: ${d.reason ?? d.rule} (rule ${d.rule})`);
    return { status: Status.ERR, err: this.policy.opts.denyErrno };
  }

  /** Whether `app` may reach the app owning `ip` on port (no listener to judge against yet). */
  private mayReachApp(app: App, ip: string, port: number, proto: Proto): boolean {
    const owner = this.d.table.listApps().find((a) => a.vip === ip);
    if (!owner) return true;
    return this.policy.allows(app.labels, { appId: owner.id, name: owner.name, vip: ip, vport: port, labels: owner.labels, proto });
  }

  /** Whether the app owning `ip` may reach `app` on some port (UDP replies). */
  private reachedBy(app: App, ip: string): boolean {
    const owner = this.d.table.listApps().find((a) => a.vip === ip);
    if (!owner) return true;
    return this.policy.allows(owner.labels, { appId: app.id, name: app.name, vip: app.vip, vport: 0, labels: app.labels, proto: 'udp' });
  }

  /**
   * Whether `app` may learn that `vip` exists (need-to-know discovery): a lookup decision
   * against the app owning it, or one of its services when no app record has arrived yet.
   */
  visible(app: App, vip: string): boolean {
    const owner = this.d.table.listApps().find((a) => a.vip === vip);
    const target = owner
      ? { appId: owner.id, name: owner.name, vip, vport: 0, labels: owner.labels }
      : this.d.table.services().find((s) => s.vip === vip);
    if (!target) return true;
    return this.policy.lookup(app, target).verdict === 'allow';
  }

  /**
   * For the DNS responder: whether the asker at `askerAddr` (an app's own source address, a
   * local app's VIP, v4-mapped or not) may see `name` ("web", "web.ax"). Names that are no
   * ax name answer true (not ours to hide). An asker that is no local app is judged by
   * --policy-unknown-peers (allow: sees every name).
   */
  visibleTo(askerAddr: string, name: string): boolean {
    const vip = this.d.table.resolve(name);
    if (!vip) return true;
    const ip = unmapV4(askerAddr);
    const idx = this.d.map ? this.d.map.indexOf(ip) : -1;
    const app = (idx > 0 ? this.d.table.appBySource(idx) : undefined) ?? this.d.table.localApps().find((a) => a.vip === ip);
    if (!app) return this.policy.opts.unknownPeers === 'allow';
    return this.visible(app, vip);
  }

  /**
   * fd handoff of a connected UDP socket (fd sessions). `foreign`: for an app outside our
   * network namespace (ax run --isolate), the socket is confined before it leaves: a locked
   * socket filter lets only the target's datagrams in, and its mark lets it send only to the
   * target (udpEgress: the set element is in place before the reply).
   */
  private handoffDgram(app: App, dest: Addr, family: number, target: Addr, local: boolean, foreign = false, backend?: number): Reply | Promise<Reply> {
    let fd: number;
    try {
      fd = libc.udpSocket(family);
    } catch (e) {
      if (!(e instanceof libc.SysError)) throw e;
      this.warn(`udp connect for app ${app.id}: ${e.message}`);
      return { status: Status.ERR, err: sysErrno(e, 'connect') };
    }
    const src = local ? this.sourceOf(app) : '';
    if (src) {
      try {
        libc.bind(fd, { family: AF_INET, ip: src, port: 0 }, family);
      } catch (e) {
        this.warn(`source address ${src} for app ${app.id}: ${(e as Error).message}`);
      }
    }
    const err = libc.connect(fd, target, family);
    if (err !== 0) {
      libc.close(fd);
      return { status: Status.ERR, err };
    }
    this.handoffs++;
    const reply: Reply = { status: Status.OK, fd, err: 0, a: dest, b: realDest(target, family) };
    const egress = this.d.udpEgress;
    if (!foreign) return reply;
    try {
      if (!egress) throw new Error('no udp egress table');
      confineSocket(fd, target);
    } catch (e) {
      libc.close(fd);
      this.warn(`udp connect for isolated app ${app.id}: ${(e as Error).message}`);
      return { status: Status.ERR, err: ENETUNREACH };
    }
    // The source the kernel chose at connect (the app's source address, or the route's).
    const me = libc.getsockname(fd);
    if (!me) {
      libc.close(fd);
      return { status: Status.ERR, err: ENETUNREACH };
    }
    return egress.allow(fd, app.id, me.ip, target.ip, target.port, backend).then(
      () => reply,
      (e: Error) => {
        libc.close(fd);
        this.warn(`udp connect for isolated app ${app.id}: ${e.message}`);
        return { status: Status.ERR, err: ENETUNREACH };
      },
    );
  }

  /** A connect the kernel itself refuses (a bound socket that never listens). */
  private refuse(s: Session, app: App, dest: Addr, family: number): Reply {
    if (s.data.direct === true) return this.direct(dest, family, this.refuseAddr, true);
    return this.handoff(s, app, dest, family, this.refuseAddr, true);
  }

  /** fd handoff: the socket is created, given the app's source address and connected here. */
  private handoff(s: Session, app: App, dest: Addr, family: number, target: Addr, local: boolean): Reply {
    let fd: number;
    try {
      fd = libc.tcpSocket(family);
    } catch (e) {
      if (!(e instanceof libc.SysError)) throw e;
      this.warn(`connect for app ${app.id}: ${e.message}`);
      return { status: Status.ERR, err: sysErrno(e, 'connect') };
    }
    const src = local ? this.sourceOf(app) : '';
    if (src) {
      try {
        libc.bindNoPort(fd, { family: AF_INET, ip: src, port: 0 }, family);
      } catch (e) {
        this.warn(`source address ${src} for app ${app.id}: ${(e as Error).message}`);
      }
    }
    const err = libc.connect(fd, target, family);
    this.handoffs++;
    try {
      // An app outside our network namespace (ax run --isolate) cannot re-aim it (trust.ts).
      if (s.data.foreign === true && !confineSocket(fd, target) && s.data.supervised !== true) this.warn(UNCONFINED);
    } catch (e) {
      libc.close(fd);
      this.warn(`connect for app ${app.id}: ${(e as Error).message}`);
      return { status: Status.ERR, err: ENOBUFS };
    }
    return { status: Status.OK, fd, err, a: dest, b: realDest(target, family) };
  }

  /**
   * DIRECT answer: no socket here; the hook binds its app's source address (for
   * a backend on this host) and connects the app's socket to `target`.
   */
  private direct(dest: Addr, family: number, target: Addr, local: boolean): Reply {
    this.handoffs++;
    this.directHandoffs++;
    return { status: Status.DIRECT, a: dest, b: realDest(target, family), flags: local ? ReplyFlag.LOCAL : 0 };
  }

  /**
   * Lets the hook reuse a DIRECT answer until the table changes: every backend
   * the client may use goes along (the hook takes them round robin), with the
   * table generation the answer is valid for.
   */
  private cacheable(r: Reply, all: Sock[], family: number): void {
    if (all.length > CACHE_MAX) return;
    const addrs: Addr[] = [];
    let mask = 0;
    for (const b of all) {
      const v6 = b.hostIp.includes(':');
      if (family === AF_INET && v6) return; // not every backend reachable from this socket family
      if (b.node === this.d.table.node) mask |= 1 << addrs.length;
      addrs.push(realDest({ family: v6 ? AF_INET6 : AF_INET, ip: b.hostIp, port: b.hostPort }, family));
    }
    r.cache = { generation: this.d.table.generation, backends: addrs, localMask: mask };
  }

  /**
   * LOOKUP: the virtual view of a socket a hook has no record of (inherited
   * across exec, received over SCM_RIGHTS), from the kernel's identity of the
   * socket (cookie) or, for connected sockets, from its real addresses.
   */
  private lookup(app: App, m: Msg): Reply {
    const cookie = m.cookie ? m.cookie.toString() : '';
    const id = cookie ? this.byCookie.get(cookie) : undefined;
    const sock = id !== undefined ? this.d.table.getSock(id) : undefined;
    if (sock && sock.cookie === cookie) {
      const ip = sock.bindIp ?? (sock.family === AF_INET6 ? `::ffff:${sock.vip}` : sock.vip);
      const state = sock.state === 'listening' ? Lookup.LISTEN : Lookup.BOUND;
      return { status: Status.OK, sock: sock.id, arg: state, a: { family: sock.family, ip, port: sock.vport } };
    }
    const local = m.a;
    const peer = m.b;
    if (!local || !peer) return { status: Status.NATIVE };
    const lip = unmapV4(local.ip);
    const pip = unmapV4(peer.ip);
    // The server end of an accepted connection: the local address is a service's host address.
    for (const s of this.d.table.localServices()) {
      if (s.hostPort !== local.port || unmapV4(s.hostIp) !== lip) continue;
      const client = this.d.map ? this.d.table.appBySource(this.d.map.indexOf(pip)) : undefined;
      return {
        status: Status.OK,
        sock: 0,
        arg: Lookup.ACCEPTED,
        a: { family: AF_INET, ip: s.vip, port: s.vport },
        b: client ? { family: AF_INET, ip: client.vip, port: peer.port } : { family: AF_INET, ip: pip, port: peer.port },
      };
    }
    // The client end: the peer is a service's host address (here or on another node).
    for (const s of this.d.table.services()) {
      if (s.hostPort !== peer.port || unmapV4(s.hostIp) !== pip) continue;
      return {
        status: Status.OK,
        sock: 0,
        arg: Lookup.CONN,
        a: { family: AF_INET, ip: app.vip, port: local.port },
        b: { family: AF_INET, ip: s.vip, port: s.vport },
      };
    }
    return { status: Status.NATIVE };
  }

  /**
   * The placeholder listener for vip:vport of a local app that has not listened
   * yet (made on first use): a socket bound on a pool port of the host IP and
   * listening, so non-blocking connects complete in the kernel and queue. The
   * app's first AF_INET bind of vport gets this very socket (BIND), and accepts
   * them. Closed after PLACEHOLDER_MS without a bind (the queued connections are
   * reset). undefined when the address is not a local app's, or on any error.
   */
  private placeholder(vip: string, vport: number): Placeholder | undefined {
    const key = `${vip}:${vport}`;
    const have = this.placeholders.get(key);
    if (have) return have;
    const starting = this.d.starting ?? (() => true);
    if (!this.d.table.localApps().some((a) => a.vip === vip && starting(a.id)) || this.d.hostIp.includes(':')) return undefined;
    let fd = -1;
    try {
      const hostPort = this.d.pool.allocate((port) => {
        const sfd = libc.tcpSocket(AF_INET);
        try {
          libc.setReuse(sfd, false);
          libc.bind(sfd, { family: AF_INET, ip: this.d.hostIp, port }, AF_INET);
          libc.listen(sfd, PLACEHOLDER_BACKLOG);
          fd = sfd;
          return true;
        } catch (e) {
          libc.close(sfd);
          if (e instanceof libc.SysError && e.errno === EADDRINUSE) return false;
          throw e;
        }
      });
      if (hostPort === 0) return undefined;
      const ph: Placeholder = {
        fd,
        hostIp: this.d.hostIp,
        hostPort,
        timer: setTimeout(() => this.dropPlaceholder(key), PLACEHOLDER_MS),
      };
      ph.timer.unref();
      this.placeholders.set(key, ph);
      this.d.log.debug(`placeholder for ${key} on ${this.d.hostIp}:${hostPort}`);
      return ph;
    } catch (e) {
      if (fd >= 0) libc.close(fd);
      this.warn(`placeholder for ${key}: ${(e as Error).message}`);
      return undefined;
    }
  }

  /**
   * The placeholder for vip:vport, handed to the app's bind: it is removed here
   * and its socket goes to the app. A bind it cannot serve (IPv6, SO_REUSEPORT,
   * an --expose'd port) drops it instead.
   */
  private takePlaceholder(vip: string, vport: number, family: number, unfit: boolean): Placeholder | undefined {
    const key = `${vip}:${vport}`;
    const ph = this.placeholders.get(key);
    if (!ph) return undefined;
    this.placeholders.delete(key);
    clearTimeout(ph.timer);
    if (family !== AF_INET || unfit) {
      libc.close(ph.fd);
      this.d.pool.release(ph.hostPort);
      return undefined;
    }
    return ph;
  }

  private dropPlaceholder(key: string): void {
    const ph = this.placeholders.get(key);
    if (!ph) return;
    this.placeholders.delete(key);
    libc.close(ph.fd);
    this.d.pool.release(ph.hostPort);
    this.d.log.debug(`placeholder for ${key} closed: the app did not bind the port in time`);
  }

  private scheduleReap(): void {
    if (this.reapQueued) return;
    this.reapQueued = true;
    setImmediate(() => {
      this.reapQueued = false;
      this.reapDead();
    });
  }

  /**
   * Removes this node's sockets the kernel no longer has (their last holder
   * closed them or died). Returns how many were removed. Without sock_diag
   * (not permitted here), a socket ends with the process that bound it.
   */
  reapDead(): number {
    const mine = this.d.table.listSocks().filter((s) => s.node === this.d.table.node);
    if (mine.length === 0) return 0;
    let live: Set<bigint> | null = null;
    if (this.d.diag && !this.diagBroken) {
      try {
        live = this.d.diag.liveCookies();
      } catch (e) {
        this.diagBroken = true;
        this.d.log.warn(`sock_diag unavailable (${(e as Error).message}): a service now ends with the process that bound it`);
      }
    }
    const missing = (l: Set<bigint> | null, s: Sock) => (l && s.cookie ? !l.has(BigInt(s.cookie)) : !pidAlive(s.pid));
    let gone = mine.filter((s) => missing(live, s));
    if (gone.length > 0 && live) {
      // A dump walks the listening, bound and UDP tables one after another: a socket that
      // moves between them meanwhile (an app's listen() right after its bind, while an
      // earlier close had this pass run) is in neither. A socket moves once that way, so
      // one that a second dump also misses is gone.
      try {
        const again = this.d.diag!.liveCookies();
        gone = gone.filter((s) => missing(again, s));
      } catch {
        gone = [];
      }
    }
    let n = 0;
    for (const s of gone) {
      this.d.log.debug(`socket gone: ${s.name || s.appId} ${s.vip}:${s.vport} (host port ${s.hostPort})`);
      this.release(s);
      n++;
    }
    if (n > 0) this.onReaped(n);
    return n;
  }

  release(sock: Sock): void {
    this.d.table.removeSock(sock.id);
    if (sock.cookie && this.byCookie.get(sock.cookie) === sock.id) this.byCookie.delete(sock.cookie);
    // A host port shared by UDP sockets (SO_REUSEADDR) goes back with the last of them.
    const shared = this.d.table.listSocks().some((o) => o.hostPort === sock.hostPort && o.hostIp === sock.hostIp);
    if (sock.node === this.d.table.node && !shared) this.d.pool.release(sock.hostPort);
  }

  closed(s: Session): void {
    this.liveSessions.delete(s.id);
    // The process may have exited holding the last copy of a socket.
    if (s.appId) this.scheduleReap();
  }

  /** Pids of every live session, by app id (revocation maps sockets to apps through them). */
  appPids(): Map<string, Set<number>> {
    const out = new Map<string, Set<number>>();
    for (const s of this.liveSessions.values()) {
      let set = out.get(s.appId);
      if (!set) out.set(s.appId, (set = new Set()));
      set.add(s.pid);
    }
    return out;
  }

  hasSession(appId: string): boolean {
    for (const s of this.liveSessions.values()) if (s.appId === appId) return true;
    return false;
  }

  /**
   * How many processes the app has: those with a hook session, and those known to hold
   * its sockets (anchored at restore or at admission) that still live, without its `ax run`.
   */
  processCount(appId: string): number {
    const pids = new Set<number>();
    for (const s of this.liveSessions.values()) if (s.appId === appId) pids.add(s.pid);
    const app = this.d.table.getApp(appId);
    for (const pid of this.trust.livePids(appId, app?.runPid ?? 0)) pids.add(pid);
    return pids.size;
  }
}

/**
 * The answer to a request in a session whose app has been removed: an errno the
 * call may return (bind: EADDRNOTAVAIL, listen: EADDRINUSE, connect:
 * ECONNREFUSED), and NATIVE for lookups (the names are gone with the app).
 */
function removedApp(op: number): Reply {
  switch (op) {
    case Op.BIND:
      return { status: Status.ERR, err: EADDRNOTAVAIL };
    case Op.LISTEN:
      return { status: Status.ERR, err: EADDRINUSE };
    case Op.CONNECT:
      return { status: Status.ERR, err: ECONNREFUSED };
    default:
      return { status: Status.NATIVE };
  }
}

/** Compares tokens in constant time. */
function sameToken(want: string, got: string): boolean {
  const x = Buffer.from(want);
  const y = Buffer.from(got);
  return x.length > 0 && x.length === y.length && timingSafeEqual(x, y);
}

/** The real address in the app socket's family (IPv4 v4-mapped for AF_INET6). */
function realDest(target: Addr, family: number): Addr {
  return family === AF_INET6 && target.family === AF_INET ? { family, ip: `::ffff:${target.ip}`, port: target.port } : target;
}
