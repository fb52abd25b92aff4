'use strict';
// credbroker policy check|test|show against the shipped examples and broken copies of them. No
// broker is needed: the CLI runs the broker's own policy library on the files.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, CREDBROKER, SOURCE_ROOT } = require('./harness');

let dir;
const EXAMPLES = path.join(SOURCE_ROOT, 'policy', 'examples');

// A private copy of policy/examples with the modes credbrokerd insists on.
function freshCopy() {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  for (const name of fs.readdirSync(EXAMPLES)) {
    fs.copyFileSync(path.join(EXAMPLES, name), path.join(dir, name));
    fs.chmodSync(path.join(dir, name), 0o644);
  }
}

function policy(args, env = {}) {
  const e = { ...process.env, ...env };
  delete e.CREDBROKER_CONFIG;
  return run(CREDBROKER, ['policy', ...args], { env: e });
}

before(() => {
  dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cbpol-')), 'policy.d');
  freshCopy();
});
after(() => fs.rmSync(path.dirname(dir), { recursive: true, force: true }));

test('the shipped examples pass policy check', async () => {
  const r = await policy(['check', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /: 5 profile\(s\), \d+ rule\(s\): no problems\n$/);
});

test('check reads policy_dir from --config', async () => {
  const conf = path.join(path.dirname(dir), 'credbroker.conf');
  fs.writeFileSync(conf, `[broker]\npolicy_dir = ${dir}\n`, { mode: 0o644 });
  const r = await policy(['check', '--config', conf]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(r.stdout.startsWith(`${dir}: `));
  const viaEnv = await run(CREDBROKER, ['policy', 'check'], { env: { ...process.env, CREDBROKER_CONFIG: conf } });
  assert.equal(viaEnv.code, 0, viaEnv.stdout + viaEnv.stderr);
});

test('check reports every problem as file:line and exits 1', async () => {
  freshCopy();
  fs.writeFileSync(path.join(dir, 'broken'),
    'account a\nscope S\npeer mandatory uid root\nrequest required uid root\npeer required time 25:00-26:00\n');
  fs.chmodSync(path.join(dir, 'broken'), 0o644);
  fs.appendFileSync(path.join(dir, 'common-mail'), 'peer required exe relative\n');
  fs.writeFileSync(path.join(dir, 'loose'), 'account a\nscope S\npeer required permit\n');
  fs.chmodSync(path.join(dir, 'loose'), 0o664);
  fs.symlinkSync(path.join(dir, 'other'), path.join(dir, 'linked'));
  fs.writeFileSync(path.join(dir, 'alerts~'), 'garbage\n'); // ignored, like pam.d
  const r = await policy(['check', dir]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n').sort();
  assert.deepEqual(lines, [
    `${dir}/broken:3: unknown control "mandatory" (required, requisite, sufficient, optional)`,
    `${dir}/broken:4: module uid belongs in the peer stack, not request`,
    `${dir}/broken:5: bad hours "25:00-26:00" (HH:MM-HH:MM, 00:00-24:00, start and end differ)`,
    `${dir}/common-mail:5: exe "relative" must be an absolute path or glob`,
    `${dir}/linked: is a symbolic link; links are refused in the policy directory (fix: replace ${dir}/linked with the file itself)`,
    `${dir}/loose: writable by group or others (fix: chmod go-w ${dir}/loose)`,
  ].sort(), 'each problem once, with file:line and the fix');
  assert.match(r.stderr, /credbrokerd would refuse it/);
});

test('check warns, naming file:line, about a profile that exe alone lets in; exit status unchanged', async () => {
  freshCopy();
  const write = (name, text) => {
    fs.writeFileSync(path.join(dir, name), text);
    fs.chmodSync(path.join(dir, name), 0o644);
  };
  const head = 'account alerts\nscope https://graph.microsoft.com/Mail.Send\n';
  write('exe-only', `${head}peer required exe /usr/bin/credbroker\n`);
  // A sufficient exe allows before the uid rule is reached.
  write('exe-first', `${head}peer sufficient exe /usr/bin/credbroker\npeer required uid root\n`);
  // Through a fragment: the warning names the fragment's line.
  write('common-exe', 'peer required time 06:00-22:00\npeer required exe /usr/lib/nagios/plugins/*\n');
  write('via-fragment', `${head}include common-exe\n`);
  // Not warned about: exe next to a uid, group or unit rule, or after an explicit permit.
  write('exe-and-uid', `${head}peer required exe /usr/bin/credbroker\npeer required uid root\n`);
  write('exe-and-group', `${head}peer required group mail\npeer sufficient exe /usr/bin/credbroker\n`);
  write('exe-and-unit', `${head}peer requisite unit nagios.service\npeer required exe /usr/bin/credbroker\n`);
  write('exe-and-permit', `${head}peer required permit\npeer required exe /usr/bin/credbroker\n`);
  const r = await policy(['check', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const warnings = r.stdout.split('\n').filter((l) => / warning: /.test(l)).sort();
  const message = (profile) => `warning: profile ${profile} lets a peer in on exe alone, with no uid, group, unit or permit rule that must succeed too; exe never authorizes on its own (any local user can run the binary, or ptrace it): add a required uid or group rule`;
  assert.deepEqual(warnings, [
    `${dir}/common-exe:2: ${message('via-fragment')}`,
    `${dir}/exe-first:3: ${message('exe-first')}`,
    `${dir}/exe-only:3: ${message('exe-only')}`,
  ], r.stdout);
  assert.match(r.stdout, /: 12 profile\(s\), \d+ rule\(s\): no problems, 3 warning\(s\)\n$/);
  assert.equal(r.stderr, '');
  // A real problem next to a warning still exits 1.
  write('broken', `${head}peer bad uid root\n`);
  const broken = await policy(['check', dir]);
  assert.equal(broken.code, 1, broken.stdout + broken.stderr);
  assert.match(broken.stdout, /broken:3: unknown control/);
});

test('check and test take unit patterns that name a user manager', async () => {
  freshCopy();
  fs.writeFileSync(path.join(dir, 'user-backup'),
    'account backup\nscope https://graph.microsoft.com/.default\npeer required uid 1000\n' +
    'peer required unit user@*.service/backup.service\n');
  fs.chmodSync(path.join(dir, 'user-backup'), 0o644);
  fs.writeFileSync(path.join(dir, 'sys-backup'),
    'account backup\nscope https://graph.microsoft.com/.default\npeer required uid 1000\n' +
    'peer required unit *backup.service\n');
  fs.chmodSync(path.join(dir, 'sys-backup'), 0o644);
  const check = await policy(['check', dir]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const t = (profile, unit) => policy(['test', '--policy-dir', dir, '-p', profile, '--uid', '1000', '--gid', '1000', '--unit', unit]);
  assert.equal((await t('user-backup', 'user@1000.service/backup.service')).code, 0);
  assert.equal((await t('user-backup', 'user@1000.service/evil-backup.service')).code, 1);
  assert.equal((await t('user-backup', 'backup.service')).code, 1);
  assert.equal((await t('sys-backup', 'nightly-backup.service')).code, 0);
  const evil = await t('sys-backup', 'user@1000.service/evil-backup.service');
  assert.equal(evil.code, 1, evil.stdout);
  assert.match(evil.stdout, /^deny sys-backup:4 /);
});

test('check names the owner fix for a file owned by someone else', { skip: process.getuid() !== 0 && 'needs root' }, async () => {
  freshCopy();
  fs.chownSync(path.join(dir, 'backup'), 65534, 65534);
  const r = await policy(['check', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, new RegExp(`backup: owned by uid 65534; must be owned by root or uid 0 \\(fix: chown root ${dir}/backup\\)`));
});

test('test: a dry run says allow or deny, the rule and the reason', async () => {
  freshCopy();
  const cases = [
    // The sufficient uid rule ends the peer stack; the request stack's rate rule passes too, and
    // an allow names the peer rule that decided who.
    [['-p', 'alerts', '--uid', 'root'], 0, /^allow alerts:8 \(sufficient rule succeeded\)\n {2}peer sufficient uid root\n$/],
    [['-p', 'alerts', '--uid', 'nobody'], 1, /^deny common-mail:3 \(required rule failed\)\n {2}peer required group mail\n$/],
    [['-p', 'alerts', '--uid', '65534', '--gid', 'nogroup', '--groups', 'mail'], 0, /^allow common-mail:3 /],
    [['-p', 'alerts', '--uid', 'nobody', '--groups', 'mail', '--scope', 'https://graph.microsoft.com/Mail.Read'], 1,
      /^deny alerts \(scope not allowed by the profile\)/],
    [['-p', 'report-cron', '--uid', '1000', '--gid', '1000', '--unit', 'cron.service', '--at', '2026-12-01 06:30'], 0, /^allow/],
    [['-p', 'report-cron', '--uid', '1000', '--gid', '1000', '--unit', 'cron.service', '--at', '2026-12-05 06:30'], 1,
      /^deny report-cron:12 \(required rule failed\)\n {2}peer required time Mon-Fri 06:00-07:00\n$/],
    [['-p', 'report-cron', '--uid', '1000', '--gid', '1000', '--at', '2026-12-01 06:30'], 1, /^deny report-cron:10 /],
    [['-p', 'backup', '--uid', 'root', '--unit', 'backup-home.service', '--at', '2026-12-01 23:30', '--min-ttl', '3600'], 0, /^allow backup:9 /],
    [['-p', 'backup', '--uid', 'root', '--unit', 'backup-home.service', '--at', '2026-12-01 23:30', '--min-ttl', '3601'], 1, /^deny backup:13 /],
    [['-p', 'monitoring', '--uid', 'nobody', '--unit', 'nagios.service', '--exe', '/usr/bin/credbroker'], 0, /^allow/],
    [['-p', 'monitoring', '--uid', 'nobody', '--unit', 'nagios.service'], 1, /^deny monitoring:15 /],
    // A user's own unit of the same name is not the system's (broker/peer.c names it so).
    [['-p', 'monitoring', '--uid', 'nobody', '--unit', 'user@65534.service/nagios.service', '--exe', '/usr/bin/credbroker'], 1, /^deny monitoring:12 /],
    [['-p', 'other', '--uid', 'root'], 1, /^deny other:9 /],
  ];
  for (const [args, code, out] of cases) {
    const r = await policy(['test', '--policy-dir', dir, ...args]);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, out, args.join(' '));
  }
});

test('test and show: usage and policy errors exit 2', async () => {
  freshCopy();
  const usage = [
    ['test'],
    ['test', '--policy-dir', dir, '-p', 'alerts'],
    ['test', '--policy-dir', dir, '--uid', 'root'],
    ['test', '--policy-dir', dir, '-p', 'alerts', '--uid', 'no-such-user-xyz'],
    ['test', '--policy-dir', dir, '-p', 'alerts', '--uid', '4000000'],
    ['test', '--policy-dir', dir, '-p', 'alerts', '--uid', 'root', '--at', 'tomorrow'],
    ['test', '--policy-dir', dir, '-p', 'alerts', '--uid', 'root', '--groups', 'no-such-group-xyz'],
    ['test', '--policy-dir', dir, '-p', 'alerts', '--uid', 'root', '--min-ttl', '-1'],
    ['test', '--policy-dir', dir, '-p', 'nope', '--uid', 'root'],
    ['show'],
    ['show', '--policy-dir', dir, '-p', 'nope'],
    ['bogus'],
    [],
  ];
  for (const args of usage) {
    const r = await policy(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
  }
  fs.writeFileSync(path.join(dir, 'broken'), 'account a\nscope S\npeer bad uid root\n');
  const r = await policy(['test', '--policy-dir', dir, '-p', 'alerts', '--uid', 'root']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`${dir}/broken:3: unknown control`));
});

test('show prints the profile after includes, each rule with file:line', async () => {
  freshCopy();
  const r = await policy(['show', '--policy-dir', dir, '-p', 'alerts']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, [
    '# profile alerts (policy.d/alerts)',
    'account  alerts',
    'scope    https://graph.microsoft.com/Mail.Send',
    'peer     sufficient uid     root                     # policy.d/alerts:8',
    'peer     required   group   mail                     # policy.d/common-mail:3',
    'request  required   rate    60/min per-uid           # policy.d/common-mail:4',
    '',
  ].join('\n'));
});
