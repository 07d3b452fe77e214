// Policy (issue 10): the selector language, policy files, the decision layer, and
// enforcement against real programs (python clients and servers under ax run).
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseCidr } from '../src/common/addr';
import { HookDispatcher } from '../src/daemon/hooks';
import { PolicyEngine, type PolicyApp } from '../src/policy/decide';
import { PortPool } from '../src/table/ports';
import { ServiceTable } from '../src/table/table';
import type { Decision } from '../src/policy/decision';
import { parsePolicyText, PolicyFileError } from '../src/policy/rules';
import { matches, parseSelector } from '../src/policy/selector';
import { AX, run, start, TestDaemon } from './helpers';
import { Revoker } from '../src/policy/revoke';

t.test('selectors: parse and match like Kubernetes label selectors', async (t) => {
  const l = { tenant: 'a', stage: 'dev', tier: 'web' };
  const yes = ['', 'tenant=a', 'tenant==a', 'stage!=prod', 'tier in (web,api)', 'tier notin (db)', 'tenant', '!debug', 'tenant=a, stage in (dev, test), !debug', 'missing!=x', 'missing notin (x)'];
  const no = ['tenant=b', 'stage!=dev', 'tier in (db,api)', 'tier notin (web)', 'debug', '!tenant', 'tenant=a,stage=prod', 'missing in (x)'];
  for (const s of yes) t.ok(matches(parseSelector(s), l), `"${s}" matches`);
  for (const s of no) t.notOk(matches(parseSelector(s), l), `"${s}" does not match`);
  for (const bad of ['tenant=a,,stage=dev', 'a b', 'k in ()', 'k in (a,)', '=v', 'k=v w', 'k=(x']) {
    t.throws(() => parseSelector(bad), { name: 'SelectorError' }, `"${bad}" is refused`);
  }
  t.throws(() => parseSelector('tenant=a,x y'), { message: /"x y" is not a requirement/ });
});

t.test('policy files: YAML and JSON; errors name the file, line and field', async (t) => {
  const rules = parsePolicyText('rules:\n  - id: r1\n    action: allow\n    from: tenant\n    to: tenant\n    same: [tenant]\n', 'p.yaml');
  t.match(rules, [{ id: 'r1', action: 'allow', kind: 'connect', from: 'tenant', to: 'tenant', same: ['tenant'] }]);
  t.equal(parsePolicyText('[{"id":"j","action":"deny","to":"ax.name=db","ports":[5432,"8000-8100"]}]', 'p.json')[0].ports.length, 2);
  const err = (text: string) => {
    try {
      parsePolicyText(text, 'f.yaml');
    } catch (e) {
      t.type(e, PolicyFileError);
      return (e as Error).message;
    }
    return 'no error';
  };
  t.equal(err('rules:\n  - id: ok\n    action: allow\n  - id: bad\n    action: maybe\n'), 'f.yaml:5: rule 2 (rule "bad"): action: must be one of "allow", "deny" (got "maybe")');
  t.match(err('- id: a\n  action: allow\n  from: "tier in (web"\n'), /^f\.yaml:3: rule 1 \(rule "a"\): from: "tier in \(web" is not a requirement/);
  t.match(err('- id: a\n  action: allow\n  ports: [80, 70000]\n'), /^f\.yaml:3: rule 1 \(rule "a"\): ports\.1: /);
  t.match(err('- id: a\n  action: allow\n  colour: red\n'), /^f\.yaml:1: rule 1 \(rule "a"\): rule: unknown field "colour"$/);
  // the wording is the user's: what to write, not the validation library's internals
  t.equal(err('- id: a\n  action: allow\n  ports: "80"\n'), 'f.yaml:3: rule 1 (rule "a"): ports: must be a list (got a string)');
  t.equal(err('- action: allow\n'), 'f.yaml:1: rule 1: id: is required');
  t.equal(err('- id: a\n  action: allow\n  protocol: sctp\n'), 'f.yaml:3: rule 1 (rule "a"): protocol: must be one of "tcp", "udp" (got "sctp")');
  t.equal(err('- id: a\n  action: allow\n  colour: red\n  size: 2\n'), 'f.yaml:1: rule 1 (rule "a"): rule: unknown fields "colour", "size"');
  t.match(err('- id: a\n  action: allow\n- id: a\n  action: deny\n'), /^f\.yaml:3: rule 2: id: "a" is used twice \(first on line 1\)/);
  t.match(err('rules:\n  - id: a\n    action: [allow\n'), /^f\.yaml:\d+: /);
  t.match(err('- id: p\n  action: allow\n  kind: publish\n'), /^f\.yaml:1: rule 1 \(rule "p"\): names: a publish rule needs names/);
  // a .json file's syntax errors are JSON's, with the line
  t.throws(() => parsePolicyText('[{"id":"a",\n "action": allow}]', 'p.json'), /^p\.json:2: not valid JSON: /);
});

const app = (id: string, labels: Record<string, string>, uid = 0): PolicyApp => ({ id, name: id, vip: `10.240.0.${id.length}`, labels: { ...labels, 'ax.name': id }, uid, node: 'n', createdAt: 1 });
const svc = (a: PolicyApp, vport = 80) => ({ appId: a.id, name: a.name, vip: a.vip, vport, labels: a.labels });

t.test('decision layer: deny wins, same keys, ports, postures, and every decision is published', async (t) => {
  const e = new PolicyEngine({ node: 'n', posture: 'deny-all', denyErrno: 111, unknownPeers: 'deny' });
  const seen: Decision[] = [];
  e.onDecision((d) => seen.push(d));
  e.put([{ id: 'tenants', action: 'allow', kind: 'connect', from: 'tenant', to: 'tenant', same: ['tenant'], ports: [], cidr: [], names: [] }]);
  const tenants = ['t1', 't2', 't3'];
  const stages = ['dev', 'prod'];
  const apps = tenants.flatMap((tn) => stages.map((st) => app(`${tn}-${st}`, { tenant: tn, stage: st })));
  for (const c of apps) {
    for (const s of apps) {
      const d = e.connect(c, svc(s));
      t.equal(d.verdict, c.labels.tenant === s.labels.tenant ? 'allow' : 'deny', `${c.id} -> ${s.id}`);
    }
  }
  t.equal(seen.length, 36, 'one decision per connect');
  t.match(seen[1], { op: 'connect', verdict: 'allow', rule: 'tenants', src: { app: 't1-dev' }, dst: { name: 't1-prod', port: 80 } });
  t.match(seen[2], { verdict: 'deny', rule: 'default:deny-all' });
  e.put([{ id: 'no-prod-db', action: 'deny', kind: 'connect', from: 'stage=dev', to: 'stage=prod', same: [], ports: ['5000-5999'], cidr: [], names: [] }]);
  t.equal(e.connect(apps[0], svc(apps[1], 5432)).rule, 'no-prod-db', 'deny wins over allow');
  t.equal(e.connect(apps[0], svc(apps[1], 80)).verdict, 'allow', 'outside the denied ports');
  t.equal(e.accept(undefined, svc(apps[0]), '192.0.2.1:5').verdict, 'deny', 'unknown peers: --policy-unknown-peers deny');
  const shared = new PolicyEngine({ node: 'n', posture: 'shared-label', denyErrno: 111, unknownPeers: 'allow' });
  t.equal(shared.connect(app('c', { zone: 'a' }), svc(app('s', { zone: 'a' }))).rule, 'default:shared-label');
  t.equal(shared.connect(app('c', { zone: 'a' }), svc(app('s', { zone: 'b' }))).verdict, 'deny');
  t.equal(shared.lookup(app('c', { zone: 'a' }), svc(app('s', { zone: 'b' }))).verdict, 'allow', 'shared-label keeps names visible');
  t.equal(e.lookup(apps[0], svc(apps[2])).verdict, 'deny', 'a rule-less deny hides the name (deny-all)');
  // Publishing: the first publisher's uid owns a name; a publish rule lets another uid in.
  const web0 = { ...app('web', { zone: 'x' }, 0), createdAt: 1 };
  const nobody = { ...app('web', { zone: 'x', 'ax.user': 'nobody' }, 65534), id: 'w2', createdAt: 2 };
  t.match(e.publish(nobody, 'web', '', 0, 'tcp', [web0]), { verdict: 'deny', rule: 'owner' });
  e.put([{ id: 'pub', action: 'allow', kind: 'publish', from: 'ax.user=nobody', same: [], ports: [], cidr: [], names: ['web'] }]);
  t.match(e.publish(nobody, 'web', '', 0, 'tcp', [web0]), { verdict: 'allow', rule: 'pub' });
  e.remove(['pub']);
  t.match(e.publish(nobody, 'web', '', 0, 'tcp', [web0]), { verdict: 'deny' }, 'removed rule no longer applies');
  // Replication semantics: the newer revision wins, a tombstone included.
  const other = new PolicyEngine({ node: 'm', posture: 'deny-all', denyErrno: 111, unknownPeers: 'allow' });
  other.merge(e.allRecords());
  t.same(other.rules().map((r) => r.id), ['no-prod-db', 'tenants'], 'tombstoned rule not in force after a merge');
  t.same(other.merge(e.allRecords()), [], 'merging again changes nothing');
});

// A python client: connects to each target, prints "<target> ok|refused|noname|<errno>".
const CLIENT = `
import socket, sys, errno
for t in sys.argv[1:]:
    h, p = t.rsplit(':', 1)
    try:
        s = socket.create_connection((h, int(p)), timeout=5)
        s.sendall(b'ping\\n'); r = s.recv(100)
        print(t, 'ok' if r.startswith(b'ping') else 'bad', flush=True); s.close()
    except socket.gaierror:
        print(t, 'noname', flush=True)
    except OSError as e:
        print(t, errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;
// An echo server; HOLD mode: a client keeping one connection, printing what ends it.
const SERVER = `
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7000)); s.listen(64)
print('listening', flush=True)
def serve(c):
    while True:
        d = c.recv(100)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
const HOLD = `
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
s.settimeout(None)
s.sendall(b'ping\\n'); print('got', s.recv(100).decode().strip(), flush=True)
try:
    while True:
        s.sendall(b'x'); d = s.recv(100)
        if not d: print('closed', flush=True); break
        time.sleep(0.05)
except OSError as e:
    print('cut', e.__class__.__name__, flush=True)
`;

async function client(d: TestDaemon, labels: string, targets: string[]): Promise<string> {
  const r = await d.run(['--labels', labels], ['python3', '-c', CLIENT, ...targets]).result();
  return r.stdout;
}

t.test('enforcement: 3 tenants x 2 stages isolated by one same: [tenant] rule (deny-all)', async (t) => {
  const d = await TestDaemon.start(t, ['--policy-default', 'deny-all']);
  const dir = mkdtempSync(join(tmpdir(), 'ax-pol-'));
  writeFileSync(join(dir, 'p.yaml'), 'rules:\n  - id: tenants\n    action: allow\n    from: tenant\n    to: tenant\n    same: [tenant]\n');
  const ap = await d.ax(['policy', 'apply', '-f', join(dir, 'p.yaml')]);
  t.equal(ap.code, 0, `apply (${ap.stderr})`);
  const names: string[] = [];
  for (const tn of ['t1', 't2', 't3']) {
    for (const st of ['dev', 'prod']) {
      const name = `${tn}-${st}`;
      names.push(name);
      await d.run(['--name', name, '--labels', `tenant=${tn},stage=${st}`], ['python3', '-u', '-c', SERVER]).waitFor(/listening/);
    }
  }
  for (const [tn, st] of [['t1', 'prod'], ['t2', 'dev'], ['t3', 'dev']]) {
    const out = await client(d, `tenant=${tn},stage=${st}`, names.map((n) => `${n}:7000`));
    for (const n of names) {
      const want = n.startsWith(tn + '-') ? 'ok' : 'noname';
      t.match(out, new RegExp(`^${n}:7000 ${want}$`, 'm'), `${tn}-${st} client -> ${n}: ${want}`);
    }
  }
  // By VIP (a name hidden from it is still a known VIP): refused at once with ECONNREFUSED.
  const vip = (await d.get('services')).find((s) => s.name === 't2-dev')!.vip;
  t.match(await client(d, 'tenant=t1,stage=dev', [`${vip}:7000`]), new RegExp(`${vip.replace(/\./g, '\\.')}:7000 ECONNREFUSED`), 'denied VIP: ECONNREFUSED');
  // Services as seen from inside an app: only what it may reach.
  const seen = await d.run(['--labels', 'tenant=t3,stage=dev'], [process.execPath, join(__dirname, '..', 'dist', 'ax.js'), 'get', 'services', '-o', 'json', '--socket', d.socket]).result();
  t.same((JSON.parse(seen.stdout) as Array<{ name: string }>).map((s) => s.name).sort(), ['t3-dev', 't3-prod'], 'ax get services from an app: need to know');
  t.equal((await d.get('services')).length, 6, 'the operator sees every service');
});

t.test('enforcement: add/rm take effect at once, EACCES errno flag, revocation, restart, publish rules', async (t) => {
  const d = await TestDaemon.start(t, ['--policy-deny-errno', 'EACCES']);
  await d.run(['--name', 'echo', '--labels', 'team=blue'], ['python3', '-u', '-c', SERVER]).waitFor(/listening/);
  t.match(await client(d, 'team=blue', ['echo:7000']), /^echo:7000 ok$/m, 'shared label: allowed (default posture)');
  t.match(await client(d, 'team=red', ['echo:7000']), /^echo:7000 EACCES$/m, 'no shared label: refused, --policy-deny-errno EACCES; the name still resolves');
  // A live connection is cut when a rule denies it.
  const hold = d.run(['--labels', 'team=blue,role=batch'], ['python3', '-u', '-c', HOLD, 'echo']);
  await hold.waitFor(/got ping/);
  const add = await d.ax(['policy', 'add', 'no-batch', 'deny', '--from', 'role=batch', '--to', 'ax.name=echo']);
  t.equal(add.code, 0, `policy add (${add.stderr})`);
  t.match(add.stdout, /no-batch: deny connect from "role=batch" to "ax.name=echo"/);
  await hold.waitFor(/cut \w+Error|closed/); // the whole line, not a partial read
  t.match(hold.stdout, /cut ConnectionAbortedError|cut ConnectionResetError|closed/, 'the established connection was cut');
  t.match(await client(d, 'team=blue,role=batch', ['echo:7000']), /^echo:7000 noname$/m, 'denied by a rule: the name does not resolve');
  t.match(await client(d, 'team=blue', ['echo:7000']), /^echo:7000 ok$/m, 'others unaffected');
  // Survives a restart.
  await d.stop();
  await d.launch();
  const ls = await d.ax(['policy', 'ls', '-o', 'json']);
  t.match(JSON.parse(ls.stdout), [{ id: 'no-batch', action: 'deny', from: 'role=batch' }], 'rule restored after a restart');
  t.match(await client(d, 'team=blue,role=batch', ['echo:7000']), /^echo:7000 noname$/m, 'and enforced');
  const rm = await d.ax(['policy', 'rm', 'no-batch']);
  t.equal(rm.code, 0);
  t.match(await client(d, 'team=blue,role=batch', ['echo:7000']), /^echo:7000 ok$/m, 'removed: allowed again');
  t.equal((await d.ax(['policy', 'rm', 'no-batch'])).code, 1, 'removing an unknown rule fails');
  const bad = await d.ax(['policy', 'add', 'x', 'allow', '--from', 'a in (b']);
  t.equal(bad.code, 2, 'a bad selector is a usage error');
  t.match(bad.stderr, /policy add x: from: "a in \(b" is not a requirement/);
});

t.test('publishing: a foreign uid cannot join a name unless a publish rule allows it', async (t) => {
  const d = await TestDaemon.start(t);
  const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', 'env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/'];
  const AXJS = join(__dirname, '..', 'dist', 'ax.js');
  await d.run(['--name', 'web'], ['python3', '-u', '-c', SERVER]).waitFor(/listening/);
  const join1 = await run(NOBODY[0], [...NOBODY.slice(1), process.execPath, AXJS, 'run', '--socket', d.socket, '--no-start', '--name', 'web', '--', 'true'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/' } });
  t.equal(join1.code, 1, 'refused');
  t.match(join1.stderr, /name "web" belongs to uid 0 \(root\); uid 65534 \(nobody\) cannot join its pool/);
  t.equal((await d.ax(['policy', 'add', 'nobody-web', 'allow', '--publish', 'web', '--from', 'ax.user=nobody'])).code, 0);
  const join2 = await run(NOBODY[0], [...NOBODY.slice(1), process.execPath, AXJS, 'run', '--socket', d.socket, '--no-start', '--name', 'web', '--', 'true'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/' } });
  t.equal(join2.code, 0, `allowed by the publish rule (${join2.stderr})`);
});

t.test('visibleTo (for the DNS responder): an asker by VIP sees only the names it may reach', async (t) => {
  const table = new ServiceTable('n1', parseCidr('10.240.0.0/16'));
  const policy = new PolicyEngine({ node: 'n1', posture: 'deny-all', denyErrno: 111, unknownPeers: 'deny' });
  const quiet = () => {};
  const hooks = new HookDispatcher({ table, pool: new PortPool({ first: 47100, last: 47109 }), hostIp: '127.0.0.1', log: { debug: quiet, info: quiet, warn: quiet, error: quiet }, policy });
  t.teardown(() => hooks.close());
  const mk = (id: string, vip: string, labels: Record<string, string>) => ({ id, name: id, vip, labels: { ...labels, 'ax.name': id }, expose: [], token: 't', runPid: 1, node: 'n1', createdAt: 1 });
  table.addApp(mk('web', '10.240.0.5', { tenant: 'a' }));
  table.addApp(mk('db', '10.240.0.6', { tenant: 'b' }));
  table.addApp(mk('cli', '10.240.0.7', { tenant: 'a' }));
  policy.put([{ id: 'tenants', action: 'allow', kind: 'connect', from: 'tenant', to: 'tenant', same: ['tenant'], ports: [], cidr: [], names: [] }]);
  t.equal(hooks.visibleTo('10.240.0.7', 'web.ax'), true, 'same tenant: visible');
  t.equal(hooks.visibleTo('::ffff:10.240.0.7', 'db'), false, 'other tenant: hidden');
  t.equal(hooks.visibleTo('10.240.0.7', 'example.com'), true, 'not an ax name: not ours to hide');
  t.equal(hooks.visibleTo('192.0.2.9', 'web'), false, 'unknown asker with --policy-unknown-peers deny');
});

t.test('revocation mechanisms on native connections: SOCK_DESTROY, and pidfd_getfd + shutdown (the rootless fallback)', async (t) => {
  const quiet = () => {};
  for (const [mode, port, want] of [['auto', 7101, /cut ConnectionAbortedError/], ['pidfd', 7102, /cut (BrokenPipe|ConnectionReset)Error|closed/]] as const) {
    const server = start('python3', ['-u', '-c', SERVER.replace("7000", String(port))], {}, t);
    await server.waitFor(/listening/);
    const client = start('python3', ['-u', '-c', HOLD.replace("7000", String(port)), '127.0.0.1'], {}, t);
    await client.waitFor(/got ping/);
    const r = new Revoker({
      pids: () => new Map([['app1', new Set([client.pid])]]),
      allowed: (_app, ip, p) => (ip === '127.0.0.1' && p === port ? false : undefined),
      isService: (ip, p) => ip === '127.0.0.1' && p === port,
      log: { warn: quiet, info: quiet, debug: quiet },
      mode,
    });
    t.equal(r.sweep(), 1, `${mode}: one connection cut`);
    r.close();
    await client.waitFor(/(cut \w+|closed)\n/);
    t.match(client.stdout, want, `${mode}: the client sees it (${mode === 'auto' ? 'ECONNABORTED' : 'EPIPE, ECONNRESET or EOF: the connection is shut down'})`);
    server.killGroup();
  }
});

t.test('egress: a rule with a cidr denies a connect to a real destination, for the apps it selects', async (t) => {
  // In a namespace of its own: the real destination is an address added to its loopback.
  const dir = mkdtempSync(join(tmpdir(), 'ax-egress-'));
  chmodSync(dir, 0o755);
  const sh = join(dir, 'egress.sh');
  writeFileSync(
    sh,
    `
set -e
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
ip link set lo up
ip addr add 192.0.2.10/32 dev lo
ax() { node ${AX} "$@" --socket ${dir}/ax.sock; }
node ${AX} daemon --socket ${dir}/ax.sock --state-dir ${dir}/state --ports 42000-42100 >${dir}/d.log 2>&1 &
for i in $(seq 100); do grep -q "ready:" ${dir}/d.log 2>/dev/null && break; sleep 0.1; done
/usr/bin/python3 -m http.server 8080 --bind 192.0.2.10 --directory ${dir} >/dev/null 2>&1 &
sleep 0.5
get() { node ${AX} run --socket ${dir}/ax.sock --no-start --labels "$1" -- curl -sS -o /dev/null -w '%{http_code}' --max-time 5 http://192.0.2.10:8080/ 2>&1 || true; }
echo "before etl $(get stage=etl)"
ax policy add no-outside deny --from stage=etl --cidr 192.0.2.0/24 >/dev/null
echo "after etl $(get stage=etl)"
echo "after web $(get stage=web)"
ax policy rm no-outside >/dev/null
echo "removed etl $(get stage=etl)"
`,
  );
  const r = await run('unshare', ['-n', 'bash', sh], { timeoutMs: 60_000 });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^before etl 200$/m, 'allowed before the rule');
  t.match(r.stdout, /^after etl curl: \(7\)/m, 'denied by the egress rule (connection refused)');
  t.match(r.stdout, /^after web 200$/m, 'an app the rule does not select still reaches it');
  t.match(r.stdout, /^removed etl 200$/m, 'allowed again once the rule is removed');
});

t.test('publishing: a bind the publish rules refuse fails with EACCES, natively the same program binds', async (t) => {
  const d = await TestDaemon.start(t);
  const dir = mkdtempSync(join(tmpdir(), 'ax-pub-'));
  const flag = join(dir, 'go');
  // Registers its name at `ax run`, then binds only once `flag` exists (after the rule is added).
  const BINDER = `
import socket, sys, os, time, errno
while not os.path.exists(sys.argv[1]): time.sleep(0.02)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(('0.0.0.0', int(sys.argv[2]))); s.listen(8); print('bound', flush=True)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;
  const app = d.run(['--name', 'batchweb', '--labels', 'role=batch'], ['python3', '-u', '-c', BINDER, flag, '7300']);
  await d.until('batchweb registered', async () => (await d.get('apps')).some((a) => a.name === 'batchweb'));
  const add = await d.ax(['policy', 'add', 'no-batch-serving', 'deny', '--publish', '*', '--from', 'role=batch']);
  t.equal(add.code, 0, `policy add (${add.stderr})`);
  writeFileSync(flag, '');
  await app.waitFor(/^(bound|E\w+)$/m);
  t.match(app.stdout, /^EACCES$/m, 'the bind is refused with EACCES');
  t.equal((await d.get('services')).filter((s) => s.name === 'batchweb').length, 0, 'nothing published');
  const ev = JSON.parse((await d.ax(['events', '-o', 'json'])).stdout) as { events: Array<{ verdict: string; op: string; rule: string; dst: { name: string } }> };
  t.ok(ev.events.some((e) => e.verdict === 'publish-refused' && e.rule === 'no-batch-serving' && e.dst.name === 'batchweb'), 'a publish-refused event names the rule');
  // The same program without ax binds (the refusal is policy's, not the kernel's).
  const native = await run('python3', ['-u', '-c', BINDER, flag, '7301']);
  t.match(native.stdout, /^bound$/m, 'natively: bound');
});
