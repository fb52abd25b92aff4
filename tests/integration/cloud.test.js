'use strict';
// Sovereign clouds (issue 13 item 6): the whole demo path with `cloud = usgov-high`, against an
// emulator that plays GCC High (--graph-resource https://graph.microsoft.us, so it refuses a
// graph.microsoft.com scope with AADSTS500011 and its Graph refuses a token of another audience,
// as Entra and Graph do). The authority and graph URLs are the emulator's (explicit URLs win
// over the cloud's), the scopes are the cloud's: a password sign-in through the CLI with the
// default scopes, a token, `account test --send-to` and `credbroker send` through Graph, an
// app-only account whose bare "Mail.Send" profile becomes graph.microsoft.us/.default, and an
// account whose own --cloud global beats the configured cloud.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { setup, TENANT } = require('./harness');

const GOV = 'https://graph.microsoft.us';
const GOV_MAIL_SEND = `${GOV}/Mail.Send`;
const PUBLIC_APP = '44444444-4444-4444-8444-444444444444';
const SECRET_APP = '55555555-5555-4555-8555-555555555555';
const PASSWORD = `PW-CANARY-${crypto.randomBytes(10).toString('hex')}`;
const SECRET = `SECRET-CANARY-${crypto.randomBytes(10).toString('hex')}`;
const ROOT = ['peer required uid root'];

let h;
before(async () => {
  h = await setup({
    emulator: { args: ['--graph-resource', GOV] },
    refreshTokenScopes: [GOV_MAIL_SEND],
    config: { identity: { cloud: 'usgov-high' } },
    profiles: {
      alerts: { account: 'alerts', scopes: [GOV_MAIL_SEND], rules: ROOT },
      ropc: { account: 'ropc', scopes: [GOV_MAIL_SEND], rules: ROOT },
      app: { account: 'app', scopes: ['Mail.Send'], rules: ROOT },
      appdefault: { account: 'app', scopes: [`${GOV}/.default`], rules: ROOT },
    },
  });
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: PUBLIC_APP, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/apps', {
    client_id: SECRET_APP, tenant: TENANT, public_client: false, secrets: [{ value: SECRET, expires_in: 86400 }],
  });
  await h.emulatorAdmin('POST', '/admin/users', { username: 'alice@contoso.com', password: PASSWORD, tenant: TENANT });
});
after(() => h && h.teardown());

const cb = (args, opts) => h.cli([...args, '--config', h.conf], opts);

test('usgov-high: sign-in with the default scopes asks for graph.microsoft.us', { timeout: 60000 }, async () => {
  const r = await cb(['account', 'add', 'ropc', '--flow', 'password', '--tenant', TENANT,
    '--client-id', PUBLIC_APP, '--username', 'alice@contoso.com', '--password-stdin',
    '--mailbox', 'alice@contoso.com'], { input: `${PASSWORD}\n` });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok((r.stdout + r.stderr).includes(GOV_MAIL_SEND), r.stdout + r.stderr);
  assert.ok(!(r.stdout + r.stderr).includes('graph.microsoft.com'), r.stdout + r.stderr);
  // The sign-in's token is cached under the profile's scope set: no second upstream request.
  const before = (await h.counters()).token;
  const token = await cb(['token', '-p', 'ropc']);
  assert.equal(token.code, 0, token.stderr);
  assert.equal((await h.counters()).token, before, 'the profile hit the sign-in token');
  assert.ok(!h.emulatorLog().includes('AADSTS500011'), 'a global scope reached the emulator');
});

test('usgov-high: account test and send go through the national Graph', { timeout: 60000 }, async () => {
  const first = (await h.emulatorAdmin('GET', '/admin/mail/delivered')).length;
  const t = await cb(['account', 'test', 'ropc', '--send-to', 'admin@contoso.com']);
  assert.equal(t.code, 0, t.stdout + t.stderr);
  assert.match(t.stdout, /scopes: +https:\/\/graph\.microsoft\.us\/Mail\.Send/);
  assert.match(t.stdout, /accepted by Microsoft Graph/);
  const send = await cb(['send', '-p', 'alerts', '--to', 'ops@contoso.com', '--subject', 'gov'],
    { input: 'sent through GCC High\n' });
  assert.equal(send.code, 0, send.stderr);
  // What Graph delivered (MIME from both), as the recipients see it.
  const mail = (await h.emulatorAdmin('GET', '/admin/mail/delivered')).slice(first);
  assert.deepEqual(mail.map((m) => m.recipients[0]), ['admin@contoso.com', 'ops@contoso.com']);
  assert.deepEqual(mail.map((m) => m.subject), ['credbroker test message', 'gov']);
  // account test without --send-to, on the imported account: its default scopes are the cloud's.
  const imported = await cb(['account', 'test', 'alerts']);
  assert.equal(imported.code, 0, imported.stdout + imported.stderr);
  assert.match(imported.stdout, /scopes: +https:\/\/graph\.microsoft\.us\/Mail\.Send/);
});

test('usgov-high: app-only asks for graph.microsoft.us/.default, also for a bare Mail.Send', { timeout: 60000 }, async () => {
  // Its own graph URL (a relay's name for the emulator): the scopes stay the cloud's.
  const relay = `https://localhost:${h.emuPorts.port}`;
  const add = await cb(['account', 'add', 'app', '--flow', 'client-secret', '--tenant', TENANT,
    '--client-id', SECRET_APP, '--secret-stdin', '--mailbox', 'alerts@contoso.com', '--graph', relay,
    '--cloud', 'usgov-high', '--authority', `https://127.0.0.1:${h.emuPorts.port}`],
  { input: `${SECRET}\n` });
  assert.equal(add.code, 0, add.stdout + add.stderr);
  assert.ok((add.stdout + add.stderr).includes(`${GOV}/.default`), add.stdout + add.stderr);
  // account show names the account's own cloud and Graph.
  const show = await cb(['account', 'show', 'app']);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^Cloud:\s+usgov-high$/m, show.stdout);
  assert.match(show.stdout, new RegExp(`^Graph:\\s+${relay.replace(/[.]/g, '\\.')}$`, 'm'), show.stdout);
  for (const profile of ['app', 'appdefault']) {
    const r = await h.rawRequest({ v: 1, op: 'token', profile, min_ttl: 7200 });
    assert.equal(r.ok, true, `${profile}: ${JSON.stringify(r)}`);
  }
  // The token reply names the account's Graph, and the CLI sends there, not to its configured one
  // (a dead port in this copy of the configuration).
  const reply = await h.rawRequest({ v: 1, op: 'token', profile: 'app' });
  assert.equal(reply.graph, relay);
  const conf = h.p('cli-dead-graph.conf');
  fs.writeFileSync(conf, fs.readFileSync(h.conf, 'utf8').replace(/^graph = .*$/m, 'graph = https://127.0.0.1:1'));
  const first = (await h.mail()).length;
  const send = await h.cli(['send', '-p', 'app', '--to', 'ops@contoso.com', '--subject', 'app-only', '--config', conf],
    { input: 'app-only in GCC High\n' });
  assert.equal(send.code, 0, send.stderr);
  assert.equal((await h.mail()).length, first + 1);
});

test('an account\'s own cloud beats the configured one (global here: refused by a GCC High directory)', { timeout: 60000 }, async () => {
  const port = h.emuPorts.port;
  const r = await cb(['account', 'add', 'wrongcloud', '--flow', 'password', '--tenant', TENANT,
    '--client-id', PUBLIC_APP, '--username', 'alice@contoso.com', '--password-stdin', '--cloud', 'global',
    '--authority', `https://127.0.0.1:${port}`, '--graph', `https://127.0.0.1:${port}`], { input: `${PASSWORD}\n` });
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /the requested resource is not in this tenant: set --cloud \(or --graph\) to the tenant.s own cloud \(AADSTS500011\)/, r.stdout + r.stderr);
  assert.equal((await h.adminRequest({ op: 'account.show', account: 'wrongcloud' })).error, 'not_found');
  const bad = await cb(['account', 'add', 'x', '--flow', 'device', '--tenant', TENANT, '--client-id', PUBLIC_APP,
    '--cloud', 'gcc']);
  assert.equal(bad.code, 64, bad.stderr);
  assert.match(bad.stderr, /usgov-high/);
});

test('account import keeps --cloud and --graph (through the broker)', { timeout: 60000 }, async () => {
  const rt = h.p('imported.rt');
  fs.writeFileSync(rt, `RT-CANARY-CLOUD-${crypto.randomBytes(8).toString('hex')}\n`, { mode: 0o600 });
  const relay = `https://localhost:${h.emuPorts.port}`;
  const args = (name) => ['account', 'import', name, '--tenant', TENANT, '--client-id', PUBLIC_APP,
    '--refresh-token-file', rt, '--cloud', 'dod', '--graph', relay];
  const viaBroker = await cb(args('imported'));
  assert.equal(viaBroker.code, 0, viaBroker.stdout + viaBroker.stderr);
  const show = await cb(['account', 'show', 'imported']);
  assert.match(show.stdout, /^Cloud:\s+dod$/m, show.stdout);
  assert.match(show.stdout, /^Graph:\s+https:\/\/localhost:\d+$/m, show.stdout);
  const stored = await h.adminRequest({ op: 'account.show', account: 'imported' });
  assert.equal(stored.account.cloud, 'dod');
  assert.equal(stored.account.graph, relay);
  const bad = await cb(['account', 'import', 'x', '--tenant', TENANT, '--client-id', PUBLIC_APP,
    '--refresh-token-file', rt, '--cloud', 'gcc']);
  assert.equal(bad.code, 64, bad.stderr);
  assert.match(bad.stderr, /--cloud is not global, usgov, usgov-high, dod or china/);
});
