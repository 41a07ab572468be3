// The one port facing the internet (issue 8): TLS with certificate reload, the browser Origin check,
// per-address connection limits and failed-login throttling, against a live bridge and Asterisk.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import WebSocket from 'ws';
import { createNodeTerminal } from '../../bridge/sdk/node.ts';
import { ensureSandbox } from '../helpers/sandbox.ts';
import { channels, startBridge, type TestBridge } from '../helpers/bridge.ts';

const dir = mkdtempSync(join(tmpdir(), 'confmux-tls-'));

function makeCert(name: string, cn: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

/** The CN of the certificate the server presents now. */
function presentedCn(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const cn = s.getPeerX509Certificate()?.subject ?? '';
      s.end();
      resolve(cn);
    });
    s.on('error', reject);
  });
}

function closeOf(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

let tlsBridge: TestBridge;
const live = makeCert('live', 'confmux-first');

before(async () => {
  await ensureSandbox();
  copyFileSync(live.cert, join(dir, 'server.crt'));
  copyFileSync(live.key, join(dir, 'server.key'));
});
after(async () => {
  await tlsBridge?.close();
});

test('wss:// on the one port; a renewed certificate is served without a restart', async () => {
  tlsBridge = await startBridge({ server: { tls: { cert: join(dir, 'server.crt'), key: join(dir, 'server.key') } } });
  const port = tlsBridge.server.address.port;
  assert.match(await presentedCn(port), /CN=confmux-first/);
  // a terminal over TLS (trusting this test certificate)
  const t = createNodeTerminal({ url: `wss://127.0.0.1:${port}/`, number: '1001', password: 'sandbox-1001', webSocketOptions: { rejectUnauthorized: false } });
  await t.connect();
  await t.register();
  t.close();
  // renew: new files in place; the bridge picks them up by itself
  const renewed = makeCert('renewed', 'confmux-renewed');
  copyFileSync(renewed.key, join(dir, 'server.key'));
  copyFileSync(renewed.cert, join(dir, 'server.crt'));
  let cn = '';
  for (let i = 0; i < 40 && !/renewed/.test(cn); i++) {
    await new Promise((r) => setTimeout(r, 250));
    cn = await presentedCn(port);
  }
  assert.match(cn, /CN=confmux-renewed/, 'the renewed certificate is served');
  assert.ok(new X509Certificate(readFileSync(renewed.cert)).subject.includes('confmux-renewed'));
  // TLS 1.1 and older are refused
  await assert.rejects(
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => resolve(s));
      s.on('error', reject);
    }),
  );
});

test('a browser page from a foreign origin is refused at the handshake; the own origin is not', async () => {
  const bridge = await startBridge();
  try {
    const host = `127.0.0.1:${bridge.server.address.port}`;
    const foreign = new WebSocket(bridge.url, { headers: { Origin: 'https://evil.example' } });
    const status = await new Promise<number>((resolve) => foreign.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    assert.equal(status, 403);
    const own = new WebSocket(bridge.url, { headers: { Origin: `http://${host}` } });
    await new Promise<void>((resolve, reject) => {
      own.once('open', () => resolve());
      own.once('error', reject);
    });
    own.close();
  } finally {
    await bridge.close();
  }
});

test('connections per address and unbound connections are capped (TOO_MANY_CONNECTIONS)', async () => {
  const bridge = await startBridge({ limits: { maxConnectionsPerIp: 3, bindTimeoutMs: 3000 } });
  try {
    const open = await Promise.all([0, 1, 2].map(() => new Promise<WebSocket>((resolve) => {
      const ws = new WebSocket(bridge.url);
      ws.once('open', () => resolve(ws));
    })));
    const fourth = new WebSocket(bridge.url);
    const c = await closeOf(fourth);
    assert.equal(c.code, 4431);
    assert.match(c.reason, /^TOO_MANY_CONNECTIONS: /);
    for (const ws of open) ws.close();
    await new Promise((r) => setTimeout(r, 200));
    // once they are gone, the address may connect again
    const again = new WebSocket(bridge.url);
    await new Promise<void>((resolve) => again.once('open', () => resolve()));
    again.close();
  } finally {
    await bridge.close();
  }
});

test('new connections beyond the per-address rate are refused (RATE_LIMITED)', async () => {
  const bridge = await startBridge({ limits: { connectionsPerSecondPerIp: 2, connectionBurstPerIp: 3 } });
  try {
    const codes = await Promise.all([0, 1, 2, 3, 4].map(() => new Promise<number>((resolve) => {
      const ws = new WebSocket(bridge.url);
      ws.once('close', (code) => resolve(code));
      ws.once('open', () => setTimeout(() => ws.close(1000), 300));
    })));
    assert.deepEqual(codes.filter((c) => c === 4429).length, 2, `closes: ${codes.join(',')}`);
  } finally {
    await bridge.close();
  }
});

test('failed logins are throttled per number: even the right password waits, and the wait grows', async () => {
  const bridge = await startBridge({ limits: { loginFailuresAllowed: 2, loginThrottleMs: 1000 } });
  const before = (await channels()).length;
  try {
    const attempt = async (password: string): Promise<string> => {
      const t = createNodeTerminal({ url: bridge.url, number: '1002', password });
      try {
        await t.connect();
        t.close();
        return 'OK';
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    assert.equal(await attempt('wrong-1'), 'AUTH_FAILED');
    assert.equal(await attempt('wrong-2'), 'AUTH_FAILED');
    assert.equal(await attempt('sandbox-1002'), 'LOGIN_THROTTLED', 'locked out after the allowed failures');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await attempt('wrong-3'), 'AUTH_FAILED', 'the window passed: tried again (and failed)');
    assert.equal(await attempt('sandbox-1002'), 'LOGIN_THROTTLED', 'the next window is longer');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await attempt('sandbox-1002'), 'LOGIN_THROTTLED', 'still locked: the window doubled to 2 s');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await attempt('sandbox-1002'), 'OK');
    assert.equal((await channels()).length, before, 'no channel for any of it');
  } finally {
    await bridge.close();
  }
});
