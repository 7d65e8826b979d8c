/**
 * Names shared by the TCP state machine (connection.ts), its table
 * (table.ts) and the shell: connection states, why segments are dropped, why
 * connections end, the per-table counters, and the app's event interface.
 *
 * Connection states (RFC 9293 §3.3.2), plus PENDING: a SYN held while the
 * shell dials the overlay circuit (no SYN-ACK yet).
 *
 *                  SYN (table.onSyn → 'pending')
 *        (none) ---------------------------------> PENDING --refuse()/timeout--> CLOSED (RST|ACK sent)
 *                                                     | accept(): send SYN-ACK
 *     connect(): send SYN                             v
 *   SYN-SENT ---- rcv SYN-ACK, send ACK ---> ESTABLISHED <--- rcv ACK of SYN --- SYN-RECEIVED
 *                                            |         |
 *                           close(): FIN     |         | rcv FIN: ACK, app 'end'
 *                                            v         v
 *                                   FIN-WAIT-1         CLOSE-WAIT
 *                     rcv ACK of FIN |    | rcv FIN        | close(): FIN
 *                                    v    v                v
 *                           FIN-WAIT-2    CLOSING        LAST-ACK
 *                        rcv FIN |           | rcv ACK      | rcv ACK of FIN
 *                                v           v              v
 *                               TIME-WAIT (timeWaitMs) ---> CLOSED
 */
import type { TcpConnection } from './connection.js';
import type { TcpSegmentOut } from './segment.js';

/** Connection states. Numeric so a switch compiles to a jump table. */
export const TcpState = {
  CLOSED: 0,
  PENDING: 1,
  SYN_SENT: 2,
  SYN_RECEIVED: 3,
  ESTABLISHED: 4,
  FIN_WAIT_1: 5,
  FIN_WAIT_2: 6,
  CLOSING: 7,
  TIME_WAIT: 8,
  CLOSE_WAIT: 9,
  LAST_ACK: 10,
} as const;
export type TcpStateValue = (typeof TcpState)[keyof typeof TcpState];

/** State names by value, for logs and test messages. */
export const TCP_STATE_NAMES: readonly string[] = [
  'CLOSED', 'PENDING', 'SYN-SENT', 'SYN-RECEIVED', 'ESTABLISHED', 'FIN-WAIT-1',
  'FIN-WAIT-2', 'CLOSING', 'TIME-WAIT', 'CLOSE-WAIT', 'LAST-ACK',
];

/** Why a received segment was (wholly or partly) dropped. Each has a counter. */
export type TcpDropReason =
  /** No connection for the 4-tuple and not a SYN: answered with RST (RFC 9293 §3.10.7.1). */
  | 'noConnection'
  /** A SYN beyond the table's connection limit: answered with RST|ACK. */
  | 'connectionLimit'
  /** The shell's onSyn hook said 'ignore'. */
  | 'ignored'
  /** Flags no valid segment carries (SYN|RST, SYN|FIN on a new tuple, none at all). */
  | 'badFlags'
  /** Sequence number outside the receive window (RFC 9293 §3.10.7.4 first check): ACK sent. */
  | 'outOfWindow'
  /** Synchronized state and the ACK bit is off (RFC 9293 §3.10.7.4 fifth check). */
  | 'noAck'
  /** ACK for data never sent (SEG.ACK > SND.MAX): ACK sent. */
  | 'ackTooNew'
  /** ACK older than SND.UNA − MAX.SND.WND (RFC 5961 §5.2): challenge ACK. */
  | 'ackTooOld'
  /** RST in window but not at RCV.NXT (RFC 5961 §3.2): challenge ACK. */
  | 'rstChallenged'
  /** RST outside the window: ignored (RFC 5961 §3.2). */
  | 'rstOutOfWindow'
  /** SYN on a synchronized connection (RFC 5961 §4): challenge ACK. */
  | 'synChallenged'
  /** Out-of-order queue full (bytes or pieces). */
  | 'oooFull'
  /** Segment to a PENDING connection that is not a SYN (nothing was sent to the peer yet). */
  | 'pending'
  /** SYN-SENT: a segment that is not a valid SYN-ACK (RFC 9293 §3.10.7.3). */
  | 'badSynAck'
  /** Data after the peer's FIN, or in TIME-WAIT: text ignored (RFC 9293 §3.10.7.4 seventh check). */
  | 'afterFin';

export const TCP_DROP_REASONS: readonly TcpDropReason[] = [
  'noConnection', 'connectionLimit', 'ignored', 'badFlags', 'outOfWindow', 'noAck', 'ackTooNew', 'ackTooOld',
  'rstChallenged', 'rstOutOfWindow', 'synChallenged', 'oooFull', 'pending', 'badSynAck', 'afterFin',
];

/** Why a connection ended, as told to the app's `onClose` and counted. */
export type TcpCloseReason =
  /** Both FINs exchanged and acknowledged. */
  | 'normal'
  /** The peer sent a valid RST (RFC 9293 §3.10.7.4, RFC 5961 §3). */
  | 'reset'
  /** We refused a pending SYN (`refuse()`): RST|ACK sent, the device sees "connection refused". */
  | 'refused'
  /** A pending SYN was neither accepted nor refused within pendingTimeoutMs: refused. */
  | 'pendingTimeout'
  /** The app called `abort()`: RST sent. */
  | 'aborted'
  /** Retransmissions (or zero-window probes) went unanswered (RFC 9293 §3.8.3 R2). */
  | 'timeout'
  /** Keepalive probes went unanswered (RFC 9293 §3.8.4). */
  | 'keepalive'
  /** FIN-WAIT-2 silent for finWait2TimeoutMs. */
  | 'finWait2Timeout';

export const TCP_CLOSE_REASONS: readonly TcpCloseReason[] = [
  'normal', 'reset', 'refused', 'pendingTimeout', 'aborted', 'timeout', 'keepalive', 'finWait2Timeout',
];

/**
 * Counters of one table (shared by its connections). Plain numbers, read by
 * the metrics exporter; nothing is logged per segment.
 */
export class TcpCounters {
  segmentsIn = 0;
  segmentsOut = 0;
  /** Payload bytes delivered in order to apps. */
  bytesDelivered = 0;
  /** Payload bytes sent (retransmissions included). */
  bytesSent = 0;
  /** Segments retransmitted (timer, fast retransmit, SYN-ACK). */
  retransmits = 0;
  /** Fast retransmits (3 dup ACKs, RFC 5681 §3.2). */
  fastRetransmits = 0;
  /** Retransmission timer expiries. */
  timeouts = 0;
  /** RSTs sent (refusals, aborts, answers to strays). */
  resetsSent = 0;
  /** Challenge ACKs sent (RFC 5961). */
  challengeAcks = 0;
  /** Connections that reached ESTABLISHED. */
  established = 0;
  readonly drops: Record<TcpDropReason, number>;
  readonly closes: Record<TcpCloseReason, number>;

  constructor() {
    const drops = {} as Record<TcpDropReason, number>;
    for (const r of TCP_DROP_REASONS) drops[r] = 0;
    const closes = {} as Record<TcpCloseReason, number>;
    for (const r of TCP_CLOSE_REASONS) closes[r] = 0;
    this.drops = drops;
    this.closes = closes;
  }
}

/**
 * The app side of one connection (the router's circuit bridge), given at
 * `accept()` / `connect()` or with `setHandler()`. Calls are synchronous,
 * from inside the machine's entry points; the handler may call back into the
 * connection (write, consume, close, abort) from any of them.
 */
export interface TcpHandler {
  /** The handshake completed (ESTABLISHED). */
  onOpen(conn: TcpConnection): void;
  /**
   * In-order bytes from the peer. `data` is borrowed: valid only during this
   * call (it may be a view of the received packet); use or copy it before
   * returning. The bytes count against the receive window until the app
   * calls `conn.consume(n)`.
   */
  onData(conn: TcpConnection, data: Buffer): void;
  /** The peer sent FIN: no more data will come (we may still send). */
  onEnd(conn: TcpConnection): void;
  /** Send buffer space is back after a `write()` accepted less than offered. */
  onWritable(conn: TcpConnection): void;
  /** The connection is over for the app (sent once; TIME-WAIT lingers on inside the table). */
  onClose(conn: TcpConnection, reason: TcpCloseReason): void;
}

/** Where the machine puts segments to send: the I/O shell adds the IP header. */
export interface TcpOutput {
  /**
   * One segment from `srcIp` (ours) to `dstIp` (the peer), IPv4 addresses as
   * unsigned 32-bit numbers. `seg` is fresh and may be kept; its payload is
   * valid until the next call into the machine (it may be a view of a buffer
   * the app wrote). Called synchronously from inside the machine.
   */
  sendSegment(srcIp: number, dstIp: number, seg: TcpSegmentOut): void;
}
