/**
 * SDP (RFC 4566) for the bridge's SIP leg: parse the media server's offer (m-lines with their
 * rtpmap/fmtp, connection address, direction) and build the answer.
 */
export interface SdpFormat {
  payloadType: number;
  /** encoding name as in rtpmap, e.g. PCMU, H264, VP8, telephone-event */
  name: string;
  clockRate: number;
  fmtp?: string;
}

export interface SdpMedia {
  kind: string; // audio, video
  port: number;
  protocol: string;
  formats: SdpFormat[];
  /** connection address of this media (media-level c= or the session's) */
  address: string;
  direction: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
  /** other a= lines, kept as they are */
  attributes: string[];
}

export interface Sdp {
  origin: string;
  address: string;
  media: SdpMedia[];
}

const STATIC: Record<number, [string, number]> = { 0: ['PCMU', 8000], 8: ['PCMA', 8000], 9: ['G722', 8000], 18: ['G729', 8000] };

export function parseSdp(text: string): Sdp {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 1 && l[1] === '=');
  let origin = '';
  let sessionAddress = '';
  const media: SdpMedia[] = [];
  let current: SdpMedia | null = null;
  let currentPts: number[] = [];
  const finish = (): void => {
    if (!current) return;
    // keep offer order; fill static payload types without rtpmap
    const byPt = new Map(current.formats.map((f) => [f.payloadType, f]));
    current.formats = currentPts.map((pt) => byPt.get(pt) ?? { payloadType: pt, name: STATIC[pt]?.[0] ?? `PT${pt}`, clockRate: STATIC[pt]?.[1] ?? 8000 });
    media.push(current);
  };
  for (const line of lines) {
    const type = line[0];
    const value = line.slice(2).trim();
    if (type === 'o') origin = value;
    else if (type === 'c') {
      const addr = value.split(' ')[2] ?? '';
      if (current) current.address = addr;
      else sessionAddress = addr;
    } else if (type === 'm') {
      finish();
      const [kind, port, protocol, ...pts] = value.split(' ');
      current = { kind: kind ?? '', port: Number(port), protocol: protocol ?? '', formats: [], address: sessionAddress, direction: 'sendrecv', attributes: [] };
      currentPts = pts.map(Number).filter((n) => Number.isInteger(n));
    } else if (type === 'a' && current) {
      const rtpmap = /^rtpmap:(\d+) ([^/]+)\/(\d+)/.exec(value);
      const fmtp = /^fmtp:(\d+) (.*)$/.exec(value);
      if (rtpmap) current.formats.push({ payloadType: Number(rtpmap[1]), name: rtpmap[2]!, clockRate: Number(rtpmap[3]) });
      else if (fmtp) {
        const f = current.formats.find((x) => x.payloadType === Number(fmtp[1]));
        if (f) f.fmtp = fmtp[2];
        else current.attributes.push(value);
      } else if (value === 'sendrecv' || value === 'sendonly' || value === 'recvonly' || value === 'inactive') current.direction = value;
      else current.attributes.push(value);
    }
  }
  finish();
  for (const m of media) if (!m.address) m.address = sessionAddress;
  return { origin, address: sessionAddress, media };
}

export interface AnswerMedia {
  kind: string;
  port: number;
  /** 0 rejects the m-line */
  formats: SdpFormat[];
  direction?: SdpMedia['direction'];
  attributes?: string[];
}

export function buildSdp(address: string, sessionId: number, media: AnswerMedia[]): string {
  const lines = ['v=0', `o=confmux ${sessionId} ${sessionId} IN IP4 ${address}`, 's=confmux', `c=IN IP4 ${address}`, 't=0 0'];
  for (const m of media) {
    const pts = m.formats.length ? m.formats.map((f) => f.payloadType).join(' ') : '0';
    lines.push(`m=${m.kind} ${m.formats.length ? m.port : 0} RTP/AVP ${pts}`);
    for (const f of m.formats) {
      lines.push(`a=rtpmap:${f.payloadType} ${f.name}/${f.clockRate}`);
      if (f.fmtp) lines.push(`a=fmtp:${f.payloadType} ${f.fmtp}`);
    }
    for (const a of m.attributes ?? []) lines.push(`a=${a}`);
    lines.push(`a=${m.direction ?? 'sendrecv'}`);
  }
  return lines.join('\r\n') + '\r\n';
}
