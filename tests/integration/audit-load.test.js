'use strict';
// Audit checkpoints while signatures are slow (issue 12, docs/audit.md "Checkpoints"): the broker
// asks for a checkpoint every audit_checkpoint_records records even while earlier signatures are
// still being made, so consecutive notes' counts stay at most that far apart under load; and a
// broker killed while signatures were outstanding writes the checkpoints it owed when it starts
// again. `credbroker audit verify --config` (which takes the gap rule from the configuration)
// accepts both logs. Needs a build with -Dfault_points=true: CREDBROKER_AUDIT_SIGN_DELAY_MS
// slows the signatures on the store worker down like a slow token.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, waitFor } = require('./harness');

const FAULT_POINTS = process.env.CREDBROKER_FAULT_POINTS === '1';
const N = 20;

let h;
before(async () => {
  if (!FAULT_POINTS) return;
  h = await setup({
    config: { broker: { audit_checkpoint_interval: 86400, audit_checkpoint_records: N } },
    brokerEnv: { CREDBROKER_AUDIT_SIGN_DELAY_MS: '100' },
  });
});
after(() => h && h.teardown());

const records = () => h.auditLines();
const checkpoints = () => records().filter((r) => r.event === 'checkpoint');

// `clients` connections, each sending `each` token requests one after the other.
async function burst(clients, each) {
  await Promise.all(Array.from({ length: clients }, async () => {
    const c = await h.rawClient();
    try {
      for (let i = 0; i < each; i++) {
        const r = await c.request({ v: 1, op: 'token', profile: 'alerts' });
        assert.equal(r.ok, true, JSON.stringify(r));
      }
    } finally {
      c.close();
    }
  }));
}

// Consecutive checkpoints' counts, from 0 at the genesis, are at most N apart.
function assertCountsWithin(n) {
  let base = 0;
  for (const cp of checkpoints()) {
    assert.ok(cp.count - base <= n, `checkpoint seq ${cp.seq} covers ${cp.count} records, the one before ${base}`);
    base = Math.max(base, cp.count);
  }
}

async function verify(args = []) {
  return h.cli(['audit', 'verify', '--config', h.conf, ...args]);
}

test('under load, a checkpoint every audit_checkpoint_records records while signatures are pending', {
  skip: FAULT_POINTS ? false : 'needs -Dfault_points=true', timeout: 120000,
}, async () => {
  await burst(1, 1); // the token is cached from here on
  await burst(8, 15);
  const last = records().at(-1).seq;
  await waitFor('the checkpoints to catch up', () => checkpoints().some((c) => c.count > last - N),
    { timeoutMs: 30000 });
  // The scenario happened: checkpoints were written long after the count they cover, so more
  // than one signature was outstanding at a time.
  assert.ok(checkpoints().some((c) => c.seq - c.count > N), 'signatures overlapped');
  assertCountsWithin(N);
  await h.stopBroker();
  const r = await verify();
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  // The rule is on, and its interval is the configuration's: with a smaller one, from the
  // configuration or from --checkpoint-records, the same log has gaps.
  const strict = await verify(['--checkpoint-records', String(N / 2)]);
  assert.equal(strict.code, 1, strict.stdout);
  assert.match(strict.stdout, /gap between checkpoints longer than configured/);
  h.opts.config.broker.audit_checkpoint_records = N / 2;
  h.writeConfig();
  const configured = await verify();
  assert.equal(configured.code, 1, configured.stdout);
  assert.match(configured.stdout, /gap between checkpoints longer than configured/);
  const overridden = await verify(['--checkpoint-records', String(N)]);
  assert.equal(overridden.code, 0, overridden.stdout);
  h.opts.config.broker.audit_checkpoint_records = N;
  h.writeConfig();
});

test('killed with signatures outstanding, the broker writes the checkpoints it owed at start', {
  skip: FAULT_POINTS ? false : 'needs -Dfault_points=true', timeout: 120000,
}, async () => {
  h.opts.brokerEnv = { CREDBROKER_AUDIT_SIGN_DELAY_MS: '400' };
  await h.startBroker();
  await burst(8, 12);
  await h.stopBroker({ signal: 'SIGKILL' });
  const lastSeq = records().at(-1).seq;
  const lastCount = Math.max(0, ...checkpoints().map((c) => c.count));
  assert.ok(lastSeq + 1 - lastCount > N + 1, `checkpoints were owed at the kill (${lastCount} of ${lastSeq + 1})`);
  h.opts.brokerEnv = {};
  await h.startBroker();
  await h.stopBroker();
  assertCountsWithin(N);
  assert.equal(records().at(-1).event, 'checkpoint', 'sealed');
  const r = await verify();
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
});

test('a checkpoint whose signature failed leaves its records unsealed: shutdown seals them', {
  skip: FAULT_POINTS ? false : 'needs -Dfault_points=true', timeout: 120000,
}, async () => {
  h.opts.brokerEnv = { CREDBROKER_AUDIT_SIGN_FAIL_FIRST: '1' };
  await h.startBroker();
  await burst(1, 3);
  const refused = await h.adminRequest({ op: 'audit.checkpoint' });
  assert.equal(refused.ok, false, `the token refused: ${JSON.stringify(refused)}`);
  const lastRecord = records().at(-1).seq;
  await h.stopBroker();
  h.opts.brokerEnv = {};
  const last = records().at(-1);
  assert.equal(last.event, 'checkpoint', 'shutdown sealed what the failed checkpoint left');
  assert.equal(last.count, lastRecord + 1, 'the seal covers every record before it');
  const r = await verify();
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
});
