/**
 * Posture checks: `/edge/management/v1/posture-checks[/ID]` and the
 * read-only `/posture-check-types[/ID]`, in OpenZiti's shapes. A check's
 * data fields sit flat in the body beside name, typeId and roleAttributes
 * and are checked per type (posture-check-types.ts). Service policies
 * require checks through `postureCheckRoles` (`#attr` on roleAttributes,
 * `@id-or-name`); deleting a check removes its `@id` selectors.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { BUILT_IN_AT } from '../config-types.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId } from '../ids.js';
import { OS_TYPES, POSTURE_CHECK_TYPES, postureCheckData } from '../posture-check-types.js';
import { envelope, listEnvelope, selfLinks } from '../present.js';
import type { PostureCheckRecord } from '../store.js';
import { requireAdmin } from './guard.js';
import { Attributes, IdParams, ListQuery, Name, normalizeAttributes, page, Tags } from './identities.js';

const TypeId = Type.Union(POSTURE_CHECK_TYPES.map((t) => Type.Literal(t)));

const CheckCreate = Type.Object({
  name: Name,
  typeId: TypeId,
  roleAttributes: Type.Optional(Attributes),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const CheckPatch = Type.Object({
  name: Type.Optional(Name),
  typeId: Type.Optional(TypeId),
  roleAttributes: Type.Optional(Attributes),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const CHECK_FIELDS: Record<string, FieldGetter<PostureCheckRecord>> = {
  id: (c) => c.id,
  name: (c) => c.name,
  typeId: (c) => c.typeId,
  roleAttributes: (c) => c.roleAttributes,
  createdAt: (c) => c.createdAt,
};

/** postureCheck*Detail: the base fields with the type's data fields beside them. */
export function presentPostureCheck(_ctx: ControllerContext, c: PostureCheckRecord): Record<string, unknown> {
  return {
    id: c.id, createdAt: c.createdAt, updatedAt: c.updatedAt, _links: selfLinks('posture-checks', c.id), tags: c.tags,
    name: c.name, typeId: c.typeId, version: c.version, roleAttributes: c.roleAttributes, ...c.data,
  };
}

function presentType(t: string): Record<string, unknown> {
  return {
    id: t, createdAt: BUILT_IN_AT, updatedAt: BUILT_IN_AT, _links: selfLinks('posture-check-types', t), tags: {},
    name: t, version: '1', operatingSystems: t === 'OS' ? OS_TYPES.map((type) => ({ type, versions: [] })) : [],
  };
}

export function getPostureCheck(ctx: ControllerContext, id: string): PostureCheckRecord {
  const c = ctx.store.postureChecks.get(id);
  if (c === undefined) throw new EdgeError('ERR_NOT_FOUND', `posture check ${id} not found`);
  return c;
}

export function registerPostureCheckRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  app.get(`${prefix}/posture-check-types`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page([...POSTURE_CHECK_TYPES], req.query as Static<typeof ListQuery>, { id: (t) => t, name: (t) => t });
    return listEnvelope(p.items.map(presentType), p.total, p.limit, p.offset, ['id', 'name']);
  });

  app.get(`${prefix}/posture-check-types/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const { id } = req.params as Static<typeof IdParams>;
    if (!POSTURE_CHECK_TYPES.includes(id as never)) throw new EdgeError('ERR_NOT_FOUND', `posture check type "${id}" not found (known: ${POSTURE_CHECK_TYPES.join(', ')})`);
    return envelope(presentType(id));
  });

  app.get(`${prefix}/posture-checks`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(store.postureChecks.list().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), req.query as Static<typeof ListQuery>, CHECK_FIELDS);
    return listEnvelope(p.items.map((c) => presentPostureCheck(ctx, c)), p.total, p.limit, p.offset, Object.keys(CHECK_FIELDS));
  });

  app.get(`${prefix}/posture-checks/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentPostureCheck(ctx, getPostureCheck(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.post(`${prefix}/posture-checks`, { schema: { body: CheckCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof CheckCreate> & Record<string, unknown>;
    const iso = new Date().toISOString();
    const check = {
      id: newId(), name: body.name, typeId: body.typeId, roleAttributes: normalizeAttributes(body.roleAttributes),
      data: postureCheckData(body.typeId, body), tags: body.tags ?? {}, version: 1, createdAt: iso, updatedAt: iso,
    } as PostureCheckRecord;
    await store.createPostureCheck(check);
    ctx.log.info({ postureCheckId: check.id, name: check.name, typeId: check.typeId }, 'posture check created');
    void reply.status(201);
    return envelope({ id: check.id, _links: selfLinks('posture-checks', check.id) });
  });

  /** PATCH keeps the data fields it leaves out; PUT replaces them (MFA fields left out take their defaults). */
  const update = async (id: string, body: Static<typeof CheckPatch> & Record<string, unknown>, replaceAll: boolean): Promise<void> => {
    const prev = getPostureCheck(ctx, id);
    if (body.typeId !== undefined && body.typeId !== prev.typeId) {
      throw new EdgeError('ERR_INVALID_ARGUMENT', `typeId: a posture check's type cannot change (this one is ${prev.typeId}); create a new check`, { details: { field: 'typeId' } });
    }
    const data = postureCheckData(prev.typeId, replaceAll ? body : { ...(prev.data as Record<string, unknown>), ...body });
    await store.updatePostureCheck({
      ...prev,
      name: body.name ?? prev.name,
      roleAttributes: body.roleAttributes !== undefined ? normalizeAttributes(body.roleAttributes) : replaceAll ? [] : prev.roleAttributes,
      data,
      tags: body.tags !== undefined ? (body.tags ?? {}) : replaceAll ? {} : prev.tags,
      version: prev.version + 1,
      updatedAt: new Date().toISOString(),
    } as PostureCheckRecord);
  };

  app.patch(`${prefix}/posture-checks/:id`, { schema: { params: IdParams, body: CheckPatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof CheckPatch> & Record<string, unknown>, false);
    return envelope({});
  });

  app.put(`${prefix}/posture-checks/:id`, { schema: { params: IdParams, body: CheckCreate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof CheckPatch> & Record<string, unknown>, true);
    return envelope({});
  });

  app.delete(`${prefix}/posture-checks/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deletePostureCheck(id))) throw new EdgeError('ERR_NOT_FOUND', `posture check ${id} not found`);
    ctx.log.info({ postureCheckId: id }, 'posture check deleted');
    return envelope({});
  });
}
