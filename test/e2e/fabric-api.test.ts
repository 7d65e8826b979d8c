/**
 * The fabric's management API end to end: edge routers (and their erott
 * enrollment on the client API), config types, configs, services and
 * service policies, on the real bundled controller process over HTTPS.
 * Answers are checked against OpenZiti's definitions; every refused input
 * must get its 4xx code and change nothing; issued router certificates are
 * checked with `openssl verify`; the CLI verbs run as a user runs them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { createCsr, FileKeyStore, generatePrivateKeyPem } from '../../src/keys/index.js';
import { adminCalls, adminToken, api, assertSpec, openssl, removeDir, runCli, startControllerProcess, tempDir, type AdminCalls, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';
const C = '/edge/client/v1';

let dir: string;
let ctrl: ControllerProcess;
let token: string;
let n = 0;
let post: AdminCalls['post'];
let get: AdminCalls['get'];
let summary: AdminCalls['summary'];
let refusedAll: AdminCalls['refusedAll'];

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'), ['--enrollment-minutes', '60']);
  token = await adminToken(ctrl);
  ({ post, get, summary, refusedAll } = adminCalls(ctrl, token));
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

// ---- helpers ----------------------------------------------------------------

function uniq(prefix: string): string {
  return `${prefix}-${++n}`;
}

async function clientCsr(): Promise<string> {
  return createCsr(FileKeyStore.fromPem(generatePrivateKeyPem('ec-p256'), 'mem'), 'CN=router, O=ztedge');
}

/** A server CSR made by openssl, asking for `san` (openssl syntax) when given. */
function serverCsr(san?: string, keyArgs: string[] = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']): string {
  const keyFile = join(dir, `server-${++n}.key`);
  const args = ['req', '-new', ...keyArgs, '-nodes', '-keyout', keyFile, '-subj', '/CN=router-server'];
  if (san !== undefined) args.push('-addext', `subjectAltName=${san}`);
  const r = openssl(args);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function leafOf(chainPem: string): string {
  return chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0] + '\n';
}

/** openssl verify of the leaf of `chainPem` against the controller CA bundle, for a purpose. */
function verify(chainPem: string, purpose: 'sslclient' | 'sslserver'): { code: number; stdout: string; stderr: string } {
  const ca = join(dir, 'ca.pem');
  const leaf = join(dir, `leaf-${++n}.pem`);
  writeFileSync(ca, ctrl.ca);
  writeFileSync(leaf, leafOf(chainPem));
  return openssl(['verify', '-purpose', purpose, '-CAfile', ca, leaf]);
}

async function createRouter(body: Record<string, unknown>): Promise<{ id: string; detail: any }> {
  const id = await post('/edge-routers', body);
  const d = await get(`/edge-routers/${id}`);
  assertSpec('detailedEdgeRouterEnvelope', d);
  return { id, detail: d.data };
}

async function enrollRouter(erottToken: string, body: Record<string, unknown>) {
  return api(ctrl, 'POST', `${C}/enroll/erott`, { body: { token: erottToken, ...body } });
}

const interceptData = { protocols: ['tcp'], addresses: ['web.plant', '10.9.0.0/16'], portRanges: [{ low: 80, high: 80 }, { low: 8000, high: 8100 }] };
const hostData = { protocol: 'tcp', address: '127.0.0.1', port: 8080 };

// ---- config types -------------------------------------------------------------

describe('config types', () => {
  test('intercept.v1 and host.v1 are built in, by id or name, with their JSON Schemas', async () => {
    const list = await get('/config-types');
    assertSpec('listConfigTypesEnvelope', list);
    assert.deepEqual(list.data.map((t: any) => t.name).sort(), ['host.v1', 'intercept.v1']);
    for (const name of ['intercept.v1', 'host.v1']) {
      const d = await get(`/config-types/${name}`);
      assertSpec('detailConfigTypeEnvelope', d);
      assert.equal(d.data.id, name);
      assert.equal(d.data.target, 'service');
      assert.equal(d.data.schema.type, 'object');
      assert.equal(d.data.schema.additionalProperties, false);
    }
    assert.deepEqual(Object.keys((await get('/config-types/intercept.v1')).data.schema.properties).sort(), ['addresses', 'dialOptions', 'portRanges', 'protocols', 'sourceIp']);
    const filtered = await get(`/config-types?filter=${encodeURIComponent('name = "host.v1"')}`);
    assert.equal(filtered.data.length, 1);
    const missing = await api(ctrl, 'GET', `${M}/config-types/ziti-tunneler-client.v1`, { token });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'ERR_NOT_FOUND');
    assert.equal((await api(ctrl, 'GET', `${M}/config-types`)).status, 401, 'admin session required');
  });
});

// ---- configs --------------------------------------------------------------------

describe('configs', () => {
  test('create by type name or id, read, list, filter by type', async () => {
    const a = await post('/configs', { name: 'web-intercept', configTypeId: 'intercept.v1', data: interceptData, tags: { site: 'a' } });
    const b = await post('/configs', { name: 'web-host', configTypeId: (await get('/config-types/host.v1')).data.id, data: hostData });
    const d = await get(`/configs/${a}`);
    assertSpec('detailConfigEnvelope', d);
    assert.equal(d.data.name, 'web-intercept');
    assert.equal(d.data.configTypeId, 'intercept.v1');
    assert.equal(d.data.configType.name, 'intercept.v1');
    assert.deepEqual(d.data.data, interceptData);
    assert.deepEqual(d.data.tags, { site: 'a' });
    const list = await get('/configs?limit=100');
    assertSpec('listConfigsEnvelope', list);
    assert.ok(list.data.some((c: any) => c.id === b));
    const hosts = await get(`/configs?filter=${encodeURIComponent('type = "host.v1"')}`);
    assert.ok(hosts.data.every((c: any) => c.configTypeId === 'host.v1'));
    const byType = await get('/config-types/host.v1/configs');
    assertSpec('listConfigsEnvelope', byType);
    assert.ok(byType.data.some((c: any) => c.id === b));
  });

  test('bad data, unknown types and duplicate names are refused and change nothing', async () => {
    const base = { name: uniq('cfg'), configTypeId: 'intercept.v1' };
    await refusedAll([
      ['POST', '/configs', { ...base, data: { ...interceptData, protocols: ['icmp'] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.protocols\[0\]/],
      ['POST', '/configs', { ...base, data: { ...interceptData, addresses: ['bad_host!'] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.addresses\[0\]/],
      ['POST', '/configs', { ...base, data: { ...interceptData, portRanges: [{ low: 0, high: 10 }] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.portRanges\[0\]\.low/],
      ['POST', '/configs', { ...base, data: { ...interceptData, portRanges: [{ low: 2000, high: 1000 }] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.portRanges\[0\]: low \(2000\) is greater than high \(1000\)/],
      ['POST', '/configs', { ...base, data: { ...interceptData, portRanges: [{ low: 1, high: 65536 }] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.portRanges\[0\]\.high/],
      ['POST', '/configs', { ...base, data: { protocols: ['tcp'], portRanges: [{ low: 1, high: 2 }] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.addresses: is required/],
      ['POST', '/configs', { ...base, data: { ...interceptData, color: 'red' } }, 400, 'ERR_INVALID_ARGUMENT', /data\.color/],
      ['POST', '/configs', { ...base, configTypeId: 'host.v1', data: { ...hostData, forwardProtocol: true, allowedProtocols: ['tcp'] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.protocol: set either protocol or forwardProtocol/],
      ['POST', '/configs', { ...base, configTypeId: 'host.v1', data: { protocol: 'tcp', port: 1, forwardAddress: true } }, 400, 'ERR_INVALID_ARGUMENT', /data\.allowedAddresses: is required when forwardAddress is true/],
      ['POST', '/configs', { ...base, configTypeId: 'host.v1', data: { ...hostData, allowedPortRanges: [{ low: 1, high: 2 }] } }, 400, 'ERR_INVALID_ARGUMENT', /data\.allowedPortRanges/],
      ['POST', '/configs', { ...base, configTypeId: 'host.v1', data: { ...hostData, address: '*.plant' } }, 400, 'ERR_INVALID_ARGUMENT', /data\.address/],
      ['POST', '/configs', { ...base, data: [1, 2] }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/configs', { ...base }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/configs', { name: '', configTypeId: 'intercept.v1', data: interceptData }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/configs', { ...base, configTypeId: 'ziti-tunneler-server.v1', data: {} }, 404, 'ERR_NOT_FOUND', /configTypeId/],
      ['POST', '/configs', { name: 'web-intercept', configTypeId: 'intercept.v1', data: interceptData }, 409, 'ERR_NAME_IN_USE'],
    ]);
  });

  test('patch and put check data against the config\'s type; the type cannot change', async () => {
    const id = await post('/configs', { name: uniq('cfg'), configTypeId: 'host.v1', data: hostData });
    const refused = await api(ctrl, 'PATCH', `${M}/configs/${id}`, { token, body: { data: { ...hostData, port: 0 } } });
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /data\.port/);
    assert.equal((await get(`/configs/${id}`)).data.data.port, 8080);
    const renamed = uniq('renamed');
    assert.equal((await api(ctrl, 'PATCH', `${M}/configs/${id}`, { token, body: { name: renamed, data: { ...hostData, port: 9090 }, configTypeId: 'intercept.v1' } })).status, 200);
    const d = (await get(`/configs/${id}`)).data;
    assert.equal(d.name, renamed);
    assert.equal(d.data.port, 9090);
    assert.equal(d.configTypeId, 'host.v1');
    assert.equal((await api(ctrl, 'PUT', `${M}/configs/${id}`, { token, body: { name: renamed, data: { forwardProtocol: true, allowedProtocols: ['udp'], address: 'x', port: 1 } } })).status, 200);
    assert.deepEqual((await get(`/configs/${id}`)).data.data.allowedProtocols, ['udp']);
    assert.equal((await api(ctrl, 'PATCH', `${M}/configs/${id}`, { token, body: { name: 'web-host' } })).status, 409);
    assert.equal((await api(ctrl, 'PATCH', `${M}/configs/nope`, { token, body: { name: 'x' } })).status, 404);
    assert.equal((await api(ctrl, 'DELETE', `${M}/configs/${id}`, { token })).status, 200);
    assert.equal((await api(ctrl, 'DELETE', `${M}/configs/${id}`, { token })).status, 404);
  });
});

// ---- services -------------------------------------------------------------------

describe('services', () => {
  test('create with configs by name or id; the detail carries the config map', async () => {
    const hostId = (await get(`/configs?filter=${encodeURIComponent('name = "web-host"')}`)).data[0].id;
    const id = await post('/services', { name: 'web', roleAttributes: ['demo', 'http'], configs: ['web-intercept', hostId], encryptionRequired: true });
    const d = await get(`/services/${id}`);
    assertSpec('detailServiceEnvelope', d);
    assert.equal(d.data.name, 'web');
    assert.deepEqual(d.data.roleAttributes, ['demo', 'http']);
    assert.equal(d.data.configs.length, 2);
    assert.ok(d.data.configs.includes(hostId));
    assert.deepEqual(d.data.config['intercept.v1'], interceptData);
    assert.deepEqual(d.data.config['host.v1'], hostData);
    assert.equal(d.data.encryptionRequired, true);
    assert.equal(d.data.terminatorStrategy, 'smartrouting');
    const cfgs = await get(`/services/${id}/configs`);
    assertSpec('listConfigsEnvelope', cfgs);
    assert.equal(cfgs.data.length, 2);
    const bare = await post('/services', { name: uniq('svc') });
    const bd = (await get(`/services/${bare}`)).data;
    assert.equal(bd.encryptionRequired, true, 'encryptionRequired defaults to true');
    assert.deepEqual(bd.configs, []);
    assert.deepEqual(bd.config, {});
    const list = await get(`/services?filter=${encodeURIComponent('roleAttributes contains "demo"')}`);
    assertSpec('listServicesEnvelope', list);
    assert.deepEqual(list.data.map((s: any) => s.name), ['web']);
  });

  test('bad bodies, unknown or same-type configs and duplicate names are refused', async () => {
    const other = await post('/configs', { name: uniq('intercept'), configTypeId: 'intercept.v1', data: interceptData });
    await refusedAll([
      ['POST', '/services', { roleAttributes: [] }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/services', { name: 'x y ', encryptionRequired: true }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/services', { name: uniq('svc'), encryptionRequired: 'yes' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/services', { name: uniq('svc'), configs: 'web-host' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/services', { name: uniq('svc'), configs: ['no-such-config'] }, 404, 'ERR_NOT_FOUND', /configs/],
      ['POST', '/services', { name: uniq('svc'), configs: ['web-intercept', other] }, 400, 'ERR_INVALID_ARGUMENT', /one config per type/],
      ['POST', '/services', { name: 'web', encryptionRequired: true }, 409, 'ERR_NAME_IN_USE'],
    ]);
  });

  test('patch and put; encryptionRequired is set at create only', async () => {
    const id = await post('/services', { name: uniq('svc'), encryptionRequired: false, roleAttributes: ['a'] });
    assert.equal((await api(ctrl, 'PATCH', `${M}/services/${id}`, { token, body: { roleAttributes: ['b'], configs: ['web-host'], encryptionRequired: true } })).status, 200);
    let d = (await get(`/services/${id}`)).data;
    assert.deepEqual(d.roleAttributes, ['b']);
    assert.deepEqual(Object.keys(d.config), ['host.v1']);
    assert.equal(d.encryptionRequired, false);
    assert.equal((await api(ctrl, 'PUT', `${M}/services/${id}`, { token, body: { name: d.name, encryptionRequired: false } })).status, 200);
    d = (await get(`/services/${id}`)).data;
    assert.deepEqual(d.roleAttributes, []);
    assert.deepEqual(d.configs, []);
    const bad = await api(ctrl, 'PATCH', `${M}/services/${id}`, { token, body: { configs: ['nope'] } });
    assert.equal(bad.status, 404);
    assert.equal((await api(ctrl, 'GET', `${M}/services/nope`, { token })).status, 404);
  });

  test('deleting a config takes it off its services; reads keep working', async () => {
    const cfg = await post('/configs', { name: uniq('doomed-cfg'), configTypeId: 'host.v1', data: hostData });
    const svc = await post('/services', { name: uniq('svc'), configs: [cfg] });
    assert.equal((await api(ctrl, 'DELETE', `${M}/configs/${cfg}`, { token })).status, 200);
    const d = await get(`/services/${svc}`);
    assertSpec('detailServiceEnvelope', d);
    assert.deepEqual(d.data.configs, []);
    assert.deepEqual(d.data.config, {});
    assertSpec('listServicesEnvelope', await get('/services?limit=500'));
  });
});

// ---- service policies -----------------------------------------------------------

describe('service policies', () => {
  let plc: string;
  let hmi: string;
  let web: string;

  before(async () => {
    plc = await post('/identities', { name: 'plc-a', isAdmin: false, roleAttributes: ['plc', 'line1'] });
    hmi = await post('/identities', { name: 'hmi-a', isAdmin: false, roleAttributes: ['line1'] });
    web = (await get(`/services?filter=${encodeURIComponent('name = "web"')}`)).data[0].id;
  });

  test('create with #attr, @name, @id and #all; @name is stored as @id and shown by name', async () => {
    const id = await post('/service-policies', { name: 'line1-web', type: 'Dial', semantic: 'AnyOf', identityRoles: ['#line1', '@plc-a'], serviceRoles: [`@${web}`, '#http'], postureCheckRoles: [] });
    const d = await get(`/service-policies/${id}`);
    assertSpec('detailServicePolicyEnvelop', d);
    assert.equal(d.data.type, 'Dial');
    assert.equal(d.data.semantic, 'AnyOf');
    assert.deepEqual(d.data.identityRoles, ['#line1', `@${plc}`]);
    assert.deepEqual(d.data.identityRolesDisplay, [{ role: '#line1', name: '#line1' }, { role: `@${plc}`, name: '@plc-a' }]);
    assert.deepEqual(d.data.serviceRolesDisplay, [{ role: `@${web}`, name: '@web' }, { role: '#http', name: '#http' }]);
    const all = await post('/service-policies', { name: 'bind-all', type: 'Bind', identityRoles: ['#all'], serviceRoles: ['#all'] });
    assert.equal((await get(`/service-policies/${all}`)).data.semantic, 'AllOf', 'semantic defaults to AllOf');
    const list = await get('/service-policies?limit=100');
    assertSpec('listServicePoliciesEnvelope', list);
    assert.deepEqual((await get(`/service-policies?filter=${encodeURIComponent('type = "Bind"')}`)).data.map((p: any) => p.name), ['bind-all']);
  });

  test('what a policy names, evaluated like the routers do', async () => {
    const allOf = await post('/service-policies', { name: uniq('allof'), type: 'Dial', semantic: 'AllOf', identityRoles: ['#plc', '#line1'], serviceRoles: ['#demo'] });
    const ids = await get(`/service-policies/${allOf}/identities`);
    assertSpec('listIdentitiesEnvelope', ids);
    assert.deepEqual(ids.data.map((i: any) => i.name), ['plc-a']);
    const svcs = await get(`/service-policies/${allOf}/services`);
    assertSpec('listServicesEnvelope', svcs);
    assert.deepEqual(svcs.data.map((s: any) => s.name), ['web']);
    const anyOf = (await get(`/service-policies?filter=${encodeURIComponent('name = "line1-web"')}`)).data[0].id;
    assert.deepEqual((await get(`/service-policies/${anyOf}/identities`)).data.map((i: any) => i.name), ['hmi-a', 'plc-a']);
  });

  test('bad selectors, types, semantics and names are refused and change nothing', async () => {
    const base = { name: uniq('pol'), type: 'Dial', semantic: 'AllOf' };
    await refusedAll([
      ['POST', '/service-policies', { ...base, identityRoles: ['plc'], serviceRoles: [] }, 400, 'ERR_INVALID_ARGUMENT', /identityRoles\[0\]: role "plc" must start with # .* or @/],
      ['POST', '/service-policies', { ...base, identityRoles: ['#'], serviceRoles: [] }, 400, 'ERR_INVALID_ARGUMENT', /identityRoles\[0\]/],
      ['POST', '/service-policies', { ...base, identityRoles: [], serviceRoles: ['#ok', '@'] }, 400, 'ERR_INVALID_ARGUMENT', /serviceRoles\[1\]/],
      ['POST', '/service-policies', { ...base, identityRoles: ['# spaced'], serviceRoles: [] }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/service-policies', { ...base, identityRoles: ['@ghost'], serviceRoles: [] }, 404, 'ERR_NOT_FOUND', /identityRoles\[0\]: no identity with id or name "ghost"/],
      ['POST', '/service-policies', { ...base, identityRoles: [], serviceRoles: ['@plc-a'] }, 404, 'ERR_NOT_FOUND', /serviceRoles\[0\]: no service/],
      ['POST', '/service-policies', { ...base, postureCheckRoles: ['@mfa'] }, 404, 'ERR_NOT_FOUND', /postureCheckRoles/],
      ['POST', '/service-policies', { ...base, type: 'Both' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/service-policies', { ...base, type: undefined }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/service-policies', { ...base, semantic: 'Some' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/service-policies', { ...base, identityRoles: '#plc' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/service-policies', { ...base, name: 'line1-web' }, 409, 'ERR_NAME_IN_USE'],
    ]);
    const id = (await get(`/service-policies?filter=${encodeURIComponent('name = "line1-web"')}`)).data[0].id;
    const before = (await get(`/service-policies/${id}`)).data;
    const bad = await api(ctrl, 'PATCH', `${M}/service-policies/${id}`, { token, body: { identityRoles: ['#ok', 'nope'] } });
    assert.equal(bad.status, 400);
    assert.deepEqual((await get(`/service-policies/${id}`)).data, before);
  });

  test('patch and put; renames keep @ selectors pointing at their entity', async () => {
    const id = await post('/service-policies', { name: uniq('pol'), type: 'Dial', identityRoles: ['@hmi-a'], serviceRoles: ['@web'] });
    assert.equal((await api(ctrl, 'PATCH', `${M}/identities/${hmi}`, { token, body: { name: 'hmi-renamed' } })).status, 200);
    let d = (await get(`/service-policies/${id}`)).data;
    assert.deepEqual(d.identityRoles, [`@${hmi}`]);
    assert.equal(d.identityRolesDisplay[0].name, '@hmi-renamed');
    assert.equal((await api(ctrl, 'PATCH', `${M}/service-policies/${id}`, { token, body: { type: 'Bind', semantic: 'AnyOf', identityRoles: ['#plc'] } })).status, 200);
    d = (await get(`/service-policies/${id}`)).data;
    assert.equal(d.type, 'Bind');
    assert.deepEqual(d.identityRoles, ['#plc']);
    assert.deepEqual(d.serviceRoles, [`@${web}`]);
    assert.equal((await api(ctrl, 'PUT', `${M}/service-policies/${id}`, { token, body: { name: d.name, type: 'Dial' } })).status, 200);
    d = (await get(`/service-policies/${id}`)).data;
    assert.deepEqual([d.semantic, d.identityRoles, d.serviceRoles], ['AllOf', [], []]);
    assert.equal((await api(ctrl, 'DELETE', `${M}/service-policies/${id}`, { token })).status, 200);
    assert.equal((await api(ctrl, 'GET', `${M}/service-policies/${id}`, { token })).status, 404);
    assert.equal((await api(ctrl, 'DELETE', `${M}/service-policies/${id}`, { token })).status, 404);
  });

  test('deleting an identity or a service removes its @ selectors; reads keep working', async () => {
    const ident = await post('/identities', { name: uniq('short-lived'), isAdmin: false });
    const svc = await post('/services', { name: uniq('short-svc') });
    const id = await post('/service-policies', { name: uniq('pol'), type: 'Dial', identityRoles: [`@${ident}`, '#plc'], serviceRoles: [`@${svc}`, '@web'] });
    assert.equal((await api(ctrl, 'DELETE', `${M}/identities/${ident}`, { token })).status, 200);
    assert.equal((await api(ctrl, 'DELETE', `${M}/services/${svc}`, { token })).status, 200);
    const d = await get(`/service-policies/${id}`);
    assertSpec('detailServicePolicyEnvelop', d);
    assert.deepEqual(d.data.identityRoles, ['#plc']);
    assert.deepEqual(d.data.serviceRoles, [`@${web}`]);
    assertSpec('listServicePoliciesEnvelope', await get('/service-policies?limit=500'));
    assert.equal((await api(ctrl, 'DELETE', `${M}/services/${svc}`, { token })).status, 404);
  });
});

// ---- edge routers ---------------------------------------------------------------

describe('edge routers', () => {
  test('create: detail with an erott JWT, and an identity of type Router for policies', async () => {
    const { id, detail } = await createRouter({ name: 'hub-1', roleAttributes: ['hubs', 'dc'], isTunnelerEnabled: true, tags: { rack: '4' } });
    assert.equal(detail.name, 'hub-1');
    assert.deepEqual(detail.roleAttributes, ['dc', 'hubs']);
    assert.equal(detail.isTunnelerEnabled, true);
    assert.equal(detail.isVerified, false);
    assert.equal(detail.certPem, null);
    assert.equal(detail.fingerprint, undefined);
    assert.ok(Date.parse(detail.enrollmentExpiresAt) > Date.now() + 50 * 60_000);
    const claims = decodeJwt(detail.enrollmentJwt);
    assert.equal(claims.em, 'erott');
    assert.equal(claims.sub, id);
    assert.equal(claims.jti, detail.enrollmentToken);
    assert.equal(claims.iss, ctrl.url);
    assert.equal(claims.exp, Math.floor(Date.parse(detail.enrollmentExpiresAt) / 1000));
    const identity = (await get(`/identities/${id}`)).data;
    assertSpec('identityDetail', identity);
    assert.equal(identity.typeId, 'Router');
    assert.equal(identity.name, 'hub-1');
    assert.deepEqual(identity.roleAttributes, ['dc', 'hubs']);
    assert.equal(identity.isAdmin, false);
    const enrollments = await get(`/enrollments?filter=${encodeURIComponent(`identity = "${id}"`)}`);
    assert.equal(enrollments.data[0].method, 'erott');
    const list = await get('/edge-routers');
    assertSpec('listEdgeRoutersEnvelope', list);
    assert.ok(list.data.some((r: any) => r.id === id));
    assert.equal((await get(`/edge-routers?filter=${encodeURIComponent('isTunnelerEnabled = true')}`)).data.length, 1);
    // Policies name it like any identity.
    const pol = await post('/service-policies', { name: 'hubs-bind', type: 'Bind', identityRoles: ['#hubs'], serviceRoles: ['@web'] });
    assert.deepEqual((await get(`/service-policies/${pol}/identities`)).data.map((i: any) => i.name), ['hub-1']);
  });

  test('bad bodies and names taken by a router or an identity are refused and change nothing', async () => {
    await refusedAll([
      ['POST', '/edge-routers', {}, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-routers', { name: '' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-routers', { name: uniq('r'), isTunnelerEnabled: 'yes' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-routers', { name: uniq('r'), roleAttributes: 'hubs' }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-routers', { name: uniq('r'), cost: 70000 }, 400, 'ERR_INVALID_ARGUMENT'],
      ['POST', '/edge-routers', { name: 'hub-1' }, 409, 'ERR_NAME_IN_USE'],
      ['POST', '/edge-routers', { name: 'plc-a' }, 409, 'ERR_NAME_IN_USE', /identity/],
      ['POST', '/identities', { name: 'hub-1', isAdmin: false }, 409, 'ERR_NAME_IN_USE'],
    ]);
  });

  test('patch and put keep the router identity in step; the identity cannot be changed or deleted on its own', async () => {
    const { id } = await createRouter({ name: uniq('edge'), roleAttributes: ['a'] });
    const name = uniq('edge-renamed');
    assert.equal((await api(ctrl, 'PATCH', `${M}/edge-routers/${id}`, { token, body: { name, roleAttributes: ['b', 'c'], isTunnelerEnabled: true, cost: 7 } })).status, 200);
    const d = (await get(`/edge-routers/${id}`)).data;
    assert.deepEqual([d.name, d.roleAttributes, d.isTunnelerEnabled, d.cost], [name, ['b', 'c'], true, 7]);
    const i = (await get(`/identities/${id}`)).data;
    assert.deepEqual([i.name, i.roleAttributes], [name, ['b', 'c']]);
    assert.equal((await api(ctrl, 'PUT', `${M}/edge-routers/${id}`, { token, body: { name } })).status, 200);
    const put = (await get(`/edge-routers/${id}`)).data;
    assert.deepEqual([put.roleAttributes, put.isTunnelerEnabled, put.cost], [[], false, 0]);
    assert.deepEqual((await get(`/identities/${id}`)).data.roleAttributes, []);
    const clash = await api(ctrl, 'PATCH', `${M}/edge-routers/${id}`, { token, body: { name: 'plc-a' } });
    assert.equal(clash.status, 409);
    assert.equal((await get(`/edge-routers/${id}`)).data.name, name);
    const idPatch = await api(ctrl, 'PATCH', `${M}/identities/${id}`, { token, body: { name: 'sneaky' } });
    assert.equal(idPatch.status, 409);
    assert.match(idPatch.body.error.message, /edge-routers/);
    assert.equal((await api(ctrl, 'DELETE', `${M}/identities/${id}`, { token })).status, 409);
    assert.equal((await api(ctrl, 'PATCH', `${M}/edge-routers/nope`, { token, body: { name: 'x' } })).status, 404);
    assert.equal((await api(ctrl, 'GET', `${M}/edge-routers/nope`, { token })).status, 404);
  });

  test('erott enrollment: a client certificate and a server certificate with the requested SANs, both verified by openssl', async () => {
    const { id, detail } = await createRouter({ name: 'edge-enroll', roleAttributes: ['edges'] });
    const r = await enrollRouter(detail.enrollmentToken, { clientCsr: await clientCsr(), serverCsr: serverCsr('DNS:router1.example,DNS:*.routers.example,IP:10.0.0.1,IP:fd00::1') });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.data.ca, ctrl.ca);
    for (const chain of [r.body.data.cert, r.body.data.serverCert]) assert.equal((chain.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
    const vc = verify(r.body.data.cert, 'sslclient');
    assert.equal(vc.code, 0, vc.stderr + vc.stdout);
    const vs = verify(r.body.data.serverCert, 'sslserver');
    assert.equal(vs.code, 0, vs.stderr + vs.stdout);
    const vsc = verify(r.body.data.serverCert, 'sslclient');
    assert.equal(vsc.code, 0, 'the server certificate also dials links as a client: ' + vsc.stderr);
    const client = new X509Certificate(leafOf(r.body.data.cert));
    const server = new X509Certificate(leafOf(r.body.data.serverCert));
    assert.match(client.subject, new RegExp(`CN=${id}`));
    assert.match(server.subject, new RegExp(`CN=${id}`));
    assert.equal(client.subjectAltName, undefined);
    assert.deepEqual(server.subjectAltName!.split(', ').sort(), ['DNS:*.routers.example', 'DNS:router1.example', 'IP Address:10.0.0.1', 'IP Address:FD00:0:0:0:0:0:0:1']);
    assert.deepEqual(server.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    const printed = openssl(['x509', '-noout', '-ext', 'subjectAltName,extendedKeyUsage'], leafOf(r.body.data.serverCert));
    assert.match(printed.stdout, /DNS:router1\.example/);
    assert.match(printed.stdout, /TLS Web Server Authentication, TLS Web Client Authentication/);
    // The router is verified, the token is gone, and the client certificate is its identity's authenticator.
    const d = (await get(`/edge-routers/${id}`)).data;
    assertSpec('edgeRouterDetail', d);
    assert.equal(d.isVerified, true);
    assert.equal(d.fingerprint, createHash('sha1').update(client.raw).digest('hex'));
    assert.equal(d.certPem, leafOf(r.body.data.cert));
    assert.deepEqual([d.enrollmentJwt, d.enrollmentToken, d.enrollmentExpiresAt], [null, null, null]);
    const identity = (await get(`/identities/${id}`)).data;
    assert.equal(identity.authenticators.cert.fingerprint, d.fingerprint);
    assert.deepEqual(identity.enrollment, {});
    // Reuse: refused, nothing changes.
    const again = await enrollRouter(detail.enrollmentToken, { clientCsr: await clientCsr(), serverCsr: serverCsr('DNS:x.example') });
    assert.equal(again.status, 410);
    assert.equal(again.body.error.code, 'ERR_ENROLLMENT_TOKEN_USED');
    assert.equal((await get(`/edge-routers/${id}`)).data.fingerprint, d.fingerprint);
  });

  test('the router logs in with its client certificate; ?method=erott and OpenZiti field names work too', async () => {
    const { id, detail } = await createRouter({ name: 'edge-query' });
    const key = generatePrivateKeyPem('ec-p256');
    const csr = await createCsr(FileKeyStore.fromPem(key, 'mem'), 'CN=edge-query');
    const r = await api(ctrl, 'POST', `${C}/enroll?method=erott&token=${detail.enrollmentToken}`, { body: { certCsr: csr, serverCertCsr: serverCsr('IP:127.0.0.1') } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(new X509Certificate(leafOf(r.body.data.serverCert)).subjectAltName, 'IP Address:127.0.0.1');
    const login = await api(ctrl, 'POST', `${C}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: r.body.data.cert, key } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    assert.equal(login.body.data.identity.id, id);
    assert.equal(login.body.data.identity.name, 'edge-query');
    assert.equal((await api(ctrl, 'GET', `${M}/edge-routers`, { token: login.body.data.token })).status, 403, 'a router is not an admin');
  });

  test('bad CSRs, wrong methods and unknown tokens are refused, and the token survives', async () => {
    const { id, detail } = await createRouter({ name: 'edge-bad' });
    const t = detail.enrollmentToken;
    const good = await clientCsr();
    const goodServer = serverCsr('DNS:edge-bad.example');
    writeFileSync(join(dir, 'weak.key'), generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const weakServer = serverCsr('DNS:weak.example', ['-key', join(dir, 'weak.key')]);
    const cases: [Record<string, unknown>, number, string, RegExp?][] = [
      [{ clientCsr: 'hello', serverCsr: goodServer }, 400, 'ERR_CSR_INVALID'],
      [{ clientCsr: good, serverCsr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' }, 400, 'ERR_CSR_INVALID'],
      [{ clientCsr: good }, 400, 'ERR_CSR_INVALID', /serverCsr/],
      [{ serverCsr: goodServer }, 400, 'ERR_CSR_INVALID'],
      [{ clientCsr: good, serverCsr: serverCsr() }, 400, 'ERR_CSR_INVALID', /at least one subjectAltName/],
      [{ clientCsr: good, serverCsr: serverCsr('email:ops@plant.example') }, 400, 'ERR_CSR_INVALID', /rfc822Name/],
      [{ clientCsr: good, serverCsr: serverCsr('DNS:ok.example,URI:spiffe://plant/router') }, 400, 'ERR_CSR_INVALID', /uniformResourceIdentifier/],
      [{ clientCsr: good, serverCsr: serverCsr('DNS:bad_name!.example') }, 400, 'ERR_CSR_INVALID', /not a host name/],
      [{ clientCsr: good, serverCsr: weakServer }, 400, 'ERR_CSR_WEAK_KEY'],
    ];
    for (const [body, status, code, message] of cases) {
      const r = await enrollRouter(t, body);
      assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, JSON.stringify(r.body));
      if (message !== undefined) assert.match(r.body.error.message, message);
    }
    const unknown = await enrollRouter('00000000-0000-4000-8000-000000000000', { clientCsr: good, serverCsr: goodServer });
    assert.equal(unknown.body.error.code, 'ERR_ENROLLMENT_TOKEN_INVALID');
    const noToken = await api(ctrl, 'POST', `${C}/enroll/erott`, { body: { clientCsr: good, serverCsr: goodServer } });
    assert.equal(noToken.body.error.code, 'ERR_ENROLLMENT_TOKEN_INVALID');
    const asOtt = await api(ctrl, 'POST', `${C}/enroll?method=ott&token=${t}`, { rawBody: good, contentType: 'application/x-pem-file' });
    assert.equal(asOtt.status, 400);
    assert.equal(asOtt.body.error.code, 'ERR_ENROLLMENT_METHOD');
    const ident = await post('/identities', { name: uniq('ott-device'), isAdmin: false, enrollment: { ott: true } });
    const ottToken = (await get(`/identities/${ident}`)).data.enrollment.ott.token;
    const ottAsErott = await enrollRouter(ottToken, { clientCsr: good, serverCsr: goodServer });
    assert.equal(ottAsErott.body.error.code, 'ERR_ENROLLMENT_METHOD');
    // Nothing above consumed the token or changed the router.
    const still = (await get(`/edge-routers/${id}`)).data;
    assert.equal(still.enrollmentToken, t);
    assert.equal(still.isVerified, false);
    assert.equal((await enrollRouter(t, { clientCsr: good, serverCsr: goodServer })).status, 200);
  });

  test('concurrent uses of one erott token yield one pair of certificates', async () => {
    const { detail } = await createRouter({ name: uniq('edge-race') });
    const bodies = await Promise.all(Array.from({ length: 6 }, async () => ({ clientCsr: await clientCsr(), serverCsr: serverCsr('DNS:race.example') })));
    const results = await Promise.all(bodies.map((b) => enrollRouter(detail.enrollmentToken, b)));
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    assert.ok(results.filter((r) => r.status !== 200).every((r) => r.body.error.code === 'ERR_ENROLLMENT_TOKEN_USED'));
  });

  test('re-enroll: a new token, the old certificate stops working', async () => {
    const { id, detail } = await createRouter({ name: uniq('edge-re') });
    const key = generatePrivateKeyPem('ec-p256');
    const first = await enrollRouter(detail.enrollmentToken, { clientCsr: await createCsr(FileKeyStore.fromPem(key, 'mem'), 'CN=x'), serverCsr: serverCsr('DNS:re.example') });
    assert.equal(first.status, 200);
    assert.equal((await api(ctrl, 'POST', `${M}/edge-routers/${id}/re-enroll`, { token })).status, 200);
    const d = (await get(`/edge-routers/${id}`)).data;
    assert.equal(d.isVerified, false);
    assert.equal(d.certPem, null);
    assert.notEqual(d.enrollmentToken, detail.enrollmentToken);
    assert.equal(decodeJwt(d.enrollmentJwt).em, 'erott');
    const old = await api(ctrl, 'POST', `${C}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: first.body.data.cert, key } });
    assert.equal(old.status, 401);
    assert.equal((await enrollRouter(d.enrollmentToken, { clientCsr: await clientCsr(), serverCsr: serverCsr('DNS:re.example') })).status, 200);
    assert.equal((await get(`/edge-routers/${id}`)).data.isVerified, true);
  });

  test('an expired erott token is refused with 410', async () => {
    const short = await startControllerProcess(join(dir, 'ctrl-short'), ['--enrollment-minutes', '0.01']);
    try {
      const t = await adminToken(short);
      const c = await api(short, 'POST', `${M}/edge-routers`, { token: t, body: { name: 'late-router' } });
      const d = await api(short, 'GET', `${M}/edge-routers/${c.body.data.id}`, { token: t });
      await new Promise((r) => setTimeout(r, 900));
      const r = await api(short, 'POST', `${C}/enroll/erott`, { body: { token: d.body.data.enrollmentToken, clientCsr: await clientCsr(), serverCsr: serverCsr('DNS:late.example') } });
      assert.equal(r.status, 410);
      assert.equal(r.body.error.code, 'ERR_ENROLLMENT_EXPIRED');
    } finally {
      await short.stop();
    }
  });

  test('delete removes the router, its identity, its credentials and the policies\' @ selectors', async () => {
    const { id, detail } = await createRouter({ name: uniq('edge-del'), roleAttributes: ['temp'] });
    const key = generatePrivateKeyPem('ec-p256');
    const e = await enrollRouter(detail.enrollmentToken, { clientCsr: await createCsr(FileKeyStore.fromPem(key, 'mem'), 'CN=x'), serverCsr: serverCsr('DNS:del.example') });
    assert.equal(e.status, 200);
    const pol = await post('/service-policies', { name: uniq('pol'), type: 'Bind', identityRoles: [`@${id}`, '#edges'], serviceRoles: ['@web'] });
    const before = await summary();
    assert.equal((await api(ctrl, 'DELETE', `${M}/edge-routers/${id}`, { token })).status, 200);
    const after = await summary();
    assert.equal(after.edgeRouters, before.edgeRouters! - 1);
    assert.equal(after.identities, before.identities! - 1);
    assert.equal(after.authenticators, before.authenticators! - 1);
    assert.equal((await api(ctrl, 'GET', `${M}/edge-routers/${id}`, { token })).status, 404);
    assert.equal((await api(ctrl, 'GET', `${M}/identities/${id}`, { token })).status, 404);
    assert.equal((await api(ctrl, 'DELETE', `${M}/edge-routers/${id}`, { token })).status, 404);
    assert.deepEqual((await get(`/service-policies/${pol}`)).data.identityRoles, ['#edges']);
    const login = await api(ctrl, 'POST', `${C}/authenticate?method=cert`, { body: {}, trust: { ca: ctrl.ca, cert: e.body.data.cert, key } });
    assert.equal(login.status, 401);
    // A deleted router's pending token is gone too.
    const pending = await createRouter({ name: uniq('edge-del2') });
    assert.equal((await api(ctrl, 'DELETE', `${M}/edge-routers/${pending.id}`, { token })).status, 200);
    const late = await enrollRouter(pending.detail.enrollmentToken, { clientCsr: await clientCsr(), serverCsr: serverCsr('DNS:x.example') });
    assert.equal(late.body.error.code, 'ERR_ENROLLMENT_TOKEN_INVALID');
  });
});

describe('summary', () => {
  test('counts routers, services, configs, config types and service policies', async () => {
    const s = await summary();
    for (const k of ['identities', 'edgeRouters', 'services', 'configs', 'configTypes', 'servicePolicies']) assert.equal(typeof s[k], 'number', k);
    assert.equal(s.configTypes, 2);
    assert.equal(s.edgeRouters, (await get('/edge-routers?limit=500')).meta.pagination.totalCount);
    assert.equal(s.services, (await get('/services?limit=500')).meta.pagination.totalCount);
    assert.equal(s.servicePolicies, (await get('/service-policies?limit=500')).meta.pagination.totalCount);
  });
});

// ---- CLI ----------------------------------------------------------------------

describe('CLI', () => {
  let env: Record<string, string>;
  const cli = (...args: string[]) => runCli(args, env, dir);

  before(() => {
    env = { ZTEDGE_CONFIG_DIR: join(dir, 'cli-cfg') };
    const login = cli('edge', 'login', ctrl.url, '-u', 'admin', '--password-file', join(ctrl.dataDir, 'admin.password'), '-y');
    assert.equal(login.code, 0, login.stderr);
  });

  test('edge routers: create with a token file, list, delete', () => {
    const c = cli('edge', 'create', 'edge-router', 'cli-router', '--role-attributes', 'hubs,cli', '--tunneler-enabled', '-o', 'cli-router.jwt');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /New edge router cli-router created with id: \S+/);
    assert.match(c.stdout, /token written to cli-router\.jwt/);
    const jwt = readFileSync(join(dir, 'cli-router.jwt'), 'utf8').trim();
    assert.equal(decodeJwt(jwt).em, 'erott');
    const l = cli('edge', 'list', 'edge-routers');
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /^ID\s+NAME\s+ATTRIBUTES\s+TUNNELER\s+VERIFIED/m);
    assert.match(l.stdout, /cli-router\s+cli,hubs\s+true\s+false/);
    const j = cli('edge', 'list', 'edge-routers', 'name = "cli-router"', '--json');
    // Signed anew on each read (ECDSA): the same token, not the same bytes.
    assert.equal(JSON.parse(j.stdout)[0].enrollmentToken, decodeJwt(jwt).jti);
    const dup = cli('edge', 'create', 'edge-router', 'cli-router');
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /ERR_NAME_IN_USE/);
    const usage = cli('edge', 'create', 'edge-router');
    assert.equal(usage.code, 2);
  });

  test('configs, services and service policies: create, list, delete', () => {
    let r = cli('edge', 'create', 'config', 'cli-intercept', 'intercept.v1', JSON.stringify({ protocols: ['tcp'], addresses: ['cli.plant'], portRanges: [{ low: 443, high: 443 }] }));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /New config cli-intercept \(intercept\.v1\) created/);
    r = cli('edge', 'create', 'config', 'cli-host', 'host.v1', JSON.stringify(hostData));
    assert.equal(r.code, 0, r.stderr);
    const badData = cli('edge', 'create', 'config', 'cli-bad', 'host.v1', '{"protocol":"tcp"}');
    assert.equal(badData.code, 1);
    assert.match(badData.stderr, /ERR_INVALID_ARGUMENT: invalid host\.v1 config: data\.address/);
    const notJson = cli('edge', 'create', 'config', 'cli-bad', 'host.v1', '{protocol:');
    assert.equal(notJson.code, 2);
    assert.match(notJson.stderr, /not JSON/);
    const badType = cli('edge', 'create', 'config', 'cli-bad', 'tunnel.v9', '{}');
    assert.equal(badType.code, 1);
    assert.match(badType.stderr, /ERR_NOT_FOUND/);
    r = cli('edge', 'list', 'configs', 'name contains "cli-"');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /cli-host\s+host\.v1\s+\{"protocol":"tcp"/);
    assert.match(r.stdout, /results: 2/);

    r = cli('edge', 'create', 'service', 'cli-svc', '--configs', 'cli-intercept,cli-host', '--role-attributes', 'cli');
    assert.equal(r.code, 0, r.stderr);
    r = cli('edge', 'list', 'services', 'name = "cli-svc"');
    assert.match(r.stdout, /cli-svc\s+cli\s+cli-intercept,cli-host\s+true/);

    r = cli('edge', 'create', 'service-policy', 'cli-dial', 'Dial', '--identity-roles', '#cli,@plc-a', '--service-roles', '@cli-svc', '--semantic', 'AnyOf');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /New service policy cli-dial \(Dial\) created/);
    r = cli('edge', 'create', 'service-policy', 'cli-bind', 'bind', '--identity-roles', '@cli-router', '--service-roles', '#cli');
    assert.equal(r.code, 0, r.stderr);
    const badSel = cli('edge', 'create', 'service-policy', 'cli-x', 'Dial', '--identity-roles', 'cli', '--service-roles', '#cli');
    assert.equal(badSel.code, 1);
    assert.match(badSel.stderr, /ERR_INVALID_ARGUMENT/);
    const badPolicyType = cli('edge', 'create', 'service-policy', 'cli-x', 'Host', '--identity-roles', '#cli');
    assert.equal(badPolicyType.code, 2);
    const badSem = cli('edge', 'create', 'service-policy', 'cli-x', 'Dial', '--semantic', 'Most');
    assert.equal(badSem.code, 2);
    r = cli('edge', 'list', 'service-policies', 'name contains "cli-"');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /cli-bind\s+Bind\s+AllOf\s+@cli-router\s+#cli/);
    assert.match(r.stdout, /cli-dial\s+Dial\s+AnyOf\s+#cli,@plc-a\s+@cli-svc/);

    r = cli('edge', 'list', 'summary');
    assert.equal(r.code, 0, r.stderr);
    for (const k of ['edgeRouters', 'services', 'configs', 'configTypes', 'servicePolicies']) assert.match(r.stdout, new RegExp(`^${k}\\s+\\d+`, 'm'));

    for (const [noun, name] of [['service-policy', 'cli-dial'], ['service-policy', 'cli-bind'], ['service', 'cli-svc'], ['config', 'cli-intercept'], ['config', 'cli-host'], ['edge-router', 'cli-router']]) {
      const d = cli('edge', 'delete', noun!, name!);
      assert.equal(d.code, 0, `${noun} ${name}: ${d.stderr}`);
      assert.match(d.stdout, new RegExp(`Deleted .* ${name} \\(`));
    }
    const gone = cli('edge', 'delete', 'service', 'cli-svc');
    assert.equal(gone.code, 2);
    assert.match(gone.stderr, /no service named or with id "cli-svc"/);
    assert.doesNotMatch(cli('edge', 'list', 'edge-routers').stdout, /cli-router/);
  });

  test('help lists the new verbs', () => {
    const h = cli('edge', '--help');
    assert.equal(h.code, 0);
    for (const v of ['create edge-router', 'create config', 'create service NAME', 'create service-policy', 'list edge-routers', 'list configs', 'list services', 'list service-policies', 'delete edge-router|config|service|service-policy']) {
      assert.ok(h.stdout.includes(v), v);
    }
  });
});
