/**
 * Enrollment throughput of the real controller (issue #3): enrollments per
 * minute through the HTTPS client API of a real `ztedge controller` process.
 *
 *   npm run bench:enroll -- [--count N] [--concurrency C] [--key-type ec-p256] [--time-limit SECONDS]
 *
 * Untimed setup: a fresh controller in a temp folder, N identities with an
 * ott enrollment made through the management API, N keys and CSRs made
 * through our own KeyStore and createCsr. Timed: C workers POST the CSRs to
 * /edge/client/v1/enroll?method=ott. Phase 1 reuses TLS connections
 * (keep-alive, one agent per worker); phase 2, if time permits, opens a fresh
 * TLS connection per enrollment, as a fleet of devices would.
 *
 * It is a measurement: the exit code is 0 when the target is missed, 1 when
 * any enrollment failed, 2 when the bench itself could not run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Agent } from 'node:https';
import { createAgent, request } from '../src/identity/https.js';
import { createCsr, FileKeyStore, generatePrivateKeyPem, type KeyAlgorithm } from '../src/keys/index.js';
import { adminToken, api, BIN, removeDir, ROOT, startControllerProcess, tempDir, type ControllerProcess } from '../test/helpers/controller.js';

const MAX_COUNT = 100_000;
const MAX_CONCURRENCY = 1_024;
const DEFAULT_TIME_LIMIT_S = 300;
const MAX_TIME_LIMIT_S = 3_600;
const KEY_TYPES: readonly KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'ed25519', 'rsa-2048', 'rsa-3072', 'rsa-4096'];
const TARGET_PER_MINUTE = 10_000;
/** After the limit, this much more for in-flight requests and shutdown before the watchdog exits hard. */
const WATCHDOG_GRACE_MS = 60_000;

// ---- options ------------------------------------------------------------

function usage(message?: string, exitCode = 2): never {
  if (message !== undefined) process.stderr.write(`bench:enroll: ${message}\n`);
  process.stderr.write(`Usage: npm run bench:enroll -- [--count N] [--concurrency C] [--key-type TYPE] [--time-limit SECONDS]
  --count N            enrollments per phase, 1..${MAX_COUNT}                 [3000]
  --concurrency C      concurrent enrollment workers, 1..${MAX_CONCURRENCY}          [32]
  --key-type TYPE      ${KEY_TYPES.join(' | ')}  [ec-p256]
  --time-limit S       hard limit for the whole run, seconds (max ${MAX_TIME_LIMIT_S})   [${DEFAULT_TIME_LIMIT_S}]
`);
  process.exit(exitCode);
}

function intOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) usage(`${name} must be a whole number, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) usage(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

let parsed: ReturnType<typeof parseOptions>;
function parseOptions() {
  return parseArgs({
    options: {
      count: { type: 'string' },
      concurrency: { type: 'string' },
      'key-type': { type: 'string' },
      'time-limit': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
}
try {
  parsed = parseOptions();
} catch (err) {
  usage((err as Error).message);
}
if (parsed.values.help === true) usage(undefined, 0);
const COUNT = intOption(parsed.values.count, '--count', 3000, 1, MAX_COUNT);
const CONCURRENCY = intOption(parsed.values.concurrency, '--concurrency', 32, 1, MAX_CONCURRENCY);
const TIME_LIMIT_S = intOption(parsed.values['time-limit'], '--time-limit', DEFAULT_TIME_LIMIT_S, 1, MAX_TIME_LIMIT_S);
const KEY_TYPE = (parsed.values['key-type'] ?? 'ec-p256') as KeyAlgorithm;
if (!KEY_TYPES.includes(KEY_TYPE)) usage(`--key-type must be one of ${KEY_TYPES.join(', ')}, got "${KEY_TYPE}"`);

const startedAt = Date.now();
const deadline = startedAt + TIME_LIMIT_S * 1000;
const timeLeft = (): number => deadline - Date.now();
const log = (msg: string): void => { process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`); };

// ---- helpers ------------------------------------------------------------

/** Runs `fn` for items 0..n-1 with `workers` concurrent loops; stops taking new items once `stop()` says so. */
async function pool(n: number, workers: number, fn: (i: number, worker: number) => Promise<void>, stop: () => boolean = () => false): Promise<number> {
  let next = 0;
  const loop = async (w: number): Promise<void> => {
    while (next < n && !stop()) {
      const i = next++;
      await fn(i, w);
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, n) }, (_, w) => loop(w)));
  return next;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

/** VmRSS / VmHWM of a process, in MiB (Linux). */
function memoryOf(pid: number | undefined): { rss: number; hwm: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kib('VmRSS') / 1024, hwm: kib('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/** User+system CPU seconds a process has used so far (Linux). */
function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "(comm) ": state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** "CODE: message" of an API error answer (no request id, so equal failures group together). */
function apiError(text: string): string {
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    if (e !== undefined) return `${e.code ?? '?'}: ${(e.message ?? '').slice(0, 160)}`;
  } catch { /* not JSON */ }
  return text.slice(0, 160);
}

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');

// ---- setup (untimed) ----------------------------------------------------

interface Material { identityId: string; token: string; csr: string }

async function prepare(ctrl: ControllerProcess, session: string, prefix: string, n: number): Promise<Material[]> {
  const setupAgent = createAgent({ ca: ctrl.ca }, { maxSockets: CONCURRENCY });
  const tokens: string[] = new Array<string>(n);
  const ids: string[] = new Array<string>(n);
  const headers = { 'zt-session': session, 'content-type': 'application/json' };
  let made = 0;
  const t0 = performance.now();
  try {
    const done = await pool(n, CONCURRENCY, async (i) => {
      const created = await request(`${ctrl.url}/edge/management/v1/identities`, {
        agent: setupAgent, method: 'POST', headers,
        body: JSON.stringify({ name: `${prefix}-${i}`, isAdmin: false, enrollment: { ott: true } }),
      });
      if (created.status !== 201) throw new Error(`creating identity ${prefix}-${i}: HTTP ${created.status} ${created.body.toString().slice(0, 200)}`);
      const id = (JSON.parse(created.body.toString()) as { data: { id: string } }).data.id;
      const got = await request(`${ctrl.url}/edge/management/v1/identities/${id}`, { agent: setupAgent, headers: { 'zt-session': session } });
      if (got.status !== 200) throw new Error(`reading identity ${id}: HTTP ${got.status} ${got.body.toString().slice(0, 200)}`);
      const token = (JSON.parse(got.body.toString()) as { data: { enrollment?: { ott?: { token?: string } } } }).data.enrollment?.ott?.token;
      if (typeof token !== 'string') throw new Error(`identity ${id} has no ott enrollment token`);
      tokens[i] = token;
      ids[i] = id;
      if (++made % 1000 === 0) log(`  ${made}/${n} identities (${fmt(made / ((performance.now() - t0) / 1000))}/s)`);
    }, () => timeLeft() <= 0);
    if (done < n) throw new Error(`time limit reached while creating identities (${made}/${n})`);
  } finally {
    setupAgent.destroy();
  }
  log(`  ${n} identities in ${((performance.now() - t0) / 1000).toFixed(1)} s; making ${n} ${KEY_TYPE} keys and CSRs`);

  const t1 = performance.now();
  const out: Material[] = new Array<Material>(n);
  for (let i = 0; i < n; i++) {
    if (i % 500 === 0 && timeLeft() <= 0) throw new Error(`time limit reached while making keys (${i}/${n})`);
    const store = FileKeyStore.fromPem(generatePrivateKeyPem(KEY_TYPE), 'mem');
    out[i] = { identityId: ids[i]!, token: tokens[i]!, csr: await createCsr(store, `CN=${prefix}-${i}, O=ztedge`) };
    await store.close();
  }
  log(`  ${n} keys and CSRs in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  return out;
}

// ---- timed phase --------------------------------------------------------

interface PhaseResult {
  name: string;
  planned: number;
  ok: number;
  failures: number;
  seconds: number;
  latenciesMs: number[];
  errors: Map<string, number>;
  stoppedByLimit: boolean;
  controllerCpuSeconds: number;
  benchCpuSeconds: number;
  rssAfter: { rss: number; hwm: number } | undefined;
}

async function runPhase(ctrl: ControllerProcess, name: string, items: Material[], keepAlive: boolean): Promise<PhaseResult> {
  const agents: Agent[] = keepAlive ? Array.from({ length: Math.min(CONCURRENCY, items.length) }, () => createAgent({ ca: ctrl.ca }, { maxSockets: 1 })) : [];
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  let ok = 0;
  let failures = 0;
  const fail = (why: string): void => { failures++; errors.set(why, (errors.get(why) ?? 0) + 1); };
  const pid = ctrl.child.pid;
  const cpu0 = cpuSecondsOf(pid);
  const bench0 = process.cpuUsage();
  const t0 = performance.now();
  let attempted = 0;
  try {
    attempted = await pool(items.length, CONCURRENCY, async (i, w) => {
      const m = items[i]!;
      const s = performance.now();
      try {
        const res = await request(`${ctrl.url}/edge/client/v1/enroll?method=ott&token=${encodeURIComponent(m.token)}`, {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: m.csr,
          ...(keepAlive ? { agent: agents[w]! } : { ca: ctrl.ca }),
        });
        latencies.push(performance.now() - s);
        const text = res.body.toString('utf8');
        if (res.status !== 200) fail(`HTTP ${res.status} ${apiError(text)}`);
        else if (!text.includes('-----BEGIN CERTIFICATE-----')) fail(`HTTP 200 without a certificate: ${text.slice(0, 160)}`);
        else ok++;
      } catch (err) {
        latencies.push(performance.now() - s);
        fail(`request error: ${(err as Error).message}`);
      }
    }, () => timeLeft() <= 0);
  } finally {
    for (const a of agents) a.destroy();
  }
  const seconds = (performance.now() - t0) / 1000;
  const bench = process.cpuUsage(bench0);
  return {
    name, planned: items.length, ok, failures, seconds,
    latenciesMs: latencies.sort((a, b) => a - b),
    errors,
    stoppedByLimit: attempted < items.length,
    controllerCpuSeconds: cpuSecondsOf(pid) - cpu0,
    benchCpuSeconds: (bench.user + bench.system) / 1e6,
    rssAfter: memoryOf(pid),
  };
}

// ---- main ---------------------------------------------------------------

function ensureBuilt(): void {
  if (existsSync(BIN)) return;
  log(`${BIN} is missing: building it (node scripts/build.mjs)`);
  const r = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, stdio: 'inherit', timeout: 120_000 });
  if (r.status !== 0 || !existsSync(BIN)) throw new Error(`build failed (exit ${r.status ?? r.signal ?? 'unknown'})`);
}

function report(results: PhaseResult[], notes: string[], ctrlRss: { rss: number; hwm: number } | undefined): void {
  const lines: string[] = [];
  lines.push('');
  lines.push(`## ztedge enrollment benchmark (${KEY_TYPE}, concurrency ${CONCURRENCY})`);
  lines.push('');
  lines.push('| phase | enrollments | seconds | per minute | p50 ms | p99 ms | failures |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const perMinute = r.seconds > 0 ? (r.ok / r.seconds) * 60 : NaN;
    const label = r.stoppedByLimit ? `${r.name} (stopped by time limit)` : r.name;
    lines.push(`| ${label} | ${fmt(r.ok)}${r.ok + r.failures < r.planned ? ` of ${fmt(r.planned)}` : ''} | ${r.seconds.toFixed(2)} | ${fmt(perMinute)} | ${fmt(percentile(r.latenciesMs, 50), 1)} | ${fmt(percentile(r.latenciesMs, 99), 1)} | ${fmt(r.failures)} |`);
  }
  lines.push('');
  const mem = ctrlRss === undefined ? 'n/a' : `${fmt(ctrlRss.rss, 1)} MiB (peak ${fmt(ctrlRss.hwm, 1)} MiB)`;
  lines.push(`controller RSS after: ${mem}; CPUs: ${cpus().length} (${cpus()[0]?.model.trim() ?? 'unknown'}); node ${process.version}`);
  for (const r of results) {
    lines.push(`${r.name}: controller CPU ${fmt(r.controllerCpuSeconds, 2)} s (${fmt((100 * r.controllerCpuSeconds) / r.seconds)}% of one core, ${fmt((1000 * r.controllerCpuSeconds) / Math.max(1, r.ok + r.failures), 2)} ms/enrollment); bench client CPU ${fmt(r.benchCpuSeconds, 2)} s; controller RSS after ${r.rssAfter === undefined ? 'n/a' : `${fmt(r.rssAfter.rss, 1)} MiB`}`);
    for (const [why, n] of r.errors) lines.push(`  ${r.name} failure ×${n}: ${why}`);
  }
  for (const n of notes) lines.push(`note: ${n}`);
  lines.push('');
  lines.push(`Reproduce: npm run bench:enroll -- --count ${COUNT} --concurrency ${CONCURRENCY}${KEY_TYPE !== 'ec-p256' ? ` --key-type ${KEY_TYPE}` : ''}${TIME_LIMIT_S !== DEFAULT_TIME_LIMIT_S ? ` --time-limit ${TIME_LIMIT_S}` : ''}`);
  lines.push('target: ≥ 10,000 enrollments/minute (issue #3)');
  const partial = results.some((r) => r.stoppedByLimit) ? ' (a phase was cut short by the time limit: a partial measurement)' : '';
  const failed = results.reduce((s, r) => s + r.failures, 0);
  lines.push(results.length === 0 ? 'result: no timed phase ran' : `result: ${results.map((r) => { const pm = r.seconds > 0 ? (r.ok / r.seconds) * 60 : 0; return `${r.name} ${fmt(pm)}/minute ${pm >= TARGET_PER_MINUTE ? 'meets' : 'misses'} the target`; }).join('; ')}${partial}`);
  if (failed > 0) lines.push(`FAILED: ${fmt(failed)} enrollment(s) did not return a certificate (see above)`);
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(): Promise<number> {
  ensureBuilt();
  const dataDir = tempDir('ztedge-bench-');
  let ctrl: ControllerProcess | undefined;
  const results: PhaseResult[] = [];
  const notes: string[] = [];
  let ctrlRss: { rss: number; hwm: number } | undefined;

  // Last resort: if something hangs past the limit, stop the controller and leave.
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench:enroll: still running ${WATCHDOG_GRACE_MS / 1000} s after the time limit: stopping hard\n`);
    ctrl?.child.kill('SIGKILL');
    removeDir(dataDir);
    process.exit(2);
  }, TIME_LIMIT_S * 1000 + WATCHDOG_GRACE_MS);
  watchdog.unref();
  const onSignal = (sig: NodeJS.Signals): void => {
    ctrl?.child.kill('SIGKILL');
    removeDir(dataDir);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    log(`count ${COUNT}, concurrency ${CONCURRENCY}, key ${KEY_TYPE}, time limit ${TIME_LIMIT_S} s, ${cpus().length} CPUs, node ${process.version}`);
    ctrl = await startControllerProcess(dataDir);
    log(`controller ${ctrl.url} (pid ${ctrl.child.pid}), data ${dataDir}`);
    const session = await adminToken(ctrl);

    // Phase 1: keep-alive connections.
    log(`phase 1 setup: ${COUNT} identities, keys, CSRs (untimed)`);
    const setup1Start = performance.now();
    const m1 = await prepare(ctrl, session, 'bench-ka', COUNT);
    const setup1S = (performance.now() - setup1Start) / 1000;
    log(`phase 1: ${COUNT} enrollments over keep-alive connections`);
    const r1 = await runPhase(ctrl, 'keep-alive TLS', m1, true);
    results.push(r1);
    log(`  ${r1.ok} ok, ${r1.failures} failed in ${r1.seconds.toFixed(2)} s`);

    // Phase 2: a fresh TLS connection per enrollment, if the time left allows it.
    const perItemS = (setup1S + r1.seconds) / Math.max(1, r1.ok + r1.failures);
    const fits = Math.floor((timeLeft() / 1000) * 0.8 / perItemS);
    const n2 = Math.min(COUNT, fits);
    if (r1.stoppedByLimit || n2 < Math.min(COUNT, 100)) {
      notes.push(`fresh-TLS phase skipped: not enough time left within --time-limit ${TIME_LIMIT_S} s`);
    } else {
      if (n2 < COUNT) notes.push(`fresh-TLS phase ran ${n2} enrollments instead of ${COUNT} to stay within --time-limit ${TIME_LIMIT_S} s`);
      log(`phase 2 setup: ${n2} identities, keys, CSRs (untimed)`);
      const m2 = await prepare(ctrl, session, 'bench-fresh', n2);
      log(`phase 2: ${n2} enrollments, one fresh TLS connection each`);
      const r2 = await runPhase(ctrl, 'fresh TLS per enrollment', m2, false);
      results.push(r2);
      log(`  ${r2.ok} ok, ${r2.failures} failed in ${r2.seconds.toFixed(2)} s`);
    }

    // Spot check: an identity enrolled in phase 1 now has a cert authenticator.
    const first = m1[0]!;
    const check = await api(ctrl, 'GET', `/edge/management/v1/identities/${first.identityId}`, { token: session });
    const fp: unknown = check.body?.data?.authenticators?.cert?.fingerprint;
    if (r1.ok > 0 && typeof fp !== 'string') notes.push(`spot check failed: identity ${first.identityId} has no cert authenticator after enrolling (HTTP ${check.status})`);
  } catch (err) {
    notes.push(`bench stopped early: ${(err as Error).message}`);
  } finally {
    ctrlRss = memoryOf(ctrl?.child.pid);
    if (ctrl !== undefined) {
      const code = await ctrl.stop();
      if (code !== 0 && code !== null) notes.push(`controller exited with code ${code}`);
    }
    removeDir(dataDir);
    clearTimeout(watchdog);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  report(results, notes, ctrlRss);
  const failed = results.reduce((s, r) => s + r.failures, 0);
  if (failed > 0) return 1;
  if (results.length === 0 || notes.some((n) => n.startsWith('bench stopped early'))) return 2;
  return 0;
}

process.exitCode = await main().catch((err: unknown) => {
  process.stderr.write(`bench:enroll: ${(err as Error).stack ?? String(err)}\n`);
  return 2;
});
