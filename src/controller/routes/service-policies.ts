/**
 * Service policies: `/edge/management/v1/service-policies[/ID]` in
 * OpenZiti's shapes (routes/policies.ts). A Dial policy lets the identities
 * it names use the services it names; a Bind policy lets them host those
 * services. `postureCheckRoles` name the posture checks a policy requires.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ControllerContext } from '../context.js';
import { registerPolicyRoutes } from './policies.js';

const PolicyType = Type.Union([Type.Literal('Dial'), Type.Literal('Bind')]);

export function registerServicePolicyRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  registerPolicyRoutes(app, ctx, prefix, {
    kind: 'servicePolicies', path: 'service-policies', what: 'service policy',
    extra: { create: { type: PolicyType }, patch: { type: Type.Optional(PolicyType) } },
  });
}
