'use strict';
// Malformed input never crashes or wedges the broker (P7, design §3 framing).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { setup, frame, sleep, waitFor, run, SOURCE_ROOT } = require('./harness');

let h;
before(async () => {
  h = await setup();
  // Warm the cache so the "others still work" token checks are quick.
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' })).ok, true);
});
after(async () => {
  if (flood) for (const c of flood.idle) c.close();
  await Promise.all([h && h.teardown(), flood && flood.h.teardown()]);
});

const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const bytes = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));

// Byte-level cases: what is written to the socket, the error expected, and whether the broker
// must hang up afterwards (framing lost).
const BAD_FRAMES = [
  { name: 'zero length frame', write: u32(0), error: 'bad_request', closes: true },
  { name: 'length 65537', write: bytes(u32(65537), Buffer.alloc(64, 0x20)), error: 'bad_request', closes: true },
  { name: 'length 2^32-1', write: u32(0xffffffff), error: 'bad_request', closes: true },
  { name: 'length 2^31', write: u32(0x80000000), error: 'bad_request', closes: true },
  { name: 'invalid JSON', write: frame('{"v":1,"op":'), error: 'bad_request' },
  { name: 'not JSON at all', write: frame('hello broker'), error: 'bad_request' },
  { name: 'JSON array', write: frame('[{"v":1,"op":"ping"}]'), error: 'bad_request' },
  { name: 'JSON string', write: frame('"ping"'), error: 'bad_request' },
  { name: 'invalid UTF-8 (lone continuation byte)', write: frame(bytes('{"v":1,"op":"ping","x":"', [0x80], '"}')), error: 'bad_request' },
  { name: 'invalid UTF-8 (overlong slash)', write: frame(bytes('{"v":1,"op":"ping","x":"', [0xc0, 0xaf], '"}')), error: 'bad_request' },
  { name: 'invalid UTF-8 (truncated sequence)', write: frame(bytes('{"v":1,"op":"ping","x":"', [0xe2, 0x82], '"}')), error: 'bad_request' },
  { name: 'invalid UTF-8 (0xff)', write: frame(bytes('{"v":1,"op":"', [0xff], '"}')), error: 'bad_request' },
  { name: 'raw NUL byte', write: frame(bytes('{"v":1,"op":"ping"}', [0])), error: 'bad_request' },
  { name: 'missing v', write: frame({ op: 'ping' }), error: 'bad_request' },
  { name: 'v as a string', write: frame({ v: '1', op: 'ping' }), error: 'bad_request' },
  { name: 'v 2', write: frame({ v: 2, op: 'ping' }), error: 'unsupported_version' },
  { name: 'unknown op', write: frame({ v: 1, op: 'frobnicate' }), error: 'unknown_op' },
  { name: 'admin op on the client socket', write: frame({ v: 1, op: 'account.list' }), error: 'unknown_op' },
  { name: 'missing op', write: frame({ v: 1 }), error: 'bad_request' },
  { name: 'bad profile name (path)', write: frame({ v: 1, op: 'token', profile: '../policy.d/alerts' }), error: 'bad_request' },
  { name: 'bad profile name (uppercase)', write: frame({ v: 1, op: 'token', profile: 'Alerts' }), error: 'bad_request' },
  { name: 'bad profile name (empty)', write: frame({ v: 1, op: 'token', profile: '' }), error: 'bad_request' },
  { name: 'profile missing', write: frame({ v: 1, op: 'token' }), error: 'bad_request' },
  { name: 'scopes not an array', write: frame({ v: 1, op: 'token', profile: 'alerts', scopes: 'Mail.Send' }), error: 'bad_request' },
  { name: 'scopes with a number', write: frame({ v: 1, op: 'token', profile: 'alerts', scopes: [1] }), error: 'bad_request' },
  { name: 'min_ttl -1', write: frame({ v: 1, op: 'token', profile: 'alerts', min_ttl: -1 }), error: 'bad_request' },
  { name: 'min_ttl 86401', write: frame({ v: 1, op: 'token', profile: 'alerts', min_ttl: 86401 }), error: 'bad_request' },
  { name: 'min_ttl a string', write: frame({ v: 1, op: 'token', profile: 'alerts', min_ttl: '300' }), error: 'bad_request' },
  { name: 'duplicate members', write: frame('{"v":1,"op":"ping","op":"token"}'), error: 'bad_request' },
  { name: 'deep nesting', write: frame(`{"v":1,"op":"ping","x":${'['.repeat(5000)}${']'.repeat(5000)}}`), error: 'bad_request' },
  { name: 'unclosed deep nesting', write: frame(`{"v":1,"op":"ping","x":${'['.repeat(20000)}`), error: 'bad_request' },
];

async function assertOthersStillServed(what) {
  const c = await h.rawClient();
  try {
    const ping = await c.request({ v: 1, op: 'ping' }, 5000);
    assert.equal(ping.ok, true, `after ${what}: ping ${JSON.stringify(ping)}`);
    const token = await c.request({ v: 1, op: 'token', profile: 'alerts' }, 10000);
    assert.equal(token.ok, true, `after ${what}: token ${JSON.stringify(token)}`);
  } finally {
    c.close();
  }
}

test('each malformed frame gets the right error code; the broker keeps serving others', { timeout: 60000 }, async (t) => {
  for (const bad of BAD_FRAMES) {
    await t.test(bad.name, async () => {
      const c = await h.rawClient();
      try {
        await c.write(bad.write);
        const reply = await c.readFrame(5000);
        assert.equal(reply.v, 1, JSON.stringify(reply));
        assert.equal(reply.ok, false, JSON.stringify(reply));
        assert.equal(reply.error, bad.error, JSON.stringify(reply));
        assert.equal(typeof reply.message, 'string');
        if (bad.closes) {
          assert.equal(await c.waitClosed(3000), true, 'the broker hangs up once framing is lost');
        } else {
          // Framing is intact: the same connection goes on working.
          const ping = await c.request({ v: 1, op: 'ping' }, 5000);
          assert.equal(ping.ok, true, `the same connection after the bad frame: ${JSON.stringify(ping)}`);
        }
      } finally {
        c.close();
      }
      await assertOthersStillServed(bad.name);
    });
  }
  assert.ok(h.brokerAlive());
});

test('every request in tests/data/frames/bad-requests.txt is refused with its code', { timeout: 60000 }, async () => {
  const file = path.join(SOURCE_ROOT, 'tests', 'data', 'frames', 'bad-requests.txt');
  const cases = fs.readFileSync(file, 'utf8').split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('#'))
    .map((l) => ({ error: l.slice(0, l.indexOf(' ')), payload: l.slice(l.indexOf(' ') + 1) }));
  assert.ok(cases.length > 50, `only ${cases.length} cases read`);
  // All on one connection: each refusal must leave the framing intact.
  const c = await h.rawClient();
  try {
    for (const { error, payload } of cases) {
      const reply = await c.request(payload, 5000);
      assert.equal(reply.ok, false, `${payload}: ${JSON.stringify(reply)}`);
      assert.equal(reply.error, error, `${payload}: ${JSON.stringify(reply)}`);
    }
    assert.equal((await c.request({ v: 1, op: 'ping' })).ok, true);
  } finally {
    c.close();
  }
  await assertOthersStillServed('the bad-requests table');
});

test('a frame of exactly 65536 bytes is accepted', { timeout: 10000 }, async () => {
  const json = '{"v":1,"op":"ping"}';
  const payload = json + ' '.repeat(65536 - json.length);
  const reply = await h.rawRequest(payload);
  assert.equal(reply.ok, true, JSON.stringify(reply));
});

test('bad requests are logged naming the peer', { timeout: 20000 }, async () => {
  // Only what the broker writes after this request counts: earlier tests of this process left
  // lines naming the same uid and pid. A fresh broker, so no per-uid log limit carried over
  // from earlier floods can hold the line back.
  await h.restartBroker();
  const before = h.brokerLog().length;
  await h.rawRequest({ v: 2, op: 'ping' });
  const line = new RegExp(`^.*Bad request from uid=${process.getuid()} pid=${process.pid}\\b.*$`, 'm');
  await waitFor('the bad request to be logged', () => line.test(h.brokerLog().slice(before)), { timeoutMs: 5000 });
});

test('two requests in one write get two replies, in order, even when the first waits upstream', { timeout: 30000 }, async () => {
  await h.restartBroker(); // cold: the token request must wait for a refresh
  const c = await h.rawClient();
  try {
    await c.write(Buffer.concat([
      frame({ v: 1, op: 'token', profile: 'alerts' }),
      frame({ v: 1, op: 'ping' }),
      frame({ v: 2, op: 'ping' }),
    ]));
    const first = await c.readFrame(15000);
    const second = await c.readFrame(5000);
    const third = await c.readFrame(5000);
    assert.equal(first.ok, true, JSON.stringify(first));
    assert.equal(typeof first.access_token, 'string', 'the token reply comes first');
    assert.equal(second.ok, true);
    assert.equal(typeof second.version, 'string', 'then the ping reply');
    assert.equal(third.error, 'unsupported_version', 'then the error');
  } finally {
    c.close();
  }
});

test('a frame written one byte at a time is answered', { timeout: 30000 }, async () => {
  const c = await h.rawClient();
  try {
    const data = frame({ v: 1, op: 'token', profile: 'alerts' });
    for (const byte of data) {
      await c.write(Buffer.from([byte]));
      await sleep(2);
    }
    const reply = await c.readFrame(10000);
    assert.equal(reply.ok, true, JSON.stringify(reply));
  } finally {
    c.close();
  }
});

test('silent, half-sent and many idle connections do not block other clients', { timeout: 30000 }, async () => {
  const idle = await h.rawClient(); // connects and sends nothing
  const half = await h.rawClient(); // a header promising 100 bytes, then 10 of them
  await half.write(Buffer.concat([u32(100), Buffer.from('{"v":1,"op')]));
  const headerOnly = await h.rawClient(); // half a header
  await headerOnly.write(Buffer.from([0, 0]));
  const crowd = await Promise.all(Array.from({ length: 100 }, () => h.rawClient()));
  try {
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      await assertOthersStillServed('idle connections');
      const ms = Date.now() - t0;
      assert.ok(ms < 2000, `a ping and a cached token took ${ms} ms next to idle connections`);
    }
    // The half-sent frame is still completed and answered when the rest arrives.
    await half.write(Buffer.concat([Buffer.from('":"ping"}'), Buffer.alloc(100 - 19, 0x20)]));
    assert.equal((await half.readFrame(5000)).ok, true);
  } finally {
    for (const c of [idle, half, headerOnly, ...crowd]) c.close();
  }
  assert.ok(h.brokerAlive());
});

test('clients that hang up while their request waits upstream do not disturb the broker', { timeout: 30000 }, async () => {
  await h.restartBroker(); // cold: every request waits for the refresh
  const quitters = await Promise.all(Array.from({ length: 10 }, () => h.rawClient()));
  await Promise.all(quitters.map((c) => c.send({ v: 1, op: 'token', profile: 'alerts' })));
  for (const c of quitters) c.close();
  await sleep(200);
  await assertOthersStillServed('clients that hung up mid-request');
  assert.ok(h.brokerAlive());
});

test('a client that half-closes after its requests still gets every reply', { timeout: 30000 }, async () => {
  await h.restartBroker(); // cold: the token request waits upstream
  const c = await h.rawClient();
  try {
    await c.write(Buffer.concat([frame({ v: 1, op: 'token', profile: 'alerts' }), frame({ v: 1, op: 'ping' })]));
    c.sock.end(); // shutdown(SHUT_WR): no more requests, replies still wanted
    const first = await c.readFrame(15000);
    const second = await c.readFrame(5000);
    assert.equal(first.ok, true, JSON.stringify(first));
    assert.equal(typeof first.access_token, 'string');
    assert.equal(second.ok, true);
    assert.equal(await c.waitClosed(5000), true, 'the broker closes once it has answered');
  } finally {
    c.close();
  }
});

// CPU time (user + system) of a process, in seconds.
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

// The broker's file descriptor limit runs out before its connection limit (systemd's default
// soft limit is 1024, BROKER_MAX_CONNECTIONS too): a flood of idle connections from one uid.
const FLOOD = { nofile: 128, connections: 150 };
let flood = null; // { h, idle: [RawClient] }

test('a connection flood that exhausts the fd limit: the broker does not spin', { timeout: 60000 }, async () => {
  // log_level error: the "accept() failed" warnings would otherwise fill the disk if it spins.
  const f = await setup({
    config: { broker: { log_level: 'error' } },
    brokerWrapper: ['prlimit', `--nofile=${FLOOD.nofile}:${FLOOD.nofile}`, '--'],
  });
  flood = { h: f, idle: [] }; // the idle connections stay open for the next test
  assert.equal((await f.rawRequest({ v: 1, op: 'token', profile: 'alerts' })).ok, true);
  for (let i = 0; i < FLOOD.connections; i++) flood.idle.push(await f.rawClient());
  await sleep(300);
  const pid = f.brokerPid;
  const c0 = cpuSeconds(pid);
  await sleep(1000);
  const used = cpuSeconds(pid) - c0;
  assert.ok(used < 0.3, `credbrokerd used ${used.toFixed(2)} s of CPU in 1 s while ${FLOOD.connections} idle `
    + `connections exhaust its ${FLOOD.nofile} file descriptors: it spins on accept() failing with EMFILE`);
});

test('a connection flood from one uid does not lock other clients out (P12)', { timeout: 60000 }, async () => {
  assert.ok(flood, 'the previous test set up the flood');
  // What starting node as nobody costs on this machine now, so that the bound is on the broker.
  let t0 = Date.now();
  await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', process.execPath, '-e', '']);
  const startMs = Date.now() - t0;
  t0 = Date.now();
  const reply = await flood.h.rawRequestAsNobody({ v: 1, op: 'ping' }, 5000).catch((e) => ({ failed: e.message }));
  const ms = Date.now() - t0;
  assert.equal(reply.ok, true, `another uid's ping during a flood from uid 0: ${JSON.stringify(reply)} after ${ms} ms`);
  assert.ok(ms - startMs < 2000, `another uid's ping took ${ms} ms (starting node: ${startMs} ms)`);
});

test('after a connection flood ends, the broker serves again', { timeout: 60000 }, async () => {
  assert.ok(flood, 'the first flood test set up the flood');
  for (const c of flood.idle) c.close();
  flood.idle = [];
  await waitFor('a ping after the flood', async () => (await flood.h.rawRequest({ v: 1, op: 'ping' }, 1000)).ok,
    { timeoutMs: 10000, intervalMs: 200 });
  const token = await flood.h.rawRequest({ v: 1, op: 'token', profile: 'alerts' }, 10000);
  assert.equal(token.ok, true, JSON.stringify(token));
  await flood.h.teardown();
});
