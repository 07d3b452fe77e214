// Connect handoff modes: "direct" (the default for processes in the daemon's
// network namespace: the daemon decides policy and backend, the app's own
// socket connects) and "fd" (`--handoff fd`, and any process in another network
// namespace: the daemon connects a socket and passes it). Both must give the
// same results: the checklist programs, kernel errno semantics, and client IP
// preservation (the server sees the client's VIP, also when its accept races
// the client's CONNECTED note).
import t from 'tap';
import { join } from 'node:path';
import { cbin as bin, clean, run, TestDaemon } from './helpers';

/** Session modes the daemon logged ("hook session N (pid P, app A): handoff MODE"). */
function loggedModes(d: TestDaemon): string[] {
  return [...d.proc.stderr.matchAll(/hook session \d+ \(pid \d+, app \S+\): handoff (\w+)/g)].map((m) => m[1]);
}

const PY_SERVER = `
import socket, sys
n = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(128)
print("listening", flush=True)
for i in range(n):
    c, a = s.accept()
    print("peer", a[0], c.getpeername()[0], flush=True)
    c.sendall(b"hi\\n")
    c.close()
`;

const PY_CLIENT = `
import socket, sys
n = int(sys.argv[1])
for i in range(n):
    s = socket.create_connection(("pysrv", 80), timeout=5)
    assert s.recv(10) == b"hi\\n"
    print("connected", s.getpeername()[0], s.getsockname()[0], flush=True)
    s.close()
`;

for (const mode of ['direct', 'fd'] as const) {
  const args = mode === 'fd' ? ['--handoff', 'fd'] : [];

  t.test(`${mode} handoff: checklist programs, errno semantics, client IP preservation`, async (t) => {
    const d = await TestDaemon.start(t, args);
    const srv = d.run(['--name', 'echo', '--ip', '10.2.0.1'], [bin('echoserver'), '0.0.0.0', '7']);
    await srv.waitFor(/listening ip=0\.0\.0\.0 port=7\b/);

    // Which handoff was used is visible to the app itself (same socket or not) and in the log.
    const h = await d.run(['--ip', '10.2.0.9'], [bin('handoff'), 'echo', '7']).result();
    clean(t, 'handoff probe', h);
    t.match(h.stdout, new RegExp(`handoff=${mode}\\b`), `connect used ${mode} handoff`);
    t.match(h.stdout, /peer=10\.2\.0\.1:7\b/, 'getpeername reports the virtual service address');
    t.match(h.stdout, /local=10\.2\.0\.9:\d+/, 'getsockname reports the client VIP');
    t.ok(loggedModes(d).includes(mode), `daemon log shows a ${mode} session: ${loggedModes(d).join(',')}`);
    if (mode === 'fd') t.notOk(loggedModes(d).includes('direct'), '--handoff fd: no direct session');

    for (const prog of ['nbconnect', 'dup2', 'forkconnect', 'peername', 'closerange', 'threads']) {
      clean(t, `${prog} by name`, await d.run(['--ip', '10.2.0.9'], [bin(prog), 'echo', '7']).result(30_000));
      clean(t, `${prog} by VIP`, await d.run([], [bin(prog), '10.2.0.1', '7']).result(30_000));
    }
    t.match(srv.stdout, /peer=10\.2\.0\.9:\d+/, 'server sees the client VIP');
    t.notMatch(srv.stdout, /peer=127\./, 'never the real loopback address');

    // A closed port of an app that is up: the kernel's own ECONNREFUSED, blocking and not.
    clean(t, 'non-blocking connect refused', await d.run([], [bin('nbconnect'), 'echo', '81', 'refused']).result());
    clean(t, 'blocking connect refused', await d.run([], [bin('handoff'), 'echo', '81', 'refused']).result());
    // A registered app that never listens: a blocking connect waits --connect-wait, then is refused.
    const idle = d.run(['--name', 'idle'], ['sleep', '60']);
    await d.until('idle registered', async () => (await d.get('apps')).some((a) => a.name === 'idle'));
    clean(t, 'blocking connect to a starting app refused after the wait', await d.run(['--connect-wait', '100ms'], [bin('handoff'), 'idle', '80', 'refused']).result());
    // SO_SNDTIMEO is a blocking connect's timeout natively (socket(7)): it bounds that wait too.
    const sndtimeo = `
import errno, socket, struct, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack('ll', 0, 300000))
t0 = time.monotonic()
try:
    s.connect(('idle', 80)); print('connected')
except OSError as e:
    print(errno.errorcode[e.errno], int((time.monotonic() - t0) * 1000))
`;
    const st = await d.run([], ['python3', '-c', sndtimeo]).result();
    const m = /^(\w+) (\d+)$/m.exec(st.stdout);
    t.equal(m?.[1], 'ECONNREFUSED', `refused: ${st.stdout}${st.stderr}`);
    t.ok(m && Number(m[2]) >= 250 && Number(m[2]) < 2500, `after the 300 ms send timeout, not the 5 s connect-wait (${m?.[2]} ms)`);
    idle.kill();
  });

  t.test(`${mode} handoff: python client/server, every accept sees the client VIP`, async (t) => {
    const d = await TestDaemon.start(t, args);
    const n = 40;
    const srv = d.run(['--name', 'pysrv', '--ip', '10.7.0.1'], ['python3', '-c', PY_SERVER, String(n + 1)]);
    await srv.waitFor(/listening/);
    const cli = await d.run(['--ip', '10.7.0.9'], ['python3', '-c', PY_CLIENT, String(n)]).result(30_000);
    t.equal(cli.code, 0, cli.stderr);
    const conns = cli.stdout.split('\n').filter((l) => l.startsWith('connected'));
    t.equal(conns.length, n, `${n} connections`);
    t.ok(conns.every((l) => l === 'connected 10.7.0.1 10.7.0.9'), `client sees service VIP and own VIP\n${conns.slice(0, 3).join('\n')}`);
    await srv.waitFor(new RegExp(`(?:peer .*\\n){${n}}`));
    const peers = srv.stdout.split('\n').filter((l) => l.startsWith('peer'));
    t.equal(peers.length, n);
    t.same(peers.filter((l) => l !== 'peer 10.7.0.9 10.7.0.9'), [], 'accept() and getpeername() give the client VIP for every connection');

    // A native client (not under ax) straight to the host port: seen as itself, without delay.
    const svc = (await d.get('services')).find((s) => s.name === 'pysrv');
    t.ok(svc, 'service listed');
    const t0 = Date.now();
    const nat = await run('python3', ['-c', `import socket; s = socket.create_connection(("127.0.0.1", ${svc!.host_port})); print(s.recv(10))`]);
    t.equal(nat.code, 0, nat.stderr);
    await srv.waitFor(/peer 127\.0\.0\.1 127\.0\.0\.1/);
    t.ok(Date.now() - t0 < 5000, 'native client served');
    t.ok(loggedModes(d).every((m) => m === mode), `every session used ${mode}: ${loggedModes(d).join(',')}`);
  });
}

t.test('auto handoff: a process in another network namespace gets fd handoff and still connects', async (t) => {
  const d = await TestDaemon.start(t);
  const srv = d.run(['--name', 'echo', '--ip', '10.2.0.1'], [bin('echoserver'), '0.0.0.0', '7']);
  await srv.waitFor(/listening ip=0\.0\.0\.0 port=7\b/);
  // A fresh network namespace has no route to the daemon's host ports: only a
  // socket made and connected by the daemon can work there.
  const r = await d.run(['--ip', '10.2.0.8'], ['unshare', '-n', '--', bin('handoff'), 'echo', '7']).result();
  clean(t, 'handoff from another netns', r);
  t.match(r.stdout, /handoff=fd\b/, 'fd handoff');
  t.match(r.stdout, /peer=10\.2\.0\.1:7\b/);
  t.ok(loggedModes(d).includes('fd'), `log shows an fd session: ${loggedModes(d).join(',')}`);
  await srv.waitFor(/peer=10\.2\.0\.8:\d+/);
  // The same program in the daemon's namespace connects directly.
  const r2 = await d.run(['--ip', '10.2.0.8'], [bin('handoff'), 'echo', '7']).result();
  clean(t, 'handoff from the daemon netns', r2);
  t.match(r2.stdout, /handoff=direct\b/, 'direct handoff');
});

t.test('--handoff rejects unknown modes', async (t) => {
  const r = await run(process.execPath, [join(__dirname, '..', 'dist', 'ax.js'), 'daemon', '--handoff', 'magic', '--socket', '/nonexistent/ax.sock']);
  t.not(r.code, 0);
  t.match(r.stderr, /--handoff: "magic" is not auto or fd/);
});


