'use strict';
// Issue 9 items 9 and 10 end to end: the client-assertion algorithm (PS256 by default, RS256 by
// the account's assertion_alg, or as a fallback when the token cannot sign RSA-PSS or the
// server answers AADSTS700027 to a PS256 assertion), client_secret_basic (client_auth basic)
// against a server that takes nothing else, and generic OpenID Connect sign-ins, which get a
// refresh token only for offline_access.
//
// The emulator counts client assertions by header alg (counters.assertion_by_alg), refuses
// PS256 ones with 700027 when assertion_refuse_ps256 is set, refuses client_secret_post when
// generic_client_auth is basic, and withholds the refresh token of an OpenID Connect sign-in
// without offline_access.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, waitFor, TENANT } = require('./harness');

const FAULT_POINTS = process.env.CREDBROKER_FAULT_POINTS === '1';
const CERT_APP = '33333333-3333-4333-8333-333333333333';
const CERT_APP2 = '44444444-3333-4333-8333-333333333333';
const CERT_APP3 = '55555555-3333-4333-8333-333333333333';
const PUBLIC_APP = '77777777-7777-4777-8777-777777777777';
const SECRET_APP = '88888888-8888-4888-8888-888888888888';
const SECRET = `SECRET-CANARY-${crypto.randomBytes(12).toString('hex')}`;
const PASSWORD = `PW-CANARY-${crypto.randomBytes(10).toString('hex')}`;
const GRAPH_DEFAULT = 'https://graph.microsoft.com/.default';
const MAIL_SEND = 'https://graph.microsoft.com/Mail.Send';
const ACCOUNTS = ['appcert', 'appcert2', 'apprs', 'gbasic', 'goidc'];

let h;
let endpoints;
before(async () => {
  const profiles = {};
  for (const name of ['alerts', ...ACCOUNTS]) {
    profiles[name] = { account: name, scopes: [MAIL_SEND], rules: ['peer required uid root'] };
  }
  h = await setup({ profiles });
  const base = `https://127.0.0.1:${h.emuPorts.port}/oauth`;
  endpoints = { token_endpoint: `${base}/token`, device_endpoint: `${base}/device_authorization` };
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: PUBLIC_APP, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: SECRET_APP, tenant: TENANT, public_client: false, secrets: [SECRET] });
  await h.emulatorAdmin('POST', '/admin/users', { username: 'alice@contoso.com', password: PASSWORD, tenant: TENANT });
});
after(async () => {
  if (h) await h.teardown();
});

// A key for account in the token, its certificate registered for clientId in the emulator.
async function keyAndApp(account, clientId) {
  const kg = await h.cli(['account', 'keygen', account, '--config', h.conf]);
  assert.equal(kg.code, 0, kg.stderr);
  const pem = kg.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/)[0];
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: clientId, tenant: TENANT, public_client: false, certificates: [pem] });
}

async function restartWith(brokerEnv) {
  h.opts.brokerEnv = brokerEnv;
  await h.restartBroker();
}

const algs = async () => (await h.counters()).assertion_by_alg || {};

// A token, retried while the broker answers unavailable (a fallback's retry is a transient
// failure's, seconds away).
async function tokenEventually(profile) {
  let last;
  await waitFor(`a token for ${profile}`, async () => {
    last = await h.rawRequest({ v: 1, op: 'token', profile });
    if (!last.ok && last.error !== 'unavailable') throw new Error(JSON.stringify(last));
    return last.ok;
  }, { timeoutMs: 20000, intervalMs: 250 });
  return last;
}

test('a token without CKM_SHA256_RSA_PKCS_PSS: RS256 assertions, with a log line; PS256 again with PSS', { timeout: 60000 }, async (t) => {
  if (!FAULT_POINTS) {
    t.skip('needs a build with -Dfault_points=true (CREDBROKER_TEST_NO_PSS=1); SoftHSM2 signs PSS');
    return;
  }
  await keyAndApp('appcert', CERT_APP);
  await restartWith({ CREDBROKER_TEST_NO_PSS: '1' });
  await h.resetCounters();
  const r = await h.adminRequest({
    op: 'account.add', account: 'appcert', flow: 'client-certificate', tenant: TENANT, client_id: CERT_APP,
    scopes: [GRAPH_DEFAULT],
  });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.match(h.brokerLog(), /Account appcert: the token cannot sign RSA-PSS \(no CKM_SHA256_RSA_PKCS_PSS\): sending an RS256 client assertion/);
  // A new broker instance (empty cache) of the same store: its refresh signs RS256 too.
  await restartWith({ CREDBROKER_TEST_NO_PSS: '1' });
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'appcert' });
  assert.equal(token.ok, true, JSON.stringify(token));
  assert.deepEqual(await algs(), { RS256: 2 }, 'RS256 only, never a PS256 the token cannot sign');

  // The same token with PSS: the default, PS256, comes back.
  await restartWith({});
  await h.resetCounters();
  const ps = await h.rawRequest({ v: 1, op: 'token', profile: 'appcert' });
  assert.equal(ps.ok, true, JSON.stringify(ps));
  assert.deepEqual(await algs(), { PS256: 1 });
});

test('AADSTS700027 for a PS256 assertion: the broker signs RS256 and succeeds, and says so', { timeout: 60000 }, async () => {
  await keyAndApp('appcert2', CERT_APP2);
  await restartWith({});
  await h.emulatorAdmin('POST', '/admin/config', { assertion_refuse_ps256: true });
  try {
    // Provisioning: the PS256 sign-in is refused, the RS256 retry goes through.
    await h.resetCounters();
    const logBefore = h.brokerLog().length;
    const r = await h.adminRequest({
      op: 'account.add', account: 'appcert2', flow: 'client-certificate', tenant: TENANT, client_id: CERT_APP2,
      scopes: [GRAPH_DEFAULT],
    });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(await algs(), { PS256: 1, RS256: 1 });
    const fallbackLine = /Account appcert2: the server refused the PS256 client assertion \(AADSTS700027\); trying RS256/;
    assert.match(h.brokerLog().slice(logBefore), fallbackLine);

    // A restarted broker has forgotten the fallback: its first refresh is refused, the next
    // one is RS256 and the client gets its token.
    await restartWith({});
    await h.resetCounters();
    const token = await tokenEventually('appcert2');
    assert.equal(token.ok, true);
    const seen = await algs();
    assert.equal(seen.PS256, 1, `one refused PS256 assertion: ${JSON.stringify(seen)}`);
    assert.equal(seen.RS256, 1, `then RS256: ${JSON.stringify(seen)}`);
    assert.match(h.brokerLog().slice(-20000), fallbackLine);
    const c = await h.counters();
    assert.equal(c.token_success, 1);
    // It stays RS256 while the broker runs: a new scope set is one RS256 request.
    const status = await h.adminRequest({ op: 'status' });
    assert.equal(status.accounts.find((a) => a.account === 'appcert2').state, 'ok');
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { assertion_refuse_ps256: false });
  }
});

test('a certificate the server does not know: one PS256 and one RS256 attempt, then needs_config with advice', { timeout: 60000 }, async () => {
  // appbad's own key, but the app registration holds appcert2's certificate.
  const kg = await h.cli(['account', 'keygen', 'appbad', '--config', h.conf]);
  assert.equal(kg.code, 0, kg.stderr);
  await h.resetCounters();
  const r = await h.adminRequest({
    op: 'account.add', account: 'appbad', flow: 'client-certificate', tenant: TENANT, client_id: CERT_APP2,
    scopes: [GRAPH_DEFAULT],
  });
  assert.equal(r.error, 'needs_config', JSON.stringify(r));
  assert.match(r.message, /700027/);
  assert.match(r.message, /also as RS256/);
  assert.match(r.message, /compare thumbprints/);
  assert.deepEqual(await algs(), { PS256: 1, RS256: 1 }, 'the fallback is tried once, not in a loop');
});

test('assertion_alg RS256: RS256 from the first request, kept in the metadata; bad settings refused', { timeout: 60000 }, async () => {
  await keyAndApp('apprs', CERT_APP3);
  const bad = await h.adminRequest({
    op: 'account.add', account: 'apprs', flow: 'client-certificate', tenant: TENANT, client_id: CERT_APP3,
    assertion_alg: 'HS256',
  });
  assert.equal(bad.error, 'bad_request', JSON.stringify(bad));
  assert.match(bad.message, /assertion_alg PS256 or RS256/);
  const badAuth = await h.adminRequest({
    op: 'account.add', account: 'apprs', flow: 'client-secret', tenant: TENANT, client_id: SECRET_APP,
    client_secret: SECRET, client_auth: 'digest',
  });
  assert.equal(badAuth.error, 'bad_request', JSON.stringify(badAuth));

  await h.emulatorAdmin('POST', '/admin/config', { assertion_refuse_ps256: true });
  try {
    await h.resetCounters();
    const r = await h.adminRequest({
      op: 'account.add', account: 'apprs', flow: 'client-certificate', tenant: TENANT, client_id: CERT_APP3,
      scopes: [GRAPH_DEFAULT], assertion_alg: 'RS256',
    });
    assert.equal(r.ok, true, JSON.stringify(r));
    await restartWith({});
    const token = await h.rawRequest({ v: 1, op: 'token', profile: 'apprs' });
    assert.equal(token.ok, true, JSON.stringify(token));
    assert.deepEqual(await algs(), { RS256: 2 }, 'no PS256 attempt at all');
    const show = await h.adminRequest({ op: 'account.show', account: 'apprs' });
    assert.equal(show.account.assertion_alg, 'RS256', JSON.stringify(show.account));
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { assertion_refuse_ps256: false });
  }
});

test('client_auth basic: a client secret in an HTTP Basic header, for a server that takes nothing else', { timeout: 60000 }, async () => {
  await h.emulatorAdmin('POST', '/admin/config', { generic_client_auth: 'basic' });
  try {
    await h.resetCounters();
    const post = await h.adminRequest({ op: 'account.add', account: 'gbasic', tenant: TENANT, ...endpoints,
      flow: 'client-secret', client_id: SECRET_APP, client_secret: SECRET });
    assert.equal(post.ok, false, `client_secret_post must be refused here: ${JSON.stringify(post)}`);
    assert.equal((await h.counters()).oauth_errors, 1);

    const r = await h.adminRequest({ op: 'account.add', account: 'gbasic', tenant: TENANT, ...endpoints,
      flow: 'client-secret', client_id: SECRET_APP, client_secret: SECRET, client_auth: 'basic' });
    assert.equal(r.ok, true, JSON.stringify(r));
    // A new broker instance reads client_auth from the stored metadata for its refresh.
    await restartWith({});
    await h.resetCounters();
    const token = await h.rawRequest({ v: 1, op: 'token', profile: 'gbasic' });
    assert.equal(token.ok, true, JSON.stringify(token));
    const c = await h.counters();
    assert.equal(c.oauth_token_by_grant.client_credentials, 1);
    assert.equal(c.oauth_errors, 0);
    const show = await h.adminRequest({ op: 'account.show', account: 'gbasic' });
    assert.equal(show.account.client_auth, 'basic', JSON.stringify(show.account));
    assert.ok(!h.brokerLog().includes(SECRET));
    assert.ok(!h.auditText().includes(SECRET));
    assert.ok(!h.brokerLog().includes(Buffer.from(`${SECRET_APP}:${SECRET}`).toString('base64').slice(0, 40)));
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { generic_client_auth: 'any' });
  }
});

test('generic OpenID Connect: openid brings offline_access and a refresh token; without it the error says to add it', { timeout: 60000 }, async () => {
  const r = await h.adminRequest({ op: 'account.add', account: 'goidc', tenant: TENANT, ...endpoints,
    flow: 'password', client_id: PUBLIC_APP, username: 'alice@contoso.com', password: PASSWORD,
    scopes: ['openid', MAIL_SEND] });
  assert.equal(r.ok, true, JSON.stringify(r));
  const show = await h.adminRequest({ op: 'account.show', account: 'goidc' });
  assert.equal(show.account.refresh_token.generation, 1, JSON.stringify(show.account));
  await restartWith({});
  await h.resetCounters();
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'goidc' });
  assert.equal(token.ok, true, JSON.stringify(token));
  assert.equal((await h.counters()).oauth_token_by_grant.refresh_token, 1, 'the token came from the refresh token');

  // A server that wants offline_access even without openid: the broker cannot know, the
  // administrator is told what to add.
  await h.emulatorAdmin('POST', '/admin/config', { generic_refresh_needs_offline_access: true });
  try {
    const no = await h.adminRequest({ op: 'account.add', account: 'goidc2', tenant: TENANT, ...endpoints,
      flow: 'password', client_id: PUBLIC_APP, username: 'alice@contoso.com', password: PASSWORD,
      scopes: [MAIL_SEND] });
    assert.equal(no.error, 'sign_in_failed', JSON.stringify(no));
    assert.match(no.message, /no refresh token/);
    assert.match(no.message, /add offline_access to the account's scopes/);
    const gone = await h.adminRequest({ op: 'account.show', account: 'goidc2' });
    assert.equal(gone.error, 'not_found', 'nothing stored');
  } finally {
    await h.emulatorAdmin('POST', '/admin/config', { generic_refresh_needs_offline_access: false });
  }
  for (const canary of [SECRET, PASSWORD]) {
    assert.ok(!h.brokerLog().includes(canary));
    assert.ok(!h.auditText().includes(canary));
  }
});
