/**
 * Network configuration of the TUN device through the `ip` command
 * (iproute2, or busybox `ip` on OpenWrt): move it to a namespace, set its
 * MTU, add its addresses, bring it up, route the intercepted CIDRs into it.
 * It records what it added, and `undo()` removes exactly that, so a router
 * that stops (SIGTERM included) leaves the host's routing as it found it.
 *
 *   planTunNetwork(plan) ─► IpStep[] (pure: argument lists and their inverses)
 *   TunNetconf.apply(plan) ─► execFile('ip', args) per step (no shell) ─► record
 *   TunNetconf.undo() ─► inverse steps, newest first, tolerant of "already gone"
 *
 * Why `ip` and not netlink from the addon: the addon stays tiny, the commands
 * are what an operator would type (and can read in the error), and both
 * iproute2 and busybox accept this subset.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { EdgeError } from '../errors.js';
import { checkTunName } from './linux.js';

/** What the device should look like. */
export interface TunNetworkPlan {
  /** Interface name (as the device reports it). */
  device: string;
  /**
   * Move the device into this existing network namespace first (`ip link set
   * dev D netns NS`); every later command then runs there (`ip -n NS …`,
   * iproute2 only). The device keeps working: its fd stays with the router.
   */
  netns?: string;
  /**
   * The device already lives in this namespace (an earlier apply moved it):
   * run every command there (`ip -n NS …`) without moving it again. Ignored
   * when `netns` is set.
   */
  netnsOnly?: string;
  /** Interface MTU in bytes. Absent: left as the kernel made it (1500). */
  mtu?: number;
  /** Addresses with prefix length, e.g. "100.64.0.1/10" (IPv4) or "fd00:7a::1/64"; the kernel adds the connected route. */
  addresses: readonly string[];
  /** Networks routed into the device, e.g. intercepted CIDRs "10.20.0.0/16". Host bits are cleared; duplicates and connected networks are skipped. */
  routes: readonly string[];
}

/** One `ip` invocation and the one that reverts it. */
export interface IpStep {
  /** What the step does, for records and messages. */
  readonly kind: 'netns' | 'mtu' | 'address' | 'up' | 'route';
  /** Arguments after `ip`. */
  readonly args: readonly string[];
  /** Arguments that remove what `args` added; null when there is nothing to remove (it goes with the device). */
  readonly undo: readonly string[] | null;
}

/** Runs `ip` with the given arguments; resolves with its stdout, rejects with EdgeError ERR_TUN (details.stderr). */
export type IpRunner = (args: readonly string[]) => Promise<string>;

/** stderr of an `ip` command whose target is already absent (undo is then done). */
const ALREADY_GONE = /No such process|Cannot find device|No such device|Address not found|Cannot assign requested address|does not exist/i;
/** stderr of an `ip ... add` whose object is already present. */
const ALREADY_THERE = /File exists|already assigned/i;

/**
 * Builds the steps that configure a device, in the order they must run:
 * namespace, MTU, addresses, link up (IPv4 routes need an up device), routes.
 * Pure: no I/O.
 *
 * @example
 * ```ts
 * planTunNetwork({ device: 'zt0', mtu: 1420, addresses: ['100.64.0.1/10'], routes: ['10.20.0.0/16'] })
 * // [ { kind: 'mtu', args: ['link','set','dev','zt0','mtu','1420'], undo: null },
 * //   { kind: 'address', args: ['addr','add','100.64.0.1/10','dev','zt0'], undo: ['addr','del','100.64.0.1/10','dev','zt0'] },
 * //   { kind: 'up', args: ['link','set','dev','zt0','up'], undo: null },
 * //   { kind: 'route', args: ['route','add','10.20.0.0/16','dev','zt0'], undo: ['route','del','10.20.0.0/16','dev','zt0'] } ]
 * ```
 * @throws EdgeError ERR_TUN for an invalid name, MTU, address or CIDR.
 */
export function planTunNetwork(plan: TunNetworkPlan): IpStep[] {
  const dev = plan.device;
  const bad = checkTunName(dev);
  if (bad !== null || dev.includes('%')) throw new EdgeError('ERR_TUN', `invalid device name "${dev}": ${bad ?? 'give the name the kernel chose'}`);
  const steps: IpStep[] = [];
  const netns = plan.netns ?? plan.netnsOnly;
  let ns: string[] = [];
  if (netns !== undefined) {
    // A file name under /run/netns, and never an option to ip.
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(netns)) throw new EdgeError('ERR_TUN', `invalid network namespace name "${netns}"`);
    if (plan.netns !== undefined) steps.push({ kind: 'netns', args: ['link', 'set', 'dev', dev, 'netns', netns], undo: null });
    ns = ['-n', netns];
  }
  if (plan.mtu !== undefined) {
    // RFC 791: every IPv4 host takes 68-byte datagrams; RFC 8200 §5: IPv6 needs 1280 (checked by the kernel when an IPv6 address is added).
    if (!Number.isInteger(plan.mtu) || plan.mtu < 68 || plan.mtu > 65535) throw new EdgeError('ERR_TUN', `invalid MTU ${plan.mtu}: 68 to 65535`);
    steps.push({ kind: 'mtu', args: [...ns, 'link', 'set', 'dev', dev, 'mtu', String(plan.mtu)], undo: null });
  }
  const connected = new Set<string>();
  for (const a of dedupe(plan.addresses)) {
    const p = parseCidr(a, 'address');
    connected.add(p.network);
    steps.push({ kind: 'address', args: [...ns, 'addr', 'add', a, 'dev', dev], undo: [...ns, 'addr', 'del', a, 'dev', dev] });
  }
  steps.push({ kind: 'up', args: [...ns, 'link', 'set', 'dev', dev, 'up'], undo: null });
  const routed = new Set<string>();
  for (const r of plan.routes) {
    const net = parseCidr(r, 'route').network;
    // The kernel already routes an address's own network (RFC 1122 §3.3.1.1: directly connected); adding it again fails with EEXIST.
    if (connected.has(net) || routed.has(net)) continue;
    routed.add(net);
    steps.push({ kind: 'route', args: [...ns, 'route', 'add', net, 'dev', dev], undo: [...ns, 'route', 'del', net, 'dev', dev] });
  }
  return steps;
}

function dedupe(list: readonly string[]): string[] {
  return [...new Set(list)];
}

/** Parses "ADDR/LEN" and returns its network in canonical text ("10.1.0.0/16"). */
export function parseCidr(text: string, what: string): { family: 4 | 6; network: string } {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(addr);
  const lenText = slash < 0 ? '' : text.slice(slash + 1);
  const max = family === 6 ? 128 : 32;
  if (family === 0 || addr.includes('%') || !/^[0-9]{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new EdgeError('ERR_TUN', `invalid ${what} "${text}": expected ADDRESS/LENGTH, e.g. ${what === 'address' ? '100.64.0.1/10' : '10.20.0.0/16'}`);
  }
  const len = Number(lenText);
  if (family === 4) {
    const value = addr.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
    const size = 2 ** (32 - len);
    const net = value - (value % size);
    return { family: 4, network: `${[24, 16, 8, 0].map((s) => Math.floor(net / 2 ** s) % 256).join('.')}/${len}` };
  }
  const words = expandIpv6(addr);
  let value = 0n;
  for (const w of words) value = (value << 16n) | BigInt(w);
  const hostBits = BigInt(128 - len);
  value = (value >> hostBits) << hostBits;
  const out: number[] = [];
  for (let i = 7; i >= 0; i--) out.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  return { family: 6, network: `${compressIpv6(out)}/${len}` };
}

/** Eight 16-bit words of a valid IPv6 address (an embedded IPv4 tail included). */
function expandIpv6(addr: string): number[] {
  let text = addr;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((w) => parseInt(w, 16));
}

/** RFC 5952 §4 text: lowercase, the longest run (≥ 2) of zero words as "::", leftmost on ties. */
function compressIpv6(words: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * An IpRunner over `execFile` (no shell: arguments are never parsed twice).
 * @param ipPath the `ip` binary; default "ip" from PATH (/sbin on OpenWrt).
 */
export function execIp(ipPath = 'ip', timeoutMs = 10_000): IpRunner {
  return (args) => new Promise((resolve, reject) => {
    execFile(ipPath, args as string[], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout);
        return;
      }
      const command = `${ipPath} ${args.join(' ')}`;
      const text = stderr.trim();
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? `the ip command was not found (install iproute2, or ip-full on OpenWrt)`
        : text !== '' ? text : err.message;
      reject(new EdgeError('ERR_TUN', `\`${command}\` failed: ${why}`, { cause: err, details: { command, stderr: text } }));
    });
  });
}

/** stderr of a failed runner call ('' when it carries none). */
function stderrOf(err: unknown): string {
  const details = (err as EdgeError).details;
  const text = details?.['stderr'];
  return typeof text === 'string' ? text : (err as Error).message ?? '';
}

/**
 * Applies a TunNetworkPlan and remembers what it added.
 *
 * Not re-entrant: await one apply/undo before the next.
 *
 * @example
 * ```ts
 * const net = new TunNetconf();
 * await net.apply({ device: dev.name, mtu: dev.mtu, addresses: ['100.64.0.1/10'], routes: ['10.20.0.0/16'] });
 * // … on shutdown (SIGTERM too):
 * await net.undo();
 * dev.close();
 * ```
 */
export class TunNetconf {
  readonly #run: IpRunner;
  /** Steps applied whose undo is still owed, oldest first. */
  #added: IpStep[] = [];

  constructor(opts: { run?: IpRunner; ipPath?: string } = {}) {
    this.#run = opts.run ?? execIp(opts.ipPath);
  }

  /** The steps applied by this object and not yet undone (oldest first). */
  get added(): readonly IpStep[] {
    return this.#added;
  }

  /**
   * Runs the plan's steps in order. An address already on the device is left
   * alone and not recorded (it is not ours to remove); an existing route is
   * accepted only if it already points into this device. On failure, what
   * this call added is undone before the error is thrown.
   * @throws EdgeError ERR_TUN naming the `ip` command and its stderr.
   */
  async apply(plan: TunNetworkPlan): Promise<void> {
    const steps = planTunNetwork(plan);
    const before = this.#added.length;
    try {
      for (const step of steps) {
        try {
          await this.#run(step.args);
        } catch (err) {
          if (!ALREADY_THERE.test(stderrOf(err))) throw err;
          if (step.kind === 'route') await this.#checkOwnRoute(step, plan.device, err);
          continue;
        }
        if (step.undo !== null) this.#added.push(step);
      }
    } catch (err) {
      await this.#undoFrom(before).catch(() => undefined);
      throw err;
    }
  }

  /** An existing route for the same network is fine only if it goes into our device. */
  async #checkOwnRoute(step: IpStep, device: string, cause: unknown): Promise<void> {
    // Route steps are [...ns, 'route', 'add', NET, 'dev', DEV].
    const n = step.args.length;
    const net = step.args[n - 3]!;
    const shown = await this.#run([...step.args.slice(0, n - 5), 'route', 'show', 'exact', net]);
    if (new RegExp(`\\bdev ${device.replace(/[.]/g, '\\.')}\\b`).test(shown)) return;
    throw new EdgeError('ERR_TUN', `a route for ${net} already exists and does not go into ${device} (${shown.trim()}): remove it or stop intercepting ${net}`, { cause });
  }

  /**
   * Removes what apply added, newest first. Things already gone (device
   * deleted, route removed by hand) count as removed. Idempotent: a second
   * call does nothing. Steps that fail otherwise stay recorded (a later
   * undo retries them) and the first such failure is thrown after every step
   * was tried.
   * @throws EdgeError ERR_TUN naming the `ip` command and its stderr.
   */
  async undo(): Promise<void> {
    await this.#undoFrom(0);
  }

  async #undoFrom(start: number): Promise<void> {
    const kept: IpStep[] = [];
    let first: unknown;
    for (let i = this.#added.length - 1; i >= start; i--) {
      const step = this.#added[i]!;
      try {
        await this.#run(step.undo!);
      } catch (err) {
        if (ALREADY_GONE.test(stderrOf(err))) continue;
        kept.unshift(step);
        first ??= err;
      }
    }
    this.#added = [...this.#added.slice(0, start), ...kept];
    if (first !== undefined) throw first;
  }
}
