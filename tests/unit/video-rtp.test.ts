import { test } from 'node:test';
import assert from 'node:assert/strict';
import { H264Depacketizer, H264Packetizer, isH264Keyframe } from '../../plugin/rtp/h264.ts';
import { Vp8Depacketizer, Vp8Packetizer, isVp8Keyframe, vp8DescriptorSize } from '../../plugin/rtp/vp8.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function collect(p: { packetize(f: Uint8Array, e: (p: Uint8Array, m: boolean) => void): void }, frame: Uint8Array): [string, boolean][] {
  const out: [string, boolean][] = [];
  p.packetize(frame, (payload, marker) => out.push([hex(payload), marker]));
  return out;
}

// SPS, PPS and an IDR slice of 10 bytes, with 4- and 3-byte start codes
const AU = Buffer.from('00000001' + '6742c01e' + '000001' + '68ce3c80' + '00000001' + '65888400aabbccddeeff', 'hex');

test('H.264 packetizer: single NAL unit packets, marker on the last', () => {
  assert.deepEqual(collect(new H264Packetizer(1200), AU), [
    ['6742c01e', false],
    ['68ce3c80', false],
    ['65888400aabbccddeeff', true],
  ]);
});

test('H.264 packetizer: FU-A fragments (golden bytes)', () => {
  // max payload 6: FU indicator (NRI of 0x65 | 28 = 0x7c), FU header S/E + type 5, 4 bytes each
  assert.deepEqual(collect(new H264Packetizer(6), Buffer.from('0000000165888400aabbccddeeff', 'hex')), [
    ['7c85888400aa', false],
    ['7c05bbccddee', false],
    ['7c45ff', true],
  ]);
});

test('H.264 depacketizer: FU-A and STAP-A back to Annex B, keyframe flagged', () => {
  const got: [string, number, boolean][] = [];
  const d = new H264Depacketizer((f, ts, key) => got.push([hex(f), ts, key]));
  // STAP-A with SPS and PPS, then the IDR in three FU-A fragments
  d.push(Buffer.from('78' + '0004' + '6742c01e' + '0004' + '68ce3c80', 'hex'), 10, 9000, false);
  d.push(Buffer.from('7c85888400aa', 'hex'), 11, 9000, false);
  d.push(Buffer.from('7c05bbccddee', 'hex'), 12, 9000, false);
  d.push(Buffer.from('7c45ff', 'hex'), 13, 9000, true);
  assert.deepEqual(got, [['00000001' + '6742c01e' + '00000001' + '68ce3c80' + '00000001' + '65888400aabbccddeeff', 9000, true]]);
});

test('H.264 depacketizer: a NAL unit with a lost fragment is dropped, the rest delivered', () => {
  const got: string[] = [];
  const d = new H264Depacketizer((f) => got.push(hex(f)));
  d.push(Buffer.from('41aa', 'hex'), 1, 100, false); // a small non-IDR slice
  d.push(Buffer.from('7c8588', 'hex'), 2, 100, false); // FU start
  // seq 3 lost
  d.push(Buffer.from('7c45ff', 'hex'), 4, 100, true); // FU end
  assert.deepEqual(got, ['0000000141aa']);
  assert.equal(d.droppedNals, 1);
  // a following frame is fine again
  d.push(Buffer.from('41bb', 'hex'), 5, 200, true);
  assert.deepEqual(got, ['0000000141aa', '0000000141bb']);
});

test('H.264 round trip of a large keyframe through small packets', () => {
  const big = Buffer.concat([Buffer.from('0000000167640028', 'hex'), Buffer.from('0000000165', 'hex'), Buffer.alloc(5000, 7)]);
  const got: Buffer[] = [];
  const d = new H264Depacketizer((f) => got.push(f));
  let seq = 0;
  new H264Packetizer(1200).packetize(big, (p, m) => d.push(Buffer.from(p), seq++, 3000, m));
  assert.equal(got.length, 1);
  assert.equal(hex(got[0]!), hex(big));
  assert.equal(isH264Keyframe(got[0]!), true);
  assert.equal(isH264Keyframe(Buffer.from('0000000141aa', 'hex')), false);
});

test('VP8: descriptor sizes, packetizer golden bytes, reassembly, loss', () => {
  assert.equal(vp8DescriptorSize(Buffer.from('10aa', 'hex')), 1);
  assert.equal(vp8DescriptorSize(Buffer.from('9080' + '05' + 'aa', 'hex')), 3, 'X, I, 7-bit PictureID');
  assert.equal(vp8DescriptorSize(Buffer.from('90c0' + '8005' + '01' + 'aa', 'hex')), 5, 'X, I (15-bit), L');
  assert.equal(vp8DescriptorSize(Buffer.from('90e0' + '8005' + '01' + '40' + 'aa', 'hex')), 6, 'X, I (15-bit), L, T');
  assert.equal(vp8DescriptorSize(Buffer.from('90', 'hex')), -1);
  const frame = Buffer.from('9d012a0102030405', 'hex'); // key frame: P bit 0
  assert.equal(isVp8Keyframe(frame), false);
  const key = Buffer.from('1001020304', 'hex');
  assert.equal(isVp8Keyframe(key), true);
  assert.deepEqual(collect(new Vp8Packetizer(4), key), [
    ['10100102', false],
    ['000304', true],
  ]);
  const got: string[] = [];
  const d = new Vp8Depacketizer((f) => got.push(hex(f)));
  let seq = 0;
  new Vp8Packetizer(4).packetize(key, (p, m) => d.push(Buffer.from(p), seq++, 90, m));
  assert.deepEqual(got, ['1001020304']);
  d.push(Buffer.from('10aabb', 'hex'), seq++, 180, false);
  seq++; // lost
  d.push(Buffer.from('00ccdd', 'hex'), seq++, 180, true);
  assert.deepEqual(got, ['1001020304'], 'a frame with a lost packet is not delivered');
  assert.equal(d.droppedFrames, 1);
});
