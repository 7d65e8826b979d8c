/**
 * Loads the packet vectors captured from the kernel by capture-tun.py (one
 * .hex file a packet: '#' comment lines, then hex), and holds the naive
 * reference codecs the fast ones in src/wire are checked against.
 */
import { readFileSync } from 'node:fs';

/** The packet in test/vectors/<name>.hex, in a fresh buffer. */
export function vector(name: string): Buffer {
  const text = readFileSync(new URL(`./${name}.hex`, import.meta.url), 'utf8');
  const hex = text.split('\n').filter((l) => !l.startsWith('#')).join('').replace(/\s+/g, '');
  return Buffer.from(hex, 'hex');
}

/** Every vector name, for the fuzz mutators. */
export const VECTOR_NAMES = [
  'ipv4-tcp-syn', 'ipv4-tcp-data', 'ipv4-udp', 'ipv4-icmp-echo',
  'ipv6-tcp-syn', 'ipv6-udp', 'ipv6-icmp-echo', 'vnet-tcp-syn', 'vnet-tcp-gso',
] as const;

/**
 * RFC 1071 the slow, obvious way: one 16-bit big-endian word at a time,
 * end-around carry after every add, a zero pad byte for odd lengths.
 * Returns the folded sum (not complemented).
 */
export function naiveOnesSum(b: Uint8Array, off: number, len: number, initial = 0): number {
  let s = initial;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  for (let i = 0; i < len; i += 2) {
    const hi = b[off + i]!;
    const lo = i + 1 < len ? b[off + i + 1]! : 0;
    s += (hi << 8) | lo;
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return s;
}
