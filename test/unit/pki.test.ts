/**
 * The controller PKI (src/controller/pki.ts): key strength policy, on-disk
 * layout and permissions, reuse across starts, client certificates that
 * OpenSSL verifies against the CA bundle, CSR rejection, and the EST
 * `/cacerts` bundle read back by the client (src/identity/cacerts.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { checkKeyStrength, Pki } from '../../src/controller/pki.js';
import { pemBundleFromCacerts } from '../../src/identity/cacerts.js';
import { createCsr, FileKeyStore, generatePrivateKeyPem, x509 } from '../../src/keys/index.js';
import { isEdgeError, type ErrorCode } from '../../src/errors.js';

const silent = pino({ level: 'silent' });
let dir: string;
let pki: Pki;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-pki-'));
  pki = await Pki.loadOrCreate(join(dir, 'ctrl'), ['127.0.0.1'], silent);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function openssl(args: string[], input?: Buffer): { code: number | null; out: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8', timeout: 20_000 });
  if (r.error !== undefined) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function write(name: string, data: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function assertCode(fn: () => unknown, code: ErrorCode, why?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEdgeError(err), `expected an EdgeError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (why !== undefined) assert.match(err.message, why);
    return true;
  });
}

async function assertRejectsCode(p: Promise<unknown>, code: ErrorCode, why?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isEdgeError(err), `expected an EdgeError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (why !== undefined) assert.match(err.message, why);
    return true;
  });
}

async function csrFor(alg: Parameters<typeof generatePrivateKeyPem>[0] = 'ec-p256'): Promise<{ csr: string; store: FileKeyStore }> {
  const store = FileKeyStore.fromPem(generatePrivateKeyPem(alg), 'mem');
  return { csr: await createCsr(store, 'CN=ignored, O=elsewhere'), store };
}

function splitPem(chain: string): string[] {
  return chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

describe('checkKeyStrength', () => {
  const accepted: Array<[string, () => KeyObject]> = [
    ['P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey],
    ['P-384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey],
    ['P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey],
    ['RSA-2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey],
    ['Ed25519', () => generateKeyPairSync('ed25519').publicKey],
  ];
  for (const [name, make] of accepted) {
    test(`accepts ${name}`, () => {
      assert.doesNotThrow(() => checkKeyStrength(spki(make())));
    });
  }

  const refused: Array<[string, () => KeyObject, RegExp]> = [
    ['RSA-1024', () => generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey, /RSA key of 1024 bits is too weak/],
    ['secp192r1 (prime192v1)', () => generateKeyPairSync('ec', { namedCurve: 'prime192v1' }).publicKey, /curve prime192v1 is not accepted/],
    ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey, /curve secp256k1 is not accepted/],
    ['Ed448', () => generateKeyPairSync('ed448').publicKey, /ed448 is not accepted/],
  ];
  for (const [name, make, why] of refused) {
    test(`refuses ${name} with ERR_CSR_WEAK_KEY`, () => {
      assertCode(() => checkKeyStrength(spki(make())), 'ERR_CSR_WEAK_KEY', why);
    });
  }

  test('refuses bytes that are no SPKI with ERR_CSR_WEAK_KEY', () => {
    assertCode(() => checkKeyStrength(Buffer.from('not a key')), 'ERR_CSR_WEAK_KEY');
  });
});

describe('Pki.loadOrCreate', () => {
  test('writes private keys 0600 under DIR/pki and the folder 0700', () => {
    const pkiDir = join(dir, 'ctrl', 'pki');
    const keys = readdirSync(pkiDir).filter((f) => f.endsWith('.key')).sort();
    assert.deepEqual(keys, ['intermediate.key', 'policy-signer.key', 'root.key', 'server.key']);
    for (const k of keys) assert.equal(statSync(join(pkiDir, k)).mode & 0o777, 0o600, k);
    assert.equal(statSync(pkiDir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(pkiDir).filter((f) => f.includes('.tmp-')), [], 'no temporary files left behind');
  });

  test('makes a root, a signing intermediate and a server certificate that chain', () => {
    assert.ok(pki.root.ca);
    assert.ok(pki.intermediate.ca);
    assert.equal(pki.server.ca, false);
    assert.ok(pki.intermediate.checkIssued(pki.root) && pki.intermediate.verify(pki.root.publicKey));
    assert.ok(pki.server.checkIssued(pki.intermediate) && pki.server.verify(pki.intermediate.publicKey));
    assert.ok(pki.server.checkIP('127.0.0.1'), 'the server certificate covers the advertised address');
    assert.match(pki.serverKid, /^[0-9a-f]{40}$/);
  });

  test('a second start keeps the same root, intermediate and server certificate', async () => {
    const again = await Pki.loadOrCreate(join(dir, 'ctrl'), ['127.0.0.1'], silent);
    assert.equal(again.root.fingerprint256, pki.root.fingerprint256);
    assert.equal(again.intermediate.fingerprint256, pki.intermediate.fingerprint256);
    assert.equal(again.server.fingerprint256, pki.server.fingerprint256);
    assert.equal(again.caBundlePem, pki.caBundlePem);
  });

  test('a new advertised host re-issues only the server certificate', async () => {
    const other = mkdtempSync(join(tmpdir(), 'ztedge-pki-hosts-'));
    try {
      const first = await Pki.loadOrCreate(other, ['127.0.0.1'], silent);
      const moved = await Pki.loadOrCreate(other, ['ctrl.plant.example'], silent);
      assert.equal(moved.root.fingerprint256, first.root.fingerprint256);
      assert.notEqual(moved.server.fingerprint256, first.server.fingerprint256);
      assert.ok(moved.server.checkHost('ctrl.plant.example'));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  test('a missing key file is ERR_PKI', async () => {
    const other = mkdtempSync(join(tmpdir(), 'ztedge-pki-broken-'));
    try {
      await Pki.loadOrCreate(other, ['127.0.0.1'], silent);
      rmSync(join(other, 'pki', 'root.key'));
      await assertRejectsCode(Pki.loadOrCreate(other, ['127.0.0.1'], silent), 'ERR_PKI', /missing or unreadable/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});

describe('Pki.issueClientCert', () => {
  test('issues a certificate that openssl verifies against the CA bundle', async () => {
    const { csr, store } = await csrFor();
    const issued = await pki.issueClientCert(csr, 'id-plc-7', 365);
    const [leafPem, intPem, ...rest] = splitPem(issued.chainPem);
    assert.ok(leafPem !== undefined && intPem !== undefined);
    assert.deepEqual(rest, [], 'the chain is leaf then intermediate');
    assert.equal(leafPem.trim(), issued.certPem.trim());

    const ca = write('ca.pem', pki.caBundlePem);
    const untrusted = write('int.pem', intPem);
    const leaf = write('leaf.pem', leafPem);
    const ok = openssl(['verify', '-CAfile', ca, '-untrusted', untrusted, '-purpose', 'sslclient', leaf]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /: OK/);

    const cert = new X509Certificate(leafPem);
    const name = new x509.X509Certificate(leafPem).subjectName;
    assert.deepEqual(name.getField('CN'), ['id-plc-7'], 'the CN is the identity id, whatever the CSR asked for');
    assert.doesNotMatch(cert.subject, /ignored|elsewhere/);
    assert.deepEqual(cert.publicKey.export({ type: 'spki', format: 'der' }), store.publicKeySpki());
    assert.equal(issued.fingerprint, cert.fingerprint.replace(/:/g, '').toLowerCase());
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 364 && days <= 365, `valid for ${days} days`);
  });

  test('openssl refuses the certificate against another controller\'s CA (negative control)', async () => {
    const other = mkdtempSync(join(tmpdir(), 'ztedge-pki-other-'));
    try {
      const stranger = await Pki.loadOrCreate(other, ['127.0.0.1'], silent);
      const issued = await pki.issueClientCert((await csrFor()).csr, 'id-x', 30);
      const [leafPem, intPem] = splitPem(issued.chainPem);
      const ko = openssl(['verify', '-CAfile', write('other-ca.pem', stranger.caBundlePem), '-untrusted', write('int2.pem', intPem!), write('leaf2.pem', leafPem!)]);
      assert.notEqual(ko.code, 0, ko.out);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  for (const alg of ['ec-p384', 'rsa-2048', 'ed25519'] as const) {
    test(`issues for a ${alg} CSR`, async () => {
      const issued = await pki.issueClientCert((await csrFor(alg)).csr, `id-${alg}`, 1);
      assert.match(new X509Certificate(issued.certPem).subject, new RegExp(`CN=id-${alg}`));
    });
  }

  test('escapes DN specials in the identity id', async () => {
    const issued = await pki.issueClientCert((await csrFor()).csr, 'a,b=c+d', 1);
    const name = new x509.X509Certificate(issued.certPem).subjectName;
    assert.deepEqual(name.getField('CN'), ['a,b=c+d'], 'the whole id is one CN value, not extra RDNs');
    assert.deepEqual(name.getField('O'), ['ztedge']);
  });

  test('refuses a body that is not a PEM CSR', async () => {
    await assertRejectsCode(pki.issueClientCert('hello', 'id', 1), 'ERR_CSR_INVALID', /not a PEM certificate signing request/);
    await assertRejectsCode(pki.issueClientCert(pki.caBundlePem, 'id', 1), 'ERR_CSR_INVALID');
    await assertRejectsCode(pki.issueClientCert('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 'id', 1), 'ERR_CSR_INVALID', /cannot be parsed/);
  });

  test('accepts the legacy NEW CERTIFICATE REQUEST label', async () => {
    const { csr } = await csrFor();
    const legacy = csr.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST');
    const issued = await pki.issueClientCert(legacy, 'id-legacy', 1);
    assert.match(new X509Certificate(issued.certPem).subject, /CN=id-legacy/);
  });

  test('refuses a CSR whose signature is corrupted', async () => {
    const { csr } = await csrFor();
    const der = Buffer.from(csr.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    der[der.length - 1] = der[der.length - 1]! ^ 0x01;
    const bad = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assertRejectsCode(pki.issueClientCert(bad, 'id', 1), 'ERR_CSR_INVALID', /signature/);
  });

  test('refuses a weak-key CSR made by openssl with ERR_CSR_WEAK_KEY', async () => {
    const key = write('rsa1024.key', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const r = openssl(['req', '-new', '-key', key, '-subj', '/CN=weak', '-sha256']);
    assert.equal(r.code, 0, r.out);
    const csr = /-----BEGIN CERTIFICATE REQUEST-----[\s\S]+?-----END CERTIFICATE REQUEST-----/.exec(r.out)![0];
    await assertRejectsCode(pki.issueClientCert(csr, 'id', 1), 'ERR_CSR_WEAK_KEY', /1024 bits/);
  });
});

describe('EST cacerts bundle', () => {
  test('cacertsBase64 is a PKCS#7 that openssl lists with 2 certificates', () => {
    const der = Buffer.from(pki.cacertsBase64.replace(/\s+/g, ''), 'base64');
    const r = openssl(['pkcs7', '-inform', 'DER', '-print_certs'], der);
    assert.equal(r.code, 0, r.out);
    const certs = splitPem(r.out);
    assert.equal(certs.length, 2, r.out);
    const fps = certs.map((p) => new X509Certificate(p).fingerprint256).sort();
    assert.deepEqual(fps, [pki.root.fingerprint256, pki.intermediate.fingerprint256].sort());
  });

  test('cacertsBase64 is wrapped at 64 columns', () => {
    for (const line of pki.cacertsBase64.split('\n')) assert.ok(line.length <= 64, line);
  });

  test('pemBundleFromCacerts round-trips to the CA bundle', () => {
    const pem = pemBundleFromCacerts(pki.cacertsBase64);
    const got = splitPem(pem).map((p) => new X509Certificate(p).fingerprint256).sort();
    const want = splitPem(pki.caBundlePem).map((p) => new X509Certificate(p).fingerprint256).sort();
    assert.equal(got.length, 2);
    assert.deepEqual(got, want);
    // Also without the line breaks an EST server may or may not send.
    assert.equal(pemBundleFromCacerts(pki.cacertsBase64.replace(/\n/g, '')), pem);
  });

  test('pemBundleFromCacerts refuses garbage with ERR_TRUST_BOOTSTRAP', () => {
    for (const junk of ['not base64 at all!!', Buffer.from('hello world, this is no PKCS#7').toString('base64'), pki.caBundlePem, '']) {
      assertCode(() => pemBundleFromCacerts(junk), 'ERR_TRUST_BOOTSTRAP');
    }
  });
});
