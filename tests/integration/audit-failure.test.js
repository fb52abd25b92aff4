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

test('audit log on a full filesystem: a short write reports ENOSPC, takes the torn line back and sends no token', { timeout: 60000 }, async (t) => {
  const { spawnSync } = require('node:child_process');
  const fs = require('node:fs');
  const dir = fs.mkdtempSync('/tmp/cbit-small-');
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status !== 0) {
    fs.rmdirSync(dir);
    t.skip('cannot mount a small tmpfs here');
    return;
  }
  const small = await setup({ config: { broker: { audit_log: `${dir}/audit.log` } } });
  try {
    assert.equal((await small.rawRequest(TOKEN)).ok, true, 'room at first');
    // Fill every free page: what is left is the rest of the audit log's last page.
    spawnSync('dd', ['if=/dev/zero', `of=${dir}/filler`, 'bs=4096']);
    let reply;
    for (let i = 0; i < 200; i++) {
      reply = await small.rawRequest(TOKEN);
      if (!reply.ok) break;
    }
    assertInternal(reply, 'once the log is full');
    const log = small.brokerLog();
    assert.match(log, /Failed to write the audit log: No space left on device/);
    assert.doesNotMatch(log, /Failed to write the audit log: Input\/output error/);
    // The torn record was taken back: the log still ends with a whole line.
    const text = fs.readFileSync(`${dir}/audit.log`, 'utf8');
    assert.ok(text.endsWith('\n'), 'the log ends with a whole record');
    for (const line of text.trim().split('\n')) JSON.parse(line);
  } finally {
    await small.teardown();
    spawnSync('umount', [dir]);
    fs.rmdirSync(dir);
  }
});
