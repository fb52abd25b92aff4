'use strict';
// credbroker send: mail through the emulated Graph with a brokered token.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, waitFor, USER } = require('./harness');

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

// The messages Graph delivered since n (the emulator's MIME store: what recipients see), each with
// its headers and leaf parts.
async function deliveredSince(n) {
  const list = await h.emulatorAdmin('GET', '/admin/mail/delivered');
  return Promise.all(list.slice(n).map((m) => h.emulatorAdmin('GET', `/admin/mail/delivered/message?id=${encodeURIComponent(m.id)}`)));
}
const deliveredCount = async () => (await h.emulatorAdmin('GET', '/admin/mail/delivered')).length;

async function sendAndRead(args, input) {
  const n = await deliveredCount();
  const r = await h.cli(['send', '-p', 'alerts', ...args, '--config', h.conf], { input });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  const got = await deliveredSince(n);
  assert.equal(got.length, 1, 'exactly one message delivered');
  return got[0];
}

test('send: recipients, subject and UTF-8 body from stdin arrive as text/plain', { timeout: 30000 }, async () => {
  const m = await sendAndRead(['--to', 'a@example.com,b@example.com', '--cc', 'c@example.com', '--subject', SUBJECT], BODY);
  assert.equal(m.mailbox.toLowerCase(), USER);
  assert.deepEqual([...m.recipients].sort(), ['a@example.com', 'b@example.com', 'c@example.com']);
  assert.equal(m.subject, SUBJECT);
  assert.equal(m.from, USER, 'From is the account mailbox');
  const text = m.parts.filter((p) => p.content_type === 'text/plain');
  assert.equal(text.length, 1, JSON.stringify(m.parts));
  assert.equal(text[0].text.replace(/\r\n/g, '\n'), BODY);
  assert.doesNotMatch(JSON.stringify(m.headers), /"Bcc"/i, 'no Bcc header when there are no bcc recipients');
});

test('send --html sends an HTML body; Bcc recipients get it without seeing the Bcc', { timeout: 30000 }, async () => {
  const html = '<html><body><p>Grüße &amp; <b>bold</b> ✓</p></body></html>\n';
  const m = await sendAndRead(['--to', 'a@example.com', '--bcc', 'hidden@example.com', '--subject', 'html', '--html'], html);
  const part = m.parts.filter((p) => p.content_type === 'text/html');
  assert.equal(part.length, 1, JSON.stringify(m.parts));
  assert.equal(part[0].text.replace(/\r\n/g, '\n'), html);
  assert.ok(m.recipients.includes('hidden@example.com'), JSON.stringify(m.recipients));
  assert.doesNotMatch(JSON.stringify(m.headers), /hidden@example\.com/, 'Bcc is not shown to recipients');
});

test('send --body-file reads the body from a file', { timeout: 30000 }, async () => {
  const file = h.p('body.txt');
  const text = 'From a file: ✓\nsecond line\n';
  fs.writeFileSync(file, text);
  const m = await sendAndRead(['--to', 'a@example.com', '--subject', 'file', '--body-file', file], 'NOT THIS');
  const part = m.parts.filter((p) => p.content_type === 'text/plain');
  assert.equal(part.length, 1);
  assert.equal(part[0].text.replace(/\r\n/g, '\n'), text);
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
  // One ? per byte of what is not printable text (the C1 CSI is two bytes in UTF-8).
  assert.match(r.stderr, /Denied\?\[2J\?+31m now/);
  assert.doesNotMatch(r.stderr, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/, JSON.stringify(r.stderr));
});

// Issue 11 item 5: a temporary failure no longer loses the message (exit 75 left it to the
// caller): it goes to the broker's spool, send exits 0 saying so, and the spool delivers it.
test('a Graph 503 puts the message in the broker spool (exit 0), which delivers it', { timeout: 60000 }, async () => {
  const before = (await h.mail()).length;
  await h.addFault({ endpoint: 'graph', mode: 'status', status: 503, retry_after: 5 });
  const r = await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 'later', '--config', h.conf],
    { input: 'body\n' });
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /queued in the broker's spool/);
  const listed = await h.adminRequest({ op: 'queue.list' });
  assert.equal(listed.ok, true, JSON.stringify(listed));
  assert.equal(listed.total, 1, JSON.stringify(listed));
  assert.equal((await h.adminRequest({ op: 'queue.flush' })).ok, true);
  await waitFor('the spooled message to arrive', async () => (await h.mail()).length > before, { timeoutMs: 30000 });
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
  const n = await deliveredCount();
  const r = await h.cli(['send', '-p', 'alerts', '--to', 'a@example.com evil@example.com', '--subject', 's',
    '--config', h.conf], { input: 'body\n' });
  const got = await deliveredSince(n);
  if (r.code === 0) {
    // Accepted: then every address given must be a recipient.
    assert.deepEqual([...got[0].recipients].sort(), ['a@example.com', 'evil@example.com'],
      'the message went out with part of the --to argument dropped');
  } else {
    assert.equal(r.code, 64, `exit ${r.code}: ${r.stderr}`);
    assert.equal(got.length, 0);
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
