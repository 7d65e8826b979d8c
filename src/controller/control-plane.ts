/**
 * The controller end of router control links: policy pushed to routers.
 *
 * A router opens `GET /edge/client/v1/router/control` with
 * `Upgrade: ztedge-link/1` on the API's HTTPS port; the connection then
 * speaks the link protocol (src/link, same frames as router links), the
 * router as dialer proving its key by the exporter signature, the controller
 * as listener. Only an enrolled, enabled edge router whose certificate is a
 * current authenticator gets through.
 *
 *   router ── POLICY_SYNC {known?, full?} ──► controller
 *          ◄── POLICY {full: JWS} | {delta: JWS} ──
 *
 * After every committed store write the controller rebuilds each connected
 * router's snapshot and sends what changed as a signed delta (or a full
 * snapshot when it does not know the router's copy). A copy past half its
 * offline window gets an empty delta with a fresh notAfter (a re-signature).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { Link, parsePemBundle } from '../link/index.js';
import type { Logger } from '../log/index.js';
import { diffContent } from '../policy/delta.js';
import { applyPostureResponses, type PostureResponse } from '../policy/posture.js';
import { POLICY_DELTA_JWS_TYPE, signJws, signSnapshot } from '../policy/signed.js';
import { contentOf, type PolicySnapshot } from '../policy/snapshot.js';
import { CloseCode, FrameType, decodeControl } from '../wire/index.js';
import type { ControllerContext } from './context.js';
import { certFingerprint } from './pki.js';
import { buildRouterSnapshot, buildSharedContent, type SharedContent } from './routes/router-policy.js';

export const CONTROL_PATH = '/edge/client/v1/router/control';
export const CONTROL_UPGRADE = 'ztedge-link/1';
/** Control frames carry whole snapshots: tens of thousands of identities fit. */
const CONTROL_MAX_BODY = 64 * 1024 * 1024;
/** Coalesce bursts of writes (a script creating 100 policies) into one push. */
const PUSH_DELAY_MS = 20;

interface RouterSession {
  readonly routerId: string;
  readonly link: Link;
  /** What the router holds, as far as we know: the last snapshot we sent it (or it confirmed). */
  sent: PolicySnapshot | undefined;
  refreshTimer: NodeJS.Timeout | undefined;
}

export class ControlPlane {
  private readonly sessions = new Map<string, RouterSession>();
  private readonly log: Logger;
  private readonly cas;
  private readonly localId: string;
  private pushTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  /** Shared collections of the current push cycle: built once for all routers. */
  private shared: SharedContent | undefined;

  constructor(private readonly ctx: ControllerContext) {
    this.log = ctx.log.child({ subsys: 'control-plane' });
    this.cas = parsePemBundle(ctx.pki.caBundlePem);
    this.localId = /(?:^|\n)CN=([^\n]+)/.exec(ctx.pki.server.subject)?.[1] ?? 'controller';
    this.unsubscribe = ctx.store.onChange(() => this.schedulePush());
  }

  get connectedRouters(): string[] {
    return [...this.sessions.keys()];
  }

  /** The HTTP server's 'upgrade' event. Anything but our protocol on our path is refused. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== CONTROL_PATH || (req.headers.upgrade ?? '').toLowerCase() !== CONTROL_UPGRADE) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${CONTROL_UPGRADE}\r\nConnection: Upgrade\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    const tls = socket as TLSSocket;
    const link = new Link(tls, 'listener', { id: this.localId }, this.cas, { keepaliveMs: 15_000, deadAfterMs: 45_000, helloTimeoutMs: 10_000, maxBodyBytes: CONTROL_MAX_BODY }, this.ctx.log);
    link.once('up', (routerId: string) => this.onUp(link, routerId));
  }

  close(): void {
    this.unsubscribe();
    clearTimeout(this.pushTimer);
    for (const s of this.sessions.values()) {
      clearTimeout(s.refreshTimer);
      s.link.close(CloseCode.SHUTDOWN, 'controller stopping');
    }
    this.sessions.clear();
  }

  private onUp(link: Link, routerId: string): void {
    const { store } = this.ctx;
    const identity = store.identities.get(routerId);
    const cert = link.peerCertificate;
    const auth = cert === undefined ? undefined : store.authenticatorByFingerprint(certFingerprint(cert.raw));
    let refusal: string | undefined;
    if (identity === undefined || identity.type !== 'Router' || store.edgeRouters.get(routerId) === undefined) refusal = `${routerId} is not an edge router of this controller`;
    else if (identity.disabled) refusal = `edge router ${identity.name} is disabled`;
    else if (auth?.identityId !== routerId) refusal = `edge router ${identity.name} presented a certificate that is no longer its credential (re-enrolled or revoked)`;
    if (refusal !== undefined) {
      this.log.warn({ routerId, reason: refusal }, 'control link refused');
      link.close(CloseCode.AUTH_FAILED, refusal);
      return;
    }
    const old = this.sessions.get(routerId);
    if (old !== undefined) {
      clearTimeout(old.refreshTimer);
      old.link.close(CloseCode.NORMAL, 'replaced by a newer control link');
    }
    const session: RouterSession = { routerId, link, sent: undefined, refreshTimer: undefined };
    this.sessions.set(routerId, session);
    this.log.info({ routerId, name: identity!.name }, 'router control link up');
    link.circuitHandler = (type, _flags, circuitId, body) => {
      const m = circuitId === 0 ? decodeControl(body) : undefined;
      if (type === FrameType.POLICY_SYNC && m !== undefined) return this.onSync(session, typeof m.known === 'string' ? m.known : undefined, m.full === true);
      if (type === FrameType.POSTURE && m !== undefined) return this.onPosture(session, m.responses);
      link.close(CloseCode.PROTOCOL_VERSION, `unexpected or malformed frame (type ${type}) on a control link`);
    };
    link.once('close', () => {
      clearTimeout(session.refreshTimer);
      if (this.sessions.get(routerId) === session) this.sessions.delete(routerId);
      this.log.info({ routerId }, 'router control link down');
    });
  }

  /** The router says what it holds; send it what it lacks. */
  private onSync(session: RouterSession, known: string | undefined, full: boolean): void {
    const now = new Date();
    const next = buildRouterSnapshot(this.ctx, session.routerId, now, this.currentShared());
    if (!full && known === next.revision) {
      // It holds the current policy (e.g. from its cache); give it a fresh notAfter.
      this.sendDelta(session, { ...next, revision: known }, next);
      return;
    }
    this.sendFull(session, next);
  }

  /** The router reports its host's posture: stored as its identity's posture data, which policies' posture checks read. */
  private onPosture(session: RouterSession, raw: unknown): void {
    const responses = postureResponsesOf(raw);
    if (responses === undefined) return session.link.close(CloseCode.MALFORMED_BODY, 'malformed POSTURE');
    const at = new Date().toISOString();
    this.ctx.store.updatePostureData(session.routerId, (prev) => ({
      identityId: session.routerId,
      data: applyPostureResponses(prev?.data, responses, at),
      queryIds: { ...prev?.queryIds },
      wokenAt: prev?.wokenAt ?? null,
      unlockedAt: prev?.unlockedAt ?? null,
      updatedAt: at,
    })).catch((err: unknown) => this.log.warn({ routerId: session.routerId, err: (err as Error).message }, 'posture report not stored'));
  }

  private schedulePush(): void {
    this.shared = undefined;
    if (this.pushTimer !== undefined || this.sessions.size === 0) return;
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      this.shared = undefined;
      this.pushAll();
    }, PUSH_DELAY_MS);
    this.pushTimer.unref();
  }

  private currentShared(): SharedContent {
    this.shared ??= buildSharedContent(this.ctx);
    return this.shared;
  }

  private pushAll(): void {
    const now = new Date();
    const shared = this.currentShared();
    for (const session of [...this.sessions.values()]) {
      const identity = this.ctx.store.identities.get(session.routerId);
      if (identity === undefined || identity.disabled || this.ctx.store.edgeRouters.get(session.routerId) === undefined) {
        // Deleted or disabled: its control link ends now (its cached policy runs out at notAfter).
        this.log.info({ routerId: session.routerId }, 'router deleted or disabled: closing its control link');
        session.link.close(CloseCode.AUTH_FAILED, 'this edge router was deleted or disabled');
        continue;
      }
      if (session.sent === undefined) continue; // waits for its POLICY_SYNC
      const next = buildRouterSnapshot(this.ctx, session.routerId, now, shared);
      if (next.revision === session.sent.revision) continue;
      this.sendDelta(session, session.sent, next);
    }
  }

  private sendFull(session: RouterSession, snapshot: PolicySnapshot): void {
    session.link.sendControl(FrameType.POLICY, 0, { full: signSnapshot(snapshot, this.ctx.pki.policySigner) });
    this.sent(session, snapshot);
  }

  /** A signed delta from `base` (what the router holds) to `next`; a full snapshot if the two cannot be diffed. */
  private sendDelta(session: RouterSession, base: PolicySnapshot, next: PolicySnapshot): void {
    const delta = diffContent(contentOf(base), contentOf(next), base.revision, next.revision);
    if (delta === undefined) return this.sendFull(session, next);
    const payload = { v: 1, routerId: session.routerId, issuedAt: next.issuedAt, notAfter: next.notAfter, ...delta };
    session.link.sendControl(FrameType.POLICY, 0, { delta: signJws(payload, POLICY_DELTA_JWS_TYPE, this.ctx.pki.policySigner) });
    this.sent(session, next);
  }

  /** Remembers what the router now holds and schedules its re-signature at half of the offline window. */
  private sent(session: RouterSession, snapshot: PolicySnapshot): void {
    session.sent = snapshot;
    clearTimeout(session.refreshTimer);
    const halfLife = (Date.parse(snapshot.notAfter) - Date.parse(snapshot.issuedAt)) / 2;
    session.refreshTimer = setTimeout(() => {
      if (this.sessions.get(session.routerId) !== session || session.sent === undefined) return;
      const next = buildRouterSnapshot(this.ctx, session.routerId, new Date(), this.currentShared());
      this.sendDelta(session, session.sent, next);
    }, Math.min(halfLife, 2_147_483_647));
    session.refreshTimer.unref();
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string';

/** Posture responses from a router, shape-checked (a malformed report is refused whole). */
function postureResponsesOf(raw: unknown): PostureResponse[] | undefined {
  if (!Array.isArray(raw) || raw.length > 256) return undefined;
  const out: PostureResponse[] = [];
  for (const r of raw as Record<string, unknown>[]) {
    if (r === null || typeof r !== 'object' || !isStr(r.id)) return undefined;
    switch (r.typeId) {
      case 'MAC':
        if (!Array.isArray(r.macAddresses) || !r.macAddresses.every(isStr)) return undefined;
        out.push({ id: r.id, typeId: 'MAC', macAddresses: r.macAddresses });
        break;
      case 'OS':
        if (!isStr(r.type) || !isStr(r.version) || (r.build !== undefined && !isStr(r.build))) return undefined;
        out.push({ id: r.id, typeId: 'OS', type: r.type, version: r.version, ...(r.build !== undefined ? { build: r.build } : {}) });
        break;
      case 'PROCESS':
        if (!isStr(r.path) || typeof r.isRunning !== 'boolean' || (r.hash !== undefined && !isStr(r.hash))) return undefined;
        if (r.signerFingerprints !== undefined && !(Array.isArray(r.signerFingerprints) && r.signerFingerprints.every(isStr))) return undefined;
        out.push({ id: r.id, typeId: 'PROCESS', path: r.path, isRunning: r.isRunning, ...(r.hash !== undefined ? { hash: r.hash } : {}), ...(r.signerFingerprints !== undefined ? { signerFingerprints: r.signerFingerprints } : {}) } as PostureResponse);
        break;
      case 'DOMAIN':
        if (!isStr(r.domain)) return undefined;
        out.push({ id: r.id, typeId: 'DOMAIN', domain: r.domain });
        break;
      default:
        return undefined;
    }
  }
  return out;
}

