// The first request of a process opens its session with the daemon. With
// threads running, that must not grow the process's fd table (growing a shared
// table waits for an RCU grace period: ~10 ms per process when the control
// channel went to fd 900), and the channel must still move out of the way of a
// dup2() onto its fd. test/c/firstcall.c checks FDSize in /proc/self/status.
import t from 'tap';
import { cbin as bin, clean, run, start, TestDaemon } from './helpers';

t.test('first request in a threaded process: no fd table growth, dup2 onto the channel relocates it', async (t) => {
  const d = await TestDaemon.start(t);
  const nat = start(bin('echoserver'), ['127.0.0.1', '0'], {}, t);
  const natPort = (await nat.waitFor(/listening ip=\S+ port=(\d+)/))[1];
  const srv = d.run(['--name', 'echo', '--ip', '10.2.0.1'], [bin('echoserver'), '0.0.0.0', '7']);
  await srv.waitFor(/listening ip=0\.0\.0\.0 port=7\b/);

  clean(t, 'native', await run(bin('firstcall'), ['127.0.0.1', natPort, '8']));
  for (const host of ['10.2.0.1', 'echo']) {
    const r = await d.run([], [bin('firstcall'), host, '7', '8']).result(30_000);
    clean(t, `ax, ${host}`, r);
    const ctl = Number(/ctl_fd=(-?\d+)/.exec(r.stdout)?.[1]);
    t.ok(ctl >= 3 && ctl < 64, `the control channel is inside the initial fd table (fd ${ctl})`);
    t.comment(/first_connect_us=\d+/.exec(r.stdout)?.[0] ?? '');
  }
});
