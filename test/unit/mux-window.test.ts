/**
 * The growing circuit window (src/router/mux.ts), frame by frame over a
 * recording link: what the receiver grants when the sender reports BLOCKED,
 * the caps (peer's offer, MAX_WINDOW_BYTES, the link's budget), the fall back
 * to the initial window when the local socket is behind, and that neither
 * BLOCKED nor growth happens with a peer that did not offer it (an older
 * router). Real sockets and links carry the same code in mux.test.ts and the
 * e2e fabric tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Duplex, PassThrough } from 'node:stream';
import type { Link } from '../../src/link/index.js';
import { DEFAULT_WINDOW_BYTES, LINK_GROWTH_BUDGET_BYTES, LinkMux, MAX_WINDOW_BYTES } from '../../src/router/mux.js';
import { CloseCode, FrameFlags, FrameType, decodeControl, decodeCredit, encodeControl, encodeCredit } from '../../src/wire/index.js';

const KiB = 1024;
const W = DEFAULT_WINDOW_BYTES;

interface Sent { type: number; flags: number; circuitId: number; body: Buffer }

/** The part of Link that LinkMux uses, recording every frame it is asked to send. */
class RecordingLink extends EventEmitter {
  isUp = true;
  /** A long link (50 ms): windows may grow to 2 MiB (1 Gbit/s × 50 ms is more). */
  rttMs = 50;
  sent: Sent[] = [];
  closedWith: { code: number; reason: string } | undefined;
  circuitHandler: (type: number, flags: number, circuitId: number, body: Buffer) => void = () => undefined;
  circuitPiecesHandler: ((flags: number, circuitId: number, pieces: Buffer[], length: number) => void) | undefined;
  sendFrame(type: number, flags: number, circuitId: number, body: Buffer): boolean {
    this.sent.push({ type, flags, circuitId, body: Buffer.from(body) });
    return true;
  }
  sendControl(type: number, circuitId: number, message: object): boolean {
    return this.sendFrame(type, 0, circuitId, encodeControl(message));
  }
  closeCode(): number | undefined {
    return this.closedWith?.code;
  }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.isUp = false;
  }
  /** Credits granted so far on `circuitId`, in order; clears the record. */
  takeCredits(circuitId: number): number[] {
    const out = this.sent.filter((f) => f.type === FrameType.CREDIT && f.circuitId === circuitId).map((f) => decodeCredit(f.body)!);
    this.sent = [];
    return out;
  }
}

/** A local socket that takes every write at once, or holds them while `stalled` (then its writes return false). */
function sink(): Duplex & { stalled: boolean; release: () => void } {
  const held: (() => void)[] = [];
  const s = new Duplex({
    writableHighWaterMark: 64 * KiB,
    read() { /* nothing to read */ },
    write(_chunk, _enc, cb) {
      if (s.stalled) held.push(cb);
      else cb();
    },
  }) as Duplex & { stalled: boolean; release: () => void };
  s.stalled = false;
  s.release = () => { s.stalled = false; for (const cb of held.splice(0)) cb(); };
  return s;
}

/** A listener-side mux with one circuit (id 1) dialed by the peer; `offer` is the peer's maxWindow, or undefined for an older peer. */
function receiver(offer: number | undefined) {
  const link = new RecordingLink();
  const local = sink();
  const mux = new LinkMux(link as unknown as Link, 'listener', (_req, accept) => accept(local));
  const dial: Record<string, unknown> = { service: 'svc', identity: 'id-1', window: W };
  if (offer !== undefined) dial.maxWindow = offer;
  link.circuitHandler(FrameType.DIAL, 0, 1, encodeControl(dial));
  const ok = link.sent.find((f) => f.type === FrameType.DIAL_OK);
  assert.ok(ok !== undefined, 'accepted');
  link.sent = [];
  const data = (n: number, flags = 0): void => link.circuitHandler(FrameType.DATA, flags, 1, Buffer.alloc(n, 0x61));
  return { link, local, mux, data, okBody: decodeControl(ok.body) };
}

test('mux window: a BLOCKED sender gets the window doubled at once, up to MAX_WINDOW_BYTES', () => {
  const { link, data, okBody } = receiver(MAX_WINDOW_BYTES);
  assert.deepEqual(okBody, { maxWindow: MAX_WINDOW_BYTES }, 'DIAL_OK offers growth back');
  for (let i = 0; i < 3; i++) data(64 * KiB);
  assert.deepEqual(link.takeCredits(1), [64 * KiB, 64 * KiB, 64 * KiB], 'a quarter of the initial window per grant');
  data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [64 * KiB, W], 'the usual grant, then the growth: 256 → 512 KiB');
  data(64 * KiB);
  assert.deepEqual(link.takeCredits(1), [], 'grants now come a quarter of 512 KiB at a time');
  data(64 * KiB);
  assert.deepEqual(link.takeCredits(1), [128 * KiB]);
  data(16 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [16 * KiB + 512 * KiB], 'what was not granted yet goes with the growth: → 1 MiB');
  data(16 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [16 * KiB + 1024 * KiB], '→ 2 MiB');
  data(16 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [], 'at MAX_WINDOW_BYTES: no growth, and 16 KiB is under a quarter of 2 MiB');
  assert.equal(link.closedWith, undefined);
});

test('mux window: growth stops at the peer\'s offer; an older peer (no offer) gets a fixed window', () => {
  const capped = receiver(W * 2);
  capped.data(64 * KiB, FrameFlags.BLOCKED);
  capped.data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(capped.link.takeCredits(1), [64 * KiB, W], 'one doubling, to the 512 KiB offered, then no more');

  const old = receiver(undefined);
  old.data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(old.link.takeCredits(1), [64 * KiB], 'no offer, no growth');
  for (const bad of [-1, 1.5, '2097152', 2 ** 40]) {
    const r = receiver(bad as number);
    r.data(64 * KiB, FrameFlags.BLOCKED);
    assert.deepEqual(r.link.takeCredits(1), [64 * KiB], `maxWindow ${String(bad)} is no offer`);
  }
});

test('mux window: growth stops at what 1 Gbit/s needs over the link\'s round trip; none on a LAN (RTT ≤ 2 ms)', () => {
  const lan = receiver(MAX_WINDOW_BYTES);
  lan.link.rttMs = 2;
  lan.data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(lan.link.takeCredits(1), [64 * KiB], '2 ms × 1 Gbit/s = 250 kB: 256 KiB is enough');
  const wan = receiver(MAX_WINDOW_BYTES);
  wan.link.rttMs = 5; // 625 kB
  for (let i = 0; i < 4; i++) wan.data(0, FrameFlags.BLOCKED);
  assert.deepEqual(wan.link.takeCredits(1), [W, 2 * W], '256 → 512 KiB → 1 MiB, then no more');
});

test('mux window: a mux made with fixed windows (maxWindowBytes = window) offers nothing and never grows', () => {
  const link = new RecordingLink();
  new LinkMux(link as unknown as Link, 'listener', (_req, accept) => accept(sink()), W, W);
  link.circuitHandler(FrameType.DIAL, 0, 1, encodeControl({ service: 's', identity: 'i', window: W, maxWindow: MAX_WINDOW_BYTES }));
  assert.deepEqual(decodeControl(link.sent.find((f) => f.type === FrameType.DIAL_OK)!.body), {}, 'no offer in DIAL_OK');
  link.sent = [];
  link.circuitHandler(FrameType.DATA, FrameFlags.BLOCKED, 1, Buffer.alloc(64 * KiB));
  assert.deepEqual(link.takeCredits(1), [64 * KiB]);
  const dialer = new RecordingLink();
  const mux = new LinkMux(dialer as unknown as Link, 'dialer', () => undefined, W, W);
  mux.dial(new PassThrough(), { service: 's', identity: 'i' }, () => undefined);
  assert.equal(decodeControl(dialer.sent[0]!.body)!.maxWindow, undefined, 'no offer in DIAL');
});

test('mux window: when the local socket falls behind, the window goes back to the initial one (excess withheld), and regrows later', async () => {
  const { link, local, data } = receiver(MAX_WINDOW_BYTES);
  data(64 * KiB, FrameFlags.BLOCKED);
  data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [64 * KiB, W, 64 * KiB + 2 * W], 'grown to 1 MiB (the second 64 KiB, under a quarter of 512 KiB, went with the growth)');
  local.stalled = true;
  data(64 * KiB); // fills the socket's 64 KiB high-water mark
  data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [], 'behind: nothing granted, and BLOCKED does not grow the window');
  local.release(); // 'drain': the held-back 128 KiB would be granted, less the 768 KiB of excess
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(link.takeCredits(1), [], 'the excess is withheld first');
  for (let i = 0; i < 12; i++) data(64 * KiB);
  // 768 KiB of excess − 128 KiB withheld at the drain = 640 KiB: the next 10 × 64 KiB received grant nothing.
  assert.deepEqual(link.takeCredits(1), [64 * KiB, 64 * KiB], 'grants resume once the excess is paid: the window is 256 KiB again');
  data(64 * KiB, FrameFlags.BLOCKED);
  assert.deepEqual(link.takeCredits(1), [64 * KiB, W], 'and it may grow again');
});

test('mux window: the growth of a link\'s circuits together stays within LINK_GROWTH_BUDGET_BYTES', () => {
  const link = new RecordingLink();
  new LinkMux(link as unknown as Link, 'listener', (_req, accept) => accept(sink()));
  const ids = [1, 3, 5, 7, 9, 11];
  for (const id of ids) link.circuitHandler(FrameType.DIAL, 0, id, encodeControl({ service: 's', identity: 'i', window: W, maxWindow: MAX_WINDOW_BYTES }));
  link.sent = [];
  // Empty DATA frames: every credit granted is growth.
  for (let round = 0; round < 4; round++) for (const id of ids) link.circuitHandler(FrameType.DATA, FrameFlags.BLOCKED, id, Buffer.alloc(0));
  const credits = link.sent.filter((f) => f.type === FrameType.CREDIT).map((f) => decodeCredit(f.body)!);
  assert.equal(credits.reduce((a, b) => a + b, 0), LINK_GROWTH_BUDGET_BYTES, 'six circuits would grow by 6 × 1.75 MiB; the link allows 4 MiB');
  assert.equal(link.closedWith, undefined);
});

test('mux window: a sender marks the frame that used its last credit BLOCKED, only for a peer that offered growth, and accepts credit up to MAX_WINDOW_BYTES', async () => {
  for (const offer of [MAX_WINDOW_BYTES, undefined]) {
    const link = new RecordingLink();
    const mux = new LinkMux(link as unknown as Link, 'dialer', () => undefined);
    const local = new PassThrough();
    let result: unknown = 'pending';
    const id = mux.dial(local, { service: 'svc', identity: 'me' }, (err) => { result = err; });
    const dialBody = decodeControl(link.sent.find((f) => f.type === FrameType.DIAL)!.body)!;
    assert.equal(dialBody.maxWindow, MAX_WINDOW_BYTES, 'DIAL offers growth');
    link.circuitHandler(FrameType.DIAL_OK, 0, id, encodeControl(offer === undefined ? {} : { maxWindow: offer }));
    assert.equal(result, undefined);
    link.sent = [];
    local.write(Buffer.alloc(W + 32 * KiB, 0x62));
    await new Promise((r) => setImmediate(r));
    const frames = link.sent.filter((f) => f.type === FrameType.DATA);
    assert.equal(frames.reduce((a, f) => a + f.body.length, 0), W, 'exactly the window went out');
    assert.deepEqual(frames.map((f) => f.flags), [0, 0, 0, offer === undefined ? 0 : FrameFlags.BLOCKED], `peer offer ${String(offer)}`);
    link.sent = [];
    link.circuitHandler(FrameType.CREDIT, 0, id, encodeCredit(MAX_WINDOW_BYTES - 32 * KiB));
    await new Promise((r) => setImmediate(r));
    assert.equal(link.closedWith, undefined, 'credit up to MAX_WINDOW_BYTES is within the rules');
    assert.equal(link.sent.filter((f) => f.type === FrameType.DATA).reduce((a, f) => a + f.body.length, 0), 32 * KiB, 'the rest went out');
    link.circuitHandler(FrameType.CREDIT, 0, id, encodeCredit(128 * KiB));
    assert.equal(link.closeCode(), CloseCode.FLOW_CONTROL, 'beyond it: the link closes');
  }
});
