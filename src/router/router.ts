/**
 * The router runtime: wiring only. Links (listen and dial, reconnect with
 * backoff and jitter), one LinkMux per link, service routes learned from
 * announcements, proxy ports (`tunnel.mode: proxy`) and hosting of the
 * services this router may Bind. Authorization comes from a PolicyView
 * (the controller's data cached at the router); the hosting router checks
 * the dialing identity before it connects the target.
 */
import { connect as netConnect, createServer as netServer, type Server as NetServer, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { KeyStore } from '../keys/types.js';
import type { HostTarget } from '../policy/snapshot.js';
import { Link, parsePemBundle, type LinkSettings } from '../link/index.js';
import type { Logger } from '../log/index.js';
import { CloseCode, FrameType, decodeControl } from '../wire/index.js';
import { backoffMs } from './backoff.js';
import { CircuitError, LinkMux, type CircuitStream, type DialRequest } from './mux.js';
import { duplexPair } from './pipe.js';
import { ServiceRoutes, WITHDRAWN, type RouteEntry } from './routes.js';

export type { HostTarget } from '../policy/snapshot.js';

/** What the router knows of policy. Implementations must answer from local data (never block on the controller). */
export interface PolicyView {
  /** Services this router may Bind that have a host target. */
  hostedServices(): Map<string, HostTarget>;
  /** May `identityId` Dial `service`? Closed by default. */
  mayDial(identityId: string, service: string): { allow: boolean; reason: string };
}

export interface RouterOptions {
  id: string;
  key: KeyStore;
  /** The router's client certificate chain (PEM) for link HELLOs. */
  certPem: string;
  /** Controller CA bundle (PEM). */
  caPem: string;
  /** Listener certificate and key (PEM), needed when `listeners` is not empty. */
  server?: { certPem: string; keyPem: string };
  listeners: { host: string; port: number }[];
  links: { host: string; port: number }[];
  proxy: { service: string; host: string; port: number }[];
  link: LinkSettings;
  reconnect: { initialMs: number; maxMs: number };
  policy: PolicyView;
  log: Logger;
}

export class Router {
  readonly routes: ServiceRoutes;
  private readonly muxes = new Map<string, LinkMux>();
  private readonly servers: (TlsServer | NetServer)[] = [];
  private readonly dialTimers = new Set<NodeJS.Timeout>();
  private readonly cas;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly opts: RouterOptions) {
    this.routes = new ServiceRoutes(opts.id);
    this.cas = parsePemBundle(opts.caPem);
    this.log = opts.log.child({ subsys: 'router', routerId: opts.id });
  }

  /** Ports actually bound (listeners then proxies), for tests and status. */
  boundPorts(): number[] {
    return this.servers.map((s) => (s.address() as { port: number }).port);
  }

  async start(): Promise<void> {
    this.routes.setLocal(this.opts.policy.hostedServices().keys());
    for (const l of this.opts.listeners) {
      if (this.opts.server === undefined) throw new Error('listeners need a server certificate');
      const server = tlsServer({ key: this.opts.server.keyPem, cert: this.opts.server.certPem, minVersion: 'TLSv1.3' }, (socket) => this.adopt(socket, 'listener'));
      await listen(server, l.host, l.port);
      this.servers.push(server);
    }
    for (const p of this.opts.proxy) {
      const server = netServer((socket) => this.onProxyConnection(socket, p.service));
      await listen(server, p.host, p.port);
      this.servers.push(server);
    }
    for (const target of this.opts.links) this.dialLink(target, 0);
    this.log.info({ listeners: this.opts.listeners.length, links: this.opts.links.length, proxies: this.opts.proxy.length, hosted: [...this.routes.services()] }, 'router started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.dialTimers) clearTimeout(t);
    for (const m of this.muxes.values()) m.link.close(CloseCode.SHUTDOWN, 'router stopping');
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(() => r(undefined)))));
  }

  /** Re-reads hosted services from policy and tells every peer if they changed. */
  refreshHosted(): void {
    if (this.routes.setLocal(this.opts.policy.hostedServices().keys())) this.announceAll(true);
  }

  // ---- links ----------------------------------------------------------------

  private dialLink(target: { host: string; port: number }, attempt: number): void {
    if (this.stopped) return;
    const socket = tlsConnect({ host: target.host, port: target.port, ca: this.opts.caPem, minVersion: 'TLSv1.3', servername: isIpLike(target.host) ? undefined : target.host });
    let done = false;
    const retry = (why: string): void => {
      if (done || this.stopped) return;
      done = true;
      const delay = backoffMs(attempt, this.opts.reconnect.initialMs, this.opts.reconnect.maxMs);
      this.log.debug({ target, attempt, delay, why }, 'link dial failed; retrying');
      const t = setTimeout(() => { this.dialTimers.delete(t); this.dialLink(target, attempt + 1); }, delay);
      t.unref();
      this.dialTimers.add(t);
    };
    socket.once('error', (err) => retry(err.message));
    socket.once('secureConnect', () => {
      const link = this.adopt(socket, 'dialer');
      link.once('up', () => { attempt = 0; });
      link.once('close', () => { if (!done) { done = true; this.dialLink(target, link.peerId === undefined ? attempt + 1 : 0); } });
    });
  }

  private adopt(socket: TLSSocket, role: 'dialer' | 'listener'): Link {
    const link = new Link(socket, role, { id: this.opts.id, key: this.opts.key, certPem: this.opts.certPem }, this.cas, this.opts.link, this.opts.log);
    const mux = new LinkMux(link, role, (req, accept, refuse) => this.onDial(link, req, accept, refuse));
    link.once('up', (peerId: string) => {
      const old = this.muxes.get(peerId);
      if (old !== undefined && old !== mux) old.link.close(CloseCode.NORMAL, 'replaced by a newer link');
      this.muxes.set(peerId, mux);
      mux.onAnnounce = (body) => this.onAnnounce(peerId, body);
      link.sendControl(FrameType.ANNOUNCE, 0, { routes: toWire(this.routes.announcementsFor(peerId)), full: true });
    });
    link.once('close', () => {
      const peerId = link.peerId;
      if (peerId !== undefined && this.muxes.get(peerId) === mux) {
        this.muxes.delete(peerId);
        if (this.routes.linkDown(peerId)) this.announceAll(true);
      }
    });
    return link;
  }

  private onAnnounce(peerId: string, body: Buffer): void {
    const m = decodeControl(body);
    const raw = m?.routes;
    if (!Array.isArray(raw)) return this.muxes.get(peerId)?.link.close(CloseCode.MALFORMED_BODY, 'malformed ANNOUNCE');
    const routes: RouteEntry[] = [];
    for (const r of raw) {
      if (Array.isArray(r) && typeof r[0] === 'string' && typeof r[1] === 'string' && typeof r[2] === 'number') routes.push({ service: r[0], hostRouterId: r[1], hops: r[2] });
    }
    if (this.routes.applyAnnouncement(peerId, routes, m?.full === true)) this.announceAll(true);
  }

  private announceAll(full: boolean): void {
    for (const [peerId, mux] of this.muxes) {
      if (mux.link.isUp) mux.link.sendControl(FrameType.ANNOUNCE, 0, { routes: toWire(this.routes.announcementsFor(peerId)), full });
    }
  }

  // ---- circuits ---------------------------------------------------------------

  /** A DIAL from a peer: host it here (after the policy check) or pass it on. */
  private onDial(from: Link, req: DialRequest, accept: (s: CircuitStream) => void, refuse: (code: number, reason: string) => void): void {
    const next = this.routes.next(req.service);
    if (next === undefined) return refuse(CircuitError.NO_ROUTE, `no route to service ${req.service}`);
    if (next.local) return this.connectHosted(req, accept, refuse);
    if (next.linkId === from.peerId) return refuse(CircuitError.NO_ROUTE, `route to ${req.service} loops back`);
    const mux = this.muxes.get(next.linkId);
    if (mux === undefined || !mux.link.isUp) return refuse(CircuitError.NO_ROUTE, `link to ${next.linkId} is down`);
    const [near, far] = duplexPair();
    mux.dial(far, req, (err) => (err === undefined ? accept(near) : refuse(err.code, err.reason)));
  }

  private connectHosted(req: DialRequest, accept: (s: CircuitStream) => void, refuse: (code: number, reason: string) => void): void {
    const decision = this.opts.policy.mayDial(req.identity, req.service);
    if (!decision.allow) return refuse(CircuitError.DENIED, decision.reason);
    const target = this.opts.policy.hostedServices().get(req.service);
    if (target === undefined) return refuse(CircuitError.NO_ROUTE, `service ${req.service} is not hosted here any more`);
    if (target.address === undefined || target.port === undefined) return refuse(CircuitError.CONNECT_FAILED, `service ${req.service}: forwarded host.v1 targets are not supported yet`);
    const address = target.address;
    const port = target.port;
    const s = netConnect(port, address);
    s.once('connect', () => accept(s));
    s.once('error', (err) => refuse(CircuitError.CONNECT_FAILED, `cannot reach ${address}:${port}: ${err.message}`));
  }

  /** A local client on a proxy port: the circuit is dialed on this router's own identity. */
  private onProxyConnection(socket: Socket, service: string): void {
    socket.on('error', () => undefined);
    const req: DialRequest = { service, identity: this.opts.id };
    const next = this.routes.next(service);
    if (next === undefined) {
      this.log.debug({ service }, 'proxy: no route');
      socket.destroy();
      return;
    }
    if (next.local) {
      const [near, far] = duplexPair();
      this.connectHosted(req, (s) => { near.pipe(s); s.pipe(near); socket.pipe(far); far.pipe(socket); }, () => socket.destroy());
      return;
    }
    const mux = this.muxes.get(next.linkId);
    if (mux === undefined) {
      socket.destroy();
      return;
    }
    mux.dial(socket, req, (err) => {
      if (err !== undefined) this.log.debug({ service, code: err.code, reason: err.reason }, 'proxy dial refused');
    });
  }
}

function toWire(routes: RouteEntry[]): [string, string, number][] {
  return routes.map((r) => [r.service, r.hostRouterId, r.hops === WITHDRAWN ? WITHDRAWN : r.hops]);
}

function isIpLike(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function listen(server: TlsServer | NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
}


