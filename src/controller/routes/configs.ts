/**
 * Config types and configs: `/edge/management/v1/config-types[/ID]` (the
 * built-in intercept.v1 and host.v1, read-only) and `/configs[/ID]`.
 * Config data is checked against its type on every write
 * (config-types.ts); deleting a config takes it off the services using it.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { BUILT_IN_AT, CONFIG_TYPES, validateConfigData, type ConfigType } from '../config-types.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId } from '../ids.js';
import { entityRef, envelope, listEnvelope, selfLinks } from '../present.js';
import type { ConfigRecord } from '../store.js';
import { requireAdmin } from './guard.js';
import { IdParams, ListQuery, Name, page, Tags } from './identities.js';

const Data = Type.Record(Type.String(), Type.Unknown());

const ConfigCreate = Type.Object({
  name: Name,
  configTypeId: Type.String({ minLength: 1, maxLength: 255 }),
  data: Data,
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const ConfigPatch = Type.Object({
  name: Type.Optional(Name),
  data: Type.Optional(Data),
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const ConfigUpdate = Type.Object({
  name: Name,
  data: Data,
  tags: Type.Optional(Tags),
}, { additionalProperties: true });

const TYPE_FIELDS: Record<string, FieldGetter<ConfigType>> = { id: (t) => t.id, name: (t) => t.name };

const CONFIG_FIELDS: Record<string, FieldGetter<ConfigRecord>> = {
  id: (c) => c.id,
  name: (c) => c.name,
  configTypeId: (c) => c.configTypeId,
  type: (c) => c.configTypeId,
  createdAt: (c) => c.createdAt,
};

function presentConfigType(t: ConfigType): Record<string, unknown> {
  return {
    id: t.id, createdAt: BUILT_IN_AT, updatedAt: BUILT_IN_AT,
    _links: { ...selfLinks('config-types', t.id), configs: { href: `./config-types/${t.id}/configs` } },
    tags: {}, name: t.name, schema: t.schema, target: t.target,
  };
}

export function presentConfig(c: ConfigRecord): Record<string, unknown> {
  return {
    id: c.id, createdAt: c.createdAt, updatedAt: c.updatedAt, _links: selfLinks('configs', c.id), tags: c.tags,
    name: c.name, configTypeId: c.configTypeId, configType: entityRef('config-types', c.configTypeId, c.configTypeId), data: c.data,
  };
}

/** A config type by id or name (they are the same for built-in types). */
export function getConfigType(idOrName: string, field?: string): ConfigType {
  const t = CONFIG_TYPES.get(idOrName);
  if (t === undefined) {
    const where = field !== undefined ? `${field}: ` : '';
    throw new EdgeError('ERR_NOT_FOUND', `${where}config type "${idOrName}" not found (known: ${[...CONFIG_TYPES.keys()].join(', ')})`, field !== undefined ? { details: { field } } : undefined);
  }
  return t;
}

export function getConfig(ctx: ControllerContext, id: string): ConfigRecord {
  const c = ctx.store.configs.get(id);
  if (c === undefined) throw new EdgeError('ERR_NOT_FOUND', `config ${id} not found`);
  return c;
}

export function registerConfigRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  app.get(`${prefix}/config-types`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page([...CONFIG_TYPES.values()], req.query as Static<typeof ListQuery>, TYPE_FIELDS);
    return listEnvelope(p.items.map(presentConfigType), p.total, p.limit, p.offset, Object.keys(TYPE_FIELDS));
  });

  app.get(`${prefix}/config-types/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentConfigType(getConfigType((req.params as Static<typeof IdParams>).id)));
  });

  app.get(`${prefix}/config-types/:id/configs`, { schema: { params: IdParams, querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const t = getConfigType((req.params as Static<typeof IdParams>).id);
    const all = store.configs.list().filter((c) => c.configTypeId === t.id).sort((a, b) => a.name.localeCompare(b.name));
    const p = page(all, req.query as Static<typeof ListQuery>, CONFIG_FIELDS);
    return listEnvelope(p.items.map(presentConfig), p.total, p.limit, p.offset, Object.keys(CONFIG_FIELDS));
  });

  app.get(`${prefix}/configs`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(store.configs.list().sort((a, b) => a.name.localeCompare(b.name)), req.query as Static<typeof ListQuery>, CONFIG_FIELDS);
    return listEnvelope(p.items.map(presentConfig), p.total, p.limit, p.offset, Object.keys(CONFIG_FIELDS));
  });

  app.get(`${prefix}/configs/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentConfig(getConfig(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.post(`${prefix}/configs`, { schema: { body: ConfigCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof ConfigCreate>;
    const type = getConfigType(body.configTypeId, 'configTypeId');
    validateConfigData(type, body.data);
    const iso = new Date().toISOString();
    const config: ConfigRecord = { id: newId(), name: body.name, configTypeId: type.id, data: body.data, tags: body.tags ?? {}, createdAt: iso, updatedAt: iso };
    await store.createConfig(config);
    ctx.log.info({ configId: config.id, name: config.name, configType: type.name }, 'config created');
    void reply.status(201);
    return envelope({ id: config.id, _links: selfLinks('configs', config.id) });
  });

  const update = async (id: string, p: Static<typeof ConfigPatch>, replaceAll: boolean): Promise<void> => {
    const prev = getConfig(ctx, id);
    if (p.data !== undefined) validateConfigData(getConfigType(prev.configTypeId), p.data);
    await store.updateConfig({
      ...prev,
      name: p.name ?? prev.name,
      data: p.data ?? prev.data,
      tags: p.tags !== undefined ? (p.tags ?? {}) : replaceAll ? {} : prev.tags,
      updatedAt: new Date().toISOString(),
    });
  };

  app.patch(`${prefix}/configs/:id`, { schema: { params: IdParams, body: ConfigPatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof ConfigPatch>, false);
    return envelope({});
  });

  app.put(`${prefix}/configs/:id`, { schema: { params: IdParams, body: ConfigUpdate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Static<typeof ConfigPatch>, true);
    return envelope({});
  });

  app.delete(`${prefix}/configs/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deleteConfig(id))) throw new EdgeError('ERR_NOT_FOUND', `config ${id} not found`);
    ctx.log.info({ configId: id }, 'config deleted');
    return envelope({});
  });
}
