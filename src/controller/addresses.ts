/**
 * Address syntax shared by config data (intercept.v1, host.v1) and the
 * subjectAltNames of router server certificates. Pure string checks: no
 * DNS lookups.
 */
import { isIP } from 'node:net';

/** RFC 1123 §2.1 host name: dot-separated labels of letters, digits and inner hyphens; the last label not all digits (RFC 3696 §2). */
export function isHostname(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  const labels = s.split('.');
  for (const l of labels) if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) return false;
  return !/^\d+$/.test(labels[labels.length - 1]!);
}

/** "10.0.0.0/8", "fd00::/64": an address and a prefix length that fits it. */
export function isCidr(s: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (m === null) return false;
  const family = isIP(m[1]!);
  const bits = Number(m[2]);
  return family !== 0 && !m[1]!.includes('%') && bits <= (family === 4 ? 32 : 128);
}

export function isIpAddress(s: string): boolean {
  return isIP(s) !== 0 && !s.includes('%');
}

/** An intercept or allowed address: hostname, `*.` + hostname, IP address or CIDR. */
export function isMatchAddress(s: string): boolean {
  if (isIpAddress(s) || isCidr(s)) return true;
  if (s.startsWith('*.')) return isHostname(s.slice(2));
  return isHostname(s);
}
