/**
 * SIP messages (RFC 3261) as text: parse a datagram into a request or response with its headers,
 * serialise one back. Only what a loopback SIP leg between the bridge and its media server needs:
 * no compact-form multi-value splitting beyond what is used, no multipart bodies.
 */
export interface SipRequest {
  kind: 'request';
  method: string;
  uri: string;
  headers: SipHeaders;
  body: string;
}

export interface SipResponse {
  kind: 'response';
  status: number;
  reason: string;
  headers: SipHeaders;
  body: string;
}

export type SipMessage = SipRequest | SipResponse;

const COMPACT: Record<string, string> = {
  i: 'call-id',
  m: 'contact',
  e: 'content-encoding',
  l: 'content-length',
  c: 'content-type',
  f: 'from',
  s: 'subject',
  k: 'supported',
  t: 'to',
  v: 'via',
};

/** Header fields by lower-case name, in order; a name may repeat (Via, Record-Route). */
export class SipHeaders {
  private readonly list: [string, string][] = [];

  static canonical(name: string): string {
    const lower = name.toLowerCase();
    return COMPACT[lower] ?? lower;
  }

  add(name: string, value: string): this {
    this.list.push([name, value]);
    return this;
  }

  get(name: string): string | undefined {
    const key = SipHeaders.canonical(name);
    for (const [n, v] of this.list) if (SipHeaders.canonical(n) === key) return v;
    return undefined;
  }

  getAll(name: string): string[] {
    const key = SipHeaders.canonical(name);
    return this.list.filter(([n]) => SipHeaders.canonical(n) === key).map(([, v]) => v);
  }

  set(name: string, value: string): this {
    this.delete(name);
    return this.add(name, value);
  }

  delete(name: string): void {
    const key = SipHeaders.canonical(name);
    for (let i = this.list.length - 1; i >= 0; i--) if (SipHeaders.canonical(this.list[i]![0]) === key) this.list.splice(i, 1);
  }

  entries(): readonly [string, string][] {
    return this.list;
  }
}

export class SipParseError extends Error {}

export function parseSip(text: string): SipMessage {
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split);
  let body = split < 0 ? '' : text.slice(split + 4);
  const lines = head.split('\r\n');
  const start = lines.shift() ?? '';
  const headers = new SipHeaders();
  for (const line of lines) {
    if (line === '') continue;
    if (/^[ \t]/.test(line)) {
      // folded continuation of the previous header
      const last = headers.entries().at(-1);
      if (!last) throw new SipParseError('continuation line before any header');
      last[1] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new SipParseError(`bad header line: ${line.slice(0, 40)}`);
    headers.add(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const length = headers.get('content-length');
  if (length !== undefined) {
    const n = Number(length);
    if (!Number.isInteger(n) || n < 0) throw new SipParseError('bad Content-Length');
    body = Buffer.from(body).subarray(0, n).toString();
  }
  const status = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(start);
  if (status) return { kind: 'response', status: Number(status[1]), reason: status[2] ?? '', headers, body };
  const request = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(start);
  if (request) return { kind: 'request', method: request[1]!, uri: request[2]!, headers, body };
  throw new SipParseError(`bad start line: ${start.slice(0, 60)}`);
}

export function serializeSip(msg: SipMessage): string {
  const start = msg.kind === 'request' ? `${msg.method} ${msg.uri} SIP/2.0` : `SIP/2.0 ${msg.status} ${msg.reason}`;
  const lines = [start];
  for (const [n, v] of msg.headers.entries()) if (SipHeaders.canonical(n) !== 'content-length') lines.push(`${n}: ${v}`);
  lines.push(`Content-Length: ${Buffer.byteLength(msg.body)}`);
  return lines.join('\r\n') + '\r\n\r\n' + msg.body;
}

/** The tag parameter of a From/To header value, or undefined. */
export function tagOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return /;\s*tag=([^;>\s]+)/i.exec(value)?.[1];
}

/** The URI inside a name-addr (<sip:...>) or the bare addr-spec. */
export function uriOf(value: string): string {
  const m = /<([^>]+)>/.exec(value);
  return (m ? m[1]! : value.split(';')[0]!).trim();
}
