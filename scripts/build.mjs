// Builds everything: the native hook (make -C native) and the single-file CLI
// bundle dist/ax.js (esbuild), with the .proto files embedded.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
mkdirSync(dist, { recursive: true });

execFileSync('make', ['-s', '-C', join(root, 'native')], { stdio: 'inherit' });
copyFileSync(join(root, 'native', 'build', 'libaxhook.so'), join(dist, 'libaxhook.so'));
copyFileSync(join(root, 'native', 'build', 'ax-dnsrelay'), join(dist, 'ax-dnsrelay'));
copyFileSync(join(root, 'native', 'build', 'ax-confine'), join(dist, 'ax-confine'));
// The connect benchmark's C client/server (bench/connect.c).
execFileSync('gcc', ['-O2', '-Wall', '-pthread', '-o', join(root, 'native', 'build', 'bench-connect'), join(root, 'bench', 'connect.c')], { stdio: 'inherit' });

const protos = {};
for (const f of readdirSync(join(root, 'proto'))) if (f.endsWith('.proto')) protos[f] = readFileSync(join(root, 'proto', f), 'utf8');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // a separate .map file: an inline one is megabytes every start must read and scan
  sourcemap: 'linked',
  // Native addons stay in node_modules; everything else is in the one file.
  external: ['koffi', 'level', 'classic-level'],
  define: { __AX_PROTOS__: JSON.stringify(protos) },
  logLevel: 'warning',
};
await build({ ...common, entryPoints: [join(root, 'src', 'cli', 'main.ts')], outfile: join(dist, 'ax.js'), banner: { js: '#!/usr/bin/env node' } });
chmodSync(join(dist, 'ax.js'), 0o755);
for (const b of ['bench.ts', 'gossip-sim.ts', 'cluster-real.ts', 'dns.ts', 'isolate.ts', 'policy.ts']) {
  if (existsSync(join(root, 'bench', b))) {
    await build({ ...common, sourcemap: false, entryPoints: [join(root, 'bench', b)], outfile: join(dist, b.replace('.ts', '.js')) });
  }
}
