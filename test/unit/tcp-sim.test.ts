/**
 * Seeded simulation: two TCP tables (an active-open client, a passive server
 * that holds the SYN PENDING for a simulated overlay dial) over an in-memory
 * channel with 2 % loss, reordering (random delay), some duplication and a
 * slow consumer on the server side. Megabytes each way, then both close:
 * delivery must be byte-exact, both ends must see end-of-stream and a normal
 * close, and it must all finish within a bound in simulated milliseconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  TcpState,
  TcpTable,
  type TcpCloseReason,
  type TcpConnection,
  type TcpHandler,
  type TcpOutput,
  type TcpSegmentIn,
  type TcpSegmentOut,
} from '../../src/stack/tcp/index.js';
import { DEV_IP, SVC_IP, bytes } from './tcp-harness.js';

/** xorshift32: reproducible randomness from a seed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

interface InFlight { at: number; order: number; dst: number; src: number; seg: TcpSegmentIn }

class Channel implements TcpOutput {
  queue: InFlight[] = [];
  private order = 0;
  now = 0;
  sent = 0;
  lost = 0;
  constructor(private readonly rnd: () => number, private readonly lossRate: number, private readonly baseDelayMs: number, private readonly jitterMs: number) {}
  sendSegment(src: number, dst: number, seg: TcpSegmentOut): void {
    this.sent++;
    if (this.rnd() < this.lossRate) {
      this.lost++;
      return;
    }
    const copies = this.rnd() < 0.005 ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const segIn: TcpSegmentIn = {
        srcPort: seg.srcPort, dstPort: seg.dstPort, seq: seg.seq, ack: seg.ack, flags: seg.flags, window: seg.window,
        options: seg.options ?? {}, payload: seg.payload === undefined ? Buffer.alloc(0) : Buffer.from(seg.payload),
      };
      this.queue.push({ at: this.now + this.baseDelayMs + this.rnd() * this.jitterMs, order: this.order++, src, dst, seg: segIn });
    }
  }
  nextAt(): number {
    let m = Infinity;
    for (const p of this.queue) if (p.at < m) m = p.at;
    return m;
  }
  takeDue(now: number): InFlight[] {
    const due = this.queue.filter((p) => p.at <= now).sort((a, b) => a.at - b.at || a.order - b.order);
    this.queue = this.queue.filter((p) => p.at > now);
    return due;
  }
}

/** One end's app: writes `toSend` as the window allows, then closes; hashes what it receives; consumes at a rate. */
class Peer implements TcpHandler {
  conn: TcpConnection | undefined;
  sentBytes = 0;
  received = createHash('sha256');
  receivedBytes = 0;
  unconsumed = 0;
  ended = false;
  closed: TcpCloseReason | undefined;
  opened = false;
  constructor(private readonly toSend: Buffer, private readonly consumeBytesPerMs: number, private readonly clock: { now: number }) {}
  pushMore(): void {
    const c = this.conn;
    if (c === undefined || c.finQueued) return;
    while (this.sentBytes < this.toSend.length) {
      // Write in 16 KiB pieces, as a circuit would hand them over.
      const piece = this.toSend.subarray(this.sentBytes, Math.min(this.toSend.length, this.sentBytes + 16384));
      const n = c.write(this.clock.now, piece);
      this.sentBytes += n;
      if (n < piece.length) return;
    }
    c.close(this.clock.now);
  }
  /** Let the (slow) far end take bytes for `elapsedMs`. */
  drain(elapsedMs: number): void {
    if (this.conn === undefined || this.unconsumed === 0) return;
    const n = this.consumeBytesPerMs === Infinity ? this.unconsumed : Math.min(this.unconsumed, Math.floor(elapsedMs * this.consumeBytesPerMs));
    if (n > 0) {
      this.unconsumed -= n;
      this.conn.consume(this.clock.now, n);
    }
  }
  onOpen(conn: TcpConnection): void {
    this.opened = true;
    this.conn = conn;
    this.pushMore();
  }
  onData(_c: TcpConnection, data: Buffer): void {
    this.received.update(data);
    this.receivedBytes += data.length;
    this.unconsumed += data.length;
  }
  onEnd(): void {
    this.ended = true;
  }
  onWritable(): void {
    this.pushMore();
  }
  onClose(_c: TcpConnection, reason: TcpCloseReason): void {
    this.closed = reason;
  }
}

function simulate(seed: number, upBytes: number, downBytes: number, lossRate = 0.02) {
  const rnd = prng(seed);
  const clock = { now: 0 };
  const chan = new Channel(rnd, lossRate, 2, 8);
  const up = bytes(upBytes, seed * 3 + 1);
  const down = bytes(downBytes, seed * 5 + 2);
  const client = new Peer(up, Infinity, clock);
  const server = new Peer(down, 3000, clock); // the far end takes 3 MB/s: the window closes now and then
  const pendingDials: { at: number; conn: TcpConnection }[] = [];
  const tcp = { timeWaitMs: 500, recvBufferBytes: 128 * 1024, sendBufferBytes: 128 * 1024 };
  const serverTable = new TcpTable(chan, {
    onSyn: (conn) => {
      conn.setHandler(server);
      pendingDials.push({ at: clock.now + 30, conn }); // the overlay dial takes 30 ms
      return 'pending';
    },
  }, { tcp, isnSecret: Buffer.alloc(16, seed) });
  const clientTable = new TcpTable(chan, { onSyn: () => 'refuse' }, { tcp, isnSecret: Buffer.alloc(16, seed + 1) });
  clientTable.connect(0, DEV_IP, 40000, SVC_IP, 80, client);
  client.conn = clientTable.lookup(DEV_IP, 40000, SVC_IP, 80);

  let last = 0;
  let steps = 0;
  const limitMs = 120_000;
  while (steps++ < 2_000_000) {
    const appWake = server.unconsumed > 0 ? clock.now + 5 : Infinity;
    const dialAt = pendingDials.length > 0 ? pendingDials[0]!.at : Infinity;
    const next = Math.min(chan.nextAt(), serverTable.nextDeadline(), clientTable.nextDeadline(), appWake, dialAt);
    if (next === Infinity || next > limitMs) break;
    clock.now = chan.now = Math.max(clock.now, next);
    while (pendingDials.length > 0 && pendingDials[0]!.at <= clock.now) pendingDials.shift()!.conn.accept(clock.now);
    for (const p of chan.takeDue(clock.now)) {
      const table = p.dst === SVC_IP ? serverTable : clientTable;
      table.input(clock.now, p.src, p.dst, p.seg);
    }
    serverTable.tick(clock.now);
    clientTable.tick(clock.now);
    server.drain(clock.now - last);
    client.drain(clock.now - last);
    last = clock.now;
    if (serverTable.size === 0 && clientTable.size === 0 && chan.queue.length === 0) break;
  }
  return { client, server, up, down, clock, chan, serverTable, clientTable, steps };
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

for (const seed of [1, 2, 3]) {
  test(`sim_lossy_transfer seed ${seed}: 3 MB up, 1 MB down over 2 % loss with reordering, byte-exact`, () => {
    const s = simulate(seed, 3 * 1024 * 1024, 1024 * 1024);
    assert.ok(s.chan.lost > 20, `losses happened (${s.chan.lost})`);
    assert.equal(s.server.receivedBytes, s.up.length, 'server got every byte');
    assert.equal(s.server.received.digest('hex'), sha(s.up));
    assert.equal(s.client.receivedBytes, s.down.length, 'client got every byte');
    assert.equal(s.client.received.digest('hex'), sha(s.down));
    assert.ok(s.server.ended && s.client.ended, 'both saw end-of-stream');
    assert.equal(s.server.closed, 'normal');
    assert.equal(s.client.closed, 'normal');
    assert.equal(s.serverTable.size, 0);
    assert.equal(s.clientTable.size, 0);
    // 3 MB through a 3 MB/s consumer is ≥ 1 s; RTOs on top must stay bounded.
    assert.ok(s.clock.now < 30_000, `finished in ${s.clock.now} simulated ms`);
    assert.ok(s.serverTable.counters.fastRetransmits + s.clientTable.counters.fastRetransmits > 0, 'fast retransmit used');
  });
}

test('sim_clean_channel: without loss (reordering only) no timer expires and the slow far end paces the transfer', () => {
  const s = simulate(9, 1024 * 1024, 256 * 1024, 0);
  assert.equal(s.chan.lost, 0);
  assert.equal(s.server.receivedBytes, 1024 * 1024);
  assert.equal(s.server.received.digest('hex'), sha(s.up));
  assert.equal(s.client.received.digest('hex'), sha(s.down));
  assert.equal(s.server.closed, 'normal');
  assert.equal(s.client.closed, 'normal');
  assert.equal(s.clientTable.counters.timeouts, 0);
  assert.equal(s.serverTable.counters.timeouts, 0);
  // The consumer takes 3 MB/s: 1 MiB needs ≥ 330 ms, and should not need much more.
  assert.ok(s.clock.now >= 330 && s.clock.now < 3000, `finished in ${s.clock.now} ms`);
});
