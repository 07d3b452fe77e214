// A small, strict flag parser: --flag value, --flag=value, -o value, booleans,
// repeatable flags, and "--" ending the flags. Unknown flags are errors.

export class UsageError extends Error {}

export interface FlagSpec {
  /** long name without dashes */
  name: string;
  short?: string;
  kind: 'string' | 'bool' | 'list';
}

export interface Parsed {
  flags: Map<string, string | boolean | string[]>;
  rest: string[];
  /** true when "--" was seen */
  dashdash: boolean;
}

export function parseFlags(argv: string[], specs: FlagSpec[], opts: { stopAtPositional?: boolean } = {}): Parsed {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags = new Map<string, string | boolean | string[]>();
  const rest: string[] = [];
  let dashdash = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      dashdash = true;
      rest.push(...argv.slice(i + 1));
      break;
    }
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
      spec = byLong.get(name);
      if (!spec) throw new UsageError(`unknown flag --${name}`);
    } else if (arg.startsWith('-') && arg.length > 1) {
      spec = byShort.get(arg.slice(1, 2));
      if (!spec) throw new UsageError(`unknown flag ${arg}`);
      if (arg.length > 2) inline = arg.slice(2).replace(/^=/, '');
    } else {
      rest.push(arg);
      if (opts.stopAtPositional) {
        rest.push(...argv.slice(i + 1));
        break;
      }
      continue;
    }
    if (spec.kind === 'bool') {
      if (inline !== undefined && !/^(true|false)$/.test(inline)) {
        throw new UsageError(`--${spec.name} takes no value (or =true/=false), got "${inline}"`);
      }
      flags.set(spec.name, inline !== 'false');
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length || argv[i + 1] === '--') throw new UsageError(`--${spec.name} needs a value`);
      value = argv[++i];
    }
    if (spec.kind === 'list') {
      const list = (flags.get(spec.name) as string[] | undefined) ?? [];
      list.push(value);
      flags.set(spec.name, list);
    } else {
      if (flags.has(spec.name)) throw new UsageError(`--${spec.name} is given twice`);
      flags.set(spec.name, value);
    }
  }
  return { flags, rest, dashdash };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function bool(p: Parsed, name: string): boolean {
  return p.flags.get(name) === true;
}

export function list(p: Parsed, name: string): string[] {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v : [];
}

/**
 * A duration with its unit: "250ms", "5s", "1.5s", "2m" → milliseconds. A bare number
 * is refused (is "5" five seconds or five milliseconds?), as is anything else: UsageError
 * naming the flag (`what`, e.g. "--connect-wait").
 */
export function parseDuration(text: string, what: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) throw new UsageError(`${what} "${text}" needs a unit: ${t}ms, ${t}s or ${t}m`);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(t);
  if (!m) throw new UsageError(`${what} "${text}" is not a duration (e.g. 500ms, 5s, 1m)`);
  const n = Number(m[1]);
  const unit = m[2];
  return Math.round(unit === 'ms' ? n : unit === 's' ? n * 1000 : n * 60_000);
}
