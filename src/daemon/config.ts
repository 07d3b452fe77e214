// The daemon's one Config, with its defaults. Every field can be set by an
// `ax daemon` flag of the same name (see src/cli/daemon.ts).
import { hostname } from 'node:os';
import { checkVirtualIp, parseCidr, type Cidr } from '../common/addr';
import type { LabelPolicy } from '../policy/claims';
import type { Posture } from '../policy/decide';
import type { Level } from '../common/log';
import { defaultApiSocket, defaultStateDir, hookSocketFor } from '../common/paths';
import type { LbMode } from '../table/table';
import type { ClusterOptions } from './cluster';
import type { HandoffMode } from './hooks';
import { parsePortRange, type PortRange } from '../table/ports';
import type { HostPort } from '../dns/upstream';
import { EVENTS_MAX_DEFAULT } from '../audit/audit';

export interface DaemonConfig {
  /** LevelDB state directory. Default $XDG_STATE_HOME/ax, /var/lib/ax for root. */
  stateDir: string;
  /** gRPC API unix socket. Default $XDG_RUNTIME_DIR/ax/ax.sock, /run/ax/ax.sock for root. */
  socket: string;
  /** Hook unix socket. Default: beside the API socket, "ax-hook.sock". */
  hookSocket: string;
  /** Host ports handed out for virtual listeners. Default 40000-60000. */
  ports: PortRange;
  /** Virtual ranges (--vip-range, repeatable). The first is where apps started without --ip
   *  get their VIP; an --ip must lie in one of them. Default 10.240.0.0/16. Connects to
   *  unregistered addresses in them fail with ENETUNREACH, never leave the host. */
  vipRanges: Cidr[];
  /** Loopback addresses, one per local app (127.x.y.z), bound as the source of its
   *  connections so servers on this host learn the client's VIP from the peer address.
   *  Default 127.77.0.0/16. */
  sourceRange: Cidr;
  /** Real IP the daemon binds listeners on (the address other hosts reach). Default 127.0.0.1. */
  hostIp: string;
  /** This node's name in the cluster. Default: the host name. */
  nodeName: string;
  /** Load balancing over a pool: round-robin (default) or random, per connection. */
  lb: LbMode;
  /** Drop saved state at start. */
  clean: boolean;
  logLevel: Level;
  /** Log file; default stderr. */
  logFile?: string;
  /** Period (ms) of the safety-net sweep: sockets the kernel no longer has, apps that ended. Reaping is
   *  event-driven otherwise (CLOSE hints, ended sessions, a bind that finds its port taken). Default 1000. */
  orphanCheckMs: number;
  /** How connected sockets reach apps: 'auto' (default) lets processes in the daemon's own
   *  network namespace connect their own sockets to the address the daemon picks (policy and
   *  load balancing are still decided here); 'fd' always creates and passes the socket. */
  handoff: HandoffMode;
  /** Gossip with other daemons (absent: this host only). */
  cluster?: ClusterOptions;
  /** --api-group: members may read the daemon's status and tables (root and the daemon's user always may). */
  apiGroup?: { name: string; gid: number };
  /** --label-policy FILE: which labels each user may claim (absent: any but the reserved ax.*). */
  labelPolicy?: LabelPolicy;
  /** An API connection that has made no call this long after connecting is closed (ms). Default 5 s. */
  apiHandshakeMs: number;
  /** An API connection with no call in progress for this long is closed (ms). Default 2 min. */
  apiIdleMs: number;
  /** Open API connections per uid (root and the daemon's user are not limited). Default 256. */
  apiMaxConnsPerUid: number;
  /** --dns-listen: where the DNS responder answers (UDP and TCP, one port); null = off.
   *  Default 127.0.0.1:0, a free port on loopback (shown by `ax status`). */
  dnsListen: HostPort | null;
  /** --dns-upstream: resolvers asked for names that are not ax's. 'resolv.conf' (default): the
   *  nameserver lines of /etc/resolv.conf; 'none': such names are answered REFUSED. */
  dnsUpstream: HostPort[] | 'resolv.conf' | 'none';
  /** --dns-domain: zones answered besides .ax (NAME.DOMAIN), lowercase, no trailing dot. Default none. */
  dnsDomains: string[];
  /** --dns-tcp-idle: a DNS TCP connection that sends nothing for this long is closed (ms). Default 10 s. */
  dnsTcpIdleMs: number;
  /** --events-max: how many audit events (access decisions) the ring in the state database keeps;
   *  older ones are dropped and counted (ax events says how many). Default 100 000. */
  eventsMax: number;
  /** --metrics ADDR:PORT: serve Prometheus metrics on http://ADDR:PORT/metrics (absent: off). */
  metrics?: { host: string; port: number };
  /** --policy-default: the verdict of a connect no policy rule matches. 'shared-label' (default:
   *  client and service share one non-ax.* key=value, ax's rule before policies, so existing
   *  setups keep working), 'allow-all' or 'deny-all'. */
  policyDefault: Posture;
  /** --policy-deny-errno: what a denied connect returns, ECONNREFUSED (111, default) or EACCES (13). */
  policyDenyErrno: number;
  /** --policy-unknown-peers: the accept verdict for peers that are no ax app (PolicyEngine.accept;
   *  also whether such an asker sees ax names, HookDispatcher.visibleTo). Default 'allow'.
   *  Not yet enforced at accept(): see README Policy limits. */
  policyUnknownPeers: 'allow' | 'deny';
  /** Set by `ax run` when it starts the daemon by itself: that `ax run`'s pid. */
  autostartedBy?: number;
}

export function defaultConfig(env = process.env): DaemonConfig {
  const socket = defaultApiSocket(env);
  return {
    stateDir: defaultStateDir(env),
    socket,
    hookSocket: hookSocketFor(socket),
    ports: parsePortRange('40000-60000'),
    vipRanges: [parseCidr('10.240.0.0/16')],
    sourceRange: parseCidr('127.77.0.0/16'),
    hostIp: '127.0.0.1',
    nodeName: hostname(),
    lb: 'round-robin',
    clean: false,
    logLevel: 'info',
    orphanCheckMs: 1000,
    handoff: 'auto',
    apiHandshakeMs: 5000,
    apiIdleMs: 120_000,
    apiMaxConnsPerUid: 256,
    dnsListen: { ip: '127.0.0.1', port: 0 },
    dnsUpstream: 'resolv.conf',
    dnsDomains: [],
    dnsTcpIdleMs: 10_000,
    eventsMax: EVENTS_MAX_DEFAULT,
    policyDefault: 'shared-label',
    policyDenyErrno: 111,
    policyUnknownPeers: 'allow',
  };
}

/** Checks what the flag parser cannot check alone; throws an Error with the reason. */
export function validateConfig(c: DaemonConfig): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(c.nodeName)) {
    throw new Error(`node name "${c.nodeName}" must be 1-63 letters, digits, '.', '_' or '-'`);
  }
  if (c.hostIp !== '127.0.0.1' && checkVirtualIp(c.hostIp) !== null && !/^127\./.test(c.hostIp)) {
    throw new Error(`host IP "${c.hostIp}" is not a usable IPv4 address`);
  }
}
