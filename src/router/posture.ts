/**
 * Posture of the router's own host, collected the way OpenZiti's C SDK
 * (ziti-sdk-c library/posture.c) collects it for tunnelers, and shaped as
 * postureResponse*Create items (client.yml). I/O lives here; what the
 * responses mean is decided by src/policy/posture.ts.
 *
 *   os.networkInterfaces ──► MAC      every non-internal interface, once, non-zero
 *   os.release/version   ──► OS       type "Linux", version = kernel release, build = kernel version
 *   /proc/<pid>/exe      ──► PROCESS  per watched path: running?, SHA-512 of the file when running
 *   (nothing)            ──► DOMAIN   "" (see below)
 *
 * OS: on Linux the C SDK reports uname: sysname as the type ("Linux"),
 * release as the version ("6.1.0-18-amd64") and version as the build ("#1 SMP
 * PREEMPT_DYNAMIC Debian 6.1.76-1 ..."), not /etc/os-release's VERSION_ID. We
 * report the same, so OS checks written for OpenZiti tunnelers on Linux (kernel
 * ranges like ">=5.10") mean the same here.
 *
 * DOMAIN: OpenZiti's domain check is Windows domain membership
 * (NetGetJoinInformation); on every other OS the C SDK reports "". A Linux
 * host has no such membership, so we report "" as well: DOMAIN checks fail
 * here unless they list "" (as they would for a Linux tunneler).
 *
 * PROCESS: a process runs from `path` when some /proc/<pid>/exe links to it
 * or to its real path (a symlinked /usr/bin/node still matches). Like the C
 * SDK we compare exact strings, so a process whose binary was replaced
 * ("... (deleted)") does not count. Without root, /proc/<pid>/exe of other
 * users' processes cannot be read and those are not seen. Linux signs no
 * binaries, so no signer fingerprints are reported. On other OSes no
 * process is reported running (routers run on Linux).
 *
 * Item ids: OpenZiti answers each posture query with its id; a router reports
 * its host without knowing the checks, so the ids are stable per item:
 * "mac", "os", "domain", "process:<path>".
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readlink, realpath, stat } from 'node:fs/promises';
import os from 'node:os';
import type { OsType, PostureResponse } from '../policy/index.js';

/** How often PostureWatcher re-collects by default (OpenZiti SDKs poll on a similar timer). */
export const DEFAULT_POSTURE_INTERVAL_MS = 30_000;
/** At most this many /proc entries are read per collection. */
const MAX_PROC_ENTRIES = 65_536;
/** readlink calls in flight at once while scanning /proc. */
const READLINK_BATCH = 64;

/** File SHA-512s, recomputed only when the file's identity, size or mtime changes. */
export class FileHashCache {
  readonly #entries = new Map<string, { dev: number; ino: number; size: number; mtimeMs: number; hash: string }>();
  readonly #maxEntries: number;
  /** How many files were actually read and hashed (for tests and metrics). */
  hashesComputed = 0;

  constructor(maxEntries = 256) {
    this.#maxEntries = maxEntries;
  }

  /** Lowercase hex SHA-512 of the regular file at `path`, or undefined if it cannot be read. */
  async sha512(path: string): Promise<string | undefined> {
    let st;
    try {
      st = await stat(path);
    } catch {
      return undefined;
    }
    if (!st.isFile()) return undefined;
    const e = this.#entries.get(path);
    if (e !== undefined && e.dev === st.dev && e.ino === st.ino && e.size === st.size && e.mtimeMs === st.mtimeMs) return e.hash;
    let hash: string;
    try {
      const h = createHash('sha512');
      for await (const chunk of createReadStream(path, { highWaterMark: 64 * 1024 })) h.update(chunk as Buffer);
      hash = h.digest('hex');
    } catch {
      return undefined;
    }
    this.hashesComputed++;
    this.#entries.delete(path);
    this.#entries.set(path, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, hash });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    return hash;
  }
}

const defaultHashCache = new FileHashCache();

function ignore(): void {}

export interface CollectPostureOptions {
  /** Executables to report on (absolute paths), e.g. processPathsOf(checks, 'Linux'). */
  readonly processPaths: readonly string[];
  /** Defaults to one cache shared by all callers in the process. */
  readonly hashCache?: FileHashCache;
}

/** OpenZiti's osType for this host (node's platform names differ); other platforms by os.type(). */
export function hostOsType(): OsType | (string & {}) {
  switch (process.platform) {
    case 'linux': return 'Linux';
    case 'darwin': return 'macOS';
    case 'win32': return 'Windows';
    case 'android': return 'Android';
    default: return os.type();
  }
}

/** MAC addresses of non-internal interfaces, one per interface, lowercase with colons, sorted. */
export function hostMacAddresses(): string[] {
  const out = new Set<string>();
  for (const addrs of Object.values(os.networkInterfaces())) {
    const a = addrs?.find((x) => !x.internal && x.mac !== '00:00:00:00:00:00');
    if (a !== undefined) out.add(a.mac.toLowerCase());
  }
  return [...out].sort();
}

/**
 * Which of `paths` some process runs from. Reads /proc once for all paths,
 * bounded (MAX_PROC_ENTRIES, READLINK_BATCH at a time), and stops early once
 * every path is found.
 */
async function runningPaths(paths: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  if (process.platform !== 'linux' || paths.length === 0) return found;
  // exe link target → the watched paths it stands for
  const targets = new Map<string, string[]>();
  const add = (target: string, path: string): void => {
    const list = targets.get(target);
    if (list === undefined) targets.set(target, [path]);
    else if (!list.includes(path)) list.push(path);
  };
  for (const p of paths) {
    add(p, p);
    try {
      add(await realpath(p), p);
    } catch {
      // no such file: only an exe link naming the path itself can match
    }
  }
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return found;
  }
  const pids = names.filter((n) => /^\d+$/.test(n)).slice(0, MAX_PROC_ENTRIES);
  for (let i = 0; i < pids.length && found.size < paths.length; i += READLINK_BATCH) {
    const links = await Promise.all(pids.slice(i, i + READLINK_BATCH).map((pid) => readlink(`/proc/${pid}/exe`).catch(() => undefined)));
    for (const link of links) {
      const watched = link === undefined ? undefined : targets.get(link);
      if (watched !== undefined) for (const p of watched) found.add(p);
    }
  }
  return found;
}

/**
 * Collects this host's posture: MAC, OS, one PROCESS item per watched path
 * (in the order given, duplicates dropped) and DOMAIN.
 *
 * @example
 *   const responses = await collectPosture({ processPaths: ['/usr/sbin/sshd'] });
 *   // [{ id: 'mac', typeId: 'MAC', macAddresses: ['02:fc:00:00:00:01'] },
 *   //  { id: 'os', typeId: 'OS', type: 'Linux', version: '6.1.0-18-amd64', build: '#1 SMP ...' },
 *   //  { id: 'process:/usr/sbin/sshd', typeId: 'PROCESS', path: '/usr/sbin/sshd', isRunning: true, hash: '9f86…' },
 *   //  { id: 'domain', typeId: 'DOMAIN', domain: '' }]
 */
export async function collectPosture(opts: CollectPostureOptions): Promise<PostureResponse[]> {
  const cache = opts.hashCache ?? defaultHashCache;
  const paths = [...new Set(opts.processPaths)];
  const out: PostureResponse[] = [
    { id: 'mac', typeId: 'MAC', macAddresses: hostMacAddresses() },
    { id: 'os', typeId: 'OS', type: hostOsType(), version: os.release(), build: os.version() },
  ];
  const running = await runningPaths(paths);
  for (const path of paths) {
    const isRunning = running.has(path);
    const hash = isRunning ? await cache.sha512(path) : undefined;
    out.push(hash === undefined ? { id: `process:${path}`, typeId: 'PROCESS', path, isRunning } : { id: `process:${path}`, typeId: 'PROCESS', path, isRunning, hash });
  }
  out.push({ id: 'domain', typeId: 'DOMAIN', domain: '' });
  return out;
}

export interface PostureWatcherOptions {
  readonly processPaths: readonly string[];
  /** Default DEFAULT_POSTURE_INTERVAL_MS. */
  readonly intervalMs?: number;
  /** Called with the full set of responses after the first collection and whenever any item changes. */
  readonly onChange: (responses: PostureResponse[]) => void;
  /** A collection or onChange threw; the watcher carries on at the next interval. */
  readonly onError?: (err: unknown) => void;
  /** Replaces collectPosture (tests). */
  readonly collect?: (processPaths: readonly string[]) => Promise<PostureResponse[]>;
}

/**
 * Re-collects posture every `intervalMs` and reports it only when it changed,
 * so the router sends posture on change, not on every tick. One collection
 * runs at a time; the next is scheduled when it ends. Its one timer is unref'd
 * and cleared by stop().
 *
 * @example
 *   const w = new PostureWatcher({ processPaths, onChange: (r) => report(r), onError: (err) => log.warn({ err }, 'posture') });
 *   w.start();  // … w.stop() on shutdown
 */
export class PostureWatcher {
  readonly #opts: PostureWatcherOptions;
  readonly #intervalMs: number;
  #paths: readonly string[];
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<boolean> | undefined;
  #lastKey: string | undefined;
  #latest: PostureResponse[] | undefined;
  #started = false;

  constructor(opts: PostureWatcherOptions) {
    this.#opts = opts;
    this.#intervalMs = opts.intervalMs ?? DEFAULT_POSTURE_INTERVAL_MS;
    this.#paths = [...opts.processPaths];
  }

  /** The last responses reported to onChange. */
  get latest(): readonly PostureResponse[] | undefined {
    return this.#latest;
  }

  /** Collects now and then every interval. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    void this.#tick();
  }

  stop(): void {
    this.#started = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Watches other paths from now on (checks changed); collects at once when started. */
  setProcessPaths(paths: readonly string[]): void {
    if (paths.length === this.#paths.length && paths.every((p, i) => p === this.#paths[i])) return;
    this.#paths = [...paths];
    if (!this.#started) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    // A collection under way uses the old paths: collect again once it ends.
    const pending = this.#inFlight;
    if (pending === undefined) void this.#tick();
    else void pending.then(ignore, ignore).then(() => this.#tick());
  }

  /**
   * Collects once; calls onChange and resolves true if anything changed.
   * A call while a collection runs shares its result.
   */
  poll(): Promise<boolean> {
    this.#inFlight ??= this.#collectOnce().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #collectOnce(): Promise<boolean> {
    const collect = this.#opts.collect ?? ((processPaths) => collectPosture({ processPaths }));
    const responses = await collect(this.#paths);
    const key = JSON.stringify(responses);
    if (key === this.#lastKey) return false;
    this.#lastKey = key;
    this.#latest = responses;
    this.#opts.onChange(responses);
    return true;
  }

  async #tick(): Promise<void> {
    try {
      await this.poll();
    } catch (err) {
      this.#opts.onError?.(err);
    }
    if (!this.#started || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#tick();
    }, this.#intervalMs);
    this.#timer.unref();
  }
}
