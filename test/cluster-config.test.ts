// Cluster config validation (zod schema, ConfigError naming the field) and the one logger
// the cluster shares with the daemon (fields rendered as JSON on the line).
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig, validateConfig, ConfigError, DEFAULT_CONFIG, type ClusterConfig, type ClusterConfigInput } from '../src/cluster/config';
import { consoleLogger, nullLogger, RateLimitedLog } from '../src/cluster/transport';
import { formatLine, makeLogger, withPrefix, type Logger } from '../src/common/log';

const BASE: ClusterConfigInput = { name: 'n1', advertiseAddr: '127.0.0.1:7946' };

/** The ConfigError a config gives: [field, message], or null when it is accepted. */
function problem(over: Record<string, unknown>): [string, string] | null {
  try {
    resolveConfig({ ...BASE, ...over } as ClusterConfigInput);
    return null;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return [e.field, e.message];
  }
}

t.test('the defaults are valid', async (t) => {
  const c = resolveConfig(BASE);
  t.equal(c.probeIntervalMs, DEFAULT_CONFIG.probeIntervalMs);
  t.doesNotThrow(() => validateConfig(c));
  t.doesNotThrow(() => validateConfig({ ...c, random: () => 0.5 }));
  t.equal(problem({ probeIntervalMs: undefined }), null, 'undefined means "default"');
});

t.test('bad configs name the field, with a clear message', async (t) => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ name: '' }, 'name', /must be a non-empty string/],
    [{ name: 42 }, 'name', /must be a non-empty string/],
    [{ name: 'x'.repeat(65) }, 'name', /at most 64 bytes/],
    [{ name: 'é'.repeat(33) }, 'name', /at most 64 bytes/],
    [{ advertiseAddr: 'nope' }, 'advertiseAddr', /expected "host:port", got "nope"/],
    [{ advertiseAddr: '10.0.0.1:70000' }, 'advertiseAddr', /port out of range/],
    [{ advertiseAddr: 7946 }, 'advertiseAddr', /must be "host:port"/],
    [{ gossipIntervalMs: -1 }, 'gossipIntervalMs', /must be a positive number, got -1/],
    [{ probeIntervalMs: 0 }, 'probeIntervalMs', /must be a positive number, got 0/],
    [{ streamTimeoutMs: Infinity }, 'streamTimeoutMs', /must be a positive number, got Infinity/],
    [{ observers: NaN }, 'observers', /must be a positive number, got NaN/],
    [{ probeWitnesses: 0 }, 'probeWitnesses', /must be a positive number, got 0/],
    [{ retransmitMult: '4' }, 'retransmitMult', /must be a positive number, got 4/],
    [{ gossipNodes: -1 }, 'gossipNodes', /must be a number >= 0, got -1/],
    [{ flapGuardFraction: 'lots' }, 'flapGuardFraction', /must be a number >= 0, got lots/],
    [{ probeTimeoutMs: 5000 }, 'probeTimeoutMs', /smaller than probeIntervalMs/],
    [{ suspicionMaxMult: 0.5 }, 'suspicionMaxMult', /must be >= 1/],
    [{ maxPacketSize: 100 }, 'maxPacketSize', /within 512\.\.65000/],
    [{ maxPacketSize: 70000 }, 'maxPacketSize', /within 512\.\.65000/],
    [{ maxValueBytes: 4 * 1024 * 1024 }, 'maxValueBytes', /fit in maxStreamMessageSize/],
    [{ reapAfterMs: 2 * 60 * 60_000 }, 'tombstoneTtlMs', /must be >= reapAfterMs/],
    [{ calmMembership: 'yes' }, 'calmMembership', /true or false/],
    [{ streamFallbackProbe: 1 }, 'streamFallbackProbe', /true or false/],
    [{ viewSettleMs: 5000 }, 'viewMaxDelayMs', /must be >= viewSettleMs/],
    [{ probeIntervalMs: 300, probeTimeoutMs: 250 }, 'probationProbeEvery', /probation round/],
    [{ probationMaxProbes: 10 }, 'probationMaxProbes', /must be >= probationProbes/],
    [{ random: 0.3 }, 'random', /must be a function/],
  ];
  for (const [over, field, msg] of cases) {
    const p = problem(over);
    t.ok(p, `${JSON.stringify(over)} is refused`);
    if (!p) continue;
    t.equal(p[0], field, `${JSON.stringify(over)} names ${field}`);
    t.match(p[1], new RegExp(`^cluster config: ${field}: `), 'message starts with the field');
    t.match(p[1], msg, p[1]);
  }
});

t.test('the first failing field (in schema order) is reported', async (t) => {
  t.equal(problem({ name: '', gossipIntervalMs: -1 })?.[0], 'name');
  t.equal(problem({ gossipIntervalMs: -1, probeTimeoutMs: 5000 })?.[0], 'gossipIntervalMs', 'field rules before rules between fields');
  t.equal(problem({ probeTimeoutMs: 5000, probationMaxProbes: 1 })?.[0], 'probeTimeoutMs');
  const e = (() => { try { validateConfig(null as unknown as ClusterConfig); } catch (err) { return err; } })();
  t.ok(e instanceof ConfigError, 'a non-object is a ConfigError too');
});

t.test('one logger: cluster logging goes through common/log, fields as JSON', async (t) => {
  t.equal(formatLine('hello'), 'hello');
  t.equal(formatLine('hello', {}), 'hello', 'empty fields add nothing');
  t.equal(formatLine('hello', { peer: 'b', n: 2 }), 'hello {"peer":"b","n":2}');
  t.equal(formatLine('big', { v: 10n }), 'big {"v":"10"}');
  const circ: Record<string, unknown> = {}; circ.self = circ;
  t.match(formatLine('circ', circ), /^circ \{"fields":"\(unserializable\)"\}$/);

  const dir = mkdtempSync(join(tmpdir(), 'ax-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'ax.log');
  const log = makeLogger('info', file, 'ax-daemon[n1]');
  const clog = withPrefix(log, 'cluster: ');
  clog.debug('hidden', { x: 1 });
  clog.warn('packet refused', { from: '10.0.0.2:7946', reason: 'bad MAC' });
  new RateLimitedLog(clog, 10_000).warn('k', 'noisy', { a: 1 });
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  t.equal(lines.length, 2, 'debug filtered by level');
  t.match(lines[0], /^\S+ ax-daemon\[n1\] warn cluster: packet refused \{"from":"10\.0\.0\.2:7946","reason":"bad MAC"\}$/);
  t.match(lines[1], /warn cluster: noisy \{"a":1\}$/);

  const mem: string[] = [];
  const capture: Logger = { debug: () => {}, info: (m, f) => mem.push(formatLine(m, f)), warn: () => {}, error: () => {} };
  withPrefix(capture, 'p: ').info('m', { k: 'v' });
  t.same(mem, ['p: m {"k":"v"}']);
  t.doesNotThrow(() => nullLogger.error('x', { y: 1 }));
  t.type(consoleLogger('cluster', 'error').info, 'function');
});
