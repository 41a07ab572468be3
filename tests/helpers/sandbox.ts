// Test access to the local Asterisk sandbox (plugin/asterisk/sandbox/sandbox.sh).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SANDBOX_SH = fileURLToPath(new URL('../../plugin/asterisk/sandbox/sandbox.sh', import.meta.url));

/** ARI of the sandbox (dialplan/asterisk/http.conf and ari.conf). */
export const ARI_URL = 'http://127.0.0.1:8088';
export const ARI_USER = 'confmux';
export const ARI_PASSWORD = 'confmux-sandbox';
export const ARI_WS_URL = 'ws://127.0.0.1:8088/ari/events';
/** The sandbox's PJSIP UDP transport. */
export const SIP_HOST = '127.0.0.1';
export const SIP_PORT = 5060;
/** Dialplan contexts from dialplan/asterisk/extensions_confmux.conf. */
export const ROOMS_CONTEXT = 'confmux-rooms';
export const TERMINALS_CONTEXT = 'confmux-terminals';

export function ariAuthHeader(): string {
  return 'Basic ' + Buffer.from(`${ARI_USER}:${ARI_PASSWORD}`).toString('base64');
}

let upOnce: Promise<string> | undefined;

/**
 * Starts the sandbox (idempotent `sandbox.sh up`: build or restore the chroot,
 * copy dialplan/asterisk/*.conf, start Asterisk, wait for ARI), once per
 * process. Resolves with the script's output. Needs root.
 */
export function ensureSandbox(): Promise<string> {
  upOnce ??= run('bash', [SANDBOX_SH, 'up'], { maxBuffer: 16 << 20, timeout: 15 * 60_000 })
    .then(({ stdout, stderr }) => stderr + stdout)
    .catch((err: unknown) => {
      upOnce = undefined; // let a later call retry
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`sandbox.sh up failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
    });
  return upOnce;
}

/** `asterisk -rx CMD` inside the sandbox; resolves with its output. */
export async function asteriskRx(cmd: string): Promise<string> {
  const { stdout } = await run('bash', [SANDBOX_SH, 'rx', cmd], { maxBuffer: 16 << 20, timeout: 30_000 });
  return stdout;
}

/** `sandbox.sh status`: true when Asterisk runs (ARI health is in `text`). */
export async function sandboxStatus(): Promise<{ running: boolean; text: string }> {
  try {
    const { stdout } = await run('bash', [SANDBOX_SH, 'status'], { timeout: 15_000 });
    return { running: true, text: stdout.trim() };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    if (e.code === 3) return { running: false, text: (e.stdout ?? '').trim() };
    throw err;
  }
}

/** fetch() against ARI with the sandbox credentials; path like '/ari/asterisk/info'. */
export function ari(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('Authorization', ariAuthHeader());
  return fetch(ARI_URL + path, { ...init, headers });
}
