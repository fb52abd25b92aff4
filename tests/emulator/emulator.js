#!/usr/bin/env node
// credbroker test emulator: Microsoft identity platform v2.0 token endpoint and
// Microsoft Graph sendMail, over HTTPS on 127.0.0.1, plus a plain-HTTP admin API
// that tests use to provision tokens, inject faults and inspect what arrived.
//
// Node 20 standard library only. The wire facts it reproduces are collected in
// /work/shared/microsoft-identity.md (error JSON shape, AADSTS codes, scopes,
// Graph error shape). See README.md in this directory for usage.
//
// Layout of this file:
//   1. Constants and command line
//   2. Small utilities (ids, time formats, atomic files, bodies, responses, logging)
//   3. Persistent state (refresh tokens, access tokens, clients) in STATE/state.json
//   4. Counters and fault injection
//   5. Identity platform: error catalogue, token endpoint, grant handlers
//      (device code, ROPC, client credentials, app registrations and the generic
//      "any OAuth 2.0 server" mode live in lib/*.js, wired up at the end of section 5)
//   6. Microsoft Graph: request validation shared with graph-mail.js (sendMail, drafts, uploads)
//   7. Admin API
//   8. Servers and lifecycle
//
// Security notes (this is a fixture for a security project):
//   * Token values are never logged and never written to disk: state.json keys
//     tokens by SHA-256, so a restarted emulator can recognise tokens it issued
//     without being able to reproduce them.
//   * Client secrets are kept as SHA-256 and user passwords as salted SHA-256 only;
//     neither is ever logged or echoed by the admin API. Device codes are kept as
//     SHA-256, in memory.
//   * Both listeners bind to 127.0.0.1 only. The admin API has no authentication
//     and must never be exposed.

'use strict';

const fs = require('fs');
const path = require('path');
const http = require('http');
const https = require('https');
const crypto = require('crypto');

// ---------------------------------------------------------------------------
// 1. Constants and command line
// ---------------------------------------------------------------------------

const LISTEN_HOST = '127.0.0.1';
// The Microsoft Graph resource of every cloud (its App ID URI, the prefix of its scopes).
const CLOUD_GRAPH_RESOURCES = ['https://graph.microsoft.com', 'https://graph.microsoft.us',
  'https://dod-graph.microsoft.us', 'https://microsoftgraph.chinacloudapi.cn'];
// The one this emulator plays (--graph-resource, read here: everything below uses it). A
// national cloud's Entra knows only its own Graph: a scope of another cloud's Graph is
// AADSTS500011 ("resource principal not found"), and its Graph refuses other audiences.
const GRAPH_RESOURCE = graphResourceOption(process.argv.slice(2)) || 'https://graph.microsoft.com';
const MAIL_SEND_SCOPE = `${GRAPH_RESOURCE}/Mail.Send`;
const LOGIN_HOST = 'https://login.microsoftonline.com';

// OpenID Connect scopes: not resource permissions, always allowed.
const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'];
// Authority aliases that are not a real tenant.
const TENANT_ALIASES = ['common', 'organizations', 'consumers'];

const TOKEN_BODY_LIMIT = 1024 * 1024; // token endpoint: reject > 1 MB with 413
const GRAPH_BODY_LIMIT = 4 * 1024 * 1024; // Graph: "maximum request length supported is 4MB"
const ADMIN_BODY_LIMIT = 1024 * 1024;
// Over-limit bodies are read and discarded so the client sees the 413 rather
// than a broken pipe; past this much we give up and drop the connection.
const DRAIN_LIMIT = 64 * 1024 * 1024;
const HUGE_DEFAULT_SIZE = 10 * 1024 * 1024;
const HUGE_MAX_SIZE = 100 * 1024 * 1024;

const DEFAULT_REFRESH_LIFETIME = 90 * 24 * 3600; // Microsoft: 90 days of inactivity
// Expired access tokens are remembered this long so Graph can say "expired"
// rather than "invalid"; after that they are pruned from state.json.
const ACCESS_TOKEN_GRACE_MS = 3600 * 1000;

const STATE_VERSION = 1;

const USAGE = `usage: node emulator.js --cert FILE --key FILE --state-dir DIR [options]

  --cert FILE          server certificate, PEM (required)
  --key FILE           server private key, PEM (required)
  --state-dir DIR      persistent state in DIR/state.json (required)
  --port N             HTTPS port on ${LISTEN_HOST}; 0 = pick (default 0)
  --admin-port N       plain HTTP admin port on ${LISTEN_HOST}; 0 = pick (default 0)
  --mail-dir DIR       where accepted messages are stored (default STATE/mail)
  --token-lifetime S   access token expires_in, seconds (default 3599)
  --rotation MODE      lenient (Microsoft) or strict (OAuth 2.1) (default lenient)
  --device-interval S  device code polling interval, seconds (default 5)
  --device-expires-in S  device code lifetime, seconds (default 900)
  --ready-file FILE    write {"port","admin_port","pid"} here once listening
  --save-interval MS   write state.json at most every MS ms (default 0: on every change)
  --graph-resource URL the Graph resource played: https://graph.microsoft.com (default),
                       https://graph.microsoft.us, https://dod-graph.microsoft.us or
                       https://microsoftgraph.chinacloudapi.cn; another cloud's Graph
                       scopes are refused with AADSTS500011
  -h, --help           this text
`;

function graphResourceOption(argv) {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--graph-resource') return argv[i + 1];
    if (argv[i].startsWith('--graph-resource=')) return argv[i].slice('--graph-resource='.length);
  }
  return null;
}

function usageError(msg) {
  process.stderr.write(`emulator: ${msg}\n${USAGE}`);
  process.exit(2);
}

function parsePort(v, name) {
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) usageError(`${name}: not a port number: ${v}`);
  return Number(v);
}

function parseLifetime(v, name) {
  if (!/^\d{1,9}$/.test(v) || Number(v) < 1) usageError(`${name}: must be a positive integer`);
  return Number(v);
}

function parseRotation(v, name) {
  if (v !== 'lenient' && v !== 'strict') usageError(`${name}: must be lenient or strict`);
  return v;
}

const OPTION_SPEC = {
  '--cert': ['cert', String],
  '--key': ['key', String],
  '--state-dir': ['stateDir', String],
  '--mail-dir': ['mailDir', String],
  '--port': ['port', parsePort],
  '--admin-port': ['adminPort', parsePort],
  '--token-lifetime': ['tokenLifetime', parseLifetime],
  '--rotation': ['rotation', parseRotation],
  '--ready-file': ['readyFile', String],
  '--save-interval': ['saveInterval', (v, n) => { if (!/^\d{1,6}$/.test(v)) usageError(`${n}: milliseconds, 0-999999`); return Number(v); }],
  '--device-interval': ['deviceInterval', parseLifetime],
  '--device-expires-in': ['deviceExpiresIn', parseLifetime],
  '--token-lifetime-random': ['tokenLifetimeRandom', (v, n) => { if (v !== 'yes' && v !== 'no') usageError(`${n}: yes or no`); return v === 'yes'; }],
  '--loop-threshold': ['loopThreshold', (v, n) => (v === '0' ? 0 : parseLifetime(v, n))],
  '--loop-window': ['loopWindow', parseLifetime],
  '--graph-resource': ['graphResource', (v, n) => { if (!CLOUD_GRAPH_RESOURCES.includes(v)) usageError(`${n}: one of ${CLOUD_GRAPH_RESOURCES.join(', ')}`); return v; }],
  '--cloud': ['cloud', (v, n) => { if (!['global', 'usgov', 'china'].includes(v)) usageError(`${n}: global, usgov or china`); return v; }],
};

function parseArgs(argv) {
  const opts = {
    cert: null, key: null, stateDir: null, mailDir: null, readyFile: null,
    port: 0, adminPort: 0, tokenLifetime: 3599, rotation: 'lenient',
    deviceInterval: 5, deviceExpiresIn: 900,
    tokenLifetimeRandom: false, loopThreshold: null, loopWindow: 60, cloud: 'global',
    graphResource: GRAPH_RESOURCE, saveInterval: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    let name = argv[i];
    let value;
    if (name === '-h' || name === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    const eq = name.indexOf('=');
    if (name.startsWith('--') && eq > 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = OPTION_SPEC[name];
    if (!spec) usageError(`unknown option: ${name}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) usageError(`${name} needs a value`);
      value = argv[++i];
    }
    if (value === '') usageError(`${name}: empty value`);
    opts[spec[0]] = spec[1](value, name);
  }
  for (const [flag, key] of [['--cert', 'cert'], ['--key', 'key'], ['--state-dir', 'stateDir']]) {
    if (!opts[key]) usageError(`${flag} is required`);
  }
  if (!opts.mailDir) opts.mailDir = path.join(opts.stateDir, 'mail');
  // --cloud alone turns loop detection on at that cloud's threshold.
  if (opts.loopThreshold === null) opts.loopThreshold = argv.some((a) => a.startsWith('--cloud')) ? LOOP_DEFAULTS[opts.cloud] : 0;
  return opts;
}

// ---------------------------------------------------------------------------
// 2. Small utilities
// ---------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const randomB64url = (n) => crypto.randomBytes(n).toString('base64url');
const sha256hex = (s) => crypto.createHash('sha256').update(s).digest('hex');
const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const lc = (s) => String(s).toLowerCase();

// "2026-11-28 09:00:00Z", the format of AAD's error "timestamp" field.
function aadTimestamp(d = new Date()) {
  return d.toISOString().slice(0, 19).replace('T', ' ') + 'Z';
}

// "2026-11-28T09:00:00", the format of Graph's innerError "date" field.
function graphDate(d = new Date()) {
  return d.toISOString().slice(0, 19);
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Deterministic UUID-shaped id from a string (stable object ids for users).
function uuidFrom(s) {
  const h = sha256hex(s);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// Write a file so that readers never see a partial one: temp file in the same
// directory (dot-prefixed, so directory listings ignore it), fsync, rename.
function writeFileAtomic(file, data, mode = 0o600) {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  let fd;
  try {
    fd = fs.openSync(tmp, 'wx', mode);
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) try { fs.closeSync(fd); } catch (_) { /* already failing */ }
    try { fs.unlinkSync(tmp); } catch (_) { /* may not exist */ }
    throw err;
  }
}

// Read a request body up to `limit` bytes. Never rejects. Result:
//   { ok: true, body: Buffer }               complete body within limit
//   { ok: false, tooLarge: true, drop: bool } over limit; drop = stop talking to this client
//   { ok: false, aborted: true }             client went away mid-body
function readBody(req, limit) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    let done = false;
    const finish = (r) => {
      if (!done) {
        done = true;
        resolve(r);
      }
    };
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
      } else if (size > DRAIN_LIMIT) {
        req.pause();
        finish({ ok: false, tooLarge: true, drop: true });
      }
      // Between limit and DRAIN_LIMIT: discard and keep draining.
    });
    req.on('end', () => {
      if (size > limit) finish({ ok: false, tooLarge: true, drop: false });
      else finish({ ok: true, body: Buffer.concat(chunks, size) });
    });
    req.on('error', () => finish({ ok: false, aborted: true }));
    req.on('close', () => {
      if (!req.complete) finish({ ok: false, aborted: true });
    });
  });
}

function mediaType(req) {
  const ct = req.headers['content-type'];
  return typeof ct === 'string' ? lc(ct.split(';')[0].trim()) : '';
}

function sendJson(res, status, obj, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function sendEmpty(res, status, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Length': 0, ...headers });
  res.end();
}

// Drop the connection. For fault "reset" we want a real TCP RST (client sees
// "connection reset by peer"). A server-side TLSSocket wraps a TLSWrap handle,
// on which resetAndDestroy() throws ERR_INVALID_HANDLE_TYPE; the underlying TCP
// socket is reachable as the (undocumented) _parent. If neither works, a plain
// close (FIN, no HTTP response) is what the client gets.
function killSocket(socket, reset) {
  if (!socket || socket.destroyed) return;
  if (reset) {
    for (const s of [socket, socket._parent]) {
      if (s && typeof s.resetAndDestroy === 'function') {
        try {
          s.resetAndDestroy();
          if (!socket.destroyed) socket.destroy();
          return;
        } catch (_) { /* try the next one */ }
      }
    }
  }
  socket.destroy();
}

// One log line per request, written when the response finishes or the
// connection closes. Only method, path (query string dropped: it could carry
// secrets), status, duration and a short non-secret note are printed.
function safePath(url) {
  const p = String(url || '').split('?')[0];
  return p.replace(/[^\x21-\x7e]/g, '?').slice(0, 200);
}

function logLine(s) {
  process.stdout.write(`${new Date().toISOString()} ${s}\n`);
}

function attachRequestLog(server, req, res) {
  const t0 = process.hrtime.bigint();
  res.locals = { note: '' };
  res.on('close', () => {
    const ms = Number((process.hrtime.bigint() - t0) / 1000000n);
    const status = res.headersSent ? String(res.statusCode) : '-';
    const incomplete = res.headersSent && !res.writableFinished ? ' (incomplete)' : '';
    const note = res.locals.note ? ` ${res.locals.note}` : '';
    logLine(`${server} ${req.method} ${safePath(req.url)} ${status} ${ms}ms${incomplete}${note}`);
  });
}

// Notes must never contain token values; only codes and grant names.
function noteOn(res, s) {
  if (res.locals) res.locals.note = res.locals.note ? `${res.locals.note} ${s}` : s;
}

// ---------------------------------------------------------------------------
// 3. Persistent state
// ---------------------------------------------------------------------------
//
// state.json layout (all token values replaced by their SHA-256):
// {
//   "version": 1,
//   "clients": { "<client_id lower>": { "client_id": "...", "type": "public", "tenants": ["..."],
//                "app"?: { "public_client", "consent", "scopes", "roles", "secrets": [{ "id", "hint",
//                          "hash", "expires_at" }], "certificates": [{ "pem", "sha1", "sha256", ... }] } } },
//   "users": { "<username lower>": { "username", "tenant", "salt", "password_sha256", "mfa_required",
//              "federated", "password_hash_sync", "locked", "failed_attempts" } },
//   "families": { "<id>": { "tenant", "client_id", "user", "scopes": [...], "lifetime", "created_at", "source"? } },
//   "refresh_tokens": { "<sha256>": { "family", "issued_at", "expires_at", "used_at",
//                                     "revoked_at", "revoked_reason", "error_code" } },
//   "access_tokens": { "<sha256>": { "family", "tenant", "client_id", "user", "resource",
//                                    "scopes", "app_only", "issued_at", "expires_at", "revoked_at" } }
// }
// Times are epoch milliseconds. A "family" is everything derived from one
// registered refresh token (OAuth 2.1 replay detection revokes a family).

class Store {
  // saveIntervalMs 0: save() writes at once; more: at most that often (a benchmark with
  // thousands of tokens, where rewriting the whole file per request would be what is measured).
  constructor(stateDir, saveIntervalMs = 0) {
    this.file = path.join(stateDir, 'state.json');
    this.data = Store.empty();
    this.saveIntervalMs = saveIntervalMs;
    this.saveTimer = null;
  }

  static empty() {
    return { version: STATE_VERSION, clients: {}, families: {}, refresh_tokens: {}, access_tokens: {}, users: {} };
  }

  load() {
    let text;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if (err.code === 'ENOENT') return;
      throw err;
    }
    const d = JSON.parse(text);
    if (!isPlainObject(d) || d.version !== STATE_VERSION) {
      throw new Error(`${this.file}: unsupported state version`);
    }
    for (const k of ['clients', 'families', 'refresh_tokens', 'access_tokens']) {
      if (!isPlainObject(d[k])) throw new Error(`${this.file}: missing "${k}"`);
    }
    // Added later; state files written before have none.
    if (d.users === undefined) d.users = {};
    if (!isPlainObject(d.users)) throw new Error(`${this.file}: bad "users"`);
    this.data = d;
  }

  // Called after every change. Synchronous on purpose: Node is single
  // threaded, so the file always reflects every reply already sent
  // (unless --save-interval defers it).
  save() {
    if (this.saveIntervalMs > 0) {
      if (!this.saveTimer) this.saveTimer = setTimeout(() => this.flush(), this.saveIntervalMs);
      return;
    }
    this.prune();
    writeFileAtomic(this.file, JSON.stringify(this.data, null, 1) + '\n');
  }

  // Writes a deferred save now (at shutdown).
  flush() {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.prune();
    writeFileAtomic(this.file, JSON.stringify(this.data, null, 1) + '\n');
  }

  prune(now = Date.now()) {
    const d = this.data;
    for (const [h, rt] of Object.entries(d.refresh_tokens)) {
      if (rt.expires_at <= now) delete d.refresh_tokens[h];
    }
    for (const [h, at] of Object.entries(d.access_tokens)) {
      if (at.expires_at + ACCESS_TOKEN_GRACE_MS <= now) delete d.access_tokens[h];
    }
    const inUse = new Set();
    for (const rt of Object.values(d.refresh_tokens)) inUse.add(rt.family);
    for (const at of Object.values(d.access_tokens)) if (at.family) inUse.add(at.family);
    for (const id of Object.keys(d.families)) if (!inUse.has(id)) delete d.families[id];
  }

  client(clientId) {
    return this.data.clients[lc(clientId)] || null;
  }

  knownTenant(tenant) {
    const t = lc(tenant);
    return Object.values(this.data.clients).some((c) => c.tenants.includes(t));
  }

  // Register (or re-register) a refresh token handed out by a test.
  registerRefreshToken({ tenant, clientId, user, scopes, lifetime, token }) {
    const now = Date.now();
    const key = lc(clientId);
    const c = this.data.clients[key] || (this.data.clients[key] = { client_id: clientId, type: 'public', tenants: [] });
    if (!c.tenants.includes(lc(tenant))) c.tenants.push(lc(tenant));
    const family = crypto.randomUUID();
    this.data.families[family] = {
      tenant: lc(tenant), client_id: clientId, user, scopes, lifetime, created_at: now,
    };
    this.data.refresh_tokens[sha256hex(token)] = {
      family, issued_at: now, expires_at: now + lifetime * 1000, used_at: null,
      revoked_at: null, revoked_reason: null, error_code: null,
    };
    this.save();
    return { family, expiresAt: now + lifetime * 1000 };
  }

  // A new family for a grant that starts a session (password, device code, generic mode).
  // "source" says which, so a password change can revoke password-derived tokens only.
  createFamily({ tenant, clientId, user, scopes, lifetime, source }) {
    const family = crypto.randomUUID();
    this.data.families[family] = {
      tenant: lc(tenant), client_id: clientId, user, scopes, lifetime, created_at: Date.now(), source,
    };
    return family;
  }

  // Look a refresh token up. Returns { hash, rt, family } or null.
  findRefreshToken(token) {
    const hash = sha256hex(token);
    const rt = this.data.refresh_tokens[hash];
    if (!rt) return null;
    const family = this.data.families[rt.family];
    if (!family) return null;
    return { hash, rt, family };
  }

  // Mint a new refresh token in an existing family. Returns the token value.
  issueRefreshToken(familyId) {
    const fam = this.data.families[familyId];
    const now = Date.now();
    // Shaped like Microsoft's opaque refresh tokens ("0.A..." base64url blob).
    const token = `0.A${randomB64url(96)}`;
    this.data.refresh_tokens[sha256hex(token)] = {
      family: familyId, issued_at: now, expires_at: now + fam.lifetime * 1000, used_at: null,
      revoked_at: null, revoked_reason: null, error_code: null,
    };
    return token;
  }

  // Mint an access token. It looks like a JWT (three base64url parts) but is
  // deliberately opaque: a header, then random bytes. Clients must treat
  // access tokens as opaque, and a client that tries to decode one fails here.
  issueAccessToken({ family, tenant, clientId, user, resource, scopes, appOnly, lifetime }) {
    const now = Date.now();
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', kid: 'credbroker-emulator' }));
    const token = `${header}.${randomB64url(240)}.${randomB64url(256)}`;
    this.data.access_tokens[sha256hex(token)] = {
      family: family || null, tenant: lc(tenant), client_id: clientId, user: user || null,
      resource, scopes, app_only: !!appOnly, issued_at: now, expires_at: now + lifetime * 1000,
      revoked_at: null,
    };
    return token;
  }

  findAccessToken(token) {
    return this.data.access_tokens[sha256hex(token)] || null;
  }

  // Revoke refresh tokens matching pred. Returns the number revoked.
  revokeRefreshTokens(pred, reason, errorCode = null) {
    const now = Date.now();
    let n = 0;
    for (const rt of Object.values(this.data.refresh_tokens)) {
      const fam = this.data.families[rt.family];
      if (!rt.revoked_at && fam && pred(rt, fam)) {
        rt.revoked_at = now;
        rt.revoked_reason = reason;
        rt.error_code = errorCode;
        n++;
      }
    }
    return n;
  }

  revokeAccessTokens(pred) {
    const now = Date.now();
    let n = 0;
    for (const at of Object.values(this.data.access_tokens)) {
      if (!at.revoked_at && at.expires_at > now && pred(at)) {
        at.revoked_at = now;
        n++;
      }
    }
    return n;
  }

  // Summary for GET /admin/state: counts only, never token values or hashes.
  summary() {
    const now = Date.now();
    const byUser = {};
    let revoked = 0;
    for (const rt of Object.values(this.data.refresh_tokens)) {
      const fam = this.data.families[rt.family];
      if (!fam) continue;
      if (rt.revoked_at) revoked++;
      else if (rt.expires_at > now) byUser[fam.user] = (byUser[fam.user] || 0) + 1;
    }
    let liveAccess = 0;
    for (const at of Object.values(this.data.access_tokens)) {
      if (!at.revoked_at && at.expires_at > now) liveAccess++;
    }
    return {
      live_refresh_tokens_by_user: byUser,
      revoked_refresh_tokens: revoked,
      live_access_tokens: liveAccess,
      families: Object.keys(this.data.families).length,
      clients: Object.values(this.data.clients).map((c) => ({ client_id: c.client_id, tenants: c.tenants })),
    };
  }
}

// ---------------------------------------------------------------------------
// 4. Counters and fault injection
// ---------------------------------------------------------------------------

// Every request to an endpoint is counted, including failed and faulted ones.
// Counters live in memory only: a restarted emulator starts from zero.
function newCounters() {
  return {
    token: 0, // requests to /{tenant}/oauth2/v2.0/token
    token_by_grant: {}, // by grant_type ("none" if absent, "other" if unrecognised)
    token_success: 0, // 2xx answers
    // Requests to the token endpoint being handled now (arrived, not yet answered or closed),
    // and the most at once since the counters were last reset: a client's concurrency.
    token_in_flight: 0,
    token_in_flight_max: 0,
    token_errors: 0, // 4xx/5xx answers (including injected status faults)
    send_mail: 0, // requests to .../sendMail
    send_mail_by_mailbox: {}, // accepted messages per resolved mailbox
    send_mail_accepted: 0, // 202 answers
    send_mail_errors: 0, // 4xx/5xx answers (including injected status faults)
    faults_injected: { token: 0, graph: 0, devicecode: 0, oauth: 0, upload: 0 },
    mail_drafts: 0, // POST .../messages (drafts)
    mail_upload_sessions: 0, // POST .../attachments/createUploadSession
    mail_upload_requests: 0, // PUT/GET to an upload URL
    mail_draft_sends: 0, // POST .../messages/{id}/send
    mail_errors: 0, // 4xx/5xx answers to the three above
    not_found: 0, // HTTPS requests to no known endpoint
    devicecode: 0, // requests to /{tenant}/oauth2/v2.0/devicecode
    devicecode_success: 0,
    devicecode_errors: 0,
    device_polls: 0, // device_code grant requests (both modes)
    device_pending: 0, // ... answered authorization_pending
    device_slow_downs: 0, // ... answered slow_down
    oauth_token: 0, // requests to /oauth/token (generic mode)
    oauth_token_by_grant: {},
    oauth_device_authorization: 0, // requests to /oauth/device_authorization
    oauth_success: 0,
    oauth_errors: 0,
    oauth_replays: 0, // rotated-out refresh tokens presented again (family revoked)
    assertion_by_alg: {}, // well-formed client assertions by header "alg": PS256, RS256, other
    // The last TOKEN_LOG_MAX requests to any token or device endpoint, oldest first:
    // { at (ISO, ms), t (epoch ms), endpoint, grant, client_id, status }.
    token_requests: [],
    tls_sessions: 0, // TLS handshakes completed on the HTTPS port ('secureConnection')
    tls_sessions_resumed: 0, // ... of which resumed a session (abbreviated handshake)
    https_requests: 0, // HTTP requests on the HTTPS port, on any connection
  };
}

const TOKEN_LOG_MAX = 1000;

// Record a token/device endpoint request at arrival; status is filled in when answered.
function logTokenRequest(app, endpoint, res) {
  const now = Date.now();
  const entry = { at: new Date(now).toISOString(), t: now, endpoint, grant: null, client_id: null, status: null };
  const log = app.counters.token_requests;
  log.push(entry);
  if (log.length > TOKEN_LOG_MAX) log.splice(0, log.length - TOKEN_LOG_MAX);
  res.on('close', () => {
    entry.status = res.headersSent ? res.statusCode : null;
  });
  return entry;
}

// Grant types we count by name; anything else counts as "other" so a client
// cannot grow the counters object without bound.
const KNOWN_GRANT_TYPES = [
  'refresh_token', 'password', 'client_credentials', 'authorization_code',
  'urn:ietf:params:oauth:grant-type:device_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer',
];

// 'upload': PUT/GET to an attachment upload URL (graph-mail.js). 'lost_reply' (graph and upload):
// the request is carried out (a chunk stored, a message sent), then the connection is reset
// instead of the answer.
const FAULT_ENDPOINTS = ['token', 'graph', 'devicecode', 'oauth', 'upload'];
const FAULT_MODES = ['status', 'hang', 'reset', 'truncate', 'huge', 'html', 'latency', 'no_refresh_token', 'lost_reply'];
// Modes that answer normally after all (token endpoint only): 'latency' waits delay_ms first,
// 'no_refresh_token' leaves refresh_token out of a success.
const PASS_THROUGH_MODES = ['latency', 'no_refresh_token'];

class Faults {
  constructor() {
    this.queues = { token: [], graph: [], devicecode: [], oauth: [], upload: [] };
    this.hung = new Set(); // responses held open by "hang", released on shutdown
  }

  add(f) {
    this.queues[f.endpoint].push(f);
  }

  clear() {
    this.queues = { token: [], graph: [], devicecode: [], oauth: [], upload: [] };
  }

  list() {
    return FAULT_ENDPOINTS.flatMap((e) => this.queues[e].map((f) => ({ ...f })));
  }

  // Consume one fault for this endpoint, FIFO. Faults queued by successive
  // POSTs run one after another (e.g. "503 once, then hang once").
  take(endpoint) {
    const q = this.queues[endpoint];
    if (!q.length) return null;
    const f = q[0];
    // "skip": let that many requests through first (e.g. fail the third chunk).
    if (f.skip > 0) {
      f.skip -= 1;
      return null;
    }
    f.count -= 1;
    if (f.count <= 0) q.shift();
    return f;
  }
}

// Validate a POST /admin/faults body. Throws AdminError.
function parseFault(b) {
  if (!FAULT_ENDPOINTS.includes(b.endpoint)) throw new AdminError(400, `endpoint must be one of ${FAULT_ENDPOINTS.join(', ')}`);
  if (!FAULT_MODES.includes(b.mode)) throw new AdminError(400, `mode must be one of ${FAULT_MODES.join(', ')}`);
  const f = { endpoint: b.endpoint, mode: b.mode, count: 1 };
  if (b.count !== undefined) {
    if (!Number.isInteger(b.count) || b.count < 1) throw new AdminError(400, 'count must be a positive integer');
    f.count = b.count;
  }
  if (b.skip !== undefined) {
    if (!Number.isInteger(b.skip) || b.skip < 0 || b.skip > 100000) throw new AdminError(400, 'skip must be an integer 0..100000');
    f.skip = b.skip;
  }
  if (b.mode === 'lost_reply' && b.endpoint !== 'upload' && b.endpoint !== 'graph') throw new AdminError(400, 'mode lost_reply applies to the graph and upload endpoints only');
  if (b.mode === 'status') {
    // Default status: the catalogue's for a token error_code, else 503.
    let st = b.status;
    if (st === undefined) st = (b.endpoint === 'token' || b.endpoint === 'devicecode') && AADSTS[b.error_code] ? AADSTS[b.error_code][1] : 503;
    if (!Number.isInteger(st) || st < 400 || st > 599) throw new AdminError(400, 'status must be an integer 400..599');
    f.status = st;
  }
  if (b.retry_after !== undefined) {
    // Seconds, or a string passed through verbatim (e.g. an HTTP date).
    const ok = (Number.isInteger(b.retry_after) && b.retry_after >= 0)
      || (typeof b.retry_after === 'string' && /^[\x20-\x7e]{1,100}$/.test(b.retry_after));
    if (!ok) throw new AdminError(400, 'retry_after must be a non-negative integer or a printable string');
    f.retry_after = b.retry_after;
  }
  if (PASS_THROUGH_MODES.includes(b.mode) && b.endpoint !== 'token') {
    throw new AdminError(400, `mode ${b.mode} applies to the token endpoint only`);
  }
  if (b.mode === 'latency') {
    if (!Number.isInteger(b.delay_ms) || b.delay_ms < 0 || b.delay_ms > 120000) throw new AdminError(400, 'delay_ms must be an integer 0..120000');
    f.delay_ms = b.delay_ms;
  }
  if (b.mode === 'html') {
    const st = b.status === undefined ? 502 : b.status;
    if (!Number.isInteger(st) || st < 200 || st > 599) throw new AdminError(400, 'status must be an integer 200..599');
    f.status = st;
  }
  if (b.mode === 'huge') {
    const size = b.size === undefined ? HUGE_DEFAULT_SIZE : b.size;
    if (!Number.isInteger(size) || size < 1024 || size > HUGE_MAX_SIZE) throw new AdminError(400, `size must be 1024..${HUGE_MAX_SIZE}`);
    f.size = size;
  }
  // Optional overrides of the error body for mode "status":
  //   token: "error_code" (AADSTS number; "error" and text come from the catalogue),
  //          "error", "suberror", "claims" (string)
  //   graph: "code", "message"
  if (b.error_code !== undefined) {
    if (!Number.isInteger(b.error_code) || b.error_code < 1) throw new AdminError(400, 'error_code must be a positive integer');
    f.error_code = b.error_code;
  }
  for (const k of ['error', 'suberror', 'claims', 'code', 'message']) {
    if (b[k] !== undefined) {
      if (typeof b[k] !== 'string' || !b[k] || b[k].length > 2000) throw new AdminError(400, `${k} must be a non-empty string`);
      f[k] = b[k];
    }
  }
  return f;
}

// ---------------------------------------------------------------------------
// 5. Identity platform: token endpoint
// ---------------------------------------------------------------------------

// AADSTS catalogue: code -> [default "error" value, default HTTP status, message].
// Messages paraphrase Microsoft's; "{x}" placeholders are filled from ctx.
// Fault injection with only an error_code picks error and status from here.
// Sources beyond /work/shared/microsoft-identity.md: MicrosoftDocs/entra-docs
// docs/identity-platform/reference-error-codes.md (50013, 50034, 50048, 50055, 50057, 65004,
// 90019, 700022);
// captured Entra responses in AzureAD/microsoft-authentication-library-for-dotnet
// tests/Microsoft.Identity.Test.Common/Core/Mocks/MockHelpers.cs (50027, 90014, 500011,
// 700021, 700024, 1002012, 5002723, 5002738); Azure SDK for Java "Troubleshoot service
// principal authentication" (700023, 700027); Azure/azure-cli#22251 (70020 text);
// lib/apps.js, lib/client-credentials.js and lib/device.js say which code is used when.
const AADSTS = {
  50013: ['invalid_client', 401, 'Assertion is invalid: a client assertion with this jti has already been used.'],
  50027: ['invalid_request', 400, 'JWT token is invalid or malformed.'],
  50034: ['invalid_grant', 400, 'The user account {user} does not exist in the {tenant} directory. To sign into this application, the account must be added to the directory.'],
  50048: ['invalid_client', 401, 'Subject mismatches Issuer claim in the client assertion.'],
  50053: ['invalid_grant', 400, "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password."],
  50055: ['invalid_grant', 400, 'The password is expired.'],
  50057: ['invalid_grant', 400, 'The user account is disabled.'],
  50076: ['invalid_grant', 400, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{resource}'."],
  50079: ['interaction_required', 400, 'Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access the resource.'],
  50126: ['invalid_grant', 400, 'Error validating credentials due to invalid username or password.'],
  50173: ['invalid_grant', 400, 'The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.'],
  50196: ['invalid_request', 400, 'The server terminated an operation because it encountered a client request loop.'],
  90014: ['invalid_request', 400, "The required field '{field}' is missing from the credential. Ensure that you have all the necessary parameters for the login request."],
  90019: ['invalid_request', 400, 'No tenant-identifying information found in either the request or implied by any provided credentials.'],
  53003: ['invalid_grant', 400, 'Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.'],
  65001: ['invalid_grant', 400, "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource."],
  65004: ['authorization_declined', 400, 'User declined to consent to access the app.'],
  70000: ['invalid_grant', 400, 'Provided grant is invalid or malformed.'],
  70003: ['unsupported_grant_type', 400, "The app requested an unsupported grant type '{grant_type}'."],
  70008: ['invalid_grant', 400, 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.'],
  70011: ['invalid_scope', 400, "The provided value for the input parameter 'scope' is not valid. {detail}"],
  70016: ['authorization_pending', 400, 'OAuth 2.0 device flow error. Authorization is pending. Continue polling.'],
  70018: ['bad_verification_code', 400, 'Invalid verification code. Ensure that the user is entering the correct user code.'],
  70020: ['expired_token', 400, "The provided value for the input parameter 'device_code' is not valid. This device code has expired."],
  70043: ['invalid_grant', 400, 'The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.'],
  90002: ['invalid_tenant', 400, "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."],
  90033: ['temporarily_unavailable', 503, 'A transient error has occurred. Please try again.'],
  90100: ['invalid_request', 400, '{param} parameter is empty or not valid.'],
  500011: ['invalid_resource', 400, 'The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.'],
  700016: ['unauthorized_client', 400, "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."],
  700025: ['invalid_client', 400, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented."],
  700021: ['invalid_client', 401, "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials ."],
  700022: ['invalid_scope', 400, 'The provided value for the input parameter scope is not valid because it contains more than one resource.'],
  700023: ['invalid_client', 401, 'Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .'],
  700024: ['invalid_client', 401, 'Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .'],
  700027: ['invalid_client', 401, "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{thumbprint}']"],
  700082: ['invalid_grant', 400, 'The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for 90.00:00:00.'],
  900144: ['invalid_request', 400, "The request body must contain the following parameter: '{param}'."],
  900561: ['invalid_request', 400, 'The endpoint only accepts POST requests. Received a {method} request.'],
  7000215: ['invalid_client', 401, 'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.'],
  7000218: ['invalid_client', 401, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."],
  7000222: ['invalid_client', 401, "The provided client secret keys for app '{client_id}' are expired."],
  1002012: ['invalid_scope', 400, 'The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).'],
  5002723: ['invalid_client', 401, 'Invalid JWT token. No certificate SHA-1 thumbprint, certificate SHA-256 thumbprint, nor keyId specified in token header.'],
  5002727: ['invalid_request', 400, "Invalid JWT header type specified, must be 'JWT' or 'http://openid.net/specs/jwt/1.0'."],
  5002738: ['invalid_client', 401, "Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256,PS256'"],
  9001023: ['invalid_request', 400, "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint."],
  9002313: ['invalid_request', 400, 'Invalid request. Request is malformed or invalid.'],
};

// Refresh-token failures carry suberror "bad_token" (seen in real responses).
const BAD_TOKEN_CODES = [700082, 70008, 50173];

class AadError extends Error {
  // status/error default from the catalogue; vars fill its placeholders.
  constructor(code, vars = {}, opts = {}) {
    const entry = AADSTS[code] || ['invalid_request', 400, 'Error {code}.'];
    // Values echoed from the request are clipped: a client must not be able
    // to make error bodies arbitrarily large. opts.text replaces the catalogue's
    // wording where one code has several (700027, slow_down).
    const text = (opts.text || entry[2]).replace(/\{(\w+)\}/g, (_, k) => (k === 'code' ? String(code) : String(vars[k] ?? '').slice(0, 200)));
    super(text);
    this.code = code;
    this.error = opts.error || entry[0];
    this.status = opts.status || entry[1];
    this.suberror = opts.suberror || (BAD_TOKEN_CODES.includes(code) ? 'bad_token' : undefined);
    this.claims = opts.claims;
    this.headers = opts.headers || {};
  }
}

// Body in the exact shape of the identity platform's errors. The trace and
// correlation ids are fresh UUIDs (correlation = client-request-id if the
// client sent a UUID one, as Microsoft does).
function aadErrorBody(err, ctx) {
  const now = new Date();
  const ts = aadTimestamp(now);
  const body = {
    error: err.error,
    error_description: `AADSTS${err.code}: ${err.message}\r\nTrace ID: ${ctx.traceId}\r\nCorrelation ID: ${ctx.correlationId}\r\nTimestamp: ${ts}`,
    error_codes: [err.code],
    timestamp: ts,
    trace_id: ctx.traceId,
    correlation_id: ctx.correlationId,
    error_uri: `${LOGIN_HOST}/error?code=${err.code}`,
  };
  if (err.suberror) body.suberror = err.suberror;
  if (err.claims) body.claims = err.claims; // a JSON *string*, as Microsoft sends it
  return body;
}

function aadHeaders(ctx) {
  return {
    'Cache-Control': 'no-store, no-cache',
    Pragma: 'no-cache',
    'x-ms-request-id': ctx.traceId,
    'client-request-id': ctx.correlationId,
  };
}

function sendAadError(res, err, ctx) {
  noteOn(res, `${err.error} AADSTS${err.code}`);
  sendJson(res, err.status, aadErrorBody(err, ctx), { ...aadHeaders(ctx), ...err.headers });
}

// Scope helpers. "Mail.Send" means "https://graph.microsoft.com/Mail.Send";
// comparison is case-insensitive, as in Entra.
function normaliseScope(s) {
  if (OIDC_SCOPES.includes(lc(s))) return lc(s);
  if (!s.includes('/')) return `${GRAPH_RESOURCE}/${s}`;
  return s;
}

function scopeResource(s) {
  return s.slice(0, s.lastIndexOf('/'));
}

// Parse a form body. Returns a Map name -> value. Throws AadError on a
// repeated parameter (ambiguous; a client bug worth catching).
function parseForm(buf) {
  const params = new Map();
  for (const [k, v] of new URLSearchParams(buf.toString('utf8'))) {
    if (params.has(k)) throw new AadError(90100, { param: k });
    params.set(k, v);
  }
  return params;
}

function requireParam(params, name) {
  const v = params.get(name);
  if (v === undefined) throw new AadError(900144, { param: name });
  if (v.trim() === '') throw new AadError(90100, { param: name });
  return v;
}

// Client authentication: lib/apps.js. Clients created by POST /admin/refresh-tokens are
// public and must not present a secret or an assertion (700025); apps registered with
// POST /admin/apps may have secrets and certificates (JWT client assertions, verified
// for real in lib/assertion.js) and may or may not allow public client flows.
function authenticateClient(ctx, grantType) {
  apps.authenticateClient(ctx.app, ctx, grantType);
}

// Validate the requested scope against the scopes granted to a token family.
// Returns { resource, scopes, oidc } where scopes are the granted resource
// scopes for the first requested resource (Entra issues a token for one
// resource: the first scope's), in their registered spelling.
function resolveScopes(scopeParam, grantedScopes) {
  const requested = scopeParam.split(/\s+/).filter(Boolean).map(normaliseScope);
  const oidc = requested.filter((s) => OIDC_SCOPES.includes(s));
  const resourceScopes = requested.filter((s) => !OIDC_SCOPES.includes(s));
  if (!resourceScopes.length) {
    throw new AadError(70011, { detail: 'The scope must include at least one resource permission.' });
  }
  const grantedByLc = new Map(grantedScopes.map((g) => [lc(g), g]));
  const resources = [];
  const out = new Map(); // resource(lc) -> granted scopes
  for (const s of resourceScopes) {
    const res = lc(scopeResource(s));
    if (!resources.includes(res)) resources.push(res);
    if (lc(s).endsWith('/.default')) {
      // ".default" = everything granted for that resource; cannot be mixed.
      if (resourceScopes.length > 1) {
        throw new AadError(70011, { detail: ".default scope can't be combined with resource-specific scopes." });
      }
      const all = grantedScopes.filter((g) => lc(scopeResource(g)) === res);
      if (!all.length) throw new AadError(70011, { detail: `The scope ${s} is not valid.` });
      out.set(res, all);
      continue;
    }
    const g = grantedByLc.get(lc(s));
    if (!g) throw new AadError(70011, { detail: `The scope ${s} is not valid. It was not granted to this refresh token.` });
    if (!out.has(res)) out.set(res, []);
    if (!out.get(res).includes(g)) out.get(res).push(g);
  }
  const first = resources[0];
  return { resource: scopeResource(out.get(first)[0]), scopes: out.get(first), oidc };
}

// The "scope" of a token response as Entra writes it: Graph's permissions by their short
// names ("Mail.Send"), other resources' in full, offline_access never (it is no permission of
// the token), and with openid also profile and email.
function responseScope(scopes, oidc) {
  const out = scopes.map((g) => (lc(scopeResource(g)) === GRAPH_RESOURCE ? g.slice(GRAPH_RESOURCE.length + 1) : g));
  if (oidc.includes('openid')) out.push('openid', 'profile', 'email');
  else for (const s of ['profile', 'email']) if (oidc.includes(s)) out.push(s);
  return out.join(' ');
}

// An id_token (only when "openid" was requested). Claims are realistic; the
// signature is random bytes, like the access token's.
function makeIdToken(fam, clientId) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', kid: 'credbroker-emulator' }));
  const claims = {
    aud: clientId,
    iss: `${LOGIN_HOST}/${fam.tenant}/v2.0`,
    iat: now, nbf: now, exp: now + 3600,
    oid: uuidFrom(`oid:${lc(fam.user)}`),
    preferred_username: fam.user,
    sub: b64url(crypto.createHash('sha256').update(`sub:${lc(fam.user)}:${lc(clientId)}`).digest()),
    tid: fam.tenant,
    ver: '2.0',
  };
  return `${header}.${b64url(JSON.stringify(claims))}.${randomB64url(256)}`;
}

// --- grant handlers --------------------------------------------------------
// Each takes ctx = { params, tenant, client, config, store, traceId,
// correlationId } and returns the success body, or throws AadError.

function grantRefreshToken(ctx) {
  const { params, store, config } = ctx;
  const token = requireParam(params, 'refresh_token');
  const scopeParam = requireParam(params, 'scope');

  const found = store.findRefreshToken(token);
  const now = Date.now();
  // Unknown, expired, revoked and other-client tokens all look the same to
  // the client: invalid_grant, 700082 (or the code a test revoked it with).
  const badToken = (code = 700082, rt = null) => new AadError(code, {
    issued: aadTimestamp(new Date(rt ? rt.issued_at : now)),
  });
  if (!found) throw badToken();
  const { rt, family: fam } = found;
  if (lc(fam.client_id) !== lc(ctx.client.client_id)) throw badToken(700082, rt);

  if (rt.revoked_at) {
    // Strict (OAuth 2.1 / RFC 9700) replay detection: a rotated-out token
    // coming back means it leaked, so the whole family dies, access tokens too.
    if (config.rotation === 'strict' && rt.revoked_reason === 'rotated') {
      store.revokeRefreshTokens((r) => r.family === rt.family, 'replay');
      store.revokeAccessTokens((a) => a.family === rt.family);
      store.save();
      noteOn(ctx.res, 'replay-revoked-family');
    }
    throw badToken(rt.error_code || 700082, rt);
  }
  if (rt.expires_at <= now) throw badToken(700082, rt);

  // Tenant: the one the token was registered with. /organizations and /common
  // resolve to the user's home tenant at Microsoft, so they are accepted too;
  // /consumers is for personal accounts only.
  const t = lc(ctx.tenant);
  if (t !== fam.tenant && t !== 'common' && t !== 'organizations') throw new AadError(70000);

  const granted = resolveScopes(scopeParam, fam.scopes);
  const wantsRefresh = granted.oidc.includes('offline_access');
  const lifetime = accessTokenLifetime(config);

  const accessToken = store.issueAccessToken({
    family: rt.family, tenant: fam.tenant, clientId: fam.client_id, user: fam.user,
    resource: granted.resource, scopes: granted.scopes, appOnly: false, lifetime,
  });
  rt.used_at = now;
  let newRefresh;
  if (wantsRefresh) {
    newRefresh = store.issueRefreshToken(rt.family);
    if (config.rotation === 'strict') {
      rt.revoked_at = now;
      rt.revoked_reason = 'rotated';
    }
    // Lenient (Microsoft): the old refresh token stays valid until it expires.
  }
  store.save();

  const body = {
    token_type: 'Bearer',
    scope: responseScope(granted.scopes, granted.oidc),
    expires_in: lifetime,
    ext_expires_in: lifetime,
    access_token: accessToken,
  };
  if (newRefresh) body.refresh_token = newRefresh;
  if (granted.oidc.includes('openid')) body.id_token = makeIdToken(fam, fam.client_id);
  return body;
}

// A new delegated session (password, device code): a new token family holding the
// permissions the grant may give ("grantable"), an access token for the first requested
// resource, a refresh token with offline_access and an id_token with openid.
function issueDelegated(ctx, { tenant, clientId, user, grantable, scopeParam, source }) {
  const { store, config } = ctx;
  const granted = resolveScopes(scopeParam, grantable);
  const lifetime = accessTokenLifetime(config);
  const family = store.createFamily({ tenant, clientId, user, scopes: grantable, lifetime: DEFAULT_REFRESH_LIFETIME, source });
  const accessToken = store.issueAccessToken({
    family, tenant, clientId, user, resource: granted.resource, scopes: granted.scopes, appOnly: false, lifetime,
  });
  const refreshToken = granted.oidc.includes('offline_access') ? store.issueRefreshToken(family) : undefined;
  store.save();
  const body = {
    token_type: 'Bearer',
    scope: responseScope(granted.scopes, granted.oidc),
    expires_in: lifetime,
    ext_expires_in: lifetime,
    access_token: accessToken,
  };
  if (refreshToken) body.refresh_token = refreshToken;
  if (granted.oidc.includes('openid')) body.id_token = makeIdToken(store.data.families[family], clientId);
  return body;
}

// The tenant a new session belongs to: the one in the URL, or for /organizations and
// /common the user's (if known) or else the app's home tenant.
function homeTenant(client, requestTenant, userTenant) {
  const t = lc(requestTenant);
  if (!TENANT_ALIASES.includes(t)) return t;
  return userTenant || client.tenants[0] || t;
}

// A scope of another cloud's Graph: that resource does not exist in this cloud's directory,
// which Entra answers with AADSTS500011 (invalid_resource) naming it.
function checkCloudScopes(params, tenant) {
  const scope = params.get('scope');
  if (typeof scope !== 'string') return;
  for (const s of scope.split(/\s+/).filter(Boolean)) {
    const resource = s.includes('/') ? lc(scopeResource(s)) : null;
    if (resource && resource !== lc(GRAPH_RESOURCE) && CLOUD_GRAPH_RESOURCES.includes(resource)) {
      throw new AadError(500011, { resource: scopeResource(s), tenant: safePath(tenant) });
    }
  }
}

// Tenant check shared by the token and devicecode endpoints: a GUID or domain some
// client is registered in, or an alias; anything else is 90002.
function checkTenant(store, tenant) {
  const t = lc(tenant);
  if (!/^[a-z0-9._-]{1,256}$/.test(t) || (!TENANT_ALIASES.includes(t) && !store.knownTenant(t))) {
    throw new AadError(90002, { tenant: safePath(tenant) });
  }
}

// The URL the client addressed, as a JWT client assertion's "aud" must name it:
// https://{Host header}{path}. A missing or odd Host header gives a URL no client sends.
function requestUrl(req) {
  const host = typeof req.headers.host === 'string' && /^[A-Za-z0-9.:[\]-]{1,300}$/.test(req.headers.host) ? req.headers.host : 'invalid-host';
  return `https://${host}${req.url.split('?')[0]}`;
}

// POST /{tenant}/oauth2/v2.0/devicecode (lib/device.js does the flow itself). Same
// shape of checks and errors as the token endpoint; faults with endpoint "devicecode".
async function handleDeviceCode(app, req, res, rawTenant) {
  const { counters, store, faults } = app;
  counters.devicecode += 1;
  let tenant = rawTenant;
  try {
    tenant = decodeURIComponent(rawTenant);
  } catch (_) { /* rejected as an unknown tenant below */ }
  const clientRequestId = req.headers['client-request-id'];
  const ctx = {
    req, res, tenant, store, app, config: app.config,
    traceId: crypto.randomUUID(),
    correlationId: typeof clientRequestId === 'string' && UUID_RE.test(clientRequestId) ? clientRequestId : crypto.randomUUID(),
  };
  const logEntry = logTokenRequest(app, 'devicecode', res);
  res.on('finish', () => {
    if (res.locals.transportFault) return;
    if (res.statusCode < 400) counters.devicecode_success += 1;
    else counters.devicecode_errors += 1;
  });
  const got = await readBody(req, TOKEN_BODY_LIMIT);
  if (got.aborted) return;
  let params = new Map();
  let formError = null;
  if (got.ok && mediaType(req) === 'application/x-www-form-urlencoded') {
    try {
      params = parseForm(got.body);
    } catch (err) {
      formError = err;
    }
  }
  if (params.has('client_id')) logEntry.client_id = params.get('client_id').slice(0, 256);
  const fault = faults.take('devicecode');
  if (fault) {
    counters.faults_injected.devicecode += 1;
    return applyFault(app, 'devicecode', fault, req, res, ctx);
  }
  try {
    if (got.tooLarge) throw new AadError(9002313, {}, { status: 413, headers: got.drop ? { Connection: 'close' } : {} });
    if (req.method !== 'POST') throw new AadError(900561, { method: req.method }, { status: 405, headers: { Allow: 'POST' } });
    checkTenant(store, tenant);
    if (formError) throw formError;
    ctx.params = params;
    checkCloudScopes(params, tenant);
    const body = device.deviceCodeRequest(ctx);
    sendJson(res, 200, body, aadHeaders(ctx));
  } catch (err) {
    if (!(err instanceof AadError)) throw err;
    sendAadError(res, err, ctx);
    if (got.drop) res.on('finish', () => killSocket(req.socket, false));
  }
}

// The in-flight gauge of the token endpoint: up on arrival, down when the exchange is over:
// when the answer is handed to the socket (res.end()), or the connection closed without one,
// whichever counters object is current then. Not at the response's 'close' event: that comes
// a turn of the event loop later, by which time a client that read the answer may already have
// sent its next request, and the gauge would count one exchange twice.
function tokenInFlight(app, res) {
  let over = false;
  const done = () => {
    if (over) return;
    over = true;
    app.tokenInFlight -= 1;
    app.counters.token_in_flight = app.tokenInFlight;
  };
  app.tokenInFlight = (app.tokenInFlight || 0) + 1;
  app.counters.token_in_flight = app.tokenInFlight;
  if (app.tokenInFlight > app.counters.token_in_flight_max) app.counters.token_in_flight_max = app.tokenInFlight;
  const end = res.end;
  res.end = function endAndCount(...args) {
    done();
    return end.apply(this, args);
  };
  res.once('close', done);
}

async function handleToken(app, req, res, rawTenant) {
  const { counters, store, faults } = app;
  counters.token += 1;
  tokenInFlight(app, res);
  let tenant = rawTenant;
  try {
    tenant = decodeURIComponent(rawTenant);
  } catch (_) { /* malformed %-escape: rejected as an unknown tenant below */ }
  const clientRequestId = req.headers['client-request-id'];
  const ctx = {
    req, res, tenant, store, app, config: app.config,
    traceId: crypto.randomUUID(),
    correlationId: typeof clientRequestId === 'string' && UUID_RE.test(clientRequestId) ? clientRequestId : crypto.randomUUID(),
    tokenUrl: requestUrl(req),
  };
  const logEntry = logTokenRequest(app, 'token', res);
  // Success/error tallies cover real answers and injected status faults;
  // other faults (hang, reset, truncate, huge) count in faults_injected only.
  res.on('finish', () => {
    if (res.locals.transportFault) return;
    if (res.statusCode < 400) counters.token_success += 1;
    else counters.token_errors += 1;
  });

  const got = await readBody(req, TOKEN_BODY_LIMIT);
  if (got.aborted) return;

  // Count the grant before anything can fail, so faulted and rejected
  // requests are still attributed. Only a well-formed form body has one.
  let params = new Map();
  let formError = null;
  if (got.ok && mediaType(req) === 'application/x-www-form-urlencoded') {
    try {
      params = parseForm(got.body);
    } catch (err) {
      formError = err;
    }
  }
  const gt = params.get('grant_type');
  const grantKey = gt === undefined ? 'none' : (KNOWN_GRANT_TYPES.includes(gt) ? gt : 'other');
  counters.token_by_grant[grantKey] = (counters.token_by_grant[grantKey] || 0) + 1;
  logEntry.grant = grantKey;
  if (params.has('client_id')) logEntry.client_id = params.get('client_id').slice(0, 256);
  if (gt !== undefined) noteOn(res, `grant=${grantKey}`);

  const fault = faults.take('token');
  let omitRefreshToken = false;
  if (fault) {
    counters.faults_injected.token += 1;
    if (fault.mode === 'latency') {
      noteOn(res, `fault=latency ${fault.delay_ms}ms`);
      await new Promise((resolve) => setTimeout(resolve, fault.delay_ms));
      if (req.socket.destroyed) return;
    } else if (fault.mode === 'no_refresh_token') {
      noteOn(res, 'fault=no_refresh_token');
      omitRefreshToken = true;
    } else {
      return applyFault(app, 'token', fault, req, res, ctx);
    }
  }

  try {
    if (got.tooLarge) {
      throw new AadError(9002313, {}, { status: 413, headers: got.drop ? { Connection: 'close' } : {} });
    }
    if (req.method !== 'POST') {
      throw new AadError(900561, { method: req.method }, { status: 405, headers: { Allow: 'POST' } });
    }
    // Tenant first, as Entra resolves the authority before reading the body:
    // a GUID or domain, or an alias. Anything else (including malformed path
    // segments) is "not found", 90002.
    const t = lc(tenant);
    if (!/^[a-z0-9._-]{1,256}$/.test(t) || (!TENANT_ALIASES.includes(t) && !store.knownTenant(t))) {
      throw new AadError(90002, { tenant: safePath(tenant) });
    }
    if (formError) throw formError;
    // A body that is not form-encoded has no parameters; Entra then complains
    // about the first missing one, grant_type.
    const grantType = requireParam(params, 'grant_type');
    const clientId = requireParam(params, 'client_id');

    const client = store.client(clientId);
    if (!client) throw new AadError(700016, { client_id: clientId, tenant });
    ctx.client = client;
    ctx.params = params;

    const handler = GRANT_HANDLERS[grantType];
    if (!handler) throw new AadError(70003, { grant_type: grantType });
    if (GRANT_PRECHECKS[grantType]) GRANT_PRECHECKS[grantType](ctx);
    authenticateClient(ctx, grantType);
    checkCloudScopes(params, tenant);
    // Loop detection counts requests per user or token family, not per refresh token: a
    // client that rotates its refresh token but asks again and again still loops.
    let subject = params.get('username') || '';
    if (grantType === 'refresh_token' && params.get('refresh_token')) {
      const f = store.findRefreshToken(params.get('refresh_token'));
      subject = f ? f.rt.family : 'unknown';
    }
    checkLoop(ctx, subject);

    const body = handler(ctx);
    if (omitRefreshToken) delete body.refresh_token;
    sendJson(res, 200, body, aadHeaders(ctx));
  } catch (err) {
    if (!(err instanceof AadError)) throw err;
    sendAadError(res, err, ctx);
    if (got.drop) res.on('finish', () => killSocket(req.socket, false));
  }
}

// ---------------------------------------------------------------------------
// 6. Microsoft Graph: sendMail
// ---------------------------------------------------------------------------

class GraphError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

function sendGraphError(res, err, ctx) {
  noteOn(res, err.code);
  sendJson(res, err.status, {
    error: {
      code: err.code,
      message: err.message,
      innerError: {
        'request-id': ctx.requestId,
        date: graphDate(),
        'client-request-id': ctx.clientRequestId,
      },
    },
  }, { 'request-id': ctx.requestId, 'client-request-id': ctx.clientRequestId, ...err.headers });
}

const unauthorized = (message) => new GraphError(401, 'InvalidAuthenticationToken', message, {
  'WWW-Authenticate': `Bearer realm="", authorization_uri="${LOGIN_HOST}/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`,
});
const badBody = (message) => new GraphError(400, 'RequestBodyRead', message);
const badRequest = (message) => new GraphError(400, 'BadRequest', message);

// Authenticate the bearer token. Returns the access token record.
function authenticateGraph(req, store) {
  const h = req.headers.authorization;
  if (typeof h !== 'string' || h.trim() === '') throw unauthorized('Access token is empty.');
  const m = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i.exec(h);
  if (!m) throw unauthorized('Access token validation failure. Invalid authorization header.');
  const at = store.findAccessToken(m[1]);
  if (!at) throw unauthorized('IDX14100: JWT is not well formed or was not issued by a trusted issuer.');
  if (at.revoked_at) throw unauthorized('Access token has been revoked.');
  if (at.expires_at <= Date.now()) throw unauthorized('Lifetime validation failed, the token is expired.');
  if (lc(at.resource) !== lc(GRAPH_RESOURCE)) throw unauthorized('Access token validation failure. Invalid audience.');
  return at;
}

// Message properties accepted without complaint (writable properties of
// microsoft.graph.message). Anything else is a 400 like Graph's OData reader
// gives, which catches misspellings such as "toRecipient".
const MESSAGE_PROPERTIES = new Set([
  'subject', 'body', 'toRecipients', 'ccRecipients', 'bccRecipients', 'replyTo', 'from', 'sender',
  'attachments', 'internetMessageHeaders', 'importance', 'isDeliveryReceiptRequested',
  'isReadReceiptRequested', 'isRead', 'isDraft', 'categories', 'flag', 'inferenceClassification',
  'internetMessageId', 'conversationId', 'parentFolderId', 'bodyPreview', 'uniqueBody', 'id',
  'extensions', 'singleValueExtendedProperties', 'multiValueExtendedProperties',
]);

// Plausible SMTP address: dot-atom local part, at least two DNS labels.
const ADDRESS_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$/;

const STD_BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function checkUnknownProps(obj, allowed, typeName) {
  for (const k of Object.keys(obj)) {
    if (!allowed.has(k) && !k.startsWith('@odata.')) {
      throw badBody(`The property '${k}' does not exist on type '${typeName}'. Make sure to only use property names that are defined by the type or mark the type as open type.`);
    }
  }
}

function validateRecipient(r, where) {
  if (!isPlainObject(r)) throw badBody(`Cannot read ${where}: expected a microsoft.graph.recipient object.`);
  checkUnknownProps(r, new Set(['emailAddress']), 'microsoft.graph.recipient');
  const ea = r.emailAddress;
  if (!isPlainObject(ea)) {
    throw new GraphError(400, 'ErrorInvalidRecipients', `At least one recipient is not valid., ${where} has no emailAddress.`);
  }
  checkUnknownProps(ea, new Set(['address', 'name']), 'microsoft.graph.emailAddress');
  if (ea.name !== undefined && ea.name !== null && typeof ea.name !== 'string') throw badBody(`Cannot read ${where}.emailAddress.name: expected a string.`);
  if (ea.address !== undefined && ea.address !== null && typeof ea.address !== 'string') throw badBody(`Cannot read ${where}.emailAddress.address: expected a string.`);
  if (typeof ea.address !== 'string' || ea.address.length > 320 || !ADDRESS_RE.test(ea.address)) {
    const shown = typeof ea.address === 'string' ? ea.address.replace(/[^\x20-\x7e]/g, '?').slice(0, 100) : '';
    throw new GraphError(400, 'ErrorInvalidRecipients',
      `At least one recipient is not valid., Recipient '${shown}' is not resolved. All recipients must be resolved before a message can be submitted.`);
  }
}

function validateRecipientList(list, name, required) {
  if (list === undefined || list === null) {
    if (required) throw new GraphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid., A message must have at least one recipient.');
    return;
  }
  if (!Array.isArray(list)) throw badBody(`Cannot read message.${name}: expected a collection of microsoft.graph.recipient.`);
  if (required && list.length === 0) {
    throw new GraphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid., A message must have at least one recipient.');
  }
  list.forEach((r, i) => validateRecipient(r, `message.${name}[${i}]`));
}

// Validate the JSON sendMail body. Throws GraphError.
function validateSendMail(doc) {
  if (!isPlainObject(doc)) throw badBody('Invalid request body: expected a JSON object.');
  for (const k of Object.keys(doc)) {
    if (k !== 'message' && k !== 'saveToSentItems' && !k.startsWith('@odata.')) {
      throw badBody(`The parameter '${k}' in the request payload is not a valid parameter for the operation 'sendMail'.`);
    }
  }
  if (doc.message === undefined || doc.message === null) throw badRequest("The 'message' parameter is required.");
  if (doc.saveToSentItems !== undefined && typeof doc.saveToSentItems !== 'boolean') {
    throw badBody("Cannot convert the value of 'saveToSentItems' to the expected type 'Edm.Boolean'.");
  }
  const m = doc.message;
  if (!isPlainObject(m)) throw badBody("Cannot read 'message': expected a microsoft.graph.message object.");
  checkUnknownProps(m, MESSAGE_PROPERTIES, 'microsoft.graph.message');

  if (typeof m.subject !== 'string') throw badRequest('message.subject is required and must be a string.');

  if (!isPlainObject(m.body)) throw badRequest('message.body is required and must be a microsoft.graph.itemBody object.');
  checkUnknownProps(m.body, new Set(['contentType', 'content']), 'microsoft.graph.itemBody');
  if (typeof m.body.contentType !== 'string' || !['text', 'html'].includes(lc(m.body.contentType))) {
    throw badBody(`Cannot convert the literal '${String(m.body.contentType).slice(0, 40)}' to the expected type 'microsoft.graph.bodyType'.`);
  }
  if (typeof m.body.content !== 'string') throw badRequest('message.body.content is required and must be a string.');

  validateRecipientList(m.toRecipients, 'toRecipients', true);
  validateRecipientList(m.ccRecipients, 'ccRecipients', false);
  validateRecipientList(m.bccRecipients, 'bccRecipients', false);
  validateRecipientList(m.replyTo, 'replyTo', false);
  for (const k of ['from', 'sender']) {
    if (m[k] !== undefined && m[k] !== null) validateRecipient(m[k], `message.${k}`);
  }

  if (m.importance !== undefined && (typeof m.importance !== 'string' || !['low', 'normal', 'high'].includes(lc(m.importance)))) {
    throw badBody("Cannot convert the value of 'importance' to the expected type 'microsoft.graph.importance'.");
  }

  if (m.internetMessageHeaders !== undefined && m.internetMessageHeaders !== null) {
    if (!Array.isArray(m.internetMessageHeaders)) throw badBody('Cannot read message.internetMessageHeaders: expected a collection.');
    for (const h of m.internetMessageHeaders) {
      if (!isPlainObject(h) || typeof h.name !== 'string' || typeof h.value !== 'string') {
        throw badBody('Cannot read message.internetMessageHeaders: each entry needs string name and value.');
      }
      checkUnknownProps(h, new Set(['name', 'value']), 'microsoft.graph.internetMessageHeader');
      if (!/^x-[\x21-\x39\x3b-\x7e]+$/i.test(h.name) || /[\r\n]/.test(h.value)) {
        throw new GraphError(400, 'InvalidInternetMessageHeader',
          `The internet message header name '${h.name.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)}' should start with 'x-' or 'X-'.`);
      }
    }
  }

  if (m.attachments !== undefined && m.attachments !== null) {
    if (!Array.isArray(m.attachments)) throw badBody('Cannot read message.attachments: expected a collection.');
    m.attachments.forEach((a, i) => {
      const where = `message.attachments[${i}]`;
      if (!isPlainObject(a)) throw badBody(`Cannot read ${where}: expected an attachment object.`);
      // Only file attachments are emulated; item and reference attachments
      // exist in Graph but credbroker does not use them.
      if (typeof a['@odata.type'] !== 'string' || lc(a['@odata.type']) !== '#microsoft.graph.fileattachment') {
        throw badRequest(`${where}: @odata.type must be '#microsoft.graph.fileAttachment' (the emulator supports file attachments only).`);
      }
      checkUnknownProps(a, new Set(['name', 'contentType', 'contentBytes', 'contentId', 'isInline', 'size', 'id', 'lastModifiedDateTime', 'contentLocation']), 'microsoft.graph.fileAttachment');
      if (typeof a.name !== 'string' || a.name === '') throw badRequest(`${where}.name is required.`);
      if (typeof a.contentBytes !== 'string' || !STD_BASE64_RE.test(a.contentBytes)) {
        throw badBody(`Cannot convert ${where}.contentBytes to the expected type 'Edm.Binary' (standard base64 required).`);
      }
      if (a.contentType !== undefined && a.contentType !== null && typeof a.contentType !== 'string') throw badBody(`Cannot read ${where}.contentType: expected a string.`);
      if (a.isInline !== undefined && typeof a.isInline !== 'boolean') throw badBody(`Cannot read ${where}.isInline: expected a boolean.`);
    });
  }
}

// Store an accepted message. Written (atomically) before the 202 goes out.
function storeMail(app, record) {
  const n = app.mailCounter++;
  const name = `${String(n).padStart(6, '0')}-${crypto.randomBytes(4).toString('hex')}.json`;
  writeFileAtomic(path.join(app.opts.mailDir, name), JSON.stringify(record, null, 1) + '\n', 0o644);
  return name;
}

// ---------------------------------------------------------------------------
// Fault application (shared by token and graph endpoints)
// ---------------------------------------------------------------------------

// Fake success bodies used by "truncate" and "huge".
function fakeSuccessBody(endpoint, padding = '') {
  if (endpoint === 'devicecode') {
    return JSON.stringify({
      user_code: 'ABCDEFGHJ', device_code: `DAQABIQEAAAB${padding || randomB64url(120)}`, verification_uri: 'https://microsoft.com/devicelogin',
      expires_in: 900, interval: 5, message: 'To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCDEFGHJ to authenticate.',
    });
  }
  if (endpoint === 'token' || endpoint === 'oauth') {
    return JSON.stringify({
      token_type: 'Bearer', scope: MAIL_SEND_SCOPE, expires_in: 3599, ext_expires_in: 3599,
      access_token: `eyJ0eXAiOiJKV1QifQ.${padding || randomB64url(240)}.${randomB64url(64)}`,
    });
  }
  return JSON.stringify({ '@odata.context': `${GRAPH_RESOURCE}/v1.0/$metadata#Edm.String`, value: padding || 'ok' });
}

function applyFault(app, endpoint, f, req, res, ctx) {
  noteOn(res, `fault=${f.mode}`);
  res.locals.transportFault = f.mode !== 'status';
  const retry = f.retry_after !== undefined ? { 'Retry-After': String(f.retry_after) } : {};
  switch (f.mode) {
    case 'status': {
      if (endpoint === 'oauth') {
        const transient = f.status >= 500 || f.status === 429;
        return sendJson(res, f.status, {
          error: f.error || (transient ? 'temporarily_unavailable' : 'invalid_request'),
          error_description: f.message || 'Injected fault.',
        }, { 'Cache-Control': 'no-store', Pragma: 'no-cache', ...retry });
      }
      if (endpoint === 'token' || endpoint === 'devicecode') {
        // Without an explicit error_code: 90033 temporarily_unavailable for
        // 5xx/429, 9002313 invalid_request otherwise.
        const transient = f.status >= 500 || f.status === 429;
        const code = f.error_code || (transient ? 90033 : 9002313);
        const vars = { tenant: '', client_id: '', resource: GRAPH_RESOURCE, param: '', grant_type: '', method: req.method, detail: '', issued: aadTimestamp() };
        const err = new AadError(code, vars, {
          status: f.status, error: f.error, suberror: f.suberror, claims: f.claims, headers: retry,
        });
        return sendAadError(res, err, ctx);
      }
      const defaultCode = {
        401: 'InvalidAuthenticationToken', 403: 'ErrorAccessDenied', 429: 'ApplicationThrottled',
        500: 'InternalServerError', 503: 'ServiceNotAvailable', 504: 'GatewayTimeout',
      }[f.status] || (f.status >= 500 ? 'ServiceNotAvailable' : 'BadRequest');
      const defaultMsg = f.status === 429 ? 'Application is over its MailboxConcurrency limit.' : 'Injected fault.';
      return sendGraphError(res, new GraphError(f.status, f.code || defaultCode, f.message || defaultMsg, retry), ctx);
    }
    case 'hang':
      // Hold the request open until the client gives up (or we shut down).
      app.faults.hung.add(res);
      res.on('close', () => app.faults.hung.delete(res));
      return undefined;
    case 'reset':
      return killSocket(req.socket, true);
    case 'html': {
      // What a proxy or load balancer in front of the endpoint answers: not JSON at all.
      const body = Buffer.from('<html><head><title>Bad Gateway</title></head><body>upstream error</body></html>\n');
      res.writeHead(f.status, { 'Content-Type': 'text/html', 'Content-Length': body.length, ...retry });
      res.end(body);
      return undefined;
    }
    case 'truncate': {
      const body = Buffer.from(fakeSuccessBody(endpoint));
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length, ...retry });
      // Half the body, then close: the client sees a short read.
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => killSocket(req.socket, false));
      return undefined;
    }
    case 'huge': {
      const skeleton = fakeSuccessBody(endpoint, 'X');
      const body = Buffer.from(fakeSuccessBody(endpoint, 'A'.repeat(Math.max(1, f.size - skeleton.length + 1))));
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length, ...retry });
      res.end(body);
      return undefined;
    }
    default:
      return sendJson(res, 500, { error: 'unknown fault' });
  }
}

// ---------------------------------------------------------------------------
// 7. Admin API (plain HTTP, JSON in and out)
// ---------------------------------------------------------------------------

class AdminError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function adminString(b, k, { required = true, max = 1024 } = {}) {
  const v = b[k];
  if (v === undefined || v === null) {
    if (required) throw new AdminError(400, `"${k}" is required`);
    return undefined;
  }
  if (typeof v !== 'string' || v === '' || v.length > max || /[\x00-\x1f\x7f]/.test(v)) {
    throw new AdminError(400, `"${k}" must be a non-empty printable string`);
  }
  return v;
}

function checkKeys(b, allowed) {
  for (const k of Object.keys(b)) if (!allowed.includes(k)) throw new AdminError(400, `unknown field "${k}"`);
}

function adminRegisterRefreshToken(app, b) {
  checkKeys(b, ['tenant', 'client_id', 'refresh_token', 'scopes', 'user', 'expires_in']);
  const tenant = adminString(b, 'tenant', { max: 256 });
  if (!/^[A-Za-z0-9._-]+$/.test(tenant) || TENANT_ALIASES.includes(lc(tenant))) {
    throw new AdminError(400, '"tenant" must be a tenant id or domain, not common/organizations/consumers');
  }
  const clientId = adminString(b, 'client_id', { max: 256 });
  const user = adminString(b, 'user', { max: 320 });
  let token = adminString(b, 'refresh_token', { required: false, max: 16384 });
  const generated = token === undefined;
  if (generated) token = `0.A${randomB64url(96)}`;
  if (!Array.isArray(b.scopes) || !b.scopes.length || !b.scopes.every((s) => typeof s === 'string' && /^[\x21-\x7e]+$/.test(s))) {
    throw new AdminError(400, '"scopes" must be a non-empty array of scope strings');
  }
  const scopes = [];
  for (const s of b.scopes.map(normaliseScope)) {
    if (OIDC_SCOPES.includes(s)) continue; // always allowed; not stored as grants
    if (s.endsWith('/.default') || scopeResource(s) === '') throw new AdminError(400, `"${s}" is not a grantable permission`);
    if (!scopes.some((x) => lc(x) === lc(s))) scopes.push(s);
  }
  if (!scopes.length) throw new AdminError(400, '"scopes" must contain at least one resource permission');
  let lifetime = DEFAULT_REFRESH_LIFETIME;
  if (b.expires_in !== undefined) {
    if (!Number.isInteger(b.expires_in) || b.expires_in < 1) throw new AdminError(400, '"expires_in" must be a positive integer');
    lifetime = b.expires_in;
  }
  const { family, expiresAt } = app.store.registerRefreshToken({ tenant, clientId, user, scopes, lifetime, token });
  const out = { family, scopes, expires_at: new Date(expiresAt).toISOString() };
  if (generated) out.refresh_token = token;
  return [201, out];
}

// Codes a revoked refresh token may answer with (default 700082), so tests
// can simulate MFA, consent or conditional-access changes for a user.
const REVOKE_CODES = [700082, 70008, 50173, 70043, 50076, 50079, 65001, 53003];

function adminRevokeRefreshTokens(app, b) {
  checkKeys(b, ['refresh_token', 'user', 'client_id', 'error_code', 'access_tokens']);
  const token = adminString(b, 'refresh_token', { required: false, max: 16384 });
  const user = adminString(b, 'user', { required: false, max: 320 });
  const clientId = adminString(b, 'client_id', { required: false, max: 256 });
  if ([token, user, clientId].filter((x) => x !== undefined).length !== 1) {
    throw new AdminError(400, 'give exactly one of "refresh_token", "user", "client_id"');
  }
  let code = null;
  if (b.error_code !== undefined) {
    if (!REVOKE_CODES.includes(b.error_code)) throw new AdminError(400, `"error_code" must be one of ${REVOKE_CODES.join(', ')}`);
    code = b.error_code;
  }
  if (b.access_tokens !== undefined && typeof b.access_tokens !== 'boolean') throw new AdminError(400, '"access_tokens" must be a boolean');
  const { store } = app;
  let pred;
  if (token !== undefined) {
    const hash = sha256hex(token);
    const rec = store.data.refresh_tokens[hash];
    if (!rec) throw new AdminError(404, 'no such refresh token');
    pred = (rt) => rt === rec;
  } else if (user !== undefined) {
    pred = (rt, fam) => lc(fam.user) === lc(user);
  } else {
    pred = (rt, fam) => lc(fam.client_id) === lc(clientId);
  }
  const families = new Set();
  const revoked = store.revokeRefreshTokens((rt, fam) => {
    const hit = pred(rt, fam);
    if (hit) families.add(rt.family);
    return hit;
  }, 'admin', code);
  let revokedAccess = 0;
  // Microsoft's "revoke sessions" leaves issued access tokens valid until they
  // expire; "access_tokens": true revokes them as well.
  if (b.access_tokens) {
    revokedAccess = store.revokeAccessTokens((a) => (token !== undefined ? families.has(a.family)
      : user !== undefined ? lc(a.user || '') === lc(user) : lc(a.client_id) === lc(clientId)));
  }
  store.save();
  return [200, { revoked, revoked_access_tokens: revokedAccess }];
}

function adminRevokeAccessTokens(app, b) {
  checkKeys(b, ['user']);
  const user = adminString(b, 'user', { required: false, max: 320 });
  const n = app.store.revokeAccessTokens((a) => user === undefined || lc(a.user || '') === lc(user));
  app.store.save();
  return [200, { revoked: n }];
}

// Integer settings of POST /admin/config: name -> [config key, minimum, maximum].
const CONFIG_INTEGERS = {
  token_lifetime: ['tokenLifetime', 1, 1e9],
  // A test's control, not Entra's behaviour: every access token issued expires at this Unix
  // time (expires_in counts down to it, at least 1); 0: off.
  token_expires_at: ['tokenExpiresAt', 0, 1e10],
  device_interval: ['deviceInterval', 1, 3600],
  device_expires_in: ['deviceExpiresIn', 1, 86400],
  device_poll_tolerance_ms: ['devicePollToleranceMs', 0, 10000],
  lockout_threshold: ['lockoutThreshold', 1, 1000],
  assertion_max_lifetime: ['assertionMaxLifetime', 60, 86400 * 365],
  // Entra's loop detection (AADSTS50196): more than loop_threshold identical token requests
  // within loop_window_s seconds are refused; 0 turns it off. Entra documents no numbers.
  loop_threshold: ['loopThreshold', 0, 1e6],
  loop_window_s: ['loopWindowS', 1, 86400],
};

// Loop detection defaults per cloud: government clouds trip sooner (seen, not documented).
const LOOP_DEFAULTS = { global: 20, usgov: 10, china: 20 };

function adminSetConfig(app, b) {
  checkKeys(b, [...Object.keys(CONFIG_INTEGERS), 'rotation', 'assertion_pss_salt', 'cloud',
    'token_lifetime_random', 'generic_client_auth', 'generic_refresh_needs_offline_access',
    'assertion_refuse_ps256']);
  if (b.cloud !== undefined && !Object.hasOwn(LOOP_DEFAULTS, b.cloud)) {
    throw new AdminError(400, '"cloud" must be global, usgov or china');
  }
  for (const k of ['token_lifetime_random', 'generic_refresh_needs_offline_access', 'assertion_refuse_ps256']) {
    if (b[k] !== undefined && typeof b[k] !== 'boolean') throw new AdminError(400, `"${k}" must be true or false`);
  }
  if (b.generic_client_auth !== undefined && !['any', 'basic', 'post'].includes(b.generic_client_auth)) {
    throw new AdminError(400, '"generic_client_auth" must be any, basic or post');
  }
  if (b.cloud !== undefined) {
    app.config.cloud = b.cloud;
    if (b.loop_threshold === undefined) app.config.loopThreshold = LOOP_DEFAULTS[b.cloud];
  }
  if (b.token_lifetime_random !== undefined) app.config.tokenLifetimeRandom = b.token_lifetime_random;
  if (b.assertion_refuse_ps256 !== undefined) app.config.assertionRefusePs256 = b.assertion_refuse_ps256;
  if (b.generic_client_auth !== undefined) app.config.genericClientAuth = b.generic_client_auth;
  if (b.generic_refresh_needs_offline_access !== undefined) app.config.genericRefreshNeedsOfflineAccess = b.generic_refresh_needs_offline_access;
  for (const [k, [, min, max]] of Object.entries(CONFIG_INTEGERS)) {
    if (b[k] !== undefined && (!Number.isInteger(b[k]) || b[k] < min || b[k] > max)) {
      throw new AdminError(400, `"${k}" must be an integer ${min}..${max}`);
    }
  }
  if (b.rotation !== undefined && b.rotation !== 'lenient' && b.rotation !== 'strict') {
    throw new AdminError(400, '"rotation" must be "lenient" or "strict"');
  }
  if (b.assertion_pss_salt !== undefined && b.assertion_pss_salt !== 'digest' && b.assertion_pss_salt !== 'auto') {
    throw new AdminError(400, '"assertion_pss_salt" must be "digest" or "auto"');
  }
  for (const [k, [key]] of Object.entries(CONFIG_INTEGERS)) if (b[k] !== undefined) app.config[key] = b[k];
  if (b.rotation !== undefined) app.config.rotation = b.rotation;
  if (b.assertion_pss_salt !== undefined) app.config.assertionPssSalt = b.assertion_pss_salt;
  return [200, configView(app)];
}

function configView(app) {
  const c = app.config;
  return {
    token_lifetime: c.tokenLifetime,
    token_expires_at: c.tokenExpiresAt,
    rotation: c.rotation,
    device_interval: c.deviceInterval,
    device_expires_in: c.deviceExpiresIn,
    device_poll_tolerance_ms: c.devicePollToleranceMs,
    lockout_threshold: c.lockoutThreshold,
    assertion_pss_salt: c.assertionPssSalt,
    assertion_max_lifetime: c.assertionMaxLifetime,
    cloud: c.cloud,
    loop_threshold: c.loopThreshold,
    loop_window_s: c.loopWindowS,
    token_lifetime_random: c.tokenLifetimeRandom,
    generic_client_auth: c.genericClientAuth,
    generic_refresh_needs_offline_access: c.genericRefreshNeedsOfflineAccess,
    assertion_refuse_ps256: c.assertionRefusePs256,
  };
}

function newConfig(opts) {
  return {
    tokenLifetime: opts.tokenLifetime,
    tokenExpiresAt: 0,
    rotation: opts.rotation,
    deviceInterval: opts.deviceInterval,
    deviceExpiresIn: opts.deviceExpiresIn,
    // Early arrival forgiven before a poll counts as too fast (network jitter).
    devicePollToleranceMs: 25,
    // Entra ID smart lockout's default threshold.
    lockoutThreshold: 10,
    // RFC 7518 §3.5: PS256 salt = hash length. "auto" accepts any salt length.
    assertionPssSalt: 'digest',
    // Longest exp - nbf accepted in a client assertion (MSAL uses 600 s).
    assertionMaxLifetime: 3600,
    cloud: opts.cloud,
    // Off unless asked for (--loop-threshold, --cloud, /admin/config): tests that force many
    // refreshes on purpose would trip it.
    loopThreshold: opts.loopThreshold,
    loopWindowS: opts.loopWindow,
    // Entra randomises access-token lifetimes between 60 and 90 minutes.
    tokenLifetimeRandom: opts.tokenLifetimeRandom,
    // Generic mode: which client_secret methods are accepted ("any": both).
    genericClientAuth: 'any',
    // Generic mode, plain OAuth: a refresh token even without offline_access (OpenID Connect
    // scopes, with openid, always need it).
    genericRefreshNeedsOfflineAccess: false,
    // A server that verifies RS256 client assertions only: PS256 ones get 700027.
    assertionRefusePs256: false,
  };
}

// An access token's lifetime: the configured one, or Entra's random 60..90 minutes (or what is
// left until token_expires_at, when a test set it).
function accessTokenLifetime(config) {
  if (config.tokenExpiresAt) return Math.max(1, config.tokenExpiresAt - Math.floor(Date.now() / 1000));
  if (!config.tokenLifetimeRandom) return config.tokenLifetime;
  return 3600 + crypto.randomInt(0, 1801) - 1;
}

// Loop detection: identical token requests (client, grant, tenant, scopes, and the user or
// token family they are for) counted in a sliding window.
const loopSeen = new Map();
function checkLoop(ctx, subject) {
  const { config } = ctx;
  if (!config.loopThreshold) return;
  const p = ctx.params;
  const scopes = (p.get('scope') || '').split(/\s+/).filter(Boolean).map(lc).sort().join(' ');
  const key = [lc(ctx.client.client_id), p.get('grant_type'), lc(ctx.tenant), scopes, subject || ''].join('|');
  const now = Date.now();
  const since = now - config.loopWindowS * 1000;
  const times = (loopSeen.get(key) || []).filter((t) => t > since);
  times.push(now);
  loopSeen.set(key, times);
  if (loopSeen.size > 10000) loopSeen.delete(loopSeen.keys().next().value);
  if (times.length > config.loopThreshold) {
    ctx.app.counters.loop_detected = (ctx.app.counters.loop_detected || 0) + 1;
    throw new AadError(50196);
  }
}

const MAIL_NAME_RE = /^(\d{6,})-[0-9a-f]+\.json$/;

function listMailFiles(dir) {
  return fs.readdirSync(dir)
    .filter((n) => MAIL_NAME_RE.test(n))
    .sort((a, b) => Number(MAIL_NAME_RE.exec(a)[1]) - Number(MAIL_NAME_RE.exec(b)[1]) || (a < b ? -1 : 1));
}

function adminListMail(app) {
  const out = [];
  for (const n of listMailFiles(app.opts.mailDir)) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(app.opts.mailDir, n), 'utf8')));
    } catch (_) { /* removed or edited under us: skip */ }
  }
  return [200, out];
}

function adminClearMail(app) {
  let n = 0;
  for (const f of listMailFiles(app.opts.mailDir)) {
    try {
      fs.unlinkSync(path.join(app.opts.mailDir, f));
      n++;
    } catch (_) { /* already gone */ }
  }
  return [200, { deleted: n }];
}

// [method, path, handler(app, body) -> [status, json]]
const ADMIN_ROUTES = [
  ['POST', '/admin/refresh-tokens', adminRegisterRefreshToken],
  ['POST', '/admin/refresh-tokens/revoke', adminRevokeRefreshTokens],
  ['POST', '/admin/access-tokens/revoke', adminRevokeAccessTokens],
  ['GET', '/admin/counters', (app) => [200, app.counters]],
  ['POST', '/admin/counters/reset', (app) => {
    app.counters = newCounters();
    app.counters.token_in_flight = app.tokenInFlight || 0; // a gauge: those still open count
    app.counters.token_in_flight_max = app.counters.token_in_flight;
    return [200, app.counters];
  }],
  ['GET', '/admin/faults', (app) => [200, app.faults.list()]],
  ['POST', '/admin/faults', (app, b) => {
    checkKeys(b, ['endpoint', 'mode', 'status', 'count', 'skip', 'retry_after', 'size', 'delay_ms', 'error_code', 'error', 'suberror', 'claims', 'code', 'message']);
    app.faults.add(parseFault(b));
    return [201, app.faults.list()];
  }],
  ['DELETE', '/admin/faults', (app) => {
    app.faults.clear();
    return [200, []];
  }],
  ['GET', '/admin/config', (app) => [200, configView(app)]],
  ['POST', '/admin/config', adminSetConfig],
  ['GET', '/admin/state', (app) => [200, { ...app.store.summary(), config: configView(app) }]],
  ['GET', '/admin/mail', adminListMail],
  ['DELETE', '/admin/mail', adminClearMail],
  // Added by lib/apps.js and lib/device.js (wired up below): /admin/apps, /admin/users,
  // /admin/device, /admin/device/approve, /admin/device/decline.
];

async function handleAdmin(app, req, res) {
  const pathname = req.url.split('?')[0];
  const routes = ADMIN_ROUTES.filter((r) => r[1] === pathname);
  if (!routes.length) {
    req.resume();
    return sendJson(res, 404, { error: `no such admin endpoint: ${safePath(pathname)}` });
  }
  const route = routes.find((r) => r[0] === req.method);
  if (!route) {
    req.resume();
    return sendJson(res, 405, { error: `method ${req.method} not allowed` }, { Allow: routes.map((r) => r[0]).join(', ') });
  }
  const got = await readBody(req, ADMIN_BODY_LIMIT);
  if (got.aborted) return undefined;
  if (got.tooLarge) return sendJson(res, 413, { error: 'body too large' }, { Connection: 'close' });
  let body = {};
  if (got.body.length) {
    try {
      body = JSON.parse(got.body.toString('utf8'));
    } catch (_) {
      return sendJson(res, 400, { error: 'body is not valid JSON' });
    }
    if (!isPlainObject(body)) return sendJson(res, 400, { error: 'body must be a JSON object' });
  }
  try {
    const [status, out] = route[2](app, body, req);
    if (Buffer.isBuffer(out)) {
      res.writeHead(status, { 'Content-Type': 'application/octet-stream', 'Content-Length': out.length });
      return res.end(out);
    }
    return sendJson(res, status, out);
  } catch (err) {
    if (err instanceof AdminError) return sendJson(res, err.status, { error: err.message });
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Wiring of lib/ modules (after section 7: they use the admin helpers)
// ---------------------------------------------------------------------------

// The new grants, in lib/ (Node standard library only). Each module gets the helpers it
// needs from this file; nothing there touches the network or the file system directly.
const kit = {
  AadError, AdminError, adminString, checkKeys, requireParam, resolveScopes, normaliseScope, scopeResource,
  issueDelegated, homeTenant, lc, sha256hex, isPlainObject, noteOn, sendJson, readBody, mediaType, killSocket,
  applyFault, logTokenRequest,
  OIDC_SCOPES, TENANT_ALIASES, GRAPH_RESOURCE, DEFAULT_REFRESH_LIFETIME, TOKEN_BODY_LIMIT,
};
const apps = require('./lib/apps')(kit);
const device = require('./lib/device')(kit, apps);
const ropc = require('./lib/ropc')(kit, apps);
const clientCredentials = require('./lib/client-credentials')(kit, apps);
const generic = require('./lib/oauth-generic')(kit, apps, device);

// Graph's mail endpoints (sendMail, drafts, upload sessions, send), in graph-mail.js.
const graphMail = require('./graph-mail')({
  GraphError, sendGraphError, authenticateGraph, validateSendMail, storeMail, applyFault, readBody,
  mediaType, sendJson, sendEmpty, lc, isPlainObject, AdminError, checkKeys, noteOn, safePath, killSocket,
  writeFileAtomic, apps, UUID_RE, STD_BASE64_RE, GRAPH_RESOURCE, GRAPH_BODY_LIMIT,
});

ADMIN_ROUTES.push(...apps.adminRoutes, ...device.adminRoutes, ...graphMail.adminRoutes);

// grant_type -> handler. Grants not listed answer unsupported_grant_type.
const GRANT_HANDLERS = {
  refresh_token: grantRefreshToken,
  password: ropc.grantPassword,
  [device.DEVICE_CODE_GRANT]: device.grantDeviceCode,
  client_credentials: clientCredentials.grantClientCredentials,
};

// Checks Entra makes before client authentication (the authority suits the grant).
const GRANT_PRECHECKS = {
  password: ropc.precheck,
  client_credentials: clientCredentials.precheck,
};

// ---------------------------------------------------------------------------
// 8. Servers and lifecycle
// ---------------------------------------------------------------------------

const TOKEN_PATH_RE = /^\/([^/]+)\/oauth2\/v2\.0\/token$/;
const DEVICECODE_PATH_RE = /^\/([^/]+)\/oauth2\/v2\.0\/devicecode$/;

async function handleHttps(app, req, res) {
  const pathname = req.url.split('?')[0];
  const tm = TOKEN_PATH_RE.exec(pathname);
  if (tm) return handleToken(app, req, res, tm[1]);
  const dm = DEVICECODE_PATH_RE.exec(pathname);
  if (dm) return handleDeviceCode(app, req, res, dm[1]);
  if (pathname === '/oauth/token') return generic.handleOAuth(app, req, res, 'token');
  if (pathname === '/oauth/device_authorization') return generic.handleOAuth(app, req, res, 'device_authorization');
  if (pathname === '/.well-known/oauth-authorization-server') return generic.handleMetadata(app, req, res);
  if (pathname.startsWith('/v1.0/')) return graphMail.handleGraph(app, req, res, pathname);
  if (pathname.startsWith('/api/v2.0/')) return graphMail.handleUpload(app, req, res, pathname);
  app.counters.not_found += 1;
  req.resume();
  return sendJson(res, 404, { error: 'not_found', error_description: `No emulated endpoint at ${safePath(pathname)}` });
}

// Run a handler; anything unexpected becomes a 500, never a crash.
function guarded(app, name, handler) {
  return (req, res) => {
    attachRequestLog(name, req, res);
    Promise.resolve()
      .then(() => handler(app, req, res))
      .catch((err) => {
        process.stderr.write(`emulator: internal error on ${req.method} ${safePath(req.url)}: ${err && err.stack ? err.stack : err}\n`);
        if (!res.headersSent) sendJson(res, 500, { error: 'internal_error' });
        else killSocket(req.socket, false);
      });
  };
}

function nextMailCounter(dir) {
  let max = 0;
  for (const n of fs.readdirSync(dir)) {
    const m = MAIL_NAME_RE.exec(n);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max + 1;
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LISTEN_HOST, () => {
      server.removeListener('error', reject);
      resolve(server.address().port);
    });
  });
}

function fatal(msg) {
  process.stderr.write(`emulator: ${msg}\n`);
  process.exit(1);
}

async function main() {
  // A test harness may close our stdout early; logging must never kill us.
  process.stdout.on('error', () => {});
  const opts = parseArgs(process.argv.slice(2));

  let cert;
  let key;
  try {
    cert = fs.readFileSync(opts.cert);
    key = fs.readFileSync(opts.key);
  } catch (err) {
    fatal(`cannot read certificate or key: ${err.message}`);
  }

  const store = new Store(opts.stateDir, opts.saveInterval);
  try {
    fs.mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(opts.mailDir, { recursive: true, mode: 0o755 });
    store.load();
  } catch (err) {
    fatal(`cannot load state: ${err.message}`);
  }

  const app = {
    opts,
    store,
    config: newConfig(opts),
    counters: newCounters(),
    faults: new Faults(),
    mailCounter: nextMailCounter(opts.mailDir),
    mail: null,
  };
  try {
    app.mail = graphMail.newState(opts.mailDir);
  } catch (err) {
    fatal(`cannot load delivered mail: ${err.message}`);
  }

  let tlsServer;
  try {
    tlsServer = https.createServer({ cert, key }, guarded(app, 'https', handleHttps));
  } catch (err) {
    fatal(`bad certificate or key: ${err.message}`);
  }
  const adminServer = http.createServer(guarded(app, 'admin', handleAdmin));
  // Handshake failures and garbage requests are the client's problem; note
  // them without dying. Node answers 400 to unparsable HTTP by itself when
  // there is no clientError listener, so keep that behaviour explicitly.
  tlsServer.on('tlsClientError', (err) => logLine(`https tls-error ${err.code || err.message}`));
  // Connection reuse is measured by these: a client that keeps its connection makes far
  // fewer handshakes than requests.
  tlsServer.on('secureConnection', (socket) => {
    app.counters.tls_sessions += 1;
    if (socket.isSessionReused()) app.counters.tls_sessions_resumed += 1;
  });
  tlsServer.on('request', () => { app.counters.https_requests += 1; });
  for (const s of [tlsServer, adminServer]) {
    s.on('clientError', (err, socket) => {
      if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  let port;
  let adminPort;
  try {
    port = await listen(tlsServer, opts.port);
    adminPort = await listen(adminServer, opts.adminPort);
  } catch (err) {
    fatal(`cannot listen: ${err.message}`);
  }

  let shuttingDown = false;
  const shutdown = (sig) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logLine(`emulator ${sig}: shutting down`);
    if (store.saveTimer) {
      try {
        store.flush();
      } catch (err) {
        process.stderr.write(`emulator: cannot save state: ${err.message}\n`);
      }
    }
    for (const res of app.faults.hung) killSocket(res.socket, false);
    let open = 2;
    const done = () => {
      if (--open > 0) return;
      if (opts.readyFile) {
        // Remove the ready file only if it is still ours.
        try {
          const r = JSON.parse(fs.readFileSync(opts.readyFile, 'utf8'));
          if (r.pid === process.pid) fs.unlinkSync(opts.readyFile);
        } catch (_) { /* gone or replaced */ }
      }
      process.exit(0);
    };
    tlsServer.close(done);
    adminServer.close(done);
    tlsServer.closeAllConnections();
    adminServer.closeAllConnections();
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  if (opts.readyFile) {
    try {
      writeFileAtomic(opts.readyFile, JSON.stringify({ port, admin_port: adminPort, pid: process.pid }) + '\n', 0o644);
    } catch (err) {
      fatal(`cannot write ready file: ${err.message}`);
    }
  }
  logLine(`emulator listening https=${LISTEN_HOST}:${port} admin=${LISTEN_HOST}:${adminPort} pid=${process.pid} rotation=${app.config.rotation} token_lifetime=${app.config.tokenLifetime}`);
}

main();
