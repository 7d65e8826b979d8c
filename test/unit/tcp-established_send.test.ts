/**
 * TCP ESTABLISHED, send side: segmentation by MSS and by the peer's and the
 * congestion window, PSH on the last segment, the send-buffer cap with
 * onWritable, slow start (RFC 5681 §3.1), retransmission timeout with
 * backoff and abort (RFC 6298 §5), fast retransmit and NewReno recovery
 * (RFC 5681 §3.2, RFC 6582), and zero-window probing (RFC 9293 §3.8.6.1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpState } from '../../src/stack/tcp/index.js';
import { ACK, PSH, RST, bytes, check, established, expectState, feed, tick, type Est } from './tcp-harness.js';

const MSS = 1460;

/** The device acknowledges up to `ackOff` bytes of ours (offset from ourSeq) with `window` (unscaled: wscale null). */
function ackUpTo(e: Est, now: number, ackOff: number, window = 65535) {
  return feed(e, now, { seq: e.peerSeq, ack: e.ourSeq + ackOff, window });
}

test('established_write_segments: a write is cut into MSS segments, PSH on the last', () => {
  const e = established({ peerWscale: null });
  const data = bytes(3 * MSS + 100);
  assert.equal(e.conn.write(2000, data), data.length);
  const segs = e.wire.take();
  assert.equal(segs.length, 4);
  segs.forEach((s, i) => check(s, { seq: e.ourSeq + i * MSS, ack: e.peerSeq, flags: i === 3 ? ACK | PSH : ACK, len: i === 3 ? 100 : MSS }));
  assert.deepEqual(Buffer.concat(segs.map((s) => s.payload!)), data);
  assert.equal(e.conn.sndNxt, (e.ourSeq + data.length) >>> 0);
});

test('established_peer_mss: segments honour a smaller MSS from the peer', () => {
  const e = established({ peerMss: 500, peerWscale: null });
  e.conn.write(2000, bytes(1200));
  assert.deepEqual(e.wire.take().map((s) => s.payload!.length), [500, 500, 200]);
});

test('established_initial_cwnd: at most initialCwndSegments go before an ACK; each ACK opens more (slow start)', () => {
  const e = established({ tcp: { initialCwndSegments: 4, sendBufferBytes: 1 << 20 }, peerWscale: null });
  e.conn.write(2000, bytes(20 * MSS));
  assert.equal(e.wire.take().length, 4);
  ackUpTo(e, 2050, 2 * MSS);
  // 2 segments left the network, cwnd grew by one MSS (one ACK): 4 in flight → 2 + 3 more.
  assert.equal(e.wire.take().length, 3);
  assert.equal(e.conn.cc.cwndBytes, 5 * MSS);
});

test('established_peer_window: never more than the peer window in flight', () => {
  const e = established({ peerWindow: 3000, peerWscale: null });
  e.conn.write(2000, bytes(10_000));
  const segs = e.wire.take();
  // 80 bytes would fit, but they are less than half the largest window offered (sender SWS avoidance).
  assert.deepEqual(segs.map((s) => s.payload!.length), [MSS, MSS]);
  ackUpTo(e, 2050, MSS, 3000);
  assert.deepEqual(e.wire.take().map((s) => s.payload!.length), [MSS]);
  assert.equal(e.conn.sndNxt - e.conn.sndUna, 2 * MSS);
});

test('established_sws_sender: a tiny usable window is not filled with a tiny segment', () => {
  const e = established({ peerWindow: 10_000, peerWscale: null });
  e.conn.write(2000, bytes(20_000));
  const first = e.wire.take();
  assert.equal(first.reduce((n, s) => n + s.payload!.length, 0), 6 * MSS); // the last 1240 bytes of window wait
  // ACK 100 bytes with the same window: 100 bytes usable < 5000 (half the max window): wait.
  ackUpTo(e, 2050, 100, 10_000);
  e.wire.none();
});

test('established_send_buffer: write() accepts up to the send buffer; onWritable once half is free', () => {
  const e = established({ tcp: { sendBufferBytes: 8 * MSS }, peerWindow: 0, peerWscale: null });
  assert.equal(e.conn.write(2000, bytes(5 * MSS)), 5 * MSS);
  assert.equal(e.conn.write(2000, bytes(5 * MSS)), 3 * MSS);
  assert.equal(e.conn.writableBytes, 0);
  assert.equal(e.conn.write(2000, bytes(10)), 0);
  e.wire.take();
  ackUpTo(e, 2100, 0, 65535); // window opens
  const sent = e.wire.take();
  assert.ok(sent.length > 0);
  assert.equal(e.app.writables, 0);
  ackUpTo(e, 2200, 3 * MSS);
  assert.equal(e.app.writables, 0, 'not yet half free');
  ackUpTo(e, 2300, 4 * MSS);
  assert.equal(e.app.writables, 1);
  ackUpTo(e, 2400, 6 * MSS);
  assert.equal(e.app.writables, 1, 'once per blocked write');
});

test('established_rto: retransmission after RTO, doubling each time (RFC 6298 §5.5), abort after maxRetransmits', () => {
  const e = established({ tcp: { maxRetransmits: 3, minRtoMs: 200 }, peerWscale: null });
  // The handshake RTT (0 ms) gives RTO = max(min, 0 + max(G, 0)) = 200 ms.
  assert.equal(e.conn.rtt.rtoMs, 200);
  e.conn.write(2000, Buffer.from('data'));
  e.wire.take();
  const times: number[] = [];
  let now = 2000;
  while (e.conn.state !== TcpState.CLOSED) {
    now = e.table.nextDeadline();
    tick(e, now);
    for (const s of e.wire.take()) {
      if (s.flags & RST) continue;
      check(s, { seq: e.ourSeq, len: 4 });
      times.push(now - 2000);
    }
  }
  assert.deepEqual(times, [200, 600, 1400]);
  assert.equal(now - 2000, 3000);
  assert.deepEqual(e.app.closed, ['timeout']);
  assert.equal(e.table.counters.timeouts, 3);
});

test('established_rto_go_back: after an RTO, cwnd is one segment and the rest is resent as ACKs come', () => {
  const e = established({ peerWscale: null });
  e.conn.write(2000, bytes(4 * MSS));
  assert.equal(e.wire.take().length, 4);
  tick(e, e.table.nextDeadline());
  const re = e.wire.take();
  assert.equal(re.length, 1);
  check(re[0]!, { seq: e.ourSeq, len: MSS });
  assert.equal(e.conn.cc.cwndBytes, MSS);
  assert.equal(e.conn.cc.ssthreshBytes, 2 * MSS);
  ackUpTo(e, 2500, MSS);
  const more = e.wire.take();
  assert.deepEqual(more.map((s) => s.seq - e.ourSeq), [MSS, 2 * MSS]);
});

test('established_rtt_karn: samples come only from segments sent once', () => {
  const e = established({ peerWscale: null });
  e.conn.write(2000, Buffer.from('a'));
  ackUpTo(e, 2100, 1);
  assert.equal(e.conn.rtt.srttMs, 0 * 7 / 8 + 100 / 8); // second sample: SRTT = 7/8·0 + 1/8·100
  e.conn.write(3000, Buffer.from('b'));
  tick(e, e.table.nextDeadline()); // retransmitted
  const srtt = e.conn.rtt.srttMs;
  ackUpTo(e, 9000, 2);
  assert.equal(e.conn.rtt.srttMs, srtt, 'no sample from the retransmitted segment');
});

test('established_fast_retransmit: three duplicate ACKs retransmit the first segment and enter NewReno recovery', () => {
  const e = established({ tcp: { initialCwndSegments: 10 }, peerWscale: null });
  e.conn.write(2000, bytes(10 * MSS));
  assert.equal(e.wire.take().length, 10);
  // Segment 0 lost: the device ACKs segment-wise with ack = ourSeq.
  ackUpTo(e, 2050, 0);
  ackUpTo(e, 2051, 0);
  e.wire.none();
  ackUpTo(e, 2052, 0);
  check(e.wire.one(), { seq: e.ourSeq, len: MSS });
  assert.equal(e.conn.cc.inRecovery, true);
  assert.equal(e.conn.cc.ssthreshBytes, 5 * MSS);
  assert.equal(e.conn.cc.cwndBytes, 8 * MSS);
  assert.equal(e.table.counters.fastRetransmits, 1);
  // Partial ACK (segments 0..4 arrived, 5 also lost): retransmit segment 5 at once (RFC 6582 §3.2 step 5).
  ackUpTo(e, 2100, 5 * MSS);
  check(e.wire.take()[0]!, { seq: e.ourSeq + 5 * MSS, len: MSS });
  assert.equal(e.conn.cc.inRecovery, true);
  // Full ACK: leave recovery with cwnd ≤ ssthresh.
  ackUpTo(e, 2150, 10 * MSS);
  assert.equal(e.conn.cc.inRecovery, false);
  assert.ok(e.conn.cc.cwndBytes <= 5 * MSS);
});

test('established_persist: a zero window is probed with backoff; the answer reopening it resumes sending', () => {
  const e = established({ peerWindow: 0, peerWscale: null });
  e.conn.write(2000, Buffer.from('waiting'));
  e.wire.none();
  const first = e.table.nextDeadline();
  assert.equal(first, 2200);
  tick(e, first);
  check(e.wire.one(), { flags: ACK, seq: e.ourSeq - 1, len: 0 });
  const second = e.table.nextDeadline();
  assert.equal(second - first, 400, 'probe interval doubles');
  ackUpTo(e, 2300, 0, 0); // the probe's answer: still zero
  e.wire.none();
  ackUpTo(e, 2500, 0, 1000);
  check(e.wire.one(), { flags: ACK | PSH, seq: e.ourSeq, len: 7 });
});

test('established_persist_giveup: a peer that never answers the probes is dropped', () => {
  const e = established({ peerWindow: 0, peerWscale: null, tcp: { maxPersistProbes: 3 } });
  e.conn.write(2000, Buffer.from('x'));
  for (let i = 0; i < 10 && e.conn.state !== TcpState.CLOSED; i++) tick(e, e.table.nextDeadline());
  expectState(e.conn, TcpState.CLOSED);
  assert.deepEqual(e.app.closed, ['timeout']);
});

test('established_dup_ack_old: an ACK below SND.UNA − MAX.SND.WND draws a challenge ACK (RFC 5961 §5.2)', () => {
  const e = established({ peerWscale: null, peerWindow: 1000 });
  e.conn.write(2000, bytes(900));
  ackUpTo(e, 2010, 900, 1000);
  e.wire.take();
  // MAX.SND.WND is the SYN's 64240 here.
  assert.equal(feed(e, 2020, { seq: e.peerSeq, ack: e.ourSeq - 5000 }), null, 'an old ACK within MAX.SND.WND is only ignored');
  e.wire.none();
  assert.equal(feed(e, 2020, { seq: e.peerSeq, ack: e.ourSeq - 70_000 }), 'ackTooOld');
  check(e.wire.one(), { flags: ACK, seq: e.ourSeq + 900 });
  assert.equal(feed(e, 2020, { seq: e.peerSeq, ack: e.ourSeq + 5000 }), 'ackTooNew');
  check(e.wire.one(), { flags: ACK });
});

test('established_limited_transmit: the first two duplicate ACKs each release one new segment (RFC 3042)', () => {
  const e = established({ tcp: { initialCwndSegments: 2 }, peerWscale: null });
  e.conn.write(2000, bytes(6 * MSS));
  assert.equal(e.wire.take().length, 2);
  ackUpTo(e, 2050, 0);
  check(e.wire.one(), { seq: e.ourSeq + 2 * MSS, len: MSS });
  ackUpTo(e, 2051, 0);
  check(e.wire.one(), { seq: e.ourSeq + 3 * MSS, len: MSS });
  assert.equal(e.conn.cc.cwndBytes, 2 * MSS, 'cwnd unchanged');
  ackUpTo(e, 2052, 0);
  // Third: fast retransmit; cwnd = ssthresh (2 MSS) + 3 MSS = 5 MSS over 4 in flight lets one new segment go.
  const [re, more] = e.wire.take();
  check(re!, { seq: e.ourSeq, len: MSS });
  check(more!, { seq: e.ourSeq + 4 * MSS, len: MSS });
});
