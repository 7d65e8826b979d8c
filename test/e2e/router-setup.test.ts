/**
 * Setting a router up as a user does: `ztedge enroll` with an edge-router
 * token (erott: client + listener certificates, SANs from --san), `ztedge
 * router --check`, and the router's policy endpoint on the client API
 * (only routers may read it; long poll answers 304 when nothing changed and
 * wakes on a change).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadIdentityFile } from '../../src/identity/file.js';
import { request } from '../../src/identity/https.js';
import { parsePemBundle } from '../../src/link/trust.js';
import { verifySignedSnapshot } from '../../src/policy/signed.js';
import { adminToken, api, openssl, removeDir, runCli, startControllerProcess, tempDir, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';
const C = '/edge/client/v1';

let dir: string;
let ctrl: ControllerProcess;
let admin: string;

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'));
  admin = await adminToken(ctrl);
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

async function newRouterJwt(name: string): Promise<string> {
  const r = await api(ctrl, 'POST', `${M}/edge-routers`, { token: admin, body: { name } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const d = await api(ctrl, 'GET', `${M}/edge-routers/${r.body.data.id}`, { token: admin });
  const file = join(dir, `${name}.jwt`);
  writeFileSync(file, d.body.data.enrollmentJwt);
  return file;
}

/** Logs in with the router's identity file (client certificate) on the client API. */
async function routerSession(identityFile: string): Promise<string> {
  const id = await loadIdentityFile(identityFile);
  assert.equal(id.key.kind, 'pem');
  const res = await request(`${ctrl.url}${C}/authenticate?method=cert`, {
    ca: id.caPem, cert: id.certPem, key: id.key.kind === 'pem' ? id.key.pem : '', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
  });
  assert.equal(res.status, 200, res.body.toString());
  return JSON.parse(res.body.toString()).data.token as string;
}

test('ztedge enroll with a router token writes client and listener certificates; the listener certificate carries the --san names', async () => {
  const jwt = await newRouterJwt('hub-a');
  const out = join(dir, 'hub-a.json');
  const r = runCli(['enroll', '--jwt', jwt, '--out', out, '--san', 'hub-a.plant.example', '--san', '10.9.8.7', '--san', '127.0.0.1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /listener cert: .*hub-a\.server\.cert\.pem \(hub-a\.plant\.example, 10\.9\.8\.7, 127\.0\.0\.1\)/);
  const id = await loadIdentityFile(out);
  assert.ok(id.server !== undefined, 'identity file names the listener certificate');
  const server = new X509Certificate(id.server.certPem);
  assert.match(server.subjectAltName ?? '', /DNS:hub-a\.plant\.example/);
  assert.match(server.subjectAltName ?? '', /IP Address:10\.9\.8\.7/);
  // The listener key is the one certified, and both certificates chain to the controller CA.
  assert.ok(server.checkPrivateKey((await import('node:crypto')).createPrivateKey(id.server.keyPem)));
  writeFileSync(join(dir, 'ca.pem'), id.caPem);
  writeFileSync(join(dir, 'server.pem'), id.server.certPem);
  assert.equal(openssl(['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'server.pem')]).code, 0);
  assert.equal((readFileSync(join(dir, 'hub-a.server.key.pem')).length > 0), true);
});

test('a bad --san is refused before any key is made or the token is spent', async () => {
  const jwt = await newRouterJwt('hub-b');
  const out = join(dir, 'hub-b.json');
  const bad = runCli(['enroll', '--jwt', jwt, '--out', out, '--san', 'not a name!']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--san not a name! is neither a host name nor an IP address/);
  assert.equal(existsSync(out), false);
  assert.equal(existsSync(join(dir, 'hub-b.key.pem')), false);
  const good = runCli(['enroll', '--jwt', jwt, '--out', out]);
  assert.equal(good.code, 0, good.stderr);
  // Default SANs: reachable on this machine.
  const server = new X509Certificate((await loadIdentityFile(out)).server!.certPem);
  assert.match(server.subjectAltName ?? '', /DNS:localhost/);
  assert.match(server.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
});

test('ztedge router --check validates config and identity; listeners without a certificate are refused with a clear message', async () => {
  const cfg = join(dir, 'hub-a.yml');
  writeFileSync(cfg, 'identity: ./hub-a.json\nlisteners: [tls:127.0.0.1:0]\n');
  const ok = runCli(['router', '--config', cfg, '--check']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /router id: \S+/);
  assert.match(ok.stdout, /listeners: tls:127\.0\.0\.1:0/);

  // An ott identity has no listener certificate.
  const idr = await api(ctrl, 'POST', `${M}/identities`, { token: admin, body: { name: 'plain-1', type: 'Device', isAdmin: false, enrollment: { ott: true } } });
  assert.equal(idr.status, 201);
  const detail = await api(ctrl, 'GET', `${M}/identities/${idr.body.data.id}`, { token: admin });
  writeFileSync(join(dir, 'plain-1.jwt'), detail.body.data.enrollment.ott.jwt);
  assert.equal(runCli(['enroll', '--jwt', join(dir, 'plain-1.jwt'), '--out', join(dir, 'plain-1.json')]).code, 0);
  const cfg2 = join(dir, 'plain.yml');
  writeFileSync(cfg2, 'identity: ./plain-1.json\nlisteners: [tls:127.0.0.1:0]\n');
  const refused = runCli(['router', '--config', cfg2, '--check']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /listeners need a server certificate/);
  assert.match(refused.stderr, /\[ERR_CONFIG\]/);

  const missing = runCli(['router']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--config FILE is required/);
});

test('router policy: only routers may read it; a long poll answers 304 when unchanged and wakes on a change', async () => {
  const forbidden = await api(ctrl, 'GET', `${C}/router/policy`, { token: admin });
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.error.code, 'ERR_FORBIDDEN');
  assert.equal((await api(ctrl, 'GET', `${C}/router/policy`)).status, 401);

  const session = await routerSession(join(dir, 'hub-a.json'));
  const first = await api(ctrl, 'GET', `${C}/router/policy`, { token: session });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const cas = parsePemBundle(ctrl.ca);
  const snap = verifySignedSnapshot(first.body.data.jws, cas, Date.now());
  assert.equal(snap.v, 1);
  assert.equal(first.body.data.revision, snap.revision);
  // The offline window: notAfter 72 h after issue by default.
  assert.equal(Date.parse(snap.notAfter) - Date.parse(snap.issuedAt), 72 * 3600_000);
  assert.ok(snap.identities.some((i: { name: string }) => i.name === 'hub-a'));
  assert.equal(typeof snap.revision, 'string');

  const t0 = Date.now();
  const unchanged = await api(ctrl, 'GET', `${C}/router/policy?known=${snap.revision}&waitMs=300`, { token: session });
  assert.equal(unchanged.status, 304);
  assert.ok(Date.now() - t0 >= 250, 'the controller held the poll');

  const poll = api(ctrl, 'GET', `${C}/router/policy?known=${snap.revision}&waitMs=20000`, { token: session });
  await new Promise((r) => setTimeout(r, 200));
  const t1 = Date.now();
  const svc = await api(ctrl, 'POST', `${M}/services`, { token: admin, body: { name: 'polled' } });
  assert.equal(svc.status, 201);
  const changed = await poll;
  assert.equal(changed.status, 200);
  assert.notEqual(changed.body.data.revision, snap.revision);
  assert.ok(verifySignedSnapshot(changed.body.data.jws, cas, Date.now()).services.some((s) => s.name === 'polled'));
  assert.ok(Date.now() - t1 < 2000, `change delivered in ${Date.now() - t1} ms`);

  const badWait = await api(ctrl, 'GET', `${C}/router/policy?waitMs=soon`, { token: session });
  assert.equal(badWait.status, 400);
});
