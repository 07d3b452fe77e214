// The observed dependency map: apps (and real destinations) as nodes, the
// decisions between them as edges with counts, drawn as Graphviz DOT
// (https://graphviz.org/doc/info/lang.html). Allowed edges are solid, denied
// ones red and dashed. For large maps (hundreds of apps) the drawing runs left
// to right, merges parallel edge lines (concentrate=true) and can group apps in
// boxes by one label (--group-by).
import type { Labels } from '../policy/labels';
import type { Edge } from './audit';
import type { AuditOp, AuditVerdict } from './event';

export interface GraphNode {
  /** the app's name (or app id), or the real address of a destination outside ax */
  id: string;
  labels: Labels;
  external: boolean;
}

export interface GraphEdge {
  src: string;
  dst: string;
  verdict: AuditVerdict;
  op: AuditOp;
  count: number;
  /** last decision, ms since the epoch */
  last: number;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/** Nodes and edges from the recorder's edge aggregate (node labels: as last seen). */
export function graphOf(edges: Edge[]): Graph {
  const nodes = new Map<string, GraphNode>();
  const node = (id: string, labels: Labels | undefined, external: boolean) => {
    const n = nodes.get(id);
    if (!n) nodes.set(id, { id, labels: labels ?? {}, external });
    else if (labels && Object.keys(n.labels).length === 0) n.labels = labels;
  };
  for (const e of edges) {
    node(e.src, e.srcLabels, false);
    node(e.dst, e.dstLabels, e.external);
  }
  return {
    nodes: [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    edges: edges.map((e) => ({ src: e.src, dst: e.dst, verdict: e.verdict, op: e.op, count: e.count, last: e.last })),
  };
}

/** One term of a label selector. */
export type Term = { key: string; op: '=' | '!='; value: string } | { key: string; op: 'exists' | '!exists' };

const KEY_RE = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const VALUE_RE = /^[A-Za-z0-9._-]{0,63}$/;

/**
 * Parses a label selector, Kubernetes style: "k=v,k2!=v2,k3,!k4" (equality,
 * inequality, existence, absence; all terms must hold). Throws an Error naming
 * the bad term.
 */
export function parseSelector(text: string): Term[] {
  const out: Term[] = [];
  text.split(',').forEach((raw, i) => {
    const item = raw.trim();
    const where = `selector term ${i + 1} ("${raw}")`;
    if (item === '') throw new Error(`${where}: empty`);
    const m = /^(!?)([^=!]+)(?:(!=|==|=)(.*))?$/.exec(item);
    if (!m) throw new Error(`${where}: expected key=value, key!=value, key or !key`);
    const [, not, key, op, value] = m;
    if (!KEY_RE.test(key.trim())) throw new Error(`${where}: "${key}" is not a label key`);
    if (op === undefined) {
      out.push({ key: key.trim(), op: not ? '!exists' : 'exists' });
      return;
    }
    if (not) throw new Error(`${where}: "!" goes only before a bare key (!key)`);
    if (!VALUE_RE.test(value.trim())) throw new Error(`${where}: "${value}" is not a label value`);
    out.push({ key: key.trim(), op: op === '!=' ? '!=' : '=', value: value.trim() });
  });
  return out;
}

/** Whether `labels` satisfy every term. */
export function matches(sel: Term[], labels: Labels): boolean {
  return sel.every((t) => {
    const has = Object.prototype.hasOwnProperty.call(labels, t.key);
    switch (t.op) {
      case 'exists':
        return has;
      case '!exists':
        return !has;
      case '=':
        return has && labels[t.key] === t.value;
      case '!=':
        return !has || labels[t.key] !== t.value;
    }
  });
}

/** The part of `g` around the nodes `sel` matches: their edges (in and out) and the nodes at the other ends. */
export function selectGraph(g: Graph, sel: Term[]): Graph {
  if (sel.length === 0) return g;
  const hit = new Set(g.nodes.filter((n) => matches(sel, n.labels)).map((n) => n.id));
  const edges = g.edges.filter((e) => hit.has(e.src) || hit.has(e.dst));
  const keep = new Set(hit);
  for (const e of edges) {
    keep.add(e.src);
    keep.add(e.dst);
  }
  return { nodes: g.nodes.filter((n) => keep.has(n.id)), edges };
}

/** A DOT double-quoted string. */
function q(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

const EDGE_STYLE: Record<AuditVerdict, string> = {
  allow: 'color="#2e7d32"',
  deny: 'color="#d32f2f", fontcolor="#d32f2f", style=dashed',
  revoke: 'color="#ef6c00", fontcolor="#ef6c00", style=dotted',
  'publish-refused': 'color="#6a1b9a", fontcolor="#6a1b9a", style=dashed',
};

export interface DotOptions {
  /** group nodes in boxes (DOT clusters) by this label's value */
  groupBy?: string;
  /** the graph's title (shown at the top) */
  title?: string;
}

/**
 * The graph as DOT text. Nodes: boxes named by app name (tooltip: labels);
 * destinations outside ax: ellipses. Edges: the count as label ("deny 3" for
 * other verdicts than allow), styled per verdict (EDGE_STYLE).
 */
export function toDot(g: Graph, opts: DotOptions = {}): string {
  const lines: string[] = ['digraph ax {'];
  lines.push('  graph [rankdir=LR, concentrate=true, fontname="Helvetica", fontsize=11, nodesep=0.15, ranksep=1.2' + (opts.title ? `, label=${q(opts.title)}, labelloc=t` : '') + '];');
  lines.push('  node [shape=box, style="rounded", fontname="Helvetica", fontsize=10, height=0.3];');
  lines.push('  edge [fontname="Helvetica", fontsize=9, arrowsize=0.6];');
  const nodeLine = (n: GraphNode, indent: string) => {
    const tip = Object.keys(n.labels)
      .sort()
      .map((k) => `${k}=${n.labels[k]}`)
      .join('\n');
    const attrs = [`tooltip=${q(tip || n.id)}`];
    if (n.external) attrs.push('shape=ellipse', 'style=dashed');
    return `${indent}${q(n.id)} [${attrs.join(', ')}];`;
  };
  const groups = new Map<string, GraphNode[]>();
  for (const n of g.nodes) {
    const v = opts.groupBy ? n.labels[opts.groupBy] : undefined;
    if (v === undefined) {
      lines.push(nodeLine(n, '  '));
      continue;
    }
    const list = groups.get(v) ?? [];
    list.push(n);
    groups.set(v, list);
  }
  let i = 0;
  for (const [v, list] of [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    lines.push(`  subgraph cluster_${i++} {`);
    lines.push(`    label=${q(`${opts.groupBy}=${v}`)}; style="rounded,dashed"; color="#9e9e9e";`);
    for (const n of list) lines.push(nodeLine(n, '    '));
    lines.push('  }');
  }
  for (const e of g.edges) {
    const label = e.verdict === 'allow' ? String(e.count) : `${e.verdict} ${e.count}`;
    lines.push(`  ${q(e.src)} -> ${q(e.dst)} [label=${q(label)}, ${EDGE_STYLE[e.verdict]}];`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
