/**
 * TCP SYN-RECEIVED: the device's ACK completes the handshake (RFC 9293
 * §3.10.7.4), a bad ACK draws a RST, a retransmitted SYN gets the SYN-ACK
 * again, the SYN-ACK is retransmitted on its timer with backoff and given up
 * after maxSynRetransmits, and RST / data arriving during the handshake.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpState } from '../../src/stack/tcp/index.js';
import { ACK, IRS, PSH, RST, SYN, App, check, expectState, feed, rig, tick } from './tcp-harness.js';

function synReceived(tcp = {}) {
  const r = rig(tcp);
  feed(r, 0, { seq: IRS, flags: SYN, options: { mss: 1460, windowScale: 2 } });
  const conn = r.offered[0]!;
  conn.accept(0, r.app);
  const synAck = r.wire.one();
  return { r, conn, iss: synAck.seq };
}

test('syn_received_ack: the ACK of our SYN establishes; onOpen fires; the peer window is scaled from then on', () => {
  const { r, conn, iss } = synReceived();
  assert.equal(feed(r, 50, { seq: IRS + 1, ack: iss + 1, window: 1000 }), null);
  expectState(conn, TcpState.ESTABLISHED);
  assert.equal(r.app.opens, 1);
  assert.equal(conn.sndWnd, 4000); // 1000 << 2
  r.wire.none();
  assert.equal(conn.rtt.srttMs, 50, 'the SYN-ACK round trip is the first RTT sample');
  assert.equal(r.table.counters.established, 1);
});

test('syn_received_ack_data: data on the handshake-completing ACK is delivered', () => {
  const { r, conn, iss } = synReceived();
  assert.equal(feed(r, 5, { seq: IRS + 1, ack: iss + 1, flags: ACK | PSH, payload: Buffer.from('GET /') }), null);
  expectState(conn, TcpState.ESTABLISHED);
  assert.equal(r.app.received.toString(), 'GET /');
});

test('syn_received_bad_ack: an ACK of something else draws <SEQ=SEG.ACK><CTL=RST>, the connection stays', () => {
  const { r, conn, iss } = synReceived();
  assert.equal(feed(r, 5, { seq: IRS + 1, ack: iss + 7 }), 'ackTooNew');
  check(r.wire.one(), { flags: RST, seq: iss + 7 });
  assert.equal(feed(r, 5, { seq: IRS + 1, ack: iss }), 'ackTooOld');
  check(r.wire.one(), { flags: RST, seq: iss });
  expectState(conn, TcpState.SYN_RECEIVED);
});

test('syn_received_no_ack: a segment without ACK is dropped', () => {
  const { r, conn } = synReceived();
  assert.equal(feed(r, 5, { seq: IRS + 1, flags: PSH, payload: Buffer.from('x') }), 'noAck');
  expectState(conn, TcpState.SYN_RECEIVED);
});

test('syn_received_syn_retransmit: the device repeats its SYN (our SYN-ACK was lost) → SYN-ACK again at once', () => {
  const { r, conn, iss } = synReceived();
  assert.equal(feed(r, 1000, { seq: IRS, flags: SYN, options: { mss: 1460, windowScale: 2 } }), null);
  check(r.wire.one(), { flags: SYN | ACK, seq: iss, ack: IRS + 1 });
  expectState(conn, TcpState.SYN_RECEIVED);
});

test('syn_received_timeout: SYN-ACK retransmitted with exponential backoff, then given up with RST', () => {
  const { r, conn, iss } = synReceived({ initialRtoMs: 1000, maxSynRetransmits: 3 });
  const times: number[] = [];
  let now = 0;
  for (let i = 0; i < 10 && conn.state !== TcpState.CLOSED; i++) {
    now = r.table.nextDeadline();
    tick(r, now);
    for (const s of r.wire.take()) {
      if (s.flags === (SYN | ACK)) {
        check(s, { seq: iss, ack: IRS + 1 });
        times.push(now);
      } else {
        check(s, { flags: RST | ACK });
      }
    }
  }
  assert.deepEqual(times, [1000, 3000, 7000]); // RFC 6298 §5.5: 1 s, 2 s, 4 s
  assert.equal(now, 15000);
  expectState(conn, TcpState.CLOSED);
  assert.deepEqual(r.app.closed, ['timeout']);
  assert.equal(r.table.size, 0);
});

test('syn_received_after_synack_loss: RTO restarts at 3 s when data begins (RFC 6298 §5.7)', () => {
  const { r, conn, iss } = synReceived({ initialRtoMs: 1000 });
  tick(r, 1000);
  r.wire.take();
  feed(r, 1100, { seq: IRS + 1, ack: iss + 1 });
  expectState(conn, TcpState.ESTABLISHED);
  assert.equal(conn.rtt.hasSample, false, "Karn: no sample from a retransmitted SYN-ACK");
  assert.equal(conn.rtt.rtoMs, 3000);
});

test('syn_received_rst: an exact RST ends the handshake with "reset"; an in-window one draws a challenge ACK', () => {
  const { r, conn, iss } = synReceived();
  assert.equal(feed(r, 5, { seq: IRS + 100, flags: RST }), 'rstChallenged');
  check(r.wire.one(), { flags: ACK, seq: iss + 1, ack: IRS + 1 });
  assert.equal(feed(r, 5, { seq: IRS + 1, flags: RST }), null);
  expectState(conn, TcpState.CLOSED);
  assert.deepEqual(r.app.closed, ['reset']);
  r.wire.none();
});

test('syn_received_close: close() before the handshake completes sends FIN right after it', () => {
  const { r, conn, iss } = synReceived();
  conn.write(1, Buffer.from('bye'));
  conn.close(1);
  r.wire.none();
  feed(r, 2, { seq: IRS + 1, ack: iss + 1 });
  expectState(conn, TcpState.FIN_WAIT_1);
  check(r.wire.one(), { flags: ACK | PSH | 0x01, seq: iss + 1, len: 3 });
});

test('syn_received_handler_abort_in_onOpen: the app may abort from onOpen', () => {
  const { r, conn, iss } = synReceived();
  const app = new App();
  app.onOpen = () => conn.abort(3);
  conn.setHandler(app);
  assert.equal(feed(r, 3, { seq: IRS + 1, ack: iss + 1, payload: Buffer.from('data') }), null);
  expectState(conn, TcpState.CLOSED);
  check(r.wire.one(), { flags: RST | ACK });
  assert.equal(app.chunks.length, 0);
  assert.deepEqual(app.closed, ['aborted']);
});
