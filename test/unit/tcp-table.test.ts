/**
 * TcpTable at gateway scale: thousands of flows keyed by 4-tuple, one timer
 * heap that runs only what is due, shutdown, and the active-open door.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpState } from '../../src/stack/tcp/index.js';
import { ACK, DEV_IP, IRS, RST, SVC_IP, SYN, App, check, feed, rig, tick } from './tcp-harness.js';

const FLOWS = 3000;

function manyFlows() {
  const r = rig({ delayedAckMs: 40, keepaliveIdleMs: 60_000 }, FLOWS);
  r.verdict = 'accept';
  const iss: number[] = [];
  for (let i = 0; i < FLOWS; i++) {
    // 30 devices × 100 ports each.
    const src = DEV_IP + (i % 30);
    assert.equal(r.table.input(0, src, SVC_IP, { srcPort: 10_000 + Math.floor(i / 30), dstPort: 80, seq: IRS, ack: 0, flags: SYN, window: 65535, options: { mss: 1460 }, payload: Buffer.alloc(0) }), null);
  }
  for (const s of r.wire.take()) iss.push(s.seq);
  assert.equal(iss.length, FLOWS);
  for (let i = 0; i < FLOWS; i++) {
    const src = DEV_IP + (i % 30);
    r.table.input(10, src, SVC_IP, { srcPort: 10_000 + Math.floor(i / 30), dstPort: 80, seq: IRS + 1, ack: (iss[i]! + 1) >>> 0, flags: ACK, window: 65535, options: {}, payload: Buffer.from('x') });
  }
  return r;
}

test('table_many_flows: thousands of connections, each found by its 4-tuple; only due timers run', () => {
  const r = manyFlows();
  assert.equal(r.table.size, FLOWS);
  assert.equal(r.offered.every((c) => c.state === TcpState.ESTABLISHED), true);
  for (let i = 0; i < FLOWS; i += 97) {
    const c = r.table.lookup(SVC_IP, 80, DEV_IP + (i % 30), 10_000 + Math.floor(i / 30));
    assert.equal(c, r.offered[i]);
  }
  r.wire.none();
  // Every flow owes a delayed ACK at 50 ms; nothing is due before.
  assert.equal(r.table.nextDeadline(), 50);
  assert.equal(r.table.tick(49), 0);
  assert.equal(r.table.tick(50), FLOWS);
  const acks = r.wire.take();
  assert.equal(acks.length, FLOWS);
  for (const a of acks) check(a, { flags: ACK, ack: IRS + 2 });
  // Next: keepalive checks, 60 s after establishment.
  assert.equal(r.table.nextDeadline(), 60_010);
  assert.equal(r.table.tick(30_000), 0);
});

test('table_many_flows_churn: closing half keeps the timer heap consistent', () => {
  const r = manyFlows();
  r.wire.take();
  for (let i = 0; i < FLOWS; i += 2) r.offered[i]!.abort(20);
  assert.equal(r.table.size, FLOWS / 2);
  assert.equal(r.wire.take().filter((s) => s.flags & RST).length, FLOWS / 2);
  assert.equal(r.table.tick(50), FLOWS / 2, 'only the live half owed ACKs');
  for (let i = 0; i < FLOWS; i += 2) {
    assert.equal(r.table.lookup(SVC_IP, 80, DEV_IP + (i % 30), 10_000 + Math.floor(i / 30)), undefined);
  }
  assert.equal(r.table.lookup(SVC_IP, 80, DEV_IP + 1, 10_000), r.offered[1]);
});

test('table_abort_all: shutdown sends one RST per connection and leaves nothing', () => {
  const r = manyFlows();
  r.wire.take();
  r.table.abortAll(100);
  assert.equal(r.table.size, 0);
  assert.equal(r.table.nextDeadline(), Infinity);
  assert.equal(r.wire.take().length, FLOWS);
  assert.equal(r.table.counters.closes.aborted, FLOWS);
});

test('table_connect: active open sends SYN with our options; a used 4-tuple is refused with ERR_CONFLICT', () => {
  const r = rig({ recvBufferBytes: 1 << 20 });
  const app = new App();
  const c = r.table.connect(0, SVC_IP, 5000, DEV_IP, 80, app);
  const syn = check(r.wire.one(), { flags: SYN, ack: 0 });
  assert.deepEqual(syn.options, { mss: 1460, windowScale: 5 });
  assert.throws(() => r.table.connect(0, SVC_IP, 5000, DEV_IP, 80, app), (e: { code?: string }) => e.code === 'ERR_CONFLICT');
  // The peer answers SYN-ACK without window scaling: we drop ours too (RFC 7323 §1.3).
  r.table.input(5, DEV_IP, SVC_IP, { srcPort: 80, dstPort: 5000, seq: 777, ack: (syn.seq + 1) >>> 0, flags: SYN | ACK, window: 30_000, options: { mss: 1200 }, payload: Buffer.alloc(0) });
  assert.equal(c.state, TcpState.ESTABLISHED);
  assert.equal(app.opens, 1);
  assert.equal(c.rcvShift, 0);
  assert.equal(c.sndMss, 1200);
  check(r.wire.one(), { flags: ACK, ack: 778 });
  // A RST to a SYN-SENT connection is "connection refused".
  const d = r.table.connect(10, SVC_IP, 5001, DEV_IP, 81, app);
  const syn2 = r.wire.one();
  r.table.input(11, DEV_IP, SVC_IP, { srcPort: 81, dstPort: 5001, seq: 0, ack: (syn2.seq + 1) >>> 0, flags: RST | ACK, window: 0, options: {}, payload: Buffer.alloc(0) });
  assert.equal(d.state, TcpState.CLOSED);
  assert.deepEqual(app.closed, ['reset']);
});

test('table_syn_sent_retransmit: the SYN is retransmitted with backoff', () => {
  const r = rig({ initialRtoMs: 1000, maxSynRetransmits: 2 });
  const app = new App();
  r.table.connect(0, SVC_IP, 5000, DEV_IP, 80, app);
  r.wire.take();
  tick(r, 1000);
  check(r.wire.one(), { flags: SYN });
  tick(r, 3000);
  check(r.wire.one(), { flags: SYN });
  tick(r, 7000);
  r.wire.none();
  assert.deepEqual(app.closed, ['timeout']);
  assert.equal(feed(r, 8000, { seq: 1, ack: 1 }), 'noConnection');
});
