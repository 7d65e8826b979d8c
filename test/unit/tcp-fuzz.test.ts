/**
 * Property test of the TCP state machine: connections driven into every
 * state, then fed random and mutated segments (flags, sequence and ACK
 * numbers near and far from the live values, windows, options, payloads)
 * interleaved with app calls and clock ticks. Nothing may throw, every
 * invariant must hold after every step, every byte the machine sends must be
 * the byte the app wrote at that sequence number, and every byte it delivers
 * must be the byte the peer sent at that sequence number.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  TcpState,
  TCP_STATE_NAMES,
  TcpTable,
  seqDiff,
  seqLe,
  type TcpCloseReason,
  type TcpConnection,
  type TcpHandler,
  type TcpOutput,
  type TcpSegmentIn,
  type TcpSegmentOut,
} from '../../src/stack/tcp/index.js';
import { ACK, DEV_IP, DEV_PORT, FIN, IRS, SVC_IP, SVC_PORT, SYN } from './tcp-harness.js';

const TCP = {
  recvBufferBytes: 16 * 1024,
  sendBufferBytes: 16 * 1024,
  oooLimitBytes: 8 * 1024,
  oooLimitSegments: 16,
  keepaliveIdleMs: 5000,
  keepaliveIntervalMs: 500,
  keepaliveCount: 3,
  finWait2TimeoutMs: 3000,
  timeWaitMs: 1000,
  maxRetransmits: 5,
};

/** The peer's byte at sequence number s: payloads are a function of their position, so delivery can be checked. */
function peerByte(s: number): number {
  return (Math.imul(s >>> 0, 2654435761) >>> 24) & 0xff;
}
/** Our app's byte at stream offset i. */
function appByte(i: number): number {
  return (i * 7 + 3) & 0xff;
}
function peerPayload(seq: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) b[i] = peerByte(seq + i);
  return b;
}

class World implements TcpOutput, TcpHandler {
  table: TcpTable;
  conn: TcpConnection = undefined as unknown as TcpConnection;
  now = 1000;
  written = 0;
  /** `written` plus what the write() in progress offers (segments go out during the call). */
  writeLimit = 0;
  /** Bytes delivered and not yet consumed by this app. */
  unconsumed = 0;
  closed: TcpCloseReason | undefined;
  failure: string | undefined;
  constructor() {
    // The first SYN makes the connection under test; later ones (after it closed) are refused, so the
    // table holds at most that one.
    this.table = new TcpTable(this, {
      onSyn: (c) => {
        if (this.conn !== undefined) return 'refuse';
        c.setHandler(this);
        return 'pending';
      },
    }, { tcp: TCP, isnSecret: Buffer.alloc(16, 3) });
  }
  fail(msg: string): void {
    this.failure ??= msg;
  }
  sendSegment(src: number, dst: number, seg: TcpSegmentOut): void {
    const c = this.conn;
    if (!(seg.window >= 0 && seg.window <= 0xffff && Number.isInteger(seg.window))) this.fail(`window field ${seg.window}`);
    if (!(seg.seq >= 0 && seg.seq <= 0xffff_ffff && seg.ack >= 0 && seg.ack <= 0xffff_ffff)) this.fail('seq/ack range');
    if (c === undefined || src !== c.localIp || dst !== c.remoteIp) return; // strays answered by the table
    const p = seg.payload;
    if (p !== undefined && p.length > 0) {
      if (p.length > c.sndMss) this.fail(`payload ${p.length} > MSS ${c.sndMss}`);
      const off = seqDiff(seg.seq, (c.iss + 1) >>> 0);
      for (let i = 0; i < p.length; i++) {
        if (p[i] !== appByte(off + i)) {
          this.fail(`sent byte at offset ${off + i} is not what the app wrote`);
          break;
        }
      }
      if (off + p.length > this.writeLimit) this.fail('sent bytes never written');
    }
  }
  onOpen(): void {}
  onData(c: TcpConnection, data: Buffer): void {
    const start = (c.rcvNxt - data.length) >>> 0;
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== peerByte(start + i)) {
        this.fail(`delivered byte at ${start + i} is not the peer's`);
        break;
      }
    }
    this.unconsumed += data.length;
  }
  onEnd(): void {}
  onWritable(): void {}
  onClose(_c: TcpConnection, reason: TcpCloseReason): void {
    if (this.closed !== undefined) this.fail('onClose twice');
    this.closed = reason;
  }
  input(s: TcpSegmentIn): void {
    this.table.input(this.now, DEV_IP, SVC_IP, s);
  }
  write(n: number): void {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = appByte(this.written + i);
    this.writeLimit = this.written + n;
    this.written += this.conn.write(this.now, b);
    this.writeLimit = this.written;
  }
}

function plain(seq: number, ack: number, flags: number, payloadLen = 0, window = 65535): TcpSegmentIn {
  return { srcPort: DEV_PORT, dstPort: SVC_PORT, seq: seq >>> 0, ack: ack >>> 0, flags, window, options: {}, payload: peerPayload(seq, payloadLen) };
}

/** Builds a connection in `target` state (driving the machine with valid segments). */
function reach(target: number): World {
  const w = new World();
  w.input({ ...plain(IRS, 0, SYN), options: { mss: 1000, windowScale: 2 } });
  w.conn = w.table.lookup(SVC_IP, SVC_PORT, DEV_IP, DEV_PORT)!;
  if (target === TcpState.PENDING) return w;
  w.conn.accept(w.now, w);
  if (target === TcpState.SYN_RECEIVED) return w;
  const iss1 = (w.conn.iss + 1) >>> 0;
  const peer1 = IRS + 1;
  w.input(plain(peer1, iss1, ACK, 0, 8000));
  w.write(3000);
  switch (target) {
    case TcpState.ESTABLISHED:
      break;
    case TcpState.CLOSE_WAIT:
      w.input(plain(peer1, iss1, ACK | FIN));
      break;
    case TcpState.LAST_ACK:
      w.input(plain(peer1, iss1, ACK | FIN));
      w.conn.close(w.now);
      break;
    case TcpState.FIN_WAIT_1:
      w.conn.close(w.now);
      break;
    case TcpState.FIN_WAIT_2:
      w.conn.close(w.now);
      w.input(plain(peer1, iss1 + 3001, ACK));
      break;
    case TcpState.CLOSING:
      w.conn.close(w.now);
      w.input(plain(peer1, iss1, ACK | FIN));
      break;
    case TcpState.TIME_WAIT:
      w.conn.close(w.now);
      w.input(plain(peer1, iss1 + 3001, ACK | FIN));
      break;
    default:
      throw new Error(`no path to ${target}`);
  }
  assert.equal(TCP_STATE_NAMES[w.conn.state], TCP_STATE_NAMES[target], 'reach');
  return w;
}

function checkInvariants(w: World): void {
  const c = w.conn;
  if (c.state === TcpState.CLOSED) {
    if (w.table.size !== 0) w.fail('closed connection left in the table');
    return;
  }
  if (c.state === TcpState.PENDING) return;
  if (!seqLe(c.sndUna, c.sndNxt) || !seqLe(c.sndNxt, c.sndMax)) w.fail(`SND.UNA ≤ SND.NXT ≤ SND.MAX broken: ${c.sndUna} ${c.sndNxt} ${c.sndMax}`);
  if (seqDiff(c.sndMax, c.sndUna) > c.queuedBytes + 2) w.fail('more in flight than queued');
  if (c.rcvWnd < 0 || seqDiff(c.rcvAdvRight, c.rcvNxt) < -1) w.fail('receive window negative');
  if (c.sndWnd < 0) w.fail('send window negative');
  if (c.queuedBytes > TCP.sendBufferBytes) w.fail('send buffer over its cap');
  if (c.oooBytes > TCP.oooLimitBytes) w.fail('out-of-order queue over its cap');
  if (c.unconsumedBytes > TCP.recvBufferBytes) w.fail('more delivered than the receive buffer');
  if (c.cc.cwndBytes < c.sndMss) w.fail('cwnd below one segment');
  if (Number.isNaN(c.nextDeadline())) w.fail('deadline NaN');
  if (w.table.nextDeadline() !== Math.min(c.nextDeadline(), Infinity)) w.fail('table heap out of step with the connection');
}

type Op =
  | { k: 'seg'; seqBase: 'rcv' | 'abs'; seq: number; ackBase: 'una' | 'max' | 'abs'; ack: number; flags: number; len: number; window: number; opts: number }
  | { k: 'write'; n: number }
  | { k: 'consume'; n: number }
  | { k: 'close' }
  | { k: 'abort' }
  | { k: 'tick'; ms: number };

const near = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -5000, max: 20000 }), fc.integer({ min: -0x7fff_ffff, max: 0x7fff_ffff }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    k: fc.constant('seg' as const),
    seqBase: fc.constantFrom('rcv' as const, 'rcv' as const, 'abs' as const),
    seq: near,
    ackBase: fc.constantFrom('una' as const, 'max' as const, 'abs' as const),
    ack: near,
    flags: fc.oneof(fc.constantFrom(ACK, ACK, ACK | FIN, ACK | 0x08, SYN, SYN | ACK, 0x04, 0x04 | ACK, 0), fc.nat(255)),
    len: fc.oneof(fc.constant(0), fc.nat(1200), fc.nat(4000)),
    window: fc.oneof(fc.constant(0), fc.nat(0xffff)),
    opts: fc.nat(15),
  }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('write' as const), n: fc.nat(6000) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('consume' as const), n: fc.nat(9000) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('close' as const) }) },
  // Rare: an abort ends the run's interesting part.
  { weight: 1, arbitrary: fc.nat(9).map((n): Op => (n === 0 ? { k: 'abort' } : { k: 'tick', ms: n })) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.oneof(fc.nat(50), fc.nat(3000)) }) },
);

function apply(w: World, op: Op): void {
  const c = w.conn;
  switch (op.k) {
    case 'seg': {
      const seq = op.seqBase === 'rcv' ? c.rcvNxt + op.seq : op.seq;
      const ack = op.ackBase === 'una' ? c.sndUna + op.ack : op.ackBase === 'max' ? c.sndMax + op.ack : op.ack;
      const s = plain(seq, ack, op.flags, op.len, op.window);
      s.options = {
        ...(op.opts & 1 ? { mss: op.window & 0xfff } : {}),
        ...(op.opts & 2 ? { windowScale: op.opts & 14 } : {}),
        ...(op.opts & 4 ? { sackPermitted: true } : {}),
        ...(op.opts & 8 ? { timestamps: [op.window, op.len] as [number, number] } : {}),
      };
      w.input(s);
      break;
    }
    case 'write':
      w.write(op.n);
      break;
    case 'consume': {
      const n = Math.min(op.n, w.unconsumed);
      w.unconsumed -= n;
      c.consume(w.now, n);
      break;
    }
    case 'close':
      c.close(w.now);
      break;
    case 'abort':
      c.abort(w.now);
      break;
    case 'tick':
      w.now += op.ms;
      w.table.tick(w.now);
      break;
  }
}

const STATES = [
  TcpState.PENDING, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2,
  TcpState.CLOSING, TcpState.TIME_WAIT, TcpState.CLOSE_WAIT, TcpState.LAST_ACK,
];

for (const state of STATES) {
  test(`fuzz_${TCP_STATE_NAMES[state]}: random and mutated segments never throw and keep the invariants`, () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.boolean(), (ops, abortAtEnd) => {
      const w = reach(state);
      for (const op of ops) {
        apply(w, op);
        checkInvariants(w);
        if (w.failure !== undefined) break;
      }
      if (abortAtEnd) {
        w.conn.abort(w.now);
        if (w.conn.state !== TcpState.CLOSED || w.table.size !== 0) w.fail('abort did not close');
        if (w.table.nextDeadline() !== Infinity) w.fail('timers left after abort');
      }
      // Time runs out with a silent peer: every state must end (pending timeout, retransmission or
      // persist give-up, keepalive, FIN-WAIT-2 and TIME-WAIT timers); none may hang forever.
      for (let i = 0; i < 200 && w.table.size > 0; i++) {
        const d = w.table.nextDeadline();
        if (d === Infinity) break;
        w.now = Math.max(w.now, d);
        w.table.tick(w.now);
        checkInvariants(w);
      }
      if (w.table.size !== 0) {
        w.fail(`left in ${TCP_STATE_NAMES[w.conn.state]} with deadline ${w.table.nextDeadline()}`);
      }
      assert.equal(w.failure, undefined, w.failure);
    }), { numRuns: Number(process.env.TCP_FUZZ_RUNS ?? 300), interruptAfterTimeLimit: 4000 });
  });
}
