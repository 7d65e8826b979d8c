/**
 * Address pool of the tun mode's DNS server: hands out IPv4 addresses from
 * `tunnel.tun.dnsRange` (default 100.64.0.0/10, the RFC 6598 shared space)
 * to intercepted hostnames, so that a client that resolved `db.plant.internal`
 * sends its packets to an address the router routes into the TUN, and the
 * packet path can tell which name (so which service) a packet is for.
 *
 * Sits between the DNS handler (server.ts, which asks `addressFor`) and the
 * packet path (which calls `nameOf` on new flows and `touch` as flows carry
 * traffic). Pure state: no I/O, no timers; `now` is passed in (milliseconds
 * of one monotonic clock, the same for every call).
 *
 * Rules:
 *   - The network address, the broadcast address (RFC 919 / RFC 922; neither
 *     on a /31 or /32, RFC 3021) and the `reserved` addresses (the TUN's own
 *     address, the DNS listener's) are never handed out.
 *   - A name keeps its address for as long as it holds one: asking again,
 *     `touch`, or a policy update that still intercepts it never moves it.
 *   - Fresh addresses are taken in order from the low end. Only when none is
 *     left (or `maxEntries` names are held) is an address reused: first an
 *     entry no longer intercepted or idle for `idleMs`, least recently used
 *     first. If none qualifies the pool is exhausted and `addressFor` says so.
 *
 * Memory is bounded by `maxEntries`, not by the size of the network: a /10
 * has 4 million addresses, and a wildcard lets any client mint new names.
 *
 *   entries (one per name holding an address)
 *     byName: name → entry        byIp: ip → entry
 *     active:   entries still intercepted, least recently used first
 *     inactive: entries no longer intercepted, least recently used first
 */
import { formatIpv4, parseIpv4Cidr } from '../config/address.js';
import { parseIpv4Address } from '../wire/ipv4.js';

export { formatIpv4 };

/** Idle time after which an address may be reused when the pool is full: far above any TTL we hand out. */
export const DEFAULT_POOL_IDLE_MS = 10 * 60_000;
/** Most names held at once by default (about 100 bytes each). */
export const DEFAULT_POOL_MAX_ENTRIES = 65_536;
/** `touch` updates recency at most once per this interval per address, so per-packet calls stay cheap. */
export const TOUCH_RESOLUTION_MS = 1000;

/**
 * Parses dotted-quad IPv4 text into an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * parseIpv4('100.64.0.1') // 0x64400001
 * parseIpv4('1.2.3')      // undefined
 * ```
 */
export function parseIpv4(text: string): number | undefined {
  return parseIpv4Address(text);
}

export interface AddressPoolOptions {
  /** The pool's network, `A.B.C.D/LEN` (host bits zero). */
  range: string;
  /** Addresses inside the range never handed out (the TUN address, the DNS address); addresses outside it are ignored. */
  reserved?: readonly number[];
  /** An active entry unused for this long may be reused when the pool is full. Default {@link DEFAULT_POOL_IDLE_MS}. */
  idleMs?: number;
  /** Most names held at once. Default {@link DEFAULT_POOL_MAX_ENTRIES}. */
  maxEntries?: number;
}

/** One name holding one address. */
class PoolEntry {
  readonly name: string;
  readonly ip: number;
  lastUsedMs: number;
  active: boolean;

  constructor(name: string, ip: number, nowMs: number) {
    this.name = name;
    this.ip = ip;
    this.lastUsedMs = nowMs;
    this.active = true;
  }
}

/** Why `addressFor` found no address. */
export type PoolMiss = 'exhausted';

/**
 * Stable name → IPv4 address allocation over one network.
 *
 * @example
 * ```ts
 * const pool = new AddressPool({ range: '100.64.0.0/10', reserved: [parseIpv4('100.64.0.1')!, parseIpv4('100.64.0.2')!] });
 * const ip = pool.addressFor('db.plant.internal', now);   // 100.64.0.3 as a number
 * pool.nameOf(ip);                                         // 'db.plant.internal'
 * ```
 */
export class AddressPool {
  /** First address of the network. */
  readonly network: number;
  readonly prefixLength: number;
  /** Addresses in the network (2^(32 − prefix)). */
  readonly size: number;
  /** How many names may hold an address at once. */
  readonly capacity: number;
  /** How many times an address was taken from one name and given to another. */
  reused = 0;

  private readonly first: number;
  private readonly last: number;
  private readonly reserved: ReadonlySet<number>;
  private readonly idleMs: number;
  private readonly maxEntries: number;
  /** Next never-used address to hand out; past `last` once the network is used up. */
  private cursor: number;
  private readonly byName = new Map<string, PoolEntry>();
  private readonly byIp = new Map<number, PoolEntry>();
  private active = new Set<PoolEntry>();
  private inactive = new Set<PoolEntry>();

  constructor(opts: AddressPoolOptions) {
    const cidr = parseIpv4Cidr(opts.range);
    if (!cidr.ok) throw new RangeError(`DNS pool range "${opts.range}": ${cidr.reason}`);
    this.network = cidr.value.network;
    this.prefixLength = cidr.value.prefixLength;
    this.size = cidr.value.size;
    // RFC 3021: a /31 has no network or broadcast address; a /32 is one address.
    const edges = this.prefixLength <= 30 ? 1 : 0;
    this.first = this.network + edges;
    this.last = this.network + this.size - 1 - edges;
    this.reserved = new Set((opts.reserved ?? []).filter((ip) => ip >= this.first && ip <= this.last));
    this.idleMs = opts.idleMs ?? DEFAULT_POOL_IDLE_MS;
    this.maxEntries = opts.maxEntries ?? DEFAULT_POOL_MAX_ENTRIES;
    this.capacity = Math.min(this.maxEntries, this.last - this.first + 1 - this.reserved.size);
    this.cursor = this.first;
  }

  /** Names holding an address now. */
  get entries(): number {
    return this.byName.size;
  }

  /** True when `ip` lies in the pool's network (whether or not a name holds it). */
  contains(ip: number): boolean {
    return ip >= this.network && ip < this.network + this.size;
  }

  /**
   * The address of `name`, allocating one if it has none; counts as a use.
   * `name` must already be normalised (names.ts `normalizeName`).
   * Returns 'exhausted' when every address is held by a name still intercepted and in use.
   */
  addressFor(name: string, nowMs: number): number | PoolMiss {
    const held = this.byName.get(name);
    if (held !== undefined) {
      if (!held.active) this.activate(held);
      this.use(held, nowMs);
      return held.ip;
    }
    if (this.byName.size < this.maxEntries) {
      const fresh = this.nextFresh();
      if (fresh !== undefined) return this.add(new PoolEntry(name, fresh, nowMs));
    }
    const victim = this.reclaimable(nowMs);
    if (victim === undefined) return 'exhausted';
    this.remove(victim);
    this.reused++;
    return this.add(new PoolEntry(name, victim.ip, nowMs));
  }

  /** The address `name` holds, without allocating or counting a use. */
  addressOf(name: string): number | undefined {
    return this.byName.get(name)?.ip;
  }

  /** The name holding `ip`, if any. */
  nameOf(ip: number): string | undefined {
    return this.byIp.get(ip)?.name;
  }

  /**
   * Records that traffic used `ip` (call on new flows and as flows carry data).
   * Cheap enough per packet: recency moves at most once per {@link TOUCH_RESOLUTION_MS}.
   * Returns false when no name holds `ip`.
   */
  touch(ip: number, nowMs: number): boolean {
    const entry = this.byIp.get(ip);
    if (entry === undefined) return false;
    if (nowMs - entry.lastUsedMs >= TOUCH_RESOLUTION_MS) this.use(entry, nowMs);
    return true;
  }

  /**
   * After a policy update: marks each entry intercepted or not by `isIntercepted(name)`.
   * Entries keep their addresses either way; ones no longer intercepted become the first
   * to be reused when the pool is full, and get their address back if intercepted again first.
   */
  retain(isIntercepted: (name: string) => boolean): void {
    const active: PoolEntry[] = [];
    const inactive: PoolEntry[] = [];
    for (const entry of this.byName.values()) {
      entry.active = isIntercepted(entry.name);
      (entry.active ? active : inactive).push(entry);
    }
    // Rebuild both recency orders from the timestamps: entries moved between the two lists keep their place.
    const byRecency = (a: PoolEntry, b: PoolEntry): number => a.lastUsedMs - b.lastUsedMs;
    this.active = new Set(active.sort(byRecency));
    this.inactive = new Set(inactive.sort(byRecency));
  }

  private use(entry: PoolEntry, nowMs: number): void {
    entry.lastUsedMs = nowMs;
    // Delete and re-add moves the entry to the end of its set's insertion order: the most recently used.
    const set = entry.active ? this.active : this.inactive;
    set.delete(entry);
    set.add(entry);
  }

  private activate(entry: PoolEntry): void {
    this.inactive.delete(entry);
    entry.active = true;
    this.active.add(entry);
  }

  private nextFresh(): number | undefined {
    while (this.cursor <= this.last) {
      const ip = this.cursor++;
      if (!this.reserved.has(ip)) return ip;
    }
    return undefined;
  }

  /** The least recently used entry that may give up its address: no longer intercepted, or idle. */
  private reclaimable(nowMs: number): PoolEntry | undefined {
    const gone = first(this.inactive);
    const oldest = first(this.active);
    const idle = oldest !== undefined && nowMs - oldest.lastUsedMs >= this.idleMs ? oldest : undefined;
    if (gone === undefined) return idle;
    if (idle === undefined) return gone;
    return idle.lastUsedMs < gone.lastUsedMs ? idle : gone;
  }

  private add(entry: PoolEntry): number {
    this.byName.set(entry.name, entry);
    this.byIp.set(entry.ip, entry);
    this.active.add(entry);
    return entry.ip;
  }

  private remove(entry: PoolEntry): void {
    this.byName.delete(entry.name);
    this.byIp.delete(entry.ip);
    (entry.active ? this.active : this.inactive).delete(entry);
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const v of set) return v;
  return undefined;
}
