/**
 * Services: `/edge/management/v1/services[/ID]` in OpenZiti's shapes. A
 * service names its configs (ids or names on input, ids on output; at most
 * one per config type) and carries roleAttributes for `#attr` selectors of
 * service policies. The detail's `config` map holds each config's data keyed
 * by config type name, which is what routers act on.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId } from '../ids.js';
import { envelope, listEnvelope, selfLinks } from '../present.js';
import type { ServiceRecord } from '../store.js';
import { presentConfig } from './configs.js';
import { requireAdmin } from './guard.js';
import { Attributes, IdParams, ListQuery, Name, normalizeAttributes, page, Tags } from './identities.js';

const ConfigRefs = Type.Union([Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { maxItems: 64 }), Type.Null()]);
const TerminatorStrategy = Type.String({ minLength: 1, maxLength: 64 });
const DEFAULT_TERMINATOR_STRATEGY = 'smartrouting';

const ServiceCreate = Type.Object({
  name: Name,
  roleAttributes: Type.Optional(Attributes),
  configs: Type.Optional(ConfigRefs),
  encryptionRequired: Type.Optional(Type.Boolean({ default: true })),
  terminatorStrategy: Type.Optional(TerminatorStrategy),
  maxIdleTimeMillis: Type.Optional(Type.Integer({ minimum: 0 })),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const ServicePatch = Type.Object({
  name: Type.Optional(Name),
  roleAttributes: Type.Optional(Attributes),
  configs: Type.Optional(ConfigRefs),
  terminatorStrategy: Type.Optional(TerminatorStrategy),
  maxIdleTimeMillis: Type.Optional(Type.Integer({ minimum: 0 })),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const SERVICE_FIELDS: Record<string, FieldGetter<ServiceRecord>> = {
  id: (s) => s.id,
  name: (s) => s.name,
  roleAttributes: (s) => s.roleAttributes,
  configs: (s) => s.configs,
  encryptionRequired: (s) => s.encryptionRequired,
  terminatorStrategy: (s) => s.terminatorStrategy,
  createdAt: (s) => s.createdAt,
};

export function presentService(ctx: ControllerContext, s: ServiceRecord): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const id of s.configs) {
    const c = ctx.store.configs.get(id);
    if (c !== undefined) config[c.configTypeId] = c.data;
  }
  return {
    id: s.id,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
    _links: { ...selfLinks('services', s.id), configs: { href: `./services/${s.id}/configs` } },
    tags: s.tags,
    name: s.name,
    roleAttributes: s.roleAttributes,
    configs: s.configs,
    config,
    encryptionRequired: s.encryptionRequired,
    terminatorStrategy: s.terminatorStrategy,
    maxIdleTimeMillis: s.maxIdleTimeMillis,
    // Permissions of the caller; the management API's admin holds none through policies.
    permissions: [],
    postureQueries: [],
  };
}

export function getService(ctx: ControllerContext, id: string): ServiceRecord {
  const s = ctx.store.services.get(id);
  if (s === undefined) throw new EdgeError('ERR_NOT_FOUND', `service ${id} not found`);
  return s;
}

/** Config ids or names → ids, in the given order, without repeats. */
function resolveConfigs(ctx: ControllerContext, refs: string[] | null | undefined): string[] {
  const out: string[] = [];
  for (const ref of refs ?? []) {
    const c = ctx.store.configs.find(ref);
    if (c === undefined) throw new EdgeError('ERR_NOT_FOUND', `configs: no config with id or name "${ref}"`, { details: { field: 'configs' } });
    if (!out.includes(c.id)) out.push(c.id);
  }
  return out;
}

export function registerServiceRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  app.get(`${prefix}/services`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(store.services.list().sort((a, b) => a.name.localeCompare(b.name)), req.query as Static<typeof ListQuery>, SERVICE_FIELDS);
    return listEnvelope(p.items.map((s) => presentService(ctx, s)), p.total, p.limit, p.offset, Object.keys(SERVICE_FIELDS));
  });

  app.get(`${prefix}/services/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentService(ctx, getService(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.get(`${prefix}/services/:id/configs`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const s = getService(ctx, (req.params as Static<typeof IdParams>).id);
    const list = s.configs.map((id) => store.configs.get(id)).filter((c) => c !== undefined).map(presentConfig);
    return listEnvelope(list, list.length, list.length, 0, []);
  });

  app.post(`${prefix}/services`, { schema: { body: ServiceCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof ServiceCreate>;
    const iso = new Date().toISOString();
    const service: ServiceRecord = {
      id: newId(), name: body.name, roleAttributes: normalizeAttributes(body.roleAttributes), configs: resolveConfigs(ctx, body.configs),
      encryptionRequired: body.encryptionRequired ?? true, terminatorStrategy: body.terminatorStrategy ?? DEFAULT_TERMINATOR_STRATEGY,
      maxIdleTimeMillis: body.maxIdleTimeMillis ?? 0, tags: body.tags ?? {}, createdAt: iso, updatedAt: iso,
    };
    await store.createService(service);
    ctx.log.info({ serviceId: service.id, name: service.name }, 'service created');
    void reply.status(201);
    return envelope({ id: service.id, _links: selfLinks('services', service.id) });
  });

  const update = async (id: string, p: Static<typeof ServicePatch>, replaceAll: boolean): Promise<void> => {
    const prev = getService(ctx, id);
    await store.updateService({
      ...prev,
      name: p.name ?? prev.name,
      roleAttributes: p.roleAttributes !== undefined ? normalizeAttributes(p.roleAttributes) : replaceAll ? [] : prev.roleAttributes,
      configs: p.configs !== undefined ? resolveConfigs(ctx, p.configs) : replaceAll ? [] : prev.configs,
      // encryptionRequired is set at create only (OpenZiti: read-only afterwards).
      terminatorStrategy: p.terminatorStrategy ?? (replaceAll ? DEFAULT_TERMINATOR_STRATEGY : prev.terminatorStrategy),
      maxIdleTimeMillis: p.maxIdleTimeMillis ?? (replaceAll ? 0 : prev.maxIdleTimeMillis),
      tags: p.tags !== undefined ? (p.tags ?? {}) : replaceAll ? {} : prev.tags,
      updatedAt: new Date().toISOString(),
    });
  };

  app.patch(`${prefix}/services/:id`, { schema: { params: IdParams, body: ServicePatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof ServicePatch>, false);
    return envelope({});
  });

  app.put(`${prefix}/services/:id`, { schema: { params: IdParams, body: ServiceCreate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof ServicePatch>, true);
    return envelope({});
  });

  app.delete(`${prefix}/services/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deleteService(id))) throw new EdgeError('ERR_NOT_FOUND', `service ${id} not found`);
    ctx.log.info({ serviceId: id }, 'service deleted');
    return envelope({});
  });
}
