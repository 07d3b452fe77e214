// The audit trail and pictures: every access decision is an event (ax events,
// --follow, kept across restarts, a bounded ring whose losses are counted),
// Prometheus metrics on --metrics, and the observed dependency map (ax graph,
// DOT and SVG). Real daemon, real programs under `ax run`; the ring and the
// 300-app graph use the real recorder on a real LevelDB.
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Audit } from '../src/audit/audit';
import { connectEvent } from '../src/audit/event';
import { graphOf, parseSelector, selectGraph, toDot } from '../src/audit/graph';
import { renderSvg } from '../src/cli/graph';
import { AxClient } from '../src/cli/client';
import { eventJson, parseSince } from '../src/cli/events';
import { eventFromWire, graphFromWire, statsFromWire } from '../src/audit/wire';
import type { EventBatch__Output } from '../src/gen/ax/v1/EventBatch';
import { Store } from '../src/store/store';
import { makeLogger } from '../src/common/log';
import { AX, run, start, TestDaemon } from './helpers';

// The daemon tests are independent (own daemons, port ranges and metrics ports): run three at a time.
t.jobs = 3;

const www = mkdtempSync(join(tmpdir(), 'ax-www-'));
writeFileSync(join(www, 'index.html'), 'hello from web\n');
chmodSync(www, 0o755);
t.teardown(() => rmSync(www, { recursive: true, force: true }));

/** A plain environment for processes of other users (see trust-api.test.ts). */
const PLAIN = ['env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/'];
const PLAIN_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/' };
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', ...PLAIN];
const axAsNobody = (d: TestDaemon, [cmd, ...args]: string[]) =>
  run(NOBODY[0], [...NOBODY.slice(1), process.execPath, AX, cmd, '--socket', d.socket, ...args], { env: PLAIN_ENV });

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = Record<string, any>;
/* eslint-enable @typescript-eslint/no-explicit-any */

/** `ax events -o json` run by the CLI. */
async function axEvents(d: TestDaemon, more: string[] = []): Promise<{ events: Json[]; stats: Json; stderr: string }> {
  const r = await d.ax(['events', '-o', 'json', ...more]);
  if (r.code !== 0) throw new Error(`ax events: exit ${r.code}: ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as { events: Json[]; stats: Json }), stderr: r.stderr };
}

/**
 * The same, asked from this process with the CLI's client and JSON form (a node process
 * per question costs 1-2 s on the shared test VM; the CLI's own output is compared once).
 */
async function events(d: TestDaemon, since = 0, limit = 0): Promise<{ events: Json[]; stats: Json }> {
  const c = new AxClient(d.socket);
  try {
    return await new Promise((resolve, reject) => {
      const got: EventBatch__Output[] = [];
      const s = c.raw.Events({ since_ms: since, limit, follow: false });
      s.on('data', (b: EventBatch__Output) => got.push(b));
      s.on('error', reject);
      s.on('end', () => resolve({ events: got[0].events.map(eventFromWire).map(eventJson) as Json[], stats: statsFromWire(got[0].stats) as Json }));
    });
  } finally {
    c.close();
  }
}

/** The observed graph as DOT, asked from this process (as `ax graph` makes it, without its title). */
async function graphDot(d: TestDaemon): Promise<string> {
  const c = new AxClient(d.socket);
  try {
    return toDot(graphFromWire(await c.call('Graph', { since_ms: 0 })));
  } finally {
    c.close();
  }
}

/** The value of one sample of a Prometheus text exposition, e.g. ax_decisions_total{op="connect",verdict="deny"}. */
function sample(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  }
  return undefined;
}

async function scrape(addr: string): Promise<string> {
  const r = await run('curl', ['-sS', '--max-time', '5', `http://${addr}/metrics`]);
  if (r.code !== 0) throw new Error(`curl /metrics: ${r.stderr}`);
  return r.stdout;
}

const quiet = makeLogger('error');
const METRICS = `127.0.0.1:${19000 + (process.pid % 500)}`;

t.test('allowed and denied connects are events; follow, metrics, graph, restart, nobody', async (t) => {
  const d = await TestDaemon.start(t, ['--metrics', METRICS]);
  const web = d.run(['--name', 'secure', '--labels', 'team=blue'], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  // (in parallel: each program under ax run costs 1-2 s on the shared test VM)
  const [ok, denied] = await Promise.all([
    d.run(['--name', 'cli-ok', '--labels', 'team=blue,zone=x'], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result(),
    d.run(['--name', 'cli-bad', '--labels', 'team=red'], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result(),
  ]);
  t.equal(ok.stdout, 'hello from web\n', 'shared label: allowed');
  t.not(denied.code, 0, 'no shared label: the connect fails');

  const [server] = (await d.get('apps')).filter((a) => a.name === 'secure');
  const first = await axEvents(d);
  t.same(first, { ...(await events(d)), stderr: '' }, 'ax events -o json: what the API says');
  const allow = first.events.filter((e) => e.verdict === 'allow' && e.src.name === 'cli-ok');
  const deny = first.events.filter((e) => e.verdict === 'deny' && e.src.name === 'cli-bad');
  t.ok(allow.length >= 1, 'the allowed connect is an event');
  t.equal(deny.length, 1, 'the denied connect is one event (denials are never answered from a cache)');
  for (const e of [...allow, ...deny]) {
    t.equal(e.op, 'connect');
    t.equal(e.dst.name, 'secure', 'destination name');
    t.equal(e.dst.addr, `${server.vip}:80`, 'destination vip:port');
    t.equal(e.rule, 'default:shared-label', 'the rule that decided');
    t.match(e.src.app_id, /^[0-9a-f]{8}$/, 'source app id');
    t.ok(Math.abs(Date.parse(e.time) - Date.now()) < 600_000 && e.time_ms === Date.parse(e.time), 'time (RFC 3339 and ms)');
  }
  t.same(allow[0].src.labels.team, 'blue', 'source labels');
  t.equal(allow[0].dst.app_id, server.id, 'an allowed connect names the serving app');
  t.same(allow[0].dst.labels.team, 'blue', 'and its labels');
  t.same(deny[0].src.labels.team, 'red');
  const seqs = first.events.map((e) => e.seq);
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'oldest first');
  t.equal(new Set(seqs).size, seqs.length, 'sequence numbers are unique');
  const newest = seqs[seqs.length - 1];
  t.equal(first.stats.dropped.wrapped, 0, 'nothing dropped');

  const [tableOut, sinceLimit] = await Promise.all([d.ax(['events']), axEvents(d, ['--since', '10m', '--limit', '1'])]);
  t.equal(tableOut.code, 0);
  t.match(tableOut.stdout, /^TIME\s+VERDICT\s+OP\s+SOURCE/);
  t.match(tableOut.stdout, /deny\s+connect\s+cli-bad\s+team=red\s+secure \(10\.240\.\d+\.\d+:80\)\s+default:shared-label/);

  t.same((await events(d, 0, 1)).events.map((e) => e.seq), [newest], 'limit 1: the newest');
  t.equal((await events(d, parseSince('1h'))).events.length, first.events.length, 'since 1h: all of them');
  t.equal((await events(d, parseSince('2099-01-01T00:00:00Z'))).events.length, 0, 'since a future time: none');
  t.same(sinceLimit.events.map((e) => e.seq), [newest], 'ax events --since 10m --limit 1');

  // --follow prints what is there, then new events as they happen.
  const follow = start(process.execPath, [AX, 'events', '--follow', '-o', 'json', '--socket', d.socket], {}, t);
  await follow.waitFor(/"cli-bad"/);
  const late = await d.run(['--name', 'cli-late', '--labels', 'team=green'], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result();
  t.not(late.code, 0);
  const line = (await follow.waitFor(/^.*"cli-late".*$/m))[0];
  const lateEv = JSON.parse(line) as Json;
  t.equal(lateEv.verdict, 'deny', '--follow streams the new decision');
  t.equal(lateEv.dst.name, 'secure');
  follow.kill('SIGINT');
  t.equal((await follow.result()).code, 0, '--follow ends cleanly on SIGINT');

  // Publish refused: nobody may not join root's name.
  const joined = await axAsNobody(d, ['run', '--no-start', '--name', 'secure', '--', 'true']);
  t.equal(joined.code, 1, 'nobody cannot join root\'s pool');
  const refused = (await events(d)).events.filter((e) => e.verdict === 'publish-refused');
  t.equal(refused.length, 1, 'the refused publish is an event');
  t.equal(refused[0].op, 'publish');
  t.equal(refused[0].rule, 'owner');
  t.equal(refused[0].src.labels['ax.user'], 'nobody');
  t.equal(refused[0].dst.name, 'secure');
  t.equal(refused[0].dst.app_id, server.id);

  // Metrics: the same counts.
  const m = await scrape(METRICS);
  const all = (await events(d)).events;
  const count = (v: string, op = 'connect') => all.filter((e) => e.verdict === v && e.op === op).length;
  t.equal(sample(m, 'ax_decisions_total{op="connect",verdict="allow"}'), count('allow'), 'metrics: allowed connects');
  t.equal(sample(m, 'ax_decisions_total{op="connect",verdict="deny"}'), count('deny'), 'metrics: denied connects');
  t.equal(sample(m, 'ax_decisions_total{op="publish",verdict="publish-refused"}'), 1, 'metrics: refused publishes');
  t.equal(sample(m, 'ax_audit_events_dropped_total{reason="ring-wrap"}'), 0, 'metrics: nothing dropped');
  t.equal(sample(m, 'ax_audit_events_recorded_total'), all.length);
  t.equal(sample(m, 'ax_services'), 1);
  t.ok((sample(m, 'ax_handoffs_total') ?? 0) >= 2, 'metrics: handoffs');
  t.ok(sample(m, 'ax_apps') !== undefined && sample(m, 'ax_hook_sessions') !== undefined);
  const notFound = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://${METRICS}/other`]);
  t.equal(notFound.stdout, '404', 'only /metrics is served');

  // The graph: the edges, with the counts of the events.
  const [g, svg, noDot] = await Promise.all([
    d.ax(['graph']),
    d.ax(['graph', '-o', 'svg', '--selector', 'team=red']),
    run(process.execPath, [AX, 'graph', '-o', 'svg', '--socket', d.socket], { env: { ...process.env, PATH: '/nonexistent' } }),
  ]);
  t.equal(g.code, 0, g.stderr);
  t.match(g.stdout, /^digraph ax \{/);
  t.match(g.stdout, new RegExp(`"cli-ok" -> "secure" \\[label="${allow.length}", color="#2e7d32"\\]`), 'allowed edge with its count');
  t.match(g.stdout, /"cli-bad" -> "secure" \[label="deny 1", color="#d32f2f", fontcolor="#d32f2f", style=dashed\]/, 'denied edge: red, dashed');
  t.match(g.stdout, /"user:nobody" -> "secure" \[label="publish-refused 1"/, 'refused publish edge');
  t.equal(svg.code, 0, svg.stderr);
  t.match(svg.stdout, /<svg[\s\S]*cli(-|&#45;)bad[\s\S]*<\/svg>/, 'SVG rendered by dot');
  t.notMatch(svg.stdout, /cli(-|&#45;)ok/, '--selector team=red keeps only the matching apps and their neighbours');
  t.equal(noDot.code, 1);
  t.match(noDot.stderr, /ax graph: -o svg needs Graphviz's dot, which is not installed \(Debian\/Ubuntu: apt-get install graphviz\)/);

  // Operator data: nobody may not read events or the graph.
  const [nEv, nGr] = await Promise.all([axAsNobody(d, ['events']), axAsNobody(d, ['graph'])]);
  t.equal(nEv.code, 1);
  t.match(nEv.stderr, /permission denied: uid 65534 \(nobody\) may not read this daemon's audit events/);
  t.equal(nEv.stdout, '', 'nothing leaks');
  t.equal(nGr.code, 1);
  t.match(nGr.stderr, /permission denied: uid 65534 \(nobody\) may not read this daemon's audit events/);

  // A daemon restart keeps the ring and the graph; numbering goes on.
  const before = await events(d);
  const stayed = start(process.execPath, [AX, 'events', '-f', '--limit', '1', '--socket', d.socket], {}, t);
  await stayed.waitFor(/publish-refused\s+publish\s+user:nobody/);
  await d.stop();
  const stayedEnd = await stayed.result();
  t.equal(stayedEnd.code, 1, 'a follower ends when the daemon stops');
  t.match(stayedEnd.stderr, /ax events: the daemon ended the stream \(it is stopping\)/);
  await d.launch();
  const after = await events(d);
  t.same(after.events.map((e) => e.seq), before.events.map((e) => e.seq), 'events survive a restart');
  t.same(after.events[0], before.events[0], 'unchanged');
  const again = await d.run(['--name', 'cli-after', '--labels', 'team=red'], ['curl', '-sS', '--max-time', '5', 'http://secure/']).result();
  t.not(again.code, 0);
  const next = (await events(d)).events.filter((e) => e.src.name === 'cli-after');
  t.equal(next.length, 1);
  t.ok(next[0].seq > before.events[before.events.length - 1].seq, 'sequence numbers go on after a restart');
  t.match(await graphDot(d), /"cli-bad" -> "secure" \[label="deny 1"/, 'graph edges survive a restart');
});

t.test('a wrapped ring says how many events it dropped (ax events, /metrics, after a restart)', async (t) => {
  const addr = `127.0.0.1:${19600 + (process.pid % 300)}`;
  const d = await TestDaemon.start(t, ['--events-max', '3', '--metrics', addr]);
  const web = d.run(['--name', 'secure', '--labels', 'team=blue'], ['python3', '-u', '-m', 'http.server', '80'], { cwd: www });
  await web.waitFor(/Serving HTTP/);
  const five = await d.run(['--name', 'knocker', '--labels', 'team=red'], ['python3', '-c', `
import socket
for i in range(5):
    try:
        socket.create_connection(("secure", 80), timeout=5); print("connected")
    except OSError as e:
        print("refused", e.errno)
`]).result();
  t.equal((five.stdout.match(/refused/g) ?? []).length, 5, 'five denied connects');
  const got = await events(d);
  t.equal(got.events.length, 3, 'the ring holds --events-max events');
  t.ok(got.stats.recorded >= 5);
  t.equal(got.stats.dropped.wrapped, got.stats.recorded - 3, 'every event pushed out is counted');
  t.same(got.events.map((e) => e.seq), [got.stats.recorded - 2, got.stats.recorded - 1, got.stats.recorded], 'the newest are kept');
  const tbl = await d.ax(['events']);
  t.equal(tbl.code, 0);
  t.match(tbl.stderr, new RegExp(`ax events: ${got.stats.dropped.wrapped} older events were dropped because the ring \\(--events-max 3\\) wrapped`), 'ax events says so');
  const m = await scrape(addr);
  t.equal(sample(m, 'ax_audit_events_dropped_total{reason="ring-wrap"}'), got.stats.dropped.wrapped, '/metrics says so');
  t.equal(sample(m, 'ax_audit_events_stored'), 3);
  t.equal(sample(m, 'ax_audit_events_capacity'), 3);
  // The graph keeps counting what the ring no longer holds.
  t.match(await graphDot(d), new RegExp(`"knocker" -> "secure" \\[label="deny ${got.stats.recorded}"`));
  await d.stop();
  await d.launch();
  const after = await events(d);
  t.equal(after.stats.dropped.wrapped, got.stats.dropped.wrapped, 'the count survives a restart');
  t.same(after.events.map((e) => e.seq), got.events.map((e) => e.seq));
});

t.test('UDP: the first datagram of a flow is decided, and recorded, like a connect', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'udpecho', '--labels', 'team=blue'], ['python3', '-u', '-c', `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5300)); print('bound', flush=True)
while True:
    d, a = s.recvfrom(100); s.sendto(d.upper(), a)
`]);
  await srv.waitFor(/bound/);
  const send = `
import socket, errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
try:
    s.sendto(b'hi', ('udpecho', 5300)); print('reply', s.recvfrom(100)[0].decode())
except OSError as e:
    print('error', errno.errorcode.get(e.errno, e.errno))
`;
  const [ok, bad] = await Promise.all([
    d.run(['--name', 'udp-ok', '--labels', 'team=blue'], ['python3', '-c', send]).result(),
    d.run(['--name', 'udp-bad', '--labels', 'team=red'], ['python3', '-c', send]).result(),
  ]);
  t.match(ok.stdout, /reply HI/, 'shared label: the datagram goes through');
  t.match(bad.stdout, /error/, 'no shared label: refused');
  const evs = (await events(d)).events.filter((e) => e.detail === 'udp');
  const [server] = (await d.get('apps')).filter((a) => a.name === 'udpecho');
  const allow = evs.filter((e) => e.src.name === 'udp-ok');
  const deny = evs.filter((e) => e.src.name === 'udp-bad');
  t.ok(allow.length >= 1 && allow.every((e) => e.verdict === 'allow' && e.dst.addr === `${server.vip}:5300` && e.dst.app_id === server.id), 'allowed flow: an allow event');
  t.ok(deny.length >= 1 && deny.every((e) => e.verdict === 'deny' && e.dst.name === 'udpecho' && e.rule === 'default:shared-label'), 'refused datagram: a deny event');
});

t.test('a daemon opens a ring written before; long answers reach a pipe whole', async (t) => {
  const d = new TestDaemon(t);
  const store = await Store.open(d.stateDir, false);
  const audit = await Audit.open(store.sublevel('audit'), { max: 100_000, log: quiet });
  const N = 3000;
  for (let i = 0; i < N; i++) {
    const a = { id: (0x20000000 + (i % 150)).toString(16), name: `svc${i % 150}`, labels: { team: `t${i % 5}` }, node: 'n1' };
    audit.record(connectEvent(a, i % 7 ? 'allow' : 'deny', '10.240.2.1', 80, 'default:shared-label', undefined, `svc${(i * 7) % 150}`));
  }
  await audit.close();
  await store.close();
  await d.launch();
  const r = await d.ax(['events', '-o', 'json']);
  t.equal(r.code, 0, r.stderr);
  t.ok(r.stdout.length > 256 * 1024, `a long answer (${r.stdout.length} bytes)`);
  const got = JSON.parse(r.stdout) as { events: Json[]; stats: Json };
  t.equal(got.events.length, N, 'every event, in messages of at most 1000');
  t.same(got.events.map((e) => e.seq), Array.from({ length: N }, (_, i) => i + 1), 'in order');
  t.equal(got.stats.recorded, N);
  const g = await d.ax(['graph', '-o', 'svg']);
  t.equal(g.code, 0, g.stderr);
  t.match(g.stdout.trimEnd(), /<\/svg>$/, `the whole SVG (${g.stdout.length} bytes)`);
});

t.test('bad flags exit 2 with usage', async (t) => {
  const now = Date.parse('2026-01-31T12:00:00Z');
  t.equal(parseSince('90s', now), now - 90_000, '--since 90s');
  t.equal(parseSince('2h', now), now - 7_200_000, '--since 2h');
  t.equal(parseSince('1d', now), now - 86_400_000, '--since 1d');
  t.equal(parseSince('2026-01-31T10:00:00+02:00', now), Date.parse('2026-01-31T08:00:00Z'), '--since RFC 3339 with an offset');
  const cases: Array<[string[], RegExp]> = [
    [['events', '--limit', '0'], /--limit "0" is not a positive whole number/],
    [['events', '--limit', 'x'], /--limit "x"/],
    [['events', '--since', 'yesterday'], /--since "yesterday" is neither a duration/],
    [['events', '--since', '5'], /--since "5"/],
    [['events', '-o', 'yaml'], /-o yaml: choose table or json/],
    [['events', 'extra'], /unexpected argument "extra"/],
    [['events', '--bogus'], /unknown flag --bogus/],
    [['graph', '-o', 'png'], /-o png: choose dot or svg/],
    [['graph', '--selector', '=x'], /--selector: selector term 1/],
    [['graph', '--selector', 'a=b,,c'], /selector term 2 \(""\): empty/],
    [['graph', '--group-by', 'bad key'], /--group-by "bad key" is not a label key/],
    [['graph', '--since', 'soon'], /--since "soon"/],
    [['daemon', '--events-max', '0'], /--events-max "0" is not a number from 1 to 100000000/],
    [['daemon', '--metrics', 'nope'], /--metrics: "nope" is not ADDR:PORT/],
    [['daemon', '--metrics', '127.0.0.1:70000'], /port must be 1-65535/],
  ];
  // The process's exit status, once:
  const one = await run(process.execPath, [AX, 'events', '--limit', '0', '--socket', '/nonexistent/ax.sock']);
  t.equal(one.code, 2, 'ax events --limit 0: the process exits 2');
  // Every case through the CLI's main() (the bundle's), in one process: what it returns is the exit status.
  const script = `
const { main } = require(${JSON.stringify(AX)});
(async () => {
  const out = [];
  for (const args of ${JSON.stringify(cases.map(([a]) => a))}) {
    let err = '';
    const write = process.stderr.write;
    process.stderr.write = (s) => { err += s; return true; };
    const code = await main([...args, '--socket', '/nonexistent/ax.sock'], ${JSON.stringify(AX)});
    process.stderr.write = write;
    out.push({ code, stderr: err });
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})();`;
  const r = await run(process.execPath, ['-e', script]);
  t.equal(r.code, 0, r.stderr);
  const results = JSON.parse(r.stdout) as Array<{ code: number; stderr: string }>;
  cases.forEach(([args, re], i) => {
    t.equal(results[i].code, 2, `${args.join(' ')}: exit 2`);
    t.match(results[i].stderr, re, `${args.join(' ')}: says what`);
    t.match(results[i].stderr, /usage: ax /, `${args.join(' ')}: usage`);
  });
});

t.test('the recorder: a bounded ring on LevelDB that counts what it drops and reopens where it was', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const app = { id: 'aaaa0001', name: 'a', labels: { team: 'x' }, node: 'n1' };
  let store = await Store.open(dir, false);
  let audit = await Audit.open(store.sublevel('audit'), { max: 10, log: quiet });
  const seen: number[] = [];
  audit.subscribe((e) => seen.push(e.seq));
  for (let i = 0; i < 25; i++) audit.record(connectEvent(app, i % 2 ? 'allow' : 'deny', '10.240.0.9', 80, 'default:shared-label', undefined, 'b'));
  t.same(seen, Array.from({ length: 25 }, (_, i) => i + 1), 'subscribers see every event at once');
  t.same((await audit.query()).map((e) => e.seq), Array.from({ length: 10 }, (_, i) => i + 16), 'the newest 10 are kept');
  let s = audit.stats();
  t.same([s.recorded, s.stored, s.capacity, s.dropped.wrapped], [25, 10, 10, 15]);
  t.same((await audit.query(0, 4)).map((e) => e.seq), [22, 23, 24, 25], 'limit: the newest');
  const edges = await audit.edges();
  t.same(edges.map((e) => [e.src, e.dst, e.verdict, e.count]).sort(), [['a', 'b', 'allow', 12], ['a', 'b', 'deny', 13]], 'edges count every decision');
  await audit.close();
  await store.close();
  // Reopened with a smaller ring: what no longer fits is dropped and counted.
  store = await Store.open(dir, false);
  audit = await Audit.open(store.sublevel('audit'), { max: 4, log: quiet });
  t.equal(audit.record(connectEvent(app, 'deny', '10.240.0.9', 80, 'r', undefined, 'b')), 26, 'numbering goes on');
  t.same((await audit.query()).map((e) => e.seq), [23, 24, 25, 26]);
  s = audit.stats();
  t.same([s.recorded, s.stored, s.dropped.wrapped], [26, 4, 22]);
  t.same((await audit.edges()).find((e) => e.verdict === 'deny')?.count, 14, 'edges survive a reopen');
  // Other keys of the store are untouched.
  store.put('meta', 'x', { y: 1 });
  t.same(await store.get('meta', 'x'), { y: 1 });
  await audit.close();
  await store.close();
});

t.test('300 apps recorded through the recorder: a readable graph that dot renders', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open(dir, false);
  const audit = await Audit.open(store.sublevel('audit'), { max: 100_000, log: quiet });
  const tenants = 10;
  const per = 30;
  const apps = Array.from({ length: tenants * per }, (_, i) => ({
    id: (0x10000000 + i).toString(16),
    name: `t${Math.floor(i / per)}-svc${i % per}`,
    labels: { tenant: `t${Math.floor(i / per)}`, tier: i % per < 10 ? 'front' : i % per < 20 ? 'mid' : 'back' },
    node: 'n1',
  }));
  let expectAllow = 0;
  let expectDeny = 0;
  for (const [i, a] of apps.entries()) {
    const t0 = Math.floor(i / per) * per;
    // a three-stage pipeline inside the tenant: front -> mid -> back, and one denied cross-tenant try
    const k = i % per;
    if (k < 20) {
      const b = apps[t0 + ((k + 10) % per)];
      for (let n = 0; n < 3; n++) audit.record(connectEvent(a, 'allow', '10.240.1.1', 80, 'default:shared-label', { appId: b.id, name: b.name, labels: b.labels }));
      expectAllow++;
    }
    const other = apps[(i + per) % apps.length];
    audit.record(connectEvent(a, 'deny', '10.240.1.2', 80, 'default:shared-label', undefined, other.name));
    expectDeny++;
  }
  const g = graphOf(await audit.edges());
  t.equal(g.nodes.length, 300, 'one node per app');
  t.equal(g.edges.filter((e) => e.verdict === 'allow').length, expectAllow);
  t.equal(g.edges.filter((e) => e.verdict === 'deny').length, expectDeny);
  t.ok(g.edges.filter((e) => e.verdict === 'allow').every((e) => e.count === 3), 'allowed counts');
  const dot = toDot(g, { groupBy: 'tenant' });
  t.equal((dot.match(/subgraph cluster_/g) ?? []).length, tenants, 'one box per tenant');
  t.match(dot, /rankdir=LR, concentrate=true/);
  // Bounded: a layout that does not finish in 120 s fails the test (the time it took is reported).
  const began = Date.now();
  const svg = await Promise.race([renderSvg(dot), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('dot -Tsvg did not finish within 120 s')), 120_000).unref())]);
  t.comment(`dot -Tsvg of 300 apps, ${g.edges.length} edges: ${Date.now() - began} ms, ${svg.length} bytes`);
  t.equal((svg.match(/<g id="node\d+" class="node">/g) ?? []).length, 300, 'every app drawn');
  t.equal((svg.match(/<g id="edge\d+" class="edge">/g) ?? []).length, g.edges.length, 'every edge drawn');
  t.equal((svg.match(/<g id="clust\d+" class="cluster">/g) ?? []).length, tenants);
  // A selector keeps one tenant and its neighbours.
  const one = selectGraph(g, parseSelector('tenant=t3,tier!=back'));
  const hit = new Set(g.nodes.filter((n) => n.labels.tenant === 't3' && n.labels.tier !== 'back').map((n) => n.id));
  t.equal(hit.size, 20);
  t.ok(one.edges.length > 0 && one.edges.every((e) => hit.has(e.src) || hit.has(e.dst)), 'every kept edge touches a selected app');
  t.equal(one.edges.filter((e) => e.verdict === 'allow').length, 20, 'tenant t3: its front and mid apps\' allowed edges');
  await audit.close();
  await store.close();
});
