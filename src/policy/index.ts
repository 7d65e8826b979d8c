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
 * Posture (posture.ts): a policy with postureCheckRoles grants only if every
 * posture check those roles select passes on the identity's latest posture
 * data, as in OpenZiti. decide() evaluates them only when given the checks,
 * the data and `now`; without them such a policy grants nothing (closed, not
 * silently ignored). A policy without postureCheckRoles costs nothing extra.
 *
 *   policies ──► type? identity? service? ──► postureCheckRoles? ──► grant
 *                                                  │ yes
 *                                                  └─► evaluatePolicyPosture(checks, data, now)
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

import { evaluatePolicyPosture, type PostureCheck, type PostureData } from './posture.js';

export {
  applyPostureResponses,
  DEFAULT_POSTURE_MAX_AGE_MS,
  evaluatePolicyPosture,
  evaluatePostureCheck,
  MFA_PROMPT_GRACE_MS,
  parseVersion,
  parseVersionRange,
  processPathsOf,
  versionSatisfies,
} from './posture.js';
export type {
  DomainCheckData,
  MacCheckData,
  MfaCheckData,
  OperatingSystem,
  OsCheckData,
  OsType,
  PostureCheck,
  PostureCheckType,
  PostureData,
  PostureResponse,
  PostureResult,
  ProcessCheckData,
  ProcessMultiCheckData,
  ProcessMultiSpec,
  ProcessPosture,
  ProcessSpec,
  VersionRange,
} from './posture.js';

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
   * Posture checks this policy requires (selectors over posture checks, judged
   * with `semantic`). decide() grants through this policy only if all the
   * selected checks pass, and never when it is not given posture to judge.
   */
  readonly postureCheckRoles?: readonly string[];
}

export interface PolicyRequest {
  readonly identity: PolicyEntity;
  readonly service: PolicyEntity;
  readonly type: PolicyType;
}

/** What decide() needs to judge policies that require posture checks. */
export interface PostureContext {
  /** Every posture check there is (postureCheckRoles select among these). */
  readonly checks: readonly PostureCheck[];
  /** The requesting identity's latest posture; undefined fails every check. */
  readonly data: PostureData | undefined;
  /** Milliseconds since the epoch. */
  readonly now: number;
  /** Reported data older than this fails (default DEFAULT_POSTURE_MAX_AGE_MS). */
  readonly maxAgeMs?: number;
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
 * Decides one request against a set of policies of both types. Give
 * `posture` to let policies with postureCheckRoles grant when their checks
 * pass; without it they grant nothing.
 *
 * @example
 *   const d = decide({ identity, service, type: 'Dial' }, policies,
 *     { checks: snapshot.postureChecks, data: postureOf(identity.id), now: Date.now() });
 *   if (!d.allow) refuse(d.reason);
 */
export function decide(request: PolicyRequest, policies: readonly ServicePolicy[], posture?: PostureContext): Decision {
  const { identity, service, type } = request;
  let namesIdentity = false;
  let needsPosture: ServicePolicy | undefined;
  let postureFailure: string | undefined;
  for (const p of policies) {
    if (p.type !== type || !matchesRoles(p.identityRoles, p.semantic, identity)) continue;
    namesIdentity = true;
    if (!matchesRoles(p.serviceRoles, p.semantic, service)) continue;
    const postureRoles = p.postureCheckRoles;
    if (postureRoles !== undefined && postureRoles.length > 0) {
      if (posture === undefined) {
        needsPosture ??= p;
        continue;
      }
      const r = evaluatePolicyPosture(postureRoles, p.semantic, posture.checks, posture.data, posture.now, posture.maxAgeMs);
      if (!r.pass) {
        if (needsPosture === undefined) {
          needsPosture = p;
          postureFailure = r.reason;
        }
        continue;
      }
      return { allow: true, reason: `${type} allowed by service policy "${p.name}" (${p.id}); ${r.reason}`, ruleId: p.id };
    }
    return { allow: true, reason: `${type} allowed by service policy "${p.name}" (${p.id})`, ruleId: p.id };
  }
  const who = describe('identity', identity);
  const what = describe('service', service);
  if (needsPosture !== undefined) {
    const pol = `service policy "${needsPosture.name}" (${needsPosture.id})`;
    if (postureFailure === undefined) return { allow: false, reason: `${type} denied: ${pol} requires posture checks, which are not evaluated`, ruleId: null };
    return { allow: false, reason: `${type} denied: ${pol} names ${who} and ${what} but its posture checks fail: ${postureFailure}`, ruleId: null };
  }
  if (!namesIdentity) return { allow: false, reason: `${type} denied: no ${type} policy names ${who}`, ruleId: null };
  return { allow: false, reason: `${type} denied: no ${type} policy naming ${who} names ${what}`, ruleId: null };
}
