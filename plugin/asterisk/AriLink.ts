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
  | { type: 'ChannelDtmfReceived'; application: string; channel: AriChannel; digit: string; duration_ms: number };

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
  /** Loads the API, opens the events socket for the app; resolves once both are up. */
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
  /** false when the channel was already gone */
  hangup(channelId: string, reason?: string): Promise<boolean>;
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
