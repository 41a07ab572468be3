/** An invitation from the PBX ringing this terminal: accept() it, reject() it, or let it time out. */
import type { CallSession, HangupInfo } from './CallSession.ts';
import { Emitter } from './Emitter.ts';

export type InvitationEvents = {
  /** the invitation ended before it was accepted (the caller gave up, timeout, rejected) */
  ended: [HangupInfo];
};

export class Invitation extends Emitter<InvitationEvents> {
  readonly callId: string;
  readonly from: { number: string; name: string };
  readonly to: string;
  readonly codecs: string[];
  /** video codecs the PBX's side offers (empty: an audio-only invitation) */
  readonly video: string[];
  private readonly doAccept: (inv: Invitation, options: { codecs?: string[]; video?: string[] }) => Promise<CallSession>;
  private readonly doReject: (inv: Invitation, reason: 'busy' | 'declined') => void;
  settled = false;

  constructor(
    msg: { callId: string; from: { number: string; name: string }; to: string; codecs: string[]; video?: string[] },
    accept: (inv: Invitation, options: { codecs?: string[]; video?: string[] }) => Promise<CallSession>,
    reject: (inv: Invitation, reason: 'busy' | 'declined') => void,
  ) {
    super();
    this.callId = msg.callId;
    this.from = msg.from;
    this.to = msg.to;
    this.codecs = msg.codecs;
    this.video = msg.video ?? [];
    this.doAccept = accept;
    this.doReject = reject;
  }

  /**
   * Answers; resolves with the call once its media connections are bound. `video`: the video codecs
   * this terminal takes, best first; the call has video when the invitation offered one of them.
   */
  accept(options: { codecs?: string[]; video?: string[] } = {}): Promise<CallSession> {
    this.settled = true;
    return this.doAccept(this, options);
  }

  reject(reason: 'busy' | 'declined' = 'declined'): void {
    this.settled = true;
    this.doReject(this, reason);
  }

  /** @internal */
  end(info: HangupInfo): void {
    this.settled = true;
    this.emit('ended', info);
  }
}
