/**
 * Posture checks (src/policy/posture.ts) and decide() with posture: a table
 * of pass and fail cases per check type with their reasons, the version range
 * matcher, stale and missing data, MFA timeouts and prompts, PROCESS_MULTI
 * AllOf/AnyOf, a policy's checks (selection, fail closed), folding responses
 * into data, and decide() granting only when the checks pass. Every clock is
 * the explicit NOW.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  applyPostureResponses,
  decide,
  DEFAULT_POSTURE_MAX_AGE_MS,
  evaluatePolicyPosture,
  evaluatePostureCheck,
  parseVersion,
  parseVersionRange,
  processPathsOf,
  versionSatisfies,
  type PolicyEntity,
  type PostureCheck,
  type PostureData,
  type ServicePolicy,
} from '../../src/policy/index.js';

const NOW = Date.parse('2025-06-01T12:00:00.000Z');
/** An ISO time `ms` before NOW. */
const ago = (ms: number): string => new Date(NOW - ms).toISOString();
const FRESH = ago(30_000);
const HASH_A = 'a1'.repeat(64);
const HASH_B = 'b2'.repeat(64);

const macCheck: PostureCheck = { id: 'pc-mac', name: 'plc-macs', typeId: 'MAC', roleAttributes: ['plc'], data: { macAddresses: ['02:00:00:00:00:01'] } };
const osCheck: PostureCheck = {
  id: 'pc-os', name: 'kernel', typeId: 'OS', roleAttributes: ['plc'],
  data: { operatingSystems: [{ type: 'Linux', versions: ['>=5.10', '=4.19'] }, { type: 'macOS', versions: [] }] },
};
const procCheck = (over: Partial<{ path: string; osType: 'Linux' | 'Windows' | 'macOS'; hashes: string[]; signerFingerprint: string }> = {}): PostureCheck => ({
  id: 'pc-proc', name: 'agent', typeId: 'PROCESS', roleAttributes: [],
  data: { process: { osType: 'Linux', path: '/usr/bin/agent', ...over } },
});
const domainCheck: PostureCheck = { id: 'pc-dom', name: 'corp', typeId: 'DOMAIN', roleAttributes: [], data: { domains: ['CORP.example', 'lab.example'] } };
const mfaCheck = (data: { timeoutSeconds?: number; promptOnWake?: boolean; promptOnUnlock?: boolean } = {}): PostureCheck => ({
  id: 'pc-mfa', name: 'mfa', typeId: 'MFA', roleAttributes: [],
  data: { promptOnWake: false, promptOnUnlock: false, ignoreLegacyEndpoints: false, timeoutSeconds: 0, ...data },
});
const multiCheck = (semantic: 'AllOf' | 'AnyOf', paths: string[], extra: { hashes?: string[]; signerFingerprints?: string[] } = {}): PostureCheck => ({
  id: 'pc-multi', name: 'agents', typeId: 'PROCESS_MULTI', roleAttributes: [],
  data: { semantic, processes: paths.map((path) => ({ osType: 'Linux' as const, path, ...extra })) },
});

const running = (path: string, over: Partial<{ isRunning: boolean; hash: string; signerFingerprints: string[]; at: string }> = {}) =>
  ({ path, isRunning: true, at: FRESH, ...over });

interface Case {
  readonly name: string;
  readonly check: PostureCheck;
  readonly data: PostureData | undefined;
  readonly pass: boolean;
  /** The whole reason (string) or a pattern. */
  readonly reason: string | RegExp;
}

const cases: Case[] = [
  // MAC
  { name: 'MAC listed', check: macCheck, data: { mac: { macAddresses: ['02:00:00:00:00:09', '02:00:00:00:00:01'], at: FRESH } }, pass: true,
    reason: 'MAC check "plc-macs" passed: 02:00:00:00:00:01 reported' },
  { name: 'MAC case and separators normalised', check: { ...macCheck, data: { macAddresses: ['02-00-00-00-00-0A', '0200.0000.000b'] } },
    data: { mac: { macAddresses: ['02:00:00:00:00:0b'], at: FRESH } }, pass: true, reason: /02:00:00:00:00:0b reported/ },
  { name: 'MAC bare hex', check: { ...macCheck, data: { macAddresses: ['020000000001'] } }, data: { mac: { macAddresses: ['02:00:00:00:00:01'], at: FRESH } }, pass: true, reason: /passed/ },
  { name: 'MAC not listed', check: macCheck, data: { mac: { macAddresses: ['02:00:00:00:00:02'], at: FRESH } }, pass: false,
    reason: 'MAC check "plc-macs": none of 02:00:00:00:00:01 reported (reported: 02:00:00:00:00:02)' },
  { name: 'MAC none reported', check: macCheck, data: { mac: { macAddresses: [], at: FRESH } }, pass: false, reason: /none of 02:00:00:00:00:01 reported \(reported: none\)$/ },
  { name: 'MAC long lists are cut', check: macCheck, data: { mac: { macAddresses: Array.from({ length: 10 }, (_, i) => `02:00:00:00:01:0${i}`), at: FRESH } }, pass: false,
    reason: /reported: 02:00:00:00:01:00, .*02:00:00:00:01:07, … \(2 more\)\)$/ },
  { name: 'MAC missing', check: macCheck, data: {}, pass: false, reason: 'MAC check "plc-macs": no MAC posture data reported' },
  { name: 'MAC no data at all', check: macCheck, data: undefined, pass: false, reason: 'MAC check "plc-macs": no MAC posture data reported' },
  { name: 'MAC stale', check: macCheck, data: { mac: { macAddresses: ['02:00:00:00:00:01'], at: ago(11 * 60_000) } }, pass: false,
    reason: `MAC check "plc-macs": MAC posture data is stale: reported at ${ago(11 * 60_000)}, 660 s ago (limit 600 s)` },
  { name: 'MAC invalid time', check: macCheck, data: { mac: { macAddresses: ['02:00:00:00:00:01'], at: 'yesterday' } }, pass: false,
    reason: 'MAC check "plc-macs": MAC posture data has an invalid time "yesterday"' },

  // OS
  { name: 'OS kernel in range', check: osCheck, data: { os: { type: 'Linux', version: '6.1.0-18-amd64', at: FRESH } }, pass: true,
    reason: 'OS check "kernel" passed: Linux 6.1.0-18-amd64 satisfies ">=5.10"' },
  { name: 'OS exact version', check: osCheck, data: { os: { type: 'Linux', version: '4.19.0', at: FRESH } }, pass: true, reason: /satisfies "=4.19"/ },
  { name: 'OS type case-insensitive, any version', check: osCheck, data: { os: { type: 'MACOS', version: 'anything', at: FRESH } }, pass: true,
    reason: 'OS check "kernel" passed: MACOS (any version)' },
  { name: 'OS version too old', check: osCheck, data: { os: { type: 'linux', version: '5.4.0-150-generic', at: FRESH } }, pass: false,
    reason: 'OS check "kernel": linux 5.4.0-150-generic satisfies none of ">=5.10", "=4.19"' },
  { name: 'OS type not listed', check: osCheck, data: { os: { type: 'Windows', version: '10.0.19041', at: FRESH } }, pass: false,
    reason: 'OS check "kernel": OS type "Windows" is not one of Linux, macOS' },
  { name: 'OS unparsable version', check: osCheck, data: { os: { type: 'Linux', version: 'rolling', at: FRESH } }, pass: false,
    reason: 'OS check "kernel": reported Linux version "rolling" does not start with a number' },
  { name: 'OS malformed range never matches and is named', check: { ...osCheck, data: { operatingSystems: [{ type: 'Linux', versions: ['~6.1', '>=7'] }] } },
    data: { os: { type: 'Linux', version: '6.1.5', at: FRESH } }, pass: false, reason: /satisfies none of "~6.1", ">=7" \("~6.1" not understood, never matching\)$/ },
  { name: 'OS last entry for a type wins (OpenZiti)', check: { ...osCheck, data: { operatingSystems: [{ type: 'Linux', versions: [] }, { type: 'Linux', versions: ['>=7'] }] } },
    data: { os: { type: 'Linux', version: '6.1.0', at: FRESH } }, pass: false, reason: /satisfies none of ">=7"/ },
  { name: 'OS missing', check: osCheck, data: { mac: { macAddresses: [], at: FRESH } }, pass: false, reason: 'OS check "kernel": no OS posture data reported' },
  { name: 'OS stale', check: osCheck, data: { os: { type: 'Linux', version: '6.1.0', at: ago(3600_000) } }, pass: false, reason: /OS posture data is stale: .*3600 s ago/ },

  // PROCESS
  { name: 'PROCESS running', check: procCheck(), data: { processes: [running('/usr/bin/agent')] }, pass: true, reason: 'PROCESS check "agent" passed: /usr/bin/agent running' },
  { name: 'PROCESS hash matches, any case', check: procCheck({ hashes: [HASH_B, HASH_A.toUpperCase()] }), data: { processes: [running('/usr/bin/agent', { hash: HASH_A })] }, pass: true, reason: /passed/ },
  { name: 'PROCESS hash differs', check: procCheck({ hashes: [HASH_A] }), data: { processes: [running('/usr/bin/agent', { hash: HASH_B })] }, pass: false,
    reason: `PROCESS check "agent": process /usr/bin/agent has SHA-512 ${HASH_B.slice(0, 16)}…, not one of ${HASH_A.slice(0, 16)}…` },
  { name: 'PROCESS no hash reported', check: procCheck({ hashes: [HASH_A] }), data: { processes: [running('/usr/bin/agent')] }, pass: false,
    reason: 'PROCESS check "agent": process /usr/bin/agent reported no SHA-512 hash' },
  { name: 'PROCESS not running', check: procCheck(), data: { processes: [running('/usr/bin/agent', { isRunning: false })] }, pass: false,
    reason: 'PROCESS check "agent": process /usr/bin/agent is not running' },
  { name: 'PROCESS not reported', check: procCheck(), data: { processes: [running('/usr/bin/other')] }, pass: false, reason: 'PROCESS check "agent": process /usr/bin/agent not reported' },
  { name: 'PROCESS Linux paths are case-sensitive', check: procCheck({ path: '/usr/bin/Agent' }), data: { processes: [running('/usr/bin/agent')] }, pass: false, reason: /not reported/ },
  { name: 'PROCESS Windows paths are not', check: procCheck({ osType: 'Windows', path: 'C:\\Agent\\agent.exe' }), data: { processes: [running('c:\\agent\\AGENT.EXE')] }, pass: true, reason: /passed/ },
  { name: 'PROCESS signer matches (hex normalised)', check: procCheck({ signerFingerprint: 'AB:CD:EF' }), data: { processes: [running('/usr/bin/agent', { signerFingerprints: ['00ff', 'abcdef'] })] }, pass: true, reason: /passed/ },
  { name: 'PROCESS signer differs', check: procCheck({ signerFingerprint: 'abcdef' }), data: { processes: [running('/usr/bin/agent')] }, pass: false,
    reason: 'PROCESS check "agent": process /usr/bin/agent is not signed by abcdef (reported signers: none)' },
  { name: 'PROCESS stale', check: procCheck(), data: { processes: [running('/usr/bin/agent', { at: ago(20 * 60_000) })] }, pass: false,
    reason: /process \/usr\/bin\/agent posture data is stale: .*1200 s ago \(limit 600 s\)$/ },
  { name: 'PROCESS missing', check: procCheck(), data: { mac: { macAddresses: [], at: FRESH } }, pass: false, reason: 'PROCESS check "agent": no PROCESS posture data reported' },

  // PROCESS_MULTI
  { name: 'PROCESS_MULTI AllOf, all running', check: multiCheck('AllOf', ['/a', '/b']), data: { processes: [running('/b'), running('/a')] }, pass: true,
    reason: 'PROCESS_MULTI check "agents" passed: AllOf: 2 processes running' },
  { name: 'PROCESS_MULTI AllOf, one down', check: multiCheck('AllOf', ['/a', '/b']), data: { processes: [running('/a'), running('/b', { isRunning: false })] }, pass: false,
    reason: 'PROCESS_MULTI check "agents": AllOf: process /b is not running' },
  { name: 'PROCESS_MULTI AnyOf, one running', check: multiCheck('AnyOf', ['/a', '/b']), data: { processes: [running('/b')] }, pass: true,
    reason: 'PROCESS_MULTI check "agents" passed: AnyOf: /b running' },
  { name: 'PROCESS_MULTI AnyOf, none', check: multiCheck('AnyOf', ['/a', '/b']), data: { processes: [running('/a', { isRunning: false })] }, pass: false,
    reason: 'PROCESS_MULTI check "agents": AnyOf: none of 2 processes qualifies: process /a is not running; process /b not reported' },
  { name: 'PROCESS_MULTI hashes and signers', check: multiCheck('AllOf', ['/a'], { hashes: [HASH_A], signerFingerprints: ['ff', 'ee'] }),
    data: { processes: [running('/a', { hash: HASH_A, signerFingerprints: ['EE'] })] }, pass: true, reason: /passed/ },
  { name: 'PROCESS_MULTI empty list fails', check: multiCheck('AllOf', []), data: { processes: [] }, pass: false, reason: 'PROCESS_MULTI check "agents": lists no processes' },
  { name: 'PROCESS_MULTI missing', check: multiCheck('AnyOf', ['/a']), data: {}, pass: false, reason: 'PROCESS_MULTI check "agents": no PROCESS posture data reported' },

  // DOMAIN
  { name: 'DOMAIN listed, any case', check: domainCheck, data: { domain: { domain: 'corp.EXAMPLE', at: FRESH } }, pass: true, reason: 'DOMAIN check "corp" passed: domain "corp.EXAMPLE"' },
  { name: 'DOMAIN not listed', check: domainCheck, data: { domain: { domain: '', at: FRESH } }, pass: false,
    reason: 'DOMAIN check "corp": reported domain "" is not one of "CORP.example", "lab.example"' },
  { name: 'DOMAIN missing', check: domainCheck, data: undefined, pass: false, reason: 'DOMAIN check "corp": no DOMAIN posture data reported' },
  { name: 'DOMAIN stale', check: domainCheck, data: { domain: { domain: 'lab.example', at: ago(DEFAULT_POSTURE_MAX_AGE_MS + 1000) } }, pass: false, reason: /stale/ },

  // MFA
  { name: 'MFA without timeout stays good (no staleness)', check: mfaCheck(), data: { mfa: { passedAt: ago(86_400_000) } }, pass: true, reason: `MFA check "mfa" passed: MFA at ${ago(86_400_000)}` },
  { name: 'MFA within timeout', check: mfaCheck({ timeoutSeconds: 900 }), data: { mfa: { passedAt: ago(899_000) } }, pass: true, reason: /passed/ },
  { name: 'MFA timed out', check: mfaCheck({ timeoutSeconds: 900 }), data: { mfa: { passedAt: ago(901_000) } }, pass: false,
    reason: `MFA check "mfa": MFA passed at ${ago(901_000)}, 901 s ago, beyond the 900 s timeout` },
  { name: 'MFA missing', check: mfaCheck(), data: { mac: { macAddresses: [], at: FRESH } }, pass: false, reason: 'MFA check "mfa": no MFA posture data reported' },
  { name: 'MFA invalid time', check: mfaCheck(), data: { mfa: { passedAt: '' } }, pass: false, reason: 'MFA check "mfa": MFA posture data has an invalid time ""' },
  { name: 'MFA woke after MFA, grace over', check: mfaCheck({ promptOnWake: true }), data: { mfa: { passedAt: ago(600_000), wokenAt: ago(360_000) } }, pass: false,
    reason: `MFA check "mfa": the device woke at ${ago(360_000)}, after MFA at ${ago(600_000)}, and MFA was not repeated within 300 s` },
  { name: 'MFA woke after MFA, within grace', check: mfaCheck({ promptOnWake: true }), data: { mfa: { passedAt: ago(600_000), wokenAt: ago(240_000) } }, pass: true, reason: /passed/ },
  { name: 'MFA woke before MFA', check: mfaCheck({ promptOnWake: true }), data: { mfa: { passedAt: ago(60_000), wokenAt: ago(3600_000) } }, pass: true, reason: /passed/ },
  { name: 'MFA wake ignored without promptOnWake', check: mfaCheck(), data: { mfa: { passedAt: ago(600_000), wokenAt: ago(360_000) } }, pass: true, reason: /passed/ },
  { name: 'MFA unlocked after MFA, grace over', check: mfaCheck({ promptOnUnlock: true }), data: { mfa: { passedAt: ago(600_000), unlockedAt: ago(301_000) } }, pass: false,
    reason: /the device was unlocked at .*, after MFA at/ },
];

describe('evaluatePostureCheck', () => {
  for (const c of cases) {
    test(c.name, () => {
      const r = evaluatePostureCheck(c.check, c.data, NOW);
      assert.equal(r.pass, c.pass, r.reason);
      if (typeof c.reason === 'string') assert.equal(r.reason, c.reason);
      else assert.match(r.reason, c.reason);
    });
  }

  test('every check type has a passing and a failing case', () => {
    for (const type of ['MAC', 'OS', 'PROCESS', 'PROCESS_MULTI', 'DOMAIN', 'MFA']) {
      assert.ok(cases.some((c) => c.check.typeId === type && c.pass), `${type} pass`);
      assert.ok(cases.some((c) => c.check.typeId === type && !c.pass), `${type} fail`);
    }
  });

  test('maxAgeMs: tighter or unbounded', () => {
    const data: PostureData = { mac: { macAddresses: ['02:00:00:00:00:01'], at: ago(120_000) } };
    assert.equal(evaluatePostureCheck(macCheck, data, NOW).pass, true);
    const tight = evaluatePostureCheck(macCheck, data, NOW, 60_000);
    assert.equal(tight.pass, false);
    assert.match(tight.reason, /120 s ago \(limit 60 s\)/);
    assert.equal(evaluatePostureCheck(macCheck, { mac: { macAddresses: ['02:00:00:00:00:01'], at: ago(365 * 86_400_000) } }, NOW, Infinity).pass, true);
  });

  test('data reported slightly in the future (clock skew) is not stale', () => {
    assert.equal(evaluatePostureCheck(macCheck, { mac: { macAddresses: ['02:00:00:00:00:01'], at: ago(-5000) } }, NOW).pass, true);
  });

  test('an unknown check type fails closed', () => {
    const odd = { id: 'x', name: 'future', typeId: 'GEO', roleAttributes: [], data: {} } as unknown as PostureCheck;
    assert.deepEqual(evaluatePostureCheck(odd, {}, NOW), { pass: false, reason: 'GEO check "future": type "GEO" is not supported, so the check fails' });
  });
});

describe('version ranges', () => {
  const table: [string, string, boolean][] = [
    ['10.0.19041', '>=10.0.19041', true],
    ['10.0.19040', '>=10.0.19041', false],
    ['10.0.19041', '10.0.19041', true],
    ['10.0.19041', '=10.0.19041', true],
    ['10.0.19041', '==10.0.19041', true],
    ['10.0.19042', '10.0.19041', false],
    ['10', '=10.0.0', true],
    ['6.1.0-18-amd64', '>=6.1 <6.2', true],
    ['6.2.0', '>=6.1 <6.2', false],
    ['6.6.31+rpt-rpi-v8', '>6.6.30', true],
    ['5.4', '<5.10', true],
    ['5.10', '>5.9', true],
    ['5.9', '>5.9', false],
    ['5.9', '<=5.9', true],
    ['1.2.3', '!=1.2.3', false],
    ['1.2.4', '!1.2.3', true],
    ['0.9', '<1.0 || >=2.0', true],
    ['2.1', '<1.0 || >=2.0', true],
    ['1.5', '<1.0 || >=2.0', false],
    ['10.0.1', '>= 10.0', true],
    ['17.2.1', '>=17 <18', true],
    ['rolling', '>=1', false],
  ];
  for (const [version, range, want] of table) {
    test(`${version} ${want ? 'satisfies' : 'does not satisfy'} "${range}"`, () => {
      assert.equal(versionSatisfies(version, range), want);
    });
  }

  test('unsupported or malformed ranges are refused with a reason and never match', () => {
    for (const bad of ['~1.2', '^1', '1.x', '*', '1.0 - 2.0', '>=1.0.0-rc1', '1.0.0+build', '', '||', '>=1 ||', '>=', 'v1.0', '>=1.0 <']) {
      const r = parseVersionRange(bad);
      assert.equal(typeof r, 'string', bad);
      assert.match(r as string, /version range/);
      assert.equal(versionSatisfies('1.0.0', bad), false, bad);
    }
  });

  test('parseVersion takes the dotted numeric prefix', () => {
    assert.deepEqual(parseVersion('6.1.0-18-amd64'), [6, 1, 0]);
    assert.deepEqual(parseVersion('10'), [10]);
    assert.deepEqual(parseVersion(' 14.2.1 '), [14, 2, 1]);
    assert.equal(parseVersion('v1.0'), null);
    assert.equal(parseVersion(''), null);
  });

  test('a parsed range can be reused', () => {
    const r = parseVersionRange('>=5.10 <7');
    assert.notEqual(typeof r, 'string');
    if (typeof r === 'string') return;
    assert.equal(versionSatisfies('6.1.0', r), true);
    assert.equal(versionSatisfies('7.0.0', r), false);
  });
});

describe('evaluatePolicyPosture', () => {
  const domainOk: PostureData = { domain: { domain: 'lab.example', at: FRESH }, mac: { macAddresses: ['02:00:00:00:00:01'], at: FRESH } };
  const checks = [macCheck, { ...domainCheck, roleAttributes: ['plc', 'office'] }, { ...osCheck, roleAttributes: ['office'] }];

  test('every selected check must pass', () => {
    assert.deepEqual(evaluatePolicyPosture(['#plc'], 'AnyOf', checks, domainOk, NOW), { pass: true, reason: 'posture checks "plc-macs", "corp" passed' });
    const r = evaluatePolicyPosture(['#plc', '#office'], 'AnyOf', checks, domainOk, NOW);
    assert.deepEqual(r, { pass: false, reason: 'OS check "kernel": no OS posture data reported' });
  });

  test('all failing checks are named', () => {
    const r = evaluatePolicyPosture(['#all'], 'AllOf', checks, {}, NOW);
    assert.equal(r.pass, false);
    assert.equal(r.reason, 'MAC check "plc-macs": no MAC posture data reported; DOMAIN check "corp": no DOMAIN posture data reported; OS check "kernel": no OS posture data reported');
  });

  test('roles are judged with the policy semantic, @ by id or name', () => {
    // AllOf: only checks holding both attributes (corp) are selected.
    assert.deepEqual(evaluatePolicyPosture(['#plc', '#office'], 'AllOf', checks, domainOk, NOW), { pass: true, reason: 'posture checks "corp" passed' });
    assert.equal(evaluatePolicyPosture(['@pc-mac'], 'AllOf', checks, domainOk, NOW).reason, 'posture checks "plc-macs" passed');
    assert.equal(evaluatePolicyPosture(['@kernel'], 'AllOf', checks, domainOk, NOW).pass, false);
  });

  test('fails closed when the roles select no check, or name a missing one', () => {
    assert.deepEqual(evaluatePolicyPosture(['#nothing'], 'AnyOf', checks, domainOk, NOW), { pass: false, reason: 'posture check roles #nothing (AnyOf) select no posture check' });
    assert.deepEqual(evaluatePolicyPosture(['#plc'], 'AnyOf', [], domainOk, NOW), { pass: false, reason: 'posture check roles #plc (AnyOf) select no posture check' });
    assert.deepEqual(evaluatePolicyPosture(['@pc-mac', '@gone'], 'AnyOf', checks, domainOk, NOW), { pass: false, reason: 'posture check @gone does not exist' });
  });

  test('no roles, no requirement', () => {
    assert.equal(evaluatePolicyPosture([], 'AllOf', checks, undefined, NOW).pass, true);
  });
});

describe('applyPostureResponses and processPathsOf', () => {
  test('responses replace their items; processes by path; MFA is kept', () => {
    const t1 = ago(60_000);
    const t2 = FRESH;
    let d = applyPostureResponses({ mfa: { passedAt: t1 } }, [
      { id: 'mac', typeId: 'MAC', macAddresses: ['02:00:00:00:00:01'] },
      { id: 'os', typeId: 'OS', type: 'Linux', version: '6.1.0', build: '#1 SMP' },
      { id: 'process:/a', typeId: 'PROCESS', path: '/a', isRunning: true, hash: HASH_A },
      { id: 'process:/b', typeId: 'PROCESS', path: '/b', isRunning: false },
      { id: 'domain', typeId: 'DOMAIN', domain: '' },
    ], t1);
    d = applyPostureResponses(d, [{ id: 'process:/a', typeId: 'PROCESS', path: '/a', isRunning: false }], t2);
    assert.deepEqual(d, {
      mac: { macAddresses: ['02:00:00:00:00:01'], at: t1 },
      os: { type: 'Linux', version: '6.1.0', build: '#1 SMP', at: t1 },
      processes: [{ path: '/b', isRunning: false, at: t1 }, { path: '/a', isRunning: false, at: t2 }],
      domain: { domain: '', at: t1 },
      mfa: { passedAt: t1 },
    });
    assert.deepEqual(applyPostureResponses(undefined, [], t1), {});
  });

  test('processPathsOf lists each path of the OS once', () => {
    const checks: PostureCheck[] = [
      procCheck(), procCheck({ osType: 'Windows', path: 'C:\\x.exe' }),
      multiCheck('AnyOf', ['/usr/bin/agent', '/usr/sbin/sshd', '']), macCheck,
    ];
    assert.deepEqual(processPathsOf(checks, 'Linux'), ['/usr/bin/agent', '/usr/sbin/sshd']);
    assert.deepEqual(processPathsOf(checks, 'Windows'), ['C:\\x.exe']);
  });
});

const plc: PolicyEntity = { id: 'id-plc7', name: 'plc-7', roleAttributes: ['plc'] };
const web: PolicyEntity = { id: 'svc-web', name: 'web', roleAttributes: [] };
function policy(over: Partial<ServicePolicy>): ServicePolicy {
  return { id: 'pol-1', name: 'p1', type: 'Dial', semantic: 'AllOf', identityRoles: ['#all'], serviceRoles: ['#all'], ...over };
}

describe('decide with posture', () => {
  const withPosture = policy({ id: 'pc', name: 'with-posture', postureCheckRoles: ['@pc-mac'] });
  const good: PostureData = { mac: { macAddresses: ['02:00:00:00:00:01'], at: FRESH } };
  const bad: PostureData = { mac: { macAddresses: ['02:00:00:00:00:02'], at: FRESH } };
  const req = { identity: plc, service: web, type: 'Dial' as const };

  test('grants when the checks pass, naming them', () => {
    const d = decide(req, [withPosture], { checks: [macCheck], data: good, now: NOW });
    assert.deepEqual(d, { allow: true, reason: 'Dial allowed by service policy "with-posture" (pc); posture checks "plc-macs" passed', ruleId: 'pc' });
  });

  test('denies naming the failing check', () => {
    const d = decide(req, [withPosture], { checks: [macCheck], data: bad, now: NOW });
    assert.deepEqual(d, {
      allow: false,
      reason: 'Dial denied: service policy "with-posture" (pc) names identity "plc-7" (id-plc7) and service "web" (svc-web) but its posture checks fail: '
        + 'MAC check "plc-macs": none of 02:00:00:00:00:01 reported (reported: 02:00:00:00:00:02)',
      ruleId: null,
    });
    const none = decide(req, [withPosture], { checks: [macCheck], data: undefined, now: NOW });
    assert.match(none.reason, /posture checks fail: MAC check "plc-macs": no MAC posture data reported$/);
  });

  test('stale data and maxAgeMs reach the checks', () => {
    const old: PostureData = { mac: { macAddresses: ['02:00:00:00:00:01'], at: ago(120_000) } };
    assert.equal(decide(req, [withPosture], { checks: [macCheck], data: old, now: NOW }).allow, true);
    const d = decide(req, [withPosture], { checks: [macCheck], data: old, now: NOW, maxAgeMs: 60_000 });
    assert.equal(d.allow, false);
    assert.match(d.reason, /MAC posture data is stale/);
  });

  test('a policy without posture checks still grants beside a failing one', () => {
    const plain = policy({ id: 'plain', name: 'plain' });
    assert.equal(decide(req, [withPosture, plain], { checks: [macCheck], data: bad, now: NOW }).ruleId, 'plain');
    assert.equal(decide(req, [withPosture, plain], { checks: [macCheck], data: good, now: NOW }).ruleId, 'pc');
  });

  test('the first posture failure is reported; a later passing policy grants', () => {
    const other = policy({ id: 'pd', name: 'domain-posture', postureCheckRoles: ['@pc-dom'] });
    const checks = [macCheck, domainCheck];
    const d = decide(req, [withPosture, other], { checks, data: bad, now: NOW });
    assert.match(d.reason, /"with-posture" \(pc\) .*MAC check "plc-macs"/);
    const okDomain: PostureData = { ...bad, domain: { domain: 'lab.example', at: FRESH } };
    assert.equal(decide(req, [withPosture, other], { checks, data: okDomain, now: NOW }).ruleId, 'pd');
  });

  test('posture is not judged for policies that do not name the identity and service', () => {
    const elsewhere = policy({ id: 'x', identityRoles: ['#hmi'], postureCheckRoles: ['@pc-mac'] });
    const d = decide(req, [elsewhere], { checks: [macCheck], data: good, now: NOW });
    assert.equal(d.reason, 'Dial denied: no Dial policy names identity "plc-7" (id-plc7)');
  });

  test('without the posture parameter, behaviour is unchanged: posture policies grant nothing', () => {
    const d = decide(req, [withPosture]);
    assert.deepEqual(d, { allow: false, reason: 'Dial denied: service policy "with-posture" (pc) requires posture checks, which are not evaluated', ruleId: null });
    assert.equal(decide(req, [policy({ id: 'e', postureCheckRoles: [] })]).ruleId, 'e');
  });

  test('Bind policies are judged the same way', () => {
    const bind = policy({ id: 'b', name: 'bind', type: 'Bind', postureCheckRoles: ['#plc'] });
    const breq = { ...req, type: 'Bind' as const };
    assert.equal(decide(breq, [bind], { checks: [macCheck], data: good, now: NOW }).allow, true);
    assert.equal(decide(breq, [bind], { checks: [macCheck], data: bad, now: NOW }).allow, false);
  });
});

describe('decide with posture, properties', () => {
  const word = fc.constantFrom('a', 'b', 'c', 'plc', 'ot');
  const role = fc.oneof(word.map((w) => `#${w}`), word.map((w) => `@${w}`), fc.constant('#all'));
  const entity = fc.record({ id: word, name: word, roleAttributes: fc.uniqueArray(word, { maxLength: 3 }) });
  const macs = fc.constantFrom('02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03');
  const domains = fc.constantFrom('corp.example', 'lab.example', '');
  const check: fc.Arbitrary<PostureCheck> = fc.oneof(
    fc.record({ id: word, name: word, typeId: fc.constant('MAC' as const), roleAttributes: fc.uniqueArray(word, { maxLength: 3 }), data: fc.record({ macAddresses: fc.array(macs, { maxLength: 2 }) }) }),
    fc.record({ id: word, name: word, typeId: fc.constant('DOMAIN' as const), roleAttributes: fc.uniqueArray(word, { maxLength: 3 }), data: fc.record({ domains: fc.array(domains, { maxLength: 2 }) }) }),
  );
  const data: fc.Arbitrary<PostureData | undefined> = fc.option(fc.record({
    mac: fc.record({ macAddresses: fc.array(macs, { maxLength: 2 }), at: fc.constantFrom(FRESH, ago(3600_000)) }),
    domain: fc.record({ domain: domains, at: fc.constantFrom(FRESH, ago(3600_000)) }),
  }, { requiredKeys: [] }), { nil: undefined });
  const pol = fc.record({
    id: word, name: word,
    type: fc.constant('Dial' as const),
    semantic: fc.constantFrom('AllOf' as const, 'AnyOf' as const),
    identityRoles: fc.array(role, { maxLength: 3 }),
    serviceRoles: fc.array(role, { maxLength: 3 }),
    postureCheckRoles: fc.option(fc.array(role, { maxLength: 3 }), { nil: undefined }),
  });

  test('adding a posture requirement to a policy never turns a deny into an allow', () => {
    fc.assert(fc.property(entity, entity, fc.array(pol, { minLength: 1, maxLength: 6 }), fc.array(check, { maxLength: 4 }), data, fc.nat(), fc.array(role, { minLength: 1, maxLength: 3 }),
      (identity, service, policies, checks, d, pick, roles) => {
        const i = pick % policies.length;
        const target = policies[i] as ServicePolicy;
        fc.pre(target.postureCheckRoles === undefined || target.postureCheckRoles.length === 0);
        const stricter = policies.map((p, j) => (j === i ? { ...p, postureCheckRoles: roles } : p));
        const posture = { checks, data: d, now: NOW };
        const before = decide({ identity, service, type: 'Dial' }, policies, posture);
        const after = decide({ identity, service, type: 'Dial' }, stricter, posture);
        return before.allow || !after.allow;
      }), { numRuns: 2000 });
  });

  test('without the parameter, posture policies are inert: same answer as without them', () => {
    fc.assert(fc.property(entity, entity, fc.array(pol, { maxLength: 6 }), (identity, service, policies) => {
      const plain = policies.filter((p) => p.postureCheckRoles === undefined || p.postureCheckRoles.length === 0);
      return decide({ identity, service, type: 'Dial' }, policies).allow === decide({ identity, service, type: 'Dial' }, plain).allow;
    }), { numRuns: 1000 });
  });

  test('with posture, an allow comes from a plain policy or one whose checks pass', () => {
    fc.assert(fc.property(entity, entity, fc.array(pol, { maxLength: 6 }), fc.array(check, { maxLength: 4 }), data, (identity, service, policies, checks, d) => {
      const r = decide({ identity, service, type: 'Dial' }, policies, { checks, data: d, now: NOW });
      if (!r.allow) return true;
      return policies.some((x) => {
        if (x.id !== r.ruleId || !decide({ identity, service, type: 'Dial' }, [{ ...x, postureCheckRoles: undefined }]).allow) return false;
        const roles = x.postureCheckRoles ?? [];
        return roles.length === 0 || evaluatePolicyPosture(roles, x.semantic, checks, d, NOW).pass;
      });
    }), { numRuns: 2000 });
  });
});
