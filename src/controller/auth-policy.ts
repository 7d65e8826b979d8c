/**
 * Authentication policies applied: which primary method an identity may
 * log in with, the updb password rules, and the built-in default policy.
 * Routes call these at `POST /authenticate` (auth.ts), at updb enrollment
 * (enroll.ts) and when a password changes.
 */
import { EdgeError } from '../errors.js';
import type { ControllerContext } from './context.js';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from './passwords.js';
import type { AuthPolicyRecord, IdentityRecord } from './store.js';

export const DEFAULT_AUTH_POLICY_ID = 'default';

/**
 * The built-in policy every identity starts with: OpenZiti's default
 * (every primary method, passwords of 5 or more characters, no lockout, no
 * second factor), except that expired certificates are refused, as ztedge
 * always did; an admin may change that on the policy.
 */
export function defaultAuthPolicy(at: string): AuthPolicyRecord {
  return {
    id: DEFAULT_AUTH_POLICY_ID,
    name: 'Default',
    primary: {
      cert: { allowed: true, allowExpiredCerts: false },
      extJwt: { allowed: true, allowedSigners: [] },
      updb: { allowed: true, minPasswordLength: MIN_PASSWORD_LENGTH, requireMixedCase: false, requireNumberChar: false, requireSpecialChar: false, maxAttempts: 0, lockoutDurationMinutes: 0 },
    },
    secondary: { requireTotp: false, requireExtJwtSigner: null },
    tags: {},
    createdAt: at,
    updatedAt: at,
  };
}

/** The identity's policy; the default when its policy is gone (a store the checks on write never let happen). */
export function authPolicyOf(ctx: ControllerContext, identity: IdentityRecord): AuthPolicyRecord {
  return ctx.store.authPolicies.get(identity.authPolicyId) ?? ctx.store.authPolicies.get(DEFAULT_AUTH_POLICY_ID) ?? defaultAuthPolicy(identity.createdAt);
}

/** Refuses a primary method the identity's policy does not allow (ERR_AUTH_METHOD_NOT_ALLOWED). */
export function requireMethodAllowed(policy: AuthPolicyRecord, identity: IdentityRecord, method: 'cert' | 'updb'): void {
  if (policy.primary[method].allowed) return;
  const what = method === 'cert' ? 'certificate (method=cert)' : 'password (method=password)';
  throw new EdgeError('ERR_AUTH_METHOD_NOT_ALLOWED', `the auth policy "${policy.name}" of identity "${identity.name}" does not allow ${what} authentication`);
}

/** Refuses a new updb password that breaks the policy's rules, naming every rule it breaks (ERR_PASSWORD_POLICY). */
export function checkPasswordRules(policy: AuthPolicyRecord, password: string): void {
  const rules = policy.primary.updb;
  const min = Math.max(rules.minPasswordLength, MIN_PASSWORD_LENGTH);
  const broken: string[] = [];
  if (password.length < min || password.length > MAX_PASSWORD_LENGTH) broken.push(`have ${min} to ${MAX_PASSWORD_LENGTH} characters`);
  if (rules.requireMixedCase && !(/[a-z]/.test(password) && /[A-Z]/.test(password))) broken.push('mix lower- and upper-case letters');
  if (rules.requireNumberChar && !/[0-9]/.test(password)) broken.push('contain a digit');
  if (rules.requireSpecialChar && !/[^A-Za-z0-9]/.test(password)) broken.push('contain a character that is neither a letter nor a digit');
  if (broken.length > 0) throw new EdgeError('ERR_PASSWORD_POLICY', `the password must ${broken.join(', ')} (auth policy "${policy.name}")`);
}
