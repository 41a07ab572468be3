/**
 * A terminal's control session: its bound control connection, its registration and its calls.
 * close() ends every call and the connection; it is idempotent.
 */
import { randomBytes } from 'node:crypto';
import type WebSocket from 'ws';
import { logWith, type Logger } from '../logger.ts';
import type { Config } from '../config.ts';
import { ConfmuxError, closeReason, type ErrorCode } from '../errors.ts';
import { AUDIO_CODECS, chooseCodec } from '../protocol/codecs.ts';
import { parseControl, type ControlRequest, type HangupReason, type ServerMessage } from '../protocol/messages.ts';
import type { CallEnd, DriverCall, IncomingCall, MediaServerDriver } from '../../plugin/driver.ts';
import type { AudioCodec } from '../protocol/codecs.ts';
import { chooseVideoCodec } from '../protocol/videoCodecs.ts';
import { STREAM_AUDIO, STREAM_CONTENT, STREAM_VIDEO } from '../protocol/frame.ts';
import { newCallId } from '../protocol/callId.ts';
import type { MediaPump } from './MediaPump.ts';
import { Call, type CallOwner } from './Call.ts';
import type { MediaTokens } from './MediaTokens.ts';
import { TokenBucket } from './TokenBucket.ts';
import type { Metrics } from './metrics.ts';
import type { VideoRooms } from './VideoRooms.ts';

export interface TerminalDeps {
  config: Readonly<Config>;
  driver: MediaServerDriver;
  tokens: MediaTokens;
  metrics: Metrics;
  log: Logger;
  /** false while the bridge drains: no new calls */
  acceptingCalls(): boolean;
  /** registration or calls changed: the PBX's view of this terminal must follow */
  presenceChanged(terminal: Terminal): void;
  /** video calls by room, for keyframe requests */
  videoRooms: VideoRooms;
  /** the native media pump, when this process has one */
  mediaPump: MediaPump | null;
  /** the session closed (after its calls ended and its connection was closed) */
  closed(terminal: Terminal): void;
}

interface PendingInvite {
  invite: IncomingCall;
  timer: NodeJS.Timeout;
}

/**
 * One per bound terminal, for as long as it is connected: what it holds is memory per terminal, so
 * it holds only what it needs (one dependencies object shared by every terminal, no child logger,
 * the invitation and content maps made when first used).
 */
export class Terminal implements CallOwner {
  readonly number: string;
  name: string;
  registered = false;
  readonly calls = new Map<string, Call>();
  /** the call whose media rides on the control connection, and its content leg */
  private inlineCall: Call | null = null;
  private inlineContent: Call | null = null;
  /** content legs (presentation sharing) by their id, with the call they belong to (made when first used) */
  private contentOf: Map<string, string> | null = null;
  /** invitations from the PBX ringing this terminal, by callId (made when first used) */
  private invites: Map<string, PendingInvite> | null = null;
  private ws: WebSocket;
  /** single-use token to come back after a dropped connection; rotated at each resume */
  resumeToken = randomBytes(18).toString('base64url');
  private detachTimer: NodeJS.Timeout | null = null;
  private readonly deps: TerminalDeps;
  private readonly bucket: TokenBucket;
  private closed = false;

  constructor(number: string, ws: WebSocket, deps: TerminalDeps) {
    this.number = number;
    this.name = number;
    this.ws = ws;
    this.deps = deps;
    const limits = deps.config.limits;
    this.bucket = new TokenBucket(limits.controlMessagesPerSecond, limits.controlBurst);
    this.listen(ws);
  }

  /** a line about this terminal: what a child logger with { terminal } would write */
  private log(msg: string, extra?: Record<string, unknown>): void {
    logWith(this.deps.log, 'info', { terminal: this.number }, msg, extra);
  }

  /** a line about one of its calls: what a child logger with { terminal, callId } would write */
  private logCall(callId: string, msg: string, extra?: Record<string, unknown>): void {
    logWith(this.deps.log, 'info', { terminal: this.number, callId }, msg, extra);
  }

  private listen(ws: WebSocket): void {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    // 'close' comes once ('on' rather than 'once': no wrapper kept per connection)
    ws.on('close', (code: number) => {
      if (this.ws !== ws || this.closed) return;
      // a dropped connection (1006: no close frame, e.g. the network went) during calls may come
      // back; a terminal that closed (1000, or a browser leaving the page: 1001) has left
      const window = this.deps.config.limits.resumeWindowMs;
      if (code === 1006 && !this.failed && this.calls.size > 0 && window > 0) this.detach(window);
      else void this.close();
    });
  }

  get detached(): boolean {
    return this.detachTimer !== null;
  }

  private detach(windowMs: number): void {
    this.log('control connection lost: calls kept for the resume window', { windowMs, calls: this.calls.size });
    this.detachTimer = setTimeout(() => {
      this.detachTimer = null;
      this.log('resume window passed');
      void this.close(undefined, undefined, 'media_lost');
    }, windowMs);
  }

  /** The terminal came back with its resume token: carry on on the new connection. */
  resume(ws: WebSocket): void {
    if (this.detachTimer) clearTimeout(this.detachTimer);
    this.detachTimer = null;
    const old = this.ws;
    this.ws = ws;
    if (old.readyState === old.OPEN) old.terminate();
    this.resumeToken = randomBytes(18).toString('base64url');
    this.listen(ws);
    this.log('terminal resumed', { calls: this.calls.size });
  }

  /** New media tokens for every call still up (sent with a resume). */
  callsForResume(): NonNullable<Extract<ServerMessage, { type: 'bound' }>['calls']> {
    const ttl = this.deps.config.limits.mediaTokenTtlMs;
    return [...this.calls.values()]
      .filter((c) => !c.isEnded && !c.contentOnly)
      .map((c) => ({
        callId: c.id,
        to: c.to,
        codec: c.codec.name,
        state: c.state,
        media: {
          audio: { token: this.deps.tokens.issue(this.number, c.id, 'audio'), expiresInMs: ttl },
          ...(c.videoCodec ? { video: { token: this.deps.tokens.issue(this.number, c.id, 'video'), codec: c.videoCodec.name, expiresInMs: ttl } } : {}),
        },
      }));
  }

  send(message: ServerMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(message));
  }

  /** the bridge closed the control connection for bad input: no resume for that */
  private failed = false;

  private fail(code: ErrorCode, message?: string): void {
    this.failed = true;
    this.deps.metrics.refusals.inc({ code });
    this.log('control connection closed for bad input', { code, reason: message });
    this.ws.close(new ConfmuxError(code, message).closeCode, closeReason(code, message));
  }

  private reply(id: number | string | undefined, code: ErrorCode, message?: string): void {
    this.deps.metrics.refusals.inc({ code });
    this.send({ type: 'error', id, code, message: message ?? new ConfmuxError(code).message });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closed) return;
    if (isBinary) {
      // media of the inline call: stream 3 is its content leg, 1 and 2 the call itself
      const target = data.length > 1 && data[1] === STREAM_CONTENT ? this.inlineContent : this.inlineCall;
      if (target) return target.receiveInline(this.ws, data);
      return this.fail('BAD_MESSAGE', 'binary frames on the control connection need a call placed with inline: true');
    }
    if (!this.bucket.take()) return this.fail('RATE_LIMITED', `more than ${this.deps.config.limits.controlMessagesPerSecond} control messages per second`);
    if (data.length > this.deps.config.limits.maxControlMessageBytes) {
      return this.fail('FRAME_TOO_LARGE', `control message of ${data.length} bytes; the limit is ${this.deps.config.limits.maxControlMessageBytes}`);
    }
    let msg: ControlRequest;
    try {
      msg = parseControl(data.toString());
    } catch (err) {
      if (err instanceof ConfmuxError) return this.fail(err.code, err.message);
      throw err;
    }
    this.handle(msg);
  }

  private handle(msg: ControlRequest): void {
    switch (msg.type) {
      case 'ping':
        this.send({ type: 'pong', id: msg.id });
        return;
      case 'register':
        if (msg.name) this.name = msg.name.replace(/[\u0000-\u001f"<>\\]/g, '').trim() || this.number;
        this.registered = true;
        this.log('registered', { name: this.name });
        this.send({ type: 'registered', id: msg.id, number: this.number, name: this.name });
        this.deps.presenceChanged(this);
        return;
      case 'unregister':
        this.registered = false;
        this.send({ type: 'unregistered', id: msg.id });
        this.deps.presenceChanged(this);
        return;
      case 'accept':
        this.acceptInvite(msg);
        return;
      case 'reject': {
        const pending = this.takeInvite(msg.callId);
        if (!pending) return this.reply(msg.id, 'NO_SUCH_CALL', `no invitation ${msg.callId} is ringing`);
        this.log('invitation rejected', { callId: msg.callId, reason: msg.reason });
        void pending.invite.reject(msg.reason).catch(() => undefined);
        this.send({ type: 'hangup', callId: msg.callId, reason: 'rejected', message: msg.reason });
        return;
      }
      case 'share':
        this.share(msg);
        return;
      case 'unshare': {
        const content = this.calls.get(msg.callId);
        if (!content || !this.contentOf?.has(msg.callId)) return this.reply(msg.id, 'NO_SUCH_CALL', `no content ${msg.callId} is shared`);
        void content.hangup('normal');
        return;
      }
      case 'token': {
        // a media connection dropped mid-call: a fresh token to bind it again
        const call = this.calls.get(msg.callId);
        if (!call || call.isEnded) return this.reply(msg.id, 'NO_SUCH_CALL', `no call ${msg.callId} on this terminal`);
        if (msg.kind === 'video' && !call.videoCodec) return this.reply(msg.id, 'NO_VIDEO');
        const ttl = this.deps.config.limits.mediaTokenTtlMs;
        this.send({ type: 'token', id: msg.id, callId: msg.callId, kind: msg.kind, token: this.deps.tokens.issue(this.number, msg.callId, msg.kind), expiresInMs: ttl });
        return;
      }
      case 'dtmf': {
        const call = this.calls.get(msg.callId);
        if (!call) return this.reply(msg.id, 'NO_SUCH_CALL', `no call ${msg.callId} on this terminal`);
        call.sendDtmf(msg.digits).catch((err: unknown) => this.reply(msg.id, 'INTERNAL', `DTMF not sent: ${(err as Error).message}`));
        return;
      }
      case 'call':
        this.placeCall(msg);
        return;
      case 'hangup': {
        const call = this.calls.get(msg.callId);
        if (!call) return this.reply(msg.id, 'NO_SUCH_CALL', `no call ${msg.callId} on this terminal`);
        void call.hangup('normal');
        return;
      }
    }
  }

  private placeCall(msg: Extract<ControlRequest, { type: 'call' }>): void {
    const { config, driver } = this.deps;
    if (!this.registered) return this.reply(msg.id, 'NOT_REGISTERED');
    if (!this.deps.acceptingCalls()) return this.reply(msg.id, 'SHUTTING_DOWN');
    if (!driver.isUp) return this.reply(msg.id, 'PBX_UNAVAILABLE');
    if (this.calls.size >= config.limits.maxCallsPerTerminal) return this.reply(msg.id, 'CALL_LIMIT', `at most ${config.limits.maxCallsPerTerminal} calls per terminal`);
    if (msg.inline && this.inlineCall) return this.reply(msg.id, 'CALL_LIMIT', 'one call at a time may carry its media on the control connection');
    const codec = chooseCodec(msg.codecs ?? AUDIO_CODECS.map((c) => c.name));
    if (!codec) return this.reply(msg.id, 'CODEC_UNSUPPORTED', `offered ${msg.codecs?.join(', ')}; supported: ${AUDIO_CODECS.map((c) => c.name).join(', ')}`);
    const callId = newCallId();
    // video when the terminal asks for it and the driver carries one of its codecs
    const supported = driver.videoCodecs ?? [];
    const video = msg.video ? chooseVideoCodec(msg.video.filter((n) => supported.some((c) => c.name === n))) : undefined;
    const leg = driver.placeCall({ callId, number: this.number, name: this.name, to: msg.to, codec, video });
    const ttl = config.limits.mediaTokenTtlMs;
    const withVideo = Boolean(video && leg.videoFormat);
    if (msg.inline) {
      this.adopt(callId, msg.to, codec, leg, false, false);
      const call = this.calls.get(callId)!;
      this.inlineCall = call;
      call.attachInline(this.ws);
      call.once('ended', () => {
        if (this.inlineCall === call) this.inlineCall = null;
      });
      const media: Extract<ServerMessage, { type: 'calling' }>['media'] = { inline: withVideo ? { audio: STREAM_AUDIO, video: STREAM_VIDEO } : { audio: STREAM_AUDIO } };
      if (withVideo) media.video = { codec: video!.name };
      this.send({ type: 'calling', id: msg.id, callId, to: msg.to, codec: codec.name, media });
      return;
    }
    const token = this.adopt(callId, msg.to, codec, leg);
    const media: Extract<ServerMessage, { type: 'calling' }>['media'] = { audio: { token, expiresInMs: ttl } };
    if (withVideo) media.video = { token: this.deps.tokens.issue(this.number, callId, 'video'), codec: video!.name, expiresInMs: ttl };
    this.send({ type: 'calling', id: msg.id, callId, to: msg.to, codec: codec.name, media });
  }

  /** Wires a driver call to this terminal; returns the audio token for it. */
  private adopt(callId: string, to: string, codec: AudioCodec, leg: DriverCall, contentOnly = false, withToken = true): string {
    const { config, tokens } = this.deps;
    // the call reports its events to this terminal (callRinging ... callEnded below)
    const call = new Call(callId, to, codec, leg, config.limits, this.deps.log, this, this.deps.videoRooms, contentOnly, this.deps.mediaPump);
    this.calls.set(callId, call);
    this.logCall(callId, 'call started', { to, codec: codec.name });
    this.deps.presenceChanged(this);
    return withToken && !contentOnly ? tokens.issue(this.number, callId, 'audio') : '';
  }

  /** @internal CallOwner: the call's leg is ringing */
  callRinging(call: Call): void {
    this.send({ type: 'ringing', callId: call.id });
  }

  /** @internal CallOwner */
  callAnswered(call: Call): void {
    this.logCall(call.id, 'call answered');
    this.send({ type: 'answered', callId: call.id });
  }

  /** @internal CallOwner */
  callDtmf(call: Call, digit: string): void {
    this.send({ type: 'dtmf', callId: call.id, digit });
  }

  /** @internal CallOwner: a media connection of the call was refused or closed for bad input */
  callRefused(_call: Call, code: ErrorCode): void {
    this.deps.metrics.refusals.inc({ code });
  }

  /** @internal CallOwner: the call ended (once); before the call's own 'ended' listeners */
  callEnded(call: Call, end: CallEnd): void {
    const callId = call.id;
    this.calls.delete(callId);
    this.deps.tokens.revokeCall(callId);
    this.deps.metrics.calls.inc({ reason: end.reason });
    this.send({ type: 'hangup', callId, reason: end.reason, cause: end.cause, message: end.message });
    this.deps.presenceChanged(this);
  }

  /**
   * Shares presentation content in a call with video: a second, video-only leg of this terminal
   * joins the same room, marked, so that the room shows it. Ends with unshare, or with its call.
   */
  private share(msg: Extract<ControlRequest, { type: 'share' }>): void {
    const call = this.calls.get(msg.callId);
    if (!call || this.contentOf?.has(msg.callId)) return this.reply(msg.id, 'NO_SUCH_CALL', `no call ${msg.callId} on this terminal`);
    if (!call.videoCodec) return this.reply(msg.id, 'NO_VIDEO');
    const contentId = `${msg.callId}-c${randomBytes(3).toString('hex')}`;
    const leg = this.deps.driver.placeCall({ callId: contentId, number: this.number, name: this.name, to: call.to, codec: call.codec, video: call.videoCodec, content: true });
    this.adopt(contentId, call.to, call.codec, leg, true);
    (this.contentOf ??= new Map()).set(contentId, msg.callId);
    const content = this.calls.get(contentId)!;
    content.once('ended', () => this.contentOf?.delete(contentId));
    call.once('ended', () => void content.hangup('normal'));
    if (call === this.inlineCall) {
      // the content of an inline call rides on the control connection too, as stream 3
      this.inlineContent = content;
      content.attachInline(this.ws);
      content.once('ended', () => {
        if (this.inlineContent === content) this.inlineContent = null;
      });
      this.send({ type: 'sharing', id: msg.id, callId: msg.callId, contentId, media: { content: { codec: call.videoCodec.name, inline: STREAM_CONTENT } } });
      return;
    }
    const token = this.deps.tokens.issue(this.number, contentId, 'content');
    this.send({ type: 'sharing', id: msg.id, callId: msg.callId, contentId, media: { content: { token, codec: call.videoCodec.name, expiresInMs: this.deps.config.limits.mediaTokenTtlMs } } });
  }

  /** The PBX invites this terminal: ring it until it accepts, rejects, or the timeout. */
  offer(invite: IncomingCall): void {
    const callId = newCallId();
    const timeoutMs = this.deps.config.limits.inviteTimeoutMs;
    const timer = setTimeout(() => {
      if (!this.takeInvite(callId)) return;
      this.log('invitation not answered in time', { callId });
      void invite.reject('no_answer').catch(() => undefined);
      this.send({ type: 'hangup', callId, reason: 'no_answer', cause: 19, message: 'not answered in time' });
    }, timeoutMs);
    (this.invites ??= new Map()).set(callId, { invite, timer });
    invite.once('cancelled', (end) => {
      if (!this.takeInvite(callId)) return;
      this.send({ type: 'hangup', callId, reason: 'cancelled', cause: end.cause, message: end.message });
    });
    this.log('invitation ringing', { callId, from: invite.from.number });
    const video = invite.videoCodecs.map((c) => c.name);
    this.send({ type: 'incoming', callId, from: invite.from, to: invite.to, codecs: AUDIO_CODECS.map((c) => c.name), ...(video.length ? { video } : {}), expiresInMs: timeoutMs });
    invite.ring().catch(() => undefined);
  }

  private takeInvite(callId: string): PendingInvite | undefined {
    const pending = this.invites?.get(callId);
    if (!pending) return undefined;
    this.invites!.delete(callId);
    clearTimeout(pending.timer);
    return pending;
  }

  private acceptInvite(msg: Extract<ControlRequest, { type: 'accept' }>): void {
    const pending = this.invites?.get(msg.callId);
    if (!pending) return this.reply(msg.id, 'NO_SUCH_CALL', `no invitation ${msg.callId} is ringing`);
    const codec = chooseCodec(msg.codecs ?? AUDIO_CODECS.map((c) => c.name));
    if (!codec) return this.reply(msg.id, 'CODEC_UNSUPPORTED', `offered ${msg.codecs?.join(', ')}; supported: ${AUDIO_CODECS.map((c) => c.name).join(', ')}`);
    const offered = pending.invite.videoCodecs;
    const video = msg.video ? chooseVideoCodec(msg.video.filter((n) => offered.some((c) => c.name === n))) : undefined;
    this.takeInvite(msg.callId);
    const leg = pending.invite.accept(video ? { callId: msg.callId, name: this.name, codec, video } : { callId: msg.callId, name: this.name, codec });
    const token = this.adopt(msg.callId, pending.invite.from.number, codec, leg);
    const ttl = this.deps.config.limits.mediaTokenTtlMs;
    const media: Extract<ServerMessage, { type: 'accepted' }>['media'] = { audio: { token, expiresInMs: ttl } };
    if (video && leg.videoFormat) media.video = { token: this.deps.tokens.issue(this.number, msg.callId, 'video'), codec: video.name, expiresInMs: ttl };
    this.send({ type: 'accepted', id: msg.id, callId: msg.callId, codec: codec.name, media });
  }

  /** Ends every call, then the control connection (with `code` when given). Idempotent. */
  async close(code?: ErrorCode, message?: string, callReason?: HangupReason): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.registered = false;
    if (this.detachTimer) clearTimeout(this.detachTimer);
    this.detachTimer = null;
    const reason: HangupReason = callReason ?? (code === 'SHUTTING_DOWN' ? 'shutdown' : 'normal');
    for (const callId of [...(this.invites?.keys() ?? [])]) void this.takeInvite(callId)?.invite.reject('unavailable').catch(() => undefined);
    await Promise.allSettled([...this.calls.values()].map((c) => c.hangup(reason)));
    this.deps.presenceChanged(this);
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      if (code) this.ws.close(new ConfmuxError(code, message).closeCode, closeReason(code, message));
      else this.ws.close(1000, 'closed');
    }
    this.log('terminal session closed');
    this.deps.closed(this);
  }
}
