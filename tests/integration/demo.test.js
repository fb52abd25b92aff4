'use strict';
// scripts/demo, the newcomer's first command (issue 9 item 1): it needs nothing at
// /run/credbroker, and two checkouts run their demos side by side, each with its own sockets,
// token and emulator, and each .demo/env points credbroker at its own broker and nothing else.
//
// The tree is copied twice (sources only; the demo is pointed at the already built binaries with
// CREDBROKER_BUILD_DIR), both demos start at once with --keep-running, then an account removed
// through one demo's .demo/env must be gone from that broker only.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SOURCE_ROOT = process.env.CREDBROKER_SOURCE_ROOT || path.resolve(__dirname, '..', '..');
const BUILD_ROOT = process.env.CREDBROKER_BUILD_ROOT || path.join(SOURCE_ROOT, 'build');
const KEEP = process.env.KEEP === '1';

// The environment of a user who has nothing of credbroker's set: no variable of an earlier demo
// or of the test runner may steer the demo.
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('CREDBROKER') && k !== 'SOFTHSM2_CONF') env[k] = v;
  return env;
}

function copyTree(dest) {
  const skip = new Set(['.git', '.demo', 'node_modules']);
  fs.cpSync(SOURCE_ROOT, dest, {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(SOURCE_ROOT, src);
      if (rel === '') return true;
      const first = rel.split(path.sep)[0];
      // Build directories (build, build-test, build-asan...) are not sources.
      return !skip.has(first) && !first.startsWith('build');
    },
  });
}

function runDemo(tree, args) {
  return new Promise((resolve) => {
    const child = spawn(path.join(tree, 'scripts', 'demo'), args, {
      cwd: tree,
      env: { ...cleanEnv(), CREDBROKER_BUILD_DIR: BUILD_ROOT },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => resolve({ code, out }));
  });
}

// Runs credbroker ARGS in a shell that sourced TREE/.demo/env, as a demo user would.
function withDemoEnv(tree, args) {
  const r = spawnSync('bash', ['-c', '. .demo/env && exec credbroker "$@"', 'credbroker', ...args], {
    cwd: tree,
    env: cleanEnv(),
    encoding: 'utf8',
    timeout: 30000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function demoEnv(tree) {
  const text = fs.readFileSync(path.join(tree, '.demo', 'env'), 'utf8');
  const env = {};
  for (const m of text.matchAll(/^([A-Z0-9_]+)='?([^'\n]*)'?$/gm)) env[m[1]] = m[2];
  return env;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (_) {
    return false;
  }
}

test('two demos from two checkouts run side by side, each reached only through its own .demo/env',
  { timeout: 170000 }, async (t) => {
    const top = fs.mkdtempSync(path.join(os.tmpdir(), 'credbroker-demo-test-'));
    const trees = [path.join(top, 'one'), path.join(top, 'two')];
    const stopAll = () => {
      for (const tree of trees)
        if (fs.existsSync(path.join(tree, 'scripts', 'demo')))
          spawnSync(path.join(tree, 'scripts', 'demo'), ['--stop'], { cwd: tree, env: cleanEnv() });
    };
    process.once('exit', stopAll);
    t.after(() => {
      stopAll();
      if (KEEP) process.stderr.write(`# demo.test: kept ${top}\n`);
      else fs.rmSync(top, { recursive: true, force: true });
    });
    for (const tree of trees) copyTree(tree);

    const results = await Promise.all(trees.map((tree) => runDemo(tree, ['--keep-running'])));
    results.forEach((r, i) => assert.equal(r.code, 0, `demo ${i + 1} failed:\n${r.out}`));

    const envs = trees.map(demoEnv);
    for (const key of ['CREDBROKER_SOCKET', 'CREDBROKER_ADMIN_SOCKET', 'CREDBROKER_CONFIG',
      'SOFTHSM2_CONF', 'CREDBROKER_EMULATOR_URL'])
      assert.notEqual(envs[0][key], envs[1][key], `both demos share ${key}`);
    for (const [i, env] of envs.entries()) {
      assert.ok(!env.CREDBROKER_ADMIN_SOCKET.startsWith('/run/'), env.CREDBROKER_ADMIN_SOCKET);
      assert.ok(fs.existsSync(env.CREDBROKER_ADMIN_SOCKET), `demo ${i + 1}: no admin socket`);
      assert.match(fs.readFileSync(env.CREDBROKER_CONFIG, 'utf8'),
        new RegExp(`^admin_socket = ${env.CREDBROKER_ADMIN_SOCKET}$`, 'm'));
    }
    const pids = trees.map((tree) =>
      Number(fs.readFileSync(path.join(tree, '.demo', 'credbrokerd.pid'), 'utf8')));
    assert.ok(pids.every(alive), 'a demo broker died');

    // Each .demo/env reaches its own broker: list and status through the admin socket.
    for (const [i, tree] of trees.entries()) {
      const list = withDemoEnv(tree, ['account', 'list', '-v']);
      assert.equal(list.code, 0, list.stderr);
      assert.ok(list.stderr.includes(`asking the running broker (${envs[i].CREDBROKER_ADMIN_SOCKET})`),
        list.stderr);
      assert.match(list.stdout, /^alerts\s/m);
      const status = withDemoEnv(tree, ['status']);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      const token = withDemoEnv(tree, ['token', '-p', 'alerts']);
      assert.equal(token.code, 0, token.stderr);
    }

    // An account removed through demo two's environment is gone from demo two only.
    const removed = withDemoEnv(trees[1], ['account', 'remove', 'alerts', '-v']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(removed.stderr.includes(envs[1].CREDBROKER_ADMIN_SOCKET), removed.stderr);
    assert.doesNotMatch(withDemoEnv(trees[1], ['account', 'list']).stdout, /^alerts\s/m);
    assert.match(withDemoEnv(trees[0], ['account', 'list']).stdout, /^alerts\s/m);
    const stillServed = withDemoEnv(trees[0], ['token', '-p', 'alerts']);
    assert.equal(stillServed.code, 0, stillServed.stderr);

    for (const tree of trees) {
      const r = await runDemo(tree, ['--stop']);
      assert.equal(r.code, 0, r.out);
    }
    const deadline = Date.now() + 5000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!pids.some(alive), 'demo --stop left a broker running');
    for (const env of envs)
      assert.ok(!fs.existsSync(path.dirname(env.CREDBROKER_SOCKET)), 'demo --stop left its run dir');
  });
