// Accepts hook sessions on a unix socket, frames fixed-size messages and hands
// them to a dispatcher. Replies are written with sendmsg() so a socket can ride
// along as SCM_RIGHTS; a peer that sends garbage is logged and dropped.
//
// The server never dies and never stalls on what a peer does: a dispatcher that
// throws (a libc call failing with EMFILE, a bug) answers the request with a
// legal errno for its call and keeps the session; only a malformed session is
// dropped. Sessions are bounded: a handshake deadline (a valid HELLO must be
// answered OK within `helloTimeoutMs`), caps on sessions per uid and in all,
// on unanswered (asynchronous) requests and on buffered bytes per session.
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { rateLimited, type Logger } from '../common/log';
import * as libc from './libc';
import { AX_MSG_SIZE, decode, encode, Op, opName, ProtocolError, Status, type Msg } from './proto';

/** One hook connection: one process (identified by the kernel, SO_PEERCRED). */
export interface Session {
  id: number;
  pid: number; // from SO_PEERCRED, not from the message
  uid: number;
  appId: string; // set by HELLO
  data: Record<string, unknown>; // for the dispatcher
}

/**
 * What the dispatcher answers; `fd` (if any) is sent and then closed by the server.
 * `end`: close the session after this reply (a refused HELLO).
 */
export type Reply = Partial<Omit<Msg, 'op' | 'seq'>> & { fd?: number; end?: boolean };

/** The hook protocol's semantics; the server only frames, bounds and answers. */
export interface Dispatcher {
  /** Returns the reply (or a promise of it), or null for one-way messages. Throwing ProtocolError drops the peer. */
  handle(s: Session, m: Msg): Reply | null | Promise<Reply>;
  closed(s: Session): void;
}

/** Limits of the hook socket; every field has a default (see `defaultLimits`). */
export interface HookServerLimits {
  /** A session must have a HELLO answered OK within this time, or it is dropped. */
  helloTimeoutMs: number;
  /** Open sessions of one uid (authenticated or not). Root (uid 0) is not exempt. */
  maxSessionsPerUid: number;
  /** Sessions of one uid that have not completed HELLO yet. */
  maxPendingPerUid: number;
  /** Open sessions in all. */
  maxSessions: number;
  /** Requests of one session answered asynchronously and not answered yet. */
  maxInFlight: number;
}

// A hook has one request per thread in flight plus one-way CLOSE hints; frames
// are consumed as soon as they arrive, so only a single oversized read can
// exceed this.
const MAX_BUFFERED = 256 * AX_MSG_SIZE;

/** fds the daemon keeps for itself (API, store, logs, cluster) when sizing session caps. */
const FD_RESERVE = 64;

/** Limits derived from the daemon's fd limit: no single uid can take more than half of it. */
export function defaultLimits(nofile = libc.nofileLimit()): HookServerLimits {
  const usable = Math.max(16, Math.min(nofile, 1 << 20) - FD_RESERVE);
  return {
    helloTimeoutMs: 2000,
    maxSessions: usable,
    maxSessionsPerUid: Math.max(8, Math.floor(usable / 2)),
    maxPendingPerUid: Math.max(4, Math.min(64, Math.floor(usable / 8))),
    maxInFlight: 16,
  };
}

// errnos for a request the daemon could not complete for a reason of its own
// (out of fds or memory): values the kernel (or POSIX) allows for the call the
// hook is answering, never a hint that the app itself did something wrong.
const ENOBUFS = 105;
const ECONNREFUSED = 111;
const EAGAIN = 11;

/** The errno a request gets when the daemon failed internally. */
export function internalErrno(op: number): number {
  switch (op) {
    case Op.BIND: // POSIX bind(): ENOBUFS "insufficient resources"
    case Op.CONNECT: // connect(): ENOBUFS
      return ENOBUFS;
    case Op.LISTEN: // POSIX listen(): ENOBUFS
      return ENOBUFS;
    case Op.HELLO: // the hook treats any refused HELLO as "daemon unreachable" (fail mode)
      return ECONNREFUSED;
    default: // RESOLVE, REVERSE, LOOKUP: the hook falls back to native on any non-OK answer
      return EAGAIN;
  }
}

/** The ops that never get a reply. */
function oneWay(op: number): boolean {
  return op === Op.CLOSE;
}

interface Conn {
  s: Session;
  sock: Socket;
  fd: number;
  authed: boolean;
  inFlight: number;
  helloTimer: NodeJS.Timeout | null;
}

/** The hook socket: sessions, framing, limits, replies (with SCM_RIGHTS). */
export class HookServer {
  private server: Server | null = null;
  private nextId = 1;
  private readonly sessions = new Map<number, Conn>();
  /** uid -> [open sessions, of which not authenticated yet] */
  private readonly perUid = new Map<number, { open: number; pending: number }>();
  private readonly out = Buffer.alloc(AX_MSG_SIZE);
  private readonly warn: (m: string) => void;
  private readonly warnLimit: (m: string) => void;
  private readonly warnInternal: (m: string) => void;
  readonly limits: HookServerLimits;
  /** Counters for tests and status: sessions refused by a limit, dropped for bad input, internal errors answered. */
  readonly stats = { refused: 0, dropped: 0, internalErrors: 0, helloTimeouts: 0 };

  constructor(
    private readonly path: string,
    private readonly dispatcher: Dispatcher,
    log: Logger,
    limits: Partial<HookServerLimits> = {},
  ) {
    // Separate budgets: a flood of garbage must not hide internal errors in the log.
    this.warn = rateLimited(log);
    this.warnLimit = rateLimited(log, 5);
    this.warnInternal = rateLimited(log, 5);
    this.limits = { ...defaultLimits(), ...limits };
  }

  /** Starts listening; the socket is open to every local user (sessions are authorized at HELLO). */
  async listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    rmSync(this.path, { force: true });
    const server = createServer((sock) => this.accept(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // accept() failing (EMFILE, ENFILE, ENOMEM) is reported here; libuv then
    // closes the pending connection, so the hook sees it fail at once and
    // applies its fail mode. Never fatal.
    server.on('error', (e: NodeJS.ErrnoException) => this.warnLimit(`hook socket: accept failed: ${e.code ?? e.message}`));
    // Any local user may run apps; sessions are authorized at HELLO (peer credentials).
    chmodSync(this.path, 0o666);
  }

  /** Open sessions (all, including those still in their handshake). */
  get size(): number {
    return this.sessions.size;
  }

  private uidCount(uid: number): { open: number; pending: number } {
    let c = this.perUid.get(uid);
    if (!c) this.perUid.set(uid, (c = { open: 0, pending: 0 }));
    return c;
  }

  private accept(sock: Socket): void {
    sock.on('error', () => sock.destroy());
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
    let cred = { pid: 0, uid: 0, gid: 0 };
    try {
      cred = libc.peerCred(fd);
    } catch (e) {
      this.warnLimit(`hook session: cannot read peer credentials: ${(e as Error).message}`);
      sock.destroy();
      return;
    }
    const count = this.uidCount(cred.uid);
    const L = this.limits;
    const over =
      this.sessions.size >= L.maxSessions
        ? `${this.sessions.size} sessions open (limit ${L.maxSessions})`
        : count.open >= L.maxSessionsPerUid
          ? `uid ${cred.uid} has ${count.open} sessions open (limit ${L.maxSessionsPerUid})`
          : count.pending >= L.maxPendingPerUid
            ? `uid ${cred.uid} has ${count.pending} sessions without HELLO (limit ${L.maxPendingPerUid})`
            : '';
    if (over) {
      this.stats.refused++;
      this.warnLimit(`hook session from pid ${cred.pid} refused: ${over}`);
      if (count.open === 0) this.perUid.delete(cred.uid);
      sock.destroy();
      return;
    }
    count.open++;
    count.pending++;
    const s: Session = { id: this.nextId++, pid: cred.pid, uid: cred.uid, appId: '', data: {} };
    const c: Conn = { s, sock, fd, authed: false, inFlight: 0, helloTimer: null };
    c.helloTimer = setTimeout(() => {
      c.helloTimer = null;
      // After the poll phase: a HELLO that arrived while the event loop was busy is read first.
      setImmediate(() => {
        if (c.authed || sock.destroyed) return;
        this.stats.helloTimeouts++;
        this.drop(c, `no accepted HELLO within ${L.helloTimeoutMs} ms`);
      });
    }, L.helloTimeoutMs);
    c.helloTimer.unref();
    this.sessions.set(s.id, c);
    let pending: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      if (sock.destroyed) return;
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (pending.length > MAX_BUFFERED) {
        this.drop(c, `sent ${pending.length} bytes without waiting for replies`);
        return;
      }
      while (pending.length >= AX_MSG_SIZE && !sock.destroyed) {
        const frame = pending.subarray(0, AX_MSG_SIZE);
        pending = pending.subarray(AX_MSG_SIZE);
        if (!this.onFrame(c, frame)) return;
      }
      // Do not pin a large chunk for a few leftover bytes.
      if (pending.length > 0 && pending.byteOffset > 0) pending = Buffer.from(pending);
    });
    sock.on('end', () => {
      if (pending.length > 0) this.warn(`hook session ${s.id} (pid ${s.pid}): truncated message (${pending.length} bytes) at close`);
      sock.destroy();
    });
    sock.on('close', () => {
      if (c.helloTimer) clearTimeout(c.helloTimer);
      c.helloTimer = null;
      if (!this.sessions.delete(s.id)) return;
      const n = this.uidCount(s.uid);
      n.open--;
      if (!c.authed) n.pending--;
      if (n.open <= 0) this.perUid.delete(s.uid);
      try {
        this.dispatcher.closed(s);
      } catch (e) {
        this.internal(`closing session ${s.id}`, e);
      }
    });
  }

  /** Handles one frame; false when the session was dropped. */
  private onFrame(c: Conn, frame: Buffer): boolean {
    let m: Msg;
    try {
      m = decode(frame);
    } catch (e) {
      this.drop(c, e instanceof Error ? e.message : String(e));
      return false;
    }
    let reply: Reply | null | Promise<Reply>;
    try {
      reply = this.dispatcher.handle(c.s, m);
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.drop(c, e.message);
        return false;
      }
      // The daemon's own failure (out of fds, a bug): answer, keep the session.
      this.internal(`${opName(m.op)} for session ${c.s.id} (pid ${c.s.pid})`, e);
      if (oneWay(m.op)) return true;
      reply = { status: Status.ERR, err: internalErrno(m.op) };
    }
    if (!reply) return true;
    if (reply instanceof Promise) {
      // Answered later (a hook waits; it sends only one-way notes meanwhile).
      if (c.inFlight >= this.limits.maxInFlight) {
        this.drop(c, `more than ${this.limits.maxInFlight} requests unanswered`);
        reply.then((r) => closeFd(r), () => undefined);
        return false;
      }
      c.inFlight++;
      reply.then(
        (r) => {
          c.inFlight--;
          if (c.sock.destroyed) closeFd(r);
          else this.sendReply(c, m, r);
        },
        (e: unknown) => {
          c.inFlight--;
          this.internal(`${opName(m.op)} for session ${c.s.id} (pid ${c.s.pid})`, e);
          if (!c.sock.destroyed) this.sendReply(c, m, { status: Status.ERR, err: internalErrno(m.op) });
        },
      );
      return true;
    }
    return this.sendReply(c, m, reply);
  }

  private sendReply(c: Conn, m: Msg, reply: Reply): boolean {
    const sendFd = reply.fd ?? -1;
    try {
      try {
        encode({ ...reply, op: m.op, seq: m.seq, pid: reply.pid ?? 0 }, this.out);
      } catch (e) {
        // An answer that does not fit the wire format is the daemon's bug: say so, answer an errno.
        this.internal(`encoding the ${opName(m.op)} reply`, e);
        encode({ op: m.op, seq: m.seq, status: Status.ERR, err: internalErrno(m.op) }, this.out);
        return this.send(c, m, -1);
      }
      if (m.op === Op.HELLO && reply.status === Status.OK && !c.authed) this.authenticated(c);
      const ok = this.send(c, m, sendFd);
      // The reply is already in the kernel's buffer: the peer reads it, then EOF.
      if (ok && reply.end) c.sock.destroy();
      return ok;
    } finally {
      if (sendFd >= 0) libc.close(sendFd);
    }
  }

  private send(c: Conn, m: Msg, fd: number): boolean {
    const err = libc.sendWithFd(c.fd, this.out, fd);
    if (err !== 0) {
      this.drop(c, `reply to ${opName(m.op)} failed: ${libc.strerror(err)}`);
      return false;
    }
    return true;
  }

  private authenticated(c: Conn): void {
    c.authed = true;
    this.uidCount(c.s.uid).pending--;
    if (c.helloTimer) clearTimeout(c.helloTimer);
    c.helloTimer = null;
  }

  private internal(what: string, e: unknown): void {
    this.stats.internalErrors++;
    const msg = e instanceof Error ? e.message : String(e);
    this.warnInternal(`hook server: ${what} failed: ${msg}`);
  }

  private drop(c: Conn, why: string): void {
    this.stats.dropped++;
    this.warn(`hook session ${c.s.id} (pid ${c.s.pid}) dropped: ${why}`);
    c.sock.destroy();
  }

  /** Closes every session and the socket. */
  async close(): Promise<void> {
    for (const { sock } of this.sessions.values()) sock.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.path, { force: true });
  }
}

function closeFd(r: Reply | undefined): void {
  if (r && r.fd !== undefined && r.fd >= 0) libc.close(r.fd);
}
