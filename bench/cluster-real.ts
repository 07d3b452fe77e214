// The cluster figures measured on a real 3-host cluster: three network
// namespaces on a bridge, one daemon each (the same setup as test/multihost).
//
//   update → every host   an app registered on b until a and c list it (p50/max of 10)
//   failure → withdrawn   b's daemon SIGKILLed until a and c no longer list b's entries (3 trials)
//   bytes/node/s          what each host sends on its link in steady state (10 s, from the
//                         kernel's interface counters: gossip, probes and anti-entropy)
//   false "dead"          members declared dead while all are up, with 10 % of the packets on
//                         every link dropped (nftables numgen) for 60 s
//
// Run as root: `node dist/cluster-real.js` (after `npm run build`).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const AX = join(ROOT, 'dist', 'ax.js');
const KEY = 'bench-cluster-key-0123456789';
const LOSS_SECONDS = Number(process.env.AX_BENCH_LOSS_SECONDS ?? 60);
const tag = `b${process.pid % 10000}`;
const procs: ChildProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sh = (cmd: string) => {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
};

interface Host {
  name: string;
  ns: string;
  ip: string;
  dev: string;
  dir: string;
  sock: string;
  daemon?: ChildProcess;
  log: string;
}

function mkHost(i: number, name: string): Host {
  const dir = mkdtempSync(join(tmpdir(), `ax-cb-${name}-`));
  chmodSync(dir, 0o755);
  const h: Host = { name, ns: `${tag}h${i}`, ip: `10.98.0.${i}`, dev: `${tag}v${i}`, dir, sock: join(dir, 'ax.sock'), log: '' };
  sh(`ip netns add ${h.ns} && ip link add ${h.dev} type veth peer name ${h.dev}p && ip link set ${h.dev}p netns ${h.ns}`);
  sh(`ip -n ${h.ns} addr add ${h.ip}/24 dev ${h.dev}p && ip -n ${h.ns} link set ${h.dev}p up && ip -n ${h.ns} link set lo up`);
  sh(`ip link set ${h.dev} master ${tag}br up`);
  return h;
}

async function startDaemon(h: Host, seeds: string[]): Promise<void> {
  const p = spawn('ip', ['netns', 'exec', h.ns, process.execPath, AX, 'daemon', '--node-name', h.name, '--advertise', h.ip, '--socket', h.sock,
    '--state-dir', join(h.dir, 'state'), '--cluster-key', KEY, ...seeds.flatMap((j) => ['--join', j])], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  procs.push(p);
  h.daemon = p;
  p.stderr!.on('data', (d) => (h.log += d));
  p.stdout!.on('data', (d) => (h.log += d));
  while (!/ready: api/.test(h.log)) await sleep(20);
}

function get(h: Host, kind: string): Array<Record<string, unknown>> {
  const r = spawnSync(process.execPath, [AX, 'get', kind, '-o', 'json', '--socket', h.sock], { encoding: 'utf8' });
  return r.status === 0 ? JSON.parse(r.stdout) : [];
}

async function until(fn: () => boolean, ms: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (fn()) return Date.now() - t0;
    await sleep(10);
  }
  return NaN;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function main(): Promise<void> {
  sh(`ip link add ${tag}br type bridge && ip link set ${tag}br up`);
  const hosts = [mkHost(1, 'a'), mkHost(2, 'b'), mkHost(3, 'c')];
  const [a, b, c] = hosts;
  const cleanup = () => {
    for (const p of procs) try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ }
    for (const h of hosts) { spawnSync('ip', ['netns', 'del', h.ns]); spawnSync('ip', ['link', 'del', h.dev]); rmSync(h.dir, { recursive: true, force: true }); }
    spawnSync('ip', ['link', 'del', `${tag}br`]);
  };
  try {
    await startDaemon(a, []);
    await startDaemon(b, [a.ip]);
    await startDaemon(c, [a.ip]);
    await until(() => get(a, 'members').filter((m) => m.state === 'alive').length === 3, 20000);

    // update → every host
    const upd: number[] = [];
    for (let i = 0; i < 10; i++) {
      const app = spawn('ip', ['netns', 'exec', b.ns, process.execPath, AX, 'run', '--socket', b.sock, '--no-start', '--name', `u${i}`, '--', 'sleep', '30'], { stdio: 'ignore', detached: true });
      procs.push(app);
      await until(() => get(b, 'apps').some((x) => x.name === `u${i}`), 10000);
      upd.push(await until(() => [a, c].every((h) => get(h, 'apps').some((x) => x.name === `u${i}`)), 10000));
      process.kill(-app.pid!, 'SIGKILL');
    }

    // bytes/node/s in steady state
    await sleep(3000);
    const rx = () => hosts.map((h) => Number(readFileSync(`/sys/class/net/${h.dev}/statistics/rx_bytes`, 'utf8')));
    const r0 = rx();
    await sleep(10_000);
    const r1 = rx();
    const bps = hosts.map((_, i) => (r1[i] - r0[i]) / 10);

    // false "dead" at 10 % loss
    let falseDead = -1;
    const nft = spawnSync('sh', ['-c', 'command -v nft']).status === 0;
    if (nft) {
      const before = hosts.map((h) => (h.log.match(/-> dead/g) ?? []).length);
      for (const h of hosts) sh(`ip netns exec ${h.ns} nft 'add table inet axloss; add chain inet axloss in { type filter hook input priority 0; }; add rule inet axloss in iifname "${h.dev}p" numgen random mod 10 0 drop'`);
      await sleep(LOSS_SECONDS * 1000);
      for (const h of hosts) sh(`ip netns exec ${h.ns} nft delete table inet axloss`);
      falseDead = hosts.reduce((n, h, i) => n + (h.log.match(/-> dead/g) ?? []).length - before[i], 0);
    }

    // failure → withdrawn (3 trials; b restarted in between, with its saved state)
    const fail: number[] = [];
    for (let i = 0; i < 3; i++) {
      const svc = spawn('ip', ['netns', 'exec', b.ns, process.execPath, AX, 'run', '--socket', b.sock, '--no-start', '--name', `f${i}`, '--', 'python3', '-m', 'http.server', '80'], { stdio: 'ignore', detached: true });
      procs.push(svc);
      await until(() => [a, c].every((h) => get(h, 'services').some((s) => s.node === 'b')), 15000);
      process.kill(-b.daemon!.pid!, 'SIGKILL');
      process.kill(-svc.pid!, 'SIGKILL');
      fail.push(await until(() => [a, c].every((h) => !get(h, 'services').some((s) => s.node === 'b')), 30000));
      b.log = '';
      await startDaemon(b, []);
      await until(() => get(a, 'members').find((m) => m.name === 'b')?.state === 'alive', 20000);
    }

    console.log(`\nax cluster on 3 real hosts (network namespaces on a bridge, one daemon each, default timing: probe 500 ms)\n`);
    console.log('| figure | result |');
    console.log('|---|---|');
    console.log(`| update → every host (10 updates) | p50 ${pct(upd, 0.5)} ms, max ${Math.max(...upd)} ms |`);
    console.log(`| failure → withdrawn everywhere (3 SIGKILLs) | p50 ${pct(fail, 0.5)} ms, max ${Math.max(...fail)} ms |`);
    console.log(`| bytes per node per second, steady | ${bps.map((x) => x.toFixed(0)).join(' / ')} (a / b / c) |`);
    console.log(`| false "dead" at 10 % loss | ${falseDead < 0 ? 'not measured (nft missing)' : `${falseDead} in ${LOSS_SECONDS} s × 3 nodes`} |`);
  } finally {
    cleanup();
  }
}

main().catch((e) => {
  console.error(`cluster bench failed: ${(e as Error).stack}`);
  process.exitCode = 1;
});
