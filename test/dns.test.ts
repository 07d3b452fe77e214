// The daemon's DNS responder (src/dns/), asked by real resolvers: dig (UDP and TCP),
// node's dns.Resolver, glibc through the hook (getent, for the same answers either way),
// with dnsmasq as the upstream for other names. Bad input: specific malformed messages,
// a bounded fuzz loop over UDP and garbage TCP streams, after which the responder still
// answers. The suite runs in a loopback-only network namespace (scripts/test.mjs).
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { promisify } from 'node:util';
import { connect } from 'node:net';
import { Resolver } from 'node:dns/promises';
import * as dnsPacket from 'dns-packet';
import t from 'tap';
import { AF_INET, parseCidr } from '../src/common/addr';
import { nullLogger } from '../src/common/log';
import { daemonConfigFromArgs } from '../src/cli/daemon';
import { AxNames } from '../src/dns/names';
import { DnsResponder } from '../src/dns/server';
import { ServiceTable, type App } from '../src/table/table';
import { AX, start, TestDaemon } from './helpers';

const UPSTREAM_PORT = 5399;
const execFileP = promisify(execFile);

/** dnsmasq answering example.test with 192.0.2.7 and nothing else, on 127.0.0.1:5399. */
async function startDnsmasq(tt: { teardown(fn: () => unknown): void }): Promise<void> {
  start(
    'dnsmasq',
    ['--no-daemon', '--port', String(UPSTREAM_PORT), '--listen-address', '127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--address=/example.test/192.0.2.7',
      // Over 512 bytes: truncated over UDP without EDNS.
      `--txt-record=big.test,${'a'.repeat(250)},${'b'.repeat(250)},${'c'.repeat(250)}`],
    {},
    tt,
  );
  for (let i = 0; i < 50; i++) {
    const r = await dig(UPSTREAM_PORT, ['example.test', '+short', '+tries=1', '+time=1']);
    if (r.trim() === '192.0.2.7') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('dnsmasq did not start answering');
}

async function dig(port: number, args: string[]): Promise<string> {
  // execFile resolves once the output is closed (helpers' run() resolves at exit, which
  // can come before the last of stdout under load).
  const r = await execFileP('dig', ['@127.0.0.1', '-p', String(port), ...args], { timeout: 20_000 });
  return r.stdout;
}

/** Runs a program to its end (output closed); its exit code and output. */
async function runClosed(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(cmd, args, { timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? String(e) };
  }
}

const status = (out: string) => /status: (\w+)/.exec(out)?.[1];

async function axStatus(d: TestDaemon): Promise<Record<string, unknown>> {
  const r = await d.ax(['status', '-o', 'json']);
  if (r.code !== 0) throw new Error(`ax status: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function dnsPort(d: TestDaemon): Promise<number> {
  const a = String((await axStatus(d)).dns_address);
  const m = /:(\d+)$/.exec(a);
  if (!m) throw new Error(`no DNS address in ax status: "${a}"`);
  return Number(m[1]);
}

/** Starts `python3 -m http.server 80` as web at 10.240.0.10 and waits for its service. */
async function startWeb(d: TestDaemon): Promise<void> {
  d.run(['--name', 'web', '--ip', '10.240.0.10'], ['python3', '-m', 'http.server', '80']);
  await d.until('web listening on 80', async () => (await d.get('services')).some((s) => s.name === 'web' && Number(s.vport) === 80));
}

/** One UDP exchange; resolves with the answer or null when none came within `ms`. */
function udpAsk(port: number, msg: Buffer, ms = 1500): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(null);
    }, ms);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(msg, port, '127.0.0.1');
  });
}

const query = (name: string, type: dnsPacket.RecordType = 'A', id = 4242) =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });

// One daemon (with dnsmasq as its upstream and web registered) for the first and the last test.
const shared = (async () => {
  await startDnsmasq(t);
  const d = await TestDaemon.start(t, ['--dns-upstream', `127.0.0.1:${UPSTREAM_PORT}`, '--dns-domain', 'svc.test', '--dns-tcp-idle', '1s']);
  await startWeb(d);
  return { d, port: await dnsPort(d) };
})();

t.test('ax names over UDP and TCP, the same as through the hook; other names from the upstream', async (t) => {
  const { d, port } = await shared;

  // The hook's RESOLVE (getaddrinfo under ax) and the responder give the same address.
  await Promise.all(
    ['web', 'web.ax'].map(async (name) => {
      const [hook, udp, tcp] = await Promise.all([
        execFileP(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--', 'getent', 'ahostsv4', name], { timeout: 20_000 }),
        dig(port, [name, '+short']),
        dig(port, [name, '+short', '+tcp']),
      ]);
      const viaHook = hook.stdout.split(/\s+/)[0];
      t.match(viaHook, /^\d+\.\d+\.\d+\.\d+$/, `getent under ax resolves ${name}`);
      t.equal(udp.trim(), viaHook, `dig ${name} (udp) answers what the hook does`);
      t.equal(tcp.trim(), viaHook, `dig ${name} +tcp answers what the hook does`);
    }),
  );
  const [domain, a, aaaa, ptr, ptrAbsent, absent, absentDomain, srv] = await Promise.all([
    dig(port, ['WEB.svc.test.', '+short']),
    dig(port, ['web.ax']),
    dig(port, ['web.ax', 'AAAA']),
    dig(port, ['-x', '10.240.0.10', '+short']),
    dig(port, ['-x', '10.240.0.99']),
    dig(port, ['nope.ax']),
    dig(port, ['nope.svc.test', '+tcp']),
    dig(port, ['web.ax', 'SRV', '+noall', '+answer', '+additional']),
  ]);
  t.equal(domain.trim(), '10.240.0.10', '--dns-domain: NAME.DOMAIN, any case');
  t.equal(status(a), 'NOERROR');
  t.match(a, /flags: qr aa rd ra;/, 'authoritative, recursion available (an upstream is set)');
  t.match(a, /web\.ax\.\s+\d+\s+IN\s+A\s+10\.240\.0\.10/);
  t.equal(status(aaaa), 'NOERROR', 'AAAA of an ax name: NOERROR');
  t.match(aaaa, /ANSWER: 0,/, 'AAAA of an ax name: no records (VIPs are IPv4)');
  t.equal(ptr.trim(), 'web.ax.', 'PTR of the VIP');
  t.equal(status(ptrAbsent), 'NXDOMAIN', 'PTR of an unregistered address in the virtual range');
  t.equal(status(absent), 'NXDOMAIN', 'an unregistered name under .ax');
  t.equal(status(absentDomain), 'NXDOMAIN', 'an unregistered name under --dns-domain');
  t.match(srv, /web\.ax\.\s+\d+\s+IN\s+SRV\s+0 0 80 web\.ax\./, 'SRV: the listening virtual port');
  t.match(srv, /web\.ax\.\s+\d+\s+IN\s+A\s+10\.240\.0\.10/, 'SRV: the target address as additional');

  // Forwarded: the same answer dnsmasq gives when asked directly.
  const [direct, fwdUdp, fwdTcp, otherDirect, otherFwd] = await Promise.all([
    dig(UPSTREAM_PORT, ['example.test', '+short']),
    dig(port, ['example.test', '+short']),
    dig(port, ['example.test', '+short', '+tcp']),
    dig(UPSTREAM_PORT, ['other.invalid']),
    dig(port, ['other.invalid']),
  ]);
  t.equal(direct.trim(), '192.0.2.7');
  t.equal(fwdUdp.trim(), direct.trim(), 'forwarded over UDP');
  t.equal(fwdTcp.trim(), direct.trim(), 'forwarded for a TCP client');
  t.equal(status(otherFwd), status(otherDirect), "the upstream's status passes through");
  // A truncated upstream answer: relayed with TC to a UDP client, fetched over TCP for a TCP client.
  const [bigUdp, bigTcp] = await Promise.all([dig(port, ['big.test', 'TXT', '+noedns', '+ignore']), dig(port, ['big.test', 'TXT', '+noedns', '+tcp', '+short'])]);
  t.match(bigUdp, /flags: qr [a-z ]*tc[a-z ]*;/, 'a truncated upstream answer reaches a UDP client with TC');
  t.match(bigTcp, /"c{250}"/, 'a TCP client gets the whole answer (asked upstream again over TCP)');

  // node's own resolver (c-ares), not getaddrinfo.
  const r = new Resolver();
  r.setServers([`127.0.0.1:${port}`]);
  t.same(await r.resolve4('web'), ['10.240.0.10'], 'dns.Resolver resolve4(web)');
  t.same(await r.resolve4('example.test'), ['192.0.2.7'], 'dns.Resolver resolve4(example.test), forwarded');
  t.same(await r.reverse('10.240.0.10'), ['web.ax'], 'dns.Resolver reverse');

  const st = await axStatus(d);
  t.ok(Number(st.dns_forwarded) >= 4, `ax status counts forwards (${String(st.dns_forwarded)})`);
  t.same(st.dns_upstreams, [`127.0.0.1:${UPSTREAM_PORT}`]);
  t.same(st.dns_domains, ['svc.test']);
  const table = await d.ax(['status']);
  t.match(table.stdout, new RegExp(`dns_address\\s+127\\.0\\.0\\.1:${port}`), 'ax status shows the address');
});

t.test('--dns-upstream none refuses other names; --dns-listen off; bad flags', async (t) => {
  const [d, off, fixed] = await Promise.all([
    TestDaemon.start(t, ['--dns-upstream', 'none']),
    TestDaemon.start(t, ['--dns-listen', 'off']),
    // An upstream nobody answers on: forwards time out (2 s) into SERVFAIL.
    TestDaemon.start(t, ['--dns-listen', '127.0.0.1:5398', '--dns-upstream', '127.0.0.1:5397']),
  ]);
  await startWeb(d);
  const port = await dnsPort(d);
  t.equal((await dig(port, ['web.ax', '+short'])).trim(), '10.240.0.10', 'ax names are still answered');
  const refused = await dig(port, ['example.test']);
  t.equal(status(refused), 'REFUSED', 'other names: REFUSED');
  t.match(refused, /flags: qr aa rd;/, 'no recursion available');
  t.same((await axStatus(d)).dns_upstreams, []);
  t.equal((await axStatus(off)).dns_address, '', '--dns-listen off: no address');
  t.equal((await axStatus(fixed)).dns_address, '127.0.0.1:5398', '--dns-listen IP:PORT');
  t.equal(status(await dig(5398, ['x.ax', '+tcp'])), 'NXDOMAIN', 'answers on the given port');
  t.equal(status(await dig(5398, ['example.test', '+tries=1', '+time=5'])), 'SERVFAIL', 'an upstream that does not answer: SERVFAIL');
  // A port in use: the daemon does not start, and says which address.
  const busy = await runClosed(process.execPath, [AX, 'daemon', '--socket', `${d.dir}/b.sock`, '--state-dir', `${d.dir}/b`, '--dns-listen', '127.0.0.1:5398']);
  t.equal(busy.code, 1, 'DNS address in use: exit 1');
  t.match(busy.stderr, /DNS listen 127\.0\.0\.1:5398: .*EADDRINUSE/);
  // Bad flags: the parser says which flag and why (checked in-process), and the CLI exits 2 with usage.
  for (const [args, re] of [
    [['--dns-listen', 'localhost:53'], /--dns-listen: "localhost:53" is not IP/],
    [['--dns-listen', '127.0.0.1'], /--dns-listen "127.0.0.1": give a port/],
    [['--dns-upstream', 'none,1.1.1.1'], /none cannot be combined/],
    [['--dns-upstream', '1.1.1.1:99999'], /port must be 0-65535/],
    [['--dns-domain', 'bad_-.x!'], /--dns-domain: .*label/],
    [['--dns-domain', '2.10.in-addr.arpa'], /reverse zones/],
    [['--dns-listen', 'off', '--dns-domain', 'x.test'], /need the DNS responder/],
    [['--dns-tcp-idle', '5'], /needs a unit/],
  ] as Array<[string[], RegExp]>) {
    t.throws(() => daemonConfigFromArgs(args), re, args.join(' '));
  }
  const cli = await runClosed(process.execPath, [AX, 'daemon', '--dns-listen', 'localhost:53']);
  t.equal(cli.code, 2, 'ax daemon --dns-listen localhost:53: exit 2');
  t.match(cli.stderr, /--dns-listen: "localhost:53" is not IP, IP:PORT or \[IPv6\]:PORT[^]*usage: ax daemon/, 'says why, then the usage');
});

t.test('the responder in-process: the visible() policy hook, and TC then TCP for a big answer', async (t) => {
  // A real table and a real responder, asked by dig; the policy hook hides "secret" from everyone.
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const mk = (id: string, name: string, vip: string): App => ({ id, name, vip, labels: { zone: 'default' }, expose: [], token: id, runPid: process.pid, node: 'n1', createdAt: Date.now() });
  const web = mk('a1', 'web', '10.240.0.10');
  table.addApp(web);
  table.addApp(mk('a2', 'secret', '10.240.0.11'));
  for (let p = 1000; p < 1100; p++) {
    table.addSock({ id: table.newSockId(), appId: web.id, name: 'web', pid: process.pid, node: 'n1', family: AF_INET, vip: web.vip, vport: p, hostIp: '127.0.0.1',
      hostPort: 40000 + p, state: 'listening', labels: web.labels, reusePort: false, createdAt: Date.now() });
  }
  const asked: string[] = [];
  const r = new DnsResponder({
    listen: { ip: '127.0.0.1', port: 0 },
    names: new AxNames(table),
    upstreams: 'none',
    log: nullLogger,
    visible: (asker, name) => {
      asked.push(`${asker.ip} ${asker.tcp ? 'tcp' : 'udp'} ${name}`);
      return name !== 'secret';
    },
  });
  const { port } = await r.start();
  t.teardown(() => r.close());
  t.equal((await dig(port, ['web.ax', '+short'])).trim(), '10.240.0.10');
  t.equal(status(await dig(port, ['secret.ax'])), 'NXDOMAIN', 'a name visible() refuses is NXDOMAIN');
  t.equal(status(await dig(port, ['-x', '10.240.0.11'])), 'NXDOMAIN', 'and so is its reverse name');
  t.ok(asked.includes('127.0.0.1 udp secret'), `visible() was asked with the asker's address (${asked.join('; ')})`);
  // 100 ports: the SRV answer does not fit in 512 bytes.
  const udpOnly = await dig(port, ['web.ax', 'SRV', '+noedns', '+ignore']);
  t.match(udpOnly, /flags: qr aa tc rd;/, 'over 512 bytes without EDNS: TC');
  t.match(udpOnly, /ANSWER: 0,/, 'and no records');
  const full = await dig(port, ['web.ax', 'SRV', '+noedns', '+short']);
  t.equal(full.trim().split('\n').length, 100, 'dig asks again over TCP and gets all 100 SRV records');
  t.match(full, /^0 0 1099 web\.ax\.$/m);

  // IPv6: the same responder on ::1.
  const r6 = new DnsResponder({ listen: { ip: '::1', port: 0 }, names: new AxNames(table), upstreams: 'none', log: nullLogger });
  const a6 = await r6.start();
  t.teardown(() => r6.close());
  const v6 = await execFileP('dig', ['@::1', '-p', String(a6.port), 'web.ax', '+short'], { timeout: 20_000 });
  t.equal(v6.stdout.trim(), '10.240.0.10', 'answers on [::1]');

  // The bound on forwards in flight: with 2 allowed and an upstream that never answers, a third
  // concurrent query is refused with SERVFAIL at once (the others after the timeout) and logged.
  const lines: string[] = [];
  const log = { ...nullLogger, warn: (m: string) => lines.push(m) };
  const rb = new DnsResponder({ listen: { ip: '127.0.0.1', port: 0 }, names: new AxNames(table), upstreams: [{ ip: '127.0.0.1', port: 5397 }], log, maxInflight: 2, forwardTimeoutMs: 300 });
  const ab = await rb.start();
  t.teardown(() => rb.close());
  const rcodes = await Promise.all(['n1.test', 'n2.test', 'n3.test'].map(async (n) => (await udpAsk(ab.port, query(n), 3000)) ?? Buffer.alloc(0)));
  t.same(rcodes.map((m) => (m.length ? (dnsPacket.decode(m) as unknown as { rcode: string }).rcode : 'none')), ['SERVFAIL', 'SERVFAIL', 'SERVFAIL'], 'all answered SERVFAIL');
  t.ok(lines.some((l) => /over 2 forwards in flight; SERVFAIL/.test(l)), `the overload is logged (${lines.join('; ')})`);
  t.equal(rb.stats.servfail, 3);
});

/** A deterministic PRNG (mulberry32), so a failing fuzz run can be repeated. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('bad input: FORMERR, NOTIMP, drops, a fuzz loop and garbage TCP; the responder keeps serving', async (t) => {
  const { d, port } = await shared;
  const rcodeOf = (m: Buffer | null) => (m ? (dnsPacket.decode(m) as unknown as { rcode: string }).rcode : 'none');

  // Two questions: FORMERR with the query's id.
  const two = dnsPacket.encode({ type: 'query', id: 777, questions: [{ type: 'A', name: 'web.ax' }, { type: 'A', name: 'web' }] });
  const r2 = await udpAsk(port, two);
  t.equal(rcodeOf(r2), 'FORMERR', 'two questions: FORMERR');
  t.equal(r2 && dnsPacket.decode(r2).id, 777, 'FORMERR carries the id');
  // Opcode STATUS (2): NOTIMP.
  const st = Buffer.from(query('web.ax'));
  st.writeUInt16BE(st.readUInt16BE(2) | (2 << 11), 2);
  t.equal(rcodeOf(await udpAsk(port, st)), 'NOTIMP', 'opcode STATUS: NOTIMP');
  // A question cut short: FORMERR.
  t.equal(rcodeOf(await udpAsk(port, query('web.ax').subarray(0, 17))), 'FORMERR', 'truncated question: FORMERR');
  // Over 512 bytes on UDP without EDNS: FORMERR.
  const big = dnsPacket.encode({
    type: 'query',
    id: 9,
    questions: [{ type: 'A', name: 'web.ax' }],
    additionals: [{ type: 'TXT', name: 'pad.ax', data: ['x'.repeat(250), 'y'.repeat(250)] }],
  });
  t.ok(big.length > 512);
  t.equal(rcodeOf(await udpAsk(port, big)), 'FORMERR', `${big.length}-byte UDP query without EDNS: FORMERR`);
  // Shorter than a header, and a response (QR=1): no answer, counted as bad.
  const before = Number((await axStatus(d)).dns_bad);
  const resp = dnsPacket.encode({ type: 'response', id: 5, questions: [{ type: 'A', name: 'web.ax' }] });
  for (const m of [Buffer.from([1, 2, 3, 4, 5]), resp]) {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.send(m, port, '127.0.0.1', () => r()));
    s.close();
  }
  await d.until('both drops counted', async () => Number((await axStatus(d)).dns_bad) >= before + 2);
  t.pass('a 5-byte message and a response are dropped and counted');

  // The fuzz loop: mutations of valid queries and random bytes, 3000 datagrams.
  const rnd = prng(20261130);
  const seeds = [query('web.ax'), query('web', 'SRV'), query('example.test'), query('10.0.240.10.in-addr.arpa', 'PTR'), query('x.ax', 'AAAA')];
  const fuzz = dgram.createSocket('udp4');
  const badBefore = Number((await axStatus(d)).dns_bad);
  for (let i = 0; i < 3000; i++) {
    let m: Buffer;
    const kind = i % 4;
    if (kind === 0) {
      m = Buffer.alloc(Math.floor(rnd() * 600));
      for (let k = 0; k < m.length; k++) m[k] = Math.floor(rnd() * 256);
    } else {
      m = Buffer.from(seeds[Math.floor(rnd() * seeds.length)]);
      const flips = 1 + Math.floor(rnd() * 6);
      for (let k = 0; k < flips; k++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
      if (kind === 2) m = m.subarray(0, Math.floor(rnd() * m.length));
      if (kind === 3) m = Buffer.concat([m, Buffer.alloc(Math.floor(rnd() * 700), Math.floor(rnd() * 256))]);
    }
    await new Promise<void>((r) => fuzz.send(m, port, '127.0.0.1', () => r()));
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20)); // let the kernel buffer drain a little
  }
  fuzz.close();

  // Garbage TCP streams are closed by the responder: at once when undecodable, after
  // --dns-tcp-idle when they announce more than they send (HTTP's "GE" reads as 18245 bytes).
  const garbage = [Buffer.from([0, 3, 1, 2, 3]), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.concat([Buffer.from([0, 20]), Buffer.alloc(20, 0xff)]), Buffer.from([0])];
  for (const g of garbage) {
    const closed = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => c.write(g));
      c.on('data', () => {});
      c.on('error', () => {});
      c.on('close', () => resolve(true));
      setTimeout(() => {
        c.destroy();
        resolve(false);
      }, 8000);
    });
    t.ok(closed, `TCP garbage ${JSON.stringify(g.subarray(0, 8).toString('latin1'))}: connection closed by the responder`);
  }

  t.equal(d.proc.child.exitCode, null, 'the daemon is still running');
  t.equal((await dig(port, ['web.ax', '+short'])).trim(), '10.240.0.10', 'and still answers over UDP');
  t.equal((await dig(port, ['web.ax', '+short', '+tcp'])).trim(), '10.240.0.10', 'and over TCP');
  t.equal((await dig(port, ['example.test', '+short'])).trim(), '192.0.2.7', 'and still forwards');
  const badAfter = Number((await axStatus(d)).dns_bad);
  t.ok(badAfter - badBefore > 500, `bad input counted (${badAfter - badBefore})`);
  // Logged rate-limited: a handful of lines, and on stop one summary of the rest.
  await d.stop();
  const lines = d.proc.stderr.split('\n').filter((l) => / warn dns: /.test(l));
  t.ok(lines.length < 30, `${lines.length} dns warn lines for ${badAfter} bad messages`);
  t.match(d.proc.stderr, /dns: \d+ more not logged in the last 10 s \(/, 'a summary line counts what was not logged');
});
