/**
 * The load generator of `npm run bench`: starts the bridge with the echo stand-in in a child
 * process (bench/server.ts), opens N terminals that speak protocol v1 like real ones (control
 * connection: bind with password, register, call; audio connection: bind with the call's token),
 * sends paced 20 ms PCMU frames on every stream with the send time inside the payload, and
 * measures what comes back through the echo: messages/s each way, loss, round-trip latency, and
 * the bridge's CPU and RSS from /proc/<pid>.
 *
 * Raw `ws` clients (not the SDK) keep the generator's own cost low: once a terminal's audio is
 * bound, its frames are written straight to the socket as whole WebSocket frames (masked with a
 * zero key: a valid RFC 6455 key; the bridge still checks and unmasks every frame) and read back
 * by MediaFrameReader (the bridge's own fast frame reader), so the generator costs less than the
 * bridge and leaves it the CPU.
 * Loopback only; every run is bounded in streams and time and stops by itself.
 */
import type { RelayLatencySummary as RelayLatency } from '../bridge/server/metrics.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { cpus } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { Socket } from 'node:net';
import { FRAME_HEADER_BYTES, writeFrameHeader } from '../bridge/protocol/frame.ts';
import { MediaFrameReader } from '../bridge/server/MediaFrameReader.ts';
import { rawSocket } from '../bridge/server/wsFrames.ts';
import { cpuModel, cpuSeconds, cpuSplit, machineCpuTicks, rssBytes } from './proc.ts';
import { startUdpPeer } from './turn.ts';
import { RELAY_CPUS, cpusOf, loadCpus, onCpus, pinSelf } from './cpus.ts';
import { heapArgs } from '../bin/heapFlags.mjs';
import { mallocArenasEnv } from '../bin/mallocArenas.mjs';
import { FrameTally } from './FrameTally.ts';
import { formatFloor, measureFloor, type KernelFloor } from './kernelFloor.ts';
import { chooseLoadGenerator, DEFAULT_LOAD_POLL_US, type LoadCounts, type LoadGeneratorChoice, type NativeLoadGen } from './NativeLoadGen.ts';

export interface BenchOptions {
  /** streams (terminals in a call) of the first (or only) step */
  streams: number;
  /** measured seconds per step (after warm-up) */
  seconds: number;
  /** seconds of sending before each measurement window */
  warmupSeconds?: number;
  /** step the stream count up until the round-trip p99 passes the bound (or frames are lost) */
  step?: boolean;
  /** streams added per step (default: the first step's count) */
  stepBy?: number;
  /** never more streams than this (step mode) */
  maxStreams?: number;
  /** round-trip p99 bound in ms for a step to hold (default 4: 2 ms one way) */
  p99BoundMs?: number;
  /** PCMU payload bytes per frame (default 160 = 20 ms; the frame is 10 bytes more) */
  payloadBytes?: number;
  /** the whole run stops after this many seconds whatever happens (default 240) */
  timeLimitSeconds?: number;
  /** terminals connecting at once during set-up */
  connectConcurrency?: number;
  /** the bridge's server.workers (1: one process; more: a primary and that many workers) */
  workers?: number;
  /** the echo stand-in relays through a UDP echo peer (coturn's turnutils_peer) instead of in process */
  udpEcho?: boolean;
  /**
   * the echo stand-in relays over a WebSocket media leg (chan_websocket's, Asterisk's default
   * transport) to bench/wsEchoPeer.ts instead of in process (not with udpEcho)
   */
  wsEcho?: boolean;
  /** with wsEcho: the echo peer echoes in JavaScript even when its native thread is built */
  wsEchoJavaScript?: boolean;
  /** server.mediaPump of the bridge under benchmark (default auto) */
  mediaPump?: 'auto' | 'on' | 'off';
  /** server.mediaPumpPriority of the bridge under benchmark (default realtime) */
  mediaPumpPriority?: 'realtime' | 'normal';
  /** server.mediaPumpCoalesceUs of the bridge under benchmark (default 200) */
  mediaPumpCoalesceUs?: number;
  /** server.mediaPumpStaleMs of the bridge under benchmark (default 100) */
  mediaPumpStaleMs?: number;
  /** the bridge on CPU 0, this process and the echo peer on the other CPUs (bench/cpus.ts) */
  pin?: boolean;
  /**
   * who sends and times the frames: `native` (native/loadgen.cc, a C++ thread; needs
   * `npm run build:native`), `javascript` (this process's event loop), or `auto` (default): native
   * when built
   */
  loadGenerator?: LoadGeneratorChoice;
  /** the native generator looks at its sockets every this many µs while pacing (0: woken by each frame) [100] */
  loadPollUs?: number;
  /**
   * measure the kernel's floor (native/floor.cc) just before and just after the run, with the first
   * step's stream count and rate, on the bridge's and the load's CPUs (bench/kernelFloor.ts)
   */
  floor?: boolean;
  /** progress lines (default: stderr) */
  log?: (line: string) => void;
}

export interface Latency {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  samples: number;
}

export interface StepResult {
  streams: number;
  /** measured window (s) */
  seconds: number;
  /** frames the terminals sent per second in the window (towards the bridge) */
  sentPerSecond: number;
  /** frames the terminals received per second in the window (from the bridge) */
  receivedPerSecond: number;
  /** frames sent and received in the whole step (warm-up included) */
  sent: number;
  received: number;
  /** frames sent that never came back (after a 1 s grace) */
  lost: number;
  /** frames the bridge reports it dropped (slow terminal, rate limit), from /metrics */
  bridgeDropped: number | null;
  /** round trip terminal -> bridge -> echo -> bridge -> terminal, ms; one way is about half */
  rttMs: Latency;
  /** bridge CPU in the window, as a fraction of one core (all its threads) */
  bridgeCpu: number;
  /** the part of bridgeCpu in user space (the rest is the kernel: system calls, and loopback TCP work the kernel charges to whichever process runs) */
  bridgeUserCpu?: number;
  /** the load generator's CPU in the window, as a fraction of one core */
  loadCpu: number;
  /** the echo peer's CPU in the window, as a fraction of one core (with udpEcho or wsEcho) */
  echoPeerCpu?: number;
  /** bridge CPU seconds per relayed message (each frame counts once in each direction) */
  cpuMicrosPerMessage: number;
  bridgeRssBytes: number;
  /** (RSS now - RSS before any terminal) / streams */
  rssPerTerminalBytes: number;
  /**
   * The highest RSS seen from the step's first new terminal to the window's end (sampled every
   * 250 ms): right after a burst of set-ups it holds the set-up's garbage, which V8's memory
   * reducer gives back some 10 to 20 s later; the end-of-window figure is below it once that ran.
   */
  peakRssBytes?: number;
  /** (peak RSS - RSS before any terminal) / streams */
  rssPerTerminalPeakBytes?: number;
  /** connections that closed while they should not have */
  unexpectedCloses: number;
  /**
   * How late the bench's own window samples (CPU, and the bridge's reset of its counters) were
   * taken, ms: the CPU figures are over the time actually sampled, but beyond 100 ms the relay
   * latency and loop figures no longer cover the window (the bench process's core was full)
   */
  timersLateMs?: number;
  /** the bridge's event loop in the window: its delay is its share of the latency tail */
  bridgeLoop: LoopStats | null;
  /** the load generator's own event-loop delay in the window (its share of the tail) */
  loadLoopDelayMs: { p50: number; p99: number; max: number };
  held: boolean;
  /** of the machine's CPU time in the window, the part the hypervisor gave to something else (/proc/stat steal) */
  stealFraction?: number;
  /** --pin: how busy the bridge's CPU was in the window, whatever ran there (the bridge, and the kernel's interrupt work on it), as a fraction of it */
  relayCoreBusy?: number;
  /** what `held` was judged on: the relay-added latency measured in the bridge (pump), or the round trip */
  heldBy?: 'relay' | 'rtt';
}

export interface BenchResult {
  date: string;
  /** the echo stand-in relayed through a UDP echo peer */
  udpEcho: boolean;
  wsEcho: boolean;
  /** with wsEcho: whether the peer echoes on its C++ thread (else in JavaScript, far slower) */
  wsEchoNative?: boolean;
  mediaPump: 'auto' | 'on' | 'off';
  /** server.mediaPumpCoalesceUs and server.mediaPumpStaleMs of the bridge under load */
  mediaPumpCoalesceUs: number;
  mediaPumpStaleMs: number;
  /** server.workers of the bridge under load */
  workers: number;
  /** --pin: the bridge on CPU 0, the load on the others */
  pinned: boolean;
  /** who sent and timed the frames: the C++ thread (native/loadgen.cc) or the event loop */
  loadGenerator: 'native' | 'javascript';
  /** the native generator's polling interval while pacing, µs (0: woken by each frame); null for the JavaScript one */
  loadPollUs: number | null;
  /** the CPUs each process may run on (Cpus_allowed_list) */
  cpusAllowed: { bridge: string; load: string; echoPeer?: string };
  node: string;
  cpus: number;
  cpuModel: string;
  payloadBytes: number;
  frameBytes: number;
  p99BoundMs: number;
  baselineRssBytes: number;
  /** the bridge's node options and MALLOC_ARENA_MAX (Bridge.runsWith) */
  bridgeRunsWith: string;
  steps: StepResult[];
  /** step mode: the highest stream count that held (p99 within bound, nothing lost) */
  highestHeld: number | null;
  stoppedBy: string;
  /** with `floor`: the kernel's floor measured just before the run, and just after it */
  floor?: KernelFloor;
  floorAfter?: KernelFloor;
}

export const PASSWORD = 'bench-echo-password';
const FRAME_MS = 20;
const SERVER = fileURLToPath(new URL('./server.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
/** the zero masking key: RFC 6455 allows any 32-bit key; ws then skips the XOR on our side */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

export interface Bridge {
  child: ChildProcess;
  pid: number;
  /** every process of the bridge: the primary and its workers with --workers, else just pid */
  pids: number[];
  port: number;
  /** the bridge's JSON lines on stdout ('json' events; anything else it prints goes to stderr) */
  lines: EventEmitter;
  /** how it runs: its node options (before tsx's) and MALLOC_ARENA_MAX, for the report */
  runsWith: string;
}

export interface LoopStats {
  /** event-loop delay in the window, ms (its 1 ms sampling timer's own interval included) */
  loopDelayMs: { p50: number; p99: number; max: number };
  /** fraction of the window the event loop was busy */
  loopUtilization: number;
  /** V8 heap in use and memory outside it (Buffers) when asked */
  heapUsedBytes?: number;
  externalBytes?: number;
  /** terminals with a bound control connection */
  terminals?: number;
  /** calls whose audio the native media pump relayed when asked (with workers: summed over them) */
  pumped?: number;
  /** the pump's relay thread scheduling */
  pumpPriority?: string | null;
  /** relay-added latency of the pump's frames in the window, one way, us (see MediaPump.latency); with workers each figure is the worse worker's */
  pumpLatencyUs?: { up: RelayLatency; down: RelayLatency };
  /** the pump thread's wake-ups and the socket events they handled, in the window */
  pumpWakeups?: number;
  pumpEvents?: number;
}

export async function bridgeStats(bridge: Bridge): Promise<LoopStats | null> {
  try {
    const answer = once(bridge.lines, 'json');
    bridge.child.stdin!.write('stats\n');
    const [line] = (await Promise.race([answer, sleep(2000).then(() => [null])])) as [string | null];
    return line ? (JSON.parse(line) as LoopStats) : null;
  } catch {
    return null;
  }
}

/**
 * Starts bench/server.ts. Its open-files limit is raised to the hard limit first (a shell's
 * `ulimit -n`), so that it can hold as many terminals as the load generator opens. It runs with
 * the node options and malloc arenas `confmux serve` runs with (V8's heap options,
 * bin/heapFlags.mjs; MALLOC_ARENA_MAX, bin/mallocArenas.mjs).
 */
export async function startBridge(env: Record<string, string> = {}, workers = 1, cpus: string | null = null): Promise<Bridge> {
  // as confmux serve (unless NODE_OPTIONS sets the young generation: the bridge inherits it)
  const serveArgs = heapArgs([], process.env.NODE_OPTIONS ?? '');
  // CONFMUX_BENCH_BRIDGE_NODE_ARGS: extra node options for the bridge, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  // (after those: a heap option here wins, e.g. --heap-growing-percent=0 for V8's own growing)
  const extra = (process.env.CONFMUX_BENCH_BRIDGE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const childEnv: NodeJS.ProcessEnv = { ...mallocArenasEnv(process.env), ...env, CONFMUX_BENCH_PASSWORD: PASSWORD, CONFMUX_BENCH_WORKERS: String(workers) };
  const runsWith = `node options ${[...serveArgs, ...extra].join(' ') || '(none)'}${process.env.NODE_OPTIONS ? ` and NODE_OPTIONS ${process.env.NODE_OPTIONS}` : ''}; MALLOC_ARENA_MAX=${childEnv.MALLOC_ARENA_MAX}`;
  const child = spawn(...onCpus(cpus, '/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...serveArgs, ...extra, '--import', TSX, SERVER]), {
    stdio: ['pipe', 'pipe', 'inherit'],
    // glibc's arenas bounded as under confmux serve (unless this environment sets MALLOC_ARENA_MAX)
    env: childEnv,
  });
  const lines = new EventEmitter();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('{')) lines.emit('json', line);
    else process.stderr.write(`bridge: ${line}\n`);
  });
  const first = await Promise.race([
    once(lines, 'json').then(([l]) => l as string),
    once(child, 'exit').then(() => {
      throw new Error('the bridge under benchmark exited before it listened');
    }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the bridge under benchmark did not start within 20 s')), 20000).unref()),
  ]);
  const { port, pid, pids } = JSON.parse(first) as { port: number; pid: number; pids?: number[] };
  return { child, pid, pids: pids ?? [pid], port, lines, runsWith };
}

const WS_PEER = fileURLToPath(new URL('./wsEchoPeer.ts', import.meta.url));

/** bench/wsEchoPeer.ts as its own process (on `cpus`), for `--ws-echo`; `javascript`: its echo in JavaScript. */
export async function startWsPeer(cpus: string | null = null, javascript = false): Promise<{ port: number; pid: number; native: boolean; stop(): Promise<void> }> {
  const child = spawn(...onCpus(cpus, '/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, '--import', TSX, WS_PEER]), {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...(javascript ? { CONFMUX_BENCH_WS_ECHO: 'javascript' } : {}) },
  });
  const line = await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line').then(([l]) => l as string),
    once(child, 'exit').then(() => {
      throw new Error('the WebSocket echo peer exited before it listened');
    }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the WebSocket echo peer did not start within 20 s')), 20000).unref()),
  ]);
  const { port, native } = JSON.parse(line) as { port: number; native: boolean };
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.stdin!.end();
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(kill);
  };
  return { port, pid: child.pid!, native, stop };
}

export async function stopBridge(bridge: Bridge): Promise<void> {
  if (bridge.child.exitCode !== null) return;
  const exited = once(bridge.child, 'exit');
  bridge.child.stdin!.end();
  const kill = setTimeout(() => bridge.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(kill);
}

/** One terminal in a call: its control and audio connections and its counters. */
class Lane {
  ctl: WebSocket | null = null;
  audio: WebSocket | null = null;
  /** the audio connection's TCP socket, written to directly once bound */
  socket: Socket | null = null;
  frame = 0;
  received = 0;
  closing = false;
  constructor(readonly index: number, readonly number: string) {}
}

class Load {
  readonly lanes: Lane[] = [];
  /** the JavaScript generator's counts */
  private readonly tally = new FrameTally();
  private unexpectedCloses = 0;
  private readonly url: string;
  private readonly payloadBytes: number;
  /** the C++ thread that sends and times the frames once a terminal's audio is bound (else this event loop) */
  private readonly native: NativeLoadGen | null;

  constructor(port: number, payloadBytes: number, native: NativeLoadGen | null) {
    this.url = `ws://127.0.0.1:${port}/`;
    this.payloadBytes = payloadBytes;
    this.native = native;
  }

  counts(): LoadCounts {
    return this.native ? this.native.counts(this.unexpectedCloses) : this.tally.counts(this.unexpectedCloses);
  }

  /** bind, register, call, bind audio with the token; resolves once the call is answered and audio bound */
  connect(lane: Lane, timeoutMs = 15000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let answered = false;
      let audioBound = false;
      // how far it got, for the error when it gets no further
      const reached: string[] = [];
      const timer = setTimeout(() => fail(new Error(`terminal ${lane.number}: not in a call after ${timeoutMs} ms (reached: ${reached.join(', ') || 'nothing'})`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      const ready = (): void => {
        if (answered && audioBound) {
          clearTimeout(timer);
          resolve();
        }
      };
      const ctl = new WebSocket(this.url, { perMessageDeflate: false, generateMask: zeroMask });
      lane.ctl = ctl;
      ctl.on('error', (err) => fail(err));
      ctl.on('close', (code, reason) => {
        if (!lane.closing) {
          this.unexpectedCloses++;
          fail(new Error(`terminal ${lane.number}: control closed ${code} ${reason.toString()}`));
        }
      });
      ctl.on('open', () => {
        reached.push('control open');
        ctl.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number: lane.number, password: PASSWORD }));
      });
      ctl.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) return;
        const msg = JSON.parse(data.toString()) as { type: string; callId?: string; code?: string; message?: string; media?: { audio?: { token: string } } };
        reached.push(msg.type);
        switch (msg.type) {
          case 'bound':
            ctl.send(JSON.stringify({ type: 'register', id: 1, name: `bench ${lane.index}` }));
            return;
          case 'registered':
            ctl.send(JSON.stringify({ type: 'call', id: 2, to: '700', codecs: ['PCMU/8000'] }));
            return;
          case 'calling': {
            const audio = new WebSocket(this.url, { perMessageDeflate: false, generateMask: zeroMask });
            lane.audio = audio;
            audio.on('error', (err) => fail(err));
            audio.on('close', (code, reason) => {
              if (!lane.closing) {
                this.unexpectedCloses++;
                fail(new Error(`terminal ${lane.number}: audio closed ${code} ${reason.toString()}`));
              }
            });
            audio.on('open', () => {
              reached.push('audio open');
              audio.send(JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number: lane.number, callId: msg.callId, token: msg.media!.audio!.token }));
            });
            audio.on('message', (d: Buffer, bin: boolean) => {
              if (bin) return this.onFrame(lane, d, 0, d.length);
              if ((JSON.parse(d.toString()) as { type: string }).type === 'bound') {
                reached.push('audio bound');
                audioBound = true;
                const socket = rawSocket(audio);
                if (this.native) {
                  // from now on the C++ thread reads and writes this socket
                  if (!socket || !this.native.add(socket, lane.index)) return fail(new Error(`terminal ${lane.number}: the native load generator cannot take its audio socket (use --load-generator javascript)`));
                } else if (socket) {
                  // from now on: frames read by the fast reader, written whole to the socket
                  new MediaFrameReader(socket, audio, (buf, start, end) => this.onFrame(lane, buf, start, end), 65535, false);
                  lane.socket = socket;
                }
                ready();
              }
            });
            return;
          }
          case 'answered':
            answered = true;
            ready();
            return;
          case 'error':
            fail(new Error(`terminal ${lane.number}: ${msg.code}: ${msg.message}`));
            return;
        }
      });
    });
  }

  /** a frame back from the bridge, at data[start, end): its payload carries the send time, lane and frame number */
  private onFrame(lane: Lane, data: Buffer, start: number, end: number): void {
    lane.received++;
    this.tally.received(end - start < FRAME_HEADER_BYTES + 8 ? null : data.readDoubleLE(start + FRAME_HEADER_BYTES));
  }

  private send(lane: Lane): void {
    const ws = lane.audio;
    const socket = lane.socket;
    if (ws === null || socket === null || ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    const n = lane.frame++;
    // one buffer: WebSocket header (FIN + binary, masked, zero key), confmux header, payload
    const size = FRAME_HEADER_BYTES + this.payloadBytes;
    const at = size < 126 ? 6 : 8;
    const buf = Buffer.allocUnsafe(at + size);
    buf[0] = 0x82;
    if (size < 126) buf[1] = 0x80 | size;
    else {
      buf[1] = 0x80 | 126;
      buf.writeUInt16BE(size, 2);
    }
    buf.fill(0, at - 4, at);
    writeFrameHeader(buf, 0, 0, n === 0 ? 1 : 0, n & 0xffff, (n * 160) >>> 0, at);
    buf.fill(0xff, at + FRAME_HEADER_BYTES); // u-law silence
    buf.writeDoubleLE(now, at + FRAME_HEADER_BYTES);
    buf.writeUInt32LE(lane.index, at + FRAME_HEADER_BYTES + 8);
    buf.writeUInt32LE(n, at + FRAME_HEADER_BYTES + 12);
    this.tally.sent(now);
    socket.write(buf);
  }

  /**
   * Sends one frame per lane every 20 ms for `ms`, the lanes' send times spread evenly over the
   * 20 ms (as independent terminals would be): from a 1 ms timer, or on the native thread. The
   * measured window starts `windowDelayMs` from now and lasts `windowMs`.
   */
  pace(ms: number, windowDelayMs: number, windowMs: number): Promise<void> {
    if (this.native) return this.native.pace(ms, windowDelayMs, windowMs);
    this.tally.window(windowDelayMs, windowMs);
    const lanes = this.lanes;
    const n = lanes.length;
    const t0 = performance.now();
    const total = Math.floor((ms / FRAME_MS) * n);
    let k = 0;
    return new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        const due = Math.min(total, Math.floor(((now - t0) / FRAME_MS) * n));
        while (k < due) {
          this.send(lanes[k % n]!);
          k++;
        }
        if (k >= total) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
  }

  closeAll(): void {
    this.native?.close();
    for (const lane of this.lanes) {
      lane.closing = true;
      // an audio socket the native thread held: Node no longer reads it, so no closing handshake
      if (this.native) lane.audio?.terminate();
      else lane.audio?.close();
      lane.ctl?.close();
    }
  }
}

async function bridgeDropped(port: number): Promise<number | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    const text = await res.text();
    let n = 0;
    for (const m of text.matchAll(/^confmux_media_frames_dropped_total\{[^}]*\} (\d+)/gm)) n += Number(m[1]);
    return n;
  } catch {
    return null;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const warmup = options.warmupSeconds ?? 1;
  const payloadBytes = options.payloadBytes ?? 160;
  const bound = options.p99BoundMs ?? 4;
  const maxStreams = options.maxStreams ?? (options.step ? 3000 : options.streams);
  const stepBy = options.stepBy ?? options.streams;
  const concurrency = options.connectConcurrency ?? 64;
  if (payloadBytes < 16) throw new Error('payloadBytes must be at least 16 (send time, lane, frame number)');
  if (payloadBytes > 4086) throw new Error('payloadBytes must be at most 4086 (the bridge\'s maxAudioFrameBytes of 4096, header included)');
  const deadline = performance.now() + (options.timeLimitSeconds ?? 240) * 1000;

  if (options.udpEcho && options.wsEcho) throw new Error('udpEcho and wsEcho: one echo peer at a time');
  const loadOn = options.pin ? loadCpus() : null;
  if (options.pin && loadOn === null) throw new Error('--pin needs at least two CPUs');
  // before anything else runs (and again after): the same streams and rate, the ends where the
  // bridge and the load run
  const floorOptions = { streams: options.streams, seconds: Math.min(3, options.seconds), cpuA: options.pin ? Number(RELAY_CPUS) : -1, cpuB: loadOn !== null ? Number(loadOn.split(/[,-]/)[0]) : -1, udpBytes: 12 + payloadBytes, tcpBytes: 6 + FRAME_HEADER_BYTES + payloadBytes };
  const floor = options.floor ? await measureFloor(floorOptions) : undefined;
  // --pin: this process (the load generator) and the echo peer on the load's CPUs, the bridge on CPU 0
  const unpin = loadOn !== null ? pinSelf(loadOn) : (): void => undefined;
  const udpPeer = options.udpEcho ? await startUdpPeer(loadOn).catch((err: unknown) => {
    unpin();
    throw err;
  }) : null;
  const wsPeer = options.wsEcho ? await startWsPeer(loadOn, options.wsEchoJavaScript === true).catch((err: unknown) => {
    unpin();
    throw err;
  }) : null;
  const echoPeer = udpPeer ?? wsPeer;
  const bridge = await startBridge({ ...(udpPeer ? { CONFMUX_BENCH_UDP_PEER: `127.0.0.1:${udpPeer.port}` } : {}), ...(wsPeer ? { CONFMUX_BENCH_WS_PEER: `ws://127.0.0.1:${wsPeer.port}` } : {}), CONFMUX_BENCH_MEDIA_PUMP: options.mediaPump ?? 'auto', CONFMUX_BENCH_MEDIA_PUMP_PRIORITY: options.mediaPumpPriority ?? 'realtime', CONFMUX_BENCH_MEDIA_PUMP_COALESCE_US: String(options.mediaPumpCoalesceUs ?? 200), CONFMUX_BENCH_MEDIA_PUMP_STALE_MS: String(options.mediaPumpStaleMs ?? 100) }, options.workers ?? 1, options.pin ? RELAY_CPUS : null).catch(async (err: unknown) => {
    await echoPeer?.stop();
    unpin();
    throw err;
  });
  const loadDelay = monitorEventLoopDelay({ resolution: 1 });
  loadDelay.enable();
  const hardStop = setTimeout(() => {
    log('time limit reached: stopping');
    bridge.child.kill('SIGKILL');
    process.exit(3);
  }, (options.timeLimitSeconds ?? 240) * 1000 + 15000);
  hardStop.unref();
  let native: NativeLoadGen | null;
  try {
    native = chooseLoadGenerator(options.loadGenerator ?? 'auto', payloadBytes, 'websocket', log, options.loadPollUs ?? DEFAULT_LOAD_POLL_US);
  } catch (err) {
    await stopBridge(bridge);
    await echoPeer?.stop();
    unpin();
    throw err;
  }
  const load = new Load(bridge.port, payloadBytes, native);
  const result: BenchResult = {
    date: new Date().toISOString(),
    workers: options.workers ?? 1,
    udpEcho: options.udpEcho ?? false,
    wsEcho: options.wsEcho ?? false,
    ...(wsPeer ? { wsEchoNative: wsPeer.native } : {}),
    mediaPump: options.mediaPump ?? 'auto',
    mediaPumpCoalesceUs: options.mediaPumpCoalesceUs ?? 200,
    mediaPumpStaleMs: options.mediaPumpStaleMs ?? 100,
    node: process.version,
    cpus: cpus().length,
    // where the kernel lets each run (as read back, not as asked)
    cpusAllowed: { bridge: cpusOf(bridge.pid), load: cpusOf('self'), ...(echoPeer ? { echoPeer: cpusOf(echoPeer.pid) } : {}) },
    pinned: options.pin === true,
    loadGenerator: native ? 'native' : 'javascript',
    loadPollUs: native ? options.loadPollUs ?? DEFAULT_LOAD_POLL_US : null,
    cpuModel: cpuModel(),
    payloadBytes,
    frameBytes: FRAME_HEADER_BYTES + payloadBytes,
    p99BoundMs: bound,
    baselineRssBytes: 0,
    bridgeRunsWith: bridge.runsWith,
    steps: [],
    highestHeld: null,
    stoppedBy: 'done',
    ...(floor ? { floor } : {}),
  };
  try {
    await sleep(300);
    result.baselineRssBytes = rssBytes(bridge.pids);
    let target = Math.min(options.streams, maxStreams);
    let droppedBefore = (await bridgeDropped(bridge.port)) ?? 0;
    for (;;) {
      // more terminals, up to the step's count
      const t = performance.now();
      let peakRss = rssBytes(bridge.pids);
      const rssWatch = setInterval(() => {
        peakRss = Math.max(peakRss, rssBytes(bridge.pids));
      }, 250).unref();
      const fresh: Lane[] = [];
      for (let i = load.lanes.length; i < target; i++) {
        const lane = new Lane(i, String(100000 + i));
        load.lanes.push(lane);
        fresh.push(lane);
      }
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(concurrency, fresh.length) }, async () => {
          while (next < fresh.length) await load.connect(fresh[next++]!);
        }),
      );
      log(`${target} terminals in a call (${fresh.length} connected in ${((performance.now() - t) / 1000).toFixed(1)} s)`);

      // warm-up, then the measured window
      const before = load.counts();
      let cpu0 = 0;
      let user0 = 0;
      // the echo peer's CPU seconds at the window's start and end (with --udp-echo)
      let peer0 = 0;
      let peer1 = 0;
      let user1 = 0;
      let load0 = process.cpuUsage();
      const relayCore = options.pin ? Number(RELAY_CPUS) : null;
      let machine0 = machineCpuTicks();
      let machine1 = machine0;
      let core0 = relayCore === null ? null : machineCpuTicks(relayCore);
      let core1 = core0;
      // when each sample was taken (this process's timers run late when its core is full)
      const windowStart = performance.now() + warmup * 1000;
      let sampledFrom = windowStart;
      let sampledTo = windowStart + options.seconds * 1000;
      const sampler = setTimeout(() => {
        sampledFrom = performance.now();
        machine0 = machineCpuTicks();
        if (relayCore !== null) core0 = machineCpuTicks(relayCore);
        cpu0 = cpuSeconds(bridge.pids);
        user0 = cpuSplit(bridge.pids).user;
        load0 = process.cpuUsage();
        if (echoPeer) peer0 = cpuSeconds(echoPeer.pid);
        bridge.child.stdin!.write('reset\n');
        loadDelay.reset();
      }, warmup * 1000);
      let cpu1 = 0;
      let load1 = load0;
      let rss = 0;
      const sampler2 = setTimeout(() => {
        sampledTo = performance.now();
        machine1 = machineCpuTicks();
        if (relayCore !== null) core1 = machineCpuTicks(relayCore);
        cpu1 = cpuSeconds(bridge.pids);
        user1 = cpuSplit(bridge.pids).user;
        load1 = process.cpuUsage(load0);
        if (echoPeer) peer1 = cpuSeconds(echoPeer.pid);
        rss = rssBytes(bridge.pids);
      }, (warmup + options.seconds) * 1000);
      await load.pace((warmup + options.seconds) * 1000 + 5, warmup * 1000, options.seconds * 1000);
      clearTimeout(sampler);
      clearTimeout(sampler2);
      clearInterval(rssWatch);
      if (cpu1 === 0) {
        sampledTo = performance.now();
        machine1 = machineCpuTicks();
        if (relayCore !== null) core1 = machineCpuTicks(relayCore);
        cpu1 = cpuSeconds(bridge.pids);
        user1 = cpuSplit(bridge.pids).user;
        load1 = process.cpuUsage(load0);
        if (echoPeer) peer1 = cpuSeconds(echoPeer.pid);
        rss = rssBytes(bridge.pids);
      }
      const bridgeLoop = await bridgeStats(bridge);
      const loadLoopDelayMs = { p50: loadDelay.percentile(50) / 1e6, p99: loadDelay.percentile(99) / 1e6, max: loadDelay.max / 1e6 };
      const windowS = options.seconds;
      // the CPU figures are over the time between the two samples; the load generator counts the
      // messages over the nominal window (its own clock), so CPU per message is the CPU fraction
      // over the nominal window's message rate
      const sampledS = Math.max(0.001, (sampledTo - sampledFrom) / 1000);
      const timersLateMs = Math.max(sampledFrom - windowStart, sampledTo - (windowStart + windowS * 1000));
      // let the last frames come back
      const graceEnd = performance.now() + 1000;
      const backIn = (c: LoadCounts): boolean => c.received - before.received >= c.sent - before.sent;
      while (!backIn(load.counts()) && performance.now() < graceEnd) await sleep(20);
      const counts = load.counts();
      const sent = counts.sent - before.sent;
      const received = counts.received - before.received;
      const droppedNow = await bridgeDropped(bridge.port);
      const bridgeCpu = (cpu1 - cpu0) / sampledS;
      const messages = counts.sentInWindow + counts.receivedInWindow;
      const step: StepResult = {
        streams: target,
        seconds: windowS,
        sentPerSecond: counts.sentInWindow / windowS,
        receivedPerSecond: counts.receivedInWindow / windowS,
        sent,
        received,
        lost: Math.max(0, sent - received),
        bridgeDropped: droppedNow === null ? null : droppedNow - droppedBefore,
        rttMs: counts.rtt,
        bridgeCpu,
        bridgeUserCpu: (user1 - user0) / sampledS,
        loadCpu: (load1.user + load1.system) / 1e6 / sampledS,
        ...(echoPeer ? { echoPeerCpu: (peer1 - peer0) / sampledS } : {}),
        cpuMicrosPerMessage: messages > 0 ? (bridgeCpu / (messages / windowS)) * 1e6 : NaN,
        timersLateMs,
        bridgeRssBytes: rss,
        rssPerTerminalBytes: (rss - result.baselineRssBytes) / target,
        peakRssBytes: Math.max(peakRss, rss),
        rssPerTerminalPeakBytes: (Math.max(peakRss, rss) - result.baselineRssBytes) / target,
        unexpectedCloses: counts.unexpectedCloses,
        bridgeLoop,
        loadLoopDelayMs,
        stealFraction: machine1.total > machine0.total ? (machine1.steal - machine0.steal) / (machine1.total - machine0.total) : 0,
        ...(core0 && core1 && core1.total > core0.total ? { relayCoreBusy: 1 - (core1.idle - core0.idle) / (core1.total - core0.total) } : {}),
        held: false,
      };
      droppedBefore = droppedNow ?? droppedBefore;
      // every call on the native pump: the bound applies to the relay-added latency the bridge
      // measures itself, one way (half the bound); otherwise to the round trip the load generator sees
      const relay = step.bridgeLoop?.pumpLatencyUs;
      step.heldBy = relay && step.bridgeLoop?.pumped === step.streams && relay.up.count > 0 ? 'relay' : 'rtt';
      const within = step.heldBy === 'relay' ? Math.max(relay!.up.p99, relay!.down.p99) <= (bound / 2) * 1000 : step.rttMs.p99 <= bound;
      step.held = within && step.lost === 0 && step.unexpectedCloses === 0;
      result.steps.push(step);
      log(formatStep(step));
      if (!options.step) break;
      if (!step.held) {
        result.stoppedBy = `p99 ${step.rttMs.p99.toFixed(2)} ms > ${bound} ms or loss at ${target} streams`;
        break;
      }
      result.highestHeld = target;
      if (target >= maxStreams) {
        result.stoppedBy = `reached --max-streams ${maxStreams}`;
        break;
      }
      if (performance.now() > deadline - (warmup + options.seconds + 10) * 1000) {
        result.stoppedBy = 'time limit';
        break;
      }
      target = Math.min(maxStreams, target + stepBy);
    }
  } finally {
    load.closeAll();
    await sleep(100);
    await stopBridge(bridge);
    await echoPeer?.stop();
    loadDelay.disable();
    clearTimeout(hardStop);
    unpin();
  }
  // and again once everything has stopped: the machine's state drifts within a run
  if (options.floor) result.floorAfter = await measureFloor(floorOptions);
  return result;
}

const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-');
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');

const lat = (l: RelayLatency): string => `p50 ${Math.round(l.p50)} p99 ${Math.round(l.p99)} p999 ${Math.round(l.p999)} max ${Math.round(l.max)} µs`;
const relayP99 = (s: StepResult): string => {
  const l = s.bridgeLoop?.pumpLatencyUs;
  return l && l.up.count > 0 ? `${(l.up.p99 / 1000).toFixed(2)} / ${(l.down.p99 / 1000).toFixed(2)}` : '-';
};

export function formatStep(s: StepResult): string {
  return [
    `streams ${s.streams}`,
    `msg/s to bridge ${Math.round(s.sentPerSecond)}, from bridge ${Math.round(s.receivedPerSecond)}`,
    `lost ${s.lost}/${s.sent}${s.bridgeDropped ? ` (bridge dropped ${s.bridgeDropped})` : ''}`,
    `bridge CPU ${f2(s.bridgeCpu)} core (${f2(s.cpuMicrosPerMessage)} µs/msg; user space ${f2(s.bridgeUserCpu ?? NaN)} core), load generator ${f2(s.loadCpu)} core${s.echoPeerCpu !== undefined ? `, echo peer ${f2(s.echoPeerCpu)} core` : ''}`,
    ...(s.relayCoreBusy !== undefined ? [`the bridge's CPU (--pin) busy ${f2(s.relayCoreBusy)} of the window (the bridge, and the kernel's interrupt work on that CPU)`] : []),
    `bridge RSS ${f1(s.bridgeRssBytes / 1048576)} MiB, ${f1(s.rssPerTerminalBytes / 1024)} kB per terminal at the window's end${s.peakRssBytes !== undefined ? `; peak ${f1(s.peakRssBytes / 1048576)} MiB, ${f1(s.rssPerTerminalPeakBytes! / 1024)} kB per terminal (with the set-up's garbage: V8 gives its pages back when its memory reducer runs, some 10 to 20 s after the terminals connected; run --seconds 30 to see the settled figure)` : ''}`,
    `round trip p50 ${f2(s.rttMs.p50)} p99 ${f2(s.rttMs.p99)} p999 ${f2(s.rttMs.p999)} max ${f2(s.rttMs.max)} ms (one way ≈ half: p99 ${f2(s.rttMs.p99 / 2)} ms)`,
    ...(s.bridgeLoop?.pumpLatencyUs && s.bridgeLoop.pumpLatencyUs.up.count > 0
      ? [`relay-added latency in the bridge, one way (kernel receive time to sent on): to the media server ${lat(s.bridgeLoop.pumpLatencyUs.up)}; to the terminal ${lat(s.bridgeLoop.pumpLatencyUs.down)}`]
      : []),
    `native media pump: ${s.bridgeLoop?.pumped === undefined ? '-' : `${s.bridgeLoop.pumped} of ${s.streams} calls${s.bridgeLoop.pumpWakeups ? `, ${Math.round(s.bridgeLoop.pumpWakeups / s.seconds)} wake-ups/s, ${f1((s.bridgeLoop.pumpEvents ?? 0) / s.bridgeLoop.pumpWakeups)} events each` : ''}`}`,
    ...(s.timersLateMs !== undefined && s.timersLateMs > 100 ? [`WARNING: the bench's own window samples ran ${Math.round(s.timersLateMs)} ms late (its core was full): CPU is over the time sampled, the bridge's latency and loop figures do not cover the window`] : []),
    `machine: CPU steal ${s.stealFraction === undefined ? '-' : `${(s.stealFraction * 100).toFixed(1)} %`} of the window (a virtual machine's CPUs not running: it lands in every latency tail)`,
    `event-loop delay p99 / max: bridge ${s.bridgeLoop ? `${f2(s.bridgeLoop.loopDelayMs.p99)} / ${f2(s.bridgeLoop.loopDelayMs.max)} ms (loop busy ${f2(s.bridgeLoop.loopUtilization)})` : '-'}, load generator ${f2(s.loadLoopDelayMs.p99)} / ${f2(s.loadLoopDelayMs.max)} ms`,
  ].join('\n  ');
}

export function formatResult(r: BenchResult): string {
  const lines = [
    `confmux bench: bridge with the echo stand-in (plugin/echo${r.udpEcho ? ', through a UDP echo peer: turnutils_peer' : r.wsEcho ? `, through WebSocket media legs as chan_websocket's to an echo peer: bench/wsEchoPeer.ts${r.wsEchoNative ? '' : ' in JavaScript (without its native thread: far slower)'}` : ', in process'}), loopback, ${r.frameBytes}-byte frames (10-byte header + ${r.payloadBytes} bytes PCMU) every 20 ms each way per stream`,
    `machine: ${r.cpus} cores, ${r.cpuModel}; node ${r.node}; ${r.date}`,
    ...(r.pinned ? [`pinned (--pin): the bridge on CPU ${r.cpusAllowed.bridge}, the load generator on CPU ${r.cpusAllowed.load}${r.cpusAllowed.echoPeer ? `, the echo peer on CPU ${r.cpusAllowed.echoPeer}` : ''}`] : []),
    `load generator: ${r.loadGenerator === 'native' ? `native (a C++ thread, native/loadgen.cc, sends and times the frames; ${r.loadPollUs ? `looks at its sockets every ${r.loadPollUs} µs` : 'woken by each frame'})` : 'JavaScript (this process\'s event loop)'}`,
    `bridge: ${r.workers === 1 ? 'one process (server.workers 1)' : `a primary and ${r.workers} workers (server.workers ${r.workers}); CPU and RSS are their sums`}; server.mediaPump ${r.mediaPump}, mediaPumpCoalesceUs ${r.mediaPumpCoalesceUs}, mediaPumpStaleMs ${r.mediaPumpStaleMs}${r.steps[0]?.bridgeLoop?.pumped !== undefined ? ` (${r.steps[0].bridgeLoop.pumped} of ${r.steps[0].streams} calls on the pump${r.steps[0].bridgeLoop.pumpPriority ? `, relay thread ${r.steps[0].bridgeLoop.pumpPriority}` : ''})` : ''}`,
    `bridge runs with ${r.bridgeRunsWith}; its RSS before any terminal: ${(r.baselineRssBytes / 1048576).toFixed(1)} MiB`,
    '',
    '| streams | msg/s to bridge | msg/s from bridge | lost | bridge CPU (core) | µs CPU/msg | load gen CPU | RSS/terminal (end / peak) | RTT p50 | RTT p99 | RTT p999 | RTT max | relay p99 up / down | held |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|',
  ];
  for (const s of r.steps) {
    lines.push(
      `| ${s.streams} | ${Math.round(s.sentPerSecond)} | ${Math.round(s.receivedPerSecond)} | ${s.lost} | ${f2(s.bridgeCpu)} | ${f2(s.cpuMicrosPerMessage)} | ${f2(s.loadCpu)} | ${f1(s.rssPerTerminalBytes / 1024)} / ${s.rssPerTerminalPeakBytes !== undefined ? f1(s.rssPerTerminalPeakBytes / 1024) : '-'} kB | ${f2(s.rttMs.p50)} | ${f2(s.rttMs.p99)} | ${f2(s.rttMs.p999)} | ${f2(s.rttMs.max)} | ${relayP99(s)} | ${s.held ? 'yes' : 'no'} |`,
    );
  }
  lines.push('', 'RSS/terminal: (bridge RSS - RSS before any terminal) / streams, at the window\'s end, and the peak from the first new terminal on (sampled every 250 ms). V8 gives the pages of the set-up\'s garbage back to the system only when its memory reducer runs, some 10 to 20 s after a burst of set-ups: with a shorter window the end still holds it (--seconds 30 shows what the terminals keep).');
  lines.push(`RTT: ms, terminal -> bridge -> echo -> bridge -> terminal, measured in the load generator (${r.loadGenerator === 'native' ? 'its thread\'s own delays' : 'its own event-loop delay'} included); one way is about half.`);
  lines.push(`relay p99: ms, one way, measured in the bridge by the native media pump: from the kernel's receive timestamp of each packet to the pump's send on the other socket (up: to the media server, down: to the terminal)${r.workers > 1 ? '; each worker has its own pump, and each figure is the worse worker\'s' : ''}.`);
  lines.push(
    r.steps.some((s) => s.heldBy === 'relay')
      ? `held: every call on the pump, relay p99 <= ${r.p99BoundMs / 2} ms each way, no frame lost, no connection closed (otherwise: round-trip p99 <= ${r.p99BoundMs} ms).`
      : `held: round-trip p99 <= ${r.p99BoundMs} ms, no frame lost, no connection closed.`,
  );
  if (r.steps.length > 1 || r.highestHeld !== null) lines.push(`highest stream count that held: ${r.highestHeld ?? 'none'} (stopped: ${r.stoppedBy})`);
  if (r.floor) lines.push(formatFloor(r.floor, r.floorAfter, r.steps.find((s) => s.streams === r.floor!.streams)?.cpuMicrosPerMessage));
  return lines.join('\n');
}

/** confmux and coturn under the same load, and the ratio of CPU per relayed message */
export function formatSideBySide(r: BenchResult, coturn: StepResult): string {
  const c = r.steps[0]!;
  const row = (name: string, s: StepResult): string =>
    `| ${name} | ${s.streams} | ${Math.round(s.sentPerSecond)} | ${Math.round(s.receivedPerSecond)} | ${s.lost} | ${f2(s.bridgeCpu)} | ${f2(s.cpuMicrosPerMessage)} | ${f2(s.loadCpu)} | ${f1(s.rssPerTerminalBytes / 1024)} kB | ${f2(s.rttMs.p50)} | ${f2(s.rttMs.p99)} | ${f2(s.rttMs.p999)} | ${f2(s.rttMs.mean)} |`;
  return [
    'side by side, same streams, frame size and rate:',
    '| relay | streams | msg/s in | msg/s out | lost | relay CPU (core) | µs CPU/msg | load gen CPU | RSS/stream | RTT p50 | RTT p99 | RTT p999 | RTT mean |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    row(r.udpEcho ? 'confmux (ws, echo through a UDP peer)' : r.wsEcho ? 'confmux (ws, echo through a WebSocket media peer)' : 'confmux (ws, echo stand-in in process)', c),
    row('coturn (TURN/TCP, UDP echo peer)', coturn),
    '',
    `CPU per relayed message, confmux / coturn: ${f2(c.cpuMicrosPerMessage / coturn.cpuMicrosPerMessage)} (below 1: confmux spends less)`,
    ...(coturn.timersLateMs !== undefined && coturn.timersLateMs > 100 ? [`WARNING: in coturn's run the bench's own window samples ran ${Math.round(coturn.timersLateMs)} ms late (its core was full): coturn's CPU is over the time sampled`] : []),
    `the same load generator for both: ${r.loadGenerator === 'native' ? 'native (native/loadgen.cc: WebSocket frames to confmux, TURN ChannelData to coturn)' : 'JavaScript'}.`,
    r.udpEcho
      ? 'both relay each message over a UDP socket to the same echo peer (turnutils_peer) and back.'
      : r.wsEcho
        ? 'coturn relays each message over a UDP socket to its peer and back; confmux over a WebSocket media leg (TCP, as Asterisk\'s chan_websocket) to its peer: not like for like (--udp-echo is).'
        : 'coturn relays each message over a UDP socket to its peer and back; confmux here hands it to the in-process echo stand-in, so its figure leaves out the media-server socket (--udp-echo puts it in).',
  ].join('\n');
}
