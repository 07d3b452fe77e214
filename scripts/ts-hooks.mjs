// Loads the TypeScript test files for the test runner (scripts/test.mjs puts this module in the
// test processes' NODE_OPTIONS as --import). tap's TypeScript plugin loads ts-node, which loads
// the whole TypeScript compiler into every test process and transpiles each .ts file with it
// (measured on the slow VM: 0.3 s of CPU for a trivial file, 1-2.5 s for files importing much of
// src/, some 45 files); here esbuild (already the build's bundler) strips the types instead.
// Both only transpile: types are checked by `tsc --noEmit`, a check of its own in `npm test`.
//
// * .ts files are CommonJS (package.json has no "type": "module"), as ts-node compiled them:
//   the CommonJS loader gets a '.ts' extension handler, and the ESM load hook hands .ts files
//   (the test file itself, run as main) to it.
// * tap's plugin still imports ts-node first thing; the resolve hook answers that import with
//   an empty module. Module hooks registered here apply to the --import modules after this one,
//   and NODE_OPTIONS --import modules come before the command line's.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import Module, { createRequire, register } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier === '@isaacs/ts-node-temp-fork-for-pr-2009/import') return { url: 'data:text/javascript,', shortCircuit: true };
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (url.startsWith('file:') && url.endsWith('.ts')) return { format: 'commonjs', shortCircuit: true };
  return next(url, context);
}
`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);

// For the test process only: programs a test starts without clearing NODE_OPTIONS (an `ax run`
// by execFile, say) do not load this module and its hooks thread too.
if (process.env.NODE_OPTIONS) {
  const self = new RegExp(`\\s*--import=${import.meta.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'g');
  process.env.NODE_OPTIONS = process.env.NODE_OPTIONS.replace(self, '').trim();
  if (!process.env.NODE_OPTIONS) delete process.env.NODE_OPTIONS;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const OPTIONS = {
  loader: 'ts',
  format: 'cjs',
  target: 'node20',
  // class fields as tsconfig.json's target (ES2022) has them, as ts-node compiled them
  tsconfigRaw: { compilerOptions: { useDefineForClassFields: true } },
  // stack traces and tap's failure locations point into the .ts source (node runs with --enable-source-maps)
  sourcemap: 'inline',
};
// The test files, test/helpers.ts and the src/ files they import are the same in every test
// process: each output is kept under node_modules/.cache, named by a hash of the source, its
// path and the options, so that a process whose files are all there never starts esbuild
// (0.2 s of CPU). Written to a temporary name and renamed: test files run in parallel.
const cacheDir = join(root, 'node_modules', '.cache', 'ax-test-ts');
const esbuildVersion = JSON.parse(readFileSync(require.resolve('esbuild/package.json'), 'utf8')).version;
let transformSync;

function transpile(source, filename) {
  const key = createHash('sha256').update(JSON.stringify([esbuildVersion, OPTIONS, filename])).update(source).digest('hex');
  const cached = join(cacheDir, `${key}.js`);
  try {
    return readFileSync(cached, 'utf8');
  } catch {
    /* not yet */
  }
  transformSync ??= require('esbuild').transformSync;
  const { code } = transformSync(source, { ...OPTIONS, sourcefile: filename });
  try {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${cached}.${process.pid}`;
    writeFileSync(tmp, code);
    renameSync(tmp, cached);
  } catch {
    /* no cache: the next process transpiles again */
  }
  return code;
}

Module._extensions['.ts'] = function compileTs(module, filename) {
  module._compile(transpile(readFileSync(filename, 'utf8'), filename), filename);
};
