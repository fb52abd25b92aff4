'use strict';
// Backoff (design §5, reliability.md P8): with the token endpoint failing for a minute and many
// clients asking all the time, the broker sends a handful of requests, spaced by a capped
// exponential backoff with full jitter — no retry storm — and every client is told to come back
// later with a bounded retry_after.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep } = require('./harness');

const OUTAGE_MS = 60000;
const CLIENT_LOOPS = 20;
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

let h;
before(async () => {
  h = await setup({});
});
after(() => h && h.teardown());

test('a 60 s outage (HTTP 500) with 20 clients hammering: a handful of spaced attempts, no storm', { timeout: 120000 }, async (t) => {
  await h.restartBroker();
  await h.resetCounters();
  await h.addFault({ endpoint: 'token', mode: 'status', status: 500, count: 100000 });
  const start = Date.now();
  const replies = { ok: 0, unavailable: 0, other: 0 };
  let maxRetryAfter = 0;

  async function hammer() {
    const c = await h.rawClient();
    try {
      while (Date.now() - start < OUTAGE_MS) {
        const r = await c.request(TOKEN, 10000);
        if (r.ok) replies.ok += 1;
        else if (r.error === 'unavailable') {
          replies.unavailable += 1;
          maxRetryAfter = Math.max(maxRetryAfter, r.retry_after);
          assert.ok(Number.isInteger(r.retry_after) && r.retry_after >= 1, JSON.stringify(r));
        } else replies.other += 1;
        await sleep(20);
      }
    } finally {
      c.close();
    }
  }
  await Promise.all(Array.from({ length: CLIENT_LOOPS }, hammer));
  const c = await h.counters();
  await h.clearFaults();

  const times = c.token_requests.filter((r) => r.endpoint === 'token').map((r) => r.t);
  const gaps = times.slice(1).map((x, i) => (x - times[i]) / 1000);
  t.diagnostic(`${replies.unavailable + replies.ok + replies.other} client requests; ${c.token} token requests upstream in ${OUTAGE_MS / 1000} s; gaps ${gaps.map((g) => g.toFixed(1)).join(' ')} s; max retry_after ${maxRetryAfter} s`);
  assert.equal(replies.ok, 0);
  assert.equal(replies.other, 0, 'every client was told unavailable');
  assert.ok(replies.unavailable > 1000, `the clients really hammered: ${replies.unavailable}`);
  assert.ok(c.token >= 3, `the broker kept trying: ${c.token} attempts`);
  assert.ok(c.token <= 12, `no retry storm: ${c.token} attempts in ${OUTAGE_MS / 1000} s`);
  for (const g of gaps) assert.ok(g >= 0.9, `attempts ${g} s apart: the backoff is at least 1 s`);
  assert.ok(maxRetryAfter <= 300, `retry_after ${maxRetryAfter} over the 300 s cap`);
  assert.ok(h.brokerAlive());
});
