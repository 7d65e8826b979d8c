/**
 * IP packet codecs (src/wire): packets the Linux kernel wrote into a TUN
 * (test/vectors/*.hex, captured by capture-tun.py), byte-exact re-emission of
 * those packets, parse(emit(x)) = x for random x, the checksum against a
 * naive RFC 1071 reference, every drop reason, address text against Node's
 * own parsers, ICMP replies and errors, and the virtio_net_hdr offloads
 * (checksum completion and TCP GSO split) on a real kernel super-segment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import {
  ICMP_HEADER_BYTES, IPV4_HEADER_BYTES, IPV6_HEADER_BYTES, Icmpv4Type, Icmpv4Unreachable, Icmpv6Type, IpProtocol, TCP_HEADER_BYTES,
  VNET_HDR_BYTES, VnetFlags, VnetGso, WIRE_DROPS,
  checksumUpdate16, checksumUpdate32, completeVnetChecksum, emitIcmpv4EchoReply, emitIcmpv4Unreachable, emitIcmpv6EchoReply,
  emitIpv4Header, emitIpv6Header, emitPlainVnetHeader, emitTcpIpv4, emitTcpIpv6, emitUdpIpv4, emitUdpIpv6, emitVnetHeader,
  finishSum, icmpv4EchoReply, icmpv4ErrorAllowed, icmpv4UnreachableBytes, internetChecksum, ipVersion, ipv4CidrContains,
  ipv4PseudoSum, ipv4ToString, ipv6CidrContains, ipv6ToString, isDrop, onesSum, parseIcmpv4, parseIcmpv6, parseIpv4,
  parseIpv4Address, parseIpv4Cidr, parseIpv6, parseIpv6Address, parseIpv6Cidr, parseTcp, parseTcpIpv4, parseTcpIpv6, parseUdp,
  parseUdpIpv4, parseUdpIpv6, parseVnetHeader, splitTcpGso, tcpGsoSegmentCount, tcpIpv4PacketBytes, tcpIpv6PacketBytes, tcpOffloadVnetHeader,
  tcpOptionsBytes, udpIpv4PacketBytes, udpIpv6PacketBytes,
  type IcmpMessage, type Ipv4Envelope, type Ipv4Packet, type Ipv6Envelope, type Ipv6Packet, type UdpDatagram, type VnetHeader,
  type WireDrop,
} from '../../src/wire/index.js';
import { TcpFlags, type TcpSegmentIn, type TcpSegmentOut } from '../../src/stack/tcp/segment.js';
import { naiveOnesSum, vector } from '../vectors/wire-vectors.js';

/** Narrows a parser result, failing the test with the drop reason. */
function ok<T extends object>(r: T | WireDrop): T {
  if (isDrop(r)) assert.fail(`unexpected drop: ${r}`);
  return r;
}

const a4 = (s: string): number => parseIpv4Address(s)!;
const a6 = (s: string): Buffer => parseIpv6Address(s)!;

// ---------------------------------------------------------------------------
// Checksum

test('checksum: RFC 1071 §3 worked example (00 01 f2 03 f4 f5 f6 f7 sums to ddf2)', () => {
  const b = Buffer.from('0001f203f4f5f6f7', 'hex');
  assert.equal(onesSum(b, 0, b.length), 0xddf2);
  assert.equal(internetChecksum(b, 0, b.length), 0x220d);
  // Odd length: the last byte is padded with a zero byte (RFC 1071 §4.1).
  assert.equal(onesSum(Buffer.from([0x12, 0x34, 0x56]), 0, 3), 0x1234 + 0x5600);
  assert.equal(onesSum(Buffer.alloc(0), 0, 0), 0);
  assert.equal(onesSum(Buffer.alloc(600), 0, 600), 0);
});

test('checksum: the fast sum equals a naive word-at-a-time sum (any length, offset, alignment, initial sum)', () => {
  // One backing store, viewed from every byte offset, so the typed-array path sees each misalignment.
  const store = new Uint8Array(4096 + 8);
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 3000, size: 'max' }), fc.nat(7), fc.nat(7), fc.nat(0xfffff),
      (data, viewShift, off, initial) => {
        // Non-zero all around the data, so a sum that strays past its range shows.
        store.fill(0xa5);
        const view = Buffer.from(store.buffer, viewShift, store.length - viewShift);
        view.set(data, off);
        assert.equal(onesSum(view, off, data.length, initial), naiveOnesSum(view, off, data.length, initial));
      },
    ),
    { numRuns: 400 },
  );
});

test('checksum: 64 KB super-segments and all-ones data fold like the naive sum', () => {
  const big = Buffer.alloc(65535, 0xff);
  assert.equal(onesSum(big, 0, big.length), naiveOnesSum(big, 0, big.length));
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 7) & 0xff;
  for (const off of [0, 1, 2, 3]) assert.equal(onesSum(big, off, big.length - off), naiveOnesSum(big, off, big.length - off));
});

test('checksum: RFC 1624 incremental update gives a checksum that verifies', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 8, maxLength: 64 }), fc.nat(0xffff), fc.nat(0xffffffff), (data, w16, w32) => {
      const b = Buffer.from(data);
      if (b.length % 2 === 1) return;
      b.writeUInt16BE(0, 0);
      b.writeUInt16BE(internetChecksum(b, 0, b.length), 0);
      const old16 = b.readUInt16BE(2);
      b.writeUInt16BE(w16, 2);
      b.writeUInt16BE(checksumUpdate16(b.readUInt16BE(0), old16, w16), 0);
      assert.equal(internetChecksum(b, 0, b.length), 0);
      const old32 = b.readUInt32BE(4);
      b.writeUInt32BE(w32, 4);
      b.writeUInt16BE(checksumUpdate32(b.readUInt16BE(0), old32, w32), 0);
      assert.equal(internetChecksum(b, 0, b.length), 0);
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------
// IPv4 on kernel-made packets

test('ipv4: the kernel TCP SYN parses to its fields; checksum verified', () => {
  const pkt = vector('ipv4-tcp-syn');
  assert.equal(ipVersion(pkt), 4);
  const ip = ok(parseIpv4(pkt));
  assert.equal(ipv4ToString(ip.src), '10.77.0.1');
  assert.equal(ipv4ToString(ip.dst), '10.77.0.2');
  assert.deepEqual(
    { ttl: ip.ttl, protocol: ip.protocol, dontFragment: ip.dontFragment, id: ip.id, tos: ip.tos, headerBytes: ip.headerBytes, totalBytes: ip.totalBytes },
    { ttl: 64, protocol: IpProtocol.TCP, dontFragment: true, id: 0x8455, tos: 0, headerBytes: 20, totalBytes: 60 },
  );
  assert.equal(ip.payload.length, 40);
  assert.equal(ip.payload.buffer, pkt.buffer, 'payload is a view, not a copy');
  const seg = ok(parseTcpIpv4(ip));
  assert.deepEqual(seg, {
    srcPort: 0x9dd0, dstPort: 8080, seq: 0x05aa17f0, ack: 0, flags: TcpFlags.SYN, window: 64240,
    options: { mss: 1460, sackPermitted: true, timestamps: [0xdbbfcf27, 0], windowScale: 10 },
    payload: Buffer.alloc(0),
  } satisfies TcpSegmentIn);
});

test('ipv4/tcp: a kernel data segment is re-emitted byte for byte (both checksums match the kernel)', () => {
  const pkt = vector('ipv4-tcp-data');
  const ip = ok(parseIpv4(pkt));
  const seg = ok(parseTcpIpv4(ip));
  assert.equal(seg.flags, TcpFlags.ACK | TcpFlags.PSH);
  assert.equal(seg.payload.toString(), 'GET / HTTP/1.0\r\n\r\n');
  assert.deepEqual(seg.options, {});
  const out = Buffer.alloc(tcpIpv4PacketBytes(seg));
  assert.equal(emitTcpIpv4(ip, seg, out, 0), pkt.length);
  assert.deepEqual(out, pkt);
});

test('ipv4/udp: the kernel datagram parses and is re-emitted byte for byte', () => {
  const pkt = vector('ipv4-udp');
  const ip = ok(parseIpv4(pkt));
  assert.equal(ip.protocol, IpProtocol.UDP);
  const d = ok(parseUdpIpv4(ip));
  assert.equal(d.dstPort, 5353);
  assert.equal(d.payload.toString(), 'hello ztedge');
  const out = Buffer.alloc(udpIpv4PacketBytes(d.payload.length));
  assert.equal(emitUdpIpv4(ip, d, out, 0), pkt.length);
  assert.deepEqual(out, pkt);
});

test('ipv4: drop reasons for each malformed header field', () => {
  const good = vector('ipv4-tcp-syn');
  const mut = (f: (b: Buffer) => void, fixChecksum = true): Buffer => {
    const b = Buffer.from(good);
    f(b);
    if (fixChecksum) {
      b.writeUInt16BE(0, 10);
      b.writeUInt16BE(internetChecksum(b, 0, Math.min(b.length, Math.max(20, (b[0]! & 15) * 4))), 10);
    }
    return b;
  };
  assert.equal(parseIpv4(good.subarray(0, 19)), 'short');
  assert.equal(parseIpv4(mut((b) => { b[0] = 0x65; })), 'bad-version');
  assert.equal(parseIpv4(mut((b) => { b[0] = 0x44; }, false)), 'bad-header-length');
  assert.equal(parseIpv4(good.subarray(0, 24 + 0).fill(0x4f, 0, 1)), 'bad-header-length'); // IHL 15 = 60 > 24 bytes
  assert.equal(parseIpv4(mut((b) => b.writeUInt16BE(61, 2))), 'bad-total-length');
  assert.equal(parseIpv4(mut((b) => b.writeUInt16BE(19, 2))), 'bad-total-length');
  assert.equal(parseIpv4(mut((b) => { b[8] = 1; }, false)), 'bad-checksum');
  assert.equal(ok(parseIpv4(mut((b) => { b[8] = 1; }, false), 0, good.length, false)).ttl, 1, 'verification can be skipped');
  assert.equal(parseIpv4(mut((b) => b.writeUInt16BE(0x2000, 6))), 'fragment', 'MF');
  assert.equal(parseIpv4(mut((b) => b.writeUInt16BE(0x4001, 6))), 'fragment', 'offset 8 with DF');
  assert.equal(ok(parseIpv4(mut((b) => b.writeUInt16BE(0x0000, 6)))).dontFragment, false);
});

test('ipv4: link padding past Total Length is ignored; an offset into a larger buffer works', () => {
  const pkt = vector('ipv4-udp');
  const padded = Buffer.concat([Buffer.from([0xaa, 0xbb, 0xcc]), pkt, Buffer.alloc(6, 0xee)]);
  const ip = ok(parseIpv4(padded, 3, padded.length - 3));
  assert.equal(ip.totalBytes, pkt.length);
  assert.deepEqual(ip.payload, pkt.subarray(20));
  assert.equal(parseIpv4(padded, 3, padded.length), 'short', 'a range past the buffer');
});

test('ipv4: options (IHL > 5) are skipped; the payload starts after them', () => {
  const payload = Buffer.from('abcd');
  const b = Buffer.alloc(28);
  emitIpv4Header({ src: 1, dst: 2, ttl: 9, id: 3, tos: 0, dontFragment: true }, 253, payload.length + 4, b, 0);
  b[0] = 0x46; // IHL 6: one word of options (NOPs)
  b.fill(1, 20, 24);
  payload.copy(b, 24);
  b.writeUInt16BE(0, 10);
  b.writeUInt16BE(internetChecksum(b, 0, 24), 10);
  const ip = ok(parseIpv4(b));
  assert.equal(ip.headerBytes, 24);
  assert.deepEqual(ip.payload, payload);
});

const envelope4 = fc.record({
  src: fc.nat(0xffffffff), dst: fc.nat(0xffffffff), ttl: fc.nat(255), id: fc.nat(0xffff), tos: fc.nat(255), dontFragment: fc.boolean(),
});

test('ipv4: parse(emit(header)) = header, and the emitted checksum verifies', () => {
  fc.assert(
    fc.property(envelope4, fc.nat(255), fc.nat(100), (env, protocol, payloadBytes) => {
      const b = Buffer.alloc(IPV4_HEADER_BYTES + payloadBytes);
      assert.equal(emitIpv4Header(env, protocol, payloadBytes, b, 0), IPV4_HEADER_BYTES);
      const ip = ok(parseIpv4(b));
      assert.deepEqual({ ...ip, payload: undefined, headerBytes: undefined, totalBytes: undefined }, { ...env, protocol, payload: undefined, headerBytes: undefined, totalBytes: undefined });
      assert.equal(ip.totalBytes, b.length);
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------
// IPv4 addresses

test('ipv4 addresses: text round trip, and acceptance agrees with node:net isIPv4', () => {
  assert.equal(parseIpv4Address('100.64.0.2'), 0x64400002);
  assert.equal(ipv4ToString(0xffffffff), '255.255.255.255');
  assert.equal(ipv4ToString(0), '0.0.0.0');
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.256', '1..2.3', '1.2.3.4.', ' 1.2.3.4', '1.2.3.4/8', '0x1.2.3.4', '1.2.3.-4']) {
    assert.equal(parseIpv4Address(bad), undefined, bad);
  }
  fc.assert(fc.property(fc.nat(0xffffffff), (n) => parseIpv4Address(ipv4ToString(n)) === n), { numRuns: 300 });
  const chars = fc.constantFrom('0', '1', '2', '5', '9', '.', '.', '25', '255', '256', '00');
  fc.assert(
    fc.property(fc.array(chars, { maxLength: 12 }).map((a) => a.join('')), (s) => (parseIpv4Address(s) !== undefined) === isIPv4(s)),
    { numRuns: 1000 },
  );
});

test('ipv4 CIDR: parse, host bits cleared, contains', () => {
  const pool = parseIpv4Cidr('100.64.0.0/10')!;
  assert.deepEqual(pool, { network: 0x64400000, prefixLength: 10, mask: 0xffc00000 });
  assert.ok(ipv4CidrContains(pool, a4('100.127.255.255')));
  assert.ok(!ipv4CidrContains(pool, a4('100.128.0.0')));
  assert.ok(!ipv4CidrContains(pool, a4('100.63.255.255')));
  assert.deepEqual(parseIpv4Cidr('10.1.2.3/8'), { network: 0x0a000000, prefixLength: 8, mask: 0xff000000 });
  assert.deepEqual(parseIpv4Cidr('10.1.2.3'), { network: 0x0a010203, prefixLength: 32, mask: 0xffffffff });
  const all = parseIpv4Cidr('0.0.0.0/0')!;
  assert.ok(ipv4CidrContains(all, 0xffffffff) && ipv4CidrContains(all, 0));
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/08', '10.0.0/8', '10.0.0.0/-1', '10.0.0.0/8/8']) {
    assert.equal(parseIpv4Cidr(bad), undefined, bad);
  }
});

// ---------------------------------------------------------------------------
// IPv6

test('ipv6: the kernel TCP SYN parses (fixed header, addresses as views)', () => {
  const pkt = vector('ipv6-tcp-syn');
  assert.equal(ipVersion(pkt), 6);
  const ip = ok(parseIpv6(pkt));
  assert.equal(ipv6ToString(ip.src), 'fd00:77::1');
  assert.equal(ipv6ToString(ip.dst), 'fd00:77::2');
  assert.equal(ip.src.buffer, pkt.buffer);
  assert.deepEqual({ nh: ip.nextHeader, hop: ip.hopLimit, tc: ip.trafficClass, fl: ip.flowLabel, len: ip.payload.length }, {
    nh: IpProtocol.TCP, hop: 64, tc: 0x00, fl: 0xf834e, len: 40,
  });
  const seg = ok(parseTcpIpv6(ip));
  assert.equal(seg.flags, TcpFlags.SYN);
  assert.equal(seg.dstPort, 8080);
  assert.equal(seg.options.mss, 1440);
  assert.equal(seg.options.windowScale, 10);
});

test('ipv6/udp: the kernel datagram parses and is re-emitted byte for byte', () => {
  const pkt = vector('ipv6-udp');
  const ip = ok(parseIpv6(pkt));
  const d = ok(parseUdpIpv6(ip));
  assert.equal(d.payload.toString(), 'hello ztedge v6');
  const out = Buffer.alloc(udpIpv6PacketBytes(d.payload.length));
  assert.equal(emitUdpIpv6(ip, d, out, 0), pkt.length);
  assert.deepEqual(out, pkt);
});

test('ipv6: drop reasons (short, version, payload length, extension headers, fragments)', () => {
  const good = vector('ipv6-udp');
  const mut = (f: (b: Buffer) => void): Buffer => { const b = Buffer.from(good); f(b); return b; };
  assert.equal(parseIpv6(good.subarray(0, 39)), 'short');
  assert.equal(parseIpv6(mut((b) => { b[0] = 0x40; })), 'bad-version');
  assert.equal(parseIpv6(mut((b) => b.writeUInt16BE(good.length - 39, 4))), 'bad-total-length');
  for (const nh of [0, 43, 60]) assert.equal(parseIpv6(mut((b) => { b[6] = nh; })), 'unsupported-extension', `next header ${nh}`);
  assert.equal(parseIpv6(mut((b) => { b[6] = 44; })), 'fragment');
  assert.equal(ok(parseIpv6(mut((b) => { b[6] = 59; }))).nextHeader, 59, 'No Next Header is passed up');
  assert.equal(parseUdpIpv6(ok(parseIpv6(mut((b) => b.writeUInt16BE(0, 46))))), 'bad-checksum', 'zero UDP checksum is invalid over IPv6');
});

const bytes16 = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 }).map((w) => {
  const b = Buffer.alloc(16);
  w.forEach((v, i) => b.writeUInt16BE(v, 2 * i));
  return b;
});

test('ipv6 addresses: RFC 5952 text, equal to the WHATWG URL serializer, and parse(text) round trips', () => {
  const cases: [string, string][] = [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::1', '::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // tie: the first run (RFC 5952 §4.2.3)
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group stays (§4.2.2)
    ['2001:DB8::AB', '2001:db8::ab'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ];
  for (const [input, text] of cases) assert.equal(ipv6ToString(parseIpv6Address(input)!), text, input);
  for (const bad of ['', ':', ':::', '1::2::3', '12345::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::8', 'fe80::1%eth0', '::1.2.3', '1.2.3.4::', '::01.2.3.4', 'g::']) {
    assert.equal(parseIpv6Address(bad), undefined, bad);
  }
  fc.assert(
    fc.property(bytes16, (b) => {
      const text = ipv6ToString(b);
      assert.deepEqual(parseIpv6Address(text), b);
      assert.ok(isIPv6(text), text);
      const mapped = text.startsWith('::ffff:') && text.includes('.');
      if (!mapped) assert.equal(new URL(`http://[${text}]/`).hostname, `[${text}]`);
    }),
    { numRuns: 500 },
  );
  const chars = fc.constantFrom('0', '1', 'a', 'ffff', '12345', ':', ':', '::', '.', '1.2.3.4');
  fc.assert(
    fc.property(fc.array(chars, { maxLength: 12 }).map((a) => a.join('')), (s) => (parseIpv6Address(s) !== undefined) === isIPv6(s)),
    { numRuns: 2000 },
  );
});

test('ipv6 CIDR: parse, host bits cleared, contains', () => {
  const c = parseIpv6Cidr('fd00:77::5/33')!;
  assert.equal(c.prefixLength, 33);
  assert.equal(ipv6ToString(c.network), 'fd00:77::');
  assert.ok(ipv6CidrContains(c, a6('fd00:77:7fff::1')));
  assert.ok(!ipv6CidrContains(c, a6('fd00:77:8000::1')));
  assert.ok(ipv6CidrContains(parseIpv6Cidr('::/0')!, a6('2001:db8::1')));
  assert.equal(parseIpv6Cidr('::1')!.prefixLength, 128);
  const inPkt = Buffer.concat([Buffer.alloc(3), a6('fd00:77::1')]);
  assert.ok(ipv6CidrContains(c, inPkt, 3));
  for (const bad of ['fd00::/129', 'fd00::/', 'fd00::/01', 'fd00/8']) assert.equal(parseIpv6Cidr(bad), undefined, bad);
});

const envelope6 = fc.record({
  src: bytes16, dst: bytes16, hopLimit: fc.nat(255), trafficClass: fc.nat(255), flowLabel: fc.nat(0xfffff),
});

test('ipv6: parse(emit(header)) = header', () => {
  fc.assert(
    fc.property(envelope6, fc.constantFrom(6, 17, 58, 59, 200), fc.nat(64), (env, nh, payloadBytes) => {
      const b = Buffer.alloc(IPV6_HEADER_BYTES + payloadBytes);
      assert.equal(emitIpv6Header(env, nh, payloadBytes, b, 0), IPV6_HEADER_BYTES);
      const ip = ok(parseIpv6(b));
      assert.deepEqual(
        [ip.src, ip.dst, ip.hopLimit, ip.trafficClass, ip.flowLabel, ip.nextHeader, ip.payload.length],
        [env.src, env.dst, env.hopLimit, env.trafficClass, env.flowLabel, nh, payloadBytes],
      );
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------
// TCP

/** A TCP segment with the given header length and option bytes, checksummed for 1.2.3.4 → 5.6.7.8. */
function tcpWithOptions(opts: number[], dataOffsetWords?: number): { seg: Buffer; pseudo: number } {
  const optBytes = (opts.length + 3) & ~3;
  const seg = Buffer.alloc(TCP_HEADER_BYTES + optBytes + 3);
  seg.writeUInt16BE(1000, 0);
  seg.writeUInt16BE(80, 2);
  seg[12] = (dataOffsetWords ?? (TCP_HEADER_BYTES + optBytes) / 4) << 4;
  seg[13] = TcpFlags.SYN;
  Buffer.from(opts).copy(seg, TCP_HEADER_BYTES);
  seg.write('xyz', TCP_HEADER_BYTES + optBytes);
  const pseudo = ipv4PseudoSum(a4('1.2.3.4'), a4('5.6.7.8'), IpProtocol.TCP, 0);
  seg.writeUInt16BE(finishSum(onesSum(seg, 0, seg.length, pseudo + seg.length)), 16);
  return { seg, pseudo };
}

test('tcp options: NOP/EOL, unknown kinds skipped, wrong lengths ignored, window scale clamped', () => {
  const parse = (opts: number[]): TcpSegmentIn | WireDrop => { const { seg, pseudo } = tcpWithOptions(opts); return parseTcp(seg, pseudo); };
  assert.deepEqual(ok(parse([2, 4, 0x05, 0xb4, 1, 3, 3, 15])).options, { mss: 1460, windowScale: 14 }, 'shift 15 clamped to 14 (RFC 7323 §2.3)');
  assert.deepEqual(ok(parse([1, 1, 4, 2, 8, 10, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])).options, { sackPermitted: true, timestamps: [1, 0xffffffff] });
  assert.deepEqual(ok(parse([0, 2, 4, 0x05, 0xb4])).options, {}, 'EOL ends the list: what follows is padding');
  assert.deepEqual(ok(parse([30, 6, 1, 2, 3, 4, 2, 4, 0x02, 0x18])).options, { mss: 536 }, 'unknown kind 30 skipped by its length');
  assert.deepEqual(ok(parse([2, 3, 0x05, 3, 3, 7])).options, { windowScale: 7 }, 'MSS with length 3 is ignored');
  const seg = ok(parse([2, 4, 0x05, 0xb4]));
  assert.equal(seg.payload.toString(), 'xyz');
  assert.equal(parse([2, 0, 0, 0]), 'bad-options', 'length 0');
  assert.equal(parse([1, 1, 1, 8]), 'bad-options', 'a kind with no length byte before the end');
  assert.equal(parse([8, 10, 0, 0, 0, 0, 0, 0]), 'bad-options', 'length past the header');
  assert.equal(parse([5, 1, 0, 0]), 'bad-options', 'length 1');
});

test('tcp: header length, checksum and shortness drops', () => {
  const { seg, pseudo } = tcpWithOptions([2, 4, 0x05, 0xb4]);
  assert.equal(parseTcp(seg.subarray(0, 19), pseudo), 'short');
  const low = Buffer.from(seg);
  low[12] = 4 << 4;
  assert.equal(parseTcp(low, pseudo, false), 'bad-header-length');
  const high = Buffer.from(seg);
  high[12] = 7 << 4; // 28 bytes > 27
  assert.equal(parseTcp(high, pseudo, false), 'bad-header-length');
  const flipped = Buffer.from(seg);
  flipped[seg.length - 1] = flipped[seg.length - 1]! ^ 1;
  assert.equal(parseTcp(flipped, pseudo), 'bad-checksum');
  assert.equal(ok(parseTcp(flipped, pseudo, false)).payload.toString(), 'xy{', 'verification can be skipped');
  assert.equal(parseTcp(seg, pseudo + 1), 'bad-checksum', 'a different pseudo-header (wrong address) fails');
});

test('tcp: emit writes the options it is given in 4-byte aligned slots', () => {
  const opts = { mss: 1400, windowScale: 20, sackPermitted: true, timestamps: [7, 9] as [number, number] };
  assert.equal(tcpOptionsBytes(opts), 24);
  assert.equal(tcpOptionsBytes({}), 0);
  assert.equal(tcpOptionsBytes(undefined), 0);
  const seg: TcpSegmentOut = { srcPort: 1, dstPort: 2, seq: 3, ack: 4, flags: TcpFlags.SYN | TcpFlags.ACK, window: 5, options: opts };
  const env: Ipv4Envelope = { src: a4('10.0.0.1'), dst: a4('10.0.0.2'), ttl: 64, id: 0, tos: 0, dontFragment: true };
  const b = Buffer.alloc(tcpIpv4PacketBytes(seg));
  assert.equal(emitTcpIpv4(env, seg, b, 0), 64);
  assert.equal(b.subarray(40, 64).toString('hex'), '02040578' + '0103030e' + '01010402' + '0101080a0000000700000009');
  assert.deepEqual(ok(parseTcpIpv4(ok(parseIpv4(b)))).options, { ...opts, windowScale: 14 });
});

const tcpOptions = fc.record(
  { mss: fc.nat(0xffff), windowScale: fc.nat(14), sackPermitted: fc.constant(true), timestamps: fc.tuple(fc.nat(0xffffffff), fc.nat(0xffffffff)) },
  { requiredKeys: [] },
).map((o) => ({ ...o }));
const tcpSegment = fc.record({
  srcPort: fc.nat(0xffff), dstPort: fc.nat(0xffff), seq: fc.nat(0xffffffff), ack: fc.nat(0xffffffff), flags: fc.nat(255),
  window: fc.nat(0xffff), options: tcpOptions, payload: fc.uint8Array({ maxLength: 1500, size: 'max' }).map((u) => Buffer.from(u)),
}).map((o) => ({ ...o }));

test('tcp: parse(emit(segment)) = segment over IPv4 and IPv6, at any offset; sizes are exact', () => {
  fc.assert(
    fc.property(tcpSegment, envelope4, envelope6, fc.nat(13), (seg, env4, env6, off) => {
      const b4 = Buffer.alloc(off + tcpIpv4PacketBytes(seg) + 5, 0xa5);
      assert.equal(emitTcpIpv4(env4, seg, b4, off), tcpIpv4PacketBytes(seg));
      const ip4 = ok(parseIpv4(b4, off, b4.length - off));
      assert.equal(ip4.totalBytes, tcpIpv4PacketBytes(seg));
      assert.deepEqual(ok(parseTcpIpv4(ip4)), seg);
      const b6 = Buffer.alloc(off + tcpIpv6PacketBytes(seg));
      assert.equal(emitTcpIpv6(env6, seg, b6, off), tcpIpv6PacketBytes(seg));
      assert.deepEqual(ok(parseTcpIpv6(ok(parseIpv6(b6, off)))), seg);
    }),
    { numRuns: 200 },
  );
});

test('tcp: a segment without options or payload emits a 40-byte packet that parses with options {}', () => {
  const seg: TcpSegmentOut = { srcPort: 80, dstPort: 40000, seq: 0xffffffff, ack: 1, flags: TcpFlags.RST | TcpFlags.ACK, window: 0 };
  const b = Buffer.alloc(tcpIpv4PacketBytes(seg));
  assert.equal(emitTcpIpv4({ src: 1, dst: 2, ttl: 64, id: 7, tos: 0, dontFragment: true }, seg, b, 0), 40);
  assert.deepEqual(ok(parseTcpIpv4(ok(parseIpv4(b)))), { ...seg, options: {}, payload: Buffer.alloc(0) });
});

// ---------------------------------------------------------------------------
// UDP

const udpDatagram = fc.record({ srcPort: fc.nat(0xffff), dstPort: fc.nat(0xffff), payload: fc.uint8Array({ maxLength: 1400, size: 'max' }).map((u) => Buffer.from(u)) })
  .map((o) => ({ ...o }));

test('udp: parse(emit(datagram)) = datagram over IPv4 and IPv6', () => {
  fc.assert(
    fc.property(udpDatagram, envelope4, envelope6, (d, env4, env6) => {
      const b4 = Buffer.alloc(udpIpv4PacketBytes(d.payload.length));
      assert.equal(emitUdpIpv4(env4, d, b4, 0), b4.length);
      assert.deepEqual(ok(parseUdpIpv4(ok(parseIpv4(b4)))), d);
      const b6 = Buffer.alloc(udpIpv6PacketBytes(d.payload.length));
      assert.equal(emitUdpIpv6(env6, d, b6, 0), b6.length);
      assert.deepEqual(ok(parseUdpIpv6(ok(parseIpv6(b6)))), d);
    }),
    { numRuns: 200 },
  );
});

test('udp: length field checks, trailing bytes ignored, zero checksum rules (RFC 768, RFC 8200 §8.1)', () => {
  const ip = ok(parseIpv4(vector('ipv4-udp')));
  const seg = Buffer.from(ip.payload);
  const pseudo = ipv4PseudoSum(ip.src, ip.dst, IpProtocol.UDP, 0);
  assert.equal(parseUdp(seg.subarray(0, 7), pseudo, true), 'short');
  const mut = (f: (b: Buffer) => void): Buffer => { const b = Buffer.from(seg); f(b); return b; };
  assert.equal(parseUdp(mut((b) => b.writeUInt16BE(7, 4)), pseudo, true, false), 'bad-length');
  assert.equal(parseUdp(mut((b) => b.writeUInt16BE(seg.length + 1, 4)), pseudo, true, false), 'bad-length');
  assert.equal(parseUdp(mut((b) => { b[10] = b[10]! ^ 1; }), pseudo, true), 'bad-checksum');
  const noSum = mut((b) => b.writeUInt16BE(0, 6));
  assert.equal(ok(parseUdp(noSum, pseudo, true)).payload.toString(), 'hello ztedge', 'IPv4: zero means no checksum');
  assert.equal(parseUdp(noSum, pseudo, false), 'bad-checksum', 'IPv6: zero is invalid');
  const longer = Buffer.concat([seg, Buffer.from('junk')]);
  assert.equal(ok(parseUdp(longer, pseudo, true)).payload.toString(), 'hello ztedge', 'bytes past Length are not payload');
});

test('udp: a checksum that computes to zero is sent as 0xffff and verifies', () => {
  const env: Ipv4Envelope = { src: a4('10.0.0.1'), dst: a4('10.0.0.2'), ttl: 64, id: 0, tos: 0, dontFragment: true };
  const d: UdpDatagram = { srcPort: 53, dstPort: 1234, payload: Buffer.alloc(2) };
  const b = Buffer.alloc(udpIpv4PacketBytes(2));
  emitUdpIpv4(env, d, b, 0);
  // Choose the payload word that brings the sum to 0xffff, so the complement is 0.
  const sumWithout = 0xffff - b.readUInt16BE(26);
  d.payload.writeUInt16BE(0xffff - sumWithout, 0);
  emitUdpIpv4(env, d, b, 0);
  assert.equal(b.readUInt16BE(26), 0xffff);
  assert.deepEqual(ok(parseUdpIpv4(ok(parseIpv4(b)))).payload, d.payload);
});

// ---------------------------------------------------------------------------
// ICMP

test('icmpv4: the kernel echo request parses; the reply built in place swaps addresses and verifies', () => {
  const pkt = vector('ipv4-icmp-echo');
  const ip = ok(parseIpv4(pkt));
  const echo = ok(parseIcmpv4(ip.payload));
  assert.deepEqual({ ...echo, body: echo.body.toString() }, {
    type: Icmpv4Type.ECHO_REQUEST, code: 0, rest: 0xccf20001, id: 0xccf2, sequence: 1, body: 'ztedge-ping-0123456789abcdef',
  } satisfies Omit<IcmpMessage, 'body'> & { body: string });
  const copy = icmpv4EchoReply(ip);
  const n = emitIcmpv4EchoReply(ip, pkt, 0);
  assert.equal(n, pkt.length);
  assert.deepEqual(copy, pkt, 'the copy and the in-place reply agree');
  const rip = ok(parseIpv4(pkt));
  assert.deepEqual([rip.src, rip.dst, rip.protocol, rip.ttl], [a4('10.77.0.2'), a4('10.77.0.1'), IpProtocol.ICMP, 64]);
  const reply = ok(parseIcmpv4(rip.payload));
  assert.deepEqual([reply.type, reply.code, reply.id, reply.sequence, reply.body.toString()], [Icmpv4Type.ECHO_REPLY, 0, 0xccf2, 1, 'ztedge-ping-0123456789abcdef']);
});

test('icmpv4: an echo request with IP options gets a reply without them (the message moves down in place)', () => {
  const msg = Buffer.from('0800000012340005' + '6869', 'hex');
  msg.writeUInt16BE(internetChecksum(msg, 0, msg.length), 2);
  const b = Buffer.alloc(24 + msg.length);
  emitIpv4Header({ src: a4('192.0.2.9'), dst: a4('100.64.0.7'), ttl: 3, id: 11, tos: 0, dontFragment: false }, IpProtocol.ICMP, msg.length + 4, b, 0);
  b[0] = 0x46;
  b.fill(1, 20, 24);
  msg.copy(b, 24);
  b.writeUInt16BE(0, 10);
  b.writeUInt16BE(internetChecksum(b, 0, 24), 10);
  const ip = ok(parseIpv4(b));
  const n = emitIcmpv4EchoReply(ip, b, 0);
  assert.equal(n, 20 + msg.length);
  const rip = ok(parseIpv4(b, 0, n));
  assert.equal(rip.headerBytes, 20);
  assert.equal(rip.dst, a4('192.0.2.9'));
  const reply = ok(parseIcmpv4(rip.payload));
  assert.deepEqual([reply.type, reply.id, reply.sequence, reply.body.toString()], [0, 0x1234, 5, 'hi']);
});

test('icmpv4: destination unreachable quotes the IP header and 8 bytes, from our address to the sender', () => {
  const syn = vector('ipv4-tcp-syn');
  const from = a4('10.77.0.2');
  assert.equal(icmpv4UnreachableBytes(syn), 20 + 8 + 28);
  const b = Buffer.alloc(icmpv4UnreachableBytes(syn) + 4);
  const n = emitIcmpv4Unreachable(Icmpv4Unreachable.ADMIN_PROHIBITED, from, syn, b, 2);
  assert.equal(n, 56);
  const ip = ok(parseIpv4(b, 2, n));
  assert.deepEqual([ip.src, ip.dst, ip.protocol], [from, a4('10.77.0.1'), IpProtocol.ICMP]);
  const m = ok(parseIcmpv4(ip.payload));
  assert.deepEqual([m.type, m.code, m.rest], [Icmpv4Type.DEST_UNREACHABLE, 13, 0]);
  assert.deepEqual(m.body, syn.subarray(0, 28));
  // The quote identifies the flow: its ports are in the first 8 bytes after the header.
  assert.equal(m.body.readUInt16BE(22), 8080);
  // FRAG_NEEDED carries the next-hop MTU in the low half of `rest` (RFC 1191 §4).
  emitIcmpv4Unreachable(Icmpv4Unreachable.FRAG_NEEDED, from, syn, b, 0, 1400);
  assert.equal(ok(parseIcmpv4(ok(parseIpv4(b, 0, 56)).payload)).rest, 1400);
  // A short offending packet: the quote stops at its Total Length.
  const tiny = Buffer.alloc(24);
  emitIpv4Header({ src: 5, dst: 6, ttl: 1, id: 0, tos: 0, dontFragment: false }, 17, 4, tiny, 0);
  assert.equal(icmpv4UnreachableBytes(tiny), 20 + 8 + 24);
});

test('icmpv4: errors are never sent about errors, to broadcast or multicast, or to non-unicast sources', () => {
  const base = ok(parseIpv4(vector('ipv4-tcp-syn')));
  const withIcmp = (type: number): Ipv4Packet => ({ ...base, protocol: IpProtocol.ICMP, payload: Buffer.from([type, 0, 0, 0, 0, 0, 0, 0]) });
  assert.ok(icmpv4ErrorAllowed(base));
  assert.ok(icmpv4ErrorAllowed(withIcmp(Icmpv4Type.ECHO_REQUEST)));
  for (const t of [3, 4, 5, 11, 12, 42]) assert.ok(!icmpv4ErrorAllowed(withIcmp(t)), `type ${t}`);
  assert.ok(!icmpv4ErrorAllowed({ ...base, protocol: IpProtocol.ICMP, payload: Buffer.alloc(0) }));
  for (const dst of ['224.0.0.1', '239.255.255.250', '255.255.255.255']) assert.ok(!icmpv4ErrorAllowed({ ...base, dst: a4(dst) }), dst);
  for (const src of ['0.0.0.0', '127.0.0.1', '224.0.0.5', '255.255.255.255']) assert.ok(!icmpv4ErrorAllowed({ ...base, src: a4(src) }), src);
});

test('icmpv6: the kernel echo request verifies with its pseudo-header; the in-place reply verifies too', () => {
  const pkt = vector('ipv6-icmp-echo');
  const ip = ok(parseIpv6(pkt));
  const echo = ok(parseIcmpv6(ip));
  assert.deepEqual([echo.type, echo.sequence, echo.body.toString()], [Icmpv6Type.ECHO_REQUEST, 7, 'ztedge-ping6']);
  const bad = Buffer.from(pkt);
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 0x20;
  assert.equal(parseIcmpv6(ok(parseIpv6(bad))), 'bad-checksum');
  assert.equal(emitIcmpv6EchoReply(ip, pkt, 0), pkt.length);
  const rip = ok(parseIpv6(pkt));
  assert.equal(ipv6ToString(rip.src), 'fd00:77::2');
  assert.equal(ipv6ToString(rip.dst), 'fd00:77::1');
  const reply = ok(parseIcmpv6(rip));
  assert.deepEqual([reply.type, reply.id, reply.sequence, reply.body.toString()], [Icmpv6Type.ECHO_REPLY, echo.id, 7, 'ztedge-ping6']);
  assert.equal(parseIcmpv4(Buffer.alloc(ICMP_HEADER_BYTES - 1)), 'short');
});

// ---------------------------------------------------------------------------
// virtio_net_hdr

test('vnet: header round trip; a kernel SYN with NEEDS_CSUM verifies only once its checksum is completed', () => {
  const h: VnetHeader = { flags: 1, gsoType: 4, hdrLen: 0x1234, gsoSize: 1440, csumStart: 40, csumOffset: 16 };
  const b = Buffer.alloc(12);
  assert.equal(emitVnetHeader(h, b, 1), VNET_HDR_BYTES);
  assert.equal(b.subarray(1, 11).toString('hex'), '01043412a005280010' + '00');
  assert.deepEqual(parseVnetHeader(b, 1), h);
  assert.equal(parseVnetHeader(b, 3), 'short');
  emitPlainVnetHeader(b, 0);
  assert.deepEqual(parseVnetHeader(b), { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });

  const raw = vector('vnet-tcp-syn');
  const vh = ok(parseVnetHeader(raw));
  assert.deepEqual(vh, { flags: VnetFlags.NEEDS_CSUM, gsoType: VnetGso.NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 16 });
  const pkt = raw.subarray(VNET_HDR_BYTES);
  const ip = ok(parseIpv4(pkt));
  assert.equal(parseTcpIpv4(ip), 'bad-checksum', 'partial: only the pseudo-header sum is there');
  assert.equal(ok(parseTcpIpv4(ip, false)).options.mss, 1460);
  assert.equal(completeVnetChecksum(pkt, vh), undefined);
  assert.equal(ok(parseTcpIpv4(ip)).flags, TcpFlags.SYN);
  assert.equal(completeVnetChecksum(pkt, { ...vh, flags: 0 }), undefined, 'nothing to do without NEEDS_CSUM');
  assert.equal(completeVnetChecksum(pkt, { ...vh, csumOffset: pkt.length - 21 }), 'bad-vnet');
});

test('vnet: a real kernel GSO super-segment splits into MSS packets (seq, ip id, PSH on the last, checksums)', () => {
  const raw = vector('vnet-tcp-gso');
  const vh = ok(parseVnetHeader(raw));
  assert.deepEqual(vh, { flags: VnetFlags.NEEDS_CSUM, gsoType: VnetGso.TCPV4, hdrLen: 40, gsoSize: 1400, csumStart: 20, csumOffset: 16 });
  const pkt = raw.subarray(VNET_HDR_BYTES);
  const whole = ok(parseIpv4(pkt));
  const head = ok(parseTcpIpv4(whole, false));
  assert.equal(head.flags, TcpFlags.ACK | TcpFlags.PSH);
  assert.equal(tcpGsoSegmentCount(pkt, vh), 4);
  const out = Array.from({ length: 4 }, () => Buffer.alloc(VNET_HDR_BYTES + 1500, 0xcc));
  const lengths = new Uint32Array(4);
  assert.equal(splitTcpGso(pkt, vh, out, VNET_HDR_BYTES, lengths), 4);
  assert.deepEqual([...lengths], [1440, 1440, 1440, 840]);
  const data: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    assert.equal(out[i]![0], 0xcc, 'headroom untouched');
    const ip = ok(parseIpv4(out[i]!, VNET_HDR_BYTES, lengths[i]!));
    assert.deepEqual([ip.src, ip.dst, ip.id, ip.dontFragment], [whole.src, whole.dst, (whole.id + i) & 0xffff, true]);
    const seg = ok(parseTcpIpv4(ip));
    assert.equal(seg.seq, (head.seq + 1400 * i) >>> 0);
    assert.equal(seg.ack, head.ack);
    assert.equal(seg.flags, i === 3 ? TcpFlags.ACK | TcpFlags.PSH : TcpFlags.ACK);
    data.push(Buffer.from(seg.payload));
  }
  const joined = Buffer.concat(data);
  assert.equal(joined.length, 5000);
  assert.ok(joined.every((v, i) => v === ((7 * i + 3) & 0xff)), 'the payload the sender wrote, in order');
});

test('vnet: split keeps FIN on the last piece and CWR on the first, works for IPv6, and refuses what it cannot do', () => {
  const payload = Buffer.alloc(2500);
  for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
  const seg: TcpSegmentOut = {
    srcPort: 5, dstPort: 6, seq: 0xfffffc00, ack: 9, window: 100, payload,
    flags: TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN | TcpFlags.CWR, options: { timestamps: [1, 2] },
  };
  const env6: Ipv6Envelope = { src: a6('fd00::1'), dst: a6('fd00::2'), hopLimit: 64, trafficClass: 0, flowLabel: 5 };
  const b6 = Buffer.alloc(tcpIpv6PacketBytes(seg));
  emitTcpIpv6(env6, seg, b6, 0);
  const h6: VnetHeader = { flags: 0, gsoType: VnetGso.TCPV6, hdrLen: 72, gsoSize: 1000, csumStart: 40, csumOffset: 16 };
  const out = Array.from({ length: 3 }, () => Buffer.alloc(1100));
  const lengths: number[] = [];
  assert.equal(splitTcpGso(b6, h6, out, 0, lengths), 3);
  const pieces = out.map((b, i) => ok(parseTcpIpv6(ok(parseIpv6(b, 0, lengths[i]!)))));
  assert.deepEqual(pieces.map((p) => p.flags), [TcpFlags.ACK | TcpFlags.CWR, TcpFlags.ACK, TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN]);
  assert.deepEqual(pieces.map((p) => p.seq), [0xfffffc00, 0xfffffc00 + 1000 - 2 ** 32, 0xfffffc00 + 2000 - 2 ** 32].map((s) => s >>> 0));
  assert.deepEqual(pieces.map((p) => p.options), [{ timestamps: [1, 2] }, { timestamps: [1, 2] }, { timestamps: [1, 2] }]);
  assert.deepEqual(Buffer.concat(pieces.map((p) => p.payload)), payload);

  assert.equal(splitTcpGso(b6, h6, out.slice(0, 2), 0, lengths), 'bad-vnet', 'too few buffers');
  assert.equal(splitTcpGso(b6, h6, [out[0]!, out[1]!, Buffer.alloc(100)], 0, lengths), 'bad-vnet', 'a buffer too small');
  assert.equal(splitTcpGso(b6, { ...h6, gsoType: VnetGso.NONE }, out, 0, lengths), 'bad-vnet');
  assert.equal(splitTcpGso(b6, { ...h6, gsoSize: 0 }, out, 0, lengths), 'bad-vnet');
  assert.equal(splitTcpGso(b6, { ...h6, gsoType: VnetGso.TCPV4 }, out, 0, lengths), 'bad-version', 'gso type and IP version disagree');
  assert.equal(tcpGsoSegmentCount(b6, { ...h6, gsoType: VnetGso.UDP_L4 }), 'bad-vnet');
  // A super-segment with no payload (a bare ACK) is one piece, the headers unchanged but for the checksums.
  const ack: TcpSegmentOut = { ...seg, payload: undefined, flags: TcpFlags.ACK };
  const b = Buffer.alloc(tcpIpv4PacketBytes(ack));
  emitTcpIpv4({ src: 1, dst: 2, ttl: 64, id: 0xffff, tos: 0, dontFragment: true }, ack, b, 0);
  const one = [Buffer.alloc(100)];
  assert.equal(splitTcpGso(b, { ...h6, gsoType: VnetGso.TCPV4 }, one, 0, lengths), 1);
  assert.deepEqual(one[0]!.subarray(0, lengths[0]), b);
});

test('vnet: the offload header for our own writes matches what the kernel sends (NEEDS_CSUM, TSO), byte for byte', () => {
  for (const name of ['vnet-tcp-syn', 'vnet-tcp-gso']) {
    const raw = vector(name);
    const kernelHeader = ok(parseVnetHeader(raw));
    const pkt = Buffer.from(raw.subarray(VNET_HDR_BYTES));
    const partial = pkt.readUInt16BE(36);
    completeVnetChecksum(pkt, kernelHeader);
    const mss = name === 'vnet-tcp-gso' ? 1400 : 1460;
    assert.deepEqual(tcpOffloadVnetHeader(pkt, mss), kernelHeader, name);
    assert.equal(pkt.readUInt16BE(36), partial, `${name}: the partial sum the kernel wrote`);
  }
});

test('vnet: a super-segment we emit with a partial checksum completes and splits into valid packets', () => {
  const payload = Buffer.alloc(4000, 7);
  const seg: TcpSegmentOut = { srcPort: 443, dstPort: 50000, seq: 1, ack: 2, flags: TcpFlags.ACK | TcpFlags.PSH, window: 512, payload };
  for (const v6 of [false, true]) {
    const size = v6 ? tcpIpv6PacketBytes(seg) : tcpIpv4PacketBytes(seg);
    const b = Buffer.alloc(VNET_HDR_BYTES + size);
    const n = v6
      ? emitTcpIpv6({ src: a6('fd00::1'), dst: a6('fd00::2'), hopLimit: 64, trafficClass: 0, flowLabel: 0 }, seg, b, VNET_HDR_BYTES, true)
      : emitTcpIpv4({ src: a4('100.64.0.9'), dst: a4('10.0.0.5'), ttl: 64, id: 1, tos: 0, dontFragment: true }, seg, b, VNET_HDR_BYTES, true);
    const pkt = b.subarray(VNET_HDR_BYTES, VNET_HDR_BYTES + n);
    const h = ok(tcpOffloadVnetHeader(pkt, 1448));
    assert.deepEqual(h, {
      flags: VnetFlags.NEEDS_CSUM, gsoType: v6 ? VnetGso.TCPV6 : VnetGso.TCPV4, hdrLen: (v6 ? 40 : 20) + 20, gsoSize: 1448,
      csumStart: v6 ? 40 : 20, csumOffset: 16,
    });
    emitVnetHeader(h, b, 0);
    const out = Array.from({ length: 3 }, () => Buffer.alloc(60 + 1448));
    const lengths: number[] = [];
    assert.equal(splitTcpGso(pkt, ok(parseVnetHeader(b)), out, 0, lengths), 3);
    const got = out.map((o, i) => {
      const ip = v6 ? ok(parseIpv6(o, 0, lengths[i]!)) : ok(parseIpv4(o, 0, lengths[i]!));
      return ok(v6 ? parseTcpIpv6(ip as Ipv6Packet) : parseTcpIpv4(ip as Ipv4Packet)).payload.length;
    });
    assert.deepEqual(got, [1448, 1448, 1104]);
    assert.equal(completeVnetChecksum(pkt, h), undefined);
    const whole = v6 ? parseTcpIpv6(ok(parseIpv6(pkt))) : parseTcpIpv4(ok(parseIpv4(pkt)));
    assert.deepEqual(ok(whole).payload, payload, 'the completed checksum verifies');
  }
  const small: TcpSegmentOut = { ...seg, payload: Buffer.alloc(100) };
  const b = Buffer.alloc(tcpIpv4PacketBytes(small));
  emitTcpIpv4({ src: 1, dst: 2, ttl: 64, id: 0, tos: 0, dontFragment: true }, small, b, 0, true);
  assert.deepEqual(tcpOffloadVnetHeader(b, 1448), { flags: 1, gsoType: VnetGso.NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 16 });
  assert.equal(tcpOffloadVnetHeader(Buffer.from(vector('ipv4-udp')), 1448), 'bad-vnet', 'not TCP');
});

test('drop reasons: the list is complete and unique', () => {
  assert.equal(new Set(WIRE_DROPS).size, WIRE_DROPS.length);
  assert.ok(WIRE_DROPS.includes('fragment') && WIRE_DROPS.includes('bad-vnet'));
});
