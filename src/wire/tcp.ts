/**
 * TCP segment codec (RFC 9293 §3.1) between the IP codecs (ipv4.ts,
 * ipv6.ts) and the TCP state machine (src/stack/tcp). Parsing turns an IP
 * payload into the `TcpSegmentIn` contract of src/stack/tcp/segment.ts;
 * emitting writes a whole IP + TCP packet for a `TcpSegmentOut` into a
 * caller's buffer (a pooled MTU buffer), checksums included.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-------------------------------+-------------------------------+
 *   |          Source Port          |       Destination Port        |
 *   +-------------------------------+-------------------------------+
 *   |                        Sequence Number                        |
 *   +---------------------------------------------------------------+
 *   |                    Acknowledgment Number                      |
 *   +-------+-------+---------------+-------------------------------+
 *   | Offset| Rsrvd |C E U A P R S F|            Window             |
 *   +-------+-------+---------------+-------------------------------+
 *   |           Checksum            |        Urgent Pointer         |
 *   +-------------------------------+-------------------------------+
 *   |              Options (Offset > 5), then the payload           |
 *
 * Options understood (RFC 9293 §3.2, RFC 7323, RFC 2018): EOL (0), NOP (1),
 * MSS (2), window scale (3), SACK-permitted (4), timestamps (8). Others are
 * skipped by their length. A known option with the wrong length is ignored,
 * as Linux does; an option whose length is < 2 or runs past the header makes
 * the whole segment a 'bad-options' drop (RFC 9293 §3.2, MUST-7: handle an
 * illegal option length without crashing; we drop rather than reset).
 *
 * The urgent pointer is neither parsed nor sent (RFC 9293 §3.8.5: new
 * applications SHOULD NOT use it; the state machine treats URG data as data).
 */
import type { TcpOptions, TcpSegmentIn, TcpSegmentOut } from '../stack/tcp/segment.js';
import { finishSum, foldSum, ipv4PseudoSum, ipv6PseudoSum, onesSum, put16, put32, u16, u32 } from './checksum.js';
import { IPV4_HEADER_BYTES, IpProtocol, emitIpv4Header, type Ipv4Envelope, type Ipv4Packet, type WireDrop } from './ipv4.js';
import { IPV6_HEADER_BYTES, emitIpv6Header, type Ipv6Envelope, type Ipv6Packet } from './ipv6.js';

export const TCP_HEADER_BYTES = 20;
/** Largest shift a window scale option may carry (RFC 7323 §2.3). */
export const TCP_MAX_WINDOW_SCALE = 14;

const OPT_EOL = 0;
const OPT_NOP = 1;
const OPT_MSS = 2;
const OPT_WSCALE = 3;
const OPT_SACK_PERMITTED = 4;
const OPT_TIMESTAMPS = 8;

/** Reads the options at `b[start, end)` into `o`; false when one is malformed. */
function parseOptions(b: Buffer, start: number, end: number, o: TcpOptions): boolean {
  let i = start;
  while (i < end) {
    const kind = b[i]!;
    if (kind === OPT_EOL) break;
    if (kind === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) return false;
    switch (kind) {
      case OPT_MSS:
        if (len === 4) o.mss = u16(b, i + 2);
        break;
      case OPT_WSCALE:
        // RFC 7323 §2.3: a shift above 14 is logged and used as 14.
        if (len === 3) o.windowScale = Math.min(b[i + 2]!, TCP_MAX_WINDOW_SCALE);
        break;
      case OPT_SACK_PERMITTED:
        if (len === 2) o.sackPermitted = true;
        break;
      case OPT_TIMESTAMPS:
        if (len === 10) o.timestamps = [u32(b, i + 2), u32(b, i + 6)];
        break;
      default:
        break; // unknown (SACK blocks, MD5, TFO, …): skipped by its length
    }
    i += len;
  }
  return true;
}

/**
 * Parses a TCP segment (an IP payload). `pseudoSum` is the pseudo-header sum
 * computed with length 0 (`ipv4PseudoSum(src, dst, 6, 0)` or the IPv6 one):
 * the parser adds the segment length itself. With `verifyChecksum` false the
 * checksum is not looked at (fuzzing; packets whose checksum the kernel left
 * partial, see vnet.ts). Options are parsed on every segment, SYN or not; the
 * state machine decides which to honour.
 *
 * `payload` in the result is borrowed from `seg`.
 */
export function parseTcp(seg: Buffer, pseudoSum: number, verifyChecksum = true): TcpSegmentIn | WireDrop {
  const len = seg.length;
  if (len < TCP_HEADER_BYTES) return 'short';
  const headerBytes = (seg[12]! >>> 4) << 2;
  if (headerBytes < TCP_HEADER_BYTES || headerBytes > len) return 'bad-header-length';
  if (verifyChecksum && finishSum(onesSum(seg, 0, len, pseudoSum + len)) !== 0) return 'bad-checksum';
  const options: TcpOptions = {};
  if (headerBytes > TCP_HEADER_BYTES && !parseOptions(seg, TCP_HEADER_BYTES, headerBytes, options)) return 'bad-options';
  return {
    srcPort: u16(seg, 0),
    dstPort: u16(seg, 2),
    seq: u32(seg, 4),
    ack: u32(seg, 8),
    flags: seg[13]!,
    window: u16(seg, 14),
    options,
    payload: seg.subarray(headerBytes),
  };
}

/** {@link parseTcp} for the payload of a parsed IPv4 packet. */
export function parseTcpIpv4(ip: Ipv4Packet, verifyChecksum = true): TcpSegmentIn | WireDrop {
  return parseTcp(ip.payload, ipv4PseudoSum(ip.src, ip.dst, IpProtocol.TCP, 0), verifyChecksum);
}

/** {@link parseTcp} for the payload of a parsed IPv6 packet. */
export function parseTcpIpv6(ip: Ipv6Packet, verifyChecksum = true): TcpSegmentIn | WireDrop {
  return parseTcp(ip.payload, ipv6PseudoSum(ip.src, 0, ip.dst, 0, IpProtocol.TCP, 0), verifyChecksum);
}

// ---------------------------------------------------------------------------
// Emit
//
// Option layout we send, each padded to 4 bytes with NOPs so every option's
// fields are aligned (RFC 7323 Appendix A's suggested layout for timestamps):
//   MSS             02 04 mm mm
//   window scale    01 03 03 ss
//   SACK permitted  01 01 04 02
//   timestamps      01 01 08 0a vv vv vv vv ee ee ee ee

/** Bytes the options of `o` take on the wire (a multiple of 4, at most 24). */
export function tcpOptionsBytes(o: TcpOptions | undefined): number {
  if (o === undefined) return 0;
  let n = 0;
  if (o.mss !== undefined) n += 4;
  if (o.windowScale !== undefined) n += 4;
  if (o.sackPermitted === true) n += 4;
  if (o.timestamps !== undefined) n += 12;
  return n;
}

/** Writes the options of `o` at `b[i]`; returns the index after them. */
function writeOptions(o: TcpOptions, b: Uint8Array, i: number): number {
  if (o.mss !== undefined) {
    b[i] = OPT_MSS;
    b[i + 1] = 4;
    put16(b, i + 2, o.mss);
    i += 4;
  }
  if (o.windowScale !== undefined) {
    b[i] = OPT_NOP;
    b[i + 1] = OPT_WSCALE;
    b[i + 2] = 3;
    b[i + 3] = Math.min(o.windowScale, TCP_MAX_WINDOW_SCALE);
    i += 4;
  }
  if (o.sackPermitted === true) {
    b[i] = OPT_NOP;
    b[i + 1] = OPT_NOP;
    b[i + 2] = OPT_SACK_PERMITTED;
    b[i + 3] = 2;
    i += 4;
  }
  if (o.timestamps !== undefined) {
    b[i] = OPT_NOP;
    b[i + 1] = OPT_NOP;
    b[i + 2] = OPT_TIMESTAMPS;
    b[i + 3] = 10;
    put32(b, i + 4, o.timestamps[0]);
    put32(b, i + 8, o.timestamps[1]);
    i += 12;
  }
  return i;
}

/** Bytes of the TCP segment (header, options, payload) for `seg`. */
export function tcpSegmentBytes(seg: TcpSegmentOut): number {
  return TCP_HEADER_BYTES + tcpOptionsBytes(seg.options) + (seg.payload === undefined ? 0 : seg.payload.length);
}

/**
 * Writes the TCP segment at `b[off]` and its checksum, given the pseudo-header
 * sum without length; returns the segment length. With `partial`, the
 * checksum field gets the folded pseudo-header sum alone, uncomplemented:
 * what a virtio_net_hdr NEEDS_CSUM packet carries for the kernel to finish.
 */
function writeSegment(seg: TcpSegmentOut, pseudoSum: number, b: Uint8Array, off: number, partial: boolean): number {
  const optBytes = tcpOptionsBytes(seg.options);
  const headerBytes = TCP_HEADER_BYTES + optBytes;
  put16(b, off, seg.srcPort);
  put16(b, off + 2, seg.dstPort);
  put32(b, off + 4, seg.seq);
  put32(b, off + 8, seg.ack);
  b[off + 12] = (headerBytes >>> 2) << 4;
  b[off + 13] = seg.flags;
  put16(b, off + 14, seg.window);
  put32(b, off + 16, 0); // checksum (filled below), urgent pointer 0
  if (optBytes > 0) writeOptions(seg.options!, b, off + TCP_HEADER_BYTES);
  let len = headerBytes;
  if (seg.payload !== undefined && seg.payload.length > 0) {
    b.set(seg.payload, off + headerBytes);
    len += seg.payload.length;
  }
  put16(b, off + 16, partial ? foldSum(pseudoSum + len) : finishSum(onesSum(b, off, len, pseudoSum + len)));
  return len;
}

/** Exact bytes {@link emitTcpIpv4} writes for `seg`: size the buffer with this. */
export function tcpIpv4PacketBytes(seg: TcpSegmentOut): number {
  return IPV4_HEADER_BYTES + tcpSegmentBytes(seg);
}

/** Exact bytes {@link emitTcpIpv6} writes for `seg`. */
export function tcpIpv6PacketBytes(seg: TcpSegmentOut): number {
  return IPV6_HEADER_BYTES + tcpSegmentBytes(seg);
}

/**
 * Writes a whole IPv4 + TCP packet for `seg` at `buf[off]`: IP header, TCP
 * header, options, the payload copied in, both checksums. Returns the packet
 * length; `buf` must have {@link tcpIpv4PacketBytes} bytes from `off`.
 *
 * `partialChecksum`: for a TUN with IFF_VNET_HDR and TUNSETOFFLOAD, leave
 * the TCP checksum to the kernel (it is not summed here, which saves a pass
 * over large payloads) and send the packet behind the header
 * `tcpOffloadVnetHeader` (vnet.ts) returns. The IPv4 header checksum is
 * always complete.
 *
 * @example
 *   const n = emitTcpIpv4(flow.ip, seg, pooled, 0);
 *   tun.write(pooled.subarray(0, n));
 */
export function emitTcpIpv4(ip: Ipv4Envelope, seg: TcpSegmentOut, buf: Uint8Array, off: number, partialChecksum = false): number {
  const tcpLen = writeSegment(seg, ipv4PseudoSum(ip.src, ip.dst, IpProtocol.TCP, 0), buf, off + IPV4_HEADER_BYTES, partialChecksum);
  emitIpv4Header(ip, IpProtocol.TCP, tcpLen, buf, off);
  return IPV4_HEADER_BYTES + tcpLen;
}

/** {@link emitTcpIpv4} for IPv6 (no header checksum; the pseudo-header covers the addresses). */
export function emitTcpIpv6(ip: Ipv6Envelope, seg: TcpSegmentOut, buf: Uint8Array, off: number, partialChecksum = false): number {
  const tcpLen = writeSegment(seg, ipv6PseudoSum(ip.src, 0, ip.dst, 0, IpProtocol.TCP, 0), buf, off + IPV6_HEADER_BYTES, partialChecksum);
  emitIpv6Header(ip, IpProtocol.TCP, tcpLen, buf, off);
  return IPV6_HEADER_BYTES + tcpLen;
}
