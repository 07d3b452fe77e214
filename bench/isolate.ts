// `ax run --isolate` benchmark: an isolated app's network against native, slirp4netns
// (the rootless default) and a userspace proxy (socat), in one run. Run with
// `npm run bench:isolate` (root: it makes namespaces and runs slirp4netns).
//
//   throughput   iperf3, one TCP stream, AX_BENCH_SECONDS s (Gbit/s):
//                  native        client and server in the host namespace
//                  isolated      both under `ax run --isolate` (sockets handed in by the daemon)
//                  slirp4netns   client in a namespace behind slirp4netns (10.0.2.2 -> host loopback)
//                  proxy         client -> socat TCP-LISTEN,fork -> server
//   udp          iperf3 -u -b 0 (Gbit/s received): native; client under `ax run` and under
//                `ax run --isolate` (a connected UDP socket the daemon hands in, marked for the
//                daemon's nftables egress table), both to a server under `ax run`
//   redis        redis-benchmark -q -t set,get (requests/s): native vs both isolated
//   connect      connect()+close() loop (bench-connect): connections/s and p50, native vs isolated
//                (isolated: to a service, each connect a socket the daemon makes and hands in),
//                and client and server inside one isolated app over its own 127.0.0.1 (each
//                connect made by ax-confine's supervisor: the cost of confinement)
// Variants alternate, AX_BENCH_REPEATS times each (default 3); the table shows medians and
// ratios to native.
//
//   --soak DURATION   (default 10m; e.g. 30s, 2h) instead: isolated iperf3 (TCP and UDP) and connect clients
//                     back to back for DURATION; every interval prints throughput and the
//                     daemon's threads and open fds, and the end compares first and last.
//
// The whole run happens in a loopback-only network namespace (re-executed under `unshare -n`).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AX, bg, CONNECT, fg as fgWithin, inLoopbackNamespace, median, procs, sleep, waitOut } from './common';

const SECONDS = Number(process.env.AX_BENCH_SECONDS ?? 3);
const REPEATS = Number(process.env.AX_BENCH_REPEATS ?? 3);
const CONNECTS = Number(process.env.AX_BENCH_CONNECTS ?? 5000);
const REDIS_N = Number(process.env.AX_BENCH_REDIS_N ?? 50000);

inLoopbackNamespace('bench:isolate', __filename);

/** Runs to completion (5 minutes at most: a soak interval, a slow slirp4netns start). */
const fg = (cmd: string, args: string[]) => fgWithin(cmd, args, 300_000);

/** A duration with its unit (30s, 10m, 2h) in ms. */
export function parseSoak(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)$/.exec(text);
  if (!m) throw new Error(`--soak "${text}": expected a duration like 30s, 10m or 2h`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 3_600_000);
}

/** Accepts and closes forever on 127.0.0.1:7002 (the loopback row's server). */
const LOOPBACK_SERVER = "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 7002)); s.listen(4096)\nwhile True: s.accept()[0].close()";

let sock = '';
const axRun = (args: string[], cmd: string[]) => [AX, 'run', '--socket', sock, '--no-start', ...args, '--', ...cmd];
const iso = (cmd: string[]) => fg(process.execPath, axRun(['--isolate'], cmd));

/** Gbit/s received, from iperf3 -J. */
/** Gbit/s received from iperf3 -J output; throws with iperf3's own error ("the server is busy", ...). */
function iperfGbps(json: string): number {
  const r = JSON.parse(json) as { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
  const bps = r.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error(`iperf3: ${r.error ?? 'no result'}`);
  return bps / 1e9;
}
/** Gbit/s a UDP test delivered (iperf3 -u -J): received, or sent less what was lost. */
function iperfUdpGbps(json: string): number {
  const r = JSON.parse(json) as { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum?: { bits_per_second?: number; lost_percent?: number } } };
  const rec = r.end?.sum_received?.bits_per_second;
  if (rec !== undefined) return rec / 1e9;
  const s = r.end?.sum;
  if (s?.bits_per_second === undefined) throw new Error(`iperf3: ${r.error ?? 'no result'}`);
  return (s.bits_per_second * (1 - (s.lost_percent ?? 0) / 100)) / 1e9;
}
/** requests/s of SET and GET from redis-benchmark -q (progress lines end with \r). */
function redisRps(out: string): { set: number; get: number } {
  const pick = (k: string) => Number(new RegExp(`${k}: ([\\d.]+) requests per second`).exec(out.replace(/\r/g, '\n'))?.[1] ?? NaN);
  return { set: pick('SET'), get: pick('GET') };
}
function connectStats(out: string): { cps: number; p50: number } {
  return { cps: Number(/cps=([\d.]+)/.exec(out)?.[1] ?? NaN), p50: Number(/p50_us=([\d.]+)/.exec(out)?.[1] ?? NaN) };
}

/** The daemon's threads and open fds (from /proc). */
function daemonUsage(pid: number): { threads: number; fds: number; rssMiB: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    threads: Number(/^Threads:\s+(\d+)/m.exec(st)?.[1] ?? NaN),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    rssMiB: Number(/^VmRSS:\s+(\d+)/m.exec(st)?.[1] ?? NaN) / 1024,
  };
}

async function main(): Promise<void> {
  if (!existsSync(AX) || !existsSync(CONNECT)) throw new Error('run `npm run build` first');
  const soakAt = process.argv.indexOf('--soak');
  const soakMs = soakAt >= 0 ? parseSoak(process.argv[soakAt + 1] && !process.argv[soakAt + 1].startsWith('--') ? process.argv[soakAt + 1] : '10m') : 0;
  const dir = mkdtempSync(join(tmpdir(), 'ax-bench-isolate-'));
  sock = join(dir, 'ax.sock');
  const daemon = bg(process.execPath, [AX, 'daemon', '--socket', sock, '--state-dir', join(dir, 'state'), '--ports', '42000-43000']);
  await waitOut(daemon, /ready: api/);
  const daemonPid = daemon.p.pid!;

  // Servers: native iperf3 and redis, the same under --isolate, socat in front of native iperf3.
  const natIperf = bg('iperf3', ['-s', '-4', '-p', '5201', '--forceflush']);
  const isoIperf = bg(process.execPath, axRun(['--isolate', '--name', 'ipsrv'], ['iperf3', '-s', '-4', '-p', '5201', '--forceflush']));
  const axIperfU = bg(process.execPath, axRun(['--name', 'ipusrv'], ['iperf3', '-s', '-4', '-p', '5202', '--forceflush']));
  bg('socat', ['TCP-LISTEN:5301,bind=127.0.0.1,fork,reuseaddr', 'TCP:127.0.0.1:5201']);
  const natConn = bg(CONNECT, ['server', '7001']);
  const isoConn = bg(process.execPath, axRun(['--isolate', '--name', 'cb'], [CONNECT, 'server', '80']));
  await Promise.all([waitOut(natIperf, /listening/), waitOut(isoIperf, /listening/), waitOut(axIperfU, /listening/), waitOut(natConn, /listening/), waitOut(isoConn, /listening/)]);
  await sleep(300); // socat is listening once its process runs; give it a moment

  if (soakMs > 0) {
    await soak(soakMs, daemonPid);
    return;
  }

  const natRedis = bg('redis-server', ['--port', '6390', '--save', '', '--appendonly', 'no']);
  const isoRedis = bg(process.execPath, axRun(['--isolate', '--name', 'db'], ['redis-server', '--port', '6379', '--protected-mode', 'no', '--save', '', '--appendonly', 'no']));
  await Promise.all([waitOut(natRedis, /Ready to accept/), waitOut(isoRedis, /Ready to accept/)]);

  // slirp4netns: a namespace of its own (a sleeping holder process) with a tap device.
  const holder = bg('unshare', ['-n', 'sleep', '100000']);
  await sleep(200);
  bg('slirp4netns', ['--configure', '--mtu=65520', String(holder.p.pid), 'tap0']);
  await sleep(1000);
  const inSlirp = (cmd: string[]) => fg('nsenter', ['-n', '-t', String(holder.p.pid), ...cmd]);

  const t = String(SECONDS);
  const rows: Record<string, number[]> = {};
  const add = (k: string, v: number) => (rows[k] ??= []).push(v);
  const before = daemonUsage(daemonPid);
  for (let i = 0; i < REPEATS; i++) {
    add('iperf3 native', iperfGbps(fg('iperf3', ['-4', '-c', '127.0.0.1', '-p', '5201', '-t', t, '-J'])));
    add('iperf3 isolated', iperfGbps(iso(['iperf3', '-4', '-c', 'ipsrv', '-p', '5201', '-t', t, '-J'])));
    add('iperf3 slirp4netns', iperfGbps(inSlirp(['iperf3', '-4', '-c', '10.0.2.2', '-p', '5201', '-t', t, '-J'])));
    add('iperf3 proxy (socat)', iperfGbps(fg('iperf3', ['-4', '-c', '127.0.0.1', '-p', '5301', '-t', t, '-J'])));
    const udp = ['-4', '-u', '-b', '0', '-t', t, '-J'];
    add('iperf3 UDP native', iperfUdpGbps(fg('iperf3', [...udp, '-c', '127.0.0.1', '-p', '5201'])));
    add('iperf3 UDP ax', iperfUdpGbps(fg(process.execPath, axRun([], ['iperf3', ...udp, '-c', 'ipusrv', '-p', '5202']))));
    add('iperf3 UDP isolated', iperfUdpGbps(iso(['iperf3', ...udp, '-c', 'ipusrv', '-p', '5202'])));
    const rn = redisRps(fg('redis-benchmark', ['-p', '6390', '-q', '-t', 'set,get', '-n', String(REDIS_N)]));
    const ri = redisRps(iso(['redis-benchmark', '-h', 'db', '-p', '6379', '-q', '-t', 'set,get', '-n', String(REDIS_N)]));
    add('redis SET native', rn.set);
    add('redis SET isolated', ri.set);
    add('redis GET native', rn.get);
    add('redis GET isolated', ri.get);
    const cn = connectStats(fg(CONNECT, ['client', '127.0.0.1', '7001', String(CONNECTS)]));
    const ci = connectStats(iso([CONNECT, 'client', 'cb', '80', String(CONNECTS)]));
    add('connect/s native', cn.cps);
    add('connect/s isolated', ci.cps);
    add('connect p50 µs native', cn.p50);
    add('connect p50 µs isolated', ci.p50);
    // (a listener on the namespace's own 127.0.0.1: one on the wildcard would be bound by the daemon on the host)
    const inside = `python3 -c "${LOOPBACK_SERVER}" & i=0; until ${CONNECT} client 127.0.0.1 7002 1 >/dev/null 2>&1 || [ $i -gt 50 ]; do i=$((i+1)); sleep 0.1; done; ${CONNECT} client 127.0.0.1 7002 ${CONNECTS}; kill $!`;
    const li = connectStats(iso(['sh', '-c', inside]));
    add('loopback connect/s inside', li.cps);
    add('loopback p50 µs inside', li.p50);
  }
  const after = daemonUsage(daemonPid);
  const med = (k: string) => median(rows[k] ?? []);
  const ratio = (a: string, b: string) => (med(a) / med(b)).toFixed(3);
  const line = (k: string, unit: string, vs?: string) =>
    `${k.padEnd(26)} ${med(k).toFixed(unit === 'Gbit/s' ? 2 : 0).padStart(10)} ${unit.padEnd(7)} ${vs ? `${ratio(k, vs)}× ${vs}` : ''}  [${(rows[k] ?? []).map((v) => v.toFixed(unit === 'Gbit/s' ? 2 : 0)).join(' ')}]`;
  console.log(`ax run --isolate benchmark: ${REPEATS} interleaved repeats, medians (all runs in brackets)\n`);
  console.log(line('iperf3 native', 'Gbit/s'));
  console.log(line('iperf3 isolated', 'Gbit/s', 'iperf3 native'));
  console.log(line('iperf3 slirp4netns', 'Gbit/s', 'iperf3 native'));
  console.log(line('iperf3 proxy (socat)', 'Gbit/s', 'iperf3 native'));
  console.log(`${'isolated / slirp4netns'.padEnd(26)} ${ratio('iperf3 isolated', 'iperf3 slirp4netns').padStart(10)}×`);
  console.log(line('iperf3 UDP native', 'Gbit/s'));
  console.log(line('iperf3 UDP ax', 'Gbit/s', 'iperf3 UDP native'));
  console.log(line('iperf3 UDP isolated', 'Gbit/s', 'iperf3 UDP native'));
  console.log(`${'UDP isolated / ax'.padEnd(26)} ${ratio('iperf3 UDP isolated', 'iperf3 UDP ax').padStart(10)}×`);
  console.log(line('redis SET native', 'req/s'));
  console.log(line('redis SET isolated', 'req/s', 'redis SET native'));
  console.log(line('redis GET native', 'req/s'));
  console.log(line('redis GET isolated', 'req/s', 'redis GET native'));
  console.log(line('connect/s native', 'conn/s'));
  console.log(line('connect/s isolated', 'conn/s', 'connect/s native'));
  console.log(line('connect p50 µs native', 'µs'));
  console.log(line('connect p50 µs isolated', 'µs', 'connect p50 µs native'));
  console.log(line('loopback connect/s inside', 'conn/s', 'connect/s native'));
  console.log(line('loopback p50 µs inside', 'µs', 'connect p50 µs native'));
  console.log(`\ndaemon: threads ${before.threads} -> ${after.threads}, fds ${before.fds} -> ${after.fds}, rss ${before.rssMiB.toFixed(0)} -> ${after.rssMiB.toFixed(0)} MiB`);
}

/**
 * Elements in the sets of every ax egress table of this namespace (src/daemon/udpegress.ts): what the
 * daemon allowed isolated apps' UDP sockets to send to. -1 when nft cannot be asked.
 */
function egressElements(): number {
  try {
    const out = execFileSync('nft', ['-j', 'list', 'sets', 'inet'], { encoding: 'utf8', timeout: 10_000 });
    const sets = (JSON.parse(out) as { nftables: Array<{ set?: { table: string; name: string } }> }).nftables.filter((x) => x.set && x.set.table.startsWith('ax_egress_'));
    let n = 0;
    for (const { set } of sets) {
      const one = JSON.parse(execFileSync('nft', ['-j', 'list', 'set', 'inet', set!.table, set!.name], { encoding: 'utf8', timeout: 10_000 })) as {
        nftables: Array<{ set?: { elem?: unknown[] } }>;
      };
      for (const x of one.nftables) n += x.set?.elem?.length ?? 0;
    }
    return n;
  } catch {
    return -1;
  }
}

/** Isolated clients back to back for `ms`; a sample line per interval, and a flatness verdict. */
async function soak(ms: number, daemonPid: number): Promise<void> {
  const interval = Math.min(60_000, Math.max(10_000, Math.round(ms / 20)));
  const end = Date.now() + ms;
  const samples: Array<{ t: number; gbps: number; ugbps: number; cps: number; threads: number; fds: number; rssMiB: number; elems: number }> = [];
  console.log(`soak: ${Math.round(ms / 1000)} s of isolated iperf3 TCP (2 s), iperf3 UDP (1 s, a handed-in connected socket) + connect loops, a sample every ${interval / 1000} s`);
  console.log('  t(s)   Gbit/s UDP Gb/s   conn/s  threads  fds  rss MiB  nft elems  failed runs');
  const t0 = Date.now();
  let next = t0 + interval;
  let gb: number[] = [];
  let ub: number[] = [];
  let cs: number[] = [];
  let failed = 0;
  let runs = 0;
  const errors = new Map<string, number>();
  // A failed client run is counted and named (the soak goes on): a soak is about what keeps working.
  const attempt = (f: () => void) => {
    runs++;
    try {
      f();
    } catch (e) {
      failed++;
      const m = (e as Error).message.split('\n')[0].slice(0, 160);
      errors.set(m, (errors.get(m) ?? 0) + 1);
    }
  };
  while (Date.now() < end) {
    attempt(() => gb.push(iperfGbps(iso(['iperf3', '-4', '-c', 'ipsrv', '-p', '5201', '-t', '2', '-J']))));
    attempt(() => ub.push(iperfUdpGbps(iso(['iperf3', '-4', '-u', '-b', '0', '-c', 'ipusrv', '-p', '5202', '-t', '1', '-J']))));
    attempt(() => cs.push(connectStats(iso([CONNECT, 'client', 'cb', '80', '2000'])).cps));
    if (Date.now() >= next || Date.now() >= end) {
      await sleep(1500); // let the sessions of the last clients end
      const u = daemonUsage(daemonPid);
      const s = { t: Math.round((Date.now() - t0) / 1000), gbps: median(gb), ugbps: median(ub), cps: median(cs), ...u, elems: egressElements() };
      samples.push(s);
      console.log(
        `${String(s.t).padStart(6)} ${s.gbps.toFixed(2).padStart(8)} ${s.ugbps.toFixed(2).padStart(8)} ${s.cps.toFixed(0).padStart(8)} ${String(s.threads).padStart(8)} ${String(s.fds).padStart(4)} ` +
          `${s.rssMiB.toFixed(0).padStart(8)} ${String(s.elems).padStart(10)}  ${failed}/${runs}`,
      );
      gb = [];
      ub = [];
      cs = [];
      next += interval;
    }
  }
  console.log(`\nclient runs: ${runs}, failed: ${failed}${[...errors].map(([m, n]) => `\n  ${n} × ${m}`).join('')}`);
  if (samples.length >= 2) {
    const a = samples[0];
    const z = samples[samples.length - 1];
    console.log(
      `\nfirst -> last: throughput ${(z.gbps / a.gbps).toFixed(3)}×, UDP ${(z.ugbps / a.ugbps).toFixed(3)}×, connects ${(z.cps / a.cps).toFixed(3)}×, ` +
        `threads ${a.threads} -> ${z.threads}, fds ${a.fds} -> ${z.fds}, nftables elements ${a.elems} -> ${z.elems}`,
    );
    const flat = z.threads <= a.threads + 2 && z.fds <= a.fds + 8 && z.elems <= a.elems + 2;
    console.log(flat ? 'daemon threads, fds and nftables elements: flat' : 'daemon threads, fds or nftables elements GREW');
    if (!flat) process.exitCode = 1;
  }
}

main()
  .catch((e) => {
    console.error(`bench: ${(e as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const p of procs.reverse()) p.kill('SIGTERM');
    setTimeout(() => {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      const dirs = readdirSync(tmpdir()).filter((d) => d.startsWith('ax-bench-isolate-'));
      for (const d of dirs) if (sock.startsWith(join(tmpdir(), d))) rmSync(join(tmpdir(), d), { recursive: true, force: true });
      process.exit();
    }, 1000);
  });
