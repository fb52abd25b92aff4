'use strict';
// The CLI's side of the admin socket (docs/admin-protocol.md) against a fake broker: a Node
// server speaking the 4-byte framing that answers each op as the test says. That covers what a
// real broker does rarely or never on cue: a device flow that takes its time, a broker that dies
// mid-flow, every error reply, malformed frames. Also: passwords and client secrets reach the
// socket and nothing else, status exit codes (0/1/2/3), and the fallback to opening the token
// directly when nothing listens.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const { setup, frame, sleep, waitFor, TENANT, CLIENT_ID, USER, MAIL_SEND } = require('./harness');

let h;
before(async () => {
  h = await setup({ startBroker: false });
});
after(() => h && h.teardown());

// A fake broker on a fresh socket. handler(request, conn) answers with conn.reply(obj),
// conn.raw(bytes) or conn.end(); requests are remembered in .requests.
class FakeAdmin {
  constructor(handler) {
    this.handler = handler;
    this.requests = [];
    this.path = h.p(`admin-${crypto.randomBytes(4).toString('hex')}.sock`);
    this.server = net.createServer((sock) => this.serve(sock));
    this.sockets = new Set();
  }

  listen() {
    return new Promise((resolve) => this.server.listen(this.path, () => resolve(this)));
  }

  serve(sock) {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => {});
    let buffer = Buffer.alloc(0);
    const conn = {
      onClose: (fn) => sock.on('close', fn),
      reply: (obj) => sock.write(frame({ v: 1, ...obj })),
      raw: (bytes) => sock.write(bytes),
      end: () => sock.destroy(),
    };
    sock.on('data', (d) => {
      buffer = Buffer.concat([buffer, d]);
      while (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
        const n = buffer.readUInt32BE(0);
        const text = buffer.subarray(4, 4 + n).toString('utf8');
        buffer = buffer.subarray(4 + n);
        const request = JSON.parse(text);
        this.requests.push({ request, text });
        Promise.resolve(this.handler(request, conn)).catch(() => sock.destroy());
      }
    });
  }

  close() {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function withFake(handler, fn) {
  const fake = await new FakeAdmin(handler).listen();
  try {
    return await fn(fake);
  } finally {
    await fake.close();
  }
}

const cb = (args, opts) => h.cli(args, opts);
const ADD = ['account', 'add', 'alerts', '--tenant', TENANT, '--client-id', CLIENT_ID];

const DEVICE_MESSAGE = 'To sign in, use a web browser to open the page https://microsoft.com/devicelogin '
  + 'and enter the code ABCD-EFGH to authenticate.';

test('device flow: the message at once, then the outcome; no countdown spam off a terminal', { timeout: 60000 }, async () => {
  await withFake(async (req, conn) => {
    conn.reply({ ok: true, stage: 'device_code', message: DEVICE_MESSAGE, user_code: 'ABCD-EFGH',
      verification_uri: 'https://microsoft.com/devicelogin', expires_in: 900, interval: 5 });
    await sleep(2500);
    conn.reply({ ok: true, stage: 'done', account: 'alerts', scopes: [MAIL_SEND, 'offline_access'] });
  }, async (fake) => {
    const r = await cb([...ADD, '--flow', 'device', '--mailbox', USER, '--scope', MAIL_SEND,
      '--scope', 'offline_access', '--admin-socket', fake.path]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith(`${DEVICE_MESSAGE}\n`), r.stdout);
    assert.match(r.stdout, /account alerts signed in; scopes: https:\/\/graph\.microsoft\.com\/Mail\.Send offline_access\n$/);
    const waits = r.stderr.split('\n').filter((l) => /waiting for sign-in/.test(l));
    assert.equal(waits.length, 1, `one progress line within a minute off a terminal: ${r.stderr}`);
    assert.ok(!r.stderr.includes('\r'), 'no carriage returns off a terminal');
    const { request } = fake.requests[0];
    assert.deepEqual(request, { v: 1, op: 'account.add', account: 'alerts', flow: 'device', tenant: TENANT,
      client_id: CLIENT_ID, mailbox: USER, scopes: [MAIL_SEND, 'offline_access'] });
  });
});

test('device flow: declined, expired and a broker that dies mid-flow', { timeout: 60000 }, async () => {
  const deviceCode = { ok: true, stage: 'device_code', message: DEVICE_MESSAGE, expires_in: 900, interval: 5 };
  await withFake(async (req, conn) => {
    conn.reply(deviceCode);
    await sleep(300);
    conn.reply({ ok: false, error: 'sign_in_failed', message: 'The sign-in was declined (AADSTS65004).' });
  }, async (fake) => {
    const r = await cb([...ADD, '--flow', 'device', '--admin-socket', fake.path]);
    assert.equal(r.code, 77, r.stderr);
    assert.match(r.stderr, /credbroker: The sign-in was declined \(AADSTS65004\)\. \(sign_in_failed\)/);
  });
  await withFake(async (req, conn) => {
    conn.reply(deviceCode);
    await sleep(300);
    conn.end();
  }, async (fake) => {
    const r = await cb([...ADD, '--flow', 'device', '--admin-socket', fake.path]);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /closed the connection before it answered/);
    assert.ok(r.stdout.includes(DEVICE_MESSAGE));
  });
  await withFake((req, conn) => {
    conn.reply({ ok: true, stage: 'device_code', message: 'Code \u001b]0;pwned\u0007 here', expires_in: 900 });
    conn.reply({ ok: false, error: 'needs_config', message: 'Enable "Allow public client flows".' });
  }, async (fake) => {
    const r = await cb([...ADD, '--flow', 'device', '--admin-socket', fake.path]);
    assert.equal(r.code, 78, r.stderr);
    assert.ok(!r.stdout.includes('\u001b') && !r.stdout.includes('\u0007'), 'control characters are not printed');
    assert.match(r.stdout, /Code \?\]0;pwned\? here/);
  });
});

test('password flow: the password reaches the socket and nothing else', { timeout: 60000 }, async () => {
  const password = `PW-CANARY-${crypto.randomBytes(8).toString('hex')}"\\q`;
  await withFake((req, conn) => conn.reply({ ok: true, stage: 'done', account: 'alerts', scopes: [MAIL_SEND] }),
    async (fake) => {
      const r = await cb([...ADD, '--flow', 'password', '--username', USER, '--password-stdin',
        '--admin-socket', fake.path], { input: `${password}\nextra line\n` });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stdout.includes('PW-CANARY') && !r.stderr.includes('PW-CANARY'), 'the password is never printed');
      const { request } = fake.requests[0];
      assert.equal(request.password, password, 'one line, newline stripped, quotes and backslashes intact');
      assert.equal(request.flow, 'password');
      assert.equal(request.username, USER);
    });
  await withFake(() => { throw new Error('must not be called'); }, async (fake) => {
    const long = await cb([...ADD, '--flow', 'password', '--username', USER, '--password-stdin',
      '--admin-socket', fake.path], { input: `${'x'.repeat(1025)}\n` });
    assert.equal(long.code, 65);
    assert.match(long.stderr, /longer than 1024 bytes/);
    const empty = await cb([...ADD, '--flow', 'password', '--username', USER, '--password-stdin',
      '--admin-socket', fake.path], { input: '\n' });
    assert.equal(empty.code, 65);
    assert.match(empty.stderr, /empty/);
    assert.equal(fake.requests.length, 0, 'nothing was sent for refused input');
  });
});

test('password flow: no terminal, MFA and wrong-password errors', { timeout: 60000 }, async () => {
  await withFake((req, conn) => conn.reply({ ok: false, error: 'sign_in_failed',
    message: 'This user needs multi-factor authentication, which the password flow cannot do: use --flow device.' }),
  async (fake) => {
    const r = await cb([...ADD, '--flow', 'password', '--username', USER, '--password-stdin',
      '--admin-socket', fake.path], { input: 'secret\n' });
    assert.equal(r.code, 77);
    assert.match(r.stderr, /multi-factor authentication.*use --flow device\. \(sign_in_failed\)/);
    const { run, CREDBROKER } = require('./harness');
    const notty = await run('setsid', ['-w', CREDBROKER, ...ADD, '--flow', 'password', '--username', USER,
      '--admin-socket', fake.path], { env: h.env() });
    assert.equal(notty.code, 65, notty.stderr);
    assert.match(notty.stderr, /no terminal; use --password-stdin/);
  });
});

test('client secret: from standard input, with its expiry; errors map to exit codes', { timeout: 60000 }, async () => {
  const secret = `CS-CANARY-${crypto.randomBytes(8).toString('hex')}`;
  await withFake((req, conn) => conn.reply({ ok: true, stage: 'done', account: 'app', scopes: ['https://graph.microsoft.com/.default'] }),
    async (fake) => {
      const r = await cb(['account', 'add', 'app', '--tenant', TENANT, '--client-id', CLIENT_ID,
        '--flow', 'client-secret', '--secret-stdin', '--secret-expires', '2027-06-30',
        '--admin-socket', fake.path], { input: `${secret}\n` });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret));
      const { request } = fake.requests[0];
      assert.equal(request.client_secret, secret);
      assert.equal(request.secret_expires_at, Date.UTC(2027, 5, 30) / 1000);
      assert.equal(request.flow, 'client-secret');
    });
  const cases = [['exists', 73], ['needs_config', 78], ['unavailable', 75], ['bad_request', 65],
    ['denied', 77], ['internal', 70], ['unknown_op', 70], ['sign_in_failed', 77],
    ['reauth_required', 78], ['not_found', 66], ['unknown_profile', 78], ['rate_limited', 75],
    ['unsupported_version', 70], ['no_such_code', 70]];
  for (const [error, code] of cases) {
    await withFake((req, conn) => conn.reply({ ok: false, error, message: `Said ${error}.` }), async (fake) => {
      const r = await cb([...ADD, '--flow', 'client-certificate', '--admin-socket', fake.path]);
      assert.equal(r.code, code, `${error}: ${r.code} ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`Said ${error}\\. \\(${error}\\)`));
      assert.equal(/older than this command/.test(r.stderr), error === 'unknown_op', r.stderr);
    });
  }
});

test('usage errors of account add exit 64 before anything is sent', { timeout: 60000 }, async () => {
  await withFake(() => { throw new Error('must not be called'); }, async (fake) => {
    const bad = [
      [...ADD],
      [...ADD, '--flow', 'telepathy'],
      [...ADD, '--flow', 'password'],
      [...ADD, '--flow', 'device', '--username', USER],
      [...ADD, '--flow', 'client-secret'],
      [...ADD, '--flow', 'device', '--secret-stdin'],
      [...ADD, '--flow', 'client-secret', '--secret-stdin', '--secret-expires', '2027-02-30'],
      [...ADD, '--flow', 'device', '--authority', 'https://a.example', '--token-endpoint', 'https://t.example/t'],
      [...ADD, '--flow', 'device', '--device-endpoint', 'https://d.example/d'],
      [...ADD, '--flow', 'device', '--authority', 'http://insecure.example'],
      [...ADD, '--flow', 'device', '--scope', 'has space'],
      ['account', 'add', 'Bad/Name', '--tenant', TENANT, '--client-id', CLIENT_ID, '--flow', 'device'],
      ['account', 'login'],
      ['account', 'test'],
      ['account', 'test', 'alerts', '-p', 'alerts'],
      ['account', 'test', 'alerts', '--send-to', 'not an address'],
      ['status', 'extra'],
      ['status', '--warn-days', 'x'],
      ['reload', 'extra'],
    ];
    for (const args of bad) {
      const r = await cb([...args, '--admin-socket', fake.path], { input: 'x\n' });
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.code} ${r.stderr}`);
      assert.equal(r.stdout, '', args.join(' '));
    }
    assert.equal(fake.requests.length, 0);
  });
});

test('account login asks for the flow first and sends the password only for password accounts', { timeout: 60000 }, async () => {
  const pw = `PW-CANARY-${crypto.randomBytes(6).toString('hex')}`;
  await withFake((req, conn) => {
    if (req.op === 'account.show') conn.reply({ ok: true, account: { account: 'alerts', flow: 'password', username: USER } });
    else conn.reply({ ok: true, stage: 'done', account: 'alerts', scopes: [MAIL_SEND] });
  }, async (fake) => {
    const r = await cb(['account', 'login', 'alerts', '--password-stdin', '--admin-socket', fake.path], { input: `${pw}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fake.requests.map((x) => x.request.op), ['account.show', 'account.login']);
    assert.equal(fake.requests[1].request.password, pw);
    assert.ok(!r.stdout.includes(pw) && !r.stderr.includes(pw));
  });
  await withFake((req, conn) => {
    if (req.op === 'account.show') conn.reply({ ok: true, account: { account: 'alerts', flow: 'device' } });
    else {
      conn.reply({ ok: true, stage: 'device_code', message: DEVICE_MESSAGE, expires_in: 900 });
      conn.reply({ ok: true, stage: 'done', account: 'alerts', scopes: [MAIL_SEND] });
    }
  }, async (fake) => {
    const r = await cb(['account', 'login', 'alerts', '--admin-socket', fake.path]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(DEVICE_MESSAGE));
    assert.equal(fake.requests[1].request.password, undefined);
  });
});

function statusReply(accounts) {
  return (req, conn) => conn.reply({ ok: true, accounts });
}

test('status: exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN', { timeout: 60000 }, async () => {
  const now = Math.floor(Date.now() / 1000);
  const okAccount = { account: 'alerts', state: 'ok', last_refresh: now - 600, next_refresh: now + 1800,
    token_expires_at: now + 3000, refresh_token_stored_at: now - 600 };
  const status = (fake, extra = []) => cb(['status', '--admin-socket', fake.path, ...extra]);

  await withFake(statusReply([okAccount]), async (fake) => {
    const r = await status(fake);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^OK: 1 account, none needs attention\n/);
    assert.match(r.stdout, /^alerts: ok$/m);
    assert.match(r.stdout, /token expires +\d{4}-\d\d-\d\d/);
    const j = await status(fake, ['--json']);
    assert.equal(j.code, 0);
    const parsed = JSON.parse(j.stdout);
    assert.equal(parsed.status, 'OK');
    assert.equal(parsed.accounts[0].check, 'OK');
  });
  const expiring = { account: 'app', state: 'ok', credential_expires_at: now + 10 * 86400 };
  await withFake(statusReply([okAccount, expiring]), async (fake) => {
    const r = await status(fake);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /^WARNING: 1 of 2 accounts needs attention; app: its certificate or client secret expires in (9|10) days/);
    assert.equal((await status(fake, ['--warn-days', '5'])).code, 0, '--warn-days narrows the window');
  });
  await withFake(statusReply([{ account: 'alerts', state: 'backoff', state_until: now + 60, message: 'Microsoft answered 503.' }]),
    async (fake) => assert.equal((await status(fake)).code, 1));
  await withFake(statusReply([okAccount, expiring,
    { account: 'mfa', state: 'needs_reauth', message: 'AADSTS50076: run credbroker account login mfa.' }]), async (fake) => {
    const r = await status(fake);
    assert.equal(r.code, 2, r.stdout);
    assert.match(r.stdout, /^CRITICAL: 2 of 3 accounts need attention; mfa: needs an administrator to sign in again: AADSTS50076/);
    assert.match(r.stdout, /^mfa: needs_reauth \[CRITICAL\]/m);
  });
  await withFake(statusReply([{ account: 'cfg', state: 'needs_config', message: 'Grant admin consent.' }]),
    async (fake) => assert.equal((await status(fake)).code, 2));

  const none = await cb(['status', '--admin-socket', h.p('no-broker.sock')]);
  assert.equal(none.code, 3);
  assert.match(none.stdout, /^UNKNOWN: /);
  await withFake((req, conn) => conn.raw(frame('not json')), async (fake) => {
    assert.equal((await status(fake)).code, 3, 'a malformed reply');
  });
  await withFake((req, conn) => conn.raw(Buffer.from([0, 1, 0, 1])), async (fake) => {
    const r = await status(fake);
    assert.equal(r.code, 3, 'a frame longer than 64 KiB is refused before reading it');
  });
  await withFake((req, conn) => conn.reply({ ok: false, error: 'denied', message: 'Denied.' }), async (fake) => {
    assert.equal((await status(fake)).code, 3, 'an error reply');
  });
  // warn_days from the configuration: a 5-day window makes the 10-day expiry fine.
  h.writeConfig({ ...h.configSections(), broker: { ...h.configSections().broker, warn_days: 5 } });
  try {
    await withFake(statusReply([expiring]), async (fake) => {
      assert.equal((await cb(['status', '--config', h.conf, '--admin-socket', fake.path])).code, 0);
    });
  } finally {
    h.writeConfig();
  }
});

test('list, show and remove go through the broker when it listens', { timeout: 60000 }, async () => {
  await withFake((req, conn) => {
    if (req.op === 'account.list') {
      conn.reply({ ok: true, accounts: [{ account: 'alerts', flow: 'device', tenant: TENANT, client_id: CLIENT_ID,
        mailbox: USER, state: 'ok' }] });
    } else if (req.op === 'account.show') {
      if (req.account !== 'alerts') conn.reply({ ok: false, error: 'not_found', message: `There is no account ${req.account}.` });
      else conn.reply({ ok: true, account: { account: 'alerts', flow: 'device', tenant: TENANT, client_id: CLIENT_ID,
        mailbox: USER, refresh_token: { generation: 7, stored_at: 1790000000 }, client_secret: false, certificate: null,
        state: 'ok' } });
    } else if (req.op === 'account.remove') {
      conn.reply({ ok: true, removed: ['alerts/refresh_token/7 (data)', 'alerts/meta (data)'] });
    }
  }, async (fake) => {
    const list = await cb(['account', 'list', '-v', '--admin-socket', fake.path, '--config', h.conf]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stderr, /asking the running broker/);
    assert.match(list.stdout, /^alerts +device +contoso\.onmicrosoft\.com +\S+ +alerts@contoso\.com +no +- +ok +7$/m,
      'the direct listing\'s columns, the state, and the refresh-token generation last');
    const quiet = await cb(['account', 'list', '--admin-socket', fake.path, '--config', h.conf]);
    assert.equal(quiet.stderr, '', 'which path was taken is said only with -v');
    const json = JSON.parse((await cb(['account', 'list', '--json', '--admin-socket', fake.path])).stdout);
    assert.equal(json[0].state, 'ok');
    assert.equal(json[0].refresh_token_generation, 7);
    assert.equal(json[0].client_secret, false);
    const show = await cb(['account', 'show', 'alerts', '--admin-socket', fake.path]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^Refresh token: +generation 7, stored 2026-09-21/m);
    assert.match(show.stdout, /^State: +ok$/m);
    const missing = await cb(['account', 'show', 'nosuch', '--admin-socket', fake.path]);
    assert.equal(missing.code, 66);
    const removed = await cb(['account', 'remove', 'alerts', '--admin-socket', fake.path]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, 'Removed account alerts: alerts/refresh_token/7 (data), alerts/meta (data)\n');
    assert.deepEqual(fake.requests.map((x) => x.request.op),
      ['account.list', 'account.show', 'account.list', 'account.show', 'account.list', 'account.show',
        'account.show', 'account.show', 'account.remove']);
  });
});

test('with nothing listening, list and show open the token directly', { timeout: 60000 }, async () => {
  const nowhere = h.p('nothing-listens.sock');
  const list = await cb(['account', 'list', '-v', '--admin-socket', nowhere, '--config', h.conf]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stderr, /no broker listens on .*; opening the token directly/);
  const row = list.stdout.split('\n').find((l) => l.startsWith('alerts '));
  assert.ok(row, list.stdout);
  assert.equal(row.trim().split(/\s+/).at(-1), '1', 'the direct listing with its generation column');
  // A socket file nobody listens on (a crashed broker) is ECONNREFUSED: the same fallback.
  const stale = h.p('stale.sock');
  const server = net.createServer();
  await new Promise((resolve) => server.listen(stale, resolve));
  await new Promise((resolve) => server.close(resolve));
  const show = await cb(['account', 'show', 'alerts', '-v', '--admin-socket', stale, '--config', h.conf]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^Flow: +refresh_token$/m);
  // add, status and reload need the broker: no fallback.
  const add = await cb([...ADD, '--flow', 'device', '--admin-socket', nowhere]);
  assert.equal(add.code, 69);
  assert.match(add.stderr, /the broker is not running/);
});

test('reload and account test', { timeout: 60000 }, async () => {
  await withFake((req, conn) => {
    if (req.op === 'reload') conn.reply({ ok: true, profiles: 2 });
    else conn.reply({ ok: true, account: 'alerts', scopes: [MAIL_SEND], expires_at: 1900000000, expires_in: 3599, mailbox: USER });
  }, async (fake) => {
    for (const args of [['reload'], ['policy', 'reload']]) {
      const r = await cb([...args, '--admin-socket', fake.path]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'Reloaded the policy: 2 profiles.\n');
    }
    const t = await cb(['account', 'test', 'alerts', '--scope', MAIL_SEND, '--admin-socket', fake.path]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /scopes: +https:\/\/graph\.microsoft\.com\/Mail\.Send/);
    assert.match(t.stdout, /expires: +2030-03-17 17:46:40 UTC/);
    assert.deepEqual(fake.requests.at(-1).request, { v: 1, op: 'account.test', scopes: [MAIL_SEND], account: 'alerts' });
  });
  await withFake((req, conn) => conn.reply({ ok: false, error: 'bad_request', message: 'policy.d/alerts:3: unknown control "requird".' }),
    async (fake) => {
      const r = await cb(['reload', '--admin-socket', fake.path]);
      assert.equal(r.code, 78);
      assert.match(r.stderr, /policy\.d\/alerts:3/);
    });
  await withFake((req, conn) => conn.reply({ ok: false, error: 'reauth_required', message: 'Sign in again.' }),
    async (fake) => {
      const r = await cb(['account', 'test', 'alerts', '--admin-socket', fake.path]);
      assert.equal(r.code, 78);
    });
});

// On a terminal (script(1) gives the CLI a pseudo-terminal): the countdown is one line redrawn
// with \r each second, and the password prompt does not echo what is typed.
const { spawnTracked, CREDBROKER } = require('./harness');

function onPty(args, { onOutput } = {}) {
  const command = [CREDBROKER, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawnTracked('script', ['-qfec', command, '/dev/null'], { env: h.env(), stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
    if (onOutput) onOutput(output, child);
  });
  child.stdin.on('error', () => {});
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

test('on a terminal: a live countdown, and the password is not echoed', { timeout: 60000 }, async () => {
  await withFake(async (req, conn) => {
    conn.reply({ ok: true, stage: 'device_code', message: DEVICE_MESSAGE, expires_in: 900, interval: 5 });
    await sleep(3500);
    conn.reply({ ok: true, stage: 'done', account: 'alerts', scopes: [MAIL_SEND] });
  }, async (fake) => {
    const r = await onPty([...ADD, '--flow', 'device', '--admin-socket', fake.path]);
    assert.equal(r.code, 0, r.output);
    const redraws = r.output.match(/\rwaiting for sign-in\u2026 1[45]:\d\d left/g) || [];
    assert.ok(redraws.length >= 3, `redrawn each second: ${JSON.stringify(r.output)}`);
    assert.match(r.output, /account alerts signed in/);
  });
  // Ctrl-C during the countdown ends the line, says so, and hangs up on the broker.
  let hungUp = false;
  await withFake((req, conn, sock) => {
    conn.reply({ ok: true, stage: 'device_code', message: DEVICE_MESSAGE, expires_in: 900, interval: 5 });
    conn.onClose(() => { hungUp = true; });
  }, async (fake) => {
    let pressed = false;
    const r = await onPty([...ADD, '--flow', 'device', '--admin-socket', fake.path], {
      onOutput: (out, child) => {
        if (!pressed && /waiting for sign-in/.test(out)) {
          pressed = true;
          setTimeout(() => child.stdin.write('\x03'), 1200);
        }
      },
    });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /left *(\^C)?\r?\ncredbroker: interrupted; the broker abandons the sign-in/);
    await waitFor('the broker to see the hang-up', () => hungUp, { timeoutMs: 5000 });
  });
  const password = `PW-CANARY-${crypto.randomBytes(8).toString('hex')}`;
  await withFake((req, conn) => conn.reply({ ok: true, stage: 'done', account: 'alerts', scopes: [MAIL_SEND] }), async (fake) => {
    let typed = false;
    const r = await onPty([...ADD, '--flow', 'password', '--username', USER, '--admin-socket', fake.path], {
      onOutput: (out, child) => {
        if (!typed && out.includes(`Password for ${USER}: `)) {
          typed = true;
          // Typed once the prompt shows, i.e. after echo was turned off.
          setTimeout(() => child.stdin.write(`${password}\r`), 200);
        }
      },
    });
    assert.equal(r.code, 0, r.output);
    assert.ok(!r.output.includes(password), `the password was echoed: ${JSON.stringify(r.output)}`);
    assert.equal(fake.requests[0].request.password, password);
  });
});
