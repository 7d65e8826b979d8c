/**
 * Link frames: the framing of a TLS link between two routers, on which many
 * circuits are multiplexed. Pure codec: no I/O, no timers, no logging.
 *
 * Every frame is a fixed 12-byte header followed by its body:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +---------------+---------------+-------------------------------+
 *   |  version = 1  |     type      |             flags             |
 *   +---------------+---------------+-------------------------------+
 *   |                          circuit id                           |
 *   +---------------------------------------------------------------+
 *   |                          body length                          |
 *   +---------------------------------------------------------------+
 *   |  body (body length bytes): raw payload for DATA, MessagePack  |
 *   |  for control frames, 4-byte credit for CREDIT                 |
 *
 * All integers are big-endian (network order), so the codec is the same on
 * little- and big-endian CPUs (MIPS routers are big-endian). Circuit id 0 is
 * the link itself (HELLO, PING, CLOSE, ANNOUNCE).
 *
 * Decoding never throws on bad input: it reports a close code (sent to the
 * peer in CLOSE before the link is dropped) and stops.
 */

export const FRAME_VERSION = 1;
export const HEADER_BYTES = 12;
/** Default largest body accepted; links negotiate nothing larger. */
export const DEFAULT_MAX_BODY_BYTES = 256 * 1024;

/** Frame types. Values are wire constants: never renumber. */
export const FrameType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  PING: 0x03,
  PONG: 0x04,
  CLOSE: 0x05,
  ANNOUNCE: 0x06,
  DIAL: 0x10,
  DIAL_OK: 0x11,
  DIAL_FAIL: 0x12,
  DATA: 0x13,
  CREDIT: 0x14,
  FIN: 0x15,
  RESET: 0x16,
  /** Control link, router → controller: `{known?}` the revision it holds; asks for what it lacks. */
  POLICY_SYNC: 0x20,
  /** Control link, controller → router: `{full}` or `{delta}`, a signed JWS (src/policy/signed.ts). */
  POLICY: 0x21,
  /** Control link, router → controller: `{responses}`, the router host's posture (OpenZiti postureResponse shapes). */
  POSTURE: 0x22,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

const KNOWN_TYPES: readonly boolean[] = (() => {
  const t: boolean[] = new Array<boolean>(256).fill(false);
  for (const v of Object.values(FrameType)) t[v] = true;
  return t;
})();

/** Flags defined so far; every other bit must be zero (room for later versions). */
export const FrameFlags = {
  /** DATA: the sender will send no more data on this circuit after this frame. */
  FIN: 0x0001,
  /**
   * DATA: this frame used the sender's last credit (it had to stop). Sent
   * only to a peer that offered a growing window for the circuit
   * (`maxWindow` in DIAL / DIAL_OK): older routers close a link on flags
   * they do not know.
   */
  BLOCKED: 0x0002,
} as const;
const KNOWN_FLAGS = FrameFlags.FIN | FrameFlags.BLOCKED;

/** Link close codes, sent in CLOSE frames and reported locally. Wire constants. */
export const CloseCode = {
  NORMAL: 0,
  PROTOCOL_VERSION: 1,
  FRAME_TOO_LARGE: 2,
  UNKNOWN_TYPE: 3,
  BAD_FLAGS: 4,
  MALFORMED_BODY: 5,
  AUTH_FAILED: 6,
  KEEPALIVE_TIMEOUT: 7,
  FLOW_CONTROL: 8,
  SHUTDOWN: 9,
} as const;
export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * What the decoder calls. `body` is borrowed: a view into the chunk that was
 * pushed (zero-copy) or into a buffer made for a body that straddled chunks;
 * it stays valid as long as the caller keeps a reference (it is never
 * reused by the decoder), but pins its parent chunk — copy small pieces that
 * must live long.
 */
export interface FrameHandler {
  onFrame(type: number, flags: number, circuitId: number, body: Buffer): void;
  /**
   * Optional: a DATA body that straddles chunks, as views of those chunks in
   * order (borrowed, like onFrame's body; `length` is their total), instead
   * of one copied Buffer. A handler that writes the body to a socket
   * passes the pieces on with no copy at all.
   */
  onDataPieces?(flags: number, circuitId: number, pieces: Buffer[], length: number): void;
  onProtocolError(code: CloseCodeValue, detail: string): void;
}

/** Writes a frame header at `off` in `buf`; returns the bytes written (12). */
export function writeHeader(buf: Buffer, off: number, type: number, flags: number, circuitId: number, bodyLength: number): number {
  buf[off] = FRAME_VERSION;
  buf[off + 1] = type;
  buf.writeUInt16BE(flags, off + 2);
  buf.writeUInt32BE(circuitId >>> 0, off + 4);
  buf.writeUInt32BE(bodyLength >>> 0, off + 8);
  return HEADER_BYTES;
}

/** A fresh header buffer (owned by the caller). */
export function header(type: number, flags: number, circuitId: number, bodyLength: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(b, 0, type, flags, circuitId, bodyLength);
  return b;
}

/**
 * Bodies with room for a frame header in front of them. The decoder copies a
 * body that straddles chunks into a buffer of its own, 12 bytes longer and
 * registered here, so a transit router can forward that body by writing the
 * next hop's header into the spare bytes and handing the socket one
 * contiguous buffer: Node's TLS socket copies the pieces of a corked
 * header + body write into one buffer before encrypting (a memmove and a
 * malloc per frame). Keyed by the ArrayBuffer, so a body cut down by
 * subarray() (whose leading bytes may be someone else's data) never matches.
 */
const HEADROOM = new WeakSet<ArrayBufferLike>();

/** An owned body of `n` bytes with registered frame headroom (see {@link withHeader}). */
export function allocWithHeadroom(n: number): Buffer {
  const whole = Buffer.allocUnsafeSlow(HEADER_BYTES + n);
  HEADROOM.add(whole.buffer);
  return whole.subarray(HEADER_BYTES);
}

/** The pieces of a body (FrameHandler.onDataPieces) copied into one owned body with frame headroom. */
export function joinWithHeadroom(pieces: readonly Buffer[], length: number): Buffer {
  const body = allocWithHeadroom(length);
  let off = 0;
  for (const p of pieces) off += p.copy(body, off);
  return body;
}

/**
 * The frame `header + body` as one buffer, written in the body's headroom
 * when it has registered headroom (made by {@link allocWithHeadroom}, and
 * the whole of it), else undefined. Writes over the 12 bytes before the
 * body: only the body's single sender may call it.
 */
export function withHeader(body: Buffer, type: number, flags: number, circuitId: number): Buffer | undefined {
  const ab = body.buffer;
  if (body.byteOffset !== HEADER_BYTES || body.byteLength + HEADER_BYTES !== ab.byteLength || !HEADROOM.has(ab)) return undefined;
  const frame = Buffer.from(ab, 0, ab.byteLength);
  writeHeader(frame, 0, type, flags, circuitId, body.length);
  return frame;
}

/** Header and body in one new buffer: for control frames and tests, not for DATA. */
export function encodeFrame(type: number, flags: number, circuitId: number, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  writeHeader(b, 0, type, flags, circuitId, body.length);
  body.copy(b, HEADER_BYTES);
  return b;
}

/**
 * Streaming decoder. Keeps a list of pending chunks instead of
 * concatenating them; a header that straddles chunks is copied into a 12-byte
 * scratch buffer, a body that straddles chunks is copied once into a buffer
 * of its own, with room for a header in front ({@link allocWithHeadroom}). After a protocol error it ignores further input.
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  /** Offset of the first unread byte in chunks[0]. */
  private head = 0;
  private buffered = 0;
  private failed = false;
  private readonly scratch = Buffer.alloc(HEADER_BYTES);

  constructor(private readonly maxBodyBytes: number = DEFAULT_MAX_BODY_BYTES) {}

  /** Bytes received but not yet decoded. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Feeds one chunk (borrowed until its frames are delivered) and delivers every complete frame. */
  push(chunk: Buffer, handler: FrameHandler): void {
    if (this.failed || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= HEADER_BYTES) {
      const h = this.peekHeader();
      const version = h[0]!;
      const type = h[1]!;
      const flags = h.readUInt16BE(2);
      const circuitId = h.readUInt32BE(4);
      const length = h.readUInt32BE(8);
      if (version !== FRAME_VERSION) return this.fail(handler, CloseCode.PROTOCOL_VERSION, `frame version ${version}, expected ${FRAME_VERSION}`);
      if (!KNOWN_TYPES[type]) return this.fail(handler, CloseCode.UNKNOWN_TYPE, `unknown frame type 0x${type.toString(16)}`);
      if ((flags & ~KNOWN_FLAGS) !== 0) return this.fail(handler, CloseCode.BAD_FLAGS, `unknown flags 0x${flags.toString(16)}`);
      if (length > this.maxBodyBytes) return this.fail(handler, CloseCode.FRAME_TOO_LARGE, `frame body of ${length} bytes exceeds ${this.maxBodyBytes}`);
      if (this.buffered < HEADER_BYTES + length) return;
      this.consume(HEADER_BYTES);
      if (length > 0 && type === FrameType.DATA && handler.onDataPieces !== undefined && this.chunks[0]!.length - this.head < length) {
        handler.onDataPieces(flags, circuitId, this.takePieces(length), length);
      } else {
        handler.onFrame(type, flags, circuitId, this.take(length));
      }
      if (this.failed) return;
    }
  }

  /** Stops decoding (the link is closing); drops what is buffered. */
  reset(): void {
    this.chunks.length = 0;
    this.head = 0;
    this.buffered = 0;
  }

  private fail(handler: FrameHandler, code: CloseCodeValue, detail: string): void {
    this.failed = true;
    this.reset();
    handler.onProtocolError(code, detail);
  }

  /** The next 12 bytes, without consuming them: a view when they are contiguous. */
  private peekHeader(): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= HEADER_BYTES) return first.subarray(this.head, this.head + HEADER_BYTES);
    let copied = 0;
    let off = this.head;
    for (let i = 0; copied < HEADER_BYTES; i++) {
      const c = this.chunks[i]!;
      const n = Math.min(c.length - off, HEADER_BYTES - copied);
      c.copy(this.scratch, copied, off, off + n);
      copied += n;
      off = 0;
    }
    return this.scratch;
  }

  private consume(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const first = this.chunks[0]!;
      const avail = first.length - this.head;
      if (avail > n) {
        this.head += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** Removes and returns the next `n` bytes: a view if contiguous, else one copy (with frame headroom). */
  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n);
      this.consume(n);
      return view;
    }
    const out = allocWithHeadroom(n);
    let copied = 0;
    while (copied < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.head, n - copied);
      c.copy(out, copied, this.head, this.head + k);
      copied += k;
      this.consume(k);
    }
    return out;
  }

  /** Removes the next `n` bytes (n > 0) as views of the chunks that hold them. */
  private takePieces(n: number): Buffer[] {
    const pieces: Buffer[] = [];
    let taken = 0;
    while (taken < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.head, n - taken);
      pieces.push(c.subarray(this.head, this.head + k));
      taken += k;
      this.consume(k);
    }
    return pieces;
  }
}

const EMPTY = Buffer.alloc(0);

/** CREDIT body: a 4-byte big-endian number of bytes the receiver grants. */
export function encodeCredit(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(bytes >>> 0, 0);
  return b;
}

export function decodeCredit(body: Buffer): number | undefined {
  return body.length === 4 ? body.readUInt32BE(0) : undefined;
}
