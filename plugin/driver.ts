/**
 * What the bridge needs from a media server, and nothing Asterisk- or FreeSWITCH-shaped.
 * A driver owns its link to the media server (ARI, ESL), checks credentials, and turns a
 * terminal's call into a leg on the media server whose audio it moves as 20 ms payloads.
 */
import type { Socket } from 'node:dgram';
import type { Socket as TcpSocket } from 'node:net';
import type WebSocket from 'ws';
import type { EventEmitter } from 'node:events';
import type { AudioCodec } from '../bridge/protocol/codecs.ts';
import type { VideoCodec } from '../bridge/protocol/videoCodecs.ts';
import type { HangupReason } from '../bridge/protocol/messages.ts';

export interface CallEnd {
  reason: HangupReason;
  /** the media server's hangup cause (Q.850 number) when it gave one */
  cause?: number;
  message?: string;
}

export interface DriverCallEvents {
  ringing: [];
  answered: [];
  /** a DTMF digit from the media server's side (0-9 * # A-D) */
  dtmf: [string];
  /** the media server asks for a picture a decoder can start from (video calls) */
  keyframeRequest: [];
  /** emitted exactly once; the leg's resources are released by then */
  ended: [CallEnd];
}

export interface DriverCall extends EventEmitter<DriverCallEvents> {
  readonly id: string;
  /** the audio format the leg carries; the bridge converts the terminal's codec to it */
  readonly format: AudioCodec;
  readonly ended: boolean;
  /**
   * Called for every 20 ms payload from the media server. The buffer may be reused after the
   * call returns. Set by the bridge once; null drops the audio.
   */
  onAudio: ((payload: Buffer) => void) | null;
  /** Sends one 20 ms payload in `format` towards the media server. Never throws. */
  sendAudio(payload: Buffer): void;
  /*
   * Video: drivers that carry video implement these; a driver without video leaves them out, and
   * the bridge then refuses video for its calls.
   */
  /** the video codec the leg carries, or null for an audio-only call */
  readonly videoFormat?: VideoCodec | null;
  /** Called for every whole video frame from the media server (90 kHz timestamp). */
  onVideo?: ((frame: Buffer, timestamp: number, keyframe: boolean) => void) | null;
  /** Sends one whole video frame (an H.264 access unit in Annex B form, or a VP8 frame). */
  sendVideo?(frame: Uint8Array, timestamp: number, keyframe: boolean): void;
  /** Asks the media server's side for a keyframe. */
  requestKeyframe?(): void;
  /** Sends DTMF digits from the terminal into the media server (the far end hears / reads them). */
  sendDtmf(digits: string): Promise<void>;
  /** Ends the call from the bridge's side. Idempotent; resolves once every resource is gone. */
  hangup(reason?: HangupReason): Promise<void>;
  /**
   * The call's audio leg as a UDP socket the native media pump may take over (bridge/server/
   * MediaPump.ts), or null when it has none now (a WebSocket leg, video, not connected yet).
   * Drivers without UDP legs leave it out.
   */
  pumpLeg?(): PumpLeg | null;
}

/**
 * A call's audio leg as the native media pump takes it over: a UDP socket (the pump sends each
 * payload from the terminal on it, with an RTP header when `rtp` is set, and relays what arrives),
 * or a WebSocket client connection (Asterisk's chan_websocket: binary frames of bare payload).
 */
export type PumpLeg = UdpPumpLeg | WebSocketPumpLeg;

export interface UdpPumpLeg {
  readonly kind: 'udp';
  readonly socket: Socket;
  /** where payloads go; remotePort 0: the socket is connected, payloads go to its peer */
  readonly remoteHost: string;
  readonly remotePort: number;
  /** datagrams from another source port are dropped (0: any) */
  readonly expectPort: number;
  /** bytes per sample of the leg's format (RTP timestamps advance by payload bytes / this) */
  readonly bytesPerSample: number;
  /** larger payloads are dropped, as the leg itself drops them */
  readonly maxPayload: number;
  /** the RTP sender state to continue from; null: raw payloads, no header */
  readonly rtp: RtpSenderState | null;
  /** The pump let go: the leg goes on from this RTP state (raw legs ignore it). */
  resume(rtp: RtpSenderState | null): void;
}

export interface WebSocketPumpLeg {
  readonly kind: 'websocket';
  /** the leg's client WebSocket (ws) and the plain TCP socket under it */
  readonly ws: WebSocket;
  readonly tcp: TcpSocket;
  readonly bytesPerSample: number;
  readonly maxPayload: number;
}

export interface RtpSenderState {
  payloadType: number;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** the next packet is the first of the stream (marker bit) */
  first: boolean;
}

/** Why a terminal did not take an invitation; each maps to the cause the media server expects. */
export type RejectReason = 'busy' | 'declined' | 'no_answer' | 'unavailable';

export interface IncomingCallEvents {
  /** the media server's side gave up before the terminal answered */
  cancelled: [CallEnd];
}

/** The media server invites a terminal (e.g. Stasis(app,invite,1001) on Asterisk). */
export interface IncomingCall extends EventEmitter<IncomingCallEvents> {
  readonly id: string;
  /** the invited terminal's number */
  readonly to: string;
  /** who is calling, as the media server knows it */
  readonly from: { number: string; name: string };
  /** video codecs the inviting side can carry (empty: audio only) */
  readonly videoCodecs: readonly VideoCodec[];
  /** Tells the media server's side that the terminal is ringing. */
  ring(): Promise<void>;
  /** Takes the call, with video when `video` is given; its progress arrives on the returned call. */
  accept(request: { callId: string; name: string; codec: AudioCodec; video?: VideoCodec }): DriverCall;
  /** Refuses the call with the cause the media server expects for `reason`. */
  reject(reason: RejectReason): Promise<void>;
}

/** How the media server should show a terminal (hint / presence). */
export type Presence = 'available' | 'in_use' | 'unavailable';

export interface PlaceCallRequest {
  callId: string;
  /** the calling terminal */
  number: string;
  name: string;
  /** the extension dialled */
  to: string;
  /** the codec the terminal agreed; the driver picks the closest leg format it can carry */
  codec: AudioCodec;
  /** the video codec the terminal agreed, for a call with video */
  video?: VideoCodec;
  /**
   * A presentation content leg: a second, video-only participant of the terminal in the same room,
   * marked so that the room shows its video (see docs/operations.md).
   */
  content?: boolean;
}

export interface DriverEvents {
  /** the link to the media server is up (first time, or again after a loss) */
  up: [];
  /** the link is lost; calls in progress have ended with pbx_lost */
  down: [Error];
  /** the media server invites a terminal; a listener must accept() or reject() it */
  incoming: [IncomingCall];
}

export interface MediaServerDriver extends EventEmitter<DriverEvents> {
  readonly kind: 'asterisk' | 'freeswitch';
  /** video codecs this driver can carry (none when absent) */
  readonly videoCodecs?: readonly VideoCodec[];
  readonly isUp: boolean;
  /** Connects; rejects when the media server cannot be reached at all. */
  start(): Promise<void>;
  /** Ends every call, closes the link. Idempotent. */
  close(): Promise<void>;
  /** true when the password matches the media server's own account of that number. */
  verifyPassword(number: string, password: string): Promise<boolean>;
  /** Starts a call; its progress arrives as events on the returned call. */
  placeCall(request: PlaceCallRequest): DriverCall;
  /** Publishes a terminal's state to the media server (what its console shows). */
  setPresence(number: string, presence: Presence): Promise<void>;
  /** Numbers the media server shows as reachable now (to clear those a dead bridge left). */
  listPresent(): Promise<string[]>;
}
