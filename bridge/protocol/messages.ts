/**
 * Control messages of terminal protocol v1 (JSON text frames). One schema per message; parse()
 * turns a text frame into a typed message or a BAD_MESSAGE error with the reason.
 */
import { z } from 'zod';
import { ConfmuxError } from '../errors.ts';

export const PROTOCOL_VERSION = 1;

const number = z.string().regex(/^[A-Za-z0-9_.+-]{1,40}$/, 'number: 1 to 40 of A-Z a-z 0-9 _ . + -');
const requestId = z.union([z.number().int().nonnegative(), z.string().max(64)]).optional();
const callId = z.string().min(1).max(64);
const kind = z.enum(['control', 'audio', 'video', 'content']);

export const BindControl = z
  .object({
    type: z.literal('bind'),
    v: z.number().int(),
    kind: z.literal('control'),
    number,
    /** the terminal's password; or, to come back to a session whose connection dropped, `resume` */
    password: z.string().min(1).max(256).optional(),
    resume: z.string().min(16).max(128).optional(),
  })
  .strict()
  .refine((b) => (b.password === undefined) !== (b.resume === undefined), { message: 'give password or resume (one of them)' });

export const BindMedia = z
  .object({
    type: z.literal('bind'),
    v: z.number().int(),
    kind: z.enum(['audio', 'video', 'content']),
    number,
    callId,
    token: z.string().min(16).max(128),
  })
  .strict();

export const Bind = z.union([BindControl, BindMedia]);

const Register = z.object({ type: z.literal('register'), id: requestId, name: z.string().max(64).optional() }).strict();
const Unregister = z.object({ type: z.literal('unregister'), id: requestId }).strict();
const Call = z
  .object({
    type: z.literal('call'),
    id: requestId,
    to: z.string().regex(/^[A-Za-z0-9_.+*#-]{1,64}$/, 'to: 1 to 64 of A-Z a-z 0-9 _ . + * # -'),
    codecs: z.array(z.string().max(32)).min(1).max(8).optional(),
    /** video codecs the terminal can send and receive, best first; absent: an audio-only call */
    video: z.array(z.string().max(32)).min(1).max(4).optional(),
    /** carry this call's media on the control connection (stream ids 1 audio, 2 video, 3 content) */
    inline: z.boolean().optional(),
  })
  .strict();
const Hangup = z.object({ type: z.literal('hangup'), id: requestId, callId }).strict();
const Ping = z.object({ type: z.literal('ping'), id: requestId }).strict();
const Accept = z
  .object({
    type: z.literal('accept'),
    id: requestId,
    callId,
    codecs: z.array(z.string().max(32)).min(1).max(8).optional(),
    /** the video codecs the terminal takes, best first (from the invitation's `video`); without it, audio only */
    video: z.array(z.string().max(32)).min(1).max(4).optional(),
  })
  .strict();
const Reject = z.object({ type: z.literal('reject'), id: requestId, callId, reason: z.enum(['busy', 'declined']).default('declined') }).strict();
const Share = z.object({ type: z.literal('share'), id: requestId, callId }).strict();
const Unshare = z.object({ type: z.literal('unshare'), id: requestId, callId }).strict();
const MediaToken = z.object({ type: z.literal('token'), id: requestId, callId, kind: z.enum(['audio', 'video']) }).strict();
const Dtmf = z.object({ type: z.literal('dtmf'), id: requestId, callId, digits: z.string().regex(/^[0-9*#A-Da-d]{1,32}$/, 'digits: 1 to 32 of 0-9 * # A-D') }).strict();

export const ControlMessage = z.discriminatedUnion('type', [Register, Unregister, Call, Hangup, Ping, Accept, Reject, Dtmf, Share, Unshare, MediaToken]);

export type BindControlMessage = z.infer<typeof BindControl>;
export type BindMediaMessage = z.infer<typeof BindMedia>;
export type BindMessage = z.infer<typeof Bind>;
export type ControlRequest = z.infer<typeof ControlMessage>;
export type MediaKind = z.infer<typeof kind>;

/** Why a call ended, as the terminal is told in a hangup message. */
export type HangupReason =
  | 'normal' // this terminal hung up
  | 'remote' // the other side (the PBX, the room) ended the call
  | 'busy'
  | 'no_answer'
  | 'rejected'
  | 'unavailable'
  | 'not_found'
  | 'media_lost'
  | 'pbx_lost'
  | 'failed'
  | 'shutdown'
  | 'kicked' // an operator removed the terminal from the room
  | 'cancelled'; // the PBX's side gave up an invitation before it was answered

/** Messages the bridge sends. */
export type ServerMessage =
  | {
      type: 'bound';
      v: number;
      kind: MediaKind;
      number: string;
      heartbeatMs?: number;
      limits?: Record<string, number>;
      /** present a new bind with this to come back after a dropped connection (single use) */
      resume?: string;
      resumeWindowMs?: number;
      /** after a resume: the calls still up, each with new media tokens */
      resumed?: boolean;
      calls?: { callId: string; to: string; codec: string; state: string; media: { audio?: { token: string; expiresInMs: number }; video?: { token: string; codec: string; expiresInMs: number } } }[];
    }
  | { type: 'token'; id?: number | string; callId: string; kind: 'audio' | 'video'; token: string; expiresInMs: number }
  | { type: 'registered'; id?: number | string; number: string; name: string }
  | { type: 'unregistered'; id?: number | string }
  | {
      type: 'calling';
      id?: number | string;
      callId: string;
      to: string;
      codec: string;
      media: {
        audio?: { token: string; expiresInMs: number };
        video?: { token?: string; codec: string; expiresInMs?: number };
        /** media travels on the control connection, with these stream ids */
        inline?: { audio: number; video?: number };
      };
    }
  | {
      type: 'incoming';
      callId: string;
      from: { number: string; name: string };
      to: string;
      codecs: string[];
      /** video codecs the PBX's side can carry; absent when it offers audio only */
      video?: string[];
      expiresInMs: number;
    }
  | {
      type: 'accepted';
      id?: number | string;
      callId: string;
      codec: string;
      media: { audio: { token: string; expiresInMs: number }; video?: { token: string; codec: string; expiresInMs: number } };
    }
  | { type: 'dtmf'; callId: string; digit: string }
  | { type: 'sharing'; id?: number | string; callId: string; contentId: string; media: { content: { token?: string; codec: string; expiresInMs?: number; inline?: number } } }
  | { type: 'pbx'; state: 'up' | 'down' }
  | { type: 'ringing'; callId: string }
  | { type: 'answered'; callId: string }
  | { type: 'hangup'; callId: string; reason: HangupReason; cause?: number; message?: string }
  | { type: 'error'; id?: number | string; code: string; message: string }
  | { type: 'pong'; id?: number | string };

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ConfmuxError('BAD_MESSAGE', 'not valid JSON');
  }
}

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
}

export function parseBind(text: string): BindMessage {
  const raw = parseJson(text);
  if (typeof raw !== 'object' || raw === null || (raw as { type?: unknown }).type !== 'bind') {
    throw new ConfmuxError('BIND_REQUIRED');
  }
  const v = (raw as { v?: unknown }).v;
  if (v !== PROTOCOL_VERSION) throw new ConfmuxError('UNSUPPORTED_VERSION', `protocol version ${String(v)} is not supported; this bridge speaks v${PROTOCOL_VERSION}`);
  const k = (raw as { kind?: unknown }).kind;
  if (!kind.safeParse(k).success) throw new ConfmuxError('UNSUPPORTED_KIND', `kind must be one of control, audio, video, content`);
  // Only the schema of this kind can match (the union returns the first that does): a valid bind
  // is checked against it alone. Through the union, a media bind failed BindControl first, and
  // zod built that failure's issues and messages for nothing (about 2 kB per media connection,
  // kept long enough to be promoted to the old generation). Anything it refuses goes through the
  // union, for the same error as ever.
  const own = (k === 'control' ? BindControl : BindMedia).safeParse(raw);
  if (own.success) return own.data;
  const result = Bind.safeParse(raw);
  if (!result.success) throw new ConfmuxError('BAD_MESSAGE', `bind: ${describe(result.error)}`);
  return result.data;
}

export function parseControl(text: string): ControlRequest {
  const raw = parseJson(text);
  const result = ControlMessage.safeParse(raw);
  if (!result.success) throw new ConfmuxError('BAD_MESSAGE', describe(result.error));
  return result.data;
}
