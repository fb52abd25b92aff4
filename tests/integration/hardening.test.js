'use strict';
// The service unit's exposure (issue 13 item 5): `systemd-analyze security --offline=true`
// scores the unit as built for installation at or below 1.5, and the peer-rules drop-in (which
// restores CAP_SYS_PTRACE and AF_NETLINK for exe/unit rules) stays opt-in.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const BUILD = process.env.CREDBROKER_BUILD_ROOT;
const SOURCE = process.env.CREDBROKER_SOURCE_ROOT;
const MAX_EXPOSURE = 1.5;
const haveAnalyze = spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0;

function exposure(unitFile) {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', unitFile], { encoding: 'utf8' });
  const m = (r.stdout + r.stderr).match(/Overall exposure level for \S+: (\d+\.\d+)/);
  assert.ok(m, `systemd-analyze security printed no score: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

test(`credbroker.service scores at most ${MAX_EXPOSURE}`, { skip: !haveAnalyze && 'systemd-analyze is not installed' }, (t) => {
  for (const unit of [path.join(SOURCE, 'dist/credbroker.service'), path.join(BUILD, 'dist/credbroker.service')]) {
    const score = exposure(unit);
    t.diagnostic(`${unit}: exposure ${score}`);
    assert.ok(score <= MAX_EXPOSURE, `${unit} scores ${score}, above ${MAX_EXPOSURE}`);
  }
  const service = fs.readFileSync(path.join(SOURCE, 'dist/credbroker.service'), 'utf8');
  assert.match(service, /^CapabilityBoundingSet=$/m, 'the default unit grants a capability');
  assert.doesNotMatch(service, /^AmbientCapabilities=/m);
  assert.doesNotMatch(service, /^RestrictAddressFamilies=.*AF_NETLINK/m);
  assert.match(service, /^User=credbroker$/m);
  assert.match(service, /^LoadCredential=pkcs11-pin:/m);
});

test('the peer-rules drop-in is what adds CAP_SYS_PTRACE and AF_NETLINK', { skip: !haveAnalyze && 'systemd-analyze is not installed' }, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbharden-'));
  try {
    const dropin = fs.readFileSync(path.join(SOURCE, 'dist/credbroker.service.d/peer-rules.conf.example'), 'utf8');
    assert.match(dropin, /^CapabilityBoundingSet=CAP_SYS_PTRACE$/m);
    assert.match(dropin, /^AmbientCapabilities=CAP_SYS_PTRACE$/m);
    assert.match(dropin, /^RestrictAddressFamilies=AF_NETLINK$/m);
    // Merged as systemd merges a drop-in: the same keys appended to [Service].
    const merged = path.join(dir, 'credbroker.service');
    fs.writeFileSync(merged, fs.readFileSync(path.join(SOURCE, 'dist/credbroker.service'), 'utf8') + '\n' + dropin);
    const score = exposure(merged);
    t.diagnostic(`with peer-rules.conf: exposure ${score}`);
    assert.ok(score > MAX_EXPOSURE, 'the drop-in no longer changes the score: is it still needed?');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
