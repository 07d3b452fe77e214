// `ax run`: registers an app with the daemon and runs a command under the hook.
import type * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { checkVirtualIp } from '../common/addr';
import { defaultApiSocket } from '../common/paths';
import { LabelError, parseLabels } from '../policy/labels';
import { parsePort } from '../table/ports';
import { list, parseDuration, parseFlags, str, bool, UsageError, type FlagSpec } from './args';
import { connectOrStart, type AxClient } from './client';

export const RUN_USAGE = `usage: ax run [flags] -- CMD [ARGS...]

Runs CMD with the ax hook preloaded; its children and exec'd programs inherit it.
Exit status and SIGINT/SIGTERM are passed through.

flags:
  --name NAME             service name (resolves as NAME and NAME.ax); apps sharing a name form a pool
  --ip VIP                virtual IPv4 address (default: the name's, or one from the daemon's range)
  --labels k=v,...        labels for access policy (default zone=default)
  --expose PORT:HOSTPORT  bind virtual PORT on this host port (also PORT:HOSTIP:HOSTPORT); repeatable
  --connect-wait DUR      how long a blocking connect waits for a registered service to listen (default 5s)
  --fail-open             if the daemon goes away, let socket calls pass through natively (default: fail closed)
  --socket PATH           daemon API socket (default $XDG_RUNTIME_DIR/ax/ax.sock); a daemon is started if none runs
  --no-start              do not start a daemon when none runs
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

interface Registration {
  app_id: string;
  token: string;
  vip: string;
  hook_socket: string;
}

/** Opens the RunApp stream; resolves with the first event. Calls onLost if the stream breaks later. */
function register(client: AxClient, req: Record<string, unknown>, onLost: (e: Error) => void): Promise<{ reg: Registration; stream: grpc.ClientReadableStream<unknown> }> {
  return new Promise((resolve, reject) => {
    const stream = client.raw.RunApp(req) as grpc.ClientReadableStream<Registration>;
    let first = true;
    // One report per stream: a broken stream fires both 'error' and 'end', and each
    // report starts a retry chain (chains multiplied until the wrapper ran out of heap).
    let reported = false;
    const lost = (e: Error) => {
      if (reported) return;
      reported = true;
      onLost(e);
    };
    stream.on('data', (ev: Registration) => {
      if (first) {
        first = false;
        resolve({ reg: ev, stream });
      }
    });
    stream.on('error', (e: grpc.ServiceError) => {
      if (first) {
        first = false;
        reported = true; // the caller hears of this one through the rejection
        reject(new Error(e.details || e.message));
      } else if (e.code !== 1 /* CANCELLED by us */) lost(e);
    });
    stream.on('end', () => {
      if (!first) lost(new Error('stream ended'));
    });
  });
}

export async function runMain(argv: string[], entry: string): Promise<number> {
  const spec = parseRunArgs(argv);
  if (!spec) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  const lib = hookLibrary();
  const client = await connectOrStart(spec.socket, spec.autostart, entry);
  const req = {
    name: spec.name,
    ip: spec.ip,
    labels: spec.labels,
    expose: spec.expose,
    run_pid: process.pid,
    command: spec.command.join(' '),
  };
  let childDone = false;
  let stream: grpc.ClientReadableStream<unknown> | null = null;
  let reattachTimer: NodeJS.Timeout | null = null;
  const { reg, stream: s } = await register(client, req, function lost() {
    if (childDone) return;
    // The daemon went away (restart): re-attach to the same app until it answers.
    reattachTimer = setTimeout(function retry() {
      if (childDone) return;
      register(client, { ...req, app_id: reg.app_id, token: reg.token }, lost)
        .then((r) => (stream = r.stream))
        .catch(() => (reattachTimer = setTimeout(retry, 200)));
    }, 100);
  }).catch((e: Error) => {
    throw new UsageError(`ax run: ${e.message}`);
  });
  stream = s;

  const env = { ...process.env };
  env.LD_PRELOAD = env.LD_PRELOAD ? `${lib} ${env.LD_PRELOAD}` : lib;
  env.AX_HOOK_SOCK = reg.hook_socket;
  env.AX_APP = `${reg.app_id}:${reg.token}`;
  env.AX_CONNECT_WAIT_MS = String(spec.connectWaitMs);
  if (spec.failOpen) env.AX_FAIL_MODE = 'open';
  else delete env.AX_FAIL_MODE;

  const child = spawn(spec.command[0], spec.command.slice(1), { stdio: 'inherit', env });
  const forward = (sig: NodeJS.Signals) => () => {
    // A terminal already delivers SIGINT to the whole foreground group.
    if (sig === 'SIGINT' && process.stdin.isTTY) return;
    child.kill(sig);
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
  const handlers = sigs.map((sig) => {
    const h = forward(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  return new Promise<number>((resolve) => {
    const finish = (code: number, signal: NodeJS.Signals | null) => {
      childDone = true;
      if (reattachTimer) clearTimeout(reattachTimer);
      stream?.cancel();
      client.close();
      for (const [sig, h] of handlers) process.off(sig, h);
      if (signal) {
        // Die the same way, so shells see the signal.
        process.kill(process.pid, signal);
        setTimeout(() => resolve(128 + (osConstants.signals[signal] ?? 0)), 100);
        return;
      }
      resolve(code);
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      childDone = true;
      const msg = e.code === 'ENOENT' ? 'command not found' : e.code === 'EACCES' ? 'permission denied' : e.message;
      process.stderr.write(`ax run: ${spec.command[0]}: ${msg}\n`);
      finish(e.code === 'ENOENT' ? 127 : 126, null);
    });
    child.on('exit', (code, signal) => finish(code ?? 0, signal));
  });
}
