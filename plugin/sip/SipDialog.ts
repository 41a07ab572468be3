/**
 * One SIP dialog the bridge answered (UAS side): it holds what a later in-dialog request needs
 * (Call-ID, tags, remote target, CSeq) and sends BYE / INFO, retransmitting over UDP until answered.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { SipHeaders, serializeSip, tagOf, uriOf, type SipRequest, type SipResponse } from './SipMessage.ts';

export interface SipDialogEvents {
  /** the far end hung up (BYE) */
  bye: [];
  /** the far end asks for a keyframe (INFO picture_fast_update) */
  keyframeRequest: [];
  /** ACK for our 200 OK arrived: media may flow */
  confirmed: [];
}

export interface SipTransport {
  send(text: string, host: string, port: number): void;
  readonly localHost: string;
  readonly localPort: number;
}

const T1 = 500;

export const PICTURE_FAST_UPDATE =
  '<?xml version="1.0" encoding="utf-8" ?>\r\n<media_control><vc_primitive><to_encoder><picture_fast_update></picture_fast_update></to_encoder></vc_primitive></media_control>\r\n';

export class SipDialog extends EventEmitter<SipDialogEvents> {
  readonly callId: string;
  readonly localTag = randomBytes(6).toString('hex');
  /** the INVITE's From (the far end) and To (us, tag added) */
  private readonly remoteParty: string;
  private readonly localParty: string;
  private readonly remoteTarget: string;
  private readonly transport: SipTransport;
  private readonly peerHost: string;
  private readonly peerPort: number;
  private cseq = 1;
  private okText = '';
  private okTimer: NodeJS.Timeout | null = null;
  private readonly pending = new Map<string, { resolve: (r: SipResponse | null) => void; timer: NodeJS.Timeout | undefined }>();
  confirmed = false;
  ended = false;

  constructor(invite: SipRequest, transport: SipTransport, peerHost: string, peerPort: number) {
    super();
    this.transport = transport;
    this.peerHost = peerHost;
    this.peerPort = peerPort;
    this.callId = invite.headers.get('call-id') ?? '';
    this.remoteParty = invite.headers.get('from') ?? '';
    this.localParty = `${invite.headers.get('to') ?? ''};tag=${this.localTag}`;
    this.remoteTarget = uriOf(invite.headers.get('contact') ?? invite.headers.get('from') ?? '');
  }

  get contact(): string {
    return `<sip:confmux@${this.transport.localHost}:${this.transport.localPort}>`;
  }

  /** A response to a request of this dialog (copies Via, From, To, Call-ID, CSeq). */
  response(req: SipRequest, status: number, reason: string, body = '', contentType?: string): SipResponse {
    const headers = new SipHeaders();
    for (const via of req.headers.getAll('via')) headers.add('Via', via);
    headers.add('From', req.headers.get('from') ?? '');
    const to = req.headers.get('to') ?? '';
    headers.add('To', status > 100 && !tagOf(to) ? `${to};tag=${this.localTag}` : to);
    headers.add('Call-ID', this.callId);
    headers.add('CSeq', req.headers.get('cseq') ?? '');
    if (status >= 200 && status < 300 && req.method === 'INVITE') headers.add('Contact', this.contact);
    headers.add('Server', 'confmux');
    if (contentType) headers.add('Content-Type', contentType);
    return { kind: 'response', status, reason, headers, body };
  }

  reply(req: SipRequest, status: number, reason: string, body = '', contentType?: string): void {
    this.transport.send(serializeSip(this.response(req, status, reason, body, contentType)), this.peerHost, this.peerPort);
  }

  /** Answers the INVITE with our SDP; retransmits the 200 OK until the ACK (RFC 3261 13.3.1.4). */
  accept(invite: SipRequest, sdp: string): void {
    this.okText = serializeSip(this.response(invite, 200, 'OK', sdp, 'application/sdp'));
    let interval = T1;
    let sent = 0;
    const send = (): void => {
      if (this.confirmed || this.ended || sent++ > 7) return;
      this.transport.send(this.okText, this.peerHost, this.peerPort);
      this.okTimer = setTimeout(send, interval);
      interval = Math.min(interval * 2, 4000);
    };
    send();
  }

  /** A retransmitted INVITE: answer it again the same way. */
  repeatAnswer(): void {
    if (this.okText) this.transport.send(this.okText, this.peerHost, this.peerPort);
  }

  /** Requests inside the dialog, routed here by the server. */
  handle(req: SipRequest): void {
    switch (req.method) {
      case 'ACK':
        if (!this.confirmed) {
          this.confirmed = true;
          if (this.okTimer) clearTimeout(this.okTimer);
          this.emit('confirmed');
        }
        return;
      case 'BYE':
        this.reply(req, 200, 'OK');
        this.finish();
        this.emit('bye');
        return;
      case 'INFO':
        this.reply(req, 200, 'OK');
        if (/picture_fast_update/.test(req.body)) this.emit('keyframeRequest');
        return;
      case 'INVITE':
        // a re-INVITE (session refresh, hold): keep the session as it is
        this.reply(req, 200, 'OK', this.okText.slice(this.okText.indexOf('\r\n\r\n') + 4), 'application/sdp');
        return;
      default:
        this.reply(req, 200, 'OK');
    }
  }

  /** Responses to our own requests, routed here by the server. */
  handleResponse(res: SipResponse): void {
    const branch = /branch=([^;\s]+)/.exec(res.headers.get('via') ?? '')?.[1];
    if (!branch || res.status < 200) return;
    const p = this.pending.get(branch);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(branch);
    p.resolve(res);
  }

  private request(method: string, body = '', contentType?: string): Promise<SipResponse | null> {
    const branch = `z9hG4bK${randomBytes(8).toString('hex')}`;
    const headers = new SipHeaders()
      .add('Via', `SIP/2.0/UDP ${this.transport.localHost}:${this.transport.localPort};rport;branch=${branch}`)
      .add('Max-Forwards', '70')
      .add('From', this.localParty)
      .add('To', this.remoteParty)
      .add('Call-ID', this.callId)
      .add('CSeq', `${++this.cseq} ${method}`)
      .add('Contact', this.contact)
      .add('User-Agent', 'confmux');
    if (contentType) headers.add('Content-Type', contentType);
    const text = serializeSip({ kind: 'request', method, uri: this.remoteTarget, headers, body });
    return new Promise((resolve) => {
      const entry: { resolve: (r: SipResponse | null) => void; timer: NodeJS.Timeout | undefined } = { resolve, timer: undefined };
      let tries = 0;
      const send = (): void => {
        if (tries++ >= 6) {
          this.pending.delete(branch);
          resolve(null);
          return;
        }
        this.transport.send(text, this.peerHost, this.peerPort);
        entry.timer = setTimeout(send, T1 * 2 ** Math.min(tries - 1, 3));
      };
      this.pending.set(branch, entry);
      send();
    });
  }

  /** Asks the far end for a keyframe (SIP INFO picture_fast_update, as Asterisk understands it). */
  requestKeyframe(): void {
    if (this.ended || !this.confirmed) return;
    void this.request('INFO', PICTURE_FAST_UPDATE, 'application/media_control+xml');
  }

  /** Hangs up (BYE). Idempotent; resolves when answered or given up. */
  async bye(): Promise<void> {
    if (this.ended) return;
    this.finish();
    await this.request('BYE');
  }

  private finish(): void {
    this.ended = true;
    if (this.okTimer) clearTimeout(this.okTimer);
  }

  /** Drops every timer (the server is closing). */
  close(): void {
    this.finish();
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}
