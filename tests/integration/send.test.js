'use strict';
// credbroker send: mail through the emulated Graph with a brokered token.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, USER } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(() => h && h.teardown());

const SUBJECT = 'Ünïcode ✓ subject';
const BODY = 'Hello Ünïcode ✓\nline two — ünïcödé, 日本語\n\n  indented line\tand a tab\nlast line 🙂\n';

async function newMail(fn) {
  const before = (await h.mail()).length;
  const r = await fn();
  const all = await h.mail();
  return { r, mail: all.slice(before) };
}

const addresses = (list) => (list || []).map((x) => x.emailAddress.address);

test('send: recipients, subject and UTF-8 body from stdin arrive as Text', { timeout: 30000 }, async () => {
  const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com,b@example.com',
    '--cc', 'c@example.com', '--subject', SUBJECT, '--config', h.conf], { input: BODY }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(mail.length, 1, 'exactly one message stored');
  const m = mail[0];
  assert.equal(m.mailbox.toLowerCase(), USER);
  const msg = m.request.message;
  assert.deepEqual(addresses(msg.toRecipients), ['a@example.com', 'b@example.com']);
  assert.deepEqual(addresses(msg.ccRecipients), ['c@example.com']);
  assert.equal(msg.bccRecipients, undefined, 'no bcc list when there are no bcc recipients');
  assert.equal(msg.subject, SUBJECT);
  assert.equal(msg.body.contentType, 'Text');
  assert.equal(msg.body.content, BODY);
});

test('send --html sends an HTML body', { timeout: 30000 }, async () => {
  const html = '<html><body><p>Grüße &amp; <b>bold</b> ✓</p></body></html>\n';
  const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com',
    '--bcc', 'hidden@example.com', '--subject', 'html', '--html', '--config', h.conf], { input: html }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  const msg = mail[0].request.message;
  assert.equal(msg.body.contentType, 'HTML');
  assert.equal(msg.body.content, html);
  assert.deepEqual(addresses(msg.bccRecipients), ['hidden@example.com']);
});

test('send --body-file reads the body from a file', { timeout: 30000 }, async () => {
  const file = h.p('body.txt');
  const text = 'From a file: ✓\nsecond line\n';
  fs.writeFileSync(file, text);
  const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com',
    '--subject', 'file', '--body-file', file, '--config', h.conf], { input: 'NOT THIS' }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mail.length, 1);
  assert.equal(mail[0].request.message.body.content, text);
  assert.equal(mail[0].request.message.body.contentType, 'Text');
});

test('an invalid address: exit 64 and nothing is sent', { timeout: 30000 }, async () => {
  const sentBefore = (await h.counters()).send_mail;
  for (const bad of ['not-an-address', 'a@b@example.com', '@example.com', 'x@', 'Bob <bob@example.com>', 'a;b@example.com']) {
    for (const option of ['--to', '--cc']) {
      const args = ['send', '-p', 'alerts', '--subject', 's', '--config', h.conf];
      if (option === '--to') args.push('--to', bad);
      else args.push('--to', 'ok@example.com', '--cc', bad);
      const { r, mail } = await newMail(() => h.cli(args, { input: 'body\n' }));
      assert.equal(r.code, 64, `${option} ${bad}: exit ${r.code} ${r.stderr}`);
      assert.equal(mail.length, 0, `${option} ${bad}: nothing stored`);
    }
  }
  assert.equal((await h.counters()).send_mail, sentBefore, 'Graph was never called');
});

test('a Graph 403 fails the send and names the Graph error code', { timeout: 30000 }, async () => {
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 403, code: 'ErrorAccessDenied', message: 'Access is denied. Check credentials and try again.' });
  const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com',
    '--subject', 'refused', '--config', h.conf], { input: 'body\n' }));
  assert.notEqual(r.code, 0);
  assert.equal(r.code, 77, `exit ${r.code}`);
  assert.match(r.stderr, /ErrorAccessDenied/);
  assert.match(r.stderr, /403/);
  assert.equal(mail.length, 0);
});

test('Graph error text reaches the terminal without control characters', { timeout: 30000 }, async () => {
  // A hostile or broken upstream: escape sequences (clear screen, retitle) and C1 CSI.
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 403, code: 'Err\u001b]0;pwned\u0007',
    message: 'Denied\u001b[2J\u009b31m now' });
  const r = await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 'refused', '--config', h.conf],
    { input: 'body\n' });
  assert.equal(r.code, 77, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /Denied\?\[2J\?31m now/);
  assert.doesNotMatch(r.stderr, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/, JSON.stringify(r.stderr));
});

test('a Graph 503 is a temporary failure (exit 75) naming the Graph error code', { timeout: 30000 }, async () => {
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 503, retry_after: 5 });
  const r = await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 'later', '--config', h.conf],
    { input: 'body\n' });
  assert.equal(r.code, 75, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /503/);
  assert.match(r.stderr, /ServiceNotAvailable/);
});

test('send as a denied uid: exit 77 and nothing sent', { timeout: 30000 }, async () => {
  const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com',
    '--subject', 's', '--config', h.conf], { asNobody: true, input: 'body\n' }));
  assert.equal(r.code, 77, `exit ${r.code}: ${r.stderr}`);
  assert.equal(mail.length, 0);
});

test('--to with no address is a usage error even when --cc has one (exit 64, nothing sent)', { timeout: 30000 }, async () => {
  const sentBefore = (await h.counters()).send_mail;
  for (const args of [['--cc', 'c@example.com', '--to', ','], ['--bcc', 'b@example.com', '--to', ''],
    ['--cc', 'c@example.com']]) {
    const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', ...args, '--subject', 's', '--config', h.conf],
      { input: 'body\n' }));
    assert.equal(r.code, 64, `${args.join(' ')}: exit ${r.code} ${r.stderr}`);
    assert.equal(mail.length, 0);
  }
  assert.equal((await h.counters()).send_mail, sentBefore, 'Graph was never called');
});

test('an address list with a space inside an entry is never silently cut short', { timeout: 30000 }, async () => {
  const { r, mail } = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com evil@example.com',
    '--subject', 's', '--config', h.conf], { input: 'body\n' }));
  if (r.code === 0) {
    // Accepted: then every address given must be a recipient.
    assert.deepEqual(addresses(mail[0].request.message.toRecipients), ['a@example.com', 'evil@example.com'],
      'the message went out with part of the --to argument dropped');
  } else {
    assert.equal(r.code, 64, `exit ${r.code}: ${r.stderr}`);
    assert.equal(mail.length, 0);
  }
});

test('a body that is not UTF-8 (exit 65) or cannot be read (exit 66): nothing sent', { timeout: 30000 }, async () => {
  const bad = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's',
    '--config', h.conf], { input: Buffer.from([0x61, 0xff, 0xfe, 0x0a]) }));
  assert.equal(bad.r.code, 65, bad.r.stderr);
  assert.equal(bad.mail.length, 0);
  const missing = await newMail(() => h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's',
    '--body-file', h.p('does-not-exist'), '--config', h.conf]));
  assert.equal(missing.r.code, 66, missing.r.stderr);
  assert.equal(missing.mail.length, 0);
});
