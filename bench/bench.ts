/**
 * `npm run bench` / `node --import tsx bench/bench.ts [options]`: the bridge's own cost under load,
 * on loopback, with the echo stand-in as its media server. See docs/performance.md.
 */
import { parseArgs } from 'node:util';
import { formatResult, formatSideBySide, runBench } from './run.ts';
import { coturnAvailable, runCoturn } from './turn.ts';
import { formatIdle, runIdle } from './idle.ts';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '200' },
    seconds: { type: 'string' },
    idle: { type: 'string' },
    'heartbeat-ms': { type: 'string', default: '5000' },
    workers: { type: 'string', default: '1' },
    'udp-echo': { type: 'boolean', default: false },
    'ws-echo': { type: 'boolean', default: false },
    floor: { type: 'boolean', default: false },
    'media-pump': { type: 'string', default: 'auto' },
    'media-pump-priority': { type: 'string', default: 'realtime' },
    'media-pump-coalesce-us': { type: 'string', default: '200' },
    'media-pump-stale-ms': { type: 'string', default: '100' },
    'load-generator': { type: 'string', default: 'auto' },
    'load-poll-us': { type: 'string', default: '100' },
    warmup: { type: 'string', default: '1' },
    step: { type: 'boolean', default: false },
    'step-by': { type: 'string' },
    'max-streams': { type: 'string', default: '3000' },
    'p99-bound-ms': { type: 'string', default: '4' },
    'payload-bytes': { type: 'string', default: '160' },
    'time-limit': { type: 'string', default: '240' },
    coturn: { type: 'boolean', default: false },
    pin: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`usage: npm run bench -- [options]

  --streams N        terminals in a call (first step in --step mode)        [200]
  --seconds S        measured seconds (per step), after --warmup            [10]
                     (--idle: seconds the idle terminals are held           [20])
  --idle N           idle mode: N terminals bind and register, no call, and are
                     held while the bridge heartbeats them; prints the bridge's
                     RSS (total, per terminal) and CPU. Needs ulimit -n > N + 200
  --heartbeat-ms MS  the bridge's heartbeat interval in --idle mode          [5000]
  --udp-echo         the echo stand-in relays every payload over a UDP socket
                     per call to coturn's UDP echo peer (turnutils_peer) and
                     back, as the RTP leg to a media server does (needs coturn)
  --ws-echo          the echo stand-in relays every payload over a WebSocket
                     media leg per call (chan_websocket's, Asterisk's default
                     transport) to an echo peer (bench/wsEchoPeer.ts) and back
  --floor            measure the kernel's floor before and after the run
                     (native/floor.cc: the socket calls alone, TCP and UDP,
                     same streams and rate, same CPUs) and print the bridge's
                     CPU per message against it; npm run bench:floor runs it
                     alone
  --media-pump M     the bridge's server.mediaPump: auto, on or off; the native
                     pump relays audio on UDP legs (--udp-echo) and
                     WebSocket legs (--ws-echo) in C++                  [auto]
  --media-pump-priority P  the pump's relay thread: realtime or normal  [realtime]
  --media-pump-coalesce-us U  the bridge's server.mediaPumpCoalesceUs: after a
                     wake-up that found packets, the relay thread waits until
                     U µs have passed before it looks again (0: at once)    [200]
  --media-pump-stale-ms M  the bridge's server.mediaPumpStaleMs: audio from the
                     echo that waited over M ms in the bridge is dropped (0: never) [100]
  --load-generator G who sends and times the frames: native (a C++ thread,
                     native/loadgen.cc, built by npm run build:native),
                     javascript (the event loop; it sends in bursts beyond
                     about 800 streams on one core), auto: native when built [auto]
  --load-poll-us U   while sending, the native generator looks at its sockets
                     every U µs instead of being woken by each frame, as a
                     terminal on another machine costs the bridge no wake-up
                     (0: woken by each frame; 0 to 10000)                  [100]
  --workers N        the bridge's server.workers: a primary routing the port
                     to N worker processes (CPU and RSS summed over all)    [1]
  --warmup S         seconds of load before each measurement                [1]
  --step             add --step-by streams per step until the round-trip p99
                     passes --p99-bound-ms (or a frame is lost); report the
                     highest count that held
  --step-by N        streams added per step                                 [--streams]
  --max-streams N    upper bound in --step mode                             [3000]
  --p99-bound-ms MS  round-trip p99 bound (one way is half)                 [4]
  --payload-bytes B  PCMU payload per frame (frame = 10 + B bytes)          [160]
  --time-limit S     the run stops by itself after S seconds                [240]
  --pin              the relay under test (the bridge, or coturn) on CPU 0, the
                     load generator and the echo peer on the other CPUs (taskset):
                     "one core" is then the relay's alone
  --coturn           then the same load through coturn (TURN over TCP, UDP echo
                     peer), side by side (apt-get install coturn)
  --json             print the result as JSON
`);
  process.exit(0);
}

function num(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`error USAGE: --${name} must be a number >= ${min}\n`);
    process.exit(2);
  }
  return n;
}

if (values.idle !== undefined) {
  try {
    const r = await runIdle({
      terminals: Math.floor(num('idle', values.idle, 1)),
      seconds: num('seconds', values.seconds ?? '20', 1),
      heartbeatMs: Math.floor(num('heartbeat-ms', values['heartbeat-ms'], 100)),
      timeLimitSeconds: num('time-limit', values['time-limit'], 5),
      workers: Math.floor(num('workers', values.workers, 1)),
    });
    process.stdout.write(values.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatIdle(r)}\n`);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (!['realtime', 'normal'].includes(values['media-pump-priority'])) {
  process.stderr.write('error USAGE: --media-pump-priority is realtime or normal\n');
  process.exit(2);
}
if (!['auto', 'native', 'javascript'].includes(values['load-generator'])) {
  process.stderr.write('error USAGE: --load-generator is auto, native or javascript\n');
  process.exit(2);
}
const loadPollUs = num('load-poll-us', values['load-poll-us'], 0);
if (loadPollUs > 10000) {
  process.stderr.write('error USAGE: --load-poll-us is 0 to 10000\n');
  process.exit(2);
}
if (!['auto', 'on', 'off'].includes(values['media-pump'])) {
  process.stderr.write('error USAGE: --media-pump is auto, on or off\n');
  process.exit(2);
}

if (values['udp-echo'] && values['ws-echo']) {
  process.stderr.write('error USAGE: --udp-echo or --ws-echo, not both\n');
  process.exit(2);
}
if (values['udp-echo'] && !coturnAvailable()) {
  process.stderr.write('error USAGE: --udp-echo needs coturn\'s UDP echo peer (turnutils_peer): apt-get install coturn\n');
  process.exit(2);
}

const result = await runBench({
  streams: Math.floor(num('streams', values.streams, 1)),
  seconds: num('seconds', values.seconds ?? '10', 0.5),
  warmupSeconds: num('warmup', values.warmup, 0),
  step: values.step,
  stepBy: values['step-by'] === undefined ? undefined : Math.floor(num('step-by', values['step-by'], 1)),
  maxStreams: Math.floor(num('max-streams', values['max-streams'], 1)),
  p99BoundMs: num('p99-bound-ms', values['p99-bound-ms'], 0.01),
  payloadBytes: Math.floor(num('payload-bytes', values['payload-bytes'], 16)),
  timeLimitSeconds: num('time-limit', values['time-limit'], 5),
  workers: Math.floor(num('workers', values.workers, 1)),
  udpEcho: values['udp-echo'],
  wsEcho: values['ws-echo'],
  floor: values.floor,
  mediaPump: values['media-pump'] as 'auto' | 'on' | 'off',
  mediaPumpPriority: values['media-pump-priority'] as 'realtime' | 'normal',
  mediaPumpCoalesceUs: Math.floor(num('media-pump-coalesce-us', values['media-pump-coalesce-us'], 0)),
  mediaPumpStaleMs: Math.floor(num('media-pump-stale-ms', values['media-pump-stale-ms'], 0)),
  loadGenerator: values['load-generator'] as 'auto' | 'native' | 'javascript',
  loadPollUs: loadPollUs,
  pin: values.pin,
});
if (values.coturn) {
  if (values.step) {
    process.stderr.write('error USAGE: --coturn runs one stream count; leave out --step\n');
    process.exit(2);
  }
  if (!coturnAvailable()) {
    process.stderr.write('error USAGE: --coturn needs Debian\'s coturn package (turnserver, turnutils_peer): apt-get install coturn\n');
    process.exit(2);
  }
  // a pause between the two runs, so that one's leftovers do not land in the other's window
  await new Promise((r) => setTimeout(r, 1000));
  const coturn = await runCoturn({ streams: result.steps[0]!.streams, seconds: result.steps[0]!.seconds, warmupSeconds: Number(values.warmup), dataBytes: result.frameBytes, log: (l) => process.stderr.write(`${l}\n`), pin: values.pin, loadGenerator: result.loadGenerator, loadPollUs });
  process.stdout.write(values.json ? `${JSON.stringify({ confmux: result, coturn }, null, 2)}\n` : `${formatResult(result)}\n\n${formatSideBySide(result, coturn)}\n`);
} else {
  process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatResult(result)}\n`);
}
process.exit(0);
