/**
 * The intercepted-name table of the tun mode: which hostnames the router's
 * DNS server answers itself, and for which services. Built from the
 * intercept.v1 configs of the services the router's identity may Dial (the
 * router flattens them into {@link InterceptSpec}s); rebuilt whole on every
 * policy update. Pure: no I/O, no clock.
 *
 * Matching a queried name (RFC 4343: ASCII case-insensitive; a trailing dot,
 * the root, is ignored):
 *   1. exact hostnames (`db.plant.internal`);
 *   2. wildcards `*.SUFFIX`, the longest suffix first. As in OpenZiti's
 *      tunnelers, a wildcard matches a subdomain at any depth
 *      (`*.plant.internal` matches `a.plant.internal` and
 *      `x.y.plant.internal`) but not the suffix itself (`plant.internal`):
 *      write both when both are meant.
 * A name can be claimed by several services (different ports or protocols);
 * the match lists every claiming intercept, most specific rule first, then in
 * the order of the list, and the packet path takes the first whose protocols
 * and port ranges cover the packet ({@link InterceptedNames.serviceOf}).
 *
 * IP addresses and CIDRs in intercept.v1 are not DNS business: the packet
 * path matches them; {@link splitAddresses} sorts them out for it.
 */
import { isCidr, isHostname, isIpAddress } from '../controller/addresses.js';
import type { AddressPool } from './pool.js';

export interface PortRange {
  readonly low: number;
  readonly high: number;
}

/** One service's interception, as the router flattens it from an intercept.v1 config. */
export interface InterceptSpec {
  /** Service name (or id: whatever the router dials by). */
  readonly service: string;
  /** Hostnames, `*.` wildcards, IP addresses and CIDRs, as in intercept.v1. */
  readonly addresses: readonly string[];
  readonly portRanges: readonly PortRange[];
  /** `tcp` and/or `udp`. */
  readonly protocols: readonly string[];
}

/** The addresses of intercept.v1 sorted by kind. Hostnames and wildcard suffixes are normalised (lower case, no trailing dot). */
export interface SplitAddresses {
  readonly hostnames: string[];
  /** Suffixes of `*.SUFFIX` wildcards, without the `*.`. */
  readonly wildcards: string[];
  readonly ips: string[];
  readonly cidrs: string[];
  /** Entries that are none of the above (the controller validates configs, so normally empty). */
  readonly invalid: string[];
}

/** The result of a name lookup. */
export interface NameMatch {
  /** The queried name, normalised: the key the pool allocates by. */
  readonly name: string;
  /** The most specific rule that matched: the name itself or `*.SUFFIX`. */
  readonly rule: string;
  /** Every intercept claiming the name, most specific rule first. Never empty. */
  readonly intercepts: readonly InterceptSpec[];
}

/**
 * Lower-cases (ASCII only, RFC 4343 §3) and drops one trailing dot.
 * Returns undefined for the root, an empty name, or a name with non-ASCII
 * characters (no intercepted hostname has them: RFC 1123 §2.1 labels).
 *
 * @example
 * ```ts
 * normalizeName('DB.Plant.Internal.') // 'db.plant.internal'
 * ```
 */
export function normalizeName(name: string): string | undefined {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare.length === 0 || /[^\x00-\x7f]/.test(bare)) return undefined;
  return bare.toLowerCase();
}

/**
 * Sorts intercept.v1 addresses into hostnames, wildcard suffixes, IPs and CIDRs.
 *
 * @example
 * ```ts
 * splitAddresses(['db.lan', '*.Plant.internal', '10.0.0.5', '10.1.0.0/16'])
 * // { hostnames: ['db.lan'], wildcards: ['plant.internal'], ips: ['10.0.0.5'], cidrs: ['10.1.0.0/16'], invalid: [] }
 * ```
 */
export function splitAddresses(addresses: readonly string[]): SplitAddresses {
  const out: SplitAddresses = { hostnames: [], wildcards: [], ips: [], cidrs: [], invalid: [] };
  for (const address of addresses) {
    if (isIpAddress(address)) { out.ips.push(address); continue; }
    if (isCidr(address)) { out.cidrs.push(address); continue; }
    const wildcard = address.startsWith('*.');
    const name = normalizeName(wildcard ? address.slice(2) : address);
    if (name === undefined || !isHostname(name)) out.invalid.push(address);
    else (wildcard ? out.wildcards : out.hostnames).push(name);
  }
  return out;
}

/**
 * Immutable lookup table of intercepted hostnames and wildcards.
 *
 * @example
 * ```ts
 * const table = new NameTable([{ service: 'plc', addresses: ['*.plant.internal'], portRanges: [{ low: 502, high: 502 }], protocols: ['tcp'] }]);
 * table.lookup('X.y.plant.internal.')?.rule // '*.plant.internal'
 * ```
 */
export class NameTable {
  private readonly exact = new Map<string, InterceptSpec[]>();
  private readonly wildcards = new Map<string, InterceptSpec[]>();

  constructor(list: readonly InterceptSpec[] = []) {
    for (const spec of list) {
      const split = splitAddresses(spec.addresses);
      for (const name of split.hostnames) addTo(this.exact, name, spec);
      for (const suffix of split.wildcards) addTo(this.wildcards, suffix, spec);
    }
  }

  /** Hostnames plus wildcard suffixes in the table. */
  get size(): number {
    return this.exact.size + this.wildcards.size;
  }

  /** Looks a queried name up: exact first, then wildcards by longest suffix. Undefined: not intercepted. */
  lookup(queried: string): NameMatch | undefined {
    const name = normalizeName(queried);
    if (name === undefined) return undefined;
    let rule: string | undefined;
    let intercepts: InterceptSpec[] | undefined;
    const exact = this.exact.get(name);
    if (exact !== undefined) {
      rule = name;
      intercepts = exact;
    }
    // Walk the suffixes after each dot, longest first ("x.y.plant.internal" → "y.plant.internal" → …).
    for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) {
      const suffix = name.slice(dot + 1);
      const specs = this.wildcards.get(suffix);
      if (specs === undefined) continue;
      if (intercepts === undefined) {
        rule = '*.' + suffix;
        intercepts = specs;
      } else {
        intercepts = intercepts.concat(specs);
      }
    }
    return rule === undefined || intercepts === undefined ? undefined : { name, rule, intercepts };
  }
}

function addTo(map: Map<string, InterceptSpec[]>, key: string, spec: InterceptSpec): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [spec]);
  else if (!list.includes(spec)) list.push(spec);
}

/** True when `spec` intercepts `protocol` traffic to `port`. */
export function covers(spec: InterceptSpec, protocol: string, port: number): boolean {
  if (!spec.protocols.includes(protocol)) return false;
  for (const range of spec.portRanges) if (port >= range.low && port <= range.high) return true;
  return false;
}

/**
 * The name table joined to the address pool: what the DNS handler answers from
 * and what the packet path asks about pool addresses. Replacing the intercept
 * list keeps the addresses of names still intercepted.
 */
export class InterceptedNames {
  private current: NameTable;

  constructor(readonly pool: AddressPool, list: readonly InterceptSpec[] = []) {
    this.current = new NameTable(list);
  }

  /** The table in force. */
  get table(): NameTable {
    return this.current;
  }

  /** Policy update: a new table; names no longer matched may lose their address when the pool runs out. */
  setIntercepts(list: readonly InterceptSpec[]): void {
    const table = new NameTable(list);
    this.current = table;
    this.pool.retain((name) => table.lookup(name) !== undefined);
  }

  lookup(name: string): NameMatch | undefined {
    return this.current.lookup(name);
  }

  /** The hostname a pool address was handed out for. */
  nameOf(ip: number): string | undefined {
    return this.pool.nameOf(ip);
  }

  /** Every intercept claiming the name behind a pool address (empty when none: unknown address, or no longer intercepted). */
  interceptsOf(ip: number): readonly InterceptSpec[] {
    const name = this.pool.nameOf(ip);
    return name === undefined ? [] : (this.current.lookup(name)?.intercepts ?? []);
  }

  /**
   * The service a packet to pool address `ip`, `protocol` and `port` belongs
   * to: the first claiming intercept that covers it. Call once per new flow.
   */
  serviceOf(ip: number, protocol: string, port: number): string | undefined {
    for (const spec of this.interceptsOf(ip)) if (covers(spec, protocol, port)) return spec.service;
    return undefined;
  }
}
