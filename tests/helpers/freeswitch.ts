/**
 * A real BridgeServer with the FreeSwitchDriver in front of the FAKE FreeSWITCH
 * (tests/fixtures/FakeFreeSwitch.ts), SDK terminals on it, and the polling the FreeSWITCH tests share.
 */
import { loadConfig } from '../../bridge/config.ts';
import { createLogger } from '../../bridge/logger.ts';
import { BridgeServer } from '../../bridge/server/BridgeServer.ts';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import type { TerminalClient } from '../../bridge/sdk/TerminalClient.ts';
import { FreeSwitchDriver } from '../../plugin/freeswitch/FreeSwitchDriver.ts';
import { FakeFreeSwitch, type FakeFreeSwitchOptions } from '../fixtures/FakeFreeSwitch.ts';

/** what a test undoes after itself, last first */
export type Cleanup = (() => Promise<void> | void)[];

export const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `stepMs` until it holds; throws after `ms`. */
export async function until(cond: () => boolean, ms = 3000, stepMs = 10): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await wait(stepMs);
  }
}

/** The fake FreeSWITCH and a bridge on it (port 0, loopback); both are closed by `cleanup`. */
export async function startFreeSwitchBridge(fake: FakeFreeSwitchOptions, cleanup: Cleanup, owns?: (number: string) => boolean): Promise<{ fs: FakeFreeSwitch; url: string; server: BridgeServer }> {
  const fs = await FakeFreeSwitch.start(fake);
  cleanup.push(() => fs.close());
  const config = loadConfig({
    env: {},
    overrides: { server: { host: '127.0.0.1', port: 0 }, mediaServer: 'freeswitch', freeswitch: { port: fs.port, password: 'EslAcc3pt' }, log: { level: process.env.CONFMUX_TEST_LOG ?? 'silent' } },
  });
  const log = createLogger(config.log.level);
  const driver = new FreeSwitchDriver(owns ? { config: config.freeswitch, log, owns } : { config: config.freeswitch, log });
  await driver.start();
  const server = new BridgeServer(config, driver, log);
  const address = await server.listen();
  cleanup.push(async () => {
    await server.close();
    await driver.close();
  });
  return { fs, url: `ws://127.0.0.1:${address.port}/`, server };
}

/** A terminal named "Terminal <number>", connected and registered; closed by `cleanup`. */
export async function registeredTerminal(url: string, number: string, password: string, cleanup: Cleanup): Promise<TerminalClient> {
  const t = createNodeTerminal({ url, number, password, name: `Terminal ${number}` });
  await t.connect();
  await t.register();
  cleanup.push(() => t.close());
  return t;
}
