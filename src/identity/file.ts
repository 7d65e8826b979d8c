/**
 * Identity files, the JSON OpenZiti SDKs and tunnelers read:
 *
 *   { "ztAPI": "https://ctrl:1280", "ztAPIs": [...],
 *     "id": { "cert": "file:///…/x.cert.pem", "key": "file:///…/x.key.pem", "ca": "file:///…/x.ca.pem" } }
 *
 * Each of cert/key/ca may be `file://…`, a bare path (relative to the
 * identity file), `pem:<PEM>` or inline PEM; `key` may also be a PKCS#11 URI
 * (`pkcs11:…` or OpenZiti's `pkcs11://…`), kept as a reference.
 */
import { promises as fs } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgeError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';

export interface IdentityFile {
  ztAPI: string;
  ztAPIs?: string[];
  /** serverCert/serverKey: a router's listener certificate and key (erott), ztedge's addition. */
  id: { cert: string; key: string; ca: string; serverCert?: string; serverKey?: string };
}

export interface LoadedIdentity {
  path: string;
  apiUrl: string;
  certPem: string;
  caPem: string;
  /** The key reference: PEM text for file/inline keys, or the pkcs11 URI. */
  key: { kind: 'pem'; pem: string; ref: string } | { kind: 'pkcs11'; uri: string };
  /** A router's listener certificate chain and key (PEM), when it enrolled with erott. */
  server?: { certPem: string; keyPem: string };
}

async function readValue(value: string, baseDir: string, field: string, path: string): Promise<string> {
  if (value.startsWith('pem:')) return value.slice(4);
  if (value.trimStart().startsWith('-----BEGIN')) return value;
  const file = value.startsWith('file://') ? fileURLToPath(value) : isAbsolute(value) ? value : resolve(baseDir, value);
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new EdgeError('ERR_IDENTITY_FILE', `${path}: id.${field} points to ${file}, which cannot be read: ${(err as Error).message}`, { cause: err });
  }
}

export async function loadIdentityFile(path: string): Promise<LoadedIdentity> {
  let raw: string;
  try {
    raw = await fs.readFile(path, 'utf8');
  } catch (err) {
    throw new EdgeError('ERR_IDENTITY_FILE', `cannot read identity file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: Partial<IdentityFile>;
  try {
    doc = JSON.parse(raw) as Partial<IdentityFile>;
  } catch (err) {
    throw new EdgeError('ERR_IDENTITY_FILE', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  // `null` is valid JSON, and reading a field of it would throw a TypeError instead of this coded error.
  if (doc === null || typeof doc !== 'object') throw new EdgeError('ERR_IDENTITY_FILE', `${path} must hold a JSON object`);
  const apiUrl = doc.ztAPIs?.[0] ?? doc.ztAPI;
  if (typeof apiUrl !== 'string' || !/^https:\/\//.test(apiUrl)) throw new EdgeError('ERR_IDENTITY_FILE', `${path}: "ztAPI" must be an https:// URL`);
  const id = doc.id;
  for (const f of ['cert', 'key', 'ca'] as const) {
    if (typeof id?.[f] !== 'string' || id[f] === '') throw new EdgeError('ERR_IDENTITY_FILE', `${path}: "id.${f}" is missing`);
  }
  const baseDir = dirname(resolve(path));
  const keyValue = id!.key;
  const key: LoadedIdentity['key'] = keyValue.startsWith('pkcs11:')
    ? { kind: 'pkcs11', uri: keyValue }
    : { kind: 'pem', pem: await readValue(keyValue, baseDir, 'key', path), ref: keyValue };
  let server: LoadedIdentity['server'];
  if (typeof id!.serverCert === 'string' && typeof id!.serverKey === 'string') {
    server = { certPem: await readValue(id!.serverCert, baseDir, 'serverCert', path), keyPem: await readValue(id!.serverKey, baseDir, 'serverKey', path) };
  }
  return {
    path,
    server,
    apiUrl: apiUrl.replace(/\/edge\/client\/v1\/?$/, '').replace(/\/$/, ''),
    certPem: await readValue(id!.cert, baseDir, 'cert', path),
    caPem: await readValue(id!.ca, baseDir, 'ca', path),
    key,
  };
}

export async function writeIdentityFile(path: string, doc: IdentityFile): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(doc, null, 2) + '\n', 0o600);
}
