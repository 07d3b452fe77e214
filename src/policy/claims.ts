// Which labels a user may claim for its apps (ax daemon --label-policy FILE),
// and the reserved ax.* labels that only ax itself sets.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { firstIssueText, inputErrors } from '../common/zodtext';
import { inGroup, resolveGroup, resolveUser, userName, type PeerCred } from '../daemon/peer';
import type { Labels } from './labels';

/** Label keys starting with this are set by ax (ax.user, ax.node, ax.name) and cannot be claimed. */
export const RESERVED_PREFIX = 'ax.';

/** A claim pattern: "*" (any label), "key=*" (any value of key) or "key=value". */
const PATTERN = z
  .string()
  .regex(/^(\*|[A-Za-z0-9][A-Za-z0-9._/-]{0,62}=(\*|[A-Za-z0-9._-]{0,63}))$/, 'a pattern is "*", "key=*" or "key=value"')
  .refine((p) => !p.startsWith(RESERVED_PREFIX), `ax.* labels are reserved: ax sets them, nobody may claim them`);

/**
 * The label policy file (JSON):
 * {
 *   "default": ["zone=default"],          // what every user may claim (absent: any label)
 *   "users":  { "alice": ["team=*"] },    // added for these users (name or uid)
 *   "groups": { "ops": ["zone=secure"] }  // added for members of these groups (name or gid)
 * }
 * root and the daemon's own user may claim any label. Nobody may claim ax.* labels.
 */
export const LabelPolicySchema = z
  .object({
    default: z.array(PATTERN).optional(),
    users: z.record(z.string(), z.array(PATTERN)).optional(),
    groups: z.record(z.string(), z.array(PATTERN)).optional(),
  })
  .strict();

/** A loaded policy: patterns by resolved uid and gid. */
export interface LabelPolicy {
  file: string;
  default: string[];
  users: Map<number, string[]>;
  groups: Map<number, string[]>;
}

/** Reads and validates a policy file. Throws an Error saying which entry is wrong. */
export function loadLabelPolicy(file: string): LabelPolicy {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  const r = LabelPolicySchema.safeParse(raw, { errorMap: inputErrors });
  if (!r.success) throw new Error(`${file}: ${firstIssueText(r.error)}`);
  const users = new Map<number, string[]>();
  const groups = new Map<number, string[]>();
  for (const [u, pats] of Object.entries(r.data.users ?? {})) users.set(resolveUser(u), pats);
  for (const [g, pats] of Object.entries(r.data.groups ?? {})) groups.set(resolveGroup(g), pats);
  return { file, default: r.data.default ?? ['*'], users, groups };
}

function matches(pattern: string, key: string, value: string): boolean {
  if (pattern === '*') return true;
  const eq = pattern.indexOf('=');
  return pattern.slice(0, eq) === key && (pattern.slice(eq + 1) === '*' || pattern.slice(eq + 1) === value);
}

/**
 * The first ax.* label in `labels` (nobody may claim those: ax sets them), as a message
 * naming it; null when there is none. `ax run` checks this before asking the daemon.
 */
export function reservedLabel(labels: Labels): string | null {
  for (const [k, v] of Object.entries(labels)) {
    if (k.startsWith(RESERVED_PREFIX)) {
      return `label "${k}=${v}": ax.* labels are reserved (ax sets ax.user, ax.node and ax.name itself); choose another key`;
    }
  }
  return null;
}

/**
 * Checks the labels an app of `who` asks for. Returns null when all may be
 * claimed, else a message naming the first refused label and why.
 * `privileged`: root or the daemon's own user (any non-reserved label).
 */
export function checkClaims(labels: Labels, who: PeerCred, privileged: boolean, policy?: LabelPolicy): string | null {
  const reserved = reservedLabel(labels);
  if (reserved) return reserved;
  if (privileged || !policy) return null;
  const pats = [...policy.default, ...(policy.users.get(who.uid) ?? [])];
  for (const [gid, p] of policy.groups) if (inGroup(who, gid)) pats.push(...p);
  for (const [k, v] of Object.entries(labels)) {
    if (!pats.some((p) => matches(p, k, v))) {
      return `label "${k}=${v}" may not be claimed by uid ${who.uid} (${userName(who.uid)}): the label policy ${policy.file} allows it ${pats.length ? `only ${pats.join(', ')}` : 'no labels'}`;
    }
  }
  return null;
}
