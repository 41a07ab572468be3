/**
 * The browser terminal's files, served by the bridge on its one port: index.html as it is, and
 * app.js / worklet.js bundled once from TypeScript with esbuild when first asked for.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const WEB = fileURLToPath(new URL('../web/', import.meta.url));

export interface Asset {
  type: string;
  body: Buffer;
}

export class WebAssets {
  private assets: Promise<Map<string, Asset>> | null = null;

  /** The asset for a request path, or undefined. */
  async get(path: string): Promise<Asset | undefined> {
    this.assets ??= this.load();
    const name = path === '/' || path === '' ? 'index.html' : path.replace(/^\/+/, '');
    return (await this.assets).get(name);
  }

  private async load(): Promise<Map<string, Asset>> {
    const bundle = async (entry: string): Promise<Buffer> => {
      const r = await build({ entryPoints: [WEB + entry], bundle: true, format: 'esm', target: 'es2022', minify: true, write: false, platform: 'browser', logLevel: 'silent' });
      return Buffer.from(r.outputFiles[0]!.contents);
    };
    const [html, app, worklet] = await Promise.all([readFile(WEB + 'index.html'), bundle('app.ts'), bundle('worklet.ts')]);
    return new Map([
      ['index.html', { type: 'text/html; charset=utf-8', body: html }],
      ['app.js', { type: 'text/javascript; charset=utf-8', body: app }],
      ['worklet.js', { type: 'text/javascript; charset=utf-8', body: worklet }],
    ]);
  }
}
