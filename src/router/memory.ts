/**
 * Router memory: where it goes (figures on demand) and giving freed memory
 * back to the OS after a burst of traffic. Wiring only: nothing here runs
 * per packet. docs/memory.md explains the figures and the measurements.
 *
 *   kill -USR2 <router pid>  →  one log line {msg: "memory figures", memory: {…}}
 *
 * Why a release step at all (measured with bench/link, docs/memory.md): a
 * router's anonymous memory grows by ~25–30 MiB under load and stays there.
 * Most of it is the glibc heap: Buffers that died young are freed only at
 * V8's next scavenge (V8 lets up to ~32 MB of young backing stores pile up
 * before it forces one), so the heap's peak is set by garbage, and glibc
 * returns freed pages only from the top of the heap. A full GC followed by
 * malloc_trim(0) took an idle router after load from 95 to 68 MiB RSS.
 * malloc_trim needs native code: it is used when the `@ztedge/tun` addon
 * exports `mallocTrim`; without it the releaser does not run (a GC alone
 * frees the Buffers but glibc keeps the pages: no RSS change measured).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { getHeapCodeStatistics, getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../log/index.js';

const MiB = 1024 * 1024;

/** Memory of this process in MiB (two decimals), as `kill -USR2` logs it. */
export interface MemoryFigures {
  /** process.memoryUsage(): resident set, V8 heap reserved and used, C++ objects bound to JS, Buffer/ArrayBuffer bytes. */
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** V8 heap spaces (new, old, code, large_object, …): used and resident, each in MiB. */
  spaces: Record<string, { used: number; resident: number }>;
  /** Compiled code and bytecode, and the source text V8 keeps for lazy compilation (node's own scripts). */
  code: { machineCode: number; bytecode: number; externalSource: number };
  /**
   * Linux /proc/self/status, as bench/link prints them: RssAnon is what this
   * process allocated (heaps, stacks, malloc arenas), RssFile its resident
   * file pages (mostly the node binary, shared with every node process).
   * Absent where there is no /proc.
   */
  proc?: { rssAnon: number; rssFile: number };
}

const mib = (bytes: number): number => Math.round((bytes / MiB) * 100) / 100;

/** Reads the figures now: a few syscalls and one small /proc read; meant for a signal or a status call, not a timer. */
export function memoryFigures(): MemoryFigures {
  const m = process.memoryUsage();
  const spaces: MemoryFigures['spaces'] = {};
  for (const s of getHeapSpaceStatistics()) {
    if (s.space_size > 0) spaces[s.space_name.replace(/_space$/, '')] = { used: mib(s.space_used_size), resident: mib(s.physical_space_size) };
  }
  const c = getHeapCodeStatistics();
  const figures: MemoryFigures = {
    rss: mib(m.rss), heapTotal: mib(m.heapTotal), heapUsed: mib(m.heapUsed), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers),
    spaces,
    code: { machineCode: mib(c.code_and_metadata_size), bytecode: mib(c.bytecode_and_metadata_size), externalSource: mib(c.external_script_source_size) },
  };
  const proc = readProcStatus();
  if (proc !== undefined) figures.proc = proc;
  return figures;
}

/** RssAnon and RssFile (MiB) from /proc/self/status text (read now when not given); undefined without /proc. */
export function readProcStatus(text?: string): { rssAnon: number; rssFile: number } | undefined {
  let t = text;
  if (t === undefined) {
    try {
      t = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return undefined;
    }
  }
  const anon = /^RssAnon:\s+(\d+) kB$/m.exec(t);
  const file = /^RssFile:\s+(\d+) kB$/m.exec(t);
  if (anon === null || file === null) return undefined;
  return { rssAnon: mib(Number(anon[1]) * 1024), rssFile: mib(Number(file[1]) * 1024) };
}

/**
 * Logs {@link memoryFigures} at info on every SIGUSR2, with the count of
 * releases when a {@link MemoryReleaser} runs. Returns a function that
 * removes the handler.
 *
 * @example
 * ```ts
 * const stopReport = reportMemoryOnSignal(log, releaser);   // then: kill -USR2 <pid>
 * ```
 */
export function reportMemoryOnSignal(log: Logger, releaser?: { readonly releases: number }): () => void {
  const child = log.child({ subsys: 'memory' });
  const onSignal = (): void => {
    if (releaser === undefined) child.info({ memory: memoryFigures() }, 'memory figures');
    else child.info({ memory: memoryFigures(), releases: releaser.releases }, 'memory figures');
  };
  process.on('SIGUSR2', onSignal);
  return () => { process.off('SIGUSR2', onSignal); };
}

export interface MemoryReleaserOptions {
  /** Returns freed heap pages to the OS (glibc malloc_trim(0)). */
  trim: () => unknown;
  /** A full garbage collection; default: V8's, obtained once (see {@link fullGc}). */
  gc?: () => void;
  /** Resident set size now, in bytes; default process.memoryUsage.rss. */
  rssBytes?: () => number;
  /** Event-loop utilization (0..1) since the previous call; default from perf_hooks. */
  busyRatio?: () => number;
  /** How often the RSS and the loop's load are looked at. Default 500 ms: two cheap reads per tick. */
  checkEveryMs?: number;
  /** Release when the RSS grew this much since the last release (or the start). Default 8 MiB. */
  growthBytes?: number;
  /** The loop counts as quiet below this utilization over one tick. Default 0.1. */
  quietBelow?: number;
}

/**
 * Gives memory back to the OS once traffic has calmed down: when the RSS
 * grew by `growthBytes` since the last release and the event loop was
 * quiet over the last tick, a full GC (so dead Buffers are freed), then on
 * the next tick `trim` (V8 frees the Buffers' memory on a background
 * thread after the collection: a trim at once found much of it still
 * held). Never while the loop is busy: under steady load the RSS sits at
 * its plateau and pages given back would only be faulted in again. Nothing
 * runs per packet; the timer is unref'd.
 */
export class MemoryReleaser {
  /** Releases (GC then trim) done so far. */
  releases = 0;
  private floorBytes = 0;
  private trimDue = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly gc: () => void;
  private readonly rssBytes: () => number;
  private readonly busyRatio: () => number;
  private readonly checkEveryMs: number;
  private readonly growthBytes: number;
  private readonly quietBelow: number;

  constructor(private readonly opts: MemoryReleaserOptions) {
    this.gc = opts.gc ?? fullGc;
    this.rssBytes = opts.rssBytes ?? process.memoryUsage.rss;
    this.busyRatio = opts.busyRatio ?? loopUtilization();
    this.checkEveryMs = opts.checkEveryMs ?? 500;
    this.growthBytes = opts.growthBytes ?? 8 * MiB;
    this.quietBelow = opts.quietBelow ?? 0.1;
  }

  /**
   * Starts watching, with a release under way at once: start-up leaves
   * garbage (config parsing, the validator's compilation, TLS set-up).
   */
  start(): void {
    if (this.timer !== undefined) return;
    this.floorBytes = this.rssBytes();
    this.gc();
    this.trimDue = true;
    this.timer = setInterval(() => this.check(), this.checkEveryMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.trimDue = false;
  }

  /**
   * One tick: finishes a release begun on the previous tick (trim, new
   * floor), or begins one (GC) if the RSS grew by `growthBytes` and the
   * loop was quiet. Returns what it did.
   */
  check(): 'trimmed' | 'collected' | 'none' {
    const busy = this.busyRatio();
    if (this.trimDue) {
      this.trimDue = false;
      this.opts.trim();
      this.releases++;
      this.floorBytes = this.rssBytes();
      return 'trimmed';
    }
    if (busy >= this.quietBelow || this.rssBytes() - this.floorBytes < this.growthBytes) return 'none';
    this.gc();
    this.trimDue = true;
    return 'collected';
  }
}

/** A function returning the event loop's utilization since its previous call (perf_hooks). */
function loopUtilization(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const ratio = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return ratio;
  };
}

let gcFn: (() => void) | undefined;

/**
 * V8's full garbage collection. Node exposes it only with --expose-gc; the
 * flag is set at run time and the function taken from a fresh context, so
 * no `gc` global appears in this process.
 */
export function fullGc(): void {
  if (gcFn === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (typeof exposed === 'function') gcFn = exposed;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    }
  }
  gcFn();
}

/**
 * glibc's malloc_trim from the `@ztedge/tun` addon when it exports one
 * (`mallocTrim`), else undefined. `load` returns the addon or throws
 * (src/tun/linux.ts loadTunAddon); a missing addon is not an error here.
 */
export function findMallocTrim(load: () => unknown): (() => unknown) | undefined {
  try {
    const addon = load() as { mallocTrim?: unknown };
    const fn = addon.mallocTrim;
    return typeof fn === 'function' ? () => (fn as () => unknown).call(addon) : undefined;
  } catch {
    return undefined;
  }
}
