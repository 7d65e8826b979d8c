/**
 * The TCP machine's parts on their own: sequence arithmetic across the 2^32
 * wrap (RFC 1982), the RFC 6298 estimator, the send chunk list, the
 * out-of-order queue, the deadline heap, NewReno, config checks and ISNs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax, seqMin } from '../../src/stack/tcp/seq.js';
import { RttEstimator } from '../../src/stack/tcp/rtt.js';
import { SendQueue } from '../../src/stack/tcp/sendqueue.js';
import { Reassembly } from '../../src/stack/tcp/reassembly.js';
import { DeadlineHeap, type HeapItem } from '../../src/stack/tcp/timers.js';
import { NewReno } from '../../src/stack/tcp/congestion.js';
import { resolveTcpConfig, windowShiftFor } from '../../src/stack/tcp/config.js';
import { IsnGenerator } from '../../src/stack/tcp/isn.js';
import { bytes } from './tcp-harness.js';

test('seq: comparisons hold across the 2^32 wrap', () => {
  const top = 0xffff_fff0;
  const wrapped = seqAdd(top, 0x20);
  assert.equal(wrapped, 0x10);
  assert.ok(seqLt(top, wrapped));
  assert.ok(seqGt(wrapped, top));
  assert.ok(seqLe(top, top) && seqGe(top, top));
  assert.equal(seqDiff(wrapped, top), 0x20);
  assert.equal(seqDiff(top, wrapped), -0x20);
  assert.equal(seqMax(top, wrapped), wrapped);
  assert.equal(seqMin(top, wrapped), top);
  assert.ok(seqInWindow(0x5, top, 0x100));
  assert.ok(!seqInWindow(top - 1, top, 0x100));
  assert.ok(!seqInWindow(seqAdd(top, 0x100), top, 0x100));
  fc.assert(fc.property(fc.nat(0xffff_ffff), fc.integer({ min: 1, max: 0x7fff_ffff }), (a, n) => {
    const b = seqAdd(a, n);
    return seqLt(a, b) && seqGt(b, a) && seqDiff(b, a) === n && b >= 0 && b <= 0xffff_ffff;
  }), { numRuns: 2000 });
});

test('rtt: RFC 6298 first sample, smoothing, clamping and backoff', () => {
  const r = new RttEstimator(200, 60_000, 1000, 10);
  assert.equal(r.rtoMs, 1000);
  r.sample(100);
  assert.equal(r.srttMs, 100);
  assert.equal(r.rttvarMs, 50);
  assert.equal(r.rtoMs, 300); // 100 + 4·50
  r.sample(200);
  assert.equal(r.rttvarMs, 0.75 * 50 + 0.25 * 100);
  assert.equal(r.srttMs, 0.875 * 100 + 0.125 * 200);
  assert.equal(r.rtoMs, r.srttMs + 4 * r.rttvarMs);
  for (let i = 0; i < 50; i++) r.sample(1);
  assert.equal(r.rtoMs, 200, 'clamped to the minimum');
  for (let i = 0; i < 20; i++) r.backoff();
  assert.equal(r.rtoMs, 60_000, 'clamped to the maximum');
  const fresh = new RttEstimator(200, 60_000, 1000, 10);
  fresh.resetAfterSynLoss();
  assert.equal(fresh.rtoMs, 3000);
});

test('sendqueue: reads within a chunk are views; across chunks a copy; drop releases the front', () => {
  const q = new SendQueue();
  const a = bytes(1000, 1), b = bytes(10, 2), c = bytes(3000, 3);
  q.push(a); q.push(b); q.push(c); q.push(Buffer.alloc(0));
  assert.equal(q.bytes, 4010);
  const v = q.read(100, 500);
  assert.equal(v.buffer, a.buffer, 'a view of the written chunk');
  assert.equal(v.byteOffset, a.byteOffset + 100);
  const all = Buffer.concat([a, b, c]);
  const x = q.read(900, 200);
  assert.notEqual(x.buffer, a.buffer);
  assert.deepEqual(x, all.subarray(900, 1100));
  q.drop(1005);
  assert.equal(q.bytes, 3005);
  assert.deepEqual(q.read(0, 5), all.subarray(1005, 1010));
  assert.deepEqual(q.read(3000, 5), all.subarray(4005, 4010));
  assert.deepEqual(q.read(0, 3005), all.subarray(1005));
  q.drop(3005);
  assert.equal(q.bytes, 0);
});

test('sendqueue: random writes, reads and drops match a flat reference', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.nat(1000), fc.nat(1000), fc.nat(400)), { maxLength: 60 }), (ops) => {
    const q = new SendQueue();
    let ref = Buffer.alloc(0);
    let seed = 1;
    for (const [w, off, len, d] of ops) {
      const chunk = bytes(w, seed++);
      q.push(chunk);
      ref = Buffer.concat([ref, chunk]);
      if (ref.length > 0) {
        const o = off % ref.length;
        const l = Math.min(len, ref.length - o);
        if (!q.read(o, l).equals(ref.subarray(o, o + l))) return false;
      }
      const dn = Math.min(d, ref.length);
      q.drop(dn);
      ref = ref.subarray(dn);
      if (q.bytes !== ref.length) return false;
    }
    return true;
  }), { numRuns: 300 });
});

test('reassembly: pieces never overlap, first arrival wins, take() trims to RCV.NXT', () => {
  const r = new Reassembly();
  const all = bytes(100, 5);
  assert.ok(r.insert(10, all.subarray(10, 20), false, 1000, 10));
  assert.ok(r.insert(30, all.subarray(30, 40), false, 1000, 10));
  assert.ok(r.insert(5, all.subarray(5, 45), true, 1000, 10)); // covers both and the gaps
  assert.deepEqual(r.ranges(), [[5, 5], [10, 10], [20, 10], [30, 10], [40, 5]]);
  assert.equal(r.bytes, 40);
  assert.equal(r.finSeq, 45);
  assert.equal(r.take(0), null, 'gap before 5');
  const got: Buffer[] = [];
  let at = 7;
  for (let b = r.take(at); b !== null; b = r.take(at)) {
    got.push(b);
    at += b.length;
  }
  assert.deepEqual(Buffer.concat(got), all.subarray(7, 45));
  assert.equal(r.bytes, 0);
});

test('reassembly: limits refuse a segment whole; the held state is unchanged', () => {
  const r = new Reassembly();
  assert.ok(r.insert(100, bytes(50), false, 60, 2));
  assert.equal(r.insert(200, bytes(20), false, 60, 2), false);
  assert.ok(r.insert(200, bytes(10), false, 60, 2));
  assert.equal(r.insert(300, bytes(1), false, 60, 2), false, 'piece limit');
  assert.deepEqual(r.ranges(), [[100, 50], [200, 10]]);
});

test('reassembly: random inserts deliver exactly the reference bytes (wrap-around sequence numbers)', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(2000), fc.integer({ min: 0, max: 400 })), { minLength: 1, maxLength: 40 }), (ops) => {
    const base = 0xffff_f000; // crosses 2^32
    const all = bytes(2500, 11);
    const r = new Reassembly();
    const covered = new Uint8Array(2500);
    for (const [off, len] of ops) {
      const l = Math.min(len, 2500 - off);
      if (!r.insert(seqAdd(base, off), all.subarray(off, off + l), false, 1 << 20, 1000)) return false;
      covered.fill(1, off, off + l);
    }
    let expectLen = 0;
    while (expectLen < 2500 && covered[expectLen] === 1) expectLen++;
    let at = base;
    const out: Buffer[] = [];
    for (let b = r.take(at); b !== null; b = r.take(at)) {
      out.push(b);
      at = seqAdd(at, b.length);
    }
    return Buffer.concat(out).equals(all.subarray(0, expectLen));
  }), { numRuns: 300 });
});

interface Item extends HeapItem { id: number }

test('heap: pops in deadline order under random sets and removals', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(49), fc.oneof(fc.nat(10_000), fc.constant(Infinity))), { maxLength: 300 }), (ops) => {
    const h = new DeadlineHeap<Item>();
    const items: Item[] = Array.from({ length: 50 }, (_, id) => ({ id, heapDeadlineMs: Infinity, heapIndex: -1 }));
    const ref = new Map<number, number>();
    for (const [i, d] of ops) {
      h.set(items[i]!, d);
      if (d === Infinity) ref.delete(i); else ref.set(i, d);
    }
    if (h.size !== ref.size) return false;
    let last = -1;
    while (h.size > 0) {
      const it = h.peek()!;
      if (it.heapDeadlineMs < last || ref.get(it.id) !== it.heapDeadlineMs) return false;
      last = it.heapDeadlineMs;
      h.remove(it);
    }
    return true;
  }), { numRuns: 300 });
});

test('newreno: slow start to ssthresh, then about one MSS per window', () => {
  const cc = new NewReno(1000, 2, 0);
  cc.ssthreshBytes = 4000;
  cc.onNewAck(1000, 1000, 1000);
  cc.onNewAck(2000, 1000, 1000);
  assert.equal(cc.cwndBytes, 4000);
  for (let i = 0; i < 4; i++) cc.onNewAck(3000 + i * 1000, 1000, 3000);
  assert.ok(cc.cwndBytes >= 4900 && cc.cwndBytes <= 5000, `cwnd ${cc.cwndBytes}`);
  cc.onTimeout(8000, 20_000, true);
  assert.equal(cc.cwndBytes, 1000);
  assert.equal(cc.ssthreshBytes, 4000);
  cc.onTimeout(8000, 20_000, false);
  assert.equal(cc.ssthreshBytes, 4000, 'held on repeated timeouts');
  // Dup ACKs for data sent before the timeout do not start a recovery (RFC 6582 §3.2 step 2).
  for (let i = 0; i < 3; i++) assert.equal(cc.onDupAck(15_000, 5000, 20_000), false);
});

test('config: defaults, overrides, range errors with ERR_CONFIG; window shift sizing', () => {
  const c = resolveTcpConfig({ mssBytes: 1380 });
  assert.equal(c.mssBytes, 1380);
  assert.equal(c.minRtoMs, 200);
  assert.ok(Object.isFrozen(c));
  assert.throws(() => resolveTcpConfig({ mssBytes: 10 }), (e: { code?: string }) => e.code === 'ERR_CONFIG');
  assert.throws(() => resolveTcpConfig({ delayedAckMs: 500 }), (e: { code?: string }) => e.code === 'ERR_CONFIG');
  assert.throws(() => resolveTcpConfig({ maxRtoMs: 100 }), (e: { code?: string }) => e.code === 'ERR_CONFIG');
  assert.equal(windowShiftFor(65535), 0);
  assert.equal(windowShiftFor(65536), 1);
  assert.equal(windowShiftFor(256 * 1024), 3);
  assert.equal(windowShiftFor(2 ** 40), 14);
});

test('isn: keyed per 4-tuple, advancing with the clock (RFC 6528)', () => {
  const g = new IsnGenerator(Buffer.alloc(16, 1));
  const a = g.next(0, 1, 80, 2, 4000);
  assert.equal(g.next(0, 1, 80, 2, 4000), a);
  assert.notEqual(g.next(0, 1, 80, 2, 4001), a);
  assert.equal(g.next(1, 1, 80, 2, 4000), (a + 250) >>> 0);
  assert.notEqual(new IsnGenerator(Buffer.alloc(16, 2)).next(0, 1, 80, 2, 4000), a);
});
