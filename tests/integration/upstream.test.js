'use strict';
// Upstream failures degrade gracefully (P8): down, 5xx with Retry-After, hangs, broken bodies,
// revoked grants.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { setup, sleep, SOURCE_ROOT } = require('./harness');

const TIMEOUT = 3; // [identity] timeout, seconds

let h;
before(async () => {
  h = await setup({ config: { identity: { timeout: TIMEOUT, connect_timeout: TIMEOUT } } });
});
after(() => h && h.teardown());

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

function assertUnavailable(reply, what) {
  assert.equal(reply.ok, false, `${what}: ${JSON.stringify(reply)}`);
  assert.equal(reply.error, 'unavailable', `${what}: ${JSON.stringify(reply)}`);
  assert.equal(reply.access_token, undefined);
  assert.ok(Number.isInteger(reply.retry_after) && reply.retry_after >= 1,
    `${what}: retry_after ${reply.retry_after}`);
}

// A broker with an empty cache and no backoff, and an emulator with no queued faults.
async function fresh() {
  if (!h.emu) await h.startEmulator();
  await h.clearFaults();
  await h.restartBroker();
  await h.resetCounters();
}

async function timedPing() {
  const t0 = Date.now();
  const r = await h.rawRequest({ v: 1, op: 'ping' }, 5000);
  assert.equal(r.ok, true);
  return Date.now() - t0;
}

test('a cached token is still served while the token endpoint is down', { timeout: 30000 }, async () => {
  await fresh();
  const a = await h.cli(['token', '-p', 'alerts']);
  assert.equal(a.code, 0, a.stderr);
  await h.stopEmulator();
  const b = await h.cli(['token', '-p', 'alerts']);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stdout, a.stdout);
  await h.startEmulator();
});

test('emulator down: exit 75 and unavailable with retry_after; back on the same port: a token after retry_after', { timeout: 60000 }, async () => {
  await fresh();
  await h.stopEmulator();
  const r = await h.cli(['token', '-p', 'alerts']);
  assert.equal(r.code, 75, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /unavailable/);
  assert.equal(r.stdout, '');

  const reply = await h.rawRequest(TOKEN);
  assertUnavailable(reply, 'while the emulator is down');
  assert.ok(reply.retry_after <= 300, `retry_after ${reply.retry_after} exceeds the backoff cap`);
  assert.ok(h.brokerAlive());

  await h.startEmulator(); // same ports, asserted by the harness
  await sleep(reply.retry_after * 1000 + 250);
  const ok = await h.rawRequest(TOKEN);
  assert.equal(ok.ok, true, `after waiting retry_after: ${JSON.stringify(ok)}`);
  assert.equal((await h.counters()).token_success, 1);
});

test('503 with Retry-After: unavailable, and retry_after honours the server', { timeout: 30000 }, async () => {
  await fresh();
  await h.addFault({ endpoint: 'token', mode: 'status', status: 503, retry_after: 3 });
  const reply = await h.rawRequest(TOKEN);
  assertUnavailable(reply, '503');
  assert.ok(reply.retry_after >= 2 && reply.retry_after <= 4, `retry_after ${reply.retry_after} for Retry-After: 3`);
  const c = await h.counters();
  assert.equal(c.faults_injected.token, 1);
  // No retry storm: asking again during the backoff does not go upstream.
  const again = await h.rawRequest(TOKEN);
  assertUnavailable(again, 'during the backoff');
  assert.equal((await h.counters()).token, 1, 'no upstream request during the backoff');
});

test('a hanging token endpoint: unavailable after the configured timeout; pings answer meanwhile', { timeout: 30000 }, async () => {
  await fresh();
  await h.addFault({ endpoint: 'token', mode: 'hang' });
  const c = await h.rawClient();
  try {
    const t0 = Date.now();
    await c.send(TOKEN);
    const replyPromise = c.readFrame(20000);
    await sleep(300);
    for (let i = 0; i < 5; i++) {
      const ms = await timedPing();
      assert.ok(ms < 1000, `a ping took ${ms} ms while a refresh hangs`);
      await sleep(200);
    }
    const reply = await replyPromise;
    const elapsed = (Date.now() - t0) / 1000;
    assertUnavailable(reply, 'hang');
    assert.ok(elapsed >= TIMEOUT - 0.5, `answered after ${elapsed}s, before the ${TIMEOUT}s timeout`);
    assert.ok(elapsed < TIMEOUT + 5, `answered only after ${elapsed}s with a ${TIMEOUT}s timeout`);
  } finally {
    c.close();
  }
  assert.ok(h.brokerAlive());
});

for (const mode of ['truncate', 'huge', 'reset']) {
  test(`a ${mode} fault: unavailable, and the broker lives on`, { timeout: 30000 }, async () => {
    await fresh();
    await h.addFault({ endpoint: 'token', mode });
    const reply = await h.rawRequest(TOKEN);
    assertUnavailable(reply, mode);
    assert.equal((await h.counters()).faults_injected.token, 1);
    assert.ok(h.brokerAlive());
    assert.ok((await timedPing()) < 1000);
    // And it recovers once the endpoint behaves.
    await sleep(reply.retry_after * 1000 + 250);
    const ok = await h.rawRequest(TOKEN);
    assert.equal(ok.ok, true, `after the ${mode} fault: ${JSON.stringify(ok)}`);
  });
}

test('a revoked refresh token: reauth_required (exit 78), audited, and no retry loop', { timeout: 30000 }, async () => {
  await fresh();
  const rev = await h.emulatorAdmin('POST', '/admin/refresh-tokens/revoke', { user: 'alerts@contoso.com' });
  assert.ok(rev.revoked >= 1);
  const r = await h.cli(['token', '-p', 'alerts']);
  assert.equal(r.code, 78, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /reauth_required/);
  const reply = await h.rawRequest(TOKEN);
  assert.equal(reply.ok, false);
  assert.equal(reply.error, 'reauth_required');
  assert.equal(reply.access_token, undefined);
  assert.equal((await h.counters()).token, 1, 'an account that needs an administrator is not retried upstream');
  const events = h.auditLines().filter((l) => l.event === 'reauth_required');
  assert.equal(events.length, 1, 'one reauth_required audit record');
  assert.equal(events[0].account, 'alerts');
  assert.equal(typeof events[0].error, 'string');
  assert.match(events[0].error, /700082|invalid_grant/);
});

test('TLS is verified against the configured CA: a server it did not sign gets nothing', { timeout: 30000 }, async () => {
  // An earlier test revoked the account's grant: start from a good one.
  const rt = `RT-CANARY-TLS-${Date.now()}`;
  await h.registerRefreshToken(rt);
  await h.importAccount('alerts', rt);
  // A second, unrelated CA: the emulator's certificate does not chain to it.
  execFileSync(path.join(SOURCE_ROOT, 'tests', 'emulator', 'gen-certs'), [h.p('other-ca')]);
  const sections = h.configSections();
  sections.identity.ca_bundle = h.p('other-ca', 'ca.pem');
  h.writeConfig(sections);
  try {
    await fresh();
    const reply = await h.rawRequest(TOKEN);
    assertUnavailable(reply, 'untrusted server certificate');
    assert.equal((await h.counters()).token, 0, 'no token request got through the TLS handshake');
  } finally {
    h.writeConfig();
    await fresh();
  }
  const again = await h.rawRequest(TOKEN);
  assert.equal(again.ok, true, `with the right CA again: ${JSON.stringify(again)}`);
});

test('expiry counts from when the request was sent: a 2 s slow token endpoint shortens expires_in by 2 s', { timeout: 30000 }, async () => {
  const LIFETIME = 60;
  const DELAY_MS = 2000; // below the [identity] timeout of 3 s
  await h.emulatorAdmin('POST', '/admin/config', { token_lifetime: LIFETIME });
  try {
    await fresh();
    await h.addFault({ endpoint: 'token', mode: 'latency', delay_ms: DELAY_MS });
    const sentAt = Date.now() / 1000;
    const reply = await h.rawRequest(TOKEN, 20000);
    const receivedAt = Date.now() / 1000;
    assert.equal(reply.ok, true, JSON.stringify(reply));
    assert.ok(receivedAt - sentAt >= DELAY_MS / 1000, 'the emulator did delay the answer');
    // Counted from the answer, it would be 59-60 s; from the request, 57-58 s.
    assert.ok(reply.expires_in <= LIFETIME - DELAY_MS / 1000,
      `expires_in ${reply.expires_in} does not account for the ${DELAY_MS} ms the request took`);
    assert.ok(reply.expires_in >= LIFETIME - DELAY_MS / 1000 - 2, `expires_in ${reply.expires_in}`);
    assert.ok(reply.expires_at <= Math.ceil(sentAt) + LIFETIME,
      `expires_at ${reply.expires_at} is later than sent + lifetime ${sentAt + LIFETIME}`);
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { token_lifetime: 3599 });
  }
});

test('a token response without a refresh token keeps the stored one', { timeout: 30000 }, async () => {
  await fresh();
  const before = await h.refreshTokenGenerations();
  await h.addFault({ endpoint: 'token', mode: 'no_refresh_token' });
  const first = await h.rawRequest(TOKEN);
  assert.equal(first.ok, true, JSON.stringify(first));
  assert.deepEqual(await h.refreshTokenGenerations(), before, 'the stored refresh token is untouched');
  // And it still works: the next refresh (forced by min_ttl) uses it and rotates as usual.
  const second = await h.rawRequest({ ...TOKEN, min_ttl: 3599 });
  assert.equal(second.ok, true, JSON.stringify(second));
  assert.notEqual(second.access_token, first.access_token);
  const after = await h.refreshTokenGenerations();
  assert.equal(after.length, 1);
  assert.ok(after[0] > before[before.length - 1], `generation ${after[0]} after ${before}`);
  assert.equal((await h.counters()).token_success, 2);
});

test('strict rotation: 25 refreshes in a row and across restarts never replay a refresh token', { timeout: 60000 }, async () => {
  await h.emulatorAdmin('POST', '/admin/config', { rotation: 'strict' });
  try {
    await fresh();
    const stateBefore = await h.emulatorAdmin('GET', '/admin/state');
    const auditBefore = h.auditLines().length;
    const tokens = new Set();
    for (let i = 0; i < 25; i++) {
      if (i % 10 === 9) await h.restartBroker();
      // A min_ttl of the whole lifetime is never met by a cached token: each request refreshes.
      const reply = await h.rawRequest({ ...TOKEN, min_ttl: 3599 });
      assert.equal(reply.ok, true, `refresh ${i}: ${JSON.stringify(reply)}`);
      tokens.add(reply.access_token);
    }
    assert.equal(tokens.size, 25);
    const c = await h.counters();
    assert.equal(c.token, 25);
    assert.equal(c.token_success, 25, 'no refresh was refused (a replay revokes the family)');
    const state = await h.emulatorAdmin('GET', '/admin/state');
    assert.equal(state.revoked_refresh_tokens - stateBefore.revoked_refresh_tokens, 25,
      'each refresh token used exactly once');
    assert.equal(h.auditLines().slice(auditBefore).filter((l) => l.event === 'reauth_required').length, 0);
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { rotation: 'lenient' });
  }
});
