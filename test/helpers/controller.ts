/**
 * Test helpers: run the real, bundled `ztedge` as a child process (the
 * controller on loopback, port chosen by the kernel), call its API with the
 * project's own HTTPS client, and check answers against OpenZiti's spec.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Ajv, type ValidateFunction } from 'ajv';
import { request, type HttpResponse, type TrustOptions } from '../../src/identity/https.js';
import { pemBundleFromCacerts } from '../../src/identity/cacerts.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'dist', 'ztedge.cjs');

export function tempDir(prefix = 'ztedge-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Runs `ztedge ARGS` to completion. */
export function runCli(args: string[], env: Record<string, string> = {}, cwd = ROOT): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface ControllerProcess {
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** JSON log lines seen so far. */
  logs: Record<string, unknown>[];
  ca: string;
  adminPassword: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `ztedge controller` on 127.0.0.1 with a kernel-chosen port and waits until it is ready. */
export async function startControllerProcess(dataDir: string, extraArgs: string[] = []): Promise<ControllerProcess> {
  const child = spawn(process.execPath, [BIN, 'controller', '--data', dataDir, '--listen', '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`controller not ready in 20 s; stderr: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'controller ready') { clearTimeout(timer); resolveUrl(String(entry.issuer)); }
      } catch { /* not JSON */ }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`controller exited with ${code}; stderr: ${stderr}`)); });
  });
  const cacerts = await request(`${url}/.well-known/est/cacerts`, { insecure: true });
  const ca = pemBundleFromCacerts(cacerts.body.toString());
  let adminPassword = '';
  try { adminPassword = readFileSync(join(dataDir, 'admin.password'), 'utf8').trim(); } catch { /* given by file */ }
  return {
    url, dataDir, child, logs, ca, adminPassword,
    stop(signal = 'SIGTERM') {
      return new Promise((r) => {
        if (child.exitCode !== null || child.signalCode !== null) { r(child.exitCode); return; }
        child.once('exit', (code) => r(code));
        child.kill(signal);
      });
    },
  };
}

export interface ApiResult<T = any> { status: number; body: T; raw: HttpResponse }

/** Calls the controller API with the CA bundle as trust; JSON in, JSON out. */
export async function api<T = any>(ctrl: { url: string; ca: string }, method: string, path: string, opts: { body?: unknown; rawBody?: string; token?: string; contentType?: string; accept?: string; trust?: TrustOptions } = {}): Promise<ApiResult<T>> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers['zt-session'] = opts.token;
  let body: string | undefined;
  if (opts.rawBody !== undefined) { body = opts.rawBody; headers['content-type'] = opts.contentType ?? 'text/plain'; }
  else if (opts.body !== undefined) { body = JSON.stringify(opts.body); headers['content-type'] = opts.contentType ?? 'application/json'; }
  if (opts.accept !== undefined) headers.accept = opts.accept;
  const raw = await request(`${ctrl.url}${path}`, { ca: ctrl.ca, ...opts.trust, method, headers, body });
  const text = raw.body.toString('utf8');
  let parsed: unknown = text;
  if ((raw.headers['content-type'] ?? '').toString().includes('json')) parsed = JSON.parse(text);
  return { status: raw.status, body: parsed as T, raw };
}

export async function adminToken(ctrl: ControllerProcess): Promise<string> {
  const r = await api(ctrl, 'POST', '/edge/management/v1/authenticate?method=password', { body: { username: 'admin', password: ctrl.adminPassword } });
  if (r.status !== 200) throw new Error(`admin login failed: ${JSON.stringify(r.body)}`);
  return r.body.data.token as string;
}

/** A refused call: method, path under /edge/management/v1, body, expected status and code, and a pattern for the message. */
export type RefusedCase = [method: string, path: string, body: unknown, status: number, code: string, message?: RegExp];

export interface AdminCalls {
  /** POST under the management API; expects 201 with a createEnvelope and returns the new id. */
  post(path: string, body: unknown): Promise<string>;
  /** GET under the management API; expects 200 and returns the whole envelope. */
  get(path: string): Promise<any>;
  /** The entity counts of /summary. */
  summary(): Promise<Record<string, number>>;
  /** Sends each call, expects its status and code, then checks that no count in /summary moved. */
  refusedAll(cases: RefusedCase[]): Promise<void>;
}

/** Management API calls as the admin with session `token`, checked against OpenZiti's definitions. */
export function adminCalls(ctrl: { url: string; ca: string }, token: string): AdminCalls {
  const M = '/edge/management/v1';
  const calls: AdminCalls = {
    async post(path, body) {
      const r = await api(ctrl, 'POST', `${M}${path}`, { token, body });
      if (r.status !== 201) throw new Error(`POST ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      assertSpec('createEnvelope', r.body);
      return r.body.data.id as string;
    },
    async get(path) {
      const r = await api(ctrl, 'GET', `${M}${path}`, { token });
      if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async summary() {
      const s = await calls.get('/summary');
      assertSpec('listSummaryCountsEnvelope', s);
      return s.data;
    },
    async refusedAll(cases) {
      const before = await calls.summary();
      for (const [method, path, body, status, code, message] of cases) {
        const r = await api(ctrl, method, `${M}${path}`, { token, body });
        const what = `${method} ${path} ${JSON.stringify(body)}`;
        if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status} ${JSON.stringify(r.body)}`);
        assertSpec('apiErrorEnvelope', r.body);
        if (r.body.error.code !== code) throw new Error(`${what}: expected ${code}, got ${JSON.stringify(r.body.error)}`);
        if (message !== undefined && !message.test(r.body.error.message)) throw new Error(`${what}: message ${JSON.stringify(r.body.error.message)} does not match ${message}`);
      }
      const after = await calls.summary();
      if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error(`a refused request changed something: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
    },
  };
  return calls;
}

// ---- OpenZiti spec shapes ---------------------------------------------------

let ajv: Ajv | undefined;

/**
 * Swagger 2.0 → JSON Schema: `x-nullable: true` means null is allowed too,
 * and a map value of bare `{type: object}` is go-swagger's `interface{}`
 * (any JSON value): OpenZiti's tags (`subTags`) hold strings that way, and
 * a service's `config` map holds each config's data.
 */
function nullable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(nullable);
  if (node === null || typeof node !== 'object') return node;
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k.startsWith('x-') || k === 'example') continue;
    const anyValue = k === 'additionalProperties' && v !== null && typeof v === 'object' && Object.keys(v).length === 1 && (v as Record<string, unknown>).type === 'object';
    o[k] = anyValue ? {} : nullable(v);
  }
  if ((node as Record<string, unknown>)['x-nullable'] === true) return { anyOf: [o, { type: 'null' }] };
  return o;
}

/** A validator for one OpenZiti definition (e.g. "identityDetail"). */
export function specValidator(definition: string): ValidateFunction {
  if (ajv === undefined) {
    const spec = JSON.parse(readFileSync(join(ROOT, 'test', 'vectors', 'openziti-management-definitions.json'), 'utf8')) as { definitions: Record<string, unknown> };
    ajv = new Ajv({ strict: false, allErrors: true, formats: { 'date-time': true, uri: true, uuid: true, int64: true } as never });
    ajv.addSchema({ $id: 'ziti', definitions: nullable(spec.definitions) as Record<string, unknown> });
  }
  const v = ajv.getSchema(`ziti#/definitions/${definition}`);
  if (v === undefined) throw new Error(`no definition ${definition}`);
  return v;
}

/** Throws with the validator's errors if `value` does not match the OpenZiti definition. */
export function assertSpec(definition: string, value: unknown): void {
  const v = specValidator(definition);
  if (!v(value)) throw new Error(`response does not match OpenZiti ${definition}: ${JSON.stringify(v.errors, null, 1)}\n${JSON.stringify(value).slice(0, 2000)}`);
}

/** Runs openssl with args; returns exit code and output. */
export function openssl(args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
