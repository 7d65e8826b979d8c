/**
 * Reconnect delays: exponential backoff with full jitter (AWS architecture
 * blog, "Exponential Backoff and Jitter"), so a fleet of routers that lost
 * their hub do not come back in lockstep. Pure: the caller passes random().
 */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
