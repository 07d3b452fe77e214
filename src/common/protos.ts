// Loads the .proto files of proto/ for grpc-js. In the bundle (dist/ax.js) their
// text is embedded at build time; from source they are read from the repo.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protobuf from 'protobufjs';

declare const __AX_PROTOS__: Record<string, string> | undefined;

export function protoText(file: string): string {
  if (typeof __AX_PROTOS__ !== 'undefined' && __AX_PROTOS__[file]) return __AX_PROTOS__[file];
  return readFileSync(join(__dirname, '..', '..', 'proto', file), 'utf8');
}

const options: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

const loaded = new Map<string, grpc.GrpcObject>();

/** The grpc-js package of a .proto file, parsed once per process (clients are made again and again). */
export function loadProto(file: string): grpc.GrpcObject {
  let pkg = loaded.get(file);
  if (!pkg) {
    const root = protobuf.parse(protoText(file), { keepCase: true }).root;
    pkg = grpc.loadPackageDefinition(protoLoader.fromJSON(root.toJSON(), options));
    loaded.set(file, pkg);
  }
  return pkg;
}
