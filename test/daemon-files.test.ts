// What a daemon leaves behind when it stops: the identity map file (hook socket + ".map")
// stays while apps still run (their hooks keep it mapped and see the next daemon's
// changes), and goes when none does (it is 512 KiB in /run/ax, a RAM disk, per daemon).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { sweepStaleHookFiles } from '../src/daemon/runsweep';
import { start, TestDaemon } from './helpers';

async function mapFile(d: TestDaemon): Promise<string> {
  const st = JSON.parse((await d.ax(['status', '-o', 'json'])).stdout) as { hook_socket: string };
  return `${st.hook_socket}.map`;
}

t.test('no app left: the map file goes with the daemon', async (t) => {
  const d = await TestDaemon.start(t);
  const r = await d.run([], ['true']).result();
  t.equal(r.code, 0);
  const map = await mapFile(d);
  t.ok(existsSync(map), 'the daemon has its map file');
  await d.until('the app ended', async () => (await d.get('apps')).length === 0);
  await d.stop();
  t.notOk(existsSync(map), 'removed at a clean stop with no app left');
});

t.test('an app still running: the map file stays for the next daemon', async (t) => {
  const d = await TestDaemon.start(t);
  const app = d.run(['--name', 'stay'], ['sleep', '30']);
  await d.until('stay registered', async () => (await d.get('apps')).some((a) => a.name === 'stay'));
  const map = await mapFile(d);
  await d.stop();
  t.ok(existsSync(map), 'kept: the running app has it mapped');
  app.killGroup();
});

t.test('stale hook sockets and identity maps of dead root daemons are swept; live or in-use ones never', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-runsweep-'));
  const old = (Date.now() - 3_600_000) / 1000;
  const set = (tag: string, sock: 'dead' | 'live' | 'none') => {
    const base = join(dir, `hook-${tag}.sock`);
    writeFileSync(`${base}.map`, Buffer.alloc(4096));
    return { base, sock };
  };
  const listenAt = (path: string) => new Promise<ReturnType<typeof createServer>>((res) => { const s = createServer(); s.listen(path, () => res(s)); });
  // dead: its daemon was killed (the socket file stays, nothing listens)
  const dead = set('aaaaaaaaaaaa', 'dead');
  for (const p of [dead.base, `${dead.base}.dns`]) {
    // a socket bound by a process that then died: the file stays, nothing listens
    const r = spawnSync('python3', ['-c', `import socket\ns=socket.socket(socket.AF_UNIX)\ns.bind(${JSON.stringify(p)})\ns.listen()`]);
    t.equal(r.status, 0, `left-over socket ${p}`);
  }
  // live: a daemon serves it
  const live = set('bbbbbbbbbbbb', 'live');
  const ls = await listenAt(live.base);
  t.teardown(() => ls.close());
  // in use: its daemon is gone but an app still has the map mapped
  const used = set('cccccccccccc', 'none');
  const py = start('python3', ['-c', `import mmap,sys,time\nf=open(${JSON.stringify(`${used.base}.map`)},'r+b')\nm=mmap.mmap(f.fileno(),0)\nprint('mapped',flush=True)\ntime.sleep(60)`], {}, t);
  await py.waitFor(/mapped/);
  // young: a daemon starting right now
  const young = set('dddddddddddd', 'none');
  // a map left by a graceful stop while apps ran, its apps gone since
  const orphan = set('eeeeeeeeeeee', 'none');
  for (const f of [dead.base, `${dead.base}.dns`, `${dead.base}.map`, `${used.base}.map`, `${orphan.base}.map`]) utimesSync(f, old, old);
  utimesSync(`${live.base}.map`, old, old);
  const n = await sweepStaleHookFiles(dir, join(dir, 'hook-ffffffffffff.sock'));
  t.equal(n, 2, 'two sets swept (the dead daemon\'s, the orphan map)');
  t.notOk(existsSync(dead.base) || existsSync(`${dead.base}.dns`) || existsSync(`${dead.base}.map`), 'the dead daemon\'s socket, DNS socket and map are gone');
  t.notOk(existsSync(`${orphan.base}.map`), 'the orphan map is gone');
  t.ok(existsSync(live.base) && existsSync(`${live.base}.map`), 'a live daemon\'s files stay');
  t.ok(existsSync(`${used.base}.map`), 'a map an app still has mapped stays');
  t.ok(existsSync(`${young.base}.map`), 'files younger than a minute stay (a daemon starting)');
  py.kill('SIGKILL');
});
