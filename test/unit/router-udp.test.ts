/**
 * UDP circuits and host.v1 forwarding through three routers in one process
 * (edge → hub → host over real TLS links on loopback, as router.test.ts):
 * a UDP echo server behind the host, a UDP proxy port on the edge, sessions
 * per client that idle out, the session cap, refused sessions held as
 * tombstones; and a raw test link into the hub that dials with a destination
 * (forwarded ports within allowedPortRanges, forwarded udp, DIAL protocol).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import { DEFAULT_LINK_SETTINGS, Link, parsePemBundle } from '../../src/link/index.js';
import { issueIdentity, issueListener, startEcho } from '../helpers/fabric.js';
import { policy, routerOptions as makeOptions, until } from '../helpers/routers.js';
import { RecordDecoder, recordHeader } from '../../src/router/datagram.js';
import { CircuitError, LinkMux, type DialRequest } from '../../src/router/mux.js';
import { duplexPair } from '../../src/router/pipe.js';
import { Router, type HostTarget, type RouterOptions } from '../../src/router/router.js';
import { CloseCode, FrameType, decodeControl } from '../../src/wire/index.js';

const log = pino({ level: 'silent' });
const IDLE_MS = 1500;
let dir: string;
let pki: Pki;
let tcpEcho: NetServer;
let udpEcho: DgramSocket;
/** Source ports the UDP echo server has seen, one per hosted circuit. */
const udpEchoPeers = new Set<number>();
let hub: Router;
let host: Router;
let edge: Router;
let capped: Router;
let tester: { link: Link; mux: LinkMux };
const clients: DgramSocket[] = [];

const portOf = (s: { address(): unknown }): number => (s.address() as { port: number }).port;

const routerOptions = (id: string, extra: Partial<RouterOptions>): Promise<RouterOptions> => makeOptions(pki, log, id, extra);

async function udpClient(): Promise<DgramSocket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  clients.push(s);
  return s;
}

/** Sends one datagram and resolves with the next one `client` receives (or rejects after `timeoutMs`). */
function exchange(client: DgramSocket, port: number, payload: Buffer, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: Buffer): void => { clearTimeout(timer); resolve(msg); };
    const timer = setTimeout(() => { client.off('message', onMessage); reject(new Error(`no reply to a ${payload.length}-byte datagram`)); }, timeoutMs);
    client.once('message', onMessage);
    client.send(payload, port, '127.0.0.1');
  });
}

/** Dials from the raw test link; resolves with the local end, or the refusal. */
function testerDial(req: Omit<DialRequest, 'identity'>): Promise<{ end: ReturnType<typeof duplexPair>[0] } | { code: number; reason: string }> {
  const [near, far] = duplexPair();
  near.on('error', () => undefined);
  return new Promise((resolve) => {
    tester.mux.dial(far, { ...req, identity: 'tester' }, (err) => resolve(err === undefined ? { end: near } : err));
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-router-udp-'));
  pki = await Pki.loadOrCreate(dir, ['127.0.0.1'], log);
  tcpEcho = await startEcho();
  udpEcho = createSocket('udp4');
  udpEcho.on('message', (msg, rinfo) => { udpEchoPeers.add(rinfo.port); udpEcho.send(msg, rinfo.port, rinfo.address); });
  await new Promise<void>((r) => udpEcho.bind(0, '127.0.0.1', r));
  const tcpPort = portOf(tcpEcho);

  const hosted: Record<string, HostTarget> = {
    'udp-echo': { protocol: 'udp', address: '127.0.0.1', port: portOf(udpEcho) },
    'udp-secret': { protocol: 'udp', address: '127.0.0.1', port: portOf(udpEcho) },
    fwd: { protocol: 'tcp', address: '127.0.0.1', forwardPort: true, allowedPortRanges: [{ low: tcpPort, high: tcpPort }] },
    'udp-fwd': { forwardProtocol: true, allowedProtocols: ['udp'], forwardAddress: true, allowedAddresses: ['127.0.0.0/8'], forwardPort: true, allowedPortRanges: [{ low: 1, high: 65535 }] },
  };
  const dialers = { 'udp-echo': ['edge', 'capped', 'tester'], 'udp-secret': ['someone-else'], fwd: ['tester'], 'udp-fwd': ['tester'] };

  hub = new Router(await routerOptions('hub', { listeners: [{ host: '127.0.0.1', port: 0 }], server: await issueListener(pki, 'hub') }));
  await hub.start();
  const hubPort = hub.boundPorts()[0]!;
  const links = [{ host: '127.0.0.1', port: hubPort }];
  host = new Router(await routerOptions('host', { links, policy: policy(hosted, dialers), udp: { idleMs: IDLE_MS } }));
  await host.start();
  edge = new Router(await routerOptions('edge', {
    links,
    proxy: [
      { service: 'udp-echo', host: '127.0.0.1', port: 0, protocol: 'udp' },
      { service: 'udp-secret', host: '127.0.0.1', port: 0, protocol: 'udp' },
    ],
    udp: { idleMs: IDLE_MS },
  }));
  await edge.start();
  capped = new Router(await routerOptions('capped', { links, proxy: [{ service: 'udp-echo', host: '127.0.0.1', port: 0, protocol: 'udp' }], udp: { maxSessions: 1 } }));
  await capped.start();

  const { key, certPem } = await issueIdentity(pki, 'tester');
  const tls = tlsConnect({ host: '127.0.0.1', port: hubPort, ca: pki.caBundlePem, minVersion: 'TLSv1.3' });
  await once(tls, 'secureConnect');
  const link = new Link(tls, 'dialer', { id: 'tester', key, certPem }, parsePemBundle(pki.caBundlePem), DEFAULT_LINK_SETTINGS, log);
  tester = { link, mux: new LinkMux(link, 'dialer', (_r, _a, refuse) => refuse(CircuitError.REFUSED, 'tester hosts nothing')) };
  await once(link, 'up');
  await until(() => ['udp-echo', 'udp-secret', 'fwd', 'udp-fwd'].every((s) => edge.routes.next(s) !== undefined && capped.routes.next(s) !== undefined && hub.routes.next(s) !== undefined));
});

after(async () => {
  for (const c of clients) c.close();
  tester?.link.close(CloseCode.SHUTDOWN, 'test over');
  await capped?.stop();
  await edge?.stop();
  await host?.stop();
  await hub?.stop();
  tcpEcho?.close();
  udpEcho?.close();
  rmSync(dir, { recursive: true, force: true });
  await new Promise((r) => setTimeout(r, 50));
  const udp = process.getActiveResourcesInfo().filter((r) => /udp/i.test(r));
  assert.deepEqual(udp, [], 'UDP sockets left open after stop');
});

test('200 datagrams of 1..1400 bytes from two clients cross edge → hub → host and come back intact, each to its own client', async () => {
  const [a, b] = [await udpClient(), await udpClient()];
  const port = edge.boundPorts()[0]!;
  const opened = edge.udpCounters.sessionsOpened;
  const run = async (client: DgramSocket, seed: number): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      const size = 1 + ((i * 397 + seed) % 1400);
      const payload = randomBytes(size);
      const back = await exchange(client, port, payload);
      assert.equal(back.length, size, `datagram ${i} of client ${seed}`);
      assert.ok(back.equals(payload), `datagram ${i} of client ${seed} came back altered`);
    }
  };
  await Promise.all([run(a, 0), run(b, 701)]);
  assert.equal(edge.udpCounters.sessionsOpened - opened, 2, 'one session per client');
  assert.ok(udpEchoPeers.size >= 2, 'the host opened one socket per circuit');
  assert.equal(edge.udpCounters.backlogDrops + host.udpCounters.backlogDrops, 0);
});

test('an empty datagram and a 60000-byte one come back as they were', async () => {
  const c = await udpClient();
  const port = edge.boundPorts()[0]!;
  assert.equal((await exchange(c, port, Buffer.alloc(0))).length, 0);
  const big = randomBytes(60_000);
  assert.ok((await exchange(c, port, big)).equals(big));
});

test('idle sessions end on both routers, and a later datagram opens a new one', async () => {
  const c = await udpClient();
  const port = edge.boundPorts()[0]!;
  assert.ok((await exchange(c, port, Buffer.from('before'))).equals(Buffer.from('before')));
  const timeouts = edge.udpCounters.idleTimeouts + host.udpCounters.idleTimeouts;
  assert.ok(edge.udpCircuitCount() >= 1 && host.udpCircuitCount() >= 1);
  await until(() => edge.udpCircuitCount() === 0 && host.udpCircuitCount() === 0, IDLE_MS * 4);
  assert.ok(edge.udpCounters.idleTimeouts + host.udpCounters.idleTimeouts > timeouts);
  const opened = edge.udpCounters.sessionsOpened;
  assert.ok((await exchange(c, port, Buffer.from('after'))).equals(Buffer.from('after')));
  assert.equal(edge.udpCounters.sessionsOpened, opened + 1);
});

test('a refused session holds: its datagrams are dropped and counted, with one dial only', async () => {
  const c = await udpClient();
  const port = edge.boundPorts()[1]!;
  const opened = edge.udpCounters.sessionsOpened;
  const dropped = edge.udpCounters.refusedDrops;
  // Knock until three datagrams have been dropped by the tombstone (well within its 1.5 s hold).
  for (let i = 0; i < 20 && edge.udpCounters.refusedDrops - dropped < 3; i++) {
    c.send(Buffer.from(`knock ${i}`), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 40));
  }
  assert.ok(edge.udpCounters.refusedDrops - dropped >= 3, `${edge.udpCounters.refusedDrops - dropped} dropped`);
  assert.equal(edge.udpCounters.sessionsOpened - opened, 1);
});

test('beyond maxSessions a new client\'s datagrams are dropped and counted', async () => {
  const [a, b] = [await udpClient(), await udpClient()];
  const port = capped.boundPorts()[0]!;
  assert.ok((await exchange(a, port, Buffer.from('first'))).equals(Buffer.from('first')));
  const drops = capped.udpCounters.sessionLimitDrops;
  await assert.rejects(exchange(b, port, Buffer.from('second'), 500), /no reply/);
  assert.equal(capped.udpCounters.sessionLimitDrops, drops + 1);
  assert.ok((await exchange(a, port, Buffer.from('still'))).equals(Buffer.from('still')));
});

test('a forwarded TCP port within allowedPortRanges connects; one outside is refused as DENIED with the reason', async () => {
  const ok = await testerDial({ service: 'fwd', dstPort: portOf(tcpEcho) });
  assert.ok('end' in ok, 'code' in ok ? `refused: ${ok.reason}` : '');
  ok.end.write('forwarded');
  const [echoed] = await once(ok.end, 'data') as [Buffer];
  assert.equal(echoed.toString(), 'forwarded');
  ok.end.destroy();

  const outside = portOf(tcpEcho) === 65535 ? 65534 : portOf(tcpEcho) + 1;
  const refused = await testerDial({ service: 'fwd', dstPort: outside });
  assert.ok('code' in refused);
  assert.equal(refused.code, CircuitError.DENIED);
  assert.match(refused.reason, new RegExp(`destination port ${outside} is outside the allowed port ranges of service fwd`));

  const none = await testerDial({ service: 'fwd' });
  assert.ok('code' in none);
  assert.equal(none.code, CircuitError.DENIED);
  assert.match(none.reason, /forwards the destination port, but the dial carried none/);
});

test('a raw peer dials forwarded udp: records in, records out', async () => {
  const r = await testerDial({ service: 'udp-fwd', protocol: 'udp', dstAddress: '127.0.0.1', dstPort: portOf(udpEcho) });
  assert.ok('end' in r, 'code' in r ? `refused: ${r.reason}` : '');
  const got: Buffer[] = [];
  const decoder = new RecordDecoder();
  r.end.on('data', (chunk: Buffer) => decoder.push(chunk, { onRecord: (p) => got.push(Buffer.from(p)) }));
  const sent = [Buffer.from('one'), randomBytes(1200), Buffer.from('three')];
  for (const d of sent) { r.end.write(recordHeader(d.length)); r.end.write(d); }
  await until(() => got.length === sent.length);
  // UDP may reorder in general; on loopback through one socket it does not.
  assert.deepEqual(got, sent);
  r.end.destroy();

  const tcp = await testerDial({ service: 'udp-fwd', dstAddress: '127.0.0.1', dstPort: portOf(udpEcho) });
  assert.ok('code' in tcp);
  assert.equal(tcp.code, CircuitError.DENIED);
  assert.match(tcp.reason, /protocol tcp is outside the allowed protocols of service udp-fwd \(udp\)/);
  const far = await testerDial({ service: 'udp-fwd', protocol: 'udp', dstAddress: '10.0.0.1', dstPort: 53 });
  assert.ok('code' in far);
  assert.match(far.reason, /destination address 10\.0\.0\.1 is outside the allowed addresses of service udp-fwd \(127\.0\.0\.0\/8\)/);
});

test('a udp service refuses a dial without a protocol (a peer that predates UDP), and DIAL with an unknown protocol is a protocol error', async () => {
  const old = await testerDial({ service: 'udp-echo' });
  assert.ok('code' in old);
  assert.equal(old.code, CircuitError.DENIED);
  assert.match(old.reason, /hosted as udp, but the dial asked for tcp/);

  // Hand-made DIAL on a fresh odd circuit id: the hub answers DIAL_FAIL PROTOCOL itself.
  const seen = tester.link.circuitHandler;
  const id = 10_001;
  const fail = new Promise<{ code?: unknown; reason?: unknown }>((resolve) => {
    tester.link.circuitHandler = (type, flags, circuitId, body) => {
      if (circuitId === id && type === FrameType.DIAL_FAIL) resolve(decodeControl(body) ?? {});
      else seen(type, flags, circuitId, body);
    };
  });
  tester.link.sendControl(FrameType.DIAL, id, { service: 'udp-echo', identity: 'tester', protocol: 'sctp', window: 65536 });
  const m = await fail;
  tester.link.circuitHandler = seen;
  assert.equal(m.code, CircuitError.PROTOCOL);
  assert.match(String(m.reason), /unknown circuit protocol/);
});
