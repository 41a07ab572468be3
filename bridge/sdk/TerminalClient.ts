/**
 * The terminal SDK: one control connection to the bridge (bind with number and password, then
 * register), calls, and per call an audio connection bound with the bridge's token. Written
 * against the standard WebSocket API so that it runs in browsers; in Node, pass the `ws`
 * package's WebSocket (see createNodeTerminal in node.ts).
 */
import type { ServerMessage } from '../protocol/messages.ts';
import { CallSession } from './CallSession.ts';
import { Emitter } from './Emitter.ts';
import { TerminalError } from './TerminalError.ts';
import { Invitation } from './Invitation.ts';

/** The part of the standard WebSocket this SDK uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export interface TerminalClientOptions {
  url: string;
  number: string;
  password: string;
  name?: string;
  webSocket: WebSocketFactory;
  /** how long connect/register/call wait for the bridge's answer (ms, default 10000) */
  requestTimeoutMs?: number;
}

export type TerminalClientEvents = {
  /** the control connection closed; `error` says why when it was not our own close */
  closed: [TerminalError | null];
  /** the PBX invites this terminal: accept() or reject() the invitation */
  incoming: [Invitation];
  /** the bridge lost (down) or regained (up) its media server; calls cannot be placed while down */
  pbx: ['up' | 'down'];
  /** the control connection dropped; the client is resuming the session (calls are kept) */
  reconnecting: [TerminalError];
  /** the session is back on a new connection, calls and all */
  resumed: [];
};

/**
 * `onReply` runs synchronously when the reply arrives, before any later message is handled: the
 * `ws` package may deliver several messages in one tick (e.g. `calling` and `answered` read
 * together from a busy socket), so a call's session must exist before its next event is routed.
 */
type Pending = { resolve: (m: ServerMessage) => void; reject: (e: TerminalError) => void; timer: ReturnType<typeof setTimeout>; onReply?: (m: ServerMessage) => void };

export class TerminalClient extends Emitter<TerminalClientEvents> {
  readonly number: string;
  private readonly opts: TerminalClientOptions;
  private ws: WebSocketLike | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly calls = new Map<string, CallSession>();
  private readonly invitations = new Map<string, Invitation>();
  /** the call whose media rides on the control connection, and its content share */
  private inlineCall: CallSession | null = null;
  private inlineContent: CallSession | null = null;
  private closing = false;
  private resumeToken: string | null = null;
  private resumeWindowMs = 0;

  constructor(opts: TerminalClientOptions) {
    super();
    this.opts = opts;
    this.number = opts.number;
  }

  private get timeoutMs(): number {
    return this.opts.requestTimeoutMs ?? 10000;
  }

  /** Opens and binds the control connection. Rejects with the bridge's error code. */
  async connect(): Promise<void> {
    await this.openControl({ type: 'bind', v: 1, kind: 'control', number: this.opts.number, password: this.opts.password });
  }

  /** One control connection: sends `bind`, resolves with the bridge's `bound`. */
  private openControl(bind: Record<string, unknown>): Promise<Extract<ServerMessage, { type: 'bound' }>> {
    const ws = this.opts.webSocket(this.opts.url);
    return new Promise((resolve, reject) => {
      let bound = false;
      const timer = setTimeout(() => {
        reject(new TerminalError('TIMEOUT', 'the bridge did not answer the bind in time'));
        ws.close();
      }, this.timeoutMs);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => ws.send(JSON.stringify(bind));
      ws.onmessage = (ev) => {
        if (ev.data instanceof ArrayBuffer) return this.onInlineFrame(ev.data);
        if (typeof ev.data !== 'string') return;
        const msg = JSON.parse(ev.data) as ServerMessage;
        if (!bound && msg.type === 'bound') {
          bound = true;
          clearTimeout(timer);
          this.ws = ws;
          this.resumeToken = msg.resume ?? null;
          this.resumeWindowMs = msg.resumeWindowMs ?? 0;
          resolve(msg);
          return;
        }
        this.onMessage(msg);
      };
      ws.onerror = () => {
        /* onclose follows */
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        const err = this.closing ? null : TerminalError.fromClose(ev.code, ev.reason);
        if (!bound) {
          reject(err ?? new TerminalError('CONNECTION_CLOSED', 'closed before bind'));
          return;
        }
        if (this.ws !== ws) return;
        this.ws = null;
        // dropped (not closed on purpose) with calls up: come back with the resume token
        if (err && ev.code === 1006 && this.resumeToken && this.resumeWindowMs > 0 && this.calls.size > 0) void this.resume(err);
        else this.onClosed(err);
      };
    });
  }

  /** Reconnects with backoff within the resume window; the calls go on where they were. */
  private async resume(cause: TerminalError): Promise<void> {
    this.emit('reconnecting', cause);
    const deadline = Date.now() + this.resumeWindowMs;
    let delay = 200;
    while (!this.closing && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
      try {
        const bound = await this.openControl({ type: 'bind', v: 1, kind: 'control', number: this.opts.number, resume: this.resumeToken });
        const live = new Map((bound.calls ?? []).map((c) => [c.callId, c]));
        // a call whose `calling` reply was lost with the old connection is of no use to anyone
        for (const id of live.keys()) if (!this.calls.has(id) && this.ws) this.ws.send(JSON.stringify({ type: 'hangup', callId: id }));
        for (const [id, call] of this.calls) {
          const info = live.get(id);
          if (!info) {
            this.calls.delete(id);
            call.end({ reason: 'remote', message: 'the call ended while the connection was down' });
            continue;
          }
          // its `answered` may have been sent while the connection was down
          if (info.state === 'answered') call.handle('answered');
          if (call.inline && this.ws) {
            call.useInline(this.ws, info.media.video ? { audio: 1, video: 2 } : { audio: 1 }, info.media.video?.codec);
            continue;
          }
          if (info.media.audio) await call.openAudio(this.opts.webSocket, this.opts.url, this.opts.number, info.media.audio.token, this.timeoutMs).catch(() => undefined);
          if (info.media.video) await call.openVideo(this.opts.webSocket, this.opts.url, this.opts.number, info.media.video.token, info.media.video.codec, 'video', this.timeoutMs).catch(() => undefined);
        }
        this.emit('resumed');
        return;
      } catch (err) {
        if (err instanceof TerminalError && err.code === 'RESUME_FAILED') break;
      }
    }
    this.onClosed(cause);
  }

  /** A call's media connection dropped while the control connection is up: bind it again. */
  private async rebindMedia(call: CallSession, kind: 'audio' | 'video'): Promise<void> {
    const deadline = Date.now() + Math.max(this.resumeWindowMs, 1000);
    let delay = 100;
    while (!this.closing && call.state !== 'ended' && Date.now() < deadline) {
      // the control connection is down too: resume() binds the media again
      if (!this.ws) return;
      try {
        const msg = await this.request({ type: 'token', callId: call.id, kind });
        if (msg.type !== 'token') return;
        if (kind === 'audio') await call.openAudio(this.opts.webSocket, this.opts.url, this.opts.number, msg.token, this.timeoutMs);
        else await call.openVideo(this.opts.webSocket, this.opts.url, this.opts.number, msg.token, call.videoCodec?.name ?? 'H264/90000', 'video', this.timeoutMs);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** A media frame on the control connection: stream 3 is the content share, 1 and 2 the call. */
  private onInlineFrame(data: ArrayBuffer): void {
    if (data.byteLength < 2) return;
    const stream = new Uint8Array(data, 1, 1)[0]!;
    const target = stream === 3 ? this.inlineContent : this.inlineCall;
    target?.receiveInline(data, stream);
  }

  private onClosed(err: TerminalError | null): void {
    this.ws = null;
    const failure = err ?? new TerminalError('CONNECTION_CLOSED', 'connection closed');
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(failure);
      this.pending.delete(id);
    }
    for (const call of this.calls.values()) call.end({ reason: 'connection_lost', message: failure.message });
    this.calls.clear();
    for (const inv of this.invitations.values()) inv.end({ reason: 'connection_lost', message: failure.message });
    this.invitations.clear();
    this.emit('closed', err);
  }

  private onMessage(msg: ServerMessage): void {
    if ('id' in msg && typeof msg.id === 'number' && (msg.type === 'error' || msg.type === 'registered' || msg.type === 'calling' || msg.type === 'accepted' || msg.type === 'sharing' || msg.type === 'token' || msg.type === 'pong' || msg.type === 'unregistered')) {
      const p = this.pending.get(msg.id);
      if (p) {
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.type === 'error') p.reject(new TerminalError(msg.code, msg.message));
        else {
          p.onReply?.(msg);
          p.resolve(msg);
        }
        return;
      }
    }
    switch (msg.type) {
      case 'ringing':
      case 'answered':
        this.calls.get(msg.callId)?.handle(msg.type);
        break;
      case 'hangup': {
        const info = { reason: msg.reason, cause: msg.cause, message: msg.message };
        const call = this.calls.get(msg.callId);
        if (call) {
          this.calls.delete(msg.callId);
          call.end(info);
        }
        const inv = this.invitations.get(msg.callId);
        if (inv) {
          this.invitations.delete(msg.callId);
          inv.end(info);
        }
        break;
      }
      case 'dtmf':
        this.calls.get(msg.callId)?.receiveDtmf(msg.digit);
        break;
      case 'pbx':
        this.emit('pbx', msg.state);
        break;
      case 'incoming': {
        const inv = new Invitation(
          msg,
          (i, options) => this.accept(i, options),
          (i, reason) => {
            this.invitations.delete(i.callId);
            this.ws?.send(JSON.stringify({ type: 'reject', callId: i.callId, reason }));
          },
        );
        this.invitations.set(msg.callId, inv);
        this.emit('incoming', inv);
        break;
      }
      default:
        break;
    }
  }

  private request(body: Record<string, unknown>, onReply?: (m: ServerMessage) => void): Promise<ServerMessage> {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return Promise.reject(new TerminalError('NOT_CONNECTED', 'not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TerminalError('TIMEOUT', `no answer to ${String(body.type)} in time`));
      }, this.timeoutMs);
      this.pending.set(id, onReply ? { resolve, reject, timer, onReply } : { resolve, reject, timer });
      ws.send(JSON.stringify({ ...body, id }));
    });
  }

  async register(name = this.opts.name): Promise<{ number: string; name: string }> {
    const msg = await this.request(name ? { type: 'register', name } : { type: 'register' });
    if (msg.type !== 'registered') throw new TerminalError('PROTOCOL', `unexpected ${msg.type}`);
    return { number: msg.number, name: msg.name };
  }

  /** Places a call; resolves once its audio connection is bound (before it is answered). */
  /**
   * Places a call; resolves once its media connections are bound (before it is answered). With
   * `inline`, the call's media rides on the control connection instead (one such call at a time).
   */
  async call(to: string, options: { codecs?: string[]; video?: string[]; inline?: boolean } = {}): Promise<CallSession> {
    const body: Record<string, unknown> = { type: 'call', to };
    if (options.codecs) body.codecs = options.codecs;
    if (options.video) body.video = options.video;
    if (options.inline) body.inline = true;
    let call: CallSession | null = null;
    const msg = await this.request(body, (m) => {
      if (m.type === 'calling') call = this.addCall(m.callId, m.to, m.codec);
    });
    if (msg.type !== 'calling' || !call) throw new TerminalError('PROTOCOL', `unexpected ${msg.type}`);
    const session: CallSession = call;
    const { audio, video, inline } = msg.media;
    if (inline && this.ws) {
      session.useInline(this.ws, inline, video?.codec);
      this.inlineCall = session;
      session.once('hangup', () => {
        if (this.inlineCall === session) this.inlineCall = null;
      });
      return session;
    }
    if (!audio) throw new TerminalError('PROTOCOL', 'calling without an audio token');
    await this.openMedia(session, audio.token, video);
    return session;
  }

  /** A call's session, registered at once so that none of its events is missed. */
  private addCall(callId: string, to: string, codec: string): CallSession {
    const call = new CallSession(callId, to, codec, () => this.ws?.send(JSON.stringify({ type: 'hangup', callId })), (digits) => this.ws?.send(JSON.stringify({ type: 'dtmf', callId, digits })));
    this.calls.set(callId, call);
    call.on('mediaDropped', (kind) => void this.rebindMedia(call, kind));
    return call;
  }

  /** Binds a new call's media connections, unless the call already ended meanwhile. */
  private async openMedia(call: CallSession, audioToken: string, video?: { token?: string; codec: string }): Promise<void> {
    const ended = (): TerminalError => new TerminalError('CALL_ENDED', `call ended: ${call.hangupInfo?.reason ?? 'unknown'}`);
    if (call.state === 'ended') throw ended();
    try {
      await call.openAudio(this.opts.webSocket, this.opts.url, this.opts.number, audioToken, this.timeoutMs);
      if (video?.token) await call.openVideo(this.opts.webSocket, this.opts.url, this.opts.number, video.token, video.codec, 'video', this.timeoutMs);
    } catch (err) {
      // the bridge ended the call while its media was being bound: say that, not TOKEN_INVALID
      if (call.hangupInfo) throw ended();
      throw err;
    }
  }

  /**
   * Shares presentation content in a call with video. Resolves with the share: send its frames with
   * sendVideo() (it answers keyframe requests like a camera), end it with hangup().
   */
  async share(call: CallSession): Promise<CallSession> {
    let share: CallSession | null = null;
    const msg = await this.request({ type: 'share', callId: call.id }, (m) => {
      if (m.type !== 'sharing') return;
      share = new CallSession(m.contentId, call.to, call.codec.name, () => this.ws?.send(JSON.stringify({ type: 'unshare', callId: m.contentId })), () => undefined);
      this.calls.set(m.contentId, share);
    });
    if (msg.type !== 'sharing' || !share) throw new TerminalError('PROTOCOL', `unexpected ${msg.type}`);
    const content: CallSession = share;
    const c = msg.media.content;
    if (c.inline !== undefined && this.ws) {
      content.useInline(this.ws, { video: c.inline }, c.codec);
      this.inlineContent = content;
      content.once('hangup', () => {
        if (this.inlineContent === content) this.inlineContent = null;
      });
      return content;
    }
    if (!c.token) throw new TerminalError('PROTOCOL', 'sharing without a content token');
    await content.openVideo(this.opts.webSocket, this.opts.url, this.opts.number, c.token, c.codec, 'content', this.timeoutMs);
    return content;
  }

  private async accept(inv: Invitation, options: { codecs?: string[]; video?: string[] }): Promise<CallSession> {
    this.invitations.delete(inv.callId);
    let call: CallSession | null = null;
    const body: Record<string, unknown> = { type: 'accept', callId: inv.callId };
    if (options.codecs) body.codecs = options.codecs;
    if (options.video) body.video = options.video;
    const msg = await this.request(body, (m) => {
      if (m.type === 'accepted') call = this.addCall(m.callId, inv.from.number, m.codec);
    });
    if (msg.type !== 'accepted' || !call) throw new TerminalError('PROTOCOL', `unexpected ${msg.type}`);
    if (!msg.media.audio) throw new TerminalError('PROTOCOL', 'accepted without an audio token');
    const session: CallSession = call;
    await this.openMedia(session, msg.media.audio.token, msg.media.video);
    return session;
  }

  async ping(): Promise<void> {
    await this.request({ type: 'ping' });
  }

  /** Raw access for tests: sends a text or binary message on the control connection. */
  sendRaw(data: string | Uint8Array): void {
    this.ws?.send(data);
  }

  /** Hangs up every call and closes. Idempotent. */
  close(): void {
    this.closing = true;
    const ws = this.ws;
    if (ws && ws.readyState <= 1) ws.close(1000);
  }
}
