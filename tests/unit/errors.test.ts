import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS, closeReason } from '../../bridge/errors.ts';
import { TerminalError } from '../../bridge/sdk/TerminalError.ts';

test('docs/protocol.md lists every error code with its close code', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  for (const [code, { close }] of Object.entries(ERRORS)) {
    assert.match(doc, new RegExp(`\\| \`${code}\` \\| ${close} \\|`), code);
  }
});

test('close codes are distinct and in the application range (or standard ones)', () => {
  const codes = Object.values(ERRORS).map((e) => e.close);
  assert.equal(new Set(codes).size, codes.length);
  for (const c of codes) assert.ok((c >= 4000 && c <= 4999) || c === 1001 || c === 1011, String(c));
});

test('close reasons fit in 123 bytes and parse back in the SDK', () => {
  const long = closeReason('BAD_MESSAGE', 'x'.repeat(300));
  assert.ok(Buffer.byteLength(long) <= 123);
  const err = TerminalError.fromClose(4403, closeReason('AUTH_FAILED'));
  assert.equal(err.code, 'AUTH_FAILED');
  assert.equal(err.message, ERRORS.AUTH_FAILED.message);
  assert.equal(TerminalError.fromClose(1009, '').code, 'FRAME_TOO_LARGE');
});
