// The CLI's side of the gRPC API, and starting a daemon when none runs.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { loadProto } from '../common/protos';
import { defaultStateDir } from '../common/paths';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class DaemonUnreachable extends Error {}

export class AxClient {
  readonly raw: grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

  constructor(readonly socket: string) {
    const pkg = loadProto('ax.proto') as unknown as { ax: { v1: { Ax: grpc.ServiceClientConstructor } } };
    this.raw = new pkg.ax.v1.Ax(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    }) as grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  }

  call(method: string, req: Obj = {}, timeoutMs = 5000): Promise<Obj> {
    return new Promise((resolve, reject) => {
      this.raw[method](req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Obj) => {
        if (!err) return resolve(res);
        if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
          reject(new DaemonUnreachable(`cannot reach the ax daemon at ${this.socket}: ${err.details || err.message}`));
        } else reject(new Error(err.details || err.message));
      });
    });
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * Returns a client for a running daemon, starting one in the background (with
 * the embedded defaults, or the given socket) when none answers.
 */
export async function connectOrStart(socket: string, autostart: boolean, entry: string): Promise<AxClient> {
  const client = new AxClient(socket);
  try {
    await client.call('Status', {}, 1500);
    return client;
  } catch (e) {
    if (!(e instanceof DaemonUnreachable) || !autostart) {
      client.close();
      if (e instanceof DaemonUnreachable) {
        throw new DaemonUnreachable(`${e.message}\n  start one with: ax daemon --socket ${socket}`);
      }
      throw e;
    }
  }
  const stateDir = defaultStateDir();
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const logFile = join(stateDir, 'daemon.log');
  const out = openSync(logFile, 'a');
  const child = spawn(process.execPath, [entry, 'daemon', '--socket', socket, '--log-file', logFile], {
    detached: true,
    stdio: ['ignore', out, out],
    env: process.env,
  });
  closeSync(out);
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      // Another `ax run` may have won the race to start it.
      try {
        await client.call('Status', {}, 1000);
        return client;
      } catch {
        break;
      }
    }
    try {
      await client.call('Status', {}, 500);
      return client;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  client.close();
  throw new DaemonUnreachable(
    `no ax daemon answered at ${socket}, and the one started for you did not come up` +
      (exited !== null ? ` (it exited with status ${exited})` : '') +
      `.\n  see ${logFile}, or run one in the foreground: ax daemon --socket ${socket}`,
  );
}
