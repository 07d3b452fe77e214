// The `ax` command: one binary, two roles (daemon and run) plus queries.
// Each command's module is loaded when it runs (esbuild keeps dynamic imports
// lazy in the bundle): `ax run` and `ax get` do not initialize the daemon's
// code (LevelDB, the DNS responder, metrics, the policy file parser), which
// keeps every wrapper's start-up and memory small.
import { UsageError } from './args';
import { VERSION } from '../common/version';

export const USAGE = `usage: ax <command> [flags]

commands:
  run [flags] -- CMD   run CMD with virtual IPs and names (starts a daemon if none runs)
  daemon [flags]       run the daemon in the foreground
  daemon stop          stop the daemon (also: ax stop)
  get KIND             list apps, services, sockets or members (-o json)
  status               show the daemon's status, log file and who you are to it (-o json)
  logs [-f]            print (and follow) the daemon's log
  events [-f]          the audit trail: every access decision (--since, --limit, -o json)
  graph                the observed dependency map as Graphviz DOT or SVG (-o svg)
  doctor               what this host supports (user namespaces, sock_diag, ...) and what ax does (-o json)
  policy add|rm|ls|apply   manage policy rules (who may connect to, publish and see what)
  version              print the version

Run 'ax <command> --help' for a command's flags.
`;

/** A command: its entry point, its usage text, and the errors it turns into a one-line message. */
interface Command {
  run: (args: string[]) => Promise<number> | number;
  usage: string;
  /** error classes printed as "prefix message" with exit status 1 */
  known?: Array<[new (...a: never[]) => Error, string]>;
}

/**
 * The command modules, each loaded on first use. require() with a literal path (not
 * import()) works the same in the bundle (esbuild keeps such modules lazy) and from
 * source under the test runner.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const mod = {
  run: () => require('./run') as typeof import('./run.js'),
  manage: () => require('./manage') as typeof import('./manage.js'),
  daemon: () => require('./daemon') as typeof import('./daemon.js'),
  get: () => require('./get') as typeof import('./get.js'),
  events: () => require('./events') as typeof import('./events.js'),
  graph: () => require('./graph') as typeof import('./graph.js'),
  doctor: () => require('./doctor') as typeof import('./doctor.js'),
  policy: () => require('./policy') as typeof import('./policy.js'),
  client: () => require('./client') as typeof import('./client.js'),
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** Loads the command `cmd` (undefined: no such command). */
async function load(cmd: string, rest: string[], entry: string): Promise<Command | undefined> {
  switch (cmd) {
    case 'run': {
      const m = mod.run();
      return { run: (a) => m.runMain(a, entry), usage: m.RUN_USAGE, known: [[m.RunRefused, 'ax run: the daemon refused the app: ']] };
    }
    case 'daemon': {
      if (rest[0] === 'stop') {
        const s = mod.manage();
        return { run: (a) => s.stopMain(a.slice(1)), usage: s.STOP_USAGE };
      }
      const m = mod.daemon();
      return { run: m.daemonMain, usage: m.DAEMON_USAGE };
    }
    case 'stop':
    case 'status':
    case 'logs': {
      const m = mod.manage();
      if (cmd === 'stop') return { run: m.stopMain, usage: m.STOP_USAGE };
      if (cmd === 'status') return { run: m.statusMain, usage: m.STATUS_USAGE };
      return { run: m.logsMain, usage: m.LOGS_USAGE };
    }
    case 'get': {
      const m = mod.get();
      return { run: m.getMain, usage: m.GET_USAGE };
    }
    case 'events': {
      const m = mod.events();
      return { run: m.eventsMain, usage: m.EVENTS_USAGE };
    }
    case 'graph': {
      const m = mod.graph();
      return { run: m.graphMain, usage: m.GRAPH_USAGE, known: [[m.NoGraphviz, 'ax graph: ']] };
    }
    case 'doctor': {
      const m = mod.doctor();
      return { run: m.doctorMain, usage: m.DOCTOR_USAGE };
    }
    case 'policy': {
      const m = mod.policy();
      return { run: m.policyMain, usage: m.POLICY_USAGE };
    }
    default:
      return undefined;
  }
}

export async function main(argv: string[], entry: string): Promise<number> {
  const [cmd, ...rest] = argv;
  let command: Command | undefined;
  try {
    switch (cmd) {
      case 'version':
      case '--version':
        process.stdout.write(`ax ${VERSION}\n`);
        return 0;
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return 0;
      case undefined:
        throw new UsageError('missing command');
    }
    command = await load(cmd, rest, entry);
    if (!command) throw new UsageError(`unknown command "${cmd}"`);
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ax: ${e.message.replace(/^ax run: /, '')}\n\n${command?.usage ?? USAGE}`);
      return 2;
    }
    for (const [cls, prefix] of command?.known ?? []) {
      if (e instanceof cls) {
        process.stderr.write(`${prefix}${e.message}\n`);
        return 1;
      }
    }
    const { ApiError, DaemonUnreachable } = mod.client();
    if (e instanceof ApiError) {
      process.stderr.write(`ax: ${e.code === 7 ? 'permission denied: ' : ''}${e.message}\n`);
      return 1;
    }
    if (e instanceof DaemonUnreachable) {
      process.stderr.write(`ax: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`ax: ${(e as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2), __filename).then(
    (code) => {
      const daemon = process.argv[2] === 'daemon' && process.argv[3] !== 'stop';
      if (code !== 0 || !daemon) process.exitCode = code;
      if (!daemon) setImmediate(() => process.exit(code));
    },
    (e) => {
      process.stderr.write(`ax: ${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
