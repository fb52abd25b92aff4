'use strict';
// `credbroker setup` (issue 13 item 3): the first run in one command, into a temporary root.
// The files and their modes, the PIN only in its root-only file (never in output, argv or
// another file), the paths the service unit reads, a broker that starts from the result, a
// second run that changes nothing, refusals without --force, and an existing HSM by URI.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const {
  run, spawnTracked, waitFor, waitExit, CREDBROKERD, CREDBROKER, SOFTHSM_MODULE, SOURCE_ROOT,
} = require('./harness');

const BUILD = process.env.CREDBROKER_BUILD_ROOT;
const UNIT = fs.readFileSync(path.join(BUILD, 'dist', 'credbroker.service'), 'utf8');
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const dirs = [];
after(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

function tmp() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cbsetup-'));
  dirs.push(d);
  return d;
}

const unitValue = (key) => {
  const m = UNIT.match(new RegExp(`^${key}=(.*)$`, 'm'));
  assert.ok(m, `the unit has ${key}=`);
  return m[1];
};
// /etc/credbroker/pkcs11-pin from LoadCredential=pkcs11-pin:/etc/credbroker/pkcs11-pin.
const PIN_PATH = unitValue('LoadCredential').replace(/^pkcs11-pin:/, '');
const SOFTHSM_CONF = unitValue('Environment').replace(/^SOFTHSM2_CONF=/, '');
const CONF = path.join(path.dirname(PIN_PATH), 'credbroker.conf');
const SOFTHSM_DIR = path.dirname(SOFTHSM_CONF);

const env = (extra = {}) => {
  const e = { ...process.env, ...extra };
  delete e.CREDBROKER_CONFIG;
  return e;
};
const setup = (args, opts = {}) => run(CREDBROKER, ['setup', ...args], { env: env(opts.env), input: opts.input });

// Every path under root: type, mode, owner, size, mtime and content hash.
function snapshot(root) {
  const out = {};
  const walk = (p) => {
    const st = fs.lstatSync(p);
    const rel = path.relative(root, p) || '.';
    out[rel] = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs}`;
    if (st.isDirectory()) for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    else if (st.isFile()) out[rel] += ` ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
  };
  walk(root);
  return out;
}

function filesContaining(root, needle) {
  const hits = [];
  const walk = (p) => {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    else if (st.isFile() && fs.readFileSync(p).includes(needle)) hits.push(path.relative(root, p));
  };
  walk(root);
  return hits.sort();
}

const daemon = spawnSync('id', ['-u', 'daemon'], { encoding: 'utf8' });
const DAEMON_UID = Number(daemon.stdout.trim());
const root = tmp();
const under = (p) => path.join(root, p);
let pin;

test('a fresh root: token, PIN, configuration and policy with the modes the unit expects', async () => {
  const trace = path.join(root, '..', `${path.basename(root)}.strace`);
  dirs.push(trace);
  const args = ['--prefix', root, '--user', 'daemon'];
  const r = have('strace')
    // LeakSanitizer cannot run under ptrace: the sanitizer build checks leaks on every other run.
    ? await run('strace', ['-f', '-qq', '-e', 'trace=execve', '-o', trace, CREDBROKER, 'setup', ...args],
      { env: env({ ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:detect_leaks=0` }) })
    : await setup(args);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /created .*pkcs11-pin/);
  assert.match(r.stdout, /credbroker account add NAME/);
  assert.match(r.stdout, /credbroker account test NAME --send-to ADDR/);

  const st = (p) => fs.lstatSync(under(p));
  const mode = (p) => st(p).mode & 0o7777;
  pin = fs.readFileSync(under(PIN_PATH), 'utf8');
  assert.match(pin, /^[A-Za-z0-9]{32}$/, 'a random 32-character PIN');
  for (const p of [PIN_PATH, path.join(path.dirname(PIN_PATH), 'pkcs11-so-pin')]) {
    assert.equal(mode(p), 0o600, `${p} is 0600`);
    assert.equal(st(p).uid, 0, `${p} is root's`);
    assert.equal(st(p).gid, 0, `${p} is root's group`);
  }
  assert.equal(mode(CONF), 0o644);
  assert.equal(st(CONF).uid, 0);
  const policy = path.join(path.dirname(CONF), 'policy.d', 'default');
  assert.equal(mode(policy), 0o644);
  assert.equal(fs.readFileSync(under(policy), 'utf8'),
    fs.readFileSync(path.join(SOURCE_ROOT, 'dist', 'policy.d', 'default'), 'utf8'), 'the shipped default policy');

  // The token directory belongs to the unit's user (--user daemon here), private to it.
  assert.equal(mode(SOFTHSM_DIR), 0o700);
  assert.equal(mode(path.join(SOFTHSM_DIR, 'tokens')), 0o700);
  for (const p of [SOFTHSM_DIR, SOFTHSM_CONF, ...fs.readdirSync(under(path.join(SOFTHSM_DIR, 'tokens')))
    .map((t) => path.join(SOFTHSM_DIR, 'tokens', t, 'token.object'))]) {
    assert.equal(st(p).uid, DAEMON_UID, `${p} belongs to the unit's user`);
  }
  const softhsm = fs.readFileSync(under(SOFTHSM_CONF), 'utf8');
  assert.match(softhsm, new RegExp(`^directories.tokendir = ${under(path.join(SOFTHSM_DIR, 'tokens'))}$`, 'm'));

  const conf = fs.readFileSync(under(CONF), 'utf8');
  assert.match(conf, new RegExp(`^module = ${SOFTHSM_MODULE.replace(/[.]/g, '\\.')}$`, 'm'));
  assert.match(conf, /^token = pkcs11:token=credbroker$/m);
  assert.match(conf, /^pin_source = credential:pkcs11-pin$/m);

  // The PIN is in its file only: not in the output, not in any other file, and no child process
  // was started that could have had it in argv or the environment.
  assert.ok(!r.stdout.includes(pin) && !r.stderr.includes(pin), 'the PIN is not printed');
  assert.deepEqual(filesContaining(root, pin), [path.relative('/', PIN_PATH)]);
  if (fs.existsSync(trace)) {
    const execs = fs.readFileSync(trace, 'utf8').split('\n').filter((l) => /execve\(/.test(l));
    assert.equal(execs.length, 1, `setup runs no other program: ${execs.join('\n')}`);
    assert.ok(!fs.readFileSync(trace, 'utf8').includes(pin));
  }
});

test('the broker starts from what setup wrote and answers ping', async () => {
  const log = path.join(root, 'broker.log');
  const fd = fs.openSync(log, 'a');
  // As the unit does: SOFTHSM2_CONF from Environment=, the PIN from LoadCredential=.
  const proc = spawnTracked(CREDBROKERD, ['--config', under(CONF)], {
    stdio: ['ignore', fd, fd],
    env: env({ SOFTHSM2_CONF: under(SOFTHSM_CONF), CREDENTIALS_DIRECTORY: path.dirname(under(PIN_PATH)) }),
  });
  fs.closeSync(fd);
  try {
    await waitFor('credbrokerd to answer ping', async () => {
      if (proc.exitCode !== null) throw new Error(`credbrokerd exited: ${fs.readFileSync(log, 'utf8')}`);
      return (await run(CREDBROKER, ['ping', '--config', under(CONF)], { env: env() })).code === 0;
    }, { timeoutMs: 15000 });
  } finally {
    proc.kill('SIGTERM');
    await waitExit(proc);
  }
  assert.ok(!fs.readFileSync(log, 'utf8').includes(pin), 'the PIN is not in the broker log');
  fs.rmSync(log);
});

test('a second run reports what exists and changes nothing', async () => {
  const before = snapshot(root);
  const r = await setup(['--prefix', root, '--user', 'daemon']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /exists .*softhsm/);
  assert.doesNotMatch(r.stdout, /created/);
  assert.deepEqual(snapshot(root), before);
});

test('existing state that differs: refused without --force, kept aside with it', async () => {
  const conf = under(CONF);
  const edited = fs.readFileSync(conf, 'utf8').replace('token = pkcs11:token=credbroker', 'token = pkcs11:token=other');
  fs.writeFileSync(conf, edited);
  let before = snapshot(root);
  let r = await setup(['--prefix', root, '--user', 'daemon']);
  assert.equal(r.code, 73, r.stdout + r.stderr);
  assert.match(r.stdout, /differs .*credbroker\.conf/);
  assert.match(r.stdout, /Nothing was changed/);
  assert.deepEqual(snapshot(root), before, 'nothing changed');

  r = await setup(['--prefix', root, '--user', 'daemon', '--force']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(fs.readFileSync(conf, 'utf8'), /^token = pkcs11:token=credbroker$/m);
  const kept = fs.readdirSync(path.dirname(conf)).filter((f) => f.startsWith('credbroker.conf.replaced-'));
  assert.equal(kept.length, 1, 'the old configuration is kept');
  assert.equal(fs.readFileSync(path.join(path.dirname(conf), kept[0]), 'utf8'), edited);
  assert.equal(fs.readFileSync(under(PIN_PATH), 'utf8'), pin, 'the matching token and PIN stay');

  // A token without its PIN file: refused, and nothing is created.
  const aside = `${under(PIN_PATH)}.test`;
  fs.renameSync(under(PIN_PATH), aside);
  before = snapshot(root);
  r = await setup(['--prefix', root, '--user', 'daemon']);
  assert.equal(r.code, 73, r.stdout + r.stderr);
  assert.match(r.stdout, /differs .*softhsm \(a token without its PIN file\)/);
  assert.deepEqual(snapshot(root), before);

  // --force: a new token and PIN; the old token directory is kept aside, never deleted.
  const oldTokens = fs.readdirSync(under(path.join(SOFTHSM_DIR, 'tokens')));
  r = await setup(['--prefix', root, '--user', 'daemon', '--force']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const keptDirs = fs.readdirSync(path.dirname(under(SOFTHSM_DIR))).filter((f) => f.startsWith('softhsm.replaced-'));
  assert.equal(keptDirs.length, 1, 'the old token directory is kept');
  assert.deepEqual(fs.readdirSync(path.join(path.dirname(under(SOFTHSM_DIR)), keptDirs[0], 'tokens')), oldTokens);
  const newPin = fs.readFileSync(under(PIN_PATH), 'utf8');
  assert.notEqual(newPin, pin, 'a new PIN for the new token');
  fs.rmSync(aside);
  pin = newPin;
});

test('--root: an image whose files name the paths inside it', async () => {
  const image = tmp();
  const r = await setup(['--root', image]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const softhsm = fs.readFileSync(path.join(image, SOFTHSM_CONF), 'utf8');
  assert.match(softhsm, new RegExp(`^directories.tokendir = ${path.join(SOFTHSM_DIR, 'tokens')}$`, 'm'));
  assert.deepEqual(fs.readdirSync(path.join(image, SOFTHSM_DIR)).sort(), ['softhsm2.conf', 'tokens']);
  assert.equal(fs.readdirSync(path.join(image, SOFTHSM_DIR, 'tokens')).length, 1, 'one token');
  // No credbroker user in the image: root's until systemd's StateDirectory= hands it over.
  assert.match(r.stdout, /the user credbroker does not exist/);
  assert.equal(fs.statSync(path.join(image, SOFTHSM_DIR)).uid, 0);
  assert.doesNotMatch(fs.readFileSync(path.join(image, CONF), 'utf8'), /socket|audit_log/, 'the default paths');
});

test('an existing HSM: its tokens listed, the URI chosen, the PIN checked before it is stored', async () => {
  const hsmEnv = { SOFTHSM2_CONF: under(SOFTHSM_CONF) };
  const other = tmp();
  let r = await setup(['--prefix', other, '--module', SOFTHSM_MODULE], { env: hsmEnv });
  assert.equal(r.code, 64, r.stdout + r.stderr);
  assert.match(r.stdout, /pkcs11:.*token=credbroker/);
  assert.deepEqual(fs.readdirSync(other), [], 'listing creates nothing');

  r = await setup(['--prefix', other, '--module', SOFTHSM_MODULE, '--token-uri', 'pkcs11:token=credbroker',
    '--pin-stdin'], { env: hsmEnv, input: 'wrong-pin\n' });
  assert.equal(r.code, 78, r.stdout + r.stderr);
  assert.match(r.stderr, /PIN .* is wrong/);
  assert.ok(!fs.existsSync(path.join(other, PIN_PATH)), 'a wrong PIN is not stored');
  assert.ok(!fs.existsSync(path.join(other, CONF)));

  r = await setup(['--prefix', other, '--module', SOFTHSM_MODULE, '--token-uri', 'pkcs11:token=credbroker',
    '--pin-stdin'], { env: hsmEnv, input: `${pin}\n` });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(fs.readFileSync(path.join(other, PIN_PATH), 'utf8'), pin);
  assert.equal(fs.statSync(path.join(other, PIN_PATH)).mode & 0o7777, 0o600);
  assert.ok(!fs.existsSync(path.join(other, SOFTHSM_DIR)), 'no SoftHSM2 token of its own');
  assert.ok(!r.stdout.includes(pin) && !r.stderr.includes(pin));
});
