import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FRAME_BAD_TYPE, FRAME_BAD_VERSION, FRAME_HEADER_BYTES, FRAME_KEYFRAME_REQUEST, FRAME_OK, FRAME_SHORT, checkFrame, readFrameHeader, writeFrameHeader, writeKeyframeRequest } from '../../bridge/protocol/frame.ts';
import { H264 } from '../../bridge/protocol/videoCodecs.ts';
import { L16_16K, PCMU, chooseCodec, codecById } from '../../bridge/protocol/codecs.ts';

test('media frame header: golden bytes', () => {
  const buf = Buffer.alloc(FRAME_HEADER_BYTES + 2);
  writeFrameHeader(buf, 0, L16_16K.id, 1, 0x1234, 0xdeadbeef);
  buf[10] = 0xaa;
  buf[11] = 0xbb;
  assert.equal(buf.toString('hex'), '10000101' + '1234' + 'deadbeef' + 'aabb');
  assert.deepEqual(readFrameHeader(buf), { type: 0, stream: 0, codec: 1, flags: 1, seq: 0x1234, timestamp: 0xdeadbeef });
  assert.equal(checkFrame(buf), FRAME_OK);
});

test('media frame header: sequence and timestamp wrap, stream id kept', () => {
  const buf = new Uint8Array(FRAME_HEADER_BYTES + 1);
  writeFrameHeader(buf, 2, PCMU.id, 0, 0x1ffff, 2 ** 32 + 5);
  assert.equal(Buffer.from(buf.subarray(0, 10)).toString('hex'), '10020000ffff00000005');
  assert.equal(readFrameHeader(buf).seq, 0xffff);
  assert.equal(readFrameHeader(buf).timestamp, 5);
});

test('checkFrame rejects short, wrong-version and wrong-type frames', () => {
  assert.equal(checkFrame(Buffer.from('10000101123400000001', 'hex')), FRAME_SHORT, 'header without payload');
  assert.equal(checkFrame(Buffer.from('2000010112340000000100', 'hex')), FRAME_BAD_VERSION);
  assert.equal(checkFrame(Buffer.from('1200010112340000000100', 'hex')), FRAME_BAD_TYPE);
  assert.equal(checkFrame(Buffer.from('100001011234000000', 'hex')), FRAME_SHORT, 'shorter than a header');
  assert.equal(checkFrame(Buffer.from('7b2274797065223a2262696e64227d', 'hex')), FRAME_BAD_VERSION, 'JSON text is not a frame');
});

test('keyframe request: golden bytes, header only', () => {
  const buf = new Uint8Array(FRAME_HEADER_BYTES);
  writeKeyframeRequest(buf, 0, H264.id);
  assert.equal(Buffer.from(buf).toString('hex'), '11000300000000000000');
  assert.equal(checkFrame(buf), FRAME_KEYFRAME_REQUEST);
});

test('codecs: ids, 20 ms frame sizes and negotiation order', () => {
  assert.equal(codecById(0), PCMU);
  assert.equal(codecById(1), L16_16K);
  assert.equal(PCMU.frameBytes, 160);
  assert.equal(L16_16K.frameBytes, 640);
  assert.equal(chooseCodec(['opus/48000', 'PCMU/8000', 'L16/16000']), PCMU);
  assert.equal(chooseCodec(['G729/8000']), undefined);
});
