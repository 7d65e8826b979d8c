/**
 * Identities: `/edge/management/v1/identities[/ID]` with OpenZiti's request
 * bodies. Creating an identity may open one enrollment (ott, ottca or updb);
 * an identity with none cannot authenticate until one is added.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import { compileFilter, type FieldGetter } from '../filter.js';
import { DEFAULT_AUTH_POLICY_ID } from '../auth-policy.js';
import { newId, newToken } from '../ids.js';
import { envelope, listEnvelope, presentEnrollment, presentIdentity, selfLinks } from '../present.js';
import type { EnrollmentRecord, IdentityRecord, IdentityTypeName } from '../store.js';
import { requireAdmin } from './guard.js';

const IdentityType = Type.Union(['User', 'Device', 'Service', 'Router', 'Default'].map((t) => Type.Literal(t)));
export const Attributes = Type.Union([Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { maxItems: 256 }), Type.Null()]);
export const Tags = Type.Union([Type.Record(Type.String(), Type.Any()), Type.Null()]);
export const Name = Type.String({ minLength: 1, maxLength: 255, pattern: '^\\S(.*\\S)?$' });

const IdentityCreate = Type.Object({
  name: Name,
  type: Type.Optional(IdentityType),
  isAdmin: Type.Boolean(),
  enrollment: Type.Optional(Type.Object({
    ott: Type.Optional(Type.Boolean()),
    ottca: Type.Optional(Type.String({ minLength: 1 })),
    updb: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  })),
  externalId: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 1024 }), Type.Null()])),
  roleAttributes: Type.Optional(Attributes),
  tags: Type.Optional(Tags),
  appData: Type.Optional(Tags),
  authPolicyId: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 255 }), Type.Null()])),
}, { additionalProperties: true });

const IdentityPatch = Type.Object({
  name: Type.Optional(Name),
  type: Type.Optional(IdentityType),
  isAdmin: Type.Optional(Type.Boolean()),
  externalId: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 1024 }), Type.Null()])),
  roleAttributes: Type.Optional(Attributes),
  tags: Type.Optional(Tags),
  appData: Type.Optional(Tags),
  authPolicyId: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 255 }), Type.Null()])),
}, { additionalProperties: true });

export const IdParams = Type.Object({ id: Type.String({ minLength: 1 }) });
export const ListQuery = Type.Object({
  filter: Type.Optional(Type.String({ maxLength: 4096 })),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]+$' })),
  offset: Type.Optional(Type.String({ pattern: '^[0-9]+$' })),
});

const IDENTITY_FIELDS: Record<string, FieldGetter<IdentityRecord>> = {
  id: (i) => i.id,
  name: (i) => i.name,
  type: (i) => i.type,
  isAdmin: (i) => i.isAdmin,
  isDefaultAdmin: (i) => i.isDefaultAdmin,
  externalId: (i) => i.externalId,
  roleAttributes: (i) => i.roleAttributes,
  disabled: (i) => i.disabled,
  authPolicyId: (i) => i.authPolicyId,
  createdAt: (i) => i.createdAt,
};

/** Applies filter, offset and limit (default 10, OpenZiti's; at most 500) to a list. */
export function page<T>(all: T[], query: Static<typeof ListQuery>, fields: Record<string, FieldGetter<T>>): { items: T[]; total: number; limit: number; offset: number } {
  const matching = query.filter !== undefined && query.filter.trim() !== '' ? all.filter(compileFilter(query.filter, fields)) : all;
  const limit = Math.min(query.limit === undefined ? 10 : Number(query.limit), 500);
  const offset = query.offset === undefined ? 0 : Number(query.offset);
  return { items: matching.slice(offset, offset + limit), total: matching.length, limit, offset };
}

/** Pagination straight from an ordered index, for unfiltered lists. */
function pageOfIndex<T>(query: Static<typeof ListQuery>, read: (offset: number, limit: number) => { items: T[]; total: number }): { items: T[]; total: number; limit: number; offset: number } {
  const limit = Math.min(query.limit === undefined ? 10 : Number(query.limit), 500);
  const offset = query.offset === undefined ? 0 : Number(query.offset);
  return { ...read(offset, limit), limit, offset };
}

export function registerIdentityRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  const hasSession = (id: string): boolean => store.sessionsOf(id).length > 0;

  app.get(`${prefix}/identities`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const query = req.query as Static<typeof ListQuery>;
    const p = query.filter === undefined || query.filter.trim() === ''
      ? pageOfIndex(query, (offset, limit) => store.identitiesPage(offset, limit))
      : page(store.listIdentities().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), query, IDENTITY_FIELDS);
    const data = await Promise.all(p.items.map((i) => presentIdentity(ctx, i, hasSession(i.id))));
    return listEnvelope(data, p.total, p.limit, p.offset, Object.keys(IDENTITY_FIELDS));
  });

  app.get(`${prefix}/identities/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const identity = getIdentity(ctx, (req.params as Static<typeof IdParams>).id);
    return envelope(await presentIdentity(ctx, identity, hasSession(identity.id)));
  });

  app.get(`${prefix}/identities/:id/enrollments`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const identity = getIdentity(ctx, (req.params as Static<typeof IdParams>).id);
    const list = store.enrollmentsOf(identity.id);
    return listEnvelope(await Promise.all(list.map((e) => presentEnrollment(ctx, e))), list.length, list.length, 0, []);
  });

  app.post(`${prefix}/identities`, { schema: { body: IdentityCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof IdentityCreate>;
    const now = new Date();
    const iso = now.toISOString();
    const identity: IdentityRecord = {
      id: newId(),
      name: body.name,
      type: (body.type ?? 'Default') as IdentityTypeName,
      isAdmin: body.isAdmin,
      isDefaultAdmin: false,
      roleAttributes: normalizeAttributes(body.roleAttributes),
      externalId: body.externalId ?? null,
      tags: body.tags ?? {},
      appData: body.appData ?? {},
      authPolicyId: body.authPolicyId ?? DEFAULT_AUTH_POLICY_ID,
      disabled: false,
      createdAt: iso,
      updatedAt: iso,
    };
    const enrollments = enrollmentsFor(ctx, identity.id, body.enrollment, now);
    await store.createIdentity(identity, enrollments, []);
    ctx.log.info({ identityId: identity.id, name: identity.name, enrollment: enrollments.map((e) => e.method) }, 'identity created');
    void reply.status(201);
    return envelope({ id: identity.id, _links: selfLinks('identities', identity.id) });
  });

  const update = async (id: string, patch: Static<typeof IdentityPatch>, replaceAll: boolean): Promise<void> => {
    const prev = getIdentity(ctx, id);
    refuseRouterIdentity(ctx, prev, 'changed');
    if (prev.isDefaultAdmin && patch.isAdmin === false) throw new EdgeError('ERR_CONFLICT', 'the default admin cannot lose its admin role');
    const next: IdentityRecord = {
      ...prev,
      name: patch.name ?? prev.name,
      type: (patch.type as IdentityTypeName | undefined) ?? (replaceAll ? 'Default' : prev.type),
      isAdmin: patch.isAdmin ?? (replaceAll ? false : prev.isAdmin),
      externalId: patch.externalId !== undefined ? patch.externalId : replaceAll ? null : prev.externalId,
      roleAttributes: patch.roleAttributes !== undefined ? normalizeAttributes(patch.roleAttributes) : replaceAll ? [] : prev.roleAttributes,
      tags: patch.tags !== undefined ? (patch.tags ?? {}) : replaceAll ? {} : prev.tags,
      appData: patch.appData !== undefined ? (patch.appData ?? {}) : replaceAll ? {} : prev.appData,
      authPolicyId: patch.authPolicyId ?? (replaceAll ? DEFAULT_AUTH_POLICY_ID : prev.authPolicyId),
      updatedAt: new Date().toISOString(),
    };
    if (prev.isDefaultAdmin) next.isAdmin = true;
    await store.updateIdentity(next);
  };

  app.patch(`${prefix}/identities/:id`, { schema: { params: IdParams, body: IdentityPatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof IdentityPatch>, false);
    return envelope({});
  });

  app.put(`${prefix}/identities/:id`, { schema: { params: IdParams, body: IdentityCreate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof IdentityPatch>, true);
    return envelope({});
  });

  /**
   * OpenZiti's disable: `durationMinutes` 0 disables until `/enable`. Its API sessions end at
   * once, and routers refuse its circuits and end the open ones when the change reaches them.
   * A timed disable (durationMinutes > 0) is not supported yet: refused rather than made indefinite.
   */
  app.post(`${prefix}/identities/:id/disable`, { schema: { params: IdParams, body: Type.Object({ durationMinutes: Type.Integer({ minimum: 0 }) }) } }, async (req) => {
    const { identity: caller } = requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    const { durationMinutes } = req.body as { durationMinutes: number };
    if (durationMinutes !== 0) throw new EdgeError('ERR_INVALID_ARGUMENT', 'durationMinutes: only 0 (until enabled again) is supported', { details: { field: 'durationMinutes' } });
    const target = getIdentity(ctx, id);
    if (target.isDefaultAdmin) throw new EdgeError('ERR_CONFLICT', 'the default admin cannot be disabled');
    await store.disableIdentity(target.id, new Date().toISOString());
    ctx.log.info({ identityId: target.id, by: caller.id }, 'identity disabled');
    return envelope({});
  });

  /** OpenZiti's "clears all disabled state": the lock after failed logins, and the disabled flag. */
  app.post(`${prefix}/identities/:id/enable`, { schema: { params: IdParams } }, async (req) => {
    const { identity: caller } = requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.enableIdentity(id, new Date().toISOString()))) throw new EdgeError('ERR_NOT_FOUND', `identity ${id} not found`);
    ctx.log.info({ identityId: id, by: caller.id }, 'identity enabled');
    return envelope({});
  });

  app.delete(`${prefix}/identities/:id`, { schema: { params: IdParams } }, async (req) => {
    const { identity: caller } = requireAdmin(ctx, req);
    const identity = getIdentity(ctx, (req.params as Static<typeof IdParams>).id);
    if (identity.isDefaultAdmin) throw new EdgeError('ERR_CONFLICT', 'the default admin cannot be deleted');
    refuseRouterIdentity(ctx, identity, 'deleted');
    await store.deleteIdentity(identity.id);
    ctx.log.info({ identityId: identity.id, name: identity.name, by: caller.id }, 'identity deleted');
    return envelope({});
  });
}

/** A router's identity follows its edge router: it is changed and deleted through /edge-routers only. */
function refuseRouterIdentity(ctx: ControllerContext, identity: IdentityRecord, what: string): void {
  const router = ctx.store.edgeRouters.get(identity.id);
  if (router !== undefined) {
    throw new EdgeError('ERR_CONFLICT', `identity "${identity.name}" belongs to edge router ${router.id}; it is ${what} through /edge-routers/${router.id}`);
  }
}

export function getIdentity(ctx: ControllerContext, id: string): IdentityRecord {
  const identity = ctx.store.identities.get(id);
  if (identity === undefined) throw new EdgeError('ERR_NOT_FOUND', `identity ${id} not found`);
  return identity;
}

export function normalizeAttributes(attrs: string[] | null | undefined): string[] {
  return [...new Set((attrs ?? []).map((a) => a.trim()).filter((a) => a !== ''))].sort();
}

function enrollmentsFor(ctx: ControllerContext, identityId: string, spec: Static<typeof IdentityCreate>['enrollment'], now: Date): EnrollmentRecord[] {
  if (spec === undefined) return [];
  const chosen = [spec.ott === true ? 'ott' : undefined, spec.ottca !== undefined ? 'ottca' : undefined, spec.updb !== undefined ? 'updb' : undefined].filter((m) => m !== undefined);
  if (chosen.length > 1) throw new EdgeError('ERR_INVALID_ARGUMENT', `choose one enrollment method, not ${chosen.join(' and ')}`);
  if (chosen.length === 0) return [];
  const iso = now.toISOString();
  const base = {
    id: newId(), identityId, token: newToken(), createdAt: iso, updatedAt: iso,
    expiresAt: new Date(now.getTime() + ctx.settings.enrollmentDurationMs).toISOString(), caId: null, username: null,
  };
  if (spec.updb !== undefined) {
    if (ctx.store.authenticatorByUsername(spec.updb) !== undefined || ctx.store.listEnrollments().some((e) => e.username === spec.updb)) {
      throw new EdgeError('ERR_NAME_IN_USE', `username "${spec.updb}" is already taken`, { details: { field: 'username' } });
    }
    return [{ ...base, method: 'updb', username: spec.updb }];
  }
  if (spec.ottca !== undefined) {
    const ca = ctx.store.cas.get(spec.ottca);
    if (ca === undefined) throw new EdgeError('ERR_NOT_FOUND', `certificate authority ${spec.ottca} not found`);
    if (!ca.isOttCaEnrollmentEnabled) throw new EdgeError('ERR_INVALID_ARGUMENT', `CA "${ca.name}" does not allow ottca enrollment (isOttCaEnrollmentEnabled is false)`);
    return [{ ...base, method: 'ottca', caId: ca.id }];
  }
  return [{ ...base, method: 'ott' }];
}
