// Gossip benchmark on the simulated network (virtual time, deterministic).
//
//   npx esbuild bench/gossip-sim.ts --bundle --platform=node --outfile=/tmp/gossip-sim.js && node /tmp/gossip-sim.js
//   (or: npx tsx bench/gossip-sim.ts  if tsx is available)
// Options: --n=100,1000  --seed=1  --fp-seconds=600,180  --quick
//          --gray-only (only the gray-failure table)  --gray-n=1000  --gray-seconds=160  --no-gray
//          --rules=both|stock|calm (which membership rules the gray table runs; default both)
//          --scenarios=none,crash,loss80,blink,inflap (default all)
//          --propagation (only the policy-propagation table: pol/ entry written at one node -> every live
//          node, N = --prop-n (1000), --prop-writes (60) writes 1 s apart, no fault and 1 % crashed;
//          eager push on (default config) and off (eagerPushNodes: 0) for comparison;
//          --prop-eager=on|off|both (default both))
//
// Prints a markdown table: update -> 99.9 % / 100 % of nodes, failure -> withdrawn everywhere,
// false "dead" at 10 % loss, steady-state bytes per node per second, sustained updates/s.

import { SimCluster } from '../src/cluster/simcluster';
import { DEFAULT_CONFIG } from '../src/cluster/config';
import { runScenario, SCENARIOS, type ScenarioResult } from '../src/cluster/scenarios';

const args = new Map<string, string>();
for (const a of process.argv.slice(2)) { const [k, v] = a.replace(/^--/, '').split('='); args.set(k!, v ?? 'true'); }
const quick = args.has('quick');
const SIZES = (args.get('n') ?? '100,1000').split(',').map(Number);
const SEED = Number(args.get('seed') ?? 1);
const FP_SECONDS = (args.get('fp-seconds') ?? (quick ? '60,30' : '600,180')).split(',').map(Number);
const VALUE_BYTES = 120;

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
const sec = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) + ' s' : 'n/a');
const wall = () => performance.now();

interface Row {
  n: number; loss: string; upd999p50: number; upd999p99: number; upd100p50: number; upd100p99: number; updUndelivered: number;
  failP50: number; failP99: number; failMissed: number; falseDead: number; fpSimSec: number; fpSuspicions: number;
  bytesSteady: number; bytesLoss: number; sustained: number; sustainedNote: string; wallSec: number;
}

/** Track arrivals of tagged updates at every node. */
function trackUpdates(c: SimCluster) {
  const arrivals = new Map<string, { t0: number; seen: Set<number>; times: number[] }>();
  c.nodes.forEach((node, i) => {
    node.on('change', (ev) => {
      if (ev.value === null) return;
      const tag = ev.owner + '/' + ev.key + '@' + ev.version.counter;
      const a = arrivals.get(tag);
      if (a && !a.seen.has(i)) { a.seen.add(i); a.times.push(c.clock.now() - a.t0); }
    });
  });
  return {
    write(i: number, key: string, value?: Uint8Array): string {
      const node = c.nodes[i]!;
      const v = node.set(key, value ?? new Uint8Array(VALUE_BYTES).fill(i & 255));
      const tag = node.name + '/' + key + '@' + v.counter;
      arrivals.set(tag, { t0: c.clock.now(), seen: new Set([i]), times: [0] });
      return tag;
    },
    arrivals,
  };
}

async function measureUpdates(c: SimCluster, count: number, spacingMs: number) {
  const tr = trackUpdates(c);
  const live = c.liveIdx();
  const tags: string[] = [];
  for (let u = 0; u < count; u++) {
    tags.push(tr.write(live[Math.floor(c.net.rand() * live.length)]!, 'upd/' + u));
    await c.clock.advance(spacingMs);
  }
  await c.clock.advance(10_000);
  const n = live.length;
  const t999: number[] = []; const t100: number[] = []; let undelivered = 0;
  for (const tag of tags) {
    const a = tr.arrivals.get(tag)!;
    const times = [...a.times].sort((x, y) => x - y);
    const need999 = Math.ceil(n * 0.999);
    if (times.length >= need999) t999.push(times[need999 - 1]!);
    if (times.length >= n) t100.push(times[n - 1]!); else undelivered++;
  }
  return { t999, t100, undelivered };
}

async function measureFailures(c: SimCluster, count: number, spacingMs: number) {
  const victims: number[] = [];
  const live = c.liveIdx();
  while (victims.length < count) {
    const v = live[Math.floor(c.net.rand() * live.length)]!;
    if (!victims.includes(v)) victims.push(v);
  }
  for (const v of victims) c.nodes[v]!.set('svc/failure-probe', new Uint8Array(VALUE_BYTES));
  await c.clock.advance(5000);
  const crashedAt = new Map<string, number>();
  const withdrawn = new Map<string, Map<number, number>>();
  c.nodes.forEach((node, i) => {
    node.on('member', (ev) => {
      if ((ev.state === 'dead' || ev.state === 'left') && crashedAt.has(ev.name)) {
        const m = withdrawn.get(ev.name)!;
        if (!m.has(i)) m.set(i, c.clock.now() - crashedAt.get(ev.name)!);
      }
    });
  });
  for (const v of victims) {
    const name = c.nodes[v]!.name;
    crashedAt.set(name, c.clock.now());
    withdrawn.set(name, new Map());
    await c.crash(v);
    await c.clock.advance(spacingMs);
  }
  await c.clock.advance(40_000);
  const times: number[] = []; let missed = 0;
  for (const [name, m] of withdrawn) {
    const live = c.liveIdx();
    if (live.every((i) => m.has(i))) times.push(Math.max(...live.map((i) => m.get(i)!)));
    else { missed++; void name; }
  }
  return { times, missed };
}

async function steadyBytes(c: SimCluster, seconds: number): Promise<number> {
  const b0 = c.net.totalBytes();
  await c.clock.advance(seconds * 1000);
  return (c.net.totalBytes() - b0) / c.liveIdx().length / seconds;
}

async function sustained(n: number, rates: number[], seconds: number): Promise<{ best: number; note: string }> {
  let best = 0; let note = '';
  for (const rate of rates) {
    const c = new SimCluster({ n, seed: SEED + rate });
    await c.startSeeded();
    await c.clock.advance(5000);
    const tr = trackUpdates(c);
    const tags: string[] = [];
    const interval = 1000 / rate;
    const total = Math.round(rate * seconds);
    const b0 = c.net.totalBytes();
    for (let u = 0; u < total; u++) {
      tags.push(tr.write(Math.floor(c.net.rand() * n), 'load/' + (u % 5000)));
      await c.clock.advance(interval);
    }
    const bytes = (c.net.totalBytes() - b0) / n / seconds;
    await c.clock.advance(5000);
    let late = 0;
    for (const tag of tags) {
      const a = tr.arrivals.get(tag)!;
      // "without loss" = reached every node by gossip within 5 s of the end of the run (no anti-entropy needed)
      if (a.times.length < n) late++;
    }
    const dropped = c.totalMetric('queueDropped');
    await c.stopAll();
    const ok = late === 0 && dropped === 0;
    process.stderr.write(`  N=${n} rate=${rate}/s: ${ok ? 'ok' : 'LOSS'} (late ${late}/${tags.length}, queue drops ${dropped}, ${bytes.toFixed(0)} B/node/s)\n`);
    if (!ok) { note = `${rate}/s loses (${late} late, ${dropped} dropped)`; break; }
    best = rate; note = `${bytes.toFixed(0)} B/node/s at ${rate}/s`;
  }
  return { best, note };
}

async function runSize(n: number, fpSeconds: number): Promise<Row> {
  const w0 = wall();
  process.stderr.write(`N=${n}: steady state, updates, failures...\n`);
  const c = new SimCluster({ n, seed: SEED });
  await c.startSeeded();
  await c.clock.advance(10_000);
  const bytesSteady = await steadyBytes(c, 30);
  const upd = await measureUpdates(c, quick ? 20 : 60, 300);
  const fail = await measureFailures(c, quick ? 5 : 12, 1500);
  await c.stopAll();

  process.stderr.write(`N=${n}: 10% loss for ${fpSeconds} simulated s...\n`);
  const lc = new SimCluster({ n, seed: SEED + 100, loss: 0.1 });
  await lc.startSeeded();
  await lc.clock.advance(5000);
  const bl0 = lc.net.totalBytes();
  await lc.clock.advance(fpSeconds * 1000);
  const bytesLoss = (lc.net.totalBytes() - bl0) / n / fpSeconds;
  const falseDead = lc.totalMetric('deadDeclared');
  const fpSuspicions = lc.totalMetric('suspicionsRaised');
  await lc.stopAll();

  process.stderr.write(`N=${n}: sustained update rate...\n`);
  const rates = [5, 10, 20, 40, 80, 160, 320];
  const st = await sustained(n, quick ? rates.slice(0, 3) : rates, n <= 100 ? 20 : 10);
  return {
    n, loss: '0 %', upd999p50: pct(upd.t999, 50), upd999p99: pct(upd.t999, 99), upd100p50: pct(upd.t100, 50), upd100p99: pct(upd.t100, 99),
    updUndelivered: upd.undelivered, failP50: pct(fail.times, 50), failP99: pct(fail.times, 99), failMissed: fail.missed,
    falseDead, fpSimSec: fpSeconds, fpSuspicions, bytesSteady, bytesLoss, sustained: st.best, sustainedNote: st.note, wallSec: (wall() - w0) / 1000,
  };
}

/**
 * Issue 11: the gray-failure scenarios (1 % of the nodes faulty), stock SWIM + Lifeguard rules
 * (calmMembership: false) next to the calm membership rules, same seed and network.
 */
async function grayTable(n: number, seconds: number): Promise<void> {
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const cell = (r: ScenarioResult): string[] => [
    `${r.healthySuspected} / ${r.healthyRemoved} (${r.healthyRefuted} refuted)`,
    `${r.distinctViews} / ${(r.agreement * 100).toFixed(0)} %`,
    r.kind === 'none' ? '–' : Number.isFinite(r.removedEverywhereMs) ? `${sec(r.removedEverywhereMs)}${r.shownAfterRemoval > 0 ? `, then shown ${(r.shownAfterRemoval * 100).toFixed(1)} %` : ', kept out'}` : 'never',
    r.kind === 'none' || r.kind === 'crash' ? '–' : Number.isFinite(r.returnedMs) ? sec(r.returnedMs) : 'not within 60 s',
    f1(r.bytesPerNodeSec / 1000),
    `${sec(r.updateP99Ms)}${r.updatesUndelivered ? ` (${r.updatesUndelivered} undelivered)` : ''}`,
  ];
  console.log(`\nGray failures: N = ${n}, 1 % faulty, ${seconds} s of fault, then 60 s of recovery; seed ${SEED}; one table update every 2 s.`);
  console.log('Healthy flips = healthy member alive -> suspect / -> dead, summed over healthy observers. Views = distinct sets of visible members among healthy nodes / samples (1 per s) in full agreement.\n');
  console.log('| scenario | rules | healthy flips suspect / dead | distinct views / agreeing samples | faulty removed everywhere | recovered back after | KB/s per node | table update p99 | wall |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  const only = args.get('scenarios')?.split(',');
  const checks: string[] = [];
  for (const s of SCENARIOS) {
    if (only && !only.includes(s.kind)) continue;
    const rules = args.get('rules') ?? 'both';
    for (const calm of [false, true]) {
      if ((rules === 'stock' && calm) || (rules === 'calm' && !calm)) continue;
      const w0 = wall();
      process.stderr.write(`gray: N=${n} ${s.kind} ${calm ? 'calm' : 'stock'}...\n`);
      const r = await runScenario({ kind: s.kind, n, seed: SEED, faulty: 0.01, faultMs: seconds * 1000, config: { calmMembership: calm } });
      console.log(`| ${s.label} | ${calm ? 'calm' : 'stock'} | ${cell(r).join(' | ')} | ${((wall() - w0) / 1000).toFixed(0)} s |`);
      if (calm) checks.push(`${s.label}: ${targetsOf(r).join(', ')}`);
    }
  }
  if (checks.length > 0) console.log(`\nIssue 11 targets (calm rules):\n${checks.map((c) => '* ' + c).join('\n')}`);
}

/** The issue-11 targets a scenario result meets or misses, as short "name ok/MISSED (value)" strings. */
function targetsOf(r: ScenarioResult): string[] {
  const out: string[] = [];
  const mark = (name: string, ok: boolean, v: string) => out.push(`${name} ${ok ? 'ok' : 'MISSED'} (${v})`);
  mark('0 healthy flipped', r.healthySuspected === 0 && r.healthyRemoved === 0, `${r.healthySuspected}/${r.healthyRemoved}`);
  if (r.kind === 'crash') mark('withdrawn <= 10 s', r.removedEverywhereMs <= 10_000, sec(r.removedEverywhereMs));
  else if (r.kind !== 'none') {
    mark('removed <= 30 s and kept out', r.removedEverywhereMs <= 30_000 && r.shownAfterRemoval === 0, sec(r.removedEverywhereMs));
    mark('back after probation', Number.isFinite(r.returnedMs), sec(r.returnedMs));
  }
  mark('<= 4 views', r.distinctViews <= 4, String(r.distinctViews));
  mark('>= 95 % agreeing', r.agreement >= 0.95, `${(r.agreement * 100).toFixed(1)} %`);
  mark('<= 1 KB/s', r.bytesPerNodeSec <= 1000, `${(r.bytesPerNodeSec / 1000).toFixed(2)} KB/s`);
  mark('update p99 <= 2 s', r.updateP99Ms <= 2000 && r.updatesUndelivered === 0, sec(r.updateP99Ms));
  return out;
}

/**
 * Issue 10: propagation part of "`ax policy add` returning -> enforced on every host". A policy rule
 * travels as a `pol/<id>` entry (src/daemon/cluster.ts publishRule: JSON of a PolicyRecord); measured
 * from `set()` on one node until every live node emitted the `change` event. With `crashed`, 1 % of
 * the nodes crash (no leave) just before the first write, so the first writes race their detection.
 */
async function policyPropagation(n: number, writes: number, crashed: boolean, eager: boolean) {
  const c = new SimCluster({ n, seed: SEED, ...(eager ? {} : { config: { eagerPushNodes: 0 } }) });
  await c.startSeeded();
  await c.clock.advance(10_000);
  if (crashed) await c.crashPercent(1);
  const tr = trackUpdates(c);
  const tags: string[] = [];
  const b0 = c.net.totalBytes();
  for (let u = 0; u < writes; u++) {
    const live = c.liveIdx();
    const w = live[Math.floor(c.net.rand() * live.length)]!;
    const rec = {
      id: `r${u}`, rev: { t: 1_764_000_000_000 + u, node: c.nodes[w]!.name },
      rule: { action: 'deny', from: { labels: { app: 'web', tier: 'front' } }, to: { labels: { app: 'db' } }, ports: [5432] },
    };
    tags.push(tr.write(w, `pol/r${u}`, new TextEncoder().encode(JSON.stringify(rec))));
    await c.clock.advance(1000);
  }
  const bytes = (c.net.totalBytes() - b0) / c.liveIdx().length / writes;
  await c.clock.advance(10_000);
  const live = c.liveIdx().length;
  const t100: number[] = []; let undelivered = 0;
  for (const tag of tags) {
    const a = tr.arrivals.get(tag)!;
    if (a.times.length >= live) t100.push(Math.max(...a.times)); else undelivered++;
  }
  await c.stopAll();
  return { p50: pct(t100, 50), p99: pct(t100, 99), max: t100.length ? Math.max(...t100) : NaN, undelivered, bytes };
}

async function propagationTable(): Promise<void> {
  const n = Number(args.get('prop-n') ?? 1000);
  const writes = Number(args.get('prop-writes') ?? 60);
  console.log(`\nPolicy propagation (issue 10, propagation part): a pol/<id> entry (~190 B JSON) written at one node until every live node has it; N = ${n}, ${writes} writes 1 s apart, seed ${SEED}.`);
  console.log('The local part (rule applied -> connections cut) is measured by bench/policy.ts (enforce, cluster).\n');
  console.log('| cluster | eager push | p50 | p99 | max | bytes/node/s (1 write/s) | wall |');
  console.log('|---|---|---|---|---|---|---|');
  const eagerModes = { on: [true], off: [false], both: [true, false] }[args.get('prop-eager') ?? 'both'];
  if (!eagerModes) throw new Error('--prop-eager must be on, off or both');
  for (const crashed of [false, true]) {
    for (const eager of eagerModes) {
      const w0 = wall();
      process.stderr.write(`propagation: N=${n} ${crashed ? '1 % crashed' : 'no fault'} eager=${eager}...\n`);
      const r = await policyPropagation(n, writes, crashed, eager);
      console.log(`| ${crashed ? '1 % crashed (no leave) before the first write' : 'no fault'} | ${eager ? 'on (default)' : 'off (eagerPushNodes 0; lazy HEADs on)'} | ${sec(r.p50)} | ${sec(r.p99)}${r.undelivered ? ` (${r.undelivered} not everywhere in 10 s)` : ''} | ${sec(r.max)} | ${r.bytes.toFixed(0)} | ${((wall() - w0) / 1000).toFixed(0)} s |`);
    }
  }
}

async function main(): Promise<void> {
  if (args.has('propagation')) { await propagationTable(); return; }
  if (!args.has('no-gray')) await grayTable(Number(args.get('gray-n') ?? (quick ? 200 : 1000)), Number(args.get('gray-seconds') ?? 160));
  if (args.has('gray-only')) return;
  const rows: Row[] = [];
  for (let k = 0; k < SIZES.length; k++) rows.push(await runSize(SIZES[k]!, FP_SECONDS[k] ?? FP_SECONDS[FP_SECONDS.length - 1]!));
  const d = DEFAULT_CONFIG;
  console.log(`\nParameters: one-way delay 1 ms + exp(mean 4 ms) capped at 100 ms; TCP model RTO 200 ms; auth overhead 24 B/packet counted; value ${VALUE_BYTES} B; seed ${SEED}.`);
  console.log(`Config: probe ${d.probeIntervalMs}/${d.probeTimeoutMs} ms, indirect ${d.indirectChecks}, suspicion ${d.suspicionMult}×log10(N+1)×probe..×${d.suspicionMaxMult} (K=${d.suspicionConfirmations}, verifiers ${d.suspicionVerifiers}), gossip ${d.gossipIntervalMs} ms × ${d.gossipNodes}, retransmit ${d.retransmitMult}×max(3, ceil(log10(N+1))), anti-entropy ${d.pushPullIntervalMs / 1000} s, packet ${d.maxPacketSize} B.\n`);
  console.log('| N | loss | update → 99.9 % p50 / p99 | update → 100 % p50 / p99 | failure → withdrawn everywhere p50 / p99 | false "dead" at 10 % loss | bytes/node/s (steady, 0 % / 10 % loss) | updates/s sustained without loss | wall |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.n} | ${r.loss} | ${sec(r.upd999p50)} / ${sec(r.upd999p99)} | ${sec(r.upd100p50)} / ${sec(r.upd100p99)}${r.updUndelivered ? ` (${r.updUndelivered} not at 100 % in 10 s)` : ''} | ${sec(r.failP50)} / ${sec(r.failP99)}${r.failMissed ? ` (${r.failMissed} missed)` : ''} | ${r.falseDead} in ${r.fpSimSec} s × ${r.n} nodes (${r.fpSuspicions} suspicions, all refuted) | ${r.bytesSteady.toFixed(0)} / ${r.bytesLoss.toFixed(0)} | ≥ ${r.sustained} (${r.sustainedNote}) | ${r.wallSec.toFixed(0)} s |`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
