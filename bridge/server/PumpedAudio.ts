/**
 * One call's audio while the native media pump relays it (see MediaPump.ts): the terminal's audio
 * WebSocket and the call's UDP leg, both handed to the pump's thread. Node stops reading both
 * sockets; anything JavaScript then does to either of them (write, close, read again) first takes
 * them back from the pump (`release()`), so nothing is lost or reordered:
 *
 * - the pump's own unsent bytes to the terminal go out first (detach flushes them);
 * - the bytes the pump read but did not handle (a close frame, a bad frame, a partial frame) are
 *   given to ws's reader, whole and in order, as if they had just arrived;
 * - the call gets its frame counters, rate-limit tokens and heartbeat state back, the leg its RTP
 *   state, and Node reads both sockets again.
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

/** The native module's surface (native/pump.cc). */
export interface NativePump {
  /** starts the relay thread: "realtime", "normal", "normal: <why not realtime>" (or "started" when it ran already) */
  start(onHandback: (id: number) => void, realtime: boolean): string;
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
  alive: boolean;
  handedBack: boolean;
  rest: Buffer | null;
}

/** The call's side of the audio: where frames to the terminal start from, and its limits. */
export interface PumpedAudioOptions {
  codecId: number;
  /** stream id in frames to the terminal */
  stream: number;
  bytesPerSample: number;
  seq: number;
  timestamp: number;
  marker: boolean;
  maxFrameBytes: number;
  framesPerSecond: number;
  burst: number;
  tokens: number;
  highWaterBytes: number;
  alive: boolean;
}

/** What the call continues from once the pump let go. */
export interface PumpedAudioState {
  seq: number;
  timestamp: number;
  marker: boolean;
  tokens: number;
  alive: boolean;
}

type Method = (...args: unknown[]) => unknown;
type Handle = Record<string, unknown> & { fd?: unknown };

/** the StreamBase writes and the handle calls that take the TCP socket back */
const TCP_GUARDED = ['readStart', 'close', 'writeBuffer', 'writev', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString', 'writeUcs2String', 'shutdown'];
const UDP_GUARDED = ['recvStart', 'close', 'send', 'send6'];

function tcpHandle(socket: TcpSocket): Handle | null {
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

export class PumpedAudio {
  readonly id: number;
  private readonly native: NativePump;
  private readonly socket: TcpSocket;
  private readonly tcp: Handle;
  private readonly udp: Handle;
  private readonly leg: PumpLeg;
  private readonly wsOnData: (chunk: Buffer) => void;
  private readonly onReleased: (state: PumpedAudioState) => void;
  private released = false;

  private constructor(native: NativePump, socket: TcpSocket, tcp: Handle, udp: Handle, leg: PumpLeg, wsOnData: (chunk: Buffer) => void, o: PumpedAudioOptions, onReleased: (state: PumpedAudioState) => void) {
    this.native = native;
    this.socket = socket;
    this.tcp = tcp;
    this.udp = udp;
    this.leg = leg;
    this.wsOnData = wsOnData;
    this.onReleased = onReleased;
    const rtp = leg.rtp;
    (udp.recvStop as Method).call(udp);
    (tcp.readStop as Method).call(tcp);
    try {
      this.id = native.attach(tcp.fd as number, udp.fd as number, {
        maxFrameBytes: o.maxFrameBytes,
        codec: o.codecId,
        stream: o.stream,
        bytesPerSample: o.bytesPerSample,
        seq: o.seq,
        timestamp: o.timestamp,
        marker: o.marker,
        rtp: rtp !== null,
        payloadType: rtp?.payloadType ?? 0,
        rtpSeq: rtp?.seq ?? 0,
        rtpTimestamp: rtp?.timestamp ?? 0,
        ssrc: rtp?.ssrc ?? 0,
        rtpFirst: rtp?.first ?? true,
        legBytesPerSample: leg.bytesPerSample,
        legMaxPayload: leg.maxPayload,
        expectPort: leg.expectPort,
        remoteHost: leg.remoteHost,
        remotePort: leg.remotePort,
        framesPerSecond: o.framesPerSecond,
        burst: o.burst,
        tokens: o.tokens,
        highWaterBytes: o.highWaterBytes,
        alive: o.alive,
      });
    } catch (err) {
      (udp.recvStart as Method).call(udp);
      (tcp.readStart as Method).call(tcp);
      throw err;
    }
    this.guard(tcp, TCP_GUARDED, (name) => this.release(`tcp:${name}`));
    this.guard(udp, UDP_GUARDED, (name) => this.release(`udp:${name}`));
  }

  /**
   * Hands the call's audio to the pump, or returns null (and changes nothing) when it cannot:
   * the sockets are not as expected, Node still holds bytes to write or ws bytes read for this
   * connection, or the leg's formats need converting.
   */
  static attach(native: NativePump, ws: WebSocket, socket: TcpSocket, leg: PumpLeg, o: PumpedAudioOptions, onReleased: (state: PumpedAudioState) => void): PumpedAudio | null {
    if ((socket as { encrypted?: boolean }).encrypted) return null;
    const tcp = tcpHandle(socket);
    const udp = udpHandle(leg.socket);
    if (!tcp || !udp) return null;
    if (socket.writableLength !== 0 || (tcp.writeQueueSize as number) !== 0) return null;
    const receiver = (ws as unknown as { _receiver?: { _bufferedBytes?: number } })._receiver;
    if ((receiver?._bufferedBytes ?? 0) !== 0) return null;
    const listeners = socket.listeners('data');
    if (listeners.length !== 1) return null;
    if (!Number.isInteger(o.bytesPerSample) || o.bytesPerSample < 1) return null;
    return new PumpedAudio(native, socket, tcp, udp, leg, listeners[0] as (chunk: Buffer) => void, o, onReleased);
  }

  /** Sends a heartbeat ping; false when no pong came since the last one (the connection is dead). */
  heartbeat(): boolean {
    return !this.released && this.native.ping(this.id);
  }

  /**
   * Takes both sockets back from the pump (idempotent): Node reads them again (but the one being
   * closed, or whose read Node is starting itself: `trigger`), and ws gets the bytes the pump read
   * but did not handle, before anything Node reads next.
   */
  release(trigger: string | null = null): void {
    if (this.released) return;
    this.released = true;
    const state = this.native.detach(this.id);
    this.unguard(this.tcp, TCP_GUARDED);
    this.unguard(this.udp, UDP_GUARDED);
    const rtp = this.leg.rtp;
    if (state !== null && rtp !== null) this.leg.resume({ payloadType: rtp.payloadType, seq: state.rtpSeq, timestamp: state.rtpTimestamp, ssrc: rtp.ssrc, first: state.rtpFirst });
    if (state !== null) this.onReleased({ seq: state.seq, timestamp: state.timestamp, marker: state.marker, tokens: state.tokens, alive: state.alive });
    if (trigger !== 'udp:close' && trigger !== 'udp:recvStart') {
      try {
        (this.udp.recvStart as Method).call(this.udp);
      } catch {
        // the leg's socket is closing
      }
    }
    if (trigger === 'tcp:close' || this.socket.destroyed) return;
    const rest = state?.rest;
    // after this turn's code (we may be inside a write), before any new bytes: those come from a later phase
    if (rest) process.nextTick(() => this.wsOnData.call(this.socket, rest));
    if (trigger !== 'tcp:readStart' && (this.socket as unknown as { _handle?: unknown })._handle === this.tcp) (this.tcp.readStart as Method).call(this.tcp);
  }

  /** Own properties over the handle's prototype methods: each takes the socket back, then goes on. */
  private guard(handle: Handle, names: readonly string[], release: (name: string) => void): void {
    for (const name of names) {
      const original = handle[name];
      if (typeof original !== 'function') continue;
      handle[name] = function (this: unknown, ...args: unknown[]): unknown {
        release(name);
        return (original as Method).apply(handle, args);
      };
    }
  }

  private unguard(handle: Handle, names: readonly string[]): void {
    for (const name of names) {
      if (Object.prototype.hasOwnProperty.call(handle, name)) delete handle[name];
    }
  }
}
