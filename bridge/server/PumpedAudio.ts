/**
 * One call's audio while the native media pump relays it (see MediaPump.ts): the terminal's audio
 * WebSocket and the call's leg to the media server (a UDP socket, or chan_websocket's WebSocket),
 * both handed to the pump's thread. Node stops reading both sockets; anything JavaScript then does
 * to either of them (write, close, read again) first takes them back from the pump (`release()`),
 * so nothing is lost or reordered:
 *
 * - the pump's own unsent bytes go out first (detach flushes them);
 * - the bytes the pump read but did not handle (a close frame, a bad frame, a partial frame; on a
 *   WebSocket leg, Asterisk's text messages) are given to that connection's ws reader, whole and in
 *   order, as if they had just arrived;
 * - the call gets its frame counters, rate-limit tokens, heartbeat state and its converters' carried
 *   samples back, the leg its RTP state, and Node reads both sockets again.
 *
 * This reads Node internals: a TCP socket's `_handle` (fd, readStart/readStop, the StreamBase
 * writes, close) and a dgram socket's handle under its 'state symbol' (fd, recvStart/recvStop,
 * send, close). `attach` checks each is there and declines otherwise, so the call stays on the
 * JavaScript path (tests/unit/media-pump.test.ts checks them against the installed Node).
 */
import type { Socket as TcpSocket } from 'node:net';
import type { Socket as UdpSocket } from 'node:dgram';
import type WebSocket from 'ws';
import type { PumpLeg } from '../../plugin/driver.ts';
import type { AudioCodec } from '../protocol/codecs.ts';

/** Where each counter is in the native module's stats() (the order of `Stat` in native/pump.cc). */
export const PUMP_STAT = {
  framesFromTerminals: 0,
  framesToTerminals: 1,
  droppedRateLimit: 2,
  droppedSlowTerminal: 3,
  rejectedDatagrams: 4,
  handbacks: 5,
  wakeups: 6,
  events: 7,
  droppedSlowMediaServer: 8,
  droppedStale: 9,
} as const;

/**
 * The conversions the pump makes between the terminal's codec and the leg's format, named as
 * terminal_leg (the order of `Convert` in native/pump.cc). Each is AudioConverter's arithmetic, byte
 * for byte, both ways: u-law is PCMU/8000, l16n L16/8000 (FreeSWITCH's unicast stream), l16w L16/16000.
 */
export const PUMP_CONVERT = {
  none: 0,
  ulaw_l16n: 1,
  l16w_ulaw: 2,
  l16w_l16n: 3,
  ulaw_l16w: 4,
} as const;

export type PumpConvert = (typeof PUMP_CONVERT)[keyof typeof PUMP_CONVERT];

/** The pump's conversion between a terminal's codec and a leg's format; null when it has none (JavaScript converts). */
export function pumpConversion(terminal: AudioCodec, leg: AudioCodec): PumpConvert | null {
  if (terminal.name === leg.name) return PUMP_CONVERT.none;
  if (terminal.name === 'PCMU/8000' && leg.name === 'L16/8000') return PUMP_CONVERT.ulaw_l16n;
  if (terminal.name === 'L16/16000' && leg.name === 'PCMU/8000') return PUMP_CONVERT.l16w_ulaw;
  if (terminal.name === 'L16/16000' && leg.name === 'L16/8000') return PUMP_CONVERT.l16w_l16n;
  if (terminal.name === 'PCMU/8000' && leg.name === 'L16/16000') return PUMP_CONVERT.ulaw_l16w;
  return null;
}

/** The native module's surface (native/pump.cc). */
export interface NativePump {
  /** starts the relay thread: "realtime", "normal", "normal: <why not realtime>" (or "started" when it ran already) */
  start(onHandback: (id: number) => void, realtime: boolean, coalesceUs: number, staleMs: number): string;
  attach(tcpFd: number, udpFd: number, options: Record<string, number | boolean | string>): number;
  detach(id: number): NativeDetached | null;
  ping(id: number): boolean;
  stats(): number[];
  attached(): number;
  /** relay-added latency, us: [up p50, p99, p999, max, count, down p50, p99, p999, max, count]; reset: start again */
  latency(reset: boolean): number[];
}

export interface NativeDetached {
  seq: number;
  timestamp: number;
  marker: boolean;
  rtpSeq: number;
  rtpTimestamp: number;
  rtpFirst: boolean;
  tokens: number;
  floodTokens: number;
  upLast: number;
  downLast: number;
  alive: boolean;
  handedBack: boolean;
  rest: Buffer | null;
  legRest: Buffer | null;
}

/** The call's side of the audio: where frames to the terminal start from, and its limits. */
export interface PumpedAudioOptions {
  codecId: number;
  /** stream id in frames to the terminal */
  stream: number;
  bytesPerSample: number;
  /** the terminal codec's samples per second: frames from the terminal are dropped for age by their media time (server.mediaPumpStaleMs; absent: never) */
  sampleRate?: number;
  /** the leg's format's samples per second: on a WebSocket leg, audio from the media server is dropped for age by its media time the same way (absent: never) */
  legSampleRate?: number;
  seq: number;
  timestamp: number;
  marker: boolean;
  maxFrameBytes: number;
  framesPerSecond: number;
  burst: number;
  tokens: number;
  /** frames the rate limit may drop before the terminal is closed (RATE_LIMITED), refilled at framesPerSecond (0: never closed) */
  floodBurst?: number;
  floodTokens?: number;
  highWaterBytes: number;
  alive: boolean;
  /** the terminal's codec to and from the leg's format (none when absent) */
  convert?: PumpConvert;
  /**
   * The sample each direction's upsampling carries into the next frame (AudioConverter's `carried`):
   * the pump goes on from it and hands it back, so the audio does not step where the call moves.
   */
  upLast?: number;
  downLast?: number;
}

/** What the call continues from once the pump let go. */
export interface PumpedAudioState {
  seq: number;
  timestamp: number;
  marker: boolean;
  tokens: number;
  floodTokens: number;
  alive: boolean;
  upLast: number;
  downLast: number;
}

type Method = (...args: unknown[]) => unknown;
type Handle = Record<string, unknown> & { fd?: unknown };

/** the StreamBase writes and the handle calls that take a TCP socket back */
const TCP_GUARDED = ['readStart', 'close', 'writeBuffer', 'writev', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString', 'writeUcs2String', 'shutdown'];
const UDP_GUARDED = ['recvStart', 'close', 'send', 'send6'];

/** the PumpedAudio holding each guarded handle */
const owners = new WeakMap<object, PumpedAudio>();
/** for each handle prototype (TCP's, UDP's), the guarded prototype made from it */
const guardedPrototypes = new WeakMap<object, object>();

/**
 * A prototype between a pumped handle and its own: each guarded method first takes the sockets back
 * from the pump (its PumpedAudio's release), then runs the handle's own. One per handle class, shared
 * by every pumped handle, so a pumped call costs two prototype swaps rather than a closure per method.
 */
function guardedPrototype(proto: object, guarded: readonly string[]): object {
  let made = guardedPrototypes.get(proto);
  if (made) return made;
  made = Object.create(proto) as object;
  for (const name of guarded) {
    const original = (proto as Record<string, unknown>)[name];
    if (typeof original !== 'function') continue;
    Object.defineProperty(made, name, {
      value: function (this: Handle, ...args: unknown[]): unknown {
        owners.get(this)?.releasedBy(this, name);
        return (original as Method).apply(this, args);
      },
      writable: true,
      configurable: true,
    });
  }
  guardedPrototypes.set(proto, made);
  return made;
}

function tcpHandle(socket: TcpSocket): Handle | null {
  if ((socket as { encrypted?: boolean }).encrypted) return null;
  const h = (socket as unknown as { _handle?: Handle | null })._handle;
  if (!h || typeof h.fd !== 'number' || h.fd < 0) return null;
  if (typeof h.readStop !== 'function' || typeof h.readStart !== 'function' || typeof h.close !== 'function') return null;
  return h;
}

function udpHandle(socket: UdpSocket): Handle | null {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  if (!sym) return null;
  const h = (socket as unknown as Record<symbol, { handle?: Handle | null } | undefined>)[sym]?.handle;
  if (!h || typeof h.fd !== 'number' || h.fd < 0) return null;
  if (typeof h.recvStop !== 'function' || typeof h.recvStart !== 'function' || typeof h.close !== 'function') return null;
  return h;
}

/**
 * A WebSocket connection the pump may take: a plain TCP socket with nothing queued to write, ws's
 * reader at a frame boundary, and ws's one 'data' listener (which gets the bytes handed back).
 */
function streamSide(ws: WebSocket, socket: TcpSocket): Side | null {
  const handle = tcpHandle(socket);
  if (!handle) return null;
  if (socket.writableLength !== 0 || (handle.writeQueueSize as number) !== 0) return null;
  const receiver = (ws as unknown as { _receiver?: { _bufferedBytes?: number } })._receiver;
  if ((receiver?._bufferedBytes ?? 0) !== 0) return null;
  const listeners = socket.listeners('data');
  if (listeners.length !== 1) return null;
  return { handle, proto: Object.getPrototypeOf(handle) as object, guarded: TCP_GUARDED, start: 'readStart', stop: 'readStop', socket, onData: listeners[0] as (chunk: Buffer) => void };
}

/** one socket the pump holds: how Node stops and starts reading it, and who reads it in JavaScript */
interface Side {
  handle: Handle;
  /** the handle's own prototype (TCP's, UDP's), given back when the pump lets go */
  proto: object;
  guarded: readonly string[];
  start: 'readStart' | 'recvStart';
  stop: 'readStop' | 'recvStop';
  /** stream sides: the socket and ws's data listener */
  socket?: TcpSocket;
  onData?: (chunk: Buffer) => void;
}

export class PumpedAudio {
  readonly id: number;
  private readonly native: NativePump;
  private readonly terminal: Side;
  private readonly legSide: Side;
  private readonly leg: PumpLeg;
  private readonly onReleased: (state: PumpedAudioState) => void;
  private released = false;

  private constructor(native: NativePump, terminal: Side, legSide: Side, leg: PumpLeg, o: PumpedAudioOptions, onReleased: (state: PumpedAudioState) => void) {
    this.native = native;
    this.terminal = terminal;
    this.legSide = legSide;
    this.leg = leg;
    this.onReleased = onReleased;
    const udp = leg.kind === 'udp' ? leg : null;
    const rtp = udp?.rtp ?? null;
    (legSide.handle[legSide.stop] as Method).call(legSide.handle);
    (terminal.handle.readStop as Method).call(terminal.handle);
    try {
      this.id = native.attach(terminal.handle.fd as number, legSide.handle.fd as number, {
        maxFrameBytes: o.maxFrameBytes,
        codec: o.codecId,
        stream: o.stream,
        bytesPerSample: o.bytesPerSample,
        sampleRate: o.sampleRate ?? 0,
        legSampleRate: o.legSampleRate ?? 0,
        seq: o.seq,
        timestamp: o.timestamp,
        marker: o.marker,
        webSocketLeg: leg.kind === 'websocket',
        rtp: rtp !== null,
        payloadType: rtp?.payloadType ?? 0,
        rtpSeq: rtp?.seq ?? 0,
        rtpTimestamp: rtp?.timestamp ?? 0,
        ssrc: rtp?.ssrc ?? 0,
        rtpFirst: rtp?.first ?? true,
        legBytesPerSample: leg.bytesPerSample,
        legMaxPayload: leg.maxPayload,
        expectPort: udp?.expectPort ?? 0,
        remoteHost: udp?.remoteHost ?? '',
        remotePort: udp?.remotePort ?? 0,
        framesPerSecond: o.framesPerSecond,
        burst: o.burst,
        tokens: o.tokens,
        floodBurst: o.floodBurst ?? 0,
        floodTokens: o.floodTokens ?? o.floodBurst ?? 0,
        highWaterBytes: o.highWaterBytes,
        alive: o.alive,
        convert: o.convert ?? PUMP_CONVERT.none,
        upLast: o.upLast ?? 0,
        downLast: o.downLast ?? 0,
      });
    } catch (err) {
      (legSide.handle[legSide.start] as Method).call(legSide.handle);
      (terminal.handle.readStart as Method).call(terminal.handle);
      throw err;
    }
    this.guard(terminal);
    this.guard(legSide);
  }

  /**
   * Hands the call's audio to the pump, or returns null (and changes nothing) when it cannot:
   * the sockets are not as expected (TLS, another Node or ws version), Node still holds bytes to
   * write or ws bytes read for either connection.
   */
  static attach(native: NativePump, ws: WebSocket, socket: TcpSocket, leg: PumpLeg, o: PumpedAudioOptions, onReleased: (state: PumpedAudioState) => void): PumpedAudio | null {
    if (!Number.isInteger(o.bytesPerSample) || o.bytesPerSample < 1) return null;
    const terminal = streamSide(ws, socket);
    if (!terminal) return null;
    let legSide: Side | null;
    if (leg.kind === 'websocket') {
      legSide = streamSide(leg.ws, leg.tcp);
    } else {
      const handle = udpHandle(leg.socket);
      legSide = handle ? { handle, proto: Object.getPrototypeOf(handle) as object, guarded: UDP_GUARDED, start: 'recvStart', stop: 'recvStop' } : null;
    }
    if (!legSide) return null;
    return new PumpedAudio(native, terminal, legSide, leg, o, onReleased);
  }

  /** Sends a heartbeat ping; false when no pong came since the last one (the connection is dead). */
  heartbeat(): boolean {
    return !this.released && this.native.ping(this.id);
  }

  /**
   * Takes both sockets back from the pump (idempotent): Node reads them again (but the one being
   * closed, or whose read Node is starting itself: `trigger`), and each connection's ws reader gets
   * the bytes the pump read but did not handle, before anything Node reads next.
   */
  release(trigger: string | null = null): void {
    if (this.released) return;
    this.released = true;
    const state = this.native.detach(this.id);
    this.unguard(this.terminal);
    this.unguard(this.legSide);
    const leg = this.leg;
    if (state !== null && leg.kind === 'udp' && leg.rtp !== null) leg.resume({ payloadType: leg.rtp.payloadType, seq: state.rtpSeq, timestamp: state.rtpTimestamp, ssrc: leg.rtp.ssrc, first: state.rtpFirst });
    if (state !== null) this.onReleased({ seq: state.seq, timestamp: state.timestamp, marker: state.marker, tokens: state.tokens, floodTokens: state.floodTokens, alive: state.alive, upLast: state.upLast, downLast: state.downLast });
    this.resume(this.legSide, 'leg', trigger, state?.legRest ?? null);
    this.resume(this.terminal, 'tcp', trigger, state?.rest ?? null);
  }

  /** Node reads the side again, its ws first getting `rest` (after this turn's code: we may be inside a write). */
  private resume(side: Side, name: string, trigger: string | null, rest: Buffer | null): void {
    if (trigger === `${name}:close`) return;
    const socket = side.socket;
    if (socket) {
      if (socket.destroyed) return;
      const onData = side.onData!;
      if (rest) process.nextTick(() => onData.call(socket, rest));
      if (trigger === `${name}:${side.start}` || (socket as unknown as { _handle?: unknown })._handle !== side.handle) return;
    } else if (trigger === `${name}:${side.start}`) {
      return;
    }
    try {
      (side.handle[side.start] as Method).call(side.handle);
    } catch {
      // the socket is closing
    }
  }

  /** Node's calls on the side's handle take the sockets back first (guardedPrototype). */
  private guard(side: Side): void {
    owners.set(side.handle, this);
    Object.setPrototypeOf(side.handle, guardedPrototype(side.proto, side.guarded));
  }

  private unguard(side: Side): void {
    Object.setPrototypeOf(side.handle, side.proto);
    owners.delete(side.handle);
  }

  /** @internal A guarded method of one of its handles was called (guardedPrototype). */
  releasedBy(handle: Handle, name: string): void {
    this.release(handle === this.terminal.handle ? `tcp:${name}` : `leg:${name}`);
  }
}
