'use strict';
// Any OAuth 2.0 server: accounts with explicit token_endpoint / device_endpoint talk RFC 6749 /
// 8628 / 7523 only (the emulator's generic mode, /oauth/*: no Microsoft parameters needed,
// every refresh rotates strictly, errors are bare {"error","error_description"}).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, TENANT } = require('./harness');

const PUBLIC_APP = '77777777-7777-4777-8777-777777777777';
const SECRET_APP = '88888888-8888-4888-8888-888888888888';
const CERT_APP = '99999999-9999-4999-8999-999999999999';
const SECRET = `SECRET-CANARY-${crypto.randomBytes(12).toString('hex')}`;
const PASSWORD = `PW-CANARY-${crypto.randomBytes(10).toString('hex')}`;
const MAIL_SEND = 'https://graph.microsoft.com/Mail.Send';

let h;
let endpoints;
before(async () => {
  const profiles = {};
  for (const name of ['alerts', 'gdev', 'gpw', 'gsecret', 'gcert']) {
    profiles[name] = { account: name, scopes: [MAIL_SEND], rules: ['peer required uid root'] };
  }
  h = await setup({ profiles });
  const base = `https://127.0.0.1:${h.emuPorts.port}/oauth`;
  endpoints = { token_endpoint: `${base}/token`, device_endpoint: `${base}/device_authorization` };
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: PUBLIC_APP, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: SECRET_APP, tenant: TENANT, public_client: false, secrets: [SECRET] });
  await h.emulatorAdmin('POST', '/admin/users', { username: 'alice@contoso.com', password: PASSWORD, tenant: TENANT });
  await h.emulatorAdmin('POST', '/admin/config', { device_interval: 1 });
});
after(async () => {
  if (h) await h.teardown();
});

const add = (account, fields) => h.adminRequest({ op: 'account.add', account, tenant: TENANT, ...endpoints, ...fields });

async function threeTokens(profile) {
  const first = await h.rawRequest({ v: 1, op: 'token', profile });
  assert.equal(first.ok, true, JSON.stringify(first));
  // min_ttl above the lifetime forces upstream requests (rotations for delegated ones: the
  // second one uses the refresh token the first one rotated in)
  for (let i = 0; i < 2; i++) {
    const again = await h.rawRequest({ v: 1, op: 'token', profile, min_ttl: 7200 });
    assert.equal(again.ok, true, JSON.stringify(again));
  }
}

test('generic: device flow with verification_uri_complete, then strict rotation', async () => {
  await h.resetCounters();
  const c = await h.adminClient();
  try {
    await c.send({ v: 1, op: 'account.add', account: 'gdev', flow: 'device', tenant: TENANT, client_id: PUBLIC_APP,
      scopes: [MAIL_SEND], ...endpoints });
    const first = await c.readFrame();
    assert.equal(first.stage, 'device_code', JSON.stringify(first));
    assert.match(first.user_code, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.ok(first.verification_uri_complete, JSON.stringify(first));
    assert.match(first.message, /enter the code/);
    await h.emulatorAdmin('POST', '/admin/device/approve', { user_code: first.user_code });
    const done = await c.readFrame(20000);
    assert.equal(done.ok, true, JSON.stringify(done));
  } finally {
    c.close();
  }
  await threeTokens('gdev');
  const counters = await h.counters();
  assert.equal(counters.token, 0, 'nothing went to the Microsoft endpoint');
  assert.equal(counters.oauth_replays, 0);
  assert.ok(counters.oauth_token_by_grant.refresh_token >= 2);
});

test('generic: password', async () => {
  const r = await add('gpw', { flow: 'password', client_id: PUBLIC_APP, username: 'alice@contoso.com', password: PASSWORD, scopes: [MAIL_SEND] });
  assert.equal(r.ok, true, JSON.stringify(r));
  await threeTokens('gpw');
  const wrong = await add('gpw2', { flow: 'password', client_id: PUBLIC_APP, username: 'alice@contoso.com', password: 'nope' });
  assert.equal(wrong.error, 'sign_in_failed', JSON.stringify(wrong));
});

test('generic: client secret (client_secret_post)', async () => {
  const r = await add('gsecret', { flow: 'client-secret', client_id: SECRET_APP, client_secret: SECRET });
  assert.equal(r.ok, true, JSON.stringify(r));
  await threeTokens('gsecret');
});

test('generic: client certificate (private_key_jwt, aud = the token endpoint)', async () => {
  const kg = await h.cli(['account', 'keygen', 'gcert', '--config', h.conf]);
  assert.equal(kg.code, 0, kg.stderr);
  const pem = kg.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/)[0];
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: CERT_APP, tenant: TENANT, public_client: false, certificates: [pem] });
  const r = await add('gcert', { flow: 'client-certificate', client_id: CERT_APP });
  assert.equal(r.ok, true, JSON.stringify(r));
  await threeTokens('gcert');
});

test('generic: a device_endpoint without a token_endpoint is refused; http is refused', async () => {
  const r = await h.adminRequest({ op: 'account.add', account: 'gx', flow: 'device', tenant: TENANT, client_id: PUBLIC_APP,
    device_endpoint: endpoints.device_endpoint });
  assert.equal(r.error, 'bad_request');
  const http = await h.adminRequest({ op: 'account.add', account: 'gx', flow: 'device', tenant: TENANT, client_id: PUBLIC_APP,
    token_endpoint: 'http://127.0.0.1/oauth/token', device_endpoint: endpoints.device_endpoint });
  assert.equal(http.error, 'bad_request');
  for (const canary of [SECRET, PASSWORD]) {
    assert.ok(!h.brokerLog().includes(canary));
    assert.ok(!h.auditText().includes(canary));
  }
});
