/**
 * What a bench script needs around its measurements: whole-number options
 * with ranges and defaults (and the reproduce line built from them), the
 * memory and CPU of a process from /proc, number formatting, a log with the
 * elapsed time, and a fresh dist/ztedge.cjs.
 *
 * Written for bench/dataplane.ts and free of anything specific to it:
 * bench/link.ts carries its own copies of the same pieces and can import
 * these instead.
 *
 *   const opts = new BenchOptions('bench:x', USAGE, { seconds: { fallback: 5, min: 1, max: 60 } }, { paths: { type: 'string' } });
 *   const seconds = opts.number('seconds');
 *   const reproduce = `npm run bench:x -- ${opts.changed().join(' ')}`;
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BIN, ROOT } from '../test/helpers/controller.js';

/** A whole-number option: its default and its inclusive range. */
export interface NumberSpec { fallback: number; min: number; max: number }

/**
 * The command line of a bench: `--NAME VALUE` whole numbers checked
 * against their range, other options as `parseArgs` declares them, and
 * `--help`. Bad input prints the usage and exits 2; `--help` exits 0.
 */
export class BenchOptions<N extends string> {
  /** What parseArgs returned, for the non-number options. */
  readonly values: Record<string, string | boolean | undefined>;

  constructor(
    private readonly command: string,
    private readonly usageText: string,
    private readonly numbers: Record<N, NumberSpec>,
    others: NonNullable<ParseArgsConfig['options']> = {},
  ) {
    const options: NonNullable<ParseArgsConfig['options']> = { ...others, help: { type: 'boolean', short: 'h' } };
    for (const name of Object.keys(numbers)) options[name] = { type: 'string' };
    try {
      this.values = parseArgs({ options, strict: true, allowPositionals: false }).values as BenchOptions<N>['values'];
    } catch (err) {
      this.usage((err as Error).message);
    }
    if (this.values.help === true) this.usage(undefined, 0);
    for (const name of Object.keys(numbers) as N[]) this.number(name); // reject bad values before anything starts
  }

  /** Prints `message` (if any) and the usage to stderr, and exits. */
  usage(message?: string, exitCode = 2): never {
    if (message !== undefined) process.stderr.write(`${this.command}: ${message}\n`);
    process.stderr.write(this.usageText);
    process.exit(exitCode);
  }

  /** The value of `--name`, or its default. */
  number(name: N): number {
    const { fallback, min, max } = this.numbers[name];
    const raw = this.values[name];
    if (typeof raw !== 'string') return fallback;
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= min && n <= max)) this.usage(`--${name} takes a whole number from ${min} to ${max}, got "${raw}"`);
    return n;
  }

  /** True when `--name` was given. */
  given(name: N): boolean {
    return this.values[name] !== undefined;
  }

  /** `--name value` for each number option away from its default, except `skip`: for the reproduce line. */
  changed(skip: readonly N[] = []): string[] {
    return (Object.keys(this.numbers) as N[])
      .filter((n) => !skip.includes(n) && this.number(n) !== this.numbers[n].fallback)
      .map((n) => `--${n} ${this.number(n)}`);
  }
}

/** A process's memory from /proc/PID/status, MiB; NaN once it is gone. */
export interface ProcMemory {
  /** VmRSS: resident, file pages shared with other processes included. */
  rss: number;
  /** VmHWM: the peak of VmRSS. */
  hwm: number;
  /** RssAnon: the process's own resident memory. */
  anon: number;
}

export const MEMORY_NOT_READ: ProcMemory = Object.freeze({ rss: NaN, hwm: NaN, anon: NaN });

export function procMemory(pid: number): ProcMemory {
  let status = '';
  try { status = readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { return MEMORY_NOT_READ; }
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m === null ? NaN : Number(m[1]) / 1024;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM'), anon: field('RssAnon') };
}

/** utime + stime of a process in seconds (proc(5) stat fields 14 and 15, in USER_HZ = 100 ticks); NaN once it is gone. */
export function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count from the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** `n` with thousands separators and `digits` decimals, or n/a. */
export function fmt(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
}

/** A progress log on stderr, each line stamped with the seconds since it was made. */
export function elapsedLog(): (msg: string) => void {
  const t0 = Date.now();
  return (msg) => { process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`); };
}

/** The newest modification time of the files under `dir`, ms. */
function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/**
 * Builds dist/ztedge.cjs when it is missing or older than a file under
 * src/: a stale bundle would measure old code (or refuse what src/ now
 * supports). Throws with the build's output when the build fails.
 */
export function ensureFreshBundle(log: (msg: string) => void): void {
  if (existsSync(BIN) && statSync(BIN).mtimeMs >= newestMtimeMs(join(ROOT, 'src'))) return;
  log(`${BIN} is missing or older than src/: building it (node scripts/build.mjs)`);
  const r = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || !existsSync(BIN)) throw new Error(`build failed (exit ${r.status ?? r.signal ?? 'unknown'}): ${(r.stderr || r.stdout).trim().slice(-400)}`);
}
