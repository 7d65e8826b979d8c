/**
 * Upstream forwarding for names the tun mode does not intercept: the query
 * goes to the configured resolvers (`tunnel.tun.upstream`) and their answer
 * goes back to the client. I/O shell: owns one UDP socket per address family,
 * short-lived TCP connections, and one coarse timer while queries are out.
 *
 *   client query ──▶ copy, new random id ──▶ upstream[i] (UDP, or TCP if the
 *        ▲                                     client used TCP)
 *        │                                        │ answer: same id, same
 *        │                                        ▼ question, from upstream[i]
 *        └──── client's id restored ◀── TC=1 over UDP? ask upstream[i] over TCP
 *
 *   no answer within timeoutMs ──▶ next upstream; after `attempts` tries ──▶ SERVFAIL
 *
 * Ids are rewritten because clients' ids collide with each other, and are
 * random (RFC 5452 §9.2) so that an off-path host cannot guess them; an answer
 * is taken only from the upstream asked, with the id and question sent
 * (RFC 5452 §9.1). TCP follows RFC 7766: one connection per query, 2-byte
 * length framing; it is used when the client asked over TCP, and when a UDP
 * answer came back truncated, in which case the full answer is passed on if
 * it fits the client's UDP size and the truncated one otherwise (the client
 * then retries over TCP itself, RFC 7766 §5).
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket as TcpSocket } from 'node:net';
import { randomInt } from 'node:crypto';
import type { Logger } from '../log/index.js';
import type { HostPort } from '../config/address.js';
import { EdgeError } from '../errors.js';
import { MessageReader, writeMessage } from './framing.js';
import { HEADER_BYTES, Rcode, errorReply, isTruncated, questionEnd } from './server.js';

/** Time to wait for one upstream's answer (RFC 1536 §1 warns against retransmitting faster than ~1 s per server). */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 2000;
/** Queries out at once; more get SERVFAIL at once instead of unbounded memory. */
export const DEFAULT_MAX_PENDING = 1024;

/** How the client asked, which decides how we ask and what fits in the reply. */
export interface ForwardOptions {
  /** The client asked over TCP. */
  readonly tcp: boolean;
  /** The query carried OPT (so a SERVFAIL we make carries one too). */
  readonly edns: boolean;
  /** Largest UDP reply the client accepts (512 without EDNS). */
  readonly maxUdpBytes: number;
}

/** Receives the answer for the client (owned), id restored; called exactly once per query unless the forwarder stops first. */
export type ForwardCallback = (reply: Buffer) => void;

export interface ForwarderOptions {
  /** Resolvers, tried in turn (parsed `IP:PORT`). At least one. */
  readonly upstream: readonly HostPort[];
  readonly log: Logger;
  /** Per try. Default {@link DEFAULT_UPSTREAM_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Tries per query, moving to the next upstream each time. Default: each upstream once, and at least 2. */
  readonly attempts?: number;
  /** Default {@link DEFAULT_MAX_PENDING} (at most 4096). */
  readonly maxPending?: number;
  /** Monotonic milliseconds. Default `performance.now`. */
  readonly clock?: () => number;
}

/** Counters of the forwarder. */
export class ForwarderCounters {
  sent = 0;
  answered = 0;
  retried = 0;
  servfail = 0;
  overload = 0;
  tcpFallback = 0;
  /** UDP messages that matched no query (late, spoofed, from the wrong address, wrong question). */
  unmatched = 0;
  /** UDP sends the kernel refused (no route to the upstream, for example); the try then times out. */
  sendErrors = 0;
}

/** One query out upstream. */
class Pending {
  readonly id: number;
  readonly clientId: number;
  /** Our copy of the query, carrying `id`. */
  readonly query: Buffer;
  readonly questionEnd: number;
  readonly opts: ForwardOptions;
  readonly done: ForwardCallback;
  server: number;
  attempt = 0;
  deadlineMs = 0;
  /** Currently asking over TCP (client on TCP, or after a truncated UDP answer). */
  tcp: boolean;
  /** The truncated UDP answer, kept while the TCP retry runs. */
  truncated: Buffer | undefined = undefined;
  socket: TcpSocket | undefined = undefined;

  constructor(id: number, clientId: number, query: Buffer, qEnd: number, opts: ForwardOptions, server: number, done: ForwardCallback) {
    this.id = id;
    this.clientId = clientId;
    this.query = query;
    this.questionEnd = qEnd;
    this.opts = opts;
    this.done = done;
    this.server = server;
    this.tcp = opts.tcp;
  }
}

/** Closes a UDP socket; resolves once its handle is gone. */
export function closeUdp(socket: UdpSocket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

/** Canonical text of an address, so `::1` and `0:0::1` compare equal. */
function canonicalHost(host: string, family: number): string {
  if (family !== 6) return host;
  try {
    return new URL(`http://[${host}]/`).hostname;
  } catch {
    return host;
  }
}

/**
 * Forwards queries to upstream resolvers.
 *
 * @example
 * ```ts
 * const fwd = new Forwarder({ upstream: [{ host: '192.0.2.53', port: 53, family: 4 }], log });
 * await fwd.start();
 * fwd.forward(query, { tcp: false, edns: true, maxUdpBytes: 1232 }, (reply) => socket.send(reply, port, address));
 * ```
 */
export class Forwarder {
  readonly counters = new ForwarderCounters();
  private readonly upstream: readonly HostPort[];
  /** Upstream hosts in canonical form, to compare with a datagram's source. */
  private readonly upstreamHosts: readonly string[];
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly maxPending: number;
  private readonly clock: () => number;
  /** Queries out, keyed by our id; insertion order is deadline order (a retry re-inserts). */
  private readonly pending = new Map<number, Pending>();
  private udp4: UdpSocket | undefined;
  private udp6: UdpSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The upstream that answered last: asked first. */
  private preferred = 0;
  private stopped = false;
  /** One callback for every UDP send: counts failures instead of an 'error' event (and a log line) per query. */
  private readonly onSent = (err: Error | null): void => {
    if (err !== null) this.counters.sendErrors++;
  };

  constructor(opts: ForwarderOptions) {
    if (opts.upstream.length === 0) throw new EdgeError('ERR_DNS', 'the DNS forwarder needs at least one upstream resolver');
    this.upstream = opts.upstream;
    this.upstreamHosts = opts.upstream.map((u) => canonicalHost(u.host, u.family));
    this.log = opts.log.child({ subsys: 'dns' });
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
    this.attempts = opts.attempts ?? Math.max(2, opts.upstream.length);
    this.maxPending = Math.min(opts.maxPending ?? DEFAULT_MAX_PENDING, 4096);
    this.clock = opts.clock ?? (() => performance.now());
  }

  /** Opens the UDP sockets (ephemeral ports) for the families the upstreams use. */
  async start(): Promise<void> {
    if (this.upstream.some((u) => u.family !== 6)) this.udp4 = await this.openUdp('udp4');
    if (this.upstream.some((u) => u.family === 6)) this.udp6 = await this.openUdp('udp6');
    this.log.info({ upstream: this.upstream.map((u) => (u.family === 6 ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`)) }, 'DNS forwarder ready');
  }

  /** Queries out now. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends `query` (borrowed: copied here) upstream; `done` gets the answer or a SERVFAIL.
   * The query must be one the handler chose to forward (a readable header and question).
   */
  forward(query: Buffer, opts: ForwardOptions, done: ForwardCallback): void {
    const qEnd = query.length >= HEADER_BYTES ? questionEnd(query, HEADER_BYTES) : -1;
    if (this.stopped || qEnd < 0 || this.pending.size >= this.maxPending) {
      this.counters.overload++;
      const reply = errorReply(query, Rcode.SERVFAIL, opts.edns, true);
      if (reply !== undefined) done(reply);
      return;
    }
    let id = randomInt(0x10000);
    while (this.pending.has(id)) id = randomInt(0x10000);
    const copy = Buffer.from(query);
    copy.writeUInt16BE(id, 0);
    const p = new Pending(id, query.readUInt16BE(0), copy, qEnd, opts, this.preferred, done);
    this.send(p);
  }

  /** Closes sockets and drops queries still out (their clients get nothing: the listener is going away too). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const p of this.pending.values()) p.socket?.destroy();
    this.pending.clear();
    const closing = [this.udp4, this.udp6].map((socket) => (socket === undefined ? undefined : closeUdp(socket)));
    this.udp4 = undefined;
    this.udp6 = undefined;
    await Promise.all(closing);
  }

  private openUdp(type: 'udp4' | 'udp6'): Promise<UdpSocket> {
    const socket = createSocket(type);
    return new Promise((resolve, reject) => {
      socket.once('error', (err) => {
        reject(new EdgeError('ERR_DNS', `cannot open a ${type} socket to reach the upstream DNS resolvers: ${err.message}`, { cause: err }));
      });
      socket.bind(0, () => {
        socket.removeAllListeners('error');
        socket.on('error', (err) => this.log.warn({ err }, 'DNS forwarder socket error'));
        socket.on('message', (msg, rinfo) => this.onUdp(msg, rinfo));
        resolve(socket);
      });
    });
  }

  /** (Re)sends `p` to `upstream[p.server]` and arms its deadline. */
  private send(p: Pending): void {
    this.counters.sent++;
    p.deadlineMs = this.clock() + this.timeoutMs;
    // Re-inserting keeps the map in deadline order: every try gets the same timeout.
    this.pending.delete(p.id);
    this.pending.set(p.id, p);
    this.armTimer();
    const server = this.upstream[p.server]!;
    if (p.tcp) {
      this.sendTcp(p, server);
      return;
    }
    const socket = server.family === 6 ? this.udp6 : this.udp4;
    socket?.send(p.query, server.port, server.host, this.onSent);
  }

  private sendTcp(p: Pending, server: HostPort): void {
    const socket = connect({ host: server.host, port: server.port });
    p.socket = socket;
    const reader = new MessageReader();
    socket.setNoDelay(true);
    socket.on('connect', () => writeMessage(socket, p.query));
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      for (let msg = reader.next(); msg !== undefined; msg = reader.next()) {
        if (p.socket === socket && this.matches(p, msg)) {
          this.finish(p, msg);
          return;
        }
      }
    });
    // A refused or reset connection moves on at once instead of waiting for the deadline.
    socket.on('error', () => { if (p.socket === socket && this.pending.get(p.id) === p) this.retry(p); });
    socket.on('close', () => { if (p.socket === socket && this.pending.get(p.id) === p) this.retry(p); });
  }

  private onUdp(msg: Buffer, rinfo: RemoteInfo): void {
    const p = msg.length >= HEADER_BYTES ? this.pending.get(msg.readUInt16BE(0)) : undefined;
    if (p === undefined || p.tcp || !this.fromServer(p, rinfo) || !this.matches(p, msg)) {
      this.counters.unmatched++;
      return;
    }
    if (isTruncated(msg)) {
      // RFC 7766 §5: a truncated answer is retried over TCP, same upstream, same try.
      this.counters.tcpFallback++;
      p.truncated = msg;
      p.tcp = true;
      this.send(p);
      return;
    }
    this.finish(p, msg);
  }

  private fromServer(p: Pending, rinfo: RemoteInfo): boolean {
    const server = this.upstream[p.server]!;
    return rinfo.port === server.port && canonicalHost(rinfo.address, server.family) === this.upstreamHosts[p.server];
  }

  /** Same id, a response, and the question we sent (RFC 5452 §9.1). */
  private matches(p: Pending, msg: Buffer): boolean {
    if (msg.length < p.questionEnd || msg.readUInt16BE(0) !== p.id || (msg[2]! & 0x80) === 0) return false;
    return msg.readUInt16BE(4) === 1 && msg.compare(p.query, HEADER_BYTES, p.questionEnd, HEADER_BYTES, p.questionEnd) === 0;
  }

  private finish(p: Pending, answer: Buffer): void {
    this.pending.delete(p.id);
    this.closeTcp(p);
    this.preferred = p.server;
    this.counters.answered++;
    let reply = answer;
    // A client on UDP gets the TCP answer only if it fits what it can take; otherwise the truncated one.
    if (!p.opts.tcp && p.truncated !== undefined && answer.length > p.opts.maxUdpBytes) reply = p.truncated;
    reply.writeUInt16BE(p.clientId, 0);
    p.done(reply);
  }

  /** Next try on the next upstream, or SERVFAIL when the tries are used up. */
  private retry(p: Pending): void {
    this.closeTcp(p);
    p.attempt++;
    if (p.attempt >= this.attempts) {
      this.pending.delete(p.id);
      this.counters.servfail++;
      const reply = errorReply(p.query, Rcode.SERVFAIL, p.opts.edns, true)!;
      reply.writeUInt16BE(p.clientId, 0);
      p.done(reply);
      return;
    }
    this.counters.retried++;
    p.server = (p.server + 1) % this.upstream.length;
    p.tcp = p.opts.tcp;
    p.truncated = undefined;
    this.send(p);
  }

  private closeTcp(p: Pending): void {
    const socket = p.socket;
    if (socket === undefined) return;
    p.socket = undefined;
    socket.destroy();
  }

  /** One coarse timer while queries are out (a quarter of the timeout, at most 250 ms). */
  private armTimer(): void {
    if (this.timer !== undefined) return;
    const tickMs = Math.max(10, Math.min(250, this.timeoutMs / 4));
    this.timer = setInterval(() => this.tick(), tickMs);
  }

  private tick(): void {
    const now = this.clock();
    const expired: Pending[] = [];
    for (const p of this.pending.values()) {
      if (p.deadlineMs > now) break;
      expired.push(p);
    }
    for (const p of expired) this.retry(p);
    if (this.pending.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
