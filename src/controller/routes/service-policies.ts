/**
 * Service policies: `/edge/management/v1/service-policies[/ID]` in
 * OpenZiti's shapes. A Dial policy lets the identities it names use the
 * services it names; a Bind policy lets them host those services.
 *
 * Selectors are checked on write (src/policy parseRole): `#all`, `#attr`,
 * `@id-or-name`. `@name` is stored as `@id`, so renaming an identity or a
 * service keeps the policy pointing at it, and deleting one removes the
 * selector (store.ts). `/service-policies/ID/identities|services` show what
 * a policy names, evaluated by src/policy like the routers do.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { matchesRoles, parseRole } from '../../policy/index.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId } from '../ids.js';
import { envelope, listEnvelope, presentIdentity, selfLinks } from '../present.js';
import type { IdentityRecord, ServicePolicyRecord, ServiceRecord } from '../store.js';
import { requireAdmin } from './guard.js';
import { IdParams, ListQuery, Name, page, Tags } from './identities.js';
import { presentService } from './services.js';

const Roles = Type.Union([Type.Array(Type.String({ maxLength: 512 }), { maxItems: 256 }), Type.Null()]);
const PolicyType = Type.Union([Type.Literal('Dial'), Type.Literal('Bind')]);
const Semantic = Type.Union([Type.Literal('AllOf'), Type.Literal('AnyOf')]);

const PolicyCreate = Type.Object({
  name: Name,
  type: PolicyType,
  semantic: Type.Optional(Semantic),
  identityRoles: Type.Optional(Roles),
  serviceRoles: Type.Optional(Roles),
  postureCheckRoles: Type.Optional(Roles),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const PolicyPatch = Type.Object({
  name: Type.Optional(Name),
  type: Type.Optional(PolicyType),
  semantic: Type.Optional(Semantic),
  identityRoles: Type.Optional(Roles),
  serviceRoles: Type.Optional(Roles),
  postureCheckRoles: Type.Optional(Roles),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const POLICY_FIELDS: Record<string, FieldGetter<ServicePolicyRecord>> = {
  id: (p) => p.id,
  name: (p) => p.name,
  type: (p) => p.type,
  semantic: (p) => p.semantic,
  identityRoles: (p) => p.identityRoles,
  serviceRoles: (p) => p.serviceRoles,
  postureCheckRoles: (p) => p.postureCheckRoles,
  createdAt: (p) => p.createdAt,
};

type RoleField = 'identityRoles' | 'serviceRoles' | 'postureCheckRoles';

/**
 * Checks selectors and resolves `@id-or-name` to `@id`. Malformed selectors
 * are ERR_INVALID_ARGUMENT; a selector naming nothing is ERR_NOT_FOUND.
 */
function normalizeRoles(ctx: ControllerContext, roles: string[] | null | undefined, field: RoleField): string[] {
  const out: string[] = [];
  (roles ?? []).forEach((role, i) => {
    const sel = parseRole(role);
    if (typeof sel === 'string') throw new EdgeError('ERR_INVALID_ARGUMENT', `${field}[${i}]: ${sel}`, { details: { field } });
    let norm = role;
    if (sel.kind === 'entity') {
      let id: string | undefined;
      if (field === 'identityRoles') id = ctx.store.identities.get(sel.ref)?.id ?? ctx.store.identityIdByName(sel.ref);
      else if (field === 'serviceRoles') id = ctx.store.services.find(sel.ref)?.id;
      if (id === undefined) {
        const what = field === 'identityRoles' ? 'identity' : field === 'serviceRoles' ? 'service' : 'posture check (posture checks are not supported yet)';
        throw new EdgeError('ERR_NOT_FOUND', `${field}[${i}]: no ${what} with id or name "${sel.ref}"`, { details: { field } });
      }
      norm = `@${id}`;
    }
    if (!out.includes(norm)) out.push(norm);
  });
  return out;
}

function display(ctx: ControllerContext, roles: string[], field: RoleField): { role: string; name: string }[] {
  return roles.map((role) => {
    if (!role.startsWith('@')) return { role, name: role };
    const id = role.slice(1);
    const name = field === 'identityRoles' ? ctx.store.identities.get(id)?.name : ctx.store.services.get(id)?.name;
    return { role, name: `@${name ?? id}` };
  });
}

export function presentServicePolicy(ctx: ControllerContext, p: ServicePolicyRecord): Record<string, unknown> {
  return {
    id: p.id,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
    _links: {
      ...selfLinks('service-policies', p.id),
      identities: { href: `./service-policies/${p.id}/identities` },
      services: { href: `./service-policies/${p.id}/services` },
    },
    tags: p.tags,
    name: p.name,
    type: p.type,
    semantic: p.semantic,
    identityRoles: p.identityRoles,
    identityRolesDisplay: display(ctx, p.identityRoles, 'identityRoles'),
    serviceRoles: p.serviceRoles,
    serviceRolesDisplay: display(ctx, p.serviceRoles, 'serviceRoles'),
    postureCheckRoles: p.postureCheckRoles,
    postureCheckRolesDisplay: display(ctx, p.postureCheckRoles, 'postureCheckRoles'),
  };
}

export function getServicePolicy(ctx: ControllerContext, id: string): ServicePolicyRecord {
  const p = ctx.store.servicePolicies.get(id);
  if (p === undefined) throw new EdgeError('ERR_NOT_FOUND', `service policy ${id} not found`);
  return p;
}

const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export function registerServicePolicyRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  app.get(`${prefix}/service-policies`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(store.servicePolicies.list().sort(byName), req.query as Static<typeof ListQuery>, POLICY_FIELDS);
    return listEnvelope(p.items.map((x) => presentServicePolicy(ctx, x)), p.total, p.limit, p.offset, Object.keys(POLICY_FIELDS));
  });

  app.get(`${prefix}/service-policies/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentServicePolicy(ctx, getServicePolicy(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.get(`${prefix}/service-policies/:id/identities`, { schema: { params: IdParams, querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const policy = getServicePolicy(ctx, (req.params as Static<typeof IdParams>).id);
    const named = store.listIdentities().filter((i) => matchesRoles(policy.identityRoles, policy.semantic, i)).sort(byName);
    const p = page<IdentityRecord>(named, req.query as Static<typeof ListQuery>, { id: (i) => i.id, name: (i) => i.name, type: (i) => i.type });
    const data = await Promise.all(p.items.map((i) => presentIdentity(ctx, i, store.sessionsOf(i.id).length > 0)));
    return listEnvelope(data, p.total, p.limit, p.offset, ['id', 'name', 'type']);
  });

  app.get(`${prefix}/service-policies/:id/services`, { schema: { params: IdParams, querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const policy = getServicePolicy(ctx, (req.params as Static<typeof IdParams>).id);
    const named = store.services.list().filter((s) => matchesRoles(policy.serviceRoles, policy.semantic, s)).sort(byName);
    const p = page<ServiceRecord>(named, req.query as Static<typeof ListQuery>, { id: (s) => s.id, name: (s) => s.name });
    return listEnvelope(p.items.map((s) => presentService(ctx, s)), p.total, p.limit, p.offset, ['id', 'name']);
  });

  app.post(`${prefix}/service-policies`, { schema: { body: PolicyCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof PolicyCreate>;
    const iso = new Date().toISOString();
    const policy: ServicePolicyRecord = {
      id: newId(), name: body.name, type: body.type, semantic: body.semantic ?? 'AllOf',
      identityRoles: normalizeRoles(ctx, body.identityRoles, 'identityRoles'),
      serviceRoles: normalizeRoles(ctx, body.serviceRoles, 'serviceRoles'),
      postureCheckRoles: normalizeRoles(ctx, body.postureCheckRoles, 'postureCheckRoles'),
      tags: body.tags ?? {}, createdAt: iso, updatedAt: iso,
    };
    await store.createServicePolicy(policy);
    ctx.log.info({ ruleId: policy.id, name: policy.name, type: policy.type }, 'service policy created');
    void reply.status(201);
    return envelope({ id: policy.id, _links: selfLinks('service-policies', policy.id) });
  });

  const update = async (id: string, p: Static<typeof PolicyPatch>, replaceAll: boolean): Promise<void> => {
    const prev = getServicePolicy(ctx, id);
    const roles = (field: RoleField): string[] => (p[field] !== undefined ? normalizeRoles(ctx, p[field], field) : replaceAll ? [] : prev[field]);
    await store.updateServicePolicy({
      ...prev,
      name: p.name ?? prev.name,
      type: p.type ?? prev.type,
      semantic: p.semantic ?? (replaceAll ? 'AllOf' : prev.semantic),
      identityRoles: roles('identityRoles'),
      serviceRoles: roles('serviceRoles'),
      postureCheckRoles: roles('postureCheckRoles'),
      tags: p.tags !== undefined ? (p.tags ?? {}) : replaceAll ? {} : prev.tags,
      updatedAt: new Date().toISOString(),
    });
  };

  app.patch(`${prefix}/service-policies/:id`, { schema: { params: IdParams, body: PolicyPatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof PolicyPatch>, false);
    return envelope({});
  });

  app.put(`${prefix}/service-policies/:id`, { schema: { params: IdParams, body: PolicyCreate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof PolicyPatch>, true);
    return envelope({});
  });

  app.delete(`${prefix}/service-policies/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deleteServicePolicy(id))) throw new EdgeError('ERR_NOT_FOUND', `service policy ${id} not found`);
    ctx.log.info({ ruleId: id }, 'service policy deleted');
    return envelope({});
  });
}
