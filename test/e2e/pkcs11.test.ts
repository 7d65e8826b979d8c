/**
 * Enrollment with keys that cannot leave the device, on two real PKCS#11
 * modules: SoftHSM2 and a software TPM (swtpm) through tpm2-pkcs11. The
 * same commands a user runs: `ztedge enroll --key 'pkcs11:…'`, then
 * `ztedge edge login --file` (exporter-bound proof, no OpenSSL engine).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createPublicKey, verify } from 'node:crypto';
import { join } from 'node:path';
import { openssl, removeDir, runCli, startControllerProcess, tempDir, type ControllerProcess } from '../helpers/controller.js';
import { setupSoftHsm, setupSwtpm, stopSwtpm, type TokenEnv } from '../helpers/tokens.js';

let dir: string;
let ctrl: ControllerProcess;
const cfg = (): Record<string, string> => ({ ZTEDGE_CONFIG_DIR: join(dir, 'cfg') });

before(async () => {
  dir = tempDir('ztedge-p11-');
  ctrl = await startControllerProcess(join(dir, 'ctrl'));
  const r = runCli(['edge', 'login', ctrl.url, '-u', 'admin', '-p', ctrl.adminPassword, '-y'], cfg(), dir);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await ctrl?.stop();
  if (dir !== undefined && existsSync(join(dir, 'tpm'))) await stopSwtpm(join(dir, 'tpm'));
  removeDir(dir);
});

function newToken(name: string, admin = false): string {
  const args = ['edge', 'create', 'identity', 'device', name, '-o', `${name}.jwt`];
  if (admin) args.push('--admin');
  const r = runCli(args, cfg(), dir);
  assert.equal(r.code, 0, r.stderr);
  return `${name}.jwt`;
}

/** pkcs11-tool's view of the private key objects, with the module's env. */
function listPrivateKeys(t: TokenEnv): string {
  const r = spawnSync('pkcs11-tool', ['--module', t.module, '--token-label', t.label, '--login', '--pin', t.pin, '--list-objects', '--type', 'privkey'], { env: { ...process.env, ...t.env }, encoding: 'utf8' });
  return r.stdout + r.stderr;
}

function enrollWithToken(t: TokenEnv, name: string, admin = false): { stdout: string; identity: any } {
  const jwt = newToken(name, admin);
  const r = runCli(['enroll', '--jwt', jwt, '--out', `${name}.json`, '--key', t.uri(name)], { ...cfg(), ...t.env }, dir);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  return { stdout: r.stdout, identity: JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) };
}

for (const kind of ['softhsm', 'tpm'] as const) {
  describe(`${kind}: key made in the token`, () => {
    let t: TokenEnv;
    before(async () => {
      t = kind === 'softhsm' ? await setupSoftHsm(join(dir, 'softhsm')) : await setupSwtpm(join(dir, 'tpm'));
    });

    test('enroll writes an identity that references the token key, and the certificate carries that key', () => {
      const { stdout, identity } = enrollWithToken(t, `${kind}-dev`);
      assert.match(stdout, /made inside the token/);
      assert.match(identity.id.key, /^pkcs11:token=/);
      assert.ok(!existsSync(join(dir, `${kind}-dev.key.pem`)), 'no software key was written');
      const v = openssl(['verify', '-CAfile', join(dir, `${kind}-dev.ca.pem`), join(dir, `${kind}-dev.cert.pem`)]);
      assert.equal(v.code, 0, v.stderr);
      // The certificate's key is the token's public key.
      const r = spawnSync('pkcs11-tool', ['--module', t.module, '--token-label', t.label, '--read-object', '--type', 'pubkey', '--label', `${kind}-dev`, '-o', join(dir, `${kind}-pub.der`)], { env: { ...process.env, ...t.env }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const tokenKey = createPublicKey({ key: readFileSync(join(dir, `${kind}-pub.der`)), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' });
      const certKey = createPublicKey(readFileSync(join(dir, `${kind}-dev.cert.pem`), 'utf8')).export({ type: 'spki', format: 'der' });
      assert.ok(tokenKey.equals(certKey));
    });

    test('pkcs11-tool shows the private key as sensitive and never extractable', () => {
      const objects = listPrivateKeys(t);
      const block = objects.split(/Private Key Object/).find((b) => b.includes(`${kind}-dev`));
      assert.ok(block !== undefined, objects);
      assert.match(block, /sensitive/);
      assert.match(block, /never extractable/);
    });

    test('a signature made through the token verifies with openssl', async () => {
      for (const [k, v] of Object.entries(t.env)) process.env[k] = v;
      const { Pkcs11KeyStore } = await import('../../src/keys/pkcs11.js');
      const ks = Pkcs11KeyStore.open(t.uri(`${kind}-dev`));
      try {
        const msg = Buffer.from(`ztedge ${kind} signature check`);
        const p1363 = await ks.sign(msg);
        assert.ok(verify('sha256', msg, { key: createPublicKey({ key: ks.publicKeySpki(), format: 'der', type: 'spki' }), dsaEncoding: 'ieee-p1363' }, p1363));
        // openssl wants DER-encoded ECDSA: convert r‖s and check with the certificate's key.
        const der = p1363ToDer(p1363);
        writeFileSync(join(dir, 'msg.bin'), msg);
        writeFileSync(join(dir, 'sig.der'), der);
        assert.equal(openssl(['x509', '-in', join(dir, `${kind}-dev.cert.pem`), '-pubkey', '-noout', '-out', join(dir, 'pub.pem')]).code, 0);
        const o = openssl(['dgst', '-sha256', '-verify', join(dir, 'pub.pem'), '-signature', join(dir, 'sig.der'), join(dir, 'msg.bin')]);
        assert.match(o.stdout, /Verified OK/);
      } finally {
        await ks.close();
      }
    });

    test('an admin whose key is in the token logs in with an exporter proof', () => {
      enrollWithToken(t, `${kind}-admin`, true);
      const env = { ZTEDGE_CONFIG_DIR: join(dir, `cfg-${kind}`), ...t.env };
      const r = runCli(['edge', 'login', '--file', `${kind}-admin.json`], env, dir);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`as ${kind}-admin`));
      assert.equal(runCli(['edge', 'list', 'summary'], env, dir).code, 0);
    });

    test('clear errors: token not found, wrong PIN, key missing, module missing; nothing consumed', () => {
      const jwt = newToken(`${kind}-err`);
      const env = { ...cfg(), ...t.env };
      const cases: [string, RegExp][] = [
        [t.uri(`${kind}-err`).replace(`token=${t.label}`, 'token=no-such-token'), /token "no-such-token" not found/],
        [t.uri(`${kind}-err`).replace(/module-path=[^&]+/, 'module-path=/usr/lib/no-such-module.so'), /module not found/],
        [t.uri(`${kind}-err`).replace(/pin-source=file:[^&]+/, `pin-source=file:${join(dir, 'wrong.pin')}`), /wrong PIN/],
        ['pkcs11:token=x', /invalid PKCS#11 URI/],
      ];
      writeFileSync(join(dir, 'wrong.pin'), '000000\n');
      for (const [uri, message] of cases) {
        const r = runCli(['enroll', '--jwt', jwt, '--out', `${kind}-err.json`, '--key', uri], env, dir);
        assert.equal(r.code, 1, `${uri}\n${r.stdout}`);
        assert.match(r.stderr, message);
        assert.match(r.stderr, /ERR_KEY/);
      }
      // The token is still unused: a good key enrolls it.
      const ok = runCli(['enroll', '--jwt', jwt, '--out', `${kind}-err.json`, '--key', t.uri(`${kind}-err`)], env, dir);
      assert.equal(ok.code, 0, ok.stderr);
      // An existing token key that does not exist, without create, is reported by login.
      writeFileSync(join(dir, `${kind}-missing.json`), JSON.stringify({ ...JSON.parse(readFileSync(join(dir, `${kind}-err.json`), 'utf8')), id: { ...JSON.parse(readFileSync(join(dir, `${kind}-err.json`), 'utf8')).id, key: t.uri('not-there') } }));
      const missing = runCli(['edge', 'login', '--file', `${kind}-missing.json`], { ZTEDGE_CONFIG_DIR: join(dir, `cfg-${kind}-m`), ...t.env }, dir);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /no private key object="not-there"/);
    });
  });
}

describe('tpm: the module loses its device mid-run', () => {
  test('signing fails with a clear error while swtpm is down, and works again once it is back', async () => {
    const tpmDir = join(dir, 'tpm');
    const t = await setupSwtpm(tpmDir);
    for (const [k, v] of Object.entries(t.env)) process.env[k] = v;
    const { Pkcs11KeyStore } = await import('../../src/keys/pkcs11.js');
    const ks = Pkcs11KeyStore.open(t.uri('tpm-dev'));
    try {
      assert.equal((await ks.sign(Buffer.from('before'))).length, 64);
      const port = Number(/port=(\d+)/.exec(t.env.TPM2_PKCS11_TCTI ?? '')?.[1]);
      await stopSwtpm(tpmDir);
      await assert.rejects(ks.sign(Buffer.from('during')), (err: Error & { code?: string }) => err.code === 'ERR_KEY');
      await setupSwtpm(tpmDir, 'ztedge-tpm', port);
      assert.equal((await ks.sign(Buffer.from('after'))).length, 64, 'the session is reopened once the TPM is back');
    } finally {
      await ks.close();
    }
  });
});

/** IEEE P1363 r‖s → DER ECDSA-Sig-Value, as openssl dgst expects. */
function p1363ToDer(sig: Buffer): Buffer {
  const half = sig.length / 2;
  const int = (b: Buffer): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    return v[0]! & 0x80 ? Buffer.concat([Buffer.from([0x02, v.length + 1, 0]), v]) : Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(sig.subarray(0, half)), int(sig.subarray(half))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
