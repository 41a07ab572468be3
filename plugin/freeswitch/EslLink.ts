/**
 * Our typed view of FreeSWITCH's event socket: the only ESL the driver sees. NetEslLink implements
 * it over node:net (modesl 1.2.1 was not used: callbacks only, no reconnect, no types, and it pulls
 * xml2js 0.4.23 with a prototype-pollution advisory; our framing is 150 lines held to the real
 * transcripts' bytes). Replacing the client means writing one other class with this shape.
 */
import type { EventEmitter } from 'node:events';

/** One FreeSWITCH event, plain or json on the wire, the same shape here. */
export interface EslEvent {
  /** Event-Name (CHANNEL_ANSWER, CUSTOM, BACKGROUND_JOB ...) */
  readonly name: string;
  /** Event-Subclass for CUSTOM events (conference::maintenance), else '' */
  readonly subclass: string;
  /** Unique-ID of the channel the event is about, '' when none */
  readonly uuid: string;
  /** every header, values URL-decoded; the first of a repeated header */
  readonly headers: ReadonlyMap<string, string>;
  /** the event's own body (BACKGROUND_JOB: the command's result), '' when none */
  readonly body: string;
  /** a header or a channel variable (`variable_<name>`), undefined when absent */
  get(name: string): string | undefined;
}

export interface EslLinkEvents {
  event: [EslEvent];
  up: [];
  down: [Error];
}

export interface EslLink extends EventEmitter<EslLinkEvents> {
  readonly isUp: boolean;
  /**
   * Connects, authenticates and subscribes to the events given at construction; resolves once up,
   * rejects if the first attempt fails. Either way it keeps the link up from then on: after a loss
   * it reconnects with backoff (emitting down, then up) until close().
   */
  connect(): Promise<void>;
  /** Idempotent. Rejects everything pending. */
  close(): Promise<void>;
  /**
   * `api <command>`: resolves with the response body. A body starting with `-ERR ` rejects with
   * EslApiError, `-USAGE: ` with EslUsageError.
   */
  api(command: string): Promise<string>;
  /**
   * `bgapi <command>` with our own Job-UUID: resolves with the BACKGROUND_JOB body once the job is
   * done (which may take `timeoutMs`, e.g. an originate that rings), -ERR/-USAGE rejected as api().
   */
  bgapi(command: string, timeoutMs?: number): Promise<string>;
  /** `sendmsg <uuid>` with the given headers (call-command: unicast / execute / hangup ...). */
  sendmsg(uuid: string, headers: Readonly<Record<string, string>>): Promise<void>;
}

/** Any ESL failure: link down, timeout, refused command. */
export class EslError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EslError';
  }
}

/** The link is down (or went down while the request was pending). */
export class EslLinkDownError extends EslError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EslLinkDownError';
  }
}

/** No reply within the request's timeout. */
export class EslTimeoutError extends EslError {
  constructor(message: string) {
    super(message);
    this.name = 'EslTimeoutError';
  }
}

/** `auth` answered `-ERR invalid`. */
export class EslAuthError extends EslError {
  constructor(message = 'FreeSWITCH refused the event socket password') {
    super(message);
    this.name = 'EslAuthError';
  }
}

/** A command/reply with `-ERR ...` (sendmsg to an unknown uuid, unknown ESL command). */
export class EslCommandError extends EslError {
  /** the Reply-Text after "-ERR " */
  readonly reply: string;
  constructor(command: string, reply: string) {
    super(`${command}: -ERR ${reply}`);
    this.name = 'EslCommandError';
    this.reply = reply;
  }
}

/** An api (or bgapi job) whose body starts with `-ERR `. */
export class EslApiError extends EslError {
  /** the text after "-ERR ", trimmed: `USER_NOT_REGISTERED`, `No such channel!`, `no reply` ... */
  readonly reply: string;
  constructor(command: string, reply: string) {
    super(`${command}: -ERR ${reply}`);
    this.name = 'EslApiError';
    this.reply = reply;
  }

  /** originate failures answer with a hangup cause name (`-ERR USER_BUSY`) */
  get hangupCause(): string | undefined {
    return /^[A-Z][A-Z0-9_]+$/.test(this.reply) ? this.reply : undefined;
  }
}

/** An api whose body starts with `-USAGE: ` (missing or wrong arguments). */
export class EslUsageError extends EslError {
  readonly usage: string;
  constructor(command: string, usage: string) {
    super(`${command}: usage: ${usage}`);
    this.name = 'EslUsageError';
    this.usage = usage;
  }
}

/** Turns an api body into its result or the typed error it stands for. */
export function apiResult(command: string, body: string): string {
  if (body.startsWith('-ERR')) throw new EslApiError(command, body.slice(4).trim());
  if (body.startsWith('-USAGE:')) throw new EslUsageError(command, body.slice(7).trim());
  return body;
}
