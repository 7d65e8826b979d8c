/**
 * IPv6 fixed-header codec (RFC 8200 §3) for the tun-mode stack, in the same
 * shapes as ipv4.ts, plus address text (RFC 4291 §2.2, RFC 5952) and
 * prefixes. IPv4 is the first target; this stays cheap on purpose: the fixed
 * header only, and any extension header is refused with a drop reason
 * (hosts we serve send none on plain TCP/UDP flows).
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-------+---------------+---------------------------------------+
 *   |Version| Traffic Class |              Flow Label               |
 *   +-------+---------------+-------+---------------+---------------+
 *   |         Payload Length        |  Next Header  |   Hop Limit   |
 *   +-------------------------------+---------------+---------------+
 *   |                  Source Address (16 bytes)                    |
 *   +---------------------------------------------------------------+
 *   |               Destination Address (16 bytes)                  |
 *   +---------------------------------------------------------------+
 *
 * Pure codec: never throws on packet bytes, never reads outside its range.
 */
import { put16, u16 } from './checksum.js';
import type { WireDrop } from './ipv4.js';

export const IPV6_HEADER_BYTES = 40;
/** Hop limit of packets we originate (Linux net.ipv6.conf.*.hop_limit default). */
export const IPV6_DEFAULT_HOP_LIMIT = 64;

/**
 * Next Header values that are extension headers, not upper layers (RFC 8200
 * §4, IANA "IPv6 Extension Header Types"); 44 (Fragment) is counted as
 * 'fragment' like IPv4 fragments. 59 (No Next Header) is passed up as is.
 */
const EXTENSION = new Uint8Array(256);
for (const nh of [0, 43, 50, 51, 60, 135, 139, 140, 253, 254]) EXTENSION[nh] = 1;
const FRAGMENT_HEADER = 44;

/** The IPv6 header fields a caller chooses; emitters take the next header and length apart. */
export interface Ipv6Envelope {
  /** 16 bytes (a subarray is fine; only its first 16 bytes are read). */
  src: Uint8Array;
  dst: Uint8Array;
  hopLimit: number;
  trafficClass: number;
  /** 20 bits. */
  flowLabel: number;
}

/** A parsed IPv6 packet (fixed header, no extensions). */
export interface Ipv6Packet extends Ipv6Envelope {
  nextHeader: number;
  /** borrowed: 16-byte subarray of the packet. */
  src: Buffer;
  /** borrowed: 16-byte subarray of the packet. */
  dst: Buffer;
  /** borrowed: the Payload Length bytes after the header; link padding past it is ignored. */
  payload: Buffer;
}

/**
 * Parses an IPv6 fixed header at `buf[off, off+len)`. Extension headers
 * give 'unsupported-extension' (Fragment: 'fragment'). There is no header
 * checksum in IPv6 (RFC 8200 §8.1 moves it to the upper layers).
 */
export function parseIpv6(buf: Buffer, off = 0, len = buf.length - off): Ipv6Packet | WireDrop {
  if (off < 0 || len < IPV6_HEADER_BYTES || off + len > buf.length) return 'short';
  const b0 = buf[off]!;
  if (b0 >>> 4 !== 6) return 'bad-version';
  const payloadBytes = u16(buf, off + 4);
  // Payload Length 0 with a Jumbo option (RFC 2675) needs Hop-by-Hop, refused below anyway.
  if (IPV6_HEADER_BYTES + payloadBytes > len) return 'bad-total-length';
  const nextHeader = buf[off + 6]!;
  if (nextHeader === FRAGMENT_HEADER) return 'fragment';
  if (EXTENSION[nextHeader] === 1) return 'unsupported-extension';
  const b1 = buf[off + 1]!;
  return {
    src: buf.subarray(off + 8, off + 24),
    dst: buf.subarray(off + 24, off + 40),
    hopLimit: buf[off + 7]!,
    trafficClass: ((b0 & 0x0f) << 4) | (b1 >>> 4),
    flowLabel: ((b1 & 0x0f) << 16) | u16(buf, off + 2),
    nextHeader,
    payload: buf.subarray(off + IPV6_HEADER_BYTES, off + IPV6_HEADER_BYTES + payloadBytes),
  };
}

/** Writes a 40-byte IPv6 header for a `nextHeader` payload of `payloadBytes` at `buf[off]`; returns 40. */
export function emitIpv6Header(h: Ipv6Envelope, nextHeader: number, payloadBytes: number, buf: Uint8Array, off: number): number {
  buf[off] = 0x60 | ((h.trafficClass >>> 4) & 0x0f);
  buf[off + 1] = ((h.trafficClass & 0x0f) << 4) | ((h.flowLabel >>> 16) & 0x0f);
  put16(buf, off + 2, h.flowLabel);
  put16(buf, off + 4, payloadBytes);
  buf[off + 6] = nextHeader;
  buf[off + 7] = h.hopLimit;
  buf.set(h.src.subarray(0, 16), off + 8);
  buf.set(h.dst.subarray(0, 16), off + 24);
  return IPV6_HEADER_BYTES;
}

// ---------------------------------------------------------------------------
// Addresses (control plane)

/**
 * The RFC 5952 text of the 16 bytes at `b[off]`: lower case, no leading
 * zeros, the longest run of two or more zero groups (the first on a tie) as
 * `::`, and `::ffff:a.b.c.d` for IPv4-mapped addresses (RFC 5952 §5).
 */
export function ipv6ToString(b: Uint8Array, off = 0): string {
  let bestAt = -1;
  let bestLen = 1; // a single zero group is not compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (u16(b, off + 2 * i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && u16(b, off + 2 * j) === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestAt === 0 && bestLen === 5 && u16(b, off + 10) === 0xffff) {
    return `::ffff:${b[off + 12]!}.${b[off + 13]!}.${b[off + 14]!}.${b[off + 15]!}`;
  }
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      s += '::';
      i += bestLen - 1;
      continue;
    }
    if (s.length > 0 && !s.endsWith(':')) s += ':';
    s += u16(b, off + 2 * i).toString(16);
  }
  return s;
}

/** Parses `x:x:…` groups (no `::`) into `out` at word `at`; returns the count, or -1. */
function parseGroups(s: string, out: Buffer, at: number, allowV4Tail: boolean): number {
  if (s.length === 0) return 0;
  const parts = s.split(':');
  let n = 0;
  for (let k = 0; k < parts.length; k++) {
    const p = parts[k]!;
    if (allowV4Tail && k === parts.length - 1 && p.includes('.')) {
      const v4 = parseV4Tail(p);
      if (v4 === undefined || at + n + 2 > 8) return -1;
      put16(out, 2 * (at + n), v4 >>> 16);
      put16(out, 2 * (at + n + 1), v4);
      n += 2;
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p) || at + n >= 8) return -1;
      put16(out, 2 * (at + n), parseInt(p, 16));
      n += 1;
    }
  }
  return n;
}

function parseV4Tail(p: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(p);
  if (m === null) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const d = m[i]!;
    if (d.length > 1 && d[0] === '0') return undefined;
    const n = Number(d);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v;
}

/**
 * Text (RFC 4291 §2.2: full, `::`-compressed, or with a dotted IPv4 tail) →
 * a fresh 16-byte buffer; undefined when malformed. Zone ids (`%eth0`) are
 * refused: tun mode has no link-local peers.
 */
export function parseIpv6Address(s: string): Buffer | undefined {
  const out = Buffer.alloc(16);
  const dc = s.indexOf('::');
  if (dc < 0) return parseGroups(s, out, 0, true) === 8 ? out : undefined;
  if (s.indexOf('::', dc + 1) >= 0) return undefined;
  const head = s.substring(0, dc);
  const tail = s.substring(dc + 2);
  const nHead = parseGroups(head, out, 0, false);
  if (nHead < 0) return undefined;
  // Parse the tail into scratch, then right-align it.
  const t = Buffer.alloc(16);
  const nTail = parseGroups(tail, t, 0, true);
  // `::` stands for at least one zero group (RFC 4291 §2.2 item 2).
  if (nTail < 0 || nHead + nTail > 7) return undefined;
  t.copy(out, 16 - 2 * nTail, 0, 2 * nTail);
  return out;
}

/** An IPv6 prefix: `network` (16 bytes) has its host bits cleared. */
export interface Ipv6Cidr {
  network: Buffer;
  prefixLength: number;
}

/** Clears the bits of `addr` past `prefixLength`, in place. */
function maskInPlace(addr: Buffer, prefixLength: number): void {
  for (let i = 0; i < 16; i++) {
    const keep = prefixLength - 8 * i;
    if (keep <= 0) addr[i] = 0;
    else if (keep < 8) addr[i] = addr[i]! & (0xff << (8 - keep));
  }
}

/** `'fd00::/8'` → a prefix; a bare address is a /128. Host bits are cleared. Undefined when malformed. */
export function parseIpv6Cidr(s: string): Ipv6Cidr | undefined {
  const slash = s.indexOf('/');
  const network = parseIpv6Address(slash < 0 ? s : s.substring(0, slash));
  if (network === undefined) return undefined;
  let prefixLength = 128;
  if (slash >= 0) {
    const p = s.substring(slash + 1);
    if (!/^(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$/.test(p)) return undefined;
    prefixLength = Number(p);
  }
  maskInPlace(network, prefixLength);
  return { network, prefixLength };
}

/** True when the 16 bytes at `addr[off]` lie in `cidr`. */
export function ipv6CidrContains(cidr: Ipv6Cidr, addr: Uint8Array, off = 0): boolean {
  let bits = cidr.prefixLength;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[off + i]! & mask) !== cidr.network[i]!) return false;
  }
  return true;
}
