// Label selectors, as in Kubernetes (k8s.io/apimachinery/pkg/labels, "set-based"
// and "equality-based" requirements):
//   k=v  k==v  k!=v  k in (a,b)  k notin (a,b)  k  !k
// joined by ',' (AND). The empty selector matches everything.
// Semantics follow Kubernetes: `k!=v` and `k notin (...)` also match when k is absent.
import type { Labels } from './labels';

/** One requirement of a selector. */
export type Requirement =
  | { key: string; op: 'eq' | 'ne'; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'absent' };

/** A parsed selector: every requirement must hold. */
export interface Selector {
  text: string;
  reqs: Requirement[];
}

/** A selector that does not parse; `message` says what and where (character offset, 0-based). */
export class SelectorError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'SelectorError';
  }
}

const KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^[A-Za-z0-9._-]{0,63}$/;

/** Splits at commas outside parentheses; returns [text, offset] pairs. */
function splitTop(text: string): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push([text.slice(start, i), start]);
      start = i + 1;
    }
  }
  out.push([text.slice(start), start]);
  return out;
}

function checkKey(key: string, at: number): string {
  if (!KEY.test(key)) throw new SelectorError(`"${key}" is not a label key (1-63 letters, digits, '.', '_', '-', '/')`, at);
  return key;
}

function checkValue(v: string, at: number): string {
  if (!VALUE.test(v)) throw new SelectorError(`"${v}" is not a label value (at most 63 letters, digits, '.', '_', '-')`, at);
  return v;
}

/**
 * Parses a selector. Throws SelectorError naming the bad requirement.
 * Examples: "tenant=a,stage!=prod", "tier in (web,api)", "!debug".
 */
export function parseSelector(text: string): Selector {
  const reqs: Requirement[] = [];
  if (text.trim() === '') return { text: '', reqs };
  for (const [raw, off] of splitTop(text)) {
    const item = raw.trim();
    const at = off + raw.indexOf(item);
    if (item === '') throw new SelectorError(`empty requirement (two commas, or a comma at an end)`, at);
    let m: RegExpMatchArray | null;
    if ((m = item.match(/^(\S+?)\s+(in|notin)\s*\(([^()]*)\)$/))) {
      const values = m[3].split(',').map((v) => v.trim());
      if (values.length === 0 || values.some((v) => v === '')) throw new SelectorError(`"${item}": the set needs values separated by ','`, at);
      values.forEach((v) => checkValue(v, at));
      reqs.push({ key: checkKey(m[1], at), op: m[2] as 'in' | 'notin', values });
    } else if ((m = item.match(/^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/))) {
      reqs.push({ key: checkKey(m[1], at), op: m[2] === '!=' ? 'ne' : 'eq', value: checkValue(m[3], at) });
    } else if ((m = item.match(/^!\s*(\S+)$/))) {
      reqs.push({ key: checkKey(m[1], at), op: 'absent' });
    } else if (/^\S+$/.test(item) && !/[=!()]/.test(item)) {
      reqs.push({ key: checkKey(item, at), op: 'exists' });
    } else {
      throw new SelectorError(`"${item}" is not a requirement (k=v, k!=v, k in (a,b), k notin (a,b), k, !k)`, at);
    }
  }
  return { text: text.trim(), reqs };
}

/** Whether `labels` satisfy every requirement of `sel`. */
export function matches(sel: Selector, labels: Labels): boolean {
  for (const r of sel.reqs) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    const v = has ? labels[r.key] : undefined;
    switch (r.op) {
      case 'eq':
        if (v !== r.value) return false;
        break;
      case 'ne':
        if (v === r.value) return false;
        break;
      case 'in':
        if (v === undefined || !r.values.includes(v)) return false;
        break;
      case 'notin':
        if (v !== undefined && r.values.includes(v)) return false;
        break;
      case 'exists':
        if (!has) return false;
        break;
      case 'absent':
        if (has) return false;
        break;
    }
  }
  return true;
}
