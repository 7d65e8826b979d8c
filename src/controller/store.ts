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

export type EnrollmentMethod = 'ott' | 'ottca' | 'updb';

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

export interface MfaRecord { identityId: string; secret: string; isVerified: boolean; createdAt: string }

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

  constructor(dir: string) {
    const path = join(dir, 'db');
    mkdirSync(path, { recursive: true, mode: 0o700 });
    try {
      this.root = open({ path, maxDbs: 32, compression: false });
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
    return result;
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
   * authenticators, enrollments, MFA configuration. Returns false if absent.
   */
  deleteIdentity(id: string): Promise<boolean> {
    return this.write(() => {
      const identity = this.identities.get(id);
      if (identity === undefined) return false;
      for (const s of this.sessionsOf(id)) this.removeSessionRecord(s.token);
      for (const a of this.authenticatorsOf(id)) this.removeAuthenticator(a);
      for (const e of this.enrollmentsOf(id)) this.removeEnrollment(e);
      void this.mfa.remove(id);
      void this.identityByName.remove(identity.name);
      if (identity.externalId !== null) void this.identityByExternalId.remove(identity.externalId);
      void this.identities.remove(id);
      return true;
    });
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
    return this.write(() => {
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
    });
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

  /** Activity updates are best-effort: not flushed before the request proceeds. */
  touchSession(s: ApiSessionRecord): void {
    void this.apiSessions.put(s.token, s);
  }

  removeSession(token: string): Promise<void> {
    return this.write(() => { this.removeSessionRecord(token); });
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
