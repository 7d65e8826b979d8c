/**
 * Time-based one-time passwords for MFA: TOTP (RFC 6238) over HOTP
 * (RFC 4226) with HMAC-SHA-1, 6 digits and 30-second steps, the parameters
 * every authenticator app assumes when an otpauth:// URL names no others.
 * Pure: the time is a parameter; the caller draws the secret and keeps the
 * last step it accepted (RFC 6238 §5.2: a code is accepted once).
 *
 *   secret (20 random bytes) ──► base32 ──► otpauth://totp/ISSUER:ACCOUNT?secret=…  (the app)
 *   now ──► T = floor(now / 30 s) ──► HOTP(secret, T) ──► 6 digits
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** RFC 6238 §4.1: X, the time step, in seconds (T0 = 0, the Unix epoch). */
export const TOTP_STEP_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps accepted either side of now (RFC 6238 §5.2: at most one is recommended), for clock drift and typing time. */
export const TOTP_WINDOW_STEPS = 1;

export type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512';

/**
 * HOTP (RFC 4226 §5.3): HMAC of the 8-byte big-endian counter, dynamic
 * truncation to 31 bits, the low `digits` decimal digits.
 *
 * @example hotp(Buffer.from('12345678901234567890'), 0) // '755224' (RFC 4226 Appendix D)
 */
export function hotp(key: Buffer, counter: number, digits = TOTP_DIGITS, algorithm: TotpAlgorithm = 'sha1'): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, key).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** The time step of `nowMs` (RFC 6238 §4.2: T = floor((now - T0) / X)). */
export function totpStep(nowMs: number, stepSeconds = TOTP_STEP_SECONDS): number {
  return Math.floor(nowMs / 1000 / stepSeconds);
}

/** The code of the step `nowMs` falls in. */
export function totp(key: Buffer, nowMs: number, opts: { digits?: number; stepSeconds?: number; algorithm?: TotpAlgorithm } = {}): string {
  return hotp(key, totpStep(nowMs, opts.stepSeconds), opts.digits, opts.algorithm);
}

/**
 * The step within ±TOTP_WINDOW_STEPS of `nowMs` whose code is `code`, or
 * undefined. The caller refuses a step at or before the last one it
 * accepted, so a code works once.
 */
export function matchTotp(key: Buffer, code: string, nowMs: number): number | undefined {
  if (code.length !== TOTP_DIGITS || !/^\d+$/.test(code)) return undefined;
  const now = totpStep(nowMs);
  const given = Buffer.from(code);
  let found: number | undefined;
  // Every candidate is computed and compared in constant time, so timing tells nothing about which matched.
  for (let step = now - TOTP_WINDOW_STEPS; step <= now + TOTP_WINDOW_STEPS; step++) {
    if (timingSafeEqual(Buffer.from(hotp(key, step)), given)) found ??= step;
  }
  return found;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 §6 base32, without padding (as otpauth:// URLs carry secrets). */
export function base32Encode(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** RFC 4648 §6 base32 (case-insensitive, padding and spaces ignored); throws on other characters. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[=\s]/g, '').toUpperCase();
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of clean) {
    const v = BASE32.indexOf(c);
    if (v < 0) throw new RangeError(`"${c}" is not a base32 character`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
    value &= (1 << bits) - 1;
  }
  return Buffer.from(out);
}

/**
 * The otpauth:// URL an authenticator app scans (Google Authenticator's
 * "Key Uri Format"): label `ISSUER:ACCOUNT`, the base32 secret, and the
 * parameters spelled out.
 */
export function provisioningUrl(secret: Buffer, issuer: string, account: string): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  return `otpauth://totp/${label}?secret=${base32Encode(secret)}&issuer=${encodeURIComponent(issuer)}&algorithm=SHA1&digits=${TOTP_DIGITS}&period=${TOTP_STEP_SECONDS}`;
}
