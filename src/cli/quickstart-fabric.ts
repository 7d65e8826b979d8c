/**
 * The overlay part of `ztedge quickstart`: three routers run as their own
 * `ztedge router --config` processes (the same files and commands a user
 * would write), a demo HTTP service, the service and its policies, and a
 * request through edge → hub → host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, createWriteStream, promises as fs } from 'node:fs';
import { createServer as httpServer, get as httpGet, type Server } from 'node:http';
import { createServer as netServer } from 'node:net';
import { join } from 'node:path';
import { EdgeError } from '../errors.js';
import { enroll } from '../identity/enroll.js';
import { loadIdentityFile } from '../identity/file.js';
import { ROUTER_ENV, ROUTER_NODE_FLAGS } from '../router/node-flags.js';
import type { ManagementClient } from './edge/client.js';

export interface QuickRouter {
  name: string;
  child: ChildProcess;
  /** Parsed JSON log lines (also written to DATA/NAME.log). */
  logs: Record<string, unknown>[];
}

/** A free TCP port on 127.0.0.1 when `port` is 0; otherwise `port`. */
export function portOrFree(port: number): Promise<number> {
  if (port !== 0) return Promise.resolve(port);
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** The demo service: answers every GET with one line naming itself. */
export async function startDemoService(): Promise<Server> {
  const server = httpServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from the demo service behind the host router (${req.method} ${req.url})\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return server;
}

/**
 * Creates and enrolls router `name` unless an identity file for this
 * controller already exists. Returns its identity file.
 */
export async function ensureRouter(client: ManagementClient, dataDir: string, name: string, controllerUrl: string, roleAttributes: string[]): Promise<{ file: string; created: boolean }> {
  const file = join(dataDir, `${name}.json`);
  const existing = (await client.list<{ id: string }>('edge-routers', `name = "${name}"`))[0];
  if (existing !== undefined && existsSync(file) && (await loadIdentityFile(file)).apiUrl === controllerUrl) return { file, created: false };
  if (existing !== undefined) await client.call('DELETE', `/edge-routers/${existing.id}`);
  for (const f of ['json', 'cert.pem', 'key.pem', 'ca.pem', 'server.cert.pem', 'server.key.pem', 'jwt']) await fs.rm(join(dataDir, `${name}.${f}`), { force: true });
  await fs.rm(join(dataDir, `${name}-data`), { recursive: true, force: true });
  const created = await client.call<{ id: string }>('POST', '/edge-routers', { name, roleAttributes });
  const detail = await client.call<{ enrollmentJwt: string }>('GET', `/edge-routers/${created.id}`);
  await fs.writeFile(join(dataDir, `${name}.jwt`), detail.enrollmentJwt + '\n', { mode: 0o600 });
  await enroll({ jwt: detail.enrollmentJwt, out: file, serverSans: ['127.0.0.1', 'localhost'] });
  return { file, created: true };
}

/** Writes DATA/NAME.yml. */
export async function writeRouterConfig(dataDir: string, name: string, body: string[]): Promise<string> {
  const file = join(dataDir, `${name}.yml`);
  const text = [`# written by ztedge quickstart; run it with: ztedge router --config ${name}.yml`, `identity: ./${name}.json`, `dataDir: ./${name}-data`, ...body, ''].join('\n');
  await fs.writeFile(file, text);
  return file;
}

/** Starts `ztedge router --config FILE` and resolves once it logged "router ready". */
export async function startRouterProcess(dataDir: string, name: string, configFile: string): Promise<QuickRouter> {
  const script = process.argv[1];
  if (script === undefined) throw new EdgeError('ERR_INTERNAL', 'cannot find the ztedge script to start routers with');
  const child = spawn(process.execPath, [...ROUTER_NODE_FLAGS, script, 'router', '--config', configFile], { cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...ROUTER_ENV } });
  const logFile = createWriteStream(join(dataDir, `${name}.log`), { flags: 'a' });
  const router: QuickRouter = { name, child, logs: [] };
  let partial = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    logFile.write(chunk);
    partial += chunk.toString('utf8');
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try { router.logs.push(JSON.parse(line) as Record<string, unknown>); } catch { /* not a log line */ }
      // Keep a bounded tail: quickstart only looks at recent lines.
      if (router.logs.length > 2000) router.logs.splice(0, 1000);
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); logFile.write(chunk); });
  child.once('exit', () => logFile.end());
  const deadline = Date.now() + 20_000;
  while (!router.logs.some((l) => l.msg === 'router ready')) {
    if (child.exitCode !== null) throw new EdgeError('ERR_INTERNAL', `router ${name} exited with code ${child.exitCode}: ${stderr.trim().split('\n').pop() ?? ''}`);
    if (Date.now() > deadline) throw new EdgeError('ERR_INTERNAL', `router ${name} did not start within 20 s; see ${name}.log`);
    await sleep(50);
  }
  return router;
}

export async function stopRouters(routers: QuickRouter[]): Promise<void> {
  await Promise.all(routers.map((r) => new Promise<void>((resolve) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve();
    const timer = setTimeout(() => r.child.kill('SIGKILL'), 3000);
    r.child.once('exit', () => { clearTimeout(timer); resolve(); });
    r.child.kill('SIGTERM');
  })));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type GetResult = { ok: true; status: number; body: string; ms: number } | { ok: false; error: string; ms: number };

/** One HTTP GET to 127.0.0.1:port; never throws. */
export function tryGet(port: number, timeoutMs = 5000): Promise<GetResult> {
  const t0 = process.hrtime.bigint();
  const ms = (): number => Number((process.hrtime.bigint() - t0) / 1000n) / 1000;
  return new Promise((resolve) => {
    const req = httpGet({ host: '127.0.0.1', port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ ok: true, status: res.statusCode ?? 0, body, ms: ms() }));
      res.on('error', (err) => resolve({ ok: false, error: err.message, ms: ms() }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message, ms: ms() }));
  });
}

/** Repeats `tryGet` until `want(result)` holds or `ms` passes; returns the last result. */
export async function getUntil(port: number, want: (r: GetResult) => boolean, ms: number): Promise<GetResult> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await tryGet(port);
    if (want(r) || Date.now() > deadline) return r;
    await sleep(100);
  }
}
