'use strict';
// Integration test harness for credbroker: a private world per test file.
//
//   const h = await setup({ t })        // temp dir, certs, emulator, SoftHSM2 token, config,
//                                        // policy, imported account, running credbrokerd
//   await h.cli(['token', '-p', 'alerts'])            -> { code, signal, stdout, stderr }
//   const c = await h.rawClient(); await c.request({ v: 1, op: 'ping' })
//   await h.counters(); await h.stopEmulator(); await h.startEmulator(); ...
//   await h.teardown()                   // also runs from t.after, process 'exit' and signals
//
// Node 20 standard library only. Every process this module starts is remembered and killed
// when the test file ends, however it ends (t.after, process 'exit', SIGINT/SIGTERM), so no
// emulator or broker is ever left behind. KEEP=1 keeps the temp directory for inspection.

const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const SOURCE_ROOT = process.env.CREDBROKER_SOURCE_ROOT || path.resolve(__dirname, '..', '..');
const BUILD_ROOT = process.env.CREDBROKER_BUILD_ROOT || path.join(SOURCE_ROOT, 'build');
const CREDBROKERD = process.env.CREDBROKERD || path.join(BUILD_ROOT, 'broker', 'credbrokerd');
const CREDBROKER = process.env.CREDBROKER || path.join(BUILD_ROOT, 'cli', 'credbroker');
// The spool's delivery helper of this build (not LIBEXECDIR's, which a test build never installs).
const DELIVER_HELPER = path.join(BUILD_ROOT, 'broker', 'credbroker-deliver');
const PEER_HELPER = process.env.CREDBROKER_PEER_HELPER
  || path.join(BUILD_ROOT, 'tests', 'integration', 'peer-helper');
const SOFTHSM_MODULE = process.env.SOFTHSM_MODULE || '/usr/lib/softhsm/libsofthsm2.so';
const EMULATOR = path.join(SOURCE_ROOT, 'tests', 'emulator', 'emulator.js');
const GEN_CERTS = path.join(SOURCE_ROOT, 'tests', 'emulator', 'gen-certs');
const FLOOD_CLIENT = path.join(__dirname, 'flood-client.js');
const SANITIZED = process.env.CREDBROKER_SANITIZE === '1';
const KEEP = process.env.KEEP === '1';

const TENANT = 'contoso.onmicrosoft.com';
const CLIENT_ID = '11111111-2222-3333-4444-555555555555';
const USER = 'alerts@contoso.com';
const MAIL_SEND = 'https://graph.microsoft.com/Mail.Send';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- process bookkeeping: nothing survives the test file -------------------------------------

const liveProcesses = new Set(); // ChildProcess objects still running
const liveDirs = new Set(); // temp dirs to remove at exit

function track(child) {
  liveProcesses.add(child);
  child.once('exit', () => liveProcesses.delete(child));
  return child;
}

function killEverythingSync() {
  for (const child of liveProcesses) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch (_) { /* already gone */ }
  }
  liveProcesses.clear();
  for (const dir of liveDirs) {
    if (KEEP) {
      process.stderr.write(`# harness: kept ${dir}\n`);
    } else {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch (_) { /* best effort */ }
    }
  }
  liveDirs.clear();
}

process.once('exit', killEverythingSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killEverythingSync();
    process.exit(128 + os.constants.signals[sig]);
  });
}

// Spawns a command and collects its output. Never rejects for a non-zero exit; rejects only when
// the command cannot be started. timeoutMs kills it (SIGKILL) and reports timedOut.
function run(cmd, args, { env, input, timeoutMs = 60000, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] }));
    const out = [];
    const err = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill('SIGKILL');
      } catch (_) { /* gone */ }
    }, timeoutMs);
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => {}); // the child may exit without reading its input
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

function runSyncChecked(cmd, args, opts) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
  }
  return r;
}

function waitExit(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function waitFor(what, fn, { timeoutMs = 10000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

// --- wire framing ---------------------------------------------------------------------------

function frame(payload) {
  const body = Buffer.isBuffer(payload) ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

// A client speaking the broker's framing: 4-byte big-endian length, then a JSON object.
class RawClient {
  constructor(socketPath) {
    this.socketPath = socketPath;
    this.buffer = Buffer.alloc(0);
    this.frames = []; // parsed frames not yet read
    this.waiters = []; // pending readFrame() calls
    this.closed = false;
    this.closeWaiters = [];
  }

  connect() {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(this.socketPath);
      this.sock = sock;
      sock.once('connect', () => {
        sock.removeListener('error', reject);
        sock.on('error', () => {}); // surfaces as 'close'
        resolve(this);
      });
      sock.once('error', reject);
      sock.on('data', (d) => this._onData(d));
      sock.on('close', () => {
        this.closed = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed by the broker'));
        for (const w of this.closeWaiters.splice(0)) w(true);
      });
    });
  }

  _onData(d) {
    this.buffer = Buffer.concat([this.buffer, d]);
    while (this.buffer.length >= 4) {
      const n = this.buffer.readUInt32BE(0);
      if (this.buffer.length < 4 + n) break;
      const payload = this.buffer.subarray(4, 4 + n);
      this.buffer = this.buffer.subarray(4 + n);
      let msg;
      try {
        msg = JSON.parse(payload.toString('utf8'));
      } catch (e) {
        msg = { unparsable: payload.toString('utf8') };
      }
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.frames.push(msg);
    }
  }

  // Writes raw bytes (Buffer or string) as they are: no framing.
  write(bytes) {
    return new Promise((resolve, reject) => {
      this.sock.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  send(message) {
    return this.write(frame(message));
  }

  readFrame(timeoutMs = 15000) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.closed) return Promise.reject(new Error('connection closed by the broker'));
    return new Promise((resolve, reject) => {
      const w = {};
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      w.resolve = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
      w.reject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      this.waiters.push(w);
    });
  }

  async request(message, timeoutMs) {
    await this.send(message);
    return this.readFrame(timeoutMs);
  }

  // Resolves true when the broker closes the connection within timeoutMs, else false.
  waitClosed(timeoutMs = 3000) {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.closeWaiters.push((v) => {
        clearTimeout(timer);
        resolve(v);
      });
    });
  }

  close() {
    if (this.sock && !this.sock.destroyed) this.sock.destroy();
  }
}

// --- the environment --------------------------------------------------------------------------

const DEFAULT_PROFILES = {
  alerts: { account: 'alerts', scopes: [MAIL_SEND], rules: ['peer required uid root'] },
};

class Harness {
  constructor(opts) {
    this.opts = opts;
    // [pkcs11] store: 'objects' (the default) or 'wrapped'; CREDBROKER_TEST_STORE=wrapped runs
    // a whole test file against the wrapped backend (tests that read token objects then fail).
    this.store = opts.store || process.env.CREDBROKER_TEST_STORE || 'objects';
    this.pin = opts.pin || `PIN-CANARY-${crypto.randomBytes(6).toString('hex')}`;
    this.soPin = `SO-${crypto.randomBytes(6).toString('hex')}`;
    this.canaryRefreshToken = opts.refreshToken
      || `RT-CANARY-${crypto.randomBytes(12).toString('hex')}`;
    this.emu = null; // { proc, port, adminPort }
    this.emuPorts = null; // remembered for restarts on the same ports
    this.broker = null; // { proc, log, index }
    this.brokerCount = 0;
    this.brokerLogs = [];
    this.tornDown = false;
  }

  // Paths ---------------------------------------------------------------------------------

  p(...parts) {
    return path.join(this.dir, ...parts);
  }

  get socket() {
    return this.p('socket');
  }

  get adminSocket() {
    return this.p('admin.socket');
  }

  // A connected client of the admin socket (docs/admin-protocol.md), same framing.
  async adminClient() {
    return new RawClient(this.adminSocket).connect();
  }

  // One admin request on a fresh connection: resolves the (first) reply.
  async adminRequest(message, timeoutMs) {
    const c = await this.adminClient();
    try {
      return await c.request({ v: 1, ...message }, timeoutMs);
    } finally {
      c.close();
    }
  }

  // Adds accounts ([{ name, refreshToken }], flow refresh-token) through the running broker's
  // admin socket, one after another on one connection: the path of `credbroker account import`
  // while the broker runs, without a process per account.
  async addAccounts(accounts, { mailbox = USER } = {}) {
    const c = await this.adminClient();
    try {
      for (const { name, refreshToken } of accounts) {
        const r = await c.request({
          v: 1, op: 'account.add', account: name, flow: 'refresh-token', tenant: TENANT,
          client_id: CLIENT_ID, mailbox, refresh_token: refreshToken,
        }, 120000);
        if (!r.ok) throw new Error(`account.add ${name}: ${JSON.stringify(r)}`);
      }
    } finally {
      c.close();
    }
  }

  get conf() {
    return this.p('credbroker.conf');
  }

  get auditLog() {
    return this.configValue('broker', 'audit_log');
  }

  // The environment of every child process: the private SoftHSM2 configuration and the socket.
  env(extra = {}) {
    const env = { ...process.env, SOFTHSM2_CONF: this.p('softhsm2.conf'), CREDBROKER_SOCKET: this.socket };
    delete env.CREDBROKER_CONFIG;
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined || v === null) delete env[k];
      else env[k] = v;
    }
    return env;
  }

  // Setup ---------------------------------------------------------------------------------

  async init() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbit-'));
    liveDirs.add(this.dir);
    // Clients run as nobody must reach the socket inside.
    fs.chmodSync(this.dir, 0o755);
    fs.mkdirSync(this.p('policy.d'), { mode: 0o755 });
    fs.chmodSync(this.p('policy.d'), 0o755);

    runSyncChecked(GEN_CERTS, [this.p('certs')]);
    await this.startEmulator();
    await this.registerRefreshToken(this.canaryRefreshToken, { scopes: this.opts.refreshTokenScopes || [MAIL_SEND] });

    this.initSoftHsm();
    fs.writeFileSync(this.p('pin'), this.pin, { mode: 0o600 });
    fs.chmodSync(this.p('pin'), 0o600);
    this.writeConfig();
    this.writePolicies(this.opts.profiles || DEFAULT_PROFILES);
    if (this.opts.importAccount !== false) await this.importAccount('alerts', this.canaryRefreshToken);
    if (this.opts.startBroker !== false) await this.startBroker();
    return this;
  }

  initSoftHsm() {
    fs.mkdirSync(this.p('tokens'), { mode: 0o700 });
    fs.writeFileSync(this.p('softhsm2.conf'),
      `directories.tokendir = ${this.p('tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`,
      { mode: 0o644 });
    runSyncChecked('softhsm2-util', ['--init-token', '--free', '--label', 'credbroker',
      '--pin', this.pin, '--so-pin', this.soPin], { env: this.env() });
  }

  // The configuration as sections of key -> value; opts.config overrides or adds keys.
  configSections() {
    const sections = {
      broker: {
        socket: this.socket,
        admin_socket: this.adminSocket,
        policy_dir: this.p('policy.d'),
        audit_log: this.p('audit.log'),
        log_level: 'debug',
      },
      pkcs11: {
        module: SOFTHSM_MODULE,
        token: 'pkcs11:token=credbroker',
        pin_source: `file:${this.p('pin')}`,
        ...(this.store === 'objects' ? {} : { store: this.store, wrapped_dir: this.p('store') }),
      },
      identity: {
        authority: `https://127.0.0.1:${this.emuPorts.port}`,
        graph: `https://127.0.0.1:${this.emuPorts.port}`,
        ca_bundle: this.p('certs', 'ca.pem'),
        // Many tests force refreshes with min_ttl; min-refresh.test.js tests the bound.
        min_refresh_interval: 0,
      },
      // Never the host's /var/spool/credbroker (docs/mail-spool.md).
      mail: {
        spool_dir: this.p('spool'),
        maildrop_dir: this.p('maildrop'),
        deliver_helper: DELIVER_HELPER,
      },
    };
    for (const [section, keys] of Object.entries(this.opts.config || {})) {
      sections[section] = { ...(sections[section] || {}), ...keys };
    }
    return sections;
  }

  configValue(section, key) {
    return this.configSections()[section][key];
  }

  writeConfig(sections = this.configSections()) {
    let text = '';
    for (const [section, keys] of Object.entries(sections)) {
      text += `[${section}]\n`;
      for (const [k, v] of Object.entries(keys)) text += `${k} = ${v}\n`;
    }
    fs.writeFileSync(this.conf, text, { mode: 0o644 });
    fs.chmodSync(this.conf, 0o644);
  }

  // Puts OpenSC's pkcs11-spy between the next broker started and SoftHSM2, with these [pkcs11]
  // keys besides; returns a function that lists the names of the calls logged so far ("12:
  // C_FindObjectsInit" opens each entry). pkcs11-spy logs every argument, PINs and object values
  // included: test tokens only.
  spyOnPkcs11(pkcs11 = {}) {
    const spy = process.env.PKCS11_SPY_MODULE || '/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so';
    const log = this.p('pkcs11-spy.log');
    this.opts.config = { ...(this.opts.config || {}), pkcs11: { module: spy, ...pkcs11 } };
    this.writeConfig();
    this.opts.brokerEnv = { ...(this.opts.brokerEnv || {}), PKCS11SPY: SOFTHSM_MODULE, PKCS11SPY_OUTPUT: log };
    return () => {
      let text = '';
      try {
        text = fs.readFileSync(log, 'utf8');
      } catch (_) { /* nothing logged yet */ }
      return [...text.matchAll(/^\d+: (C_\w+)/gm)].map((m) => m[1]);
    };
  }

  // profiles: name -> { account, scopes: [...], rules: ['peer required uid root', ...] } or a
  // string with the file's verbatim text.
  writePolicies(profiles) {
    for (const [name, spec] of Object.entries(profiles)) {
      const text = typeof spec === 'string' ? spec
        : [`account ${spec.account || 'alerts'}`,
          ...(spec.scopes || [MAIL_SEND]).map((s) => `scope ${s}`),
          ...(spec.rules || ['peer required uid root'])].join('\n') + '\n';
      const file = this.p('policy.d', name);
      fs.writeFileSync(file, text, { mode: 0o644 });
      fs.chmodSync(file, 0o644);
    }
  }

  async importAccount(name, refreshToken, { mailbox = USER } = {}) {
    const rt = this.p(`rt-${name}`);
    fs.writeFileSync(rt, `${refreshToken}\n`, { mode: 0o600 });
    const r = await this.cli(['account', 'import', name, '--config', this.conf, '--tenant', TENANT,
      '--client-id', CLIENT_ID, '--refresh-token-file', rt, '--mailbox', mailbox]);
    fs.rmSync(rt, { force: true });
    if (r.code !== 0) throw new Error(`account import failed (${r.code}): ${r.stdout}${r.stderr}`);
    return r;
  }

  // Emulator --------------------------------------------------------------------------------

  async startEmulator() {
    if (this.emu) throw new Error('the emulator is already running');
    const ready = this.p('emu-ready.json');
    fs.rmSync(ready, { force: true });
    const e = this.opts.emulator || {};
    const args = [EMULATOR, '--cert', this.p('certs', 'server.pem'), '--key', this.p('certs', 'server-key.pem'),
      '--state-dir', this.p('emu-state'), '--ready-file', ready];
    if (e.rotation) args.push('--rotation', e.rotation);
    if (e.tokenLifetime) args.push('--token-lifetime', String(e.tokenLifetime));
    if (e.args) args.push(...e.args); // e.g. ['--graph-resource', 'https://graph.microsoft.us']
    if (this.emuPorts) args.push('--port', String(this.emuPorts.port), '--admin-port', String(this.emuPorts.adminPort));
    const log = fs.openSync(this.p('emulator.log'), 'a');
    const proc = track(spawn(process.execPath, args, { stdio: ['ignore', log, log], env: this.env() }));
    fs.closeSync(log);
    proc.unref(); // a forgotten teardown must not keep the test file alive: 'exit' kills it
    let exited = null;
    proc.once('exit', (code, signal) => { exited = { code, signal }; });
    const info = await waitFor('the emulator ready file', () => {
      if (exited) throw new Error(`the emulator exited (${exited.code}/${exited.signal}): ${this.emulatorLog().slice(-2000)}`);
      if (!fs.existsSync(ready)) return null;
      return JSON.parse(fs.readFileSync(ready, 'utf8'));
    }, { timeoutMs: 15000 });
    this.emu = { proc, port: info.port, adminPort: info.admin_port };
    if (this.emuPorts && (this.emuPorts.port !== info.port || this.emuPorts.adminPort !== info.admin_port)) {
      throw new Error('the emulator did not come back on the same ports');
    }
    this.emuPorts = { port: info.port, adminPort: info.admin_port };
    return this.emu;
  }

  async stopEmulator() {
    if (!this.emu) return null;
    const { proc } = this.emu;
    this.emu = null;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    const r = await waitExit(proc);
    clearTimeout(timer);
    return r;
  }

  emulatorLog() {
    try {
      return fs.readFileSync(this.p('emulator.log'), 'utf8');
    } catch (_) {
      return '';
    }
  }

  emulatorAdmin(method, urlPath, body, { allowError = false } = {}) {
    if (!this.emuPorts) return Promise.reject(new Error('no emulator'));
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: this.emuPorts.adminPort,
        method,
        path: urlPath,
        headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch (_) { /* not JSON */ }
          if (!allowError && (res.statusCode < 200 || res.statusCode >= 300)) {
            reject(new Error(`emulator admin ${method} ${urlPath}: HTTP ${res.statusCode} ${text}`));
          } else {
            resolve(allowError ? { status: res.statusCode, body: json } : json);
          }
        });
      });
      req.on('error', reject);
      req.setTimeout(10000, () => req.destroy(new Error('emulator admin request timed out')));
      req.end(data || undefined);
    });
  }

  registerRefreshToken(refreshToken, { scopes = [MAIL_SEND], user = USER } = {}) {
    return this.emulatorAdmin('POST', '/admin/refresh-tokens', {
      tenant: TENANT, client_id: CLIENT_ID, refresh_token: refreshToken, scopes, user,
    });
  }

  counters() {
    return this.emulatorAdmin('GET', '/admin/counters');
  }

  resetCounters() {
    return this.emulatorAdmin('POST', '/admin/counters/reset', {});
  }

  addFault(fault) {
    return this.emulatorAdmin('POST', '/admin/faults', fault);
  }

  clearFaults() {
    return this.emulatorAdmin('DELETE', '/admin/faults');
  }

  mail() {
    return this.emulatorAdmin('GET', '/admin/mail');
  }

  // Broker ----------------------------------------------------------------------------------

  // wrapper: a command prefix, e.g. ['setpriv', '--bounding-set=-all', ...] (it must exec).
  async startBroker({ valgrind = this.opts.valgrind, wrapper = this.opts.brokerWrapper, timeoutMs } = {}) {
    if (this.broker) throw new Error('the broker is already running');
    const index = ++this.brokerCount;
    const logPath = this.p(`broker-${index}.log`);
    const log = fs.openSync(logPath, 'a');
    let cmd = CREDBROKERD;
    let args = ['--config', this.conf];
    if (valgrind) {
      const vgArgs = Array.isArray(valgrind) ? valgrind
        : ['--leak-check=full', '--errors-for-leak-kinds=definite', '--error-exitcode=99'];
      args = [...vgArgs, cmd, ...args];
      cmd = 'valgrind';
    }
    if (wrapper && wrapper.length) {
      args = [...wrapper.slice(1), cmd, ...args];
      cmd = wrapper[0];
    }
    const proc = track(spawn(cmd, args, { stdio: ['ignore', log, log], env: this.env(this.opts.brokerEnv || {}) }));
    fs.closeSync(log);
    proc.unref();
    this.broker = { proc, logPath, index };
    this.brokerLogs.push(logPath);
    let exited = null;
    proc.once('exit', (code, signal) => { exited = { code, signal }; });
    await waitFor('credbrokerd to answer ping', async () => {
      if (exited) {
        this.broker = null;
        throw new Error(`credbrokerd exited (${exited.code}/${exited.signal}): ${fs.readFileSync(logPath, 'utf8').slice(-3000)}`);
      }
      const r = await this.cli(['ping', '--socket', this.socket], { timeoutMs: 5000 });
      return r.code === 0;
    }, { timeoutMs: timeoutMs || (valgrind ? 90000 : 15000), intervalMs: valgrind ? 300 : 50 });
    return proc;
  }

  get brokerPid() {
    return this.broker ? this.broker.proc.pid : null;
  }

  // SIGTERM (or signal); resolves { code, signal, stderr } of that broker instance.
  async stopBroker({ signal = 'SIGTERM', timeoutMs = 20000 } = {}) {
    if (!this.broker) return null;
    const { proc, logPath } = this.broker;
    this.broker = null;
    try {
      proc.kill(signal);
    } catch (_) { /* gone */ }
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    const r = await waitExit(proc);
    clearTimeout(timer);
    return { ...r, stderr: fs.readFileSync(logPath, 'utf8') };
  }

  // SIGHUP; resolves once the broker logged the outcome ("Policy reloaded" / "Reload failed").
  async reloadBroker() {
    const outcomes = () => (this.brokerLog().match(/Policy reloaded|Reload failed/g) || []).length;
    const before = outcomes();
    this.broker.proc.kill('SIGHUP');
    await waitFor('the reload to be logged', () => outcomes() > before, { timeoutMs: 10000 });
    // The newest outcome, not the log's last line: other threads may log after it.
    return this.brokerLog().match(/Policy reloaded|Reload failed/g).at(-1) === 'Reload failed' ? 'failed' : 'reloaded';
  }

  async restartBroker(opts) {
    await this.stopBroker();
    return this.startBroker(opts);
  }

  brokerAlive() {
    return !!this.broker && this.broker.proc.exitCode === null && this.broker.proc.signalCode === null;
  }

  // Everything every broker instance of this harness wrote to stderr.
  brokerLog() {
    return this.brokerLogs.map((f) => {
      try {
        return fs.readFileSync(f, 'utf8');
      } catch (_) {
        return '';
      }
    }).join('');
  }

  // Clients ---------------------------------------------------------------------------------

  // Runs the credbroker CLI. asNobody runs it as uid nobody / gid nogroup with no groups.
  cli(args, { asNobody = false, input, env = {}, timeoutMs = 60000 } = {}) {
    if (asNobody) {
      return run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', CREDBROKER, ...args],
        { env: this.env(env), input, timeoutMs });
    }
    return run(CREDBROKER, args, { env: this.env(env), input, timeoutMs });
  }

  // total clients send request at once, from one process per user (a uid may hold only
  // max_connections_per_uid connections: reliability.md P12), each with its share of the
  // connections open before any sends. Resolves the merged summaries of flood-client.js:
  // { replies, ok, errors: { code: n }, tokens: [distinct token hashes], ms }.
  // onSent() runs once every process has been told to send.
  async flood(request, total, { users = ['root', 'daemon', 'nobody'], timeoutMs = 60000, socketPath = this.socket, onSent } = {}) {
    const groups = { root: 'root', daemon: 'daemon', nobody: 'nogroup' };
    const children = users.map((user, i) => {
      const n = Math.floor(total / users.length) + (i < total % users.length ? 1 : 0);
      const args = [FLOOD_CLIENT, socketPath, String(n), JSON.stringify(request), String(timeoutMs)];
      const proc = user === 'root' ? spawnTracked(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
        : spawnTracked('setpriv', ['--reuid', user, '--regid', groups[user] || user, '--clear-groups',
          process.execPath, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      const ready = new Promise((resolve, reject) => {
        proc.stdout.on('data', (d) => {
          out += d;
          if (out.startsWith('ready\n')) resolve();
        });
        proc.once('exit', (code) => reject(new Error(`flood-client as ${user} exited ${code}: ${out}`)));
      });
      const done = new Promise((resolve) => proc.once('exit', () => resolve(out)));
      return { proc, ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.proc.stdin.end('go\n');
    if (onSent) onSent();
    const summary = { replies: 0, ok: 0, errors: {}, tokens: [], ms: 0 };
    for (const c of children) {
      const lines = (await c.done).trim().split('\n');
      const part = JSON.parse(lines[lines.length - 1]);
      if (part.fatal) throw new Error(`flood-client: ${part.fatal}`);
      summary.replies += part.replies;
      summary.ok += part.ok;
      for (const [k, v] of Object.entries(part.errors)) summary.errors[k] = (summary.errors[k] || 0) + v;
      summary.tokens = [...new Set([...summary.tokens, ...part.tokens])];
      summary.ms = Math.max(summary.ms, part.ms);
    }
    return summary;
  }

  async rawClient(socketPath = this.socket) {
    return new RawClient(socketPath).connect();
  }

  // One request on a fresh connection; resolves the reply.
  async rawRequest(message, timeoutMs) {
    const c = await this.rawClient();
    try {
      return await c.request(message, timeoutMs);
    } finally {
      c.close();
    }
  }

  // One request from a process running as uid nobody; resolves the reply.
  async rawRequestAsNobody(message, timeoutMs = 30000) {
    const script = `
      const net = require('net');
      const body = Buffer.from(process.argv[2]);
      const head = Buffer.alloc(4); head.writeUInt32BE(body.length);
      const s = net.createConnection(process.argv[1], () => s.write(Buffer.concat([head, body])));
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          process.stdout.write(buf.subarray(4, 4 + buf.readUInt32BE(0)));
          s.destroy();
        }
      });
      s.on('error', (e) => { console.error(e.message); process.exit(2); });`;
    const r = await run('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups',
      process.execPath, '-e', script, this.socket, JSON.stringify(message)], { env: this.env(), timeoutMs });
    if (r.timedOut) throw new Error(`no reply within ${timeoutMs} ms`);
    if (r.code !== 0) throw new Error(`raw request as nobody failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  // Audit log and PKCS#11 token ---------------------------------------------------------------

  auditText() {
    try {
      return fs.readFileSync(this.auditLog, 'utf8');
    } catch (_) {
      return '';
    }
  }

  auditLines() {
    return this.auditText().split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
  }

  // Labels of the data objects in the SoftHSM2 token (pkcs11-tool, logged in).
  async dataObjectLabels() {
    const r = await run('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'credbroker', '--login',
      '--pin', this.pin, '--list-objects', '--type', 'data'], { env: this.env() });
    if (r.code !== 0) throw new Error(`pkcs11-tool --list-objects failed: ${r.stderr}`);
    const labels = [];
    for (const m of r.stdout.matchAll(/label:\s+'([^']*)'/g)) labels.push(m[1]);
    return labels;
  }

  // The wrapped store's file of an account (or its temporary file), parsed; null when absent or
  // torn. Only the header is in the clear (pkcs11/store-wrapped.h).
  sealedFile(account = 'alerts', { tmp = false } = {}) {
    const f = this.p('store', tmp ? `.${account}.tmp` : `${account}.sealed`);
    try {
      return JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch (_) {
      return null;
    }
  }

  // The refresh-token generations stored for the account. The wrapped store keeps one per file;
  // a complete temporary file (a write killed before its rename) holds the next one, which the
  // next load finishes.
  async refreshTokenGenerations(account = 'alerts') {
    if (this.store === 'wrapped') {
      const REFRESH_TOKEN = 1 << 2;
      const generations = [];
      for (const f of [this.sealedFile(account), this.sealedFile(account, { tmp: true })]) {
        if (f && (Number(f.kinds) & REFRESH_TOKEN)) generations.push(Number(f.refresh_token_generation));
      }
      return [...new Set(generations)].sort((a, b) => a - b);
    }
    const prefix = `${account}/refresh_token/`;
    return (await this.dataObjectLabels()).filter((l) => l.startsWith(prefix))
      .map((l) => Number(l.slice(prefix.length))).sort((a, b) => a - b);
  }

  // The value of a data object (used to learn the rotated refresh tokens, for the secret greps).
  async readDataObject(label) {
    const out = this.p(`obj-${crypto.randomBytes(4).toString('hex')}`);
    const r = await run('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'credbroker', '--login',
      '--pin', this.pin, '--read-object', '--type', 'data', '--label', label, '--output-file', out],
    { env: this.env() });
    if (r.code !== 0) throw new Error(`pkcs11-tool --read-object ${label} failed: ${r.stderr}`);
    const value = fs.readFileSync(out, 'utf8');
    fs.rmSync(out, { force: true });
    return value;
  }

  // p11-kit server ------------------------------------------------------------------------------

  // Serves the private SoftHSM2 token over a Unix socket with `p11-kit server`, in its own
  // process group (it forks a p11-kit-remote per client), so that pauseP11KitServer() stops the
  // server and every process serving a client. Resolves the P11_KIT_SERVER_ADDRESS value.
  async startP11KitServer({ token = 'credbroker' } = {}) {
    if (this.p11kit) throw new Error('the p11-kit server is already running');
    const socketPath = this.p('p11kit.sock');
    const out = this.p('p11kit-server.log');
    const log = fs.openSync(out, 'a');
    const proc = track(spawn('p11-kit', ['server', '-f', '--provider', SOFTHSM_MODULE, '-n', socketPath,
      `pkcs11:token=${token}`], { stdio: ['ignore', log, log], env: this.env(), detached: true }));
    fs.closeSync(log);
    proc.unref();
    // However the test file ends, no paused p11-kit-remote is left behind.
    const killGroup = () => {
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch (_) { /* gone */ }
    };
    process.once('exit', killGroup);
    let exited = null;
    proc.once('exit', (code, signal) => { exited = { code, signal }; });
    const address = await waitFor('p11-kit server to print its address', () => {
      if (exited) throw new Error(`p11-kit server exited (${exited.code}/${exited.signal}): ${fs.readFileSync(out, 'utf8')}`);
      const m = fs.readFileSync(out, 'utf8').match(/P11_KIT_SERVER_ADDRESS=([^;\s]+)/g);
      return m && fs.existsSync(socketPath) ? m.at(-1).slice('P11_KIT_SERVER_ADDRESS='.length) : null;
    }, { timeoutMs: 10000 });
    // The address is printed before the socket listens; p11-kit-client shows no token at all
    // when it cannot connect, so wait until a connection is accepted.
    await waitFor('p11-kit server to accept connections', () => new Promise((resolve) => {
      const sock = net.createConnection(socketPath);
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    }), { timeoutMs: 10000, intervalMs: 20 });
    this.p11kit = { proc, address, socketPath };
    return address;
  }

  // Signals the p11-kit server's whole process group (the server and its p11-kit-remote children).
  signalP11KitServer(signal) {
    if (!this.p11kit) throw new Error('no p11-kit server');
    process.kill(-this.p11kit.proc.pid, signal);
  }

  pauseP11KitServer() {
    this.signalP11KitServer('SIGSTOP');
  }

  resumeP11KitServer() {
    this.signalP11KitServer('SIGCONT');
  }

  // Kills the server and every process serving a client, as a crash of the HSM host would.
  async stopP11KitServer() {
    if (!this.p11kit) return;
    const { proc } = this.p11kit;
    this.p11kit = null;
    for (const signal of ['SIGCONT', 'SIGKILL']) {
      try {
        process.kill(-proc.pid, signal);
      } catch (_) { /* gone */ }
    }
    // Polled: the process is unref()ed, so waiting for its 'exit' alone would not keep the
    // test file's event loop alive.
    await waitFor('the p11-kit server to exit', () => proc.exitCode !== null || proc.signalCode !== null,
      { timeoutMs: 10000, intervalMs: 20 });
  }

  // The raw bytes of a data object (a Buffer).
  async readDataObjectBytes(label) {
    const out = this.p(`obj-${crypto.randomBytes(4).toString('hex')}`);
    const r = await run('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'credbroker', '--login',
      '--pin', this.pin, '--read-object', '--type', 'data', '--label', label, '--output-file', out],
    { env: this.env() });
    if (r.code !== 0) throw new Error(`pkcs11-tool --read-object ${label} failed: ${r.stderr}`);
    const value = fs.readFileSync(out);
    fs.rmSync(out, { force: true });
    return value;
  }

  // A refresh-token generation's value unwrapped: the envelope of pkcs11/store-refresh-token.c
  // ("\0cbrt", version 1, u64 big-endian stored_at, the token, an 8-byte check) gives
  // { token, storedAt }; a legacy raw token gives { token, storedAt: 0 }.
  async readRefreshTokenGeneration(account, generation) {
    const value = await this.readDataObjectBytes(`${account}/refresh_token/${generation}`);
    const magic = Buffer.from([0, 0x63, 0x62, 0x72, 0x74]);
    if (value.length > 0 && value[0] !== 0) return { token: value.toString('utf8'), storedAt: 0 };
    if (value.length < 14 + 1 + 8 || !value.subarray(0, 5).equals(magic) || value[5] !== 1) {
      throw new Error(`${account}/refresh_token/${generation} is not an envelope of version 1`);
    }
    return {
      token: value.subarray(14, value.length - 8).toString('utf8'),
      storedAt: Number(value.readBigUInt64BE(6)),
    };
  }

  // Teardown --------------------------------------------------------------------------------

  // Reports of AddressSanitizer / UndefinedBehaviorSanitizer / LeakSanitizer in the broker's
  // stderr (sanitizer builds), so that a memory error fails the test file even when the
  // behaviour the tests look at was right.
  sanitizerReports() {
    return this.brokerLog().split('\n')
      .filter((l) => /ERROR: (AddressSanitizer|LeakSanitizer: detected)|runtime error:/.test(l));
  }

  async teardown() {
    if (this.tornDown) return;
    this.tornDown = true;
    try {
      await this.stopBroker({ timeoutMs: 5000 });
    } catch (_) { /* keep going */ }
    try {
      await this.stopEmulator();
    } catch (_) { /* keep going */ }
    const reports = this.dir ? this.sanitizerReports() : [];
    if (this.dir) {
      if (KEEP || reports.length) {
        process.stderr.write(`# harness: kept ${this.dir}\n`);
      } else {
        fs.rmSync(this.dir, { recursive: true, force: true });
      }
      liveDirs.delete(this.dir);
    }
    if (reports.length) {
      throw new Error(`credbrokerd sanitizer reports (logs kept in ${this.dir}):\n${reports.slice(0, 10).join('\n')}`);
    }
  }

  // Peer identity (peer.test.js, reload.test.js, policy-broker.test.js) ----------------------

  // Freezes / thaws the broker (SIGSTOP / SIGCONT): connections made meanwhile wait in the
  // listen backlog, not yet accepted.
  pauseBroker() {
    this.broker.proc.kill('SIGSTOP');
  }

  resumeBroker() {
    if (this.broker) this.broker.proc.kill('SIGCONT');
  }

  // Runs tests/integration/peer-helper (see there) with args; input goes to its stdin.
  peerHelper(args, { input, timeoutMs = 30000, env = {} } = {}) {
    return run(PEER_HELPER, args, { env: this.env(env), input, timeoutMs });
  }

  // Starts peer-helper with pipes, for a test that talks to it step by step: resolves
  // { child, lines: async iterator of stdout lines, stderr() }.
  spawnPeerHelper(args) {
    const child = track(spawn(PEER_HELPER, args, { env: this.env(), stdio: ['pipe', 'pipe', 'pipe'] }));
    const err = [];
    child.stderr.on('data', (d) => err.push(d));
    child.stdin.on('error', () => {});
    const queue = [];
    const waiting = [];
    let partial = '';
    let ended = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      partial += d;
      let i;
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        const w = waiting.shift();
        if (w) w.resolve(line);
        else queue.push(line);
      }
    });
    child.stdout.on('end', () => {
      ended = true;
      for (const w of waiting.splice(0)) w.reject(new Error(`peer-helper ended: ${Buffer.concat(err)}`));
    });
    const nextLine = (timeoutMs = 15000) => {
      if (queue.length) return Promise.resolve(queue.shift());
      if (ended) return Promise.reject(new Error(`peer-helper ended: ${Buffer.concat(err)}`));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`peer-helper: no line within ${timeoutMs} ms`)), timeoutMs);
        waiting.push({
          resolve: (l) => { clearTimeout(timer); resolve(l); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
      });
    };
    return { child, nextLine, stderr: () => Buffer.concat(err).toString('utf8') };
  }

  // Audit records written after the first n.
  auditLinesAfter(n) {
    return this.auditLines().slice(n);
  }
}

// opts:
//   t               test context (or node:test `after`-capable object): teardown runs in t.after
//   emulator        { rotation: 'strict'|'lenient', tokenLifetime: S }
//   profiles        name -> { account, scopes, rules } | verbatim text (default: alerts, uid root)
//   config          { section: { key: value } } added to / overriding credbroker.conf
//   store           'objects' (default) or 'wrapped': [pkcs11] store, wrapped_dir in the temp dir
//   startBroker     false: don't start credbrokerd
//   importAccount   false: don't import the account
//   valgrind        true or an array of valgrind options: run credbrokerd under valgrind
//   brokerEnv       extra environment for credbrokerd
//   brokerWrapper   a command prefix for credbrokerd that execs it (setpriv ...)
//   refreshTokenScopes  what the emulator grants the canary refresh token (default Mail.Send)
//   pin, refreshToken  canaries (default: random "PIN-CANARY-…", "RT-CANARY-…")
async function setup(opts = {}) {
  const h = new Harness(opts);
  if (opts.t && typeof opts.t.after === 'function') opts.t.after(() => h.teardown());
  try {
    await h.init();
  } catch (e) {
    await h.teardown();
    throw e;
  }
  return h;
}

// spawn(), remembered so that the process is killed when the test file ends.
function spawnTracked(cmd, args, opts) {
  return track(spawn(cmd, args, opts));
}

module.exports = {
  setup,
  spawnTracked,
  Harness,
  RawClient,
  frame,
  run,
  sleep,
  waitFor,
  waitExit,
  CREDBROKERD,
  CREDBROKER,
  PEER_HELPER,
  SOFTHSM_MODULE,
  SOURCE_ROOT,
  SANITIZED,
  TENANT,
  CLIENT_ID,
  USER,
  MAIL_SEND,
};
