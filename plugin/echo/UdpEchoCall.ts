/**
 * BENCHMARK STAND-IN, not a media server. A call on the echo stand-in whose audio goes out over a
 * connected UDP socket to an echo peer and comes back from it (`npm run bench -- --udp-echo`, with
 * coturn's `turnutils_peer` as the peer), as the RTP leg to a media server does: one UDP send and one
 * receive per frame in the bridge, like coturn's relay to its peer. Answered once its socket is up.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { CallEnd, PumpLeg } from '../driver.ts';
import { EchoCall } from './EchoCall.ts';

export class UdpEchoCall extends EchoCall {
  private ready = false;
  private readonly socket: Socket;

  constructor(id: string, format: AudioCodec, peer: { host: string; port: number }, forget: (call: EchoCall) => void) {
    super(id, format, forget, false);
    this.socket = createSocket('udp4');
    this.socket.on('message', (msg: Buffer) => {
      const back = this.onAudio;
      if (back !== null) back(msg);
    });
    this.socket.on('error', () => undefined);
    this.socket.bind(0, '127.0.0.1', () => {
      this.socket.connect(peer.port, peer.host, () => {
        if (this.done) return;
        this.ready = true;
        this.answer();
      });
    });
  }

  /** Out over the socket; the peer's echo comes back in its 'message'. */
  override sendAudio(payload: Buffer): void {
    if (this.ready && !this.done) this.socket.send(payload);
  }

  /** The echo's leg for the native media pump: raw payloads on the connected socket. */
  pumpLeg(): PumpLeg | null {
    if (!this.ready || this.done) return null;
    return { kind: 'udp', socket: this.socket, remoteHost: '', remotePort: 0, expectPort: 0, bytesPerSample: this.format.bytesPerSample, maxPayload: 1400, rtp: null, resume: () => undefined };
  }

  override end(end: CallEnd): void {
    if (this.done) return;
    try {
      this.socket.close();
    } catch {
      // already closed
    }
    super.end(end);
  }
}
