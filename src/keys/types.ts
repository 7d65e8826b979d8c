/**
 * The KeyStore contract: everything that signs with an identity key (CSR,
 * link proof of possession, token signatures) goes through this interface, so
 * a file key and a key sealed in a TPM/HSM are used the same way.
 *
 * Concurrency: `sign` may be called concurrently; an implementation
 * serializes internally if its backend needs it. Ordering of results follows
 * completion, not call order.
 */

/** Key algorithms an identity key may have. P-256 is the default (TPMs have no Ed25519). */
export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519';

export interface KeyStore {
  /** The key's algorithm. */
  readonly algorithm: KeyAlgorithm;
  /** Where the key lives, as written in the identity file's `id.key` (file://… or pkcs11:…). */
  readonly ref: string;
  /** DER SubjectPublicKeyInfo of the key. Owned by the caller (a copy). */
  publicKeySpki(): Buffer;
  /**
   * Signs `data` (the message, not a digest) with SHA-256 (none for Ed25519).
   * ECDSA signatures come back as IEEE P1363 r‖s, the WebCrypto and PKCS#11
   * form; RSA as PKCS#1 v1.5.
   */
  sign(data: Uint8Array): Promise<Buffer>;
  /** Releases sessions or handles. Idempotent. */
  close(): Promise<void>;
}
