// Prometheus metrics (prom-client) on an opt-in HTTP listener (`ax daemon
// --metrics ADDR:PORT`, path /metrics, text exposition format 0.0.4). Values are
// read from the daemon when scraped; nothing is computed on the connect path.
// The metrics carry no app names or labels (bounded cardinality); who talked to
// whom is in `ax events` and `ax graph`, which need API rights.
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Logger } from '../common/log';
import type { Audit } from './audit';
import { OPS, VERDICTS } from './event';

/** What the metrics are read from (the daemon). */
export interface MetricsSources {
  audit: Audit;
  /** connects and binds answered with a socket or a DIRECT answer, since start */
  handoffs(): number;
  directHandoffs(): number;
  /** live hook sessions (one per hooked process) */
  sessions(): number;
  /** listening services (this node's and replicated ones) */
  services(): number;
  /** registered apps (this node's and replicated ones) */
  apps(): number;
}

/** A counter that mirrors a running total kept elsewhere (increased by the difference at each scrape). */
function mirrored(reg: Registry, name: string, help: string, read: () => number): Counter {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers: [reg],
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = Math.max(seen, now);
    },
  });
}

/** The registry with every ax metric (and Node's process metrics, prefixed ax_). */
export function axRegistry(src: MetricsSources): Registry {
  const reg = new Registry();
  collectDefaultMetrics({ register: reg, prefix: 'ax_' });
  const seen = new Map<string, number>();
  new Counter({
    name: 'ax_decisions_total',
    help: 'Access decisions recorded since the daemon started, by operation (connect, accept, publish, lookup) and verdict (allow, deny, revoke, publish-refused)',
    labelNames: ['op', 'verdict'],
    registers: [reg],
    collect() {
      // Every pair is present from the start (0), so rate() works from the first scrape.
      for (const op of OPS) for (const v of VERDICTS) this.inc({ op, verdict: v }, 0);
      for (const [k, n] of src.audit.decisionCounts()) {
        const [op, verdict] = k.split(' ');
        const d = n - (seen.get(k) ?? 0);
        if (d > 0) this.inc({ op, verdict }, d);
        seen.set(k, n);
      }
    },
  });
  const droppedSeen = { wrapped: 0, backlog: 0, writeError: 0 };
  new Counter({
    name: 'ax_audit_events_dropped_total',
    help: 'Audit events lost, by reason: ring-wrap (pushed out of the ring by newer ones, --events-max), backlog (write queue full), write-error (the database refused the write). Counted since the ring was created.',
    labelNames: ['reason'],
    registers: [reg],
    collect() {
      const d = src.audit.stats().dropped;
      const put = (reason: string, key: keyof typeof droppedSeen) => {
        this.inc({ reason }, Math.max(0, d[key] - droppedSeen[key]));
        droppedSeen[key] = Math.max(droppedSeen[key], d[key]);
      };
      put('ring-wrap', 'wrapped');
      put('backlog', 'backlog');
      put('write-error', 'writeError');
    },
  });
  mirrored(reg, 'ax_audit_events_recorded_total', 'Audit events recorded since the ring was created (the last sequence number)', () => src.audit.stats().recorded);
  new Gauge({ name: 'ax_audit_events_stored', help: 'Audit events the ring holds now', registers: [reg], collect() { this.set(src.audit.stats().stored); } });
  new Gauge({ name: 'ax_audit_events_capacity', help: 'Size of the audit ring (--events-max)', registers: [reg], collect() { this.set(src.audit.max); } });
  mirrored(reg, 'ax_handoffs_total', 'Connects and binds the daemon answered (a socket or a DIRECT answer) since it started', src.handoffs);
  mirrored(reg, 'ax_direct_handoffs_total', 'Of ax_handoffs_total, connects answered DIRECT (the app connects its own socket)', src.directHandoffs);
  new Gauge({ name: 'ax_hook_sessions', help: 'Live hook sessions (hooked processes)', registers: [reg], collect() { this.set(src.sessions()); } });
  new Gauge({ name: 'ax_services', help: 'Listening services in the table (this node and replicated)', registers: [reg], collect() { this.set(src.services()); } });
  new Gauge({ name: 'ax_apps', help: 'Registered apps in the table (this node and replicated)', registers: [reg], collect() { this.set(src.apps()); } });
  return reg;
}

/** "ADDR:PORT" ("127.0.0.1:9464", "[::1]:9464") → host and port. Throws an Error saying what is wrong. */
export function parseListenAddr(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|[A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not ADDR:PORT (e.g. 127.0.0.1:9464)`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`"${text}": port must be 1-65535`);
  return { host: m[1] ?? m[2], port };
}

/** The HTTP listener: GET /metrics; anything else 404. */
export class MetricsServer {
  private server: Server | null = null;
  readonly registry: Registry;

  constructor(
    src: MetricsSources,
    private readonly log: Logger,
  ) {
    this.registry = axRegistry(src);
  }

  /** Listens on host:port; rejects with the reason (address in use, not local...). */
  async listen(host: string, port: number): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('ax: only GET /metrics here\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
        (e: Error) => {
          this.log.warn(`metrics: ${e.message}`);
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`ax: ${e.message}\n`);
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`--metrics ${host}:${port}: ${e.message}`)));
      server.listen(port, host, () => resolve());
    });
    server.on('error', (e) => this.log.error(`metrics: ${e.message}`));
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
