// The CLI's parsers and messages, in-process (no daemon, no child processes).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseDuration, UsageError } from '../src/cli/args';
import { autostartStateDir, checkSocketDir, DaemonUnreachable, lastErrorLine, unreachableMessage } from '../src/cli/client';
import { STREAM_WIDTHS, streamRow } from '../src/cli/events';
import { daemonConfigFromArgs } from '../src/cli/daemon';
import { main } from '../src/cli/main';
import { formatStatus } from '../src/cli/manage';
import { backoffMs, FORWARDED_SIGNALS, notRunnable, parseRunArgs, reattachNote } from '../src/cli/run';
import { checkVipInRanges, parseCidr } from '../src/common/addr';
import { checkClaims, loadLabelPolicy } from '../src/policy/claims';
import { mayConnect } from '../src/policy/labels';

// `ax logs` without a daemon looks for the log of a daemon `ax run` started: not this machine's.
process.env.AX_STATE_DIR = mkdtempSync(join(tmpdir(), 'ax-cli-state-'));

/** Runs `ax ARGS` in-process; returns its exit code and what it printed. */
async function ax(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    const code = await main(args, __filename);
    return { code, out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

t.test('durations need a unit', async (t) => {
  t.equal(parseDuration('250ms', '--x'), 250);
  t.equal(parseDuration('5s', '--x'), 5000);
  t.equal(parseDuration('1.5s', '--x'), 1500);
  t.equal(parseDuration('2m', '--x'), 120_000);
  t.throws(() => parseDuration('5', '--connect-wait'), new UsageError('--connect-wait "5" needs a unit: 5ms, 5s or 5m'));
  t.throws(() => parseDuration('soon', '--x'), /--x "soon" is not a duration \(e\.g\. 500ms, 5s, 1m\)/);
  t.throws(() => parseDuration('-1s', '--x'), /is not a duration/);
  t.throws(() => parseRunArgs(['--connect-wait', '700', '--', 'true']), /--connect-wait "700" needs a unit/);
  t.equal(parseRunArgs(['--connect-wait', '700ms', '--', 'true'])?.connectWaitMs, 700);
  const cluster = ['--advertise', '10.9.0.1', '--cluster-key', 'k'.repeat(20)];
  for (const flag of ['--probe-interval', '--sync-interval']) {
    t.throws(() => daemonConfigFromArgs([...cluster, flag, '500']), new RegExp(`${flag} "500" needs a unit`));
  }
  for (const flag of ['--api-handshake-timeout', '--api-idle-timeout']) {
    t.throws(() => daemonConfigFromArgs([flag, '5']), new RegExp(`${flag} "5" needs a unit`));
  }
  const c = daemonConfigFromArgs(['--api-handshake-timeout', '2s', '--api-idle-timeout', '1m', '--api-max-conns', '9']);
  t.match(c, { apiHandshakeMs: 2000, apiIdleMs: 60_000, apiMaxConnsPerUid: 9 });
  t.throws(() => daemonConfigFromArgs(['--api-max-conns', 'lots']), /--api-max-conns "lots" is not a positive number/);
});

t.test('daemon flags: ranges, group, policy', async (t) => {
  const c = daemonConfigFromArgs(['--vip-range', '10.240.0.0/16', '--vip-range', '10.1.0.0/16']);
  t.same(c?.vipRanges, [parseCidr('10.240.0.0/16'), parseCidr('10.1.0.0/16')]);
  t.same(daemonConfigFromArgs([])?.vipRanges, [parseCidr('10.240.0.0/16')], 'default range');
  t.same(daemonConfigFromArgs([])?.sourceRange, parseCidr('127.77.0.0/16'), 'default source range');
  t.same(daemonConfigFromArgs(['--source-range', '127.99.0.0/20'])?.sourceRange, parseCidr('127.99.0.0/20'));
  t.throws(() => daemonConfigFromArgs(['--source-range', '10.0.0.0/16']), new UsageError('--source-range 10.0.0.0/16: must lie in 127.0.0.0/8 (loopback)'));
  t.throws(() => daemonConfigFromArgs(['--source-range', '127.1.2']), /--source-range.*invalid CIDR "127\.1\.2"/);
  t.throws(() => daemonConfigFromArgs(['--vip-range', '10.0.0.0/8', '--vip-range', '10.1.0.0/16']), /--vip-range: 10\.0\.0\.0\/8 and 10\.1\.0\.0\/16 overlap/);
  t.throws(() => daemonConfigFromArgs(['--api-group', 'no-such-group-ax']), /--api-group: group "no-such-group-ax" does not exist/);
  t.match(daemonConfigFromArgs(['--api-group', 'nogroup'])?.apiGroup, { name: 'nogroup', gid: 65534 });
  const dir = mkdtempSync(join(tmpdir(), 'ax-cli-'));
  const f = join(dir, 'p.json');
  writeFileSync(f, '{"default": ["zone=*"], "users": {"nobody": ["*"]}, "extra": 1}');
  t.throws(() => daemonConfigFromArgs(['--label-policy', f]), /--label-policy: .*p\.json: unknown field "extra"$/);
  writeFileSync(f, '{"users": {"no-such-user-ax": ["*"]}}');
  t.throws(() => daemonConfigFromArgs(['--label-policy', f]), /user "no-such-user-ax" does not exist/);
  writeFileSync(f, '{"groups": {"nogroup": ["zone"]}}');
  t.throws(() => daemonConfigFromArgs(['--label-policy', f]), /groups\.nogroup\.0: a pattern is "\*", "key=\*" or "key=value"/);
  writeFileSync(f, '{"default": ["ax.user=*"]}');
  t.throws(() => daemonConfigFromArgs(['--label-policy', f]), /--label-policy: .*p\.json: default\.0: ax\.\* labels are reserved/);
  writeFileSync(f, 'not json');
  t.throws(() => daemonConfigFromArgs(['--label-policy', f]), /--label-policy: cannot read .*p\.json: /);
  t.throws(() => daemonConfigFromArgs(['--label-policy', join(dir, 'missing.json')]), /cannot read .*missing\.json: ENOENT/);
});

t.test('label claims and the reserved ax.* labels', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-cli-'));
  const f = join(dir, 'p.json');
  writeFileSync(f, JSON.stringify({ default: ['zone=default'], users: { nobody: ['team=*'] }, groups: { nogroup: ['tier=db'] } }));
  const policy = loadLabelPolicy(f);
  const nobody = { pid: 1, uid: 65534, gid: 100, groups: [] };
  const nobodyInGroup = { pid: 1, uid: 65534, gid: 100, groups: [65534] };
  const alice = { pid: 1, uid: 4242, gid: 4242, groups: [] };
  t.equal(checkClaims({ zone: 'default', team: 'red' }, nobody, false, policy), null);
  t.match(checkClaims({ tier: 'db' }, nobody, false, policy), /label "tier=db" may not be claimed by uid 65534 \(nobody\)/);
  t.equal(checkClaims({ tier: 'db' }, nobodyInGroup, false, policy), null, 'granted through a supplementary group');
  t.match(checkClaims({ team: 'red' }, alice, false, policy), /label "team=red" may not be claimed by uid 4242 \(4242\): the label policy .* allows it only zone=default/);
  t.equal(checkClaims({ anything: 'x' }, alice, true, policy), null, 'root and the daemon user may claim any');
  t.equal(checkClaims({ anything: 'x' }, alice, false, undefined), null, 'no policy: any label');
  t.match(checkClaims({ 'ax.user': 'root' }, alice, true, undefined), /label "ax\.user=root": ax\.\* labels are reserved/);
  // ax.* labels are identity, not a shared label that grants access.
  t.equal(mayConnect({ 'ax.node': 'vm', team: 'a' }, { 'ax.node': 'vm', team: 'b' }), false);
  t.equal(mayConnect({ 'ax.node': 'vm', team: 'a' }, { team: 'a' }), true);
});

t.test('VIPs must lie in a virtual range; real addresses never do', async (t) => {
  const ranges = [parseCidr('10.240.0.0/16'), parseCidr('10.1.0.0/16')];
  t.equal(checkVipInRanges('10.1.2.3', ranges), null);
  t.match(checkVipInRanges('192.0.2.10', ranges), /192\.0\.2\.10 is not in this daemon's virtual ranges \(10\.240\.0\.0\/16, 10\.1\.0\.0\/16\); a real address can never be a virtual IP/);
  t.match(checkVipInRanges('127.0.0.1', ranges), /loopback/);
  t.match(checkVipInRanges('127.0.0.1', [parseCidr('127.0.0.0/8')]), /loopback/);
  t.match(checkVipInRanges('10.240.0.0', ranges), /network address of 10\.240\.0\.0\/16/);
  t.match(checkVipInRanges('10.240.255.255', ranges), /broadcast address of 10\.240\.0\.0\/16/);
  t.equal(checkVipInRanges('10.240.255.254', ranges), null, 'the last host address is fine');
});

t.test('no daemon: one line saying what, where and what to do', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-cli-'));
  const sock = join(dir, 'ax.sock');
  const missing = unreachableMessage(sock, { code: 14, details: 'No connection established. Last error: connect ENOENT. Resolution note: ' });
  t.equal(missing, `cannot reach the ax daemon at ${sock}: none is running (no socket there); start one with: ax daemon --socket ${sock} (ax run starts one by itself unless --no-start)`);
  t.notMatch(missing, /Resolution note|\n/);
  writeFileSync(sock, '');
  t.match(unreachableMessage(sock, { code: 14, details: 'x' }), /it is not a socket/);
  // A daemon that is there but does not answer (SIGSTOP, overload): the deadline passes.
  const live = join(dir, 'live.sock');
  const srv = createServer().listen(live);
  await new Promise((r) => srv.once('listening', r));
  t.equal(unreachableMessage(live, { code: 4, details: 'Deadline exceeded' }), `cannot reach the ax daemon at ${live}: it does not answer (stopped or overloaded?); see ax logs, or restart it`);
  t.match(unreachableMessage(live, { code: 14, details: 'connect ECONNREFUSED' }), /none is running \(the socket is left over, nothing listens\)/);
  srv.close();
  for (const cmd of [['status'], ['get', 'apps'], ['logs'], ['status', '-o', 'json']]) {
    const r = await ax([...cmd, '--socket', join(dir, 'none.sock')]);
    t.equal(r.code, 1, `ax ${cmd.join(' ')} exits 1`);
    t.match(r.err, /^ax: cannot reach the ax daemon at \S+none\.sock: none is running \(no socket there\); start one with/, `ax ${cmd.join(' ')}: clear`);
    t.equal(r.err.trim().split('\n').length, 1, 'one line');
  }
  const stop = await ax(['daemon', 'stop', '--socket', join(dir, 'none.sock')]);
  t.equal(stop.code, 0, 'stopping what does not run is not an error');
  t.match(stop.out, /no ax daemon is running at \S+none\.sock; nothing to stop/);
});

t.test('help and bad flags', async (t) => {
  for (const [cmd, re] of [
    [['status', '--help'], /^usage: ax status \[-o table\|json\]/],
    [['logs', '--help'], /^usage: ax logs \[-f\]/],
    [['daemon', 'stop', '--help'], /^usage: ax daemon stop/],
    [['stop', '-h'], /^usage: ax daemon stop/],
    [['daemon', '--help'], /--api-group GROUP/],
    [['run', '--help'], /usage: ax run/],
  ] as Array<[string[], RegExp]>) {
    const r = await ax(cmd);
    t.equal(r.code, 0, `ax ${cmd.join(' ')}`);
    t.match(r.out, re);
  }
  for (const [cmd, re] of [
    [['status', '-o', 'yaml'], /-o yaml: choose table or json/],
    [['status', 'extra'], /unexpected argument "extra"/],
    [['status', '--bogus'], /unknown flag --bogus/],
    [['logs', '--tail'], /unknown flag --tail/],
    [['stop', '--now'], /unknown flag --now/],
    [['daemon', 'stop', 'x'], /unexpected argument "x"/],
    [['run', '--connect-wait', '5', '--', 'true'], /--connect-wait "5" needs a unit: 5ms, 5s or 5m/],
    [['daemon', '--api-idle-timeout', '30'], /--api-idle-timeout "30" needs a unit/],
    [['daemon', '--vip-range', '10.0.0.0'], /--vip-range: invalid CIDR/],
  ] as Array<[string[], RegExp]>) {
    const r = await ax(cmd);
    t.equal(r.code, 2, `ax ${cmd.join(' ')} exits 2`);
    t.match(r.err, re);
    t.match(r.err, /usage: ax/, 'with usage');
  }
});

t.test('every bad flag exits 2 with a clear message and usage (moved from single-host, in-process)', async (t) => {
  const key = process.env.AX_CLUSTER_KEY;
  delete process.env.AX_CLUSTER_KEY;
  t.teardown(() => {
    if (key !== undefined) process.env.AX_CLUSTER_KEY = key;
  });
  const cases: Array<[string[], RegExp]> = [
    [['run', '--bogus', '--', 'true'], /unknown flag --bogus/],
    [['run', '--name', 'x'], /missing command/],
    [['run', '--labels', 'a=b,c', '--', 'true'], /--labels: label 2 \("c"\): expected key=value/],
    [['run', '--ip', '300.1.1.1', '--', 'true'], /--ip: "300\.1\.1\.1" is not an IPv4 address/],
    [['run', '--ip', '127.0.0.5', '--', 'true'], /loopback/],
    [['run', '--expose', '80:99999', '--', 'true'], /--expose host port 99999 is out of range/],
    [['run', '--connect-wait', 'soon', '--', 'true'], /--connect-wait "soon" is not a duration/],
    [['daemon', '--ports', '5-1'], /--ports: invalid port range "5-1"/],
    [['daemon', '--vip-range', '10.0.0.0'], /--vip-range: invalid CIDR/],
    [['get', 'things'], /cannot get "things"/],
    [['daemon', '--handoff', 'magic'], /--handoff: "magic" is not auto or fd/],
    [['daemon', '--advertise', '10.9.0.1'], /clustering needs a shared key: --cluster-key KEY/],
    [['daemon', '--advertise', '10.9.0.1', '--cluster-key', 'short'], /--cluster-key: the key must be at least 16 bytes/],
    [['daemon', '--advertise', 'my-host', '--cluster-key', 'k'.repeat(20)], /--advertise: clustering needs this host's IPv4 address/],
    [['daemon', '--advertise', '10.9.0.1', '--cluster-key', 'k'.repeat(20), '--join', '10.9.0.300'], /--join: "10\.9\.0\.300" is not IP or IP:PORT/],
    [['daemon', '--advertise', '10.9.0.1', '--cluster-key', 'k'.repeat(20), '--tls-cert', '/x'], /TLS needs all of --tls-cert, --tls-key and --tls-ca/],
    [['daemon', '--advertise', '10.9.0.1', '--cluster-key-file', '/nonexistent/key'], /--cluster-key-file: cannot read \/nonexistent\/key/],
    [['daemon', '--gossip-port', '7000'], /--gossip-port needs --advertise/],
    [['daemon', '--advertise', '10.9.0.1', '--cluster-key', 'k'.repeat(20), '--sync-interval', '10ms'], /--sync-interval must be between 500ms and 10m/],
    [['daemon', '--lb', 'fastest'], /--lb: "fastest" is not round-robin or random/],
    [['daemon', '--advertise', '10.9.0.1', '--cluster-key', 'k'.repeat(20), '--probe-interval', '1ms'], /--probe-interval must be between 50ms and 60s/],
    [['run', '--expose', '80', '--', 'true'], /--expose "80": expected PORT:HOSTPORT or PORT:HOSTIP:HOSTPORT/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /missing command/],
  ];
  for (const [args, re] of cases) {
    const r = await ax(args);
    t.equal(r.code, 2, `ax ${args.join(' ')} exits 2`);
    t.match(r.err, re, `ax ${args.join(' ')}: clear message`);
    t.match(r.err, /usage: ax/, 'with usage');
  }
});

t.test('status says when ax run started the daemon, and how to stop it', async (t) => {
  const base = { node_name: 'vm', pid: 7, api_socket: '/run/ax/ax.sock', log_file: '', caller_uid: 1000, caller_user: 'alice', autostarted_by: 0 };
  const plain = formatStatus(base);
  t.match(plain, /log_file\s+\(stderr of the daemon process\)/);
  t.match(plain, /you\s+uid 1000 \(alice\)/);
  t.notMatch(plain, /started by/);
  const auto = formatStatus({ ...base, log_file: '/var/lib/ax/daemon.log', autostarted_by: 321 });
  t.match(auto, /log_file\s+\/var\/lib\/ax\/daemon\.log/);
  t.match(auto, /started by `ax run` \(pid 321\)/);
  t.match(auto, /Stop it with: ax daemon stop --socket \/run\/ax\/ax\.sock/);
});

t.test('ax run: bounded re-attach backoff; the signals it forwards', async (t) => {
  const delays = Array.from({ length: 50 }, (_, i) => backoffMs(i));
  t.equal(delays[0], 100);
  t.ok(delays.every((d, i) => i === 0 || d >= delays[i - 1]), 'never shrinks');
  t.equal(Math.max(...delays), 2000, 'at most 2 s');
  for (const s of ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGTTIN', 'SIGTTOU']) {
    t.ok(FORWARDED_SIGNALS.includes(s as NodeJS.Signals), `${s} is forwarded`);
  }
});

t.test('the re-attach note says what ax run does, without telling to start a daemon it is waiting for', async (t) => {
  const gone = reattachNote('/x/ax.sock', new DaemonUnreachable('cannot reach ...; start one with: ax daemon --socket /x/ax.sock', false, 'none is running (no socket there)'));
  t.equal(
    gone,
    'ax run: the daemon at /x/ax.sock is away (none is running (no socket there)); re-attaching the app when it is back (every 2 s at most). ' +
      'ax run does not start a daemon for an app that is already running: restart the daemon with ax daemon --socket /x/ax.sock, or run a new ax run',
  );
  t.notMatch(gone, /start one with|unless --no-start/);
  t.match(reattachNote('/x/ax.sock', new DaemonUnreachable('m', true, 'it does not answer (stopped or overloaded?)')), /is away \(it does not answer \(stopped or overloaded\?\)\)/);
});

t.test('ax events -f: streamed rows line up with the header (fixed widths)', async (t) => {
  const widths = [...STREAM_WIDTHS];
  const header = streamRow(['TIME', 'VERDICT', 'OP', 'SOURCE', 'SRC-LABELS', 'DESTINATION', 'RULE'], widths);
  const a = streamRow(['2026-12-01T07:00:00.000Z', 'allow', 'connect', 'web', 'zone=default', 'db (10.240.0.2:5432)', 'default'], widths);
  const b = streamRow(['2026-12-01T07:00:01.000Z', 'publish-refused', 'publish', 'user:0', '-', '10.240.0.9:80', 'r1'], widths);
  const starts = (line: string) => [...line.matchAll(/(?:^|\s{2,})(\S)/g)].map((m) => m.index! + m[0].length - 1);
  t.same(starts(a), starts(header), 'every column of a row starts where its header does');
  t.same(starts(b), starts(header));
  t.match(header, /^TIME {22}VERDICT {10}OP {7}SOURCE/);
  // A longer cell widens its column for the rows after it (never overwrites the next cell).
  const long = streamRow(['2026-12-01T07:00:02.000Z', 'deny', 'connect', 'a-very-long-service-name-here', '-', 'x', 'r'], widths);
  const next = streamRow(['2026-12-01T07:00:03.000Z', 'deny', 'connect', 'short', '-', 'x', 'r'], widths);
  t.same(starts(next), starts(long), 'rows after a long cell line up with it');
});

t.test('autostart: a state dir per non-default socket; no directory trees; the reason from the log', async (t) => {
  const env = { XDG_STATE_HOME: '/s', XDG_RUNTIME_DIR: '/r' };
  t.equal(autostartStateDir('/r/ax/ax.sock', env), '/s/ax', 'the default socket: the default state dir');
  const other = autostartStateDir('/srv/x/ax.sock', env);
  t.match(other, /^\/s\/ax\/sockets\/[0-9a-f]{12}$/);
  t.not(autostartStateDir('/srv/y/ax.sock', env), other, 'another socket, another dir');
  t.equal(autostartStateDir('/srv/x/ax.sock', { ...env, AX_STATE_DIR: '/mine' }), '/mine', 'AX_STATE_DIR wins');
  t.equal(autostartStateDir('/srv/x/ax.sock', { ...env, AX_SOCKET: '/srv/x/ax.sock' }), other, 'AX_SOCKET does not make a socket the default one');
  const dir = mkdtempSync(join(tmpdir(), 'ax-cli-sockdir-'));
  t.doesNotThrow(() => checkSocketDir(join(dir, 'ax.sock')));
  t.doesNotThrow(() => checkSocketDir(join(dir, 'new', 'ax.sock')), 'the socket\'s own directory may be made');
  t.throws(() => checkSocketDir(join(dir, 'a', 'b', 'c', 'ax.sock')), new RegExp(`the directory ${join(dir, 'a')} does not exist`));
  const log = join(dir, 'daemon.log');
  writeFileSync(log, '2026-12-01T07:00:00.000Z ax-daemon[x] error old failure {}\n2026-12-01T07:00:01.000Z ax-daemon[x] info starting\n');
  const from = readFileSync(log).length;
  writeFileSync(log, 'T ax-daemon[x] info starting\nax daemon: cannot open the state database in /s: IO error: lock /s/LOCK: Resource temporarily unavailable', { flag: 'a' });
  t.equal(lastErrorLine(log, from), 'ax daemon: cannot open the state database in /s: IO error: lock /s/LOCK: Resource temporarily unavailable');
  t.equal(lastErrorLine(log, readFileSync(log).length), '', 'nothing new: no reason');
  t.equal(lastErrorLine(join(dir, 'none.log'), 0), '');
});

t.test('not executable, a directory, missing: what ax run says (126, 126, 127 like a shell)', async (t) => {
  t.equal(notRunnable('/etc/passwd'), 'permission denied (not executable)');
  t.equal(notRunnable('/etc'), 'is a directory');
  t.equal(notRunnable('/no/such/file'), null);
  t.equal(notRunnable('passwd', '/etc'), 'permission denied (not executable)', 'a name found in PATH only as a plain file');
  t.equal(notRunnable('no-such-cmd-ax', '/etc'), null);
});

t.test('inside an isolated app: every command says the API is hidden on purpose', async (t) => {
  process.env.AX_ISOLATED = '1';
  t.teardown(() => delete process.env.AX_ISOLATED);
  for (const cmd of [['status'], ['get', 'services'], ['stop']]) {
    const r = await ax([...cmd, '--socket', '/nonexistent/ax.sock']);
    t.match(r.err, /the ax API is not reachable from inside an isolated app/, `ax ${cmd.join(' ')}`);
  }
});
