/**
 * Posture check types and the checks of their data, at the edge of the
 * management API (`POST/PATCH/PUT /posture-checks`), so routers only ever
 * evaluate valid checks (src/policy/posture.ts). The fields are OpenZiti's
 * (management.yml postureCheck*Create), flat in the request body:
 *
 *   MAC            macAddresses: ["aa:bb:cc:dd:ee:ff", …]
 *   OS             operatingSystems: [{type: "Linux", versions: [">=5.10 <7", "6.1"]}]
 *   PROCESS        process: {osType, path, hashes?: [SHA-512 hex], signerFingerprint?: SHA-1 hex}
 *   PROCESS_MULTI  semantic: AllOf|AnyOf, processes: [{osType, path, hashes?, signerFingerprints?}]
 *   DOMAIN         domains: ["corp.example", …]
 *   MFA            timeoutSeconds (-1: never), promptOnWake, promptOnUnlock, ignoreLegacyEndpoints
 *
 * TypeBox checks the shape; code below checks what JSON Schema says badly
 * (MAC syntax, version ranges, absolute paths, hex digests), and normalises
 * digests to lower-case hex without separators.
 */
import { Type, type TObject, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { EdgeError } from '../errors.js';
import { parseVersionRange, type OsType, type PostureCheck, type PostureCheckType } from '../policy/posture.js';
import { isHostname } from './addresses.js';
import { firstSchemaProblem } from './config-types.js';

export const OS_TYPES: readonly OsType[] = ['Windows', 'WindowsServer', 'Android', 'iOS', 'Linux', 'macOS'];
export const POSTURE_CHECK_TYPES: readonly PostureCheckType[] = ['MAC', 'OS', 'PROCESS', 'PROCESS_MULTI', 'DOMAIN', 'MFA'];

const OsTypeSchema = Type.Union(OS_TYPES.map((t) => Type.Literal(t)));
const Path = Type.String({ minLength: 1, maxLength: 1024 });
const Hashes = Type.Array(Type.String({ maxLength: 256 }), { maxItems: 64 });
const Fingerprint = Type.String({ maxLength: 256 });

const SCHEMAS: Record<PostureCheckType, TObject> = {
  MAC: Type.Object({ macAddresses: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 256 }) }, { additionalProperties: false }),
  OS: Type.Object({
    operatingSystems: Type.Array(Type.Object({
      type: OsTypeSchema,
      versions: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 64 }),
    }, { additionalProperties: false }), { minItems: 1, maxItems: 16 }),
  }, { additionalProperties: false }),
  PROCESS: Type.Object({
    process: Type.Object({ osType: OsTypeSchema, path: Path, hashes: Type.Optional(Hashes), signerFingerprint: Type.Optional(Fingerprint) }, { additionalProperties: false }),
  }, { additionalProperties: false }),
  PROCESS_MULTI: Type.Object({
    semantic: Type.Union([Type.Literal('AllOf'), Type.Literal('AnyOf')]),
    processes: Type.Array(Type.Object({
      osType: OsTypeSchema, path: Path, hashes: Type.Optional(Hashes), signerFingerprints: Type.Optional(Type.Array(Fingerprint, { maxItems: 64 })),
    }, { additionalProperties: false }), { minItems: 1, maxItems: 64 }),
  }, { additionalProperties: false }),
  DOMAIN: Type.Object({ domains: Type.Array(Type.String({ maxLength: 253 }), { minItems: 1, maxItems: 256 }) }, { additionalProperties: false }),
  MFA: Type.Object({
    timeoutSeconds: Type.Integer({ minimum: -1, maximum: 31_536_000, description: 'seconds an MFA stays good for this check; -1 (or 0): no timeout' }),
    promptOnWake: Type.Boolean(),
    promptOnUnlock: Type.Boolean(),
    ignoreLegacyEndpoints: Type.Boolean(),
  }, { additionalProperties: false }),
};

const CHECKS = Object.fromEntries(POSTURE_CHECK_TYPES.map((t) => [t, TypeCompiler.Compile(SCHEMAS[t])])) as unknown as Record<PostureCheckType, TypeCheck<TSchema>>;

/** The body fields that hold each type's data. */
export const DATA_FIELDS = Object.fromEntries(POSTURE_CHECK_TYPES.map((t) => [t, Object.keys(SCHEMAS[t].properties)])) as unknown as Record<PostureCheckType, readonly string[]>;

/** MFA fields a body may leave out, and their values (OpenZiti's defaults). */
const MFA_DEFAULTS = { timeoutSeconds: -1, promptOnWake: false, promptOnUnlock: false, ignoreLegacyEndpoints: false };

const MAC = /^(?:[0-9A-Fa-f]{2}(?:[:-]?[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})$/;
const SHA512_HEX = /^[0-9a-f]{128}$/;
const SHA1_HEX = /^[0-9a-f]{40}$/;

/** "AB:CD…" → "abcd…": digests are compared as lower-case hex without separators. */
function hex(s: string): string {
  return s.toLowerCase().replace(/[:\s]/g, '');
}

function isAbsolutePath(p: string): boolean {
  return p.startsWith('/') || /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');
}

type Problem = [field: string, message: string];

function checkHashes(list: readonly string[] | undefined, field: string): Problem | undefined {
  const i = (list ?? []).findIndex((h) => !SHA512_HEX.test(hex(h)));
  return i < 0 ? undefined : [`${field}[${i}]`, 'must be a SHA-512 digest: 128 hex digits'];
}

const FINGERPRINT = 'must be a SHA-1 certificate fingerprint: 40 hex digits (colons allowed)';

function checkFingerprints(list: readonly string[] | undefined, field: string): Problem | undefined {
  const i = (list ?? []).findIndex((f) => !SHA1_HEX.test(hex(f)));
  return i < 0 ? undefined : [`${field}[${i}]`, FINGERPRINT];
}

function checkProcess(p: { path: string; hashes?: string[] }, field: string): Problem | undefined {
  if (!isAbsolutePath(p.path)) return [`${field}.path`, `"${p.path}" is not an absolute path`];
  return checkHashes(p.hashes, `${field}.hashes`);
}

/** What JSON Schema cannot say: the first problem as [field, message]. */
function semantic(type: PostureCheckType, d: Record<string, any>): Problem | undefined {
  switch (type) {
    case 'MAC': {
      const i = (d.macAddresses as string[]).findIndex((m) => !MAC.test(m));
      return i < 0 ? undefined : [`macAddresses[${i}]`, `"${d.macAddresses[i]}" is not a MAC address (six hex octets, e.g. aa:bb:cc:dd:ee:ff)`];
    }
    case 'OS':
      for (const [i, os] of (d.operatingSystems as { versions: string[] }[]).entries()) {
        for (const [j, v] of os.versions.entries()) {
          const r = parseVersionRange(v);
          if (typeof r === 'string') return [`operatingSystems[${i}].versions[${j}]`, r];
        }
      }
      return undefined;
    case 'PROCESS': {
      const fp = d.process.signerFingerprint as string | undefined;
      return checkProcess(d.process, 'process') ?? (fp !== undefined && !SHA1_HEX.test(hex(fp)) ? ['process.signerFingerprint', FINGERPRINT] : undefined);
    }
    case 'PROCESS_MULTI':
      for (const [i, p] of (d.processes as { path: string; hashes?: string[]; signerFingerprints?: string[] }[]).entries()) {
        const bad = checkProcess(p, `processes[${i}]`) ?? checkFingerprints(p.signerFingerprints, `processes[${i}].signerFingerprints`);
        if (bad !== undefined) return bad;
      }
      return undefined;
    case 'DOMAIN': {
      const i = (d.domains as string[]).findIndex((x) => !isHostname(x));
      return i < 0 ? undefined : [`domains[${i}]`, `"${d.domains[i]}" is not a domain name`];
    }
    case 'MFA':
      return undefined;
  }
}

/** Lower-case, separator-free digests, so lists show and compare one way. */
function normalize(type: PostureCheckType, d: Record<string, any>): Record<string, unknown> {
  const proc = (p: Record<string, any>): Record<string, unknown> => ({
    ...p,
    ...(p.hashes !== undefined ? { hashes: (p.hashes as string[]).map(hex) } : {}),
    ...(p.signerFingerprint !== undefined ? { signerFingerprint: hex(p.signerFingerprint) } : {}),
    ...(p.signerFingerprints !== undefined ? { signerFingerprints: (p.signerFingerprints as string[]).map(hex) } : {}),
  });
  if (type === 'PROCESS') return { process: proc(d.process) };
  if (type === 'PROCESS_MULTI') return { semantic: d.semantic, processes: (d.processes as Record<string, any>[]).map(proc) };
  return d;
}

export function isPostureCheckType(s: unknown): s is PostureCheckType {
  return POSTURE_CHECK_TYPES.includes(s as PostureCheckType);
}

/**
 * A check's data from request body fields (only the type's own fields are
 * read; MFA fields left out take their defaults), checked and normalised.
 * Throws ERR_INVALID_ARGUMENT naming the first bad field, for example
 * `operatingSystems[0].versions[1]`.
 */
export function postureCheckData(type: PostureCheckType, body: Record<string, unknown>): PostureCheck['data'] {
  const d: Record<string, unknown> = type === 'MFA' ? { ...MFA_DEFAULTS } : {};
  for (const f of DATA_FIELDS[type]) if (body[f] !== undefined) d[f] = body[f];
  const bad = firstSchemaProblem(CHECKS[type], d, '', `a ${type} posture check`) ?? semantic(type, d);
  if (bad !== undefined) throw new EdgeError('ERR_INVALID_ARGUMENT', `invalid ${type} posture check: ${bad[0]}: ${bad[1]}`, { details: { field: bad[0] } });
  return normalize(type, d) as unknown as PostureCheck['data'];
}
