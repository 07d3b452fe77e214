// UDP egress for isolated apps (ax run --isolate), root daemons only.
//
// A UDP socket the daemon made in the host network and handed in can send anywhere the
// host reaches, whatever it was connected to: sendto/sendmsg/sendmmsg with a destination
// address work on a connected UDP socket, and connect() re-aims it (connect(AF_UNSPEC)
// too). A socket filter sees only what arrives; Landlock has no UDP rules up to ABI 9 (its UDP rights were merged upstream in June 2026, for a later kernel);
// a seccomp filter sees only arguments (not which socket a descriptor number names at the
// moment the kernel acts, nor a sendmsg's address in user memory). What does see every
// datagram of a given socket is netfilter: the kernel stamps each packet with its socket's
// mark (SO_MARK, sk_mark -> skb->mark), and only CAP_NET_ADMIN over the socket's network
// namespace may change it (setsockopt SO_MARK, or an SO_MARK control message).
//
// So a root daemon marks each UDP socket it hands to an isolated app with that app's mark
// and keeps one nftables table in its network namespace:
//
//   table inet ax_egress_<tag> {
//     set allow4 { type mark . ipv4_addr . ipv4_addr . inet_service }  # mark . source . backend . port
//     set allow6 { type mark . ipv6_addr . ipv6_addr . inet_service }
//     chain output { type filter hook output priority 0;
//       meta mark and 0xff000000 != <tag << 24> return         # not one of ours: untouched
//       meta mark & SERVICE == SERVICE meta l4proto udp ct direction reply ct state established accept
//                                                              # a service's replies to its clients
//       meta l4proto udp meta mark . ip saddr . ip daddr . udp dport @allow4 accept
//       meta l4proto udp meta mark . ip6 saddr . ip6 daddr . udp dport @allow6 accept
//       meta l4proto udp counter drop }                        # anything else the app sends
//   }
//
// The daemon adds "mark . local address . target" to the set before it hands the connected
// socket over, so the app's datagrams to that target pass and every other one is dropped in
// OUTPUT (also one whose source the app chose with IP_PKTINFO: another app's source address
// would claim that app's identity at the backend),
// where the sender's sendto gets EPERM (what a netfilter drop gives natively). Elements
// go with their app. Marks are never reused while the daemon runs (a socket outliving its
// app keeps a mark no set element names: it reaches nothing); a restarted daemon starts at a
// random slot.
//
// Unconnected senders and services (hooks.ts, AX_CF_SENDTO): an isolated app's unconnected
// UDP socket gets an unconnected host socket bound to the app's source address and marked,
// and each destination it may reach (every allowed backend of a VIP, judged once per
// destination) is an element before the hook may send there; a UDP service of an isolated
// app is a host socket bound as any UDP service's and marked with the app's mark | SERVICE
// (every element exists for both marks). A service may also answer whoever sent to it (the
// reply direction of a conntrack entry: the first datagram of the flow came in); a flow the
// app started (original direction) needs its element, so revoking the element stops it even
// while conntrack remembers the flow. Client sockets (no SERVICE bit) cannot answer a host
// process that sends to them first: only elements let them send.
//
// Limits: the table is the guarantee, so whatever deletes it (a host firewall reload that
// flushes every table: `nft flush ruleset`) leaves the sockets already handed in unconfined;
// new handoffs then fail (ENETUNREACH), as the set is gone.
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import { setSocketMark } from './trust';

/** What the daemon logs with; a subset of its Logger. */
interface Log {
  warn(m: string): void;
  debug(m: string): void;
}

/** Marks: the top byte is the daemon's tag, then SERVICE (a UDP service's socket, which may
 *  answer its clients), then 23 bits of app slot. */
const SLOT_BITS = 24;
const SERVICE = 1 << 23;
const SLOT_MAX = SERVICE - 1;

/** The nft program: PATH, then the sbin directories (a daemon's PATH may lack them); null if none. */
function findNft(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    try {
      if (statSync(`${d}/nft`).isFile()) return `${d}/nft`;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** Runs nft with a script on stdin; resolves or rejects with nft's message. */
function nftAsync(nft: string, script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = execFile(nft, ['-f', '-'], { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`nft: ${(stderr || err.message).trim()}`));
      else resolve();
    });
    p.stdin?.end(script);
  });
}

/**
 * The nftables table that lets each isolated app's handed-in UDP sockets reach only the
 * backends the daemon connected them to (see the file comment). Create with `open`.
 */
export class UdpEgress {
  private readonly slots = new Map<string, number>();
  /** A random start: a daemon restarted on the same table (same tag) gives its apps other
   *  marks than the sockets its predecessor handed out may still carry. */
  private nextSlot = 1 + randomInt(SLOT_MAX >>> 1);
  /** "mark source backend port" elements present, per app id, with the backend's socket id (if any) */
  private readonly elems = new Map<string, Map<string, number | undefined>>();
  /** nft runs one at a time, in order */
  private chain: Promise<void> = Promise.resolve();

  private constructor(
    private readonly nft: string,
    /** the table's name (family inet) */
    readonly table: string,
    private readonly tag: number,
    private readonly log: Log,
  ) {}

  /**
   * Makes the table for a daemon identified by `id` (its hook socket path: two daemons in
   * one network namespace get two tables, and two tags). Returns `egress: null` and the
   * reason when this process cannot: not root (no CAP_NET_ADMIN over the host namespace: SO_MARK
   * and nftables are refused), no `nft` program, or nft refused the table.
   */
  static open(id: string, log: Log): { egress: UdpEgress } | { egress: null; why: string } {
    if (process.getuid?.() !== 0) return { egress: null, why: 'the daemon is not root (SO_MARK and nftables need CAP_NET_ADMIN)' };
    const nft = findNft();
    if (!nft) return { egress: null, why: 'no nft program (package nftables)' };
    const h = createHash('sha256').update(id).digest();
    const table = `ax_egress_${h.subarray(0, 4).toString('hex')}`;
    let tag = 0x80 | (h[4]! & 0x7f);
    // Another ax daemon in this namespace may use the same tag (its table names it): take a free one.
    try {
      const out = execFileSync(nft, ['list', 'tables', 'inet'], { encoding: 'utf8', timeout: 10_000 });
      const used = new Set<number>();
      for (const m of out.matchAll(/table inet (ax_egress_[0-9a-f]{8})/g)) {
        if (m[1] === table) continue;
        try {
          const t = execFileSync(nft, ['list', 'chain', 'inet', m[1]!, 'output'], { encoding: 'utf8', timeout: 10_000 });
          // nft prints the first rule back as "meta mark != 0xTT000000/8 return"
          const tm = /meta mark (?:& 0xff000000 )?!= 0x([0-9a-f]{2})000000(?:\/8)? return/.exec(t);
          if (tm) used.add(parseInt(tm[1]!, 16));
        } catch {
          /* gone meanwhile */
        }
      }
      if (used.size >= 128) return { egress: null, why: 'every udp egress tag is taken by other ax daemons in this network namespace' };
      while (used.has(tag)) tag = 0x80 | ((tag + 1) & 0x7f);
      const hex = `0x${(tag << 24 >>> 0).toString(16)}`;
      const script =
        `table inet ${table}\ndelete table inet ${table}\n` +
        `table inet ${table} {\n` +
        `  set allow4 { type mark . ipv4_addr . ipv4_addr . inet_service; }\n` +
        `  set allow6 { type mark . ipv6_addr . ipv6_addr . inet_service; }\n` +
        `  chain output {\n    type filter hook output priority 0; policy accept;\n` +
        `    meta mark & 0xff000000 != ${hex} return\n` +
        `    meta mark & 0x${SERVICE.toString(16)} == 0x${SERVICE.toString(16)} meta l4proto udp ct direction reply ct state established accept\n` +
        `    meta l4proto udp meta mark . ip saddr . ip daddr . udp dport @allow4 accept\n` +
        `    meta l4proto udp meta mark . ip6 saddr . ip6 daddr . udp dport @allow6 accept\n` +
        `    meta l4proto udp counter drop\n  }\n}\n`;
      execFileSync(nft, ['-f', '-'], { input: script, encoding: 'utf8', timeout: 10_000, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      return { egress: null, why: `nft: ${(err.stderr || err.message).trim()}` };
    }
    log.debug(`udp egress for isolated apps: nftables table inet ${table}, marks 0x${tag.toString(16)}xxxxxx`);
    return { egress: new UdpEgress(nft, table, tag, log) };
  }

  /** The mark of an app's handed-in UDP sockets (a new one per app, never reused); 0 when the slots are spent. */
  markFor(appId: string): number {
    let slot = this.slots.get(appId);
    if (slot === undefined) {
      if (this.nextSlot > SLOT_MAX) return 0;
      slot = this.nextSlot++;
      this.slots.set(appId, slot);
    }
    return ((this.tag << SLOT_BITS) | slot) >>> 0;
  }

  /**
   * Marks `fd` as app `appId`'s and lets that mark send from `src` (the connected socket's
   * local address) to `ip`:`port` (UDP). Addresses: dotted IPv4, v4-mapped or IPv6 text.
   * Resolves once the set holds the element (the app may send then). Rejects when SO_MARK
   * or nft fail (the caller must not hand the socket over). `backend`: the table id of the
   * service socket it reaches, for `prune` (absent: not a service; kept with the app).
   */
  async allow(fd: number, appId: string, src: string, ip: string, port: number, backend?: number): Promise<void> {
    return this.allowAll(fd, appId, [src], [{ ip, port, backend }]);
  }

  /**
   * Marks `fd` (when not null) as app `appId`'s and lets that mark send from each of
   * `sources` to each of `targets` (UDP) whose family matches (pairs that differ in family
   * are skipped; none left: an Error). One nft run for every element not present yet;
   * resolves once the set holds them. `backend` of a target: the table id of the service
   * socket it is, for `prune`. Rejects when SO_MARK or nft fail (nothing may be handed over
   * then).
   */
  async allowAll(fd: number | null, appId: string, sources: string[], targets: { ip: string; port: number; backend?: number }[]): Promise<void> {
    const mark = this.markFor(appId);
    if (mark === 0) throw new Error('no udp egress marks left');
    if (fd !== null) setSocketMark(fd, mark);
    const marks = [mark, (mark | SERVICE) >>> 0];
    const plain = (a: string) => a.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
    let set = this.elems.get(appId);
    const fresh = new Map<string, number | undefined>();
    let script = '';
    let pairs = 0;
    for (const t of targets) {
      const addr = plain(t.ip);
      const v6 = addr.includes(':');
      for (const src of sources) {
        const from = plain(src);
        if (from.includes(':') !== v6) continue;
        pairs++;
        for (const mk of marks) {
          const key = `${mk} ${from} ${addr} ${t.port}`;
          if (set?.has(key) || fresh.has(key)) continue;
          fresh.set(key, t.backend);
          script += `add element inet ${this.table} ${v6 ? 'allow6' : 'allow4'} { 0x${mk.toString(16)} . ${from} . ${addr} . ${t.port} }\n`;
        }
      }
    }
    if (pairs === 0) throw new Error(`udp egress: no source of ${sources.join(', ')} is in the family of ${targets.map((t) => t.ip).join(', ')}`);
    if (!script) return;
    const run = this.chain.then(() => nftAsync(this.nft, script));
    this.chain = run.catch(() => {});
    await run;
    set = this.elems.get(appId);
    if (!set) this.elems.set(appId, (set = new Map()));
    for (const [k, b] of fresh) set.set(k, b);
  }

  /**
   * Marks `fd` as a UDP service socket of app `appId` (its mark | SERVICE), letting it send
   * nowhere new: it may answer its clients (conntrack's reply direction) and reach what the
   * app's other sends were allowed. Throws when there is no mark left or SO_MARK fails.
   */
  markService(fd: number, appId: string): void {
    const mark = this.markFor(appId);
    if (mark === 0) throw new Error('no udp egress marks left');
    setSocketMark(fd, (mark | SERVICE) >>> 0);
  }

  /**
   * Removes the elements whose app may no longer reach their backend (`keep` says, e.g. after
   * a policy change): that app's sockets can no longer send there (EPERM), as a revoked TCP
   * connection is cut. Returns how many go; the set changes a moment later (one nft run).
   */
  prune(keep: (appId: string, backend: number) => boolean): number {
    const gone: string[] = [];
    for (const [appId, set] of this.elems) {
      for (const [k, backend] of set) {
        if (backend === undefined || keep(appId, backend)) continue;
        set.delete(k);
        gone.push(k);
      }
    }
    if (gone.length > 0) this.deleteElems(gone);
    return gone.length;
  }

  private deleteElems(keys: Iterable<string>): void {
    let script = '';
    for (const k of keys) {
      const [mark, from, addr, port] = k.split(' ');
      const v6 = addr!.includes(':');
      script += `delete element inet ${this.table} ${v6 ? 'allow6' : 'allow4'} { 0x${Number(mark).toString(16)} . ${from} . ${addr} . ${port} }\n`;
    }
    const run = this.chain.then(() => nftAsync(this.nft, script));
    this.chain = run.catch((e: Error) => this.log.warn(`udp egress: ${e.message}`));
  }

  /** Forgets an app: its elements leave the set (its mark is not given to another app). */
  removeApp(appId: string): void {
    const set = this.elems.get(appId);
    this.elems.delete(appId);
    if (!set || set.size === 0) return;
    this.deleteElems(set.keys());
  }

  /**
   * Daemon shutdown. `keep`: isolated apps still run with sockets this daemon marked, so the
   * table stays as it is (they keep their allowed destinations, and nothing else, until a
   * daemon starts on this hook socket and makes the table anew); deleting it would leave their
   * marked sockets free to send anywhere. Otherwise the table is deleted.
   */
  close(keep = false): void {
    if (keep) {
      this.log.debug(`udp egress: table inet ${this.table} kept for the isolated apps still running`);
      return;
    }
    try {
      execFileSync(this.nft, ['delete', 'table', 'inet', this.table], { timeout: 10_000, stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
}
