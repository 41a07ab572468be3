// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, with a fake microphone
// playing a WAV file, for end-to-end tests of the browser terminal.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export interface TestBrowser {
  page: Page;
  context: BrowserContext;
  close(): Promise<void>;
}

export async function openBrowser(micWav: string): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'confmux-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 520, height: 760 },
    // the TLS proxy test serves a certificate made for the test
    ignoreHTTPSErrors: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${micWav}`,
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    page,
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Signs the page in; resolves once the state shows registered (or the error). */
export async function signIn(page: Page, number: string, password: string, name?: string): Promise<string> {
  await page.fill('#number', number);
  await page.fill('#password', password);
  if (name) await page.fill('#name', name);
  await page.click('#signin-button');
  await page.waitForFunction(() => /registered|signed out/.test(document.getElementById('state')?.textContent ?? '') && document.getElementById('state')?.textContent !== 'connecting…', undefined, { timeout: 10000 });
  return (await page.textContent('#state')) ?? '';
}

export async function stateText(page: Page): Promise<string> {
  return (await page.textContent('#state')) ?? '';
}
