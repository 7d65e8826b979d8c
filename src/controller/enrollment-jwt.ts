/**
 * Enrollment JWTs, wire-compatible with OpenZiti: signed with the
 * controller's TLS server key, `kid` = hex SHA-1 of the server certificate,
 * so a client holding only the JWT can tell the real controller from an
 * impostor by checking the JWT with the key of the certificate it is shown.
 *
 * Claims: em (method), iss (https://host:port), sub (identity id), jti (the
 * one-time token), exp, aud [""] (OpenZiti's quirk), ctrls (controller URLs).
 */
import { SignJWT } from 'jose';
import type { KeyObject } from 'node:crypto';

export interface EnrollmentClaims {
  method: string;
  issuer: string;
  subject: string;
  token: string;
  expiresAt: Date;
}

/** JWS algorithm for a key: ES256/384/512 by curve, RS256 for RSA. */
export function jwsAlgorithmFor(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  switch (key.asymmetricKeyDetails?.namedCurve) {
    case 'secp384r1': return 'ES384';
    case 'secp521r1': return 'ES512';
    default: return 'ES256';
  }
}

export function signEnrollmentJwt(claims: EnrollmentClaims, key: KeyObject, kid: string): Promise<string> {
  return new SignJWT({ em: claims.method, aud: [''], ctrls: [claims.issuer] })
    .setProtectedHeader({ alg: jwsAlgorithmFor(key), kid, typ: 'JWT' })
    .setIssuer(claims.issuer)
    .setSubject(claims.subject)
    .setJti(claims.token)
    .setExpirationTime(Math.floor(claims.expiresAt.getTime() / 1000))
    .sign(key);
}
