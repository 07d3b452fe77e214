// The daemon's gRPC API (proto/ax.proto) on a unix socket.
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { AF_INET6, checkVirtualIp, formatAddr } from '../common/addr';
import { loadProto } from '../common/protos';
import { DEFAULT_LABELS, LabelError, parseLabels, type Labels } from '../policy/labels';
import type { App, ExposeRule, Sock } from '../table/table';
import type { Daemon } from './daemon';
import { VERSION } from './daemon';

type Obj = Record<string, unknown>;

export function axService(): grpc.ServiceDefinition {
  const pkg = loadProto('ax.proto') as unknown as { ax: { v1: { Ax: grpc.ServiceClientConstructor } } };
  return pkg.ax.v1.Ax.service;
}

function fail(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }) as grpc.ServiceError;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Validates a RunRequest; returns the normalized pieces or throws a message. */
export function checkRunRequest(req: Obj): { name: string; ip: string; labels: Labels; expose: ExposeRule[] } {
  const name = String(req.name ?? '');
  const ip = String(req.ip ?? '');
  if (name && !NAME_RE.test(name)) {
    throw new Error(`name "${name}": use 1-63 lowercase letters, digits and '-' (a DNS label), not starting or ending with '-'`);
  }
  if (ip) {
    const bad = checkVirtualIp(ip);
    if (bad) throw new Error(`--ip: ${bad}`);
  }
  const raw = (req.labels ?? {}) as Record<string, string>;
  let labels: Labels;
  if (Object.keys(raw).length === 0) labels = { ...DEFAULT_LABELS };
  else {
    labels = parseLabels(
      Object.entries(raw)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    );
  }
  const expose: ExposeRule[] = [];
  for (const e of (req.expose ?? []) as Obj[]) {
    const port = Number(e.port);
    const hostPort = Number(e.host_port);
    if (!(port >= 1 && port <= 65535) || !(hostPort >= 1 && hostPort <= 65535)) {
      throw new Error(`--expose ${port}:${hostPort}: ports must be 1-65535`);
    }
    if (expose.some((x) => x.port === port)) throw new Error(`--expose: port ${port} is exposed twice`);
    expose.push({ port, hostIp: String(e.host_ip ?? ''), hostPort });
  }
  return { name, ip, labels, expose };
}

export class ApiServer {
  private server: grpc.Server | null = null;
  private path = '';

  constructor(private readonly d: Daemon) {}

  async listen(path: string): Promise<void> {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    rmSync(path, { force: true });
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 1 << 20 });
    server.addService(axService(), this.handlers() as unknown as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    chmodSync(path, 0o666);
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    await new Promise<void>((r) => {
      const t = setTimeout(() => {
        s.forceShutdown();
        r();
      }, 500);
      s.tryShutdown(() => {
        clearTimeout(t);
        r();
      });
    });
    rmSync(this.path, { force: true });
  }

  private handlers() {
    const d = this.d;
    const unary =
      (fn: (req: Obj) => Obj) =>
      (call: grpc.ServerUnaryCall<Obj, Obj>, cb: grpc.sendUnaryData<Obj>) => {
        try {
          cb(null, fn(call.request));
        } catch (e) {
          cb(fail(grpc.status.INTERNAL, (e as Error).message));
        }
      };
    return {
      Status: unary(() => ({
        node_name: d.config.nodeName,
        version: VERSION,
        pid: process.pid,
        state_dir: d.config.stateDir,
        hook_socket: d.config.hookSocket,
        host_ip: d.config.hostIp,
        ports: `${d.config.ports.first}-${d.config.ports.last}`,
        vip_range: d.table.vipRangeText,
        handoffs: d.hooks.handoffs,
        sessions: d.hooks.sessions().length,
        apps: d.table.listApps().length,
        services: d.table.services().length,
        uptime_seconds: (Date.now() - d.startedAt) / 1000,
        handoff: d.hooks.handoffMode,
        direct_handoffs: d.hooks.directHandoffs,
      })),
      RunApp: (call: grpc.ServerWritableStream<Obj, Obj>) => this.runApp(call),
      ListApps: unary(() => ({
        apps: d.table.listApps().map((a) => ({
          id: a.id,
          name: a.name,
          node: a.node,
          vip: a.vip,
          labels: a.labels,
          run_pid: a.runPid,
          processes: d.hooks.processCount(a.id),
          services: d.table.services().filter((s) => s.appId === a.id).length,
          expose: a.expose.map((e) => ({ port: e.port, host_ip: e.hostIp, host_port: e.hostPort })),
        })),
      })),
      ListServices: unary(() => ({ services: d.table.services().map(serviceOut) })),
      ListSockets: unary(() => ({
        sockets: d.table.listSocks().map((s) => ({
          id: s.id,
          app_id: s.appId,
          pid: s.pid,
          state: s.state,
          virtual_addr: formatAddr({ ip: s.vip, port: s.vport }),
          host_addr: formatAddr({ ip: s.hostIp, port: s.hostPort }),
          node: s.node,
          family: s.family === AF_INET6 ? 'inet6' : 'inet',
        })),
      })),
      ListMembers: unary(() => ({
        members: d.cluster
          ? d.cluster.members().map((m) => ({ name: m.name, address: m.address, state: m.state, incarnation: m.incarnation, services: d.table.services().filter((s) => s.node === m.name).length }))
          : [{ name: d.config.nodeName, address: d.config.hostIp, state: 'alive', incarnation: 0, services: d.table.localServices().length }],
      })),
      Shutdown: unary(() => {
        setImmediate(() => void d.stop().then(() => process.exit(0)));
        return {};
      }),
    };
  }

  private runApp(call: grpc.ServerWritableStream<Obj, Obj>): void {
    const d = this.d;
    const req = call.request;
    let app: App | undefined;
    try {
      if (req.app_id) {
        app = d.table.getApp(String(req.app_id));
        if (!app || app.token !== req.token) throw new Error(`app ${String(req.app_id)} is not known to this daemon any more`);
      } else {
        const spec = checkRunRequest(req);
        const conflict = d.table.checkApp(spec.name, spec.ip);
        if (conflict) throw new Error(conflict);
        app = {
          id: randomBytes(4).toString('hex'),
          name: spec.name,
          vip: d.table.vipFor(spec.name, spec.ip),
          labels: spec.labels,
          expose: spec.expose,
          token: randomBytes(12).toString('hex'),
          runPid: Number(req.run_pid) || 0,
          node: d.config.nodeName,
          createdAt: Date.now(),
        };
        d.table.addApp(app);
        d.log.debug(`app ${app.id} ${app.name || '-'} ${app.vip} started: ${String(req.command ?? '')}`);
      }
    } catch (e) {
      const code = e instanceof LabelError ? grpc.status.INVALID_ARGUMENT : grpc.status.INVALID_ARGUMENT;
      call.destroy(fail(code, (e as Error).message));
      return;
    }
    const id = app.id;
    d.attach(id);
    call.write({ app_id: app.id, token: app.token, vip: app.vip, hook_socket: d.config.hookSocket, name: app.name });
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      d.detach(id);
    };
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
  }
}

function serviceOut(s: Sock): Obj {
  return {
    name: s.name,
    vip: s.vip,
    vport: s.vport,
    host_ip: s.hostIp,
    host_port: s.hostPort,
    proto: 'tcp',
    app_id: s.appId,
    node: s.node,
    labels: s.labels,
    pid: s.pid,
  };
}
