// The service table: apps, their virtual IPs and names, the sockets they bind
// and listen on, and load balancing over pools. Pure in-memory state; the
// daemon persists it through the change listener and performs the syscalls.
import { cidrContains, intToIpv4, type Cidr } from '../common/addr';
import type { Labels } from '../policy/labels';

export interface ExposeRule {
  port: number; // virtual port
  hostIp: string; // '' = the daemon's host IP
  hostPort: number;
}

export interface App {
  id: string;
  name: string; // '' when started without --name
  vip: string;
  labels: Labels;
  expose: ExposeRule[];
  token: string;
  runPid: number; // pid of `ax run`
  /** owner: uid of the user whose `ax run` registered it (SO_PEERCRED); unset in state from older versions */
  uid?: number;
  node: string;
  createdAt: number;
  /** This node's apps: index of the app's own source address in the identity map
   *  (src/hookserver/identmap.ts); 0 = none. Servers map a peer address back to the
   *  client's VIP through it, with no message. */
  srcIndex?: number;
}

export type SocketState = 'bound' | 'listening';

export interface Sock {
  id: number;
  appId: string;
  name: string;
  pid: number;
  node: string;
  family: number;
  vip: string;
  vport: number;
  hostIp: string;
  hostPort: number;
  state: SocketState;
  labels: Labels;
  reusePort: boolean;
  /** An AF_INET6 socket with IPV6_V6ONLY: it cannot take IPv4 (virtual) connections, so it
   *  never conflicts with an IPv4 bind of the same port and is never picked as a backend. */
  v6only?: boolean;
  createdAt: number;
  /** The kernel socket's identity (SO_COOKIE, decimal): a local socket is in the table
   *  exactly while the kernel still has it (src/hookserver/sockdiag.ts). */
  cookie?: string;
  /** The socket's inode: a process holding it belongs to the app (src/daemon/trust.ts). */
  inode?: number;
  /** The address the app bound, as it must see it: the wildcard it asked for or its VIP. */
  bindIp?: string;
  /** SO_REUSEADDR set by the app before bind (UDP: sockets that both set it share a port). */
  reuseAddr?: boolean;
  /** Transport: absent = 'tcp'. A 'udp' socket is a service as soon as it is bound (datagram
   *  sockets have no listen()); TCP and UDP services on one VIP:port are independent. */
  proto?: Proto;
}

export type Proto = 'tcp' | 'udp';

export type LbMode = 'round-robin' | 'random';

export type Pick =
  | { kind: 'backend'; sock: Sock; all: Sock[] } // all: every backend the client may use
  | { kind: 'denied' } // listeners exist, policy refuses every one
  | { kind: 'waiting' } // the address is registered, its app has not listened on any port yet
  | { kind: 'closed' } // the app is up (has listened since it started), nothing listens on this port
  | { kind: 'unknown' }; // not a virtual address

export type Change =
  | { kind: 'app'; app: App; deleted: boolean }
  | { kind: 'sock'; sock: Sock; deleted: boolean };

const VIRT_CACHE_MAX = 4096;

export class ServiceTable {
  private readonly apps = new Map<string, App>();
  private readonly socks = new Map<number, Sock>();
  private readonly byVip = new Map<string, Set<Sock>>(); // vip -> listening sockets, local and remote
  private readonly names = new Map<string, string>(); // name -> vip (local apps)
  // What other nodes own, as replicated by the cluster layer (replaced wholesale).
  private remoteApps: App[] = [];
  private remoteSocks: Sock[] = [];
  private readonly remoteNames = new Map<string, string>();
  private readonly rr = new Map<string, number>();
  /** app id -> virtual ports it has listened on since it started (connect-wait ends with the first) */
  private readonly listened = new Map<string, Set<number>>();
  private readonly inRange = new Map<string, boolean>(); // ip -> inside vipRange (hot path cache)
  private nextSock = 1;
  private listeners: Array<(c: Change) => void> = [];

  constructor(
    readonly node: string,
    vipRanges: Cidr | Cidr[],
    private readonly lb: LbMode = 'round-robin',
  ) {
    this.vipRanges = Array.isArray(vipRanges) ? vipRanges : [vipRanges];
    this.vipRange = this.vipRanges[0];
  }

  /** every virtual range; VIPs are allocated from the first */
  private readonly vipRanges: Cidr[];
  private readonly vipRange: Cidr;

  onChange(fn: (c: Change) => void): void {
    this.listeners.push(fn);
  }

  private emit(c: Change): void {
    this.bump();
    for (const fn of this.listeners) fn(c);
  }

  /** Bumped on every change of what connects resolve to (apps, sockets, remote view). */
  generation = 1 + Math.floor(Math.random() * 0x7ffffffe);
  private genListeners: Array<(g: number) => void> = [];

  onGeneration(fn: (g: number) => void): void {
    this.genListeners.push(fn);
  }

  /** Invalidates every answer hooks cached (a policy change alters what connects resolve to). */
  invalidate(): void {
    this.bump();
  }

  private bump(): void {
    this.generation = (this.generation % 0x7fffffff) + 1;
    for (const fn of this.genListeners) fn(this.generation);
  }

  // ---- apps -------------------------------------------------------------

  /** Checks an app's name/ip against the table; returns an error message or null. */
  checkApp(name: string, vip: string): string | null {
    const all = this.allNames();
    if (name && vip) {
      const have = all.get(name);
      if (have && have !== vip) return `name "${name}" already has virtual IP ${have}; use --ip ${have} or another name`;
      for (const [n, v] of all) {
        if (v === vip && n !== name) return `virtual IP ${vip} already belongs to name "${n}"`;
      }
    }
    if (!name && vip) {
      for (const [n, v] of all) {
        if (v === vip) return `virtual IP ${vip} already belongs to name "${n}"; add --name ${n} to join its pool`;
      }
    }
    return null;
  }

  /** name -> VIP over this node's apps and every other node's (local first). */
  private allNames(): Map<string, string> {
    const all = new Map(this.remoteNames);
    for (const [n, v] of this.names) all.set(n, v);
    return all;
  }

  /** The VIP an app with this name (and optional ip) gets. */
  vipFor(name: string, vip: string): string {
    if (vip) return vip;
    const known = name ? this.resolve(name) : undefined;
    if (known) return known;
    return this.allocVip();
  }

  /**
   * A free VIP from the range. Each node starts its search at an offset derived
   * from its name, so nodes allocating at the same moment rarely pick the same one.
   */
  private allocVip(): string {
    const used = new Set<string>();
    for (const a of this.listApps()) used.add(a.vip);
    for (const v of this.allNames().values()) used.add(v);
    const size = 2 ** (32 - this.vipRange.bits);
    let h = 0;
    for (const ch of this.node) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
    const start = this.remoteApps.length > 0 || this.remoteSocks.length > 0 ? h % (size - 2) : 0;
    for (let k = 0; k < size - 2; k++) {
      const i = 1 + ((start + k) % (size - 2));
      const ip = intToIpv4(this.vipRange.base + i);
      if (!used.has(ip)) return ip;
    }
    throw new Error(`no free virtual IP left in the range ${intToIpv4(this.vipRange.base)}/${this.vipRange.bits}`);
  }

  addApp(app: App): void {
    if (app.node === this.node && !app.srcIndex && this.sourceCount > 1) app.srcIndex = this.allocSource();
    this.apps.set(app.id, app);
    if (app.name) this.names.set(app.name, app.vip);
    this.emit({ kind: 'app', app, deleted: false });
  }

  getApp(id: string): App | undefined {
    return this.apps.get(id);
  }

  /** This node's apps. */
  localApps(): App[] {
    return [...this.apps.values()];
  }

  /** Every app in the cluster (this node's and replicated ones) holding name `name` or VIP `vip`. */
  holders(name: string, vip: string): App[] {
    return this.listApps().filter((a) => (name !== '' && a.name === name) || (vip !== '' && a.vip === vip));
  }

  /** Every app in the cluster: this node's and the replicated ones. */
  listApps(): App[] {
    return [...this.apps.values(), ...this.remoteApps];
  }

  removeApp(id: string): void {
    const app = this.apps.get(id);
    if (!app) return;
    for (const s of [...this.socks.values()]) if (s.appId === id) this.removeSock(s.id);
    this.apps.delete(id);
    this.listened.delete(id);
    if (app.name && ![...this.apps.values()].some((a) => a.name === app.name)) this.names.delete(app.name);
    this.emit({ kind: 'app', app, deleted: true });
  }

  /** Name lookup: "web" or "web.ax" → VIP. */
  resolve(host: string): string | undefined {
    const h = host.toLowerCase().replace(/\.$/, '');
    const name = h.endsWith('.ax') ? h.slice(0, -3) : h;
    return this.names.get(name) ?? this.remoteNames.get(name);
  }

  nameOf(vip: string): string | undefined {
    for (const [n, v] of this.allNames()) if (v === vip) return n;
    return undefined;
  }

  isVirtual(ip: string): boolean {
    let r = this.inRange.get(ip);
    if (r === undefined) {
      r = this.vipRanges.some((c) => cidrContains(c, ip));
      if (this.inRange.size >= VIRT_CACHE_MAX) this.inRange.clear();
      this.inRange.set(ip, r);
    }
    return r || this.isRegistered(ip);
  }

  isRegistered(ip: string): boolean {
    if (this.byVip.has(ip)) return true;
    for (const a of this.apps.values()) if (a.vip === ip) return true;
    for (const a of this.remoteApps) if (a.vip === ip) return true;
    return false;
  }

  /** Replaces what other nodes own (called by the cluster glue after every change). */
  setRemote(apps: App[], socks: Sock[]): void {
    this.bump();
    for (const s of this.remoteSocks) this.unindex(s);
    this.remoteApps = apps.filter((a) => a.node !== this.node);
    this.remoteSocks = socks.filter((s) => s.node !== this.node && s.state === 'listening');
    for (const s of this.remoteSocks) this.index(s);
    this.remoteNames.clear();
    // Deterministic when two nodes claim one name with different VIPs: the
    // lexically smallest node wins, everywhere.
    // Services carry their name too: a name resolves as soon as either its app or
    // one of its services has been replicated (they travel as separate entries).
    const named: Array<{ node: string; name: string; vip: string }> = [...this.remoteApps, ...this.remoteSocks];
    named.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
    for (const a of named) if (a.name && !this.remoteNames.has(a.name)) this.remoteNames.set(a.name, a.vip);
  }

  // ---- sockets ----------------------------------------------------------

  newSockId(): number {
    while (this.socks.has(this.nextSock)) this.nextSock = (this.nextSock % 0x7fffffff) + 1;
    return this.nextSock++;
  }

  /** A socket (bound or listening) already holding vip:vport for the same app, if any. */
  conflicting(
    appId: string,
    vip: string,
    vport: number,
    reusePort: boolean,
    family: number,
    v6only = false,
    proto: Proto = 'tcp',
    reuseAddr = false,
  ): Sock | undefined {
    for (const s of this.socks.values()) {
      if (s.appId === appId && s.vip === vip && s.vport === vport && s.node === this.node && (s.proto ?? 'tcp') === proto) {
        // As in the kernel: an IPv4 bind and an IPv6-only bind of one port coexist.
        if ((v6only && s.family !== family) || (s.v6only && s.family !== family)) continue;
        // UDP: two sockets that both set SO_REUSEADDR share a port too.
        if (proto === 'udp' && reuseAddr && s.reuseAddr) continue;
        if (!(reusePort && s.reusePort)) return s;
      }
    }
    return undefined;
  }

  addSock(s: Sock): void {
    this.socks.set(s.id, s);
    if (s.state === 'listening' && s.node === this.node) {
      let ports = this.listened.get(s.appId);
      if (!ports) this.listened.set(s.appId, (ports = new Set()));
      ports.add(s.vport);
    }
    if (s.id >= this.nextSock) this.nextSock = s.id + 1;
    if (s.state === 'listening') this.index(s);
    this.emit({ kind: 'sock', sock: s, deleted: false });
  }

  getSock(id: number): Sock | undefined {
    return this.socks.get(id);
  }

  /** This node's sockets. */
  listSocks(): Sock[] {
    return [...this.socks.values()];
  }

  setListening(id: number): Sock | undefined {
    const s = this.socks.get(id);
    if (!s) return undefined;
    let ports = this.listened.get(s.appId);
    if (!ports) this.listened.set(s.appId, (ports = new Set()));
    ports.add(s.vport);
    if (s.state !== 'listening') {
      s.state = 'listening';
      this.index(s);
      this.emit({ kind: 'sock', sock: s, deleted: false });
    }
    return s;
  }

  removeSock(id: number): Sock | undefined {
    const s = this.socks.get(id);
    if (!s) return undefined;
    this.socks.delete(id);
    this.unindex(s);
    this.emit({ kind: 'sock', sock: s, deleted: true });
    return s;
  }

  private index(s: Sock): void {
    let set = this.byVip.get(s.vip);
    if (!set) this.byVip.set(s.vip, (set = new Set()));
    set.add(s);
  }

  private unindex(s: Sock): void {
    const set = this.byVip.get(s.vip);
    if (!set) return;
    set.delete(s);
    if (set.size === 0) this.byVip.delete(s.vip);
  }

  /** Listening services (one entry per listening socket), this node's and replicated ones. */
  services(): Sock[] {
    return [...[...this.socks.values()].filter((s) => s.state === 'listening'), ...this.remoteSocks];
  }

  localServices(): Sock[] {
    return [...this.socks.values()].filter((s) => s.state === 'listening');
  }

  // ---- connect ----------------------------------------------------------

  /**
   * Chooses a backend for a connection (or a UDP flow) to vip:vport among the listening
   * sockets `may` admits. Policy is not decided here: the daemon passes the decision
   * layer's predicate (src/policy/decide.ts); the table knows no rule of its own.
   * 'denied': listeners exist, `may` refuses every one.
   */
  pick(vip: string, vport: number, may: (s: Sock) => boolean, alive: (s: Sock) => boolean = () => true, proto: Proto = 'tcp'): Pick {
    const set = this.byVip.get(vip);
    const listening: Sock[] = [];
    if (set) for (const s of set) if (s.vport === vport && !s.v6only && (s.proto ?? 'tcp') === proto && alive(s)) listening.push(s);
    if (listening.length === 0) {
      if (!this.isRegistered(vip)) return { kind: 'unknown' };
      // connect-wait covers a service's start: once the app has listened on any
      // port since it started, a closed port refuses at once, as the kernel does.
      for (const a of this.apps.values()) if (a.vip === vip && (this.listened.get(a.id)?.size ?? 0) > 0) return { kind: 'closed' };
      return { kind: 'waiting' };
    }
    const allowed = listening.filter(may);
    if (allowed.length === 0) return { kind: 'denied' };
    if (allowed.length > 1) allowed.sort((x, y) => (x.node === y.node ? x.id - y.id : x.node < y.node ? -1 : 1));
    let i: number;
    if (this.lb === 'random') {
      i = Math.floor(Math.random() * allowed.length);
    } else {
      const key = `${proto}/${vip}:${vport}`;
      const n = this.rr.get(key) ?? 0;
      this.rr.set(key, n + 1);
      i = n % allowed.length;
    }
    return { kind: 'backend', sock: allowed[i], all: allowed };
  }

  /** Entries in the identity map (source addresses); 0 = apps get no source address. */
  sourceCount = 0;
  private sourceCursor = 0;

  /**
   * A free source index (1 .. sourceCount-1). Indexes are taken round robin, so a
   * freed one is reused as late as possible (a connection of an app that ended
   * is not mistaken for a new app's).
   */
  private allocSource(): number {
    const used = new Set<number>();
    for (const a of this.apps.values()) if (a.srcIndex) used.add(a.srcIndex);
    for (let k = 0; k < this.sourceCount - 1; k++) {
      this.sourceCursor = (this.sourceCursor % (this.sourceCount - 1)) + 1;
      if (!used.has(this.sourceCursor)) return this.sourceCursor;
    }
    return 0;
  }

  /** This node's app using source index `i` (see App.srcIndex). */
  appBySource(i: number): App | undefined {
    for (const a of this.apps.values()) if (a.srcIndex === i) return a;
    return undefined;
  }

  get vipRangeText(): string {
    return this.vipRanges.map((c) => `${intToIpv4(c.base)}/${c.bits}`).join(',');
  }
}
