/**
 * Our typed view of ARI: the only ARI the driver sees. AriClientLink implements it over the
 * ari-client package; replacing that package means writing one other class with this shape.
 */
import type { EventEmitter } from 'node:events';

export interface AriChannel {
  id: string;
  name: string;
  state: string;
  caller?: { name: string; number: string };
  channelvars?: Record<string, string>;
  /** where the channel is in the dialplan: app_name Stasis, app_data "<app>,<args>" */
  dialplan?: { context: string; exten: string; app_name: string; app_data: string };
}

export type AriEvent =
  | { type: 'StasisStart'; application: string; channel: AriChannel; args: string[] }
  | { type: 'StasisEnd'; application: string; channel: AriChannel }
  | { type: 'ChannelDestroyed'; application: string; channel: AriChannel; cause: number; cause_txt: string }
  | { type: 'ChannelStateChange'; application: string; channel: AriChannel }
  | { type: 'Dial'; application: string; peer: AriChannel; dialstatus: string; caller?: AriChannel }
  | { type: 'ChannelDtmfReceived'; application: string; channel: AriChannel; digit: string; duration_ms: number }
  | { type: 'ChannelVarset'; application: string; channel: AriChannel; variable: string; value: string }
  | { type: 'ChannelHangupRequest'; application: string; channel: AriChannel; cause: number; soft: boolean };

export interface ExternalMediaParams {
  channelId: string;
  app: string;
  format: 'ulaw' | 'slin16';
  transport: 'websocket' | 'udp';
  /** udp: where Asterisk sends RTP ("host:port") */
  externalHost?: string;
}

export interface OriginateParams {
  endpoint: string;
  app: string;
  appArgs: string;
  /** formats the channel may use when nothing else decides (e.g. "ulaw,h264") */
  formats?: string;
  channelId: string;
  otherChannelId: string;
  callerId: string;
  timeoutS: number;
  variables?: Record<string, string>;
}

export interface AriLinkEvents {
  event: [AriEvent];
  up: [];
  down: [Error];
}

export interface AriLink extends EventEmitter<AriLinkEvents> {
  readonly isUp: boolean;
  /**
   * Loads the API and opens the events socket for the app; resolves once both are up, rejects if
   * the first attempt fails. Either way it keeps the link up from then on: after a loss it
   * reconnects with backoff (emitting down, then up) until close().
   */
  connect(): Promise<void>;
  close(): Promise<void>;
  /** A sorcery object's fields via ARI dynamic config, or null when it does not exist. */
  getConfigObject(configClass: string, objectType: string, id: string): Promise<Record<string, string> | null>;
  externalMedia(params: ExternalMediaParams): Promise<AriChannel>;
  originate(params: OriginateParams): Promise<AriChannel>;
  /** Every channel Asterisk has. */
  listChannels(): Promise<AriChannel[]>;
  /** A channel variable or dialplan function read on a channel. */
  getVariable(channelId: string, variable: string): Promise<string>;
  setVariable(channelId: string, variable: string, value: string): Promise<void>;
  answer(channelId: string): Promise<void>;
  /** Moves a channel in one of our apps into another Stasis app (ARI channels/{id}/move). */
  move(channelId: string, app: string, appArgs: string): Promise<void>;
  /** Sends a channel in our app on into the dialplan (it leaves the app). */
  continueInDialplan(channelId: string, context: string, extension: string, priority: number): Promise<void>;
  /** Indicates ringing to the channel's caller. */
  ring(channelId: string): Promise<void>;
  /** Sends DTMF to the channel (for a Local half: received as DTMF by its other half). */
  sendDtmf(channelId: string, dtmf: string): Promise<void>;
  /** Subscribes the app to events of a channel that is not in it. */
  subscribeChannel(channelId: string): Promise<void>;
  /** false when the channel was already gone; `cause` is a Q.850 code (ARI reason_code) */
  hangup(channelId: string, cause?: number): Promise<boolean>;
  /** Sets a Stasis:<name> device state (NOT_INUSE, INUSE, UNAVAILABLE, ...). */
  setDeviceState(name: string, state: string): Promise<void>;
  /** Every endpoint Asterisk knows (PJSIP/1001 ...). */
  listEndpoints(): Promise<{ technology: string; resource: string }[]>;
  /** Every device state the app may control (names like Stasis:1001). */
  listDeviceStates(): Promise<{ name: string; state: string }[]>;
  createBridge(bridgeId: string, type: string): Promise<void>;
  addChannels(bridgeId: string, channelIds: string[]): Promise<void>;
  /** false when the bridge was already gone */
  destroyBridge(bridgeId: string): Promise<boolean>;
}

/** An ARI request failed: the HTTP status when known, Asterisk's message. */
export class AriError extends Error {
  readonly notFound: boolean;
  constructor(message: string, notFound: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AriError';
    this.notFound = notFound;
  }
}
