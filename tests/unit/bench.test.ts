// The benchmark, run briefly at small N: a functional check of its numbers (sane, nothing lost),
// not a timing assertion. It starts the bridge with the echo stand-in in a child process.
import { test } from 'node:test';
import { availableParallelism } from 'node:os';
import assert from 'node:assert/strict';
import { formatResult, formatStep, runBench, type StepResult } from '../../bench/run.ts';
import { cpusOf, loadCpus } from '../../bench/cpus.ts';
import { formatIdle, runIdle } from '../../bench/idle.ts';
import { HEAP_FLAGS } from '../../bin/heapFlags.mjs';
import { coturnAvailable, runCoturn } from '../../bench/turn.ts';

const quiet = (): void => undefined;

test('bench: 20 streams for 3 s, every frame comes back through the bridge and the echo stand-in', async () => {
  const r = await runBench({ streams: 20, seconds: 3, warmupSeconds: 0.5, log: quiet, timeLimitSeconds: 40 });
  assert.equal(r.steps.length, 1);
  const s = r.steps[0]!;
  assert.equal(s.streams, 20);
  assert.equal(s.unexpectedCloses, 0);
  // 20 streams x 50 frames/s, 3.5 s in all
  assert.ok(s.sent >= 3000 && s.sent <= 3600, `sent ${s.sent}`);
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
  if (s.bridgeDropped !== null) assert.equal(s.bridgeDropped, 0);
  // about 1000 messages/s each way in the window (paced from a 1 ms timer)
  for (const rate of [s.sentPerSecond, s.receivedPerSecond]) assert.ok(rate > 900 && rate < 1100, `rate ${rate}`);
  // every frame sent in the window was timed on its way back
  assert.ok(s.rttMs.samples >= 2700 && s.rttMs.samples <= 3100, `samples ${s.rttMs.samples}`);
  assert.ok(s.rttMs.p50 >= 0 && s.rttMs.p50 <= s.rttMs.p99 && s.rttMs.p99 <= s.rttMs.p999 && s.rttMs.p999 <= s.rttMs.max);
  assert.ok(s.rttMs.max < 2000, `max round trip ${s.rttMs.max} ms`);
  assert.ok(s.bridgeCpu > 0 && s.bridgeCpu < 2, `bridge CPU ${s.bridgeCpu}`);
  assert.ok(s.loadCpu > 0 && s.loadCpu < 2, `load CPU ${s.loadCpu}`);
  assert.ok(Number.isFinite(s.cpuMicrosPerMessage) && s.cpuMicrosPerMessage > 0);
  // CPU per message is the window's CPU over its message rate (the same figure when the samples were on time)
  assert.ok(Math.abs(s.cpuMicrosPerMessage - (s.bridgeCpu / ((s.sentPerSecond + s.receivedPerSecond))) * 1e6) < 1e-6 * s.cpuMicrosPerMessage);
  assert.ok(Number.isFinite(s.timersLateMs), 'how late the window samples were is recorded');
  assert.ok(s.bridgeRssBytes > r.baselineRssBytes / 2 && s.bridgeRssBytes < 1024 ** 3, `RSS ${s.bridgeRssBytes}`);
  assert.ok(Number.isFinite(s.rssPerTerminalBytes));
  // the peak is sampled through the set-up and the window, and is never below the end's figure
  assert.ok(s.peakRssBytes! >= s.bridgeRssBytes && s.peakRssBytes! < 1024 ** 3, `peak RSS ${s.peakRssBytes}`);
  assert.equal(s.rssPerTerminalPeakBytes, (s.peakRssBytes! - r.baselineRssBytes) / s.streams);
  assert.match(formatStep(s), /kB per terminal at the window's end; peak [\d.]+ MiB, -?[\d.]+ kB per terminal/);
  assert.equal(r.frameBytes, 170);
  assert.ok(r.cpus >= 1);
  // npm test builds native/loadgen.cc with the pump: the C++ thread sent and timed the frames
  assert.equal(r.loadGenerator, 'native');
  assert.match(formatResult(r), /load generator: native/);
  // the bridge under load runs as `confmux serve` does: V8's heap options and glibc's arenas
  assert.match(formatResult(r), new RegExp(`bridge runs with node options ${HEAP_FLAGS.join(' ')}; MALLOC_ARENA_MAX=2; its RSS before any terminal: [\\d.]+ MiB`));
});

test('bench --load-generator javascript: the same through the event-loop generator; nothing lost', async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, loadGenerator: 'javascript', log: quiet, timeLimitSeconds: 40 });
  const s = r.steps[0]!;
  assert.equal(r.loadGenerator, 'javascript');
  assert.equal(s.unexpectedCloses, 0);
  assert.ok(s.sent >= 2000 && s.sent <= 2600, `sent ${s.sent}`);
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
  assert.ok(s.rttMs.samples >= 1800 && s.rttMs.samples <= 2200, `samples ${s.rttMs.samples}`);
});

test('bench --step: adds streams per step up to --max-streams and reports the highest that held', async () => {
  // a bound no loopback run misses: this checks the stepping, not the machine
  const r = await runBench({ streams: 10, stepBy: 10, maxStreams: 20, step: true, seconds: 1, warmupSeconds: 0.2, p99BoundMs: 1500, log: quiet, timeLimitSeconds: 40 });
  assert.deepEqual(r.steps.map((s) => s.streams), [10, 20]);
  for (const s of r.steps) assert.equal(s.lost, 0);
  assert.equal(r.highestHeld, 20);
  assert.match(r.stoppedBy, /max-streams/);
});

test('bench --idle: terminals bind and register, are heartbeaten and stay; memory and CPU are sane', async () => {
  const r = await runIdle({ terminals: 50, seconds: 2, heartbeatMs: 500, log: quiet, timeLimitSeconds: 40 });
  assert.equal(r.terminals, 50);
  assert.equal(r.registered, 50);
  assert.equal(r.unexpectedCloses, 0);
  // 4 heartbeats in 2 s at 500 ms, give or take the one at a window edge
  assert.ok(r.pings >= r.expectedPings - 50 && r.pings <= r.expectedPings + 50, `pings ${r.pings} of ${r.expectedPings}`);
  assert.ok(r.rssBytes > r.baselineRssBytes / 2 && r.rssBytes < 1024 ** 3, `RSS ${r.rssBytes}`);
  assert.ok(Number.isFinite(r.rssPerTerminalBytes));
  assert.ok(r.bridgeCpu >= 0 && r.bridgeCpu < 2, `bridge CPU ${r.bridgeCpu}`);
  assert.ok(r.heapUsedBytes !== null && r.heapUsedBytes > 0);
  assert.match(formatIdle(r), /\| 50 \| 50 \|/);
  assert.match(formatIdle(r), new RegExp(`bridge runs with node options ${HEAP_FLAGS.join(' ')}; MALLOC_ARENA_MAX=2`));
});

test('bench --workers 2: calls land with their media on the worker that holds them; nothing lost', async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, workers: 2, log: quiet, timeLimitSeconds: 60 });
  const s = r.steps[0]!;
  assert.equal(r.workers, 2);
  assert.equal(s.unexpectedCloses, 0);
  assert.ok(s.sent >= 2000, `sent ${s.sent}`);
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
  assert.ok(s.bridgeCpu > 0 && s.bridgeCpu < 4, `bridge CPU ${s.bridgeCpu}`);
});

/** 20 streams for 2 s through an echo peer: every call on the pump, every frame back, the peer's CPU counted */
function echoedOnThePump(s: StepResult): void {
  assert.equal(s.bridgeLoop?.pumped, 20, 'every call on the pump');
  assert.equal(s.unexpectedCloses, 0);
  assert.ok(s.sent >= 2000, `sent ${s.sent}`);
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
  assert.ok(s.rttMs.samples > 0 && s.rttMs.max < 2000);
  // the echo peer echoed 2,000 payloads in the window: some CPU, well under a core
  assert.ok(s.echoPeerCpu !== undefined && s.echoPeerCpu > 0 && s.echoPeerCpu < 1, `echo peer CPU ${s.echoPeerCpu}`);
}

test('bench --udp-echo: every frame goes through a UDP socket to the echo peer and back, on the native media pump; nothing lost', { skip: coturnAvailable() ? false : 'needs coturn (turnutils_peer)' }, async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, log: quiet, timeLimitSeconds: 40 });
  assert.equal(r.udpEcho, true);
  echoedOnThePump(r.steps[0]!);
});

test('bench --ws-echo: every frame goes over a WebSocket media leg (chan_websocket\'s) to the echo peer and back, on the native media pump; nothing lost', async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, wsEcho: true, log: quiet, timeLimitSeconds: 40 });
  assert.equal(r.wsEcho, true);
  assert.equal(r.wsEchoNative, true, 'the echo peer on its native thread');
  echoedOnThePump(r.steps[0]!);
  assert.match(formatResult(r), /through WebSocket media legs as chan_websocket's to an echo peer: bench\/wsEchoPeer\.ts\)/);
});

test('bench --ws-echo with the echo peer in JavaScript (as without the native module): the same, and the bench says so', async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, wsEcho: true, wsEchoJavaScript: true, log: quiet, timeLimitSeconds: 40 });
  assert.equal(r.wsEchoNative, false);
  echoedOnThePump(r.steps[0]!);
  assert.match(formatResult(r), /bench\/wsEchoPeer\.ts in JavaScript \(without its native thread: far slower\)/);
});

test('bench --floor: the kernel\'s floor is measured before and after with the same streams, and the bridge\'s CPU per message is printed against it', { skip: coturnAvailable() ? false : 'needs coturn (turnutils_peer)' }, async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, floor: true, log: quiet, timeLimitSeconds: 40 });
  const s = r.steps[0]!;
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  const f = r.floor;
  assert.ok(f !== undefined, 'the floor measured');
  assert.equal(f.streams, 20);
  assert.equal(f.rate, 1000, '50 a second per stream');
  assert.equal(f.udp.bytes, 172, 'an RTP packet of the bench\'s payload');
  assert.equal(f.udp.received, f.udp.sent);
  assert.equal(f.tcp.received, f.tcp.sent);
  const after = r.floorAfter;
  assert.ok(after !== undefined && after.streams === 20 && after.tcp.received === after.tcp.sent, 'measured again after the run');
  const ratio = s.cpuMicrosPerMessage / ((f.floorUsPerRelayedMessage + after.floorUsPerRelayedMessage) / 2);
  assert.ok(formatResult(r).includes(`= ${ratio.toFixed(2)} × the kernel's floor (the mean of before and after), `), formatResult(r));
});

test('bench --ws-echo --media-pump off: the same through the JavaScript path; nothing lost', async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, wsEcho: true, mediaPump: 'off', log: quiet, timeLimitSeconds: 40 });
  const s = r.steps[0]!;
  assert.equal(s.bridgeLoop?.pumped, 0, 'no call on the pump');
  assert.equal(s.unexpectedCloses, 0);
  assert.ok(s.sent >= 2000, `sent ${s.sent}`);
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
});

test('bench --udp-echo --pin: the bridge runs on CPU 0 alone, the load generator and the echo peer on the others; nothing lost; the affinity is given back', { skip: !coturnAvailable() ? 'needs coturn (turnutils_peer)' : availableParallelism() < 2 ? 'needs two CPUs' : false }, async () => {
  const before = cpusOf('self');
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, pin: true, log: quiet, timeLimitSeconds: 40 });
  const s = r.steps[0]!;
  assert.equal(r.pinned, true);
  // as the kernel reported them during the run
  assert.deepEqual(r.cpusAllowed, { bridge: '0', load: loadCpus(r.cpus), echoPeer: loadCpus(r.cpus) });
  assert.equal(s.bridgeLoop?.pumped, 20, 'every call on the pump');
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
  assert.equal(cpusOf('self'), before, 'this process may run on every CPU again');
  assert.match(formatResult(r), /pinned \(--pin\): the bridge on CPU 0, the load generator on CPU 1/);
});

test('bench --workers 2 --udp-echo: each worker relays its calls on its own pump; the bench sums what the workers report', { skip: coturnAvailable() ? false : 'needs coturn (turnutils_peer)' }, async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, workers: 2, log: quiet, timeLimitSeconds: 60 });
  const s = r.steps[0]!;
  assert.equal(r.workers, 2);
  assert.equal(s.bridgeLoop?.pumped, 20, 'every call on a worker\'s pump, counted over both workers');
  const lat = s.bridgeLoop?.pumpLatencyUs;
  assert.ok(lat && lat.up.count > 0 && lat.down.count > 0, 'relay-added latency reported by the workers');
  assert.ok((lat?.up.count ?? 0) <= s.sent, `latency samples ${lat?.up.count} for ${s.sent} frames sent`);
  assert.ok((s.bridgeLoop?.pumpWakeups ?? 0) > 0, 'the workers\' pump threads woke up');
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
});

test('bench --udp-echo --media-pump-coalesce-us: the relay thread wakes once per interval and each packet waits at most that long; 0 wakes it for every packet', { skip: coturnAvailable() ? false : 'needs coturn (turnutils_peer)' }, async () => {
  const wakeupsPerSecond = (s: StepResult): number => (s.bridgeLoop?.pumpWakeups ?? 0) / s.seconds;
  // 20 streams: 2,000 packets a second in all, one every 0.5 ms on average
  const held = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, mediaPumpCoalesceUs: 2000, log: quiet, timeLimitSeconds: 40 });
  const h = held.steps[0]!;
  assert.equal(held.mediaPumpCoalesceUs, 2000);
  assert.equal(h.bridgeLoop?.pumped, 20, 'every call on the pump');
  assert.equal(h.lost, 0, `lost ${h.lost} of ${h.sent}`);
  const lat = h.bridgeLoop!.pumpLatencyUs!;
  // a packet that arrives while the thread lets the interval pass waits for the rest of it
  assert.ok(lat.up.p50 >= 250 && lat.down.p50 >= 250, `relay p50 up ${lat.up.p50} down ${lat.down.p50} µs`);
  assert.ok(lat.up.p50 <= 2100 && lat.down.p50 <= 2100, `relay p50 up ${lat.up.p50} down ${lat.down.p50} µs`);
  // at most one wake-up per 2 ms that finds packets (and the odd one that finds none)
  assert.ok(wakeupsPerSecond(h) <= 700, `${wakeupsPerSecond(h)} wake-ups/s`);
  const eager = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, mediaPumpCoalesceUs: 0, log: quiet, timeLimitSeconds: 40 });
  const e = eager.steps[0]!;
  assert.equal(e.lost, 0, `lost ${e.lost} of ${e.sent}`);
  const eagerLat = e.bridgeLoop!.pumpLatencyUs!;
  assert.ok(eagerLat.up.p50 < 250 && eagerLat.down.p50 < 250, `relay p50 up ${eagerLat.up.p50} down ${eagerLat.down.p50} µs`);
  assert.ok(wakeupsPerSecond(e) > 2 * wakeupsPerSecond(h), `${wakeupsPerSecond(e)} wake-ups/s without, ${wakeupsPerSecond(h)} with`);
});

test('bench --coturn: the same load through coturn (TURN over TCP, channels to the echo peer), from the native and the JavaScript generator; nothing lost', { skip: coturnAvailable() ? false : 'needs coturn' }, async () => {
  for (const loadGenerator of ['native', 'javascript'] as const) {
    const s = await runCoturn({ streams: 20, seconds: 2, warmupSeconds: 0.5, dataBytes: 170, log: quiet, loadGenerator });
    assert.equal(s.unexpectedCloses, 0, loadGenerator);
    assert.ok(s.sent >= 2000 && s.sent <= 2600, `${loadGenerator}: sent ${s.sent}`);
    assert.equal(s.lost, 0, `${loadGenerator}: lost ${s.lost} of ${s.sent}`);
    assert.equal(s.received, s.sent, loadGenerator);
    for (const rate of [s.sentPerSecond, s.receivedPerSecond]) assert.ok(rate > 900 && rate < 1100, `${loadGenerator}: rate ${rate}`);
    assert.ok(s.rttMs.samples >= 1800 && s.rttMs.samples <= 2200, `${loadGenerator}: samples ${s.rttMs.samples}`);
    assert.ok(s.bridgeCpu > 0, `${loadGenerator}: coturn's CPU ${s.bridgeCpu}`);
    // as the bridge's: CPU over the time sampled, per message at the window's message rate
    assert.ok(Number.isFinite(s.timersLateMs), `${loadGenerator}: how late the window samples were is recorded`);
    assert.ok(Math.abs(s.cpuMicrosPerMessage - (s.bridgeCpu / (s.sentPerSecond + s.receivedPerSecond)) * 1e6) < 1e-6 * s.cpuMicrosPerMessage, loadGenerator);
  }
});

test('bench --udp-echo --media-pump off: the same through the JavaScript path; nothing lost', { skip: coturnAvailable() ? false : 'needs coturn (turnutils_peer)' }, async () => {
  const r = await runBench({ streams: 20, seconds: 2, warmupSeconds: 0.5, udpEcho: true, mediaPump: 'off', log: quiet, timeLimitSeconds: 40 });
  const s = r.steps[0]!;
  assert.equal(s.bridgeLoop?.pumped, 0, 'no call on the pump');
  assert.equal(s.unexpectedCloses, 0);
  assert.equal(s.lost, 0, `lost ${s.lost} of ${s.sent}`);
  assert.equal(s.received, s.sent);
});
