// `ax run`: registers an app with the daemon and runs a command under the hook.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkVirtualIp } from '../common/addr';
import { defaultApiSocket } from '../common/paths';
import type { RunEvent__Output } from '../gen/ax/v1/RunEvent';
import type { RunRequest } from '../gen/ax/v1/RunRequest';
import { reservedLabel } from '../policy/claims';
import { LabelError, parseLabels } from '../policy/labels';
import { parsePort } from '../table/ports';
import { list, parseDuration, parseFlags, str, bool, UsageError, type FlagSpec } from './args';
import { connectOrStart, DaemonUnreachable, unreachableMessage, unreachableReason, type AxClient } from './client';
import { classifyCommand } from './elf';
import { becomeSubreaper, childrenOfSelf, reap } from './proc';

export const RUN_USAGE = `usage: ax run [flags] -- CMD [ARGS...]

Runs CMD with the ax hook preloaded; its children and exec'd programs inherit it.
The exit status passes through, and so does every signal a shell would send (HUP, INT,
QUIT, TERM, USR1, USR2, WINCH, ALRM, CONT, TTIN, TTOU). What CMD leaves running in the
background (a daemonized server) keeps running after CMD exits, as without ax; CMD gets SIGKILL if ax run itself is killed. If the daemon refuses the app, ax run says why and exits 1.

flags:
  --name NAME             service name (resolves as NAME and NAME.ax); apps of one user sharing a name form a pool
  --ip VIP                virtual IPv4 address in the daemon's --vip-range (default: the name's, or one from the range)
  --labels k=v,...        labels for access policy (default zone=default; ax.* keys are reserved)
  --expose PORT:HOSTPORT  bind virtual PORT on this host port (also PORT:HOSTIP:HOSTPORT); repeatable
  --connect-wait DUR      how long a blocking connect waits for a registered service to listen (default 5s;
                          durations take a unit: 250ms, 5s, 1m)
  --fail-open             if the daemon goes away, let socket calls pass through natively (default: fail closed)
  --socket PATH           daemon API socket (default $XDG_RUNTIME_DIR/ax/ax.sock); a daemon is started if none runs
  --no-start              do not start a daemon when none runs
  --isolate               run CMD in new user, network, mount and pid namespaces whose only interface is
                          loopback: it reaches beyond it only through sockets the daemon makes and hands in
                          (no root needed where unprivileged user namespaces are allowed; see ax doctor)
`;

const SPECS: FlagSpec[] = [
  { name: 'name', kind: 'string' },
  { name: 'ip', kind: 'string' },
  { name: 'labels', kind: 'string' },
  { name: 'expose', kind: 'list' },
  { name: 'connect-wait', kind: 'string' },
  { name: 'fail-open', kind: 'bool' },
  { name: 'socket', kind: 'string' },
  { name: 'no-start', kind: 'bool' },
  { name: 'isolate', kind: 'bool' },
  { name: 'help', short: 'h', kind: 'bool' },
];

export interface RunSpec {
  name: string;
  ip: string;
  labels: Record<string, string>;
  expose: Array<{ port: number; host_ip: string; host_port: number }>;
  connectWaitMs: number;
  failOpen: boolean;
  socket: string;
  autostart: boolean;
  /** --isolate: run in private user/network/mount/pid namespaces (see isolateArgs) */
  isolate: boolean;
  command: string[];
}

export function parseExpose(text: string): { port: number; host_ip: string; host_port: number } {
  const parts = text.split(':');
  if (parts.length === 2) {
    return { port: parsePort(parts[0], '--expose port'), host_ip: '', host_port: parsePort(parts[1], '--expose host port') };
  }
  if (parts.length === 3) {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(parts[1])) throw new Error(`--expose ${text}: "${parts[1]}" is not an IPv4 address`);
    return { port: parsePort(parts[0], '--expose port'), host_ip: parts[1], host_port: parsePort(parts[2], '--expose host port') };
  }
  throw new Error(`--expose "${text}": expected PORT:HOSTPORT or PORT:HOSTIP:HOSTPORT`);
}

/** Parses `ax run` flags; null for --help. Throws UsageError with the flag and the reason. */
export function parseRunArgs(argv: string[]): RunSpec | null {
  const p = parseFlags(argv, SPECS, { stopAtPositional: true });
  if (bool(p, 'help')) return null;
  if (p.rest.length === 0) throw new UsageError('missing command: ax run [flags] -- CMD [ARGS...]');
  const wrap = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  const name = (str(p, 'name') ?? '').toLowerCase();
  if (name && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
    throw new UsageError(`--name "${name}": use 1-63 letters, digits and '-' (a DNS label)`);
  }
  const ip = str(p, 'ip') ?? '';
  if (ip) {
    const bad = checkVirtualIp(ip);
    if (bad) throw new UsageError(`--ip: ${bad}`);
  }
  let labels: Record<string, string> = {};
  if (str(p, 'labels') !== undefined) {
    try {
      labels = parseLabels(str(p, 'labels')!);
    } catch (e) {
      if (e instanceof LabelError) throw new UsageError(`--labels: ${e.message}`);
      throw e;
    }
    const reserved = reservedLabel(labels);
    if (reserved) throw new UsageError(`--labels: ${reserved}`);
  }
  return {
    name,
    ip,
    labels,
    expose: list(p, 'expose').map((e) => wrap(() => parseExpose(e))),
    connectWaitMs: str(p, 'connect-wait') ? parseDuration(str(p, 'connect-wait')!, '--connect-wait') : 5000,
    failOpen: bool(p, 'fail-open'),
    socket: str(p, 'socket') ?? defaultApiSocket(),
    autostart: !bool(p, 'no-start'),
    isolate: bool(p, 'isolate'),
    command: p.rest,
  };
}

/** Where the hook library is: beside the bundle, or in native/build from source. */
export function hookLibrary(): string {
  const candidates = [
    process.env.AX_HOOK_LIB ?? '',
    join(__dirname, 'libaxhook.so'),
    join(__dirname, '..', 'native', 'build', 'libaxhook.so'),
    join(__dirname, '..', '..', 'native', 'build', 'libaxhook.so'),
  ].filter(Boolean);
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`the ax hook library was not found (looked at ${candidates.join(', ')}); build it with: npm run build`);
}

/** ax-dnsrelay (native/dnsrelay.c), beside the hook library (dist/ or native/build/); null if missing. */
export function dnsRelayProgram(hookLib: string): string | null {
  return besideHook(hookLib, 'ax-dnsrelay');
}

/** ax-confine (native/confine.c), beside the hook library; null if missing. */
export function confineProgram(hookLib: string): string | null {
  return besideHook(hookLib, 'ax-confine');
}

function besideHook(hookLib: string, name: string): string | null {
  const f = join(hookLib, '..', name);
  try {
    accessSync(f, fsConstants.X_OK);
    return f;
  } catch {
    return null;
  }
}

/** The daemon's answer to RunApp: the app's id, token, VIP and hook socket. */
type Registration = RunEvent__Output;

/** The daemon refused the app (the reason is the message); `ax run` exits 1 with it. */
export class RunRefused extends Error {}

/**
 * Opens the RunApp stream; resolves with the first event and the stream. Rejects
 * with RunRefused (the daemon's reason) or DaemonUnreachable. After the first
 * event, `onGone` is called at most once, when the stream ends for any reason.
 */
function register(
  client: AxClient,
  req: RunRequest,
  onGone: (stream: grpc.ClientReadableStream<Registration>, e: grpc.ServiceError | null) => void,
): Promise<{ reg: Registration; stream: grpc.ClientReadableStream<Registration> }> {
  return new Promise((resolve, reject) => {
    const stream = client.raw.RunApp(req);
    let first = true;
    let gone = false;
    const end = (e: grpc.ServiceError | null) => {
      if (first) {
        first = false;
        const err = e ?? ({ code: grpc.status.UNAVAILABLE, details: 'the daemon closed the stream' } as grpc.ServiceError);
        if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
          reject(new DaemonUnreachable(unreachableMessage(client.socket, err), false, unreachableReason(client.socket, err)));
        } else reject(new RunRefused(err.details || err.message));
        return;
      }
      if (gone) return;
      gone = true;
      onGone(stream, e);
    };
    stream.on('data', (ev: Registration) => {
      if (first) {
        first = false;
        resolve({ reg: ev, stream });
      }
    });
    // A failed stream emits 'error' and may emit 'end' too: both lead to one end().
    stream.on('error', (e: grpc.ServiceError) => end(e));
    stream.on('end', () => end(null));
  });
}

/**
 * The note `ax run` prints once when the daemon goes away under a running app: what it is
 * doing (re-attaching, starting no daemon of its own) and what the user may do. `e` is the
 * failed re-registration (a DaemonUnreachable gives its `reason`; others their message).
 */
export function reattachNote(socket: string, e: Error & { code?: number; details?: string }): string {
  const why = e instanceof DaemonUnreachable ? e.reason || 'it cannot be reached' : e.message;
  return (
    `ax run: the daemon at ${socket} is away (${why}); re-attaching the app when it is back (every 2 s at most). ` +
    `ax run does not start a daemon for an app that is already running: restart the daemon with ax daemon --socket ${socket}, or run a new ax run`
  );
}

/** Re-attach delays while the daemon is away: 100 ms doubling to at most 2 s. */
export function backoffMs(attempt: number): number {
  return Math.min(2000, 100 * 2 ** Math.min(attempt, 5));
}

/**
 * Keeps an app attached to the daemon: when the RunApp stream breaks (daemon
 * stopped or restarted) it re-attaches with the app's id and token, as ONE retry
 * chain (one timer, one stream at a time) with bounded backoff, until stopped.
 */
export class Attachment {
  private stream: grpc.ClientReadableStream<Registration> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private stopped = false;
  private warned = false;
  /** re-attach attempts made (for tests and logs) */
  attempts = 0;

  constructor(
    private readonly client: AxClient,
    private readonly req: RunRequest,
    private readonly warn: (msg: string) => void,
  ) {}

  /** Registers the app; rejects with RunRefused or DaemonUnreachable. */
  async start(): Promise<Registration> {
    const { reg, stream } = await register(this.client, this.req, (st, e) => this.lost(st, e));
    this.stream = stream;
    this.req.app_id = reg.app_id;
    this.req.token = reg.token;
    return reg;
  }

  private lost(from: grpc.ClientReadableStream<Registration>, e: grpc.ServiceError | null): void {
    if (this.stopped || from !== this.stream) return;
    this.stream = null;
    if (e && e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.CANCELLED && e.code !== grpc.status.DEADLINE_EXCEEDED && e.code !== grpc.status.INTERNAL) {
      this.warn(`ax run: the daemon ended the app's registration: ${e.details || e.message}`);
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retry();
    }, backoffMs(this.attempt++));
  }

  private retry(): void {
    if (this.stopped) return;
    this.attempts++;
    register(this.client, this.req, (st, e) => this.lost(st, e)).then(
      ({ stream }) => {
        if (this.stopped) {
          stream.cancel();
          return;
        }
        this.stream = stream;
        this.attempt = 0;
        if (this.warned) this.warn('ax run: re-attached to the daemon');
        this.warned = false;
      },
      (e: Error) => {
        if (e instanceof RunRefused) {
          // The daemon answers but will not take the app back (e.g. restarted with --clean).
          this.warn(`ax run: the daemon refused to re-attach the app: ${e.message}; its processes keep running, without new registrations`);
          return;
        }
        if (!this.warned) this.warn(reattachNote(this.client.socket, e));
        this.warned = true;
        this.schedule();
      },
    );
  }

  /** Stops re-attaching and closes the stream. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stream?.cancel();
    this.stream = null;
  }
}

/**
 * The nameserver an isolated app's private /etc/resolv.conf names, inside its network
 * namespace (whose only interface is loopback). ax-dnsrelay (native/dnsrelay.c), started
 * there by the app's init, answers on UDP and TCP port 53 of this address and passes each
 * query to the daemon's DNS responder over the hook socket's path + ".dns", admitted like a
 * hook session. Libc lookups go to the daemon through the hook (RESOLVE) first; programs
 * with their own resolver (dig, c-ares, Go) ask here.
 */
export const ISOLATE_NAMESERVER = '127.0.0.53';

/** resolv.conf options kept from the host's file: the ones about how to ask, not whom. */
const KEPT_RESOLV_OPTIONS = /^(ndots:\d+|timeout:\d+|attempts:\d+|edns0|use-vc|single-request|single-request-reopen|no-aaaa|trust-ad|no-reload)$/;

/**
 * The resolv.conf of an isolated app (resolv.conf(5)): `nameserver ISOLATE_NAMESERVER`
 * only; `search ax` then the host's search domains (its last `search` or `domain` line, as
 * glibc reads it; at most 6 in all); the host's `options` that say how to ask (ndots,
 * timeout, attempts, edns0, use-vc, single-request*, no-aaaa, trust-ad, no-reload), not
 * those that assume the host's servers (rotate: there is one) or network (inet6).
 */
export function isolatedResolvConf(host: string): string {
  let search: string[] = [];
  const options: string[] = [];
  for (const raw of host.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...vals] = line.split(/\s+/);
    if (key === 'search') search = vals;
    else if (key === 'domain' && vals[0]) search = [vals[0]];
    else if (key === 'options') for (const o of vals) if (KEPT_RESOLV_OPTIONS.test(o) && !options.includes(o)) options.push(o);
  }
  const domains = ['ax', ...search.map((d) => d.replace(/\.$/, '').toLowerCase()).filter((d) => d && d !== 'ax' && d !== '.')].slice(0, 6);
  return (
    `# written by ax run --isolate: names resolve through ax (ax-dnsrelay on ${ISOLATE_NAMESERVER})\n` +
    `nameserver ${ISOLATE_NAMESERVER}\nsearch ${domains.join(' ')}\n` +
    (options.length ? `options ${options.join(' ')}\n` : '')
  );
}

/**
 * The first program in an isolated app's namespaces (pid 1 of its pid namespace), run
 * by `sh` with the capabilities of the new user namespace:
 *   $1 hook socket, $2 resolv.conf to bind over /etc/resolv.conf (or ""; ax run's private
 *   temporary file in a directory of its own: both are removed once it is bound),
 *   $3 the ax-dnsrelay program (or ""), $4 the capabilities CMD keeps (setpriv's
 *   ",+cap,+cap" form; "" = none; see IsolatePlan.root), $5 the ax-confine program (or
 *   ""), $6 its flags ("--warn" or ""), then "D:dir" (a tmpfs over it)
 *   and "F:file" (/dev/null over it) arguments, "--", CMD...
 * It brings loopback up; bind-mounts the resolv.conf; hides the daemon's state and API
 * socket; keeps the hook socket and the DNS relay socket (hook + ".dns") reachable
 * (re-bound from a directory fd opened before hiding, when a hidden directory held them)
 * and its identity map read-only; starts ax-dnsrelay on ISOLATE_NAMESERVER:53 (it binds,
 * drops every capability and forks: names work before CMD starts); then runs CMD with
 * every capability but $4's dropped (inheritable, ambient, bounding) and LD_PRELOAD from
 * AX_ISOLATE_PRELOAD, as its child, through ax-confine when given (it restricts TCP connect
 * with Landlock and supervises connect(2) before it execs setpriv: native/confine.c; it runs
 * without the hook and sets LD_PRELOAD from AX_CONFINE_PRELOAD for what it execs). It forwards the signals ax run forwards (pid 1 gets
 * only signals it has handlers for) and exits with CMD's status. When it exits, the
 * kernel ends everything left in the pid namespace (the relay too).
 * Needs: ip (iproute2), mount and setpriv (util-linux).
 */
export const ISOLATE_INIT = `set -eu
hook=$1 resolv=$2 relay=$3 keep=$4 confine=$5 confine_flags=$6; shift 6
ip link set lo up
if [ -n "$resolv" ] && [ -e /etc/resolv.conf ]; then mount -c --bind "$resolv" /etc/resolv.conf; fi
if [ -n "$resolv" ]; then rm -f "$resolv"; rmdir "\${resolv%/*}" 2>/dev/null || :; fi
hd=\${hook%/*}; hb=\${hook##*/}
exec 8<"\${hd:-/}"
while [ "$1" != -- ]; do
  case $1 in
    D:*) if [ -d "\${1#D:}" ]; then mount -c -t tmpfs -o mode=0755,size=64k,nosuid,nodev ax-hidden "\${1#D:}"; fi ;;
    F:*) if [ -e "\${1#F:}" ] && [ "\${1#F:}" != "$hook" ]; then mount -c --bind /dev/null "\${1#F:}"; fi ;;
  esac
  shift
done
shift
if [ ! -S "$hook" ]; then
  mkdir -p "$hd"; : >"$hook"; : >"$hook.map"
  mount -c --bind "/proc/self/fd/8/$hb" "$hook"
  mount -c --bind "/proc/self/fd/8/$hb.map" "$hook.map"
  if [ -S "/proc/self/fd/8/$hb.dns" ]; then : >"$hook.dns"; mount -c --bind "/proc/self/fd/8/$hb.dns" "$hook.dns"; fi
else
  mount -c --bind "$hook" "$hook"
  if [ -e "$hook.map" ]; then mount -c --bind "$hook.map" "$hook.map"; fi
fi
if [ -e "$hook.map" ]; then mount -c -o remount,bind,ro "$hook.map"; fi
exec 8<&-
if [ -n "$relay" ] && [ -S "$hook.dns" ]; then
  "$relay" "$hook.dns" ${ISOLATE_NAMESERVER} || echo "ax run: no DNS relay inside (programs with their own resolver cannot reach ax's DNS)" >&2
fi
exec 3<&0
set -- setpriv --inh-caps=-all --ambient-caps=-all --bounding-set="-all$keep" -- "$@"
if [ -n "$confine" ]; then
  # ax-confine itself runs without the hook (its supervisor's connects must be the kernel's);
  # it puts the hook back for CMD (AX_CONFINE_PRELOAD)
  export AX_CONFINE_PRELOAD="\${AX_ISOLATE_PRELOAD:-}"
  set -- "$confine" $confine_flags -- "$@"
else
  export LD_PRELOAD="\${AX_ISOLATE_PRELOAD:-}"
  [ -n "$LD_PRELOAD" ] || unset LD_PRELOAD
fi
unset AX_ISOLATE_PRELOAD
"$@" <&3 3<&- &
child=$!
exec 3<&-
for s in HUP INT QUIT TERM USR1 USR2 WINCH TTIN TTOU CONT ALRM; do trap "kill -$s $child 2>/dev/null || :" $s; done
set +e
while :; do wait $child; rc=$?; kill -0 $child 2>/dev/null || break; done
exit $rc
`;

/**
 * The capabilities an app run isolated by root keeps (setpriv names): what servers that
 * start as root and drop privileges need (nginx, memcached -u, postgres, sshd): change
 * uid/gid, files, signals, chroot. Not SYS_ADMIN (mounts, setns: the hidden files stay
 * hidden, the namespaces stay), NET_ADMIN, NET_RAW (AF_PACKET), SYS_PTRACE,
 * DAC_READ_SEARCH (open_by_handle_at), MKNOD, SYS_MODULE, BPF and the rest. Like the
 * default set of container runtimes (Docker's, docs.docker.com "Runtime privilege and
 * Linux capabilities") less NET_RAW, MKNOD, SETPCAP and SETFCAP.
 */
export const ROOT_ISOLATE_CAPS = ['chown', 'dac_override', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'net_bind_service', 'sys_chroot', 'audit_write'];

/** What an isolated app must not reach, and what it must. */
export interface IsolatePlan {
  hookSocket: string;
  /** a file with the isolated resolv.conf ("" = keep the host's) */
  resolvConf: string;
  /** the ax-dnsrelay program ("" = no relay: no nameserver answers inside) */
  relay: string;
  /**
   * the ax-confine program ("" = none: handed-in sockets are then confined only by the
   * daemon's socket filters, where it may attach them); see native/confine.c
   */
  confine?: string;
  /** ax-confine warns when this kernel cannot confine (the caller's daemon may be unable to too) */
  confineWarn?: boolean;
  /** directories covered by an empty tmpfs (the daemon's state directory) */
  hideDirs: string[];
  /** files covered by /dev/null (the API socket, the daemon's log) */
  hideFiles: string[];
  command: string[];
  /**
   * The caller is root: no user namespace (every uid and gid of the host exists inside,
   * so servers that drop privileges work) and the app keeps ROOT_ISOLATE_CAPS. Otherwise a
   * user namespace maps the caller's own uid and gid only (no setuid newuidmap) and the
   * app keeps no capability (inside its user namespace they would let it undo the mounts
   * that hide the daemon).
   */
  root?: boolean;
}

/**
 * The program and arguments that run `plan.command` isolated: util-linux `unshare`
 * makes new user (not for root, see IsolatePlan.root: the caller's uid and gid mapped
 * to themselves, capabilities kept for the setup only), network, mount (private
 * propagation) and pid namespaces, with
 * a fresh /proc (host processes, and their /proc/PID/root views of the host's files,
 * are out of sight); ISOLATE_INIT does the rest. `--kill-child` ends the namespace
 * when unshare dies. Nested directories to hide are reduced to the outermost.
 */
export function isolateArgs(plan: IsolatePlan): string[] {
  const dirs = [...new Set(plan.hideDirs.filter(Boolean).map((d) => resolve(d)))].filter((d) => d !== '/');
  const outer = dirs.filter((d) => !dirs.some((o) => o !== d && d.startsWith(`${o}/`)));
  const files = [...new Set(plan.hideFiles.filter(Boolean).map((f) => resolve(f)))].filter((f) => !outer.some((o) => f.startsWith(`${o}/`)));
  const user = plan.root ? [] : ['--user', '--map-current-user', '--keep-caps'];
  const keep = plan.root ? ROOT_ISOLATE_CAPS.map((c) => `,+${c}`).join('') : '';
  return [
    ...user, '--net', '--mount', '--propagation', 'private',
    '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL',
    '--', 'sh', '-c', ISOLATE_INIT, 'ax-isolate', plan.hookSocket, plan.resolvConf, plan.relay, keep,
    plan.confine ?? '', plan.confineWarn ? '--warn' : '',
    ...outer.map((d) => `D:${d}`), ...files.map((f) => `F:${f}`), '--', ...plan.command,
  ];
}

/** Programs --isolate needs, and the package each comes in. */
const ISOLATE_TOOLS: Array<[string, string]> = [['unshare', 'util-linux'], ['setpriv', 'util-linux'], ['mount', 'util-linux'], ['ip', 'iproute2']];

/** The pid of the isolated app's pid-1 process: the child of unshare (0 until it exists). */
function nsInit(unsharePid: number): number {
  try {
    const first = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim().split(' ')[0];
    return first ? Number(first) : 0;
  } catch {
    return 0;
  }
}

/** Signals `ax run` passes to its command, as a shell would. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGTTIN', 'SIGTTOU', 'SIGCONT', 'SIGALRM'];
/** Signals a terminal already sends to the whole foreground process group (the command too). */
const TTY_GROUP_SIGNALS = new Set<NodeJS.Signals>(['SIGINT', 'SIGQUIT', 'SIGWINCH']);

/**
 * `ax run [flags] -- CMD`: registers the app, runs CMD under the hook and resolves with CMD's exit
 * status (or 128+signal). Throws UsageError (bad flags), DaemonUnreachable or RunRefused before CMD starts.
 */
export async function runMain(argv: string[], entry: string): Promise<number> {
  const spec = parseRunArgs(argv);
  if (!spec) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  const lib = hookLibrary();
  const client = await connectOrStart(spec.socket, spec.autostart, entry);
  const req: RunRequest = {
    name: spec.name,
    ip: spec.ip,
    labels: spec.labels,
    expose: spec.expose,
    run_pid: process.pid,
    command: spec.command.join(' '),
  };
  const attachment = new Attachment(client, req, (m) => process.stderr.write(`${m}\n`));
  let reg: Registration;
  try {
    reg = await attachment.start();
  } catch (e) {
    client.close();
    throw e;
  }

  const env = { ...process.env };
  const userPreload = env.LD_PRELOAD;
  env.LD_PRELOAD = env.LD_PRELOAD ? `${lib} ${env.LD_PRELOAD}` : lib;
  env.AX_HOOK_SOCK = reg.hook_socket;
  env.AX_APP = `${reg.app_id}:${reg.token}`;
  env.AX_CONNECT_WAIT_MS = String(spec.connectWaitMs);
  if (spec.failOpen) env.AX_FAIL_MODE = 'open';
  else delete env.AX_FAIL_MODE;

  // Orphans of the command (its background children whose parent exited) come to us, not to init.
  becomeSubreaper();
  // If ax run itself is killed (SIGKILL, OOM), the command gets SIGKILL too (PR_SET_PDEATHSIG, set
  // by setpriv, which then execs the command in place: same pid). A missing command is reported here.
  const found = findInPath(spec.command[0], env.PATH);
  // A file that is there but cannot be run: said as a shell says it, with its status (126).
  const cannot = found ? null : notRunnable(spec.command[0], env.PATH);
  if (cannot) {
    attachment.stop();
    client.close();
    process.stderr.write(`ax run: ${spec.command[0]}: ${cannot}\n`);
    return 126;
  }
  const setpriv = found ? findInPath('setpriv', env.PATH) : null;
  let [file, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', spec.command[0], ...spec.command.slice(1)]] : [spec.command[0], spec.command.slice(1)];
  // Programs the hook cannot see: said once, before they start.
  const program = found ? classifyCommand(spec.command[0], env.PATH) : null;
  if (program && (program.kind === 'static' || program.kind === 'go')) {
    process.stderr.write(
      spec.isolate
        ? `ax run: warning: ${program.file} is ${program.reason}. ax cannot hand it sockets: under --isolate it has no network at all (only its own loopback).\n`
        : `ax run: warning: ${program.file} is ${program.reason}. ax does not mediate it: it uses the network natively, with no virtual names, addresses or policy (--isolate cuts it off instead).\n`,
    );
  }
  let isolateTmp = '';
  if (spec.isolate) {
    const fail = (m: string) => {
      attachment.stop();
      client.close();
      process.stderr.write(`ax run: ${m}\n`);
      return 1;
    };
    if (!found) {
      attachment.stop();
      client.close();
      process.stderr.write(`ax run: ${spec.command[0]}: command not found\n`);
      return 127;
    }
    for (const [tool, pkg] of ISOLATE_TOOLS) if (!findInPath(tool, env.PATH)) return fail(`--isolate needs ${tool} (package ${pkg}), which is not in PATH`);
    // The daemon's own files (state, log) are hidden too; a daemon that does not tell (another uid's) keeps them private itself.
    let st: { state_dir?: string; log_file?: string; api_socket?: string } = {};
    try {
      st = await client.call('Status');
    } catch {
      /* not ours to see */
    }
    isolateTmp = mkdtempSync(join(tmpdir(), 'ax-isolate-'));
    const resolvConf = join(isolateTmp, 'resolv.conf');
    let hostResolv = '';
    try {
      hostResolv = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      /* none: glibc's defaults */
    }
    writeFileSync(resolvConf, isolatedResolvConf(hostResolv), { mode: 0o644 });
    const relay = dnsRelayProgram(lib);
    if (!relay) process.stderr.write(`ax run: warning: ax-dnsrelay not found beside ${lib}: programs with their own resolver get no answers inside (build it with: npm run build)\n`);
    const confine = confineProgram(lib);
    const root = process.getuid?.() === 0;
    if (!confine) process.stderr.write(`ax run: warning: ax-confine not found beside ${lib}: sockets ax hands in are confined only where the daemon can attach socket filters (build it with: npm run build)\n`);
    // Tells an ax CLI run inside that the API is hidden on purpose (insideIsolatedApp).
    env.AX_ISOLATED = '1';
    env.AX_ISOLATE_PRELOAD = env.LD_PRELOAD;
    if (userPreload) env.LD_PRELOAD = userPreload;
    else delete env.LD_PRELOAD;
    const unshare = findInPath('unshare', env.PATH)!;
    const inner = isolateArgs({
      hookSocket: reg.hook_socket,
      resolvConf,
      relay: relay ?? '',
      hideDirs: st.state_dir ? [st.state_dir] : [],
      hideFiles: [resolve(spec.socket), st.api_socket ?? '', st.log_file ?? ''],
      command: spec.command,
      root,
      confine: confine ?? '',
      confineWarn: !root,
    });
    [file, args] = [setpriv ?? unshare, setpriv ? ['--pdeathsig', 'KILL', '--', unshare, ...inner] : inner];
  }
  const child = spawn(file, args, { stdio: 'inherit', env });
  // Pids not to reap or end here: the command (libuv reaps it) and a daemon we started (it stays).
  const spawned = new Set<number>([child.pid ?? -1, client.startedDaemon]);
  const forward = (sig: NodeJS.Signals) => () => {
    if (TTY_GROUP_SIGNALS.has(sig) && process.stdin.isTTY) return;
    try {
      // Isolated: to the namespace's pid 1 (it passes signals on to CMD), not to unshare.
      const init = spec.isolate && child.pid ? nsInit(child.pid) : 0;
      if (init > 0) process.kill(init, sig);
      else child.kill(sig);
    } catch {
      /* gone */
    }
  };
  const handlers = FORWARDED_SIGNALS.map((sig) => {
    const h = forward(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  // Adopted orphans are reaped as they exit (libuv only reaps the child it spawned).
  const reaper = setInterval(() => {
    for (const pid of childrenOfSelf()) if (!spawned.has(pid)) reap(pid);
  }, 500);
  reaper.unref();
  // If ax run itself dies of an uncaught error, the command does not live on unseen.
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  return new Promise<number>((resolve) => {
    const finish = async (code: number, signal: NodeJS.Signals | null) => {
      clearInterval(reaper);
      // What the command left running in the background (a daemonized server)
      // lives on, as it would without ax: it keeps its sockets, and the daemon
      // keeps its services while the kernel has them.
      for (const pid of childrenOfSelf()) if (!spawned.has(pid)) reap(pid);
      attachment.stop();
      client.close();
      if (isolateTmp) rmSync(isolateTmp, { recursive: true, force: true });
      for (const [sig, h] of handlers) process.off(sig, h);
      process.off('exit', killOnExit);
      if (signal) {
        // Die the same way, so shells see the signal.
        process.kill(process.pid, signal);
        setTimeout(() => resolve(128 + (osConstants.signals[signal] ?? 0)), 100);
        return;
      }
      resolve(code);
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      const msg = e.code === 'ENOENT' ? 'command not found' : e.code === 'EACCES' ? 'permission denied' : e.message;
      process.stderr.write(`ax run: ${spec.command[0]}: ${msg}\n`);
      void finish(e.code === 'ENOENT' ? 127 : 126, null);
    });
    child.on('exit', (code, signal) => void finish(code ?? 0, signal));
  });
}

/**
 * Why `cmd`, which findInPath did not find, cannot be run although something is there, as
 * execvp(3) would fail with EACCES: "permission denied (not executable)" for a file without
 * execute permission (a path, or a name found in PATH only as such files), "is a directory"
 * for a directory path; null when nothing is there (command not found, 127).
 */
export function notRunnable(cmd: string, path = '/usr/local/bin:/usr/bin:/bin'): string | null {
  const what = (f: string): string | null => {
    try {
      const st = statSync(f);
      if (st.isDirectory()) return 'is a directory';
      return 'permission denied (not executable)';
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EACCES' ? 'permission denied' : null;
    }
  };
  if (cmd.includes('/')) return what(cmd);
  for (const dir of path.split(':')) {
    const f = join(dir || '.', cmd);
    try {
      if (statSync(f).isFile()) return 'permission denied (not executable)';
    } catch {
      /* not here */
    }
  }
  return null;
}

/** The executable `cmd` resolves to as execvp would find it (PATH unless it has a '/'), or null. */
export function findInPath(cmd: string, path = '/usr/local/bin:/usr/bin:/bin'): string | null {
  const ok = (f: string) => {
    try {
      return statSync(f).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) {
    if (!ok(cmd)) return null;
    try {
      accessSync(cmd, fsConstants.X_OK);
      return cmd;
    } catch {
      return null; // there, but not executable: notRunnable says so
    }
  }
  for (const dir of path.split(':')) {
    const f = join(dir || '.', cmd);
    if (ok(f)) {
      try {
        accessSync(f, fsConstants.X_OK);
        return f;
      } catch {
        /* not executable here: keep looking, as execvp does */
      }
    }
  }
  return null;
}

