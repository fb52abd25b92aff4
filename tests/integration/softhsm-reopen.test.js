'use strict';
// SoftHSM2 keeps about 870 bytes for every object destroyed through it until it is finalized,
// and every refresh destroys a refresh-token generation (objects) or a counter shard version
// (wrapped). The broker's store worker finalizes it and opens the token again between jobs after
// [pkcs11] softhsm_reopen_after destroyed objects (pkcs11/store.h, store_reopen_if_due()); the
// unit test test-store-session checks the memory, this one that the broker does it and keeps
// answering. pkcs11-spy between the broker and SoftHSM2 counts the calls (test tokens only: it
// logs PINs).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup } = require('./harness');

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
const REFRESHES = 12;

let h;
let spyCalls;
before(async () => {
  h = await setup({ startBroker: false });
  spyCalls = h.spyOnPkcs11({ softhsm_reopen_after: 3 });
  await h.startBroker();
});
after(() => h && h.teardown());
const count = (calls, name) => calls.filter((c) => c === name).length;

test(`${REFRESHES} forced refreshes: the token is opened again every 3 destroyed objects`, { timeout: 60000 }, async (t) => {
  const first = await h.rawRequest(TOKEN, 15000);
  assert.equal(first.ok, true, JSON.stringify(first));
  const start = spyCalls().length;
  for (let i = 0; i < REFRESHES; i++) {
    const r = await h.rawRequest({ ...TOKEN, min_ttl: 86400 }, 15000);
    assert.equal(r.ok, true, `refresh ${i}: ${JSON.stringify(r)}`);
  }
  const calls = spyCalls().slice(start);
  const destroyed = count(calls, 'C_DestroyObject');
  const finalized = count(calls, 'C_Finalize');
  t.diagnostic(`${destroyed} objects destroyed, ${finalized} reopens (${count(calls, 'C_Login')} logins)`);
  assert.ok(destroyed >= REFRESHES, `${destroyed} objects destroyed`);
  // One reopen per 3 destroyed objects, each the whole way: finalize, initialize, log in.
  assert.ok(finalized >= Math.floor(destroyed / 3) - 1 && finalized <= Math.ceil(destroyed / 3),
    `${finalized} reopens for ${destroyed} destroyed objects`);
  assert.equal(count(calls, 'C_Initialize'), finalized);
  assert.equal(count(calls, 'C_Login'), finalized);
});

test('after the reopens a cached token and another refresh are answered', { timeout: 30000 }, async () => {
  const cached = await h.rawRequest(TOKEN, 5000);
  assert.equal(cached.ok, true, JSON.stringify(cached));
  const refreshed = await h.rawRequest({ ...TOKEN, min_ttl: 86400 }, 15000);
  assert.equal(refreshed.ok, true, JSON.stringify(refreshed));
  assert.doesNotMatch(h.brokerLog(), /Cannot open token|Lost the session/);
});
