// Forwarding what ax does not answer to upstream resolvers: over UDP with a timeout
// per upstream (then the next one, then SERVFAIL), again over TCP when a TCP client's
// answer came back truncated, with a fresh random query id per forward mapped back to
// the client's, and a bound on forwards in flight.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect, isIPv4, isIPv6 } from 'node:net';
import { randomInt } from 'node:crypto';
import * as dnsPacket from 'dns-packet';

/** An upstream resolver or a listening address: ip (v4 or v6 text) and UDP/TCP port. */
export interface HostPort {
  ip: string;
  port: number;
}

/**
 * Parses "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 address; `defPort` when no port
 * is given. Throws with the reason.
 */
export function parseHostPort(text: string, defPort: number): HostPort {
  const t = text.trim();
  let ip = t;
  let port: string | undefined;
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (br) {
    ip = br[1];
    port = br[2];
  } else if (!isIPv6(t)) {
    const m = /^([^:]+):(\d+)$/.exec(t);
    if (m) {
      ip = m[1];
      port = m[2];
    }
  }
  if (!isIPv4(ip) && !isIPv6(ip)) throw new Error(`"${text}" is not IP, IP:PORT or [IPv6]:PORT`);
  if (port === undefined) return { ip, port: defPort };
  const p = Number(port);
  if (!/^\d{1,5}$/.test(port) || p > 65535) throw new Error(`"${text}": port must be 0-65535`);
  return { ip, port: p };
}

/**
 * The `nameserver` lines of a resolv.conf (resolv.conf(5)), port 53, in order, at most
 * 3 (MAXNS, as glibc). IPv6 zone suffixes (%eth0) are dropped. A file without any
 * nameserver line means the local host, as in glibc: 127.0.0.1. A missing file too.
 */
export function resolvConfServers(path = '/etc/resolv.conf'): HostPort[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    text = '';
  }
  const out: HostPort[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const ip = m[1].replace(/%.*$/, '');
    if ((isIPv4(ip) || isIPv6(ip)) && out.length < 3) out.push({ ip, port: 53 });
  }
  return out.length > 0 ? out : [{ ip: '127.0.0.1', port: 53 }];
}

export interface ForwarderOptions {
  /** Wait for each upstream this long before trying the next (ms). Default 2000. */
  timeoutMs?: number;
  /** Forwards in flight at most; a query over the bound gets null (SERVFAIL). Default 1024. */
  maxInflight?: number;
}

/** Why a forward produced no answer. */
export type ForwardFailure = 'timeout' | 'overload' | 'error';

interface Pending {
  id: number;
  query: Buffer; // with our id
  clientId: number;
  question: dnsPacket.Question;
  tcp: boolean;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  done: (r: Buffer | ForwardFailure) => void;
}

/** The header of a DNS message alone (its first 12 bytes; throws when shorter). */
export function decodeHeader(buf: Buffer): dnsPacket.DecodedPacket {
  if (buf.length < 12) throw new Error(`${buf.length} bytes: shorter than a DNS header`);
  // The four section counts (RFC 1035 4.1.1, octets 4-11) are zeroed in a copy.
  const h = Buffer.from(buf.subarray(0, 12));
  h.fill(0, 4, 12);
  return dnsPacket.decode(h);
}

/** The header and question of a DNS message, without decoding its records. */
export function decodeHead(buf: Buffer): dnsPacket.DecodedPacket {
  // ANCOUNT, NSCOUNT and ARCOUNT (RFC 1035 4.1.1, octets 6-11) are zeroed in a copy, so
  // dns-packet decodes the header and the questions and stops there.
  const h = Buffer.from(buf);
  if (h.length >= 12) h.fill(0, 6, 12);
  return dnsPacket.decode(h);
}

function sameQuestion(a: dnsPacket.Question, b: dnsPacket.Question | undefined): boolean {
  return !!b && a.name.toLowerCase() === b.name.toLowerCase() && a.type === b.type && (a.class ?? 'IN') === (b.class ?? 'IN');
}

/**
 * Sends queries to `upstreams` in order and hands back the first valid answer with the
 * client's id restored. An answer counts only when it comes from the upstream asked, has
 * the id we chose and echoes the question (RFC 5452's checks against spoofing).
 */
export class Forwarder {
  private readonly pending = new Map<number, Pending>();
  private sock4: dgram.Socket | null = null;
  private sock6: dgram.Socket | null = null;
  private readonly timeoutMs: number;
  private readonly maxInflight: number;
  /** Answers dropped because they matched no forward (late, spoofed, wrong question). */
  strays = 0;
  private closed = false;

  constructor(
    readonly upstreams: HostPort[],
    opts: ForwarderOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.maxInflight = opts.maxInflight ?? 1024;
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** The local UDP ports forwards leave from (a query arriving from one of them is our own, looped). */
  localPorts(): number[] {
    const out: number[] = [];
    for (const s of [this.sock4, this.sock6]) {
      try {
        if (s) out.push(s.address().port);
      } catch {
        /* not bound yet */
      }
    }
    return out;
  }

  /** Opens the UDP sockets now (they are bound to ephemeral ports). */
  async open(): Promise<void> {
    const want4 = this.upstreams.some((u) => isIPv4(u.ip));
    const want6 = this.upstreams.some((u) => isIPv6(u.ip));
    const mk = async (type: 'udp4' | 'udp6') => {
      const s = dgram.createSocket(type);
      s.on('message', (msg, rinfo) => this.onAnswer(msg, rinfo));
      s.on('error', () => {});
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(0, () => {
          s.off('error', reject);
          resolve();
        });
      });
      return s;
    };
    if (want4) this.sock4 = await mk('udp4');
    if (want6) this.sock6 = await mk('udp6').catch(() => null);
  }

  /**
   * Forwards one query (the client's bytes, its single question `question`). Resolves with
   * the upstream's answer carrying the client's id, or why there is none.
   */
  forward(query: Buffer, question: dnsPacket.Question, tcp: boolean): Promise<Buffer | ForwardFailure> {
    if (this.closed || this.upstreams.length === 0) return Promise.resolve('error');
    if (this.pending.size >= this.maxInflight) return Promise.resolve('overload');
    let id = randomInt(0, 0x10000);
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    const q = Buffer.from(query);
    const clientId = q.readUInt16BE(0);
    q.writeUInt16BE(id, 0); // the message ID field, RFC 1035 4.1.1
    return new Promise((resolve) => {
      const p: Pending = {
        id,
        query: q,
        clientId,
        question,
        tcp,
        attempt: -1,
        timer: undefined,
        done: (r) => {
          clearTimeout(p.timer);
          this.pending.delete(id);
          if (typeof r !== 'string') r.writeUInt16BE(clientId, 0);
          resolve(r);
        },
      };
      this.pending.set(id, p);
      this.next(p);
    });
  }

  private next(p: Pending): void {
    clearTimeout(p.timer);
    p.attempt++;
    if (p.attempt >= Math.min(this.upstreams.length, 3)) return p.done('timeout');
    const u = this.upstreams[p.attempt];
    const s = isIPv4(u.ip) ? this.sock4 : this.sock6;
    p.timer = setTimeout(() => this.next(p), this.timeoutMs);
    if (!s) return;
    s.send(p.query, u.port, u.ip, (e) => {
      if (e && this.pending.get(p.id) === p) this.next(p);
    });
  }

  private onAnswer(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let head: dnsPacket.DecodedPacket;
    try {
      head = decodeHead(msg);
    } catch {
      this.strays++;
      return;
    }
    const p = head.id === undefined ? undefined : this.pending.get(head.id);
    const u = p ? this.upstreams[p.attempt] : undefined;
    if (!p || !u || !head.flag_qr || rinfo.port !== u.port || normalizeIp(rinfo.address) !== normalizeIp(u.ip) || !sameQuestion(p.question, head.questions?.[0])) {
      this.strays++;
      return;
    }
    if (head.flag_tc && p.tcp) {
      // A TCP client can take the whole answer: ask the same upstream over TCP.
      clearTimeout(p.timer);
      this.pending.delete(p.id); // its id is free again; the TCP exchange has its own connection
      forwardTcp(p.query, u, this.timeoutMs).then(
        (full) => p.done(full ?? msg),
        () => p.done(msg),
      );
      return;
    }
    p.done(Buffer.from(msg));
  }

  close(): void {
    this.closed = true;
    for (const p of [...this.pending.values()]) p.done('error');
    for (const s of [this.sock4, this.sock6]) {
      try {
        s?.close();
      } catch {
        /* closed */
      }
    }
  }
}

function normalizeIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return (m ? m[1] : ip).toLowerCase();
}

/**
 * One query over TCP (RFC 1035 4.2.2: each message prefixed with its 2-byte length,
 * RFC 7766); null when the upstream does not answer within `timeoutMs` or closes early.
 */
export function forwardTcp(query: Buffer, u: HostPort, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(query.length);
    const c = connect({ host: u.ip, port: u.port });
    let buf = Buffer.alloc(0);
    const finish = (r: Buffer | null) => {
      clearTimeout(timer);
      c.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    c.on('connect', () => c.write(Buffer.concat([len, query])));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        let ok = false;
        try {
          const h = decodeHead(msg);
          ok = h.flag_qr && h.id === query.readUInt16BE(0);
        } catch {
          ok = false;
        }
        finish(ok ? Buffer.from(msg) : null);
      }
    });
    c.on('error', () => finish(null));
    c.on('close', () => finish(null));
  });
}

