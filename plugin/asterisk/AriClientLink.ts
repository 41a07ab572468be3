/**
 * AriLink over the ari-client package (2.2.0). Everything ari-client returns is copied into our
 * own plain types here, so no generated object leaks into the driver. Each request has a timeout
 * and sits in a pending map; when the events socket drops, every pending request is rejected.
 */
import { EventEmitter } from 'node:events';
import ari from 'ari-client';
import type { Client } from 'ari-client';
import type { Logger } from '../../bridge/logger.ts';
import { AriError, type AriChannel, type AriEvent, type AriLink, type AriLinkEvents, type ExternalMediaParams, type OriginateParams } from './AriLink.ts';

export interface AriClientLinkOptions {
  url: string;
  user: string;
  password: string;
  app: string;
  /** more Stasis applications served on the same events socket (a worker's shared invitation app) */
  extraApps?: readonly string[];
  requestTimeoutMs: number;
  log: Logger;
}

const EVENT_TYPES = new Set(['StasisStart', 'StasisEnd', 'ChannelDestroyed', 'ChannelStateChange', 'Dial', 'ChannelDtmfReceived', 'ChannelVarset', 'ChannelHangupRequest']);
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;

function toChannel(raw: unknown): AriChannel {
  const r = (raw ?? {}) as Record<string, unknown>;
  const caller = r.caller as { name?: unknown; number?: unknown } | undefined;
  const vars = r.channelvars as Record<string, unknown> | undefined;
  const channel: AriChannel = { id: String(r.id ?? ''), name: String(r.name ?? ''), state: String(r.state ?? '') };
  if (caller) channel.caller = { name: String(caller.name ?? ''), number: String(caller.number ?? '') };
  const dp = r.dialplan as Record<string, unknown> | undefined;
  if (dp) channel.dialplan = { context: String(dp.context ?? ''), exten: String(dp.exten ?? ''), app_name: String(dp.app_name ?? ''), app_data: String(dp.app_data ?? '') };
  if (vars) channel.channelvars = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, String(v)]));
  return channel;
}

function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  try {
    const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    /* not JSON */
  }
  return text;
}

export class AriClientLink extends EventEmitter<AriLinkEvents> implements AriLink {
  private readonly opts: AriClientLinkOptions;
  private client: Client | null = null;
  private up = false;
  private closed = false;
  private seq = 0;
  private readonly pending = new Map<number, { reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelayMs = RECONNECT_MIN_MS;

  constructor(opts: AriClientLinkOptions) {
    super();
    this.opts = opts;
  }

  get isUp(): boolean {
    return this.up;
  }

  async connect(): Promise<void> {
    if (this.closed) throw new AriError('link closed', false);
    try {
      await this.attempt();
    } catch (err) {
      this.scheduleReconnect();
      throw err;
    }
  }

  /** One full connection: the API description, then the events socket. */
  private async attempt(): Promise<void> {
    const client = await ari.connect(this.opts.url, this.opts.user, this.opts.password);
    if (this.closed) return;
    client.on('*', (event: { type?: string }) => {
      if (event && typeof event.type === 'string' && EVENT_TYPES.has(event.type)) this.onEvent(event as Record<string, unknown>);
    });
    // ari-client retries the events socket itself (about 50 s in all) and then gives up
    client.on('WebSocketConnected', () => this.setUp());
    client.on('WebSocketReconnecting', (err?: Error) => this.setDown(err ?? new Error('ARI events socket closed')));
    client.on('WebSocketMaxRetries', (err?: Error) => {
      this.setDown(err ?? new Error('ARI events socket gave up'));
      this.discard(client);
      this.scheduleReconnect();
    });
    this.client = client;
    try {
      await client.start(this.opts.extraApps?.length ? [this.opts.app, ...this.opts.extraApps] : this.opts.app);
    } catch (err) {
      this.discard(client);
      throw err;
    }
    this.reconnectDelayMs = RECONNECT_MIN_MS;
    this.setUp();
  }

  private discard(client: Client): void {
    if (this.client === client) this.client = null;
    client.removeAllListeners();
    client.on('error', () => undefined);
    try {
      client.stop();
    } catch {
      /* never started */
    }
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.attempt().catch((err: unknown) => {
        this.opts.log.debug({ err: (err as Error).message, retryInMs: this.reconnectDelayMs }, 'ARI reconnect failed');
        this.scheduleReconnect();
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  private onEvent(raw: Record<string, unknown>): void {
    const type = raw.type as AriEvent['type'];
    let event: AriEvent;
    const application = String(raw.application ?? '');
    switch (type) {
      case 'StasisStart':
        event = { type, application, channel: toChannel(raw.channel), args: Array.isArray(raw.args) ? raw.args.map(String) : [] };
        break;
      case 'StasisEnd':
      case 'ChannelStateChange':
        event = { type, application, channel: toChannel(raw.channel) };
        break;
      case 'ChannelDestroyed':
        event = { type, application, channel: toChannel(raw.channel), cause: Number(raw.cause ?? 0), cause_txt: String(raw.cause_txt ?? '') };
        break;
      case 'Dial':
        event = { type, application, peer: toChannel(raw.peer), dialstatus: String(raw.dialstatus ?? ''), caller: raw.caller ? toChannel(raw.caller) : undefined };
        break;
      case 'ChannelDtmfReceived':
        event = { type, application, channel: toChannel(raw.channel), digit: String(raw.digit ?? ''), duration_ms: Number(raw.duration_ms ?? 0) };
        break;
      case 'ChannelVarset':
        if (!raw.channel) return; // global variables
        event = { type, application, channel: toChannel(raw.channel), variable: String(raw.variable ?? ''), value: String(raw.value ?? '') };
        break;
      case 'ChannelHangupRequest':
        event = { type, application, channel: toChannel(raw.channel), cause: Number(raw.cause ?? 0), soft: raw.soft === true };
        break;
      default:
        return;
    }
    this.emit('event', event);
  }

  private setUp(): void {
    if (this.up || this.closed) return;
    this.up = true;
    this.emit('up');
  }

  private setDown(err: Error): void {
    if (!this.up) return;
    this.up = false;
    const failure = new AriError(`ARI link lost: ${err.message}`, false, { cause: err });
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(failure);
      this.pending.delete(id);
    }
    this.emit('down', failure);
  }

  private request<T>(what: string, run: (client: Client) => Promise<unknown>, map: (v: unknown) => T): Promise<T> {
    const client = this.client;
    if (!client || !this.up) return Promise.reject(new AriError(`${what}: ARI link is down`, false));
    return new Promise<T>((resolve, reject) => {
      const id = ++this.seq;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AriError(`${what}: no answer within ${this.opts.requestTimeoutMs} ms`, false));
      }, this.opts.requestTimeoutMs);
      this.pending.set(id, { reject, timer });
      run(client).then(
        (value) => {
          if (!this.pending.delete(id)) return;
          clearTimeout(timer);
          try {
            resolve(map(value));
          } catch (err) {
            reject(err as Error);
          }
        },
        (err: unknown) => {
          if (!this.pending.delete(id)) return;
          clearTimeout(timer);
          const text = errorText(err);
          reject(new AriError(`${what}: ${text}`, /not found|does not exist|404/i.test(text), { cause: err }));
        },
      );
    });
  }

  getConfigObject(configClass: string, objectType: string, id: string): Promise<Record<string, string> | null> {
    return this.request(
      `get ${configClass}/${objectType}/${id}`,
      (c) => c.asterisk.getObject!({ configClass, objectType, id }),
      (v) => {
        const out: Record<string, string> = {};
        if (Array.isArray(v)) for (const t of v as { attribute?: unknown; value?: unknown }[]) out[String(t.attribute)] = String(t.value ?? '');
        return out;
      },
    ).catch((err: unknown) => {
      if (err instanceof AriError && err.notFound) return null;
      throw err;
    });
  }

  externalMedia(p: ExternalMediaParams): Promise<AriChannel> {
    const options: Record<string, unknown> = {
      app: p.app,
      channelId: p.channelId,
      format: p.format,
      transport: p.transport,
      encapsulation: p.transport === 'websocket' ? 'none' : 'rtp',
    };
    if (p.transport === 'websocket') options.connection_type = 'server';
    if (p.externalHost) options.external_host = p.externalHost;
    return this.request('externalMedia', (c) => c.channels.externalMedia!(options), toChannel);
  }

  originate(p: OriginateParams): Promise<AriChannel> {
    const options: Record<string, unknown> = {
      endpoint: p.endpoint,
      app: p.app,
      appArgs: p.appArgs,
      channelId: p.channelId,
      otherChannelId: p.otherChannelId,
      callerId: p.callerId,
      timeout: p.timeoutS,
    };
    if (p.variables) options.variables = { variables: p.variables };
    if (p.formats) options.formats = p.formats;
    return this.request('originate', (c) => c.channels.originate!(options), toChannel);
  }

  listChannels(): Promise<AriChannel[]> {
    return this.request('list channels', (c) => c.channels.list!(), (v) => (Array.isArray(v) ? v.map(toChannel) : []));
  }

  getVariable(channelId: string, variable: string): Promise<string> {
    return this.request(`get ${variable}`, (c) => c.channels.getChannelVar!({ channelId, variable }), (v) => String((v as { value?: unknown })?.value ?? ''));
  }

  setVariable(channelId: string, variable: string, value: string): Promise<void> {
    return this.request(`set ${variable}`, (c) => c.channels.setChannelVar!({ channelId, variable, value }), () => undefined);
  }

  answer(channelId: string): Promise<void> {
    return this.request('answer', (c) => c.channels.answer!({ channelId }), () => undefined);
  }

  continueInDialplan(channelId: string, context: string, extension: string, priority: number): Promise<void> {
    return this.request('continue', (c) => c.channels.continueInDialplan!({ channelId, context, extension, priority }), () => undefined);
  }

  move(channelId: string, app: string, appArgs: string): Promise<void> {
    return this.request('move', (c) => c.channels.move!({ channelId, app, appArgs }), () => undefined);
  }

  ring(channelId: string): Promise<void> {
    return this.request('ring', (c) => c.channels.ring!({ channelId }), () => undefined);
  }

  sendDtmf(channelId: string, dtmf: string): Promise<void> {
    return this.request('send DTMF', (c) => c.channels.sendDTMF!({ channelId, dtmf, between: 100, duration: 120 }), () => undefined);
  }

  subscribeChannel(channelId: string): Promise<void> {
    return this.request('subscribe', (c) => c.applications.subscribe!({ applicationName: this.opts.app, eventSource: `channel:${channelId}` }), () => undefined);
  }

  setDeviceState(name: string, state: string): Promise<void> {
    return this.request('device state', (c) => c.deviceStates.update!({ deviceName: name, deviceState: state }), () => undefined);
  }

  listEndpoints(): Promise<{ technology: string; resource: string }[]> {
    return this.request('endpoints', (c) => c.endpoints.list!(), (v) =>
      Array.isArray(v) ? v.map((e: { technology?: unknown; resource?: unknown }) => ({ technology: String(e.technology ?? ''), resource: String(e.resource ?? '') })) : [],
    );
  }

  listDeviceStates(): Promise<{ name: string; state: string }[]> {
    return this.request('device states', (c) => c.deviceStates.list!(), (v) =>
      Array.isArray(v) ? v.map((d: { name?: unknown; state?: unknown }) => ({ name: String(d.name ?? ''), state: String(d.state ?? '') })) : [],
    );
  }

  hangup(channelId: string, cause?: number): Promise<boolean> {
    const options: Record<string, unknown> = { channelId };
    if (cause !== undefined) options.reason_code = String(cause);
    else options.reason = 'normal';
    return this.request('hangup', (c) => c.channels.hangup!(options), () => true).catch((err: unknown) => {
      if (err instanceof AriError && err.notFound) return false;
      throw err;
    });
  }

  createBridge(bridgeId: string, type: string): Promise<void> {
    return this.request('create bridge', (c) => c.bridges.create!({ bridgeId, type, name: bridgeId }), () => undefined);
  }

  addChannels(bridgeId: string, channelIds: string[]): Promise<void> {
    return this.request('add to bridge', (c) => c.bridges.addChannel!({ bridgeId, channel: channelIds.join(',') }), () => undefined);
  }

  destroyBridge(bridgeId: string): Promise<boolean> {
    return this.request('destroy bridge', (c) => c.bridges.destroy!({ bridgeId }), () => true).catch((err: unknown) => {
      if (err instanceof AriError && err.notFound) return false;
      throw err;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.setDown(new Error('closed'));
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.client) this.discard(this.client);
  }
}
