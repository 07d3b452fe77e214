// Audit events: one record per access decision (connect, accept, publish,
// lookup), whoever made it. The decision points build an AuditEvent and hand it
// to Audit.record() (src/audit/audit.ts); `ax events` and `ax graph` read them.
import type { Labels } from '../policy/labels';

/** What was decided: allowed, denied, an established connection cut, a publish (name/VIP/port) refused. */
export type AuditVerdict = 'allow' | 'deny' | 'revoke' | 'publish-refused';

/** Which socket operation the decision was about. */
export type AuditOp = 'connect' | 'accept' | 'publish' | 'lookup';

export const VERDICTS: readonly AuditVerdict[] = ['allow', 'deny', 'revoke', 'publish-refused'];
export const OPS: readonly AuditOp[] = ['connect', 'accept', 'publish', 'lookup'];

/** The app that asked (the client of a connect, the server of an accept, the publisher). */
export interface AuditSource {
  /** ax app id ("" when the app was refused before it got one, e.g. a publish refused at `ax run`) */
  appId: string;
  /** the app's --name ("" for an unnamed app) */
  name: string;
  /** its labels, ax.* included (ax.user, ax.node, ax.name) */
  labels: Labels;
  /** node the app runs on */
  node?: string;
}

/** What it asked for. */
export interface AuditDest {
  /** service name ("" when the address has none) */
  name: string;
  /** "vip:port" for a virtual destination, "ip:port" for a real one, the VIP alone for a publish */
  addr: string;
  /** the app serving it, when known */
  appId?: string;
  /** that app's labels, when known */
  labels?: Labels;
}

/** One decision. */
export interface AuditEvent {
  /** when it was decided, ms since the Unix epoch */
  time: number;
  verdict: AuditVerdict;
  op: AuditOp;
  src: AuditSource;
  dst: AuditDest;
  /** the rule that decided it: a rule id, or "default:<posture>" (today "default:shared-label"), or "owner" (name/VIP ownership) */
  rule: string;
  /** a short human reason, optional */
  detail?: string;
}

/** An event as stored: with its sequence number (1, 2, ...; never reused, also across restarts). */
export interface StoredEvent extends AuditEvent {
  seq: number;
}

/**
 * The graph node an event's source is drawn as: its name, else its app id; a source
 * refused before it became an app (a publish refused at `ax run`) is drawn as its user.
 */
export function srcNode(ev: AuditEvent): string {
  if (!ev.src.appId && ev.src.labels['ax.user']) return `user:${ev.src.labels['ax.user']}`;
  // a peer outside ax is named by its address: one node per host, not per connection's port
  if (!ev.src.appId && ev.src.name) return peerHost(ev.src.name);
  return ev.src.name || ev.src.appId || 'unknown';
}

/** "ip:port" / "[ipv6]:port" -> the ip (anything else unchanged). */
function peerHost(addr: string): string {
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(addr);
  if (v6) return v6[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(addr);
  return v4 ? v4[1]! : addr;
}

/** The graph node an event's destination is drawn as: the service name, else the app id, else the address. */
export function dstNode(ev: AuditEvent): string {
  return ev.dst.name || ev.dst.appId || ev.dst.addr || 'unknown';
}

/** The parts of an app an event needs (src/table/table.ts App). */
interface AppLike {
  id: string;
  name: string;
  labels: Labels;
  node: string;
}

/** The parts of a backend socket an event needs (src/table/table.ts Sock). */
interface SockLike {
  appId: string;
  name: string;
  labels: Labels;
}

/**
 * A connect decision of `app` for vip:port. `backend`: the listener picked (allowed
 * connects), whose app and labels are the destination's; `name`: the service name of
 * the VIP when known.
 */
export function connectEvent(app: AppLike, verdict: AuditVerdict, vip: string, port: number, rule: string, backend?: SockLike, name?: string): AuditEvent {
  return {
    time: Date.now(),
    verdict,
    op: 'connect',
    src: { appId: app.id, name: app.name, labels: app.labels, node: app.node },
    dst: {
      name: backend?.name || name || '',
      addr: `${vip}:${port}`,
      ...(backend ? { appId: backend.appId, labels: backend.labels } : {}),
    },
    rule,
  };
}
