// `ax graph`: the dependency map actually observed, as Graphviz DOT or SVG.
import { spawn } from 'node:child_process';
import { defaultApiSocket } from '../common/paths';
import { parseSelector, selectGraph, toDot, type Term } from '../audit/graph';
import { droppedNote, graphFromWire, statsFromWire } from '../audit/wire';
import { bool, parseFlags, str, UsageError, type FlagSpec } from './args';
import { AxClient } from './client';
import { parseSince, stdoutDrained } from './events';

export const GRAPH_USAGE = `usage: ax graph [--selector k=v,...] [--since DUR|TIME] [--group-by LABEL] [-o dot|svg] [--socket PATH]

Draws the dependency map ax has observed: apps as nodes, their decisions as edges with
counts (allowed: solid; denied: red, dashed; publish refused: purple). Without --since
it covers every decision since the state database was created; with it, those the
event ring still holds.

flags:
  -l, --selector SEL  only apps whose labels match and their direct neighbours. SEL is
                      comma-separated terms that must all hold: k=v, k!=v, k (has k), !k
  --since DUR|TIME    only decisions of the last DUR (30s, 5m, 2h, 1d) or since an RFC 3339 time
  --group-by LABEL    draw apps with the same value of LABEL in one box (e.g. tenant)
  -o dot|svg          dot (default): Graphviz text; svg: rendered with Graphviz's dot
                      (Debian/Ubuntu: apt-get install graphviz)

  ax graph -o svg > map.svg      ax graph | dot -Tpng > map.png

Reading the graph needs root, the daemon's user or its --api-group.
`;

const SPECS: FlagSpec[] = [
  { name: 'selector', short: 'l', kind: 'string' },
  { name: 'since', kind: 'string' },
  { name: 'group-by', kind: 'string' },
  { name: 'output', short: 'o', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

/** Thrown when `dot` cannot be run; the message says what to install. */
export class NoGraphviz extends Error {}

/**
 * Renders DOT text to SVG with Graphviz (`dot -Tsvg`, found on PATH). Rejects with
 * NoGraphviz when dot is not installed, or an Error with dot's own message.
 */
export function renderSvg(dotText: string, dotBin = 'dot'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(dotBin, ['-Tsvg'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(new NoGraphviz(`-o svg needs Graphviz's dot, which is not installed (Debian/Ubuntu: apt-get install graphviz); -o dot prints the graph as text`));
      else reject(new Error(`cannot run ${dotBin}: ${e.message}`));
    });
    child.stdin.on('error', () => {}); // dot exiting early is reported by its exit status
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString());
      else if (code !== null) reject(new Error(`${dotBin} -Tsvg failed (exit ${code}): ${err.trim().slice(0, 500)}`));
    });
    child.stdin.end(dotText);
  });
}

export async function graphMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) {
    process.stdout.write(GRAPH_USAGE);
    return 0;
  }
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const output = str(p, 'output') ?? 'dot';
  if (output !== 'dot' && output !== 'svg') throw new UsageError(`-o ${output}: choose dot or svg`);
  let sel: Term[] = [];
  if (str(p, 'selector') !== undefined) {
    try {
      sel = parseSelector(str(p, 'selector')!);
    } catch (e) {
      throw new UsageError(`--selector: ${(e as Error).message}`);
    }
  }
  const groupBy = str(p, 'group-by');
  if (groupBy !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/.test(groupBy)) throw new UsageError(`--group-by "${groupBy}" is not a label key`);
  const since = str(p, 'since') !== undefined ? parseSince(str(p, 'since')!) : 0;
  const client = new AxClient(str(p, 'socket') ?? defaultApiSocket());
  try {
    const reply = await client.call('Graph', { since_ms: since });
    const g = selectGraph(graphFromWire(reply), sel);
    const note = droppedNote(statsFromWire(reply.stats));
    if (note) process.stderr.write(`ax graph: ${note}\n`);
    const text = toDot(g, { groupBy, title: `ax: observed dependencies (${g.nodes.length} apps, ${g.edges.length} edges)` });
    if (output === 'dot') process.stdout.write(text);
    else process.stdout.write(await renderSvg(text));
    await stdoutDrained();
    return 0;
  } finally {
    client.close();
  }
}
