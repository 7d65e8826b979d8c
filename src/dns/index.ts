/**
 * DNS of the tun interception mode: the only public door of src/dns.
 *
 * `DnsService` is what the router wires: it answers intercepted hostnames with
 * pool addresses (names.ts, pool.ts, server.ts), forwards other names upstream
 * (forwarder.ts), serves UDP and TCP on every `dnsListen` address
 * (listener.ts), and tells the packet path which name and service a pool
 * address stands for.
 *
 *   router ── setIntercepts(list) on each policy update
 *   packet path ── serviceOf(dstIp, proto, dstPort) on a new flow ── touch(dstIp, now) as it carries traffic
 *   clients ── UDP/TCP :53 ──▶ listener ──▶ handler ──▶ reply | forwarder ──▶ upstream
 *
 * Time: every `now` is milliseconds of one monotonic clock. The service reads
 * `clock` (default `performance.now`) for queries; `touch` callers pass a
 * value from the same clock (pass the router's coarse clock as `clock`).
 */
import assert from 'node:assert/strict';
import type { Logger } from '../log/index.js';
import { parseHostPort, type HostPort } from '../config/address.js';
import { EdgeError } from '../errors.js';
import { Forwarder, type ForwarderCounters } from './forwarder.js';
import { DnsListener, type BoundAddress } from './listener.js';
import { InterceptedNames, type InterceptSpec } from './names.js';
import { AddressPool, parseIpv4 } from './pool.js';
import { DnsHandler, truncateReply, type DnsCounters } from './server.js';

export { AddressPool, DEFAULT_POOL_IDLE_MS, DEFAULT_POOL_MAX_ENTRIES, TOUCH_RESOLUTION_MS, formatIpv4, parseIpv4, type AddressPoolOptions, type PoolMiss } from './pool.js';
export { InterceptedNames, NameTable, covers, normalizeName, splitAddresses, type InterceptSpec, type NameMatch, type PortRange, type SplitAddresses } from './names.js';
export { DEFAULT_TTL_SECONDS, DnsCounters, DnsHandler, Rcode, errorReply, truncateReply, type DnsDecision, type DnsDropReason, type DnsHandlerOptions } from './server.js';
export { DEFAULT_UPSTREAM_TIMEOUT_MS, Forwarder, ForwarderCounters, type ForwardCallback, type ForwardOptions, type ForwarderOptions } from './forwarder.js';
export { DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_TCP_IDLE_MS, DnsListener, type BoundAddress, type DnsListenerOptions } from './listener.js';
export { LENGTH_PREFIX_BYTES, MessageReader, writeMessage } from './framing.js';

export interface DnsServiceOptions {
  /** `HOST:PORT` addresses to serve on (`tunnel.tun.dnsListen`); port 0 picks one (tests). */
  readonly listen: readonly string[];
  /** `IP:PORT` resolvers for other names (`tunnel.tun.upstream`); empty: they get REFUSED. */
  readonly upstream: readonly string[];
  /** The pool, `A.B.C.D/LEN` (`tunnel.tun.dnsRange`). */
  readonly range: string;
  /** IPv4 addresses the pool must not hand out: the TUN's own and the DNS listener's. */
  readonly reserved: readonly (string | number)[];
  /** Root or router logger; the service makes its children (`subsys: 'dns'`). */
  readonly log: Logger;
  /** TTL of our answers. Default 60 s. */
  readonly ttlSeconds?: number;
  /** Idle time after which a name's address may go to another name when the pool is full. Default 10 min. */
  readonly poolIdleMs?: number;
  /** Most names holding addresses at once. Default 65 536. */
  readonly maxNames?: number;
  /** Per upstream try. Default 2 s. */
  readonly upstreamTimeoutMs?: number;
  /** Idle TCP client connections are closed after this. Default 10 s. */
  readonly tcpIdleMs?: number;
  /** Default 128. */
  readonly maxTcpConnections?: number;
  /** Forwarded queries out per TCP client connection before reading pauses. Default 16. */
  readonly maxTcpInflight?: number;
  /** Monotonic milliseconds. Default `performance.now`. */
  readonly clock?: () => number;
}

function parseList(kind: string, texts: readonly string[], requireIp: boolean): HostPort[] {
  return texts.map((text) => {
    const parsed = parseHostPort(text, requireIp ? { requireIp: true, allowUnspecified: false } : { allowPortZero: true });
    if (!parsed.ok) throw new EdgeError('ERR_DNS', `DNS ${kind} "${text}": ${parsed.reason}`);
    return parsed.value;
  });
}

/**
 * The tun mode's DNS server.
 *
 * @example
 * ```ts
 * const dns = new DnsService({ listen: ['100.64.0.2:53'], upstream: ['192.0.2.53:53'], range: '100.64.0.0/10',
 *   reserved: ['100.64.0.1', '100.64.0.2'], log });
 * dns.setIntercepts([{ service: 'plc', addresses: ['*.plant.internal'], portRanges: [{ low: 502, high: 502 }], protocols: ['tcp'] }]);
 * await dns.start();
 * dns.serviceOf(dstIp, 'tcp', 502); // 'plc' once a client resolved a name under plant.internal to dstIp
 * await dns.stop();
 * ```
 */
export class DnsService {
  readonly pool: AddressPool;
  readonly names: InterceptedNames;
  readonly handler: DnsHandler;
  private readonly forwarder: Forwarder | undefined;
  private readonly listener: DnsListener;
  private readonly log: Logger;
  private readonly clock: () => number;

  constructor(opts: DnsServiceOptions) {
    this.log = opts.log.child({ subsys: 'dns' });
    this.clock = opts.clock ?? (() => performance.now());
    const reserved = opts.reserved.map((r) => {
      const ip = typeof r === 'number' ? r : parseIpv4(r);
      if (ip === undefined) throw new EdgeError('ERR_DNS', `reserved pool address "${String(r)}" is not an IPv4 address`);
      return ip;
    });
    try {
      this.pool = new AddressPool({ range: opts.range, reserved, idleMs: opts.poolIdleMs, maxEntries: opts.maxNames });
    } catch (err) {
      throw new EdgeError('ERR_DNS', (err as Error).message, { cause: err });
    }
    this.names = new InterceptedNames(this.pool);
    const upstream = parseList('upstream', opts.upstream, true);
    this.handler = new DnsHandler(this.names, { forwarding: upstream.length > 0, ttlSeconds: opts.ttlSeconds });
    this.forwarder = upstream.length > 0
      ? new Forwarder({ upstream, log: opts.log, timeoutMs: opts.upstreamTimeoutMs, clock: opts.clock })
      : undefined;
    this.listener = new DnsListener({
      listen: parseList('listen address', opts.listen, false),
      handler: this.handler,
      forwarder: this.forwarder,
      log: opts.log,
      clock: opts.clock,
      tcpIdleMs: opts.tcpIdleMs,
      maxTcpConnections: opts.maxTcpConnections,
      maxTcpInflight: opts.maxTcpInflight,
    });
  }

  /**
   * Answers one query that did not come through the listener's sockets: a
   * datagram to a DNS address served inside the TUN's own stack. `done` gets
   * the reply (owned; the forwarded ones later), or undefined when the query
   * deserves none. A reply longer than `maxReplyBytes` (what fits one packet
   * of the TUN) is cut to its header and question with TC set, so the client
   * asks again over TCP.
   *
   * @example
   * ```ts
   * dns.query(udpPayload, (reply) => { if (reply !== undefined) sendUdp(reply); }, mtu - 28);
   * ```
   */
  query(query: Buffer, done: (reply: Buffer | undefined) => void, maxReplyBytes = Number.POSITIVE_INFINITY): void {
    const decision = this.handler.answer(query, this.clock());
    if (decision.kind === 'drop') {
      done(undefined);
      return;
    }
    if (decision.kind === 'reply') {
      done(decision.reply.length > maxReplyBytes ? truncateReply(decision.reply) : decision.reply);
      return;
    }
    const limit = Math.min(maxReplyBytes, decision.maxUdpBytes);
    // The handler forwards only when it was built with an upstream, and then the forwarder exists.
    assert.ok(this.forwarder !== undefined, 'forward decision without a forwarder');
    this.forwarder.forward(query, { tcp: false, edns: decision.edns, maxUdpBytes: limit }, (reply) => {
      done(reply.length > limit ? truncateReply(reply) : reply);
    });
  }

  /** Policy update: the intercepts the router's identity may Dial now. Names still intercepted keep their addresses. */
  setIntercepts(list: readonly InterceptSpec[]): void {
    this.names.setIntercepts(list);
    this.log.info({ names: this.names.table.size, pooled: this.pool.entries }, 'DNS intercepts updated');
  }

  /** The hostname behind a pool address (for the dial's original destination), if one holds it. */
  nameOf(ip: number): string | undefined {
    return this.names.nameOf(ip);
  }

  /** The service for a new flow to pool address `ip` (first intercept covering protocol and port), if any. */
  serviceOf(ip: number, protocol: 'tcp' | 'udp', port: number): string | undefined {
    return this.names.serviceOf(ip, protocol, port);
  }

  /** Every intercept claiming the name behind `ip`, most specific first. */
  interceptsOf(ip: number): readonly InterceptSpec[] {
    return this.names.interceptsOf(ip);
  }

  /** True when `ip` lies in the pool's network (route it into the TUN). */
  inPool(ip: number): boolean {
    return this.pool.contains(ip);
  }

  /** Traffic used `ip` (cheap; per flow event or per packet). */
  touch(ip: number, nowMs: number): void {
    this.pool.touch(ip, nowMs);
  }

  /** The listen addresses as bound (ports resolved). */
  get addresses(): readonly BoundAddress[] {
    return this.listener.addresses;
  }

  get counters(): { readonly handler: DnsCounters; readonly forwarder: ForwarderCounters | undefined } {
    return { handler: this.handler.counters, forwarder: this.forwarder?.counters };
  }

  /** Opens the forwarder's sockets, then binds every listen address. Throws EdgeError ERR_DNS naming the address on failure. */
  async start(): Promise<void> {
    await this.forwarder?.start();
    try {
      await this.listener.start();
    } catch (err) {
      await this.forwarder?.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.forwarder?.stop();
    await this.listener.stop();
  }
}
