/**
 * All TCP connections of one stack instance (the tun interception mode): the
 * demultiplexer between the IP layer and the per-connection machines, the
 * answer to segments that match nothing, the connection limit, and the one
 * timer queue for thousands of connections.
 *
 *   IP shell ──input(now, src, dst, seg)──> TcpTable ──> TcpConnection.input
 *                                             │ no match: SYN → hooks.onSyn
 *                                             │           else RST (RFC 9293 §3.10.7.1)
 *   coarse clock ──tick(now)──> heap of deadlines ──> TcpConnection.onTimer
 *   TcpConnection ──TcpOutput.sendSegment──> IP shell
 *
 * Lookup: a Map keyed by a 30-bit hash of the 4-tuple (a small integer, which
 * V8 maps hash fastest), each entry a chain of the connections sharing that
 * hash, compared field by field. The hash is keyed with a random seed so a
 * device cannot aim many flows at one chain. No per-packet strings or
 * Array.find.
 *
 * Sans-I/O like the connections: the shell passes `now` and owns the clock;
 * `nextDeadline()` says when `tick` next has work.
 */
import { randomBytes } from 'node:crypto';
import { EdgeError } from '../../errors.js';
import { resolveTcpConfig, type TcpConfig } from './config.js';
import { TcpConnection, tcpSegment, type TcpConnOwner } from './connection.js';
import { IsnGenerator } from './isn.js';
import { TcpFlags, type TcpSegmentIn } from './segment.js';
import { seqAdd } from './seq.js';
import { TcpCounters, TcpState, type TcpDropReason, type TcpHandler, type TcpOutput } from './state.js';
import { DeadlineHeap } from './timers.js';

const { FIN, SYN, RST, ACK } = TcpFlags;

/**
 * What to do with a SYN for a new 4-tuple:
 * - 'pending': hold it (nothing sent) until `conn.accept()` or `conn.refuse()`
 *   — the shell dials the overlay circuit meanwhile;
 * - 'accept': answer with SYN-ACK at once (set the handler first);
 * - 'refuse': RST|ACK ("connection refused");
 * - 'ignore': drop it silently (no connection kept).
 */
export type TcpSynVerdict = 'pending' | 'accept' | 'refuse' | 'ignore';

/** The shell's side of the table. */
export interface TcpTableHooks {
  /**
   * A SYN for a new 4-tuple: `conn` is PENDING (local = the intercepted
   * address the device dialled). Called synchronously from `input`; keep the
   * connection to accept or refuse it later, and give it a handler with
   * `conn.setHandler()` to hear of its end (a peer RST or the pending timeout
   * can end it before a decision).
   */
  onSyn(conn: TcpConnection, now: number): TcpSynVerdict;
}

export interface TcpTableOptions {
  /** Overrides of the TCP defaults (config.ts). */
  tcp?: Partial<TcpConfig>;
  /** Most connections held (all states, PENDING and TIME-WAIT included). SYNs beyond it get RST|ACK. */
  maxConnections?: number;
  /** Key for RFC 6528 ISNs; random by default (tests pass one for reproducible runs). */
  isnSecret?: Buffer;
}

export const DEFAULT_MAX_CONNECTIONS = 10_000;

/**
 * @example
 *   const table = new TcpTable({ sendSegment: (src, dst, seg) => tun.writeTcp(src, dst, seg) },
 *     { onSyn: (conn) => { dial(conn); return 'pending'; } }, { maxConnections: 4000 });
 *   // per received TCP segment:   table.input(now, ip.src, ip.dst, seg);
 *   // per coarse tick:            table.tick(now); next wake-up at table.nextDeadline()
 */
export class TcpTable implements TcpConnOwner {
  readonly counters = new TcpCounters();
  readonly config: Readonly<TcpConfig>;
  readonly maxConnections: number;
  private readonly buckets = new Map<number, TcpConnection>();
  private readonly hashSeed: number;
  private readonly heap = new DeadlineHeap<TcpConnection>();
  private readonly isn: IsnGenerator;
  private count = 0;

  constructor(
    private readonly output: TcpOutput,
    private readonly hooks: TcpTableHooks,
    opts: TcpTableOptions = {},
  ) {
    this.config = resolveTcpConfig(opts.tcp);
    const max = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (!Number.isInteger(max) || max < 1) {
      throw new EdgeError('ERR_CONFIG', 'tcp maxConnections must be a positive integer', { details: { maxConnections: max } });
    }
    this.maxConnections = max;
    this.isn = new IsnGenerator(opts.isnSecret);
    this.hashSeed = randomBytes(4).readUInt32LE(0);
  }

  /** Connections held (every state but CLOSED). */
  get size(): number {
    return this.count;
  }

  /** The connection for a 4-tuple, if any. */
  lookup(localIp: number, localPort: number, remoteIp: number, remotePort: number): TcpConnection | undefined {
    localIp >>>= 0;
    remoteIp >>>= 0;
    let c: TcpConnection | null | undefined = this.buckets.get(this.hash(localIp, localPort, remoteIp, remotePort));
    while (c !== null && c !== undefined) {
      if (c.remotePort === remotePort && c.remoteIp === remoteIp && c.localIp === localIp && c.localPort === localPort) return c;
      c = c.bucketNext;
    }
    return undefined;
  }

  /**
   * One received segment from `srcIp` (the device) to `dstIp` (IPv4 as
   * unsigned 32-bit numbers). `seg.payload` is borrowed for the duration of
   * the call. Returns the drop reason, or null when the segment was used.
   */
  input(now: number, srcIp: number, dstIp: number, seg: TcpSegmentIn): TcpDropReason | null {
    this.counters.segmentsIn++;
    const flags = seg.flags;
    let conn = this.lookup(dstIp, seg.dstPort, srcIp, seg.srcPort);
    if (conn !== undefined) {
      // RFC 9293 §3.10.7.4 / RFC 6191: a new SYN above the old sequence space may reopen a TIME-WAIT tuple.
      if (conn.state === TcpState.TIME_WAIT && (flags & (SYN | ACK | RST)) === SYN && ((seg.seq - conn.rcvNxt) | 0) > 0) {
        conn.abort(now);
      } else {
        return conn.input(now, seg);
      }
    }
    if ((flags & RST) !== 0) return this.drop('noConnection');
    if ((flags & (SYN | ACK)) !== SYN) {
      this.resetStray(dstIp, srcIp, seg);
      return this.drop('noConnection');
    }
    if ((flags & FIN) !== 0) return this.drop('badFlags');
    if (this.count >= this.maxConnections) {
      this.resetStray(dstIp, srcIp, seg);
      return this.drop('connectionLimit');
    }
    conn = this.add(now, dstIp >>> 0, seg.dstPort, srcIp >>> 0, seg.srcPort);
    conn.openPending(now, seg);
    switch (this.hooks.onSyn(conn, now)) {
      case 'pending':
        return null;
      case 'accept':
        conn.accept(now);
        return null;
      case 'refuse':
        conn.refuse(now);
        return null;
      case 'ignore':
      default:
        if (conn.state === TcpState.PENDING) this.release(conn);
        return this.drop('ignored');
    }
  }

  /**
   * Active open from `localIp:localPort` to `remoteIp:remotePort` (tests and
   * simulations; the router itself only accepts). Throws when the 4-tuple is
   * in use or the table is full.
   */
  connect(now: number, localIp: number, localPort: number, remoteIp: number, remotePort: number, handler: TcpHandler): TcpConnection {
    if (this.lookup(localIp, localPort, remoteIp, remotePort) !== undefined) {
      throw new EdgeError('ERR_CONFLICT', 'tcp 4-tuple already in use', { details: { localPort, remotePort } });
    }
    if (this.count >= this.maxConnections) throw new EdgeError('ERR_CONFLICT', 'tcp connection limit reached');
    const conn = this.add(now, localIp >>> 0, localPort, remoteIp >>> 0, remotePort);
    conn.connect(now, handler);
    return conn;
  }

  /** Runs the timers of every connection due at `now`; returns how many connections ran. */
  tick(now: number): number {
    let ran = 0;
    for (;;) {
      const conn = this.heap.peek();
      if (conn === undefined || conn.heapDeadlineMs > now) break;
      this.heap.remove(conn);
      ran++;
      conn.onTimer(now);
      // onTimer reschedules (or releases) the connection itself.
    }
    return ran;
  }

  /** Earliest timer deadline over all connections (absolute ms), Infinity when none. */
  nextDeadline(): number {
    return this.heap.peekDeadline();
  }

  /** Aborts every connection (RST to each peer): shutdown. */
  abortAll(now: number): void {
    const all: TcpConnection[] = [];
    for (const head of this.buckets.values()) {
      for (let c: TcpConnection | null = head; c !== null; c = c.bucketNext) all.push(c);
    }
    for (const c of all) c.abort(now);
  }

  /** @internal TcpConnOwner */
  reschedule(conn: TcpConnection): void {
    if (conn.state === TcpState.CLOSED) return;
    this.heap.set(conn, conn.nextDeadline());
  }

  /** @internal TcpConnOwner: the connection reached CLOSED. */
  release(conn: TcpConnection): void {
    this.heap.remove(conn);
    const key = this.hash(conn.localIp, conn.localPort, conn.remoteIp, conn.remotePort);
    let c: TcpConnection | null | undefined = this.buckets.get(key);
    let prev: TcpConnection | null = null;
    while (c !== undefined && c !== null) {
      if (c === conn) {
        if (prev === null) {
          if (c.bucketNext === null) this.buckets.delete(key);
          else this.buckets.set(key, c.bucketNext);
        } else {
          prev.bucketNext = c.bucketNext;
        }
        c.bucketNext = null;
        this.count--;
        return;
      }
      prev = c;
      c = c.bucketNext;
    }
  }

  private add(now: number, localIp: number, localPort: number, remoteIp: number, remotePort: number): TcpConnection {
    const iss = this.isn.next(now, localIp, localPort, remoteIp, remotePort);
    const conn = new TcpConnection(this.config, this.output, this.counters, this, localIp, localPort, remoteIp, remotePort, iss);
    const key = this.hash(localIp, localPort, remoteIp, remotePort);
    const head = this.buckets.get(key);
    if (head !== undefined) conn.bucketNext = head;
    this.buckets.set(key, conn);
    this.count++;
    return conn;
  }

  /**
   * RST for a segment that matches no connection (RFC 9293 §3.10.7.1):
   * with ACK → <SEQ=SEG.ACK><CTL=RST>; without → <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
   */
  private resetStray(localIp: number, remoteIp: number, seg: TcpSegmentIn): void {
    const hasAck = (seg.flags & ACK) !== 0;
    const segLen = seg.payload.length + ((seg.flags & SYN) !== 0 ? 1 : 0) + ((seg.flags & FIN) !== 0 ? 1 : 0);
    const out = hasAck
      ? tcpSegment(seg.dstPort, seg.srcPort, seg.ack, 0, RST, 0, undefined, undefined)
      : tcpSegment(seg.dstPort, seg.srcPort, 0, seqAdd(seg.seq, segLen), RST | ACK, 0, undefined, undefined);
    this.counters.resetsSent++;
    this.counters.segmentsOut++;
    this.output.sendSegment(localIp >>> 0, remoteIp >>> 0, out);
  }

  /** Seeded 32-bit mix of the 4-tuple (murmur3-style finaliser rounds), cut to 30 bits so it stays a small integer. */
  private hash(localIp: number, localPort: number, remoteIp: number, remotePort: number): number {
    let h = Math.imul(remoteIp ^ this.hashSeed, 0xcc9e2d51);
    h = Math.imul((h << 15) | (h >>> 17), 0x1b873593) ^ localIp;
    h = Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64;
    h ^= (remotePort << 16) | (localPort & 0xffff);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & 0x3fff_ffff;
  }

  private drop(reason: TcpDropReason): TcpDropReason {
    this.counters.drops[reason]++;
    return reason;
  }
}
