/**
 * DTMF as RTP events (RFC 4733 "telephone-event"), on the audio stream of the SIP leg:
 *
 *  0                   1                   2                   3
 *  |     event     |E|R| volume    |          duration             |
 *
 * Events 0-9 are the digits, 10 is *, 11 is #, 12-15 are A-D. A sender repeats an event's packet
 * every 20 ms with the same RTP timestamp and a growing duration, the first with the marker bit,
 * and ends it with three packets carrying the E bit.
 */
export const DTMF_EVENT_BYTES = 4;
const DIGITS = '0123456789*#ABCD';

/** RFC 4733 event code of a DTMF digit, or -1. */
export function dtmfEvent(digit: string): number {
  return digit.length === 1 ? DIGITS.indexOf(digit.toUpperCase()) : -1;
}

/** Writes one event payload at `offset`. `duration` in timestamp units (8 kHz: 160 per 20 ms). */
export function writeDtmfEvent(buf: Buffer, offset: number, event: number, end: boolean, volume: number, duration: number): void {
  buf[offset] = event;
  buf[offset + 1] = (end ? 0x80 : 0) | (volume & 0x3f);
  buf.writeUInt16BE(Math.min(duration, 0xffff), offset + 2);
}

/**
 * Turns received event packets into digits: one digit per event (per RTP timestamp), reported at
 * its first packet, so that retransmitted and end packets do not repeat it.
 */
export class DtmfReceiver {
  private lastTimestamp = -1;
  private readonly onDigit: (digit: string) => void;

  constructor(onDigit: (digit: string) => void) {
    this.onDigit = onDigit;
  }

  push(payload: Buffer, timestamp: number): void {
    if (payload.length < DTMF_EVENT_BYTES) return;
    const event = payload[0]!;
    if (event > 15 || timestamp === this.lastTimestamp) return;
    this.lastTimestamp = timestamp;
    this.onDigit(DIGITS[event]!);
  }
}

/** What a DtmfSender needs from the audio stream it rides on (same SSRC and sequence numbers). */
export interface DtmfStream {
  /** sends one event payload with the stream's next sequence number and the given timestamp */
  sendEvent(payload: Buffer, marker: boolean, timestamp: number): void;
  /** the audio stream's current RTP timestamp */
  readonly timestamp: number;
  /** moves the audio stream's timestamp on to at least `ts` (after an event, when no audio flowed) */
  skipTo(ts: number): void;
}

const TONE_PACKETS = 5; // 100 ms of tone
const END_PACKETS = 3;
const GAP_MS = 80;
const PACKET_MS = 20;
const SAMPLES_PER_PACKET = 160;
const VOLUME = 10; // -10 dBm0

/** Sends digits one after the other, each 100 ms of events then 80 ms of pause. */
export class DtmfSender {
  private readonly stream: DtmfStream;
  private readonly payload = Buffer.alloc(DTMF_EVENT_BYTES);
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(stream: DtmfStream) {
    this.stream = stream;
  }

  /** Queues the digits; resolves once they are sent. Digits other than 0-9 * # A-D are refused. */
  send(digits: string): Promise<void> {
    const events = [...digits].map(dtmfEvent);
    if (events.some((e) => e < 0)) return Promise.reject(new Error(`not DTMF digits: ${digits}`));
    const run = this.queue.then(async () => {
      for (const event of events) {
        if (this.closed) return;
        await this.sendOne(event);
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async sendOne(event: number): Promise<void> {
    // each event needs its own timestamp (a receiver tells events apart by it), also when no
    // audio moved the stream's clock on since the last one
    const ts = this.stream.timestamp;
    for (let i = 1; i <= TONE_PACKETS; i++) {
      if (this.closed) return;
      writeDtmfEvent(this.payload, 0, event, false, VOLUME, i * SAMPLES_PER_PACKET);
      this.stream.sendEvent(this.payload, i === 1, ts);
      await sleep(PACKET_MS);
    }
    for (let i = 0; i < END_PACKETS; i++) {
      writeDtmfEvent(this.payload, 0, event, true, VOLUME, TONE_PACKETS * SAMPLES_PER_PACKET);
      this.stream.sendEvent(this.payload, false, ts);
    }
    this.stream.skipTo((ts + (TONE_PACKETS + GAP_MS / PACKET_MS) * SAMPLES_PER_PACKET) >>> 0);
    await sleep(GAP_MS);
  }

  close(): void {
    this.closed = true;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
