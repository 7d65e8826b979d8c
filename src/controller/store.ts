/**
 * The controller's embedded store: LMDB (ACID, memory-mapped, prebuilt for
 * the platforms we ship) with one named database per entity kind and unique
 * indexes kept in the same transaction as the records they index.
 *
 * Durability contract: every mutating method resolves only after its
 * transaction is committed *and* flushed, so an API call that answered
 * success survives kill -9 or power loss. Checks and writes of one operation
 * run inside one child transaction: a thrown error rolls all of it back.
 */
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeError } from '../errors.js';
import type { PostureCheck, PostureData } from '../policy/posture.js';

export type IdentityTypeName = 'User' | 'Device' | 'Service' | 'Router' | 'Default';

export interface IdentityRecord {
  id: string;
  name: string;
  type: IdentityTypeName;
  isAdmin: boolean;
  isDefaultAdmin: boolean;
  roleAttributes: string[];
  externalId: string | null;
  tags: Record<string, unknown>;
  appData: Record<string, unknown>;
  authPolicyId: string;
  disabled: boolean;
  createdAt: string;
  updatedAt: string;
}

/** erott: an edge router's one-time token (client and server certificates). */
export type EnrollmentMethod = 'ott' | 'ottca' | 'updb' | 'erott';

export interface EnrollmentRecord {
  id: string;
  method: EnrollmentMethod;
  identityId: string;
  /** The one-time token (the JWT's `jti`). */
  token: string;
  expiresAt: string;
  caId: string | null;
  username: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface AuthenticatorRecord {
  id: string;
  identityId: string;
  method: 'cert' | 'updb';
  /** cert: lower-case hex SHA-1 of the certificate DER (OpenZiti's fingerprint). */
  fingerprint: string | null;
  certPem: string | null;
  username: string | null;
  /** updb: scrypt hash record, never returned by the API. */
  passwordHash: string | null;
  /** cert issued by a registered 3rd-party CA: that CA's id (absent for our own certificates). */
  caId?: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ApiSessionRecord {
  id: string;
  token: string;
  identityId: string;
  authenticatorId: string;
  ipAddress: string;
  createdAt: string;
  /** Persisted activity, updated at most once a minute. */
  lastActivityAt: string;
  /**
   * Set at authentication when the identity's auth policy requires TOTP or
   * the identity has MFA enrolled: until MFA passes, the session is
   * "partially authenticated" and only the MFA calls work. Absent on
   * sessions stored before MFA existed (false).
   */
  mfaRequired?: boolean;
  /** When MFA last passed on this session (ISO 8601); posture MFA checks need it. */
  mfaPassedAt?: string | null;
  /** Wrong MFA codes sent on this session; the session ends at MAX_MFA_FAILURES. */
  mfaFailures?: number;
}

/** Consumed one-time tokens, kept so a second use gets a precise error. */
interface UsedTokenRecord { token: string; usedAt: string; identityId: string }

/** A registered 3rd-party CA (ottca enrollment, certificate authentication). */
export interface CaRecord {
  id: string;
  name: string;
  certPem: string;
  /** Lower-case hex SHA-1 of the CA certificate DER. */
  fingerprint: string;
  isVerified: boolean;
  verificationToken: string;
  isAutoCaEnrollmentEnabled: boolean;
  isOttCaEnrollmentEnabled: boolean;
  isAuthEnabled: boolean;
  identityRoles: string[];
  identityNameFormat: string;
  externalIdClaim: Record<string, unknown> | null;
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** An identity's TOTP second factor (RFC 6238; routes/mfa.ts). */
export interface MfaRecord {
  identityId: string;
  /** The shared secret, base32 (as in the provisioning URL). */
  secret: string;
  /** False until a first code proves the authenticator app holds the secret. */
  isVerified: boolean;
  /** Single-use codes for when the app is lost; each is removed when used. */
  recoveryCodes: string[];
  /** The last TOTP step accepted: a code of this step or an earlier one is refused (replay, RFC 6238 §5.2). */
  lastStep: number;
  createdAt: string;
  updatedAt: string;
}

/**
 * An edge router. Its identity (type Router, same id, name and
 * roleAttributes) is what service policies name and what its client
 * certificate authenticates as; the two records change together.
 */
export interface EdgeRouterRecord {
  id: string;
  name: string;
  roleAttributes: string[];
  isTunnelerEnabled: boolean;
  tags: Record<string, unknown>;
  appData: Record<string, unknown>;
  cost: number;
  noTraversal: boolean;
  disabled: boolean;
  /** True once the router enrolled (erott). */
  isVerified: boolean;
  /** Client certificate issued at enrollment and its SHA-1 fingerprint (lower-case hex). */
  certPem: string | null;
  fingerprint: string | null;
  /** Server certificate issued at enrollment (for the router's link listeners). */
  serverCertPem: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ServiceRecord {
  id: string;
  name: string;
  roleAttributes: string[];
  /** Config ids, at most one per config type. */
  configs: string[];
  encryptionRequired: boolean;
  terminatorStrategy: string;
  maxIdleTimeMillis: number;
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export interface ConfigRecord {
  id: string;
  name: string;
  /** A built-in config type: its id is its name (intercept.v1, host.v1). */
  configTypeId: string;
  data: Record<string, unknown>;
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** A service policy. `@` selectors are stored by id (names resolved on write), so renames keep them valid. */
export interface ServicePolicyRecord {
  id: string;
  name: string;
  type: 'Dial' | 'Bind';
  semantic: 'AllOf' | 'AnyOf';
  identityRoles: string[];
  serviceRoles: string[];
  postureCheckRoles: string[];
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** Which edge routers the identities it names may connect to (OpenZiti's edge router policy); `@` selectors by id. */
export interface EdgeRouterPolicyRecord {
  id: string;
  name: string;
  semantic: 'AllOf' | 'AnyOf';
  identityRoles: string[];
  edgeRouterRoles: string[];
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** Which edge routers may carry the services it names (OpenZiti's service edge router policy); `@` selectors by id. */
export interface ServiceEdgeRouterPolicyRecord {
  id: string;
  name: string;
  semantic: 'AllOf' | 'AnyOf';
  serviceRoles: string[];
  edgeRouterRoles: string[];
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/**
 * A posture check: src/policy's PostureCheck (id, name, roleAttributes,
 * typeId and its `data`, what routers evaluate) plus what the API keeps.
 * `version` counts changes, as in OpenZiti.
 */
export type PostureCheckRecord = PostureCheck & {
  tags: Record<string, unknown>;
  version: number;
  createdAt: string;
  updatedAt: string;
};

/** The latest posture an identity's device reported (client API posture responses). */
export interface PostureDataRecord {
  identityId: string;
  /**
   * The latest report of each kind, as src/policy applyPostureResponses
   * keeps it (`at`: when the controller received it). Its `mfa` stays unset
   * here: MFA is passed per API session (ApiSessionRecord.mfaPassedAt).
   */
  data: PostureData;
  /** The posture query (check) id each report answered, by kind: `mac`, `os`, `domain`, `process:PATH`. */
  queryIds: Record<string, string>;
  /** The last endpoint-state reports (ENDPOINT_STATE woken / unlocked), for MFA checks that prompt on wake or unlock. */
  wokenAt: string | null;
  unlockedAt: string | null;
  updatedAt: string;
}

/**
 * An authentication policy (OpenZiti's shape): which primary methods its
 * identities may use, the updb password rules and lockout, and whether a
 * second factor is required. The built-in `default` (id "default") always
 * exists and cannot be deleted.
 */
export interface AuthPolicyRecord {
  id: string;
  name: string;
  primary: {
    cert: { allowed: boolean; allowExpiredCerts: boolean };
    extJwt: { allowed: boolean; allowedSigners: string[] };
    updb: {
      allowed: boolean;
      minPasswordLength: number;
      requireMixedCase: boolean;
      requireNumberChar: boolean;
      requireSpecialChar: boolean;
      /** Failed password logins in a row that lock the identity; 0: never locked. */
      maxAttempts: number;
      /** How long a lock lasts; 0: until an admin enables the identity. */
      lockoutDurationMinutes: number;
    };
  };
  secondary: { requireTotp: boolean; requireExtJwtSigner: string | null };
  tags: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** Failed password logins of an identity, and its lock once they reach the policy's maxAttempts. */
export interface LockoutRecord {
  identityId: string;
  /** Failures since the last success or lock. */
  failedAttempts: number;
  /** Set while locked (after maxAttempts failures). */
  lockedAt: string | null;
  /** When the lock ends; null while lockedAt is set: until an admin enables the identity. */
  lockedUntil: string | null;
}

/** Is the identity of `lock` locked at `now`? */
export function isLocked(lock: LockoutRecord | undefined, now: number): boolean {
  return lock?.lockedAt != null && (lock.lockedUntil === null || Date.parse(lock.lockedUntil) > now);
}

/** What an `@id` selector of a role list names. */
export type RoleTarget = 'identity' | 'service' | 'edgeRouter' | 'postureCheck';

/**
 * The role lists of each policy kind and what their `@id` selectors name:
 * checked on every write, and cleaned when the named entity is deleted.
 */
export const POLICY_ROLE_FIELDS = {
  servicePolicies: { identityRoles: 'identity', serviceRoles: 'service', postureCheckRoles: 'postureCheck' },
  edgeRouterPolicies: { identityRoles: 'identity', edgeRouterRoles: 'edgeRouter' },
  serviceEdgeRouterPolicies: { serviceRoles: 'service', edgeRouterRoles: 'edgeRouter' },
} as const satisfies Record<string, Record<string, RoleTarget>>;

export type PolicyKind = keyof typeof POLICY_ROLE_FIELDS;
export type PolicyRecord = ServicePolicyRecord | EdgeRouterPolicyRecord | ServiceEdgeRouterPolicyRecord;

const TARGET_WHAT: Record<RoleTarget, string> = { identity: 'identity', service: 'service', edgeRouter: 'edge router', postureCheck: 'posture check' };

/**
 * Records of one kind with a unique name index. Methods that change data
 * must run inside `Store.write` (they only queue puts in the transaction).
 */
class NamedCollection<T extends { id: string; name: string }> {
  constructor(readonly records: Database<T, string>, private readonly byName: Database<string, string>, private readonly what: string) {}

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  idByName(name: string): string | undefined {
    return this.byName.get(name);
  }

  /** By id first, then by name. */
  find(idOrName: string): T | undefined {
    const byId = this.records.get(idOrName);
    if (byId !== undefined) return byId;
    const id = this.byName.get(idOrName);
    return id === undefined ? undefined : this.records.get(id);
  }

  list(): T[] {
    return [...this.records.getRange().map((e) => e.value)];
  }

  count(): number {
    return this.records.getCount();
  }

  checkNameFree(name: string): void {
    if (this.byName.get(name) !== undefined) throw new EdgeError('ERR_NAME_IN_USE', `${this.what} named "${name}" already exists`, { details: { field: 'name' } });
  }

  insert(r: T): void {
    this.checkNameFree(r.name);
    void this.records.put(r.id, r);
    void this.byName.put(r.name, r.id);
  }

  /** Replaces a record (renaming it in the index); returns the previous one. */
  replace(next: T): T {
    const prev = this.records.get(next.id);
    if (prev === undefined) throw new EdgeError('ERR_NOT_FOUND', `${this.what.replace(/^an? /, '')} ${next.id} not found`);
    if (prev.name !== next.name) {
      this.checkNameFree(next.name);
      void this.byName.remove(prev.name);
      void this.byName.put(next.name, next.id);
    }
    void this.records.put(next.id, next);
    return prev;
  }

  /** Puts a record whose name is unchanged (no index work). */
  put(r: T): void {
    void this.records.put(r.id, r);
  }

  remove(r: T): void {
    void this.records.remove(r.id);
    void this.byName.remove(r.name);
  }
}

/** One role list of a policy record, by field name. */
function rolesOf(p: PolicyRecord, field: string): string[] {
  return (p as unknown as Record<string, string[]>)[field] ?? [];
}

export class Store {
  private readonly root: RootDatabase;
  readonly identities: Database<IdentityRecord, string>;
  readonly enrollments: Database<EnrollmentRecord, string>;
  readonly authenticators: Database<AuthenticatorRecord, string>;
  readonly apiSessions: Database<ApiSessionRecord, string>;
  readonly mfa: Database<MfaRecord, string>;
  readonly cas: Database<CaRecord, string>;
  private readonly caByName: Database<string, string>;
  /** Unique indexes: key → id. */
  private readonly identityByName: Database<string, string>;
  private readonly identityByExternalId: Database<string, string>;
  private readonly enrollmentByToken: Database<string, string>;
  private readonly authByFingerprint: Database<string, string>;
  private readonly authByUsername: Database<string, string>;
  /** Per-identity indexes (duplicate keys): identity id → enrollment id / authenticator id / session token. */
  private readonly enrollmentsByIdentity: Database<string, string>;
  private readonly authenticatorsByIdentity: Database<string, string>;
  private readonly sessionsByIdentity: Database<string, string>;
  private readonly usedTokens: Database<UsedTokenRecord, string>;
  private readonly meta: Database<unknown, string>;
  readonly edgeRouters: NamedCollection<EdgeRouterRecord>;
  readonly services: NamedCollection<ServiceRecord>;
  readonly configs: NamedCollection<ConfigRecord>;
  readonly servicePolicies: NamedCollection<ServicePolicyRecord>;
  readonly edgeRouterPolicies: NamedCollection<EdgeRouterPolicyRecord>;
  readonly serviceEdgeRouterPolicies: NamedCollection<ServiceEdgeRouterPolicyRecord>;
  readonly postureChecks: NamedCollection<PostureCheckRecord>;
  /** identity id → its latest posture data. */
  readonly postureData: Database<PostureDataRecord, string>;
  readonly authPolicies: NamedCollection<AuthPolicyRecord>;
  /** identity id → its failed password logins and lock. */
  readonly lockouts: Database<LockoutRecord, string>;
  /** Called after every committed write (routers waiting for policy changes re-check). */
  private readonly changeListeners = new Set<() => void>();

  constructor(dir: string) {
    const path = join(dir, 'db');
    mkdirSync(path, { recursive: true, mode: 0o700 });
    try {
      this.root = open({ path, maxDbs: 64, compression: false });
    } catch (err) {
      throw new EdgeError('ERR_STORE', `cannot open the store at ${path}: ${(err as Error).message}`, { cause: err });
    }
    const db = <V>(name: string) => this.root.openDB<V, string>({ name });
    this.identities = db('identities');
    this.enrollments = db('enrollments');
    this.authenticators = db('authenticators');
    this.apiSessions = db('apiSessions');
    this.mfa = db('mfa');
    this.cas = db('cas');
    this.caByName = db('idx.ca.name');
    this.identityByName = db('idx.identity.name');
    this.identityByExternalId = db('idx.identity.externalId');
    this.enrollmentByToken = db('idx.enrollment.token');
    this.authByFingerprint = db('idx.authenticator.fingerprint');
    this.authByUsername = db('idx.authenticator.username');
    const multi = (name: string) => this.root.openDB<string, string>({ name, dupSort: true });
    this.enrollmentsByIdentity = multi('idx.enrollment.identity');
    this.authenticatorsByIdentity = multi('idx.authenticator.identity');
    this.sessionsByIdentity = multi('idx.session.identity');
    this.usedTokens = db('usedTokens');
    this.meta = db('meta');
    this.edgeRouters = new NamedCollection(db('edgeRouters'), db('idx.edgeRouter.name'), 'an edge router');
    this.services = new NamedCollection(db('services'), db('idx.service.name'), 'a service');
    this.configs = new NamedCollection(db('configs'), db('idx.config.name'), 'a config');
    this.servicePolicies = new NamedCollection(db('servicePolicies'), db('idx.servicePolicy.name'), 'a service policy');
    this.edgeRouterPolicies = new NamedCollection(db('edgeRouterPolicies'), db('idx.edgeRouterPolicy.name'), 'an edge router policy');
    this.serviceEdgeRouterPolicies = new NamedCollection(db('serviceEdgeRouterPolicies'), db('idx.serviceEdgeRouterPolicy.name'), 'a service edge router policy');
    this.postureChecks = new NamedCollection(db('postureChecks'), db('idx.postureCheck.name'), 'a posture check');
    this.postureData = db('postureData');
    this.authPolicies = new NamedCollection(db('authPolicies'), db('idx.authPolicy.name'), 'an auth policy');
    this.lockouts = db('lockouts');
  }

  /** Runs `fn` in one write transaction (rolled back if it throws), then waits for the flush. */
  async write<T>(fn: () => T): Promise<T> {
    let result: T;
    try {
      result = await this.root.childTransaction(fn);
    } catch (err) {
      if (err instanceof EdgeError) throw err;
      throw new EdgeError('ERR_STORE', `store write failed: ${(err as Error).message}`, { cause: err });
    }
    await this.root.flushed;
    for (const fn of this.changeListeners) fn();
    return result;
  }

  /** Calls `fn` after each committed write; returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  getMeta<T>(key: string): T | undefined {
    return this.meta.get(key) as T | undefined;
  }

  putMeta(key: string, value: unknown): Promise<void> {
    return this.write(() => { void this.meta.put(key, value); });
  }

  // ---- identities -------------------------------------------------------

  identityIdByName(name: string): string | undefined {
    return this.identityByName.get(name);
  }

  identityIdByExternalId(externalId: string): string | undefined {
    return this.identityByExternalId.get(externalId);
  }

  /** One page of identities in name order, read through the name index (no full scan). */
  identitiesPage(offset: number, limit: number): { items: IdentityRecord[]; total: number } {
    const items: IdentityRecord[] = [];
    for (const { value: id } of this.identityByName.getRange({ offset, limit })) {
      const i = this.identities.get(id);
      if (i !== undefined) items.push(i);
    }
    return { items, total: this.identities.getCount() };
  }

  listIdentities(): IdentityRecord[] {
    return [...this.identities.getRange().map((e) => e.value)];
  }

  /** Creates an identity with its enrollments and authenticators atomically. */
  createIdentity(identity: IdentityRecord, enrollments: EnrollmentRecord[], authenticators: AuthenticatorRecord[]): Promise<void> {
    return this.write(() => {
      if (this.identityByName.get(identity.name) !== undefined) {
        throw new EdgeError('ERR_NAME_IN_USE', `an identity named "${identity.name}" already exists`, { details: { field: 'name' } });
      }
      if (identity.externalId !== null && this.identityByExternalId.get(identity.externalId) !== undefined) {
        throw new EdgeError('ERR_NAME_IN_USE', `externalId "${identity.externalId}" is already used by another identity`, { details: { field: 'externalId' } });
      }
      this.checkAuthPolicy(identity);
      for (const a of authenticators) this.checkAuthenticatorFree(a);
      for (const e of enrollments) this.checkEnrollmentFree(e);
      void this.identities.put(identity.id, identity);
      void this.identityByName.put(identity.name, identity.id);
      if (identity.externalId !== null) void this.identityByExternalId.put(identity.externalId, identity.id);
      for (const e of enrollments) this.putEnrollment(e);
      for (const a of authenticators) this.putAuthenticator(a);
    });
  }

  /** Replaces an identity record, keeping the name and externalId indexes right. */
  updateIdentity(next: IdentityRecord): Promise<void> {
    return this.write(() => {
      const prev = this.identities.get(next.id);
      if (prev === undefined) throw new EdgeError('ERR_NOT_FOUND', `identity ${next.id} not found`);
      this.checkAuthPolicy(next);
      if (prev.name !== next.name) {
        if (this.identityByName.get(next.name) !== undefined) {
          throw new EdgeError('ERR_NAME_IN_USE', `an identity named "${next.name}" already exists`, { details: { field: 'name' } });
        }
        void this.identityByName.remove(prev.name);
        void this.identityByName.put(next.name, next.id);
      }
      if (prev.externalId !== next.externalId) {
        if (next.externalId !== null && this.identityByExternalId.get(next.externalId) !== undefined) {
          throw new EdgeError('ERR_NAME_IN_USE', `externalId "${next.externalId}" is already used by another identity`, { details: { field: 'externalId' } });
        }
        if (prev.externalId !== null) void this.identityByExternalId.remove(prev.externalId);
        if (next.externalId !== null) void this.identityByExternalId.put(next.externalId, next.id);
      }
      void this.identities.put(next.id, next);
    });
  }

  /**
   * Deletes an identity and everything hanging off it: API sessions,
   * authenticators, enrollments, MFA configuration, posture data, lockout, and the `@id` selectors
   * of policies that named it. Returns false if absent.
   */
  deleteIdentity(id: string): Promise<boolean> {
    return this.write(() => {
      const identity = this.identities.get(id);
      if (identity === undefined) return false;
      this.removeIdentity(identity);
      return true;
    });
  }

  private removeIdentity(identity: IdentityRecord): void {
    const id = identity.id;
    for (const s of this.sessionsOf(id)) this.removeSessionRecord(s.token);
    for (const a of this.authenticatorsOf(id)) this.removeAuthenticator(a);
    for (const e of this.enrollmentsOf(id)) this.removeEnrollment(e);
    void this.mfa.remove(id);
    void this.postureData.remove(id);
    void this.lockouts.remove(id);
    void this.identityByName.remove(identity.name);
    if (identity.externalId !== null) void this.identityByExternalId.remove(identity.externalId);
    void this.identities.remove(id);
    this.forgetPolicyReferences('identity', id);
  }

  /** Removes `@id` from every policy role list that names `target`s (on delete of what it named). */
  private forgetPolicyReferences(target: RoleTarget, id: string): void {
    const ref = `@${id}`;
    for (const kind of Object.keys(POLICY_ROLE_FIELDS) as PolicyKind[]) {
      const fields = Object.entries(POLICY_ROLE_FIELDS[kind]).filter(([, t]) => t === target).map(([f]) => f);
      if (fields.length === 0) continue;
      const policies = this.policies(kind);
      for (const p of policies.list()) {
        const next: Record<string, unknown> = { ...p };
        for (const f of fields) if (rolesOf(p, f).includes(ref)) next[f] = rolesOf(p, f).filter((r) => r !== ref);
        if (fields.some((f) => next[f] !== rolesOf(p, f))) policies.put({ ...(next as unknown as PolicyRecord), updatedAt: new Date().toISOString() });
      }
    }
  }

  // ---- enrollments ------------------------------------------------------

  listEnrollments(): EnrollmentRecord[] {
    return [...this.enrollments.getRange().map((e) => e.value)];
  }

  enrollmentsOf(identityId: string): EnrollmentRecord[] {
    return this.lookup(this.enrollmentsByIdentity, identityId, this.enrollments);
  }

  private lookup<T>(index: Database<string, string>, identityId: string, records: Database<T, string>): T[] {
    const out: T[] = [];
    for (const key of index.getValues(identityId)) {
      const r = records.get(key);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  enrollmentForToken(token: string): EnrollmentRecord | undefined {
    const id = this.enrollmentByToken.get(token);
    return id === undefined ? undefined : this.enrollments.get(id);
  }

  tokenUse(token: string): UsedTokenRecord | undefined {
    return this.usedTokens.get(token);
  }

  deleteEnrollment(id: string): Promise<boolean> {
    return this.write(() => {
      const e = this.enrollments.get(id);
      if (e === undefined) return false;
      this.removeEnrollment(e);
      return true;
    });
  }

  /**
   * Consumes a one-time enrollment token and adds the authenticator it earns,
   * in one transaction. Fails with ERR_ENROLLMENT_TOKEN_USED if another
   * request consumed the token first, so a token yields one credential only.
   */
  consumeEnrollment(enrollment: EnrollmentRecord, authenticator: AuthenticatorRecord, usedAt: string): Promise<void> {
    return this.write(() => { this.consume(enrollment, authenticator, usedAt); });
  }

  private consume(enrollment: EnrollmentRecord, authenticator: AuthenticatorRecord, usedAt: string): void {
    const current = this.enrollments.get(enrollment.id);
    if (current === undefined || current.token !== enrollment.token) {
      throw new EdgeError('ERR_ENROLLMENT_TOKEN_USED', 'this enrollment token has already been used');
    }
    if (this.identities.get(enrollment.identityId) === undefined) {
      throw new EdgeError('ERR_ENROLLMENT_TOKEN_INVALID', 'the identity of this enrollment no longer exists');
    }
    this.checkAuthenticatorFree(authenticator);
    this.removeEnrollment(current);
    void this.usedTokens.put(current.token, { token: current.token, usedAt, identityId: current.identityId });
    this.putAuthenticator(authenticator);
  }

  private checkEnrollmentFree(e: EnrollmentRecord): void {
    if (this.enrollmentByToken.get(e.token) !== undefined) throw new EdgeError('ERR_CONFLICT', 'enrollment token collision');
    if (this.enrollmentsOf(e.identityId).some((x) => x.method === e.method)) {
      throw new EdgeError('ERR_CONFLICT', `identity already has a pending ${e.method} enrollment`);
    }
  }

  private putEnrollment(e: EnrollmentRecord): void {
    void this.enrollments.put(e.id, e);
    void this.enrollmentByToken.put(e.token, e.id);
    void this.enrollmentsByIdentity.put(e.identityId, e.id);
  }

  private removeEnrollment(e: EnrollmentRecord): void {
    void this.enrollments.remove(e.id);
    void this.enrollmentByToken.remove(e.token);
    void this.enrollmentsByIdentity.remove(e.identityId, e.id);
  }

  // ---- authenticators ---------------------------------------------------

  listAuthenticators(): AuthenticatorRecord[] {
    return [...this.authenticators.getRange().map((e) => e.value)];
  }

  authenticatorsOf(identityId: string): AuthenticatorRecord[] {
    return this.lookup(this.authenticatorsByIdentity, identityId, this.authenticators);
  }

  authenticatorByFingerprint(fingerprint: string): AuthenticatorRecord | undefined {
    const id = this.authByFingerprint.get(fingerprint);
    return id === undefined ? undefined : this.authenticators.get(id);
  }

  authenticatorByUsername(username: string): AuthenticatorRecord | undefined {
    const id = this.authByUsername.get(username);
    return id === undefined ? undefined : this.authenticators.get(id);
  }

  private checkAuthenticatorFree(a: AuthenticatorRecord): void {
    if (a.username !== null && this.authByUsername.get(a.username) !== undefined) {
      throw new EdgeError('ERR_NAME_IN_USE', `username "${a.username}" is already taken`, { details: { field: 'username' } });
    }
    if (a.fingerprint !== null && this.authByFingerprint.get(a.fingerprint) !== undefined) {
      throw new EdgeError('ERR_CONFLICT', 'a certificate with this fingerprint is already registered');
    }
  }

  private putAuthenticator(a: AuthenticatorRecord): void {
    void this.authenticators.put(a.id, a);
    void this.authenticatorsByIdentity.put(a.identityId, a.id);
    if (a.username !== null) void this.authByUsername.put(a.username, a.id);
    if (a.fingerprint !== null) void this.authByFingerprint.put(a.fingerprint, a.id);
  }

  private removeAuthenticator(a: AuthenticatorRecord): void {
    void this.authenticators.remove(a.id);
    void this.authenticatorsByIdentity.remove(a.identityId, a.id);
    if (a.username !== null) void this.authByUsername.remove(a.username);
    if (a.fingerprint !== null) void this.authByFingerprint.remove(a.fingerprint);
  }

  // ---- 3rd-party CAs ----------------------------------------------------

  listCas(): CaRecord[] {
    return [...this.cas.getRange().map((e) => e.value)];
  }

  createCa(ca: CaRecord): Promise<void> {
    return this.write(() => {
      if (this.caByName.get(ca.name) !== undefined) throw new EdgeError('ERR_NAME_IN_USE', `a CA named "${ca.name}" already exists`, { details: { field: 'name' } });
      if (this.listCas().some((c) => c.fingerprint === ca.fingerprint)) throw new EdgeError('ERR_CONFLICT', 'this CA certificate is already registered');
      void this.cas.put(ca.id, ca);
      void this.caByName.put(ca.name, ca.id);
    });
  }

  updateCa(next: CaRecord): Promise<void> {
    return this.write(() => {
      const prev = this.cas.get(next.id);
      if (prev === undefined) throw new EdgeError('ERR_NOT_FOUND', `CA ${next.id} not found`);
      if (prev.name !== next.name) {
        if (this.caByName.get(next.name) !== undefined) throw new EdgeError('ERR_NAME_IN_USE', `a CA named "${next.name}" already exists`, { details: { field: 'name' } });
        void this.caByName.remove(prev.name);
        void this.caByName.put(next.name, next.id);
      }
      void this.cas.put(next.id, next);
    });
  }

  /** Deletes a CA with its pending ottca enrollments and the certificate authenticators it vouched for. */
  deleteCa(id: string): Promise<boolean> {
    return this.write(() => {
      const ca = this.cas.get(id);
      if (ca === undefined) return false;
      for (const e of this.listEnrollments()) if (e.caId === id) this.removeEnrollment(e);
      for (const a of this.listAuthenticators()) if (a.caId === id) this.removeAuthenticator(a);
      void this.caByName.remove(ca.name);
      void this.cas.remove(id);
      return true;
    });
  }

  // ---- edge routers -----------------------------------------------------

  /** Creates an edge router with its identity (same id) and its erott enrollment, atomically. */
  createEdgeRouter(router: EdgeRouterRecord, identity: IdentityRecord, enrollment: EnrollmentRecord): Promise<void> {
    return this.write(() => {
      this.edgeRouters.checkNameFree(router.name);
      if (this.identityByName.get(identity.name) !== undefined) {
        throw new EdgeError('ERR_NAME_IN_USE', `an identity named "${identity.name}" already exists (a router's identity takes its name)`, { details: { field: 'name' } });
      }
      this.checkEnrollmentFree(enrollment);
      void this.identities.put(identity.id, identity);
      void this.identityByName.put(identity.name, identity.id);
      this.edgeRouters.insert(router);
      this.putEnrollment(enrollment);
    });
  }

  /** Replaces an edge router and carries its name and roleAttributes over to its identity. */
  updateEdgeRouter(next: EdgeRouterRecord): Promise<void> {
    return this.write(() => {
      const prev = this.edgeRouters.replace(next);
      const identity = this.identities.get(next.id);
      if (identity === undefined) return;
      if (prev.name !== next.name) {
        if (this.identityByName.get(next.name) !== undefined) {
          throw new EdgeError('ERR_NAME_IN_USE', `an identity named "${next.name}" already exists (a router's identity takes its name)`, { details: { field: 'name' } });
        }
        void this.identityByName.remove(identity.name);
        void this.identityByName.put(next.name, identity.id);
      }
      void this.identities.put(identity.id, { ...identity, name: next.name, roleAttributes: next.roleAttributes, updatedAt: next.updatedAt });
    });
  }

  /** Deletes an edge router and its identity (with everything deleteIdentity removes). */
  deleteEdgeRouter(id: string): Promise<boolean> {
    return this.write(() => {
      const router = this.edgeRouters.get(id);
      if (router === undefined) return false;
      const identity = this.identities.get(id);
      if (identity !== undefined) this.removeIdentity(identity);
      this.edgeRouters.remove(router);
      this.forgetPolicyReferences('edgeRouter', id);
      return true;
    });
  }

  /**
   * Consumes a router's erott token, stores its client certificate as the
   * identity's authenticator and marks the router verified, in one transaction.
   */
  enrollEdgeRouter(enrollment: EnrollmentRecord, authenticator: AuthenticatorRecord, usedAt: string, serverCertPem: string): Promise<void> {
    return this.write(() => {
      const router = this.edgeRouters.get(enrollment.identityId);
      if (router === undefined) throw new EdgeError('ERR_ENROLLMENT_TOKEN_INVALID', 'the edge router of this enrollment no longer exists');
      this.consume(enrollment, authenticator, usedAt);
      this.edgeRouters.put({ ...router, isVerified: true, certPem: authenticator.certPem, fingerprint: authenticator.fingerprint, serverCertPem, updatedAt: usedAt });
    });
  }

  /**
   * Opens a new erott enrollment for a router: its certificate
   * authenticators, API sessions and any pending erott token end now, and
   * it is unverified until it enrolls again.
   */
  reEnrollEdgeRouter(id: string, enrollment: EnrollmentRecord): Promise<void> {
    return this.write(() => {
      const router = this.edgeRouters.get(id);
      if (router === undefined) throw new EdgeError('ERR_NOT_FOUND', `edge router ${id} not found`);
      for (const s of this.sessionsOf(id)) this.removeSessionRecord(s.token);
      for (const a of this.authenticatorsOf(id)) if (a.method === 'cert') this.removeAuthenticator(a);
      for (const e of this.enrollmentsOf(id)) if (e.method === 'erott') this.removeEnrollment(e);
      this.checkEnrollmentFree(enrollment);
      this.putEnrollment(enrollment);
      this.edgeRouters.put({ ...router, isVerified: false, certPem: null, fingerprint: null, serverCertPem: null, updatedAt: enrollment.createdAt });
    });
  }

  // ---- configs, services, service policies ------------------------------

  createConfig(config: ConfigRecord): Promise<void> {
    return this.write(() => { this.configs.insert(config); });
  }

  updateConfig(next: ConfigRecord): Promise<void> {
    return this.write(() => { this.configs.replace(next); });
  }

  /** Deletes a config and takes it off every service that used it. */
  deleteConfig(id: string): Promise<boolean> {
    return this.write(() => {
      const config = this.configs.get(id);
      if (config === undefined) return false;
      for (const s of this.services.list()) {
        if (s.configs.includes(id)) this.services.put({ ...s, configs: s.configs.filter((c) => c !== id), updatedAt: new Date().toISOString() });
      }
      this.configs.remove(config);
      return true;
    });
  }

  /** Checks, inside the transaction, that a service's configs exist and are one per type. */
  private checkServiceConfigs(s: ServiceRecord): void {
    const types = new Map<string, string>();
    for (const id of s.configs) {
      const c = this.configs.get(id);
      if (c === undefined) throw new EdgeError('ERR_NOT_FOUND', `configs: config ${id} not found`, { details: { field: 'configs' } });
      const other = types.get(c.configTypeId);
      if (other !== undefined) throw new EdgeError('ERR_INVALID_ARGUMENT', `configs: "${other}" and "${c.name}" are both of type ${c.configTypeId}; a service takes one config per type`, { details: { field: 'configs' } });
      types.set(c.configTypeId, c.name);
    }
  }

  createService(service: ServiceRecord): Promise<void> {
    return this.write(() => {
      this.checkServiceConfigs(service);
      this.services.insert(service);
    });
  }

  updateService(next: ServiceRecord): Promise<void> {
    return this.write(() => {
      this.checkServiceConfigs(next);
      this.services.replace(next);
    });
  }

  /** Deletes a service and the `@id` selectors of service policies that named it. */
  deleteService(id: string): Promise<boolean> {
    return this.write(() => {
      const service = this.services.get(id);
      if (service === undefined) return false;
      this.services.remove(service);
      this.forgetPolicyReferences('service', id);
      return true;
    });
  }

  /** The collection of one policy kind. */
  policies(kind: PolicyKind): NamedCollection<PolicyRecord> {
    return this[kind] as NamedCollection<PolicyRecord>;
  }

  private exists(target: RoleTarget, id: string): boolean {
    switch (target) {
      case 'identity': return this.identities.get(id) !== undefined;
      case 'service': return this.services.get(id) !== undefined;
      case 'edgeRouter': return this.edgeRouters.get(id) !== undefined;
      case 'postureCheck': return this.postureChecks.get(id) !== undefined;
    }
  }

  /** Checks, inside the transaction, that every `@id` selector names an existing entity. */
  private checkPolicyReferences(kind: PolicyKind, p: PolicyRecord): void {
    for (const [field, target] of Object.entries(POLICY_ROLE_FIELDS[kind])) {
      for (const r of rolesOf(p, field)) {
        if (r.startsWith('@') && !this.exists(target, r.slice(1))) throw new EdgeError('ERR_NOT_FOUND', `${field}: ${TARGET_WHAT[target]} ${r.slice(1)} not found`, { details: { field } });
      }
    }
  }

  createPolicy(kind: PolicyKind, policy: PolicyRecord): Promise<void> {
    return this.write(() => {
      this.checkPolicyReferences(kind, policy);
      this.policies(kind).insert(policy);
    });
  }

  updatePolicy(kind: PolicyKind, next: PolicyRecord): Promise<void> {
    return this.write(() => {
      this.checkPolicyReferences(kind, next);
      this.policies(kind).replace(next);
    });
  }

  deletePolicy(kind: PolicyKind, id: string): Promise<boolean> {
    return this.write(() => {
      const policies = this.policies(kind);
      const p = policies.get(id);
      if (p === undefined) return false;
      policies.remove(p);
      return true;
    });
  }

  // ---- posture checks and posture data ----------------------------------

  createPostureCheck(check: PostureCheckRecord): Promise<void> {
    return this.write(() => { this.postureChecks.insert(check); });
  }

  updatePostureCheck(next: PostureCheckRecord): Promise<void> {
    return this.write(() => { this.postureChecks.replace(next); });
  }

  /** Deletes a posture check and the `@id` selectors of service policies that required it. */
  deletePostureCheck(id: string): Promise<boolean> {
    return this.write(() => {
      const check = this.postureChecks.get(id);
      if (check === undefined) return false;
      this.postureChecks.remove(check);
      this.forgetPolicyReferences('postureCheck', id);
      return true;
    });
  }

  /** Replaces an identity's posture data with `update(previous)`, read and written in one transaction. */
  updatePostureData(identityId: string, update: (prev: PostureDataRecord | undefined) => PostureDataRecord): Promise<void> {
    return this.write(() => {
      if (this.identities.get(identityId) === undefined) throw new EdgeError('ERR_UNAUTHORIZED', 'the identity of this API session no longer exists');
      void this.postureData.put(identityId, update(this.postureData.get(identityId)));
    });
  }

  // ---- auth policies and lockouts ----------------------------------------

  private checkAuthPolicy(identity: IdentityRecord): void {
    if (this.authPolicies.get(identity.authPolicyId) === undefined) {
      throw new EdgeError('ERR_NOT_FOUND', `authPolicyId: auth policy ${identity.authPolicyId} not found`, { details: { field: 'authPolicyId' } });
    }
  }

  /** Stores `policy` unless a policy with its id exists (the built-in default, on every start). */
  ensureAuthPolicy(policy: AuthPolicyRecord): Promise<void> {
    return this.write(() => { if (this.authPolicies.get(policy.id) === undefined) this.authPolicies.insert(policy); });
  }

  createAuthPolicy(policy: AuthPolicyRecord): Promise<void> {
    return this.write(() => { this.authPolicies.insert(policy); });
  }

  updateAuthPolicy(next: AuthPolicyRecord): Promise<void> {
    return this.write(() => { this.authPolicies.replace(next); });
  }

  /** Deletes an auth policy no identity uses; the built-in default stays. */
  deleteAuthPolicy(id: string): Promise<boolean> {
    return this.write(() => {
      const policy = this.authPolicies.get(id);
      if (policy === undefined) return false;
      if (id === 'default') throw new EdgeError('ERR_CONFLICT', 'the default auth policy cannot be deleted');
      const users = this.listIdentities().filter((i) => i.authPolicyId === id).map((i) => i.name);
      if (users.length > 0) {
        const shown = users.slice(0, 5).map((n) => `"${n}"`).join(', ') + (users.length > 5 ? ', …' : '');
        throw new EdgeError('ERR_CONFLICT', `auth policy "${policy.name}" is used by ${users.length} identit${users.length === 1 ? 'y' : 'ies'} (${shown}); give them another policy first`);
      }
      this.authPolicies.remove(policy);
      return true;
    });
  }

  /**
   * Counts a failed password login; at `maxAttempts` (> 0) the identity is
   * locked for `lockoutDurationMinutes` (0: until enabled). A lock that has
   * run out starts the count afresh. Returns the record as stored.
   */
  recordLoginFailure(identityId: string, maxAttempts: number, lockoutDurationMinutes: number, now: Date): Promise<LockoutRecord> {
    return this.write(() => {
      const prev = this.lockouts.get(identityId);
      const base = prev === undefined || (prev.lockedAt !== null && !isLocked(prev, now.getTime())) ? { identityId, failedAttempts: 0, lockedAt: null, lockedUntil: null } : prev;
      let next: LockoutRecord = { ...base, failedAttempts: base.failedAttempts + 1 };
      if (next.failedAttempts >= maxAttempts) {
        const until = lockoutDurationMinutes > 0 ? new Date(now.getTime() + lockoutDurationMinutes * 60_000).toISOString() : null;
        next = { identityId, failedAttempts: 0, lockedAt: now.toISOString(), lockedUntil: until };
      }
      void this.lockouts.put(identityId, next);
      return next;
    });
  }

  /** Forgets failed logins and any lock (a successful login, or an admin enabling the identity). */
  clearLockout(identityId: string): Promise<void> {
    return this.write(() => { void this.lockouts.remove(identityId); });
  }

  /** Clears an identity's lock and its disabled flag (POST /identities/ID/enable). */
  /** Disables an identity (OpenZiti's disable with durationMinutes 0): its API sessions end, routers refuse it once they hear. */
  disableIdentity(id: string, at: string): Promise<boolean> {
    return this.write(() => {
      const identity = this.identities.get(id);
      if (identity === undefined) return false;
      for (const session of this.sessionsOf(id)) this.removeSessionRecord(session.token);
      if (!identity.disabled) void this.identities.put(id, { ...identity, disabled: true, updatedAt: at });
      return true;
    });
  }

  enableIdentity(id: string, at: string): Promise<boolean> {
    return this.write(() => {
      const identity = this.identities.get(id);
      if (identity === undefined) return false;
      void this.lockouts.remove(id);
      if (identity.disabled) void this.identities.put(id, { ...identity, disabled: false, updatedAt: at });
      return true;
    });
  }

  /** Replaces an authenticator (a new password hash); its username and fingerprint stay. */
  updateAuthenticator(next: AuthenticatorRecord): Promise<void> {
    return this.write(() => {
      const prev = this.authenticators.get(next.id);
      if (prev === undefined) throw new EdgeError('ERR_NOT_FOUND', `authenticator ${next.id} not found`);
      void this.authenticators.put(next.id, { ...next, username: prev.username, fingerprint: prev.fingerprint });
    });
  }

  // ---- API sessions -----------------------------------------------------

  sessionsOf(identityId: string): ApiSessionRecord[] {
    return this.lookup(this.sessionsByIdentity, identityId, this.apiSessions);
  }

  countSessions(): number {
    return this.apiSessions.getCount();
  }

  /** Stores a new session, refusing it if its identity was deleted meanwhile. */
  putSession(s: ApiSessionRecord): Promise<void> {
    return this.write(() => {
      if (this.identities.get(s.identityId) === undefined) throw new EdgeError('ERR_INVALID_AUTH', 'identity no longer exists');
      void this.apiSessions.put(s.token, s);
      void this.sessionsByIdentity.put(s.identityId, s.token);
    });
  }

  private removeSessionRecord(token: string): void {
    const s = this.apiSessions.get(token);
    if (s === undefined) return;
    void this.apiSessions.remove(token);
    void this.sessionsByIdentity.remove(s.identityId, token);
  }

  /**
   * Activity updates are best-effort: not flushed before the request
   * proceeds. Only lastActivityAt changes (read and written in one
   * transaction), so a concurrent change to the session (MFA passed) stays.
   */
  touchSession(token: string, lastActivityAt: string): void {
    this.root.childTransaction(() => {
      const s = this.apiSessions.get(token);
      if (s !== undefined) void this.apiSessions.put(token, { ...s, lastActivityAt });
    }).catch(() => undefined);
  }

  // ---- MFA ----------------------------------------------------------------

  /** Starts (or restarts) an identity's MFA enrollment; refused once it is verified. */
  startMfa(rec: MfaRecord): Promise<void> {
    return this.write(() => {
      if (this.identities.get(rec.identityId) === undefined) throw new EdgeError('ERR_UNAUTHORIZED', 'the identity of this API session no longer exists');
      if (this.mfa.get(rec.identityId)?.isVerified === true) throw new EdgeError('ERR_CONFLICT', 'MFA is already enrolled for this identity: remove it first (DELETE /current-identity/mfa with a code)');
      void this.mfa.put(rec.identityId, rec);
    });
  }

  /**
   * Spends one second-factor proof of an identity and applies it, in one
   * transaction: a TOTP `step` must be newer than the last one accepted (a
   * code works once), a recovery code is removed. Then `verify` completes
   * the enrollment, `recoveryCodes` replaces the recovery codes, `remove`
   * deletes the MFA configuration, and `sessionToken` marks that session as
   * having passed MFA at `at`.
   */
  spendMfaProof(
    identityId: string,
    proof: { step: number } | { recoveryCode: string },
    effect: { verify?: boolean; recoveryCodes?: string[]; remove?: boolean; sessionToken?: string },
    at: string,
  ): Promise<void> {
    return this.write(() => {
      const rec = this.mfa.get(identityId);
      if (rec === undefined) throw new EdgeError('ERR_NOT_FOUND', 'MFA is not enrolled for this identity');
      const next: MfaRecord = { ...rec, updatedAt: at };
      if ('step' in proof) {
        if (proof.step <= rec.lastStep) throw new EdgeError('ERR_MFA_INVALID_CODE', 'this code has already been used: wait for the next one');
        next.lastStep = proof.step;
      } else {
        if (!rec.recoveryCodes.includes(proof.recoveryCode)) throw new EdgeError('ERR_MFA_INVALID_CODE', 'the code is neither the current TOTP code nor an unused recovery code');
        next.recoveryCodes = rec.recoveryCodes.filter((c) => c !== proof.recoveryCode);
      }
      if (effect.verify === true) next.isVerified = true;
      if (effect.recoveryCodes !== undefined) next.recoveryCodes = effect.recoveryCodes;
      if (effect.remove === true) void this.mfa.remove(identityId);
      else void this.mfa.put(identityId, next);
      const s = effect.sessionToken === undefined ? undefined : this.apiSessions.get(effect.sessionToken);
      if (s !== undefined) void this.apiSessions.put(s.token, { ...s, mfaPassedAt: at, mfaFailures: 0 });
    });
  }

  /** Counts a wrong MFA code on a session; at `max` the session ends. Returns true if it ended. */
  recordMfaFailure(token: string, max: number): Promise<boolean> {
    return this.write(() => {
      const s = this.apiSessions.get(token);
      if (s === undefined) return true;
      const failures = (s.mfaFailures ?? 0) + 1;
      if (failures < max) {
        void this.apiSessions.put(token, { ...s, mfaFailures: failures });
        return false;
      }
      this.removeSessionRecord(token);
      return true;
    });
  }

  /** Removes an identity's MFA (an admin, when the authenticator app is lost). Returns false if there was none. */
  deleteMfa(identityId: string): Promise<boolean> {
    return this.write(() => {
      if (this.mfa.get(identityId) === undefined) return false;
      void this.mfa.remove(identityId);
      return true;
    });
  }

  removeSession(token: string): Promise<void> {
    return this.write(() => { this.removeSessionRecord(token); });
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
