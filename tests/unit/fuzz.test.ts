// Property-based fuzzing of every parser that reads bytes from outside: random and mutated input
// never crashes them; they answer with a value or their own typed error. FUZZ_RUNS=100000 for a
// longer run by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfmuxError } from '../../bridge/errors.ts';
import { parseBind, parseControl } from '../../bridge/protocol/messages.ts';
import { FRAME_HEADER_BYTES, checkFrame, readFrameHeader, writeFrameHeader } from '../../bridge/protocol/frame.ts';
import { newRtpView, readRtp } from '../../plugin/rtp/rtp.ts';
import { H264Depacketizer } from '../../plugin/rtp/h264.ts';
import { Vp8Depacketizer } from '../../plugin/rtp/vp8.ts';
import { parseSip, SipParseError } from '../../plugin/sip/SipMessage.ts';
import { parseSdp } from '../../plugin/sip/sdp.ts';
import { splitAccessUnits } from '../../bridge/media/h264Stream.ts';

const runs = Number(process.env.FUZZ_RUNS ?? 2000);
const params = { numRuns: runs };

/** JSON text that looks like our messages, with random fields and values mixed in. */
const messageLike = fc
  .record(
    {
      type: fc.constantFrom('bind', 'register', 'call', 'hangup', 'ping', 'accept', 'reject', 'dtmf', 'share', 'unshare', 'x'),
      v: fc.oneof(fc.constant(1), fc.integer(), fc.string()),
      kind: fc.constantFrom('control', 'audio', 'video', 'content', 'fax'),
      number: fc.oneof(fc.constant('1001'), fc.string()),
      password: fc.string(),
      token: fc.string(),
      callId: fc.string(),
      to: fc.string(),
      id: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
      codecs: fc.array(fc.string()),
      digits: fc.string(),
      extra: fc.anything(),
    },
    { requiredKeys: [] },
  )
  .map((o) => JSON.stringify(o));

test('control and bind parsers: any text gives a message or a ConfmuxError', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), messageLike), (text) => {
      for (const parse of [parseBind, parseControl]) {
        try {
          parse(text);
        } catch (err) {
          assert.ok(err instanceof ConfmuxError, `${String(err)} for ${text.slice(0, 80)}`);
        }
      }
    }),
    params,
  );
});

test('media frame header: any bytes are classified without throwing; valid headers round-trip', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const r = checkFrame(bytes);
      assert.ok([0, 1, 2, 3, 4].includes(r));
    }),
    params,
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffffffff }), (stream, codec, flags, seq, ts) => {
      const b = new Uint8Array(FRAME_HEADER_BYTES + 1);
      writeFrameHeader(b, stream, codec, flags, seq, ts);
      assert.deepEqual(readFrameHeader(b), { type: 0, stream, codec, flags, seq, timestamp: ts });
    }),
    params,
  );
});

test('RTP reader: any datagram is accepted with a payload inside it, or rejected', () => {
  const view = newRtpView();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const buf = Buffer.from(bytes);
      if (readRtp(buf, view)) assert.ok(view.payloadStart >= 12 && view.payloadStart <= view.payloadEnd && view.payloadEnd <= buf.length);
      else assert.equal(view.payloadStart, -1);
    }),
    params,
  );
});

test('H.264 and VP8 depacketizers: random payload streams never crash and yield only Buffers', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ payload: fc.uint8Array({ maxLength: 80 }), seqStep: fc.integer({ min: 0, max: 3 }), tsStep: fc.integer({ min: 0, max: 2 }), marker: fc.boolean() }), { maxLength: 40 }), (packets) => {
      let out = 0;
      const sink = (frame: Buffer): void => {
        assert.ok(Buffer.isBuffer(frame) && frame.length > 0);
        out++;
      };
      const h = new H264Depacketizer(sink);
      const v = new Vp8Depacketizer(sink);
      let seq = 0;
      let ts = 0;
      for (const p of packets) {
        seq = (seq + p.seqStep) & 0xffff;
        ts += p.tsStep * 3000;
        h.push(p.payload, seq, ts, p.marker);
        v.push(p.payload, seq, ts, p.marker);
      }
      assert.ok(out >= 0);
    }),
    params,
  );
});

test('SIP and SDP parsers: any text gives a message or a SipParseError; SDP never throws', () => {
  const sipLike = fc
    .tuple(fc.constantFrom('INVITE sip:a@b SIP/2.0', 'SIP/2.0 200 OK', 'BYE x SIP/2.0', '', 'garbage'), fc.array(fc.tuple(fc.constantFrom('Via', 'Call-ID', 'Content-Length', 'To', 'f', ' cont', ''), fc.string()), { maxLength: 8 }), fc.string())
    .map(([start, headers, body]) => `${start}\r\n${headers.map(([n, v]) => `${n}: ${v}`).join('\r\n')}\r\n\r\n${body}`);
  fc.assert(
    fc.property(fc.oneof(fc.string(), sipLike), (text) => {
      try {
        parseSip(text);
      } catch (err) {
        assert.ok(err instanceof SipParseError, String(err));
      }
      parseSdp(text);
    }),
    params,
  );
});

test('H.264 stream splitter: any bytes split without loss from the first start code', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constant(Uint8Array.of(0, 0, 1)), fc.constant(Uint8Array.of(0, 0, 0, 1)), fc.uint8Array({ maxLength: 12 })), { maxLength: 20 }), (parts) => {
      const stream = Buffer.concat(parts.map((p) => Buffer.from(p)));
      const units = splitAccessUnits(stream);
      const joined = Buffer.concat(units.map((u) => Buffer.from(u)));
      assert.ok(stream.subarray(stream.length - joined.length).equals(joined));
    }),
    params,
  );
});
