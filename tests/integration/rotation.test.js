'use strict';
// Refresh-token rotation (§6) against a strict (OAuth 2.1) server, and refresh ahead of expiry.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, sleep } = require('./harness');

const envs = [];
after(async () => {
  const errors = [];
  for (const h of envs) await h.teardown().catch((e) => errors.push(e));
  if (errors.length) throw errors[0];
});

async function accountListGeneration(h) {
  const r = await h.cli(['account', 'list', '--config', h.conf]);
  assert.equal(r.code, 0, r.stderr);
  const row = r.stdout.split('\n').find((l) => l.startsWith('alerts '));
  assert.ok(row, `no row for account alerts in:\n${r.stdout}`);
  return row.trim().split(/\s+/).at(-1);
}

test('strict rotation: each refresh stores the next generation and destroys the old one', { timeout: 90000 }, async () => {
  const h = await setup({ emulator: { rotation: 'strict' } });
  envs.push(h);
  assert.deepEqual(await h.refreshTokenGenerations(), [1], 'the import stored generation 1');
  assert.equal(await accountListGeneration(h), '1');

  const first = await h.cli(['token', '-p', 'alerts']);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(await accountListGeneration(h), '2');
  assert.deepEqual(await h.refreshTokenGenerations(), [2], 'only alerts/refresh_token/2 is left');
  const refresh = h.auditLines().filter((l) => l.event === 'refresh');
  assert.equal(refresh.length, 1);
  assert.equal(refresh[0].generation, 2);
  assert.equal(refresh[0].account, 'alerts');

  // The emulator revoked generation 1 when it was used; replaying it would revoke the whole
  // family. A new broker process has an empty cache, so it must refresh, and succeeds only
  // with generation 2.
  await h.restartBroker();
  await h.resetCounters();
  const second = await h.cli(['token', '-p', 'alerts']);
  assert.equal(second.code, 0, second.stderr);
  assert.notEqual(second.stdout, first.stdout, 'a new access token after the restart');
  assert.equal((await h.counters()).token_success, 1);
  assert.deepEqual(await h.refreshTokenGenerations(), [3]);
  assert.equal(await accountListGeneration(h), '3');
  const state = await h.emulatorAdmin('GET', '/admin/state');
  assert.equal(state.revoked_refresh_tokens, 2, 'generations 1 and 2 were used once each, never replayed');

  // And once more, to be sure the chain holds.
  await h.restartBroker();
  const third = await h.cli(['token', '-p', 'alerts']);
  assert.equal(third.code, 0, third.stderr);
  assert.deepEqual(await h.refreshTokenGenerations(), [4]);
  assert.equal(h.auditLines().filter((l) => l.event === 'reauth_required').length, 0);
});

test('a rotated refresh token that cannot be stored: the token is still issued, generation 1 is kept, audited', { timeout: 60000 }, async () => {
  // Without capabilities, root cannot write into a directory mode 0555: SoftHSM2's object
  // store then fails C_CreateObject for the new generation.
  const h = await setup({ brokerWrapper: ['setpriv', '--bounding-set=-all', '--inh-caps=-all'] });
  envs.push(h);
  const tokenDirs = fs.readdirSync(h.p('tokens')).map((d) => h.p('tokens', d));
  assert.equal(tokenDirs.length, 1);
  const mode = fs.statSync(tokenDirs[0]).mode & 0o7777;
  fs.chmodSync(tokenDirs[0], 0o555);
  let r;
  try {
    r = await h.cli(['token', '-p', 'alerts']);
  } finally {
    fs.chmodSync(tokenDirs[0], mode);
  }
  assert.equal(r.code, 0, `the access token was obtained, so it is issued: ${r.stderr}`);
  assert.deepEqual(await h.refreshTokenGenerations(), [1], 'generation 1 was not destroyed');
  const events = h.auditLines().map((l) => l.event);
  assert.ok(events.includes('rotation_failed'), `audit events: ${events.join(', ')}`);
  assert.ok(!events.includes('refresh') || h.auditLines().filter((l) => l.event === 'refresh').every((l) => !l.generation));
  assert.match(h.brokerLog(), /error: .*rotated refresh token/);
  // Lenient (Microsoft) rotation keeps generation 1 valid: the next refresh works and rotates.
  await h.restartBroker();
  const again = await h.cli(['token', '-p', 'alerts']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await h.refreshTokenGenerations(), [2]);
});

test('strict rotation: a rotated refresh token the store refused is kept, stored late and used, never the revoked one', { timeout: 60000 }, async () => {
  const h = await setup({ emulator: { rotation: 'strict' }, brokerWrapper: ['setpriv', '--bounding-set=-all', '--inh-caps=-all'] });
  envs.push(h);
  const [tokenDir] = fs.readdirSync(h.p('tokens')).map((d) => h.p('tokens', d));
  const mode = fs.statSync(tokenDir).mode & 0o7777;
  fs.chmodSync(tokenDir, 0o555);
  let r;
  try {
    r = await h.cli(['token', '-p', 'alerts']);
  } finally {
    fs.chmodSync(tokenDir, mode);
  }
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await h.refreshTokenGenerations(), [1], 'the store still has only generation 1');
  // Generation 1 is revoked upstream now. The next refresh must store and send the token kept
  // in memory: sending generation 1 would be a replay, and the server revokes the family.
  const again = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts', min_ttl: 86400 }, 15000);
  assert.equal(again.ok, true, JSON.stringify(again));
  assert.deepEqual(await h.refreshTokenGenerations(), [3], 'stored late as 2, then rotated to 3');
  const events = h.auditLines().map((l) => l.event);
  assert.ok(events.includes('rotation_failed') && events.includes('refresh_token_stored'), events.join(', '));
  assert.ok(!events.includes('reauth_required'), events.join(', '));
});

// Short-lived tokens: one run of requests every 250 ms for 2.25 lifetimes, judged by two tests.
const LIFETIME = 8;
let shortRun = null; // { served: [{ at, token, expiresIn }], upstream }

test('short-lived tokens: clients keep getting unexpired tokens across several lifetimes', { timeout: 90000 }, async () => {
  const h = await setup({ emulator: { tokenLifetime: LIFETIME } });
  envs.push(h);
  const c = await h.rawClient();
  const served = [];
  const start = Date.now();
  try {
    while (Date.now() - start < 2.25 * LIFETIME * 1000) {
      const r = await c.request({ v: 1, op: 'token', profile: 'alerts' }, 15000);
      const at = (Date.now() - start) / 1000;
      assert.equal(r.ok, true, `at ${at}s: ${JSON.stringify(r)}`);
      assert.ok(r.expires_in >= 1 && r.expires_in <= LIFETIME, `expires_in ${r.expires_in} at ${at}s`);
      served.push({ at, token: r.access_token, expiresIn: r.expires_in });
      await sleep(250);
    }
  } finally {
    c.close();
  }
  shortRun = { served, upstream: (await h.counters()).token };
  // A token is never served past its expiry.
  const firstSeen = new Map();
  for (const s of served) if (!firstSeen.has(s.token)) firstSeen.set(s.token, s);
  for (const s of served) {
    const f = firstSeen.get(s.token);
    assert.ok(s.at < f.at + f.expiresIn + 0.5, `token first seen at ${f.at}s (valid ${f.expiresIn}s) served again at ${s.at}s`);
  }
  assert.ok(new Set(served.map((s) => s.token)).size >= 3, 'the token was renewed in every lifetime');
  assert.ok(h.brokerAlive());
});

test('short-lived tokens are cached and refreshed ahead of expiry at ~75% of their lifetime', { timeout: 10000 }, () => {
  assert.ok(shortRun, 'the previous test collected the data');
  const { served, upstream } = shortRun;
  // The first token is served from the cache for a while and replaced before it expires.
  const first = served[0].token;
  const lastOfFirst = served.filter((s) => s.token === first).at(-1).at;
  assert.ok(lastOfFirst >= 0.5 * LIFETIME,
    `the first token was served only until ${lastOfFirst}s, then replaced: a ${LIFETIME}s token is never `
    + `served from the cache (${served.length} requests caused ${upstream} token requests upstream)`);
  assert.ok(lastOfFirst < LIFETIME, `the first token was served until ${lastOfFirst}s`);
  // Refresh ahead means about one upstream request per 75% of the lifetime, not one per request.
  const expected = Math.ceil((2.25 * LIFETIME) / (0.75 * LIFETIME)) + 1;
  assert.ok(upstream <= expected + 1,
    `${served.length} requests caused ${upstream} token requests upstream (expected about ${expected})`);
});
