/**
 * IPv4 header codec (RFC 791) for the userspace stack of tun mode, plus
 * address and CIDR helpers, and the drop reasons shared by every IP-layer
 * parser in src/wire. Packets come from the TUN with IFF_NO_PI, so a buffer
 * (or the bytes after a virtio_net_hdr, vnet.ts) starts at the IP header.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-------+-------+---------------+-------------------------------+
 *   |Version|  IHL  |    DSCP/ECN   |          Total Length         |
 *   +-------+-------+---------------+-----+-------------------------+
 *   |         Identification        |Flags|     Fragment Offset     |
 *   +---------------+---------------+-----+-------------------------+
 *   |      TTL      |   Protocol    |        Header Checksum        |
 *   +---------------+---------------+-------------------------------+
 *   |                        Source Address                         |
 *   +---------------------------------------------------------------+
 *   |                      Destination Address                      |
 *   +---------------------------------------------------------------+
 *   |          Options (IHL > 5), skipped, never interpreted        |
 *
 * Pure codec: parsers return a drop reason instead of throwing, and read
 * nothing outside `buf[off, off+len)` whatever the bytes say.
 */
import { internetChecksum, put16, put32, u16, u32 } from './checksum.js';

/**
 * Why a wire parser refused a packet. The I/O shell keeps one counter per
 * reason (nebula's `Drop`); a parser returns one of these instead of a value.
 */
export type WireDrop =
  /** Fewer bytes than the fixed header needs. */
  | 'short'
  /** IP version nibble is not the one parsed. */
  | 'bad-version'
  /** IPv4 IHL < 5 or past the buffer; TCP data offset < 5 or past the segment. */
  | 'bad-header-length'
  /** IPv4 total length / IPv6 payload length disagrees with the buffer. */
  | 'bad-total-length'
  /** A header or transport checksum did not verify. */
  | 'bad-checksum'
  /** A fragment (IPv4 MF or offset ≠ 0, IPv6 Fragment header): not reassembled. */
  | 'fragment'
  /** A TCP option with length < 2 or running past the header. */
  | 'bad-options'
  /** An IPv6 extension header (we accept the fixed header only). */
  | 'unsupported-extension'
  /** A UDP length field out of range, or a bad ICMP quote. */
  | 'bad-length'
  /** A virtio_net_hdr whose checksum or GSO fields do not fit the packet. */
  | 'bad-vnet';

/** Every {@link WireDrop}, in a fixed order: for pre-creating counters. */
export const WIRE_DROPS: readonly WireDrop[] = [
  'short', 'bad-version', 'bad-header-length', 'bad-total-length', 'bad-checksum',
  'fragment', 'bad-options', 'unsupported-extension', 'bad-length', 'bad-vnet',
];

/** True when a parser result is a drop reason (every parsed value is an object). */
export function isDrop<T extends object>(r: T | WireDrop): r is WireDrop {
  return typeof r === 'string';
}

/** IP protocol numbers used by the stack (IANA "Assigned Internet Protocol Numbers"). */
export const IpProtocol = {
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ICMPV6: 58,
} as const;

export const IPV4_HEADER_BYTES = 20;
/** TTL of packets we originate: Linux's default (net.ipv4.ip_default_ttl); RFC 1700 suggested 64. */
export const IPV4_DEFAULT_TTL = 64;

/** The IPv4 header fields a caller chooses; emitters take the protocol and lengths apart. A flow keeps one. */
export interface Ipv4Envelope {
  /** Source address, unsigned 32-bit. */
  src: number;
  /** Destination address, unsigned 32-bit. */
  dst: number;
  ttl: number;
  /** Identification (RFC 6864: only meaningful for fragments; any value when DF is set). */
  id: number;
  /** The DSCP/ECN byte (RFC 2474, RFC 3168). */
  tos: number;
  dontFragment: boolean;
}

/** A parsed IPv4 packet. */
export interface Ipv4Packet extends Ipv4Envelope {
  protocol: number;
  /** IHL × 4: where the payload starts, relative to the header. */
  headerBytes: number;
  /** The Total Length field; bytes past it in the buffer (link padding) are ignored. */
  totalBytes: number;
  /** borrowed: `buf[off + headerBytes, off + totalBytes)`, valid as long as the packet buffer. */
  payload: Buffer;
}

/** The version nibble of the packet at `off` (4, 6, or garbage), or -1 past the end. */
export function ipVersion(buf: Uint8Array, off = 0): number {
  return off < buf.length && off >= 0 ? buf[off]! >>> 4 : -1;
}

/**
 * Parses an IPv4 header at `buf[off, off+len)`. Fragments are refused
 * ('fragment'): the stack does not reassemble, and the hosts it serves set DF
 * (path MTU discovery, RFC 1191). Set `verifyChecksum` false for fuzzing or
 * when the kernel vouched for the header (virtio_net_hdr DATA_VALID).
 *
 * @example
 *   const ip = parseIpv4(pkt);
 *   if (isDrop(ip)) drops[ip]++;
 *   else if (ip.protocol === IpProtocol.TCP) handleTcp(ip);
 */
export function parseIpv4(buf: Buffer, off = 0, len = buf.length - off, verifyChecksum = true): Ipv4Packet | WireDrop {
  if (off < 0 || len < IPV4_HEADER_BYTES || off + len > buf.length) return 'short';
  const vihl = buf[off]!;
  if (vihl >>> 4 !== 4) return 'bad-version';
  const headerBytes = (vihl & 0x0f) << 2;
  if (headerBytes < IPV4_HEADER_BYTES || headerBytes > len) return 'bad-header-length';
  const totalBytes = u16(buf, off + 2);
  if (totalBytes < headerBytes || totalBytes > len) return 'bad-total-length';
  if (verifyChecksum && internetChecksum(buf, off, headerBytes) !== 0) return 'bad-checksum';
  const flagsFrag = u16(buf, off + 6);
  // MF (0x2000) set or a non-zero offset: part of a fragmented datagram (RFC 791 §3.2).
  if ((flagsFrag & 0x3fff) !== 0) return 'fragment';
  return {
    src: u32(buf, off + 12),
    dst: u32(buf, off + 16),
    ttl: buf[off + 8]!,
    id: u16(buf, off + 4),
    tos: buf[off + 1]!,
    dontFragment: (flagsFrag & 0x4000) !== 0,
    protocol: buf[off + 9]!,
    headerBytes,
    totalBytes,
    payload: buf.subarray(off + headerBytes, off + totalBytes),
  };
}

/**
 * Writes a 20-byte IPv4 header (no options) for a `protocol` payload of
 * `payloadBytes` at `buf[off]`, checksum included; returns the bytes written
 * (20). The payload itself is the caller's to place at `off + 20`.
 */
export function emitIpv4Header(h: Ipv4Envelope, protocol: number, payloadBytes: number, buf: Uint8Array, off: number): number {
  buf[off] = 0x45;
  buf[off + 1] = h.tos;
  put16(buf, off + 2, IPV4_HEADER_BYTES + payloadBytes);
  put16(buf, off + 4, h.id);
  put16(buf, off + 6, h.dontFragment ? 0x4000 : 0);
  buf[off + 8] = h.ttl;
  buf[off + 9] = protocol;
  put16(buf, off + 10, 0);
  put32(buf, off + 12, h.src);
  put32(buf, off + 16, h.dst);
  put16(buf, off + 10, internetChecksum(buf, off, IPV4_HEADER_BYTES));
  return IPV4_HEADER_BYTES;
}

/** Recomputes the header checksum of the IPv4 header at `buf[off]` after fields were rewritten in place. */
export function refreshIpv4Checksum(buf: Uint8Array, off: number): void {
  const headerBytes = (buf[off]! & 0x0f) << 2;
  put16(buf, off + 10, 0);
  put16(buf, off + 10, internetChecksum(buf, off, headerBytes));
}

// ---------------------------------------------------------------------------
// Addresses (control plane: config, DNS pool, interception table)

/** `0x7f000001` → `'127.0.0.1'`. */
export function ipv4ToString(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/**
 * `'127.0.0.1'` → `0x7f000001`; undefined unless four decimal parts 0–255
 * without leading zeros (inet_aton's octal and short forms are refused, as
 * Node's `net.isIPv4` does, so `010.0.0.1` cannot mean two things).
 */
export function parseIpv4Address(s: string): number | undefined {
  let addr = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0x2e; // a virtual '.' ends the last part
    if (c === 0x2e) {
      if (digits === 0 || ++parts > 4) return undefined;
      addr = addr * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && part === 0) return undefined; // leading zero
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return undefined;
    } else {
      return undefined;
    }
  }
  return parts === 4 ? addr : undefined;
}

/** An IPv4 prefix: `network` has its host bits cleared. */
export interface Ipv4Cidr {
  network: number;
  prefixLength: number;
  /** Netmask, unsigned 32-bit (`/24` → 0xffffff00, `/0` → 0). */
  mask: number;
}

/** The netmask of a prefix length 0–32. */
export function ipv4Mask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * `'100.64.0.0/10'` → `{ network, prefixLength: 10, mask }`; a bare address
 * is a /32. Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`), as `ip
 * route` does. Undefined when malformed.
 */
export function parseIpv4Cidr(s: string): Ipv4Cidr | undefined {
  const slash = s.indexOf('/');
  const addr = parseIpv4Address(slash < 0 ? s : s.substring(0, slash));
  if (addr === undefined) return undefined;
  let prefixLength = 32;
  if (slash >= 0) {
    const p = s.substring(slash + 1);
    if (!/^(?:[0-9]|[12][0-9]|3[0-2])$/.test(p)) return undefined;
    prefixLength = Number(p);
  }
  const mask = ipv4Mask(prefixLength);
  return { network: (addr & mask) >>> 0, prefixLength, mask };
}

/** True when `addr` (unsigned 32-bit) lies in `cidr`. */
export function ipv4CidrContains(cidr: Ipv4Cidr, addr: number): boolean {
  return ((addr & cidr.mask) >>> 0) === cidr.network;
}
