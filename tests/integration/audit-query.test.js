'use strict';
// credbroker audit and audit summary (issue 12 item 5): synthetic v1 logs with rotated and
// compressed predecessors, then one real broker's records.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawn } = require('node:child_process');
const { setup, run, waitFor, CREDBROKER } = require('./harness');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credbroker-audit-query-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const ZERO = '0'.repeat(64);
const BOOT = '0123456789abcdef0123456789abcdef';
const ALICE = { uid: 0, gid: 0, pid: 100, exe: '/usr/bin/mailer', unit: 'mailer.service' };
const NOBODY = { uid: 65534, gid: 65534, pid: 200, exe: null, unit: null };
// A path longer than the table's EXE column: the table shows its tail.
const UNNAMED = { uid: 4242, gid: 4242, pid: 300, exe: '/opt/vendor/monitoring-agent/libexec/app-run', unit: null };

let seq = 0;
function rec(time, fields) {
  return JSON.stringify({ v: 1, seq: seq++, time, boot_id: BOOT, prev: ZERO, ...fields });
}
const issue = (time, peer, profile, account = 'alerts') => rec(time, {
  event: 'issue', peer, profile, account, scopes: ['https://graph.microsoft.com/Mail.Send'],
  decision: 'allow', rule: `${profile}:5`, token_fingerprint: 'b9c12f14b3a2f68f', expires_at: 1795863744,
});
const deny = (time, peer, profile, reason, extra = {}) => rec(time, {
  event: 'deny', peer, profile, account: 'alerts', scopes: [], decision: 'deny', rule: `${profile}:7`, reason, ...extra,
});

// Rotated oldest first: audit.log.3.gz (November), audit.log.2.gz, audit.log.1, audit.log (December).
const files = {
  'audit.log.3.gz': [
    rec('2026-11-01T09:00:00.000Z', { event: 'genesis', log_id: 'a'.repeat(32), key: 'credbroker-audit+00000000+AQ==' }),
    issue('2026-11-01T09:00:01.000Z', ALICE, 'alerts'),
    issue('2026-11-02T09:00:00.000Z', ALICE, 'alerts'),
  ],
  'audit.log.2.gz': [
    rec('2026-11-15T00:00:00.000Z', { event: 'file.start', log_id: 'a'.repeat(32), checkpoint: 'note' }),
    issue('2026-11-15T10:00:00.000Z', UNNAMED, 'payroll', 'payroll'),
    rec('2026-11-20T10:00:00.000Z', { event: 'refresh_failed', account: 'payroll', scopes: [], error: 'the identity provider did not answer in time' }),
  ],
  'audit.log.1': [
    rec('2026-12-01T00:00:00.000Z', { event: 'file.start', log_id: 'a'.repeat(32), checkpoint: 'note' }),
    deny('2026-12-02T10:00:00.000Z', NOBODY, 'alerts', 'required rule failed'),
    deny('2026-12-02T10:00:10.000Z', NOBODY, 'alerts', 'required rule failed',
      { count: 41, first: '2026-12-02T10:00:01.000Z', last: '2026-12-02T10:00:09.000Z' }),
    rec('2026-12-02T11:00:00.000Z', { event: 'reauth_required', account: 'payroll', scopes: [], reason: 'interrupted_refresh', generation: 3 }),
  ],
  'audit.log': [
    rec('2026-12-04T00:00:00.000Z', { event: 'file.start', log_id: 'a'.repeat(32), checkpoint: 'note' }),
    issue('2026-12-04T10:00:00.000Z', ALICE, 'alerts'),
    issue('2026-12-04T10:30:00.000Z', UNNAMED, 'payroll', 'payroll'),
    'this line is not JSON',
    deny('2026-12-04T11:00:00.000Z', UNNAMED, 'alerts', 'rate limit reached', { decision: 'rate_limited' }),
    rec('2026-12-04T12:00:00.000Z', { event: 'checkpoint', log_id: 'a'.repeat(32), count: 17, head: ZERO, note: 'n' }),
  ],
};
const ALL = Object.values(files).flat().filter((l) => l.startsWith('{'));
for (const [name, lines] of Object.entries(files)) {
  const text = lines.join('\n') + '\n';
  fs.writeFileSync(path.join(dir, name), name.endsWith('.gz') ? zlib.gzipSync(text) : text);
}
const LOG = path.join(dir, 'audit.log');
const CONF = path.join(dir, 'credbroker.conf');
fs.writeFileSync(CONF, `[broker]\naudit_log = ${LOG}\n`);

const ENV = { ...process.env, TZ: 'UTC' };
delete ENV.CREDBROKER_CONFIG;
function audit(args, env = {}) {
  return run(CREDBROKER, ['audit', ...args], { env: { ...ENV, ...env } });
}
async function jsonOf(args) {
  const r = await audit(['--json', '--config', CONF, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('--json gives every record of every file, oldest first, as written', async () => {
  const r = await audit(['--json', '--config', CONF]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean), ALL);
  // The malformed line: one warning naming file:line, and nothing else on stderr.
  assert.equal(r.stderr, `credbroker: ${LOG}:4: not an audit record, skipped\n`);
});

test('CREDBROKER_CONFIG names the configuration too', async () => {
  const r = await audit(['--json'], { CREDBROKER_CONFIG: CONF });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split('\n').filter(Boolean).length, ALL.length);
});

test('the table: local time, user name or uid, exe, profile, account, outcome, rule', async () => {
  const r = await audit(['--config', CONF]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter(Boolean);
  assert.match(lines[0], /^TIME\s+USER\s+EXE\s+PROFILE\s+ACCOUNT\s+OUTCOME\s+RULE$/);
  assert.equal(lines.length, ALL.length + 1);
  assert.match(r.stdout, /^2026-11-01 09:00:01\s+root\s+\/usr\/bin\/mailer\s+alerts\s+alerts\s+allow\s+alerts:5$/m);
  assert.match(r.stdout, /^2026-11-15 10:00:00  4242        \.\.\.ing-agent\/libexec\/app-run  payroll       payroll       allow           payroll:5$/m);
  // Every row's columns line up with the header's, whatever the executable's length.
  const at = lines[0].indexOf('PROFILE');
  for (const l of lines.slice(1)) assert.match(l.slice(at - 2, at + 1), /^  \S$/, l);
  assert.match(r.stdout, /^2026-12-02 10:00:10\s+nobody\s+-\s+alerts\s+alerts\s+deny x41\s+alerts:7$/m);
  assert.match(r.stdout, /^2026-11-20 10:00:00\s+-\s+-\s+-\s+payroll\s+refresh_failed\s+-$/m);
  // Local time: the same record two hours later in a zone east of UTC.
  const tz = await audit(['--config', CONF, '--event', 'refresh_failed'], { TZ: 'Etc/GMT-2' });
  assert.match(tz.stdout, /^2026-11-20 12:00:00 /m);
});

test('each filter', async () => {
  const seqs = (recs) => recs.map((x) => x.seq);
  const by = (f) => seqs(ALL.map((l) => JSON.parse(l)).filter(f));
  assert.deepEqual(seqs(await jsonOf(['--profile', 'payroll'])), by((x) => x.profile === 'payroll'));
  assert.deepEqual(seqs(await jsonOf(['--account', 'payroll'])), by((x) => x.account === 'payroll'));
  assert.deepEqual(seqs(await jsonOf(['--event', 'deny'])), by((x) => x.event === 'deny'));
  assert.deepEqual(seqs(await jsonOf(['--uid', '4242'])), by((x) => x.peer && x.peer.uid === 4242));
  assert.deepEqual(seqs(await jsonOf(['--user', 'nobody'])), by((x) => x.peer && x.peer.uid === 65534));
  assert.deepEqual(seqs(await jsonOf(['--user', 'root', '--profile', 'alerts', '--event', 'issue'])),
    by((x) => x.peer && x.peer.uid === 0 && x.event === 'issue'));
  const bad = await audit(['--config', CONF, '--user', 'no-such-user-here']);
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /no such user/);
});

test('absolute times: dates, minutes, RFC 3339 with a zone; since inclusive, until exclusive', async () => {
  const times = async (args) => (await jsonOf(args)).map((x) => x.time);
  assert.deepEqual(await times(['--since', '2026-12-04', '--until', '2026-12-04T10:30']),
    ['2026-12-04T00:00:00.000Z', '2026-12-04T10:00:00.000Z']);
  assert.deepEqual(await times(['--since', '2026-12-02T11:00:00+01:00', '--until', '2026-12-02T10:00:10.001Z']),
    ['2026-12-02T10:00:00.000Z', '2026-12-02T10:00:10.000Z']);
  assert.deepEqual(await times(['--until', '2026-11-01T09:00:01Z']), ['2026-11-01T09:00:00.000Z']);
  for (const t of ['2026-02-30', 'yesterday', '2026-12-04T25:00', '10x']) {
    const r = await audit(['--config', CONF, '--since', t]);
    assert.equal(r.code, 64, `${t}: ${r.stderr}`);
    assert.match(r.stderr, /not a time/);
  }
});

test('relative times count back from now', async () => {
  const f = path.join(dir, 'recent.log');
  const ago = (s) => new Date(Date.now() - s * 1000).toISOString();
  fs.writeFileSync(f, [
    rec(ago(8 * 86400), { event: 'reauth_required', account: 'a' }),
    rec(ago(2 * 3600), { event: 'reauth_required', account: 'b' }),
    rec(ago(600), { event: 'reauth_required', account: 'c' }),
    rec(ago(30), { event: 'reauth_required', account: 'd' }),
  ].join('\n') + '\n');
  const accounts = async (args) => (await jsonOf([...args, f])).map((x) => x.account);
  assert.deepEqual(await accounts(['--since', '7d']), ['b', 'c', 'd']);
  assert.deepEqual(await accounts(['--since', '1h']), ['c', 'd']);
  assert.deepEqual(await accounts(['--since', '15m', '--until', '90s']), ['c']);
  assert.deepEqual(await accounts(['--since', '2w', '--until', '3h']), ['a']);
});

test('the summary: tokens per user and executable, denials by reason (aggregates counted), refresh failures, reauth', async () => {
  const r = await audit(['summary', '--json', '--config', CONF]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.records, ALL.length);
  assert.equal(s.first, '2026-11-01T09:00:00.000Z');
  assert.equal(s.last, '2026-12-04T12:00:00.000Z');
  const g = (account, profile) => s.groups.find((x) => x.account === account && x.profile === profile);
  assert.equal(s.groups.length, 3, JSON.stringify(s.groups));
  const alerts = g('alerts', 'alerts');
  assert.equal(alerts.tokens, 3);
  assert.deepEqual(alerts.users, { root: 3 });
  assert.deepEqual(alerts.executables, { '/usr/bin/mailer': 3 });
  assert.equal(alerts.denials, 1 + 41 + 1);
  assert.deepEqual(alerts.denials_by_reason, { 'required rule failed': 42, 'rate limit reached': 1 });
  assert.deepEqual(alerts.denials_by_user, { nobody: 42, 4242: 1 });
  const payroll = g('payroll', 'payroll');
  assert.equal(payroll.tokens, 2);
  assert.deepEqual(payroll.users, { 4242: 2 });
  assert.deepEqual(payroll.executables, { '/opt/vendor/monitoring-agent/libexec/app-run': 2 });
  const account = g('payroll', null);
  assert.equal(account.refresh_failed, 1);
  assert.equal(account.reauth_required, 1);

  const dec = JSON.parse((await audit(['summary', '--json', '--config', CONF, '--since', '2026-12-01'])).stdout);
  assert.equal(dec.groups.find((x) => x.profile === 'alerts').tokens, 1);
  assert.equal(dec.since, '2026-12-01T00:00:00.000Z');

  const text = await audit(['summary', '--config', CONF]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^Audit summary: \d+ records, 2026-11-01T09:00:00.000Z to 2026-12-04T12:00:00.000Z$/m);
  assert.match(text.stdout, /account alerts, profile alerts\n  tokens issued: 3\n    to users: root 3\n    to executables: \/usr\/bin\/mailer 3\n  denials: 43\n    by reason: required rule failed 42, rate limit reached 1\n/);
  assert.match(text.stdout, /account payroll, profile -\n[^]*refresh failures: 1\n[^]*reauthentication required: 1/);
});

test('a line longer than 65536 bytes and an unreadable file', async () => {
  const f = path.join(dir, 'long.log');
  fs.writeFileSync(f, `${rec('2026-12-05T00:00:00.000Z', { event: 'reauth_required', account: 'x'.repeat(70000) })}\n`
    + `${rec('2026-12-05T00:00:01.000Z', { event: 'reauth_required', account: 'short' })}\n`);
  const r = await audit(['--json', f]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, `credbroker: ${f}:1: line longer than 65536 bytes, skipped\n`);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l).account), ['short']);

  const locked = path.join(dir, 'locked.log');
  fs.writeFileSync(locked, 'x\n', { mode: 0o600 });
  const n = await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', CREDBROKER, 'audit', locked], { env: ENV });
  assert.equal(n.code, 77, n.stderr);
  assert.match(n.stderr, new RegExp(`cannot read ${locked}: Permission denied \\(the audit log is readable by root and the members of the configured audit_group\\)`));
});

test('-f follows appended lines and a rotation', { timeout: 30000 }, async () => {
  const fdir = fs.mkdtempSync(path.join(dir, 'follow-'));
  const live = path.join(fdir, 'audit.log');
  const line = (account) => rec(new Date().toISOString(), { event: 'reauth_required', account });
  fs.writeFileSync(live, `${line('one')}\n`);
  const child = spawn(CREDBROKER, ['audit', '-f', '--json', live], { env: ENV });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const accounts = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l).account);
  try {
    await waitFor('the first record', () => accounts().length === 1);
    fs.appendFileSync(live, `${line('two')}\n`);
    await waitFor('an appended record', () => accounts().length === 2);
    // Rotation as logrotate with the broker does it: rename, the old file gets its last
    // records, then a new file at the path.
    fs.renameSync(live, `${live}.1`);
    fs.appendFileSync(`${live}.1`, `${line('three')}\n`);
    fs.writeFileSync(live, `${line('four')}\n`);
    await waitFor('the rotated and the new file', () => accounts().length === 4);
    fs.appendFileSync(live, `${line('five')}\n`);
    await waitFor('a record appended to the new file', () => accounts().length === 5);
    assert.deepEqual(accounts(), ['one', 'two', 'three', 'four', 'five']);
    assert.equal(err, '');
  } finally {
    child.kill('SIGTERM');
  }
});

test('a real broker: an issued token and a denial appear in credbroker audit --json', { timeout: 60000 }, async () => {
  const h = await setup();
  try {
    const ok = await h.cli(['token', '-p', 'alerts']);
    assert.equal(ok.code, 0, ok.stderr);
    const denied = await h.cli(['token', '-p', 'alerts'], { asNobody: true });
    assert.equal(denied.code, 77, denied.stderr);
    const r = await run(CREDBROKER, ['audit', '--json', '--config', h.conf], { env: h.env() });
    assert.equal(r.code, 0, r.stderr);
    const recs = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.deepEqual(recs, h.auditLines());
    assert.ok(recs.some((x) => x.event === 'issue' && x.profile === 'alerts' && x.peer.uid === 0));
    assert.ok(recs.some((x) => x.event === 'deny' && x.profile === 'alerts' && x.peer.uid === 65534));
    const s = JSON.parse((await run(CREDBROKER, ['audit', 'summary', '--json', '--config', h.conf], { env: h.env() })).stdout);
    const g = s.groups.find((x) => x.profile === 'alerts');
    assert.ok(g.tokens >= 1 && g.denials >= 1, JSON.stringify(g));
  } finally {
    await h.teardown();
  }
});
