/**
 * Service routes: which link leads to a router hosting a service, learned
 * from ANNOUNCE frames so that a circuit finds its path without asking the
 * controller (distance vector with split horizon). Pure state: no I/O, no
 * timers; the caller sends what `announcementsFor` returns.
 *
 * ANNOUNCE body (MessagePack): { routes: [[service, hostRouterId, hops], …], full: boolean }
 *   hops = 0 at the hosting router itself; each router adds 1 when it passes
 *   a route on. `full` replaces everything learned from that link; otherwise
 *   entries with hops = WITHDRAWN remove a route.
 */

/** Routes longer than this are dropped (count-to-infinity guard; fabrics are shallow). */
export const MAX_HOPS = 16;
export const WITHDRAWN = 0xff;

export interface RouteEntry {
  service: string;
  hostRouterId: string;
  hops: number;
}

interface Learned { hostRouterId: string; hops: number }

export class ServiceRoutes {
  /** service → link id → best route via that link. */
  private readonly learned = new Map<string, Map<string, Learned>>();
  /** Services hosted by this router. */
  private readonly local = new Set<string>();

  constructor(readonly routerId: string) {}

  /** Sets the services this router hosts; returns true if that changed. */
  setLocal(services: Iterable<string>): boolean {
    const next = new Set(services);
    const changed = next.size !== this.local.size || [...next].some((s) => !this.local.has(s));
    this.local.clear();
    for (const s of next) this.local.add(s);
    return changed;
  }

  hostsLocally(service: string): boolean {
    return this.local.has(service);
  }

  /**
   * Applies an ANNOUNCE from `linkId`. Entries that name this router as the
   * host, exceed MAX_HOPS or are malformed are ignored. Returns true if the
   * best routes changed (the caller then re-announces).
   */
  applyAnnouncement(linkId: string, routes: readonly RouteEntry[], full: boolean): boolean {
    const before = this.snapshot();
    if (full) this.dropLink(linkId);
    for (const r of routes) {
      if (r.hostRouterId === this.routerId) continue;
      let byLink = this.learned.get(r.service);
      if (r.hops === WITHDRAWN) {
        byLink?.delete(linkId);
        if (byLink?.size === 0) this.learned.delete(r.service);
        continue;
      }
      if (!Number.isInteger(r.hops) || r.hops < 0 || r.hops + 1 > MAX_HOPS) continue;
      if (byLink === undefined) {
        byLink = new Map();
        this.learned.set(r.service, byLink);
      }
      byLink.set(linkId, { hostRouterId: r.hostRouterId, hops: r.hops + 1 });
    }
    return this.snapshot() !== before;
  }

  /** Forgets everything learned over a link that went down; true if routes changed. */
  linkDown(linkId: string): boolean {
    const before = this.snapshot();
    this.dropLink(linkId);
    return this.snapshot() !== before;
  }

  /**
   * Where to send a circuit for `service`: `local` if hosted here, else the
   * link with the fewest hops (ties broken by link id, so the choice is
   * stable), or undefined when no route is known.
   */
  next(service: string): { local: true } | { local: false; linkId: string; hostRouterId: string; hops: number } | undefined {
    if (this.local.has(service)) return { local: true };
    const byLink = this.learned.get(service);
    if (byLink === undefined) return undefined;
    let best: { linkId: string; hostRouterId: string; hops: number } | undefined;
    for (const [linkId, l] of byLink) {
      if (best === undefined || l.hops < best.hops || (l.hops === best.hops && linkId < best.linkId)) best = { linkId, hostRouterId: l.hostRouterId, hops: l.hops };
    }
    return best === undefined ? undefined : { local: false, ...best };
  }

  /**
   * The full table to announce to `linkId`: local services at 0 hops, and
   * learned best routes — except those learned from that same link (split
   * horizon), which are sent as withdrawals so stale paths die at once.
   */
  announcementsFor(linkId: string): RouteEntry[] {
    const out: RouteEntry[] = [];
    for (const s of this.local) out.push({ service: s, hostRouterId: this.routerId, hops: 0 });
    for (const service of this.learned.keys()) {
      if (this.local.has(service)) continue;
      const best = this.next(service);
      if (best === undefined || best.local) continue;
      out.push(best.linkId === linkId
        ? { service, hostRouterId: best.hostRouterId, hops: WITHDRAWN }
        : { service, hostRouterId: best.hostRouterId, hops: best.hops });
    }
    return out;
  }

  /** Known services (local and learned), for status output. */
  services(): string[] {
    return [...new Set([...this.local, ...this.learned.keys()])].sort();
  }

  private dropLink(linkId: string): void {
    for (const [service, byLink] of this.learned) {
      byLink.delete(linkId);
      if (byLink.size === 0) this.learned.delete(service);
    }
  }

  /** A string of the best routes, to tell whether an update changed anything. */
  private snapshot(): string {
    const parts: string[] = [];
    for (const service of [...this.learned.keys()].sort()) {
      const n = this.next(service);
      if (n !== undefined && !n.local) parts.push(`${service}>${n.linkId}:${n.hops}`);
    }
    return parts.join('|');
  }
}
