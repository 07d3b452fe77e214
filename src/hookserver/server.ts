// Accepts hook sessions on a unix socket, frames fixed-size messages and hands
// them to a dispatcher. Replies are written with sendmsg() so a socket can ride
// along as SCM_RIGHTS; a peer that sends garbage is logged and dropped.
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { rateLimited, type Logger } from '../common/log';
import * as libc from './libc';
import { AX_MSG_SIZE, decode, encode, opName, ProtocolError, type Msg } from './proto';

export interface Session {
  id: number;
  pid: number; // from SO_PEERCRED, not from the message
  uid: number;
  appId: string; // set by HELLO
  data: Record<string, unknown>; // for the dispatcher
}

/** What the dispatcher answers; `fd` (if any) is sent and then closed by the server. */
export type Reply = Partial<Omit<Msg, 'op' | 'seq'>> & { fd?: number };

export interface Dispatcher {
  /** Returns the reply (or a promise of it), or null for one-way messages. Throwing ProtocolError drops the peer. */
  handle(s: Session, m: Msg): Reply | null | Promise<Reply>;
  closed(s: Session): void;
}

// A hook has one request per thread in flight plus one-way notes (CLOSE,
// CONNECTED after every direct connect); frames are consumed as soon as they
// arrive, so only a single oversized read can exceed this.
const MAX_BUFFERED = 256 * AX_MSG_SIZE;

export class HookServer {
  private server: Server | null = null;
  private nextId = 1;
  private readonly sessions = new Map<number, { s: Session; sock: Socket }>();
  private readonly out = Buffer.alloc(AX_MSG_SIZE);
  private readonly warn: (m: string) => void;

  constructor(
    private readonly path: string,
    private readonly dispatcher: Dispatcher,
    log: Logger,
  ) {
    this.warn = rateLimited(log);
  }

  async listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    rmSync(this.path, { force: true });
    this.server = createServer((sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.path, () => resolve());
    });
    // Any local user may run apps; sessions authenticate with the app token.
    chmodSync(this.path, 0o666);
  }

  private accept(sock: Socket): void {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
    let cred = { pid: 0, uid: 0, gid: 0 };
    try {
      cred = libc.peerCred(fd);
    } catch (e) {
      this.warn(`hook session: cannot read peer credentials: ${(e as Error).message}`);
      sock.destroy();
      return;
    }
    const s: Session = { id: this.nextId++, pid: cred.pid, uid: cred.uid, appId: '', data: {} };
    this.sessions.set(s.id, { s, sock });
    let pending: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (pending.length > MAX_BUFFERED) {
        this.drop(s, sock, `sent ${pending.length} bytes without waiting for replies`);
        return;
      }
      while (pending.length >= AX_MSG_SIZE) {
        const frame = pending.subarray(0, AX_MSG_SIZE);
        pending = pending.subarray(AX_MSG_SIZE);
        if (!this.onFrame(s, sock, fd, frame)) return;
      }
    });
    sock.on('end', () => {
      if (pending.length > 0) this.warn(`hook session ${s.id} (pid ${s.pid}): truncated message (${pending.length} bytes) at close`);
      sock.destroy();
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      if (this.sessions.delete(s.id)) this.dispatcher.closed(s);
    });
  }

  private onFrame(s: Session, sock: Socket, fd: number, frame: Buffer): boolean {
    let m: Msg;
    let reply: Reply | null | Promise<Reply>;
    try {
      m = decode(frame);
      reply = this.dispatcher.handle(s, m);
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.drop(s, sock, e.message);
        return false;
      }
      throw e;
    }
    if (!reply) return true;
    if (reply instanceof Promise) {
      // Answered later (the hook waits; it sends no other request meanwhile).
      reply.then((r) => {
        if (!sock.destroyed) this.sendReply(s, sock, fd, m, r);
      });
      return true;
    }
    return this.sendReply(s, sock, fd, m, reply);
  }

  private sendReply(s: Session, sock: Socket, fd: number, m: Msg, reply: Reply): boolean {
    const r = reply as Reply & { op: number; seq: number; pid: number };
    r.op = m.op;
    r.seq = m.seq;
    r.pid = reply.pid ?? 0;
    encode(r, this.out);
    const sendFd = reply.fd ?? -1;
    const err = libc.sendWithFd(fd, this.out, sendFd);
    if (sendFd >= 0) libc.close(sendFd);
    if (err !== 0) {
      this.drop(s, sock, `reply to ${opName(m.op)} failed: ${libc.strerror(err)}`);
      return false;
    }
    return true;
  }

  private drop(s: Session, sock: Socket, why: string): void {
    this.warn(`hook session ${s.id} (pid ${s.pid}) dropped: ${why}`);
    sock.destroy();
  }

  async close(): Promise<void> {
    for (const { sock } of this.sessions.values()) sock.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.path, { force: true });
  }
}
