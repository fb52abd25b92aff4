'use strict';
// Many clients at once, for single-flight.test.js and tests/bench/refresh-storm: opens COUNT
// connections to SOCKET, prints "ready", waits for a line on stdin, sends REQUEST (JSON) on
// every connection at once and prints one JSON line: how many replies, which errors, and the
// SHA-256 of each distinct access token (never a token). Run as other uids through setpriv, so
// it uses the Node standard library only and nothing of the harness.
const net = require('node:net');
const crypto = require('node:crypto');
const readline = require('node:readline');

const [socketPath, countText, requestText, timeoutText] = process.argv.slice(2);
const count = Number(countText);
const timeoutMs = Number(timeoutText || 60000);
const body = Buffer.from(requestText, 'utf8');
const header = Buffer.alloc(4);
header.writeUInt32BE(body.length);
const request = Buffer.concat([header, body]);

function connect() {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    sock.once('connect', () => resolve(sock));
    sock.once('error', reject);
  });
}

// Resolves the first frame the broker sends on sock.
function firstReply(sock) {
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    sock.on('data', (d) => {
      buffer = Buffer.concat([buffer, d]);
      if (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
        resolve(JSON.parse(buffer.subarray(4, 4 + buffer.readUInt32BE(0)).toString('utf8')));
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => resolve({ error: 'closed' }));
    setTimeout(() => resolve({ error: 'timeout' }), timeoutMs);
  });
}

async function main() {
  const socks = [];
  for (let i = 0; i < count; i++) socks.push(await connect());
  const replies = socks.map(firstReply);
  process.stdout.write('ready\n');
  await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once('line', resolve));
  const t0 = process.hrtime.bigint();
  for (const s of socks) s.write(request);
  const got = await Promise.all(replies);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const summary = { replies: got.length, ok: 0, errors: {}, tokens: [], ms };
  const tokens = new Set();
  for (const r of got) {
    if (r.ok === true) {
      summary.ok += 1;
      tokens.add(crypto.createHash('sha256').update(r.access_token).digest('hex').slice(0, 16));
    } else {
      summary.errors[r.error] = (summary.errors[r.error] || 0) + 1;
    }
  }
  summary.tokens = [...tokens];
  for (const s of socks) s.destroy();
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(0));
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(e) })}\n`);
  process.exit(1);
});
