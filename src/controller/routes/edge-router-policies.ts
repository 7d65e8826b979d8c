/**
 * Edge router policies (`/edge/management/v1/edge-router-policies[/ID]`:
 * which edge routers the identities it names may connect to) and service
 * edge router policies (`/service-edge-router-policies[/ID]`: which edge
 * routers may carry the services it names), in OpenZiti's shapes
 * (routes/policies.ts). The controller stores them; routers apply them from
 * their policy snapshot.
 */
import type { FastifyInstance } from 'fastify';
import type { ControllerContext } from '../context.js';
import { registerPolicyRoutes } from './policies.js';

export function registerEdgeRouterPolicyRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  registerPolicyRoutes(app, ctx, prefix, { kind: 'edgeRouterPolicies', path: 'edge-router-policies', what: 'edge router policy', hasIsSystem: true });
  registerPolicyRoutes(app, ctx, prefix, { kind: 'serviceEdgeRouterPolicies', path: 'service-edge-router-policies', what: 'service edge router policy' });
}
