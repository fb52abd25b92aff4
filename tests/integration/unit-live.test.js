'use strict';
// The installed, hardened unit under a real systemd (issue 13 item 5): `meson install`, the
// sysusers snippet, `credbroker setup`, credbroker.socket started, a token asked for by an
// unprivileged user through the socket, and the service it activates running as User=credbroker
// inside its sandbox. First with setup's SoftHSM2 file store, then with the token behind a
// `p11-kit server` and the drop-in from docs/fleet.md.
//
// The build machines' PID 1 is not systemd, so unit-live-ns.sh starts systemd 252 as PID 1 of new
// namespaces over overlays of the host's own /etc, /var and /usr (nothing reaches the host; the
// script says how). Skips without root, without cgroup2 or namespaces, where PID 1 already is
// systemd (use the machine's own there), and in the sanitizer build (it installs the build it
// runs in: the plain build is what a package ships).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const {
  setup, run, waitFor, SANITIZED, SOFTHSM_MODULE, SOURCE_ROOT, TENANT, CLIENT_ID, MAIL_SEND,
} = require('./harness');

const BUILD = process.env.CREDBROKER_BUILD_ROOT;
const NS_SCRIPT = path.join(__dirname, 'unit-live-ns.sh');
const P11_KIT_CLIENT = process.env.P11_KIT_CLIENT_MODULE || '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const PATH_ENV = 'PATH=/usr/sbin:/usr/bin:/sbin:/bin';
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// The cgroup2 directory this process is in (the hybrid layout's /sys/fs/cgroup/unified too).
function ownCgroup2() {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) return null;
  for (const mnt of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    if (fs.existsSync(path.join(mnt, 'cgroup.procs')) && fs.existsSync(path.join(mnt, 'cgroup.controllers'))) {
      return path.join(mnt, line.slice(3));
    }
  }
  return null;
}

function whyNot() {
  if (SANITIZED) return 'the sanitizer build: the unit is checked with the plain build, what a package installs (not ASan binaries under its sandbox)';
  if (process.getuid() !== 0) return 'needs root (namespaces, overlays, a cgroup for its own systemd)';
  if (fs.existsSync('/run/systemd/system')) return 'PID 1 is systemd here: this test brings its own systemd only where there is none';
  for (const cmd of ['unshare', 'nsenter', 'setpriv', 'meson', 'p11-kit']) {
    if (!have(cmd)) return `${cmd} is not installed`;
  }
  if (!fs.existsSync('/lib/systemd/systemd')) return 'systemd (/lib/systemd/systemd) is not installed';
  const options = spawnSync('meson', ['introspect', BUILD, '--buildoptions'], { encoding: 'utf8' });
  const prefix = options.status === 0 ? (JSON.parse(options.stdout).find((o) => o.name === 'prefix') || {}).value : null;
  if (prefix !== '/usr') return `the build is configured with prefix ${prefix}, not /usr: the unit and setup's paths are a system install's`;
  if (!fs.existsSync(P11_KIT_CLIENT)) return `${P11_KIT_CLIENT} is not installed (p11-kit-modules)`;
  const cg = ownCgroup2();
  if (!cg) return 'no cgroup2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)';
  const probe = path.join(cg, `credbroker-unit-live-probe-${process.pid}`);
  try {
    fs.mkdirSync(probe);
    fs.rmdirSync(probe);
  } catch (e) {
    return `cannot make a cgroup for systemd in ${cg}: ${e.code}`;
  }
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount', '--cgroup', '--uts', '--ipc', '--mount-proc', 'true']);
  if (r.status !== 0) return `unshare cannot make the namespaces: ${String(r.stderr).trim()}`;
  return null;
}

const SKIP = whyNot();

// systemd in its namespaces: sh() runs a shell script inside them (as root, with systemctl).
class LiveSystem {
  async boot() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbunitlive-'));
    this.cgroup = path.join(ownCgroup2(), `credbroker-unit-live-${process.pid}`);
    fs.mkdirSync(this.cgroup);
    const log = fs.openSync(path.join(this.dir, 'boot.log'), 'a');
    this.unshare = spawn(NS_SCRIPT, ['boot', this.dir, this.cgroup], { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.unshare.unref();
    let exited = null;
    this.unshare.once('exit', (code, signal) => { exited = { code, signal }; });
    const kids = `/proc/${this.unshare.pid}/task/${this.unshare.pid}/children`;
    this.init = await waitFor('the namespace\'s init', () => {
      if (exited) throw new Error(`unit-live-ns.sh exited (${exited.code}/${exited.signal}): ${this.bootLog()}`);
      const pid = Number(fs.existsSync(kids) ? fs.readFileSync(kids, 'utf8').trim() : 0);
      return pid > 0 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/lib/systemd/systemd') ? pid : null;
    }, { timeoutMs: 15000 });
    // Whatever ends this process, the namespace's init goes with it (and everything inside).
    this.onExit = () => this.killSync();
    process.once('exit', this.onExit);
    const state = await waitFor('systemd to finish starting', async () => {
      const r = await this.sh('systemctl is-system-running');
      return ['running', 'degraded'].includes(r.stdout.trim()) ? r.stdout.trim() : null;
    }, { timeoutMs: 30000, intervalMs: 200 });
    assert.equal(state, 'running', (await this.sh('systemctl --failed --no-pager')).stdout);
  }

  bootLog() {
    try {
      return fs.readFileSync(path.join(this.dir, 'boot.log'), 'utf8') + fs.readFileSync(path.join(this.dir, 'console'), 'utf8');
    } catch (_) {
      return '';
    }
  }

  sh(script, { input, timeoutMs = 60000 } = {}) {
    return run('nsenter', ['-t', String(this.init), '-m', '-p', '-u', '-i', '-C', '--',
      'env', '-i', PATH_ENV, 'sh', '-ec', script], { input, timeoutMs });
  }

  async shOk(script, opts) {
    const r = await this.sh(script, opts);
    assert.equal(r.code, 0, `${script}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  // As an unprivileged user: nobody, no groups, none of root's environment.
  asNobody(cmd) {
    return this.sh(`exec setpriv --reuid=nobody --regid=nogroup --clear-groups ${cmd}`);
  }

  async show(unit, props) {
    const out = await this.shOk(`systemctl show ${unit} -p ${props.join(',')}`);
    return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }

  async journal(unit) {
    return (await this.sh(`journalctl --no-pager -o short-monotonic -u ${unit} | tail -60`)).stdout;
  }

  killSync() {
    if (this.init) {
      try {
        process.kill(this.init, 'SIGKILL');
      } catch (_) { /* gone */ }
    }
  }

  async teardown() {
    this.killSync();
    if (this.unshare && this.unshare.exitCode === null && this.unshare.signalCode === null) {
      this.unshare.ref(); // or the test runner's event loop runs dry and exits mid-teardown
      await new Promise((resolve) => this.unshare.once('exit', resolve));
    }
    if (this.onExit) process.removeListener('exit', this.onExit);
    // The cgroups systemd made empty out once the kernel has reaped their processes.
    if (this.cgroup) {
      await waitFor('the namespace\'s cgroups to go', () => {
        const dirs = [];
        const walk = (d) => {
          for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
          dirs.push(d);
        };
        if (!fs.existsSync(this.cgroup)) return true;
        walk(this.cgroup);
        try {
          for (const d of dirs) fs.rmdirSync(d);
          return true;
        } catch (e) {
          if (e.code === 'EBUSY') return false;
          throw e;
        }
      }, { timeoutMs: 10000 });
    }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const sys = new LiveSystem();
let h;
const CONF = '/etc/credbroker/credbroker.conf';
const AUDIT = '/var/log/credbroker/audit.log';

function conf(module) {
  return [
    '[broker]', 'log_level = debug',
    '[pkcs11]', `module = ${module}`, 'token = pkcs11:token=credbroker', 'pin_source = credential:pkcs11-pin',
    '[identity]', `authority = https://127.0.0.1:${h.emuPorts.port}`, `graph = https://127.0.0.1:${h.emuPorts.port}`,
    'ca_bundle = /etc/credbroker/emulator-ca.pem', 'min_refresh_interval = 0', '',
  ].join('\n');
}

// The running service's pid, user and sandbox as the kernel shows them.
async function serviceProcess() {
  const s = await sys.show('credbroker.service', ['ActiveState', 'SubState', 'Result', 'MainPID']);
  const pid = Number(s.MainPID);
  assert.ok(pid > 0, `credbroker.service has a main process: ${JSON.stringify(s)}`);
  const status = await sys.shOk(`cat /proc/${pid}/status`);
  const field = (k) => status.match(new RegExp(`^${k}:\\s*(.*)$`, 'm'))[1];
  const maps = await sys.shOk(`cat /proc/${pid}/maps`);
  // Each thread's nice value: field 19 of its stat, counted after the ") " that ends its name.
  const nices = (await sys.shOk(`cat /proc/${pid}/task/*/stat`)).split('\n').filter(Boolean)
    .map((l) => Number(l.slice(l.lastIndexOf(') ') + 2).split(' ')[16]));
  return { ...s, uid: field('Uid').split(/\s+/), noNewPrivs: field('NoNewPrivs'), seccomp: field('Seccomp'),
    capEff: field('CapEff'), capBnd: field('CapBnd'), maps, nices };
}

async function assertSandboxed(p, credbrokerUid) {
  assert.equal(p.ActiveState, 'active');
  assert.equal(p.SubState, 'running');
  assert.equal(p.Result, 'success');
  assert.deepEqual(p.uid, Array(4).fill(credbrokerUid), 'real, effective, saved and fs uid are credbroker\'s');
  assert.equal(p.noNewPrivs, '1', 'NoNewPrivileges=yes');
  assert.equal(p.seccomp, '2', 'SystemCallFilter= (seccomp filter mode)');
  assert.equal(p.capEff, '0000000000000000', 'no effective capability');
  assert.equal(p.capBnd, '0000000000000000', 'CapabilityBoundingSet= empty');
  // The unit lets the store worker lower its priority (SystemCallFilter=setpriority); the event
  // loop keeps its own.
  assert.ok(p.nices.includes(0), `the event loop runs at nice 0: ${p.nices}`);
  assert.ok(p.nices.includes(5), `the store worker runs at nice 5: ${p.nices}`);
}

// A token for nobody through the client socket; returns the audit records it added.
async function tokenAsNobody(extra = '') {
  const before = (await sys.sh(`cat ${AUDIT} 2>/dev/null || true`)).stdout.split('\n').filter(Boolean).length;
  const r = await sys.asNobody(`credbroker token -p alerts ${extra}`);
  assert.equal(r.code, 0, `token as nobody: ${r.stdout}${r.stderr}\n${await sys.journal('credbroker.service')}`);
  assert.match(r.stdout, /\S{20,}/, 'a token');
  const lines = (await sys.shOk(`cat ${AUDIT}`)).split('\n').filter(Boolean).slice(before).map((l) => JSON.parse(l));
  return { token: r.stdout.trim(), audit: lines };
}

before(async () => {
  if (SKIP) return;
  h = await setup({ startBroker: false, importAccount: false });
  await sys.boot();
});

after(async () => {
  if (SKIP) return;
  await sys.teardown();
  if (h) await h.teardown();
});

let credbrokerUid;

test('the SoftHSM2 file store: socket activation starts the hardened service as credbroker', { skip: SKIP || false, timeout: 120000 }, async () => {
  // meson install into a staging tree, copied over the namespace's overlays (merged /usr: /lib
  // and /sbin are links into /usr).
  const dest = path.join(sys.dir, 'dest');
  const inst = await run('meson', ['install', '-C', BUILD, '--no-rebuild', '--quiet'], { env: { ...process.env, DESTDIR: dest } });
  assert.equal(inst.code, 0, inst.stdout + inst.stderr);
  fs.copyFileSync(h.p('certs', 'ca.pem'), path.join(sys.dir, 'emulator-ca.pem'));
  await sys.shOk(`cd /run/unit-live/dest
    for t in *; do if [ -L "/$t" ]; then cp -a "$t/." "/$(readlink "/$t")/"; else cp -a "$t/." "/$t/"; fi; done
    systemd-sysusers credbroker.conf
    systemctl daemon-reload`);
  credbrokerUid = (await sys.shOk('id -u credbroker')).trim();
  assert.notEqual(credbrokerUid, '0');

  const setupOut = await sys.shOk('credbroker setup');
  assert.match(setupOut, /created +\/var\/lib\/credbroker\/softhsm/);
  assert.match(setupOut, /owner +\/var\/lib\/credbroker\/softhsm: credbroker/);
  await sys.shOk(`install -m 0644 /run/unit-live/emulator-ca.pem /etc/credbroker/emulator-ca.pem
    cat >${CONF}
    printf 'account alerts\\nscope ${MAIL_SEND}\\npeer required uid nobody\\n' >/etc/credbroker/policy.d/alerts`,
  { input: conf(SOFTHSM_MODULE) });

  // The socket alone: the service starts on the first connection.
  await sys.shOk('systemctl start credbroker.socket');
  assert.equal((await sys.show('credbroker.service', ['ActiveState'])).ActiveState, 'inactive');
  const ping = await sys.asNobody('credbroker ping');
  assert.equal(ping.code, 0, `${ping.stdout}${ping.stderr}\n${await sys.journal('credbroker.service')}`);
  await assertSandboxed(await serviceProcess(), credbrokerUid);

  // Provisioning goes through the running broker's admin socket: the objects are credbroker's.
  fs.writeFileSync(path.join(sys.dir, 'rt'), `${h.canaryRefreshToken}\n`, { mode: 0o600 });
  await sys.shOk(`credbroker account import alerts --tenant ${TENANT} --client-id ${CLIENT_ID} \\
      --refresh-token-file /run/unit-live/rt --mailbox alerts@contoso.com
    rm /run/unit-live/rt
    credbroker reload`);
  const owners = await sys.shOk('find /var/lib/credbroker/softhsm -printf "%u %p\\n"');
  assert.deepEqual(owners.split('\n').filter((l) => l && !l.startsWith('credbroker ')), [], 'every token file is credbroker\'s');

  // Stopped, only the socket listening: nobody's token request itself activates the service.
  await sys.shOk('systemctl stop credbroker.service');
  assert.equal((await sys.show('credbroker.socket', ['ActiveState'])).ActiveState, 'active');
  const { audit } = await tokenAsNobody();
  const issued = audit.filter((l) => l.event === 'issue');
  assert.equal(issued.length, 1, JSON.stringify(audit));
  assert.equal(issued[0].peer.uid, 65534);
  assert.equal(issued[0].profile, 'alerts');
  // The journald mirror: the same record, with its seq, in the journal.
  const mirrored = await waitFor('the issue record in the journal', async () => {
    const out = (await sys.sh(`journalctl --no-pager -o json CREDBROKER_SEQ=${issued[0].seq} CREDBROKER_EVENT=issue`)).stdout;
    return out.trim() ? JSON.parse(out.trim().split('\n').at(-1)) : null;
  });
  assert.equal(mirrored.CREDBROKER_PEER_UID, '65534');
  assert.equal(mirrored.CREDBROKER_PROFILE, 'alerts');
  assert.equal(mirrored.CREDBROKER_TOKEN_FINGERPRINT, issued[0].token_fingerprint);
  assert.equal(mirrored.PRIORITY, '5');
  const p = await serviceProcess();
  await assertSandboxed(p, credbrokerUid);
  assert.match(p.maps, /libsofthsm2\.so/, 'the SoftHSM2 module is loaded in the service');
  // 0640: readable by the audit group too ([broker] audit_group, else credbroker's own group).
  assert.equal((await sys.shOk(`stat -c '%U %G %a' ${AUDIT}`)).trim(), 'credbroker credbroker 640');
  assert.match(await sys.journal('credbroker.service'), /Started credbroker\.service/);
});

test('a p11-kit remote token: the service on p11-kit-client.so with the drop-in from docs/fleet.md', { skip: SKIP || false, timeout: 120000 }, async () => {
  assert.ok(credbrokerUid, 'the SoftHSM2 test ran first');
  // The drop-in exactly as docs/fleet.md prints it, and the server unit it names: p11-kit server
  // serving setup's SoftHSM2 token on a socket only credbroker may use.
  const fleet = fs.readFileSync(path.join(SOURCE_ROOT, 'docs', 'fleet.md'), 'utf8');
  const m = fleet.match(/```ini\n# (\/etc\/systemd\/system\/credbroker\.service\.d\/p11-kit-server\.conf)\n([\s\S]*?)```/);
  assert.ok(m, 'docs/fleet.md has the p11-kit-server.conf drop-in');
  const [, dropinPath, dropin] = m;
  const address = dropin.match(/^Environment=P11_KIT_SERVER_ADDRESS=unix:path=(\S+)$/m);
  assert.ok(address, 'the drop-in sets P11_KIT_SERVER_ADDRESS');
  const serverUnit = dropin.match(/^Wants=(\S+\.service)$/m)[1];
  const server = ['[Unit]', 'Description=p11-kit server for the credbroker token (unit-live test)',
    '[Service]', 'Environment=SOFTHSM2_CONF=/var/lib/credbroker/softhsm/softhsm2.conf',
    `RuntimeDirectory=${path.basename(path.dirname(address[1]))}`, 'RuntimeDirectoryMode=0755',
    `ExecStart=/usr/bin/p11-kit server -f --provider ${SOFTHSM_MODULE} -n ${address[1]} -u credbroker -g credbroker pkcs11:token=credbroker`,
    ''].join('\n');
  fs.writeFileSync(path.join(sys.dir, 'server.service'), server);
  fs.writeFileSync(path.join(sys.dir, 'dropin.conf'), dropin);
  await sys.shOk(`systemctl stop credbroker.service
    install -m 0644 /run/unit-live/server.service /etc/systemd/system/${serverUnit}
    install -D -m 0644 /run/unit-live/dropin.conf ${dropinPath}
    cat >${CONF}
    systemctl daemon-reload`, { input: conf(P11_KIT_CLIENT) });

  const { audit } = await tokenAsNobody('--min-ttl 86400');
  assert.equal(audit.filter((l) => l.event === 'issue').length, 1, JSON.stringify(audit));
  const p = await serviceProcess();
  await assertSandboxed(p, credbrokerUid);
  assert.match(p.maps, /p11-kit-client\.so/, 'the service loaded p11-kit-client.so');
  assert.doesNotMatch(p.maps, /libsofthsm2\.so/, 'and not SoftHSM2 itself: the token is remote');
  assert.equal((await sys.show(serverUnit, ['ActiveState'])).ActiveState, 'active');
  const env = await sys.shOk(`tr '\\0' '\\n' </proc/${Number((await sys.show('credbroker.service', ['MainPID'])).MainPID)}/environ`);
  assert.match(env, new RegExp(`^P11_KIT_SERVER_ADDRESS=unix:path=${address[1]}$`, 'm'));
  // The account's credential was read through the server: the broker says which module.
  assert.match(await sys.journal('credbroker.service'), /p11-kit-client\.so/);
});
