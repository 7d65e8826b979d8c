/**
 * Authentication policies: `/edge/management/v1/auth-policies[/ID]` in
 * OpenZiti's shapes (authPolicyCreate/Detail/Patch). Fields a POST or PUT
 * leaves out (or sends as null) take the default policy's values; a PATCH
 * keeps them. The built-in `default` policy can be changed, not deleted; a
 * policy that identities use cannot be deleted. Enforcement: auth.ts
 * (methods, lockout, second factor), enroll.ts (password rules).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { defaultAuthPolicy } from '../auth-policy.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId } from '../ids.js';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../passwords.js';
import { envelope, listEnvelope, selfLinks } from '../present.js';
import type { AuthPolicyRecord } from '../store.js';
import { requireAdmin } from './guard.js';
import { IdParams, ListQuery, Name, page, Tags } from './identities.js';

/** null means "not given", as in OpenZiti's nullable patch fields. */
const Opt = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

const Primary = Type.Object({
  cert: Opt(Type.Object({ allowed: Opt(Type.Boolean()), allowExpiredCerts: Opt(Type.Boolean()) })),
  extJwt: Opt(Type.Object({ allowed: Opt(Type.Boolean()), allowedSigners: Opt(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 64 })) })),
  updb: Opt(Type.Object({
    allowed: Opt(Type.Boolean()),
    minPasswordLength: Opt(Type.Integer({ minimum: MIN_PASSWORD_LENGTH, maximum: MAX_PASSWORD_LENGTH })),
    requireMixedCase: Opt(Type.Boolean()),
    requireNumberChar: Opt(Type.Boolean()),
    requireSpecialChar: Opt(Type.Boolean()),
    maxAttempts: Opt(Type.Integer({ minimum: 0, maximum: 1000, description: '0: never locked' })),
    lockoutDurationMinutes: Opt(Type.Integer({ minimum: 0, maximum: 525_600, description: '0: until an admin enables the identity' })),
  })),
});
const Secondary = Type.Object({ requireTotp: Opt(Type.Boolean()), requireExtJwtSigner: Opt(Type.String({ maxLength: 255 })) });

const PolicyCreate = Type.Object({ name: Name, primary: Opt(Primary), secondary: Opt(Secondary), tags: Type.Optional(Tags) }, { additionalProperties: true });
const PolicyPatch = Type.Object({ name: Opt(Name), primary: Opt(Primary), secondary: Opt(Secondary), tags: Type.Optional(Tags) }, { additionalProperties: true });
type Body = Static<typeof PolicyPatch>;

const POLICY_FIELDS: Record<string, FieldGetter<AuthPolicyRecord>> = {
  id: (p) => p.id,
  name: (p) => p.name,
  createdAt: (p) => p.createdAt,
};

export function presentAuthPolicy(p: AuthPolicyRecord): Record<string, unknown> {
  return { id: p.id, createdAt: p.createdAt, updatedAt: p.updatedAt, _links: selfLinks('auth-policies', p.id), tags: p.tags, name: p.name, primary: p.primary, secondary: p.secondary };
}

function getAuthPolicy(ctx: ControllerContext, id: string): AuthPolicyRecord {
  const p = ctx.store.authPolicies.get(id);
  if (p === undefined) throw new EdgeError('ERR_NOT_FOUND', `auth policy ${id} not found`);
  return p;
}

/** `over` with the non-null fields of `patch` laid on top. */
function overlay<T extends object>(over: T, patch: object | null | undefined): T {
  const out = { ...over } as Record<string, unknown>;
  for (const [k, v] of Object.entries(patch ?? {})) if (v !== null && v !== undefined && k in out) out[k] = v;
  return out as T;
}

/** The policy a body describes, on top of `base` (the previous policy for PATCH, the defaults for POST and PUT). */
function policyFrom(body: Body, base: AuthPolicyRecord): Pick<AuthPolicyRecord, 'primary' | 'secondary'> {
  const primary = {
    cert: overlay(base.primary.cert, body.primary?.cert),
    extJwt: overlay(base.primary.extJwt, body.primary?.extJwt),
    updb: overlay(base.primary.updb, body.primary?.updb),
  };
  const secondary = overlay(base.secondary, body.secondary);
  // External JWT signers do not exist in ztedge yet: naming one can only be a mistake.
  const signer = [...primary.extJwt.allowedSigners, ...(secondary.requireExtJwtSigner !== null ? [secondary.requireExtJwtSigner] : [])][0];
  if (signer !== undefined) {
    const field = primary.extJwt.allowedSigners.length > 0 ? 'primary.extJwt.allowedSigners' : 'secondary.requireExtJwtSigner';
    throw new EdgeError('ERR_NOT_FOUND', `${field}: no external JWT signer "${signer}" (external JWT signers are not supported yet)`, { details: { field } });
  }
  if (!primary.cert.allowed && !primary.updb.allowed && !primary.extJwt.allowed) {
    throw new EdgeError('ERR_INVALID_ARGUMENT', 'primary: at least one of cert, updb or extJwt must be allowed, or no identity of this policy could log in', { details: { field: 'primary' } });
  }
  return { primary, secondary };
}

export function registerAuthPolicyRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;

  app.get(`${prefix}/auth-policies`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(store.authPolicies.list().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), req.query as Static<typeof ListQuery>, POLICY_FIELDS);
    return listEnvelope(p.items.map(presentAuthPolicy), p.total, p.limit, p.offset, Object.keys(POLICY_FIELDS));
  });

  app.get(`${prefix}/auth-policies/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentAuthPolicy(getAuthPolicy(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.post(`${prefix}/auth-policies`, { schema: { body: PolicyCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof PolicyCreate>;
    const iso = new Date().toISOString();
    const policy: AuthPolicyRecord = { id: newId(), name: body.name, ...policyFrom(body, defaultAuthPolicy(iso)), tags: body.tags ?? {}, createdAt: iso, updatedAt: iso };
    await store.createAuthPolicy(policy);
    ctx.log.info({ authPolicyId: policy.id, name: policy.name }, 'auth policy created');
    void reply.status(201);
    return envelope({ id: policy.id, _links: selfLinks('auth-policies', policy.id) });
  });

  const update = async (id: string, body: Body, replaceAll: boolean): Promise<void> => {
    const prev = getAuthPolicy(ctx, id);
    const iso = new Date().toISOString();
    await store.updateAuthPolicy({
      ...prev,
      name: body.name ?? prev.name,
      ...policyFrom(body, replaceAll ? defaultAuthPolicy(iso) : prev),
      tags: body.tags !== undefined ? (body.tags ?? {}) : replaceAll ? {} : prev.tags,
      updatedAt: iso,
    });
    ctx.log.info({ authPolicyId: id }, 'auth policy changed');
  };

  app.patch(`${prefix}/auth-policies/:id`, { schema: { params: IdParams, body: PolicyPatch } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Body, false);
    return envelope({});
  });

  app.put(`${prefix}/auth-policies/:id`, { schema: { params: IdParams, body: PolicyCreate } }, async (req) => {
    requireAdmin(ctx, req);
    await update((req.params as Static<typeof IdParams>).id, req.body as Body, true);
    return envelope({});
  });

  app.delete(`${prefix}/auth-policies/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await store.deleteAuthPolicy(id))) throw new EdgeError('ERR_NOT_FOUND', `auth policy ${id} not found`);
    ctx.log.info({ authPolicyId: id }, 'auth policy deleted');
    return envelope({});
  });
}
