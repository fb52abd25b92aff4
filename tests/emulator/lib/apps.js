// App registrations (public client flag, client secrets with expiry, certificates, consent,
// application permissions) and directory users (for ROPC), their admin routes, and client
// authentication for every grant of the Microsoft token endpoint.
//
// An app is the client record of state.json ("clients") with an "app" object added; clients
// created by POST /admin/refresh-tokens have none and behave as before (public, no credentials).
// Secrets and passwords are stored as salted/plain SHA-256 only, never as values.

'use strict';

const crypto = require('crypto');
const { describeCertificate, verifyClientAssertion, JtiCache } = require('./assertion');

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
// Entra ID smart lockout locks an account after 10 failed sign-ins by default.
const DEFAULT_LOCKOUT_THRESHOLD = 10;
// What a user registered with "error_code" answers to a correct password:
// 50055 password expired (suberror user_password_expired), 50057 account disabled,
// 53003 blocked by conditional access, 50079 MFA enrolment required (interaction_required).
const USER_ERROR_CODES = [50055, 50057, 53003, 50079];

function passwordHash(password, salt) {
  return crypto.createHash('sha256').update(`${salt}\n${password}`).digest('hex');
}

function timingSafeHexEqual(a, b) {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

module.exports = function makeApps(kit) {
  const { AadError, AdminError, adminString, checkKeys, lc, sha256hex, isPlainObject, TENANT_ALIASES, normaliseScope, scopeResource, OIDC_SCOPES } = kit;
  const jtiCache = new JtiCache();
  // Graph's Mail.Send, in the cloud the emulator plays (--graph-resource).
  const DEFAULT_ROLES = [`${kit.GRAPH_RESOURCE}/Mail.Send`];

  function appOf(client) {
    return client && client.app ? client.app : null;
  }

  // A client that must never present credentials: the refresh-token-only clients of
  // /admin/refresh-tokens, and apps that allow public client flows and have no credentials.
  function isPublicOnly(client) {
    const a = appOf(client);
    if (!a) return true;
    return a.public_client && !a.secrets.length && !a.certificates.length;
  }

  // Is the client registered in this tenant? Aliases (organizations, common) resolve to
  // the app's home tenant, so they always match.
  function clientInTenant(client, tenant) {
    const t = lc(tenant);
    return TENANT_ALIASES.includes(t) || client.tenants.includes(t);
  }

  // --- admin: apps ----------------------------------------------------------

  function parseScopeList(v, name) {
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && /^[\x21-\x7e]{1,512}$/.test(s))) {
      throw new AdminError(400, `"${name}" must be an array of scope strings`);
    }
    const out = [];
    for (const s of v.map(normaliseScope)) {
      if (OIDC_SCOPES.includes(s)) continue;
      if (s.endsWith('/.default') || scopeResource(s) === '') throw new AdminError(400, `"${s}" is not a grantable permission`);
      if (!out.some((x) => lc(x) === lc(s))) out.push(s);
    }
    return out;
  }

  function parseSecrets(list, now) {
    if (!Array.isArray(list) || list.length > 20) throw new AdminError(400, '"secrets" must be an array (at most 20)');
    return list.map((s, i) => {
      const o = typeof s === 'string' ? { value: s } : s;
      if (!isPlainObject(o)) throw new AdminError(400, `"secrets[${i}]" must be a string or {"value","expires_in"?,"id"?}`);
      checkKeys(o, ['value', 'expires_in', 'id']);
      const value = adminString(o, 'value', { max: 1024 });
      let expiresAt = null;
      if (o.expires_in !== undefined) {
        // May be zero or negative: a secret that has already expired (7000222).
        if (!Number.isInteger(o.expires_in)) throw new AdminError(400, '"expires_in" must be an integer (seconds; <= 0 = already expired)');
        expiresAt = now + o.expires_in * 1000;
      }
      const id = o.id === undefined ? crypto.randomUUID() : adminString(o, 'id', { max: 100 });
      // Entra shows the first three characters of a secret as its "hint".
      return { id, hint: value.slice(0, 3), hash: sha256hex(value), expires_at: expiresAt };
    });
  }

  function parseCertificates(list) {
    if (!Array.isArray(list) || list.length > 20) throw new AdminError(400, '"certificates" must be an array of PEM strings (at most 20)');
    return list.map((pem, i) => {
      if (typeof pem !== 'string' || pem.length > 65536) throw new AdminError(400, `"certificates[${i}]" must be a PEM string`);
      try {
        const d = describeCertificate(pem);
        return {
          pem: d.pem, sha1: d.sha1.toString('hex'), sha256: d.sha256.toString('hex'), subject: d.subject, not_before: d.not_before, not_after: d.not_after,
        };
      } catch (err) {
        throw new AdminError(400, `"certificates[${i}]": ${err.message}`);
      }
    });
  }

  function parseMailboxes(v) {
    if (!Array.isArray(v) || v.length > 1000 || !v.every((m) => typeof m === 'string' && /^[^\s@]{1,200}@[^\s@]{1,200}$/.test(m))) {
      throw new AdminError(400, '"mailboxes" must be an array of mail addresses');
    }
    return v.map(lc);
  }

  // Graph: may an app-only token of this client send as this mailbox?
  function mailboxAllowed(client, mailbox) {
    const a = appOf(client);
    return !a || !a.mailboxes || a.mailboxes.includes(lc(mailbox));
  }

  function appView(c) {
    const a = c.app;
    return {
      client_id: c.client_id,
      tenants: c.tenants,
      public_client: a.public_client,
      consent: a.consent,
      scopes: a.scopes,
      roles: a.roles,
      mailboxes: a.mailboxes === undefined ? null : a.mailboxes,
      secrets: a.secrets.map((s) => ({ id: s.id, hint: s.hint, expires_at: s.expires_at === null ? null : new Date(s.expires_at).toISOString() })),
      certificates: a.certificates.map((x) => ({
        subject: x.subject,
        not_before: x.not_before,
        not_after: x.not_after,
        'x5t': Buffer.from(x.sha1, 'hex').toString('base64url'),
        'x5t#S256': Buffer.from(x.sha256, 'hex').toString('base64url'),
      })),
    };
  }

  // POST /admin/apps: register or replace an app registration.
  function adminRegisterApp(app, b) {
    checkKeys(b, ['client_id', 'tenant', 'public_client', 'secrets', 'certificates', 'consent', 'scopes', 'roles', 'mailboxes']);
    const clientId = adminString(b, 'client_id', { max: 256 });
    const tenant = adminString(b, 'tenant', { max: 256 });
    if (!/^[A-Za-z0-9._-]+$/.test(tenant) || TENANT_ALIASES.includes(lc(tenant))) {
      throw new AdminError(400, '"tenant" must be a tenant id or domain, not common/organizations/consumers');
    }
    for (const k of ['public_client', 'consent']) {
      if (b[k] !== undefined && typeof b[k] !== 'boolean') throw new AdminError(400, `"${k}" must be a boolean`);
    }
    const now = Date.now();
    const record = {
      public_client: b.public_client === undefined ? true : b.public_client,
      consent: b.consent === undefined ? true : b.consent,
      secrets: b.secrets === undefined ? [] : parseSecrets(b.secrets, now),
      certificates: b.certificates === undefined ? [] : parseCertificates(b.certificates),
      // Delegated permissions consented for the app (null = whatever is asked for).
      scopes: b.scopes === undefined || b.scopes === null ? null : parseScopeList(b.scopes, 'scopes'),
      // Application permissions with admin consent (client_credentials).
      roles: b.roles === undefined ? DEFAULT_ROLES.slice() : parseScopeList(b.roles, 'roles'),
      // Exchange application access policy: the only mailboxes app-only tokens may use
      // (null = no policy, any mailbox).
      mailboxes: b.mailboxes === undefined || b.mailboxes === null ? null : parseMailboxes(b.mailboxes),
    };
    const { store } = app;
    const key = lc(clientId);
    const c = store.data.clients[key] || (store.data.clients[key] = { client_id: clientId, type: 'public', tenants: [] });
    if (!c.tenants.includes(lc(tenant))) c.tenants.push(lc(tenant));
    c.app = record;
    c.type = isPublicOnly(c) ? 'public' : 'confidential';
    store.save();
    return [201, appView(c)];
  }

  function adminListApps(app) {
    return [200, Object.values(app.store.data.clients).filter((c) => c.app).map(appView)];
  }

  // --- admin: users -----------------------------------------------------------

  function userView(u) {
    return {
      username: u.username, tenant: u.tenant, mfa_required: u.mfa_required, federated: u.federated,
      password_hash_sync: u.password_hash_sync, hrd_cloud_password_validation: u.hrd_cloud_password_validation, locked: u.locked, failed_attempts: u.failed_attempts,
      error_code: u.error_code === undefined ? null : u.error_code,
    };
  }

  // POST /admin/users: create or replace a user. A changed password revokes the refresh
  // tokens the user got from the password grant (Entra: password change/reset, 50173).
  function adminRegisterUser(app, b) {
    checkKeys(b, ['username', 'password', 'tenant', 'mfa_required', 'federated', 'password_hash_sync', 'hrd_cloud_password_validation', 'locked', 'error_code']);
    if (b.error_code !== undefined && !USER_ERROR_CODES.includes(b.error_code)) {
      throw new AdminError(400, `"error_code" must be one of ${USER_ERROR_CODES.join(', ')}`);
    }
    const username = adminString(b, 'username', { max: 320 });
    const password = adminString(b, 'password', { max: 1024 });
    const tenant = adminString(b, 'tenant', { required: false, max: 256 });
    if (tenant !== undefined && (!/^[A-Za-z0-9._-]+$/.test(tenant) || TENANT_ALIASES.includes(lc(tenant)))) {
      throw new AdminError(400, '"tenant" must be a tenant id or domain');
    }
    for (const k of ['mfa_required', 'federated', 'password_hash_sync', 'hrd_cloud_password_validation', 'locked']) {
      if (b[k] !== undefined && typeof b[k] !== 'boolean') throw new AdminError(400, `"${k}" must be a boolean`);
    }
    const { store } = app;
    const key = lc(username);
    const old = store.data.users[key];
    const salt = crypto.randomBytes(16).toString('hex');
    const u = {
      username,
      tenant: tenant === undefined ? null : lc(tenant),
      salt,
      password_sha256: passwordHash(password, salt),
      mfa_required: !!b.mfa_required,
      federated: !!b.federated,
      password_hash_sync: !!b.password_hash_sync,
      hrd_cloud_password_validation: !!b.hrd_cloud_password_validation,
      locked: !!b.locked,
      failed_attempts: 0,
      error_code: b.error_code === undefined ? null : b.error_code,
    };
    let revoked = 0;
    if (old && old.password_sha256 !== passwordHash(password, old.salt)) {
      revoked = store.revokeRefreshTokens((rt, fam) => lc(fam.user) === key && fam.source === 'password', 'password_change', 50173);
    }
    store.data.users[key] = u;
    store.save();
    return [old ? 200 : 201, { ...userView(u), revoked_refresh_tokens: revoked }];
  }

  function adminListUsers(app) {
    return [200, Object.values(app.store.data.users).map(userView)];
  }

  // Check a password. Returns the user record; throws AadError. Counts failures and locks
  // the account at the threshold (Entra smart lockout): the attempt that reaches it still
  // answers 50126, every later one 50053, until the user is re-registered.
  function checkPassword(app, { username, password, tenant }) {
    const { store, config } = app;
    const u = store.data.users[lc(username)];
    const t = lc(tenant);
    // AADSTS50034 UserAccountNotFound (reference-error-codes.md).
    if (!u || (u.tenant && !TENANT_ALIASES.includes(t) && u.tenant !== t)) {
      throw new AadError(50034, { user: username, tenant });
    }
    // A federated user's password lives at the federation server; without password hash
    // sync Entra cannot validate it and answers 50126 like for a wrong password (sign-in log:
    // "Invalid username or password or Invalid on-premise username or password";
    // MicrosoftDocs/azure-docs#55028, #32264: ROPC is not supported for federated users).
    // Microsoft's ROPC page: a federated user's password is checked in the cloud only with
    // password hash sync *and* a Home Realm Discovery policy with
    // AllowCloudPasswordValidation on the app; without either, 50126.
    if (u.federated && (!u.password_hash_sync || !u.hrd_cloud_password_validation)) throw new AadError(50126);
    if (u.locked) throw new AadError(50053);
    if (!timingSafeHexEqual(passwordHash(password, u.salt), u.password_sha256)) {
      u.failed_attempts += 1;
      const threshold = config.lockoutThreshold || DEFAULT_LOCKOUT_THRESHOLD;
      if (u.failed_attempts >= threshold) u.locked = true;
      store.save();
      throw new AadError(50126);
    }
    if (u.failed_attempts) {
      u.failed_attempts = 0;
      store.save();
    }
    if (u.error_code) {
      throw new AadError(u.error_code, {}, u.error_code === 50055 ? { suberror: 'user_password_expired' } : {});
    }
    return u;
  }

  // --- client authentication (Microsoft token endpoint) -------------------------

  function checkSecret(client, secret) {
    const a = appOf(client);
    const h = sha256hex(secret);
    const hit = a.secrets.find((s) => timingSafeHexEqual(s.hash, h));
    if (!hit) throw new AadError(7000215);
    if (hit.expires_at !== null && hit.expires_at <= Date.now()) throw new AadError(7000222, { client_id: client.client_id });
  }

  // Map assertion failures to what Entra answers. Sources:
  //   MSAL.NET tests/Microsoft.Identity.Test.Common/Core/Mocks/MockHelpers.cs (captured
  //     responses): 50027, 90014, 5002738, 5002723, 700024, 700021;
  //   Azure SDK for Java "Troubleshoot service principal authentication": 700027, 700021, 700023;
  //   AzureAD/microsoft-authentication-library-for-js#8339 and keycloak#19425: 700027 text
  //     "The certificate with identifier used to sign the client assertion is not registered";
  //   reference-error-codes.md: 50048 (SubjectMismatchesIssuer), 700027;
  //   a Go client's comment quoting Entra: 5002727 (typ must be JWT).
  // Entra documents no code for a replayed jti; the emulator answers 50013 (InvalidAssertion,
  // reference-error-codes.md), so clients must branch on "error" = invalid_client.
  function assertionError(r, clientId) {
    switch (r.reason) {
      case 'malformed': return new AadError(50027);
      case 'bad_typ': return new AadError(5002727);
      case 'bad_alg': return new AadError(5002738, { alg: r.alg });
      case 'no_thumbprint': return new AadError(5002723);
      case 'key_not_found': return new AadError(700027, { thumbprint: r.thumbprint || '', client_id: clientId }, {
        text: "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]",
      });
      case 'bad_signature': return new AadError(700027, { thumbprint: r.thumbprint || '' });
      // Text as in Entra answers quoted by Microsoft's own troubleshooting pages (e.g.
      // "[Reason - The key used is expired., ... Found key 'Start=06/29/2021 21:13:15, End=...'").
      case 'key_expired': return new AadError(700027, { thumbprint: r.thumbprint || '', start: usDate(r.start), end: usDate(r.end) }, {
        text: "Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{thumbprint}', Found key 'Start={start}, End={end}']",
      });
      case 'missing_claim': return new AadError(90014, { field: r.claim });
      case 'sub_mismatch': return new AadError(50048);
      case 'client_mismatch': return new AadError(700021);
      case 'bad_audience': return new AadError(700023);
      case 'time_range':
      case 'too_long': return new AadError(700024, {
        now: new Date(r.now).toISOString(), nbf: new Date(r.nbf).toISOString(), exp: new Date(r.exp).toISOString(),
      });
      case 'replay': return new AadError(50013);
      default: return new AadError(50027);
    }
  }

  // "06/29/2021 21:13:15", the date format of Entra's key messages.
  function usDate(ms) {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return '';
    const p = (n) => String(n).padStart(2, '0');
    return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
  }

  // Registered certificates in the shape lib/assertion.js wants.
  function assertionKeys(a) {
    return a.certificates.map((c) => ({
      pem: c.pem,
      sha1: Buffer.from(c.sha1, 'hex'),
      sha256: Buffer.from(c.sha256, 'hex'),
      notBefore: c.not_before ? Date.parse(c.not_before) : undefined,
      notAfter: c.not_after ? Date.parse(c.not_after) : undefined,
    }));
  }

  // Client assertions seen, by "alg" (PS256, RS256, other): tells a test which one a client sent.
  function countAssertionAlg(app, alg) {
    const key = alg === 'PS256' || alg === 'RS256' ? alg : 'other';
    const c = app.counters;
    if (!c.assertion_by_alg) c.assertion_by_alg = {};
    c.assertion_by_alg[key] = (c.assertion_by_alg[key] || 0) + 1;
  }

  function checkAssertion(app, client, ctx) {
    const { params } = ctx;
    const type = params.get('client_assertion_type');
    if (type === undefined) throw new AadError(900144, { param: 'client_assertion_type' });
    if (type !== JWT_BEARER) throw new AadError(90100, { param: 'client_assertion_type' });
    const a = appOf(client);
    const r = verifyClientAssertion({
      assertion: params.get('client_assertion'),
      clientId: params.get('client_id'),
      audiences: [ctx.tokenUrl],
      certificates: assertionKeys(a),
      requireThumbprint: true,
      pssSalt: app.config.assertionPssSalt,
      maxLifetimeSeconds: app.config.assertionMaxLifetime,
      jtiCache,
      refusePs256: app.config.assertionRefusePs256,
      onHeader: (h) => countAssertionAlg(app, h.alg),
    });
    if (!r.ok) throw assertionError(r, client.client_id);
  }

  // Authenticate the client for a grant. Sets ctx.clientAuth to 'none', 'secret' or
  // 'assertion'. Throws AadError:
  //   700025  a public-only client presented a secret or an assertion
  //   7000218 credentials required (confidential app, or client_credentials) but absent
  //   7000215 / 7000222 wrong / expired secret; assertion codes above
  function authenticateClient(app, ctx, grantType) {
    const { params, client } = ctx;
    const hasSecret = params.has('client_secret');
    const hasAssertion = params.has('client_assertion') || params.has('client_assertion_type');
    if (isPublicOnly(client)) {
      if (hasSecret || hasAssertion) throw new AadError(700025);
      if (grantType === 'client_credentials') throw new AadError(7000218);
      ctx.clientAuth = 'none';
      return;
    }
    if (hasSecret && hasAssertion) throw new AadError(9002313);
    if (hasSecret) {
      checkSecret(client, params.get('client_secret'));
      ctx.clientAuth = 'secret';
      return;
    }
    if (hasAssertion) {
      if (!params.has('client_assertion')) throw new AadError(900144, { param: 'client_assertion' });
      checkAssertion(app, client, ctx);
      ctx.clientAuth = 'assertion';
      return;
    }
    // No credentials: fine only for apps that allow public client flows, and never for
    // client_credentials.
    if (grantType === 'client_credentials' || !appOf(client).public_client) throw new AadError(7000218);
    ctx.clientAuth = 'none';
  }

  const adminRoutes = [
    ['POST', '/admin/apps', adminRegisterApp],
    ['GET', '/admin/apps', adminListApps],
    ['POST', '/admin/users', adminRegisterUser],
    ['GET', '/admin/users', adminListUsers],
  ];

  return {
    adminRoutes, authenticateClient, checkPassword, clientInTenant, appOf, isPublicOnly, checkSecret, assertionKeys, mailboxAllowed,
    countAssertionAlg, jtiCache, JWT_BEARER, DEFAULT_LOCKOUT_THRESHOLD,
  };
};
