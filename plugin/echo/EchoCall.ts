/**
 * BENCHMARK STAND-IN, not a media server. One call on the echo stand-in (EchoDriver): answered at
 * once, and every audio payload the bridge sends towards the "media server" comes straight back
 * to the bridge as if the media server had sent it, synchronously, with no copy, no timer and no
 * socket in between. What a benchmark measures through it is the bridge's own cost.
 */
import { EventEmitter } from 'node:events';
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { HangupReason } from '../../bridge/protocol/messages.ts';
import type { CallEnd, DriverCall, DriverCallEvents } from '../driver.ts';

export class EchoCall extends EventEmitter<DriverCallEvents> implements DriverCall {
  readonly id: string;
  readonly format: AudioCodec;
  readonly videoFormat = null;
  onAudio: ((payload: Buffer) => void) | null = null;
  protected done = false;
  private readonly forget: (call: EchoCall) => void;

  /** `answerAtOnce` false: a subclass calls answer() when its leg is ready */
  constructor(id: string, format: AudioCodec, forget: (call: EchoCall) => void, answerAtOnce = true) {
    super();
    this.id = id;
    this.format = format;
    this.forget = forget;
    // the bridge wires its listeners right after placeCall returns: answer on the next turn
    if (answerAtOnce) setImmediate(() => this.answer());
  }

  protected answer(): void {
    if (this.done) return;
    this.emit('ringing');
    this.emit('answered');
  }

  get ended(): boolean {
    return this.done;
  }

  /** The echo: what would go to the media server comes back from it, in the leg's format. */
  sendAudio(payload: Buffer): void {
    const back = this.onAudio;
    if (back !== null && !this.done) back(payload);
  }

  sendDtmf(_digits: string): Promise<void> {
    return Promise.resolve();
  }

  hangup(reason: HangupReason = 'normal'): Promise<void> {
    this.end({ reason });
    return Promise.resolve();
  }

  /** Ends the call (from either side); `ended` is emitted exactly once. */
  end(end: CallEnd): void {
    if (this.done) return;
    this.done = true;
    this.onAudio = null;
    this.forget(this);
    this.emit('ended', end);
  }
}
