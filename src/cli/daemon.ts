// `ax daemon`: runs the daemon in the foreground.
import { parseCidr } from '../common/addr';
import type { Level } from '../common/log';
import { hookSocketFor } from '../common/paths';
import { defaultConfig, validateConfig, type DaemonConfig } from '../daemon/config';
import { Daemon } from '../daemon/daemon';
import { parsePortRange } from '../table/ports';
import { bool, parseFlags, str, UsageError, type FlagSpec } from './args';

export const DAEMON_USAGE = `usage: ax daemon [flags]

Runs the ax daemon in the foreground. \`ax run\` starts one by itself when none runs.

flags:
  --state-dir DIR     LevelDB state (default $XDG_STATE_HOME/ax, /var/lib/ax for root)
  --socket PATH       gRPC API socket (default $XDG_RUNTIME_DIR/ax/ax.sock, /run/ax/ax.sock for root)
  --hook-socket PATH  hook socket (default: beside --socket, ax-hook.sock)
  --ports A-B         host port pool for virtual listeners (default 40000-60000)
  --vip-range CIDR    virtual IPs for apps without --ip (default 10.240.0.0/16)
  --host-ip IP        real IP listeners are bound on (default 127.0.0.1)
  --node-name NAME    this node's name (default: host name)
  --lb MODE           load balancing over a pool: round-robin (default) or random
  --clean             drop saved state; otherwise apps and services are restored
  --log-level LEVEL   debug, info (default), warn, error
  --log-file FILE     log here instead of stderr
`;

const SPECS: FlagSpec[] = [
  { name: 'state-dir', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'hook-socket', kind: 'string' },
  { name: 'ports', kind: 'string' },
  { name: 'vip-range', kind: 'string' },
  { name: 'host-ip', kind: 'string' },
  { name: 'node-name', kind: 'string' },
  { name: 'lb', kind: 'string' },
  { name: 'clean', kind: 'bool' },
  { name: 'log-level', kind: 'string' },
  { name: 'log-file', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

export function daemonConfigFromArgs(argv: string[]): DaemonConfig | null {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) return null;
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const c = defaultConfig();
  const wrap = <T>(flag: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw new UsageError(`--${flag}: ${(e as Error).message}`);
    }
  };
  const v = (n: string) => str(p, n);
  if (v('state-dir')) c.stateDir = v('state-dir')!;
  if (v('socket')) {
    c.socket = v('socket')!;
    c.hookSocket = hookSocketFor(c.socket);
  }
  if (v('hook-socket')) c.hookSocket = v('hook-socket')!;
  if (v('ports')) c.ports = wrap('ports', () => parsePortRange(v('ports')!));
  if (v('vip-range')) c.vipRange = wrap('vip-range', () => parseCidr(v('vip-range')!));
  if (v('host-ip')) c.hostIp = v('host-ip')!;
  if (v('node-name')) c.nodeName = v('node-name')!;
  if (v('lb')) {
    const lb = v('lb')!;
    if (lb !== 'round-robin' && lb !== 'random') throw new UsageError(`--lb: "${lb}" is not round-robin or random`);
    c.lb = lb;
  }
  c.clean = bool(p, 'clean');
  if (v('log-level')) {
    const l = v('log-level')!;
    if (!['debug', 'info', 'warn', 'error'].includes(l)) throw new UsageError(`--log-level: "${l}" is not debug, info, warn or error`);
    c.logLevel = l as Level;
  }
  if (v('log-file')) c.logFile = v('log-file');
  wrap('node-name', () => validateConfig(c));
  return c;
}

export async function daemonMain(argv: string[]): Promise<number> {
  const config = daemonConfigFromArgs(argv);
  if (!config) {
    process.stdout.write(DAEMON_USAGE);
    return 0;
  }
  const d = new Daemon(config);
  try {
    await d.start();
  } catch (e) {
    process.stderr.write(`ax daemon: ${(e as Error).message}\n`);
    await d.stop().catch(() => {});
    return 1;
  }
  const stop = () => void d.stop().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise<number>(() => {}); // runs until stopped
}
