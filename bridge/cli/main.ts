#!/usr/bin/env node
/**
 * confmux command line: `serve` (the bridge), `terminal` (a headless terminal), `sandbox`
 * (a local Asterisk for trying confmux and for the tests).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { createLogger, type Logger } from '../logger.ts';
import { BridgeServer } from '../server/BridgeServer.ts';
import { UpgradeRouter } from '../server/UpgradeRouter.ts';
import { WorkerPool } from '../server/WorkerPool.ts';
import { AsteriskDriver } from '../../plugin/asterisk/AsteriskDriver.ts';
import { FreeSwitchDriver } from '../../plugin/freeswitch/FreeSwitchDriver.ts';
import { TerminalError } from '../sdk/TerminalError.ts';
import { heapArgs } from '../../bin/heapFlags.mjs';
import { onStopSignals } from './signals.ts';
import { runTerminalAnswer, runTerminalCall, type TerminalAnswerOptions, type TerminalCallOptions } from './terminalCommand.ts';

/** how this runs: from the bundle in bridge/dist (`npm run build`), or the TypeScript sources through tsx */
const BUILD = import.meta.url.endsWith('.mjs') ? 'bundle' : 'source';

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

const program = new Command();
program.name('confmux').description('One TCP port between conference terminals and an Asterisk or FreeSWITCH PBX/MCU').showHelpAfterError();

program
  .command('serve')
  .description('run the bridge')
  .option('-c, --config <file>', 'JSON config file (env CONFMUX_CONFIG); env overrides it, see docs/configuration.md')
  .action(async (opts: { config?: string }) => {
    let config;
    try {
      config = loadConfig({ file: opts.config, forServe: true });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    const log = createLogger(config.log.level);
    log.info({ build: BUILD, node: process.version }, 'starting');
    if (config.server.workers > 1) return servePrimary(config, log);
    const driver = config.mediaServer === 'freeswitch' ? new FreeSwitchDriver({ config: config.freeswitch, log }) : new AsteriskDriver({ config: config.asterisk, log });
    const server = new BridgeServer(config, driver, log);
    driver.start().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'media server not reachable yet; retrying'));
    if (config.server.plain) log.warn('serving plain ws:// without TLS (server.plain): only do this behind a TLS-terminating proxy');
    await server.listen();
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log.warn('second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal, drainTimeoutMs: config.shutdown.drainTimeoutMs }, 'draining: no new terminals, calls may finish');
      void server
        .drain(signal === 'SIGINT' ? 0 : config.shutdown.drainTimeoutMs)
        .then(() => driver.close())
        .then(() => {
          log.info('stopped');
          process.exit(0);
        });
    };
    onStopSignals(stop);
  });

/**
 * server.workers > 1: this process owns the port (UpgradeRouter) and forks the workers
 * (bridge/cli/worker.ts), each with its own media-server link and BridgeServer.
 */
async function servePrimary(config: Config, log: Logger): Promise<void> {
  let router: UpgradeRouter | null = null;
  const pool = new WorkerPool({
    // (bundled: bridge/dist/worker.mjs beside this file's bundle, with no loader)
    script: fileURLToPath(new URL(BUILD === 'bundle' ? './worker.mjs' : './worker.ts', import.meta.url)),
    count: config.server.workers,
    // the workers run the bridge: the same heap options as this process (bin/heapFlags.mjs)
    execArgv: [...heapArgs(), ...(BUILD === 'bundle' ? [] : ['--import', import.meta.resolve('tsx')])],
    env: { CONFMUX_WORKER_CONFIG: JSON.stringify(config) },
    log,
    // the per-address limits, counted over all workers (PrimaryAdmission)
    primary: () => router,
  });
  log.warn('serving plain ws:// without TLS (server.plain): only do this behind a TLS-terminating proxy');
  await pool.start();
  // /metrics and /healthz are answered here, for all workers together
  router = new UpgradeRouter(config, config.server.workers, (k, socket, handoff) => pool.handOff(k, socket, handoff), {
    metrics: () => pool.metrics(),
    health: () => pool.health(config.mediaServer),
  });
  const address = await router.listen();
  log.info({ host: address.address, port: address.port, path: config.server.path, workers: config.server.workers }, 'listening (primary)');
  let stopping = false;
  const stop = (signal: 'SIGTERM' | 'SIGINT'): void => {
    if (stopping) {
      log.warn('second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, drainTimeoutMs: config.shutdown.drainTimeoutMs }, 'draining the workers');
    void router
      .close()
      .then(() => pool.stop(signal))
      .then(() => {
        log.info('stopped');
        process.exit(0);
      });
  };
  onStopSignals(stop);
}

const terminal = program
  .command('terminal')
  .description('a headless terminal')
  .requiredOption('--url <url>', 'the bridge, e.g. ws://127.0.0.1:8080')
  .requiredOption('--number <number>', 'terminal number')
  .option('--password <password>', 'terminal password (or env CONFMUX_TERMINAL_PASSWORD)')
  .option('--name <name>', 'display name shown in the PBX');

function talkOptions(cmd: Command): Command {
  return cmd
    .option('--send <wav>', 'WAV file (PCM16) to send as live audio')
    .option('--tone <hz>', 'send a sine tone instead of a file', positiveNumber)
    .option('--loop', 'repeat --send until the call ends', false)
    .option('--record <wav>', 'write what the terminal hears to this WAV')
    .option('--seconds <s>', 'hang up after this many seconds from answer', positiveNumber, 10)
    .option('--codec <codec>', 'L16/16000 or PCMU/8000', 'L16/16000')
    .option('--dtmf <digits>', 'send these DTMF digits half a second after answer')
    .option('--send-video <h264>', 'H.264 elementary stream (Annex B, e.g. ffmpeg -f h264) to send as video, looped')
    .option('--fps <n>', 'frame rate of --send-video', positiveNumber, 15)
    .option('--record-video <h264>', 'write the video received (from its first keyframe) to this H.264 file')
    .option('-q, --quiet', 'print nothing but errors', false);
}

type TalkFlags = Omit<TerminalCallOptions, 'url' | 'number' | 'password' | 'name'>;

async function runTerminal(run: (base: Pick<TerminalCallOptions, 'url' | 'number' | 'password' | 'name'>) => Promise<number>): Promise<never> {
  const t = terminal.opts<{ url: string; number: string; password?: string; name?: string }>();
  const password = t.password ?? process.env.CONFMUX_TERMINAL_PASSWORD;
  if (!password) {
    process.stderr.write('error USAGE: --password or CONFMUX_TERMINAL_PASSWORD is required\n');
    process.exit(2);
  }
  try {
    process.exit(await run({ url: t.url, number: t.number, password, name: t.name }));
  } catch (err) {
    const code = err instanceof TerminalError ? err.code : ((err as { code?: string }).code ?? 'ERROR');
    process.stderr.write(`error ${code}: ${(err as Error).message}\n`);
    process.exit(code === 'USAGE' ? 2 : 1);
  }
}

talkOptions(terminal.command('call <extension>').description('register, dial <extension>, talk for --seconds, hang up')).action(
  (extension: string, o: TalkFlags) => runTerminal((base) => runTerminalCall(extension, { ...o, ...base })),
);

talkOptions(terminal.command('answer').description('register, wait for invitations from the PBX and answer them (or --reject / --ignore)'))
  .option('--count <n>', 'invitations to handle before exiting', positiveNumber, 1)
  .option('--wait <s>', 'give up when no invitation came within this many seconds (0: wait forever)', Number, 0)
  .option('--reject <reason>', 'refuse with busy or declined instead of answering')
  .option('--ignore', 'let invitations ring unanswered', false)
  .action((o: Omit<TerminalAnswerOptions, 'url' | 'number' | 'password' | 'name'>) => {
    if (o.reject && o.reject !== 'busy' && o.reject !== 'declined') {
      process.stderr.write('error USAGE: --reject takes busy or declined\n');
      process.exit(2);
    }
    return runTerminal((base) => runTerminalAnswer({ ...o, ...base }));
  });

const benchScript = fileURLToPath(new URL('../../bench/bench.ts', import.meta.url));
program
  .command('bench')
  .description('load benchmark on loopback: the bridge with an echo media-server stand-in, N paced audio streams (options: bench --help; docs/performance.md)')
  .helpOption(false)
  .allowUnknownOption()
  .argument('[options...]', 'passed to bench/bench.ts, e.g. --streams 500 --seconds 8 --coturn')
  .action((rest: string[]) => {
    const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), benchScript, ...rest], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  });

const sandboxScript = fileURLToPath(new URL('../../plugin/asterisk/sandbox/sandbox.sh', import.meta.url));
program
  .command('sandbox')
  .description('a local Asterisk 22 in a Debian chroot (root, Debian/Ubuntu): up | down | status | rx "<cli command>"')
  .argument('<action>', 'up, down, status or rx')
  .argument('[command...]', 'for rx: the Asterisk CLI command')
  .action((action: string, rest: string[]) => {
    if (!['up', 'down', 'status', 'rx'].includes(action)) {
      process.stderr.write(`error USAGE: unknown sandbox action ${action}\n`);
      process.exit(2);
    }
    const args = action === 'rx' ? [action, rest.join(' ')] : [action];
    const r = spawnSync('bash', [sandboxScript, ...args], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  });

await program.parseAsync(process.argv);
