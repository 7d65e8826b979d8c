/**
 * The router runtime: wiring only. Links (listen and dial, reconnect with
 * backoff and jitter), one LinkMux per link, service routes learned from
 * announcements, proxy ports (`tunnel.mode: proxy`) and hosting of the
 * services this router may Bind. Authorization comes from a PolicyView
 * (the controller's data cached at the router); the hosting router checks
 * the dialing identity before it connects the target.
 */
import { lookup } from 'node:dns';
import { connect as netConnect, createServer as netServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as tlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { KeyStore } from '../keys/types.js';
import type { HostTarget, Protocol } from '../policy/snapshot.js';
import { Link, parsePemBundle, type LinkSettings } from '../link/index.js';
import type { Logger } from '../log/index.js';
import { CloseCode, FrameType, decodeControl } from '../wire/index.js';
import { backoffMs } from './backoff.js';
import { CircuitEnd, CircuitError, LinkMux, type CircuitStream, type DialRequest } from './mux.js';
import { resolveHostTarget, type ResolvedTarget } from './host-target.js';
import { duplexPair } from './pipe.js';
import { ServiceRoutes, WITHDRAWN, type RouteEntry } from './routes.js';
import { DEFAULT_UDP_SETTINGS, IdleSweeper, UdpCounters, UdpProxyPort, connectDatagram, type DatagramCircuit } from './udp.js';

export type { HostTarget } from '../policy/snapshot.js';

/** What the router knows of policy. Implementations must answer from local data (never block on the controller). */
export interface PolicyView {
  /** Services this router may Bind that have a host target. */
  hostedServices(): Map<string, HostTarget>;
  /** May `identityId` Dial `service`? Closed by default. */
  mayDial(identityId: string, service: string): { allow: boolean; reason: string };
  /**
   * May router `id` hold a link to this router? (Its certificate chains to the
   * CA; this says whether it is still a known, enabled identity.) Absent: yes.
   */
  mayLink?(id: string): { allow: boolean; reason: string };
  /**
   * May a local client's traffic for `service` enter the overlay here (on this
   * router's identity)? Checked before dialing; the hosting router checks
   * again. Absent: the hosting router's check alone decides.
   */
  mayIntercept?(service: string): { allow: boolean; reason: string };
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
  /** Local proxy ports; `protocol` absent means tcp. */
  proxy: { service: string; host: string; port: number; protocol?: Protocol }[];
  /** UDP circuits (proxy sessions and hosted flows): idle time before a circuit ends (default 60 s) and sessions per UDP proxy port (default 1024). */
  udp?: { idleMs?: number; maxSessions?: number };
  link: LinkSettings;
  reconnect: { initialMs: number; maxMs: number };
  policy: PolicyView;
  log: Logger;
}

export class Router {
  readonly routes: ServiceRoutes;
  private readonly muxes = new Map<string, LinkMux>();
  private readonly hostedCircuits = new Map<CircuitStream, DialRequest>();
  private readonly servers: (TlsServer | NetServer | UdpProxyPort)[] = [];
  /** Drops and events of UDP circuits, for status and tests. */
  readonly udpCounters = new UdpCounters();
  private readonly udpSweeper: IdleSweeper;
  private readonly udpMaxSessions: number;
  private readonly dialTimers = new Set<NodeJS.Timeout>();
  private readonly cas;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly opts: RouterOptions) {
    this.routes = new ServiceRoutes(opts.id);
    this.cas = parsePemBundle(opts.caPem);
    this.log = opts.log.child({ subsys: 'router', routerId: opts.id });
    this.udpSweeper = new IdleSweeper(opts.udp?.idleMs ?? DEFAULT_UDP_SETTINGS.idleMs);
    this.udpMaxSessions = opts.udp?.maxSessions ?? DEFAULT_UDP_SETTINGS.maxSessions;
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
      if (p.protocol === 'udp') {
        this.servers.push(await UdpProxyPort.bind(p.host, p.port, this.udpMaxSessions, this.udpSweeper, this.udpCounters, (c, port) => this.onUdpSession(c, port, p.service)));
        continue;
      }
      // Half-open: a client that sends its request and then FIN still gets the whole answer.
      const server = netServer({ allowHalfOpen: true }, (socket) => this.onProxyConnection(socket, p.service));
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
    this.udpSweeper.stop();
  }

  /** UDP circuits open on this router (proxy sessions, refused-session tombstones and hosted flows), for status and tests. */
  udpCircuitCount(): number {
    return this.udpSweeper.size;
  }

  /** Re-reads hosted services from policy, tells every peer if they changed, and ends circuits policy no longer allows. */
  refreshHosted(): void {
    if (this.routes.setLocal(this.opts.policy.hostedServices().keys())) this.announceAll(true);
    this.revalidate();
    // Routers deleted or disabled since their link came up are cut off.
    for (const [peerId, mux] of this.muxes) {
      const verdict = this.opts.policy.mayLink?.(peerId);
      if (verdict !== undefined && !verdict.allow) {
        this.log.warn({ peerId, reason: verdict.reason }, 'link closed by policy');
        mux.link.close(CloseCode.AUTH_FAILED, verdict.reason);
      }
    }
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
      const verdict = this.opts.policy.mayLink?.(peerId);
      if (verdict !== undefined && !verdict.allow) {
        this.log.warn({ peerId, reason: verdict.reason }, 'link refused');
        return link.close(CloseCode.AUTH_FAILED, verdict.reason);
      }
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

  /**
   * Re-checks every circuit hosted here against the current policy and ends
   * those it no longer allows (identity deleted or disabled, policy removed,
   * policy expired), telling the dialer why. Called on each policy update.
   */
  revalidate(): number {
    let ended = 0;
    for (const [stream, req] of this.hostedCircuits) {
      const d = this.opts.policy.mayDial(req.identity, req.service);
      if (d.allow) continue;
      ended++;
      this.hostedCircuits.delete(stream);
      this.log.info({ identity: req.identity, service: req.service, reason: d.reason }, 'circuit revoked');
      stream.destroy(new CircuitEnd(CircuitError.DENIED, `access revoked: ${d.reason}`));
    }
    return ended;
  }

  /** Circuits open on all links now (a transit circuit counts on both of its links). */
  linkCircuitCount(): number {
    let n = 0;
    for (const mux of this.muxes.values()) n += mux.openCircuits;
    return n;
  }

  /** Circuits hosted here now (for status and tests). */
  hostedCircuitCount(): number {
    return this.hostedCircuits.size;
  }

  /** Hosts a circuit here: policy check, then host.v1 resolution (fixed or forwarded within allowed values), then the connect. */
  private connectHosted(req: DialRequest, acceptCircuit: (s: CircuitStream) => void, refuse: (code: number, reason: string) => void): void {
    // Every hosted circuit is remembered until it closes, so a policy change can end it.
    const accept = (s: CircuitStream): void => {
      this.hostedCircuits.set(s, req);
      s.once('close', () => this.hostedCircuits.delete(s));
      acceptCircuit(s);
    };
    const decision = this.opts.policy.mayDial(req.identity, req.service);
    if (!decision.allow) {
      // One line per refused circuit (never per packet): the audit trail of who was kept out.
      this.log.info({ identity: req.identity, service: req.service, reason: decision.reason }, 'dial denied');
      return refuse(CircuitError.DENIED, decision.reason);
    }
    const target = this.opts.policy.hostedServices().get(req.service);
    if (target === undefined) return refuse(CircuitError.NO_ROUTE, `service ${req.service} is not hosted here any more`);
    const r = resolveHostTarget(req.service, target, req);
    if (!r.ok) return refuse(r.kind === 'denied' ? CircuitError.DENIED : CircuitError.CONNECT_FAILED, r.reason);
    if (r.target.protocol === 'udp') return this.connectHostedUdp(r.target, accept, refuse);
    const { address, port, connectTimeoutMs } = r.target;
    // Half-open: a target that FINs after its last byte must not lose what is still in flight.
    const s = netConnect({ port, host: address, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      refuse(CircuitError.CONNECT_FAILED, `cannot reach ${address}:${port}: no answer within ${connectTimeoutMs / 1000} s`);
    }, connectTimeoutMs);
    s.once('connect', () => { clearTimeout(timer); accept(s); });
    s.once('error', (err) => { clearTimeout(timer); refuse(CircuitError.CONNECT_FAILED, `cannot reach ${address}:${port}: ${err.message}`); });
  }

  /** A udp target: resolve the name (bounded by the connect timeout), then a connected dgram socket carries the circuit's records. */
  private connectHostedUdp(t: ResolvedTarget, accept: (s: CircuitStream) => void, refuse: (code: number, reason: string) => void): void {
    let answered = false;
    const fail = (why: string): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      refuse(CircuitError.CONNECT_FAILED, `cannot reach udp ${t.address}:${t.port}: ${why}`);
    };
    const timer = setTimeout(() => fail(`no address within ${t.connectTimeoutMs / 1000} s`), t.connectTimeoutMs);
    const connect = (ip: string, family: number): void => {
      connectDatagram(ip, family === 6 ? 6 : 4, t.port, this.udpSweeper, this.udpCounters, (err, c) => {
        if (err !== undefined || c === undefined) return fail(err?.message ?? 'no socket');
        if (answered) { c.destroy(); return; }
        answered = true;
        clearTimeout(timer);
        accept(c);
      });
    };
    const family = isIP(t.address);
    if (family !== 0) return connect(t.address, family);
    lookup(t.address, (err, ip, fam) => (err !== null ? fail(err.message) : connect(ip, fam)));
  }

  /** A local client on a proxy port: the circuit is dialed on this router's own identity. */
  private onProxyConnection(socket: Socket, service: string): void {
    socket.on('error', () => undefined);
    this.dialLocal(socket, { service, identity: this.opts.id }, (err) => {
      if (err === undefined) return;
      this.log.info({ service, code: err.code, reason: err.reason }, 'proxy dial refused');
      // A refusal before any byte moved resets the client, as a refused connect would.
      if (!socket.destroyed) socket.resetAndDestroy();
    });
  }

  /**
   * Dials a circuit for a stream captured on this router (a proxy port
   * connection, a TCP flow or UDP flow of the TUN): checks that the service
   * may use this router, finds the next hop from announcements, and connects
   * (to a local hosted target when this router hosts the service).
   * `onResult` is called once: undefined when the far end accepted, else the
   * code and reason of the refusal. The stream's data flows once accepted.
   */
  dialLocal(stream: CircuitStream, req: DialRequest, onResult: (err: { code: number; reason: string } | undefined) => void): void {
    const local = this.opts.policy.mayIntercept?.(req.service);
    if (local !== undefined && !local.allow) return onResult({ code: CircuitError.DENIED, reason: local.reason });
    const next = this.routes.next(req.service);
    if (next === undefined) return onResult({ code: CircuitError.NO_ROUTE, reason: `no router hosting service ${req.service} is reachable` });
    if (next.local) {
      this.connectHosted(req, (s) => { splice(stream, s); onResult(undefined); }, (code, reason) => onResult({ code, reason }));
      return;
    }
    const mux = this.muxes.get(next.linkId);
    if (mux === undefined) return onResult({ code: CircuitError.LINK_DOWN, reason: `the link toward service ${req.service} is down` });
    mux.dial(stream, req, onResult);
  }

  /** A new client on a UDP proxy port: dial a udp circuit for its session; a refusal leaves a tombstone on the port. */
  private onUdpSession(c: DatagramCircuit, port: UdpProxyPort, service: string): void {
    const local = this.opts.policy.mayIntercept?.(service);
    if (local !== undefined && !local.allow) {
      this.log.info({ service, reason: local.reason }, 'udp proxy dial refused');
      return port.refused(c, Date.now());
    }
    const req: DialRequest = { service, identity: this.opts.id, protocol: 'udp' };
    const next = this.routes.next(service);
    if (next === undefined) {
      this.log.debug({ service }, 'udp proxy: no route');
      return port.refused(c, Date.now());
    }
    if (next.local) {
      this.connectHosted(req, (s) => splice(c, s), (code, reason) => {
        this.log.debug({ service, code, reason }, 'udp proxy dial refused');
        port.refused(c, Date.now());
      });
      return;
    }
    const mux = this.muxes.get(next.linkId);
    if (mux === undefined) return port.refused(c, Date.now());
    mux.dial(c, req, (err) => {
      if (err === undefined) return;
      this.log.debug({ service, code: err.code, reason: err.reason }, 'udp proxy dial refused');
      port.refused(c, Date.now());
    });
  }
}

function toWire(routes: RouteEntry[]): [string, string, number][] {
  return routes.map((r) => [r.service, r.hostRouterId, r.hops === WITHDRAWN ? WITHDRAWN : r.hops]);
}

/**
 * Joins two local circuit ends (a proxy session or TUN flow to a circuit hosted on the same
 * router): data both ways, and either closing closes the other. One that ends before both
 * directions finished resets the other (RST for TCP), so a cut transfer is never taken for a
 * complete one.
 */
function splice(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  a.once('close', () => closeAfter(a, b));
  b.once('close', () => closeAfter(b, a));
}

function closeAfter(gone: Duplex, other: Duplex): void {
  if (other.destroyed) return;
  const finished = gone.readableEnded && gone.writableFinished && other.writableFinished;
  const tcp = other as Duplex & { resetAndDestroy?: () => unknown };
  if (!finished && typeof tcp.resetAndDestroy === 'function') tcp.resetAndDestroy();
  else other.destroy();
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


