/**
 * ICMP codec for tun mode: ICMPv4 (RFC 792) parse, echo replies for
 * intercepted addresses, and destination-unreachable errors (RFC 792, RFC
 * 1812 §4.3.2.3) the stack sends for refused flows; ICMPv6 echo (RFC 4443
 * §4) in the same shape.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +---------------+---------------+-------------------------------+
 *   |     Type      |     Code      |           Checksum            |
 *   +---------------+---------------+-------------------------------+
 *   |  echo: Identifier, Sequence   /  unreachable: unused, MTU     |
 *   +---------------------------------------------------------------+
 *   |  echo: data   /  errors: original IP header + first 8 bytes   |
 *
 * The ICMPv4 checksum covers the message only; the ICMPv6 one adds the
 * IPv6 pseudo-header (RFC 4443 §2.3).
 */
import { checksumUpdate16, finishSum, internetChecksum, ipv6PseudoSum, onesSum, put16, put32, u16, u32 } from './checksum.js';
import {
  IPV4_DEFAULT_TTL, IPV4_HEADER_BYTES, IpProtocol, emitIpv4Header,
  type Ipv4Envelope, type Ipv4Packet, type WireDrop,
} from './ipv4.js';
import { IPV6_DEFAULT_HOP_LIMIT, IPV6_HEADER_BYTES, emitIpv6Header, type Ipv6Packet } from './ipv6.js';

export const ICMP_HEADER_BYTES = 8;

/** ICMPv4 types used here (RFC 792; IANA "ICMP Type Numbers"). */
export const Icmpv4Type = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  SOURCE_QUENCH: 4,
  REDIRECT: 5,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
  PARAMETER_PROBLEM: 12,
} as const;

/** Destination-unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1). */
export const Icmpv4Unreachable = {
  NET: 0,
  HOST: 1,
  PROTOCOL: 2,
  PORT: 3,
  /** Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191 §4). */
  FRAG_NEEDED: 4,
  /** Communication administratively prohibited (RFC 1812 §5.2.7.1): a policy refusal. */
  ADMIN_PROHIBITED: 13,
} as const;

/** ICMPv6 echo types (RFC 4443 §4.1, §4.2). */
export const Icmpv6Type = {
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
} as const;

/** A parsed ICMP message (v4 or v6). */
export interface IcmpMessage {
  type: number;
  code: number;
  /** Bytes 4–7 as an unsigned 32-bit number: identifier and sequence for echo, next-hop MTU for FRAG_NEEDED. */
  rest: number;
  /** Echo identifier (high half of `rest`). */
  id: number;
  /** Echo sequence number (low half of `rest`). */
  sequence: number;
  /** borrowed: the bytes after the 8-byte header (echo data, or the quoted packet of an error). */
  body: Buffer;
}

function readMessage(msg: Buffer): IcmpMessage {
  const rest = u32(msg, 4);
  return { type: msg[0]!, code: msg[1]!, rest, id: rest >>> 16, sequence: rest & 0xffff, body: msg.subarray(ICMP_HEADER_BYTES) };
}

/** Parses an ICMPv4 message (an IPv4 payload); the checksum covers the message alone. */
export function parseIcmpv4(msg: Buffer, verifyChecksum = true): IcmpMessage | WireDrop {
  if (msg.length < ICMP_HEADER_BYTES) return 'short';
  if (verifyChecksum && internetChecksum(msg, 0, msg.length) !== 0) return 'bad-checksum';
  return readMessage(msg);
}

/**
 * Parses an ICMPv6 message (the payload of a parsed IPv6 packet), verifying
 * the checksum with the pseudo-header (RFC 4443 §2.3).
 */
export function parseIcmpv6(ip: Ipv6Packet, verifyChecksum = true): IcmpMessage | WireDrop {
  const msg = ip.payload;
  if (msg.length < ICMP_HEADER_BYTES) return 'short';
  if (verifyChecksum) {
    const pseudo = ipv6PseudoSum(ip.src, 0, ip.dst, 0, IpProtocol.ICMPV6, msg.length);
    if (finishSum(onesSum(msg, 0, msg.length, pseudo)) !== 0) return 'bad-checksum';
  }
  return readMessage(msg);
}

// ---------------------------------------------------------------------------
// Echo

/**
 * Writes the echo reply to the echo request `req` (its payload an ICMPv4
 * ECHO_REQUEST, checksum verified) at `buf[off]`: addresses swapped, TTL
 * reset, IP options dropped, type 0, checksum updated incrementally (RFC
 * 1624). Returns the reply length (20 + ICMP message).
 *
 * `buf`/`off` may be where the request itself lies: the reply is then built
 * in place, no allocation (the message moves down over any IP options).
 */
export function emitIcmpv4EchoReply(req: Ipv4Packet, buf: Uint8Array, off: number): number {
  const msg = req.payload;
  const at = off + IPV4_HEADER_BYTES;
  buf.set(msg, at); // TypedArray#set copies as if through a temporary: overlap-safe
  put16(buf, at + 2, checksumUpdate16(u16(buf, at + 2), u16(buf, at), Icmpv4Type.ECHO_REPLY << 8));
  buf[at] = Icmpv4Type.ECHO_REPLY;
  buf[at + 1] = 0;
  const env: Ipv4Envelope = { src: req.dst, dst: req.src, ttl: IPV4_DEFAULT_TTL, id: req.id, tos: req.tos, dontFragment: req.dontFragment };
  emitIpv4Header(env, IpProtocol.ICMP, msg.length, buf, off);
  return IPV4_HEADER_BYTES + msg.length;
}

/** {@link emitIcmpv4EchoReply} into a new buffer (owned by the caller). */
export function icmpv4EchoReply(req: Ipv4Packet): Buffer {
  const out = Buffer.allocUnsafe(IPV4_HEADER_BYTES + req.payload.length);
  emitIcmpv4EchoReply(req, out, 0);
  return out;
}

/**
 * ICMPv6 echo reply to `req` (its payload an ECHO_REQUEST) at `buf[off]`,
 * in place allowed as for IPv4. Swapping source and destination leaves the
 * pseudo-header sum unchanged, so only the type word is updated (RFC 1624).
 */
export function emitIcmpv6EchoReply(req: Ipv6Packet, buf: Uint8Array, off: number): number {
  const msg = req.payload;
  const at = off + IPV6_HEADER_BYTES;
  // Copy the addresses before the header write can overwrite them (in place).
  const src = Buffer.from(req.dst);
  const dst = Buffer.from(req.src);
  buf.set(msg, at);
  put16(buf, at + 2, checksumUpdate16(u16(buf, at + 2), u16(buf, at), Icmpv6Type.ECHO_REPLY << 8));
  buf[at] = Icmpv6Type.ECHO_REPLY;
  buf[at + 1] = 0;
  emitIpv6Header({ src, dst, hopLimit: IPV6_DEFAULT_HOP_LIMIT, trafficClass: req.trafficClass, flowLabel: req.flowLabel }, IpProtocol.ICMPV6, msg.length, buf, off);
  return IPV6_HEADER_BYTES + msg.length;
}

// ---------------------------------------------------------------------------
// Destination unreachable

/**
 * Bytes of the offending packet quoted in an ICMPv4 error: its IP header and
 * the first 8 bytes of its payload (RFC 792; enough for the sender to find
 * the ports). RFC 1812 §4.3.2.3 allows more, up to 576 bytes in all; 8 is
 * what every host needs, and keeps errors small. Bounded by the packet's
 * Total Length and by `pkt.length`.
 */
function quoteBytes(pkt: Uint8Array): number {
  if (pkt.length < IPV4_HEADER_BYTES) return 0;
  const headerBytes = (pkt[0]! & 0x0f) << 2;
  return Math.max(0, Math.min(headerBytes + 8, u16(pkt, 2), pkt.length));
}

/** Exact bytes {@link emitIcmpv4Unreachable} writes for the offending packet `pkt`. */
export function icmpv4UnreachableBytes(pkt: Uint8Array): number {
  return IPV4_HEADER_BYTES + ICMP_HEADER_BYTES + quoteBytes(pkt);
}

/**
 * Writes an ICMPv4 destination unreachable (type 3, `code` from
 * {@link Icmpv4Unreachable}) about `pkt` (the offending IPv4 packet, from
 * its header on; parsed already) at `buf[off]`, sent from `from` (our
 * address: usually the intercepted destination) to `pkt`'s source. Returns
 * the length. `nextHopMtu` is for FRAG_NEEDED (RFC 1191 §4), else 0.
 * Check {@link icmpv4ErrorAllowed} first.
 */
export function emitIcmpv4Unreachable(code: number, from: number, pkt: Uint8Array, buf: Uint8Array, off: number, nextHopMtu = 0): number {
  const quote = quoteBytes(pkt);
  const at = off + IPV4_HEADER_BYTES;
  buf[at] = Icmpv4Type.DEST_UNREACHABLE;
  buf[at + 1] = code;
  put16(buf, at + 2, 0);
  put32(buf, at + 4, nextHopMtu & 0xffff);
  buf.set(pkt.subarray(0, quote), at + ICMP_HEADER_BYTES);
  const msgLen = ICMP_HEADER_BYTES + quote;
  put16(buf, at + 2, internetChecksum(buf, at, msgLen));
  const to = pkt.length >= IPV4_HEADER_BYTES ? u32(pkt, 12) : 0;
  emitIpv4Header({ src: from, dst: to, ttl: IPV4_DEFAULT_TTL, id: 0, tos: 0, dontFragment: false }, IpProtocol.ICMP, msgLen, buf, off);
  return IPV4_HEADER_BYTES + msgLen;
}

/** 224.0.0.0/4 multicast, 240.0.0.0/4 reserved and 255.255.255.255 broadcast. */
function isMulticastOrReserved(a: number): boolean {
  return a >>> 28 >= 0xe;
}

/**
 * Whether an ICMP error may be sent about `ip` (RFC 1812 §4.3.2.7, RFC 1122
 * §3.2.2): not about an ICMP error (queries such as echo are fine), not
 * about a packet to multicast or broadcast, not to a source that is not one
 * host (0.0.0.0, loopback, multicast, broadcast). Fragments never reach here
 * (the parser drops them).
 */
export function icmpv4ErrorAllowed(ip: Ipv4Packet): boolean {
  if (isMulticastOrReserved(ip.dst)) return false;
  const src = ip.src;
  if (src === 0 || src >>> 24 === 127 || isMulticastOrReserved(src)) return false;
  if (ip.protocol === IpProtocol.ICMP) {
    if (ip.payload.length < 1) return false;
    // Errors are types 3, 4, 5, 11, 12; types past 18 (the last query, RFC 950) are unknown: treated as errors, as Linux does.
    const t = ip.payload[0]!;
    if (t > 18 || t === Icmpv4Type.DEST_UNREACHABLE || t === Icmpv4Type.SOURCE_QUENCH || t === Icmpv4Type.REDIRECT
      || t === Icmpv4Type.TIME_EXCEEDED || t === Icmpv4Type.PARAMETER_PROBLEM) return false;
  }
  return true;
}
