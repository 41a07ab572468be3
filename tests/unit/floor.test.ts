/**
 * The kernel's floor (native/floor.cc as confmux_floor, through bench/kernelFloor.ts), run briefly:
 * every message sent both ways on both transports arrives, the figures are the CPU over the
 * messages, and bad arguments get the usage and exit code 2. A functional check, not a timing one.
 *
 * `npm test` builds the module (scripts/node.sh); this test fails if it is not there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { FLOOR_PATH, formatFloor, measureFloor } from '../../bench/kernelFloor.ts';

test('kernel floor: 20 pairs each of TCP and UDP, 1,000 messages a second each way for 0.5 s: every message arrives; µs per message is both ends\' CPU over the messages', async () => {
  const f = await measureFloor({ streams: 20, rate: 1000, seconds: 0.5, cpuA: -1, cpuB: -1, tickUs: 200 });
  assert.equal(f.streams, 20);
  assert.equal(f.tickUs, 200);
  assert.equal(f.udpSendmmsg, false);
  for (const t of [f.udp, f.tcp]) {
    // 500 messages from each end
    assert.equal(t.sent, 1000);
    assert.equal(t.received, 1000);
    assert.ok(t.cpuA > 0 && t.cpuB > 0, `CPU ${t.cpuA} / ${t.cpuB}`);
    assert.ok(Math.abs(t.usPerMessage - ((t.cpuA + t.cpuB) * 1e6) / t.sent) < 0.01, `${t.usPerMessage}`);
    // a loopback send and receive: more than nothing, less than a millisecond
    assert.ok(t.usPerMessage > 0.1 && t.usPerMessage < 1000, `${t.usPerMessage} µs`);
  }
  assert.equal(f.udp.bytes, 172);
  assert.equal(f.tcp.bytes, 176);
  assert.ok(Math.abs(f.floorUsPerRelayedMessage - (f.udp.usPerMessage + f.tcp.usPerMessage) / 2) < 0.01);
  // the whole CPU time counts the ticks' wake-ups on top
  assert.ok(f.withWakeupsUsPerRelayedMessage > f.floorUsPerRelayedMessage, `${f.withWakeupsUsPerRelayedMessage} > ${f.floorUsPerRelayedMessage}`);
  assert.match(formatFloor(f, undefined, f.floorUsPerRelayedMessage * 1.5), /per relayed message = 1\.50 × the kernel's floor, /);
  assert.match(formatFloor({ ...f, withWakeupsUsPerRelayedMessage: f.floorUsPerRelayedMessage * 1.25 }, undefined, f.floorUsPerRelayedMessage * 1.5), /, 1\.20 × the floor with its wake-ups$/);
  // with a second measurement the bridge is set against the mean of the two
  const after = { ...f, floorUsPerRelayedMessage: f.floorUsPerRelayedMessage * 3 };
  assert.match(formatFloor(f, after, f.floorUsPerRelayedMessage * 4), /= 2\.00 × the kernel's floor \(the mean of before and after\), /);
});

test('kernel floor --udp-sendmmsg: the UDP messages go out in one sendmmsg per tick from one socket per end; every one arrives', async () => {
  const f = await measureFloor({ streams: 20, rate: 1000, seconds: 0.5, cpuA: -1, cpuB: -1, udpSendmmsg: true });
  assert.equal(f.udpSendmmsg, true);
  assert.equal(f.udp.sent, 1000);
  assert.equal(f.udp.received, 1000);
  assert.equal(f.tcp.received, f.tcp.sent);
});

test('kernel floor: a bad argument gets the usage and exit code 2', async () => {
  const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      execFile(FLOOR_PATH, args, (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }));
    });
  for (const args of [['--streams', '0'], ['--rate'], ['--nonsense', '1'], ['--tick-us', '0']]) {
    const r = await run(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^usage: confmux_floor/);
  }
});
