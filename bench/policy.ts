// Policy benchmark (`npm run bench:policy`, as root: it runs in its own loopback-only
// network namespace).
//
//   enforce   time from `ax policy add` (PolicyPut) returning to the first connect that
//             is refused, measured as: rule put -> a waiting client under ax connects to the
//             VIP -> its answer. The same round trip with no rule change is the baseline
//             (the client's own cost); p50/p99 over ROUNDS add/rm pairs. Every connect right
//             after an add must be refused (enforcement is synchronous with the reply).
//   connect   connect()+close() rate of bench-connect under ax with no rules vs 1000
//             rules (none matching), alternating, REPEATS each; once with the default
//             handoff (hooks cache answers) and once with --handoff fd (the daemon decides
//             every connect, so every connect runs the decision layer).
//   cluster   (with --cluster) three hosts (network namespaces on a bridge, one daemon each):
//             a rule added on a, a client on c of a service on b; time from the add returning
//             on a until c refuses, and from the rm until c connects again; p50/p99.
//   sim       (with --sim) the 1 000-node simulator (src/cluster/sim.ts, virtual time): every
//             node runs a PolicyEngine fed by the daemon's own replication code
//             (src/daemon/cluster.ts: decodePolicyEntry, mergePeerRecords, publishesRecord:
//             the origin and 3 rendezvous holders publish). A deny rule is put at a random
//             live node (as `ax policy add` there); each node holds a connection the rule
//             denies; the time until every live node's engine denies it (new connects refused,
//             the revocation pass's verdict for the held connection: PolicyRuntime.allowed),
//             plus the local cost on the receiving host (entry merged -> connection cut),
//             sampled from the 3-host figure of --cluster when it runs in the same call
//             (else from --local-ms=a,b,...). Then the rule is removed (allowed everywhere).
//             --sim-n (1000), --sim-rules (40), --sim-crashed (1: also with 1 % crashed), --seed (1).
// --only=enforce,auto,fd: run only those parts of the default run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AxClient } from '../src/cli/client';

import { AX, bg, CONNECT, inLoopbackNamespace, lineDriver, procs, waitOut, type Bg } from './common';
import { SimCluster } from '../src/cluster/simcluster';
import { attachPolicyReplica } from '../src/policy/replica';
import { PolicyEngine, type PolicyApp, type PolicyService } from '../src/policy/decide';
import { checkRule } from '../src/policy/rules';

const ROUNDS = Number(process.env.AX_BENCH_ROUNDS ?? 300);
const N = Number(process.env.AX_BENCH_CONNECTS ?? 10000);
const REPEATS = Number(process.env.AX_BENCH_REPEATS ?? 3);
const CLUSTER_ROUNDS = Number(process.env.AX_BENCH_CLUSTER_ROUNDS ?? 20);

inLoopbackNamespace('bench:policy', __filename);
const PIPE = { stdin: 'pipe' as const }; // drivers are fed line by line

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function daemon(extra: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'ax-bench-pol-'));
  const socket = join(dir, 'ax.sock');
  const h = bg(process.execPath, [AX, 'daemon', '--socket', socket, '--state-dir', join(dir, 'state'), '--log-level', 'info', ...extra], PIPE);
  await waitOut(h, /ready: api/);
  return { dir, socket, h, run: (args: string[]) => bg(process.execPath, [AX, 'run', '--socket', socket, '--no-start', ...args], PIPE) };
}

// A client under ax: for each line on stdin, connects to argv[1]:argv[2] and prints ok or the errno.
const DRIVER = `
import socket, sys, errno
h, p = sys.argv[1], int(sys.argv[2])
print('ready', flush=True)
for line in sys.stdin:
    try:
        s = socket.create_connection((h, p), timeout=5); s.close(); print('ok', flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;

// A client under ax holding a connection: for each line on stdin, connects to argv[1]:argv[2],
// prints "open", blocks until the connection is cut and prints "cut" with CLOCK_MONOTONIC in ns
// (process.hrtime's clock: the two are comparable on one host, across network namespaces too).
const HOLDER = `
import socket, sys, time
h, p = sys.argv[1], int(sys.argv[2])
print('ready', flush=True)
for line in sys.stdin:
    try:
        s = socket.create_connection((h, p), timeout=5)
    except OSError as e:
        print('refused', e.errno, flush=True); continue
    s.settimeout(None)
    print('open', flush=True)
    try:
        s.recv(1)
    except OSError:
        pass
    print('cut', time.monotonic_ns(), flush=True)
    s.close()
`;

// A server that keeps every connection it accepts open (never reads, never closes).
const KEEPER = `
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('0.0.0.0', 81)); l.listen(128)
print('listening', flush=True)
held = []
while True:
    held.append(l.accept()[0])
`;

/**
 * Revocation: a connection held open by a client under ax; `put` adds the deny rule and
 * resolves when the API replied (on any host); then the time until the client saw its
 * connection cut, from that reply (negative: cut before the reply). ROUNDS rounds, the rule
 * removed (and the connection made again) between them.
 */
async function revocation(holder: Bg, put: () => Promise<unknown>, remove: () => Promise<unknown>, rounds: number): Promise<number[]> {
  const ask = lineDriver(holder);
  const cut: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let line = await ask();
    for (let k = 0; line !== 'open' && k < 100; k++) {
      await new Promise((r) => setTimeout(r, 50)); // the removal may not have reached the client's host yet
      line = await ask();
    }
    if (line !== 'open') throw new Error(`the holder could not connect: ${line}`);
    await put();
    const replied = process.hrtime.bigint();
    const m = /^cut (\d+)$/.exec(await ask(false));
    if (!m) throw new Error('the holder printed no cut');
    cut.push(Number(BigInt(m[1]) - replied) / 1e6);
    await remove();
  }
  return cut;
}

async function enforce(): Promise<void> {
  const d = await daemon([]);
  const srv = d.run(['--name', 'cb', '--labels', 'zone=default', '--', CONNECT, 'server', '80']);
  await waitOut(srv, /listening/);
  const c = new AxClient(d.socket);
  const vip = ((await c.call('ListServices')).services ?? [])[0].vip;
  const drv = d.run(['--labels', 'zone=default,role=probe', '--', 'python3', '-u', '-c', DRIVER, vip, '80']);
  await waitOut(drv, /ready/);
  const ask = lineDriver(drv);
  const rule = JSON.stringify({ id: 'probe', action: 'deny', from: 'role=probe', to: 'ax.name=cb' });
  const base: number[] = [];
  const add: number[] = [];
  const rm: number[] = [];
  const put: number[] = [];
  let missed = 0;
  for (let i = 0; i < ROUNDS; i++) {
    let t0 = performance.now();
    if ((await ask()) !== 'ok') missed++;
    base.push(performance.now() - t0);
    t0 = performance.now();
    await c.call('PolicyPut', { rules_json: [rule] });
    put.push(performance.now() - t0);
    t0 = performance.now();
    if ((await ask()) !== 'ECONNREFUSED') missed++;
    add.push(performance.now() - t0);
    await c.call('PolicyRemove', { ids: ['probe'] });
    t0 = performance.now();
    if ((await ask()) !== 'ok') missed++;
    rm.push(performance.now() - t0);
  }
  const f = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(3)} ms  p99 ${pct(xs, 99).toFixed(3)} ms`;
  console.log(`enforce (${ROUNDS} rounds; time from the API reply to the client's connect result)`);
  console.log(`  baseline connect, no change   ${f(base)}`);
  console.log(`  after policy add (refused)    ${f(add)}`);
  console.log(`  after policy rm (allowed)     ${f(rm)}`);
  console.log(`  extra over baseline (p99)     ${(pct(add, 99) - pct(base, 99)).toFixed(3)} ms;  connects not matching the rule in force: ${missed} of ${3 * ROUNDS}`);
  console.log(`  the add itself (PolicyPut call -> reply, revocation pass included)  ${f(put)}`);
  const keep = d.run(['--name', 'cb', '--labels', 'zone=default', '--', 'python3', '-u', '-c', KEEPER]);
  await waitOut(keep, /listening/);
  const holder = d.run(['--labels', 'zone=default,role=probe', '--', 'python3', '-u', '-c', HOLDER, vip, '81']);
  await waitOut(holder, /ready/);
  const REVOKES = Math.min(ROUNDS, 100);
  const cut = await revocation(holder, () => c.call('PolicyPut', { rules_json: [rule] }), () => c.call('PolicyRemove', { ids: ['probe'] }), REVOKES);
  console.log(`  existing connection cut       ${f(cut)}  (${REVOKES} rounds; from the add's reply to the client seeing the cut)`);
  for (const x of [keep, holder]) x.p.kill('SIGKILL');
  c.close();
  for (const x of [drv, srv, d.h]) x.p.kill('SIGKILL');
  rmSync(d.dir, { recursive: true, force: true });
}

async function rate(handoff: string): Promise<void> {
  const d = await daemon(['--handoff', handoff]);
  const srv = d.run(['--name', 'cb', '--', CONNECT, 'server', '80']);
  await waitOut(srv, /listening/);
  const c = new AxClient(d.socket);
  const rules = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ id: `r${i}`, action: i % 2 ? 'allow' : 'deny', from: `bench=${i},tier in (a,b)`, to: `ax.name=svc${i}`, ports: [1000 + i] }));
  const one = async (): Promise<number> => {
    const h = d.run(['--', CONNECT, 'client', 'cb', '80', String(N)]);
    await new Promise((r) => h.p.on('exit', r));
    const m = /cps=([\d.]+)/.exec(h.out());
    if (!m) throw new Error(`bench-connect: ${h.out()}`);
    return Number(m[1]);
  };
  const none: number[] = [];
  const many: number[] = [];
  // The daemon writes 1000 records to LevelDB after each change: let that settle before measuring.
  const settle = () => new Promise((r) => setTimeout(r, 2000));
  // Alternating order (none, many, many, none, ...) so a drift over the run does not favour one side.
  for (let i = 0; i < REPEATS; i++) {
    for (const withRules of i % 2 ? [true, false] : [false, true]) {
      if (withRules) await c.call('PolicyPut', { rules_json: rules }, 30_000);
      else await c.call('PolicyRemove', { ids: rules.map((_, j) => `r${j}`) }, 30_000);
      await settle();
      (withRules ? many : none).push(await one());
    }
  }
  const med = (xs: number[]) => pct(xs, 50);
  console.log(`connect rate, --handoff ${handoff} (${N} connects, median of ${REPEATS}): no rules ${med(none).toFixed(0)}/s, 1000 rules ${med(many).toFixed(0)}/s, ratio ${(med(many) / med(none)).toFixed(3)} (runs: ${none.map((x) => x.toFixed(0)).join(' ')} | ${many.map((x) => x.toFixed(0)).join(' ')})`);
  c.close();
  for (const x of [srv, d.h]) x.p.kill('SIGKILL');
  rmSync(d.dir, { recursive: true, force: true });
}

const argOf = (k: string): string | undefined => process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3);

/**
 * The 1 000-node part of "`ax policy add` returning -> enforced on every host" (see the top
 * of this file). Virtual time from the put at the origin until every live node's engine
 * denies the held connection; `local` (ms, real) is added per node: a host's own cost from the
 * entry's arrival to the connection cut, sampled at random. Per rule the slowest live node
 * counts (enforced on every host); p50/p99/max over the rules.
 */
async function simulate(n: number, rules: number, crashed: boolean, local: number[], seed: number): Promise<void> {
  const c = new SimCluster({ n, seed });
  await c.startSeeded();
  await c.clock.advance(10_000);
  if (crashed) await c.crashPercent(1);
  const svc: PolicyService = { appId: 'echo-app', name: 'echo', vip: '10.240.0.9', vport: 7000, labels: { team: 'blue', 'ax.name': 'echo' } };
  // per node: its engine, its client app (holds a connection to echo), when the held connection
  // became denied / allowed again (virtual ms), and what it published (rule id -> revision)
  const nodes = c.nodes.map((node, i) => {
    const engine = new PolicyEngine({ node: node.name, posture: 'shared-label', denyErrno: 111, unknownPeers: 'allow' });
    const app: PolicyApp = { id: `batch-${i}`, name: '', vip: '10.240.1.1', labels: { team: 'blue', role: 'batch', 'ax.node': node.name }, node: node.name, createdAt: 1 };
    const replica = attachPolicyReplica(node, engine);
    const st = { engine, app, replica, deniedAt: -1, allowedAt: -1 };
    engine.onChange(() => {
      // what a revocation pass and the next connect decide now (PolicyRuntime.allowed)
      const ok = engine.allowsApp(app, svc);
      if (!ok && st.deniedAt < 0) st.deniedAt = c.clock.now();
      if (ok && st.deniedAt >= 0 && st.allowedAt < 0) st.allowedAt = c.clock.now();
    });
    return st;
  });
  const pick = () => local[Math.floor(c.net.rand() * local.length)] ?? 0;
  const addT: number[] = [];
  const rmT: number[] = [];
  let missed = 0;
  const b0 = c.net.totalBytes();
  const t0 = c.clock.now();
  for (let u = 0; u < rules; u++) {
    for (const st of nodes) st.deniedAt = st.allowedAt = -1;
    const live = c.liveIdx();
    const origin = nodes[live[Math.floor(c.net.rand() * live.length)]!]!;
    const rule = checkRule({ id: `no-batch-${u}`, action: 'deny', from: 'role=batch', to: 'ax.name=echo', ports: [7000] });
    const start = c.clock.now();
    origin.engine.put([rule]);
    await c.clock.advance(1500);
    const rmStart = c.clock.now();
    origin.engine.remove([rule.id]);
    await c.clock.advance(1500);
    const doneAdd = live.map((i) => nodes[i]!.deniedAt);
    const doneRm = live.map((i) => nodes[i]!.allowedAt);
    if (doneAdd.some((t) => t < 0) || doneRm.some((t) => t < 0)) {
      missed++;
      continue;
    }
    addT.push(Math.max(...doneAdd.map((t) => t - start + pick())));
    rmT.push(Math.max(...doneRm.map((t) => t - rmStart + pick())));
  }
  const secs = (c.clock.now() - t0) / 1000;
  const perChange = (c.net.totalBytes() - b0) / c.liveIdx().length / (2 * rules);
  await c.clock.advance(0);
  // steady state for comparison (no rule changes)
  const b1 = c.net.totalBytes();
  await c.clock.advance(20_000);
  const steady = (c.net.totalBytes() - b1) / c.liveIdx().length / 20;
  await c.stopAll();
  const f = (xs: number[]) => (xs.length ? `p50 ${pct(xs, 50).toFixed(0)} ms  p99 ${pct(xs, 99).toFixed(0)} ms  max ${Math.max(...xs).toFixed(0)} ms` : 'n/a');
  console.log(`sim N=${n}${crashed ? ', 1 % crashed (no leave) before the first rule' : ''}, seed ${seed}, ${rules} rules (add, 1.5 s, rm, 1.5 s):`);
  console.log(`  add at one node -> every live node denies (its held connection cut): ${f(addT)}${missed ? `  (${missed} rules not everywhere within 1.5 s)` : ''}`);
  console.log(`  rm  at one node -> every live node allows again:                      ${f(rmT)}`);
  const writes = nodes.reduce((a, st) => a + st.replica.published, 0);
  console.log(`  entries written per rule change: ${(writes / (2 * rules)).toFixed(2)} (the maker's; holders publish only once it is gone)`);
  console.log(`  bytes per node: ${(perChange / 1000).toFixed(2)} KB per rule change (all sends, steady traffic included); ${((perChange * 2 * rules) / secs / 1000).toFixed(2)} KB/s while a rule changes every 1.5 s; ${(steady / 1000).toFixed(2)} KB/s with no changes`);
}

function sh(cmd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
}

async function cluster(): Promise<number[]> {
  const tag = String(process.pid % 10000);
  const br = `axbb${tag}`;
  const hosts = [1, 2, 3].map((i) => ({ i, ns: `axb${tag}-${i}`, ip: `10.97.0.${i}`, dir: mkdtempSync(join(tmpdir(), 'ax-bench-ph-')) }));
  const cleanup = () => {
    for (const h of hosts) {
      spawnSync('ip', ['netns', 'del', h.ns]);
      spawnSync('ip', ['link', 'del', `vb${tag}${h.i}`]);
      rmSync(h.dir, { recursive: true, force: true });
    }
    spawnSync('ip', ['link', 'del', br]);
  };
  try {
    sh(`ip link add ${br} type bridge && ip link set ${br} up`);
    for (const h of hosts) {
      sh(`ip netns add ${h.ns} && ip link add vb${tag}${h.i} type veth peer name vc${tag}${h.i} && ip link set vc${tag}${h.i} netns ${h.ns}`);
      sh(`ip -n ${h.ns} addr add ${h.ip}/24 dev vc${tag}${h.i} && ip -n ${h.ns} link set vc${tag}${h.i} up && ip -n ${h.ns} link set lo up && ip link set vb${tag}${h.i} master ${br} up`);
    }
    const sock = (i: number) => join(hosts[i].dir, 'ax.sock');
    const inNs = (i: number, args: string[]) => bg('ip', ['netns', 'exec', hosts[i].ns, ...args], PIPE);
    for (let i = 0; i < 3; i++) {
      const d = inNs(i, [process.execPath, AX, 'daemon', '--node-name', `h${i}`, '--advertise', hosts[i].ip, '--socket', sock(i), '--state-dir', join(hosts[i].dir, 'state'),
        '--cluster-key', 'bench-cluster-key-0123456789', '--probe-interval', '200ms', ...(i > 0 ? ['--join', hosts[0].ip] : [])]);
      await waitOut(d, /ready: api/, 30000);
    }
    const ca = new AxClient(sock(0));
    const srv = inNs(1, [process.execPath, AX, 'run', '--socket', sock(1), '--no-start', '--name', 'cb', '--', CONNECT, 'server', '80']);
    await waitOut(srv, /listening/);
    const cc = new AxClient(sock(2));
    let vip = '';
    for (let k = 0; k < 300 && !vip; k++) {
      vip = ((await cc.call('ListServices')).services ?? []).find((x) => x.name === 'cb')?.vip ?? '';
      if (!vip) await new Promise((r) => setTimeout(r, 100));
    }
    if (!vip) throw new Error('the service on b never reached c');
    const drv = inNs(2, [process.execPath, AX, 'run', '--socket', sock(2), '--no-start', '--labels', 'zone=default,role=probe', '--', 'python3', '-u', '-c', DRIVER, vip, '80']);
    await waitOut(drv, /ready/);
    const ask = lineDriver(drv);
    const until = async (want: string): Promise<number> => {
      const t0 = performance.now();
      while ((await ask()) !== want) {
        if (performance.now() - t0 > 30000) throw new Error(`c never saw ${want}`);
      }
      return performance.now() - t0;
    };
    const rule = JSON.stringify({ id: 'probe', action: 'deny', from: 'role=probe', to: 'ax.name=cb' });
    const add: number[] = [];
    const rm: number[] = [];
    await until('ok');
    for (let i = 0; i < CLUSTER_ROUNDS; i++) {
      await ca.call('PolicyPut', { rules_json: [rule] });
      add.push(await until('ECONNREFUSED'));
      await ca.call('PolicyRemove', { ids: ['probe'] });
      rm.push(await until('ok'));
    }
    const f = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(1)} ms  p99 ${pct(xs, 99).toFixed(1)} ms  max ${Math.max(...xs).toFixed(1)} ms`;
    console.log(`cluster (3 hosts, ${CLUSTER_ROUNDS} rounds): rule added on a -> refused on c: ${f(add)}`);
    console.log(`                               rule removed on a -> allowed on c: ${f(rm)}`);
    const keep = inNs(1, [process.execPath, AX, 'run', '--socket', sock(1), '--no-start', '--name', 'cb', '--', 'python3', '-u', '-c', KEEPER]);
    await waitOut(keep, /listening/);
    const holder = inNs(2, [process.execPath, AX, 'run', '--socket', sock(2), '--no-start', '--labels', 'zone=default,role=probe', '--', 'python3', '-u', '-c', HOLDER, vip, '81']);
    await waitOut(holder, /ready/);
    const cut = await revocation(holder, () => ca.call('PolicyPut', { rules_json: [rule] }), () => ca.call('PolicyRemove', { ids: ['probe'] }), CLUSTER_ROUNDS);
    console.log(`                               rule added on a -> c's connection to b cut: ${f(cut)}`);
    ca.close();
    cc.close();
    return cut;
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    cleanup();
  }
}

(async () => {
  try {
    if (process.argv.includes('--cluster') || process.argv.includes('--sim')) {
      const cut = process.argv.includes('--cluster') ? await cluster() : [];
      if (process.argv.includes('--sim')) {
        const local = argOf('local-ms')?.split(',').map(Number) ?? cut;
        console.log(`local term (entry merged -> connection cut, ms): ${local.length ? `${local.length} samples, ${argOf('local-ms') ? '--local-ms' : 'the 3-host cut figure above (a gossip hop included)'}` : 'none given: 0 (use --cluster or --local-ms)'}`);
        const n = Number(argOf('sim-n') ?? 1000);
        const rules = Number(argOf('sim-rules') ?? 40);
        const seed = Number(argOf('seed') ?? 1);
        await simulate(n, rules, false, local, seed);
        if (argOf('sim-crashed') !== '0') await simulate(n, rules, true, local, seed);
      }
      process.exit(0);
    }
    // --only=enforce,auto,fd runs a subset (default: all three)
    const only = argOf('only')?.split(',') ?? ['enforce', 'auto', 'fd'];
    if (only.includes('enforce')) await enforce();
    if (only.includes('auto')) await rate('auto');
    if (only.includes('fd')) await rate('fd');
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
  process.exit(0);
})().catch((e) => {
  console.error(e);
  for (const p of procs) p.kill('SIGKILL');
  process.exit(1);
});
