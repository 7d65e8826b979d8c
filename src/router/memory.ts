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
 * returns freed pages only from the top of the heap. A scavenge followed by
 * malloc_trim(0) takes an idle router from ~88 to ~63 MiB RSS.
 *
 * When: after a few seconds of quiet (3 s), waiting twice as long each time
 * RssAnon grew back within 30 s of a release (up to 12 s), so bursty traffic
 * soon stops paying for pages given back and faulted in again (measured on
 * this 2-core VM: bursts 2 s apart with a release in each gap cost 20–30 %
 * more CPU per Gbit). A full GC at most once per quiet spell, after 20 s
 * of it, and only while 4 MiB or more of Buffers are still held: those
 * reached the old generation before they died, and no scavenge frees them
 * (after long bursty loads, 22–26 MiB of them). A full GC in every gap of
 * bursts 2 s apart cost 20 % CPU per Gbit; once per spell of 20 s, nothing
 * measurable (docs/memory.md).
 *
 * With the trim, the node binary's file pages the router stopped touching
 * are unmapped (file-pages.ts): VmRSS then counts what a quiet router uses.
 *
 * malloc_trim and madvise need native code: they come from the `@ztedge/tun`
 * addon (`mallocTrim` on glibc builds, `unmapFilePages`); without it nothing
 * is released (a GC alone frees the Buffers but glibc keeps the pages: no
 * RSS change).
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
 * releases when a {@link MemoryReleaser} runs and the circuits open when
 * `circuits` is given. Returns a function that removes the handler.
 *
 * @example
 * ```ts
 * const stopReport = reportMemoryOnSignal(log, releaser);   // then: kill -USR2 <pid>
 * ```
 */
export function reportMemoryOnSignal(log: Logger, releaser?: { readonly releases: number }, circuits?: () => number): () => void {
  const child = log.child({ subsys: 'memory' });
  const onSignal = (): void => {
    const line: Record<string, unknown> = { memory: memoryFigures() };
    if (releaser !== undefined) line.releases = releaser.releases;
    if (circuits !== undefined) line.circuits = circuits();
    child.info(line, 'memory figures');
  };
  process.on('SIGUSR2', onSignal);
  return () => { process.off('SIGUSR2', onSignal); };
}

export interface MemoryReleaserOptions {
  /** Returns freed heap pages to the OS (glibc malloc_trim(0)). */
  trim: () => unknown;
  /** A young-generation GC (scavenge); default: V8's, obtained once (see {@link youngGc}). */
  gc?: () => void;
  /** Resident set size now, in bytes, for onRelease; default process.memoryUsage.rss. */
  rssBytes?: () => number;
  /**
   * Anonymous resident bytes now (RssAnon). Growth, what a release freed and
   * whether traffic undid it are judged on it, not on VmRSS, which also
   * moves with the file pages a release unmaps and idle code maps again.
   * Read only once the router has been quiet long enough, and in the 30 s
   * after a release. Default from /proc/self/status; `rssBytes` when only
   * that is given (tests).
   */
  anonBytes?: () => number;
  /** CPU used since the previous call, in cores (0..n); default process.cpuUsage over wall time. */
  busyRatio?: () => number;
  /** Clock in ms; default Date.now. */
  nowMs?: () => number;
  /** How often the CPU use is looked at (RssAnon only when a decision needs it). Default 1 s. */
  checkEveryMs?: number;
  /** The router counts as quiet below this CPU use over one tick, in cores. Default 0.1. */
  quietBelow?: number;
  /**
   * Release once the router has been quiet this long. Default 3 s. Doubled
   * (up to `maxQuietForMs`) each time RssAnon grows back by `growthBytes`
   * within `regretWithinMs` of a release, halved each time it does not.
   */
  quietForMs?: number;
  /** Longest wait the doubling reaches. Default 12 s: a router is back to its idle size within ~20 s of any load. */
  maxQuietForMs?: number;
  /** RssAnon grown back this soon after a release means the release came too early. Default 30 s. */
  regretWithinMs?: number;
  /** …and RssAnon grew this much since the last release (or the start). Default 8 MiB. */
  growthBytes?: number;
  /**
   * A release that freed at least this much is followed by another after
   * `quietForMs` more of quiet, grown or not: Buffers still in flight at
   * one scavenge die by the next. Default 2 MiB.
   */
  followUpBytes?: number;
  /**
   * Releases that freed less are followed by one more after
   * `maxQuietForMs` of quiet, this many in a row (default 1): one that came
   * while Buffers were still in flight (between two bursts) would otherwise
   * leave its high RssAnon as the floor, and the next load's garbage under
   * the growth threshold.
   */
  maxUnproductiveFollowUps?: number;
  /**
   * A full (mark-compact) GC; default: V8's. Run at most once per quiet
   * spell, after `deepQuietMs`, when `arrayBufferBytes` is still at least
   * `deepAboveBytes`: Buffers that reached the old generation before they
   * died, which scavenges never free.
   */
  fullGc?: () => void;
  /** Bytes of ArrayBuffers (Buffers) alive or not yet collected; default process.memoryUsage().arrayBuffers. */
  arrayBufferBytes?: () => number;
  /** Quiet this long, uninterrupted, before the full GC. Default 20 s. */
  deepQuietMs?: number;
  /** …and only when this many bytes of ArrayBuffers are still held. Default 4 MiB (a quiet router's live Buffers are well under 1 MiB). */
  deepAboveBytes?: number;
  /** Unmaps clean file pages not touched since (file-pages.ts); run with each trim when given. */
  unmapFilePages?: () => unknown;
  /** Told after each release: RSS before the GC and after the trim (bytes), the wait now in force, and whether the GC was the full one. */
  onRelease?: (info: { rssBeforeBytes: number; rssAfterBytes: number; waitMs: number; full: boolean }) => void;
}

/** What {@link MemoryReleaser.check} did on one tick. */
export type ReleaseStep = 'none' | 'collected' | 'trimmed';

/**
 * Gives memory back to the OS once a router has gone quiet: when the event
 * router has been quiet (under 0.1 core) for `waitMs` and RssAnon grew by `growthBytes`
 * since the last release, a scavenge (dead Buffers freed), then on the next
 * tick `trim` and `unmapFilePages` (V8 frees the Buffers' memory on a
 * background thread after the collection: a trim at once found much of it
 * still held). Start-up garbage is released on the first two ticks; a
 * release that paid off is followed by another (see followUpBytes).
 * Nothing runs per packet; the timer is unref'd.
 *
 * @example
 * ```ts
 * const trim = findAddonFunction(() => loadTunAddon(), 'mallocTrim');
 * const releaser = trim === undefined ? undefined : new MemoryReleaser({ trim });
 * releaser?.start();   // … releaser?.stop() on shutdown
 * ```
 */
export class MemoryReleaser {
  /** Trims done so far (the start-up one included). */
  releases = 0;
  /** Quiet time the next release waits for (adapts between quietForMs and maxQuietForMs). */
  waitMs: number;
  private floorBytes = 0;
  private trimDue = false;
  /** The start-up release (scavenge on the first tick, trim on the second) is still to come. */
  private startupDue = false;
  /** Release again after `followUpWaitMs` of quiet, grown or not (see followUpBytes). */
  private followUp = false;
  private followUpWaitMs = 0;
  /** Releases in a row that freed less than followUpBytes. */
  private unproductive = 0;

  private quietSinceMs: number | undefined;
  /** Start of the quiet spell under way (not reset by releases), and whether its full GC ran. */
  private spellSinceMs: number | undefined;
  private deepDone = false;
  /** When the last release after traffic was done; cleared once traffic came back. */
  private releasedAtMs: number | undefined;
  /** RSS and RssAnon when the release under way began. */
  private rssAtCollectBytes = 0;
  private fullAtCollect = false;
  private anonAtCollectBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly gc: () => void;
  private readonly fullGc: () => void;
  private readonly arrayBufferBytes: () => number;
  private readonly deepQuietMs: number;
  private readonly deepAboveBytes: number;
  private readonly rssBytes: () => number;
  private readonly anonBytes: () => number;
  private readonly busyRatio: () => number;
  private readonly nowMs: () => number;
  private readonly checkEveryMs: number;
  private readonly quietBelow: number;
  private readonly quietForMs: number;
  private readonly maxQuietForMs: number;
  private readonly regretWithinMs: number;
  private readonly growthBytes: number;
  private readonly followUpBytes: number;
  private readonly maxUnproductiveFollowUps: number;

  constructor(private readonly opts: MemoryReleaserOptions) {
    this.gc = opts.gc ?? youngGc;
    this.fullGc = opts.fullGc ?? fullGc;
    this.arrayBufferBytes = opts.arrayBufferBytes ?? (() => process.memoryUsage().arrayBuffers);
    this.deepQuietMs = opts.deepQuietMs ?? 20_000;
    this.deepAboveBytes = opts.deepAboveBytes ?? 4 * MiB;
    this.rssBytes = opts.rssBytes ?? process.memoryUsage.rss;
    this.anonBytes = opts.anonBytes ?? (opts.rssBytes !== undefined ? opts.rssBytes : anonOrRssBytes);
    this.busyRatio = opts.busyRatio ?? cpuRatio();
    this.nowMs = opts.nowMs ?? Date.now;
    this.checkEveryMs = opts.checkEveryMs ?? 1000;
    this.quietBelow = opts.quietBelow ?? 0.1;
    this.quietForMs = opts.quietForMs ?? 3000;
    this.maxQuietForMs = Math.max(this.quietForMs, opts.maxQuietForMs ?? 12_000);
    this.regretWithinMs = opts.regretWithinMs ?? 30_000;
    this.growthBytes = opts.growthBytes ?? 8 * MiB;
    this.followUpBytes = opts.followUpBytes ?? 2 * MiB;
    this.maxUnproductiveFollowUps = opts.maxUnproductiveFollowUps ?? 1;
    this.waitMs = this.quietForMs;
  }

  /** Starts watching; the first two ticks release what start-up left (config parsing, the validator's compilation, start-up-only pages). */
  start(): void {
    if (this.timer !== undefined) return;
    this.floorBytes = this.anonBytes();
    this.startupDue = true;
    this.timer = setInterval(() => this.check(), this.checkEveryMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.trimDue = false;
    this.startupDue = false;
  }

  /**
   * One tick: finishes a release begun on the previous tick (trim, file
   * pages, new floor), or begins one (scavenge) when the router has been quiet
   * for `waitMs` and RssAnon grew by `growthBytes` (or a follow-up is due);
   * and judges the last release (see judgeLastRelease).
   */
  check(): ReleaseStep {
    const busy = this.busyRatio();
    const now = this.nowMs();
    if (this.startupDue) {
      this.startupDue = false;
      return this.collect();
    }
    if (this.trimDue) {
      this.trimDue = false;
      this.opts.trim();
      this.opts.unmapFilePages?.();
      if (this.releases > 0) this.releasedAtMs = now;
      this.releases++;
      this.floorBytes = this.anonBytes();
      if (this.anonAtCollectBytes - this.floorBytes >= this.followUpBytes) {
        this.unproductive = 0;
        this.followUpWaitMs = this.quietForMs;
      } else {
        this.unproductive++;
        this.followUpWaitMs = this.maxQuietForMs;
      }
      this.followUp = this.unproductive <= this.maxUnproductiveFollowUps;
      this.opts.onRelease?.({ rssBeforeBytes: this.rssAtCollectBytes, rssAfterBytes: this.rssBytes(), waitMs: this.waitMs, full: this.fullAtCollect });
      return 'trimmed';
    }
    if (this.releasedAtMs !== undefined) this.judgeLastRelease(now);
    if (busy >= this.quietBelow) {
      this.quietSinceMs = undefined;
      this.spellSinceMs = undefined;
      this.deepDone = false;
      return 'none';
    }
    this.quietSinceMs ??= now;
    this.spellSinceMs ??= now;
    if (!this.deepDone && now - this.spellSinceMs >= this.deepQuietMs) {
      this.deepDone = true;
      if (this.arrayBufferBytes() >= this.deepAboveBytes) {
        this.quietSinceMs = undefined;
        return this.collect(true);
      }
    }
    // A follow-up continues a quiet spell that already paid off: it need not wait the backed-off time.
    if (now - this.quietSinceMs < (this.followUp ? this.followUpWaitMs : this.waitMs)) return 'none';
    if (!this.followUp && this.anonBytes() - this.floorBytes < this.growthBytes) return 'none';
    this.quietSinceMs = undefined;
    return this.collect();
  }

  /** Begins a release: the scavenge (or the full GC) now, the trim on the next tick. */
  private collect(full = false): ReleaseStep {
    this.rssAtCollectBytes = this.rssBytes();
    this.fullAtCollect = full;
    this.anonAtCollectBytes = this.anonBytes();
    (full ? this.fullGc : this.gc)();
    this.trimDue = true;
    return 'collected';
  }

  /**
   * A release that traffic undid soon (RssAnon grew back by `growthBytes`
   * within `regretWithinMs`: pages given back were faulted in again) doubles
   * the wait; one that held that long halves it.
   */
  private judgeLastRelease(now: number): void {
    const regrown = this.anonBytes() - this.floorBytes >= this.growthBytes;
    const held = now - this.releasedAtMs! >= this.regretWithinMs;
    if (!regrown && !held) return;
    this.waitMs = regrown && !held ? Math.min(this.waitMs * 2, this.maxQuietForMs) : Math.max(this.quietForMs, this.waitMs / 2);
    this.releasedAtMs = undefined;
  }
}

/** RssAnon in bytes from /proc/self/status, or VmRSS where there is no /proc. */
function anonOrRssBytes(): number {
  const proc = readProcStatus();
  return proc === undefined ? process.memoryUsage.rss() : proc.rssAnon * MiB;
}

/**
 * A function returning the CPU this process used (all threads) per wall
 * time since its previous call, in cores. Not the event loop's utilization:
 * that counts the loop as busy while a callback waits (a blocked pipe
 * write, say), and under the test harness it read 0.1–0.5 on routers that
 * used 0.5 % of a core.
 */
function cpuRatio(): () => number {
  let lastCpu = process.cpuUsage();
  let lastMs = performance.now();
  return () => {
    const cpu = process.cpuUsage();
    const ms = performance.now();
    const ratio = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000 / Math.max(1, ms - lastMs);
    lastCpu = cpu;
    lastMs = ms;
    return ratio;
  };
}

type V8Gc = (options?: { type: 'minor' }) => void;
let gcFn: V8Gc | undefined;

/**
 * V8's gc(). Node exposes it only with --expose-gc; the flag is set at run
 * time and the function taken from a fresh context, so no `gc` global
 * appears here.
 */
function v8Gc(): V8Gc {
  if (gcFn === undefined) {
    const exposed = (globalThis as { gc?: V8Gc }).gc;
    if (typeof exposed === 'function') gcFn = exposed;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as V8Gc;
    }
  }
  return gcFn;
}

/**
 * A young-generation collection (scavenge): frees Buffers that died young
 * and leaves the old generation, and V8's sizing of it, alone.
 */
export function youngGc(): void {
  v8Gc()({ type: 'minor' });
}

/**
 * A full collection that frees what died in the old generation too, and
 * the Buffers' memory with it. gc() without options: V8 11's
 * `gc({ type: 'major' })` marks and compacts but left promoted ArrayBuffers
 * held (measured: 16 MiB before and after), where the no-argument form
 * (every available garbage, as before a heap snapshot) frees them at once.
 */
export function fullGc(): void {
  v8Gc()();
}

/**
 * A function of the `@ztedge/tun` addon, bound to it, when the addon loads
 * and exports one of that name (`mallocTrim` only on glibc builds;
 * `unmapFilePages` since the addon of this release), else undefined. `load`
 * returns the addon or throws (src/tun/linux.ts loadTunAddon); a missing
 * addon is not an error here.
 */
export function findAddonFunction<F extends (...args: never[]) => unknown>(load: () => unknown, name: 'mallocTrim' | 'unmapFilePages'): F | undefined {
  try {
    const addon = load() as Record<string, unknown>;
    const fn = addon[name];
    return typeof fn === 'function' ? (fn.bind(addon) as F) : undefined;
  } catch {
    return undefined;
  }
}
