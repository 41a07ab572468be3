/**
 * One terminal call on FreeSWITCH. The terminal's audio goes through a parked channel that streams
 * with ESL `unicast` (UnicastMediaLeg):
 *  - a call the terminal placed: `bgapi originate {origination_uuid=<ours>,...}loopback/<to>/<context>
 *    &park()`. The `-a` half (uuid ours) parks and carries our audio; the `-b` half (found by its
 *    `other_loopback_leg_uuid`) runs the dialplan: the conference member an operator sees and kicks.
 *  - a call FreeSWITCH placed (an invitation): the parked channel that invited the terminal is
 *    answered and streams; its other loopback half is the one in the room.
 *  - a call with video: FreeSWITCH dials the bridge's SIP leg (SipMediaLeg, u-law audio and the
 *    video codec in one dialog) with `bgapi originate {...,absolute_codec_string=^^:PCMU:H264}
 *    sofia/<profile>/confmux-<call>@<bridge SIP address> <to> XML <context>`: once the bridge
 *    answers, that one channel runs the dialplan into the room, carrying audio and video itself,
 *    so the room's talker and the video it shows are the same participant. unicast is audio only.
 * Whichever side ends the call, every channel this call created is killed (`uuid_kill`) and its
 * sockets closed before `ended` is emitted.
 *
 * Verified against transcripts only (never a live FreeSWITCH): originate/bgapi replies, the
 * CHANNEL_CREATE/ANSWER/PARK/HANGUP events and their headers, kick-member, uuid_kill, sendmsg
 * unicast's `+OK`. Not in any transcript, written from FreeSWITCH's documentation: DTMF events,
 * uuid_send_dtmf, uuid_answer, and the variables we set on originate reaching the events; and the
 * whole video path (sofia dial string, absolute_codec_string, the INVITE mod_sofia sends), tested
 * against a fake only.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../bridge/logger.ts';
import { L16_8K, PCMU, type AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { VideoCodec } from '../../bridge/protocol/videoCodecs.ts';
import type { HangupReason } from '../../bridge/protocol/messages.ts';
import type { CallEnd, DriverCall, DriverCallEvents, PlaceCallRequest, PumpLeg } from '../driver.ts';
import { EslApiError, type EslEvent, type EslLink } from './EslLink.ts';
import { UnicastMediaLeg } from './UnicastMediaLeg.ts';
import { SipMediaLeg } from '../sip/SipMediaLeg.ts';
import type { SipServer } from '../sip/SipServer.ts';

export interface FreeSwitchCallOptions {
  link: EslLink;
  context: string;
  /** set as confmux_bridge on every channel: orphans are found by it */
  bridgeId: string;
  rtpBindAddress: string;
  dialTimeoutS: number;
  /** the bridge's SIP user agent, for calls with video (null: audio only) */
  sip: SipServer | null;
  /** the sofia profile FreeSWITCH dials the SIP leg from */
  sipProfile: string;
  log: Logger;
  /** called when a channel of this call is known / forgotten, for event routing */
  track(uuid: string, call: FreeSwitchCall | null): void;
}

/** A call FreeSWITCH placed: the parked channel that invited the terminal. */
export interface InboundLeg {
  uuid: string;
  /** its other loopback half (in the room), when it is a loopback channel */
  otherUuid?: string;
}

/** FreeSWITCH hangup cause names -> Q.850 numbers (switch_types.h), for `cause` in hangup. */
export const Q850: Readonly<Record<string, number>> = Object.freeze({
  UNALLOCATED_NUMBER: 1,
  NO_ROUTE_TRANSIT_NET: 2,
  NO_ROUTE_DESTINATION: 3,
  NORMAL_CLEARING: 16,
  USER_BUSY: 17,
  NO_USER_RESPONSE: 18,
  NO_ANSWER: 19,
  SUBSCRIBER_ABSENT: 20,
  CALL_REJECTED: 21,
  NUMBER_CHANGED: 22,
  DESTINATION_OUT_OF_ORDER: 27,
  INVALID_NUMBER_FORMAT: 28,
  NORMAL_UNSPECIFIED: 31,
  NORMAL_CIRCUIT_CONGESTION: 34,
  NETWORK_OUT_OF_ORDER: 38,
  NORMAL_TEMPORARY_FAILURE: 41,
  SWITCH_CONGESTION: 42,
  REQUESTED_CHAN_UNAVAIL: 44,
  INCOMPATIBLE_DESTINATION: 88,
  RECOVERY_ON_TIMER_EXPIRE: 102,
});

/**
 * What the terminal is told when a call it placed ends before it was answered, by FreeSWITCH's
 * cause name. NORMAL_CLEARING before answer is what an originate to a missing extension returned
 * (transcript 09: `-ERR NORMAL_CLEARING`), hence not_found.
 */
export function reasonForCauseName(name: string): HangupReason {
  switch (name) {
    case 'USER_BUSY':
      return 'busy';
    case 'NO_ANSWER':
    case 'NO_USER_RESPONSE':
    case 'ALLOTTED_TIMEOUT':
    case 'PROGRESS_TIMEOUT':
      return 'no_answer';
    case 'CALL_REJECTED':
      return 'rejected';
    case 'UNALLOCATED_NUMBER':
    case 'NO_ROUTE_DESTINATION':
    case 'NO_ROUTE_TRANSIT_NET':
    case 'INVALID_NUMBER_FORMAT':
    case 'NORMAL_CLEARING':
      return 'not_found';
    case 'SUBSCRIBER_ABSENT':
    case 'USER_NOT_REGISTERED':
    case 'DESTINATION_OUT_OF_ORDER':
    case 'NORMAL_CIRCUIT_CONGESTION':
    case 'NETWORK_OUT_OF_ORDER':
    case 'NORMAL_TEMPORARY_FAILURE':
    case 'SWITCH_CONGESTION':
    case 'REQUESTED_CHAN_UNAVAIL':
      return 'unavailable';
    default:
      return 'remote';
  }
}

/** Values inside `{a=b,c=d}` originate variables: no separators, no quotes, no newlines. */
function cleanVar(value: string): string {
  return value.replace(/[,{}'"\\\r\n\u0000-\u001f]/g, '').replace(/\s+/g, ' ').trim();
}

const KILL_WAIT_MS = 3000;
/**
 * A BYE on a video call's SIP leg and the channel's CHANNEL_HANGUP event arrive on two sockets in
 * either order; the event says why (kicked, the cause), so the BYE waits this long for it.
 */
const HANGUP_EVENT_GRACE_MS = 500;

export class FreeSwitchCall extends EventEmitter<DriverCallEvents> implements DriverCall {
  readonly id: string;
  /**
   * the unicast stream of a loopback channel is L16 8 kHz, a video call's SIP leg u-law; the bridge
   * converts to the terminal's codec
   */
  readonly format: AudioCodec;
  readonly videoFormat: VideoCodec | null;
  onAudio: ((payload: Buffer) => void) | null = null;
  onVideo: ((frame: Buffer, timestamp: number, keyframe: boolean) => void) | null = null;
  private readonly req: PlaceCallRequest;
  private readonly opts: FreeSwitchCallOptions;
  private readonly log: Logger;
  private readonly inbound: InboundLeg | null;
  /** the parked channel that streams our audio (the `-a` half we originate, or the invited channel) */
  readonly mediaUuid: string;
  /** the channel in the room (the other loopback half), once known */
  private roomUuid: string | null;
  private leg: UnicastMediaLeg | SipMediaLeg | null = null;
  private created = false;
  private rang = false;
  private mediaStarted = false;
  private answered = false;
  private kicked = false;
  private ending = false;
  private done = false;
  private endPromise: Promise<void> | null = null;
  private readonly causes = new Map<string, string>();
  private readonly gone = new Set<string>();
  private readonly goneWaiters = new Map<string, () => void>();

  constructor(req: PlaceCallRequest, opts: FreeSwitchCallOptions, inbound: InboundLeg | null = null) {
    super();
    this.req = req;
    this.opts = opts;
    this.id = req.callId;
    this.inbound = inbound;
    // video only on calls the terminal places (an invitation from FreeSWITCH stays audio only)
    this.videoFormat = req.video && opts.sip && !inbound ? req.video : null;
    this.format = this.videoFormat ? PCMU : L16_8K;
    this.log = opts.log.child({ callId: req.callId });
    this.mediaUuid = inbound ? inbound.uuid : randomUUID();
    this.roomUuid = inbound?.otherUuid ?? null;
  }

  get ended(): boolean {
    return this.done;
  }

  /** channels this call routes events for */
  get uuids(): string[] {
    return this.roomUuid ? [this.mediaUuid, this.roomUuid] : [this.mediaUuid];
  }

  sendAudio(payload: Buffer): void {
    const leg = this.leg;
    if (leg !== null) leg.send(payload);
  }

  pumpLeg(): PumpLeg | null {
    const leg = this.leg;
    return this.ending || !(leg instanceof UnicastMediaLeg) ? null : leg.pumpLeg();
  }

  sendVideo(frame: Uint8Array, timestamp: number): void {
    const leg = this.leg;
    if (leg instanceof SipMediaLeg) leg.sendVideo(frame, timestamp);
  }

  requestKeyframe(): void {
    const leg = this.leg;
    if (leg instanceof SipMediaLeg) leg.requestKeyframe();
  }

  /** Runs the set-up; failures end the call with a reason, never throw. */
  async start(): Promise<void> {
    // route this call's channels to it from the start: an invited channel may hang up any moment
    this.opts.track(this.mediaUuid, this);
    if (this.roomUuid) this.opts.track(this.roomUuid, this);
    try {
      if (this.videoFormat) {
        await this.dialVideo(this.videoFormat);
        return;
      }
      const leg = await UnicastMediaLeg.create(this.opts.rtpBindAddress);
      this.leg = leg;
      leg.onAudio = (payload) => {
        const cb = this.onAudio;
        if (cb !== null) cb(payload);
      };
      leg.once('close', (why) => {
        if (!this.ending) void this.finish({ reason: 'media_lost', message: why });
      });
      if (this.ending) return;
      if (this.inbound) await this.answerInbound();
      else await this.dial();
    } catch (err) {
      if (this.ending) return;
      if (err instanceof EslApiError && err.hangupCause) {
        const name = this.bestCause(err.hangupCause);
        void this.finish({ reason: reasonForCauseName(name), cause: Q850[name], message: name });
        return;
      }
      const message = (err as Error).message;
      this.log.warn({ err: message }, 'call set-up failed');
      void this.finish({ reason: 'failed', message });
    }
  }

  /** Variables every channel the bridge originates carries (what events and hupall find it by). */
  private originateVars(name: string): string[] {
    return [
      `origination_uuid=${this.mediaUuid}`,
      `confmux_call=${cleanVar(this.req.callId)}`,
      `confmux_bridge=${this.opts.bridgeId}`,
      `confmux_terminal=${cleanVar(this.req.number)}`,
      `origination_caller_id_number=${cleanVar(this.req.number)}`,
      `origination_caller_id_name='${name}'`,
      `originate_timeout=${this.opts.dialTimeoutS}`,
    ];
  }

  private async dial(): Promise<void> {
    const { link } = this.opts;
    const vars = this.originateVars(cleanVar(this.req.name) || this.req.number);
    this.created = true;
    // bgapi: a blocking api originate would hold the whole ESL connection while a phone rings
    const result = await link.bgapi(`originate {${vars.join(',')}}loopback/${this.req.to}/${this.opts.context} &park()`, (this.opts.dialTimeoutS + 10) * 1000);
    if (!result.startsWith('+OK')) throw new Error(`originate: ${result.trim()}`);
    if (this.ending) {
      // ended while it was ringing and the kill came too early to find the channel: kill it now
      await this.kill(this.mediaUuid);
      return;
    }
    await this.startMedia();
  }

  /**
   * A call with video: FreeSWITCH dials the bridge's SIP leg from the sofia profile and, once the
   * bridge answers, runs the dialled extension (a video room) on that channel. A content leg is
   * marked (confmux_content=1): the room's dialplan gives it the video floor.
   */
  private async dialVideo(video: VideoCodec): Promise<void> {
    // the leg delivers straight to this call's onAudio / onVideo
    const leg = await SipMediaLeg.create(this.opts.sip!, this.opts.rtpBindAddress, `confmux-${this.req.callId}`, video, this);
    this.leg = leg;
    leg.on('keyframeRequest', () => {
      if (!this.ending) this.emit('keyframeRequest');
    });
    // the leg's own channel sends the room's DTMF to us as RFC 4733 events
    leg.on('dtmf', (digit) => {
      if (this.answered && !this.ending) this.emit('dtmf', digit);
    });
    leg.once('open', () => {
      if (this.ending || this.answered) return;
      this.answered = true;
      this.emit('answered');
    });
    leg.once('close', (why) => {
      if (this.ending) return;
      const timer = setTimeout(() => {
        if (!this.ending) void this.finish({ reason: this.kicked ? 'kicked' : this.answered ? 'remote' : 'failed', message: why });
      }, HANGUP_EVENT_GRACE_MS);
      timer.unref();
    });
    if (this.ending) return;
    const base = cleanVar(this.req.name) || this.req.number;
    const vars = [
      ...this.originateVars(this.req.content ? `${base} (content)` : base),
      `confmux_content=${this.req.content ? 1 : 0}`,
      // exactly u-law and the terminal's video codec: what the leg answers with
      `absolute_codec_string=^^:PCMU:${video.sdpName}`,
    ];
    this.created = true;
    const target = leg.uri.slice('sip:'.length);
    const result = await this.opts.link.bgapi(`originate {${vars.join(',')}}sofia/${this.opts.sipProfile}/${target} ${this.req.to} XML ${this.opts.context}`, (this.opts.dialTimeoutS + 10) * 1000);
    if (!result.startsWith('+OK')) throw new Error(`originate: ${result.trim()}`);
    if (this.ending) await this.kill(this.mediaUuid);
  }

  private async answerInbound(): Promise<void> {
    this.created = true;
    await this.opts.link.api(`uuid_answer ${this.mediaUuid}`);
    if (this.ending) return;
    // it waits in park() in the dialplan (the invitation extension)
    await this.startMedia();
  }

  /** Starts the unicast stream on the parked, answered channel; the call is answered from here on. */
  private async startMedia(): Promise<void> {
    const leg = this.leg;
    if (this.mediaStarted || this.ending || !(leg instanceof UnicastMediaLeg)) return;
    this.mediaStarted = true;
    await this.opts.link.sendmsg(this.mediaUuid, leg.unicastHeaders());
    if (this.ending) return;
    this.answered = true;
    this.emit('answered');
  }

  sendDtmf(digits: string): Promise<void> {
    if (this.ending || !this.answered) return Promise.resolve();
    // a video call's channel is in the room itself: digits go to it as RFC 4733 events on the leg
    if (this.leg instanceof SipMediaLeg) return this.leg.sendDtmf(digits);
    // DTMF "sent" on our half of the loopback pair arrives as DTMF on the half in the room
    return this.opts.link.api(`uuid_send_dtmf ${this.mediaUuid} ${digits}`).then(() => undefined);
  }

  /** FreeSWITCH events for this call's channels, routed by the driver. */
  handleEvent(event: EslEvent): void {
    const uuid = event.uuid;
    if (uuid !== this.mediaUuid && uuid !== this.roomUuid) {
      // the other loopback half, announced by its CHANNEL_CREATE
      if (event.get('variable_other_loopback_leg_uuid') === this.mediaUuid && !this.roomUuid) {
        this.roomUuid = uuid;
        this.opts.track(uuid, this);
      } else return;
    }
    switch (event.name) {
      case 'CHANNEL_CREATE':
        if (uuid === this.mediaUuid && !this.rang && !this.inbound) {
          this.rang = true;
          if (!this.ending) this.emit('ringing');
        }
        break;
      case 'CHANNEL_PARK':
        if (uuid === this.mediaUuid && !this.inbound && !this.videoFormat) {
          void this.startMedia().catch((err: unknown) => {
            if (!this.ending) void this.finish({ reason: 'failed', message: `unicast: ${(err as Error).message}` });
          });
        }
        break;
      case 'DTMF':
        // (a video call's channel receives the digits the terminal sends: not for the terminal)
        if (uuid === this.mediaUuid && this.answered && !this.ending && !this.videoFormat) {
          const digit = event.get('DTMF-Digit') ?? '';
          if (/^[0-9*#A-D]$/.test(digit)) this.emit('dtmf', digit);
        }
        break;
      case 'CUSTOM':
        if (event.subclass === 'conference::maintenance' && event.get('Action') === 'kick-member') this.kicked = true;
        break;
      case 'CHANNEL_HANGUP':
      case 'CHANNEL_HANGUP_COMPLETE': {
        const cause = event.get('Hangup-Cause') ?? 'NORMAL_CLEARING';
        if (!this.causes.has(uuid)) this.causes.set(uuid, cause);
        if (event.name === 'CHANNEL_HANGUP_COMPLETE') {
          this.gone.add(uuid);
          this.goneWaiters.get(uuid)?.();
        }
        if (this.ending) break;
        if (this.kicked) void this.finish({ reason: 'kicked', cause: Q850[cause], message: 'removed from the conference by an operator' });
        else if (!this.answered) {
          const name = this.bestCause(cause);
          void this.finish({ reason: reasonForCauseName(name), cause: Q850[name], message: name });
        } else void this.finish({ reason: 'remote', cause: Q850[cause], message: 'the PBX hung up the call' });
        break;
      }
      default:
        break;
    }
  }

  /** The room-side half says why better than our parked half, which only mirrors it. */
  private bestCause(fallback: string): string {
    const room = this.roomUuid ? this.causes.get(this.roomUuid) : undefined;
    if (room && room !== 'NORMAL_CLEARING') return room;
    return this.causes.get(this.mediaUuid) ?? fallback;
  }

  hangup(reason: HangupReason = 'normal'): Promise<void> {
    return this.finish({ reason });
  }

  /** The driver lost ESL: nothing can be cleaned up through it now (the next link-up hupalls). */
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
    this.endPromise = this.cleanup().then(() => {
      this.release();
      this.done = true;
      this.log.info({ reason: end.reason, cause: end.cause }, 'call ended');
      this.emit('ended', end);
    });
    return this.endPromise;
  }

  private release(): void {
    this.onAudio = null;
    this.onVideo = null;
    for (const uuid of this.uuids) this.opts.track(uuid, null);
  }

  private async cleanup(): Promise<void> {
    this.leg?.close();
    if (!this.created) return;
    // killing our half takes the other loopback half with it; the room side is killed too in case
    // it was not a loopback pair (an invitation bridged from elsewhere keeps its own caller)
    const mine = this.inbound ? [this.mediaUuid] : this.uuids;
    await Promise.allSettled(mine.filter((u) => !this.gone.has(u)).map((u) => this.kill(u)));
  }

  /** uuid_kill and wait for its CHANNEL_HANGUP_COMPLETE (bounded); a channel already gone is fine. */
  private async kill(uuid: string): Promise<void> {
    if (this.gone.has(uuid)) return;
    const gone = this.waitGone(uuid);
    try {
      await this.opts.link.api(`uuid_kill ${uuid}`);
    } catch (err) {
      // -ERR No such channel!: already gone (or not created yet: dial() kills it when it appears)
      this.log.debug({ err: (err as Error).message, uuid }, 'uuid_kill');
      this.goneWaiters.get(uuid)?.();
      return;
    }
    await gone;
  }

  private waitGone(uuid: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.goneWaiters.delete(uuid);
        resolve();
      }, KILL_WAIT_MS);
      timer.unref();
      this.goneWaiters.set(uuid, () => {
        clearTimeout(timer);
        this.goneWaiters.delete(uuid);
        resolve();
      });
    });
  }
}
