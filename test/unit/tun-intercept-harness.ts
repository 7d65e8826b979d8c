/**
 * Harness for the in-process tests of the tun-mode packet shell
 * (src/router/tun-intercept.ts): one TunIntercept over one end of a memory
 * TUN pair, a "device" on the other end, and a fake dialer standing in for
 * the overlay. Not a test file itself.
 *
 *   FakeDialer ◀─dial/accept/refuse─ TunIntercept ◀─ShellTun─▶ MemoryTun pair ◀─▶ DeviceStack
 *   (far ends: echo, sink,            (the shell under test)                       (a second TcpTable doing
 *    scripted writers)                                                               active opens, hand-built
 *                                                                                    UDP / ICMP / raw packets)
 *
 * With `vnet: true` both ends carry a 10-byte virtio_net_hdr, as a TUN opened
 * with IFF_VNET_HDR does: the device side then plays the kernel's part,
 * completing NEEDS_CSUM checksums and cutting TSO super-segments from the
 * shell into MSS-sized packets (splitTcpGso), and it can send super-segments
 * of its own (its table's tsoMaxBytes).
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { bytes } from './tcp-harness.js';
import { DnsService, type InterceptSpec } from '../../src/dns/index.js';
import { InterceptTable } from '../../src/router/intercepts.js';
import type { CircuitStream, DialRequest } from '../../src/router/mux.js';
import { TunIntercept, type LocalDialer } from '../../src/router/tun-intercept.js';
import {
  TcpTable, TcpState, TCP_STATE_NAMES,
  type TcpCloseReason, type TcpConfig, type TcpConnection, type TcpHandler, type TcpOutput, type TcpSegmentOut,
} from '../../src/stack/tcp/index.js';
import { createMemoryTunPair, type MemoryTun, type MemoryTunOptions } from '../../src/tun/memory.js';
import type { DeviceErrorHandler, PacketHandler, TunCounters, TunDevice } from '../../src/tun/index.js';
import {
  IPV4_DEFAULT_TTL, IpProtocol, VNET_HDR_BYTES, VnetFlags, VnetGso,
  completeVnetChecksum, emitIpv4Header, emitPlainVnetHeader, emitTcpIpv4, emitUdpIpv4, emitVnetHeader, internetChecksum, isDrop,
  parseIcmpv4, parseIpv4, parseTcpIpv4, parseUdpIpv4, parseVnetHeader, splitTcpGso, tcpGsoSegmentCount, tcpIpv4PacketBytes,
  tcpOffloadVnetHeader, udpIpv4PacketBytes,
  type IcmpMessage, type Ipv4Envelope, type Ipv4Packet,
} from '../../src/wire/index.js';

// ---- addresses ---------------------------------------------------------------

/** 10.0.0.2: the device (a sensor with no ztedge software). */
export const DEVICE_IP = 0x0a000002;
/** 100.64.0.1: the TUN's own address (network + 1 of dnsRange), source of ICMP errors. */
export const TUN_IP = 0x64400001;
/** 100.64.0.2: the DNS address answered inside the stack. */
export const DNS_IP = 0x64400002;
/** 10.20.0.7: an intercepted IP (web over TCP 80, sensor over UDP 9000–9001). */
export const SVC_IP = 0x0a140007;
/** 10.30.1.2: inside the intercepted CIDR 10.30.0.0/16 (any port, TCP and UDP). */
export const CIDR_IP = 0x0a1e0102;
/** 10.99.0.1: routed into the TUN but intercepted by nothing. */
export const OUTSIDE_IP = 0x0a630001;
export const DNS_RANGE = '100.64.0.0/10';

/** The services this router may Dial, as tun-mode.ts hands them to both the DNS service and the intercept table. */
export const SERVICES: InterceptSpec[] = [
  { service: 'web', protocols: ['tcp'], addresses: ['10.20.0.7', 'web.plant.internal'], portRanges: [{ low: 80, high: 80 }] },
  { service: 'db', protocols: ['tcp'], addresses: ['db.plant.internal'], portRanges: [{ low: 5432, high: 5432 }] },
  { service: 'plc', protocols: ['tcp'], addresses: ['*.plc.internal'], portRanges: [{ low: 502, high: 502 }] },
  { service: 'sensor', protocols: ['udp'], addresses: ['10.20.0.7'], portRanges: [{ low: 9000, high: 9001 }] },
  { service: 'lab', protocols: ['tcp', 'udp'], addresses: ['10.30.0.0/16'], portRanges: [{ low: 1, high: 65535 }] },
];

/** Largest TSO payload, as tun-mode.ts configures it (64 KiB minus IPv4 + TCP headers with room for options). */
export const TSO_MAX_BYTES = 65_535 - 20 - 60;

const silent = pino({ level: 'silent' });

// ---- small helpers -------------------------------------------------------------

/** Resolves after `ms` (a ref'd timer, so the test keeps the loop alive). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `cond` every millisecond until it holds; fails with `what` (and `detail()`) after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000, detail?: () => string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}${detail === undefined ? '' : `: ${detail()}`}`);
    await sleep(1);
  }
}

/** `n` reproducible pseudo-random bytes from `seed` (the TCP tests' generator). */
export const patternBytes = bytes;

/** Cuts `buf` into views of `chunkBytes`. */
export function chunks(buf: Buffer, chunkBytes: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < buf.length; off += chunkBytes) out.push(buf.subarray(off, Math.min(buf.length, off + chunkBytes)));
  return out;
}

// ---- the shell's device: a memory TUN end, optionally with a virtio_net_hdr --------

/**
 * The TunDevice the shell sees: one memory end, announcing `vnetHdrBytes`
 * (0 or 10) and a logical `mtu` (the memory pair itself is built larger when
 * super-segments must pass). `inject` hands a packet to the shell's handler
 * synchronously, so a throw surfaces in the test instead of in setImmediate.
 */
export class ShellTun implements TunDevice {
  readonly name: string;
  private handler: PacketHandler | null = null;

  constructor(readonly inner: MemoryTun, readonly vnetHdrBytes: number, readonly mtu: number) {
    this.name = inner.name;
  }

  get counters(): Readonly<TunCounters> {
    return this.inner.counters;
  }

  get closed(): boolean {
    return this.inner.closed;
  }

  onPackets(handler: PacketHandler | null): void {
    this.handler = handler;
    this.inner.onPackets(handler);
  }

  onError(handler: DeviceErrorHandler | null): void {
    this.inner.onError(handler);
  }

  write(pkt: Buffer): boolean {
    return this.inner.write(pkt);
  }

  writev(parts: readonly Buffer[]): boolean {
    return this.inner.writev(parts);
  }

  close(): void {
    this.inner.close();
  }

  /** Feeds one IP packet to the shell now (a zero vnet header is put in front when the device has one). */
  inject(ipPacket: Buffer): void {
    const h = this.handler;
    assert.ok(h !== null, 'the shell is not reading');
    if (this.vnetHdrBytes === 0) return h(ipPacket);
    const pkt = Buffer.alloc(this.vnetHdrBytes + ipPacket.length);
    ipPacket.copy(pkt, this.vnetHdrBytes);
    h(pkt);
  }

  /** Feeds raw bytes (vnet header included, if any) to the shell now. */
  injectRaw(pkt: Buffer): void {
    assert.ok(this.handler !== null, 'the shell is not reading');
    this.handler(pkt);
  }
}

// ---- the fake overlay ---------------------------------------------------------------

/** One dial the shell made: the captured stream (the circuit's local end) and the request. */
export class Dial {
  settled = false;
  /** Errors the stream emitted (destroyed by the shell when the device reset, say). */
  readonly errors: Error[] = [];

  constructor(readonly stream: CircuitStream, readonly req: DialRequest, private readonly onResult: (err: { code: number; reason: string } | undefined) => void) {
    // As LinkMux.dial does: nothing flows until the far end accepted, and resets by devices are routine.
    stream.pause();
    stream.on('error', (err: Error) => this.errors.push(err));
  }

  /** The hosting router accepted: `attach` connects a far end to the stream. */
  accept(attach?: (stream: CircuitStream) => void): void {
    assert.equal(this.settled, false, 'dial settled twice');
    this.settled = true;
    this.onResult(undefined);
    if (attach !== undefined) attach(this.stream);
  }

  /** The far end said no: as LinkMux does on DIAL_FAIL, the stream is destroyed, then the dialer told. */
  refuse(code: number, reason: string): void {
    assert.equal(this.settled, false, 'dial settled twice');
    this.settled = true;
    this.stream.destroy();
    this.onResult({ code, reason });
  }

  /**
   * The circuit was cut short (a RESET from the peer): as LinkMux.drop does,
   * `resetAndDestroy()` when the stream has it (a TCP socket: the client must
   * tell truncation from a complete transfer), else a plain destroy.
   */
  reset(): void {
    const s = this.stream as CircuitStream & { resetAndDestroy?: () => unknown };
    if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
    else s.destroy();
  }
}

/**
 * The LocalDialer handed to the shell. `policy` runs inside the dial call (so
 * it may accept or refuse synchronously, as a cached refusal would); the
 * default holds every dial until the test settles it.
 */
export class FakeDialer {
  readonly dials: Dial[] = [];
  policy: (d: Dial) => void = () => undefined;
  readonly dial: LocalDialer = (stream, req, onResult) => {
    const d = new Dial(stream, req, onResult);
    this.dials.push(d);
    this.policy(d);
  };

  last(): Dial {
    const d = this.dials[this.dials.length - 1];
    assert.ok(d !== undefined, 'no dial yet');
    return d;
  }
}

/** Far end: sends back what it reads, ending when the device ends. */
export function echo(stream: CircuitStream): void {
  stream.pipe(stream);
}

/** Far end: collects what it reads, and whether the device ended. */
export class Sink {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  ended = false;

  constructor(readonly stream: CircuitStream, flowing = true) {
    stream.on('end', () => { this.ended = true; });
    if (flowing) this.resume();
  }

  /** Starts (or restarts) reading. */
  resume(): void {
    if (this.stream.listenerCount('data') === 0) {
      this.stream.on('data', (c: Buffer) => {
        this.chunks.push(Buffer.from(c));
        this.bytes += c.length;
      });
    }
    this.stream.resume();
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

// ---- the device ------------------------------------------------------------------------

/** The app side of one device connection: records what arrives, writes what it is given as the window allows. */
export class DeviceConn implements TcpHandler {
  conn!: TcpConnection;
  opened = false;
  ended = false;
  closeReason: TcpCloseReason | undefined = undefined;
  readonly received: Buffer[] = [];
  receivedBytes = 0;
  /** When false, delivered bytes stay unconsumed (the device app is not reading) until `consumeAll`. */
  autoConsume = true;
  private unconsumed = 0;
  private readonly queue: Buffer[] = [];
  private closeWhenDone = false;

  onOpen(): void {
    this.opened = true;
    this.flush();
  }

  onData(conn: TcpConnection, data: Buffer): void {
    this.received.push(Buffer.from(data)); // borrowed: copy
    this.receivedBytes += data.length;
    if (this.autoConsume) conn.consume(performance.now(), data.length);
    else this.unconsumed += data.length;
  }

  onEnd(): void {
    this.ended = true;
  }

  onWritable(): void {
    this.flush();
  }

  onClose(_conn: TcpConnection, reason: TcpCloseReason): void {
    this.closeReason = reason;
  }

  /** Queues `buf` (kept by reference until acknowledged) and sends what fits. */
  send(buf: Buffer): void {
    this.queue.push(buf);
    this.flush();
  }

  /** FIN after everything queued. */
  end(): void {
    this.closeWhenDone = true;
    this.flush();
  }

  consumeAll(): void {
    const n = this.unconsumed;
    this.unconsumed = 0;
    this.conn.consume(performance.now(), n);
  }

  /** Bytes queued here and not yet taken by the connection. */
  get backlogBytes(): number {
    let n = 0;
    for (const b of this.queue) n += b.length;
    return n;
  }

  get data(): Buffer {
    return Buffer.concat(this.received);
  }

  get stateName(): string {
    return TCP_STATE_NAMES[this.conn.state] ?? String(this.conn.state);
  }

  private flush(): void {
    if (!this.opened) return;
    const now = performance.now();
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const n = this.conn.write(now, head);
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.closeWhenDone) {
      this.closeWhenDone = false;
      this.conn.close(now);
    }
  }
}

/** A TCP segment the device received (header fields only). */
export interface SeenSegment {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  flags: number;
  payloadBytes: number;
}

/** A UDP datagram the device received (payload copied). */
export interface SeenDatagram {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/** An ICMP message the device received. */
export interface SeenIcmp {
  ip: Ipv4Packet;
  msg: IcmpMessage;
}

export interface DeviceOptions {
  tcp?: Partial<TcpConfig>;
}

/**
 * The device: its own TcpTable (active opens only) on the far end of the
 * memory TUN, plus hand-built UDP, ICMP and raw packets. It checks every
 * checksum of what the shell sends (after completing NEEDS_CSUM ones and
 * splitting super-segments, as the kernel would), and counts any packet it
 * could not parse in `badPackets` (a test asserts it stays 0).
 */
export class DeviceStack implements TcpOutput {
  readonly table: TcpTable;
  readonly segments: SeenSegment[] = [];
  readonly datagrams: SeenDatagram[] = [];
  readonly icmp: SeenIcmp[] = [];
  /** Packets from the shell that did not parse (bad checksum, bad vnet header…). */
  badPackets = 0;
  /** TSO super-segments received from the shell (split here) and sent to it. */
  superSegmentsIn = 0;
  superSegmentsOut = 0;
  /** Packets received with NEEDS_CSUM and no GSO (checksum completed here). */
  partialChecksumsIn = 0;
  private ipId = 0;
  private readonly timer: NodeJS.Timeout;
  private nextPort = 40_000;
  /** When false, segments and datagrams are not recorded (bulk transfers). */
  trace = true;

  constructor(readonly tun: MemoryTun, readonly vnet: number, opts: DeviceOptions = {}) {
    this.table = new TcpTable(this, { onSyn: () => 'ignore' }, { tcp: opts.tcp });
    tun.onPackets((pkt) => this.onPacket(pkt));
    this.timer = setInterval(() => {
      const now = performance.now();
      if (this.table.nextDeadline() <= now) this.table.tick(now);
    }, 5);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.tun.onPackets(null);
  }

  // ---- TCP ----

  /** Opens a connection to `dst:dstPort` from a fresh (or the given) port. */
  connect(dst: number, dstPort: number, app = new DeviceConn(), srcPort = this.nextPort++): DeviceConn {
    app.conn = this.table.connect(performance.now(), DEVICE_IP, srcPort, dst, dstPort, app);
    return app;
  }

  /** TcpOutput: a segment from the device's table, as the kernel would hand it to the TUN. */
  sendSegment(src: number, dst: number, seg: TcpSegmentOut): void {
    const env = this.envelope(src, dst);
    const v = this.vnet;
    const pkt = Buffer.allocUnsafe(v + tcpIpv4PacketBytes(seg));
    if (v === 0) {
      emitTcpIpv4(env, seg, pkt, 0);
      this.tun.write(pkt);
      return;
    }
    // Locally generated TCP through a TUN with offloads: partial checksum, and GSO when longer than one MSS.
    const n = emitTcpIpv4(env, seg, pkt, v, true);
    const h = tcpOffloadVnetHeader(pkt.subarray(v, v + n), seg.gsoSize ?? 65_535);
    assert.ok(!isDrop(h), `device could not offload its own segment: ${String(h)}`);
    if (h.gsoType !== VnetGso.NONE) this.superSegmentsOut++;
    emitVnetHeader(h, pkt, 0);
    this.tun.write(pkt);
  }

  // ---- UDP / ICMP / raw ----

  sendUdp(srcPort: number, dst: number, dstPort: number, payload: Buffer): void {
    const pkt = Buffer.allocUnsafe(udpIpv4PacketBytes(payload.length));
    emitUdpIpv4(this.envelope(DEVICE_IP, dst), { srcPort, dstPort, payload }, pkt, 0);
    this.sendIp(pkt);
  }

  sendEcho(dst: number, id: number, sequence: number, data: Buffer, type = 8): void {
    this.sendIp(icmpPacket(DEVICE_IP, dst, type, id, sequence, data));
  }

  /** Sends one IP packet as is (a zero vnet header in front when the link has one). */
  sendIp(ipPacket: Buffer): void {
    const v = this.vnet;
    if (v === 0) {
      this.tun.write(ipPacket);
      return;
    }
    const pkt = Buffer.allocUnsafe(v + ipPacket.length);
    emitPlainVnetHeader(pkt, 0);
    ipPacket.copy(pkt, v);
    this.tun.write(pkt);
  }

  datagramsTo(port: number): SeenDatagram[] {
    return this.datagrams.filter((d) => d.dstPort === port);
  }

  segmentsTo(port: number): SeenSegment[] {
    return this.segments.filter((s) => s.dstPort === port);
  }

  // ---- packets in ----

  private onPacket(pkt: Buffer): void {
    const v = this.vnet;
    if (v === 0) return this.onIp(pkt);
    const h = parseVnetHeader(pkt, 0);
    if (isDrop(h)) {
      this.badPackets++;
      return;
    }
    const ip = pkt.subarray(v);
    if ((h.gsoType & 0x7f) !== VnetGso.NONE) {
      // The kernel's part of TSO: cut the super-segment into gso_size packets, each fully checksummed.
      this.superSegmentsIn++;
      const count = tcpGsoSegmentCount(ip, h);
      if (typeof count === 'string') {
        this.badPackets++;
        return;
      }
      const out: Buffer[] = [];
      for (let i = 0; i < count; i++) out.push(Buffer.allocUnsafe(h.hdrLen + h.gsoSize + 60));
      const lengths: number[] = [];
      const n = splitTcpGso(ip, h, out, 0, lengths);
      if (typeof n === 'string') {
        this.badPackets++;
        return;
      }
      for (let i = 0; i < n; i++) this.onIp(out[i]!.subarray(0, lengths[i]!));
      return;
    }
    if ((h.flags & VnetFlags.NEEDS_CSUM) !== 0) {
      this.partialChecksumsIn++;
      if (completeVnetChecksum(ip, h) !== undefined) {
        this.badPackets++;
        return;
      }
    }
    this.onIp(ip);
  }

  /** One plain IP packet; every checksum is verified (a bad one is a bug in the shell). */
  private onIp(buf: Buffer): void {
    const ip = parseIpv4(buf);
    if (isDrop(ip)) {
      this.badPackets++;
      return;
    }
    switch (ip.protocol) {
      case IpProtocol.TCP: {
        const seg = parseTcpIpv4(ip, true);
        if (isDrop(seg)) {
          this.badPackets++;
          return;
        }
        if (this.trace) this.segments.push({ src: ip.src, dst: ip.dst, srcPort: seg.srcPort, dstPort: seg.dstPort, flags: seg.flags, payloadBytes: seg.payload.length });
        this.table.input(performance.now(), ip.src, ip.dst, seg);
        return;
      }
      case IpProtocol.UDP: {
        const d = parseUdpIpv4(ip, true);
        if (isDrop(d)) {
          this.badPackets++;
          return;
        }
        this.datagrams.push({ src: ip.src, dst: ip.dst, srcPort: d.srcPort, dstPort: d.dstPort, payload: Buffer.from(d.payload) });
        return;
      }
      case IpProtocol.ICMP: {
        const msg = parseIcmpv4(ip.payload, true);
        if (isDrop(msg)) {
          this.badPackets++;
          return;
        }
        this.icmp.push({ ip, msg });
        return;
      }
      default:
        this.badPackets++;
    }
  }

  /** A fresh IPv4 envelope per packet (test code: clarity over reuse), ids counting up. */
  private envelope(src: number, dst: number): Ipv4Envelope {
    this.ipId = (this.ipId + 1) & 0xffff;
    return { src, dst, ttl: IPV4_DEFAULT_TTL, id: this.ipId, tos: 0, dontFragment: true };
  }
}

/** An ICMPv4 echo request (or any `type` with the echo layout) from `src` to `dst`. */
export function icmpPacket(src: number, dst: number, type: number, id: number, sequence: number, data: Buffer): Buffer {
  const msgBytes = 8 + data.length;
  const pkt = Buffer.alloc(20 + msgBytes);
  pkt[20] = type;
  pkt.writeUInt16BE(id, 24);
  pkt.writeUInt16BE(sequence, 26);
  data.copy(pkt, 28);
  pkt.writeUInt16BE(internetChecksum(pkt, 20, msgBytes), 22);
  emitIpv4Header({ src, dst, ttl: IPV4_DEFAULT_TTL, id: 1, tos: 0, dontFragment: true }, IpProtocol.ICMP, msgBytes, pkt, 0);
  return pkt;
}

/** A complete IPv4 TCP packet (device → `dst`), checksums right, for hand-made and mutated inputs. */
export function tcpPacket(dst: number, seg: Partial<TcpSegmentOut> & { dstPort: number }, src = DEVICE_IP): Buffer {
  const s: TcpSegmentOut = {
    srcPort: seg.srcPort ?? 40_000, dstPort: seg.dstPort, seq: seg.seq ?? 1000, ack: seg.ack ?? 0,
    flags: seg.flags ?? 0x02, window: seg.window ?? 65_535, options: seg.options, payload: seg.payload,
  };
  const pkt = Buffer.allocUnsafe(tcpIpv4PacketBytes(s));
  emitTcpIpv4({ src, dst, ttl: IPV4_DEFAULT_TTL, id: 7, tos: 0, dontFragment: true }, s, pkt, 0);
  return pkt;
}

/** A complete IPv4 UDP packet (device → `dst`). */
export function udpPacket(dst: number, dstPort: number, payload: Buffer, srcPort = 5555, src = DEVICE_IP): Buffer {
  const pkt = Buffer.allocUnsafe(udpIpv4PacketBytes(payload.length));
  emitUdpIpv4({ src, dst, ttl: IPV4_DEFAULT_TTL, id: 9, tos: 0, dontFragment: true }, { srcPort, dstPort, payload }, pkt, 0);
  return pkt;
}

// ---- the whole rig ---------------------------------------------------------------------------

export interface RigOptions {
  /** Both ends carry a virtio_net_hdr; the shell and the device may send TSO super-segments. */
  vnet?: boolean;
  /** Loss, reordering, seed and queue of the memory pair. */
  link?: Pick<MemoryTunOptions, 'lossRate' | 'reorderRate' | 'seed' | 'queuePackets'>;
  /** TCP overrides for the shell (tun-mode.ts sets mssBytes from the MTU and tsoMaxBytes with offloads). */
  shellTcp?: Partial<TcpConfig>;
  deviceTcp?: Partial<TcpConfig>;
  maxTcpFlows?: number;
  maxUdpFlows?: number;
  udpIdleMs?: number;
  /** Logical MTU of the TUN. Default 1500. */
  mtu?: number;
}

/** A started shell, its device, the DNS service and the fake overlay; `close()` tears it all down. */
export class Rig {
  readonly dialer = new FakeDialer();
  readonly dns: DnsService;
  readonly shell: TunIntercept;
  readonly shellTun: ShellTun;
  readonly device: DeviceStack;
  readonly deviceTun: MemoryTun;

  constructor(opts: RigOptions = {}) {
    const mtu = opts.mtu ?? 1500;
    const v = opts.vnet === true ? VNET_HDR_BYTES : 0;
    // With a vnet header a write may carry a 64 KB super-segment: the pair must let it through
    // (a real TUN takes it too); plain packets stay bounded by the MTU, so an oversize one is caught.
    const [a, b] = createMemoryTunPair({ names: ['zt-shell', 'zt-device'], mtu: v === 0 ? mtu : v + 65_535, queuePackets: 2000, ...opts.link });
    this.shellTun = new ShellTun(a, v, mtu);
    this.deviceTun = b;
    this.dns = new DnsService({ listen: [], upstream: [], range: DNS_RANGE, reserved: [TUN_IP, DNS_IP], log: silent });
    const tso = v === 0 ? {} : { tsoMaxBytes: TSO_MAX_BYTES };
    this.shell = new TunIntercept({
      device: this.shellTun, identity: 'router-1', dial: this.dialer.dial, dns: this.dns,
      dnsAddresses: [{ ip: DNS_IP, port: 53 }], tunAddress: TUN_IP,
      tcp: { mssBytes: mtu - 40, ...tso, ...opts.shellTcp },
      maxTcpFlows: opts.maxTcpFlows ?? 1000, maxUdpFlows: opts.maxUdpFlows ?? 1000, udpIdleMs: opts.udpIdleMs ?? 30_000, log: silent,
    });
    this.setServices(SERVICES);
    this.device = new DeviceStack(b, v, { tcp: { mssBytes: mtu - 40, ...tso, ...opts.deviceTcp } });
    this.shell.start();
  }

  /** A policy update: the DNS service and the shell learn the same intercepts (as TunMode.update does). */
  setServices(list: InterceptSpec[]): void {
    this.dns.setIntercepts(list);
    this.shell.setIntercepts(new InterceptTable(list.map((s) => ({ service: s.service, protocols: s.protocols, addresses: s.addresses, portRanges: s.portRanges }))));
  }

  get dials(): Dial[] {
    return this.dialer.dials;
  }

  /** The shell's connection for a device connection. */
  shellConn(d: DeviceConn): TcpConnection | undefined {
    return this.shell.tcp.lookup(d.conn.remoteIp, d.conn.remotePort, d.conn.localIp, d.conn.localPort);
  }

  /** Nothing the shell sent was malformed, and no plain packet exceeded the MTU. */
  assertClean(): void {
    assert.equal(this.device.badPackets, 0, 'the device received packets that do not parse or verify');
    assert.equal(this.shellTun.counters.txErrors, 0, 'the shell wrote packets the TUN refused (oversize?)');
  }

  close(): void {
    this.shell.stop();
    this.device.close();
    this.shellTun.close();
    this.deviceTun.close();
  }
}

/** Every field of the shell's counters that classifies a packet, summed: each packet in adds exactly one. */
export function classified(rig: Rig): number {
  const c = rig.shell.counters;
  let n = c.notIpv4 + c.otherProtocol + c.udpNoService + c.udpFlowLimit + c.udpFlowsOpened + c.icmpEchoReplies + c.icmpIgnored + c.dnsQueries;
  for (const v of Object.values(c.wireDrops)) n += v ?? 0;
  n += rig.shell.tcp.counters.segmentsIn;
  const u = rig.shell.udpCounters;
  n += u.refusedDrops + u.closingDrops + u.backlogDrops;
  return n;
}

/** State name of a device connection, for assertion messages. */
export function stateOf(d: DeviceConn): string {
  return d.conn.state === TcpState.CLOSED ? 'CLOSED' : d.stateName;
}
