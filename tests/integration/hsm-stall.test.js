'use strict';
// A token that stops answering (a `p11-kit server` serving SoftHSM2, paused with SIGSTOP) must
// not slow the cached path: store work runs on the broker's store thread, never on the event
// loop and never for a request the cache answers. Requests that need the store are answered
// once it is back, or `unavailable` after STORE_WAIT_SEC (5 s); SIGTERM does not hang on it.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep, waitFor } = require('./harness');

const P11_KIT_CLIENT = process.env.P11_KIT_CLIENT_MODULE || '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const STORE_WAIT_SEC = 5;
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
// More than the cached token's hour of life: such a request always needs a refresh.
const NEEDS_REFRESH = { ...TOKEN, min_ttl: 86400 };

let h;
before(async () => {
  h = await setup({
    importAccount: false,
    startBroker: false,
    config: { pkcs11: { module: P11_KIT_CLIENT } },
    profiles: {
      alerts: { account: 'alerts', rules: ['peer required uid root'] },
      backup: { account: 'backup', rules: ['peer required uid root'] },
    },
  });
  process.env.P11_KIT_SERVER_ADDRESS = await h.startP11KitServer();
  await h.importAccount('alerts', h.canaryRefreshToken);
  const backupToken = `RT-BACKUP-${Date.now()}`;
  await h.registerRefreshToken(backupToken);
  await h.importAccount('backup', backupToken);
  await h.startBroker();
});
after(async () => {
  if (!h) return;
  await h.teardown();
  await h.stopP11KitServer();
});

// n requests one after the other on one connection; every one must be answered with a token.
async function cachedLatencies(client, n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    const r = await client.request(TOKEN, 5000);
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
    assert.equal(r.ok, true, `request ${i}: ${JSON.stringify(r)}`);
  }
  return ms;
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

test('cached tokens keep their latency while a refresh is stuck in a stalled HSM; the refresh completes after SIGCONT', { timeout: 60000 }, async (t) => {
  const warm = await h.rawRequest(TOKEN, 15000);
  assert.equal(warm.ok, true, JSON.stringify(warm));
  const client = await h.rawClient();
  const waiting = await h.rawClient();
  try {
    const before = await cachedLatencies(client, 200);

    h.pauseP11KitServer();
    // A request the cache cannot answer: its refresh token read is now stuck in the token.
    const stuckStart = Date.now();
    const stuck = waiting.request(NEEDS_REFRESH, 20000);
    await sleep(100);
    const during = await cachedLatencies(client, 200);
    const stallMs = Date.now() - stuckStart;

    const p = (v) => `p50 ${percentile(v, 50).toFixed(2)} ms, p99 ${percentile(v, 99).toFixed(2)} ms, max ${Math.max(...v).toFixed(2)} ms`;
    t.diagnostic(`200 cached requests before the stall: ${p(before)}`);
    t.diagnostic(`200 cached requests during the stall: ${p(during)} (all within ${stallMs} ms of the stall)`);
    assert.ok(stallMs < STORE_WAIT_SEC * 1000, 'the 200 requests ran while the refresh was still stuck');
    // A loop blocked by the stalled token answers in seconds; a loaded machine adds tens of ms to
    // the two slowest of 200 samples now and then.
    assert.ok(percentile(during, 99) <= Math.max(5 * percentile(before, 99), percentile(before, 99) + 50),
      `p99 during the stall ${percentile(during, 99)} ms vs ${percentile(before, 99)} ms before`);

    // The request that needs the store is answered after STORE_WAIT_SEC, not left hanging.
    const answer = await stuck;
    const waited = (Date.now() - stuckStart) / 1000;
    assert.equal(answer.ok, false, JSON.stringify(answer));
    assert.equal(answer.error, 'unavailable');
    assert.ok(answer.retry_after >= 1, JSON.stringify(answer));
    assert.ok(waited >= STORE_WAIT_SEC - 0.5 && waited < STORE_WAIT_SEC + 3, `answered after ${waited} s`);

    // Another request waits on the same stuck read; once the HSM is back, the read completes,
    // the refresh goes upstream, and the request gets a new token.
    await h.resetCounters();
    const next = waiting.request(NEEDS_REFRESH, 20000);
    await sleep(1000);
    h.resumeP11KitServer();
    const fresh = await next;
    assert.equal(fresh.ok, true, JSON.stringify(fresh));
    assert.notEqual(fresh.access_token, warm.access_token, 'a refreshed token');
    assert.equal((await h.counters()).token_success, 1, 'one refresh, upstream once');
    assert.ok(h.brokerAlive());
  } finally {
    h.resumeP11KitServer();
    client.close();
    waiting.close();
  }
});

test('an account first used while the HSM is stalled: unavailable after the bounded wait, a reload meanwhile is harmless, works after SIGCONT', { timeout: 60000 }, async () => {
  const BACKUP = { v: 1, op: 'token', profile: 'backup' };
  const first = await h.rawClient();
  const second = await h.rawClient();
  h.pauseP11KitServer();
  try {
    // Its metadata read is now stuck in the token.
    const start = Date.now();
    const stuck = first.request(BACKUP, 20000);
    await sleep(200);
    // A reload forgets idle accounts; this one is not idle, its read is outstanding, and must
    // not be freed under it. (A reload also forgets alerts, whose next request then re-reads
    // its metadata: during a stall that request waits like this one; see docs/fleet.md.)
    assert.equal(await h.reloadBroker(), 'reloaded');
    const answer = await stuck;
    const waited = (Date.now() - start) / 1000;
    assert.equal(answer.error, 'unavailable', JSON.stringify(answer));
    assert.ok(answer.retry_after >= 1);
    assert.ok(waited >= STORE_WAIT_SEC - 0.5 && waited < STORE_WAIT_SEC + 3, `answered after ${waited} s`);

    const next = second.request(BACKUP, 20000);
    await sleep(500);
    h.resumeP11KitServer();
    const r = await next;
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.account, 'backup');
  } finally {
    h.resumeP11KitServer();
    first.close();
    second.close();
  }
  assert.ok(h.brokerAlive());
});

test('SIGTERM while the HSM is stalled: the broker exits within its bounded wait', { timeout: 60000 }, async () => {
  const warm = await h.rawRequest(TOKEN, 15000);
  assert.equal(warm.ok, true, JSON.stringify(warm));
  const waiting = await h.rawClient();
  h.pauseP11KitServer();
  try {
    void waiting.request(NEEDS_REFRESH, 30000).catch(() => {});
    await sleep(300);
    const start = Date.now();
    const { code, signal, stderr } = await h.stopBroker({ timeoutMs: 30000 });
    const took = (Date.now() - start) / 1000;
    assert.equal(signal, null, 'not killed');
    assert.equal(code, 0);
    assert.ok(took < 10, `exited after ${took} s`);
    assert.match(stderr, /credential store has not answered/);
  } finally {
    waiting.close();
    h.resumeP11KitServer();
  }
  // Back to normal: a new broker works through the same server.
  await h.startBroker();
  await waitFor('a token', async () => (await h.rawRequest(TOKEN, 15000)).ok, { timeoutMs: 15000 });
});
