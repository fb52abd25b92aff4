'use strict';
// The password flow (ROPC) through the admin socket: the password is used once to obtain a
// refresh token and never stored or logged; users it cannot work for are told to use the
// device flow; a wrong password is never retried; a confidential-only app is needs_config.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, TENANT } = require('./harness');

const PUBLIC_APP = '44444444-4444-4444-8444-444444444444';
const CONFIDENTIAL_APP = '55555555-5555-4555-8555-555555555555';
const PASSWORD = `PW-CANARY-${crypto.randomBytes(10).toString('hex')}`;
const WRONG = `PW-WRONG-${crypto.randomBytes(10).toString('hex')}`;

let h;
before(async () => {
  h = await setup({
    profiles: {
      alerts: { account: 'alerts', rules: ['peer required uid root'] },
      ropc: { account: 'ropc', rules: ['peer required uid root'] },
    },
  });
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: PUBLIC_APP, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/apps', {
    client_id: CONFIDENTIAL_APP, tenant: TENANT, public_client: false, secrets: ['x'],
  });
  for (const u of [
    { username: 'alice@contoso.com', password: PASSWORD, tenant: TENANT },
    { username: 'bob@contoso.com', password: PASSWORD, tenant: TENANT, mfa_required: true },
    { username: 'carol@contoso.com', password: PASSWORD, tenant: TENANT, federated: true, password_hash_sync: false },
    { username: 'dave@contoso.com', password: PASSWORD, tenant: TENANT, error_code: 50055 },
  ]) await h.emulatorAdmin('POST', '/admin/users', u);
});
after(async () => {
  if (h) await h.teardown();
});

const add = (account, username, password, extra = {}) => h.adminRequest({
  op: 'account.add', account, flow: 'password', tenant: TENANT, client_id: PUBLIC_APP, username, password,
  mailbox: username, ...extra,
});

test('password: sign-in stores a refresh token and the account issues tokens', async () => {
  const r = await add('ropc', 'alice@contoso.com', PASSWORD);
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.stage, 'done');
  assert.ok(r.scopes.includes('https://graph.microsoft.com/Mail.Send'), JSON.stringify(r));
  const show = await h.adminRequest({ op: 'account.show', account: 'ropc' });
  assert.equal(show.account.flow, 'password');
  assert.equal(show.account.username, 'alice@contoso.com');
  assert.equal(show.account.refresh_token.generation, 1);
  // The sign-in's access token is cached: the first token needs no upstream request.
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'ropc' });
  assert.equal(token.ok, true, JSON.stringify(token));
  let counters = await h.counters();
  assert.equal(counters.token_by_grant.password, 1);
  assert.equal(counters.token_by_grant.refresh_token, undefined);
  // The stored refresh token works: a token that must outlive the cached one is refreshed.
  const fresh = await h.rawRequest({ v: 1, op: 'token', profile: 'ropc', min_ttl: 7200 });
  assert.equal(fresh.ok, true, JSON.stringify(fresh));
  counters = await h.counters();
  assert.equal(counters.token_by_grant.refresh_token, 1);
  assert.ok(h.auditLines().some((l) => l.event === 'account_added' && l.account === 'ropc'));
});

test('password: account.login signs in again with a new password', async () => {
  const r = await h.adminRequest({ op: 'account.login', account: 'ropc', password: PASSWORD });
  assert.equal(r.ok, true, JSON.stringify(r));
  const show = await h.adminRequest({ op: 'account.show', account: 'ropc' });
  assert.equal(show.account.refresh_token.generation >= 2, true);
  const missing = await h.adminRequest({ op: 'account.login', account: 'ropc' });
  assert.equal(missing.error, 'bad_request');
});

test('password: MFA users are told to use the device flow', async () => {
  const r = await add('bob', 'bob@contoso.com', PASSWORD);
  assert.equal(r.error, 'sign_in_failed', JSON.stringify(r));
  assert.match(r.message, /multi-factor/);
  assert.match(r.message, /--flow device/);
  assert.equal((await h.adminRequest({ op: 'account.show', account: 'bob' })).error, 'not_found');
  assert.ok(h.auditLines().some((l) => l.event === 'sign_in_failed' && l.account === 'bob'));
});

test('password: a federated user and an expired password say what to do', async () => {
  const carol = await add('carol', 'carol@contoso.com', PASSWORD);
  assert.equal(carol.error, 'sign_in_failed', JSON.stringify(carol));
  assert.match(carol.message, /--flow device/);
  const dave = await add('dave', 'dave@contoso.com', PASSWORD);
  assert.equal(dave.error, 'sign_in_failed', JSON.stringify(dave));
  assert.match(dave.message, /expired/);
});

test('password: a wrong password is a clear failure and is sent exactly once', async () => {
  await h.resetCounters();
  const r = await add('wrong', 'alice@contoso.com', WRONG);
  assert.equal(r.error, 'sign_in_failed', JSON.stringify(r));
  assert.match(r.message, /wrong user name or password/);
  const counters = await h.counters();
  assert.equal(counters.token_by_grant.password, 1);
});

test('password: an app without public client flows is needs_config', async () => {
  const r = await add('confidential', 'alice@contoso.com', PASSWORD, { client_id: CONFIDENTIAL_APP });
  assert.equal(r.error, 'needs_config', JSON.stringify(r));
  assert.match(r.message, /Allow public client flows/);
});

test('password: the passwords appear in no log, audit record or reply', async () => {
  for (const canary of [PASSWORD, WRONG]) {
    assert.ok(!h.brokerLog().includes(canary), 'broker log');
    assert.ok(!h.auditText().includes(canary), 'audit log');
  }
  const list = await h.adminRequest({ op: 'account.list' });
  assert.ok(!JSON.stringify(list).includes(PASSWORD));
});
