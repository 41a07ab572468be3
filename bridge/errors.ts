/**
 * The one error catalogue. Every error the bridge reports to a terminal has a stable code, a
 * default message and the WebSocket close code used when the error ends the connection.
 * docs/protocol.md lists the same table; tests/unit/errors.test.ts keeps the two in step.
 */
export const ERRORS = {
  BAD_MESSAGE: { close: 4400, message: 'malformed or unknown message' },
  BIND_REQUIRED: { close: 4401, message: 'the first message on a connection must be bind' },
  AUTH_FAILED: { close: 4403, message: 'wrong number or password' },
  TOKEN_INVALID: { close: 4404, message: 'media token unknown, expired, already used or not for this call and kind' },
  UNSUPPORTED_VERSION: { close: 4405, message: 'unsupported protocol version' },
  UNSUPPORTED_KIND: { close: 4406, message: 'unsupported connection kind' },
  BIND_TIMEOUT: { close: 4408, message: 'no bind message within the bind timeout' },
  REPLACED: { close: 4409, message: 'a newer session of this terminal replaced this one' },
  BAD_FRAME: { close: 4410, message: 'malformed media frame' },
  RATE_LIMITED: { close: 4429, message: 'too many messages or connections' },
  TOO_MANY_CONNECTIONS: { close: 4431, message: 'too many connections from this address, or waiting to bind' },
  LOGIN_THROTTLED: { close: 4432, message: 'too many failed logins: try again later' },
  RESUME_FAILED: { close: 4434, message: 'nothing to resume: the window has passed or the token is wrong' },
  ORIGIN_REFUSED: { close: 4433, message: 'this browser origin may not connect (the handshake is answered 403)' },
  FRAME_TOO_LARGE: { close: 4413, message: 'message larger than the limit for this connection' },
  NOT_REGISTERED: { close: 4412, message: 'register before placing calls' },
  CALL_LIMIT: { close: 4420, message: 'too many calls on this terminal' },
  NO_SUCH_CALL: { close: 4421, message: 'no such call' },
  CODEC_UNSUPPORTED: { close: 4415, message: 'none of the offered codecs is supported' },
  NO_VIDEO: { close: 4416, message: 'this call carries no video: content sharing needs a call with video' },
  HEARTBEAT_TIMEOUT: { close: 4402, message: 'no heartbeat answer' },
  PBX_UNAVAILABLE: { close: 4503, message: 'the media server is not reachable' },
  SHUTTING_DOWN: { close: 1001, message: 'the bridge is shutting down' },
  INTERNAL: { close: 1011, message: 'internal error' },
} as const satisfies Record<string, { close: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class ConfmuxError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'ConfmuxError';
    this.code = code;
  }
  get closeCode(): number {
    return ERRORS[this.code].close;
  }
}

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERRORS, value);
}

/** WebSocket close reasons are limited to 123 bytes: "CODE: message", cut to fit. */
export function closeReason(code: ErrorCode, message?: string): string {
  const text = `${code}: ${message ?? ERRORS[code].message}`;
  const buf = Buffer.from(text);
  if (buf.length <= 123) return text;
  return buf.subarray(0, 120).toString().replace(/\uFFFD$/, '') + '...';
}
