// `ax policy add|rm|ls|apply`: the daemon's policy rules (README "Policy").
import { defaultApiSocket } from '../common/paths';
import type { PolicyRuleInfo__Output } from '../gen/ax/v1/PolicyRuleInfo';
import { checkRule, loadPolicyFile, PolicyFileError, type Rule } from '../policy/rules';
import { bool, list, parseFlags, str, UsageError, type FlagSpec } from './args';
import { AxClient } from './client';
import { table } from './get';

export const POLICY_USAGE = `usage: ax policy <command> [flags] [--socket PATH]

  ax policy add ID allow|deny [--from SEL] [--to SEL] [--same K,..] [--ports P,..]
                [--protocol tcp|udp] [--cidr CIDR,..] [--from-cidr CIDR,..] [--publish NAME,..]
      add (or replace) rule ID. SEL: a label selector (k=v, k!=v, k in (a,b), k notin (a,b), k, !k;
      ',' = and) on the client's labels (--from) and the service's (--to; ax.name, ax.user and
      ax.node are set by ax). --cidr: real destinations instead of services (egress).
      --from-cidr: peers outside ax (source addresses) instead of --from, judged at accept.
      --publish NAME: a publish rule (apps matching --from may serve NAME; "*" = any name).
  ax policy rm ID..          remove rules
  ax policy ls [-o json]     list the rules in force
  ax policy apply -f FILE    add or replace every rule of FILE (YAML or JSON: a list of rules,
                             or "rules: [...]"; fields as in the flags above: id, action, kind,
                             from, to, same, ports, protocol, cidr, from_cidr, names)
                             It never removes rules that are not in FILE: use ax policy rm ID.

Changing rules needs root or the daemon's user; they apply on every host of the cluster.
`;

const SPECS: FlagSpec[] = [
  { name: 'from', kind: 'string' },
  { name: 'to', kind: 'string' },
  { name: 'same', kind: 'list' },
  { name: 'ports', kind: 'list' },
  { name: 'protocol', kind: 'string' },
  { name: 'cidr', kind: 'list' },
  { name: 'from-cidr', kind: 'list' },
  { name: 'publish', kind: 'list' },
  { name: 'file', short: 'f', kind: 'string' },
  { name: 'output', short: 'o', kind: 'string' },
  { name: 'socket', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

const csv = (xs: string[]) => xs.flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean);

/** The rule `ax policy add` describes (validated like a file's rule). */
export function ruleFromArgs(rest: string[], p: ReturnType<typeof parseFlags>): Rule {
  if (rest.length !== 2) throw new UsageError('policy add needs ID and allow|deny');
  const [id, action] = rest;
  const publish = csv(list(p, 'publish'));
  const raw: Record<string, unknown> = { id, action, kind: publish.length ? 'publish' : 'connect' };
  if (str(p, 'from') !== undefined) raw.from = str(p, 'from');
  if (str(p, 'to') !== undefined) raw.to = str(p, 'to');
  if (list(p, 'same').length) raw.same = csv(list(p, 'same'));
  if (list(p, 'ports').length) raw.ports = csv(list(p, 'ports')).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  if (str(p, 'protocol') !== undefined) raw.protocol = str(p, 'protocol');
  if (list(p, 'cidr').length) raw.cidr = csv(list(p, 'cidr'));
  if (list(p, 'from-cidr').length) raw.from_cidr = csv(list(p, 'from-cidr'));
  if (publish.length) raw.names = publish;
  try {
    return checkRule(raw);
  } catch (e) {
    throw new UsageError(`policy add ${id}: ${(e as Error).message}`);
  }
}

export async function policyMain(argv: string[]): Promise<number> {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) {
    process.stdout.write(POLICY_USAGE);
    return 0;
  }
  const [cmd, ...rest] = p.rest;
  const socket = str(p, 'socket') ?? defaultApiSocket();
  const show = (rules: PolicyRuleInfo__Output[]) => {
    for (const r of rules) process.stdout.write(`${r.id}: ${r.description}\n`);
  };
  switch (cmd) {
    case 'add': {
      const rule = ruleFromArgs(rest, p);
      const c = new AxClient(socket);
      try {
        show((await c.call('PolicyPut', { rules_json: [JSON.stringify(rule)] })).rules ?? []);
      } finally {
        c.close();
      }
      return 0;
    }
    case 'apply': {
      const file = str(p, 'file');
      if (!file) throw new UsageError('policy apply needs -f FILE');
      if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
      let rules: Rule[];
      try {
        rules = loadPolicyFile(file);
      } catch (e) {
        if (e instanceof PolicyFileError) {
          process.stderr.write(`ax policy apply: ${e.message}\n`);
          return 1;
        }
        throw e;
      }
      const c = new AxClient(socket);
      try {
        show((await c.call('PolicyPut', { rules_json: rules.map((r) => JSON.stringify(r)) })).rules ?? []);
      } finally {
        c.close();
      }
      return 0;
    }
    case 'rm': {
      if (rest.length === 0) throw new UsageError('policy rm needs rule ids');
      const c = new AxClient(socket);
      try {
        const r = await c.call('PolicyRemove', { ids: rest });
        for (const x of r.rules ?? []) process.stdout.write(`${x.id}: removed\n`);
        if ((r.missing ?? []).length) {
          process.stderr.write(`ax policy rm: no rule ${r.missing.join(', ')}\n`);
          return 1;
        }
      } finally {
        c.close();
      }
      return 0;
    }
    case 'ls': {
      const out = str(p, 'output') ?? 'table';
      if (out !== 'table' && out !== 'json') throw new UsageError(`-o ${out}: choose table or json`);
      const c = new AxClient(socket);
      try {
        const rules = (await c.call('PolicyList')).rules ?? [];
        if (out === 'json') process.stdout.write(JSON.stringify(rules.map((r) => ({ ...JSON.parse(r.rule_json), node: r.node, updated_ms: Number(r.updated_ms) })), null, 2) + '\n');
        else
          process.stdout.write(
            table(rules, [
              ['ID', (r) => r.id],
              ['RULE', (r) => r.description],
              ['NODE', (r) => r.node],
            ]),
          );
      } finally {
        c.close();
      }
      return 0;
    }
    case undefined:
      throw new UsageError('policy: add, rm, ls or apply?');
    default:
      throw new UsageError(`policy: unknown command "${cmd}"`);
  }
}
