/**
 * Out-of-order queue of one TCP connection (receive side of connection.ts):
 * segments that arrived beyond RCV.NXT, held until the gap before them is
 * filled (RFC 9293 §3.10.7.4, "segments with higher beginning sequence numbers
 * may be held"; RFC 5681 §4.2 asks for an immediate ACK on each).
 *
 * Held ranges are sorted and never overlap: a new segment keeps only the
 * bytes no held range covers (first arrival wins), each new piece copied once
 * into a fresh buffer because the segment's payload is borrowed. Memory is
 * bounded in bytes and in pieces; what would exceed either is refused whole
 * (the peer retransmits it).
 */
import { seqAdd, seqDiff, seqGt, seqLt } from './seq.js';

interface Piece {
  seq: number;
  data: Buffer;
}

export class Reassembly {
  private pieces: Piece[] = [];
  /** Bytes held (sum of piece lengths). */
  bytes = 0;
  /** Sequence number of a FIN seen out of order (the byte after the peer's last data), or -1. */
  finSeq = -1;

  /** Number of held pieces. */
  get count(): number {
    return this.pieces.length;
  }

  /**
   * Holds the bytes of [seq, seq + payload.length) not already held, and a FIN
   * right after them when `fin`. `payload` is borrowed (copied here).
   * Returns false (nothing stored) when the new pieces would exceed the limits.
   */
  insert(seq: number, payload: Buffer, fin: boolean, limitBytes: number, limitPieces: number): boolean {
    const end = seqAdd(seq, payload.length);
    // First pass: measure what is new, so a refused segment leaves nothing behind.
    let newBytes = 0;
    let newPieces = 0;
    let s = seq;
    let i = this.firstEndingAfter(seq);
    for (let j = i; j < this.pieces.length && seqLt(s, end); j++) {
      const p = this.pieces[j]!;
      if (seqGt(p.seq, s)) {
        const pieceEnd = seqLt(p.seq, end) ? p.seq : end;
        newBytes += seqDiff(pieceEnd, s);
        newPieces++;
      }
      const pEnd = seqAdd(p.seq, p.data.length);
      if (seqGt(pEnd, s)) s = pEnd;
    }
    if (seqLt(s, end)) {
      newBytes += seqDiff(end, s);
      newPieces++;
    }
    if (newBytes > 0 && (this.bytes + newBytes > limitBytes || this.pieces.length + newPieces > limitPieces)) return false;
    if (fin && this.finSeq === -1) this.finSeq = end;
    if (newBytes === 0) return true;
    // Second pass: copy and place the new pieces.
    s = seq;
    while (seqLt(s, end)) {
      const p = this.pieces[i];
      if (p === undefined || seqGt(p.seq, s)) {
        const pieceEnd = p !== undefined && seqLt(p.seq, end) ? p.seq : end;
        const from = seqDiff(s, seq);
        const data = Buffer.allocUnsafe(seqDiff(pieceEnd, s));
        payload.copy(data, 0, from, from + data.length);
        this.pieces.splice(i, 0, { seq: s, data });
        this.bytes += data.length;
        i++;
        s = pieceEnd;
        continue;
      }
      const pEnd = seqAdd(p.seq, p.data.length);
      if (seqGt(pEnd, s)) s = pEnd;
      i++;
    }
    return true;
  }

  /**
   * Takes the next bytes that start at or before `rcvNxt` and end after it
   * (trimmed to start at `rcvNxt`), dropping pieces wholly before it; null
   * when the head of the queue is still beyond a gap. The returned buffer is
   * owned by the caller.
   */
  take(rcvNxt: number): Buffer | null {
    while (this.pieces.length > 0) {
      const p = this.pieces[0]!;
      if (seqGt(p.seq, rcvNxt)) return null;
      this.pieces.shift();
      this.bytes -= p.data.length;
      const skip = seqDiff(rcvNxt, p.seq);
      if (skip < p.data.length) return skip === 0 ? p.data : p.data.subarray(skip);
    }
    return null;
  }

  /** Forgets everything. */
  clear(): void {
    this.pieces = [];
    this.bytes = 0;
    this.finSeq = -1;
  }

  /** Index of the first piece whose end is after `seq` (the first that can overlap or follow it). */
  private firstEndingAfter(seq: number): number {
    let i = 0;
    while (i < this.pieces.length) {
      const p = this.pieces[i]!;
      if (seqGt(seqAdd(p.seq, p.data.length), seq)) break;
      i++;
    }
    return i;
  }

  /** Test hook: the held ranges as [seq, length] pairs, in order. */
  ranges(): [number, number][] {
    return this.pieces.map((p) => [p.seq, p.data.length]);
  }
}
