// Asterisk goes away and comes back (issue 3): the bridge stays up, terminals in calls are told,
// registered terminals stay connected, and once Asterisk is back they are shown and reachable
// again without reconnecting. Leaves the sandbox running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import { SANDBOX_SH, asteriskRx, ensureSandbox } from '../helpers/sandbox.ts';
import { startBridge, waitNoChannels } from '../helpers/bridge.ts';

const run = promisify(execFile);

async function healthz(url: string): Promise<{ status: number; pbx: string }> {
  const res = await fetch(url.replace(/^ws/, 'http') + 'healthz');
  return { status: res.status, pbx: ((await res.json()) as { pbx: string }).pbx };
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!(await fn())) {
    if (Date.now() - start > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - start;
}

async function hint(number: string): Promise<string> {
  const out = await asteriskRx('core show hints');
  return /State:(\S+)/.exec(out.split('\n').find((l) => l.startsWith(`${number}@confmux-terminals`)) ?? '')?.[1] ?? 'none';
}

test('Asterisk restarts under the bridge: calls end, terminals are told and stay, service resumes', async () => {
  await ensureSandbox();
  const bridge = await startBridge({ asterisk: { app: 'confmux' } });
  const caller = createNodeTerminal({ url: bridge.url, number: '1001', password: 'sandbox-1001' });
  const callee = createNodeTerminal({ url: bridge.url, number: '1002', password: 'sandbox-1002' });
  let closedEvents = 0;
  const pbxStates: string[] = [];
  try {
    for (const t of [caller, callee]) {
      await t.connect();
      await t.register();
      t.on('closed', () => closedEvents++);
    }
    callee.on('pbx', (state) => pbxStates.push(state));
    {
    }
    const call = await caller.call('700');
    await call.answered();

    await run('bash', [SANDBOX_SH, 'down'], { timeout: 60000 });
    const info = await call.ended();
    // `core stop` hangs calls up itself about a second before ARI closes (remote, or media_lost
    // when the media channel goes first); a crash gives pbx_lost. The pbx message says which.
    assert.ok(['remote', 'pbx_lost', 'media_lost'].includes(info.reason), info.reason);
    await until('terminals told the PBX is down', async () => pbxStates.includes('down'), 5000);
    const down = await healthz(bridge.url);
    assert.deepEqual(down, { status: 503, pbx: 'down' });

    const t0 = Date.now();
    await run('bash', [SANDBOX_SH, 'up'], { timeout: 10 * 60000 });
    const back = await until('ARI link back', async () => (await healthz(bridge.url)).pbx === 'up', 60000);
    console.log(`bridge saw Asterisk again ${back} ms after sandbox up returned (${Date.now() - t0} ms after the restart began)`);
    assert.equal(closedEvents, 0, 'no terminal was disconnected');
    await until('terminals told the PBX is back', async () => pbxStates.at(-1) === 'up', 5000);

    // registration re-published: the console shows both terminals again
    await until('hints re-published', async () => (await hint('1001')) === 'Idle' && (await hint('1002')) === 'Idle', 10000);

    // reachable again without reconnecting: the console invites 1002, and 1001 places a call
    callee.once('incoming', (inv) => void inv.accept());
    await asteriskRx('channel originate Local/1002@confmux-terminals extension 701@confmux-rooms');
    await until('1002 in room 701', async () => /1002/.test(await asteriskRx('confbridge list 701')), 10000);
    const again = await caller.call('701');
    await again.answered();
    await again.hangup();
    await asteriskRx('confbridge kick 701 all');
  } finally {
    caller.close();
    callee.close();
    await bridge.close();
  }
  assert.deepEqual(await waitNoChannels((l) => /Local\/70[01]@|confmux-/.test(l), 8000), []);
});
