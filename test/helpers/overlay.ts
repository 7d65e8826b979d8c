/**
 * A whole overlay of real processes on loopback, driven the way a user
 * drives it: a `ztedge controller`, routers created through the management
 * API, enrolled with `ztedge enroll` (erott), run with `ztedge router
 * --config`, and services and policies made through the API.
 *
 *   const o = await Overlay.start();
 *   await o.addRouter({ name: 'hub', listen: true });
 *   await o.addRouter({ name: 'edge', links: ['hub'], proxy: [{ service: 'web', port }] });
 *   await o.hostService('web', { protocol: 'tcp', address: '127.0.0.1', port: 8080 }, 'host');
 *   await o.allowDial('web', 'edge');
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ROUTER_ENV, ROUTER_NODE_FLAGS } from '../../src/router/node-flags.js';
import { adminToken, api, BIN, removeDir, runCli, startControllerProcess, tempDir, type ControllerProcess } from './controller.js';

export interface RouterSpec {
  name: string;
  /** Accept links (tls:127.0.0.1:PORT, a port fixed for the router's life so restarts keep it). */
  listen?: boolean;
  /** Names of routers to dial (must have `listen`). */
  links?: string[];
  proxy?: { service: string; port: number; protocol?: 'tcp' | 'udp' }[];
  roleAttributes?: string[];
  /** Router log level (default debug: tests read the log lines). */
  logLevel?: string;
  /** link: settings as a YAML flow map (default: fast keepalive and redial for tests). */
  linkYaml?: string;
  /** Extra YAML appended to router.yml. */
  extraYaml?: string;
}

export interface RouterProcess {
  spec: RouterSpec;
  id: string;
  configFile: string;
  listenPort?: number;
  child?: ChildProcess;
  logs: Record<string, unknown>[];
  stderr: string;
  /** Set when a stop signal was ignored and the process had to be SIGKILLed. */
  forcedKill?: boolean;
}

/** A TCP port that was free a moment ago (closed before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export class Overlay {
  readonly routers = new Map<string, RouterProcess>();
  private constructor(readonly dir: string, readonly ctrl: ControllerProcess, readonly token: string) {}

  /** `controllerArgs`: extra `ztedge controller` flags (e.g. --policy-offline-hours). */
  static async start(controllerArgs: string[] = []): Promise<Overlay> {
    const dir = tempDir('ztedge-overlay-');
    const ctrl = await startControllerProcess(join(dir, 'ctrl'), controllerArgs);
    return new Overlay(dir, ctrl, await adminToken(ctrl));
  }

  /** Calls the management API as admin; throws on HTTP errors. */
  async mgmt<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await api(this.ctrl, method, `/edge/management/v1${path}`, { token: this.token, body });
    if (r.status >= 400) throw new Error(`${method} ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return r.body?.data as T;
  }

  /** Creates, enrolls (ztedge enroll) and starts a router. */
  async addRouter(spec: RouterSpec): Promise<RouterProcess> {
    const created = await this.mgmt<{ id: string }>('POST', '/edge-routers', { name: spec.name, roleAttributes: spec.roleAttributes ?? [] });
    const detail = await this.mgmt<{ enrollmentJwt: string }>('GET', `/edge-routers/${created.id}`);
    const jwtFile = join(this.dir, `${spec.name}.jwt`);
    writeFileSync(jwtFile, detail.enrollmentJwt);
    const enrolled = runCli(['enroll', '--jwt', jwtFile, '--out', join(this.dir, `${spec.name}.json`), '--san', '127.0.0.1']);
    if (enrolled.code !== 0) throw new Error(`enroll ${spec.name} failed: ${enrolled.stderr}`);
    const listenPort = spec.listen === true ? await freePort() : undefined;
    const lines = [
      `identity: ./${spec.name}.json`,
      `dataDir: ./${spec.name}-data`,
      `listeners: [${listenPort !== undefined ? `tls:127.0.0.1:${listenPort}` : ''}]`,
      `links: [${(spec.links ?? []).map((n) => `tls:127.0.0.1:${this.routers.get(n)?.listenPort ?? 0}`).join(', ')}]`,
      `link: ${spec.linkYaml ?? '{ keepaliveMs: 500, deadAfterMs: 2000, reconnect: { initialMs: 100, maxMs: 1000 } }'}`,
      `log: { level: ${spec.logLevel ?? 'debug'} }`,
    ];
    if (spec.proxy !== undefined && spec.proxy.length > 0) {
      lines.push('tunnel:', '  mode: proxy', '  proxy:');
      for (const p of spec.proxy) lines.push(`    - { service: ${p.service}, listen: 127.0.0.1:${p.port}${p.protocol !== undefined ? `, protocol: ${p.protocol}` : ''} }`);
    }
    if (spec.extraYaml !== undefined) lines.push(spec.extraYaml);
    const configFile = join(this.dir, `${spec.name}.yml`);
    writeFileSync(configFile, lines.join('\n') + '\n');
    const r: RouterProcess = { spec, id: created.id, configFile, listenPort, logs: [], stderr: '' };
    this.routers.set(spec.name, r);
    await this.startRouter(spec.name);
    return r;
  }

  /** Starts (or restarts) a router process and waits for its "router ready" line. */
  async startRouter(name: string): Promise<void> {
    const r = this.routers.get(name)!;
    // Routers run with the V8 flags and environment they run with in production (src/router/node-flags.ts).
    const child = spawn(process.execPath, [...ROUTER_NODE_FLAGS, BIN, 'router', '--config', r.configFile], { stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir, env: { ...process.env, ...ROUTER_ENV } });
    r.child = child;
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try { r.logs.push(JSON.parse(line) as Record<string, unknown>); } catch { /* not JSON */ }
      }
    });
    child.stderr!.on('data', (c: Buffer) => { r.stderr += c.toString(); });
    const since = r.logs.length;
    // Generous: on a loaded 2-core CI box a cold start of the bundle can take several seconds.
    await this.waitLog(name, (l) => l.msg === 'router ready', 30_000, since);
  }

  /**
   * Stops a router (SIGKILL by default: a crash) and waits for it to exit.
   * A router that ignores a gentler signal for `graceMs` is killed with
   * SIGKILL, so a hung shutdown cannot stall a test run; that is recorded
   * in `forcedKill`.
   */
  async killRouter(name: string, signal: NodeJS.Signals = 'SIGKILL', graceMs = 5000): Promise<void> {
    const r = this.routers.get(name);
    const child = r?.child;
    if (r === undefined || child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    const timer = signal === 'SIGKILL' ? undefined : setTimeout(() => { r.forcedKill = true; child.kill('SIGKILL'); }, graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Resident memory of router `name` (VmRSS from /proc, Linux), in bytes. */
  rssBytes(name: string): number {
    const pid = this.routers.get(name)?.child?.pid;
    if (pid === undefined) throw new Error(`router ${name} is not running`);
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m === null) throw new Error(`no VmRSS for router ${name} (pid ${pid})`);
    return Number(m[1]) * 1024;
  }

  /** True while router `name`'s process runs. */
  isRunning(name: string): boolean {
    const child = this.routers.get(name)?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Stops the controller (routers keep running on their cached policy). */
  async stopController(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.ctrl.stop(signal);
  }

  /** Waits for a log line of router `name` matching `pred` (looking at lines from index `since`). */
  async waitLog(name: string, pred: (l: Record<string, unknown>) => boolean, ms = 10_000, since = 0): Promise<Record<string, unknown>> {
    const r = this.routers.get(name)!;
    const end = Date.now() + ms;
    for (;;) {
      const hit = r.logs.slice(since).find(pred);
      if (hit !== undefined) return hit;
      if (r.child?.exitCode !== null && r.child?.exitCode !== undefined) throw new Error(`router ${name} exited (${r.child.exitCode}): ${r.stderr}`);
      if (Date.now() > end) throw new Error(`router ${name}: no matching log line within ${ms} ms; stderr: ${r.stderr.slice(-500)}; last logs: ${JSON.stringify(r.logs.slice(-5))}`);
      await new Promise((res) => setTimeout(res, 25));
    }
  }

  /** A host.v1 config + service, and a Bind policy for router `host`. */
  async hostService(service: string, host: Record<string, unknown>, hostRouter: string): Promise<string> {
    const cfg = await this.mgmt<{ id: string }>('POST', '/configs', { name: `${service}-host`, configTypeId: 'host.v1', data: host });
    const svc = await this.mgmt<{ id: string }>('POST', '/services', { name: service, configs: [cfg.id] });
    await this.mgmt('POST', '/service-policies', { name: `${service}-bind`, type: 'Bind', semantic: 'AnyOf', identityRoles: [`@${hostRouter}`], serviceRoles: [`@${service}`] });
    // OpenZiti semantics: a service uses no router unless a service edge router policy says so.
    await this.mgmt('POST', '/service-edge-router-policies', { name: `${service}-routers`, semantic: 'AnyOf', edgeRouterRoles: ['#all'], serviceRoles: [`@${service}`] });
    return svc.id;
  }

  /** A Dial policy for `identity` (router or identity name) on `service`; returns its id. */
  async allowDial(service: string, identity: string, name = `${service}-dial-${identity}`): Promise<string> {
    const p = await this.mgmt<{ id: string }>('POST', '/service-policies', { name, type: 'Dial', semantic: 'AnyOf', identityRoles: [`@${identity}`], serviceRoles: [`@${service}`] });
    return p.id;
  }

  /** Waits until router `name` logged a policy update after index `since` that hosts (or does not host) `service`. */
  async waitHosted(name: string, service: string, hosted = true, since = 0): Promise<void> {
    await this.waitLog(name, (l) => l.msg === 'policy updated' && Array.isArray(l.hosted) && (l.hosted as string[]).includes(service) === hosted, 10_000, since);
  }

  /** Stops every router (in parallel) and the controller, then removes the overlay's folder. */
  async stop(): Promise<void> {
    await Promise.all([...this.routers.keys()].map((name) => this.killRouter(name, 'SIGTERM').catch(() => undefined)));
    // stop() copes with a controller that already exited (by code or by signal).
    await this.ctrl.stop('SIGTERM');
    removeDir(this.dir);
  }
}
