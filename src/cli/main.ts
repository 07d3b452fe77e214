// The `ax` command: one binary, two roles (daemon and run) plus queries.
import { UsageError } from './args';
import { ApiError, DaemonUnreachable } from './client';
import { DAEMON_USAGE, daemonMain } from './daemon';
import { DOCTOR_USAGE, doctorMain } from './doctor';
import { GET_USAGE, getMain } from './get';
import { EVENTS_USAGE, eventsMain } from './events';
import { GRAPH_USAGE, graphMain, NoGraphviz } from './graph';
import { LOGS_USAGE, logsMain, STATUS_USAGE, statusMain, STOP_USAGE, stopMain } from './manage';
import { POLICY_USAGE, policyMain } from './policy';
import { RUN_USAGE, RunRefused, runMain } from './run';
import { VERSION } from '../daemon/daemon';

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

export async function main(argv: string[], entry: string): Promise<number> {
  const [cmd, ...rest] = argv;
  const usageFor: Record<string, string> = { run: RUN_USAGE, daemon: rest[0] === 'stop' ? STOP_USAGE : DAEMON_USAGE, get: GET_USAGE, status: STATUS_USAGE, stop: STOP_USAGE, logs: LOGS_USAGE, events: EVENTS_USAGE, graph: GRAPH_USAGE, doctor: DOCTOR_USAGE, policy: POLICY_USAGE };
  try {
    switch (cmd) {
      case 'run':
        return await runMain(rest, entry);
      case 'daemon':
        if (rest[0] === 'stop') return await stopMain(rest.slice(1));
        return await daemonMain(rest);
      case 'stop':
        return await stopMain(rest);
      case 'get':
        return await getMain(rest);
      case 'status':
        return await statusMain(rest);
      case 'logs':
        return await logsMain(rest);
      case 'events':
        return await eventsMain(rest);
      case 'graph':
        return await graphMain(rest);
      case 'doctor':
        return doctorMain(rest);
      case 'policy':
        return await policyMain(rest);
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
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ax: ${e.message.replace(/^ax run: /, '')}\n\n${usageFor[cmd ?? ''] ?? USAGE}`);
      return 2;
    }
    if (e instanceof RunRefused) {
      process.stderr.write(`ax run: the daemon refused the app: ${e.message}\n`);
      return 1;
    }
    if (e instanceof ApiError) {
      process.stderr.write(`ax: ${e.code === 7 ? 'permission denied: ' : ''}${e.message}\n`);
      return 1;
    }
    if (e instanceof NoGraphviz) {
      process.stderr.write(`ax graph: ${e.message}\n`);
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
