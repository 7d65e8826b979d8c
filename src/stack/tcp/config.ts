/**
 * Tunables of the TCP state machine (src/stack/tcp) with their defaults, and
 * the one place they are checked. The router's config schema passes a
 * partial object here; inner code reads only the resolved, frozen result.
 */
import { EdgeError } from '../../errors.js';

export interface TcpConfig {
  /**
   * MSS we announce and the largest payload we send (RFC 9293 §3.7.1): the
   * TUN MTU minus 40 bytes of IPv4 + TCP headers. Default 1460 (MTU 1500).
   */
  mssBytes: number;
  /** Receive buffer per connection: the most bytes delivered but not yet consumed, and the largest window offered. */
  recvBufferBytes: number;
  /** Send buffer per connection: `write()` accepts bytes up to this many queued (unacknowledged + unsent). */
  sendBufferBytes: number;
  /** Out-of-order bytes held per connection (copies); beyond this, out-of-order segments are dropped and counted. */
  oooLimitBytes: number;
  /** Out-of-order segments held per connection (bounds per-segment overhead from tiny segments). */
  oooLimitSegments: number;
  /** RFC 6298 §2.4 lower bound on the RTO (the RFC says 1 s; LAN peers and Linux use 200 ms). */
  minRtoMs: number;
  /** RFC 6298 §2.5 upper bound on the RTO. */
  maxRtoMs: number;
  /** RTO before the first RTT sample (RFC 6298 §2.1: 1 s). */
  initialRtoMs: number;
  /** Granularity G of the shell's coarse clock (RFC 6298 §2.3). */
  clockGranularityMs: number;
  /** Retransmissions of one segment (data or FIN) before the connection is aborted (RFC 9293 §3.8.3, R2). */
  maxRetransmits: number;
  /** Retransmissions of a SYN-ACK (or SYN) before giving up (RFC 9293 §3.8.3, R2 for SYN). */
  maxSynRetransmits: number;
  /** Unanswered zero-window probes before the peer is declared dead (RFC 9293 §3.8.6.1 lets probing go on while the peer answers). */
  maxPersistProbes: number;
  /** Delayed-ACK timeout (RFC 9293 §3.8.6.3: MUST be under 0.5 s). */
  delayedAckMs: number;
  /** TIME-WAIT duration. RFC 9293 §3.4.2 says 2×MSL (4 min); a terminating proxy on a LAN uses a short one. */
  timeWaitMs: number;
  /** A pending SYN (waiting for the overlay dial) not accepted or refused within this is refused. */
  pendingTimeoutMs: number;
  /** FIN-WAIT-2 with nothing received for this long is aborted (0: never). Resets on every segment, so a long half-closed upload survives. */
  finWait2TimeoutMs: number;
  /** Keepalive (RFC 9293 §3.8.4): idle time before the first probe; 0 disables keepalive. */
  keepaliveIdleMs: number;
  /** Interval between unanswered keepalive probes. */
  keepaliveIntervalMs: number;
  /** Unanswered keepalive probes before the connection is aborted. */
  keepaliveCount: number;
  /** Initial congestion window in segments (RFC 6928: 10). */
  initialCwndSegments: number;
  /**
   * Largest payload of one emitted segment when the TUN does TCP segmentation
   * offload (TSO through virtio_net_hdr): the shell hands the kernel a
   * super-segment and the kernel cuts it into MSS-sized packets. Rounded down
   * to whole MSS. 0: off, every segment is at most one MSS. Retransmissions
   * stay one MSS.
   */
  tsoMaxBytes: number;
  /** Send segments smaller than the MSS without waiting for outstanding ACKs (no Nagle, RFC 9293 §3.7.4): a proxy must not add latency. */
  noDelay: boolean;
}

/** Defaults; every field is documented on {@link TcpConfig}. */
export const TCP_DEFAULTS: Readonly<TcpConfig> = Object.freeze({
  mssBytes: 1460,
  recvBufferBytes: 256 * 1024,
  sendBufferBytes: 256 * 1024,
  oooLimitBytes: 256 * 1024,
  oooLimitSegments: 256,
  minRtoMs: 200,
  maxRtoMs: 60_000,
  initialRtoMs: 1000,
  clockGranularityMs: 10,
  maxRetransmits: 12,
  maxSynRetransmits: 5,
  maxPersistProbes: 15,
  delayedAckMs: 40,
  timeWaitMs: 2000,
  pendingTimeoutMs: 15_000,
  finWait2TimeoutMs: 60_000,
  // RFC 9293 §3.8.4 / RFC 1122 §4.2.3.6: default idle ≥ 2 h. The router's config may shorten it.
  keepaliveIdleMs: 7_200_000,
  keepaliveIntervalMs: 75_000,
  keepaliveCount: 9,
  initialCwndSegments: 10,
  tsoMaxBytes: 0,
  noDelay: true,
});

/** Largest window scale shift (RFC 7323 §2.3). */
export const MAX_WINDOW_SHIFT = 14;

/**
 * Merges `overrides` over the defaults, checks ranges and freezes the result.
 * Throws `EdgeError('ERR_CONFIG')` on a value the machine cannot work with
 * (this runs at start-up or reload, never per packet).
 *
 * @example
 *   const cfg = resolveTcpConfig({ mssBytes: 1380, timeWaitMs: 1000 });
 */
export function resolveTcpConfig(overrides: Partial<TcpConfig> = {}): Readonly<TcpConfig> {
  const c: TcpConfig = { ...TCP_DEFAULTS, ...overrides };
  const check = (name: keyof TcpConfig, lo: number, hi: number): void => {
    const v = c[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new EdgeError('ERR_CONFIG', `tcp.${name} must be an integer in ${lo}…${hi}`, { details: { name, value: v } });
    }
  };
  // 64: below this a peer forces absurd per-byte overhead; 65495: IPv4 max minus headers.
  check('mssBytes', 64, 65_495);
  check('recvBufferBytes', 1024, 65_535 << MAX_WINDOW_SHIFT);
  check('sendBufferBytes', 1024, 1 << 30);
  check('oooLimitBytes', 0, 1 << 30);
  check('oooLimitSegments', 0, 1 << 16);
  check('minRtoMs', 1, 60_000);
  check('maxRtoMs', c.minRtoMs, 600_000);
  check('initialRtoMs', 1, 600_000);
  check('clockGranularityMs', 0, 10_000);
  check('maxRetransmits', 1, 100);
  check('maxSynRetransmits', 0, 100);
  check('maxPersistProbes', 1, 1000);
  check('delayedAckMs', 0, 499);
  check('timeWaitMs', 0, 240_000);
  check('pendingTimeoutMs', 1, 600_000);
  check('finWait2TimeoutMs', 0, 86_400_000);
  check('keepaliveIdleMs', 0, 86_400_000);
  check('keepaliveIntervalMs', 1, 86_400_000);
  check('keepaliveCount', 1, 1000);
  check('initialCwndSegments', 1, 100);
  // 65495: an IPv4 packet's payload after 20 + 20 bytes of headers (RFC 791 Total Length is 16 bits).
  check('tsoMaxBytes', 0, 65_495);
  if (typeof c.noDelay !== 'boolean') throw new EdgeError('ERR_CONFIG', 'tcp.noDelay must be a boolean');
  return Object.freeze(c);
}

/** Smallest shift that fits `bufferBytes` in the 16-bit window field (RFC 7323 §2.2). */
export function windowShiftFor(bufferBytes: number): number {
  let shift = 0;
  while (shift < MAX_WINDOW_SHIFT && bufferBytes / 2 ** shift > 0xffff) shift++;
  return shift;
}
