/**
 * Client side of enrollment, as OpenZiti clients do it:
 *
 *   1. read the JWT without trusting it (em, iss, sub, jti, exp);
 *   2. connect to `iss` trusting nothing, and accept its certificate only if
 *      that certificate's key verifies the JWT's signature;
 *   3. fetch `/.well-known/est/cacerts` over that pinned connection and from
 *      then on trust only this CA bundle;
 *   4. ott: make the key locally (it never leaves the device), send a CSR,
 *      write the identity file; updb: set the password.
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { decodeJwt, decodeProtectedHeader, jwtVerify, errors as joseErrors } from 'jose';
import { EdgeError } from '../errors.js';
import { createCsr, FileKeyStore, fileRef, type KeyAlgorithm, type KeyStore } from '../keys/index.js';
import { writeFileAtomic } from '../util/fs.js';
import { pemBundleFromCacerts } from './cacerts.js';
import { writeIdentityFile } from './file.js';
import { fetchServerCertificate, jsonOf, request } from './https.js';

export interface EnrollmentToken {
  method: string;
  issuer: string;
  subject: string;
  token: string;
  expiresAt: Date;
  raw: string;
}

/** Reads an enrollment JWT's claims without verifying it (verification needs the server). */
export function parseEnrollmentJwt(jwt: string): EnrollmentToken {
  const raw = jwt.trim();
  let claims: Record<string, unknown>;
  try {
    decodeProtectedHeader(raw);
    claims = decodeJwt(raw);
  } catch (err) {
    throw new EdgeError('ERR_JWT_INVALID', `not an enrollment JWT: ${(err as Error).message}`, { cause: err });
  }
  const need = (k: string): string => {
    const v = claims[k];
    if (typeof v !== 'string' || v === '') throw new EdgeError('ERR_JWT_INVALID', `the enrollment JWT has no "${k}" claim`);
    return v;
  };
  const issuer = need('iss');
  if (!/^https:\/\/[^/]+$/.test(issuer.replace(/\/$/, ''))) throw new EdgeError('ERR_JWT_INVALID', `the JWT issuer must be https://host:port, got "${issuer}"`);
  if (typeof claims.exp !== 'number') throw new EdgeError('ERR_JWT_INVALID', 'the enrollment JWT has no "exp" claim');
  return { method: need('em'), issuer: issuer.replace(/\/$/, ''), subject: need('sub'), token: need('jti'), expiresAt: new Date(claims.exp * 1000), raw };
}

/**
 * Steps 2–3: proves the server at `iss` holds the key that signed the JWT,
 * then returns the CA bundle it serves (PEM).
 */
export async function bootstrapTrust(token: EnrollmentToken): Promise<string> {
  const der = await fetchServerCertificate(token.issuer);
  const cert = new X509Certificate(der);
  const kid = decodeProtectedHeader(token.raw).kid;
  if (kid !== undefined && kid !== createHash('sha1').update(der).digest('hex')) {
    throw new EdgeError('ERR_TRUST_BOOTSTRAP', `the server at ${token.issuer} presents a certificate other than the one that signed this token (kid mismatch)`);
  }
  try {
    await jwtVerify(token.raw, createPublicKey(cert.publicKey.export({ type: 'spki', format: 'pem' })), { algorithms: ['ES256', 'ES384', 'ES512', 'RS256'] });
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new EdgeError('ERR_JWT_INVALID', `the enrollment token expired at ${token.expiresAt.toISOString()}; ask for a new one`);
    throw new EdgeError('ERR_TRUST_BOOTSTRAP', `the server at ${token.issuer} did not sign this token: ${(err as Error).message}`, { cause: err });
  }
  const pin = createHash('sha256').update(der).digest('hex');
  const res = await request(`${token.issuer}/.well-known/est/cacerts`, { pinSha256: pin });
  if (res.status !== 200) throw new EdgeError('ERR_TRUST_BOOTSTRAP', `GET /.well-known/est/cacerts answered HTTP ${res.status}`);
  const bundle = pemBundleFromCacerts(res.body.toString('utf8'));
  // The controller must chain to the bundle it hands out; otherwise the next call fails anyway, with less clarity.
  const cas = bundle.split(/(?<=-----END CERTIFICATE-----\n)/).filter((p) => p.trim() !== '').map((p) => new X509Certificate(p));
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    throw new EdgeError('ERR_TRUST_BOOTSTRAP', `the server certificate of ${token.issuer} is not issued by the CA bundle it serves`);
  }
  return bundle;
}

export interface EnrollOptions {
  jwt: string;
  /** Path of the identity file to write (NAME.json); cert, key and CA files go beside it. */
  out: string;
  /** A KeyStore to use instead of a new file key (PKCS#11 tokens). */
  keyStore?: KeyStore;
  /** Whether `keyStore`'s key was generated for this enrollment (for the report). */
  keyStoreCreated?: boolean;
  keyAlgorithm?: KeyAlgorithm;
  /** updb: the password to set. */
  password?: string;
  /** ottca: the 3rd-party CA's certificate (chain) and key files for this device. */
  certFile?: string;
  keyFile?: string;
  /** erott: subjectAltNames for the router's listener certificate (default: localhost, 127.0.0.1, ::1 and this host's name). */
  serverSans?: string[];
}

export interface EnrollResult {
  method: string;
  identityId: string;
  identityFile?: string;
  keyRef?: string;
  keyCreated?: boolean;
  /** erott: the subjectAltNames of the listener certificate. */
  serverSans?: string[];
}

/** Paths of the files written beside an identity file NAME.json. */
export function identityPaths(out: string): { json: string; cert: string; key: string; ca: string; serverCert: string; serverKey: string } {
  const json = resolve(out);
  const stem = join(dirname(json), basename(json).replace(/\.json$/i, ''));
  return { json, cert: `${stem}.cert.pem`, key: `${stem}.key.pem`, ca: `${stem}.ca.pem`, serverCert: `${stem}.server.cert.pem`, serverKey: `${stem}.server.key.pem` };
}

/** Splits `--san` values into DNS names and IP addresses; the default covers a router reached on this machine. */
export function serverSans(values: readonly string[] | undefined): { dns: string[]; ip: string[] } {
  const list = values !== undefined && values.length > 0 ? values : ['localhost', '127.0.0.1', '::1', ...(/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(hostname()) ? [hostname()] : [])];
  const dns: string[] = [];
  const ip: string[] = [];
  for (const v of new Set(list)) {
    const bare = v.replace(/^\[|\]$/g, '');
    if (isIP(bare) !== 0) ip.push(bare);
    else if (/^(\*\.)?[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$/.test(v) && v.length <= 253) dns.push(v);
    else throw new EdgeError('ERR_USAGE', `--san ${v} is neither a host name nor an IP address`);
  }
  return { dns, ip };
}

export async function enroll(opts: EnrollOptions): Promise<EnrollResult> {
  const token = parseEnrollmentJwt(opts.jwt);
  if (token.expiresAt.getTime() <= Date.now()) {
    throw new EdgeError('ERR_JWT_INVALID', `the enrollment token expired at ${token.expiresAt.toISOString()}; ask for a new one`);
  }
  const paths = identityPaths(opts.out);
  if (token.method !== 'updb' && existsSync(paths.json)) {
    throw new EdgeError('ERR_USAGE', `${paths.json} already exists; choose another --out or remove it first`);
  }
  const ca = await bootstrapTrust(token);
  const url = `${token.issuer}/edge/client/v1/enroll?method=${encodeURIComponent(token.method)}&token=${encodeURIComponent(token.token)}`;

  if (token.method === 'updb') {
    if (opts.password === undefined) throw new EdgeError('ERR_USAGE', 'this token enrolls a username/password: give --password-file');
    const res = await request(url, { ca, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: opts.password }) });
    jsonOf(res);
    return { method: 'updb', identityId: token.subject };
  }
  if (token.method === 'ottca') return enrollOttca(token, url, ca, paths, opts);
  if (token.method !== 'ott' && token.method !== 'erott') throw new EdgeError('ERR_JWT_INVALID', `enrollment method "${token.method}" is not supported by this client (ott, erott, ottca, updb)`);
  // Check the SANs before any key is made or token spent.
  const sans = token.method === 'erott' ? serverSans(opts.serverSans) : undefined;

  let keyCreated = opts.keyStoreCreated ?? false;
  let store = opts.keyStore;
  if (store === undefined) {
    const opened = await FileKeyStore.openOrCreate(paths.key, opts.keyAlgorithm ?? 'ec-p256');
    store = opened.store;
    keyCreated = opened.created;
  }
  const csr = await createCsr(store, `CN=${token.subject}, O=ztedge`);
  let chainPem: string;
  let server: { certPem: string; keyPem: string } | undefined;
  if (sans !== undefined) {
    // A router's listener key is always a file key: Node's TLS server cannot use a token key.
    const serverKey = await FileKeyStore.openOrCreate(paths.serverKey, 'ec-p256');
    const serverCsr = await createCsr(serverKey.store, `CN=${token.subject}, O=ztedge`, sans);
    const res = await request(`${token.issuer}/edge/client/v1/enroll/erott`, {
      ca, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ token: token.token, clientCsr: csr, serverCsr }),
    });
    const data = jsonOf<{ cert?: unknown; serverCert?: unknown } | undefined>(res);
    if (typeof data?.cert !== 'string' || typeof data.serverCert !== 'string') throw new EdgeError('ERR_REMOTE', 'the controller answered the router enrollment without both certificates');
    chainPem = data.cert;
    server = { certPem: data.serverCert, keyPem: await fs.readFile(paths.serverKey, 'utf8') };
    checkIssuedFor(server.certPem, serverKey.store.publicKeySpki(), 'server');
  } else {
    const res = await request(url, { ca, method: 'POST', headers: { 'content-type': 'text/plain', accept: 'application/x-pem-file' }, body: csr });
    if (res.status >= 400) jsonOf(res);
    chainPem = res.body.toString('utf8');
  }
  checkIssuedFor(chainPem, store.publicKeySpki(), 'client');
  await writeFileAtomic(paths.cert, chainPem.trim() + '\n', 0o644);
  if (server !== undefined) await writeFileAtomic(paths.serverCert, server.certPem.trim() + '\n', 0o644);
  await writeFileAtomic(paths.ca, ca, 0o644);
  await writeIdentityFile(paths.json, {
    ztAPI: token.issuer,
    ztAPIs: [token.issuer],
    id: {
      cert: fileRef(paths.cert), key: store.ref, ca: fileRef(paths.ca),
      ...(server !== undefined ? { serverCert: fileRef(paths.serverCert), serverKey: fileRef(paths.serverKey) } : {}),
    },
  });
  return { method: token.method, identityId: token.subject, identityFile: paths.json, keyRef: store.ref, keyCreated, serverSans: sans === undefined ? undefined : [...sans.dns, ...sans.ip] };
}

/** The controller must have certified the key this device made, and nothing else. */
function checkIssuedFor(chainPem: string, spki: Buffer, which: string): void {
  const leafPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chainPem)?.[0];
  if (leafPem === undefined) throw new EdgeError('ERR_REMOTE', `the controller answered the enrollment without a ${which} certificate`);
  if (!new X509Certificate(leafPem).publicKey.export({ type: 'spki', format: 'der' }).equals(spki)) {
    throw new EdgeError('ERR_REMOTE', `the issued ${which} certificate is not for the key this device made`);
  }
}

/** ottca: authenticate the enrollment with the device's existing 3rd-party certificate; no new key. */
async function enrollOttca(token: EnrollmentToken, url: string, ca: string, paths: ReturnType<typeof identityPaths>, opts: EnrollOptions): Promise<EnrollResult> {
  if (opts.certFile === undefined || opts.keyFile === undefined) {
    throw new EdgeError('ERR_USAGE', 'this token enrolls with a certificate from a 3rd-party CA: give --cert FILE and --key FILE');
  }
  let certPem: string;
  let keyPem: string;
  try {
    certPem = await fs.readFile(opts.certFile, 'utf8');
    keyPem = await fs.readFile(opts.keyFile, 'utf8');
  } catch (err) {
    throw new EdgeError('ERR_USAGE', `cannot read the certificate or key: ${(err as Error).message}`);
  }
  const res = await request(url, { ca, cert: certPem, key: keyPem, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  jsonOf(res);
  await writeFileAtomic(paths.ca, ca, 0o644);
  await writeIdentityFile(paths.json, {
    ztAPI: token.issuer,
    ztAPIs: [token.issuer],
    id: { cert: fileRef(resolve(opts.certFile)), key: fileRef(resolve(opts.keyFile)), ca: fileRef(paths.ca) },
  });
  return { method: 'ottca', identityId: token.subject, identityFile: paths.json, keyRef: fileRef(resolve(opts.keyFile)), keyCreated: false };
}
