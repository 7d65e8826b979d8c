/**
 * A pair of connected in-memory duplex streams: what is written to one is
 * read from the other. A transit router splices two circuits with it (the
 * circuit from the previous hop is accepted with one end, the circuit to the
 * next hop is dialed with the other), so both circuits keep their own credit
 * flow control and backpressure crosses the router: a write is acknowledged
 * only when the other side's reader has room (push() returned true) or asks
 * for more (_read). Buffers pass by reference: no copies.
 */
import { Duplex } from 'node:stream';

class PipeEnd extends Duplex {
  other!: PipeEnd;
  /** Tells the mux this end is in memory: it gets DATA bodies in one piece (mux.ts onDataPieces). */
  readonly inMemory = true;
  /** The write callback waiting for the other side's reader to want more. */
  private waiting: (() => void) | undefined;

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.other.push(chunk)) callback();
    else this.other.waiting = callback;
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.other.push(null);
    callback();
  }

  override _read(): void {
    const w = this.waiting;
    if (w !== undefined) {
      this.waiting = undefined;
      w();
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // An end torn down (not finished cleanly) takes its twin with it, as a TCP reset would.
    // After a clean finish in both directions the twin may still hold data for its link: leave it.
    const clean = this.readableEnded && this.writableFinished;
    if (!clean && !this.other.destroyed) this.other.destroy();
    callback(err);
  }

  /** Sockets have it; in memory there is nothing to delay. */
  setNoDelay(): this {
    return this;
  }
}

export function duplexPair(): [PipeEnd, PipeEnd] {
  const a = new PipeEnd();
  const b = new PipeEnd();
  a.other = b;
  b.other = a;
  return [a, b];
}
