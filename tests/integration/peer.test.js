'use strict';
// Peer facts (design §7, P3): uid, gid, pid, exe and unit are the kernel's, taken when the
// broker accepts. A peer that is gone by then has exe and unit unknown (null in the audit log);
// a peer that execs another program after connecting keeps the identity it had at accept.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { setup, run, spawnTracked, waitExit, waitFor, CREDBROKERD, PEER_HELPER } = require('./harness');

let h;
before(async () => {
  h = await setup();
});
after(() => h && h.teardown());

const TOKEN = { v: 1, op: 'token', profile: 'alerts' };
const NODE = fs.realpathSync(process.execPath);
const HELPER = fs.realpathSync(PEER_HELPER);
const FAULT_POINTS = process.env.CREDBROKER_FAULT_POINTS === '1';

// What the broker should find as this process's unit, for the environments the tests run in:
// outside systemd (a container) no cgroup line names a unit.
function ownUnitIsNone() {
  const text = fs.readFileSync('/proc/self/cgroup', 'utf8');
  return text.split('\n').filter(Boolean).every((line) => {
    const path = line.split(':').slice(2).join(':');
    return !/\.(service|scope)(\/|$)/.test(path);
  });
}

function lastDecisionOf(pid) {
  return h.auditLines().filter((l) => (l.event === 'issue' || l.event === 'deny') && l.peer && l.peer.pid === pid).at(-1);
}

// A child of peer-helper connects and exits while the broker is frozen; the broker accepts
// only after the child is reaped. Resolves { pid: the child's, reply }.
async function requestFromGonePeer(request) {
  h.pauseBroker();
  let resumed = false;
  const helper = h.spawnPeerHelper(['handoff', h.socket]);
  try {
    const line = await helper.nextLine();
    const m = /^pid (\d+)$/.exec(line);
    assert.ok(m, `peer-helper said ${line}`);
    const pid = Number(m[1]);
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the connecting process is gone before the broker accepts');
    h.resumeBroker();
    resumed = true;
    helper.child.stdin.end(`${JSON.stringify(request)}\n`);
    const reply = JSON.parse(await helper.nextLine());
    return { pid, reply };
  } finally {
    if (!resumed) h.resumeBroker();
  }
}

test('uid, gid, pid, exe and unit of a live peer are the kernel\'s', { timeout: 30000 }, async () => {
  const reply = await h.rawRequest(TOKEN);
  assert.equal(reply.ok, true, JSON.stringify(reply));
  const rec = lastDecisionOf(process.pid);
  assert.ok(rec, 'an audit record for this process');
  assert.equal(rec.peer.uid, process.getuid());
  assert.equal(rec.peer.gid, process.getgid());
  assert.equal(rec.peer.exe, NODE);
  assert.ok('unit' in rec.peer, 'the record has a unit field');
  if (ownUnitIsNone()) assert.equal(rec.peer.unit, null, 'no systemd unit here: null, not a guess');
  else assert.match(rec.peer.unit, /\.(service|scope)$/);

  // Another binary: the exe is that binary's, read from /proc through the pidfd.
  const r = await h.peerHelper(['request', h.socket], { input: `${JSON.stringify(TOKEN)}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).ok, true, r.stdout);
  const helperRec = h.auditLines().filter((l) => l.event === 'issue').at(-1);
  assert.equal(helperRec.peer.exe, HELPER);
  assert.notEqual(helperRec.peer.pid, process.pid);
});

test('a peer that exited before the broker accepted gets exe and unit unknown', { timeout: 30000 }, async () => {
  const { pid, reply } = await requestFromGonePeer(TOKEN);
  // The uid rule still holds: uid and gid are SO_PEERCRED's, kept by the socket itself.
  assert.equal(reply.ok, true, JSON.stringify(reply));
  const rec = lastDecisionOf(pid);
  assert.ok(rec, `an audit record for the gone peer ${pid}`);
  assert.equal(rec.peer.uid, process.getuid());
  assert.equal(rec.peer.exe, null, 'exe of a gone peer is unknown, never another process\'s');
  assert.equal(rec.peer.unit, null);
  assert.ok(h.brokerAlive());
});

test('a peer that execs after connecting keeps the exe it had at accept', { timeout: 30000 }, async () => {
  // peer-helper connects, gets a ping answered (the broker accepted and took its facts), then
  // execs node, which sends the token request on the inherited socket.
  const script = `
    const net = require('net');
    const s = new net.Socket({ fd: 3, readable: true, writable: true });
    const body = Buffer.from(process.argv[1]);
    const head = Buffer.alloc(4); head.writeUInt32BE(body.length);
    s.write(Buffer.concat([head, body]));
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        process.stdout.write(JSON.stringify({ pid: process.pid, reply: JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0))) }));
        s.destroy();
      }
    });
    s.on('error', (e) => { console.error(e.message); process.exit(2); });`;
  const r = await h.peerHelper(['exec', h.socket, process.execPath, '-e', script, JSON.stringify(TOKEN)]);
  assert.equal(r.code, 0, r.stderr);
  const { pid, reply } = JSON.parse(r.stdout);
  assert.equal(reply.ok, true, JSON.stringify(reply));
  const rec = lastDecisionOf(pid);
  assert.ok(rec, `an audit record for pid ${pid}`);
  assert.equal(rec.event, 'issue');
  assert.equal(rec.peer.exe, HELPER, 'the binary that connected, not the one it became');
  assert.notEqual(rec.peer.exe, NODE);
});

test('a binary replaced after it started is unknown; one moved keeps its new path', { timeout: 30000 }, async () => {
  fs.mkdirSync(h.p('bin'), { recursive: true, mode: 0o755 });
  const copy = h.p('bin', 'helper-copy');
  // Runs the copy until it has connected, changes the file with the broker frozen, then lets
  // the broker accept. Resolves the audit record of that connection.
  async function requestAfter(change) {
    fs.copyFileSync(PEER_HELPER, copy);
    fs.chmodSync(copy, 0o755);
    h.pauseBroker();
    let resumed = false;
    try {
      const child = spawnTracked(copy, ['request', h.socket], { env: h.env(), stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      await waitFor('the copy to connect', () => {
        if (child.exitCode !== null) throw new Error(`helper copy exited: ${err}`);
        return err.includes('connected');
      });
      change();
      h.resumeBroker();
      resumed = true;
      child.stdin.end(`${JSON.stringify(TOKEN)}\n`);
      await waitExit(child);
      assert.equal(child.exitCode, 0, err);
      assert.equal(JSON.parse(out).ok, true, out);
      return lastDecisionOf(child.pid);
    } finally {
      if (!resumed) h.resumeBroker();
    }
  }

  // An update: a new file renamed over the old one, which lives on unlinked.
  const replaced = await requestAfter(() => {
    fs.copyFileSync(PEER_HELPER, `${copy}.new`);
    fs.renameSync(`${copy}.new`, copy);
  });
  assert.equal(replaced.peer.exe, null, `the running binary is gone from ${copy}`);

  const moved = h.p('bin', 'helper-moved');
  const renamed = await requestAfter(() => fs.renameSync(copy, moved));
  assert.equal(renamed.peer.exe, fs.realpathSync(moved), 'the same file under its new name');
});

test('an exe path that names another file in the broker\'s mount namespace is unknown', { timeout: 30000 }, async (t) => {
  // In a mount namespace of its own the peer bind-mounts its binary over a path that, for the
  // broker, is another file (say an allowed one): the kernel reports that path as its exe.
  fs.mkdirSync(h.p('bin'), { recursive: true, mode: 0o755 });
  const allowed = h.p('bin', 'allowed');
  const impostor = h.p('bin', 'impostor');
  fs.copyFileSync(process.execPath, allowed);
  fs.copyFileSync(PEER_HELPER, impostor);
  fs.chmodSync(allowed, 0o755);
  fs.chmodSync(impostor, 0o755);
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) {
    t.skip('cannot create a mount namespace here');
    return;
  }
  const r = await run('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c',
    'mount --bind "$1" "$2" && exec "$2" request "$3"', 'sh', impostor, allowed, h.socket],
  { env: h.env(), input: `${JSON.stringify(TOKEN)}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).ok, true, r.stdout);
  const rec = h.auditLines().filter((l) => l.event === 'issue').at(-1);
  assert.notEqual(rec.peer.exe, fs.realpathSync(allowed), 'the path alone must not vouch for the file');
  assert.equal(rec.peer.exe, null);
});

test('denial replies say "denied" and nothing else; the audit names peer and file:line', { timeout: 30000 }, async () => {
  const n = h.auditLines().length;
  const reply = await h.rawRequestAsNobody(TOKEN);
  assert.deepEqual(Object.keys(reply).sort(), ['error', 'message', 'ok', 'v']);
  assert.deepEqual({ v: reply.v, ok: reply.ok, error: reply.error }, { v: 1, ok: false, error: 'denied' });
  assert.doesNotMatch(reply.message, /alerts|:\d|rule|uid|gid|pid|exe|unit|root|nobody|required|policy|reason/i);
  const rec = h.auditLinesAfter(n).find((l) => l.event === 'deny');
  assert.ok(rec, 'a deny record');
  assert.deepEqual(Object.keys(rec.peer).sort(), ['exe', 'gid', 'pid', 'uid', 'unit']);
  assert.equal(rec.peer.uid, 65534);
  assert.equal(rec.peer.exe, NODE, 'setpriv execs node before it connects');
  assert.equal(rec.profile, 'alerts');
  assert.equal(rec.decision, 'deny');
  assert.equal(rec.rule, 'alerts:3');
  assert.equal(typeof rec.reason, 'string');
  // The broker's own log names the denial too, for the administrator only.
  assert.match(h.brokerLog(), /Denied uid=65534 pid=\d+ profile alerts: .*alerts:3/);
});

test('without SO_PEERPIDFD: pidfd_open() and the start-time check give the same facts', { timeout: 60000 }, async (t) => {
  if (!FAULT_POINTS) {
    t.skip('needs a build with -Dfault_points=true (CREDBROKER_FAULT=no-peerpidfd); tests/unit/test-peer.c covers the fallback in every build');
    return;
  }
  h.opts.brokerEnv = { CREDBROKER_FAULT: 'no-peerpidfd' };
  try {
    await h.restartBroker();
    const reply = await h.rawRequest(TOKEN);
    assert.equal(reply.ok, true, JSON.stringify(reply));
    await waitFor('the fallback to be logged', () => /does not offer SO_PEERPIDFD/.test(h.brokerLog()));
    assert.equal(lastDecisionOf(process.pid).peer.exe, NODE, 'a live peer is identified by pidfd_open()');
    const gone = await requestFromGonePeer(TOKEN);
    assert.equal(gone.reply.ok, true, JSON.stringify(gone.reply));
    const rec = lastDecisionOf(gone.pid);
    assert.equal(rec.peer.exe, null, 'a gone peer stays unknown on the fallback path');
    assert.equal(rec.peer.unit, null);
  } finally {
    h.opts.brokerEnv = {};
    await h.restartBroker();
  }
  assert.doesNotMatch(h.brokerLog().split('does not offer SO_PEERPIDFD').at(-1), /does not offer/);
});

// P3: a peer that exits and whose pid goes to another process before the broker accepts. Pid
// reuse is made certain in a pid namespace of the broker's own (unshare), where peer-helper
// sets ns_last_pid: nothing else there takes pids.
function canUnsharePid() {
  return spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;
}

// Runs a second broker (own socket and audit log) in a new pid namespace, with a /proc of that
// namespace unless mountProc is false, then body(brokerPid, log()); brokerPid is the broker's
// pid as this process sees it. Resolves body's result.
async function withNamespacedBroker({ mountProc = true, env = {} }, body) {
  const sections = h.configSections();
  sections.broker = { ...sections.broker, socket: h.p('ns-socket'), admin_socket: h.p('ns-admin.socket'), audit_log: h.p('ns-audit.log') };
  const conf = h.p('ns.conf');
  fs.writeFileSync(conf, Object.entries(sections).map(([s, kv]) => `[${s}]\n${Object.entries(kv).map(([k, v]) => `${k} = ${v}\n`).join('')}`).join(''), { mode: 0o644 });
  fs.rmSync(h.p('ns-audit.log'), { force: true });
  const wrapper = spawnTracked('unshare', ['--pid', '--fork', ...(mountProc ? ['--mount-proc'] : []), '--kill-child',
    CREDBROKERD, '--config', conf], { env: h.env(env), stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  wrapper.stderr.setEncoding('utf8');
  wrapper.stderr.on('data', (d) => { log += d; });
  let broker = 0;
  try {
    await waitFor('the namespaced broker', () => {
      if (wrapper.exitCode !== null) throw new Error(`the namespaced broker exited: ${log}`);
      return /ready on/.test(log);
    }, { timeoutMs: 30000 });
    broker = Number(fs.readFileSync(`/proc/${wrapper.pid}/task/${wrapper.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    assert.ok(broker > 0, 'the broker is the child of unshare');
    return await body(broker, () => log);
  } finally {
    if (broker) {
      process.kill(broker, 'SIGCONT');
      // unshare ignores SIGTERM while it waits: stop the broker, and unshare follows.
      process.kill(broker, 'SIGTERM');
    } else {
      wrapper.kill('SIGKILL');
    }
    const timer = setTimeout(() => wrapper.kill('SIGKILL'), 10000);
    await waitExit(wrapper);
    clearTimeout(timer);
  }
}

function namespacedAudit() {
  return fs.readFileSync(h.p('ns-audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

async function pidReuseCase(t, brokerEnv) {
  if (!canUnsharePid()) {
    t.skip('cannot create a pid namespace here (unshare --pid needs CAP_SYS_ADMIN)');
    return undefined;
  }
  return withNamespacedBroker({ env: brokerEnv }, async (broker, log) => {
    process.kill(broker, 'SIGSTOP');
    // peer-helper joins the broker's namespaces; its child connects, hands over and exits, then
    // node is started at the very same pid before the broker accepts.
    const child = spawnTracked('nsenter', ['--target', String(broker), '--pid', '--mount', '--', PEER_HELPER, 'reuse',
      h.p('ns-socket'), process.execPath, '-e', 'setTimeout(() => {}, 60000)'], { env: h.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    await waitFor('peer-helper to take the pid over', () => {
      if (child.exitCode !== null) throw new Error(`peer-helper exited ${child.exitCode}: ${err}`);
      return /^pid \d+\n/.test(out);
    }, { timeoutMs: 20000 });
    const pid = Number(/^pid (\d+)/.exec(out)[1]);
    process.kill(broker, 'SIGCONT');
    child.stdin.end(`${JSON.stringify(TOKEN)}\n`);
    await waitExit(child);
    assert.equal(child.exitCode, 0, err);
    const reply = JSON.parse(out.split('\n')[1]);
    assert.equal(reply.ok, true, `uid root is still allowed: ${JSON.stringify(reply)}`);
    const rec = namespacedAudit().filter((r) => r.peer && r.peer.pid === pid).at(-1);
    assert.ok(rec, `an audit record for pid ${pid}`);
    assert.equal(rec.peer.exe, null, `node now runs at pid ${pid}: its exe must not be taken for the peer's`);
    assert.equal(rec.peer.unit, null);
    return log();
  });
}

test('a broker whose /proc is of another pid namespace takes no exe or unit from it', { timeout: 60000 }, async (t) => {
  if (!canUnsharePid()) {
    t.skip('cannot create a pid namespace here (unshare --pid needs CAP_SYS_ADMIN)');
    return;
  }
  // Without --mount-proc the broker sees the outer /proc, where its peers' pids name others.
  await withNamespacedBroker({ mountProc: false }, async (broker, log) => {
    const r = await run('nsenter', ['--target', String(broker), '--pid', '--', PEER_HELPER, 'request', h.p('ns-socket')],
      { env: h.env(), input: `${JSON.stringify(TOKEN)}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).ok, true, r.stdout);
    const rec = namespacedAudit().filter((l) => l.event === 'issue').at(-1);
    assert.equal(rec.peer.exe, null);
    assert.equal(rec.peer.unit, null);
    assert.match(log(), /\/proc is not of the broker's pid namespace/);
  });
});

test('a gone peer whose pid now names another process gains nothing (P3)', { timeout: 60000 }, async (t) => {
  await pidReuseCase(t, {});
});

test('a gone peer whose pid was reused gains nothing on the pidfd_open() path either (P3)', { timeout: 60000 }, async (t) => {
  if (!FAULT_POINTS) {
    t.skip('needs a build with -Dfault_points=true (CREDBROKER_FAULT=no-peerpidfd); tests/unit/test-peer.c covers the socket check in every build');
    return;
  }
  const log = await pidReuseCase(t, { CREDBROKER_FAULT: 'no-peerpidfd' });
  if (log !== undefined) assert.match(log, /does not offer SO_PEERPIDFD/);
});
