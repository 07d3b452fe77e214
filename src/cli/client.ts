// The CLI's side of the gRPC API, and starting a daemon when none runs.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { loadProto } from '../common/protos';
import { defaultApiSocket, defaultStateDir } from '../common/paths';
import type { ProtoGrpcType } from '../gen/ax';
import type { AppList__Output } from '../gen/ax/v1/AppList';
import type { GraphReply__Output } from '../gen/ax/v1/GraphReply';
import type { GraphRequest } from '../gen/ax/v1/GraphRequest';
import type { AxClient as AxStub } from '../gen/ax/v1/Ax';
import type { ListRequest } from '../gen/ax/v1/ListRequest';
import type { MemberList__Output } from '../gen/ax/v1/MemberList';
import type { ServiceList__Output } from '../gen/ax/v1/ServiceList';
import type { PolicyPutRequest } from '../gen/ax/v1/PolicyPutRequest';
import type { PolicyRemoveRequest } from '../gen/ax/v1/PolicyRemoveRequest';
import type { PolicyReply__Output } from '../gen/ax/v1/PolicyReply';
import type { ShutdownReply__Output } from '../gen/ax/v1/ShutdownReply';
import type { ShutdownRequest } from '../gen/ax/v1/ShutdownRequest';
import type { SocketList__Output } from '../gen/ax/v1/SocketList';
import type { StatusReply__Output } from '../gen/ax/v1/StatusReply';
import type { StatusRequest } from '../gen/ax/v1/StatusRequest';

/** The unary calls of the Ax service: [what each takes, what it answers]. */
interface Unary {
  Status: [StatusRequest, StatusReply__Output];
  ListApps: [ListRequest, AppList__Output];
  ListServices: [ListRequest, ServiceList__Output];
  ListSockets: [ListRequest, SocketList__Output];
  ListMembers: [ListRequest, MemberList__Output];
  Shutdown: [ShutdownRequest, ShutdownReply__Output];
  Graph: [GraphRequest, GraphReply__Output];
  PolicyPut: [PolicyPutRequest, PolicyReply__Output];
  PolicyRemove: [PolicyRemoveRequest, PolicyReply__Output];
  PolicyList: [ListRequest, PolicyReply__Output];
}
type UnaryMethod = keyof Unary;

/**
 * No daemon answers at the socket. The message is one line: what, where, what to do.
 * `noAnswer`: something listens there but did not answer in time (a daemon that is
 * stopped, overloaded or still starting), as opposed to nothing listening at all.
 */
export class DaemonUnreachable extends Error {
  /** `reason`: why, without advice (unreachableReason), where known; "" otherwise */
  constructor(
    message: string,
    readonly noAnswer = false,
    readonly reason = '',
  ) {
    super(message);
  }
}

/** The daemon answered with an error status (a refusal, with its reason). */
export class ApiError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `ax run --isolate` marks its command's environment with AX_ISOLATED=1 (inherited by
 * everything the app runs). Inside, the daemon's API socket and state are hidden on
 * purpose (README, "Isolation"): the CLI says so instead of "no daemon" and starts none.
 */
export function insideIsolatedApp(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.AX_ISOLATED === '1';
}

/** What the CLI says when it cannot reach the API from inside an isolated app. */
export const ISOLATED_MESSAGE = 'the ax API is not reachable from inside an isolated app (ax run --isolate hides it on purpose); run ax on the host';

/**
 * Why no daemon answers at `socket`, without advice: "none is running (no socket there)",
 * "it does not answer (stopped or overloaded?)"... From the gRPC error and the socket file.
 */
export function unreachableReason(socket: string, err: { code?: number; details?: string; message?: string }): string {
  const text = `${err.details ?? ''} ${err.message ?? ''}`;
  const isSock = isSocketFile(socket);
  if (!existsSync(socket) || /ENOENT/.test(text)) return 'none is running (no socket there)';
  if (/EACCES|EPERM/.test(text)) return 'permission denied on the socket';
  if (!isSock) return 'it is not a socket';
  if (/ECONNREFUSED/.test(text)) return 'none is running (the socket is left over, nothing listens)';
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return 'it does not answer (stopped or overloaded?)';
  return 'it cannot be reached';
}

/**
 * One line saying why no daemon answers at `socket`, from the gRPC error and the
 * socket file, and what to do (without raw gRPC text). Inside an isolated app
 * (insideIsolatedApp): ISOLATED_MESSAGE.
 */
export function unreachableMessage(socket: string, err: { code?: number; details?: string; message?: string }): string {
  if (insideIsolatedApp()) return ISOLATED_MESSAGE;
  const text = `${err.details ?? ''} ${err.message ?? ''}`;
  const start = `start one with: ax daemon --socket ${socket} (ax run starts one by itself unless --no-start)`;
  let isSock = false;
  try {
    isSock = statSync(socket).isSocket();
  } catch {
    /* missing */
  }
  const at = `cannot reach the ax daemon at ${socket}`;
  if (!existsSync(socket) || /ENOENT/.test(text)) return `${at}: none is running (no socket there); ${start}`;
  if (/EACCES|EPERM/.test(text)) return `${at}: permission denied on the socket; ask its owner, or run your own daemon with --socket`;
  if (!isSock) return `${at}: it is not a socket; ${start}`;
  if (/ECONNREFUSED/.test(text)) return `${at}: none is running (the socket is left over, nothing listens); ${start}`;
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return `${at}: it does not answer (stopped or overloaded?); see ax logs, or restart it`;
  return `${at}; ${start}`;
}

/** Whether `path` is a unix socket file (false if missing). */
function isSocketFile(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/** Whether some process holds the daemon's state database lock (a daemon is starting or running). */
function lockHeld(stateDir: string): boolean {
  try {
    const locks = readFileSync('/proc/locks', 'utf8');
    const ino = statSync(join(stateDir, 'LOCK')).ino;
    return locks.split('\n').some((l) => l.split(/\s+/).some((f) => f.endsWith(`:${ino}`)));
  } catch {
    return false;
  }
}

export class AxClient {
  /** pid of the daemon connectOrStart started for this client (it is our child, and must outlive us) */
  startedDaemon = 0;
  readonly raw: AxStub;

  constructor(readonly socket: string) {
    const pkg = loadProto('ax.proto') as unknown as ProtoGrpcType;
    this.raw = new pkg.ax.v1.Ax(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    });
  }

  /**
   * A unary call. Rejects with DaemonUnreachable (no daemon, or no answer within
   * `timeoutMs`) or ApiError (the daemon refused, e.g. PERMISSION_DENIED, with its reason).
   */
  call<M extends UnaryMethod>(method: M, req: Unary[M][0] = {}, timeoutMs = 5000): Promise<Unary[M][1]> {
    // Each method of the stub is overloaded; this is the overload called here, for method M.
    type Fn = (req: Unary[M][0], options: grpc.CallOptions, cb: grpc.requestCallback<Unary[M][1]>) => grpc.ClientUnaryCall;
    const raw = this.raw as unknown as Record<M, Fn>;
    return new Promise((resolve, reject) => {
      raw[method](req, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (!err) return resolve(res!);
        if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
          const listening = err.code === grpc.status.DEADLINE_EXCEEDED && isSocketFile(this.socket) && !/ENOENT|ECONNREFUSED/.test(`${err.details ?? ''} ${err.message ?? ''}`);
          reject(new DaemonUnreachable(unreachableMessage(this.socket, err), listening, unreachableReason(this.socket, err)));
        } else reject(new ApiError(err.code, err.details || err.message));
      });
    });
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * The state directory of a daemon `ax run` starts by itself for `socket`: AX_STATE_DIR when
 * set; the default state directory (defaultStateDir) for the default socket (in defaultRunDir,
 * whatever AX_SOCKET says); for any other
 * socket, its own directory under it, named after the socket's absolute path:
 * <default state dir>/sockets/<first 12 hex digits of sha256(path)>. Two daemons never share
 * a state directory (the second would fail on the first's LevelDB lock).
 */
export function autostartStateDir(socket: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.AX_STATE_DIR) return env.AX_STATE_DIR;
  if (isDefaultSocket(socket, env)) return defaultStateDir(env);
  return join(defaultStateDir(env), 'sockets', createHash('sha256').update(resolve(socket)).digest('hex').slice(0, 12));
}

/** Whether `socket` is the default API socket (in defaultRunDir, whatever AX_SOCKET says). */
export function isDefaultSocket(socket: string, env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    return resolve(socket) === resolve(defaultApiSocket({ ...env, AX_SOCKET: '' })); // AX_SOCKET names another socket
  } catch {
    return false; // no usable default socket directory: socket is not the default one
  }
}

/** Where a daemon that `ax run` starts by itself for `socket` logs (in autostartStateDir). */
export function autostartLogFile(socket: string = defaultApiSocket()): string {
  return join(autostartStateDir(socket), 'daemon.log');
}

/**
 * For a socket other than the default one: its directory must exist, or only its last
 * component may be missing (the daemon makes that one): an autostarted daemon (often root's)
 * makes no directory trees from a mistyped --socket. Throws an Error naming the topmost
 * missing directory.
 */
export function checkSocketDir(socket: string): void {
  const dir = dirname(resolve(socket));
  if (existsSync(dir) || existsSync(dirname(dir))) return;
  let missing = dir;
  while (!existsSync(dirname(missing))) missing = dirname(missing);
  throw new Error(
    `no ax daemon runs at ${socket}, and none is started there: the directory ${missing} does not exist ` +
      `(ax run makes at most the socket's own directory); create it, or choose a --socket in an existing directory`,
  );
}

/**
 * The reason a daemon that failed to start gave: the last error line of `file` from byte
 * `from` on ("ax daemon: ..." from its stderr, or a logged "error" line), at most 400
 * characters; "" when there is none or the file cannot be read.
 */
export function lastErrorLine(file: string, from: number): string {
  let text = '';
  try {
    const fd = openSync(file, 'r');
    try {
      const size = statSync(file).size;
      const start = Math.max(from, size - 65536);
      const buf = Buffer.alloc(Math.max(0, size - start));
      readSync(fd, buf, 0, buf.length, start);
      text = buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const errs = lines.filter((l) => /^ax( daemon)?: /.test(l) || /^\S+ \S+ (error|fatal) /.test(l) || /\bError\b/.test(l));
  const line = errs[errs.length - 1] ?? '';
  return line.length > 400 ? `${line.slice(0, 400)}...` : line;
}

/**
 * Returns a client for a running daemon, starting one in the background (with
 * the embedded defaults, or the given socket) when none answers. A daemon that
 * answers but refuses Status to this user (PERMISSION_DENIED) is running: it is used.
 */
export async function connectOrStart(socket: string, autostart: boolean, entry: string): Promise<AxClient> {
  // Inside an isolated app the API is hidden on purpose: a daemon started there could not work.
  if (insideIsolatedApp()) autostart = false;
  const client = new AxClient(socket);
  const up = async (ms: number): Promise<boolean> => {
    try {
      await client.call('Status', {}, ms);
      return true;
    } catch (e) {
      if (e instanceof ApiError) return true; // it answers; what this user may do is decided per call
      throw e;
    }
  };
  try {
    if (await up(1500)) return client;
  } catch (e) {
    if (!(e instanceof DaemonUnreachable) || (!autostart && !e.noAnswer)) {
      client.close();
      throw e;
    }
    if (e.noAnswer) {
      // A daemon listens but does not answer: one still starting, or busy on a loaded machine,
      // answers soon; a stopped or overloaded one would only make a second daemon fail on the
      // first one's lock. Wait a while (with or without autostart), then say what is wrong.
      const until = Date.now() + 8_500;
      let gone: unknown = null;
      while (Date.now() < until) {
        try {
          if (await up(1000)) return client;
        } catch (again) {
          if (!(again instanceof DaemonUnreachable) || !again.noAnswer) {
            gone = again; // it went away: start one (when allowed)
            break;
          }
        }
      }
      if (!gone || !autostart) {
        client.close();
        throw gone ?? e;
      }
    }
  }
  try {
    // the default socket's directories are ax's to make (as /run/ax); another one's are not
    if (!isDefaultSocket(socket)) checkSocketDir(socket);
  } catch (e) {
    client.close();
    throw e;
  }
  const stateDir = autostartStateDir(socket);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const logFile = join(stateDir, 'daemon.log');
  const out = openSync(logFile, 'a');
  let logStart = 0;
  try {
    logStart = statSync(logFile).size;
  } catch {
    /* just made */
  }
  const child = spawn(process.execPath, [entry, 'daemon', '--socket', socket, '--state-dir', stateDir, '--log-file', logFile, '--autostarted-by', String(process.pid)], {
    detached: true,
    stdio: ['ignore', out, out],
    env: process.env,
  });
  closeSync(out);
  client.startedDaemon = child.pid ?? 0;
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      // Ours exited: another `ax run` may have won the race to start one (ours then finds
      // the state database locked). Keep asking until the deadline while such a daemon is
      // still coming up; give up at once only when nothing else is starting.
      if (!lockHeld(stateDir)) break;
    }
    try {
      if (await up(500)) return client;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  client.close();
  const reason = lastErrorLine(logFile, logStart);
  throw new DaemonUnreachable(
    `no ax daemon answered at ${socket}, and the one started for you did not come up` +
      (exited !== null ? ` (it exited with status ${exited})` : '') +
      (reason ? `: ${reason.replace(/^ax daemon: /, '')}` : '') +
      `; see ${logFile}, or run one in the foreground: ax daemon --socket ${socket} --state-dir ${stateDir}`,
  );
}
