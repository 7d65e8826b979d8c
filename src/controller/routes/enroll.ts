/**
 * The enrollment server (client API, unauthenticated: the one-time token is
 * the credential). Wire-compatible with OpenZiti clients:
 *
 *   POST /edge/client/v1/enroll?method=ott&token=JTI     body: PEM CSR (text/plain | application/x-pem-file)
 *        → PEM chain (application/x-pem-file), or {data:{cert,ca}} with Accept: application/json
 *   POST /edge/client/v1/enroll/ott                      body: {"token","clientCsr"} → JSON
 *   POST /edge/client/v1/enroll?method=updb&token=JTI    body: {"password"} → JSON
 *   POST /edge/client/v1/enroll/updb?token=JTI           same
 *   POST /edge/client/v1/enroll/erott                    body: {"token","clientCsr","serverCsr"} → {data:{cert,serverCert,ca}}
 *   POST /edge/client/v1/enroll?method=erott&token=JTI   body: {"clientCsr","serverCsr"} → same
 *        (OpenZiti routers' field names certCsr and serverCertCsr are read too)
 *
 * A token is checked (known, unused, unexpired, right method) before any
 * work, and consumed in the same transaction that stores the credential.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import { X509Certificate } from 'node:crypto';
import { peerCertificate } from '../http.js';
import { newId } from '../ids.js';
import { certFingerprint } from '../pki.js';
import { chainsToCa } from '../third-party-ca.js';
import { authPolicyOf, checkPasswordRules } from '../auth-policy.js';
import { hashPassword } from '../passwords.js';
import { envelope } from '../present.js';
import type { AuthenticatorRecord, EnrollmentMethod, EnrollmentRecord } from '../store.js';

const EnrollQuery = Type.Object({
  method: Type.Optional(Type.String()),
  token: Type.Optional(Type.String()),
});

/** Finds the pending enrollment for a token, or explains precisely why there is none. */
function pendingEnrollment(ctx: ControllerContext, token: string | undefined, method: EnrollmentMethod, now: Date): EnrollmentRecord {
  if (token === undefined || token === '') throw new EdgeError('ERR_ENROLLMENT_TOKEN_INVALID', 'the token query parameter is required');
  const e = ctx.store.enrollmentForToken(token);
  if (e === undefined) {
    if (ctx.store.tokenUse(token) !== undefined) throw new EdgeError('ERR_ENROLLMENT_TOKEN_USED', 'this enrollment token has already been used');
    throw new EdgeError('ERR_ENROLLMENT_TOKEN_INVALID', 'unknown enrollment token');
  }
  if (e.method !== method) throw new EdgeError('ERR_ENROLLMENT_METHOD', `this token is for enrollment method "${e.method}", not "${method}"`);
  if (Date.parse(e.expiresAt) <= now.getTime()) throw new EdgeError('ERR_ENROLLMENT_EXPIRED', `this enrollment token expired at ${e.expiresAt}`);
  return e;
}

function wantsJson(req: FastifyRequest): boolean {
  return (req.headers.accept ?? '').includes('application/json');
}

function csrFromBody(body: unknown): string {
  if (typeof body === 'string') return body;
  if (body !== null && typeof body === 'object' && typeof (body as { clientCsr?: unknown }).clientCsr === 'string') return (body as { clientCsr: string }).clientCsr;
  throw new EdgeError('ERR_CSR_INVALID', 'the body must be a PEM CSR (Content-Type text/plain or application/x-pem-file)');
}

async function enrollOtt(ctx: ControllerContext, token: string | undefined, body: unknown, json: boolean, reply: FastifyReply): Promise<unknown> {
  const now = new Date();
  const e = pendingEnrollment(ctx, token, 'ott', now);
  const issued = await ctx.pki.issueClientCert(csrFromBody(body), e.identityId, ctx.settings.certValidityDays);
  const iso = now.toISOString();
  const authenticator: AuthenticatorRecord = {
    id: newId(), identityId: e.identityId, method: 'cert', fingerprint: issued.fingerprint, certPem: issued.certPem,
    username: null, passwordHash: null, createdAt: iso, updatedAt: iso,
  };
  await ctx.store.consumeEnrollment(e, authenticator, iso);
  ctx.log.info({ identityId: e.identityId, method: 'ott', fingerprint: issued.fingerprint }, 'identity enrolled');
  if (json) return envelope({ cert: issued.chainPem, ca: ctx.pki.caBundlePem });
  void reply.type('application/x-pem-file');
  return issued.chainPem;
}

async function enrollUpdb(ctx: ControllerContext, token: string | undefined, body: unknown): Promise<unknown> {
  const now = new Date();
  const e = pendingEnrollment(ctx, token, 'updb', now);
  const password = body !== null && typeof body === 'object' ? (body as { password?: unknown }).password : undefined;
  if (typeof password !== 'string') throw new EdgeError('ERR_INVALID_ARGUMENT', 'a JSON body {"password": "…"} is required');
  const identity = ctx.store.identities.get(e.identityId);
  if (identity === undefined) throw new EdgeError('ERR_ENROLLMENT_TOKEN_INVALID', 'the identity of this enrollment no longer exists');
  checkPasswordRules(authPolicyOf(ctx, identity), password);
  const username = (body as { username?: unknown }).username;
  if (username !== undefined && username !== e.username) throw new EdgeError('ERR_INVALID_ARGUMENT', `this token is for username "${e.username ?? ''}"`);
  const iso = now.toISOString();
  const authenticator: AuthenticatorRecord = {
    id: newId(), identityId: e.identityId, method: 'updb', fingerprint: null, certPem: null,
    username: e.username, passwordHash: await hashPassword(password), createdAt: iso, updatedAt: iso,
  };
  await ctx.store.consumeEnrollment(e, authenticator, iso);
  ctx.log.info({ identityId: e.identityId, method: 'updb' }, 'identity enrolled');
  return envelope({});
}

/**
 * ottca: the device presents, in the TLS handshake, a certificate from the
 * registered 3rd-party CA named by the enrollment; that certificate becomes
 * its authenticator. No CSR: the key stays where the 3rd-party CA put it.
 */
async function enrollOttca(ctx: ControllerContext, token: string | undefined, req: FastifyRequest): Promise<unknown> {
  const now = new Date();
  const e = pendingEnrollment(ctx, token, 'ottca', now);
  const ca = e.caId === null ? undefined : ctx.store.cas.get(e.caId);
  if (ca === undefined) throw new EdgeError('ERR_ENROLLMENT_TOKEN_INVALID', 'the CA of this enrollment no longer exists');
  if (!ca.isVerified) throw new EdgeError('ERR_FORBIDDEN', `CA "${ca.name}" is not verified yet`);
  const peer = peerCertificate(req);
  if (peer === undefined) throw new EdgeError('ERR_INVALID_AUTH', 'ottca enrollment needs a client certificate from the CA in the TLS handshake');
  if (!chainsToCa(peer.chain, ca.certPem, now)) throw new EdgeError('ERR_INVALID_AUTH', `the client certificate is not issued by CA "${ca.name}" or is not currently valid`);
  const iso = now.toISOString();
  const leaf = new X509Certificate(peer.raw);
  const authenticator: AuthenticatorRecord = {
    id: newId(), identityId: e.identityId, method: 'cert', fingerprint: certFingerprint(peer.raw), certPem: leaf.toString(),
    username: null, passwordHash: null, caId: ca.id, createdAt: iso, updatedAt: iso,
  };
  await ctx.store.consumeEnrollment(e, authenticator, iso);
  ctx.log.info({ identityId: e.identityId, method: 'ottca', caId: ca.id, fingerprint: authenticator.fingerprint }, 'identity enrolled');
  return envelope({});
}

/** The two CSRs of a router enrollment, under our names or OpenZiti router's. */
function routerCsrs(body: unknown): { clientCsr: string; serverCsr: string } {
  const b = (body !== null && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const clientCsr = b.clientCsr ?? b.certCsr;
  const serverCsr = b.serverCsr ?? b.serverCertCsr;
  if (typeof clientCsr !== 'string' || typeof serverCsr !== 'string') {
    throw new EdgeError('ERR_CSR_INVALID', 'router enrollment needs a JSON body {"clientCsr": PEM, "serverCsr": PEM} (the server CSR requests the subjectAltNames)');
  }
  return { clientCsr, serverCsr };
}

/**
 * erott: an edge router sends two CSRs and gets a client certificate (its
 * identity's authenticator) and a server certificate for its link
 * listeners, whose subjectAltNames are those the server CSR requested.
 */
async function enrollErott(ctx: ControllerContext, token: string | undefined, body: unknown): Promise<unknown> {
  const now = new Date();
  const e = pendingEnrollment(ctx, token, 'erott', now);
  const { clientCsr, serverCsr } = routerCsrs(body);
  const issued = await ctx.pki.issueRouterCerts(clientCsr, serverCsr, e.identityId, ctx.settings.certValidityDays);
  const iso = now.toISOString();
  const authenticator: AuthenticatorRecord = {
    id: newId(), identityId: e.identityId, method: 'cert', fingerprint: issued.client.fingerprint, certPem: issued.client.certPem,
    username: null, passwordHash: null, createdAt: iso, updatedAt: iso,
  };
  await ctx.store.enrollEdgeRouter(e, authenticator, iso, issued.server.certPem);
  ctx.log.info({ routerId: e.identityId, method: 'erott', fingerprint: issued.client.fingerprint, sans: [...issued.sans.dns, ...issued.sans.ip] }, 'edge router enrolled');
  return envelope({ cert: issued.client.chainPem, serverCert: issued.server.chainPem, ca: ctx.pki.caBundlePem });
}

function bodyToken(req: FastifyRequest): string | undefined {
  const body = req.body as { token?: unknown } | undefined;
  return typeof body?.token === 'string' ? body.token : (req.query as { token?: string }).token;
}

export function registerEnrollRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  app.post(`${prefix}/enroll`, { schema: { querystring: EnrollQuery } }, async (req, reply) => {
    const q = req.query as Static<typeof EnrollQuery>;
    switch (q.method) {
      case 'ott': return enrollOtt(ctx, q.token, req.body, wantsJson(req), reply);
      case 'updb': return enrollUpdb(ctx, q.token, req.body);
      case 'ottca': return enrollOttca(ctx, q.token, req);
      case 'erott': return enrollErott(ctx, q.token ?? bodyToken(req), req.body);
      case undefined: throw new EdgeError('ERR_ENROLLMENT_METHOD', 'the method query parameter is required (ott, ottca, updb or erott)');
      default: throw new EdgeError('ERR_ENROLLMENT_METHOD', `enrollment method "${q.method}" is not supported here (ott, ottca, updb, erott)`);
    }
  });

  app.post(`${prefix}/enroll/ott`, async (req, reply) => enrollOtt(ctx, bodyToken(req), req.body, true, reply));

  app.post(`${prefix}/enroll/ottca`, async (req) => enrollOttca(ctx, bodyToken(req), req));

  app.post(`${prefix}/enroll/erott`, async (req) => enrollErott(ctx, bodyToken(req), req.body));

  app.post(`${prefix}/enroll/updb`, { schema: { querystring: EnrollQuery } }, async (req) => {
    return enrollUpdb(ctx, (req.query as Static<typeof EnrollQuery>).token, req.body);
  });
}
