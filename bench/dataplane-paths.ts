/**
 * The four paths of bench/dataplane.ts, each built the same way: a client
 * namespace where iperf3 and the Node clients run, and the servers (iperf3
 * and a TCP echo) behind the path under test.
 *
 *   veth:          client ns ──veth 10.201.0.0/24──▶ server ns
 *   wireguard-go:  client ns [wg 10.202.0.1] ══UDP over the veth══▶ [wg 10.202.0.2] server ns
 *   nebula:        client ns [peer 10.203.0.1] ══UDP over the veth══▶ [lighthouse 10.203.0.2] server ns
 *   ztedge:        client ns [TUN, DNS 100.64.0.2] ─▶ edge router ─TLS link─▶ host router ─▶ 127.0.0.1
 *                            (both routers in the root namespace, as real processes)
 *
 * wireguard-go and Nebula are brought up as in ../shared/BUILD-NOTES.md §8
 * (Debian packages, one daemon per namespace, defaults except Nebula's UDP
 * buffers, 8 MiB as measured there). ztedge runs `tunnel.mode: tun` with
 * `tunnel.tun.netns` naming the client namespace: the edge router creates
 * its TUN and moves it there, its own stack answers DNS at 100.64.0.2 and
 * terminates the client's TCP, and the host router dials the targets on
 * 127.0.0.1 (test/helpers/overlay.ts: a real controller and routers).
 *
 * Every set-up registers what it made with the caller's teardown list
 * before the next step can fail, so a half-built path is removed too.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, Overlay } from '../test/helpers/overlay.js';
import { ifName, Netns, startProcess, trackPath, vethPair, type NsProcess } from '../test/helpers/netns.js';

/** The ports the servers listen on in the server namespace (and the ports ztedge intercepts). */
export const IPERF_PORT = 5201;
export const ECHO_PORT = 7007;
const VETH_CLIENT = '10.201.0.1';
const VETH_SERVER = '10.201.0.2';
/** wg-quick's default MTU: 1500 minus the 80 bytes of IPv6 + UDP + WireGuard overhead. */
const WG_MTU = 1420;
const WG_PORT = 51820;
const NEBULA_PORT = 4242;
/** BUILD-NOTES §8: Nebula loses packets at the default 208 KiB socket buffers; 8 MiB is what it was measured with. */
const NEBULA_SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
/** The names ztedge's DNS hands out addresses for (intercept.v1) and the address it answers on. */
export const ZTEDGE_IPERF_NAME = 'iperf.ztedge.test';
export const ZTEDGE_ECHO_NAME = 'echo.ztedge.test';
const ZTEDGE_DNS = '100.64.0.2';
const READY_MS = 20_000;

/** One built path, ready to measure. */
export interface Topology {
  /** Where the clients run. */
  client: Netns;
  /** Where the client finds the iperf3 server and the echo server (an address or a name). */
  iperf: { host: string; port: number };
  echo: { host: string; port: number };
  /** The interface the client's traffic leaves by (for its MTU). */
  clientDev: string;
  /** The tunnel daemons whose RSS and CPU are reported (none for raw veth). */
  daemons: { name: string; pid: number }[];
  /** What a reader of the table should know about this path's set-up. */
  notes: string[];
  /** The overlay of the ztedge path, for reading router logs. */
  overlay?: Overlay;
}

/** What every set-up needs from the bench. */
export interface PathContext {
  /** A folder for keys and configs, removed by the bench. */
  tmp: string;
  /** The bundled bench/dataplane-peer.ts. */
  peerScript: string;
  /** Teardown steps, run in reverse order by the bench whatever happens. */
  teardown: (() => Promise<void>)[];
  /** The overlays started, so a hard stop (signal, time limit) can SIGKILL their processes. */
  overlays: Overlay[];
  log: (msg: string) => void;
  /** MTU of ztedge's TUN (undefined: the router's default). */
  tunMtu: number | undefined;
}

export type PathName = 'veth' | 'wireguard-go' | 'nebula' | 'ztedge';
export const PATH_NAMES: readonly PathName[] = ['veth', 'wireguard-go', 'nebula', 'ztedge'];

/** The programs each path needs, with the Debian package to install when one is missing. */
export const PATH_TOOLS: Record<PathName, [program: string, debianPackage: string][]> = {
  veth: [['iperf3', 'iperf3']],
  'wireguard-go': [['iperf3', 'iperf3'], ['wireguard-go', 'wireguard-go'], ['wg', 'wireguard-tools']],
  nebula: [['iperf3', 'iperf3'], ['nebula', 'nebula'], ['nebula-cert', 'nebula']],
  ztedge: [['iperf3', 'iperf3'], ['dig', 'bind9-dnsutils']],
};

export function setUpPath(name: PathName, ctx: PathContext): Promise<Topology> {
  switch (name) {
    case 'veth': return setUpVeth(ctx);
    case 'wireguard-go': return setUpWireguard(ctx);
    case 'nebula': return setUpNebula(ctx);
    case 'ztedge': return setUpZtedge(ctx);
  }
}

/** A namespace removed by the path's teardown. */
function namespace(ctx: PathContext, tag: string): Netns {
  const ns = Netns.create(tag);
  ctx.teardown.push(() => ns.remove());
  return ns;
}

/** A tracked process stopped by the path's teardown. */
function track(ctx: PathContext, p: NsProcess): NsProcess {
  ctx.teardown.push(() => p.stop());
  return p;
}

/** The echo server (bench/dataplane-peer.ts) in `ns` or, without one, in the root namespace; resolves to its port. */
async function startEcho(ctx: PathContext, ns: Netns | undefined, host: string, port: number): Promise<number> {
  const argv = [process.execPath, ctx.peerScript, 'echo', host, String(port)];
  const p = track(ctx, ns === undefined ? startProcess(argv) : ns.spawn(argv));
  const m = await p.waitFor(/\{"port":(\d+)\}/, READY_MS);
  return Number(m[1]);
}

/** iperf3 server (--forceflush: its "listening" line must not wait in a stdio buffer). */
async function startIperf(ctx: PathContext, ns: Netns | undefined, port: number, bind?: string): Promise<void> {
  const argv = ['iperf3', '-s', '-p', String(port), '--forceflush', ...(bind !== undefined ? ['-B', bind] : [])];
  const p = track(ctx, ns === undefined ? startProcess(argv) : ns.spawn(argv));
  await p.waitFor(/Server listening/, READY_MS);
}

/** Client and server namespaces joined by a veth pair, with both servers running in the server namespace. */
async function vethTopology(ctx: PathContext, tag: string): Promise<{ client: Netns; server: Netns; dev: string }> {
  const client = namespace(ctx, `${tag}c`);
  const server = namespace(ctx, `${tag}s`);
  const { a } = vethPair(client, `${VETH_CLIENT}/24`, server, `${VETH_SERVER}/24`);
  await startIperf(ctx, server, IPERF_PORT);
  await startEcho(ctx, server, '0.0.0.0', ECHO_PORT);
  return { client, server, dev: a };
}

/** Polls `ok` every 100 ms until it returns true; throws `what` after `ms`. */
async function until(what: string, ms: number, ok: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until `client` reaches `ip` through the tunnel (the first packets also set up the tunnel's session). */
function untilPing(client: Netns, ip: string): Promise<void> {
  return until(`ping ${ip} from ${client.name}`, READY_MS, async () => (await client.run(['ping', '-c', '1', '-W', '1', ip], { timeoutMs: 3000 })).code === 0);
}

async function setUpVeth(ctx: PathContext): Promise<Topology> {
  const { client, dev } = await vethTopology(ctx, 'veth');
  return { client, iperf: { host: VETH_SERVER, port: IPERF_PORT }, echo: { host: VETH_SERVER, port: ECHO_PORT }, clientDev: dev, daemons: [], notes: [] };
}

async function setUpWireguard(ctx: PathContext): Promise<Topology> {
  const { client, server } = await vethTopology(ctx, 'wg');
  const ends = [
    { ns: client, dev: ifName('wgc'), underlay: VETH_CLIENT, overlay: '10.202.0.1', role: 'wireguard-go client' },
    { ns: server, dev: ifName('wgs'), underlay: VETH_SERVER, overlay: '10.202.0.2', role: 'wireguard-go server' },
  ];
  const keys = ends.map((e) => {
    const priv = e.ns.execOk(['wg', 'genkey']).trim();
    const file = join(ctx.tmp, `${e.dev}.key`);
    writeFileSync(file, priv + '\n', { mode: 0o600 });
    return { file, pub: e.ns.execOk(['wg', 'pubkey'], { input: priv + '\n' }).trim() };
  });
  const daemons: Topology['daemons'] = [];
  for (const e of ends) {
    // The control socket is a global path; SIGKILL leaves it behind.
    trackPath(`/var/run/wireguard/${e.dev}.sock`);
    const p = track(ctx, e.ns.spawn(['wireguard-go', '-f', e.dev]));
    daemons.push({ name: e.role, pid: p.pid });
    await until(`wireguard-go ${e.dev} control socket`, READY_MS, () => {
      if (!p.running) throw new Error(`wireguard-go exited: ${p.tail()}`);
      return e.ns.exec(['wg', 'show', e.dev], { timeoutMs: 2000 }).code === 0;
    });
  }
  ends.forEach((e, i) => {
    const peer = ends[1 - i]!;
    e.ns.execOk(['wg', 'set', e.dev, 'listen-port', String(WG_PORT), 'private-key', keys[i]!.file,
      'peer', keys[1 - i]!.pub, 'endpoint', `${peer.underlay}:${WG_PORT}`, 'allowed-ips', `${peer.overlay}/32`]);
    e.ns.execOk(['ip', 'addr', 'add', `${e.overlay}/24`, 'dev', e.dev]);
    e.ns.execOk(['ip', 'link', 'set', e.dev, 'mtu', String(WG_MTU), 'up']);
  });
  await untilPing(client, ends[1]!.overlay);
  const far = ends[1]!.overlay;
  return {
    client, iperf: { host: far, port: IPERF_PORT }, echo: { host: far, port: ECHO_PORT }, clientDev: ends[0]!.dev, daemons,
    notes: [`wireguard-go: MTU ${WG_MTU} (wg-quick's default), one peer each way`],
  };
}

async function setUpNebula(ctx: PathContext): Promise<Topology> {
  const { client, server } = await vethTopology(ctx, 'neb');
  const dir = ctx.tmp;
  const ca = { crt: join(dir, 'nebula-ca.crt'), key: join(dir, 'nebula-ca.key') };
  client.execOk(['nebula-cert', 'ca', '-name', 'ztedge bench', '-duration', '24h', '-out-crt', ca.crt, '-out-key', ca.key]);
  const ends = [
    { ns: server, name: 'lighthouse', dev: ifName('nebs'), overlay: '10.203.0.2', role: 'nebula lighthouse (server)' },
    { ns: client, name: 'peer', dev: ifName('nebc'), overlay: '10.203.0.1', role: 'nebula peer (client)' },
  ];
  const lighthouse = ends[0]!;
  const daemons: Topology['daemons'] = [];
  for (const e of ends) {
    const crt = join(dir, `nebula-${e.name}.crt`);
    const key = join(dir, `nebula-${e.name}.key`);
    client.execOk(['nebula-cert', 'sign', '-ca-crt', ca.crt, '-ca-key', ca.key, '-name', e.name, '-ip', `${e.overlay}/24`, '-out-crt', crt, '-out-key', key]);
    const isLighthouse = e === lighthouse;
    const any = [{ port: 'any', proto: 'any', host: 'any' }];
    // YAML is a superset of JSON: the config is written as JSON.
    const config = {
      pki: { ca: ca.crt, cert: crt, key },
      static_host_map: { [lighthouse.overlay]: [`${VETH_SERVER}:${NEBULA_PORT}`] },
      lighthouse: { am_lighthouse: isLighthouse, interval: 60, hosts: isLighthouse ? [] : [lighthouse.overlay] },
      listen: { host: '0.0.0.0', port: NEBULA_PORT, read_buffer: NEBULA_SOCKET_BUFFER_BYTES, write_buffer: NEBULA_SOCKET_BUFFER_BYTES },
      punchy: { punch: false },
      tun: { disabled: false, dev: e.dev },
      logging: { level: 'info', format: 'text' },
      firewall: { outbound: any, inbound: any },
    };
    const file = join(dir, `nebula-${e.name}.yml`);
    writeFileSync(file, JSON.stringify(config, null, 1) + '\n');
    const p = track(ctx, e.ns.spawn(['nebula', '-config', file]));
    daemons.push({ name: e.role, pid: p.pid });
    await p.waitFor(/Nebula interface is active/, READY_MS);
  }
  await untilPing(client, lighthouse.overlay);
  const mtu = /mtu (\d+)/.exec(client.execOk(['ip', '-o', 'link', 'show', 'dev', ends[1]!.dev]))?.[1] ?? '?';
  return {
    client, iperf: { host: lighthouse.overlay, port: IPERF_PORT }, echo: { host: lighthouse.overlay, port: ECHO_PORT }, clientDev: ends[1]!.dev, daemons,
    notes: [`nebula: listen.read_buffer/write_buffer ${NEBULA_SOCKET_BUFFER_BYTES / 1024 / 1024} MiB (BUILD-NOTES §8), tun MTU ${mtu} (its default)`],
  };
}

/** The edge router's `tunnel:` block: tun mode, a device name unique to this run, moved into the client namespace. */
function tunYaml(dev: string, netns: string, mtu: number | undefined): string {
  return [
    'tunnel:',
    '  mode: tun',
    '  tun:',
    `    name: ${dev}`,
    `    netns: ${netns}`,
    `    dnsListen: ["${ZTEDGE_DNS}:53"]`,
    ...(mtu !== undefined ? [`    mtu: ${mtu}`] : []),
  ].join('\n');
}

/**
 * ztedge tun mode. Throws (with the router's own words) when the router refuses
 * the configuration, as it does while tun mode is not built.
 */
async function setUpZtedge(ctx: PathContext): Promise<Topology> {
  const client = namespace(ctx, 'ztc');
  const iperfPort = await freePort();
  await startIperf(ctx, undefined, iperfPort, '127.0.0.1');
  const echoPort = await startEcho(ctx, undefined, '127.0.0.1', 0);
  const o = await Overlay.start();
  ctx.overlays.push(o);
  ctx.teardown.push(() => o.stop());
  // Production keepalive; fast redial while setting up (as bench/link).
  const linkYaml = '{ reconnect: { initialMs: 100, maxMs: 1000 } }';
  const dev = ifName('tun');
  await o.addRouter({ name: 'host', listen: true, logLevel: 'info', linkYaml });
  try {
    await o.addRouter({ name: 'edge', links: ['host'], logLevel: 'info', linkYaml, extraYaml: tunYaml(dev, client.name, ctx.tunMtu) });
  } catch (err) {
    // The router's own words, without the temp folder of its config file.
    const stderr = (o.routers.get('edge')?.stderr ?? '').trim().split('\n').slice(-3).join(' ').replace(/\S*\/edge\.yml: /g, '');
    throw new Error(`the edge router did not start: ${stderr !== '' ? stderr : (err as Error).message}`);
  }
  const since = o.routers.get('host')!.logs.length;
  for (const [service, name, port, target] of [['dp-iperf', ZTEDGE_IPERF_NAME, IPERF_PORT, iperfPort], ['dp-echo', ZTEDGE_ECHO_NAME, ECHO_PORT, echoPort]] as const) {
    const id = await o.hostService(service, { protocol: 'tcp', address: '127.0.0.1', port: target }, 'host');
    await o.mgmt('POST', '/configs', {
      name: `${service}-intercept`, configTypeId: 'intercept.v1',
      data: { protocols: ['tcp'], addresses: [name], portRanges: [{ low: port, high: port }] },
    });
    // Config references may be names; hostService named the host.v1 config SERVICE-host.
    await o.mgmt('PATCH', `/services/${id}`, { configs: [`${service}-host`, `${service}-intercept`] });
    await o.allowDial(service, 'edge');
  }
  await o.waitHosted('host', 'dp-echo', true, since);
  client.setResolvConf([ZTEDGE_DNS]);
  await until(`DNS at ${ZTEDGE_DNS} answering ${ZTEDGE_ECHO_NAME} in ${client.name}`, READY_MS, async () => {
    const r = await client.run(['dig', '+short', '+time=1', '+tries=1', `@${ZTEDGE_DNS}`, ZTEDGE_ECHO_NAME, 'A'], { timeoutMs: 3000 });
    return /^\d+\.\d+\.\d+\.\d+$/m.test(r.stdout);
  });
  const pid = (name: string): number => o.routers.get(name)!.child!.pid!;
  const mtu = /mtu (\d+)/.exec(client.execOk(['ip', '-o', 'link', 'show', 'dev', dev]))?.[1] ?? '?';
  return {
    client, iperf: { host: ZTEDGE_IPERF_NAME, port: IPERF_PORT }, echo: { host: ZTEDGE_ECHO_NAME, port: ECHO_PORT }, clientDev: dev,
    daemons: [{ name: 'ztedge edge router (TUN)', pid: pid('edge') }, { name: 'ztedge host router', pid: pid('host') }],
    notes: [`ztedge: TUN MTU ${mtu}; clients use the services by name (resolv.conf → ${ZTEDGE_DNS}); targets on 127.0.0.1 in the root namespace; routers run with the production V8 flags`],
    overlay: o,
  };
}
