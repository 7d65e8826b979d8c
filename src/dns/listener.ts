/**
 * The DNS server's sockets: UDP and TCP on each listen address
 * (`tunnel.tun.dnsListen`: the TUN-side DNS address, and LAN addresses for
 * clientless devices behind a subnet gateway). I/O shell around the pure
 * handler (server.ts): each message is handed to it, and its decision is
 * carried out here: reply, forward (forwarder.ts), or drop.
 *
 * Bounds, so that a LAN client cannot make the router work or hold memory
 * without limit:
 *   - UDP: one handler call per datagram; forwarded queries are capped by the forwarder.
 *   - TCP: at most `maxTcpConnections` (more are closed by the kernel-side
 *     accept path of net.Server); a connection idle for `tcpIdleMs` is closed
 *     (RFC 7766 §6.2.3 asks servers to time idle clients out); at most
 *     `maxTcpInflight` forwarded queries per connection, past which reading
 *     pauses (TCP backpressure does the rest); one message is at most 64 KiB
 *     by its framing.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from '../log/index.js';
import type { HostPort } from '../config/address.js';
import { EdgeError } from '../errors.js';
import { MessageReader, writeMessage } from './framing.js';
import { closeUdp, type Forwarder } from './forwarder.js';
import type { DnsHandler } from './server.js';

/** Idle TCP client connections are closed after this (RFC 7766 §6.2.3 suggests seconds, not minutes). */
export const DEFAULT_TCP_IDLE_MS = 10_000;
export const DEFAULT_MAX_TCP_CONNECTIONS = 128;
export const DEFAULT_MAX_TCP_INFLIGHT = 16;
/** Tries to find a port free for both UDP and TCP when asked for port 0. */
const EPHEMERAL_BIND_TRIES = 8;

export interface DnsListenerOptions {
  /** Addresses to serve on (port 0: an ephemeral port, the same for UDP and TCP; see `addresses`). */
  readonly listen: readonly HostPort[];
  readonly handler: DnsHandler;
  /** Where forwarded queries go; absent: the handler never forwards. */
  readonly forwarder?: Forwarder;
  readonly log: Logger;
  /** Monotonic milliseconds, the clock of the pool. Default `performance.now`. */
  readonly clock?: () => number;
  readonly tcpIdleMs?: number;
  readonly maxTcpConnections?: number;
  readonly maxTcpInflight?: number;
}

/** A bound listen address. */
export interface BoundAddress {
  readonly host: string;
  readonly port: number;
}

function label(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** What to tell an operator about a bind failure. */
function bindHint(code: string | undefined): string {
  switch (code) {
    case 'EADDRINUSE': return 'another process holds it (a local resolver such as systemd-resolved or dnsmasq?)';
    case 'EACCES': return 'ports below 1024 need root or CAP_NET_BIND_SERVICE';
    case 'EADDRNOTAVAIL': return 'no interface has this address (is the TUN up, or the LAN address right?)';
    default: return code ?? 'unknown error';
  }
}

/** One client connection over TCP. */
class TcpClient {
  private readonly reader = new MessageReader();
  private inflight = 0;
  private paused = false;
  private closed = false;

  constructor(private readonly socket: TcpSocket, private readonly owner: DnsListener) {
    socket.setNoDelay(true);
    socket.setTimeout(owner.tcpIdleMs);
    socket.on('timeout', () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => { this.closed = true; owner.clients.delete(this); });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
    for (let msg = this.reader.next(); msg !== undefined; msg = this.reader.next()) {
      const decision = this.owner.handler.answer(msg, this.owner.clock());
      if (decision.kind === 'reply') writeMessage(this.socket, decision.reply);
      else if (decision.kind === 'forward') this.forward(decision.query, decision.edns, decision.maxUdpBytes);
      if (this.inflight >= this.owner.maxTcpInflight) {
        // Stop reading; the rest of what was read waits in the reader.
        this.paused = true;
        this.socket.pause();
        return;
      }
    }
  }

  private forward(query: Buffer, edns: boolean, maxUdpBytes: number): void {
    const forwarder = this.owner.forwarder;
    if (forwarder === undefined) return;
    this.inflight++;
    forwarder.forward(query, { tcp: true, edns, maxUdpBytes }, (reply) => {
      this.inflight--;
      if (this.closed) return;
      writeMessage(this.socket, reply);
      if (this.paused && this.inflight < this.owner.maxTcpInflight) {
        this.paused = false;
        this.socket.resume();
        this.onData(Buffer.alloc(0));
      }
    });
  }
}

/**
 * UDP and TCP DNS servers on a set of addresses.
 *
 * @example
 * ```ts
 * const listener = new DnsListener({ listen: [{ host: '100.64.0.2', port: 53, family: 4 }], handler, forwarder, log });
 * await listener.start();   // EdgeError ERR_DNS naming the address if a bind fails
 * await listener.stop();
 * ```
 */
export class DnsListener {
  readonly handler: DnsHandler;
  readonly forwarder: Forwarder | undefined;
  readonly clock: () => number;
  readonly tcpIdleMs: number;
  readonly maxTcpInflight: number;
  /** Open TCP client connections. */
  readonly clients = new Set<TcpClient>();
  private readonly listen: readonly HostPort[];
  private readonly log: Logger;
  private readonly maxTcpConnections: number;
  private readonly udp: UdpSocket[] = [];
  private readonly tcp: Server[] = [];
  private readonly bound: BoundAddress[] = [];
  /** UDP replies the kernel refused to send (counted, not logged: that would be a line per packet). */
  replySendErrors = 0;
  private readonly onSent = (err: Error | null): void => {
    if (err !== null) this.replySendErrors++;
  };

  constructor(opts: DnsListenerOptions) {
    this.listen = opts.listen;
    this.handler = opts.handler;
    this.forwarder = opts.forwarder;
    this.log = opts.log.child({ subsys: 'dns' });
    this.clock = opts.clock ?? (() => performance.now());
    this.tcpIdleMs = opts.tcpIdleMs ?? DEFAULT_TCP_IDLE_MS;
    this.maxTcpConnections = opts.maxTcpConnections ?? DEFAULT_MAX_TCP_CONNECTIONS;
    this.maxTcpInflight = opts.maxTcpInflight ?? DEFAULT_MAX_TCP_INFLIGHT;
  }

  /** The addresses served (ports resolved when 0 was asked), in `listen` order; empty before start. */
  get addresses(): readonly BoundAddress[] {
    return this.bound;
  }

  /** Binds every address, UDP and TCP; on any failure closes what it opened and throws EdgeError ERR_DNS. */
  async start(): Promise<void> {
    try {
      for (const address of this.listen) await this.bindOne(address);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.log.info({ listen: this.bound.map((b) => label(b.host, b.port)) }, 'DNS server listening');
  }

  /** Closes every socket and client connection. */
  async stop(): Promise<void> {
    const closing = this.udp.map(closeUdp);
    this.udp.length = 0;
    for (const client of this.clients) client.destroy();
    for (const server of this.tcp) closing.push(new Promise<void>((resolve) => server.close(() => resolve())));
    this.tcp.length = 0;
    this.bound.length = 0;
    await Promise.all(closing);
  }

  private async bindOne(address: HostPort): Promise<void> {
    const tries = address.port === 0 ? EPHEMERAL_BIND_TRIES : 1;
    for (let i = 1; ; i++) {
      const udp = await this.bindUdp(address);
      const port = udp.address().port;
      try {
        const tcp = await this.bindTcp(address.host, port);
        this.udp.push(udp);
        this.tcp.push(tcp);
        this.bound.push({ host: address.host, port });
        return;
      } catch (err) {
        await closeUdp(udp);
        // With port 0 the UDP port may be taken for TCP: pick another.
        if (i >= tries || (err as EdgeError).details?.code !== 'EADDRINUSE') throw err;
      }
    }
  }

  private bindUdp(address: HostPort): Promise<UdpSocket> {
    const socket = createSocket(address.family === 6 ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        socket.close(() => reject(bindError('udp', address.host, address.port, err)));
      });
      socket.bind(address.port, address.host, () => {
        socket.removeAllListeners('error');
        socket.on('error', (err) => this.log.warn({ err }, 'DNS UDP socket error'));
        socket.on('message', (msg, rinfo) => this.onUdp(socket, msg, rinfo));
        resolve(socket);
      });
    });
  }

  private bindTcp(host: string, port: number): Promise<Server> {
    const server = createServer((socket) => this.clients.add(new TcpClient(socket, this)));
    server.maxConnections = this.maxTcpConnections;
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(bindError('tcp', host, port, err)));
      server.listen({ host, port, exclusive: true }, () => {
        server.removeAllListeners('error');
        server.on('error', (err) => this.log.warn({ err }, 'DNS TCP server error'));
        resolve(server);
      });
    });
  }

  private onUdp(socket: UdpSocket, msg: Buffer, rinfo: RemoteInfo): void {
    const decision = this.handler.answer(msg, this.clock());
    if (decision.kind === 'reply') {
      socket.send(decision.reply, rinfo.port, rinfo.address, this.onSent);
    } else if (decision.kind === 'forward' && this.forwarder !== undefined) {
      this.forwarder.forward(decision.query, { tcp: false, edns: decision.edns, maxUdpBytes: decision.maxUdpBytes }, (reply) => {
        // The answer may come after stop(): sending on a closed socket throws.
        if (this.udp.includes(socket)) socket.send(reply, rinfo.port, rinfo.address, this.onSent);
      });
    }
  }
}

function bindError(proto: 'udp' | 'tcp', host: string, port: number, err: NodeJS.ErrnoException): EdgeError {
  return new EdgeError('ERR_DNS', `cannot listen for DNS on ${label(host, port)} (${proto}): ${bindHint(err.code)}`, {
    cause: err,
    details: { listen: label(host, port), protocol: proto, code: err.code },
  });
}
