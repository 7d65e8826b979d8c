/**
 * A circuit across a transit router: edge → hub → host over two real TLS
 * links, the hub splicing the two circuits with an in-memory pipe. Integrity,
 * flow control across the hop, refusals travelling back, and fast failure
 * when the far link dies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as tlsServer, type Server } from 'node:tls';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import { DEFAULT_LINK_SETTINGS, Link, parsePemBundle } from '../../src/link/index.js';
import { issueIdentity, issueListener, roundTrip, startEcho } from '../helpers/fabric.js';
import { CircuitError, LinkMux, type DialHandler } from '../../src/router/mux.js';
import { duplexPair } from '../../src/router/pipe.js';
import { CloseCode } from '../../src/wire/index.js';

const log = pino({ level: 'silent' });
let dir: string;
let pki: Pki;
let echo: NetServer;
let hub: Server;
let proxy: NetServer;
let hostLink: Link;
let edgeLink: Link;
let hubToHost: LinkMux | undefined;
const results: ({ code: number; reason: string } | undefined)[] = [];

const port = (s: NetServer | Server): number => (s.address() as { port: number }).port;

async function dialHub(id: string, onDial: DialHandler): Promise<{ link: Link; mux: LinkMux }> {
  const { key, certPem } = await issueIdentity(pki, id);
  const tls = tlsConnect({ host: '127.0.0.1', port: port(hub), ca: pki.caBundlePem, minVersion: 'TLSv1.3' });
  await once(tls, 'secureConnect');
  const link = new Link(tls, 'dialer', { id, key, certPem }, parsePemBundle(pki.caBundlePem), DEFAULT_LINK_SETTINGS, log);
  const mux = new LinkMux(link, 'dialer', onDial);
  await once(link, 'up');
  return { link, mux };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-transit-'));
  pki = await Pki.loadOrCreate(dir, ['127.0.0.1'], log);
  echo = await startEcho();

  // The hub: every link is a listener link; circuits from the edge are spliced to the host's link.
  hub = tlsServer({ ...(await issueListener(pki, 'hub')), minVersion: 'TLSv1.3' }, (socket) => {
    const link = new Link(socket, 'listener', { id: 'hub' }, parsePemBundle(pki.caBundlePem), DEFAULT_LINK_SETTINGS, log);
    const mux: LinkMux = new LinkMux(link, 'listener', (req, accept, refuse) => {
      if (hubToHost === undefined || !hubToHost.link.isUp) return refuse(CircuitError.NO_ROUTE, `no route to ${req.service}`);
      const [near, far] = duplexPair();
      hubToHost.dial(far, req, (err) => (err === undefined ? accept(near) : refuse(err.code, err.reason)));
    });
    link.once('up', (peer: string) => { if (peer === 'host') hubToHost = mux; });
  });
  hub.listen(0, '127.0.0.1');
  await once(hub, 'listening');

  const host = await dialHub('host', (req, accept, refuse) => {
    if (req.service !== 'echo') return refuse(CircuitError.DENIED, `host does not serve ${req.service}`);
    const s = netConnect(port(echo), '127.0.0.1');
    s.once('connect', () => accept(s));
    s.once('error', (e) => refuse(CircuitError.CONNECT_FAILED, e.message));
  });
  hostLink = host.link;
  const edge = await dialHub('edge', (_r, _a, refuse) => refuse(CircuitError.REFUSED, 'edge hosts nothing'));
  edgeLink = edge.link;
  while (hubToHost === undefined) await new Promise((r) => setTimeout(r, 10));

  proxy = netServer((s) => {
    s.on('error', () => undefined);
    const service = s.localPort === port(proxy) ? 'echo' : 'other';
    edge.mux.dial(s, { service, identity: 'id-7' }, (err) => results.push(err));
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
});

after(() => {
  // Links first: a TLS server's close() waits for its open connections.
  edgeLink?.close(CloseCode.SHUTDOWN, 'test over');
  hostLink?.close(CloseCode.SHUTDOWN, 'test over');
  for (const s of [proxy, hub, echo]) s?.close();
  rmSync(dir, { recursive: true, force: true });
});


test('16 MiB crosses edge → hub → host → echo and back intact', async () => {
  const data = randomBytes(16 << 20);
  const back = await roundTrip(port(proxy), data);
  assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

test('a stalled reader behind the transit hop does not slow another circuit', async () => {
  const stalled = netConnect(port(proxy), '127.0.0.1');
  stalled.on('error', () => undefined);
  stalled.pause();
  stalled.write(randomBytes(8 << 20));
  await new Promise((r) => setTimeout(r, 200));
  const start = Date.now();
  const data = randomBytes(2 << 20);
  assert.ok((await roundTrip(port(proxy), data, 10_000)).equals(data));
  assert.ok(Date.now() - start < 5000, `took ${Date.now() - start} ms`);
  stalled.destroy();
});

test('a refusal at the host travels back to the edge with its reason', async () => {
  const other = netServer((s) => proxy.emit('connection', s));
  other.listen(0, '127.0.0.1');
  await once(other, 'listening');
  const before = results.length;
  const s = netConnect(port(other), '127.0.0.1');
  await once(s, 'close');
  other.close();
  assert.equal(results[before]?.code, CircuitError.DENIED);
  assert.match(results[before]!.reason, /host does not serve other/);
});

test('when the hub–host link dies, the edge circuit fails fast and new dials get NO_ROUTE', async () => {
  const s = netConnect(port(proxy), '127.0.0.1');
  let error: NodeJS.ErrnoException | undefined;
  s.on('error', (err) => { error = err; });
  s.write('ping');
  await once(s, 'data');
  const start = Date.now();
  hostLink.close(CloseCode.SHUTDOWN, 'host going away');
  await new Promise((r) => s.once('close', r)); // not events.once: it rejects on the expected 'error'
  assert.ok(Date.now() - start < 1000, `closed after ${Date.now() - start} ms`);
  assert.equal(error?.code, 'ECONNRESET', 'a circuit cut short resets the client (truncation is visible)');
  await new Promise((r) => setTimeout(r, 50));
  const before = results.length;
  const s2 = netConnect(port(proxy), '127.0.0.1');
  s2.on('error', () => undefined);
  await once(s2, 'close');
  assert.equal(results[before]?.code, CircuitError.NO_ROUTE);
});
