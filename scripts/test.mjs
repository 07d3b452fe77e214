// Runs the test suite and ends with the line CI reads: "N passed, N failed".
//
// Tests use virtual addresses (10.x), which must never become real packets, so
// the whole suite runs inside a fresh network namespace that has only loopback
// (unshare -n; needs root or user namespaces). Multi-host tests create their
// own namespaces inside it.
//
// With no file arguments (the README's `npm test`) the type check (tsc --noEmit)
// and ESLint run first; each counts as one check in the summary, so a type or
// lint error fails the run. With file arguments only those test files run.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);

/** Runs a command to completion, its output shown only when it fails. */
function check(name, cmd, cmdArgs) {
  return new Promise((resolve) => {
    const child = spawn(cmd, cmdArgs, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (e) => resolve({ name, ok: false, out: e.message }));
    child.on('exit', (code) => resolve({ name, ok: code === 0, out }));
  });
}

/** Type check and lint, in parallel; prints one tap-like line each. */
async function staticChecks() {
  const bin = (n) => join(root, 'node_modules', '.bin', n);
  const results = await Promise.all([
    check('typecheck (tsc --noEmit)', bin('tsc'), ['--noEmit', '-p', '.']),
    check('lint (eslint)', bin('eslint'), ['.']),
  ]);
  for (const r of results) {
    process.stdout.write(`${r.ok ? 'ok' : 'not ok'} - ${r.name}\n`);
    if (!r.ok) process.stdout.write(r.out.replace(/^/gm, '    ') + '\n');
  }
  return { passed: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length };
}

if (!process.env.AX_TEST_ISOLATED) {
  const probe = spawnSync('unshare', ['-n', 'true']);
  if (probe.status !== 0) {
    process.stderr.write('the tests need a private network namespace (unshare -n): run them as root\n0 passed, 1 failed\n');
    process.exit(1);
  }
  const pre = args.length === 0 ? await staticChecks() : { passed: 0, failed: 0 };
  const child = spawn('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, fileURLToPath(import.meta.url), ...args], {
    stdio: 'inherit',
    env: { ...process.env, AX_TEST_ISOLATED: '1', AX_TEST_STATIC: `${pre.passed},${pre.failed}` },
  });
  child.on('exit', (code, sig) => process.exit(pre.failed > 0 ? 1 : (code ?? (sig ? 1 : 0))));
} else {
  const files = args.length > 0 ? args : readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  // Test files load through scripts/ts-hooks.mjs (esbuild) rather than tap's ts-node: see there.
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(join(root, 'scripts', 'ts-hooks.mjs'))}`.trim();
  const tap = spawn(
    process.execPath,
    [join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs'), '--reporter=tap', '--disable-coverage', '--timeout=300', '--jobs=4', `--test-env=NODE_OPTIONS=${nodeOptions}`, ...files],
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
    const [staticPassed, staticFailed] = (process.env.AX_TEST_STATIC ?? '0,0').split(',').map(Number);
    const failed = summary ? summary.total - summary.pass : 1;
    const passed = summary ? summary.pass : 0;
    // A run that failed without any failed assertion (a crashed file) still counts as a failure.
    const testsFailed = code === 0 ? failed : Math.max(failed, 1);
    process.stdout.write(`\n${passed + staticPassed} passed, ${testsFailed + staticFailed} failed\n`);
    process.exit(staticFailed > 0 ? 1 : (code ?? 1));
  });
}
