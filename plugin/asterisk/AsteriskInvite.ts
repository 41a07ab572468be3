/**
 * The PBX invites a terminal: a channel entered our app with Stasis(<app>,invite,<number>).
 * Until the terminal accepts, the channel waits in Stasis (ringing); a rejection hangs it up with
 * the Q.850 cause an Asterisk dialplan expects (DIALSTATUS BUSY, CHANUNAVAIL, NOANSWER ...).
 */
import { EventEmitter } from 'node:events';
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { VideoCodec } from '../../bridge/protocol/videoCodecs.ts';
import type { DriverCall, IncomingCall, IncomingCallEvents, RejectReason } from '../driver.ts';
import type { AriChannel, AriEvent, AriLink } from './AriLink.ts';

/** Q.850 causes for a terminal's refusal. */
export const REJECT_CAUSES: Readonly<Record<RejectReason, number>> = Object.freeze({
  busy: 17, // USER_BUSY -> DIALSTATUS BUSY
  declined: 21, // CALL_REJECTED -> DIALSTATUS BUSY on most Asterisk versions; HANGUPCAUSE 21
  no_answer: 19, // NO_ANSWER -> DIALSTATUS NOANSWER
  unavailable: 20, // SUBSCRIBER_ABSENT -> DIALSTATUS CHANUNAVAIL
});

export interface AcceptRequest {
  callId: string;
  name: string;
  codec: AudioCodec;
  video?: VideoCodec;
}

export class AsteriskInvite extends EventEmitter<IncomingCallEvents> implements IncomingCall {
  readonly id: string;
  readonly to: string;
  readonly from: { number: string; name: string };
  /** the video codecs the inviting channel carries (its native formats), found before it rings */
  videoCodecs: readonly VideoCodec[] = [];
  private readonly channel: AriChannel;
  private readonly link: AriLink;
  private readonly acceptCall: (invite: AsteriskInvite, req: AcceptRequest) => DriverCall;
  private settled = false;

  constructor(channel: AriChannel, number: string, link: AriLink, accept: (invite: AsteriskInvite, req: AcceptRequest) => DriverCall) {
    super();
    this.id = channel.id;
    this.channel = channel;
    this.to = number;
    this.from = { number: channel.caller?.number ?? '', name: channel.caller?.name ?? '' };
    this.link = link;
    this.acceptCall = accept;
  }

  get channelId(): string {
    return this.channel.id;
  }

  get channelName(): string {
    return this.channel.name;
  }

  /** Events for the waiting channel, until it is accepted or rejected. */
  handleEvent(event: AriEvent): void {
    if (this.settled) return;
    if ((event.type === 'ChannelDestroyed' || event.type === 'StasisEnd') && event.channel.id === this.channel.id) {
      this.settled = true;
      this.emit('cancelled', { reason: 'cancelled', cause: event.type === 'ChannelDestroyed' ? event.cause : undefined, message: 'the caller gave up' });
    }
  }

  ring(): Promise<void> {
    return this.link.ring(this.channel.id);
  }

  accept(req: AcceptRequest): DriverCall {
    this.settled = true;
    return this.acceptCall(this, req);
  }

  async reject(reason: RejectReason): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    await this.link.hangup(this.channel.id, REJECT_CAUSES[reason]);
  }
}
