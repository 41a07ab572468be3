// A real SIP phone for tests: headless baresip (Debian package baresip-core,
// 1.0.0 on Debian 12) that dials a room in the sandbox, sends a WAV file as
// its microphone and dumps what it hears.
//
// Each phone gets its own temporary config dir (-f), its own SIP port on
// 127.0.0.1 and its own dump dir, so several can run side by side. The config:
//   audio_source aufile,<sendWav>      the "microphone" (played once, then silence)
//   audio_player aubridge,<unique>     a player that goes nowhere
//   module sndfile.so + snd_path DIR   dumps both directions as WAV:
//       DIR/dump-YYYY-MM-DD-HH-MM-SS-enc.wav   what the phone SENT (encoder input)
//       DIR/dump-YYYY-MM-DD-HH-MM-SS-dec.wav   what the phone HEARD (decoder output)
//   account <sip:sipphone@127.0.0.1>;regint=0  (no registration; the sandbox's
//       pjsip.conf endpoint "sipphone" is matched by the From user, no auth)
// It dials sip:<dial>@<host> at start (-e "/dial ...") and quits after
// `seconds` (-t), hanging up with a BYE.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SETUP_SH = fileURLToPath(new URL('../../scripts/setup.sh', import.meta.url));
const MODULE_PATH = '/usr/lib/baresip/modules';

export interface PhoneOptions {
  /** Extension to dial, e.g. '700' (dials sip:<dial>@<sipHost>). */
  dial: string;
  /** WAV file sent as the microphone (PCM16; mono 8 kHz matches PCMU best). */
  sendWav: string;
  /** Where the dumps go; a per-phone subfolder is created in it. Default: a new temp dir (kept). */
  recordDir?: string;
  /** baresip quits (and hangs up) after this many seconds. Default 10. */
  seconds?: number;
  /** SIP user in From (pjsip endpoint to match). Default 'sipphone'. */
  user?: string;
  sipHost?: string; // default 127.0.0.1
  sipPort?: number; // default 5060
  /** Audio codecs offered, baresip names. Default ['PCMU']. */
  codecs?: string[];
  /** Label for logs and folder names. Default 'phone-<port>'. */
  name?: string;
}

export interface Phone {
  readonly name: string;
  /** Local SIP port this phone listens on (127.0.0.1). */
  readonly sipPort: number;
  readonly pid: number | undefined;
  /** Folder holding this phone's dumps. */
  readonly dumpDir: string;
  /** Resolves when baresip reports "Call established"; rejects if it exits first. */
  readonly established: Promise<void>;
  /** Resolves with the exit code when baresip exits. */
  readonly exited: Promise<number | null>;
  /** Hang up (SIGTERM → BYE), wait for exit (SIGKILL after 5 s), remove the temp config dir. */
  stop(): Promise<void>;
  /** Path of the WAV with what the phone heard (sndfile's *-dec.wav). */
  recordedWav(): string;
  /** Path of the WAV with what the phone sent (sndfile's *-enc.wav). */
  sentWav(): string;
  /** baresip's console output so far. */
  log(): string;
}

let baresipChecked = false;

/** Makes sure /usr/bin/baresip exists, installing host packages (scripts/setup.sh) if needed. */
export function ensureBaresip(): void {
  if (baresipChecked) return;
  if (!existsSync('/usr/bin/baresip') || !existsSync(join(MODULE_PATH, 'sndfile.so'))) {
    execFileSync('bash', [SETUP_SH], { stdio: 'inherit' });
  }
  baresipChecked = true;
}

const usedPorts = new Set<number>();

/** true when `port` can be bound on 127.0.0.1 for UDP and for TCP. */
async function bindable(port: number): Promise<boolean> {
  const udpOk = await new Promise<boolean>((res) => {
    const s = createSocket('udp4');
    s.once('error', () => res(false));
    s.bind(port, '127.0.0.1', () => s.close(() => res(true)));
  });
  if (!udpOk) return false;
  return new Promise<boolean>((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/**
 * A SIP port for a phone that this process has not handed out before. baresip listens on it with
 * UDP and TCP, and with TLS on the next port: all four must be free. Chosen below the kernel's
 * ephemeral range (32768 and up), where the bridge's own many TCP connections would collide.
 */
async function freeSipPort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 21000 + 2 * Math.floor(Math.random() * 2000);
    if (usedPorts.has(port)) continue;
    if ((await bindable(port)) && (await bindable(port + 1))) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free SIP port pair');
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export async function startPhone(opts: PhoneOptions): Promise<Phone> {
  ensureBaresip();
  const sendWav = resolve(opts.sendWav);
  if (!existsSync(sendWav)) throw new Error(`startPhone: ${sendWav} does not exist`);
  const sipPort = await freeSipPort();
  const name = opts.name ?? `phone-${sipPort}`;
  const seconds = opts.seconds ?? 10;
  const confDir = mkdtempSync(join(tmpdir(), `confmux-baresip-${name}-`));
  const recordRoot = opts.recordDir ? resolve(opts.recordDir) : mkdtempSync(join(tmpdir(), 'confmux-phone-rec-'));
  const dumpDir = join(recordRoot, `${name}-${sipPort}`);
  mkdirSync(dumpDir, { recursive: true });

  // Config values may not contain whitespace (baresip splits on it).
  for (const [k, v] of [['sendWav', sendWav], ['dumpDir', dumpDir]] as const) {
    if (/\s/.test(v)) throw new Error(`startPhone: ${k} must not contain whitespace: ${v}`);
  }
  const config = [
    'poll_method\tepoll',
    `sip_listen\t127.0.0.1:${sipPort}`,
    'net_interface\t127.0.0.1',
    // Away from the sandbox's rtp.conf range (10000-10999), the SIP ports above and the kernel's
    // ephemeral range (32768 and up), where the bridge's own sockets live.
    'rtp_ports\t25000-29999',
    `audio_player\taubridge,confmux-${name}-${sipPort}`,
    `audio_alert\taubridge,confmux-${name}-${sipPort}`,
    `audio_source\taufile,${sendWav}`,
    'ausrc_channels\t1',
    'auplay_channels\t1',
    'audio_level\tno',
    `module_path\t${MODULE_PATH}`,
    'module\tg711.so',
    'module\tg722.so',
    'module\taufile.so',
    'module\taubridge.so',
    'module\tsndfile.so',
    'module_app\taccount.so',
    'module_app\tmenu.so',
    `snd_path\t${dumpDir}`,
    '',
  ].join('\n');
  writeFileSync(join(confDir, 'config'), config);
  const user = opts.user ?? 'sipphone';
  const codecs = (opts.codecs ?? ['PCMU']).join(',');
  writeFileSync(join(confDir, 'accounts'), `<sip:${user}@127.0.0.1>;regint=0;audio_codecs=${codecs}\n`);
  writeFileSync(join(confDir, 'contacts'), '');

  const target = `sip:${opts.dial}@${opts.sipHost ?? '127.0.0.1'}${opts.sipPort && opts.sipPort !== 5060 ? `:${opts.sipPort}` : ''}`;
  const child = spawn('baresip', ['-f', confDir, '-t', String(seconds), '-e', `/dial ${target}`], {
    cwd: dumpDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);

  let out = '';
  const MAX_LOG = 256 * 1024;
  let onEstablished: () => void = () => {};
  let onFailed: (e: Error) => void = () => {};
  const established = new Promise<void>((res, rej) => {
    onEstablished = res;
    onFailed = rej;
  });
  established.catch(() => {}); // callers may not await it
  let isUp = false;
  const onData = (d: Buffer) => {
    // The menu module redraws a status line with \r; keep the log readable.
    out += d.toString('utf8').replace(/\[\d+:\d\d:\d\d\] audio=[^\n]*?\(bit\/s\)\s*/g, '');
    if (out.length > MAX_LOG) out = out.slice(-MAX_LOG);
    if (!isUp && /Call established/.test(out)) {
      isUp = true;
      onEstablished();
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((res) => {
    child.once('exit', (code) => {
      live.delete(child);
      if (!isUp) onFailed(new Error(`baresip ${name} exited (code ${code}) before the call was established:\n${out.slice(-4000)}`));
      res(code);
    });
    child.once('error', (err) => {
      live.delete(child);
      onFailed(err);
      res(null);
    });
  });

  const findDump = (kind: 'dec' | 'enc'): string => {
    const files = existsSync(dumpDir) ? readdirSync(dumpDir).filter((f) => f.startsWith('dump-') && f.endsWith(`-${kind}.wav`)) : [];
    if (files.length === 0) throw new Error(`baresip ${name}: no *-${kind}.wav in ${dumpDir}\n${out.slice(-4000)}`);
    // One call per phone; if there are several, the newest (largest mtime) wins.
    files.sort((a, b) => statSync(join(dumpDir, a)).mtimeMs - statSync(join(dumpDir, b)).mtimeMs);
    return join(dumpDir, files[files.length - 1]!);
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM'); // baresip: first TERM = hang up all calls, then quit
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(confDir, { recursive: true, force: true });
    })();
    return stopping;
  };

  return {
    name,
    sipPort,
    get pid() {
      return child.pid;
    },
    dumpDir,
    established,
    exited,
    stop,
    recordedWav: () => findDump('dec'),
    sentWav: () => findDump('enc'),
    log: () => out,
  };
}
