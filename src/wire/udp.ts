/**
 * UDP datagram codec (RFC 768) for tun-mode UDP flows and the DNS server on
 * the TUN address: parse an IP payload, emit a whole IPv4 or IPv6 + UDP
 * packet into a caller's buffer.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-------------------------------+-------------------------------+
 *   |          Source Port          |       Destination Port        |
 *   +-------------------------------+-------------------------------+
 *   |            Length             |           Checksum            |
 *   +-------------------------------+-------------------------------+
 *   |                       payload (Length - 8)                    |
 *
 * Checksum rules: over IPv4 a zero checksum means "none computed" and is
 * accepted (RFC 768); over IPv6 it is mandatory, so zero is 'bad-checksum'
 * (RFC 8200 §8.1). A computed checksum of zero is sent as 0xffff (both).
 */
import { finishSum, ipv4PseudoSum, ipv6PseudoSum, onesSum, put16, u16 } from './checksum.js';
import { IPV4_HEADER_BYTES, IpProtocol, emitIpv4Header, type Ipv4Envelope, type Ipv4Packet, type WireDrop } from './ipv4.js';
import { IPV6_HEADER_BYTES, emitIpv6Header, type Ipv6Envelope, type Ipv6Packet } from './ipv6.js';

export const UDP_HEADER_BYTES = 8;

/** A UDP datagram: parsed (payload borrowed from the packet) or to emit. */
export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/**
 * Parses a UDP datagram from an IP payload. `pseudoSum` is the pseudo-header
 * sum computed with length 0; the parser adds the Length field. The Length
 * field must be 8 … `seg.length`; bytes past it are ignored (RFC 768 leaves
 * them undefined; Linux trims them the same way). `zeroChecksumOk` is true
 * over IPv4 only.
 */
export function parseUdp(seg: Buffer, pseudoSum: number, zeroChecksumOk: boolean, verifyChecksum = true): UdpDatagram | WireDrop {
  if (seg.length < UDP_HEADER_BYTES) return 'short';
  const len = u16(seg, 4);
  if (len < UDP_HEADER_BYTES || len > seg.length) return 'bad-length';
  if (verifyChecksum) {
    if (u16(seg, 6) === 0) {
      if (!zeroChecksumOk) return 'bad-checksum';
    } else if (finishSum(onesSum(seg, 0, len, pseudoSum + len)) !== 0) {
      return 'bad-checksum';
    }
  }
  return { srcPort: u16(seg, 0), dstPort: u16(seg, 2), payload: seg.subarray(UDP_HEADER_BYTES, len) };
}

/** {@link parseUdp} for the payload of a parsed IPv4 packet. */
export function parseUdpIpv4(ip: Ipv4Packet, verifyChecksum = true): UdpDatagram | WireDrop {
  return parseUdp(ip.payload, ipv4PseudoSum(ip.src, ip.dst, IpProtocol.UDP, 0), true, verifyChecksum);
}

/** {@link parseUdp} for the payload of a parsed IPv6 packet. */
export function parseUdpIpv6(ip: Ipv6Packet, verifyChecksum = true): UdpDatagram | WireDrop {
  return parseUdp(ip.payload, ipv6PseudoSum(ip.src, 0, ip.dst, 0, IpProtocol.UDP, 0), false, verifyChecksum);
}

/** Writes the UDP header, payload and checksum at `b[off]`; returns the UDP length. */
function writeDatagram(d: UdpDatagram, pseudoSum: number, b: Uint8Array, off: number): number {
  const len = UDP_HEADER_BYTES + d.payload.length;
  put16(b, off, d.srcPort);
  put16(b, off + 2, d.dstPort);
  put16(b, off + 4, len);
  put16(b, off + 6, 0);
  b.set(d.payload, off + UDP_HEADER_BYTES);
  const ck = finishSum(onesSum(b, off, len, pseudoSum + len));
  put16(b, off + 6, ck === 0 ? 0xffff : ck); // RFC 768: zero is sent as all ones
  return len;
}

/** Exact bytes {@link emitUdpIpv4} writes for a payload of `payloadBytes`. */
export function udpIpv4PacketBytes(payloadBytes: number): number {
  return IPV4_HEADER_BYTES + UDP_HEADER_BYTES + payloadBytes;
}

/** Exact bytes {@link emitUdpIpv6} writes for a payload of `payloadBytes`. */
export function udpIpv6PacketBytes(payloadBytes: number): number {
  return IPV6_HEADER_BYTES + UDP_HEADER_BYTES + payloadBytes;
}

/**
 * Writes a whole IPv4 + UDP packet at `buf[off]` (payload copied in, both
 * checksums); returns its length. The caller keeps the payload under
 * 65,507 bytes (IPv4 total length is 16 bits) and under the TUN MTU.
 *
 * @example
 *   const n = emitUdpIpv4(flow.ip, { srcPort: 53, dstPort: q.srcPort, payload: answer }, out, 0);
 */
export function emitUdpIpv4(ip: Ipv4Envelope, d: UdpDatagram, buf: Uint8Array, off: number): number {
  const udpLen = writeDatagram(d, ipv4PseudoSum(ip.src, ip.dst, IpProtocol.UDP, 0), buf, off + IPV4_HEADER_BYTES);
  emitIpv4Header(ip, IpProtocol.UDP, udpLen, buf, off);
  return IPV4_HEADER_BYTES + udpLen;
}

/** {@link emitUdpIpv4} for IPv6. */
export function emitUdpIpv6(ip: Ipv6Envelope, d: UdpDatagram, buf: Uint8Array, off: number): number {
  const udpLen = writeDatagram(d, ipv6PseudoSum(ip.src, 0, ip.dst, 0, IpProtocol.UDP, 0), buf, off + IPV6_HEADER_BYTES);
  emitIpv6Header(ip, IpProtocol.UDP, udpLen, buf, off);
  return IPV6_HEADER_BYTES + udpLen;
}
