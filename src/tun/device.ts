/**
 * The TUN device contract: the boundary between the kernel (or a test
 * harness) and the userspace IP stack. Raw IP packets come in through one
 * handler and go out through `write`; nothing here parses them.
 *
 *   kernel routes to the TUN ─► TunDevice.onPackets(handler) ─► stack input
 *   stack output ─► TunDevice.write(pkt) / writev(parts) ─► kernel delivers
 *
 * Implementations: linux.ts (the real device over the C addon) and
 * memory.ts (a connected pair for tests). The stack depends only on this
 * interface, so the same code runs against both.
 */

/**
 * Counters of one device, updated in place (read them at any time; never
 * reset). Data-path failures are counted here, never thrown.
 */
export interface TunCounters {
  /** Packets handed to the packet handler. */
  rxPackets: number;
  rxBytes: number;
  /** Packets read while no handler was set (dropped). */
  rxNoHandler: number;
  /** Read errors reported by the device (the reader stops after one). */
  rxErrors: number;
  /** Packets the device accepted. */
  txPackets: number;
  txBytes: number;
  /** Packets dropped because the device's queue was full (EAGAIN/ENOBUFS); retrying later may work. */
  txDropped: number;
  /** Packets refused for any other reason: device down (EIO), closed, malformed (EINVAL). */
  txErrors: number;
}

/** Creates a counters object with every field present (one hidden class). */
export function newTunCounters(): TunCounters {
  return { rxPackets: 0, rxBytes: 0, rxNoHandler: 0, rxErrors: 0, txPackets: 0, txBytes: 0, txDropped: 0, txErrors: 0 };
}

/**
 * Receives each packet read from the device.
 *
 * `pkt` is **owned** by the handler: a fresh buffer per packet, never reused
 * by the device, so it may be queued or kept (the stack's reassembly and
 * out-of-order queues rely on this). It holds exactly one IP packet,
 * preceded by a `vnetHdrBytes` virtio_net_hdr when the device was opened
 * with one.
 */
export type PacketHandler = (pkt: Buffer) => void;

/** Receives the error that stopped a device's reader (the device is then unusable for reading). */
export type DeviceErrorHandler = (err: Error) => void;

/**
 * A TUN device: a point-to-point IP interface whose far end is this process.
 *
 * Ordering and concurrency: the handler is called from the event loop, one
 * packet at a time, in the order the kernel queued them, and never from
 * inside `write`/`writev` (no re-entrancy). A device reads a bounded batch
 * per event-loop turn so other I/O keeps its turn.
 *
 * Writes are synchronous and never block or throw: a packet is accepted or
 * dropped and counted, like a NIC whose ring is full. TCP above recovers from
 * drops by retransmitting; nothing is queued in JavaScript.
 *
 * @example
 * ```ts
 * const dev = openLinuxTun({ name: 'zt0', mtu: 1420 });
 * dev.onPackets((pkt) => stack.input(now(), pkt));
 * if (!dev.write(reply)) metrics.tunFull++;   // already counted in dev.counters.txDropped
 * dev.close();
 * ```
 */
export interface TunDevice {
  /** Interface name the kernel gave (e.g. "zt0"; resolved if a "zt%d" pattern was asked). */
  readonly name: string;
  /** Largest IP packet (bytes) the device carries; the configured interface MTU. */
  readonly mtu: number;
  /** Bytes of virtio_net_hdr before each packet read and written (0: plain IP packets). */
  readonly vnetHdrBytes: number;
  /** Live counters (updated in place). */
  readonly counters: Readonly<TunCounters>;
  /** Whether close() has been called. */
  readonly closed: boolean;
  /**
   * Sets the packet handler, replacing any previous one; null stops delivery
   * (packets read meanwhile are counted in `rxNoHandler` and dropped).
   * The device starts reading when the first handler is set.
   */
  onPackets(handler: PacketHandler | null): void;
  /** Sets the handler called once if the reader fails (the device was deleted, its namespace went away). */
  onError(handler: DeviceErrorHandler | null): void;
  /**
   * Writes one packet. `pkt` is **borrowed**: the device is done with it when
   * this returns, so the caller may reuse the memory at once.
   * @returns true if the device took the packet; false if it was dropped
   *   (queue full: counted in `txDropped`; device down or closed, malformed:
   *   counted in `txErrors`).
   */
  write(pkt: Buffer): boolean;
  /**
   * Writes one packet gathered from `parts` in order (e.g. a header built in
   * scratch memory and a payload view), without joining them in JavaScript.
   * Parts are **borrowed** as in `write`; at most 16 parts.
   * @returns as `write`.
   */
  writev(parts: readonly Buffer[]): boolean;
  /** Stops reading and releases the device (the kernel removes a non-persistent TUN). Idempotent. */
  close(): void;
}
