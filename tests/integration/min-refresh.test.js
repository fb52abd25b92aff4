'use strict';
// Issue 9 item 5: a request's min_ttl cannot make the broker ask upstream more than once per
// account per [identity] min_refresh_interval (default 60 s), whatever mix of scope sets,
// min_ttl values and connections a client uses. A min_ttl the provider never grants is capped
// to the token's lifetime: the reply carries the token's real expires_in.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep, MAIL_SEND } = require('./harness');

const USER_READ = 'https://graph.microsoft.com/User.Read';
const LIFETIME = 3599; // the emulator's access-token lifetime
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

let h;
before(async () => {
  h = await setup({
    refreshTokenScopes: [MAIL_SEND, USER_READ],
    profiles: {
      alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
      multi: { account: 'alerts', scopes: [MAIL_SEND, USER_READ], rules: ['peer sufficient uid root'] },
    },
  });
});
after(() => h && h.teardown());

// The harness turns the bound off for the tests that force refreshes; here it is what is tested.
function writeInterval(seconds) {
  const sections = h.configSections();
  if (seconds === undefined) delete sections.identity.min_refresh_interval;
  else sections.identity.min_refresh_interval = seconds;
  h.writeConfig(sections);
}

// Sends the requests over `connections` connections, each one request after another.
async function sendAll(requests, connections) {
  const clients = await Promise.all(Array.from({ length: connections }, () => h.rawClient()));
  const replies = [];
  try {
    await Promise.all(clients.map(async (c, i) => {
      for (let k = i; k < requests.length; k += connections) replies[k] = await c.request(requests[k], 15000);
    }));
  } finally {
    for (const c of clients) c.close();
  }
  return replies;
}

function assertServed(replies) {
  for (const [i, r] of replies.entries()) {
    assert.equal(r.ok, true, `request ${i}: ${JSON.stringify(r)}`);
    assert.ok(r.expires_in <= LIFETIME, `request ${i}: expires_in ${r.expires_in} is the token's real one`);
    assert.ok(r.expires_in >= LIFETIME - 60, `request ${i}: expires_in ${r.expires_in}`);
  }
}

test('default interval: 200 requests with min_ttl 86400 make at most 1 upstream request', { timeout: 60000 }, async (t) => {
  writeInterval(undefined);
  try {
    await h.restartBroker();
    const warm = await h.rawRequest(TOKEN);
    assert.equal(warm.ok, true, JSON.stringify(warm));
    await h.resetCounters();
    const replies = await sendAll(Array.from({ length: 200 }, () => ({ ...TOKEN, min_ttl: 86400 })), 8);
    assertServed(replies);
    const c = await h.counters();
    t.diagnostic(`200 requests with min_ttl 86400: ${c.token} upstream token requests`);
    assert.ok(c.token <= 1, `${c.token} upstream token requests for 200 min_ttl requests`);
  } finally {
    writeInterval(0);
  }
});

test('the bound is per account: scope sets, min_ttl values and connections mixed', { timeout: 60000 }, async (t) => {
  const INTERVAL = 4;
  writeInterval(INTERVAL);
  try {
    await h.restartBroker();
    const sets = [[MAIL_SEND], [USER_READ], [MAIL_SEND, USER_READ]];
    for (const scopes of sets) {
      const r = await h.rawRequest({ v: 1, op: 'token', profile: 'multi', scopes });
      assert.equal(r.ok, true, JSON.stringify(r));
    }
    // Every cached token is older than the interval now: one forced refresh may go upstream.
    await sleep((INTERVAL + 1) * 1000);
    await h.resetCounters();
    const ttls = [86400, LIFETIME, 3000, 86400, LIFETIME - 1];
    const requests = Array.from({ length: 300 }, (_, i) => ({
      v: 1, op: 'token', profile: 'multi', scopes: sets[i % sets.length], min_ttl: ttls[i % ttls.length],
    }));
    const started = Date.now();
    const replies = await sendAll(requests, 12);
    const elapsed = (Date.now() - started) / 1000;
    assertServed(replies);
    const c = await h.counters();
    const allowed = 1 + Math.floor(elapsed / INTERVAL);
    t.diagnostic(`300 mixed requests in ${elapsed.toFixed(2)} s: ${c.token} upstream token requests (allowed ${allowed})`);
    assert.ok(c.token >= 1, 'the interval had passed: the first forced refresh went upstream');
    assert.ok(c.token <= allowed, `${c.token} upstream token requests in ${elapsed} s`);
  } finally {
    writeInterval(0);
  }
});

test('min_refresh_interval = 0 turns the bound off: each unmet min_ttl refreshes', { timeout: 60000 }, async () => {
  writeInterval(0);
  await h.restartBroker();
  assert.equal((await h.rawRequest(TOKEN)).ok, true);
  await sleep(1100);
  await h.resetCounters();
  const replies = await sendAll(Array.from({ length: 3 }, () => ({ ...TOKEN, min_ttl: 86400 })), 1);
  assertServed(replies);
  assert.equal((await h.counters()).token, 3);
});

test('min_refresh_interval out of range: the broker refuses to start, naming the key', { timeout: 30000 }, async () => {
  writeInterval(3601);
  try {
    await h.stopBroker();
    await assert.rejects(h.startBroker({ timeoutMs: 5000 }), /min_refresh_interval/);
  } finally {
    writeInterval(0);
    if (!h.brokerAlive()) await h.startBroker();
  }
});
