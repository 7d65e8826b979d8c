/**
 * Errors of ztedge: one base class with a stable `code`, so callers branch on
 * `err.code` (never on message text or `instanceof` across bundles), and one
 * table that maps control-plane codes to HTTP statuses.
 *
 * Every code here is documented in docs/errors.md; a unit test fails if one
 * is missing there.
 */

/** HTTP status for each control-plane code. The only place statuses are chosen. */
const HTTP_STATUS = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_COULD_NOT_PARSE_BODY: 400,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_NOT_FOUND: 404,
  ERR_UNAUTHORIZED: 401,
  ERR_INVALID_AUTH: 401,
  ERR_AUTH_METHOD_NOT_ALLOWED: 401,
  ERR_AUTH_LOCKED: 401,
  ERR_MFA_REQUIRED: 401,
  ERR_MFA_INVALID_CODE: 401,
  ERR_FORBIDDEN: 403,
  ERR_NAME_IN_USE: 409,
  ERR_CONFLICT: 409,
  ERR_ENROLLMENT_TOKEN_INVALID: 400,
  ERR_ENROLLMENT_TOKEN_USED: 410,
  ERR_ENROLLMENT_EXPIRED: 410,
  ERR_ENROLLMENT_METHOD: 400,
  ERR_CSR_INVALID: 400,
  ERR_CSR_WEAK_KEY: 400,
  ERR_PASSWORD_POLICY: 400,
  ERR_STORE: 500,
  ERR_INTERNAL: 500,
} as const;

/** Codes raised by local tooling (CLI, client side, daemons); they never cross HTTP as a status. */
const LOCAL_CODES = [
  'ERR_CONFIG',
  'ERR_USAGE',
  'ERR_IDENTITY_FILE',
  'ERR_JWT_INVALID',
  'ERR_TRUST_BOOTSTRAP',
  'ERR_REMOTE',
  'ERR_CONNECT',
  'ERR_KEY',
  'ERR_PKI',
  'ERR_POLICY_SNAPSHOT',
  'ERR_POLICY_SIGNATURE',
  'ERR_TUN',
  'ERR_DNS',
] as const;

export type HttpErrorCode = keyof typeof HTTP_STATUS;
export type LocalErrorCode = (typeof LOCAL_CODES)[number];
export type ErrorCode = HttpErrorCode | LocalErrorCode;

export const ALL_ERROR_CODES: readonly ErrorCode[] = [
  ...(Object.keys(HTTP_STATUS) as HttpErrorCode[]),
  ...LOCAL_CODES,
];

/** Base of every error ztedge raises on purpose. */
export class EdgeError extends Error {
  readonly code: ErrorCode;
  /** Extra, safe-to-show facts (never secrets). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EdgeError';
    this.code = code;
    this.details = opts?.details;
  }
}

/** Error answered by a remote ztedge/OpenZiti API: keeps the server's code and status. */
export class RemoteError extends EdgeError {
  readonly status: number;
  readonly remoteCode: string;
  constructor(status: number, remoteCode: string, message: string) {
    super('ERR_REMOTE', `${remoteCode}: ${message} (HTTP ${status})`, { details: { status, remoteCode } });
    this.name = 'RemoteError';
    this.status = status;
    this.remoteCode = remoteCode;
  }
}

export function isEdgeError(err: unknown): err is EdgeError {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    && (err as Error).name !== undefined && ALL_ERROR_CODES.includes((err as EdgeError).code);
}

/** HTTP status to answer for an error code; local codes and unknown errors are 500. */
export function httpStatusOf(code: string): number {
  // Own keys only: "constructor" and friends would otherwise answer with an Object.prototype member.
  return Object.hasOwn(HTTP_STATUS, code) ? (HTTP_STATUS as Record<string, number>)[code]! : 500;
}
