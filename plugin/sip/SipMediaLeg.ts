/**
 * Audio and video of one call over a SIP leg: the media server dials the bridge's SIP user agent
 * (Asterisk: PJSIP/<endpoint>/sip:<call>@<bridge>; FreeSWITCH: sofia/<profile>/<call>@<bridge>),
 * the bridge answers with one RTP socket for audio (u-law) and one for video (H.264 or VP8).
 * Neither externalMedia nor FreeSWITCH's unicast carries video; this leg carries both, in one
 * dialog, so the room's talker detection and the video it follows are the same participant.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:dgram';
import { bindUdp } from '../rtp/udp.ts';
import { randomInt } from 'node:crypto';
import type { VideoCodec } from '../../bridge/protocol/videoCodecs.ts';
import { RTP_HEADER_BYTES, newRtpView, readRtp, writeRtpHeader } from '../rtp/rtp.ts';
import { H264Depacketizer, H264Packetizer } from '../rtp/h264.ts';
import { Vp8Depacketizer, Vp8Packetizer } from '../rtp/vp8.ts';
import { DtmfReceiver, DtmfSender } from '../rtp/dtmf.ts';
import type { SipServer, IncomingLeg } from './SipServer.ts';
import type { SipDialog } from './SipDialog.ts';
import { buildSdp, parseSdp, type SdpFormat } from './sdp.ts';

const PT_PCMU = 0;
const AUDIO_RING = 8;
const VIDEO_MTU = 1200;

interface Peer {
  host: string;
  port: number;
}

export interface SipMediaLegEvents {
  /** the dialog is confirmed: the leg carries media */
  open: [];
  /** the leg is gone (BYE, a socket error, or close()) */
  close: [string];
  keyframeRequest: [];
  /** a DTMF digit from the media server (RFC 4733 events on the audio stream) */
  dtmf: [string];
}

/**
 * Where the leg delivers what the media server sends: the driver's call itself (its onAudio and
 * onVideo, set by the bridge), read per packet so that the bridge may set or clear them any time.
 */
export interface SipLegSink {
  readonly onAudio: ((payload: Buffer) => void) | null;
  readonly onVideo: ((frame: Buffer, timestamp: number, keyframe: boolean) => void) | null;
}

export class SipMediaLeg extends EventEmitter<SipMediaLegEvents> {
  readonly video: VideoCodec;
  private readonly sink: SipLegSink;
  private readonly sip: SipServer;
  private readonly user: string;
  private readonly audioSocket: Socket;
  private readonly videoSocket: Socket;
  private dialog: SipDialog | null = null;
  private audioPeer: Peer | null = null;
  private videoPeer: Peer | null = null;
  private videoPt = -1;
  /** telephone-event payload type the media server offered, or -1 */
  private dtmfPt = -1;
  private readonly dtmfIn = new DtmfReceiver((digit) => this.emit('dtmf', digit));
  private readonly dtmfOut: DtmfSender;
  private readonly audioRing: Buffer[] = [];
  private ringIndex = 0;
  private aSeq = randomInt(0, 0x10000);
  private aTs = randomInt(0, 0x7fffffff);
  private readonly aSsrc = randomInt(1, 0x7fffffff);
  private vSeq = randomInt(0, 0x10000);
  private readonly vSsrc = randomInt(1, 0x7fffffff);
  private readonly packetizer: H264Packetizer | Vp8Packetizer;
  private readonly depacketizer: H264Depacketizer | Vp8Depacketizer;
  private readonly view = newRtpView();
  private readonly vView = newRtpView();
  private open = false;
  private closed = false;
  /** packets received that this leg does not carry */
  rejected = 0;

  private constructor(sip: SipServer, user: string, video: VideoCodec, audioSocket: Socket, videoSocket: Socket, sink: SipLegSink) {
    super();
    this.sink = sink;
    this.sip = sip;
    this.user = user;
    this.video = video;
    this.audioSocket = audioSocket;
    this.videoSocket = videoSocket;
    for (let i = 0; i < AUDIO_RING; i++) this.audioRing.push(Buffer.alloc(RTP_HEADER_BYTES + 1024));
    const frames = (frame: Buffer, ts: number, key: boolean): void => {
      const cb = this.sink.onVideo;
      if (cb !== null && !this.closed) cb(frame, ts, key);
    };
    if (video.sdpName === 'H264') {
      this.packetizer = new H264Packetizer(VIDEO_MTU);
      this.depacketizer = new H264Depacketizer(frames);
    } else {
      this.packetizer = new Vp8Packetizer(VIDEO_MTU);
      this.depacketizer = new Vp8Depacketizer(frames);
    }
    const leg = this;
    this.dtmfOut = new DtmfSender({
      sendEvent: (payload, marker, timestamp) => this.sendEvent(payload, marker, timestamp),
      get timestamp(): number {
        return leg.aTs;
      },
      skipTo(ts: number): void {
        // forward only (modulo 2^32)
        if (((ts - leg.aTs) | 0) > 0) leg.aTs = ts;
      },
    });
    audioSocket.on('message', (msg: Buffer) => {
      if (!readRtp(msg, this.view)) {
        this.rejected++;
        return;
      }
      if (this.view.payloadType !== PT_PCMU) {
        if (this.view.payloadType === this.dtmfPt) this.dtmfIn.push(msg.subarray(this.view.payloadStart, this.view.payloadEnd), this.view.timestamp);
        else this.rejected++;
        return;
      }
      const cb = this.sink.onAudio;
      if (cb !== null && !this.closed) cb(msg.subarray(this.view.payloadStart, this.view.payloadEnd));
    });
    videoSocket.on('message', (msg: Buffer) => {
      // RTCP multiplexed on the RTP port (RFC 5761): payload-specific feedback PLI (1) or FIR (4)
      if (msg.length >= 8 && msg[1] === 206) {
        const fmt = msg[0]! & 0x1f;
        if (fmt === 1 || fmt === 4) this.emit('keyframeRequest');
        return;
      }
      if (msg.length >= 2 && msg[1]! >= 192 && msg[1]! <= 223) return; // other RTCP
      const v = this.vView;
      if (!readRtp(msg, v) || v.payloadType !== this.videoPt) {
        this.rejected++;
        return;
      }
      this.depacketizer.push(msg.subarray(v.payloadStart, v.payloadEnd), v.seq, v.timestamp, v.marker);
    });
    audioSocket.on('error', () => this.close('audio socket error'));
    videoSocket.on('error', () => this.close('video socket error'));
    sip.expect(user, (leg) => this.onInvite(leg));
  }

  static async create(sip: SipServer, rtpAddress: string, user: string, video: VideoCodec, sink: SipLegSink): Promise<SipMediaLeg> {
    const [a, v] = await Promise.all([bindUdp(rtpAddress), bindUdp(rtpAddress)]);
    return new SipMediaLeg(sip, user, video, a, v, sink);
  }

  /** The SIP URI the media server must dial for this leg. */
  get uri(): string {
    return `sip:${this.user}@${this.sip.localHost}:${this.sip.localPort}`;
  }

  get isOpen(): boolean {
    return this.open && !this.closed;
  }

  private onInvite({ dialog, invite }: IncomingLeg): void {
    if (this.closed) {
      dialog.reply(invite, 480, 'Temporarily Unavailable');
      return;
    }
    this.dialog = dialog;
    const offer = parseSdp(invite.body);
    const audio = offer.media.find((m) => m.kind === 'audio' && m.port > 0);
    const video = offer.media.find((m) => m.kind === 'video' && m.port > 0);
    const pcmu = audio?.formats.find((f) => f.name.toUpperCase() === 'PCMU');
    const events = audio?.formats.find((f) => f.name.toLowerCase() === 'telephone-event' && f.clockRate === 8000);
    const vfmt: SdpFormat | undefined = video?.formats.find((f) => f.name.toUpperCase() === this.video.sdpName);
    if (!audio || !pcmu) {
      dialog.reply(invite, 488, 'Not Acceptable Here');
      this.close('the media server offered no u-law audio');
      return;
    }
    this.audioPeer = { host: audio.address, port: audio.port };
    if (events) this.dtmfPt = events.payloadType;
    if (video && vfmt) {
      this.videoPeer = { host: video.address, port: video.port };
      this.videoPt = vfmt.payloadType;
    }
    const videoPort = this.videoSocket.address().port;
    // without rtcp-mux (FreeSWITCH's plain SIP default) the peer would send its keyframe requests
    // (RTCP PLI/FIR) to port + 1: a=rtcp (RFC 3605) points RTCP at the one video socket instead
    const videoRtcp = video?.attributes.includes('rtcp-mux') ? ['rtcp-mux'] : [`rtcp:${videoPort}`];
    // the keyframe requests this leg understands (RFC 4585 PLI, RFC 5104 FIR), when offered
    if (video && vfmt) {
      for (const a of video.attributes) {
        const fb = /^rtcp-fb:(\*|\d+) (nack pli|ccm fir)$/.exec(a);
        if (fb && (fb[1] === '*' || Number(fb[1]) === vfmt.payloadType)) videoRtcp.push(`rtcp-fb:${vfmt.payloadType} ${fb[2]}`);
      }
    }
    const answer = buildSdp(this.audioSocket.address().address, randomInt(1, 2 ** 31), [
      { kind: 'audio', port: this.audioSocket.address().port, formats: events ? [pcmu, events] : [pcmu], attributes: audio.attributes.includes('rtcp-mux') ? ['rtcp-mux'] : [] },
      ...(video ? [{ kind: 'video', port: videoPort, formats: vfmt ? [vfmt] : [], attributes: videoRtcp }] : []),
    ]);
    dialog.on('bye', () => this.close('the media server hung up (BYE)'));
    dialog.on('keyframeRequest', () => this.emit('keyframeRequest'));
    dialog.once('confirmed', () => {
      this.open = true;
      this.emit('open');
    });
    dialog.accept(invite, answer);
  }

  /** One 20 ms u-law payload towards the media server. */
  send(payload: Buffer): void {
    const peer = this.audioPeer;
    if (peer === null || this.closed) return;
    const n = payload.length;
    if (n > 1024) return;
    const buf = this.audioRing[this.ringIndex]!;
    this.ringIndex = (this.ringIndex + 1) % AUDIO_RING;
    writeRtpHeader(buf, PT_PCMU, false, this.aSeq, this.aTs, this.aSsrc);
    payload.copy(buf, RTP_HEADER_BYTES);
    this.aSeq = (this.aSeq + 1) & 0xffff;
    this.aTs = (this.aTs + n) >>> 0;
    this.audioSocket.send(buf, 0, RTP_HEADER_BYTES + n, peer.port, peer.host);
  }

  /** DTMF towards the media server as RFC 4733 events; resolves once sent. */
  sendDtmf(digits: string): Promise<void> {
    if (this.dtmfPt < 0) return Promise.reject(new Error('the media server offered no telephone-event on this leg'));
    return this.dtmfOut.send(digits);
  }

  private sendEvent(payload: Buffer, marker: boolean, timestamp: number): void {
    const peer = this.audioPeer;
    if (peer === null || this.closed) return;
    // its own buffer: dgram sends asynchronously, and an event's end packets go out back to back
    const pkt = Buffer.allocUnsafe(RTP_HEADER_BYTES + payload.length);
    writeRtpHeader(pkt, this.dtmfPt, marker, this.aSeq, timestamp, this.aSsrc);
    payload.copy(pkt, RTP_HEADER_BYTES);
    this.aSeq = (this.aSeq + 1) & 0xffff;
    this.audioSocket.send(pkt, peer.port, peer.host);
  }

  /** One whole video frame towards the media server, packetized; timestamps at 90 kHz. */
  sendVideo(frame: Uint8Array, timestamp: number): void {
    const peer = this.videoPeer;
    if (peer === null || this.closed) return;
    this.packetizer.packetize(frame, (payload, marker) => {
      // dgram sends asynchronously: each packet of a frame needs its own buffer (pooled slices)
      const pkt = Buffer.allocUnsafe(RTP_HEADER_BYTES + payload.length);
      writeRtpHeader(pkt, this.videoPt, marker, this.vSeq, timestamp, this.vSsrc);
      pkt.set(payload, RTP_HEADER_BYTES);
      this.vSeq = (this.vSeq + 1) & 0xffff;
      this.videoSocket.send(pkt, peer.port, peer.host);
    });
  }

  requestKeyframe(): void {
    this.dialog?.requestKeyframe();
  }

  /** Hangs the dialog up (BYE) unless the far end did, and closes the sockets. Idempotent. */
  close(why = 'closed by bridge'): void {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.dtmfOut.close();
    this.sip.forget(this.user);
    const dialog = this.dialog;
    if (dialog && !dialog.ended) void dialog.bye();
    for (const s of [this.audioSocket, this.videoSocket]) {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
    this.emit('close', why);
  }
}
