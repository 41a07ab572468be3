import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSip, serializeSip, tagOf, uriOf, SipHeaders } from '../../plugin/sip/SipMessage.ts';
import { buildSdp, parseSdp } from '../../plugin/sip/sdp.ts';

// an INVITE as Asterisk 22 sent it to the bridge's SIP leg (sandbox, pjsip logger), shortened
const SDP =
  'v=0\r\no=- 1 3 IN IP4 127.0.0.1\r\ns=Asterisk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10060 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\nm=video 10016 RTP/AVP 99 100\r\na=rtpmap:99 H264/90000\r\na=rtpmap:100 VP8/90000\r\na=rtcp-mux\r\n';
const INVITE = [
  'INVITE sip:confmux-abc@127.0.0.1:41213 SIP/2.0',
  'Via: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKPj1',
  'From: "Alice" <sip:1001@127.0.0.1>;tag=f1',
  'To: <sip:confmux-abc@127.0.0.1>',
  'Contact: <sip:asterisk@127.0.0.1:5060>',
  'Call-ID: c1',
  'CSeq: 101 INVITE',
  'Content-Type: application/sdp',
  `Content-Length:   ${SDP.length}`,
  '',
  SDP + 'trailing bytes beyond Content-Length are not part of the body',
].join('\r\n');

test('SIP: an INVITE parses; headers by name and compact form; tags and URIs', () => {
  const m = parseSip(INVITE);
  assert.equal(m.kind, 'request');
  if (m.kind !== 'request') return;
  assert.equal(m.method, 'INVITE');
  assert.equal(m.uri, 'sip:confmux-abc@127.0.0.1:41213');
  assert.equal(m.headers.get('call-id'), 'c1');
  assert.equal(m.headers.get('i'), 'c1', 'compact form');
  assert.equal(tagOf(m.headers.get('from')), 'f1');
  assert.equal(tagOf(m.headers.get('to')), undefined);
  assert.equal(uriOf(m.headers.get('contact')!), 'sip:asterisk@127.0.0.1:5060');
  assert.equal(m.body, SDP, 'the body is exactly Content-Length bytes');
});

test('SIP: a response serialises with a correct Content-Length (golden text)', () => {
  const h = new SipHeaders().add('Via', 'SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1').add('Call-ID', 'c1').add('CSeq', '1 BYE');
  assert.equal(serializeSip({ kind: 'response', status: 200, reason: 'OK', headers: h, body: '' }), 'SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n');
  const back = parseSip(serializeSip({ kind: 'request', method: 'INFO', uri: 'sip:a@b', headers: new SipHeaders().add('Call-ID', 'x'), body: 'héllo' }));
  assert.equal(back.body, 'héllo', 'Content-Length counts bytes, not characters');
});

test('SDP: the offer parses per m-line; the answer is built in offer order', () => {
  const offer = parseSdp(parseSip(INVITE).body);
  assert.deepEqual(
    offer.media.map((m) => [m.kind, m.port, m.formats.map((f) => `${f.payloadType} ${f.name}/${f.clockRate}${f.fmtp ? ` ${f.fmtp}` : ''}`), m.attributes]),
    [
      ['audio', 10060, ['0 PCMU/8000', '101 telephone-event/8000 0-16'], []],
      ['video', 10016, ['99 H264/90000', '100 VP8/90000'], ['rtcp-mux']],
    ],
  );
  const answer = buildSdp('127.0.0.1', 7, [
    { kind: 'audio', port: 4000, formats: [offer.media[0]!.formats[0]!], attributes: ['rtcp-mux'] },
    { kind: 'video', port: 4002, formats: [] },
  ]);
  assert.equal(answer, 'v=0\r\no=confmux 7 7 IN IP4 127.0.0.1\r\ns=confmux\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp-mux\r\na=sendrecv\r\nm=video 0 RTP/AVP 0\r\na=sendrecv\r\n');
});
