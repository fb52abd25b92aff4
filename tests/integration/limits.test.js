'use strict';
// What a hostile local user can make the broker spend, and the bound on each (reliability.md
// P12, docs/security.md): audit and log lines, connections, memory, loop time. Each attack runs
// as an unprivileged uid through tests/integration/abuse-client.js while other uids keep asking.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { setup, spawnTracked, sleep, waitFor, run, frame } = require('./harness');

const ABUSE_CLIENT = path.join(__dirname, 'abuse-client.js');
// Latency bounds are for the plain build; AddressSanitizer makes the broker several times slower.
// The target for another uid during a flood is p99 < 10 ms, which tests/bench/abuse
// reports on a quiet machine; here, with the attacker, the broker and the client sharing two
// cores with whatever else runs, the test holds it to 25 ms. These latency tests do not guard
// the per-turn frame budgets (broker/net/stream.c): with every budget lifted, the floods below
// still leave daemon's p99 at 6-11 ms on the 2-core VM (checked 2026-12-05). The budgets
// themselves are guarded by tests/unit/test-stream.c.
const SLOWER = process.env.CREDBROKER_SANITIZE === '1' ? 3 : 1;
const FLOOD_P99_MS = 25;
const SLOWER_BUILD = SLOWER > 1;
const GROUPS = { nobody: 'nogroup', daemon: 'daemon', bin: 'bin', sys: 'sys', sync: 'nogroup', games: 'games', man: 'man' };

const PROFILES = {
  alerts: { rules: ['peer sufficient uid root', 'peer sufficient uid daemon'] },
  payroll: { rules: ['peer required uid root'] },
};

const harnesses = [];
after(async () => {
  await Promise.all(harnesses.map((h) => h.teardown()));
});

async function world(config = {}, opts = {}) {
  const h = await setup({
    profiles: PROFILES,
    config: { broker: { log_level: 'info', ...config } },
    ...opts,
  });
  harnesses.push(h);
  // Warm the cache: the measurements below are about the socket, not upstream.
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' })).ok, true);
  return h;
}

// Runs abuse-client.js as user; resolves its JSON summary. onLine gets earlier lines (hold).
function abuse(h, user, mode, connections, seconds, arg, { onLine } = {}) {
  const args = [ABUSE_CLIENT, mode, h.socket, String(connections), String(seconds)];
  if (arg) args.push(arg);
  const proc = user === 'root' ? spawnTracked(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawnTracked('setpriv', ['--reuid', user, '--regid', GROUPS[user] || user, '--clear-groups',
      process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
    let i;
    while (onLine && (i = out.indexOf('\n')) >= 0 && out.slice(0, i).includes('"ready"')) {
      onLine(JSON.parse(out.slice(0, i)));
      out = out.slice(i + 1);
    }
  });
  return new Promise((resolve, reject) => {
    proc.once('exit', () => {
      const lines = out.trim().split('\n');
      try {
        const r = JSON.parse(lines[lines.length - 1]);
        if (r.fatal) reject(new Error(`abuse-client ${mode} as ${user}: ${r.fatal}`));
        else resolve(r);
      } catch (e) {
        reject(new Error(`abuse-client ${mode} as ${user}: ${out}`));
      }
    });
  });
}

const fileSize = (f) => fs.statSync(f).size;
const vmRss = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const auditRecords = (h) => fs.readFileSync(h.auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

test('a 10 s flood of unknown-profile requests from one uid: audit and log stay under 64 KB, another uid keeps its latency', { timeout: 90000 }, async () => {
  // No request budget: the aggregation alone must keep the audit log small.
  const h = await world({ request_rate_per_uid: 0 });
  const audit0 = fileSize(h.auditLog);
  const log0 = h.brokerLog().length;
  const [flood, latency] = await Promise.all([
    abuse(h, 'nobody', 'unknown', 4, 10),
    abuse(h, 'daemon', 'latency', 1, 10, 'alerts'),
  ]);
  await sleep(1500); // one more tick writes the last count
  // What the flood added: the audit lines about uid 65534 (daemon's issues are not the flood's).
  const auditGrowth = fs.readFileSync(h.auditLog, 'utf8').slice(audit0).split('\n')
    .filter((l) => l.includes('"uid":65534')).reduce((n, l) => n + l.length + 1, 0);
  const logGrowth = h.brokerLog().length - log0;
  const denied = flood.replies.unknown_profile || 0;
  assert.ok(denied > 2000, `the flood made only ${denied} requests: ${JSON.stringify(flood)}`);
  assert.ok(auditGrowth < 64 * 1024, `audit log grew ${auditGrowth} bytes for ${denied} denials`);
  assert.ok(logGrowth < 64 * 1024, `broker log grew ${logGrowth} bytes for ${denied} denials`);
  console.log(`# daemon's token latency during the flood: p50 ${latency.p50} ms, p99 ${latency.p99} ms (${latency.n} requests)`);
  assert.ok(latency.n > 100 && latency.p99 < FLOOD_P99_MS * SLOWER, `daemon's token latency during the flood: ${JSON.stringify(latency)}`);
  // Still audited: every denial is in a record of its own or in an aggregated record's count.
  const records = auditRecords(h).filter((r) => r.event === 'deny' && r.peer && r.peer.uid === 65534);
  const total = records.reduce((n, r) => n + (r.count || 1), 0);
  // The broker may have denied more than the client read before it hung up, never fewer.
  assert.ok(total >= denied && total < denied * 1.01 + 1000, `audit accounts for ${total} of ${denied} denials`);
  const aggregated = records.filter((r) => r.count);
  assert.ok(aggregated.length >= 1 && aggregated.every((r) => r.first && r.last && r.reason === 'unknown profile'),
    JSON.stringify(aggregated.slice(0, 2)));
  // At shutdown the pending count is written too.
  const before = auditRecords(h).length;
  await abuse(h, 'nobody', 'unknown', 1, 1);
  await h.stopBroker();
  const last = auditRecords(h).slice(before);
  assert.ok(last.some((r) => r.count > 0), `no aggregated record at shutdown: ${JSON.stringify(last)}`);
});

test('denials and bad frames from one uid: log lines are rate-limited with a suppressed count', { timeout: 60000 }, async () => {
  const h = await world({ request_rate_per_uid: 0 });
  const log0 = h.brokerLog().length;
  const [denied, bad] = await Promise.all([
    abuse(h, 'nobody', 'denied', 2, 5, 'payroll'),
    abuse(h, 'bin', 'badframes', 2, 5),
  ]);
  // The summary of what was suppressed comes once the uid may log again (6 lines a minute).
  await waitFor('the suppressed-lines summary', () => /uid 65534: \d+ more log lines/.test(h.brokerLog().slice(log0)),
    { timeoutMs: 15000 });
  const log = h.brokerLog().slice(log0);
  assert.ok((denied.replies.denied || 0) > 1000, JSON.stringify(denied));
  assert.ok((bad.replies.bad_request || 0) > 1000, JSON.stringify(bad));
  assert.ok(log.length < 64 * 1024, `broker log grew ${log.length} bytes`);
  const nobodyLines = log.split('\n').filter((l) => /Denied uid=65534\b/.test(l));
  assert.ok(nobodyLines.length >= 1 && nobodyLines.length <= 25, `${nobodyLines.length} denial lines for uid 65534`);
  assert.match(log, /uid 65534: \d+ more log lines about its requests were suppressed/);
  assert.match(log, /Bad request from uid=2\b/);
});

test('the per-uid request budget answers rate_limited with retry_after; other uids are unaffected', { timeout: 60000 }, async () => {
  const h = await world({ request_rate_per_uid: 2, request_burst_per_uid: 5 });
  const script = `
    const net = require('net');
    const s = net.createConnection(process.argv[1]);
    const body = Buffer.from(JSON.stringify({ v: 1, op: 'ping' }));
    const head = Buffer.alloc(4); head.writeUInt32BE(body.length);
    const one = Buffer.concat([head, body]);
    s.on('connect', () => { for (let i = 0; i < 20; i++) s.write(one); });
    let buf = Buffer.alloc(0); const replies = [];
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        replies.push(JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0))));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
      if (replies.length === 20) { console.log(JSON.stringify(replies)); process.exit(0); }
    });`;
  const r = await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', process.execPath, '-e', script, h.socket], { timeoutMs: 20000 });
  const replies = JSON.parse(r.stdout);
  const ok = replies.filter((x) => x.ok).length;
  const limited = replies.filter((x) => x.error === 'rate_limited');
  assert.ok(ok >= 5 && ok <= 6, `${ok} of 20 pipelined requests passed a burst of 5`);
  assert.equal(ok + limited.length, 20, JSON.stringify(replies));
  assert.ok(limited.every((x) => x.retry_after >= 1), JSON.stringify(limited[0]));
  // daemon and root have their own budgets (root none at all).
  for (let i = 0; i < 10; i++) assert.equal((await h.rawRequest({ v: 1, op: 'ping' })).ok, true);
  const asDaemon = await run('setpriv', ['--reuid', 'daemon', '--regid', 'daemon', '--clear-groups',
    process.env.CREDBROKER, 'token', '-p', 'alerts', '--socket', h.socket], { timeoutMs: 10000 });
  assert.equal(asDaemon.code, 0, asDaemon.stderr);
  const denials = auditRecords(h).filter((x) => x.decision === 'rate_limited' && x.peer && x.peer.uid === 65534);
  assert.ok(denials.length >= 1 && denials[0].reason === 'request budget of the uid exhausted', JSON.stringify(denials[0]));
});

test('a connection over the per-uid cap is told rate_limited with retry_after; idle ones close', { timeout: 60000 }, async () => {
  const h = await world({ max_connections_per_uid: 4, idle_timeout: 3 });
  const r = await abuse(h, 'nobody', 'trickle', 6, 3);
  assert.equal(r.opened, 4, JSON.stringify(r));
  assert.equal(r.refused.rate_limited, 2, `the two over the cap get a framed rate_limited: ${JSON.stringify(r)}`);
  // Idle connections close after idle_timeout (3 s).
  const held = await abuse(h, 'nobody', 'hold', 2, 6);
  assert.equal(held.opened, 2, JSON.stringify(held));
  assert.equal(held.closedByBroker, 2, `idle connections closed within 6 s: ${JSON.stringify(held)}`);
});

test('a full table evicts its oldest idle connection before it refuses a new one', { timeout: 60000 }, async () => {
  // 100 descriptors: 68 connections, 52 of them for non-root uids.
  const h = await world({ idle_timeout: 60 }, { brokerWrapper: ['prlimit', '--nofile=100:100', '--'] });
  let ready;
  const readyP = new Promise((resolve) => { ready = resolve; });
  const holder = abuse(h, 'nobody', 'hold', 52, 5, null, { onLine: ready });
  assert.equal((await readyP).opened, 52);
  await sleep(1500); // idle long enough to be evicted
  const newcomer = await abuse(h, 'bin', 'hold', 1, 1);
  assert.equal(newcomer.opened, 1, JSON.stringify(newcomer));
  const held = await holder;
  assert.equal(held.closedByBroker, 1, `the oldest idle connection made room: ${JSON.stringify(held)}`);
  // Root's reserve: root still connects with the table full of nobody's connections.
  assert.equal((await h.rawRequest({ v: 1, op: 'ping' })).ok, true);
});

test('4 uids x 256 trickling connections against 1,024 descriptors: an allowed uid and root still get tokens within 1 s', { timeout: 90000 }, async () => {
  const h = await world({}, { brokerWrapper: ['prlimit', '--nofile=1024:1024', '--'] });
  const attackers = ['nobody', 'bin', 'sys', 'games'].map((u) => abuse(h, u, 'trickle', 256, 12));
  await sleep(3000); // the attack is in place
  // What the broker holds, counted on its side: 4 uids x 64, and a few of its own.
  const held = fs.readdirSync(`/proc/${h.brokerPid}/fd`).length;
  assert.ok(held <= 4 * 64 + 48, `the broker holds ${held} descriptors during the attack`);
  for (let i = 0; i < 3; i++) {
    let t0 = Date.now();
    const root = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' }, 1000);
    assert.equal(root.ok, true, JSON.stringify(root));
    assert.ok(Date.now() - t0 < 1000, `root waited ${Date.now() - t0} ms`);
    // Starting the CLI as daemon, timed alone: the bound is on the broker, not on exec() on a
    // machine the attackers keep busy.
    const asDaemon = ['--reuid', 'daemon', '--regid', 'daemon', '--clear-groups', process.env.CREDBROKER];
    t0 = Date.now();
    await run('setpriv', [...asDaemon, '--version']);
    const startMs = Date.now() - t0;
    t0 = Date.now();
    const r = await run('setpriv', [...asDaemon, 'token', '-p', 'alerts', '--socket', h.socket], { timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    const waited = Date.now() - t0 - startMs;
    assert.ok(waited < 1000, `daemon waited ${waited} ms besides ${startMs} ms to start the CLI`);
    await sleep(1000);
  }
  const results = await Promise.all(attackers);
  for (const r of results) {
    assert.ok((r.refused.rate_limited || 0) >= 150, `refusals are framed rate_limited: ${JSON.stringify(r)}`);
    // The frame timeout (5 s, checked on the broker's 1 s tick) closed the trickling ones
    // before the attack ended. Counted from the frames' first bytes, not from the attacker's
    // start: opening 256 connections can take seconds on a loaded machine.
    assert.equal(r.closedByBroker, r.opened, JSON.stringify(r));
    assert.ok(r.firstCloseMs - r.frameStartMs < (5 + 1 + 2) * 1000, JSON.stringify(r));
  }
  assert.ok(h.brokerAlive());
});

test('256 connections that never read their replies add less than 16 MB to the broker', { timeout: 60000 }, async () => {
  // meson sets MALLOC_PERTURB_, which makes glibc touch every byte it hands out: not what a
  // production broker's memory looks like.
  const h = await world({ max_connections_per_uid: 256, request_rate_per_uid: 0 }, { brokerEnv: { MALLOC_PERTURB_: null } });
  const rss0 = vmRss(h.brokerPid);
  const attack = abuse(h, 'nobody', 'noread', 256, 6);
  await sleep(4000);
  const rss = vmRss(h.brokerPid);
  // Others are still served meanwhile.
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' }, 2000)).ok, true);
  const r = await attack;
  assert.equal(r.opened, 256, JSON.stringify(r));
  // AddressSanitizer keeps freed memory in quarantine: RSS says nothing about buffers there.
  console.log(`# RSS ${rss0} kB before, ${rss} kB during the attack`);
  if (!SLOWER_BUILD) assert.ok(rss - rss0 < 16 * 1024, `RSS grew ${rss - rss0} kB (from ${rss0} kB)`);
});

test('200 connections of 64 KiB frames from one uid barely move another uid\'s latency', { timeout: 60000 }, async () => {
  const h = await world({ max_connections_per_uid: 256, request_rate_per_uid: 0 });
  const quiet = await abuse(h, 'daemon', 'latency', 1, 3, 'alerts');
  const attack = () => Promise.all([
    abuse(h, 'nobody', 'bigframes', 200, 6),
    (async () => { await sleep(1500); return abuse(h, 'daemon', 'latency', 1, 4, 'alerts'); })(),
  ]);
  let [big, busy] = await attack();
  // A p99 is the slowest few samples: one bad moment of a shared machine can put it over the
  // bound, so a second attack decides; a broker that lets the attack starve others fails both.
  if (busy.p99 >= FLOOD_P99_MS * SLOWER) {
    console.log(`# p99 ${busy.p99} ms under the first attack; once more`);
    [big, busy] = await attack();
  }
  assert.ok((big.replies.ok || 0) > 500, `the attack made only ${JSON.stringify(big.replies)}`);
  assert.ok(busy.n > 100, JSON.stringify(busy));
  console.log(`# daemon's token latency: p99 ${quiet.p99} ms quiet, ${busy.p99} ms under the attack`);
  assert.ok(busy.p99 < FLOOD_P99_MS * SLOWER, `p99 ${busy.p99} ms under the attack (quiet: ${quiet.p99} ms)`);
});

test('a second broker never takes over a socket a live broker answers on; a stale one is replaced', { timeout: 60000 }, async () => {
  const h = await world();
  const second = await run(process.env.CREDBROKERD, ['--config', h.conf], { env: h.env(), timeoutMs: 15000 });
  assert.notEqual(second.code, 0);
  assert.match(second.stderr, new RegExp(`Another process \\(pid ${h.brokerPid} credbrokerd, uid 0\\) is listening on ${h.adminSocket.replace(/[.]/g, '\\.')}`));
  // The first broker keeps both sockets.
  assert.equal((await h.rawRequest({ v: 1, op: 'ping' })).ok, true);
  assert.equal((await h.adminRequest({ op: 'ping' })).ok, true);
  // A broker killed with SIGKILL leaves its sockets behind: the next one replaces them.
  await h.stopBroker({ signal: 'SIGKILL' });
  assert.ok(fs.existsSync(h.socket) && fs.existsSync(h.adminSocket));
  await h.startBroker();
  assert.equal((await h.rawRequest({ v: 1, op: 'ping' })).ok, true);
});

test('a socket directory that does not exist is named, with how to create it', { timeout: 30000 }, async () => {
  const h = await world();
  const missing = h.p('no-such-dir', 'admin.socket');
  const sections = h.configSections();
  sections.broker.admin_socket = missing;
  sections.broker.socket = h.p('other.socket');
  const conf = h.p('missing-dir.conf');
  let text = '';
  for (const [section, keys] of Object.entries(sections)) {
    text += `[${section}]\n`;
    for (const [k, v] of Object.entries(keys)) text += `${k} = ${v}\n`;
  }
  fs.writeFileSync(conf, text, { mode: 0o644 });
  const r = await run(process.env.CREDBROKERD, ['--config', conf], { env: h.env(), timeoutMs: 15000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`directory ${h.p('no-such-dir')} for ${missing.replace(/[.]/g, '\\.')} does not exist: create it \\(install -d -m 0755 ${h.p('no-such-dir')}\\)`));
});

async function pipelined(h, profile) {
  const c = await h.rawClient();
  try {
    // 400 token replies are far more than the output high-water mark and the socket's buffer.
    const one = frame({ v: 1, op: 'token', profile });
    await c.write(Buffer.concat(Array.from({ length: 400 }, () => one)));
    await sleep(1500); // the broker stops at the high-water mark meanwhile
    for (let i = 0; i < 400; i++) {
      const reply = await c.readFrame(5000);
      assert.equal(reply.ok, true, `reply ${i}: ${JSON.stringify(reply)}`);
    }
  } finally {
    c.close();
  }
}

test('a client that pipelines many requests and reads its replies late gets every reply', { timeout: 60000 }, async () => {
  const h = harnesses[0] && harnesses[0].brokerAlive() ? harnesses[0] : await world();
  await pipelined(h, 'alerts');
});

// Replies big enough that the output high-water mark, not the per-turn frame count, is what
// stops handling with whole requests left in the input buffer and nothing left in the socket:
// nothing but the broker itself can wake that connection up again.
test('pipelined requests whose replies each pass a quarter of the high-water mark all get replies', { timeout: 60000 }, async () => {
  const scopes = Array.from({ length: 12 }, (_, i) => `https://graph.microsoft.com/Scope${i}.ReadWrite.All`);
  const h = await setup({
    profiles: { wide: { scopes, rules: ['peer sufficient uid root'] } },
    config: { broker: { log_level: 'info' } },
    refreshTokenScopes: scopes,
  });
  harnesses.push(h);
  const first = await h.rawRequest({ v: 1, op: 'token', profile: 'wide' });
  assert.equal(first.ok, true, JSON.stringify(first));
  assert.ok(JSON.stringify(first).length > 1100, `a reply of ${JSON.stringify(first).length} bytes`);
  await pipelined(h, 'wide');
});
