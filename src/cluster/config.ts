// ClusterConfig: the one documented configuration of the cluster layer.
//
// Every timing knob is in milliseconds. Defaults are tuned for a LAN / data-centre
// (RTT well under 50 ms) and were measured with bench/gossip-sim.ts at N = 100 and
// N = 1 000 (see docs/cluster.md). Sizes are in bytes.

import { z } from 'zod';

export interface ClusterConfig {
  /** Unique node name (the owner id of every entry this node writes). 1..64 bytes UTF-8. */
  name: string;
  /** Address other nodes reach this node at, "host:port" (UDP probes and gRPC use the same port). */
  advertiseAddr: string;

  // ---- failure detection (SWIM + Lifeguard) -------------------------------------------
  /** Period of the probe round: one peer is probed per period (scaled by local health). */
  probeIntervalMs: number;
  /** Time to wait for a direct ack before asking `indirectChecks` peers (scaled by local health). */
  probeTimeoutMs: number;
  /** Number of peers asked to probe indirectly after a missed ack. */
  indirectChecks: number;
  /** Also probe over the reliable stream (TCP/gRPC) when the direct ack is missing (memberlist's TCP fallback). */
  streamFallbackProbe: boolean;
  /**
   * Suspicion timeout lower bound = suspicionMult * log10(N+1) * probeIntervalMs, reached once
   * `suspicionConfirmations` independent peers have confirmed the suspicion.
   */
  suspicionMult: number;
  /** Upper bound of the suspicion timeout (no confirmations) = suspicionMaxMult * lower bound. */
  suspicionMaxMult: number;
  /** Independent confirmations that shrink the suspicion timeout to its lower bound (Lifeguard K). */
  suspicionConfirmations: number;
  /**
   * Expected number of peers that probe a node as soon as they hear it is suspect (each peer does
   * so with probability suspicionVerifiers / N). Speeds up the confirmations of real failures.
   */
  suspicionVerifiers: number;
  /** Lifeguard local health: max multiplier applied to probe interval/timeout when this node is slow. */
  awarenessMaxMultiplier: number;

  // ---- gray-failure handling ("calm membership", issue 11) ------------------------------
  /**
   * true (default): the rules of docs/cluster.md "Gray failures": accusations need a witness, "dead"
   * needs `deadAccusers` distinct accusers, flapping members are damped, removals and readmissions are
   * batched and a removed member returns only after a probation vouched for by its observers.
   * false: the plain SWIM + Lifeguard rules of ax 0.1 (kept for comparison in bench/gossip-sim.ts).
   */
  calmMembership: boolean;
  /** Distinct accusers (each with a witness) needed before a suspect is declared dead; capped at N-2, at least 1. */
  deadAccusers: number;
  /**
   * Witnesses a failed probe needs before it accuses its target: indirect-probe helpers that answered
   * with a nack (they reached us and could not reach the target either), capped at the helpers asked,
   * at least 1. Two, so that neither the accuser's own sick link nor one sick helper can accuse.
   */
  probeWitnesses: number;
  /** Refuted suspicions (each with >= 2 distinct accusers) within flapWindowMs after which refutations are damped. */
  flapThreshold: number;
  /** Window of the flap count, in probe intervals. */
  flapWindowProbes: number;
  /**
   * Guard against uniform loss: if more than max(3, flapGuardFraction * N) members are flapping at once
   * the problem is the network, not those members, and nobody is damped.
   */
  flapGuardFraction: number;
  /** Observers per member (Rapid's K): the members that probe a removed member during its probation. */
  observers: number;
  /** Distinct observers that must vouch for a removed member before it is readmitted (capped at the observers available). */
  probationVouches: number;
  /**
   * Probation of a removed member, in probe intervals: it must answer every probation probe for this long.
   * Doubles with each removal within probationMemoryProbes, capped at probationMaxProbes.
   */
  probationProbes: number;
  probationMaxProbes: number;
  probationMemoryProbes: number;
  /** Period of the probation probes an observer sends to a removed member, in probe intervals. */
  probationProbeEvery: number;
  /**
   * Observer alerts (Rapid's H-of-K, Suresh et al. ATC'18 sec. 4.1-4.2): once a member is suspected by a
   * witnessed accuser, each of its `observers` watches it with one probe round (3 pings) per probe
   * interval. An observer that saw `alertFailures` failed rounds among its last `alertRounds` rounds
   * gossips an alert; the member is removed once `alertQuorum` (H) of its observers alerted (capped at the
   * observers available) within `alertTtlProbes` probe intervals. Alerts cannot be refuted.
   */
  alertRounds: number;
  alertFailures: number;
  alertQuorum: number;
  alertTtlProbes: number;
  /** View changes are batched: applied once no new one arrived for viewSettleMs (bounded by viewMaxDelayMs). */
  viewSettleMs: number;
  /** ...and while another member is suspected by a witnessed accuser, at most this long after the first change. */
  viewMaxDelayMs: number;
  /**
   * ...and while another member has between 1 and H-1 observer alerts (Rapid's L..H band, sec. 4.2), at
   * most this long: members whose alerts reach H seconds apart are removed in one cut.
   */
  viewMaxAlertDelayMs: number;

  // ---- dissemination -------------------------------------------------------------------
  /** Gossip tick: piggyback queue is flushed to `gossipNodes` random peers every tick (only if non-empty). */
  gossipIntervalMs: number;
  gossipNodes: number;
  /**
   * Eager push ("gossip on receipt", the eager half of Plumtree, Leitão, Pereira, Rodrigues, SRDS 2007):
   * a broadcast that is new to this node (own write, first receipt of an entry or of membership news) is
   * sent at once, in one packet, to this many random alive peers instead of waiting for the next gossip
   * tick; those sends count toward its retransmit limit, so the bytes per update stay the same. 0 = off
   * (every broadcast waits for the tick, memberlist's behaviour).
   */
  eagerPushNodes: number;
  /**
   * Lazy push: after an entry was sent its retransmit limit, its owner's head is announced on this node's
   * probes and acks for this long (a node that missed every copy pulls it; see ClusterNode). 0 = off.
   */
  lazyPushMs: number;
  /** Keep gossiping to a dead node for this long so it can learn it was declared dead and refute. */
  gossipToTheDeadMs: number;
  /** Each broadcast is sent retransmitMult * ceil(log10(N+1)) times. */
  retransmitMult: number;
  /** Max messages in the piggyback queue; beyond it the most-transmitted are dropped (anti-entropy repairs). */
  maxBroadcastQueue: number;
  /** Max packets per gossip target per tick when the queue is backed up (adaptive batching). */
  gossipMaxPacketsPerTarget: number;

  // ---- anti-entropy --------------------------------------------------------------------
  /** Base push-pull period with one random peer; scaled up with cluster size (see pushPullScaleThreshold). */
  pushPullIntervalMs: number;
  /** Above this many nodes the push-pull period grows with log2(N / threshold) + 1. */
  pushPullScaleThreshold: number;
  /** Timeout for one request/response over the stream transport (join, sync, pull, fallback probe). */
  streamTimeoutMs: number;

  // ---- replicated table ----------------------------------------------------------------
  /** A dead/left owner's entries are hidden at once and physically removed after this window. */
  reapAfterMs: number;
  /** Tombstones of live owners are garbage collected after this long (a later stale peer gets a snapshot). */
  tombstoneTtlMs: number;
  /** Dead/left member records (with their owner tombstone) are forgotten after this long. */
  deadMemberRetainMs: number;
  /** Max out-of-order entries buffered per owner while a gap is being pulled. */
  maxPendingPerOwner: number;

  // ---- limits --------------------------------------------------------------------------
  /** Max UDP payload, including the transport's authentication overhead. */
  maxPacketSize: number;
  /** Max size of one stream (gRPC) message. */
  maxStreamMessageSize: number;
  /** Max key length (UTF-8 bytes) and value length of a replicated entry. */
  maxKeyBytes: number;
  maxValueBytes: number;

  /** Random source (tests/simulation pass a seeded one). Defaults to Math.random. */
  random?: () => number;
}

export type ClusterConfigInput = Partial<ClusterConfig> & Pick<ClusterConfig, 'name' | 'advertiseAddr'>;

export const DEFAULT_CONFIG: Omit<ClusterConfig, 'name' | 'advertiseAddr' | 'random'> = {
  probeIntervalMs: 500,
  probeTimeoutMs: 250,
  indirectChecks: 3,
  streamFallbackProbe: true,
  suspicionMult: 2,
  suspicionMaxMult: 6,
  suspicionConfirmations: 3,
  suspicionVerifiers: 3,
  awarenessMaxMultiplier: 8,

  calmMembership: true,
  deadAccusers: 3,
  probeWitnesses: 2,
  flapThreshold: 1,
  flapWindowProbes: 240,
  flapGuardFraction: 0.05,
  observers: 5,
  probationVouches: 2,
  probationProbes: 60,
  probationMaxProbes: 320,
  probationMemoryProbes: 1200,
  probationProbeEvery: 1,
  alertRounds: 20,
  alertFailures: 3,
  alertQuorum: 3,
  alertTtlProbes: 120,
  viewSettleMs: 700,
  viewMaxDelayMs: 3000,
  viewMaxAlertDelayMs: 10_000,

  gossipIntervalMs: 200,
  gossipNodes: 3,
  eagerPushNodes: 3,
  lazyPushMs: 1500,
  gossipToTheDeadMs: 15_000,
  retransmitMult: 4,
  maxBroadcastQueue: 8192,
  gossipMaxPacketsPerTarget: 4,

  pushPullIntervalMs: 10_000,
  pushPullScaleThreshold: 32,
  streamTimeoutMs: 5_000,

  reapAfterMs: 5 * 60_000,
  tombstoneTtlMs: 60 * 60_000,
  deadMemberRetainMs: 60 * 60_000,
  maxPendingPerOwner: 256,

  maxPacketSize: 1400,
  maxStreamMessageSize: 4 * 1024 * 1024,
  maxKeyBytes: 256,
  maxValueBytes: 4096,
};

export class ConfigError extends Error {
  constructor(readonly field: string, message: string) {
    super(`cluster config: ${field}: ${message}`);
    this.name = 'ConfigError';
  }
}

const ADDR_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Split "host:port" (or "[v6]:port"), or say what is wrong with it. */
function splitAddr(addr: string): { host: string; port: number } | string {
  const m = ADDR_RE.exec(addr);
  if (!m) return `expected "host:port", got ${JSON.stringify(addr)}`;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return `port out of range in ${JSON.stringify(addr)}`;
  let host = m[1]!;
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port };
}

/** Split "host:port" (or "[v6]:port"); throws ConfigError naming `field`. */
export function parseAddr(addr: string, field = 'address'): { host: string; port: number } {
  const r = splitAddr(addr);
  if (typeof r === 'string') throw new ConfigError(field, r);
  return r;
}

/** Merge user input with defaults and validate. Throws ConfigError with the offending field. */
export function resolveConfig(input: ClusterConfigInput): ClusterConfig {
  const cfg: ClusterConfig = { ...DEFAULT_CONFIG, ...stripUndefined(input) } as ClusterConfig;
  validateConfig(cfg);
  return cfg;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

// ---- validation (zod, like the rest of ax) -----------------------------------------------
// Every field has a rule (the `satisfies` below fails to compile when a ClusterConfig field is
// added without one); rules that relate fields are in the superRefine. The first failing rule,
// in the order of this schema, becomes the ConfigError.

/** A finite number > 0 (or >= 0); the message quotes the value. */
function num(min: 'positive' | 'nonNegative') {
  const rule = min === 'positive' ? 'a positive number' : 'a number >= 0';
  const s = z.number({ errorMap: (_issue, ctx) => ({ message: `must be ${rule}, got ${String(ctx.data)}` }) }).finite();
  return min === 'positive' ? s.positive() : s.nonnegative();
}
const positive = num('positive');
const nonNegative = num('nonNegative');

const CONFIG_SHAPE = {
  name: z
    .string({ errorMap: () => ({ message: 'must be a non-empty string' }) })
    .min(1)
    .refine((n) => Buffer.byteLength(n) <= 64, { message: 'must be at most 64 bytes' }),
  advertiseAddr: z.string({ errorMap: () => ({ message: 'must be "host:port"' }) }).superRefine((a, ctx) => {
    const r = splitAddr(a);
    if (typeof r === 'string') ctx.addIssue({ code: z.ZodIssueCode.custom, message: r });
  }),

  probeIntervalMs: positive,
  probeTimeoutMs: positive,
  suspicionMult: positive,
  suspicionMaxMult: positive.gte(1, { message: 'must be >= 1' }),
  gossipIntervalMs: positive,
  retransmitMult: positive,
  pushPullIntervalMs: positive,
  pushPullScaleThreshold: positive,
  streamTimeoutMs: positive,
  reapAfterMs: positive,
  tombstoneTtlMs: positive,
  deadMemberRetainMs: positive,
  maxPacketSize: positive.gte(512, { message: 'must be within 512..65000' }).lte(65000, { message: 'must be within 512..65000' }),
  maxStreamMessageSize: positive,
  maxKeyBytes: positive,
  maxValueBytes: positive,
  awarenessMaxMultiplier: positive,
  maxBroadcastQueue: positive,
  gossipMaxPacketsPerTarget: positive,
  suspicionConfirmations: positive,
  deadAccusers: positive,
  probeWitnesses: positive,
  flapThreshold: positive,
  flapWindowProbes: positive,
  observers: positive,
  probationVouches: positive,
  probationProbes: positive,
  probationMaxProbes: positive,
  probationMemoryProbes: positive,
  probationProbeEvery: positive,
  alertRounds: positive,
  alertFailures: positive,
  alertQuorum: positive,
  alertTtlProbes: positive,

  flapGuardFraction: nonNegative,
  viewSettleMs: nonNegative,
  viewMaxDelayMs: nonNegative,
  viewMaxAlertDelayMs: nonNegative,
  indirectChecks: nonNegative,
  gossipNodes: nonNegative,
  eagerPushNodes: nonNegative,
  lazyPushMs: nonNegative,
  gossipToTheDeadMs: nonNegative,
  suspicionVerifiers: nonNegative,
  maxPendingPerOwner: nonNegative,

  calmMembership: z.boolean({ errorMap: () => ({ message: 'must be true or false' }) }),
  streamFallbackProbe: z.boolean({ errorMap: () => ({ message: 'must be true or false' }) }),
  random: z
    .custom<() => number>((v) => typeof v === 'function', { message: 'must be a function returning [0,1)' })
    .optional(),
} satisfies Record<keyof ClusterConfig, z.ZodTypeAny>;

/** Rules between fields: [field named in the error, holds?, message]. */
type CrossRule = [keyof ClusterConfig, (c: ClusterConfig) => boolean, string];
const CROSS_RULES: CrossRule[] = [
  ['probeTimeoutMs', (c) => c.probeTimeoutMs < c.probeIntervalMs, 'must be smaller than probeIntervalMs'],
  ['maxValueBytes', (c) => c.maxValueBytes + c.maxKeyBytes + 200 <= c.maxStreamMessageSize, 'entries must fit in maxStreamMessageSize'],
  ['tombstoneTtlMs', (c) => c.tombstoneTtlMs >= c.reapAfterMs, 'must be >= reapAfterMs (otherwise a partitioned peer could resurrect deletes)'],
  ['viewMaxDelayMs', (c) => c.viewMaxDelayMs >= c.viewSettleMs, 'must be >= viewSettleMs'],
  ['viewMaxAlertDelayMs', (c) => c.viewMaxAlertDelayMs >= c.viewSettleMs, 'must be >= viewSettleMs'],
  [
    'probationProbeEvery',
    (c) => 0.9 * c.probationProbeEvery * c.probeIntervalMs > 1.5 * c.probeTimeoutMs,
    'a probation round (1.5 * probeTimeoutMs) must fit in 0.9 * probationProbeEvery * probeIntervalMs',
  ],
  ['probationMaxProbes', (c) => c.probationMaxProbes >= c.probationProbes, 'must be >= probationProbes'],
  ['alertFailures', (c) => c.alertFailures <= c.alertRounds, 'must be <= alertRounds'],
];

const CONFIG_SCHEMA = z.object(CONFIG_SHAPE).superRefine((c, ctx) => {
  for (const [field, holds, message] of CROSS_RULES) {
    if (!holds(c as ClusterConfig)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [field], message });
  }
});

/** Validates a complete config. Throws ConfigError naming the first offending field. */
export function validateConfig(cfg: ClusterConfig): void {
  const r = CONFIG_SCHEMA.safeParse(cfg);
  if (r.success) return;
  const issue = r.error.issues[0]!;
  throw new ConfigError(issue.path.length > 0 ? String(issue.path[0]) : 'config', issue.message);
}
