/**
 * Store records → API shapes. The field names and types follow OpenZiti's
 * Edge Management API definitions (identityDetail, enrollmentDetail,
 * currentApiSessionDetail), checked against the spec in the tests.
 */
import type { ControllerContext } from './context.js';
import { signEnrollmentJwt } from './enrollment-jwt.js';
import { isLocked, type ApiSessionRecord, type EnrollmentRecord, type IdentityRecord } from './store.js';

type Links = Record<string, { href: string }>;

export function selfLinks(collection: string, id: string): Links {
  return { self: { href: `./${collection}/${id}` } };
}

export function entityRef(entity: string, id: string, name: string): Record<string, unknown> {
  return { _links: selfLinks(entity, id), entity, id, name };
}

/** Envelope of a successful answer. */
export function envelope(data: unknown, meta: Record<string, unknown> = {}): { data: unknown; meta: Record<string, unknown> } {
  return { data, meta };
}

export function listEnvelope(data: unknown[], totalCount: number, limit: number, offset: number, filterableFields: string[]): { data: unknown; meta: Record<string, unknown> } {
  return { data, meta: { pagination: { limit, offset, totalCount }, filterableFields } };
}

export function enrollmentJwt(ctx: ControllerContext, e: EnrollmentRecord): Promise<string> {
  return signEnrollmentJwt(
    { method: e.method, issuer: ctx.settings.issuer, subject: e.identityId, token: e.token, expiresAt: new Date(e.expiresAt) },
    ctx.pki.serverKey,
    ctx.pki.serverKid,
  );
}

export async function presentIdentity(ctx: ControllerContext, i: IdentityRecord, hasApiSession: boolean): Promise<Record<string, unknown>> {
  const authenticators: Record<string, unknown> = {};
  for (const a of ctx.store.authenticatorsOf(i.id)) {
    if (a.method === 'cert') authenticators.cert = { id: a.id, fingerprint: a.fingerprint };
    else authenticators.updb = { id: a.id, username: a.username };
  }
  const lock = ctx.store.lockouts.get(i.id);
  const locked = isLocked(lock, Date.now());
  const enrollment: Record<string, unknown> = {};
  for (const e of ctx.store.enrollmentsOf(i.id)) {
    const base: Record<string, unknown> = { id: e.id, token: e.token, jwt: await enrollmentJwt(ctx, e), expiresAt: e.expiresAt };
    if (e.method === 'ottca' && e.caId !== null) {
      base.caId = e.caId;
      base.ca = entityRef('cas', e.caId, ctx.store.cas.get(e.caId)?.name ?? '');
    }
    if (e.method === 'updb') base.username = e.username;
    enrollment[e.method] = base;
  }
  return {
    id: i.id,
    createdAt: i.createdAt,
    updatedAt: i.updatedAt,
    _links: {
      ...selfLinks('identities', i.id),
      enrollments: { href: `./identities/${i.id}/enrollments` },
    },
    tags: i.tags,
    name: i.name,
    type: { _links: {}, entity: 'identity-types', id: i.type, name: i.type },
    typeId: i.type,
    isAdmin: i.isAdmin,
    isDefaultAdmin: i.isDefaultAdmin,
    roleAttributes: i.roleAttributes,
    authenticators,
    enrollment,
    envInfo: {},
    sdkInfo: {},
    hasEdgeRouterConnection: false,
    edgeRouterConnectionStatus: 'offline',
    hasApiSession,
    isMfaEnabled: ctx.store.mfa.get(i.id)?.isVerified === true,
    serviceHostingPrecedences: {},
    serviceHostingCosts: {},
    defaultHostingCost: 0,
    defaultHostingPrecedence: 'default',
    authPolicyId: i.authPolicyId,
    authPolicy: entityRef('auth-policies', i.authPolicyId, ctx.store.authPolicies.get(i.authPolicyId)?.name ?? i.authPolicyId),
    externalId: i.externalId,
    // A lock after failed password logins shows as OpenZiti shows it: disabled, since and until when (null: until enabled).
    disabled: i.disabled || locked,
    disabledAt: locked ? lock!.lockedAt : null,
    disabledUntil: locked ? lock!.lockedUntil : null,
    permissions: [],
    appData: i.appData,
  };
}

export async function presentEnrollment(ctx: ControllerContext, e: EnrollmentRecord): Promise<Record<string, unknown>> {
  const identity = ctx.store.identities.get(e.identityId);
  return {
    id: e.id,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
    _links: selfLinks('enrollments', e.id),
    tags: {},
    method: e.method,
    token: e.token,
    expiresAt: e.expiresAt,
    identityId: e.identityId,
    identity: entityRef('identities', e.identityId, identity?.name ?? ''),
    caId: e.caId,
    username: e.username ?? undefined,
    jwt: await enrollmentJwt(ctx, e),
    details: {},
  };
}

/**
 * currentApiSessionDetail. A session that must still pass MFA carries one
 * authQuery (OpenZiti's): POST ./authenticate/mfa with a TOTP code (6 digits)
 * or a recovery code (8 characters); isTotpEnrolled false means enroll first.
 */
export function presentSession(ctx: ControllerContext, s: ApiSessionRecord, identity: IdentityRecord): Record<string, unknown> {
  const expiresAt = ctx.sessions.expiresAt(s);
  const pending = s.mfaRequired === true && s.mfaPassedAt == null;
  return {
    id: s.id,
    createdAt: s.createdAt,
    updatedAt: s.lastActivityAt,
    _links: selfLinks('api-sessions', s.id),
    tags: {},
    token: s.token,
    identityId: identity.id,
    identity: entityRef('identities', identity.id, identity.name),
    authenticatorId: s.authenticatorId,
    configTypes: [],
    ipAddress: s.ipAddress,
    authQueries: pending ? [{
      typeId: 'MFA', provider: 'ziti', httpMethod: 'POST', httpUrl: './authenticate/mfa', format: 'alphaNumeric', minLength: 6, maxLength: 8,
      isTotpEnrolled: ctx.store.mfa.get(identity.id)?.isVerified === true,
    }] : [],
    isMfaRequired: s.mfaRequired === true,
    isMfaComplete: s.mfaPassedAt != null,
    isCertExtendable: false,
    lastActivityAt: s.lastActivityAt,
    cachedLastActivityAt: s.lastActivityAt,
    cachedUpdatedAt: s.lastActivityAt,
    expiresAt: expiresAt.toISOString(),
    expirationSeconds: Math.max(0, Math.round((expiresAt.getTime() - Date.now()) / 1000)),
  };
}
