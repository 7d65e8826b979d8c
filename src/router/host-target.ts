/**
 * Where a hosted circuit goes: resolves host.v1 data and a dial into one
 * protocol, address and port, or a refusal with its reason. The hosting
 * router calls this once per DIAL, after the policy check and before it
 * connects anything (router.ts `connectHosted`).
 *
 * Each of protocol, address and port is either fixed by host.v1
 * (`protocol`, `address`, `port`) or forwarded from the dial
 * (`forwardProtocol`, `forwardAddress`, `forwardPort`: the destination the
 * client's intercept saw) and then must lie within the allowed values:
 *
 *   allowedProtocols   tcp / udp
 *   allowedAddresses   host.example (exact, case-insensitive)
 *                      *.example.com (any subdomain, not example.com itself)
 *                      192.0.2.7, 2001:db8::7 (exact IP)
 *                      10.0.0.0/8, 2001:db8::/32 (CIDR)
 *   allowedPortRanges  [{low, high}] inclusive
 *
 * Pure: no I/O, timers or logging (node:net's BlockList and isIP are pure).
 */
import { BlockList, isIP } from 'node:net';
import type { HostTarget, Protocol } from '../policy/snapshot.js';

/** The destination fields of a dial (DialRequest's). Absent protocol means tcp. */
export interface DialDestination {
  protocol?: Protocol;
  dstAddress?: string;
  dstPort?: number;
}

export interface ResolvedTarget {
  protocol: Protocol;
  address: string;
  port: number;
  /** host.v1 `listenOptions.connectTimeoutSeconds`, default 5 s, in ms. */
  connectTimeoutMs: number;
}

/**
 * `denied`: the dial asks for something host.v1 does not allow (refuse as
 * DENIED). `misconfigured`: host.v1 itself names no usable target (refuse as
 * CONNECT_FAILED: the operator must fix the config).
 */
export type TargetResolution =
  | { ok: true; target: ResolvedTarget }
  | { ok: false; kind: 'denied' | 'misconfigured'; reason: string };

export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 5;

/**
 * Resolves `target` (host.v1 of `service`) for one dial.
 *
 * @example
 * ```ts
 * const r = resolveHostTarget('ssh', { protocol: 'tcp', forwardAddress: true, allowedAddresses: ['10.0.0.0/8'], port: 22 }, { dstAddress: '10.1.2.3' });
 * // r.ok && r.target = { protocol: 'tcp', address: '10.1.2.3', port: 22, connectTimeoutMs: 5000 }
 * ```
 */
export function resolveHostTarget(service: string, target: HostTarget, dial: DialDestination): TargetResolution {
  const asked: Protocol = dial.protocol ?? 'tcp';
  let protocol: Protocol;
  if (target.forwardProtocol === true) {
    const allowed = target.allowedProtocols ?? [];
    if (!allowed.includes(asked)) return denied(`protocol ${asked} is outside the allowed protocols of service ${service} (${listOrNone(allowed)})`);
    protocol = asked;
  } else {
    if (target.protocol === undefined) return misconfigured(`service ${service}: host.v1 has neither protocol nor forwardProtocol`);
    // The circuit's framing follows the dial's protocol (records for udp), so the two must agree.
    if (target.protocol !== asked) return denied(`service ${service} is hosted as ${target.protocol}, but the dial asked for ${asked}`);
    protocol = target.protocol;
  }

  let address: string;
  if (target.forwardAddress === true) {
    const dst = dial.dstAddress;
    if (dst === undefined || dst === '') return denied(`service ${service} forwards the destination address, but the dial carried none`);
    if (!addressMatcher(target.allowedAddresses ?? []).matches(dst)) {
      return denied(`destination address ${dst} is outside the allowed addresses of service ${service} (${listOrNone(target.allowedAddresses ?? [])})`);
    }
    address = dst;
  } else {
    if (target.address === undefined || target.address === '') return misconfigured(`service ${service}: host.v1 has neither address nor forwardAddress`);
    address = target.address;
  }

  let port: number;
  if (target.forwardPort === true) {
    const dst = dial.dstPort;
    if (dst === undefined) return denied(`service ${service} forwards the destination port, but the dial carried none`);
    const ranges = target.allowedPortRanges ?? [];
    if (!isPort(dst) || !ranges.some((r) => dst >= r.low && dst <= r.high)) {
      return denied(`destination port ${dst} is outside the allowed port ranges of service ${service} (${listOrNone(ranges.map(rangeText))})`);
    }
    port = dst;
  } else {
    if (target.port === undefined || !isPort(target.port)) return misconfigured(`service ${service}: host.v1 has neither a port (1-65535) nor forwardPort`);
    port = target.port;
  }

  const seconds = target.listenOptions?.connectTimeoutSeconds;
  const connectTimeoutMs = (seconds !== undefined && Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_CONNECT_TIMEOUT_SECONDS) * 1000;
  return { ok: true, target: { protocol, address, port, connectTimeoutMs } };
}

// ---- allowed addresses -------------------------------------------------------

/** allowedAddresses compiled once: IPs and CIDRs in a BlockList, names in sets. */
export class AddressMatcher {
  private readonly ips = new BlockList();
  private readonly names = new Set<string>();
  /** `*.example.com` kept as `.example.com`. */
  private readonly suffixes: string[] = [];

  constructor(allowed: readonly string[]) {
    for (const raw of allowed) {
      const entry = raw.trim();
      const slash = entry.indexOf('/');
      if (slash > 0) {
        const net = entry.slice(0, slash);
        const bits = Number(entry.slice(slash + 1));
        const family = isIP(net);
        if (family !== 0 && Number.isInteger(bits) && bits >= 0 && bits <= (family === 4 ? 32 : 128)) {
          this.ips.addSubnet(net, bits, family === 4 ? 'ipv4' : 'ipv6');
        }
        // Anything else is not a CIDR the controller would accept; it matches nothing.
        continue;
      }
      const family = isIP(entry);
      if (family !== 0) this.ips.addAddress(entry, family === 4 ? 'ipv4' : 'ipv6');
      else if (entry.startsWith('*.')) this.suffixes.push(normalName(entry.slice(1)));
      else if (entry !== '') this.names.add(normalName(entry));
    }
  }

  /** Is `dst` (an IP literal or a hostname) within the allowed addresses? */
  matches(dst: string): boolean {
    const family = isIP(dst);
    if (family !== 0) return this.ips.check(dst, family === 4 ? 'ipv4' : 'ipv6');
    if (!isHostname(dst)) return false;
    const name = normalName(dst);
    if (this.names.has(name)) return true;
    for (const s of this.suffixes) if (name.length > s.length && name.endsWith(s)) return true;
    return false;
  }
}

/** Per allowedAddresses list (host.v1 data is immutable once parsed), so a dial does not recompile it. */
const matchers = new WeakMap<readonly string[], AddressMatcher>();

function addressMatcher(allowed: readonly string[]): AddressMatcher {
  let m = matchers.get(allowed);
  if (m === undefined) {
    m = new AddressMatcher(allowed);
    matchers.set(allowed, m);
  }
  return m;
}

/** Lower case, without a trailing root dot. */
function normalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** RFC 1123 host name (labels of letters, digits, '-' and '_'; at most 253 characters), with an optional root dot. */
function isHostname(name: string): boolean {
  return name.length <= 254 && /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?$/.test(name);
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

function rangeText(r: { low: number; high: number }): string {
  return r.low === r.high ? String(r.low) : `${r.low}-${r.high}`;
}

function listOrNone(items: readonly string[]): string {
  if (items.length === 0) return 'none';
  return items.length <= 8 ? items.join(', ') : `${items.slice(0, 8).join(', ')}, … ${items.length - 8} more`;
}

function denied(reason: string): TargetResolution {
  return { ok: false, kind: 'denied', reason };
}

function misconfigured(reason: string): TargetResolution {
  return { ok: false, kind: 'misconfigured', reason };
}
