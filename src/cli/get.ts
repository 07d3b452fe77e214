// `ax get apps|services|sockets|members`: tables by default, -o json for machines.
import { formatAddr } from '../common/addr';
import { defaultApiSocket } from '../common/paths';
import { formatLabels } from '../policy/labels';
import { parseFlags, str, bool, UsageError, type FlagSpec } from './args';
import { AxClient } from './client';

export const GET_USAGE = `usage: ax get apps|services|sockets|members [-o table|json] [--socket PATH]

Tables leave out the ax.* labels ax sets itself (ax.user, ax.node, ax.name); -o json has them.
Reading the table needs root, the daemon's user or its --api-group.
`;

const SPECS: FlagSpec[] = [
  { name: 'output', short: 'o', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

type Row = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const KINDS: Record<string, { method: string; field: string; columns: Array<[string, (r: Row) => string]> }> = {
  apps: {
    method: 'ListApps',
    field: 'apps',
    columns: [
      ['NAME', (r) => r.name || '-'],
      ['APPID', (r) => r.id],
      ['NODE', (r) => r.node],
      ['APPIP', (r) => r.vip],
      ['USER', (r) => r.user || String(r.uid ?? '-')],
      ['LABELS', (r) => formatLabels(r.labels ?? {})],
      ['PROCESSES', (r) => String(r.processes)],
      ['SERVICES', (r) => String(r.services)],
    ],
  },
  services: {
    method: 'ListServices',
    field: 'services',
    columns: [
      ['NAME', (r) => r.name || '-'],
      ['VIRTUAL', (r) => formatAddr({ ip: r.vip, port: r.vport })],
      ['HOST', (r) => formatAddr({ ip: r.host_ip, port: r.host_port })],
      ['PROTO', (r) => r.proto],
      ['APPID', (r) => r.app_id],
      ['NODE', (r) => r.node],
      ['LABELS', (r) => formatLabels(r.labels ?? {})],
    ],
  },
  sockets: {
    method: 'ListSockets',
    field: 'sockets',
    columns: [
      ['ID', (r) => String(r.id)],
      ['APPID', (r) => r.app_id],
      ['PID', (r) => String(r.pid)],
      ['STATE', (r) => r.state],
      ['FAMILY', (r) => r.family],
      ['VIRTUAL', (r) => r.virtual_addr],
      ['HOST', (r) => r.host_addr],
      ['NODE', (r) => r.node],
    ],
  },
  members: {
    method: 'ListMembers',
    field: 'members',
    columns: [
      ['NAME', (r) => r.name],
      ['ADDRESS', (r) => r.address],
      ['STATE', (r) => r.state],
      ['INCARNATION', (r) => String(r.incarnation)],
      ['SERVICES', (r) => String(r.services)],
    ],
  },
};
KINDS.app = KINDS.apps;
KINDS.service = KINDS.services;
KINDS.svc = KINDS.services;
KINDS.socket = KINDS.sockets;
KINDS.member = KINDS.members;
KINDS.nodes = KINDS.members;

export function table(rows: Row[], columns: Array<[string, (r: Row) => string]>): string {
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
    const res = await client.call(kind.method);
    const rows: Row[] = res[kind.field] ?? [];
    process.stdout.write(output === 'json' ? JSON.stringify(rows, null, 2) + '\n' : table(rows, kind.columns));
    return 0;
  } finally {
    client.close();
  }
}
