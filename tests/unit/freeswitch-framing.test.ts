// ESL framing held to the exact bytes of real FreeSWITCH 1.10.12 transcripts (tests/fixtures/freeswitch-esl).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { EslFramingError, EslParser, encodeCommand, parseJsonEvent, parsePlainEvent } from '../../plugin/freeswitch/eslFraming.ts';
import { TRANSCRIPTS, loadTranscript } from '../fixtures/FakeEslServer.ts';

const files = readdirSync(TRANSCRIPTS).filter((f) => f.endsWith('.esl.jsonl')).sort();

test('every recorded client command is what encodeCommand writes (golden bytes)', () => {
  let n = 0;
  for (const file of files) {
    for (const r of loadTranscript(file)) {
      if (r.dir !== 'c2s' || r.eof) continue;
      const [line = '', ...rest] = r.data.slice(0, -2).split('\n');
      const headers = Object.fromEntries(rest.map((h) => [h.slice(0, h.indexOf(': ')), h.slice(h.indexOf(': ') + 2)]));
      assert.equal(encodeCommand(line, rest.length ? headers : undefined).toString('utf8'), r.data, `${file}: ${line}`);
      n++;
    }
  }
  assert.ok(n > 50, `${n} commands checked`);
});

test('the recorded server stream parses into its messages, whatever the read boundaries', () => {
  for (const file of files) {
    const records = loadTranscript(file).filter((r) => r.dir === 's2c' && !r.eof);
    const stream = Buffer.from(records.map((r) => r.data).join(''), 'utf8');
    // one read, byte by byte, and pseudo-random splits
    for (const chunkSize of [stream.length, 1, 7, 1000]) {
      const parser = new EslParser();
      const got = [];
      for (let i = 0; i < stream.length; i += chunkSize) got.push(...parser.push(stream.subarray(i, i + chunkSize)));
      assert.equal(got.length, records.length, `${file} in chunks of ${chunkSize}`);
      for (let i = 0; i < records.length; i++) {
        const data = records[i]!.data;
        const split = data.indexOf('\n\n');
        assert.equal(got[i]!.body, data.slice(split + 2), `${file} #${i} body`);
        assert.equal(got[i]!.headers.get('Content-Type') !== undefined, true);
      }
    }
  }
});

test('header order varies: events carry Content-Length first, api/response Content-Type first', () => {
  const rec = loadTranscript('04-conference-events-plain.esl.jsonl');
  const parser = new EslParser();
  const msgs = parser.push(Buffer.from(rec.filter((r) => r.dir === 's2c' && !r.eof).map((r) => r.data).join('')));
  const types = msgs.map((m) => m.headers.get('Content-Type'));
  assert.deepEqual([...new Set(types)].sort(), ['api/response', 'auth/request', 'command/reply', 'text/disconnect-notice', 'text/event-plain']);
  const reply = msgs.find((m) => m.headers.get('Content-Type') === 'command/reply')!;
  assert.equal(reply.headers.get('Reply-Text'), '+OK accepted');
});

test('plain events: values URL-decoded, subclass, repeated headers keep the first, nested body', () => {
  const rec = loadTranscript('04-conference-events-plain.esl.jsonl');
  const bodies = new EslParser().push(Buffer.from(rec.filter((r) => r.dir === 's2c' && !r.eof).map((r) => r.data).join(''))).filter((m) => m.headers.get('Content-Type') === 'text/event-plain').map((m) => parsePlainEvent(m.body));
  const kick = bodies.find((e) => e.headers.get('Action') === 'kick-member')!;
  assert.equal(kick.headers.get('Event-Name'), 'CUSTOM');
  assert.equal(kick.headers.get('Event-Subclass'), 'conference::maintenance');
  assert.equal(kick.headers.get('Member-ID'), '1');
  assert.equal(kick.headers.get('Unique-ID'), '8c21c895-01d0-42b8-a19e-84ccc64cf8bb');
  const complete = bodies.find((e) => e.headers.get('Event-Name') === 'CHANNEL_HANGUP_COMPLETE')!;
  assert.equal(complete.headers.get('Hangup-Cause'), 'NORMAL_CLEARING');
  assert.equal(complete.headers.get('variable_hangup_cause_q850'), '16');
  const create = bodies.find((e) => e.headers.get('Event-Name') === 'CHANNEL_CREATE' && e.headers.get('Channel-Name') === 'loopback/9998-b')!;
  assert.equal(create.headers.get('variable_other_loopback_leg_uuid'), '8c21c895-01d0-42b8-a19e-84ccc64cf8bb');
  assert.equal(create.headers.get('Caller-Callee-ID-Name'), 'Outbound Call');

  const job = loadTranscript('06-bgapi-job-uuid.esl.jsonl').filter((r) => r.dir === 's2c' && r.data.includes('BACKGROUND_JOB'));
  const [msg] = new EslParser().push(Buffer.from(job[0]!.data));
  const ev = parsePlainEvent(msg!.body);
  assert.equal(ev.headers.get('Job-UUID'), '7f4db0f2-0b1e-4c57-9d2a-5c6a1e0b9a01');
  assert.equal(ev.headers.get('Job-Command'), 'originate');
  assert.match(ev.body, /^\+OK [0-9a-f-]{36}\n$/);
});

test('json events: strings, nested body in _body', () => {
  const rec = loadTranscript('15-bgapi-json.esl.jsonl').filter((r) => r.dir === 's2c' && r.data.includes('text/event-json'));
  const events = rec.map((r) => parseJsonEvent(new EslParser().push(Buffer.from(r.data))[0]!.body));
  assert.equal(events[0]!.headers.get('Event-Name'), 'BACKGROUND_JOB');
  assert.equal(events[0]!.body, '127.0.0.1');
  assert.equal(events[1]!.body, '-ERR no_such_command Command not found!\n');
});

test('commands cannot smuggle a second command', () => {
  assert.throws(() => encodeCommand('api status\n\napi fsctl shutdown'), EslFramingError);
  assert.throws(() => encodeCommand('sendmsg x', { 'call-command': 'unicast\nexecute-app-name: x' }), EslFramingError);
  assert.throws(() => new EslParser().push(Buffer.from('Content-Type: api/response\nContent-Length: -1\n\n')), EslFramingError);
});
