/**
 * How a router process is started: the V8 flags on node's command line and
 * the environment (glibc malloc reads its settings before main, so they
 * cannot be set from inside). Used wherever ztedge starts a router
 * (quickstart, the test overlay, the benches, the systemd unit); the
 * bundle's shebang carries the first flag and the environment for every
 * command. docs/memory.md has the measurements behind each choice.
 *
 * V8 flags (measured with bench/link, 2 cores):
 *
 *   --initial-old-space-size=64  without it the routers' old space starts so
 *       small that V8 runs a full collection about every 100 ms under load,
 *       each freeing almost nothing (70–370 per router per run; 10–25 % of
 *       the hub's CPU). With it: 0–3, and ztedge's CPU per Gbit matches a
 *       plain TLS relay's. Node 20 refuses it in NODE_OPTIONS and ignores it
 *       from v8.setFlagsFromString at run time: it must be on the command line.
 *   --max-semi-space-size=1      8–15 MiB less RSS after load, no CPU change seen.
 *
 * Tried and left out (router RSS after bench/link's load, CPU per Gbit):
 * --no-opt −14 MiB but +19 % CPU; --lite-mode −19 MiB but −38 % throughput;
 * --optimize-for-size, --single-threaded-gc: no change; --v8-pool-size=1,
 * --no-concurrent-recompilation: −5 MiB alone, nothing more once
 * MALLOC_ARENA_MAX=1 is set (the same memory: the compiler threads' arenas).
 */
export const ROUTER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--max-semi-space-size=1'];

/**
 * Environment of a router process, added to the inherited one.
 *
 *   MALLOC_ARENA_MAX=1  glibc gives each thread that mallocs (V8's compiler
 *       and GC workers, libuv's pool) an arena of its own, each keeping what
 *       it once held: 4 arenas of 1.2–1.5 MiB after load. One arena: −5 MiB
 *       RSS after bench/link's load, CPU per Gbit unchanged. (musl, as on
 *       OpenWrt, ignores it.)
 *
 * Tried and left out: MALLOC_MMAP_THRESHOLD_=65536 (every 64 KiB socket
 * read becomes an mmap: −1.5 MiB more, +40 % CPU per Gbit), 16384 (throughput
 * fell to a fifth), MALLOC_TRIM_THRESHOLD_ (glibc trims only the top of the
 * heap, which live blocks pin: −1 MiB), jemalloc via LD_PRELOAD (no gain).
 */
export const ROUTER_ENV: Readonly<Record<string, string>> = Object.freeze({ MALLOC_ARENA_MAX: '1' });
