/**
 * TCP closing and resets: our close() (FIN after queued data, FIN-WAIT-1/2,
 * TIME-WAIT), the peer's FIN (end-of-stream while we may still send,
 * CLOSE-WAIT, LAST-ACK), simultaneous close (CLOSING), FIN retransmission,
 * abort() (RST), received RSTs checked per RFC 5961 §3, SYN on an open
 * connection (RFC 5961 §4), keepalive (RFC 9293 §3.8.4) and the FIN-WAIT-2
 * silence timeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpState } from '../../src/stack/tcp/index.js';
import { ACK, FIN, PSH, RST, SYN, bytes, check, established, expectState, feed, tick } from './tcp-harness.js';

test('established_close: FIN goes after the queued data; FIN-WAIT-1 → FIN-WAIT-2 → TIME-WAIT → CLOSED', () => {
  const e = established({ peerWscale: null, tcp: { timeWaitMs: 2000 } });
  e.conn.write(2000, Buffer.from('last words'));
  e.conn.close(2000);
  expectState(e.conn, TcpState.FIN_WAIT_1);
  const [d, f] = e.wire.take();
  assert.equal(check(d!, { flags: ACK | PSH, seq: e.ourSeq, len: 10 }).payload!.toString(), 'last words');
  check(f!, { flags: ACK | FIN, seq: e.ourSeq + 10, len: 0 });
  // Data queued when close() is called leaves in the FIN's segment.
  const e2 = established({ peerWscale: null, peerWindow: 0 });
  e2.conn.write(2000, Buffer.from('abc'));
  e2.conn.close(2000);
  e2.wire.none();
  feed(e2, 2001, { seq: e2.peerSeq, ack: e2.ourSeq, window: 1000 });
  check(e2.wire.one(), { flags: ACK | PSH | FIN, seq: e2.ourSeq, len: 3 });
  assert.equal(e.conn.write(2000, Buffer.from('more')), 0, 'no writes after close');
  feed(e, 2010, { seq: e.peerSeq, ack: e.ourSeq + 11 });
  expectState(e.conn, TcpState.FIN_WAIT_2);
  assert.equal(e.app.closed.length, 0);
  // Half-close: the device may still send.
  feed(e, 2020, { seq: e.peerSeq, ack: e.ourSeq + 11, payload: Buffer.from('still here') });
  assert.equal(e.app.received.toString(), 'still here');
  feed(e, 2030, { seq: e.peerSeq + 10, ack: e.ourSeq + 11, flags: ACK | FIN });
  expectState(e.conn, TcpState.TIME_WAIT);
  const acks = e.wire.take();
  check(acks[acks.length - 1]!, { flags: ACK, ack: e.peerSeq + 11 });
  assert.equal(e.app.ended, 1);
  assert.deepEqual(e.app.closed, ['normal'], 'the app hears of the end on entering TIME-WAIT');
  assert.equal(e.table.size, 1, 'TIME-WAIT lingers in the table');
  // A retransmitted FIN is acknowledged again.
  feed(e, 2500, { seq: e.peerSeq + 10, ack: e.ourSeq + 11, flags: ACK | FIN });
  check(e.wire.one(), { flags: ACK, ack: e.peerSeq + 11 });
  tick(e, 4499);
  expectState(e.conn, TcpState.TIME_WAIT);
  tick(e, 4500); // 2000 ms after the last FIN
  expectState(e.conn, TcpState.CLOSED);
  assert.equal(e.table.size, 0);
  assert.deepEqual(e.app.closed, ['normal']);
});

test('established_fin: the peer FIN ends the stream; we may still send; close() → LAST-ACK → CLOSED', () => {
  const e = established({ peerWscale: null });
  feed(e, 2000, { seq: e.peerSeq, ack: e.ourSeq, flags: ACK | FIN | PSH, payload: Buffer.from('req') });
  expectState(e.conn, TcpState.CLOSE_WAIT);
  check(e.wire.one(), { flags: ACK, ack: e.peerSeq + 4 });
  assert.equal(e.app.received.toString(), 'req');
  assert.equal(e.app.ended, 1);
  assert.equal(e.conn.write(2001, Buffer.from('response')), 8);
  check(e.wire.one(), { flags: ACK | PSH, len: 8 });
  e.conn.close(2002);
  expectState(e.conn, TcpState.LAST_ACK);
  check(e.wire.one(), { flags: ACK | FIN, seq: e.ourSeq + 8 });
  feed(e, 2010, { seq: e.peerSeq + 4, ack: e.ourSeq + 8 });
  expectState(e.conn, TcpState.LAST_ACK);
  feed(e, 2011, { seq: e.peerSeq + 4, ack: e.ourSeq + 9 });
  expectState(e.conn, TcpState.CLOSED);
  assert.deepEqual(e.app.closed, ['normal']);
  assert.equal(e.table.size, 0);
});

test('established_fin_out_of_order: a FIN beyond a gap waits for the gap to fill', () => {
  const e = established();
  feed(e, 2000, { seq: e.peerSeq + 5, ack: e.ourSeq, flags: ACK | FIN, payload: Buffer.from('world') });
  assert.equal(e.app.ended, 0);
  check(e.wire.one(), { ack: e.peerSeq });
  feed(e, 2001, { seq: e.peerSeq, ack: e.ourSeq, payload: Buffer.from('hello') });
  assert.equal(e.app.received.toString(), 'helloworld');
  assert.equal(e.app.ended, 1);
  expectState(e.conn, TcpState.CLOSE_WAIT);
  check(e.wire.one(), { ack: e.peerSeq + 11 });
});

test('fin_wait_1_fin: simultaneous close → CLOSING → (ACK of our FIN) TIME-WAIT', () => {
  const e = established({ peerWscale: null });
  e.conn.close(2000);
  check(e.wire.one(), { flags: ACK | FIN, seq: e.ourSeq });
  feed(e, 2001, { seq: e.peerSeq, ack: e.ourSeq, flags: ACK | FIN });
  expectState(e.conn, TcpState.CLOSING);
  check(e.wire.one(), { flags: ACK, ack: e.peerSeq + 1 });
  feed(e, 2002, { seq: e.peerSeq + 1, ack: e.ourSeq + 1 });
  expectState(e.conn, TcpState.TIME_WAIT);
  assert.deepEqual(e.app.closed, ['normal']);
});

test('fin_wait_1_fin_ack: FIN and the ACK of ours in one segment go straight to TIME-WAIT', () => {
  const e = established({ peerWscale: null });
  e.conn.close(2000);
  e.wire.take();
  feed(e, 2001, { seq: e.peerSeq, ack: e.ourSeq + 1, flags: ACK | FIN });
  expectState(e.conn, TcpState.TIME_WAIT);
  check(e.wire.one(), { flags: ACK, ack: e.peerSeq + 1 });
});

test('fin_wait_1_fin_lost: our FIN is retransmitted on the RTO', () => {
  const e = established({ peerWscale: null });
  e.conn.write(2000, Buffer.from('abc'));
  e.conn.close(2000);
  assert.equal(e.wire.take().length, 2);
  tick(e, e.table.nextDeadline());
  check(e.wire.one(), { flags: ACK | PSH | FIN, seq: e.ourSeq, len: 3 });
  feed(e, 3000, { seq: e.peerSeq, ack: e.ourSeq + 3 }); // data acked, FIN not
  expectState(e.conn, TcpState.FIN_WAIT_1);
  tick(e, e.table.nextDeadline());
  check(e.wire.one(), { flags: ACK | FIN, seq: e.ourSeq + 3, len: 0 });
  feed(e, 4000, { seq: e.peerSeq, ack: e.ourSeq + 4 });
  expectState(e.conn, TcpState.FIN_WAIT_2);
});

test('fin_wait_2_timeout: a silent FIN-WAIT-2 is dropped after finWait2TimeoutMs; activity extends it', () => {
  const e = established({ peerWscale: null, tcp: { finWait2TimeoutMs: 10_000 } });
  e.conn.close(2000);
  e.wire.take();
  feed(e, 2001, { seq: e.peerSeq, ack: e.ourSeq + 1 });
  expectState(e.conn, TcpState.FIN_WAIT_2);
  feed(e, 9000, { seq: e.peerSeq, ack: e.ourSeq + 1, payload: Buffer.from('x') });
  tick(e, 12_001);
  expectState(e.conn, TcpState.FIN_WAIT_2);
  tick(e, 19_000);
  expectState(e.conn, TcpState.CLOSED);
  assert.deepEqual(e.app.closed, ['finWait2Timeout']);
  assert.ok(e.wire.take().some((s) => s.flags & RST));
});

test('established_abort: RST at SND.NXT, queued data dropped, "aborted"', () => {
  const e = established({ peerWindow: 0, peerWscale: null });
  e.conn.write(2000, bytes(5000));
  e.conn.abort(2001);
  check(e.wire.one(), { flags: RST | ACK, seq: e.ourSeq });
  expectState(e.conn, TcpState.CLOSED);
  assert.deepEqual(e.app.closed, ['aborted']);
  assert.equal(e.table.size, 0);
  assert.equal(e.table.nextDeadline(), Infinity, 'no timers left');
});

test('established_rst: exact RST ends the connection, in-window draws a challenge ACK, out-of-window is ignored (RFC 5961 §3.2)', () => {
  const e = established();
  assert.equal(feed(e, 2000, { seq: e.peerSeq + 10_000_000, flags: RST }), 'rstOutOfWindow');
  e.wire.none();
  assert.equal(feed(e, 2000, { seq: e.peerSeq + 10, flags: RST }), 'rstChallenged');
  check(e.wire.one(), { flags: ACK, seq: e.ourSeq, ack: e.peerSeq });
  assert.equal(e.table.counters.challengeAcks, 1);
  expectState(e.conn, TcpState.ESTABLISHED);
  assert.equal(feed(e, 2000, { seq: e.peerSeq, flags: RST }), null);
  expectState(e.conn, TcpState.CLOSED);
  assert.deepEqual(e.app.closed, ['reset']);
  e.wire.none();
});

test('established_syn: a SYN on an open connection draws a challenge ACK (RFC 5961 §4); challenges are rate limited', () => {
  const e = established();
  for (let i = 0; i < 15; i++) assert.equal(feed(e, 2000, { seq: e.peerSeq + 3, flags: SYN }), 'synChallenged');
  assert.equal(e.wire.take().length, 10);
  expectState(e.conn, TcpState.ESTABLISHED);
  feed(e, 3000, { seq: e.peerSeq + 3, flags: SYN });
  assert.equal(e.wire.take().length, 1, 'a new second, a new budget');
});

test('established_keepalive: probes after idle, every interval; an answer resets; silence aborts', () => {
  const e = established({ peerWscale: null, tcp: { keepaliveIdleMs: 10_000, keepaliveIntervalMs: 1000, keepaliveCount: 3 } });
  // Established at 1000: first check at 11000.
  feed(e, 5000, { seq: e.peerSeq, ack: e.ourSeq, payload: Buffer.from('x') });
  tick(e, 11_000);
  e.wire.take(); // the delayed ACK went earlier; nothing due at 11000 except re-arming
  tick(e, 14_999);
  e.wire.none();
  tick(e, 15_000);
  check(e.wire.one(), { flags: ACK, seq: e.ourSeq - 1, len: 0 });
  // The device answers: idle restarts.
  feed(e, 15_010, { seq: e.peerSeq + 1, ack: e.ourSeq });
  tick(e, 16_000);
  e.wire.none();
  tick(e, 25_010);
  check(e.wire.one(), { seq: e.ourSeq - 1 });
  tick(e, 26_010);
  check(e.wire.one(), { seq: e.ourSeq - 1 });
  tick(e, 27_010);
  check(e.wire.one(), { seq: e.ourSeq - 1 });
  tick(e, 28_010);
  check(e.wire.one(), { flags: RST | ACK });
  assert.deepEqual(e.app.closed, ['keepalive']);
});

test('time_wait_new_syn: a SYN above the old sequence space reopens a TIME-WAIT tuple', () => {
  const e = established({ peerWscale: null });
  e.conn.close(2000);
  feed(e, 2001, { seq: e.peerSeq, ack: e.ourSeq + 1, flags: ACK | FIN });
  expectState(e.conn, TcpState.TIME_WAIT);
  e.wire.take();
  assert.equal(feed(e, 2100, { seq: e.peerSeq + 100_000, flags: SYN }), null);
  assert.equal(e.offered.length, 2);
  expectState(e.offered[1]!, TcpState.PENDING);
  expectState(e.conn, TcpState.CLOSED);
  assert.equal(e.table.size, 1);
  e.wire.none();
});

test('close_wait_data_after_fin: data after the peer FIN is ignored', () => {
  const e = established();
  feed(e, 2000, { seq: e.peerSeq, ack: e.ourSeq, flags: ACK | FIN });
  e.wire.take();
  assert.equal(feed(e, 2001, { seq: e.peerSeq + 1, ack: e.ourSeq, payload: Buffer.from('late') }), 'afterFin');
  assert.equal(e.app.received.length, 0);
});
