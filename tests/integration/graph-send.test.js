'use strict';
// mail/graph-send.c (graph_mail_send) against the emulator's Graph mail endpoints over TLS:
// MIME sendMail, the draft + upload-session path for large attachments (byte-exact in the
// recipients' store), resuming after a failed chunk, and the outcome classes (temporary with
// Retry-After, denied with the missing permission or right, token rejected, permanent).
// Driven through tests/integration/graph-send-helper.c; no broker, no HSM.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const { setup, run } = require('./harness');
const { startConnectProxy } = require('./connect-proxy');

const HELPER = process.env.CREDBROKER_GRAPH_SEND_HELPER
  || path.join(process.env.CREDBROKER_BUILD_ROOT || 'build', 'tests', 'integration', 'graph-send-helper');
const TENANT = 'contoso.onmicrosoft.com';
const PUBLIC_CLIENT = '11111111-2222-3333-4444-555555555555';
const APP_CLIENT = '66666666-7777-4888-9999-aaaaaaaaaaaa';
const APP_SECRET = 'app~secret-Value.0123456789abcdefghij';
const G = 'https://graph.microsoft.com';
const USER = 'alerts@contoso.com';
const SHARED = 'shared@contoso.com';

let h;
let graph;
let ca;

before(async () => {
  h = await setup({ startBroker: false, importAccount: false });
  graph = `https://127.0.0.1:${h.emuPorts.port}`;
  ca = fs.readFileSync(h.p('certs', 'ca.pem'));
  await h.emulatorAdmin('POST', '/admin/apps', {
    client_id: APP_CLIENT, tenant: TENANT, secrets: [APP_SECRET], roles: [`${G}/Mail.Send`, `${G}/Mail.ReadWrite`],
  });
});
after(() => h && h.teardown());

function tokenRequest(form) {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: h.emuPorts.port, path: `/${TENANT}/oauth2/v2.0/token`, method: 'POST', ca, servername: 'localhost',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const j = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (!j.access_token) reject(new Error(`no token: ${JSON.stringify(j)}`));
        else resolve(j.access_token);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// A delegated access token of USER with these Graph permissions.
async function delegatedToken(perms) {
  const scopes = perms.map((p) => `${G}/${p}`);
  const r = await h.emulatorAdmin('POST', '/admin/refresh-tokens', { tenant: TENANT, client_id: PUBLIC_CLIENT, scopes, user: USER });
  return tokenRequest({ grant_type: 'refresh_token', client_id: PUBLIC_CLIENT, refresh_token: r.refresh_token, scope: scopes.join(' ') });
}

const appToken = () => tokenRequest({
  grant_type: 'client_credentials', client_id: APP_CLIENT, client_secret: APP_SECRET, scope: `${G}/.default`,
});

// Runs the helper: the token on stdin, never in argv.
async function send(token, message, { mailbox = USER, delegated = false, from = USER, graphUrl = graph, proxy } = {}) {
  const file = h.p(`msg-${crypto.randomBytes(4).toString('hex')}.eml`);
  fs.writeFileSync(file, message);
  const args = ['--graph', graphUrl, '--ca', h.p('certs', 'ca.pem'), '--from', from];
  if (mailbox) args.push('--mailbox', mailbox);
  if (delegated) args.push('--delegated');
  // No proxy variable of the test runner's: each test says what it wants.
  const env = { ...process.env };
  for (const k of ['https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY']) delete env[k];
  if (proxy) env.https_proxy = proxy;
  const r = await run(HELPER, [...args, file], { input: `${token}\n`, timeoutMs: 120000, env });
  fs.rmSync(file, { force: true });
  assert.equal(r.code, 0, `helper: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const crlf = (lines) => lines.join('\r\n');
const b64lines = (buf) => buf.toString('base64').replace(/.{1,76}/g, '$&\r\n');

function simpleMessage({ from = USER, subject = 'hello', id = crypto.randomUUID() } = {}) {
  return Buffer.from(crlf([
    `From: Alerts <${from}>`, 'To: ops@example.com', 'Cc: dev@example.com', 'Bcc: hidden@example.com',
    `Subject: ${subject}`, `Message-ID: <${id}@test>`, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8',
    '', 'A plain body.', '',
  ]));
}

// multipart/mixed: a text part, a small inline image (stays in the draft) and the attachments.
function messageWithAttachments(attachments, { from = USER, id = crypto.randomUUID() } = {}) {
  const boundary = `b-${crypto.randomBytes(6).toString('hex')}`;
  const small = crypto.randomBytes(2000);
  const pieces = [crlf([
    `From: ${from}`, 'To: ops@example.com', 'Bcc: hidden@example.com', `Subject: attachments ${id}`,
    `Message-ID: <${id}@test>`, 'MIME-Version: 1.0', `Content-Type: multipart/mixed; boundary="${boundary}"`, '',
    `--${boundary}`, 'Content-Type: text/plain; charset=utf-8', '', 'See the attachments.', '',
    `--${boundary}`, 'Content-Type: image/png; name="logo.png"', 'Content-Disposition: inline; filename="logo.png"',
    'Content-ID: <logo@test>', 'Content-Transfer-Encoding: base64', '', '',
  ]), b64lines(small)];
  for (const a of attachments) {
    pieces.push(crlf([`--${boundary}`, `Content-Type: ${a.type}; name="${a.name}"`,
      `Content-Disposition: attachment; filename="${a.name}"`, 'Content-Transfer-Encoding: base64', '', '']));
    pieces.push(b64lines(a.data));
  }
  pieces.push(`--${boundary}--\r\n`);
  return { message: Buffer.from(pieces.join('')), small, id };
}

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function deliveredById(id) {
  const all = await h.emulatorAdmin('GET', '/admin/mail/delivered');
  const hits = all.filter((m) => m.message_id === `<${id}@test>`);
  return hits;
}

test('small message: MIME sendMail as the app, Bcc stripped for recipients, all three delivered', { timeout: 30000 }, async () => {
  const id = crypto.randomUUID();
  const r = await send(await appToken(), simpleMessage({ id }));
  assert.equal(r.result, 'sent', r.reason);
  assert.equal(r.http_status, 202);
  assert.equal(r.path, `/v1.0/users/${encodeURIComponent(USER)}/sendMail`);
  const hits = await deliveredById(id);
  assert.equal(hits.length, 1, 'delivered exactly once');
  assert.equal(hits[0].via, 'sendMail-mime');
  assert.deepEqual(hits[0].recipients.sort(), ['dev@example.com', 'hidden@example.com', 'ops@example.com']);
  const full = await h.emulatorAdmin('GET', `/admin/mail/delivered/message?id=${hits[0].id}`);
  assert.ok(!full.headers.some(([n]) => n.toLowerCase() === 'bcc'), 'no Bcc header in what recipients see');
  assert.equal(full.parts[0].text, 'A plain body.\r\n');
});

test('a 3.1 MB and a 20 MB attachment go through a draft and upload sessions and arrive byte-exact', { timeout: 120000 }, async () => {
  const a1 = { name: 'report.pdf', type: 'application/pdf', data: crypto.randomBytes(Math.round(3.1 * 1024 * 1024)) };
  const a2 = { name: 'dump.bin', type: 'application/octet-stream', data: crypto.randomBytes(20 * 1024 * 1024) };
  const { message, small, id } = messageWithAttachments([a1, a2]);
  const before = await h.counters();
  const r = await send(await appToken(), message);
  assert.equal(r.result, 'sent', r.reason);
  assert.ok(r.progress_calls >= 8, `progress reported per chunk (${r.progress_calls})`);
  assert.equal(r.progress_done, r.progress_total);
  assert.equal(r.progress_monotonic, true);
  const after = await h.counters();
  assert.equal(after.mail_drafts - before.mail_drafts, 1, 'one draft');
  assert.equal(after.mail_upload_sessions - before.mail_upload_sessions, 2, 'one upload session per large attachment');
  assert.equal(after.mail_draft_sends - before.mail_draft_sends, 1);
  const hits = await deliveredById(id);
  assert.equal(hits.length, 1, 'delivered exactly once');
  assert.equal(hits[0].via, 'draft');
  assert.ok(hits[0].recipients.includes('hidden@example.com'));
  const full = await h.emulatorAdmin('GET', `/admin/mail/delivered/message?id=${hits[0].id}`);
  const byName = Object.fromEntries(full.parts.filter((p) => p.filename).map((p) => [p.filename, p]));
  assert.equal(byName['report.pdf'].sha256, sha256(a1.data));
  assert.equal(byName['report.pdf'].size, a1.data.length);
  assert.equal(byName['report.pdf'].content_type, 'application/pdf');
  assert.equal(byName['dump.bin'].sha256, sha256(a2.data));
  assert.equal(byName['logo.png'].sha256, sha256(small), 'the small inline part stays in the draft');
  assert.equal(byName['logo.png'].content_id, 'logo@test');
  assert.ok(!full.headers.some(([n]) => n.toLowerCase() === 'bcc'));
});

test('a chunk whose answer is lost and a chunk refused with 503 are resumed from nextExpectedRanges', { timeout: 120000 }, async () => {
  const a = { name: 'big.bin', type: 'application/octet-stream', data: crypto.randomBytes(12 * 1024 * 1024) };
  const { message, id } = messageWithAttachments([a]);
  await h.addFault({ endpoint: 'upload', mode: 'lost_reply', skip: 1 });
  await h.addFault({ endpoint: 'upload', mode: 'status', status: 503, count: 1 });
  const before = await h.counters();
  const r = await send(await appToken(), message);
  assert.equal(r.result, 'sent', r.reason);
  const after = await h.counters();
  assert.equal(after.faults_injected.upload - before.faults_injected.upload, 2, 'both faults hit');
  const state = await h.emulatorAdmin('GET', '/admin/mail/state');
  assert.equal(state.stats.chunk_errors, 0, 'no chunk out of order or repeated');
  const hits = await deliveredById(id);
  assert.equal(hits.length, 1);
  const full = await h.emulatorAdmin('GET', `/admin/mail/delivered/message?id=${hits[0].id}`);
  const part = full.parts.find((p) => p.filename === 'big.bin');
  assert.equal(part.sha256, sha256(a.data));
});

test('the send of a draft whose answer is lost counts as sent (the draft is gone); a refused send is TEMPORARY and leaves no draft', { timeout: 60000 }, async () => {
  const a = { name: 'x.bin', type: 'application/octet-stream', data: crypto.randomBytes(4 * 1024 * 1024) };
  // Graph requests of the large path: the draft, the upload session, then the send.
  let { message, id } = messageWithAttachments([a]);
  await h.addFault({ endpoint: 'graph', mode: 'lost_reply', skip: 2 });
  let r = await send(await appToken(), message);
  assert.equal(r.result, 'sent', r.reason);
  assert.equal((await deliveredById(id)).length, 1, 'delivered once: a retry would send it twice');

  ({ message, id } = messageWithAttachments([a]));
  const drafts = (await h.emulatorAdmin('GET', '/admin/mail/state')).drafts;
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 503, skip: 2 });
  r = await send(await appToken(), message);
  assert.equal(r.result, 'temporary', r.reason);
  assert.equal((await deliveredById(id)).length, 0);
  assert.equal((await h.emulatorAdmin('GET', '/admin/mail/state')).drafts, drafts, 'the unsent draft was deleted');
});

test('429 with Retry-After and 503 are TEMPORARY; a dead Graph is TEMPORARY', { timeout: 30000 }, async () => {
  const token = await appToken();
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 429, retry_after: 7, message: 'Application is over its MailboxConcurrency limit.' });
  let r = await send(token, simpleMessage());
  assert.equal(r.result, 'temporary', r.reason);
  assert.equal(r.retry_after, 7);
  assert.equal(r.http_status, 429);
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 503 });
  r = await send(token, simpleMessage());
  assert.equal(r.result, 'temporary');
  r = await send(token, simpleMessage(), { graphUrl: 'https://127.0.0.1:1' });
  assert.equal(r.result, 'temporary');
  assert.match(r.reason, /cannot reach Microsoft Graph/);
});

test('hostile answers (10 MB body, truncated, HTML from a proxy) are TEMPORARY, never a crash', { timeout: 60000 }, async () => {
  const token = await appToken();
  for (const fault of [{ mode: 'huge', size: 10 * 1024 * 1024 }, { mode: 'truncate' }, { mode: 'html', status: 502 }, { mode: 'reset' }]) {
    await h.addFault({ endpoint: 'graph', ...fault });
    const r = await send(token, simpleMessage());
    assert.equal(r.result, 'temporary', `${fault.mode}: ${r.reason}`);
  }
  // The same during an upload: the chunk is retried and the message still goes.
  const a = { name: 'y.bin', type: 'application/octet-stream', data: crypto.randomBytes(5 * 1024 * 1024) };
  const { message, id } = messageWithAttachments([a]);
  await h.addFault({ endpoint: 'upload', mode: 'html', status: 502 });
  await h.addFault({ endpoint: 'upload', mode: 'truncate' });
  const r = await send(token, message);
  assert.equal(r.result, 'sent', r.reason);
  assert.equal((await deliveredById(id)).length, 1);
});

test('through https_proxy: sent via CONNECT; a refusing proxy is named without its password, TEMPORARY', { timeout: 60000 }, async () => {
  const password = `PROXY-CANARY-${crypto.randomBytes(6).toString('hex')}`;
  const good = await startConnectProxy();
  const refusing = await startConnectProxy({ refuse: true });
  try {
    const token = await appToken();
    let r = await send(token, simpleMessage(), { proxy: `http://u:${password}@127.0.0.1:${good.port}` });
    assert.equal(r.result, 'sent', r.reason);
    assert.equal(good.connects.length, 1);
    r = await send(token, simpleMessage(), { proxy: `http://u:${password}@127.0.0.1:${refusing.port}` });
    assert.equal(r.result, 'temporary', r.reason);
    assert.match(r.reason, new RegExp(`the proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${refusing.port} \\(from https_proxy\\) refused the connection to Microsoft Graph .*HTTP 403 to CONNECT`));
    assert.ok(!r.reason.includes(password));
  } finally {
    await good.close();
    await refusing.close();
  }
});

test('the emulator\'s own concurrency throttle (MailboxConcurrency) comes back as TEMPORARY with Retry-After', { timeout: 60000 }, async () => {
  await h.emulatorAdmin('POST', '/admin/mail/limits', { concurrency: 1 });
  const token = await appToken();
  // One request of the same app + mailbox held in flight (headers and a byte of its body).
  const held = https.request({
    host: '127.0.0.1', port: h.emuPorts.port, path: `/v1.0/users/${encodeURIComponent(USER)}/sendMail`, method: 'POST', ca,
    servername: 'localhost', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain', 'Content-Length': 100 },
  });
  held.on('error', () => {});
  held.write('x');
  try {
    await new Promise((r) => setTimeout(r, 300));
    const r = await send(token, simpleMessage());
    assert.equal(r.result, 'temporary', r.reason);
    assert.equal(r.http_status, 429);
    assert.ok(r.retry_after >= 1);
    assert.match(r.reason, /MailboxConcurrency/);
  } finally {
    held.destroy();
    await h.emulatorAdmin('POST', '/admin/mail/limits', { reset: true });
  }
  const r = await send(token, simpleMessage());
  assert.equal(r.result, 'sent', r.reason);
});

test('From another mailbox without Send As: DENIED naming the right; with the grant: sent', { timeout: 30000 }, async () => {
  const token = await appToken();
  let r = await send(token, simpleMessage({ from: SHARED }), { from: SHARED });
  assert.equal(r.result, 'denied', r.reason);
  assert.equal(r.http_status, 403);
  assert.match(r.reason, /ErrorSendAsDenied/);
  assert.match(r.reason, /Send As/);
  await h.emulatorAdmin('POST', '/admin/mail/grants', { grantee: USER, mailbox: SHARED, right: 'send_as' });
  try {
    const id = crypto.randomUUID();
    r = await send(token, simpleMessage({ from: SHARED, id }), { from: SHARED });
    assert.equal(r.result, 'sent', r.reason);
    assert.equal((await deliveredById(id))[0].from, SHARED);
  } finally {
    await h.emulatorAdmin('DELETE', '/admin/mail/grants');
  }
});

test('delegated: /me/sendMail for the signed-in user; /users/{from} needs Mail.Send.Shared and Send As', { timeout: 30000 }, async () => {
  const plain = await delegatedToken(['Mail.Send']);
  let r = await send(plain, simpleMessage(), { delegated: true });
  assert.equal(r.result, 'sent', r.reason);
  assert.equal(r.path, '/v1.0/me/sendMail');

  r = await send(plain, simpleMessage({ from: SHARED }), { delegated: true, from: SHARED });
  assert.equal(r.path, `/v1.0/users/${encodeURIComponent(SHARED)}/sendMail`);
  assert.equal(r.result, 'denied');
  assert.match(r.reason, /Mail\.Send\.Shared/);

  const shared = await delegatedToken(['Mail.Send', 'Mail.Send.Shared']);
  r = await send(shared, simpleMessage({ from: SHARED }), { delegated: true, from: SHARED });
  assert.equal(r.result, 'denied', 'the permission alone is not enough');
  assert.match(r.reason, /Send As/);
  await h.emulatorAdmin('POST', '/admin/mail/grants', { grantee: USER, mailbox: SHARED, right: 'send_on_behalf' });
  try {
    const id = crypto.randomUUID();
    r = await send(shared, simpleMessage({ from: SHARED, id }), { delegated: true, from: SHARED });
    assert.equal(r.result, 'sent', r.reason);
    assert.equal((await deliveredById(id))[0].mailbox, SHARED);
  } finally {
    await h.emulatorAdmin('DELETE', '/admin/mail/grants');
  }
});

test('a large message with a token lacking Mail.ReadWrite: DENIED, and the reason says Mail.ReadWrite', { timeout: 60000 }, async () => {
  const token = await delegatedToken(['Mail.Send']);
  const { message } = messageWithAttachments([{ name: 'x.bin', type: 'application/octet-stream', data: crypto.randomBytes(4 * 1024 * 1024) }]);
  let r = await send(token, message, { delegated: true });
  assert.equal(r.result, 'denied', r.reason);
  assert.match(r.reason, /Mail\.ReadWrite/);
  // Real Graph's 403 names no permission ("Access is denied. Check credentials and try
  // again."): the client's own sentence must.
  const generic = { endpoint: 'graph', mode: 'status', status: 403, code: 'ErrorAccessDenied', message: 'Access is denied. Check credentials and try again.' };
  await h.addFault(generic);
  r = await send(await appToken(), message);
  assert.equal(r.result, 'denied', r.reason);
  assert.match(r.reason.split('(Graph:')[0], /Mail\.ReadWrite/);
  await h.addFault(generic);
  r = await send(await appToken(), simpleMessage());
  assert.equal(r.result, 'denied', r.reason);
  assert.match(r.reason.split('(Graph:')[0], /Mail\.Send application permission/);
  await h.addFault(generic);
  r = await send(token, simpleMessage(), { delegated: true });
  assert.match(r.reason.split('(Graph:')[0], /lacks the Mail\.Send permission/);
});

test('401 from Graph is TOKEN_REJECTED, never DENIED', { timeout: 30000 }, async () => {
  const token = await appToken();
  await h.emulatorAdmin('POST', '/admin/access-tokens/revoke', {});
  const r = await send(token, simpleMessage());
  assert.equal(r.result, 'token_rejected', r.reason);
  assert.equal(r.http_status, 401);
  const bogus = await send('eyJ0eXAiOiJKV1QifQ.bogus.bogus', simpleMessage());
  assert.equal(bogus.result, 'token_rejected');
});

test('bad MIME is PERMANENT; the access token appears in no output', { timeout: 30000 }, async () => {
  const token = await appToken();
  const r = await send(token, Buffer.from('To: ops@example.com\r\nSubject: no recipients?\r\n\r\nbody\r\n'.replace('To:', 'X-To:')));
  assert.equal(r.result, 'permanent', r.reason);
  assert.equal(r.http_status, 400);
  assert.ok(!JSON.stringify(r).includes(token));
  assert.ok(!h.emulatorLog().includes(token));
});
