/**
 * One call of a terminal, SDK side: its control events, and its audio connection (bound with the
 * token the bridge issued). sendAudio() takes one 20 ms payload in the call's codec; 'audio'
 * delivers each payload received (a view valid during the callback).
 */
import { codecByName, type AudioCodec } from '../protocol/codecs.ts';
import { FRAME_HEADER_BYTES, STREAM_OWN, writeFrameHeader } from '../protocol/frame.ts';
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

  /** Opens the audio connection and binds it with the token. */
  async openAudio(factory: WebSocketFactory, url: string, number: string, token: string): Promise<void> {
    const ws = factory(url);
    ws.binaryType = 'arraybuffer';
    this.audio = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'audio', number, callId: this.id, token }));
      ws.onmessage = (ev) => {
        if (typeof ev.data === 'string') {
          const msg = JSON.parse(ev.data) as { type?: string };
          if (msg.type === 'bound') {
            ws.onmessage = (e) => this.onAudioMessage(e.data);
            resolve();
          }
        }
      };
      ws.onclose = (ev) => {
        this.audio = null;
        const err = TerminalError.fromClose(ev.code, ev.reason);
        reject(err);
        if (this.state !== 'ended' && ev.code !== 1000) this.emit('error', err);
      };
      ws.onerror = () => {
        /* onclose follows */
      };
    });
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
    writeFrameHeader(frame, STREAM_OWN, this.codec.id, this.sent === 0 ? 1 : 0, this.seq, this.timestamp);
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
    if (this.state === 'ended') return;
    this.state = type;
    this.emit(type);
  }

  /** @internal */
  end(info: HangupInfo): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.endInfo = info;
    const ws = this.audio;
    this.audio = null;
    if (ws && ws.readyState <= 1) ws.close(1000);
    this.emit('hangup', info);
  }
}
