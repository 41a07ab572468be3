/**
 * A terminal's call as the bridge sees it: the driver's leg on the media server, the terminal's
 * audio connection, and the conversion between the codec the terminal agreed and the leg's
 * format. The media path here is binary only: no JSON, no logging, one pooled buffer per frame
 * towards the terminal (the socket may hold it), none towards the media server. On a dedicated
 * audio connection, frames from the terminal are read by MediaFrameReader (no 'message' event, no
 * Buffer per frame but the payload's view), and frames to the terminal are written whole (WebSocket
 * header, confmux header, payload in one buffer) in one socket write (wsFrames.ts).
 */
import type { Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import type WebSocket from 'ws';
import { logWith, type Logger } from '../logger.ts';
import type { AudioCodec } from '../protocol/codecs.ts';
import { FLAG_KEYFRAME, FRAME_HEADER_BYTES, FRAME_KEYFRAME_REQUEST, FRAME_OK, STREAM_AUDIO, STREAM_CONTENT, STREAM_OWN, STREAM_VIDEO, checkFrame, checkFrameAt, frameTimestamp, writeFrameHeader, writeKeyframeRequest } from '../protocol/frame.ts';
import type { VideoCodec } from '../protocol/videoCodecs.ts';
import type { HangupReason } from '../protocol/messages.ts';
import { AudioConverter } from '../media/AudioConverter.ts';
import { ConfmuxError, closeReason, type ErrorCode } from '../errors.ts';
import type { CallEnd, DriverCall } from '../../plugin/driver.ts';
import { TokenBucket } from './TokenBucket.ts';
import { MediaFrameReader } from './MediaFrameReader.ts';
import type { MediaPump } from './MediaPump.ts';
import { pumpConversion, type PumpedAudio } from './PumpedAudio.ts';
import type { Tracked } from './BridgeServer.ts';
import { mediaStats } from './metrics.ts';
import { rawSocket, wsHeaderBytes, writeWsBinaryHeader } from './wsFrames.ts';
import type { VideoParticipant, VideoRooms } from './VideoRooms.ts';

export interface CallLimits {
  maxAudioFrameBytes: number;
  mediaTokenTtlMs: number;
  resumeWindowMs: number;
  maxVideoFrameBytes: number;
  videoFramesPerSecond: number;
  videoSendHighWaterBytes: number;
  audioFramesPerSecond: number;
  sendHighWaterBytes: number;
}

export interface CallEvents {
  ringing: [];
  answered: [];
  dtmf: [string];
  ended: [CallEnd];
  /** a media connection was refused or closed for bad input */
  refused: [ErrorCode];
}

/** tries to put a bound audio connection on the pump while its leg gets ready (5 s) */
const PUMP_RETRIES = 20;
/**
 * A media connection is closed (RATE_LIMITED) once the rate limit has dropped this many seconds'
 * worth of its frames beyond what the same rate refills: a terminal catching up after a stall of
 * a few seconds is not; one sending many times its rate for seconds is (docs/configuration.md).
 */
const FLOOD_SECONDS = 10;

/**
 * The terminal a call belongs to. The call tells it of each event directly, before the call's own
 * listeners: one reference per call where a listener per event (five closures, a once-wrapper and
 * the emitter's table) used to be, for the whole call.
 */
export interface CallOwner {
  /** the terminal's number (in the call's log lines) */
  readonly number: string;
  callRinging(call: Call): void;
  callAnswered(call: Call): void;
  callDtmf(call: Call, digit: string): void;
  callRefused(call: Call, code: ErrorCode): void;
  callEnded(call: Call, end: CallEnd): void;
}

export class Call extends EventEmitter<CallEvents> implements VideoParticipant {
  readonly id: string;
  readonly to: string;
  readonly codec: AudioCodec;
  private readonly leg: DriverCall;
  /** the bridge's logger; lines about this call carry { terminal, callId } */
  private readonly logger: Logger;
  private readonly owner: CallOwner;
  private readonly limits: CallLimits;
  private readonly up: AudioConverter;
  private readonly down: AudioConverter;
  private audio: WebSocket | null = null;
  /** the TCP socket under `audio`, written to directly (null: through ws) */
  private audioSocket: Socket | null = null;
  private video: WebSocket | null = null;
  /** the agreed video codec, or null for an audio-only call */
  readonly videoCodec: VideoCodec | null;
  private vSeq = 0;
  private lastKeyframeAsk = 0;
  private lastTerminalAsk = 0;
  private readonly videoRooms: VideoRooms | null;
  /** video frames dropped for a slow terminal */
  videoDropped = 0;
  private audioBucket: TokenBucket;
  /** video frames from the terminal (a call with video only) */
  private readonly videoBucket: TokenBucket | null;
  /**
   * Frames the rate limits dropped, refilled at the same rate, up to FLOOD_SECONDS of it: a terminal
   * that overruns them sends far more than its call's rate for long (a catch-up after a stall does
   * not), and is closed with RATE_LIMITED rather than left to take the relay's time from the others.
   */
  private readonly audioFlood: TokenBucket;
  private readonly videoFlood: TokenBucket | null;
  private seq = 0;
  private timestamp = 0;
  private marker = true;
  private ended = false;
  private answered = false;
  /** media on the terminal's control connection (stream ids 1-3) instead of its own connections */
  private inline = false;
  private audioStream = STREAM_OWN;
  private videoStream = STREAM_OWN;

  /** a presentation content leg: it only sends (the room's video is not passed back to it) */
  readonly contentOnly: boolean;

  /** the native media pump, when this process has one */
  private readonly pump: MediaPump | null;
  /** the audio while the pump relays it */
  private pumped: PumpedAudio | null = null;
  /** the audio connection's fast reader while JavaScript relays it */
  private reader: MediaFrameReader | null = null;
  private pumpRetry: NodeJS.Timeout | null = null;

  constructor(id: string, to: string, codec: AudioCodec, leg: DriverCall, limits: CallLimits, log: Logger, owner: CallOwner, videoRooms: VideoRooms | null = null, contentOnly = false, pump: MediaPump | null = null) {
    super();
    this.pump = pump;
    this.contentOnly = contentOnly;
    this.videoRooms = videoRooms;
    this.id = id;
    this.to = to;
    this.codec = codec;
    this.leg = leg;
    this.limits = limits;
    this.logger = log;
    this.owner = owner;
    this.up = new AudioConverter(codec, leg.format);
    this.down = new AudioConverter(leg.format, codec);
    this.audioBucket = new TokenBucket(limits.audioFramesPerSecond, Math.ceil(limits.audioFramesPerSecond / 2));
    this.audioFlood = new TokenBucket(limits.audioFramesPerSecond, limits.audioFramesPerSecond * FLOOD_SECONDS);
    leg.on('ringing', () => {
      this.owner.callRinging(this);
      this.emit('ringing');
    });
    leg.on('answered', () => {
      this.answered = true;
      this.owner.callAnswered(this);
      this.emit('answered');
      this.watchKeyframes();
    });
    leg.on('dtmf', (digit) => {
      this.owner.callDtmf(this, digit);
      this.emit('dtmf', digit);
    });
    // onEnded runs once whatever the leg emits ('on' rather than 'once': no wrapper kept per call)
    leg.on('ended', (end) => this.onEnded(end));
    leg.onAudio = (payload) => this.toTerminal(payload);
    this.videoCodec = leg.videoFormat ?? null;
    this.videoBucket = this.videoCodec ? new TokenBucket(limits.videoFramesPerSecond, Math.ceil(limits.videoFramesPerSecond / 2)) : null;
    this.videoFlood = this.videoCodec ? new TokenBucket(limits.videoFramesPerSecond, limits.videoFramesPerSecond * FLOOD_SECONDS) : null;
    // a call whose audio never binds (the terminal gave up half-way) must not stay up for ever
    if (!contentOnly) {
      this.unboundTimer = setTimeout(() => {
        this.unboundTimer = null;
        if (!this.audio && !this.ended && !this.inline) void this.hangup('media_lost');
      }, limits.mediaTokenTtlMs);
      this.unboundTimer.unref();
    }
    if (this.videoCodec) {
      leg.onVideo = (frame, ts, key) => this.videoToTerminal(frame, ts, key);
      leg.on('keyframeRequest', () => this.askTerminalForKeyframe());
      this.videoRooms?.join(this);
    }
  }

  /** the room this call is in, for keyframe requests between its video participants */
  get room(): string {
    return this.to;
  }

  /**
   * Carries this call's media on the terminal's control connection: frames with stream id 1
   * (audio), 2 (video) or 3 (content, for a content leg). The terminal routes incoming frames here
   * with receiveInline(); the control connection is not this call's to close.
   */
  attachInline(control: WebSocket): void {
    this.inline = true;
    this.audio = this.contentOnly ? null : control;
    this.audioSocket = this.audio ? rawSocket(this.audio) : null;
    this.audioStream = STREAM_AUDIO;
    if (this.videoCodec) {
      this.video = control;
      this.videoStream = this.contentOnly ? STREAM_CONTENT : STREAM_VIDEO;
      if (this.answered) this.askPbxForKeyframe();
    }
  }

  /** A binary frame from the control connection for this (inline) call. */
  receiveInline(ws: WebSocket, data: Buffer): void {
    if (data.length > 1 && data[1] === STREAM_AUDIO && !this.contentOnly) return this.fromTerminal(ws, data, true);
    if (this.videoCodec) return this.videoFromTerminal(ws, data, true);
    this.refuse(ws, 'BAD_FRAME', `stream id ${data[1]} is not carried by this call`);
  }

  /** Binds the terminal's video connection (its token already checked). */
  attachVideo(ws: WebSocket): void {
    if (this.ended || !this.videoCodec) {
      ws.close(1000, 'call ended');
      return;
    }
    if (this.video) this.video.close(1000, 'replaced');
    this.video = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => this.videoFromTerminal(ws, data, isBinary));
    ws.once('close', () => {
      if (this.video === ws) this.video = null;
    });
    // a viewer that just arrived needs a picture it can start decoding from (once in the room)
    this.watchKeyframes();
  }

  private keyframeDelivered = false;
  private unboundTimer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private silenceTimer: NodeJS.Timeout | null = null;

  /** answered (media flows), or still being connected */
  get state(): 'answered' | 'calling' {
    return this.answered ? 'answered' : 'calling';
  }

  /**
   * The terminal's audio went away mid-call (a dropped connection): keep the call for the resume
   * window, feeding the PBX silence, and end it only if the audio does not come back in time.
   */
  private audioLost(): void {
    if (this.ended) return;
    if (this.limits.resumeWindowMs <= 0) {
      void this.hangup('media_lost');
      return;
    }
    if (this.graceTimer) return;
    const silence = Buffer.alloc(this.leg.format.frameBytes, this.leg.format.name === 'PCMU/8000' ? 0xff : 0);
    this.silenceTimer = setInterval(() => this.leg.sendAudio(silence), 20);
    this.graceTimer = setTimeout(() => {
      this.stopGrace();
      if (!this.ended && !this.audio) void this.hangup('media_lost');
    }, this.limits.resumeWindowMs);
    logWith(this.logger, 'info', { terminal: this.owner.number, callId: this.id }, 'audio connection lost: waiting for the terminal to come back', { windowMs: this.limits.resumeWindowMs });
  }

  private stopGrace(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    this.graceTimer = this.silenceTimer = null;
  }
  private watching = false;

  /**
   * Once the call is answered and its viewer connected (whichever comes last): ask for a picture
   * (ConfBridge needs a moment to add the viewer), and again while none has come, since a sender
   * may not have been ready the first time.
   */
  private watchKeyframes(): void {
    if (this.watching || !this.answered || !this.video || this.contentOnly) return;
    this.watching = true;
    for (const ms of [300, 1200, 2500, 5000]) setTimeout(() => this.keyframeIfStillNeeded(), ms).unref();
  }

  private keyframeIfStillNeeded(): void {
    if (!this.ended && this.video && !this.keyframeDelivered && !this.contentOnly) this.askPbxForKeyframe();
  }

  /** This call's viewer needs a picture: ask the media server, and the senders in the room here. */
  private askPbxForKeyframe(): void {
    const now = Date.now();
    if (now - this.lastKeyframeAsk < 500) return;
    this.lastKeyframeAsk = now;
    this.leg.requestKeyframe?.();
    this.videoRooms?.requestKeyframe(this);
  }

  askTerminalForKeyframe(): void {
    const ws = this.video;
    if (ws === null || !this.videoCodec) return;
    const now = Date.now();
    if (now - this.lastTerminalAsk < 300) return;
    this.lastTerminalAsk = now;
    const req = Buffer.alloc(FRAME_HEADER_BYTES);
    writeKeyframeRequest(req, this.videoStream, this.videoCodec.id);
    ws.send(req);
  }

  private videoFromTerminal(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    const codec = this.videoCodec!;
    if (!isBinary) return this.refuse(ws, 'BAD_FRAME', 'media connections carry binary frames only');
    if (data.length > this.limits.maxVideoFrameBytes) return this.refuse(ws, 'FRAME_TOO_LARGE', `video frame of ${data.length} bytes; the limit is ${this.limits.maxVideoFrameBytes}`);
    const check = checkFrame(data);
    if (check === FRAME_KEYFRAME_REQUEST) return this.askPbxForKeyframe();
    if (check !== FRAME_OK) return this.refuse(ws, 'BAD_FRAME', 'bad frame header (version 1, type media or keyframe request)');
    if (data[2] !== codec.id) return this.refuse(ws, 'BAD_FRAME', `codec id ${data[2]} is not the call's video codec ${codec.id} (${codec.name})`);
    if (!this.videoBucket!.take()) {
      mediaStats.droppedRateLimit++;
      if (!this.videoFlood!.take()) return this.refuse(ws, 'RATE_LIMITED', `video frames far above limits.videoFramesPerSecond (${this.limits.videoFramesPerSecond}) for long`);
      return;
    }
    mediaStats.videoFromTerminals++;
    this.leg.sendVideo?.(data.subarray(FRAME_HEADER_BYTES), frameTimestamp(data), (data[3]! & FLAG_KEYFRAME) !== 0);
  }

  private videoToTerminal(frame: Buffer, timestamp: number, keyframe: boolean): void {
    const ws = this.video;
    if (ws === null || this.contentOnly) return;
    if (ws.bufferedAmount > this.limits.videoSendHighWaterBytes) {
      // a slow viewer: drop, and ask for a fresh picture for when it has caught up
      this.videoDropped++;
      mediaStats.droppedSlowTerminal++;
      this.askPbxForKeyframe();
      return;
    }
    const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + frame.length);
    if (keyframe) this.keyframeDelivered = true;
    writeFrameHeader(out, this.videoStream, this.videoCodec!.id, keyframe ? FLAG_KEYFRAME : 0, this.vSeq, timestamp);
    frame.copy(out, FRAME_HEADER_BYTES);
    this.vSeq = (this.vSeq + 1) & 0xffff;
    mediaStats.videoToTerminals++;
    ws.send(out);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Binds the terminal's audio connection (its token already checked). */
  attachAudio(ws: Tracked): void {
    if (this.ended) {
      ws.close(1000, 'call ended');
      return;
    }
    if (this.audio) this.audio.close(1000, 'replaced');
    this.audio = ws;
    const socket = rawSocket(ws);
    this.audioSocket = socket;
    this.stopGrace();
    if (this.unboundTimer) clearTimeout(this.unboundTimer);
    this.unboundTimer = null;
    // frames the fast reader does not take (or all of them, without it) arrive as messages
    ws.on('message', (data: Buffer, isBinary: boolean) => this.fromTerminal(ws, data, isBinary));
    if (socket && !this.pumpAudio(ws, socket)) {
      this.reader = this.readFast(ws, socket);
      // the leg may not carry media yet (chan_websocket before MEDIA_START): try again shortly
      if (this.pumpable()) this.retryPump(ws, socket, PUMP_RETRIES);
    }
    // 'close' comes once ('on' rather than 'once': no wrapper kept per connection)
    ws.on('close', (code: number) => {
      if (this.audio !== ws) return;
      this.audio = null;
      this.audioSocket = null;
      if (this.ended) return;
      // the terminal closing its audio on purpose, or bad input, ends the call; a dropped
      // connection may come back
      if (code === 1006 && !this.refused) this.audioLost();
      else void this.hangup('media_lost');
    });
  }

  /**
   * Hands the audio to the native media pump when the process has one and the leg offers itself
   * (a UDP leg, or chan_websocket's once it carries media); true when the pump took it. Frames the
   * pump hands back (and all frames once it let go) come to ws's 'message' events above.
   */
  private pumpAudio(ws: Tracked, socket: Socket): boolean {
    const pump = this.pump;
    if (pump === null || !this.pumpable()) return false;
    const leg = this.leg.pumpLeg?.() ?? null;
    if (leg === null) return false;
    const convert = pumpConversion(this.codec, this.leg.format);
    if (convert === null) return false;
    const pumped = pump.attach(
      ws,
      socket,
      leg,
      {
        codecId: this.codec.id,
        stream: this.audioStream,
        bytesPerSample: this.codec.bytesPerSample,
        sampleRate: this.codec.sampleRate,
        legSampleRate: this.leg.format.sampleRate,
        seq: this.seq,
        timestamp: this.timestamp,
        marker: this.marker,
        maxFrameBytes: this.limits.maxAudioFrameBytes,
        framesPerSecond: this.limits.audioFramesPerSecond,
        burst: this.audioBucket.burstSize,
        tokens: this.audioBucket.level,
        floodBurst: this.audioFlood.burstSize,
        floodTokens: this.audioFlood.level,
        highWaterBytes: this.limits.sendHighWaterBytes,
        alive: ws.confmuxAlive !== false,
        convert,
        upLast: this.up.carried,
        downLast: this.down.carried,
      },
      (state) => {
        this.up.carried = state.upLast;
        this.down.carried = state.downLast;
        this.seq = state.seq;
        this.timestamp = state.timestamp;
        this.marker = state.marker;
        this.audioBucket.setLevel(state.tokens);
        this.audioFlood.setLevel(state.floodTokens);
        ws.confmuxAlive = state.alive;
        delete ws.confmuxHeartbeat;
        if (this.pumped === pumped) this.pumped = null;
        // handed back while the call goes on (a text from the media server such as MEDIA_XOFF, a
        // write from JavaScript): the pump takes the audio again once it can. A connection being
        // closed is gone by the first retry, which then stops.
        if (!this.ended && this.audio === ws) this.retryPump(ws, socket, PUMP_RETRIES);
      },
    );
    if (pumped === null) return false;
    this.pumped = pumped;
    ws.confmuxHeartbeat = () => pumped.heartbeat();
    return true;
  }

  /** whether this call's audio could ever go on the pump (a process with one, audio only, a conversion the pump makes) */
  private pumpable(): boolean {
    if (this.pump === null || this.inline || this.video !== null || this.videoCodec !== null) return false;
    return pumpConversion(this.codec, this.leg.format) !== null;
  }

  private readFast(ws: WebSocket, socket: Socket): MediaFrameReader {
    return new MediaFrameReader(socket, ws, (buf, start, end) => this.audioFromTerminal(ws, buf, start, end), this.limits.maxAudioFrameBytes);
  }

  /** Tries the pump again every 250 ms, `left` times, while this audio connection is bound. */
  private retryPump(ws: Tracked, socket: Socket, left: number): void {
    if (this.pumpRetry) clearTimeout(this.pumpRetry);
    this.pumpRetry = null;
    if (left <= 0) return;
    this.pumpRetry = setTimeout(() => {
      this.pumpRetry = null;
      if (this.ended || this.audio !== ws || this.pumped !== null || socket.destroyed) return;
      this.reader?.close();
      this.reader = null;
      if (this.pumpAudio(ws, socket)) return;
      this.reader = this.readFast(ws, socket);
      this.retryPump(ws, socket, left - 1);
    }, 250);
    this.pumpRetry.unref();
  }

  /** a media connection closed by the bridge for bad input: that ends the call, no resume */
  private refused = false;

  private refuse(ws: WebSocket, code: ErrorCode, message?: string): void {
    const err = new ConfmuxError(code, message);
    if (ws === this.audio) this.refused = true;
    this.owner.callRefused(this, code);
    this.emit('refused', code);
    ws.close(err.closeCode, closeReason(code, message));
  }

  /** A message from the terminal's audio connection (inline frames too) that the fast reader did not take. */
  private fromTerminal(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    if (!isBinary) return this.refuse(ws, 'BAD_FRAME', 'media connections carry binary frames only');
    this.audioFromTerminal(ws, data, 0, data.length);
  }

  /** Hot path: a frame from the terminal, at buf[start, end). */
  private audioFromTerminal(ws: WebSocket, buf: Buffer, start: number, end: number): void {
    const length = end - start;
    if (length > this.limits.maxAudioFrameBytes) return this.refuse(ws, 'FRAME_TOO_LARGE', `audio frame of ${length} bytes; the limit is ${this.limits.maxAudioFrameBytes}`);
    if (checkFrameAt(buf, start, end) !== FRAME_OK) return this.refuse(ws, 'BAD_FRAME', 'bad frame header (version 1, type media, payload after a 10-byte header)');
    if (buf[start + 2] !== this.codec.id) return this.refuse(ws, 'BAD_FRAME', `codec id ${buf[start + 2]} is not the call's codec ${this.codec.id} (${this.codec.name})`);
    if (!this.audioBucket.take()) {
      mediaStats.droppedRateLimit++;
      if (!this.audioFlood.take()) return this.refuse(ws, 'RATE_LIMITED', `audio frames far above limits.audioFramesPerSecond (${this.limits.audioFramesPerSecond}) for long`);
      return;
    }
    mediaStats.framesFromTerminals++;
    const payload = buf.subarray(start + FRAME_HEADER_BYTES, end);
    this.leg.sendAudio(this.up.isPassThrough ? payload : this.up.convert(payload));
  }

  /** Hot path: a payload from the media server. */
  private toTerminal(payload: Buffer): void {
    const ws = this.audio;
    if (ws === null) return;
    const socket = this.audioSocket;
    if ((socket !== null ? socket.writableLength : ws.bufferedAmount) > this.limits.sendHighWaterBytes) {
      mediaStats.droppedSlowTerminal++;
      return;
    }
    if (ws.readyState !== 1) return;
    const data = this.down.isPassThrough ? payload : this.down.convert(payload);
    const n = data.length;
    const size = FRAME_HEADER_BYTES + n;
    // one buffer: [WebSocket header] confmux header, payload
    const at = socket !== null ? wsHeaderBytes(size) : 0;
    const frame = Buffer.allocUnsafe(at + size);
    if (at !== 0) writeWsBinaryHeader(frame, size);
    writeFrameHeader(frame, this.audioStream, this.codec.id, this.marker ? 1 : 0, this.seq, this.timestamp, at);
    data.copy(frame, at + FRAME_HEADER_BYTES);
    this.marker = false;
    this.seq = (this.seq + 1) & 0xffff;
    this.timestamp = (this.timestamp + n / this.codec.bytesPerSample) >>> 0;
    mediaStats.framesToTerminals++;
    if (socket !== null) socket.write(frame);
    else ws.send(frame);
  }

  sendDtmf(digits: string): Promise<void> {
    return this.leg.sendDtmf(digits);
  }

  hangup(reason: HangupReason = 'normal'): Promise<void> {
    return this.leg.hangup(reason);
  }

  private onEnded(end: CallEnd): void {
    if (this.ended) return;
    this.ended = true;
    if (this.pumpRetry) clearTimeout(this.pumpRetry);
    this.pumped?.release();
    this.stopGrace();
    if (this.unboundTimer) clearTimeout(this.unboundTimer);
    this.unboundTimer = null;
    this.videoRooms?.leave(this);
    this.leg.onAudio = null;
    if (this.leg.onVideo !== undefined) this.leg.onVideo = null;
    const ws = this.audio;
    const vws = this.video;
    this.audio = null;
    this.video = null;
    if (!this.inline) {
      if (ws) ws.close(1000, `call ended: ${end.reason}`);
      if (vws) vws.close(1000, `call ended: ${end.reason}`);
    }
    logWith(this.logger, 'debug', { terminal: this.owner.number, callId: this.id }, 'call closed', { reason: end.reason });
    this.owner.callEnded(this, end);
    this.emit('ended', end);
  }
}
