'use strict';
// The broker's mail spool (docs/mail-spool.md, reliability.md P13): mail.submit under the
// policy, the spool's limits, durable files only the broker reads, delivery through
// [mail] deliver_helper (here fake-deliver.js, a test double with a plan of results), backoff,
// the failed area, the administrator's queue operations, restarts, and kills during delivery.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { setup, waitFor, waitExit, sleep, RawClient } = require('./harness');

const FAKE = path.join(__dirname, 'fake-deliver.js');
const FAULTS = process.env.CREDBROKER_FAULT_POINTS === '1';
const envs = [];
after(async () => {
  for (const h of envs) {
    await h.teardown().catch(() => {});
    if (h.fakeDir) fs.rmSync(h.fakeDir, { recursive: true, force: true });
  }
});

function message(tag, bytes = 0) {
  const body = 'x'.repeat(bytes);
  return Buffer.from(`From: alerts@contoso.com\r\nTo: ops@contoso.com\r\nSubject: ${tag}\r\n` +
    `Message-ID: <${tag}@test>\r\n\r\nbody of ${tag}\r\n${body}`);
}

// A fresh environment with the fake helper and its plan; mail: extra [mail] keys.
async function spoolEnv({ plan = {}, mail = {}, profiles, brokerEnv = {} } = {}) {
  const fakeDir = fs.mkdtempSync('/tmp/credbroker-fake-');
  fs.writeFileSync(path.join(fakeDir, 'plan.json'), JSON.stringify(plan));
  const h = await setup({
    profiles,
    brokerEnv: { FAKE_DELIVER_DIR: fakeDir, ...brokerEnv },
    config: {
      mail: {
        deliver_helper: FAKE,
        retry_min: '1',
        retry_max: '4',
        scan_interval: '1',
        ...mail,
      },
    },
  });
  envs.push(h);
  h.fakeDir = fakeDir;
  return h;
}

function setPlan(h, plan) {
  fs.writeFileSync(path.join(h.fakeDir, 'plan.json'), JSON.stringify(plan));
}

function sent(h) {
  const dir = path.join(h.fakeDir, 'sent');
  return fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f))) : [];
}

function attempts(h) {
  const d = path.join(h.fakeDir, 'attempts');
  return fs.existsSync(d) ? fs.readdirSync(d).length : 0;
}

// mail.submit, chunks of at most 48 KiB of base64, mail.commit: the replies.
async function submit(h, msg, { profile = 'alerts', size = msg.length, recipients = 1 } = {}) {
  const c = await new RawClient(h.socket).connect();
  try {
    const begin = await c.request({ v: 1, op: 'mail.submit', profile, size, recipients,
      message_id: `<${msg.toString().match(/Subject: (\S+)/)[1]}@test>` });
    if (!begin.ok) return { begin };
    for (let off = 0; off < msg.length; off += 36864) {
      const chunk = await c.request({ v: 1, op: 'mail.chunk', data: msg.subarray(off, off + 36864).toString('base64') });
      if (!chunk.ok) return { begin, chunk };
    }
    const commit = await c.request({ v: 1, op: 'mail.commit' }, 30000);
    return { begin, commit };
  } finally {
    c.close();
  }
}

function spoolDir(h) {
  return h.configValue('mail', 'spool_dir');
}

function files(h, sub) {
  const d = path.join(spoolDir(h), sub);
  return fs.existsSync(d) ? fs.readdirSync(d) : [];
}

// queue.list, page by page (a reply holds at most 100 messages).
async function queue(h) {
  const all = [];
  for (;;) {
    const r = await h.adminRequest({ op: 'queue.list', offset: all.length });
    assert.equal(r.ok, true, JSON.stringify(r));
    all.push(...r.messages);
    if (r.messages.length === 0 || all.length >= r.total) return all;
  }
}

// Until id is in failed/ and the queue says so. The file is renamed there off the event loop, and
// the queue says "failed" once the move is durable (both directories synced), a moment later.
async function failedFor(h, id, opts) {
  await waitFor('failed/', () => files(h, 'failed').includes(id), opts);
  await waitFor('the queue to say failed', async () => (await queue(h)).find((m) => m.id === id).state === 'failed');
}

test('a submitted message is durable, private, audited, and delivered once', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { default: 'sent' } });
  const msg = message('first', 100000);
  const { begin, commit } = await submit(h, msg, { recipients: 3 });
  assert.equal(begin.ok, true, JSON.stringify(begin));
  assert.equal(commit.ok, true, JSON.stringify(commit));
  assert.match(commit.queue_id, /^[0-9a-f]{24}$/);
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 15000 });
  assert.deepEqual(sent(h)[0], msg, 'the helper read the message byte-exact from fd 3');
  await waitFor('the file to go', () => files(h, 'inflight').length === 0 && files(h, 'queue').length === 0);
  for (const sub of ['queue', 'inflight', 'failed', 'tmp']) {
    const st = fs.statSync(path.join(spoolDir(h), sub));
    assert.equal(st.mode & 0o777, 0o700, `${sub}/ is 0700`);
  }
  const tokens = fs.readFileSync(path.join(h.fakeDir, 'tokens.log'), 'utf8').trim().split('\n').map(JSON.parse);
  assert.equal(tokens[0].has_token, true, 'the helper got a token on stdin');
  assert.equal(typeof tokens[0].graph, 'string');
  assert.equal(tokens[0].delegated, true, 'the test account is a refresh-token (delegated) one');
  const audit = h.auditLines();
  const queued = audit.find((r) => r.event === 'mail.queued');
  assert.ok(queued, 'mail.queued audited');
  assert.equal(queued.queue_id, commit.queue_id);
  assert.equal(queued.message_id, '<first@test>');
  assert.equal(queued.n_recipients, 3);
  assert.equal(queued.size, msg.length);
  assert.equal(queued.peer.uid, process.getuid());
  await waitFor('mail.sent audited', () => h.auditLines().some((r) => r.event === 'mail.sent' && r.queue_id === commit.queue_id));
  await sleep(1500);
  assert.equal(attempts(h), 1, 'one attempt, one delivery');
});

test('the token reply names delegated and the CA bundle; token.drop is bounded', { timeout: 60000 }, async () => {
  const h = await spoolEnv();
  const t1 = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(t1.ok, true);
  assert.equal(t1.delegated, true);
  assert.equal(t1.ca_file, h.configValue('identity', 'ca_bundle'));
  const drop = (token) => h.rawRequest({ v: 1, op: 'token.drop', profile: 'alerts', access_token: token });
  assert.equal((await drop('not-the-token')).dropped, false, 'another token is not dropped');
  assert.equal((await drop(t1.access_token)).dropped, true, 'the cached token is dropped');
  const t2 = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.notEqual(t2.access_token, t1.access_token, 'a fresh token after the drop');
  assert.equal((await drop(t2.access_token)).dropped, false, 'a second drop within a minute is refused');
  const t3 = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(t3.access_token, t2.access_token, 'so the token stays cached');
  const records = h.auditLines().filter((r) => r.event === 'token.drop');
  assert.deepEqual(records.map((r) => r.reason), ['not cached', 'dropped', 'bounded: one drop per account a minute']);
  assert.ok(!h.auditText().includes(t1.access_token), 'no token in the audit log');
});

test('policy denial, full spool, per-uid budget', { timeout: 60000 }, async () => {
  const h = await spoolEnv({
    plan: { default: 'temporary' },
    mail: { max_spool_mb: '3', max_uid_mb: '2', retry_min: '600', retry_max: '600' },
    profiles: {
      alerts: { account: 'alerts', scopes: ['https://graph.microsoft.com/Mail.Send'], rules: ['peer required uid root'] },
      other: { account: 'alerts', scopes: ['https://graph.microsoft.com/Mail.Send'], rules: ['peer required uid 4242'] },
    },
  });
  const denied = await submit(h, message('denied'), { profile: 'other' });
  assert.equal(denied.begin.error, 'denied');
  assert.ok(h.auditLines().some((r) => r.event === 'deny' && r.profile === 'other'));
  const big = await submit(h, message('big'), { size: 4 * 1024 * 1024 });
  assert.equal(big.begin.error, 'unavailable');
  assert.equal(big.begin.message, 'The spool is full; try again later.');
  const one = await submit(h, message('one', 1500000));
  assert.equal(one.commit.ok, true, JSON.stringify(one));
  const two = await submit(h, message('two', 1000000));
  assert.equal(two.begin.error, 'unavailable', 'over the uid budget of 2 MB');
  assert.match(two.begin.message, /full for this user/);
  const short = await submit(h, message('short'), { size: 1000 });
  assert.equal(short.commit.error, 'bad_request', 'fewer bytes than announced');
  const long = await submit(h, message('long'), { size: 10 });
  assert.equal(long.chunk.error, 'bad_request', 'more bytes than announced');
  assert.equal(long.chunk.message, 'More data than the size announced.');
  const c = await new RawClient(h.socket).connect();
  assert.equal((await c.request({ v: 1, op: 'mail.chunk', data: 'AAAA' })).error, 'bad_request', 'a chunk without submit');
  assert.equal((await c.request({ v: 1, op: 'mail.commit' })).error, 'bad_request', 'a commit without submit');
  await c.request({ v: 1, op: 'mail.submit', profile: 'alerts', size: 3, recipients: 1 });
  assert.equal((await c.request({ v: 1, op: 'mail.chunk', data: 'not base64!' })).error, 'bad_request', 'bad base64');
  assert.equal((await c.request({ v: 1, op: 'mail.chunk', data: 'A'.repeat(49156) })).error, 'bad_request', 'a chunk over 48 KiB');
  assert.equal(files(h, 'tmp').length, 1, 'the open submission has its file');
  c.close();
  await waitFor('closing the connection to abandon the submission', () => files(h, 'tmp').length === 0);
});

test('temporary failures back off (1 s doubling), then the message goes', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { results: ['temporary', 'temporary', 'temporary'], default: 'sent' } });
  const t0 = Date.now();
  const { commit } = await submit(h, message('backoff'));
  assert.equal(commit.ok, true);
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 30000 });
  const elapsed = Date.now() - t0;
  // waits 1 + 2 + 4 s; the tick runs once a second
  assert.ok(elapsed >= 7000, `backoff of 1+2+4 s took ${elapsed} ms`);
  assert.equal(attempts(h), 4);
  const deferred = h.auditLines().filter((r) => r.event === 'mail.deferred');
  assert.equal(deferred.length, 3, 'every deferral audited');
});

test('a permanent failure goes to failed/ at once; past its lifetime a message fails too', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { results: ['permanent'], default: 'temporary', reason: 'Graph said no' }, mail: { lifetime: '3' } });
  const perm = await submit(h, message('perm'));
  await failedFor(h, perm.commit.queue_id);
  let list = await queue(h);
  assert.equal(list.find((m) => m.id === perm.commit.queue_id).state, 'failed');
  const metrics = await h.adminRequest({ op: 'metrics' });
  assert.equal(metrics.mail_spool.failed, 1, 'the metrics count the failed message');
  const prom = await h.cli(['status', '--prometheus', '--admin-socket', h.adminSocket]);
  assert.match(prom.stdout, /credbroker_mail_spool_messages\{state="failed"\} 1\n/);
  assert.match(prom.stdout, /credbroker_mail_spool_oldest_age_seconds \d+\n/);
  assert.equal(list.find((m) => m.id === perm.commit.queue_id).reason, 'Graph said no');
  const old = await submit(h, message('old'));
  await failedFor(h, old.commit.queue_id, { timeoutMs: 20000 });
  list = await queue(h);
  assert.match(list.find((m) => m.id === old.commit.queue_id).reason, /lifetime/);
  assert.equal(sent(h).length, 0);
  const failed = h.auditLines().filter((r) => r.event === 'mail.failed');
  assert.equal(failed.length, 2);
  const del = await h.adminRequest({ op: 'queue.delete', id: perm.commit.queue_id });
  assert.equal(del.ok, true);
  await waitFor('the file to go', () => !files(h, 'failed').includes(perm.commit.queue_id));
});

test('the queue survives a restart; show, flush and delete', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { default: 'temporary' }, mail: { retry_min: '600', retry_max: '600' } });
  const a = await submit(h, message('keep'));
  const b = await submit(h, message('drop'));
  await waitFor('two attempts', () => attempts(h) === 2);
  await h.restartBroker();
  const list = await queue(h);
  assert.deepEqual(list.map((m) => m.id).sort(), [a.commit.queue_id, b.commit.queue_id].sort());
  // A restarted broker tries its queue again at once: a message may be sending for a moment.
  let figures;
  await waitFor('two waiting after the restart', async () => {
    figures = (await h.adminRequest({ op: 'metrics' })).mail_spool;
    return figures.queued + figures.deferred === 2;
  });
  assert.ok(figures.oldest_age_seconds >= 0);
  const show = await h.adminRequest({ op: 'queue.show', id: a.commit.queue_id });
  assert.equal(show.message.message_id, '<keep@test>');
  assert.equal((await h.adminRequest({ op: 'queue.show', id: '0'.repeat(24) })).error, 'not_found');
  // Refused ("unavailable") while that attempt is sending it; any other answer is final.
  let del;
  await waitFor('a delete not refused as sending', async () => {
    del = await h.adminRequest({ op: 'queue.delete', id: b.commit.queue_id });
    return del.error !== 'unavailable';
  });
  assert.equal(del.ok, true, JSON.stringify(del));
  setPlan(h, { default: 'sent' });
  const flushed = await h.adminRequest({ op: 'queue.flush' });
  assert.equal(flushed.ok, true);
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 15000 });
  assert.match(sent(h)[0].toString(), /Subject: keep/);
  await waitFor('an empty queue', async () => (await queue(h)).length === 0);
});

test('a Graph 401 drops the token and retries once at once', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { results: ['token_rejected'], default: 'sent' } });
  await submit(h, message('tok'));
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 10000 });
  const tokens = fs.readFileSync(path.join(h.fakeDir, 'tokens.log'), 'utf8').trim().split('\n').map(JSON.parse);
  assert.equal(tokens.length, 2);
  assert.notEqual(tokens[0].token, tokens[1].token, 'the retry used a fresh token');
  assert.equal(h.auditLines().filter((r) => r.event === 'mail.deferred').length, 0, 'no backoff for it');
});

for (const point of ['spool-after-inflight', 'spool-after-sent']) {
  test(`SIGKILL at ${point}: never sent twice, held and reported`, { timeout: 60000, skip: !FAULTS && 'needs -Dfault_points=true' }, async () => {
    const h = await spoolEnv({ plan: { default: 'sent' }, brokerEnv: { CREDBROKER_FAULT: point } });
    const proc = h.broker.proc;
    const keep = setInterval(() => {}, 1000);
    const { commit } = await submit(h, message('crash'));
    assert.equal(commit.ok, true);
    const exit = await waitExit(proc);
    clearInterval(keep);
    assert.equal(exit.signal, 'SIGKILL');
    h.broker = null;
    const before = sent(h).length;
    assert.equal(before, point === 'spool-after-sent' ? 1 : 0);
    h.opts.brokerEnv = { FAKE_DELIVER_DIR: h.fakeDir };
    await h.startBroker();
    await sleep(2500);
    assert.equal(sent(h).length, before, 'not sent again after the restart');
    const list = await queue(h);
    assert.equal(list.length, 1);
    assert.equal(list[0].state, 'held');
    assert.match(list[0].reason, /may have been sent/);
    assert.ok(h.auditLines().some((r) => r.event === 'mail.held'));
    // The administrator decides: flush sends it (again).
    await h.adminRequest({ op: 'queue.flush', id: list[0].id });
    await waitFor('the delivery', () => sent(h).length === before + 1, { timeoutMs: 10000 });
  });
}

test('SIGKILL during commit: a message is queued or not, never half', { timeout: 60000, skip: !FAULTS && 'needs -Dfault_points=true' }, async () => {
  for (const point of ['spool-commit-before-rename', 'spool-commit-after-fsync']) {
    const h = await spoolEnv({ plan: { default: 'sent' }, brokerEnv: { CREDBROKER_FAULT: point } });
    const proc = h.broker.proc;
    const keep = setInterval(() => {}, 1000);
    const r = await submit(h, message('commit')).catch((e) => ({ error: e.message }));
    await waitExit(proc);
    clearInterval(keep);
    h.broker = null;
    assert.ok(!r.commit || !r.commit.ok, 'no commit was answered before the kill');
    h.opts.brokerEnv = { FAKE_DELIVER_DIR: h.fakeDir };
    await h.startBroker();
    if (point === 'spool-commit-after-fsync') {
      // durable but unanswered: the client retries, so this is the documented duplicate window
      await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 10000 });
    } else {
      await sleep(2000);
      assert.equal(sent(h).length, 0, 'an unrenamed file is not queued');
      assert.deepEqual(files(h, 'tmp'), [], 'tmp/ is cleaned at start');
    }
  }
});

test('the maildrop is taken under the owner uid\'s policy decision', { timeout: 60000 }, async () => {
  const h = await spoolEnv({
    plan: { default: 'sent' },
    profiles: {
      alerts: { account: 'alerts', scopes: ['https://graph.microsoft.com/Mail.Send'], rules: ['peer required uid root'] },
      other: { account: 'alerts', scopes: ['https://graph.microsoft.com/Mail.Send'], rules: ['peer required uid 4242'] },
    },
  });
  const drop = h.configValue('mail', 'maildrop_dir');
  fs.mkdirSync(drop, { recursive: true });
  const deniedName = `${process.getuid()}.2`;
  fs.writeFileSync(path.join(drop, deniedName), Buffer.concat([Buffer.from('{"v":1,"profile":"other"}\n'), message('notmine')]));
  const msg = message('dropped');
  fs.writeFileSync(path.join(drop, `.tmp-${process.getuid()}.1`), Buffer.concat([Buffer.from('{"v":1,"profile":"alerts"}\n'), msg]));
  fs.renameSync(path.join(drop, `.tmp-${process.getuid()}.1`), path.join(drop, `${process.getuid()}.1`));
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 15000 });
  assert.deepEqual(sent(h)[0], msg);
  await waitFor('the drop file to go', () => fs.readdirSync(drop).length === 1);
  assert.deepEqual(fs.readdirSync(drop), [deniedName], 'a file whose owner may not use its profile stays');
  assert.ok(h.auditLines().some((r) => r.event === 'deny' && r.profile === 'other' && /maildrop/.test(r.reason)));
  assert.equal(sent(h).length, 1);
});

const HELPER = process.env.CREDBROKER_SUBMIT_HELPER;
const { run } = require('./harness');

test('libcredbroker: credbroker_mail_submit and credbroker_token_drop; credbroker queue', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { default: 'temporary' }, mail: { retry_min: '600', retry_max: '600' } });
  const msg = message('viaLib', 200000); // several chunks
  const file = h.p('msg.eml');
  fs.writeFileSync(file, msg);
  const r = await run(HELPER, ['submit', h.socket, 'alerts', file, '<viaLib@test>', '2']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const id = r.stdout.trim();
  assert.match(id, /^[0-9a-f]{24}$/);
  await waitFor('the attempt', () => h.auditLines().some((rec) => rec.event === 'mail.deferred'));
  const list = await h.cli(['queue', 'list', '--admin-socket', h.adminSocket]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`${id} +queued +${msg.length} .* alerts +1 <viaLib@test>\\n    fake temporary`));
  const show = await h.cli(['queue', 'show', id, '--admin-socket', h.adminSocket]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /recipients +2/);
  assert.match(show.stdout, /next_attempt +\d{4}-/);
  assert.equal((await h.cli(['queue', 'show', '--admin-socket', h.adminSocket])).code, 64, 'show needs an id');
  assert.equal((await h.cli(['queue', 'frob', '--admin-socket', h.adminSocket])).code, 64);
  const missing = await h.cli(['queue', 'delete', 'f'.repeat(24), '--admin-socket', h.adminSocket]);
  assert.notEqual(missing.code, 0);
  setPlan(h, { default: 'sent' });
  const flush = await h.cli(['queue', 'flush', '--admin-socket', h.adminSocket]);
  assert.equal(flush.code, 0, flush.stderr);
  assert.match(flush.stdout, /1 message due now/);
  await waitFor('the delivery', () => sent(h).length === 1);
  assert.deepEqual(sent(h)[0], msg, 'chunked through the library byte-exact');
  const empty = await h.cli(['queue', '--admin-socket', h.adminSocket]);
  await waitFor('an empty queue', async () => /empty/.test((await h.cli(['queue', '--admin-socket', h.adminSocket])).stdout));
  assert.equal(empty.code, 0);

  const denied = await run(HELPER, ['submit', h.socket, 'nosuch', file, '<x@test>', '1']);
  assert.equal(denied.code, 1);
  assert.match(denied.stdout, /unknown_profile/);

  const t = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  const drop = await run(HELPER, ['drop', h.socket, 'alerts', t.access_token]);
  assert.equal(drop.code, 0, drop.stdout);
  assert.ok(h.auditLines().some((rec) => rec.event === 'token.drop' && rec.reason === 'dropped'));
});

test('the CLI\'s maildrop writer, then the broker takes the file', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { default: 'sent' } });
  const drop = h.configValue('mail', 'maildrop_dir');
  fs.mkdirSync(drop, { recursive: true });
  const msg = message('viaDrop', 1000);
  const file = h.p('drop.eml');
  fs.writeFileSync(file, msg);
  await h.stopBroker();
  const r = await run(HELPER, ['maildrop', drop, 'alerts', file]);
  assert.equal(r.code, 0, r.stdout);
  const names = fs.readdirSync(drop);
  assert.equal(names.length, 1);
  assert.match(names[0], new RegExp(`^${process.getuid()}\\.[0-9a-f]{16}$`));
  assert.equal(fs.statSync(path.join(drop, names[0])).mode & 0o777, 0o640);
  await h.startBroker();
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 15000 });
  assert.deepEqual(sent(h)[0], msg);
  assert.deepEqual(fs.readdirSync(drop), []);
  const queued = h.auditLines().find((rec) => rec.event === 'mail.queued');
  assert.equal(queued.reason, 'maildrop');
  assert.equal(queued.peer.uid, process.getuid());
});

// P13 under random kill -9: messages are submitted while the broker is SIGKILLed at random
// moments and started again; the fake helper takes a little while per delivery (and, orphaned,
// finishes what it started). In the end no message was delivered twice, every message whose
// commit was answered is delivered or still reported by queue.list (held: "may have been sent"),
// and none is lost.
test('random SIGKILLs while mail flows: never twice, never lost', { timeout: 170000 }, async (t) => {
  const h = await spoolEnv({ plan: { default: 'sent', sleep_ms: 150 }, mail: { concurrency: '4', rate_per_minute: '100000' } });
  const committed = new Set();
  const tried = new Set();
  let kills = 0;
  let seq = 0;
  for (let round = 0; round < 15; round++) {
    const proc = h.broker.proc;
    const keep = setInterval(() => {}, 1000);
    const killAt = Date.now() + 100 + Math.floor(Math.random() * 900);
    const submitting = (async () => {
      for (let i = 0; i < 8 && Date.now() < killAt + 200; i++) {
        const tag = `m${seq++}`;
        tried.add(tag);
        const r = await submit(h, message(tag)).catch(() => null);
        if (r && r.commit && r.commit.ok) committed.add(tag);
        if (!r) break;
        await sleep(40);
      }
    })();
    await sleep(Math.max(0, killAt - Date.now()));
    proc.kill('SIGKILL');
    await waitExit(proc);
    clearInterval(keep);
    kills++;
    h.broker = null;
    await submitting;
    await h.startBroker();
  }
  // Let everything that can go, go.
  await waitFor('the queue to settle', async () => (await queue(h)).every((m) => m.state === 'held' || m.state === 'failed'), { timeoutMs: 60000, intervalMs: 500 })
    .catch(async (e) => {
      const states = {};
      for (const m of await queue(h)) states[`${m.state} ${m.reason || ''}`] = (states[`${m.state} ${m.reason || ''}`] || 0) + 1;
      throw new Error(`${e.message}: ${JSON.stringify(states)}\n${h.brokerLog().slice(-3000)}`);
    });
  await sleep(1000); // orphaned helpers of the last kill
  const delivered = new Map();
  for (const m of sent(h)) {
    const tag = m.toString().match(/Subject: (\S+)/)[1];
    delivered.set(tag, (delivered.get(tag) || 0) + 1);
  }
  const list = await queue(h);
  const listed = new Set(list.map((m) => m.message_id.replace(/^<|@test>$/g, '')));
  const twice = [...delivered].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], 'no message delivered twice');
  const lost = [...committed].filter((tag) => !delivered.has(tag) && !listed.has(tag));
  assert.deepEqual(lost, [], 'every committed message is delivered or reported');
  for (const tag of delivered.keys()) assert.ok(tried.has(tag));
  const held = list.filter((m) => m.state === 'held').length;
  t.diagnostic(`kills ${kills}, submitted ${tried.size}, committed ${committed.size}, delivered ${delivered.size}, held ${held}, failed ${list.length - held}`);
  assert.ok(committed.size >= 15, `enough mail flowed (${committed.size})`);
});

test('a large message through libcredbroker within a small request budget', { timeout: 90000 }, async () => {
  const h = await spoolEnv({
    plan: { default: 'sent' },
    profiles: {
      alerts: { account: 'alerts', scopes: ['https://graph.microsoft.com/Mail.Send'], rules: ['peer required uid 65534'] },
    },
  });
  await h.stopBroker();
  h.opts.config.broker = { request_rate_per_uid: '20', request_burst_per_uid: '20' };
  h.writeConfig();
  await h.startBroker();
  const msg = message('large', 3 * 1024 * 1024); // 86 chunks: beyond the burst of 20 (root is exempt: nobody)
  const file = h.p('large.eml');
  fs.writeFileSync(file, msg, { mode: 0o644 });
  const t0 = Date.now();
  const r = await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', HELPER,
    'submit', h.socket, 'alerts', file, '<large@test>', '1'], { timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  await waitFor('the delivery', () => sent(h).length === 1, { timeoutMs: 15000 });
  assert.deepEqual(sent(h)[0], msg, 'byte-exact after rate-limited chunks were sent again');
  assert.ok(Date.now() - t0 >= 2000, 'the budget did slow it down');
  assert.ok(h.auditText().includes('request budget of the uid exhausted'), 'the budget was hit');
});

test('SIGTERM during a delivery waits for its result: sent, not held', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { default: 'sent', sleep_ms: 1500 } });
  const { commit } = await submit(h, message('term'));
  assert.equal(commit.ok, true);
  await waitFor('the delivery to start', () => attempts(h) === 1);
  const stopped = await h.stopBroker();
  assert.equal(stopped.code, 0, stopped.stderr.slice(-2000));
  assert.equal(sent(h).length, 1);
  assert.deepEqual(files(h, 'inflight'), [], 'settled before the broker exited');
  await h.startBroker();
  assert.deepEqual(await queue(h), [], 'nothing held');
  await sleep(1500);
  assert.equal(sent(h).length, 1, 'and not sent again');
});

test('failed messages keep their room until deleted; the message count is bounded', { timeout: 60000 }, async () => {
  const h = await spoolEnv({ plan: { default: 'permanent' }, mail: { max_spool_mb: '1', max_messages: '3' } });
  const a = await submit(h, message('fail1', 600000));
  assert.equal(a.commit.ok, true);
  await failedFor(h, a.commit.queue_id);
  const b = await submit(h, message('fail2', 600000));
  assert.equal(b.begin.error, 'unavailable', 'failed/ still counts');
  assert.equal((await h.adminRequest({ op: 'queue.delete', id: a.commit.queue_id })).ok, true);
  await waitFor('the file to go', () => !files(h, 'failed').includes(a.commit.queue_id));
  // The room comes back when the loop has taken the finished move (its mail.deleted record),
  // which may be a moment after the file went.
  await waitFor('mail.deleted', () => h.auditText().includes('"event":"mail.deleted"'));
  const c = await submit(h, message('fail3', 600000));
  assert.equal(c.commit.ok, true, 'room again once deleted');
  for (const tag of ['s1', 's2']) assert.equal((await submit(h, message(tag))).commit.ok, true);
  const d = await submit(h, message('s3'));
  assert.equal(d.begin.error, 'unavailable', 'max_messages');
  const conn = await new RawClient(h.socket).connect();
  const r = await conn.request({ v: 1, op: 'mail.submit', profile: 'alerts', size: 3, recipients: 1, message_id: '<a\nb@x>' });
  conn.close();
  assert.equal(r.error, 'bad_request', 'a Message-ID with a control character');
});
