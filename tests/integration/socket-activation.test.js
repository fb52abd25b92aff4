'use strict';
// Socket activation and the service manager protocol, as systemd would run credbrokerd
// (issue 13 item 4): the client socket comes from systemd-socket-activate, or from a hand-made
// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES environment; READY/STATUS/RELOADING/STOPPING and
// WATCHDOG go to a NOTIFY_SOCKET this test owns (tests/integration/notify-sink.c).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { setup, spawnTracked, waitFor, waitExit, CREDBROKERD } = require('./harness');

const NOTIFY_SINK = process.env.CREDBROKER_NOTIFY_SINK;
const LISTEN_EXEC = process.env.CREDBROKER_LISTEN_EXEC;
const HAVE_SYSTEMD = process.env.CREDBROKER_HAVE_SYSTEMD === '1';
const ACTIVATE = spawnSync('sh', ['-c', 'command -v systemd-socket-activate'], { encoding: 'utf8' }).stdout.trim();

// A NOTIFY_SOCKET: resolves { messages (strings, in arrival order), waitMessage(pred), stop() }.
async function notifySink(socketPath) {
  const child = spawnTracked(NOTIFY_SINK, [socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages = [];
  let partial = '';
  child.stdout.setEncoding('latin1');
  child.stdout.on('data', (d) => {
    partial += d;
    let i;
    while ((i = partial.indexOf('\0')) >= 0) {
      messages.push(partial.slice(0, i));
      partial = partial.slice(i + 1);
    }
  });
  await waitFor('the notify sink to bind', () => messages[0] === 'ready');
  messages.shift();
  return {
    messages,
    waitMessage: (what, pred, timeoutMs = 10000) => waitFor(what, () => messages.find(pred), { timeoutMs }),
    stop: () => child.kill('SIGKILL'),
  };
}

const fields = (m) => Object.fromEntries(m.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

// The socket in the configuration must stay unused: the broker serves the one it is handed.
function unusedSocketPath() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbsa-'));
  return { dir, socket: path.join(dir, 'configured.sock') };
}

test('under systemd-socket-activate: the passed socket serves tokens; READY, RELOADING, WATCHDOG, STOPPING reach NOTIFY_SOCKET', {
  timeout: 90000,
  skip: !HAVE_SYSTEMD ? 'credbrokerd built without libsystemd (-Dsystemd=disabled): no socket activation'
    : !ACTIVATE ? 'systemd-socket-activate is not installed' : false,
}, async (t) => {
  const unused = unusedSocketPath();
  t.after(() => fs.rmSync(unused.dir, { recursive: true, force: true }));
  const h = await setup({ t, startBroker: false, config: { broker: { socket: unused.socket } } });
  const sink = await notifySink(h.p('notify.sock'));
  t.after(() => sink.stop());

  const start = async (extraEnv) => {
    const env = { NOTIFY_SOCKET: h.p('notify.sock'), ...extraEnv };
    // systemd-socket-activate hands its child only the variables named with -E.
    const pass = ['SOFTHSM2_CONF', ...Object.keys(env),
      ...['ASAN_OPTIONS', 'LSAN_OPTIONS', 'UBSAN_OPTIONS'].filter((k) => k in process.env)].flatMap((k) => ['-E', k]);
    h.opts.brokerEnv = env;
    // It listens on the harness's socket path and starts the broker at the first connection
    // (the harness's ping), as credbroker.socket does.
    await h.startBroker({ wrapper: [ACTIVATE, '-l', h.socket, '--fdname=client', ...pass] });
  };

  await start({});
  const ready = await sink.waitMessage('READY=1', (m) => fields(m).READY === '1');
  assert.equal(fields(ready).STATUS, 'Serving');
  assert.match(h.brokerLog(), /Using the socket passed by systemd\./);
  assert.equal(fs.existsSync(unused.socket), false, 'the broker bound the configured socket instead');

  const tok = await h.cli(['token', '-p', 'alerts']);
  assert.equal(tok.code, 0, tok.stderr);
  assert.ok(tok.stdout.trim().length > 40, 'a token came through the activated socket');

  // SIGHUP: RELOADING=1, then READY=1 again once the policy is in.
  const before = sink.messages.length;
  assert.equal(await h.reloadBroker(), 'reloaded');
  await waitFor('RELOADING=1, then READY=1, after SIGHUP', () => {
    const since = sink.messages.slice(before);
    const reloading = since.findIndex((m) => fields(m).RELOADING === '1');
    return reloading >= 0 && since.slice(reloading + 1).some((m) => fields(m).READY === '1');
  });

  const stopped = await h.stopBroker();
  assert.equal(stopped.code, 0, stopped.stderr);
  await sink.waitMessage('STOPPING=1', (m) => fields(m).STOPPING === '1');
  assert.equal(sink.messages.some((m) => fields(m).WATCHDOG), false, 'WATCHDOG=1 without WatchdogSec=');

  // WatchdogSec=2: systemd sets WATCHDOG_USEC (and WATCHDOG_PID, which the broker must match).
  const pings = () => sink.messages.filter((m) => fields(m).WATCHDOG === '1').length;
  await start({ WATCHDOG_USEC: '2000000' });
  await waitFor('two WATCHDOG=1 within 4 s', () => pings() >= 2, { timeoutMs: 4000 });
  await h.stopBroker();
});

test('a hand-made LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES environment is served the same way', {
  timeout: 60000,
  skip: !HAVE_SYSTEMD ? 'credbrokerd built without libsystemd (-Dsystemd=disabled): no socket activation' : false,
}, async (t) => {
  const unused = unusedSocketPath();
  t.after(() => fs.rmSync(unused.dir, { recursive: true, force: true }));
  const h = await setup({ t, startBroker: false, config: { broker: { socket: unused.socket } } });
  const sink = await notifySink(h.p('notify.sock'));
  t.after(() => sink.stop());

  // listen-exec binds h.socket as fd 3, sets LISTEN_FDS=1, LISTEN_PID=<its pid>,
  // LISTEN_FDNAMES=client, and execs the broker (which keeps the pid).
  const log = fs.openSync(h.p('handmade.log'), 'a');
  const broker = spawnTracked(LISTEN_EXEC, [h.socket, CREDBROKERD, '--config', h.conf], {
    stdio: ['ignore', log, log],
    env: h.env({ NOTIFY_SOCKET: h.p('notify.sock') }),
  });
  fs.closeSync(log);
  t.after(() => broker.exitCode === null && broker.kill('SIGKILL'));

  await sink.waitMessage('READY=1', (m) => fields(m).READY === '1');
  assert.match(fs.readFileSync(h.p('handmade.log'), 'utf8'), /Using the socket passed by systemd\./);
  assert.equal(fs.existsSync(unused.socket), false);
  const tok = await h.cli(['token', '-p', 'alerts']);
  assert.equal(tok.code, 0, tok.stderr);
  broker.kill('SIGTERM');
  const r = await waitExit(broker);
  assert.equal(r.code, 0);
  await sink.waitMessage('STOPPING=1', (m) => fields(m).STOPPING === '1');
});
