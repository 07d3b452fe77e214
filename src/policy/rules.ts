// Policy rules: their schema (zod), the policy file format (YAML or JSON, read
// with the `yaml` package so errors carry line numbers) and the compiled form the
// decision layer (./decide.ts) evaluates.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode } from 'yaml';
import { z } from 'zod';
import { firstIssueText, inputErrors } from '../common/zodtext';
import { isIPv4 } from 'node:net';
import { unmapV4 } from '../common/addr';
import { parseSelector, SelectorError, type Selector } from './selector';

const ID_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$/;
const NAME_RE = /^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$/;

const selectorText = z
  .string()
  .max(1024)
  .superRefine((s, ctx) => {
    try {
      parseSelector(s);
    } catch (e) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: e instanceof SelectorError ? e.message : String(e) });
    }
  });

const portItem = z.union([
  z.number().int().min(1).max(65535),
  z
    .string()
    .regex(/^\d{1,5}(-\d{1,5})?$/, 'a port is a number or a range "lo-hi"')
    .refine((s) => {
      const [lo, hi] = s.split('-').map(Number);
      return lo >= 1 && lo <= 65535 && (hi === undefined || (hi >= lo && hi <= 65535));
    }, 'ports are 1-65535 and a range is "lo-hi" with lo <= hi'),
]);

/** An IPv4 range of a rule: `base` (host order, masked) and `bits` (0..32). */
export interface RuleCidr {
  base: number;
  bits: number;
}

function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

function ipv4Int(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

/**
 * Parses a rule's CIDR: "a.b.c.d/bits" (bits 0..32) or a bare address (= /32).
 * Throws an Error naming the text otherwise.
 */
export function parseRuleCidr(text: string): RuleCidr {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d{1,2}))?$/.exec(text);
  if (!m || !isIPv4(m[1])) throw new Error('expected a.b.c.d/bits or a.b.c.d');
  const bits = m[2] === undefined ? 32 : Number(m[2]);
  if (bits > 32) throw new Error('the prefix length is 0..32');
  return { base: (ipv4Int(m[1]) & maskOf(bits)) >>> 0, bits };
}

/** Whether IPv4 `ip` (dotted, or v4-mapped IPv6) lies in `c`; other addresses never do. */
export function ruleCidrContains(c: RuleCidr, ip: string): boolean {
  const v4 = unmapV4(ip);
  if (!isIPv4(v4)) return false;
  return ((ipv4Int(v4) & maskOf(c.bits)) >>> 0) === c.base;
}

const cidrText = z.string().superRefine((s, ctx) => {
  try {
    parseRuleCidr(s);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${s}" is not an IPv4 CIDR: ${(e as Error).message}` });
  }
});

/**
 * One rule as written in a policy file or sent over the API.
 *
 * - kind "connect" (default): apps matching `from` may (allow) or may not (deny) connect
 *   to services matching `to` (selector on the server app's labels, ax.name/ax.user/ax.node
 *   included), or, with `cidr`, to real destinations in those ranges (egress).
 *   `ports`/`protocol` narrow it; `same: [k, ...]` requires equal values of k on both sides.
 *   The same rule governs lookups (a name is visible when it may be reached) and accepts.
 *   With `from_cidr` instead of `from` the rule is about peers outside ax (clients that are
 *   no ax app) whose source address lies in those ranges, connecting to the services
 *   matching `to` (judged at the server's accept; deny wins, otherwise
 *   --policy-unknown-peers).
 * - kind "publish": apps matching `from` may (allow) or may not (deny) serve the names in
 *   `names` ("*" = any) — by default a name belongs to the uid that first published it.
 */
export const RuleSchema = z
  .object({
    id: z.string().regex(ID_RE, 'an id is 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit'),
    action: z.enum(['allow', 'deny']),
    kind: z.enum(['connect', 'publish']).default('connect'),
    from: selectorText.default(''),
    to: selectorText.optional(),
    same: z.array(z.string().min(1).max(63)).default([]),
    ports: z.array(portItem).default([]),
    protocol: z.enum(['tcp', 'udp']).optional(),
    cidr: z.array(cidrText).default([]),
    from_cidr: z.array(cidrText).min(1, 'from_cidr needs at least one range (omit it for ax apps)').optional(),
    names: z.array(z.string().regex(NAME_RE, 'a name is a DNS label (lowercase letters, digits, "-") or "*"')).default([]),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.kind === 'publish') {
      if (r.names.length === 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['names'], message: 'a publish rule needs names (or ["*"])' });
      for (const f of ['to', 'cidr', 'same', 'from_cidr'] as const) {
        const v = r[f];
        if (v !== undefined && (!Array.isArray(v) || v.length > 0)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [f], message: `"${f}" is for connect rules` });
      }
    } else {
      if (r.names.length > 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['names'], message: '"names" is for publish rules (use to: "ax.name=NAME")' });
      if (r.cidr.length > 0 && r.to !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cidr'], message: 'a rule has either "to" (services) or "cidr" (real destinations), not both' });
      if (r.cidr.length > 0 && r.same.length > 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['same'], message: '"same" needs labels on both sides: not with "cidr"' });
      if (r.from_cidr) {
        if (r.cidr.length > 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['from_cidr'], message: 'a rule has either "from_cidr" (peers outside ax) or "cidr" (real destinations), not both' });
        if (r.from !== '') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['from'], message: '"from" selects ax apps, "from_cidr" peers outside ax: not both in one rule' });
        if (r.same.length > 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['same'], message: '"same" needs labels on both sides: not with "from_cidr"' });
      }
    }
  });

/** A validated rule (defaults filled in). */
export type Rule = z.output<typeof RuleSchema>;
/** A rule as written (optional fields may be missing). */
export type RuleInput = z.input<typeof RuleSchema>;

/** The file: a list of rules, or { rules: [...] }. */
const FileSchema = z.union([z.array(z.unknown()), z.object({ rules: z.array(z.unknown()) }).strict()]);

/** A policy file that is not valid: the message names the file, line and field. */
export class PolicyFileError extends Error {}

/** Validates one rule object; throws an Error "field: message" on the first problem. */
export function checkRule(raw: unknown): Rule {
  const r = RuleSchema.safeParse(raw, { errorMap: inputErrors });
  if (r.success) return r.data;
  throw new Error(firstIssueText(r.error));
}

/**
 * Parses policy text (YAML, or JSON which is YAML too). `file` is used in messages only.
 * Throws PolicyFileError "FILE:LINE: field: message" for syntax or schema errors, and for
 * an id given twice.
 */
export function parsePolicyText(text: string, file: string): Rule[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (/\.json$/i.test(file)) {
    // JSON is YAML too (the parse gives the lines), but a JSON syntax error reads better in
    // JSON's words: what JSON.parse says, at its position's line (else the YAML parser's).
    try {
      JSON.parse(text);
    } catch (e) {
      const msg = (e as Error).message;
      const m = /position (\d+)/.exec(msg);
      const e0 = doc.errors[0];
      // Node 20 names no position for some errors, only the text around it: ..."context"...
      const ctx = /"(?:\.\.\.)?([\s\S]*?)(?:\.\.\.)?" is not valid JSON/.exec(msg)?.[1];
      const at = m ? Number(m[1]) : ctx && text.indexOf(ctx) >= 0 ? text.indexOf(ctx) + Math.floor(ctx.length / 2) : -1;
      const line = at >= 0 ? text.slice(0, at).split('\n').length : e0 ? (e0.linePos?.[0]?.line ?? lc.linePos(e0.pos[0]).line) : 1;
      throw new PolicyFileError(`${file}:${line}: not valid JSON: ${msg.replace(/ in JSON at position \d+.*$/s, '').split('\n')[0]}`);
    }
  }
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line;
    throw new PolicyFileError(`${file}:${line}: ${e.message.split('\n')[0]}`);
  }
  const data: unknown = doc.toJS();
  const lineOf = (path: Array<string | number>): number => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
    }
    return 1;
  };
  const top = FileSchema.safeParse(data);
  if (!top.success) throw new PolicyFileError(`${file}:${lineOf([])}: expected a list of rules or "rules: [...]"`);
  const list = Array.isArray(top.data) ? top.data : top.data.rules;
  const base: Array<string | number> = Array.isArray(top.data) ? [] : ['rules'];
  const out: Rule[] = [];
  const seen = new Map<string, number>();
  list.forEach((raw, i) => {
    const r = RuleSchema.safeParse(raw, { errorMap: inputErrors });
    if (!r.success) {
      const issue = r.error.issues[0];
      const path = [...base, i, ...issue.path];
      const id = raw && typeof raw === 'object' && typeof (raw as { id?: unknown }).id === 'string' ? ` (rule "${(raw as { id: string }).id}")` : '';
      const field = issue.path.length ? issue.path.join('.') : 'rule';
      throw new PolicyFileError(`${file}:${lineOf(path)}: rule ${i + 1}${id}: ${field}: ${issue.message}`);
    }
    const at = lineOf([...base, i]);
    const prev = seen.get(r.data.id);
    if (prev !== undefined) throw new PolicyFileError(`${file}:${at}: rule ${i + 1}: id: "${r.data.id}" is used twice (first on line ${prev})`);
    seen.set(r.data.id, at);
    out.push(r.data);
  });
  return out;
}

/** Reads and parses a policy file (see parsePolicyText). */
export function loadPolicyFile(file: string): Rule[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new PolicyFileError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return parsePolicyText(text, file);
}

/** A rule ready to evaluate. */
export interface CompiledRule {
  rule: Rule;
  from: Selector;
  to: Selector | null;
  ports: Array<[number, number]>;
  cidrs: RuleCidr[];
  /** from_cidr: the rule is about peers outside ax from these ranges (empty: about ax apps) */
  fromCidrs: RuleCidr[];
}

/** Compiles a validated rule (selectors parsed, ports and CIDRs resolved). */
export function compileRule(rule: Rule): CompiledRule {
  return {
    rule,
    from: parseSelector(rule.from),
    to: rule.to === undefined ? null : parseSelector(rule.to),
    ports: rule.ports.map((p): [number, number] => {
      if (typeof p === 'number') return [p, p];
      const [lo, hi] = p.split('-').map(Number);
      return [lo, hi ?? lo];
    }),
    cidrs: rule.cidr.map(parseRuleCidr),
    fromCidrs: (rule.from_cidr ?? []).map(parseRuleCidr),
  };
}

/** Whether a compiled rule's ports admit `port` (0 = "any port": lookups, name checks). */
export function portMatches(r: CompiledRule, port: number): boolean {
  if (r.ports.length === 0 || port === 0) return true;
  for (const [lo, hi] of r.ports) if (port >= lo && port <= hi) return true;
  return false;
}

/** Whether an egress rule's CIDRs contain `ip`. */
export function cidrMatches(r: CompiledRule, ip: string): boolean {
  return r.cidrs.some((c) => ruleCidrContains(c, ip));
}

/** Whether a from_cidr rule's ranges contain the peer address `ip`. */
export function fromCidrMatches(r: CompiledRule, ip: string): boolean {
  return r.fromCidrs.some((c) => ruleCidrContains(c, ip));
}

/** One line describing a rule, for `ax policy ls` and logs. */
export function describeRule(r: Rule): string {
  const parts = [r.action, r.kind, r.from_cidr ? `from cidr ${r.from_cidr.join(',')}` : `from "${r.from}"`];
  if (r.kind === 'publish') parts.push(`names ${r.names.join(',')}`);
  else if (r.cidr.length) parts.push(`cidr ${r.cidr.join(',')}`);
  else parts.push(`to "${r.to ?? ''}"`);
  if (r.same.length) parts.push(`same ${r.same.join(',')}`);
  if (r.ports.length) parts.push(`ports ${r.ports.join(',')}`);
  if (r.protocol) parts.push(r.protocol);
  return parts.join(' ');
}
