/** What every route of the controller gets: the store, the PKI, settings and the session service. */
import type { Logger } from '../log/index.js';
import type { Pki } from './pki.js';
import type { Sessions } from './sessions.js';
import type { Store } from './store.js';

export interface ControllerSettings {
  /** Public URL of the API, `https://host:port`: the `iss` of enrollment JWTs. */
  issuer: string;
  /** Lifetime of a one-time enrollment token. */
  enrollmentDurationMs: number;
  /** Validity of issued identity certificates. */
  certValidityDays: number;
  /** Idle time after which an API session expires. */
  sessionIdleMs: number;
  /** How long a router may authorize from a policy snapshot without hearing from the controller (its notAfter). */
  policyOfflineWindowMs: number;
}

export interface ControllerContext {
  readonly store: Store;
  readonly pki: Pki;
  readonly sessions: Sessions;
  readonly settings: ControllerSettings;
  readonly log: Logger;
}
