/** Unauthenticated discovery (`/.well-known/est/cacerts`, `/version`) and the authenticated summary. */
import type { FastifyInstance } from 'fastify';
import { CONFIG_TYPES } from '../config-types.js';
import type { ControllerContext } from '../context.js';
import { envelope } from '../present.js';
import { requireAdmin } from './guard.js';

export { VERSION } from '../../version.js';
import { VERSION } from '../../version.js';

export function registerMetaRoutes(app: FastifyInstance, ctx: ControllerContext, prefixes: string[]): void {
  for (const prefix of prefixes) {
    // RFC 7030 §4.1.3: base64 DER PKCS#7 certs-only; curl | base64 -d | openssl pkcs7 -inform DER -print_certs.
    app.get(`${prefix}/.well-known/est/cacerts`, async (_req, reply) => {
      void reply.header('content-type', 'application/pkcs7-mime').header('content-transfer-encoding', 'base64');
      return ctx.pki.cacertsBase64;
    });
    app.get(`${prefix}/version`, async () => envelope({
      version: VERSION,
      buildDate: '',
      revision: '',
      runtimeVersion: process.version,
      apiVersions: {
        'edge-management': { v1: { path: '/edge/management/v1' } },
        'edge-client': { v1: { path: '/edge/client/v1' } },
      },
    }));
  }

  app.get('/edge/management/v1/summary', async (req) => {
    requireAdmin(ctx, req);
    const { store } = ctx;
    return envelope({
      identities: store.identities.getCount(),
      enrollments: store.enrollments.getCount(),
      apiSessions: store.countSessions(),
      authenticators: store.authenticators.getCount(),
      cas: store.cas.getCount(),
      edgeRouters: store.edgeRouters.count(),
      services: store.services.count(),
      configs: store.configs.count(),
      configTypes: CONFIG_TYPES.size,
      servicePolicies: store.servicePolicies.count(),
      edgeRouterPolicies: store.edgeRouterPolicies.count(),
      serviceEdgeRouterPolicies: store.serviceEdgeRouterPolicies.count(),
      postureChecks: store.postureChecks.count(),
      authPolicies: store.authPolicies.count(),
    });
  });
}
