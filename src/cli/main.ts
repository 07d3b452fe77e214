// The `ax` command: one binary, two roles (daemon and run) plus queries.
import { UsageError } from './args';
import { DaemonUnreachable, AxClient } from './client';
import { DAEMON_USAGE, daemonMain } from './daemon';
import { GET_USAGE, getMain } from './get';
import { RUN_USAGE, runMain } from './run';
import { VERSION } from '../daemon/daemon';
import { defaultApiSocket } from '../common/paths';

export const USAGE = `usage: ax <command> [flags]

commands:
  run [flags] -- CMD   run CMD with virtual IPs and names (starts a daemon if none runs)
  daemon [flags]       run the daemon in the foreground
  get KIND             list apps, services, sockets or members (-o json)
  status               show the daemon's status
  version              print the version

Run 'ax <command> --help' for a command's flags.
`;

async function statusMain(argv: string[]): Promise<number> {
  const socket = argv[0] === '--socket' && argv[1] ? argv[1] : defaultApiSocket();
  if (argv.length > 0 && !(argv[0] === '--socket' && argv.length === 2)) throw new UsageError(`unexpected argument "${argv[0]}"`);
  const c = new AxClient(socket);
  try {
    const s = await c.call('Status');
    for (const [k, v] of Object.entries(s)) process.stdout.write(`${k.padEnd(15)} ${String(v)}\n`);
    return 0;
  } finally {
    c.close();
  }
}

export async function main(argv: string[], entry: string): Promise<number> {
  const [cmd, ...rest] = argv;
  const usageFor: Record<string, string> = { run: RUN_USAGE, daemon: DAEMON_USAGE, get: GET_USAGE };
  try {
    switch (cmd) {
      case 'run':
        return await runMain(rest, entry);
      case 'daemon':
        return await daemonMain(rest);
      case 'get':
        return await getMain(rest);
      case 'status':
        return await statusMain(rest);
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
      if (code !== 0 || process.argv[2] !== 'daemon') process.exitCode = code;
      if (process.argv[2] !== 'daemon') setImmediate(() => process.exit(code));
    },
    (e) => {
      process.stderr.write(`ax: ${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
