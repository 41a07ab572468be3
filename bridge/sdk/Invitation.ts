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
  private readonly doAccept: (inv: Invitation, codecs?: string[]) => Promise<CallSession>;
  private readonly doReject: (inv: Invitation, reason: 'busy' | 'declined') => void;
  settled = false;

  constructor(
    msg: { callId: string; from: { number: string; name: string }; to: string; codecs: string[] },
    accept: (inv: Invitation, codecs?: string[]) => Promise<CallSession>,
    reject: (inv: Invitation, reason: 'busy' | 'declined') => void,
  ) {
    super();
    this.callId = msg.callId;
    this.from = msg.from;
    this.to = msg.to;
    this.codecs = msg.codecs;
    this.doAccept = accept;
    this.doReject = reject;
  }

  /** Answers; resolves with the call once its audio connection is bound. */
  accept(options: { codecs?: string[] } = {}): Promise<CallSession> {
    this.settled = true;
    return this.doAccept(this, options.codecs);
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
