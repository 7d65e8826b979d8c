/**
 * Exporter-bound proof of possession: after a server-authenticated TLS 1.3
 * handshake, the client signs the connection's exported keying material
 * (RFC 5705 / RFC 8446 §7.5) with its KeyStore key and sends the signature
 * with its certificate. The server derives the same value from its side of
 * the connection and checks the signature with the certificate's key.
 *
 * Why: a key in a TPM or HSM cannot sign inside Node's TLS handshake without
 * a deprecated OpenSSL engine; this works with any KeyStore. The exported
 * value is unique to the connection, so a signature replayed on another
 * connection does not verify.
 */
import { createPublicKey, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { KeyStore } from './types.js';

export const EXPORTER_LABEL = 'EXPORTER-ztedge-client-auth-v1';
export const EXPORTER_LENGTH = 32;
/** Domain separation: the signed message can never be mistaken for another signed object. */
const CONTEXT = Buffer.from('ztedge client auth v1\0', 'latin1');

/** Header names carrying the proof on HTTPS requests. */
export const PROOF_CERT_HEADER = 'x-ztedge-client-cert';
export const PROOF_SIGNATURE_HEADER = 'x-ztedge-client-proof';

export function proofMessage(ekm: Buffer): Buffer {
  const out = Buffer.allocUnsafe(CONTEXT.length + ekm.length);
  CONTEXT.copy(out, 0);
  ekm.copy(out, CONTEXT.length);
  return out;
}

export function exportedKeyingMaterial(socket: TLSSocket): Buffer {
  return socket.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0));
}

/** Client side: signs this connection's exporter value with `key`. */
export function signExporterProof(socket: TLSSocket, key: KeyStore): Promise<Buffer> {
  return key.sign(proofMessage(exportedKeyingMaterial(socket)));
}

/**
 * Server side: true if `signature` is `cert`'s key signing this connection's
 * exporter value. Checks possession only: the caller decides whether the
 * certificate itself is trusted.
 */
export function verifyExporterProof(socket: TLSSocket, cert: X509Certificate, signature: Buffer): boolean {
  const key = createPublicKey(cert.publicKey.export({ type: 'spki', format: 'pem' }));
  const hash = key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
  try {
    return cryptoVerify(hash, proofMessage(exportedKeyingMaterial(socket)), { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}
