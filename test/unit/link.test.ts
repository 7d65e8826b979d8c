/**
 * Links over real TLS 1.3 on 127.0.0.1: the handshake with an exporter-bound
 * proof, data frames both ways, and hostile peers (forged or replayed proofs,
 * frames before the handshake, malformed and oversized frames, silence).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import type { FileKeyStore } from '../../src/keys/index.js';
import { issueIdentity, issueListener } from '../helpers/fabric.js';
import { DEFAULT_LINK_SETTINGS, Link, parsePemBundle, type LinkSettings } from '../../src/link/index.js';
import { CloseCode, FrameDecoder, FrameType, HEADER_BYTES, decodeControl, encodeControl, encodeFrame, header } from '../../src/wire/index.js';

const log = pino({ level: 'silent' });
let dir: string;
let pki: Pki;
let otherPki: Pki;


/** A listener whose links are reported to `onLink`. */
async function listen(settings: Partial<LinkSettings> = {}, claimedId = 'hub'): Promise<{ server: Server; port: number; links: Link[] }> {
  const links: Link[] = [];
  const server = createServer({ ...(await issueListener(pki, 'hub')), minVersion: 'TLSv1.3' }, (socket) => {
    links.push(new Link(socket, 'listener', { id: claimedId }, parsePemBundle(pki.caBundlePem), { ...DEFAULT_LINK_SETTINGS, ...settings }, log));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port, links };
}

function tlsTo(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: pki.caBundlePem, minVersion: 'TLSv1.3' }, () => resolve(s));
    s.once('error', reject);
  });
}

async function dial(port: number, who: { key: FileKeyStore; certPem: string }, id: string, settings: Partial<LinkSettings> = {}): Promise<Link> {
  return new Link(await tlsTo(port), 'dialer', { id, key: who.key, certPem: who.certPem }, parsePemBundle(pki.caBundlePem), { ...DEFAULT_LINK_SETTINGS, ...settings }, log);
}

/** Reads frames from a raw socket (the hostile peer's view), until CLOSE or end. */
function closeFrameOf(socket: TLSSocket): Promise<{ code: number; reason: string } | undefined> {
  return new Promise((resolve) => {
    const d = new FrameDecoder();
    socket.on('data', (c: Buffer) => d.push(c, {
      onFrame(type, _f, _c, body) {
        if (type === FrameType.CLOSE) {
          const m = decodeControl(body);
          resolve({ code: Number(m?.code), reason: String(m?.reason) });
        }
      },
      onProtocolError() { resolve(undefined); },
    }));
    socket.on('close', () => resolve(undefined));
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-link-'));
  pki = await Pki.loadOrCreate(join(dir, 'a'), ['127.0.0.1'], log);
  otherPki = await Pki.loadOrCreate(join(dir, 'b'), ['127.0.0.1'], log);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('a dialer with an identity of the controller CA brings the link up; data flows both ways unchanged', async () => {
  const { server, port, links } = await listen();
  const edge = await issueIdentity(pki, 'edge-router-1');
  const d = await dial(port, edge, 'edge-router-1');
  const [peer] = await once(d, 'up') as [string];
  assert.equal(peer, 'hub');
  const l = links[0]!;
  if (!l.isUp) await once(l, 'up');
  assert.equal(l.peerId, 'edge-router-1', 'the listener knows the dialer by its certificate CN');
  const received: Buffer[] = [];
  l.circuitHandler = (type, _flags, circuitId, body) => {
    assert.equal(type, FrameType.DATA);
    assert.equal(circuitId, 5);
    received.push(Buffer.from(body));
  };
  const payload = Buffer.alloc(1 << 20);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
  for (let off = 0; off < payload.length; off += 16384) d.sendData(5, payload.subarray(off, off + 16384));
  const echo: Buffer[] = [];
  d.circuitHandler = (_t, _f, _c, body) => echo.push(Buffer.from(body));
  l.sendData(5, Buffer.from('reply'));
  const deadline = Date.now() + 5000;
  while ((Buffer.concat(received).length < payload.length || echo.length === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(Buffer.concat(received).equals(payload));
  assert.equal(Buffer.concat(echo).toString(), 'reply');
  d.close(CloseCode.NORMAL, 'test done');
  const [code, , byPeer] = await once(l, 'close') as [number, string, boolean];
  assert.equal(code, CloseCode.NORMAL);
  assert.equal(byPeer, true);
  server.close();
});

test('a certificate from another CA is refused with AUTH_FAILED', async () => {
  const { server, port, links } = await listen();
  const stranger = await issueIdentity(otherPki, 'intruder');
  const d = await dial(port, stranger, 'intruder');
  const [code, reason] = await once(d, 'close') as [number, string];
  assert.equal(code, CloseCode.AUTH_FAILED);
  assert.match(reason, /not issued by the controller CA/);
  assert.equal(links[0]!.isUp, false);
  server.close();
});

test('a listener that claims an id other than its certificate\'s is refused by the dialer (no router can pose as another)', async () => {
  const { server, port } = await listen({}, 'some-other-router');
  const edge = await issueIdentity(pki, 'edge-router-2');
  const d = await dial(port, edge, 'edge-router-2');
  const [code, reason] = await once(d, 'close') as [number, string];
  assert.equal(code, CloseCode.AUTH_FAILED);
  assert.match(reason, /claims id some-other-router but its certificate is for hub/);
  assert.equal(d.isUp, false);
  server.close();
});

test('a proof replayed from another connection is refused', async () => {
  const { server, port } = await listen();
  const edge = await issueIdentity(pki, 'edge-2');
  // Capture a genuine HELLO from connection 1.
  const s1 = await tlsTo(port);
  const { signExporterProof } = await import('../../src/keys/proof.js');
  const { X509Certificate } = await import('node:crypto');
  const proof = await signExporterProof(s1, edge.key);
  const hello = encodeFrame(FrameType.HELLO, 0, 0, encodeControl({ v: 1, id: 'edge-2', cert: new X509Certificate(edge.certPem.split(/(?<=END CERTIFICATE-----)/)[0]!).raw, proof }));
  s1.destroy();
  // Replay it on connection 2.
  const s2 = await tlsTo(port);
  const closed = closeFrameOf(s2);
  s2.write(hello);
  const c = await closed;
  assert.equal(c?.code, CloseCode.AUTH_FAILED);
  assert.match(c!.reason, /proof of possession/);
  s2.destroy();
  server.close();
});

test('hostile peers: frames before the handshake, malformed and oversized frames, silence', async () => {
  const { server, port } = await listen({ helloTimeoutMs: 300, maxBodyBytes: 4096 });
  const cases: [Buffer | undefined, number, RegExp][] = [
    [encodeFrame(FrameType.DATA, 0, 9, Buffer.from('sneaky')), CloseCode.AUTH_FAILED, /before the handshake/],
    [encodeFrame(FrameType.HELLO, 0, 0, Buffer.from([0xc1, 0xff])), CloseCode.MALFORMED_BODY, /malformed HELLO/],
    [encodeFrame(FrameType.HELLO, 0, 0, encodeControl({ v: 99, cert: Buffer.alloc(4), proof: Buffer.alloc(4) })), CloseCode.PROTOCOL_VERSION, /not supported/],
    [header(FrameType.DATA, 0, 1, 1 << 30), CloseCode.FRAME_TOO_LARGE, /exceeds/],
    [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), CloseCode.PROTOCOL_VERSION, /frame version/],
    [undefined, CloseCode.AUTH_FAILED, /no handshake/],
  ];
  for (const [bytes, code, reason] of cases) {
    const s = await tlsTo(port);
    const closed = closeFrameOf(s);
    if (bytes !== undefined) s.write(bytes);
    const c = await closed;
    assert.equal(c?.code, code, `${reason}`);
    assert.match(c!.reason, reason);
    s.destroy();
  }
  // The listener still serves good dialers afterwards.
  const d = await dial(port, await issueIdentity(pki, 'edge-3'), 'edge-3');
  await once(d, 'up');
  d.close(CloseCode.NORMAL, 'bye');
  server.close();
});

test('a peer that goes silent is declared dead after deadAfterMs', async () => {
  const { server, port, links } = await listen({ keepaliveMs: 50, deadAfterMs: 300 });
  const d = await dial(port, await issueIdentity(pki, 'edge-4'), 'edge-4', { keepaliveMs: 50, deadAfterMs: 300 });
  await once(d, 'up');
  const l = links[0]!;
  if (!l.isUp) await once(l, 'up');
  // Both sides exchange PINGs: the link stays up past deadAfterMs.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(l.isUp, true);
  assert.ok(d.rttMs >= 0);
  // The dialer stops reading and sending (a hung peer): the listener gives up.
  const start = Date.now();
  (d as unknown as { socket: TLSSocket }).socket.pause();
  (d as unknown as { timer: NodeJS.Timeout }).timer.unref();
  clearInterval((d as unknown as { timer: NodeJS.Timeout }).timer);
  const [code] = await once(l, 'close') as [number];
  assert.equal(code, CloseCode.KEEPALIVE_TIMEOUT);
  assert.ok(Date.now() - start < 2000);
  (d as unknown as { socket: TLSSocket }).socket.destroy();
  server.close();
});

test('a frame header is 12 bytes on the wire before every body', () => {
  assert.equal(HEADER_BYTES, 12);
});
