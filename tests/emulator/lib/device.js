// Device authorization grant (RFC 8628) as the Microsoft identity platform answers it:
// POST /{tenant}/oauth2/v2.0/devicecode, then grant_type=urn:ietf:params:oauth:grant-type:device_code
// at the token endpoint. Tests play the user through the admin API (approve / decline a
// user_code). Device codes live in memory only: a restarted emulator forgets them, as a
// real device code would long have expired.
//
// Polling discipline is enforced while a code is pending: a poll that arrives less than
// `interval` seconds after the previous poll is answered slow_down and the interval the
// client must keep grows by 5 seconds (RFC 8628 §3.5). The first poll may come at once:
// the RFC only constrains the time between polls, and MSAL Python polls before its first
// sleep. config.devicePollToleranceMs forgives that much early arrival (network jitter).

'use strict';

const crypto = require('crypto');

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const VERIFICATION_URI = 'https://microsoft.com/devicelogin';
// Microsoft's user codes are 9 letters and digits; the generic mode uses RFC 8628 §6.1's
// base-20 consonants shown as XXXX-XXXX.
const MS_USER_CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const RFC_USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
const FORGET_AFTER_MS = 3600 * 1000; // expired codes still answer expired_token this long
const MAX_CODES = 10000;

function randomCode(alphabet, n) {
  let s = '';
  for (const b of crypto.randomBytes(n)) s += alphabet[b % alphabet.length];
  return s;
}

const normaliseUserCode = (s) => String(s).toUpperCase().replace(/[^A-Z0-9]/g, '');

class DeviceCodes {
  constructor() {
    this.byHash = new Map();
  }

  prune(now = Date.now()) {
    for (const [h, r] of this.byHash) {
      if (r.expires_at + FORGET_AFTER_MS <= now || this.byHash.size > MAX_CODES) this.byHash.delete(h);
    }
  }

  // Returns { deviceCode, rec }. The device code value is never stored, only its hash.
  create({ clientId, tenant, scopes, oidc, expiresIn, interval, generic }) {
    const now = Date.now();
    this.prune(now);
    let userCode;
    do {
      userCode = generic ? randomCode(RFC_USER_CODE_ALPHABET, 8) : randomCode(MS_USER_CODE_ALPHABET, 9);
    } while (this.findUserCode(userCode));
    // Shaped like Entra's (a long opaque base64url blob starting "DAQAB").
    const deviceCode = generic ? crypto.randomBytes(32).toString('base64url') : `DAQABIQEAAAB${crypto.randomBytes(120).toString('base64url')}`;
    const rec = {
      hash: crypto.createHash('sha256').update(deviceCode).digest('hex'),
      user_code: generic ? `${userCode.slice(0, 4)}-${userCode.slice(4)}` : userCode,
      client_id: clientId,
      tenant,
      scopes, // requested resource scopes, normalised
      oidc, // requested OpenID scopes (offline_access decides the refresh token)
      created_at: now,
      expires_at: now + expiresIn * 1000,
      interval, // seconds the client must keep between polls; grows with each slow_down
      last_poll_at: null,
      status: 'pending', // pending | approved | declined | redeemed
      user: null,
      user_tenant: null, // the approving user's tenant, if registered with one
      granted: null,
      polls: 0,
      slow_downs: 0,
      generic: !!generic,
    };
    this.byHash.set(rec.hash, rec);
    return { deviceCode, rec };
  }

  find(deviceCode) {
    return this.byHash.get(crypto.createHash('sha256').update(String(deviceCode)).digest('hex')) || null;
  }

  findUserCode(userCode) {
    const want = normaliseUserCode(userCode);
    for (const r of this.byHash.values()) if (normaliseUserCode(r.user_code) === want) return r;
    return null;
  }

  // One poll at the token endpoint. Returns what to answer:
  // expired | slow_down | pending | declined | approved | redeemed.
  poll(rec, toleranceMs, now = Date.now()) {
    rec.polls += 1;
    if (now >= rec.expires_at) return 'expired';
    const previous = rec.last_poll_at;
    rec.last_poll_at = now;
    if (rec.status !== 'pending') return rec.status;
    if (previous !== null && now - previous < rec.interval * 1000 - toleranceMs) {
      rec.interval += 5;
      rec.slow_downs += 1;
      return 'slow_down';
    }
    return 'pending';
  }

  view(r, now = Date.now()) {
    return {
      user_code: r.user_code,
      client_id: r.client_id,
      tenant: r.tenant,
      scopes: [...r.scopes, ...r.oidc],
      status: r.expires_at <= now && r.status === 'pending' ? 'expired' : r.status,
      user: r.user,
      granted_scopes: r.granted,
      expires_at: new Date(r.expires_at).toISOString(),
      interval: r.interval,
      polls: r.polls,
      slow_downs: r.slow_downs,
      last_poll_at: r.last_poll_at === null ? null : new Date(r.last_poll_at).toISOString(),
      mode: r.generic ? 'oauth' : 'microsoft',
    };
  }
}

module.exports = function makeDevice(kit, apps) {
  const {
    AadError, AdminError, adminString, checkKeys, requireParam, lc, normaliseScope, OIDC_SCOPES,
  } = kit;
  const codes = new DeviceCodes();

  // Split a scope parameter into resource scopes and OpenID scopes. Microsoft mode
  // normalises bare names to Graph; the generic mode keeps scopes opaque.
  function splitScopes(scopeParam, generic) {
    const all = scopeParam.split(/\s+/).filter(Boolean).map((s) => (generic ? s : normaliseScope(s)));
    const oidc = all.filter((s) => OIDC_SCOPES.includes(s));
    const scopes = [];
    for (const s of all) if (!OIDC_SCOPES.includes(s) && !scopes.includes(s)) scopes.push(s);
    return { scopes, oidc };
  }

  // POST /{tenant}/oauth2/v2.0/devicecode, after the shared HTTP checks (emulator.js).
  function deviceCodeRequest(ctx) {
    const { params, app } = ctx;
    const clientId = requireParam(params, 'client_id');
    const client = app.store.client(clientId);
    if (!client || !apps.clientInTenant(client, ctx.tenant)) throw new AadError(700016, { client_id: clientId, tenant: ctx.tenant });
    const scopeParam = requireParam(params, 'scope');
    const { scopes, oidc } = splitScopes(scopeParam, false);
    if (!scopes.length) throw new AadError(70011, { detail: 'The scope must include at least one resource permission.' });
    if (scopes.some((s) => lc(s).endsWith('/.default')) && scopes.length > 1) {
      throw new AadError(70011, { detail: ".default scope can't be combined with resource-specific scopes." });
    }
    const { deviceCode, rec } = codes.create({
      clientId: client.client_id, tenant: lc(ctx.tenant), scopes, oidc,
      expiresIn: app.config.deviceExpiresIn, interval: app.config.deviceInterval, generic: false,
    });
    // Field order and wording as Entra sends them; no verification_uri_complete.
    return {
      user_code: rec.user_code,
      device_code: deviceCode,
      verification_uri: VERIFICATION_URI,
      expires_in: app.config.deviceExpiresIn,
      interval: app.config.deviceInterval,
      message: `To sign in, use a web browser to open the page ${VERIFICATION_URI} and enter the code ${rec.user_code} to authenticate.`,
    };
  }

  // grant_type=urn:ietf:params:oauth:grant-type:device_code at the Microsoft token endpoint.
  function grantDeviceCode(ctx) {
    const { app, client } = ctx;
    const code = requireParam(ctx.params, 'device_code');
    app.counters.device_polls += 1;
    const rec = codes.find(code);
    // Unknown, another client's, or the generic mode's code: 70018 bad_verification_code.
    if (!rec || rec.generic || lc(rec.client_id) !== lc(client.client_id)) throw new AadError(70018);
    if (rec.tenant !== lc(ctx.tenant)) throw new AadError(70000);
    const outcome = codes.poll(rec, app.config.devicePollToleranceMs);
    switch (outcome) {
      case 'expired':
        throw new AadError(70020);
      case 'slow_down':
        app.counters.device_slow_downs += 1;
        // Entra documents no AADSTS number for slow_down (it rarely sends one); the emulator
        // keeps 70016's number, so a client that looks at error_codes alone keeps polling,
        // and one that honours "error" (as it must) also waits the longer interval.
        throw new AadError(70016, { interval: rec.interval }, {
          error: 'slow_down',
          text: 'OAuth 2.0 device flow error. Polling too fast: wait at least {interval} seconds between requests.',
        });
      case 'pending':
        app.counters.device_pending += 1;
        throw new AadError(70016);
      case 'declined':
        // The error name is the one Microsoft's device code page lists; the number is
        // AADSTS65004 UserDeclinedConsent ("User declined to consent to access the app",
        // reference-error-codes.md), the closest documented code.
        throw new AadError(65004);
      case 'redeemed':
        throw new AadError(70000);
      default:
        break;
    }
    rec.status = 'redeemed';
    const tenant = kit.homeTenant(client, rec.tenant, rec.user_tenant);
    return kit.issueDelegated(ctx, {
      tenant, clientId: client.client_id, user: rec.user, grantable: rec.granted,
      scopeParam: [...rec.granted, ...rec.oidc].join(' '), source: 'device_code',
    });
  }

  // --- admin -----------------------------------------------------------------

  function findForAdmin(b) {
    const userCode = adminString(b, 'user_code', { max: 64 });
    const rec = codes.findUserCode(userCode);
    if (!rec) throw new AdminError(404, 'no such user_code');
    if (rec.expires_at <= Date.now()) throw new AdminError(410, 'the device code has expired');
    if (rec.status !== 'pending') throw new AdminError(409, `the device code is already ${rec.status}`);
    return rec;
  }

  // POST /admin/device/approve {"user_code","user"?,"scopes"?}: the user signs in and
  // consents, to all requested scopes or the narrower "scopes" given.
  function adminApprove(app, b) {
    checkKeys(b, ['user_code', 'user', 'scopes']);
    const rec = findForAdmin(b);
    let user = adminString(b, 'user', { required: false, max: 320 });
    if (user === undefined) user = `user@${kit.TENANT_ALIASES.includes(rec.tenant) ? 'contoso.onmicrosoft.com' : rec.tenant}`;
    let granted = rec.scopes;
    if (b.scopes !== undefined) {
      if (!Array.isArray(b.scopes) || !b.scopes.length || !b.scopes.every((s) => typeof s === 'string')) {
        throw new AdminError(400, '"scopes" must be a non-empty array of requested scopes');
      }
      granted = b.scopes.map((s) => (rec.generic ? s : normaliseScope(s)));
      for (const s of granted) {
        if (!rec.scopes.some((r) => lc(r) === lc(s))) throw new AdminError(400, `"${s}" was not requested`);
      }
    }
    // ".default" = what the app may have for that resource: its consented scopes, else Mail.Send.
    if (!rec.generic && granted.length === 1 && lc(granted[0]).endsWith('/.default')) {
      const resource = granted[0].slice(0, granted[0].lastIndexOf('/'));
      const a = apps.appOf(app.store.client(rec.client_id));
      const consented = a && a.scopes ? a.scopes.filter((s) => lc(s).startsWith(`${lc(resource)}/`)) : [];
      granted = consented.length ? consented : [`${resource}/Mail.Send`];
    }
    const u = app.store.data.users[lc(user)];
    rec.user = u ? u.username : user;
    rec.user_tenant = u ? u.tenant : null;
    rec.granted = granted;
    rec.status = 'approved';
    return [200, codes.view(rec)];
  }

  function adminDecline(app, b) {
    checkKeys(b, ['user_code']);
    const rec = findForAdmin(b);
    rec.status = 'declined';
    return [200, codes.view(rec)];
  }

  function adminList(app) {
    const now = Date.now();
    codes.prune(now);
    return [200, [...codes.byHash.values()].map((r) => codes.view(r, now))];
  }

  const adminRoutes = [
    ['GET', '/admin/device', adminList],
    ['POST', '/admin/device/approve', adminApprove],
    ['POST', '/admin/device/decline', adminDecline],
  ];

  return { codes, splitScopes, deviceCodeRequest, grantDeviceCode, adminRoutes, DEVICE_CODE_GRANT };
};

module.exports.DeviceCodes = DeviceCodes;
module.exports.DEVICE_CODE_GRANT = DEVICE_CODE_GRANT;
