/**
 * RTP (RFC 3550) fixed header, written into and read from caller-owned buffers: no allocation.
 *
 *  0                   1                   2                   3
 *  V=2|P|X| CC  |M|     PT      |        sequence number        |
 *  timestamp                                                      |
 *  SSRC                                                           |
 *  [CSRC list: CC x 32 bits] [extension: 16-bit profile, 16-bit length in words, data]
 */
export const RTP_HEADER_BYTES = 12;

export function writeRtpHeader(buf: Buffer, payloadType: number, marker: boolean, seq: number, timestamp: number, ssrc: number): void {
  buf[0] = 0x80; // version 2, no padding, no extension, no CSRC
  buf[1] = (marker ? 0x80 : 0) | (payloadType & 0x7f);
  buf.writeUInt16BE(seq & 0xffff, 2);
  buf.writeUInt32BE(timestamp >>> 0, 4);
  buf.writeUInt32BE(ssrc >>> 0, 8);
}

/** Offsets of a received packet's payload; -1 in payloadStart when the packet is not valid RTP. */
export interface RtpView {
  payloadStart: number;
  payloadEnd: number;
  payloadType: number;
  marker: boolean;
  seq: number;
  timestamp: number;
  ssrc: number;
}

export function newRtpView(): RtpView {
  return { payloadStart: -1, payloadEnd: -1, payloadType: 0, marker: false, seq: 0, timestamp: 0, ssrc: 0 };
}

/** Fills `view` from `buf`; returns false (and payloadStart -1) for anything that is not RTP v2. */
export function readRtp(buf: Buffer, view: RtpView): boolean {
  view.payloadStart = -1;
  const len = buf.length;
  if (len < RTP_HEADER_BYTES) return false;
  const b0 = buf[0]!;
  if (b0 >> 6 !== 2) return false;
  const b1 = buf[1]!;
  // RTCP shares the port in rtcp-mux: payload types 72-76 with the marker bit are RTCP (RFC 5761)
  if (b1 >= 200 && b1 <= 204) return false;
  let start = RTP_HEADER_BYTES + (b0 & 0x0f) * 4;
  if (start > len) return false;
  if (b0 & 0x10) {
    if (start + 4 > len) return false;
    start += 4 + buf.readUInt16BE(start + 2) * 4;
    if (start > len) return false;
  }
  let end = len;
  if (b0 & 0x20) {
    const pad = buf[len - 1]!;
    if (pad === 0 || start + pad > len) return false;
    end -= pad;
  }
  view.payloadStart = start;
  view.payloadEnd = end;
  view.payloadType = b1 & 0x7f;
  view.marker = (b1 & 0x80) !== 0;
  view.seq = buf.readUInt16BE(2);
  view.timestamp = buf.readUInt32BE(4);
  view.ssrc = buf.readUInt32BE(8);
  return true;
}
