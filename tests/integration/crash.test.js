'use strict';
// P1: the broker SIGKILLs itself at each named fault point of the rotation (design §6,
// common/fault.h; the build needs -Dfault_points=true) and is started again. Afterwards the
// account has a working refresh token, the newest one fully written, proven by getting a token
// from the emulator, or, where a strict server already revoked the last token we still hold,
// the account is needs_reauth with an audit record: never silently empty.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, waitExit, waitFor } = require('./harness');

const envs = [];
after(async () => {
  const errors = [];
  for (const h of envs) await h.teardown().catch((e) => errors.push(e));
  if (errors.length) throw errors[0];
});

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

// What each point leaves in the token store, and which generation the next broker must use.
//   after-send      request upstream, answer not acted on: only generation 1
//   after-receive   answer parsed, new token not yet stored: only generation 1
//   after-create    generation 2 created, not yet read back: 1 and 2
//   after-readback  generation 2 verified, 1 not yet destroyed: 1 and 2
//   after-destroy   generation 1 destroyed, the index (store-refresh-token.c) still names 1:
//                   only 2, found by probing past the index's one leading miss
//   after-index     rotation complete, the index moved on to 2: only 2
// The wrapped store ([pkcs11] store = wrapped) keeps one generation per account file:
//   wrapped-after-write  the temporary file written, fsynced, read back; not renamed: 1 and 2
//                        (the next load finishes the write)
//   after-create         renamed over the account's file, the token's counter not moved on: 2
//   after-readback, after-destroy  the counter moved on: 2
const POINTS = {
  objects: [
    { name: 'after-send', left: [1], newTokenLost: true },
    { name: 'after-receive', left: [1], newTokenLost: true },
    { name: 'after-create', left: [1, 2], newTokenLost: false },
    { name: 'after-readback', left: [1, 2], newTokenLost: false },
    { name: 'after-destroy', left: [2], newTokenLost: false },
    { name: 'after-index', left: [2], newTokenLost: false },
  ],
  wrapped: [
    { name: 'after-send', left: [1], newTokenLost: true },
    { name: 'after-receive', left: [1], newTokenLost: true },
    { name: 'wrapped-after-write', left: [1, 2], newTokenLost: false },
    { name: 'after-create', left: [2], newTokenLost: false },
    { name: 'after-readback', left: [2], newTokenLost: false },
    { name: 'after-destroy', left: [2], newTokenLost: false },
  ],
};
// Every test runs against both store backends; the object store's test names are unchanged.
const STORES = ['objects', 'wrapped'];
const storeTitle = (store) => (store === 'objects' ? '' : `[${store} store] `);

// The harness unref()s the broker, so waiting for its exit alone would let node:test see an
// idle event loop and cancel the test.
async function waitDead(proc) {
  const keepAlive = setInterval(() => {}, 1000);
  try {
    return await waitExit(proc);
  } finally {
    clearInterval(keepAlive);
  }
}

// Requests a token from a broker that is going to kill itself; resolves once it is dead.
async function crashAt(h, point) {
  const proc = h.broker.proc;
  const reply = await h.rawRequest(TOKEN, 20000).catch((e) => ({ closed: e.message }));
  const exit = await waitDead(proc);
  assert.equal(exit.signal, 'SIGKILL', `the broker died at ${point} by SIGKILL (reply: ${JSON.stringify(reply)})`);
  assert.equal(reply.access_token, undefined, `no token was sent before dying at ${point}`);
  h.broker = null;
}

async function restartWithoutFault(h) {
  h.opts.brokerEnv = {};
  await h.startBroker();
}

// The generation the restarted broker read for its refresh, from its debug log.
function generationUsed(h) {
  const log = require('node:fs').readFileSync(h.broker.logPath, 'utf8');
  const m = log.match(/refreshing .* \(refresh token generation (\d+)\)/);
  return m ? Number(m[1]) : null;
}

for (const store of STORES) {
  for (const rotation of ['lenient', 'strict']) {
    for (const point of POINTS[store]) {
      test(`${storeTitle(store)}${rotation} rotation, SIGKILL ${point.name}: the newest intact token works after restart`, { timeout: 60000 }, async () => {
        const h = await setup({ store, emulator: { rotation }, brokerEnv: { CREDBROKER_FAULT: point.name } });
        envs.push(h);
        assert.deepEqual(await h.refreshTokenGenerations(), [1]);

        await crashAt(h, point.name);
        const left = await h.refreshTokenGenerations();
        assert.deepEqual(left, point.left, `generations left by a crash ${point.name}`);
        assert.ok(left.length >= 1, 'never no refresh token at all');
        const counters = await h.counters();
        assert.equal(counters.token_success, 1, 'the emulator answered the one refresh');

        await restartWithoutFault(h);
        const reply = await h.rawRequest(TOKEN, 20000);
        const newest = Math.max(...left);
        assert.equal(generationUsed(h), newest, `the restarted broker refreshed with generation ${newest}`);

        if (rotation === 'strict' && point.newTokenLost) {
          // The unavoidable window (docs/softhsm-torn-writes.md): the emulator issued generation
          // 2 and revoked 1, and 2 died with the broker. Not silently empty: needs_reauth, audited.
          assert.equal(reply.ok, false, JSON.stringify(reply));
          assert.equal(reply.error, 'reauth_required', JSON.stringify(reply));
          const audit = h.auditLines().filter((l) => l.event === 'reauth_required' && l.account === 'alerts');
          assert.equal(audit.length, 1, 'one reauth_required audit record');
          assert.deepEqual(await h.refreshTokenGenerations(), [1], 'the store keeps what it had');
          // Issue 9: the record and the status tell a family lost in the crash from a revocation.
          assert.equal(audit[0].reason, 'interrupted_refresh', JSON.stringify(audit[0]));
          assert.equal(audit[0].generation, 1, JSON.stringify(audit[0]));
          const row = (await h.adminRequest({ op: 'status' })).accounts.find((a) => a.account === 'alerts');
          assert.equal(row.state, 'needs_reauth', JSON.stringify(row));
          assert.equal(row.interrupted_refresh, true, JSON.stringify(row));
          assert.match(row.message, /previous run stopped during a refresh/);
          // credbroker status names it in words of its own (the broker's message follows).
          const status = await h.cli(['status', '--config', h.conf]);
          assert.equal(status.code, 2, status.stdout + status.stderr);
          const interruptedText = 'needs reauth: the previous run stopped during a refresh (the ' +
            'refresh-token family may be lost on a strict server); sign in again';
          assert.ok(status.stdout.split('\n')[0].endsWith(`alerts: ${interruptedText}`), status.stdout);
          assert.ok(status.stdout.includes(`alerts: needs_reauth [CRITICAL] ${interruptedText}\n`), status.stdout);
          assert.match(status.stdout, /^ {2}message +the previous run stopped during a refresh with refresh token generation 1/m);
          const json = await h.cli(['status', '--json', '--config', h.conf]);
          const jrow = JSON.parse(json.stdout).accounts.find((a) => a.account === 'alerts');
          assert.equal(jrow.interrupted_refresh, true, json.stdout);
          assert.equal(jrow.reason, interruptedText, json.stdout);
          // And the next run still says so: the marker is kept until the account is signed in.
          await h.restartBroker();
          assert.equal((await h.rawRequest(TOKEN, 20000)).error, 'reauth_required');
          const again = h.auditLines().filter((l) => l.event === 'reauth_required' && l.account === 'alerts');
          assert.equal(again.length, 2);
          assert.equal(again[1].reason, 'interrupted_refresh', JSON.stringify(again[1]));
          return;
        }
        assert.equal(reply.ok, true, `a token after restart: ${JSON.stringify(reply)}`);
        assert.ok(reply.access_token.length > 40);
        assert.deepEqual(await h.refreshTokenGenerations(), [newest + 1],
          'the next rotation stored one new generation and destroyed every older one');
        const refresh = h.auditLines().filter((l) => l.event === 'refresh');
        assert.equal(refresh.at(-1).generation, newest + 1);
        assert.equal(h.auditLines().filter((l) => l.event === 'reauth_required').length, 0);
        if (rotation === 'strict') {
          const state = await h.emulatorAdmin('GET', '/admin/state');
          assert.equal(state.revoked_refresh_tokens, 2, 'two tokens used once each, none replayed');
        }
      });
    }

    // The other half of "after send": the request reached upstream, which never answered (and so
    // never rotated). The test, not a fault point, kills the broker while it waits.
    test(`${storeTitle(store)}${rotation} rotation, kill -9 while upstream holds the request: the old token still works`, { timeout: 60000 }, async () => {
      const h = await setup({ store, emulator: { rotation } });
      envs.push(h);
      await h.addFault({ endpoint: 'token', mode: 'hang', count: 1 });
      const proc = h.broker.proc;
      const pending = h.rawRequest(TOKEN, 30000).catch((e) => ({ closed: e.message }));
      await waitFor('the token request to reach the emulator', async () => (await h.counters()).token === 1);
      proc.kill('SIGKILL');
      await waitDead(proc);
      h.broker = null;
      const lost = await pending;
      assert.equal(lost.access_token, undefined);
      assert.deepEqual(await h.refreshTokenGenerations(), [1]);

      await h.clearFaults();
      await h.startBroker();
      const reply = await h.rawRequest(TOKEN, 20000);
      assert.equal(reply.ok, true, JSON.stringify(reply));
      assert.deepEqual(await h.refreshTokenGenerations(), [2]);
    });
  }
}

// The other side: a refresh token revoked upstream while no refresh was interrupted is
// reauth_required without the interrupted_refresh reason, in this run and the next.
for (const store of STORES) {
  test(`${storeTitle(store)}strict rotation, revoked without a crash: reauth_required is not marked interrupted`, { timeout: 60000 }, async () => {
    const h = await setup({ store, emulator: { rotation: 'strict' } });
    envs.push(h);
    assert.equal((await h.rawRequest(TOKEN, 20000)).ok, true, 'a first refresh, completed');
    await h.emulatorAdmin('POST', '/admin/refresh-tokens/revoke', { user: 'alerts@contoso.com' });
    for (let run = 0; run < 2; run++) {
      await h.restartBroker();
      const reply = await h.rawRequest(TOKEN, 20000);
      assert.equal(reply.error, 'reauth_required', JSON.stringify(reply));
      const audit = h.auditLines().filter((l) => l.event === 'reauth_required');
      assert.equal(audit.length, run + 1);
      assert.equal(audit[run].reason, undefined, `run ${run}: ${JSON.stringify(audit[run])}`);
      const row = (await h.adminRequest({ op: 'status' })).accounts.find((a) => a.account === 'alerts');
      assert.equal(row.state, 'needs_reauth');
      assert.equal(row.interrupted_refresh, undefined, JSON.stringify(row));
      const status = await h.cli(['status', '--config', h.conf]);
      assert.equal(status.code, 2, status.stdout + status.stderr);
      assert.match(status.stdout, /alerts: needs_reauth \[CRITICAL\] needs an administrator to sign in again/);
      assert.doesNotMatch(status.stdout, /previous run stopped|strict server/, status.stdout);
    }
  });
}
