/**
 * UDP over circuits: the I/O shells around the record codec (datagram.ts).
 *
 *   proxy side                                          hosting side
 *   client ──dgram──► UdpProxyPort ─┐               ┌─► connected dgram socket ──► target
 *                      (one session │  circuit:     │   (one per circuit)
 *                      per client   └─► records ────┘
 *                      address:port)   [len][payload]…
 *
 * A `DatagramCircuit` is the circuit's local end (a Duplex, like the TCP
 * socket of a TCP circuit): bytes written to it by the mux are decoded into
 * records and sent as datagrams; datagrams received are pushed as records
 * (header then payload, no copy) for the mux to read.
 *
 * UDP has no backpressure, so nothing here queues without bound: a datagram
 * that finds the circuit's read buffer full (the peer is out of credit), or
 * the socket's send queue long, is dropped and counted, as a congested
 * network would. Sessions per proxy port are capped; beyond the cap new
 * clients' datagrams are dropped and counted.
 *
 * Idle: a circuit with no datagram either way for `idleMs` ends (FIN; then,
 * if the peer does not answer with its own FIN within one sweep, destroy).
 * One coarse timer per router (`IdleSweeper`) checks every circuit; traffic
 * only sets a flag, so the hot path touches no timer and no clock.
 */
import { createSocket, type RemoteInfo, type Socket as DgramSocket } from 'node:dgram';
import { Duplex } from 'node:stream';
import { RecordDecoder, recordHeader, type RecordHandler } from './datagram.js';

/** Drops and events on UDP circuits, per router. Plain numbers: read them for status and tests. */
export class UdpCounters {
  /** Sessions opened on proxy ports. */
  sessionsOpened = 0;
  /** Datagrams from new clients dropped because a proxy port had `maxSessions` sessions. */
  sessionLimitDrops = 0;
  /** Datagrams dropped because the circuit's read buffer was full (peer out of credit or link blocked). */
  backlogDrops = 0;
  /** Datagrams that arrived for a circuit that had begun to end (idle or FIN from the peer). */
  closingDrops = 0;
  /** Datagrams dropped because the socket's send queue was full. */
  sendQueueDrops = 0;
  /** Datagrams from clients whose session was refused, dropped while the refusal holds. */
  refusedDrops = 0;
  /** Send or receive errors reported by UDP sockets (ICMP unreachable, ENOBUFS, …). */
  socketErrors = 0;
  /** Circuits ended for idleness. */
  idleTimeouts = 0;
  /** Circuits whose peer ended the stream in the middle of a record (the partial datagram is lost). */
  truncatedRecords = 0;
}

export interface UdpSettings {
  /** End a circuit after this long without a datagram either way. */
  idleMs: number;
  /** Sessions per proxy port. */
  maxSessions: number;
}

export const DEFAULT_UDP_SETTINGS: UdpSettings = { idleMs: 60_000, maxSessions: 1024 };

/** Datagrams queued in a socket beyond this are dropped rather than queued. */
const MAX_SEND_QUEUE = 256;
/** Bytes of records a circuit holds for the mux while it is paused; beyond, datagrams are dropped. */
const READ_BUFFER_BYTES = 64 * 1024;

/** Where a circuit's datagrams go, and who is told when it ends. */
export interface DatagramEndpoint {
  /** Sends one datagram for `c`. `payload` is borrowed for the call (dgram keeps its own reference). */
  sendDatagram(c: DatagramCircuit, payload: Buffer): void;
  /** `c` was destroyed. */
  circuitClosed(c: DatagramCircuit): void;
}

/** Something the sweeper checks. */
interface Sweepable {
  /** Returns false to leave the sweeper. */
  sweep(nowMs: number): boolean;
  destroy(): unknown;
}

/**
 * One coarse timer for all UDP circuits of a router: it runs only while there
 * are circuits, every quarter idle period (10 ms to 1 s).
 */
export class IdleSweeper {
  readonly tickMs: number;
  private readonly items = new Set<Sweepable>();
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(readonly idleMs: number) {
    this.tickMs = Math.min(1000, Math.max(10, Math.floor(idleMs / 4)));
  }

  add(item: Sweepable): void {
    this.items.add(item);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
  }

  delete(item: Sweepable): void {
    this.items.delete(item);
    if (this.items.size === 0) this.stopTimer();
  }

  get size(): number {
    return this.items.size;
  }

  private tick(): void {
    const now = Date.now();
    for (const item of this.items) if (!item.sweep(now)) this.items.delete(item);
    if (this.items.size === 0) this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops the timer and destroys every circuit still open (router stopping). */
  stop(): void {
    const items = [...this.items];
    this.items.clear();
    this.stopTimer();
    for (const item of items) item.destroy();
  }
}

/**
 * The local end of a UDP circuit. Writable side: record bytes from the
 * circuit, sent as datagrams through `endpoint`. Readable side: datagrams
 * given to `receive`, as records. A session that was refused stays as a
 * tombstone (destroyed, `refusedAtMs` set, see `UdpProxyPort.refused`) so
 * its client's datagrams are dropped for a while instead of each one dialing
 * again.
 */
export class DatagramCircuit extends Duplex implements RecordHandler, Sweepable {
  /** Set by traffic; cleared by the sweeper. */
  touched = false;
  idleSinceMs: number;
  /** When the sweeper ended it for idleness (FIN sent); 0 while active. */
  idleEndedAtMs = 0;
  /** When the dial was refused (a tombstone); 0 otherwise. */
  refusedAtMs = 0;
  private readonly decoder = new RecordDecoder();
  private readEnded = false;

  constructor(
    private readonly endpoint: DatagramEndpoint,
    private readonly sweeper: IdleSweeper,
    private readonly counters: UdpCounters,
    /** The client's address and port (proxy sessions); empty and 0 on the hosting side. */
    readonly peerAddress: string,
    readonly peerPort: number,
    nowMs: number,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: READ_BUFFER_BYTES });
    this.idleSinceMs = nowMs;
    sweeper.add(this);
  }

  /** A datagram from the UDP side (owned: dgram made it for us). */
  receive(msg: Buffer): void {
    if (this.destroyed) {
      if (this.refusedAtMs !== 0) this.counters.refusedDrops++;
      return;
    }
    if (this.readEnded) {
      this.counters.closingDrops++;
      return;
    }
    if (this.readableLength >= READ_BUFFER_BYTES) {
      this.counters.backlogDrops++;
      return;
    }
    this.touched = true;
    this.push(recordHeader(msg.length));
    if (msg.length > 0) this.push(msg);
  }

  /** RecordHandler: one datagram from the circuit. */
  onRecord(payload: Buffer): void {
    this.touched = true;
    this.endpoint.sendDatagram(this, payload);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.decoder.push(chunk, this);
    callback();
  }

  /** The peer sent FIN: UDP has no half-close, so our side ends too. */
  override _final(callback: (err?: Error | null) => void): void {
    if (!this.decoder.atBoundary) this.counters.truncatedRecords++;
    this.endRead();
    callback();
  }

  override _read(): void {
    // Datagrams are pushed as they arrive; the read buffer bound is checked in receive().
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.sweeper.delete(this);
    this.endpoint.circuitClosed(this);
    callback(err);
  }

  sweep(nowMs: number): boolean {
    if (this.refusedAtMs !== 0) {
      // Hold a refusal for up to 5 s (or the idle time, if shorter), then let the client try again.
      if (nowMs - this.refusedAtMs < Math.min(this.sweeper.idleMs, 5000)) return true;
      this.endpoint.circuitClosed(this);
      return false;
    }
    if (this.destroyed) return false;
    if (this.idleEndedAtMs !== 0) {
      // FIN went out a sweep ago and the peer did not finish: cut it.
      if (nowMs - this.idleEndedAtMs >= this.sweeper.tickMs) this.destroy();
      return true;
    }
    if (this.touched) {
      this.touched = false;
      this.idleSinceMs = nowMs;
      return true;
    }
    if (nowMs - this.idleSinceMs >= this.sweeper.idleMs) {
      this.counters.idleTimeouts++;
      this.idleEndedAtMs = nowMs;
      this.endRead();
    }
    return true;
  }

  private endRead(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    this.push(null);
  }

  /** Sockets have it; datagrams are never delayed. */
  setNoDelay(): this {
    return this;
  }
}

/** Hosting side: one connected dgram socket per circuit. */
export class ConnectedDatagramEndpoint implements DatagramEndpoint {
  constructor(private readonly socket: DgramSocket, private readonly counters: UdpCounters) {}

  sendDatagram(_c: DatagramCircuit, payload: Buffer): void {
    if (this.socket.getSendQueueCount() >= MAX_SEND_QUEUE) {
      this.counters.sendQueueDrops++;
      return;
    }
    this.socket.send(payload);
  }

  circuitClosed(): void {
    try {
      this.socket.close();
    } catch {
      // Already closed (socket error before the circuit went).
    }
  }
}

/**
 * Opens a connected dgram socket to `address:port` (an IP literal; resolve
 * names first) and a circuit on it. `done` gets the circuit once the socket is
 * connected, or an error.
 */
export function connectDatagram(
  address: string,
  family: 4 | 6,
  port: number,
  sweeper: IdleSweeper,
  counters: UdpCounters,
  done: (err: Error | undefined, c: DatagramCircuit | undefined) => void,
): void {
  const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
  const endpoint = new ConnectedDatagramEndpoint(socket, counters);
  let circuit: DatagramCircuit | undefined;
  socket.on('error', (err) => {
    if (circuit === undefined) {
      try { socket.close(); } catch { /* not open */ }
      done(err, undefined);
      return;
    }
    // ICMP unreachable and the like: UDP carries on; the idle timer ends a dead flow.
    counters.socketErrors++;
  });
  socket.on('message', (msg: Buffer) => circuit?.receive(msg));
  socket.connect(port, address, () => {
    circuit = new DatagramCircuit(endpoint, sweeper, counters, '', 0, Date.now());
    done(undefined, circuit);
  });
}

/** What a proxy port needs from the router: dial a circuit for a new session (and call `port.refused` if that fails). */
export type OpenSession = (c: DatagramCircuit, port: UdpProxyPort) => void;

/**
 * A UDP proxy port: one bound dgram socket, one circuit per client
 * address:port, at most `maxSessions` of them (tombstones included).
 * Sessions are found by address then port (two Map lookups, no key string
 * built per datagram).
 */
export class UdpProxyPort implements DatagramEndpoint {
  private readonly sessions = new Map<string, Map<number, DatagramCircuit>>();
  private count = 0;
  private closed = false;

  constructor(
    private readonly socket: DgramSocket,
    private readonly maxSessions: number,
    private readonly sweeper: IdleSweeper,
    private readonly counters: UdpCounters,
    private readonly open: OpenSession,
  ) {
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.onMessage(msg, rinfo));
    socket.on('error', () => { counters.socketErrors++; });
  }

  /** Binds a UDP proxy port on `host:port` (0: the kernel picks). */
  static async bind(host: string, port: number, maxSessions: number, sweeper: IdleSweeper, counters: UdpCounters, open: OpenSession): Promise<UdpProxyPort> {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => { socket.off('error', reject); resolve(); });
    });
    return new UdpProxyPort(socket, maxSessions, sweeper, counters, open);
  }

  /** Live sessions and tombstones. */
  get sessionCount(): number {
    return this.count;
  }

  address(): { address: string; family: string; port: number } {
    return this.socket.address();
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    let byPort = this.sessions.get(rinfo.address);
    let c = byPort?.get(rinfo.port);
    if (c !== undefined && c.idleEndedAtMs !== 0) {
      // The session idled out and waits for the peer's FIN: this datagram starts a new one.
      c.destroy();
      c = undefined;
      byPort = this.sessions.get(rinfo.address);
    }
    if (c === undefined) {
      if (this.closed) return;
      if (this.count >= this.maxSessions) {
        this.counters.sessionLimitDrops++;
        return;
      }
      if (byPort === undefined) {
        byPort = new Map();
        this.sessions.set(rinfo.address, byPort);
      }
      c = new DatagramCircuit(this, this.sweeper, this.counters, rinfo.address, rinfo.port, Date.now());
      byPort.set(rinfo.port, c);
      this.count++;
      this.counters.sessionsOpened++;
      this.open(c, this);
    }
    c.receive(msg);
  }

  sendDatagram(c: DatagramCircuit, payload: Buffer): void {
    if (this.closed) return;
    if (this.socket.getSendQueueCount() >= MAX_SEND_QUEUE) {
      this.counters.sendQueueDrops++;
      return;
    }
    this.socket.send(payload, c.peerPort, c.peerAddress);
  }

  /** A session went (or a tombstone expired): forget it. */
  circuitClosed(c: DatagramCircuit): void {
    const byPort = this.sessions.get(c.peerAddress);
    if (byPort === undefined || byPort.get(c.peerPort) !== c) return;
    byPort.delete(c.peerPort);
    if (byPort.size === 0) this.sessions.delete(c.peerAddress);
    this.count--;
  }

  /**
   * The dial for session `c` was refused: end it, and keep it as a tombstone
   * (the client's datagrams dropped and counted) for up to 5 s, so a client
   * that keeps sending does not dial once per datagram.
   */
  refused(c: DatagramCircuit, nowMs: number): void {
    c.destroy();
    if (this.closed) return;
    c.refusedAtMs = nowMs;
    let byPort = this.sessions.get(c.peerAddress);
    if (byPort === undefined) {
      byPort = new Map();
      this.sessions.set(c.peerAddress, byPort);
    }
    if (byPort.has(c.peerPort)) return;
    byPort.set(c.peerPort, c);
    this.count++;
    this.sweeper.add(c);
  }

  /** Ends every session and closes the socket. */
  close(callback: () => void): void {
    if (this.closed) return callback();
    this.closed = true;
    for (const byPort of this.sessions.values()) {
      for (const c of byPort.values()) {
        this.sweeper.delete(c);
        c.destroy();
      }
    }
    this.sessions.clear();
    this.count = 0;
    this.socket.close(callback);
  }
}
