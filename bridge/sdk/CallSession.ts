/**
 * One call of a terminal, SDK side: its control events, and its audio connection (bound with the
 * token the bridge issued). sendAudio() takes one 20 ms payload in the call's codec; 'audio'
 * delivers each payload received (a view valid during the callback).
 */
import { codecByName, type AudioCodec } from '../protocol/codecs.ts';
import { FLAG_KEYFRAME, FRAME_HEADER_BYTES, FRAME_TYPE_KEYFRAME_REQUEST, STREAM_OWN, frameTimestamp, writeFrameHeader, writeKeyframeRequest } from '../protocol/frame.ts';
import { videoCodecByName, type VideoCodec } from '../protocol/videoCodecs.ts';
import type { HangupReason } from '../protocol/messages.ts';
import { Emitter } from './Emitter.ts';
import { TerminalError } from './TerminalError.ts';
import type { WebSocketLike, WebSocketFactory } from './TerminalClient.ts';

export interface HangupInfo {
  reason: HangupReason | 'connection_lost';
  cause?: number;
  message?: string;
}

export type CallSessionEvents = {
  ringing: [];
  answered: [];
  hangup: [HangupInfo];
  audio: [Uint8Array];
  /** a DTMF digit from the PBX's side */
  dtmf: [string];
  /** one whole video frame (H.264 access unit in Annex B form, or a VP8 frame), 90 kHz timestamp */
  video: [Uint8Array, boolean, number];
  /** the far side asks this terminal for a keyframe */
  keyframeRequest: [];
  /** a media connection dropped mid-call (the client binds it again with a fresh token) */
  mediaDropped: ['audio' | 'video'];
  error: [TerminalError];
};

export class CallSession extends Emitter<CallSessionEvents> {
  readonly id: string;
  readonly to: string;
  readonly codec: AudioCodec;
  state: 'calling' | 'ringing' | 'answered' | 'ended' = 'calling';
  /** frames received / sent */
  received = 0;
  sent = 0;
  private audio: WebSocketLike | null = null;
  private videoWs: WebSocketLike | null = null;
  /** the agreed video codec, when the call has video */
  videoCodec: VideoCodec | null = null;
  /** video frames received / sent */
  videoReceived = 0;
  videoSent = 0;
  private vSeq = 0;
  private audioStream = STREAM_OWN;
  private videoStream = STREAM_OWN;
  /** media rides on the terminal's control connection */
  inline = false;
  private seq = 0;
  private timestamp = 0;
  private frame: Uint8Array;
  private readonly hangupRequest: () => void;
  private readonly dtmfRequest: (digits: string) => void;
  /** DTMF digits received so far */
  digits = '';
  private endInfo: HangupInfo | null = null;

  constructor(id: string, to: string, codecName: string, hangupRequest: () => void, dtmfRequest: (digits: string) => void) {
    super();
    this.id = id;
    this.to = to;
    const codec = codecByName(codecName);
    if (!codec) throw new TerminalError('CODEC_UNSUPPORTED', `the bridge chose ${codecName}, unknown to this SDK`);
    this.codec = codec;
    this.frame = new Uint8Array(FRAME_HEADER_BYTES + codec.frameBytes);
    this.hangupRequest = hangupRequest;
    this.dtmfRequest = dtmfRequest;
  }

  /** Sends DTMF digits (0-9 * # A-D) into the call. */
  sendDtmf(digits: string): void {
    if (this.state === 'answered') this.dtmfRequest(digits);
  }

  /** @internal */
  receiveDtmf(digit: string): void {
    this.digits += digit;
    this.emit('dtmf', digit);
  }

  /** Opens a media connection of `kind` and binds it with the token; resolves once bound. */
  private bindMedia(factory: WebSocketFactory, url: string, number: string, kind: 'audio' | 'video' | 'content', token: string, onBinary: (data: unknown) => void, timeoutMs: number): Promise<WebSocketLike> {
    const ws = factory(url);
    ws.binaryType = 'arraybuffer';
    let bound = false;
    return new Promise<WebSocketLike>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new TerminalError('TIMEOUT', `the bridge did not answer the ${kind} bind in time`));
        ws.close();
      }, timeoutMs);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'bind', v: 1, kind, number, callId: this.id, token }));
      ws.onmessage = (ev) => {
        if (typeof ev.data === 'string') {
          const msg = JSON.parse(ev.data) as { type?: string };
          if (msg.type === 'bound') {
            clearTimeout(timer);
            bound = true;
            ws.onmessage = (e) => onBinary(e.data);
            resolve(ws);
          }
        }
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (kind === 'audio' && this.audio === ws) this.audio = null;
        if (kind !== 'audio' && this.videoWs === ws) this.videoWs = null;
        const err = TerminalError.fromClose(ev.code, ev.reason);
        reject(err);
        if (this.state === 'ended' || ev.code === 1000) return;
        // a connection that was up and dropped may be bound again; refusals are errors
        if (bound && ev.code === 1006 && kind !== 'content') this.emit('mediaDropped', kind === 'audio' ? 'audio' : 'video');
        else this.emit('error', err);
      };
      ws.onerror = () => {
        /* onclose follows */
      };
    });
  }

  /** Opens the audio connection and binds it with the token. */
  async openAudio(factory: WebSocketFactory, url: string, number: string, token: string, timeoutMs = 10000): Promise<void> {
    this.audio = await this.bindMedia(factory, url, number, 'audio', token, (d) => this.onAudioMessage(d), timeoutMs);
  }

  /** Opens the video (or, for a content share, the content) connection and binds it with the token. */
  async openVideo(factory: WebSocketFactory, url: string, number: string, token: string, codecName: string, kind: 'video' | 'content' = 'video', timeoutMs = 10000): Promise<void> {
    const codec = videoCodecByName(codecName);
    if (!codec) throw new TerminalError('CODEC_UNSUPPORTED', `the bridge chose ${codecName}, unknown to this SDK`);
    this.videoCodec = codec;
    this.videoWs = await this.bindMedia(factory, url, number, kind, token, (d) => this.onVideoMessage(d), timeoutMs);
  }

  /** @internal media on the control connection: audio as stream `audio`, video as `video` */
  useInline(control: WebSocketLike, streams: { audio?: number; video?: number }, videoCodecName?: string): void {
    this.inline = true;
    if (streams.audio !== undefined) {
      this.audio = control;
      this.audioStream = streams.audio;
    }
    if (streams.video !== undefined && videoCodecName) {
      const codec = videoCodecByName(videoCodecName);
      if (!codec) throw new TerminalError('CODEC_UNSUPPORTED', `the bridge chose ${videoCodecName}, unknown to this SDK`);
      this.videoCodec = codec;
      this.videoWs = control;
      this.videoStream = streams.video;
    }
  }

  /** @internal a binary frame from the control connection for this inline call */
  receiveInline(data: ArrayBuffer, stream: number): void {
    if (stream === this.audioStream && this.audio) this.onAudioMessage(data);
    else if (stream === this.videoStream && this.videoWs) this.onVideoMessage(data);
  }

  private onVideoMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer) || data.byteLength < FRAME_HEADER_BYTES) return;
    const bytes = new Uint8Array(data);
    if ((bytes[0]! & 0x0f) === FRAME_TYPE_KEYFRAME_REQUEST) {
      this.emit('keyframeRequest');
      return;
    }
    if (data.byteLength === FRAME_HEADER_BYTES) return;
    this.videoReceived++;
    this.emit('video', bytes.subarray(FRAME_HEADER_BYTES), (bytes[3]! & FLAG_KEYFRAME) !== 0, frameTimestamp(bytes));
  }

  /** Sends one whole video frame; `timestamp` at 90 kHz. */
  sendVideo(frame: Uint8Array, keyframe: boolean, timestamp: number): void {
    const ws = this.videoWs;
    if (!ws || ws.readyState !== 1 || this.state === 'ended' || !this.videoCodec) return;
    const out = new Uint8Array(FRAME_HEADER_BYTES + frame.length);
    writeFrameHeader(out, this.videoStream, this.videoCodec.id, keyframe ? FLAG_KEYFRAME : 0, this.vSeq, timestamp);
    out.set(frame, FRAME_HEADER_BYTES);
    this.vSeq = (this.vSeq + 1) & 0xffff;
    this.videoSent++;
    ws.send(out);
  }

  /** Asks the far side for a keyframe (a picture to start decoding from). */
  requestKeyframe(): void {
    const ws = this.videoWs;
    if (!ws || ws.readyState !== 1 || !this.videoCodec) return;
    const req = new Uint8Array(FRAME_HEADER_BYTES);
    writeKeyframeRequest(req, this.videoStream, this.videoCodec.id);
    ws.send(req);
  }

  private onAudioMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer) || data.byteLength <= FRAME_HEADER_BYTES) return;
    this.received++;
    this.emit('audio', new Uint8Array(data, FRAME_HEADER_BYTES));
  }

  /** Sends one payload (normally 20 ms) in the call's codec. */
  sendAudio(payload: Uint8Array): void {
    const ws = this.audio;
    if (!ws || ws.readyState !== 1 || this.state === 'ended') return;
    const need = FRAME_HEADER_BYTES + payload.length;
    if (this.frame.length < need) this.frame = new Uint8Array(need);
    const frame = this.frame.length === need ? this.frame : this.frame.subarray(0, need);
    writeFrameHeader(frame, this.audioStream, this.codec.id, this.sent === 0 ? 1 : 0, this.seq, this.timestamp);
    frame.set(payload, FRAME_HEADER_BYTES);
    this.seq = (this.seq + 1) & 0xffff;
    this.timestamp = (this.timestamp + payload.length / this.codec.bytesPerSample) >>> 0;
    this.sent++;
    ws.send(frame);
  }

  /** Raw access for tests: sends bytes as they are on the audio connection. */
  sendRaw(data: Uint8Array | string): void {
    this.audio?.send(data);
  }

  /** Asks the bridge to end the call; resolves when it has. */
  hangup(): Promise<HangupInfo> {
    if (this.state !== 'ended') this.hangupRequest();
    return this.ended();
  }

  ended(): Promise<HangupInfo> {
    if (this.endInfo) return Promise.resolve(this.endInfo);
    return new Promise((resolve) => this.once('hangup', resolve));
  }

  answered(): Promise<void> {
    if (this.state === 'answered') return Promise.resolve();
    if (this.state === 'ended') return Promise.reject(new TerminalError('CALL_ENDED', `call ended: ${this.endInfo?.reason}`));
    return new Promise((resolve, reject) => {
      const onAnswer = (): void => {
        this.off('hangup', onHangup);
        resolve();
      };
      const onHangup = (info: HangupInfo): void => {
        this.off('answered', onAnswer);
        reject(new TerminalError('CALL_ENDED', `call ended before answer: ${info.reason}${info.message ? ` (${info.message})` : ''}`));
      };
      this.once('answered', onAnswer);
      this.once('hangup', onHangup);
    });
  }

  /** @internal control events, from TerminalClient */
  handle(type: 'ringing' | 'answered'): void {
    if (this.state === 'ended' || this.state === type || (type === 'ringing' && this.state === 'answered')) return;
    this.state = type;
    this.emit(type);
  }

  /** why the call ended, once it has */
  get hangupInfo(): HangupInfo | null {
    return this.endInfo;
  }

  /** @internal */
  end(info: HangupInfo): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.endInfo = info;
    if (!this.inline) for (const ws of [this.audio, this.videoWs]) if (ws && ws.readyState <= 1) ws.close(1000);
    this.audio = null;
    this.videoWs = null;
    this.emit('hangup', info);
  }
}
