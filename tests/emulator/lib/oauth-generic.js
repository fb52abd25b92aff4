// "Any OAuth 2.0 server" mode: POST /oauth/token and POST /oauth/device_authorization
// following RFC 6749 (errors §5.2, client authentication §2.3), RFC 8628 (device grant),
// RFC 7523 (private_key_jwt) and RFC 9700 / OAuth 2.1 refresh token rotation, with nothing
// Microsoft-specific: no AADSTS numbers, no trace ids, no ".default", scopes are opaque
// strings, verification_uri_complete is sent, and every refresh rotates: the used refresh
// token dies, and presenting a rotated-out one again revokes its whole family (refresh and
// access tokens), whatever the global "rotation" setting says.
//
// Shares the app registrations, users and token store with the Microsoft endpoints, so a
// refresh token registered with POST /admin/refresh-tokens works here too.

'use strict';

const { verifyClientAssertion } = require('./assertion');

class OAuthError extends Error {
  constructor(error, description, status = 400, headers = {}) {
    super(description);
    this.error = error;
    this.status = status;
    this.headers = headers;
  }
}

module.exports = function makeGeneric(kit, apps, device) {
  const { lc, scopeResource, GRAPH_RESOURCE, DEFAULT_REFRESH_LIFETIME, AadError } = kit;
  const { codes } = device;
  const DEVICE_CODE_GRANT = device.DEVICE_CODE_GRANT;
  const KNOWN = ['refresh_token', 'password', 'client_credentials', 'authorization_code', DEVICE_CODE_GRANT, 'urn:ietf:params:oauth:grant-type:jwt-bearer'];

  const invalidClient = (description, basic) => new OAuthError('invalid_client', description, 401,
    basic ? { 'WWW-Authenticate': 'Basic realm="credbroker-emulator", charset="UTF-8"' } : {});

  function parseForm(buf) {
    const params = new Map();
    for (const [k, v] of new URLSearchParams(buf.toString('utf8'))) {
      // RFC 6749 §3.2: parameters MUST NOT be included more than once.
      if (params.has(k)) throw new OAuthError('invalid_request', `parameter "${k.slice(0, 40)}" repeated`);
      params.set(k, v);
    }
    return params;
  }

  function param(params, name, required = true) {
    const v = params.get(name);
    if ((v === undefined || v === '') && required) throw new OAuthError('invalid_request', `missing parameter "${name}"`);
    return v === '' ? undefined : v;
  }

  // RFC 6749 §2.3.1: Basic credentials are the form-urlencoded client_id and secret.
  function parseBasic(h) {
    const m = /^Basic[ \t]+([A-Za-z0-9+/]+=*)[ \t]*$/i.exec(h);
    if (!m) return null;
    const text = Buffer.from(m[1], 'base64').toString('utf8');
    const i = text.indexOf(':');
    if (i < 0) return null;
    try {
      const dec = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
      return { id: dec(text.slice(0, i)), secret: dec(text.slice(i + 1)) };
    } catch (_) {
      return null;
    }
  }

  // Client authentication (RFC 6749 §2.3, RFC 7523 §2.2). Returns { client, method }.
  function authenticate(app, req, params, urls) {
    const auth = req.headers.authorization;
    const basic = typeof auth === 'string' && /^basic\b/i.test(auth) ? parseBasic(auth) : null;
    if (typeof auth === 'string' && /^basic\b/i.test(auth) && !basic) throw invalidClient('malformed Basic credentials', true);
    const methods = [basic && 'client_secret_basic', params.has('client_secret') && 'client_secret_post',
      (params.has('client_assertion') || params.has('client_assertion_type')) && 'private_key_jwt'].filter(Boolean);
    if (methods.length > 1) throw new OAuthError('invalid_request', 'more than one client authentication method');
    const method = methods[0] || 'none';
    const only = app.config.genericClientAuth;
    if ((only === 'basic' && method === 'client_secret_post') || (only === 'post' && method === 'client_secret_basic')) {
      throw invalidClient(`this server accepts client secrets only with client_secret_${only}`, method === 'client_secret_basic');
    }
    let clientId = params.get('client_id');
    if (basic) {
      if (clientId !== undefined && clientId !== basic.id) throw new OAuthError('invalid_request', 'client_id does not match the Basic credentials');
      clientId = basic.id;
    }
    if (!clientId) throw new OAuthError('invalid_request', 'missing parameter "client_id"');
    const client = app.store.client(clientId);
    if (!client) throw invalidClient('unknown client', !!basic);
    const a = apps.appOf(client);
    if (method !== 'none' && apps.isPublicOnly(client)) throw invalidClient('public clients must not authenticate', !!basic);
    if (method === 'client_secret_basic' || method === 'client_secret_post') {
      try {
        apps.checkSecret(client, basic ? basic.secret : params.get('client_secret'));
      } catch (err) {
        if (!(err instanceof AadError)) throw err;
        throw invalidClient(err.code === 7000222 ? 'client secret expired' : 'client authentication failed', !!basic);
      }
    } else if (method === 'private_key_jwt') {
      if (params.get('client_assertion_type') !== apps.JWT_BEARER) throw new OAuthError('invalid_request', 'client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      const r = verifyClientAssertion({
        assertion: param(params, 'client_assertion'),
        clientId,
        audiences: [urls.token, urls.issuer],
        certificates: apps.assertionKeys(a),
        requireThumbprint: false,
        pssSalt: app.config.assertionPssSalt,
        maxLifetimeSeconds: app.config.assertionMaxLifetime,
        jtiCache: apps.jtiCache,
        refusePs256: app.config.assertionRefusePs256,
        onHeader: (h) => apps.countAssertionAlg(app, h.alg),
      });
      if (!r.ok) throw invalidClient(`client assertion rejected: ${r.reason}`, false);
    } else if (a && !a.public_client) {
      throw invalidClient('client authentication required', false);
    }
    return { client, method };
  }

  const resourceOf = (scopes) => {
    const s = scopes.find((x) => x.includes('/'));
    return s ? scopeResource(s) : '';
  };

  function tokenScopes(scopes) {
    const r = resourceOf(scopes);
    return r ? scopes.filter((s) => s.includes('/') && scopeResource(s) === r) : scopes;
  }

  function issue(app, client, user, scopes, source) {
    const { store, config } = app;
    const tenant = client.tenants[0] || 'oauth';
    const family = store.createFamily({ tenant, clientId: client.client_id, user, scopes, lifetime: DEFAULT_REFRESH_LIFETIME, source });
    const accessToken = store.issueAccessToken({
      family, tenant, clientId: client.client_id, user, resource: resourceOf(scopes), scopes: tokenScopes(scopes), appOnly: false, lifetime: config.tokenLifetime,
    });
    // OpenID Connect Core §11: with openid, a refresh token only for offline_access.
    const refreshToken = wantsRefresh(config, scopes) ? store.issueRefreshToken(family) : undefined;
    store.save();
    return { access_token: accessToken, token_type: 'Bearer', expires_in: config.tokenLifetime, refresh_token: refreshToken, scope: scopes.join(' ') };
  }

  function wantsRefresh(config, scopes) {
    if (scopes.includes('offline_access')) return true;
    return !scopes.includes('openid') && !config.genericRefreshNeedsOfflineAccess;
  }

  // Requested scopes (opaque) checked against what may be granted; none asked = all.
  function pickScopes(scopeParam, allowed) {
    if (scopeParam === undefined) return allowed.slice();
    const want = [...new Set(scopeParam.split(' ').filter(Boolean))];
    if (!want.length) throw new OAuthError('invalid_scope', 'empty scope');
    // OpenID Connect's scopes need no registration.
    for (const s of want) if (!allowed.includes(s) && !['openid', 'offline_access', 'profile', 'email'].includes(s)) throw new OAuthError('invalid_scope', `scope "${s.slice(0, 200)}" not allowed`);
    return want;
  }

  function delegatedAllowed(client) {
    const a = apps.appOf(client);
    if (a && a.consent === false) throw new OAuthError('invalid_scope', 'the client has no consented scopes');
    return a && a.scopes ? a.scopes : [`${GRAPH_RESOURCE}/Mail.Send`];
  }

  function grantRefresh(app, client, params, res) {
    const { store, config } = app;
    const token = param(params, 'refresh_token');
    const found = store.findRefreshToken(token);
    if (!found || lc(found.family.client_id) !== lc(client.client_id)) throw new OAuthError('invalid_grant', 'refresh token invalid');
    const { rt, family: fam } = found;
    const now = Date.now();
    if (rt.revoked_at) {
      if (rt.revoked_reason === 'rotated') {
        // RFC 9700 §4.14.2: a rotated-out token coming back means it leaked.
        store.revokeRefreshTokens((r) => r.family === rt.family, 'replay');
        store.revokeAccessTokens((x) => x.family === rt.family);
        store.save();
        app.counters.oauth_replays += 1;
        kit.noteOn(res, 'replay-revoked-family');
      }
      throw new OAuthError('invalid_grant', 'refresh token revoked');
    }
    if (rt.expires_at <= now) throw new OAuthError('invalid_grant', 'refresh token expired');
    const scopes = pickScopes(params.get('scope') || undefined, fam.scopes);
    const accessToken = store.issueAccessToken({
      family: rt.family, tenant: fam.tenant, clientId: fam.client_id, user: fam.user,
      resource: resourceOf(scopes), scopes: tokenScopes(scopes), appOnly: false, lifetime: config.tokenLifetime,
    });
    rt.used_at = now;
    rt.revoked_at = now;
    rt.revoked_reason = 'rotated';
    const refreshToken = store.issueRefreshToken(rt.family);
    store.save();
    return { access_token: accessToken, token_type: 'Bearer', expires_in: config.tokenLifetime, refresh_token: refreshToken, scope: scopes.join(' ') };
  }

  function grantPassword(app, client, params) {
    const username = param(params, 'username');
    const password = param(params, 'password');
    const scopes = pickScopes(params.get('scope') || undefined, delegatedAllowed(client));
    let user;
    try {
      user = apps.checkPassword(app, { username, password, tenant: client.tenants[0] || 'organizations' });
    } catch (err) {
      if (!(err instanceof AadError)) throw err;
      throw new OAuthError('invalid_grant', err.code === 50053 ? 'account locked' : 'invalid username or password');
    }
    if (user.mfa_required) throw new OAuthError('invalid_grant', 'multi-factor authentication required; use an interactive flow');
    return issue(app, client, user.username, scopes, 'password');
  }

  function grantDevice(app, client, params) {
    const code = param(params, 'device_code');
    app.counters.device_polls += 1;
    const rec = codes.find(code);
    if (!rec || !rec.generic || lc(rec.client_id) !== lc(client.client_id)) throw new OAuthError('invalid_grant', 'unknown device_code');
    switch (codes.poll(rec, app.config.devicePollToleranceMs)) {
      case 'expired': throw new OAuthError('expired_token', 'the device_code has expired');
      case 'slow_down':
        app.counters.device_slow_downs += 1;
        throw new OAuthError('slow_down', `polling too fast; the interval is now ${rec.interval} seconds`);
      case 'pending':
        app.counters.device_pending += 1;
        throw new OAuthError('authorization_pending', 'the user has not yet completed authorization');
      case 'declined': throw new OAuthError('access_denied', 'the user denied the authorization request');
      case 'redeemed': throw new OAuthError('invalid_grant', 'the device_code was already used');
      default: break;
    }
    rec.status = 'redeemed';
    return issue(app, client, rec.user, rec.granted, 'device_code');
  }

  function grantClientCredentials(app, client, params, method) {
    // RFC 6749 §4.4: confidential clients only.
    if (method === 'none') throw new OAuthError('unauthorized_client', 'client_credentials requires a confidential client');
    const a = apps.appOf(client);
    const allowed = a.consent === false ? [] : a.roles;
    const scopes = pickScopes(params.get('scope') || undefined, allowed);
    const accessToken = app.store.issueAccessToken({
      family: null, tenant: client.tenants[0] || 'oauth', clientId: client.client_id, user: null,
      resource: resourceOf(scopes) || GRAPH_RESOURCE, scopes: tokenScopes(scopes), appOnly: true, lifetime: app.config.tokenLifetime,
    });
    app.store.save();
    return { access_token: accessToken, token_type: 'Bearer', expires_in: app.config.tokenLifetime, scope: scopes.join(' ') };
  }

  function deviceAuthorization(app, client, params, urls) {
    const scopes = pickScopes(params.get('scope') || undefined, delegatedAllowed(client));
    const { deviceCode, rec } = codes.create({
      clientId: client.client_id, tenant: client.tenants[0] || 'oauth', scopes, oidc: [],
      expiresIn: app.config.deviceExpiresIn, interval: app.config.deviceInterval, generic: true,
    });
    return {
      device_code: deviceCode,
      user_code: rec.user_code,
      verification_uri: urls.verification,
      verification_uri_complete: `${urls.verification}?user_code=${rec.user_code}`,
      expires_in: app.config.deviceExpiresIn,
      interval: app.config.deviceInterval,
    };
  }

  // POST /oauth/token and POST /oauth/device_authorization.
  async function handleOAuth(app, req, res, which) {
    const { counters } = app;
    const isToken = which === 'token';
    if (isToken) counters.oauth_token += 1;
    else counters.oauth_device_authorization += 1;
    const logEntry = kit.logTokenRequest(app, isToken ? 'oauth_token' : 'oauth_device_authorization', res);
    res.on('finish', () => {
      if (res.locals.transportFault) return;
      if (res.statusCode < 400) counters.oauth_success += 1;
      else counters.oauth_errors += 1;
    });
    const got = await kit.readBody(req, kit.TOKEN_BODY_LIMIT);
    if (got.aborted) return;
    let params = new Map();
    let formError = null;
    if (got.ok && kit.mediaType(req) === 'application/x-www-form-urlencoded') {
      try {
        params = parseForm(got.body);
      } catch (err) {
        formError = err;
      }
    }
    if (isToken) {
      const gt = params.get('grant_type');
      const key = gt === undefined ? 'none' : (KNOWN.includes(gt) ? gt : 'other');
      counters.oauth_token_by_grant[key] = (counters.oauth_token_by_grant[key] || 0) + 1;
      logEntry.grant = key;
      if (gt !== undefined) kit.noteOn(res, `grant=${key}`);
    }
    const fault = app.faults.take('oauth');
    if (fault) {
      counters.faults_injected.oauth += 1;
      return kit.applyFault(app, 'oauth', fault, req, res, {});
    }
    const host = typeof req.headers.host === 'string' && /^[A-Za-z0-9.:[\]-]{1,300}$/.test(req.headers.host) ? req.headers.host : '127.0.0.1';
    const urls = { issuer: `https://${host}`, token: `https://${host}/oauth/token`, verification: `https://${host}/device` };
    try {
      if (got.tooLarge) throw new OAuthError('invalid_request', 'request body too large', 413, got.drop ? { Connection: 'close' } : {});
      if (req.method !== 'POST') throw new OAuthError('invalid_request', 'POST only', 405, { Allow: 'POST' });
      if (kit.mediaType(req) !== 'application/x-www-form-urlencoded') throw new OAuthError('invalid_request', 'body must be application/x-www-form-urlencoded');
      if (formError) throw formError;
      let body;
      if (!isToken) {
        const { client } = authenticate(app, req, params, urls);
        body = deviceAuthorization(app, client, params, urls);
      } else {
        const grantType = param(params, 'grant_type');
        const { client, method } = authenticate(app, req, params, urls);
        if (grantType === 'refresh_token') body = grantRefresh(app, client, params, res);
        else if (grantType === 'password') body = grantPassword(app, client, params);
        else if (grantType === DEVICE_CODE_GRANT) body = grantDevice(app, client, params);
        else if (grantType === 'client_credentials') body = grantClientCredentials(app, client, params, method);
        else throw new OAuthError('unsupported_grant_type', `grant_type "${grantType.slice(0, 100)}" is not supported`);
      }
      kit.sendJson(res, 200, body, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      kit.noteOn(res, err.error);
      kit.sendJson(res, err.status, { error: err.error, error_description: err.message }, { 'Cache-Control': 'no-store', Pragma: 'no-cache', ...err.headers });
      if (got.drop) res.on('finish', () => kit.killSocket(req.socket, false));
    }
  }

  // GET /.well-known/oauth-authorization-server (RFC 8414), so a client configured with
  // only an issuer URL can find the endpoints.
  function handleMetadata(app, req, res) {
    req.resume();
    if (req.method !== 'GET') return kit.sendJson(res, 405, { error: 'invalid_request', error_description: 'GET only' }, { Allow: 'GET' });
    const host = typeof req.headers.host === 'string' && /^[A-Za-z0-9.:[\]-]{1,300}$/.test(req.headers.host) ? req.headers.host : '127.0.0.1';
    const issuer = `https://${host}`;
    return kit.sendJson(res, 200, {
      issuer,
      token_endpoint: `${issuer}/oauth/token`,
      device_authorization_endpoint: `${issuer}/oauth/device_authorization`,
      grant_types_supported: ['refresh_token', 'password', 'client_credentials', DEVICE_CODE_GRANT],
      token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']
        .filter((m) => !(app.config.genericClientAuth === 'basic' && m === 'client_secret_post') && !(app.config.genericClientAuth === 'post' && m === 'client_secret_basic')),
      token_endpoint_auth_signing_alg_values_supported: ['PS256', 'RS256'],
      response_types_supported: [],
    });
  }

  return { handleOAuth, handleMetadata, OAuthError };
};
