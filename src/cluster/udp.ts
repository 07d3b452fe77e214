// UDP packet transport (node:dgram) for probes and gossip.
//
// Envelope: u64 ts_ms | 8-byte nonce | payload | 16-byte HMAC-SHA256(key, ts|nonce|payload)
// A datagram that is oversized, too short, badly authenticated, outside the 30 s skew window or a
// replay is dropped and logged (rate limited). Only the payload reaches the node.

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { ClusterKeys, ReplayGuard, nonce, u64be, type KeyInput } from './auth';
import { parseAddr } from './config';
import { RateLimitedLog, nullLogger, type Logger, type PacketHandler, type Transport } from './transport';

export const UDP_OVERHEAD = 8 + 8 + 16;

export interface UdpTransportOptions {
  /** "host:port" to bind (use the advertise address). */
  bindAddr: string;
  /** Shared cluster key(s): first signs, any verifies. */
  key: KeyInput | KeyInput[];
  /** Max datagram size (ClusterConfig.maxPacketSize). */
  maxPacketSize?: number;
  logger?: Logger;
  /** Allowed clock skew / replay window. */
  replayWindowMs?: number;
}

export class UdpTransport implements Pick<Transport, 'packetOverhead' | 'sendPacket' | 'onPacket' | 'start' | 'close'> {
  readonly packetOverhead = UDP_OVERHEAD;
  private sock: dgram.Socket | null = null;
  private handler: PacketHandler | null = null;
  private readonly keys: ClusterKeys;
  private readonly replay: ReplayGuard;
  private readonly rl: RateLimitedLog;
  private readonly maxPacket: number;
  private readonly addrCache = new Map<string, { host: string; port: number }>();
  readonly stats = { sent: 0, received: 0, rejectedAuth: 0, rejectedReplay: 0, rejectedSize: 0 };
  boundPort = 0;

  constructor(private readonly opts: UdpTransportOptions) {
    this.keys = new ClusterKeys(opts.key);
    this.replay = new ReplayGuard(opts.replayWindowMs ?? 30_000);
    this.maxPacket = opts.maxPacketSize ?? 1400;
    this.rl = new RateLimitedLog(opts.logger ?? nullLogger, 10_000);
    parseAddr(opts.bindAddr, 'bindAddr');
  }

  onPacket(h: PacketHandler): void { this.handler = h; }

  async start(): Promise<void> {
    if (this.sock) return;
    const { host, port } = parseAddr(this.opts.bindAddr, 'bindAddr');
    const sock = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false });
    sock.on('message', (msg, rinfo) => this.receive(msg, `${rinfo.family === 'IPv6' ? `[${rinfo.address}]` : rinfo.address}:${rinfo.port}`));
    sock.on('error', (e) => this.rl.warn('udp-error', 'udp socket error', { error: e.message }));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => { sock.off('error', reject); resolve(); });
    });
    this.boundPort = sock.address().port;
    this.sock = sock;
  }

  async close(): Promise<void> {
    const s = this.sock;
    this.sock = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  sendPacket(addr: string, data: Uint8Array): void {
    const s = this.sock;
    if (!s) return;
    if (data.length + UDP_OVERHEAD > this.maxPacket) { this.rl.warn('udp-send-size', 'refusing to send oversized packet', { size: data.length }); return; }
    let dst = this.addrCache.get(addr);
    if (!dst) {
      try { dst = parseAddr(addr); } catch { this.rl.warn('udp-bad-addr', 'bad peer address', { addr }); return; }
      if (this.addrCache.size > 10_000) this.addrCache.clear();
      this.addrCache.set(addr, dst);
    }
    const ts = u64be(Date.now());
    const n = nonce(8);
    const mac = this.keys.sign([ts, n, data], 16);
    const pkt = Buffer.concat([ts, n, data, mac]);
    this.stats.sent++;
    s.send(pkt, dst.port, dst.host, (err) => { if (err) this.rl.warn('udp-send', 'udp send failed', { addr, error: err.message }); });
  }

  private receive(msg: Buffer, from: string): void {
    if (msg.length > this.maxPacket) { this.stats.rejectedSize++; this.rl.warn('udp-size', 'dropped oversized datagram', { from, size: msg.length }); return; }
    if (msg.length < UDP_OVERHEAD + 2) { this.stats.rejectedAuth++; this.rl.warn('udp-auth', 'dropped unauthenticated datagram (too short)', { from }); return; }
    const ts = msg.subarray(0, 8);
    const n = msg.subarray(8, 16);
    const data = msg.subarray(16, msg.length - 16);
    const mac = msg.subarray(msg.length - 16);
    if (!this.keys.verify([ts, n, data], mac)) {
      this.stats.rejectedAuth++;
      this.rl.warn('udp-auth', 'dropped datagram with invalid MAC (wrong or missing cluster key)', { from });
      return;
    }
    const tsMs = Number(ts.readBigUInt64BE());
    if (!this.replay.check(tsMs, n)) {
      this.stats.rejectedReplay++;
      this.rl.warn('udp-replay', 'dropped replayed or stale datagram', { from });
      return;
    }
    this.stats.received++;
    try { this.handler?.(from, new Uint8Array(data)); } catch (e) {
      this.rl.warn('udp-handler', 'packet handler failed', { from, error: String(e) });
    }
  }
}
