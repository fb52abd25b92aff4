'use strict';
// Keep-alive (design §5): a delegated account whose refresh token was stored more than
// [identity] keepalive_days ago is refreshed without any client asking, so Microsoft's 90-day
// inactivity limit never bites; a fresh one is left alone.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep, waitFor, MAIL_SEND } = require('./harness');

let h;
before(async () => {
  h = await setup({ emulator: { rotation: 'strict' } });
});
after(() => h && h.teardown());

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

// With keepalive_days > 0 the first check waits a minute after start (broker/keepalive.c), so
// that start-up's first tokens are not slowed by its scan of the token.
test('default keepalive_days: no token request at start', { timeout: 30000 }, async () => {
  await h.resetCounters();
  await h.restartBroker();
  await sleep(1500);
  assert.equal((await h.counters()).token, 0, 'no token request without a client');
  assert.deepEqual(await h.refreshTokenGenerations(), [1]);
});

test('keepalive_days = 0: every account is refreshed at start, once, and clients are served from that token', { timeout: 60000 }, async () => {
  const sections = h.configSections();
  sections.identity.keepalive_days = 0;
  h.writeConfig(sections);
  try {
    await h.resetCounters();
    const auditBefore = h.auditLines().length;
    await h.restartBroker();
    // Its audit record is written once the store job is done (the new generation read back, the
    // old one destroyed); generation 2 shows in the token before that.
    await waitFor('the keep-alive refresh', () => h.auditLines().slice(auditBefore).some((l) => l.event === 'refresh'),
      { timeoutMs: 15000, intervalMs: 100 });
    const c = await h.counters();
    assert.equal(c.token, 1, 'one token request, made by the keep-alive');
    assert.equal(c.token_success, 1);
    assert.deepEqual(await h.refreshTokenGenerations(), [2], 'the rotated refresh token replaced the old one');
    const refresh = h.auditLines().slice(auditBefore).filter((l) => l.event === 'refresh');
    assert.equal(refresh.length, 1, 'the keep-alive refresh is audited');
    assert.equal(refresh[0].account, 'alerts');
    assert.match(h.brokerLog(), /Account alerts: refresh token unused for 0 days or more; refreshing it/);

    // The access token it brought is in the cache: a client needs no request upstream.
    const reply = await h.rawRequest(TOKEN);
    assert.equal(reply.ok, true, JSON.stringify(reply));
    assert.equal((await h.counters()).token, 1, 'the client was served from the keep-alive token');

    // Strict rotation: a second start refreshes with generation 2, never replays 1.
    await h.restartBroker();
    await waitFor('the second keep-alive refresh', async () => (await h.refreshTokenGenerations()).includes(3),
      { timeoutMs: 15000, intervalMs: 100 });
    const state = await h.emulatorAdmin('GET', '/admin/state');
    assert.equal(state.revoked_refresh_tokens, 2, 'generations 1 and 2 used once each, no replay');
    assert.equal(h.auditLines().filter((l) => l.event === 'reauth_required').length, 0);
  } finally {
    h.writeConfig();
  }
});

// A check that runs after a client loaded the account (CREDBROKER_TEST_KEEPALIVE_DELAY_MS, a
// test-build hook, delays the first check): a loaded account is kept alive like any other.
test('keep-alive refreshes an account that a client has already loaded', {
  timeout: 60000,
  skip: process.env.CREDBROKER_FAULT_POINTS === '1' ? false : 'needs -Dfault_points=true',
}, async () => {
  // Long enough for the client's first token (a store read, a refresh upstream, a store write)
  // to come first, also under AddressSanitizer on a loaded machine.
  const DELAY_MS = process.env.CREDBROKER_SANITIZE === '1' ? 9000 : 3000;
  const sections = h.configSections();
  sections.identity.keepalive_days = 0;
  h.writeConfig(sections);
  h.opts.brokerEnv = { CREDBROKER_TEST_KEEPALIVE_DELAY_MS: String(DELAY_MS) };
  try {
    await h.restartBroker();
    const started = Date.now();
    await h.resetCounters();
    const reply = await h.rawRequest(TOKEN);
    assert.equal(reply.ok, true, JSON.stringify(reply));
    assert.ok(Date.now() - started < DELAY_MS - 500, 'the client came before the check');
    const [loaded] = await h.refreshTokenGenerations();
    assert.equal((await h.counters()).token, 1, 'the client\'s refresh');
    await waitFor('the keep-alive refresh of the loaded account',
      async () => (await h.refreshTokenGenerations()).includes(loaded + 1),
      { timeoutMs: DELAY_MS + 10000, intervalMs: 100 });
    assert.deepEqual(await h.refreshTokenGenerations(), [loaded + 1]);
    assert.equal((await h.counters()).token, 2, 'one more token request, the keep-alive\'s');
    assert.match(h.brokerLog(), /Account alerts: refresh token unused for 0 days or more; refreshing it/);
    assert.equal(h.auditLines().filter((l) => l.event === 'reauth_required').length, 0);
  } finally {
    h.opts.brokerEnv = {};
    h.writeConfig();
  }
});

// An account whose refresh token this run stored within keepalive_days is fresh: the check
// takes it as such without asking the store, which would read (wrapped: unseal) its refresh token,
// an HSM call per account every hour (keepalive.c, drop_stored_since_cutoff()).
test('keep-alive skips an account whose refresh token this run stored', {
  timeout: 60000,
  skip: process.env.CREDBROKER_FAULT_POINTS === '1' ? false : 'needs -Dfault_points=true',
}, async () => {
  const DELAY_MS = process.env.CREDBROKER_SANITIZE === '1' ? 9000 : 3000;
  const sections = h.configSections();
  sections.identity.keepalive_days = 1;
  h.writeConfig(sections);
  h.opts.brokerEnv = { CREDBROKER_TEST_KEEPALIVE_DELAY_MS: String(DELAY_MS) };
  try {
    await h.restartBroker();
    await h.resetCounters();
    const reply = await h.rawRequest(TOKEN);
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const check = /Keep-alive check: (\d+) account\(s\), (\d+) with a refresh token this run stored within 1 days; (\d+) to look up in the store/;
    const line = await waitFor('the keep-alive check', () => h.brokerLog().match(check),
      { timeoutMs: DELAY_MS + 10000, intervalMs: 100 });
    assert.deepEqual(line.slice(1, 4).map(Number), [1, 1, 0], line[0]);
    await sleep(500);
    assert.equal((await h.counters()).token, 1, 'the client\'s refresh only');
  } finally {
    h.opts.brokerEnv = {};
    h.writeConfig();
  }
});

test('keep-alive of an account that needs an administrator: no retry loop', { timeout: 60000 }, async () => {
  const sections = h.configSections();
  sections.identity.keepalive_days = 0;
  h.writeConfig(sections);
  try {
    await h.emulatorAdmin('POST', '/admin/refresh-tokens/revoke', { user: 'alerts@contoso.com' });
    await h.resetCounters();
    await h.restartBroker();
    await waitFor('the keep-alive refresh to fail', async () => (await h.counters()).token >= 1,
      { timeoutMs: 15000, intervalMs: 100 });
    await sleep(1500);
    assert.equal((await h.counters()).token, 1, 'tried once');
    const reply = await h.rawRequest(TOKEN);
    assert.equal(reply.error, 'reauth_required', JSON.stringify(reply));
    assert.equal((await h.counters()).token, 1, 'and not again for a client');
  } finally {
    h.writeConfig();
  }
});

// The check runs in store jobs of a few accounts each (keepalive.c, KEEPALIVE_BATCH 16), so that
// a client's first token never waits behind a check of every account: 40 accounts are three
// batches, and every one of them is kept alive.
test('keepalive_days = 0 with 40 accounts: the check goes through every batch', { timeout: 120000 }, async () => {
  const N = 40;
  const name = (i) => `keep${String(i).padStart(2, '0')}`;
  const profiles = {};
  for (let i = 0; i < N; i++) profiles[name(i)] = { account: name(i), scopes: [MAIL_SEND] };
  const many = await setup({ importAccount: false, startBroker: false, profiles,
    config: { identity: { keepalive_days: '0' } } });
  try {
    for (let i = 0; i < N; i++) {
      await many.registerRefreshToken(`RT-KEEP-${name(i)}`);
      await many.importAccount(name(i), `RT-KEEP-${name(i)}`);
    }
    await many.startBroker();
    await waitFor('every keep-alive refresh', async () => (await many.counters()).token_success === N,
      { timeoutMs: 60000, intervalMs: 200 });
    // Each rotated refresh token is stored after its answer came: the audit records say when all are.
    await waitFor('every refresh stored', () => many.auditLines().filter((l) => l.event === 'refresh').length === N,
      { timeoutMs: 60000, intervalMs: 200 });
    const kept = many.brokerLog().match(/refresh token unused for 0 days or more; refreshing it/g) || [];
    assert.equal(kept.length, N, 'each account once');
    for (const i of [0, 15, 16, 31, 32, N - 1]) {
      assert.deepEqual(await many.refreshTokenGenerations(name(i)), [2], `${name(i)} rotated`);
    }
  } finally {
    await many.teardown();
  }
});
