/**
 * 3rd-party certificate authorities: `/edge/management/v1/cas[/ID]`. A CA
 * is usable (ottca enrollment, certificate authentication) only once its
 * owner proved possession of its key: `POST /cas/ID/verify` with a
 * certificate signed by the CA whose CN is the CA's verificationToken.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { X509Certificate } from 'node:crypto';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { newId, newToken } from '../ids.js';
import { certFingerprint } from '../pki.js';
import { envelope, listEnvelope, selfLinks } from '../present.js';
import type { CaRecord } from '../store.js';
import { parseCaCertificate } from '../third-party-ca.js';
import { requireAdmin } from './guard.js';
import { ListQuery, page } from './identities.js';

const ExternalIdClaim = Type.Union([Type.Object({
  location: Type.Union(['COMMON_NAME', 'SAN_URI', 'SAN_EMAIL'].map((x) => Type.Literal(x))),
  matcher: Type.Union(['ALL', 'PREFIX', 'SUFFIX', 'SCHEME'].map((x) => Type.Literal(x))),
  matcherCriteria: Type.String(),
  parser: Type.Union(['NONE', 'SPLIT'].map((x) => Type.Literal(x))),
  parserCriteria: Type.String(),
  index: Type.Integer({ minimum: 0 }),
}), Type.Null()]);

const CaCreate = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 255 }),
  certPem: Type.String({ minLength: 1, maxLength: 65536 }),
  isAutoCaEnrollmentEnabled: Type.Boolean(),
  isOttCaEnrollmentEnabled: Type.Boolean(),
  isAuthEnabled: Type.Boolean(),
  identityRoles: Type.Array(Type.String()),
  identityNameFormat: Type.Optional(Type.String({ maxLength: 255 })),
  externalIdClaim: Type.Optional(ExternalIdClaim),
  tags: Type.Optional(Type.Union([Type.Record(Type.String(), Type.Any()), Type.Null()])),
}, { additionalProperties: true });

const CaPatch = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  isAutoCaEnrollmentEnabled: Type.Optional(Type.Boolean()),
  isOttCaEnrollmentEnabled: Type.Optional(Type.Boolean()),
  isAuthEnabled: Type.Optional(Type.Boolean()),
  identityRoles: Type.Optional(Type.Array(Type.String())),
  identityNameFormat: Type.Optional(Type.String({ maxLength: 255 })),
  tags: Type.Optional(Type.Union([Type.Record(Type.String(), Type.Any()), Type.Null()])),
}, { additionalProperties: true });

const IdParams = Type.Object({ id: Type.String({ minLength: 1 }) });

const CA_FIELDS: Record<string, FieldGetter<CaRecord>> = {
  id: (c) => c.id, name: (c) => c.name, fingerprint: (c) => c.fingerprint, isVerified: (c) => c.isVerified,
};

export function presentCa(c: CaRecord): Record<string, unknown> {
  return {
    id: c.id, createdAt: c.createdAt, updatedAt: c.updatedAt,
    _links: { ...selfLinks('cas', c.id), verify: { href: `./cas/${c.id}/verify` } },
    tags: c.tags, name: c.name, certPem: c.certPem, fingerprint: c.fingerprint, isVerified: c.isVerified,
    verificationToken: c.verificationToken, isAutoCaEnrollmentEnabled: c.isAutoCaEnrollmentEnabled,
    isOttCaEnrollmentEnabled: c.isOttCaEnrollmentEnabled, isAuthEnabled: c.isAuthEnabled,
    identityRoles: c.identityRoles, identityNameFormat: c.identityNameFormat,
    ...(c.externalIdClaim !== null ? { externalIdClaim: c.externalIdClaim } : {}),
  };
}

export function getCa(ctx: ControllerContext, id: string): CaRecord {
  const ca = ctx.store.cas.get(id);
  if (ca === undefined) throw new EdgeError('ERR_NOT_FOUND', `certificate authority ${id} not found`);
  return ca;
}

export function registerCaRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  app.get(`${prefix}/cas`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const p = page(ctx.store.listCas().sort((a, b) => a.name.localeCompare(b.name)), req.query as Static<typeof ListQuery>, CA_FIELDS);
    return listEnvelope(p.items.map(presentCa), p.total, p.limit, p.offset, Object.keys(CA_FIELDS));
  });

  app.get(`${prefix}/cas/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    return envelope(presentCa(getCa(ctx, (req.params as Static<typeof IdParams>).id)));
  });

  app.post(`${prefix}/cas`, { schema: { body: CaCreate } }, async (req, reply) => {
    requireAdmin(ctx, req);
    const body = req.body as Static<typeof CaCreate>;
    const cert = parseCaCertificate(body.certPem);
    const iso = new Date().toISOString();
    const ca: CaRecord = {
      id: newId(), name: body.name, certPem: cert.toString(), fingerprint: certFingerprint(cert.raw), isVerified: false,
      verificationToken: newToken(), isAutoCaEnrollmentEnabled: body.isAutoCaEnrollmentEnabled,
      isOttCaEnrollmentEnabled: body.isOttCaEnrollmentEnabled, isAuthEnabled: body.isAuthEnabled,
      identityRoles: body.identityRoles, identityNameFormat: body.identityNameFormat ?? '[caName]-[commonName]',
      externalIdClaim: (body.externalIdClaim as Record<string, unknown> | null | undefined) ?? null, tags: body.tags ?? {}, createdAt: iso, updatedAt: iso,
    };
    await ctx.store.createCa(ca);
    ctx.log.info({ caId: ca.id, name: ca.name, fingerprint: ca.fingerprint }, 'CA registered');
    void reply.status(201);
    return envelope({ id: ca.id, _links: selfLinks('cas', ca.id) });
  });

  app.patch(`${prefix}/cas/:id`, { schema: { params: IdParams, body: CaPatch } }, async (req) => {
    requireAdmin(ctx, req);
    const prev = getCa(ctx, (req.params as Static<typeof IdParams>).id);
    const p = req.body as Static<typeof CaPatch>;
    await ctx.store.updateCa({
      ...prev,
      name: p.name ?? prev.name,
      isAutoCaEnrollmentEnabled: p.isAutoCaEnrollmentEnabled ?? prev.isAutoCaEnrollmentEnabled,
      isOttCaEnrollmentEnabled: p.isOttCaEnrollmentEnabled ?? prev.isOttCaEnrollmentEnabled,
      isAuthEnabled: p.isAuthEnabled ?? prev.isAuthEnabled,
      identityRoles: p.identityRoles ?? prev.identityRoles,
      identityNameFormat: p.identityNameFormat ?? prev.identityNameFormat,
      tags: p.tags !== undefined ? (p.tags ?? {}) : prev.tags,
      updatedAt: new Date().toISOString(),
    });
    return envelope({});
  });

  app.delete(`${prefix}/cas/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await ctx.store.deleteCa(id))) throw new EdgeError('ERR_NOT_FOUND', `certificate authority ${id} not found`);
    ctx.log.info({ caId: id }, 'CA deleted');
    return envelope({});
  });

  app.post(`${prefix}/cas/:id/verify`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const ca = getCa(ctx, (req.params as Static<typeof IdParams>).id);
    if (typeof req.body !== 'string') throw new EdgeError('ERR_INVALID_ARGUMENT', 'the body must be a PEM certificate (Content-Type text/plain)');
    let proof: X509Certificate;
    try {
      proof = new X509Certificate(req.body);
    } catch (err) {
      throw new EdgeError('ERR_INVALID_ARGUMENT', `the body is not a PEM certificate: ${(err as Error).message}`, { cause: err });
    }
    const caCert = new X509Certificate(ca.certPem);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(proof.subject)?.[1];
    if (cn !== ca.verificationToken) throw new EdgeError('ERR_INVALID_ARGUMENT', 'the certificate\'s common name must be the CA\'s verificationToken');
    if (!proof.checkIssued(caCert) || !proof.verify(caCert.publicKey)) throw new EdgeError('ERR_INVALID_ARGUMENT', 'the certificate is not signed by this CA');
    await ctx.store.updateCa({ ...ca, isVerified: true, updatedAt: new Date().toISOString() });
    ctx.log.info({ caId: ca.id }, 'CA verified');
    return envelope({});
  });
}
