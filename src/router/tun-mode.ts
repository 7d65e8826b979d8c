/**
 * `tunnel.mode: tun` set-up and teardown: opens the TUN, configures it
 * through `ip` (address from dnsRange, MTU, routes for intercepted IPs and
 * CIDRs, optionally in another network namespace), starts the DNS service
 * and the packet shell (tun-intercept.ts), feeds both the intercepts of the
 * services this router may Dial on every policy update, and undoes every
 * `ip` change on stop (SIGTERM included).
 *
 * Addresses inside dnsRange that the router itself uses:
 *   network + 1   the TUN's own address (source of ICMP errors)
 *   dnsListen entries inside dnsRange (default 100.64.0.2:53): answered by the
 *                 stack on the TUN, no socket bound on the host
 * dnsListen entries outside dnsRange are sockets (DnsService's listener).
 */
import { parseHostPort, parseIpv4Cidr, formatIpv4 } from '../config/address.js';
import type { TunConfig } from '../config/index.js';
import { DnsService, type InterceptSpec } from '../dns/index.js';
import { EdgeError } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { SnapshotPolicyView } from '../policy/snapshot.js';
import { openLinuxTun, TunNetconf, type TunDevice } from '../tun/index.js';
import { InterceptTable } from './intercepts.js';
import { parseIpv4Address } from '../wire/index.js';
import { TunIntercept, type LocalDialer } from './tun-intercept.js';

export interface TunModeOptions {
  config: TunConfig;
  /** This router's identity id (circuits are dialed on its behalf). */
  routerId: string;
  dial: LocalDialer;
  log: Logger;
  /** The policy at start, if any: its intercepted networks are routed in the first `ip` set-up. */
  initialView?: SnapshotPolicyView;
  /** Tests: a device to use instead of opening /dev/net/tun (then no `ip` commands run). */
  device?: TunDevice;
}

/** TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 (linux/if_tun.h). */
const TUN_OFFLOAD_FLAGS = 0x01 | 0x02 | 0x04;
/** Payload of one TSO write: 64 KiB minus the IPv4 and TCP headers (and room for options). */
const TSO_MAX_BYTES = 65_535 - 20 - 60;

export class TunMode {
  readonly shell: TunIntercept;
  readonly dns: DnsService;
  private readonly device: TunDevice;
  private readonly netconf: TunNetconf | undefined;
  private readonly routed = new Set<string>();
  private readonly log: Logger;
  private stopped = false;

  private constructor(private readonly opts: TunModeOptions, device: TunDevice, netconf: TunNetconf | undefined, dns: DnsService, shell: TunIntercept) {
    this.device = device;
    this.netconf = netconf;
    this.dns = dns;
    this.shell = shell;
    this.log = opts.log.child({ subsys: 'tun-mode', dev: device.name });
  }

  /** Opens and configures the device, binds DNS sockets, and starts reading packets. */
  static async start(opts: TunModeOptions): Promise<TunMode> {
    const cfg = opts.config;
    const range = parseIpv4Cidr(cfg.dnsRange);
    if (!range.ok) throw new EdgeError('ERR_CONFIG', `tunnel.tun.dnsRange: ${range.reason}`);
    const { network, prefixLength, size } = range.value;
    if (size < 8) throw new EdgeError('ERR_CONFIG', `tunnel.tun.dnsRange ${cfg.dnsRange} is too small: give at least a /29`);
    const tunAddress = network + 1;
    const inStack: { ip: number; port: number }[] = [];
    const sockets: string[] = [];
    for (const text of cfg.dnsListen) {
      const hp = parseHostPort(text);
      if (!hp.ok) throw new EdgeError('ERR_CONFIG', `tunnel.tun.dnsListen "${text}": ${hp.reason}`);
      const ip = hp.value.family === 4 ? parseIpv4Address(hp.value.host) : undefined;
      if (ip !== undefined && ip >= network && ip < network + size) inStack.push({ ip, port: hp.value.port });
      else sockets.push(text);
    }
    const dns = new DnsService({ listen: sockets, upstream: cfg.upstream, range: cfg.dnsRange, reserved: [tunAddress, ...inStack.map((d) => d.ip)], log: opts.log });
    const initialRoutes = opts.initialView === undefined ? [] : new InterceptTable(interceptEntries(opts.initialView, opts.routerId)).routes().map((r) => r.cidr);
    let device = opts.device;
    let netconf: TunNetconf | undefined;
    if (device === undefined) {
      // Offload (BUILD-NOTES §4): the kernel hands over TCP super-segments of up to 64 KB in one read
      // and leaves their checksums to us (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), so a read carries
      // ~40× the bytes of an MTU-sized packet.
      device = openLinuxTun({ name: cfg.name, mtu: cfg.mtu, vnetHdr: cfg.offload, offload: cfg.offload ? TUN_OFFLOAD_FLAGS : 0 });
      netconf = new TunNetconf();
      try {
        await netconf.apply({ device: device.name, netns: cfg.netns, mtu: cfg.mtu, addresses: [`${formatIpv4(tunAddress)}/${prefixLength}`], routes: initialRoutes });
      } catch (err) {
        device.close();
        throw err;
      }
    }
    const shell = new TunIntercept({
      device, identity: opts.routerId, dial: opts.dial, dns, dnsAddresses: inStack, tunAddress,
      // With offload the kernel takes 64 KB super-segments and cuts them to the device's MSS.
      tcp: { mssBytes: cfg.mtu - 40, tsoMaxBytes: device.vnetHdrBytes > 0 ? TSO_MAX_BYTES : 0 }, maxTcpFlows: cfg.maxTcpFlows, maxUdpFlows: cfg.maxUdpFlows, udpIdleMs: cfg.udpIdleSeconds * 1000, log: opts.log,
    });
    const mode = new TunMode(opts, device, netconf, dns, shell);
    for (const c of initialRoutes) mode.routed.add(c);
    try {
      await dns.start();
    } catch (err) {
      await mode.stop();
      throw err;
    }
    shell.start();
    // The device deleted under us (`ip link del`), or the fd failed: traffic stops; say so once, loudly.
    device.onError((err) => mode.log.error({ err }, 'TUN device failed: interception stopped; restart the router'));
    mode.log.info({ address: `${formatIpv4(tunAddress)}/${prefixLength}`, dns: cfg.dnsListen, netns: cfg.netns, mtu: cfg.mtu }, 'tun interception started');
    return mode;
  }

  /** Policy update: intercept the services this router may Dial, route their IPs and CIDRs into the TUN. */
  async update(view: SnapshotPolicyView | undefined): Promise<void> {
    if (this.stopped) return;
    const entries = view === undefined ? [] : interceptEntries(view, this.opts.routerId);
    const table = new InterceptTable(entries);
    this.dns.setIntercepts(entries);
    this.shell.setIntercepts(table);
    // Routes are added as services appear; one no longer intercepted stays routed (its packets find no
    // service and are refused) until the router stops, so a policy flap never races route changes.
    const fresh = table.routes().map((r) => r.cidr).filter((c) => !this.routed.has(c));
    if (fresh.length === 0 || this.netconf === undefined) return;
    for (const c of fresh) this.routed.add(c);
    try {
      await this.netconf.apply({ device: this.device.name, netns: undefined, addresses: [], routes: fresh, ...this.nsOnly() });
    } catch (err) {
      for (const c of fresh) this.routed.delete(c);
      this.log.error({ err, routes: fresh }, 'cannot route intercepted networks into the TUN');
    }
  }

  /** Resets open flows, stops DNS, removes every address and route it added, and closes the device. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.shell.stop();
    await this.dns.stop().catch((err: unknown) => this.log.warn({ err }, 'DNS stop failed'));
    if (this.netconf !== undefined) await this.netconf.undo().catch((err: unknown) => this.log.error({ err }, 'could not undo every TUN network change'));
    this.device.close();
  }

  /** Later applies run inside the namespace the device was moved to, without moving it again. */
  private nsOnly(): { netnsOnly?: string } {
    return this.opts.config.netns === undefined ? {} : { netnsOnly: this.opts.config.netns };
  }
}

/**
 * The intercept.v1 data of the services this router's identity may Dial and
 * that may use this router (a service edge router policy), sorted by name.
 */
export function interceptEntries(view: SnapshotPolicyView, routerId: string): InterceptSpec[] {
  const out: InterceptSpec[] = [];
  for (const svc of view.snapshot.services) {
    const i = svc.intercept;
    if (i === undefined) continue;
    if (!view.mayDial(routerId, svc.name).allow) continue;
    if (!view.mayIntercept(svc.name).allow) continue;
    out.push({ service: svc.name, protocols: i.protocols, addresses: i.addresses, portRanges: i.portRanges });
  }
  return out;
}
