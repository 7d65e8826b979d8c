/**
 * Posture checks: does the device behind an identity satisfy a check (MAC,
 * OS, PROCESS, PROCESS_MULTI, DOMAIN, MFA)? Pure: no I/O, no clock (`now`,
 * in ms since the epoch, is a parameter), no logging. decide() (index.ts)
 * calls evaluatePolicyPosture for each policy that names posture checks;
 * routers run it on the checks and posture data carried in their snapshot.
 *
 *   posture responses ──► applyPostureResponses() ──► PostureData (latest, per identity)
 *                                                           │
 *   policy.postureCheckRoles ──► evaluatePolicyPosture(roles, semantic, checks, data, now)
 *                                     │ every check the roles select must pass
 *                                     └──► evaluatePostureCheck(check, data, now) ──► {pass, reason}
 *
 * Shapes follow OpenZiti: check data as in management.yml postureCheck*Create,
 * responses as in client.yml postureResponse*Create. Semantics follow OpenZiti's
 * controller (controller/model/posture_check_*.go) except where noted:
 *   MAC       any reported address is listed. We also normalise case and the
 *             separators (`:`, `-`, `.`, none); OpenZiti compares strings.
 *   OS        the reported type (case-insensitive) is listed; if that entry
 *             has versions, the reported version satisfies one of them (see
 *             versionSatisfies). Several entries for one type: the last wins,
 *             as in OpenZiti.
 *   PROCESS   the process at `path` runs; if `hashes` are given its SHA-512
 *             (hex, any case) is one of them; if `signerFingerprint` is given
 *             it is among the reported signers. Paths compare case-sensitively
 *             except for Windows and macOS checks (as the OpenZiti SDKs do).
 *   PROCESS_MULTI  AllOf: every listed process qualifies; AnyOf: one does.
 *             An empty list fails (OpenZiti would pass AllOf over nothing).
 *   DOMAIN    the reported domain equals one listed, case-insensitively.
 *   MFA       MFA passed, within `timeoutSeconds` of now when that is > 0;
 *             promptOnWake / promptOnUnlock: a wake or unlock after the MFA
 *             fails the check once OpenZiti's 5-minute grace has run out.
 *             ignoreLegacyEndpoints concerns old OpenZiti SDKs and is ignored.
 * Missing data fails. Reported data (all but MFA, which carries its own
 * timeout) older than `maxAgeMs` fails: a device that stopped reporting does
 * not keep its last good posture forever.
 */
import { matchesRoles, type Semantic } from './index.js';
// index.ts imports this module too (decide() calls evaluatePolicyPosture);
// only functions cross the cycle, and only at call time, so load order is moot.

export type PostureCheckType = 'MAC' | 'OS' | 'PROCESS' | 'PROCESS_MULTI' | 'DOMAIN' | 'MFA';
export type OsType = 'Windows' | 'WindowsServer' | 'Android' | 'iOS' | 'Linux' | 'macOS';

export interface MacCheckData {
  readonly macAddresses: readonly string[];
}
export interface OperatingSystem {
  readonly type: OsType;
  /** Version ranges (versionSatisfies); empty means any version. */
  readonly versions: readonly string[];
}
export interface OsCheckData {
  readonly operatingSystems: readonly OperatingSystem[];
}
export interface ProcessSpec {
  readonly osType: OsType;
  readonly path: string;
  /** SHA-512 of the executable, hex. */
  readonly hashes?: readonly string[];
  readonly signerFingerprint?: string;
}
export interface ProcessCheckData {
  readonly process: ProcessSpec;
}
export interface ProcessMultiSpec {
  readonly osType: OsType;
  readonly path: string;
  readonly hashes?: readonly string[];
  readonly signerFingerprints?: readonly string[];
}
export interface ProcessMultiCheckData {
  readonly semantic: Semantic;
  readonly processes: readonly ProcessMultiSpec[];
}
export interface DomainCheckData {
  readonly domains: readonly string[];
}
export interface MfaCheckData {
  /** Seconds an MFA stays good; 0 or less (or absent): no timeout. */
  readonly timeoutSeconds?: number;
  readonly promptOnWake?: boolean;
  readonly promptOnUnlock?: boolean;
  readonly ignoreLegacyEndpoints?: boolean;
}

interface CheckOf<T extends PostureCheckType, D> {
  readonly id: string;
  readonly name: string;
  readonly typeId: T;
  readonly roleAttributes: readonly string[];
  readonly data: D;
}

/** A posture check; its `id`, `name` and `roleAttributes` are what postureCheckRoles select. */
export type PostureCheck =
  | CheckOf<'MAC', MacCheckData>
  | CheckOf<'OS', OsCheckData>
  | CheckOf<'PROCESS', ProcessCheckData>
  | CheckOf<'PROCESS_MULTI', ProcessMultiCheckData>
  | CheckOf<'DOMAIN', DomainCheckData>
  | CheckOf<'MFA', MfaCheckData>;

/** One watched process as last reported; `at` is when (ISO 8601). */
export interface ProcessPosture {
  readonly path: string;
  readonly isRunning: boolean;
  /** SHA-512 of the executable, hex. */
  readonly hash?: string;
  readonly signerFingerprints?: readonly string[];
  readonly at: string;
}

/** The latest posture of one identity's device. Times are ISO 8601 strings. */
export interface PostureData {
  readonly mac?: { readonly macAddresses: readonly string[]; readonly at: string };
  readonly os?: { readonly type: string; readonly version: string; readonly build?: string; readonly at: string };
  readonly processes?: readonly ProcessPosture[];
  readonly domain?: { readonly domain: string; readonly at: string };
  /** `wokenAt` / `unlockedAt`: the last endpoint-state events (promptOnWake / promptOnUnlock). */
  readonly mfa?: { readonly passedAt: string; readonly wokenAt?: string; readonly unlockedAt?: string };
}

/**
 * A device's report, as OpenZiti's postureResponse*Create (client.yml). `id`
 * is the posture query (check) id in OpenZiti; a collector that reports
 * without knowing the checks uses a stable id per item instead.
 */
export type PostureResponse =
  | { readonly id: string; readonly typeId: 'MAC'; readonly macAddresses: readonly string[] }
  | { readonly id: string; readonly typeId: 'OS'; readonly type: string; readonly version: string; readonly build?: string }
  | {
      readonly id: string;
      readonly typeId: 'PROCESS';
      readonly path: string;
      readonly isRunning: boolean;
      readonly hash?: string;
      readonly signerFingerprints?: readonly string[];
    }
  | { readonly id: string; readonly typeId: 'DOMAIN'; readonly domain: string };

export interface PostureResult {
  readonly pass: boolean;
  /** One line naming the check and, on failure, what was expected and what was reported. */
  readonly reason: string;
}

/** Reported posture older than this fails (10 minutes; three missed 30 s reports leave a wide margin). */
export const DEFAULT_POSTURE_MAX_AGE_MS = 10 * 60_000;
/** After a wake or unlock, MFA must be repeated within this grace (OpenZiti's MfaPromptGracePeriod). */
export const MFA_PROMPT_GRACE_MS = 5 * 60_000;

const MAX_LISTED = 8;

// ─── version ranges ─────────────────────────────────────────────────────────

type VersionOp = '=' | '!=' | '>' | '>=' | '<' | '<=';
interface Comparator {
  readonly op: VersionOp;
  readonly version: readonly number[];
}
/** Alternatives (`||`), each a conjunction of comparators (space-separated). */
export type VersionRange = readonly (readonly Comparator[])[];

const OPS: readonly string[] = ['>=', '<=', '!=', '==', '>', '<', '=', '!'];

/**
 * The dotted numeric prefix of a reported version, or null if it does not
 * start with a number. What follows the prefix is ignored, so a Linux kernel
 * release "6.1.0-18-amd64" is 6.1.0 (blang/semver, which OpenZiti uses, would
 * read "-18-amd64" as a pre-release and order it below 6.1.0).
 *
 * @example parseVersion('10.0.19041') // [10, 0, 19041]
 */
export function parseVersion(version: string): number[] | null {
  const m = /^(\d{1,15})((?:\.\d{1,15})*)/.exec(version.trim());
  if (m === null) return null;
  const out = [Number(m[1])];
  if (m[2] !== undefined && m[2] !== '') for (const part of m[2].slice(1).split('.')) out.push(Number(part));
  return out;
}

function compareVersions(a: readonly number[], b: readonly number[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * Parses a version range as written in OpenZiti OS checks (blang/semver
 * ranges): comparators `>=`, `>`, `<=`, `<`, `=` (also `==` or none: exact),
 * `!=` (also `!`), joined by spaces (AND) and `||` (OR). Versions are dotted
 * numbers compared numerically, missing parts counting as 0 (so "=10" matches
 * "10.0.0"). Returns a reason string for what is not supported, so such a
 * range never silently means something else: `~` and `^`, wildcards (`x`,
 * `*`), hyphen ranges ("1.0 - 2.0"), and pre-release or build suffixes
 * ("1.0.0-rc1", "1.0.0+b5"), for which we have no ordering.
 *
 * @example
 *   parseVersionRange('>=10.0.19041 <11')  // one conjunction of two comparators
 *   parseVersionRange('~1.2')              // 'version range "~1.2": ...'
 */
export function parseVersionRange(range: string): VersionRange | string {
  const alternatives: Comparator[][] = [];
  for (const alt of range.split('||')) {
    const tokens = alt.trim().split(/\s+/).filter((t) => t !== '');
    if (tokens.length === 0) return `version range "${range}" has an empty alternative`;
    const conj: Comparator[] = [];
    for (let i = 0; i < tokens.length; i++) {
      let token = tokens[i] as string;
      const opText = OPS.find((o) => token.startsWith(o)) ?? '';
      let rest = token.slice(opText.length);
      if (rest === '' && opText !== '') {
        // ">= 10.0": operator and version written apart
        rest = tokens[++i] ?? '';
        token = opText + rest;
      }
      if (!/^\d{1,15}(\.\d{1,15})*$/.test(rest)) {
        return `version range "${range}": "${token}" is not a comparator of dotted numbers (supported: >= > <= < = != with versions like 10.0.19041; not ~ ^ x * hyphen ranges or pre-release suffixes)`;
      }
      const op: VersionOp = opText === '' || opText === '==' ? '=' : opText === '!' ? '!=' : (opText as VersionOp);
      conj.push({ op, version: parseVersion(rest) as number[] });
    }
    alternatives.push(conj);
  }
  return alternatives;
}

function holds(c: Comparator, v: readonly number[]): boolean {
  const d = compareVersions(v, c.version);
  switch (c.op) {
    case '=': return d === 0;
    case '!=': return d !== 0;
    case '>': return d > 0;
    case '>=': return d >= 0;
    case '<': return d < 0;
    case '<=': return d <= 0;
  }
}

/**
 * Does `version` satisfy `range`? An unparsable version or range is false.
 *
 * @example
 *   versionSatisfies('6.1.0-18-amd64', '>=6.1 <6.2') // true
 *   versionSatisfies('10.0.19041', '10.0.19041')     // true
 */
export function versionSatisfies(version: string, range: string | VersionRange): boolean {
  const v = parseVersion(version);
  const r = typeof range === 'string' ? parseVersionRange(range) : range;
  if (v === null || typeof r === 'string') return false;
  return r.some((conj) => conj.every((c) => holds(c, v)));
}

// ─── helpers ────────────────────────────────────────────────────────────────

function list(items: readonly string[]): string {
  if (items.length === 0) return 'none';
  const shown = items.length > MAX_LISTED ? items.slice(0, MAX_LISTED) : items;
  const more = items.length - shown.length;
  return more > 0 ? `${shown.join(', ')}, … (${more} more)` : shown.join(', ');
}

function quoted(items: readonly string[]): string {
  return list(items.map((s) => `"${s}"`));
}

function seconds(ms: number): number {
  return Math.round(ms / 1000);
}

/** Why data reported `at` may not be used at `now`, or undefined when it may. */
function staleness(what: string, at: string, now: number, maxAgeMs: number): string | undefined {
  const t = Date.parse(at);
  if (Number.isNaN(t)) return `${what} posture data has an invalid time "${at}"`;
  const ageMs = now - t;
  if (ageMs > maxAgeMs) return `${what} posture data is stale: reported at ${at}, ${seconds(ageMs)} s ago (limit ${seconds(maxAgeMs)} s)`;
  return undefined;
}

function normalizeMac(mac: string): string {
  return mac.toLowerCase().replace(/[:.\-\s]/g, '');
}

function normalizeHex(hex: string): string {
  return hex.toLowerCase().replace(/[:\s]/g, '');
}

function shortHash(hash: string): string {
  return hash.length > 16 ? `${hash.slice(0, 16)}…` : hash;
}

/** Windows and macOS paths are case-insensitive there (OpenZiti's SDKs compare them so). */
function pathsEqual(a: string, b: string, osType: OsType): boolean {
  if (osType === 'Windows' || osType === 'WindowsServer' || osType === 'macOS') return a.toLowerCase() === b.toLowerCase();
  return a === b;
}

interface ProcessWant {
  readonly osType: OsType;
  readonly path: string;
  readonly hashes?: readonly string[];
  readonly signers?: readonly string[];
}

/** Why the reported processes do not satisfy `want`, or undefined when they do. */
function processMismatch(want: ProcessWant, processes: readonly ProcessPosture[], now: number, maxAgeMs: number): string | undefined {
  if (want.path === '') return 'a listed process has an empty path';
  const got = processes.find((p) => pathsEqual(p.path, want.path, want.osType));
  if (got === undefined) return `process ${want.path} not reported`;
  const stale = staleness(`process ${want.path}`, got.at, now, maxAgeMs);
  if (stale !== undefined) return stale;
  if (!got.isRunning) return `process ${want.path} is not running`;
  if (want.signers !== undefined && want.signers.length > 0) {
    const reported = (got.signerFingerprints ?? []).map(normalizeHex);
    if (!want.signers.some((s) => reported.includes(normalizeHex(s)))) {
      return `process ${want.path} is not signed by ${list(want.signers)} (reported signers: ${list(got.signerFingerprints ?? [])})`;
    }
  }
  if (want.hashes !== undefined && want.hashes.length > 0) {
    if (got.hash === undefined || got.hash === '') return `process ${want.path} reported no SHA-512 hash`;
    const hash = normalizeHex(got.hash);
    if (!want.hashes.some((h) => normalizeHex(h) === hash)) {
      return `process ${want.path} has SHA-512 ${shortHash(hash)}, not one of ${list(want.hashes.map(shortHash))}`;
    }
  }
  return undefined;
}

function fail(head: string, why: string): PostureResult {
  return { pass: false, reason: `${head}: ${why}` };
}

function pass(head: string, why: string): PostureResult {
  return { pass: true, reason: `${head} passed: ${why}` };
}

// ─── one check ──────────────────────────────────────────────────────────────

/**
 * Evaluates one check against one device's posture.
 *
 * @example
 *   const r = evaluatePostureCheck(plcMacs, data, Date.now());
 *   // { pass: false, reason: 'MAC check "plc-macs": none of 02:00:00:00:00:01 reported (reported: 02:00:00:00:00:02)' }
 */
export function evaluatePostureCheck(
  check: PostureCheck,
  data: PostureData | undefined,
  now: number,
  maxAgeMs: number = DEFAULT_POSTURE_MAX_AGE_MS,
): PostureResult {
  const head = `${check.typeId} check "${check.name}"`;
  switch (check.typeId) {
    case 'MAC': {
      const mac = data?.mac;
      if (mac === undefined) return fail(head, 'no MAC posture data reported');
      const stale = staleness('MAC', mac.at, now, maxAgeMs);
      if (stale !== undefined) return fail(head, stale);
      const reported = mac.macAddresses.map(normalizeMac);
      for (const want of check.data.macAddresses) {
        const w = normalizeMac(want);
        const i = w === '' ? -1 : reported.indexOf(w);
        if (i >= 0) return pass(head, `${mac.macAddresses[i]} reported`);
      }
      return fail(head, `none of ${list(check.data.macAddresses)} reported (reported: ${list(mac.macAddresses)})`);
    }
    case 'OS': {
      const os = data?.os;
      if (os === undefined) return fail(head, 'no OS posture data reported');
      const stale = staleness('OS', os.at, now, maxAgeMs);
      if (stale !== undefined) return fail(head, stale);
      const type = os.type.toLowerCase();
      let entry: OperatingSystem | undefined;
      for (const o of check.data.operatingSystems) if (o.type.toLowerCase() === type) entry = o;
      if (entry === undefined) {
        return fail(head, `OS type "${os.type}" is not one of ${list(check.data.operatingSystems.map((o) => o.type))}`);
      }
      if (entry.versions.length === 0) return pass(head, `${os.type} (any version)`);
      if (parseVersion(os.version) === null) return fail(head, `reported ${os.type} version "${os.version}" does not start with a number`);
      const malformed: string[] = [];
      for (const text of entry.versions) {
        const range = parseVersionRange(text);
        if (typeof range === 'string') malformed.push(text);
        else if (versionSatisfies(os.version, range)) return pass(head, `${os.type} ${os.version} satisfies "${text}"`);
      }
      const note = malformed.length > 0 ? ` (${quoted(malformed)} not understood, never matching)` : '';
      return fail(head, `${os.type} ${os.version} satisfies none of ${quoted(entry.versions)}${note}`);
    }
    case 'PROCESS': {
      const processes = data?.processes;
      if (processes === undefined) return fail(head, 'no PROCESS posture data reported');
      const p = check.data.process;
      const fp = p.signerFingerprint;
      const want: ProcessWant = { osType: p.osType, path: p.path, hashes: p.hashes, signers: fp === undefined || fp === '' ? undefined : [fp] };
      const why = processMismatch(want, processes, now, maxAgeMs);
      return why === undefined ? pass(head, `${p.path} running`) : fail(head, why);
    }
    case 'PROCESS_MULTI': {
      const processes = data?.processes;
      if (processes === undefined) return fail(head, 'no PROCESS posture data reported');
      const { semantic, processes: wanted } = check.data;
      if (wanted.length === 0) return fail(head, 'lists no processes');
      const reasons: string[] = [];
      for (const p of wanted) {
        const why = processMismatch({ osType: p.osType, path: p.path, hashes: p.hashes, signers: p.signerFingerprints }, processes, now, maxAgeMs);
        if (why === undefined) {
          if (semantic === 'AnyOf') return pass(head, `AnyOf: ${p.path} running`);
        } else {
          if (semantic !== 'AnyOf') return fail(head, `AllOf: ${why}`);
          reasons.push(why);
        }
      }
      if (semantic === 'AnyOf') return fail(head, `AnyOf: none of ${wanted.length} processes qualifies: ${reasons.join('; ')}`);
      return pass(head, `AllOf: ${wanted.length} processes running`);
    }
    case 'DOMAIN': {
      const domain = data?.domain;
      if (domain === undefined) return fail(head, 'no DOMAIN posture data reported');
      const stale = staleness('DOMAIN', domain.at, now, maxAgeMs);
      if (stale !== undefined) return fail(head, stale);
      const got = domain.domain.toLowerCase();
      if (check.data.domains.some((d) => d.toLowerCase() === got)) return pass(head, `domain "${domain.domain}"`);
      return fail(head, `reported domain "${domain.domain}" is not one of ${quoted(check.data.domains)}`);
    }
    case 'MFA':
      return evaluateMfa(head, check.data, data?.mfa, now);
    default: {
      const unknown: { typeId: string } = check;
      return fail(head, `type "${unknown.typeId}" is not supported, so the check fails`);
    }
  }
}

function evaluateMfa(head: string, check: MfaCheckData, mfa: PostureData['mfa'], now: number): PostureResult {
  if (mfa === undefined) return fail(head, 'no MFA posture data reported');
  const passedAt = Date.parse(mfa.passedAt);
  if (Number.isNaN(passedAt)) return fail(head, `MFA posture data has an invalid time "${mfa.passedAt}"`);
  const timeoutSeconds = check.timeoutSeconds ?? 0;
  if (timeoutSeconds > 0 && now - passedAt > timeoutSeconds * 1000) {
    return fail(head, `MFA passed at ${mfa.passedAt}, ${seconds(now - passedAt)} s ago, beyond the ${timeoutSeconds} s timeout`);
  }
  const events: [boolean | undefined, string | undefined, string][] = [
    [check.promptOnWake, mfa.wokenAt, 'woke'],
    [check.promptOnUnlock, mfa.unlockedAt, 'was unlocked'],
  ];
  for (const [prompt, at, what] of events) {
    if (prompt !== true || at === undefined) continue;
    const t = Date.parse(at);
    if (Number.isNaN(t)) return fail(head, `endpoint state has an invalid time "${at}"`);
    // OpenZiti: passes if the event came before the MFA, or less than the grace ago.
    if (t >= passedAt && now - t >= MFA_PROMPT_GRACE_MS) {
      return fail(head, `the device ${what} at ${at}, after MFA at ${mfa.passedAt}, and MFA was not repeated within ${seconds(MFA_PROMPT_GRACE_MS)} s`);
    }
  }
  return pass(head, `MFA at ${mfa.passedAt}`);
}

// ─── a policy's checks ──────────────────────────────────────────────────────

/**
 * Do the checks a policy's `postureCheckRoles` select all pass (OpenZiti:
 * every check of a policy must pass for that policy to grant)? Roles are
 * matched against `checks` as identity and service roles are (matchesRoles,
 * with the policy's semantic). Fails closed when the roles select no check,
 * or when an `@id` role names a check that `checks` does not hold: a router
 * must not grant because its copy lacks a check. No roles: passes.
 *
 * @example
 *   evaluatePolicyPosture(['#plc-posture'], 'AllOf', checks, dataOf(identity), now)
 *   // { pass: false, reason: 'MAC check "plc-macs": no MAC posture data reported' }
 */
export function evaluatePolicyPosture(
  postureCheckRoles: readonly string[],
  semantic: Semantic,
  checks: readonly PostureCheck[],
  data: PostureData | undefined,
  now: number,
  maxAgeMs: number = DEFAULT_POSTURE_MAX_AGE_MS,
): PostureResult {
  if (postureCheckRoles.length === 0) return { pass: true, reason: 'no posture checks required' };
  for (const role of postureCheckRoles) {
    if (role.charCodeAt(0) !== 0x40 /* @ */) continue;
    const ref = role.slice(1);
    if (!checks.some((c) => c.id === ref || c.name === ref)) return { pass: false, reason: `posture check ${role} does not exist` };
  }
  const passed: string[] = [];
  const failed: string[] = [];
  for (const c of checks) {
    if (!matchesRoles(postureCheckRoles, semantic, c)) continue;
    const r = evaluatePostureCheck(c, data, now, maxAgeMs);
    if (r.pass) passed.push(`"${c.name}"`);
    else failed.push(r.reason);
  }
  if (failed.length > 0) return { pass: false, reason: failed.join('; ') };
  if (passed.length === 0) return { pass: false, reason: `posture check roles ${postureCheckRoles.join(' ')} (${semantic}) select no posture check` };
  return { pass: true, reason: `posture checks ${passed.join(', ')} passed` };
}

// ─── reports ────────────────────────────────────────────────────────────────

/**
 * Folds a device's responses into its latest posture data: each response
 * replaces the item it reports (processes by path), stamped `at`. MFA data is
 * not carried by these responses and is kept as it was.
 *
 * @example
 *   data = applyPostureResponses(data, await collectPosture({ processPaths }), new Date().toISOString());
 */
export function applyPostureResponses(prev: PostureData | undefined, responses: readonly PostureResponse[], at: string): PostureData {
  let { mac, os, domain, processes } = prev ?? {};
  for (const r of responses) {
    switch (r.typeId) {
      case 'MAC':
        mac = { macAddresses: [...r.macAddresses], at };
        break;
      case 'OS':
        os = r.build === undefined ? { type: r.type, version: r.version, at } : { type: r.type, version: r.version, build: r.build, at };
        break;
      case 'DOMAIN':
        domain = { domain: r.domain, at };
        break;
      case 'PROCESS': {
        const p: ProcessPosture = {
          path: r.path,
          isRunning: r.isRunning,
          ...(r.hash === undefined ? {} : { hash: r.hash }),
          ...(r.signerFingerprints === undefined ? {} : { signerFingerprints: [...r.signerFingerprints] }),
          at,
        };
        processes = [...(processes ?? []).filter((q) => q.path !== r.path), p];
        break;
      }
    }
  }
  const out: { -readonly [K in keyof PostureData]: PostureData[K] } = {};
  if (mac !== undefined) out.mac = mac;
  if (os !== undefined) out.os = os;
  if (processes !== undefined) out.processes = processes;
  if (domain !== undefined) out.domain = domain;
  if (prev?.mfa !== undefined) out.mfa = prev.mfa;
  return out;
}

/**
 * The executable paths that PROCESS and PROCESS_MULTI checks for `osType`
 * name, each once: what a device of that OS should watch and report.
 *
 * @example processPathsOf(snapshot.postureChecks, 'Linux') // ['/usr/sbin/sshd']
 */
export function processPathsOf(checks: readonly PostureCheck[], osType: OsType): string[] {
  const out = new Set<string>();
  for (const c of checks) {
    if (c.typeId === 'PROCESS') {
      if (c.data.process.osType === osType && c.data.process.path !== '') out.add(c.data.process.path);
    } else if (c.typeId === 'PROCESS_MULTI') {
      for (const p of c.data.processes) if (p.osType === osType && p.path !== '') out.add(p.path);
    }
  }
  return [...out];
}
