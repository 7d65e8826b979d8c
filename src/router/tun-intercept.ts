/**
 * tun interception: the I/O shell between the TUN device and the router's
 * circuits. Devices that run no ztedge software send IP packets to service
 * addresses (pool addresses the DNS server gave for service names, or the
 * IPs and CIDRs of intercept.v1 configs); the kernel routes them into the
 * TUN, and this shell terminates them:
 *
 *   TUN ──packet──▶ parse IPv4 ─┬─ TCP ─▶ TcpTable ── SYN ─▶ dial circuit ─▶ SYN-ACK (or RST)
 *                               │                     data ◀─▶ TcpFlow (a Duplex: the circuit's local end)
 *                               ├─ UDP ─▶ DNS address:53 ─▶ DNS handler / upstream ─▶ reply
 *                               │         other ─▶ flow (4-tuple) ─▶ DatagramCircuit ◀─▶ circuit
 *                               └─ ICMP echo to an intercepted address ─▶ echo reply
 *   TcpTable / flows ──segments, datagrams──▶ IPv4 packet ──▶ TUN
 *
 * A SYN dials first and answers second: the device's connect() completes
 * only when the hosting router accepted the circuit, and fails with
 * "connection refused" (RST) when policy or the target says no.
 *
 * Per-packet work is parse → table → emit, with no logging, no closures
 * and no promises; drops are counted per reason (`counters`). Timers are
 * one coarse interval driving the TCP table (and the UDP idle sweeper).
 */
import { performance } from 'node:perf_hooks';
import { Duplex } from 'node:stream';
import type { Logger } from '../log/index.js';
import type { TunDevice } from '../tun/index.js';
import {
  IPV4_DEFAULT_TTL, IpProtocol, emitIcmpv4EchoReply, emitIcmpv4Unreachable, emitTcpIpv4, emitUdpIpv4, icmpv4ErrorAllowed,
  icmpv4UnreachableBytes, ipv4ToString, isDrop, parseIcmpv4, parseIpv4, parseTcpIpv4, parseUdpIpv4, tcpIpv4PacketBytes,
  udpIpv4PacketBytes, emitPlainVnetHeader, emitVnetHeader, parseVnetHeader, tcpOffloadVnetHeader, VnetFlags,
  type Ipv4Envelope, type Ipv4Packet, type UdpDatagram, type WireDrop,
} from '../wire/index.js';
import { TcpTable, type TcpCloseReason, type TcpConfig, type TcpConnection, type TcpHandler, type TcpSegmentOut, type TcpSynVerdict } from '../stack/tcp/index.js';
import { LENGTH_PREFIX_BYTES, MessageReader, type DnsService } from '../dns/index.js';
import { CircuitEnd, CircuitError, type CircuitStream, type DialRequest } from './mux.js';
import { DatagramCircuit, IdleSweeper, UdpCounters, type DatagramEndpoint } from './udp.js';
import { InterceptTable } from './intercepts.js';

/** Dials a circuit for a captured stream (Router.dialLocal). */
export type LocalDialer = (stream: CircuitStream, req: DialRequest, onResult: (err: { code: number; reason: string } | undefined) => void) => void;

export interface TunInterceptOptions {
  device: TunDevice;
  /** The router's identity id: circuits are dialed on its behalf. */
  identity: string;
  dial: LocalDialer;
  /** The DNS service: names, pool, and the answers for queries to `dnsAddresses`. */
  dns: DnsService;
  /** Addresses (unsigned 32-bit IPv4) and ports at which this stack answers DNS itself, inside the TUN's network. */
  dnsAddresses: readonly { ip: number; port: number }[];
  /** The router's own address on the TUN: ICMP errors come from it. */
  tunAddress: number;
  tcp?: Partial<TcpConfig>;
  maxTcpFlows: number;
  maxUdpFlows: number;
  udpIdleMs: number;
  log: Logger;
}

/** Per-reason counters of the shell (the TCP table and UDP circuits keep their own). */
export class TunCountersView {
  packetsIn = 0;
  notIpv4 = 0;
  /** IPv4/TCP/UDP/ICMP parse drops, by reason. */
  readonly wireDrops: Partial<Record<WireDrop, number>> = {};
  /** Protocols other than TCP, UDP and ICMP. */
  otherProtocol = 0;
  tcpNoService = 0;
  tcpDialRefused = 0;
  udpNoService = 0;
  udpFlowLimit = 0;
  udpFlowsOpened = 0;
  icmpEchoReplies = 0;
  icmpIgnored = 0;
  dnsQueries = 0;
  dnsTcpConnections = 0;
  /** Packets the TUN did not take (its queue was full). */
  txDropped = 0;
}

/** Tick of the coarse clock: TCP timers (delayed ACK 40 ms, RTO ≥ 200 ms) need no finer. */
const TICK_MS = 10;
/** gso_size for a segment of at most one MSS: any value ≥ its payload keeps the kernel from cutting it. */
const MAX_GSO_SIZE = 65_535;
/** Bytes held in a flow's readable side before the TCP window starts closing. */
const FLOW_READ_BUFFER_BYTES = 64 * 1024;

export class TunIntercept implements DatagramEndpoint {
  readonly counters = new TunCountersView();
  readonly udpCounters = new UdpCounters();
  readonly tcp: TcpTable;
  private intercepts = new InterceptTable([]);
  private readonly sweeper: IdleSweeper;
  /** UDP flows: (device address, port) → (service address, port) → circuit. */
  private readonly udpFlows = new Map<number, Map<number, DatagramCircuit>>();
  private readonly udpKeys = new Map<DatagramCircuit, UdpFlowKey>();
  private udpCount = 0;
  private readonly env: Ipv4Envelope = { src: 0, dst: 0, ttl: IPV4_DEFAULT_TTL, id: 0, tos: 0, dontFragment: true };
  private readonly dnsAt = new Map<number, number>();
  /** Bytes of virtio_net_hdr in front of every packet (0 or 10). */
  private readonly vnet: number;
  private timer: NodeJS.Timeout | undefined = undefined;
  private readonly log: Logger;
  /** The packet being handled (for ICMP errors that quote it). */
  private current: Buffer = Buffer.alloc(0);

  constructor(private readonly opts: TunInterceptOptions) {
    this.log = opts.log.child({ subsys: 'tun', dev: opts.device.name });
    this.tcp = new TcpTable(
      { sendSegment: (src, dst, seg) => this.sendSegment(src, dst, seg) },
      { onSyn: (conn) => this.onSyn(conn) },
      { tcp: opts.tcp, maxConnections: opts.maxTcpFlows },
    );
    this.sweeper = new IdleSweeper(opts.udpIdleMs);
    this.vnet = opts.device.vnetHdrBytes;
    for (const d of opts.dnsAddresses) this.dnsAt.set(d.ip, d.port);
  }

  start(): void {
    this.opts.device.onPackets((pkt) => this.onPacket(pkt));
    this.timer = setInterval(() => this.onTick(), TICK_MS);
    this.timer.unref();
  }

  /** Resets every TCP flow (RST to the devices), ends the UDP flows and stops reading the device. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.opts.device.onPackets(null);
    this.tcp.abortAll(performance.now());
    this.sweeper.stop();
  }

  /** Policy update: what this router's identity may Dial now. Open flows keep going (the hosting router re-checks them). */
  setIntercepts(table: InterceptTable): void {
    this.intercepts = table;
  }

  get udpFlowCount(): number {
    return this.udpCount;
  }

  // ---- packets in -----------------------------------------------------------

  /** One packet from the TUN (owned: the device made it for us, so views of it may be kept). */
  private onPacket(pkt: Buffer): void {
    const c = this.counters;
    c.packetsIn++;
    const v = this.vnet;
    // With IFF_VNET_HDR the kernel may hand over TCP super-segments (up to 64 KB, one read) whose
    // checksum it left partial (NEEDS_CSUM): it built them itself, so they are not checked again.
    let verify = true;
    if (v !== 0) {
      const h = parseVnetHeader(pkt, 0);
      if (isDrop(h)) return this.drop(h);
      verify = (h.flags & (VnetFlags.NEEDS_CSUM | VnetFlags.DATA_VALID)) === 0;
    }
    if (pkt.length <= v || pkt[v]! >>> 4 !== 4) {
      c.notIpv4++;
      return;
    }
    const ip = parseIpv4(pkt, v);
    if (isDrop(ip)) return this.drop(ip);
    this.current = pkt;
    switch (ip.protocol) {
      case IpProtocol.TCP: {
        const seg = parseTcpIpv4(ip, verify);
        if (isDrop(seg)) return this.drop(seg);
        this.tcp.input(performance.now(), ip.src, ip.dst, seg);
        return;
      }
      case IpProtocol.UDP: {
        const d = parseUdpIpv4(ip, verify);
        if (isDrop(d)) return this.drop(d);
        this.onDatagram(ip, d);
        return;
      }
      case IpProtocol.ICMP:
        this.onIcmp(ip);
        return;
      default:
        c.otherProtocol++;
    }
  }

  private drop(reason: WireDrop): void {
    const d = this.counters.wireDrops;
    d[reason] = (d[reason] ?? 0) + 1;
  }

  private onTick(): void {
    const now = performance.now();
    if (this.tcp.nextDeadline() <= now) this.tcp.tick(now);
  }

  // ---- TCP ------------------------------------------------------------------

  private onSyn(conn: TcpConnection): TcpSynVerdict {
    const dst = conn.localIp;
    const port = conn.localPort;
    if (this.dnsAt.get(dst) === port) return this.acceptDnsOverTcp(conn);
    const service = this.serviceFor('tcp', dst, port);
    if (service === undefined) {
      this.counters.tcpNoService++;
      return 'refuse';
    }
    const flow = new TcpFlow(conn);
    conn.setHandler(flow);
    conn.user = flow;
    const req: DialRequest = { service, identity: this.opts.identity, dstAddress: this.destinationOf(dst), dstPort: port };
    // The answer is applied to the connection at once, even when the dialer answers from inside this call:
    // a far end may write or end as soon as it is accepted, and against a PENDING connection an end()
    // would refuse it and a write would wait for a wake-up that never comes.
    this.opts.dial(flow, req, (err) => {
      if (err !== undefined) {
        this.counters.tcpDialRefused++;
        this.log.debug({ service, code: err.code, reason: err.reason, dst: req.dstAddress, port }, 'tun: dial refused');
        conn.refuse(performance.now());
        return;
      }
      conn.accept(performance.now());
    });
    return 'pending';
  }

  private sendSegment(src: number, dst: number, seg: TcpSegmentOut): void {
    const v = this.vnet;
    if (v === 0) {
      const pkt = Buffer.allocUnsafe(tcpIpv4PacketBytes(seg));
      emitTcpIpv4(this.envelope(src, dst), seg, pkt, 0);
      this.write(pkt);
      return;
    }
    // Offload: the kernel finishes the TCP checksum (NEEDS_CSUM) and cuts a super-segment into gso_size
    // packets (TSO), so one write carries up to 64 KB and no checksum is summed here.
    const pkt = Buffer.allocUnsafe(v + tcpIpv4PacketBytes(seg));
    const n = emitTcpIpv4(this.envelope(src, dst), seg, pkt, v, true);
    const h = tcpOffloadVnetHeader(pkt.subarray(v, v + n), seg.gsoSize ?? MAX_GSO_SIZE);
    if (isDrop(h)) return this.drop(h);
    emitVnetHeader(h, pkt, 0);
    this.write(pkt);
  }

  // ---- UDP ------------------------------------------------------------------

  private onDatagram(ip: Ipv4Packet, d: UdpDatagram): void {
    const dnsPort = this.dnsAt.get(ip.dst);
    if (dnsPort === d.dstPort) return this.onDnsQuery(ip.src, d.srcPort, ip.dst, d.dstPort, d.payload);
    const byDevice = this.udpFlows.get(ip.src * 65536 + d.srcPort);
    let existing = byDevice?.get(ip.dst * 65536 + d.dstPort);
    if (existing !== undefined && existing.idleEndedAtMs !== 0) {
      // The flow idled out and waits for the far end's FIN (cut at the next sweep): its read side is
      // over, so this datagram would be dropped. It starts a new flow instead, as UdpProxyPort does.
      existing.destroy();
      existing = undefined;
    }
    if (existing !== undefined) return existing.receive(d.payload);
    const service = this.serviceFor('udp', ip.dst, d.dstPort);
    if (service === undefined) {
      this.counters.udpNoService++;
      this.unreachable(ip, 3); // port unreachable (RFC 792)
      return;
    }
    if (this.udpCount >= this.opts.maxUdpFlows) {
      this.counters.udpFlowLimit++;
      return;
    }
    const c = new DatagramCircuit(this, this.sweeper, this.udpCounters, ipv4ToString(ip.src), d.srcPort, Date.now());
    const key: UdpFlowKey = { device: ip.src, devicePort: d.srcPort, service: ip.dst, servicePort: d.dstPort };
    this.addFlow(key, c);
    this.counters.udpFlowsOpened++;
    c.receive(d.payload);
    const req: DialRequest = { service, identity: this.opts.identity, protocol: 'udp', dstAddress: this.destinationOf(ip.dst), dstPort: d.dstPort };
    this.opts.dial(c, req, (err) => {
      if (err === undefined) return;
      this.log.debug({ service, code: err.code, reason: err.reason }, 'tun: udp dial refused');
      // A tombstone for a few seconds: the device's next datagrams are dropped, not each dialed again.
      c.destroy();
      c.refusedAtMs = Date.now();
      this.addFlow(key, c);
      this.sweeper.add(c);
    });
  }

  private addFlow(key: UdpFlowKey, c: DatagramCircuit): void {
    const k1 = key.device * 65536 + key.devicePort;
    let byDevice = this.udpFlows.get(k1);
    if (byDevice === undefined) {
      byDevice = new Map();
      this.udpFlows.set(k1, byDevice);
    }
    const k2 = key.service * 65536 + key.servicePort;
    if (byDevice.get(k2) === c) return;
    byDevice.set(k2, c);
    this.udpKeys.set(c, key);
    this.udpCount++;
  }

  /** DatagramEndpoint: a datagram from the circuit, to the device, from the service address it sent to. */
  sendDatagram(c: DatagramCircuit, payload: Buffer): void {
    const key = this.udpKeys.get(c);
    if (key === undefined) return;
    this.sendUdp(key.service, key.servicePort, key.device, key.devicePort, payload);
  }

  /** DatagramEndpoint: the flow ended (or its tombstone expired). */
  circuitClosed(c: DatagramCircuit): void {
    const key = this.udpKeys.get(c);
    if (key === undefined) return;
    this.udpKeys.delete(c);
    const k1 = key.device * 65536 + key.devicePort;
    const byDevice = this.udpFlows.get(k1);
    if (byDevice === undefined) return;
    const k2 = key.service * 65536 + key.servicePort;
    if (byDevice.get(k2) !== c) return;
    byDevice.delete(k2);
    if (byDevice.size === 0) this.udpFlows.delete(k1);
    this.udpCount--;
  }

  private sendUdp(src: number, srcPort: number, dst: number, dstPort: number, payload: Buffer): void {
    const pkt = this.packet(udpIpv4PacketBytes(payload.length));
    // DF clear: a datagram larger than the path's MTU (a LAN behind a subnet gateway) is fragmented
    // by the kernel as it forwards it, as the sender of a UDP datagram expects (RFC 791, RFC 8085 §3.2).
    const env = this.envelope(src, dst);
    env.dontFragment = false;
    emitUdpIpv4(env, { srcPort, dstPort, payload }, pkt, this.vnet);
    env.dontFragment = true;
    this.write(pkt);
  }

  // ---- DNS ------------------------------------------------------------------

  private onDnsQuery(device: number, devicePort: number, server: number, serverPort: number, query: Buffer): void {
    this.counters.dnsQueries++;
    // Replies larger than one packet would need fragments (which devices may drop): the DNS service truncates them (TC).
    this.opts.dns.query(query, (reply) => {
      if (reply !== undefined) this.sendUdp(server, serverPort, device, devicePort, reply);
    }, this.opts.device.mtu - 28);
  }

  /**
   * DNS over TCP to an in-stack DNS address (RFC 7766: clients retry over TCP
   * after a truncated UDP answer): the connection ends here, each
   * length-prefixed query is answered in order.
   */
  private acceptDnsOverTcp(conn: TcpConnection): TcpSynVerdict {
    this.counters.dnsTcpConnections++;
    const flow = new TcpFlow(conn);
    conn.setHandler(flow);
    conn.user = flow;
    const reader = new MessageReader();
    let inflight = 0;
    let ended = false;
    const pump = (): void => {
      for (let q = reader.next(); q !== undefined; q = reader.next()) {
        this.counters.dnsQueries++;
        inflight++;
        // Answers go back in the order they complete (RFC 7766 §7: out-of-order is allowed; ids tell them apart).
        this.opts.dns.query(q, (reply) => {
          inflight--;
          if (reply !== undefined && !flow.destroyed) {
            const prefix = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES);
            prefix.writeUInt16BE(reply.length, 0);
            flow.cork();
            flow.write(prefix);
            flow.write(reply);
            flow.uncork();
          }
          if (ended && inflight === 0) flow.end();
        });
      }
    };
    flow.on('data', (chunk: Buffer) => { reader.push(chunk); pump(); });
    flow.on('end', () => { ended = true; if (inflight === 0) flow.end(); });
    flow.on('error', () => undefined);
    return 'accept';
  }

  // ---- ICMP -----------------------------------------------------------------

  private onIcmp(ip: Ipv4Packet): void {
    const msg = parseIcmpv4(ip.payload);
    if (isDrop(msg)) return this.drop(msg);
    // Echo requests (type 8) to addresses we answer for: intercepted ones and our DNS addresses.
    if (msg.type !== 8 || !(this.dnsAt.has(ip.dst) || this.intercepts.claimsAddress(ip.dst) || this.opts.dns.nameOf(ip.dst) !== undefined)) {
      this.counters.icmpIgnored++;
      return;
    }
    const pkt = this.packet(ip.totalBytes);
    emitIcmpv4EchoReply(ip, pkt, this.vnet);
    this.counters.icmpEchoReplies++;
    this.write(pkt);
  }

  /** ICMP destination unreachable about the packet being handled (RFC 1812 §4.3.2: never about an ICMP error, a broadcast…). */
  private unreachable(ip: Ipv4Packet, code: number): void {
    if (!icmpv4ErrorAllowed(ip)) return;
    const original = this.current.subarray(this.vnet, this.vnet + ip.totalBytes);
    const pkt = this.packet(icmpv4UnreachableBytes(original));
    emitIcmpv4Unreachable(code, this.opts.tunAddress, original, pkt, this.vnet);
    this.write(pkt);
  }

  // ---- helpers --------------------------------------------------------------

  /** The service a new flow to dst:port belongs to: by the name behind a pool address, else by IP/CIDR. */
  private serviceFor(protocol: 'tcp' | 'udp', dst: number, port: number): string | undefined {
    return this.opts.dns.serviceOf(dst, protocol, port) ?? this.intercepts.match(protocol, dst, port);
  }

  /** The original destination for host.v1 forwardAddress: the hostname behind a pool address, else the IP. */
  private destinationOf(dst: number): string {
    return this.opts.dns.nameOf(dst) ?? ipv4ToString(dst);
  }

  private envelope(src: number, dst: number): Ipv4Envelope {
    const e = this.env;
    e.src = src;
    e.dst = dst;
    e.id = (e.id + 1) & 0xffff;
    return e;
  }

  /** A buffer for a packet of `bytes`, after the device's virtio_net_hdr (plain: no offload asked) when it has one. */
  private packet(bytes: number): Buffer {
    const v = this.vnet;
    const pkt = Buffer.allocUnsafe(v + bytes);
    if (v !== 0) emitPlainVnetHeader(pkt, 0);
    return pkt;
  }

  private write(pkt: Buffer): void {
    if (!this.opts.device.write(pkt)) this.counters.txDropped++;
  }
}

interface UdpFlowKey {
  readonly device: number;
  readonly devicePort: number;
  readonly service: number;
  readonly servicePort: number;
}

/**
 * One intercepted TCP connection as a circuit's local end. Readable side:
 * the device's bytes in order; writable side: bytes for the device. Flow
 * control runs through: when the circuit stops reading, the readable buffer
 * fills, `consume` stops being called, and the TCP window the device sees
 * closes; when the device stops reading, `write` accepts less and the
 * circuit's writes wait for `onWritable`.
 */
class TcpFlow extends Duplex implements TcpHandler {
  /** Bytes delivered into the readable side while it was full: consumed (window reopened) on the next _read. */
  private held = 0;
  private pendingChunk: Buffer | undefined = undefined;
  private pendingCallback: ((err?: Error | null) => void) | undefined = undefined;
  private tcpClosed = false;

  constructor(private readonly conn: TcpConnection) {
    super({ allowHalfOpen: true, readableHighWaterMark: FLOW_READ_BUFFER_BYTES });
  }

  onOpen(): void {
    // Data may already be queued from the circuit (written while SYN-RECEIVED): the machine sends it now.
  }

  onData(conn: TcpConnection, data: Buffer): void {
    if (this.destroyed) {
      // The circuit is gone (its link closed): nobody will read these bytes, and holding them would only
      // shut the window on a device that waits forever. Data for a closed end is answered with RST
      // (RFC 1122 §4.2.2.13).
      conn.abort(performance.now());
      return;
    }
    // `data` views a packet the TUN shell owns (one buffer per read), so it can be kept without a copy.
    if (this.push(data)) conn.consume(performance.now(), data.length);
    else this.held += data.length;
  }

  onEnd(): void {
    this.push(null);
  }

  onWritable(conn: TcpConnection): void {
    const chunk = this.pendingChunk;
    if (chunk === undefined) return;
    const n = conn.write(performance.now(), chunk);
    if (n < chunk.length) {
      this.pendingChunk = chunk.subarray(n);
      return;
    }
    const cb = this.pendingCallback!;
    this.pendingChunk = undefined;
    this.pendingCallback = undefined;
    cb();
  }

  onClose(_conn: TcpConnection, reason: TcpCloseReason): void {
    this.tcpClosed = true;
    const cb = this.pendingCallback;
    this.pendingChunk = undefined;
    this.pendingCallback = undefined;
    if (reason === 'normal') {
      cb?.();
      // Both FINs went through, but what the device sent last may still wait in the readable buffer for
      // the circuit (its credit decides when it reads): destroying now would drop bytes the device saw
      // acknowledged. Our FIN came from _final, so the writable side is finished; once the buffer is read
      // and 'end' is emitted, autoDestroy closes the stream.
      if (this.readableEnded) this.destroy();
      return;
    }
    const err = new CircuitEnd(CircuitError.RESET_BY_PEER, `device connection ended: ${reason}`);
    cb?.(err);
    this.destroy(err);
  }

  override _read(): void {
    if (this.held === 0) return;
    const n = this.held;
    this.held = 0;
    this.conn.consume(performance.now(), n);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.tcpClosed) return callback(new CircuitEnd(CircuitError.RESET_BY_PEER, 'device connection closed'));
    const n = this.conn.write(performance.now(), chunk);
    if (n === chunk.length) return callback();
    this.pendingChunk = chunk.subarray(n);
    this.pendingCallback = callback;
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (!this.tcpClosed) this.conn.close(performance.now());
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.tcpClosed) {
      // The circuit failed (or was cut by policy): reset the device. Ended normally: FIN after what is queued.
      if (err !== null) this.conn.abort(performance.now());
      else this.conn.close(performance.now());
    }
    callback(err);
  }

  /** Circuits call it on their sockets; segments already go out at once (no Nagle). */
  setNoDelay(): this {
    return this;
  }

  /**
   * As on a net.Socket: the circuit was cut short (LinkMux.drop calls it when
   * the far router reset the circuit), so the device gets RST rather than a
   * FIN that would pass for the end of a complete transfer.
   */
  resetAndDestroy(): this {
    if (!this.tcpClosed) this.conn.abort(performance.now());
    if (!this.destroyed) this.destroy();
    return this;
  }
}
