// Answers the hook's requests: the socket handoff itself. Every real socket is
// created, bound or connected here, in the daemon's network namespace, and
// passed to the app; the daemon keeps no copy and sees no application data.
//
// Direct handoff: a process in the daemon's own network namespace could reach
// the host ports natively anyway, so creating its connected sockets here gains
// no enforcement. For such sessions (and `--handoff auto`, the default) CONNECT
// is answered DIRECT: policy and load balancing are decided here as always, but
// the hook connects the app's own socket to the picked address and reports the
// real local address back (one-way CONNECTED) for client-IP preservation.
import { timingSafeEqual } from 'node:crypto';
import { statSync } from 'node:fs';
import { AF_INET, AF_INET6, isWildcard, unmapV4, type Addr } from '../common/addr';
import { rateLimited, type Logger } from '../common/log';
import { formatLabels } from '../policy/labels';
import * as libc from '../hookserver/libc';
import { BindFlag, CACHE_MAX, ConnectFlag, HelloFlag, Op, ProtocolError, ReplyFlag, Status, type Msg } from '../hookserver/proto';
import type { Dispatcher, Reply, Session } from '../hookserver/server';
import type { PortPool } from '../table/ports';
import type { App, ClientInfo, ServiceTable, Sock } from '../table/table';
import { AppTrust } from './trust';

/** auto: direct handoff for sessions in the daemon's network namespace; fd: always pass sockets. */
export type HandoffMode = 'auto' | 'fd';

/** How long a DIRECT answer waits for its CONNECTED note before PEER stops answering PENDING. */
const DIRECT_CONFIRM_MS = 200;

const EPERM = 1;
const EBADF = 9;
const EACCES = 13;
const EADDRINUSE = 98;
const EADDRNOTAVAIL = 99;
const ENETUNREACH = 101;
const EINPROGRESS = 115;
const EAFNOSUPPORT = 97;
const ENOBUFS = 105;

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
  /** The file holding the table generation (u32 LE at offset 0); hooks map it to validate cached answers. */
  genFile?: string;
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
  /** of which direct (no socket created here) */
  directHandoffs = 0;
  /** of which made by the hook from a cached answer (announced by CONNECTING) */
  cachedHandoffs = 0;
  readonly handoffMode: HandoffMode;
  private readonly selfNetns = netnsInode('self');
  /** backend host port -> DIRECT answers not yet confirmed by CONNECTED: ticket -> expiry (ms, monotonic order) */
  private readonly unconfirmed = new Map<number, Map<number, number>>();
  private nextTicket = 1;
  /** one ClientInfo per app, reused by every recorded connection */
  private readonly clientInfo = new WeakMap<App, ClientInfo>();
  /** socket id -> session id currently responsible for it */
  private readonly owner = new Map<number, number>();
  /** sockets whose session ended while the pid may live on (exec) */
  readonly orphans = new Set<number>();
  private readonly refuseFd: number;
  private readonly refuseAddr: Addr;
  private readonly warn: (m: string) => void;
  private readonly liveSessions = new Map<number, Session>();
  /** Which processes may open sessions for which app (SO_PEERCRED against the launch record). */
  readonly trust = new AppTrust();

  constructor(private readonly d: HookDeps) {
    this.warn = rateLimited(d.log);
    for (const app of d.table.localApps()) this.trust.addApp(app);
    for (const sock of d.table.listSocks()) if (sock.node === d.table.node) this.trust.addSock(sock);
    d.table.onChange((ch) => {
      if (ch.kind !== 'app' || ch.app.node !== d.table.node) return;
      if (ch.deleted) this.trust.removeApp(ch.app.id);
      else this.trust.addApp(ch.app);
    });
    this.handoffMode = d.handoff ?? 'fd';
    // A bound, never-listening socket: connecting to it is refused by the kernel
    // itself, which gives apps the exact ECONNREFUSED semantics, blocking or not.
    this.refuseFd = libc.tcpSocket(AF_INET);
    libc.bind(this.refuseFd, { family: AF_INET, ip: '127.0.0.1', port: 0 }, AF_INET);
    this.refuseAddr = libc.getsockname(this.refuseFd)!;
  }

  close(): void {
    libc.close(this.refuseFd);
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
      if (m.op === Op.CONNECTED || m.op === Op.CONNECTING || m.op === Op.CLOSE) return null;
      if (s.appId) return { status: Status.ERR, err: EPERM }; // app removed under it
      throw new ProtocolError(`${m.op} before HELLO`);
    }
    switch (m.op) {
      case Op.BIND:
        return this.bind(s, app, m);
      case Op.LISTEN:
        return this.listen(s, m);
      case Op.CONNECT:
        return this.connect(s, app, m);
      case Op.CONNECTED:
        this.connected(s, app, m);
        return null;
      case Op.CONNECTING:
        this.connecting(s, m);
        return null;
      case Op.CLOSE:
        this.closeSock(s, m.sock);
        return null;
      case Op.RESOLVE: {
        const vip = this.d.table.resolve(m.name);
        return vip ? { status: Status.OK, a: { family: AF_INET, ip: vip, port: 0 } } : { status: Status.NATIVE };
      }
      case Op.PEER:
        return this.peer(m);
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
    const verdict = this.trust.verify(app, s.pid, s.uid);
    if (!verdict.ok) {
      this.warn(`hook session ${s.id} (pid ${s.pid}, uid ${s.uid}) refused for app ${app.id}: ${verdict.why}`);
      return { status: Status.ERR, err: EACCES, end: true };
    }
    s.appId = app.id;
    this.liveSessions.set(s.id, s);
    const direct = (m.arg & HelloFlag.DIRECT) !== 0 && this.handoffMode === 'auto' && this.sameNetns(s.pid);
    s.data.direct = direct;
    this.d.log.debug(`hook session ${s.id} (pid ${s.pid}, app ${app.id}): handoff ${direct ? 'direct' : 'fd'}`);
    this.d.log.debug(`hook session ${s.id}: uid ${s.uid} admitted through ${verdict.via}`);
    // A process that reconnects (daemon restart, exec) takes its sockets back.
    for (const sock of this.d.table.listSocks()) {
      if (sock.pid === s.pid && sock.node === this.d.table.node && !this.owner.has(sock.id)) {
        this.owner.set(sock.id, s.id);
        this.orphans.delete(sock.id);
      }
    }
    const name = direct ? (this.d.genFile ?? '') : '';
    return { status: Status.OK, sock: s.id, arg: direct ? HelloFlag.DIRECT : 0, a: { family: AF_INET, ip: app.vip, port: 0 }, name };
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
    if (a.port !== 0 && this.d.table.conflicting(app.id, app.vip, a.port, reusePort, family, v6only)) {
      return { status: Status.ERR, err: EADDRINUSE };
    }
    const rule = a.port !== 0 ? app.expose.find((r) => r.port === a.port) : undefined;
    let fd = -1;
    let hostIp = this.d.hostIp;
    if (family === AF_INET6 && v6only) hostIp = hostIp.startsWith('127.') ? '::1' : '::';
    const tryBind = (ipText: string, port: number): number => {
      const sfd = libc.tcpSocket(family);
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
    try {
      if (rule) {
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
    if (a.port === 0 && this.d.table.conflicting(app.id, app.vip, vport, reusePort, family, v6only)) {
      // The pool gave a port some socket of this app already uses as a virtual port.
      libc.close(fd);
      this.d.pool.release(hostPort);
      return { status: Status.ERR, err: EADDRINUSE };
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
      state: 'bound',
      labels: app.labels,
      reusePort,
      v6only: family === AF_INET6 && v6only,
      createdAt: Date.now(),
    };
    this.d.table.addSock(sock);
    this.owner.set(sock.id, s.id);
    this.handoffs++;
    const seen = wildcard ? a.ip : family === AF_INET6 ? `::ffff:${app.vip}` : app.vip;
    return { status: Status.OK, fd, sock: sock.id, a: { family, ip: seen, port: vport } };
  }

  private listen(s: Session, m: Msg): Reply {
    const sock = this.d.table.getSock(m.sock);
    if (!sock || sock.appId !== s.appId) return { status: Status.ERR, err: EBADF };
    this.d.table.setListening(sock.id);
    this.d.log.debug(`listening: ${sock.name || sock.appId} ${sock.vip}:${sock.vport} -> ${sock.hostIp}:${sock.hostPort}`);
    return { status: Status.OK, sock: sock.id };
  }

  private connect(s: Session, app: App, m: Msg): Reply {
    const dest = m.a;
    const family = m.b?.family ?? AF_INET;
    if (!dest) throw new ProtocolError('CONNECT without an address');
    if (family !== AF_INET && family !== AF_INET6) throw new ProtocolError(`CONNECT for family ${family}`);
    const ip = unmapV4(dest.ip);
    if (!this.d.table.isVirtual(ip)) return { status: Status.NATIVE };
    const pick = this.d.table.pick(ip, dest.port, app.labels, this.d.alive);
    switch (pick.kind) {
      case 'unknown':
        return { status: Status.ERR, err: ENETUNREACH };
      case 'denied':
        this.warn(`policy: app ${app.id} (${formatLabels(app.labels)}) may not connect to ${ip}:${dest.port}: no shared label`);
        return { status: Status.ERR, err: EACCES };
      case 'waiting':
        if (m.arg & ConnectFlag.WAIT) return { status: Status.PENDING };
        if (s.data.direct === true) return this.direct(s, dest, family, this.refuseAddr, false);
        return this.handoff(app, dest, family, this.refuseAddr);
      case 'backend': {
        const b = pick.sock;
        const target: Addr = { family: b.hostIp.includes(':') ? AF_INET6 : AF_INET, ip: b.hostIp, port: b.hostPort };
        if (family === AF_INET && target.family === AF_INET6) return { status: Status.ERR, err: ENETUNREACH };
        if (s.data.direct === true) {
          const r = this.direct(s, dest, family, target, b.node === this.d.table.node);
          this.cacheable(r, pick.all, family);
          return r;
        }
        return this.handoff(app, dest, family, target);
      }
    }
  }

  private handoff(app: App, dest: Addr, family: number, target: Addr): Reply {
    let fd: number;
    try {
      fd = libc.tcpSocket(family);
    } catch (e) {
      if (!(e instanceof libc.SysError)) throw e;
      this.warn(`connect for app ${app.id}: ${e.message}`);
      return { status: Status.ERR, err: sysErrno(e, 'connect') };
    }
    const err = libc.connect(fd, target, family);
    if (err === 0 || err === EINPROGRESS) {
      try {
        const local = libc.getsockname(fd);
        if (local) this.d.table.recordConn(connKey(local), this.client(app));
      } catch {
        // The connection works without it; only PEER on the server side loses the client's VIP.
      }
    }
    this.handoffs++;
    return { status: Status.OK, fd, err, a: dest, b: realDest(target, family) };
  }

  /**
   * DIRECT answer: no socket here; the hook connects the app's socket to `target`.
   * `track`: a local backend, whose accept side may ask PEER before the
   * client's CONNECTED note arrives (answered PENDING meanwhile).
   */
  private direct(s: Session, dest: Addr, family: number, target: Addr, track: boolean): Reply {
    const ticket = this.nextTicket;
    this.nextTicket = this.nextTicket >= 0x7fffffff ? 1 : this.nextTicket + 1;
    if (track) this.expectConfirm(s, target.port, ticket);
    this.handoffs++;
    this.directHandoffs++;
    return { status: Status.DIRECT, sock: ticket, a: dest, b: realDest(target, family) };
  }

  /**
   * Lets the hook reuse a DIRECT answer until the table changes: every backend
   * the client may use goes along (the hook takes them round robin), with the
   * table generation the answer is valid for.
   */
  private cacheable(r: Reply, all: Sock[], family: number): void {
    if (all.length > CACHE_MAX) return;
    const addrs: Addr[] = [];
    for (const b of all) {
      const v6 = b.hostIp.includes(':');
      if (family === AF_INET && v6) return; // not every backend reachable from this socket family
      addrs.push(realDest({ family: v6 ? AF_INET6 : AF_INET, ip: b.hostIp, port: b.hostPort }, family));
    }
    r.flags = ReplyFlag.CACHE;
    r.arg = this.d.table.generation;
    r.pid = addrs.length;
    r.addrs = addrs;
  }

  /** PEER answers PENDING for this backend port until the CONNECTED with this ticket arrives. */
  private expectConfirm(s: Session, port: number, ticket: number): void {
    let t = this.unconfirmed.get(port);
    if (!t) this.unconfirmed.set(port, (t = new Map()));
    const now = performance.now();
    pruneExpired(t, now);
    t.set(s.id * 0x100000000 + ticket, now + DIRECT_CONFIRM_MS);
  }

  /** One-way note before a connect made from a cached answer. */
  private connecting(s: Session, m: Msg): void {
    if (s.data.direct !== true || !m.b) return;
    this.handoffs++;
    this.directHandoffs++;
    this.cachedHandoffs++;
    this.expectConfirm(s, m.b.port, m.sock);
  }

  /** One-way note after a DIRECT answer: the connection's real local address. */
  private connected(s: Session, app: App, m: Msg): void {
    if (s.data.direct !== true) {
      this.warn(`hook session ${s.id} (pid ${s.pid}): CONNECTED in a session without direct handoff, ignored`);
      return;
    }
    if (m.b) {
      const t = this.unconfirmed.get(m.b.port);
      if (t && t.delete(s.id * 0x100000000 + m.sock) && t.size === 0) this.unconfirmed.delete(m.b.port);
    }
    if (m.arg === 0 && m.a && m.a.port !== 0) this.d.table.recordConn(connKey(m.a), this.client(app));
  }

  private client(app: App): ClientInfo {
    let c = this.clientInfo.get(app);
    if (!c || c.vip !== app.vip || c.labels !== app.labels) {
      c = { appId: app.id, vip: app.vip, labels: app.labels };
      this.clientInfo.set(app, c);
    }
    return c;
  }

  /** Some DIRECT answer toward this local backend port is still unconfirmed. */
  private awaitingConfirm(port: number): boolean {
    const t = this.unconfirmed.get(port);
    if (!t) return false;
    pruneExpired(t, performance.now());
    if (t.size > 0) return true;
    this.unconfirmed.delete(port);
    return false;
  }

  private peer(m: Msg): Reply | Promise<Reply> {
    if (!m.a) throw new ProtocolError('PEER without an address');
    const known = this.peerAnswer(m);
    if (known) return known;
    // Not known yet: the client's CONNECTING/CONNECTED note may be queued on its
    // own session, unread. Let the event loop read everything pending (two turns)
    // before answering that the peer is not an ax client.
    return new Promise((resolve) =>
      setImmediate(() => setImmediate(() => resolve(this.peerAnswer(m) ?? { status: Status.NATIVE }))),
    );
  }

  /** OK with the client's VIP, PENDING while a handoff to this port awaits confirmation, or null. */
  private peerAnswer(m: Msg): Reply | null {
    const a = m.a!;
    const who = this.d.table.connOwner(connKey(a));
    if (who) {
      const ip = a.family === AF_INET6 ? `::ffff:${who.vip}` : who.vip;
      return { status: Status.OK, a: { family: a.family, ip, port: a.port }, name: who.appId };
    }
    // A directly handed-off client may not have sent CONNECTED yet: ask to retry.
    if (m.b && this.awaitingConfirm(m.b.port)) return { status: Status.PENDING };
    return null;
  }

  private closeSock(s: Session, id: number): void {
    const sock = this.d.table.getSock(id);
    if (!sock || sock.appId !== s.appId) return;
    this.release(sock);
  }

  release(sock: Sock): void {
    this.d.table.removeSock(sock.id);
    this.owner.delete(sock.id);
    this.orphans.delete(sock.id);
    if (sock.node === this.d.table.node) this.d.pool.release(sock.hostPort);
  }

  closed(s: Session): void {
    this.liveSessions.delete(s.id);
    for (const [sockId, sessId] of this.owner) {
      if (sessId !== s.id) continue;
      this.owner.delete(sockId);
      this.orphans.add(sockId);
    }
  }

  /** Sockets known from the store whose process has no session (after a restart). */
  adoptRestored(ids: number[]): void {
    for (const id of ids) if (!this.owner.has(id)) this.orphans.add(id);
  }

  hasSession(appId: string): boolean {
    for (const s of this.liveSessions.values()) if (s.appId === appId) return true;
    return false;
  }

  processCount(appId: string): number {
    const pids = new Set<number>();
    for (const s of this.liveSessions.values()) if (s.appId === appId) pids.add(s.pid);
    return pids.size;
  }
}

/** Compares tokens in constant time. */
function sameToken(want: string, got: string): boolean {
  const a = Buffer.from(want);
  const b = Buffer.from(got);
  return a.length > 0 && a.length === b.length && timingSafeEqual(a, b);
}

/** Key of a connection end in the table's connection map: "ip:port", IPv4 unmapped. */
function connKey(a: Addr): string {
  return `${unmapV4(a.ip)}:${a.port}`;
}

/** The real address in the app socket's family (IPv4 v4-mapped for AF_INET6). */
function realDest(target: Addr, family: number): Addr {
  return family === AF_INET6 && target.family === AF_INET ? { family, ip: `::ffff:${target.ip}`, port: target.port } : target;
}

/** Drops expired entries from the front (expiries are in insertion order). */
function pruneExpired(t: Map<number, number>, now: number): void {
  for (const [k, exp] of t) {
    if (exp > now) break;
    t.delete(k);
  }
}
