/**
 * V8 flags a router process runs with (measured with bench/link, 2 cores):
 *
 *   --initial-old-space-size=64  without it the routers' old space starts so
 *       small that V8 runs a full collection about every 100 ms under load,
 *       each freeing almost nothing (70–370 per router per run; 10–25 % of
 *       the hub's CPU). With it: 0–3, and ztedge's CPU per Gbit matches a
 *       plain TLS relay's. Node 20 refuses it in NODE_OPTIONS and ignores it
 *       from v8.setFlagsFromString at run time: it must be on the command line.
 *   --max-semi-space-size=1      8–15 MiB less RSS after load, no CPU change seen.
 *
 * Used wherever ztedge starts a router (quickstart, the test overlay, the
 * systemd unit); the bundle's shebang carries the first one for every command.
 */
export const ROUTER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--max-semi-space-size=1'];
