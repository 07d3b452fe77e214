// Error wording for ax's input schemas (zod). zod's built-in messages are written for
// programmers ("Invalid enum value. Expected 'allow' | 'deny', received 'maybe'");
// these say what the user must write ("must be one of "allow", "deny" (got "maybe")").
// Messages a schema sets on its checks (`.min(1, '...')`, `.regex(re, '...')`, refine and
// addIssue messages) win over this map; a schema's own `errorMap` does not (zod ranks the
// errorMap passed to a parse above it: https://zod.dev/ERROR_HANDLING, "Error map
// priority"), so schemas that word their errors with errorMaps (src/cluster/config.ts) are
// parsed without this one.
import { z } from 'zod';

const quote = (v: unknown): string => (typeof v === 'string' ? `"${v}"` : String(v));

/** "a string", "an object", "a whole number": the noun zod's type names stand for. */
function typeName(t: string): string {
  switch (t) {
    case 'integer':
      return 'a whole number';
    case 'array':
      return 'a list';
    case 'object':
      return 'a mapping (object)';
    case 'undefined':
      return 'nothing';
    case 'null':
      return 'null';
    default:
      return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
  }
}

/** How many of what a too_small/too_big bound counts: characters, entries, or a number's value. */
function bound(kind: 'at least' | 'at most', issue: { type: string; inclusive: boolean; exact?: boolean }, n: number | bigint): string {
  const exact = issue.exact === true;
  switch (issue.type) {
    case 'string':
      if (kind === 'at least' && Number(n) === 1 && !exact) return 'must not be empty';
      return `must be ${exact ? 'exactly' : kind} ${n} character${Number(n) === 1 ? '' : 's'} long`;
    case 'array':
    case 'set':
      if (kind === 'at least' && Number(n) === 1 && !exact) return 'needs at least one entry';
      return `needs ${exact ? 'exactly' : kind} ${n} entr${Number(n) === 1 ? 'y' : 'ies'}`;
    default: {
      const op = kind === 'at least' ? (issue.inclusive ? '≥' : '>') : issue.inclusive ? '≤' : '<';
      return exact ? `must be ${n}` : `must be ${op} ${n}`;
    }
  }
}

/**
 * zod error map for user input: pass it to a parse (`schema.safeParse(x, { errorMap: inputErrors })`).
 * Returns `{ message }`: a phrase meant to follow a field name ("action: must be one of ...").
 * Issue codes it does not word keep zod's default message.
 */
export const inputErrors: z.ZodErrorMap = (issue, ctx) => {
  switch (issue.code) {
    case z.ZodIssueCode.invalid_type:
      if (issue.received === 'undefined') return { message: 'is required' };
      return { message: `must be ${typeName(issue.expected)} (got ${typeName(issue.received)})` };
    case z.ZodIssueCode.invalid_enum_value:
      return { message: `must be one of ${issue.options.map(quote).join(', ')} (got ${quote(issue.received)})` };
    case z.ZodIssueCode.invalid_literal:
      return { message: `must be ${JSON.stringify(issue.expected)}` };
    case z.ZodIssueCode.unrecognized_keys:
      return { message: `unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map(quote).join(', ')}` };
    case z.ZodIssueCode.invalid_union:
      return { message: 'matches none of the forms this field takes' };
    case z.ZodIssueCode.invalid_union_discriminator:
      return { message: `must be one of ${issue.options.map(quote).join(', ')}` };
    case z.ZodIssueCode.too_small:
      return { message: bound('at least', issue, issue.minimum) };
    case z.ZodIssueCode.too_big:
      return { message: bound('at most', issue, issue.maximum) };
    case z.ZodIssueCode.not_multiple_of:
      return { message: `must be a multiple of ${issue.multipleOf}` };
    case z.ZodIssueCode.not_finite:
      return { message: 'must be a finite number' };
    case z.ZodIssueCode.invalid_string:
      return { message: typeof issue.validation === 'string' ? `is not a valid ${issue.validation}` : 'has the wrong form' };
    default:
      return { message: ctx.defaultError };
  }
};

/**
 * The first issue of a failed parse as one line: "path.to.field: message" ("message" alone at the
 * top level). `prefix` is put before the path (a rule number, a file name).
 */
export function firstIssueText(error: z.ZodError, prefix: Array<string | number> = []): string {
  const i = error.issues[0];
  if (!i) return 'not valid';
  const path = [...prefix, ...i.path];
  return `${path.length ? path.join('.') + ': ' : ''}${i.message}`;
}
