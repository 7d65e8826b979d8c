/**
 * The rest of the policy model on the management and client APIs, end to
 * end on the real bundled controller process over HTTPS: edge router
 * policies and service edge router policies. Answers are checked against
 * OpenZiti's definitions; every refused input must get its 4xx code and
 * change nothing; deletes cascade into the policies that named what was
 * deleted; the CLI verbs run as a user runs them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { adminCalls, adminToken, api, assertSpec, removeDir, runCli, startControllerProcess, tempDir, type AdminCalls, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';

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
