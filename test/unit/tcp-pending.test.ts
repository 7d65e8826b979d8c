/**
 * TCP passive open with the overlay dial in between: SYN → PENDING (nothing
 * sent, retransmitted SYNs absorbed) → accept (SYN-ACK with our MSS and
 * window scale) or refuse (RST|ACK), the pending timeout, the peer giving
 * up, and what the table answers to segments that match no connection
 * (RFC 9293 §3.10.7.1) and to SYNs beyond its limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpState } from '../../src/stack/tcp/index.js';
import { ACK, DEV_IP, IRS, RST, SVC_IP, SYN, check, expectState, feed, rig, tick } from './tcp-harness.js';

const SYN_OPTS = { mss: 1400, windowScale: 7, sackPermitted: true, timestamps: [1, 0] as [number, number] };

test('listen_syn: a SYN is held PENDING with nothing sent until the shell decides', () => {
  const r = rig();
  assert.equal(feed(r, 0, { seq: IRS, flags: SYN, options: SYN_OPTS }), null);
  assert.equal(r.offered.length, 1);
  const conn = r.offered[0]!;
  expectState(conn, TcpState.PENDING);
  assert.equal(conn.localIp, SVC_IP);
  assert.equal(conn.remoteIp, DEV_IP);
  r.wire.none();
  assert.equal(r.table.size, 1);
});

test('pending_syn_retransmit: retransmitted SYNs are absorbed, not offered again', () => {
  const r = rig();
  feed(r, 0, { seq: IRS, flags: SYN, options: SYN_OPTS });
  assert.equal(feed(r, 1000, { seq: IRS, flags: SYN, options: SYN_OPTS }), null);
  assert.equal(feed(r, 3000, { seq: IRS, flags: SYN, options: SYN_OPTS }), null);
  assert.equal(r.offered.length, 1);
  r.wire.none();
});

test('pending_accept: SYN-ACK carries our MSS and a window scale big enough for the receive buffer, no SACK or timestamps', () => {
  const r = rig({ recvBufferBytes: 1 << 20, mssBytes: 1460 });
  feed(r, 0, { seq: IRS, flags: SYN, options: SYN_OPTS });
  const conn = r.offered[0]!;
  assert.ok(conn.accept(5, r.app));
  const s = check(r.wire.one(), { flags: SYN | ACK, ack: IRS + 1, len: 0 });
  assert.deepEqual(s.options, { mss: 1460, windowScale: 5 }); // 1 MiB >> 5 = 32768 ≤ 65535
  assert.equal(s.window, 65535); // a SYN's window is never scaled (RFC 7323 §2.2)
  expectState(conn, TcpState.SYN_RECEIVED);
  assert.equal(conn.sndMss, 1400); // the peer's MSS is the smaller
  assert.equal(conn.sndShift, 7);
  assert.equal(conn.accept(6, r.app), false, 'accept twice is refused');
});

test('pending_accept: no window scale option from the peer → none from us, window capped at 65535', () => {
  const r = rig({ recvBufferBytes: 1 << 20 });
  feed(r, 0, { seq: IRS, flags: SYN, options: { mss: 1460 } });
  const conn = r.offered[0]!;
  conn.accept(0, r.app);
  const s = r.wire.one();
  assert.deepEqual(s.options, { mss: 1460 });
  assert.equal(conn.rcvShift, 0);
  assert.equal(conn.sndShift, 0);
});

test('pending_accept: no MSS option → the RFC 9293 default of 536', () => {
  const r = rig();
  feed(r, 0, { seq: IRS, flags: SYN });
  r.offered[0]!.accept(0, r.app);
  assert.equal(r.offered[0]!.sndMss, 536);
});

test('pending_refuse: RST|ACK acknowledging the SYN, connection gone, reason "refused"', () => {
  const r = rig();
  feed(r, 0, { seq: IRS, flags: SYN, options: SYN_OPTS });
  const conn = r.offered[0]!;
  assert.ok(conn.refuse(10));
  check(r.wire.one(), { flags: RST | ACK, seq: 0, ack: IRS + 1 });
  expectState(conn, TcpState.CLOSED);
  assert.deepEqual(r.app.closed, ['refused']);
  assert.equal(r.table.size, 0);
  assert.equal(r.table.counters.closes.refused, 1);
  assert.equal(conn.refuse(11), false);
  assert.equal(conn.accept(11, r.app), false);
});

test('pending_timeout: a SYN not decided within pendingTimeoutMs is refused', () => {
  const r = rig({ pendingTimeoutMs: 5000 });
  feed(r, 100, { seq: IRS, flags: SYN });
  assert.equal(r.table.nextDeadline(), 5100);
  tick(r, 5099);
  r.wire.none();
  tick(r, 5100);
  check(r.wire.one(), { flags: RST | ACK, ack: IRS + 1 });
  assert.deepEqual(r.app.closed, ['pendingTimeout']);
  assert.equal(r.table.size, 0);
  assert.equal(r.offered[0]!.accept(5200, r.app), false, 'a late accept finds nothing');
});

test('pending_rst: the device gives up (RST) → closed with "reset", nothing sent', () => {
  const r = rig();
  feed(r, 0, { seq: IRS, flags: SYN });
  assert.equal(feed(r, 10, { seq: IRS + 5, flags: RST }), 'rstOutOfWindow');
  assert.equal(feed(r, 10, { seq: IRS + 1, flags: RST }), null);
  r.wire.none();
  assert.deepEqual(r.app.closed, ['reset']);
  assert.equal(r.table.size, 0);
});

test('pending_ack: a non-SYN segment to a pending connection is dropped silently', () => {
  const r = rig();
  feed(r, 0, { seq: IRS, flags: SYN });
  assert.equal(feed(r, 1, { seq: IRS + 1, ack: 5 }), 'pending');
  r.wire.none();
  expectState(r.offered[0]!, TcpState.PENDING);
});

test('listen_syn_verdicts: refuse answers RST|ACK, ignore drops silently, accept answers SYN-ACK at once', () => {
  const r = rig();
  r.verdict = 'refuse';
  assert.equal(feed(r, 0, { seq: IRS, flags: SYN }), null);
  check(r.wire.one(), { flags: RST | ACK, ack: IRS + 1 });
  r.verdict = 'ignore';
  assert.equal(feed(r, 0, { seq: IRS, flags: SYN, srcPort: 40001 }), 'ignored');
  r.wire.none();
  r.verdict = 'accept';
  assert.equal(feed(r, 0, { seq: IRS, flags: SYN, srcPort: 40002 }), null);
  check(r.wire.one(), { flags: SYN | ACK, ack: IRS + 1 });
  assert.equal(r.table.size, 1);
});

test('closed_stray: segments for no connection get the RST of RFC 9293 §3.10.7.1', () => {
  const r = rig();
  // With ACK: <SEQ=SEG.ACK><CTL=RST>
  assert.equal(feed(r, 0, { seq: 77, ack: 12345, flags: ACK, payload: Buffer.from('hi') }), 'noConnection');
  const a = check(r.wire.one(), { flags: RST, seq: 12345 });
  assert.equal(a.dstPort, 40000);
  assert.equal(r.wire.sent.length, 0);
  // Without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> (FIN counts one)
  assert.equal(feed(r, 0, { seq: 77, flags: 0x01, payload: Buffer.from('abc') }), 'noConnection');
  check(r.wire.one(), { flags: RST | ACK, seq: 0, ack: 77 + 3 + 1 });
  // A RST is never answered.
  assert.equal(feed(r, 0, { seq: 77, flags: RST }), 'noConnection');
  r.wire.none();
  // SYN|FIN is not a connection request.
  assert.equal(feed(r, 0, { seq: 77, flags: SYN | 0x01 }), 'badFlags');
  assert.equal(r.table.counters.drops.noConnection, 3);
});

test('listen_limit: SYNs beyond maxConnections get RST|ACK and are counted', () => {
  const r = rig({}, 2);
  feed(r, 0, { seq: IRS, flags: SYN, srcPort: 1 });
  feed(r, 0, { seq: IRS, flags: SYN, srcPort: 2 });
  r.wire.none();
  assert.equal(feed(r, 0, { seq: IRS, flags: SYN, srcPort: 3 }), 'connectionLimit');
  check(r.wire.one(), { flags: RST | ACK, ack: IRS + 1 });
  assert.equal(r.table.counters.drops.connectionLimit, 1);
  assert.equal(r.offered.length, 2);
  r.offered[0]!.refuse(1);
  r.wire.take();
  assert.equal(feed(r, 1, { seq: IRS, flags: SYN, srcPort: 3 }), null, 'room again after one closed');
});

test('listen_same_port: one device port towards two intercepted addresses is two connections', () => {
  const r = rig();
  feed(r, 0, { seq: IRS, flags: SYN });
  assert.equal(r.table.input(0, DEV_IP, SVC_IP + 1, { srcPort: 40000, dstPort: 80, seq: IRS + 9, ack: 0, flags: SYN, window: 1000, options: {}, payload: Buffer.alloc(0) }), null);
  assert.equal(r.offered.length, 2);
  assert.equal(r.table.lookup(SVC_IP, 80, DEV_IP, 40000), r.offered[0]);
  assert.equal(r.table.lookup(SVC_IP + 1, 80, DEV_IP, 40000), r.offered[1]);
  r.offered[0]!.refuse(1);
  assert.equal(r.table.lookup(SVC_IP, 80, DEV_IP, 40000), undefined);
  assert.equal(r.table.lookup(SVC_IP + 1, 80, DEV_IP, 40000), r.offered[1]);
});
