'use strict';
// Denials (P3) and the audit records of issues and denials (§8).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, CREDBROKER, MAIL_SEND } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(() => h && h.teardown());

const RFC3339_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

test('uid nobody is denied with exit 77 and nothing but "denied"', { timeout: 30000 }, async () => {
  const r = await h.cli(['token', '-p', 'alerts'], { asNobody: true });
  assert.equal(r.code, 77, `exit ${r.code}: ${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0], /denied/i);
  // Nothing about why: no rule, no file:line, no uid, no account, no reason.
  assert.doesNotMatch(r.stderr, /alerts:\d|rule|uid|root|account|required|policy/i);

  // The reply itself carries nothing more either.
  const reply = await h.rawRequestAsNobody({ v: 1, op: 'token', profile: 'alerts' });
  assert.deepEqual(Object.keys(reply).sort(), ['error', 'message', 'ok', 'v']);
  assert.equal(reply.ok, false);
  assert.equal(reply.error, 'denied');
  assert.doesNotMatch(reply.message, /alerts:\d|rule|uid|root|required/i);
});

test('the profiles op lists only what the peer may use', { timeout: 30000 }, async () => {
  const mine = await h.rawRequest({ v: 1, op: 'profiles' });
  assert.equal(mine.ok, true);
  assert.deepEqual(mine.profiles, ['alerts']);
  const nobodys = await h.rawRequestAsNobody({ v: 1, op: 'profiles' });
  assert.equal(nobodys.ok, true);
  assert.deepEqual(nobodys.profiles, []);
});

test('an unknown profile gives exit 78', { timeout: 30000 }, async () => {
  const r = await h.cli(['token', '-p', 'no-such-profile']);
  assert.equal(r.code, 78, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /unknown_profile/);
  assert.equal(r.stdout, '');
  const n = await h.cli(['token', '-p', 'no-such-profile'], { asNobody: true });
  assert.equal(n.code, 78, `exit ${n.code}: ${n.stderr}`);
});

test('the audit log has the issue and deny records with every field', { timeout: 30000 }, async () => {
  const cliIssue = await h.cli(['token', '-p', 'alerts']);
  assert.equal(cliIssue.code, 0, cliIssue.stderr);
  // An issue to a peer whose facts we know exactly: this very process.
  const reply = await h.rawRequest({ v: 1, op: 'token', profile: 'alerts' });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  const lines = h.auditLines();
  assert.ok(lines.length >= 4, `expected at least 4 audit records, got ${lines.length}`);

  // A genesis record first, seq 0, and v 1 on every record; seq increases by exactly one; time is
  // RFC 3339 UTC with milliseconds.
  assert.equal(lines[0].event, 'genesis');
  lines.forEach((l, i) => {
    assert.equal(l.v, 1);
    assert.equal(l.seq, i, `record ${i} has seq ${l.seq}`);
    assert.match(l.time, RFC3339_UTC_MS, `record ${l.seq} time ${l.time}`);
    assert.equal(typeof l.event, 'string');
  });
  for (let i = 1; i < lines.length; i++) {
    assert.ok(Date.parse(lines[i].time) >= Date.parse(lines[i - 1].time), 'time never goes back');
  }
  const now = Date.now();
  assert.ok(Math.abs(Date.parse(lines.at(-1).time) - now) < 60000, 'time is the current UTC time');

  const cliExe = fs.realpathSync(CREDBROKER);
  const issues = lines.filter((l) => l.event === 'issue');
  const denies = lines.filter((l) => l.event === 'deny');
  assert.ok(issues.length >= 1, 'an issue record');
  assert.ok(denies.length >= 2, 'deny records (policy and unknown profile)');

  const mine = issues.at(-1);
  // unit depends on where the tests run (null outside systemd); peer.test.js checks it.
  assert.ok(mine.peer.unit === null || /\.(service|scope)$/.test(mine.peer.unit), `unit ${mine.peer.unit}`);
  assert.deepEqual(mine.peer, {
    uid: process.getuid(), gid: process.getgid(), pid: process.pid, exe: fs.realpathSync(process.execPath),
    unit: mine.peer.unit,
  });
  for (const rec of issues) {
    assert.equal(rec.profile, 'alerts');
    assert.equal(rec.account, 'alerts');
    assert.deepEqual(rec.scopes, [MAIL_SEND]);
    assert.equal(rec.decision, 'allow');
    assert.equal(rec.rule, 'alerts:3', 'the rule is file:line of the deciding policy line');
    assert.match(rec.token_fingerprint, /^[0-9a-f]{16}$/);
    assert.ok(Number.isInteger(rec.expires_at) && rec.expires_at > now / 1000 && rec.expires_at < now / 1000 + 3700,
      `expires_at ${rec.expires_at}`);
    assert.equal(rec.peer.uid, 0);
    assert.ok(Number.isInteger(rec.peer.pid) && rec.peer.pid > 0);
    assert.equal(typeof rec.peer.exe, 'string');
    // The token itself never appears, only its fingerprint.
    assert.ok(!JSON.stringify(rec).includes(reply.access_token));
  }
  assert.ok(issues.some((r) => r.peer.exe === cliExe), `an issue record names the CLI ${cliExe}`);
  assert.equal(new Set(issues.map((r) => r.token_fingerprint)).size, 1, 'one cached token, one fingerprint');

  const policyDeny = denies.find((r) => r.profile === 'alerts');
  assert.ok(policyDeny, 'a deny record for profile alerts');
  assert.equal(policyDeny.peer.uid, 65534);
  assert.equal(policyDeny.peer.gid, 65534);
  assert.ok(Number.isInteger(policyDeny.peer.pid) && policyDeny.peer.pid > 0);
  assert.equal(policyDeny.peer.exe, cliExe);
  assert.equal(policyDeny.account, 'alerts');
  assert.deepEqual(policyDeny.scopes, [MAIL_SEND]);
  assert.equal(policyDeny.decision, 'deny');
  assert.equal(policyDeny.rule, 'alerts:3');
  assert.equal(policyDeny.token_fingerprint, undefined, 'a denial has no token');
  assert.equal(policyDeny.expires_at, undefined);

  const unknown = denies.find((r) => r.profile === 'no-such-profile');
  assert.ok(unknown, 'the unknown profile request is audited');
  assert.equal(unknown.decision, 'deny');
  assert.equal(unknown.token_fingerprint, undefined);
});

test('SIGHUP reloads the policy; a broken file keeps the previous policy and names file:line (P10)', { timeout: 30000 }, async () => {
  const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
  assert.equal((await h.rawRequestAsNobody(TOKEN)).error, 'denied');

  h.writePolicies({ alerts: { rules: ['peer sufficient uid root', 'peer sufficient uid nobody'] } });
  assert.equal(await h.reloadBroker(), 'reloaded');
  const before = h.auditLines().length;
  const allowed = await h.rawRequestAsNobody(TOKEN);
  assert.equal(allowed.ok, true, `after the reload: ${JSON.stringify(allowed)}`);
  // The reload's checkpoint, signed on the store worker, may land after the issue record.
  const issued = h.auditLinesAfter(before).filter((l) => l.event === 'issue' && l.peer.uid === 65534);
  assert.equal(issued.length, 1, JSON.stringify(issued));
  assert.equal(issued[0].rule, 'alerts:4', 'the rule that allowed it: file:line');

  h.writePolicies({ alerts: 'account alerts\nscope https://graph.microsoft.com/Mail.Send\npeer sufficient uid root\npeer bogus uid 0\n' });
  assert.equal(await h.reloadBroker(), 'failed');
  assert.match(h.brokerLog(), /alerts:4: .*control/, 'the log names file:line and the problem');
  const still = await h.rawRequestAsNobody(TOKEN);
  assert.equal(still.ok, true, `a broken reload must keep the working policy: ${JSON.stringify(still)}`);

  h.writePolicies({ alerts: { rules: ['peer required uid root'] } });
  assert.equal(await h.reloadBroker(), 'reloaded');
  assert.equal((await h.rawRequestAsNobody(TOKEN)).error, 'denied');
});
