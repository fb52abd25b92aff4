'use strict';
// Counts the broker's PKCS#11 calls with OpenSC's pkcs11-spy.so between the broker and SoftHSM2:
// a cached issuance makes none (the token is never on the cached path), and a refresh makes a
// small, fixed number, with either credential store (meson runs this file once more with
// CREDBROKER_TEST_STORE=wrapped). Figures for docs/benchmark.md come from tests/bench/scale and
// tests/bench/pkcs11-calls.
// pkcs11-spy logs every argument, PINs and object values included: test tokens only.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup } = require('./harness');

// [pkcs11] store, as the harness chooses it (meson runs this file with both).
const WRAPPED = (process.env.CREDBROKER_TEST_STORE || 'objects') === 'wrapped';

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
const CACHED_ISSUANCES = 500;

let h;
let spyCalls;
before(async () => {
  // The account is imported straight into SoftHSM2; only the broker goes through the spy.
  h = await setup({ startBroker: false });
  // Other accounts' objects in the token must not make alerts' refresh dearer: after the first
  // scan the store looks alerts' generation up by its exact label (store-refresh-token.c).
  for (let i = 0; i < 20; i++) await h.importAccount(`other${i}`, `0.OTHER${i}-refresh-token`);
  spyCalls = h.spyOnPkcs11();
  await h.startBroker();
});
after(() => h && h.teardown());

test('the broker loaded its module through pkcs11-spy', () => {
  assert.ok(spyCalls().includes('C_Login'), 'the spy saw the login');
});

let afterFirst;
test('the first token: metadata and refresh token read, rotated token stored', { timeout: 30000 }, async (t) => {
  const before = spyCalls().length;
  const r = await h.rawRequest(TOKEN, 15000);
  assert.equal(r.ok, true, JSON.stringify(r));
  afterFirst = spyCalls();
  const calls = afterFirst.slice(before);
  t.diagnostic(`first token: ${calls.length} PKCS#11 calls`);
  assert.ok(calls.includes('C_CreateObject'), 'the rotated refresh token was written');
  // objects: the first read scans every data object's label (42 here), the one O(objects) step;
  // wrapped: the account's sealed file and its counter shard, 46 calls.
  assert.ok(calls.length < (WRAPPED ? 50 : 120), `${calls.length} calls`);
});

test(`${CACHED_ISSUANCES} cached issuances make no PKCS#11 call at all`, { timeout: 30000 }, async (t) => {
  const before = spyCalls().length;
  const c = await h.rawClient();
  try {
    for (let i = 0; i < CACHED_ISSUANCES; i++) {
      const r = await c.request(TOKEN, 5000);
      assert.equal(r.ok, true, `issuance ${i}: ${JSON.stringify(r)}`);
    }
  } finally {
    c.close();
  }
  const calls = spyCalls().slice(before);
  t.diagnostic(`${CACHED_ISSUANCES} cached issuances: ${calls.length} PKCS#11 calls`);
  assert.deepEqual(calls, []);
});

test('a refresh with rotation: a bounded number of calls, read then write', { timeout: 30000 }, async (t) => {
  const before = spyCalls().length;
  const r = await h.rawRequest({ ...TOKEN, min_ttl: 86400 }, 15000);
  assert.equal(r.ok, true, JSON.stringify(r));
  const calls = spyCalls().slice(before);
  // No search at all: the loaded account's objects are checked by their labels. Everything
  // before the write's C_CreateObject is the read, the refresh marker and the write's look-up.
  const write = calls.indexOf('C_CreateObject');
  assert.ok(write > 0, calls.join(' '));
  t.diagnostic(`refresh: ${calls.length} calls (read ${write}, write ${calls.length - write}): ${calls.join(' ')}`);
  const count = (name) => calls.filter((c) => c === name).length;
  assert.equal(count('C_Login'), 0, 'no login per refresh');
  if (WRAPPED) {
    // The refresh marker set and the counter moved: each writes its counter shard's next version
    // and destroys the last (pkcs11/store-wrapped-counter.c).
    assert.equal(count('C_CreateObject'), 2, calls.join(' '));
    assert.equal(count('C_DestroyObject'), 2, calls.join(' '));
    // Each look-up of a shard finds it without a search: the change stamp in the shard's lock
    // file is the one the store kept its value with, and the kept object is still there under its
    // label (one C_GetAttributeValue; shard_kept_is_current()). With a search per look-up, in
    // which SoftHSM2 opens every object's file, a refresh was 32 calls and cost 2-2.5x the CPU at
    // 10,000 accounts that it cost at one (docs/benchmark.md). No shard value is read: the first
    // token read or wrote each one last.
    assert.equal(count('C_FindObjectsInit'), 0, calls.join(' '));
    assert.ok(count('C_GetAttributeValue') <= 4, calls.join(' '));
    assert.ok(calls.length <= 16, `${calls.length} calls`);
    return;
  }
  assert.equal(count('C_CreateObject'), 1);
  // 10 today (15 with a search for each generation); a scan of the 40 other objects would add
  // two calls each.
  assert.ok(calls.length <= 16, `${calls.length} calls`);
});
