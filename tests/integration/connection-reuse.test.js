'use strict';
// The token endpoint's connection is kept across refreshes (issue 14 item 4): N refreshes one
// after another cost one TLS handshake, not N, counted by the emulator ('secureConnection'
// events). And a kept connection the server has closed meanwhile (Node's keep-alive timeout,
// 5 s, closed after about 6) costs nothing but a new handshake: the next refresh succeeds.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(() => h && h.teardown());

const REFRESH = { v: 1, op: 'token', profile: 'alerts', min_ttl: 86400 };
const N = 20;

async function refreshes(c, n) {
  for (let i = 0; i < n; i++) {
    const r = await c.request(REFRESH, 15000);
    assert.equal(r.ok, true, JSON.stringify(r));
  }
}

test(`${N} refreshes one after another: at most two TLS handshakes`, { timeout: 60000 }, async () => {
  const c = await h.rawClient();
  try {
    await refreshes(c, 1); // the first connection and handshake
    await h.resetCounters();
    await refreshes(c, N);
  } finally {
    c.close();
  }
  const counters = await h.counters();
  assert.equal(counters.token, N, 'every request with min_ttl went upstream');
  assert.ok(counters.tls_sessions <= 2, `${counters.tls_sessions} TLS handshakes for ${N} refreshes`);
  assert.equal(counters.https_requests, N);
});

test('a kept connection the emulator closed: the next refresh opens a new one', { timeout: 60000 }, async () => {
  const c = await h.rawClient();
  try {
    await refreshes(c, 1);
    await h.resetCounters();
    await sleep(7000); // past the emulator's keep-alive timeout (Node: 5 s, closed a little later)
    await refreshes(c, 3);
  } finally {
    c.close();
  }
  const counters = await h.counters();
  assert.equal(counters.token, 3);
  assert.equal(counters.token_errors, 0);
  assert.equal(counters.tls_sessions, 1, 'one new connection, then kept');
});
