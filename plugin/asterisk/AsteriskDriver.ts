/**
 * The Asterisk driver: ARI (through AriLink) for control and credentials, chan_websocket or UDP
 * RTP externalMedia for audio. It checks a terminal's password against the PBX's own PJSIP auth
 * object of the same number, so there is no second user store.
 */
import { EventEmitter } from 'node:events';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../../bridge/logger.ts';
import type { Config } from '../../bridge/config.ts';
import type { DriverEvents, MediaServerDriver, PlaceCallRequest } from '../driver.ts';
import type { AriLink } from './AriLink.ts';
import { AriClientLink } from './AriClientLink.ts';
import { AsteriskCall } from './AsteriskCall.ts';

export interface AsteriskDriverOptions {
  config: Config['asterisk'];
  log: Logger;
  /** for tests: another AriLink implementation */
  link?: AriLink;
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab); // spend comparable time either way
    return false;
  }
  return timingSafeEqual(ab, bb);
}

export class AsteriskDriver extends EventEmitter<DriverEvents> implements MediaServerDriver {
  readonly kind = 'asterisk' as const;
  private readonly cfg: Config['asterisk'];
  private readonly log: Logger;
  private readonly link: AriLink;
  private readonly byChannel = new Map<string, AsteriskCall>();
  private readonly calls = new Set<AsteriskCall>();
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelayMs = 500;

  constructor(opts: AsteriskDriverOptions) {
    super();
    this.cfg = opts.config;
    this.log = opts.log.child({ driver: 'asterisk' });
    this.link =
      opts.link ??
      new AriClientLink({
        url: this.cfg.url,
        user: this.cfg.user,
        password: this.cfg.password,
        app: this.cfg.app,
        requestTimeoutMs: this.cfg.requestTimeoutMs,
        log: this.log,
      });
    this.link.on('event', (event) => {
      const id = 'channel' in event ? event.channel.id : event.peer.id;
      const call = this.byChannel.get(id);
      if (call) call.handleEvent(event);
    });
    this.link.on('up', () => {
      this.retryDelayMs = 500;
      this.log.info({ url: this.cfg.url, app: this.cfg.app }, 'ARI link up');
      void this.hangupOrphans();
      this.emit('up');
    });
    this.link.on('down', (err) => {
      this.log.warn({ err: err.message }, 'ARI link down');
      for (const call of [...this.calls]) call.abandon({ reason: 'pbx_lost', message: 'the media server link was lost' });
      this.emit('down', err);
    });
  }

  get isUp(): boolean {
    return this.link.isUp;
  }

  /** Connects to ARI. Rejects if the first attempt fails, and keeps retrying with backoff. */
  async start(): Promise<void> {
    try {
      await this.link.connect();
    } catch (err) {
      this.scheduleRetry();
      throw err;
    }
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, 30000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.link.connect().catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message, retryInMs: this.retryDelayMs }, 'ARI connect failed');
        this.scheduleRetry();
      });
    }, delay);
    this.retryTimer.unref();
  }

  /**
   * Channels this app created in an earlier life (a bridge that crashed or lost ARI) sit in Stasis
   * with nobody to serve them: hang them up. Only ours: ids starting with confmux-, in our app.
   */
  private async hangupOrphans(): Promise<void> {
    try {
      const app = this.cfg.app;
      const orphans = (await this.link.listChannels()).filter(
        (c) => c.id.startsWith('confmux-') && !this.byChannel.has(c.id) && c.dialplan?.app_name === 'Stasis' && (c.dialplan.app_data === app || c.dialplan.app_data.startsWith(`${app},`)),
      );
      if (orphans.length === 0) return;
      this.log.warn({ channels: orphans.map((c) => c.name) }, 'hanging up channels left by an earlier run');
      await Promise.allSettled(orphans.map((c) => this.link.hangup(c.id)));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not look for orphaned channels');
    }
  }

  async verifyPassword(number: string, password: string): Promise<boolean> {
    const auth = await this.link.getConfigObject('res_pjsip', 'auth', number);
    if (!auth) return false;
    if (auth.password) return safeEqual(password, auth.password);
    if (auth.md5_cred) {
      const username = auth.username || number;
      const realm = auth.realm || 'asterisk';
      const digest = createHash('md5').update(`${username}:${realm}:${password}`).digest('hex');
      return safeEqual(digest, auth.md5_cred.toLowerCase());
    }
    return false;
  }

  placeCall(request: PlaceCallRequest): AsteriskCall {
    const call = new AsteriskCall(request, {
      link: this.link,
      app: this.cfg.app,
      context: this.cfg.context,
      ariUrl: this.cfg.url,
      transport: this.cfg.mediaTransport,
      rtpBindAddress: this.cfg.rtpBindAddress,
      dialTimeoutS: this.cfg.dialTimeoutS,
      requestTimeoutMs: this.cfg.requestTimeoutMs,
      log: this.log,
      track: (channelId, c) => {
        if (c) this.byChannel.set(channelId, c);
        else if (this.byChannel.get(channelId) === call) this.byChannel.delete(channelId);
      },
    });
    this.calls.add(call);
    call.once('ended', () => this.calls.delete(call));
    if (!this.link.isUp) {
      queueMicrotask(() => call.abandon({ reason: 'pbx_lost', message: 'the media server is not reachable' }));
    } else void call.start();
    return call;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await Promise.allSettled([...this.calls].map((c) => c.hangup('shutdown')));
    await this.link.close();
  }
}
