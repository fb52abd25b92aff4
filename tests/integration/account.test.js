'use strict';
// credbroker account list / show / secret / remove: what they print, that no secret is ever
// printed, that remove destroys every object of the account and says which, and name checks.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, run, SOFTHSM_MODULE, TENANT, CLIENT_ID, USER } = require('./harness');

let h;
const SECRET_CANARY = `CS-CANARY-${crypto.randomBytes(12).toString('hex')}`;

before(async () => {
  h = await setup({ startBroker: false });
});
after(() => h && h.teardown());

const account = (args, opts) => h.cli(['account', ...args, '--config', h.conf], opts);

function assertNoSecrets(r, what) {
  for (const canary of [SECRET_CANARY, h.canaryRefreshToken, h.pin]) {
    assert.ok(!r.stdout.includes(canary) && !r.stderr.includes(canary), `${what} printed a secret`);
  }
}

async function tokenLabels(type) {
  const r = await run('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'credbroker', '--login',
    '--pin', h.pin, '--list-objects', '--type', type], { env: h.env() });
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.matchAll(/label:\s+'?([^'\s]+)'?/g)].map((m) => m[1]);
}

test('account names are checked with a clear message', { timeout: 60000 }, async () => {
  const bad = ['Alerts', '.hidden', 'a/b', 'a b', 'credbroker', 'x'.repeat(65), ''];
  for (const name of bad) {
    for (const cmd of [['show', name], ['remove', name], ['keygen', name], ['secret', name, '--secret-stdin'],
      ['cert', name, '--file', '/dev/null']]) {
      const r = await account(cmd, { input: 'x\n' });
      assert.equal(r.code, 64, `account ${cmd.join(' ')}: exit ${r.code} ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /invalid account name .*1-64 characters of a-z, 0-9/, `${cmd.join(' ')}: ${r.stderr}`);
    }
  }
});

test('usage and help of the new subcommands', { timeout: 60000 }, async () => {
  for (const cmd of ['show', 'remove', 'secret', 'keygen', 'cert']) {
    const help = await h.cli(['account', cmd, '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, new RegExp(`Usage: credbroker account ${cmd}`));
    const bare = await h.cli(['account', cmd]);
    assert.equal(bare.code, 64, `account ${cmd} without a name`);
    assert.equal(bare.stdout, '');
  }
  const noFlag = await account(['secret', 'alerts'], { input: 'x\n' });
  assert.equal(noFlag.code, 64, 'secret requires --secret-stdin: a secret is never an argument');
  const extra = await account(['show', 'alerts', 'extra']);
  assert.equal(extra.code, 64);
});

test('a missing required option prints the usage; short options are the option letters', { timeout: 60000 }, async () => {
  for (const cmd of [['cert', 'alerts'], ['import', 'fresh', '--tenant', TENANT, '--client-id', CLIENT_ID],
    ['import', 'fresh', '-t', TENANT, '-f', '/dev/null'], ['import', 'fresh', '-i', CLIENT_ID, '-f', '/dev/null']]) {
    const r = await account(cmd);
    assert.equal(r.code, 64, `account ${cmd.join(' ')}: exit ${r.code} ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^Usage: credbroker account ${cmd[0]} NAME`), `${cmd.join(' ')}: ${r.stderr}`);
  }
  const bits = await account(['keygen', 'alerts', '-b', '1000']);
  assert.equal(bits.code, 64);
  assert.equal(bits.stderr, 'credbroker: --bits must be 2048, 3072 or 4096\n');
  const shown = await account(['show', 'alerts', '-j']);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(JSON.parse(shown.stdout).account, 'alerts');
});

test('show prints settings and credential facts, never a secret', { timeout: 60000 }, async () => {
  const set = await account(['secret', 'alerts', '--secret-stdin'], { input: `${SECRET_CANARY}\n` });
  assert.equal(set.code, 0, set.stderr);
  assertNoSecrets(set, 'secret');

  const show = await account(['show', 'alerts']);
  assert.equal(show.code, 0, show.stderr);
  assertNoSecrets(show, 'show');
  assert.match(show.stdout, /^Account: +alerts$/m);
  assert.match(show.stdout, /^Flow: +refresh_token$/m);
  assert.match(show.stdout, new RegExp(`^Tenant: +${TENANT}$`, 'm'));
  assert.match(show.stdout, new RegExp(`^Client ID: +${CLIENT_ID}$`, 'm'));
  assert.match(show.stdout, new RegExp(`^Mailbox: +${USER}$`, 'm'));
  assert.match(show.stdout, /^Refresh token: +generation 1 \(1 object\), stored (unknown, age unknown|.*UTC, age .*)$/m);
  assert.match(show.stdout, /^Client secret: +present$/m);
  assert.match(show.stdout, /^Certificate: +none$/m);

  const json = await account(['show', 'alerts', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assertNoSecrets(json, 'show --json');
  const j = JSON.parse(json.stdout);
  assert.equal(j.account, 'alerts');
  assert.equal(j.flow, 'refresh_token');
  assert.equal(j.tenant, TENANT);
  assert.equal(j.client_id, CLIENT_ID);
  assert.equal(j.mailbox, USER);
  assert.equal(j.client_secret, true);
  assert.equal(j.refresh_token.generation, 1);
  assert.equal(j.certificate, null);

  const list = await account(['list']);
  assert.equal(list.code, 0, list.stderr);
  assertNoSecrets(list, 'list');
  const row = list.stdout.split('\n').find((l) => l.startsWith('alerts '));
  assert.ok(row, list.stdout);
  assert.equal(row.trim().split(/\s+/).at(-1), '1', 'the refresh-token generation is the last column');
  assert.match(row, / yes /, 'the secret column says a secret is present');
  const listJson = JSON.parse((await account(['list', '--json'])).stdout);
  assert.deepEqual(listJson.map((a) => a.account), ['alerts']);
  assert.equal(listJson[0].client_secret, true);
});

test('the client secret is read from standard input and checked', { timeout: 60000 }, async () => {
  const empty = await account(['secret', 'alerts', '--secret-stdin'], { input: '' });
  assert.equal(empty.code, 65);
  assert.match(empty.stderr, /empty/);
  const long = await account(['secret', 'alerts', '--secret-stdin'], { input: 'x'.repeat(1025) });
  assert.equal(long.code, 65);
  assert.match(long.stderr, /longer than 1024 bytes/);
  const spaced = await account(['secret', 'alerts', '--secret-stdin'], { input: 'has a space\n' });
  assert.equal(spaced.code, 65);
  assert.match(spaced.stderr, /printable ASCII/);
  assert.equal((await tokenLabels('data')).filter((l) => l === 'alerts/client_secret').length, 1,
    'the refused values left the stored secret alone');
  const appOnly = await account(['secret', 'app-secret', '--secret-stdin'], { input: `${SECRET_CANARY}\n` });
  assert.equal(appOnly.code, 0, 'an app-only account needs no metadata');
  const list = await account(['list']);
  assert.ok(list.stdout.split('\n').some((l) => l.startsWith('app-secret ')), list.stdout);
  const show = await account(['show', 'app-secret']);
  assert.equal(show.code, 0);
  assert.match(show.stdout, /^Metadata: +none/m);
  assertNoSecrets(show, 'show app-secret');
});

test('remove destroys every object of the account and says which', { timeout: 60000 }, async () => {
  const keygen = await account(['keygen', 'alerts']);
  assert.equal(keygen.code, 0, keygen.stderr);

  const missing = await account(['remove', 'nosuch']);
  assert.equal(missing.code, 66);
  assert.match(missing.stderr, /there is no account nosuch in the token/);
  const missingShow = await account(['show', 'nosuch']);
  assert.equal(missingShow.code, 66);
  assert.match(missingShow.stderr, /there is no account nosuch in the token/);

  const r = await account(['remove', 'alerts']);
  assert.equal(r.code, 0, r.stderr);
  assertNoSecrets(r, 'remove');
  for (const what of ['alerts/meta (data)', 'alerts/refresh_token/1 (data)', 'alerts/client_secret (data)',
    'alerts/assertion-key (private key)', 'alerts/assertion-cert (certificate)']) {
    assert.ok(r.stdout.includes(what), `remove reports ${what}: ${r.stdout}`);
  }
  assert.match(r.stdout, /^Removed account alerts: .*alerts\/meta \(data\)\n$/, 'meta goes last');
  for (const type of ['data', 'privkey', 'cert', 'pubkey']) {
    const left = (await tokenLabels(type)).filter((l) => l.startsWith('alerts/'));
    assert.deepEqual(left, [], `no ${type} object of alerts is left`);
  }
  assert.ok((await tokenLabels('data')).includes('app-secret/client_secret'), 'other accounts stay');
  const again = await account(['remove', 'alerts']);
  assert.equal(again.code, 66);
  const list = await account(['list']);
  assert.ok(!list.stdout.split('\n').some((l) => l.startsWith('alerts ')), list.stdout);
});

test('while the broker runs, account import goes through it (account.add, refresh-token flow)', { timeout: 120000 }, async () => {
  const fs = require('node:fs');
  const RT_CANARY = `RT-CANARY-IMPORT-${crypto.randomBytes(12).toString('hex')}`;
  const rt = h.p('rt-import');
  fs.writeFileSync(rt, `${RT_CANARY}\n`, { mode: 0o600 });
  const importArgs = ['import', 'imported', '-v', '--tenant', TENANT, '--client-id', CLIENT_ID,
    '--refresh-token-file', rt, '--mailbox', USER];
  const outputs = [];
  await h.startBroker();
  try {
    const first = await account(importArgs);
    outputs.push(first);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /asking the running broker/);
    assert.equal(first.stdout, 'Imported account imported (refresh token generation 1).\n');
    // As on the direct path, importing again replaces the refresh token (the next generation).
    const again = await account(importArgs);
    outputs.push(again);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, 'Imported account imported (refresh token generation 2).\n');
    const show = await account(['show', 'imported', '--json']);
    outputs.push(show);
    assert.equal(show.code, 0, show.stderr);
    const j = JSON.parse(show.stdout);
    assert.equal(j.flow, 'refresh-token');
    assert.equal(j.mailbox, USER);
    assert.equal(j.refresh_token.generation, 2);
    const audit = fs.readFileSync(h.p('audit.log'), 'utf8');
    assert.match(audit, /"account_added"/);
    assert.ok(!audit.includes(RT_CANARY), 'the audit log holds no refresh token');
    assert.ok(!h.brokerLog().includes(RT_CANARY), 'the broker log holds no refresh token');
  } finally {
    await h.stopBroker();
  }
  const direct = await account(importArgs);
  outputs.push(direct);
  assert.equal(direct.code, 0, direct.stderr);
  assert.match(direct.stderr, /no broker listens on .*; opening the token directly/);
  assert.equal(direct.stdout, 'Imported account imported (refresh token generation 3).\n');
  for (const r of outputs) {
    assert.ok(!r.stdout.includes(RT_CANARY) && !r.stderr.includes(RT_CANARY), 'import printed the token');
  }
  fs.rmSync(rt, { force: true });
});

test('show prints the token and device endpoints the account uses, with and without the broker', { timeout: 120000 }, async () => {
  // The account imported above has no authority of its own: the configuration's applies.
  const authority = h.configValue('identity', 'authority');
  const token = `${authority}/${TENANT}/oauth2/v2.0/token`;
  const device = `${authority}/${TENANT}/oauth2/v2.0/devicecode`;
  const check = (text, json, what) => {
    assert.equal(text.code, 0, `${what}: ${text.stderr}`);
    assert.doesNotMatch(text.stdout, /configured default/, what);
    assert.ok(text.stdout.split('\n').some((l) => /^Token endpoint: +/.test(l) && l.endsWith(` ${token}`)),
      `${what}: ${text.stdout}`);
    assert.ok(text.stdout.split('\n').some((l) => /^Device endpoint: +/.test(l) && l.endsWith(` ${device}`)),
      `${what}: ${text.stdout}`);
    assert.equal(json.code, 0, `${what} --json: ${json.stderr}`);
    const j = JSON.parse(json.stdout);
    assert.equal(j.effective_token_endpoint, token, what);
    assert.equal(j.effective_device_endpoint, device, what);
  };
  const direct = await account(['show', 'imported']);
  check(direct, await account(['show', 'imported', '--json']), 'no broker');
  await h.startBroker();
  try {
    const via = await account(['show', 'imported', '-v']);
    assert.match(via.stderr, /asking the running broker/);
    check(via, await account(['show', 'imported', '--json']), 'through the broker');
    // One account view, one renderer: the same text whichever path ran. The age may have moved
    // on between the two runs; and the flow of an account imported directly is stored with the
    // older spelling "refresh_token", which the direct path shows as stored (above) and the
    // broker by its canonical name (admin.test.js).
    const ageless = (out) => out.replace(/, age .*$/m, ', age ...').replace(/^(Flow: +)refresh_token$/m, '$1refresh-token');
    assert.equal(ageless(via.stdout), ageless(direct.stdout), 'account show prints the same with and without the broker');
  } finally {
    await h.stopBroker();
  }
});
