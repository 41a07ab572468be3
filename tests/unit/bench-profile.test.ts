// bench/profile.ts: the relay thread's perf samples sorted by what it was doing. The fixture is
// seven real samples of `perf script -F comm,ip,sym` (confmux-pump, 500 streams, --udp-echo).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { breakdown, classify, formatBreakdown, parsePerfScript } from '../../bench/profile.ts';

const text = readFileSync(new URL('../fixtures/perf-pump.txt', import.meta.url), 'utf8');

test('profile: perf script samples parsed, innermost frame first, kernel frames told apart', () => {
  const samples = parsePerfScript(text);
  assert.equal(samples.length, 7);
  assert.ok(samples.every((s) => s.comm === 'confmux-pump'));
  assert.equal(samples[0]!.stack[0], 'skb_release_data');
  assert.equal(samples[0]!.stack.at(-1), '__send');
  assert.equal(samples[0]!.kernel[0], true);
  assert.equal(samples[0]!.kernel.at(-1), false);
  assert.deepEqual(samples[1]!.kernel, [false, false], 'a sample in user space only');
});

test('profile: each sample sorted by the socket call it is in; loopback delivery flagged', () => {
  const got = parsePerfScript(text).map(classify);
  assert.deepEqual(got, [
    { category: 'TCP send (to the terminals)', loopback: true },
    { category: 'the pump\'s own code and libc (user space)', loopback: false },
    { category: 'other system calls and kernel work', loopback: false },
    { category: 'waiting for events (epoll_wait, sleeping, waking)', loopback: false },
    { category: 'UDP send (to the media server)', loopback: false },
    { category: 'TCP receive (from the terminals)', loopback: false },
    { category: 'UDP receive (from the media server)', loopback: false },
  ]);
});

test('profile: shares of the relay thread\'s samples, and µs per message from the bench\'s figure', () => {
  const b = breakdown(parsePerfScript(text));
  assert.equal(b.samples, 7);
  assert.equal(b.rows.reduce((n, r) => n + r.share, 0).toFixed(6), '1.000000');
  assert.equal(b.rows[0]!.loopbackShare, 1 / 7);
  const table = formatBreakdown(b, 7);
  assert.match(table, /\| TCP send \(to the terminals\) \| 14\.3 % \| 1\.00 \| 14\.3 % \|/);
  assert.equal(breakdown(parsePerfScript(text), 'node').samples, 0, 'another thread\'s samples are not counted');
});
