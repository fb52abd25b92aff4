#!/usr/bin/env node
// selftest-flows.js — end-to-end checks of the emulator's device code, ROPC and
// client-credentials grants (secret and certificate assertion), app registrations, users
// and the generic "any OAuth 2.0 server" mode. Complements selftest.sh (refresh grant,
// Graph, faults, persistence). Node 20 standard library plus certtool (for a test
// certificate). Prints "ok N - ..." lines and "N passed, 0 failed"; stops at the first
// failure with the emulator log tail. KEEP=1 keeps the work directory.

'use strict';

const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const http = require('http');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const HERE = __dirname;
const TENANT = 'contoso.onmicrosoft.com';
const GRAPH = 'https://graph.microsoft.com';
const MAIL_SEND = `${GRAPH}/Mail.Send`;
const PUBLIC_APP = '11111111-1111-4111-8111-111111111111';
const CONF_APP = '22222222-2222-4222-8222-222222222222';
const CERT_APP = '33333333-3333-4333-8333-333333333333';
const NOCONSENT_APP = '44444444-4444-4444-8444-444444444444';
const POLICY_APP = '55555555-5555-4555-8555-555555555555';
const SECRET = 'sekr~et-Value.1234567890abcdefghijklmnop';
const EXPIRED_SECRET = 'old~secret-Value.0987654321zyxwvutsrqpo';
const PASSWORD = 'Canary-P4ssw0rd-must-never-be-logged!';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

const work = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'emulator-flows.'));
const logFile = path.join(work, 'emulator.log');
let emu = null;
let port = 0;
let adminPort = 0;
let ca;
let passed = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cleanup() {
  if (emu && emu.exitCode === null) emu.kill('SIGTERM');
  if (process.env.KEEP === '1') console.log(`work directory kept: ${work}`);
  else fs.rmSync(work, { recursive: true, force: true });
}

function ok(what) {
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

// --- HTTP helpers ---------------------------------------------------------------

function request(options, body) {
  return new Promise((resolve, reject) => {
    const mod = options.protocol === 'http:' ? http : https;
    const req = mod.request({ host: '127.0.0.1', ...options }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('aborted', () => reject(new Error('response aborted')));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error('request timed out')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function post(urlPath, form, headers = {}) {
  const body = new URLSearchParams(Object.entries(form).filter(([, v]) => v !== undefined)).toString();
  return request({
    port, path: urlPath, method: 'POST', ca, servername: 'localhost',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body), ...headers },
  }, body);
}

const token = (form, tenant = TENANT, headers = {}) => post(`/${tenant}/oauth2/v2.0/token`, form, headers);
const devicecode = (form, tenant = TENANT) => post(`/${tenant}/oauth2/v2.0/devicecode`, form);

async function admin(method, urlPath, body) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = text === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) };
  return request({ protocol: 'http:', port: adminPort, path: urlPath, method, headers }, text);
}

async function adminOk(method, urlPath, body) {
  const r = await admin(method, urlPath, body);
  assert.ok(r.status >= 200 && r.status < 300, `admin ${method} ${urlPath}: ${r.status} ${r.text}`);
  return r.json;
}

function sendMail(accessToken, mailbox = 'me') {
  const body = JSON.stringify({
    message: { subject: 's', body: { contentType: 'Text', content: 'c' }, toRecipients: [{ emailAddress: { address: 'oncall@example.com' } }] },
  });
  return request({
    port, path: `/v1.0/${mailbox}/sendMail`, method: 'POST', ca, servername: 'localhost',
    headers: { Authorization: `Bearer ${accessToken}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
  }, body);
}

// --- assertions on response shapes ------------------------------------------------

function expectAad(r, status, error, code, what) {
  assert.strictEqual(r.status, status, `${what}: HTTP ${r.status} ${r.text}`);
  const d = r.json;
  assert.ok(d, `${what}: not JSON: ${r.text}`);
  assert.strictEqual(d.error, error, `${what}: error ${d.error} (${r.text})`);
  assert.deepStrictEqual(d.error_codes, [code], `${what}: error_codes ${JSON.stringify(d.error_codes)} (${d.error_description})`);
  assert.match(d.error_description, new RegExp(`^AADSTS${code}: .+\\r\\nTrace ID: [0-9a-f-]{36}\\r\\nCorrelation ID: [0-9a-f-]{36}\\r\\nTimestamp: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ$`), what);
  assert.ok(UUID_RE.test(d.trace_id) && UUID_RE.test(d.correlation_id), `${what}: ids`);
  assert.strictEqual(d.error_uri, `https://login.microsoftonline.com/error?code=${code}`, what);
  return d;
}

function expectOAuth(r, status, error, what) {
  assert.strictEqual(r.status, status, `${what}: HTTP ${r.status} ${r.text}`);
  assert.ok(r.json, `${what}: not JSON`);
  assert.deepStrictEqual(Object.keys(r.json).sort(), ['error', 'error_description'], `${what}: exactly error + error_description: ${r.text}`);
  assert.strictEqual(r.json.error, error, `${what}: ${r.text}`);
  assert.ok(/no-store/.test(r.headers['cache-control'] || ''), `${what}: Cache-Control`);
}

function expectTokens(r, keys, what) {
  assert.strictEqual(r.status, 200, `${what}: HTTP ${r.status} ${r.text}`);
  assert.deepStrictEqual(Object.keys(r.json).sort(), [...keys].sort(), `${what}: fields ${Object.keys(r.json)}`);
  assert.ok(/no-store/.test(r.headers['cache-control'] || ''), `${what}: Cache-Control no-store`);
  return r.json;
}

// --- client assertions -------------------------------------------------------------

function makeCert(dir, name, expired = false) {
  fs.mkdirSync(dir, { recursive: true });
  const key = path.join(dir, `${name}-key.pem`);
  const cert = path.join(dir, `${name}.pem`);
  const tmpl = path.join(dir, `${name}.tmpl`);
  const validity = expired ? 'activation_date = "2020-01-01 00:00:00"\nexpiration_date = "2020-12-31 00:00:00"\n' : 'expiration_days = 30\n';
  fs.writeFileSync(tmpl, `cn = "${name}"\n${validity}signing_key\n`);
  execFileSync('certtool', ['--generate-privkey', '--key-type=rsa', '--bits=2048', '--no-text', '--outfile', key], { stdio: 'ignore' });
  execFileSync('certtool', ['--generate-self-signed', '--load-privkey', key, '--template', tmpl, '--outfile', cert], { stdio: 'ignore' });
  const pem = fs.readFileSync(cert, 'utf8');
  const der = new crypto.X509Certificate(pem).raw;
  return {
    pem,
    key: crypto.createPrivateKey(fs.readFileSync(key)),
    sha1: crypto.createHash('sha1').update(der).digest(),
    sha256: crypto.createHash('sha256').update(der).digest(),
  };
}

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

// opts: alg, header (extra/override), claims (override), saltLength, key
function makeAssertion(cert, clientId, aud, opts = {}) {
  const now = Math.floor(Date.now() / 1000);
  const alg = opts.alg || 'PS256';
  const header = { alg, typ: 'JWT', 'x5t#S256': cert.sha256.toString('base64url'), ...(opts.header || {}) };
  for (const [k, v] of Object.entries(header)) if (v === undefined) delete header[k];
  const claims = { aud, iss: clientId, sub: clientId, jti: crypto.randomUUID(), nbf: now, iat: now, exp: now + 600, ...(opts.claims || {}) };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  const data = `${b64u(header)}.${b64u(claims)}`;
  const key = opts.key || cert.key;
  const sig = alg === 'PS256'
    ? crypto.sign('sha256', Buffer.from(data), { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: opts.saltLength === undefined ? 32 : opts.saltLength })
    : crypto.sign('sha256', Buffer.from(data), { key, padding: crypto.constants.RSA_PKCS1_PADDING });
  return `${data}.${sig.toString('base64url')}`;
}

// --- start-up ------------------------------------------------------------------------

async function start() {
  execFileSync(path.join(HERE, 'gen-certs'), [path.join(work, 'certs')]);
  ca = fs.readFileSync(path.join(work, 'certs', 'ca.pem'));
  const ready = path.join(work, 'ready.json');
  const log = fs.openSync(logFile, 'a');
  emu = spawn(process.execPath, [path.join(HERE, 'emulator.js'),
    '--cert', path.join(work, 'certs', 'server.pem'), '--key', path.join(work, 'certs', 'server-key.pem'),
    '--state-dir', path.join(work, 'state'), '--ready-file', ready,
    '--device-interval', '1', '--device-expires-in', '10'], { stdio: ['ignore', log, log] });
  for (let i = 0; i < 100 && !fs.existsSync(ready); i++) await sleep(100);
  const info = JSON.parse(fs.readFileSync(ready, 'utf8'));
  port = info.port;
  adminPort = info.admin_port;
}

// --- the checks -------------------------------------------------------------------------

async function registerFixtures(certA, certOld) {
  let r = await admin('POST', '/admin/apps', { client_id: PUBLIC_APP, tenant: TENANT });
  assert.strictEqual(r.status, 201, r.text);
  assert.strictEqual(r.json.public_client, true);
  r = await admin('POST', '/admin/apps', {
    client_id: CONF_APP, tenant: TENANT, public_client: false,
    secrets: [{ value: SECRET, expires_in: 3600, id: 'current' }, { value: EXPIRED_SECRET, expires_in: -60, id: 'old' }],
  });
  assert.strictEqual(r.status, 201, r.text);
  assert.deepStrictEqual(r.json.secrets.map((s) => s.hint), ['sek', 'old']);
  assert.ok(!r.text.includes(SECRET), 'the admin answer must not echo a secret');
  r = await admin('POST', '/admin/apps', { client_id: CERT_APP, tenant: TENANT, public_client: false, certificates: [certA.pem, certOld.pem] });
  assert.strictEqual(r.status, 201, r.text);
  assert.strictEqual(r.json.certificates[0]['x5t#S256'], certA.sha256.toString('base64url'));
  assert.strictEqual(r.json.certificates[1].not_after, '2020-12-31T00:00:00.000Z');
  r = await admin('POST', '/admin/apps', { client_id: POLICY_APP, tenant: TENANT, public_client: false, secrets: [SECRET], mailboxes: ['Shared@contoso.com'] });
  assert.strictEqual(r.status, 201, r.text);
  r = await admin('POST', '/admin/apps', { client_id: NOCONSENT_APP, tenant: TENANT, consent: false, secrets: [SECRET] });
  assert.strictEqual(r.status, 201, r.text);
  r = await admin('POST', '/admin/apps', { client_id: 'x', tenant: 'common' });
  assert.strictEqual(r.status, 400, 'an app in tenant "common" is refused');
  r = await admin('POST', '/admin/apps', { client_id: 'x', tenant: TENANT, certificates: ['not a certificate'] });
  assert.strictEqual(r.status, 400, 'a bad certificate is refused');
  ok('admin: apps registered (public, secret with expiry, certificates, no consent, mailbox policy); bad input 400; secrets never echoed');

  for (const u of [
    { username: 'alice@contoso.com', password: PASSWORD, tenant: TENANT },
    { username: 'bob@contoso.com', password: PASSWORD, mfa_required: true },
    { username: 'carol@contoso.com', password: PASSWORD, federated: true },
    { username: 'dave@contoso.com', password: PASSWORD, federated: true, password_hash_sync: true, hrd_cloud_password_validation: true },
    { username: 'dora@contoso.com', password: PASSWORD, federated: true, password_hash_sync: true },
    { username: 'eve@contoso.com', password: PASSWORD, locked: true },
    { username: 'frank@contoso.com', password: PASSWORD },
    { username: 'gina@contoso.com', password: PASSWORD, error_code: 50055 },
    { username: 'hank@contoso.com', password: PASSWORD, error_code: 53003 },
  ]) {
    r = await admin('POST', '/admin/users', u);
    assert.strictEqual(r.status, 201, r.text);
    assert.ok(!r.text.includes(PASSWORD), 'the admin answer must not echo a password');
  }
  const users = await adminOk('GET', '/admin/users');
  assert.strictEqual(users.length, 9);
  assert.ok(!JSON.stringify(users).includes(PASSWORD));
  ok('admin: users registered (plain, MFA, federated with and without hash sync, locked); no password echoed');
}

async function deviceFlow() {
  await adminOk('POST', '/admin/counters/reset');
  // Request a code.
  const t0 = Date.now();
  let r = await devicecode({ client_id: PUBLIC_APP, scope: `${MAIL_SEND} offline_access openid` });
  const dc = expectTokens(r, ['user_code', 'device_code', 'verification_uri', 'expires_in', 'interval', 'message'], 'devicecode');
  assert.deepStrictEqual(Object.keys(r.json), ['user_code', 'device_code', 'verification_uri', 'expires_in', 'interval', 'message'], 'Entra field order');
  assert.strictEqual(dc.verification_uri, 'https://microsoft.com/devicelogin');
  assert.strictEqual(dc.expires_in, 10);
  assert.strictEqual(dc.interval, 1);
  assert.ok(dc.message.includes(dc.user_code) && dc.message.includes(dc.verification_uri), dc.message);
  assert.match(dc.user_code, /^[A-Z0-9]{9}$/);
  ok('devicecode: 200 with exactly user_code, device_code, verification_uri, expires_in, interval, message (no verification_uri_complete)');

  const poll = (code, client = PUBLIC_APP, tenant = TENANT) => token({ grant_type: DEVICE_GRANT, client_id: client, device_code: code }, tenant);

  // The first poll may come at once (RFC 8628 constrains the time between polls); the
  // next one, immediately after, is too early.
  r = await poll(dc.device_code);
  expectAad(r, 400, 'authorization_pending', 70016, 'first poll at once');
  r = await poll(dc.device_code);
  expectAad(r, 400, 'slow_down', 70016, 'second poll before the interval');
  let list = await adminOk('GET', '/admin/device');
  let entry = list.find((x) => x.user_code === dc.user_code);
  assert.strictEqual(entry.interval, 6, 'slow_down adds 5 s to the interval');
  assert.strictEqual(entry.status, 'pending');
  ok('device: an immediate first poll is fine; polling faster than the interval gives slow_down, and the interval grows by 5 s');

  // A second code to walk the happy path with the 1 s interval.
  r = await devicecode({ client_id: PUBLIC_APP, scope: `${MAIL_SEND} offline_access openid` });
  const dc2 = r.json;
  await sleep(1050);
  r = await poll(dc2.device_code);
  expectAad(r, 400, 'authorization_pending', 70016, 'pending');
  await sleep(1050);
  r = await poll(dc2.device_code);
  expectAad(r, 400, 'authorization_pending', 70016, 'still pending');
  ok('device: authorization_pending (70016) while the user has not approved, at the right pace');

  r = await admin('POST', '/admin/device/approve', { user_code: 'NOSUCHCODE' });
  assert.strictEqual(r.status, 404);
  entry = await adminOk('POST', '/admin/device/approve', { user_code: dc2.user_code.toLowerCase(), user: 'alice@contoso.com' });
  assert.strictEqual(entry.status, 'approved');
  r = await admin('POST', '/admin/device/approve', { user_code: dc2.user_code });
  assert.strictEqual(r.status, 409, 'approving twice');
  await sleep(1050);
  r = await poll(dc2.device_code);
  const tok = expectTokens(r, ['token_type', 'scope', 'expires_in', 'ext_expires_in', 'access_token', 'refresh_token', 'id_token'], 'device approved');
  assert.strictEqual(tok.scope, 'Mail.Send openid profile email', 'Entra: Graph short names, openid brings profile and email, offline_access not echoed');
  const idClaims = JSON.parse(Buffer.from(tok.id_token.split('.')[1], 'base64url').toString('utf8'));
  assert.strictEqual(idClaims.preferred_username, 'alice@contoso.com');
  r = await sendMail(tok.access_token);
  assert.strictEqual(r.status, 202, `sendMail with the device-code token: ${r.text}`);
  r = await token({ grant_type: 'refresh_token', client_id: PUBLIC_APP, refresh_token: tok.refresh_token, scope: `${MAIL_SEND} offline_access` });
  expectTokens(r, ['token_type', 'scope', 'expires_in', 'ext_expires_in', 'access_token', 'refresh_token'], 'refresh of a device-code token');
  await sleep(1050);
  r = await poll(dc2.device_code);
  expectAad(r, 400, 'invalid_grant', 70000, 'device code redeemed twice');
  ok('device: approve via admin (404 unknown, 409 twice); tokens with refresh + id_token; they send mail and refresh; no second redemption');

  // Declined, unknown, another client's, expired.
  r = await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' });
  const dc3 = r.json;
  await adminOk('POST', '/admin/device/decline', { user_code: dc3.user_code });
  await sleep(1050);
  r = await poll(dc3.device_code);
  expectAad(r, 400, 'authorization_declined', 65004, 'declined');
  r = await poll('DAQABIQEAAAB-never-issued');
  expectAad(r, 400, 'bad_verification_code', 70018, 'unknown device code');
  r = await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' });
  const dc4 = r.json;
  await sleep(1050);
  r = await poll(dc4.device_code, CONF_APP);
  assert.strictEqual(r.status, 401, 'a confidential app without a secret is refused before the code is looked at');
  await adminOk('POST', '/admin/config', { device_expires_in: 2 });
  r = await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' });
  assert.strictEqual(r.json.expires_in, 2);
  await sleep(2100);
  r = await poll(r.json.device_code);
  expectAad(r, 400, 'expired_token', 70020, 'expired device code');
  await adminOk('POST', '/admin/config', { device_expires_in: 10 });
  ok('device: authorization_declined, bad_verification_code (70018), expired_token (70020) after expires_in');

  // Without offline_access: no refresh token; approval may narrow the scopes.
  r = await devicecode({ client_id: PUBLIC_APP, scope: `${MAIL_SEND} ${GRAPH}/User.Read` });
  const dc5 = r.json;
  await adminOk('POST', '/admin/device/approve', { user_code: dc5.user_code, user: 'frank@contoso.com', scopes: ['Mail.Send'] });
  await sleep(1050);
  r = await poll(dc5.device_code);
  const t5 = expectTokens(r, ['token_type', 'scope', 'expires_in', 'ext_expires_in', 'access_token'], 'no offline_access');
  assert.strictEqual(t5.scope, 'Mail.Send', 'the granted (narrower) scope, by its Graph short name');
  ok('device: no refresh_token without offline_access; scope is what was granted (narrower than asked)');

  // devicecode endpoint errors.
  expectAad(await devicecode({ scope: 'Mail.Send' }), 400, 'invalid_request', 900144, 'devicecode without client_id');
  expectAad(await devicecode({ client_id: PUBLIC_APP }), 400, 'invalid_request', 900144, 'devicecode without scope');
  expectAad(await devicecode({ client_id: '99999999-9999-4999-8999-999999999999', scope: 'Mail.Send' }), 400, 'unauthorized_client', 700016, 'devicecode unknown client');
  expectAad(await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' }, 'nosuch.onmicrosoft.com'), 400, 'invalid_tenant', 90002, 'devicecode unknown tenant');
  expectAad(await devicecode({ client_id: PUBLIC_APP, scope: 'openid offline_access' }), 400, 'invalid_scope', 70011, 'devicecode without a resource scope');
  r = await request({ port, path: `/${TENANT}/oauth2/v2.0/devicecode`, method: 'GET', ca, servername: 'localhost' });
  expectAad(r, 405, 'invalid_request', 900561, 'GET devicecode');
  r = await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' }, 'organizations');
  assert.strictEqual(r.status, 200, '/organizations is fine for the device flow');
  ok('devicecode errors: 900144, 700016, 90002, 70011, 405; /organizations accepted');

  const c = await adminOk('GET', '/admin/counters');
  assert.strictEqual(c.devicecode, 13, `devicecode count ${c.devicecode}`);
  assert.strictEqual(c.device_slow_downs, 1);
  assert.strictEqual(c.device_pending, 3);
  // 11 device_code grant requests; one (the confidential app without its secret) failed
  // client authentication before it counted as a poll.
  assert.strictEqual(c.device_polls, 10, `device_polls ${c.device_polls}`);
  assert.strictEqual(c.token_by_grant[DEVICE_GRANT], 11);
  const polls = c.token_requests.filter((e) => e.endpoint === 'token' && e.grant === DEVICE_GRANT);
  assert.strictEqual(polls.length, 11);
  assert.ok(polls.every((e) => typeof e.t === 'number' && !Number.isNaN(Date.parse(e.at)) && e.client_id), JSON.stringify(polls[0]));
  assert.ok(polls[0].t - t0 < 1000 && polls[1].t - polls[0].t < 1000 && polls[3].t - polls[2].t >= 1000,
    'request times let tests check the polling pace');
  assert.ok(c.token_requests.some((e) => e.endpoint === 'devicecode' && e.status === 200));
  ok('counters: devicecode, device_polls, device_pending, device_slow_downs, per-grant counts, token_requests with times and status');
}

async function ropcFlow() {
  const pw = (form, tenant) => token({ grant_type: 'password', client_id: PUBLIC_APP, scope: `${MAIL_SEND} offline_access`, password: PASSWORD, ...form }, tenant);
  let r = await pw({ username: 'alice@contoso.com' });
  const t1 = expectTokens(r, ['token_type', 'scope', 'expires_in', 'ext_expires_in', 'access_token', 'refresh_token'], 'ROPC');
  assert.strictEqual(t1.scope, 'Mail.Send');
  r = await sendMail(t1.access_token);
  assert.strictEqual(r.status, 202, r.text);
  const mail = await adminOk('GET', '/admin/mail');
  assert.strictEqual(mail[mail.length - 1].mailbox, 'alice@contoso.com');
  r = await pw({ username: 'alice@contoso.com', scope: 'Mail.Send openid' }, 'organizations');
  expectTokens(r, ['token_type', 'scope', 'expires_in', 'ext_expires_in', 'access_token', 'id_token'], 'ROPC on /organizations, no offline_access');
  ok('ROPC: 200 with refresh token (offline_access) that sends mail as the user; /organizations works; none without offline_access');

  expectAad(await pw({ username: 'alice@contoso.com' }, 'common'), 400, 'invalid_request', 9001023, 'ROPC on /common');
  expectAad(await pw({ username: 'alice@contoso.com' }, 'consumers'), 400, 'invalid_request', 9001023, 'ROPC on /consumers');
  expectAad(await pw({ username: 'alice@contoso.com', password: 'wrong' }), 400, 'invalid_grant', 50126, 'wrong password');
  expectAad(await pw({ username: 'nobody@contoso.com' }), 400, 'invalid_grant', 50034, 'unknown user');
  expectAad(await pw({ username: 'carol@contoso.com' }), 400, 'invalid_grant', 50126, 'federated without hash sync');
  expectAad(await pw({ username: 'dora@contoso.com' }), 400, 'invalid_grant', 50126, 'federated with hash sync but no HRD AllowCloudPasswordValidation');
  r = await pw({ username: 'dave@contoso.com' });
  assert.strictEqual(r.status, 200, `federated with hash sync and HRD policy: ${r.text}`);
  expectAad(await pw({ username: 'eve@contoso.com' }), 400, 'invalid_grant', 50053, 'locked account');
  const mfa = expectAad(await pw({ username: 'bob@contoso.com' }), 400, 'invalid_grant', 50076, 'MFA required');
  assert.strictEqual(mfa.suberror, 'basic_action');
  assert.strictEqual(typeof mfa.claims, 'string');
  assert.ok(JSON.parse(mfa.claims).access_token, 'claims is a JSON string');
  const expired = expectAad(await pw({ username: 'gina@contoso.com' }), 400, 'invalid_grant', 50055, 'password expired');
  assert.strictEqual(expired.suberror, 'user_password_expired');
  expectAad(await pw({ username: 'hank@contoso.com' }), 400, 'invalid_grant', 53003, 'conditional access');
  expectAad(await pw({ username: 'hank@contoso.com', password: 'wrong' }), 400, 'invalid_grant', 50126, 'a wrong password comes first');
  ok('ROPC errors: 9001023 on /common and /consumers, 50126 wrong password, 50034 unknown user, 50126 federated w/o hash sync, 50053 locked, 50076 MFA (basic_action + claims), user error_code 50055/53003');

  await adminOk('POST', '/admin/config', { lockout_threshold: 3 });
  for (let i = 0; i < 3; i++) expectAad(await pw({ username: 'frank@contoso.com', password: `wrong${i}` }), 400, 'invalid_grant', 50126, `wrong password ${i + 1}`);
  expectAad(await pw({ username: 'frank@contoso.com' }), 400, 'invalid_grant', 50053, 'locked after 3 failures, even with the right password');
  await adminOk('POST', '/admin/users', { username: 'frank@contoso.com', password: PASSWORD });
  r = await pw({ username: 'frank@contoso.com' });
  assert.strictEqual(r.status, 200, 're-registering unlocks');
  ok('ROPC: after lockout_threshold wrong passwords the account answers 50053; re-registering the user unlocks it');

  expectAad(await pw({ username: 'alice@contoso.com', client_id: CONF_APP }), 401, 'invalid_client', 7000218, 'app without public client flows');
  r = await pw({ username: 'alice@contoso.com', client_id: CONF_APP, client_secret: SECRET });
  assert.strictEqual(r.status, 200, `confidential ROPC with its secret: ${r.text}`);
  const confRt = r.json.refresh_token;
  const refreshConf = (form) => token({ grant_type: 'refresh_token', client_id: CONF_APP, refresh_token: confRt, scope: `${MAIL_SEND} offline_access`, ...form });
  expectAad(await refreshConf({}), 401, 'invalid_client', 7000218, 'a confidential client refreshes without its secret');
  assert.strictEqual((await refreshConf({ client_secret: SECRET })).status, 200, 'and with it');
  expectAad(await pw({ username: 'alice@contoso.com', client_id: PUBLIC_APP, client_secret: 'x' }), 400, 'invalid_client', 700025, 'public client sends a secret');
  expectAad(await pw({ username: 'alice@contoso.com', client_id: '99999999-9999-4999-8999-999999999999' }), 400, 'unauthorized_client', 700016, 'unknown client');
  const consent = expectAad(await pw({ username: 'alice@contoso.com', client_id: NOCONSENT_APP, client_secret: SECRET }), 400, 'invalid_grant', 65001, 'no consent');
  assert.strictEqual(consent.suberror, 'consent_required');
  expectAad(await pw({ username: 'alice@contoso.com', password: undefined }), 400, 'invalid_request', 900144, 'missing password');
  ok('ROPC client checks: 7000218 (401) without public client flows, confidential ROPC with secret (its refresh needs the secret too), 700025, 700016, 65001 consent_required, 900144');

  // Password change revokes password-derived refresh tokens (50173).
  await adminOk('POST', '/admin/users', { username: 'alice@contoso.com', password: `${PASSWORD}-new`, tenant: TENANT });
  r = await token({ grant_type: 'refresh_token', client_id: PUBLIC_APP, refresh_token: t1.refresh_token, scope: `${MAIL_SEND} offline_access` });
  expectAad(r, 400, 'invalid_grant', 50173, 'refresh after a password change');
  expectAad(await pw({ username: 'alice@contoso.com' }), 400, 'invalid_grant', 50126, 'the old password after the change');
  ok('ROPC: a password change revokes the refresh tokens it produced (50173) and the old password fails');
}

async function clientCredentialsFlow(certA, certB, certOld) {
  const cc = (form, tenant) => token({ grant_type: 'client_credentials', client_id: CONF_APP, scope: `${GRAPH}/.default`, ...form }, tenant);
  let r = await cc({ client_secret: SECRET });
  const t1 = expectTokens(r, ['token_type', 'expires_in', 'ext_expires_in', 'access_token'], 'client_credentials with a secret');
  r = await sendMail(t1.access_token, 'users/shared-mailbox@contoso.com');
  assert.strictEqual(r.status, 202, `app-only sendMail to /users/{id}: ${r.text}`);
  r = await sendMail(t1.access_token, 'me');
  assert.strictEqual(r.status, 400, 'app-only token on /me');
  assert.strictEqual(r.json.error.code, 'BadRequest');
  ok('client_credentials (secret): 200 without refresh_token/scope; app-only token sends via /users/{id}, /me refused 400');

  expectAad(await cc({ client_secret: 'wrong' }), 401, 'invalid_client', 7000215, 'wrong secret');
  expectAad(await cc({ client_secret: EXPIRED_SECRET }), 401, 'invalid_client', 7000222, 'expired secret');
  expectAad(await cc({}), 401, 'invalid_client', 7000218, 'no credentials');
  expectAad(await cc({ client_id: PUBLIC_APP }), 401, 'invalid_client', 7000218, 'public client, no credentials');
  expectAad(await cc({ client_id: PUBLIC_APP, client_secret: SECRET }), 400, 'invalid_client', 700025, 'public client sends a secret');
  ok('client_credentials auth: 7000215 wrong secret, 7000222 expired secret, 7000218 none, 700025 public client with secret');

  expectAad(await cc({ client_secret: SECRET, scope: MAIL_SEND }), 400, 'invalid_scope', 1002012, 'non-.default scope');
  expectAad(await cc({ client_secret: SECRET, scope: `${GRAPH}/.default offline_access` }), 400, 'invalid_scope', 1002012, '.default + offline_access');
  expectAad(await cc({ client_secret: SECRET, scope: `${GRAPH}/.default https://outlook.office.com/.default` }), 400, 'invalid_scope', 700022, 'two resources');
  expectAad(await cc({ client_secret: SECRET, scope: 'https://nothing.example.com/.default' }), 400, 'invalid_resource', 500011, 'unknown resource');
  r = await cc({ client_secret: SECRET, scope: `${GRAPH}//.default` });
  assert.strictEqual(r.status, 200, 'the v1 resource form (double slash) names Graph too');
  expectAad(await cc({ client_secret: SECRET }, 'common'), 400, 'invalid_request', 9001023, 'client_credentials on /common');
  expectAad(await cc({ client_secret: SECRET }, 'organizations'), 400, 'invalid_request', 90019, 'client_credentials on /organizations');
  r = await cc({ client_id: NOCONSENT_APP, client_secret: SECRET });
  assert.strictEqual(r.status, 200);
  r = await sendMail(r.json.access_token, 'users/shared-mailbox@contoso.com');
  assert.strictEqual(r.status, 403, 'no admin consent: token without roles, Graph 403');
  r = await cc({ client_id: POLICY_APP, client_secret: SECRET });
  assert.strictEqual(r.status, 200);
  assert.strictEqual((await sendMail(r.json.access_token, 'users/shared@contoso.com')).status, 202, 'mailbox in the access policy');
  r = await sendMail(r.json.access_token, 'users/ceo@contoso.com');
  assert.strictEqual(r.status, 403, 'mailbox outside the access policy');
  assert.match(r.json.error.message, /Blocked by tenant configured AppOnly AccessPolicy/);
  ok('client_credentials scope: 1002012, 700022, 500011, //.default, 9001023, 90019; no consent: no roles (Graph 403); application access policy (403 RAOP)');

  const url = `https://127.0.0.1:${port}/${TENANT}/oauth2/v2.0/token`;
  const ca2 = (assertion, form = {}) => cc({ client_id: CERT_APP, client_assertion_type: JWT_BEARER, client_assertion: assertion, ...form });
  r = await ca2(makeAssertion(certA, CERT_APP, url));
  const t2 = expectTokens(r, ['token_type', 'expires_in', 'ext_expires_in', 'access_token'], 'PS256 assertion');
  r = await sendMail(t2.access_token, 'users/shared-mailbox@contoso.com');
  assert.strictEqual(r.status, 202);
  const padded = certA.sha1.toString('base64'); // standard alphabet, padded
  r = await ca2(makeAssertion(certA, CERT_APP, url, { alg: 'RS256', header: { 'x5t#S256': undefined, x5t: padded } }));
  assert.strictEqual(r.status, 200, `RS256 with a padded standard-base64 x5t: ${r.text}`);
  r = await ca2(makeAssertion(certA, CERT_APP, url, { header: { 'x5t#S256': certA.sha256.toString('base64') } }));
  assert.strictEqual(r.status, 200, `x5t#S256 in standard base64: ${r.text}`);
  r = await ca2(makeAssertion(certA, CERT_APP, url, { header: { typ: undefined } }));
  assert.strictEqual(r.status, 200, 'typ is optional');
  ok('client assertion: PS256 + x5t#S256 (base64url), RS256 + x5t (padded standard base64) and x5t#S256 in standard base64 all accepted; token sends mail');

  const once = makeAssertion(certA, CERT_APP, url);
  assert.strictEqual((await ca2(once)).status, 200);
  expectAad(await ca2(once), 401, 'invalid_client', 50013, 'replayed jti');
  const maxSalt = makeAssertion(certA, CERT_APP, url, { saltLength: crypto.constants.RSA_PSS_SALTLEN_MAX_SIGN });
  expectAad(await ca2(maxSalt), 401, 'invalid_client', 700027, 'PSS with maximum salt length');
  await adminOk('POST', '/admin/config', { assertion_pss_salt: 'auto' });
  assert.strictEqual((await ca2(makeAssertion(certA, CERT_APP, url, { saltLength: crypto.constants.RSA_PSS_SALTLEN_MAX_SIGN }))).status, 200, 'assertion_pss_salt auto');
  await adminOk('POST', '/admin/config', { assertion_pss_salt: 'digest' });
  ok('client assertion: a replayed jti is refused (50013); PSS salt must be 32 bytes (700027) unless assertion_pss_salt is "auto"');

  const algsBefore = (await adminOk('GET', '/admin/counters')).assertion_by_alg;
  await adminOk('POST', '/admin/config', { assertion_refuse_ps256: true });
  expectAad(await ca2(makeAssertion(certA, CERT_APP, url)), 401, 'invalid_client', 700027, 'PS256 refused by assertion_refuse_ps256');
  r = await ca2(makeAssertion(certA, CERT_APP, url, { alg: 'RS256', header: { 'x5t#S256': undefined, x5t: certA.sha1.toString('base64url') } }));
  assert.strictEqual(r.status, 200, `RS256 still accepted: ${r.text}`);
  await adminOk('POST', '/admin/config', { assertion_refuse_ps256: false });
  const algsAfter = (await adminOk('GET', '/admin/counters')).assertion_by_alg;
  assert.strictEqual(algsAfter.PS256 - (algsBefore.PS256 || 0), 1, 'assertion_by_alg counts PS256');
  assert.strictEqual(algsAfter.RS256 - (algsBefore.RS256 || 0), 1, 'assertion_by_alg counts RS256');
  ok('client assertion: assertion_refuse_ps256 answers PS256 with 700027 and takes RS256; assertion_by_alg counts both');

  const bad = [
    ['not a JWT', 'garbage', 400, 'invalid_request', 50027],
    ['typ JWS', makeAssertion(certA, CERT_APP, url, { header: { typ: 'JWS' } }), 400, 'invalid_request', 5002727],
    ['alg HS256', makeAssertion(certA, CERT_APP, url, { alg: 'RS256', header: { alg: 'HS256' } }), 401, 'invalid_client', 5002738],
    ['no thumbprint', makeAssertion(certA, CERT_APP, url, { header: { 'x5t#S256': undefined } }), 401, 'invalid_client', 5002723],
    ['unregistered certificate', makeAssertion(certB, CERT_APP, url), 401, 'invalid_client', 700027],
    ['signed by another key', makeAssertion(certA, CERT_APP, url, { key: certB.key }), 401, 'invalid_client', 700027],
    ['registered but expired certificate', makeAssertion(certOld, CERT_APP, url), 401, 'invalid_client', 700027],
    ['x5t as a hex string', makeAssertion(certA, CERT_APP, url, { header: { 'x5t#S256': undefined, x5t: certA.sha1.toString('hex') } }), 401, 'invalid_client', 700027],
    ['x5t#S256 carrying the SHA-1', makeAssertion(certA, CERT_APP, url, { header: { 'x5t#S256': certA.sha1.toString('base64url') } }), 401, 'invalid_client', 700027],
    ['no jti', makeAssertion(certA, CERT_APP, url, { claims: { jti: undefined } }), 400, 'invalid_request', 90014],
    ['iss != sub', makeAssertion(certA, CERT_APP, url, { claims: { sub: 'someone' } }), 401, 'invalid_client', 50048],
    ['iss = sub = another client', makeAssertion(certA, CONF_APP, url), 401, 'invalid_client', 700021],
    ['aud = login.microsoftonline.com', makeAssertion(certA, CERT_APP, `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`), 401, 'invalid_client', 700023],
    ['aud with another tenant', makeAssertion(certA, CERT_APP, `https://127.0.0.1:${port}/organizations/oauth2/v2.0/token`), 401, 'invalid_client', 700023],
    ['expired', makeAssertion(certA, CERT_APP, url, { claims: { nbf: Math.floor(Date.now() / 1000) - 1200, exp: Math.floor(Date.now() / 1000) - 600 } }), 401, 'invalid_client', 700024],
    ['not yet valid', makeAssertion(certA, CERT_APP, url, { claims: { nbf: Math.floor(Date.now() / 1000) + 900, exp: Math.floor(Date.now() / 1000) + 1200 } }), 401, 'invalid_client', 700024],
    ['lives 2 hours', makeAssertion(certA, CERT_APP, url, { claims: { exp: Math.floor(Date.now() / 1000) + 7200 } }), 401, 'invalid_client', 700024],
  ];
  for (const [what, assertion, status, error, code] of bad) expectAad(await ca2(assertion), status, error, code, `assertion: ${what}`);
  assert.match((await ca2(makeAssertion(certOld, CERT_APP, url))).json.error_description, /The key used is expired\., Thumbprint of key used by client: '[0-9A-F]{64}', Found key 'Start=01\/01\/2020 00:00:00, End=12\/31\/2020 00:00:00'/);
  expectAad(await ca2(makeAssertion(certA, CERT_APP, url), { client_assertion_type: 'urn:wrong' }), 400, 'invalid_request', 90100, 'wrong client_assertion_type');
  expectAad(await ca2(makeAssertion(certA, CERT_APP, url), { client_secret: SECRET }), 400, 'invalid_request', 9002313, 'secret and assertion together');
  r = await ca2(makeAssertion(certA, CERT_APP, url));
  assert.strictEqual(r.status, 200, 'a good assertion still works after the bad ones (no jti burnt)');
  ok(`client assertion failures: ${bad.length} malformed/forged/mis-addressed/expired cases with Entra's codes; wrong type 90100; secret + assertion 9002313`);
}

async function genericFlow(certA) {
  await adminOk('POST', '/admin/counters/reset');
  const opost = (p, form, headers) => post(p, form, headers);
  // Device authorization (RFC 8628).
  let r = await opost('/oauth/device_authorization', { client_id: PUBLIC_APP, scope: MAIL_SEND });
  const da = expectTokens(r, ['device_code', 'user_code', 'verification_uri', 'verification_uri_complete', 'expires_in', 'interval'], 'device_authorization');
  assert.match(da.user_code, /^[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}$/);
  assert.strictEqual(da.verification_uri_complete, `${da.verification_uri}?user_code=${da.user_code}`);
  const opoll = (code) => opost('/oauth/token', { grant_type: DEVICE_GRANT, client_id: PUBLIC_APP, device_code: code });
  await sleep(1050);
  expectOAuth(await opoll(da.device_code), 400, 'authorization_pending', 'generic pending');
  expectOAuth(await opoll(da.device_code), 400, 'slow_down', 'generic slow_down');
  const listed = (await adminOk('GET', '/admin/device')).find((x) => x.user_code === da.user_code);
  assert.strictEqual(listed.interval, 6);
  assert.strictEqual(listed.mode, 'oauth');
  await adminOk('POST', '/admin/device/approve', { user_code: da.user_code, user: 'alice@contoso.com' });
  // Once approved, the pace no longer matters: slow_down is a variant of "pending".
  r = await opoll(da.device_code);
  const t1 = expectTokens(r, ['access_token', 'token_type', 'expires_in', 'refresh_token', 'scope'], 'generic device tokens');
  assert.strictEqual(t1.scope, MAIL_SEND);
  r = await opost('/oauth/device_authorization', { client_id: PUBLIC_APP });
  const da2 = r.json;
  await adminOk('POST', '/admin/device/decline', { user_code: da2.user_code });
  await sleep(1050);
  expectOAuth(await opoll(da2.device_code), 400, 'access_denied', 'generic declined');
  expectOAuth(await opoll('nope'), 400, 'invalid_grant', 'generic unknown device code');
  ok('generic device flow: verification_uri_complete, authorization_pending, slow_down (then +5 s), tokens, access_denied; RFC 6749 error bodies only');

  // Strict rotation with reuse detection.
  const refresh = (rt, form = {}) => opost('/oauth/token', { grant_type: 'refresh_token', client_id: PUBLIC_APP, refresh_token: rt, ...form });
  r = await refresh(t1.refresh_token);
  const t2 = expectTokens(r, ['access_token', 'token_type', 'expires_in', 'refresh_token', 'scope'], 'generic refresh');
  assert.notStrictEqual(t2.refresh_token, t1.refresh_token);
  r = await refresh(t2.refresh_token, { scope: `${GRAPH}/User.Read` });
  expectOAuth(r, 400, 'invalid_scope', 'scope not granted');
  r = await refresh(t2.refresh_token);
  const t3 = expectTokens(r, ['access_token', 'token_type', 'expires_in', 'refresh_token', 'scope'], 'second rotation');
  expectOAuth(await refresh(t1.refresh_token), 400, 'invalid_grant', 'replay of a rotated-out token');
  expectOAuth(await refresh(t3.refresh_token), 400, 'invalid_grant', 'the family is revoked after a replay');
  r = await sendMail(t3.access_token);
  assert.strictEqual(r.status, 401, 'access tokens of the family are revoked too');
  ok('generic refresh: every use rotates; replaying a rotated-out token revokes the whole family (refresh and access tokens)');

  // client_credentials with Basic auth, secret_post, private_key_jwt; errors.
  const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  r = await opost('/oauth/token', { grant_type: 'client_credentials' }, { Authorization: basic(CONF_APP, SECRET) });
  const t4 = expectTokens(r, ['access_token', 'token_type', 'expires_in', 'scope'], 'generic client_credentials (Basic)');
  assert.strictEqual(t4.scope, MAIL_SEND);
  assert.strictEqual((await sendMail(t4.access_token, 'users/shared@contoso.com')).status, 202);
  r = await opost('/oauth/token', { grant_type: 'client_credentials' }, { Authorization: basic(CONF_APP, 'wrong') });
  expectOAuth(r, 401, 'invalid_client', 'wrong Basic secret');
  assert.ok(/^Basic /.test(r.headers['www-authenticate'] || ''), 'WWW-Authenticate with Basic');
  r = await opost('/oauth/token', { grant_type: 'client_credentials', client_id: CONF_APP, client_secret: SECRET, scope: 'https://other.example/x' });
  expectOAuth(r, 400, 'invalid_scope', 'role not granted');
  expectOAuth(await opost('/oauth/token', { grant_type: 'client_credentials', client_id: PUBLIC_APP }), 400, 'unauthorized_client', 'public client_credentials');
  expectOAuth(await opost('/oauth/token', { grant_type: 'client_credentials', client_id: CONF_APP, client_secret: SECRET }, { Authorization: basic(CONF_APP, SECRET) }), 400, 'invalid_request', 'two auth methods');
  const aud = `https://127.0.0.1:${port}/oauth/token`;
  r = await opost('/oauth/token', { grant_type: 'client_credentials', client_id: CERT_APP, client_assertion_type: JWT_BEARER, client_assertion: makeAssertion(certA, CERT_APP, aud, { alg: 'RS256', header: { 'x5t#S256': undefined } }) });
  assert.strictEqual(r.status, 200, `private_key_jwt without thumbprint: ${r.text}`);
  r = await opost('/oauth/token', { grant_type: 'client_credentials', client_id: CERT_APP, client_assertion_type: JWT_BEARER, client_assertion: makeAssertion(certA, CERT_APP, `https://127.0.0.1:${port}/${TENANT}/oauth2/v2.0/token`) });
  expectOAuth(r, 401, 'invalid_client', 'private_key_jwt with the wrong aud');
  ok('generic client_credentials: Basic and private_key_jwt accepted; 401 invalid_client + WWW-Authenticate, invalid_scope, unauthorized_client, two methods invalid_request');

  r = await opost('/oauth/token', { grant_type: 'password', client_id: PUBLIC_APP, username: 'dave@contoso.com', password: PASSWORD });
  expectTokens(r, ['access_token', 'token_type', 'expires_in', 'refresh_token', 'scope'], 'generic password');
  expectOAuth(await opost('/oauth/token', { grant_type: 'password', client_id: PUBLIC_APP, username: 'dave@contoso.com', password: 'nope' }), 400, 'invalid_grant', 'generic wrong password');
  expectOAuth(await opost('/oauth/token', { grant_type: 'authorization_code', client_id: PUBLIC_APP, code: 'x' }), 400, 'unsupported_grant_type', 'generic unsupported grant');
  expectOAuth(await opost('/oauth/token', { client_id: PUBLIC_APP }), 400, 'invalid_request', 'no grant_type');
  expectOAuth(await opost('/oauth/token', { grant_type: 'password', client_id: 'unknown' }), 401, 'invalid_client', 'unknown client');
  const c = await adminOk('GET', '/admin/counters');
  assert.strictEqual(c.oauth_replays, 1);
  assert.strictEqual(c.oauth_device_authorization, 2);
  assert.strictEqual(c.oauth_token_by_grant.refresh_token, 5);
  assert.strictEqual(c.token, 0, 'the generic mode does not count as Microsoft token requests');
  ok('generic password grant, unsupported_grant_type, invalid_request, unknown client 401; oauth_* counters');
}

// Entra's loop detection (AADSTS50196), random lifetimes; generic OpenID Connect refresh
// tokens only with offline_access; a generic server that takes secrets only by Basic.
async function fidelity() {
  const pw = (form = {}) => token({ grant_type: 'password', client_id: PUBLIC_APP, scope: `${MAIL_SEND} offline_access`, password: PASSWORD, username: 'dave@contoso.com', ...form });
  await adminOk('POST', '/admin/config', { loop_threshold: 3, loop_window_s: 60 });
  for (let i = 0; i < 3; i++) { const x = await pw(); assert.strictEqual(x.status, 200, `under the loop threshold: ${x.text}`); }
  expectAad(await pw(), 400, 'invalid_request', 50196, 'the 4th identical request is a loop');
  assert.strictEqual((await pw({ scope: `${GRAPH}/User.Read offline_access` })).status, 200, 'another scope set is another request');
  let c = await adminOk('POST', '/admin/config', { cloud: 'usgov' });
  assert.ok(c.loop_threshold < 20 && c.loop_threshold > 0, 'government clouds trip sooner');
  await adminOk('POST', '/admin/config', { loop_threshold: 0, cloud: 'global', token_lifetime_random: true });
  const lifetimes = new Set();
  for (let i = 0; i < 6; i++) {
    const t = (await pw()).json;
    assert.ok(t.expires_in >= 3599 && t.expires_in <= 5399, `random lifetime in 60..90 min: ${t.expires_in}`);
    lifetimes.add(t.expires_in);
  }
  assert.ok(lifetimes.size > 1, 'lifetimes vary');
  await adminOk('POST', '/admin/config', { token_lifetime_random: false });
  ok('fidelity: AADSTS50196 after loop_threshold identical requests (lower for usgov), random 60-90 min lifetimes');

  const generic = (form, headers) => post('/oauth/token', { grant_type: 'password', client_id: PUBLIC_APP, username: 'dave@contoso.com', password: PASSWORD, ...form }, headers);
  let r = await generic({ scope: `openid ${MAIL_SEND}` });
  assert.strictEqual(r.status, 200, r.text);
  assert.strictEqual(r.json.refresh_token, undefined, 'openid without offline_access: no refresh token');
  r = await generic({ scope: `openid offline_access ${MAIL_SEND}` });
  assert.ok(r.json.refresh_token, 'openid with offline_access: a refresh token');
  r = await generic({ scope: MAIL_SEND });
  assert.ok(r.json.refresh_token, 'plain OAuth: a refresh token without offline_access');
  await adminOk('POST', '/admin/config', { generic_client_auth: 'basic' });
  const cc = { grant_type: 'client_credentials', client_id: CONF_APP, scope: MAIL_SEND };
  r = await post('/oauth/token', { ...cc, client_secret: SECRET });
  assert.strictEqual(r.status, 401, 'client_secret_post refused when only Basic is accepted');
  const basic = 'Basic ' + Buffer.from(`${encodeURIComponent(CONF_APP)}:${encodeURIComponent(SECRET)}`).toString('base64');
  r = await post('/oauth/token', { grant_type: 'client_credentials', scope: MAIL_SEND }, { Authorization: basic });
  assert.notStrictEqual(r.status, 401, `client_secret_basic accepted: ${r.text}`);
  await adminOk('POST', '/admin/config', { generic_client_auth: 'any' });
  ok('generic: openid needs offline_access for a refresh token; generic_client_auth basic refuses client_secret_post');
}

async function faultsAndSecrets() {
  await adminOk('POST', '/admin/faults', { endpoint: 'devicecode', mode: 'status', status: 503, retry_after: 3 });
  let r = await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' });
  expectAad(r, 503, 'temporarily_unavailable', 90033, 'devicecode fault');
  assert.strictEqual(r.headers['retry-after'], '3');
  await adminOk('POST', '/admin/faults', { endpoint: 'oauth', mode: 'status', status: 429, retry_after: 2 });
  r = await post('/oauth/token', { grant_type: 'client_credentials', client_id: CONF_APP, client_secret: SECRET });
  expectOAuth(r, 429, 'temporarily_unavailable', 'oauth fault');
  await adminOk('POST', '/admin/faults', { endpoint: 'devicecode', mode: 'reset' });
  await assert.rejects(devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' }), /ECONNRESET|socket hang up/, 'devicecode reset');
  await adminOk('POST', '/admin/faults', { endpoint: 'oauth', mode: 'truncate' });
  r = await post('/oauth/token', { grant_type: 'client_credentials', client_id: CONF_APP, client_secret: SECRET }).catch((e) => ({ error: e }));
  assert.ok(r.error || (r.status === 200 && r.json === undefined), 'oauth truncate: a short body');
  await adminOk('POST', '/admin/faults', { endpoint: 'oauth', mode: 'huge', size: 2000000 });
  r = await post('/oauth/token', { grant_type: 'client_credentials', client_id: CONF_APP, client_secret: SECRET });
  assert.ok(r.status === 200 && r.text.length >= 2000000, 'oauth huge');
  const c = await adminOk('GET', '/admin/counters');
  assert.strictEqual(c.faults_injected.devicecode, 2);
  assert.strictEqual(c.faults_injected.oauth, 3);
  r = await devicecode({ client_id: PUBLIC_APP, scope: 'Mail.Send' });
  assert.strictEqual(r.status, 200, 'the faults were used up');
  ok('faults: endpoints "devicecode" and "oauth" (status + Retry-After, reset, truncate, huge) counted in faults_injected');

  const log = fs.readFileSync(logFile, 'utf8');
  const state = fs.readFileSync(path.join(work, 'state', 'state.json'), 'utf8');
  for (const secret of [PASSWORD, `${PASSWORD}-new`, SECRET, EXPIRED_SECRET]) {
    assert.ok(!log.includes(secret), 'a password or secret appears in the emulator log');
    assert.ok(!state.includes(secret), 'a password or secret appears in state.json');
  }
  ok('no password or client secret in the emulator log or state.json');
}

async function robustness() {
  let r = await request({ port, path: '/.well-known/oauth-authorization-server', method: 'GET', ca, servername: 'localhost' });
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.json.token_endpoint, `https://127.0.0.1:${port}/oauth/token`);
  assert.strictEqual(r.json.device_authorization_endpoint, `https://127.0.0.1:${port}/oauth/device_authorization`);
  ok('generic mode: RFC 8414 metadata at /.well-known/oauth-authorization-server');

  const raw = (p, body, headers) => request({
    port, path: p, method: 'POST', ca, servername: 'localhost', headers: { 'Content-Length': body.length, ...headers },
  }, body);
  const garbage = crypto.randomBytes(4096);
  expectAad(await raw(`/${TENANT}/oauth2/v2.0/devicecode`, garbage, { 'Content-Type': 'application/octet-stream' }), 400, 'invalid_request', 900144, 'binary devicecode body');
  expectAad(await raw(`/${TENANT}/oauth2/v2.0/devicecode`, Buffer.from('client_id=a&client_id=b&scope=x'), { 'Content-Type': 'application/x-www-form-urlencoded' }), 400, 'invalid_request', 90100, 'repeated parameter');
  expectOAuth(await raw('/oauth/token', Buffer.from('{"grant_type":"password"}'), { 'Content-Type': 'application/json' }), 400, 'invalid_request', 'JSON body');
  expectOAuth(await raw('/oauth/token', Buffer.from('grant_type=password&grant_type=password'), { 'Content-Type': 'application/x-www-form-urlencoded' }), 400, 'invalid_request', 'repeated parameter');
  expectOAuth(await post('/oauth/token', { grant_type: 'client_credentials' }, { Authorization: 'Basic !!!' }), 401, 'invalid_client', 'malformed Basic');
  expectAad(await token({ grant_type: 'client_credentials', client_id: CERT_APP, scope: `${GRAPH}/.default`, client_assertion_type: JWT_BEARER, client_assertion: 'x'.repeat(100000) }), 400, 'invalid_request', 50027, 'huge assertion');
  const weird = `${b64u({ alg: 'PS256', 'x5t#S256': { a: 1 }, typ: ['JWT'] })}.${b64u([1, 2])}.AAAA`;
  r = await token({ grant_type: 'client_credentials', client_id: CERT_APP, scope: `${GRAPH}/.default`, client_assertion_type: JWT_BEARER, client_assertion: weird });
  assert.ok(r.status === 400 || r.status === 401, `odd JSON types in an assertion: ${r.status}`);
  r = await post(`/${TENANT}/oauth2/v2.0/token`, { grant_type: DEVICE_GRANT, client_id: PUBLIC_APP, device_code: '\u0000'.repeat(10) });
  expectAad(r, 400, 'bad_verification_code', 70018, 'odd device_code');
  ok('robustness: binary, JSON, repeated-parameter, malformed Basic, huge and ill-typed assertion inputs get clean 4xx answers');

  for (const [p, body] of [
    ['/admin/config', { device_interval: 0 }],
    ['/admin/config', { assertion_pss_salt: 'max' }],
    ['/admin/config', { lockout_threshold: 'three' }],
    ['/admin/apps', { client_id: 'x', tenant: TENANT, secrets: [{ value: 's', expires_in: 'soon' }] }],
    ['/admin/apps', { client_id: 'x', tenant: TENANT, public_client: 'yes' }],
    ['/admin/apps', { client_id: 'x', tenant: TENANT, bogus: 1 }],
    ['/admin/users', { username: 'u@contoso.com' }],
    ['/admin/users', { username: 'u@contoso.com', password: 'p', mfa_required: 1 }],
    ['/admin/device/approve', {}],
    ['/admin/device/approve', { user_code: 'X', scopes: 'Mail.Send' }],
    ['/admin/device/decline', { user_code: 'NOSUCH' }],
  ]) {
    r = await admin('POST', p, body);
    assert.ok(r.status === 400 || r.status === 404, `admin ${p} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
    assert.strictEqual(typeof r.json.error, 'string');
  }
  assert.strictEqual(emu.exitCode, null, 'the emulator is still running');
  assert.ok(!/internal error/.test(fs.readFileSync(logFile, 'utf8')), 'no request ended in an internal error (500)');
  ok('admin API: bad config values, app, user and device bodies are refused with 400/404 and a message');
}

async function restart() {
  emu.kill('SIGTERM');
  await new Promise((r) => emu.once('exit', r));
  const ready = path.join(work, 'ready.json');
  const log = fs.openSync(logFile, 'a');
  emu = spawn(process.execPath, [path.join(HERE, 'emulator.js'),
    '--cert', path.join(work, 'certs', 'server.pem'), '--key', path.join(work, 'certs', 'server-key.pem'),
    '--state-dir', path.join(work, 'state'), '--ready-file', ready, '--port', String(port), '--admin-port', String(adminPort)],
  { stdio: ['ignore', log, log] });
  for (let i = 0; i < 100 && !fs.existsSync(ready); i++) await sleep(100);
  let r = await token({ grant_type: 'client_credentials', client_id: CONF_APP, client_secret: SECRET, scope: `${GRAPH}/.default` });
  assert.strictEqual(r.status, 200, `apps survive a restart: ${r.text}`);
  r = await token({ grant_type: 'password', client_id: PUBLIC_APP, username: 'dave@contoso.com', password: PASSWORD, scope: 'Mail.Send' });
  assert.strictEqual(r.status, 200, `users survive a restart: ${r.text}`);
  const cfg = await adminOk('GET', '/admin/config');
  assert.strictEqual(cfg.device_interval, 5, 'without --device-interval the default is 5');
  ok('restart: app registrations and users persist in state.json');
}

async function main() {
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  try {
    execFileSync('certtool', ['--version'], { stdio: 'ignore' });
  } catch (_) {
    console.log('certtool not found');
    process.exit(1);
  }
  const certA = makeCert(path.join(work, 'client'), 'app-a');
  const certB = makeCert(path.join(work, 'client'), 'app-b');
  const certOld = makeCert(path.join(work, 'client'), 'app-old', true);
  await start();
  ok(`emulator started with --device-interval 1 --device-expires-in 10 (https ${port}, admin ${adminPort})`);
  await registerFixtures(certA, certOld);
  await deviceFlow();
  await ropcFlow();
  await clientCredentialsFlow(certA, certB, certOld);
  await genericFlow(certA);
  await fidelity();
  await faultsAndSecrets();
  await robustness();
  await restart();
  emu.kill('SIGTERM');
  const code = await new Promise((r) => emu.once('exit', (c) => r(c)));
  assert.strictEqual(code, 0, `the emulator exits 0 on SIGTERM, not ${code}`);
  console.log(`${passed} passed, 0 failed`);
}

main().catch((err) => {
  console.error(`FAIL: ${err && err.stack ? err.stack : err}`);
  try {
    console.error('--- last lines of the emulator log:');
    console.error(fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-15).join('\n'));
  } catch (_) { /* no log */ }
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
}).finally(() => {
  // The emulator child keeps the event loop alive; "exit" runs cleanup().
  process.exit();
});
