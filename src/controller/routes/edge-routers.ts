/**
 * Edge routers: `/edge/management/v1/edge-routers[/ID]` in OpenZiti's shapes.
 *
 * Creating a router opens an `erott` enrollment (one-time token, JWT in
 * `enrollmentJwt`) and creates the router's identity: type Router, the same
 * id, name and roleAttributes, so service policies name routers as they name
 * any identity (`@name`, `#attr`). The identity follows the router on PATCH,
 * PUT and DELETE. Enrollment itself is on the client API (routes/enroll.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId, newToken } from '../ids.js';
import { enrollmentJwt, envelope, listEnvelope, selfLinks } from '../present.js';
import type { EdgeRouterRecord, EnrollmentRecord, IdentityRecord } from '../store.js';
import { requireAdmin } from './guard.js';
import { Attributes, IdParams, ListQuery, Name, normalizeAttributes, page, Tags } from './identities.js';

const Cost = Type.Union([Type.Integer({ minimum: 0, maximum: 65535 }), Type.Null()]);
const NullableBoolean = Type.Union([Type.Boolean(), Type.Null()]);

const EdgeRouterCreate = Type.Object({
  name: Name,
  roleAttributes: Type.Optional(Attributes),
  isTunnelerEnabled: Type.Optional(Type.Boolean()),
  tags: Type.Optional(Tags),
  appData: Type.Optional(Tags),
  cost: Type.Optional(Cost),
  noTraversal: Type.Optional(NullableBoolean),
  disabled: Type.Optional(NullableBoolean),
}, { additionalProperties: true });

const EdgeRouterPatch = Type.Object({
  name: Type.Optional(Name),
  roleAttributes: Type.Optional(Attributes),
  isTunnelerEnabled: Type.Optional(Type.Boolean()),
  tags: Type.Optional(Tags),
  appData: Type.Optional(Tags),
  cost: Type.Optional(Cost),
  noTraversal: Type.Optional(NullableBoolean),
  disabled: Type.Optional(NullableBoolean),
}, { additionalProperties: true });

const ROUTER_FIELDS: Record<string, FieldGetter<EdgeRouterRecord>> = {
  id: (r) => r.id,
  name: (r) => r.name,
  roleAttributes: (r) => r.roleAttributes,
  isTunnelerEnabled: (r) => r.isTunnelerEnabled,
  isVerified: (r) => r.isVerified,
  disabled: (r) => r.disabled,
  createdAt: (r) => r.createdAt,
};

/** The router's pending erott enrollment, if any. */
function pendingErott(ctx: ControllerContext, routerId: string): EnrollmentRecord | undefined {
  return ctx.store.enrollmentsOf(routerId).find((e) => e.method === 'erott');
}

/** edgeRouterDetail. Fields about a live router (online, versions, interfaces) stay empty until routers report them. */
export async function presentEdgeRouter(ctx: ControllerContext, r: EdgeRouterRecord): Promise<Record<string, unknown>> {
  const e = pendingErott(ctx, r.id);
  const version = { os: '', arch: '', version: '', buildDate: '', revision: '' };
  return {
    id: r.id,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    _links: { ...selfLinks('edge-routers', r.id), identity: { href: `./identities/${r.id}` } },
    tags: r.tags,
    name: r.name,
    appData: r.appData,
    roleAttributes: r.roleAttributes,
    isTunnelerEnabled: r.isTunnelerEnabled,
    isVerified: r.isVerified,
    isOnline: false,
    hostname: '',
    supportedProtocols: {},
    syncStatus: 'SYNC_NEW',
    cost: r.cost,
    noTraversal: r.noTraversal,
    disabled: r.disabled,
    certPem: r.certPem,
    ...(r.fingerprint !== null ? { fingerprint: r.fingerprint } : {}),
    unverifiedCertPem: null,
    unverifiedFingerprint: null,
    configs: [],
    ctrlChanListeners: {},
    interfaces: [],
    // edgeRouterDetail requires these at the top level as well as in versionInfo.
    ...version,
    versionInfo: version,
    enrollmentCreatedAt: e?.createdAt ?? null,
    enrollmentExpiresAt: e?.expiresAt ?? null,
    enrollmentJwt: e !== undefined ? await enrollmentJwt(ctx, e) : null,
    enrollmentToken: e?.token ?? null,
  };
}

export function getEdgeRouter(ctx: ControllerContext, id: string): EdgeRouterRecord {
  const r = ctx.store.edgeRouters.get(id);
  if (r === undefined) throw new EdgeError('ERR_NOT_FOUND', `edge router ${id} not found`);
  return r;
}

function newErott(ctx: ControllerContext, routerId: string, now: Date): EnrollmentRecord {
  const iso = now.toISOString();
  return {
    id: newId(), method: 'erott', identityId: routerId, token: newToken(), caId: null, username: null, createdAt: iso, updatedAt: iso,
    expiresAt: new Date(now.getTime() + ctx.settings.enrollmentDurationMs).toISOString(),
  };
}

export function registerEdgeRouterRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  app.get(`${prefix}/edge-routers`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const all = store.edgeRouters.list().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const p = page(all, req.query as Static<typeof ListQuery>, ROUTER_FIELDS);
    return listEnvelope(await Promise.all(p.items.map((r) => presentEdgeRouter(ctx, r))), p.total, p.limit, p.offset, Object.keys(ROUTER_FIELDS));
  });

  app.get(`${prefix}/edge-routers/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(await presentEdgeRouter(ctx, getEdgeRouter(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.post(`${prefix}/edge-routers`, { schema: { body: EdgeRouterCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof EdgeRouterCreate>;
    const now = new Date();
    const iso = now.toISOString();
    const id = newId();
    const roleAttributes = normalizeAttributes(body.roleAttributes);
    const router: EdgeRouterRecord = {
      id, name: body.name, roleAttributes, isTunnelerEnabled: body.isTunnelerEnabled ?? false,
      tags: body.tags ?? {}, appData: body.appData ?? {}, cost: body.cost ?? 0, noTraversal: body.noTraversal ?? false, disabled: body.disabled ?? false,
      isVerified: false, certPem: null, fingerprint: null, serverCertPem: null, createdAt: iso, updatedAt: iso,
    };
    const identity: IdentityRecord = {
      id, name: body.name, type: 'Router', isAdmin: false, isDefaultAdmin: false, roleAttributes, externalId: null,
      tags: {}, appData: {}, authPolicyId: 'default', disabled: false, createdAt: iso, updatedAt: iso,
    };
    await store.createEdgeRouter(router, identity, newErott(ctx, id, now));
    ctx.log.info({ routerId: id, name: router.name }, 'edge router created');
    void reply.status(201);
    return envelope({ id, _links: selfLinks('edge-routers', id) });
  });

  const update = async (id: string, p: Static<typeof EdgeRouterPatch>, replaceAll: boolean): Promise<void> => {
    const prev = getEdgeRouter(ctx, id);
    const keep = <T>(value: T | null | undefined, old: T, reset: T): T => (value !== undefined && value !== null ? value : replaceAll || value === null ? reset : old);
    await store.updateEdgeRouter({
      ...prev,
      name: p.name ?? prev.name,
      roleAttributes: p.roleAttributes !== undefined ? normalizeAttributes(p.roleAttributes) : replaceAll ? [] : prev.roleAttributes,
      isTunnelerEnabled: p.isTunnelerEnabled ?? (replaceAll ? false : prev.isTunnelerEnabled),
      tags: keep(p.tags, prev.tags, {}),
      appData: keep(p.appData, prev.appData, {}),
      cost: keep(p.cost, prev.cost, 0),
      noTraversal: keep(p.noTraversal, prev.noTraversal, false),
      disabled: keep(p.disabled, prev.disabled, false),
      updatedAt: new Date().toISOString(),
    });
  };

  app.patch(`${prefix}/edge-routers/:id`, { schema: { params: IdParams, body: EdgeRouterPatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof EdgeRouterPatch>, false);
    return envelope({});
  });

  app.put(`${prefix}/edge-routers/:id`, { schema: { params: IdParams, body: EdgeRouterCreate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof EdgeRouterPatch>, true);
    return envelope({});
  });

  app.delete(`${prefix}/edge-routers/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deleteEdgeRouter(id))) throw new EdgeError('ERR_NOT_FOUND', `edge router ${id} not found`);
    ctx.log.info({ routerId: id }, 'edge router deleted');
    return envelope({});
  });

  // A router that lost its key: a new erott token; its certificates and sessions end now.
  app.post(`${prefix}/edge-routers/:id/re-enroll`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const router = getEdgeRouter(ctx, (req.params as Static<typeof IdParams>).id);
    await store.reEnrollEdgeRouter(router.id, newErott(ctx, router.id, new Date()));
    ctx.log.info({ routerId: router.id }, 'edge router re-enrollment opened');
    return envelope({});
  });
}
