import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ENV_OVERRIDES, loadConfig } from '../../bridge/config.ts';

test('defaults: listen 0.0.0.0:8080, ARI on loopback, app confmux', () => {
  const c = loadConfig({ env: { CONFMUX_ARI_PASSWORD: 'p' } });
  assert.equal(c.server.host, '0.0.0.0');
  assert.equal(c.server.port, 8080);
  assert.equal(c.asterisk.url, 'http://127.0.0.1:8088');
  assert.equal(c.asterisk.app, 'confmux');
  assert.equal(c.asterisk.mediaTransport, 'websocket');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.limits), 'frozen');
});

test('file first, then env overrides', () => {
  const dir = mkdtempSync(join(tmpdir(), 'confmux-config-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ server: { port: 9000 }, asterisk: { password: 'file', app: 'fromfile' } }));
  const c = loadConfig({ file, env: { CONFMUX_ARI_APP: 'fromenv', CONFMUX_METRICS: 'x' } });
  assert.equal(c.server.port, 9000);
  assert.equal(c.asterisk.password, 'file');
  assert.equal(c.asterisk.app, 'fromenv');
});

test('every problem is listed at once', () => {
  try {
    loadConfig({ env: { CONFMUX_PORT: 'eighty', CONFMUX_ASTERISK_MEDIA_TRANSPORT: 'carrier-pigeon', CONFMUX_ARI_URL: 'not a url' }, overrides: { limits: { bindTimeoutMs: -1 }, bogus: 1 } });
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const text = err.problems.join('\n');
    for (const p of ['server.port', 'asterisk.mediaTransport', 'asterisk.url', 'asterisk.password', 'limits.bindTimeoutMs', 'bogus']) assert.match(text, new RegExp(p.replace('.', '\\.')), p);
  }
});

test('docs/configuration.md documents every option and every env variable', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  for (const name of Object.keys(ENV_OVERRIDES)) assert.match(doc, new RegExp(name), name);
  const c = loadConfig({ env: { CONFMUX_ARI_PASSWORD: 'p' } });
  for (const [section, values] of Object.entries(c)) {
    if (typeof values !== 'object') {
      assert.match(doc, new RegExp(`\`${section}\``), section);
      continue;
    }
    for (const key of Object.keys(values)) assert.match(doc, new RegExp(`\`${section}\\.${key}\``), `${section}.${key}`);
  }
});

test('only the selected media server needs its password; freeswitch defaults on loopback', () => {
  const c = loadConfig({ env: { CONFMUX_MEDIA_SERVER: 'freeswitch', CONFMUX_ESL_PASSWORD: 'esl' } });
  assert.equal(c.mediaServer, 'freeswitch');
  assert.equal(c.freeswitch.host, '127.0.0.1');
  assert.equal(c.freeswitch.port, 8021);
  assert.equal(c.freeswitch.password, 'esl');
  assert.equal(c.freeswitch.context, 'default');
  assert.equal(c.freeswitch.domain, '');
  assert.throws(() => loadConfig({ env: { CONFMUX_MEDIA_SERVER: 'freeswitch' } }), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith('freeswitch.password')) && !e.problems.some((p) => p.startsWith('asterisk.password')));
  assert.throws(() => loadConfig({ env: { CONFMUX_ESL_PASSWORD: 'esl' } }), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith('asterisk.password')));
  assert.throws(() => loadConfig({ env: { CONFMUX_MEDIA_SERVER: 'yate', CONFMUX_ARI_PASSWORD: 'p' } }), ConfigError);
});
