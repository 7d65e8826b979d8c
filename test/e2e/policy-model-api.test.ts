/**
 * The rest of the policy model on the management and client APIs, end to
 * end on the real bundled controller process over HTTPS: edge router
 * policies and service edge router policies, posture checks (and service
 * policies that require them), posture responses from identities and the
 * posture data an admin reads back; authentication policies (methods,
 * password rules, lockout, expired certificates); MFA with TOTP (enrollment,
 * partially authenticated sessions, replay, recovery codes). Answers are checked against
 * OpenZiti's definitions; every refused input must get its 4xx code and
 * change nothing; deletes cascade into the policies that named what was
 * deleted; the CLI verbs run as a user runs them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { base32Decode, hotp, totpStep } from '../../src/controller/totp.js';
import { createCsr, FileKeyStore, generatePrivateKeyPem } from '../../src/keys/index.js';
import { adminCalls, adminToken, api, assertSpec, removeDir, runCli, startControllerProcess, tempDir, type AdminCalls, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';
const C = '/edge/client/v1';

let dir: string;
let ctrl: ControllerProcess;
let token: string;
let n = 0;
let post: AdminCalls['post'];
let get: AdminCalls['get'];
let refusedAll: AdminCalls['refusedAll'];

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'), ['--enrollment-minutes', '60']);
  token = await adminToken(ctrl);
  ({ post, get, refusedAll } = adminCalls(ctrl, token));
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

function uniq(prefix: string): string {
  return `${prefix}-${++n}`;
}

const q = (filter: string): string => `filter=${encodeURIComponent(filter)}`;

/** A updb identity with `password` set through its enrollment; returns its id. */
async function userWithPassword(name: string, password: string, extra: Record<string, unknown> = {}): Promise<string> {
  const id = await post('/identities', { name, isAdmin: false, enrollment: { updb: name }, ...extra });
  const ott = (await get(`/identities/${id}`)).data.enrollment.updb.token;
  const r = await api(ctrl, 'POST', `${C}/enroll/updb?token=${ott}`, { body: { password } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return id;
}

/** Password login on the client API. */
function login(username: string, password: string) {
  return api(ctrl, 'POST', `${C}/authenticate?method=password`, { body: { username, password } });
}

/** A client API session token for a password login that must succeed. */
async function sessionOf(username: string, password: string): Promise<string> {
  const r = await login(username, password);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data.token as string;
}

/** An identity enrolled with a one-time token on `c`: its certificate chain and key, for method=cert. */
async function certIdentity(c: { url: string; ca: string }, t: string, name: string, extra: Record<string, unknown> = {}): Promise<{ id: string; cert: string; key: string }> {
  const created = await api(c, 'POST', `${M}/identities`, { token: t, body: { name, isAdmin: false, enrollment: { ott: true }, ...extra } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.data.id as string;
  const ott = (await api(c, 'GET', `${M}/identities/${id}`, { token: t })).body.data.enrollment.ott.token;
  const key = generatePrivateKeyPem('ec-p256');
  const r = await api(c, 'POST', `${C}/enroll?method=ott&token=${ott}`, { rawBody: await createCsr(FileKeyStore.fromPem(key, 'mem'), 'CN=x'), contentType: 'application/x-pem-file' });
  assert.equal(r.status, 200, String(r.body));
  return { id, cert: String(r.body), key };
}

function certLogin(c: { url: string; ca: string }, who: { cert: string; key: string }, prefix = C) {
  return api(c, 'POST', `${prefix}/authenticate?method=cert`, { body: {}, trust: { cert: who.cert, key: who.key } });
}

/** PATCH/PUT/DELETE under the management API; returns the status. */
async function send(method: string, path: string, body?: unknown): Promise<number> {
  return (await api(ctrl, method, `${M}${path}`, { token, body })).status;
}

// ---- edge router policies and service edge router policies ---------------------

describe('edge router policies and service edge router policies', () => {
  let plc: string;
  let hub: string;
  let edge: string;
  let web: string;

  before(async () => {
    plc = await post('/identities', { name: 'erp-plc', isAdmin: false, roleAttributes: ['plc'] });
    await post('/identities', { name: 'erp-hmi', isAdmin: false, roleAttributes: ['hmi'] });
    hub = await post('/edge-routers', { name: 'erp-hub', roleAttributes: ['hubs', 'dc'] });
    edge = await post('/edge-routers', { name: 'erp-edge', roleAttributes: ['edges'] });
    web = await post('/services', { name: 'erp-web', roleAttributes: ['demo'] });
    await post('/services', { name: 'erp-mqtt', roleAttributes: ['mqtt'] });
  });

  test('edge router policy: #attr, @name stored as @id, shown by name; what it names', async () => {
    const id = await post('/edge-router-policies', { name: 'plc-hubs', semantic: 'AnyOf', edgeRouterRoles: ['#hubs', '@erp-edge'], identityRoles: ['@erp-plc', '#hmi'], tags: { site: 'a' } });
    const d = await get(`/edge-router-policies/${id}`);
    assertSpec('detailEdgeRouterPolicyEnvelope', d);
    assert.equal(d.data.name, 'plc-hubs');
    assert.equal(d.data.semantic, 'AnyOf');
    assert.equal(d.data.isSystem, false);
    assert.deepEqual(d.data.tags, { site: 'a' });
    assert.deepEqual(d.data.edgeRouterRoles, ['#hubs', `@${edge}`]);
    assert.deepEqual(d.data.edgeRouterRolesDisplay, [{ role: '#hubs', name: '#hubs' }, { role: `@${edge}`, name: '@erp-edge' }]);
    assert.deepEqual(d.data.identityRoles, [`@${plc}`, '#hmi']);
    assert.deepEqual(d.data.identityRolesDisplay[0], { role: `@${plc}`, name: '@erp-plc' });
    const routers = await get(`/edge-router-policies/${id}/edge-routers`);
    assertSpec('listEdgeRoutersEnvelope', routers);
    assert.deepEqual(routers.data.map((r: any) => r.name), ['erp-edge', 'erp-hub']);
    const ids = await get(`/edge-router-policies/${id}/identities`);
    assertSpec('listIdentitiesEnvelope', ids);
    assert.deepEqual(ids.data.map((i: any) => i.name), ['erp-hmi', 'erp-plc']);
    const all = await post('/edge-router-policies', { name: 'all-all', semantic: 'AllOf', edgeRouterRoles: ['#all'], identityRoles: ['#all'] });
    assert.ok((await get(`/edge-router-policies/${all}/edge-routers?limit=500`)).data.some((r: any) => r.id === hub));
    const list = await get('/edge-router-policies?limit=100');
    assertSpec('listEdgeRouterPoliciesEnvelope', list);
    assert.deepEqual(list.data.map((p: any) => p.name), ['all-all', 'plc-hubs']);
    assert.ok(list.meta.filterableFields.includes('edgeRouterRoles'));
    assert.deepEqual((await get(`/edge-router-policies?${q('edgeRouterRoles contains "#hubs"')}`)).data.map((p: any) => p.name), ['plc-hubs']);
    const defaulted = await post('/edge-router-policies', { name: uniq('erp') });
    const dd = (await get(`/edge-router-policies/${defaulted}`)).data;
    assert.deepEqual([dd.semantic, dd.edgeRouterRoles, dd.identityRoles], ['AllOf', [], []]);
    assert.equal((await get('/summary')).data.edgeRouterPolicies, 3);
  });

  test('service edge router policy: services to routers, in OpenZiti shapes', async () => {
    const id = await post('/service-edge-router-policies', { name: 'web-hubs', semantic: 'AllOf', edgeRouterRoles: ['#hubs', '#dc'], serviceRoles: ['@erp-web', '#mqtt'] });
    const d = await get(`/service-edge-router-policies/${id}`);
    assertSpec('detailServiceEdgePolicyEnvelope', d);
    assert.deepEqual(d.data.serviceRoles, [`@${web}`, '#mqtt']);
    assert.deepEqual(d.data.serviceRolesDisplay, [{ role: `@${web}`, name: '@erp-web' }, { role: '#mqtt', name: '#mqtt' }]);
    assert.equal(d.data.isSystem, undefined);
    const routers = await get(`/service-edge-router-policies/${id}/edge-routers`);
    assertSpec('listEdgeRoutersEnvelope', routers);
    assert.deepEqual(routers.data.map((r: any) => r.name), ['erp-hub'], 'AllOf: #hubs and #dc');
    const svcs = await get(`/service-edge-router-policies/${id}/services`);
    assertSpec('listServicesEnvelope', svcs);
    assert.deepEqual(svcs.data.map((s: any) => s.name), ['erp-mqtt', 'erp-web']);
    const list = await get('/service-edge-router-policies');
    assertSpec('listServiceEdgeRouterPoliciesEnvelope', list);
    assert.equal((await get(`/service-edge-router-policies?${q('name = "web-hubs"')}`)).data.length, 1);
  });

  test('bad selectors, semantics, unknown entities and duplicate names are refused and change nothing', async () => {
    const name = uniq('erp');
    await refusedAll([
      ['POST', '/edge-router-policies', { name, edgeRouterRoles: ['hubs'] }, 400, 'ERR_INVALID_ARGUMENT', /edgeRouterRoles\[0\]: role "hubs" must start with #/],
      ['POST', '/edge-router-policies', { name, identityRoles: ['#ok', '@'] }, 400, 'ERR_INVALID_ARGUMENT', /identityRoles\[1\]/],
      ['POST', '/edge-router-policies', { name, edgeRouterRoles: ['@ghost'] }, 404, 'ERR_NOT_FOUND', /edgeRouterRoles\[0\]: no edge router with id or name "ghost"/],
      ['POST', '/edge-router-policies', { name, edgeRouterRoles: ['@erp-web'] }, 404, 'ERR_NOT_FOUND', /edgeRouterRoles\[0\]/],
      ['POST', '/edge-router-policies', { name, identityRoles: ['@erp-web'] }, 404, 'ERR_NOT_FOUND', /identityRoles\[0\]: no identity/],
      ['POST', '/edge-router-policies', { name, semantic: 'Some' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-router-policies', { name, edgeRouterRoles: '#hubs' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-router-policies', { semantic: 'AllOf' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-router-policies', { name: 'plc-hubs' }, 409, 'ERR_NAME_IN_USE'],
      ['POST', '/service-edge-router-policies', { name, serviceRoles: ['@erp-plc'] }, 404, 'ERR_NOT_FOUND', /serviceRoles\[0\]: no service/],
      ['POST', '/service-edge-router-policies', { name, edgeRouterRoles: ['# spaced'] }, 400, 'ERR_INVALID_ARGUMENT', /edgeRouterRoles\[0\]/],
      ['POST', '/service-edge-router-policies', { name: 'web-hubs' }, 409, 'ERR_NAME_IN_USE'],
      ['DELETE', '/edge-router-policies/nope', undefined, 404, 'ERR_NOT_FOUND'],
      ['GET', '/service-edge-router-policies/nope', undefined, 404, 'ERR_NOT_FOUND'],
    ]);
    const id = (await get(`/edge-router-policies?${q('name = "plc-hubs"')}`)).data[0].id;
    const before = (await get(`/edge-router-policies/${id}`)).data;
    assert.equal(await send('PATCH', `/edge-router-policies/${id}`, { edgeRouterRoles: ['#ok', 'nope'] }), 400);
    assert.equal(await send('PATCH', `/edge-router-policies/${id}`, { name: 'all-all' }), 409);
    assert.deepEqual((await get(`/edge-router-policies/${id}`)).data, before);
    assert.equal((await api(ctrl, 'GET', `${M}/edge-router-policies`)).status, 401, 'admin session required');
  });

  test('patch keeps what it leaves out, put replaces; renames keep @ selectors', async () => {
    const id = await post('/service-edge-router-policies', { name: uniq('serp'), semantic: 'AnyOf', edgeRouterRoles: ['@erp-hub'], serviceRoles: ['#demo'] });
    assert.equal(await send('PATCH', `/edge-routers/${hub}`, { name: 'erp-hub-renamed' }), 200);
    let d = (await get(`/service-edge-router-policies/${id}`)).data;
    assert.deepEqual(d.edgeRouterRoles, [`@${hub}`]);
    assert.equal(d.edgeRouterRolesDisplay[0].name, '@erp-hub-renamed');
    assert.equal(await send('PATCH', `/service-edge-router-policies/${id}`, { serviceRoles: ['@erp-mqtt'], tags: { a: 1 } }), 200);
    d = (await get(`/service-edge-router-policies/${id}`)).data;
    assert.deepEqual([d.semantic, d.edgeRouterRoles.length, d.tags], ['AnyOf', 1, { a: 1 }]);
    assert.equal(await send('PUT', `/service-edge-router-policies/${id}`, { name: d.name, serviceRoles: ['#all'] }), 200);
    d = (await get(`/service-edge-router-policies/${id}`)).data;
    assert.deepEqual([d.semantic, d.edgeRouterRoles, d.serviceRoles, d.tags], ['AllOf', [], ['#all'], {}]);
    assert.equal(await send('DELETE', `/service-edge-router-policies/${id}`), 200);
    assert.equal(await send('GET', `/service-edge-router-policies/${id}`), 404);
  });

  test('deleting a router, an identity or a service removes its @ selectors from every policy', async () => {
    const router = await post('/edge-routers', { name: uniq('doomed-router') });
    const ident = await post('/identities', { name: uniq('doomed-ident'), isAdmin: false });
    const svc = await post('/services', { name: uniq('doomed-svc') });
    const erp = await post('/edge-router-policies', { name: uniq('erp'), edgeRouterRoles: [`@${router}`, `@${edge}`], identityRoles: [`@${ident}`, '#plc'] });
    const serp = await post('/service-edge-router-policies', { name: uniq('serp'), edgeRouterRoles: [`@${router}`], serviceRoles: [`@${svc}`, `@${web}`] });
    const sp = await post('/service-policies', { name: uniq('sp'), type: 'Dial', identityRoles: [`@${ident}`, `@${router}`], serviceRoles: [`@${svc}`] });
    assert.equal(await send('DELETE', `/edge-routers/${router}`), 200);
    assert.equal(await send('DELETE', `/identities/${ident}`), 200);
    assert.equal(await send('DELETE', `/services/${svc}`), 200);
    const e = await get(`/edge-router-policies/${erp}`);
    assertSpec('detailEdgeRouterPolicyEnvelope', e);
    assert.deepEqual([e.data.edgeRouterRoles, e.data.identityRoles], [[`@${edge}`], ['#plc']]);
    const s = await get(`/service-edge-router-policies/${serp}`);
    assertSpec('detailServiceEdgePolicyEnvelope', s);
    assert.deepEqual([s.data.edgeRouterRoles, s.data.serviceRoles], [[], [`@${web}`]]);
    const p = (await get(`/service-policies/${sp}`)).data;
    assert.deepEqual([p.identityRoles, p.serviceRoles], [[], []]);
    assertSpec('listEdgeRouterPoliciesEnvelope', await get('/edge-router-policies?limit=500'));
  });

  test('CLI: create, list and delete both kinds', () => {
    const env = { ZTEDGE_CONFIG_DIR: join(dir, 'cli-erp') };
    const cli = (...args: string[]) => runCli(args, env, dir);
    assert.equal(cli('edge', 'login', ctrl.url, '-u', 'admin', '--password-file', join(ctrl.dataDir, 'admin.password'), '-y').code, 0);
    let r = cli('edge', 'create', 'edge-router-policy', 'cli-erp', '--edge-router-roles', '#hubs,@erp-edge', '--identity-roles', '#plc', '--semantic', 'anyof');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /New edge router policy cli-erp created with id: \S+/);
    r = cli('edge', 'create', 'service-edge-router-policy', 'cli-serp', '--edge-router-roles', '#all', '--service-roles', '@erp-web');
    assert.equal(r.code, 0, r.stderr);
    r = cli('edge', 'list', 'edge-router-policies', 'name = "cli-erp"');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ID\s+NAME\s+SEMANTIC\s+IDENTITY ROLES\s+EDGE ROUTER ROLES/m);
    assert.match(r.stdout, /cli-erp\s+AnyOf\s+#plc\s+#hubs,@erp-edge/);
    r = cli('edge', 'list', 'service-edge-router-policies', '--json');
    assert.equal(JSON.parse(r.stdout).find((p: any) => p.name === 'cli-serp').serviceRolesDisplay[0].name, '@erp-web');
    r = cli('edge', 'create', 'edge-router-policy', 'cli-bad', '--edge-router-roles', '@nowhere');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_NOT_FOUND/);
    assert.equal(cli('edge', 'create', 'edge-router-policy').code, 2);
    for (const [noun, name] of [['edge-router-policy', 'cli-erp'], ['service-edge-router-policy', 'cli-serp']] as const) {
      r = cli('edge', 'delete', noun, name);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Deleted .*${name}`));
    }
  });
});

// ---- posture checks -------------------------------------------------------------

const SHA512 = 'AB'.repeat(64);
const SHA1 = '0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9:0a:1b:2c:3d';

describe('posture checks', () => {
  const bodies: [definition: string, body: Record<string, unknown>][] = [
    ['postureCheckMacAddress', { name: 'pc-mac', typeId: 'MAC', roleAttributes: ['site'], macAddresses: ['AA:BB:CC:DD:EE:FF', '00-11-22-33-44-55'] }],
    ['postureCheckOperatingSystem', { name: 'pc-os', typeId: 'OS', operatingSystems: [{ type: 'Linux', versions: ['>=5.10 <7', '6.1'] }, { type: 'Windows', versions: [] }] }],
    ['postureCheckProcess', { name: 'pc-proc', typeId: 'PROCESS', process: { osType: 'Linux', path: '/usr/sbin/sshd', hashes: [SHA512], signerFingerprint: SHA1 } }],
    ['postureCheckProcessMulti', { name: 'pc-multi', typeId: 'PROCESS_MULTI', semantic: 'AnyOf', processes: [{ osType: 'Windows', path: 'C:\\av\\av.exe', signerFingerprints: [SHA1] }, { osType: 'Linux', path: '/opt/av/bin/av' }] }],
    ['postureCheckDomain', { name: 'pc-domain', typeId: 'DOMAIN', roleAttributes: ['site'], domains: ['corp.example', 'CORP'] }],
    ['postureCheckMfa', { name: 'pc-mfa', typeId: 'MFA', timeoutSeconds: 300, promptOnWake: true }],
  ];

  test('each type: create in OpenZiti bodies, read back in OpenZiti shapes', async () => {
    for (const [definition, body] of bodies) {
      assertSpec(`${definition}Create`, body);
      const id = await post('/posture-checks', body);
      const d = await get(`/posture-checks/${id}`);
      assertSpec('detailPostureCheckEnvelope', d);
      assertSpec(`${definition}Detail`, d.data);
      assert.equal(d.data.name, body.name);
      assert.equal(d.data.typeId, body.typeId);
      assert.equal(d.data.version, 1);
    }
    const byName = async (name: string) => (await get(`/posture-checks?${q(`name = "${name}"`)}`)).data[0];
    assert.deepEqual((await byName('pc-mac')).macAddresses, ['AA:BB:CC:DD:EE:FF', '00-11-22-33-44-55']);
    const proc = await byName('pc-proc');
    assert.deepEqual(proc.process, { osType: 'Linux', path: '/usr/sbin/sshd', hashes: ['ab'.repeat(64)], signerFingerprint: SHA1.replace(/:/g, '') }, 'digests as lower-case hex');
    assert.deepEqual((await byName('pc-multi')).processes[0].signerFingerprints, [SHA1.replace(/:/g, '')]);
    const mfa = await byName('pc-mfa');
    assert.deepEqual([mfa.timeoutSeconds, mfa.promptOnWake, mfa.promptOnUnlock, mfa.ignoreLegacyEndpoints], [300, true, false, false]);
    const list = await get('/posture-checks?limit=100');
    assertSpec('listPostureCheckEnvelope', list);
    assert.equal(list.data.length, 6);
    assert.deepEqual((await get(`/posture-checks?${q('roleAttributes contains "site"')}`)).data.map((c: any) => c.name), ['pc-domain', 'pc-mac']);
    assert.deepEqual((await get(`/posture-checks?${q('typeId = "OS"')}`)).data.map((c: any) => c.name), ['pc-os']);
    const types = await get('/posture-check-types');
    assertSpec('listPostureCheckTypesEnvelope', types);
    assert.deepEqual(types.data.map((t: any) => t.id).sort(), ['DOMAIN', 'MAC', 'MFA', 'OS', 'PROCESS', 'PROCESS_MULTI']);
    const os = await get('/posture-check-types/OS');
    assertSpec('detailPostureCheckTypeEnvelope', os);
    assert.ok(os.data.operatingSystems.some((o: any) => o.type === 'Linux'));
    assert.equal((await get('/summary')).data.postureChecks, 6);
  });

  test('bad data is refused with the field named, and changes nothing', async () => {
    const name = uniq('pc');
    const P = '/posture-checks';
    await refusedAll([
      ['POST', P, { name, typeId: 'MAC', macAddresses: [] }, 400, 'ERR_INVALID_ARGUMENT', /invalid MAC posture check: macAddresses/],
      ['POST', P, { name, typeId: 'MAC', macAddresses: ['aa:bb:cc:dd:ee:ff', 'zz:bb:cc:dd:ee:ff'] }, 400, 'ERR_INVALID_ARGUMENT', /macAddresses\[1\]: "zz:bb:cc:dd:ee:ff" is not a MAC address/],
      ['POST', P, { name, typeId: 'MAC' }, 400, 'ERR_INVALID_ARGUMENT', /macAddresses: is required/],
      ['POST', P, { name, typeId: 'OS', operatingSystems: [{ type: 'BeOS', versions: [] }] }, 400, 'ERR_INVALID_ARGUMENT', /operatingSystems\[0\]\.type: must be one of .*"Linux"/],
      ['POST', P, { name, typeId: 'OS', operatingSystems: [{ type: 'Linux', versions: ['6.1', '~1.2'] }] }, 400, 'ERR_INVALID_ARGUMENT', /operatingSystems\[0\]\.versions\[1\]: version range "~1\.2"/],
      ['POST', P, { name, typeId: 'OS', operatingSystems: [{ type: 'Linux' }] }, 400, 'ERR_INVALID_ARGUMENT', /operatingSystems\[0\]\.versions: is required/],
      ['POST', P, { name, typeId: 'PROCESS', process: { osType: 'Linux', path: 'bin/x' } }, 400, 'ERR_INVALID_ARGUMENT', /process\.path: "bin\/x" is not an absolute path/],
      ['POST', P, { name, typeId: 'PROCESS', process: { osType: 'Linux', path: '/bin/x', hashes: ['abc'] } }, 400, 'ERR_INVALID_ARGUMENT', /process\.hashes\[0\]: must be a SHA-512 digest/],
      ['POST', P, { name, typeId: 'PROCESS', process: { osType: 'Linux', path: '/bin/x', signerFingerprint: 'nope' } }, 400, 'ERR_INVALID_ARGUMENT', /process\.signerFingerprint: must be a SHA-1/],
      ['POST', P, { name, typeId: 'PROCESS', process: { path: '/bin/x' } }, 400, 'ERR_INVALID_ARGUMENT', /process\.osType: is required \(one of .*"Linux"/],
      ['POST', P, { name, typeId: 'PROCESS_MULTI', processes: [{ osType: 'Linux', path: '/a' }] }, 400, 'ERR_INVALID_ARGUMENT', /semantic: is required/],
      ['POST', P, { name, typeId: 'PROCESS_MULTI', semantic: 'AllOf', processes: [] }, 400, 'ERR_INVALID_ARGUMENT', /processes/],
      ['POST', P, { name, typeId: 'PROCESS_MULTI', semantic: 'AllOf', processes: [{ osType: 'Linux', path: '/a', signerFingerprints: ['xyz'] }] }, 400, 'ERR_INVALID_ARGUMENT', /processes\[0\]\.signerFingerprints\[0\]/],
      ['POST', P, { name, typeId: 'DOMAIN', domains: ['corp.example', 'bad domain!'] }, 400, 'ERR_INVALID_ARGUMENT', /domains\[1\]: "bad domain!" is not a domain name/],
      ['POST', P, { name, typeId: 'MFA', timeoutSeconds: -5 }, 400, 'ERR_INVALID_ARGUMENT', /timeoutSeconds/],
      ['POST', P, { name, typeId: 'MFA', promptOnWake: 'yes' }, 400, 'ERR_INVALID_ARGUMENT', /promptOnWake/],
      ['POST', P, { name, typeId: 'SMELL', domains: ['x'] }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', P, { typeId: 'MFA' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', P, { name: 'pc-mac', typeId: 'MFA' }, 409, 'ERR_NAME_IN_USE'],
    ]);
    const id = (await get(`/posture-checks?${q('name = "pc-os"')}`)).data[0].id;
    const before = (await get(`/posture-checks/${id}`)).data;
    assert.equal(await send('PATCH', `/posture-checks/${id}`, { typeId: 'MAC', macAddresses: ['aa:bb:cc:dd:ee:ff'] }), 400);
    assert.equal(await send('PATCH', `/posture-checks/${id}`, { operatingSystems: [{ type: 'Linux', versions: ['x'] }] }), 400);
    assert.equal(await send('PATCH', `/posture-checks/nope`, { name: 'x' }), 404);
    assert.deepEqual((await get(`/posture-checks/${id}`)).data, before);
  });

  test('patch keeps the data it leaves out and counts versions; put replaces', async () => {
    const id = await post('/posture-checks', { name: uniq('pc'), typeId: 'MFA', timeoutSeconds: 60, promptOnUnlock: true, roleAttributes: ['a'] });
    assert.equal(await send('PATCH', `/posture-checks/${id}`, { typeId: 'MFA', promptOnWake: true }), 200);
    let d = (await get(`/posture-checks/${id}`)).data;
    assert.deepEqual([d.version, d.timeoutSeconds, d.promptOnWake, d.promptOnUnlock, d.roleAttributes], [2, 60, true, true, ['a']]);
    assert.equal(await send('PUT', `/posture-checks/${id}`, { name: d.name, typeId: 'MFA', timeoutSeconds: 30 }), 200);
    d = (await get(`/posture-checks/${id}`)).data;
    assertSpec('postureCheckMfaDetail', d);
    assert.deepEqual([d.version, d.timeoutSeconds, d.promptOnWake, d.promptOnUnlock, d.roleAttributes], [3, 30, false, false, []]);
    assert.equal(await send('DELETE', `/posture-checks/${id}`), 200);
    assert.equal(await send('DELETE', `/posture-checks/${id}`), 404);
  });

  test('service policies require checks by #attr or @name (stored as @id); deleting a check removes its selector', async () => {
    const check = await post('/posture-checks', { name: uniq('pc-doomed'), typeId: 'DOMAIN', domains: ['plant.example'] });
    const mac = (await get(`/posture-checks?${q('name = "pc-mac"')}`)).data[0].id;
    const sp = await post('/service-policies', { name: uniq('sp'), type: 'Dial', identityRoles: ['#all'], serviceRoles: ['#all'], postureCheckRoles: ['#site', `@${(await get(`/posture-checks/${check}`)).data.name}`] });
    let d = await get(`/service-policies/${sp}`);
    assertSpec('detailServicePolicyEnvelop', d);
    assert.deepEqual(d.data.postureCheckRoles, ['#site', `@${check}`]);
    assert.match(d.data.postureCheckRolesDisplay[1].name, /^@pc-doomed-/);
    const named = await get(`/service-policies/${sp}/posture-checks`);
    assertSpec('listPostureCheckEnvelope', named);
    assert.deepEqual(named.data.map((c: any) => c.name).sort(), ['pc-domain', (await get(`/posture-checks/${check}`)).data.name, 'pc-mac'].sort());
    assert.ok(named.data.some((c: any) => c.id === mac));
    await refusedAll([
      ['POST', '/service-policies', { name: uniq('sp'), type: 'Dial', postureCheckRoles: ['@no-such-check'] }, 404, 'ERR_NOT_FOUND', /postureCheckRoles\[0\]: no posture check with id or name "no-such-check"/],
      ['POST', '/service-policies', { name: uniq('sp'), type: 'Dial', postureCheckRoles: ['site'] }, 400, 'ERR_INVALID_ARGUMENT', /postureCheckRoles\[0\]/],
    ]);
    assert.equal(await send('DELETE', `/posture-checks/${check}`), 200);
    d = await get(`/service-policies/${sp}`);
    assert.deepEqual(d.data.postureCheckRoles, ['#site']);
  });

  test('CLI: create each type, list, delete', () => {
    const env = { ZTEDGE_CONFIG_DIR: join(dir, 'cli-pc') };
    const cli = (...args: string[]) => runCli(args, env, dir);
    assert.equal(cli('edge', 'login', ctrl.url, '-u', 'admin', '--password-file', join(ctrl.dataDir, 'admin.password'), '-y').code, 0);
    const made: [string[], RegExp][] = [
      [['cli-mac', 'mac', '--mac-addresses', 'aa:bb:cc:dd:ee:ff,00:11:22:33:44:55', '--role-attributes', 'cli'], /\(MAC\)/],
      [['cli-os', 'os', '--os', 'Linux:>=5.10,6.1', '--os', 'Windows'], /\(OS\)/],
      [['cli-proc', 'process', '--path', '/usr/bin/x', '--hash', SHA512], /\(PROCESS\)/],
      [['cli-multi', 'process-multi', '--path', '/a', '--path', '/b', '--semantic', 'AnyOf'], /\(PROCESS_MULTI\)/],
      [['cli-domain', 'domain', '--domains', 'corp.example'], /\(DOMAIN\)/],
      [['cli-mfa', 'mfa', '--timeout-seconds', '600', '--prompt-on-wake'], /\(MFA\)/],
    ];
    for (const [args, type] of made) {
      const r = cli('edge', 'create', 'posture-check', ...args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`New posture check ${args[0]} ${type.source} created with id: \\S+`));
    }
    let r = cli('edge', 'list', 'posture-checks', 'name contains "cli-"', '--json');
    const rows = JSON.parse(r.stdout) as any[];
    assert.deepEqual(rows.find((c) => c.name === 'cli-os').operatingSystems, [{ type: 'Linux', versions: ['>=5.10', '6.1'] }, { type: 'Windows', versions: [] }]);
    assert.deepEqual(rows.find((c) => c.name === 'cli-mfa').timeoutSeconds, 600);
    r = cli('edge', 'list', 'posture-checks', 'name = "cli-mac"');
    assert.match(r.stdout, /^ID\s+NAME\s+TYPE\s+ATTRIBUTES\s+DATA/m);
    assert.match(r.stdout, /cli-mac\s+MAC\s+cli\s+\{"macAddresses"/);
    r = cli('edge', 'create', 'posture-check', 'cli-bad', 'os', '--os', 'Linux:~1');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /operatingSystems\[0\]\.versions\[0\]/);
    assert.equal(cli('edge', 'create', 'posture-check', 'cli-bad', 'mac').code, 2);
    assert.equal(cli('edge', 'create', 'posture-check', 'cli-bad', 'smell').code, 2);
    r = cli('edge', 'delete', 'posture-check', 'cli-mac');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Deleted posture check cli-mac/);
  });
});

// ---- posture responses and posture data --------------------------------------------

describe('posture responses and posture data', () => {
  let device: string;
  let session: string;
  let macCheck: string;

  before(async () => {
    device = await userWithPassword('posture-device', 'device-pass-1');
    session = await sessionOf('posture-device', 'device-pass-1');
    macCheck = (await get(`/posture-checks?${q('name = "pc-mac"')}`)).data[0].id;
  });

  const respond = (body: unknown, bulk = false, t = session) => api(ctrl, 'POST', `${C}/posture-response${bulk ? '-bulk' : ''}`, { token: t, body });
  const postureData = async () => (await get(`/identities/${device}/posture-data`)).data;

  test('an identity reports posture; the admin reads the latest, with when it was received', async () => {
    const empty = await postureData();
    assert.deepEqual([empty.mac, empty.os, empty.domain, empty.processes], [null, null, null, []], 'nothing reported yet');
    const t0 = Date.now();
    const one = await respond({ id: macCheck, typeId: 'MAC', macAddresses: ['aa:bb:cc:dd:ee:ff'] });
    assert.equal(one.status, 201, JSON.stringify(one.body));
    assert.deepEqual(one.body.data, { services: [] });
    const bulk = await respond([
      { id: 'os-query', typeId: 'OS', type: 'Linux', version: '6.1.0-18-amd64', build: '#1 SMP' },
      { id: 'domain-query', typeId: 'DOMAIN', domain: 'corp.example' },
      { id: 'proc-query', typeId: 'PROCESS', path: '/usr/sbin/sshd', isRunning: true, hash: 'ab'.repeat(64), signerFingerprints: [] },
      { id: 'proc-query', typeId: 'PROCESS', path: '/opt/av/bin/av', isRunning: false },
      { id: 'mfa-query', typeId: 'ENDPOINT_STATE', woken: true },
    ], true);
    assert.equal(bulk.status, 200, JSON.stringify(bulk.body));
    const d = await postureData();
    assertSpec('postureDataMac', d.mac);
    assertSpec('postureDataOs', d.os);
    assertSpec('postureDataDomain', d.domain);
    for (const p of d.processes) assertSpec('postureDataProcess', p);
    assert.deepEqual([d.mac.postureCheckId, d.mac.addresses], [macCheck, ['aa:bb:cc:dd:ee:ff']]);
    assert.ok(Date.parse(d.mac.lastUpdatedAt) >= t0 - 1000 && Date.parse(d.mac.lastUpdatedAt) <= Date.now());
    assert.deepEqual([d.os.type, d.os.version, d.os.build, d.os.postureCheckId], ['Linux', '6.1.0-18-amd64', '#1 SMP', 'os-query']);
    assert.equal(d.domain.domain, 'corp.example');
    assert.deepEqual(d.processes.map((p: any) => [p.path, p.isRunning]), [['/usr/sbin/sshd', true], ['/opt/av/bin/av', false]]);
    const mine = d.apiSessionPostureData[Object.keys(d.apiSessionPostureData)[0]!];
    assert.equal(mine.mfa.passedMfa, false);
    assert.ok(Date.parse(mine.endpointState.wokenAt) >= t0 - 1000);
    // The latest report of a kind replaces the previous one.
    assert.equal((await respond({ id: macCheck, typeId: 'MAC', macAddresses: ['00:11:22:33:44:55'] })).status, 201);
    assert.equal((await respond({ id: 'proc-query', typeId: 'PROCESS', path: '/opt/av/bin/av', isRunning: true })).status, 201);
    const d2 = await postureData();
    assert.deepEqual(d2.mac.addresses, ['00:11:22:33:44:55']);
    assert.deepEqual(d2.processes.map((p: any) => [p.path, p.isRunning]), [['/usr/sbin/sshd', true], ['/opt/av/bin/av', true]]);
    assert.equal(d2.os.lastUpdatedAt, d.os.lastUpdatedAt, 'other kinds keep their time');
  });

  test('bad responses are refused whole, with the field named; nothing is stored', async () => {
    const before = await postureData();
    const osCheck = (await get(`/posture-checks?${q('name = "pc-os"')}`)).data[0].id;
    const cases: [unknown, boolean, RegExp][] = [
      [{ id: 'x', typeId: 'MAC' }, false, /macAddresses: is required/],
      [{ id: 'x', typeId: 'MAC', macAddresses: 'aa' }, false, /macAddresses/],
      [{ id: 'x', typeId: 'OS', type: 'Linux' }, false, /version: is required/],
      [{ id: 'x', typeId: 'PROCESS', path: '/x' }, false, /isRunning: is required/],
      [{ id: 'x', typeId: 'MFA' }, false, /typeId: "MFA" is not a posture response type/],
      [{ typeId: 'MAC', macAddresses: [] }, false, /id/],
      [{ id: osCheck, typeId: 'MAC', macAddresses: ['aa:bb:cc:dd:ee:ff'] }, false, /id: posture check "pc-os" is of type OS; a MAC response does not answer it/],
      [[{ id: 'x', typeId: 'MAC', macAddresses: ['aa:aa:aa:aa:aa:aa'] }, { id: 'y', typeId: 'DOMAIN' }], true, /\[1\]\.domain: is required/],
      [{ id: 'x', typeId: 'MAC', macAddresses: [] }, true, /./],
    ];
    for (const [body, bulk, message] of cases) {
      const r = await respond(body, bulk);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'ERR_INVALID_ARGUMENT');
      assert.match(r.body.error.message, message);
    }
    const none = await api(ctrl, 'POST', `${C}/posture-response`, { body: { id: 'x', typeId: 'MAC', macAddresses: [] } });
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'ERR_UNAUTHORIZED');
    assert.deepEqual(await postureData(), before);
    assert.equal((await api(ctrl, 'GET', `${M}/identities/${device}/posture-data`, { token: session })).status, 403, 'the management read is for admins');
    assert.equal(await send('GET', '/identities/nope/posture-data'), 404);
  });
});

// ---- authentication policies --------------------------------------------------------

describe('auth policies', () => {
  const refusedLogin = (r: { status: number; body: any }, code: string, message?: RegExp) => {
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    if (message !== undefined) assert.match(r.body.error.message, message);
  };

  test('the built-in default exists; create fills what a body leaves out; patch keeps, put resets', async () => {
    const def = await get('/auth-policies/default');
    assertSpec('detailAuthPolicyEnvelope', def);
    assert.equal(def.data.name, 'Default');
    assert.deepEqual(def.data.primary.updb, { allowed: true, minPasswordLength: 5, requireMixedCase: false, requireNumberChar: false, requireSpecialChar: false, maxAttempts: 0, lockoutDurationMinutes: 0 });
    assert.deepEqual(def.data.primary.cert, { allowed: true, allowExpiredCerts: false });
    assert.deepEqual(def.data.secondary, { requireTotp: false, requireExtJwtSigner: null });
    const full = {
      name: 'ap-full',
      primary: { cert: { allowed: true, allowExpiredCerts: true }, extJwt: { allowed: false, allowedSigners: [] }, updb: { allowed: true, minPasswordLength: 12, requireMixedCase: true, requireNumberChar: true, requireSpecialChar: true, maxAttempts: 5, lockoutDurationMinutes: 15 } },
      secondary: { requireTotp: true, requireExtJwtSigner: null },
      tags: { team: 'ot' },
    };
    assertSpec('authPolicyCreate', full);
    const id = await post('/auth-policies', full);
    const d = await get(`/auth-policies/${id}`);
    assertSpec('detailAuthPolicyEnvelope', d);
    assert.deepEqual([d.data.primary, d.data.secondary, d.data.tags], [full.primary, full.secondary, full.tags]);
    const partial = await post('/auth-policies', { name: 'ap-partial', primary: { updb: { allowed: false } } });
    const pd = (await get(`/auth-policies/${partial}`)).data;
    assert.deepEqual([pd.primary.updb.allowed, pd.primary.updb.minPasswordLength, pd.primary.cert.allowed, pd.secondary.requireTotp], [false, 5, true, false]);
    assert.equal(await send('PATCH', `/auth-policies/${id}`, { primary: { updb: { maxAttempts: 7 } }, secondary: { requireTotp: null } }), 200);
    let p = (await get(`/auth-policies/${id}`)).data;
    assert.deepEqual([p.primary.updb.maxAttempts, p.primary.updb.minPasswordLength, p.secondary.requireTotp, p.primary.cert.allowExpiredCerts], [7, 12, true, true]);
    assert.equal(await send('PUT', `/auth-policies/${id}`, { name: 'ap-full', primary: { cert: { allowed: false } } }), 200);
    p = (await get(`/auth-policies/${id}`)).data;
    assert.deepEqual([p.primary.cert.allowed, p.primary.updb.maxAttempts, p.secondary.requireTotp, p.tags], [false, 0, false, {}]);
    const list = await get('/auth-policies');
    assertSpec('listAuthPoliciesEnvelope', list);
    assert.deepEqual(list.data.map((x: any) => x.name), ['Default', 'ap-full', 'ap-partial']);
    assert.equal((await get('/summary')).data.authPolicies, 3);
    assert.equal(await send('DELETE', `/auth-policies/${partial}`), 200);
  });

  test('bad policies, unknown policies on identities and deleting what is in use are refused and change nothing', async () => {
    const name = uniq('ap');
    const inUse = await post('/auth-policies', { name: uniq('ap-used') });
    await post('/identities', { name: uniq('ap-user'), isAdmin: false, authPolicyId: inUse });
    const other = await post('/identities', { name: uniq('ap-user'), isAdmin: false });
    await refusedAll([
      ['POST', '/auth-policies', { name, primary: { updb: { minPasswordLength: 3 } } }, 400, 'ERR_INVALID_ARGUMENT', /minPasswordLength/],
      ['POST', '/auth-policies', { name, primary: { updb: { maxAttempts: -1 } } }, 400, 'ERR_INVALID_ARGUMENT', /maxAttempts/],
      ['POST', '/auth-policies', { name, primary: { cert: { allowed: 'no' } } }, 400, 'ERR_INVALID_ARGUMENT', /allowed/],
      ['POST', '/auth-policies', { name, primary: { cert: { allowed: false }, updb: { allowed: false }, extJwt: { allowed: false } } }, 400, 'ERR_INVALID_ARGUMENT', /primary: at least one of cert, updb or extJwt/],
      ['POST', '/auth-policies', { name, primary: { extJwt: { allowedSigners: ['okta'] } } }, 404, 'ERR_NOT_FOUND', /primary\.extJwt\.allowedSigners: no external JWT signer "okta"/],
      ['POST', '/auth-policies', { name, secondary: { requireExtJwtSigner: 'okta' } }, 404, 'ERR_NOT_FOUND', /secondary\.requireExtJwtSigner/],
      ['POST', '/auth-policies', { primary: {} }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/auth-policies', { name: 'Default' }, 409, 'ERR_NAME_IN_USE'],
      ['DELETE', '/auth-policies/default', undefined, 409, 'ERR_CONFLICT', /default auth policy cannot be deleted/],
      ['DELETE', `/auth-policies/${inUse}`, undefined, 409, 'ERR_CONFLICT', /is used by 1 identity \("ap-user-\d+"\); give them another policy first/],
      ['POST', '/identities', { name: uniq('ap-user'), isAdmin: false, authPolicyId: 'nope' }, 404, 'ERR_NOT_FOUND', /authPolicyId: auth policy nope not found/],
      ['PATCH', `/identities/${other}`, { authPolicyId: 'nope' }, 404, 'ERR_NOT_FOUND', /authPolicyId/],
    ]);
    assert.equal((await get(`/identities/${other}`)).data.authPolicyId, 'default');
    assert.equal(await send('PATCH', `/identities/${other}`, { authPolicyId: inUse }), 200);
    const d = (await get(`/identities/${other}`)).data;
    assertSpec('identityDetail', d);
    assert.equal(d.authPolicyId, inUse);
    assert.equal(d.authPolicy.name, (await get(`/auth-policies/${inUse}`)).data.name);
    assert.equal((await get(`/identities?${q(`authPolicyId = "${inUse}"`)}`)).data.length, 2);
  });

  test('a cert-only policy refuses password logins; an updb-only policy refuses certificate logins', async () => {
    const certOnly = await post('/auth-policies', { name: uniq('cert-only'), primary: { updb: { allowed: false } } });
    const updbOnly = await post('/auth-policies', { name: uniq('updb-only'), primary: { cert: { allowed: false } } });
    const pwUser = await userWithPassword('ap-pw-user', 'pw-user-pass');
    const certUser = await certIdentity(ctrl, token, 'ap-cert-user');
    assert.equal((await login('ap-pw-user', 'pw-user-pass')).status, 200);
    assert.equal((await certLogin(ctrl, certUser)).status, 200);
    assert.equal(await send('PATCH', `/identities/${pwUser}`, { authPolicyId: certOnly }), 200);
    assert.equal(await send('PATCH', `/identities/${certUser.id}`, { authPolicyId: updbOnly }), 200);
    refusedLogin(await login('ap-pw-user', 'pw-user-pass'), 'ERR_AUTH_METHOD_NOT_ALLOWED', /auth policy "cert-only-\d+" of identity "ap-pw-user" does not allow password \(method=password\) authentication/);
    refusedLogin(await login('ap-pw-user', 'wrong-pass'), 'ERR_INVALID_AUTH', /invalid username or password/);
    refusedLogin(await certLogin(ctrl, certUser), 'ERR_AUTH_METHOD_NOT_ALLOWED', /does not allow certificate \(method=cert\) authentication/);
    // The same on the management API (an admin under a cert-only policy).
    const admin = await userWithPassword('ap-admin', 'admin-pass-2', { isAdmin: true, authPolicyId: certOnly });
    const m = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'ap-admin', password: 'admin-pass-2' } });
    refusedLogin(m, 'ERR_AUTH_METHOD_NOT_ALLOWED');
    assertSpec('apiErrorEnvelope', m.body);
    assert.equal(await send('PATCH', `/identities/${admin}`, { authPolicyId: 'default' }), 200);
    assert.equal((await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'ap-admin', password: 'admin-pass-2' } })).status, 200);
    assert.equal(await send('PATCH', `/identities/${certUser.id}`, { authPolicyId: 'default' }), 200);
    assert.equal((await certLogin(ctrl, certUser)).status, 200);
  });

  test('updb password rules apply at enrollment and at a password change', async () => {
    const strict = await post('/auth-policies', { name: uniq('strict'), primary: { updb: { minPasswordLength: 10, requireMixedCase: true, requireNumberChar: true, requireSpecialChar: true } } });
    const id = await post('/identities', { name: 'ap-strict', isAdmin: false, enrollment: { updb: 'ap-strict' }, authPolicyId: strict });
    const ott = (await get(`/identities/${id}`)).data.enrollment.updb.token;
    const weak = await api(ctrl, 'POST', `${C}/enroll/updb?token=${ott}`, { body: { password: 'short' } });
    assert.equal(weak.status, 400);
    assert.equal(weak.body.error.code, 'ERR_PASSWORD_POLICY');
    assert.match(weak.body.error.message, /have 10 to 100 characters, mix lower- and upper-case letters, contain a digit, contain a character that is neither a letter nor a digit/);
    const almost = await api(ctrl, 'POST', `${C}/enroll/updb?token=${ott}`, { body: { password: 'Longenough1' } });
    assert.match(almost.body.error.message, /^the password must contain a character that is neither/);
    assert.ok((await get(`/identities/${id}`)).data.enrollment.updb, 'the token is still unused');
    assert.equal((await api(ctrl, 'POST', `${C}/enroll/updb?token=${ott}`, { body: { password: 'Longenough1!' } })).status, 200);
    const t = await sessionOf('ap-strict', 'Longenough1!');
    const authenticatorId = (await get(`/identities/${id}`)).data.authenticators.updb.id;
    const change = (body: unknown) => api(ctrl, 'PUT', `${C}/current-identity/authenticators/${authenticatorId}`, { token: t, body });
    const wrong = await change({ currentPassword: 'nope-nope-1!', password: 'Another-one-2' });
    assert.deepEqual([wrong.status, wrong.body.error.code], [401, 'ERR_INVALID_AUTH']);
    const weakChange = await change({ currentPassword: 'Longenough1!', password: 'alllowercase' });
    assert.deepEqual([weakChange.status, weakChange.body.error.code], [400, 'ERR_PASSWORD_POLICY']);
    assert.equal((await change({ currentPassword: 'Longenough1!', password: 'Another-one-2' })).status, 200);
    refusedLogin(await login('ap-strict', 'Longenough1!'), 'ERR_INVALID_AUTH');
    assert.equal((await login('ap-strict', 'Another-one-2')).status, 200);
    const foreign = await api(ctrl, 'PUT', `${C}/current-identity/authenticators/${authenticatorId}`, { token, body: { currentPassword: 'x', password: 'y' } });
    assert.equal(foreign.status, 404, 'only the identity\'s own authenticators');
  });

  test('maxAttempts wrong passwords lock the identity (every method) until the lock ends or an admin enables it', async () => {
    const strictLock = await post('/auth-policies', { name: uniq('lock'), primary: { updb: { maxAttempts: 3, lockoutDurationMinutes: 1 } } });
    const id = await userWithPassword('ap-locked', 'right-pass-1', { authPolicyId: strictLock });
    // Failures in a row: a success in between starts the count again.
    for (let i = 0; i < 2; i++) refusedLogin(await login('ap-locked', 'wrong-pass'), 'ERR_INVALID_AUTH');
    assert.equal((await login('ap-locked', 'right-pass-1')).status, 200);
    for (let i = 0; i < 2; i++) refusedLogin(await login('ap-locked', 'wrong-pass'), 'ERR_INVALID_AUTH');
    const t0 = Date.now();
    refusedLogin(await login('ap-locked', 'wrong-pass'), 'ERR_AUTH_LOCKED', /invalid username or password; after 3 failed attempts in a row, identity "ap-locked" is locked until /);
    refusedLogin(await login('ap-locked', 'right-pass-1'), 'ERR_AUTH_LOCKED', /identity "ap-locked" is locked after too many failed password logins, until /);
    const d = (await get(`/identities/${id}`)).data;
    assertSpec('identityDetail', d);
    assert.equal(d.disabled, true);
    assert.ok(Math.abs(Date.parse(d.disabledUntil) - (t0 + 60_000)) < 5_000, d.disabledUntil);
    assert.ok(d.disabledAt !== null);
    assert.equal(await send('POST', `/identities/${id}/enable`), 200);
    assert.equal((await get(`/identities/${id}`)).data.disabled, false);
    assert.equal((await login('ap-locked', 'right-pass-1')).status, 200);
    assert.equal(await send('POST', '/identities/nope/enable'), 404);
    // lockoutDurationMinutes 0: locked until enabled; the certificate is refused too.
    const forever = await post('/auth-policies', { name: uniq('lock-forever'), primary: { updb: { maxAttempts: 1, lockoutDurationMinutes: 0 } } });
    const both = await certIdentity(ctrl, token, 'ap-locked-both', { authPolicyId: forever });
    const username = 'ap-locked-both-pw';
    const withPw = await userWithPassword(username, 'right-pass-2', { authPolicyId: forever });
    refusedLogin(await login(username, 'wrong'), 'ERR_AUTH_LOCKED', /locked until an admin enables it \(POST \/edge\/management\/v1\/identities\/\S+\/enable\)/);
    assert.equal((await get(`/identities/${withPw}`)).data.disabledUntil, null);
    refusedLogin(await login(username, 'right-pass-2'), 'ERR_AUTH_LOCKED');
    assert.equal((await certLogin(ctrl, both)).status, 200, 'another identity is not affected');
    assert.equal(await send('POST', `/identities/${withPw}/enable`), 200);
    assert.equal((await login(username, 'right-pass-2')).status, 200);
  });

  test('CLI: create, list, assign and delete auth policies', () => {
    const env = { ZTEDGE_CONFIG_DIR: join(dir, 'cli-ap') };
    const cli = (...args: string[]) => runCli(args, env, dir);
    assert.equal(cli('edge', 'login', ctrl.url, '-u', 'admin', '--password-file', join(ctrl.dataDir, 'admin.password'), '-y').code, 0);
    let r = cli('edge', 'create', 'auth-policy', 'cli-ap', '--no-updb', '--require-totp', '--max-attempts', '4', '--lockout-minutes', '10');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /New auth policy cli-ap created with id: \S+/);
    r = cli('edge', 'list', 'auth-policies', 'name = "cli-ap"');
    assert.match(r.stdout, /^ID\s+NAME\s+METHODS\s+TOTP\s+LOCKOUT/m);
    assert.match(r.stdout, /cli-ap\s+cert\s+true\s+4 tries\/10 min/);
    r = cli('edge', 'create', 'identity', 'device', 'cli-ap-dev', '--auth-policy', 'cli-ap');
    assert.equal(r.code, 0, r.stderr);
    r = cli('edge', 'list', 'identities', 'name = "cli-ap-dev"', '--json');
    assert.equal(JSON.parse(r.stdout)[0].authPolicy.name, 'cli-ap');
    r = cli('edge', 'delete', 'auth-policy', 'cli-ap');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_CONFLICT/);
    r = cli('edge', 'update', 'identity', 'cli-ap-dev', '--auth-policy', 'default');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Updated identity cli-ap-dev \(\S+\): authPolicyId/);
    r = cli('edge', 'delete', 'auth-policy', 'cli-ap');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(cli('edge', 'update', 'identity', 'cli-ap-dev').code, 2);
    assert.equal(cli('edge', 'create', 'auth-policy', 'x', '--max-attempts', 'many').code, 2);
    r = cli('edge', 'update', 'identity', 'cli-ap-dev', '--auth-policy', 'nope');
    assert.equal(r.code, 2);
  });
});

describe('expired certificates', () => {
  let short: ControllerProcess;
  let shortToken: string;

  before(async () => {
    // Certificates valid for ~3 s.
    short = await startControllerProcess(join(dir, 'ctrl-short-certs'), ['--cert-days', '0.000035']);
    shortToken = await adminToken(short);
  });

  after(async () => { await short?.stop(); });

  test('an expired certificate we issued is refused, unless the identity\'s policy allows expired certificates', async () => {
    const who = await certIdentity(short, shortToken, 'expiring');
    assert.equal((await certLogin(short, who)).status, 200);
    await sleep(3_500);
    const refused = await certLogin(short, who);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, 'ERR_INVALID_AUTH');
    assert.match(refused.body.error.message, /has expired \(the auth policy "Default" of identity "expiring" does not allow expired certificates\)/);
    const lenient = await api(short, 'POST', `${M}/auth-policies`, { token: shortToken, body: { name: 'lenient', primary: { cert: { allowed: true, allowExpiredCerts: true } } } });
    assert.equal(lenient.status, 201);
    assert.equal((await api(short, 'PATCH', `${M}/identities/${who.id}`, { token: shortToken, body: { authPolicyId: lenient.body.data.id } })).status, 200);
    assert.equal((await certLogin(short, who)).status, 200);
  });
});

// ---- MFA (TOTP) ------------------------------------------------------------------------

describe('MFA with TOTP', () => {
  /** The secret of an otpauth:// provisioning URL. */
  const secretOf = (url: string): Buffer => base32Decode(new URL(url).searchParams.get('secret')!);
  const codeAt = (secret: Buffer, step: number): string => hotp(secret, step);
  const call = (method: string, path: string, t: string, body?: unknown, headers?: Record<string, string>, prefix = C) =>
    headers === undefined ? api(ctrl, method, `${prefix}${path}`, { token: t, body }) : rawCall(method, `${prefix}${path}`, t, headers);
  /** A call with extra headers (the api helper sends only zt-session). */
  const rawCall = async (method: string, path: string, t: string, headers: Record<string, string>) => {
    const { request } = await import('../../src/identity/https.js');
    const r = await request(`${ctrl.url}${path}`, { ca: ctrl.ca, method, headers: { 'zt-session': t, ...headers } });
    return { status: r.status, body: JSON.parse(r.body.toString()) };
  };
  const refused = (r: { status: number; body: any }, code: string, message?: RegExp) => {
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    if (message !== undefined) assert.match(r.body.error.message, message);
  };

  let user: string;
  let secret: Buffer;
  let recovery: string[];
  let verifiedStep: number;
  let adminRecovery: string[];

  before(async () => {
    user = await userWithPassword('mfa-user', 'mfa-user-pass');
  });

  test('enroll: provisioning URL and recovery codes, verified by a first code', async () => {
    const t = await sessionOf('mfa-user', 'mfa-user-pass');
    assert.equal((await call('GET', '/current-identity/mfa', t)).status, 404, 'not enrolled yet');
    const started = await call('POST', '/current-identity/mfa', t);
    assert.equal(started.status, 201, JSON.stringify(started.body));
    assertSpec('createEnvelope', started.body);
    const url = new URL(started.body.data.provisioningUrl);
    assert.equal(url.protocol, 'otpauth:');
    assert.equal(decodeURIComponent(url.pathname), '/ztedge:mfa-user');
    assert.deepEqual([url.searchParams.get('algorithm'), url.searchParams.get('digits'), url.searchParams.get('period')], ['SHA1', '6', '30']);
    secret = secretOf(started.body.data.provisioningUrl);
    assert.equal(secret.length, 20);
    recovery = started.body.data.recoveryCodes;
    assert.equal(recovery.length, 10);
    for (const c of recovery) assert.match(c, /^[A-Z2-9]{8}$/);
    const pending = await call('GET', '/current-identity/mfa', t);
    assertSpec('detailMfaEnvelope', pending.body);
    assert.deepEqual([pending.body.data.isVerified, pending.body.data.provisioningUrl, pending.body.data.recoveryCodes], [false, started.body.data.provisioningUrl, recovery]);
    assert.equal((await get(`/identities/${user}`)).data.isMfaEnabled, false);
    // A wrong code and a recovery code do not verify an enrollment.
    const now = totpStep(Date.now());
    refused(await call('POST', '/current-identity/mfa/verify', t, { code: codeAt(secret, now + 5) }), 'ERR_MFA_INVALID_CODE', /not the current TOTP code/);
    refused(await call('POST', '/current-identity/mfa/verify', t, { code: recovery[0] }), 'ERR_MFA_INVALID_CODE');
    verifiedStep = totpStep(Date.now());
    assert.equal((await call('POST', '/current-identity/mfa/verify', t, { code: codeAt(secret, verifiedStep) })).status, 200);
    const done = await call('GET', '/current-identity/mfa', t);
    assertSpec('detailMfaEnvelope', done.body);
    assert.equal(done.body.data.isVerified, true);
    assert.equal(done.body.data.provisioningUrl, undefined, 'the secret is not shown again');
    assert.equal(done.body.data.recoveryCodes, undefined);
    assert.equal((await get(`/identities/${user}`)).data.isMfaEnabled, true);
    const again = await call('POST', '/current-identity/mfa', t);
    assert.deepEqual([again.status, again.body.error.code], [409, 'ERR_CONFLICT']);
  });

  test('a login then needs MFA: partial session, authQueries, every other call refused until a fresh code passes', async () => {
    const r = await login('mfa-user', 'mfa-user-pass');
    assert.equal(r.status, 200);
    assertSpec('currentApiSessionDetail', r.body.data);
    assert.deepEqual(r.body.data.authQueries, [{ typeId: 'MFA', provider: 'ziti', httpMethod: 'POST', httpUrl: './authenticate/mfa', format: 'alphaNumeric', minLength: 6, maxLength: 8, isTotpEnrolled: true }]);
    assert.deepEqual([r.body.data.isMfaRequired, r.body.data.isMfaComplete], [true, false]);
    const t = r.body.data.token as string;
    refused(await call('POST', '/posture-response', t, { id: 'x', typeId: 'DOMAIN', domain: 'corp' }), 'ERR_MFA_REQUIRED', /has not passed MFA yet/);
    refused(await call('PUT', '/current-identity/authenticators/x', t, { currentPassword: 'a', password: 'b' }), 'ERR_MFA_REQUIRED');
    assert.equal((await call('GET', '/current-api-session', t)).status, 200, 'a partial session may read itself');
    refused(await call('POST', '/authenticate/mfa', t, { code: codeAt(secret, verifiedStep + 7) }), 'ERR_MFA_INVALID_CODE');
    // The code used to verify the enrollment cannot be used again.
    const replay = await call('POST', '/authenticate/mfa', t, { code: codeAt(secret, verifiedStep) });
    refused(replay, 'ERR_MFA_INVALID_CODE');
    if (totpStep(Date.now()) <= verifiedStep + 1) assert.match(replay.body.error.message, /already been used/);
    const next = await call('POST', '/authenticate/mfa', t, { code: codeAt(secret, verifiedStep + 1) });
    assert.equal(next.status, 200, JSON.stringify(next.body));
    const me = await call('GET', '/current-api-session', t);
    assertSpec('currentApiSessionDetail', me.body.data);
    assert.deepEqual([me.body.data.isMfaComplete, me.body.data.authQueries], [true, []]);
    assert.equal((await call('POST', '/posture-response', t, { id: 'x', typeId: 'DOMAIN', domain: 'corp' })).status, 201);
    const pd = (await get(`/identities/${user}/posture-data`)).data.apiSessionPostureData[me.body.data.id];
    assertSpec('postureDataMfa', pd.mfa);
    assert.equal(pd.mfa.passedMfa, true);
    assert.ok(Math.abs(Date.parse(pd.mfa.passedAt) - Date.now()) < 10_000);
    // Another session: the same code again is a replay.
    const t2 = await sessionOf('mfa-user', 'mfa-user-pass');
    refused(await call('POST', '/authenticate/mfa', t2, { code: codeAt(secret, verifiedStep + 1) }), 'ERR_MFA_INVALID_CODE');
  });

  test('recovery codes are single-use; wrong codes end the session after five', async () => {
    const t = await sessionOf('mfa-user', 'mfa-user-pass');
    assert.equal((await call('POST', '/authenticate/mfa', t, { code: recovery[0]!.toLowerCase() })).status, 200);
    const t2 = await sessionOf('mfa-user', 'mfa-user-pass');
    refused(await call('POST', '/authenticate/mfa', t2, { code: recovery[0] }), 'ERR_MFA_INVALID_CODE', /neither the current TOTP code nor an unused recovery code/);
    assert.equal((await call('POST', '/authenticate/mfa', t2, { code: recovery[1] })).status, 200);
    const shown = await call('GET', '/current-identity/mfa/recovery-codes', t2, undefined, { 'mfa-validation-code': recovery[2]! });
    assert.equal(shown.status, 200, JSON.stringify(shown.body));
    assertSpec('detailMfaRecoveryCodesEnvelope', shown.body);
    assert.deepEqual(shown.body.data.recoveryCodes, recovery.slice(3), 'used codes are gone');
    const t3 = await sessionOf('mfa-user', 'mfa-user-pass');
    for (let i = 1; i <= 5; i++) {
      const r = await call('POST', '/authenticate/mfa', t3, { code: 'ZZZZZZZZ' });
      refused(r, 'ERR_MFA_INVALID_CODE', i === 5 ? /after 5 wrong codes this API session has ended/ : undefined);
    }
    refused(await call('GET', '/current-api-session', t3), 'ERR_UNAUTHORIZED');
    refused(await call('POST', '/authenticate/mfa', t3, { code: recovery[3] }), 'ERR_UNAUTHORIZED');
  });

  test('removing MFA needs a code; an admin can remove it too', async () => {
    const t = await sessionOf('mfa-user', 'mfa-user-pass');
    assert.equal((await call('POST', '/authenticate/mfa', t, { code: recovery[3] })).status, 200);
    const none = await call('DELETE', '/current-identity/mfa', t);
    assert.deepEqual([none.status, none.body.error.code], [400, 'ERR_INVALID_ARGUMENT']);
    refused(await call('DELETE', '/current-identity/mfa', t, undefined, { 'mfa-validation-code': '000000' }), 'ERR_MFA_INVALID_CODE');
    assert.equal((await call('DELETE', '/current-identity/mfa', t, { code: recovery[4] })).status, 200);
    assert.equal((await get(`/identities/${user}`)).data.isMfaEnabled, false);
    const plain = await login('mfa-user', 'mfa-user-pass');
    assert.deepEqual([plain.body.data.isMfaRequired, plain.body.data.authQueries], [false, []]);
    // Enrolled again (not verified): the admin removes it.
    assert.equal((await call('POST', '/current-identity/mfa', plain.body.data.token)).status, 201);
    assert.equal(await send('DELETE', `/identities/${user}/mfa`), 200);
    assert.equal(await send('DELETE', `/identities/${user}/mfa`), 404);
    assert.equal((await call('GET', '/current-identity/mfa', plain.body.data.token)).status, 404);
  });

  test('an auth policy that requires TOTP: enroll inside the partial session; the management API too', async () => {
    const totpPolicy = await post('/auth-policies', { name: uniq('totp'), secondary: { requireTotp: true } });
    await userWithPassword('mfa-admin', 'mfa-admin-pass', { isAdmin: true, authPolicyId: totpPolicy });
    const r = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'mfa-admin', password: 'mfa-admin-pass' } });
    assert.equal(r.status, 200);
    assert.equal(r.body.data.authQueries[0].isTotpEnrolled, false, 'not enrolled: enroll first');
    const t = r.body.data.token as string;
    refused(await api(ctrl, 'GET', `${M}/identities`, { token: t }), 'ERR_MFA_REQUIRED');
    const notEnrolled = await call('POST', '/authenticate/mfa', t, { code: '123456' }, undefined, M);
    assert.deepEqual([notEnrolled.status, notEnrolled.body.error.code], [404, 'ERR_NOT_FOUND']);
    const started = await call('POST', '/current-identity/mfa', t, undefined, undefined, M);
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const s2 = secretOf(started.body.data.provisioningUrl);
    adminRecovery = started.body.data.recoveryCodes;
    assert.equal((await call('POST', '/current-identity/mfa/verify', t, { code: codeAt(s2, totpStep(Date.now())) }, undefined, M)).status, 200);
    assert.equal((await api(ctrl, 'GET', `${M}/identities`, { token: t })).status, 200, 'verifying the enrollment passed MFA for this session');
    const again = await api(ctrl, 'POST', `${M}/authenticate?method=password`, { body: { username: 'mfa-admin', password: 'mfa-admin-pass' } });
    assert.equal(again.body.data.authQueries[0].isTotpEnrolled, true);
    refused(await api(ctrl, 'GET', `${M}/identities`, { token: again.body.data.token }), 'ERR_MFA_REQUIRED');
  });

  test('CLI: login asks for the MFA code (--mfa-code)', () => {
    const env = { ZTEDGE_CONFIG_DIR: join(dir, 'cli-mfa') };
    const cli = (...args: string[]) => runCli(args, env, dir);
    const base = ['edge', 'login', ctrl.url, '-u', 'mfa-admin', '-p', 'mfa-admin-pass', '-y'];
    let r = cli(...base);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /mfa-admin must pass MFA: give --mfa-code CODE/);
    r = cli(...base, '--mfa-code', 'WRONGWRO');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_MFA_INVALID_CODE/);
    r = cli(...base, '--mfa-code', adminRecovery[0]!);
    assert.equal(r.code, 0, r.stderr);
    r = cli('edge', 'list', 'identities', 'name = "mfa-admin"');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mfa-admin/);
  });
});
