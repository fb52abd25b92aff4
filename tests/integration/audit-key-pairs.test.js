'use strict';
// Two processes that found no audit key and generated one at once leave the token holding two
// complete key pairs under the label credbroker/audit-key (pkcs11/store-audit-key.c); every
// caller then takes the pair with the smallest CKA_ID, so that all of them sign with, and name,
// the same key. Here the token holds eight pairs: the one
// `credbroker audit key` generated, and seven made with pkcs11-tool the way the store makes them
// (private, never extractable, Ed25519 under the label), one with a CKA_ID below and one above
// any random one. `credbroker audit key` must print the smallest pair's key every time, from
// the token and from the running broker; the broker's genesis must name it; and the
// checkpoints it writes, across a restart, must verify with
// `credbroker audit verify --key "$(credbroker audit key)"`.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, run, SOFTHSM_MODULE } = require('./harness');

const LABEL = 'credbroker/audit-key';
const SMALLEST = '00'.repeat(15) + '01';
const LARGEST = 'ff'.repeat(16);
// SoftHSM2 finds a token's objects in an order that has nothing to do with CKA_ID (the order
// it read their files in): with eight pairs a caller that took the first one found instead of
// the smallest would be caught seven times in eight.
const IDS = [LARGEST, ...[0x20, 0x60, 0xa0, 0xe0].map((b) => b.toString(16) + '00'.repeat(15)), SMALLEST,
  '40' + '00'.repeat(15)];

let h;
before(async () => {
  h = await setup({
    startBroker: false,
    config: { broker: { audit_checkpoint_interval: 86400, audit_checkpoint_records: 1000 } },
  });
});
after(() => h && h.teardown());

function pkcs11Tool(args) {
  return run('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'credbroker', '--login',
    '--pin', h.pin, ...args], { env: h.env() });
}

// The note verifier key (credbroker-audit+hex8+base64(type||pub), docs/audit.md) of a raw
// Ed25519 public key.
function noteKey(pub) {
  const raw = Buffer.concat([Buffer.from([1]), pub]);
  const hash = crypto.createHash('sha256').update(Buffer.concat([Buffer.from('credbroker-audit\n'), raw]))
    .digest().subarray(0, 4);
  return `credbroker-audit+${hash.toString('hex')}+${raw.toString('base64')}`;
}

// The audit key pairs in the token: [{ id (hex), key (note key of its public half) }].
async function pairs() {
  const r = await pkcs11Tool(['--list-objects', '--type', 'pubkey']);
  assert.equal(r.code, 0, r.stderr);
  const out = [];
  for (const block of r.stdout.split(/^(?=Public Key Object)/m)) {
    const label = /label:\s+(\S+)/.exec(block);
    const id = /ID:\s+([0-9a-f]+)/.exec(block);
    const point = /EC_POINT:\s+0420([0-9a-f]{64})\s/.exec(block);
    if (label && label[1] === LABEL && id && point) out.push({ id: id[1], key: noteKey(Buffer.from(point[1], 'hex')) });
  }
  return out;
}

async function addPair(id) {
  const r = await pkcs11Tool(['--keypairgen', '--key-type', 'EC:edwards25519', '--label', LABEL, '--id', id,
    '--private']);
  assert.equal(r.code, 0, `pkcs11-tool --keypairgen: ${r.stdout}${r.stderr}`);
}

async function auditKey(args = ['--config', h.conf]) {
  const r = await h.cli(['audit', 'key', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function token() {
  const r = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(r.ok, true, JSON.stringify(r));
}

async function checkpoint() {
  const r = await h.cli(['audit', 'checkpoint', '--admin-socket', h.adminSocket]);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
}

test('with eight audit key pairs under the label, everyone takes the smallest CKA_ID', { timeout: 120000 }, async () => {
  const generated = await auditKey();
  for (const id of IDS) await addPair(id);
  const all = await pairs();
  assert.equal(all.length, IDS.length + 1, JSON.stringify(all));
  assert.ok(all.some((p) => p.key === generated), 'the generated pair is one of them');
  const smallest = all.find((p) => p.id === SMALLEST).key;
  assert.equal(new Set(all.map((p) => p.key)).size, all.length, 'different keys');

  // The token, asked again and again, always answers with the smallest pair.
  for (let i = 0; i < 3; i++) assert.equal(await auditKey(), smallest, `audit key, time ${i + 1}`);

  await h.startBroker();
  const genesis = h.auditLines()[0];
  assert.equal(genesis.event, 'genesis');
  assert.equal(genesis.key, smallest, 'the genesis names the smallest pair');
  assert.equal(await auditKey(['--admin-socket', h.adminSocket]), smallest, 'the broker says the same');
  await token();
  await checkpoint();
  await token();
  await checkpoint();
  await token(); // sealed by the checkpoint at shutdown
  await h.restartBroker();
  assert.equal(await auditKey(['--admin-socket', h.adminSocket]), smallest, 'after a restart too');
  await token();
  await checkpoint();
  await token();
  await h.stopBroker();
  assert.equal(await auditKey(), smallest, 'and from the token once the broker is gone');

  const checkpoints = h.auditLines().filter((r) => r.event === 'checkpoint');
  assert.ok(checkpoints.length >= 5, `checkpoints on request and at shutdown: ${checkpoints.length}`);
  const v = await h.cli(['audit', 'verify', '--key', await auditKey(), h.auditLog]);
  assert.equal(v.code, 0, `${v.stdout}${v.stderr}`);
  // And not with either other key: the test would not notice a key mix-up otherwise.
  for (const other of all.filter((p) => p.key !== smallest)) {
    const w = await h.cli(['audit', 'verify', '--key', other.key, h.auditLog]);
    assert.equal(w.code, 1, `verify with another pair's key: ${w.stdout}`);
  }
  assert.doesNotMatch(h.brokerLog(), /did not sign as the verifier key/);
});

// A pair with a smaller CKA_ID made after the log started (another process generating after
// the broker did) must not change the key the log's checkpoints are signed with: the broker
// keeps the key its latest note names (store_audit_key_pin()).
test('a pair with a smaller CKA_ID made later does not change the log\'s key', { timeout: 120000 }, async () => {
  const logKey = await auditKey(); // the smallest pair, which signed everything so far
  await addPair('00'.repeat(16));
  const newer = (await pairs()).find((p) => p.id === '00'.repeat(16)).key;
  assert.equal(await auditKey(), newer, 'the token alone answers with the new smallest pair');

  await h.startBroker();
  assert.equal(await auditKey(['--admin-socket', h.adminSocket]), logKey, 'the broker keeps the log\'s key');
  await token();
  await checkpoint();
  await addPair('00'); // shorter, so smaller still, while the broker runs
  await token();
  await h.restartBroker();
  assert.equal(await auditKey(['--admin-socket', h.adminSocket]), logKey, 'after a restart too');
  await token();
  await checkpoint();
  await h.stopBroker();

  const v = await h.cli(['audit', 'verify', '--key', logKey, h.auditLog]);
  assert.equal(v.code, 0, `${v.stdout}${v.stderr}`);
  assert.doesNotMatch(h.brokerLog(), /did not sign as the verifier key|no longer has/);
});
