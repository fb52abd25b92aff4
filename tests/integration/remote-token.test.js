'use strict';
// The token behind a `p11-kit server` (docs/fleet.md): the broker and the CLI load
// p11-kit-client.so, which reaches the server named by P11_KIT_SERVER_ADDRESS; the server serves
// the real SoftHSM2 token. Provisioning and strict rotation go through it, and the generations
// are checked in the SoftHSM2 token itself. The server going away and coming back (a restart of
// the HSM host) costs the broker a session, which it opens again on the next operation.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, waitFor } = require('./harness');

const P11_KIT_CLIENT = process.env.P11_KIT_CLIENT_MODULE || '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
const NEEDS_REFRESH = { ...TOKEN, min_ttl: 86400 };

let h;
before(async () => {
  h = await setup({
    emulator: { rotation: 'strict' },
    importAccount: false,
    startBroker: false,
    config: { pkcs11: { module: P11_KIT_CLIENT } },
  });
  process.env.P11_KIT_SERVER_ADDRESS = await h.startP11KitServer();
});
after(async () => {
  if (!h) return;
  await h.teardown();
  await h.stopP11KitServer();
});

async function generationsListed() {
  const r = await h.cli(['account', 'list', '--config', h.conf]);
  assert.equal(r.code, 0, r.stderr);
  const row = r.stdout.split('\n').find((l) => l.startsWith('alerts '));
  assert.ok(row, `no row for alerts in:\n${r.stdout}`);
  return row.trim().split(/\s+/).at(-1);
}

test('provisioning through p11-kit-client lands in the SoftHSM2 token behind the server', { timeout: 60000 }, async () => {
  await h.importAccount('alerts', h.canaryRefreshToken);
  assert.deepEqual(await h.refreshTokenGenerations(), [1], 'generation 1, read straight from SoftHSM2');
  assert.equal(await generationsListed(), '1', 'and listed through the client module');
  await h.startBroker();
  assert.match(h.brokerLog(), /p11-kit-client\.so/);
});

test('strict rotation through the server: each refresh stores the next generation in the real token', { timeout: 90000 }, async () => {
  for (let generation = 2; generation <= 4; generation++) {
    const r = await h.rawRequest(NEEDS_REFRESH, 20000);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(await h.refreshTokenGenerations(), [generation]);
  }
  const refreshes = h.auditLines().filter((l) => l.event === 'refresh').map((l) => l.generation);
  assert.deepEqual(refreshes, [2, 3, 4]);
  const state = await h.emulatorAdmin('GET', '/admin/state');
  assert.equal(state.revoked_refresh_tokens, 3, 'generations 1-3 each used once, never replayed');
  assert.equal(await generationsListed(), '4');
});

test('the server restarts: the next refresh opens a new session and works, no request sees it', { timeout: 60000 }, async () => {
  await h.stopP11KitServer();
  process.env.P11_KIT_SERVER_ADDRESS = await h.startP11KitServer();
  const r = await h.rawRequest(NEEDS_REFRESH, 20000);
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(await h.refreshTokenGenerations(), [5]);
  assert.match(h.brokerLog(), /Lost the session to token "credbroker" \(CKR_DEVICE_ERROR\)/);
  assert.match(h.brokerLog(), /Opened the session to token "credbroker" again/);
});

test('the server is down: cached tokens are served, refreshes get unavailable, and work again once it is back', { timeout: 90000 }, async () => {
  await h.stopP11KitServer();
  const cached = await h.rawRequest(TOKEN, 5000);
  assert.equal(cached.ok, true, `served from the cache: ${JSON.stringify(cached)}`);
  const refused = await h.rawRequest(NEEDS_REFRESH, 10000);
  assert.equal(refused.error, 'unavailable', JSON.stringify(refused));
  assert.ok(refused.retry_after >= 1);
  // Backoff: one reopen attempt per period, not one per request.
  for (let i = 0; i < 20; i++) assert.equal((await h.rawRequest(NEEDS_REFRESH, 10000)).error, 'unavailable');
  const attempts = (h.brokerLog().match(/Cannot open token "credbroker" again/g) || []).length;
  assert.ok(attempts <= 2, `${attempts} reopen attempts for 21 requests`);

  process.env.P11_KIT_SERVER_ADDRESS = await h.startP11KitServer();
  const back = await waitFor('a refresh through the restarted server', async () => {
    const r = await h.rawRequest(NEEDS_REFRESH, 20000);
    return r.ok ? r : null;
  }, { timeoutMs: 30000, intervalMs: 500 });
  assert.equal(back.ok, true);
  assert.deepEqual(await h.refreshTokenGenerations(), [6]);
  assert.equal(h.auditLines().filter((l) => l.event === 'reauth_required').length, 0);
});
