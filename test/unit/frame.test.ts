/**
 * Link frame codec: byte vectors, every split point of a stream, zero-copy
 * delivery, a naive reference decoder, and fast-check fuzzing of hostile
 * input (never a throw, never an out-of-range read, only close codes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CloseCode, FrameDecoder, FrameFlags, FrameType, HEADER_BYTES, allocWithHeadroom, decodeControl, decodeCredit, encodeControl, encodeCredit,
  encodeFrame, header, withHeader,
  type CloseCodeValue, type FrameHandler,
} from '../../src/wire/index.js';

interface Seen { type: number; flags: number; circuitId: number; body: Buffer }

function collector(): FrameHandler & { frames: Seen[]; errors: { code: CloseCodeValue; detail: string }[] } {
  const frames: Seen[] = [];
  const errors: { code: CloseCodeValue; detail: string }[] = [];
  return {
    frames, errors,
    onFrame(type, flags, circuitId, body) { frames.push({ type, flags, circuitId, body: Buffer.from(body) }); },
    onProtocolError(code, detail) { errors.push({ code, detail }); },
  };
}

/** Like collector(), but takes DATA bodies that straddle chunks as pieces (FrameHandler.onDataPieces). */
function piecesCollector(): ReturnType<typeof collector> & { pieceCalls: number } {
  const c = collector() as ReturnType<typeof collector> & { pieceCalls: number; onDataPieces: NonNullable<FrameHandler['onDataPieces']> };
  c.pieceCalls = 0;
  c.onDataPieces = (flags, circuitId, pieces, length) => {
    c.pieceCalls++;
    assert.ok(pieces.length >= 2, 'only bodies that straddle chunks come in pieces');
    assert.equal(pieces.reduce((n, p) => n + p.length, 0), length);
    c.frames.push({ type: FrameType.DATA, flags, circuitId, body: Buffer.concat(pieces) });
  };
  return c;
}

/** The simplest correct decoder: concatenate everything, then walk it. */
function naiveDecode(stream: Buffer, max: number): { frames: Seen[]; error?: CloseCodeValue } {
  const frames: Seen[] = [];
  let off = 0;
  while (stream.length - off >= 12) {
    const version = stream[off]!; const type = stream[off + 1]!; const flags = stream.readUInt16BE(off + 2);
    const circuitId = stream.readUInt32BE(off + 4); const len = stream.readUInt32BE(off + 8);
    if (version !== 1) return { frames, error: CloseCode.PROTOCOL_VERSION };
    if (!(Object.values(FrameType) as number[]).includes(type)) return { frames, error: CloseCode.UNKNOWN_TYPE };
    if ((flags & ~(FrameFlags.FIN | FrameFlags.BLOCKED)) !== 0) return { frames, error: CloseCode.BAD_FLAGS };
    if (len > max) return { frames, error: CloseCode.FRAME_TOO_LARGE };
    if (stream.length - off - 12 < len) break;
    frames.push({ type, flags, circuitId, body: Buffer.from(stream.subarray(off + 12, off + 12 + len)) });
    off += 12 + len;
  }
  return { frames };
}

test('header byte vector: version, type, flags, circuit, length are big-endian at fixed offsets', () => {
  const h = header(FrameType.DATA, FrameFlags.FIN, 0x01020304, 0x0a0b0c0d);
  assert.equal(h.toString('hex'), '0113' + '0001' + '01020304' + '0a0b0c0d');
  assert.equal(header(FrameType.DATA, FrameFlags.BLOCKED, 1, 0).toString('hex'), '0113' + '0002' + '00000001' + '00000000');
  assert.equal(HEADER_BYTES, 12);
  const f = encodeFrame(FrameType.PING, 0, 0, Buffer.from('abc'));
  assert.equal(f.toString('hex'), '01030000' + '00000000' + '00000003' + '616263');
});

test('decodes frames split at every byte boundary, identical to the naive decoder', () => {
  const frames = [
    encodeFrame(FrameType.HELLO, 0, 0, encodeControl({ v: 1, id: 'edge-1' })),
    encodeFrame(FrameType.DATA, 0, 7, Buffer.alloc(100, 0x41)),
    encodeFrame(FrameType.CREDIT, 0, 7, encodeCredit(65536)),
    encodeFrame(FrameType.DATA, FrameFlags.FIN, 9, Buffer.alloc(0)),
    encodeFrame(FrameType.CLOSE, 0, 0, encodeControl({ code: 0 })),
  ];
  const stream = Buffer.concat(frames);
  const expected = naiveDecode(stream, 1 << 20).frames;
  assert.equal(expected.length, 5);
  for (let a = 0; a <= stream.length; a++) {
    for (const b of [a, Math.min(stream.length, a + 1), Math.min(stream.length, a + 13), stream.length]) {
      const d = new FrameDecoder();
      const c = collector();
      d.push(stream.subarray(0, a), c);
      d.push(stream.subarray(a, b), c);
      d.push(stream.subarray(b), c);
      assert.deepEqual(c.frames, expected, `split at ${a}/${b}`);
      assert.equal(c.errors.length, 0);
      assert.equal(d.pendingBytes, 0);
    }
  }
});

test('a frame inside one chunk is delivered as a view of that chunk (zero-copy)', () => {
  const payload = Buffer.alloc(1000, 0x5a);
  const chunk = encodeFrame(FrameType.DATA, 0, 3, payload);
  const d = new FrameDecoder();
  let body: Buffer | undefined;
  d.push(chunk, { onFrame(_t, _f, _c, b) { body = b; }, onProtocolError() { assert.fail('no error expected'); } });
  assert.ok(body !== undefined);
  assert.equal(body.buffer, chunk.buffer, 'same memory');
  assert.equal(body.byteOffset, chunk.byteOffset + HEADER_BYTES);
  assert.equal(body.length, 1000);
});

test('a body that straddles chunks is copied once, with headroom a forwarder fills with the next header', () => {
  const payload = Buffer.alloc(50_000);
  for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
  const stream = encodeFrame(FrameType.DATA, 0, 3, payload);
  const d = new FrameDecoder();
  const bodies: Buffer[] = [];
  const handler: FrameHandler = { onFrame(_t, _f, _c, b) { bodies.push(b); }, onProtocolError() { assert.fail('no error expected'); } };
  for (let off = 0; off < stream.length; off += 16_384) d.push(stream.subarray(off, off + 16_384), handler);
  assert.equal(bodies.length, 1);
  const body = bodies[0]!;
  assert.ok(body.equals(payload));
  const framed = withHeader(body, FrameType.DATA, FrameFlags.FIN, 77);
  assert.ok(framed !== undefined, 'the decoder\'s copy has registered headroom');
  assert.equal(framed.length, HEADER_BYTES + payload.length);
  assert.equal(framed.buffer, body.buffer, 'written in place, not copied');
  const again = collector();
  new FrameDecoder().push(framed, again);
  assert.deepEqual(again.frames, [{ type: FrameType.DATA, flags: FrameFlags.FIN, circuitId: 77, body: payload }]);
  assert.ok(body.equals(payload), 'the body itself is untouched');
});

test('a handler that takes pieces gets a straddling DATA body as views of the pushed chunks, no copy', () => {
  const payload = Buffer.alloc(50_000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) % 256;
  const stream = encodeFrame(FrameType.DATA, FrameFlags.FIN, 9, payload);
  const chunks: Buffer[] = [];
  for (let off = 0; off < stream.length; off += 16_384) chunks.push(Buffer.from(stream.subarray(off, off + 16_384)));
  const got: Buffer[][] = [];
  const d = new FrameDecoder();
  const handler: FrameHandler = {
    onFrame() { assert.fail('the body straddles chunks: it comes in pieces'); },
    onDataPieces(flags, circuitId, pieces, length) {
      assert.equal(flags, FrameFlags.FIN);
      assert.equal(circuitId, 9);
      assert.equal(length, payload.length);
      got.push(pieces);
    },
    onProtocolError() { assert.fail('no error expected'); },
  };
  for (const c of chunks) d.push(c, handler);
  assert.equal(got.length, 1);
  assert.equal(got[0]!.length, 4);
  got[0]!.forEach((p, i) => assert.equal(p.buffer, chunks[i]!.buffer, `piece ${i} is a view of chunk ${i}`));
  assert.ok(Buffer.concat(got[0]!).equals(payload));
  // Control frames and bodies inside one chunk still come whole.
  const whole: number[] = [];
  new FrameDecoder().push(Buffer.concat([encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(10)), encodeFrame(FrameType.CREDIT, 0, 1, encodeCredit(5))]), {
    onFrame(type) { whole.push(type); }, onDataPieces() { assert.fail('contiguous bodies come whole'); }, onProtocolError() { assert.fail('no error'); },
  });
  assert.deepEqual(whole, [FrameType.DATA, FrameType.CREDIT]);
});

test('withHeader takes only a whole registered body: never bytes in front of a view that may belong to other data', () => {
  const owned = allocWithHeadroom(100).fill(7);
  assert.ok(withHeader(owned, FrameType.DATA, 0, 1) !== undefined);
  assert.equal(withHeader(owned.subarray(4), FrameType.DATA, 0, 1), undefined, 'cut at the front');
  assert.equal(withHeader(owned.subarray(0, 50), FrameType.DATA, 0, 1), undefined, 'cut at the back');
  const lookalike = Buffer.allocUnsafeSlow(HEADER_BYTES + 100).subarray(HEADER_BYTES);
  assert.equal(withHeader(lookalike, FrameType.DATA, 0, 1), undefined, 'same shape, not registered');
  assert.equal(withHeader(Buffer.alloc(100), FrameType.DATA, 0, 1), undefined);
  const inChunk = encodeFrame(FrameType.DATA, 0, 3, Buffer.alloc(100));
  assert.equal(withHeader(inChunk.subarray(HEADER_BYTES), FrameType.DATA, 0, 1), undefined, 'a view into a received chunk');
});

test('hostile frames close the link with the right code and stop decoding', () => {
  const cases: [Buffer, CloseCodeValue][] = [
    [Buffer.from('02130000000000010000000000', 'hex'), CloseCode.PROTOCOL_VERSION],
    [Buffer.from('01ff0000000000010000000000', 'hex'), CloseCode.UNKNOWN_TYPE],
    [Buffer.from('01138000000000010000000000', 'hex'), CloseCode.BAD_FLAGS],
    [Buffer.from('01130004000000010000000000', 'hex'), CloseCode.BAD_FLAGS],
    [Buffer.from('011300000000000100100001', 'hex'), CloseCode.FRAME_TOO_LARGE],
    [Buffer.from('0113000000000001ffffffff', 'hex'), CloseCode.FRAME_TOO_LARGE],
  ];
  for (const [bytes, code] of cases) {
    const d = new FrameDecoder(1 << 20);
    const c = collector();
    d.push(bytes, c);
    assert.deepEqual(c.errors.map((e) => e.code), [code], bytes.toString('hex'));
    // Nothing after the error is decoded, even a valid frame.
    d.push(encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)), c);
    assert.equal(c.frames.length, 0);
    assert.equal(d.pendingBytes, 0, 'buffers are dropped');
  }
});

test('an oversized length is refused from the header alone, before the body arrives', () => {
  const d = new FrameDecoder(1024);
  const c = collector();
  d.push(header(FrameType.DATA, 0, 1, 1025), c);
  assert.equal(c.errors[0]?.code, CloseCode.FRAME_TOO_LARGE);
});

test('control bodies: maps round-trip; garbage, arrays and scalars are refused', () => {
  const m = { service: 'demo', identity: 'abc', n: 5, list: ['a'], bin: Buffer.from([1, 2]) };
  const back = decodeControl(encodeControl(m));
  assert.equal(back?.service, 'demo');
  assert.deepEqual(back?.list, ['a']);
  for (const bad of [Buffer.from([0xc1]), encodeControl([1, 2] as unknown as object), Buffer.from([0x01]), Buffer.alloc(0), Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff])]) {
    assert.equal(decodeControl(bad), undefined, bad.toString('hex'));
  }
  assert.equal(decodeCredit(encodeCredit(123456)), 123456);
  assert.equal(decodeCredit(Buffer.alloc(3)), undefined);
});

test('fuzz: any byte stream in any chunking gives the naive decoder\'s frames or a close code, never a throw (bodies whole or in pieces)', () => {
  const validFrame = fc.record({
    type: fc.constantFrom(...(Object.values(FrameType) as number[])),
    flags: fc.constantFrom(0, FrameFlags.FIN),
    circuit: fc.nat(),
    body: fc.uint8Array({ maxLength: 300 }),
  }).map((f) => encodeFrame(f.type, f.flags, f.circuit, Buffer.from(f.body)));
  const piece = fc.oneof(validFrame, fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)));
  fc.assert(fc.property(fc.array(piece, { maxLength: 12 }), fc.array(fc.nat({ max: 64 }), { maxLength: 20 }), fc.boolean(), (pieces, cuts, inPieces) => {
    const stream = Buffer.concat(pieces);
    const max = 256;
    const ref = naiveDecode(stream, max);
    const d = new FrameDecoder(max);
    const c = inPieces ? piecesCollector() : collector();
    let off = 0;
    for (const cut of cuts) {
      d.push(stream.subarray(off, Math.min(stream.length, off + cut)), c);
      off = Math.min(stream.length, off + cut);
    }
    d.push(stream.subarray(off), c);
    assert.deepEqual(c.frames, ref.frames);
    assert.deepEqual(c.errors.map((e) => e.code), ref.error === undefined ? [] : [ref.error]);
    for (const f of c.frames) assert.ok(f.body.length <= max);
  }), { numRuns: 1000, seed: 42 });
});

test('fuzz: decodeControl on arbitrary bytes returns a map or undefined, never throws', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (a) => {
    const r = decodeControl(Buffer.from(a));
    assert.ok(r === undefined || (typeof r === 'object' && !Array.isArray(r)));
  }), { numRuns: 2000, seed: 7 });
});
