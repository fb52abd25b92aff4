'use strict';
// Expiry never depends on the wall clock (reliability.md P9): the broker's wall clock is stepped
// two hours ahead and back (wallclock-shift.c, preloaded into the broker only); the cached token
// stays exactly as fresh as CLOCK_BOOTTIME says, no token request goes upstream, and only the
// reply's wall-clock expires_at moves with the step.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, SANITIZED } = require('./harness');

const SHIFT_LIBRARY = process.env.CREDBROKER_WALLCLOCK_SHIFT;
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
const TWO_HOURS = 7200;

let h;
let offsetFile;
before(async () => {
  if (!SHIFT_LIBRARY) return;
  h = await setup({ startBroker: false });
  offsetFile = h.p('wall-offset');
  fs.writeFileSync(offsetFile, '0\n');
  const brokerEnv = { LD_PRELOAD: SHIFT_LIBRARY, CREDBROKER_TEST_WALL_OFFSET_FILE: offsetFile };
  // The preloaded helper comes before the ASan runtime in the link order.
  if (SANITIZED) brokerEnv.ASAN_OPTIONS = `${process.env.ASAN_OPTIONS || ''}:verify_asan_link_order=0`;
  h.opts.brokerEnv = brokerEnv;
  await h.startBroker();
});
after(() => h && h.teardown());

test('stepping the wall clock ±2 h changes neither which token is fresh nor its expires_in', { skip: !SHIFT_LIBRARY && 'CREDBROKER_WALLCLOCK_SHIFT not set', timeout: 30000 }, async () => {
  await h.resetCounters();
  const first = await h.rawRequest(TOKEN);
  assert.equal(first.ok, true, JSON.stringify(first));

  for (const offset of [TWO_HOURS, -TWO_HOURS, 0]) {
    fs.writeFileSync(offsetFile, `${offset}\n`);
    const r = await h.rawRequest(TOKEN);
    assert.equal(r.ok, true, `wall clock ${offset} s: ${JSON.stringify(r)}`);
    assert.equal(r.access_token, first.access_token, `wall clock ${offset} s: the cached token is still served`);
    assert.ok(first.expires_in - r.expires_in <= 2, `wall clock ${offset} s: expires_in ${r.expires_in} after ${first.expires_in}`);
    // expires_at is wall-clock time for the client: it moves with the broker's wall clock.
    assert.ok(Math.abs(r.expires_at - (first.expires_at + offset)) <= 2,
      `wall clock ${offset} s: expires_at ${r.expires_at}, first ${first.expires_at}`);
  }
  assert.equal((await h.counters()).token, 1, 'no token request upstream because of a wall-clock step');
  // And a request that needs a refresh still gets one: the step did not wedge anything.
  fs.writeFileSync(offsetFile, `${TWO_HOURS}\n`);
  const forced = await h.rawRequest({ ...TOKEN, min_ttl: 3599 });
  assert.equal(forced.ok, true, JSON.stringify(forced));
  assert.notEqual(forced.access_token, first.access_token);
  assert.ok(forced.expires_in >= 3590, `expires_in ${forced.expires_in}`);
});
