/** EST `/cacerts` (RFC 7030 §4.1.3): base64 DER PKCS#7 certs-only → PEM certificates. */
import { EdgeError } from '../errors.js';
import { x509 } from '../keys/x509.js';

export function pemBundleFromCacerts(base64: string): string {
  const der = Buffer.from(base64.replace(/\s+/g, ''), 'base64');
  let certs: x509.X509Certificates;
  try {
    certs = new x509.X509Certificates(der);
  } catch (err) {
    throw new EdgeError('ERR_TRUST_BOOTSTRAP', `the controller's /.well-known/est/cacerts is not a PKCS#7 bundle: ${(err as Error).message}`, { cause: err });
  }
  if (certs.length === 0) throw new EdgeError('ERR_TRUST_BOOTSTRAP', 'the controller\'s CA bundle is empty');
  return certs.map((c) => c.toString('pem').trim() + '\n').join('');
}
