import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ulawDecode, ulawEncode } from '../../bridge/media/g711.ts';
import { AudioConverter } from '../../bridge/media/AudioConverter.ts';
import { L16_16K, PCMU } from '../../bridge/protocol/codecs.ts';

test('u-law encodes and decodes the reference values (Sun g711.c)', () => {
  assert.deepEqual([0, 1000, -1000, 32767, -32768, 8].map(ulawEncode), [0xff, 0xce, 0x4e, 0x80, 0x00, 0xfe]);
  assert.deepEqual([0xff, 0x80, 0x00, 0x7f, 0xce].map(ulawDecode), [0, 32124, -32124, 0, 988]);
});

test('u-law round trip stays within the quantisation step', () => {
  for (let s = -32000; s <= 32000; s += 97) {
    const back = ulawDecode(ulawEncode(s));
    assert.ok(Math.abs(back - s) <= Math.max(8, Math.abs(s) / 16), `${s} -> ${back}`);
  }
});

function tone(freq: number, rate: number, n: number, amp = 8000): Buffer {
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(amp * Math.sin((2 * Math.PI * freq * i) / rate)), i * 2);
  return b;
}

test('AudioConverter L16/16000 -> PCMU/8000 -> L16/16000 keeps a 1 kHz tone', () => {
  const down = new AudioConverter(L16_16K, PCMU);
  const up = new AudioConverter(PCMU, L16_16K);
  const input = tone(1000, 16000, 320);
  const ulaw = Buffer.from(down.convert(input));
  assert.equal(ulaw.length, 160);
  const back = up.convert(ulaw);
  assert.equal(back.length, 640);
  let err = 0;
  let energy = 0;
  for (let i = 8; i < 320; i++) {
    const a = input.readInt16LE(i * 2);
    const b = back.readInt16LE(i * 2);
    err += (a - b) ** 2;
    energy += a * a;
  }
  const snrDb = 10 * Math.log10(energy / err);
  assert.ok(snrDb > 12, `SNR ${snrDb.toFixed(1)} dB`);
});

test('AudioConverter is a pass-through for the same codec and reuses its buffer otherwise', () => {
  const same = new AudioConverter(PCMU, PCMU);
  const b = Buffer.from([1, 2, 3]);
  assert.equal(same.convert(b), b);
  const conv = new AudioConverter(L16_16K, PCMU);
  const first = conv.convert(tone(440, 16000, 320));
  const second = conv.convert(tone(440, 16000, 320));
  assert.equal(first.buffer, second.buffer, 'no allocation per frame');
});
