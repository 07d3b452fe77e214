// In-process unit tests of the hook dispatcher (src/daemon/hooks.ts) with a real
// ServiceTable and PortPool, and of the hook server's framing and limits
// (src/hookserver/server.ts) over a real unix socket. No daemon subprocess: the
// sessions below are this test process (pid, uid), or pid 1 for an outsider.
import { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SockDiag } from '../src/hookserver/sockdiag';
import { AF_INET, AF_INET6, parseCidr } from '../src/common/addr';
import type { Logger } from '../src/common/log';
import { HookDispatcher, sysErrno } from '../src/daemon/hooks';
import { procInfo, startWallMs } from '../src/daemon/trust';
import * as libc from '../src/hookserver/libc';
import { AX_MSG_SIZE, BindFlag, ConnectFlag, decode, encode, Op, ProtocolError, Status, type Msg } from '../src/hookserver/proto';
import { HookServer, internalErrno, type Dispatcher, type Reply, type Session } from '../src/hookserver/server';
import { PortPool } from '../src/table/ports';
import { ServiceTable, type App } from '../src/table/table';

const EACCES = 13;
const EBADF = 9;
const EADDRINUSE = 98;
const EADDRNOTAVAIL = 99;
const ENETUNREACH = 101;
const ENOBUFS = 105;
const EINPROGRESS = 115;
const EMFILE = 24;

/** The error `fn` throws (or null). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return null;
}

/** A logger that keeps what it was told. */
function memLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (l: string) => (m: string) => void lines.push(`${l} ${m}`);
  return { lines, debug: add('debug'), info: add('info'), warn: add('warn'), error: add('error') };
}

function msg(m: Partial<Msg> & { op: number }): Msg {
  return decode(encode(m));
}

function app(id: string, vip: string, labels: Record<string, string> = { zone: 'default' }): App {
  return { id, name: id, vip, labels, expose: [], token: `tok-${id}`, runPid: process.pid, node: 'n1', createdAt: Date.now() };
}

/** What setup() needs of a tap test. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

function setup(t: Teardown, ports = '47000-47009') {
  const log = memLog();
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const [first, last] = ports.split('-').map(Number);
  const pool = new PortPool({ first, last });
  const diag = new SockDiag();
  const hooks = new HookDispatcher({ table, pool, hostIp: '127.0.0.1', log, handoff: 'fd', diag });
  t.teardown(() => {
    hooks.close();
    diag.close();
  });
  let nextSession = 1;
  const session = (pid = process.pid): Session => ({ id: nextSession++, pid, uid: process.getuid?.() ?? 0, appId: '', data: {} });
  const fds: number[] = [];
  t.teardown(() => fds.forEach((fd) => libc.close(fd)));
  /** handle() for a synchronous answer; fds in replies are closed at teardown. */
  const ask = (s: Session, m: Partial<Msg> & { op: number }): Reply => {
    const r = hooks.handle(s, msg(m));
    if (r === null || r instanceof Promise) throw new Error(`no synchronous reply to op ${m.op}`);
    if (r.fd !== undefined && r.fd >= 0) fds.push(r.fd);
    return r;
  };
  return { log, table, pool, hooks, session, ask, fds };
}


t.test('HELLO: token and process ancestry', async (t) => {
  const { table, session, ask, log } = setup(t);
  const web = app('web', '10.240.0.5');
  table.addApp(web);
  const s = session();
  t.ok(thrown(() => ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '0.0.0.0', port: 80 } })) instanceof ProtocolError, 'requests before HELLO drop the session');
  t.match(ask(session(), { op: Op.HELLO, name: 'web:wrong' }), { status: Status.ERR, err: EACCES, end: true }, 'wrong token');
  t.match(ask(session(), { op: Op.HELLO, name: 'nope:tok-web' }), { status: Status.ERR, err: EACCES, end: true }, 'unknown app');
  t.match(ask(session(), { op: Op.HELLO, name: 'web' }), { status: Status.ERR, err: EACCES }, 'no token');
  // pid 1 is not this process's descendant: the right token is not enough.
  t.match(ask(session(1), { op: Op.HELLO, name: 'web:tok-web' }), { status: Status.ERR, err: EACCES, end: true }, 'outsider with the token');
  t.ok(log.lines.some((l) => /refused for app web: process 1 .*does not descend/.test(l)), 'the refusal is logged with the reason');
  // The test's parent is not a descendant of the test either.
  t.match(ask(session(process.ppid), { op: Op.HELLO, name: 'web:tok-web' }), { status: Status.ERR, err: EACCES }, 'the ax run parent is not the app');
  const ok = ask(s, { op: Op.HELLO, name: 'web:tok-web' });
  t.match(ok, { status: Status.OK, a: { family: AF_INET, ip: '10.240.0.5', port: 0 } }, 'the app process itself');
  t.equal(s.appId, 'web');
  const other = app('db', '10.240.0.6');
  table.addApp(other);
  t.ok(thrown(() => ask(s, { op: Op.HELLO, name: 'db:tok-db' })) instanceof ProtocolError, 'a session cannot switch apps');
  // An app whose ax run pid was recycled after the app was registered: refused.
  const stale = { ...app('old', '10.240.0.7'), createdAt: Date.now() - 3600_000 * 24 * 365 } as App;
  table.addApp(stale);
  t.match(ask(session(), { op: Op.HELLO, name: 'old:tok-old' }), { status: Status.ERR, err: EACCES }, 'runPid started after the app was created: pid reuse');
});

t.test('BIND, LISTEN, CONNECT, RESOLVE answer like the kernel', async (t) => {
  const { table, session, ask, hooks, fds } = setup(t);
  table.addApp(app('web', '10.240.0.5'));
  table.addApp(app('cli', '10.240.0.9'));
  table.addApp(app('other', '10.240.0.10', { zone: 'secure' }));
  const s = session();
  ask(s, { op: Op.HELLO, name: 'web:tok-web' });
  const b = ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '0.0.0.0', port: 80 } });
  t.match(b, { status: Status.OK, a: { family: AF_INET, ip: '0.0.0.0', port: 80 } });
  t.ok((b.fd ?? -1) >= 0, 'a real socket is handed over');
  const local = libc.getsockname(b.fd!);
  t.equal(local?.ip, '127.0.0.1');
  t.ok(local!.port >= 47000 && local!.port <= 47009, `host port ${local?.port} from the pool`);
  t.match(ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '0.0.0.0', port: 80 } }), { status: Status.ERR, err: EADDRINUSE }, 'same virtual port twice');
  const rp = ask(s, { op: Op.BIND, arg: BindFlag.REUSEPORT, a: { family: AF_INET, ip: '10.240.0.5', port: 81 } });
  t.equal(rp.status, Status.OK, 'own VIP binds');
  t.match(ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '10.240.0.9', port: 80 } }), { status: Status.ERR, err: EADDRNOTAVAIL }, "another app's VIP");
  t.match(ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '192.0.2.1', port: 80 } }), { status: Status.NATIVE }, 'a real address binds natively');
  t.ok(thrown(() => ask(s, { op: Op.BIND })) instanceof ProtocolError, 'BIND without an address');
  t.match(ask(s, { op: Op.LISTEN, sock: 99999 }), { status: Status.ERR, err: EBADF }, 'LISTEN on an unknown socket');
  t.match(ask(s, { op: Op.LISTEN, sock: b.sock }), { status: Status.OK });
  t.equal(table.services().length, 1, 'the service is registered');

  const c = session();
  ask(c, { op: Op.HELLO, name: 'cli:tok-cli' });
  const conn = ask(c, { op: Op.CONNECT, a: { family: AF_INET, ip: '10.240.0.5', port: 80 }, b: { family: AF_INET, ip: '0.0.0.0', port: 0 } });
  t.equal(conn.status, Status.OK, 'fd handoff');
  t.ok(conn.err === 0 || conn.err === EINPROGRESS, `connect started (err ${conn.err})`);
  t.match(conn.b, { ip: '127.0.0.1', port: local!.port }, 'to the backend');
  t.match(ask(c, { op: Op.CONNECT, a: { family: AF_INET, ip: '10.240.0.77', port: 80 } }), { status: Status.ERR, err: ENETUNREACH }, 'unregistered virtual address');
  t.match(ask(c, { op: Op.CONNECT, a: { family: AF_INET, ip: '192.0.2.1', port: 80 } }), { status: Status.NATIVE }, 'a real address connects natively');
  t.match(ask(c, { op: Op.CONNECT, arg: ConnectFlag.WAIT, a: { family: AF_INET, ip: '10.240.0.9', port: 80 } }), { status: Status.PENDING }, 'registered, not listening: wait');
  t.match(ask(c, { op: Op.RESOLVE, name: 'web.ax' }), { status: Status.OK, a: { ip: '10.240.0.5' } });
  t.match(ask(c, { op: Op.RESOLVE, name: 'example.org' }), { status: Status.NATIVE });
  t.match(ask(c, { op: Op.REVERSE, a: { family: AF_INET, ip: '10.240.0.5', port: 0 } }), { status: Status.OK, name: 'web' });

  const o = session();
  ask(o, { op: Op.HELLO, name: 'other:tok-other' });
  t.match(ask(o, { op: Op.CONNECT, a: { family: AF_INET, ip: '10.240.0.5', port: 80 } }), { status: Status.ERR, err: 111 }, 'no shared label: ECONNREFUSED (the --policy-deny-errno default)');
  // CLOSE is a hint: the kernel says whether the socket is gone.
  t.equal(hooks.handle(c, msg({ op: Op.CLOSE, sock: b.sock! })), null, 'CLOSE is one-way');
  t.equal(hooks.handle(s, msg({ op: Op.CLOSE, sock: b.sock! })), null);
  await new Promise((r) => setImmediate(r));
  t.equal(table.services().length, 1, 'a CLOSE note while the kernel still has the socket changes nothing');
  libc.close(b.fd!);
  fds.splice(fds.indexOf(b.fd!), 1);
  t.equal(hooks.handle(s, msg({ op: Op.CLOSE, sock: b.sock! })), null);
  await new Promise((r) => setImmediate(r));
  t.equal(table.services().length, 0, 'once its last copy is closed, the service is gone');
});

t.test('pool exhaustion and daemon-side errors map to legal errnos', async (t) => {
  const { table, session, ask } = setup(t, '47010-47010');
  table.addApp(app('web', '10.240.0.5'));
  const s = session();
  ask(s, { op: Op.HELLO, name: 'web:tok-web' });
  t.equal(ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '0.0.0.0', port: 80 } }).status, Status.OK);
  t.match(ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '0.0.0.0', port: 81 } }), { status: Status.ERR, err: EADDRNOTAVAIL }, 'pool exhausted');
  const v6 = ask(s, { op: Op.BIND, arg: BindFlag.V6ONLY, a: { family: AF_INET6, ip: '::', port: 80 } });
  t.equal(v6.err, EADDRNOTAVAIL, 'v6only bind of the same port: pool (one port) exhausted, not a conflict');
  // The daemon running out of fds is not the app's EMFILE: ENOBUFS (POSIX "insufficient resources").
  t.equal(sysErrno(new libc.SysError('socket', EMFILE), 'bind'), ENOBUFS);
  t.equal(sysErrno(new libc.SysError('socket', EMFILE), 'connect'), ENOBUFS);
  t.equal(sysErrno(new libc.SysError('bind', EADDRINUSE), 'bind'), EADDRINUSE, 'kernel bind errnos pass through');
  t.equal(sysErrno(new libc.SysError('bind', EACCES), 'bind'), EACCES);
  t.equal(internalErrno(Op.BIND), ENOBUFS);
  t.equal(internalErrno(Op.CONNECT), ENOBUFS);
  t.equal(internalErrno(Op.LISTEN), ENOBUFS);
});

// ---- the server: framing, internal errors, limits -----------------------------

/** Connects to the hook socket; `next()` resolves with each reply (or null at EOF). */
function client(path: string): Promise<{ sock: Socket; next: () => Promise<Msg | null>; send: (m: Partial<Msg> & { op: number }) => void }> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = Buffer.alloc(0);
    const waiting: Array<(m: Msg | null) => void> = [];
    const ready: Array<Msg | null> = [];
    const push = (m: Msg | null) => {
      const w = waiting.shift();
      if (w) w(m);
      else ready.push(m);
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= AX_MSG_SIZE) {
        push(decode(buf.subarray(0, AX_MSG_SIZE)));
        buf = buf.subarray(AX_MSG_SIZE);
      }
    });
    sock.on('close', () => push(null));
    sock.on('error', () => undefined);
    sock.once('connect', () =>
      resolve({
        sock,
        next: () => (ready.length > 0 ? Promise.resolve(ready.shift()!) : new Promise((r) => waiting.push(r))),
        send: (m) => sock.write(encode(m)),
      }),
    );
    sock.once('error', reject);
  });
}

t.test('server: internal errors answer an errno and keep the session; bad frames drop it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = memLog();
  let closed = 0;
  const d: Dispatcher = {
    handle(_s, m) {
      if (m.op === Op.HELLO) return { status: Status.OK };
      if (m.op === Op.BIND) throw new libc.SysError('socket', EMFILE);
      if (m.op === Op.CONNECT) return Promise.reject(new Error('boom'));
      if (m.op === Op.LISTEN) throw new ProtocolError('bad listen');
      if (m.op === Op.RESOLVE) return { status: Status.OK, name: 'x'.repeat(300) }; // cannot be encoded
      return null;
    },
    closed: () => void closed++,
  };
  const srv = new HookServer(join(dir, 'hook.sock'), d, log);
  await srv.listen();
  t.teardown(() => srv.close());
  const c = await client(join(dir, 'hook.sock'));
  c.send({ op: Op.HELLO, seq: 1 });
  t.match(await c.next(), { op: Op.HELLO, seq: 1, status: Status.OK });
  c.send({ op: Op.BIND, seq: 2 });
  t.match(await c.next(), { op: Op.BIND, seq: 2, status: Status.ERR, err: ENOBUFS }, 'EMFILE inside the daemon: ENOBUFS, session kept');
  c.send({ op: Op.CONNECT, seq: 3 });
  t.match(await c.next(), { op: Op.CONNECT, seq: 3, status: Status.ERR, err: ENOBUFS }, 'a rejected async reply is answered too');
  c.send({ op: Op.RESOLVE, seq: 4 });
  t.match(await c.next(), { op: Op.RESOLVE, seq: 4, status: Status.ERR }, 'an unencodable answer becomes an error answer');
  c.send({ op: Op.LISTEN, seq: 5 });
  t.equal(await c.next(), null, 'a ProtocolError drops the session');
  t.equal(srv.stats.internalErrors, 3);
  t.ok(log.lines.some((l) => /BIND for session \d+ .* failed: socket: Too many open files/.test(l)), 'internal error logged');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(closed, 1, 'the dispatcher heard of the closed session');
  t.equal(srv.size, 0);
  const g = await client(join(dir, 'hook.sock'));
  g.sock.write(Buffer.alloc(AX_MSG_SIZE, 0x41));
  t.equal(await g.next(), null, 'garbage drops the session');
});

t.test('server: HELLO deadline, per-uid limits, refused HELLO ends the session', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = memLog();
  const d: Dispatcher = {
    handle(_s, m) {
      if (m.op === Op.HELLO) return m.name === 'good' ? { status: Status.OK } : { status: Status.ERR, err: EACCES, end: true };
      return { status: Status.OK };
    },
    closed: () => undefined,
  };
  const path = join(dir, 'hook.sock');
  const srv = new HookServer(path, d, log, { helloTimeoutMs: 300, maxSessionsPerUid: 4, maxPendingPerUid: 2, maxSessions: 100 });
  await srv.listen();
  t.teardown(() => srv.close());

  const refused = await client(path);
  refused.send({ op: Op.HELLO, name: 'bad' });
  t.match(await refused.next(), { status: Status.ERR, err: EACCES });
  t.equal(await refused.next(), null, 'closed after the refusal');

  const silent = await client(path);
  const t0 = Date.now();
  t.equal(await silent.next(), null, 'a session that never says HELLO is dropped');
  t.ok(Date.now() - t0 >= 250, 'not before the deadline');
  t.equal(srv.stats.helloTimeouts, 1);

  const a = await client(path);
  a.send({ op: Op.HELLO, name: 'good' });
  t.match(await a.next(), { status: Status.OK });
  const b = await client(path);
  b.send({ op: Op.HELLO, name: 'good' });
  t.match(await b.next(), { status: Status.OK });
  const p1 = await client(path);
  const p2 = await client(path);
  await new Promise((r) => setTimeout(r, 50));
  const p3 = await client(path);
  t.equal(await p3.next(), null, 'a third session without HELLO is refused (maxPendingPerUid 2)');
  p1.send({ op: Op.HELLO, name: 'good' });
  t.match(await p1.next(), { status: Status.OK });
  p2.send({ op: Op.HELLO, name: 'good' });
  t.match(await p2.next(), { status: Status.OK });
  const over = await client(path);
  t.equal(await over.next(), null, 'a fifth session of the uid is refused (maxSessionsPerUid 4)');
  t.ok(srv.stats.refused >= 2);
  a.sock.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const again = await client(path);
  again.send({ op: Op.HELLO, name: 'good', seq: 9 });
  t.match(await again.next(), { status: Status.OK, seq: 9 }, 'a freed slot is usable again');
  t.ok(log.lines.some((l) => /refused: uid \d+ has 4 sessions open \(limit 4\)/.test(l)), 'the limit is logged');
  for (const c of [b, p1, p2, again]) c.sock.destroy();
});

t.test('trust: /proc/PID/stat parsing survives odd process names; gone processes are null', async (t) => {
  const title = process.title;
  t.teardown(() => void (process.title = title));
  process.title = 'a) b (c'; // comm with spaces and parentheses
  const me = procInfo(process.pid);
  t.equal(me?.ppid, process.ppid, 'ppid read after the last )');
  const startedMsAgo = Date.now() - startWallMs(me!.start);
  t.ok(startedMsAgo >= -2000 && startedMsAgo < process.uptime() * 1000 + 5000, `start time matches this process (${startedMsAgo} ms ago, up ${process.uptime()} s)`);
  t.equal(procInfo(0), null);
  t.equal(procInfo(-1), null);
  t.equal(procInfo(2 ** 22 + 1), null, 'no such pid');
});

t.test('server: a session with too many unanswered requests is dropped; late answers close their fds', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resolvers: Array<(r: Reply) => void> = [];
  const d: Dispatcher = {
    handle(_s, m) {
      if (m.op === Op.HELLO) return { status: Status.OK };
      return new Promise<Reply>((r) => resolvers.push(r)); // answered later, or never
    },
    closed: () => undefined,
  };
  const path = join(dir, 'hook.sock');
  const srv = new HookServer(path, d, memLog(), { maxInFlight: 4 });
  await srv.listen();
  t.teardown(() => srv.close());
  const c = await client(path);
  c.send({ op: Op.HELLO });
  t.match(await c.next(), { status: Status.OK });
  for (let i = 0; i < 5; i++) c.send({ op: Op.RESOLVE, seq: 10 + i, name: 'slow' });
  t.equal(await c.next(), null, 'the fifth unanswered request drops the session');
  // Answers arriving after the drop must not leak the sockets they carry.
  const fd = libc.tcpSocket(AF_INET);
  const link = () => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return 'closed';
    }
  };
  const before = link();
  t.match(before, /^socket:\[\d+\]$/);
  resolvers[0]({ status: Status.OK, fd });
  await new Promise((r) => setTimeout(r, 20));
  t.not(link(), before, 'the fd of a late answer was closed (gone, or the number reused by something else)');
});

t.test('a session whose app was removed gets errnos its calls may return', async (t) => {
  const { table, session, ask } = setup(t);
  table.addApp(app('web', '10.240.0.5'));
  const s = session();
  t.match(ask(s, { op: Op.HELLO, name: 'web:tok-web' }), { status: Status.OK });
  table.removeApp('web');
  t.match(ask(s, { op: Op.BIND, a: { family: AF_INET, ip: '0.0.0.0', port: 80 } }), { status: Status.ERR, err: EADDRNOTAVAIL }, 'bind');
  t.match(ask(s, { op: Op.LISTEN, sock: 1 }), { status: Status.ERR, err: EADDRINUSE }, 'listen');
  t.match(ask(s, { op: Op.CONNECT, a: { family: AF_INET, ip: '10.240.0.9', port: 80 } }), { status: Status.ERR, err: 111 }, 'connect: ECONNREFUSED');
  t.match(ask(s, { op: Op.RESOLVE, name: 'web' }), { status: Status.NATIVE }, 'names resolve natively');
});
