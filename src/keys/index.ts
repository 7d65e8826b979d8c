/** Keys: the KeyStore contract and its implementations, CSRs, X.509 set-up. */
export type { KeyAlgorithm, KeyStore } from './types.js';
export { FileKeyStore, fileRef, generatePrivateKeyPem, algorithmOf } from './file.js';
export { createCsr, webAlgorithmOf } from './csr.js';
export { x509 } from './x509.js';
export { EXPORTER_LABEL, PROOF_CERT_HEADER, PROOF_SIGNATURE_HEADER, proofMessage, signExporterProof, verifyExporterProof } from './proof.js';
