// client_credentials grant as the Microsoft identity platform answers it: a confidential
// client (secret or certificate assertion, checked by lib/apps.js before this handler) asks
// for exactly one "{resource}/.default" and gets an app-only access token carrying the
// application permissions the app has admin consent for. Never a refresh token, no id_token,
// and no "scope" in the response (a captured Entra client-credentials answer, MSAL.NET
// MockHelpers.GetSuccessfulMtlsResponse: token_type, expires_in, ext_expires_in, access_token).
//
// Scope errors, from captured Entra responses (MSAL.NET MockHelpers.cs, and issues such as
// microsoftgraph/msgraph-sdk-python#181, databricks/databricks-sql-nodejs#226):
//   AADSTS1002012 invalid_scope  any scope that is not "{resource}/.default" ("Client
//                                credential flows must have a scope value with /.default
//                                suffixed to the resource identifier")
//   AADSTS700022  invalid_scope  more than one resource (reference-error-codes.md,
//                                InvalidMultipleResourcesScope)
//   AADSTS500011  invalid_resource  resource unknown in the tenant

'use strict';

module.exports = function makeClientCredentials(kit, apps) {
  const { AadError, requireParam, lc, scopeResource, GRAPH_RESOURCE } = kit;

  function precheck(ctx) {
    const t = lc(ctx.tenant);
    if (t === 'common' || t === 'consumers') throw new AadError(9001023);
    // AADSTS90019 MissingTenantRealm: /organizations names no tenant to act in.
    if (t === 'organizations') throw new AadError(90019);
  }

  function grantClientCredentials(ctx) {
    const { app, client } = ctx;
    const scopeParam = requireParam(ctx.params, 'scope');
    if (!apps.clientInTenant(client, ctx.tenant)) throw new AadError(700016, { client_id: client.client_id, tenant: ctx.tenant });
    const scopes = scopeParam.split(/\s+/).filter(Boolean);
    for (const s of scopes) {
      if (!s.endsWith('/.default') || s.length <= '/.default'.length) throw new AadError(1002012, { scope: s });
    }
    // "https://graph.microsoft.com//.default" (the v1 resource form) names the same resource.
    const resources = [...new Set(scopes.map((s) => lc(scopeResource(s)).replace(/\/+$/, '')))];
    if (resources.length > 1) throw new AadError(700022);
    if (scopes.length > 1) throw new AadError(70011, { detail: `The scope ${scopes.join(' ')} is not valid.` });
    const resource = resources[0];
    const a = apps.appOf(client);
    const known = lc(GRAPH_RESOURCE) === resource || a.roles.some((r) => lc(scopeResource(r)) === resource);
    if (!known) throw new AadError(500011, { resource: scopeResource(scopes[0]), tenant: ctx.tenant });
    // Without admin consent Entra still issues a token, just without roles: Graph then
    // answers 403. The emulator does the same.
    const roles = a.consent === false ? [] : a.roles.filter((r) => lc(scopeResource(r)) === resource);
    const lifetime = app.config.tokenLifetime;
    const accessToken = app.store.issueAccessToken({
      family: null, tenant: lc(ctx.tenant), clientId: client.client_id, user: null,
      resource: lc(GRAPH_RESOURCE) === resource ? GRAPH_RESOURCE : scopeResource(roles[0] || scopes[0]),
      scopes: roles, appOnly: true, lifetime,
    });
    app.store.save();
    return { token_type: 'Bearer', expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken };
  }

  return { precheck, grantClientCredentials };
};
