/**
 * TCP with segmentation offload (tcp.tsoMaxBytes): new data leaves in
 * super-segments of whole MSS carrying gsoSize for the kernel to cut;
 * windows still bound them; retransmissions stay one MSS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACK, bytes, established, feed, tick } from './tcp-harness.js';

const MSS = 1460;
const TSO = 65_455;
const CAP = TSO - (TSO % MSS); // 44 × 1460 = 64,240

test('established_tso_super_segments: whole-MSS super-segments with gsoSize, the rest in one tail', () => {
  const e = established({ tcp: { tsoMaxBytes: TSO, sendBufferBytes: 1 << 20, initialCwndSegments: 100 }, peerWscale: 7, peerWindow: 8192 });
  const data = bytes(CAP + 3 * MSS + 10);
  assert.equal(e.conn.write(2000, data), data.length);
  const segs = e.wire.take();
  assert.deepEqual(segs.map((s) => s.payload?.length), [CAP, 3 * MSS + 10]);
  assert.equal(segs[0]!.gsoSize, MSS);
  assert.equal(segs[1]!.gsoSize, MSS, 'longer than one MSS: the kernel cuts it too');
  assert.deepEqual(Buffer.concat(segs.map((s) => s.payload!)), data);
});

test('established_tso_window_bound: a super-segment never passes the peer window, and is cut to whole MSS', () => {
  // Peer window 10,000 bytes (no scaling): 6 whole MSS fit (8,760).
  const e = established({ tcp: { tsoMaxBytes: TSO, sendBufferBytes: 1 << 20, initialCwndSegments: 100 }, peerWscale: null, peerWindow: 10_000 });
  e.conn.write(2000, bytes(100_000));
  const segs = e.wire.take();
  assert.equal(segs[0]!.payload!.length, 6 * MSS);
  assert.ok(segs.reduce((n, s) => n + (s.payload?.length ?? 0), 0) <= 10_000);
});

test('established_tso_retransmit_one_mss: an RTO resends one MSS without gsoSize', () => {
  const e = established({ tcp: { tsoMaxBytes: TSO, sendBufferBytes: 1 << 20, initialCwndSegments: 100 }, peerWscale: 7, peerWindow: 8192 });
  e.conn.write(2000, bytes(4 * MSS));
  assert.equal(e.wire.take().length, 1);
  tick(e, 2000 + 1100);
  const re = e.wire.take();
  assert.equal(re.length, 1);
  assert.equal(re[0]!.payload!.length, MSS);
  assert.equal(re[0]!.gsoSize, undefined);
  assert.equal(re[0]!.flags & ACK, ACK);
  assert.equal(feed(e, 3200, { seq: e.peerSeq, ack: e.ourSeq + 4 * MSS, window: 8192 }), null);
});

test('established_tso_off: without tsoMaxBytes no segment is longer than the MSS', () => {
  const e = established({ tcp: { sendBufferBytes: 1 << 20, initialCwndSegments: 100 }, peerWscale: 7, peerWindow: 8192 });
  e.conn.write(2000, bytes(20 * MSS));
  const segs = e.wire.take();
  assert.ok(segs.every((s) => s.payload!.length <= MSS && s.gsoSize === undefined));
});
