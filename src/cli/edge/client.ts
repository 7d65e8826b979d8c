/**
 * The management API client behind `ztedge edge …`: logs in, keeps the
 * session (URL, token, trusted CA bundle) in the CLI state file, and sends
 * requests with the `zt-session` header.
 *
 * State file: $ZTEDGE_CONFIG_DIR/cli.json, else ~/.config/ztedge/cli.json,
 * mode 0600 (it holds a session token).
 */
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { EdgeError } from '../../errors.js';
import { writeFileAtomic } from '../../util/fs.js';
import { pemBundleFromCacerts } from '../../identity/cacerts.js';
import { loadIdentityFile } from '../../identity/file.js';
import { jsonOf, request, requestWithProof, type TrustOptions } from '../../identity/https.js';

export const MANAGEMENT = '/edge/management/v1';

export interface CliState {
  url: string;
  token: string;
  ca: string;
  username?: string;
  identityFile?: string;
}

export function stateDir(): string {
  return process.env.ZTEDGE_CONFIG_DIR ?? join(homedir(), '.config', 'ztedge');
}

export function statePath(): string {
  return join(stateDir(), 'cli.json');
}

export async function saveState(state: CliState): Promise<void> {
  await fs.mkdir(stateDir(), { recursive: true, mode: 0o700 });
  await writeFileAtomic(statePath(), JSON.stringify(state, null, 2) + '\n', 0o600);
}

export async function loadState(): Promise<CliState> {
  try {
    return JSON.parse(await fs.readFile(statePath(), 'utf8')) as CliState;
  } catch {
    throw new EdgeError('ERR_USAGE', 'not logged in: run "ztedge edge login URL -u admin" first');
  }
}

export async function clearState(): Promise<void> {
  await fs.rm(statePath(), { force: true });
}

/** Normalizes "host:port" or "https://host:port/…" to "https://host:port". */
export function normalizeUrl(input: string): string {
  const withScheme = /^https?:\/\//.test(input) ? input : `https://${input}`;
  const u = new URL(withScheme);
  if (u.protocol !== 'https:') throw new EdgeError('ERR_USAGE', `the controller URL must be https://, got ${input}`);
  return `https://${u.host}`;
}

/** Fetches the controller's CA bundle without verifying it (trust on first use, confirmed by the user). */
export async function fetchCaBundleUnverified(url: string): Promise<string> {
  const res = await request(`${url}/.well-known/est/cacerts`, { insecure: true });
  if (res.status !== 200) throw new EdgeError('ERR_REMOTE', `GET ${url}/.well-known/est/cacerts answered HTTP ${res.status}`);
  return pemBundleFromCacerts(res.body.toString('utf8'));
}

export function describeBundle(pem: string): string[] {
  return pem.split(/(?<=-----END CERTIFICATE-----\n?)/).filter((p) => p.includes('BEGIN CERTIFICATE')).map((p) => {
    const c = new X509Certificate(p);
    return `${c.subject.replace(/\n/g, ', ')}  SHA-256 ${c.fingerprint256}`;
  });
}

export class ManagementClient {
  constructor(readonly state: CliState, private readonly trust: TrustOptions) {}

  static async fromState(): Promise<ManagementClient> {
    const state = await loadState();
    const trust: TrustOptions = { ca: state.ca };
    if (state.identityFile !== undefined) {
      const id = await loadIdentityFile(state.identityFile);
      if (id.key.kind === 'pem') Object.assign(trust, { cert: id.certPem, key: id.key.pem });
    }
    return new ManagementClient(state, trust);
  }

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { 'zt-session': this.state.token, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${this.state.url}${MANAGEMENT}${path}`, {
      ...this.trust, method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      throw new EdgeError('ERR_REMOTE', 'the session has expired or ended: run "ztedge edge login" again');
    }
    return jsonOf<T>(res);
  }

  /** Sends a text/plain body (PEM) and expects a JSON envelope back. */
  async callText<T = unknown>(method: string, path: string, text: string): Promise<T> {
    const res = await request(`${this.state.url}${MANAGEMENT}${path}`, {
      ...this.trust, method, headers: { 'zt-session': this.state.token, accept: 'application/json', 'content-type': 'text/plain' }, body: text,
    });
    if (res.status === 401) throw new EdgeError('ERR_REMOTE', 'the session has expired or ended: run "ztedge edge login" again');
    return jsonOf<T>(res);
  }

  async list<T = Record<string, unknown>>(collection: string, filter?: string): Promise<T[]> {
    const all: T[] = [];
    for (let offset = 0; ; offset += 500) {
      const q = new URLSearchParams({ limit: '500', offset: String(offset) });
      if (filter !== undefined && filter !== '') q.set('filter', filter);
      const page = await this.call<T[]>('GET', `/${collection}?${q.toString()}`);
      all.push(...page);
      if (page.length < 500) return all;
    }
  }
}

export interface LoginOptions {
  url: string;
  ca: string;
  username?: string;
  password?: string;
  identityFile?: string;
  /** Asked for when the session must pass MFA (a TOTP code or a recovery code). */
  mfaCode?: () => Promise<string | undefined>;
}

type LoginAnswer = { token: string; identity: { name: string }; authQueries?: { typeId?: string }[] };

/** Authenticates and stores the session. Returns the identity name. */
export async function login(opts: LoginOptions): Promise<{ identityName: string; state: CliState }> {
  const trust: TrustOptions = { ca: opts.ca };
  let method: 'password' | 'cert';
  let body: string | undefined;
  if (opts.identityFile !== undefined) {
    const id = await loadIdentityFile(opts.identityFile);
    if (id.key.kind === 'pkcs11') {
      // The key cannot sign inside Node's TLS handshake: prove possession over the connection instead.
      const { Pkcs11KeyStore } = await import('../../keys/pkcs11.js');
      const key = Pkcs11KeyStore.open(id.key.uri);
      try {
        const res = await requestWithProof(`${opts.url}${MANAGEMENT}/authenticate?method=cert`, { key, certPem: id.certPem }, {
          ...trust, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
        });
        return await saveLogin(opts, trust, jsonOf<LoginAnswer>(res));
      } finally {
        await key.close();
      }
    }
    Object.assign(trust, { cert: id.certPem, key: id.key.pem });
    method = 'cert';
  } else {
    if (opts.username === undefined || opts.password === undefined) throw new EdgeError('ERR_USAGE', 'give -u USER and a password (-p or --password-file), or --file identity.json');
    method = 'password';
    body = JSON.stringify({ username: opts.username, password: opts.password });
  }
  const res = await request(`${opts.url}${MANAGEMENT}/authenticate?method=${method}`, {
    ...trust, method: 'POST', headers: { 'content-type': 'application/json' }, body: body ?? '{}',
  });
  return saveLogin(opts, trust, jsonOf<LoginAnswer>(res));
}

/** Completes MFA when the new session asks for it (authQueries), then stores the session. */
async function saveLogin(opts: LoginOptions, trust: TrustOptions, data: LoginAnswer): Promise<{ identityName: string; state: CliState }> {
  if ((data.authQueries ?? []).some((q) => q.typeId === 'MFA')) {
    const code = await opts.mfaCode?.();
    if (code === undefined || code === '') throw new EdgeError('ERR_USAGE', `${data.identity.name} must pass MFA: give --mfa-code CODE (from the authenticator app, or a recovery code)`);
    const res = await request(`${opts.url}${MANAGEMENT}/authenticate/mfa`, {
      ...trust, method: 'POST', headers: { 'content-type': 'application/json', 'zt-session': data.token }, body: JSON.stringify({ code }),
    });
    jsonOf(res);
  }
  const state: CliState = { url: opts.url, token: data.token, ca: opts.ca, username: opts.username, identityFile: opts.identityFile };
  await saveState(state);
  return { identityName: data.identity.name, state };
}
