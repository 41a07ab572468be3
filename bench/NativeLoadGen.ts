/**
 * The bench's native load generator (native/loadgen.cc, built with the media pump by
 * `npm run build:native`): once a bench terminal's audio connection is bound, its socket is handed
 * to a C++ thread that sends the paced frames and times the frames that come back, as the
 * JavaScript generator in bench/run.ts does, at a fraction of its CPU per frame. Measured
 * (docs/performance.md): the JavaScript generator on its own core stalled and sent in bursts beyond
 * about 800 streams, so past that it measured itself rather than the bridge.
 *
 * Not part of the bridge: only the bench loads it.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';

export const NATIVE_LOADGEN_PATH = fileURLToPath(new URL('../native/build/Release/confmux_loadgen.node', import.meta.url));

export interface NativeLoadStats {
  /** frames sent and received since start() */
  sent: number;
  received: number;
  /** in the window of the last pace() */
  sentInWindow: number;
  receivedInWindow: number;
  /** connections that ended (close frame, end of stream, error) while held */
  closed: number;
  /** pings from the bridge answered */
  pings: number;
  /** writes the socket did not take whole (queued, sent when it drains) */
  queued: number;
  /** frames dropped because a connection's queue passed 1 MiB */
  dropped: number;
  lanes: number;
  /** 1 while the last pace() is still sending */
  pacing: number;
  /** round trips of the frames sent in the window, ms (1 us buckets to 20 ms, then 100 us) */
  rtt: { p50: number; p99: number; p999: number; max: number; mean: number; samples: number };
}

interface Native {
  start(payloadBytes: number, framing: number, pollUs: number): void;
  add(fd: number, lane: number): void;
  pace(ms: number, windowDelayMs: number, windowMs: number): void;
  stats(): NativeLoadStats;
  stop(): void;
}

let loaded: Native | string | null = null;

/** The native module, or why it cannot be used (then the bench uses the JavaScript generator). */
export function loadNativeLoadGen(): Native | string {
  if (loaded !== null) return loaded;
  if (process.platform !== 'linux') loaded = 'the native load generator runs on Linux only';
  else {
    try {
      loaded = createRequire(import.meta.url)(NATIVE_LOADGEN_PATH) as Native;
    } catch (err) {
      loaded = `${NATIVE_LOADGEN_PATH} did not load (${(err as Error).message.split('\n')[0]}); build it with npm run build:native`;
    }
  }
  return loaded;
}

/**
 * While pacing, the native generator looks at its sockets every this many µs instead of being woken
 * by each frame that arrives. On loopback a send runs the receiver's network stack on the sender's
 * CPU, the receiver's wake-up included; a terminal on another machine costs the bridge no such
 * wake-up. Polling keeps that cost off the bridge's bill (docs/performance.md "Fourth round").
 * 0: woken by each frame, as before. Round trips are timed from the kernel's receive time either way.
 */
export const DEFAULT_LOAD_POLL_US = 100;

export type LoadGeneratorChoice = 'auto' | 'native' | 'javascript';

/**
 * The native generator for `choice`, or null for the JavaScript one (`javascript`, or `auto`
 * without the module: then `log` says why). Throws for `native` without the module.
 */
export function chooseLoadGenerator(choice: LoadGeneratorChoice, payloadBytes: number, framing: LoadFraming, log: (line: string) => void, pollUs = DEFAULT_LOAD_POLL_US): NativeLoadGen | null {
  if (choice === 'javascript') return null;
  const m = loadNativeLoadGen();
  if (typeof m === 'string') {
    if (choice === 'native') throw new Error(m);
    log(`load generator: JavaScript (${m})`);
    return null;
  }
  return new NativeLoadGen(m, payloadBytes, framing, pollUs);
}

/**
 * `websocket`: confmux frames (a 10-byte header, then the payload) in masked WebSocket frames;
 * `turn`: TURN ChannelData on channel 0x4000 (bench/turn.ts); `echo`: the server end of a
 * chan_websocket media socket (bench/wsEchoPeer.ts): every binary frame goes back unmasked, nothing
 * is paced or timed.
 */
export type LoadFraming = 'websocket' | 'turn' | 'echo';

const FRAMING_CODE: Record<LoadFraming, number> = { websocket: 0, turn: 1, echo: 2 };

type Handle = { fd?: unknown; readStop?: () => unknown };

/** what a load generator (native or JavaScript) counted: frames since the start, in the window, and the window's round trips (ms) */
export interface LoadCounts {
  sent: number;
  received: number;
  sentInWindow: number;
  receivedInWindow: number;
  rtt: { p50: number; p99: number; p999: number; max: number; mean: number; samples: number };
  /** connections that closed while they should not have */
  unexpectedCloses: number;
}

export class NativeLoadGen {
  private readonly native: Native;
  private stopped = false;

  /** `framing`: see LoadFraming; `payloadBytes` is what each paced frame carries. */
  constructor(native: Native, payloadBytes: number, framing: LoadFraming = 'websocket', pollUs = DEFAULT_LOAD_POLL_US) {
    this.native = native;
    native.start(payloadBytes, FRAMING_CODE[framing], pollUs);
  }

  /**
   * Takes a bound audio connection: Node stops reading its socket, and the thread reads and writes
   * it from now on (JavaScript must not write to it any more). False when the socket has no plain
   * TCP handle (then the caller keeps it on the JavaScript generator).
   */
  add(socket: Socket, lane: number): boolean {
    const h = (socket as unknown as { _handle?: Handle | null })._handle;
    if (!h || typeof h.fd !== 'number' || h.fd < 0 || typeof h.readStop !== 'function') return false;
    h.readStop();
    this.native.add(h.fd, lane);
    return true;
  }

  /** Sends on every lane for `ms` from now; the measured window starts after `windowDelayMs` and lasts `windowMs`. Resolves when the last frame is sent. */
  async pace(ms: number, windowDelayMs: number, windowMs: number): Promise<void> {
    this.native.pace(ms, windowDelayMs, windowMs);
    await new Promise((r) => setTimeout(r, ms));
    while (this.native.stats().pacing) await new Promise((r) => setTimeout(r, 5));
  }

  stats(): NativeLoadStats {
    return this.native.stats();
  }

  /** the counts as the bench reports them; `closes`: connections the caller saw close before it handed them over */
  counts(closes: number): LoadCounts {
    const n = this.native.stats();
    return { sent: n.sent, received: n.received, sentInWindow: n.sentInWindow, receivedInWindow: n.receivedInWindow, rtt: n.rtt, unexpectedCloses: closes + n.closed };
  }

  /** Ends the thread; the sockets stay Node's (the caller closes them). Idempotent. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.native.stop();
  }
}
