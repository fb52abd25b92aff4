'use strict';
// Secrets stay in secret memory (issue 9 item 6, design.md §9): after a run of refreshes, a scan
// of every readable mapping of the broker (/proc/PID/maps + /proc/PID/mem, read as root) finds
// the refresh tokens and access tokens it handled only in secret mappings — the ones
// common/secret.c makes, marked MADV_DONTDUMP ("dd" in /proc/PID/smaps) — never in [heap], a
// thread's malloc arena, a stack or a library's data. The copies that used to stay behind: the
// form body libcurl copied, the raw response in curl's and GnuTLS's receive buffers.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setup, sleep, SANITIZED } = require('./harness');

const REFRESHES = 8;
const TOKEN = { v: 1, op: 'token', profile: 'alerts' };

let h;
before(async () => {
  // meson sets MALLOC_PERTURB_, which makes glibc overwrite freed blocks: a deployed broker
  // runs without it, and so must this one, or the copies freed without a wipe would not show.
  h = await setup({ brokerEnv: { MALLOC_PERTURB_: null } });
});
after(() => h && h.teardown());

// The broker's mappings with their flags: [{ start, end, perms, name, flags: Set }].
function mappings(pid) {
  const regions = [];
  let cur = null;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      cur = { start: parseInt(m[1], 16), end: parseInt(m[2], 16), perms: m[3], name: m[4], flags: new Set() };
      regions.push(cur);
    } else if (cur && line.startsWith('VmFlags:')) {
      for (const f of line.slice(8).trim().split(/\s+/)) cur.flags.add(f);
    }
  }
  return regions;
}

// Where each needle occurs: [{ needle index, region }], with the broker stopped meanwhile so
// that the picture is consistent.
function scan(pid, needles) {
  const hits = [];
  process.kill(pid, 'SIGSTOP');
  try {
    const regions = mappings(pid);
    const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
    try {
      for (const r of regions) {
        if (r.perms[0] !== 'r' || ['[vvar]', '[vsyscall]', '[vdso]'].includes(r.name)) continue;
        const chunk = 4 << 20;
        const overlap = 512; // longer than any needle, so none is missed at a chunk border
        for (let at = r.start; at < r.end; at += chunk) {
          const len = Math.min(chunk + overlap, r.end - at);
          const buf = Buffer.alloc(len);
          let n;
          try {
            n = fs.readSync(fd, buf, 0, len, at);
          } catch (_) {
            continue; // a guard page or I/O mapping: nothing a secret could be in
          }
          needles.forEach((needle, i) => {
            for (let p = buf.indexOf(needle, 0); p >= 0 && p < n; p = buf.indexOf(needle, p + 1)) {
              if (at + p < Math.min(at + chunk, r.end)) hits.push({ i, region: r });
            }
          });
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  return hits;
}

function secretMapping(region) {
  return region.flags.has('dd') && region.name === '';
}

function describe(region) {
  const kind = region.name || 'anonymous';
  return `${kind} ${region.start.toString(16)}-${region.end.toString(16)} ${region.perms} [${[...region.flags].join(' ')}]`;
}

test(`after ${REFRESHES} refreshes no token is left outside secret memory`, { timeout: 120000 }, async (t) => {
  // AddressSanitizer's own allocator, quarantine and terabytes of shadow mappings are not the
  // production picture (and take longer than the test's time to read): the plain build runs it.
  if (SANITIZED) {
    t.skip('not under AddressSanitizer');
    return;
  }
  const refreshTokens = [h.canaryRefreshToken];
  const accessTokens = [];
  await h.resetCounters();
  for (let i = 0; i < REFRESHES; i++) {
    // A min_ttl no cached token meets: each request refreshes, rotating the refresh token.
    const r = await h.rawRequest({ ...TOKEN, min_ttl: 86400 }, 20000);
    assert.equal(r.ok, true, JSON.stringify(r));
    accessTokens.push(r.access_token);
    const generations = await h.refreshTokenGenerations();
    refreshTokens.push((await h.readRefreshTokenGeneration('alerts', generations.at(-1))).token);
  }
  // And the cached token handed out once more, without a refresh.
  const cached = await h.rawRequest(TOKEN, 20000);
  assert.equal(cached.access_token, accessTokens.at(-1));
  const counters = await h.counters();
  t.diagnostic(`upstream token requests: ${JSON.stringify(counters.token ?? counters)}`);
  const unique = new Set(refreshTokens);
  assert.ok(unique.size >= 2, 'the refresh token rotated at least once');
  await sleep(200); // the reply written and its buffers released

  // The whole value, and two 16-character pieces of it (a copy split across buffers, or
  // URL-encoded around them, still shows).
  const secrets = [
    ...[...unique].map((v, n) => ({ kind: n === unique.size - 1 ? 'current refresh token' : 'old refresh token', v })),
    ...[...new Set(accessTokens)].map((v, n, all) => ({ kind: n === all.length - 1 ? 'live access token' : 'old access token', v })),
  ];
  const needles = [];
  for (const s of secrets) {
    assert.ok(s.v.length >= 32, `a ${s.kind} is long enough to cut pieces from`);
    const mid = s.v.length >> 1;
    for (const piece of [s.v, s.v.slice(-16), s.v.slice(mid, mid + 16)]) needles.push({ s, piece, whole: piece === s.v });
  }
  const hits = scan(h.brokerPid, needles.map((n) => Buffer.from(n.piece, 'latin1')));

  // All of its memory locked too (mlockall: as root the broker has CAP_IPC_LOCK), so that what
  // a library holds for a while cannot reach swap either.
  // (AddressSanitizer turns mlockall() into a no-op.)
  const heap = mappings(h.brokerPid).find((r) => r.name === '[heap]');
  if (!SANITIZED) assert.ok(heap && heap.flags.has('lo'), `the broker's [heap] is locked: ${heap && describe(heap)}`);
  const status = fs.readFileSync(`/proc/${h.brokerPid}/status`, 'utf8');
  t.diagnostic(status.split('\n').filter((l) => /^(VmPeak|VmSize|VmLck|VmRSS):/.test(l)).join(', ').replace(/\s+/g, ' '));

  const outside = hits.filter((x) => !secretMapping(x.region));
  const heapWhole = (kind) => hits.filter((x) => needles[x.i].whole && needles[x.i].s.kind === kind && x.region.name === '[heap]').length;
  t.diagnostic(`whole-value hits in [heap]: current refresh token ${heapWhole('current refresh token')}, ` +
    `old refresh tokens ${heapWhole('old refresh token')}, live access token ${heapWhole('live access token')}, ` +
    `old access tokens ${heapWhole('old access token')}`);
  t.diagnostic(`hits outside secret mappings: ${outside.length} (${outside.filter((x) => needles[x.i].whole).length} whole values)`);
  const live = needles.findIndex((n) => n.whole && n.s.kind === 'live access token');
  assert.ok(hits.some((x) => x.i === live && secretMapping(x.region)),
    'the scan finds the cached live access token in secret memory (else it sees nothing at all)');
  const report = outside.slice(0, 12).map((x) => `${needles[x.i].s.kind} (…${needles[x.i].s.v.slice(-6)}, ` +
    `${needles[x.i].whole ? 'whole' : 'piece'}) in ${describe(x.region)}`);
  assert.equal(outside.length, 0, `tokens outside secret memory:\n${report.join('\n')}`);
});

test('with RLIMIT_MEMLOCK too small the broker still starts, unlocked, and names the limit to raise', { timeout: 60000 }, async () => {
  await h.stopBroker();
  // Without CAP_IPC_LOCK the limit applies, even to root.
  await h.startBroker({ wrapper: ['setpriv', '--bounding-set=-ipc_lock', 'prlimit', '--memlock=1048576:1048576'] });
  const log = h.brokerLog();
  assert.match(log, /Memory not locked: RLIMIT_MEMLOCK is 1024 KiB, less than the 128 MiB .*LimitMEMLOCK=128M/);
  const heap = mappings(h.brokerPid).find((r) => r.name === '[heap]');
  // (AddressSanitizer allocates with mmap(): no [heap] to look at.)
  if (!SANITIZED) assert.ok(heap && !heap.flags.has('lo'), 'the heap is not locked');
  const r = await h.rawRequest({ ...TOKEN, min_ttl: 86400 }, 20000);
  assert.equal(r.ok, true, JSON.stringify(r));
});
