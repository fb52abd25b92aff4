'use strict';
// The device code flow through the admin socket: the first reply carries Microsoft's message and
// user code, the broker polls no faster than the interval, and the second reply comes when the
// user approved (or declined, or the code expired).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, sleep, waitFor, TENANT } = require('./harness');

const APP = '66666666-6666-4666-8666-666666666666';

let h;
before(async () => {
  h = await setup({
    profiles: {
      alerts: { account: 'alerts', rules: ['peer required uid root'] },
      dev: { account: 'dev', rules: ['peer required uid root'] },
    },
  });
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: APP, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/config', { device_interval: 1, device_expires_in: 30 });
});
after(async () => {
  if (h) await h.teardown();
});

async function startDevice(account, extra = {}) {
  const c = await h.adminClient();
  await c.send({ v: 1, op: 'account.add', account, flow: 'device', tenant: TENANT, client_id: APP,
    mailbox: 'alice@contoso.com', ...extra });
  const first = await c.readFrame();
  return { c, first };
}

test('device: code, approval, done; tokens follow; polls respect the interval', async () => {
  await h.resetCounters();
  const { c, first } = await startDevice('dev');
  let approvedAt;
  try {
    assert.equal(first.ok, true, JSON.stringify(first));
    assert.equal(first.stage, 'device_code');
    assert.match(first.user_code, /^[A-Z0-9]{9}$/);
    assert.equal(first.verification_uri, 'https://microsoft.com/devicelogin');
    assert.match(first.message, new RegExp(first.user_code));
    assert.equal(first.interval, 1);
    await sleep(2500); // a few polls while pending
    approvedAt = Date.now();
    await h.emulatorAdmin('POST', '/admin/device/approve', { user_code: first.user_code, user: 'alice@contoso.com' });
    const done = await c.readFrame(20000);
    const elapsed = Date.now() - approvedAt;
    process.stderr.write(`# device: approval to done in ${elapsed} ms (interval 1 s)\n`);
    assert.equal(done.ok, true, JSON.stringify(done));
    assert.equal(done.stage, 'done');
    assert.equal(done.account, 'dev');
    // One poll interval (1 s) and the account's store writes; AddressSanitizer slows the latter.
    const bound = process.env.CREDBROKER_SANITIZE === '1' ? 4500 : 3000;
    assert.ok(elapsed < bound, `approval to done took ${elapsed} ms`);
  } finally {
    c.close();
  }
  const counters = await h.counters();
  assert.equal(counters.device_slow_downs, 0);
  const polls = counters.token_requests.filter((r) => r.grant === 'urn:ietf:params:oauth:grant-type:device_code');
  for (let i = 1; i < polls.length; i++) assert.ok(polls[i].t - polls[i - 1].t >= 950, 'polled faster than the interval');
  const token = await h.rawRequest({ v: 1, op: 'token', profile: 'dev' });
  assert.equal(token.ok, true, JSON.stringify(token));
  process.stderr.write(`# device: approval to the first client token in ${Date.now() - approvedAt} ms\n`);
  // the first token is the sign-in's own, cached: no refresh grant was needed
  assert.equal((await h.counters()).token_by_grant.refresh_token, undefined);
  const fresh = await h.rawRequest({ v: 1, op: 'token', profile: 'dev', min_ttl: 7200 });
  assert.equal(fresh.ok, true, JSON.stringify(fresh));
  const show = await h.adminRequest({ op: 'account.show', account: 'dev' });
  assert.equal(show.account.flow, 'device');
});

test('device: account.login signs the account in again (new refresh token generation)', async () => {
  const before = (await h.adminRequest({ op: 'account.show', account: 'dev' })).account.refresh_token.generation;
  const c = await h.adminClient();
  try {
    const first = await c.request({ v: 1, op: 'account.login', account: 'dev' });
    assert.equal(first.stage, 'device_code', JSON.stringify(first));
    await h.emulatorAdmin('POST', '/admin/device/approve', { user_code: first.user_code, user: 'alice@contoso.com' });
    const done = await c.readFrame(20000);
    assert.equal(done.ok, true, JSON.stringify(done));
  } finally {
    c.close();
  }
  const after = (await h.adminRequest({ op: 'account.show', account: 'dev' })).account.refresh_token.generation;
  assert.ok(after > before, `generation ${before} -> ${after}`);
  assert.ok(h.auditLines().some((l) => l.event === 'account_signed_in' && l.account === 'dev'));
  assert.equal((await h.adminRequest({ op: 'account.login', account: 'nosuch' })).error, 'not_found');
});

test('device: a declined sign-in ends with sign_in_failed and stores nothing', async () => {
  const { c, first } = await startDevice('declined');
  try {
    await h.emulatorAdmin('POST', '/admin/device/decline', { user_code: first.user_code });
    const done = await c.readFrame(20000);
    assert.equal(done.error, 'sign_in_failed', JSON.stringify(done));
    assert.match(done.message, /declined/);
  } finally {
    c.close();
  }
  assert.equal((await h.adminRequest({ op: 'account.show', account: 'declined' })).error, 'not_found');
});

test('device: an expired code ends with sign_in_failed', async () => {
  await h.emulatorAdmin('POST', '/admin/config', { device_expires_in: 3 });
  const { c, first } = await startDevice('expired');
  try {
    assert.equal(first.expires_in, 3);
    const done = await c.readFrame(20000);
    assert.equal(done.error, 'sign_in_failed', JSON.stringify(done));
    assert.match(done.message, /expired/);
  } finally {
    c.close();
    await h.emulatorAdmin('POST', '/admin/config', { device_expires_in: 30 });
  }
});

test('device: slow_down adds 5 s to the interval', async () => {
  // Tolerance below zero: every poll counts as too early once, so the first poll gets slow_down.
  await h.emulatorAdmin('POST', '/admin/config', { device_interval: 1 });
  await h.resetCounters();
  await h.emulatorAdmin('POST', '/admin/faults', { endpoint: 'token', mode: 'status', status: 400, error: 'slow_down', count: 1 });
  const { c, first } = await startDevice('slow');
  try {
    await waitFor('a second poll', async () => {
      const polls = (await h.counters()).token_requests.filter((r) => r.endpoint === 'token');
      return polls.length >= 2 ? polls : null;
    }, { timeoutMs: 15000, intervalMs: 200 }).then((polls) => {
      assert.ok(polls[1].t - polls[0].t >= 5900, `after slow_down the next poll came ${polls[1].t - polls[0].t} ms later`);
    });
    await h.emulatorAdmin('POST', '/admin/device/approve', { user_code: first.user_code });
    const done = await c.readFrame(20000);
    assert.equal(done.ok, true, JSON.stringify(done));
  } finally {
    c.close();
  }
});

test('device: closing the admin connection stops the polling', async () => {
  const { c, first } = await startDevice('abandoned');
  assert.equal(first.stage, 'device_code');
  // One sign-in per account at a time; no removal under it.
  const second = await h.adminRequest({ op: 'account.add', account: 'abandoned', flow: 'device', tenant: TENANT, client_id: APP });
  assert.equal(second.error, 'unavailable', JSON.stringify(second));
  assert.equal((await h.adminRequest({ op: 'account.remove', account: 'abandoned' })).error, 'unavailable');
  c.close();
  await sleep(1500);
  const before = (await h.counters()).device_polls;
  await sleep(2500);
  assert.equal((await h.counters()).device_polls, before);
  assert.equal((await h.adminRequest({ op: 'account.show', account: 'abandoned' })).error, 'not_found');
});
