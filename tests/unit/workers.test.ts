// server.workers > 1: the primary (UpgradeRouter) hands each connection to the worker that owns
// the terminal's number. Run through bench/server.ts (the echo stand-in) as a primary with two
// workers: HTTP still answered, a number always on one worker (a second bind replaces the first),
// calls with their media connections work (the bench test with workers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { Socket } from 'node:net';
import { UpgradeRouter, workerForNumber, type Handoff } from '../../bridge/server/UpgradeRouter.ts';
import { PASSWORD, startBridge, stopBridge, type Bridge } from '../../bench/run.ts';
import { loadConfig } from '../../bridge/config.ts';
import { aggregateHealth, type BridgeHealth, type Health } from '../../bridge/server/health.ts';

test('workerForNumber: stable, in range, spreads numbers', () => {
  const seen = [0, 0, 0];
  for (let i = 0; i < 3000; i++) {
    const k = workerForNumber(String(1000 + i), 3);
    assert.equal(k, workerForNumber(String(1000 + i), 3));
    seen[k]!++;
  }
  for (const n of seen) assert.ok(n > 800 && n < 1200, `spread ${seen.join(' ')}`);
  assert.equal(workerForNumber('1001', 1), 0);
});

test('the primary reads nothing of a socket once handed off: what the terminal sends next is left for the worker', async () => {
  // Until the worker says it adopted the socket, the primary keeps its own descriptor of it. It
  // must not read from it any more: a `register` sent right after `bound` was read here and lost.
  const config = loadConfig({ env: {}, overrides: { asterisk: { password: 'x' }, server: { host: '127.0.0.1', port: 0, plain: true, workers: 2 } } });
  let handed: { socket: Socket; handoff: Handoff; bytesRead: number } | null = null;
  const router = new UpgradeRouter(config, 2, (worker, socket, handoff) => {
    handed = { socket, handoff, bytesRead: socket.bytesRead };
    return worker;
  });
  const { port } = await router.listen();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.on('open', resolve);
      ws.on('error', reject);
    });
    ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number: '1001', password: PASSWORD }));
    for (let i = 0; i < 100 && handed === null; i++) await new Promise((r) => setTimeout(r, 10));
    const h = handed as { socket: Socket; handoff: Handoff; bytesRead: number } | null;
    assert.ok(h, 'the bind was handed off');
    assert.equal(h.handoff.pinned, true, 'routed by the number');
    // the next message, as a worker's `bound` would bring it on
    ws.send(JSON.stringify({ type: 'register', id: 1 }));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(h.socket.bytesRead, h.bytesRead, 'the primary read nothing more from the socket');
    assert.equal(h.socket.readableLength, 0);
  } finally {
    ws.terminate();
    (handed as { socket: Socket } | null)?.socket.destroy();
    await router.close();
  }
});

test('config: workers > 1 is refused with TLS on the bridge', () => {
  assert.throws(() => loadConfig({ env: {}, overrides: { asterisk: { password: 'x' }, server: { workers: 2, tls: { cert: '/c', key: '/k' } } } }), /server.workers/);
  assert.equal(loadConfig({ env: { CONFMUX_WORKERS: '3' }, overrides: { asterisk: { password: 'x' } } }).server.workers, 3);
});

/** Runs `body` against a bridge with two workers (bench/server.ts); the connections it puts in `open` are closed after. */
async function withTwoWorkers(body: (bridge: Bridge, open: WebSocket[]) => Promise<void>, env: Record<string, string> = {}): Promise<void> {
  const bridge = await startBridge(env, 2);
  const open: WebSocket[] = [];
  try {
    await body(bridge, open);
  } finally {
    for (const ws of open) ws.close();
    await stopBridge(bridge);
  }
}

function bind(port: number, number: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const closed = new Promise<number>((r) => ws.on('close', (code: number) => r(code)));
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number, password: PASSWORD })));
    ws.once('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as { type: string };
      if (m.type === 'bound') resolve({ ws, closed });
      else reject(new Error(d.toString()));
    });
  });
}

test('two workers behind one port: HTTP answered, a second bind of a number replaces the first', async () => {
  await withTwoWorkers(async (bridge) => {
    assert.equal(bridge.pids.length, 3, 'a primary and two workers');
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`http://127.0.0.1:${bridge.port}/healthz`);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { status: string }).status, 'ok');
    }
    assert.equal((await fetch(`http://127.0.0.1:${bridge.port}/nothing`)).status, 404);
    // numbers on both workers, each bound twice
    for (const number of ['1001', '1002', '1003', '1004']) {
      const first = await bind(bridge.port, number);
      const second = await bind(bridge.port, number);
      assert.equal(await first.closed, 4409, `${number}: the first session is replaced`);
      second.ws.close();
    }
    // a connection whose first message is not a bind still gets the bridge's own refusal
    const ws = new WebSocket(`ws://127.0.0.1:${bridge.port}/`);
    const code = await new Promise<number>((resolve) => {
      ws.on('open', () => ws.send(Buffer.from([1, 2, 3])));
      ws.on('close', (c: number) => resolve(c));
    });
    assert.ok(code >= 4000, `refused with ${code}`);
  });
});

test('two workers: /metrics on the one port is the whole bridge (every worker\'s share summed), not one worker\'s', async () => {
  await withTwoWorkers(async (bridge, open) => {
    // numbers that land on each of the two workers
    const numbers = ['1001', '1002', '1003', '1004', '1005', '1006'];
    const perWorker = [0, 0];
    for (const n of numbers) perWorker[workerForNumber(n, 2)]!++;
    assert.ok(perWorker[0]! > 0 && perWorker[1]! > 0, `numbers on both workers: ${perWorker.join(' ')}`);
    for (const n of numbers) open.push((await bind(bridge.port, n)).ws);
    const value = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    // every scrape (they are no longer handed to one worker in turn) sees all six, also when
    // several arrive at once (each question to the workers gets its own answers)
    await Promise.all([0, 1, 2].map(async () => {
      const res = await fetch(`http://127.0.0.1:${bridge.port}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
      const text = await res.text();
      assert.equal(value(text, 'confmux_terminals'), numbers.length, 'terminals of both workers');
      assert.equal(value(text, 'confmux_connections_bound_total\\{kind="control"\\}'), numbers.length, 'binds of both workers');
    }));
  });
});

test('two workers: /healthz on the one port is the whole bridge; a worker that does not answer turns it 503', async () => {
  await withTwoWorkers(async (bridge, open) => {
    const numbers = ['1001', '1002', '1003', '1004', '1005', '1006'];
    const perWorker = [0, 0];
    for (const n of numbers) perWorker[workerForNumber(n, 2)]!++;
    for (const n of numbers) open.push((await bind(bridge.port, n)).ws);
    const health = async (): Promise<{ code: number; body: BridgeHealth }> => {
      const res = await fetch(`http://127.0.0.1:${bridge.port}/healthz`);
      assert.equal(res.headers.get('content-type'), 'application/json');
      return { code: res.status, body: (await res.json()) as BridgeHealth };
    };
    // every answer counts both workers' terminals (it was one worker's share, in turn)
    for (let i = 0; i < 3; i++) {
      const { code, body } = await health();
      assert.equal(code, 200);
      assert.deepEqual(body, { status: 'ok', mediaServer: 'echo', pbx: 'up', terminals: numbers.length, calls: 0, workers: { expected: 2, answered: 2, pbxUp: 2 } });
    }
    // worker 0 stops answering (SIGSTOP): the bridge is not healthy, whichever worker is asked
    const worker0 = bridge.pids[1]!;
    process.kill(worker0, 'SIGSTOP');
    try {
      const { code, body } = await health();
      assert.equal(code, 503);
      assert.equal(body.status, 'degraded');
      assert.equal(body.pbx, 'down');
      assert.deepEqual(body.workers, { expected: 2, answered: 1, pbxUp: 1 });
      assert.equal(body.terminals, perWorker[1], 'the terminals of the worker that answered');
    } finally {
      process.kill(worker0, 'SIGCONT');
    }
    const again = await health();
    assert.equal(again.code, 200);
    assert.equal(again.body.terminals, numbers.length);
  });
});

test('aggregateHealth: draining wins, a link down or a missing worker is degraded', () => {
  const ok: Health = { status: 'ok', mediaServer: 'asterisk', pbx: 'up', terminals: 2, calls: 1 };
  const down: Health = { ...ok, status: 'degraded', pbx: 'down' };
  assert.equal(aggregateHealth([ok, ok], 2, 'asterisk').status, 'ok');
  assert.deepEqual(aggregateHealth([ok, down], 2, 'asterisk'), { status: 'degraded', mediaServer: 'asterisk', pbx: 'down', terminals: 4, calls: 2, workers: { expected: 2, answered: 2, pbxUp: 1 } });
  assert.equal(aggregateHealth([ok, { ...ok, status: 'draining' }], 2, 'asterisk').status, 'draining');
  assert.equal(aggregateHealth([], 2, 'freeswitch').mediaServer, 'freeswitch');
  assert.equal(aggregateHealth([], 2, 'freeswitch').status, 'degraded');
});

/** A connection that sends its bind and resolves with how it ended: 'bound', or the close code. */
function tryBind(port: number, number: string, password = PASSWORD): Promise<{ result: 'bound' | number; ws: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.on('error', () => undefined);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'bind', v: 1, kind: 'control', number, password })));
    ws.once('message', (d: Buffer) => {
      if ((JSON.parse(d.toString()) as { type: string }).type === 'bound') resolve({ result: 'bound', ws });
    });
    ws.on('close', (code: number) => resolve({ result: code, ws }));
  });
}

test('two workers: the per-address connection limit counts over all workers, and frees what a dead worker held', async () => {
  // limits.maxConnectionsPerIp 4 for the whole bridge (the load generator's address is 127.0.0.1)
  await withTwoWorkers(async (bridge, open) => {
    const numbers = ['1001', '1002', '1003', '1004'];
    const perWorker = [0, 0];
    for (const n of numbers) perWorker[workerForNumber(n, 2)]!++;
    assert.ok(perWorker[0]! > 0 && perWorker[1]! > 0, `on both workers: ${perWorker.join(' ')}`);
    for (const n of numbers) open.push((await bind(bridge.port, n)).ws);
    // each worker holds at most 3, under the limit: only the count over both refuses the fifth
    const fifth = await tryBind(bridge.port, '1005');
    assert.equal(fifth.result, 4431, 'TOO_MANY_CONNECTIONS, the close code a single process sends');
    // one closes: once its worker has said so, a new one is taken
    open.shift()!.close();
    let again: { result: 'bound' | number; ws: WebSocket } | null = null;
    for (let i = 0; i < 50 && again?.result !== 'bound'; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      again = await tryBind(bridge.port, '1005');
    }
    assert.equal(again!.result, 'bound');
    open.push(again!.ws);
    assert.equal((await tryBind(bridge.port, '1006')).result, 4431, 'full again');
    // worker 0 dies: what it held is freed (it is started again within about a second)
    const onWorker0 = ['1002', '1003', '1004', '1005'].filter((n) => workerForNumber(n, 2) === 0).length;
    assert.ok(onWorker0 > 0);
    process.kill(bridge.pids[1]!, 'SIGKILL');
    const fresh = ['2001', '2002', '2003', '2004', '2005', '2006', '2007', '2008'];
    let taken = 0;
    let refused = 0;
    for (let i = 0; i < 80 && taken < onWorker0; i++) {
      const n = fresh.find((f) => workerForNumber(f, 2) === 1 && !open.some((w) => (w as WebSocket & { n?: string }).n === f));
      if (n === undefined) break;
      const r = await tryBind(bridge.port, n);
      if (r.result === 'bound') {
        (r.ws as WebSocket & { n?: string }).n = n;
        open.push(r.ws);
        taken++;
      } else {
        refused++;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    assert.equal(taken, onWorker0, `as many new connections as worker 0 held (${refused} refused while it was going)`);
    assert.equal((await tryBind(bridge.port, '1006')).result, 4431, 'and not one more');
  }, { CONFMUX_BENCH_MAX_CONNECTIONS_PER_IP: '4' });
});

test('two workers: connections handed to a worker that dies before taking them are closed, not left hanging', async () => {
  await withTwoWorkers(async (bridge) => {
    const worker0 = bridge.pids[1]!;
    // worker 0 cannot read its channel: the sockets handed to it wait there
    process.kill(worker0, 'SIGSTOP');
    // plain requests are handed out in turn: two of the four to the stopped worker
    const requests = Promise.allSettled([1, 2, 3, 4].map(() => fetch(`http://127.0.0.1:${bridge.port}/nothing`, { signal: AbortSignal.timeout(8000) })));
    await new Promise((r) => setTimeout(r, 300));
    process.kill(worker0, 'SIGKILL');
    const results = await requests;
    const answered = results.filter((r) => r.status === 'fulfilled' && r.value.status === 404).length;
    const timedOut = results.filter((r) => r.status === 'rejected' && (r.reason as Error).name === 'TimeoutError').length;
    const closed = results.filter((r) => r.status === 'rejected' && (r.reason as Error).name !== 'TimeoutError').length;
    assert.equal(timedOut, 0, `no client left waiting (answered ${answered}, closed ${closed})`);
    assert.equal(answered, 2, 'the live worker answered its two');
    assert.equal(closed, 2, 'the dead worker\'s two were closed');
  });
});

test('two workers: a terminal that binds while its worker restarts waits for that worker, not another', async () => {
  await withTwoWorkers(async (bridge, open) => {
    const number = ['1001', '1002', '1003', '1004'].find((n) => workerForNumber(n, 2) === 0)!;
    process.kill(bridge.pids[1]!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    // bound once worker 0 is back (started again after about a second)
    const t = Date.now();
    const first = await bind(bridge.port, number);
    open.push(first.ws);
    assert.ok(Date.now() - t > 300, `waited for the worker (${Date.now() - t} ms)`);
    // the same number again lands on worker 0: it replaces the first session, so both were there
    const second = await bind(bridge.port, number);
    open.push(second.ws);
    assert.equal(await first.closed, 4409, 'the first session was on the same worker and is replaced');
  });
});

test('two workers: failed logins from an address count over all workers, and the lockout reaches every worker', async () => {
  await withTwoWorkers(async (bridge, open) => {
    const numbers = Array.from({ length: 20 }, (_, i) => String(1001 + i));
    const on = (k: number): string[] => numbers.filter((n) => workerForNumber(n, 2) === k);
    const [a, b] = [on(0), on(1)];
    // five wrong passwords (limits.loginFailuresAllowed, 5 by default), spread so that no worker
    // and no number sees five
    for (const n of [a[0]!, b[0]!, a[1]!, b[1]!, a[2]!]) assert.equal((await tryBind(bridge.port, n, 'wrong')).result, 4403, `${n}: AUTH_FAILED`);
    // the address is now locked out on both workers (limits.loginThrottleMs, 2 s): even the right
    // password is refused, on numbers that never failed
    for (const n of [b[2]!, a[3]!]) {
      let r = await tryBind(bridge.port, n);
      for (let i = 0; i < 10 && r.result !== 4432; i++) {
        if (r.result === 'bound') r.ws.close();
        await new Promise((res) => setTimeout(res, 20));
        r = await tryBind(bridge.port, n);
      }
      if (r.result === 'bound') open.push(r.ws);
      assert.equal(r.result, 4432, `${n} (worker ${workerForNumber(n, 2)}): LOGIN_THROTTLED`);
    }
  });
});
