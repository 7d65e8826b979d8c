/**
 * UDP records: how a UDP circuit carries datagrams in its byte stream.
 *
 * A circuit is a byte stream: the mux may cut a write into several DATA
 * frames, a transit pipe may merge or split chunks, and the receiving socket
 * may read any number of bytes at once. So each datagram travels as a record
 * whose length is written in front of it:
 *
 *   0               1               2
 *   +---------------+---------------+---------------------------
 *   |   payload length (u16 BE)     |  payload (length bytes) ...
 *   +---------------+---------------+---------------------------
 *
 * A UDP payload is at most 65535 bytes (65507 over IPv4, RFC 768 length
 * field minus headers), so every length fits the u16 and every u16 is a
 * valid length: the decoder has nothing to reject. A zero-length record is
 * an empty datagram, which UDP allows.
 *
 * Pure: no I/O, timers or logging. The router's UDP shells (udp.ts) write the
 * header and the payload as two writes (no copy of the payload) and feed
 * whatever the circuit delivers to a `RecordDecoder`.
 */

/** Bytes in front of each datagram. */
export const RECORD_HEADER_BYTES = 2;
/** Largest datagram a record can carry (the u16 limit; every UDP payload fits). */
export const MAX_DATAGRAM_BYTES = 0xffff;

/**
 * Writes the header of a `length`-byte datagram into `out` at `off`; returns
 * the bytes written (2). `length` above 65535 is a broken invariant (no UDP
 * socket delivers one) and throws.
 */
export function emitRecordHeader(length: number, out: Buffer, off: number): number {
  if (!(length >= 0 && length <= MAX_DATAGRAM_BYTES)) throw new RangeError(`datagram of ${length} bytes cannot be framed (limit ${MAX_DATAGRAM_BYTES})`);
  out[off] = length >>> 8;
  out[off + 1] = length & 0xff;
  return RECORD_HEADER_BYTES;
}

/**
 * A fresh header (owned) for a `length`-byte datagram, for stream writes that
 * keep a reference to what they are given. Small `allocUnsafe` buffers come
 * from Node's shared pool, so this costs no system allocation.
 *
 * @example
 * ```ts
 * circuit.push(recordHeader(msg.length));
 * circuit.push(msg);
 * ```
 */
export function recordHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  emitRecordHeader(length, h, 0);
  return h;
}

/** Receives the datagrams a decoder finds. */
export interface RecordHandler {
  /**
   * One datagram. `payload` is borrowed: a view into the chunk given to
   * `push` when the record lay within it, else a buffer of its own made for
   * a record that straddled chunks. Either way it is never reused by the
   * decoder, but a view pins its parent chunk: copy it to keep it long.
   */
  onRecord(payload: Buffer): void;
}

/**
 * Incremental record decoder: feed it the circuit's chunks in order, however
 * they were cut. A header split across chunks is kept as its first byte; a
 * payload split across chunks is copied once into a buffer of its exact size.
 * Records that lie within one chunk are handed on as views (no copy).
 */
export class RecordDecoder {
  /** First byte of a header cut after it; -1 when none. */
  private headerByte = -1;
  /** A record whose payload straddles chunks, being filled. */
  private partial: Buffer | undefined = undefined;
  private filled = 0;

  /** Decodes `chunk` (borrowed for the call), calling `handler.onRecord` once per complete record, in order. */
  push(chunk: Buffer, handler: RecordHandler): void {
    const n = chunk.length;
    let off = 0;
    const partial = this.partial;
    if (partial !== undefined) {
      const k = Math.min(partial.length - this.filled, n);
      chunk.copy(partial, this.filled, 0, k);
      this.filled += k;
      off = k;
      if (this.filled < partial.length) return;
      this.partial = undefined;
      this.filled = 0;
      handler.onRecord(partial);
    }
    while (off < n) {
      let len: number;
      if (this.headerByte >= 0) {
        len = (this.headerByte << 8) | chunk[off]!;
        this.headerByte = -1;
        off += 1;
      } else if (n - off >= RECORD_HEADER_BYTES) {
        len = (chunk[off]! << 8) | chunk[off + 1]!;
        off += RECORD_HEADER_BYTES;
      } else {
        this.headerByte = chunk[off]!;
        return;
      }
      if (n - off >= len) {
        handler.onRecord(chunk.subarray(off, off + len));
        off += len;
      } else {
        const p = Buffer.allocUnsafe(len);
        chunk.copy(p, 0, off, n);
        this.partial = p;
        this.filled = n - off;
        return;
      }
    }
  }

  /** True when no record is half-read: the stream may end here without losing part of a datagram. */
  get atBoundary(): boolean {
    return this.headerByte < 0 && this.partial === undefined;
  }
}
