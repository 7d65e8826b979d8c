/**
 * The data plane of real ztedge routers, against a plain Node TLS relay and
 * a direct connection, in the same run on the same machine:
 *
 *   direct:  client ─────────────────────────────────────────────▶ targets
 *   relay:   client ─▶ relay in ─TLS 1.3─▶ relay out ─────────────▶ targets
 *   relay3:  client ─▶ relay in ─TLS─▶ relay mid ─TLS─▶ relay out ─▶ targets
 *   ztedge:  client ─▶ edge proxy port ─link─▶ hub ─link─▶ host ──▶ targets
 *
 *   npm run bench:link -- [--seconds S] [--bytes B] [--circuits N] [--round-trips N] [--runs N] [--node-options="…"]
 *
 * Everything is a separate process on 127.0.0.1: the three routers are
 * `ztedge router --config` from dist/ztedge.cjs, enrolled and configured
 * through a real controller (test/helpers/overlay.ts, log level info); the
 * relay and the targets are bench/relay.ts, bundled into the temp folder and
 * run with plain node. The relay's TLS server uses a throwaway EC P-256
 * certificate (openssl), TLS 1.3, as the routers' links do. The targets are
 * set against the two-process relay; the three-process relay has as many
 * TLS links and processes as ztedge, so it shows what the extra hop costs
 * by itself (CPU-bound on a small machine, twice the TLS work per byte).
 *
 * Measured (after an untimed warm-up of every path):
 *   - throughput: upload to a sink that acknowledges each MiB it received
 *     (so bytes buffered in between do not count) and download from a
 *     source, 1 circuit and N concurrent circuits; each test stops at
 *     --bytes (split across the circuits) or --seconds, whichever is first;
 *   - CPU of the tunnel processes per Gbit moved (core-seconds / Gbit);
 *   - an estimate of what each path would move with a core per process
 *     (as routers on their own devices have): 1 ÷ the core-s/Gbit of its
 *     busiest process. Here every process shares the machine's cores, so
 *     a path of three processes is priced by its total CPU instead;
 *   - 64-byte request/response round trips to an echo target, one circuit,
 *     sequential: median and p99;
 *   - VmRSS of the tunnel processes idle (after start) and after the load
 *     (after a settle), VmHWM (peak), and RssAnon after load: VmRSS also
 *     counts the node binary's file pages (~35 MiB, shared by every node
 *     process), RssAnon is what the process itself allocated; then VmRSS
 *     and RssAnon again after --quiet-s seconds without traffic (a router
 *     gives freed memory back a few seconds after traffic stops, and
 *     unmaps the binary's pages it stopped touching: docs/memory.md); the
 *     RSS target is judged on that later reading.
 * With --runs N the tests repeat N times, the paths interleaved within each
 * run, and the table shows the median with the range.
 *
 * Cleanup: every child process (controller, routers, relay, targets) is
 * stopped and the temp folders removed on every path, Ctrl-C included.
 * Exit code: 0 when measured (targets met or not), 1 when a check failed
 * (an echo came back wrong, a circuit broke), 2 when the bench could not run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect as netConnect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { buildSync } from 'esbuild';
import { BIN, removeDir, ROOT, tempDir } from '../test/helpers/controller.js';
import { freePort, Overlay } from '../test/helpers/overlay.js';
import { ACK_UNIT_BYTES } from './relay.js';
import { MEMORY_NOT_READ, procCpuSeconds, procMemory, type ProcMemory } from './dataplane-common.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TARGET_THROUGHPUT_RATIO = 0.8;
const TARGET_RTT_RATIO = 1.2;
const TARGET_ROUTER_RSS_MIB = 48;
const RTT_BYTES = 64;
const CLIENT_CHUNK = Buffer.alloc(64 * 1024, 0x41);
const WARMUP_BYTES = 64 * MiB;

// ---- options ------------------------------------------------------------

function usage(message?: string, exitCode = 2): never {
  if (message !== undefined) process.stderr.write(`bench:link: ${message}\n`);
  process.stderr.write(`Usage: npm run bench:link -- [options]
  --seconds S          time bound of each throughput test                       [5]
  --bytes B            byte bound of each throughput test, split across circuits;
                       suffix K, M or G (binary)                                [1G]
  --circuits N         concurrent circuits of the multi-circuit tests, 2..64     [8]
  --round-trips N      timed 64-byte round trips (after 10 % warm-up)           [2000]
  --runs N             repeat the tests N times, paths interleaved              [1]
  --pause-s S          seconds without traffic between runs (what a router's
                       memory release costs the next burst: docs/memory.md)     [0]
  --settle-ms MS       wait before reading RSS idle / after load                [2000]
  --quiet-s S          then read RSS again after S s without traffic (routers give
                       memory back a few s after traffic stops: docs/memory.md);
                       the RSS target is judged on it; 0 skips                   [35]
  --no-download        skip the download (target → client) tests
  --node-options=STR   NODE_OPTIONS for the tunnel processes (routers and relays),
                       e.g. --node-options="--max-semi-space-size=1" (with "=":
                       the value starts with --)
  --time-limit S       hard limit for the whole bench, seconds                  [900]
`);
  process.exit(exitCode);
}

function parseBytes(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const m = /^(\d+)([KMG]?)$/i.exec(value);
  if (m === null) usage(`--bytes must be a number with an optional K, M or G suffix, got "${value}"`);
  const n = Number(m[1]) * ({ '': 1, K: 1024, M: MiB, G: GiB }[m[2]!.toUpperCase()] ?? 1);
  if (n < MiB || n > 64 * GiB) usage(`--bytes must be between 1M and 64G, got ${value}`);
  return n;
}

/** Whole-number options: default and range. */
const NUMBER_OPTIONS = {
  seconds: { fallback: 5, min: 1, max: 600 },
  circuits: { fallback: 8, min: 2, max: 64 },
  'round-trips': { fallback: 2000, min: 10, max: 1_000_000 },
  runs: { fallback: 1, min: 1, max: 20 },
  'pause-s': { fallback: 0, min: 0, max: 600 },
  'settle-ms': { fallback: 2000, min: 0, max: 60_000 },
  'quiet-s': { fallback: 35, min: 0, max: 600 },
  'time-limit': { fallback: 900, min: 10, max: 7200 },
} as const;
type NumberOption = keyof typeof NUMBER_OPTIONS;

const parsed = (() => {
  try {
    return parseArgs({
      options: {
        ...Object.fromEntries(Object.keys(NUMBER_OPTIONS).map((k) => [k, { type: 'string' as const }])),
        bytes: { type: 'string' },
        'no-download': { type: 'boolean' },
        'node-options': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    return usage((err as Error).message);
  }
})();
if (parsed.values.help === true) usage(undefined, 0);

function numberOption(name: NumberOption): number {
  const { fallback, min, max } = NUMBER_OPTIONS[name];
  const raw = (parsed.values as Record<string, unknown>)[name];
  if (typeof raw !== 'string') return fallback;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= max)) usage(`--${name} takes a whole number from ${min} to ${max}, got "${raw}"`);
  return n;
}

const SECONDS = numberOption('seconds');
const BYTES = parseBytes(parsed.values.bytes, GiB);
const CIRCUITS = numberOption('circuits');
const ROUND_TRIPS = numberOption('round-trips');
const RUNS = numberOption('runs');
const PAUSE_S = numberOption('pause-s');
const SETTLE_MS = numberOption('settle-ms');
const QUIET_S = numberOption('quiet-s');
const TIME_LIMIT_S = numberOption('time-limit');
const DOWNLOAD = parsed.values['no-download'] !== true;
const NODE_OPTIONS = parsed.values['node-options'] ?? '';

const startedAt = Date.now();
/** The machine may be shared: the load before the bench is printed with the results. */
const loadAtStart = loadavg();
const log = (msg: string): void => { process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`); };

function reproduceCommand(): string {
  const a: string[] = [];
  for (const name of Object.keys(NUMBER_OPTIONS) as NumberOption[]) {
    if (name !== 'time-limit' && numberOption(name) !== NUMBER_OPTIONS[name].fallback) a.push(`--${name} ${numberOption(name)}`);
  }
  if (BYTES !== GiB) a.push(`--bytes ${String(parsed.values.bytes)}`);
  if (!DOWNLOAD) a.push('--no-download');
  if (NODE_OPTIONS !== '') a.push(`--node-options=${JSON.stringify(NODE_OPTIONS)}`);
  return `npm run bench:link${a.length > 0 ? ` -- ${a.join(' ')}` : ''}`;
}

// ---- processes ------------------------------------------------------------

/** Children this script spawned itself (the overlay's are stopped through it). */
const children: ChildProcess[] = [];

/** Starts `node relay.mjs MODE OPTIONS` and waits for its ready line. */
async function startHelper(script: string, mode: string, opts: object, nodeOptions: string): Promise<{ child: ChildProcess; port: number }> {
  const env = { ...process.env, NODE_OPTIONS: nodeOptions };
  const child = spawn(process.execPath, [script, mode, JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay ${mode}: not ready in 10 s; stderr: ${stderr}`)), 10_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"port":(\d+)/.exec(out);
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`relay ${mode} exited with ${code}; stderr: ${stderr}`)); });
  });
  return { child, port };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** Runs `fn` with NODE_OPTIONS set for the processes it spawns (spawn copies process.env). */
async function withNodeOptions<T>(value: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
}

// ---- client side of the tests ------------------------------------------------

function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    s.setNoDelay(true);
    s.once('connect', () => { s.off('error', reject); resolve(s); });
    s.once('error', reject);
  });
}

interface Transfer { bytes: number; seconds: number; failed: string | undefined }

/**
 * `circuits` connections to the sink ('S') or the source ('O') through
 * `port`, each moving `totalBytes / circuits` bytes, all stopped at
 * `seconds`. Upload counts the sink's acknowledgements (whole MiB that
 * reached it), download the bytes received.
 */
async function transfer(port: number, direction: 'up' | 'down', circuits: number, totalBytes: number, seconds: number): Promise<Transfer> {
  const per = Math.max(ACK_UNIT_BYTES, Math.floor(totalBytes / circuits / ACK_UNIT_BYTES) * ACK_UNIT_BYTES);
  const sockets: Socket[] = [];
  let moved = 0;
  let done = 0;
  let failed: string | undefined;
  const t0 = performance.now();
  let tEnd = 0;
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { tEnd = performance.now(); resolve(); }, seconds * 1000);
      const finishOne = (): void => {
        if (++done === circuits) { tEnd = performance.now(); clearTimeout(timer); resolve(); }
      };
      const fail = (why: string): void => {
        failed ??= why;
        tEnd = performance.now();
        clearTimeout(timer);
        resolve();
      };
      for (let i = 0; i < circuits; i++) {
        const s = netConnect(port, '127.0.0.1');
        sockets.push(s);
        let mine = 0;
        let finished = false;
        s.on('error', (err) => { if (!finished) fail(`circuit ${i}: ${err.message}`); });
        s.on('close', () => { if (!finished && tEnd === 0) fail(`circuit ${i} closed after ${mine} bytes`); });
        if (direction === 'up') {
          let written = 0;
          const pump = (): void => {
            while (written < per && !s.destroyed) {
              written += CLIENT_CHUNK.length;
              if (!s.write(CLIENT_CHUNK)) return;
            }
          };
          s.once('connect', () => { s.write('S'); pump(); });
          s.on('drain', pump);
          s.on('data', (acks: Buffer) => {
            const n = Math.min(acks.length * ACK_UNIT_BYTES, per - mine);
            mine += n;
            moved += n;
            if (mine >= per && !finished) { finished = true; finishOne(); }
          });
        } else {
          s.once('connect', () => s.write('O'));
          s.on('data', (c: Buffer) => {
            if (finished) return;
            const n = Math.min(c.length, per - mine);
            mine += n;
            moved += n;
            if (mine >= per) { finished = true; s.pause(); finishOne(); }
          });
        }
      }
    });
  } finally {
    for (const s of sockets) s.destroy();
  }
  return { bytes: moved, seconds: (tEnd - t0) / 1000, failed };
}

/** Sequential 64-byte round trips to the echo target: µs each, sorted; throws on a wrong echo. */
async function roundTrips(port: number, count: number, warmup: number): Promise<Float64Array> {
  const s = await connectTo(port);
  const out = new Float64Array(count);
  const msg = Buffer.alloc(RTT_BYTES);
  try {
    s.write('E');
    let pending: { resolve: () => void; reject: (e: Error) => void } | undefined;
    let got = 0;
    let expect = 0;
    const back = Buffer.alloc(RTT_BYTES);
    s.on('data', (c: Buffer) => {
      c.copy(back, got);
      got += c.length;
      if (got > RTT_BYTES) return pending?.reject(new Error(`echo sent ${got} bytes for ${RTT_BYTES}`));
      if (got === RTT_BYTES) {
        got = 0;
        if (back.readUInt32BE(0) !== expect || !back.subarray(4).equals(msg.subarray(4))) return pending?.reject(new Error('echo came back different'));
        pending?.resolve();
      }
    });
    s.on('close', () => pending?.reject(new Error('echo connection closed')));
    s.on('error', () => undefined);
    for (let i = 0; i < warmup + count; i++) {
      expect = i;
      msg.writeUInt32BE(i, 0);
      msg.fill(i & 0xff, 4);
      const t = performance.now();
      await new Promise<void>((resolve, reject) => {
        pending = { resolve, reject };
        s.write(msg);
      });
      if (i >= warmup) out[i - warmup] = (performance.now() - t) * 1000;
    }
  } finally {
    s.destroy();
  }
  return out.sort();
}

/** Retries an echo through `port` until the path works (routes travel edge ← hub ← host). */
async function waitForPath(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await Promise.race([
        roundTrips(port, 1, 0),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref()),
      ]);
      return;
    } catch (err) {
      if (Date.now() > end) throw new Error(`no working path through port ${port} within ${ms} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

// ---- the run ----------------------------------------------------------------

interface Path {
  name: 'direct' | 'relay' | 'relay3' | 'ztedge';
  label: string;
  port: number;
  /** The tunnel processes (none for direct). */
  procs: { name: string; pid: number }[];
}

interface TestDef { key: string; label: string; direction: 'up' | 'down'; circuits: number }

/** Per path, per test: one value per run. */
type Results = Map<string, Map<string, number[]>>;

function record(results: Results, path: string, key: string, value: number): void {
  let m = results.get(path);
  if (m === undefined) results.set(path, (m = new Map()));
  let a = m.get(key);
  if (a === undefined) m.set(key, (a = []));
  a.push(value);
}

const pct = (sorted: ArrayLike<number>, p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
const median = (values: number[]): number => { const s = [...values].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

function fmt(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
}

/** "median (min–max)" over runs, or the one value. */
function cell(values: number[] | undefined, digits: number): string {
  if (values === undefined || values.length === 0) return 'n/a';
  if (values.length === 1) return fmt(values[0]!, digits);
  return `${fmt(median(values), digits)} (${fmt(Math.min(...values), digits)}–${fmt(Math.max(...values), digits)})`;
}

async function measureAll(paths: Path[], tests: TestDef[], results: Results, failures: string[]): Promise<void> {
  for (let run = 1; run <= RUNS; run++) {
    if (run > 1 && PAUSE_S > 0) {
      log(`pausing ${PAUSE_S} s without traffic before run ${run}`);
      await new Promise((r) => setTimeout(r, PAUSE_S * 1000));
    }
    for (const t of tests) {
      for (const p of paths) {
        const cpu0 = p.procs.map((q) => procCpuSeconds(q.pid ?? -1));
        const r = await transfer(p.port, t.direction, t.circuits, BYTES, SECONDS);
        const cpuEach = p.procs.map((q, i) => procCpuSeconds(q.pid ?? -1) - cpu0[i]!);
        const cpu = cpuEach.reduce((a, b) => a + b, 0);
        const gbit = (r.bytes * 8) / 1e9;
        if (r.failed !== undefined) failures.push(`${p.name} ${t.label} run ${run}: ${r.failed}`);
        record(results, p.name, t.key, gbit / r.seconds);
        if (p.procs.length > 0) record(results, p.name, `${t.key}-cpu`, cpu / gbit);
        p.procs.forEach((q, i) => record(results, q.name, `${t.key}-cpu`, cpuEach[i]! / gbit));
        // What the path would move with a core per process (routers on their own devices):
        // the busiest process sets the pace once nothing else competes for its core.
        if (p.procs.length > 0) record(results, p.name, `${t.key}-core`, gbit / Math.max(...cpuEach));
        log(`run ${run} ${t.label.padEnd(22)} ${p.name.padEnd(7)} ${fmt(gbit / r.seconds, 2)} Gbit/s (${fmt(r.bytes / MiB, 0)} MiB in ${fmt(r.seconds, 2)} s${p.procs.length > 0 ? `, ${fmt(cpu / gbit, 2)} core-s/Gbit` : ''})`);
      }
    }
    for (const p of paths) {
      try {
        const us = await roundTrips(p.port, ROUND_TRIPS, Math.ceil(ROUND_TRIPS / 10));
        record(results, p.name, 'rtt50', pct(us, 50));
        record(results, p.name, 'rtt99', pct(us, 99));
        log(`run ${run} 64 B round trips       ${p.name.padEnd(7)} median ${fmt(pct(us, 50), 0)} µs, p99 ${fmt(pct(us, 99), 0)} µs`);
      } catch (err) {
        failures.push(`${p.name} round trips run ${run}: ${(err as Error).message}`);
      }
    }
  }
}

interface Memory { idle: number; after: ProcMemory; quiet: ProcMemory }

function report(paths: Path[], tests: TestDef[], results: Results, mem: Map<string, Memory>, notes: string[]): void {
  const v = (path: string, key: string): number[] | undefined => results.get(path)?.get(key);
  const ratio = (key: string, base = 'relay'): number[] | undefined => {
    const z = v('ztedge', key);
    const r = v(base, key);
    if (z === undefined || r === undefined || z.length !== r.length) return undefined;
    return z.map((x, i) => x / r[i]!);
  };
  const verdict = (values: number[] | undefined, ok: (x: number) => boolean): string => (values === undefined ? 'n/a' : ok(median(values)) ? 'PASS' : 'MISS');
  const cpu = cpus();
  const L: string[] = [];
  L.push('');
  L.push('## ztedge link data plane: direct vs TLS relays vs ztedge (127.0.0.1)');
  L.push('');
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  L.push(`${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}; node ${process.version}; load average ${load(loadAtStart)} at the start, ${load(loadavg())} at the end; ${RUNS} run(s)${RUNS > 1 ? ': median (min–max)' : ''}`);
  L.push(`Each throughput test: ${fmt(BYTES / MiB, 0)} MiB (split across the circuits) or ${SECONDS} s, whichever comes first. NODE_OPTIONS of the tunnel processes: ${NODE_OPTIONS === '' ? '(none)' : `\`${NODE_OPTIONS}\``}`);
  L.push('');
  const row = (label: string, key: string, digits: number, target: string): string =>
    `| ${label} | ${cell(v('direct', key), digits)} | ${cell(v('relay', key), digits)} | ${cell(v('relay3', key), digits)} | ${cell(v('ztedge', key), digits)} | ${cell(ratio(key), 2)} | ${target} | ${cell(ratio(key, 'relay3'), 2)} |`;
  L.push('| measure | direct | TLS relay (2 processes) | TLS relay, 3 processes | ztedge (edge → hub → host) | ztedge / relay | target | ztedge / 3-process relay |');
  L.push('|---|--:|--:|--:|--:|--:|---|--:|');
  for (const t of tests) {
    L.push(row(`${t.label}, Gbit/s`, t.key, 2, `≥ ${TARGET_THROUGHPUT_RATIO.toFixed(2)} ${verdict(ratio(t.key), (x) => x >= TARGET_THROUGHPUT_RATIO)}`));
  }
  for (const t of tests) L.push(row(`${t.label}, tunnel CPU core-s/Gbit`, `${t.key}-cpu`, 2, ''));
  for (const t of tests) L.push(row(`${t.label}, Gbit/s with a core per process (est.)`, `${t.key}-core`, 2, ''));
  L.push(row('64 B round trip median, µs', 'rtt50', 0, `≤ ${TARGET_RTT_RATIO.toFixed(1)} ${verdict(ratio('rtt50'), (x) => x <= TARGET_RTT_RATIO)}`));
  L.push(row('64 B round trip p99, µs', 'rtt99', 0, ''));
  L.push('');
  L.push(`| CPU core-s/Gbit by process | ${tests.map((t) => t.label).join(' | ')} |`);
  L.push(`|---|${tests.map(() => '--:').join('|')}|`);
  for (const p of paths) for (const q of p.procs) L.push(`| ${q.name} | ${tests.map((t) => cell(v(q.name, `${t.key}-cpu`), 2)).join(' | ')} |`);
  L.push('');
  // The target is read once the load is over: after --quiet-s when given (routers give memory back
  // a few seconds after traffic stops, docs/memory.md), else right after the settle.
  const afterS = (SETTLE_MS / 1000).toFixed(SETTLE_MS % 1000 === 0 ? 0 : 1);
  const quietAt = (SETTLE_MS / 1000 + QUIET_S).toFixed(SETTLE_MS % 1000 === 0 ? 0 : 1);
  const quietCols = QUIET_S > 0 ? ` RSS ${quietAt} s after load (RssAnon), MiB |` : '';
  L.push(`| process | RSS idle, MiB | RSS ${afterS} s after load (RssAnon), MiB | peak (VmHWM), MiB |${quietCols} target: RSS after the load |`);
  L.push(`|---|--:|--:|--:|${QUIET_S > 0 ? '--:|' : ''}---|`);
  for (const p of paths) {
    for (const q of p.procs) {
      const m = mem.get(q.name);
      if (m === undefined) continue;
      const judged = QUIET_S > 0 ? m.quiet.rss : m.after.rss;
      const target = p.name === 'ztedge' ? `≤ ${TARGET_ROUTER_RSS_MIB} ${Number.isFinite(judged) ? (judged <= TARGET_ROUTER_RSS_MIB ? 'PASS' : 'MISS') : 'n/a'}` : '';
      const quiet = QUIET_S > 0 ? ` ${fmt(m.quiet.rss, 1)} (${fmt(m.quiet.anon, 1)}) |` : '';
      L.push(`| ${q.name} | ${fmt(m.idle, 1)} | ${fmt(m.after.rss, 1)} (${fmt(m.after.anon, 1)}) | ${fmt(m.after.hwm, 1)} |${quiet} ${target} |`);
    }
  }
  L.push('');
  L.push('"With a core per process" is 1 ÷ the busiest process\'s core-s/Gbit: the pace when no process competes for its core (the routers on devices of their own); measured throughput is bound by the total CPU of all processes on this machine\'s cores.');
  L.push(`Round trips: ${ROUND_TRIPS} sequential after ${Math.ceil(ROUND_TRIPS / 10)} untimed, one circuit. Upload counts bytes the sink acknowledged (per MiB); the dial of each circuit is inside the time. RSS is read ${SETTLE_MS} ms after the last test${QUIET_S > 0 ? ` and again ${QUIET_S} s later, without traffic; the target is judged on the later reading` : ''}. VmRSS counts resident pages of the node binary too; RssAnon is what the process allocated.`);
  for (const n of notes) L.push(`note: ${n}`);
  L.push('');
  L.push(`Reproduce: ${reproduceCommand()}`);
  process.stdout.write(L.join('\n') + '\n');
}

function ensureBuilt(): void {
  if (existsSync(BIN)) return;
  log(`${BIN} is missing: building it (node scripts/build.mjs)`);
  const r = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, stdio: 'inherit', timeout: 120_000 });
  if (r.status !== 0 || !existsSync(BIN)) throw new Error(`build failed (exit ${r.status ?? r.signal ?? 'unknown'})`);
}

/** A throwaway EC P-256 certificate for 127.0.0.1, as the routers' listeners have. */
function makeCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'relay.crt');
  const key = join(dir, 'relay.key');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=bench-relay', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make the relay certificate: ${r.stderr ?? r.error?.message}`);
  return { cert, key };
}

async function main(): Promise<number> {
  const tmp = tempDir('ztedge-bench-link-');
  let overlay: Overlay | undefined;
  let overlayStarting: Promise<Overlay> | undefined;
  const notes: string[] = [];
  const failures: string[] = [];
  const results: Results = new Map();
  const mem = new Map<string, Memory>();
  const paths: Path[] = [];
  const tests: TestDef[] = [
    { key: 'up1', label: 'upload, 1 circuit', direction: 'up', circuits: 1 },
    { key: 'upN', label: `upload, ${CIRCUITS} circuits`, direction: 'up', circuits: CIRCUITS },
  ];
  if (DOWNLOAD) {
    tests.push({ key: 'down1', label: 'download, 1 circuit', direction: 'down', circuits: 1 });
    tests.push({ key: 'downN', label: `download, ${CIRCUITS} circuits`, direction: 'down', circuits: CIRCUITS });
  }

  const hardStop = (): void => {
    for (const c of children) c.kill('SIGKILL');
    if (overlay !== undefined) {
      for (const r of overlay.routers.values()) r.child?.kill('SIGKILL');
      overlay.ctrl.child.kill('SIGKILL');
      removeDir(overlay.dir);
    }
    removeDir(tmp);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`bench:link: ${sig}, stopping every child process\n`);
    hardStop();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench:link: --time-limit ${TIME_LIMIT_S} s reached: stopping hard\n`);
    hardStop();
    process.exit(2);
  }, TIME_LIMIT_S * 1000);
  watchdog.unref();

  let code = 0;
  try {
    ensureBuilt();
    log(`seconds ${SECONDS}, bytes ${fmt(BYTES / MiB, 0)} MiB, circuits 1 and ${CIRCUITS}, round trips ${ROUND_TRIPS}, runs ${RUNS}; ${cpus().length} CPUs, node ${process.version}; temp ${tmp}`);

    // Relay and targets: bundled so they run without the tsx loader, like the routers' bundle.
    const script = join(tmp, 'relay.mjs');
    buildSync({ entryPoints: [join(ROOT, 'bench', 'relay.ts')], outfile: script, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' });
    const pki = makeCert(tmp);
    const targets = await startHelper(script, 'targets', {}, '');
    const out = await startHelper(script, 'out', { to: targets.port, cert: pki.cert, key: pki.key }, NODE_OPTIONS);
    const inn = await startHelper(script, 'in', { to: out.port, ca: pki.cert }, NODE_OPTIONS);
    log(`targets :${targets.port}; relay in :${inn.port} (pid ${inn.child.pid}) → out :${out.port} (pid ${out.child.pid})`);
    const out3 = await startHelper(script, 'out', { to: targets.port, cert: pki.cert, key: pki.key }, NODE_OPTIONS);
    const mid3 = await startHelper(script, 'mid', { to: out3.port, ca: pki.cert, cert: pki.cert, key: pki.key }, NODE_OPTIONS);
    const in3 = await startHelper(script, 'in', { to: mid3.port, ca: pki.cert }, NODE_OPTIONS);
    log(`3-process relay in :${in3.port} (pid ${in3.child.pid}) → mid :${mid3.port} (pid ${mid3.child.pid}) → out :${out3.port} (pid ${out3.child.pid})`);

    // ztedge: controller, hub (listens), host and edge (dial the hub).
    overlayStarting = Overlay.start();
    overlay = await overlayStarting;
    const o = overlay;
    const proxyPort = await freePort();
    const linkYaml = '{ reconnect: { initialMs: 100, maxMs: 1000 } }'; // production keepalive; fast redial for set-up
    await withNodeOptions(NODE_OPTIONS, async () => {
      await o.addRouter({ name: 'hub', listen: true, logLevel: 'info', linkYaml });
      await o.addRouter({ name: 'host', links: ['hub'], logLevel: 'info', linkYaml });
      await o.addRouter({ name: 'edge', links: ['hub'], proxy: [{ service: 'bench', port: proxyPort }], logLevel: 'info', linkYaml });
    });
    const since = o.routers.get('host')!.logs.length;
    await o.hostService('bench', { protocol: 'tcp', address: '127.0.0.1', port: targets.port }, 'host');
    await o.allowDial('bench', 'edge');
    await o.waitHosted('host', 'bench', true, since);
    await waitForPath(proxyPort, 20_000);
    const pid = (name: string): number => o.routers.get(name)!.child!.pid!;
    log(`routers up: edge :${proxyPort} (pid ${pid('edge')}) → hub (pid ${pid('hub')}) → host (pid ${pid('host')})`);

    paths.push({ name: 'direct', label: 'direct', port: targets.port, procs: [] });
    paths.push({ name: 'relay', label: 'TLS relay', port: inn.port, procs: [{ name: 'relay in', pid: inn.child.pid! }, { name: 'relay out', pid: out.child.pid! }] });
    paths.push({ name: 'relay3', label: '3-process TLS relay', port: in3.port, procs: [{ name: 'relay3 in', pid: in3.child.pid! }, { name: 'relay3 mid', pid: mid3.child.pid! }, { name: 'relay3 out', pid: out3.child.pid! }] });
    paths.push({ name: 'ztedge', label: 'ztedge', port: proxyPort, procs: [{ name: 'edge', pid: pid('edge') }, { name: 'hub', pid: pid('hub') }, { name: 'host', pid: pid('host') }] });
    for (const p of paths) await waitForPath(p.port, 5000);

    await new Promise((r) => setTimeout(r, SETTLE_MS));
    for (const p of paths) for (const q of p.procs) mem.set(q.name, { idle: procMemory(q.pid ?? -1).rss, after: MEMORY_NOT_READ, quiet: MEMORY_NOT_READ });

    log('warm-up (untimed): 64 MiB and 200 round trips per path');
    for (const p of paths) {
      await transfer(p.port, 'up', 1, WARMUP_BYTES, SECONDS);
      if (DOWNLOAD) await transfer(p.port, 'down', 1, WARMUP_BYTES, SECONDS);
      await roundTrips(p.port, 200, 0);
    }

    await measureAll(paths, tests, results, failures);

    const readAll = (into: 'after' | 'quiet'): void => {
      for (const p of paths) for (const q of p.procs) mem.get(q.name)![into] = procMemory(q.pid ?? -1);
    };
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    readAll('after');
    if (QUIET_S > 0) {
      log(`waiting ${QUIET_S} s without traffic, then reading RSS again`);
      await new Promise((r) => setTimeout(r, QUIET_S * 1000));
      readAll('quiet');
    }
    // Where each router's memory sits now (kill -USR2 → "memory figures", docs/memory.md).
    for (const [name, r] of o.routers) {
      if (r.child?.pid === undefined || r.child.exitCode !== null) continue;
      const before = r.logs.length;
      process.kill(r.child.pid, 'SIGUSR2');
      for (let i = 0; i < 20 && !r.logs.slice(before).some((l) => l.msg === 'memory figures'); i++) await new Promise((res) => setTimeout(res, 50));
      const f = r.logs.slice(before).find((l) => l.msg === 'memory figures') as { memory?: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; proc?: { rssAnon: number; rssFile: number } }; releases?: number; circuits?: number } | undefined;
      const m = f?.memory;
      if (m !== undefined) notes.push(`${name} memory figures: V8 heap ${m.heapUsed}/${m.heapTotal} MiB used/reserved, external ${m.external} MiB (ArrayBuffers ${m.arrayBuffers}), RssAnon ${m.proc?.rssAnon ?? 'n/a'}, RssFile ${m.proc?.rssFile ?? 'n/a'} MiB, ${f?.releases ?? 0} releases, ${f?.circuits ?? 'n/a'} circuits open`);
    }
    for (const [name, r] of o.routers) {
      if (r.child?.exitCode !== null) {
        const last = r.logs.slice(-3).map((l) => JSON.stringify(l).slice(0, 200)).join(' | ');
        failures.push(`router ${name} exited (code ${r.child?.exitCode}, signal ${r.child?.signalCode}) during the bench; stderr: ${r.stderr.slice(-300) || '(none)'}; last log lines: ${last}`);
      }
      const warns = r.logs.filter((l) => typeof l.level === 'number' && l.level >= 40);
      if (warns.length > 0) notes.push(`router ${name} logged ${warns.length} warning(s)/error(s), first: ${JSON.stringify(warns[0]).slice(0, 200)}`);
    }
  } catch (err) {
    notes.push(`bench stopped early: ${(err as Error).message}`);
    code = 2;
  } finally {
    if (overlay === undefined && overlayStarting !== undefined) overlay = await overlayStarting.catch(() => undefined);
    await overlay?.stop().catch((err: unknown) => notes.push(`overlay stop: ${(err as Error).message}`));
    for (const c of children) await stopChild(c);
    removeDir(tmp);
    clearTimeout(watchdog);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  for (const f of failures) notes.push(`FAILED: ${f}`);
  report(paths, tests, results, mem, notes);
  if (code === 0 && failures.length > 0) code = 1;
  return code;
}

process.exitCode = await main().catch((err: unknown) => {
  process.stderr.write(`bench:link: ${(err as Error).stack ?? String(err)}\n`);
  return 2;
});
