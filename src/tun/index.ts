/**
 * The TUN device: the only door between the kernel's IP layer and ztedge's
 * userspace stack in tun interception mode. Import from here, not from the
 * files behind it.
 *
 * - device.ts: the TunDevice contract (ownership, ordering, counters).
 * - linux.ts: the real device over the @ztedge/tun addon (loaded lazily).
 * - memory.ts: a connected pair for tests and simulations (seeded loss, reordering).
 * - netconf.ts: addresses, MTU and routes through `ip`, undone on exit.
 */
export { newTunCounters, type DeviceErrorHandler, type PacketHandler, type TunCounters, type TunDevice } from './device.js';
export {
  VNET_HDR_BYTES, checkTunName, loadTunAddon, openLinuxTun,
  type LinuxTunOptions, type TunAddon, type TunAddonConstants,
} from './linux.js';
export { MemoryTun, createMemoryTunPair, type MemoryTunOptions } from './memory.js';
export { TunNetconf, execIp, planTunNetwork, type IpRunner, type IpStep, type TunNetworkPlan } from './netconf.js';
