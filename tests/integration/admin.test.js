'use strict';
// The admin socket (docs/admin-protocol.md): who may connect, framing, and the operations that
// read or remove: account.list, account.show, account.remove, status, reload.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, frame, run, RawClient, TENANT, CLIENT_ID, USER } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(async () => {
  if (h) await h.teardown();
});

test('the admin socket is mode 0600 and a socket', () => {
  const st = fs.lstatSync(h.adminSocket);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
});

test('a peer that is neither root nor the broker uid is denied and disconnected', async (t) => {
  if (process.getuid() !== 0) return t.skip('needs root to connect as another uid');
  // The file mode is the second fence: open it (and its directory) so that only the
  // SO_PEERCRED check is left.
  fs.chmodSync(h.adminSocket, 0o666);
  const script = `
    const net = require('net');
    const body = Buffer.from(process.argv[2]);
    const head = Buffer.alloc(4); head.writeUInt32BE(body.length);
    // Nothing is sent: the broker answers denied at accept, before reading anything, and a
    // write racing its close would end in EPIPE and lose the reply on our side.
    void head; void body;
    const s = net.createConnection(process.argv[1]);
    let buf = Buffer.alloc(0);
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    s.on('close', () => { process.stdout.write(buf.subarray(4)); });
    // The broker may hang up before the request is written (EPIPE): what it sent still counts.
    s.on('error', () => {});`;
  const r = await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups',
    process.execPath, '-e', script, h.adminSocket, JSON.stringify({ v: 1, op: 'account.list' })],
  { env: h.env(), timeoutMs: 20000 });
  fs.chmodSync(h.adminSocket, 0o600);
  assert.equal(r.code, 0, r.stderr);
  const reply = JSON.parse(r.stdout);
  assert.equal(reply.error, 'denied');
  assert.ok(!('accounts' in reply));
  assert.match(h.brokerLog(), /Admin socket: refusing uid 65534/);
  assert.ok(h.auditLines().some((l) => l.event === 'deny' && l.peer && l.peer.uid === 65534
    && /admin socket/.test(l.reason)), 'the denial is audited');
});

test('account.list shows the imported account without secrets', async () => {
  const r = await h.adminRequest({ op: 'account.list' });
  assert.equal(r.ok, true, JSON.stringify(r));
  const row = r.accounts.find((a) => a.account === 'alerts');
  assert.ok(row, JSON.stringify(r));
  assert.equal(row.flow, 'refresh-token');
  assert.equal(row.tenant, TENANT);
  assert.equal(row.client_id, CLIENT_ID);
  assert.equal(row.mailbox, USER);
  assert.equal(row.state, 'ok');
  assert.ok(!JSON.stringify(r).includes(h.canaryRefreshToken));
});

test('account.show tells generation and age, never the refresh token', async () => {
  const r = await h.adminRequest({ op: 'account.show', account: 'alerts' });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.account.account, 'alerts');
  assert.equal(r.account.flow, 'refresh-token');
  assert.ok(r.account.refresh_token.generation >= 1);
  assert.ok(r.account.refresh_token.stored_at > 0);
  assert.equal(r.account.client_secret, false);
  assert.equal(r.account.certificate, null);
  assert.ok(!JSON.stringify(r).includes(h.canaryRefreshToken));
  const missing = await h.adminRequest({ op: 'account.show', account: 'nosuch' });
  assert.equal(missing.error, 'not_found');
  const bad = await h.adminRequest({ op: 'account.show', account: '../x' });
  assert.equal(bad.error, 'bad_request');
});

test('status reports state, token expiry and refresh-token age', async () => {
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(token.ok, true);
  const r = await h.adminRequest({ op: 'status' });
  assert.equal(r.ok, true, JSON.stringify(r));
  const row = r.accounts.find((a) => a.account === 'alerts');
  assert.equal(row.state, 'ok');
  assert.ok(row.last_refresh > 0, JSON.stringify(row));
  assert.ok(row.token_expires_at > Date.now() / 1000, JSON.stringify(row));
  assert.ok(row.next_refresh <= row.token_expires_at);
  assert.ok(row.refresh_token_stored_at > 0);
});

test('framing and envelope errors', async () => {
  const c = await h.adminClient();
  try {
    assert.equal((await c.request({ v: 2, op: 'status' })).error, 'unsupported_version');
    assert.equal((await c.request({ v: 1, op: 'frobnicate' })).error, 'unknown_op');
    assert.equal((await c.request({ op: 'status' })).error, 'bad_request');
    await c.write(frame('{"v":1,'));
    assert.equal((await c.readFrame()).error, 'bad_request');
    // several requests on one connection are answered in order
    await c.send({ v: 1, op: 'account.list' });
    await c.send({ v: 1, op: 'status' });
    assert.ok(Array.isArray((await c.readFrame()).accounts));
    assert.ok(Array.isArray((await c.readFrame()).accounts));
  } finally {
    c.close();
  }
});

test('account.test obtains a token and reports scopes and expiry, never the token', async () => {
  const r = await h.adminRequest({ op: 'account.test', account: 'alerts' });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.account, 'alerts');
  assert.deepEqual(r.scopes, ['https://graph.microsoft.com/Mail.Send']);
  assert.ok(r.expires_at > Date.now() / 1000);
  assert.ok(r.expires_in > 60);
  assert.equal(r.mailbox, USER);
  assert.ok(!('access_token' in r));
  const refused = await h.adminRequest({ op: 'account.test', account: 'alerts', scopes: ['https://graph.microsoft.com/Calendars.Read'] });
  assert.equal(refused.ok, false, JSON.stringify(refused));
  assert.equal(refused.error, 'needs_config');
  assert.equal((await h.adminRequest({ op: 'account.test', account: 'nosuch' })).error, 'not_found');
});

test('reload answers the profile count, or the first file:line problem', async () => {
  const ok = await h.adminRequest({ op: 'reload' });
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.equal(ok.profiles, 1);
  fs.writeFileSync(h.p('policy.d', 'broken'), 'account alerts\nfrobnicate\n', { mode: 0o644 });
  const bad = await h.adminRequest({ op: 'reload' });
  assert.equal(bad.ok, false);
  assert.match(bad.message, /broken:2/);
  fs.rmSync(h.p('policy.d', 'broken'));
  // the previous policy is still in force
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' })).ok, true);
});

test('account.remove drops cached tokens and every object, with an audit record', async () => {
  const r = await h.adminRequest({ op: 'account.remove', account: 'alerts' });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.ok(r.removed.includes('alerts/meta (data)'), JSON.stringify(r));
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(token.ok, false);
  assert.ok(h.auditLines().some((l) => l.event === 'account_removed' && l.account === 'alerts'));
  assert.equal((await h.adminRequest({ op: 'account.remove', account: 'alerts' })).error, 'not_found');
  const list = await h.adminRequest({ op: 'account.list' });
  assert.deepEqual(list.accounts, []);
});

test('RawClient is exported for admin tests', () => {
  assert.equal(typeof RawClient, 'function');
});

test('account.keygen, account.cert and account.secret check every field', async () => {
  const c = await h.adminClient();
  const SECRET = 'CS-CANARY-ADMIN-FIELDS';
  try {
    for (const request of [
      { op: 'account.keygen' },
      { op: 'account.keygen', account: 'Bad/Name' },
      { op: 'account.keygen', account: 'k1', bits: 1024 },
      { op: 'account.keygen', account: 'k1', bits: 2049 },
      { op: 'account.keygen', account: 'k1', bits: '2048' },
      { op: 'account.keygen', account: 'k1', days: 0 },
      { op: 'account.keygen', account: 'k1', days: 3651 },
      { op: 'account.keygen', account: 'k1', subject: '' },
      { op: 'account.keygen', account: 'k1', subject: `CN=${'x'.repeat(300)}` },
      { op: 'account.keygen', account: 'k1', subject: 7 },
      { op: 'account.keygen', account: 'k1', csr: 'yes' },
      { op: 'account.keygen', account: 'k1', replace: 1 },
      { op: 'account.keygen', account: 'k1', subject: 'not a dn' },
      { op: 'account.cert', account: 'k1' },
      { op: 'account.cert', account: 'k1', pem: '' },
      { op: 'account.cert', account: 'k1', pem: 'x'.repeat(40000) },
      { op: 'account.cert', account: 'k1', pem: 'not a certificate' },
      { op: 'account.secret', account: 'k1' },
      { op: 'account.secret', account: 'k1', client_secret: '' },
      { op: 'account.secret', account: 'k1', client_secret: 'x'.repeat(1025) },
      { op: 'account.secret', account: 'k1', client_secret: `${SECRET} with spaces` },
      { op: 'account.add', account: 'k1', flow: 'refresh-token', tenant: TENANT, client_id: CLIENT_ID,
        refresh_token: 'RT-x', replace: 'yes' },
    ]) {
      const r = await c.request({ v: 1, ...request });
      assert.equal(r.ok, false, JSON.stringify(request).slice(0, 200));
      assert.equal(r.error, 'bad_request', `${JSON.stringify(request).slice(0, 200)}: ${r.message}`);
      assert.ok(!JSON.stringify(r).includes(SECRET));
    }
    const show = await c.request({ v: 1, op: 'account.show', account: 'k1' });
    assert.equal(show.error, 'not_found', 'nothing of k1 was stored');
  } finally {
    c.close();
  }
  assert.ok(!h.brokerLog().includes(SECRET));
});
