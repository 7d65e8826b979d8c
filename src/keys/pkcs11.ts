/**
 * PKCS#11 KeyStore: the identity key lives in a token (TPM through
 * tpm2-pkcs11, an HSM, a smart card, SoftHSM2 in tests) and never leaves it.
 *
 * - Keys are made in the token: EC P-256 (RSA 2048 only for modules without
 *   EC), CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false.
 * - One session per store, opened once and reused. Signatures use the
 *   module's asynchronous C_Sign (a TPM signature takes ~5 ms: the event
 *   loop must not wait for it) and are serialized per session, since a
 *   PKCS#11 session runs one operation at a time.
 * - A session that the module drops (CKR_SESSION_HANDLE_INVALID, a TPM reset,
 *   a token re-inserted) is reopened and the operation retried once.
 * - A wrong PIN is reported and never retried: retries lock tokens.
 */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { EdgeError } from '../errors.js';
import { formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Ref } from './pkcs11-uri.js';
import type { KeyAlgorithm, KeyStore } from './types.js';

type Pkcs11Module = typeof import('pkcs11js');
type Handle = Buffer;

/** DER OID of prime256v1 (CKA_EC_PARAMS for P-256) and secp384r1. */
const EC_PARAMS: Partial<Record<KeyAlgorithm, Buffer>> = {
  'ec-p256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'ec-p384': Buffer.from('06052b81040022', 'hex'),
};

/** Return values after which the session is reopened and the call retried once. */
const SESSION_LOST = new Set(['CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED', 'CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT', 'CKR_USER_NOT_LOGGED_IN']);
/** Return values after which the whole module is restarted first: its connection to the device is gone (TPM reset, swtpm restarted). */
const DEVICE_LOST = new Set(['CKR_DEVICE_ERROR', 'CKR_GENERAL_ERROR', 'CKR_FUNCTION_FAILED', 'CKR_CRYPTOKI_NOT_INITIALIZED']);

let pkcs11js: Pkcs11Module | undefined;

function lib(): Pkcs11Module {
  if (pkcs11js === undefined) {
    try {
      // Loaded on first use: routers without a token never load the addon.
      pkcs11js = createRequire(__filename_())('pkcs11js') as Pkcs11Module;
    } catch (err) {
      throw new EdgeError('ERR_KEY', `the pkcs11js addon cannot be loaded: ${(err as Error).message}`, { cause: err });
    }
  }
  return pkcs11js;
}

/** This file's path in both the ESM sources and the CJS bundle. */
function __filename_(): string {
  return typeof __filename === 'string' ? __filename : process.argv[1] ?? process.cwd();
}

/** One loaded module per path: C_Initialize may run only once per process. */
const modules = new Map<string, InstanceType<Pkcs11Module['PKCS11']>>();

function loadModule(path: string): InstanceType<Pkcs11Module['PKCS11']> {
  const cached = modules.get(path);
  if (cached !== undefined) return cached;
  if (!existsSync(path)) {
    throw new EdgeError('ERR_KEY', `PKCS#11 module not found: ${path} (install it, e.g. apt-get install softhsm2 or libtpm2-pkcs11-1, or fix module-path)`);
  }
  const { PKCS11 } = lib();
  const p11 = new PKCS11();
  try {
    p11.load(path);
    p11.C_Initialize({ flags: lib().CKF_OS_LOCKING_OK });
  } catch (err) {
    const code = ckr(err);
    if (code !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      throw new EdgeError('ERR_KEY', `PKCS#11 module ${path} failed to start (${code ?? (err as Error).message}); for a TPM, check that it is reachable (TPM2_PKCS11_TCTI)`, { cause: err });
    }
  }
  modules.set(path, p11);
  return p11;
}

/** The CKR_* name of a pkcs11js error, if it is one. */
function ckr(err: unknown): string | undefined {
  const m = /CKR_[A-Z_]+/.exec((err as Error)?.message ?? '');
  return m?.[0];
}

function readPin(ref: Pkcs11Ref): string {
  if (ref.pinValue !== undefined) return ref.pinValue;
  if (ref.pinSource !== undefined) {
    const path = ref.pinSource.startsWith('file:') ? ref.pinSource.slice(5).replace(/^\/\/(?=\/)/, '') : ref.pinSource;
    try {
      return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new EdgeError('ERR_KEY', `cannot read the PIN from pin-source ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  const env = process.env.ZTEDGE_PKCS11_PIN;
  if (env !== undefined) return env;
  throw new EdgeError('ERR_KEY', 'no PIN: add pin-source=file:/path to the URI, or set ZTEDGE_PKCS11_PIN');
}

export interface Pkcs11OpenOptions {
  /** Generate the key in the token if it does not exist yet. */
  create?: boolean;
  /** Algorithm for a generated key (ec-p256 by default; rsa-2048 for modules without EC). */
  algorithm?: KeyAlgorithm;
}

export class Pkcs11KeyStore implements KeyStore {
  readonly algorithm: KeyAlgorithm;
  readonly ref: string;
  /** True when this open generated the key. */
  readonly created: boolean;
  private readonly parsed: Pkcs11Ref;
  private readonly p11: InstanceType<Pkcs11Module['PKCS11']>;
  private slot: Handle;
  private readonly pin: string;
  private session: Handle | undefined;
  private privateKey: Handle | undefined;
  private readonly spki: Buffer;
  /** Tail of the sign queue: one operation at a time per session. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(parsed: Pkcs11Ref, p11: InstanceType<Pkcs11Module['PKCS11']>, slot: Handle, pin: string, opts: Pkcs11OpenOptions) {
    this.parsed = parsed;
    this.p11 = p11;
    this.slot = slot;
    this.pin = pin;
    this.openSession();
    let found = this.findKeys();
    let created = false;
    if (found === undefined) {
      if (opts.create !== true) {
        this.closeSession();
        throw new EdgeError('ERR_KEY', `no private key ${describeObject(parsed)} in token ${describeToken(parsed)}`);
      }
      found = this.generate(opts.algorithm ?? 'ec-p256');
      created = true;
    }
    this.privateKey = found.privateKey;
    this.spki = found.spki;
    this.algorithm = found.algorithm;
    this.created = created;
    // Name the key by label and id so a later open finds exactly this object.
    this.ref = formatPkcs11Uri({ ...parsed, objectId: parsed.objectId ?? found.id });
  }

  /**
   * Opens the key named by `uri` (RFC 7512 or OpenZiti's pkcs11:// form).
   * Throws ERR_KEY naming the cause: module, token, PIN, key or mechanism.
   */
  static open(uri: string, opts: Pkcs11OpenOptions = {}): Pkcs11KeyStore {
    const parsed = parsePkcs11Uri(uri);
    const p11 = loadModule(parsed.modulePath);
    const slot = findSlot(p11, parsed);
    return new Pkcs11KeyStore(parsed, p11, slot, readPin(parsed), opts);
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.spki);
  }

  sign(data: Uint8Array): Promise<Buffer> {
    if (this.closed) return Promise.reject(new EdgeError('ERR_KEY', 'the PKCS#11 key store is closed'));
    const run = (): Promise<Buffer> => this.withSession(() => this.signOnce(data));
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.closeSession();
  }

  // ---- internals -------------------------------------------------------

  private async signOnce(data: Uint8Array): Promise<Buffer> {
    const { CKM_ECDSA, CKM_SHA256_RSA_PKCS } = lib();
    const session = this.session!;
    const isEc = this.algorithm.startsWith('ec-');
    // ECDSA in tokens signs a digest we compute; RSA hashes inside the token.
    const input = isEc ? createHash('sha256').update(data).digest() : Buffer.from(data);
    this.p11.C_SignInit(session, { mechanism: isEc ? CKM_ECDSA : CKM_SHA256_RSA_PKCS }, this.privateKey!);
    return this.p11.C_SignAsync(session, input, Buffer.alloc(isEc ? 132 : 1024));
  }

  /** Runs `op`; if the module lost the session, reopens it, logs in again and retries once. */
  private async withSession<T>(op: () => Promise<T>): Promise<T> {
    try {
      if (this.session === undefined) this.reopen();
      return await op();
    } catch (err) {
      const code = ckr(err);
      if (code === undefined || (!SESSION_LOST.has(code) && !DEVICE_LOST.has(code))) throw this.mapError(err, 'sign');
      try {
        if (DEVICE_LOST.has(code)) this.restartModule();
        this.reopen();
        return await op();
      } catch (again) {
        throw this.mapError(again, 'sign after reopening the session');
      }
    }
  }

  /**
   * Finalizes and re-initializes the module so it reconnects to its device.
   * Other stores on the same module then see CKR_SESSION_HANDLE_INVALID and
   * reopen their sessions on their next call.
   */
  private restartModule(): void {
    this.session = undefined;
    try {
      this.p11.C_Finalize();
    } catch { /* already finalized or the device is gone */ }
    try {
      this.p11.C_Initialize({ flags: lib().CKF_OS_LOCKING_OK });
    } catch (err) {
      if (ckr(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw this.mapError(err, 'restart the module');
    }
    this.slot = findSlot(this.p11, this.parsed);
  }

  private reopen(): void {
    this.closeSession();
    this.openSession();
    const keys = this.findKeys();
    if (keys === undefined) throw new EdgeError('ERR_KEY', `the key ${describeObject(this.parsed)} is gone from token ${describeToken(this.parsed)}`);
    this.privateKey = keys.privateKey;
  }

  private openSession(): void {
    const { CKF_SERIAL_SESSION, CKF_RW_SESSION, CKU_USER } = lib();
    try {
      this.session = this.p11.C_OpenSession(this.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    } catch (err) {
      throw this.mapError(err, 'open a session');
    }
    try {
      this.p11.C_Login(this.session, CKU_USER, this.pin);
    } catch (err) {
      const code = ckr(err);
      if (code !== 'CKR_USER_ALREADY_LOGGED_IN') {
        this.closeSession();
        throw this.mapError(err, 'log in');
      }
    }
  }

  private closeSession(): void {
    if (this.session === undefined) return;
    try {
      this.p11.C_CloseSession(this.session);
    } catch { /* already gone with the device */ }
    this.session = undefined;
  }

  private findObjects(template: { type: number; value: unknown }[]): Handle[] {
    const session = this.session!;
    this.p11.C_FindObjectsInit(session, template as never);
    try {
      return this.p11.C_FindObjects(session, 16);
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }

  private keyTemplate(cls: number): { type: number; value: unknown }[] {
    const { CKA_CLASS, CKA_LABEL, CKA_ID } = lib();
    const t: { type: number; value: unknown }[] = [{ type: CKA_CLASS, value: cls }];
    if (this.parsed.objectLabel !== undefined) t.push({ type: CKA_LABEL, value: this.parsed.objectLabel });
    if (this.parsed.objectId !== undefined) t.push({ type: CKA_ID, value: this.parsed.objectId });
    return t;
  }

  private findKeys(): { privateKey: Handle; spki: Buffer; algorithm: KeyAlgorithm; id: Buffer } | undefined {
    const { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKA_ID, CKA_KEY_TYPE, CKK_EC, CKK_RSA } = lib();
    let priv: Handle[];
    try {
      priv = this.findObjects(this.keyTemplate(CKO_PRIVATE_KEY));
    } catch (err) {
      throw this.mapError(err, 'search the token');
    }
    if (priv.length === 0) return undefined;
    if (priv.length > 1) throw new EdgeError('ERR_KEY', `${priv.length} private keys match ${describeObject(this.parsed)}: add id=… to the URI`);
    const privateKey = priv[0]!;
    const attrs = this.p11.C_GetAttributeValue(this.session!, privateKey, [{ type: CKA_ID }, { type: CKA_KEY_TYPE }]);
    const id = (attrs[0]!.value as Buffer | undefined) ?? Buffer.alloc(0);
    const keyType = ulong(attrs[1]!.value as Buffer);
    // The public half carries the key material; find it by the private key's id.
    const pubTemplate = [{ type: lib().CKA_CLASS, value: CKO_PUBLIC_KEY }, { type: CKA_ID, value: id }];
    const pub = this.findObjects(pubTemplate)[0];
    if (pub === undefined) throw new EdgeError('ERR_KEY', `the token holds no public key beside ${describeObject(this.parsed)}; it is needed for the certificate`);
    if (keyType === CKK_EC) return { privateKey, id, ...this.ecPublicKey(pub) };
    if (keyType === CKK_RSA) return { privateKey, id, ...this.rsaPublicKey(pub) };
    throw new EdgeError('ERR_KEY', `key type ${keyType} in the token is not supported (EC P-256/P-384 or RSA)`);
  }

  private ecPublicKey(pub: Handle): { spki: Buffer; algorithm: KeyAlgorithm } {
    const { CKA_EC_POINT, CKA_EC_PARAMS } = lib();
    const [point, params] = this.p11.C_GetAttributeValue(this.session!, pub, [{ type: CKA_EC_POINT }, { type: CKA_EC_PARAMS }]);
    const ecParams = params!.value as Buffer;
    const algorithm = (Object.keys(EC_PARAMS) as KeyAlgorithm[]).find((a) => EC_PARAMS[a]!.equals(ecParams));
    if (algorithm === undefined) throw new EdgeError('ERR_KEY', `EC curve ${ecParams.toString('hex')} in the token is not supported (P-256 or P-384)`);
    let raw = point!.value as Buffer;
    // CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some modules give the bare point.
    if (raw[0] === 0x04 && raw.length > 2 && raw[1] === raw.length - 2) raw = raw.subarray(2);
    else if (raw[0] === 0x04 && raw[1] === 0x81) raw = raw.subarray(3);
    const size = algorithm === 'ec-p256' ? 32 : 48;
    const jwk = { kty: 'EC', crv: algorithm === 'ec-p256' ? 'P-256' : 'P-384', x: raw.subarray(1, 1 + size).toString('base64url'), y: raw.subarray(1 + size).toString('base64url') };
    try {
      return { spki: createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' }), algorithm };
    } catch (err) {
      throw new EdgeError('ERR_KEY', `the token's EC public key cannot be read: ${(err as Error).message}`, { cause: err });
    }
  }

  private rsaPublicKey(pub: Handle): { spki: Buffer; algorithm: KeyAlgorithm } {
    const { CKA_MODULUS, CKA_PUBLIC_EXPONENT } = lib();
    const [n, e] = this.p11.C_GetAttributeValue(this.session!, pub, [{ type: CKA_MODULUS }, { type: CKA_PUBLIC_EXPONENT }]);
    const modulus = n!.value as Buffer;
    const bits = modulus.length * 8;
    const algorithm: KeyAlgorithm = bits >= 4096 ? 'rsa-4096' : bits >= 3072 ? 'rsa-3072' : 'rsa-2048';
    const jwk = { kty: 'RSA', n: modulus.toString('base64url'), e: (e!.value as Buffer).toString('base64url') };
    return { spki: createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' }), algorithm };
  }

  /** Makes a non-extractable key pair in the token, labelled and identified as the URI says. */
  private generate(algorithm: KeyAlgorithm): { privateKey: Handle; spki: Buffer; algorithm: KeyAlgorithm; id: Buffer } {
    const P = lib();
    const label = this.parsed.objectLabel ?? 'ztedge-key';
    const id = this.parsed.objectId ?? randomBytes(8);
    const common = [
      { type: P.CKA_TOKEN, value: true }, { type: P.CKA_LABEL, value: label }, { type: P.CKA_ID, value: id },
    ];
    const isEc = algorithm.startsWith('ec-');
    if (!isEc && algorithm !== 'rsa-2048') throw new EdgeError('ERR_KEY', `keys of type ${algorithm} are not generated in tokens (ec-p256, ec-p384 or rsa-2048)`);
    const publicTemplate = isEc
      ? [...common, { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }, { type: P.CKA_KEY_TYPE, value: P.CKK_EC }, { type: P.CKA_VERIFY, value: true }, { type: P.CKA_EC_PARAMS, value: EC_PARAMS[algorithm] }]
      : [...common, { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }, { type: P.CKA_KEY_TYPE, value: P.CKK_RSA }, { type: P.CKA_VERIFY, value: true }, { type: P.CKA_MODULUS_BITS, value: 2048 }, { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }];
    const privateTemplate = [
      ...common,
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY }, { type: P.CKA_KEY_TYPE, value: isEc ? P.CKK_EC : P.CKK_RSA },
      { type: P.CKA_PRIVATE, value: true }, { type: P.CKA_SIGN, value: true },
      { type: P.CKA_SENSITIVE, value: true }, { type: P.CKA_EXTRACTABLE, value: false },
    ];
    try {
      this.p11.C_GenerateKeyPair(this.session!, { mechanism: isEc ? P.CKM_EC_KEY_PAIR_GEN : P.CKM_RSA_PKCS_KEY_PAIR_GEN }, publicTemplate as never, privateTemplate as never);
    } catch (err) {
      throw this.mapError(err, `generate a ${algorithm} key`);
    }
    const keys = this.findKeys();
    if (keys === undefined) throw new EdgeError('ERR_KEY', 'the token did not keep the generated key');
    return { ...keys, id };
  }

  private mapError(err: unknown, doing: string): EdgeError {
    if (err instanceof EdgeError) return err;
    const code = ckr(err);
    const where = `token ${describeToken(this.parsed)}`;
    switch (code) {
      case 'CKR_PIN_INCORRECT':
        return new EdgeError('ERR_KEY', `wrong PIN for ${where} (not retried: repeated wrong PINs lock tokens)`, { cause: err });
      case 'CKR_PIN_LOCKED':
        return new EdgeError('ERR_KEY', `the PIN of ${where} is locked; unlock it with the SO PIN`, { cause: err });
      case 'CKR_MECHANISM_INVALID': case 'CKR_MECHANISM_PARAM_INVALID': case 'CKR_KEY_TYPE_INCONSISTENT': case 'CKR_TEMPLATE_INCONSISTENT': case 'CKR_ATTRIBUTE_VALUE_INVALID':
        return new EdgeError('ERR_KEY', `${where} does not support this mechanism (${code}) when trying to ${doing}`, { cause: err });
      default:
        return new EdgeError('ERR_KEY', `PKCS#11 failed to ${doing} on ${where}: ${code ?? (err as Error).message}`, { cause: err });
    }
  }
}

function describeToken(ref: Pkcs11Ref): string {
  return ref.tokenLabel !== undefined ? `"${ref.tokenLabel}"` : `in slot ${ref.slotId ?? '?'}`;
}

function describeObject(ref: Pkcs11Ref): string {
  const parts: string[] = [];
  if (ref.objectLabel !== undefined) parts.push(`object="${ref.objectLabel}"`);
  if (ref.objectId !== undefined) parts.push(`id=${ref.objectId.toString('hex')}`);
  return parts.join(' ');
}

function findSlot(p11: InstanceType<Pkcs11Module['PKCS11']>, ref: Pkcs11Ref): Handle {
  let slots: Handle[];
  try {
    slots = p11.C_GetSlotList(true);
  } catch (err) {
    throw new EdgeError('ERR_KEY', `cannot list the slots of ${ref.modulePath}: ${ckr(err) ?? (err as Error).message}`, { cause: err });
  }
  const labels: string[] = [];
  for (const slot of slots) {
    // Slot ids change when SoftHSM re-initializes tokens: a label is the stable name.
    const label = p11.C_GetTokenInfo(slot).label.trim();
    labels.push(label);
    const slotNumber = ulong(slot);
    if (ref.tokenLabel !== undefined ? label === ref.tokenLabel : slotNumber === ref.slotId) return slot;
  }
  const want = describeToken(ref);
  const named = labels.filter((l) => l !== "");
  throw new EdgeError("ERR_KEY", `token ${want} not found in ${ref.modulePath}; tokens present: ${named.length === 0 ? "none" : named.map((l) => `"${l}"`).join(", ")}`);
}

/** A CK_ULONG as the module wrote it (native byte order, 4 or 8 bytes). */
function ulong(b: Buffer): number {
  return b.length === 8 ? Number(b.readBigUInt64LE(0)) : b.length === 4 ? b.readUInt32LE(0) : b.readUIntLE(0, Math.min(b.length, 6));
}
