// The daemon's DNS responder: answers ax names (A, AAAA, PTR, SRV) from the service
// table and forwards every other name upstream, over UDP and TCP on one address
// (--dns-listen). Messages are parsed and built with dns-packet; the only bytes touched
// by hand are the message ID (forwarding) and the TCP 2-byte length prefix.
//
// What is answered (docs/architecture.md, "DNS responder"):
//   A      NAME, NAME.ax, NAME.<--dns-domain>   -> the name's virtual IP (authoritative)
//   AAAA   the same names                      -> NOERROR, no records (VIPs are IPv4)
//   PTR    d.c.b.a.in-addr.arpa of a VIP       -> NAME.ax
//   SRV    the same names                      -> one record per listening virtual port
//          (priority 0, weight 0, target the name asked), its A record as additional
//   other types of an ax name: NOERROR, no records; a name under .ax, a --dns-domain or
//   the reverse name of an address in a virtual range that is not registered: NXDOMAIN.
// Bad input: shorter than a header or a response (QR=1): dropped; an opcode other than
// QUERY: NOTIMP; undecodable, not exactly one question, or over 512 bytes on UDP without
// EDNS: FORMERR. Each is counted and logged rate-limited (src/common/ratelimit.ts).
import dgram from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { formatAddr, isLoopback, localAddresses, unmapV4 } from '../common/addr';
import type { Logger } from '../common/log';
import { ThrottledLog } from '../common/ratelimit';
import { AX_ZONE, type AxNames } from './names';
import { decodeHeader, Forwarder, type HostPort } from './upstream';

/** Response codes (RFC 1035 4.1.1). */
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** The opcode bits of the header's flags word (RFC 1035 4.1.1). */
const OPCODE_MASK = 0xf << 11;

/**
 * Who asks: the source address of the datagram or TCP connection; for a query relayed
 * from an isolated app (src/dns/relay.ts), the app's id (ip/port then only name it in logs).
 */
export interface Asker extends HostPort {
  tcp: boolean;
  /** the app a relayed query comes from (admitted like a hook session) */
  appId?: string;
}

/** Counters the daemon shows in `ax status`. */
export interface DnsStats {
  /** messages received that had a header */
  queries: number;
  /** answered from the service table */
  local: number;
  /** answered by an upstream */
  forwarded: number;
  /** SERVFAIL sent (upstream timeout, forwards over the bound) */
  servfail: number;
  /** REFUSED sent (--dns-upstream none) */
  refused: number;
  /** bad input: dropped, FORMERR or NOTIMP */
  bad: number;
}

export interface DnsOptions {
  /** Where to listen, UDP and TCP on the same port; port 0 picks a free one. */
  listen: HostPort;
  names: AxNames;
  /** Resolvers for other names, or 'none': other names are REFUSED. */
  upstreams: HostPort[] | 'none';
  log: Logger;
  /**
   * Whether `asker` may see the ax service `name` (the policy hook; default: everyone).
   * A name it may not see is answered NXDOMAIN, as if it did not exist.
   */
  visible?: (asker: Asker, name: string) => boolean;
  /** TTL of ax answers, seconds. Default 5. */
  ttl?: number;
  /** Per-upstream timeout (ms). Default 2000. */
  forwardTimeoutMs?: number;
  /** Forwards in flight at most. Default 1024. */
  maxInflight?: number;
  /** A TCP connection with nothing received for this long is closed (ms). Default 10 000. */
  tcpIdleMs?: number;
  /** Open TCP connections at most; more are closed at once. Default 256. */
  maxTcpConns?: number;
}

const EDNS_SIZE = 1232; // the UDP payload size ax advertises (DNS flag day 2020)

/** A DNS server answering ax names and forwarding the rest (see the file comment). */
export class DnsResponder {
  private udp: dgram.Socket | null = null;
  private tcp: Server | null = null;
  private readonly conns = new Set<Socket>();
  private forwarder: Forwarder | null = null;
  private readonly badLog: ThrottledLog;
  private readonly visible: (asker: Asker, name: string) => boolean;
  private readonly ttl: number;
  /** The bound address (UDP and TCP), once started. */
  address: HostPort | null = null;
  readonly stats: DnsStats = { queries: 0, local: 0, forwarded: 0, servfail: 0, refused: 0, bad: 0 };

  constructor(private readonly o: DnsOptions) {
    this.badLog = new ThrottledLog(o.log, 'dns', { burst: 5, perSecond: 0.1, summaryMs: 10_000 });
    this.visible = o.visible ?? (() => true);
    this.ttl = o.ttl ?? 5;
  }

  /** The upstreams forwards go to (after dropping our own address), or 'none'. */
  get upstreams(): HostPort[] | 'none' {
    return this.forwarder ? this.forwarder.upstreams : 'none';
  }

  /** Binds UDP and TCP on the same address; throws with the address and the reason. */
  async start(): Promise<HostPort> {
    const { ip, port } = this.o.listen;
    let lastErr: Error | null = null;
    for (let i = 0; i < (port === 0 ? 8 : 1); i++) {
      try {
        const udp = await bindUdp(ip, port);
        const got = udp.address().port;
        try {
          this.tcp = await listenTcp(ip, got, (c) => this.onConn(c));
        } catch (e) {
          udp.close();
          throw e;
        }
        this.udp = udp;
        this.address = { ip, port: got };
        break;
      } catch (e) {
        lastErr = e as Error;
      }
    }
    if (!this.udp || !this.address) throw new Error(`DNS listen ${formatAddr(this.o.listen)}: ${lastErr?.message ?? 'failed'}`);
    this.udp.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    this.udp.on('error', (e) => this.o.log.warn(`dns: udp: ${e.message}`));
    if (this.o.upstreams !== 'none') {
      const self = this.address;
      const locals = localAddresses();
      const isSelf = (u: HostPort) =>
        u.port === self.port && (u.ip === self.ip || ((self.ip === '0.0.0.0' || self.ip === '::') && (locals.has(u.ip) || isLoopback(u.ip))));
      const ups = this.o.upstreams.filter((u) => !isSelf(u));
      for (const u of this.o.upstreams) if (isSelf(u)) this.o.log.warn(`dns: upstream ${formatAddr(u)} is this responder; not forwarding to it`);
      if (ups.length === 0) this.o.log.warn('dns: no upstream resolver left: names that are not ax names are refused');
      else {
        this.forwarder = new Forwarder(ups, { timeoutMs: this.o.forwardTimeoutMs, maxInflight: this.o.maxInflight });
        await this.forwarder.open();
      }
    }
    const ups = this.forwarder ? this.forwarder.upstreams.map(formatAddr).join(', ') : 'none (refused)';
    this.o.log.info(`dns: answering on ${formatAddr(this.address)} (udp, tcp); other names go to ${ups}`);
    return this.address;
  }

  async close(): Promise<void> {
    this.forwarder?.close();
    this.badLog.close();
    for (const c of this.conns) c.destroy();
    try {
      this.udp?.close();
    } catch {
      /* closed */
    }
    const tcp = this.tcp;
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
    this.udp = null;
    this.tcp = null;
  }

  // ---- transports --------------------------------------------------------

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const asker: Asker = { ip: unmapV4(rinfo.address), port: rinfo.port, tcp: false };
    this.answer(msg, asker).then(
      (r) => {
        if (r && this.udp) this.udp.send(r, rinfo.port, rinfo.address);
      },
      (e: Error) => this.o.log.error(`dns: ${e.message}`),
    );
  }

  private onConn(c: Socket): void {
    if (this.conns.size >= (this.o.maxTcpConns ?? 256)) {
      this.bad('tcp-conns', `too many TCP connections; closing one from ${c.remoteAddress}`);
      c.destroy();
      return;
    }
    this.conns.add(c);
    const asker: Asker = { ip: unmapV4(c.remoteAddress ?? ''), port: c.remotePort ?? 0, tcp: true };
    let buf: Buffer = Buffer.alloc(0);
    let inflight = 0;
    c.setTimeout(this.o.tcpIdleMs ?? 10_000, () => {
      this.bad('tcp-idle', `TCP peer ${formatAddr(asker)} idle; closed`);
      c.destroy();
    });
    c.on('error', () => {});
    c.on('close', () => this.conns.delete(c));
    c.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      // RFC 1035 4.2.2 / RFC 7766: each message is prefixed with its 2-byte length.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < 12) {
          this.bad('tcp-garbage', `TCP peer ${formatAddr(asker)} sent a ${len}-byte message; closed`);
          c.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (++inflight > 32) {
          this.bad('tcp-pipeline', `TCP peer ${formatAddr(asker)} has over 32 queries in flight; closed`);
          c.destroy();
          return;
        }
        this.answer(Buffer.from(msg), asker).then(
          (r) => {
            inflight--;
            if (c.destroyed) return;
            if (!r) {
              c.destroy(); // undecodable: the stream cannot be trusted to be in step
              return;
            }
            const len2 = Buffer.alloc(2);
            len2.writeUInt16BE(r.length);
            c.write(Buffer.concat([len2, r]));
            if (decodeRcode(r) === RCODE.FORMERR) c.end();
          },
          (e: Error) => {
            this.o.log.error(`dns: ${e.message}`);
            c.destroy();
          },
        );
      }
    });
  }

  private bad(kind: string, msg: string): void {
    this.stats.bad++;
    this.badLog.warn(kind, msg);
  }

  // ---- answering ---------------------------------------------------------

  /**
   * The response to one message from `asker`, or null when it gets none (dropped).
   * Never throws for bad input.
   */
  async answer(msg: Buffer, asker: Asker): Promise<Buffer | null> {
    const from = formatAddr(asker);
    if (msg.length < 12) {
      this.bad('short', `${msg.length}-byte message from ${from} (shorter than a header); dropped`);
      return null;
    }
    this.stats.queries++;
    let head: dnsPacket.DecodedPacket;
    try {
      head = decodeHeader(msg);
    } catch {
      this.bad('short', `undecodable header from ${from}; dropped`);
      return null;
    }
    if (head.flag_qr) {
      this.bad('response', `a response (QR=1) sent to the responder by ${from}; dropped`);
      return null;
    }
    if (this.forwarder && this.forwarder.localPorts().includes(asker.port) && (isLoopback(asker.ip) || localAddresses().has(asker.ip))) {
      this.bad('loop', `query from our own forwarding socket ${from}: an upstream forwards back to ax; dropped`);
      return null;
    }
    const opcode = (head.flags ?? 0) & OPCODE_MASK;
    if (opcode !== 0) {
      this.bad('opcode', `opcode ${opcode >> 11} from ${from}; NOTIMP`);
      return this.error(head, RCODE.NOTIMP);
    }
    let pkt: dnsPacket.DecodedPacket;
    try {
      pkt = dnsPacket.decode(msg);
    } catch (e) {
      this.bad('malformed', `malformed query from ${from} (${(e as Error).message}); FORMERR`);
      return this.error(head, RCODE.FORMERR);
    }
    const questions = pkt.questions ?? [];
    if (questions.length !== 1) {
      this.bad('questions', `query with ${questions.length} questions from ${from}; FORMERR`);
      return this.error(head, RCODE.FORMERR);
    }
    const opt = (pkt.additionals ?? []).find((a) => a.type === 'OPT') as dnsPacket.OptAnswer | undefined;
    if (!asker.tcp && msg.length > 512 && !opt) {
      this.bad('oversized', `${msg.length}-byte UDP query without EDNS from ${from}; FORMERR`);
      return this.error(head, RCODE.FORMERR);
    }
    const q = questions[0];
    const limit = asker.tcp ? 65535 : opt ? Math.max(512, Math.min(opt.udpPayloadSize, 4096)) : 512;
    const cls = q.class ?? 'IN';
    const c = cls === 'IN' || cls === 'ANY' ? this.o.names.classify(q.name) : { kind: 'foreign' as const };
    if (c.kind === 'foreign') return this.forward(msg, pkt, q, asker, !!opt);
    this.stats.local++;
    const qtype: string = q.type; // dns-packet's type list lacks ANY (255), which it decodes
    const answers: dnsPacket.Answer[] = [];
    const additionals: dnsPacket.Answer[] = [];
    let rcode: number = RCODE.NOERROR;
    if (c.kind === 'absent' || ((c.kind === 'service' || c.kind === 'reverse') && !this.visible(asker, c.name))) {
      rcode = RCODE.NXDOMAIN;
    } else if (c.kind === 'service') {
      if (qtype === 'A' || qtype === 'ANY') answers.push({ type: 'A', name: q.name, ttl: this.ttl, data: c.vip });
      else if (q.type === 'SRV') {
        // RFC 2782: the target is the host; `_tcp.NAME` / `_udp.NAME` name the same host NAME
        const host = q.name.replace(/^_(tcp|udp)\./i, '');
        for (const port of this.o.names.ports(c.vip, c.proto)) answers.push({ type: 'SRV', name: q.name, ttl: this.ttl, data: { priority: 0, weight: 0, port, target: host } });
        if (answers.length > 0) additionals.push({ type: 'A', name: host, ttl: this.ttl, data: c.vip });
      }
    } else if (c.kind === 'reverse') {
      if (qtype === 'PTR' || qtype === 'ANY') answers.push({ type: 'PTR', name: q.name, ttl: this.ttl, data: `${c.name}.${AX_ZONE}` });
    }
    return this.reply(pkt, q, rcode, answers, additionals, opt, limit);
  }

  /** An error answer to a message whose header (only) is known: no question echoed. */
  private error(head: dnsPacket.DecodedPacket, rcode: number): Buffer {
    return dnsPacket.encode({
      type: 'response',
      id: head.id,
      flags: ((head.flags ?? 0) & (OPCODE_MASK | dnsPacket.RECURSION_DESIRED)) | rcode,
      questions: [],
    });
  }

  private reply(
    pkt: dnsPacket.DecodedPacket,
    q: dnsPacket.Question,
    rcode: number,
    answers: dnsPacket.Answer[],
    additionals: dnsPacket.Answer[],
    opt: dnsPacket.OptAnswer | undefined,
    limit: number,
  ): Buffer {
    const ednsOpt = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as dnsPacket.OptAnswer] : [];
    let flags = dnsPacket.AUTHORITATIVE_ANSWER | ((pkt.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | rcode;
    if (this.forwarder) flags |= dnsPacket.RECURSION_AVAILABLE;
    const out: dnsPacket.Packet = { type: 'response', id: pkt.id, flags, questions: [q], answers, additionals: [...additionals, ...ednsOpt] };
    if (dnsPacket.encodingLength(out) > limit) {
      // Too big for the client's UDP size: TC set, the client asks again over TCP (RFC 1035 4.2.1).
      return dnsPacket.encode({ ...out, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [], additionals: ednsOpt });
    }
    return dnsPacket.encode(out);
  }

  private async forward(msg: Buffer, pkt: dnsPacket.DecodedPacket, q: dnsPacket.Question, asker: Asker, edns: boolean): Promise<Buffer> {
    const opt = edns ? (pkt.additionals ?? []).find((a) => a.type === 'OPT') as dnsPacket.OptAnswer : undefined;
    if (!this.forwarder) {
      this.stats.refused++;
      return this.reply(pkt, q, RCODE.REFUSED, [], [], opt, 65535);
    }
    const r = await this.forwarder.forward(msg, q, asker.tcp);
    if (typeof r !== 'string') {
      this.stats.forwarded++;
      return r;
    }
    this.stats.servfail++;
    if (r === 'overload') this.bad('overload', `over ${this.o.maxInflight ?? 1024} forwards in flight; SERVFAIL to ${formatAddr(asker)}`);
    else this.o.log.debug(`dns: forward of ${q.name} ${q.type} for ${formatAddr(asker)}: ${r}; SERVFAIL`);
    const servfail = this.reply(pkt, q, RCODE.SERVFAIL, [], [], opt, 65535);
    return servfail;
  }
}

/** The RCODE of an encoded message (the low 4 bits of its flags word). */
function decodeRcode(msg: Buffer): number {
  try {
    return (decodeHeader(msg).flags ?? 0) & 0xf;
  } catch {
    return -1;
  }
}

function bindUdp(ip: string, port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket(isIPv6(ip) ? 'udp6' : 'udp4');
  return new Promise((resolve, reject) => {
    s.once('error', (e) => {
      try {
        s.close();
      } catch {
        /* not open */
      }
      reject(e);
    });
    s.bind(port, ip, () => {
      s.removeAllListeners('error');
      resolve(s);
    });
  });
}

function listenTcp(ip: string, port: number, onConn: (c: Socket) => void): Promise<Server> {
  const srv = createServer(onConn);
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host: ip, port, exclusive: true }, () => {
      srv.off('error', reject);
      srv.on('error', () => {});
      resolve(srv);
    });
  });
}

