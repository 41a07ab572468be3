// RFC 4733 DTMF events: golden bytes, the receiver's one-digit-per-event rule, the sender's packets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DtmfReceiver, DtmfSender, dtmfEvent, writeDtmfEvent } from '../../plugin/rtp/dtmf.ts';

test('dtmf: event codes and golden payload bytes', () => {
  assert.deepEqual([...'0159*#AD'].map(dtmfEvent), [0, 1, 5, 9, 10, 11, 12, 15]);
  assert.equal(dtmfEvent('x'), -1);
  const b = Buffer.alloc(4);
  writeDtmfEvent(b, 0, 11, false, 10, 160);
  assert.equal(b.toString('hex'), '0b0a00a0'); // '#', E=0, volume 10, duration 160
  writeDtmfEvent(b, 0, 5, true, 10, 800);
  assert.equal(b.toString('hex'), '058a0320'); // '5', E=1, volume 10, duration 800
});

test('dtmf: the receiver reports each event once, whatever its repeats and end packets', () => {
  const got: string[] = [];
  const r = new DtmfReceiver((d) => got.push(d));
  // '4' at ts 1000: start, update, 3 end packets; then '2' at ts 2000; then a short packet; then '#'
  for (const hex of ['040a00a0', '040a0140', '048a0320', '048a0320', '048a0320']) r.push(Buffer.from(hex, 'hex'), 1000);
  for (const hex of ['020a00a0', '028a0320']) r.push(Buffer.from(hex, 'hex'), 2000);
  r.push(Buffer.from('0b0a', 'hex'), 3000);
  r.push(Buffer.from('0b0a00a0', 'hex'), 4000);
  r.push(Buffer.from('100a00a0', 'hex'), 5000); // event 16 (flash): not a digit
  assert.deepEqual(got, ['4', '2', '#']);
});

test('dtmf: the sender marks the first packet, keeps the timestamp, grows the duration, ends with three E packets', async () => {
  const sent: { hex: string; marker: boolean; ts: number }[] = [];
  let ts = 48000;
  const sender = new DtmfSender({
    sendEvent: (payload, marker, timestamp) => sent.push({ hex: payload.toString('hex'), marker, ts: timestamp }),
    get timestamp() {
      return ts;
    },
    skipTo(v: number) {
      ts = Math.max(ts, v);
    },
  });
  await sender.send('1');
  // no audio moved the clock on: the next event still gets a later timestamp (100 ms tone + 80 ms gap)
  assert.equal(ts, 48000 + 9 * 160);
  ts = 64000;
  await sender.send('#2');
  await assert.rejects(sender.send('1x'), /not DTMF/);
  assert.deepEqual(sent.slice(0, 8), [
    { hex: '010a00a0', marker: true, ts: 48000 },
    { hex: '010a0140', marker: false, ts: 48000 },
    { hex: '010a01e0', marker: false, ts: 48000 },
    { hex: '010a0280', marker: false, ts: 48000 },
    { hex: '010a0320', marker: false, ts: 48000 },
    { hex: '018a0320', marker: false, ts: 48000 },
    { hex: '018a0320', marker: false, ts: 48000 },
    { hex: '018a0320', marker: false, ts: 48000 },
  ]);
  assert.equal(sent.length, 24);
  assert.ok(sent.slice(8, 16).every((p) => p.ts === 64000 && p.hex.startsWith('0b')));
  assert.ok(sent.slice(16).every((p) => p.ts === 64000 + 9 * 160 && p.hex.startsWith('02')));
});
