/**
 * Which service a packet captured on the TUN belongs to: the intercept.v1
 * configs of the services this router may Dial, turned into a table asked
 * once per new flow (a TCP SYN, the first datagram of a UDP flow, an ICMP
 * echo), never per packet of an established flow.
 *
 * intercept.v1 `addresses` hold four kinds of entries; all are matched here:
 *
 *   plc.plant.internal   hostname  → its address from the DNS pool
 *   *.plant.internal     wildcard  → any name below plant.internal (any depth)
 *   10.20.0.7            IPv4      → exactly that destination
 *   10.20.0.0/16         IPv4 CIDR → any destination inside it
 *
 * A packet to a pool address is matched by the name the DNS server gave that
 * address; any other destination by IP, most specific prefix first. Among
 * the services that claim a destination, the first whose protocols and port
 * ranges admit the packet wins: exact names before wildcards, longer
 * wildcard suffixes before shorter ones, /32 before wider networks, and then
 * the order of the list (services sorted by name, so the choice is stable
 * across policy updates). IPv6 entries are kept out for now (the pool and
 * the stack are IPv4 first).
 *
 * Pure: no I/O, no timers, no logging.
 */
import { formatIpv4 } from '../config/address.js';
import { isIPv4 } from 'node:net';
import { parseIpv4Address } from '../wire/index.js';

export type InterceptProtocol = 'tcp' | 'udp';

/** One service's intercept.v1 data. */
export interface InterceptEntry {
  readonly service: string;
  readonly protocols: readonly string[];
  readonly addresses: readonly string[];
  readonly portRanges: readonly { readonly low: number; readonly high: number }[];
}

interface Claim {
  readonly service: string;
  readonly tcp: boolean;
  readonly udp: boolean;
  readonly ports: readonly { readonly low: number; readonly high: number }[];
}

interface NetClaim extends Claim {
  readonly network: number;
  readonly mask: number;
  readonly prefixLength: number;
}

/** A destination network the TUN must receive (a route to add). */
export interface InterceptRoute {
  readonly network: number;
  readonly prefixLength: number;
  /** Text form, A.B.C.D/LEN. */
  readonly cidr: string;
}

export class InterceptTable {
  /** Lower-cased exact hostname → claims, in list order. */
  private readonly exact = new Map<string, Claim[]>();
  /** Lower-cased wildcard suffix (".plant.internal") → claims. */
  private readonly wildcard = new Map<string, Claim[]>();
  /** IPv4 networks (a bare IP is a /32), most specific first. */
  private readonly networks: NetClaim[] = [];
  /** Hostnames and wildcards, as written, for the DNS server. */
  readonly names: readonly string[];

  constructor(entries: readonly InterceptEntry[]) {
    const names: string[] = [];
    const sorted = [...entries].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
    for (const e of sorted) {
      const claim: Claim = { service: e.service, tcp: e.protocols.includes('tcp'), udp: e.protocols.includes('udp'), ports: e.portRanges };
      for (const raw of e.addresses) {
        const a = raw.trim();
        if (a.length === 0) continue;
        if (isIPv4(a)) {
          this.networks.push({ ...claim, network: parseIpv4Address(a)!, mask: 0xffffffff, prefixLength: 32 });
          continue;
        }
        if (a.includes('/')) {
          // Host bits are ignored (10.1.2.3/16 means 10.1.0.0/16), as the controller accepted it. IPv6: not yet.
          const [ip, len] = a.split('/') as [string, string];
          const prefixLength = Number(len);
          if (isIPv4(ip) && /^\d{1,2}$/.test(len) && prefixLength <= 32) {
            const mask = maskOf(prefixLength);
            this.networks.push({ ...claim, network: (parseIpv4Address(ip)! & mask) >>> 0, mask, prefixLength });
          }
          continue;
        }
        if (a.includes(':')) continue; // IPv6 address: not yet
        const name = normalizeName(a);
        if (name.startsWith('*.')) push(this.wildcard, name.slice(1), claim);
        else push(this.exact, name, claim);
        names.push(a);
      }
    }
    // Stable sort: equal prefixes keep list order.
    this.networks.sort((x, y) => y.prefixLength - x.prefixLength);
    this.names = names;
  }

  /**
   * The service for a new flow to `dst` (unsigned 32-bit IPv4) port `port`,
   * or undefined when nothing intercepts it. `name` is the hostname the DNS
   * pool gave `dst`, when `dst` is a pool address.
   */
  match(protocol: InterceptProtocol, dst: number, port: number, name: string | undefined): string | undefined {
    if (name !== undefined) {
      const n = normalizeName(name);
      const hit = pick(this.exact.get(n), protocol, port);
      if (hit !== undefined) return hit;
      // Longest suffix first: drop one leading label at a time.
      for (let dot = n.indexOf('.'); dot >= 0; dot = n.indexOf('.', dot + 1)) {
        const w = pick(this.wildcard.get(n.slice(dot)), protocol, port);
        if (w !== undefined) return w;
      }
    }
    for (const c of this.networks) {
      if (((dst & c.mask) >>> 0) === c.network && admits(c, protocol, port)) return c.service;
    }
    return undefined;
  }

  /** Does any entry claim `dst` (any protocol or port)? ICMP echo is answered for these. */
  claimsAddress(dst: number, name: string | undefined): boolean {
    if (name !== undefined) {
      const n = normalizeName(name);
      if (this.exact.has(n)) return true;
      for (let dot = n.indexOf('.'); dot >= 0; dot = n.indexOf('.', dot + 1)) if (this.wildcard.has(n.slice(dot))) return true;
    }
    for (const c of this.networks) if (((dst & c.mask) >>> 0) === c.network) return true;
    return false;
  }

  /** The networks packets must be routed into the TUN for (IPs and CIDRs of the entries), without duplicates. */
  routes(): InterceptRoute[] {
    const seen = new Set<string>();
    const out: InterceptRoute[] = [];
    for (const c of this.networks) {
      const cidr = `${formatIpv4(c.network)}/${c.prefixLength}`;
      if (seen.has(cidr)) continue;
      seen.add(cidr);
      out.push({ network: c.network, prefixLength: c.prefixLength, cidr });
    }
    return out;
  }
}

function push(map: Map<string, Claim[]>, key: string, claim: Claim): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [claim]);
  else list.push(claim);
}

function pick(claims: Claim[] | undefined, protocol: InterceptProtocol, port: number): string | undefined {
  if (claims === undefined) return undefined;
  for (const c of claims) if (admits(c, protocol, port)) return c.service;
  return undefined;
}

function admits(c: Claim, protocol: InterceptProtocol, port: number): boolean {
  if (protocol === 'tcp' ? !c.tcp : !c.udp) return false;
  for (const r of c.ports) if (port >= r.low && port <= r.high) return true;
  return false;
}

/** DNS names compare case-insensitively (RFC 4343) and without the root's trailing dot. */
function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}
