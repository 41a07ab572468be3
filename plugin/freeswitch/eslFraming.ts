/**
 * FreeSWITCH event socket (ESL) framing, inbound mode, as observed in the recorded transcripts
 * (tests/fixtures/freeswitch-esl/README.md):
 *  - a message is `Name: value\n` header lines ended by an empty line; when a `Content-Length`
 *    header is present, exactly that many BYTES of body follow (header order varies by type, so the
 *    whole block is read before looking for the length);
 *  - a client command is one line plus optional header lines, ended by an empty line;
 *  - a plain event's body is itself a header block (values URL-encoded, names not), optionally
 *    followed by its own Content-Length body (BACKGROUND_JOB); a json event's body is one object.
 * Pure functions and one incremental parser, no I/O: tests/unit/freeswitch-framing.test.ts holds
 * them to the transcripts' exact bytes.
 */

export interface EslMessage {
  /** outer headers (names as sent; values as sent, not decoded) */
  readonly headers: ReadonlyMap<string, string>;
  /** the Content-Length body, '' when there is none */
  readonly body: string;
}

/** The largest header block or body we accept; a peer sending more is broken or hostile. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

const NL = 0x0a;

export class EslFramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EslFramingError';
  }
}

/**
 * Incremental parser: push() whatever the socket delivered (any split, several messages coalesced),
 * get back the complete messages. Throws EslFramingError on a stream that cannot be ESL.
 */
export class EslParser {
  private buf: Buffer = Buffer.alloc(0);
  /** headers of a message whose body has not fully arrived */
  private pendingHeaders: Map<string, string> | null = null;
  private pendingLength = 0;

  push(chunk: Buffer): EslMessage[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: EslMessage[] = [];
    for (;;) {
      if (this.pendingHeaders === null) {
        // FreeSWITCH ends lines with \n only; tolerate \r\n from anything else
        const end = findBlankLine(this.buf);
        if (end < 0) {
          if (this.buf.length > MAX_MESSAGE_BYTES) throw new EslFramingError('header block too large');
          break;
        }
        const block = this.buf.toString('utf8', 0, end);
        this.buf = this.buf.subarray(end + blankLength(this.buf, end));
        if (block.trim() === '') continue; // stray newlines between messages
        const headers = parseHeaderBlock(block, false);
        const lengthText = headers.get('Content-Length');
        const length = lengthText === undefined ? 0 : Number(lengthText);
        if (!Number.isInteger(length) || length < 0 || length > MAX_MESSAGE_BYTES) throw new EslFramingError(`bad Content-Length ${lengthText}`);
        this.pendingHeaders = headers;
        this.pendingLength = length;
      }
      if (this.buf.length < this.pendingLength) break;
      const body = this.pendingLength === 0 ? '' : this.buf.toString('utf8', 0, this.pendingLength);
      this.buf = this.buf.subarray(this.pendingLength);
      out.push({ headers: this.pendingHeaders, body });
      this.pendingHeaders = null;
      this.pendingLength = 0;
    }
    if (this.buf.length === 0) this.buf = Buffer.alloc(0);
    return out;
  }
}

/** Index of the first "\n\n" (or "\n\r\n") in buf, or -1. The header block is buf[0, index). */
function findBlankLine(buf: Buffer): number {
  let i = buf.indexOf(NL);
  while (i >= 0 && i + 1 < buf.length) {
    if (buf[i + 1] === NL) return i;
    if (buf[i + 1] === 0x0d && buf[i + 2] === NL) return i;
    i = buf.indexOf(NL, i + 1);
  }
  return -1;
}

function blankLength(buf: Buffer, at: number): number {
  return buf[at + 1] === NL ? 2 : 3;
}

/**
 * `Name: value` lines. The first occurrence of a name wins (CHANNEL_HANGUP_COMPLETE repeats
 * Hangup-Cause, floor-change repeats Conference-Name; the copies carry the same value).
 */
export function parseHeaderBlock(block: string, decode: boolean): Map<string, string> {
  const headers = new Map<string, string>();
  for (const raw of block.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new EslFramingError(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon);
    // "Name: value"; `User-Data: ` has an empty value with the space kept
    let value = line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (decode) value = safeDecode(value);
    if (!headers.has(name)) headers.set(name, value);
  }
  return headers;
}

function safeDecode(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** A parsed event: headers (decoded) and the event's own body, if any (BACKGROUND_JOB's result). */
export interface ParsedEventBody {
  headers: Map<string, string>;
  body: string;
}

/** The body of a `text/event-plain` message. */
export function parsePlainEvent(text: string): ParsedEventBody {
  const split = text.indexOf('\n\n');
  const block = split < 0 ? text : text.slice(0, split);
  const headers = parseHeaderBlock(block, true);
  let body = '';
  const lengthText = headers.get('Content-Length');
  if (split >= 0 && lengthText !== undefined) {
    const length = Number(lengthText);
    // the length counts bytes; the nested body is ASCII in every transcript, but be exact anyway
    body = Buffer.from(text.slice(split + 2), 'utf8').subarray(0, length).toString('utf8');
  }
  return { headers, body };
}

/** The body of a `text/event-json` message: an object of strings, the nested body in `_body`. */
export function parseJsonEvent(text: string): ParsedEventBody {
  const parsed = JSON.parse(text) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new EslFramingError('json event is not an object');
  const headers = new Map<string, string>();
  let body = '';
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (k === '_body') body = String(v);
    else headers.set(k, typeof v === 'string' ? v : String(v));
  }
  return { headers, body };
}

/** Characters that would end a command line or a header early: never allowed in what we send. */
const UNSAFE = /[\r\n]/;

/**
 * One client command: `line\n` + `Name: value\n` per header + `\n`. Throws on a CR or LF inside
 * the line or a header (that would let a value inject a second command).
 */
export function encodeCommand(line: string, headers?: Readonly<Record<string, string>>): Buffer {
  if (UNSAFE.test(line)) throw new EslFramingError('newline in an ESL command');
  let text = `${line}\n`;
  if (headers) {
    for (const [name, value] of Object.entries(headers)) {
      if (UNSAFE.test(name) || UNSAFE.test(value) || name.includes(':')) throw new EslFramingError(`bad ESL header ${JSON.stringify(name)}`);
      text += `${name}: ${value}\n`;
    }
  }
  return Buffer.from(`${text}\n`, 'utf8');
}
