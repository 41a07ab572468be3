// FreeSwitchDriver against the FAKE FreeSWITCH (tests/fixtures/FakeFreeSwitch.ts): transcript
// events re-addressed, scripted replies where no transcript exists. Never a live FreeSWITCH.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { createLogger } from '../../bridge/logger.ts';
import { loadConfig } from '../../bridge/config.ts';
import { PCMU } from '../../bridge/protocol/codecs.ts';
import type { CallEnd, IncomingCall } from '../../plugin/driver.ts';
import { FreeSwitchDriver } from '../../plugin/freeswitch/FreeSwitchDriver.ts';
import type { FreeSwitchCall } from '../../plugin/freeswitch/FreeSwitchCall.ts';
import { FakeFreeSwitch } from '../fixtures/FakeFreeSwitch.ts';
import { until as untilHolds, wait } from '../helpers/freeswitch.ts';

const log = createLogger(process.env.CONFMUX_TEST_LOG ?? 'silent');
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setup(password = 'EslAcc3pt'): Promise<{ fs: FakeFreeSwitch; driver: FreeSwitchDriver }> {
  const fs = await FakeFreeSwitch.start({ users: { '1001': 's3cret-1001', '1002': 's3cret-1002' }, rooms: ['3000'], busy: ['4000'] });
  cleanup.push(() => fs.close());
  const config = loadConfig({ env: {}, overrides: { mediaServer: 'freeswitch', freeswitch: { port: fs.port, password, requestTimeoutMs: 1000 } } });
  const driver = new FreeSwitchDriver({ config: config.freeswitch, log });
  cleanup.push(() => driver.close());
  return { fs, driver };
}

const req = (to: string, callId = 'c1') => ({ callId, number: '1001', name: 'Lobby Terminal', to, codec: PCMU });
const until = (cond: () => boolean, ms = 2000): Promise<void> => untilHolds(cond, ms, 5);

test('passwords come from the directory: user_data <n>@<global domain>; unknown user false', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  assert.equal(driver.isUp, true);
  assert.equal(await driver.verifyPassword('1001', 's3cret-1001'), true);
  assert.equal(await driver.verifyPassword('1001', 's3cret-1002'), false);
  assert.equal(await driver.verifyPassword('9999', 'x'), false);
  assert.equal(await driver.verifyPassword('1001 param password;', 'x'), false, 'no argument injection');
  const asked = fs.esl.received.map((c) => c.line);
  assert.equal(asked.filter((l) => l === 'api global_getvar domain').length, 1, 'domain asked once');
  assert.ok(asked.includes('api user_data 1001@127.0.0.1 param password'));
  assert.ok(asked.some((l) => l.startsWith('event plain CHANNEL_CREATE') && l.includes('CUSTOM conference::maintenance')));
  assert.ok(asked.includes('api hupall MANAGER_REQUEST confmux_bridge confmux'), 'orphans of an earlier run hung up at link-up');
});

test('wrong ESL password: start rejects', async () => {
  const { driver } = await setup('nope');
  await assert.rejects(driver.start(), /password/);
  assert.equal(driver.isUp, false);
});

test('a call into a conference: ringing, answered, unicast audio both ways, hangup kills every channel', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const call = driver.placeCall(req('3000')) as FreeSwitchCall;
  const seen: string[] = [];
  call.on('ringing', () => seen.push('ringing'));
  await once(call, 'answered');
  assert.deepEqual(seen, ['ringing']);
  assert.equal(call.format.name, 'L16/8000');
  // the originate: our uuid, the terminal as caller ID, tagged for orphan clean-up
  const originate = fs.esl.received.find((c) => c.line.startsWith('bgapi originate'))!;
  assert.match(originate.line, /^bgapi originate \{origination_uuid=[0-9a-f-]{36},confmux_call=c1,confmux_bridge=confmux,confmux_terminal=1001,origination_caller_id_number=1001,origination_caller_id_name='Lobby Terminal',originate_timeout=60\}loopback\/3000\/default &park\(\)$/);
  assert.match(originate.headers['Job-UUID'] ?? '', /^[0-9a-f-]{36}$/);
  const unicast = fs.esl.received.find((c) => c.line === `sendmsg ${call.mediaUuid}`)!;
  assert.equal(unicast.headers['call-command'], 'unicast');
  assert.equal(unicast.headers.transport, 'udp');
  assert.equal(unicast.headers.flags, 'native');
  // the operator sees the room-side half with the terminal's caller ID
  const list = fs.operator('conference 3000 list');
  assert.match(list, /^1;loopback\/3000-b;[0-9a-f-]{36};Lobby Terminal;1001;/);
  // audio: the fake's side echoes
  const got: Buffer[] = [];
  call.onAudio = (p) => got.push(Buffer.from(p));
  const frame = Buffer.alloc(320);
  for (let i = 0; i < 160; i++) frame.writeInt16LE(i * 100, i * 2);
  for (let i = 0; i < 5; i++) call.sendAudio(frame);
  await until(() => got.length >= 5);
  assert.deepEqual(got[0], frame);
  const ended = once(call, 'ended') as Promise<[CallEnd]>;
  await call.hangup();
  assert.equal(call.ended, true);
  assert.equal((await ended)[0].reason, 'normal');
  assert.ok(fs.esl.received.some((c) => c.line === `api uuid_kill ${call.mediaUuid}`));
  assert.deepEqual(fs.live, [], 'no channel left');
  await call.hangup(); // idempotent
});

test('busy and missing extensions end with their causes', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const busy = driver.placeCall(req('4000', 'b1'));
  const [b] = (await once(busy, 'ended')) as [CallEnd];
  assert.deepEqual([b.reason, b.cause], ['busy', 17]);
  const missing = driver.placeCall(req('5555', 'm1'));
  const [m] = (await once(missing, 'ended')) as [CallEnd];
  assert.deepEqual([m.reason, m.cause], ['not_found', 16]);
  await wait(20);
  assert.deepEqual(fs.live, []);
});

test('an operator kick (conference kick) ends the call as kicked; uuid_kill as remote', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const call = driver.placeCall(req('3000', 'k1'));
  await once(call, 'answered');
  const id = fs.operator('conference 3000 list').split(';')[0]!;
  assert.equal(fs.operator(`conference 3000 mute ${id}`), `+OK mute ${id}\n`);
  assert.equal(fs.operator(`conference 3000 kick ${id}`), `+OK kicked ${id}\n`);
  const [end] = (await once(call, 'ended')) as [CallEnd];
  assert.equal(end.reason, 'kicked');
  assert.equal(fs.live.length, 0);

  const call2 = driver.placeCall(req('3000', 'k2')) as FreeSwitchCall;
  await once(call2, 'answered');
  const roomSide = fs.live.find((c) => c.leg === 'B')!;
  fs.kill(roomSide);
  const [end2] = (await once(call2, 'ended')) as [CallEnd];
  assert.deepEqual([end2.reason, end2.cause, end2.message], ['remote', 16, 'the PBX hung up the call']);
});

test('DTMF both ways', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const call = driver.placeCall(req('3000', 'd1')) as FreeSwitchCall;
  await once(call, 'answered');
  await call.sendDtmf('12#');
  assert.equal(fs.channels.get(call.mediaUuid)!.dtmfSent, '12#');
  const digits: string[] = [];
  call.on('dtmf', (d) => digits.push(d));
  fs.dtmf(fs.channels.get(call.mediaUuid)!, '7');
  await until(() => digits.length === 1);
  assert.deepEqual(digits, ['7']);
  await call.hangup();
});

test('invitations: incoming from CHANNEL_PARK with confmux_invite; ring, accept with audio; reject with the cause', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const invites: IncomingCall[] = [];
  driver.on('incoming', (i) => invites.push(i));
  const parked = fs.invite('1001', '3000', { number: '2000', name: 'Operator' });
  await until(() => invites.length === 1);
  const inv = invites[0]!;
  assert.equal(inv.to, '1001');
  assert.deepEqual(inv.from, { number: '2000', name: 'Operator' });
  await inv.ring();
  const ring = fs.esl.received.find((c) => c.line === `sendmsg ${parked.uuid}`)!;
  assert.deepEqual(ring.headers, { 'call-command': 'execute', 'execute-app-name': 'ring_ready' });
  const call = inv.accept({ callId: 'i1', name: 'Lobby', codec: PCMU });
  await once(call, 'answered');
  assert.ok(fs.esl.received.some((c) => c.line === `api uuid_answer ${parked.uuid}`));
  await until(() => fs.operator('conference 3000 list').includes('Operator'));
  const got: Buffer[] = [];
  call.onAudio = (p) => got.push(Buffer.from(p));
  call.sendAudio(Buffer.alloc(320, 1));
  await until(() => got.length === 1);
  // kicked from the room: the other half is the member
  const id = fs.operator('conference 3000 list').split(';')[0]!;
  fs.operator(`conference 3000 kick ${id}`);
  const [end] = (await once(call, 'ended')) as [CallEnd];
  assert.equal(end.reason, 'kicked');

  const second = fs.invite('1001', '3000', { number: '2000', name: 'Operator' });
  await until(() => invites.length === 2);
  await invites[1]!.reject('busy');
  assert.ok(fs.esl.received.some((c) => c.line === `api uuid_kill ${second.uuid} USER_BUSY`));
  await until(() => second.hungUp === 'USER_BUSY');

  // the caller gives up while it rings
  const third = fs.invite('1001', '3000', { number: '2000', name: 'Operator' });
  await until(() => invites.length === 3);
  const cancelled = once(invites[2]!, 'cancelled');
  fs.kill(third.other!, 'ORIGINATOR_CANCEL');
  const [c] = (await cancelled) as [CallEnd];
  assert.equal(c.reason, 'cancelled');
});

test('the link dropping ends calls as pbx_lost; the driver comes back up and hangs up what was left', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const call = driver.placeCall(req('3000', 'l1'));
  await once(call, 'answered');
  const ended = once(call, 'ended') as Promise<[CallEnd]>;
  const down = once(driver, 'down');
  fs.esl.dropAll();
  await down;
  assert.equal((await ended)[0].reason, 'pbx_lost');
  assert.equal(driver.isUp, false);
  await once(driver, 'up');
  await until(() => fs.live.length === 0);
  assert.equal(fs.esl.received.filter((c) => c.line.startsWith('api hupall')).length, 2);
});

test('presence: a global per terminal; listPresent reads them back', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  await driver.setPresence('1001', 'available');
  await driver.setPresence('1002', 'in_use');
  await driver.setPresence('1003', 'unavailable');
  assert.equal(fs.globals.get('confmux_presence_1002'), 'in_use');
  assert.deepEqual((await driver.listPresent()).sort(), ['1001', '1002']);
});

test('the unicast UDP port drops datagrams from anyone but FreeSWITCH', async () => {
  const { fs, driver } = await setup();
  await driver.start();
  const call = driver.placeCall(req('3000', 'u1')) as FreeSwitchCall;
  await once(call, 'answered');
  const unicast = fs.esl.received.find((c) => c.line === `sendmsg ${call.mediaUuid}`)!;
  let got = 0;
  call.onAudio = () => got++;
  const stranger = createSocket('udp4');
  await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', () => r()));
  stranger.send(Buffer.alloc(320), Number(unicast.headers['remote-port']), '127.0.0.1');
  await wait(50);
  stranger.close();
  assert.equal(got, 0);
  await call.hangup();
});
