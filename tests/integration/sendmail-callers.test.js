'use strict';
// credbroker sendmail driven by the real programs that mail on a Linux host (issue 11 item 7):
// mail from mailutils and from bsd-mailx, git send-email, PHP's mail(), cron's exact flags, an
// SMTP dialogue over sendmail -bs, an unprivileged job mapped to its profile by mail.conf, and
// (issue 11 item 5) an emulator outage during a burst of 100 cron mails. Each caller is pointed
// at a symlink named sendmail in the test's own directory (sendmail_path, sendmail=, the
// --smtp-server path): /usr/sbin/sendmail is never used or touched. A caller that is not
// installed is skipped with the reason; scripts/deps installs them all.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { setup, run, sleep, CREDBROKER, MAIL_SEND, USER } = require('./harness');

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;

// Built without sendmail (before libmail and the spool's client side were merged): skip all.
const probe = spawnSync(CREDBROKER, ['sendmail', '-bi'], { encoding: 'utf8' });
const NO_SENDMAIL = probe.status !== 0 && 'this credbroker has no sendmail command';

const DELIVER_HELPER = path.join(process.env.CREDBROKER_BUILD_ROOT || path.join(__dirname, '..', '..', 'build'),
  'broker', 'credbroker-deliver');

let h;
let bin; // the directory with the sendmail symlink
let sendmail; // its path

before(async () => {
  if (NO_SENDMAIL) return;
  h = await setup({
    // With the spool merged: its real delivery helper, and retries in seconds rather than minutes.
    config: fs.existsSync(DELIVER_HELPER) ? {
      mail: { deliver_helper: DELIVER_HELPER, retry_min: '1', retry_max: '4', scan_interval: '1' },
    } : {},
    profiles: {
      alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
      jobs: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid nobody'] },
    },
  });
  bin = h.p('bin');
  fs.mkdirSync(bin, { mode: 0o755 });
  sendmail = path.join(bin, 'sendmail');
  fs.symlinkSync(CREDBROKER, sendmail);
  fs.writeFileSync(h.p('aliases'), 'root: ops@contoso.com\npostmaster: root\n', { mode: 0o644 });
  fs.writeFileSync(h.p('mail.conf'), [
    '[sendmail]',
    'default_profile = alerts',
    `aliases = ${h.p('aliases')}`,
    'default_domain = contoso.com',
    // The From of mail prepared while no token can be had (the burst below may be the first
    // mail): the broker's answer names the mailbox otherwise.
    `mailbox = ${USER}`,
    '[users]',
    'nobody = jobs',
    '',
  ].join('\n'), { mode: 0o644 });
});
after(() => h && h.teardown());

// What every caller runs with: the broker's socket, mail.conf, the symlink first on PATH.
function env(extra = {}) {
  return {
    CREDBROKER_MAIL_CONFIG: h.p('mail.conf'),
    CREDBROKER_ADMIN_SOCKET: h.adminSocket, // sendmail -q and -bp
    PATH: `${bin}:${process.env.PATH}`,
    HOME: h.dir,
    ...extra,
  };
}

function runCaller(cmd, args, { input, extra, cwd } = {}) {
  return run(cmd, args, { env: h.env(env(extra)), input, cwd, timeoutMs: 60000 });
}

// ---- the emulator's store, as the recipients see each message ----------------------------
// The emulator keeps every delivered message as its recipients see it (Bcc removed) with its
// metadata (tests/emulator/graph-mail.js: GET /admin/mail/delivered, .../raw?id=). Each becomes
// { mailbox, recipients, to, cc, bcc, subject, headers: { lower-case name: value }, body },
// addresses lower-cased; bcc is what was delivered to but is not in To or Cc.
function parseRaw(text) {
  const split = text.search(/\r?\n\r?\n/);
  const head = split < 0 ? text : text.slice(0, split);
  const body = split < 0 ? '' : text.slice(split).replace(/^\r?\n\r?\n/, '');
  const headers = {};
  for (const field of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = field.indexOf(':');
    if (colon > 0) {
      const name = field.slice(0, colon).trim().toLowerCase();
      const value = field.slice(colon + 1).trim();
      headers[name] = headers[name] ? `${headers[name]}, ${value}` : value;
    }
  }
  return { headers, body };
}

const addressesOf = (value) => (value ? [...value.matchAll(/[^\s<>,"()]+@[^\s<>,"()]+/g)].map((m) => m[0].toLowerCase()) : []);

function adminGetText(urlPath) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: h.emuPorts.adminPort, path: urlPath }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8'))
        : reject(new Error(`emulator admin GET ${urlPath}: HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}

const rawCache = new Map();
async function storedMessages() {
  const out = [];
  for (const meta of await h.emulatorAdmin('GET', '/admin/mail/delivered')) {
    if (!rawCache.has(meta.id)) rawCache.set(meta.id, await adminGetText(`/admin/mail/delivered/raw?id=${encodeURIComponent(meta.id)}`));
    const { headers, body } = parseRaw(rawCache.get(meta.id));
    const to = addressesOf(headers.to);
    const cc = addressesOf(headers.cc);
    const recipients = meta.recipients.map((a) => a.toLowerCase());
    out.push({
      mailbox: meta.mailbox,
      recipients,
      to,
      cc,
      bcc: recipients.filter((a) => !to.includes(a) && !cc.includes(a)),
      subject: meta.subject || '',
      headers,
      body: body.replace(/\r\n/g, '\n'),
    });
  }
  return out;
}

// Runs fn and resolves { r, mail }: the messages stored since, waiting up to waitMs for count.
async function newMail(fn, { count = 1, waitMs = 10000 } = {}) {
  const before = (await storedMessages()).length;
  const r = await fn();
  let mail = [];
  for (const deadline = Date.now() + waitMs; ;) {
    mail = (await storedMessages()).slice(before);
    if (mail.length >= count || Date.now() > deadline) break;
    await sleep(200);
  }
  return { r, mail };
}

// git send-email exists and loads (Debian's needs libmailtools-perl for Mail::Address).
const GIT_SEND_EMAIL_MISSING = !NO_SENDMAIL && !/git send-email/.test(spawnSync('git', ['send-email', '-h'], { encoding: 'utf8' }).stdout || '')
  && 'git send-email is not installed or does not load (Debian packages git-email, libmailtools-perl)';

const skipUnless = (cmd, pkg) => NO_SENDMAIL || (!have(cmd) && `${cmd} is not installed (Debian package ${pkg}; scripts/deps installs it)`);

// ---- the callers ----------------------------------------------------------------------------

test('cronie: -FCronDaemon -i -odi -oem -oi -t -f root; a lone dot is text, root is aliased', { skip: NO_SENDMAIL, timeout: 60000 }, async () => {
  const message = 'From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts /etc/cron.daily\n'
    + 'Content-Type: text/plain; charset=UTF-8\nX-Cron-Env: <SHELL=/bin/sh>\n\nline one\n.\nline after the dot\n';
  const { r, mail } = await newMail(() => runCaller(sendmail,
    ['-FCronDaemon', '-i', '-odi', '-oem', '-oi', '-t', '-f', 'root'], { input: message }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1, 'one message delivered');
  const m = mail[0];
  assert.deepEqual(m.to, ['ops@contoso.com'], 'root expanded through the aliases file');
  assert.equal(m.subject, 'Cron <root@host> run-parts /etc/cron.daily');
  assert.match(m.body, /line one\n\.\nline after the dot/, 'with -i the dot line is part of the body');
  assert.deepEqual(addressesOf(m.headers.from), [USER], 'From rewritten to the mailbox');
  assert.equal(m.headers['x-cron-env'], '<SHELL=/bin/sh>');
});

test('mdadm/logwatch: -t without -i stops at a lone dot', { skip: NO_SENDMAIL, timeout: 60000 }, async () => {
  const message = 'To: raid@contoso.com\nSubject: Fail event on /dev/md0\n\nA Fail event\n.\nNOT PART OF IT\n';
  const { r, mail } = await newMail(() => runCaller(sendmail, ['-t'], { input: message }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.deepEqual(mail[0].to, ['raid@contoso.com']);
  assert.ok(!mail[0].body.includes('NOT PART OF IT'), 'nothing after the dot');
});

test('-t: Bcc recipients are delivered but not shown; command-line recipients are added as Bcc', { skip: NO_SENDMAIL, timeout: 60000 }, async () => {
  const message = 'To: a@contoso.com\nCc: c@contoso.com\nBcc: hidden@contoso.com\nSubject: bcc\n\nbody\n';
  const { r, mail } = await newMail(() => runCaller(sendmail, ['-t', '-i', 'extra@contoso.com'], { input: message }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  const m = mail[0];
  assert.deepEqual(m.to, ['a@contoso.com']);
  assert.deepEqual(m.cc, ['c@contoso.com']);
  assert.deepEqual([...m.bcc].sort(), ['extra@contoso.com', 'hidden@contoso.com']);
});

test('mailutils: mail -s with sendmail= our symlink', { skip: skipUnless('mail.mailutils', 'mailutils'), timeout: 60000 }, async () => {
  const { r, mail } = await newMail(() => runCaller('mail.mailutils',
    ['-E', `set sendmail=sendmail://${sendmail}`, '-s', 'mailutils subject', '-a', 'X-Test: mu',
      'a@contoso.com', 'b@contoso.com'], { input: 'body from mailutils\n' }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.deepEqual(mail[0].to, ['a@contoso.com', 'b@contoso.com']);
  assert.equal(mail[0].subject, 'mailutils subject');
  assert.equal(mail[0].headers['x-test'], 'mu');
  assert.match(mail[0].body, /body from mailutils/);
});

test('bsd-mailx: mail -s with MAILRC setting sendmail', { skip: skipUnless('bsd-mailx', 'bsd-mailx'), timeout: 60000 }, async () => {
  const rc = h.p('mailrc');
  fs.writeFileSync(rc, `set sendmail=${sendmail}\n`);
  const { r, mail } = await newMail(() => runCaller('bsd-mailx', ['-s', 'bsd-mailx subject', 'a@contoso.com'],
    { input: 'body from bsd-mailx\n', extra: { MAILRC: rc } }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.deepEqual(mail[0].to, ['a@contoso.com']);
  assert.equal(mail[0].subject, 'bsd-mailx subject');
  assert.match(mail[0].body, /body from bsd-mailx/);
});

test('git send-email --smtp-server=<our sendmail>: -i and recipients, --bcc only on the command line', { skip: skipUnless('git', 'git') || GIT_SEND_EMAIL_MISSING, timeout: 60000 }, async () => {
  const repo = h.p('repo');
  const git = (...a) => spawnSync('git', ['-C', repo, '-c', 'user.name=Dev', '-c', 'user.email=dev@contoso.com', ...a], { encoding: 'utf8' });
  fs.mkdirSync(repo);
  assert.equal(git('init', '-q').status, 0);
  fs.writeFileSync(path.join(repo, 'f'), 'hello\n');
  git('add', 'f');
  assert.equal(git('commit', '-qm', 'add f').status, 0);
  const patches = h.p('patches');
  assert.equal(git('format-patch', '--root', '-o', patches).status, 0);
  const { r, mail } = await newMail(() => runCaller('git', ['-C', repo, 'send-email', `--smtp-server=${sendmail}`,
    '--from=Dev <dev@contoso.com>', '--to=list@contoso.com', '--bcc=hidden@contoso.com', '--confirm=never',
    '--suppress-cc=all', '--quiet', ...fs.readdirSync(patches).map((f) => path.join(patches, f))],
  { extra: { GIT_AUTHOR_NAME: 'Dev', GIT_AUTHOR_EMAIL: 'dev@contoso.com', GIT_COMMITTER_NAME: 'Dev', GIT_COMMITTER_EMAIL: 'dev@contoso.com' } }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.deepEqual(mail[0].to, ['list@contoso.com']);
  assert.deepEqual(mail[0].bcc, ['hidden@contoso.com']);
  assert.match(mail[0].subject, /\[PATCH\] add f/);
  assert.match(mail[0].body, /\+hello/);
});

test('PHP mail() through sendmail_path', { skip: skipUnless('php', 'php-cli'), timeout: 60000 }, async () => {
  const { r, mail } = await newMail(() => runCaller('php', ['-d', `sendmail_path=${sendmail} -t -i`, '-r',
    'exit(mail("web@contoso.com", "php subject", "php body\\n.\\nafter", "From: site@contoso.com") ? 0 : 3);']));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.deepEqual(mail[0].to, ['web@contoso.com']);
  assert.equal(mail[0].subject, 'php subject');
  assert.match(mail[0].body, /php body\n\.\nafter/, '-i: the dot line stays');
});

test('sendmail -bs: an SMTP dialogue, dot-unstuffing, envelope-only recipients as Bcc', { skip: NO_SENDMAIL, timeout: 60000 }, async () => {
  const dialogue = ['EHLO client.test', 'MAIL FROM:<root@contoso.com>', 'RCPT TO:<a@contoso.com>',
    'RCPT TO:<quiet@contoso.com>', 'DATA', 'To: a@contoso.com', 'Subject: over smtp', '', '..dotted line',
    'plain', '.', 'QUIT', ''].join('\r\n');
  const { r, mail } = await newMail(() => runCaller(sendmail, ['-bs'], { input: dialogue }));
  assert.equal(r.code, 0, r.stderr);
  const codes = r.stdout.split('\r\n').filter(Boolean).map((l) => l.slice(0, 4));
  assert.deepEqual(codes.filter((c) => c[3] === ' '), ['220 ', '250 ', '250 ', '250 ', '250 ', '354 ', '250 ', '221 '], r.stdout);
  assert.equal(mail.length, 1);
  assert.deepEqual(mail[0].to, ['a@contoso.com']);
  assert.deepEqual(mail[0].bcc, ['quiet@contoso.com']);
  assert.match(mail[0].body, /^\.dotted line\nplain/m);
});

test('an unprivileged job: nobody, no -p, mapped to its profile by mail.conf, needs only the socket', { skip: NO_SENDMAIL, timeout: 60000 }, async () => {
  const { r, mail } = await newMail(() => run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups',
    sendmail, '-t'], { env: h.env(env()), input: 'To: a@contoso.com\nSubject: from nobody\n\nhi\n' }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.equal(mail[0].subject, 'from nobody');
});

test('exit codes: no recipients 64, denied 77, unknown profile 78', { skip: NO_SENDMAIL, timeout: 60000 }, async () => {
  assert.equal((await runCaller(sendmail, ['-i'], { input: 'x\n' })).code, 64);
  const denied = await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', sendmail,
    '-p', 'alerts', 'a@contoso.com'], { env: h.env(env()), input: 'Subject: x\n\nx\n' });
  assert.equal(denied.code, 77, denied.stderr);
  const unknown = await runCaller(sendmail, ['-p', 'nosuch', 'a@contoso.com'], { input: 'Subject: x\n\nx\n' });
  assert.equal(unknown.code, 78, unknown.stderr);
});

// ---- nothing lost: an outage during a burst (needs the broker's spool) -----------------------

const NO_SPOOL = NO_SENDMAIL || ((spawnSync(CREDBROKER, ['queue', '--help']).status !== 0 || !fs.existsSync(DELIVER_HELPER))
  && 'this build has no spool (credbroker queue, broker/credbroker-deliver)');

test('emulator outage during a burst of 100 cron mails: all 100 delivered exactly once after it returns', { skip: NO_SPOOL, timeout: 600000 }, async () => {
  const before = (await storedMessages()).length;
  await h.stopEmulator();
  const tag = `burst-${Date.now()}`;
  const results = [];
  for (let i = 0; i < 100; i += 10) {
    const batch = [];
    for (let j = i; j < i + 10; j++) {
      batch.push(runCaller(sendmail, ['-FCronDaemon', '-i', '-odi', '-oem', '-oi', '-t', '-f', 'root'],
        { input: `From: root (Cron Daemon)\nTo: root\nSubject: ${tag} ${j}\n\njob ${j} output\n` }));
    }
    results.push(...await Promise.all(batch));
  }
  for (const r of results) assert.equal(r.code, 0, `sendmail during the outage exits 0: ${r.stderr}`);
  const mailq = await runCaller(sendmail, ['-bp']);
  assert.equal(mailq.code, 0, mailq.stderr);
  assert.doesNotMatch(mailq.stdout, /queue is empty/, 'sendmail -bp lists the queued mail');
  await h.startEmulator();
  // The spool retries with backoff: flush it rather than wait for the next retry.
  const flush = await runCaller(sendmail, ['-q']);
  assert.equal(flush.code, 0, flush.stderr);
  let mine = [];
  for (const deadline = Date.now() + 300000; Date.now() < deadline;) {
    mine = (await storedMessages()).slice(before).filter((m) => m.subject.startsWith(tag));
    if (mine.length >= 100) break;
    await sleep(1000);
  }
  await sleep(3000); // a duplicate would show up now
  mine = (await storedMessages()).slice(before).filter((m) => m.subject.startsWith(tag));
  const seen = new Map();
  for (const m of mine) seen.set(m.subject, (seen.get(m.subject) || 0) + 1);
  assert.equal(seen.size, 100, 'every message delivered');
  for (const [subject, n] of seen) assert.equal(n, 1, `${subject} delivered once`);
});
