import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBind, parseControl } from '../../bridge/protocol/messages.ts';
import { ConfmuxError } from '../../bridge/errors.ts';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfmuxError);
    return err.code;
  }
  return 'none';
}

test('bind: control with password, media with call and token', () => {
  assert.deepEqual(parseBind('{"type":"bind","v":1,"kind":"control","number":"1001","password":"x"}'), { type: 'bind', v: 1, kind: 'control', number: '1001', password: 'x' });
  const media = parseBind('{"type":"bind","v":1,"kind":"audio","number":"1001","callId":"abc","token":"0123456789abcdef0123"}');
  assert.equal(media.kind, 'audio');
});

test('bind: each malformed first message has its code', () => {
  assert.equal(code(() => parseBind('not json')), 'BAD_MESSAGE');
  assert.equal(code(() => parseBind('{"type":"register"}')), 'BIND_REQUIRED');
  assert.equal(code(() => parseBind('[1,2]')), 'BIND_REQUIRED');
  assert.equal(code(() => parseBind('{"type":"bind","v":2,"kind":"control","number":"1","password":"x"}')), 'UNSUPPORTED_VERSION');
  assert.equal(code(() => parseBind('{"type":"bind","v":1,"kind":"fax","number":"1","password":"x"}')), 'UNSUPPORTED_KIND');
  assert.equal(code(() => parseBind('{"type":"bind","v":1,"kind":"control","number":"10 01","password":"x"}')), 'BAD_MESSAGE');
  assert.equal(code(() => parseBind('{"type":"bind","v":1,"kind":"control","number":"1001"}')), 'BAD_MESSAGE');
  assert.equal(code(() => parseBind('{"type":"bind","v":1,"kind":"control","number":"1001","password":"x","extra":1}')), 'BAD_MESSAGE');
  assert.equal(code(() => parseBind('{"type":"bind","v":1,"kind":"audio","number":"1001","callId":"c","token":"short"}')), 'BAD_MESSAGE');
});

test('control messages: valid ones parse, others are BAD_MESSAGE', () => {
  assert.deepEqual(parseControl('{"type":"call","id":3,"to":"700","codecs":["PCMU/8000"]}'), { type: 'call', id: 3, to: '700', codecs: ['PCMU/8000'] });
  assert.deepEqual(parseControl('{"type":"hangup","callId":"x"}'), { type: 'hangup', callId: 'x' });
  assert.equal(code(() => parseControl('{"type":"call","to":"700; rm -rf"}')), 'BAD_MESSAGE');
  assert.equal(code(() => parseControl('{"type":"dance"}')), 'BAD_MESSAGE');
  assert.equal(code(() => parseControl('{"type":"call"}')), 'BAD_MESSAGE');
  assert.equal(code(() => parseControl('"call"')), 'BAD_MESSAGE');
});
