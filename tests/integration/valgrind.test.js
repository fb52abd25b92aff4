'use strict';
// credbrokerd under valgrind: no memory errors, no definite leaks, clean exit on SIGTERM.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { setup, frame, waitFor, SANITIZED, TENANT, SOURCE_ROOT } = require('./harness');

let h;
after(() => h && h.teardown());

test('credbrokerd under valgrind: token, deny, bad frames, hang-ups, SIGTERM → exit 0 and 0 errors', { timeout: 170000 }, async (t) => {
  if (SANITIZED) {
    t.skip('the build uses sanitizers (CREDBROKER_SANITIZE=1): ASan and valgrind do not mix');
    return;
  }
  // SoftHSM2's own leak in C_SignInit with an EdDSA key (the audit checkpoints) is suppressed.
  h = await setup({ valgrind: ['--leak-check=full', '--errors-for-leak-kinds=definite', '--error-exitcode=99',
    `--suppressions=${path.join(SOURCE_ROOT, 'tests', 'valgrind.supp')}`] });

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

  // The admin socket: reads, a password sign-in, account.test, removal, and a device flow still
  // polling when SIGTERM comes.
  const app = 'abababab-abab-4bab-8bab-abababababab';
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: app, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/users', { username: 'val@contoso.com', password: 'valgrind-pw', tenant: TENANT });
  await h.emulatorAdmin('POST', '/admin/config', { device_interval: 1 });
  for (const op of ['account.list', 'status']) assert.equal((await h.adminRequest({ op }, 60000)).ok, true);
  assert.equal((await h.adminRequest({ op: 'account.show', account: 'alerts' }, 60000)).ok, true);
  const added = await h.adminRequest({ op: 'account.add', account: 'val', flow: 'password', tenant: TENANT,
    client_id: app, username: 'val@contoso.com', password: 'valgrind-pw' }, 60000);
  assert.equal(added.ok, true, JSON.stringify(added));
  assert.equal((await h.adminRequest({ op: 'account.test', account: 'val' }, 60000)).ok, true);
  assert.equal((await h.adminRequest({ op: 'account.remove', account: 'val' }, 60000)).ok, true);
  const device = await h.adminClient();
  const code = await device.request({ v: 1, op: 'account.add', account: 'dev', flow: 'device', tenant: TENANT,
    client_id: app }, 60000);
  assert.equal(code.stage, 'device_code', JSON.stringify(code));

  const { code: exitCode, signal, stderr } = await h.stopBroker({ timeoutMs: 60000 });
  assert.match(stderr, /ERROR SUMMARY: \d+ errors/, 'valgrind ran and reported');
  assert.match(stderr, /ERROR SUMMARY: 0 errors/, stderr.split('\n').filter((l) => l.startsWith('==')).slice(-60).join('\n'));
  assert.equal(signal, null);
  assert.equal(exitCode, 0, `exit ${exitCode}`);
  device.close();
});
