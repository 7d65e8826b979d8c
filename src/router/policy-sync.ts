/**
 * Keeps a router's policy in step with the controller over a control link,
 * and keeps the router working when the controller is away.
 *
 *   start ─► cache (dataDir/policy.jws: a signed full snapshot, then signed
 *            deltas, one JWS per line) ─► verify all ─► use it at once
 *        └─► control link: HTTPS upgrade on the controller's API port to the
 *            link protocol (src/link; the router proves its key, TPM keys too)
 *              ─► POLICY_SYNC {known} ─► POLICY {full | delta} …pushed on change
 *                 each verified (signature, router id, resulting revision),
 *                 persisted atomically, then handed to onUpdate
 *        └─► link lost: redial with exponential backoff and full jitter
 *
 * Authorization never waits for this: the router answers from the last
 * snapshot it has, until that snapshot's notAfter (then it fails closed,
 * unless configured to keep it). The controller re-signs a connected
 * router's copy at half its window, so a connected router never nears
 * expiry. Nothing unsigned, foreign, damaged or out of sequence is used:
 * such input is refused whole and the router asks for a full snapshot.
 */
import { promises as fs } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { EdgeError } from '../errors.js';
import type { LoadedIdentity } from '../identity/file.js';
import type { KeyStore } from '../keys/types.js';
import { Link } from '../link/index.js';
import { parsePemBundle } from '../link/trust.js';
import type { Logger } from '../log/index.js';
import { applyDelta, contentRevision, parseDelta, type Content } from '../policy/delta.js';
import { POLICY_DELTA_JWS_TYPE, POLICY_JWS_TYPE, verifyJws } from '../policy/signed.js';
import { contentOf, parseSnapshot, SnapshotPolicyView, type PolicySnapshot } from '../policy/snapshot.js';
import { writeFileAtomic } from '../util/fs.js';
import { CloseCode, FrameType, decodeControl } from '../wire/index.js';
import { backoffMs } from './backoff.js';

const CONTROL_PATH = '/edge/client/v1/router/control';
const CONTROL_UPGRADE = 'ztedge-link/1';
/** After this many deltas on top of the full snapshot, ask for a new full one (keeps the cache short). */
const MAX_DELTAS = 32;

export interface PolicySyncOptions {
  identity: LoadedIdentity;
  /** This router's id: snapshots made for another router are refused. */
  routerId: string;
  key: KeyStore;
  dataDir: string;
  log: Logger;
  reconnect?: { initialMs: number; maxMs: number };
  /** Keep authorizing from the last snapshot past its notAfter (availability over revocation). */
  keepAfterExpiry?: boolean;
  /** This router's own, shorter offline window (ms from a snapshot's issuedAt). */
  maxOfflineMs?: number;
  /** Control link liveness (defaults: 15 s keepalive, 45 s dead). */
  keepaliveMs?: number;
  deadAfterMs?: number;
  /** Called with each new view (after it is persisted). */
  onUpdate: (view: SnapshotPolicyView) => void;
}

/** What the router holds: the raw content (for deltas), the parsed snapshot, and the signed chain that proves it. */
interface Held {
  content: Content;
  snapshot: PolicySnapshot;
  chain: string[];
}

export class PolicySync {
  private view: SnapshotPolicyView | undefined;
  private held: Held | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private link: Link | undefined;
  private readonly log: Logger;
  private readonly cacheFile: string;
  /** The signed deltas on top of cacheFile's full snapshot, one JWS per line. */
  private readonly deltasFile: string;
  private readonly cas: ReturnType<typeof parsePemBundle>;
  private failures = 0;
  /** Resolves start()'s wait for the first policy (or the first failed dial). */
  private firstSync: () => void = () => undefined;
  /** The host's latest posture report, re-sent on every new control link. */
  private posture: readonly unknown[] | undefined;
  /** Serializes cache writes: a delta's file never overtakes the previous one. */
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: PolicySyncOptions) {
    this.log = opts.log.child({ subsys: 'policy-sync' });
    this.cacheFile = join(opts.dataDir, 'policy.jws');
    this.deltasFile = join(opts.dataDir, 'policy.deltas');
    this.cas = parsePemBundle(opts.identity.caPem);
  }

  current(): SnapshotPolicyView | undefined {
    return this.view;
  }

  /** True while the control link to the controller is up. */
  get connected(): boolean {
    return this.link?.isUp === true;
  }

  /**
   * Loads the cache, starts the control link, and waits (at most
   * `firstSyncMs`) for the first policy from the controller. Never fails
   * for want of the controller: without it the router runs from its cache,
   * or, with no cache, allows nothing until the first snapshot arrives.
   */
  async start(firstSyncMs = 5000): Promise<void> {
    await fs.mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    await this.readCache();
    const first = new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(t); resolve(); };
      const t = setTimeout(done, firstSyncMs);
      t.unref();
      this.firstSync = done;
    });
    this.connect();
    await first;
    if (!this.connected) {
      if (this.view !== undefined) this.log.warn({ revision: this.view.revision, notAfter: this.view.snapshot.notAfter }, 'controller unreachable; running from the cached policy');
      else this.log.error({ controller: this.opts.identity.apiUrl }, 'controller unreachable and no cached policy: nothing is allowed until it answers');
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.link?.close(CloseCode.SHUTDOWN, 'router stopping');
  }

  // ---- the control link -------------------------------------------------------

  private connect(): void {
    if (this.stopped) return;
    const url = new URL(this.opts.identity.apiUrl);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const req = httpsRequest({
      host, port: url.port === '' ? 443 : Number(url.port), path: CONTROL_PATH, method: 'GET',
      headers: { connection: 'Upgrade', upgrade: CONTROL_UPGRADE },
      ca: this.opts.identity.caPem, servername: isIP(host) === 0 ? host : undefined, minVersion: 'TLSv1.3', agent: false, timeout: 15_000,
    });
    let settled = false;
    const retry = (why: string): void => {
      if (settled) return;
      settled = true;
      this.redial(why);
    };
    req.on('upgrade', (res, socket, head) => {
      settled = true;
      if (head.length > 0) socket.unshift(head);
      this.adopt(socket as TLSSocket);
    });
    req.on('response', (res) => { res.resume(); retry(`the controller answered HTTP ${res.statusCode} instead of switching to the control link`); });
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', (err) => retry(err.message));
    req.end();
  }

  private adopt(socket: TLSSocket): void {
    const settings = { keepaliveMs: this.opts.keepaliveMs ?? 15_000, deadAfterMs: this.opts.deadAfterMs ?? 45_000, helloTimeoutMs: 10_000, maxBodyBytes: 64 * 1024 * 1024 };
    const link = new Link(socket, 'dialer', { id: this.opts.routerId, key: this.opts.key, certPem: this.opts.identity.certPem }, this.cas, settings, this.opts.log);
    this.link = link;
    link.once('up', () => {
      this.failures = 0;
      this.log.info({ controller: this.opts.identity.apiUrl, known: this.held?.snapshot.revision }, 'control link up');
      this.sync(false);
      if (this.posture !== undefined) link.sendControl(FrameType.POSTURE, 0, { responses: this.posture });
    });
    link.circuitHandler = (type, _flags, circuitId, body) => {
      if (circuitId !== 0 || type !== FrameType.POLICY) return link.close(CloseCode.PROTOCOL_VERSION, `unexpected frame type ${type} on the control link`);
      const m = decodeControl(body);
      if (typeof m?.full === 'string') return this.onFull(m.full);
      if (typeof m?.delta === 'string') return this.onDelta(m.delta);
      link.close(CloseCode.MALFORMED_BODY, 'malformed POLICY');
    };
    link.once('close', (code: number, reason: string) => {
      if (this.link === link) this.link = undefined;
      this.redial(`control link closed (${code}): ${reason}`);
    });
  }

  private redial(why: string): void {
    if (this.stopped) return;
    const delay = backoffMs(this.failures++, this.opts.reconnect?.initialMs ?? 1000, this.opts.reconnect?.maxMs ?? 30_000);
    this.log.warn({ err: why, retryInMs: delay }, 'control link down; redialing');
    if (this.failures === 1) this.firstSync();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
    this.timer.unref();
  }

  /** Reports this host's posture (OpenZiti postureResponse shapes) now if connected, and on every reconnect. */
  reportPosture(responses: readonly unknown[]): void {
    this.posture = responses;
    if (this.link?.isUp === true) this.link.sendControl(FrameType.POSTURE, 0, { responses });
  }

  /** Tells the controller what we hold; `full` asks for a whole snapshot. */
  private sync(full: boolean): void {
    const known = this.held?.snapshot.revision;
    this.link?.sendControl(FrameType.POLICY_SYNC, 0, full || known === undefined ? { full: true } : { known });
  }

  private onFull(jws: string): void {
    try {
      const raw = verifyJws(jws, POLICY_JWS_TYPE, this.cas, Date.now());
      const held = this.fullOf(raw, jws);
      this.adoptHeld(held);
    } catch (err) {
      this.refuse(err);
    }
  }

  private onDelta(jws: string): void {
    try {
      if (this.held === undefined) throw new EdgeError('ERR_POLICY_SNAPSHOT', 'policy delta received before any full snapshot');
      const held = this.withDelta(this.held, jws);
      this.adoptHeld(held);
      if (held.chain.length > MAX_DELTAS) this.sync(true);
    } catch (err) {
      this.refuse(err);
      // Our copy and the controller's differ: start again from a full snapshot.
      this.sync(true);
    }
  }

  private refuse(err: unknown): void {
    this.log.error({ err: (err as Error).message, code: (err as EdgeError).code }, 'policy from the controller refused');
  }

  private adoptHeld(held: Held): void {
    const changed = held.snapshot.revision !== this.held?.snapshot.revision;
    this.held = held;
    this.view = new SnapshotPolicyView(held.snapshot, this.opts.keepAfterExpiry === true, Date.now(), this.opts.maxOfflineMs, this.view);
    // Both files are replaced whole (write, fsync, rename), so a crash leaves the old or the new
    // version of each, never half of one. A change rewrites only the deltas file (a few hundred
    // bytes per delta), not the megabyte snapshot. A full snapshot drops the deltas first, so
    // a crash in between leaves an older but complete signed state.
    const deltas = held.chain.slice(1);
    const write = deltas.length === 0
      ? async () => { await fs.rm(this.deltasFile, { force: true }); await writeFileAtomic(this.cacheFile, held.chain[0] + '\n', 0o600); }
      : () => writeFileAtomic(this.deltasFile, deltas.join('\n') + '\n', 0o600);
    this.writing = this.writing.then(write).catch((err: unknown) => {
      this.log.error({ file: this.cacheFile, err: (err as Error).message }, 'cannot write the policy cache');
    });
    if (changed) this.log.info({ revision: held.snapshot.revision, notAfter: held.snapshot.notAfter, hosted: [...this.view.hostedServices().keys()] }, 'policy updated');
    else this.log.debug({ revision: held.snapshot.revision, notAfter: held.snapshot.notAfter }, 'policy re-signed');
    this.firstSync();
    this.opts.onUpdate(this.view);
  }

  // ---- verification (shared by the wire and the cache) --------------------------

  /** A verified full snapshot's payload → what we hold. */
  private fullOf(raw: unknown, jws: string): Held {
    const snapshot = parseSnapshot(raw);
    this.checkRouter(snapshot.routerId);
    const content = contentOf(raw as object);
    if (contentRevision(content) !== snapshot.revision) {
      // Signed by the controller, so used; but deltas on top of it will not line up.
      this.log.warn({ revision: snapshot.revision }, 'snapshot revision does not match its content hash (controller and router versions differ?)');
    }
    return { content, snapshot, chain: [jws] };
  }

  /** `held` with one more signed delta applied; throws if it is foreign, malformed or out of sequence. */
  private withDelta(held: Held, jws: string): Held {
    const raw = verifyJws(jws, POLICY_DELTA_JWS_TYPE, this.cas, Date.now()) as Record<string, unknown>;
    const delta = parseDelta(raw);
    if (delta === undefined || typeof raw.issuedAt !== 'string' || typeof raw.notAfter !== 'string') throw new EdgeError('ERR_POLICY_SNAPSHOT', 'policy delta is malformed');
    if (typeof raw.routerId !== 'string') throw new EdgeError('ERR_POLICY_SNAPSHOT', 'policy delta names no router');
    this.checkRouter(raw.routerId);
    const applied = applyDelta(held.content, held.snapshot.revision, delta);
    if ('reason' in applied) throw new EdgeError('ERR_POLICY_SNAPSHOT', `policy delta does not apply: ${applied.reason}`);
    const touched = new Set([...Object.keys(delta.upsert), ...Object.keys(delta.remove)]);
    const unchanged = new Set(Object.keys(applied.content).filter((k) => !touched.has(k)));
    const snapshot = parseSnapshot({ ...applied.content, revision: delta.revision, issuedAt: raw.issuedAt, notAfter: raw.notAfter }, { snapshot: held.snapshot, unchanged });
    return { content: applied.content, snapshot, chain: [...held.chain, jws] };
  }

  private checkRouter(routerId: string): void {
    if (routerId !== this.opts.routerId) throw new EdgeError('ERR_POLICY_SIGNATURE', `policy refused: it was made for router ${routerId}, not ${this.opts.routerId}`);
  }

  private async readCache(): Promise<void> {
    let text: string;
    let deltasText = '';
    try {
      text = await fs.readFile(this.cacheFile, 'utf8');
      deltasText = await fs.readFile(this.deltasFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return '';
        throw err;
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ file: this.cacheFile, err: (err as Error).message }, 'policy cache cannot be read; ignoring it');
      return;
    }
    try {
      // The snapshot file's first line is the full snapshot; deltas follow there (older caches) or in the deltas file.
      const lines = (text + '\n' + deltasText).split('\n').filter((l) => l.trim() !== '');
      if (lines.length === 0) throw new EdgeError('ERR_POLICY_SNAPSHOT', 'policy cache is empty');
      let held = this.fullOf(verifyJws(lines[0]!, POLICY_JWS_TYPE, this.cas, Date.now()), lines[0]!);
      for (const line of lines.slice(1)) held = this.withDelta(held, line);
      this.held = held;
      this.view = new SnapshotPolicyView(held.snapshot, this.opts.keepAfterExpiry === true, Date.now(), this.opts.maxOfflineMs);
      this.log.info({ file: this.cacheFile, revision: held.snapshot.revision, issuedAt: held.snapshot.issuedAt, notAfter: held.snapshot.notAfter, deltas: lines.length - 1 }, 'policy loaded from cache');
    } catch (err) {
      // Never half-use a damaged or foreign cache: start without it and fetch a fresh copy.
      this.log.error({ file: this.cacheFile, err: (err as Error).message, code: (err as EdgeError).code }, 'policy cache refused; ignoring it');
    }
  }
}
