// What a daemon leaves behind when it stops: the identity map file (hook socket + ".map")
// stays while apps still run (their hooks keep it mapped and see the next daemon's
// changes), and goes when none does (it is 512 KiB in /run/ax, a RAM disk, per daemon).
import { existsSync } from 'node:fs';
import t from 'tap';
import { TestDaemon } from './helpers';

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
