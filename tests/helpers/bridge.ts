// A real bridge on loopback port 0, driving the sandbox Asterisk, for end-to-end tests.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfig, type ConfigInput } from '../../bridge/config.ts';
import { createLogger } from '../../bridge/logger.ts';
import { BridgeServer } from '../../bridge/server/BridgeServer.ts';
import { AsteriskDriver } from '../../plugin/asterisk/AsteriskDriver.ts';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import { ARI_PASSWORD, ARI_URL, ARI_USER, asteriskRx } from './sandbox.ts';

let seq = 0;

export interface TestBridge {
  url: string;
  app: string;
  server: BridgeServer;
  driver: AsteriskDriver;
  close(): Promise<void>;
}

export async function startBridge(overrides: { asterisk?: Partial<NonNullable<ConfigInput['asterisk']>>; limits?: ConfigInput['limits']; server?: Partial<NonNullable<ConfigInput['server']>> } = {}): Promise<TestBridge> {
  // each bridge needs its own Stasis app name: a second events socket for one app replaces the first
  const app = `confmux-test-${process.pid}-${++seq}`;
  const config = loadConfig({
    env: {},
    overrides: {
      server: { host: '127.0.0.1', port: 0, ...overrides.server },
      asterisk: { url: ARI_URL, user: ARI_USER, password: ARI_PASSWORD, app, ...overrides.asterisk },
      // every test connects from 127.0.0.1: a loopback test suite opens connections faster than one user
      limits: { connectionsPerSecondPerIp: 200, connectionBurstPerIp: 200, ...overrides.limits },
      log: { level: process.env.CONFMUX_TEST_LOG ?? 'silent' },
    },
  });
  const log = createLogger(config.log.level);
  const driver = new AsteriskDriver({ config: config.asterisk, log });
  await driver.start();
  const server = new BridgeServer(config, driver, log);
  const address = await server.listen();
  return {
    url: `${config.server.tls ? 'wss' : 'ws'}://127.0.0.1:${address.port}/`,
    app,
    server,
    driver,
    async close() {
      await server.close();
      await driver.close();
    },
  };
}

/** Channels Asterisk has now, one `core show channels concise` line each. */
export async function channels(): Promise<string[]> {
  const out = await asteriskRx('core show channels concise');
  return out.split('\n').filter((l) => l.includes('!'));
}

/** Waits until no channel matches (or none at all); returns what is left at the deadline. */
export async function waitNoChannels(match: (line: string) => boolean = () => true, timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = (await channels()).filter(match);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const CLI = fileURLToPath(new URL('../../bin/confmux.mjs', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the confmux CLI as a user would. */
export function runCli(args: string[], timeoutMs = 60000): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A sandbox terminal (password `sandbox-<number>`) connected to `bridge` and registered; added to `open`, which the test file closes after its tests. */
export async function sandboxTerminal(bridge: TestBridge, open: TerminalClient[], number: string, name?: string): Promise<TerminalClient> {
  const t = createNodeTerminal({ url: bridge.url, number, password: `sandbox-${number}`, name });
  await t.connect();
  await t.register();
  open.push(t);
  return t;
}
