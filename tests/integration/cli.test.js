'use strict';
// The credbroker CLI: exit codes, usage, help, and how it finds the socket.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, run, CREDBROKERD } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(() => h && h.teardown());

test('broker not running: exit 69 from ping, token and send', { timeout: 30000 }, async () => {
  const nowhere = h.p('no-broker-here');
  const notSocket = h.p('not-a-socket');
  fs.writeFileSync(notSocket, '');
  for (const sock of [nowhere, notSocket]) {
    const ping = await h.cli(['ping', '--socket', sock]);
    assert.equal(ping.code, 69, `ping: ${ping.code} ${ping.stderr}`);
    assert.match(ping.stderr, /cannot reach the broker/);
    const token = await h.cli(['token', '-p', 'alerts', '--socket', sock]);
    assert.equal(token.code, 69, `token: ${token.code} ${token.stderr}`);
    assert.equal(token.stdout, '');
    const viaEnv = await h.cli(['token', '-p', 'alerts'], { env: { CREDBROKER_SOCKET: sock } });
    assert.equal(viaEnv.code, 69, `token via CREDBROKER_SOCKET: ${viaEnv.code} ${viaEnv.stderr}`);
    const send = await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's', '--socket', sock,
      '--config', h.conf], { input: 'body\n' });
    // Issue 11: no broker and no maildrop the caller may write to: 75, the sysexits code that
    // tells a caller to try again later (mail is never lost silently).
    assert.equal(send.code, 75, `send: ${send.code} ${send.stderr}`);
  }
});

const USAGE_ERRORS = [
  [],
  ['bogus'],
  ['token'],
  ['token', '--bogus-option'],
  ['token', '-p', 'alerts', '--format', 'xml'],
  ['token', '-p', 'alerts', 'extra'],
  ['token', '-p', 'alerts', '--min-ttl', 'abc'],
  ['token', '-p', 'alerts', '--min-ttl', '-1'],
  ['token', '-p', 'alerts', '--min-ttl', '86401'],
  ['send'],
  ['send', '-p', 'alerts', '--to', 'a@example.com'],
  ['send', '-p', 'alerts', '--subject', 's'],
  ['send', '--to', 'a@example.com', '--subject', 's'],
  ['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's', 'extra'],
  ['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's', '--mailbox', 'not-an-upn'],
  ['account'],
  ['account', 'bogus'],
  ['account', 'import'],
  ['account', 'import', 'x'],
  ['account', 'import', 'Bad/Name', '--tenant', 't', '--client-id', 'c', '--refresh-token-file', '/dev/null'],
  ['account', 'list', 'extra'],
  ['account', 'list', '--bogus'],
  ['ping', 'extra'],
  ['ping', '--socket'],
];

test('usage errors exit 64 and print nothing on stdout', { timeout: 60000 }, async () => {
  for (const args of USAGE_ERRORS) {
    const r = await h.cli(args, { input: 'body\n' });
    assert.equal(r.code, 64, `credbroker ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.equal(r.stdout, '', `credbroker ${args.join(' ')}: stdout ${r.stdout}`);
  }
});

const HELP = [
  ['--help'],
  ['-h'],
  ['token', '--help'],
  ['token', '-h'],
  ['send', '--help'],
  ['account', '--help'],
  ['account', 'import', '--help'],
  ['account', 'list', '--help'],
  ['ping', '--help'],
];

test('--help on every command exits 0 and prints its usage on stdout', { timeout: 30000 }, async () => {
  for (const args of HELP) {
    const r = await h.cli(args);
    assert.equal(r.code, 0, `credbroker ${args.join(' ')}: exit ${r.code} ${r.stderr}`);
    assert.match(r.stdout, /Usage: credbroker/, `credbroker ${args.join(' ')}`);
    assert.equal(r.stderr, '');
  }
  const v = await h.cli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^credbroker \d+\.\d+\.\d+\n$/);
});

test('credbrokerd: --help, --version and a bad option', { timeout: 30000 }, async () => {
  const help = await run(CREDBROKERD, ['--help'], { env: h.env() });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: credbrokerd/);
  const version = await run(CREDBROKERD, ['--version'], { env: h.env() });
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^credbrokerd \d+\.\d+\.\d+\n$/);
  const bad = await run(CREDBROKERD, ['--bogus'], { env: h.env() });
  assert.equal(bad.code, 64);
  const extra = await run(CREDBROKERD, ['extra'], { env: h.env() });
  assert.equal(extra.code, 64);
});

test('the socket: --socket, else CREDBROKER_SOCKET; the option wins', { timeout: 30000 }, async () => {
  const bogus = h.p('bogus.socket');
  const cases = [
    { what: 'CREDBROKER_SOCKET only', args: [], env: { CREDBROKER_SOCKET: h.socket }, code: 0 },
    { what: '--socket only', args: ['--socket', h.socket], env: { CREDBROKER_SOCKET: undefined }, code: 0 },
    { what: '--socket beats a bad CREDBROKER_SOCKET', args: ['--socket', h.socket], env: { CREDBROKER_SOCKET: bogus }, code: 0 },
    { what: 'a bad --socket beats a good CREDBROKER_SOCKET', args: ['--socket', bogus], env: { CREDBROKER_SOCKET: h.socket }, code: 69 },
  ];
  for (const c of cases) {
    const ping = await h.cli(['ping', ...c.args], { env: c.env });
    assert.equal(ping.code, c.code, `ping, ${c.what}: ${ping.code} ${ping.stderr}`);
    if (c.code === 0) assert.match(ping.stdout, /credbrokerd .* is running/);
    const token = await h.cli(['token', '-p', 'alerts', ...c.args], { env: c.env });
    assert.equal(token.code, c.code, `token, ${c.what}: ${token.code} ${token.stderr}`);
    if (c.code !== 0) assert.match(token.stderr, new RegExp(bogus.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  }
});

test('the socket: without --socket or CREDBROKER_SOCKET, the socket of --config or CREDBROKER_CONFIG', { timeout: 30000 }, async () => {
  // A configuration naming the broker's socket (a copy: the harness's own one stays as it is).
  const conf = h.p('socket-only.conf');
  fs.writeFileSync(conf, `[broker]\nsocket = ${h.socket}\nadmin_socket = ${h.p('nowhere-admin.socket')}\n`, { mode: 0o644 });
  const bogusConf = h.p('bogus-socket.conf');
  fs.writeFileSync(bogusConf, `[broker]\nsocket = ${h.p('bogus.socket')}\n`, { mode: 0o644 });
  const cases = [
    { what: '--config', args: ['--config', conf], env: { CREDBROKER_SOCKET: undefined }, code: 0 },
    { what: 'CREDBROKER_CONFIG', args: [], env: { CREDBROKER_SOCKET: undefined, CREDBROKER_CONFIG: conf }, code: 0 },
    { what: '--config beats CREDBROKER_CONFIG', args: ['--config', conf], env: { CREDBROKER_SOCKET: undefined, CREDBROKER_CONFIG: bogusConf }, code: 0 },
    { what: 'CREDBROKER_SOCKET beats the configuration', args: ['--config', bogusConf], env: { CREDBROKER_SOCKET: h.socket }, code: 0 },
    { what: 'a configuration naming a dead socket', args: ['--config', bogusConf], env: { CREDBROKER_SOCKET: undefined }, code: 69 },
  ];
  for (const c of cases) {
    for (const args of [['ping', ...c.args], ['token', '-p', 'alerts', ...c.args]]) {
      const r = await h.cli(args, { env: c.env });
      assert.equal(r.code, c.code, `${args[0]}, ${c.what}: ${r.code} ${r.stderr}`);
      if (c.code !== 0) assert.match(r.stderr, /bogus\.socket/);
    }
  }
  // The admin commands follow the same order with admin_socket.
  const status = await h.cli(['status', '--config', conf], { env: { CREDBROKER_ADMIN_SOCKET: undefined } });
  assert.match(status.stderr, /nowhere-admin\.socket/, status.stderr);
});

test('ping parses its options like token and send: --socket=PATH works, extra operands are refused', { timeout: 30000 }, async () => {
  const extra = await h.cli(['ping', '--socket', h.socket, 'extra']);
  assert.equal(extra.code, 64, `ping --socket PATH extra: exit ${extra.code}`);
  const token = await h.cli(['token', '-p', 'alerts', `--socket=${h.socket}`], { env: { CREDBROKER_SOCKET: undefined } });
  assert.equal(token.code, 0, token.stderr);
  const ping = await h.cli(['ping', `--socket=${h.socket}`], { env: { CREDBROKER_SOCKET: undefined } });
  assert.equal(ping.code, 0, `exit ${ping.code}: ${ping.stderr}`);
});

test('a socket whose directory does not exist: the error names the directory and how to reach another broker', { timeout: 30000 }, async () => {
  const dir = h.p('no-such-dir');
  const ping = await h.cli(['ping', '--socket', `${dir}/socket`]);
  assert.equal(ping.code, 69, ping.stderr);
  assert.match(ping.stderr, new RegExp(`the directory ${dir} does not exist.*--socket/--admin-socket.*--config`));
  const status = await h.cli(['status', '--admin-socket', `${dir}/admin.socket`]);
  assert.match(status.stderr, new RegExp(`the directory ${dir} does not exist`));
  // A directory that exists: only the socket is missing, and nothing more is said.
  const plain = await h.cli(['ping', '--socket', h.p('no-broker-here')]);
  assert.equal(plain.code, 69);
  assert.doesNotMatch(plain.stderr, /does not exist, so no broker/);
});
