'use strict';
// `meson install` into a DESTDIR (issue 13 item 1): the tree a system service needs, man pages
// that render without a warning, units systemd-analyze verify accepts (with the drop-in
// examples enabled too), and a configuration that is never overwritten.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const BUILD = process.env.CREDBROKER_BUILD_ROOT;
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
let dest;
let opt;

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000, ...opts });
  if (r.error) throw r.error;
  return r;
}

function install(destdir) {
  const r = sh('meson', ['install', '-C', BUILD, '--no-rebuild'], { env: { ...process.env, DESTDIR: destdir } });
  assert.equal(r.status, 0, `meson install failed: ${r.stdout}${r.stderr}`);
  return r;
}

before(() => {
  const options = JSON.parse(sh('meson', ['introspect', BUILD, '--buildoptions']).stdout);
  opt = Object.fromEntries(options.map((o) => [o.name, o.value]));
  dest = fs.mkdtempSync(path.join(os.tmpdir(), 'cbinst-'));
  install(dest);
});
after(() => dest && fs.rmSync(dest, { recursive: true, force: true }));

const under = (dir, ...rest) => path.join(dest, path.isAbsolute(dir) ? dir : path.join(opt.prefix, dir), ...rest);
const mode = (p) => fs.statSync(p).mode & 0o7777;

test('the tree: binaries, units, sysusers/tmpfiles, config, policy.d, docs, completion', () => {
  const expect = [
    [under(opt.sbindir, 'credbrokerd'), 0o755],
    [under(opt.bindir, 'credbroker'), 0o755],
    [under(opt.sysconfdir, 'credbroker', 'credbroker.conf'), 0o644],
    [under(opt.sysconfdir, 'credbroker', 'policy.d', 'default'), 0o644],
    [under(opt.sysconfdir, 'logrotate.d', 'credbroker'), 0o644],
    [under(opt.datadir, 'doc', 'credbroker', 'examples', 'credbroker.conf.example')],
    [under(opt.datadir, 'doc', 'credbroker', 'examples', 'credbroker.service.d', 'peer-rules.conf.example')],
    [under(opt.datadir, 'doc', 'credbroker', 'examples', 'credbroker.service.d', 'encrypted-pin.conf.example')],
    [under(opt.datadir, 'doc', 'credbroker', 'examples', 'policy.d', 'alerts')],
    [under(opt.datadir, 'bash-completion', 'completions', 'credbroker')],
    [under(opt.mandir, 'man1', 'credbroker.1')],
    [under(opt.mandir, 'man8', 'credbrokerd.8')],
    [under(opt.mandir, 'man5', 'credbroker.conf.5')],
    [under(opt.mandir, 'man5', 'credbroker-policy.5')],
    [under(opt.includedir, 'credbroker.h')],
    [under(opt.libdir, 'libcredbroker.so.0')],
    [under(opt.libdir, 'libcredbroker.so')],
    [under(opt.libdir, 'pkgconfig', 'libcredbroker.pc')],
  ];
  const unitdir = opt.systemdsystemunitdir || (opt.prefix === '/usr' ? '/lib/systemd/system' : 'lib/systemd/system');
  const units = [under(unitdir, 'credbroker.service'), under(unitdir, 'credbroker.socket')];
  if (!fs.existsSync(units[0])) units.splice(0, 2, under('/usr/lib/systemd/system', 'credbroker.service'), under('/usr/lib/systemd/system', 'credbroker.socket'));
  for (const u of units) expect.push([u]);
  expect.push([under(opt.sysusersdir || 'lib/sysusers.d', 'credbroker.conf')], [under(opt.tmpfilesdir || 'lib/tmpfiles.d', 'credbroker.conf')]);
  for (const [file, m] of expect) {
    assert.ok(fs.existsSync(file), `${path.relative(dest, file)} is not installed`);
    if (m !== undefined) assert.equal(mode(file).toString(8), m.toString(8), `mode of ${file}`);
  }
  // Nothing that would take over another package's job (issue 13: sendmail stays the MTA's).
  assert.equal(fs.existsSync(under(opt.sbindir, 'sendmail')), false);
  assert.equal(fs.existsSync(path.join(dest, 'usr/sbin/sendmail')), false);

  const service = fs.readFileSync(units[0], 'utf8');
  const abs = (dir) => (path.isAbsolute(dir) ? dir : path.join(opt.prefix, dir));
  assert.match(service, new RegExp(`^ExecStart=${abs(opt.sbindir)}/credbrokerd --config ${abs(opt.sysconfdir)}/credbroker/credbroker.conf$`, 'm'));
  assert.match(service, /^User=credbroker$/m);
  assert.match(fs.readFileSync(expect.at(-2)[0], 'utf8'), /^u credbroker /m);
  // The binaries run from the tree.
  const v = sh(under(opt.sbindir, 'credbrokerd'), ['--version']);
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^credbrokerd \d/);
});

test('the installed policy.d denies everyone and passes credbroker policy check', () => {
  const dir = under(opt.sysconfdir, 'credbroker', 'policy.d');
  const check = sh(under(opt.bindir, 'credbroker'), ['policy', 'check', dir]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
  const t = sh(under(opt.bindir, 'credbroker'), ['policy', 'test', '--policy-dir', dir, '-p', 'default', '--uid', 'root']);
  assert.equal(t.status, 1, `policy test: ${t.stdout}${t.stderr}`);
  assert.match(t.stdout + t.stderr, /deny/i);
});

test('a second install keeps an edited credbroker.conf and a policy.d with profiles', () => {
  const conf = under(opt.sysconfdir, 'credbroker', 'credbroker.conf');
  const policy = under(opt.sysconfdir, 'credbroker', 'policy.d');
  fs.writeFileSync(conf, '# edited by the administrator\n');
  fs.rmSync(path.join(policy, 'default'));
  fs.writeFileSync(path.join(policy, 'alerts'), '# mine\n');
  install(dest);
  assert.equal(fs.readFileSync(conf, 'utf8'), '# edited by the administrator\n');
  assert.deepEqual(fs.readdirSync(policy), ['alerts'], 'policy.d/default came back beside the administrator\'s profiles');
});

test('every man page renders without a warning (groff -ww, mandoc -T lint)', { skip: !have('groff') && 'groff is not installed' }, () => {
  const pages = ['man1/credbroker.1', 'man8/credbrokerd.8', 'man5/credbroker.conf.5', 'man5/credbroker-policy.5'];
  for (const page of pages) {
    const file = under(opt.mandir, page);
    const g = sh('groff', ['-ww', '-z', '-man', '-Tutf8', file]);
    assert.equal(g.status, 0, `groff ${page}: ${g.stderr}`);
    assert.equal(g.stderr, '', `groff ${page}`);
    if (have('mandoc')) {
      const m = sh('mandoc', ['-T', 'lint', '-W', 'warning', file]);
      assert.equal(m.stdout + m.stderr, '', `mandoc -T lint ${page}`);
      assert.equal(m.status, 0);
    }
    const text = sh('man', ['-l', '-P', 'cat', file], { env: { ...process.env, MANWIDTH: '80' } });
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^NAME$/m, `${page} has a NAME section`);
  }
});

// systemd-analyze verify resolves ExecStart= and the targets the units name inside --root:
// a copy of the installed tree with the host's targets and /bin/kill (ExecReload=) beside it.
test('systemd-analyze verify accepts the installed units, with and without the drop-in examples', {
  skip: !have('systemd-analyze') ? 'systemd-analyze is not installed' : opt.prefix !== '/usr' && 'the units name /usr paths only in a prefix=/usr build',
}, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cbverify-'));
  try {
    sh('cp', ['-a', `${dest}/.`, root]);
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
    fs.copyFileSync('/bin/kill', path.join(root, 'bin/kill'));
    fs.chmodSync(path.join(root, 'bin/kill'), 0o755);
    const targets = path.join(root, 'usr/lib/systemd/system');
    fs.mkdirSync(targets, { recursive: true });
    for (const dir of ['/lib/systemd/system', '/usr/lib/systemd/system']) {
      if (!fs.existsSync(dir)) continue;
      for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.target'))) {
        if (!fs.existsSync(path.join(targets, f))) fs.copyFileSync(path.join(dir, f), path.join(targets, f));
      }
    }
    const unitdir = fs.existsSync(path.join(root, 'lib/systemd/system/credbroker.service')) ? 'lib/systemd/system' : 'usr/lib/systemd/system';
    const verify = () => sh('systemd-analyze', ['verify', `--root=${root}`,
      path.join(root, unitdir, 'credbroker.service'), path.join(root, unitdir, 'credbroker.socket')],
    { env: { ...process.env, MANPATH: path.join(root, 'usr/share/man') } });
    let r = verify();
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'systemd-analyze verify printed warnings');
    // The administrator's drop-ins, as the documentation says to install them.
    const dropins = path.join(root, 'etc/systemd/system/credbroker.service.d');
    fs.mkdirSync(dropins, { recursive: true });
    const examples = path.join(root, 'usr/share/doc/credbroker/examples/credbroker.service.d');
    for (const f of fs.readdirSync(examples)) fs.copyFileSync(path.join(examples, f), path.join(dropins, f.replace(/\.example$/, '')));
    r = verify();
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'systemd-analyze verify printed warnings with the drop-ins');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
