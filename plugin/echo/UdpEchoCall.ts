/**
 * BENCHMARK STAND-IN, not a media server. A call on the echo stand-in whose audio goes out over a
 * connected UDP socket to an echo peer and comes back from it (`npm run bench -- --udp-echo`, with
 * coturn's `turnutils_peer` as the peer), as the RTP leg to a media server does: one UDP send and one
 * receive per frame in the bridge, like coturn's relay to its peer. Answered once its socket is up.
 */
import { createSocket, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { HangupReason } from '../../bridge/protocol/messages.ts';
import type { CallEnd, DriverCall, DriverCallEvents } from '../driver.ts';

export class UdpEchoCall extends EventEmitter<DriverCallEvents> implements DriverCall {
  readonly id: string;
  readonly format: AudioCodec;
  readonly videoFormat = null;
  onAudio: ((payload: Buffer) => void) | null = null;
  private done = false;
  private ready = false;
  private readonly socket: Socket;
  private readonly forget: (call: UdpEchoCall) => void;

  constructor(id: string, format: AudioCodec, peer: { host: string; port: number }, forget: (call: UdpEchoCall) => void) {
    super();
    this.id = id;
    this.format = format;
    this.forget = forget;
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
        this.emit('ringing');
        this.emit('answered');
      });
    });
  }

  get ended(): boolean {
    return this.done;
  }

  sendAudio(payload: Buffer): void {
    if (this.ready && !this.done) this.socket.send(payload);
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
    try {
      this.socket.close();
    } catch {
      // already closed
    }
    this.forget(this);
    this.emit('ended', end);
  }
}
