/**
 * Fuzzing of every IP-layer parser in src/wire (fast-check, time-boxed):
 * random bytes and mutated kernel packets (test/vectors) never make a parser
 * throw; each result is a known WireDrop or a value whose views lie inside
 * the input. Out-of-range reads are caught by parsing the same bytes four
 * ways — in their own ArrayBuffer, behind a Proxy that throws on an index
 * outside the view, and as a view between 0xff and random padding (which
 * catches wide views such as the checksum's Uint32Array reaching past the
 * input) — and requiring the same result. Writers (checksum completion, GSO split, ICMP replies) are
 * checked for writes outside their range with sentinel padding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  IpProtocol, VNET_HDR_BYTES, WIRE_DROPS,
  completeVnetChecksum, emitIcmpv4EchoReply, emitIcmpv4Unreachable, icmpv4UnreachableBytes, ipv4PseudoSum, isDrop,
  parseIcmpv4, parseIcmpv6, parseIpv4, parseIpv4Address, parseIpv4Cidr, parseIpv6, parseIpv6Address, parseIpv6Cidr, parseTcp,
  parseTcpIpv4, parseTcpIpv6, parseUdp, parseUdpIpv4, parseUdpIpv6, parseVnetHeader, splitTcpGso, tcpGsoSegmentCount,
} from '../../src/wire/index.js';
import { VECTOR_NAMES, vector } from '../vectors/wire-vectors.js';

/** Bound per property: a few seconds for the whole file on a shared 2-core box. */
const RUNS = { numRuns: 3000, interruptAfterTimeLimit: 1500, markInterruptAsFailure: false };
const DROPS = new Set<string>(WIRE_DROPS);

/** The same bytes in their own ArrayBuffer (no neighbours to read by mistake). */
function alone(bytes: Uint8Array): Buffer {
  const ab = new ArrayBuffer(bytes.length);
  new Uint8Array(ab).set(bytes);
  return Buffer.from(ab);
}

/** The same bytes as a view with `pad` before and after. */
function framed(bytes: Uint8Array, pad: Uint8Array): Buffer {
  const b = Buffer.alloc(bytes.length + 2 * pad.length);
  b.set(pad, 0);
  b.set(bytes, pad.length);
  b.set(pad, pad.length + bytes.length);
  return b.subarray(pad.length, pad.length + bytes.length);
}

/**
 * The same bytes behind a Proxy that throws on any index outside the view,
 * read or write; its subarrays are guarded the same way. This catches the
 * out-of-range reads a typed array would otherwise answer with undefined
 * (which `|`, `<<` and `&` quietly turn into 0).
 */
function strict(b: Buffer): Buffer {
  return new Proxy(b, {
    get(t, k) {
      if (typeof k === 'string' && /^-?\d+$/.test(k)) {
        const i = Number(k);
        if (i < 0 || i >= t.length) throw new RangeError(`read [${i}] of a ${t.length}-byte view`);
        return t[i];
      }
      if (k === 'subarray') return (start?: number, end?: number) => strict(t.subarray(start, end));
      const v: unknown = Reflect.get(t, k, t);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
    set(t, k, v: number) {
      if (typeof k === 'string' && /^-?\d+$/.test(k)) {
        const i = Number(k);
        if (i < 0 || i >= t.length) throw new RangeError(`write [${i}] of a ${t.length}-byte view`);
        t[i] = v;
        return true;
      }
      return Reflect.set(t, k, v, t);
    },
  });
}

/**
 * A result made comparable across inputs at different places: views become
 * their offset in the input plus their bytes, after checking they lie in it.
 */
function normalize(v: unknown, input: Buffer): unknown {
  if (Buffer.isBuffer(v)) {
    assert.equal(v.buffer, input.buffer, 'a view of the input, not a copy');
    const start = v.byteOffset - input.byteOffset;
    assert.ok(start >= 0 && start + v.length <= input.length, `view [${start}, +${v.length}) outside input of ${input.length}`);
    return { at: start, hex: v.toString('hex') };
  }
  if (Array.isArray(v)) return v.map((x) => normalize(x, input));
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = normalize(x, input);
    return o;
  }
  if (typeof v === 'number') assert.ok(Number.isFinite(v), 'no NaN from a read past the end');
  return v;
}

/** Runs `parse` on `bytes` four ways and checks the invariants; returns the result of the first. */
function check(parse: (input: Buffer) => unknown, bytes: Uint8Array, pad: Uint8Array): unknown {
  const own = alone(bytes);
  const r = parse(own);
  if (typeof r === 'string') assert.ok(DROPS.has(r), `unknown drop reason ${r}`);
  const n = normalize(r, own);
  const guardedInput = strict(alone(bytes));
  assert.deepEqual(normalize(parse(guardedInput), guardedInput), n);
  const ff = framed(bytes, new Uint8Array(pad.length).fill(0xff));
  assert.deepEqual(normalize(parse(ff), ff), n, 'result changed with 0xff around the input: a read out of range');
  const rnd = framed(bytes, pad);
  assert.deepEqual(normalize(parse(rnd), rnd), n, 'result changed with random bytes around the input');
  return r;
}

const pad = fc.uint8Array({ minLength: 1, maxLength: 24 });

/** Random bytes, half of them starting with a plausible IPv4 or IPv6 first byte. */
const randomPacket = fc.tuple(fc.uint8Array({ maxLength: 160, size: 'max' }), fc.constantFrom(-1, 0x45, 0x46, 0x4f, 0x60, 0x6f)).map(([b, first]) => {
  if (first >= 0 && b.length > 0) b[0] = first;
  return b;
});

/** A kernel-made packet with a few bytes changed, and maybe cut short or lengthened. */
const mutatedPacket = fc.tuple(
  fc.constantFrom(...VECTOR_NAMES),
  fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
  fc.oneof(fc.constant(-1), fc.nat(), fc.constant(-2)),
).map(([name, edits, cut]) => {
  let b: Uint8Array = vector(name).subarray(name.startsWith('vnet') ? VNET_HDR_BYTES : 0);
  if (cut === -2) b = Buffer.concat([b, Buffer.from([1, 2, 3])]);
  else if (cut >= 0) b = b.subarray(0, cut % (b.length + 1));
  const c = Uint8Array.from(b);
  for (const [at, v] of edits) if (c.length > 0) c[at % c.length] = v;
  return c;
});
const anyPacket = fc.oneof(randomPacket, mutatedPacket);

/** IP, then the transport the protocol field names: the path the tun I/O shell runs. */
function parseChain(verify: boolean) {
  return (b: Buffer): unknown => {
    const v = b.length > 0 ? b[0]! >>> 4 : 0;
    if (v === 6) {
      const ip = parseIpv6(b);
      if (isDrop(ip)) return ip;
      if (ip.nextHeader === IpProtocol.TCP) return [ip, parseTcpIpv6(ip, verify)];
      if (ip.nextHeader === IpProtocol.UDP) return [ip, parseUdpIpv6(ip, verify)];
      if (ip.nextHeader === IpProtocol.ICMPV6) return [ip, parseIcmpv6(ip, verify)];
      return ip;
    }
    const ip = parseIpv4(b, 0, b.length, verify);
    if (isDrop(ip)) return ip;
    if (ip.protocol === IpProtocol.TCP) return [ip, parseTcpIpv4(ip, verify)];
    if (ip.protocol === IpProtocol.UDP) return [ip, parseUdpIpv4(ip, verify)];
    if (ip.protocol === IpProtocol.ICMP) return [ip, parseIcmpv4(ip.payload, verify)];
    return ip;
  };
}

test('fuzz: IP → transport parse chain, checksums skipped and verified, on random and mutated packets', () => {
  for (const verify of [false, true]) {
    fc.assert(fc.property(anyPacket, pad, (b, p) => { check(parseChain(verify), b, p); }), RUNS);
  }
});

test('fuzz: IPv4 parser with an offset and length inside a larger buffer', () => {
  fc.assert(
    fc.property(anyPacket, pad, fc.nat(8), fc.nat(8), (b, p, skip, trim) => {
      check((x) => parseIpv4(x, Math.min(skip, x.length), Math.max(0, x.length - skip - trim), false), b, p);
      // Nonsense ranges are 'short', never a throw.
      assert.equal(parseIpv4(alone(b), -1, b.length), 'short');
      assert.equal(parseIpv4(alone(b), 1, b.length), 'short');
    }),
    RUNS,
  );
});

test('fuzz: TCP, UDP and ICMP parsers fed raw transport bytes', () => {
  const pseudo = ipv4PseudoSum(0x0a000001, 0x0a000002, IpProtocol.TCP, 0);
  const seg = fc.oneof(fc.uint8Array({ maxLength: 80, size: 'max' }), mutatedPacket.map((b) => b.subarray(Math.min(20, b.length))));
  fc.assert(
    fc.property(seg, pad, fc.boolean(), fc.boolean(), (b, p, verify, zeroOk) => {
      check((x) => parseTcp(x, pseudo, verify), b, p);
      check((x) => parseUdp(x, pseudo, zeroOk, verify), b, p);
      check((x) => parseIcmpv4(x, verify), b, p);
    }),
    RUNS,
  );
});

test('fuzz: TCP options: any option bytes give options or bad-options, never a throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40, size: 'max' }), pad, (opts, p) => {
      const words = Math.ceil(opts.length / 4);
      const b = new Uint8Array(20 + words * 4 + 4);
      b[12] = (5 + words) << 4;
      b.set(opts, 20);
      const r = check((x) => parseTcp(x, 0, false), b, p);
      assert.ok(r === 'bad-options' || typeof r !== 'string', String(r));
      if (typeof r !== 'string') {
        const ws = (r as { options: { windowScale?: number } }).options.windowScale;
        assert.ok(ws === undefined || (ws >= 0 && ws <= 14));
      }
    }),
    RUNS,
  );
});

/** `bytes` between two sentinel runs in one buffer; `intact()` says whether the sentinels survived. */
function guarded(bytes: Uint8Array): { view: Buffer; intact: () => boolean } {
  const g = 16;
  const b = Buffer.alloc(bytes.length + 2 * g, 0x5a);
  b.set(bytes, g);
  const view = b.subarray(g, g + bytes.length);
  return { view, intact: () => b.subarray(0, g).every((x) => x === 0x5a) && b.subarray(g + bytes.length).every((x) => x === 0x5a) };
}

const vnetHeader = fc.record({
  flags: fc.constantFrom(0, 1, 2, 3, 255), gsoType: fc.constantFrom(0, 1, 3, 4, 5, 0x81, 0x84, 255),
  hdrLen: fc.nat(0xffff), gsoSize: fc.oneof(fc.nat(0xffff), fc.integer({ min: 1, max: 64 })),
  csumStart: fc.oneof(fc.nat(0xffff), fc.nat(80)), csumOffset: fc.oneof(fc.nat(0xffff), fc.constantFrom(6, 16)),
});

test('fuzz: virtio_net_hdr parse, checksum completion and GSO split stay inside their buffers', () => {
  let splits = 0;
  fc.assert(
    fc.property(anyPacket, vnetHeader, pad, (b, h, p) => {
      check((x) => parseVnetHeader(x), b, p);
      const c = guarded(b);
      const r = completeVnetChecksum(c.view, h);
      assert.ok(r === undefined || r === 'bad-vnet');
      assert.ok(c.intact(), 'completeVnetChecksum wrote outside the packet');
      const count = check((x) => tcpGsoSegmentCount(x, h), b, p);
      const outs = Array.from({ length: 3 }, () => guarded(new Uint8Array(200)));
      const lengths: number[] = [];
      const n = splitTcpGso(alone(b), h, outs.map((o) => o.view), 4, lengths);
      if (typeof n === 'string') {
        assert.ok(DROPS.has(n));
      } else {
        assert.equal(n, count);
        for (let i = 0; i < n; i++) {
          assert.ok(lengths[i]! + 4 <= 200);
          // Every piece is a packet our own parser accepts, checksums included (the
          // splitter copies TCP options as they are, so malformed ones stay malformed).
          const piece = parseChain(true)(outs[i]!.view.subarray(4, 4 + lengths[i]!));
          assert.ok(Array.isArray(piece), 'an IP packet carrying TCP');
          const tcp: unknown = piece[1];
          assert.ok(typeof tcp !== 'string' || tcp === 'bad-options', String(tcp));
        }
        splits++;
      }
      assert.ok(outs.every((o) => o.intact()), 'splitTcpGso wrote outside an output buffer');
    }),
    RUNS,
  );
  assert.ok(splits > 0, 'some inputs were split (the property saw the success path)');
});

test('fuzz: ICMP replies and errors built from any accepted packet verify and stay in their buffers', () => {
  let replies = 0;
  fc.assert(
    fc.property(anyPacket, (b) => {
      const ip = parseIpv4(alone(b));
      if (isDrop(ip)) return;
      const size = icmpv4UnreachableBytes(alone(b));
      const e = guarded(new Uint8Array(size));
      assert.equal(emitIcmpv4Unreachable(3, 0x0a000002, alone(b), e.view, 0), size);
      assert.ok(e.intact());
      const err = parseIcmpv4((parseIpv4(e.view) as { payload: Buffer }).payload);
      assert.ok(!isDrop(err), String(err));
      if (ip.protocol !== IpProtocol.ICMP) return;
      const req = parseIcmpv4(ip.payload);
      if (isDrop(req) || req.type !== 8) return;
      const r = guarded(new Uint8Array(20 + ip.payload.length));
      emitIcmpv4EchoReply(ip, r.view, 0);
      assert.ok(r.intact());
      const reply = parseIcmpv4((parseIpv4(r.view) as { payload: Buffer }).payload);
      assert.ok(!isDrop(reply) && reply.type === 0);
      replies++;
    }),
    RUNS,
  );
  assert.ok(replies > 0, 'some inputs were echo requests');
});

test('fuzz: address and prefix text parsers take any string without throwing', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 48 }),
    fc.array(fc.constantFrom('0', '1', 'f', 'ffff', '255', '256', '.', ':', '::', '/', '32', '128', '%', ' '), { maxLength: 14 }).map((a) => a.join('')),
  );
  fc.assert(
    fc.property(text, (s) => {
      const v4 = parseIpv4Address(s);
      assert.ok(v4 === undefined || (Number.isInteger(v4) && v4 >= 0 && v4 <= 0xffffffff));
      const c4 = parseIpv4Cidr(s);
      assert.ok(c4 === undefined || (c4.prefixLength >= 0 && c4.prefixLength <= 32 && (c4.network & ~c4.mask) === 0));
      const v6 = parseIpv6Address(s);
      assert.ok(v6 === undefined || v6.length === 16);
      const c6 = parseIpv6Cidr(s);
      assert.ok(c6 === undefined || (c6.prefixLength >= 0 && c6.prefixLength <= 128));
    }),
    RUNS,
  );
});
