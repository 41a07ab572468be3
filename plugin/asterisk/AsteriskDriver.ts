/**
 * The Asterisk driver: ARI (through AriLink) for control and credentials, chan_websocket or UDP
 * RTP externalMedia for audio. It checks a terminal's password against the PBX's own PJSIP auth
 * object of the same number, so there is no second user store.
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { safeEqual } from '../credentials.ts';
import type { Logger } from '../../bridge/logger.ts';
import type { Config } from '../../bridge/config.ts';
import type { DriverEvents, MediaServerDriver, PlaceCallRequest, Presence } from '../driver.ts';
import type { AriChannel, AriEvent, AriLink } from './AriLink.ts';
import { AriClientLink } from './AriClientLink.ts';
import { AsteriskCall, channelIdPrefix, type InboundDial } from './AsteriskCall.ts';
import { AsteriskInvite, type AcceptRequest } from './AsteriskInvite.ts';
import { SipServer } from '../sip/SipServer.ts';
import { H264, VP8, type VideoCodec } from '../../bridge/protocol/videoCodecs.ts';

const DEVICE_STATES: Readonly<Record<Presence, string>> = Object.freeze({ available: 'NOT_INUSE', in_use: 'INUSE', unavailable: 'UNAVAILABLE' });
/** Terminal device states are Stasis:<number>; a hint `exten => 1001,hint,Stasis:1001` shows them. */
export const DEVICE_PREFIX = 'Stasis:';

/**
 * With several worker processes each has its own Stasis app (`<app>-w<k>`), but the dialplan
 * invites terminals into one shared app (`Stasis(<app>,invite,N)`). One worker also serves the
 * shared app and moves each invitation into the app of the worker that holds the terminal.
 */
export interface InviteRouting {
  /** the shared application the dialplan names */
  sharedApp: string;
  /** the app of the worker that holds `number`, or null when it is this worker */
  appFor(number: string): string | null;
}

export interface AsteriskDriverOptions {
  config: Config['asterisk'];
  log: Logger;
  /** for tests: another AriLink implementation */
  link?: AriLink;
  /** this worker also serves the shared invitation app (server.workers > 1) */
  inviteRouting?: InviteRouting;
}

export class AsteriskDriver extends EventEmitter<DriverEvents> implements MediaServerDriver {
  readonly kind = 'asterisk' as const;
  readonly videoCodecs: readonly VideoCodec[] = [H264, VP8];
  private sip: SipServer | null = null;
  private readonly cfg: Config['asterisk'];
  private readonly log: Logger;
  private readonly link: AriLink;
  private readonly byChannel = new Map<string, AsteriskCall | AsteriskInvite>();
  private readonly calls = new Set<AsteriskCall>();
  private closed = false;
  private readonly sweeper: NodeJS.Timeout;
  private readonly inviteRouting: InviteRouting | null;

  constructor(opts: AsteriskDriverOptions) {
    super();
    this.cfg = opts.config;
    this.inviteRouting = opts.inviteRouting ?? null;
    this.log = opts.log.child({ driver: 'asterisk' });
    this.link =
      opts.link ??
      new AriClientLink({
        url: this.cfg.url,
        user: this.cfg.user,
        password: this.cfg.password,
        app: this.cfg.app,
        ...(this.inviteRouting ? { extraApps: [this.inviteRouting.sharedApp] } : {}),
        requestTimeoutMs: this.cfg.requestTimeoutMs,
        log: this.log,
      });
    this.link.on('event', (event) => this.onEvent(event));
    this.link.on('up', () => {
      this.log.info({ url: this.cfg.url, app: this.cfg.app }, 'ARI link up');
      void this.hangupOrphans();
      this.emit('up');
    });
    // and from time to time: a channel whose clean-up failed (ARI briefly unreachable) goes too
    this.sweeper = setInterval(() => {
      if (this.link.isUp) void this.hangupOrphans();
    }, this.cfg.orphanSweepMs);
    this.sweeper.unref();
    this.link.on('down', (err) => {
      this.log.warn({ err: err.message }, 'ARI link down');
      for (const call of [...this.calls]) call.abandon({ reason: 'pbx_lost', message: 'the media server link was lost' });
      this.emit('down', err);
    });
  }

  get isUp(): boolean {
    return this.link.isUp;
  }

  /** Connects to ARI. Rejects if the first attempt fails; the link keeps retrying with backoff. */
  async start(): Promise<void> {
    if (!this.sip) {
      this.sip = await SipServer.listen(this.cfg.sipAddress, this.cfg.sipPort);
      this.sip.on('error', (err) => this.log.warn({ err: err.message }, 'SIP socket error'));
      this.log.info({ address: `${this.sip.localHost}:${this.sip.localPort}` }, 'SIP leg listening (video calls)');
    }
    await this.link.connect();
  }

  private onEvent(event: AriEvent): void {
    const id = 'channel' in event ? event.channel.id : event.peer.id;
    const owner = this.byChannel.get(id);
    if (owner) {
      owner.handleEvent(event);
      return;
    }
    if (event.type === 'StasisStart' && event.args[0] === 'invite') {
      const number = event.args[1] ?? '';
      const target = this.inviteRouting && event.application === this.inviteRouting.sharedApp ? this.inviteRouting.appFor(number) : null;
      if (target) this.moveInvite(event.channel, number, target);
      else this.onInvite(event.channel, number);
    }
  }

  /** An invitation for a terminal held by another worker: into that worker's app it goes. */
  private moveInvite(channel: AriChannel, number: string, app: string): void {
    this.link.move(channel.id, app, `invite,${number}`).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message, terminal: number, app }, 'invitation not handed to its worker');
      void this.link.hangup(channel.id, 20).catch(() => undefined);
    });
  }

  /** Stasis(<app>,invite,<number>): the PBX invites a terminal. */
  private onInvite(channel: AriChannel, number: string): void {
    const invite = new AsteriskInvite(channel, number, this.link, (inv, req) => this.acceptInvite(inv, req));
    this.byChannel.set(channel.id, invite);
    invite.once('cancelled', () => this.forget(channel.id, invite));
    this.log.info({ terminal: number, channel: channel.name }, 'invitation from the PBX');
    if (this.listenerCount('incoming') === 0 || !/^[A-Za-z0-9_.+-]{1,40}$/.test(number)) {
      this.forget(channel.id, invite);
      void invite.reject('unavailable').catch(() => undefined);
      return;
    }
    // a caller with video (a video phone, a terminal's video call dialling this one) can bring its
    // video to the terminal; the channel's native formats say whether it has any
    void this.videoOf(channel.id).then((codecs) => {
      if (this.byChannel.get(channel.id) !== invite) return; // gone meanwhile
      invite.videoCodecs = codecs;
      this.emit('incoming', invite);
    });
  }

  /** The video codecs a channel carries, from CHANNEL(videonativeformat) ("(h264|vp8)", "(nothing)"). */
  private async videoOf(channelId: string): Promise<VideoCodec[]> {
    if (!this.sip) return [];
    try {
      const formats = (await this.link.getVariable(channelId, 'CHANNEL(videonativeformat)')).toLowerCase();
      return this.videoCodecs.filter((c) => formats.includes(c.sdpName.toLowerCase()));
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'video formats of the inviting channel unknown');
      return [];
    }
  }

  private forget(channelId: string, owner: AsteriskCall | AsteriskInvite): void {
    if (this.byChannel.get(channelId) === owner) this.byChannel.delete(channelId);
  }

  private acceptInvite(invite: AsteriskInvite, req: AcceptRequest): AsteriskCall {
    this.forget(invite.channelId, invite);
    const inbound: InboundDial = { channelId: invite.channelId, channelName: invite.channelName };
    return this.startCall({ callId: req.callId, number: invite.to, name: req.name, to: invite.to, codec: req.codec, ...(req.video ? { video: req.video } : {}) }, inbound);
  }

  async setPresence(number: string, presence: Presence): Promise<void> {
    await this.link.setDeviceState(`${DEVICE_PREFIX}${number}`, DEVICE_STATES[presence]);
  }

  /**
   * Terminals the console may show as reachable: Stasis:<n> states other than UNAVAILABLE (left by
   * a bridge that died), and PJSIP endpoints with no Stasis state yet (a hint on a device state
   * never set reads Idle, not Unavailable).
   */
  async listPresent(): Promise<string[]> {
    const [states, endpoints] = await Promise.all([this.link.listDeviceStates(), this.link.listEndpoints()]);
    const known = new Set(states.filter((d) => d.name.startsWith(DEVICE_PREFIX)).map((d) => d.name.slice(DEVICE_PREFIX.length)));
    const present = states.filter((d) => d.name.startsWith(DEVICE_PREFIX) && d.state !== 'UNAVAILABLE').map((d) => d.name.slice(DEVICE_PREFIX.length));
    for (const e of endpoints) if (e.technology === 'PJSIP' && !known.has(e.resource) && /^[A-Za-z0-9_.+-]{1,40}$/.test(e.resource)) present.push(e.resource);
    return present;
  }

  /**
   * Channels this app created in an earlier life (a bridge that crashed or lost ARI), or whose
   * clean-up failed, sit in Stasis with nobody to serve them: hang them up. Only ours: ids with our
   * app's prefix, in our app (ARI lists `<app>` or `<app>,<args>` as their Stasis data: originated
   * and externalMedia channels alike), and tracked by no call of this bridge.
   */
  private async hangupOrphans(): Promise<void> {
    try {
      const app = this.cfg.app;
      const prefix = channelIdPrefix(app);
      const orphans = (await this.link.listChannels()).filter(
        (c) => c.id.startsWith(prefix) && !this.byChannel.has(c.id) && c.dialplan?.app_name === 'Stasis' && (c.dialplan.app_data === app || c.dialplan.app_data.startsWith(`${app},`)),
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
    return this.startCall(request, null);
  }

  private startCall(request: PlaceCallRequest, inbound: InboundDial | null): AsteriskCall {
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
      sip: this.sip,
      sipEndpoint: this.cfg.sipEndpoint,
      track: (channelId, c) => {
        if (c) this.byChannel.set(channelId, c);
        else this.forget(channelId, call);
      },
    }, inbound);
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
    clearInterval(this.sweeper);
    await Promise.allSettled([...this.calls].map((c) => c.hangup('shutdown')));
    await this.link.close();
    await this.sip?.close();
  }
}
