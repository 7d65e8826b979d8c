/**
 * Exporter-bound proof of possession (src/keys/proof.ts) over real TLS 1.3
 * on 127.0.0.1: the client signs the connection's exported keying material
 * with a FileKeyStore key and sends {certificate, signature}; the server
 * checks it against its own side of the connection. Replayed, foreign and
 * malformed signatures must be refused, and refused without throwing.
 *
 * Message from client to server (all lengths u32 big-endian):
 *
 *   +-----------+----------------+----------+----------------+
 *   | cert len  | cert (DER)     | sig len  | signature      |
 *   +-----------+----------------+----------+----------------+
 *
 * The server answers "ok" or "fail" and ends the connection.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { FileKeyStore, type KeyAlgorithm, type KeyStore, x509 } from '../../src/keys/index.js';
import { EXPORTER_LABEL, EXPORTER_LENGTH, exportedKeyingMaterial, proofMessage, signExporterProof, verifyExporterProof } from '../../src/keys/proof.js';

const SIGN = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

/** What the server saw on one connection, keyed by the client's port. */
interface ServerSide {
  ekm: Buffer;
  verified: boolean;
  /** verifyExporterProof threw instead of answering false. */
  threw: unknown;
}

let dir: string;
let ca: { keys: CryptoKeyPair; cert: x509.X509Certificate };
let server: Server;
let port: number;
const seen = new Map<number, ServerSide>();
const serverSockets = new Set<TLSSocket>();

async function ecKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
}

/** A leaf certificate for `spki` (DER SubjectPublicKeyInfo), issued by the test CA. */
async function issue(subject: string, spki: BufferSource, server: boolean): Promise<x509.X509Certificate> {
  const now = Date.now();
  return x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    issuer: ca.cert.subject,
    subject,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DAY_MS),
    publicKey: spki,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(server ? [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }, { type: 'dns', value: 'localhost' }])] : []),
    ],
  });
}

/** Reads one client message: two u32-length-prefixed fields. */
function readMessage(socket: TLSSocket): Promise<{ certDer: Buffer; signature: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      const all = Buffer.concat(chunks, have);
      if (all.length < 4) return;
      const certLen = all.readUInt32BE(0);
      if (all.length < 8 + certLen) return;
      const sigLen = all.readUInt32BE(4 + certLen);
      if (all.length < 8 + certLen + sigLen) return;
      socket.off('data', onData);
      resolve({ certDer: all.subarray(4, 4 + certLen), signature: all.subarray(8 + certLen, 8 + certLen + sigLen) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('end', () => reject(new Error('client ended before its message was complete')));
  });
}

function frame(certDer: Buffer, signature: Buffer): Buffer {
  const out = Buffer.alloc(8 + certDer.length + signature.length);
  out.writeUInt32BE(certDer.length, 0);
  certDer.copy(out, 4);
  out.writeUInt32BE(signature.length, 4 + certDer.length);
  signature.copy(out, 8 + certDer.length);
  return out;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-proof-'));
  const caKeys = await ecKeys();
  const now = Date.now();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=ztedge proof test CA',
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DAY_MS),
    keys: caKeys,
    signingAlgorithm: SIGN,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  ca = { keys: caKeys, cert: caCert };
  const serverKeys = await ecKeys();
  const serverCert = await issue('CN=127.0.0.1', await webcrypto.subtle.exportKey('spki', serverKeys.publicKey), true);

  server = createServer({ key: await pkcs8Pem(serverKeys.privateKey), cert: serverCert.toString('pem'), minVersion: 'TLSv1.3' }, (socket) => {
    serverSockets.add(socket);
    socket.once('close', () => serverSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    void (async () => {
      let answer = 'fail';
      try {
        const { certDer, signature } = await readMessage(socket);
        const side: ServerSide = { ekm: exportedKeyingMaterial(socket), verified: false, threw: undefined };
        seen.set(socket.remotePort!, side);
        try {
          side.verified = verifyExporterProof(socket, new X509Certificate(certDer), signature);
        } catch (err) {
          side.threw = err;
        }
        if (side.verified) answer = 'ok';
      } catch {
        // A broken message is a refusal, answered like a bad signature.
      }
      socket.end(answer);
    })();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const s of serverSockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
  // No sockets or servers may outlive the suite (stdio pipes are the runner's).
  // Closed handles leave the list in libuv's close phase, a loop turn or two later.
  const open = (): string[] => process.getActiveResourcesInfo().filter((r) => /TCP|TLS|Timeout|Immediate/.test(r));
  const deadline = Date.now() + 2000;
  let left = open();
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    left = open();
  }
  assert.deepEqual(left, []);
});

interface Attempt {
  answer: string;
  clientEkm: Buffer;
  /** The signature the client's key made on this connection (sent unless `send` replaced it). */
  ownSignature: Buffer;
  server: ServerSide;
}

/**
 * One TLS 1.3 connection: signs the exporter value with `key`, then sends
 * `certDer` with that signature, or with what `send` returns instead.
 */
async function attempt(key: KeyStore, certDer: Buffer, send?: (own: Buffer) => Buffer | Promise<Buffer>): Promise<Attempt> {
  const socket = connect({ host: '127.0.0.1', port, ca: ca.cert.toString('pem'), minVersion: 'TLSv1.3' });
  try {
    await once(socket, 'secureConnect');
    assert.equal(socket.getProtocol(), 'TLSv1.3');
    const clientEkm = socket.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0));
    const ownSignature = await signExporterProof(socket, key);
    const signature = send === undefined ? ownSignature : await send(ownSignature);
    const localPort = socket.localPort!;
    const reply: Buffer[] = [];
    socket.on('data', (c: Buffer) => reply.push(c));
    const closed = once(socket, 'close');
    socket.write(frame(certDer, signature));
    await once(socket, 'end');
    socket.end();
    await closed;
    const side = seen.get(localPort);
    assert.ok(side !== undefined, 'the server recorded the connection');
    return { answer: Buffer.concat(reply).toString('utf8'), clientEkm, ownSignature, server: side };
  } finally {
    socket.destroy();
  }
}

const keys = new Map<KeyAlgorithm, { store: FileKeyStore; certDer: Buffer }>();

async function clientKey(algorithm: KeyAlgorithm, name: string = algorithm): Promise<{ store: FileKeyStore; certDer: Buffer }> {
  const cached = keys.get(algorithm);
  if (cached !== undefined && name === algorithm) return cached;
  const { store } = await FileKeyStore.openOrCreate(join(dir, `${name}.key.pem`), algorithm);
  const cert = await issue(`CN=${name}`, new Uint8Array(store.publicKeySpki()), false);
  const out = { store, certDer: Buffer.from(cert.rawData) };
  if (name === algorithm) keys.set(algorithm, out);
  return out;
}

describe('exporter-bound proof over TLS 1.3', () => {
  for (const algorithm of ['ec-p256', 'ec-p384', 'ed25519', 'rsa-2048'] as const) {
    test(`a FileKeyStore ${algorithm} key is accepted`, async () => {
      const { store, certDer } = await clientKey(algorithm);
      assert.equal(store.algorithm, algorithm);
      const r = await attempt(store, certDer);
      assert.equal(r.answer, 'ok');
      assert.equal(r.server.verified, true);
      assert.equal(r.server.threw, undefined);
    });
  }

  test('both ends derive the same exporter value, and it differs per connection', async () => {
    const { store, certDer } = await clientKey('ec-p256');
    const a = await attempt(store, certDer);
    const b = await attempt(store, certDer);
    assert.equal(a.clientEkm.length, EXPORTER_LENGTH);
    assert.ok(a.clientEkm.equals(a.server.ekm), 'client and server agree on connection 1');
    assert.ok(b.clientEkm.equals(b.server.ekm), 'client and server agree on connection 2');
    assert.ok(!a.clientEkm.equals(b.clientEkm), 'two connections never share an exporter value');
    assert.ok(!a.clientEkm.equals(Buffer.alloc(EXPORTER_LENGTH)));
  });

  test('the signed message is the context string followed by the exporter value', () => {
    const ekm = randomBytes(EXPORTER_LENGTH);
    const msg = proofMessage(ekm);
    assert.equal(msg.subarray(0, msg.length - EXPORTER_LENGTH).toString('latin1'), 'ztedge client auth v1\0');
    assert.ok(msg.subarray(msg.length - EXPORTER_LENGTH).equals(ekm));
  });

  test('a signature replayed from connection 1 on connection 2 is refused', async () => {
    for (const algorithm of ['ec-p256', 'ed25519'] as const) {
      const { store, certDer } = await clientKey(algorithm);
      const first = await attempt(store, certDer);
      assert.equal(first.answer, 'ok');
      const replay = await attempt(store, certDer, () => first.ownSignature);
      assert.equal(replay.answer, 'fail', `${algorithm}: the replay was accepted`);
      assert.equal(replay.server.threw, undefined);
    }
  });

  test('a signature by another key is refused', async () => {
    const { certDer } = await clientKey('ec-p256');
    const other = await clientKey('ec-p256', 'other-p256');
    const r = await attempt(other.store, certDer);
    assert.equal(r.answer, 'fail');
    assert.equal(r.server.threw, undefined);
    // The other key's own certificate is fine: the refusal was about the key.
    assert.equal((await attempt(other.store, other.certDer)).answer, 'ok');
  });

  test('a signature of another algorithm under the certificate is refused without throwing', async () => {
    const p256 = await clientKey('ec-p256');
    const ed = await clientKey('ed25519');
    const rsa = await clientKey('rsa-2048');
    for (const [signer, cert] of [[ed.store, p256.certDer], [rsa.store, p256.certDer], [p256.store, rsa.certDer], [p256.store, ed.certDer]] as const) {
      const r = await attempt(signer, cert);
      assert.equal(r.answer, 'fail');
      assert.equal(r.server.threw, undefined);
    }
  });

  test('truncated, padded, bit-flipped, empty and garbage signatures are refused without throwing', async () => {
    const mangle: Record<string, (own: Buffer) => Buffer> = {
      truncated: (own) => own.subarray(0, own.length - 1),
      half: (own) => own.subarray(0, own.length / 2),
      padded: (own) => Buffer.concat([own, Buffer.from([0])]),
      flipped: (own) => {
        const b = Buffer.from(own);
        b[b.length - 1] = b[b.length - 1]! ^ 0x01;
        return b;
      },
      empty: () => Buffer.alloc(0),
      garbage: (own) => randomBytes(own.length),
      zeros: (own) => Buffer.alloc(own.length),
      long: () => randomBytes(4096),
      der: () => Buffer.from('3006020101020101', 'hex'), // a DER signature where P1363 is expected
    };
    for (const algorithm of ['ec-p256', 'ed25519', 'rsa-2048'] as const) {
      const { store, certDer } = await clientKey(algorithm);
      for (const [name, fn] of Object.entries(mangle)) {
        const r = await attempt(store, certDer, fn);
        assert.equal(r.answer, 'fail', `${algorithm} ${name} was accepted`);
        assert.equal(r.server.threw, undefined, `${algorithm} ${name}: verifyExporterProof threw ${String(r.server.threw)}`);
      }
    }
  });
});
