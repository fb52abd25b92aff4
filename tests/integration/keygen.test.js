'use strict';
// credbroker account keygen and the JWT client assertion, checked by verifiers that share no code
// with credbroker: Node's crypto (OpenSSL) and, where installed, the openssl and certtool tools.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { setup, run, CLIENT_ID } = require('./harness');

const BUILD_ROOT = process.env.CREDBROKER_BUILD_ROOT || path.resolve(__dirname, '..', '..', 'build');
const SIGN_ASSERTION = process.env.SIGN_ASSERTION || path.join(BUILD_ROOT, 'tests', 'unit', 'sign-assertion');
const AUDIENCE = 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token';

let h;
before(async () => {
  h = await setup({ startBroker: false, importAccount: false });
});
after(() => h && h.teardown());

const pemBlock = (text, label) => {
  const m = text.match(new RegExp(`-----BEGIN ${label}-----\\n[A-Za-z0-9+/=\\n]+-----END ${label}-----\\n`));
  return m && m[0];
};
const thumbprint = (text, what) => {
  const m = text.match(new RegExp(`${what}[^:]*: ([0-9A-F]+)\\n`));
  return m && m[1];
};
const base64url = (buf) => buf.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const tool = (name) => fs.existsSync(`/usr/bin/${name}`);

async function keygen(name, args = []) {
  const r = await h.cli(['account', 'keygen', name, '--config', h.conf, ...args]);
  assert.equal(r.code, 0, `keygen ${name}: exit ${r.code}\n${r.stderr}`);
  const pem = pemBlock(r.stdout, 'CERTIFICATE');
  assert.ok(pem, `no certificate PEM in:\n${r.stdout}`);
  return { out: r.stdout, pem, cert: new crypto.X509Certificate(pem) };
}

test('keygen prints a self-signed certificate that independent verifiers accept', { timeout: 60000 }, async () => {
  const { out, pem, cert } = await keygen('app1', ['--days', '30', '--subject', 'CN=alerts app,O=Contoso']);
  assert.ok(cert.verify(cert.publicKey), 'the self-signature verifies with its own public key');
  assert.equal(cert.subject, 'O=Contoso\nCN=alerts app');
  assert.equal(cert.issuer, cert.subject);
  assert.equal(cert.publicKey.asymmetricKeyDetails.modulusLength, 2048);
  assert.equal(cert.ca, false);
  const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86400000;
  assert.equal(days, 30);
  assert.equal(thumbprint(out, 'Thumbprint \\(SHA-1'), cert.fingerprint.replace(/:/g, ''),
    'the SHA-1 thumbprint is the one the Entra portal shows');
  assert.equal(thumbprint(out, 'SHA-256 thumbprint'), cert.fingerprint256.replace(/:/g, ''));

  const file = h.p('app1.pem');
  fs.writeFileSync(file, pem);
  if (tool('openssl')) {
    const v = await run('openssl', ['verify', '-CAfile', file, file]);
    assert.equal(v.code, 0, `openssl verify: ${v.stdout}${v.stderr}`);
    assert.match(v.stdout, /: OK/);
  }
  if (tool('certtool')) {
    const info = await run('certtool', ['--certificate-info', '--infile', file]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /Signature Algorithm: RSA-SHA256/);
    assert.match(info.stdout, new RegExp(cert.fingerprint256.replace(/:/g, '').toLowerCase()));
  }

  const show = await h.cli(['account', 'show', 'app1', '--json', '--config', h.conf]);
  assert.equal(show.code, 0, show.stderr);
  const j = JSON.parse(show.stdout);
  assert.equal(j.certificate.sha1_thumbprint, cert.fingerprint.replace(/:/g, ''));
  assert.equal(j.certificate.sha256_thumbprint, cert.fingerprint256.replace(/:/g, ''));
  assert.equal(j.certificate.subject, 'CN=alerts app,O=Contoso');
  assert.equal(j.certificate.bits, 2048);
  assert.equal(j.metadata, false, 'an app-only account needs no metadata');
});

test('keygen --csr prints a PKCS#10 request that verifies', { timeout: 60000 }, async () => {
  const r = await h.cli(['account', 'keygen', 'app2', '--csr', '--bits', '3072', '--config', h.conf]);
  assert.equal(r.code, 0, r.stderr);
  const csr = pemBlock(r.stdout, 'NEW CERTIFICATE REQUEST');
  assert.ok(csr, r.stdout);
  const file = h.p('app2.csr');
  fs.writeFileSync(file, csr);
  const cert = new crypto.X509Certificate(pemBlock(r.stdout, 'CERTIFICATE'));
  if (tool('openssl')) {
    const v = await run('openssl', ['req', '-in', file, '-verify', '-noout', '-pubkey']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout + v.stderr, /verify OK/i);
    const pub = v.stdout.match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/)[0];
    assert.ok(crypto.createPublicKey(pub).equals(cert.publicKey), 'the CSR is for the key of the certificate');
  }
  if (tool('certtool')) {
    const v = await run('certtool', ['--crq-info', '--infile', file]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout + v.stderr, /Self signature: verified/);
  }
  assert.equal(cert.publicKey.asymmetricKeyDetails.modulusLength, 3072);

  // A CA (certtool) signs the request; account cert stores the result for the key.
  if (!tool('certtool')) return;
  fs.writeFileSync(h.p('ca.tmpl'), 'cn = "Test CA"\nca\ncert_signing_key\nexpiration_days = 30\n');
  fs.writeFileSync(h.p('leaf.tmpl'), 'cn = "app2 issued"\nsigning_key\ntls_www_client\nexpiration_days = 30\n');
  for (const args of [
    ['--generate-privkey', '--outfile', h.p('ca-key.pem')],
    ['--generate-self-signed', '--load-privkey', h.p('ca-key.pem'), '--template', h.p('ca.tmpl'), '--outfile', h.p('ca.pem')],
    ['--generate-certificate', '--load-request', file, '--load-ca-certificate', h.p('ca.pem'),
      '--load-ca-privkey', h.p('ca-key.pem'), '--template', h.p('leaf.tmpl'), '--outfile', h.p('leaf.pem')],
  ]) {
    const c = await run('certtool', args);
    assert.equal(c.code, 0, `certtool ${args[0]}: ${c.stderr}`);
  }
  const leaf = new crypto.X509Certificate(fs.readFileSync(h.p('leaf.pem')));
  const wrong = await h.cli(['account', 'cert', 'app2', '--file', h.p('ca.pem'), '--config', h.conf]);
  assert.equal(wrong.code, 65, 'a certificate for another key is refused');
  assert.match(wrong.stderr, /not for a key of account app2/);
  const stored = await h.cli(['account', 'cert', 'app2', '--file', h.p('leaf.pem'), '--config', h.conf]);
  assert.equal(stored.code, 0, stored.stderr);
  assert.equal(thumbprint(stored.stdout, 'Thumbprint \\(SHA-1'), leaf.fingerprint.replace(/:/g, ''));
  const show = JSON.parse((await h.cli(['account', 'show', 'app2', '--json', '--config', h.conf])).stdout);
  assert.equal(show.certificate.sha256_thumbprint, leaf.fingerprint256.replace(/:/g, ''));
  assert.equal(show.certificate.issuer, 'CN=Test CA');
  const jwt = decodeJwt(await assertion('app2', 'PS256'));
  assert.equal(jwt.header['x5t#S256'], base64url(crypto.createHash('sha256').update(leaf.raw).digest()),
    'assertions now name the CA-issued certificate');
  assert.ok(crypto.verify('sha256', jwt.input, {
    key: leaf.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
  }, jwt.signature));
});

test('keygen refuses an existing key without --replace; --replace makes a new one', { timeout: 60000 }, async () => {
  const before1 = await keygen('app3');
  const again = await h.cli(['account', 'keygen', 'app3', '--config', h.conf]);
  assert.equal(again.code, 65, again.stderr);
  assert.match(again.stderr, /already has an assertion key; add --replace/);
  assert.equal(again.stdout, '');
  const replaced = await keygen('app3', ['--replace']);
  assert.notEqual(replaced.cert.fingerprint256, before1.cert.fingerprint256);
  const show = JSON.parse((await h.cli(['account', 'show', 'app3', '--json', '--config', h.conf])).stdout);
  assert.equal(show.certificate.sha256_thumbprint, replaced.cert.fingerprint256.replace(/:/g, ''));

  for (const args of [['--bits', '1024'], ['--bits', 'x'], ['--days', '0'], ['--days', '3651'], ['--subject', 'no dn here']]) {
    const r = await h.cli(['account', 'keygen', 'app3', '--replace', '--config', h.conf, ...args]);
    assert.equal(r.code, 64, `keygen ${args.join(' ')}: ${r.code} ${r.stderr}`);
  }
  const after1 = JSON.parse((await h.cli(['account', 'show', 'app3', '--json', '--config', h.conf])).stdout);
  assert.equal(after1.certificate.sha256_thumbprint, show.certificate.sha256_thumbprint,
    'refused replacements keep the old key and certificate');
});

function decodeJwt(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3);
  for (const p of parts) assert.match(p, /^[A-Za-z0-9_-]+$/, 'base64url without padding');
  return {
    header: JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')),
    claims: JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')),
    input: Buffer.from(`${parts[0]}.${parts[1]}`),
    signature: Buffer.from(parts[2], 'base64url'),
  };
}

async function assertion(account, alg, extra = []) {
  const r = await run(SIGN_ASSERTION, [h.conf, account, AUDIENCE, CLIENT_ID, alg, ...extra], { env: h.env() });
  assert.equal(r.code, 0, `sign-assertion: ${r.code} ${r.stderr}`);
  return r.stdout.trim();
}

test('client assertions, PS256 and RS256, verify with the certificate and carry the reference claims', { timeout: 60000 }, async () => {
  const { cert } = await keygen('app4');
  const der = cert.raw;
  const now = Math.floor(Date.now() / 1000);

  const ps = decodeJwt(await assertion('app4', 'PS256'));
  assert.deepEqual(ps.header, {
    alg: 'PS256', typ: 'JWT', 'x5t#S256': base64url(crypto.createHash('sha256').update(der).digest()),
  });
  assert.ok(crypto.verify('sha256', ps.input, {
    key: cert.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
  }, ps.signature), 'PS256 signature verifies (PSS, MGF1-SHA256, salt 32)');
  assert.ok(!crypto.verify('sha256', ps.input, {
    key: cert.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 20,
  }, ps.signature), 'and only with a 32-byte salt');

  const rs = decodeJwt(await assertion('app4', 'RS256'));
  assert.deepEqual(rs.header, {
    alg: 'RS256', typ: 'JWT', x5t: base64url(crypto.createHash('sha1').update(der).digest()),
  });
  assert.ok(crypto.verify('sha256', rs.input, { key: cert.publicKey, padding: crypto.constants.RSA_PKCS1_PADDING },
    rs.signature), 'RS256 signature verifies (PKCS#1 v1.5)');

  for (const { claims } of [ps, rs]) {
    assert.deepEqual(Object.keys(claims).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'sub']);
    assert.equal(claims.aud, AUDIENCE);
    assert.equal(claims.iss, CLIENT_ID);
    assert.equal(claims.sub, CLIENT_ID);
    for (const k of ['nbf', 'iat', 'exp']) assert.ok(Number.isInteger(claims[k]), `${k} is an integer`);
    assert.equal(claims.iat, claims.nbf);
    assert.equal(claims.exp - claims.nbf, 600);
    assert.ok(Math.abs(claims.nbf - now) < 30, 'nbf is now');
    assert.match(claims.jti, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }
  assert.notEqual(ps.claims.jti, rs.claims.jti, 'jti is new for each assertion');
  const again = decodeJwt(await assertion('app4', 'PS256'));
  assert.notEqual(again.claims.jti, ps.claims.jti);

  const fixed = decodeJwt(await assertion('app4', 'PS256', ['1795856400']));
  assert.equal(fixed.claims.nbf, 1795856400);
  assert.equal(fixed.claims.exp, 1795857000);

  const none = await run(SIGN_ASSERTION, [h.conf, 'nokey', AUDIENCE, CLIENT_ID, 'PS256'], { env: h.env() });
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no assertion key and certificate; create them with: credbroker account keygen nokey/);
});

test('the private key never leaves the token', { timeout: 60000 }, async () => {
  await keygen('app5');
  const r = await run('pkcs11-tool', ['--module', process.env.SOFTHSM_MODULE || '/usr/lib/softhsm/libsofthsm2.so',
    '--token-label', 'credbroker', '--login', '--pin', h.pin, '--list-objects', '--type', 'privkey'], { env: h.env() });
  assert.equal(r.code, 0, r.stderr);
  const block = r.stdout.split(/\n(?=Private Key Object)/).find((b) => b.includes('app5/assertion-key'));
  assert.ok(block, r.stdout);
  const access = block.match(/Access:\s+(.*)/)[1].split(/,\s*/);
  for (const flag of ['sensitive', 'always sensitive', 'never extractable']) assert.ok(access.includes(flag), `${flag}: ${access}`);
  assert.ok(!access.includes('extractable'), `not extractable: ${access}`);
  // Reading CKA_PRIVATE_EXPONENT failing with CKR_ATTRIBUTE_SENSITIVE is in test-store-key.c.
});

test('while the broker runs, keygen, cert and secret go through its admin socket', { timeout: 120000 }, async () => {
  const SECRET_CANARY = `CS-CANARY-${crypto.randomBytes(12).toString('hex')}`;
  const VIA_BROKER = /asking the running broker/;
  await h.startBroker();
  try {
    const r = await h.cli(['account', 'keygen', 'app-rt', '-v', '--csr', '--days', '40',
      '--subject', 'CN=via broker', '--config', h.conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, VIA_BROKER);
    const pem = pemBlock(r.stdout, 'CERTIFICATE');
    const cert = new crypto.X509Certificate(pem);
    assert.ok(cert.verify(cert.publicKey));
    assert.equal(cert.subject, 'CN=via broker');
    assert.equal((Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86400000, 40);
    assert.match(r.stdout, /^Generated a 2048-bit RSA key inside the token for account app-rt \(not extractable\)\.\n/);
    assert.equal(thumbprint(r.stdout, 'Thumbprint \\(SHA-1'), cert.fingerprint.replace(/:/g, ''));
    assert.equal(thumbprint(r.stdout, 'SHA-256 thumbprint'), cert.fingerprint256.replace(/:/g, ''));
    const csr = pemBlock(r.stdout, 'NEW CERTIFICATE REQUEST');
    assert.ok(csr, r.stdout);

    const again = await h.cli(['account', 'keygen', 'app-rt', '-v', '--config', h.conf]);
    assert.equal(again.code, 65, again.stderr);
    assert.match(again.stderr, /already has an assertion key; add --replace/);
    assert.equal(again.stdout, '');

    // account cert: the self-signed certificate again, as DER (sent as PEM) and as PEM.
    fs.writeFileSync(h.p('app-rt.der'), cert.raw);
    fs.writeFileSync(h.p('app-rt.pem'), pem);
    for (const file of ['app-rt.der', 'app-rt.pem']) {
      const c = await h.cli(['account', 'cert', 'app-rt', '-v', '--file', h.p(file), '--config', h.conf]);
      assert.equal(c.code, 0, c.stderr);
      assert.match(c.stderr, VIA_BROKER);
      assert.match(c.stdout, /^Stored the certificate for the key of account app-rt:\n/);
      assert.equal(thumbprint(c.stdout, 'Thumbprint \\(SHA-1'), cert.fingerprint.replace(/:/g, ''));
    }
    fs.writeFileSync(h.p('junk.pem'), 'not a certificate\n');
    const junk = await h.cli(['account', 'cert', 'app-rt', '--file', h.p('junk.pem'), '--config', h.conf]);
    assert.equal(junk.code, 65, junk.stderr);
    assert.match(junk.stderr, /is not a PEM or DER X\.509 certificate/);

    const s = await h.cli(['account', 'secret', 'app-rt', '-v', '--secret-stdin', '--config', h.conf],
      { input: `${SECRET_CANARY}\n` });
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stderr, VIA_BROKER);
    assert.equal(s.stdout, 'Stored the client secret of account app-rt.\n');
    const bad = await h.cli(['account', 'secret', 'app-rt', '--secret-stdin', '--config', h.conf],
      { input: 'has space\n' });
    assert.equal(bad.code, 65, bad.stderr);
    assert.match(bad.stderr, /printable ASCII/);

    const show = await h.cli(['account', 'show', 'app-rt', '--json', '--config', h.conf]);
    assert.equal(show.code, 0, show.stderr);
    const j = JSON.parse(show.stdout);
    assert.equal(j.client_secret, true);
    assert.equal(j.certificate.sha256_thumbprint, cert.fingerprint256.replace(/:/g, ''));

    for (const out of [r, again, s, bad, show]) {
      assert.ok(!out.stdout.includes(SECRET_CANARY) && !out.stderr.includes(SECRET_CANARY));
    }
    const audit = fs.readFileSync(h.p('audit.log'), 'utf8');
    for (const event of ['account_key_generated', 'account_certificate_stored', 'account_secret_stored']) {
      assert.match(audit, new RegExp(`"event":"${event}"[^\\n]*"account":"app-rt"|"account":"app-rt"[^\\n]*"event":"${event}"`), event);
    }
    assert.ok(!audit.includes(SECRET_CANARY), 'the audit log holds no secret');
    assert.ok(!h.brokerLog().includes(SECRET_CANARY), 'the broker log holds no secret');
  } finally {
    await h.stopBroker();
  }
  // Without a broker the same commands open the token themselves.
  const direct = await h.cli(['account', 'cert', 'app-rt', '-v', '--file', h.p('app-rt.pem'), '--config', h.conf]);
  assert.equal(direct.code, 0, direct.stderr);
  assert.match(direct.stderr, /no broker listens on .*; opening the token directly/);
  assert.equal(thumbprint(direct.stdout, 'Thumbprint \\(SHA-1'),
    new crypto.X509Certificate(fs.readFileSync(h.p('app-rt.pem'))).fingerprint.replace(/:/g, ''));
});
