/**
 * File KeyStore: a PKCS#8 PEM private key on disk, mode 0600. Created with
 * O_EXCL so an existing key is never overwritten; an existing key is reused,
 * which lets an interrupted enrollment be retried with the same key.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { EdgeError } from '../errors.js';
import type { KeyAlgorithm, KeyStore } from './types.js';

export class FileKeyStore implements KeyStore {
  readonly algorithm: KeyAlgorithm;
  readonly ref: string;
  private readonly privateKey: KeyObject;
  private readonly spki: Buffer;

  constructor(privateKey: KeyObject, ref: string) {
    this.privateKey = privateKey;
    this.ref = ref;
    this.algorithm = algorithmOf(privateKey);
    this.spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  }

  /** Opens the key at `path`; creates a new key there first if the file does not exist. */
  static async openOrCreate(path: string, algorithm: KeyAlgorithm = 'ec-p256'): Promise<{ store: FileKeyStore; created: boolean }> {
    const existing = await readIfExists(path);
    if (existing !== undefined) return { store: FileKeyStore.fromPem(existing, fileRef(path)), created: false };
    const pem = generatePrivateKeyPem(algorithm);
    try {
      // 'wx': fail if it appeared meanwhile; mode 0600 from the first byte on disk.
      await fs.writeFile(path, pem, { flag: 'wx', mode: 0o600 });
    } catch (err) {
      throw new EdgeError('ERR_KEY', `cannot write key file ${path}: ${(err as Error).message}`, { cause: err });
    }
    return { store: new FileKeyStore(createPrivateKey(pem), fileRef(path)), created: true };
  }

  static async open(path: string): Promise<FileKeyStore> {
    const pem = await readIfExists(path);
    if (pem === undefined) throw new EdgeError('ERR_KEY', `key file not found: ${path}`);
    return FileKeyStore.fromPem(pem, fileRef(path));
  }

  static fromPem(pem: string, ref: string): FileKeyStore {
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (err) {
      throw new EdgeError('ERR_KEY', `not a PEM private key: ${ref}`, { cause: err });
    }
    return new FileKeyStore(key, ref);
  }

  /** The private key object, for Node's TLS client certificate (file keys only). */
  keyObject(): KeyObject {
    return this.privateKey;
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.spki);
  }

  sign(data: Uint8Array): Promise<Buffer> {
    const hash = this.algorithm === 'ed25519' ? null : 'sha256';
    const sig = cryptoSign(hash, data, { key: this.privateKey, dsaEncoding: 'ieee-p1363' });
    return Promise.resolve(sig);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new EdgeError('ERR_KEY', `cannot read key file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function fileRef(path: string): string {
  return pathToFileURL(path).href;
}

export function generatePrivateKeyPem(algorithm: KeyAlgorithm): string {
  const key = (() => {
    switch (algorithm) {
      case 'ec-p256': return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      case 'ec-p384': return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
      case 'rsa-2048': return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      case 'rsa-3072': return generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
      case 'rsa-4096': return generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey;
      case 'ed25519': return generateKeyPairSync('ed25519').privateKey;
    }
  })();
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Maps a Node key object to our algorithm name, refusing what we do not support. */
export function algorithmOf(key: KeyObject): KeyAlgorithm {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (d.namedCurve === 'prime256v1' || d.namedCurve === 'P-256') return 'ec-p256';
      if (d.namedCurve === 'secp384r1' || d.namedCurve === 'P-384') return 'ec-p384';
      break;
    case 'rsa':
      if (d.modulusLength === 2048) return 'rsa-2048';
      if (d.modulusLength === 3072) return 'rsa-3072';
      if (d.modulusLength === 4096) return 'rsa-4096';
      break;
    case 'ed25519':
      return 'ed25519';
  }
  throw new EdgeError('ERR_KEY', `unsupported key type ${key.asymmetricKeyType} ${JSON.stringify(d)}`);
}
