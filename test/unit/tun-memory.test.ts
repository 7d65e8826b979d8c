/**
 * The in-memory TUN pair (src/tun/memory.ts): it must keep the TunDevice
 * contract the real device keeps (owned copies, no delivery from inside
 * write, full queue drops and counts) and inject loss and reordering
 * reproducibly from a seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createMemoryTunPair, type MemoryTun } from '../../src/tun/index.js';

/** A distinguishable fake packet: 4-byte sequence number then filler. */
function pkt(seq: number, bytes = 40): Buffer {
  const b = Buffer.alloc(bytes, 0xab);
  b.writeUInt32BE(seq, 0);
  return b;
}

function collect(dev: MemoryTun): number[] {
  const seen: number[] = [];
  dev.onPackets((p) => seen.push(p.readUInt32BE(0)));
  return seen;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('memory pair: what one end writes the other reads, in order, after the write returns', async () => {
  const [a, b] = createMemoryTunPair();
  const seenB = collect(b);
  const seenA = collect(a);
  for (let i = 0; i < 5; i++) assert.equal(a.write(pkt(i)), true);
  assert.equal(b.write(pkt(100)), true);
  assert.deepEqual(seenB, [], 'nothing is delivered from inside write');
  await turn();
  assert.deepEqual(seenB, [0, 1, 2, 3, 4]);
  assert.deepEqual(seenA, [100]);
  assert.deepEqual({ ...a.counters }, { rxPackets: 1, rxBytes: 40, rxNoHandler: 0, rxErrors: 0, txPackets: 5, txBytes: 200, txDropped: 0, txErrors: 0 });
  assert.equal(b.counters.rxPackets, 5);
  a.close();
  b.close();
});

test('memory pair: the reader owns a copy; the writer may reuse its buffer at once', async () => {
  const [a, b] = createMemoryTunPair();
  const got: Buffer[] = [];
  b.onPackets((p) => got.push(p));
  const scratch = pkt(7);
  a.write(scratch);
  scratch.fill(0); // reused by the writer before delivery
  await turn();
  assert.equal(got.length, 1);
  assert.equal(got[0]!.readUInt32BE(0), 7);
  a.close();
  b.close();
});

test('memory pair: writev gathers the parts into one packet', () => {
  const [a, b] = createMemoryTunPair({ autoFlush: false });
  const got: Buffer[] = [];
  b.onPackets((p) => got.push(p));
  const head = Buffer.from([1, 2, 3]);
  const body = Buffer.from('payload');
  assert.equal(a.writev([head, body]), true);
  assert.equal(b.flush(), 1);
  assert.deepEqual(got, [Buffer.concat([head, body])]);
  assert.equal(a.counters.txBytes, 10);
});

test('memory pair: a full queue drops (write returns false, counted), and frees up once read', () => {
  const [a, b] = createMemoryTunPair({ queuePackets: 3, autoFlush: false });
  const seen = collect(b);
  const results = [0, 1, 2, 3, 4].map((i) => a.write(pkt(i)));
  assert.deepEqual(results, [true, true, true, false, false]);
  assert.equal(a.counters.txDropped, 2);
  assert.equal(a.counters.txPackets, 3);
  assert.equal(b.pending, 3);
  assert.equal(b.flush(2), 2, 'flush honours its cap');
  assert.deepEqual(seen, [0, 1]);
  assert.equal(a.write(pkt(5)), true);
  b.flush();
  assert.deepEqual(seen, [0, 1, 2, 5]);
});

test('memory pair: oversize, closed or too many parts are refused as errors, never thrown', () => {
  const [a, b] = createMemoryTunPair({ mtu: 100, autoFlush: false });
  assert.equal(a.write(Buffer.alloc(101)), false);
  assert.equal(a.writev(new Array<Buffer>(17).fill(Buffer.alloc(1))), false);
  assert.equal(a.write(Buffer.alloc(100)), true);
  b.close();
  assert.equal(b.pending, 0, 'close drops what was queued');
  assert.equal(a.write(pkt(1)), false, 'the peer is closed');
  a.close();
  a.close(); // idempotent
  assert.equal(a.closed, true);
  assert.equal(a.write(pkt(1)), false);
  assert.equal(a.counters.txErrors, 4);
  assert.equal(a.counters.txPackets, 1);
});

test('memory pair: packets read while no handler is set are counted and dropped', () => {
  const [a, b] = createMemoryTunPair({ autoFlush: false });
  a.write(pkt(1));
  assert.equal(b.flush(), 1);
  assert.equal(b.counters.rxNoHandler, 1);
  assert.equal(b.counters.rxPackets, 0);
});

test('memory pair: a handler that writes back (ping-pong) runs without re-entrancy', async () => {
  const [a, b] = createMemoryTunPair();
  let depth = 0;
  let maxDepth = 0;
  const echo = (dev: MemoryTun) => (p: Buffer): void => {
    depth++;
    maxDepth = Math.max(maxDepth, depth);
    const n = p.readUInt32BE(0);
    if (n < 50) dev.write(pkt(n + 1));
    depth--;
  };
  a.onPackets(echo(a));
  b.onPackets(echo(b));
  a.write(pkt(0));
  while (a.counters.rxPackets + b.counters.rxPackets < 50) await turn();
  assert.equal(maxDepth, 1);
  assert.equal(a.counters.txPackets + b.counters.txPackets, 51);
  a.close();
  b.close();
});

test('memory pair: loss is seeded: the same seed loses the same packets', () => {
  const run = (seed: number): number[] => {
    const [a, b] = createMemoryTunPair({ lossRate: 0.3, seed, autoFlush: false, queuePackets: 10_000 });
    const seen = collect(b);
    for (let i = 0; i < 2000; i++) assert.equal(a.write(pkt(i)), true, 'a lost packet still "went out"');
    b.flush();
    assert.equal(seen.length + a.lost, 2000);
    return seen;
  };
  const first = run(42);
  assert.deepEqual(run(42), first);
  assert.notDeepEqual(run(43), first);
  const lossRatio = 1 - first.length / 2000;
  assert.ok(lossRatio > 0.25 && lossRatio < 0.35, `loss ratio ${lossRatio}`);
});

test('memory pair: a held-back packet is delivered even when nothing overtakes it', () => {
  const [a, b] = createMemoryTunPair({ reorderRate: 0.999, autoFlush: false });
  const seen = collect(b);
  a.write(pkt(1));
  assert.equal(b.pending, 1);
  b.flush();
  b.flush();
  assert.deepEqual(seen, [1]);
});

test('memory pair: auto-delivery of a held-back packet leaves no immediate behind', async () => {
  const [a, b] = createMemoryTunPair({ reorderRate: 0.999 });
  const seen = collect(b);
  a.write(pkt(9));
  for (let i = 0; i < 4 && seen.length === 0; i++) await turn();
  assert.deepEqual(seen, [9]);
  await turn();
  assert.deepEqual(process.getActiveResourcesInfo().filter((r) => r === 'Immediate'), []);
  a.close();
  b.close();
});

test('memory pair (property): reordering only swaps neighbours and never loses or duplicates', () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    fc.double({ min: 0, max: 0.9, noNaN: true }),
    fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 40 }),
    (seed, reorderRate, bursts) => {
      const [a, b] = createMemoryTunPair({ reorderRate, seed, autoFlush: false, queuePackets: 1000 });
      const seen = collect(b);
      let next = 0;
      for (const burst of bursts) {
        for (let i = 0; i < burst; i++) a.write(pkt(next++));
        b.flush();
      }
      b.flush();
      b.flush();
      assert.deepEqual([...seen].sort((x, y) => x - y), Array.from({ length: next }, (_, i) => i));
      // Every packet is at most one place from where it was sent.
      seen.forEach((seq, pos) => assert.ok(Math.abs(seq - pos) <= 1, `packet ${seq} at ${pos}`));
      const inversions = seen.filter((seq, pos) => pos > 0 && seq < seen[pos - 1]!).length;
      assert.equal(inversions, a.reordered);
    },
  ), { numRuns: 300 });
});

test('memory pair: no handles left behind', () => {
  assert.deepEqual(process.getActiveResourcesInfo().filter((r) => /Immediate|Timeout/.test(r)), []);
});
