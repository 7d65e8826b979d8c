/**
 * The controller's PKI: a root CA, a signing intermediate, and the server
 * certificate of the controller's HTTPS API, all made on first start under
 * DIR/pki (private keys 0600). Identity certificates are issued from CSRs
 * only: the controller never sees an identity's private key.
 *
 *   root CA (10 y, self-signed, pathLen 1)
 *     └── signing intermediate (5 y, pathLen 0)
 *           ├── controller server certificate (1 y, serverAuth)
 *           ├── policy signer (1 y, CN = ztedge-policy-signer, no TLS use): signs router policy snapshots
 *           └── identity certificates (CN = identity id, clientAuth)
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { promises as fs, existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { EdgeError } from '../errors.js';
import { x509 } from '../keys/x509.js';
import { checkCsr, ClientCertIssuer, requestedSans, type IssuedCert } from './issuer.js';
import { writeFileAtomic } from '../util/fs.js';
export { writeFileAtomic } from '../util/fs.js';
import type { Logger } from '../log/index.js';
import { POLICY_SIGNER_CN } from '../policy/signed.js';

const DAY_MS = 86_400_000;
const EC_SIGN = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** Back-date notBefore to tolerate clock skew between controller and devices. */
const SKEW_MS = 5 * 60_000;

interface KeyPairFiles { keyPem: string; certPem: string }

export type { IssuedCert } from './issuer.js';
export { checkKeyStrength } from './issuer.js';

export class Pki {
  readonly root: X509Certificate;
  readonly intermediate: X509Certificate;
  readonly server: X509Certificate;
  /** PEM of the server's key, for the HTTPS listener. */
  readonly serverKeyPem: string;
  readonly serverKey: KeyObject;
  /** Server leaf + intermediate, PEM. */
  readonly serverChainPem: string;
  /** Root + intermediate, PEM: the trust bundle clients keep as `id.ca`. */
  readonly caBundlePem: string;
  /** Base64 DER PKCS#7 certs-only of the CA bundle, as served by EST `/cacerts` (RFC 7030 §4.1.3). */
  readonly cacertsBase64: string;
  /** Key and certificate (DER) that sign router policy snapshots. */
  readonly policySigner: { key: KeyObject; certDer: Buffer };
  private readonly issuer: ClientCertIssuer;

  private constructor(root: KeyPairFiles, intermediate: KeyPairFiles, server: KeyPairFiles, policySigner: KeyPairFiles) {
    this.root = new X509Certificate(root.certPem);
    this.intermediate = new X509Certificate(intermediate.certPem);
    this.server = new X509Certificate(server.certPem);
    this.serverKeyPem = server.keyPem;
    this.serverKey = createPrivateKey(server.keyPem);
    this.policySigner = { key: createPrivateKey(policySigner.keyPem), certDer: new X509Certificate(policySigner.certPem).raw };
    this.serverChainPem = normalizePem(server.certPem) + normalizePem(intermediate.certPem);
    this.caBundlePem = normalizePem(root.certPem) + normalizePem(intermediate.certPem);
    this.issuer = new ClientCertIssuer(intermediate.certPem, createPrivateKey(intermediate.keyPem));
    const bundle = new x509.X509Certificates([new x509.X509Certificate(root.certPem), new x509.X509Certificate(intermediate.certPem)]);
    this.cacertsBase64 = wrap64(Buffer.from(bundle.export('raw')).toString('base64'));
  }

  /** Hex SHA-1 of the server certificate DER: the `kid` of enrollment JWTs. */
  get serverKid(): string {
    return createHash('sha1').update(this.server.raw).digest('hex');
  }

  /**
   * Loads the PKI from DIR/pki, creating it on first start. The server
   * certificate is re-issued when it does not cover `hosts` or expires
   * within 30 days; the CAs are never replaced.
   */
  static async loadOrCreate(dir: string, hosts: string[], log: Logger): Promise<Pki> {
    const pkiDir = join(dir, 'pki');
    if (!existsSync(join(pkiDir, 'intermediate.cert.pem'))) {
      await createCas(dir, pkiDir, log);
    }
    const root = await readPair(pkiDir, 'root');
    const intermediate = await readPair(pkiDir, 'intermediate');
    const signingKey = await importSigningKey(intermediate.keyPem);
    let server: KeyPairFiles | undefined = existsSync(join(pkiDir, 'server.cert.pem')) ? await readPair(pkiDir, 'server') : undefined;
    if (server === undefined || !serverCertCovers(server.certPem, hosts)) {
      server = await issueServerCert(pkiDir, intermediate, signingKey, hosts);
      log.info({ hosts }, 'issued controller server certificate');
    }
    let signer: KeyPairFiles | undefined = existsSync(join(pkiDir, 'policy-signer.cert.pem')) ? await readPair(pkiDir, 'policy-signer') : undefined;
    if (signer === undefined || Date.parse(new X509Certificate(signer.certPem).validTo) - Date.now() < 30 * DAY_MS) {
      signer = await issuePolicySignerCert(pkiDir, intermediate, signingKey);
      log.info({}, 'issued policy signer certificate');
    }
    return new Pki(root, intermediate, server, signer);
  }

  /**
   * Validates a PEM CSR (parse, key strength, self-signature) and issues a
   * client certificate for `identityId`. Throws ERR_CSR_INVALID or
   * ERR_CSR_WEAK_KEY; the CSR's subject is ignored (the CN is always the id).
   */
  async issueClientCert(csrPem: string, identityId: string, validityDays: number): Promise<IssuedCert> {
    const csr = checkCsr(csrPem);
    return this.issuer.issue(csr.parsed, csr.spki, identityId, validityDays);
  }

  /**
   * A router's two certificates (erott): a client certificate from
   * `clientCsrPem` and a server certificate from `serverCsrPem`, both with
   * CN = the router id; the server certificate carries the DNS and IP
   * subjectAltNames the server CSR requested. Both CSRs are checked before
   * either certificate is made.
   */
  async issueRouterCerts(clientCsrPem: string, serverCsrPem: string, routerId: string, validityDays: number): Promise<{ client: IssuedCert; server: IssuedCert; sans: { dns: string[]; ip: string[] } }> {
    const client = checkCsr(clientCsrPem);
    const server = checkCsr(serverCsrPem);
    const sans = requestedSans(server.parsed);
    return {
      client: this.issuer.issue(client.parsed, client.spki, routerId, validityDays),
      server: this.issuer.issueServer(server.parsed, sans, routerId, validityDays),
      sans: { dns: sans.dns, ip: sans.ip },
    };
  }
}

/** Lower-case hex SHA-1 of a certificate's DER. */
export function certFingerprint(der: Buffer): string {
  return createHash('sha1').update(der).digest('hex');
}

async function createCas(dir: string, pkiDir: string, log: Logger): Promise<void> {
  // Build in a scratch folder and rename it into place, so a crash never leaves half a PKI.
  const tmp = `${pkiDir}.tmp-${process.pid}`;
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp, { mode: 0o700 });
  const suffix = randomBytes(4).toString('hex');
  const now = Date.now();
  const rootKeys = await generateEc();
  const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialHex(),
    name: `CN=ztedge root CA ${suffix}, O=ztedge`,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + 3650 * DAY_MS),
    keys: rootKeys,
    signingAlgorithm: EC_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const intKeys = await generateEc();
  const intCert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(),
    issuer: rootCert.subject,
    subject: `CN=ztedge signing CA ${suffix}, O=ztedge`,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + 1825 * DAY_MS),
    publicKey: intKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: EC_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(intKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  await writePair(tmp, 'root', await exportPkcs8(rootKeys.privateKey), rootCert.toString('pem'));
  await writePair(tmp, 'intermediate', await exportPkcs8(intKeys.privateKey), intCert.toString('pem'));
  await fs.rm(pkiDir, { recursive: true, force: true });
  await fs.rename(tmp, pkiDir);
  log.info({ root: rootCert.subject, intermediate: intCert.subject }, 'created controller PKI');
}

/** A leaf certificate from the intermediate for a new P-256 key, written to DIR/NAME.{key,cert.pem}. */
async function issueLeaf(pkiDir: string, name: string, intermediate: KeyPairFiles, signingKey: CryptoKey, subject: string, extensions: x509.Extension[]): Promise<KeyPairFiles> {
  const keys = await generateEc();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(),
    issuer: new x509.X509Certificate(intermediate.certPem).subject,
    subject,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + 365 * DAY_MS),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: EC_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      ...extensions,
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(subjectKeyIdOf(intermediate.certPem)),
    ],
  });
  const pair = { keyPem: await exportPkcs8(keys.privateKey), certPem: cert.toString('pem') };
  await writePair(pkiDir, name, pair.keyPem, pair.certPem);
  return pair;
}

function issueServerCert(pkiDir: string, intermediate: KeyPairFiles, signingKey: CryptoKey, hosts: string[]): Promise<KeyPairFiles> {
  const names = [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...hosts])];
  return issueLeaf(pkiDir, 'server', intermediate, signingKey, `CN=${escapeDnValue(hosts[0] ?? 'localhost')}, O=ztedge`, [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: isIP(n) ? 'ip' as const : 'dns' as const, value: n }))),
  ]);
}

/** The policy signer: digitalSignature only, no TLS use; routers accept snapshots signed by this CN under the CA. */
function issuePolicySignerCert(pkiDir: string, intermediate: KeyPairFiles, signingKey: CryptoKey): Promise<KeyPairFiles> {
  return issueLeaf(pkiDir, 'policy-signer', intermediate, signingKey, `CN=${POLICY_SIGNER_CN}, O=ztedge`, [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  ]);
}

function serverCertCovers(certPem: string, hosts: string[]): boolean {
  const cert = new X509Certificate(certPem);
  if (Date.parse(cert.validTo) - Date.now() < 30 * DAY_MS) return false;
  return hosts.every((h) => (isIP(h) ? cert.checkIP(h) !== undefined : cert.checkHost(h) !== undefined));
}

async function generateEc(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportPkcs8(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${wrap64(der.toString('base64'))}\n-----END PRIVATE KEY-----\n`;
}

async function importSigningKey(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

async function writePair(dir: string, name: string, keyPem: string, certPem: string): Promise<void> {
  await writeFileAtomic(join(dir, `${name}.key`), keyPem, 0o600);
  await writeFileAtomic(join(dir, `${name}.cert.pem`), normalizePem(certPem), 0o644);
}

async function readPair(dir: string, name: string): Promise<KeyPairFiles> {
  try {
    return {
      keyPem: await fs.readFile(join(dir, `${name}.key`), 'utf8'),
      certPem: await fs.readFile(join(dir, `${name}.cert.pem`), 'utf8'),
    };
  } catch (err) {
    throw new EdgeError('ERR_PKI', `controller PKI file missing or unreadable in ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/** The subject key identifier of a CA certificate, for the AKI of what it issues. */
function subjectKeyIdOf(certPem: string): string {
  const ski = new x509.X509Certificate(certPem).getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski === null) throw new EdgeError('ERR_PKI', 'CA certificate has no subject key identifier');
  return ski.keyId;
}

/** A positive 128-bit serial (RFC 5280 §4.1.2.2: at most 20 octets, positive). */
function serialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function escapeDnValue(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}

function normalizePem(pem: string): string {
  return pem.trim() + '\n';
}

function wrap64(b64: string): string {
  return b64.match(/.{1,64}/g)?.join('\n') ?? '';
}
