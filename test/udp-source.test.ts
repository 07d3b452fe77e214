// Source binding of unconnected UDP senders (native/udp.c): a client socket's
// first datagram to a virtual address binds it to the app's source address, so
// no IP_PKTINFO is needed per datagram, and a datagram to a real address moves
// it back to the wildcard. The app must see none of it: test/c/udpsrc.c prints
// what it sees of its socket (getsockname, bind errno, flags, options, epoll,
// a thread blocked in recv() across the move, an inherited copy over exec),
// and its output under ax must equal its output natively, line by line. The
// servers' logs show which source each datagram carried.
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cbin, start, TestDaemon } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'ax-udpsrc-'));
chmodSync(work, 0o755);
const PY = '/usr/bin/python3';

/** An echo server on 0.0.0.0:PORT: answers in upper case, logs each datagram's source. */
const echo = join(work, 'echo.py');
writeFileSync(
  echo,
  `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('bound', flush=True)
while True:
    d, a = s.recvfrom(2000)
    print('got', d.decode(), 'from', a[0], a[1], flush=True)
    s.sendto(d.upper(), a)
`,
);

t.test('an unconnected client sees its socket as natively while ax binds and moves it', async (t) => {
  const d = await TestDaemon.start(t);
  const real = start(PY, [echo, '7411'], {}, t);
  const natV = start(PY, [echo, '7412'], {}, t);
  const virt = d.run(['--name', 'usrc', '--ip', '10.5.7.1'], [PY, echo, '9']);
  await Promise.all([real.waitFor(/bound/), natV.waitFor(/bound/), virt.waitFor(/bound/)]);

  const nat = await start(cbin('udpsrc'), ['127.0.0.1', '7412', '127.0.0.1', '7411'], {}, t).result();
  t.equal(nat.code, 0, nat.stderr);
  const log = join(work, 'hook.log');
  const ax = await d
    .run(['--name', 'usrc-cli', '--ip', '10.5.7.2'], [cbin('udpsrc'), 'usrc', '9', '127.0.0.1', '7411'], { env: { ...process.env, AX_HOOK_DEBUG: log } })
    .result();
  t.equal(ax.code, 0, ax.stderr);
  // the path under test was taken: two sockets source-bound, one moved back (not IP_PKTINFO all along)
  const hook = readFileSync(log, 'utf8');
  t.equal((hook.match(/udp fd \d+ source-bound/g) ?? []).length, 3, 'three sockets were source-bound');
  t.equal((hook.match(/udp fd \d+ moved back to the wildcard/g) ?? []).length, 1, 'one was moved back');
  const lines = (s: string) => s.trim().split('\n');
  t.same(lines(ax.stdout), lines(nat.stdout), `the app's view under ax equals the native one\n${nat.stdout}`);
  // the reference itself must show what is being compared (a run that failed early would match nothing)
  t.match(nat.stdout, /^fresh-local=0\.0\.0\.0:0 /m);
  t.match(nat.stdout, /^after-first-local=0\.0\.0\.0:nonzero /m);
  t.match(nat.stdout, /^repeated=200$/m);
  t.match(nat.stdout, /^bind-again=-1 errno=EINVAL$/m);
  t.match(nat.stdout, /^blocked-reader=4 REAL$/m);
  t.match(nat.stdout, /^after-real-local=0\.0\.0\.0:P /m);
  t.match(nat.stdout, /^cloexec=1 nonblock=0 rcvbuf-kept=yes$/m);
  t.match(nat.stdout, /^epoll=1 data=5eed$/m);
  t.match(nat.stdout, /^again=AGAIN from-dest=yes$/m);
  t.match(nat.stdout, /^real-then-first=BACK from-dest=yes$/m);
  t.match(nat.stdout, /^inherited-local=0\.0\.0\.0:P /m);
  t.match(nat.stdout, /^unspec=0 local=0\.0\.0\.0:0 /m);
  t.match(nat.stdout, /^rebind=0 errno=- local=0\.0\.0\.0:nonzero /m);
  t.match(nat.stdout, /^third-again=THIRD from-dest=yes$/m);

  // what the servers saw: the virtual one the client's VIP every time (source-bound,
  // then IP_PKTINFO after the move), the real one the kernel's own source and the same port
  const port = /port=(\d+)/.exec(ax.stderr)?.[1];
  t.ok(port, 'the client printed its port');
  t.equal(await virt.count(/got (?:first|r|back|second|third) from 10\.5\.7\.2 \d+/g, 205), 205, 'the service saw the client VIP on every datagram');
  t.match(virt.stdout, new RegExp(`got first from 10\\.5\\.7\\.2 ${port}\\n`), 'with the port getsockname showed');
  t.match(virt.stdout, new RegExp(`got back from 10\\.5\\.7\\.2 ${port}\\n`), 'the same port after the move');
  t.notMatch(virt.stdout, /from 127\./, 'never a loopback source');
  t.match(real.stdout, new RegExp(`got real from 127\\.0\\.0\\.1 ${port}\\n`), 'the real server saw the native source and the same port');
  t.match(real.stdout, new RegExp(`got again from 127\\.0\\.0\\.1 ${port}\\n`));
  t.notMatch(real.stdout, /from 127\.77\./, 'not the source address ax bound');
});
