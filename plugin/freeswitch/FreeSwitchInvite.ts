/**
 * FreeSWITCH invites a terminal: a channel parked by the invitation extension
 * (dialplan/freeswitch/confmux.xml: `set confmux_invite=<number>`, then `park`), announced by its
 * CHANNEL_PARK event carrying `variable_confmux_invite`. Until the terminal answers it stays
 * parked; ring() tells its caller it is ringing (`ring_ready` executed through sendmsg), reject()
 * kills it with the cause a FreeSWITCH dialplan expects (`${originate_disposition}` /
 * `${hangup_cause}` of the bridge or originate that called it).
 *
 * The CHANNEL_PARK event's headers are verified against transcripts (04, 10); the
 * confmux_invite variable, sendmsg `execute`, and `uuid_kill <uuid> <cause>` are not in any
 * transcript and were written from FreeSWITCH's documentation.
 */
import { EventEmitter } from 'node:events';
import type { VideoCodec } from '../../bridge/protocol/videoCodecs.ts';
import type { AudioCodec } from '../../bridge/protocol/codecs.ts';
import type { DriverCall, IncomingCall, IncomingCallEvents, RejectReason } from '../driver.ts';
import type { EslEvent, EslLink } from './EslLink.ts';
import { Q850 } from './FreeSwitchCall.ts';

/** FreeSWITCH cause names for a terminal's refusal. */
export const REJECT_CAUSES: Readonly<Record<RejectReason, string>> = Object.freeze({
  busy: 'USER_BUSY', // 17
  declined: 'CALL_REJECTED', // 21
  no_answer: 'NO_ANSWER', // 19
  unavailable: 'SUBSCRIBER_ABSENT', // 20
});

export type AcceptInvite = (invite: FreeSwitchInvite, req: { callId: string; name: string; codec: AudioCodec }) => DriverCall;

export class FreeSwitchInvite extends EventEmitter<IncomingCallEvents> implements IncomingCall {
  /** video is not carried on FreeSWITCH (its unicast streaming is audio only) */
  readonly videoCodecs: readonly VideoCodec[] = [];
  readonly id: string;
  readonly to: string;
  readonly from: { number: string; name: string };
  /** the parked channel */
  readonly uuid: string;
  /** its other loopback half, the one the inviting side holds (in a conference, or bridged) */
  readonly otherUuid: string | undefined;
  private readonly link: EslLink;
  private readonly acceptCall: AcceptInvite;
  private settled = false;

  constructor(park: EslEvent, number: string, link: EslLink, accept: AcceptInvite) {
    super();
    this.uuid = park.uuid;
    this.id = park.uuid;
    this.to = number;
    this.from = { number: park.get('Caller-Caller-ID-Number') ?? '', name: park.get('Caller-Caller-ID-Name') ?? '' };
    this.otherUuid = park.get('variable_other_loopback_leg_uuid') || undefined;
    this.link = link;
    this.acceptCall = accept;
  }

  /** Events of the waiting channel (or its other half), until accepted or rejected. */
  handleEvent(event: EslEvent): void {
    if (this.settled) return;
    if (event.name === 'CHANNEL_HANGUP' || event.name === 'CHANNEL_HANGUP_COMPLETE') {
      this.settled = true;
      const cause = event.get('Hangup-Cause') ?? '';
      this.emit('cancelled', { reason: 'cancelled', cause: Q850[cause], message: 'the caller gave up' });
    }
  }

  get isSettled(): boolean {
    return this.settled;
  }

  async ring(): Promise<void> {
    if (this.settled) return;
    await this.link.sendmsg(this.uuid, { 'call-command': 'execute', 'execute-app-name': 'ring_ready' });
  }

  accept(req: { callId: string; name: string; codec: AudioCodec }): DriverCall {
    this.settled = true;
    return this.acceptCall(this, req);
  }

  async reject(reason: RejectReason): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    await this.link.api(`uuid_kill ${this.uuid} ${REJECT_CAUSES[reason]}`);
  }
}
