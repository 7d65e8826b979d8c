/**
 * Round-trip time estimator and retransmission timeout of one TCP
 * connection (RFC 6298), used by the state machine in connection.ts.
 *
 * Pure arithmetic over milliseconds: the connection feeds it samples taken
 * under Karn's rule (never from a retransmitted segment, RFC 6298 §3) and asks
 * it for the current RTO; it backs the RTO off on each expiry (§5.5).
 */

/** RFC 6298 §2.3: α = 1/8, β = 1/4, K = 4. */
const ALPHA = 1 / 8;
const BETA = 1 / 4;
const K = 4;

export class RttEstimator {
  /** Smoothed RTT, ms (meaningless until the first sample). */
  srttMs = 0;
  /** RTT variation, ms. */
  rttvarMs = 0;
  /** Current retransmission timeout, ms, backoff included. */
  rtoMs: number;
  /** Whether a sample has been taken (the first one seeds SRTT, §2.2). */
  hasSample = false;

  /**
   * @param minRtoMs lower clamp (RFC 6298 §2.4 says 1 s; a terminating proxy on a LAN uses less, as Linux does: 200 ms)
   * @param maxRtoMs upper clamp (§2.5 allows ≥ 60 s)
   * @param initialRtoMs RTO before any sample (§2.1: 1 s)
   * @param granularityMs clock granularity G of §2.3 (the shell's coarse tick)
   */
  constructor(
    readonly minRtoMs: number,
    readonly maxRtoMs: number,
    initialRtoMs: number,
    readonly granularityMs: number,
  ) {
    this.rtoMs = clamp(initialRtoMs, minRtoMs, maxRtoMs);
  }

  /** Feeds one RTT measurement R (ms) and recomputes the RTO (RFC 6298 §2.2–§2.3). */
  sample(rttMs: number): void {
    const r = rttMs < 0 ? 0 : rttMs;
    if (!this.hasSample) {
      this.srttMs = r;
      this.rttvarMs = r / 2;
      this.hasSample = true;
    } else {
      // RTTVAR is updated with the old SRTT, then SRTT (§2.3, order matters).
      this.rttvarMs = (1 - BETA) * this.rttvarMs + BETA * Math.abs(this.srttMs - r);
      this.srttMs = (1 - ALPHA) * this.srttMs + ALPHA * r;
    }
    this.rtoMs = clamp(this.srttMs + Math.max(this.granularityMs, K * this.rttvarMs), this.minRtoMs, this.maxRtoMs);
  }

  /** The timer expired: double the RTO, up to the maximum (RFC 6298 §5.5). */
  backoff(): void {
    this.rtoMs = Math.min(this.rtoMs * 2, this.maxRtoMs);
  }

  /**
   * RFC 6298 §5.7: when the SYN (or SYN-ACK) had to be retransmitted and no
   * sample exists, data transfer starts with an RTO of 3 s.
   */
  resetAfterSynLoss(): void {
    if (!this.hasSample) this.rtoMs = clamp(3000, this.minRtoMs, this.maxRtoMs);
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
