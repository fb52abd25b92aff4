'use strict';
// Policy reload on SIGHUP (design §7, P10): all or nothing. A good change decides the next
// request, also on connections accepted before it; a broken file, a symlink or a file others
// may write keeps the old set and the log names every file:line; a request waiting on a refresh
// is answered under the policy that admitted it, whatever the reload took away meanwhile.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { setup, waitFor, MAIL_SEND } = require('./harness');

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
const ROOT_ONLY = `account alerts\nscope ${MAIL_SEND}\npeer required uid root\n`;
const NOBODY_ONLY = `account alerts\nscope ${MAIL_SEND}\n# root is no longer welcome\npeer required uid nobody\n`;

// A TCP proxy in front of the emulator's token endpoint that can hold new connections back, so
// a refresh stays in flight as long as a test needs.
const proxy = { server: null, port: 0, delayMs: 0, connections: 0, target: 0 };
let h;

before(async () => {
  proxy.server = net.createServer((client) => {
    proxy.connections++;
    client.on('error', () => {});
    setTimeout(() => {
      const upstream = net.connect(proxy.target, '127.0.0.1');
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    }, proxy.delayMs);
  });
  await new Promise((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
  proxy.port = proxy.server.address().port;
  h = await setup({
    profiles: { alerts: ROOT_ONLY },
    config: { identity: { authority: `https://127.0.0.1:${proxy.port}` } },
  });
  proxy.target = h.emuPorts.port;
});
after(async () => {
  if (h) await h.teardown();
  if (proxy.server) proxy.server.close();
});

function writePolicy(name, text, mode = 0o644) {
  const file = h.p('policy.d', name);
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
}

async function resetPolicy() {
  for (const f of fs.readdirSync(h.p('policy.d'))) fs.rmSync(h.p('policy.d', f), { force: true });
  writePolicy('alerts', ROOT_ONLY);
  assert.equal(await h.reloadBroker(), 'reloaded');
}

test('a good change decides the next request, also on a connection accepted before it', { timeout: 30000 }, async () => {
  const c = await h.rawClient();
  try {
    const first = await c.request(TOKEN);
    assert.equal(first.ok, true, JSON.stringify(first));
    writePolicy('alerts', NOBODY_ONLY);
    assert.equal(await h.reloadBroker(), 'reloaded');
    assert.match(h.brokerLog(), /Policy reloaded: 1 profiles/);
    const before = h.auditLines().length;
    const second = await c.request(TOKEN);
    assert.equal(second.error, 'denied', `the same connection after the reload: ${JSON.stringify(second)}`);
    // The reload's checkpoint (SIGHUP) is signed on the store worker and may land after the
    // deny: the request's own record is the one that is not a checkpoint.
    const since = h.auditLines().slice(before).filter((l) => l.event !== 'checkpoint');
    assert.equal(since.length, 1, JSON.stringify(since));
    const deny = since[0];
    assert.equal(deny.event, 'deny');
    assert.equal(deny.rule, 'alerts:4', 'the new file decided');
    assert.equal((await h.rawRequestAsNobody(TOKEN)).ok, true, 'and a new connection of the newly allowed uid');
  } finally {
    c.close();
    await resetPolicy();
  }
});

test('a broken file keeps the old set, and every file:line problem is logged', { timeout: 30000 }, async () => {
  writePolicy('alerts', `${ROOT_ONLY}peer bogus uid 0\n`);
  writePolicy('second', `account alerts\nscope ${MAIL_SEND}\nfrobnicate\npeer required uid root\npeer required uid no-such-user-here\n`);
  const logBefore = h.brokerLog().length;
  assert.equal(await h.reloadBroker(), 'failed');
  const log = h.brokerLog().slice(logBefore);
  assert.match(log, /alerts:4: .*control/, 'alerts:4 is named');
  assert.match(log, /second:3: .*directive/, 'second:3 is named');
  assert.match(log, /second:5: .*no-such-user-here/, 'second:5 is named too: every problem, not the first');
  assert.match(log, /Reload failed; keeping the previous policy/);
  assert.equal((await h.rawRequest(TOKEN)).ok, true, 'the old alerts still allows root');
  assert.equal((await h.rawRequestAsNobody(TOKEN)).error, 'denied', 'and still denies nobody');
  assert.equal((await h.rawRequest({ ...TOKEN, profile: 'second' })).error, 'unknown_profile',
    'nothing of the broken set was taken, not even its good parts');
  assert.ok(h.brokerAlive());
  await resetPolicy();
});

test('a policy file swapped for a symlink is refused and the old set stays (P10)', { timeout: 30000 }, async () => {
  // The link points at a file that would be a valid policy letting nobody in.
  const outside = h.p('outside-policy');
  fs.writeFileSync(outside, NOBODY_ONLY, { mode: 0o644 });
  fs.rmSync(h.p('policy.d', 'alerts'));
  fs.symlinkSync(outside, h.p('policy.d', 'alerts'));
  const logBefore = h.brokerLog().length;
  assert.equal(await h.reloadBroker(), 'failed');
  assert.match(h.brokerLog().slice(logBefore), /alerts: is a symbolic link; links are refused/);
  assert.equal((await h.rawRequestAsNobody(TOKEN)).error, 'denied', 'the link did not let nobody in');
  assert.equal((await h.rawRequest(TOKEN)).ok, true, 'the old rule still decides');
  await resetPolicy();
});

test('a policy file others may write is refused and the old set stays', { timeout: 30000 }, async () => {
  writePolicy('alerts', NOBODY_ONLY, 0o666);
  assert.equal(await h.reloadBroker(), 'failed');
  assert.equal((await h.rawRequestAsNobody(TOKEN)).error, 'denied');
  assert.equal((await h.rawRequest(TOKEN)).ok, true);
  await resetPolicy();
});

test('a request waiting on a refresh is answered under the policy that admitted it', { timeout: 60000 }, async () => {
  await h.restartBroker(); // an empty cache: the first request must wait for a refresh
  const n = h.auditLines().length;
  proxy.delayMs = 2000;
  const connectionsBefore = proxy.connections;
  const waiting = await h.rawClient();
  try {
    await waiting.send(TOKEN);
    await waitFor('the refresh to reach the proxy', () => proxy.connections > connectionsBefore);
    // While it waits, a reload takes root's access away and drops the profile altogether.
    for (const f of fs.readdirSync(h.p('policy.d'))) fs.rmSync(h.p('policy.d', f));
    writePolicy('other', NOBODY_ONLY);
    assert.equal(await h.reloadBroker(), 'reloaded');
    assert.equal((await h.rawRequest(TOKEN)).error, 'unknown_profile', 'new requests see the new set at once');

    const reply = await waiting.readFrame(20000);
    assert.equal(reply.ok, true, `the admitted request: ${JSON.stringify(reply)}`);
    assert.equal(typeof reply.access_token, 'string');
    const issue = h.auditLinesAfter(n).find((l) => l.event === 'issue');
    assert.ok(issue, 'its issue record');
    assert.equal(issue.profile, 'alerts');
    assert.equal(issue.rule, 'alerts:3', 'the rule that admitted it, held by copy');
    assert.equal(issue.peer.pid, process.pid);

    // The next request on that very connection is decided by the new set.
    const next = await waiting.request(TOKEN);
    assert.equal(next.error, 'unknown_profile', JSON.stringify(next));
  } finally {
    proxy.delayMs = 0;
    waiting.close();
  }
  assert.ok(h.brokerAlive());
  await resetPolicy();
});
