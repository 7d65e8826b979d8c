/**
 * Circuits over a real TLS link on loopback: a local proxy port on the edge
 * side, a TCP echo server behind the hub side. Integrity of large transfers,
 * many concurrent circuits, a stalled reader that must not slow the others,
 * refusals with reasons, and fast failure when the link dies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as tlsServer, type Server } from 'node:tls';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import { DEFAULT_LINK_SETTINGS, Link, parsePemBundle } from '../../src/link/index.js';
import { issueIdentity, issueListener, roundTrip, startEcho } from '../helpers/fabric.js';
import { CircuitError, LinkMux } from '../../src/router/mux.js';
import { CloseCode } from '../../src/wire/index.js';

const log = pino({ level: 'silent' });
let dir: string;
let echo: NetServer;
let hub: Server;
let proxy: NetServer;
let edgeLink: Link;
let hubMux: LinkMux;
let proxyPort: number;
const dialResults: ({ code: number; reason: string } | undefined)[] = [];

function listening(s: NetServer | Server): number {
  return (s.address() as { port: number }).port;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-mux-'));
  const pki = await Pki.loadOrCreate(dir, ['127.0.0.1'], log);
  const cas = parsePemBundle(pki.caBundlePem);

  echo = await startEcho();

  hub = tlsServer({ ...(await issueListener(pki, 'hub')), minVersion: 'TLSv1.3' }, (socket) => {
    const link = new Link(socket, 'listener', { id: 'hub' }, cas, DEFAULT_LINK_SETTINGS, log);
    hubMux = new LinkMux(link, 'listener', (req, accept, refuse) => {
      if (req.service !== 'echo') return refuse(CircuitError.DENIED, `service ${req.service} is not allowed for ${req.identity}`);
      const s = netConnect(listening(echo), '127.0.0.1');
      s.once('connect', () => accept(s));
      s.once('error', (err) => refuse(CircuitError.CONNECT_FAILED, err.message));
    });
  });
  hub.listen(0, '127.0.0.1');
  await once(hub, 'listening');

  const { key, certPem } = await issueIdentity(pki, 'edge-1');
  const tls = tlsConnect({ host: '127.0.0.1', port: listening(hub), ca: pki.caBundlePem, minVersion: 'TLSv1.3' });
  await once(tls, 'secureConnect');
  edgeLink = new Link(tls, 'dialer', { id: 'edge-1', key, certPem }, cas, DEFAULT_LINK_SETTINGS, log);
  const edgeMux = new LinkMux(edgeLink, 'dialer', (_r, _a, refuse) => refuse(CircuitError.REFUSED, 'edge hosts nothing'));
  await once(edgeLink, 'up');

  // The proxy port: service name in the first line is not needed; port → service "echo", or "secret" on a second server.
  proxy = netServer((s) => {
    const service = s.localPort === proxyPort ? 'echo' : 'secret';
    edgeMux.dial(s, { service, identity: 'id-1' }, (err) => dialResults.push(err));
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  proxyPort = listening(proxy);
});

after(async () => {
  edgeLink?.close(CloseCode.SHUTDOWN, 'test over');
  for (const s of [proxy, hub, echo]) s?.close();
  rmSync(dir, { recursive: true, force: true });
});



test('a 32 MiB transfer arrives intact (sha256) through proxy → link → echo and back', async () => {
  const data = randomBytes(32 << 20);
  const back = await roundTrip(proxyPort, data, 60_000);
  assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

test('200 concurrent circuits each get their own bytes back', async () => {
  const payloads = Array.from({ length: 200 }, (_, i) => Buffer.alloc(10_000, i & 0xff));
  const backs = await Promise.all(payloads.map((p) => roundTrip(proxyPort, p)));
  backs.forEach((b, i) => assert.ok(b.equals(payloads[i]!), `circuit ${i}`));
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(hubMux.openCircuits < 5, `circuits are cleaned up (${hubMux.openCircuits} left)`);
});

test('a stalled reader does not slow the other circuits', async () => {
  // Circuit A: writes 8 MiB and never reads its echo.
  const stalled = netConnect(proxyPort, '127.0.0.1');
  stalled.on('error', () => undefined);
  stalled.pause();
  stalled.write(randomBytes(8 << 20));
  await new Promise((r) => setTimeout(r, 200));
  const start = Date.now();
  const data = randomBytes(4 << 20);
  const back = await roundTrip(proxyPort, data, 10_000);
  assert.ok(back.equals(data));
  assert.ok(Date.now() - start < 5000, `the other circuit took ${Date.now() - start} ms`);
  stalled.destroy();
});

test('a refused dial closes the client with the reason reported', async () => {
  const secretProxy = netServer();
  // A second port on the same proxy handler maps to service "secret", which the hub refuses.
  secretProxy.on('connection', (s: Socket) => proxy.emit('connection', s));
  secretProxy.listen(0, '127.0.0.1');
  await once(secretProxy, 'listening');
  const before = dialResults.length;
  const s = netConnect(listening(secretProxy), '127.0.0.1');
  await once(s, 'close');
  secretProxy.close();
  const err = dialResults[before];
  assert.equal(err?.code, CircuitError.DENIED);
  assert.match(err!.reason, /service secret is not allowed for id-1/);
});

test('when the link dies, open circuits and pending dials fail at once', async () => {
  const s = netConnect(proxyPort, '127.0.0.1');
  s.write('hello');
  await once(s, 'data');
  const start = Date.now();
  // A transfer cut by a dead link is reset (RST), never ended like a complete one (FIN).
  const ending = new Promise<string>((resolve) => {
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    s.once('end', () => resolve('FIN'));
  });
  edgeLink.close(CloseCode.SHUTDOWN, 'hub going away');
  assert.equal(await ending, 'ECONNRESET');
  await once(s, 'close');
  assert.ok(Date.now() - start < 1000);
});
