/**
 * The contract between the TCP codec (src/wire/tcp.ts) and the TCP state
 * machine (src/stack/tcp): a parsed segment as the machine sees it, and a
 * segment the machine asks to send. Plain data, no methods, so both sides can
 * be tested and fuzzed apart.
 *
 * Sequence and acknowledgment numbers are unsigned 32-bit values held in JS
 * numbers (0 … 2^32-1); compare them only with the modular helpers in
 * `seq.ts` (RFC 793 §3.3, RFC 1982).
 */

/** TCP header flag bits (RFC 9293 §3.1). Values are wire constants. */
export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/** Options the stack understands; absent means the option was not present. */
export interface TcpOptions {
  /** Maximum segment size (kind 2, SYN only). */
  mss?: number;
  /** Window scale shift count (kind 3, SYN only), 0–14 (larger values are clamped to 14, RFC 7323 §2.3). */
  windowScale?: number;
  /** SACK permitted (kind 4, SYN only). Parsed so it can be ignored knowingly; the stack does not do SACK. */
  sackPermitted?: boolean;
  /** Timestamps (kind 8): [TSval, TSecr]. Parsed; the stack does not negotiate them. */
  timestamps?: [number, number];
}

/**
 * A received segment, as decoded from an IP packet.
 * `payload` is borrowed: a subarray of the packet buffer, valid until the
 * handler returns; the state machine copies (or keeps by reference only when
 * the I/O shell says the buffer is owned) what it queues.
 */
export interface TcpSegmentIn {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Bitwise OR of TcpFlags. */
  flags: number;
  /** Raw 16-bit window field (not yet scaled). */
  window: number;
  options: TcpOptions;
  payload: Buffer;
}

/** A segment the state machine wants sent; the I/O shell adds the IP header and checksums. */
export interface TcpSegmentOut {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  /** Raw 16-bit window field (already scaled down by our shift). */
  window: number;
  /** Options to emit (only on SYN / SYN-ACK in practice). */
  options?: TcpOptions;
  /** Payload: may be a subarray of the connection's send buffer; valid until the next call into the machine. */
  payload?: Buffer;
  /**
   * Set when the payload is longer than one MSS (TSO, `tsoMaxBytes`): the
   * MSS the kernel must cut it into (virtio_net_hdr gso_size).
   */
  gsoSize?: number;
}
