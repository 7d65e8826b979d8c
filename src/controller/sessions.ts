/**
 * API sessions: a random token sent back as the `zt-session` header. Records
 * live in the store (they survive a controller restart); a session expires
 * after an idle period, and ends at once when its identity is deleted.
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

  async create(identityId: string, authenticatorId: string, ipAddress: string, now: Date): Promise<ApiSessionRecord> {
    const iso = now.toISOString();
    const record: ApiSessionRecord = { id: newId(), token: newToken(), identityId, authenticatorId, ipAddress, createdAt: iso, lastActivityAt: iso };
    await this.store.putSession(record);
    return record;
  }

  expiresAt(s: ApiSessionRecord): Date {
    return new Date(Date.parse(s.lastActivityAt) + this.idleMs);
  }

  /**
   * Resolves a token to its live session and identity, or throws
   * ERR_UNAUTHORIZED. Expired sessions are removed on sight.
   */
  resolve(token: string | undefined, now: Date): ResolvedSession {
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
    if (now.getTime() - last > TOUCH_INTERVAL_MS) {
      const touched = { ...session, lastActivityAt: now.toISOString() };
      this.store.touchSession(touched);
      return { session: touched, identity };
    }
    return { session, identity };
  }

  end(token: string): Promise<void> {
    return this.store.removeSession(token);
  }
}
