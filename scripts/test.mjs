// Runs the test suite and ends with the line CI reads: "N passed, N failed".
//
// Tests use virtual addresses (10.x), which must never become real packets, so
// the whole suite runs inside a fresh network namespace that has only loopback
// (unshare -n; needs root or user namespaces). Multi-host tests create their
// own namespaces inside it.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);

if (!process.env.AX_TEST_ISOLATED) {
  const probe = spawnSync('unshare', ['-n', 'true']);
  if (probe.status !== 0) {
    process.stderr.write('the tests need a private network namespace (unshare -n): run them as root\n0 passed, 1 failed\n');
    process.exit(1);
  }
  const child = spawn('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, fileURLToPath(import.meta.url), ...args], {
    stdio: 'inherit',
    env: { ...process.env, AX_TEST_ISOLATED: '1' },
  });
  child.on('exit', (code, sig) => process.exit(code ?? (sig ? 1 : 0)));
} else {
  const files = args.length > 0 ? args : readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  const tap = spawn(
    process.execPath,
    [join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs'), '--reporter=tap', '--disable-coverage', '--timeout=300', '--jobs=2', ...files],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: process.env },
  );
  let tail = '';
  let summary = null;
  tap.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    tail = (tail + chunk.toString()).slice(-4096);
    const m = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?/.exec(tail);
    if (m) summary = { total: +m[1], pass: +m[2], fail: +(m[3] ?? 0) };
  });
  tap.on('exit', (code) => {
    const failed = summary ? summary.total - summary.pass : 1;
    const passed = summary ? summary.pass : 0;
    // A run that failed without any failed assertion (a crashed file) still counts as a failure.
    process.stdout.write(`\n${passed} passed, ${code === 0 ? failed : Math.max(failed, 1)} failed\n`);
    process.exit(code ?? 1);
  });
}
