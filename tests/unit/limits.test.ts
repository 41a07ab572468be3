import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../../bridge/server/TokenBucket.ts';
import { MediaTokens } from '../../bridge/server/MediaTokens.ts';

test('TokenBucket allows the burst, then the rate', () => {
  const b = new TokenBucket(10, 3, 0);
  assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
  assert.equal(b.take(50), false, 'half a token after 50 ms');
  assert.equal(b.take(100), true, 'a whole token after 100 ms');
});

test('MediaTokens are single-use and bound to number, call and kind', () => {
  const tokens = new MediaTokens(30000);
  try {
    const t = tokens.issue('1001', 'call1', 'audio');
    assert.ok(t.length >= 22);
    assert.equal(tokens.consume(t, '1002', 'call1', 'audio'), false, 'other number');
    const t2 = tokens.issue('1001', 'call1', 'audio');
    assert.equal(tokens.consume(t2, '1001', 'call2', 'audio'), false, 'other call');
    const t3 = tokens.issue('1001', 'call1', 'audio');
    assert.equal(tokens.consume(t3, '1001', 'call1', 'video'), false, 'other kind');
    const t4 = tokens.issue('1001', 'call1', 'audio');
    assert.equal(tokens.consume(t4, '1001', 'call1', 'audio'), true);
    assert.equal(tokens.consume(t4, '1001', 'call1', 'audio'), false, 'reused');
    const t5 = tokens.issue('1001', 'call1', 'audio');
    tokens.revokeCall('call1');
    assert.equal(tokens.consume(t5, '1001', 'call1', 'audio'), false, 'revoked with its call');
  } finally {
    tokens.close();
  }
});

test('MediaTokens expire', async () => {
  const tokens = new MediaTokens(20);
  try {
    const t = tokens.issue('1001', 'c', 'audio');
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(tokens.consume(t, '1001', 'c', 'audio'), false);
  } finally {
    tokens.close();
  }
});
