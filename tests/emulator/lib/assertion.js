// JWT client assertions (RFC 7523 "private_key_jwt", Microsoft's "certificate credential"):
// parse, find the registered certificate, verify the RSA signature with node:crypto and check
// the claims. Protocol-neutral: failures are reported as { reason, ... } and each caller maps
// them to its own error format (AADSTS codes for Microsoft, RFC 6749 codes for the generic mode).
//
// Decisions worth knowing (README.md "Client assertions"):
//   * alg: PS256 or RS256 only, as MSAL sends (Microsoft's certificate-credentials page).
//   * PS256 is verified with the salt length RFC 7518 §3.5 prescribes: the hash size, 32 bytes.
//     A signer that uses OpenSSL's default PSS salt (maximum length) is rejected, because
//     Entra's .NET verifier would reject it too. Config "assertion_pss_salt": "auto" relaxes it.
//   * Thumbprints (x5t = SHA-1, x5t#S256 = SHA-256 of the DER certificate) are accepted in
//     either base64 alphabet, padded or not, as Entra does (MSAL Python and Go differ).
//   * jti values are remembered until their exp (plus skew), so a replay is refused.

'use strict';

const crypto = require('crypto');

const B64_ANY_RE = /^[A-Za-z0-9+/_-]+={0,2}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;

// Decode base64 in either alphabet, padded or not. Returns a Buffer or null.
function decodeAnyBase64(s) {
  if (typeof s !== 'string' || !B64_ANY_RE.test(s)) return null;
  const std = s.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
  if (std.length % 4 === 1) return null;
  return Buffer.from(std, 'base64');
}

// One registered certificate: PEM in, fingerprints and public key out. Throws on bad input.
function describeCertificate(pem) {
  const cert = new crypto.X509Certificate(pem);
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'rsa') throw new Error('certificate must have an RSA key (PS256/RS256)');
  const der = cert.raw;
  return {
    pem: cert.toString(),
    sha1: crypto.createHash('sha1').update(der).digest(),
    sha256: crypto.createHash('sha256').update(der).digest(),
    subject: cert.subject,
    not_before: new Date(cert.validFrom).toISOString(),
    not_after: new Date(cert.validTo).toISOString(),
  };
}

// Remembers jti values until they can no longer be valid. Bounded: past `max`
// entries the oldest are forgotten (a test fixture, not a production cache).
class JtiCache {
  constructor(max = 100000) {
    this.seen = new Map(); // key -> forget-after (ms)
    this.max = max;
  }

  // True if new (and now remembered), false if seen before.
  remember(key, untilMs, now = Date.now()) {
    for (const [k, t] of this.seen) {
      if (t > now && this.seen.size < this.max) break;
      this.seen.delete(k);
    }
    if (this.seen.has(key)) return false;
    this.seen.set(key, untilMs);
    return true;
  }
}

function parseJsonPart(part) {
  if (!B64URL_RE.test(part)) return null;
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch (_) {
    return null;
  }
}

const fail = (reason, extra = {}) => ({ ok: false, reason, ...extra });

// Verify a client assertion. opts:
//   assertion     the compact JWT
//   clientId      the client_id the request names
//   audiences     accepted "aud" values (exact string match)
//   certificates  [{ pem, sha1, sha256, notBefore?, notAfter? (ms) }] registered for the client
//   requireThumbprint  Microsoft: x5t#S256 or x5t is mandatory; generic mode may try every key
//   pssSalt       'digest' (32 bytes, default) or 'auto'
//   skewSeconds   allowed clock skew (default 300)
//   maxLifetimeSeconds  exp - (nbf or iat) must not exceed this (default 3600)
//   jtiCache      a JtiCache
//   refusePs256   refuse PS256 assertions as a bad signature (700027), like a server that
//                 verifies RS256 only
//   onHeader      called with the parsed header of every well-formed assertion (counters)
// Returns { ok: true, jti, exp } or { ok: false, reason, ... } with reason one of:
//   malformed, bad_typ, bad_alg(alg), no_thumbprint, key_not_found(thumbprint hex),
//   key_expired(thumbprint, start, end: the certificate is outside its validity period),
//   bad_signature, missing_claim(claim), sub_mismatch, client_mismatch, bad_audience,
//   time_range(nbf, exp, now), too_long, replay
function verifyClientAssertion(opts) {
  const now = opts.now === undefined ? Date.now() : opts.now;
  const skew = (opts.skewSeconds === undefined ? 300 : opts.skewSeconds) * 1000;
  const maxLifetime = opts.maxLifetimeSeconds === undefined ? 3600 : opts.maxLifetimeSeconds;
  const parts = String(opts.assertion).split('.');
  if (parts.length !== 3 || !B64URL_RE.test(parts[2])) return fail('malformed');
  const header = parseJsonPart(parts[0]);
  const claims = parseJsonPart(parts[1]);
  if (!header || !claims) return fail('malformed');
  if (opts.onHeader) opts.onHeader(header);

  if (header.typ !== undefined && !['jwt', 'http://openid.net/specs/jwt/1.0'].includes(String(header.typ).toLowerCase())) {
    return fail('bad_typ');
  }
  if (header.alg !== 'PS256' && header.alg !== 'RS256') return fail('bad_alg', { alg: String(header.alg).slice(0, 20) });

  // Find the key. x5t#S256 takes precedence over x5t when both are present.
  let candidates = opts.certificates;
  let thumbprintHex = null;
  const tS256 = header['x5t#S256'];
  const tSha1 = header.x5t;
  if (tS256 !== undefined || tSha1 !== undefined) {
    const useS256 = tS256 !== undefined;
    const raw = decodeAnyBase64(useS256 ? tS256 : tSha1);
    thumbprintHex = raw ? raw.toString('hex').toUpperCase() : String(useS256 ? tS256 : tSha1).slice(0, 80);
    candidates = raw ? opts.certificates.filter((c) => (useS256 ? c.sha256 : c.sha1).equals(raw)) : [];
    if (!candidates.length) return fail('key_not_found', { thumbprint: thumbprintHex });
  } else if (opts.requireThumbprint) {
    return fail('no_thumbprint');
  }
  if (!candidates.length) return fail('key_not_found', { thumbprint: null });
  // Entra keeps a key credential's validity period (by default the certificate's) and
  // refuses assertions signed with a key outside it.
  const current = candidates.filter((c) => c.notBefore === undefined || (now >= c.notBefore && now <= c.notAfter));
  if (!current.length) {
    return fail('key_expired', { thumbprint: thumbprintHex, start: candidates[0].notBefore, end: candidates[0].notAfter });
  }
  candidates = current;
  if (opts.refusePs256 && header.alg === 'PS256') return fail('bad_signature', { thumbprint: thumbprintHex });

  const data = Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii');
  const signature = Buffer.from(parts[2], 'base64url');
  const verified = candidates.some((c) => {
    const key = crypto.createPublicKey(c.pem);
    const keyOpts = header.alg === 'PS256'
      ? {
        key,
        padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
        saltLength: opts.pssSalt === 'auto' ? crypto.constants.RSA_PSS_SALTLEN_AUTO : crypto.constants.RSA_PSS_SALTLEN_DIGEST,
      }
      : { key, padding: crypto.constants.RSA_PKCS1_PADDING };
    try {
      return crypto.verify('sha256', data, keyOpts, signature);
    } catch (_) {
      return false;
    }
  });
  if (!verified) return fail('bad_signature', { thumbprint: thumbprintHex });

  for (const c of ['aud', 'iss', 'sub', 'exp', 'jti']) {
    if (claims[c] === undefined || claims[c] === null || claims[c] === '') return fail('missing_claim', { claim: c });
  }
  if (typeof claims.iss !== 'string' || typeof claims.sub !== 'string' || claims.iss !== claims.sub) return fail('sub_mismatch');
  if (claims.iss.toLowerCase() !== String(opts.clientId).toLowerCase()) return fail('client_mismatch');
  if (typeof claims.aud !== 'string' || !opts.audiences.includes(claims.aud)) return fail('bad_audience', { aud: String(claims.aud).slice(0, 300) });

  for (const c of ['exp', 'nbf', 'iat']) {
    if (claims[c] !== undefined && (typeof claims[c] !== 'number' || !Number.isFinite(claims[c]))) return fail('malformed');
  }
  const expMs = claims.exp * 1000;
  const startMs = (claims.nbf !== undefined ? claims.nbf : claims.iat !== undefined ? claims.iat : 0) * 1000;
  if (now > expMs + skew || now < startMs - skew) return fail('time_range', { nbf: startMs, exp: expMs, now });
  if (claims.nbf === undefined && claims.iat === undefined) return fail('time_range', { nbf: 0, exp: expMs, now });
  if (expMs - startMs > maxLifetime * 1000 || expMs <= startMs) return fail('too_long', { nbf: startMs, exp: expMs, now });
  if (typeof claims.jti !== 'string' || claims.jti.length > 512) return fail('malformed');

  // Remember the jti last, so a broken assertion never burns one.
  if (!opts.jtiCache.remember(`${claims.iss.toLowerCase()}\n${claims.jti}`, expMs + skew, now)) return fail('replay');
  return { ok: true, jti: claims.jti, exp: expMs };
}

module.exports = { verifyClientAssertion, describeCertificate, decodeAnyBase64, JtiCache };
