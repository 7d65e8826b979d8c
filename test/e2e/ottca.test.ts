/**
 * 3rd-party CAs made with openssl (a plant CA, as SPIRE or a factory CA
 * would be): registration, proof of key possession through the
 * verification token, ottca enrollment with the CA's client certificate,
 * and certificate authentication that ends when the CA is removed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { adminToken, api, assertSpec, openssl, removeDir, startControllerProcess, tempDir, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';
let dir: string;
let ctrl: ControllerProcess;
let token: string;

/** A CA, and a function issuing leaf certificates from it, all with openssl. */
function makeCa(name: string): { certPem: string; issue: (cn: string, extra?: string[]) => { certPem: string; keyPem: string } } {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.crt`);
  const r = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt,
    '-subj', `/CN=${name}/O=plant`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  assert.equal(r.code, 0, r.stderr);
  let n = 0;
  return {
    certPem: readFileSync(crt, 'utf8'),
    issue(cn, extra = []) {
      n++;
      const lk = join(dir, `${name}-leaf${n}.key`);
      const csr = join(dir, `${name}-leaf${n}.csr`);
      const lc = join(dir, `${name}-leaf${n}.crt`);
      assert.equal(openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', lk, '-out', csr, '-subj', `/CN=${cn}`]).code, 0);
      const s = openssl(['x509', '-req', '-in', csr, '-CA', crt, '-CAkey', key, '-CAcreateserial', '-out', lc, '-days', '5', ...extra]);
      assert.equal(s.code, 0, s.stderr);
      return { certPem: readFileSync(lc, 'utf8'), keyPem: readFileSync(lk, 'utf8') };
    },
  };
}

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'));
  token = await adminToken(ctrl);
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

test('register, verify and enroll through a 3rd-party CA', async () => {
  const plant = makeCa('plant-ca');
  const other = makeCa('other-ca');

  const notCa = plant.issue('leaf-not-ca');
  const refused = await api(ctrl, 'POST', `${M}/cas`, { token, body: { name: 'x', certPem: notCa.certPem, isAutoCaEnrollmentEnabled: false, isOttCaEnrollmentEnabled: true, isAuthEnabled: true, identityRoles: [] } });
  assert.equal(refused.status, 400, 'a leaf certificate is not a CA');

  const created = await api(ctrl, 'POST', `${M}/cas`, { token, body: { name: 'plant', certPem: plant.certPem, isAutoCaEnrollmentEnabled: false, isOttCaEnrollmentEnabled: true, isAuthEnabled: true, identityRoles: ['plant'] } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const caId = created.body.data.id as string;
  const ca = (await api(ctrl, 'GET', `${M}/cas/${caId}`, { token })).body.data;
  assertSpec('caDetail', ca);
  assert.equal(ca.isVerified, false);
  assert.equal(ca.identityNameFormat, '[caName]-[commonName]');
  const dup = await api(ctrl, 'POST', `${M}/cas`, { token, body: { name: 'plant-2', certPem: plant.certPem, isAutoCaEnrollmentEnabled: false, isOttCaEnrollmentEnabled: true, isAuthEnabled: true, identityRoles: [] } });
  assert.equal(dup.status, 409);

  const id = await api(ctrl, 'POST', `${M}/identities`, { token, body: { name: 'sensor-1', type: 'Device', isAdmin: false, enrollment: { ottca: caId } } });
  assert.equal(id.status, 201);
  const detail = (await api(ctrl, 'GET', `${M}/identities/${id.body.data.id}`, { token })).body.data;
  assertSpec('identityDetail', detail);
  assert.equal(detail.enrollment.ottca.caId, caId);
  assert.equal(detail.enrollment.ottca.ca.name, 'plant');
  assert.equal(decodeJwt(detail.enrollment.ottca.jwt).em, 'ottca');
  const t = detail.enrollment.ottca.token as string;
  const device = plant.issue('sensor-1');
  const enrollUrl = `/edge/client/v1/enroll?method=ottca&token=${t}`;

  // Unverified CA: refused, token kept.
  const early = await api(ctrl, 'POST', enrollUrl, { body: {}, trust: { ca: ctrl.ca, cert: device.certPem, key: device.keyPem } });
  assert.equal(early.status, 403);

  // Proof of possession: a certificate with CN = verificationToken, signed by the CA.
  const wrongCn = plant.issue('not-the-token');
  assert.equal((await api(ctrl, 'POST', `${M}/cas/${caId}/verify`, { token, rawBody: wrongCn.certPem })).status, 400);
  const wrongCa = other.issue(ca.verificationToken);
  assert.equal((await api(ctrl, 'POST', `${M}/cas/${caId}/verify`, { token, rawBody: wrongCa.certPem })).status, 400);
  const proof = plant.issue(ca.verificationToken);
  assert.equal((await api(ctrl, 'POST', `${M}/cas/${caId}/verify`, { token, rawBody: proof.certPem })).status, 200);
  assert.equal((await api(ctrl, 'GET', `${M}/cas/${caId}`, { token })).body.data.isVerified, true);

  // A certificate from another CA, or none, does not enroll; the right one does, once.
  const stranger = other.issue('sensor-1');
  assert.equal((await api(ctrl, 'POST', enrollUrl, { body: {}, trust: { ca: ctrl.ca, cert: stranger.certPem, key: stranger.keyPem } })).status, 401);
  assert.equal((await api(ctrl, 'POST', enrollUrl, { body: {} })).status, 401);
  const ok = await api(ctrl, 'POST', enrollUrl, { body: {}, trust: { ca: ctrl.ca, cert: device.certPem, key: device.keyPem } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal((await api(ctrl, 'POST', enrollUrl, { body: {}, trust: { ca: ctrl.ca, cert: device.certPem, key: device.keyPem } })).status, 410);

  // The device now authenticates with the CA's certificate; another certificate of the same CA does not.
  const auth = await api(ctrl, 'POST', '/edge/client/v1/authenticate?method=cert', { body: {}, trust: { ca: ctrl.ca, cert: device.certPem, key: device.keyPem } });
  assert.equal(auth.status, 200, JSON.stringify(auth.body));
  assert.equal(auth.body.data.identity.name, 'sensor-1');
  const sibling = plant.issue('sensor-2');
  assert.equal((await api(ctrl, 'POST', '/edge/client/v1/authenticate?method=cert', { body: {}, trust: { ca: ctrl.ca, cert: sibling.certPem, key: sibling.keyPem } })).status, 401);

  // Turning auth off, then deleting the CA, ends it.
  assert.equal((await api(ctrl, 'PATCH', `${M}/cas/${caId}`, { token, body: { isAuthEnabled: false } })).status, 200);
  assert.equal((await api(ctrl, 'POST', '/edge/client/v1/authenticate?method=cert', { body: {}, trust: { ca: ctrl.ca, cert: device.certPem, key: device.keyPem } })).status, 401);
  assert.equal((await api(ctrl, 'DELETE', `${M}/cas/${caId}`, { token })).status, 200);
  assert.equal((await api(ctrl, 'GET', `${M}/cas/${caId}`, { token })).status, 404);
  const gone = (await api(ctrl, 'GET', `${M}/identities/${id.body.data.id}`, { token })).body.data;
  assert.deepEqual(gone.authenticators, {});
});

test('the same flow from the command line', async () => {
  const { runCli } = await import('../helpers/controller.js');
  const env = { ZTEDGE_CONFIG_DIR: join(dir, 'cfg') };
  const cli = (...args: string[]) => runCli(args, env, dir);
  assert.equal(cli('edge', 'login', ctrl.url, '-u', 'admin', '-p', ctrl.adminPassword, '-y').code, 0);
  const factory = makeCa('factory-ca');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'factory.pem'), factory.certPem);
  const c = cli('edge', 'create', 'ca', 'factory', 'factory.pem', '--identity-roles', 'sensors');
  assert.equal(c.code, 0, c.stderr);
  const vt = /CN=(\S+) with this CA/.exec(c.stdout)![1]!;
  const proof = factory.issue(vt);
  writeFileSync(join(dir, 'proof.pem'), proof.certPem);
  const v = cli('edge', 'verify', 'ca', 'factory', '--cert', 'proof.pem');
  assert.equal(v.code, 0, v.stderr);
  assert.match(cli('edge', 'list', 'cas').stdout, /factory\s+true\s+true\s+true/);
  assert.equal(cli('edge', 'create', 'identity', 'device', 'sensor-9', '--ottca', 'factory', '-o', 'sensor-9.jwt').code, 0);
  const dev = factory.issue('sensor-9');
  writeFileSync(join(dir, 'sensor-9.crt'), dev.certPem);
  writeFileSync(join(dir, 'sensor-9.key'), dev.keyPem);
  const noCert = cli('enroll', '--jwt', 'sensor-9.jwt', '--out', 'sensor-9.json');
  assert.equal(noCert.code, 2);
  assert.match(noCert.stderr, /--cert FILE and --key FILE/);
  const e = cli('enroll', '--jwt', 'sensor-9.jwt', '--out', 'sensor-9.json', '--cert', 'sensor-9.crt', '--key', 'sensor-9.key');
  assert.equal(e.code, 0, e.stderr);
  const idFile = JSON.parse(readFileSync(join(dir, 'sensor-9.json'), 'utf8'));
  assert.equal(idFile.id.cert, `file://${join(dir, 'sensor-9.crt')}`);
  assert.match(cli('edge', 'list', 'identities', 'name="sensor-9"').stdout, /sensor-9\s+Device.*cert/);
  assert.equal(cli('edge', 'delete', 'ca', 'factory').code, 0);
  assert.match(cli('edge', 'list', 'cas').stdout, /results: 0/);
});
