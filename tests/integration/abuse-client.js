'use strict';
// A hostile local user, for limits.test.js and tests/bench/abuse: what one uid can try against
// the client socket (reliability.md P12, docs/security.md). Run as another uid through setpriv,
// so it uses the Node standard library only. Prints one JSON line when done.
//
//   node abuse-client.js MODE SOCKET CONNECTIONS SECONDS [ARG]
//
// MODE
//   unknown     pipeline token requests for a profile that does not exist, reading replies
//   denied      the same for profile ARG (one this uid is denied)
//   badframes   pipeline 5-byte frames (length 1, not JSON), reading replies
//   noread      pipeline 5-byte bad frames and never read a reply
//   bigframes   pipeline 64 KiB frames (a ping padded with blanks), reading replies
//   trickle     send a 65536-byte frame header, then one byte a second
//   latency     one connection, ARG = profile: sequential token requests; p50/p99 in ms
//   hold        open CONNECTIONS connections and keep them open, sending nothing
//
// Output: { mode, opened, refused: {code: n}, replies: {code: n}, closedByBroker, firstCloseMs,
//           frameStartMs (trickle), p50, p99, n }
// closedByBroker counts the accepted connections that closed before this client began closing
// its own; the times are ms since this client started.
const net = require('node:net');

const [mode, socketPath, connText, secondsText, arg] = process.argv.slice(2);
const connections = Number(connText);
const durationMs = Number(secondsText) * 1000;

function frame(obj) {
  const body = Buffer.isBuffer(obj) ? obj : Buffer.from(JSON.stringify(obj));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

const badFrame = Buffer.from([0, 0, 0, 1, 0x78]);
const payloads = {
  unknown: frame({ v: 1, op: 'token', profile: 'no-such-profile' }),
  denied: frame({ v: 1, op: 'token', profile: arg || 'payroll' }),
  badframes: badFrame,
  noread: badFrame,
  bigframes: (() => {
    const ping = Buffer.from('{"v":1,"op":"ping"}');
    const body = Buffer.alloc(65536, 0x20);
    ping.copy(body, 0);
    return frame(body);
  })(),
};

const result = { mode, opened: 0, refused: {}, replies: {}, closedByBroker: 0, firstCloseMs: null };
const t0 = Date.now();

function count(map, key) {
  map[key] = (map[key] || 0) + 1;
}

// Splits frames off a socket's data; calls onFrame(json) for each.
function reader(sock, onFrame) {
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const n = buf.readUInt32BE(0);
      let json;
      try {
        json = JSON.parse(buf.subarray(4, 4 + n).toString('utf8'));
      } catch (_) {
        json = { error: 'unparsable' };
      }
      buf = buf.subarray(4 + n);
      onFrame(json);
    }
  });
}

const allSockets = [];
// Set when this client starts closing its own connections: a close after that is not the broker's.
let closing = false;

function closeAll(socks) {
  closing = true;
  for (const s of socks) s.destroy();
}

function open() {
  return new Promise((resolve) => {
    const sock = net.createConnection(socketPath);
    allSockets.push(sock);
    let first = true;
    let ended = false;
    sock.on('error', () => {});
    sock.once('close', () => {
      ended = true;
      if (!sock.refused && !closing) {
        result.closedByBroker += 1;
        if (result.firstCloseMs === null) result.firstCloseMs = Date.now() - t0;
      }
      resolve(null);
    });
    // A refusal at accept comes as the first frame (a request budget's rate_limited says
    // "Too many requests" instead).
    reader(sock, (json) => {
      if (first && json.ok === false && json.error === 'rate_limited' && !/requests/.test(json.message)) {
        count(result.refused, json.error);
        sock.refused = true;
        first = false;
        return;
      }
      first = false;
      count(result.replies, json.ok ? 'ok' : json.error);
      if (sock.onReply) sock.onReply(json);
    });
    sock.once('connect', () => {
      // Give a refusal a moment to arrive before counting the connection as open.
      setTimeout(() => {
        if (ended || sock.refused) return resolve(null);
        sock.accepted = true;
        resolve(sock);
      }, 20);
    });
  });
}

async function pipeline(payload, { read = true } = {}) {
  const socks = (await Promise.all(Array.from({ length: connections }, open))).filter(Boolean);
  for (const s of socks) {
    if (!read) s.pause();
    const pump = () => {
      while (!s.destroyed && Date.now() - t0 < durationMs) {
        if (!s.write(payload)) return s.once('drain', pump);
      }
    };
    pump();
  }
  await new Promise((r) => setTimeout(r, Math.max(0, durationMs - (Date.now() - t0))));
  closeAll(socks);
}

async function trickle() {
  const opened = (await Promise.all(Array.from({ length: connections }, open))).filter(Boolean);
  // A refusal (a framed rate_limited, then the broker's close) can come well after connect() when
  // the broker is busy accepting a thousand connections (under ASan). A header written to a
  // refused connection fails with EPIPE, and Node then destroys the socket with the refusal
  // unread: it would count as a connection the broker closed. Let the refusals land first.
  await new Promise((r) => setTimeout(r, 1000));
  const socks = opened.filter((s) => !s.refused && !s.destroyed);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(65536);
  for (const s of socks) {
    s.write(head);
  }
  // The broker's frame timeout runs from here, however long opening the connections took.
  result.frameStartMs = Date.now() - t0;
  const timer = setInterval(() => {
    for (const s of socks) if (!s.destroyed) s.write('x');
  }, 1000);
  await new Promise((r) => setTimeout(r, durationMs));
  clearInterval(timer);
  closeAll(socks);
}

async function hold() {
  const socks = (await Promise.all(Array.from({ length: connections }, open))).filter(Boolean);
  finish();
  process.stdout.write(`${JSON.stringify({ ready: true, opened: result.opened })}\n`);
  await new Promise((r) => setTimeout(r, durationMs));
  closeAll(socks);
}

async function latency() {
  const sock = await open();
  if (!sock) return;
  const request = frame({ v: 1, op: 'token', profile: arg });
  const times = [];
  while (Date.now() - t0 < durationMs && !sock.destroyed) {
    const start = process.hrtime.bigint();
    await new Promise((resolve) => {
      sock.onReply = resolve;
      sock.write(request);
    });
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    await new Promise((r) => setTimeout(r, 5));
  }
  closeAll([sock]);
  times.sort((a, b) => a - b);
  result.n = times.length;
  result.p50 = times[Math.floor(times.length * 0.5)];
  result.p99 = times[Math.min(times.length - 1, Math.floor(times.length * 0.99))];
  result.max = times[times.length - 1];
}

// A refusal can arrive after the 20 ms grace on a busy machine: count at the end.
function finish() {
  result.opened = allSockets.filter((s) => s.accepted && !s.refused).length;
}

async function main() {
  switch (mode) {
    case 'unknown': case 'denied': case 'badframes': case 'bigframes':
      await pipeline(payloads[mode]);
      break;
    case 'noread':
      await pipeline(payloads.noread, { read: false });
      break;
    case 'trickle':
      await trickle();
      break;
    case 'hold':
      await hold();
      break;
    case 'latency':
      await latency();
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  finish();
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(e && e.stack || e) })}\n`);
  process.exit(1);
});
