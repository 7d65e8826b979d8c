/**
 * Authentication: `POST …/authenticate?method=password|cert` on the
 * management API (admins only) and the client API (any identity), and the
 * current API session (read, logout).
 *
 * The identity's auth policy (auth-policy.ts) decides which method it may
 * use, whether an expired certificate we issued still counts, and how many
 * wrong passwords in a row lock it (LockoutRecord; a locked identity cannot
 * log in by any method until the lock ends or an admin enables it), and
 * whether the new session must pass MFA (routes/mfa.ts) before it is of use:
 * then the answer's `authQueries` asks for it, as OpenZiti's does.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import { clientIp, peerCertificate } from '../http.js';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { PROOF_CERT_HEADER, PROOF_SIGNATURE_HEADER, verifyExporterProof } from '../../keys/proof.js';
import { certFingerprint } from '../pki.js';
import { chainsToCa } from '../third-party-ca.js';
import { authPolicyOf, requireMethodAllowed } from '../auth-policy.js';
import { hashPassword, verifyPassword } from '../passwords.js';
import { envelope, presentSession } from '../present.js';
import { isLocked, type AuthenticatorRecord, type IdentityRecord } from '../store.js';
import { sessionToken } from './guard.js';

const AuthQuery = Type.Object({ method: Type.Union([Type.Literal('password'), Type.Literal('cert')]) });
const PasswordBody = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 255 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  configTypes: Type.Optional(Type.Array(Type.String())),
  envInfo: Type.Optional(Type.Object({}, { additionalProperties: true })),
  sdkInfo: Type.Optional(Type.Object({}, { additionalProperties: true })),
});

/** A hash to check against when the username is unknown, so timing does not tell. */
let decoyHash: Promise<string> | undefined;

const INVALID = 'invalid username or password';

interface Authenticated {
  identity: IdentityRecord;
  authenticator: AuthenticatorRecord;
  /** A certificate this controller issued that has expired: it counts only where the identity's auth policy allows expired certificates. */
  expired: boolean;
}

async function authenticate(ctx: ControllerContext, req: FastifyRequest, method: 'password' | 'cert', now: Date): Promise<Authenticated> {
  if (method === 'cert') {
    const proven = exporterProof(ctx, req, now);
    if (proven !== undefined) return proven;
    const peer = peerCertificate(req);
    if (peer === undefined) throw new EdgeError('ERR_INVALID_AUTH', 'no client certificate was presented in the TLS handshake (nor an exporter proof)');
    const authenticator = ctx.store.authenticatorByFingerprint(certFingerprint(peer.raw));
    let expired = false;
    if (!peer.authorized) {
      // Expired but otherwise ours (the very certificate we issued to this authenticator): the auth policy decides.
      if (peer.authorizationError === 'CERT_HAS_EXPIRED' && authenticator !== undefined && authenticator.caId == null && issuedByUs(ctx, new X509Certificate(peer.raw))) {
        expired = true;
      } else {
        // Not ours: acceptable only if a registered, verified CA with auth enabled vouches for it.
        const ca = authenticator?.caId == null ? undefined : ctx.store.cas.get(authenticator.caId);
        if (ca === undefined || !ca.isVerified || !ca.isAuthEnabled || !chainsToCa(peer.chain, ca.certPem, now)) {
          throw new EdgeError('ERR_INVALID_AUTH', 'the client certificate does not chain to this controller\'s CA or a registered 3rd-party CA, or has expired');
        }
      }
    }
    const identity = authenticator && ctx.store.identities.get(authenticator.identityId);
    if (authenticator === undefined || identity === undefined) throw new EdgeError('ERR_INVALID_AUTH', 'the client certificate belongs to no identity');
    return { identity, authenticator, expired };
  }
  const body = req.body as Static<typeof PasswordBody> | undefined;
  if (body === undefined || typeof body !== 'object') throw new EdgeError('ERR_INVALID_ARGUMENT', 'a JSON body {"username","password"} is required');
  const authenticator = ctx.store.authenticatorByUsername(body.username);
  const identity = authenticator && ctx.store.identities.get(authenticator.identityId);
  if (authenticator?.passwordHash == null || identity === undefined) {
    decoyHash ??= hashPassword('decoy-password');
    await verifyPassword(body.password, await decoyHash);
    throw new EdgeError('ERR_INVALID_AUTH', INVALID);
  }
  // Locked: the password is not even tried, so guessing cannot go on.
  refuseLocked(ctx, identity, now);
  if (!(await verifyPassword(body.password, authenticator.passwordHash))) {
    const { maxAttempts, lockoutDurationMinutes } = authPolicyOf(ctx, identity).primary.updb;
    if (maxAttempts > 0) {
      const lock = await ctx.store.recordLoginFailure(identity.id, maxAttempts, lockoutDurationMinutes, now);
      if (lock.lockedAt !== null) {
        ctx.log.warn({ identityId: identity.id, lockedUntil: lock.lockedUntil }, 'identity locked after failed password logins');
        throw new EdgeError('ERR_AUTH_LOCKED', `${INVALID}; after ${maxAttempts} failed attempts in a row, identity "${identity.name}" is locked ${lockEnd(identity, lock.lockedUntil)}`);
      }
    }
    throw new EdgeError('ERR_INVALID_AUTH', INVALID);
  }
  return { identity, authenticator, expired: false };
}

function lockEnd(identity: IdentityRecord, lockedUntil: string | null): string {
  return lockedUntil === null ? `until an admin enables it (POST /edge/management/v1/identities/${identity.id}/enable)` : `until ${lockedUntil}`;
}

/** Refuses every login of a locked identity (ERR_AUTH_LOCKED). */
function refuseLocked(ctx: ControllerContext, identity: IdentityRecord, now: Date): void {
  const lock = ctx.store.lockouts.get(identity.id);
  if (isLocked(lock, now.getTime())) {
    throw new EdgeError('ERR_AUTH_LOCKED', `identity "${identity.name}" is locked after too many failed password logins, ${lockEnd(identity, lock!.lockedUntil)}`);
  }
}

/** Signed by our signing CA (whatever its dates). */
function issuedByUs(ctx: ControllerContext, cert: X509Certificate): boolean {
  return cert.checkIssued(ctx.pki.intermediate) && cert.verify(ctx.pki.intermediate.publicKey);
}

/**
 * method=cert for keys that cannot sign inside TLS (TPM, HSM): the client
 * sends its certificate and a signature over this connection's exporter
 * value (src/keys/proof.ts). The certificate must be one we issued.
 */
function exporterProof(ctx: ControllerContext, req: FastifyRequest, now: Date): Authenticated | undefined {
  const certHeader = req.headers[PROOF_CERT_HEADER];
  const sigHeader = req.headers[PROOF_SIGNATURE_HEADER];
  if (typeof certHeader !== 'string' || typeof sigHeader !== 'string') return undefined;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(certHeader, 'base64'));
  } catch {
    throw new EdgeError('ERR_INVALID_AUTH', `${PROOF_CERT_HEADER} is not a base64 DER certificate`);
  }
  if (!issuedByUs(ctx, cert) || Date.parse(cert.validFrom) > now.getTime()) {
    throw new EdgeError('ERR_INVALID_AUTH', 'the certificate of the exporter proof is not one this controller issued, or has expired');
  }
  if (!verifyExporterProof(req.raw.socket as TLSSocket, cert, Buffer.from(sigHeader, 'base64'))) {
    throw new EdgeError('ERR_INVALID_AUTH', 'the exporter proof does not verify for this connection');
  }
  const authenticator = ctx.store.authenticatorByFingerprint(certFingerprint(cert.raw));
  const identity = authenticator && ctx.store.identities.get(authenticator.identityId);
  if (authenticator === undefined || identity === undefined) throw new EdgeError('ERR_INVALID_AUTH', 'the certificate belongs to no identity');
  return { identity, authenticator, expired: Date.parse(cert.validTo) < now.getTime() };
}

export function registerAuthRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string, adminOnly: boolean): void {
  app.post(`${prefix}/authenticate`, { schema: { querystring: AuthQuery } }, async (req) => {
    const { method } = req.query as Static<typeof AuthQuery>;
    if (method === 'password') {
      // Validated here rather than by schema so cert logins may send no body at all.
      const body = req.body;
      if (body === undefined || body === null || typeof body !== 'object' || typeof (body as { username?: unknown }).username !== 'string' || typeof (body as { password?: unknown }).password !== 'string') {
        throw new EdgeError('ERR_INVALID_ARGUMENT', 'method=password needs a JSON body {"username": "…", "password": "…"}');
      }
    }
    const now = new Date();
    const { identity, authenticator, expired } = await authenticate(ctx, req, method, now);
    if (identity.disabled) throw new EdgeError('ERR_INVALID_AUTH', `identity "${identity.name}" is disabled`);
    refuseLocked(ctx, identity, now);
    const policy = authPolicyOf(ctx, identity);
    requireMethodAllowed(policy, identity, method === 'cert' ? 'cert' : 'updb');
    if (expired && !policy.primary.cert.allowExpiredCerts) {
      throw new EdgeError('ERR_INVALID_AUTH', `the client certificate has expired (the auth policy "${policy.name}" of identity "${identity.name}" does not allow expired certificates)`);
    }
    if (adminOnly && !identity.isAdmin) throw new EdgeError('ERR_FORBIDDEN', `identity "${identity.name}" is not an administrator`);
    if (ctx.store.lockouts.get(identity.id) !== undefined) await ctx.store.clearLockout(identity.id);
    // A second factor: required by the policy, or chosen by the identity (MFA enrolled). Until it passes, the session is partial (routes/mfa.ts).
    const mfaRequired = policy.secondary.requireTotp || ctx.store.mfa.get(identity.id)?.isVerified === true;
    const session = await ctx.sessions.create(identity.id, authenticator.id, clientIp(req), now, mfaRequired);
    ctx.log.info({ identityId: identity.id, method, mfaRequired }, 'API session created');
    return envelope(presentSession(ctx, session, identity));
  });

  // A partial session (MFA pending) may read and end itself.
  app.get(`${prefix}/current-api-session`, async (req) => {
    const { session, identity } = ctx.sessions.resolve(sessionToken(req), new Date(), { partial: true });
    return envelope(presentSession(ctx, session, identity));
  });

  app.delete(`${prefix}/current-api-session`, async (req) => {
    const { session } = ctx.sessions.resolve(sessionToken(req), new Date(), { partial: true });
    await ctx.sessions.end(session.token);
    return envelope({});
  });
}
