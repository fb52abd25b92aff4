'use strict';
// Monitoring (docs/monitoring.md): the admin socket's metrics op counts tokens issued and denied by
// profile, unknown profiles, bad requests and the token endpoint's answers by class; `credbroker
// status --prometheus` prints them with every account's state and times in the Prometheus text
// format, which a strict reader (metrics-exposition.js) checks; --output writes the file
// atomically; a broker that cannot be reached still gives a valid file with credbroker_up 0.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, waitFor, MAIL_SEND } = require('./harness');
const { parse, value } = require('./metrics-exposition');

const HEAD = `account alerts\nscope ${MAIL_SEND}\n`;
const PROFILES = {
  alerts: `${HEAD}peer required uid root\n`,
  rated: `${HEAD}peer required uid root\nrequest required rate 1/hour per-uid\n`,
};
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

let h;
before(async () => {
  h = await setup({ profiles: PROFILES });
});
after(() => h && h.teardown());

async function prometheus(args = []) {
  const r = await h.cli(['status', '--prometheus', '--config', h.conf, ...args]);
  return { ...r, parsed: r.stdout ? parse(r.stdout) : null };
}

test('the strict reader refuses what the format forbids', () => {
  const good = '# HELP credbroker_a_total A.\n# TYPE credbroker_a_total counter\ncredbroker_a_total{p="x"} 1\n' +
    '# HELP credbroker_b B.\n# TYPE credbroker_b gauge\ncredbroker_b 0\n';
  assert.equal(value(parse(good), 'credbroker_a_total', { p: 'x' }), 1);
  const bad = {
    'no final line feed': good.slice(0, -1),
    'a sample without TYPE': 'credbroker_b 1\n',
    'TYPE without HELP': '# TYPE credbroker_b gauge\ncredbroker_b 1\n',
    'a counter not ending in _total': '# HELP credbroker_a A.\n# TYPE credbroker_a counter\ncredbroker_a 1\n',
    'a gauge ending in _total': '# HELP credbroker_a_total A.\n# TYPE credbroker_a_total gauge\ncredbroker_a_total 1\n',
    'the same series twice': `${good}credbroker_b 1\n`,
    'samples not contiguous': `${good}credbroker_a_total{p="y"} 1\n`,
    'an unescaped quote': good.replace('p="x"', 'p="x"y"'),
    'a bad escape': good.replace('p="x"', 'p="\\t"'),
    'a raw line feed in a label': good.replace('p="x"', 'p="x\ny"'),
    'a bad value': good.replace('credbroker_b 0', 'credbroker_b zero'),
    'a negative counter': good.replace('} 1', '} -1'),
    'a name without the prefix': good.replaceAll('credbroker_b', 'other_b'),
    'a trailing comma': good.replace('p="x"', 'p="x",'),
    'an empty line': good.replace('\n#', '\n\n#'),
    'a plain comment': `# hello\n${good}`,
    'invalid UTF-8': Buffer.concat([Buffer.from(good), Buffer.from([0xff, 0x0a])]),
  };
  for (const [why, text] of Object.entries(bad)) assert.throws(() => parse(text), Error, why);
});

test('the metrics op counts issues, denials, unknown profiles and bad requests by profile', { timeout: 30000 }, async () => {
  assert.equal((await h.cli(['token', '-p', 'alerts'])).code, 0);
  assert.equal((await h.cli(['token', '-p', 'alerts'])).code, 0);
  assert.equal((await h.cli(['token', '-p', 'alerts'], { asNobody: true })).code, 77);
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'rated' })).ok, true);
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'rated' })).error, 'rate_limited');
  assert.equal((await h.rawRequest({ v: 1, op: 'token', profile: 'no-such-profile' })).error, 'unknown_profile');
  assert.equal((await h.rawRequest({ v: 1, op: 'no-such-op' })).ok, false);

  const m = await h.adminRequest({ op: 'metrics' });
  assert.equal(m.ok, true, JSON.stringify(m));
  assert.deepEqual(m.profiles, [
    { profile: 'alerts', issued: 2, denied: 1, rate_limited: 0 },
    { profile: 'rated', issued: 1, denied: 0, rate_limited: 1 },
  ]);
  assert.equal(m.unknown_profile, 1);
  assert.equal(m.bad_requests, 1);
  assert.deepEqual(m.upstream, { ok: 1, transient: 0, reauth: 0, config: 0, scopes_refused: 0 });
  assert.equal(m.profiles_truncated, undefined);
});

test('status --prometheus: a valid exposition with the states, times and counters', { timeout: 30000 }, async () => {
  const r = await prometheus();
  assert.equal(r.code, 0, r.stderr);
  const p = r.parsed;
  assert.equal(value(p, 'credbroker_up'), 1);
  assert.equal(value(p, 'credbroker_status'), 0);
  assert.equal(value(p, 'credbroker_account_state', { account: 'alerts', state: 'ok' }), 1);
  assert.equal(value(p, 'credbroker_account_state', { account: 'alerts', state: 'needs_reauth' }), 0);
  assert.equal(value(p, 'credbroker_account_check', { account: 'alerts' }), 0);
  const now = Date.now() / 1000;
  const stored = value(p, 'credbroker_account_refresh_token_stored_timestamp_seconds', { account: 'alerts' });
  assert.ok(stored > now - 600 && stored <= now + 1, `refresh token stored at ${stored}`);
  assert.ok(value(p, 'credbroker_account_refresh_token_age_seconds', { account: 'alerts' }) < 600);
  assert.ok(value(p, 'credbroker_account_last_refresh_timestamp_seconds', { account: 'alerts' }) > now - 600);
  assert.ok(value(p, 'credbroker_account_token_expiry_timestamp_seconds', { account: 'alerts' }) > now);
  assert.ok(value(p, 'credbroker_account_next_refresh_timestamp_seconds', { account: 'alerts' }) > now);
  assert.equal(value(p, 'credbroker_account_credential_expiry_timestamp_seconds', { account: 'alerts' }), undefined,
    'a delegated account has no certificate or secret');
  assert.equal(value(p, 'credbroker_tokens_issued_total', { profile: 'alerts' }), 2);
  assert.equal(value(p, 'credbroker_tokens_denied_total', { profile: 'alerts', reason: 'policy' }), 1);
  assert.equal(value(p, 'credbroker_tokens_denied_total', { profile: 'rated', reason: 'rate_limited' }), 1);
  assert.equal(value(p, 'credbroker_token_requests_unknown_profile_total'), 1);
  assert.equal(value(p, 'credbroker_bad_requests_total'), 1);
  assert.equal(value(p, 'credbroker_upstream_tokens_total'), 1);
  for (const c of ['transient', 'reauth', 'config', 'scopes_refused']) {
    assert.equal(value(p, 'credbroker_upstream_errors_total', { class: c }), 0, c);
  }
  assert.equal(p.families.get('credbroker_tokens_issued_total').type, 'counter');
  assert.equal(p.families.get('credbroker_account_state').type, 'gauge');
});

test('a profile added by a reload is listed at zero; the counters of the others stay', { timeout: 30000 }, async () => {
  h.writePolicies({ extra: `${HEAD}peer required uid root\n` });
  await h.reloadBroker();
  const m = await waitFor('the reloaded policy', async () => {
    const r = await h.adminRequest({ op: 'metrics' });
    return r.profiles.length === 3 ? r : null;
  });
  assert.deepEqual(m.profiles.map((p) => p.profile), ['alerts', 'extra', 'rated']);
  assert.deepEqual(m.profiles[1], { profile: 'extra', issued: 0, denied: 0, rate_limited: 0 });
  assert.equal(m.profiles[0].issued, 2);
  const r = await prometheus();
  assert.equal(value(r.parsed, 'credbroker_tokens_issued_total', { profile: 'extra' }), 0);
  assert.equal(value(r.parsed, 'credbroker_tokens_issued_total', { profile: 'alerts' }), 2);
});

test('upstream errors are counted by class, and needs_reauth shows in the state and the check', { timeout: 60000 }, async () => {
  // A min_ttl the cached token cannot meet forces a refresh: first a transient failure...
  await h.addFault({ endpoint: 'token', mode: 'status', status: 503, retry_after: 1 });
  const forced = await h.rawRequest({ ...TOKEN, min_ttl: 86400 });
  assert.equal(forced.error, 'unavailable', JSON.stringify(forced));
  // ...then, after the backoff, a revoked grant.
  const rev = await h.emulatorAdmin('POST', '/admin/refresh-tokens/revoke', { user: 'alerts@contoso.com' });
  assert.ok(rev.revoked >= 1);
  await waitFor('reauth_required', async () =>
    (await h.rawRequest({ ...TOKEN, min_ttl: 86400 })).error === 'reauth_required', { timeoutMs: 30000, intervalMs: 300 });

  const r = await prometheus();
  assert.equal(r.code, 0, `--prometheus exits 0 whatever the accounts' state: ${r.stderr}`);
  const p = r.parsed;
  assert.equal(value(p, 'credbroker_upstream_errors_total', { class: 'transient' }), 1);
  assert.equal(value(p, 'credbroker_upstream_errors_total', { class: 'reauth' }), 1);
  assert.equal(value(p, 'credbroker_upstream_tokens_total'), 1);
  assert.equal(value(p, 'credbroker_account_state', { account: 'alerts', state: 'needs_reauth' }), 1);
  assert.equal(value(p, 'credbroker_account_state', { account: 'alerts', state: 'ok' }), 0);
  assert.equal(value(p, 'credbroker_account_check', { account: 'alerts' }), 2);
  assert.equal(value(p, 'credbroker_status'), 2);
  // The same verdict as the Nagios-style check.
  assert.equal((await h.cli(['status', '--config', h.conf])).code, 2);
});

test('--output writes the file atomically, readable by the textfile collector', { timeout: 30000 }, async () => {
  const dir = h.p('textfile');
  fs.mkdirSync(dir, { mode: 0o755 });
  const file = `${dir}/credbroker.prom`;
  fs.writeFileSync(file, 'old\n');
  const r = await prometheus(['--output', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '', 'nothing on stdout');
  assert.deepEqual(fs.readdirSync(dir), ['credbroker.prom'], 'no temporary file left');
  assert.equal(fs.statSync(file).mode & 0o777, 0o644);
  const p = parse(fs.readFileSync(file));
  assert.equal(value(p, 'credbroker_up'), 1);
  assert.equal(value(p, 'credbroker_tokens_issued_total', { profile: 'alerts' }), 2);

  const bad = await prometheus(['--output', h.p('no-such-dir', 'x.prom')]);
  assert.equal(bad.code, 3);
  assert.match(bad.stderr, /cannot write/);
  assert.deepEqual(fs.readdirSync(dir), ['credbroker.prom']);
});

test('usage: --prometheus with --json, or --output alone, is refused', { timeout: 30000 }, async () => {
  assert.equal((await h.cli(['status', '--prometheus', '--json'])).code, 64);
  assert.equal((await h.cli(['status', '--output', h.p('x.prom')])).code, 64);
});

test('without a broker: credbroker_up 0 in a valid exposition, exit 3', { timeout: 30000 }, async () => {
  await h.stopBroker();
  const r = await prometheus();
  assert.equal(r.code, 3);
  assert.match(r.stderr, /credbroker_up 0/);
  assert.equal(value(r.parsed, 'credbroker_up'), 0);
  assert.equal(value(r.parsed, 'credbroker_status'), 3);
  assert.equal(r.parsed.families.get('credbroker_account_state').samples.length, 0);
  const file = h.p('textfile', 'credbroker.prom');
  assert.equal((await prometheus(['--output', file])).code, 3);
  assert.equal(value(parse(fs.readFileSync(file)), 'credbroker_up'), 0, 'the file says the broker is down');
});
