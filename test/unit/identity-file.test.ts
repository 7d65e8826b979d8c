/**
 * Identity files (src/identity/file.ts): every way OpenZiti SDKs write
 * cert/key/ca references, the API URL rules, and ERR_IDENTITY_FILE for each
 * way a file can be unusable.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadIdentityFile, type LoadedIdentity } from '../../src/identity/file.js';
import { isEdgeError } from '../../src/errors.js';

const pem = (label: string, body: string): string => `-----BEGIN ${label}-----\n${Buffer.from(body).toString('base64')}\n-----END ${label}-----\n`;
const CERT = pem('CERTIFICATE', 'leaf-cert');
const KEY = pem('PRIVATE KEY', 'the-key');
const CA = pem('CERTIFICATE', 'ca-bundle');

let dir: string;
let n = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-idfile-'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'x.cert.pem'), CERT);
  writeFileSync(join(dir, 'sub', 'x.key.pem'), KEY, { mode: 0o600 });
  writeFileSync(join(dir, 'sub', 'x.ca.pem'), CA);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `doc` (JSON unless a string) as a new identity file under DIR/sub and returns its path. */
function identity(doc: unknown): string {
  const path = join(dir, 'sub', `id-${n++}.json`);
  writeFileSync(path, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return path;
}

const fileRefs = (): { cert: string; key: string; ca: string } => ({
  cert: pathToFileURL(join(dir, 'sub', 'x.cert.pem')).href,
  key: pathToFileURL(join(dir, 'sub', 'x.key.pem')).href,
  ca: pathToFileURL(join(dir, 'sub', 'x.ca.pem')).href,
});

function assertPemKey(id: LoadedIdentity, expectedPem: string): void {
  assert.equal(id.key.kind, 'pem');
  if (id.key.kind === 'pem') assert.equal(id.key.pem, expectedPem);
}

async function assertIdentityError(path: string, why: RegExp): Promise<void> {
  await assert.rejects(loadIdentityFile(path), (err: unknown) => {
    assert.ok(isEdgeError(err), `expected an EdgeError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_IDENTITY_FILE');
    assert.match(err.message, why);
    return true;
  });
}

describe('loadIdentityFile references', () => {
  test('file:// URLs', async () => {
    const path = identity({ ztAPI: 'https://ctrl.example:1280', id: fileRefs() });
    const id = await loadIdentityFile(path);
    assert.equal(id.path, path);
    assert.equal(id.apiUrl, 'https://ctrl.example:1280');
    assert.equal(id.certPem, CERT);
    assert.equal(id.caPem, CA);
    assertPemKey(id, KEY);
    assert.equal(id.key.kind === 'pem' && id.key.ref, fileRefs().key, 'the key keeps its reference');
  });

  test('bare relative paths resolve from the identity file, not the working directory', async () => {
    assert.notEqual(process.cwd(), join(dir, 'sub'));
    const path = identity({ ztAPI: 'https://ctrl:1280', id: { cert: 'x.cert.pem', key: './x.key.pem', ca: '../sub/x.ca.pem' } });
    const id = await loadIdentityFile(path);
    assert.equal(id.certPem, CERT);
    assert.equal(id.caPem, CA);
    assertPemKey(id, KEY);
  });

  test('absolute paths', async () => {
    const path = identity({ ztAPI: 'https://ctrl:1280', id: { cert: join(dir, 'sub', 'x.cert.pem'), key: join(dir, 'sub', 'x.key.pem'), ca: join(dir, 'sub', 'x.ca.pem') } });
    const id = await loadIdentityFile(path);
    assert.equal(id.certPem, CERT);
    assertPemKey(id, KEY);
  });

  test('pem: prefix', async () => {
    const path = identity({ ztAPI: 'https://ctrl:1280', id: { cert: `pem:${CERT}`, key: `pem:${KEY}`, ca: `pem:${CA}` } });
    const id = await loadIdentityFile(path);
    assert.equal(id.certPem, CERT);
    assert.equal(id.caPem, CA);
    assertPemKey(id, KEY);
  });

  test('inline PEM', async () => {
    const path = identity({ ztAPI: 'https://ctrl:1280', id: { cert: CERT, key: KEY, ca: `\n  ${CA}` } });
    const id = await loadIdentityFile(path);
    assert.equal(id.certPem, CERT);
    assert.equal(id.caPem, `\n  ${CA}`, 'leading whitespace before the PEM is tolerated');
    assertPemKey(id, KEY);
  });

  test('pkcs11: key URIs are kept as references, not read', async () => {
    const uri = 'pkcs11:token=edge;object=id-key;type=private?pin-source=file:/etc/ztedge/pin';
    const id = await loadIdentityFile(identity({ ztAPI: 'https://ctrl:1280', id: { ...fileRefs(), key: uri } }));
    assert.deepEqual(id.key, { kind: 'pkcs11', uri });
    assert.equal(id.certPem, CERT);
  });

  test('OpenZiti pkcs11:// key URIs are kept as references', async () => {
    const uri = 'pkcs11:///usr/lib/softhsm/libsofthsm2.so?id=01&pin=1234';
    const id = await loadIdentityFile(identity({ ztAPI: 'https://ctrl:1280', id: { ...fileRefs(), key: uri } }));
    assert.deepEqual(id.key, { kind: 'pkcs11', uri });
  });
});

describe('loadIdentityFile API URL', () => {
  test('ztAPIs[0] wins over ztAPI', async () => {
    const id = await loadIdentityFile(identity({ ztAPI: 'https://old:1280', ztAPIs: ['https://new:1280', 'https://other:1280'], id: fileRefs() }));
    assert.equal(id.apiUrl, 'https://new:1280');
  });

  test('an empty ztAPIs falls back to ztAPI', async () => {
    const id = await loadIdentityFile(identity({ ztAPI: 'https://old:1280', ztAPIs: [], id: fileRefs() }));
    assert.equal(id.apiUrl, 'https://old:1280');
  });

  test('a trailing /edge/client/v1 and slash are stripped', async () => {
    for (const [given, want] of [
      ['https://ctrl:1280/edge/client/v1', 'https://ctrl:1280'],
      ['https://ctrl:1280/edge/client/v1/', 'https://ctrl:1280'],
      ['https://ctrl:1280/', 'https://ctrl:1280'],
      ['https://[::1]:1280/edge/client/v1', 'https://[::1]:1280'],
    ] as const) {
      const id = await loadIdentityFile(identity({ ztAPIs: [given], id: fileRefs() }));
      assert.equal(id.apiUrl, want, given);
    }
  });
});

describe('loadIdentityFile errors (ERR_IDENTITY_FILE)', () => {
  test('missing file', async () => {
    await assertIdentityError(join(dir, 'no-such.json'), /cannot read identity file/);
  });

  test('invalid JSON', async () => {
    await assertIdentityError(identity('{"ztAPI": "https://ctrl:1280", '), /not valid JSON/);
  });

  test('JSON that is not an object', async () => {
    // `null` used to escape as a TypeError.
    await assertIdentityError(identity('null'), /JSON object/);
    await assertIdentityError(identity('42'), /JSON object/);
  });

  test('missing id.cert, id.key or id.ca', async () => {
    const { cert, key, ca } = fileRefs();
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { key, ca } }), /"id\.cert" is missing/);
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { cert: '', key, ca } }), /"id\.cert" is missing/);
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { cert, ca } }), /"id\.key" is missing/);
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { cert, key } }), /"id\.ca" is missing/);
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280' }), /"id\.cert" is missing/);
  });

  test('non-https ztAPI', async () => {
    await assertIdentityError(identity({ ztAPI: 'http://ctrl:1280', id: fileRefs() }), /must be an https:\/\/ URL/);
    await assertIdentityError(identity({ ztAPIs: ['http://ctrl:1280'], ztAPI: 'https://ctrl:1280', id: fileRefs() }), /https:\/\//);
    await assertIdentityError(identity({ id: fileRefs() }), /https:\/\//);
  });

  test('unreadable referenced file', async () => {
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { ...fileRefs(), cert: 'missing.cert.pem' } }), /id\.cert points to .*missing\.cert\.pem/);
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { ...fileRefs(), ca: pathToFileURL(join(dir, 'gone.pem')).href } }), /id\.ca points to/);
    await assertIdentityError(identity({ ztAPI: 'https://ctrl:1280', id: { ...fileRefs(), key: join(dir, 'sub') } }), /id\.key points to/);
  });
});
