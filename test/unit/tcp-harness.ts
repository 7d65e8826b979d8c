/**
 * Test harness for the TCP state machine (src/stack/tcp): a recording output,
 * a recording app handler, hand-built segments and composable checks on what
 * the machine sent (after gVisor's `checker`). Not a test file itself.
 */
import assert from 'node:assert/strict';
import {
  TcpFlags,
  TcpState,
  TCP_STATE_NAMES,
  TcpTable,
  type TcpCloseReason,
  type TcpConfig,
  type TcpConnection,
  type TcpHandler,
  type TcpOutput,
  type TcpSegmentIn,
  type TcpSegmentOut,
  type TcpSynVerdict,
} from '../../src/stack/tcp/index.js';

export const { FIN, SYN, RST, PSH, ACK } = TcpFlags;

/** 10.0.0.2: the device (peer). */
export const DEV_IP = 0x0a000002;
/** 100.64.0.5: the intercepted address (us). */
export const SVC_IP = 0x64400005;
export const DEV_PORT = 40000;
export const SVC_PORT = 80;

export interface Sent {
  src: number;
  dst: number;
  seg: TcpSegmentOut;
}

/** Records every segment the machine sends. */
export class Wire implements TcpOutput {
  sent: Sent[] = [];
  sendSegment(src: number, dst: number, seg: TcpSegmentOut): void {
    // Copy the payload: the contract only promises it until the next call.
    const payload = seg.payload === undefined ? undefined : Buffer.from(seg.payload);
    this.sent.push({ src, dst, seg: { ...seg, payload } });
  }
  /** Segments sent since the last take(). */
  take(): TcpSegmentOut[] {
    const s = this.sent.map((x) => x.seg);
    this.sent = [];
    return s;
  }
  /** Exactly one segment was sent since the last take(): returns it. */
  one(): TcpSegmentOut {
    const s = this.take();
    assert.equal(s.length, 1, `expected one segment, got ${s.length}: ${s.map(describe).join(' | ')}`);
    return s[0]!;
  }
  none(): void {
    const s = this.take();
    assert.equal(s.length, 0, `expected no segment, got: ${s.map(describe).join(' | ')}`);
  }
}

/** Records the app events; consumes delivered bytes at once unless told not to. */
export class App implements TcpHandler {
  opens = 0;
  chunks: Buffer[] = [];
  ended = 0;
  writables = 0;
  closed: TcpCloseReason[] = [];
  autoConsume = true;
  /** Optional hook run inside onData (reentrancy tests). */
  onDataHook: ((conn: TcpConnection, data: Buffer) => void) | undefined = undefined;
  onOpen(): void {
    this.opens++;
  }
  onData(conn: TcpConnection, data: Buffer): void {
    this.chunks.push(Buffer.from(data));
    this.onDataHook?.(conn, data);
    if (this.autoConsume) conn.consume(nowOf(conn), data.length);
  }
  onEnd(): void {
    this.ended++;
  }
  onWritable(): void {
    this.writables++;
  }
  onClose(_c: TcpConnection, reason: TcpCloseReason): void {
    this.closed.push(reason);
  }
  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Tests drive one clock; App.onData needs it for consume(). */
let clockMs = 0;
export function setNow(ms: number): number {
  clockMs = ms;
  return ms;
}
function nowOf(_c: TcpConnection): number {
  return clockMs;
}

/** A received segment with defaults (device → us). */
export function seg(p: Partial<TcpSegmentIn> & { seq: number }): TcpSegmentIn {
  return {
    srcPort: p.srcPort ?? DEV_PORT,
    dstPort: p.dstPort ?? SVC_PORT,
    seq: p.seq >>> 0,
    ack: (p.ack ?? 0) >>> 0,
    flags: p.flags ?? ACK,
    window: p.window ?? 65535,
    options: p.options ?? {},
    payload: p.payload ?? Buffer.alloc(0),
  };
}

export function describe(s: TcpSegmentOut): string {
  const f: string[] = [];
  if (s.flags & SYN) f.push('SYN');
  if (s.flags & FIN) f.push('FIN');
  if (s.flags & RST) f.push('RST');
  if (s.flags & PSH) f.push('PSH');
  if (s.flags & ACK) f.push('ACK');
  return `${f.join('|')} seq=${s.seq} ack=${s.ack} win=${s.window} len=${s.payload?.length ?? 0}`;
}

export interface Expect {
  flags?: number;
  seq?: number;
  ack?: number;
  len?: number;
  window?: number;
}

/** Asserts the fields given in `e` (flags exactly). */
export function check(s: TcpSegmentOut, e: Expect): TcpSegmentOut {
  const d = describe(s);
  if (e.flags !== undefined) assert.equal(s.flags, e.flags, `flags of ${d}`);
  if (e.seq !== undefined) assert.equal(s.seq, e.seq >>> 0, `seq of ${d}`);
  if (e.ack !== undefined) assert.equal(s.ack, e.ack >>> 0, `ack of ${d}`);
  if (e.len !== undefined) assert.equal(s.payload?.length ?? 0, e.len, `len of ${d}`);
  if (e.window !== undefined) assert.equal(s.window, e.window, `window of ${d}`);
  return s;
}

export function stateName(c: TcpConnection): string {
  return TCP_STATE_NAMES[c.state]!;
}

export function expectState(c: TcpConnection, state: number): void {
  assert.equal(stateName(c), TCP_STATE_NAMES[state], 'connection state');
}

export interface Rig {
  table: TcpTable;
  wire: Wire;
  app: App;
  /** Connections offered to onSyn, in order. */
  offered: TcpConnection[];
  verdict: TcpSynVerdict;
}

/** A table whose onSyn returns `rig.verdict` (default 'pending') and records the connection. */
export function rig(tcp: Partial<TcpConfig> = {}, maxConnections?: number): Rig {
  const wire = new Wire();
  const app = new App();
  const r: Rig = { table: undefined as unknown as TcpTable, wire, app, offered: [], verdict: 'pending' };
  r.table = new TcpTable(wire, {
    onSyn: (conn) => {
      r.offered.push(conn);
      conn.setHandler(app);
      return r.verdict;
    },
  }, { tcp, maxConnections, isnSecret: Buffer.alloc(16, 7) });
  return r;
}

export const IRS = 1_000_000;

export interface Est extends Rig {
  conn: TcpConnection;
  /** Next sequence number the device sends (our RCV.NXT). */
  peerSeq: number;
  /** Our next sequence number (what the device acknowledges). */
  ourSeq: number;
  synAck: TcpSegmentOut;
}

/**
 * Device SYN (MSS, window scale as given), accept, device ACK: an
 * ESTABLISHED connection at time `now`.
 */
export function established(opts: {
  now?: number;
  tcp?: Partial<TcpConfig>;
  peerMss?: number;
  peerWscale?: number | null;
  peerWindow?: number;
  irs?: number;
} = {}): Est {
  const now = setNow(opts.now ?? 1000);
  const r = rig(opts.tcp);
  const irs = opts.irs ?? IRS;
  const wscale = opts.peerWscale === undefined ? 7 : opts.peerWscale;
  const options = { mss: opts.peerMss ?? 1460, ...(wscale === null ? {} : { windowScale: wscale }) };
  assert.equal(r.table.input(now, DEV_IP, SVC_IP, seg({ seq: irs, flags: SYN, window: 64240, options })), null);
  const conn = r.offered[0]!;
  assert.ok(conn.accept(now, r.app));
  const synAck = check(r.wire.one(), { flags: SYN | ACK, ack: irs + 1 });
  const iss = synAck.seq;
  const window = opts.peerWindow ?? 65535;
  assert.equal(r.table.input(now, DEV_IP, SVC_IP, seg({ seq: irs + 1, ack: iss + 1, window })), null);
  r.wire.none();
  expectState(conn, TcpState.ESTABLISHED);
  return { ...r, conn, peerSeq: (irs + 1) >>> 0, ourSeq: (iss + 1) >>> 0, synAck };
}

/** Feeds a device segment to the rig's table at `now`. */
export function feed(r: Rig, now: number, s: Partial<TcpSegmentIn> & { seq: number }): ReturnType<TcpTable['input']> {
  setNow(now);
  return r.table.input(now, DEV_IP, SVC_IP, seg(s));
}

/** Runs the table's timers at `now`. */
export function tick(r: Rig, now: number): void {
  setNow(now);
  r.table.tick(now);
}

export function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
