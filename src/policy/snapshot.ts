/**
 * What a router knows of policy: a snapshot the controller builds for it,
 * and the view the router authorizes from (never asking the controller at
 * dial time).
 *
 *   controller ──(buildRouterSnapshot)──► PolicySnapshot ──(JSON)──► router
 *   router: parseSnapshot(json) ──► SnapshotPolicyView ──► hostedServices(), mayDial()
 *
 * The snapshot carries every identity (id, name, attributes, disabled), every
 * service with its host.v1 and intercept.v1 data, and every service policy.
 * A router needs all identities because any of them may dial a service it
 * hosts. `revision` is a hash of the content: equal revisions, equal policy.
 * (Issue #6 signs snapshots and caches them; this module is the pure part.)
 */
import { contentRevision, type Content } from './delta.js';
import { EdgeError } from '../errors.js';
import { decide, matchesRoles, type Decision, type PolicyEntity, type PostureContext, type ServicePolicy } from './index.js';
import type { PostureCheck, PostureData } from './posture.js';

export type Protocol = 'tcp' | 'udp';

/** host.v1 data: each of protocol, address, port is fixed, or forwarded from the dial within allowed values. */
export interface HostTarget {
  protocol?: Protocol;
  forwardProtocol?: boolean;
  allowedProtocols?: Protocol[];
  address?: string;
  forwardAddress?: boolean;
  allowedAddresses?: string[];
  port?: number;
  forwardPort?: boolean;
  allowedPortRanges?: { low: number; high: number }[];
  listenOptions?: { connectTimeoutSeconds?: number; maxConnections?: number };
}

/** intercept.v1 data. */
export interface InterceptTarget {
  protocols: Protocol[];
  addresses: string[];
  portRanges: { low: number; high: number }[];
}

export interface SnapshotIdentity extends PolicyEntity {
  readonly disabled: boolean;
  /** The identity's latest reported posture (for posture checks), when it reported any. */
  readonly posture?: PostureData;
}

export interface SnapshotService extends PolicyEntity {
  readonly host?: HostTarget;
  readonly intercept?: InterceptTarget;
}

export interface PolicySnapshot {
  readonly v: 1;
  /** Hash of everything below: routers compare it to know whether anything changed. */
  readonly revision: string;
  readonly issuedAt: string;
  /**
   * The end of the offline window: past it a router stops authorizing from
   * this snapshot (fails closed) unless configured to keep the last policy.
   */
  readonly notAfter: string;
  /** The router this snapshot was built for. */
  readonly routerId: string;
  readonly identities: readonly SnapshotIdentity[];
  readonly services: readonly SnapshotService[];
  readonly servicePolicies: readonly ServicePolicy[];
  /** Posture checks that service policies select with postureCheckRoles. */
  readonly postureChecks: readonly PostureCheck[];
  /** Which services may use which edge routers (OpenZiti's service edge router policies). */
  readonly serviceEdgeRouterPolicies: readonly ServiceEdgeRouterPolicy[];
}

/** A service edge router policy: services named by serviceRoles may use the routers named by edgeRouterRoles. */
export interface ServiceEdgeRouterPolicy {
  readonly id: string;
  readonly name: string;
  readonly semantic: 'AllOf' | 'AnyOf';
  readonly edgeRouterRoles: readonly string[];
  readonly serviceRoles: readonly string[];
}

export type SnapshotContent = Omit<PolicySnapshot, 'revision' | 'issuedAt' | 'notAfter'>;

/** The content of a snapshot (as data): everything but its revision and validity, which are not hashed. */
export function contentOf(snapshot: object): Content {
  const { revision: _r, issuedAt: _i, notAfter: _n, ...content } = snapshot as Record<string, unknown>;
  return content;
}

/** Default offline window: how long a router may authorize from a snapshot without hearing from its controller. */
export const DEFAULT_OFFLINE_WINDOW_MS = 72 * 3600_000;

/**
 * Builds a snapshot from content, valid for `validForMs`. The revision is a
 * hash of the content only, so it is stable across controller restarts and
 * re-issues (a fresh notAfter alone does not make a new revision).
 */
export function sealSnapshot(content: SnapshotContent, now: Date, validForMs = DEFAULT_OFFLINE_WINDOW_MS): PolicySnapshot {
  const revision = contentRevision(content as unknown as Content);
  return { ...content, revision, issuedAt: now.toISOString(), notAfter: new Date(now.getTime() + validForMs).toISOString() };
}

function indexBy(index: Map<string, ServicePolicy[]>, roles: readonly string[], p: ServicePolicy): void {
  for (const role of new Set(roles)) {
    const list = index.get(role);
    if (list === undefined) index.set(role, [p]);
    else list.push(p);
  }
}

function fail(what: string): never {
  throw new EdgeError('ERR_POLICY_SNAPSHOT', `policy snapshot is malformed: ${what}`);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

function entity(raw: unknown, where: string): { id: string; name: string; roleAttributes: string[]; rec: Record<string, unknown> } {
  if (raw === null || typeof raw !== 'object') fail(`${where} is not an object`);
  const rec = raw as Record<string, unknown>;
  if (!isString(rec.id) || rec.id === '') fail(`${where}.id is missing`);
  if (!isString(rec.name)) fail(`${where}.name is missing`);
  if (!isStringArray(rec.roleAttributes)) fail(`${where}.roleAttributes is not a list of strings`);
  return { id: rec.id, name: rec.name, roleAttributes: rec.roleAttributes, rec };
}

/**
 * Checks the shape of a snapshot received from the controller or read from
 * a cache. Never returns a half-valid snapshot: anything wrong throws
 * ERR_POLICY_SNAPSHOT naming the first problem.
 */
export function parseSnapshot(raw: unknown, previous?: { snapshot: PolicySnapshot; unchanged: ReadonlySet<string> }): PolicySnapshot {
  if (raw === null || typeof raw !== 'object') fail('not an object');
  const s = raw as Record<string, unknown>;
  if (s.v !== 1) fail(`unsupported version ${JSON.stringify(s.v)}`);
  if (!isString(s.revision) || !isString(s.issuedAt) || !isString(s.routerId)) fail('revision, issuedAt or routerId is missing');
  if (!isString(s.notAfter) || Number.isNaN(Date.parse(s.notAfter))) fail('notAfter is missing or not a date');
  if (!Array.isArray(s.identities) || !Array.isArray(s.services) || !Array.isArray(s.servicePolicies)) fail('identities, services or servicePolicies is not a list');
  // After a delta, collections it did not touch are taken as already parsed: a change to one
  // policy does not re-check 10,000 identities.
  const collection = <K extends CollectionKey>(key: K): PolicySnapshot[K] => {
    if (previous !== undefined && previous.unchanged.has(key)) return previous.snapshot[key];
    const list = s[key] ?? [];
    if (!Array.isArray(list)) fail(`${key} is not a list`);
    return list.map((r, i) => COLLECTION_PARSERS[key](r, `${key}[${i}]`)) as PolicySnapshot[K];
  };
  return {
    v: 1, revision: s.revision, issuedAt: s.issuedAt, notAfter: s.notAfter, routerId: s.routerId,
    identities: collection('identities'),
    services: collection('services'),
    servicePolicies: collection('servicePolicies'),
    postureChecks: collection('postureChecks'),
    serviceEdgeRouterPolicies: collection('serviceEdgeRouterPolicies'),
  };
}

type CollectionKey = 'identities' | 'services' | 'servicePolicies' | 'postureChecks' | 'serviceEdgeRouterPolicies';

/** One entity of each collection, checked; `at` names it in messages (`identities[3]`). */
const COLLECTION_PARSERS: { [K in CollectionKey]: (raw: unknown, at: string) => PolicySnapshot[K][number] } = {
  identities(r, at): SnapshotIdentity {
    const e = entity(r, at);
    const posture = e.rec.posture;
    if (posture !== undefined && (posture === null || typeof posture !== 'object')) fail(`${at}.posture is not an object`);
    // Already in shape (as the controller sends it): use it as is, no second copy of 10,000 identities.
    if (typeof e.rec.disabled === 'boolean') return e.rec as unknown as SnapshotIdentity;
    return { id: e.id, name: e.name, roleAttributes: e.roleAttributes, disabled: e.rec.disabled === true, ...(posture !== undefined ? { posture: posture as PostureData } : {}) };
  },
  services(r, at): SnapshotService {
    const e = entity(r, at);
    const host = e.rec.host;
    const intercept = e.rec.intercept;
    if (host !== undefined && (host === null || typeof host !== 'object')) fail(`${at}.host is not an object`);
    if (intercept !== undefined && (intercept === null || typeof intercept !== 'object')) fail(`${at}.intercept is not an object`);
    return { id: e.id, name: e.name, roleAttributes: e.roleAttributes, host: host as HostTarget | undefined, intercept: intercept as InterceptTarget | undefined };
  },
  servicePolicies(r, at): ServicePolicy {
    const e = entity({ roleAttributes: [], ...(r as object) }, at);
    const p = e.rec;
    if (p.type !== 'Dial' && p.type !== 'Bind') fail(`${at}.type must be Dial or Bind`);
    if (p.semantic !== 'AnyOf' && p.semantic !== 'AllOf') fail(`${at}.semantic must be AnyOf or AllOf`);
    if (!isStringArray(p.identityRoles) || !isStringArray(p.serviceRoles)) fail(`${at} roles are not lists of strings`);
    const posture = p.postureCheckRoles === undefined ? [] : p.postureCheckRoles;
    if (!isStringArray(posture)) fail(`${at}.postureCheckRoles is not a list of strings`);
    return { id: e.id, name: e.name, type: p.type, semantic: p.semantic, identityRoles: p.identityRoles, serviceRoles: p.serviceRoles, postureCheckRoles: posture };
  },
  postureChecks(r, at): PostureCheck {
    const e = entity(r, at);
    if (typeof e.rec.typeId !== 'string') fail(`${at}.typeId is missing`);
    if (e.rec.data === null || typeof e.rec.data !== 'object') fail(`${at}.data is not an object`);
    // Unknown typeIds are kept: evaluation fails them closed with a reason.
    return { id: e.id, name: e.name, roleAttributes: e.roleAttributes, typeId: e.rec.typeId, data: e.rec.data } as PostureCheck;
  },
  serviceEdgeRouterPolicies(r, at): ServiceEdgeRouterPolicy {
    const e = entity({ roleAttributes: [], ...(r as object) }, at);
    const p = e.rec;
    if (p.semantic !== 'AnyOf' && p.semantic !== 'AllOf') fail(`${at}.semantic must be AnyOf or AllOf`);
    if (!isStringArray(p.edgeRouterRoles) || !isStringArray(p.serviceRoles)) fail(`${at} roles are not lists of strings`);
    return { id: e.id, name: e.name, semantic: p.semantic, edgeRouterRoles: p.edgeRouterRoles, serviceRoles: p.serviceRoles };
  },
};

/** Authorization from one snapshot: indexes built once, answers are pure lookups plus decide(). */
export class SnapshotPolicyView {
  private readonly identities: Map<string, SnapshotIdentity> = new Map();
  private readonly servicesByName: Map<string, SnapshotService> = new Map();
  private readonly hosted = new Map<string, HostTarget>();
  private readonly dialPolicies: ServicePolicy[];
  /** Dial policies that could name each service (by service id), built on first use. */
  private readonly dialCandidates = new Map<string, ServicePolicy[]>();
  /** Dial policies by the service selectors they hold: `#all`, `@ref`, `#attr`. */
  private readonly dialByServiceRole = new Map<string, ServicePolicy[]>();
  /** The same by identity selectors, and the per-identity candidate lists (for precise refusal reasons). */
  private readonly dialByIdentityRole = new Map<string, ServicePolicy[]>();
  private readonly identityCandidates = new Map<string, ServicePolicy[]>();
  /** ms since epoch after which Dial answers are refused; Infinity when the router keeps the last policy. */
  readonly expiresAtMs: number;

  /**
   * `keepAfterExpiry`: go on authorizing past notAfter (a documented trade-off: availability over revocation).
   * `maxOfflineMs`: this router's own, shorter window, counted from the snapshot's issuedAt.
   */
  constructor(readonly snapshot: PolicySnapshot, keepAfterExpiry = false, now = Date.now(), maxOfflineMs = Infinity, previous?: SnapshotPolicyView) {
    this.expiresAtMs = keepAfterExpiry ? Infinity : Math.min(Date.parse(snapshot.notAfter), Date.parse(snapshot.issuedAt) + maxOfflineMs);
    // Collections a delta left alone are the same arrays: their indexes carry over (10,000
    // identities are not re-indexed because one policy changed).
    if (previous !== undefined && previous.snapshot.identities === snapshot.identities) this.identities = previous.identities;
    else for (const i of snapshot.identities) this.identities.set(i.id, i);
    if (previous !== undefined && previous.snapshot.services === snapshot.services) this.servicesByName = previous.servicesByName;
    else for (const s of snapshot.services) this.servicesByName.set(s.name, s);
    this.dialPolicies = snapshot.servicePolicies.filter((p) => p.type === 'Dial');
    for (const p of this.dialPolicies) {
      indexBy(this.dialByServiceRole, p.serviceRoles, p);
      indexBy(this.dialByIdentityRole, p.identityRoles, p);
    }
    const bind = snapshot.servicePolicies.filter((p) => p.type === 'Bind');
    const self = this.identities.get(snapshot.routerId);
    this.self = self;
    if (self !== undefined && !self.disabled) {
      const posture = this.postureOf(self, now);
      for (const s of snapshot.services) {
        if (s.host !== undefined && this.serpFor(s) !== undefined && decide({ identity: self, service: s, type: 'Bind' }, bind, posture).allow) this.hosted.set(s.name, s.host);
      }
    }
  }

  private readonly self: SnapshotIdentity | undefined;

  /** The service edge router policy that lets `svc` use this router, if any (none: closed, as in OpenZiti). */
  private serpFor(svc: SnapshotService): ServiceEdgeRouterPolicy | undefined {
    const self = this.self;
    if (self === undefined) return undefined;
    return this.snapshot.serviceEdgeRouterPolicies.find((p) => matchesRoles(p.edgeRouterRoles, p.semantic, self) && matchesRoles(p.serviceRoles, p.semantic, svc));
  }

  /**
   * May this router carry a circuit for `service` in from a local client
   * (proxy or tun interception)? A service edge router policy must let the
   * service use this router. Whether this router's identity may Dial the
   * service is for the hosting router to decide, from its own copy.
   */
  mayIntercept(service: string, now = Date.now()): Decision {
    if (now > this.expiresAtMs) return { allow: false, reason: `Dial denied: this router's policy expired at ${new Date(this.expiresAtMs).toISOString()}`, ruleId: null };
    const svc = this.servicesByName.get(service);
    if (svc === undefined) return { allow: false, reason: `Dial denied: service "${service}" is unknown to this router's policy`, ruleId: null };
    const serp = this.serpFor(svc);
    if (serp === undefined) return { allow: false, reason: `Dial denied: no service edge router policy lets service "${service}" use this router`, ruleId: null };
    return { allow: true, reason: `service edge router policy "${serp.name}" (${serp.id}) lets service "${service}" use this router`, ruleId: serp.id };
  }

  private postureOf(identity: SnapshotIdentity, now: number): PostureContext {
    return { checks: this.snapshot.postureChecks, data: identity.posture, now };
  }

  /**
   * The Dial policies that can possibly name `svc`: those selecting `#all`,
   * it by id or name, or one of its attributes. decide() over this short list
   * gives the same grant as over all policies (the others cannot match the
   * service), which keeps a dial's check to a few policies among thousands.
   */
  private candidatesFor(svc: SnapshotService): ServicePolicy[] {
    return this.candidates(this.dialCandidates, this.dialByServiceRole, svc);
  }

  private candidates(memo: Map<string, ServicePolicy[]>, index: Map<string, ServicePolicy[]>, entity: PolicyEntity): ServicePolicy[] {
    let list = memo.get(entity.id);
    if (list !== undefined) return list;
    const found = new Set<ServicePolicy>();
    const add = (role: string): void => { for (const p of index.get(role) ?? []) found.add(p); };
    add('#all');
    add(`@${entity.id}`);
    add(`@${entity.name}`);
    for (const a of entity.roleAttributes) add(`#${a}`);
    // Keep the policies' original order: decide() reports the first granting one.
    list = found.size === 0 ? [] : this.dialPolicies.filter((p) => found.has(p));
    memo.set(entity.id, list);
    return list;
  }

  get revision(): string {
    return this.snapshot.revision;
  }

  /** Services this router may Bind that have a host.v1 config, by name. */
  hostedServices(): Map<string, HostTarget> {
    return this.hosted;
  }

  /** May router `id` link to this one? Only identities in the snapshot, enabled, and only while the snapshot is valid. */
  mayLink(id: string, now = Date.now()): { allow: boolean; reason: string } {
    if (now > this.expiresAtMs) return { allow: false, reason: `link refused: this router's policy expired at ${new Date(this.expiresAtMs).toISOString()}` };
    const identity = this.identities.get(id);
    if (identity === undefined) return { allow: false, reason: `link refused: ${id} is not a known identity (deleted?)` };
    if (identity.disabled) return { allow: false, reason: `link refused: "${identity.name}" is disabled` };
    return { allow: true, reason: 'known identity' };
  }

  /** The intercept.v1 data of a service, if it has one. */
  interceptOf(service: string): InterceptTarget | undefined {
    return this.servicesByName.get(service)?.intercept;
  }

  /** May identity `identityId` Dial service `service` (by name)? Unknown or disabled identities and unknown services are refused. */
  mayDial(identityId: string, service: string, now = Date.now()): Decision {
    if (now > this.expiresAtMs) return { allow: false, reason: `Dial denied: this router's policy expired at ${new Date(this.expiresAtMs).toISOString()} (controller out of reach for longer than the offline window)`, ruleId: null };
    const identity = this.identities.get(identityId);
    if (identity === undefined) return { allow: false, reason: `Dial denied: identity ${identityId} is unknown to this router's policy`, ruleId: null };
    if (identity.disabled) return { allow: false, reason: `Dial denied: identity "${identity.name}" is disabled`, ruleId: null };
    const svc = this.servicesByName.get(service);
    if (svc === undefined) return { allow: false, reason: `Dial denied: service "${service}" is unknown to this router's policy`, ruleId: null };
    const request = { identity, service: svc, type: 'Dial' as const };
    const posture = this.postureOf(identity, now);
    const decision = decide(request, this.candidatesFor(svc), posture);
    if (decision.allow || decision.ruleId !== null) return decision;
    // Refused. Policies that cannot name the service were left out, so "no policy names the
    // identity" may be untrue: then ask the identity's own candidates, which name it but
    // (as the service's candidates showed) not the service, for the precise reason.
    const forIdentity = this.candidates(this.identityCandidates, this.dialByIdentityRole, identity);
    return forIdentity.length === 0 || decision.reason.includes('posture') ? decision : decide(request, forIdentity, posture);
  }
}
