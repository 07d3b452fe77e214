// The decision layer: every policy decision ax makes (publish, connect, accept,
// lookup) is made here, by one function (decide), and handed as a Decision
// (./decision.ts) to every onDecision() subscriber. The daemon calls it before
// the balancer; the service table only lists backends.
//
// Evaluation of a connect (and of the lookups and accepts derived from it):
//   1. rules of kind "connect" whose from/to selectors, ports, protocol and
//      `same` keys match; any deny wins, else any allow admits;
//   2. no rule matches: the default posture (--policy-default):
//        allow-all    everything is allowed;
//        deny-all     nothing is allowed;
//        shared-label client and service share one non-ax.* key=value (the rule
//                     ax had before policies, hence the default: existing setups keep working).
// Publishing: a name (and its VIP) belongs to the uid that first published it, over
// the whole cluster; a publish rule may allow other apps (by labels: ax.user=...)
// to serve it, or deny a name to apps. deny wins.
//
// Rules are records with a revision (time, node): the newest revision of an id
// wins everywhere (last-writer-wins register per id; removal is a tombstone
// revision), so every host that has seen the same records enforces the same rules.
import type { Labels } from './labels';
import { mayConnect } from './labels';
import { matches } from './selector';
import type { Decision, DecisionDst, DecisionListener, DecisionSrc, Op } from './decision';
import { cidrMatches, compileRule, fromCidrMatches, portMatches, type CompiledRule, type Rule } from './rules';

/** --policy-default */
export type Posture = 'allow-all' | 'deny-all' | 'shared-label';
export const POSTURES: Posture[] = ['allow-all', 'deny-all', 'shared-label'];

/** A rule revision: later time wins, ties broken by node name. */
export interface Rev {
  t: number;
  node: string;
}

/** A rule record as stored and replicated: rule null = removed (tombstone). */
export interface PolicyRecord {
  id: string;
  rule: Rule | null;
  rev: Rev;
}

export function newer(a: Rev, b: Rev): boolean {
  return a.t > b.t || (a.t === b.t && a.node > b.node);
}

/** What the engine needs of an app (a subset of table App). */
export interface PolicyApp {
  id: string;
  name: string;
  vip: string;
  labels: Labels;
  uid?: number;
  node: string;
  createdAt: number;
}

/** What the engine needs of a service (a subset of table Sock). */
export interface PolicyService {
  appId: string;
  name: string;
  vip: string;
  vport: number;
  labels: Labels;
  proto?: 'tcp' | 'udp';
}

export interface PolicyOptions {
  node: string;
  posture: Posture;
  /** errno a denied connect gets (default ECONNREFUSED = 111) */
  denyErrno: number;
  /** verdict for connections from peers that are no ax app (accept) */
  unknownPeers: 'allow' | 'deny';
}

/** What changed in the rule set (after put/remove/merge). */
export interface PolicyChange {
  records: PolicyRecord[];
}

const RESERVED = 'ax.';

export class PolicyEngine {
  private readonly records = new Map<string, PolicyRecord>();
  private connectRules: CompiledRule[] = [];
  /** Some connect rule names real destinations (cidr): connects to real addresses are judged. */
  hasEgress = false;
  /** Some connect rule is about peers outside ax (from_cidr). */
  hasFromCidr = false;
  private publishRules: CompiledRule[] = [];
  private readonly decisionListeners: DecisionListener[] = [];
  private readonly changeListeners: Array<(c: PolicyChange) => void> = [];
  private lastT = 0;
  /** Connect verdicts by (client labels object, server labels object, port/protocol), dropped on
   *  every rule change. Keyed by object identity: an app's labels object is fixed for its life
   *  (replicated apps get new objects on every refresh, which only costs a miss). */
  private memo = new WeakMap<Labels, WeakMap<Labels, Map<string, [boolean, string, string]>>>();
  /** Bumped on every change of the rule set. */
  version = 0;

  constructor(readonly opts: PolicyOptions) {}

  /**
   * Whether accepts of peers outside ax are judged at all: --policy-unknown-peers deny, or
   * some from_cidr rule. When false every such peer is allowed and hooks need not ask.
   */
  get filtersAccept(): boolean {
    return this.opts.unknownPeers === 'deny' || this.hasFromCidr;
  }

  // ---- subscriptions ---------------------------------------------------

  /** Every decision, as it is made (synchronously; keep it cheap, never throw). */
  onDecision(fn: DecisionListener): void {
    this.decisionListeners.push(fn);
  }

  /** Every change of the rule set (local put/remove or merged from a peer). */
  onChange(fn: (c: PolicyChange) => void): void {
    this.changeListeners.push(fn);
  }

  // ---- rule records ------------------------------------------------------

  /** Adds or replaces rules (one revision each); returns the new records. */
  put(rules: Rule[]): PolicyRecord[] {
    const recs = rules.map((rule): PolicyRecord => ({ id: rule.id, rule, rev: this.nextRev() }));
    for (const r of recs) this.records.set(r.id, r);
    this.changed(recs);
    return recs;
  }

  /** Removes rules by id (tombstones); returns the tombstones of ids that were live. */
  remove(ids: string[]): PolicyRecord[] {
    const recs: PolicyRecord[] = [];
    for (const id of ids) {
      const have = this.records.get(id);
      if (!have || !have.rule) continue;
      const r: PolicyRecord = { id, rule: null, rev: this.nextRev() };
      this.records.set(id, r);
      recs.push(r);
    }
    if (recs.length) this.changed(recs);
    return recs;
  }

  /** Merges records from the store or a peer; the newer revision of each id wins. Returns those taken. */
  merge(incoming: PolicyRecord[]): PolicyRecord[] {
    const taken: PolicyRecord[] = [];
    for (const r of incoming) {
      const have = this.records.get(r.id);
      if (have && !newer(r.rev, have.rev)) continue;
      this.records.set(r.id, r);
      if (r.rev.t > this.lastT) this.lastT = r.rev.t;
      taken.push(r);
    }
    if (taken.length) this.changed(taken);
    return taken;
  }

  /** Live rules, by id. */
  rules(): Rule[] {
    return [...this.records.values()].filter((r) => r.rule).map((r) => r.rule!).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Every record, tombstones included. */
  allRecords(): PolicyRecord[] {
    return [...this.records.values()];
  }

  record(id: string): PolicyRecord | undefined {
    return this.records.get(id);
  }

  private nextRev(): Rev {
    this.lastT = Math.max(Date.now(), this.lastT + 1);
    return { t: this.lastT, node: this.opts.node };
  }

  private changed(records: PolicyRecord[]): void {
    const live = [...this.records.values()].filter((r) => r.rule).map((r) => compileRule(r.rule!));
    live.sort((a, b) => (a.rule.id < b.rule.id ? -1 : 1));
    this.connectRules = live.filter((r) => r.rule.kind === 'connect');
    this.hasEgress = this.connectRules.some((r) => r.cidrs.length > 0);
    this.hasFromCidr = this.connectRules.some((r) => r.fromCidrs.length > 0);
    this.publishRules = live.filter((r) => r.rule.kind === 'publish');
    this.version++;
    this.memo = new WeakMap();
    for (const fn of this.changeListeners) fn({ records });
  }

  // ---- the decision function ---------------------------------------------

  /**
   * THE decision function: every verdict goes through here and is handed to the
   * onDecision subscribers.
   */
  private decide(op: Op, src: DecisionSrc, dst: DecisionDst, verdict: 'allow' | 'deny', rule: string, reason: string): Decision {
    const d: Decision = { verdict, op, src, dst, rule, at: Date.now(), node: this.opts.node, reason };
    for (const fn of this.decisionListeners) {
      try {
        fn(d);
      } catch {
        /* a subscriber's failure is not the decision's */
      }
    }
    return d;
  }

  /** The connect verdict without emitting a decision: [verdict, rule, reason]. */
  private judge(src: Labels, dst: Labels | null, port: number, proto: 'tcp' | 'udp', realIp?: string): [boolean, string, string] {
    let allowBy: CompiledRule | undefined;
    for (const r of this.connectRules) {
      if (r.fromCidrs.length > 0) continue; // about peers outside ax (acceptUnknown)
      if (r.rule.protocol && r.rule.protocol !== proto) continue;
      if (!portMatches(r, port)) continue;
      if (!matches(r.from, src)) continue;
      if (realIp !== undefined) {
        if (r.cidrs.length === 0 || !cidrMatches(r, realIp)) continue;
      } else {
        if (r.cidrs.length > 0 || !dst) continue;
        if (r.to && !matches(r.to, dst)) continue;
        if (!r.rule.same.every((k) => src[k] !== undefined && src[k] === dst[k])) continue;
      }
      if (r.rule.action === 'deny') return [false, r.rule.id, `rule ${r.rule.id} denies`];
      allowBy ??= r;
    }
    if (allowBy) return [true, allowBy.rule.id, `rule ${allowBy.rule.id} allows`];
    const p = this.opts.posture;
    if (realIp !== undefined) return [true, 'default:egress', 'no egress rule matches: real destinations are not restricted'];
    if (p === 'allow-all') return [true, `default:${p}`, 'no rule matches; default allow-all'];
    if (p === 'deny-all') return [false, `default:${p}`, 'no rule matches; default deny-all'];
    return mayConnect(src, dst ?? {}) ? [true, `default:${p}`, 'shared label'] : [false, `default:${p}`, 'no rule matches and no shared label'];
  }

  /** judge() for app pairs, memoized (see memo). */
  private judgeApps(src: PolicyApp, svc: PolicyService): [boolean, string, string] {
    const proto = svc.proto ?? 'tcp';
    let bySvc = this.memo.get(src.labels);
    if (!bySvc) this.memo.set(src.labels, (bySvc = new WeakMap()));
    let byPort = bySvc.get(svc.labels);
    if (!byPort) bySvc.set(svc.labels, (byPort = new Map()));
    const key = `${svc.vport}/${proto}`;
    let v = byPort.get(key);
    if (!v) {
      v = this.judge(src.labels, svc.labels, svc.vport, proto);
      byPort.set(key, v);
    }
    return v;
  }

  /** Connect from app `src` to service `svc` (a virtual vip:port backend). */
  connect(src: PolicyApp, svc: PolicyService, op: 'connect' | 'accept' = 'connect'): Decision {
    const proto = svc.proto ?? 'tcp';
    const [ok, rule, reason] = this.judgeApps(src, svc);
    return this.decide(op, srcOf(src), { name: svc.name, vip: svc.vip, port: svc.vport, proto, labels: svc.labels, appId: svc.appId }, ok ? 'allow' : 'deny', rule, reason);
  }

  /** Whether `src` may connect to `svc`, without emitting a decision (backend filtering, revocation scans). */
  allows(src: Labels, svc: PolicyService): boolean {
    return this.judge(src, svc.labels, svc.vport, svc.proto ?? 'tcp')[0];
  }

  /** allows() for an app (memoized per app pair, port and protocol until the rules change). */
  allowsApp(src: PolicyApp, svc: PolicyService): boolean {
    return this.judgeApps(src, svc)[0];
  }

  /** Connect (egress) from app `src` to a real destination ip:port. */
  egress(src: PolicyApp, ip: string, port: number, proto: 'tcp' | 'udp' = 'tcp'): Decision {
    const [ok, rule, reason] = this.judge(src.labels, null, port, proto, ip);
    return this.decide('connect', srcOf(src), { name: '', vip: '', port, proto, real: `${ip}:${port}` }, ok ? 'allow' : 'deny', rule, reason);
  }

  /**
   * A connection reaches a server: `peer` is the client app (undefined: a peer that is
   * no ax app). `peerAddr` is the peer's address as "ip", "ip:port" or "[ipv6]:port".
   * A peer outside ax is judged by the from_cidr rules whose ranges hold its IP and whose
   * to/ports/protocol select `svc` (deny wins), else by --policy-unknown-peers.
   */
  accept(peer: PolicyApp | undefined, svc: PolicyService, peerAddr = ''): Decision {
    if (peer) return this.connect(peer, svc, 'accept');
    const proto = svc.proto ?? 'tcp';
    const src: DecisionSrc = { app: '', name: '', labels: {}, addr: peerAddr };
    const dst: DecisionDst = { name: svc.name, vip: svc.vip, port: svc.vport, proto, labels: svc.labels, appId: svc.appId };
    const [verdict, rule, reason] = this.judgeUnknownPeer(svc, peerAddr);
    return this.decide('accept', src, dst, verdict, rule, reason);
  }

  /** accept()'s verdict for a peer outside ax, with no decision recorded (revocation scans). */
  allowsUnknownPeer(svc: PolicyService, peerAddr: string): boolean {
    return this.judgeUnknownPeer(svc, peerAddr)[0] === 'allow';
  }

  /** [verdict, deciding rule, reason] for a peer outside ax at peerAddr reaching svc (see accept). */
  private judgeUnknownPeer(svc: PolicyService, peerAddr: string): ['allow' | 'deny', string, string] {
    const proto = svc.proto ?? 'tcp';
    const ip = peerIpOf(peerAddr);
    const who = `peer ${peerAddr || '(unknown address)'} is no ax app`;
    let allowBy: CompiledRule | undefined;
    for (const r of this.connectRules) {
      if (r.fromCidrs.length === 0) continue;
      if (r.rule.protocol && r.rule.protocol !== proto) continue;
      if (!portMatches(r, svc.vport)) continue;
      if (r.to && !matches(r.to, svc.labels)) continue;
      if (!fromCidrMatches(r, ip)) continue;
      if (r.rule.action === 'deny') return ['deny', r.rule.id, `${who}: rule ${r.rule.id} denies`];
      allowBy ??= r;
    }
    if (allowBy) return ['allow', allowBy.rule.id, `${who}: rule ${allowBy.rule.id} allows`];
    const v = this.opts.unknownPeers;
    return [v, `default:unknown-peers-${v}`, `${who}: no from_cidr rule matches; --policy-unknown-peers ${v}`];
  }

  /**
   * Whether app `src` may learn that name/VIP `target` exists: when it may reach it on some
   * port. `target` is the app owning the name (its labels), or a service of it.
   * Under the shared-label default a name whose verdict comes from the default alone
   * stays visible (today's behaviour: resolve, then the connect is refused).
   */
  lookup(src: PolicyApp, target: PolicyService): Decision {
    const [ok, rule, reason] = this.judge(src.labels, target.labels, 0, target.proto ?? 'tcp');
    const visible = ok || rule === 'default:shared-label';
    return this.decide('lookup', srcOf(src), { name: target.name, vip: target.vip, port: 0, proto: target.proto ?? 'tcp', labels: target.labels }, visible ? 'allow' : 'deny', rule, visible && !ok ? `${reason} (names stay visible under shared-label)` : reason);
  }

  /**
   * App `app` publishes name/VIP (and `port`, 0 = registering the name at `ax run`).
   * `holders`: every app in the cluster holding the name or VIP already. The owner is the
   * uid of the earliest of them; another uid needs a publish rule allowing it.
   */
  publish(app: PolicyApp, name: string, vip: string, port: number, proto: 'tcp' | 'udp', holders: PolicyApp[]): Decision {
    const first = ownerOf(holders.filter((h) => h.id !== app.id));
    const dst: DecisionDst = { name, vip, port, proto, labels: first?.labels ?? app.labels, appId: first?.id };
    const emit = (ok: boolean, rule: string, reason: string) => this.decide('publish', srcOf(app), dst, ok ? 'allow' : 'deny', rule, reason);
    let allowBy: CompiledRule | undefined;
    for (const r of this.publishRules) {
      if (r.rule.protocol && r.rule.protocol !== proto) continue;
      if (!portMatches(r, port)) continue;
      if (!matches(r.from, app.labels)) continue;
      if (!r.rule.names.includes('*') && !(name && r.rule.names.includes(name))) continue;
      if (r.rule.action === 'deny') return emit(false, r.rule.id, `rule ${r.rule.id} denies publishing "${name || vip}"`);
      allowBy ??= r;
    }
    const owner = ownerOf(holders.filter((h) => h.id !== app.id));
    if (!owner || owner.uid === app.uid) return emit(true, 'owner', owner ? `uid ${String(app.uid)} owns "${name || vip}"` : `"${name || vip}" is new`);
    if (allowBy) return emit(true, allowBy.rule.id, `rule ${allowBy.rule.id} lets uid ${String(app.uid)} serve "${name || vip}"`);
    return emit(false, 'owner', `"${name || vip}" belongs to uid ${String(owner.uid)} (app ${owner.id} on ${owner.node}); a publish rule must allow uid ${String(app.uid)}`);
  }
}

/** The first publisher of a name: earliest createdAt, ties by node then id. */
export function ownerOf(holders: PolicyApp[]): PolicyApp | undefined {
  let best: PolicyApp | undefined;
  for (const h of holders) {
    if (h.uid === undefined) continue;
    if (!best || h.createdAt < best.createdAt || (h.createdAt === best.createdAt && (h.node < best.node || (h.node === best.node && h.id < best.id)))) best = h;
  }
  return best;
}

/** The IP of a peer address "ip", "ip:port" or "[ipv6]:port" (v4-mapped kept as given). */
function peerIpOf(addr: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(addr);
  if (v6) return v6[1];
  const v4 = /^(\d+\.\d+\.\d+\.\d+)(?::\d+)?$/.exec(addr);
  return v4 ? v4[1] : addr;
}

function srcOf(a: PolicyApp): DecisionSrc {
  return { app: a.id, name: a.name, labels: a.labels };
}

/** Labels without the ones ax sets (for messages). */
export function userLabels(l: Labels): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(l)) if (!k.startsWith(RESERVED)) out[k] = v;
  return out;
}
