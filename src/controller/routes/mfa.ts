/**
 * MFA with TOTP (totp.ts: RFC 6238, SHA-1, 6 digits, 30 s), on both APIs,
 * in OpenZiti's shapes:
 *
 *   POST   …/current-identity/mfa                  start enrollment → 201 {id, provisioningUrl, recoveryCodes}
 *   GET    …/current-identity/mfa                  detailMfa (provisioningUrl and recoveryCodes until verified)
 *   POST   …/current-identity/mfa/verify {code}    first code from the app: enrollment complete
 *   DELETE …/current-identity/mfa                  remove it: code in `mfa-validation-code` or {code}
 *   GET    …/current-identity/mfa/recovery-codes   show them (code in `mfa-validation-code`)
 *   POST   …/current-identity/mfa/recovery-codes {code}   new ones
 *   POST   …/authenticate/mfa {code}               the session passes MFA
 *   DELETE /edge/management/v1/identities/ID/mfa   an admin removes an identity's MFA
 *
 * A session of an identity with MFA enrolled, or whose auth policy requires
 * TOTP, is partially authenticated until `authenticate/mfa` (or, while
 * enrolling, `verify`) succeeds; these calls are the ones it may make
 * (sessions.ts). A code is a TOTP code (±1 step; each step accepted once)
 * or, except for `verify`, an unused recovery code (then spent). Wrong
 * codes count per session: at MAX_MFA_FAILURES the session ends, so codes
 * cannot be guessed on one password login.
 */
import { randomBytes } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EdgeError, isEdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import { envelope, selfLinks } from '../present.js';
import type { ResolvedSession } from '../sessions.js';
import type { MfaRecord } from '../store.js';
import { base32Decode, base32Encode, matchTotp, provisioningUrl } from '../totp.js';
import { requireAdmin, sessionToken } from './guard.js';
import { getIdentity, IdParams } from './identities.js';

/** Wrong codes one session may send before it ends. */
export const MAX_MFA_FAILURES = 5;
const RECOVERY_CODES = 10;
/** Recovery code alphabet: no 0/O, 1/I/L, so codes read back without doubt. */
const RECOVERY_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
const RECOVERY_CODE_LENGTH = 8;
const ISSUER = 'ztedge';

const CodeBody = Type.Object({ code: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: true });

function newRecoveryCodes(): string[] {
  return Array.from({ length: RECOVERY_CODES }, () => [...randomBytes(RECOVERY_CODE_LENGTH)].map((b) => RECOVERY_ALPHABET[b % RECOVERY_ALPHABET.length]).join(''));
}

function presentMfa(rec: MfaRecord, identityName: string): Record<string, unknown> {
  return {
    id: rec.identityId, createdAt: rec.createdAt, updatedAt: rec.updatedAt, _links: { self: { href: './current-identity/mfa' } }, tags: {},
    isVerified: rec.isVerified,
    // OpenZiti: "not provided if MFA verification has been completed".
    ...(rec.isVerified ? {} : { provisioningUrl: provisioningUrl(base32Decode(rec.secret), ISSUER, identityName), recoveryCodes: rec.recoveryCodes }),
  };
}

/** The code of a request: the `mfa-validation-code` header, else `{code}` in the body. */
function codeOf(req: FastifyRequest): string | undefined {
  const h = req.headers['mfa-validation-code'];
  const header = Array.isArray(h) ? h[0] : h;
  const body = req.body as { code?: unknown } | undefined;
  return header ?? (typeof body?.code === 'string' ? body.code : undefined);
}

export function registerMfaRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const { store } = ctx;
  const partial = (req: FastifyRequest): ResolvedSession => ctx.sessions.resolve(sessionToken(req), new Date(), { partial: true });

  const enrolled = (identityId: string): MfaRecord => {
    const rec = store.mfa.get(identityId);
    if (rec === undefined) throw new EdgeError('ERR_NOT_FOUND', 'MFA is not enrolled for this identity (enroll: POST /current-identity/mfa)');
    return rec;
  };

  /**
   * Checks `code` against the identity's MFA and spends it with `effect`
   * (store.spendMfaProof). A wrong code counts against the session.
   */
  const spend = async (resolved: ResolvedSession, code: string | undefined, effect: Parameters<typeof store.spendMfaProof>[2], recoveryAllowed: boolean): Promise<void> => {
    const { session, identity } = resolved;
    const rec = enrolled(identity.id);
    if (code === undefined) throw new EdgeError('ERR_INVALID_ARGUMENT', 'a code is required: {"code": "123456"} or the mfa-validation-code header');
    const now = Date.now();
    const step = matchTotp(base32Decode(rec.secret), code.trim(), now);
    const recovery = code.trim().toUpperCase();
    try {
      if (step !== undefined) await store.spendMfaProof(identity.id, { step }, effect, new Date(now).toISOString());
      else if (recoveryAllowed && rec.isVerified && /^[A-Z0-9]{8}$/.test(recovery)) await store.spendMfaProof(identity.id, { recoveryCode: recovery }, effect, new Date(now).toISOString());
      else throw new EdgeError('ERR_MFA_INVALID_CODE', recoveryAllowed ? 'the code is neither the current TOTP code nor an unused recovery code' : 'the code is not the current TOTP code of the authenticator app');
    } catch (err) {
      if (!isEdgeError(err) || err.code !== 'ERR_MFA_INVALID_CODE') throw err;
      const ended = await store.recordMfaFailure(session.token, MAX_MFA_FAILURES);
      ctx.log.info({ identityId: identity.id, sessionEnded: ended }, 'wrong MFA code');
      throw ended ? new EdgeError('ERR_MFA_INVALID_CODE', `${err.message}; after ${MAX_MFA_FAILURES} wrong codes this API session has ended: authenticate again`) : err;
    }
  };

  app.post(`${prefix}/current-identity/mfa`, async (req, reply) => {
    const { identity } = partial(req);
    const secret = randomBytes(20);
    const iso = new Date().toISOString();
    const rec: MfaRecord = { identityId: identity.id, secret: base32Encode(secret), isVerified: false, recoveryCodes: newRecoveryCodes(), lastStep: -1, createdAt: iso, updatedAt: iso };
    await store.startMfa(rec);
    ctx.log.info({ identityId: identity.id }, 'MFA enrollment started');
    void reply.status(201);
    return envelope({ id: identity.id, _links: selfLinks('current-identity', 'mfa'), provisioningUrl: provisioningUrl(secret, ISSUER, identity.name), recoveryCodes: rec.recoveryCodes });
  });

  app.get(`${prefix}/current-identity/mfa`, async (req) => {
    const { identity } = partial(req);
    return envelope(presentMfa(enrolled(identity.id), identity.name));
  });

  app.post(`${prefix}/current-identity/mfa/verify`, { schema: { body: CodeBody } }, async (req) => {
    const resolved = partial(req);
    if (enrolled(resolved.identity.id).isVerified) throw new EdgeError('ERR_CONFLICT', 'MFA enrollment is already verified');
    // The first code proves the app holds the secret; it also passes MFA for this session.
    await spend(resolved, (req.body as Static<typeof CodeBody>).code, { verify: true, sessionToken: resolved.session.token }, false);
    ctx.log.info({ identityId: resolved.identity.id }, 'MFA enrolled');
    return envelope({});
  });

  app.delete(`${prefix}/current-identity/mfa`, async (req) => {
    const resolved = partial(req);
    const rec = enrolled(resolved.identity.id);
    // An enrollment never verified holds no second factor yet: it goes without a code.
    if (rec.isVerified) await spend(resolved, codeOf(req), { remove: true }, true);
    else await store.deleteMfa(resolved.identity.id);
    ctx.log.info({ identityId: resolved.identity.id }, 'MFA removed');
    return envelope({});
  });

  app.get(`${prefix}/current-identity/mfa/recovery-codes`, async (req) => {
    const resolved = partial(req);
    await spend(resolved, codeOf(req), {}, true);
    const rec = enrolled(resolved.identity.id);
    return envelope({ id: rec.identityId, createdAt: rec.createdAt, updatedAt: rec.updatedAt, _links: { self: { href: './current-identity/mfa/recovery-codes' } }, tags: {}, recoveryCodes: rec.recoveryCodes });
  });

  app.post(`${prefix}/current-identity/mfa/recovery-codes`, { schema: { body: CodeBody } }, async (req) => {
    const resolved = partial(req);
    await spend(resolved, (req.body as Static<typeof CodeBody>).code, { recoveryCodes: newRecoveryCodes() }, true);
    return envelope({});
  });

  app.post(`${prefix}/authenticate/mfa`, { schema: { body: CodeBody } }, async (req) => {
    const resolved = partial(req);
    await spend(resolved, (req.body as Static<typeof CodeBody>).code, { sessionToken: resolved.session.token }, true);
    ctx.log.info({ identityId: resolved.identity.id }, 'MFA passed');
    return envelope({});
  });
}

/** `DELETE /identities/ID/mfa`: an admin removes an identity's MFA (a lost authenticator app). */
export function registerIdentityMfaRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  app.delete(`${prefix}/identities/:id/mfa`, { schema: { params: IdParams } }, async (req) => {
    const { identity: caller } = requireAdmin(ctx, req);
    const identity = getIdentity(ctx, (req.params as Static<typeof IdParams>).id);
    if (!(await ctx.store.deleteMfa(identity.id))) throw new EdgeError('ERR_NOT_FOUND', `identity "${identity.name}" has no MFA`);
    ctx.log.info({ identityId: identity.id, by: caller.id }, 'MFA removed');
    return envelope({});
  });
}
