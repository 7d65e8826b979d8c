/**
 * Which service a packet captured on the TUN belongs to when it goes to an
 * address (not a name): the IPs and CIDRs in the intercept.v1 configs of the
 * services this router may Dial, asked once per new flow (a TCP SYN, the
 * first datagram of a UDP flow, an ICMP echo), never per packet.
 *
 *   10.20.0.7            IPv4      → exactly that destination
 *   10.20.0.0/16         IPv4 CIDR → any destination inside it
 *
 * Hostnames and wildcards are the DNS service's (src/dns/names.ts): a packet
 * to a pool address is matched by the name behind it there, first. Among the
 * services that claim an address, the most specific prefix wins, then the
 * first whose protocols and port ranges admit the packet, in the order of the
 * list (services sorted by name, so the choice is stable across policy
 * updates). IPv6 entries are kept out for now (the stack is IPv4 first).
 *
 * Pure: no I/O, no timers, no logging.
 */
import { formatIpv4 } from '../config/address.js';
import { covers, type InterceptSpec } from '../dns/index.js';
import { parseIpv4Cidr } from '../wire/index.js';

export type InterceptProtocol = 'tcp' | 'udp';

/** One IPv4 network of a service's intercept.v1 addresses. */
interface NetClaim {
  readonly spec: InterceptSpec;
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
  /** IPv4 networks (a bare IP is a /32), most specific first. */
  private readonly networks: NetClaim[] = [];

  constructor(entries: readonly InterceptSpec[]) {
    const sorted = [...entries].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
    for (const e of sorted) {
      for (const raw of e.addresses) {
        // An IP is a /32; host bits of a CIDR are ignored (10.1.2.3/16 means 10.1.0.0/16), as the
        // controller accepted it. Hostnames and wildcards are the DNS service's; IPv6: not yet.
        const net = parseIpv4Cidr(raw.trim());
        if (net !== undefined) this.networks.push({ spec: e, network: net.network, mask: net.mask, prefixLength: net.prefixLength });
      }
    }
    // Stable sort: equal prefixes keep list order.
    this.networks.sort((x, y) => y.prefixLength - x.prefixLength);
  }

  /**
   * The service for a new flow to `dst` (unsigned 32-bit IPv4) port `port`,
   * or undefined when no IP or CIDR entry intercepts it.
   */
  match(protocol: InterceptProtocol, dst: number, port: number): string | undefined {
    for (const c of this.networks) {
      if (((dst & c.mask) >>> 0) === c.network && covers(c.spec, protocol, port)) return c.spec.service;
    }
    return undefined;
  }

  /** Does any entry claim `dst` (any protocol or port)? ICMP echo is answered for these. */
  claimsAddress(dst: number): boolean {
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
