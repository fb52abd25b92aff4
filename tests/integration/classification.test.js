'use strict';
// Every class of token-endpoint failure (microsoft-identity.md's table, design §5), against a
// lenient (Microsoft) and a strict (OAuth 2.1) rotating server: transient failures answer
// `unavailable` with a bounded retry_after and no retry storm; reauth and config failures park
// the account (`reauth_required`), are audited once and never retried. Table-driven: one row per
// fault the emulator injects. (upstream.test.js covers recovery after each transient fault.)
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup } = require('./harness');

const TIMEOUT = 2; // [identity] timeout, seconds: the hang row waits this long
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

function httpDateIn(seconds) {
  return new Date(Date.now() + seconds * 1000).toUTCString();
}

// retryAfter: [min, max] the reply's retry_after must lie in (the server's Retry-After, less
// the second that may pass, or the first backoff step of 1 s).
const TRANSIENT = [
  { name: '500', fault: { mode: 'status', status: 500 }, retryAfter: [1, 1] },
  { name: '503 with Retry-After 5', fault: { mode: 'status', status: 503, retry_after: 5 }, retryAfter: [4, 6] },
  { name: '429 with Retry-After 7 (seconds)', fault: { mode: 'status', status: 429, retry_after: 7 }, retryAfter: [6, 8] },
  { name: '429 with Retry-After as an HTTP date', fault: () => ({ mode: 'status', status: 429, retry_after: httpDateIn(9) }), retryAfter: [6, 10] },
  { name: '503 with Retry-After of two days (bounded to an hour)', fault: { mode: 'status', status: 503, retry_after: 172800 }, retryAfter: [3599, 3600] },
  { name: '400 temporarily_unavailable', fault: { mode: 'status', status: 400, error: 'temporarily_unavailable' }, retryAfter: [1, 1] },
  { name: 'connection reset', fault: { mode: 'reset' }, retryAfter: [1, 1] },
  { name: 'hang until the timeout', fault: { mode: 'hang' }, retryAfter: [1, 1] },
  { name: 'truncated body', fault: { mode: 'truncate' }, retryAfter: [1, 1] },
  { name: 'huge body', fault: { mode: 'huge' }, retryAfter: [1, 1] },
  { name: 'non-JSON (HTML) 502', fault: { mode: 'html', status: 502 }, retryAfter: [1, 1] },
  { name: 'non-JSON (HTML) 200', fault: { mode: 'html', status: 200 }, retryAfter: [1, 1] },
];

const REAUTH = [700082, 50076, 70008, 50173];

// guidance: what the log must tell the administrator to change (broker/idp/aadsts.c).
const CONFIG = [
  { code: 7000218, guidance: /Allow public client flows/ },
  { code: 65001, guidance: /grant admin consent/ },
  { code: 700016, guidance: /application not found in the tenant: check the account's client id/ },
  { code: 7000215, guidance: /add a new secret/ },
  { code: 90002, guidance: /tenant not found/ },
];

const harnesses = [];
after(async () => {
  for (const h of harnesses) await h.teardown();
});

for (const rotation of ['lenient', 'strict']) {
  let h;
  const suite = `${rotation} rotation`;

  // A broker with an empty cache and no backoff or parked account, a good refresh token, an
  // emulator with no queued faults.
  async function fresh() {
    await h.clearFaults();
    await h.stopBroker();
    const rt = `RT-CANARY-CLASS-${rotation}-${Date.now()}-${Math.random().toString(16).slice(2)}`;
    await h.registerRefreshToken(rt);
    await h.importAccount('alerts', rt);
    await h.startBroker();
    await h.resetCounters();
  }

  test(`${suite}: set up`, { timeout: 60000 }, async () => {
    h = await setup({
      emulator: { rotation },
      config: { identity: { timeout: TIMEOUT, connect_timeout: TIMEOUT } },
    });
    harnesses.push(h);
  });

  for (const row of TRANSIENT) {
    test(`${suite}: transient, ${row.name} → unavailable with retry_after, no retry during the backoff`, { timeout: 30000 }, async () => {
      await fresh();
      await h.addFault({ endpoint: 'token', ...(typeof row.fault === 'function' ? row.fault() : row.fault) });
      const reply = await h.rawRequest(TOKEN, 20000);
      assert.equal(reply.ok, false, JSON.stringify(reply));
      assert.equal(reply.error, 'unavailable', JSON.stringify(reply));
      assert.equal(reply.access_token, undefined);
      const [lo, hi] = row.retryAfter;
      assert.ok(reply.retry_after >= lo && reply.retry_after <= hi,
        `retry_after ${reply.retry_after}, expected ${lo}..${hi}`);
      const again = await h.rawRequest(TOKEN);
      if (row.retryAfter[0] > 1) {
        assert.equal(again.error, 'unavailable', 'still backing off');
        assert.equal((await h.counters()).token, 1, 'no request upstream during the backoff');
      }
      assert.ok(h.brokerAlive());
      assert.equal(h.auditLines().filter((l) => l.event === 'reauth_required' || l.event === 'needs_config').length, 0,
        'a transient failure never parks the account');
    });
  }

  test(`${suite}: transient failure with a valid cached token → the cached token is served, not unavailable`, { timeout: 30000 }, async () => {
    await fresh();
    const warm = await h.rawRequest(TOKEN);
    assert.equal(warm.ok, true, JSON.stringify(warm));
    // A min_ttl the cached token cannot meet forces a refresh, which fails; a request it meets
    // is still served from the cache meanwhile and afterwards.
    await h.addFault({ endpoint: 'token', mode: 'status', status: 503, retry_after: 30 });
    const forced = await h.rawRequest({ ...TOKEN, min_ttl: 86400 });
    assert.equal(forced.error, 'unavailable', JSON.stringify(forced));
    const plain = await h.rawRequest(TOKEN);
    assert.equal(plain.ok, true, JSON.stringify(plain));
    assert.equal(plain.access_token, warm.access_token);
    assert.equal((await h.counters()).token, 2, 'one refresh, one failed refresh');
  });

  for (const code of REAUTH) {
    test(`${suite}: reauth, AADSTS${code} → reauth_required, audited once, never retried`, { timeout: 30000 }, async () => {
      await fresh();
      await h.addFault({ endpoint: 'token', mode: 'status', error_code: code });
      const auditBefore = h.auditLines().length;
      for (let i = 0; i < 3; i++) {
        const reply = await h.rawRequest(TOKEN);
        assert.equal(reply.ok, false);
        assert.equal(reply.error, 'reauth_required', JSON.stringify(reply));
        assert.match(reply.message, /signed in again/);
        assert.equal(reply.retry_after, undefined);
      }
      assert.equal((await h.counters()).token, 1, 'one request upstream, no retry loop');
      const events = h.auditLines().slice(auditBefore).filter((l) => l.event === 'reauth_required');
      assert.equal(events.length, 1, 'one reauth_required audit record');
      assert.match(events[0].error, new RegExp(`AADSTS${code}`));
    });
  }

  for (const row of CONFIG) {
    test(`${suite}: config, AADSTS${row.code} → reauth_required, needs_config audited with what to change`, { timeout: 30000 }, async () => {
      await fresh();
      await h.addFault({ endpoint: 'token', mode: 'status', error_code: row.code });
      const auditBefore = h.auditLines().length;
      for (let i = 0; i < 3; i++) {
        const reply = await h.rawRequest(TOKEN);
        assert.equal(reply.error, 'reauth_required', JSON.stringify(reply));
        assert.match(reply.message, /configuration must be fixed/);
      }
      assert.equal((await h.counters()).token, 1, 'one request upstream, no retry loop');
      const events = h.auditLines().slice(auditBefore).filter((l) => l.event === 'needs_config');
      assert.equal(events.length, 1, 'one needs_config audit record');
      assert.match(events[0].error, new RegExp(`AADSTS${row.code}`));
      assert.match(events[0].error, row.guidance);
      assert.match(h.brokerLog(), row.guidance, 'the log says what to change');
    });
  }

}
