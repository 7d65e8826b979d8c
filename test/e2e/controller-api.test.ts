/**
 * The controller's REST API end to end: the real bundled controller as a
 * process on loopback, called over HTTPS, answers checked against OpenZiti's
 * definitions, issued certificates checked with `openssl verify`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { createCsr, FileKeyStore, generatePrivateKeyPem } from '../../src/keys/index.js';
import { fetchServerCertificate } from '../../src/identity/https.js';
import { adminToken, api, assertSpec, openssl, removeDir, startControllerProcess, tempDir, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';
const C = '/edge/client/v1';

let dir: string;
let ctrl: ControllerProcess;
let token: string;

async function csrFor(alg: Parameters<typeof generatePrivateKeyPem>[0] = 'ec-p256'): Promise<{ csr: string; keyPem: string }> {
  const keyPem = generatePrivateKeyPem(alg);
  return { csr: await createCsr(FileKeyStore.fromPem(keyPem, 'mem'), 'CN=test, O=ztedge'), keyPem };
}

async function createIdentity(body: Record<string, unknown>): Promise<{ id: string; detail: any }> {
  const r = await api(ctrl, 'POST', `${M}/identities`, { token, body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assertSpec('createEnvelope', r.body);
  const d = await api(ctrl, 'GET', `${M}/identities/${r.body.data.id}`, { token });
  assert.equal(d.status, 200);
  return { id: r.body.data.id, detail: d.body.data };
}

async function enrollOtt(ottToken: string, csr: string, accept?: string) {
  return api(ctrl, 'POST', `${C}/enroll?method=ott&token=${ottToken}`, { rawBody: csr, contentType: 'application/x-pem-file', accept });
}

function verifyWithOpenssl(chainPem: string): { code: number; stdout: string; stderr: string } {
  const leaf = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
  writeFileSync(join(dir, 'ca.pem'), ctrl.ca);
  writeFileSync(join(dir, 'leaf.pem'), leaf[0] + '\n');
  return openssl(['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]);
}

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'), ['--enrollment-minutes', '60']);
  token = await adminToken(ctrl);
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

describe('first start', () => {
  test('admin password and CA keys are private files', () => {
    assert.equal(statSync(join(ctrl.dataDir, 'admin.password')).mode & 0o777, 0o600);
    for (const k of ['root.key', 'intermediate.key', 'server.key']) assert.equal(statSync(join(ctrl.dataDir, 'pki', k)).mode & 0o777, 0o600, k);
    assert.ok(ctrl.adminPassword.length >= 16);
  });

  test('the generated admin password is logged once, and only on first start', () => {
    const lines = ctrl.logs.filter((l) => l.initialAdminPassword !== undefined);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.initialAdminPassword, ctrl.adminPassword);
  });

  test('EST cacerts is a PKCS#7 bundle that openssl prints as the CA chain', async () => {
    const r = await api(ctrl, 'GET', '/.well-known/est/cacerts');
    assert.equal(r.status, 200);
    assert.match(String(r.raw.headers['content-type']), /application\/pkcs7-mime/);
    const der = Buffer.from(String(r.body), 'base64');
    writeFileSync(join(dir, 'cacerts.der'), der);
    const o = openssl(['pkcs7', '-inform', 'DER', '-in', join(dir, 'cacerts.der'), '-print_certs', '-noout']);
    assert.equal(o.code, 0, o.stderr);
    assert.equal((o.stdout.match(/subject=/g) ?? []).length, 2);
    assert.match(o.stdout, /root CA/);
    assert.match(o.stdout, /signing CA/);
    const same = await api(ctrl, 'GET', `${C}/.well-known/est/cacerts`);
    assert.equal(same.body, r.body);
  });
});

describe('authenticate', () => {
  test('password login returns a session in the OpenZiti shape', async () => {
    const r = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'admin', password: ctrl.adminPassword } });
    assert.equal(r.status, 200);
    assertSpec('currentApiSessionDetail', r.body.data);
    assert.match(r.body.data.token, /^[0-9a-f-]{36}$/);
    const who = await api(ctrl, 'GET', `${M}/current-api-session`, { token: r.body.data.token });
    assert.equal(who.body.data.identity.name, 'admin');
  });

  test('wrong password, unknown user, missing body and bad method are refused with codes', async () => {
    const wrong = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'admin', password: 'nope-nope' } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'ERR_INVALID_AUTH');
    assertSpec('apiErrorEnvelope', wrong.body);
    const unknown = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'ghost', password: 'nope-nope' } });
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body.error.message, wrong.body.error.message, 'no hint whether the user exists');
    const nobody = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: {} });
    assert.equal(nobody.status, 400);
    assert.equal(nobody.body.error.code, 'ERR_INVALID_ARGUMENT');
    const badMethod = await api(ctrl, 'POST', `${M}/authenticate?method=magic`, { body: {} });
    assert.equal(badMethod.status, 400);
    const badJson = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { rawBody: '{"username":', contentType: 'application/json' });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error.code, 'ERR_COULD_NOT_PARSE_BODY');
  });

  test('management calls need a live session', async () => {
    const none = await api(ctrl, 'GET', `${M}/identities`);
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'ERR_UNAUTHORIZED');
    const bogus = await api(ctrl, 'GET', `${M}/identities`, { token: '00000000-0000-4000-8000-000000000000' });
    assert.equal(bogus.status, 401);
  });

  test('logout ends the session at once', async () => {
    const t = await adminToken(ctrl);
    assert.equal((await api(ctrl, 'DELETE', `${M}/current-api-session`, { token: t })).status, 200);
    assert.equal((await api(ctrl, 'GET', `${M}/identities`, { token: t })).status, 401);
  });
});

describe('identities', () => {
  test('create with ott: detail, list and enrollment JWT follow OpenZiti', async () => {
    const { id, detail } = await createIdentity({ name: 'plc-1', type: 'Device', isAdmin: false, roleAttributes: ['plc', 'line1'], enrollment: { ott: true } });
    assertSpec('identityDetail', detail);
    assert.equal(detail.name, 'plc-1');
    assert.equal(detail.typeId, 'Device');
    assert.deepEqual(detail.roleAttributes, ['line1', 'plc']);
    assert.ok(Date.parse(detail.enrollment.ott.expiresAt) > Date.now());
    const jwt: string = detail.enrollment.ott.jwt;
    const claims = decodeJwt(jwt);
    const header = decodeProtectedHeader(jwt);
    assert.equal(claims.em, 'ott');
    assert.equal(claims.iss, ctrl.url);
    assert.equal(claims.sub, id);
    assert.equal(claims.jti, detail.enrollment.ott.token);
    assert.deepEqual(claims.aud, ['']);
    assert.equal(header.alg, 'ES256');
    // Signed by the TLS server key; kid = hex SHA-1 of the server certificate.
    const der = await fetchServerCertificate(ctrl.url);
    assert.equal(header.kid, createHash('sha1').update(der).digest('hex'));
    await jwtVerify(jwt, createPublicKey(new X509Certificate(der).publicKey.export({ type: 'spki', format: 'pem' })));
    const list = await api(ctrl, 'GET', `${M}/identities?filter=${encodeURIComponent('name="plc-1"')}`, { token });
    assertSpec('listIdentitiesEnvelope', list.body);
    assert.equal(list.body.data.length, 1);
    assert.equal(list.body.meta.pagination.totalCount, 1);
  });

  test('bodies from the docs: no enrollment, updb, externalId', async () => {
    const plain = await createIdentity({ name: 'no-enroll', isAdmin: false });
    assert.deepEqual(plain.detail.enrollment, {});
    assert.deepEqual(plain.detail.authenticators, {});
    const updb = await createIdentity({ name: 'alice', type: 'User', isAdmin: false, enrollment: { updb: 'alice' } });
    assert.equal(updb.detail.enrollment.updb.username, 'alice');
    assert.equal(decodeJwt(updb.detail.enrollment.updb.jwt).em, 'updb');
    const ext = await createIdentity({ name: 'ext-1', isAdmin: false, externalId: 'spiffe://plant/plc-9' });
    assert.equal(ext.detail.externalId, 'spiffe://plant/plc-9');
    const dupExt = await api(ctrl, 'POST', `${M}/identities`, { token, body: { name: 'ext-2', isAdmin: false, externalId: 'spiffe://plant/plc-9' } });
    assert.equal(dupExt.status, 409);
  });

  test('bad bodies get 4xx with a code and create nothing', async () => {
    const before = (await api(ctrl, 'GET', `${M}/summary`, { token })).body.data.identities;
    const cases: [unknown, number, string][] = [
      [{ isAdmin: false }, 400, 'ERR_INVALID_ARGUMENT'],
      [{ name: '', isAdmin: false }, 400, 'ERR_INVALID_ARGUMENT'],
      [{ name: 'x', isAdmin: 'yes' }, 400, 'ERR_INVALID_ARGUMENT'],
      [{ name: 'x', isAdmin: false, type: 'Robot' }, 400, 'ERR_INVALID_ARGUMENT'],
      [{ name: 'x', isAdmin: false, enrollment: { ott: true, updb: 'x' } }, 400, 'ERR_INVALID_ARGUMENT'],
      [{ name: 'x', isAdmin: false, enrollment: { ottca: 'no-such-ca' } }, 404, 'ERR_NOT_FOUND'],
      [{ name: 'plc-1', isAdmin: false }, 409, 'ERR_NAME_IN_USE'],
      [{ name: 'y', isAdmin: false, enrollment: { updb: 'alice' } }, 409, 'ERR_NAME_IN_USE'],
    ];
    for (const [body, status, code] of cases) {
      const r = await api(ctrl, 'POST', `${M}/identities`, { token, body });
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal(r.body.error.code, code, JSON.stringify(body));
    }
    const notJson = await api(ctrl, 'POST', `${M}/identities`, { token, rawBody: 'name=x', contentType: 'application/x-www-form-urlencoded' });
    assert.equal(notJson.status, 415);
    assert.equal(notJson.body.error.code, 'ERR_UNSUPPORTED_MEDIA_TYPE');
    const huge = await api(ctrl, 'POST', `${M}/identities`, { token, rawBody: JSON.stringify({ name: 'x'.repeat(300_000), isAdmin: false }), contentType: 'application/json' });
    assert.equal(huge.status, 413);
    const badFilter = await api(ctrl, 'GET', `${M}/identities?filter=${encodeURIComponent('name = "unterminated')}`, { token });
    assert.equal(badFilter.status, 400);
    assert.equal((await api(ctrl, 'GET', `${M}/summary`, { token })).body.data.identities, before);
  });

  test('patch updates fields, and unknown ids are 404', async () => {
    const { id } = await createIdentity({ name: 'to-patch', isAdmin: false, roleAttributes: ['a'] });
    const p = await api(ctrl, 'PATCH', `${M}/identities/${id}`, { token, body: { roleAttributes: ['b', 'c'], name: 'patched' } });
    assert.equal(p.status, 200);
    const d = (await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).body.data;
    assert.deepEqual(d.roleAttributes, ['b', 'c']);
    assert.equal(d.name, 'patched');
    assert.equal((await api(ctrl, 'GET', `${M}/identities/nope`, { token })).status, 404);
    assert.equal((await api(ctrl, 'PATCH', `${M}/identities/nope`, { token, body: { name: 'z' } })).status, 404);
    assert.equal((await api(ctrl, 'DELETE', `${M}/identities/nope`, { token })).status, 404);
  });

  test('the default admin cannot be deleted or demoted', async () => {
    const admin = (await api(ctrl, 'GET', `${M}/identities?filter=${encodeURIComponent('name="admin"')}`, { token })).body.data[0];
    assert.equal(admin.isDefaultAdmin, true);
    assert.equal((await api(ctrl, 'DELETE', `${M}/identities/${admin.id}`, { token })).status, 409);
    assert.equal((await api(ctrl, 'PATCH', `${M}/identities/${admin.id}`, { token, body: { isAdmin: false } })).status, 409);
  });
});

describe('one-time-token enrollment', () => {
  test('a CSR is answered with a PEM chain that openssl verifies against EST cacerts', async () => {
    const { id, detail } = await createIdentity({ name: 'enroll-pem', isAdmin: false, enrollment: { ott: true } });
    const { csr, keyPem } = await csrFor();
    const r = await enrollOtt(detail.enrollment.ott.token, csr);
    assert.equal(r.status, 200);
    assert.match(String(r.raw.headers['content-type']), /application\/x-pem-file/);
    const chain = String(r.body);
    assert.equal((chain.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
    const v = verifyWithOpenssl(chain);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    const leaf = new X509Certificate(chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0]);
    assert.match(leaf.subject, new RegExp(`CN=${id}`));
    assert.ok(leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(keyPem).export({ type: 'spki', format: 'der' })));
    const after = (await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).body.data;
    assert.deepEqual(after.enrollment, {});
    assert.equal(after.authenticators.cert.fingerprint, createHash('sha1').update(leaf.raw).digest('hex'));
  });

  test('Accept: application/json gets {data:{cert,ca}}', async () => {
    const { detail } = await createIdentity({ name: 'enroll-json', isAdmin: false, enrollment: { ott: true } });
    const r = await enrollOtt(detail.enrollment.ott.token, (await csrFor('ec-p384')).csr, 'application/json');
    assert.equal(r.status, 200);
    assert.match(r.body.data.cert, /BEGIN CERTIFICATE/);
    assert.equal(r.body.data.ca, ctrl.ca);
  });

  test('a token is consumed on first use; a second use is refused and changes nothing', async () => {
    const { id, detail } = await createIdentity({ name: 'enroll-twice', isAdmin: false, enrollment: { ott: true } });
    const t = detail.enrollment.ott.token;
    assert.equal((await enrollOtt(t, (await csrFor()).csr)).status, 200);
    const fp = (await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).body.data.authenticators.cert.fingerprint;
    const again = await enrollOtt(t, (await csrFor()).csr);
    assert.equal(again.status, 410);
    assert.equal(again.body.error.code, 'ERR_ENROLLMENT_TOKEN_USED');
    assert.equal((await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).body.data.authenticators.cert.fingerprint, fp);
  });

  test('concurrent uses of one token yield exactly one certificate', async () => {
    const { detail } = await createIdentity({ name: 'enroll-race', isAdmin: false, enrollment: { ott: true } });
    const csrs = await Promise.all(Array.from({ length: 8 }, () => csrFor()));
    const results = await Promise.all(csrs.map((c) => enrollOtt(detail.enrollment.ott.token, c.csr)));
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    assert.ok(results.filter((r) => r.status !== 200).every((r) => r.body.error.code === 'ERR_ENROLLMENT_TOKEN_USED'));
  });

  test('bad CSRs, weak keys, unknown tokens and wrong methods are refused, and the token survives', async () => {
    const { id, detail } = await createIdentity({ name: 'enroll-bad', isAdmin: false, enrollment: { ott: true } });
    const t = detail.enrollment.ott.token;
    const { csr } = await csrFor();
    // Flip a byte inside the signature (the last base64 characters before the footer).
    const lines = csr.trim().split('\n');
    const sigLine = lines[lines.length - 2]!;
    const flipped = sigLine.slice(0, 10) + (sigLine[10] === 'A' ? 'B' : 'A') + sigLine.slice(11);
    const badSig = [...lines.slice(0, -2), flipped, lines[lines.length - 1]].join('\n');
    const weakKey = generateKeyPairSync('rsa', { modulusLength: 1024 });
    writeFileSync(join(dir, 'weak.key'), weakKey.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const weak = openssl(['req', '-new', '-key', join(dir, 'weak.key'), '-subj', '/CN=weak']);
    assert.equal(weak.code, 0, weak.stderr);
    const p192 = openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime192v1', '-nodes', '-keyout', join(dir, 'p192.key'), '-subj', '/CN=weak']);
    const cases: [string, string, number, string][] = [
      [t, 'hello', 400, 'ERR_CSR_INVALID'],
      [t, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 400, 'ERR_CSR_INVALID'],
      [t, badSig, 400, 'ERR_CSR_INVALID'],
      [t, weak.stdout, 400, 'ERR_CSR_WEAK_KEY'],
      ['00000000-0000-4000-8000-000000000000', csr, 400, 'ERR_ENROLLMENT_TOKEN_INVALID'],
    ];
    if (p192.code === 0) cases.push([t, p192.stdout, 400, 'ERR_CSR_WEAK_KEY']);
    for (const [tok, body, status, code] of cases) {
      const r = await enrollOtt(tok, body);
      assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code);
    }
    const noToken = await api(ctrl, 'POST', `${C}/enroll?method=ott`, { rawBody: csr });
    assert.equal(noToken.body.error.code, 'ERR_ENROLLMENT_TOKEN_INVALID');
    const wrongMethod = await api(ctrl, 'POST', `${C}/enroll?method=updb&token=${t}`, { body: { password: 'secret-1' } });
    assert.equal(wrongMethod.body.error.code, 'ERR_ENROLLMENT_METHOD');
    const unknownMethod = await api(ctrl, 'POST', `${C}/enroll?method=foo&token=${t}`, { rawBody: csr });
    assert.equal(unknownMethod.body.error.code, 'ERR_ENROLLMENT_METHOD');
    // Nothing above consumed the token: the identity still has it and a good CSR still works.
    assert.equal((await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).body.data.enrollment.ott.token, t);
    assert.equal((await enrollOtt(t, csr)).status, 200);
  });

  test('an expired token is refused with 410 and stays listed for the admin', async () => {
    const short = await startControllerProcess(join(dir, 'ctrl-short'), ['--enrollment-minutes', '0.01']);
    try {
      const t = await adminToken(short);
      const c = await api(short, 'POST', `${M}/identities`, { token: t, body: { name: 'late', isAdmin: false, enrollment: { ott: true } } });
      const d = await api(short, 'GET', `${M}/identities/${c.body.data.id}`, { token: t });
      await new Promise((r) => setTimeout(r, 900));
      const r = await api(short, 'POST', `${C}/enroll?method=ott&token=${d.body.data.enrollment.ott.token}`, { rawBody: (await csrFor()).csr });
      assert.equal(r.status, 410);
      assert.equal(r.body.error.code, 'ERR_ENROLLMENT_EXPIRED');
      assert.equal((await api(short, 'GET', `${M}/enrollments`, { token: t })).body.data.length, 1);
    } finally {
      await short.stop();
    }
  });
});

describe('updb and certificate authentication', () => {
  test('updb enrollment sets a password that then logs in; non-admins are kept off the management API', async () => {
    const { detail } = await createIdentity({ name: 'bob', type: 'User', isAdmin: false, enrollment: { updb: 'bob' } });
    const t = detail.enrollment.updb.token;
    const short = await api(ctrl, 'POST', `${C}/enroll?method=updb&token=${t}`, { body: { password: 'abc' } });
    assert.equal(short.body.error.code, 'ERR_PASSWORD_POLICY');
    assert.equal((await api(ctrl, 'POST', `${C}/enroll?method=updb&token=${t}`, { body: { password: 'correct horse' } })).status, 200);
    const client = await api(ctrl, 'POST', `${C}/authenticate?method=password`, { body: { username: 'bob', password: 'correct horse' } });
    assert.equal(client.status, 200);
    const mgmt = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'bob', password: 'correct horse' } });
    assert.equal(mgmt.status, 403);
    assert.equal(mgmt.body.error.code, 'ERR_FORBIDDEN');
    assert.equal((await api(ctrl, 'GET', `${M}/identities`, { token: client.body.data.token })).status, 403);
  });

  test('an enrolled admin identity logs in with method=cert; a stranger certificate does not', async () => {
    const { detail } = await createIdentity({ name: 'ops-admin', isAdmin: true, enrollment: { ott: true } });
    const { csr, keyPem } = await csrFor();
    const chain = String((await enrollOtt(detail.enrollment.ott.token, csr)).body);
    const r = await api(ctrl, 'POST', `${M}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: chain, key: keyPem } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await api(ctrl, 'GET', `${M}/identities`, { token: r.body.data.token })).status, 200);
    const none = await api(ctrl, 'POST', `${M}/authenticate?method=cert`, { body: {} });
    assert.equal(none.status, 401);
    // A self-signed certificate with the same subject is not ours.
    const selfSigned = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'ss.key'), '-subj', '/CN=ops-admin', '-days', '1']);
    const { readFileSync } = await import('node:fs');
    const stranger = await api(ctrl, 'POST', `${M}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: selfSigned.stdout, key: readFileSync(join(dir, 'ss.key'), 'utf8') } });
    assert.equal(stranger.status, 401);
  });
});

describe('enrollments and deletion', () => {
  test('list, filter and delete enrollments', async () => {
    const { id } = await createIdentity({ name: 'pending-1', isAdmin: false, enrollment: { ott: true } });
    const all = await api(ctrl, 'GET', `${M}/enrollments?limit=100`, { token });
    assertSpec('listEnrollmentsEnvelope', all.body);
    const mine = await api(ctrl, 'GET', `${M}/enrollments?filter=${encodeURIComponent(`identity="${id}"`)}`, { token });
    assert.equal(mine.body.data.length, 1);
    assertSpec('enrollmentDetail', mine.body.data[0]);
    assert.equal(mine.body.data[0].identity.name, 'pending-1');
    const eid = mine.body.data[0].id;
    assert.equal((await api(ctrl, 'GET', `${M}/enrollments/${eid}`, { token })).body.data.method, 'ott');
    assert.equal((await api(ctrl, 'DELETE', `${M}/enrollments/${eid}`, { token })).status, 200);
    assert.equal((await api(ctrl, 'DELETE', `${M}/enrollments/${eid}`, { token })).status, 404);
    const r = await enrollOtt(mine.body.data[0].token, (await csrFor()).csr);
    assert.equal(r.status, 400, 'a deleted enrollment cannot be used');
  });

  test('deleting an identity ends its sessions, credentials and enrollments at once', async () => {
    const { id, detail } = await createIdentity({ name: 'doomed', isAdmin: true, enrollment: { ott: true } });
    const { csr, keyPem } = await csrFor();
    const chain = String((await enrollOtt(detail.enrollment.ott.token, csr)).body);
    const s = await api(ctrl, 'POST', `${M}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: chain, key: keyPem } });
    const sessionToken = s.body.data.token;
    assert.equal((await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).body.data.hasApiSession, true);
    const summaryBefore = (await api(ctrl, 'GET', `${M}/summary`, { token })).body.data;
    assert.equal((await api(ctrl, 'DELETE', `${M}/identities/${id}`, { token })).status, 200);
    assert.equal((await api(ctrl, 'GET', `${M}/identities`, { token: sessionToken })).status, 401);
    const again = await api(ctrl, 'POST', `${M}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: chain, key: keyPem } });
    assert.equal(again.status, 401);
    const summary = (await api(ctrl, 'GET', `${M}/summary`, { token }));
    assertSpec('listSummaryCountsEnvelope', summary.body);
    assert.equal(summary.body.data.identities, summaryBefore.identities - 1);
    assert.equal(summary.body.data.authenticators, summaryBefore.authenticators - 1);
  });

  test('unknown routes answer the error envelope', async () => {
    const r = await api(ctrl, 'GET', `${M}/no-such-thing`, { token });
    assert.equal(r.status, 404);
    assertSpec('apiErrorEnvelope', r.body);
  });
});
