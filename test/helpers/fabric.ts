/**
 * Helpers for in-process fabric tests: router identities issued by a real
 * controller PKI, a TCP echo server as the hosted service, and a client
 * round trip through a proxy port.
 */
import { once } from 'node:events';
import { connect as netConnect, createServer as netServer, type Server } from 'node:net';
import type { Pki } from '../../src/controller/pki.js';
import { createCsr, FileKeyStore, generatePrivateKeyPem } from '../../src/keys/index.js';

/** A P-256 file key and a certificate (chain PEM) with CN = `id` from `pki`. */
export async function issueIdentity(pki: Pki, id: string): Promise<{ key: FileKeyStore; certPem: string }> {
  const key = FileKeyStore.fromPem(generatePrivateKeyPem('ec-p256'), 'mem');
  const issued = await pki.issueClientCert(await createCsr(key, 'CN=x'), id, 1);
  return { key, certPem: issued.chainPem };
}

/** A TCP echo server on 127.0.0.1 with a kernel-chosen port. */
export async function startEcho(): Promise<Server> {
  const echo = netServer((s) => { s.on('error', () => undefined); s.pipe(s); });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  return echo;
}

export function portOf(server: { address(): unknown }): number {
  return (server.address() as { port: number }).port;
}

/** Sends `data` to 127.0.0.1:`port` and resolves with as many bytes back; rejects on timeout or an early close. */
export function roundTrip(port: number, data: Buffer, timeoutMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`timeout at ${got}/${data.length}`)); }, timeoutMs);
    s.on('data', (c: Buffer) => {
      parts.push(c);
      got += c.length;
      if (got >= data.length) { clearTimeout(timer); s.end(); resolve(Buffer.concat(parts)); }
    });
    s.on('close', () => { clearTimeout(timer); if (got < data.length) reject(new Error(`closed at ${got}/${data.length}`)); });
    s.on('error', () => undefined);
    s.write(data);
  });
}

/** A router's listener certificate (CN = `id`, SAN 127.0.0.1) and key from `pki`, as erott issues them. */
export async function issueListener(pki: Pki, id: string): Promise<{ certPem: string; keyPem: string; key: string; cert: string }> {
  const client = FileKeyStore.fromPem(generatePrivateKeyPem('ec-p256'), 'mem');
  const keyPem = generatePrivateKeyPem('ec-p256');
  const server = FileKeyStore.fromPem(keyPem, 'mem');
  const issued = await pki.issueRouterCerts(await createCsr(client, 'CN=x'), await createCsr(server, 'CN=x', { dns: ['localhost'], ip: ['127.0.0.1'] }), id, 1);
  return { certPem: issued.server.chainPem, keyPem, cert: issued.server.chainPem, key: keyPem };
}
