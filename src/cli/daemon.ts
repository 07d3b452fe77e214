// `ax daemon`: runs the daemon in the foreground.
import { POSTURES, type Posture } from '../policy/decide';
import { cidrOverlap, parseCidr } from '../common/addr';
import { loadLabelPolicy } from '../policy/claims';
import { resolveGroup } from '../daemon/peer';
import type { Level } from '../common/log';
import { hookSocketFor } from '../common/paths';
import { defaultConfig, validateConfig, type DaemonConfig } from '../daemon/config';
import { Daemon } from '../daemon/daemon';
import { parseListenAddr } from '../audit/metrics';
import { parsePortRange } from '../table/ports';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { parsePort } from '../table/ports';
import { normalizeDomain } from '../dns/names';
import { parseHostPort } from '../dns/upstream';
import { bool, list, parseDuration, parseFlags, str, UsageError, type FlagSpec, type Parsed } from './args';

export const DAEMON_USAGE = `usage: ax daemon [flags]

Runs the ax daemon in the foreground. \`ax run\` starts one by itself when none runs.

flags:
  --state-dir DIR     LevelDB state (default $XDG_STATE_HOME/ax, /var/lib/ax for root)
  --socket PATH       gRPC API socket (default $XDG_RUNTIME_DIR/ax/ax.sock, /run/ax/ax.sock for root)
  --hook-socket PATH  hook socket (default: beside --socket, ax-hook.sock)
  --ports A-B         host port pool for virtual listeners (default 40000-60000)
  --vip-range CIDR    virtual range (default 10.240.0.0/16); repeatable. Apps without --ip get a VIP
                      from the first; an --ip must lie in one of them (a real address never does)
  --source-range CIDR loopback addresses, one per app, that carry a client's identity to
                      servers on this host (default 127.77.0.0/16; must lie in 127.0.0.0/8)
  --host-ip IP        real IP listeners are bound on (default 127.0.0.1)
  --node-name NAME    this node's name (default: host name)
  --lb MODE           load balancing over a pool: round-robin (default) or random
  --clean             drop saved state; otherwise apps and services are restored
  --log-level LEVEL   debug, info (default), warn, error
  --log-file FILE     log here instead of stderr
  --handoff MODE      auto (default): apps in the daemon's network namespace connect their own
                      sockets to the backend the daemon picks; fd: always pass connected sockets

DNS (the daemon answers ax names to programs with their own resolver; see README):
  --dns-listen IP:PORT  UDP + TCP address of the DNS responder (default 127.0.0.1:0: a free port on
                      loopback, shown by ax status); [IPv6]:PORT; off: no responder
  --dns-upstream IP[:PORT],..  resolvers for other names (repeatable; default: the nameserver lines
                      of /etc/resolv.conf); none: other names are refused
  --dns-domain DOMAIN answer NAME.DOMAIN too, besides NAME and NAME.ax (repeatable)
  --dns-tcp-idle D    close DNS TCP connections that send nothing for D (default 10s)

who may do what (the API knows each caller's uid from the kernel, SO_PEERCRED):
  --api-group GROUP   members may read status and tables (root and the daemon's user always may)
  --label-policy FILE JSON: which labels each user may claim, e.g.
                      {"default": ["zone=default"], "users": {"alice": ["team=*"]}, "groups": {"ops": ["*"]}}
                      (default: any label; ax.* labels are reserved for ax in every case)
  --api-handshake-timeout D  close API connections that make no call within D (default 5s)
  --api-idle-timeout D       close API connections with no call in progress for D (default 2m)
  --api-max-conns N   open API connections per user (default 256; root and the daemon's user: no limit)

audit and metrics:
  --events-max N      audit events (access decisions) kept in the state database (default 100000);
                      when the ring wraps the oldest go, and ax events says how many
  --metrics ADDR:PORT serve Prometheus metrics on http://ADDR:PORT/metrics (default: off).
                      No authentication: bind it to an address only your scraper reaches

policy (README "Policy"; rules: ax policy add|rm|ls|apply):
  --policy-default P  the verdict when no rule matches a connect: shared-label (default: client and
                      service share one key=value label, as before policies), allow-all or deny-all
  --policy-deny-errno E   what a denied connect returns: ECONNREFUSED (default) or EACCES
  --policy-unknown-peers V  accept verdict for peers that are no ax app when no from_cidr rule
                      decides: allow (default) or deny (enforced at the server's accept(); see README)

  ax daemon stop [--socket PATH]   stops the daemon (root or the daemon's user); also: ax stop

cluster (gossip with the daemons of other hosts):
  --advertise IP      this host's address other hosts reach; listeners are bound on it (unless --host-ip)
  --join IP[:PORT],.. seeds: any member(s) of the cluster (repeatable)
  --gossip-port N     UDP + TCP port for gossip and anti-entropy (default 7946)
  --cluster-key KEY   shared key (>= 16 bytes) authenticating peers; also --cluster-key-file FILE
                      or $AX_CLUSTER_KEY. Required with --advertise/--join.
  --tls-cert F --tls-key F --tls-ca F   TLS with certificates between daemons (optional)
  --probe-interval D  failure detector probe period (default 500ms); failures are detected in ~5 probes
  --sync-interval D   anti-entropy period (default 10s); also how often a node retries members it
                      believes dead, which is what merges the two sides after a partition heals
`;

const SPECS: FlagSpec[] = [
  { name: 'state-dir', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'hook-socket', kind: 'string' },
  { name: 'ports', kind: 'string' },
  { name: 'vip-range', kind: 'list' },
  { name: 'source-range', kind: 'string' },
  { name: 'host-ip', kind: 'string' },
  { name: 'node-name', kind: 'string' },
  { name: 'lb', kind: 'string' },
  { name: 'clean', kind: 'bool' },
  { name: 'log-level', kind: 'string' },
  { name: 'log-file', kind: 'string' },
  { name: 'handoff', kind: 'string' },
  { name: 'advertise', kind: 'string' },
  { name: 'join', kind: 'list' },
  { name: 'gossip-port', kind: 'string' },
  { name: 'cluster-key', kind: 'string' },
  { name: 'cluster-key-file', kind: 'string' },
  { name: 'tls-cert', kind: 'string' },
  { name: 'tls-key', kind: 'string' },
  { name: 'tls-ca', kind: 'string' },
  { name: 'probe-interval', kind: 'string' },
  { name: 'sync-interval', kind: 'string' },
  { name: 'api-group', kind: 'string' },
  { name: 'label-policy', kind: 'string' },
  { name: 'policy-default', kind: 'string' },
  { name: 'policy-deny-errno', kind: 'string' },
  { name: 'policy-unknown-peers', kind: 'string' },
  { name: 'api-handshake-timeout', kind: 'string' },
  { name: 'api-idle-timeout', kind: 'string' },
  { name: 'api-max-conns', kind: 'string' },
  { name: 'dns-listen', kind: 'string' },
  { name: 'dns-upstream', kind: 'list' },
  { name: 'dns-domain', kind: 'list' },
  { name: 'dns-tcp-idle', kind: 'string' },
  { name: 'events-max', kind: 'string' },
  { name: 'metrics', kind: 'string' },
  // set by `ax run` when it starts a daemon by itself (its own pid), shown by ax status
  { name: 'autostarted-by', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

function clusterFromArgs(p: Parsed, c: DaemonConfig): void {
  const v = (n: string) => str(p, n);
  const join = list(p, 'join').flatMap((j) => j.split(',')).map((j) => j.trim()).filter(Boolean);
  const advertise = v('advertise');
  const wanted = advertise !== undefined || join.length > 0 || v('cluster-key') !== undefined || v('cluster-key-file') !== undefined;
  if (!wanted) {
    for (const f of ['gossip-port', 'tls-cert', 'tls-key', 'tls-ca', 'probe-interval', 'sync-interval']) {
      if (v(f) !== undefined) throw new UsageError(`--${f} needs --advertise (clustering is off)`);
    }
    return;
  }
  if (!advertise || !isIPv4(advertise) || advertise.startsWith('0.')) {
    throw new UsageError(`--advertise: clustering needs this host's IPv4 address, e.g. --advertise 10.9.0.1${advertise ? ` (got "${advertise}")` : ''}`);
  }
  for (const j of join) {
    const [ip, port] = j.split(':');
    if (!isIPv4(ip) || (port !== undefined && !/^\d{1,5}$/.test(port))) throw new UsageError(`--join: "${j}" is not IP or IP:PORT`);
  }
  let key = v('cluster-key') ?? process.env.AX_CLUSTER_KEY;
  if (v('cluster-key-file')) {
    try {
      key = readFileSync(v('cluster-key-file')!, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`--cluster-key-file: cannot read ${v('cluster-key-file')}: ${(e as Error).message}`);
    }
  }
  if (!key) throw new UsageError('clustering needs a shared key: --cluster-key KEY, --cluster-key-file FILE or $AX_CLUSTER_KEY');
  if (Buffer.byteLength(key) < 16) throw new UsageError('--cluster-key: the key must be at least 16 bytes');
  const tlsFlags = ['tls-cert', 'tls-key', 'tls-ca'].filter((f) => v(f) !== undefined);
  if (tlsFlags.length > 0 && tlsFlags.length < 3) throw new UsageError('TLS needs all of --tls-cert, --tls-key and --tls-ca');
  const gossipPort = v('gossip-port') ? parsePort(v('gossip-port')!, '--gossip-port') : 7946;
  const probe = v('probe-interval') ? parseDuration(v('probe-interval')!, '--probe-interval') : undefined;
  if (probe !== undefined && (probe < 50 || probe > 60_000)) throw new UsageError('--probe-interval must be between 50ms and 60s');
  const sync = v('sync-interval') ? parseDuration(v('sync-interval')!, '--sync-interval') : undefined;
  if (sync !== undefined && (sync < 500 || sync > 600_000)) throw new UsageError('--sync-interval must be between 500ms and 10m');
  const timing = {
    ...(probe !== undefined ? { probeIntervalMs: probe, probeTimeoutMs: Math.max(25, Math.floor(probe / 2)) } : {}),
    ...(sync !== undefined ? { pushPullIntervalMs: sync } : {}),
  };
  c.cluster = {
    advertise,
    gossipPort,
    join,
    keys: [key],
    ...(tlsFlags.length === 3 ? { tls: { cert: v('tls-cert')!, key: v('tls-key')!, ca: v('tls-ca')! } } : {}),
    ...(Object.keys(timing).length > 0 ? { timing } : {}),
  };
  if (v('host-ip') === undefined) c.hostIp = advertise;
}

function dnsFromArgs(p: Parsed, c: DaemonConfig): void {
  const listen = str(p, 'dns-listen');
  if (listen !== undefined) {
    if (listen === 'off') c.dnsListen = null;
    else {
      try {
        c.dnsListen = parseHostPort(listen, -1);
      } catch (e) {
        throw new UsageError(`--dns-listen: ${(e as Error).message} (or off)`);
      }
      if (c.dnsListen.port < 0) throw new UsageError(`--dns-listen "${listen}": give a port, e.g. 127.0.0.1:5353 (0: any free port)`);
    }
  }
  const ups = list(p, 'dns-upstream').flatMap((u) => u.split(',')).map((u) => u.trim()).filter(Boolean);
  if (ups.includes('none')) {
    if (ups.length > 1) throw new UsageError('--dns-upstream none cannot be combined with resolvers');
    c.dnsUpstream = 'none';
  } else if (ups.length > 0) {
    c.dnsUpstream = ups.map((u) => {
      try {
        const hp = parseHostPort(u, 53);
        if (hp.port === 0) throw new Error(`"${u}": port 0`);
        return hp;
      } catch (e) {
        throw new UsageError(`--dns-upstream: ${(e as Error).message}`);
      }
    });
  }
  const domains = list(p, 'dns-domain').flatMap((d) => d.split(',')).map((d) => d.trim()).filter(Boolean);
  c.dnsDomains = domains.map((d) => {
    try {
      return normalizeDomain(d);
    } catch (e) {
      throw new UsageError(`--dns-domain: ${(e as Error).message}`);
    }
  });
  const idle = str(p, 'dns-tcp-idle');
  if (idle !== undefined) {
    c.dnsTcpIdleMs = parseDuration(idle, '--dns-tcp-idle');
    if (c.dnsTcpIdleMs < 100 || c.dnsTcpIdleMs > 600_000) throw new UsageError('--dns-tcp-idle must be between 100ms and 10m');
  }
  if (c.dnsListen === null && (ups.length > 0 || domains.length > 0 || idle !== undefined)) {
    throw new UsageError('--dns-upstream, --dns-domain and --dns-tcp-idle need the DNS responder (--dns-listen is off)');
  }
}

/** Parses `ax daemon` flags into a DaemonConfig; null for --help. Throws UsageError naming the flag. */
export function daemonConfigFromArgs(argv: string[]): DaemonConfig | null {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) return null;
  if (p.rest.length > 0) throw new UsageError(`unexpected argument "${p.rest[0]}"`);
  const c = defaultConfig();
  const wrap = <T>(flag: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw new UsageError(`--${flag}: ${(e as Error).message}`);
    }
  };
  const v = (n: string) => str(p, n);
  if (v('state-dir')) c.stateDir = v('state-dir')!;
  if (v('socket')) {
    c.socket = v('socket')!;
    c.hookSocket = hookSocketFor(c.socket);
  }
  if (v('hook-socket')) c.hookSocket = v('hook-socket')!;
  if (v('ports')) c.ports = wrap('ports', () => parsePortRange(v('ports')!));
  if (v('source-range')) {
    c.sourceRange = wrap('source-range', () => parseCidr(v('source-range')!));
    if (c.sourceRange.base >>> 24 !== 127) throw new UsageError(`--source-range ${v('source-range')}: must lie in 127.0.0.0/8 (loopback)`);
  }
  const ranges = list(p, 'vip-range');
  if (ranges.length > 0) {
    c.vipRanges = ranges.map((r) => wrap('vip-range', () => parseCidr(r)));
    for (let i = 0; i < c.vipRanges.length; i++) {
      for (let j = i + 1; j < c.vipRanges.length; j++) {
        if (cidrOverlap(c.vipRanges[i], c.vipRanges[j])) throw new UsageError(`--vip-range: ${ranges[i]} and ${ranges[j]} overlap`);
      }
    }
  }
  if (v('api-group')) {
    const g = v('api-group')!;
    c.apiGroup = { name: g, gid: wrap('api-group', () => resolveGroup(g)) };
  }
  if (v('label-policy')) c.labelPolicy = wrap('label-policy', () => loadLabelPolicy(v('label-policy')!));
  if (v('policy-default')) {
    const pd = v('policy-default')!;
    if (!(POSTURES as string[]).includes(pd)) throw new UsageError(`--policy-default: "${pd}" is not ${POSTURES.join(', ')}`);
    c.policyDefault = pd as Posture;
  }
  if (v('policy-deny-errno')) {
    const e = v('policy-deny-errno')!.toUpperCase();
    if (e !== 'ECONNREFUSED' && e !== 'EACCES') throw new UsageError(`--policy-deny-errno: "${v('policy-deny-errno')}" is not ECONNREFUSED or EACCES`);
    c.policyDenyErrno = e === 'EACCES' ? 13 : 111;
  }
  if (v('policy-unknown-peers')) {
    const u = v('policy-unknown-peers')!;
    if (u !== 'allow' && u !== 'deny') throw new UsageError(`--policy-unknown-peers: "${u}" is not allow or deny`);
    c.policyUnknownPeers = u;
  }
  if (v('api-handshake-timeout')) {
    c.apiHandshakeMs = parseDuration(v('api-handshake-timeout')!, '--api-handshake-timeout');
    if (c.apiHandshakeMs < 100 || c.apiHandshakeMs > 600_000) throw new UsageError('--api-handshake-timeout must be between 100ms and 10m');
  }
  if (v('api-idle-timeout')) {
    c.apiIdleMs = parseDuration(v('api-idle-timeout')!, '--api-idle-timeout');
    if (c.apiIdleMs < 100 || c.apiIdleMs > 86_400_000) throw new UsageError('--api-idle-timeout must be between 100ms and 1440m');
  }
  if (v('api-max-conns')) {
    const n = v('api-max-conns')!;
    if (!/^\d{1,6}$/.test(n) || Number(n) < 1) throw new UsageError(`--api-max-conns "${n}" is not a positive number`);
    c.apiMaxConnsPerUid = Number(n);
  }
  if (v('events-max')) {
    const n = v('events-max')!;
    if (!/^\d{1,9}$/.test(n) || Number(n) < 1 || Number(n) > 100_000_000) throw new UsageError(`--events-max "${n}" is not a number from 1 to 100000000`);
    c.eventsMax = Number(n);
  }
  if (v('metrics')) c.metrics = wrap('metrics', () => parseListenAddr(v('metrics')!));
  if (v('autostarted-by')) {
    const n = v('autostarted-by')!;
    if (!/^\d{1,10}$/.test(n)) throw new UsageError(`--autostarted-by "${n}" is not a pid`);
    c.autostartedBy = Number(n);
  }
  if (v('host-ip')) c.hostIp = v('host-ip')!;
  if (v('node-name')) c.nodeName = v('node-name')!;
  if (v('lb')) {
    const lb = v('lb')!;
    if (lb !== 'round-robin' && lb !== 'random') throw new UsageError(`--lb: "${lb}" is not round-robin or random`);
    c.lb = lb;
  }
  c.clean = bool(p, 'clean');
  if (v('log-level')) {
    const l = v('log-level')!;
    if (!['debug', 'info', 'warn', 'error'].includes(l)) throw new UsageError(`--log-level: "${l}" is not debug, info, warn or error`);
    c.logLevel = l as Level;
  }
  if (v('log-file')) c.logFile = v('log-file');
  if (v('handoff')) {
    const h = v('handoff')!;
    if (h !== 'auto' && h !== 'fd') throw new UsageError(`--handoff: "${h}" is not auto or fd`);
    c.handoff = h;
  }
  dnsFromArgs(p, c);
  clusterFromArgs(p, c);
  wrap('node-name', () => validateConfig(c));
  return c;
}

export async function daemonMain(argv: string[]): Promise<number> {
  const config = daemonConfigFromArgs(argv);
  if (!config) {
    process.stdout.write(DAEMON_USAGE);
    return 0;
  }
  const d = new Daemon(config);
  try {
    await d.start();
  } catch (e) {
    process.stderr.write(`ax daemon: ${(e as Error).message}\n`);
    await d.stop().catch(() => {});
    return 1;
  }
  const stop = () => d.stopAndExit(0);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise<number>(() => {}); // runs until stopped
}
