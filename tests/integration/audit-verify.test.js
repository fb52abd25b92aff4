'use strict';
// credbroker audit verify against synthetic logs written byte for byte to docs/audit.md
// (audit-log-writer.js): each kind of tampering is found with the right seq and exit status.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawnSync } = require('node:child_process');
const { Chain, newKey, maxLag } = require('./audit-log-writer.js');

const CREDBROKER = process.env.CREDBROKER;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'audit-verify-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function write(text, name = `log${n++}`) {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

function verify(args) {
  const r = spawnSync(CREDBROKER, ['audit', 'verify', ...args], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

// 2,500 records, checkpoints every 1,000 (seq 1001, 2002) and a final one (seq 2503).
function chain() {
  const c = new Chain();
  c.records(2500, 1000);
  c.checkpoint();
  return c;
}

function expectBroken(r, file, line, seq, what) {
  assert.strictEqual(r.status, 1, r.out + r.err);
  assert.strictEqual(r.out, `${file}:${line}: seq ${seq}: ${r.out.split(': ').slice(2).join(': ')}`);
  assert.match(r.out, new RegExp(`^${file}:${line}: seq ${seq}: ${what}`), r.out);
}

test('an intact, sealed log: exit 0 (key trusted on first use, or given)', () => {
  const c = chain();
  const p = write(c.text());
  let r = verify([p]);
  assert.strictEqual(r.status, 0, r.out);
  assert.match(r.out, /^intact: 2504 records/);
  assert.match(r.err, /trust on first use/);
  r = verify(['--key', c.key.text, p]);
  assert.strictEqual(r.status, 0, r.out);
  assert.doesNotMatch(r.err, /trust on first use/);
});

test('one byte flipped in a middle record: changed record, that seq', () => {
  const c = chain();
  c.lines[1500] = c.lines[1500].replace('"outcome":"granted"', '"outcome":"grantee"');
  const p = write(c.text());
  expectBroken(verify([p]), p, 1501, 1500, 'changed record');
});

test('a line deleted: removed record(s), the first missing seq', () => {
  const c = chain();
  c.lines.splice(1500, 1);
  const p = write(c.text());
  expectBroken(verify([p]), p, 1501, 1500, 'removed record\\(s\\)');
});

test('two lines swapped: reordered records', () => {
  const c = chain();
  [c.lines[1500], c.lines[1501]] = [c.lines[1501], c.lines[1500]];
  const p = write(c.text());
  expectBroken(verify([p]), p, 1501, 1501, 'reordered records');
});

test('a line inserted with the same seq: inserted record', () => {
  const c = chain();
  const forged = c.lines[1500].replace('"outcome":"granted"', '"outcome":"denied"');
  c.lines.splice(1500, 0, forged);
  const p = write(c.text());
  expectBroken(verify([p]), p, 1502, 1500, 'inserted record');
});

test('a forged line with a recomputed chain: the next checkpoint does not match', () => {
  const c = chain();
  c.lines.splice(1500, 0, c.lines[1499]);
  c.hashes.splice(1500, 0, c.hashes[1499]);
  c.rechain(1500);
  const p = write(c.text());
  // The checkpoint that was at seq 2002 (count 2002) is now at seq 2003.
  expectBroken(verify([p]), p, 2004, 2003, 'checkpoint does not match the chain');
});

test('a forged line with a recomputed chain after the last checkpoint: unsealed, exit 2', () => {
  const c = chain();
  c.token(99999);
  const p = write(c.text());
  const r = verify([p]);
  assert.strictEqual(r.status, 2, r.out);
  assert.match(r.out, new RegExp(`^${p}:2505: seq 2504: unsealed`));
});

test('the tail truncated (no final newline): exit 2', () => {
  const c = chain();
  const t = c.text();
  const p = write(t.slice(0, t.length - 40));
  const r = verify([p]);
  assert.strictEqual(r.status, 2, r.out);
  assert.match(r.out, new RegExp(`^${p}:2504: seq 2503: truncated tail`));
});

test('re-signed with another key: signed by another key (--key), bad signature otherwise', () => {
  const c = chain();
  const other = newKey();
  // An attacker rewrites a record and every checkpoint after it with its own key.
  const d = chain();
  d.lines = d.lines.slice(0, 1002);
  d.hashes = d.hashes.slice(0, 1002);
  d.records(10, 1000);
  d.checkpoint(d.seq, other);
  const p = write(d.text());
  expectBroken(verify(['--key', c.key.text, p]), p, 1, 0, 'signed by another key');
  expectBroken(verify([p]), p, 1013, 1012, 'signed by another key');
  // Genesis kept but checkpoints re-signed: found at the first checkpoint.
  const e = chain();
  e.lines.length = 1001;
  e.hashes.length = 1001;
  e.checkpoint(1001, other);
  e.checkpoint();
  const q = write(e.text());
  expectBroken(verify(['--key', e.key.text, q]), q, 1002, 1001, 'signed by another key');
});

test('a checkpoint note changed: bad signature', () => {
  const c = chain();
  c.lines[1001] = c.lines[1001].replace(/time 2026-12-04T21:00:0(\d)/, (m, d) => `time 2026-12-04T21:00:0${(+d + 1) % 10}`);
  c.rechain(1002);
  const p = write(c.text());
  expectBroken(verify([p]), p, 1002, 1001, 'bad signature');
});

test('rotated files, .gz predecessors, a missing middle file', () => {
  const c = new Chain();
  const cuts = [];
  for (let f = 0; f < 4; f++) {
    if (f > 0) c.fileStart();
    c.records(300, 1000);
    c.checkpoint();
    cuts.push(c.seq);
  }
  const sub = fs.mkdtempSync(path.join(dir, 'rot-'));
  const log = path.join(sub, 'audit.log');
  const parts = [0, ...cuts].slice(0, 4).map((from, i) => c.text(from, cuts[i]));
  fs.writeFileSync(`${log}.3.gz`, zlib.gzipSync(parts[0]));
  fs.writeFileSync(`${log}.2`, parts[1]);
  fs.writeFileSync(`${log}.1.gz`, zlib.gzipSync(parts[2]));
  fs.writeFileSync(log, parts[3]);
  const conf = path.join(sub, 'credbroker.conf');
  fs.writeFileSync(conf, `[broker]\naudit_log = ${log}\n`, { mode: 0o600 });
  let r = verify(['--config', conf, '--key', c.key.text]);
  assert.strictEqual(r.status, 0, r.out + r.err);
  assert.match(r.out, /intact: 1208 records in 4 file/);
  fs.unlinkSync(`${log}.2`);
  r = verify(['--config', conf, '--key', c.key.text]);
  expectBroken(r, `${log}.1.gz`, 1, cuts[0], 'missing file');
  // Only the current file: starts at its file.start, needs --key.
  r = verify([log]);
  assert.strictEqual(r.status, 1);
  assert.match(r.out, /pass --key/);
  r = verify(['--key', c.key.text, log]);
  assert.strictEqual(r.status, 0, r.out);
});

test('--expect-head: the shipped checkpoint must be in the log', () => {
  const c = chain();
  const p = write(c.text());
  const head = c.hashes[2001];
  assert.strictEqual(verify(['--expect-head', `2001:${head.toString('hex')}`, p]).status, 0);
  assert.strictEqual(verify(['--expect-head', `2001:${head.toString('base64')}`, p]).status, 0);
  const wrong = Buffer.from(head);
  wrong[0] ^= 1;
  expectBroken(verify(['--expect-head', `2001:${wrong.toString('hex')}`, p]), p, 2002, 2001,
    'changed record');
  const short = write(c.text(0, 1500));
  const r = verify(['--expect-head', `2001:${head.toString('hex')}`, short]);
  assert.strictEqual(r.status, 1, r.out);
  assert.match(r.out, /seq 2001: removed record/);
});

test('a gap between checkpoints longer than configured', () => {
  const c = new Chain();
  c.records(1500, 5000);
  c.checkpoint();
  const p = write(c.text());
  expectBroken(verify([p]), p, 1502, 1501, 'gap between checkpoints');
  assert.strictEqual(verify(['--checkpoint-records', '2000', p]).status, 0);
});

test('a line torn by a crash, stepped over by the broker\'s audit.alarm', () => {
  const c = chain();
  const torn = c.lines[c.seq - 1].slice(0, 50);
  c.lines[c.seq - 1] = torn;
  c.hashes[c.seq - 1] = require('./audit-log-writer.js').sha256(torn);
  const o = JSON.parse(c.lines[c.seq - 2]);
  // The alarm continues from the last whole record's seq, prev = the torn line's hash.
  c.lines.length -= 1;
  c.hashes.length -= 1;
  const alarmSeq = o.seq + 1;
  c.lines.push(torn);
  c.hashes.push(require('./audit-log-writer.js').sha256(torn));
  c.base = -0; // seq of the alarm = index of the torn line: add() uses lines.length
  c.add({ event: 'audit.alarm', reason: 'torn_line' });
  // add() numbered it seq 2504 with prev = hash(torn) — renumber to alarmSeq.
  const a = JSON.parse(c.lines[c.lines.length - 1]);
  a.seq = alarmSeq;
  c.lines[c.lines.length - 1] = JSON.stringify(a);
  c.hashes[c.hashes.length - 1] = require('./audit-log-writer.js').sha256(c.lines[c.lines.length - 1]);
  const p = write(c.text());
  const r = verify([p]);
  assert.strictEqual(r.status, 2, r.out); // the alarm itself is unsealed
  assert.match(r.out, /seq 2003: unsealed: 501 record\(s\) after the last checkpoint \(seq 2003\.\.2503\)/);
  const bad = write(c.text(0, c.lines.length - 1) + c.lines[c.lines.length - 1].replace('torn_line', 'torn_lint') + '\n');
  expectBroken(verify([bad]), bad, c.lines.length - 1, alarmSeq, 'not a v1 record');
});

test('not a v1 record, and an over-long line', () => {
  const c = chain();
  c.lines[100] = c.lines[100].replace('{"v":1,', '{"v":2,');
  const p = write(c.text());
  expectBroken(verify([p]), p, 101, 100, 'not a v1 record');
  const d = chain();
  d.lines[100] = 'x'.repeat(70000);
  const q = write(d.text());
  expectBroken(verify([q]), q, 101, 100, 'not a v1 record \\(longer');
});

// Records after the last checkpoint that copy a seal without the key (issue: an appended copy
// of the final checkpoint was taken for a seal, and its extra members for nothing).
function lastCheckpoint(c) {
  const o = JSON.parse(c.lines[c.lines.length - 1]);
  assert.strictEqual(o.event, 'checkpoint');
  return { event: 'checkpoint', log_id: o.log_id, count: o.count, head: o.head, note: o.note };
}

test('a copy of the last checkpoint with members of its own: not a v1 record', () => {
  const c = chain();
  c.add({ ...lastCheckpoint(c), peer: { uid: 1000 }, profile: 'payroll', decision: 'allow' });
  const p = write(c.text());
  expectBroken(verify([p]), p, 2505, 2504, 'not a v1 record \\(a checkpoint record has members');
  // The same members around a file.start's, in a file of its own after the sealed one.
  const d = chain();
  const first = d.text();
  d.add({ event: 'file.start', log_id: d.logId, checkpoint: d.lastNote, decision: 'allow' });
  const q = write(first);
  const r = write(d.text(d.lines.length - 1));
  expectBroken(verify([q, r]), r, 1, 2504, 'not a v1 record \\(a file.start');
});

test('an exact copy of the last checkpoint: inserted record (no new count)', () => {
  const c = chain();
  c.add(lastCheckpoint(c));
  const p = write(c.text());
  expectBroken(verify([p]), p, 2505, 2504, 'inserted record \\(a checkpoint that covers no more');
  // An older checkpoint again, after the last one.
  const d = chain();
  const { event, log_id: logId, count, head, note } = JSON.parse(d.lines[2002]);
  d.add({ event, log_id: logId, count, head, note });
  const q = write(d.text());
  expectBroken(verify([q]), q, 2505, 2504, 'inserted record \\(a checkpoint that covers no more');
});

test('a member name twice, at any depth: not a v1 record, even unsealed', () => {
  // Which one counts depends on the reader (cJSON the first, jq the last).
  const c = chain();
  c.addRaw(lastCheckpoint(c), (l) => l.replace(',"seq":', ',"event":"issue","seq":'));
  const p = write(c.text());
  expectBroken(verify([p]), p, 2505, 2504, 'not a v1 record');
  const d = chain();
  d.addRaw({ event: 'deny', decision: 'deny' },
    (l) => l.replace('"decision":"deny"', '"decision":"deny","decision":"allow"'));
  const q = write(d.text());
  expectBroken(verify([q]), q, 2505, 2504, 'not a v1 record');
  const e = chain();
  e.addRaw({ event: 'deny', peer: { uid: 0 } }, (l) => l.replace('"uid":0', '"uid":0,"uid":1000'));
  const s = write(e.text());
  expectBroken(verify([s]), s, 2505, 2504, 'not a v1 record');
  // "\u0000" ends a name or a string for cJSON, not for other readers.
  const f = chain();
  f.addRaw({ event: 'deny', profile: 'pay' }, (l) => l.replace('"pay"', '"pay\\u0000roll"'));
  const t = write(f.text());
  expectBroken(verify([t]), t, 2505, 2504, 'not a v1 record');
  // A backslash that is itself escaped, then "u0000", is text.
  const g = chain();
  g.add({ event: 'deny', profile: 'pay\\u0000roll' });
  const u = write(g.text());
  assert.strictEqual(verify([u]).status, 2);
});

test('a file.start in the middle of a file: inserted record', () => {
  const c = chain();
  c.fileStart();
  const p = write(c.text());
  expectBroken(verify([p]), p, 2505, 2504, 'inserted record \\(a file.start that is not the first');
});

test('a genesis record after the first: inserted record', () => {
  const c = chain();
  c.addLine(c.lines[0]);
  const p = write(c.text());
  expectBroken(verify([p]), p, 2505, 0, 'inserted record \\(a genesis record');
  // At the start of a file of its own.
  const q = write(c.text(0, c.lines.length - 1));
  const r = write(c.lines[0] + '\n');
  expectBroken(verify([q, r]), r, 1, 0, 'inserted record \\(a genesis record');
});

test('a new chain at the start of a later file (a log renamed while the broker was stopped)', () => {
  const a = chain();
  const b = new Chain({ key: a.key });
  b.records(10);
  b.checkpoint();
  const p = write(a.text());
  const q = write(b.text());
  let r = verify(['--key', a.key.text, p, q]);
  assert.strictEqual(r.status, 0, r.out + r.err);
  assert.match(r.err, /starts a new chain/);
  // Only after a sealed chain: records after the old chain's last checkpoint were cut off.
  a.token(9999);
  const unsealed = write(a.text());
  expectBroken(verify(['--key', a.key.text, unsealed, q]), q, 1, 0, 'inserted record \\(a genesis record');
  // Only with the same key.
  const other = new Chain();
  other.checkpoint();
  r = verify(['--key', a.key.text, p, write(other.text())]);
  assert.strictEqual(r.status, 1, r.out);
  assert.match(r.out, /signed by another key/);
});

test('a crash during the very first write: the torn bytes, then the genesis on the next line', () => {
  const c = chain();
  const p = write(`{"v":1,"boot\n${c.text()}`);
  const r = verify(['--key', c.key.text, p]);
  assert.strictEqual(r.status, 0, r.out + r.err);
  // Anywhere else a line that is not a record needs its audit.alarm.
  const q = write(`${c.text()}{"v":1,"boot\n`);
  assert.strictEqual(verify(['--key', c.key.text, q]).status, 1);
});

test('the optional members: a file.start without a checkpoint, a genesis without a key', () => {
  // A broker that rotates before it wrote a checkpoint since it started repeats none.
  const c = chain();
  c.lastNote = null;
  const cut = c.seq;
  c.fileStart();
  c.records(10);
  c.checkpoint();
  const p = write(c.text(0, cut));
  const q = write(c.text(cut));
  assert.strictEqual(verify([p, q]).status, 0, verify([p, q]).out);
  assert.strictEqual(verify(['--key', c.key.text, q]).status, 0, verify(['--key', c.key.text, q]).out);
  const d = new Chain({ keyInGenesis: false });
  d.records(10);
  d.checkpoint();
  const s = write(d.text());
  assert.strictEqual(verify(['--key', d.key.text, s]).status, 0, verify(['--key', d.key.text, s]).out);
  expectBroken(verify([s]), s, 1, 0, 'no key to check the checkpoints with');
});

test('a checkpoint written at the largest lag the broker allows is checked', () => {
  const n = 1700; // NOTE_MAX_LAG(n) + 1 is over the verifier's minimum of 16,384 hashes
  const c = new Chain();
  c.records(n - 1, n + 10);
  const count = c.seq;
  c.checkpointAtLag(count, maxLag(n));
  let last = count;
  while (c.seq - last > n) c.checkpoint((last += n));
  c.checkpoint();
  const p = write(c.text());
  const r = verify(['--checkpoint-records', String(n), p]);
  assert.strictEqual(r.status, 0, r.out);
  // One record later it is past what the broker writes, and past what the verifier keeps.
  const d = new Chain();
  d.records(n - 1, n + 10);
  d.checkpointAtLag(count, maxLag(n) + 1);
  const q = write(d.text());
  expectBroken(verify(['--checkpoint-records', String(n), q]), q, count + maxLag(n) + 2,
    count + maxLag(n) + 1, 'checkpoint does not match the chain');
});
