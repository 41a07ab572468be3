/**
 * Audio to and from an Asterisk externalMedia channel over UDP RTP with u-law (payload type 0),
 * for Asterisk builds without chan_websocket. One UDP socket per call, bound before the channel
 * is created (Asterisk needs its address); Asterisk's strict RTP wants us to send from it.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:dgram';
import { bindUdp } from '../rtp/udp.ts';
import { randomInt } from 'node:crypto';
import { RTP_HEADER_BYTES, newRtpView, readRtp, writeRtpHeader } from '../rtp/rtp.ts';
import type { MediaLegEvents } from './WebSocketMediaLeg.ts';
import type { PumpLeg } from '../driver.ts';

const RING = 8;
const PT_PCMU = 0;

export class RtpMediaLeg extends EventEmitter<MediaLegEvents> {
  onAudio: ((payload: Buffer) => void) | null = null;
  /** packets received that were not RTP with u-law */
  rejected = 0;
  private readonly socket: Socket;
  private remoteHost = '';
  private remotePort = 0;
  private readonly ring: Buffer[] = [];
  private ringIndex = 0;
  private seq = randomInt(0, 0x10000);
  private timestamp = randomInt(0, 0x7fffffff);
  private readonly ssrc = randomInt(1, 0x7fffffff);
  private readonly view = newRtpView();
  private first = true;
  private closed = false;

  private constructor(socket: Socket) {
    super();
    this.socket = socket;
    for (let i = 0; i < RING; i++) this.ring.push(Buffer.alloc(RTP_HEADER_BYTES + 1024));
    socket.on('message', (msg: Buffer) => {
      if (!readRtp(msg, this.view) || this.view.payloadType !== PT_PCMU) {
        this.rejected++;
        return;
      }
      const cb = this.onAudio;
      if (cb !== null) cb(msg.subarray(this.view.payloadStart, this.view.payloadEnd));
    });
    socket.on('error', () => this.close());
  }

  static async create(address: string): Promise<RtpMediaLeg> {
    return new RtpMediaLeg(await bindUdp(address));
  }

  get localAddress(): string {
    const a = this.socket.address();
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  /** Where Asterisk's channel listens (UNICASTRTP_LOCAL_ADDRESS / _PORT); media may flow after this. */
  connect(host: string, port: number): void {
    this.remoteHost = host;
    this.remotePort = port;
    this.emit('open');
  }

  get isOpen(): boolean {
    return this.remotePort !== 0 && !this.closed;
  }

  send(payload: Buffer): void {
    if (this.closed || this.remotePort === 0) return;
    const n = payload.length;
    if (n > 1024) return;
    const buf = this.ring[this.ringIndex]!;
    this.ringIndex = (this.ringIndex + 1) % RING;
    writeRtpHeader(buf, PT_PCMU, this.first, this.seq, this.timestamp, this.ssrc);
    this.first = false;
    payload.copy(buf, RTP_HEADER_BYTES);
    this.seq = (this.seq + 1) & 0xffff;
    this.timestamp = (this.timestamp + n) >>> 0; // u-law: one byte per 8 kHz sample
    this.socket.send(buf, 0, RTP_HEADER_BYTES + n, this.remotePort, this.remoteHost);
  }

  /** This leg for the native media pump: RTP u-law to Asterisk's address, from our socket. */
  pumpLeg(): PumpLeg | null {
    if (this.closed || this.remotePort === 0) return null;
    return {
      kind: 'udp',
      socket: this.socket,
      remoteHost: this.remoteHost,
      remotePort: this.remotePort,
      expectPort: 0,
      bytesPerSample: 1,
      maxPayload: 1024,
      rtp: { payloadType: PT_PCMU, seq: this.seq, timestamp: this.timestamp, ssrc: this.ssrc, first: this.first },
      resume: (rtp) => {
        if (rtp === null) return;
        this.seq = rtp.seq;
        this.timestamp = rtp.timestamp;
        this.first = rtp.first;
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onAudio = null;
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
    this.emit('close', 'closed by bridge');
  }
}
