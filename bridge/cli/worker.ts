/**
 * A worker of `confmux serve` with server.workers > 1 (forked by the primary, see serve in
 * main.ts): its own media-server link and BridgeServer, no port of its own; it serves the
 * connections the primary hands over (WorkerLink). The primary passes the validated config in
 * CONFMUX_WORKER_CONFIG. Each worker's link needs its own identity on the media server: the
 * Stasis application `<asterisk.app>-w<k>`, the FreeSWITCH bridge id `<freeswitch.bridgeId>-w<k>`.
 * Worker 0 also serves Asterisk's shared app `<asterisk.app>`, where the dialplan's invitations
 * arrive, and hands each to the worker that holds the terminal (ARI move).
 */
import type { Config } from '../config.ts';
import { createLogger } from '../logger.ts';
import { BridgeServer } from '../server/BridgeServer.ts';
import { WorkerLink, ownsNumber, workerIdentity } from '../server/WorkerLink.ts';
import { workerForNumber } from '../server/UpgradeRouter.ts';
import { AsteriskDriver } from '../../plugin/asterisk/AsteriskDriver.ts';
import { FreeSwitchDriver } from '../../plugin/freeswitch/FreeSwitchDriver.ts';

const worker = workerIdentity();
if (!worker || !process.env.CONFMUX_WORKER_CONFIG) {
  process.stderr.write('bridge/cli/worker.ts runs only as a worker forked by confmux serve (server.workers > 1)\n');
  process.exit(2);
}
const base = JSON.parse(process.env.CONFMUX_WORKER_CONFIG) as Config;
const config: Config = {
  ...base,
  asterisk: { ...base.asterisk, app: `${base.asterisk.app}-w${worker.index}` },
  freeswitch: { ...base.freeswitch, bridgeId: `${base.freeswitch.bridgeId}-w${worker.index}` },
};
const log = createLogger(config.log.level).child({ worker: worker.index });
// Asterisk: the dialplan invites terminals into the shared app (Stasis(<app>,invite,N)); worker 0
// serves it too and moves each invitation into the app of the worker that holds the terminal
const sharedApp = base.asterisk.app;
const inviteRouting =
  worker.index === 0
    ? {
        sharedApp,
        appFor: (number: string): string | null => {
          const k = workerForNumber(number, worker.count);
          return k === 0 ? null : `${sharedApp}-w${k}`;
        },
      }
    : undefined;
const driver =
  config.mediaServer === 'freeswitch'
    ? new FreeSwitchDriver({ config: config.freeswitch, log, owns: ownsNumber(worker.index, worker.count) })
    : new AsteriskDriver(inviteRouting ? { config: config.asterisk, log, inviteRouting } : { config: config.asterisk, log });
const server = new BridgeServer(config, driver, log, { owns: ownsNumber(worker.index, worker.count) });
driver.start().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'media server not reachable yet; retrying'));
const link = new WorkerLink(server);
link.start();

let stopping = false;
const stop = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  link.close();
  void server
    .drain(signal === 'SIGTERM' ? config.shutdown.drainTimeoutMs : 0)
    .then(() => driver.close())
    .finally(() => process.exit(0));
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// the primary went away: stop now
process.on('disconnect', () => stop('SIGINT'));
