/**
 * The policy kinds' shared REST shape under /edge/management/v1, in
 * OpenZiti's form: service policies, edge router policies and service edge
 * router policies (each kind's module says what it adds). For a kind at
 * PATH: `GET/POST /PATH`, `GET/PATCH/PUT/DELETE /PATH/ID`, and one list per
 * role field of what the policy names (`/PATH/ID/identities`, `…/services`,
 * `…/edge-routers`, `…/posture-checks`), evaluated by src/policy like the
 * routers do.
 *
 * Selectors are checked on write (src/policy parseRole): `#all`, `#attr`,
 * `@id-or-name`. `@name` is stored as `@id`, so renaming what a policy names
 * keeps the policy pointing at it, and deleting it removes the selector
 * (store.ts, POLICY_ROLE_FIELDS).
 */
import { Type, type Static, type TProperties } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { matchesRoles, parseRole, type PolicyEntity } from '../../policy/index.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId } from '../ids.js';
import { envelope, listEnvelope, presentIdentity, selfLinks } from '../present.js';
import { POLICY_ROLE_FIELDS, type PolicyKind, type PolicyRecord, type RoleTarget } from '../store.js';
import { presentEdgeRouter } from './edge-routers.js';
import { requireAdmin } from './guard.js';
import { IdParams, ListQuery, Name, page, Tags } from './identities.js';
import { presentPostureCheck } from './posture-checks.js';
import { presentService } from './services.js';

const Roles = Type.Union([Type.Array(Type.String({ maxLength: 512 }), { maxItems: 256 }), Type.Null()]);
const Semantic = Type.Union([Type.Literal('AllOf'), Type.Literal('AnyOf')]);

/** What the `@` selectors of one role field may name, and how those entities are listed. */
interface Target<T extends PolicyEntity> {
  /** Collection path, for the sub-list (`/PATH/ID/identities`). */
  path: string;
  what: string;
  all(ctx: ControllerContext): T[];
  /** The id of the entity with this id or name. */
  idOf(ctx: ControllerContext, ref: string): string | undefined;
  nameOf(ctx: ControllerContext, id: string): string | undefined;
  present(ctx: ControllerContext, e: T): unknown;
  fields: Record<string, FieldGetter<T>>;
}

const target = <T extends PolicyEntity>(t: Target<T>): Target<PolicyEntity> => t as unknown as Target<PolicyEntity>;

const TARGETS: Record<RoleTarget, Target<PolicyEntity>> = {
  identity: target({
    path: 'identities', what: 'identity',
    all: (ctx) => ctx.store.listIdentities(),
    idOf: (ctx, ref) => ctx.store.identities.get(ref)?.id ?? ctx.store.identityIdByName(ref),
    nameOf: (ctx, id) => ctx.store.identities.get(id)?.name,
    present: (ctx, i) => presentIdentity(ctx, i, ctx.store.sessionsOf(i.id).length > 0),
    fields: { id: (i) => i.id, name: (i) => i.name, type: (i) => i.type },
  }),
  service: target({
    path: 'services', what: 'service',
    all: (ctx) => ctx.store.services.list(),
    idOf: (ctx, ref) => ctx.store.services.find(ref)?.id,
    nameOf: (ctx, id) => ctx.store.services.get(id)?.name,
    present: presentService,
    fields: { id: (s) => s.id, name: (s) => s.name },
  }),
  edgeRouter: target({
    path: 'edge-routers', what: 'edge router',
    all: (ctx) => ctx.store.edgeRouters.list(),
    idOf: (ctx, ref) => ctx.store.edgeRouters.find(ref)?.id,
    nameOf: (ctx, id) => ctx.store.edgeRouters.get(id)?.name,
    present: presentEdgeRouter,
    fields: { id: (r) => r.id, name: (r) => r.name },
  }),
  postureCheck: target({
    path: 'posture-checks', what: 'posture check',
    all: (ctx) => ctx.store.postureChecks.list(),
    idOf: (ctx, ref) => ctx.store.postureChecks.find(ref)?.id,
    nameOf: (ctx, id) => ctx.store.postureChecks.get(id)?.name,
    present: presentPostureCheck,
    fields: { id: (c) => c.id, name: (c) => c.name, typeId: (c) => c.typeId },
  }),
};

/** One policy kind's REST face. */
export interface PolicyKindSpec {
  kind: PolicyKind;
  /** Collection path, e.g. `service-policies`. */
  path: string;
  /** For messages and logs, e.g. `service policy`. */
  what: string;
  /** Fields beyond name, semantic, roles and tags: required on POST and PUT, kept when a PATCH leaves them out. */
  extra?: { create: TProperties; patch: TProperties };
  /** OpenZiti's edge router policies carry `isSystem` (policies it makes for tunneler-enabled routers; never true here). */
  hasIsSystem?: boolean;
}

const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export function registerPolicyRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string, spec: PolicyKindSpec): void {
  const { store } = ctx;
  const { kind, path, what } = spec;
  const roleFields = Object.entries(POLICY_ROLE_FIELDS[kind]) as [string, RoleTarget][];
  const extraNames = Object.keys(spec.extra?.create ?? {});
  const policies = store.policies(kind);

  const roleProps = Object.fromEntries(roleFields.map(([f]) => [f, Type.Optional(Roles)]));
  const Create = Type.Object({ name: Name, semantic: Type.Optional(Semantic), ...roleProps, tags: Type.Optional(Tags), ...spec.extra?.create }, { additionalProperties: true });
  const Patch = Type.Object({ name: Type.Optional(Name), semantic: Type.Optional(Semantic), ...roleProps, tags: Type.Optional(Tags), ...spec.extra?.patch }, { additionalProperties: true });
  type Body = Record<string, unknown> & { name?: string; semantic?: 'AllOf' | 'AnyOf'; tags?: Record<string, unknown> | null };

  const fieldsOf: Record<string, FieldGetter<PolicyRecord>> = { id: (p) => p.id, name: (p) => p.name };
  for (const f of extraNames) fieldsOf[f] = (p) => (p as unknown as Record<string, unknown>)[f];
  fieldsOf.semantic = (p) => p.semantic;
  for (const [f] of roleFields) fieldsOf[f] = (p) => (p as unknown as Record<string, unknown>)[f];
  fieldsOf.createdAt = (p) => p.createdAt;

  /**
   * Checks selectors and resolves `@id-or-name` to `@id`. Malformed
   * selectors are ERR_INVALID_ARGUMENT; a selector naming nothing is ERR_NOT_FOUND.
   */
  const normalizeRoles = (roles: unknown, field: string, t: Target<PolicyEntity>): string[] => {
    const out: string[] = [];
    ((roles ?? []) as string[]).forEach((role, i) => {
      const sel = parseRole(role);
      if (typeof sel === 'string') throw new EdgeError('ERR_INVALID_ARGUMENT', `${field}[${i}]: ${sel}`, { details: { field } });
      let norm = role;
      if (sel.kind === 'entity') {
        const id = t.idOf(ctx, sel.ref);
        if (id === undefined) throw new EdgeError('ERR_NOT_FOUND', `${field}[${i}]: no ${t.what} with id or name "${sel.ref}"`, { details: { field } });
        norm = `@${id}`;
      }
      if (!out.includes(norm)) out.push(norm);
    });
    return out;
  };

  const present = (p: PolicyRecord): Record<string, unknown> => {
    const rec = p as unknown as Record<string, unknown>;
    const links: Record<string, { href: string }> = { ...selfLinks(path, p.id) };
    const out: Record<string, unknown> = { id: p.id, createdAt: p.createdAt, updatedAt: p.updatedAt, _links: links, tags: p.tags, name: p.name };
    for (const f of extraNames) out[f] = rec[f];
    out.semantic = p.semantic;
    for (const [f, t] of roleFields) {
      const roles = rec[f] as string[];
      links[TARGETS[t].path] = { href: `./${path}/${p.id}/${TARGETS[t].path}` };
      out[f] = roles;
      out[`${f}Display`] = roles.map((role) => (role.startsWith('@') ? { role, name: `@${TARGETS[t].nameOf(ctx, role.slice(1)) ?? role.slice(1)}` } : { role, name: role }));
    }
    if (spec.hasIsSystem === true) out.isSystem = false;
    return out;
  };

  const getPolicy = (id: string): PolicyRecord => {
    const p = policies.get(id);
    if (p === undefined) throw new EdgeError('ERR_NOT_FOUND', `${what} ${id} not found`);
    return p;
  };

  app.get(`${prefix}/${path}`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(policies.list().sort(byName), req.query as Static<typeof ListQuery>, fieldsOf);
    return listEnvelope(p.items.map(present), p.total, p.limit, p.offset, Object.keys(fieldsOf));
  });

  app.get(`${prefix}/${path}/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(present(getPolicy((req.params as Static<typeof IdParams>).id)));
  });

  for (const [field, t] of roleFields) {
    const tg = TARGETS[t];
    app.get(`${prefix}/${path}/:id/${tg.path}`, { schema: { params: IdParams, querystring: ListQuery } }, async (req) => {
      requireAdmin(ctx, req);
      const policy = getPolicy((req.params as Static<typeof IdParams>).id) as unknown as Record<string, string[]> & PolicyRecord;
      const named = tg.all(ctx).filter((e) => matchesRoles(policy[field]!, policy.semantic, e)).sort(byName);
      const p = page(named, req.query as Static<typeof ListQuery>, tg.fields);
      const data = await Promise.all(p.items.map((e) => tg.present(ctx, e)));
      return listEnvelope(data, p.total, p.limit, p.offset, Object.keys(tg.fields));
    });
  }

  /** The record for a body: fields it leaves out keep `prev`'s values, or their defaults when replacing all (POST, PUT). */
  const recordOf = (body: Body, prev: PolicyRecord | undefined, replaceAll: boolean): PolicyRecord => {
    const iso = new Date().toISOString();
    const base = prev !== undefined && !replaceAll ? (prev as unknown as Record<string, unknown>) : undefined;
    const next: Record<string, unknown> = {
      id: prev?.id ?? newId(),
      name: body.name ?? prev?.name,
      semantic: body.semantic ?? (base?.semantic as string | undefined) ?? 'AllOf',
      tags: body.tags !== undefined ? (body.tags ?? {}) : (base?.tags ?? {}),
      createdAt: prev?.createdAt ?? iso,
      updatedAt: iso,
    };
    for (const f of extraNames) next[f] = body[f] ?? (prev as unknown as Record<string, unknown> | undefined)?.[f];
    for (const [f, t] of roleFields) next[f] = body[f] !== undefined ? normalizeRoles(body[f], f, TARGETS[t]) : (base?.[f] ?? []);
    return next as unknown as PolicyRecord;
  };

  app.post(`${prefix}/${path}`, { schema: { body: Create } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const policy = recordOf(req.body as Body, undefined, true);
    await store.createPolicy(kind, policy);
    const extra = Object.fromEntries(extraNames.map((f) => [f, (policy as unknown as Record<string, unknown>)[f]]));
    ctx.log.info({ ruleId: policy.id, name: policy.name, ...extra }, `${what} created`);
    void reply.status(201);
    return envelope({ id: policy.id, _links: selfLinks(path, policy.id) });
  });

  app.patch(`${prefix}/${path}/:id`, { schema: { params: IdParams, body: Patch } }, async (req) => {
    requireAdmin(ctx, req);
    await store.updatePolicy(kind, recordOf(req.body as Body, getPolicy((req.params as Static<typeof IdParams>).id), false));
    return envelope({});
  });

  app.put(`${prefix}/${path}/:id`, { schema: { params: IdParams, body: Create } }, async (req) => {
    requireAdmin(ctx, req);
    await store.updatePolicy(kind, recordOf(req.body as Body, getPolicy((req.params as Static<typeof IdParams>).id), true));
    return envelope({});
  });

  app.delete(`${prefix}/${path}/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deletePolicy(kind, id))) throw new EdgeError('ERR_NOT_FOUND', `${what} ${id} not found`);
    ctx.log.info({ ruleId: id }, `${what} deleted`);
    return envelope({});
  });
}
