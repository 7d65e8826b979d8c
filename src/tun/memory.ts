/**
 * An in-memory TUN pair for tests and in-process simulations: what one end
 * writes, the other end's handler reads, with optional seeded loss and
 * reordering. It keeps the contract of the real device (device.ts): the
 * reader owns a fresh copy of every packet, writes never block or throw, a
 * full queue drops, and packets arrive from the event loop (or from an
 * explicit `flush()`), never from inside `write`.
 *
 *   a.write(pkt) ─copy─► b's inbox ─(setImmediate or b.flush())─► b's handler
 *   b.write(pkt) ─copy─► a's inbox ─(setImmediate or a.flush())─► a's handler
 *
 * Loss and reordering draw from one seeded generator per pair, so a test
 * that fails with a seed fails the same way again.
 */
import { newTunCounters, type DeviceErrorHandler, type PacketHandler, type TunCounters, type TunDevice } from './device.js';

/** Options of {@link createMemoryTunPair}. */
export interface MemoryTunOptions {
  /** Names of the two ends. Default ["mem0", "mem1"]. */
  names?: readonly [string, string];
  /** MTU of both ends (bytes); a larger packet is refused and counted in txErrors. Default 1500. */
  mtu?: number;
  /** Probability in [0, 1) that a written packet is silently lost (write still returns true, like a wire). Default 0. */
  lossRate?: number;
  /** Probability in [0, 1) that a packet is held back and delivered after the next one. Default 0. */
  reorderRate?: number;
  /** Seed of the loss/reorder generator. Default 1. */
  seed?: number;
  /** Packets waiting in one direction before writes are dropped (like txqueuelen 500). Default 500. */
  queuePackets?: number;
  /** Packets delivered per event-loop turn. Default 64. */
  maxBatch?: number;
  /** Deliver on setImmediate (true, default) or only when `flush()` is called (deterministic simulations). */
  autoFlush?: boolean;
}

/** Parts accepted by writev, as by the real device. */
const MAX_PARTS = 16;

/** Shared by both ends of a pair. */
interface Link {
  readonly rng: () => number;
  readonly lossRate: number;
  readonly reorderRate: number;
  readonly queuePackets: number;
  readonly maxBatch: number;
  readonly autoFlush: boolean;
}

/**
 * One end of a memory pair. Beyond TunDevice it counts injected loss and
 * reordering, and lets a test deliver queued packets itself.
 */
export class MemoryTun implements TunDevice {
  readonly counters: TunCounters = newTunCounters();
  readonly vnetHdrBytes = 0;
  /** Packets this end wrote that the injected loss discarded. */
  lost = 0;
  /** Packets this end wrote that arrived after a packet written later. */
  reordered = 0;
  #peer: MemoryTun | null = null;
  #closed = false;
  #handler: PacketHandler | null = null;
  /** Packets written by the peer, waiting for this end's handler. */
  #inbox: Buffer[] = [];
  /** A packet held back by reordering (at most one), and the flushes it has waited. */
  #held: Buffer | null = null;
  #heldFlushes = 0;
  #immediate: NodeJS.Immediate | null = null;
  readonly #flushTask: () => void;

  constructor(readonly name: string, readonly mtu: number, readonly link: Link) {
    this.#flushTask = () => {
      this.#immediate = null;
      this.flush(this.link.maxBatch);
    };
  }

  /** @internal Joins two ends; called once by createMemoryTunPair. */
  connect(peer: MemoryTun): void {
    this.#peer = peer;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Packets queued for this end's handler (including one held back). */
  get pending(): number {
    return this.#inbox.length + (this.#held === null ? 0 : 1);
  }

  onPackets(handler: PacketHandler | null): void {
    this.#handler = handler;
    if (handler !== null) this.#schedule();
  }

  onError(_handler: DeviceErrorHandler | null): void {
    // A memory device has no reader that can fail.
  }

  write(pkt: Buffer): boolean {
    const peer = this.#admit(pkt.length, 1);
    if (peer === null) return false;
    const copy = Buffer.allocUnsafe(pkt.length);
    pkt.copy(copy);
    return this.#send(peer, copy);
  }

  writev(parts: readonly Buffer[]): boolean {
    let bytes = 0;
    for (const part of parts) bytes += part.length;
    const peer = this.#admit(bytes, parts.length);
    if (peer === null) return false;
    const copy = Buffer.allocUnsafe(bytes);
    let off = 0;
    for (const part of parts) off += part.copy(copy, off);
    return this.#send(peer, copy);
  }

  /** The peer to deliver a packet of `bytes` to, or null when it is refused (and counted). */
  #admit(bytes: number, parts: number): MemoryTun | null {
    const peer = this.#peer;
    if (this.#closed || peer === null || peer.closed || bytes > this.mtu || parts > MAX_PARTS) {
      this.counters.txErrors++;
      return null;
    }
    if (peer.pending >= this.link.queuePackets) {
      this.counters.txDropped++;
      return null;
    }
    return peer;
  }

  #send(peer: MemoryTun, pkt: Buffer): true {
    this.counters.txPackets++;
    this.counters.txBytes += pkt.length;
    const link = this.link;
    if (link.lossRate > 0 && link.rng() < link.lossRate) {
      this.lost++;
      return true;
    }
    if (link.reorderRate > 0 && link.rng() < link.reorderRate && peer.#held === null) {
      peer.#held = pkt;
      peer.#heldFlushes = 0;
    } else {
      peer.#inbox.push(pkt);
      // A later packet went first: the held one follows it.
      if (peer.#held !== null) {
        this.reordered++;
        peer.#inbox.push(peer.#held);
        peer.#held = null;
      }
    }
    peer.#schedule();
    return true;
  }

  #schedule(): void {
    if (this.link.autoFlush && this.#immediate === null && !this.#closed && this.pending > 0) {
      this.#immediate = setImmediate(this.#flushTask);
    }
  }

  /**
   * Delivers up to `maxPackets` queued packets to this end's handler, in
   * order, now. A packet held back by reordering is due when a later packet
   * overtakes it, or at the second flush after it was written.
   * @returns the number of packets delivered (or dropped for lack of a handler).
   */
  flush(maxPackets = Number.POSITIVE_INFINITY): number {
    if (this.#held !== null && this.#heldFlushes++ >= 1) {
      this.#inbox.push(this.#held);
      this.#held = null;
    }
    const inbox = this.#inbox;
    const n = Math.min(maxPackets, inbox.length);
    // Take the batch first: a handler that writes back may add to the inbox.
    const batch = inbox.splice(0, n);
    for (let i = 0; i < batch.length && !this.#closed; i++) {
      const pkt = batch[i]!;
      const handler = this.#handler;
      if (handler === null) {
        this.counters.rxNoHandler++;
        continue;
      }
      this.counters.rxPackets++;
      this.counters.rxBytes += pkt.length;
      handler(pkt);
    }
    this.#schedule();
    return n;
  }

  /** Drops queued packets and stops delivery. Idempotent; the peer's later writes are refused. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = null;
    this.#inbox = [];
    this.#held = null;
    if (this.#immediate !== null) {
      clearImmediate(this.#immediate);
      this.#immediate = null;
    }
  }
}

/**
 * Creates two connected memory TUN ends.
 *
 * @example
 * ```ts
 * const [a, b] = createMemoryTunPair({ lossRate: 0.02, reorderRate: 0.01, seed: 7 });
 * b.onPackets((pkt) => stack.input(now, pkt));
 * a.write(synPacket);
 * ```
 */
export function createMemoryTunPair(opts: MemoryTunOptions = {}): [MemoryTun, MemoryTun] {
  const rate = (v: number | undefined, what: string): number => {
    const r = v ?? 0;
    if (!(r >= 0 && r < 1)) throw new RangeError(`${what} must be in [0, 1), got ${r}`);
    return r;
  };
  const link: Link = {
    rng: mulberry32(opts.seed ?? 1),
    lossRate: rate(opts.lossRate, 'lossRate'),
    reorderRate: rate(opts.reorderRate, 'reorderRate'),
    queuePackets: opts.queuePackets ?? 500,
    maxBatch: opts.maxBatch ?? 64,
    autoFlush: opts.autoFlush ?? true,
  };
  const [nameA, nameB] = opts.names ?? ['mem0', 'mem1'];
  const mtu = opts.mtu ?? 1500;
  const a = new MemoryTun(nameA, mtu, link);
  const b = new MemoryTun(nameB, mtu, link);
  a.connect(b);
  b.connect(a);
  return [a, b];
}

/** A small seeded generator of floats in [0, 1) (mulberry32): reproducible, not cryptographic. */
function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
