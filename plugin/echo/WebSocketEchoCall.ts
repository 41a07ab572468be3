/**
 * BENCHMARK STAND-IN, not a media server. A call on the echo stand-in whose audio goes out over a
 * WebSocket media connection to an echo peer and comes back from it (`npm run bench -- --ws-echo`,
 * with bench/wsEchoPeer.ts as the peer), as Asterisk's default transport (chan_websocket) carries a
 * call's audio: the leg is Asterisk's own WebSocketMediaLeg, so the bridge relays it, on the native
 * pump when built, exactly as for Asterisk. Answered once the peer's MEDIA_START has arrived.
 */
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { CallEnd, PumpLeg } from '../driver.ts';
import { WebSocketMediaLeg } from '../asterisk/WebSocketMediaLeg.ts';
import { EchoCall } from './EchoCall.ts';

export class WebSocketEchoCall extends EchoCall {
  private readonly leg: WebSocketMediaLeg;

  /** `peerUrl`: the peer's base URL (ws://host:port); the leg connects to <peerUrl>/media/<call id> */
  constructor(id: string, format: AudioCodec, peerUrl: string, forget: (call: EchoCall) => void) {
    super(id, format, forget, false);
    this.leg = new WebSocketMediaLeg(`${peerUrl}/media/${encodeURIComponent(id)}`, 5000);
    this.leg.onAudio = (payload) => {
      const back = this.onAudio;
      if (back !== null) back(payload);
    };
    this.leg.once('open', () => this.answer());
    this.leg.once('close', (why) => this.end({ reason: 'pbx_lost', message: `the echo peer's media socket: ${why}` }));
  }

  /** Out over the media socket; the peer's echo comes back in the leg's onAudio. */
  override sendAudio(payload: Buffer): void {
    if (!this.done) this.leg.send(payload);
  }

  /** The leg for the native media pump, as AsteriskCall gives it for chan_websocket. */
  pumpLeg(): PumpLeg | null {
    return this.done ? null : this.leg.pumpLeg(this.format.bytesPerSample);
  }

  override end(end: CallEnd): void {
    if (this.done) return;
    super.end(end);
    // after: the leg's 'close' then finds the call ended and changes nothing
    this.leg.close();
  }
}
