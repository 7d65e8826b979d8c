/**
 * What a router may know of policy: `GET /edge/client/v1/router/policy`.
 *
 * Only a Router identity (an enrolled edge router, authenticated with its
 * certificate on the client API) may call it. The answer is the router's
 * policy snapshot (src/policy/snapshot.ts), signed by the controller's
 * policy signer (src/policy/signed.ts): `{data: {revision, notAfter, jws}}`.
 * Each answer is signed afresh, so its notAfter runs from now. Long poll: with
 * `?known=REVISION&waitMs=N` the controller answers as soon as the policy
 * differs from that revision, or with 304 after N ms (at most 60 s) if
 * nothing changed, so a router learns of a change within one round trip.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { PostureCheck } from '../../policy/posture.js';
import { signSnapshot } from '../../policy/signed.js';
import { sealSnapshot, type HostTarget, type InterceptTarget, type PolicySnapshot, type SnapshotContent, type SnapshotService } from '../../policy/snapshot.js';
import type { ControllerContext } from '../context.js';
import { envelope } from '../present.js';
import { sessionToken } from './guard.js';

const MAX_WAIT_MS = 60_000;

const PolicyQuery = Type.Object({
  known: Type.Optional(Type.String({ maxLength: 64 })),
  waitMs: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })),
});

/** The collections every router's snapshot shares (everything but routerId): built once per change for all routers. */
export interface SharedContent {
  readonly identities: SnapshotContent['identities'];
  readonly services: SnapshotContent['services'];
  readonly servicePolicies: SnapshotContent['servicePolicies'];
  readonly postureChecks: SnapshotContent['postureChecks'];
  readonly serviceEdgeRouterPolicies: SnapshotContent['serviceEdgeRouterPolicies'];
}

export function buildSharedContent(ctx: ControllerContext): SharedContent {
  const { store } = ctx;
  const identities = store.listIdentities().map((i) => {
    const posture = store.postureData.get(i.id)?.data;
    return { id: i.id, name: i.name, roleAttributes: i.roleAttributes, disabled: i.disabled, ...(posture !== undefined ? { posture } : {}) };
  });
  const services = store.services.list().map((s): SnapshotService => {
    let host: HostTarget | undefined;
    let intercept: InterceptTarget | undefined;
    for (const configId of s.configs) {
      const c = store.configs.get(configId);
      if (c?.configTypeId === 'host.v1') host = c.data as HostTarget;
      else if (c?.configTypeId === 'intercept.v1') intercept = c.data as unknown as InterceptTarget;
    }
    return { id: s.id, name: s.name, roleAttributes: s.roleAttributes, ...(host !== undefined ? { host } : {}), ...(intercept !== undefined ? { intercept } : {}) };
  });
  const servicePolicies = store.servicePolicies.list().map((p) => ({
    id: p.id, name: p.name, type: p.type, semantic: p.semantic, identityRoles: p.identityRoles, serviceRoles: p.serviceRoles, postureCheckRoles: p.postureCheckRoles,
  }));
  const postureChecks = store.postureChecks.list().map((c) => ({ id: c.id, name: c.name, typeId: c.typeId, roleAttributes: c.roleAttributes, data: c.data }) as PostureCheck);
  const serviceEdgeRouterPolicies = store.serviceEdgeRouterPolicies.list().map((p) => ({
    id: p.id, name: p.name, semantic: p.semantic, edgeRouterRoles: p.edgeRouterRoles, serviceRoles: p.serviceRoles,
  }));
  return { identities, services, servicePolicies, postureChecks, serviceEdgeRouterPolicies };
}

/** Everything a router needs to host services and authorize dials, from the store (or from `shared`, built once for many routers). */
export function buildRouterSnapshot(ctx: ControllerContext, routerId: string, now: Date, shared = buildSharedContent(ctx)): PolicySnapshot {
  return sealSnapshot({ v: 1, routerId, ...shared }, now, ctx.settings.policyOfflineWindowMs);
}

export function registerRouterPolicyRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  app.get(`${prefix}/router/policy`, { schema: { querystring: PolicyQuery } }, async (req, reply) => {
    const { identity } = ctx.sessions.resolve(sessionToken(req), new Date());
    if (identity.type !== 'Router' || ctx.store.edgeRouters.get(identity.id) === undefined) {
      throw new EdgeError('ERR_FORBIDDEN', `identity "${identity.name}" is not an edge router`);
    }
    const q = req.query as Static<typeof PolicyQuery>;
    let snapshot = buildRouterSnapshot(ctx, identity.id, new Date());
    const waitMs = Math.min(Number(q.waitMs ?? '0'), MAX_WAIT_MS);
    if (q.known === undefined || q.known !== snapshot.revision || waitMs === 0) {
      if (q.known === snapshot.revision) return reply.code(304).send();
      return signed(ctx, snapshot);
    }
    // Long poll: re-check after each committed write until the revision moves, the wait ends or the router hangs up.
    const changed = await new Promise<PolicySnapshot | undefined>((resolve) => {
      let finished = false;
      const finish = (s: PolicySnapshot | undefined): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        unsubscribe();
        reply.raw.off('close', onClose);
        resolve(s);
      };
      const onClose = (): void => finish(undefined);
      const unsubscribe = ctx.store.onChange(() => {
        const next = buildRouterSnapshot(ctx, identity.id, new Date());
        if (next.revision !== q.known) finish(next);
      });
      const timer = setTimeout(() => finish(undefined), waitMs);
      // The response's 'close' before it is sent means the router hung up.
      reply.raw.once('close', onClose);
    });
    if (changed === undefined) return reply.code(304).send();
    snapshot = changed;
    return signed(ctx, snapshot);
  });
}

function signed(ctx: ControllerContext, snapshot: PolicySnapshot): unknown {
  return envelope({ revision: snapshot.revision, notAfter: snapshot.notAfter, jws: signSnapshot(snapshot, ctx.pki.policySigner) });
}
