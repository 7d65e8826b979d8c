/**
 * Signed policy snapshots: only the controller's policy signer, under the
 * router's CA bundle, can produce a snapshot a router accepts. Every kind of
 * forgery or damage is refused whole, with ERR_POLICY_SIGNATURE (or
 * ERR_POLICY_SNAPSHOT for a signed but malformed body).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import { isEdgeError } from '../../src/errors.js';
import { createCsr, FileKeyStore, generatePrivateKeyPem } from '../../src/keys/index.js';
import { parsePemBundle } from '../../src/link/trust.js';
import { signSnapshot, verifySignedSnapshot } from '../../src/policy/signed.js';
import { parseSnapshot, sealSnapshot, SnapshotPolicyView } from '../../src/policy/snapshot.js';

const log = pino({ level: 'silent' });
let dir: string;
let pki: Pki;
let otherPki: Pki;

const snapshot = sealSnapshot({
  v: 1,
  routerId: 'r1',
  identities: [{ id: 'r1', name: 'r1', roleAttributes: [], disabled: false }, { id: 'e1', name: 'e1', roleAttributes: [], disabled: false }],
  services: [{ id: 's1', name: 'web', roleAttributes: [] }],
  servicePolicies: [{ id: 'p1', name: 'dial', type: 'Dial', semantic: 'AnyOf', identityRoles: ['@e1'], serviceRoles: ['@s1'] }],
  postureChecks: [],
  serviceEdgeRouterPolicies: [],
}, new Date());

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-signed-'));
  pki = await Pki.loadOrCreate(join(dir, 'a'), ['127.0.0.1'], log);
  otherPki = await Pki.loadOrCreate(join(dir, 'b'), ['127.0.0.1'], log);
});

after(() => rmSync(dir, { recursive: true, force: true }));

function refused(jws: string, message: RegExp, code = 'ERR_POLICY_SIGNATURE'): void {
  assert.throws(() => verifySignedSnapshot(jws, parsePemBundle(pki.caBundlePem), Date.now()),
    (err: unknown) => isEdgeError(err) && err.code === code && message.test(err.message), `expected ${code} ${message}`);
}

/** A compact JWS over `payload` signed by `key`, with `header` fields. */
function forge(header: Record<string, unknown>, payload: unknown, key = pki.policySigner.key): string {
  const h = Buffer.from(JSON.stringify(header)).toString('base64url');
  const p = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const s = sign('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${h}.${p}.${s}`;
}

test('a snapshot signed by the controller verifies and round-trips unchanged', () => {
  const jws = signSnapshot(snapshot, pki.policySigner);
  const back = verifySignedSnapshot(jws, parsePemBundle(pki.caBundlePem), Date.now());
  assert.deepEqual(back, parseSnapshot(JSON.parse(JSON.stringify(snapshot))));
  assert.equal(new SnapshotPolicyView(back).mayDial('e1', 'web').allow, true);
});

test('forgeries and damage are refused whole', async () => {
  const good = signSnapshot(snapshot, pki.policySigner);
  const [h, p, s] = good.split('.') as [string, string, string];
  const x5c = [pki.policySigner.certDer.toString('base64')];

  refused(signSnapshot(snapshot, otherPki.policySigner), /not issued by this router's controller CA/);
  refused(`${h}.${Buffer.from(JSON.stringify({ ...snapshot, servicePolicies: [], postureChecks: [], serviceEdgeRouterPolicies: [] })).toString('base64url')}.${s}`, /signature does not verify/);
  refused(`${h}.${p}.${Buffer.alloc(64).toString('base64url')}`, /signature does not verify/);
  refused(good.slice(0, -4), /signature does not verify|not a JWS/);
  refused(`${h}.${p}`, /not a JWS compact serialization/);
  refused('not a jws at all', /not a JWS compact serialization/);
  refused(`e30.${p}.${s}`, /algorithm undefined is not ES256/);
  refused(forge({ alg: 'none', typ: 'ztedge-policy+jws', x5c }, snapshot), /algorithm "none" is not ES256/);
  refused(forge({ alg: 'ES256', typ: 'JWT', x5c }, snapshot), /type "JWT"/);
  refused(forge({ alg: 'ES256', typ: 'ztedge-policy+jws' }, snapshot), /no signer certificate/);
  refused(forge({ alg: 'ES256', typ: 'ztedge-policy+jws', x5c: ['AAAA'] }, snapshot), /cannot be parsed/);
  // Signed by a key whose certificate chains to the CA but is not the policy signer (a router's own identity).
  const routerKeyPem = generatePrivateKeyPem('ec-p256');
  const routerKey = FileKeyStore.fromPem(routerKeyPem, 'mem');
  const routerCert = await pki.issueClientCert(await createCsr(routerKey, 'CN=x'), 'r1', 1);
  const routerDer = Buffer.from(routerCert.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  refused(forge({ alg: 'ES256', typ: 'ztedge-policy+jws', x5c: [routerDer.toString('base64')] }, snapshot, (await import('node:crypto')).createPrivateKey(routerKeyPem)), /signed by "r1", not the controller's policy signer/);
  // The signer certificate with a stranger's key: the signature cannot verify.
  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  refused(forge({ alg: 'ES256', typ: 'ztedge-policy+jws', x5c }, snapshot, stranger), /signature does not verify/);
  // Signed and well-formed JWS, but the snapshot inside is malformed.
  refused(forge({ alg: 'ES256', typ: 'ztedge-policy+jws', x5c }, { ...snapshot, v: 9 }), /unsupported version 9/, 'ERR_POLICY_SNAPSHOT');
  // The signer is checked against time too.
  assert.throws(() => verifySignedSnapshot(good, parsePemBundle(pki.caBundlePem), Date.now() + 400 * 86_400_000), /not valid now/);
});

test('past notAfter the view refuses every Dial with the reason, unless the router keeps the last policy', () => {
  const old = sealSnapshot({ v: 1, routerId: 'r1', identities: snapshot.identities, services: snapshot.services, servicePolicies: snapshot.servicePolicies, postureChecks: [], serviceEdgeRouterPolicies: [] }, new Date(Date.now() - 10_000), 5_000);
  const failClosed = new SnapshotPolicyView(old);
  const d = failClosed.mayDial('e1', 'web');
  assert.equal(d.allow, false);
  assert.match(d.reason, /policy expired at/);
  assert.equal(new SnapshotPolicyView(old, true).mayDial('e1', 'web').allow, true);
});
