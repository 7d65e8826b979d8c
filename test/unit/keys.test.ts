/**
 * File KeyStore and CSRs (src/keys): key files are created 0600 and never
 * overwritten, an existing key is reused, and CSRs signed through the
 * KeyStore shim are accepted by OpenSSL for every supported algorithm.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createCsr, FileKeyStore, fileRef, generatePrivateKeyPem, type KeyAlgorithm } from '../../src/keys/index.js';
import { isEdgeError } from '../../src/errors.js';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-keys-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function openssl(args: string[]): { code: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', timeout: 20_000 });
  if (r.error !== undefined) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

async function assertKeyError(p: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isEdgeError(err), `expected an EdgeError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_KEY');
    assert.match(err.message, why);
    return true;
  });
}

/** The CSR with one byte of its signature (the last DER byte) flipped. */
function corruptSignature(csrPem: string): string {
  const b64 = csrPem.replace(/-----(BEGIN|END) CERTIFICATE REQUEST-----/g, '').replace(/\s+/g, '');
  const der = Buffer.from(b64, 'base64');
  der[der.length - 1] = der[der.length - 1]! ^ 0x01;
  const lines = der.toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines}\n-----END CERTIFICATE REQUEST-----\n`;
}

describe('FileKeyStore.openOrCreate', () => {
  test('creates a mode 0600 PKCS#8 key file', async () => {
    const path = join(dir, 'new.key.pem');
    const { store, created } = await FileKeyStore.openOrCreate(path);
    assert.equal(created, true);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.match(readFileSync(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(store.algorithm, 'ec-p256', 'P-256 is the default');
    assert.equal(store.ref, pathToFileURL(path).href);
    assert.equal(store.ref, fileRef(path));
  });

  test('a second call reuses the same key and does not rewrite the file', async () => {
    const path = join(dir, 'reuse.key.pem');
    const first = await FileKeyStore.openOrCreate(path, 'ec-p384');
    const bytes = readFileSync(path);
    const mtimeMs = statSync(path).mtimeMs;
    // Even when asked for another algorithm: the existing key wins.
    const second = await FileKeyStore.openOrCreate(path, 'ed25519');
    assert.equal(second.created, false);
    assert.equal(second.store.algorithm, 'ec-p384');
    assert.deepEqual(second.store.publicKeySpki(), first.store.publicKeySpki());
    assert.deepEqual(readFileSync(path), bytes);
    assert.equal(statSync(path).mtimeMs, mtimeMs);
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('two keys made in two places differ', async () => {
    const a = await FileKeyStore.openOrCreate(join(dir, 'a.key.pem'));
    const b = await FileKeyStore.openOrCreate(join(dir, 'b.key.pem'));
    assert.notDeepEqual(a.store.publicKeySpki(), b.store.publicKeySpki());
  });

  test('an existing file that is not a key is refused, not overwritten', async () => {
    const path = join(dir, 'notes.txt');
    writeFileSync(path, 'not a key\n');
    await assertKeyError(FileKeyStore.openOrCreate(path), /not a PEM private key/);
    assert.equal(readFileSync(path, 'utf8'), 'not a key\n');
  });

  test('an unwritable location is ERR_KEY', async () => {
    await assertKeyError(FileKeyStore.openOrCreate(join(dir, 'no-such-dir', 'x.key.pem')), /cannot write key file/);
  });

  test('publicKeySpki returns a copy', async () => {
    const { store } = await FileKeyStore.openOrCreate(join(dir, 'copy.key.pem'));
    const spki = store.publicKeySpki();
    spki.fill(0);
    assert.notDeepEqual(store.publicKeySpki(), spki);
  });
});

describe('FileKeyStore.open', () => {
  test('opens an existing key', async () => {
    const path = join(dir, 'open.key.pem');
    const made = await FileKeyStore.openOrCreate(path, 'rsa-2048');
    const opened = await FileKeyStore.open(path);
    assert.equal(opened.algorithm, 'rsa-2048');
    assert.deepEqual(opened.publicKeySpki(), made.store.publicKeySpki());
  });

  test('a non-key file is ERR_KEY', async () => {
    const path = join(dir, 'cert-not-key.pem');
    writeFileSync(path, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    await assertKeyError(FileKeyStore.open(path), /not a PEM private key/);
  });

  test('a missing file is ERR_KEY', async () => {
    await assertKeyError(FileKeyStore.open(join(dir, 'missing.key.pem')), /key file not found/);
  });

  test('a directory is ERR_KEY', async () => {
    await assertKeyError(FileKeyStore.open(dir), /cannot read key file/);
  });

  test('an unsupported key type is ERR_KEY', () => {
    // secp256k1 is a valid EC key, but not one an identity may have.
    const pem = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.throws(() => FileKeyStore.fromPem(pem, 'mem'), { code: 'ERR_KEY', message: /unsupported key type/ });
  });
});

const ALGORITHMS: KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'ed25519'];

describe('createCsr and sign', () => {
  for (const alg of ALGORITHMS) {
    test(`${alg}: openssl accepts the CSR and refuses it with one signature byte flipped`, async () => {
      const store = FileKeyStore.fromPem(generatePrivateKeyPem(alg), 'mem');
      assert.equal(store.algorithm, alg);
      const csr = await createCsr(store, 'CN=plc-7, O=ztedge');
      assert.match(csr, /^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+\n-----END CERTIFICATE REQUEST-----\n?$/);

      const good = join(dir, `${alg}.csr.pem`);
      writeFileSync(good, csr);
      const ok = openssl(['req', '-in', good, '-verify', '-noout']);
      assert.equal(ok.code, 0, `openssl refused the ${alg} CSR: ${ok.out}`);
      // OpenSSL before 3.2 exits 0 even when the self-signature fails, so the verdict line is checked too.
      assert.match(ok.out, /verify OK/i);
      assert.doesNotMatch(ok.out, /fail/i);

      const bad = join(dir, `${alg}.bad.csr.pem`);
      writeFileSync(bad, corruptSignature(csr));
      const ko = openssl(['req', '-in', bad, '-verify', '-noout']);
      const refused = ko.code !== 0 || /verify failure|unable to|error/i.test(ko.out);
      assert.ok(refused, `openssl accepted a ${alg} CSR with a corrupted signature: ${ko.out}`);
      assert.doesNotMatch(ko.out, /verify OK/i);

      // The CSR names the subject and the KeyStore's public key.
      const text = openssl(['req', '-in', good, '-noout', '-subject', '-pubkey']);
      assert.equal(text.code, 0, text.out);
      assert.match(text.out, /CN\s*=\s*plc-7/);
      const pub = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(text.out)?.[0];
      assert.ok(pub !== undefined, text.out);
      assert.deepEqual(createPublicKey(pub).export({ type: 'spki', format: 'der' }), store.publicKeySpki());
    });

    test(`${alg}: sign() output verifies with node crypto`, async () => {
      const store = FileKeyStore.fromPem(generatePrivateKeyPem(alg), 'mem');
      const pub = createPublicKey({ key: store.publicKeySpki(), format: 'der', type: 'spki' });
      const data = randomBytes(200);
      const sig = await store.sign(data);
      const hash = alg === 'ed25519' ? null : 'sha256';
      const isEc = alg.startsWith('ec-');
      const opts = isEc ? { key: pub, dsaEncoding: 'ieee-p1363' as const } : pub;
      if (isEc) assert.equal(sig.length, alg === 'ec-p256' ? 64 : 96, 'ECDSA signatures are r‖s (IEEE P1363)');
      if (alg === 'ed25519') assert.equal(sig.length, 64);
      if (alg === 'rsa-2048') assert.equal(sig.length, 256);
      assert.equal(cryptoVerify(hash, data, opts, sig), true);
      const tampered = Buffer.from(data);
      tampered[0] = tampered[0]! ^ 0xff;
      assert.equal(cryptoVerify(hash, tampered, opts, sig), false, 'negative control: other data must not verify');
    });
  }
});
