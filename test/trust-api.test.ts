// Trust on the API: every call is authorized by the caller's kernel credentials
// (SO_PEERCRED). Each refusal is tried as nobody against a root daemon, and the
// same call as root; plus the API connection bounds (garbage HTTP/2, per-uid cap).
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { AX, ROOT, run, sleep, start, TestDaemon } from './helpers';

/** A plain environment for processes of other users: the test runner's hooks (NODE_OPTIONS,
 *  re-added to every spawn) would make them write to its root-owned directory. */
const PLAIN = ['env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/'];
const PLAIN_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/' };
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', ...PLAIN];

/** `ax CMD --socket S ARGS` as nobody. */
const axAsNobody = (d: TestDaemon, [cmd, ...args]: string[]) =>
  run(NOBODY[0], [...NOBODY.slice(1), process.execPath, AX, cmd, '--socket', d.socket, ...args], { env: PLAIN_ENV });

/** A raw gRPC client (no CLI) run as the given user: prints one JSON line per call result. */
const RAW_CLIENT = `
const grpc = require(${JSON.stringify(join(ROOT, 'node_modules', '@grpc', 'grpc-js'))});
const loader = require(${JSON.stringify(join(ROOT, 'node_modules', '@grpc', 'proto-loader'))});
const def = loader.loadSync(${JSON.stringify(join(ROOT, 'proto', 'ax.proto'))}, { keepCase: true, longs: Number, defaults: true });
const Ax = grpc.loadPackageDefinition(def).ax.v1.Ax;
const [socket, what, arg] = process.argv.slice(1);
const c = new Ax('unix://' + socket, grpc.credentials.createInsecure());
const out = (o) => console.log(JSON.stringify(o));
if (what === 'reattach') {
  const [id, token] = arg.split(':');
  const s = c.RunApp({ app_id: id, token });
  s.on('data', (ev) => { out({ ok: true, app_id: ev.app_id }); s.cancel(); process.exit(0); });
  s.on('error', (e) => { out({ ok: false, code: e.code, details: e.details }); process.exit(0); });
} else if (what === 'run-labels') {
  // RunApp with labels the CLI itself refuses: the daemon's own check
  const labels = Object.fromEntries(arg.split(',').map((kv) => kv.split('=')));
  const s = c.RunApp({ labels, run_pid: process.pid, command: 'true' });
  s.on('data', (ev) => { out({ ok: true, app_id: ev.app_id }); s.cancel(); process.exit(0); });
  s.on('error', (e) => { out({ ok: false, code: e.code, details: e.details }); process.exit(0); });
} else if (what === 'status-many') {
  let left = Number(arg);
  for (let i = 0; i < Number(arg); i++) {
    c.Status({}, (e, r) => { out(e ? { ok: false, code: e.code } : { ok: true, caller_uid: r.caller_uid }); if (--left === 0) process.exit(0); });
  }
}
`;

function rawClient(asNobody: boolean, args: string[]) {
  const cmd = [process.execPath, '-e', RAW_CLIENT, ...args];
  return asNobody ? run(NOBODY[0], [...NOBODY.slice(1), ...cmd], { env: PLAIN_ENV }) : run(cmd[0], cmd.slice(1), { env: PLAIN_ENV });
}

const lines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

t.test('nobody against a root daemon: every refusal says why; root may', async (t) => {
  const d = new TestDaemon(t);
  const policy = join(d.dir, 'labels.json');
  writeFileSync(policy, JSON.stringify({ default: ['zone=default', 'team=*'], users: { nobody: ['tier=web'] } }));
  await d.launch(['--api-group', 'nogroup', '--label-policy', policy]);
  // root's app: a name, a VIP, a token (the wrapper's child prints it).
  const web = d.run(['--name', 'web', '--ip', '10.1.0.1'], ['sh', '-c', 'echo "app=$AX_APP"; exec sleep 60']);
  const rootApp = (await web.waitFor(/app=(\S+)/))[1];

  // The refusal that used to hang ax run forever: a name already bound to another VIP.
  const other = await d.run(['--name', 'web', '--ip', '10.1.0.2'], ['true']).result();
  t.equal(other.code, 1, 'ax run exits 1 when the daemon refuses');
  t.match(other.stderr, /^ax run: the daemon refused the app: name "web" already has virtual IP 10\.1\.0\.1; use --ip 10\.1\.0\.1 or another name\n$/);

  const joined = await axAsNobody(d, ['run', '--no-start', '--name', 'web', '--', 'true']);
  t.equal(joined.code, 1, 'nobody cannot join root\'s name pool');
  t.match(joined.stderr, /the daemon refused the app: name "web" belongs to uid 0 \(root\); uid 65534 \(nobody\) cannot join its pool/);

  const vip = await axAsNobody(d, ['run', '--no-start', '--ip', '10.1.0.1', '--', 'true']);
  t.equal(vip.code, 1, 'nobody cannot take root\'s VIP');
  t.match(vip.stderr, /virtual IP 10\.1\.0\.1 belongs to uid 0 \(root\)/);

  const real = await axAsNobody(d, ['run', '--no-start', '--ip', '192.0.2.10', '--', 'true']);
  t.equal(real.code, 1, 'a real address is never a VIP');
  t.match(real.stderr, /192\.0\.2\.10 is not in this daemon's virtual ranges \(10\.240\.0\.0\/16, 10\.0\.0\.0\/9\); a real address can never be a virtual IP/);
  const realRoot = await d.run(['--ip', '192.0.2.10'], ['true']).result();
  t.equal(realRoot.code, 1, 'not for root either');

  // An address of this host inside a virtual range is still real.
  execFileSync('ip', ['addr', 'add', '10.0.99.1/32', 'dev', 'lo']);
  t.teardown(() => execFileSync('ip', ['addr', 'del', '10.0.99.1/32', 'dev', 'lo']));
  const local = await d.run(['--ip', '10.0.99.1'], ['true']).result();
  t.equal(local.code, 1);
  t.match(local.stderr, /10\.0\.99\.1 is a real address of this host \(lo\)/);

  // ax.* labels: `ax run` refuses them as bad input (exit 2, usage), and the daemon refuses them
  // to any API client (the CLI's check is a courtesy, the daemon's the rule)
  const label = await axAsNobody(d, ['run', '--no-start', '--labels', 'zone=default,ax.user=root', '--', 'true']);
  t.equal(label.code, 2, 'ax run: ax.* labels are a usage error');
  t.match(label.stderr, /--labels: label "ax\.user=root": ax\.\* labels are reserved/);
  for (const asNobody of [true, false]) {
    const raw = lines((await rawClient(asNobody, [d.socket, 'run-labels', 'zone=default,ax.node=elsewhere'])).stdout);
    t.match(raw, [{ ok: false, details: /label "ax\.node=elsewhere": ax\.\* labels are reserved/ }], `the daemon refuses ax.* labels to ${asNobody ? 'nobody' : 'root'}`);
  }

  // --label-policy: what nobody may claim; root may claim any label but ax.*.
  const allowed = await axAsNobody(d, ['run', '--no-start', '--labels', 'team=red,tier=web', '--', 'true']);
  t.equal(allowed.code, 0, `labels the policy grants (${allowed.stderr})`);
  const denied = await axAsNobody(d, ['run', '--no-start', '--labels', 'zone=secure', '--', 'true']);
  t.equal(denied.code, 1, 'a label the policy does not grant');
  t.match(denied.stderr, /label "zone=secure" may not be claimed by uid 65534 \(nobody\): the label policy \S+labels\.json allows it only zone=default, team=\*, tier=web/);
  t.equal((await d.run(['--labels', 'zone=secure'], ['true']).result()).code, 0, 'root may claim it');

  const stop = await axAsNobody(d, ['stop']);
  t.equal(stop.code, 1, 'nobody cannot stop the daemon');
  t.match(stop.stderr, /^ax: permission denied: uid 65534 \(nobody\) may not stop the daemon: only root or the daemon's user/);

  const steal = lines((await rawClient(true, [d.socket, 'reattach', rootApp])).stdout)[0];
  t.match(steal, { ok: false, code: 7 }, 'nobody cannot take over root\'s app, even with its id and token');
  t.match(String(steal.details), /uid 65534 \(nobody\) may not change app [0-9a-f]{8}: it belongs to uid 0 \(root\)/);

  // nobody's own app: it may re-attach to it, and so may root.
  const mine = start(NOBODY[0], [...NOBODY.slice(1), process.execPath, AX, 'run', '--socket', d.socket, '--no-start', '--', 'sh', '-c', 'echo "app=$AX_APP"; exec sleep 60'], { env: PLAIN_ENV }, t);
  const nobodyApp = (await mine.waitFor(/app=(\S+)/))[1];
  t.match(lines((await rawClient(true, [d.socket, 'reattach', nobodyApp])).stdout)[0], { ok: true }, 'the owner may re-attach');
  t.match(lines((await rawClient(false, [d.socket, 'reattach', nobodyApp])).stdout)[0], { ok: true }, 'root may');
  t.match(lines((await rawClient(false, [d.socket, 'reattach', rootApp])).stdout)[0], { ok: true }, 'root may re-attach its own');

  const apps = await d.get('apps');
  t.match(apps.find((a) => a.name === 'web'), { uid: 0, user: 'root', labels: { 'ax.user': 'root', 'ax.name': 'web', zone: 'default' } }, 'owner and ax.* labels recorded');
  t.ok(apps.every((a) => !('token' in a)), 'the API never returns an app\'s token');
  t.match(apps.find((a) => a.uid === 65534), { user: 'nobody', labels: { 'ax.user': 'nobody' } }, 'nobody\'s app is owned by nobody');

  // Reads: allowed for the --api-group, refused to others, with the reason.
  const member = await axAsNobody(d, ['status', '-o', 'json']);
  t.equal(member.code, 0, `a member of the api group reads (${member.stderr})`);
  t.match(JSON.parse(member.stdout), { caller_uid: 65534, caller_user: 'nobody', api_group: 'nogroup', daemon_uid: 0, label_policy: policy });
  const outsider = await run('setpriv', ['--reuid=nobody', '--regid=daemon', '--clear-groups', ...PLAIN, process.execPath, AX, 'get', 'apps', '--socket', d.socket], { env: PLAIN_ENV });
  t.equal(outsider.code, 1, 'a non-member cannot read');
  t.match(outsider.stderr, /^ax: permission denied: uid 65534 \(nobody\) may not read this daemon's table: allowed are root and members of group nogroup\n$/);

  // Each call is tied to its own connection's credentials, with both users calling at once.
  const [asNobody, asRoot] = await Promise.all([rawClient(true, [d.socket, 'status-many', '20']), rawClient(false, [d.socket, 'status-many', '20'])]);
  const n = lines(asNobody.stdout);
  const r = lines(asRoot.stdout);
  t.equal(n.length, 20);
  t.equal(r.length, 20);
  t.ok(n.every((x) => x.ok && x.caller_uid === 65534), 'every call of nobody is seen as nobody');
  t.ok(r.every((x) => x.ok && x.caller_uid === 0), 'every call of root is seen as root');

  web.kill();
  mine.kill();
  const down = await d.ax(['daemon', 'stop']);
  t.equal(down.code, 0, `root stops the daemon (${down.stderr})`);
  t.match(down.stdout, /^stopped the ax daemon \(pid \d+\) at /);
  const exited = await Promise.race([d.proc.exited, sleep(5000).then(() => null)]);
  t.ok(exited, 'the daemon process is gone');
  const after = await d.ax(['status']);
  t.equal(after.code, 1);
  t.match(after.stderr, /^ax: cannot reach the ax daemon at \S+: none is running \(no socket there\); start one with: ax daemon --socket \S+ \(ax run starts one by itself unless --no-start\)\n$/, 'one line, no gRPC text');
});

/** Open fds of a process. */
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const GARBAGE: Record<string, () => Buffer> = {
  'random bytes': () => Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7919 + 13) & 255)),
  'a bare preface': () => PREFACE,
  'a preface then junk': () => Buffer.concat([PREFACE, Buffer.alloc(64, 0xab)]),
  'a half frame': () => Buffer.concat([PREFACE, Buffer.from([0, 0, 100, 4, 0, 0, 0, 0, 0, 1, 2])]),
  'a SETTINGS flood': () => Buffer.concat([PREFACE, ...Array.from({ length: 2000 }, () => Buffer.from([0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]))]),
};

function sendGarbage(path: string, data: Buffer, hold: number): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(path, () => {
      s.write(data);
      setTimeout(() => {
        s.destroy();
        resolve();
      }, hold);
    });
    s.on('error', () => resolve());
  });
}

t.test('malformed HTTP/2 on the API socket leaks no fd; the daemon keeps serving', async (t) => {
  const d = await TestDaemon.start(t, ['--api-handshake-timeout', '500ms', '--api-idle-timeout', '1s']);
  const pid = d.proc.pid;
  t.equal((await d.ax(['status'])).code, 0);
  await sleep(1500);
  const base = fds(pid);
  for (const [kind, make] of Object.entries(GARBAGE)) {
    await Promise.all(Array.from({ length: 10 }, (_, i) => sendGarbage(d.socket, make(), 20 + i * 10)));
    t.pass(`sent ${kind} x10`);
  }
  await d.until('fds back to the baseline', async () => fds(pid) <= base, 10_000);
  t.ok(fds(pid) <= base, `fds back to ${base}`);
  const st = await d.ax(['status', '-o', 'json']);
  t.equal(st.code, 0, 'still serving');
  t.equal(JSON.parse(st.stdout).pid, pid);

  // A connection that sends nothing at all is closed after the handshake deadline.
  const closedAt = await new Promise<number>((resolve) => {
    const s: Socket = connect(d.socket);
    s.resume(); // flowing, so that the daemon's close is seen
    const t0 = Date.now();
    s.on('close', () => resolve(Date.now() - t0));
    s.on('error', () => {});
  });
  t.ok(closedAt >= 400, `a silent connection is closed by the daemon after the deadline, not at once (${closedAt} ms)`);
});

t.test('a user cannot exhaust the daemon with connections (--api-max-conns); root still gets in', async (t) => {
  const d = await TestDaemon.start(t, ['--api-max-conns', '4', '--api-handshake-timeout', '20s']);
  const pid = d.proc.pid;
  await d.ax(['status']);
  await sleep(300);
  const base = fds(pid);
  // nobody opens 30 connections and holds them.
  const HOLD = `
const net = require('net'); let open = 0, closed = 0;
for (let i = 0; i < 30; i++) { const s = net.connect(process.argv[1], () => { open++; }); s.on('close', () => closed++); s.on('error', () => {}); }
setTimeout(() => { console.log(JSON.stringify({ open, closed })); }, 1500);
setTimeout(() => process.exit(0), 6000);
`;
  const holder = start(NOBODY[0], [...NOBODY.slice(1), process.execPath, '-e', HOLD, d.socket], { env: PLAIN_ENV }, t);
  const got = JSON.parse((await holder.waitFor(/\{.*\}/))[0]);
  t.equal(got.closed, 26, `the daemon closed all but 4 of nobody's 30 connections (${JSON.stringify(got)})`);
  t.ok(fds(pid) <= base + 4, `daemon fds ${fds(pid)} <= ${base} + 4`);
  const st = await d.ax(['status']);
  t.equal(st.code, 0, 'root is served meanwhile');
  t.match(d.proc.stderr, /uid 65534 \(pid \d+\) has 4 connections open, the most one user may \(--api-max-conns\)/);
  await holder.result();
  await d.until('held connections released', async () => fds(pid) <= base, 5000);
});
