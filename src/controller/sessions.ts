/**
 * API sessions: a random token sent back as the `zt-session` header. Records
 * live in the store (they survive a controller restart); a session expires
 * after an idle period, and ends at once when its identity is deleted.
 *
 * A session whose identity must pass MFA (mfaRequired) is partially
 * authenticated until it does: `resolve` refuses it (ERR_MFA_REQUIRED)
 * except where the caller asks for `{ partial: true }` (the MFA calls and
 * the current session itself).
 */
import { EdgeError } from '../errors.js';
import { newId, newToken } from './ids.js';
import type { ApiSessionRecord, IdentityRecord, Store } from './store.js';

/** Activity is written back at most this often per session. */
const TOUCH_INTERVAL_MS = 60_000;

export interface ResolvedSession {
  session: ApiSessionRecord;
  identity: IdentityRecord;
}

export class Sessions {
  constructor(private readonly store: Store, private readonly idleMs: number) {}

  async create(identityId: string, authenticatorId: string, ipAddress: string, now: Date, mfaRequired = false): Promise<ApiSessionRecord> {
    const iso = now.toISOString();
    const record: ApiSessionRecord = { id: newId(), token: newToken(), identityId, authenticatorId, ipAddress, createdAt: iso, lastActivityAt: iso, mfaRequired, mfaPassedAt: null, mfaFailures: 0 };
    await this.store.putSession(record);
    return record;
  }

  expiresAt(s: ApiSessionRecord): Date {
    return new Date(Date.parse(s.lastActivityAt) + this.idleMs);
  }

  /**
   * Resolves a token to its live session and identity, or throws
   * ERR_UNAUTHORIZED (ERR_MFA_REQUIRED for a partial session unless
   * `partial` is allowed). Expired sessions are removed on sight.
   */
  resolve(token: string | undefined, now: Date, opts: { partial?: boolean } = {}): ResolvedSession {
    if (token === undefined || token === '') throw new EdgeError('ERR_UNAUTHORIZED', 'no zt-session header: authenticate first');
    const session = this.store.apiSessions.get(token);
    if (session === undefined) throw new EdgeError('ERR_UNAUTHORIZED', 'the API session is unknown or has ended');
    const identity = this.store.identities.get(session.identityId);
    if (identity === undefined) {
      void this.store.removeSession(token);
      throw new EdgeError('ERR_UNAUTHORIZED', 'the API session is unknown or has ended');
    }
    const last = Date.parse(session.lastActivityAt);
    if (now.getTime() - last > this.idleMs) {
      void this.store.removeSession(token);
      throw new EdgeError('ERR_UNAUTHORIZED', 'the API session has expired');
    }
    if (opts.partial !== true && session.mfaRequired === true && session.mfaPassedAt == null) {
      throw new EdgeError('ERR_MFA_REQUIRED', 'this API session has not passed MFA yet: POST /authenticate/mfa {"code": "…"} first (or enroll: POST /current-identity/mfa)');
    }
    if (now.getTime() - last > TOUCH_INTERVAL_MS) {
      const touched = { ...session, lastActivityAt: now.toISOString() };
      this.store.touchSession(touched.token, touched.lastActivityAt);
      return { session: touched, identity };
    }
    return { session, identity };
  }

  end(token: string): Promise<void> {
    return this.store.removeSession(token);
  }
}
