/**
 * NewReno congestion control for one TCP connection (RFC 5681, RFC 6582),
 * driven by connection.ts on each ACK and retransmission timeout. It owns
 * cwnd/ssthresh and the fast-recovery state, and answers whether the first
 * unacknowledged segment must be retransmitted now; the connection does the
 * sending.
 *
 *            new ACK (cwnd < ssthresh: +min(acked, SMSS); else +SMSS²/cwnd)
 *          +------+
 *          v      |           3rd dup ACK (ack covers recover)
 *       [ open ]--+------------------------------------> [ recovery ]
 *          ^   ^                                          |  |  ^ dup ACK: +SMSS
 *          |   +------ full ACK (ack > recover) -----------+  |  | partial ACK: retransmit,
 *          |                                                  |  | deflate
 *          +------------ RTO: cwnd = 1 SMSS -------------------+--+
 */
import { seqAdd, seqGt } from './seq.js';

export class NewReno {
  /** Congestion window, bytes. */
  cwndBytes: number;
  /** Slow-start threshold, bytes (RFC 5681 §3.1: initially arbitrarily high). */
  ssthreshBytes = 0x7fffffff;
  /** Consecutive duplicate ACKs (RFC 5681 §2 definition, checked by the caller). */
  dupAcks = 0;
  /** In fast recovery (RFC 6582 §3.2). */
  inRecovery = false;
  /** Highest sequence number sent when recovery started (RFC 6582 "recover"), inclusive. */
  recover: number;

  constructor(
    private mssBytes: number,
    initialSegments: number,
    iss: number,
  ) {
    this.cwndBytes = initialSegments * mssBytes;
    // RFC 6582 §3.2 step 1: recover starts at the initial send sequence number.
    this.recover = iss;
  }

  /** The effective send MSS changed (after the handshake): rescale the initial window. */
  setMss(mssBytes: number, initialSegments: number): void {
    this.mssBytes = mssBytes;
    this.cwndBytes = initialSegments * mssBytes;
  }

  /**
   * A duplicate ACK arrived. Returns true when the first unacknowledged
   * segment must be retransmitted now (fast retransmit, RFC 5681 §3.2 step 2/3).
   * `flightBytes` is SND.MAX − SND.UNA, `sndMax` the highest sequence sent + 1.
   */
  onDupAck(ack: number, flightBytes: number, sndMax: number): boolean {
    this.dupAcks++;
    if (this.inRecovery) {
      // RFC 6582 §3.2 step 4: each further dup ACK inflates the window by one SMSS (a segment left the network).
      this.cwndBytes += this.mssBytes;
      return false;
    }
    if (this.dupAcks !== 3) return false;
    // RFC 6582 §3.2 step 2: only when the ACK covers more than `recover`; otherwise these are
    // dup ACKs for data sent before the last RTO or recovery, and a new recovery would halve twice.
    if (!seqGt(ack, this.recover)) return false;
    this.ssthreshBytes = Math.max(flightBytes >> 1, 2 * this.mssBytes); // RFC 5681 eq. (4)
    this.recover = seqAdd(sndMax, -1);
    this.cwndBytes = this.ssthreshBytes + 3 * this.mssBytes; // RFC 5681 §3.2 step 3
    this.inRecovery = true;
    return true;
  }

  /**
   * An ACK for new data: `ackedBytes` newly acknowledged, `flightBytes` still
   * outstanding after it. Returns true on a partial ACK in recovery (the
   * caller retransmits the first unacknowledged segment, RFC 6582 §3.2 step 5).
   */
  onNewAck(ack: number, ackedBytes: number, flightBytes: number): boolean {
    this.dupAcks = 0;
    if (this.inRecovery) {
      if (seqGt(ack, this.recover)) {
        // Full ACK (RFC 6582 §3.2 step 3, option 1): deflate to min(ssthresh, max(FlightSize, SMSS) + SMSS).
        this.cwndBytes = Math.min(this.ssthreshBytes, Math.max(flightBytes, this.mssBytes) + this.mssBytes);
        this.inRecovery = false;
        return false;
      }
      // Partial ACK: deflate by the amount acknowledged, add back one SMSS if at least that much was acked.
      this.cwndBytes -= ackedBytes;
      if (ackedBytes >= this.mssBytes) this.cwndBytes += this.mssBytes;
      if (this.cwndBytes < this.mssBytes) this.cwndBytes = this.mssBytes;
      return true;
    }
    if (this.cwndBytes < this.ssthreshBytes) {
      // Slow start (RFC 5681 §3.1 eq. (2), byte counting limited to one SMSS per ACK).
      this.cwndBytes += Math.min(ackedBytes, this.mssBytes);
    } else {
      // Congestion avoidance (RFC 5681 eq. (3)); at least 1 byte so small windows still grow.
      this.cwndBytes += Math.max(1, Math.floor((this.mssBytes * this.mssBytes) / this.cwndBytes));
    }
    return false;
  }

  /**
   * The retransmission timer expired (RFC 5681 §3.1, RFC 6582 §4).
   * `firstExpiry`: the segment had not been retransmitted by the timer yet (ssthresh is then halved; otherwise held).
   */
  onTimeout(flightBytes: number, sndMax: number, firstExpiry: boolean): void {
    if (firstExpiry) this.ssthreshBytes = Math.max(flightBytes >> 1, 2 * this.mssBytes);
    this.cwndBytes = this.mssBytes; // loss window LW = 1 SMSS
    this.dupAcks = 0;
    this.inRecovery = false;
    this.recover = seqAdd(sndMax, -1);
  }
}
