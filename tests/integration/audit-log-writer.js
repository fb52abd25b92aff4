'use strict';
// Writes synthetic audit logs in format v1 (docs/audit.md) byte for byte, for
// audit-verify.test.js and the verifier's benchmark: a chain of records with signed
// checkpoints (C2SP signed notes, Ed25519 via node:crypto).
const crypto = require('node:crypto');

const KEY_NAME = 'credbroker-audit';
// common/signed-note.h: a checkpoint record comes at most this many records after its count.
const NOTE_PENDING_MAX = 8;
const maxLag = (n) => (NOTE_PENDING_MAX + 2) * n + 64;

function sha256(data) {
  return crypto.createHash('sha256').update(data).digest();
}

function newKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const typed = Buffer.concat([Buffer.from([1]), raw]);
  const hash = sha256(Buffer.concat([Buffer.from(KEY_NAME + '\n'), typed])).subarray(0, 4);
  return {
    privateKey,
    hash,
    text: `${KEY_NAME}+${hash.toString('hex')}+${typed.toString('base64')}`,
  };
}

function rfc3339(ms) {
  return new Date(ms).toISOString(); // 2026-12-04T21:00:00.123Z
}

function noteBody(logId, count, head, timeMs) {
  return `credbroker/${logId}\n${count}\n${head.toString('base64')}\ntime ${rfc3339(timeMs)}\n`;
}

function signNote(key, body) {
  const sig = crypto.sign(null, Buffer.from(body), key.privateKey);
  const b64 = Buffer.concat([key.hash, sig]).toString('base64');
  return `${body}\n\u2014 ${KEY_NAME} ${b64}\n`;
}

// A chain writer: add(members) appends a record; checkpoint() a signed checkpoint over the
// chain so far (or over `count` records when the signature "was requested" earlier).
class Chain {
  constructor({ key = newKey(), logId = crypto.randomBytes(16).toString('hex'), time,
    keyInGenesis = true } = {}) {
    this.key = key;
    this.logId = logId;
    this.bootId = crypto.randomBytes(16).toString('hex');
    this.time = time ?? Date.UTC(2026, 11, 4, 21, 0, 0, 123);
    this.lines = []; // without "\n"
    this.hashes = [];
    this.base = 0; // seq of lines[0] after flush()
    this.lastNote = null;
    this.add({ event: 'genesis', log_id: this.logId, ...(keyInGenesis ? { key: key.text } : {}) });
  }
  get seq() {
    return this.base + this.lines.length;
  }
  hash(seq) {
    return this.hashes[seq - this.base];
  }
  add(members) {
    const seq = this.seq;
    const prev = seq === 0 ? '0'.repeat(64) : this.hash(seq - 1).toString('hex');
    this.time += 7;
    // The broker's member order (docs/audit.md): v and boot_id, the record's own members, then
    // seq, time and prev, which change from one record to the next.
    const line = JSON.stringify({
      v: 1, boot_id: this.bootId, ...members, seq, time: rfc3339(this.time), prev,
    });
    return this.addLine(line);
  }
  // A line as it is (JSON.stringify() cannot write a duplicate member or "\u0000"): edit(line)
  // returns it changed, from the record add(members) would write.
  addRaw(members, edit) {
    this.add(members);
    const line = this.lines.pop();
    this.hashes.pop();
    return this.addLine(edit(line));
  }
  addLine(line) {
    const seq = this.seq;
    this.lines.push(line);
    this.hashes.push(sha256(line));
    return seq;
  }
  token(i) {
    return this.add({
      event: 'token', peer: { uid: 1000 + (i % 3), exe: '/usr/bin/mutt' }, profile: 'mail',
      account: 'ops@example.com', outcome: 'granted', rule: 'mail-users',
      fingerprint: sha256(String(i)).toString('hex').slice(0, 32),
    });
  }
  checkpoint(count = this.seq, key = this.key) {
    const head = this.hash(count - 1);
    const note = signNote(key, noteBody(this.logId, count, head, this.time));
    this.lastNote = note;
    return this.add({
      event: 'checkpoint', log_id: this.logId, count, head: head.toString('hex'), note,
    });
  }
  // A checkpoint over `count` records whose record comes `lag` records after that count (the
  // broker writes one at most maxLag(n) later): token records up to there, then the checkpoint.
  checkpointAtLag(count, lag) {
    for (let i = 0; this.seq < count + lag; i++) this.token(i);
    return this.checkpoint(count);
  }
  // A broker that wrote no checkpoint since it started repeats none (lastNote null).
  fileStart() {
    return this.add({
      event: 'file.start', log_id: this.logId,
      ...(this.lastNote ? { checkpoint: this.lastNote } : {}),
    });
  }
  // n records with a checkpoint after every `every` and one at the end.
  records(n, every = 1000) {
    for (let i = 0; i < n; i++) {
      this.token(i);
      if ((i + 1) % every === 0) this.checkpoint();
    }
    return this;
  }
  text(from = 0, to = this.lines.length) {
    return this.lines.slice(from, to).map((l) => l + '\n').join('');
  }
  // Recomputes prev, hash and seq from line `from` on (an attacker without the key).
  rechain(from) {
    for (let i = from; i < this.lines.length; i++) {
      const o = JSON.parse(this.lines[i]);
      o.seq = i;
      o.prev = i === 0 ? '0'.repeat(64) : this.hashes[i - 1].toString('hex');
      this.lines[i] = JSON.stringify(o);
      this.hashes[i] = sha256(this.lines[i]);
    }
  }
}

module.exports = { Chain, newKey, noteBody, signNote, sha256, maxLag };

if (require.main === module) {
  // node audit-log-writer.js N FILE: a log of N token records, checkpointed every 1000.
  const fs = require('node:fs');
  const n = Number(process.argv[2]);
  const fd = fs.openSync(process.argv[3], 'w');
  const c = new Chain();
  let written = 0; // seq of the first line not yet written
  const write = () => {
    fs.writeSync(fd, c.text(written - c.base));
    written = c.seq;
    const keep = 2000;
    if (c.lines.length > keep) {
      c.base += c.lines.length - keep;
      c.lines = c.lines.slice(-keep);
      c.hashes = c.hashes.slice(-keep);
    }
  };
  for (let done = 0; done < n; done += 10000) {
    c.records(Math.min(10000, n - done));
    write();
  }
  c.checkpoint();
  write();
  fs.closeSync(fd);
  console.log(c.key.text);
}
