/**
 * The real TUN device on Linux, over our C addon (src/native/tun.c, the
 * package `@ztedge/tun`). This is the only file that touches the TUN fd:
 * it turns the addon's return codes into counters and its open errors into
 * EdgeError('ERR_TUN') messages that name the cause and the fix.
 *
 *   kernel ─read(2)─► addon (uv_poll, ≤ maxBatch per wakeup) ─► #onRead ─► handler(pkt)
 *   write(pkt) ─► addon.write ─write(2)─► kernel      (EAGAIN → false, counted)
 *
 * The addon is loaded on first use, so routers in proxy mode (and hosts
 * without a compiler) never need it.
 */
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { EdgeError } from '../errors.js';
import { newTunCounters, type DeviceErrorHandler, type PacketHandler, type TunCounters, type TunDevice } from './device.js';

/** Constants exported by the addon (values from linux/if_tun.h). */
export interface TunAddonConstants {
  readonly IFF_TUN: number;
  readonly IFF_NO_PI: number;
  readonly IFF_VNET_HDR: number;
  readonly IFF_MULTI_QUEUE: number;
  readonly IFF_NAPI: number;
  readonly IFNAMSIZ: number;
  readonly TUN_F_CSUM: number;
  readonly TUN_F_TSO4: number;
  readonly TUN_F_TSO6: number;
  readonly TUN_F_TSO_ECN: number;
  readonly TUN_F_USO4: number;
  readonly TUN_F_USO6: number;
  readonly READ_BUF_BYTES: number;
  readonly MAX_WRITEV_PARTS: number;
}

/**
 * Typed view of the addon. Return codes: bytes written, or a negative errno.
 * `open`, `setOffload` and `setSndbuf` throw Node-style system errors
 * (`code`, `errno`, `syscall`).
 */
export interface TunAddon {
  /** TUNSETIFF with IFF_TUN | IFF_NO_PI | flags, then O_NONBLOCK. `name` may be "" or hold "%d". */
  open(name: string, flags: number): { fd: number; name: string };
  /** Calls cb(pkt) per packet (owned), at most maxBatch per wakeup; cb(null, -errno) once on a read error, then stops. */
  startReading(fd: number, cb: (pkt: Buffer | null, negErrno?: number) => void, maxBatch: number): void;
  stopReading(fd: number): boolean;
  write(fd: number, pkt: Buffer): number;
  /** One packet gathered from at most MAX_WRITEV_PARTS parts. */
  writev(fd: number, parts: readonly Buffer[]): number;
  close(fd: number): number;
  setOffload(fd: number, flags: number): void;
  setSndbuf(fd: number, bytes: number): void;
  /** glibc only: malloc_trim(0), giving freed heap pages back to the OS (src/router/memory.ts). Absent on other libcs. */
  mallocTrim?(): number;
  /** madvise(MADV_DONTNEED) on whole pages of a clean read-only file mapping: 0 or -errno (src/router/file-pages.ts). */
  unmapFilePages?(addr: number, length: number): number;
  readonly constants: TunAddonConstants;
}

/** Options of {@link openLinuxTun}. */
export interface LinuxTunOptions {
  /**
   * Interface name: 1–15 bytes of letters, digits, "_", "." or "-" (not
   * starting with "." or "-"), or a pattern with one "%d" the kernel numbers
   * (e.g. "zt%d"). Opening an existing persistent TUN of that name attaches to it.
   */
  name: string;
  /** The interface MTU the stack may send (bytes); netconf sets it on the interface. Default 1500. */
  mtu?: number;
  /** Prefix every packet with a 10-byte virtio_net_hdr (needed for offloads). Default false. */
  vnetHdr?: boolean;
  /** TUNSETOFFLOAD flags (TUN_F_*), with `vnetHdr` only: the kernel may then send unchecksummed and GSO packets. */
  offload?: number;
  /** TUNSETSNDBUF: bytes of written packets the kernel may hold before a write is dropped (kernel default: unbounded). */
  sndbufBytes?: number;
  /** Packets read per event-loop wakeup before yielding to other I/O. Default 64. */
  maxBatch?: number;
  /** Load the addon from this .node file instead of the `@ztedge/tun` package (custom builds, tests). */
  addonPath?: string;
  /** Use this addon object as is (tests substitute a fake kernel); wins over `addonPath`. */
  addon?: TunAddon;
}

/** Bytes of struct virtio_net_hdr (linux/virtio_net.h) without the num_buffers field. */
export const VNET_HDR_BYTES = 10;
const DEFAULT_MTU = 1500;
const DEFAULT_MAX_BATCH = 64;

const E = osConstants.errno;
/** Write failures that mean "queue full, try later": dropped, not an error of the device. */
const QUEUE_FULL = new Set([-E.EAGAIN, -E.EWOULDBLOCK, -E.ENOBUFS, -E.ENOMEM]);

const addons = new Map<string, TunAddon>();

/**
 * Loads the addon once per path (default: the `@ztedge/tun` package, found in
 * node_modules beside the sources or the bundle).
 * @throws EdgeError ERR_TUN when it is missing or was not built.
 */
export function loadTunAddon(addonPath?: string): TunAddon {
  const key = addonPath ?? '@ztedge/tun';
  const cached = addons.get(key);
  if (cached !== undefined) return cached;
  let addon: TunAddon;
  try {
    addon = createRequire(requireBase())(key) as TunAddon;
  } catch (err) {
    throw new EdgeError('ERR_TUN', `the TUN addon (${key}) cannot be loaded: ${(err as Error).message.split('\n')[0]}. `
      + 'It is built by `npm install` (run `npm rebuild @ztedge/tun`; it needs python3, make, a C compiler and the Node headers); '
      + 'without it, use tunnel.mode: proxy', { cause: err });
  }
  addons.set(key, addon);
  return addon;
}

/** A path to resolve packages from, in the ESM sources (tsx) and the CJS bundle alike. */
function requireBase(): string {
  return typeof __filename === 'string' ? __filename : process.argv[1] ?? `${process.cwd()}/`;
}

/**
 * Whether `name` is a name TUNSETIFF accepts: what the kernel's
 * dev_valid_name takes, minus characters that need quoting in `ip` commands.
 */
export function checkTunName(name: string, maxBytes = 15): string | null {
  if (Buffer.byteLength(name) > maxBytes) return `it is longer than ${maxBytes} bytes`;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.%-]*$/.test(name)) return 'use letters, digits, "_", "." or "-", not starting with "." or "-"';
  const percent = name.split('%').length - 1;
  if (percent > 1 || (percent === 1 && !name.includes('%d'))) return 'a "%" may only appear once, as "%d"';
  return null;
}

/**
 * Opens (creates) a TUN device. It disappears when closed (unless it was made
 * persistent beforehand with `ip tuntap add`). The device has no address and
 * is down until configured (see TunNetconf).
 *
 * @example
 * ```ts
 * const dev = openLinuxTun({ name: 'zt0', mtu: 1420 });
 * dev.onPackets((pkt) => stack.input(now(), pkt));
 * ```
 * @throws EdgeError ERR_TUN: addon missing, /dev/net/tun missing, no
 *   CAP_NET_ADMIN, name in use or invalid, offloads refused.
 */
export function openLinuxTun(opts: LinuxTunOptions): TunDevice {
  const problem = checkTunName(opts.name);
  if (problem !== null) throw new EdgeError('ERR_TUN', `invalid TUN device name "${opts.name}": ${problem}`);
  const mtu = opts.mtu ?? DEFAULT_MTU;
  const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new EdgeError('ERR_TUN', `invalid TUN MTU ${mtu}: 68 to 65535 (RFC 791 minimum 68)`);
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new EdgeError('ERR_TUN', `invalid maxBatch ${maxBatch}`);
  if (opts.offload !== undefined && opts.offload !== 0 && opts.vnetHdr !== true) {
    throw new EdgeError('ERR_TUN', 'TUN offloads need vnetHdr: true (the kernel describes GSO packets in the virtio_net_hdr)');
  }
  const addon = opts.addon ?? loadTunAddon(opts.addonPath);
  const c = addon.constants;
  let opened: { fd: number; name: string };
  try {
    opened = addon.open(opts.name, opts.vnetHdr === true ? c.IFF_VNET_HDR : 0);
  } catch (err) {
    throw openError(opts.name, err);
  }
  try {
    if (opts.offload !== undefined && opts.offload !== 0) addon.setOffload(opened.fd, opts.offload);
    if (opts.sndbufBytes !== undefined) addon.setSndbuf(opened.fd, opts.sndbufBytes);
  } catch (err) {
    addon.close(opened.fd);
    throw new EdgeError('ERR_TUN', `TUN device ${opened.name}: ${(err as Error).message}`, { cause: err });
  }
  return new LinuxTun(addon, opened.fd, opened.name, mtu, opts.vnetHdr === true ? VNET_HDR_BYTES : 0, maxBatch);
}

/** Explains a failed open: what went wrong and what the operator can do. */
function openError(name: string, err: unknown): EdgeError {
  const code = (err as NodeJS.ErrnoException).code;
  const detail = (err as Error).message;
  let why: string;
  switch (code) {
    case 'ENOENT':
    case 'ENODEV':
    case 'ENXIO':
      why = '/dev/net/tun is missing: load the tun kernel module (modprobe tun; on OpenWrt install kmod-tun), or in a container pass the device (--device /dev/net/tun)';
      break;
    case 'EPERM':
    case 'EACCES':
      why = 'permission denied: creating a TUN device needs CAP_NET_ADMIN (run as root, or set AmbientCapabilities=CAP_NET_ADMIN in the systemd unit)';
      break;
    case 'EBUSY':
      why = `the name is in use by another TUN (is another router running?): stop it or choose another tunnel.tun.name`;
      break;
    case 'EINVAL':
      why = 'an interface of that name exists and is not a TUN device, or the kernel refused the flags: choose another tunnel.tun.name';
      break;
    default:
      why = 'the kernel refused it';
  }
  return new EdgeError('ERR_TUN', `cannot open TUN device "${name}": ${why} (${detail})`, { cause: err, details: { syscallCode: code } });
}

/** The TunDevice over one addon fd. Shapes are fixed in the constructor; the read callback is bound once. */
class LinuxTun implements TunDevice {
  readonly counters: TunCounters = newTunCounters();
  #closed = false;
  #handler: PacketHandler | null = null;
  #onError: DeviceErrorHandler | null = null;
  #reading = false;
  readonly #onRead: (pkt: Buffer | null, negErrno?: number) => void;

  constructor(
    readonly addon: TunAddon,
    readonly fd: number,
    readonly name: string,
    readonly mtu: number,
    readonly vnetHdrBytes: number,
    readonly maxBatch: number,
  ) {
    this.#onRead = (pkt, negErrno) => this.#read(pkt, negErrno ?? 0);
  }

  onPackets(handler: PacketHandler | null): void {
    this.#handler = handler;
    if (handler !== null && !this.#reading && !this.#closed) {
      this.addon.startReading(this.fd, this.#onRead, this.maxBatch);
      this.#reading = true;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  onError(handler: DeviceErrorHandler | null): void {
    this.#onError = handler;
  }

  #read(pkt: Buffer | null, negErrno: number): void {
    if (pkt === null) {
      // The addon has already stopped this reader; a dead fd must not spin the loop.
      this.#reading = false;
      this.counters.rxErrors++;
      const err = new EdgeError('ERR_TUN', `reading TUN device ${this.name} failed: ${errnoName(negErrno)} (was the device deleted?)`);
      this.#onError?.(err);
      return;
    }
    const handler = this.#handler;
    if (handler === null) {
      this.counters.rxNoHandler++;
      return;
    }
    this.counters.rxPackets++;
    this.counters.rxBytes += pkt.length;
    handler(pkt);
  }

  write(pkt: Buffer): boolean {
    if (this.#closed) return this.#refused(-E.EBADF);
    const n = this.addon.write(this.fd, pkt);
    return n >= 0 ? this.#sent(n) : this.#refused(n);
  }

  writev(parts: readonly Buffer[]): boolean {
    if (this.#closed) return this.#refused(-E.EBADF);
    const n = this.addon.writev(this.fd, parts);
    return n >= 0 ? this.#sent(n) : this.#refused(n);
  }

  #sent(bytes: number): true {
    this.counters.txPackets++;
    this.counters.txBytes += bytes;
    return true;
  }

  #refused(negErrno: number): false {
    if (QUEUE_FULL.has(negErrno)) this.counters.txDropped++;
    else this.counters.txErrors++;
    return false;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reading = false;
    this.#handler = null;
    // The addon stops the poll handle before closing the fd.
    this.addon.close(this.fd);
  }
}

/** Linux EBADFD: what reads of a TUN return once the device was deleted (libuv has no name for it). */
const EBADFD = 77;

/** "EAGAIN"-style name of a negative errno. */
function errnoName(negErrno: number): string {
  if (negErrno === -EBADFD) return 'EBADFD';
  const name = getSystemErrorName(negErrno);
  return name.startsWith('Unknown') ? `errno ${-negErrno}` : name;
}
