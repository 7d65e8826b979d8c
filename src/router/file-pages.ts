/**
 * Unmapping the file pages a quiet router no longer touches: the pages of
 * the `node` binary and its libraries that start-up or a burst of traffic
 * faulted in (V8's snapshot and compiler, ICU tables, TLS handshake code).
 *
 * Why (measured, docs/memory.md): a bare `node` maps ~34 MiB of its own
 * binary, and a router under load ~40 MiB, while the code a quiet router
 * runs fits in ~6–12 MiB. Those pages are clean copies of files: the kernel
 * may drop them any time, but until it does they count in the process's
 * VmRSS (what `top` and `ps` show). madvise(MADV_DONTNEED) on a read-only,
 * never-written file mapping unmaps them from this process only. They stay
 * in the page cache, shared with every other process, and the next touch
 * maps them back with a minor fault (no disk read while they are cached).
 *
 * Safety: DONTNEED on a private mapping throws away pages the process has
 * written (copy-on-write), so only mappings that are not writable and hold
 * no anonymous (copied) page at all are chosen: smaps' `Anonymous: 0 kB`.
 * RELRO segments, which the loader wrote before making them read-only, have
 * anonymous pages and are skipped. A read-only mapping cannot gain copies
 * later (nothing in a router mprotects the binary). Device mappings (`/dev/`)
 * and memfds are skipped too.
 *
 * Nothing here runs per packet: the memory releaser (memory.ts) calls it
 * with its trim, after a quiet spell.
 */
import { readFileSync } from 'node:fs';

/** One mapping of /proc/self/smaps, with the two sizes that decide. */
export interface Mapping {
  start: number;
  end: number;
  /** "r-xp", "r--p", "rw-p", "r--s", … */
  perms: string;
  /** File path, "[heap]", "[stack]", … or "" for an anonymous mapping. */
  path: string;
  /** Resident kB. */
  rssKb: number;
  /** kB of copied-on-write (anonymous) pages inside a file mapping. */
  anonymousKb: number;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) ([-r][-w][-x][ps]) [0-9a-f]+ [0-9a-f]+:[0-9a-f]+ \d+\s*(.*)$/;

/**
 * Parses /proc/PID/smaps text. Pure; lines it does not know are skipped,
 * and a mapping without its Rss and Anonymous lines gets -1 (never chosen).
 */
export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split('\n')) {
    const h = HEADER.exec(line);
    if (h !== null) {
      cur = { start: parseInt(h[1]!, 16), end: parseInt(h[2]!, 16), perms: h[3]!, path: h[4]!, rssKb: -1, anonymousKb: -1 };
      out.push(cur);
      continue;
    }
    if (cur === undefined) continue;
    if (line.startsWith('Rss:')) cur.rssKb = kb(line);
    else if (line.startsWith('Anonymous:')) cur.anonymousKb = kb(line);
  }
  return out;
}

function kb(line: string): number {
  const m = /:\s+(\d+) kB$/.exec(line);
  return m === null ? -1 : Number(m[1]);
}

/** The mappings whose resident pages may be unmapped without losing anything (see the module comment). */
export function unmappableFileMappings(mappings: readonly Mapping[]): Mapping[] {
  return mappings.filter((m) =>
    m.perms[1] === '-' &&
    m.path.startsWith('/') &&
    !m.path.startsWith('/dev/') &&
    !m.path.startsWith('/memfd:') &&
    m.anonymousKb === 0 &&
    m.rssKb > 0 &&
    m.end > m.start);
}

/** What one {@link unmapIdleFilePages} did. */
export interface UnmapResult {
  /** Mappings unmapped. */
  mappings: number;
  /** Their resident kB before. */
  kb: number;
  /** Mappings the kernel refused (-errno), e.g. a locked one. */
  failed: number;
}

/** madvise(MADV_DONTNEED) on [addr, addr + length): 0 or -errno (the `@ztedge/tun` addon's `unmapFilePages`). */
export type UnmapFn = (addr: number, length: number) => number;

/**
 * Unmaps the resident pages of every clean read-only file mapping of this
 * process. `readSmaps` is for tests; undefined from it (no /proc) does nothing.
 */
export function unmapIdleFilePages(unmap: UnmapFn, readSmaps: () => string | undefined = readOwnSmaps): UnmapResult {
  const result: UnmapResult = { mappings: 0, kb: 0, failed: 0 };
  const text = readSmaps();
  if (text === undefined) return result;
  for (const m of unmappableFileMappings(parseSmaps(text))) {
    if (unmap(m.start, m.end - m.start) === 0) {
      result.mappings++;
      result.kb += m.rssKb;
    } else result.failed++;
  }
  return result;
}

function readOwnSmaps(): string | undefined {
  try {
    return readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return undefined;
  }
}
