/**
 * The controller's HTTPS server (fastify): TLS with the controller's server
 * certificate, client certificates requested (for `method=cert`) but not
 * required, the OpenZiti error envelope, and the content types that
 * enrollment clients send.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { EdgeError, httpStatusOf, isEdgeError } from '../errors.js';
import type { ControllerContext } from './context.js';

/** Largest request body accepted: CSRs and JSON bodies are a few KiB. */
const BODY_LIMIT_BYTES = 256 * 1024;

/** Bodies read as text: PEM CSRs (OpenZiti clients send text/plain or application/x-pem-file). */
const TEXT_TYPES = ['text/plain', 'application/x-pem-file', 'application/pkcs10', 'application/pkcs7'];

export function createHttpApp(ctx: ControllerContext): FastifyInstance {
  const app = Fastify({
    https: {
      key: ctx.pki.serverKeyPem,
      cert: ctx.pki.serverChainPem,
      ca: ctx.pki.caBundlePem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    bodyLimit: BODY_LIMIT_BYTES,
    // Requests are not logged one by one: errors are, at the right level.
    logger: false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    keepAliveTimeout: 30_000,
  });

  app.addContentTypeParser(TEXT_TYPES, { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: FastifyError | EdgeError | Error, req: FastifyRequest, reply: FastifyReply) => {
    const { code, message } = toApiError(err);
    const status = httpStatusOf(code);
    if (status >= 500) ctx.log.error({ err, url: req.url, method: req.method, requestId: String(req.id) }, 'request failed');
    else ctx.log.debug({ code, url: req.url, method: req.method }, 'request refused');
    void reply.status(status).send({ error: { code, message, requestId: String(req.id) }, meta: {} });
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: String(req.id) }, meta: {} });
  });

  return app;
}

/** Maps any thrown error to a stable API code and a message safe to show. */
export function toApiError(err: unknown): { code: string; message: string } {
  if (isEdgeError(err)) return { code: err.code, message: err.message };
  const e = err as FastifyError;
  if (e.validation !== undefined) {
    return { code: 'ERR_INVALID_ARGUMENT', message: `invalid request ${e.validationContext ?? 'body'}: ${e.message.replace(/^(body|querystring|params)\/?/, '')}` };
  }
  switch (e.statusCode) {
    case 415: return { code: 'ERR_UNSUPPORTED_MEDIA_TYPE', message: e.message };
    case 413: return { code: 'ERR_PAYLOAD_TOO_LARGE', message: `request body larger than ${BODY_LIMIT_BYTES} bytes` };
    case 400: return { code: 'ERR_COULD_NOT_PARSE_BODY', message: e.message };
    default: return { code: 'ERR_INTERNAL', message: 'internal error' };
  }
}

/**
 * The client certificate of a request, if any: the chain as presented (leaf
 * first, DER), whether it verified against our own CA bundle, and if not,
 * OpenSSL's reason (e.g. CERT_HAS_EXPIRED).
 */
export function peerCertificate(req: FastifyRequest): { raw: Buffer; chain: Buffer[]; authorized: boolean; authorizationError: string | undefined } | undefined {
  const socket = req.raw.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const cert = socket.getPeerCertificate(true);
  if (cert === null || cert.raw === undefined) return undefined;
  const chain: Buffer[] = [];
  for (let c: DetailedPeerCertificate | undefined = cert; c?.raw !== undefined && chain.length < 8; c = c.issuerCertificate) {
    if (chain.length > 0 && c.raw.equals(chain[chain.length - 1]!)) break; // self-signed root points to itself
    chain.push(c.raw);
  }
  // Node types it as an Error; at run time it is OpenSSL's code, e.g. "CERT_HAS_EXPIRED".
  const why = socket.authorizationError as unknown;
  return { raw: cert.raw, chain, authorized: socket.authorized, authorizationError: why == null ? undefined : String((why as { code?: unknown }).code ?? why) };
}

export function clientIp(req: FastifyRequest): string {
  return req.socket.remoteAddress ?? '';
}
