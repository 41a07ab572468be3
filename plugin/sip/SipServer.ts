/**
 * The bridge's SIP user agent on one UDP port (loopback by default), answering INVITEs the media
 * server sends for legs the bridge asked for: a call announces itself with expect(user) before it
 * has the media server dial sip:<user>@<this address>, and gets the INVITE back as a dialog.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:dgram';
import { bindUdp } from '../rtp/udp.ts';
import { SipDialog, type SipTransport } from './SipDialog.ts';
import { parseSip, serializeSip, SipHeaders, type SipRequest } from './SipMessage.ts';

export interface IncomingLeg {
  dialog: SipDialog;
  invite: SipRequest;
}

type Waiter = (leg: IncomingLeg) => void;

export class SipServer extends EventEmitter<{ error: [Error] }> implements SipTransport {
  private readonly socket: Socket;
  private readonly dialogs = new Map<string, SipDialog>();
  private readonly waiters = new Map<string, Waiter>();
  private closed = false;
  /** datagrams that were not SIP, or not for a dialog we know */
  dropped = 0;

  private constructor(socket: Socket) {
    super();
    this.socket = socket;
    socket.on('message', (msg, rinfo) => this.onDatagram(msg.toString('utf8'), rinfo.address, rinfo.port));
    socket.on('error', (err) => this.emit('error', err));
  }

  static async listen(host: string, port: number): Promise<SipServer> {
    return new SipServer(await bindUdp(host, port));
  }

  get localHost(): string {
    return this.socket.address().address;
  }

  get localPort(): number {
    return this.socket.address().port;
  }

  send(text: string, host: string, port: number): void {
    if (!this.closed) this.socket.send(text, port, host);
  }

  /** The next INVITE addressed to sip:<user>@... is handed to `onInvite`. */
  expect(user: string, onInvite: Waiter): void {
    this.waiters.set(user, onInvite);
  }

  forget(user: string): void {
    this.waiters.delete(user);
  }

  private onDatagram(text: string, host: string, port: number): void {
    let msg;
    try {
      msg = parseSip(text);
    } catch {
      this.dropped++;
      return;
    }
    const callId = msg.headers.get('call-id') ?? '';
    const dialog = this.dialogs.get(callId);
    if (msg.kind === 'response') {
      if (dialog) dialog.handleResponse(msg);
      return;
    }
    if (dialog) {
      if (msg.method === 'INVITE' && !dialog.confirmed && !msg.headers.get('to')?.includes('tag=')) dialog.repeatAnswer();
      else dialog.handle(msg);
      if (msg.method === 'BYE') this.dialogs.delete(callId);
      return;
    }
    if (msg.method === 'INVITE') {
      const user = /^sips?:([^@;>]+)@/.exec(msg.uri)?.[1] ?? '';
      const waiter = this.waiters.get(user);
      if (waiter) {
        this.waiters.delete(user);
        const d = new SipDialog(msg, this, host, port);
        this.dialogs.set(callId, d);
        d.once('bye', () => this.dialogs.delete(callId));
        d.reply(msg, 100, 'Trying');
        waiter({ dialog: d, invite: msg });
        return;
      }
      this.reject(msg, host, port, 404, 'Not Found');
      return;
    }
    if (msg.method === 'ACK') return;
    if (msg.method === 'OPTIONS') return this.reject(msg, host, port, 200, 'OK');
    this.reject(msg, host, port, 481, 'Call/Transaction Does Not Exist');
  }

  private reject(req: SipRequest, host: string, port: number, status: number, reason: string): void {
    const headers = new SipHeaders();
    for (const via of req.headers.getAll('via')) headers.add('Via', via);
    headers.add('From', req.headers.get('from') ?? '');
    const to = req.headers.get('to') ?? '';
    headers.add('To', to.includes('tag=') ? to : `${to};tag=confmux`);
    headers.add('Call-ID', req.headers.get('call-id') ?? '');
    headers.add('CSeq', req.headers.get('cseq') ?? '');
    this.send(serializeSip({ kind: 'response', status, reason, headers, body: '' }), host, port);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const d of this.dialogs.values()) d.close();
    this.dialogs.clear();
    this.waiters.clear();
    this.closed = true;
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
