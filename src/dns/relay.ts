// The DNS responder's unix socket for isolated apps (`ax run --isolate`): their network
// namespace has only loopback, so native/dnsrelay.c (ax-dnsrelay, started inside by the
// app's init) passes their queries here, over the hook socket's path + ".dns".
//
// Wire: a unix stream; every message carries the 2-byte length prefix of DNS over TCP
// (RFC 1035 4.2.2). The first message is "AXDNS1 udp|tcp <app id>:<token>": the
// connection is admitted like a hook session (the token names the app, the kernel's
// SO_PEERCRED pid must belong to it: HookDispatcher.admit), and every later message is a
// query answered by DnsResponder.answer as coming from that app (need-to-know policy),
// over UDP or TCP as the relay's client asked (UDP size limits and truncation apply).
// A connection that is refused, sends a malformed frame, keeps too many queries in flight
// or says nothing in time is closed; the reason is logged rate-limited.
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../common/log';
import { ThrottledLog } from '../common/ratelimit';
import * as libc from '../hookserver/libc';
import type { DnsResponder } from './server';

/** The first message's prefix (protocol version 1). */
export const RELAY_HELLO = 'AXDNS1';

/** Whether a relay connection may speak for an app: its id, or why not. */
export type RelayAdmission = { ok: true; appId: string } | { ok: false; why: string };

export interface RelayServerOptions {
  /** the unix socket path (the hook socket's + ".dns") */
  path: string;
  responder: DnsResponder;
  /** Admits peer `pid`/`uid` (SO_PEERCRED) for "<app id>:<token>" (HookDispatcher.admit). */
  admit: (pid: number, uid: number, appToken: string) => RelayAdmission;
  log: Logger;
  /** Open connections at most (default 1024: two per isolated app). */
  maxConns?: number;
  /** Queries in flight per connection (default 256: the relay's own bound). */
  maxInflight?: number;
  /** A connection must say hello within this (ms, default 2000). */
  helloTimeoutMs?: number;
}

/** Accepts relay connections and answers their queries through the responder. */
export class DnsRelayServer {
  private server: Server | null = null;
  private readonly conns = new Set<Socket>();
  private readonly log: ThrottledLog;
  /** connections admitted, refused; queries answered */
  readonly stats = { admitted: 0, refused: 0, queries: 0 };

  constructor(private readonly o: RelayServerOptions) {
    this.log = new ThrottledLog(o.log, 'dns-relay', { burst: 5, perSecond: 0.1, summaryMs: 10_000 });
  }

  /** Listens on the path (open to every local user: connections are authorized at hello). */
  async listen(): Promise<void> {
    mkdirSync(dirname(this.o.path), { recursive: true, mode: 0o755 });
    rmSync(this.o.path, { force: true });
    const server = createServer((c) => this.accept(c));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e: NodeJS.ErrnoException) => this.log.warn('accept', `dns relay socket: accept failed: ${e.code ?? e.message}`));
    chmodSync(this.o.path, 0o666);
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    this.log.close();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
    rmSync(this.o.path, { force: true });
  }

  private accept(c: Socket): void {
    c.on('error', () => c.destroy());
    if (this.conns.size >= (this.o.maxConns ?? 1024)) {
      this.log.warn('conns', `dns relay: ${this.conns.size} connections open; refusing one`);
      c.destroy();
      return;
    }
    const fd = (c as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
    let cred: { pid: number; uid: number };
    try {
      cred = libc.peerCred(fd);
    } catch (e) {
      this.log.warn('cred', `dns relay: cannot read peer credentials: ${(e as Error).message}`);
      c.destroy();
      return;
    }
    this.conns.add(c);
    c.on('close', () => this.conns.delete(c));
    let appId = '';
    let tcp = false;
    let inflight = 0;
    let buf: Buffer = Buffer.alloc(0);
    const drop = (kind: string, why: string) => {
      this.log.warn(kind, `dns relay connection (pid ${cred.pid}, uid ${cred.uid}${appId ? `, app ${appId}` : ''}): ${why}; closed`);
      c.destroy();
    };
    const timer = setTimeout(() => {
      if (!appId) drop('hello', `no hello within ${this.o.helloTimeoutMs ?? 2000} ms`);
    }, this.o.helloTimeoutMs ?? 2000);
    timer.unref();
    c.on('close', () => clearTimeout(timer));
    c.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2 && !c.destroyed) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (!appId) {
          const m = /^AXDNS1 (udp|tcp) (\S+)$/.exec(msg.toString('latin1'));
          if (!m) return drop('hello', 'not a relay hello');
          let v: RelayAdmission;
          try {
            v = this.o.admit(cred.pid, cred.uid, m[2]);
          } catch (e) {
            return drop('admit', `no verdict (${(e as Error).message})`); // /proc unreadable now: the relay connects again
          }
          if (!v.ok) {
            this.stats.refused++;
            return drop('refused', v.why);
          }
          appId = v.appId;
          tcp = m[1] === 'tcp';
          this.stats.admitted++;
          clearTimeout(timer);
          continue;
        }
        if (++inflight > (this.o.maxInflight ?? 256)) return drop('inflight', `over ${this.o.maxInflight ?? 256} queries in flight`);
        this.stats.queries++;
        this.o.responder.answer(msg, { ip: `app ${appId}`, port: 0, tcp, appId }).then(
          (r) => {
            inflight--;
            if (!r || c.destroyed) return; // dropped (garbage): the relay forgets the query
            const head = Buffer.alloc(2);
            head.writeUInt16BE(r.length);
            c.write(Buffer.concat([head, r]));
          },
          (e: Error) => {
            inflight--;
            this.o.log.error(`dns relay: ${e.message}`);
          },
        );
      }
      if (buf.length > 0 && buf.byteOffset > 0) buf = Buffer.from(buf);
    });
  }
}
