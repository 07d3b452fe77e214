// Public surface of the cluster layer.
export { ClusterNode, JoinError } from './node';
export type { EntryView, MemberView, ChangeEventView, MemberEventView, ClusterState, NodeStats, MemberState, Version } from './node';
export { resolveConfig, validateConfig, DEFAULT_CONFIG, ConfigError, type ClusterConfig, type ClusterConfigInput } from './config';
export { systemClock, nullLogger, consoleLogger, combineTransports, type Clock, type Logger, type LogFields, type Transport } from './transport';
export { UdpTransport, type UdpTransportOptions } from './udp';
export { GrpcTransport, type GrpcTransportOptions, type TlsPaths } from './grpc';
export { ReplicatedTable } from './table';
export { CodecError } from './codec';

import { UdpTransport } from './udp';
import { GrpcTransport, type TlsPaths } from './grpc';
import { combineTransports, type Logger, type Transport } from './transport';
import type { KeyInput } from './auth';

/** The production transport: UDP datagrams + gRPC streams on the same host:port, authenticated by the cluster key. */
export function createNetworkTransport(opts: {
  bindAddr: string; key: KeyInput | KeyInput[]; tls?: TlsPaths; maxPacketSize?: number; maxMessageSize?: number; logger?: Logger;
}): Transport & { udp: UdpTransport; grpc: GrpcTransport } {
  const udp = new UdpTransport({ bindAddr: opts.bindAddr, key: opts.key, ...(opts.maxPacketSize ? { maxPacketSize: opts.maxPacketSize } : {}), ...(opts.logger ? { logger: opts.logger } : {}) });
  const grpc = new GrpcTransport({ bindAddr: opts.bindAddr, key: opts.key, ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.maxMessageSize ? { maxMessageSize: opts.maxMessageSize } : {}), ...(opts.logger ? { logger: opts.logger } : {}) });
  return Object.assign(combineTransports(udp, grpc), { udp, grpc });
}
