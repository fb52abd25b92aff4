'use strict';
// credbroker send's MIME options (issue 11 item 4): what is refused before the broker or Graph
// is asked, --save-to-sent-items, and (with an emulator that stores MIME deliveries) a message
// with attachments, an HTML alternative and extra fields arriving byte-exact.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { setup } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(() => h && h.teardown());

const send = (args, opts = { input: 'body\n' }) =>
  h.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's', '--config', h.conf, ...args], opts);

test('refused before anything is sent: bad --header, --attach, --from, --reply-to, --save-to-sent-items', { timeout: 60000 }, async () => {
  const sentBefore = (await h.counters()).send_mail;
  const cases = [
    [['--header', 'X-A: b\nBcc: evil@example.com'], 64],
    [['--header', 'Bad Name: x'], 64],
    [['--header', 'Subject: again'], 64],
    [['--header', 'Content-Type: text/html'], 64],
    [['--header', 'no colon'], 64],
    [['--attach', h.p('does-not-exist')], 66],
    [['--attach', '/etc/hostname;type=multipart/mixed'], 64],
    [['--attach', '/etc/hostname;type=bogus'], 64],
    [['--from', 'not an address'], 64],
    [['--reply-to', 'a@b@example.com'], 64],
    [['--save-to-sent-items', 'maybe'], 64],
    [['--html', '--html-file', '/etc/hostname'], 64],
    [['--subject', 'two\nlines'], 64],
  ];
  for (const [args, code] of cases) {
    const r = await send(args);
    assert.equal(r.code, code, `${JSON.stringify(args)}: exit ${r.code} ${r.stderr}`);
    assert.match(r.stderr, /credbroker: /, `${JSON.stringify(args)} says why`);
    assert.equal(r.stdout, '');
  }
  assert.equal((await h.counters()).send_mail, sentBefore, 'Graph was never called');
});

// Graph's MIME sendMail has no saveToSentItems: --save-to-sent-items no sends the message as a
// draft marked PidTagDeleteAfterSubmit ("Boolean 0x0E01"), which Exchange removes from Sent
// Items once submitted; the emulator records the delivery with save_to_sent_items false.
test('--save-to-sent-items no reaches Graph (and needs Mail.ReadWrite, which the error names)', { timeout: 60000 }, async () => {
  // The default account has Mail.Send only: the draft is refused, the message says why.
  const refused = await send(['--save-to-sent-items', 'no']);
  assert.equal(refused.code, 77, refused.stderr);
  assert.match(refused.stderr, /kept out of Sent Items.*Mail\.ReadWrite/);
  const G = 'https://graph.microsoft.com';
  const scopes = [`${G}/Mail.Send`, `${G}/Mail.ReadWrite`];
  const hr = await setup({ refreshTokenScopes: scopes, profiles: { alerts: { account: 'alerts', scopes } } });
  try {
    const one = (save) => hr.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 's', '--config', hr.conf,
      '--save-to-sent-items', save], { input: 'body\n' });
    const r = await one('no');
    assert.equal(r.code, 0, r.stderr);
    const got = await hr.emulatorAdmin('GET', '/admin/mail/delivered');
    assert.equal(got.length, 1);
    assert.equal(got[0].via, 'draft');
    assert.equal(got[0].save_to_sent_items, false);
    const kept = await one('yes');
    assert.equal(kept.code, 0, kept.stderr);
    const both = await hr.emulatorAdmin('GET', '/admin/mail/delivered');
    assert.equal(both[1].save_to_sent_items, true);
    assert.notEqual(both[1].via, 'draft', 'a message Sent Items may keep goes as one sendMail');
  } finally {
    await hr.teardown();
  }
});

test('attachments, HTML alternative, UTF-8 names and --header arrive byte-exact (MIME store)', { timeout: 60000 }, async (t) => {
  const probe = await h.emulatorAdmin('GET', '/admin/mail/delivered', undefined, { allowError: true });
  if (probe.status !== 200) {
    t.skip('this emulator has no MIME delivery store (tests/emulator/graph-mail.js)');
    return;
  }
  const bin = crypto.randomBytes(200 * 1024 + 7);
  const binPath = h.p('Prüfbericht – März.bin');
  fs.writeFileSync(binPath, bin);
  const htmlPath = h.p('body.html');
  fs.writeFileSync(htmlPath, '<p>Grüße ✓</p>\n');
  const r = await send(['--subject', 'Ünïcode ✓', '--attach', binPath, '--attach', `${htmlPath};type=text/plain`,
    '--html-file', htmlPath, '--header', 'X-Ticket: 4711', '--reply-to', 'Ops Team <ops@example.com>'],
  { input: 'Hallo ✓\n' });
  assert.equal(r.code, 0, r.stderr);
  const list = probe.body.length;
  const delivered = await h.emulatorAdmin('GET', '/admin/mail/delivered');
  assert.equal(delivered.length, list + 1, 'one message delivered');
  const meta = delivered[delivered.length - 1];
  assert.equal(meta.subject, 'Ünïcode ✓');
  const msg = await h.emulatorAdmin('GET', `/admin/mail/delivered/message?id=${encodeURIComponent(meta.id)}`);
  const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
  const att = msg.parts.find((p) => p.filename === 'Prüfbericht – März.bin');
  assert.ok(att, JSON.stringify(msg.parts.map((p) => p.filename)));
  assert.equal(att.size, bin.length);
  assert.equal(att.sha256, sha(bin));
  assert.ok(msg.parts.some((p) => p.content_type === 'text/html'), 'the HTML alternative');
  assert.ok(msg.parts.some((p) => p.content_type === 'text/plain' && p.filename === 'body.html'), 'the typed attachment');
  const raw = JSON.stringify(msg.headers);
  assert.match(raw, /X-Ticket/);
  assert.match(raw, /ops@example\.com/);
});

// Issue 11 item 4: over Graph's direct limit the message takes the draft + upload-session path
// (mail_deliver() → graph_mail_send()), which needs Mail.ReadWrite besides Mail.Send; both
// attachments arrive byte-exact.
test('a 20 MB and a 3.1 MB attachment arrive byte-exact (large-message path)', { timeout: 240000 }, async (t) => {
  const probe = await h.emulatorAdmin('GET', '/admin/mail/delivered', undefined, { allowError: true });
  if (probe.status !== 200) {
    t.skip('this emulator has no MIME delivery store (tests/emulator/graph-mail.js)');
    return;
  }
  const G = 'https://graph.microsoft.com';
  const scopes = [`${G}/Mail.Send`, `${G}/Mail.ReadWrite`];
  const big = crypto.randomBytes(20 * 1000 * 1000);
  const mid = crypto.randomBytes(3100 * 1000);
  const hl = await setup({ refreshTokenScopes: scopes, profiles: { alerts: { account: 'alerts', scopes } } });
  try {
    fs.writeFileSync(hl.p('big.bin'), big);
    fs.writeFileSync(hl.p('mid.pdf'), mid);
    const r = await hl.cli(['send', '-p', 'alerts', '--to', 'a@example.com', '--subject', 'large', '--config', hl.conf,
      '--attach', hl.p('big.bin'), '--attach', hl.p('mid.pdf')], { input: 'two large files\n', timeoutMs: 200000 });
    assert.equal(r.code, 0, r.stderr);
    const delivered = await hl.emulatorAdmin('GET', '/admin/mail/delivered');
    const meta = delivered[delivered.length - 1];
    assert.equal(meta.subject, 'large');
    const msg = await hl.emulatorAdmin('GET', `/admin/mail/delivered/message?id=${encodeURIComponent(meta.id)}`);
    const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
    for (const [name, data, type] of [['big.bin', big, 'application/octet-stream'], ['mid.pdf', mid, 'application/pdf']]) {
      const p = msg.parts.find((x) => x.filename === name);
      assert.ok(p, `${name} arrived: ${JSON.stringify(msg.parts.map((x) => x.filename))}`);
      assert.equal(p.size, data.length, name);
      assert.equal(p.sha256, sha(data), name);
      assert.equal(p.content_type, type, name);
    }
  } finally {
    await hl.teardown();
  }
});
