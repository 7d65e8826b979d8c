/**
 * A small HTTPS client for the controller's APIs, with the trust choices
 * enrollment needs: trust a CA bundle, pin one exact server certificate
 * (trust bootstrap), or present a client certificate. Returns the whole
 * body: every answer of these APIs is small.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { PROOF_CERT_HEADER, PROOF_SIGNATURE_HEADER, signExporterProof } from '../keys/proof.js';
import type { KeyStore } from '../keys/types.js';
import { Agent, request as httpsRequest, type AgentOptions } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { EdgeError, RemoteError } from '../errors.js';

export interface TrustOptions {
  /** PEM bundle of CAs to trust (the controller's, from EST cacerts). */
  ca?: string;
  /** Accept exactly the server certificate whose DER has this SHA-256 (hex); no CA check. */
  pinSha256?: string;
  /** Accept any server certificate: only for fetching a CA bundle the user then confirms. */
  insecure?: boolean;
  /** Client certificate chain (PEM) and its key, for `method=cert`. */
  cert?: string;
  key?: string;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface RequestOptions extends TrustOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  agent?: Agent;
  /** An already connected TLS socket to send this one request on. */
  connection?: TLSSocket;
  timeoutMs?: number;
}

/** A keep-alive agent for many requests with the same trust (benchmarks, CLI sessions). */
export function createAgent(trust: TrustOptions, extra: AgentOptions = {}): Agent {
  return new Agent({ keepAlive: true, ...tlsOptions(trust), ...extra });
}

function tlsOptions(trust: TrustOptions): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (trust.insecure === true) {
    o.rejectUnauthorized = false;
  } else if (trust.pinSha256 !== undefined) {
    const pin = trust.pinSha256.toLowerCase();
    o.rejectUnauthorized = false;
    o.checkServerIdentity = (_host: string, cert: PeerCertificate) =>
      createHash('sha256').update(cert.raw).digest('hex') === pin ? undefined : new Error('server certificate does not match the pinned certificate');
  } else {
    o.ca = trust.ca;
    o.rejectUnauthorized = true;
  }
  if (trust.cert !== undefined) o.cert = trust.cert;
  if (trust.key !== undefined) o.key = trust.key;
  return o;
}

/**
 * Sends one request over a fresh TLS connection on which the client first
 * proves possession of `key` (the certificate's key) by signing the
 * connection's exporter value: `method=cert` for keys in a TPM or HSM.
 */
export async function requestWithProof(url: string, proof: { key: KeyStore; certPem: string }, opts: RequestOptions = {}): Promise<HttpResponse> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const socket = await new Promise<TLSSocket>((resolveSocket, reject) => {
    const s = tlsConnect({ host, port: u.port === '' ? 443 : Number(u.port), servername: isIP(host) === 0 ? host : undefined, ...tlsOptions(opts), minVersion: 'TLSv1.3' });
    s.once('secureConnect', () => resolveSocket(s));
    s.once('error', (err) => reject(new EdgeError('ERR_CONNECT', `cannot reach ${u.host}: ${err.message}`, { cause: err })));
  });
  try {
    const signature = await signExporterProof(socket, proof.key);
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(proof.certPem)?.[0];
    if (leaf === undefined) throw new EdgeError('ERR_IDENTITY_FILE', 'the identity has no certificate');
    const der = new X509Certificate(leaf).raw;
    return await request(url, {
      ...opts,
      headers: { ...opts.headers, [PROOF_CERT_HEADER]: der.toString('base64'), [PROOF_SIGNATURE_HEADER]: signature.toString('base64') },
      connection: socket,
    });
  } finally {
    socket.destroy();
  }
}

export function request(url: string, opts: RequestOptions = {}): Promise<HttpResponse> {
  return new Promise((resolvePromise, reject) => {
    const u = new URL(url);
    if (u.protocol !== 'https:') {
      reject(new EdgeError('ERR_CONNECT', `only https:// controller URLs are supported, got ${u.protocol}`));
      return;
    }
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body);
    const req = httpsRequest(
      {
        method: opts.method ?? 'GET',
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port === '' ? 443 : Number(u.port),
        path: u.pathname + u.search,
        headers,
        ...(opts.connection !== undefined ? { createConnection: () => opts.connection } : opts.agent !== undefined ? { agent: opts.agent } : { agent: false, ...tlsOptions(opts) }),
        // The pinned check must run even with a shared agent.
        ...(opts.pinSha256 !== undefined && opts.agent !== undefined ? tlsOptions(opts) : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new EdgeError('ERR_CONNECT', `no answer from ${u.host} within ${opts.timeoutMs ?? 30_000} ms`)));
    req.on('error', (err) => reject(err instanceof EdgeError ? err : new EdgeError('ERR_CONNECT', `cannot reach ${u.host}: ${err.message}`, { cause: err })));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** Parses a JSON envelope answer, turning API errors into RemoteError. */
export function jsonOf<T = unknown>(res: HttpResponse): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    if (res.status >= 400) throw new RemoteError(res.status, 'ERR_HTTP', res.body.toString('utf8').slice(0, 200));
    throw new EdgeError('ERR_REMOTE', `expected JSON from the controller, got: ${res.body.toString('utf8').slice(0, 120)}`);
  }
  throwIfError(res.status, parsed);
  return (parsed as { data: T }).data;
}

export function throwIfError(status: number, parsed: unknown): void {
  if (status < 400) return;
  const e = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
  throw new RemoteError(status, e?.code ?? 'ERR_HTTP', e?.message ?? `HTTP ${status}`);
}

/** Fetches the server's leaf certificate (DER) without trusting it: the first step of trust bootstrap. */
export function fetchServerCertificate(url: string, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const u = new URL(url);
    const req = httpsRequest({
      method: 'HEAD', hostname: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? 443 : Number(u.port), path: '/version',
      rejectUnauthorized: false, agent: false,
    });
    req.setTimeout(timeoutMs, () => req.destroy(new EdgeError('ERR_CONNECT', `no answer from ${u.host} within ${timeoutMs} ms`)));
    req.on('socket', (socket: TLSSocket) => {
      socket.once('secureConnect', () => {
        const cert = socket.getPeerCertificate();
        req.destroy();
        if (cert?.raw === undefined) reject(new EdgeError('ERR_TRUST_BOOTSTRAP', `${u.host} presented no certificate`));
        else resolvePromise(cert.raw);
      });
    });
    req.on('error', (err) => reject(err instanceof EdgeError ? err : new EdgeError('ERR_CONNECT', `cannot reach ${u.host}: ${err.message}`, { cause: err })));
    req.end();
  });
}
