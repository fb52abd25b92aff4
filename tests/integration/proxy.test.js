'use strict';
// Proxies (issue 13 item 6): [identity] proxy and no_proxy send the broker's token requests
// through an HTTP CONNECT proxy (connect-proxy.js, started here, counts the CONNECTs), the
// CLI's own Graph calls follow the standard https_proxy variable, a proxy that refuses is named
// in what `credbroker account test` and `credbroker send` say, and the proxy's password (in
// the URL's user information) appears in no log, message or status.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, MAIL_SEND } = require('./harness');
const { startConnectProxy } = require('./connect-proxy');

const PROXY_PASSWORD = `PROXY-CANARY-${crypto.randomBytes(8).toString('hex')}`;
const PROXY_AUTH = `Basic ${Buffer.from(`proxyuser:${PROXY_PASSWORD}`).toString('base64')}`;
// No proxy variable of the test runner's may steer the CLI: each test says what it wants.
const NO_ENV_PROXY = {
  https_proxy: undefined, HTTPS_PROXY: undefined, all_proxy: undefined, ALL_PROXY: undefined,
  http_proxy: undefined, no_proxy: undefined, NO_PROXY: undefined,
};

let h;
let proxy;
let refusing;
const proxyUrl = (p) => `http://proxyuser:${PROXY_PASSWORD}@127.0.0.1:${p.port}`;

before(async () => {
  proxy = await startConnectProxy({ auth: PROXY_AUTH });
  refusing = await startConnectProxy({ refuse: true });
  h = await setup({
    config: { identity: { proxy: proxyUrl(proxy), no_proxy: 'intranet.invalid, .corp.invalid' } },
    brokerEnv: NO_ENV_PROXY,
    profiles: { alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root'] } },
  });
});
after(async () => {
  if (h) await h.teardown();
  if (proxy) await proxy.close();
  if (refusing) await refusing.close();
});

const cb = (args, opts = {}) => h.cli([...args, '--config', h.conf], { ...opts, env: { ...NO_ENV_PROXY, ...(opts.env || {}) } });
const emulatorTarget = () => `127.0.0.1:${h.emuPorts.port}`;

function assertNoPassword(outputs) {
  for (const [what, text] of [...outputs, ['broker log', h.brokerLog()], ['audit log', h.auditText()]]) {
    assert.ok(!text.includes(PROXY_PASSWORD), `the proxy password appears in ${what}`);
  }
}

test('the broker\'s token requests go through [identity] proxy', { timeout: 60000 }, async () => {
  const before = proxy.connects.length;
  const upstream = (await h.counters()).token;
  const r = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts', min_ttl: 7200 });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal((await h.counters()).token, upstream + 1);
  const mine = proxy.connects.slice(before);
  assert.equal(mine.length, 1, JSON.stringify(mine));
  assert.equal(mine[0].target, emulatorTarget());
  assert.equal(mine[0].authorized, true, 'the proxy credentials were sent');
  assert.match(h.brokerLog(), new RegExp(`through the proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${proxy.port}, except to intranet`));
  const status = await cb(['status']);
  assertNoPassword([['status', status.stdout + status.stderr]]);
});

test('the CLI\'s Graph calls follow https_proxy; without it they go direct', { timeout: 60000 }, async () => {
  const mail = (await h.mail()).length;
  let before = proxy.connects.length;
  const direct = await cb(['send', '-p', 'alerts', '--to', 'ops@contoso.com', '--subject', 'direct'], { input: 'x\n' });
  assert.equal(direct.code, 0, direct.stderr);
  assert.equal(proxy.connects.length, before, 'no proxy variable: no CONNECT');
  const viaProxy = await cb(['send', '-p', 'alerts', '--to', 'ops@contoso.com', '--subject', 'proxied'],
    { input: 'y\n', env: { https_proxy: proxyUrl(proxy) } });
  assert.equal(viaProxy.code, 0, viaProxy.stderr);
  const mine = proxy.connects.slice(before);
  assert.equal(mine.length, 1, JSON.stringify(mine));
  assert.equal(mine[0].target, emulatorTarget());
  assert.equal((await h.mail()).length, mail + 2);
  // no_proxy naming the host sends it around the proxy.
  before = proxy.connects.length;
  const bypass = await cb(['send', '-p', 'alerts', '--to', 'ops@contoso.com', '--subject', 'bypass'],
    { input: 'z\n', env: { https_proxy: proxyUrl(proxy), no_proxy: '127.0.0.1' } });
  assert.equal(bypass.code, 0, bypass.stderr);
  assert.equal(proxy.connects.length, before, 'no_proxy: no CONNECT');
});

test('a proxy that refuses is named, without its password, by account test and send', { timeout: 60000 }, async () => {
  const refused = await cb(['send', '-p', 'alerts', '--to', 'ops@contoso.com', '--subject', 'refused'],
    { input: 'r\n', env: { https_proxy: proxyUrl(refusing) } });
  // Not lost (issue 11): the broker's spool takes the message, and send says why it is queued.
  assert.equal(refused.code, 0, refused.stderr);
  assert.match(refused.stderr, /queued in the broker's spool/);
  assert.match(refused.stderr, new RegExp(`the proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${refusing.port} \\(from https_proxy\\) refused`));

  h.opts.config.identity.proxy = proxyUrl(refusing);
  h.writeConfig();
  await h.restartBroker(); // an empty token cache: account test must ask upstream
  const before = refusing.connects.length;
  const t = await cb(['account', 'test', 'alerts']);
  assert.notEqual(t.code, 0, t.stdout);
  assert.equal(refusing.connects.length, before + 1, 'the token request reached the refusing proxy');
  assert.match(t.stderr, new RegExp(`the proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${refusing.port} refused the connection to the identity provider \\(HTTP 403`));

  // A proxy nobody listens on: "cannot reach the proxy".
  const closed = await startConnectProxy();
  const port = closed.port;
  await closed.close();
  h.opts.config.identity.proxy = `http://proxyuser:${PROXY_PASSWORD}@127.0.0.1:${port}`;
  h.writeConfig();
  await h.restartBroker();
  const unreachable = await cb(['account', 'test', 'alerts']);
  assert.notEqual(unreachable.code, 0, unreachable.stdout);
  assert.match(unreachable.stderr, new RegExp(`cannot reach the proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${port}`));
  assertNoPassword([['account test', t.stdout + t.stderr], ['send', refused.stdout + refused.stderr],
    ['account test (closed)', unreachable.stdout + unreachable.stderr]]);

  h.opts.config.identity.proxy = proxyUrl(proxy);
  h.writeConfig();
  await h.restartBroker();
  const ok = await cb(['account', 'test', 'alerts']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
});
