'use strict';
// App-only flows through the admin socket: client-secret (the secret goes into the HSM) and
// client-certificate (PS256 assertions signed in the token), and the refresh-token import.
// Each end to end: account.add, then tokens through the client socket with client_credentials.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, TENANT } = require('./harness');

const APP_SECRET_ID = '22222222-2222-4222-8222-222222222222';
const APP_CERT_ID = '33333333-3333-4333-8333-333333333333';
const SECRET = `SECRET-CANARY-${crypto.randomBytes(12).toString('hex')}`;
const GRAPH_DEFAULT = 'https://graph.microsoft.com/.default';
const MAIL_SEND = 'https://graph.microsoft.com/Mail.Send';

let h;
before(async () => {
  h = await setup({
    profiles: {
      alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
      appsecret: { account: 'appsecret', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
      appcert: { account: 'appcert', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
    },
  });
  await h.emulatorAdmin('POST', '/admin/apps', {
    client_id: APP_SECRET_ID, tenant: TENANT, public_client: false, secrets: [{ value: SECRET, expires_in: 86400 }],
  });
});
after(async () => {
  if (h) await h.teardown();
});

const pemBlock = (text, label) => {
  const m = text.match(new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----\\n?`));
  return m && m[0];
};

test('client-secret: a wrong secret is refused with needs_config and nothing is stored', async () => {
  const r = await h.adminRequest({
    op: 'account.add', account: 'appsecret', flow: 'client-secret', tenant: TENANT, client_id: APP_SECRET_ID,
    client_secret: `${SECRET}-wrong`,
  });
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error, 'needs_config');
  assert.match(r.message, /7000215/);
  const show = await h.adminRequest({ op: 'account.show', account: 'appsecret' });
  assert.equal(show.error, 'not_found');
});

test('client-secret: account.add stores the secret in the HSM; tokens come from client_credentials', async () => {
  const expires = Math.floor(Date.now() / 1000) + 86400 * 30;
  const r = await h.adminRequest({
    op: 'account.add', account: 'appsecret', flow: 'client-secret', tenant: TENANT, client_id: APP_SECRET_ID,
    client_secret: SECRET, mailbox: 'alerts@contoso.com', secret_expires_at: expires,
  });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.stage, 'done');
  assert.equal(r.account, 'appsecret');
  if (h.store === 'wrapped') {
    // Sealed in the account's file (kinds bit 3: a client secret), never in the clear.
    const file = h.sealedFile('appsecret');
    assert.ok(file && (Number(file.kinds) & (1 << 3)), JSON.stringify(file));
    assert.ok(!JSON.stringify(file).includes(SECRET));
  } else {
    assert.ok((await h.dataObjectLabels()).includes('appsecret/client_secret'));
  }
  const show = await h.adminRequest({ op: 'account.show', account: 'appsecret' });
  assert.equal(show.account.flow, 'client-secret');
  assert.equal(show.account.client_secret, true);
  assert.equal(show.account.refresh_token, null);
  assert.equal(show.account.secret_expires_at, expires);

  await h.resetCounters();
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'appsecret' });
  assert.equal(token.ok, true, JSON.stringify(token));
  const counters = await h.counters();
  assert.deepEqual(Object.keys(counters.token_by_grant), ['client_credentials']);
  // app-only: the token sends as a named mailbox
  const again = await h.adminRequest({ op: 'account.add', account: 'appsecret', flow: 'client-secret',
    tenant: TENANT, client_id: APP_SECRET_ID, client_secret: SECRET });
  assert.equal(again.error, 'exists');

  const status = await h.adminRequest({ op: 'status' });
  const row = status.accounts.find((a) => a.account === 'appsecret');
  assert.equal(row.state, 'ok');
  assert.equal(row.credential_expires_at, expires);
  assert.ok(row.token_expires_at > 0);
  assert.equal(row.refresh_token_stored_at, undefined);
  assert.ok(!h.brokerLog().includes(SECRET));
  assert.ok(!h.auditText().includes(SECRET));
});

test('client-certificate: needs a key first, then signs a fresh assertion per request', async () => {
  const nokey = await h.adminRequest({
    op: 'account.add', account: 'appcert', flow: 'client-certificate', tenant: TENANT, client_id: APP_CERT_ID,
  });
  assert.equal(nokey.error, 'needs_config', JSON.stringify(nokey));
  assert.match(nokey.message, /keygen/);

  const kg = await h.cli(['account', 'keygen', 'appcert', '--config', h.conf]);
  assert.equal(kg.code, 0, kg.stderr);
  const pem = pemBlock(kg.stdout, 'CERTIFICATE');
  await h.emulatorAdmin('POST', '/admin/apps', {
    client_id: APP_CERT_ID, tenant: TENANT, public_client: false, certificates: [pem],
  });
  await h.resetCounters();
  const r = await h.adminRequest({
    op: 'account.add', account: 'appcert', flow: 'client-certificate', tenant: TENANT, client_id: APP_CERT_ID,
    scopes: [GRAPH_DEFAULT],
  });
  assert.equal(r.ok, true, JSON.stringify(r));
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'appcert' });
  assert.equal(token.ok, true, JSON.stringify(token));
  // A second token forces a second upstream request: a new assertion (a reused jti is 50013).
  const second = await h.rawRequest({ v: 1, op: 'token', profile: 'appcert', min_ttl: 7200 });
  assert.equal(second.ok, true, JSON.stringify(second));
  const counters = await h.counters();
  assert.equal(counters.token_by_grant.client_credentials, 3);
  assert.equal(counters.token_errors, 0);
  const status = await h.adminRequest({ op: 'status' });
  const row = status.accounts.find((a) => a.account === 'appcert');
  assert.ok(row.credential_expires_at > Date.now() / 1000, JSON.stringify(row));
});

test('refresh-token: an import through the admin socket', async () => {
  const rt = `RT-IMPORT-${crypto.randomBytes(8).toString('hex')}`;
  await h.registerRefreshToken(rt);
  const r = await h.adminRequest({
    op: 'account.add', account: 'imported', flow: 'refresh-token', tenant: TENANT,
    client_id: '11111111-2222-3333-4444-555555555555', refresh_token: rt,
  });
  assert.equal(r.ok, true, JSON.stringify(r));
  const show = await h.adminRequest({ op: 'account.show', account: 'imported' });
  assert.equal(show.account.refresh_token.generation, 1);
  assert.ok(!JSON.stringify(show).includes(rt));
  assert.ok(!h.brokerLog().includes(rt));
  const bad = await h.adminRequest({ op: 'account.add', account: 'imported2', flow: 'refresh-token',
    tenant: TENANT, client_id: 'x', refresh_token: 'has space' });
  assert.equal(bad.error, 'bad_request');
});
