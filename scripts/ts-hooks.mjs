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
import Module, { register } from 'node:module';
import { readFileSync } from 'node:fs';
import { transformSync } from 'esbuild';

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

Module._extensions['.ts'] = function compileTs(module, filename) {
  const { code } = transformSync(readFileSync(filename, 'utf8'), {
    loader: 'ts',
    format: 'cjs',
    target: 'node20',
    // class fields as tsconfig.json's target (ES2022) has them, as ts-node compiled them
    tsconfigRaw: { compilerOptions: { useDefineForClassFields: true } },
    // stack traces and tap's failure locations point into the .ts source (node runs with --enable-source-maps)
    sourcemap: 'inline',
    sourcefile: filename,
  });
  module._compile(code, filename);
};
