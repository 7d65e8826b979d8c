/**
 * Checks of certificates issued by registered 3rd-party CAs (SPIRE, a
 * plant's own CA, …). The TLS server trusts only our own CA bundle, so such
 * client certificates arrive unverified and are checked here: the presented
 * chain must lead, within a few intermediates, to the registered CA's key,
 * and every certificate on the way must be within its validity period.
 */
import { X509Certificate } from 'node:crypto';
import { EdgeError } from '../errors.js';

const MAX_CHAIN = 5;

function current(cert: X509Certificate, now: Date): boolean {
  return Date.parse(cert.validFrom) <= now.getTime() && now.getTime() <= Date.parse(cert.validTo);
}

/**
 * True if `chain` (leaf first, as DER) was issued, directly or through the
 * intermediates that follow it, by the CA certificate `caPem`.
 */
export function chainsToCa(chain: Buffer[], caPem: string, now: Date): boolean {
  const ca = new X509Certificate(caPem);
  if (!current(ca, now)) return false;
  const certs = chain.slice(0, MAX_CHAIN).map((der) => new X509Certificate(der));
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i]!;
    if (!current(c, now)) return false;
    if (c.checkIssued(ca) && c.verify(ca.publicKey)) return true;
    const next = certs[i + 1];
    if (next === undefined || !next.ca || !c.checkIssued(next) || !c.verify(next.publicKey)) return false;
  }
  return false;
}

/** Parses a PEM that must be one CA certificate. */
export function parseCaCertificate(pem: string): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new EdgeError('ERR_INVALID_ARGUMENT', `certPem is not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  if (!cert.ca) throw new EdgeError('ERR_INVALID_ARGUMENT', 'certPem is not a CA certificate (basicConstraints CA:TRUE is required)');
  return cert;
}
