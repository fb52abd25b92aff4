'use strict';
// Single flight (reliability.md P2): 500 clients at once on a cold account (nothing cached, not
// even its metadata) and on one whose token has expired → exactly one token request upstream,
// and all 500 get the token it brought. The emulator delays that request so that every client
// is waiting on it. Clients come from three uids, with the per-uid connection cap (P12, 64 by
// default) raised above each uid's share: this test is about single flight, not that cap.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep, MAIL_SEND } = require('./harness');

const CLIENTS = 500;
const LIFETIME = 4; // seconds: the emulator's access-token lifetime for the expiry case
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

let h;
before(async () => {
  h = await setup({
    profiles: { alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root daemon nobody'] } },
    config: { broker: { max_connections_per_uid: 256 } },
  });
});
after(() => h && h.teardown());

function assertOneFlight(summary, counters, what) {
  assert.equal(summary.replies, CLIENTS, `${what}: every client got a reply`);
  assert.deepEqual(summary.errors, {}, `${what}: no client got an error`);
  assert.equal(summary.ok, CLIENTS, `${what}: every client got a token`);
  assert.equal(summary.tokens.length, 1, `${what}: all got the same token`);
  assert.equal(counters.token, 1, `${what}: exactly one token request upstream`);
  assert.equal(counters.token_success, 1);
}

test(`${CLIENTS} clients on a cold account: one token request, ${CLIENTS} tokens`, { timeout: 90000 }, async () => {
  await h.restartBroker();
  await h.resetCounters();
  await h.addFault({ endpoint: 'token', mode: 'latency', delay_ms: 1500 });
  const summary = await h.flood(TOKEN, CLIENTS);
  assertOneFlight(summary, await h.counters(), 'cold');
  assert.ok(h.brokerAlive());
});

test(`${CLIENTS} clients on an expired token: one token request, ${CLIENTS} tokens`, { timeout: 90000 }, async () => {
  await h.emulatorAdmin('POST', '/admin/config', { token_lifetime: LIFETIME });
  try {
    await h.restartBroker();
    const first = await h.rawRequest(TOKEN);
    assert.equal(first.ok, true, JSON.stringify(first));
    assert.ok(first.expires_in <= LIFETIME, `expires_in ${first.expires_in}`);
    await sleep((LIFETIME + 1) * 1000); // expired in the cache now
    await h.resetCounters();
    await h.addFault({ endpoint: 'token', mode: 'latency', delay_ms: 1500 });
    const summary = await h.flood(TOKEN, CLIENTS);
    assertOneFlight(summary, await h.counters(), 'expired');
    assert.ok(!summary.tokens.includes(first.access_token), 'not the expired token');
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { token_lifetime: 3599 });
  }
});
