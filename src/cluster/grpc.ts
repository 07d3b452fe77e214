// Stream transport over gRPC (@grpc/grpc-js): join, anti-entropy rounds, delta pulls and
// fallback probes as authenticated request/response frames (proto/cluster.proto).
//
// Every Frame carries HMAC-SHA256(key, dir | ts_ms | nonce | data): requests signed "req",
// responses "rsp". The server refuses (UNAUTHENTICATED, logged, rate limited) frames without a
// valid MAC or outside the skew window / replayed; the client refuses responses likewise.
// Optional TLS with certificates (mutual: the server asks for a client certificate signed by ca).

import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { loadProto } from '../common/protos';
import { ClusterKeys, ReplayGuard, nonce, u64be, type KeyInput } from './auth';
import { parseAddr } from './config';
import { RateLimitedLog, nullLogger, type Logger, type RequestHandler, type Transport } from './transport';

export interface TlsPaths { cert: string; key: string; ca: string }

export interface GrpcTransportOptions {
  /** "host:port" to listen on (TCP; same port as UDP). */
  bindAddr: string;
  key: KeyInput | KeyInput[];
  tls?: TlsPaths;
  /** Max message size (ClusterConfig.maxStreamMessageSize). */
  maxMessageSize?: number;
  logger?: Logger;
  replayWindowMs?: number;
}

interface Frame { data: Buffer; ts_ms: number; nonce: Buffer; mac: Buffer }

type ExchangeClient = grpc.Client & {
  Exchange(req: Frame, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Frame) => void): grpc.ClientUnaryCall;
};

const REQ = Buffer.from('req');
const RSP = Buffer.from('rsp');

let cachedService: { service: grpc.ServiceDefinition; ctor: grpc.ServiceClientConstructor } | null = null;
function service(): { service: grpc.ServiceDefinition; ctor: grpc.ServiceClientConstructor } {
  if (!cachedService) {
    const pkg = loadProto('cluster.proto') as unknown as { ax: { cluster: { v1: { Cluster: grpc.ServiceClientConstructor } } } };
    const ctor = pkg.ax.cluster.v1.Cluster;
    cachedService = { service: ctor.service, ctor };
  }
  return cachedService;
}

export class GrpcTransport implements Pick<Transport, 'request' | 'onRequest' | 'start' | 'close'> {
  private server: grpc.Server | null = null;
  private handler: RequestHandler | null = null;
  private readonly clients = new Map<string, ExchangeClient>();
  private readonly keys: ClusterKeys;
  private readonly replay: ReplayGuard;
  private readonly rl: RateLimitedLog;
  private readonly maxMsg: number;
  private readonly creds: { server: grpc.ServerCredentials; client: grpc.ChannelCredentials };
  readonly stats = { requests: 0, served: 0, rejectedAuth: 0, rejectedReplay: 0 };
  boundPort = 0;

  constructor(private readonly opts: GrpcTransportOptions) {
    this.keys = new ClusterKeys(opts.key);
    this.replay = new ReplayGuard(opts.replayWindowMs ?? 30_000);
    this.rl = new RateLimitedLog(opts.logger ?? nullLogger, 10_000);
    this.maxMsg = opts.maxMessageSize ?? 4 * 1024 * 1024;
    parseAddr(opts.bindAddr, 'bindAddr');
    if (opts.tls) {
      const ca = readFileSync(opts.tls.ca); const cert = readFileSync(opts.tls.cert); const key = readFileSync(opts.tls.key);
      this.creds = {
        server: grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true),
        client: grpc.credentials.createSsl(ca, key, cert),
      };
    } else {
      this.creds = { server: grpc.ServerCredentials.createInsecure(), client: grpc.credentials.createInsecure() };
    }
  }

  onRequest(h: RequestHandler): void { this.handler = h; }

  private seal(dir: Buffer, data: Uint8Array): Frame {
    const ts = Date.now();
    const n = nonce(8);
    return { data: Buffer.from(data), ts_ms: ts, nonce: n, mac: this.keys.sign([dir, u64be(ts), n, data]) };
  }

  /** Returns the payload, or a string describing why the frame is refused. */
  private open(dir: Buffer, f: Frame | undefined): Buffer | string {
    if (!f || !Buffer.isBuffer(f.data) || !Buffer.isBuffer(f.mac) || !Buffer.isBuffer(f.nonce)) return 'malformed frame';
    if (f.data.length > this.maxMsg) return 'frame too large';
    const ts = Number(f.ts_ms);
    if (!Number.isFinite(ts) || f.nonce.length !== 8 || f.mac.length !== 32) return 'missing authentication';
    if (!this.keys.verify([dir, u64be(ts), f.nonce, f.data], f.mac)) return 'bad MAC (wrong cluster key)';
    if (!this.replay.check(ts, f.nonce)) return 'stale or replayed frame';
    return f.data;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const { host, port } = parseAddr(this.opts.bindAddr, 'bindAddr');
    const server = new grpc.Server({
      'grpc.max_receive_message_length': this.maxMsg + 1024,
      'grpc.max_send_message_length': this.maxMsg + 1024,
    });
    server.addService(service().service, {
      Exchange: (call: grpc.ServerUnaryCall<Frame, Frame>, cb: grpc.sendUnaryData<Frame>) => {
        const peer = call.getPeer();
        const data = this.open(REQ, call.request);
        if (typeof data === 'string') {
          if (data.startsWith('stale')) this.stats.rejectedReplay++; else this.stats.rejectedAuth++;
          this.rl.warn('grpc-auth:' + data, 'refused peer request', { peer, reason: data });
          cb({ code: grpc.status.UNAUTHENTICATED, details: 'unauthenticated' });
          return;
        }
        if (!this.handler) { cb({ code: grpc.status.UNAVAILABLE, details: 'not ready' }); return; }
        this.stats.served++;
        Promise.resolve()
          .then(() => this.handler!(peer, new Uint8Array(data)))
          .then((resp) => cb(null, this.seal(RSP, resp)))
          .catch((e: unknown) => {
            this.rl.warn('grpc-handler', 'request handler failed', { peer, error: String(e) });
            cb({ code: grpc.status.INTERNAL, details: 'internal error' });
          });
      },
    });
    const bindHost = host.includes(':') ? `[${host}]` : host;
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${bindHost}:${port}`, this.creds.server, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.server = server;
  }

  private client(addr: string): ExchangeClient {
    let c = this.clients.get(addr);
    if (!c) {
      const { host, port } = parseAddr(addr);
      const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      c = new (service().ctor)(target, this.creds.client, {
        'grpc.max_receive_message_length': this.maxMsg + 1024,
        'grpc.max_send_message_length': this.maxMsg + 1024,
      }) as unknown as ExchangeClient;
      if (this.clients.size > 1024) { for (const old of this.clients.values()) old.close(); this.clients.clear(); }
      this.clients.set(addr, c);
    }
    return c;
  }

  request(addr: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    this.stats.requests++;
    return new Promise((resolve, reject) => {
      let c: ExchangeClient;
      try { c = this.client(addr); } catch (e) { reject(e); return; }
      c.Exchange(this.seal(REQ, data), new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) { reject(new Error(`${addr}: ${err.details || err.message}`)); return; }
        const payload = this.open(RSP, res);
        if (typeof payload === 'string') {
          this.rl.warn('grpc-rsp-auth', 'refused peer response', { addr, reason: payload });
          reject(new Error(`${addr}: response refused: ${payload}`));
          return;
        }
        resolve(new Uint8Array(payload));
      });
    });
  }

  /**
   * Close clients and the server. The graceful shutdown waits for open sessions, which never end when
   * a peer is unreachable (link down: its HTTP/2 session cannot be closed cleanly), so it gets
   * `deadlineMs` (default 800 ms) and the server is then force-closed (issue 9: bounded shutdown).
   */
  async close(deadlineMs = 800): Promise<void> {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    const s = this.server;
    this.server = null;
    if (!s) return;
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = () => { if (!done) { done = true; clearTimeout(timer); resolve(); } };
      const timer = setTimeout(() => {
        this.rl.warn('grpc-force-close', 'graceful shutdown of the peer server timed out; forcing it', { deadlineMs });
        s.forceShutdown();
        finish();
      }, deadlineMs);
      s.tryShutdown(() => finish());
    });
  }
}
