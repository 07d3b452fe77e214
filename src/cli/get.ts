// `ax get apps|services|sockets|members`: tables by default, -o json for machines.
import { formatAddr } from '../common/addr';
import { defaultApiSocket } from '../common/paths';
import type { App__Output } from '../gen/ax/v1/App';
import type { Member__Output } from '../gen/ax/v1/Member';
import type { Service__Output } from '../gen/ax/v1/Service';
import type { SocketInfo__Output } from '../gen/ax/v1/SocketInfo';
import { formatLabels } from '../policy/labels';
import { parseFlags, str, bool, UsageError, type FlagSpec } from './args';
import { AxClient } from './client';

export const GET_USAGE = `usage: ax get apps|services|sockets|members [-o table|json] [--socket PATH]

Tables leave out the ax.* labels ax sets itself (ax.user, ax.node, ax.name); -o json has them.
services: a program listening on IPv4 and IPv6 (redis, nginx with [::]) has one row per listener,
with one VIP. Virtual addresses are IPv4: an "ipv6" (dual-stack) listener takes the VIP's
connections (v4-mapped), an "ipv6-only" (IPV6_V6ONLY) listener none.
Reading the table needs root, the daemon's user or its --api-group.
`;

const SPECS: FlagSpec[] = [
  { name: 'output', short: 'o', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

type Columns<R> = Array<[string, (r: R) => string]>;

/** What `ax get KIND` shows: the rows the daemon lists, and their table. */
interface Kind {
  get(client: AxClient): Promise<{ rows: object[]; table(): string }>;
}

/** A kind whose rows (of type R) come from `list`, shown in a table with `columns`. */
function kind<R extends object>(list: (client: AxClient) => Promise<R[]>, columns: Columns<R>): Kind {
  return {
    get: async (client) => {
      const rows = await list(client);
      return { rows, table: () => table(rows, columns) };
    },
  };
}

const KINDS: Record<string, Kind> = {
  apps: kind<App__Output>(
    async (c) => (await c.call('ListApps')).apps ?? [],
    [
      ['NAME', (r) => r.name || '-'],
      ['APPID', (r) => r.id],
      ['NODE', (r) => r.node],
      ['APPIP', (r) => r.vip],
      ['USER', (r) => r.user || String(r.uid ?? '-')],
      ['LABELS', (r) => formatLabels(r.labels ?? {})],
      ['PROCESSES', (r) => String(r.processes)],
      ['SERVICES', (r) => String(r.services)],
    ],
  ),
  services: kind<Service__Output>(
    async (c) => (await c.call('ListServices')).services ?? [],
    [
      ['NAME', (r) => r.name || '-'],
      ['VIRTUAL', (r) => formatAddr({ ip: r.vip, port: r.vport })],
      ['HOST', (r) => formatAddr({ ip: r.host_ip, port: r.host_port })],
      ['PROTO', (r) => r.proto],
      ['FAMILY', (r) => r.family || '-'],
      ['APPID', (r) => r.app_id],
      ['NODE', (r) => r.node],
      ['LABELS', (r) => formatLabels(r.labels ?? {})],
    ],
  ),
  sockets: kind<SocketInfo__Output>(
    async (c) => (await c.call('ListSockets')).sockets ?? [],
    [
      ['ID', (r) => String(r.id)],
      ['APPID', (r) => r.app_id],
      ['PID', (r) => String(r.pid)],
      ['STATE', (r) => r.state],
      ['FAMILY', (r) => r.family],
      ['VIRTUAL', (r) => r.virtual_addr],
      ['HOST', (r) => r.host_addr],
      ['NODE', (r) => r.node],
    ],
  ),
  members: kind<Member__Output>(
    async (c) => (await c.call('ListMembers')).members ?? [],
    [
      ['NAME', (r) => r.name],
      ['ADDRESS', (r) => r.address],
      ['STATE', (r) => r.state],
      ['INCARNATION', (r) => String(r.incarnation)],
      ['SERVICES', (r) => String(r.services)],
    ],
  ),
};
KINDS.app = KINDS.apps;
KINDS.service = KINDS.services;
KINDS.svc = KINDS.services;
KINDS.socket = KINDS.sockets;
KINDS.member = KINDS.members;
KINDS.nodes = KINDS.members;

/**
 * The rows `ax get KIND -o json` prints: the daemon's list of `kind` (apps, services, sockets or
 * members, or an alias of one) as `client` gets it. Throws UsageError for an unknown kind, and what
 * AxClient.call throws (DaemonUnreachable, ApiError). The tests read the table with it in their own
 * process, without starting `ax get` for every look.
 */
export async function getRows(client: AxClient, kind: string): Promise<object[]> {
  const k = KINDS[kind];
  if (!k) throw new UsageError(`cannot get "${kind}": choose apps, services, sockets or members`);
  return (await k.get(client)).rows;
}

export function table<R>(rows: R[], columns: Columns<R>): string {
  const cells = [columns.map(([h]) => h), ...rows.map((r) => columns.map(([, f]) => f(r)))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

export async function getMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) {
    process.stdout.write(GET_USAGE);
    return 0;
  }
  if (p.rest.length !== 1) throw new UsageError(p.rest.length === 0 ? 'what to get? apps, services, sockets or members' : `unexpected argument "${p.rest[1]}"`);
  const kind = KINDS[p.rest[0]];
  if (!kind) throw new UsageError(`cannot get "${p.rest[0]}": choose apps, services, sockets or members`);
  const output = str(p, 'output') ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o ${output}: choose table or json`);
  const client = new AxClient(str(p, 'socket') ?? defaultApiSocket());
  try {
    const got = await kind.get(client);
    process.stdout.write(output === 'json' ? JSON.stringify(got.rows, null, 2) + '\n' : got.table());
    return 0;
  } finally {
    client.close();
  }
}
