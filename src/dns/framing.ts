/**
 * DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): each message is
 * preceded by its length as a 16-bit big-endian number. Shared by the
 * listener (client connections) and the forwarder (upstream connections).
 *
 *   +--------+--------+----------------------------+
 *   |  length (bytes) |  DNS message (length bytes) |
 *   +--------+--------+----------------------------+
 *
 * The reader keeps a list of received chunks and copies each message out once
 * when it is complete, so a message split across reads, or many messages in
 * one read (pipelining, RFC 7766 §6.2.1.1), need no Buffer.concat of the stream.
 */
import type { Socket } from 'node:net';

/** Bytes of the length prefix. */
export const LENGTH_PREFIX_BYTES = 2;

/** Reassembles length-prefixed messages from a byte stream. */
export class MessageReader {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private buffered = 0;

  /** Bytes received but not yet returned as messages. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Adds a chunk (borrowed: kept by reference until its bytes are consumed). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next whole message (owned copy), or undefined until more bytes arrive. */
  next(): Buffer | undefined {
    if (this.buffered < LENGTH_PREFIX_BYTES) return undefined;
    const length = this.byteAt(0) * 256 + this.byteAt(1);
    if (this.buffered < LENGTH_PREFIX_BYTES + length) return undefined;
    this.skip(LENGTH_PREFIX_BYTES);
    const msg = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.chunks[0]!;
      const n = Math.min(length - filled, chunk.length - this.head);
      chunk.copy(msg, filled, this.head, this.head + n);
      filled += n;
      this.skip(n);
    }
    return msg;
  }

  private byteAt(index: number): number {
    let i = this.head + index;
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i]!;
      i -= chunk.length;
    }
    return 0;
  }

  private skip(bytes: number): void {
    this.buffered -= bytes;
    let left = bytes;
    while (left > 0) {
      const room = this.chunks[0]!.length - this.head;
      if (left < room) {
        this.head += left;
        return;
      }
      left -= room;
      this.chunks.shift();
      this.head = 0;
    }
  }
}

/**
 * Writes one message with its length prefix, both handed to the kernel together.
 * Returns the socket's `write` result (false: wait for 'drain' before more).
 */
export function writeMessage(socket: Socket, msg: Buffer): boolean {
  const prefix = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES);
  prefix.writeUInt16BE(msg.length, 0);
  socket.cork();
  socket.write(prefix);
  const ok = socket.write(msg);
  socket.uncork();
  return ok;
}
