'use strict';
// credbroker store migrate (issue 14 item 2): every account (metadata, the newest refresh token at
// its own generation, the client secret) moves from one credential-store backend to the other
// and back, tokens are issued after each move with the next generation; a run killed at each
// fault point of the migration (common/fault.h) or at random moments is finished by running it
// again, and no account is ever lost or left in both backends once a run completes. The broker
// must not run meanwhile: the command refuses while the admin socket answers.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { setup, spawnTracked, waitExit, waitFor, CREDBROKER, TENANT, USER, MAIL_SEND } = require('./harness');

const APP_SECRET_ID = '22222222-2222-4222-8222-222222222222';
const APP_CERT_ID = '33333333-3333-4333-8333-333333333333';
const SECRET = `SECRET-CANARY-${crypto.randomBytes(12).toString('hex')}`;
const GRAPH_DEFAULT = 'https://graph.microsoft.com/.default';
const SECOND_RT = `RT-CANARY-2-${crypto.randomBytes(12).toString('hex')}`;
const DEVICE_APP = '66666666-6666-4666-8666-666666666666';

// Every flow kind: refresh token (two imported accounts), device, client secret, certificate.
const ACCOUNTS = {
  alerts: { meta: true, rt: true, secret: false },
  devflow: { meta: true, rt: true, secret: false },
  second: { meta: true, rt: true, secret: false },
  appsecret: { meta: true, rt: false, secret: true },
  appcert: { meta: true, rt: false, secret: false },
};
const KIND = { meta: 1 << 1, rt: 1 << 2, secret: 1 << 3 };

let h;
before(async () => {
  h = await setup({
    profiles: Object.fromEntries(Object.keys(ACCOUNTS).map((a) => [a, { account: a, scopes: [MAIL_SEND], rules: ['peer required uid root'] }])),
  });
  h.opts.config = { pkcs11: { wrapped_dir: h.p('store') } };
  h.writeConfig();
  await h.registerRefreshToken(SECOND_RT);
  await h.importAccount('second', SECOND_RT);
  await h.emulatorAdmin('POST', '/admin/apps', {
    client_id: APP_SECRET_ID, tenant: TENANT, public_client: false, secrets: [{ value: SECRET, expires_in: 86400 * 365 }],
  });
  let r = await h.adminRequest({
    op: 'account.add', account: 'appsecret', flow: 'client-secret', tenant: TENANT, client_id: APP_SECRET_ID,
    client_secret: SECRET, mailbox: USER,
  });
  assert.equal(r.ok, true, JSON.stringify(r));
  const kg = await h.cli(['account', 'keygen', 'appcert', '--config', h.conf]);
  assert.equal(kg.code, 0, kg.stderr);
  const pem = kg.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/)[0];
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: APP_CERT_ID, tenant: TENANT, public_client: false, certificates: [pem] });
  r = await h.adminRequest({
    op: 'account.add', account: 'appcert', flow: 'client-certificate', tenant: TENANT, client_id: APP_CERT_ID,
    scopes: [GRAPH_DEFAULT], mailbox: USER,
  });
  assert.equal(r.ok, true, JSON.stringify(r));
  // A device-flow account, signed in through the admin socket.
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: DEVICE_APP, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/config', { device_interval: 1, device_expires_in: 30 });
  const c = await h.adminClient();
  try {
    await c.send({ v: 1, op: 'account.add', account: 'devflow', flow: 'device', tenant: TENANT, client_id: DEVICE_APP, mailbox: USER });
    const first = await c.readFrame();
    assert.equal(first.stage, 'device_code', JSON.stringify(first));
    await h.emulatorAdmin('POST', '/admin/device/approve', { user_code: first.user_code, user: USER });
    const done = await c.readFrame(20000);
    assert.equal(done.stage, 'done', JSON.stringify(done));
  } finally {
    c.close();
  }
});
after(async () => {
  if (h) await h.teardown();
});

// What each backend holds of every account: objects from the token's data-object labels,
// wrapped from the sealed files' headers (a temporary file is a write not yet renamed).
async function holdings() {
  const labels = await h.dataObjectLabels();
  const out = {};
  for (const a of Object.keys(ACCOUNTS)) {
    const gens = labels.filter((l) => l.startsWith(`${a}/refresh_token/`)).map((l) => Number(l.split('/')[2]));
    const objects = {
      meta: labels.includes(`${a}/meta`),
      secret: labels.includes(`${a}/client_secret`),
      rt: gens.length ? Math.max(...gens) : 0,
    };
    const f = h.sealedFile(a);
    const kinds = f ? Number(f.kinds) : 0;
    const wrapped = {
      meta: (kinds & KIND.meta) !== 0,
      secret: (kinds & KIND.secret) !== 0,
      rt: kinds & KIND.rt ? Number(f.refresh_token_generation) : 0,
    };
    out[a] = { objects, wrapped };
  }
  return out;
}

// The object store's refresh token index objects ("<account>/refresh_index/<g>"), sorted.
async function indexLabels() {
  return (await h.dataObjectLabels()).filter((l) => l.includes('/refresh_index/')).sort();
}

const any = (x) => x.meta || x.secret || x.rt > 0;

// Nothing lost: each part an account had is held by one backend or the other, the refresh token
// at its generation (or newer).
function assertNothingLost(held, generations, when) {
  for (const [a, want] of Object.entries(ACCOUNTS)) {
    const { objects, wrapped } = held[a];
    const msg = `${a} ${when}: ${JSON.stringify(held[a])}`;
    if (want.meta) assert.ok(objects.meta || wrapped.meta, `metadata kept, ${msg}`);
    if (want.secret) assert.ok(objects.secret || wrapped.secret, `client secret kept, ${msg}`);
    if (want.rt) assert.ok(Math.max(objects.rt, wrapped.rt) >= generations[a], `refresh token generation ${generations[a]} kept, ${msg}`);
  }
}

// After a completed run: every account wholly in `to`, nothing of it left in the other backend.
function assertAllIn(held, to, generations) {
  const from = to === 'wrapped' ? 'objects' : 'wrapped';
  for (const [a, want] of Object.entries(ACCOUNTS)) {
    const msg = `${a}: ${JSON.stringify(held[a])}`;
    assert.equal(any(held[a][from]), false, `nothing of ${a} left in ${from}, ${msg}`);
    assert.equal(held[a][to].meta, want.meta, `metadata in ${to}, ${msg}`);
    assert.equal(held[a][to].secret, want.secret, `client secret in ${to}, ${msg}`);
    assert.equal(held[a][to].rt, want.rt ? generations[a] : 0, `refresh token generation in ${to}, ${msg}`);
  }
}

function migrate(to, env = {}) {
  return h.cli(['store', 'migrate', '--to', to, '--config', h.conf], { env });
}

function useBackend(store) {
  h.store = store;
  h.writeConfig();
}

// Starts the broker on the configured backend, gets a token for every account (a refresh for
// each: the cache is empty after a start), checks the refresh-token generation went g -> g+1,
// and stops the broker.
async function tokensWork(generations, store) {
  await h.startBroker();
  for (const a of Object.keys(ACCOUNTS)) {
    const reply = await h.rawRequest({ v: 1, op: 'token', profile: a }, 20000);
    assert.equal(reply.ok, true, `${a} on ${store}: ${JSON.stringify(reply)}`);
  }
  // account list through the broker: each account's store, from account.show.
  const list = await h.cli(['account', 'list', '--json', '--config', h.conf]);
  assert.equal(list.code, 0, list.stderr);
  for (const row of JSON.parse(list.stdout)) assert.equal(row.backend, store, JSON.stringify(row));
  await h.stopBroker();
  const held = await holdings();
  for (const [a, want] of Object.entries(ACCOUNTS)) {
    if (!want.rt) continue;
    assert.equal(held[a][store].rt, generations[a] + 1, `${a}: the rotation after the move wrote generation ${generations[a] + 1}`);
    generations[a] += 1;
  }
}

const generations = {};

test('objects -> wrapped -> objects: every account moves whole, tokens issued after each move at the next generation', { timeout: 120000 }, async () => {
  // A first token for each, on the object store: the refresh-token accounts rotate to 2.
  for (const a of Object.keys(ACCOUNTS)) {
    const reply = await h.rawRequest({ v: 1, op: 'token', profile: a }, 20000);
    assert.equal(reply.ok, true, `${a}: ${JSON.stringify(reply)}`);
  }
  let held = await holdings();
  for (const [a, want] of Object.entries(ACCOUNTS)) if (want.rt) generations[a] = held[a].objects.rt;
  assert.equal(generations.alerts, 2);
  assert.equal(generations.devflow, 1, 'the device sign-in stored generation 1 (its first token was cached)');

  // Refused while the broker answers on its admin socket; nothing moved.
  const refused = await migrate('wrapped');
  assert.equal(refused.code, 75, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /stop credbrokerd/);
  held = await holdings();
  assertAllIn(held, 'objects', generations);
  await h.stopBroker();

  const shownBefore = JSON.parse((await h.cli(['account', 'show', 'alerts', '--json', '--config', h.conf])).stdout);
  const r = await migrate('wrapped');
  assert.equal(r.code, 0, r.stdout + r.stderr);

  assert.match(r.stdout, /^alerts: moved to wrapped: metadata, refresh token generation 2$/m);
  assert.match(r.stdout, /^appsecret: moved to wrapped: metadata, client secret$/m);
  assert.match(r.stdout, /^Moved 5 accounts from objects to wrapped\.$/m);
  assert.match(r.stdout, /set "store = wrapped" in the \[pkcs11\] section of /);
  assertAllIn(await holdings(), 'wrapped', generations);
  assert.deepEqual(await indexLabels(), [], 'no refresh token index is left behind in the token');
  // The configuration still says objects: account list shows each account it still finds in the
  // token (a key, a certificate, the refresh marker) as held by wrapped, and points out those it
  // no longer lists at all (appsecret; devflow, never refreshed, has no refresh marker).
  const listed = await h.cli(['account', 'list', '--config', h.conf]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^Store: wrapped$/m, listed.stdout);
  for (const a of ['appsecret', 'devflow']) assert.doesNotMatch(listed.stdout, new RegExp(`^${a} `, 'm'), listed.stdout);
  assert.match(listed.stderr, /2 more accounts are held by the wrapped store \(.*\), which the configuration does not use: finish with "credbroker store migrate --to wrapped" and set "store = wrapped" in \[pkcs11\]/, listed.stderr);
  // The assertion key and certificate stay in the token.
  const kg = await h.cli(['account', 'show', 'appcert', '--config', h.conf]);
  assert.match(kg.stdout, /Thumbprint/, kg.stdout);
  // A second run finds nothing left to move.
  const again = await migrate('wrapped');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^Moved 0 accounts from objects to wrapped\.$/m);

  useBackend('wrapped');
  const shownAfter = JSON.parse((await h.cli(['account', 'show', 'alerts', '--json', '--config', h.conf])).stdout);
  assert.ok(shownBefore.refresh_token.stored_at > 0, JSON.stringify(shownBefore));
  assert.deepEqual(shownAfter.refresh_token, { ...shownBefore.refresh_token, objects: 1 }, 'the generation and its write time move with the token');
  await tokensWork(generations, 'wrapped');

  const back = await migrate('objects');
  assert.equal(back.code, 0, back.stdout + back.stderr);
  assert.match(back.stdout, /already says "store = wrapped"|set "store = objects"/);
  assertAllIn(await holdings(), 'objects', generations);
  // Each imported refresh token gets its index, so its first read probes instead of scanning.
  assert.deepEqual(await indexLabels(), Object.keys(generations).sort()
    .map((a) => `${a}/refresh_index/${generations[a]}`));
  useBackend('objects');
  await tokensWork(generations, 'objects');
});

// What account show / list say after a kill at point (the first account, alerts, was being
// moved; the configuration still names the other backend): both backends after the destination
// was written and until the source is emptied.
async function assertShownStores(point, to) {
  const from = to === 'wrapped' ? 'objects' : 'wrapped';
  // The wrapped store's drop takes the file first, then the token's counters: midway, the
  // account is no longer held there.
  const both = ['migrate-after-import', 'migrate-after-verify'].includes(point) ||
    (point === 'migrate-drop-midway' && to === 'wrapped');
  const show = await h.cli(['account', 'show', 'alerts', '--config', h.conf]);
  const json = await h.cli(['account', 'show', 'alerts', '--json', '--config', h.conf]);
  const list = await h.cli(['account', 'list', '--config', h.conf]);
  assert.equal(show.code, 0, show.stderr);
  const backend = both ? 'both' : point.startsWith('migrate-drop') || point === 'migrate-after-drop' ? to : from;
  assert.equal(JSON.parse(json.stdout).backend, backend, `${point} -> ${to}: ${json.stdout}`);
  if (both) {
    assert.match(show.stdout, /^Store: +BOTH objects and wrapped: a "credbroker store migrate" was interrupted; stop credbrokerd and run it again with the same --to$/m, show.stdout);
    assert.match(list.stdout, new RegExp(`^Store: BOTH objects and wrapped \\(a "credbroker store migrate" was interrupted; stop credbrokerd and run it again with the same --to\\): alerts$`, 'm'), list.stdout);
    assert.match(list.stdout, new RegExp(`^Store: ${from}: appcert, appsecret, devflow, second$`, 'm'), list.stdout);
    assert.match(list.stderr, /1 account is in BOTH credential stores/, list.stderr);
  } else {
    assert.match(show.stdout, new RegExp(`^Store: +${backend}$`, 'm'), show.stdout);
    assert.match(list.stdout, new RegExp(`^Store: ${backend === from ? from : `${to}: alerts`}$`, 'm'), list.stdout);
    assert.doesNotMatch(list.stderr, /BOTH/);
  }
}

const POINTS = ['migrate-after-export', 'migrate-after-import', 'migrate-after-verify',
  'migrate-drop-midway', 'migrate-after-drop'];

for (const point of POINTS) {
  test(`SIGKILL at ${point}, both directions: nothing lost, a rerun finishes, tokens issued`, { timeout: 120000 }, async () => {
    for (const to of ['wrapped', 'objects']) {
      const killed = await migrate(to, { CREDBROKER_FAULT: point });
      assert.equal(killed.signal, 'SIGKILL', `${to}: killed at ${point}: ${killed.stdout}${killed.stderr}`);
      assertNothingLost(await holdings(), generations, `after a kill at ${point} towards ${to}`);
      await assertShownStores(point, to);
      // The broker may start now (the guard died with the command) but the migration is not done.
      const rerun = await migrate(to);
      assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
      assertAllIn(await holdings(), to, generations);
      useBackend(to);
      await tokensWork(generations, to);
    }
  });
}

// The state letter of /proc/PID/stat ('T': stopped).
function procState(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
  } catch (_) {
    return null;
  }
}

test('a broker started while a migration runs refuses to start (the command holds the admin socket)', { timeout: 60000 }, async () => {
  const to = h.store === 'objects' ? 'wrapped' : 'objects';
  // Stopped by itself once it holds the socket, before it touches the token.
  const proc = spawnTracked(CREDBROKER, ['store', 'migrate', '--to', to, '--config', h.conf],
    { env: h.env({ CREDBROKER_FAULT: 'migrate-pause-after-guard' }), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  await waitFor('the migration to hold the admin socket', () => procState(proc.pid) === 'T');
  try {
    await assert.rejects(h.startBroker({ timeoutMs: 10000 }), /exited .*Another process \(pid \d+ credbroker.*is listening on/s);
    const second = await migrate(to);
    assert.equal(second.code, 75, 'a second migration is refused as well');
  } finally {
    proc.kill('SIGCONT');
  }
  const exit = await waitExit(proc);
  assert.equal(exit.code, 0, out);
  assert.ok(!fs.existsSync(h.adminSocket), 'the admin socket is removed afterwards');
  assertAllIn(await holdings(), to, generations);
  useBackend(to);
  await tokensWork(generations, to);
});

test('random kill -9 during migrations: every account survives each kill; reruns finish', { timeout: 170000 }, async () => {
  let kills = 0;
  let span = 60; // ms: the next kill lands within the length of the last complete run
  for (let round = 0; round < 8; round++) {
    const to = round % 2 === 0 ? 'wrapped' : 'objects';
    for (let attempt = 0; ; attempt++) {
      const started = Date.now();
      const proc = spawnTracked(CREDBROKER, ['store', 'migrate', '--to', to, '-v', '--config', h.conf],
        { env: h.env(), stdio: ['ignore', 'ignore', 'pipe'] });
      // Killed only once the command has logged in: a kill inside C_Login can empty SoftHSM2's
      // token.object, for any program (docs/softhsm-torn-writes.md), not a migration's doing.
      const delay = attempt < 3 ? Math.floor(Math.random() * span) : null;
      let stderr = '';
      let timer = null;
      proc.stderr.on('data', (d) => {
        stderr += d;
        if (delay !== null && !timer && /accounts? in the \w+ store to look at/.test(stderr)) {
          timer = setTimeout(() => proc.kill('SIGKILL'), delay);
        }
      });
      const exit = await waitExit(proc);
      if (timer) clearTimeout(timer);
      if (exit.signal === 'SIGKILL') {
        kills++;
        assertNothingLost(await holdings(), generations, `after a random kill (${delay} ms) towards ${to}`);
        continue;
      }
      assert.equal(exit.code, 0, stderr);
      span = Math.max(5, Date.now() - started - 30);
      break;
    }
    assertAllIn(await holdings(), to, generations);
  }
  useBackend('objects');
  await tokensWork(generations, 'objects');
  assert.ok(kills >= 3, `runs were killed (${kills})`);
});

test('an interrupted rotation\'s older generation leaves the object store too; the newest one moves', { timeout: 60000 }, async () => {
  useBackend('objects');
  h.opts.brokerEnv = { CREDBROKER_FAULT: 'after-readback' }; // generation g+1 verified, g not yet destroyed
  await h.startBroker();
  const proc = h.broker.proc;
  const keepAlive = setInterval(() => {}, 1000);
  try {
    await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' }, 20000).catch(() => null);
    const exit = await waitExit(proc);
    assert.equal(exit.signal, 'SIGKILL');
  } finally {
    clearInterval(keepAlive);
    h.broker = null;
    h.opts.brokerEnv = {};
  }
  const g = generations.alerts;
  assert.deepEqual(await h.refreshTokenGenerations('alerts'), [g, g + 1]);
  generations.alerts = g + 1;
  const r = await migrate('wrapped');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`^alerts: moved to wrapped: metadata, refresh token generation ${g + 1}$`, 'm'));
  assertAllIn(await holdings(), 'wrapped', generations);
  assert.deepEqual((await h.dataObjectLabels()).filter((l) => l.startsWith('alerts/refresh_token/')), [], 'both generations gone');
  useBackend('wrapped');
  await tokensWork(generations, 'wrapped');
});
