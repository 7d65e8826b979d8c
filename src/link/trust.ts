/**
 * Who is on the other end of a link: certificate checks against the
 * controller's CA bundle, pure functions over DER/PEM (no I/O).
 */
import { X509Certificate } from 'node:crypto';

/** Splits a PEM bundle into certificates. */
export function parsePemBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/**
 * The identity id (certificate CN) of `leaf` if it was issued by one of the
 * CA certificates in `cas` and is valid at `now`; otherwise a reason.
 * Identity certificates are issued directly by the signing intermediate, so
 * one hop is all a link needs to check.
 */
export function identityOf(leaf: X509Certificate, cas: readonly X509Certificate[], now: number): { id: string } | { reason: string } {
  if (Date.parse(leaf.validFrom) > now) return { reason: 'certificate not yet valid' };
  if (Date.parse(leaf.validTo) < now) return { reason: 'certificate expired' };
  if (leaf.ca) return { reason: 'a CA certificate cannot be a link identity' };
  const issuer = cas.find((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
  if (issuer === undefined) return { reason: 'certificate not issued by the controller CA' };
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(leaf.subject)?.[1];
  if (cn === undefined || cn === '') return { reason: 'certificate has no common name' };
  return { id: cn };
}
