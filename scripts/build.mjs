#!/usr/bin/env node
// `npm run build`: the bridge's command line and its worker bundled into bridge/dist/ (esbuild; the
// npm packages and the native pump stay outside, loaded from node_modules and native/build). Run
// from there, the bridge needs no TypeScript loader: tsx's loader thread alone costs about 20 MB of
// RSS per process (docs/performance.md, "Seventh round"). bin/confmux.mjs runs the bundle when
// bridge/dist/sources.json still matches the sources byte for byte (bin/bundle.mjs), and the
// sources through tsx otherwise. The bundle sits two levels below the root, as the sources do, so
// their paths relative to import.meta.url (bridge/web/, native/build/, bench/) hold in it too.
//
// `--if-stale`: only when there is no bundle or a source changed since (scripts/node.sh and the
// Ansible role); it then prints "bridge/dist: up to date" and changes nothing.
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { bundleToRun } from '../bin/bundle.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.argv.includes('--if-stale') && bundleToRun(root).main) {
  process.stdout.write('bridge/dist: up to date\n');
  process.exit(0);
}
const outdir = join(root, 'bridge', 'dist');
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['bridge/cli/main.ts', 'bridge/cli/worker.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  outdir,
  outExtension: { '.js': '.mjs' },
  metafile: true,
  logLevel: 'warning',
});
// what the bundle was made from: every source file of ours in it, with its SHA-256
const files = {};
for (const input of Object.keys(result.metafile.inputs).sort()) {
  if (input.includes('node_modules/')) continue;
  files[input] = createHash('sha256').update(readFileSync(join(root, input))).digest('hex');
}
writeFileSync(join(outdir, 'sources.json'), `${JSON.stringify({ files }, null, 1)}\n`);
process.stdout.write(`bridge/dist: main.mjs and worker.mjs from ${Object.keys(files).length} source files\n`);
