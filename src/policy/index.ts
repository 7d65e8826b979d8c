/**
 * Service policy evaluation: may this identity Dial (or Bind) this service?
 * Pure: no I/O, no clock, no logging. The controller uses it to answer
 * questions about policies; routers use the same code on their cached copy
 * of the policies, so both always agree.
 *
 *   request {identity, service, type} ──► decide() ──► {allow, reason, ruleId}
 *                                            ▲
 *                                  policies (Dial | Bind)
 *
 * Closed by default: nothing is allowed unless one policy of the requested
 * type names both the identity (identityRoles) and the service (serviceRoles).
 * Policies only grant, never deny, so their order does not change the answer;
 * it only picks which granting policy is reported (the first one given).
 *
 * Role selectors, as in OpenZiti:
 *   #all        every entity
 *   #attr       entities whose roleAttributes contain "attr"
 *   @id, @name  one entity, by id or by name
 *
 * Semantic (OpenZiti's): `@` selectors always match on their own; the
 * semantic only combines the `#attr` selectors. AllOf: the entity has every
 * listed attribute; AnyOf: at least one. `#all` matches every entity under
 * either semantic. An empty role list matches nothing.
 */

export type PolicyType = 'Dial' | 'Bind';
export type Semantic = 'AllOf' | 'AnyOf';

/** What a role selector is matched against. */
export interface PolicyEntity {
  readonly id: string;
  readonly name: string;
  readonly roleAttributes: readonly string[];
}

export interface ServicePolicy {
  readonly id: string;
  readonly name: string;
  readonly type: PolicyType;
  readonly semantic: Semantic;
  readonly identityRoles: readonly string[];
  readonly serviceRoles: readonly string[];
  /**
   * Posture checks are not evaluated by ztedge yet. A policy that requires
   * any is never granting (closed by default), rather than silently ignoring them.
   */
  readonly postureCheckRoles?: readonly string[];
}

export interface PolicyRequest {
  readonly identity: PolicyEntity;
  readonly service: PolicyEntity;
  readonly type: PolicyType;
}

export interface Decision {
  readonly allow: boolean;
  /** One line for logs and refusals, naming the policy, identity and service. */
  readonly reason: string;
  /** Id of the granting policy; null when denied. */
  readonly ruleId: string | null;
}

/** The selector that matches every entity. */
export const ALL_ROLE = '#all';

export type RoleSelector =
  | { kind: 'all' }
  | { kind: 'attribute'; attribute: string }
  | { kind: 'entity'; ref: string };

/**
 * Parses one selector, or returns a reason it is malformed (never throws).
 *
 * @example
 *   parseRole('#plc')   // { kind: 'attribute', attribute: 'plc' }
 *   parseRole('@hub-1') // { kind: 'entity', ref: 'hub-1' }
 *   parseRole('plc')    // 'role "plc" must start with # (attribute) or @ (id or name)'
 */
export function parseRole(role: string): RoleSelector | string {
  if (role === ALL_ROLE) return { kind: 'all' };
  const body = role.slice(1);
  if (role.startsWith('#')) {
    if (body === '' || body.trim() !== body) return `role "${role}" needs an attribute name after # without surrounding spaces`;
    return { kind: 'attribute', attribute: body };
  }
  if (role.startsWith('@')) {
    if (body === '' || body.trim() !== body) return `role "${role}" needs an id or name after @ without surrounding spaces`;
    return { kind: 'entity', ref: body };
  }
  return `role "${role}" must start with # (attribute) or @ (id or name)`;
}

/**
 * Does `entity` match `roles` under `semantic`? Malformed selectors match
 * nothing (the controller refuses them on write; a router never widens access
 * because of one).
 */
export function matchesRoles(roles: readonly string[], semantic: Semantic, entity: PolicyEntity): boolean {
  let attributes = 0;
  let attributesHeld = 0;
  for (const role of roles) {
    if (role === ALL_ROLE) return true;
    const c = role.charCodeAt(0);
    if (c === 0x40 /* @ */) {
      const ref = role.slice(1);
      if (ref !== '' && (ref === entity.id || ref === entity.name)) return true;
    } else if (c === 0x23 /* # */ && role.length > 1) {
      attributes++;
      if (entity.roleAttributes.includes(role.slice(1))) {
        if (semantic === 'AnyOf') return true;
        attributesHeld++;
      }
    }
  }
  return semantic === 'AllOf' && attributes > 0 && attributesHeld === attributes;
}

function describe(kind: string, e: PolicyEntity): string {
  return e.name === e.id ? `${kind} "${e.name}"` : `${kind} "${e.name}" (${e.id})`;
}

/**
 * Decides one request against a set of policies of both types.
 *
 * @example
 *   const d = decide({ identity, service, type: 'Dial' }, policies);
 *   if (!d.allow) refuse(d.reason);
 */
export function decide(request: PolicyRequest, policies: readonly ServicePolicy[]): Decision {
  const { identity, service, type } = request;
  let namesIdentity = false;
  let needsPosture: ServicePolicy | undefined;
  for (const p of policies) {
    if (p.type !== type || !matchesRoles(p.identityRoles, p.semantic, identity)) continue;
    namesIdentity = true;
    if (!matchesRoles(p.serviceRoles, p.semantic, service)) continue;
    if (p.postureCheckRoles !== undefined && p.postureCheckRoles.length > 0) {
      needsPosture ??= p;
      continue;
    }
    return { allow: true, reason: `${type} allowed by service policy "${p.name}" (${p.id})`, ruleId: p.id };
  }
  const who = describe('identity', identity);
  const what = describe('service', service);
  if (needsPosture !== undefined) {
    return { allow: false, reason: `${type} denied: service policy "${needsPosture.name}" (${needsPosture.id}) requires posture checks, which are not evaluated`, ruleId: null };
  }
  if (!namesIdentity) return { allow: false, reason: `${type} denied: no ${type} policy names ${who}`, ruleId: null };
  return { allow: false, reason: `${type} denied: no ${type} policy naming ${who} names ${what}`, ruleId: null };
}
