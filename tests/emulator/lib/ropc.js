// Resource owner password credentials grant (grant_type=password) as the Microsoft
// identity platform answers it: not on /common or /consumers (9001023), the app must allow
// public client flows or authenticate (7000218, checked before this handler), the user
// exists (50034), federated users only with password hash sync (50126), lockout (50053),
// wrong password (50126), MFA impossible (50076), consent (65001). The password is never
// logged, stored or echoed; users keep a salted SHA-256 of theirs (lib/apps.js).

'use strict';

module.exports = function makeRopc(kit, apps) {
  const { AadError, requireParam, lc, normaliseScope, scopeResource, OIDC_SCOPES, GRAPH_RESOURCE } = kit;

  // Runs before client authentication: Entra rejects the authority first.
  function precheck(ctx) {
    const t = lc(ctx.tenant);
    if (t === 'common' || t === 'consumers') throw new AadError(9001023);
  }

  // The delegated permissions this grant may give: the app's consented "scopes", or
  // (when the app lists none) whatever is asked for. ".default" alone means the consented
  // set for that resource; with nothing listed, Graph's Mail.Send.
  function grantableScopes(client, scopeParam) {
    const a = apps.appOf(client);
    const requested = scopeParam.split(/\s+/).filter(Boolean).map(normaliseScope).filter((s) => !OIDC_SCOPES.includes(s));
    if (a && a.consent === false) throw new AadError(65001, { client_id: client.client_id }, { suberror: 'consent_required' });
    if (a && a.scopes) {
      for (const s of requested) {
        if (lc(s).endsWith('/.default')) continue;
        if (!a.scopes.some((g) => lc(g) === lc(s))) throw new AadError(65001, { client_id: client.client_id }, { suberror: 'consent_required' });
      }
      return a.scopes;
    }
    const out = [];
    for (const s of requested) {
      if (lc(s).endsWith('/.default')) {
        if (lc(scopeResource(s)) === lc(GRAPH_RESOURCE)) out.push(`${GRAPH_RESOURCE}/Mail.Send`);
        continue;
      }
      if (!out.some((g) => lc(g) === lc(s))) out.push(s);
    }
    return out;
  }

  function grantPassword(ctx) {
    const { app, client } = ctx;
    const username = requireParam(ctx.params, 'username');
    const password = requireParam(ctx.params, 'password');
    const scopeParam = requireParam(ctx.params, 'scope');
    if (!apps.clientInTenant(client, ctx.tenant)) throw new AadError(700016, { client_id: client.client_id, tenant: ctx.tenant });
    // Credentials first, then conditional access (MFA), then consent.
    const user = apps.checkPassword(app, { username, password, tenant: ctx.tenant });
    if (user.mfa_required) {
      // Seen in real responses: invalid_grant, suberror basic_action and a claims challenge
      // (a JSON string). ROPC cannot satisfy it; the user must use an interactive flow.
      throw new AadError(50076, { resource: '00000003-0000-0000-c000-000000000000' }, {
        suberror: 'basic_action',
        claims: JSON.stringify({ access_token: { capolids: { essential: true, values: ['00000000-0000-0000-0000-00000000a001'] } } }),
      });
    }
    const grantable = grantableScopes(client, scopeParam);
    const tenant = kit.homeTenant(client, ctx.tenant, user.tenant);
    return kit.issueDelegated(ctx, {
      tenant, clientId: client.client_id, user: user.username, grantable, scopeParam, source: 'password',
    });
  }

  return { precheck, grantPassword };
};
