/**
 * The enrollment hot path of the PKI: check a CSR and issue a client
 * certificate. Built on the ASN.1 schemas of @peculiar/asn1-* directly and
 * Node's native crypto, because the high-level @peculiar/x509 generator
 * re-parses everything it builds and signs through WebCrypto: measured at
 * ~3.8 ms per certificate on the reference 2-core machine, most of the
 * controller's CPU per enrollment (bench/enroll).
 *
 * What is fixed per issuer (issuer name, AKI, the constant extensions, the
 * signature algorithm) is built once; per certificate only the serial,
 * validity, subject, key and SKI change.
 */
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import {
  AlgorithmIdentifier, AuthorityKeyIdentifier, BasicConstraints, Certificate, ExtendedKeyUsage, Extension, Extensions, KeyIdentifier,
  KeyUsage, KeyUsageFlags, Name, SubjectKeyIdentifier, TBSCertificate, Validity, Version, AttributeTypeAndValue, AttributeValue, RelativeDistinguishedName,
  id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_extKeyUsage, id_ce_keyUsage, id_ce_subjectKeyIdentifier, id_kp_clientAuth,
} from '@peculiar/asn1-x509';
import { createHash, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { EdgeError } from '../errors.js';

const DAY_MS = 86_400_000;
const SKEW_MS = 5 * 60_000;
const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_CN = '2.5.4.3';
const OID_O = '2.5.4.10';

/** Signature algorithms a CSR may use (OID → Node digest; null for Ed25519). */
const CSR_SIGNATURE_HASH: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256', '1.2.840.10045.4.3.3': 'sha384', '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384', '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null,
};

export interface CheckedCsr {
  /** DER SubjectPublicKeyInfo, as the CSR carries it. */
  spki: Buffer;
  key: KeyObject;
}

export interface IssuedCert {
  certPem: string;
  /** Leaf then intermediate, PEM. */
  chainPem: string;
  /** Lower-case hex SHA-1 of the leaf's DER. */
  fingerprint: string;
}

/**
 * Parses a PEM CSR, refuses weak keys (ERR_CSR_WEAK_KEY) and checks its
 * self-signature (ERR_CSR_INVALID). Pure: no I/O, no state.
 */
export function checkCsr(pem: string): CheckedCsr & { parsed: CertificationRequest } {
  const text = pem.trim();
  const m = /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (NEW )?CERTIFICATE REQUEST-----$/.exec(text);
  if (m === null) throw new EdgeError('ERR_CSR_INVALID', 'the body is not a PEM certificate signing request (expected -----BEGIN CERTIFICATE REQUEST-----)');
  const der = Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
  let req: CertificationRequest;
  try {
    req = AsnConvert.parse(der, CertificationRequest);
  } catch (err) {
    throw new EdgeError('ERR_CSR_INVALID', `the CSR cannot be parsed: ${(err as Error).message}`, { cause: err });
  }
  const spki = Buffer.from(AsnConvert.serialize(req.certificationRequestInfo.subjectPKInfo));
  const key = checkKeyStrength(spki);
  const algorithm = req.signatureAlgorithm.algorithm;
  if (!(algorithm in CSR_SIGNATURE_HASH)) throw new EdgeError('ERR_CSR_INVALID', `the CSR is signed with an unsupported algorithm (${algorithm})`);
  const tbs = req.certificationRequestInfoRaw;
  if (tbs === undefined) throw new EdgeError('ERR_CSR_INVALID', 'the CSR has no request info');
  let valid = false;
  try {
    valid = cryptoVerify(CSR_SIGNATURE_HASH[algorithm]!, Buffer.from(tbs), key, Buffer.from(req.signature));
  } catch (err) {
    throw new EdgeError('ERR_CSR_INVALID', `the CSR signature cannot be checked: ${(err as Error).message}`, { cause: err });
  }
  if (!valid) throw new EdgeError('ERR_CSR_INVALID', 'the CSR signature does not verify with its public key');
  return { spki, key, parsed: req };
}

/** Accepts EC P-256/P-384/P-521, RSA ≥ 2048 bits and Ed25519; returns the key, refuses anything weaker or unknown. */
export function checkKeyStrength(spki: Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new EdgeError('ERR_CSR_WEAK_KEY', 'the CSR public key is of a type or curve that is not accepted (use EC P-256)', { cause: err });
  }
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (['prime256v1', 'secp384r1', 'secp521r1'].includes(d.namedCurve ?? '')) return key;
      throw new EdgeError('ERR_CSR_WEAK_KEY', `EC curve ${d.namedCurve ?? 'unknown'} is not accepted (use P-256, P-384 or P-521)`);
    case 'rsa':
      if ((d.modulusLength ?? 0) >= 2048) return key;
      throw new EdgeError('ERR_CSR_WEAK_KEY', `RSA key of ${d.modulusLength ?? 0} bits is too weak (2048 bits at least)`);
    case 'ed25519':
      return key;
    default:
      throw new EdgeError('ERR_CSR_WEAK_KEY', `key type ${key.asymmetricKeyType ?? 'unknown'} is not accepted`);
  }
}

function extension(extnID: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** Issues client certificates signed by one CA (the controller's signing intermediate). */
export class ClientCertIssuer {
  private readonly issuerName: Name;
  private readonly issuerPem: string;
  private readonly signingKey: KeyObject;
  private readonly fixedExtensions: Extension[];
  private readonly signatureAlgorithm = new AlgorithmIdentifier({ algorithm: OID_ECDSA_SHA256 });

  constructor(issuerCertPem: string, signingKey: KeyObject) {
    const issuer = new X509Certificate(issuerCertPem);
    const parsed = AsnConvert.parse(issuer.raw, Certificate);
    this.issuerName = parsed.tbsCertificate.subject;
    this.issuerPem = issuer.toString().trim() + '\n';
    this.signingKey = signingKey;
    const ski = parsed.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
    if (ski === undefined) throw new EdgeError('ERR_PKI', 'the signing CA certificate has no subject key identifier');
    const keyId = AsnConvert.parse(ski.extnValue.buffer, SubjectKeyIdentifier);
    this.fixedExtensions = [
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
      extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment | KeyUsageFlags.keyAgreement)),
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_clientAuth])),
      extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyId.buffer) })),
    ];
  }

  /** Issues a certificate with CN = `commonName` for a checked CSR's key. */
  issue(csr: CertificationRequest, spki: Buffer, commonName: string, validityDays: number, now = Date.now()): IssuedCert {
    // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
    const keyBits = csr.certificationRequestInfo.subjectPKInfo.subjectPublicKey;
    const ski = createHash('sha1').update(Buffer.from(keyBits)).digest();
    const serial = randomBytes(16);
    serial[0] = (serial[0]! & 0x7f) | 0x01; // positive, 16 octets (RFC 5280 §4.1.2.2)
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: serial.buffer.slice(serial.byteOffset, serial.byteOffset + serial.byteLength) as ArrayBuffer,
      signature: this.signatureAlgorithm,
      issuer: this.issuerName,
      validity: new Validity({ notBefore: new Date(now - SKEW_MS), notAfter: new Date(now + validityDays * DAY_MS) }),
      subject: new Name([
        new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_CN, value: new AttributeValue({ utf8String: commonName }) })]),
        new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_O, value: new AttributeValue({ utf8String: 'ztedge' }) })]),
      ]),
      subjectPublicKeyInfo: csr.certificationRequestInfo.subjectPKInfo,
      extensions: new Extensions([...this.fixedExtensions, extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(ski))]),
    });
    const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
    const signature = cryptoSign('sha256', tbsDer, this.signingKey);
    const cert = new Certificate({ tbsCertificate: tbs, signatureAlgorithm: this.signatureAlgorithm, signatureValue: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength) as ArrayBuffer });
    const der = Buffer.from(AsnConvert.serialize(cert));
    const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}(?=.)/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
    return { certPem, chainPem: certPem + this.issuerPem, fingerprint: createHash('sha1').update(der).digest('hex') };
  }
}
