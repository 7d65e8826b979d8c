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
  KeyUsage, KeyUsageFlags, Name, SubjectAlternativeName, SubjectKeyIdentifier, TBSCertificate, Validity, Version, AttributeTypeAndValue, AttributeValue, RelativeDistinguishedName,
  id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_extKeyUsage, id_ce_keyUsage, id_ce_subjectAltName, id_ce_subjectKeyIdentifier, id_kp_clientAuth, id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import { createHash, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { EdgeError } from '../errors.js';
import { isHostname, isIpAddress } from './addresses.js';

const DAY_MS = 86_400_000;
const SKEW_MS = 5 * 60_000;
const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_CN = '2.5.4.3';
const OID_O = '2.5.4.10';
/** PKCS#9 extensionRequest (RFC 2985 §5.4.2): the extensions a CSR asks for. */
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
/** Most subjectAltNames a server certificate may carry. */
const MAX_SANS = 64;

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

/** subjectAltNames a CSR asks for, with the extension's DER to copy into the certificate unchanged. */
export interface RequestedSans {
  dns: string[];
  ip: string[];
  /** The subjectAltName extension value (DER of GeneralNames) exactly as requested. */
  der: ArrayBuffer;
}

/**
 * Reads the subjectAltName of a CSR's extensionRequest (RFC 2986 §4.1,
 * RFC 2985 §5.4.2). Only DNS names (host names, optionally `*.` wildcards)
 * and IPv4/IPv6 addresses are accepted; any other name type, a malformed
 * entry or no name at all is ERR_CSR_INVALID. Pure.
 */
export function requestedSans(csr: CertificationRequest): RequestedSans {
  const none = 'the server CSR must request at least one subjectAltName (DNS name or IP address), for example with openssl req -addext "subjectAltName=DNS:router.example,IP:10.0.0.1"';
  const attr = (csr.certificationRequestInfo.attributes ?? []).find((a) => a.type === OID_EXTENSION_REQUEST);
  if (attr === undefined || attr.values.length === 0) throw new EdgeError('ERR_CSR_INVALID', none);
  let sanExt: Extension | undefined;
  let names: SubjectAlternativeName;
  try {
    const exts = AsnConvert.parse(attr.values[0]!, Extensions);
    sanExt = exts.find((e) => e.extnID === id_ce_subjectAltName);
    if (sanExt === undefined) throw new EdgeError('ERR_CSR_INVALID', none);
    names = AsnConvert.parse(sanExt.extnValue.buffer, SubjectAlternativeName);
  } catch (err) {
    if (err instanceof EdgeError) throw err;
    throw new EdgeError('ERR_CSR_INVALID', `the server CSR's requested extensions cannot be parsed: ${(err as Error).message}`, { cause: err });
  }
  const dns: string[] = [];
  const ip: string[] = [];
  for (const n of names) {
    if (n.dNSName !== undefined) {
      const host = n.dNSName.startsWith('*.') ? n.dNSName.slice(2) : n.dNSName;
      if (!isHostname(host)) throw new EdgeError('ERR_CSR_INVALID', `subjectAltName DNS:${n.dNSName} is not a host name`);
      dns.push(n.dNSName);
    } else if (n.iPAddress !== undefined) {
      // 4 or 16 octets (RFC 5280 §4.2.1.6); 8 or 32 would be a name-constraint range, not an address.
      if (!isIpAddress(n.iPAddress)) throw new EdgeError('ERR_CSR_INVALID', `subjectAltName IP:${n.iPAddress} is not an IPv4 or IPv6 address`);
      ip.push(n.iPAddress);
    } else {
      const kind = Object.keys(n).find((k) => (n as unknown as Record<string, unknown>)[k] !== undefined) ?? 'unknown';
      throw new EdgeError('ERR_CSR_INVALID', `subjectAltName of type ${kind} is not accepted (DNS names and IP addresses only)`);
    }
  }
  if (dns.length + ip.length === 0) throw new EdgeError('ERR_CSR_INVALID', none);
  if (dns.length + ip.length > MAX_SANS) throw new EdgeError('ERR_CSR_INVALID', `the server CSR requests ${dns.length + ip.length} subjectAltNames; at most ${MAX_SANS} are accepted`);
  return { dns, ip, der: sanExt.extnValue.buffer };
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
  private readonly serverExtensions: Extension[];
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
    const basic = extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false }));
    const usage = extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment | KeyUsageFlags.keyAgreement));
    const aki = extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyId.buffer) }));
    this.fixedExtensions = [basic, usage, extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_clientAuth])), aki];
    // A router's server certificate also serves as a client certificate when it dials links.
    this.serverExtensions = [basic, usage, extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])), aki];
  }

  /** Issues a client certificate (clientAuth) with CN = `commonName` for a checked CSR's key. */
  issue(csr: CertificationRequest, spki: Buffer, commonName: string, validityDays: number, now = Date.now()): IssuedCert {
    return this.sign(csr, commonName, validityDays, this.fixedExtensions, now);
  }

  /**
   * Issues a server certificate (serverAuth and clientAuth) with CN =
   * `commonName` and the subjectAltNames the CSR requested, copied as they
   * are (read them with `requestedSans`, which refuses anything but DNS and IP).
   */
  issueServer(csr: CertificationRequest, sans: RequestedSans, commonName: string, validityDays: number, now = Date.now()): IssuedCert {
    const san = new Extension({ extnID: id_ce_subjectAltName, critical: false, extnValue: new OctetString(sans.der) });
    return this.sign(csr, commonName, validityDays, [...this.serverExtensions, san], now);
  }

  private sign(csr: CertificationRequest, commonName: string, validityDays: number, extensions: Extension[], now: number): IssuedCert {
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
      extensions: new Extensions([...extensions, extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(ski))]),
    });
    const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
    const signature = cryptoSign('sha256', tbsDer, this.signingKey);
    const cert = new Certificate({ tbsCertificate: tbs, signatureAlgorithm: this.signatureAlgorithm, signatureValue: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength) as ArrayBuffer });
    const der = Buffer.from(AsnConvert.serialize(cert));
    const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}(?=.)/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
    return { certPem, chainPem: certPem + this.issuerPem, fingerprint: createHash('sha1').update(der).digest('hex') };
  }
}
