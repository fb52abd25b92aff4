#!/usr/bin/env node
// selftest-mail.js — end-to-end checks of graph-mail.js: MIME sendMail and its base64 check, the
// 4 MB cap, drafts, upload sessions and every chunk rule, sending a draft (Mail.ReadWrite), Send
// As rights, the throttles (concurrency, requests, upload bytes, message rate) with Retry-After,
// the delivered store (Bcc removed, parts byte-exact, counts) and its persistence over a restart.
// Node 20 standard library. Prints "ok N - ..." lines and "N passed, 0 failed"; KEEP=1 keeps
// the work directory.

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
const G = 'https://graph.microsoft.com';
const PUBLIC_APP = '11111111-1111-4111-8111-111111111111';
const APP = '22222222-2222-4222-8222-222222222222';
const SENDONLY_APP = '33333333-3333-4333-8333-333333333333';
const SECRET = 'sekr~et-Value.1234567890abcdefghijklmnop';
const USER = 'alerts@contoso.com';
const SHARED = 'shared@contoso.com';
const KIB320 = 320 * 1024;

const work = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'emulator-mail.'));
const logFile = path.join(work, 'emulator.log');
let emu = null;
let port = 0;
let adminPort = 0;
let ca;
let passed = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

function cleanup() {
  if (emu && emu.exitCode === null) emu.kill('SIGTERM');
  if (process.env.KEEP === '1') console.log(`work directory kept: ${work}`);
  else fs.rmSync(work, { recursive: true, force: true });
}

function ok(what) {
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

// --- HTTP --------------------------------------------------------------------------------

// body: Buffer/string, or { hold: true } to send headers and part of a body and keep the
// request open (for the concurrency throttle); then resolves { req } at once.
function request(options, body) {
  return new Promise((resolve, reject) => {
    const mod = options.protocol === 'http:' ? http : https;
    const req = mod.request({ host: '127.0.0.1', ...options }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        let json;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json, raw });
      });
    });
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error('request timed out')));
    if (body && body.hold) {
      req.write('x');
      resolve({ req });
      return;
    }
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function graph(method, urlPath, token, body, headers = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined && !(body && body.hold)) h['Content-Length'] = Buffer.byteLength(body);
  return request({ port, path: urlPath, method, ca, servername: 'localhost', headers: h }, body);
}

const json = (method, urlPath, token, obj) => graph(method, urlPath, token, JSON.stringify(obj), { 'Content-Type': 'application/json' });
const mime = (method, urlPath, token, msg) => graph(method, urlPath, token, Buffer.from(msg).toString('base64'), { 'Content-Type': 'text/plain' });

async function admin(method, urlPath, body) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = text === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) };
  return request({ protocol: 'http:', port: adminPort, path: urlPath, method, headers }, text);
}

async function adminOk(method, urlPath, body) {
  const r = await admin(method, urlPath, body);
  assert.ok(r.status >= 200 && r.status < 300, `admin ${method} ${urlPath}: ${r.status} ${r.text}`);
  return r.json === undefined ? r.raw : r.json;
}

async function tokenFor(form) {
  const body = new URLSearchParams(form).toString();
  const r = await request({
    port, path: `/${TENANT}/oauth2/v2.0/token`, method: 'POST', ca, servername: 'localhost',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) },
  }, body);
  assert.ok(r.json && r.json.access_token, `token: ${r.text}`);
  return r.json.access_token;
}

async function delegated(perms, user = USER) {
  const scopes = perms.map((p) => `${G}/${p}`);
  const r = await adminOk('POST', '/admin/refresh-tokens', { tenant: TENANT, client_id: PUBLIC_APP, scopes, user });
  return tokenFor({ grant_type: 'refresh_token', client_id: PUBLIC_APP, refresh_token: r.refresh_token, scope: scopes.join(' ') });
}

const appToken = (client = APP) => tokenFor({ grant_type: 'client_credentials', client_id: client, client_secret: SECRET, scope: `${G}/.default` });

function expectError(r, status, code, what) {
  assert.strictEqual(r.status, status, `${what}: HTTP ${r.status} ${r.text}`);
  assert.ok(r.json && r.json.error, `${what}: Graph error body expected: ${r.text}`);
  assert.strictEqual(r.json.error.code, code, `${what}: ${r.text}`);
  assert.ok(r.json.error.innerError && r.json.error.innerError['request-id'], `${what}: innerError`);
}

const users = (mailbox) => `/v1.0/users/${encodeURIComponent(mailbox)}`;

function message({ from = USER, id = crypto.randomUUID(), extra = [] } = {}) {
  return [`From: ${from}`, 'To: ops@example.com', 'Bcc: hidden@example.com', `Subject: s ${id}`,
    `Message-ID: <${id}@t>`, ...extra, 'MIME-Version: 1.0', 'Content-Type: text/plain', '', 'body', ''].join('\r\n');
}

async function start() {
  execFileSync(path.join(HERE, 'gen-certs'), [path.join(work, 'certs')]);
  ca = fs.readFileSync(path.join(work, 'certs', 'ca.pem'));
  const ready = path.join(work, 'ready.json');
  fs.rmSync(ready, { force: true });
  const log = fs.openSync(logFile, 'a');
  const args = [path.join(HERE, 'emulator.js'), '--cert', path.join(work, 'certs', 'server.pem'),
    '--key', path.join(work, 'certs', 'server-key.pem'), '--state-dir', path.join(work, 'state'), '--ready-file', ready];
  if (port) args.push('--port', String(port), '--admin-port', String(adminPort));
  emu = spawn(process.execPath, args, { stdio: ['ignore', log, log] });
  for (let i = 0; i < 100 && !fs.existsSync(ready); i++) await sleep(100);
  const info = JSON.parse(fs.readFileSync(ready, 'utf8'));
  port = info.port;
  adminPort = info.admin_port;
}

// --- the checks ------------------------------------------------------------------------------

async function sendMailChecks(tok) {
  let r = await graph('POST', `${users(USER)}/sendMail`, tok, 'not base64!', { 'Content-Type': 'text/plain' });
  expectError(r, 400, 'ErrorMimeContentInvalidBase64String', 'bad base64');
  assert.strictEqual(r.json.error.message, 'Invalid base64 string for MIME content.');
  r = await graph('POST', `${users(USER)}/sendMail`, tok, 'A'.repeat(4 * 1024 * 1024 + 4), { 'Content-Type': 'text/plain' });
  expectError(r, 413, 'RequestEntityTooLarge', '4 MB cap');
  const id = crypto.randomUUID();
  r = await mime('POST', `${users(USER)}/sendMail`, tok, message({ id }));
  assert.strictEqual(r.status, 202, r.text);
  const list = await adminOk('GET', '/admin/mail/delivered?mailbox=hidden@example.com');
  const m = list.find((x) => x.message_id === `<${id}@t>`);
  assert.ok(m, 'the Bcc recipient has it');
  const raw = await adminOk('GET', `/admin/mail/delivered/raw?id=${m.id}`);
  assert.ok(!/^bcc:/im.test(raw.toString('latin1')), 'no Bcc header in what recipients see');
  const counts = await adminOk('GET', '/admin/mail/deliveries');
  assert.strictEqual(counts.by_message_id[`<${id}@t>`], 1);
  ok('MIME sendMail: bad base64 400 with Graph\'s text, > 4 MB 413, delivered once with Bcc removed');
}

async function sendAsChecks(appTok) {
  let r = await mime('POST', `${users(USER)}/sendMail`, appTok, message({ from: SHARED }));
  expectError(r, 403, 'ErrorSendAsDenied', 'From another mailbox');
  await adminOk('POST', '/admin/mail/grants', { grantee: USER, mailbox: SHARED, right: 'send_as' });
  r = await mime('POST', `${users(USER)}/sendMail`, appTok, message({ from: SHARED }));
  assert.strictEqual(r.status, 202, r.text);
  await adminOk('DELETE', '/admin/mail/grants');

  const own = await delegated(['Mail.Send']);
  r = await mime('POST', '/v1.0/me/sendMail', own, message());
  assert.strictEqual(r.status, 202, r.text);
  r = await mime('POST', `${users(SHARED)}/sendMail`, own, message({ from: SHARED }));
  expectError(r, 403, 'ErrorAccessDenied', 'delegated, other mailbox, no Mail.Send.Shared');
  assert.match(r.json.error.message, /Mail\.Send\.Shared/);
  const shared = await delegated(['Mail.Send', 'Mail.Send.Shared']);
  r = await mime('POST', `${users(SHARED)}/sendMail`, shared, message({ from: SHARED }));
  expectError(r, 403, 'ErrorSendAsDenied', 'Mail.Send.Shared without a grant');
  await adminOk('POST', '/admin/mail/grants', { grantee: USER, mailbox: SHARED, right: 'send_on_behalf' });
  r = await mime('POST', `${users(SHARED)}/sendMail`, shared, message({ from: SHARED }));
  assert.strictEqual(r.status, 202, r.text);
  await adminOk('DELETE', '/admin/mail/grants');
  const noMailSend = await appToken(SENDONLY_APP);
  r = await mime('POST', `${users(USER)}/messages`, noMailSend, message());
  expectError(r, 403, 'ErrorAccessDenied', 'app without Mail.ReadWrite');
  assert.match(r.json.error.message, /Mail\.ReadWrite/);
  ok('Send As: From another mailbox 403 ErrorSendAsDenied until granted; delegated /users/{other} needs Mail.Send.Shared + a grant');
}

// Creates a draft and an upload session for size bytes: { draft, url (path + query) }.
async function draftWithSession(tok, size, msg = message()) {
  let r = await mime('POST', `${users(USER)}/messages`, tok, msg);
  assert.strictEqual(r.status, 201, r.text);
  const draft = r.json.id;
  assert.ok(draft);
  r = await json('POST', `${users(USER)}/messages/${encodeURIComponent(draft)}/attachments/createUploadSession`, tok,
    { AttachmentItem: { attachmentType: 'file', name: 'data.bin', size, contentType: 'application/x-test', isInline: false } });
  assert.strictEqual(r.status, 201, r.text);
  assert.deepStrictEqual(r.json.nextExpectedRanges, ['0-']);
  const u = new URL(r.json.uploadUrl);
  return { draft, url: u.pathname + u.search };
}

const put = (url, data, range, headers = {}) => request({
  port, path: url, method: 'PUT', ca, servername: 'localhost',
  headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length, 'Content-Range': range, ...headers },
}, data);

async function uploadChecks(tok) {
  const data = crypto.randomBytes(5 * 1024 * 1024 + 123);
  const { draft, url } = await draftWithSession(tok, data.length);
  let r = await put(url, data.subarray(0, KIB320), `bytes 0-${KIB320 - 1}/${data.length}`, { Authorization: `Bearer ${tok}` });
  expectError(r, 401, 'InvalidAudienceForResource', 'PUT with an Authorization header');
  r = await request({ port, path: url, method: 'PUT', ca, servername: 'localhost', headers: { 'Content-Length': 10 } }, Buffer.alloc(10));
  expectError(r, 400, 'ErrorInvalidContentRange', 'no Content-Range');
  r = await put(url, data.subarray(0, KIB320), `bytes 0-${KIB320 - 1}/${data.length + 1}`);
  expectError(r, 400, 'ErrorInvalidContentRange', 'wrong total');
  r = await put(url, data.subarray(0, 1000), `bytes 0-999/${data.length}`);
  expectError(r, 400, 'ErrorInvalidContentRange', 'not a multiple of 320 KiB');
  r = await put(url, data.subarray(KIB320, 2 * KIB320), `bytes ${KIB320}-${2 * KIB320 - 1}/${data.length}`);
  expectError(r, 416, 'ErrorInvalidRange', 'out of order');
  const big = 13 * KIB320; // 4,259,840 > 4 MB
  r = await put(url, data.subarray(0, big), `bytes 0-${big - 1}/${data.length}`);
  expectError(r, 413, 'ErrorRequestEntityTooLarge', 'chunk over 4 MB');
  const first = 12 * KIB320;
  r = await put(url, data.subarray(0, first), `bytes 0-${first - 1}/${data.length}`);
  assert.strictEqual(r.status, 200, r.text);
  assert.deepStrictEqual(r.json.nextExpectedRanges, [String(first)]);
  r = await request({ port, path: url, method: 'GET', ca, servername: 'localhost' });
  assert.deepStrictEqual(r.json.nextExpectedRanges, [String(first)], 'GET tells where to resume');
  r = await put(url, data.subarray(first), `bytes ${first}-${data.length - 1}/${data.length}`);
  assert.strictEqual(r.status, 201, r.text);
  assert.match(r.headers.location, /\/Attachments\('/);

  // Sending needs Mail.ReadWrite besides Mail.Send.
  const sendOnly = await delegated(['Mail.Send']);
  const me = `/v1.0/me/messages/${encodeURIComponent(draft)}/send`;
  r = await graph('POST', me, sendOnly, '');
  expectError(r, 403, 'ErrorAccessDenied', 'send without Mail.ReadWrite');
  assert.match(r.json.error.message, /Mail\.ReadWrite/);
  const rwOnly = await delegated(['Mail.ReadWrite']);
  r = await graph('POST', me, rwOnly, '');
  expectError(r, 403, 'ErrorAccessDenied', 'send without Mail.Send');
  assert.match(r.json.error.message, /Mail\.Send/);
  r = await graph('POST', me, tok, '');
  assert.strictEqual(r.status, 202, r.text);
  r = await graph('POST', me, tok, '');
  expectError(r, 404, 'ErrorItemNotFound', 'a sent draft is gone');

  const list = await adminOk('GET', '/admin/mail/delivered');
  const m = list[list.length - 1];
  assert.strictEqual(m.via, 'draft');
  const full = await adminOk('GET', `/admin/mail/delivered/message?id=${m.id}`);
  const part = full.parts.find((p) => p.filename === 'data.bin');
  assert.strictEqual(part.sha256, sha256(data));
  assert.strictEqual(part.content_type, 'application/x-test');
  const bytes = await adminOk('GET', `/admin/mail/delivered/part?id=${m.id}&part=${part.path}`);
  assert.ok(Buffer.compare(bytes, data) === 0, 'the part fetched byte-exact');
  ok('upload session: Authorization refused (401), Content-Range checks, 320 KiB multiples, order (416), 4 MB (413), GET status, 201 + Location; send needs Mail.ReadWrite and Mail.Send; attachment byte-exact');
}

async function throttleChecks(tok) {
  await adminOk('POST', '/admin/mail/limits', { concurrency: 2 });
  const held = [];
  for (let i = 0; i < 2; i++) {
    held.push((await graph('POST', `${users(USER)}/sendMail`, tok, { hold: true }, { 'Content-Type': 'text/plain', 'Content-Length': 100 })).req);
  }
  await sleep(200);
  let r = await mime('POST', `${users(USER)}/sendMail`, tok, message());
  expectError(r, 429, 'ApplicationThrottled', 'third concurrent request');
  assert.strictEqual(r.json.error.message, 'Application is over its MailboxConcurrency limit.');
  assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After in seconds');
  r = await mime('POST', `${users(SHARED)}/sendMail`, tok, message({ from: SHARED }));
  assert.notStrictEqual(r.status, 429, 'another mailbox has its own budget');
  for (const q of held) q.destroy();
  await sleep(200);
  r = await mime('POST', `${users(USER)}/sendMail`, tok, message());
  assert.strictEqual(r.status, 202, `released: ${r.text}`);

  await adminOk('POST', '/admin/mail/limits', { reset: true, requests: 2, request_window_s: 60 });
  await mime('POST', `${users(USER)}/sendMail`, tok, message());
  await mime('POST', `${users(USER)}/sendMail`, tok, message());
  r = await mime('POST', `${users(USER)}/sendMail`, tok, message());
  expectError(r, 429, 'ApplicationThrottled', 'request window');
  assert.ok(Number(r.headers['retry-after']) > 1 && Number(r.headers['retry-after']) <= 60, r.headers['retry-after']);

  await adminOk('POST', '/admin/mail/limits', { reset: true, messages_per_minute: 2 });
  await mime('POST', `${users(USER)}/sendMail`, tok, message());
  await mime('POST', `${users(USER)}/sendMail`, tok, message());
  r = await mime('POST', `${users(USER)}/sendMail`, tok, message());
  expectError(r, 429, 'ApplicationThrottled', 'message rate');
  assert.ok(Number(r.headers['retry-after']) >= 1);

  await adminOk('POST', '/admin/mail/limits', { reset: true, upload_bytes: 500000 });
  const { url } = await draftWithSession(tok, 2 * KIB320 + 5);
  r = await put(url, crypto.randomBytes(2 * KIB320), `bytes 0-${2 * KIB320 - 1}/${2 * KIB320 + 5}`);
  expectError(r, 429, 'ApplicationThrottled', 'upload bytes');
  assert.match(r.json.error.message, /upload limit/);
  const state = await adminOk('GET', '/admin/mail/state');
  assert.ok(state.stats.throttled.MailboxConcurrency >= 1 && state.stats.throttled.Uploads >= 1);
  await adminOk('POST', '/admin/mail/limits', { reset: true });
  ok('throttles: MailboxConcurrency per app + mailbox, request window, 30/min message rate, upload bytes: 429 ApplicationThrottled + Retry-After');
}

async function authChecks(tok) {
  let r = await mime('POST', `${users(USER)}/sendMail`, 'eyJ0eXAiOiJKV1QifQ.bogus.bogus', message());
  expectError(r, 401, 'InvalidAuthenticationToken', 'unknown token');
  await adminOk('POST', '/admin/config', { token_lifetime: 1 });
  const short = await delegated(['Mail.Send']);
  await adminOk('POST', '/admin/config', { token_lifetime: 3599 });
  await sleep(1500);
  r = await mime('POST', '/v1.0/me/sendMail', short, message());
  expectError(r, 401, 'InvalidAuthenticationToken', 'expired token');
  r = await mime('POST', '/v1.0/me/sendMail', tok, message());
  expectError(r, 400, 'BadRequest', '/me with an app-only token');
  ok('401 InvalidAuthenticationToken for unknown and expired tokens; /me refuses app-only tokens');
}

async function restartChecks() {
  const before = await adminOk('GET', '/admin/mail/deliveries');
  emu.kill('SIGTERM');
  await new Promise((r) => emu.once('exit', r));
  await start();
  const after = await adminOk('GET', '/admin/mail/deliveries');
  assert.deepStrictEqual(after, before, 'the delivered store survives a restart');
  await adminOk('DELETE', '/admin/mail/delivered');
  assert.strictEqual((await adminOk('GET', '/admin/mail/deliveries')).total, 0);
  ok('restart: delivered messages and their counts persist; DELETE clears them');
}

async function main() {
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  await start();
  await adminOk('POST', '/admin/apps', { client_id: PUBLIC_APP, tenant: TENANT });
  await adminOk('POST', '/admin/apps', { client_id: APP, tenant: TENANT, secrets: [SECRET], roles: [`${G}/Mail.Send`, `${G}/Mail.ReadWrite`] });
  await adminOk('POST', '/admin/apps', { client_id: SENDONLY_APP, tenant: TENANT, secrets: [SECRET], roles: [`${G}/Mail.Send`] });
  ok(`emulator started (https ${port}, admin ${adminPort})`);
  const appTok = await appToken();
  const userTok = await delegated(['Mail.Send', 'Mail.ReadWrite']);
  await sendMailChecks(appTok);
  await sendAsChecks(appTok);
  await uploadChecks(userTok);
  await throttleChecks(appTok);
  await authChecks(appTok);
  await restartChecks();
  emu.kill('SIGTERM');
  const code = await new Promise((r) => emu.once('exit', (c) => r(c)));
  assert.strictEqual(code, 0);
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
  process.exit();
});
