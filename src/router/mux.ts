/**
 * Circuits on one link: each circuit bridges a local byte stream (a TCP
 * socket accepted by a proxy port, or connected to a hosted service) to the
 * peer router, with per-circuit credit flow control.
 *
 * Flow control (per direction, per circuit):
 *   - the sender may have at most `windowBytes` unacknowledged bytes out;
 *   - the receiver grants CREDIT as it hands data to its local socket while
 *     that socket is below its high-water mark, in batches of ≥ 1/4 window;
 *   - a sender out of credit pauses its local socket: a slow consumer slows
 *     its own circuit only, never the link or its other circuits;
 *   - the window grows (doubling, up to MAX_WINDOW_BYTES and a budget per
 *     link) when the sender reports, with the BLOCKED flag on a DATA frame,
 *     that it used its last credit while our socket kept up: the grants
 *     took longer to reach it than the window took to send, as on a long
 *     hop. It falls back to the initial window as soon as our socket falls
 *     behind (the excess is withheld from later grants). Both ends offer
 *     this in DIAL / DIAL_OK (`maxWindow`); with a peer that does not, the
 *     window stays fixed and BLOCKED is never sent.
 * Link backpressure (TLS socket buffer full) pauses every local source on the
 * link until 'drain'. Memory per circuit is bounded by window + socket buffer.
 *
 * Circuit ids: the side that dialed the link allocates odd ids, the other
 * even ids, so both may open circuits without colliding (as in HTTP/2).
 *
 * Hot path: DATA bodies go from the link straight to socket.write and from
 * socket 'data' straight to link.sendFrame (subarray views, no copies, no
 * per-frame promises or logging). A body that straddled TLS records reaches
 * a socket as the views of those records in one corked write; only a
 * transit pipe gets it copied once, with headroom for the next hop's header.
 */
import type { Duplex } from 'node:stream';
import { CloseCode, FrameFlags, FrameType, decodeControl, joinWithHeadroom, decodeCredit, encodeCredit, num, str } from '../wire/index.js';
import type { Link } from '../link/index.js';

/**
 * Per circuit and direction. 128 KiB changed neither RSS nor throughput in
 * bench/link: Buffer garbage, not data in flight, sets a router's peak
 * (docs/memory.md).
 */
export const DEFAULT_WINDOW_BYTES = 256 * 1024;
/**
 * Largest window a circuit grows to: one circuit moves up to ~560 Mbit/s
 * over a 30 ms hop (256 KiB alone: ~70 Mbit/s). Also the most credit we
 * accept from a peer that offered growth.
 */
export const MAX_WINDOW_BYTES = 2 * 1024 * 1024;
/**
 * Windows grow only up to what this rate needs over the link's measured
 * round trip (Link.rttMs): 1 Gbit/s, in bytes per ms. On a LAN or loopback
 * (RTT ≤ 2 ms) 256 KiB already carries that, and a BLOCKED there comes from
 * a scheduling pause, not the window: growing would only hold more data in
 * flight (bench/link read 84–92 MiB peaks with growth on loopback).
 */
const GROWTH_RATE_BYTES_PER_MS = 125_000;
/** Growth beyond the initial window, summed over one link's circuits: bounds what stalled grown circuits can hold. */
export const LINK_GROWTH_BUDGET_BYTES = 4 * 1024 * 1024;
/**
 * Largest DATA body sent; larger socket reads are cut into views of this size.
 * 16 KiB − 12 (a frame per TLS record: no copy in the decoder) cut the peak
 * RSS by 8 MiB but cost 22 % throughput in per-frame work (docs/memory.md).
 */
export const MAX_DATA_BODY = 64 * 1024;

/** Why a circuit ended; carried in RESET / DIAL_FAIL bodies as `code`. */
export const CircuitError = {
  REFUSED: 1,
  NO_ROUTE: 2,
  DENIED: 3,
  CONNECT_FAILED: 4,
  LINK_DOWN: 5,
  RESET_BY_PEER: 6,
  PROTOCOL: 7,
} as const;

/** Destroy a circuit's local stream with this to end the circuit with a code and reason for the peer. */
export class CircuitEnd extends Error {
  constructor(readonly code: number, reason: string) {
    super(reason);
  }
}

export interface DialRequest {
  service: string;
  /** Identity id on whose behalf the circuit is dialed. */
  identity: string;
  /** Original destination (TUN interception), for host.v1 forwardAddress. */
  dstAddress?: string;
  dstPort?: number;
  /**
   * What the circuit carries: a TCP byte stream (absent: the default, and what
   * peers that predate UDP send) or UDP datagrams as length-prefixed records
   * (datagram.ts). Sent in DIAL only when it is udp.
   */
  protocol?: 'tcp' | 'udp';
}

/**
 * The local end of a circuit: a TCP socket (proxy port, hosted service) or
 * one end of an in-memory pipe (transit: the next hop's circuit).
 */
export type CircuitStream = Duplex & { setNoDelay?: (noDelay?: boolean) => unknown };
type Socket = CircuitStream;

/** Decides what to do with a DIAL from the peer: connect a local socket, or refuse. */
export type DialHandler = (req: DialRequest, accept: (socket: Socket) => void, refuse: (code: number, reason: string) => void) => void;

class Circuit {
  /** Bytes we may still send before the peer grants more. */
  sendCredit: number;
  /** Our receive window now: the initial one, or grown (see the flow-control notes above). */
  window: number;
  /** Credit still to be withheld since the window shrank back. */
  debt = 0;
  /** Bytes handed to our socket since the last grant. */
  ungranted = 0;
  /** Data received while our socket was over its high-water mark: granted on 'drain'. */
  heldBack = 0;
  /** A local read that did not fit in the credit: resumed when credit arrives. */
  pending: Buffer | undefined = undefined;
  localEnded = false;
  remoteEnded = false;
  closed = false;
  /** The local end is in memory (a transit pipe: the next hop's circuit), not a socket. */
  readonly inMemory: boolean;

  /**
   * @param peerMaxWindow the window the peer offered to let ours grow to
   *   (it accepts that much credit and understands BLOCKED); 0: fixed window.
   */
  constructor(readonly id: number, readonly socket: Socket, windowBytes: number, readonly peerMaxWindow: number) {
    this.sendCredit = windowBytes;
    this.window = windowBytes;
    this.inMemory = (socket as { inMemory?: unknown }).inMemory === true;
  }
}

export class LinkMux {
  private readonly circuits = new Map<number, Circuit>();
  /** Pending dials of ours: id → callbacks. */
  private readonly dialing = new Map<number, { socket: Socket; onResult: (err: { code: number; reason: string } | undefined) => void }>();
  private nextId: number;
  private linkBlocked = false;
  /** Sum over open circuits of window − windowBytes (LINK_GROWTH_BUDGET_BYTES caps it). */
  private grownBytes = 0;
  /** Most credit a peer may grant one circuit: its initial window ×4 (older peers' bound), or what we offer to grow to. */
  private readonly maxCredit: number;
  /** The maxWindow we offer in DIAL / DIAL_OK (0: none). */
  private readonly offer: number;
  /** Link-level ANNOUNCE frames (circuit 0), for the router's route table. `body` is borrowed. */
  onAnnounce: (body: Buffer) => void = () => undefined;

  constructor(
    readonly link: Link,
    role: 'dialer' | 'listener',
    private readonly onDial: DialHandler,
    private readonly windowBytes = DEFAULT_WINDOW_BYTES,
    /** What our windows may grow to; at or below windowBytes: fixed windows, nothing offered (as an older router). */
    maxWindowBytes = MAX_WINDOW_BYTES,
  ) {
    this.nextId = role === 'dialer' ? 1 : 2;
    this.maxCredit = Math.max(windowBytes * 4, maxWindowBytes);
    this.offer = maxWindowBytes > windowBytes ? maxWindowBytes : 0;
    link.circuitHandler = (type, flags, circuitId, body) => this.onFrame(type, flags, circuitId, body);
    link.circuitPiecesHandler = (flags, circuitId, pieces, length) => this.onDataPieces(flags, circuitId, pieces, length);
    link.on('drain', () => this.onLinkDrain());
    link.on('close', () => this.onLinkClose());
  }

  get openCircuits(): number {
    return this.circuits.size;
  }

  /**
   * Opens a circuit for `socket` to `req.service` through this link. The
   * socket's data starts flowing once the far end accepts; `onResult` tells
   * whether it did (a refusal carries the peer's code and reason).
   */
  dial(socket: Socket, req: DialRequest, onResult: (err: { code: number; reason: string } | undefined) => void): number {
    const id = this.nextId;
    this.nextId += 2;
    socket.pause();
    // Resets by local clients are routine; the 'close' that follows ends the circuit.
    socket.on('error', ignore);
    this.dialing.set(id, { socket, onResult });
    const body: Record<string, unknown> = { service: req.service, identity: req.identity, dstAddress: req.dstAddress, dstPort: req.dstPort, window: this.windowBytes };
    if (this.offer > 0) body.maxWindow = this.offer;
    if (req.protocol === 'udp') body.protocol = 'udp';
    this.link.sendControl(FrameType.DIAL, id, body);
    return id;
  }

  // ---- frames from the link ----------------------------------------------

  private onFrame(type: number, flags: number, circuitId: number, body: Buffer): void {
    const c = this.circuits.get(circuitId);
    switch (type) {
      case FrameType.DATA:
        if (c === undefined) return; // late data after a reset: drop
        if (body.length > 0) this.deliver(c, body);
        if ((flags & FrameFlags.BLOCKED) !== 0) this.grow(c);
        if ((flags & FrameFlags.FIN) !== 0) this.remoteEnd(c);
        return;
      case FrameType.CREDIT: {
        const n = decodeCredit(body);
        if (n === undefined) return this.link.close(CloseCode.MALFORMED_BODY, 'bad CREDIT body');
        if (c !== undefined) this.addCredit(c, n);
        return;
      }
      case FrameType.FIN:
        if (c !== undefined) this.remoteEnd(c);
        return;
      case FrameType.RESET:
        if (c !== undefined) this.drop(c, false);
        return;
      case FrameType.ANNOUNCE:
        if (circuitId === 0) return this.onAnnounce(body);
        return this.link.close(CloseCode.MALFORMED_BODY, 'ANNOUNCE on a circuit');
      case FrameType.DIAL: return this.onDialFrame(circuitId, body);
      case FrameType.DIAL_OK: return this.onDialResult(circuitId, undefined, peerMaxWindow(decodeControl(body)));
      case FrameType.DIAL_FAIL: {
        const m = decodeControl(body);
        return this.onDialResult(circuitId, { code: (m && num(m, 'code')) ?? CircuitError.REFUSED, reason: (m && str(m, 'reason')) ?? 'refused' });
      }
      default:
        this.link.close(CloseCode.UNKNOWN_TYPE, `frame type 0x${type.toString(16)} on a circuit`);
    }
  }

  /**
   * A DATA body that straddled TLS records, as views of them. A socket gets
   * the views (one writev, no copy); a transit pipe gets one copy with frame
   * headroom, which the next link sends with its header written in front.
   */
  private onDataPieces(flags: number, circuitId: number, pieces: Buffer[], length: number): void {
    const c = this.circuits.get(circuitId);
    if (c === undefined) return; // late data after a reset: drop
    if (c.inMemory) this.deliver(c, joinWithHeadroom(pieces, length));
    else if (!c.closed && !c.socket.destroyed) {
      const s = c.socket;
      s.cork();
      for (const p of pieces) s.write(p);
      s.uncork();
      // Judged once uncorked: a corked 64 KiB reads as over the high-water mark even when the
      // socket takes it at once, which would hold every grant back until 'drain'.
      this.account(c, s.writableLength < s.writableHighWaterMark, length);
    }
    if ((flags & FrameFlags.BLOCKED) !== 0) this.grow(c);
    if ((flags & FrameFlags.FIN) !== 0) this.remoteEnd(c);
  }

  private onDialFrame(id: number, body: Buffer): void {
    const m = decodeControl(body);
    const service = m && str(m, 'service', 256);
    const identity = m && str(m, 'identity', 256);
    if (m === undefined || service === undefined || identity === undefined) return this.link.close(CloseCode.MALFORMED_BODY, 'malformed DIAL');
    if (this.circuits.has(id) || (id & 1) === (this.nextId & 1)) return this.refuse(id, CircuitError.PROTOCOL, 'circuit id in use or of the wrong parity');
    const dstAddress = str(m, 'dstAddress', 256);
    const dstPort = num(m, 'dstPort');
    const proto = m.protocol;
    if (proto !== undefined && proto !== 'tcp' && proto !== 'udp') return this.refuse(id, CircuitError.PROTOCOL, 'unknown circuit protocol');
    const req: DialRequest = { service, identity, dstAddress, dstPort };
    if (proto === 'udp') req.protocol = 'udp';
    const peerMax = peerMaxWindow(m);
    let answered = false;
    this.onDial(
      req,
      (socket) => {
        if (answered) return;
        answered = true;
        if (!this.link.isUp) { socket.destroy(); return; }
        this.link.sendControl(FrameType.DIAL_OK, id, this.offer > 0 ? { maxWindow: this.offer } : {});
        this.attach(id, socket, peerMax);
      },
      (code, reason) => {
        if (answered) return;
        answered = true;
        this.refuse(id, code, reason);
      },
    );
  }

  private refuse(id: number, code: number, reason: string): void {
    this.link.sendControl(FrameType.DIAL_FAIL, id, { code, reason });
  }

  private onDialResult(id: number, err: { code: number; reason: string } | undefined, peerMax = 0): void {
    const d = this.dialing.get(id);
    if (d === undefined) return;
    this.dialing.delete(id);
    if (err !== undefined) {
      d.socket.destroy();
      d.onResult(err);
      return;
    }
    this.attach(id, d.socket, peerMax);
    d.onResult(undefined);
  }

  // ---- circuit plumbing -----------------------------------------------------

  private attach(id: number, socket: Socket, peerMax: number): void {
    // Without an offer of ours the peer grows nothing either: the circuit keeps fixed windows.
    const c = new Circuit(id, socket, this.windowBytes, this.offer > 0 ? peerMax : 0);
    this.circuits.set(id, c);
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.send(c, chunk));
    socket.on('end', () => {
      c.localEnded = true;
      if (c.pending === undefined) this.link.sendFrame(FrameType.FIN, 0, id, EMPTY);
      this.maybeFinished(c);
    });
    socket.on('drain', () => this.grantHeldBack(c));
    socket.on('error', ignore);
    socket.on('close', () => {
      // Both sides ended but our last bytes still wait for credit: the circuit finishes when
      // they are out (addCredit), not now, or they would be lost with it.
      if (c.localEnded && c.remoteEnded && c.pending !== undefined) return;
      this.drop(c, true);
    });
    if (!this.linkBlocked) socket.resume();
  }

  /** Local socket → link, within the circuit's credit. */
  private send(c: Circuit, chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, MAX_DATA_BODY, c.sendCredit);
      if (n === 0) {
        c.pending = chunk.subarray(off);
        c.socket.pause();
        return;
      }
      c.sendCredit -= n;
      // Our last credit: tell a peer that can grow our window that it held us up.
      const flags = c.sendCredit === 0 && c.peerMaxWindow > 0 ? FrameFlags.BLOCKED : 0;
      const ok = this.link.sendFrame(FrameType.DATA, flags, c.id, off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n));
      off += n;
      if (!ok) this.blockLink();
    }
  }

  private addCredit(c: Circuit, n: number): void {
    c.sendCredit += n;
    if (c.sendCredit > this.maxCredit) return this.link.close(CloseCode.FLOW_CONTROL, 'peer granted more credit than the window');
    const pending = c.pending;
    if (pending !== undefined) {
      c.pending = undefined;
      this.send(c, pending);
      if (c.pending === undefined) {
        if (c.localEnded) {
          this.link.sendFrame(FrameType.FIN, 0, c.id, EMPTY);
          this.maybeFinished(c);
        } else if (!this.linkBlocked) c.socket.resume();
      }
    }
  }

  /** Link → local socket; grants credit while the socket keeps up. */
  private deliver(c: Circuit, body: Buffer): void {
    if (c.closed || c.socket.destroyed) return;
    this.account(c, c.socket.write(body), body.length);
  }

  /** `n` bytes handed to the socket, which is `below` its high-water mark or not: grant now or on 'drain'. */
  private account(c: Circuit, below: boolean, n: number): void {
    if (below && c.heldBack === 0) {
      c.ungranted += n;
      // A quarter of the window per grant (a grown window: fewer, larger grants).
      if (c.ungranted >= Math.max(1, c.window >> 2)) {
        this.grant(c, c.ungranted);
        c.ungranted = 0;
      }
    } else {
      c.heldBack += n;
      // Our socket fell behind: back to the initial window, so a stalled circuit holds no more than that for long.
      if (c.window > this.windowBytes) {
        const excess = c.window - this.windowBytes;
        this.ungrow(c);
        c.debt += excess;
      }
    }
  }

  /** Grants `n` bytes of credit, less what a shrunk window still withholds. */
  private grant(c: Circuit, n: number): void {
    if (c.debt > 0) {
      const withheld = Math.min(c.debt, n);
      c.debt -= withheld;
      n -= withheld;
    }
    if (n > 0) this.link.sendFrame(FrameType.CREDIT, 0, c.id, encodeCredit(n));
  }

  /**
   * The peer used its last credit (BLOCKED): double our window, within the
   * peer's offer, MAX_WINDOW_BYTES and the link's budget, and grant the
   * difference at once. Not while our socket is behind: then the window was
   * not what held the sender up.
   */
  private grow(c: Circuit): void {
    if (c.peerMaxWindow === 0 || c.closed || c.heldBack > 0) return;
    if (this.link.rttMs * GROWTH_RATE_BYTES_PER_MS <= c.window) return;
    const extra = Math.min(c.window, Math.min(this.offer, c.peerMaxWindow) - c.window, LINK_GROWTH_BUDGET_BYTES - this.grownBytes);
    if (extra <= 0) return;
    c.window += extra;
    this.grownBytes += extra;
    const n = c.ungranted + extra;
    c.ungranted = 0;
    this.grant(c, n);
  }

  /** Back to the initial window; the link's growth budget gets the excess back. */
  private ungrow(c: Circuit): void {
    this.grownBytes -= c.window - this.windowBytes;
    c.window = this.windowBytes;
  }

  private grantHeldBack(c: Circuit): void {
    const n = c.ungranted + c.heldBack;
    c.ungranted = 0;
    c.heldBack = 0;
    if (n > 0 && !c.closed) this.grant(c, n);
  }

  private remoteEnd(c: Circuit): void {
    c.remoteEnded = true;
    c.socket.end();
    this.maybeFinished(c);
  }

  /** Forgets a circuit once both directions ended and nothing of ours waits to be sent. */
  private maybeFinished(c: Circuit): void {
    if (c.localEnded && c.remoteEnded && c.pending === undefined) {
      this.circuits.delete(c.id);
      this.ungrow(c);
    }
  }

  /** Ends a circuit; `tellPeer` sends RESET unless both sides had finished cleanly. */
  private drop(c: Circuit, tellPeer: boolean): void {
    if (c.closed) return;
    c.closed = true;
    const clean = c.localEnded && c.remoteEnded;
    this.circuits.delete(c.id);
    this.ungrow(c);
    if (tellPeer && !clean && this.link.isUp) {
      // A local end destroyed with a CircuitEnd (revocation, policy expiry) tells the peer why.
      const why = c.socket.errored;
      if (why instanceof CircuitEnd) this.link.sendControl(FrameType.RESET, c.id, { code: why.code, reason: why.message });
      else this.link.sendControl(FrameType.RESET, c.id, { code: CircuitError.RESET_BY_PEER });
    }
    // A circuit cut short resets its TCP socket (RST), so the client can tell truncation from a complete transfer.
    const tcp = c.socket as CircuitStream & { resetAndDestroy?: () => unknown };
    if (!clean && typeof tcp.resetAndDestroy === 'function' && !c.socket.destroyed) tcp.resetAndDestroy();
    else c.socket.destroy();
  }

  private blockLink(): void {
    if (this.linkBlocked) return;
    this.linkBlocked = true;
    for (const c of this.circuits.values()) c.socket.pause();
  }

  private onLinkDrain(): void {
    if (!this.linkBlocked) return;
    this.linkBlocked = false;
    for (const c of this.circuits.values()) if (c.pending === undefined && !c.localEnded) c.socket.resume();
  }

  /** The link is gone: every circuit on it fails at once, with a reason. */
  private onLinkClose(): void {
    // drop() without telling the peer (the link is gone): unfinished circuits reset their local
    // TCP client (RST), so a transfer cut by a dead link is never taken for a complete one.
    for (const c of [...this.circuits.values()]) this.drop(c, false);
    this.circuits.clear();
    for (const d of this.dialing.values()) {
      d.socket.destroy();
      d.onResult({ code: CircuitError.LINK_DOWN, reason: 'the link went down' });
    }
    this.dialing.clear();
  }
}

const EMPTY = Buffer.alloc(0);

/** The `maxWindow` a peer offered in DIAL / DIAL_OK (a whole number of bytes), else 0: an older peer, no growth and no BLOCKED. */
function peerMaxWindow(m: Record<string, unknown> | undefined): number {
  const v = m === undefined ? undefined : num(m, 'maxWindow');
  return v !== undefined && Number.isInteger(v) && v > 0 && v <= 0xffffffff ? v : 0;
}
function ignore(): void { /* see callers */ }
