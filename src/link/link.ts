/**
 * One TLS link between two routers: handshake (who is the peer), keepalive
 * with dead-peer detection, and framed send/receive on which the router
 * multiplexes its circuits.
 *
 *   dialer                                   listener
 *     | TLS 1.3 (listener cert → controller CA) |
 *     |---- HELLO {v, id, cert, proof} -------->|  proof = KeyStore signature over the
 *     |                                         |  connection's TLS exporter value
 *     |<--- HELLO_ACK {v, id} ------------------|  (src/keys/proof.ts): works for TPM keys
 *     |<=== circuits: DIAL/DATA/CREDIT/FIN ====>|
 *     |<--- PING / PONG (every keepaliveMs) --->|  no frame for deadAfterMs → closed
 *     |---- CLOSE {code, reason} -------------->|  protocol errors carry a CloseCode
 *
 * Link states: handshaking → up → closed. Before `up`, only HELLO/HELLO_ACK
 * and CLOSE are accepted. Circuit frames are handed to `circuitHandler`
 * without copies (bodies borrowed from the socket's chunks).
 */
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { KeyStore } from '../keys/types.js';
import { signExporterProof, verifyExporterProof } from '../keys/proof.js';
import type { Logger } from '../log/index.js';
import {
  CloseCode, FrameDecoder, FrameFlags, FrameType, HEADER_BYTES, bytes, decodeControl, encodeControl, joinWithHeadroom, num, str, withHeader, writeHeader,
  type CloseCodeValue, type FrameHandler,
} from '../wire/index.js';
import { identityOf } from './trust.js';

export const LINK_PROTOCOL_VERSION = 1;

export interface LinkSettings {
  keepaliveMs: number;
  deadAfterMs: number;
  helloTimeoutMs: number;
  maxBodyBytes: number;
}

/**
 * Bodies up to this size are copied behind their header into one buffer:
 * cheaper than a corked two-piece write, which Node's TLS socket copies into
 * one buffer anyway. Covers control frames, CREDIT and small DATA (request /
 * response traffic).
 */
const SMALL_BODY_BYTES = 1024;

export const DEFAULT_LINK_SETTINGS: LinkSettings = { keepaliveMs: 15_000, deadAfterMs: 45_000, helloTimeoutMs: 10_000, maxBodyBytes: 256 * 1024 };

/** Receives the frames of circuits (circuit id ≠ 0) once the link is up. `body` is borrowed. */
export interface CircuitFrameHandler {
  (type: number, flags: number, circuitId: number, body: Buffer): void;
}

/**
 * Receives a DATA body that straddled TLS records as views of them (see
 * FrameHandler.onDataPieces), so a socket can take it without a copy.
 * `pieces` are borrowed. Without one set, the link joins the pieces into
 * one body (with frame headroom) for `circuitHandler`.
 */
export interface CircuitDataPiecesHandler {
  (flags: number, circuitId: number, pieces: Buffer[], length: number): void;
}

export interface LinkIdentity {
  /** This router's id (its certificate CN). */
  id: string;
  /** Dialers: the key that signs the proof, and the certificate chain (PEM) naming it. */
  key?: KeyStore;
  certPem?: string;
}

type State = 'handshaking' | 'up' | 'closed';

export interface Link {
  on(event: 'up', listener: (peerId: string) => void): this;
  on(event: 'close', listener: (code: CloseCodeValue, reason: string, byPeer: boolean) => void): this;
  on(event: 'drain', listener: () => void): this;
}

export class Link extends EventEmitter implements FrameHandler {
  /** Peer router id, known once the link is up. */
  peerId: string | undefined;
  /** Listener side: the certificate the dialer proved in HELLO (for callers that check it against a registry). */
  peerCertificate: X509Certificate | undefined;
  /** Last measured round trip of a PING, in ms. */
  rttMs = 0;
  circuitHandler: CircuitFrameHandler = () => undefined;
  circuitPiecesHandler: CircuitDataPiecesHandler | undefined;
  private state: State = 'handshaking';
  private readonly decoder: FrameDecoder;
  private lastReceiveMs: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly onData = (chunk: Buffer): void => {
    this.lastReceiveMs = Date.now();
    this.decoder.push(chunk, this);
  };

  constructor(
    private readonly socket: TLSSocket,
    private readonly role: 'dialer' | 'listener',
    private readonly local: LinkIdentity,
    private readonly cas: readonly X509Certificate[],
    private readonly settings: LinkSettings,
    log: Logger,
  ) {
    super();
    this.decoder = new FrameDecoder(settings.maxBodyBytes);
    this.lastReceiveMs = Date.now();
    this.log = log.child({ subsys: 'link', role });
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('drain', () => this.emit('drain'));
    socket.on('error', (err) => this.log.debug({ err }, 'link socket error'));
    socket.on('close', () => this.finish(CloseCode.NORMAL, 'connection closed', true));
    this.timer = setTimeout(() => this.close(CloseCode.AUTH_FAILED, 'no handshake within the time limit'), settings.helloTimeoutMs);
    this.timer.unref();
    if (role === 'dialer') void this.sendHello();
  }

  get isUp(): boolean {
    return this.state === 'up';
  }

  /**
   * Sends one DATA frame without copying the payload (see sendFrame).
   * Returns false when the socket's buffer is full: wait for 'drain' before
   * sending more.
   */
  sendData(circuitId: number, payload: Buffer, fin = false): boolean {
    return this.sendFrame(FrameType.DATA, fin ? FrameFlags.FIN : 0, circuitId, payload);
  }

  /**
   * Sends a frame. The socket gets one buffer whenever that costs no large
   * copy, because Node's TLS socket copies the pieces of a corked write into
   * one buffer anyway: a small body is copied behind its header; a body with
   * frame headroom (one the decoder copied, forwarded by a transit router)
   * gets its header written in front; any other body goes as header + body
   * in one corked write.
   */
  sendFrame(type: number, flags: number, circuitId: number, body: Buffer): boolean {
    if (this.state === 'closed') return false;
    const n = body.length;
    let ok: boolean;
    if (n <= SMALL_BODY_BYTES) {
      const f = Buffer.allocUnsafe(HEADER_BYTES + n);
      writeHeader(f, 0, type, flags, circuitId, n);
      if (n > 0) body.copy(f, HEADER_BYTES);
      ok = this.socket.write(f);
    } else {
      const framed = withHeader(body, type, flags, circuitId);
      if (framed !== undefined) ok = this.socket.write(framed);
      else {
        const h = Buffer.allocUnsafe(HEADER_BYTES);
        writeHeader(h, 0, type, flags, circuitId, n);
        this.socket.cork();
        this.socket.write(h);
        ok = this.socket.write(body);
        this.socket.uncork();
      }
    }
    return ok && this.socket.writableLength < this.socket.writableHighWaterMark;
  }

  sendControl(type: number, circuitId: number, message: object): boolean {
    return this.sendFrame(type, 0, circuitId, encodeControl(message));
  }

  /** Closes the link, telling the peer why. Idempotent. */
  close(code: CloseCodeValue, reason: string): void {
    if (this.state === 'closed') return;
    const body = encodeControl({ code, reason });
    const h = Buffer.allocUnsafe(HEADER_BYTES);
    writeHeader(h, 0, FrameType.CLOSE, 0, 0, body.length);
    this.socket.end(Buffer.concat([h, body]));
    this.finish(code, reason, false);
    // A peer that does not read its end gets cut off.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  // ---- FrameHandler ------------------------------------------------------

  onDataPieces(flags: number, circuitId: number, pieces: Buffer[], length: number): void {
    const h = this.circuitPiecesHandler;
    if (h !== undefined && circuitId !== 0 && this.state === 'up') return h(flags, circuitId, pieces, length);
    this.onFrame(FrameType.DATA, flags, circuitId, joinWithHeadroom(pieces, length));
  }

  onFrame(type: number, flags: number, circuitId: number, body: Buffer): void {
    if (circuitId !== 0) {
      if (this.state !== 'up') return this.close(CloseCode.AUTH_FAILED, 'circuit frame before the handshake');
      this.circuitHandler(type, flags, circuitId, body);
      return;
    }
    switch (type) {
      case FrameType.HELLO: return this.onHello(body);
      case FrameType.HELLO_ACK: return this.onHelloAck(body);
      case FrameType.PING:
        if (this.state === 'up') this.sendFrame(FrameType.PONG, 0, 0, body.length <= 16 ? body : body.subarray(0, 16));
        return;
      case FrameType.PONG:
        if (body.length === 8) this.rttMs = Date.now() - Number(body.readBigUInt64BE(0));
        return;
      case FrameType.CLOSE: {
        const m = decodeControl(body);
        const code = (m && num(m, 'code')) ?? CloseCode.NORMAL;
        this.finish(code as CloseCodeValue, (m && str(m, 'reason')) ?? '', true);
        this.socket.destroy();
        return;
      }
      default:
        if (this.state !== 'up') return this.close(CloseCode.AUTH_FAILED, 'frame before the handshake');
        this.circuitHandler(type, flags, circuitId, body);
    }
  }

  onProtocolError(code: CloseCodeValue, detail: string): void {
    this.log.warn({ peerId: this.peerId, code, detail }, 'link protocol error');
    this.close(code, detail);
  }

  // ---- handshake ----------------------------------------------------------

  private async sendHello(): Promise<void> {
    const { key, certPem } = this.local;
    if (key === undefined || certPem === undefined) return this.close(CloseCode.AUTH_FAILED, 'dialer has no key');
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certPem)?.[0];
    if (leaf === undefined) return this.close(CloseCode.AUTH_FAILED, 'dialer has no certificate');
    try {
      const proof = await signExporterProof(this.socket, key);
      if (this.state !== 'handshaking') return;
      this.sendControl(FrameType.HELLO, 0, { v: LINK_PROTOCOL_VERSION, id: this.local.id, cert: new X509Certificate(leaf).raw, proof });
    } catch (err) {
      this.log.error({ err }, 'cannot sign the link proof');
      this.close(CloseCode.AUTH_FAILED, 'dialer could not sign its proof');
    }
  }

  private onHello(body: Buffer): void {
    if (this.role !== 'listener' || this.state !== 'handshaking') return this.close(CloseCode.PROTOCOL_VERSION, 'unexpected HELLO');
    const m = decodeControl(body);
    const certDer = m && bytes(m, 'cert', 16384);
    const proof = m && bytes(m, 'proof', 1024);
    const version = m && num(m, 'v');
    if (m === undefined || certDer === undefined || proof === undefined || version === undefined) return this.close(CloseCode.MALFORMED_BODY, 'malformed HELLO');
    if (version !== LINK_PROTOCOL_VERSION) return this.close(CloseCode.PROTOCOL_VERSION, `link protocol ${version} not supported (${LINK_PROTOCOL_VERSION})`);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certDer);
    } catch {
      return this.close(CloseCode.AUTH_FAILED, 'HELLO certificate cannot be parsed');
    }
    const who = identityOf(cert, this.cas, Date.now());
    if ('reason' in who) return this.close(CloseCode.AUTH_FAILED, who.reason);
    if (!verifyExporterProof(this.socket, cert, proof)) return this.close(CloseCode.AUTH_FAILED, 'proof of possession does not verify on this connection');
    this.peerCertificate = cert;
    this.sendControl(FrameType.HELLO_ACK, 0, { v: LINK_PROTOCOL_VERSION, id: this.local.id });
    this.up(who.id);
  }

  private onHelloAck(body: Buffer): void {
    if (this.role !== 'dialer' || this.state !== 'handshaking') return this.close(CloseCode.PROTOCOL_VERSION, 'unexpected HELLO_ACK');
    const m = decodeControl(body);
    const id = m && str(m, 'id', 256);
    if (id === undefined) return this.close(CloseCode.MALFORMED_BODY, 'malformed HELLO_ACK');
    // The TLS client checked that the listener's certificate chains to the CA and names the
    // address dialed; its CN must also be the id it claims, or a router could pose as another
    // (and draw that router's circuits through its announcements).
    const peer = typeof (this.socket as TLSSocket).getPeerX509Certificate === 'function' ? (this.socket as TLSSocket).getPeerX509Certificate() : undefined;
    if (peer === undefined) return this.close(CloseCode.AUTH_FAILED, 'listener presented no certificate');
    const who = identityOf(peer, this.cas, Date.now());
    if ('reason' in who) return this.close(CloseCode.AUTH_FAILED, `listener certificate: ${who.reason}`);
    if (who.id !== id) return this.close(CloseCode.AUTH_FAILED, `listener claims id ${id} but its certificate is for ${who.id}`);
    this.up(id);
  }

  private up(peerId: string): void {
    this.state = 'up';
    this.peerId = peerId;
    clearTimeout(this.timer);
    this.timer = setInterval(() => this.tick(), Math.max(50, Math.min(this.settings.keepaliveMs, this.settings.deadAfterMs / 3)));
    this.timer.unref();
    this.log.info({ peerId }, 'link up');
    this.emit('up', peerId);
    this.sendPing(Date.now()); // rttMs from the start: circuit windows grow by it (router/mux.ts)
  }

  /** The link's one coarse timer: dead-peer detection and keepalive. */
  private tick(): void {
    const now = Date.now();
    if (now - this.lastReceiveMs > this.settings.deadAfterMs) {
      this.close(CloseCode.KEEPALIVE_TIMEOUT, `nothing received for ${now - this.lastReceiveMs} ms`);
      this.socket.destroy();
      return;
    }
    this.sendPing(now);
  }

  private sendPing(now: number): void {
    if (this.state !== 'up') return;
    const ping = Buffer.allocUnsafe(8);
    ping.writeBigUInt64BE(BigInt(now), 0);
    this.sendFrame(FrameType.PING, 0, 0, ping);
  }

  private finish(code: CloseCodeValue, reason: string, byPeer: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.timer);
    clearInterval(this.timer);
    this.decoder.reset();
    this.socket.off('data', this.onData);
    this.log.info({ peerId: this.peerId, code, reason, byPeer }, 'link down');
    this.emit('close', code, reason, byPeer);
  }
}
