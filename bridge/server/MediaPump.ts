/**
 * The native media pump (native/pump.cc, built by `npm run build:native`): a thread in C++ that
 * relays a call's audio between the terminal's WebSocket and the call's leg to the media server
 * (Asterisk's chan_websocket, RTP to Asterisk with `asterisk.mediaTransport` rtp, FreeSWITCH's
 * unicast stream, the bench's UDP echo) without entering JavaScript per frame. Measured in docs/performance.md: Node's
 * per-read, per-write and per-datagram machinery, not the bridge's own code, was most of the cost
 * per frame, and no JavaScript change could take it away.
 *
 * One pump per process (each worker has its own). A call hands its audio over once its audio
 * connection is bound and its leg carries media, converting as AudioConverter does where the
 * terminal's codec is not the leg's format (PUMP_CONVERT); everything else (video, inline media, TLS
 * terminated in the bridge) stays on the JavaScript path, which does the same checks with the same
 * errors.
 *
 * `server.mediaPump`: `auto` (default) uses it when the module is built and says so once at start
 * otherwise; `on` refuses to start without it; `off` never uses it. `server.mediaPumpPriority`
 * `realtime` (default) gives the relay thread (only it) SCHED_FIFO priority when the process may
 * (root or CAP_SYS_NICE), as media servers do for their media threads: measured here, it took the
 * relay-added p99 from 2-4 ms to under 0.5 ms on a busy machine (docs/performance.md).
 * `server.mediaPumpCoalesceUs` (200): after a wake-up that found packets the relay thread lets that
 * long pass before it looks again, so that under load one wake-up takes the packets of the whole
 * interval (about 20 at 900 streams instead of 1 to 3; each packet waits at most that long).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Socket as TcpSocket } from 'node:net';
import type WebSocket from 'ws';
import type { Logger } from 'pino';
import type { PumpLeg } from '../../plugin/driver.ts';
import { ConfigError } from '../config.ts';
import { mediaStats, mediaStatsCollectors, relayLatencySource, type RelayLatencySummary } from './metrics.ts';
import { PUMP_STAT, PumpedAudio, type NativePump, type PumpedAudioOptions, type PumpedAudioState } from './PumpedAudio.ts';

export type MediaPumpMode = 'auto' | 'on' | 'off';
export type MediaPumpPriority = 'realtime' | 'normal';

/** server.mediaPumpCoalesceUs and server.mediaPumpStaleMs (docs/configuration.md) */
export interface MediaPumpTuning {
  coalesceUs: number;
  staleMs: number;
}

/** where `npm run build:native` puts the module */
export const NATIVE_PUMP_PATH = fileURLToPath(new URL('../../native/build/Release/confmux_pump.node', import.meta.url));

let loaded: { pump: NativePump } | { error: string } | null = null;

/** Loads the native module once per process; the reason when it cannot. */
export function loadNativePump(): { pump: NativePump } | { error: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    loaded = { error: 'the media pump runs on Linux only' };
    return loaded;
  }
  try {
    const pump = createRequire(import.meta.url)(NATIVE_PUMP_PATH) as NativePump;
    loaded = { pump };
  } catch (err) {
    loaded = { error: `${NATIVE_PUMP_PATH} did not load (${(err as Error).message.split('\n')[0]}); build it with npm run build:native` };
  }
  return loaded;
}

export class MediaPump {
  private readonly native: NativePump;
  private readonly held = new Map<number, PumpedAudio>();
  /** the native counters already added to mediaStats */
  private readonly counted: number[] = [];

  /** the relay thread's scheduling: "realtime", or "normal" (with why, when realtime was asked for and refused) */
  readonly priority: string;

  private constructor(native: NativePump, priority: MediaPumpPriority, tuning: MediaPumpTuning) {
    this.native = native;
    this.priority = native.start((id) => this.held.get(id)?.release(), priority === 'realtime', tuning.coalesceUs, tuning.staleMs);
    mediaStatsCollectors.push(() => this.collectStats());
    relayLatencySource.read = () => this.latency(true);
  }

  /**
   * The process's pump for `mode`, or null (JavaScript path). Throws ConfigError for `on` without
   * the native module. One per process: the first call's priority and coalescing hold.
   */
  static forMode(mode: MediaPumpMode, log: Logger, priority: MediaPumpPriority = 'realtime', tuning: MediaPumpTuning = { coalesceUs: 200, staleMs: 100 }): MediaPump | null {
    if (mode === 'off') return null;
    const r = loadNativePump();
    if ('error' in r) {
      if (mode === 'on') throw new ConfigError([`server.mediaPump: on, but ${r.error}`]);
      log.info({ reason: r.error }, 'native media pump not available: audio is relayed in JavaScript');
      return null;
    }
    if (!instance) {
      instance = new MediaPump(r.pump, priority, tuning);
      if (priority === 'realtime' && instance.priority !== 'realtime') log.warn({ priority: instance.priority }, 'media pump thread runs at normal priority: relay latency then depends on what else the machine runs (grant CAP_SYS_NICE, see docs/performance.md)');
      else log.info({ priority: instance.priority, ...tuning }, 'native media pump started');
    }
    return instance;
  }

  /**
   * Hands a call's bound audio connection and its leg to the media server to the pump; null when it cannot (the
   * call stays on the JavaScript path). `onReleased` gets the call's state back when the pump lets
   * go, for whatever reason.
   */
  attach(ws: WebSocket, socket: TcpSocket, leg: PumpLeg, options: PumpedAudioOptions, onReleased: (state: PumpedAudioState) => void): PumpedAudio | null {
    let pumped: PumpedAudio | null = null;
    pumped = PumpedAudio.attach(this.native, ws, socket, leg, options, (state) => {
      if (pumped) this.held.delete(pumped.id);
      onReleased(state);
    });
    if (pumped) this.held.set(pumped.id, pumped);
    return pumped;
  }

  /** connections the pump holds now */
  get size(): number {
    return this.native.attached();
  }

  /**
   * The relay-added latency of the frames the pump relayed since the last reset, one way, in
   * microseconds: from the kernel's receive timestamp of the packet (SO_TIMESTAMPNS) to the pump's
   * send on the other socket. `up`: terminal to media server; `down`: media server to terminal.
   */
  latency(reset = false): { up: RelayLatencySummary; down: RelayLatencySummary } {
    return relayLatency(this.native.latency(reset));
  }

  /** Adds what the pump relayed and dropped since the last call to the process's media counters. */
  collectStats(): void {
    const s = this.native.stats();
    const d = (i: number): number => {
      const delta = (s[i] ?? 0) - (this.counted[i] ?? 0);
      this.counted[i] = s[i] ?? 0;
      return delta;
    };
    mediaStats.framesFromTerminals += d(PUMP_STAT.framesFromTerminals);
    mediaStats.framesToTerminals += d(PUMP_STAT.framesToTerminals);
    mediaStats.droppedRateLimit += d(PUMP_STAT.droppedRateLimit);
    mediaStats.droppedSlowTerminal += d(PUMP_STAT.droppedSlowTerminal);
    mediaStats.droppedSlowMediaServer += d(PUMP_STAT.droppedSlowMediaServer);
    mediaStats.droppedStale += d(PUMP_STAT.droppedStale);
    mediaStats.pumpRejectedDatagrams += d(PUMP_STAT.rejectedDatagrams);
    mediaStats.pumpHandbacks += d(PUMP_STAT.handbacks);
  }
}

let instance: MediaPump | undefined;

/** the native latency() array as two summaries */
export function relayLatency(v: number[]): { up: RelayLatencySummary; down: RelayLatencySummary } {
  const at = (i: number): RelayLatencySummary => ({ p50: v[i]!, p99: v[i + 1]!, p999: v[i + 2]!, max: v[i + 3]!, count: v[i + 4]! });
  return { up: at(0), down: at(5) };
}
