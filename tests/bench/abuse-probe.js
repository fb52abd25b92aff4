'use strict';
// The legitimate user next to an attacker, for tests/bench/abuse: one connection asking for
// tokens one after another, timing each. Run as another uid through setpriv, so Node standard
// library only. Prints one JSON line when done.
//
//   node abuse-probe.js SOCKET PROFILE SECONDS PACE_MS [MIN_TTL] [COUNT]
//
// Sends a token request for PROFILE, waits for the reply, sleeps PACE_MS, again, for SECONDS
// (or until COUNT replies when COUNT > 0). MIN_TTL > 0 adds "min_ttl" to every request. A
// connection the broker closes is reopened (counted in "reconnects"); a request with no reply
// within 5 s counts as "timeout" and the connection is reopened.
//
// Output: { n, replies: {ok|code: n}, p50, p99, max (ms, over every reply), ms, reconnects,
//           expires_in (of the last ok reply), errors: [first few connection errors] }
const net = require('node:net');

const [socketPath, profile, secondsText, paceText, minTtlText, countText] = process.argv.slice(2);
const durationMs = Number(secondsText) * 1000;
const paceMs = Number(paceText || 0);
const minTtl = Number(minTtlText || 0);
const count = Number(countText || 0);

const request = { v: 1, op: 'token', profile };
if (minTtl > 0) request.min_ttl = minTtl;
const body = Buffer.from(JSON.stringify(request));
const head = Buffer.alloc(4);
head.writeUInt32BE(body.length);
const payload = Buffer.concat([head, body]);

const result = { n: 0, replies: {}, reconnects: 0, errors: [] };
const times = [];

function connect() {
  return new Promise((resolve) => {
    const sock = net.createConnection(socketPath);
    let buf = Buffer.alloc(0);
    sock.waiter = null;
    sock.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        let json;
        try {
          json = JSON.parse(buf.subarray(4, 4 + n).toString('utf8'));
        } catch (_) {
          json = { ok: false, error: 'unparsable' };
        }
        buf = buf.subarray(4 + n);
        const w = sock.waiter;
        sock.waiter = null;
        if (w) w(json);
      }
    });
    sock.on('error', (e) => {
      if (result.errors.length < 5) result.errors.push(e.code || e.message);
    });
    sock.on('close', () => {
      sock.closed = true;
      const w = sock.waiter;
      sock.waiter = null;
      if (w) w(null);
    });
    sock.once('connect', () => resolve(sock));
    sock.once('close', () => resolve(sock));
  });
}

function ask(sock) {
  return new Promise((resolve) => {
    if (sock.closed) return resolve(null);
    const timer = setTimeout(() => {
      sock.waiter = null;
      resolve({ ok: false, error: 'timeout' });
    }, 5000);
    sock.waiter = (json) => {
      clearTimeout(timer);
      resolve(json);
    };
    sock.write(payload);
  });
}

async function main() {
  const t0 = Date.now();
  let sock = await connect();
  while (Date.now() - t0 < durationMs && (count === 0 || result.n < count)) {
    const start = process.hrtime.bigint();
    const reply = await ask(sock);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (!reply || reply.error === 'timeout') {
      const key = reply ? 'timeout' : 'closed';
      result.replies[key] = (result.replies[key] || 0) + 1;
      sock.destroy();
      sock = await connect();
      result.reconnects += 1;
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    const key = reply.ok ? 'ok' : reply.error;
    result.replies[key] = (result.replies[key] || 0) + 1;
    if (reply.ok) result.expires_in = reply.expires_in;
    times.push(ms);
    result.n += 1;
    if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
  }
  sock.destroy();
  result.ms = Date.now() - t0;
  times.sort((a, b) => a - b);
  if (times.length) {
    result.p50 = times[Math.floor(times.length * 0.5)];
    result.p99 = times[Math.min(times.length - 1, Math.floor(times.length * 0.99))];
    result.max = times[times.length - 1];
  }
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ fatal: String((e && e.stack) || e) })}\n`);
  process.exit(1);
});
