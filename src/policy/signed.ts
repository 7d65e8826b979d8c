/**
 * Signed policy snapshots: what the controller sends and routers cache.
 *
 * Format: JWS compact serialization (RFC 7515) with ES256 (RFC 7518 §3.4):
 *
 *   base64url(header) "." base64url(snapshot JSON) "." base64url(r || s)
 *   header = {"alg":"ES256","typ":"ztedge-policy+jws","x5c":[signer certificate, base64 DER]}
 *
 * A router accepts a snapshot only if the signer certificate was issued by
 * its controller CA bundle, is valid now, has CN = ztedge-policy-signer, and
 * its key verifies the signature over exactly these bytes. The snapshot
 * itself is then shape-checked (parseSnapshot). Any failure refuses the
 * whole snapshot: a router never uses part of one. Pure: no I/O.
 */
import { sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { EdgeError } from '../errors.js';
import { parseSnapshot, type PolicySnapshot } from './snapshot.js';

/** The common name of the certificate that signs policy snapshots (issued by the controller's intermediate). */
export const POLICY_SIGNER_CN = 'ztedge-policy-signer';
export const POLICY_JWS_TYPE = 'ztedge-policy+jws';
/** A delta between two revisions of a router's snapshot (src/policy/delta.ts). */
export const POLICY_DELTA_JWS_TYPE = 'ztedge-policy-delta+jws';
/** Refuse absurd inputs before parsing them (a snapshot of 10,000 identities is a few MB). */
export const MAX_SIGNED_SNAPSHOT_BYTES = 64 * 1024 * 1024;

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

export interface PolicySigner { key: KeyObject; certDer: Buffer }

/** Signs any JSON payload as a compact JWS of type `typ` with the policy signer's key. */
export function signJws(payload: unknown, typ: string, signer: PolicySigner): string {
  const header = b64url(JSON.stringify({ alg: 'ES256', typ, x5c: [signer.certDer.toString('base64')] }));
  const body = b64url(JSON.stringify(payload));
  const signature = sign('sha256', Buffer.from(`${header}.${body}`), { key: signer.key, dsaEncoding: 'ieee-p1363' });
  return `${header}.${body}.${b64url(signature)}`;
}

/** Signs `snapshot` with the policy signer's key; the result is what routers receive and cache. */
export function signSnapshot(snapshot: PolicySnapshot, signer: PolicySigner): string {
  return signJws(snapshot, POLICY_JWS_TYPE, signer);
}

function refuse(message: string): never {
  throw new EdgeError('ERR_POLICY_SIGNATURE', `policy snapshot refused: ${message}`);
}

/**
 * Verifies a signed snapshot against the controller CA bundle and returns
 * the snapshot. Throws ERR_POLICY_SIGNATURE (not signed by the controller's
 * policy signer) or ERR_POLICY_SNAPSHOT (signed, but malformed).
 */
export function verifySignedSnapshot(jws: string, cas: readonly X509Certificate[], now: number): PolicySnapshot {
  return parseSnapshot(verifyJws(jws, POLICY_JWS_TYPE, cas, now));
}

/**
 * Verifies a compact JWS of type `typ` signed by the controller's policy
 * signer and returns its parsed payload (not yet shape-checked).
 */
export function verifyJws(jws: string, typ: string, cas: readonly X509Certificate[], now: number): unknown {
  if (jws.length > MAX_SIGNED_SNAPSHOT_BYTES) refuse(`larger than ${MAX_SIGNED_SNAPSHOT_BYTES} bytes`);
  const parts = jws.trim().split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) refuse('not a JWS compact serialization');
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: unknown; typ?: unknown; x5c?: unknown };
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof header;
  } catch {
    refuse('the header is not JSON');
  }
  if (header === null || typeof header !== 'object') refuse('the header is not an object');
  if (header.alg !== 'ES256') refuse(`algorithm ${JSON.stringify(header.alg)} is not ES256`);
  if (header.typ !== typ) refuse(`type ${JSON.stringify(header.typ)} is not ${typ}`);
  if (!Array.isArray(header.x5c) || typeof header.x5c[0] !== 'string') refuse('no signer certificate (x5c)');
  let signer: X509Certificate;
  try {
    signer = new X509Certificate(Buffer.from(header.x5c[0], 'base64'));
  } catch {
    refuse('the signer certificate cannot be parsed');
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(signer.subject)?.[1];
  if (cn !== POLICY_SIGNER_CN) refuse(`signed by "${cn ?? '(no CN)'}", not the controller's policy signer`);
  if (signer.ca) refuse('the signer certificate is a CA');
  if (!cas.some((ca) => signer.checkIssued(ca) && signer.verify(ca.publicKey))) refuse('the signer certificate is not issued by this router\'s controller CA');
  if (Date.parse(signer.validFrom) > now || Date.parse(signer.validTo) < now) refuse(`the signer certificate is not valid now (valid ${signer.validFrom} to ${signer.validTo})`);
  const ok = verify('sha256', Buffer.from(`${h}.${p}`), { key: signer.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'));
  if (!ok) refuse('the signature does not verify');
  try {
    return JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as unknown;
  } catch {
    throw new EdgeError('ERR_POLICY_SNAPSHOT', 'policy snapshot is malformed: the payload is not JSON');
  }
}
