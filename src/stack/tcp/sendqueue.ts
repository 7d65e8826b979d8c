/**
 * The send buffer of one TCP connection: the bytes from SND.UNA onwards
 * (sent-but-unacknowledged, then not-yet-sent), kept as the chunks the app
 * wrote (a chunk list, never Buffer.concat). connection.ts reads segment
 * payloads out of it by offset from SND.UNA and drops acknowledged bytes from
 * the front.
 *
 *     chunks[head]          chunks[head+1]    …       chunks[n-1]
 *    +----------+----------+------------------+ … +-----------+
 *    | acked    |  from SND.UNA (offset 0) → … … … end (bytes)  |
 *    +----------+----------+------------------+ … +-----------+
 *     headSkip ^
 *
 * Ownership: chunks are kept by reference (owned by the queue from `push`
 * until acknowledged); the queue never writes into them, so a subarray handed
 * out for a segment stays valid even after the bytes are acknowledged.
 */

export class SendQueue {
  private chunks: Buffer[] = [];
  /** Index of the first live chunk in `chunks`. */
  private head = 0;
  /** Bytes of chunks[head] already acknowledged. */
  private headSkip = 0;
  /** Live bytes (from SND.UNA to the end of the last chunk). */
  bytes = 0;
  /** Read cursor: chunk index and the offset (from SND.UNA) where that chunk's live bytes start. Sends are sequential, so lookups are O(1). */
  private curIdx = 0;
  private curStart = 0;

  /** Appends `buf` (owned: must not be modified afterwards). Empty buffers are ignored. */
  push(buf: Buffer): void {
    if (buf.length === 0) return;
    this.chunks.push(buf);
    this.bytes += buf.length;
  }

  /** Drops `n` acknowledged bytes from the front (n ≤ bytes). */
  drop(n: number): void {
    if (n > this.bytes) n = this.bytes;
    this.bytes -= n;
    this.curStart -= n;
    while (n > 0) {
      const c = this.chunks[this.head]!;
      const left = c.length - this.headSkip;
      if (n < left) {
        this.headSkip += n;
        break;
      }
      n -= left;
      this.chunks[this.head] = EMPTY; // release the reference now, not at compaction
      this.head++;
      this.headSkip = 0;
    }
    if (this.curIdx < this.head || this.curStart < 0) {
      this.curIdx = this.head;
      this.curStart = 0;
    }
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
      this.curIdx = 0;
      this.curStart = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
      // Compact now and then so the array does not grow without bound.
      this.chunks.splice(0, this.head);
      this.curIdx -= this.head;
      this.head = 0;
    }
  }

  /**
   * Bytes [offset, offset+len) counted from SND.UNA, with offset+len ≤ bytes.
   * A view into the chunk when they lie in one; a fresh copy when the range
   * spans chunks (only at chunk boundaries, so at most once per written chunk
   * for large writes).
   */
  read(offset: number, len: number): Buffer {
    if (offset < this.curStart) {
      this.curIdx = this.head;
      this.curStart = 0;
    }
    // Walk forward to the chunk holding `offset`.
    let idx = this.curIdx;
    let start = this.curStart;
    for (;;) {
      const live = this.chunks[idx]!.length - (idx === this.head ? this.headSkip : 0);
      if (offset < start + live) break;
      start += live;
      idx++;
    }
    this.curIdx = idx;
    this.curStart = start;
    const first = this.chunks[idx]!;
    const skip0 = idx === this.head ? this.headSkip : 0;
    const at = skip0 + (offset - start);
    if (at + len <= first.length) return first.subarray(at, at + len);
    const out = Buffer.allocUnsafe(len);
    let copied = first.copy(out, 0, at);
    let i = idx + 1;
    while (copied < len) {
      const c = this.chunks[i++]!;
      copied += c.copy(out, copied, 0, Math.min(c.length, len - copied));
    }
    return out;
  }

  /** Forgets everything (abort). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.headSkip = 0;
    this.bytes = 0;
    this.curIdx = 0;
    this.curStart = 0;
  }
}

const EMPTY = Buffer.alloc(0);
