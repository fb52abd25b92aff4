'use strict';
// No secret in logs, audit, stderr, argv or environment; no core dumps, no peeking (P4, §9).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, run, sleep, spawnTracked, waitFor } = require('./harness');

let h;
before(async () => {
  // A canary PIN and a canary refresh token; debug logging, the most talkative level.
  h = await setup();
});
after(() => h && h.teardown());

const refreshTokens = new Set();
const accessTokens = new Set();
const outputs = []; // { what, text } everything a client printed that is not a token on purpose

function note(what, r, { stdoutIsToken = false } = {}) {
  outputs.push({ what: `${what} (stderr)`, text: r.stderr });
  if (!stdoutIsToken) outputs.push({ what: `${what} (stdout)`, text: r.stdout });
  return r;
}

async function learnRefreshTokens() {
  for (const g of await h.refreshTokenGenerations()) {
    const value = (await h.readRefreshTokenGeneration('alerts', g)).token;
    assert.ok(value.length >= 16, `generation ${g} holds a plausible token`);
    refreshTokens.add(value);
  }
}

async function issueToken(what) {
  const r = note(what, await h.cli(['token', '-p', 'alerts']), { stdoutIsToken: true });
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  accessTokens.add(r.stdout.trim());
  const json = note(`${what} json`, await h.cli(['token', '-p', 'alerts', '--format', 'json']), { stdoutIsToken: true });
  accessTokens.add(JSON.parse(json.stdout).access_token);
}

// The live argv and environment of a process, as the kernel shows them from its memory (root
// reads a non-dumpable process's environ too), split into their NUL-separated strings.
function procStrings(pid) {
  const read = (f) => fs.readFileSync(`/proc/${pid}/${f}`, 'latin1').split('\0').filter(Boolean);
  return { argv: read('cmdline'), environ: read('environ') };
}

// Every process under pid (its children, theirs...), from /proc/*/stat.
function descendants(pid) {
  const children = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch (_) { /* gone */ }
  }
  const out = [];
  const walk = (p) => { for (const c of children.get(p) || []) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

// Fails when any secret, or a 20-character piece of one, is in the strings.
function assertNoSecretIn(strings, secrets, what) {
  const text = [...strings.argv, ...strings.environ].join('\n');
  for (const v of secrets) {
    assert.ok(v && v.length >= 16, `${what}: a plausible secret to look for`);
    for (let i = 0; i + 20 <= v.length; i += 10) {
      assert.ok(!text.includes(v.slice(i, i + 20)), `${what}: a piece of a secret (${v.slice(0, 6)}…) is in its argv or environment`);
    }
  }
}

test('a run through issue, deny, unavailable, refresh, send and reauth', { timeout: 90000 }, async () => {
  refreshTokens.add(h.canaryRefreshToken);
  await learnRefreshTokens();
  assert.deepEqual([...refreshTokens], [h.canaryRefreshToken], 'generation 1 reads back as the imported canary');

  // issue (first refresh: the canary is used and rotated)
  await issueToken('issue');
  await learnRefreshTokens();

  // deny
  const denied = note('deny', await h.cli(['token', '-p', 'alerts'], { asNobody: true }));
  assert.equal(denied.code, 77);

  // unavailable: the endpoint down, then a 503
  await h.stopEmulator();
  await h.restartBroker();
  const down = note('unavailable', await h.cli(['token', '-p', 'alerts']));
  assert.equal(down.code, 75, down.stderr);
  await h.startEmulator();
  await h.restartBroker();
  await h.addFault({ endpoint: 'token', mode: 'status', status: 503, retry_after: 1 });
  const busy = note('503', await h.cli(['token', '-p', 'alerts']));
  assert.equal(busy.code, 75, busy.stderr);
  await sleep(1300);

  // refresh again (rotation), and a mail through Graph with the token
  await issueToken('refresh');
  await learnRefreshTokens();
  const sent = note('send', await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 'canary',
    '--config', h.conf], { input: 'body\n' }));
  assert.equal(sent.code, 0, sent.stderr);
  // Graph refuses the token once (401): the CLI has the broker drop it, gets a fresh one and
  // sends again (issue 11 item 0); nothing of either token may show in what it prints.
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 401, code: 'InvalidAuthenticationToken' });
  const retried = note('send after a 401', await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 'x',
    '--config', h.conf], { input: 'body\n' }));
  assert.equal(retried.code, 0, retried.stderr);
  assert.ok(h.auditLines().some((l) => l.event === 'token.drop'), 'the refused token was dropped at the broker');

  // a server-side rejection mentioning the grant, then reauth
  await h.emulatorAdmin('POST', '/admin/refresh-tokens/revoke', { user: 'alerts@contoso.com', access_tokens: true });
  await h.restartBroker();
  const reauth = note('reauth', await h.cli(['token', '-p', 'alerts']));
  assert.equal(reauth.code, 78, reauth.stderr);
  const events = h.auditLines().map((l) => l.event);
  for (const e of ['issue', 'deny', 'refresh', 'refresh_failed', 'reauth_required']) {
    assert.ok(events.includes(e), `the run produced a ${e} audit record`);
  }
  assert.ok(refreshTokens.size >= 3, `learnt ${refreshTokens.size} refresh tokens`);
  assert.ok(accessTokens.size >= 2, `learnt ${accessTokens.size} access tokens`);
});

test('no refresh token, access token or PIN in the broker stderr, audit log, emulator log or CLI output', { timeout: 30000 }, async () => {
  assert.ok(refreshTokens.size > 0 && accessTokens.size > 0, 'the previous test collected the secrets');
  const haystacks = [
    { what: 'credbrokerd stderr', text: h.brokerLog() },
    { what: 'audit log', text: h.auditText() },
    { what: 'emulator log', text: h.emulatorLog() },
    ...outputs,
  ];
  assert.ok(haystacks[0].text.includes('debug:'), 'the broker logged at debug level');
  const secrets = [
    ...[...refreshTokens].map((v) => ({ kind: 'refresh token', v })),
    ...[...accessTokens].map((v) => ({ kind: 'access token', v })),
    { kind: 'PIN', v: h.pin },
  ];
  for (const { kind, v } of secrets) {
    // The whole value, and its tail (the part that differs between tokens of one issuer).
    const needles = [v, v.slice(-16)];
    for (const { what, text } of haystacks) {
      for (const n of needles) {
        assert.ok(!text.includes(n), `a ${kind} (…${v.slice(-6)}) appears in the ${what}`);
      }
    }
  }
});

test('passwords and client secrets given on the admin socket appear in no log, audit record or reply', { timeout: 30000 }, async () => {
  const crypto = require('node:crypto');
  const { TENANT } = require('./harness');
  const canary = (kind) => `${kind}-CANARY-${crypto.randomBytes(10).toString('hex')}`;
  const password = canary('PW');
  const wrongPassword = canary('PWWRONG');
  const secret = canary('SECRET');
  const wrongSecret = canary('SECRETWRONG');
  const publicApp = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
  const secretApp = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: publicApp, tenant: TENANT, public_client: true });
  await h.emulatorAdmin('POST', '/admin/apps', { client_id: secretApp, tenant: TENANT, public_client: false, secrets: [secret] });
  await h.emulatorAdmin('POST', '/admin/users', { username: 'pat@contoso.com', password, tenant: TENANT });
  await h.emulatorAdmin('POST', '/admin/users', { username: 'mfa@contoso.com', password, tenant: TENANT, mfa_required: true });
  const replies = [];
  const ask = async (m) => {
    const r = await h.adminRequest({ op: 'account.add', tenant: TENANT, ...m });
    replies.push(JSON.stringify(r));
    return r;
  };
  assert.equal((await ask({ account: 'pw-ok', flow: 'password', client_id: publicApp, username: 'pat@contoso.com', password })).ok, true);
  assert.equal((await ask({ account: 'pw-bad', flow: 'password', client_id: publicApp, username: 'pat@contoso.com', password: wrongPassword })).ok, false);
  assert.equal((await ask({ account: 'pw-mfa', flow: 'password', client_id: publicApp, username: 'mfa@contoso.com', password })).ok, false);
  assert.equal((await ask({ account: 'sec-ok', flow: 'client-secret', client_id: secretApp, client_secret: secret })).ok, true);
  assert.equal((await ask({ account: 'sec-bad', flow: 'client-secret', client_id: secretApp, client_secret: wrongSecret })).ok, false);
  // malformed requests carrying secrets take the error paths too
  replies.push(JSON.stringify(await h.adminRequest({ op: 'account.add', account: 'x', flow: 'password', password })));
  replies.push(JSON.stringify(await h.adminRequest({ op: 'account.add', account: 'x', flow: 'bogus', client_secret: secret })));
  const list = await h.adminRequest({ op: 'account.list' });
  const show = await h.adminRequest({ op: 'account.show', account: 'sec-ok' });
  replies.push(JSON.stringify(list), JSON.stringify(show));
  const haystacks = [
    { what: 'credbrokerd stderr', text: h.brokerLog() },
    { what: 'audit log', text: h.auditText() },
    { what: 'emulator log', text: h.emulatorLog() },
    { what: 'admin replies', text: replies.join('\n') },
  ];
  for (const v of [password, wrongPassword, secret, wrongSecret]) {
    for (const { what, text } of haystacks) assert.ok(!text.includes(v), `${v.slice(0, 12)}… appears in the ${what}`);
  }
  const pid = h.brokerPid;
  const procText = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1') + fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
  for (const v of [password, secret]) assert.ok(!procText.includes(v));
});

test('no secret in the broker\'s argv or environment (read live from /proc, as root)', { timeout: 10000 }, async () => {
  const pid = h.brokerPid;
  assert.equal(fs.readlinkSync(`/proc/${pid}/exe`), require('./harness').CREDBROKERD,
    'the pid is the broker itself, not a wrapper');
  const strings = procStrings(pid);
  // Controls: this is the broker's own argv and environment, not an empty read.
  assert.ok(strings.argv.includes('--config') && strings.argv.includes(h.conf), JSON.stringify(strings.argv));
  assert.ok(strings.environ.some((e) => e.startsWith('SOFTHSM2_CONF=')), 'the broker\'s environ was read');
  assert.ok(refreshTokens.size > 0 && accessTokens.size > 0, 'earlier tests learnt the tokens');
  const secrets = [h.pin, ...refreshTokens, ...accessTokens];
  assertNoSecretIn(strings, secrets, 'credbrokerd');
  for (const child of descendants(pid)) {
    try {
      assertNoSecretIn(procStrings(child), secrets, `credbrokerd's child ${child}`);
    } catch (e) {
      if (e.code !== 'ENOENT' && e.code !== 'ESRCH') throw e;
    }
  }
});

test('no secret in the argv or environment of a CLI that holds a token', { timeout: 60000 }, async () => {
  // An account of its own (the run above left alerts in reauth_required), with a canary
  // refresh token, imported through the running broker.
  const rt = `RT-CANARY-ARGV-${require('node:crypto').randomBytes(12).toString('hex')}`;
  await h.registerRefreshToken(rt);
  await h.importAccount('argvcheck', rt);
  h.writePolicies({ argvcheck: { account: 'argvcheck', scopes: ['https://graph.microsoft.com/Mail.Send'], rules: ['peer required uid root'] } });
  assert.equal(await h.reloadBroker(), 'reloaded');
  // credbroker send holds the access token while Graph hangs: look at it then.
  await h.addFault({ endpoint: 'graph', mode: 'hang', count: 1 });
  const sentBefore = (await h.counters()).send_mail;
  const child = spawnTracked(require('./harness').CREDBROKER, ['send', '-p', 'argvcheck', '--to', 'a@example.com',
    '--subject', 'argv check', '--config', h.conf], { env: h.env(), stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end('body\n');
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  let token = null;
  try {
    // The token the CLI got: the newest one the broker issued (the cache holds one per scope set).
    await waitFor('the CLI to reach Graph', async () => {
      if (child.exitCode !== null) throw new Error(`credbroker send exited ${child.exitCode}: ${stderr}`);
      return (await h.counters()).send_mail > sentBefore;
    }, { timeoutMs: 20000 });
    const json = await h.cli(['token', '-p', 'argvcheck', '--format', 'json']);
    token = JSON.parse(json.stdout).access_token;
    accessTokens.add(token);
    const strings = procStrings(child.pid);
    assert.ok(strings.argv.includes('argv check'), `the CLI's own argv was read: ${JSON.stringify(strings.argv)}`);
    assertNoSecretIn(strings, [token, h.pin, rt], 'credbroker send');
  } finally {
    child.kill('SIGKILL');
    await h.clearFaults();
  }
});


test('RLIMIT_CORE is 0 and the broker is not dumpable', { timeout: 60000 }, async () => {
  // Same uid, same (empty) capability set for the broker, the reader and a control process:
  // then the only thing that can refuse the reader access to /proc/PID/environ (a ptrace
  // "read" access check) is the target's dumpable flag. As root with full capabilities the
  // check would always pass (CAP_SYS_PTRACE), and a capability-less reader would be refused
  // for any fully capable root process (commoncap), so neither would prove anything.
  const capless = ['setpriv', '--bounding-set=-all', '--inh-caps=-all'];
  await h.stopBroker();
  await h.startBroker({ wrapper: capless });
  const pid = h.brokerPid;

  const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  const core = limits.split('\n').find((l) => l.startsWith('Max core file size'));
  assert.ok(core, limits);
  assert.match(core, /^Max core file size\s+0\s+0\s+bytes/, core);

  // The control: a dumpable process with the same uid and capabilities as the broker.
  const child = spawnTracked(capless[0], [...capless.slice(1), 'sleep', '30'], { stdio: 'ignore' });
  try {
    await sleep(200);
    const ok = await run(capless[0], [...capless.slice(1), 'cat', `/proc/${child.pid}/environ`]);
    assert.equal(ok.code, 0, `control: a capability-less root reader must read a dumpable peer's environ: ${ok.stderr}`);
    const refused = await run(capless[0], [...capless.slice(1), 'cat', `/proc/${pid}/environ`]);
    assert.notEqual(refused.code, 0, 'the broker\'s /proc/PID/environ is readable: it is dumpable');
    assert.match(refused.stderr, /Permission denied|Operation not permitted/);
    assert.ok(h.brokerAlive());
  } finally {
    child.kill('SIGKILL');
  }
});
