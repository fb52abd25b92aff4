'use strict';
// A tiny HTTP CONNECT proxy for the proxy tests (Node standard library only): it tunnels
// CONNECT host:port to 127.0.0.1 targets and records each CONNECT (target, whether the
// Proxy-Authorization header matched). refuse: answers every CONNECT 403, like a corporate proxy
// whose rules do not allow the host. auth: the Proxy-Authorization value it requires (else 407).
// Runs in the test's own process: await startConnectProxy(); ...; await proxy.close().

const http = require('node:http');
const net = require('node:net');

function startConnectProxy({ refuse = false, auth = null } = {}) {
  const connects = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    res.writeHead(405, { 'Content-Type': 'text/plain' });
    res.end('CONNECT only\n');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req, client, head) => {
    const authorized = !auth || req.headers['proxy-authorization'] === auth;
    connects.push({ target: req.url, authorized, refused: refuse });
    client.on('error', () => {});
    if (refuse) {
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (!authorized) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="t"\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const m = /^([^:]+):(\d{1,5})$/.exec(req.url);
    if (!m || (m[1] !== '127.0.0.1' && m[1] !== 'localhost')) {
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const upstream = net.connect(Number(m[2]), '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head && head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        connects,
        close: () => new Promise((done) => {
          for (const s of sockets) s.destroy();
          server.close(() => done());
        }),
      });
    });
  });
}

module.exports = { startConnectProxy };
