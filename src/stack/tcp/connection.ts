/**
 * One TCP connection, sans-I/O (RFC 9293): the state machine between the
 * packet codec (src/wire/tcp.ts, via segment.ts) and the router's circuit
 * bridge. A TcpTable (table.ts) creates connections and feeds them segments
 * and timer ticks; the connection answers through a TcpOutput (segments to
 * send) and a TcpHandler (the app's events).
 *
 * Every entry point takes `now` (ms from one coarse clock); nothing here reads
 * a clock, arms a timer or touches a socket. Timers are deadlines in fields,
 * exposed by `nextDeadline()` and run by `onTimer(now)`.
 *
 * Send side: the app's writes are queued (SendQueue, a chunk list) from
 * SND.UNA on; segments are cut at min(MSS, peer window, cwnd) (NewReno,
 * congestion.ts), retransmitted on RTO (RFC 6298, rtt.ts) or on three
 * duplicate ACKs, and a zero window is probed (persist timer).
 * Receive side: in-order bytes go to the app as borrowed views of the packet;
 * out-of-order bytes are copied into the Reassembly queue. The advertised
 * window is the receive buffer minus what the app has been given but not yet
 * `consume()`d, so a slow far end closes the window instead of losing data.
 *
 * Not done, knowingly: SACK and timestamps (parsed, never negotiated),
 * simultaneous open, urgent data (the URG pointer is ignored), ECN.
 */
import { TcpFlags, type TcpOptions, type TcpSegmentIn, type TcpSegmentOut } from './segment.js';
import type { TcpConfig } from './config.js';
import { MAX_WINDOW_SHIFT, windowShiftFor } from './config.js';
import { NewReno } from './congestion.js';
import { Reassembly } from './reassembly.js';
import { RttEstimator } from './rtt.js';
import { SendQueue } from './sendqueue.js';
import { seqAdd, seqDiff, seqGt, seqInWindow, seqLe, seqLt } from './seq.js';
import {
  TcpState,
  type TcpCloseReason,
  type TcpCounters,
  type TcpDropReason,
  type TcpHandler,
  type TcpOutput,
  type TcpStateValue,
} from './state.js';
import type { HeapItem } from './timers.js';

const { FIN, SYN, RST, PSH, ACK } = TcpFlags;

/** RFC 9293 §3.7.1 / RFC 1122 §4.2.2.6: the MSS to assume when the peer sends no MSS option (IPv4). */
const DEFAULT_PEER_MSS = 536;
/** Smallest peer MSS honoured: a tiny announced MSS would make us send one packet per few bytes. */
const MIN_PEER_MSS = 64;
/** RFC 5961 §7: challenge ACKs are rate limited; at most this many per connection per second. */
const CHALLENGE_ACKS_PER_SECOND = 10;

/**
 * A zero-length segment `behind` bytes below RCV.NXT is taken as an old,
 * reordered pure ACK when 2 ≤ behind ≤ a receive buffer. Exactly one below is
 * what keepalive and zero-window probes look like (SND.UNA − 1, RFC 9293
 * §3.8.4 / §3.8.6.1): those must get the ACK answer of RFC 9293 §3.10.7.4.
 */
function isOldPureAck(behind: number, recvBufferBytes: number): boolean {
  return behind >= 2 && behind <= recvBufferBytes;
}

/** A segment to send, every field set (one object shape for the whole stack). */
export function tcpSegment(
  srcPort: number, dstPort: number, seq: number, ack: number, flags: number, window: number,
  options: TcpOptions | undefined, payload: Buffer | undefined, gsoSize?: number,
): TcpSegmentOut {
  return { srcPort, dstPort, seq: seq >>> 0, ack: ack >>> 0, flags, window, options, payload, gsoSize };
}

/** What a connection needs from its table (timers and removal). */
export interface TcpConnOwner {
  /** The connection's `nextDeadline()` may have changed. */
  reschedule(conn: TcpConnection): void;
  /** The connection reached CLOSED: forget it. */
  release(conn: TcpConnection): void;
}

const NOOP_HANDLER: TcpHandler = {
  onOpen: () => undefined,
  onData: () => undefined,
  onEnd: () => undefined,
  onWritable: () => undefined,
  onClose: () => undefined,
};

/**
 * A TCP connection. Fields are public for the table, the shell's metrics and
 * tests; treat them as read-only outside this file.
 *
 * @example
 *   // inside TcpTableHooks.onSyn: hold the SYN while the overlay dials
 *   onSyn(conn) {
 *     dialService(conn.localIp, conn.localPort).then(
 *       (circuit) => conn.accept(clock(), bridge(circuit)),
 *       () => conn.refuse(clock()));
 *     return 'pending';
 *   }
 */
export class TcpConnection implements HeapItem {
  state: TcpStateValue = TcpState.CLOSED;
  /** Free slot for the shell (its circuit, say). */
  user: unknown = undefined;
  /** @internal timer heap slot (timers.ts). */
  heapDeadlineMs = Infinity;
  /** @internal timer heap slot (timers.ts). */
  heapIndex = -1;
  /** @internal next connection in the table's bucket for the same peer endpoint. */
  bucketNext: TcpConnection | null = null;

  // Send sequence space (RFC 9293 §3.3.1). SND.MAX is the highest sequence sent + 1: SND.NXT drops back to SND.UNA after an RTO.
  readonly iss: number;
  sndUna: number;
  sndNxt: number;
  sndMax: number;
  /** Peer's window, bytes (already scaled). */
  sndWnd = 0;
  sndWl1 = 0;
  sndWl2 = 0;
  /** Largest window the peer ever offered (RFC 9293 §3.8.6.2.1 sender SWS, RFC 5961 §5.2). */
  maxSndWnd = 0;
  /** Peer's window scale shift (0 when not negotiated). */
  sndShift = 0;
  /** Effective send MSS (RFC 9293 §3.7.1). */
  sndMss: number;

  // Receive sequence space.
  irs = 0;
  rcvNxt = 0;
  /** Right edge of the window we advertised (RCV.NXT + RCV.WND); never moves left (RFC 9293 §3.8.6.2.2). */
  rcvAdvRight = 0;
  /** Our window scale shift (0 when not negotiated). */
  rcvShift = 0;
  /** Bytes given to the app and not yet `consume()`d. */
  unconsumedBytes = 0;

  /** Peer's MSS option (or the default) and window scale (-1: none), from its SYN. */
  private peerMss = DEFAULT_PEER_MSS;
  private peerWindowScale = -1;

  /** The app called close(): FIN goes after the queued data. */
  finQueued = false;
  /** Our FIN has been sent (its sequence number is finSeq). */
  private finSent = false;
  private finSeq = 0;
  /** The peer's FIN has been received (in order). */
  peerFin = false;

  // ACK generation.
  private ackNow = false;
  private unackedSegments = 0;

  // Timers: absolute deadlines in ms, Infinity when disarmed.
  private rtoAt = Infinity;
  private persistAt = Infinity;
  private delackAt = Infinity;
  private keepaliveAt = Infinity;
  /** One per-state deadline: PENDING decision, FIN-WAIT-2 silence, TIME-WAIT end. */
  private lingerAt = Infinity;

  /** Consecutive retransmission-timer expiries without progress. */
  private retransmits = 0;
  private persistProbes = 0;
  private keepaliveProbes = 0;
  private lastRecvMs = 0;
  private challengeWindowStartMs = -Infinity;
  private challengeCount = 0;
  /** The SYN or SYN-ACK was retransmitted (RFC 6298 §5.7). */
  private synRetransmitted = false;

  // Karn's rule (RFC 6298 §3): time one segment at a time, never a retransmitted one.
  private rttTiming = false;
  private rttSeq = 0;
  private rttStartMs = 0;

  readonly rtt: RttEstimator;
  readonly cc: NewReno;
  private readonly sendQ = new SendQueue();
  private readonly ooo = new Reassembly();
  /** A write() accepted less than offered: tell the app when room is back. */
  private writeBlocked = false;
  private closeNotified = false;
  private handler: TcpHandler = NOOP_HANDLER;

  constructor(
    private readonly cfg: Readonly<TcpConfig>,
    private readonly out: TcpOutput,
    private readonly counters: TcpCounters,
    private readonly owner: TcpConnOwner | null,
    readonly localIp: number,
    readonly localPort: number,
    readonly remoteIp: number,
    readonly remotePort: number,
    iss: number,
  ) {
    this.iss = iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.sndMss = Math.min(cfg.mssBytes, DEFAULT_PEER_MSS);
    this.rtt = new RttEstimator(cfg.minRtoMs, cfg.maxRtoMs, cfg.initialRtoMs, cfg.clockGranularityMs);
    this.cc = new NewReno(this.sndMss, cfg.initialCwndSegments, this.iss);
  }

  // ---------------------------------------------------------------- app API

  /** Sets the app's event handler (before or at accept). */
  setHandler(handler: TcpHandler): void {
    this.handler = handler;
  }

  /** Bytes `write()` would accept now. */
  get writableBytes(): number {
    return this.acceptsWrites() ? this.cfg.sendBufferBytes - this.sendQ.bytes : 0;
  }

  /** Bytes queued for sending (unacknowledged + unsent). */
  get queuedBytes(): number {
    return this.sendQ.bytes;
  }

  /** Out-of-order bytes held. */
  get oooBytes(): number {
    return this.ooo.bytes;
  }

  /** Receive window currently advertised (RCV.WND), bytes. */
  get rcvWnd(): number {
    const w = seqDiff(this.rcvAdvRight, this.rcvNxt);
    return w > 0 ? w : 0;
  }

  /**
   * Accepts a PENDING connection: sends the SYN-ACK (RFC 9293 §3.10.7.2) with
   * our MSS and, when the peer offered window scaling, our shift (RFC 7323
   * §2.2). Returns false when the connection is no longer pending (the peer
   * reset it or it timed out: `onClose` has been or will be told).
   */
  accept(now: number, handler?: TcpHandler): boolean {
    if (this.state !== TcpState.PENDING) return false;
    if (handler !== undefined) this.handler = handler;
    this.state = TcpState.SYN_RECEIVED;
    this.lingerAt = Infinity;
    if (this.peerWindowScale >= 0) {
      this.sndShift = Math.min(this.peerWindowScale, MAX_WINDOW_SHIFT);
      this.rcvShift = windowShiftFor(this.cfg.recvBufferBytes);
    }
    this.setSendMss();
    this.sndUna = this.iss;
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.sndWl2 = this.iss;
    this.sendSyn();
    this.startRttTiming(now, this.iss);
    this.rtoAt = now + this.rtt.rtoMs;
    this.reschedule();
    return true;
  }

  /**
   * Refuses a PENDING connection: RST|ACK acknowledging the SYN (RFC 9293
   * §3.10.7.1), so the device's connect() fails with "connection refused".
   * Returns false when the connection is no longer pending.
   */
  refuse(now: number): boolean {
    if (this.state !== TcpState.PENDING) return false;
    this.refuseWith('refused');
    return true;
  }

  /**
   * Active open (RFC 9293 §3.10.1): sends a SYN with our MSS and window scale.
   * Used by tests and simulations; the router only opens passively.
   */
  connect(now: number, handler?: TcpHandler): void {
    if (!this.isClosed() || this.closeNotified) return;
    if (handler !== undefined) this.handler = handler;
    this.state = TcpState.SYN_SENT;
    this.rcvShift = windowShiftFor(this.cfg.recvBufferBytes);
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.sendSyn();
    this.startRttTiming(now, this.iss);
    this.rtoAt = now + this.rtt.rtoMs;
    this.reschedule();
  }

  /**
   * Queues bytes to send and sends what the windows allow. `buf` is owned by
   * the connection from now on (kept by reference until acknowledged: do not
   * reuse it). Returns how many bytes were accepted (up to the send buffer's
   * free room); when fewer than offered, `onWritable` follows once half the
   * buffer is free. Accepts nothing after close()/abort() or once closed.
   * The segment that carries the last queued byte has PSH set (RFC 9293
   * §3.9.1: a sender may collapse the PSHs of successive writes).
   */
  write(now: number, buf: Buffer): number {
    if (!this.acceptsWrites()) return 0;
    const room = this.cfg.sendBufferBytes - this.sendQ.bytes;
    const n = buf.length <= room ? buf.length : room;
    if (n < buf.length) this.writeBlocked = true;
    if (n > 0) {
      this.sendQ.push(n === buf.length ? buf : buf.subarray(0, n));
      this.pump(now);
    }
    this.reschedule();
    return n;
  }

  /**
   * The app (the circuit's far end) has taken `bytes` of what `onData`
   * delivered: they stop counting against the receive window. Sends a window
   * update when the window opens significantly (RFC 9293 §3.8.6.2.2).
   */
  consume(now: number, bytes: number): void {
    if (!(bytes > 0)) return;
    this.unconsumedBytes = bytes >= this.unconsumedBytes ? 0 : this.unconsumedBytes - bytes;
    if (!this.receiving()) return;
    const cur = this.rcvWnd;
    const avail = this.availableWindow();
    // Announce at once only when the window we offered is under two segments (the peer may be stalled on it).
    // Otherwise the peer can still send two segments, whose ACK (RFC 9293 §3.8.6.3) carries the new window.
    if (cur < 2 * this.cfg.mssBytes && avail - cur >= this.swsThreshold()) {
      this.sendAck();
    }
    this.reschedule();
  }

  /**
   * Half-close (RFC 9293 §3.10.4): FIN goes after the queued data; we may
   * still receive until the peer's FIN. Closing a PENDING connection refuses it.
   */
  close(now: number): void {
    switch (this.state) {
      case TcpState.PENDING:
        this.refuseWith('refused');
        return;
      case TcpState.SYN_SENT:
        this.finish('aborted');
        return;
      case TcpState.SYN_RECEIVED:
        this.finQueued = true; // sent once established (RFC 9293 §3.10.4)
        return;
      case TcpState.ESTABLISHED:
        this.finQueued = true;
        this.state = TcpState.FIN_WAIT_1;
        break;
      case TcpState.CLOSE_WAIT:
        this.finQueued = true;
        this.state = TcpState.LAST_ACK;
        break;
      default:
        return;
    }
    this.pump(now);
    this.reschedule();
  }

  /** Abort (RFC 9293 §3.10.5): RST to the peer, queued data discarded, `onClose('aborted')`. */
  abort(now: number): void {
    switch (this.state) {
      case TcpState.CLOSED:
        return;
      case TcpState.PENDING:
        this.refuseWith('aborted');
        return;
      case TcpState.SYN_SENT:
      case TcpState.TIME_WAIT:
        this.finish('aborted');
        return;
      default:
        this.sendReset();
        this.finish('aborted');
    }
  }

  // ------------------------------------------------------------ table API

  /**
   * @internal Table: a SYN for a new 4-tuple arrived; hold it in PENDING
   * until accept()/refuse() or pendingTimeoutMs.
   */
  openPending(now: number, seg: TcpSegmentIn): void {
    this.state = TcpState.PENDING;
    this.recordSyn(seg);
    this.lastRecvMs = now;
    this.lingerAt = now + this.cfg.pendingTimeoutMs;
    this.reschedule();
  }

  /**
   * Earliest deadline (absolute ms) at which `onTimer` has work; Infinity
   * when none. A deadline ≤ now is due.
   */
  nextDeadline(): number {
    return Math.min(this.rtoAt, this.persistAt, this.delackAt, this.keepaliveAt, this.lingerAt);
  }

  /** Runs every timer due at `now`. */
  onTimer(now: number): void {
    if (this.lingerAt <= now) {
      this.onLinger(now);
      if (this.isClosed()) return;
    }
    if (this.delackAt <= now) {
      this.delackAt = Infinity;
      this.sendAck();
    }
    if (this.rtoAt <= now) {
      this.onRetransmitTimeout(now);
      if (this.isClosed()) return;
    }
    if (this.persistAt <= now) {
      this.onPersist(now);
      if (this.isClosed()) return;
    }
    if (this.keepaliveAt <= now) {
      this.onKeepalive(now);
      if (this.isClosed()) return;
    }
    this.reschedule();
  }

  /**
   * Processes one received segment for this connection (RFC 9293
   * §3.10.7). Returns why it was dropped (all or in part), or null. Never
   * throws on any segment content.
   */
  input(now: number, seg: TcpSegmentIn): TcpDropReason | null {
    let r: TcpDropReason | null;
    switch (this.state) {
      case TcpState.CLOSED:
        return 'noConnection';
      case TcpState.PENDING:
        r = this.inputPending(now, seg);
        break;
      case TcpState.SYN_SENT:
        r = this.inputSynSent(now, seg);
        break;
      default:
        r = this.inputSynchronized(now, seg);
    }
    if (r !== null) this.counters.drops[r]++;
    if (!this.isClosed()) {
      this.flushAck(now);
      this.reschedule();
    }
    return r;
  }

  // --------------------------------------------------------------- input

  private inputPending(now: number, seg: TcpSegmentIn): TcpDropReason | null {
    const flags = seg.flags;
    if ((flags & RST) !== 0) {
      // The device gave up on its SYN: accept a RST at the sequence its SYN would be followed by.
      if (seg.seq === this.rcvNxt || seg.seq === this.irs) {
        this.finish('reset');
        return null;
      }
      return 'rstOutOfWindow';
    }
    if ((flags & (SYN | ACK)) === SYN) {
      // A retransmitted SYN is absorbed; a SYN with another ISN is a new attempt from the same port: the latest wins.
      if (seg.seq !== this.irs) this.recordSyn(seg);
      this.lastRecvMs = now;
      return null;
    }
    return 'pending';
  }

  /** RFC 9293 §3.10.7.3. */
  private inputSynSent(now: number, seg: TcpSegmentIn): TcpDropReason | null {
    const flags = seg.flags;
    const hasAck = (flags & ACK) !== 0;
    if (hasAck && (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndMax))) {
      if ((flags & RST) === 0) this.sendRaw(seg.ack, 0, RST, 0);
      return 'badSynAck';
    }
    if ((flags & RST) !== 0) {
      if (!hasAck) return 'badSynAck';
      this.finish('reset'); // "connection refused"
      return null;
    }
    // Simultaneous open (SYN without ACK) is not supported: nothing here needs it.
    if ((flags & SYN) === 0 || !hasAck) return 'badSynAck';
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    const o = seg.options;
    this.peerMss = o.mss ?? DEFAULT_PEER_MSS;
    if (o.windowScale !== undefined) {
      this.sndShift = Math.min(o.windowScale, MAX_WINDOW_SHIFT);
    } else {
      this.rcvShift = 0; // RFC 7323 §1.3: scaling only when both SYNs carry the option
    }
    this.setSendMss();
    this.sndWnd = seg.window; // never scaled in a SYN (RFC 7323 §2.2)
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.rcvAdvRight = seqAdd(this.rcvNxt, Math.min(this.cfg.recvBufferBytes, 0xffff));
    this.ackSyn(now, seg.ack);
    this.lastRecvMs = now;
    this.ackNow = true;
    this.establish(now);
    if (this.isClosed()) return null;
    this.pump(now);
    // Data on a SYN-ACK is not kept (rare; the peer retransmits it).
    return null;
  }

  /** RFC 9293 §3.10.7.4 (SYN-RECEIVED and every synchronized state). */
  private inputSynchronized(now: number, seg: TcpSegmentIn): TcpDropReason | null {
    const flags = seg.flags;
    const dataLen = seg.payload.length;
    const segLen = dataLen + ((flags & SYN) !== 0 ? 1 : 0) + ((flags & FIN) !== 0 ? 1 : 0);
    const rcvWnd = this.rcvWnd;

    // First: is the sequence number acceptable?
    let acceptable: boolean;
    if (segLen === 0) {
      acceptable = rcvWnd === 0 ? seg.seq === this.rcvNxt : seqInWindow(seg.seq, this.rcvNxt, rcvWnd);
    } else if (rcvWnd === 0) {
      // A bare FIN at RCV.NXT is taken even into a zero window (as Linux does): end-of-stream should not
      // wait for the app to drain. Anything carrying data is not.
      acceptable = seg.seq === this.rcvNxt && dataLen === 0 && (flags & SYN) === 0;
    } else {
      acceptable = seqInWindow(seg.seq, this.rcvNxt, rcvWnd) || seqInWindow(seqAdd(seg.seq, segLen - 1), this.rcvNxt, rcvWnd);
    }
    if (!acceptable) {
      if ((flags & RST) !== 0) return 'rstOutOfWindow'; // RFC 5961 §3.2: silently
      if (this.state === TcpState.SYN_RECEIVED && (flags & (SYN | ACK)) === SYN && seg.seq === this.irs) {
        // Our SYN-ACK was lost: answer the retransmitted SYN at once rather than wait for our timer.
        this.sendSyn();
        this.rttTiming = false;
        this.counters.retransmits++;
        return null;
      }
      if ((flags & SYN) !== 0) {
        this.challengeAck(now);
        return 'synChallenged';
      }
      if (this.state === TcpState.TIME_WAIT && (flags & FIN) !== 0) {
        // A retransmitted FIN: our last ACK was lost. ACK again and restart TIME-WAIT (RFC 9293 §3.10.7.4).
        this.lingerAt = now + this.cfg.timeWaitMs;
      }
      if ((flags & ACK) !== 0 && this.state !== TcpState.SYN_RECEIVED) {
        if (rcvWnd === 0 && seg.seq === this.rcvNxt) {
          // Zero window: still take the ACK and window (RFC 9293 §3.10.7.4, "special allowance").
          this.noteReceived(now);
          this.processAck(now, seg);
          if (this.isClosed()) return 'outOfWindow';
        } else if (segLen === 0 && isOldPureAck(seqDiff(this.rcvNxt, seg.seq), this.cfg.recvBufferBytes)) {
          // A pure ACK overtaken by the peer's later data: its ACK is still news (checked against
          // RFC 5961 §5.2; SND.WL1/WL2 keep its window from going back). Not answered, so reordering
          // does not turn into duplicate ACKs and spurious fast retransmits at the peer.
          this.noteReceived(now);
          this.processAck(now, seg);
          return null;
        }
      }
      this.ackNow = true;
      return 'outOfWindow';
    }
    this.noteReceived(now);

    // Second: RST (RFC 5961 §3.2: exact match resets, in-window draws a challenge ACK).
    if ((flags & RST) !== 0) {
      if (seg.seq !== this.rcvNxt) {
        this.challengeAck(now);
        return 'rstChallenged';
      }
      this.finish('reset');
      return null;
    }
    // Fourth: SYN in a synchronized state (RFC 5961 §4): challenge ACK.
    if ((flags & SYN) !== 0) {
      this.challengeAck(now);
      return 'synChallenged';
    }
    // Fifth: ACK.
    if ((flags & ACK) === 0) return 'noAck';
    if (this.state === TcpState.SYN_RECEIVED) {
      if (!seqGt(seg.ack, this.sndUna) || seqGt(seg.ack, this.sndMax)) {
        this.sendRaw(seg.ack, 0, RST, 0);
        return seqGt(seg.ack, this.sndMax) ? 'ackTooNew' : 'ackTooOld';
      }
      this.ackSyn(now, seg.ack);
      this.sndWnd = seg.window << this.sndShift;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      this.establish(now);
      if (this.isClosed()) return null;
    }
    const ackDrop = this.processAck(now, seg);
    if (ackDrop !== null || this.isClosed()) return ackDrop;

    // Seventh: segment text; eighth: FIN.
    if (dataLen === 0 && (flags & FIN) === 0) return null;
    return this.processText(now, seg);
  }

  /** Fifth check, ACK field (RFC 9293 §3.10.7.4, RFC 5681, RFC 6582, RFC 6298). */
  private processAck(now: number, seg: TcpSegmentIn): TcpDropReason | null {
    const ack = seg.ack;
    if (seqGt(ack, this.sndMax)) {
      this.ackNow = true;
      return 'ackTooNew';
    }
    if (seqLt(ack, seqAdd(this.sndUna, -this.maxSndWnd))) {
      this.challengeAck(now);
      return 'ackTooOld';
    }
    const wnd = seg.window << this.sndShift;
    if (seqLe(ack, this.sndUna)) {
      // RFC 5681 §2 duplicate ACK: nothing new acknowledged, no data, no SYN/FIN, same window, data outstanding.
      if (ack === this.sndUna && seg.payload.length === 0 && (seg.flags & (SYN | FIN)) === 0
        && wnd === this.sndWnd && this.sndMax !== this.sndUna) {
        if (this.cc.onDupAck(ack, seqDiff(this.sndMax, this.sndUna), this.sndMax)) {
          this.counters.fastRetransmits++;
          this.retransmitFirst(now);
        } else if (!this.cc.inRecovery && this.cc.dupAcks <= 2) {
          this.limitedTransmit(now);
        }
      }
    } else {
      this.onNewAck(now, ack);
      if (this.isClosed()) return null;
    }
    // Window update (RFC 9293 §3.10.7.4): only when SND.UNA ≤ SEG.ACK, and only from a segment newer
    // than the last one that set it (SND.WL1/SND.WL2), so a reordered old segment cannot shrink it.
    if (seqLe(this.sndUna, ack) && (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, ack)))) {
      this.sndWnd = wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
      if (wnd > this.maxSndWnd) this.maxSndWnd = wnd;
    }
    if (this.finSent && seqGt(this.sndUna, this.finSeq)) {
      // Our FIN is acknowledged.
      switch (this.state) {
        case TcpState.FIN_WAIT_1:
          this.state = TcpState.FIN_WAIT_2;
          if (this.cfg.finWait2TimeoutMs > 0) this.lingerAt = now + this.cfg.finWait2TimeoutMs;
          break;
        case TcpState.CLOSING:
          this.enterTimeWait(now);
          return null;
        case TcpState.LAST_ACK:
          this.finish('normal');
          return null;
        default:
          break;
      }
    }
    this.pump(now);
    if (this.writeBlocked && this.sendQ.bytes <= this.cfg.sendBufferBytes >> 1 && this.acceptsWrites()) {
      this.writeBlocked = false;
      this.handler.onWritable(this);
    }
    return null;
  }

  /** SND.UNA advances to `ack` (> SND.UNA, ≤ SND.MAX). */
  private onNewAck(now: number, ack: number): void {
    const acked = seqDiff(ack, this.sndUna);
    let dataAcked = acked;
    if (this.finSent && seqGt(ack, this.finSeq)) dataAcked--;
    if (dataAcked > this.sendQ.bytes) dataAcked = this.sendQ.bytes;
    this.sendQ.drop(dataAcked);
    this.sndUna = ack;
    if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
    if (this.rttTiming && seqGt(ack, this.rttSeq)) {
      this.rtt.sample(now - this.rttStartMs);
      this.rttTiming = false;
    }
    this.retransmits = 0;
    this.persistProbes = 0;
    const flight = seqDiff(this.sndMax, ack);
    if (this.cc.onNewAck(ack, acked, flight)) this.retransmitFirst(now);
    // RFC 6298 §5.2/§5.3: stop the timer when all is acknowledged, else restart it.
    this.rtoAt = flight === 0 ? Infinity : now + this.rtt.rtoMs;
  }

  /** Seventh and eighth checks: deliver text in order, queue it out of order, then the FIN. */
  private processText(now: number, seg: TcpSegmentIn): TcpDropReason | null {
    if (this.peerFin) return seg.payload.length > 0 ? 'afterFin' : null; // text after FIN is ignored
    let payload = seg.payload;
    let seq = seg.seq;
    let fin = (seg.flags & FIN) !== 0;
    // Trim what we already have (RFC 9293 §3.10.7.4: segments that begin before RCV.NXT).
    const dup = seqDiff(this.rcvNxt, seq);
    if (dup > 0) {
      payload = dup >= payload.length ? payload.subarray(payload.length) : payload.subarray(dup);
      seq = this.rcvNxt;
    }
    // Trim what lies beyond the window we offered; a FIN beyond it goes too.
    const room = seqDiff(this.rcvAdvRight, seq);
    if (payload.length > room) {
      payload = payload.subarray(0, room > 0 ? room : 0);
      fin = false;
    }
    let drop: TcpDropReason | null = null;
    if (seq === this.rcvNxt) {
      const gapFilled = this.ooo.count > 0 || this.ooo.finSeq !== -1;
      if (payload.length > 0) {
        this.deliver(payload);
        if (this.isClosed()) return null;
      }
      for (let more = this.ooo.take(this.rcvNxt); more !== null; more = this.ooo.take(this.rcvNxt)) {
        this.deliver(more);
        if (this.isClosed()) return null;
      }
      if (this.ooo.finSeq !== -1 && this.ooo.finSeq === this.rcvNxt) fin = true;
      if (gapFilled) {
        this.ackNow = true; // RFC 5681 §4.2: ACK at once when a segment fills (part of) a gap
      } else if (payload.length > 0 && ++this.unackedSegments >= 2) {
        this.ackNow = true; // RFC 9293 §3.8.6.3: ACK at least every second full-sized segment
      }
    } else {
      // Beyond RCV.NXT: hold a copy and send a duplicate ACK at once (RFC 5681 §4.2).
      this.ackNow = true;
      if (payload.length > 0 || fin) {
        if (!this.ooo.insert(seq, payload, fin, this.cfg.oooLimitBytes, this.cfg.oooLimitSegments)) drop = 'oooFull';
      }
      fin = false;
    }
    if (fin && !this.peerFin) this.receiveFin(now);
    return drop;
  }

  /** In-order bytes to the app (borrowed view) and into the unconsumed count. */
  private deliver(data: Buffer): void {
    this.rcvNxt = seqAdd(this.rcvNxt, data.length);
    this.unconsumedBytes += data.length;
    this.counters.bytesDelivered += data.length;
    this.handler.onData(this, data);
  }

  /** The peer's FIN, in order (RFC 9293 §3.10.7.4 eighth check). */
  private receiveFin(now: number): void {
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.peerFin = true;
    this.ooo.clear();
    this.ackNow = true;
    switch (this.state) {
      case TcpState.ESTABLISHED:
        this.state = TcpState.CLOSE_WAIT;
        break;
      case TcpState.FIN_WAIT_1:
        this.state = TcpState.CLOSING; // our FIN not yet acknowledged (else we would be in FIN-WAIT-2)
        break;
      case TcpState.FIN_WAIT_2:
        this.handler.onEnd(this);
        if (this.state === TcpState.FIN_WAIT_2) this.enterTimeWait(now);
        return;
      default:
        break;
    }
    this.handler.onEnd(this);
  }

  // ---------------------------------------------------------------- output

  /**
   * Sends what the windows allow (RFC 9293 §3.8.6.2.1 sender SWS avoidance,
   * RFC 5681 cwnd), then the FIN once all data is out, then arms the
   * retransmission or persist timer.
   */
  private pump(now: number): void {
    if (!this.canSend()) return;
    const mss = this.sndMss;
    // With TSO a segment may hold several MSS (whole ones); the kernel cuts it.
    const tso = this.cfg.tsoMaxBytes;
    const cap = tso > mss ? tso - (tso % mss) : mss;
    for (;;) {
      const offset = seqDiff(this.sndNxt, this.sndUna);
      const unsent = this.sendQ.bytes - offset;
      if (unsent <= 0) {
        if (unsent === 0 && this.finQueued && !this.finOutstanding()) this.sendData(now, 0, true, false); // FIN alone
        break;
      }
      const wnd = this.sndWnd < this.cc.cwndBytes ? this.sndWnd : this.cc.cwndBytes;
      const usable = wnd - offset;
      let len = unsent < cap ? unsent : cap;
      if (usable < len) {
        if (usable >= mss) {
          // A super-segment cut to the window, in whole MSS (only reachable when cap > mss).
          len = usable - (usable % mss);
        } else {
          // Window-limited: send a partial segment only if it is at least half the largest window offered.
          if (usable <= 0 || usable < this.maxSndWnd >> 1) break;
          len = usable;
        }
      } else if (len < mss && !this.cfg.noDelay && offset > 0 && this.sndNxt === this.sndMax) {
        break; // Nagle (RFC 9293 §3.7.4): a small segment waits for outstanding data to be acknowledged
      }
      this.sendData(now, len, this.finQueued && len === unsent, len === unsent);
    }
    if (this.sndMax !== this.sndUna) {
      if (this.rtoAt === Infinity) this.rtoAt = now + this.rtt.rtoMs; // RFC 6298 §5.1
      this.persistAt = Infinity;
    } else if (this.sendQ.bytes > 0) {
      // Data waits for a window and nothing is in flight to bring an ACK: the persist timer (RFC 9293 §3.8.6.1).
      if (this.persistAt === Infinity) this.persistAt = now + this.persistIntervalMs();
    } else {
      this.persistAt = Infinity;
    }
  }

  /** Sends `len` bytes at SND.NXT (and FIN after them) and advances SND.NXT / SND.MAX. */
  private sendData(now: number, len: number, fin: boolean, push: boolean): void {
    const seq = this.sndNxt;
    const offset = seqDiff(seq, this.sndUna);
    const payload = len > 0 ? this.sendQ.read(offset, len) : undefined;
    const isNew = seq === this.sndMax;
    let flags = ACK;
    if (push && len > 0) flags |= PSH;
    if (fin) flags |= FIN;
    this.emit(seq, flags, payload, undefined);
    this.counters.bytesSent += len;
    if (!isNew) this.counters.retransmits++;
    const end = seqAdd(seq, len + (fin ? 1 : 0));
    this.sndNxt = end;
    if (seqGt(end, this.sndMax)) {
      if (isNew && !this.rttTiming) this.startRttTiming(now, seq);
      this.sndMax = end;
    }
    if (fin) {
      this.finSent = true;
      this.finSeq = seqAdd(seq, len);
    }
  }

  /**
   * Limited Transmit (RFC 3042 §2): on the first two duplicate ACKs, send one
   * new segment beyond cwnd if the peer's window allows, so a small window
   * still yields the three duplicate ACKs fast retransmit needs instead of
   * waiting for the RTO.
   */
  private limitedTransmit(now: number): void {
    if (this.sndNxt !== this.sndMax) return; // rewound after an RTO: not new data
    const offset = seqDiff(this.sndNxt, this.sndUna);
    const unsent = this.sendQ.bytes - offset;
    if (unsent <= 0) return;
    const len = unsent < this.sndMss ? unsent : this.sndMss;
    if (offset + len > this.sndWnd) return;
    this.sendData(now, len, this.finQueued && len === unsent, len === unsent);
  }

  /**
   * Retransmits the first unacknowledged segment (fast retransmit, partial
   * ACK, RTO) without moving SND.NXT; Karn's rule stops the RTT sample.
   */
  private retransmitFirst(now: number): number {
    // Only what was sent before (up to SND.MAX): new data must wait for the windows.
    const sentData = Math.min(this.sendQ.bytes, seqDiff(this.sndMax, this.sndUna));
    const len = sentData < this.sndMss ? sentData : this.sndMss;
    const fin = this.finSent && len === this.sendQ.bytes;
    if (len === 0 && !fin) return 0;
    let flags = ACK;
    if (len > 0 && len === this.sendQ.bytes) flags |= PSH;
    if (fin) flags |= FIN;
    this.emit(this.sndUna, flags, len > 0 ? this.sendQ.read(0, len) : undefined, undefined);
    this.counters.retransmits++;
    this.counters.bytesSent += len;
    this.rttTiming = false;
    if (this.rtoAt === Infinity) this.rtoAt = now + this.rtt.rtoMs;
    return len + (fin ? 1 : 0);
  }

  /** SYN (active open) or SYN-ACK (passive) at ISS, with our options. */
  private sendSyn(): void {
    const passive = this.state === TcpState.SYN_RECEIVED;
    const offerScale = passive ? this.peerWindowScale >= 0 : true;
    const options = offerScale
      ? { mss: this.cfg.mssBytes, windowScale: this.rcvShift }
      : { mss: this.cfg.mssBytes };
    // The window in a SYN is never scaled (RFC 7323 §2.2).
    const wnd = Math.min(this.availableWindow(), 0xffff);
    if (passive) this.rcvAdvRight = seqAdd(this.rcvNxt, wnd);
    this.put(this.iss, passive ? this.rcvNxt : 0, passive ? SYN | ACK : SYN, wnd, options, undefined);
  }

  /**
   * A bare ACK (also a window update). Its sequence number is SND.MAX, not
   * SND.NXT: after an RTO rewinds SND.NXT, the peer may already hold data up
   * to SND.MAX and would find an older number unacceptable and drop the ACK
   * with it (RFC 9293's SND.NXT never rewinds; ours does, so SND.MAX is its
   * equivalent for segments that carry no data).
   */
  private sendAck(): void {
    this.emit(this.sndMax, ACK, undefined, undefined);
  }

  /** RST|ACK at SND.NXT (abort, RFC 9293 §3.10.5; SND.MAX here, see sendAck). */
  private sendReset(): void {
    this.emit(this.sndMax, RST | ACK, undefined, undefined);
    this.counters.resetsSent++;
  }

  /** RFC 5961 §3.2/§4/§5.2 challenge ACK, at most CHALLENGE_ACKS_PER_SECOND (RFC 5961 §7). */
  private challengeAck(now: number): void {
    if (now - this.challengeWindowStartMs >= 1000) {
      this.challengeWindowStartMs = now;
      this.challengeCount = 0;
    }
    if (this.challengeCount >= CHALLENGE_ACKS_PER_SECOND) return;
    this.challengeCount++;
    this.counters.challengeAcks++;
    this.sendAck();
  }

  /** Any segment with our current ACK and window; clears pending ACK state. */
  private emit(seq: number, flags: number, payload: Buffer | undefined, options: TcpOptions | undefined): void {
    if ((flags & ACK) !== 0) {
      this.ackNow = false;
      this.unackedSegments = 0;
      this.delackAt = Infinity;
    }
    this.put(seq, (flags & ACK) !== 0 ? this.rcvNxt : 0, flags, (flags & RST) !== 0 ? 0 : this.windowField(), options, payload);
  }

  /** A segment with explicit seq/ack (RST answers outside the send sequence space). */
  private sendRaw(seq: number, ack: number, flags: number, window: number): void {
    if ((flags & RST) !== 0) this.counters.resetsSent++;
    this.put(seq, ack, flags, window, undefined, undefined);
  }

  /** Hands one segment to the output (a fresh object: the shell may keep it until the next call). */
  private put(seq: number, ack: number, flags: number, window: number, options: TcpOptions | undefined, payload: Buffer | undefined): void {
    this.counters.segmentsOut++;
    const gso = payload !== undefined && payload.length > this.sndMss ? this.sndMss : undefined;
    this.out.sendSegment(this.localIp, this.remoteIp, tcpSegment(this.localPort, this.remotePort, seq, ack, flags, window, options, payload, gso));
  }

  /**
   * The window field to send, moving the right edge per receiver SWS
   * avoidance (RFC 9293 §3.8.6.2.2): the edge only moves once the free space
   * beyond it reaches min(RCV.BUFF/2, MSS); it never moves left.
   */
  private windowField(): number {
    const cur = this.rcvWnd;
    const avail = this.availableWindow();
    // While data is held out of order the edge stays put: the duplicate ACKs we send must carry an
    // unchanged window to count as duplicates at the sender (RFC 5681 §2); the missing bytes lie
    // inside the window already offered, so nothing waits on this.
    if (this.ooo.count === 0 && avail - cur >= this.swsThreshold()) {
      // Round down to the scale unit so what we say is what we hold (RFC 7323 §2.4).
      const edge = seqAdd(this.rcvNxt, (avail >> this.rcvShift) << this.rcvShift);
      if (seqGt(edge, this.rcvAdvRight)) this.rcvAdvRight = edge;
    }
    const w = this.rcvWnd >> this.rcvShift;
    return w > 0xffff ? 0xffff : w;
  }

  /** Free receive space we could offer: buffer minus unconsumed bytes, capped by what the field can say. */
  private availableWindow(): number {
    const free = this.cfg.recvBufferBytes - this.unconsumedBytes;
    const max = this.maxAdvertisable();
    return free <= 0 ? 0 : free > max ? max : free;
  }

  private maxAdvertisable(): number {
    return 0xffff << this.rcvShift;
  }

  private swsThreshold(): number {
    const half = this.cfg.recvBufferBytes >> 1;
    return half < this.cfg.mssBytes ? half : this.cfg.mssBytes;
  }

  /** Sends the pending ACK now, or arms the delayed-ACK timer (RFC 9293 §3.8.6.3). */
  private flushAck(now: number): void {
    if (this.state === TcpState.PENDING || this.state === TcpState.SYN_SENT) return;
    if (this.ackNow) {
      this.sendAck();
    } else if (this.unackedSegments > 0 && this.delackAt === Infinity) {
      if (this.cfg.delayedAckMs === 0) this.sendAck();
      else this.delackAt = now + this.cfg.delayedAckMs;
    }
  }

  // ---------------------------------------------------------------- timers

  /** RFC 6298 §5.4–§5.7; RFC 5681 §3.1 after a timeout; go-back-N from SND.UNA. */
  private onRetransmitTimeout(now: number): void {
    this.rtoAt = Infinity;
    if (this.state === TcpState.SYN_RECEIVED || this.state === TcpState.SYN_SENT) {
      if (this.retransmits >= this.cfg.maxSynRetransmits) {
        if (this.state === TcpState.SYN_RECEIVED) this.sendReset();
        this.finish('timeout');
        return;
      }
      this.retransmits++;
      this.counters.timeouts++;
      this.counters.retransmits++;
      this.synRetransmitted = true;
      this.rttTiming = false;
      this.rtt.backoff();
      this.sendSyn();
      this.rtoAt = now + this.rtt.rtoMs;
      return;
    }
    if (this.sndMax === this.sndUna || !this.canSend()) return;
    if (this.retransmits >= this.cfg.maxRetransmits) {
      this.sendReset();
      this.finish('timeout');
      return;
    }
    this.counters.timeouts++;
    this.cc.onTimeout(seqDiff(this.sndMax, this.sndUna), this.sndMax, this.retransmits === 0);
    this.retransmits++;
    this.rtt.backoff();
    this.sndNxt = this.sndUna;
    // The first segment goes even into a zero window: it doubles as the window probe.
    this.sndNxt = seqAdd(this.sndUna, this.retransmitFirst(now));
    this.rtoAt = now + this.rtt.rtoMs;
    this.pump(now);
  }

  /** Zero-window probe (RFC 9293 §3.8.6.1), or a forced small segment when SWS avoidance held data back. */
  private onPersist(now: number): void {
    this.persistAt = Infinity;
    if (!this.canSend() || this.sndMax !== this.sndUna) return;
    const unsent = this.sendQ.bytes - seqDiff(this.sndNxt, this.sndUna);
    if (unsent <= 0) return;
    if (this.persistProbes >= this.cfg.maxPersistProbes) {
      this.sendReset();
      this.finish('timeout');
      return;
    }
    this.persistProbes++;
    if (this.sndWnd > 0) {
      const len = Math.min(this.sndWnd, this.sndMss, unsent);
      this.sendData(now, len, this.finQueued && len === unsent, len === unsent);
      this.pump(now);
      return;
    }
    // A zero-length segment one below SND.UNA is unacceptable to the peer, which must answer with an
    // ACK carrying its current window (RFC 9293 §3.10.7.4); it uses no sequence space.
    this.emit(seqAdd(this.sndUna, -1), ACK, undefined, undefined);
    this.persistAt = now + this.persistIntervalMs();
  }

  private persistIntervalMs(): number {
    const shift = this.persistProbes < 10 ? this.persistProbes : 10;
    const ms = this.rtt.rtoMs * (1 << shift);
    return ms < this.cfg.maxRtoMs ? ms : this.cfg.maxRtoMs;
  }

  /** Keepalive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6): probe an idle peer, abort after keepaliveCount silences. */
  private onKeepalive(now: number): void {
    this.keepaliveAt = Infinity;
    const s = this.state;
    if (s !== TcpState.ESTABLISHED && s !== TcpState.CLOSE_WAIT && s !== TcpState.FIN_WAIT_2) return;
    const idle = this.cfg.keepaliveIdleMs;
    if (this.sndMax !== this.sndUna || this.persistAt !== Infinity) {
      // Outstanding data or probes: the retransmission / persist logic judges liveness.
      this.keepaliveProbes = 0;
      this.keepaliveAt = now + idle;
      return;
    }
    if (this.keepaliveProbes === 0 && now - this.lastRecvMs < idle) {
      this.keepaliveAt = this.lastRecvMs + idle;
      return;
    }
    if (this.keepaliveProbes >= this.cfg.keepaliveCount) {
      this.sendReset();
      this.finish('keepalive');
      return;
    }
    this.keepaliveProbes++;
    // SEG.SEQ = SND.NXT − 1 with no data: the peer must ACK it (RFC 9293 §3.8.4).
    this.emit(seqAdd(this.sndMax, -1), ACK, undefined, undefined);
    this.keepaliveAt = now + this.cfg.keepaliveIntervalMs;
  }

  /** The per-state deadline: pending decision, FIN-WAIT-2 silence, end of TIME-WAIT. */
  private onLinger(now: number): void {
    this.lingerAt = Infinity;
    switch (this.state) {
      case TcpState.PENDING:
        this.refuseWith('pendingTimeout');
        return;
      case TcpState.TIME_WAIT:
        this.finish('normal');
        return;
      case TcpState.FIN_WAIT_2: {
        const silentMs = now - this.lastRecvMs;
        if (silentMs < this.cfg.finWait2TimeoutMs) {
          this.lingerAt = this.lastRecvMs + this.cfg.finWait2TimeoutMs;
          return;
        }
        this.sendReset();
        this.finish('finWait2Timeout');
        return;
      }
      default:
        return;
    }
  }

  // --------------------------------------------------------------- helpers

  private recordSyn(seg: TcpSegmentIn): void {
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvAdvRight = this.rcvNxt;
    this.peerMss = seg.options.mss ?? DEFAULT_PEER_MSS;
    const ws = seg.options.windowScale;
    this.peerWindowScale = ws === undefined ? -1 : ws;
    this.sndWnd = seg.window; // a SYN's window is never scaled (RFC 7323 §2.2)
    this.maxSndWnd = seg.window;
    this.sndWl1 = seg.seq;
  }

  private setSendMss(): void {
    const peer = this.peerMss < MIN_PEER_MSS ? MIN_PEER_MSS : this.peerMss;
    this.sndMss = peer < this.cfg.mssBytes ? peer : this.cfg.mssBytes;
    this.cc.setMss(this.sndMss, this.cfg.initialCwndSegments);
  }

  /** Our SYN is acknowledged by `ack` (SND.UNA = ISS → ISS+1). */
  private ackSyn(now: number, ack: number): void {
    this.sndUna = ack;
    if (this.rttTiming && seqGt(ack, this.rttSeq)) this.rtt.sample(now - this.rttStartMs);
    this.rttTiming = false;
    if (this.synRetransmitted) this.rtt.resetAfterSynLoss();
    this.retransmits = 0;
    this.rtoAt = Infinity;
  }

  private establish(now: number): void {
    this.state = this.finQueued ? TcpState.FIN_WAIT_1 : TcpState.ESTABLISHED;
    this.counters.established++;
    if (this.cfg.keepaliveIdleMs > 0) this.keepaliveAt = now + this.cfg.keepaliveIdleMs;
    this.handler.onOpen(this);
  }

  private enterTimeWait(now: number): void {
    if (this.ackNow) this.sendAck();
    this.state = TcpState.TIME_WAIT;
    this.rtoAt = Infinity;
    this.persistAt = Infinity;
    this.delackAt = Infinity;
    this.keepaliveAt = Infinity;
    this.lingerAt = now + this.cfg.timeWaitMs;
    this.sendQ.clear();
    this.ooo.clear();
    this.notifyClose('normal');
  }

  private refuseWith(reason: TcpCloseReason): void {
    // RFC 9293 §3.10.7.1: the SYN had no ACK, so <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    this.sendRaw(0, this.rcvNxt, RST | ACK, 0);
    this.finish(reason);
  }

  /** Enters CLOSED, tells the app (once) and the table. */
  private finish(reason: TcpCloseReason): void {
    this.state = TcpState.CLOSED;
    this.rtoAt = Infinity;
    this.persistAt = Infinity;
    this.delackAt = Infinity;
    this.keepaliveAt = Infinity;
    this.lingerAt = Infinity;
    this.sendQ.clear();
    this.ooo.clear();
    this.notifyClose(reason);
    this.owner?.release(this);
  }

  private notifyClose(reason: TcpCloseReason): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    this.counters.closes[reason]++;
    this.handler.onClose(this, reason);
  }

  private noteReceived(now: number): void {
    this.lastRecvMs = now;
    this.keepaliveProbes = 0;
  }

  private startRttTiming(now: number, seq: number): void {
    this.rttTiming = true;
    this.rttSeq = seq;
    this.rttStartMs = now;
  }

  private reschedule(): void {
    this.owner?.reschedule(this);
  }

  /** States in which our data and FIN may be (re)sent. */
  /** A method, not an inline test: callbacks into the app may close the connection behind TypeScript's narrowing. */
  private isClosed(): boolean {
    return this.state === TcpState.CLOSED;
  }

  /** Our FIN has been sent and SND.NXT is past it (not rewound by an RTO). */
  private finOutstanding(): boolean {
    return this.finSent && seqGt(this.sndNxt, this.finSeq);
  }

  private canSend(): boolean {
    const s = this.state;
    return s === TcpState.ESTABLISHED || s === TcpState.CLOSE_WAIT || s === TcpState.FIN_WAIT_1
      || s === TcpState.CLOSING || s === TcpState.LAST_ACK;
  }

  /** States in which the app may still write. */
  private acceptsWrites(): boolean {
    if (this.finQueued) return false;
    const s = this.state;
    return s === TcpState.PENDING || s === TcpState.SYN_SENT || s === TcpState.SYN_RECEIVED
      || s === TcpState.ESTABLISHED || s === TcpState.CLOSE_WAIT;
  }

  /** States in which the peer may still send us data (window updates matter). */
  private receiving(): boolean {
    const s = this.state;
    return !this.peerFin && (s === TcpState.ESTABLISHED || s === TcpState.FIN_WAIT_1 || s === TcpState.FIN_WAIT_2);
  }
}
