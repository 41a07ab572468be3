import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Admission } from '../../bridge/server/Admission.ts';
import { loadConfig } from '../../bridge/config.ts';

const limits = (o: Record<string, number>) => loadConfig({ env: { CONFMUX_ARI_PASSWORD: 'x' }, overrides: { limits: o } }).limits;

test('failed logins lock a number out for a window that doubles, per number and per address', () => {
  const a = new Admission(limits({ loginFailuresAllowed: 2, loginThrottleMs: 1000 }));
  try {
    const t0 = 1_000_000;
    a.loginFailed('1002', '10.0.0.1', t0);
    assert.equal(a.loginWait('1002', '10.0.0.1', t0), 0, 'one failure: no wait');
    a.loginFailed('1002', '10.0.0.1', t0);
    assert.equal(a.loginWait('1002', '10.0.0.1', t0), 1000, 'two failures: 1 s');
    assert.equal(a.loginWait('1002', '10.0.0.9', t0), 1000, 'the number is locked from any address');
    assert.equal(a.loginWait('1003', '10.0.0.1', t0), 1000, 'the address is locked for any number');
    assert.equal(a.loginWait('1003', '10.0.0.9', t0), 0);
    a.loginFailed('1002', '10.0.0.1', t0 + 1100);
    assert.equal(a.loginWait('1002', '10.0.0.1', t0 + 1100), 2000, 'three failures: 2 s');
    a.loginSucceeded('1002');
    assert.equal(a.loginWait('1002', '10.0.0.9', t0 + 1100), 0, 'a success clears the number');
  } finally {
    a.close();
  }
});

test('connections: per-address cap, unbound cap, rate', () => {
  const a = new Admission(limits({ maxConnectionsPerIp: 2, maxUnauthenticated: 3, connectionsPerSecondPerIp: 1000, connectionBurstPerIp: 1000 }));
  try {
    assert.equal(a.admit('1.1.1.1'), null);
    assert.equal(a.admit('1.1.1.1'), null);
    assert.equal(a.admit('1.1.1.1'), 'TOO_MANY_CONNECTIONS');
    assert.equal(a.admit('2.2.2.2'), null);
    assert.equal(a.admit('3.3.3.3'), 'TOO_MANY_CONNECTIONS', 'three waiting to bind in total');
    a.bound();
    assert.equal(a.admit('3.3.3.3'), null);
    a.release('1.1.1.1', true);
    assert.equal(a.admit('1.1.1.1'), null);
  } finally {
    a.close();
  }
  const r = new Admission(limits({ connectionsPerSecondPerIp: 1, connectionBurstPerIp: 2 }));
  try {
    assert.deepEqual([r.admit('9.9.9.9'), r.admit('9.9.9.9'), r.admit('9.9.9.9')], [null, null, 'RATE_LIMITED']);
  } finally {
    r.close();
  }
});
