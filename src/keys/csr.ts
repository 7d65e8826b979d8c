/**
 * Certificate signing requests made with any KeyStore. @peculiar/x509 asks a
 * WebCrypto object for two things only (export the public key, sign the
 * to-be-signed bytes), so a small shim routes both to the KeyStore: the
 * private key never has to be a WebCrypto key, and never leaves its store.
 */
import { x509 } from './x509.js';
import type { KeyAlgorithm, KeyStore } from './types.js';

/** WebCrypto algorithm parameters matching a key algorithm (signature hash SHA-256). */
export function webAlgorithmOf(alg: KeyAlgorithm): { name: string; namedCurve?: string; hash?: string } {
  switch (alg) {
    case 'ec-p256': return { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    case 'ec-p384': return { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-256' };
    case 'ed25519': return { name: 'Ed25519' };
    default: return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

interface ShimKey { readonly algorithm: Record<string, unknown>; readonly type: 'public' | 'private'; readonly store: KeyStore }

/** A minimal WebCrypto stand-in that signs through a KeyStore. */
function shimCrypto(): Crypto {
  const subtle = {
    exportKey(format: string, key: ShimKey): Promise<ArrayBuffer> {
      if (format !== 'spki') return Promise.reject(new Error(`shim exports spki only, not ${format}`));
      const spki = key.store.publicKeySpki();
      return Promise.resolve(spki.buffer.slice(spki.byteOffset, spki.byteOffset + spki.byteLength) as ArrayBuffer);
    },
    async sign(_alg: unknown, key: ShimKey, data: ArrayBuffer | ArrayBufferView): Promise<ArrayBuffer> {
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const sig = await key.store.sign(bytes);
      return sig.buffer.slice(sig.byteOffset, sig.byteOffset + sig.byteLength) as ArrayBuffer;
    },
  };
  return { subtle, getRandomValues: (a: Uint8Array) => globalThis.crypto.getRandomValues(a) } as unknown as Crypto;
}

/**
 * Builds a PEM CSR for `subject` (an X.500 name string such as
 * "CN=abc, O=ztedge"), signed by the KeyStore's key.
 *
 * `sans` asks for subjectAltNames (server certificates of router listeners).
 *
 * @example
 *   const pem = await createCsr(store, 'CN=plc-7, O=ztedge');
 *   const server = await createCsr(store, 'CN=hub, O=ztedge', { dns: ['hub.example'], ip: ['10.0.0.1'] });
 */
export async function createCsr(store: KeyStore, subject: string, sans?: { dns: readonly string[]; ip: readonly string[] }): Promise<string> {
  const algorithm = webAlgorithmOf(store.algorithm);
  const keys = {
    publicKey: { algorithm, type: 'public', store } as ShimKey,
    privateKey: { algorithm, type: 'private', store } as ShimKey,
  } as unknown as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: subject,
      keys,
      signingAlgorithm: algorithm,
      ...(sans === undefined ? {} : {
        extensions: [new x509.SubjectAlternativeNameExtension([...sans.dns.map((value) => ({ type: 'dns' as const, value })), ...sans.ip.map((value) => ({ type: 'ip' as const, value }))])],
      }),
    },
    shimCrypto(),
  );
  return csr.toString('pem');
}
