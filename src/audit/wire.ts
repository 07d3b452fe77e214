// Audit records as gRPC messages (proto/ax.proto: AuditEvent, AuditStats,
// GraphReply) and back, for the API server and the CLI.
import type { AuditEvent as AuditEventMsg, AuditEvent__Output } from '../gen/ax/v1/AuditEvent';
import type { AuditStats as AuditStatsMsg, AuditStats__Output } from '../gen/ax/v1/AuditStats';
import type { GraphReply, GraphReply__Output } from '../gen/ax/v1/GraphReply';
import type { AuditStats } from './audit';
import type { AuditOp, AuditVerdict, StoredEvent } from './event';
import type { Graph } from './graph';

export function eventToWire(e: StoredEvent): AuditEventMsg {
  return {
    seq: e.seq,
    time_ms: e.time,
    verdict: e.verdict,
    op: e.op,
    src: { app_id: e.src.appId, name: e.src.name, labels: e.src.labels, node: e.src.node ?? '' },
    dst: { app_id: e.dst.appId ?? '', name: e.dst.name, labels: e.dst.labels ?? {}, addr: e.dst.addr },
    rule: e.rule,
    detail: e.detail ?? '',
  };
}

export function eventFromWire(m: AuditEvent__Output): StoredEvent {
  return {
    seq: Number(m.seq),
    time: Number(m.time_ms),
    verdict: m.verdict as AuditVerdict,
    op: m.op as AuditOp,
    src: { appId: m.src?.app_id ?? '', name: m.src?.name ?? '', labels: m.src?.labels ?? {}, node: m.src?.node ?? '' },
    dst: { appId: m.dst?.app_id || undefined, name: m.dst?.name ?? '', labels: m.dst?.labels ?? {}, addr: m.dst?.addr ?? '' },
    rule: m.rule,
    ...(m.detail ? { detail: m.detail } : {}),
  };
}

export function statsToWire(s: AuditStats): AuditStatsMsg {
  return {
    recorded: s.recorded,
    stored: s.stored,
    capacity: s.capacity,
    dropped_wrapped: s.dropped.wrapped,
    dropped_backlog: s.dropped.backlog,
    dropped_write_error: s.dropped.writeError,
    edges_dropped: s.edgesDropped,
  };
}

export function statsFromWire(m: AuditStats__Output | null): AuditStats {
  return {
    recorded: Number(m?.recorded ?? 0),
    stored: Number(m?.stored ?? 0),
    capacity: Number(m?.capacity ?? 0),
    dropped: { wrapped: Number(m?.dropped_wrapped ?? 0), backlog: Number(m?.dropped_backlog ?? 0), writeError: Number(m?.dropped_write_error ?? 0) },
    edgesDropped: Number(m?.edges_dropped ?? 0),
  };
}

export function graphToWire(g: Graph, s: AuditStats): GraphReply {
  return {
    nodes: g.nodes.map((n) => ({ id: n.id, labels: n.labels, external: n.external })),
    edges: g.edges.map((e) => ({ src: e.src, dst: e.dst, verdict: e.verdict, op: e.op, count: e.count, last_ms: e.last })),
    stats: statsToWire(s),
  };
}

export function graphFromWire(m: GraphReply__Output): Graph {
  return {
    nodes: m.nodes.map((n) => ({ id: n.id, labels: n.labels ?? {}, external: n.external })),
    edges: m.edges.map((e) => ({ src: e.src, dst: e.dst, verdict: e.verdict as AuditVerdict, op: e.op as AuditOp, count: Number(e.count), last: Number(e.last_ms) })),
  };
}

/** One line saying what the ring lost, or '' when it lost nothing. */
export function droppedNote(s: AuditStats): string {
  const d = s.dropped;
  const parts: string[] = [];
  if (d.wrapped) parts.push(`${d.wrapped} older events were dropped because the ring (--events-max ${s.capacity}) wrapped`);
  if (d.backlog) parts.push(`${d.backlog} events were never stored (the write queue was full)`);
  if (d.writeError) parts.push(`${d.writeError} events were never stored (the state database refused the write; see ax logs)`);
  if (s.edgesDropped) parts.push(`${s.edgesDropped} decisions were left out of the graph (it holds at most 200000 edges)`);
  return parts.join('; ');
}
