'use strict';
// SIGTERM while the store worker is stuck inside the token signing an audit checkpoint
// (broker/main.c: store_worker_stop() gives up after STORE_STOP_TIMEOUT_MS, 5 s; the
// checkpoint in flight and the store are left to the _exit() that follows, audit-checkpoint.c).
// The token is SoftHSM2 behind a `p11-kit server` paused with SIGSTOP, so the worker really is
// inside C_Sign. The broker must exit within the bound plus a margin, with status 0 as
// credbrokerd(8) documents for SIGTERM, without a crash or a sanitizer report, and leave an
// audit log that `credbroker audit verify` finds intact up to its last record: exit 2 (intact,
// the tail unsealed), since neither the checkpoint in flight nor the one at shutdown could be
// signed. Once the token answers again, the next broker seals that tail at start: exit 0.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, sleep, waitFor } = require('./harness');

const P11_KIT_CLIENT = process.env.P11_KIT_CLIENT_MODULE || '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const STORE_STOP_TIMEOUT_MS = 5000;
const MARGIN_MS = 5000;
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

let h;
before(async () => {
  h = await setup({
    importAccount: false,
    startBroker: false,
    config: {
      pkcs11: { module: P11_KIT_CLIENT },
      broker: { audit_checkpoint_interval: 86400, audit_checkpoint_records: 1000 },
    },
  });
  process.env.P11_KIT_SERVER_ADDRESS = await h.startP11KitServer();
  await h.importAccount('alerts', h.canaryRefreshToken);
  await h.startBroker();
});
after(async () => {
  if (!h) return;
  h.resumeP11KitServer();
  await h.teardown();
  await h.stopP11KitServer();
});

async function tokens(n) {
  const c = await h.rawClient();
  try {
    for (let i = 0; i < n; i++) {
      const r = await c.request(TOKEN, 10000);
      assert.equal(r.ok, true, JSON.stringify(r));
    }
  } finally {
    c.close();
  }
}

const verify = () => h.cli(['audit', 'verify', '--config', h.conf]);

test('SIGTERM with the store worker stuck in a checkpoint signature: a bounded exit 0 and an intact log', { timeout: 90000 }, async () => {
  await tokens(5); // the first one refreshes through the store; the rest are cached
  const checkpoints = () => h.auditLines().filter((r) => r.event === 'checkpoint').length;
  const before = checkpoints();

  h.pauseP11KitServer();
  let stopped;
  let took;
  let admin;
  try {
    // The checkpoint asked for goes to the store worker, which is then stuck in C_Sign; its
    // reply waits for the signature.
    admin = await h.adminClient();
    await admin.send({ v: 1, op: 'audit.checkpoint' });
    await sleep(300);
    // The cached path does not need the token: these are written, and stay unsealed.
    await tokens(5);
    const start = Date.now();
    const pid = h.brokerPid;
    let timer;
    const deadline = new Promise((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`credbrokerd did not exit within ${STORE_STOP_TIMEOUT_MS + MARGIN_MS} ms of SIGTERM`));
        try {
          process.kill(pid, 'SIGKILL');
        } catch (_) { /* gone */ }
      }, STORE_STOP_TIMEOUT_MS + MARGIN_MS);
    });
    try {
      stopped = await Promise.race([h.stopBroker({ timeoutMs: 60000 }), deadline]);
    } finally {
      clearTimeout(timer);
    }
    took = Date.now() - start;
    // The one who asked for the checkpoint is not left hanging: an error, or the connection
    // closed.
    const reply = await admin.readFrame(1000).catch((e) => ({ closed: e.message }));
    assert.ok(reply.closed || reply.ok === false, `the checkpoint's requester: ${JSON.stringify(reply)}`);
  } finally {
    if (admin) admin.close();
    h.resumeP11KitServer();
  }
  assert.equal(stopped.signal, null, `not killed (${took} ms): ${stopped.stderr.slice(-2000)}`);
  assert.equal(stopped.code, 0, stopped.stderr.slice(-2000));
  assert.ok(took >= STORE_STOP_TIMEOUT_MS - 500, `it waited for the store (${took} ms)`);
  assert.ok(took < STORE_STOP_TIMEOUT_MS + MARGIN_MS, `exited after ${took} ms`);
  assert.match(stopped.stderr, /credential store has not answered for 5000 ms; exiting without waiting for it \([1-9]\d* store operations unfinished\)/);
  assert.deepEqual(h.sanitizerReports(), []);

  // Every line whole, the tokens' records all there, no checkpoint written since the stall.
  const text = fs.readFileSync(h.auditLog, 'utf8');
  assert.ok(text.endsWith('\n'), 'no torn last line');
  const records = h.auditLines();
  assert.equal(records.filter((r) => r.event === 'issue').length, 10);
  assert.equal(records.at(-1).event, 'issue', 'the last record is the last token');
  assert.equal(checkpoints(), before, 'no checkpoint could be signed');
  const v = await verify();
  assert.equal(v.code, 2, `intact but unsealed: ${v.stdout}${v.stderr}`);
  assert.match(v.stdout + v.stderr, /unsealed|not sealed/);

  // The token is back: the next broker seals the tail when it starts.
  await h.startBroker();
  await waitFor('the tail sealed at start', async () => (await verify()).code === 0, { timeoutMs: 15000 });
  await h.stopBroker();
  const w = await verify();
  assert.equal(w.code, 0, `${w.stdout}${w.stderr}`);
});
