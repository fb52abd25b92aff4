'use strict';
// Issuing tokens: output formats, the cache, and single flight on a cold broker (P2).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep, MAIL_SEND, USER } = require('./harness');

const USER_READ = 'https://graph.microsoft.com/User.Read';

let h;
before(async () => {
  h = await setup({
    refreshTokenScopes: [MAIL_SEND, USER_READ],
    profiles: {
      alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
      multi: { account: 'alerts', scopes: [MAIL_SEND, USER_READ], rules: ['peer sufficient uid root'] },
    },
  });
});
after(() => h && h.teardown());

function assertTokenText(token) {
  assert.match(token, /^[\x21-\x7e]+$/, 'an access token is printable ASCII without spaces');
  assert.ok(token.length > 40, `an access token of ${token.length} characters is too short`);
}

test('an allowed uid gets a token: raw, json and header formats agree', { timeout: 30000 }, async () => {
  const raw = await h.cli(['token', '-p', 'alerts']);
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal(raw.stderr, '');
  assert.match(raw.stdout, /\n$/);
  const token = raw.stdout.slice(0, -1);
  assertTokenText(token);

  const before = Math.floor(Date.now() / 1000);
  const json = await h.cli(['token', '-p', 'alerts', '--format', 'json']);
  const afterTime = Math.ceil(Date.now() / 1000);
  assert.equal(json.code, 0, json.stderr);
  const reply = JSON.parse(json.stdout);
  assert.equal(reply.v, 1);
  assert.equal(reply.ok, true);
  assert.equal(reply.token_type, 'Bearer');
  assert.equal(reply.access_token, token, 'the cached token is handed out again');
  assert.ok(Number.isInteger(reply.expires_in), 'expires_in is an integer');
  assert.ok(reply.expires_in > 3000 && reply.expires_in <= 3599, `expires_in ${reply.expires_in}`);
  assert.ok(Number.isInteger(reply.expires_at), 'expires_at is an integer');
  assert.ok(reply.expires_at >= before + reply.expires_in - 2 && reply.expires_at <= afterTime + reply.expires_in + 2,
    `expires_at ${reply.expires_at} is not now + expires_in (${before}..${afterTime} + ${reply.expires_in})`);
  assert.deepEqual(reply.scopes, [MAIL_SEND]);
  assert.equal(reply.account, 'alerts');
  assert.equal(reply.mailbox, USER);

  const header = await h.cli(['token', '-p', 'alerts', '--format', 'header']);
  assert.equal(header.code, 0, header.stderr);
  assert.equal(header.stdout, `Authorization: Bearer ${token}\n`);
});

test('50 back-to-back token requests cause exactly one token request upstream', { timeout: 60000 }, async () => {
  await h.restartBroker(); // empty cache
  await h.resetCounters();
  const tokens = new Set();
  for (let i = 0; i < 50; i++) {
    const r = await h.cli(['token', '-p', 'alerts']);
    assert.equal(r.code, 0, `request ${i}: ${r.stderr}`);
    tokens.add(r.stdout);
  }
  assert.equal(tokens.size, 1, 'all 50 requests got the same cached token');
  const c = await h.counters();
  assert.equal(c.token, 1, `the emulator saw ${c.token} token requests`);
  assert.equal(c.token_success, 1);
});

test('20 concurrent CLI clients on a cold broker: one upstream request, one token for all (P2)', { timeout: 60000 }, async () => {
  await h.restartBroker();
  await h.resetCounters();
  const results = await Promise.all(Array.from({ length: 20 }, () => h.cli(['token', '-p', 'alerts'])));
  for (const [i, r] of results.entries()) assert.equal(r.code, 0, `client ${i}: ${r.stderr}`);
  const tokens = new Set(results.map((r) => r.stdout));
  assert.equal(tokens.size, 1, 'every client got the same token');
  const c = await h.counters();
  assert.equal(c.token, 1, `the emulator saw ${c.token} token requests`);
});

test('20 raw clients asking in the same instant on a cold broker: one upstream request (P2)', { timeout: 60000 }, async () => {
  await h.restartBroker();
  await h.resetCounters();
  // Connect everyone first, then fire all requests together so they all find the refresh in
  // flight rather than a cached token.
  const clients = await Promise.all(Array.from({ length: 20 }, () => h.rawClient()));
  try {
    await Promise.all(clients.map((c) => c.send({ v: 1, op: 'token', profile: 'alerts' })));
    const replies = await Promise.all(clients.map((c) => c.readFrame(20000)));
    for (const [i, r] of replies.entries()) assert.equal(r.ok, true, `client ${i}: ${JSON.stringify(r)}`);
    assert.equal(new Set(replies.map((r) => r.access_token)).size, 1, 'every client got the same token');
    const c = await h.counters();
    assert.equal(c.token, 1, `the emulator saw ${c.token} token requests`);
  } finally {
    for (const c of clients) c.close();
  }
});

test('scopes: a subset of the profile\'s scopes gets its own token; others are denied', { timeout: 30000 }, async () => {
  const mail = JSON.parse((await h.cli(['token', '-p', 'multi', '-s', MAIL_SEND, '--format', 'json'])).stdout);
  const read = JSON.parse((await h.cli(['token', '-p', 'multi', '-s', USER_READ, '--format', 'json'])).stdout);
  const both = JSON.parse((await h.cli(['token', '-p', 'multi', '--format', 'json'])).stdout);
  assert.deepEqual(mail.scopes, [MAIL_SEND]);
  assert.deepEqual(read.scopes, [USER_READ]);
  assert.deepEqual([...both.scopes].sort(), [MAIL_SEND, USER_READ].sort());
  assert.equal(new Set([mail.access_token, read.access_token, both.access_token]).size, 3, 'one token per scope set');
  // The scope set is a set: order and repetition do not make a new cache entry.
  const again = JSON.parse((await h.cli(['token', '-p', 'multi', '-s', USER_READ, '-s', MAIL_SEND, '-s', USER_READ,
    '--format', 'json'])).stdout);
  assert.equal(again.access_token, both.access_token);
  const denied = await h.cli(['token', '-p', 'alerts', '-s', USER_READ]);
  assert.equal(denied.code, 77, 'a scope outside the profile is denied');
});

test('min_ttl: a cached token with less life left is replaced by a fresh one', { timeout: 30000 }, async () => {
  const first = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(first.ok, true);
  await sleep(2200);
  const cached = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts', min_ttl: 300 });
  assert.equal(cached.access_token, first.access_token, 'enough life left: the cached token');
  const fresh = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts', min_ttl: 3597 });
  assert.equal(fresh.ok, true, JSON.stringify(fresh));
  assert.notEqual(fresh.access_token, first.access_token, 'min_ttl forced a refresh');
  assert.ok(fresh.expires_in >= 3597, `expires_in ${fresh.expires_in} < min_ttl 3597`);
});

test('min_ttl: requests for two scope sets that share one refresh both get fresh tokens', { timeout: 30000 }, async () => {
  // Both scope sets cached, then aged so that neither satisfies min_ttl.
  const scopesA = [MAIL_SEND];
  const scopesB = [USER_READ];
  const oldA = await h.rawRequest({ v: 1, op: 'token', profile: 'multi', scopes: scopesA, min_ttl: 3597 });
  const oldB = await h.rawRequest({ v: 1, op: 'token', profile: 'multi', scopes: scopesB, min_ttl: 3597 });
  assert.equal(oldA.ok && oldB.ok, true);
  await sleep(2200);
  // Sent together: one waits while the other's refresh is in flight (one refresh per account).
  const a = await h.rawClient();
  const b = await h.rawClient();
  try {
    await Promise.all([
      a.send({ v: 1, op: 'token', profile: 'multi', scopes: scopesA, min_ttl: 3597 }),
      b.send({ v: 1, op: 'token', profile: 'multi', scopes: scopesB, min_ttl: 3597 }),
    ]);
    const [ra, rb] = await Promise.all([a.readFrame(15000), b.readFrame(15000)]);
    assert.equal(ra.ok && rb.ok, true, `${JSON.stringify(ra)} ${JSON.stringify(rb)}`);
    assert.ok(ra.expires_in >= 3597, `scope set A got a token with ${ra.expires_in}s left despite min_ttl 3597 `
      + `(${ra.access_token === oldA.access_token ? 'the old cached one' : 'a new one'})`);
    assert.ok(rb.expires_in >= 3597, `scope set B got a token with ${rb.expires_in}s left despite min_ttl 3597 `
      + `(${rb.access_token === oldB.access_token ? 'the old cached one' : 'a new one'})`);
  } finally {
    a.close();
    b.close();
  }
});

test('audit seq keeps counting across broker restarts', { timeout: 30000 }, async () => {
  await h.restartBroker();
  assert.equal((await h.cli(['token', '-p', 'alerts'])).code, 0);
  const lines = h.auditLines();
  assert.ok(lines.length > 50);
  // One chain from a genesis record: seq from 0, each prev the SHA-256 of the line before.
  assert.equal(lines[0].event, 'genesis');
  const raw = h.auditText().split('\n').filter(Boolean);
  lines.forEach((l, i) => assert.equal(l.seq, i, `record ${i} has seq ${l.seq}`));
  for (let i = 1; i < raw.length; i++)
    assert.equal(JSON.parse(raw[i]).prev, require('node:crypto').createHash('sha256').update(raw[i - 1]).digest('hex'), `record ${i} chains to ${i - 1}`);
});

test('repeated requests on one connection each get their own audit line', { timeout: 30000 }, async () => {
  const before = h.auditLines().length;
  const a = await h.rawClient();
  const b = await h.rawClient();
  try {
    for (const c of [a, b, a, a, b]) {
      const reply = await c.request({ v: 1, op: 'token', profile: 'alerts' });
      assert.equal(reply.ok, true, JSON.stringify(reply));
    }
    // Another profile and rule on the same connection must not reuse the previous record.
    const multi = await a.request({ v: 1, op: 'token', profile: 'multi', scopes: [MAIL_SEND] });
    assert.equal(multi.ok, true, JSON.stringify(multi));
  } finally {
    a.close();
    b.close();
  }
  const lines = h.auditLines().slice(before).filter((l) => l.event === 'issue');
  assert.equal(lines.length, 6);
  for (let i = 1; i < lines.length; i++) assert.equal(lines[i].seq, lines[i - 1].seq + 1);
  assert.ok(lines.every((l) => l.peer.pid === process.pid), 'the peer is this process');
  assert.equal(lines[5].profile, 'multi');
  assert.notEqual(lines[5].rule, lines[0].rule);
  assert.ok(lines.every((l) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(l.time)));
});
