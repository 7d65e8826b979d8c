/**
 * Sequence-number arithmetic for the TCP state machine (src/stack/tcp).
 *
 * TCP sequence and acknowledgment numbers live on a circle of 2^32 values
 * (RFC 9293 §3.4): every comparison is "which of the two is ahead by less
 * than half the circle" (serial number arithmetic, RFC 1982 §3.2). The
 * numbers are unsigned 32-bit values held in JS numbers; the helpers below go
 * through `| 0` (signed 32-bit difference) so they stay exact and allocation
 * free. Never compare sequence numbers with `<` directly.
 */

/** Mask back into 0 … 2^32-1. */
export function seqWrap(n: number): number {
  return n >>> 0;
}

/** `a + n` on the sequence circle (n may be negative). */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/**
 * Signed distance from `b` to `a` (a − b) in −2^31 … 2^31−1: positive when `a`
 * is ahead. Valid while the two are less than 2^31 apart (always true inside
 * one window, RFC 7323 §2.3 caps windows at 2^30).
 */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** a < b (RFC 1982 §3.2). */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** a ≤ b. */
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

/** a > b. */
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** a ≥ b. */
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** The later of a and b on the circle. */
export function seqMax(a: number, b: number): number {
  return ((a - b) | 0) >= 0 ? a : b;
}

/** The earlier of a and b on the circle. */
export function seqMin(a: number, b: number): number {
  return ((a - b) | 0) <= 0 ? a : b;
}

/** lo ≤ x < lo + len: the "x is inside the window" test of RFC 9293 §3.10.7.4. */
export function seqInWindow(x: number, lo: number, len: number): boolean {
  const d = (x - lo) | 0;
  return d >= 0 && d < len;
}
