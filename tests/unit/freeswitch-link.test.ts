// NetEslLink against the FAKE ESL server: real FreeSWITCH 1.10.12 transcripts replayed byte for
// byte, and scripted answers for what no transcript covers (timeouts, drops, reconnect).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createLogger } from '../../bridge/logger.ts';
import { NetEslLink, type NetEslLinkOptions } from '../../plugin/freeswitch/NetEslLink.ts';
import { EslApiError, EslAuthError, EslCommandError, EslLinkDownError, EslTimeoutError, EslUsageError, type EslEvent } from '../../plugin/freeswitch/EslLink.ts';
import { FakeEslServer } from '../fixtures/FakeEslServer.ts';

const log = createLogger('silent');
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setup(fake: FakeEslServer, o: Partial<NetEslLinkOptions> = {}): Promise<NetEslLink> {
  const link = new NetEslLink({ host: '127.0.0.1', port: fake.port, password: 'EslAcc3pt', events: [], requestTimeoutMs: 2000, log, reconnectMinMs: 20, reconnectMaxMs: 50, ...o });
  cleanup.push(() => fake.close());
  cleanup.push(() => link.close());
  return link;
}

const CONF_EVENTS = ['CHANNEL_CREATE', 'CHANNEL_ANSWER', 'CHANNEL_HANGUP', 'CHANNEL_HANGUP_COMPLETE', 'CHANNEL_PARK', 'CUSTOM', 'conference::maintenance'];

test('01 auth ok, api status (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '01-auth-ok-api-status.esl.jsonl' });
  const link = await setup(fake);
  let ups = 0;
  link.on('up', () => ups++);
  await link.connect();
  assert.equal(link.isUp, true);
  assert.equal(ups, 1);
  assert.match(await link.api('status'), /FreeSWITCH \(Version 1\.10\.12-release {2}64bit\) is ready/);
  await link.close();
  await link.close(); // idempotent
  assert.deepEqual(fake.mismatches, []);
});

test('02 wrong password: connect rejects with EslAuthError (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '02-auth-wrong-password.esl.jsonl' });
  const link = await setup(fake, { password: 'wrongpass' });
  await assert.rejects(link.connect(), EslAuthError);
  assert.equal(link.isUp, false);
  assert.deepEqual(fake.mismatches, []);
});

test('03 user_data known / unknown, global_getvar (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '03-user-data-global-getvar.esl.jsonl' });
  const link = await setup(fake);
  await link.connect();
  assert.equal(await link.api('user_data 1000@127.0.0.1 param password'), 'acc3ptPw');
  await assert.rejects(link.api('user_data 9999@127.0.0.1 param password'), (e: unknown) => e instanceof EslApiError && e.reply === 'no reply');
  assert.equal(await link.api('global_getvar domain'), '127.0.0.1');
  assert.deepEqual(fake.mismatches, []);
});

test('09 failing api commands become typed errors (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '09-api-errors.esl.jsonl' });
  const link = await setup(fake);
  await link.connect();
  await assert.rejects(link.api('originate loopback/nosuchext/default &park'), (e: unknown) => e instanceof EslApiError && e.hangupCause === 'NORMAL_CLEARING');
  await assert.rejects(link.api('originate user/1001 &park'), (e: unknown) => e instanceof EslApiError && e.hangupCause === 'USER_NOT_REGISTERED');
  await assert.rejects(link.api('no_such_command'), (e: unknown) => e instanceof EslApiError && e.reply === 'no_such_command Command not found!' && e.hangupCause === undefined);
  await assert.rejects(link.api('conference 9999 list'), (e: unknown) => e instanceof EslApiError && e.reply === 'Conference 9999 not found');
  await assert.rejects(link.api('uuid_kill 00000000-0000-0000-0000-000000000000'), (e: unknown) => e instanceof EslApiError && e.reply === 'No such channel!');
  await assert.rejects(link.api('uuid_kill'), (e: unknown) => e instanceof EslUsageError && e.usage === '<uuid> [cause]');
  await assert.rejects(link.sendmsg('00000000-0000-0000-0000-000000000000', { 'call-command': 'hangup' }), (e: unknown) => e instanceof EslCommandError && /invalid session id/.test(e.reply));
  assert.equal(link.isUp, true, 'errors do not take the link down');
  assert.deepEqual(fake.mismatches, []);
});

test('04 originate into a conference, list / json_list / mute / unmute / kick and the events (transcript, plain)', async () => {
  const fake = await FakeEslServer.start({ replay: '04-conference-events-plain.esl.jsonl' });
  const link = await setup(fake, { events: CONF_EVENTS });
  const events: EslEvent[] = [];
  link.on('event', (e) => events.push(e));
  await link.connect();
  const uuid = (await link.api('originate loopback/9998/default &conference(3000@default)')).replace(/^\+OK /, '').trim();
  assert.equal(uuid, '8c21c895-01d0-42b8-a19e-84ccc64cf8bb');
  await new Promise((r) => setTimeout(r, 50));
  const list = await link.api('conference 3000 list');
  const [id, channel, memberUuid, name, number, flags] = list.trim().split(';');
  assert.deepEqual([id, channel, memberUuid, name, number, flags], ['1', 'loopback/9998-a', uuid, 'Outbound Call', 'default', 'hear|speak|floor']);
  const json = JSON.parse(await link.api('conference 3000 json_list')) as { conference_name: string; members: { uuid: string; id: number; flags: { can_speak: boolean } }[] }[];
  assert.equal(json[0]!.conference_name, '3000');
  assert.equal(json[0]!.members[0]!.uuid, uuid);
  assert.equal(await link.api('conference 3000 mute 1'), '+OK mute 1\n');
  assert.equal(await link.api('conference 3000 unmute 1'), '+OK unmute 1\n');
  assert.equal(await link.api('conference 3000 kick 1'), '+OK kicked 1\n');
  await new Promise((r) => setTimeout(r, 100));
  const actions = events.filter((e) => e.subclass === 'conference::maintenance').map((e) => e.get('Action'));
  for (const a of ['conference-create', 'add-member', 'mute-member', 'unmute-member', 'kick-member', 'del-member', 'conference-destroy']) assert.ok(actions.includes(a), a);
  const kick = events.find((e) => e.get('Action') === 'kick-member')!;
  assert.equal(kick.uuid, uuid);
  const hangups = events.filter((e) => e.name === 'CHANNEL_HANGUP_COMPLETE');
  assert.deepEqual(hangups.map((e) => [e.get('Hangup-Cause'), e.get('variable_hangup_cause_q850')]), [['NORMAL_CLEARING', '16'], ['NORMAL_CLEARING', '16']]);
  assert.deepEqual(fake.mismatches, []);
});

test('05 the same with json events (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '05-conference-events-json.esl.jsonl' });
  const link = await setup(fake, { events: CONF_EVENTS, format: 'json' });
  const events: EslEvent[] = [];
  link.on('event', (e) => events.push(e));
  await link.connect();
  await link.api('originate loopback/9998/default &conference(3000@default)');
  await new Promise((r) => setTimeout(r, 50));
  assert.match(await link.api('conference 3000 list'), /^2;loopback\/9998-a;/);
  assert.equal(await link.api('conference 3000 kick 2'), '+OK kicked 2\n');
  await new Promise((r) => setTimeout(r, 100));
  const kick = events.find((e) => e.get('Action') === 'kick-member')!;
  assert.equal(kick.subclass, 'conference::maintenance');
  assert.equal(kick.uuid, '8886b195-524c-4eed-93c6-fc5562ca039b');
  assert.equal(events.filter((e) => e.name === 'CHANNEL_HANGUP').length, 2);
  assert.deepEqual(fake.mismatches, []);
});

test('06 bgapi originate resolves with the job body; uuid_kill and the hangup events (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '06-bgapi-job-uuid.esl.jsonl' });
  const link = await setup(fake, { events: ['BACKGROUND_JOB', 'CHANNEL_HANGUP', 'CHANNEL_HANGUP_COMPLETE'], newJobId: () => '7f4db0f2-0b1e-4c57-9d2a-5c6a1e0b9a01' });
  const events: EslEvent[] = [];
  link.on('event', (e) => events.push(e));
  await link.connect();
  const body = await link.bgapi('originate loopback/9999/default &park', 5000);
  assert.equal(body, '+OK 0025ccca-4611-4af9-bc89-a5b8d53691ce\n');
  assert.equal(await link.api('uuid_kill 0025ccca-4611-4af9-bc89-a5b8d53691ce'), '+OK\n');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(events.filter((e) => e.name === 'CHANNEL_HANGUP').map((e) => e.get('Channel-Name')), ['loopback/9999-a', 'loopback/9999-b']);
  assert.deepEqual(fake.mismatches, []);
});

test('07 sendmsg unicast answers +OK (transcript)', async () => {
  const fake = await FakeEslServer.start({ replay: '07-sendmsg-unicast.esl.jsonl' });
  const link = await setup(fake);
  await link.connect();
  const uuid = (await link.api('originate loopback/9999/default &park')).slice(4).trim();
  await link.sendmsg(uuid, { 'call-command': 'unicast', 'local-ip': '127.0.0.1', 'local-port': '8025', 'remote-ip': '127.0.0.1', 'remote-port': '8026', transport: 'udp', flags: 'native' });
  assert.equal(await link.api(`uuid_kill ${uuid}`), '+OK\n');
  assert.deepEqual(fake.mismatches, []);
});

test('15 bgapi json: result in _body, a failing job rejects typed (transcript)', async () => {
  const ids = ['5d0c1e4a-2b3f-4a6e-9c8d-7e6f5a4b3c2d'];
  const fake = await FakeEslServer.start({ replay: '15-bgapi-json.esl.jsonl' });
  const link = await setup(fake, { events: ['BACKGROUND_JOB'], format: 'json', newJobId: () => ids.shift() ?? 'x' });
  await link.connect();
  assert.equal(await link.bgapi('global_getvar domain'), '127.0.0.1');
  assert.deepEqual(fake.mismatches, []);
});

// ---- scripted: no transcript records a FreeSWITCH that stalls or dies mid-request ----

function scriptedAuth(onApi: (line: string, conn: import('../fixtures/FakeEslServer.ts').EslFakeConnection) => void) {
  return FakeEslServer.start({
    handler: (cmd, conn) => {
      if (cmd.line.startsWith('auth ')) return conn.reply(cmd.line === 'auth EslAcc3pt' ? '+OK accepted' : '-ERR invalid');
      if (cmd.line.startsWith('event ')) return conn.reply('+OK event listener enabled plain');
      onApi(cmd.line, conn);
    },
  });
}

test('the link dropping mid-request rejects every pending request; it reconnects and works again (scripted)', async () => {
  const fake = await scriptedAuth((line, conn) => {
    if (fake.connections.indexOf(conn) === 0) {
      // FreeSWITCH dies with two requests outstanding
      if (line === 'api status') setTimeout(() => conn.drop(), 30);
      return;
    }
    if (line === 'api status') conn.api('UP again\n');
  });
  const link = await setup(fake);
  await link.connect();
  const down = once(link, 'down');
  const a = assert.rejects(link.api('status'), EslLinkDownError);
  const b = assert.rejects(link.api('status'), EslLinkDownError);
  const [err] = (await down) as [Error];
  assert.ok(err instanceof EslLinkDownError);
  await a;
  await b;
  assert.equal(link.isUp, false);
  await assert.rejects(link.api('status'), EslLinkDownError, 'refused at once while down');
  await once(link, 'up');
  assert.equal(await link.api('status'), 'UP again\n');
  assert.equal(fake.connections.length, 2);
});

test('a request without a reply times out; its late reply does not answer the next one (scripted)', async () => {
  const pendingConns: (() => void)[] = [];
  const fake = await scriptedAuth((line, conn) => {
    if (line === 'api slow') pendingConns.push(() => conn.api('late\n'));
    else if (line === 'api fast') {
      // the slow reply comes first (ESL answers in order), then ours
      for (const f of pendingConns.splice(0)) f();
      conn.api('fast\n');
    }
  });
  const link = await setup(fake, { requestTimeoutMs: 100 });
  await link.connect();
  await assert.rejects(link.api('slow'), EslTimeoutError);
  assert.equal(await link.api('fast'), 'fast\n');
});

test('first connect fails when nothing listens; the link keeps retrying until close (scripted)', async () => {
  const fake = await scriptedAuth(() => undefined);
  const port = fake.port;
  await fake.close();
  const link = new NetEslLink({ host: '127.0.0.1', port, password: 'EslAcc3pt', events: [], requestTimeoutMs: 500, log, reconnectMinMs: 20, reconnectMaxMs: 40 });
  await assert.rejects(link.connect(), EslLinkDownError);
  await new Promise((r) => setTimeout(r, 100));
  await link.close();
  assert.equal(link.isUp, false);
});
