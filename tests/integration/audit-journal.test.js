'use strict';
// The journald mirror of the audit log is best effort (issue 12 item 6, docs/audit.md
// "journald"): a journal that does not read never holds up or fails the file log. The broker
// runs in a private mount namespace whose /run/systemd/journal/socket is a datagram socket that
// nobody reads (dgram-hole.c): once its receive queue is full (net.unix.max_dgram_qlen
// datagrams) a blocking send would block the event loop for good. Thousands of cached tokens must
// still be issued promptly, every one of them in the audit log, and the broker must stop on
// SIGTERM. Needs root (mount namespaces), unshare and a build with libsystemd.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { setup, spawnTracked, SANITIZED } = require('./harness');

// Enough records to fill the kernel's queue (max_dgram_qlen, 512 by default) and the mirror's
// own (1,024 records) several times over.
const QLEN = Number(fs.readFileSync('/proc/sys/net/unix/max_dgram_qlen', 'utf8'));
const N = Math.min(Math.max(2000, 2 * (QLEN + 1024)), 20000);
const CONNECTIONS = 4;
const BOUND_MS = SANITIZED ? 30000 : 10000;
const HOLE = process.env.CREDBROKER_DGRAM_HOLE;

// Why the test cannot run here, or null.
function skipReason() {
  if (process.env.CREDBROKER_HAVE_SYSTEMD !== '1') return 'built without libsystemd';
  if (!HOLE) return 'no dgram-hole helper';
  if (process.getuid() !== 0) return 'needs root for a mount namespace';
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']);
  if (probe.error || probe.status !== 0) return 'unshare --mount does not work here';
  // The bind mount needs a directory to cover: the journal's own, or /run/systemd.
  if (!fs.existsSync('/run/systemd')) return 'no /run/systemd to mount over';
  return null;
}
const SKIP = skipReason();

let h;
let dir;
let hole;
let holeOut = '';

before(async () => {
  if (SKIP) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credbroker-journal-'));
  // What is mounted where: over /run/systemd/journal when there is one, else over /run/systemd
  // with a journal directory inside; either way the broker finds /run/systemd/journal/socket.
  const overJournal = fs.existsSync('/run/systemd/journal');
  const source = overJournal ? path.join(dir, 'journal') : dir;
  const target = overJournal ? '/run/systemd/journal' : '/run/systemd';
  fs.mkdirSync(path.join(dir, 'journal'), { mode: 0o755 });
  hole = spawnTracked(HOLE, [path.join(dir, 'journal', 'socket')], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    hole.stdout.on('data', (d) => {
      holeOut += d;
      if (holeOut.startsWith('ready\n')) resolve();
    });
    hole.once('exit', (code) => reject(new Error(`dgram-hole exited ${code}`)));
  });
  h = await setup({
    config: { broker: { audit_journal: 'yes', request_rate_per_uid: 0 } },
    brokerWrapper: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
      'mount --bind "$0" "$1" && shift && exec "$@"', source, target],
  });
});

after(async () => {
  if (h) await h.teardown();
  if (hole && hole.exitCode === null) hole.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// Ends the hole: it counts the datagrams left in its queue and exits.
async function holeCount() {
  const exited = new Promise((resolve) => hole.once('exit', resolve));
  hole.stdin.end();
  await exited;
  return Number(holeOut.slice('ready\n'.length).trim());
}

async function issue(total) {
  await Promise.all(Array.from({ length: CONNECTIONS }, async (_, i) => {
    const c = await h.rawClient();
    try {
      const n = Math.floor(total / CONNECTIONS) + (i < total % CONNECTIONS ? 1 : 0);
      for (let k = 0; k < n; k++) {
        const r = await c.request({ v: 1, op: 'token', profile: 'alerts' }, BOUND_MS);
        assert.equal(r.ok, true, JSON.stringify(r));
      }
    } finally {
      c.close();
    }
  }));
}

test('a journal that never reads holds up neither the tokens nor the audit log nor shutdown', {
  skip: SKIP || false, timeout: 120000,
}, async () => {
  assert.doesNotMatch(h.brokerLog(), /journald is not running/, 'the mirror is on');
  const before = h.auditLines().length;

  const started = Date.now();
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${N} tokens took longer than ${BOUND_MS} ms`)), BOUND_MS);
  });
  try {
    await Promise.race([issue(N), deadline]);
  } finally {
    clearTimeout(timer);
  }
  const ms = Date.now() - started;

  const t0 = Date.now();
  const stopped = await h.stopBroker({ timeoutMs: BOUND_MS });
  const stopMs = Date.now() - t0;
  assert.equal(stopped.signal, null, `the broker exited by itself (${stopMs} ms): ${stopped.stderr.slice(-2000)}`);
  assert.equal(stopped.code, 0, stopped.stderr.slice(-2000));
  assert.ok(stopMs < BOUND_MS, `shutdown took ${stopMs} ms`);

  // Every token has its record, and the chain is intact and sealed at shutdown.
  const records = h.auditLines().slice(before);
  assert.equal(records.filter((r) => r.event === 'issue' && r.decision === 'allow').length, N);
  const v = await h.cli(['audit', 'verify', '--config', h.conf]);
  assert.equal(v.code, 0, `${v.stdout}${v.stderr}`);

  // The mirror really sent to the stuck socket until its queue was full, and then dropped
  // records rather than wait, and said so.
  const queued = await holeCount();
  assert.ok(queued > 0 && queued <= QLEN + 1, `${queued} datagrams were queued (max_dgram_qlen ${QLEN})`);
  assert.match(stopped.stderr, /not mirrored to journald/);
  process.stderr.write(`# ${N} tokens in ${ms} ms, shutdown ${stopMs} ms, ${queued} datagrams queued\n`);
});
