'use strict';
// credbrokerd under valgrind: no memory errors, no definite leaks, clean exit on SIGTERM.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, frame, waitFor, SANITIZED } = require('./harness');

let h;
after(() => h && h.teardown());

test('credbrokerd under valgrind: token, deny, bad frames, hang-ups, SIGTERM → exit 0 and 0 errors', { timeout: 170000 }, async (t) => {
  if (SANITIZED) {
    t.skip('the build uses sanitizers (CREDBROKER_SANITIZE=1): ASan and valgrind do not mix');
    return;
  }
  h = await setup({ valgrind: true });

  // A token (a refresh through curl and GnuTLS), then from the cache.
  for (let i = 0; i < 2; i++) {
    const r = await h.cli(['token', '-p', 'alerts'], { timeoutMs: 60000 });
    assert.equal(r.code, 0, r.stderr);
  }
  // A denial and an unknown profile.
  assert.equal((await h.cli(['token', '-p', 'alerts'], { asNobody: true })).code, 77);
  assert.equal((await h.cli(['token', '-p', 'nope'])).code, 78);
  // Malformed frames: one the broker answers, one that makes it hang up.
  const c = await h.rawClient();
  const bad = await c.request({ v: 2, op: 'ping' }, 30000);
  assert.equal(bad.error, 'unsupported_version');
  assert.equal((await c.request('{"v":1,"op":', 30000)).error, 'bad_request');
  await c.write(Buffer.from([0, 0, 0, 0]));
  assert.equal((await c.readFrame(30000)).error, 'bad_request');
  assert.equal(await c.waitClosed(30000), true);
  // A scope the profile does not allow.
  const scope = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts', scopes: ['offline_access'] }, 60000);
  assert.equal(scope.error, 'denied');
  // A client that leaves while its request waits for a refresh that fails upstream.
  await h.addFault({ endpoint: 'token', mode: 'status', status: 503 });
  const quitter = await h.rawClient();
  await quitter.write(frame({ v: 1, op: 'token', profile: 'alerts', min_ttl: 86400 }));
  quitter.close();
  await waitFor('the failed refresh', async () => h.auditLines().some((l) => l.event === 'refresh_failed'),
    { timeoutMs: 30000 });
  assert.equal((await h.rawRequest({ v: 1, op: 'ping' }, 30000)).ok, true);

  const { code, signal, stderr } = await h.stopBroker({ timeoutMs: 60000 });
  assert.match(stderr, /ERROR SUMMARY: \d+ errors/, 'valgrind ran and reported');
  assert.match(stderr, /ERROR SUMMARY: 0 errors/, stderr.split('\n').filter((l) => l.startsWith('==')).slice(-60).join('\n'));
  assert.equal(signal, null);
  assert.equal(code, 0, `exit ${code}`);
});
