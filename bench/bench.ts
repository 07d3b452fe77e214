// ax benchmark: native vs ax vs a userspace proxy (socat, the "sidecar"), side
// by side in one run, as ratios. Run with `npm run bench` (after `npm install`).
//
//   throughput     iperf3, one TCP stream, 5 s (Gbit/s)
//   connect        connect()+close() loop: p50/p99 latency and connections/s
//   handoffs/s     the daemon's rate with two clients in parallel (2 cores)
//   daemon RSS     resident memory of the daemon after the runs
//
// Virtual addresses are used, so the whole run happens in a loopback-only
// network namespace (re-executed under `unshare -n`).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const AX = join(ROOT, 'dist', 'ax.js');
const CONNECT = join(ROOT, 'native', 'build', 'bench-connect');
const N = Number(process.env.AX_BENCH_CONNECTS ?? 20000);
const SECONDS = Number(process.env.AX_BENCH_SECONDS ?? 5);

if (!process.env.AX_ISOLATED) {
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, __filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, AX_ISOLATED: '1' },
  });
  if (r.error || r.status === null) console.error('bench: needs a private network namespace (unshare -n): run as root');
  process.exit(r.status ?? 1);
}

const procs: ChildProcess[] = [];
function bg(cmd: string, args: string[], env = process.env): { p: ChildProcess; out: () => string } {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (out += d));
  procs.push(p);
  return { p, out: () => out };
}
async function waitOut(h: { out: () => string }, re: RegExp, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!re.test(h.out())) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${re}: ${h.out()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
function fg(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}
const has = (c: string) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'ax-bench-'));
const sock = join(dir, 'ax.sock');
const axRun = (args: string[]) => [AX, 'run', '--socket', sock, '--no-start', ...args];

interface Row {
  metric: string;
  native: number;
  ax: number;
  sidecar?: number;
  unit: string;
  higherIsBetter: boolean;
}
const rows: Row[] = [];

function iperf(args: string[], prefix: string[] = []): number {
  const out = prefix.length ? fg(process.execPath, [...prefix, 'iperf3', ...args, '-J']) : fg('iperf3', [...args, '-J']);
  const j = JSON.parse(out.slice(out.indexOf('{')));
  return j.end.sum_received.bits_per_second / 1e9;
}

/** utime + stime of a process, in seconds. */
function daemonCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15, in USER_HZ (100)
}

function handoffCount(): number {
  const out = fg(process.execPath, [AX, 'status', '--socket', sock]);
  return Number(/^handoffs\s+(\d+)/m.exec(out)?.[1] ?? 0);
}

function connectRun(prefix: string[], host: string, port: string, n = N): { p50: number; p99: number; cps: number } {
  const out = prefix.length ? fg(process.execPath, [...prefix, CONNECT, 'client', host, port, String(n)]) : fg(CONNECT, ['client', host, port, String(n)]);
  const m = /p50_us=([\d.]+) p99_us=([\d.]+) cps=(\d+) errors=(\d+)/.exec(out);
  if (!m) throw new Error(`bench-connect: ${out}`);
  return { p50: +m[1], p99: +m[2], cps: +m[3] };
}

async function main(): Promise<void> {
  if (!existsSync(AX) || !existsSync(CONNECT)) throw new Error('run `npm run build` first');
  const daemon = bg(process.execPath, [AX, 'daemon', '--socket', sock, '--state-dir', join(dir, 'state'), '--log-level', 'warn']);
  await waitOut(daemon, /ready|^/, 100);
  for (let i = 0; i < 200 && !existsSync(sock); i++) await sleep(25);
  await sleep(200);

  // ---- throughput ----
  if (has('iperf3')) {
    bg('iperf3', ['-s', '-p', '5201']);
    const axSrv = bg(process.execPath, axRun(['--name', 'ip3', '--', 'iperf3', '-s', '--forceflush', '-p', '5202']));
    const side = has('socat') ? bg('socat', ['TCP-LISTEN:6201,fork,reuseaddr,bind=127.0.0.1', 'TCP:127.0.0.1:5201']) : null;
    await sleep(500);
    await waitOut(axSrv, /Server listening/);
    const native = iperf(['-c', '127.0.0.1', '-p', '5201', '-t', String(SECONDS)]);
    const ax = iperf(['-c', 'ip3', '-p', '5202', '-t', String(SECONDS)], axRun(['--']));
    const sidecar = side ? iperf(['-c', '127.0.0.1', '-p', '6201', '-t', String(SECONDS)]) : undefined;
    rows.push({ metric: 'TCP throughput (iperf3, 1 stream)', native, ax, sidecar, unit: 'Gbit/s', higherIsBetter: true });
  } else {
    console.error('iperf3 is not installed: throughput skipped (apt-get install iperf3)');
  }

  // ---- connect latency and rate ----
  const natSrv = bg(CONNECT, ['server', '7001']);
  const axSrv = bg(process.execPath, axRun(['--name', 'cb', '--', CONNECT, 'server', '80']));
  const side = has('socat') ? bg('socat', ['TCP-LISTEN:7101,fork,reuseaddr,backlog=4096,bind=127.0.0.1', 'TCP:127.0.0.1:7001']) : null;
  await waitOut(natSrv, /listening/);
  await waitOut(axSrv, /listening/);
  await sleep(300);
  connectRun([], '127.0.0.1', '7001', 2000); // warm-up
  connectRun(axRun(['--']), 'cb', '80', 2000);
  const n = connectRun([], '127.0.0.1', '7001');
  const a = connectRun(axRun(['--']), 'cb', '80');
  const s = side ? connectRun([], '127.0.0.1', '7101', Math.min(N, 5000)) : undefined;
  rows.push({ metric: 'connect p50', native: n.p50, ax: a.p50, sidecar: s?.p50, unit: 'µs', higherIsBetter: false });
  rows.push({ metric: 'connect p99', native: n.p99, ax: a.p99, sidecar: s?.p99, unit: 'µs', higherIsBetter: false });
  rows.push({ metric: 'connections/s (connect+close loop)', native: n.cps, ax: a.cps, sidecar: s?.cps, unit: '/s', higherIsBetter: true });

  // ---- daemon handoff rate: two clients at once ----
  const cpu0 = daemonCpuSeconds(daemon.p.pid!);
  const h0 = handoffCount();
  const t0 = Date.now();
  const par = await Promise.all(
    [0, 1].map(
      (i) =>
        new Promise<number>((resolve, reject) => {
          const h = bg(process.execPath, axRun(['--', CONNECT, 'client', 'cb', '80', String(N)]));
          h.p.on('exit', (code) => (code === 0 ? resolve(Number(/cps=(\d+)/.exec(h.out())?.[1] ?? 0)) : reject(new Error(`client ${i}: ${h.out()}`))));
        }),
    ),
  );
  const handoffRate = (2 * N) / ((Date.now() - t0) / 1000);
  const perCpuSecond = (handoffCount() - h0) / (daemonCpuSeconds(daemon.p.pid!) - cpu0);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.p.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

  // ---- table ----
  const f = (x: number | undefined) => (x === undefined ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(2));
  const ratio = (x: number | undefined, base: number) => (x === undefined ? '-' : `${(x / base).toFixed(2)}×`);
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  console.log(`\nax benchmark — ${cpus().length} × ${cpu}, Linux ${fg('uname', ['-r']).trim()}, Node ${process.version}; connects per run: ${N}\n`);
  console.log('| metric | native | ax | ax / native | socat sidecar | sidecar / native |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.metric} (${r.unit}) | ${f(r.native)} | ${f(r.ax)} | ${ratio(r.ax, r.native)} | ${f(r.sidecar)} | ${ratio(r.sidecar, r.native)} |`);
  }
  const p50 = rows.find((r) => r.metric === 'connect p50')!;
  console.log(`\n- connect p50 added by ax: ${(p50.ax - p50.native).toFixed(1)} µs`);
  console.log(
    `- daemon handoffs/s, two clients in parallel: ${par.reduce((x, y) => x + y, 0)} (${par.join(' + ')} connects/s while both ran; ` +
      `${handoffRate.toFixed(0)}/s over the whole wall time including \`ax run\` start-up; the clients share the 2 cores)`,
  );
  console.log(`- daemon capacity: ${perCpuSecond.toFixed(0)} handoffs per CPU-second of the daemon (${(1e6 / perCpuSecond).toFixed(1)} µs each)`);
  console.log(`- daemon resident memory after the runs: ${rss.toFixed(0)} MiB`);
}

main()
  .catch((e) => {
    console.error(`bench failed: ${(e as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const p of procs) p.kill('SIGKILL');
    setTimeout(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit();
    }, 300);
  });
