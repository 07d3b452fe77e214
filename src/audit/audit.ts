// The audit recorder: a bounded ring of decision events in LevelDB (kept across
// daemon restarts), counters of what was dropped (never silently), live
// subscribers (`ax events --follow`) and the edges of the observed dependency
// graph (`ax graph`).
//
// record() is on the connect path: it only assigns a sequence number, bumps
// in-memory counters and queues the event; writes go to LevelDB in batches
// (one batch per flush interval or per BATCH events), together with the
// deletion of what fell out of the ring, the ring's bounds and the edges that
// changed.
//
// Each write stores the events it carries as one segment, one LevelDB value
// (one key per event cost 10-30 us per event in level's batch on the loaded
// 2-core test VM; a segment is one key per write, and nothing is ever
// rewritten). The ring shows the newest `max` events; a segment is deleted
// once all of it is older, so the database holds at most max + BATCH events.
//
// Keys (in the store's "audit" sublevel): "s/<first seq>-<last seq>" (16
// digits each) -> StoredEvent[], "g/<edge key>" -> Edge, "meta" -> Meta.
import { rateLimited, type Logger } from '../common/log';
import type { KeySpace, Op } from '../store/store';
import type { Labels } from '../policy/labels';
import { dstNode, srcNode, type AuditEvent, type AuditOp, type AuditVerdict, type StoredEvent } from './event';

/** Default ring size (--events-max). */
export const EVENTS_MAX_DEFAULT = 100_000;
/** Most edges kept in the graph aggregate; further new edges are counted in edgesDropped. */
export const EDGES_MAX = 200_000;
/** Most events per LevelDB batch: a batch's encoding runs on the event loop (measured ~7 us per event on
 *  the loaded 2-core test VM), so big backlogs are written in several batches with connects served between. */
const BATCH = 512;

/** One edge of the observed graph: decisions from `src` to `dst` with one verdict. */
export interface Edge {
  src: string;
  dst: string;
  verdict: AuditVerdict;
  op: AuditOp;
  count: number;
  /** first and last decision, ms since the epoch */
  first: number;
  last: number;
  /** labels of the source and (when known) of the destination, as last seen */
  srcLabels: Labels;
  dstLabels?: Labels;
  /** the destination is not an ax app (a real address) */
  external: boolean;
}

/** Why events were lost. Every one is counted and reported by `ax events` and /metrics. */
export interface Dropped {
  /** pushed out of the ring by newer events (the ring holds --events-max) */
  wrapped: number;
  /** never written: the write queue was full (LevelDB did not keep up) */
  backlog: number;
  /** never written: LevelDB refused the write */
  writeError: number;
}

/** The recorder's state, as `ax events` and /metrics report it. */
export interface AuditStats {
  /** events recorded since the ring was created (the last sequence number) */
  recorded: number;
  /** events the ring holds now */
  stored: number;
  /** the ring's size (--events-max) */
  capacity: number;
  dropped: Dropped;
  /** new edges not aggregated because the graph already had EDGES_MAX */
  edgesDropped: number;
}

interface Meta {
  /** oldest sequence number still in the ring, and the newest written */
  first: number;
  last: number;
  dropped: Dropped;
}

export interface AuditOptions {
  /** ring size, >= 1 */
  max: number;
  log: Logger;
  /** how long record() lets events gather before a write (ms). Default 50. */
  flushMs?: number;
  /** most events queued for writing; beyond, they are dropped (counted). Default max(max, 10 000). */
  backlogMax?: number;
}

/** A stored segment: the sequence numbers of its first and last event. */
interface Segment {
  first: number;
  last: number;
}
const segKey = (g: Segment) => `s/${String(g.first).padStart(16, '0')}-${String(g.last).padStart(16, '0')}`;

export class Audit {
  private first = 1;
  private last = 0;
  private written = 0;
  /** the stored segments, oldest first, from segHead on (those before it are deleted) */
  private segs: Segment[] = [];
  private segHead = 0;
  private readonly dropped: Dropped = { wrapped: 0, backlog: 0, writeError: 0 };
  /** sequence ranges [from, to] that were never written (backlog / write errors): not "wrapped" when they leave the ring */
  private holes: Array<[number, number]> = [];
  private pending: StoredEvent[] = [];
  private readonly edgeMap = new Map<string, Edge>();
  private readonly dirtyEdges = new Set<string>();
  private edgesDropped = 0;
  private readonly decisions = new Map<string, number>();
  private readonly listeners = new Set<(ev: StoredEvent) => void>();
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<boolean> | null = null;
  private closed = false;
  private readonly warn: (m: string) => void;
  private readonly flushMs: number;
  private readonly backlogMax: number;

  private constructor(
    private readonly kv: KeySpace,
    readonly max: number,
    private readonly log: Logger,
    opts: AuditOptions,
  ) {
    this.warn = rateLimited(log, 5);
    this.flushMs = opts.flushMs ?? 50;
    this.backlogMax = opts.backlogMax ?? Math.max(opts.max, 10_000);
  }

  /**
   * Opens the ring in `kv` (restoring its bounds, drop counters and edges). A ring
   * larger than `opts.max` (the daemon restarted with a smaller --events-max) is cut
   * down at the next write; what is cut counts as wrapped.
   */
  static async open(kv: KeySpace, opts: AuditOptions): Promise<Audit> {
    if (!(opts.max >= 1)) throw new Error(`audit ring size must be at least 1 (got ${opts.max})`);
    const a = new Audit(kv, opts.max, opts.log, opts);
    const meta = (await kv.get('meta')) as Meta | undefined;
    if (meta) {
      a.first = meta.first;
      a.last = meta.last;
      a.written = meta.last;
      Object.assign(a.dropped, meta.dropped);
    }
    for await (const [k] of kv.iterator({ gt: 's/', lt: 's/\xff', values: false })) {
      const m = /^s\/(\d+)-(\d+)$/.exec(k);
      if (m) a.segs.push({ first: Number(m[1]), last: Number(m[2]) });
    }
    for await (const [k, v] of kv.iterator({ gt: 'g/', lt: 'g/\xff' })) a.edgeMap.set(k.slice(2), v as Edge);
    return a;
  }

  /**
   * Records one decision. Cheap and synchronous: the write happens later, in a batch.
   * Returns the event's sequence number.
   */
  record(ev: AuditEvent): number {
    const seq = ++this.last;
    const se: StoredEvent = { seq, ...ev };
    const dk = `${ev.op} ${ev.verdict}`;
    this.decisions.set(dk, (this.decisions.get(dk) ?? 0) + 1);
    this.addEdge(se);
    if (this.closed || this.pending.length >= this.backlogMax) {
      this.dropped.backlog++;
      this.hole(seq, seq);
      this.warn(`audit: the event write queue is full (${this.backlogMax}); events are being dropped (counted in ax events)`);
    } else {
      this.pending.push(se);
    }
    for (const l of this.listeners) {
      try {
        l(se);
      } catch (e) {
        this.warn(`audit: a subscriber failed: ${(e as Error).message}`);
      }
    }
    this.schedule();
    return seq;
  }

  /** Calls `fn` with every event recorded from now on; returns the function that stops it. */
  subscribe(fn: (ev: StoredEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Decisions recorded since the daemon started, by "op verdict". */
  decisionCounts(): ReadonlyMap<string, number> {
    return this.decisions;
  }

  stats(): AuditStats {
    return {
      recorded: this.last,
      stored: Math.max(0, Math.min(this.max, this.last - this.first + 1) - this.holeCount(Math.max(this.first, this.last - this.max + 1), this.last)),
      capacity: this.max,
      dropped: { ...this.dropped, wrapped: this.dropped.wrapped + this.pendingWrap() },
      edgesDropped: this.edgesDropped,
    };
  }

  /**
   * Events in the ring, oldest first: those at or after `sinceMs` (0: all), the
   * newest `limit` of them (0: all). Waits for queued writes first. Everything in
   * memory at once: for large answers use read().
   */
  async query(sinceMs = 0, limit = 0): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    for await (const group of this.read(sinceMs, limit)) out.push(...group);
    return out;
  }

  /**
   * The same as query(), streamed in groups of at most `group` events, oldest first,
   * read from one LevelDB snapshot segment by segment (memory stays bounded by the group,
   * whatever --events-max is). Events are in time order as recorded, so "the newest
   * `limit`" starts at sequence number last - limit + 1 and `sinceMs` skips the older ones.
   */
  async *read(sinceMs = 0, limit = 0, group = 1000): AsyncGenerator<StoredEvent[]> {
    await this.flush();
    const from = Math.max(this.first, limit ? this.last - limit + 1 : 1);
    let out: StoredEvent[] = [];
    // The segment holding `from`: the last one that starts at or before it.
    let lo = this.segHead;
    let hi = this.segs.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.segs[mid].first <= from) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const gte = at >= 0 ? segKey(this.segs[at]) : 's/';
    for await (const [, v] of this.kv.iterator({ gte, lt: 's/\xff' })) {
      for (const ev of v as StoredEvent[]) {
        if (ev.seq < from || (sinceMs && ev.time < sinceMs)) continue;
        out.push(ev);
        if (out.length >= group) {
          yield out;
          out = [];
        }
      }
    }
    if (out.length > 0) yield out;
  }

  /**
   * The observed graph's edges: every decision since the ring was created (0), or
   * only those at or after `sinceMs` that the ring still holds.
   */
  async edges(sinceMs = 0): Promise<Edge[]> {
    if (!sinceMs) return [...this.edgeMap.values()];
    const m = new Map<string, Edge>();
    for (const ev of await this.query(sinceMs)) mergeEdge(m, ev);
    return [...m.values()];
  }

  /** Waits until everything recorded so far is written. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.writing || this.pending.length > 0 || this.dirtyEdges.size > 0 || this.pendingWrap() > 0) {
      if (!this.writing) this.writing = this.write();
      // A failed write is counted and logged; flush does not spin on a broken database.
      if (!(await this.writing)) break;
    }
  }

  /** Writes what is queued and stops accepting writes (later events are counted as backlog drops). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.listeners.clear();
  }

  private addEdge(ev: StoredEvent): void {
    const key = edgeKey(ev);
    if (!this.edgeMap.has(key) && this.edgeMap.size >= EDGES_MAX) {
      this.edgesDropped++;
      return;
    }
    mergeEdge(this.edgeMap, ev, key);
    this.dirtyEdges.add(key);
  }

  /** Events that have left the ring window but whose deletion is not written yet. */
  private pendingWrap(): number {
    const newFirst = Math.max(this.first, this.last - this.max + 1);
    return Math.max(0, newFirst - this.first - this.holeCount(this.first, newFirst - 1));
  }

  private hole(from: number, to: number): void {
    const h = this.holes[this.holes.length - 1];
    if (h && h[1] + 1 === from) h[1] = to;
    else this.holes.push([from, to]);
  }

  /** How many sequence numbers in [from, to] were never written. */
  private holeCount(from: number, to: number): number {
    let n = 0;
    for (const [a, b] of this.holes) {
      const lo = Math.max(a, from);
      const hi = Math.min(b, to);
      if (hi >= lo) n += hi - lo + 1;
    }
    return n;
  }

  private schedule(): void {
    if (this.writing) return;
    if (this.pending.length >= BATCH) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.writing = this.write();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.writing) this.writing = this.write();
    }, this.flushMs);
    this.timer.unref();
  }

  /** One batch: queued events (one new segment), segments that left the ring, changed edges, the ring's bounds. */
  private async write(): Promise<boolean> {
    const batch = this.pending.splice(0, BATCH);
    const newFirst = Math.max(this.first, this.last - this.max + 1);
    const wrapped = newFirst - this.first - this.holeCount(this.first, newFirst - 1);
    // Queued events already out of the ring are never written (they count as wrapped).
    const live = batch.length > 0 && batch[0].seq < newFirst ? batch.filter((e) => e.seq >= newFirst) : batch;
    const ops: Op[] = [];
    let seg: Segment | null = null;
    if (live.length > 0) {
      seg = { first: live[0].seq, last: live[live.length - 1].seq };
      ops.push({ type: 'put', key: segKey(seg), value: live });
    }
    let head = this.segHead;
    while (head < this.segs.length && this.segs[head].last < newFirst) ops.push({ type: 'del', key: segKey(this.segs[head++]) });
    const edges = [...this.dirtyEdges];
    this.dirtyEdges.clear();
    for (const k of edges) {
      const e = this.edgeMap.get(k);
      if (e) ops.push({ type: 'put', key: `g/${k}`, value: e });
    }
    const dropped = { ...this.dropped, wrapped: this.dropped.wrapped + wrapped };
    const upto = batch.length > 0 ? batch[batch.length - 1].seq : this.written;
    const meta: Meta = { first: newFirst, last: Math.max(this.written, upto), dropped };
    ops.push({ type: 'put', key: 'meta', value: meta });
    try {
      await this.kv.batch(ops);
      this.first = newFirst;
      this.segHead = head;
      if (seg) this.segs.push(seg);
      if (this.segHead > 1024 && this.segHead * 2 > this.segs.length) {
        this.segs = this.segs.slice(this.segHead);
        this.segHead = 0;
      }
      this.dropped.wrapped = dropped.wrapped;
      this.written = meta.last;
      this.holes = this.holes.filter(([, b]) => b >= newFirst);
      return true;
    } catch (e) {
      // The batch's events are lost (counted).
      this.dropped.writeError += batch.length;
      if (batch.length > 0) this.hole(batch[0].seq, batch[batch.length - 1].seq);
      for (const k of edges) this.dirtyEdges.add(k);
      this.warn(`audit: writing ${batch.length} events failed: ${(e as Error).message} (counted as dropped)`);
      this.log.debug(`audit write error: ${(e as Error).stack ?? ''}`);
      return false;
    } finally {
      this.writing = null;
      if (this.pending.length > 0 && !this.closed) this.schedule();
    }
  }
}

/** The aggregate key of an event's edge: source node, destination node, verdict (NUL-separated: names hold no NUL). */
function edgeKey(ev: AuditEvent): string {
  return `${srcNode(ev)}\u0000${dstNode(ev)}\u0000${ev.verdict}`;
}

/** Adds one event to an edge aggregate. */
function mergeEdge(m: Map<string, Edge>, ev: AuditEvent, key = edgeKey(ev)): void {
  const e = m.get(key);
  if (e) {
    e.count++;
    if (ev.time < e.first) e.first = ev.time;
    if (ev.time > e.last) e.last = ev.time;
    e.srcLabels = ev.src.labels;
    if (ev.dst.labels) e.dstLabels = ev.dst.labels;
    return;
  }
  m.set(key, {
    src: srcNode(ev),
    dst: dstNode(ev),
    verdict: ev.verdict,
    op: ev.op,
    count: 1,
    first: ev.time,
    last: ev.time,
    srcLabels: ev.src.labels,
    ...(ev.dst.labels ? { dstLabels: ev.dst.labels } : {}),
    external: !ev.dst.appId && !ev.dst.name,
  });
}
