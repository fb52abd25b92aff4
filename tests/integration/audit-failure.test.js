'use strict';
// An audit record is written before the token is sent; if it cannot be written, no token (P5).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup } = require('./harness');

let h;
before(async () => {
  h = await setup({ config: { broker: { audit_log: '/dev/full' } } }); // every write: ENOSPC
});
after(() => h && h.teardown());

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

function assertInternal(reply, what) {
  assert.equal(reply.ok, false, `${what}: ${JSON.stringify(reply)}`);
  assert.equal(reply.error, 'internal', `${what}: ${JSON.stringify(reply)}`);
  assert.equal(reply.access_token, undefined, `${what}: a token was sent without an audit record`);
  assert.ok(!JSON.stringify(reply).includes('eyJ'), `${what}: the reply carries something token-like`);
}

test('audit log full: the first request (answered after a refresh) gets internal and no token', { timeout: 30000 }, async () => {
  const reply = await h.rawRequest(TOKEN);
  assertInternal(reply, 'after the refresh');
  const c = await h.counters();
  assert.equal(c.token_success, 1, 'the refresh itself happened upstream');
});

test('audit log full: a request served from the cache gets internal and no token', { timeout: 30000 }, async () => {
  const reply = await h.rawRequest(TOKEN);
  assertInternal(reply, 'from the cache');
  assert.equal((await h.counters()).token, 1, 'served from the cache: no new upstream request');
});

test('audit log full: the CLI prints no token and fails with exit 70', { timeout: 30000 }, async () => {
  for (const format of ['raw', 'json', 'header']) {
    const r = await h.cli(['token', '-p', 'alerts', '--format', format]);
    assert.equal(r.code, 70, `--format ${format}: exit ${r.code} ${r.stderr}`);
    assert.equal(r.stdout, '', `--format ${format}: nothing on stdout`);
    assert.match(r.stderr, /internal/);
  }
});

test('audit log full: a denial cannot be recorded either, and no token is sent', { timeout: 30000 }, async () => {
  const r = await h.cli(['token', '-p', 'alerts'], { asNobody: true });
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, '');
  const reply = await h.rawRequestAsNobody(TOKEN);
  assert.equal(reply.ok, false);
  assert.equal(reply.access_token, undefined);
});

test('audit log full: the broker stays up and says why in its log', { timeout: 30000 }, async () => {
  assert.ok(h.brokerAlive());
  assert.equal((await h.rawRequest({ v: 1, op: 'ping' })).ok, true);
  assert.match(h.brokerLog(), /audit log/i);
});
