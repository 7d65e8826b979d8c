/**
 * UDP record codec (src/router/datagram.ts): header bytes, every split point
 * of a stream of records, zero-copy delivery of records within one chunk,
 * records split one byte at a time, and fast-check round trips against a
 * naive reference decoder under arbitrary cuts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_DATAGRAM_BYTES, RECORD_HEADER_BYTES, RecordDecoder, emitRecordHeader, recordHeader, type RecordHandler } from '../../src/router/datagram.js';

/** Encodes datagrams as one stream (test-side only; the router writes header and payload separately). */
function encode(datagrams: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const d of datagrams) parts.push(recordHeader(d.length), d);
  return Buffer.concat(parts);
}

/** The simplest correct decoder: walk the whole stream. */
function naiveDecode(stream: Buffer): { records: Buffer[]; rest: number } {
  const records: Buffer[] = [];
  let off = 0;
  while (stream.length - off >= 2) {
    const len = stream.readUInt16BE(off);
    if (stream.length - off - 2 < len) break;
    records.push(Buffer.from(stream.subarray(off + 2, off + 2 + len)));
    off += 2 + len;
  }
  return { records, rest: stream.length - off };
}

function collector(): RecordHandler & { records: Buffer[] } {
  const records: Buffer[] = [];
  return { records, onRecord(p) { records.push(Buffer.from(p)); } };
}

function decodeChunks(chunks: Buffer[]): { records: Buffer[]; atBoundary: boolean } {
  const d = new RecordDecoder();
  const h = collector();
  for (const c of chunks) d.push(c, h);
  return { records: h.records, atBoundary: d.atBoundary };
}

const sample = [Buffer.from('a'), Buffer.alloc(0), Buffer.from('hello, datagram'), Buffer.alloc(300, 7), Buffer.from([0, 1, 2]), Buffer.alloc(0)];

test('the header is the payload length as u16 big-endian', () => {
  assert.deepEqual([...recordHeader(0)], [0, 0]);
  assert.deepEqual([...recordHeader(1)], [0, 1]);
  assert.deepEqual([...recordHeader(0x1234)], [0x12, 0x34]);
  assert.deepEqual([...recordHeader(MAX_DATAGRAM_BYTES)], [0xff, 0xff]);
  const out = Buffer.alloc(5, 0xaa);
  assert.equal(emitRecordHeader(0x0102, out, 2), RECORD_HEADER_BYTES);
  assert.deepEqual([...out], [0xaa, 0xaa, 1, 2, 0xaa]);
});

test('a datagram longer than 65535 bytes cannot be framed', () => {
  assert.throws(() => recordHeader(MAX_DATAGRAM_BYTES + 1), RangeError);
  assert.throws(() => recordHeader(-1), RangeError);
  assert.throws(() => recordHeader(Number.NaN), RangeError);
});

test('every single split point of a stream yields the same records', () => {
  const stream = encode(sample);
  for (let i = 0; i <= stream.length; i++) {
    const { records, atBoundary } = decodeChunks([stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(records, sample, `split at ${i}`);
    assert.equal(atBoundary, true);
  }
});

test('every pair of split points (three chunks) yields the same records', () => {
  const small = [Buffer.from('xy'), Buffer.alloc(0), Buffer.from('datagram'), Buffer.from([9])];
  const stream = encode(small);
  for (let i = 0; i <= stream.length; i++) {
    for (let j = i; j <= stream.length; j++) {
      const { records } = decodeChunks([stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]);
      assert.deepEqual(records, small, `split at ${i} and ${j}`);
    }
  }
});

test('one byte at a time, including a 65535-byte record', () => {
  const big = Buffer.alloc(MAX_DATAGRAM_BYTES);
  for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
  const datagrams = [...sample, big, Buffer.from('after')];
  const stream = encode(datagrams);
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) chunks.push(stream.subarray(i, i + 1));
  assert.deepEqual(decodeChunks(chunks).records, datagrams);
});

test('records within one chunk are views of it; a straddling one gets its own buffer', () => {
  const stream = encode([Buffer.from('one'), Buffer.from('two')]);
  const d = new RecordDecoder();
  const seen: Buffer[] = [];
  d.push(stream, { onRecord: (p) => seen.push(p) });
  assert.equal(seen.length, 2);
  assert.equal(seen[0]!.buffer, stream.buffer);
  assert.equal(seen[0]!.byteOffset, stream.byteOffset + 2);
  assert.equal(seen[1]!.byteOffset, stream.byteOffset + 7);
  stream[2] = 0x4f; // 'O': a view sees it
  assert.equal(seen[0]!.toString(), 'One');

  // "two": header at bytes 5-6, payload 7-9; cut after its first payload byte.
  const d2 = new RecordDecoder();
  const seen2: Buffer[] = [];
  d2.push(stream.subarray(0, 8), { onRecord: (p) => seen2.push(p) });
  d2.push(stream.subarray(8), { onRecord: (p) => seen2.push(p) });
  assert.equal(seen2[1]!.toString(), 'two');
  stream[7] = 0x54; // 'T': the straddling record was copied and does not see it
  assert.equal(seen2[1]!.toString(), 'two');
  assert.equal(seen2[0]!.toString(), 'One');
});

test('a stream cut in a header or a payload is not at a record boundary', () => {
  const stream = encode([Buffer.from('abc')]);
  const partial = (n: number): boolean => decodeChunks([stream.subarray(0, n)]).atBoundary;
  assert.equal(partial(0), true);
  assert.equal(partial(1), false);
  assert.equal(partial(2), false);
  assert.equal(partial(4), false);
  assert.equal(partial(5), true);
});

test('fast-check: any datagrams, cut anywhere, decode to themselves and match the naive decoder', () => {
  const datagram = fc.oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 2, arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 1500 }) },
    { weight: 1, arbitrary: fc.integer({ min: 60_000, max: MAX_DATAGRAM_BYTES }).map((n) => new Uint8Array(n).fill(n & 0xff)) },
  ).map((u) => Buffer.from(u));
  fc.assert(fc.property(fc.array(datagram, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 16 }), (datagrams, cutSeeds) => {
    const stream = encode(datagrams);
    const cuts = [...new Set(cutSeeds.map((c) => (stream.length === 0 ? 0 : c % (stream.length + 1))))].sort((a, b) => a - b);
    const chunks: Buffer[] = [];
    let prev = 0;
    for (const c of cuts) { chunks.push(stream.subarray(prev, c)); prev = c; }
    chunks.push(stream.subarray(prev));
    const { records, atBoundary } = decodeChunks(chunks);
    assert.deepEqual(records, datagrams);
    assert.deepEqual(records, naiveDecode(stream).records);
    assert.equal(atBoundary, true);
  }), { numRuns: 300 });
});

test('fast-check: arbitrary bytes decode exactly as the naive decoder does, and never throw', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 1, max: 50 }), (bytes, step) => {
    const stream = Buffer.from(bytes);
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += step) chunks.push(stream.subarray(i, i + step));
    const { records, atBoundary } = decodeChunks(chunks);
    const naive = naiveDecode(stream);
    assert.deepEqual(records, naive.records);
    assert.equal(atBoundary, naive.rest === 0);
  }), { numRuns: 500 });
});
