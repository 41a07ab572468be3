/**
 * One terminal call on Asterisk: an externalMedia channel carrying the terminal's audio, joined by
 * a mixing bridge with the "dial" channel that faces the PBX:
 *  - a call the terminal placed: an originated Local/<to>@<context> (its ;2 half runs the
 *    dialplan: a ConfBridge room, a phone);
 *  - a call the PBX placed (Stasis(app,invite,N)): the inviting channel itself, answered here.
 * The "room side" is the channel the PBX console shows for the terminal (the Local half in the
 * room); the app subscribes to it to learn of kicks and console hang-ups. Whichever side ends the
 * call, every channel and the bridge created here are gone by the time `ended` is emitted.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../../bridge/logger.ts';
import { PCMU, type AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { HangupReason } from '../../bridge/protocol/messages.ts';
import type { CallEnd, DriverCall, DriverCallEvents, PlaceCallRequest, PumpLeg } from '../driver.ts';
import type { AriEvent, AriLink } from './AriLink.ts';
import { RtpMediaLeg } from './RtpMediaLeg.ts';
import { WebSocketMediaLeg } from './WebSocketMediaLeg.ts';
import { SipMediaLeg } from '../sip/SipMediaLeg.ts';
import type { SipServer } from '../sip/SipServer.ts';
import type { VideoCodec } from '../../bridge/protocol/videoCodecs.ts';

export interface AsteriskCallOptions {
  link: AriLink;
  app: string;
  context: string;
  /** ARI base URL, for the chan_websocket media URL */
  ariUrl: string;
  transport: 'websocket' | 'rtp';
  rtpBindAddress: string;
  dialTimeoutS: number;
  requestTimeoutMs: number;
  log: Logger;
  /** the bridge's SIP user agent, for calls with video */
  sip: SipServer | null;
  /** the PJSIP endpoint Asterisk dials the bridge's SIP leg with */
  sipEndpoint: string;
  /** called when the call's channels are known / forgotten, for event routing */
  track(channelId: string, call: AsteriskCall | null): void;
}

type Leg = WebSocketMediaLeg | RtpMediaLeg | SipMediaLeg;

/** The prefix of every channel and bridge id a call of this app creates. */
export function channelIdPrefix(app: string): string {
  return `${app}-`;
}

/** see finishSoon() */
const FINISH_GRACE_MS = 250;
/** a set-up ends as failed after the dial timeout plus this many request timeouts */
const SETUP_SLACK_REQUESTS = 4;

/** A call the PBX placed: the inviting channel (in our app, not yet answered). */
export interface InboundDial {
  channelId: string;
  channelName: string;
}

/** Q.850 cause of a call that never connected -> what the terminal is told. */
export function reasonForCause(cause: number): HangupReason {
  switch (cause) {
    case 17:
      return 'busy';
    case 18:
    case 19:
      return 'no_answer';
    case 21:
      return 'rejected';
    case 1:
    case 3:
    case 28:
      return 'not_found';
    case 20:
    case 27:
    case 34:
    case 38:
    case 41:
    case 42:
    case 44:
      return 'unavailable';
    case 0:
      return 'unavailable';
    default:
      return 'remote';
  }
}

export class AsteriskCall extends EventEmitter<DriverCallEvents> implements DriverCall {
  readonly id: string;
  readonly format: AudioCodec;
  readonly videoFormat: VideoCodec | null;
  onAudio: ((payload: Buffer) => void) | null = null;
  onVideo: ((frame: Buffer, timestamp: number, keyframe: boolean) => void) | null = null;
  private readonly opts: AsteriskCallOptions;
  private readonly req: PlaceCallRequest;
  private readonly log: Logger;
  private readonly emId: string;
  /** the channel facing the PBX, bridged with the media channel */
  private readonly dialId: string;
  /** outbound: the ;2 half we name at originate; inbound: found by name once answered */
  private roomSideId: string | null;
  private readonly inbound: InboundDial | null;
  private kicked = false;
  private pbxHangup = false;
  /** a video call's channel went on into the dialplan (its StasisEnd is expected) */
  private continued = false;
  private readonly bridgeId: string;
  private leg: Leg | null = null;
  private answered = false;
  private ending = false;
  private done = false;
  private readonly created = new Set<string>();
  private readonly destroyed = new Set<string>();
  private readonly destroyWaiters = new Map<string, () => void>();
  private bridgeCreated = false;
  private endPromise: Promise<void> | null = null;
  private setupTimer: NodeJS.Timeout | null = null;
  /** the set-up in progress; cleanup waits for it so nothing it creates late is left behind */
  private setup: Promise<void> = Promise.resolve();

  constructor(req: PlaceCallRequest, opts: AsteriskCallOptions, inbound: InboundDial | null = null) {
    super();
    this.inbound = inbound;
    this.req = req;
    this.opts = opts;
    this.id = req.callId;
    this.log = opts.log.child({ callId: req.callId });
    this.videoFormat = req.video && opts.sip ? req.video : null;
    // websocket: the leg carries the terminal's own codec and Asterisk transcodes; rtp and the
    // SIP leg of a video call: u-law only
    this.format = opts.transport === 'rtp' || this.videoFormat ? PCMU : req.codec;
    // ids start with the app's name: the driver's sweep can tell its own channels from another
    // bridge's on the same Asterisk (see channelIdPrefix)
    const base = `${channelIdPrefix(opts.app)}${req.callId}`;
    this.emId = `${base}-media`;
    this.dialId = inbound ? inbound.channelId : `${base}-dial`;
    this.roomSideId = inbound ? null : `${base}-dial2`;
    this.bridgeId = base;
  }

  get ended(): boolean {
    return this.done;
  }

  sendAudio(payload: Buffer): void {
    const leg = this.leg;
    if (leg !== null) leg.send(payload);
  }

  pumpLeg(): PumpLeg | null {
    const leg = this.leg;
    if (leg === null || this.ending) return null;
    return leg instanceof RtpMediaLeg ? leg.pumpLeg() : leg instanceof WebSocketMediaLeg ? leg.pumpLeg(this.format.bytesPerSample) : null;
  }

  /** Runs the call set-up; failures end the call with a reason, never throw. */
  start(): Promise<void> {
    // every step has its own timeout; this bounds them all, and an event that never comes
    const deadlineMs = this.opts.dialTimeoutS * 1000 + SETUP_SLACK_REQUESTS * this.opts.requestTimeoutMs;
    this.setupTimer = setTimeout(() => {
      if (!this.answered && !this.ending) {
        this.log.warn({ deadlineMs }, 'call set-up did not finish in time');
        void this.finish({ reason: 'failed', message: `call set-up did not finish within ${deadlineMs} ms` });
      }
    }, deadlineMs);
    this.setupTimer.unref();
    this.setup = this.run();
    return this.setup;
  }

  private async run(): Promise<void> {
    if (this.videoFormat) return this.inbound ? this.runInboundVideo(this.videoFormat) : this.runVideo(this.videoFormat);
    const { link, app } = this.opts;
    try {
      this.track(this.emId);
      let leg: Leg;
      if (this.opts.transport === 'websocket') {
        const ch = await link.externalMedia({ channelId: this.emId, app, format: this.format === PCMU ? 'ulaw' : 'slin16', transport: 'websocket' });
        this.created.add(this.emId);
        if (this.ending) return;
        const connId = ch.channelvars?.MEDIA_WEBSOCKET_CONNECTION_ID;
        if (!connId) throw new Error('externalMedia answered without MEDIA_WEBSOCKET_CONNECTION_ID (is chan_websocket loaded?)');
        const base = new URL(this.opts.ariUrl);
        base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
        base.pathname = `/media/${encodeURIComponent(connId)}`;
        leg = new WebSocketMediaLeg(base.toString(), this.opts.requestTimeoutMs);
      } else {
        const rtp = await RtpMediaLeg.create(this.opts.rtpBindAddress);
        leg = rtp;
        this.leg = rtp;
        const ch = await link.externalMedia({ channelId: this.emId, app, format: 'ulaw', transport: 'udp', externalHost: rtp.localAddress });
        this.created.add(this.emId);
        if (this.ending) return;
        const host = ch.channelvars?.UNICASTRTP_LOCAL_ADDRESS;
        const port = Number(ch.channelvars?.UNICASTRTP_LOCAL_PORT);
        if (!host || !Number.isInteger(port) || port <= 0) throw new Error('externalMedia answered without UNICASTRTP_LOCAL_ADDRESS/PORT');
        rtp.connect(host, port);
      }
      this.leg = leg;
      leg.onAudio = (payload) => {
        const cb = this.onAudio;
        if (cb !== null) cb(payload);
      };
      leg.once('close', (why) => this.finishSoon({ reason: 'media_lost', message: why }));
      if (!leg.isOpen) await this.waitOpen(leg);
      if (this.ending) return;

      await link.createBridge(this.bridgeId, 'mixing');
      this.bridgeCreated = true;
      if (this.ending) return;
      await this.addToBridge(this.emId);
      if (this.ending) return;
      if (this.inbound) await this.answerInbound();
      else await this.dial();
    } catch (err) {
      const message = (err as Error).message;
      if (!this.ending) {
        // the likeliest cause when many calls are up: Asterisk's HTTP session limit (http.conf)
        const hint = /media socket closed \(1006\)/.test(message) ? "Asterisk closed the media socket at once: is http.conf's sessionlimit (default 100) below the concurrent calls?" : undefined;
        this.log.warn(hint ? { err: message, hint } : { err: message }, 'call set-up failed');
      }
      void this.finish({ reason: 'failed', message });
    }
  }

  /**
   * A call with video: Asterisk dials the bridge's SIP leg into our app; once it is up there, the
   * channel goes on into the dialed extension (a video room), carrying audio and video itself.
   */
  private async runVideo(video: VideoCodec): Promise<void> {
    try {
      const leg = await this.createSipLeg(video);
      if (this.ending) return;
      this.roomSideId = this.dialId;
      this.track(this.dialId);
      const name = this.req.name.replace(/["<>\\]/g, '') + (this.req.content ? ' (content)' : '');
      // CONFMUX_CONTENT=1 makes the room's dialplan pick the marked presenter profile
      await this.dialSipLeg(leg, this.dialId, name, { CONFMUX_TERMINAL: this.req.number, CONFMUX_TERMINAL_NAME: name, CONFMUX_CALL: this.req.callId, CONFMUX_CONTENT: this.req.content ? '1' : '0' });
      this.created.add(this.dialId);
      if (!this.ending && !this.answered) this.emit('ringing');
    } catch (err) {
      const message = (err as Error).message;
      if (!this.ending) this.log.warn({ err: message }, 'video call set-up failed');
      void this.finish({ reason: 'failed', message });
    }
  }

  /** Asterisk dials the SIP leg (PJSIP, u-law and the leg's video codec) into our app as `channelId`. */
  private async dialSipLeg(leg: SipMediaLeg, channelId: string, name: string, variables?: Record<string, string>): Promise<void> {
    await this.opts.link.originate({
      endpoint: `PJSIP/${this.opts.sipEndpoint}/${leg.uri}`,
      app: this.opts.app,
      appArgs: `video,${this.req.callId}`,
      channelId,
      otherChannelId: `${channelId}-other`,
      callerId: `"${name}" <${this.req.number}>`,
      timeoutS: this.opts.dialTimeoutS,
      formats: `ulaw,${leg.video.sdpName.toLowerCase()}`,
      ...(variables ? { variables } : {}),
    });
  }

  /** The bridge's SIP user agent side of a call with video, wired to this call. */
  private async createSipLeg(video: VideoCodec): Promise<SipMediaLeg> {
    // the leg delivers straight to this call's onAudio / onVideo
    const leg = await SipMediaLeg.create(this.opts.sip!, this.opts.rtpBindAddress, `confmux-${this.req.callId}`, video, this);
    this.leg = leg;
    leg.on('keyframeRequest', () => this.emit('keyframeRequest'));
    // DTMF from the PBX arrives as RFC 4733 events on this leg's audio
    leg.on('dtmf', (digit) => {
      if (this.answered && !this.ending) this.emit('dtmf', digit);
    });
    leg.once('close', (why) => this.finishSoon({ reason: 'remote', message: why }));
    return leg;
  }

  /**
   * An invitation taken with video: Asterisk dials the bridge's SIP leg into our app (channel
   * emId); once it is up there, the inviting channel is answered and bridged with it, so the
   * caller's audio and video reach the terminal through the leg.
   */
  private async runInboundVideo(video: VideoCodec): Promise<void> {
    const { link } = this.opts;
    try {
      const leg = await this.createSipLeg(video);
      if (this.ending) return;
      this.track(this.emId);
      this.track(this.dialId);
      await link.createBridge(this.bridgeId, 'mixing');
      this.bridgeCreated = true;
      if (this.ending) return;
      await this.dialSipLeg(leg, this.emId, this.req.name.replace(/["<>\\]/g, ''));
      this.created.add(this.emId);
    } catch (err) {
      const message = (err as Error).message;
      if (!this.ending) this.log.warn({ err: message }, 'video call set-up failed');
      void this.finish({ reason: 'failed', message });
    }
  }

  /** The SIP leg of a video invitation is up in our app: bridge it, then answer the caller. */
  private async onInboundVideoLegUp(): Promise<void> {
    try {
      await this.addToBridge(this.emId);
      if (this.ending) return;
      await this.answerInbound();
      this.requestKeyframe();
    } catch (err) {
      void this.finish({ reason: 'failed', message: (err as Error).message });
    }
  }

  /** The SIP leg is up in our app: check the extension, send the channel on into it. */
  private async onVideoLegUp(): Promise<void> {
    const { link } = this.opts;
    try {
      const exists = await link.getVariable(this.dialId, `DIALPLAN_EXISTS(${this.opts.context},${this.req.to},1)`);
      if (this.ending) return;
      if (exists !== '1') {
        void this.finish({ reason: 'not_found', cause: 1, message: `no extension ${this.req.to} in context ${this.opts.context}` });
        return;
      }
      this.continued = true;
      await link.continueInDialplan(this.dialId, this.opts.context, this.req.to, 1);
      // out of our app now: subscribe to keep hearing of its hang-up and of kicks
      await link.subscribeChannel(this.dialId);
      if (this.ending) return;
      this.answered = true;
      this.emit('answered');
      this.requestKeyframe();
    } catch (err) {
      void this.finish({ reason: 'failed', message: (err as Error).message });
    }
  }

  /** Outbound: the dialled extension must exist; then originate the Local channel into it. */
  private async dial(): Promise<void> {
    const { link, app } = this.opts;
    // a Local channel to a missing extension fails with cause 0 after the fact; ask first
    const exists = await link.getVariable(this.emId, `DIALPLAN_EXISTS(${this.opts.context},${this.req.to},1)`);
    if (this.ending) return;
    if (exists !== '1') {
      void this.finish({ reason: 'not_found', cause: 1, message: `no extension ${this.req.to} in context ${this.opts.context}` });
      return;
    }
    const roomSide = this.roomSideId!;
    this.track(this.dialId);
    this.track(roomSide);
    const name = this.req.name.replace(/["<>\\]/g, '');
    await link.originate({
      endpoint: `Local/${this.req.to}@${this.opts.context}`,
      app,
      appArgs: `dial,${this.req.callId}`,
      channelId: this.dialId,
      otherChannelId: roomSide,
      callerId: `"${name}" <${this.req.number}>`,
      timeoutS: this.opts.dialTimeoutS,
      // inherited by the ;2 half, so the dialplan can tell who is calling and which call this is
      variables: { __CONFMUX_TERMINAL: this.req.number, __CONFMUX_TERMINAL_NAME: name, __CONFMUX_CALL: this.req.callId },
    });
    this.created.add(this.dialId);
    if (this.ending) return;
    await this.adoptRoomSide(roomSide);
    if (!this.ending && !this.answered) this.emit('ringing');
  }

  /** Inbound: answer the inviting channel and bridge it with the media channel. */
  private async answerInbound(): Promise<void> {
    const { link } = this.opts;
    const dial = this.inbound!;
    this.track(this.dialId);
    this.created.add(this.dialId);
    await link.answer(this.dialId);
    if (this.ending) return;
    await this.addToBridge(this.dialId);
    if (this.ending) return;
    this.answered = true;
    this.emit('answered');
    await this.showCallerId();
    // the console shows the other half of the inviting Local channel (…;1) in the room
    const m = /^(Local\/.+);2$/.exec(dial.channelName);
    if (!m) return;
    const peer = (await link.listChannels()).find((c) => c.name === `${m[1]};1`);
    if (peer && !this.ending) {
      this.roomSideId = peer.id;
      this.track(peer.id);
      await this.adoptRoomSide(peer.id);
    }
  }

  /** Watches the room-side channel (not in our app) for kicks and console hang-ups. */
  private async adoptRoomSide(channelId: string): Promise<void> {
    await this.opts.link.subscribeChannel(channelId).catch((err: unknown) => this.log.debug({ err: (err as Error).message }, 'room-side channel gone early'));
  }

  /**
   * Shows the terminal's number and name on the room-side channel. That channel is not in our app
   * (ARI may not set its variables), but it is the other half of a Local pair whose half we hold:
   * a connected-line update on our half becomes the caller ID of the other half (core_unreal).
   */
  private async showCallerId(): Promise<void> {
    const { link } = this.opts;
    const name = this.req.name.replace(/["<>\\]/g, '');
    try {
      await link.setVariable(this.dialId, 'CONNECTEDLINE(name)', name);
      await link.setVariable(this.dialId, 'CONNECTEDLINE(num)', this.req.number);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'caller ID not shown');
    }
  }

  sendVideo(frame: Uint8Array, timestamp: number): void {
    const leg = this.leg;
    if (leg instanceof SipMediaLeg) leg.sendVideo(frame, timestamp);
  }

  requestKeyframe(): void {
    const leg = this.leg;
    if (leg instanceof SipMediaLeg) leg.requestKeyframe();
  }

  sendDtmf(digits: string): Promise<void> {
    if (this.ending || !this.answered) return Promise.resolve();
    // a video call's channel is our SIP leg itself: its DTMF goes as RFC 4733 events on the leg
    if (this.leg instanceof SipMediaLeg) return this.leg.sendDtmf(digits);
    // DTMF sent to our half of the dial channel is received by the PBX's side
    return this.opts.link.sendDtmf(this.dialId, digits);
  }

  private waitOpen(leg: Leg): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('media leg did not open in time')), this.opts.requestTimeoutMs);
      leg.once('open', () => {
        clearTimeout(timer);
        resolve();
      });
      leg.once('close', (why) => {
        clearTimeout(timer);
        reject(new Error(why));
      });
    });
  }

  private track(channelId: string): void {
    this.opts.track(channelId, this);
  }

  /** ARI events for this call's channels, routed by the driver. */
  handleEvent(event: AriEvent): void {
    switch (event.type) {
      case 'StasisStart':
        if (event.channel.id === this.emId && this.inbound && this.videoFormat && !this.answered && !this.ending) {
          void this.onInboundVideoLegUp();
          break;
        }
        if (event.channel.id !== this.dialId || this.inbound || this.answered || this.ending) break;
        if (this.videoFormat) void this.onVideoLegUp();
        else void this.onAnswered();
        break;
      case 'ChannelDtmfReceived':
        // (a video call's channel receives the digits the terminal sends: not for the terminal)
        if (event.channel.id === this.dialId && this.answered && !this.ending && !this.videoFormat) this.emit('dtmf', event.digit);
        break;
      case 'ChannelVarset':
        // ConfBridge sets CONFBRIDGE_RESULT=KICKED on the participant an operator kicked
        if (event.channel.id === this.roomSideId && event.variable === 'CONFBRIDGE_RESULT' && event.value === 'KICKED') this.kicked = true;
        break;
      case 'ChannelHangupRequest':
        if (!this.ending && (event.channel.id === this.roomSideId || event.channel.id === this.dialId)) this.pbxHangup = true;
        break;
      case 'ChannelDestroyed': {
        const id = event.channel.id;
        this.destroyed.add(id);
        this.destroyWaiters.get(id)?.();
        if (this.ending) break;
        if (id === this.dialId || id === this.roomSideId) {
          if (this.kicked) void this.finish({ reason: 'kicked', cause: event.cause, message: 'removed from the room by an operator' });
          else if (!this.answered) void this.finish({ reason: reasonForCause(event.cause), cause: event.cause, message: event.cause_txt });
          else this.finishSoon({ reason: 'remote', cause: event.cause, message: this.pbxHangup ? 'the PBX hung up the call' : event.cause_txt });
        } else if (id === this.emId) {
          this.finishSoon({ reason: 'media_lost', cause: event.cause, message: event.cause_txt });
        }
        break;
      }
      case 'StasisEnd':
        // the dial channel left our app (hung up or moved away): it cannot come back to this call
        if (event.channel.id === this.dialId && this.answered && !this.ending && !this.continued) {
          setTimeout(() => {
            if (!this.ending) void this.finish(this.kicked ? { reason: 'kicked', message: 'removed from the room by an operator' } : { reason: 'remote' });
          }, 300).unref();
        }
        break;
      default:
        break;
    }
  }

  /**
   * Ends the call a moment from now unless something else ends it first. When Asterisk dies, its
   * media sockets and channels go a moment before the ARI socket closes: the moment lets the link
   * notice, so that the terminal is told pbx_lost. (An orderly `core stop` hangs calls up about a
   * second before ARI closes: those end as remote, and the pbx message follows.)
   */
  private finishSoon(end: CallEnd): void {
    setTimeout(() => {
      if (!this.ending) void this.finish(end);
    }, FINISH_GRACE_MS).unref();
  }

  /**
   * Adds a channel to the call's bridge. Seen in CI and under load: a channel just created (or just
   * in StasisStart) is "not in Stasis application" yet for a moment; that is retried. A channel
   * that really went away ends the call through its ChannelDestroyed instead.
   */
  private async addToBridge(channelId: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.opts.link.addChannels(this.bridgeId, [channelId]);
        return;
      } catch (err) {
        if (this.ending || attempt >= 4 || !/not in Stasis/i.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
      }
    }
  }

  private async onAnswered(): Promise<void> {
    this.created.add(this.dialId);
    try {
      await this.addToBridge(this.dialId);
    } catch (err) {
      if (!this.ending) void this.finish({ reason: 'failed', message: (err as Error).message });
      return;
    }
    if (this.ending) return;
    this.answered = true;
    this.emit('answered');
    await this.showCallerId();
  }

  hangup(reason: HangupReason = 'normal'): Promise<void> {
    return this.finish({ reason });
  }

  /** The driver lost ARI: nothing can be cleaned up through it now. */
  abandon(end: CallEnd): void {
    if (this.ending) return;
    this.ending = true;
    this.endPromise = Promise.resolve();
    this.leg?.close();
    this.release();
    this.done = true;
    this.emit('ended', end);
  }

  private finish(end: CallEnd): Promise<void> {
    if (this.endPromise) return this.endPromise;
    this.ending = true;
    this.endPromise = this.setup.then(() => this.cleanup()).then(() => {
      this.release();
      this.done = true;
      this.log.info({ reason: end.reason, cause: end.cause }, 'call ended');
      this.emit('ended', end);
    });
    return this.endPromise;
  }

  private release(): void {
    if (this.setupTimer) clearTimeout(this.setupTimer);
    this.onAudio = null;
    this.onVideo = null;
    for (const id of [this.emId, this.dialId, this.roomSideId]) if (id) this.opts.track(id, null);
  }

  private async cleanup(): Promise<void> {
    const { link } = this.opts;
    this.leg?.close();
    const hangups: Promise<unknown>[] = [];
    const waits: Promise<void>[] = [];
    for (const id of [this.dialId, this.emId]) {
      if (!this.created.has(id) || this.destroyed.has(id)) continue;
      waits.push(this.waitDestroyed(id, 3000));
      // an inbound call the terminal ends: the inviting side sees a normal clearing
      hangups.push(this.hangupWithRetry(id).catch((err: unknown) => this.log.debug({ err: (err as Error).message, channel: id }, 'hangup failed')));
    }
    await Promise.allSettled(hangups);
    await Promise.allSettled(waits);
    if (this.bridgeCreated) await link.destroyBridge(this.bridgeId).catch((err: unknown) => this.log.debug({ err: (err as Error).message }, 'bridge destroy failed'));
  }

  /**
   * A hang-up that failed for another reason than "no such channel" (ARI busy or restarting, e.g.
   * during a `core reload`) is tried again, so that no channel is left behind; the driver's orphan
   * sweep catches what still slips through.
   */
  private async hangupWithRetry(id: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.opts.link.hangup(id);
      } catch (err) {
        if (attempt >= 3 || !this.opts.link.isUp) throw err;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  private waitDestroyed(id: string, timeoutMs: number): Promise<void> {
    if (this.destroyed.has(id)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.destroyWaiters.delete(id);
        resolve();
      }, timeoutMs);
      this.destroyWaiters.set(id, () => {
        clearTimeout(timer);
        this.destroyWaiters.delete(id);
        resolve();
      });
    });
  }
}

