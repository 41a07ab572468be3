import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RTP_HEADER_BYTES, newRtpView, readRtp, writeRtpHeader } from '../../plugin/rtp/rtp.ts';

test('RTP header: golden bytes', () => {
  const buf = Buffer.alloc(RTP_HEADER_BYTES);
  writeRtpHeader(buf, 0, true, 0xabcd, 0x01020304, 0x11223344);
  assert.equal(buf.toString('hex'), '8080abcd0102030411223344');
  writeRtpHeader(buf, 8, false, 0x1ffff, 2 ** 32 + 1, 0xffffffff);
  assert.equal(buf.toString('hex'), '8008ffff00000001ffffffff');
});

test('RTP parse: plain packet', () => {
  const pkt = Buffer.from('8000000100000a0012345678' + 'ff'.repeat(160), 'hex');
  const v = newRtpView();
  assert.equal(readRtp(pkt, v), true);
  assert.deepEqual({ ...v }, { payloadStart: 12, payloadEnd: 172, payloadType: 0, marker: false, seq: 1, timestamp: 2560, ssrc: 0x12345678 });
});

test('RTP parse: CSRC list, header extension and padding are skipped', () => {
  // V=2 P=1 X=1 CC=1, M=1 PT=0; one CSRC; extension profile 0xbede with 1 word; payload 2 bytes; 2 bytes padding
  const pkt = Buffer.from('b180' + '0002' + '00000010' + 'cafebabe' + '01020304' + 'bede0001' + '10ff0000' + 'abcd' + '0002', 'hex');
  const v = newRtpView();
  assert.equal(readRtp(pkt, v), true);
  assert.equal(v.marker, true);
  assert.equal(pkt.subarray(v.payloadStart, v.payloadEnd).toString('hex'), 'abcd');
});

test('RTP parse: rejects what is not RTP', () => {
  const v = newRtpView();
  assert.equal(readRtp(Buffer.from('80c8000600000001', 'hex'), v), false, 'too short');
  assert.equal(readRtp(Buffer.from('80c80006' + '00'.repeat(24), 'hex'), v), false, 'RTCP sender report');
  assert.equal(readRtp(Buffer.from('40000001' + '00'.repeat(12), 'hex'), v), false, 'version 1');
  assert.equal(readRtp(Buffer.from('8f000001' + '00'.repeat(12), 'hex'), v), false, 'CSRC count beyond the packet');
  assert.equal(readRtp(Buffer.from('a0000001' + '00'.repeat(8) + 'ff00' + '10', 'hex'), v), false, 'padding beyond the payload');
  assert.equal(v.payloadStart, -1);
});
