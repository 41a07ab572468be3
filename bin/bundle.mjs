/**
 * Which code `confmux` runs: the bundle in bridge/dist (`npm run build`, scripts/build.mjs) when it
 * was made from the sources as they are now, else the TypeScript sources through tsx. The check
 * hashes every source file the bundle lists (bridge/dist/sources.json, about 70 files, a few ms),
 * so an edited source or a release unpacked over an older one (whose files keep the commit's time)
 * is never run from a bundle made before it. CONFMUX_FROM_SOURCE=1 runs the sources regardless.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The bundle's entry to run under `root`: `{ main }` when it is there and every source it was
 * made from is unchanged; `{ main: null, why }` otherwise (why: null when there is no bundle).
 */
export function bundleToRun(root) {
  const dist = join(root, 'bridge', 'dist');
  const main = join(dist, 'main.mjs');
  if (!existsSync(main) || !existsSync(join(dist, 'sources.json'))) return { main: null, why: null };
  let files;
  try {
    files = JSON.parse(readFileSync(join(dist, 'sources.json'), 'utf8')).files;
  } catch {
    return { main: null, why: 'bridge/dist/sources.json is unreadable' };
  }
  if (!files || typeof files !== 'object' || Object.keys(files).length === 0) return { main: null, why: 'bridge/dist/sources.json lists no source' };
  for (const [file, sha] of Object.entries(files)) {
    let now;
    try {
      now = createHash('sha256').update(readFileSync(join(root, file))).digest('hex');
    } catch {
      return { main: null, why: `${file} is gone` };
    }
    if (now !== sha) return { main: null, why: `${file} changed since the bundle was made` };
  }
  return { main, why: null };
}
