// DNS benchmark: queries per second and p50/p99 latency of the ax daemon's DNS responder
// for an ax name over UDP, beside dnsmasq answering a local --address name, and the
// daemon forwarding a name to that dnsmasq, in one run. Run with `npm run bench:dns`.
//
// Load: CLIENTS closed-loop clients (one UDP socket each, one query outstanding, the
// next sent when the answer arrives) in this process, for SECONDS per round. The three
// targets are measured in turn, REPEATS rounds each; the table shows medians.
// The load generator is one node process: on a small machine it, not the server, may be
// the limit, the same for every target (the dnsmasq row shows how far it goes).
//
// Runs in a loopback-only network namespace (re-executed under `unshare -n`).
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dnsPacket from 'dns-packet';
import { AX, bg, inLoopbackNamespace, median, procs, sleep } from './common';

const SECONDS = Number(process.env.AX_BENCH_SECONDS ?? 2);
const REPEATS = Number(process.env.AX_BENCH_REPEATS ?? 5);
const CLIENTS = Number(process.env.AX_BENCH_CLIENTS ?? 4);
const DNSMASQ_PORT = 5399;

inLoopbackNamespace('bench:dns', __filename);

function encodeQuery(name: string, id: number): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
}

/** One query; the answer's A records, or null after 1 s. */
async function ask(port: number, name: string): Promise<string[] | null> {
  const s = dgram.createSocket('udp4');
  try {
    return await new Promise((resolve) => {
      const t = setTimeout(() => resolve(null), 1000);
      s.on('message', (m) => {
        clearTimeout(t);
        const p = dnsPacket.decode(m);
        resolve((p.answers ?? []).flatMap((a) => (a.type === 'A' ? [String(a.data)] : [])));
      });
      s.send(encodeQuery(name, 1), port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

interface Round {
  qps: number;
  p50: number; // microseconds
  p99: number;
  errors: number;
}

/** CLIENTS closed-loop UDP clients against port for SECONDS. */
async function load(port: number, name: string): Promise<Round> {
  const lat: number[] = [];
  let errors = 0;
  const end = Date.now() + SECONDS * 1000;
  const client = (k: number) =>
    new Promise<void>((resolve) => {
      const s = dgram.createSocket('udp4');
      let id = (k * 7919) & 0xffff;
      let sent = 0n;
      let timer: NodeJS.Timeout | undefined;
      const next = () => {
        if (Date.now() >= end) {
          clearTimeout(timer);
          s.close();
          resolve();
          return;
        }
        id = (id + 1) & 0xffff;
        const q = encodeQuery(name, id);
        sent = process.hrtime.bigint();
        clearTimeout(timer);
        timer = setTimeout(() => {
          errors++; // lost: count it and go on
          next();
        }, 1000);
        s.send(q, port, '127.0.0.1');
      };
      s.on('message', (m) => {
        if (m.length < 2 || m.readUInt16BE(0) !== id) return; // a late answer to a query given up on
        lat.push(Number(process.hrtime.bigint() - sent) / 1000);
        next();
      });
      s.bind(0, () => next());
    });
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CLIENTS }, (_, k) => client(k)));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] : NaN);
  return { qps: lat.length / secs, p50: pct(50), p99: pct(99), errors };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ax-bench-dns-'));
  const sock = join(dir, 'ax.sock');
  try {
    const mq = bg('dnsmasq', ['--no-daemon', '--port', String(DNSMASQ_PORT), '--listen-address', '127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--address=/web.test/10.240.0.10', '--address=/example.test/192.0.2.7']);
    const d = bg(process.execPath, [AX, 'daemon', '--socket', sock, '--state-dir', join(dir, 'state'), '--ports', '31000-31100', '--dns-upstream', `127.0.0.1:${DNSMASQ_PORT}`]);
    for (let i = 0; !/dns (\S+):(\d+),/.test(d.out()); i++) {
      if (i > 200) throw new Error(`daemon did not start: ${d.out()}`);
      await sleep(50);
    }
    const port = Number(/dns (\S+):(\d+),/.exec(d.out())![2]);
    bg(process.execPath, [AX, 'run', '--socket', sock, '--no-start', '--name', 'web', '--ip', '10.240.0.10', '--', 'sleep', '600']);
    for (let i = 0; ; i++) {
      const a = await ask(port, 'web.ax');
      if (a && a[0] === '10.240.0.10') break;
      if (i > 100) throw new Error('web.ax does not resolve');
      await sleep(100);
    }
    for (let i = 0; ; i++) {
      const a = await ask(DNSMASQ_PORT, 'web.test');
      if (a && a[0] === '10.240.0.10') break;
      if (i > 50) throw new Error(`dnsmasq does not answer: ${mq.out()}`);
      await sleep(100);
    }
    const targets: Array<{ label: string; port: number; name: string }> = [
      { label: 'ax daemon, ax name (web.ax)', port, name: 'web.ax' },
      { label: 'dnsmasq, local --address name', port: DNSMASQ_PORT, name: 'web.test' },
      { label: 'ax daemon forwarding to dnsmasq', port, name: 'example.test' },
    ];
    const rounds = new Map<string, Round[]>(targets.map((t) => [t.label, []]));
    await load(port, 'web.ax'); // warm-up (JIT)
    for (let r = 0; r < REPEATS; r++) {
      for (const t of targets) rounds.get(t.label)!.push(await load(t.port, t.name));
    }
    console.log(`DNS over UDP, ${CLIENTS} closed-loop clients, ${SECONDS} s x ${REPEATS} rounds per target, interleaved; medians`);
    console.log(`${'target'.padEnd(36)} ${'queries/s'.padStart(10)} ${'p50 us'.padStart(8)} ${'p99 us'.padStart(8)} ${'lost'.padStart(5)}`);
    const summary: Record<string, { qps: number; p50_us: number; p99_us: number; lost: number }> = {};
    for (const t of targets) {
      const rs = rounds.get(t.label)!;
      const row = { qps: median(rs.map((x) => x.qps)), p50_us: median(rs.map((x) => x.p50)), p99_us: median(rs.map((x) => x.p99)), lost: rs.reduce((a, x) => a + x.errors, 0) };
      summary[t.label] = row;
      console.log(`${t.label.padEnd(36)} ${row.qps.toFixed(0).padStart(10)} ${row.p50_us.toFixed(0).padStart(8)} ${row.p99_us.toFixed(0).padStart(8)} ${String(row.lost).padStart(5)}`);
    }
    const ax = summary[targets[0].label];
    const mqRow = summary[targets[1].label];
    console.log(`ax / dnsmasq: queries/s ${(ax.qps / mqRow.qps).toFixed(2)}, p50 ${(ax.p50_us / mqRow.p50_us).toFixed(2)}, p99 ${(ax.p99_us / mqRow.p99_us).toFixed(2)}`);
    console.log(JSON.stringify({ bench: 'dns', clients: CLIENTS, seconds: SECONDS, repeats: REPEATS, results: summary }));
  } finally {
    for (const p of procs.reverse()) p.kill('SIGTERM');
    await sleep(300);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`bench:dns: ${e.message}`);
    for (const p of procs) p.kill('SIGKILL');
    process.exit(1);
  },
);
