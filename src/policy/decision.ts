// The one shape every policy decision has. The decision layer (src/policy/decide.ts)
// builds a Decision for each publish, connect, accept and lookup it judges and hands
// it to every onDecision() subscriber (the audit layer: event ring, metrics, graph).
import type { Labels } from './labels';

/** What was decided. deny always wins over allow when several rules match. */
export type Verdict = 'allow' | 'deny';

/**
 * Which act was judged:
 * - publish: an app binds/listens on a name, VIP or port (or `ax run` registers a name);
 * - connect: an app connects (or sends UDP) to a virtual service or a real destination;
 * - accept:  a server is handed a connection from a peer (app or unknown host);
 * - lookup:  an app resolves a name (hook RESOLVE, DNS, `ax get services` from an app).
 */
export type Op = 'connect' | 'accept' | 'publish' | 'lookup';

/** The party acting (the client for connect/lookup, the server for publish, the peer for accept). */
export interface DecisionSrc {
  /** app id; '' for a peer that is no ax app (unknown source address) */
  app: string;
  /** the app's name ('' when it has none) */
  name: string;
  /** every label, the ax.* ones ax sets (ax.user, ax.node, ax.name) included */
  labels: Labels;
  /** for a non-ax peer: its real address "ip" or "ip:port" */
  addr?: string;
}

/** What the act aims at: a virtual service (name/VIP/port) or a real ip:port. */
export interface DecisionDst {
  /** service name ('' when the VIP has none, or for a real destination) */
  name: string;
  /** virtual IP (dotted); '' for a real destination */
  vip: string;
  /** virtual port, or the real port; 0 = any / not applicable (lookup) */
  port: number;
  /** 'tcp' | 'udp' */
  proto: 'tcp' | 'udp';
  /** real destination ip:port (egress to a non-virtual address); absent for virtual ones */
  real?: string;
  /** the service's labels when known (the server app's), ax.* included */
  labels?: Labels;
  /** the app serving it (connect/accept/lookup of a service), or holding the name (publish), when known */
  appId?: string;
}

/**
 * One policy decision.
 * `rule`: the id of the rule that decided it, or 'default:<posture>' (posture is
 * 'allow-all' | 'deny-all' | 'shared-label'), or 'owner' for the built-in
 * publishing rule (a name belongs to the uid that first published it).
 */
export interface Decision {
  verdict: Verdict;
  op: Op;
  src: DecisionSrc;
  dst: DecisionDst;
  rule: string;
  /** milliseconds since the epoch */
  at: number;
  /** the host (ax node name) that decided */
  node: string;
  /** a human-readable reason, for logs ("no shared label", "rule r3 denies", ...) */
  reason?: string;
}

/** A subscriber; called synchronously on the decision path: keep it cheap, never throw. */
export type DecisionListener = (d: Decision) => void;
