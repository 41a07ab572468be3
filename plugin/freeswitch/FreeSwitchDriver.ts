/**
 * The FreeSWITCH driver: ESL (through EslLink) for control, credentials and presence, the
 * `unicast` stream of a parked loopback channel for audio, and for calls with video a SIP leg that
 * FreeSWITCH dials from a sofia profile (the same SipServer and SipMediaLeg as on Asterisk). It checks a terminal's password against
 * FreeSWITCH's own directory (`user_data <number>@<domain> param password`), so there is no second
 * user store.
 *
 * Tested only against a FAKE event socket replaying transcripts of a real FreeSWITCH 1.10.12 plus
 * scripted answers (tests/fixtures/FakeEslServer.ts); never against a live FreeSWITCH. What each
 * part rests on is said in FreeSwitchCall.ts, FreeSwitchInvite.ts and docs/operations.md.
 */
import { EventEmitter } from 'node:events';
import { safeEqual } from '../credentials.ts';
import type { Logger } from '../../bridge/logger.ts';
import type { Config } from '../../bridge/config.ts';
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { DriverEvents, MediaServerDriver, PlaceCallRequest, Presence } from '../driver.ts';
import { EslApiError, type EslEvent, type EslLink } from './EslLink.ts';
import { NetEslLink } from './NetEslLink.ts';
import { FreeSwitchCall, type InboundLeg } from './FreeSwitchCall.ts';
import { FreeSwitchInvite } from './FreeSwitchInvite.ts';
import { SipServer } from '../sip/SipServer.ts';
import { H264, VP8, type VideoCodec } from '../../bridge/protocol/videoCodecs.ts';

/** What the driver subscribes to (plain events; BACKGROUND_JOB for bgapi). */
export const ESL_EVENTS: readonly string[] = Object.freeze([
  'CHANNEL_CREATE',
  'CHANNEL_ANSWER',
  'CHANNEL_PARK',
  'CHANNEL_HANGUP',
  'CHANNEL_HANGUP_COMPLETE',
  'DTMF',
  'BACKGROUND_JOB',
  'CUSTOM',
  'conference::maintenance',
]);

/** Global variable holding a terminal's state: `global_getvar confmux_presence_1001` -> in_use. */
export const PRESENCE_PREFIX = 'confmux_presence_';
const NUMBER = /^[A-Za-z0-9_.+-]{1,40}$/;

export interface FreeSwitchDriverOptions {
  config: Config['freeswitch'];
  log: Logger;
  /** for tests: another EslLink implementation */
  link?: EslLink;
  /**
   * With several worker processes every worker's event socket sees every invitation: each takes
   * only those for the numbers routed to it (the same hash as the primary's), and leaves the rest.
   */
  owns?: (number: string) => boolean;
}

export class FreeSwitchDriver extends EventEmitter<DriverEvents> implements MediaServerDriver {
  readonly kind = 'freeswitch' as const;
  readonly videoCodecs: readonly VideoCodec[] = [H264, VP8];
  private sip: SipServer | null = null;
  private readonly cfg: Config['freeswitch'];
  private readonly log: Logger;
  private readonly link: EslLink;
  private readonly byUuid = new Map<string, FreeSwitchCall | FreeSwitchInvite>();
  private readonly calls = new Set<FreeSwitchCall>();
  private readonly invites = new Set<FreeSwitchInvite>();
  private domain: string | null;
  private closed = false;

  private readonly owns: (number: string) => boolean;

  constructor(opts: FreeSwitchDriverOptions) {
    super();
    this.owns = opts.owns ?? (() => true);
    this.cfg = opts.config;
    this.log = opts.log.child({ driver: 'freeswitch' });
    this.domain = this.cfg.domain || null;
    this.link =
      opts.link ??
      new NetEslLink({
        host: this.cfg.host,
        port: this.cfg.port,
        password: this.cfg.password,
        events: ESL_EVENTS,
        requestTimeoutMs: this.cfg.requestTimeoutMs,
        log: this.log,
      });
    this.link.on('event', (event) => this.onEvent(event));
    this.link.on('up', () => {
      this.log.info({ host: this.cfg.host, port: this.cfg.port }, 'ESL link up');
      void this.hangupOrphans();
      this.emit('up');
    });
    this.link.on('down', (err) => {
      this.log.warn({ err: err.message }, 'ESL link down');
      for (const call of [...this.calls]) call.abandon({ reason: 'pbx_lost', message: 'the media server link was lost' });
      for (const invite of [...this.invites]) invite.handleEvent(lostEvent);
      this.emit('down', err);
    });
  }

  get isUp(): boolean {
    return this.link.isUp;
  }

  /** Connects to the event socket. Rejects if the first attempt fails; the link keeps retrying. */
  async start(): Promise<void> {
    if (!this.sip) {
      this.sip = await SipServer.listen(this.cfg.sipAddress, this.cfg.sipPort);
      this.sip.on('error', (err) => this.log.warn({ err: err.message }, 'SIP socket error'));
      this.log.info({ address: `${this.sip.localHost}:${this.sip.localPort}`, profile: this.cfg.sipProfile }, 'SIP leg listening (video calls)');
    }
    await this.link.connect();
  }

  private onEvent(event: EslEvent): void {
    // a loopback half we have not seen yet names its partner in other_loopback_leg_uuid
    const owner = this.byUuid.get(event.uuid) ?? this.byUuid.get(event.get('variable_other_loopback_leg_uuid') ?? '');
    if (owner) {
      owner.handleEvent(event);
      return;
    }
    if (event.name === 'CHANNEL_PARK') {
      const number = event.get('variable_confmux_invite');
      if (number !== undefined && this.owns(number)) this.onInvite(event, number);
    }
  }

  /** A channel parked by the invitation extension: FreeSWITCH invites a terminal. */
  private onInvite(park: EslEvent, number: string): void {
    const invite = new FreeSwitchInvite(park, number, this.link, (inv, req) => this.acceptInvite(inv, req));
    this.byUuid.set(invite.uuid, invite);
    if (invite.otherUuid) this.byUuid.set(invite.otherUuid, invite);
    this.invites.add(invite);
    invite.once('cancelled', () => this.forgetInvite(invite));
    this.log.info({ terminal: number, uuid: invite.uuid }, 'invitation from FreeSWITCH');
    if (this.listenerCount('incoming') === 0 || !NUMBER.test(number)) {
      this.forgetInvite(invite);
      void invite.reject('unavailable').catch(() => undefined);
      return;
    }
    this.emit('incoming', invite);
  }

  private forgetInvite(invite: FreeSwitchInvite): void {
    this.invites.delete(invite);
    for (const uuid of [invite.uuid, invite.otherUuid]) if (uuid && this.byUuid.get(uuid) === invite) this.byUuid.delete(uuid);
  }

  private acceptInvite(invite: FreeSwitchInvite, req: { callId: string; name: string; codec: AudioCodec }): FreeSwitchCall {
    this.forgetInvite(invite);
    return this.startCall({ callId: req.callId, number: invite.to, name: req.name, to: invite.to, codec: req.codec }, { uuid: invite.uuid, otherUuid: invite.otherUuid });
  }

  /**
   * Channels a bridge created carry confmux_bridge=<bridgeId>; after a crash or a lost link they
   * sit parked in rooms with nobody streaming them: hang them up (`hupall <cause> <var> <value>`).
   */
  private async hangupOrphans(): Promise<void> {
    if (this.calls.size > 0) return;
    try {
      await this.link.api(`hupall MANAGER_REQUEST confmux_bridge ${this.cfg.bridgeId}`);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'hupall of earlier channels');
    }
  }

  /** The directory domain: from config, else FreeSWITCH's `domain` global (asked once). */
  private async directoryDomain(): Promise<string> {
    if (this.domain) return this.domain;
    const domain = (await this.link.api('global_getvar domain')).trim();
    if (!/^[A-Za-z0-9_.:-]+$/.test(domain)) throw new Error(`FreeSWITCH's domain global is unusable: ${JSON.stringify(domain)}`);
    this.domain = domain;
    return domain;
  }

  async verifyPassword(number: string, password: string): Promise<boolean> {
    if (!NUMBER.test(number)) return false;
    const domain = await this.directoryDomain();
    let stored: string;
    try {
      // a known user returns the bare value, an unknown one `-ERR no reply` (transcript 03)
      stored = await this.link.api(`user_data ${number}@${domain} param password`);
    } catch (err) {
      if (err instanceof EslApiError) return false;
      throw err;
    }
    if (stored === '') return false;
    return safeEqual(password, stored);
  }

  /**
   * A terminal's state as a global variable, `confmux_presence_<number>` = available | in_use |
   * unavailable: what an fs_cli operator reads with `global_getvar confmux_presence_1001` and a
   * dialplan with `${confmux_presence_1001}`. FreeSWITCH has no device state to publish into, and
   * a SIP presence (PRESENCE_IN) would need a subscriber to be useful.
   */
  async setPresence(number: string, presence: Presence): Promise<void> {
    if (!NUMBER.test(number)) return;
    await this.link.api(`global_setvar ${PRESENCE_PREFIX}${number}=${presence}`);
  }

  /** Terminals whose presence global is not `unavailable` (`global_getvar` with no name lists all). */
  async listPresent(): Promise<string[]> {
    const all = await this.link.api('global_getvar');
    const present: string[] = [];
    for (const line of all.split('\n')) {
      if (!line.startsWith(PRESENCE_PREFIX)) continue;
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const number = line.slice(PRESENCE_PREFIX.length, eq);
      if (NUMBER.test(number) && line.slice(eq + 1).trim() !== 'unavailable') present.push(number);
    }
    return present;
  }

  placeCall(request: PlaceCallRequest): FreeSwitchCall {
    return this.startCall(request, null);
  }

  private startCall(request: PlaceCallRequest, inbound: InboundLeg | null): FreeSwitchCall {
    const call = new FreeSwitchCall(
      request,
      {
        link: this.link,
        context: this.cfg.context,
        bridgeId: this.cfg.bridgeId,
        rtpBindAddress: this.cfg.rtpBindAddress,
        dialTimeoutS: this.cfg.dialTimeoutS,
        sip: this.sip,
        sipProfile: this.cfg.sipProfile,
        log: this.log,
        track: (uuid, c) => {
          if (c) this.byUuid.set(uuid, c);
          else if (this.byUuid.get(uuid) === call) this.byUuid.delete(uuid);
        },
      },
      inbound,
    );
    this.calls.add(call);
    call.once('ended', () => this.calls.delete(call));
    if (!this.link.isUp) queueMicrotask(() => call.abandon({ reason: 'pbx_lost', message: 'the media server is not reachable' }));
    else void call.start();
    return call;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.calls].map((c) => c.hangup('shutdown')));
    await this.link.close();
    await this.sip?.close();
  }
}

/** Stands for the hangup an invitation's caller can no longer be seen to make when ESL is lost. */
const lostEvent: EslEvent = {
  name: 'CHANNEL_HANGUP',
  subclass: '',
  uuid: '',
  headers: new Map(),
  body: '',
  get: () => undefined,
};
