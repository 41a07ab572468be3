// L16/8000 (FreeSWITCH's unicast stream) <-> the terminal codecs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AudioConverter } from '../../bridge/media/AudioConverter.ts';
import { AUDIO_CODECS, L16_16K, L16_8K, PCMU, codecByName } from '../../bridge/protocol/codecs.ts';
import { ulawEncode } from '../../bridge/media/g711.ts';

function tone(rate: number, samples: number, hz = 400, amp = 8000): Buffer {
  const b = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) b.writeInt16LE(Math.round(amp * Math.sin((2 * Math.PI * hz * i) / rate)), i * 2);
  return b;
}

test('L16/8000 is a leg format, not offered to terminals', () => {
  assert.equal(L16_8K.id, 2);
  assert.equal(L16_8K.frameBytes, 320);
  assert.ok(!AUDIO_CODECS.includes(L16_8K));
  assert.equal(codecByName('L16/8000'), undefined);
});

test('L16/16000 <-> L16/8000: 640 <-> 320 bytes, the tone survives, output buffer reused', () => {
  const down = new AudioConverter(L16_16K, L16_8K);
  const up = new AudioConverter(L16_8K, L16_16K);
  const src = tone(16000, 320);
  const a = down.convert(src);
  assert.equal(a.length, 320);
  // sample i at 8 kHz is the average of samples 2i, 2i+1 at 16 kHz
  assert.equal(a.readInt16LE(10), (src.readInt16LE(20) + src.readInt16LE(22)) >> 1);
  const b = up.convert(a);
  assert.equal(b.length, 640);
  for (let i = 40; i < 300; i++) assert.ok(Math.abs(b.readInt16LE(i * 2) - src.readInt16LE(i * 2)) < 800, `sample ${i}`);
  const again = down.convert(src);
  assert.equal(again.buffer, a.buffer, 'no allocation per frame');
});

test('PCMU/8000 <-> L16/8000: 160 <-> 320 bytes', () => {
  const toU = new AudioConverter(L16_8K, PCMU);
  const fromU = new AudioConverter(PCMU, L16_8K);
  const src = tone(8000, 160);
  const u = toU.convert(src);
  assert.equal(u.length, 160);
  assert.equal(u[7], ulawEncode(src.readInt16LE(14)));
  const back = fromU.convert(u);
  assert.equal(back.length, 320);
  for (let i = 0; i < 160; i++) assert.ok(Math.abs(back.readInt16LE(i * 2) - src.readInt16LE(i * 2)) < 300);
  assert.equal(fromU.convert(u).buffer, back.buffer, 'no allocation per frame');
});
