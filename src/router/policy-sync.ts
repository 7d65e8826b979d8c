/**
 * Keeps a router's policy in step with the controller, and keeps the router
 * working when the controller is away.
 *
 *   start ─► cache file (dataDir/policy.jws)? ─► verify signature ─► use it at once
 *        └─► log in (certificate; exporter proof for token keys)
 *              └─► long poll GET /edge/client/v1/router/policy?known=REV&waitMs=…
 *                    200: signed snapshot → verify → persist (atomic) → onUpdate
 *                    304: unchanged → poll again
 *                    401: session gone → log in again
 *                    error: retry with backoff and jitter
 *
 * Authorization never waits for this loop: the router answers from the last
 * snapshot it has, until that snapshot's notAfter (then it fails closed,
 * unless configured to keep it). A snapshot past half of its window is
 * fetched again even if unchanged, so a connected router never nears expiry.
 * Only snapshots signed by the controller's policy signer are used, from
 * the wire or from the cache.
 */
import { promises as fs } from 'node:fs';
import type { Agent } from 'node:https';
import { join } from 'node:path';
import { EdgeError } from '../errors.js';
import type { LoadedIdentity } from '../identity/file.js';
import { createAgent, jsonOf, request, requestWithProof, type HttpResponse } from '../identity/https.js';
import type { KeyStore } from '../keys/types.js';
import type { Logger } from '../log/index.js';
import { verifySignedSnapshot } from '../policy/signed.js';
import { SnapshotPolicyView, type PolicySnapshot } from '../policy/snapshot.js';
import { parsePemBundle } from '../link/trust.js';
import { writeFileAtomic } from '../util/fs.js';
import { backoffMs } from './backoff.js';

const CLIENT = '/edge/client/v1';

export interface PolicySyncOptions {
  identity: LoadedIdentity;
  /** This router's id: snapshots made for another router are refused. */
  routerId: string;
  key: KeyStore;
  dataDir: string;
  log: Logger;
  /** How long the controller may hold a poll open. */
  pollWaitMs?: number;
  reconnect?: { initialMs: number; maxMs: number };
  /** Keep authorizing from the last snapshot past its notAfter (availability over revocation). */
  keepAfterExpiry?: boolean;
  /** Called with each new view (after it is persisted). */
  onUpdate: (view: SnapshotPolicyView) => void;
}

export class PolicySync {
  private view: SnapshotPolicyView | undefined;
  private token: string | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly agent: Agent;
  private readonly log: Logger;
  private readonly cacheFile: string;
  private failures = 0;
  private readonly cas: ReturnType<typeof parsePemBundle>;

  constructor(private readonly opts: PolicySyncOptions) {
    this.log = opts.log.child({ subsys: 'policy-sync' });
    this.agent = createAgent({ ca: opts.identity.caPem }, { keepAlive: true, maxSockets: 2 });
    this.cacheFile = join(opts.dataDir, 'policy.jws');
    this.cas = parsePemBundle(opts.identity.caPem);
  }

  current(): SnapshotPolicyView | undefined {
    return this.view;
  }

  /**
   * Loads the cache, then tries the controller once, and keeps syncing in
   * the background. Never fails for want of the controller: without it the
   * router runs from its cache, or, with no cache, allows nothing until the
   * first snapshot arrives (closed by default).
   */
  async start(): Promise<void> {
    await fs.mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    const cached = await this.readCache();
    if (cached !== undefined) this.view = this.viewOf(cached);
    try {
      await this.pollOnce(0);
      this.schedule(0);
    } catch (err) {
      const delay = backoffMs(this.failures++, this.opts.reconnect?.initialMs ?? 1000, this.opts.reconnect?.maxMs ?? 30_000);
      if (this.view !== undefined) this.log.warn({ err: (err as Error).message, revision: this.view.revision, retryInMs: delay }, 'controller unreachable; running from the cached policy');
      else this.log.error({ err: (err as Error).message, retryInMs: delay }, 'controller unreachable and no cached policy: nothing is allowed until it answers');
      this.schedule(delay);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.agent.destroy();
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.pollOnce(this.opts.pollWaitMs ?? 25_000).then(
        () => { this.failures = 0; this.schedule(0); },
        (err: unknown) => {
          const delay = backoffMs(this.failures++, this.opts.reconnect?.initialMs ?? 1000, this.opts.reconnect?.maxMs ?? 30_000);
          if (!this.stopped) this.log.warn({ err: (err as Error).message, retryInMs: delay }, 'policy sync failed; retrying');
          this.schedule(delay);
        },
      );
    }, delayMs);
    this.timer.unref?.();
  }

  private async pollOnce(waitMs: number): Promise<void> {
    if (this.token === undefined) await this.login();
    // Past half its window, ask for a fresh signature even if nothing changed.
    const snap = this.view?.snapshot;
    const fresh = snap !== undefined && Date.now() < (Date.parse(snap.issuedAt) + Date.parse(snap.notAfter)) / 2;
    const known = fresh ? snap.revision : undefined;
    const url = `${this.opts.identity.apiUrl}${CLIENT}/router/policy?waitMs=${waitMs}${known !== undefined ? `&known=${encodeURIComponent(known)}` : ''}`;
    let res = await this.get(url, waitMs);
    if (res.status === 401) {
      await this.login();
      res = await this.get(url, waitMs);
    }
    if (this.stopped || res.status === 304) return;
    const body = jsonOf<{ jws?: unknown } | undefined>(res);
    if (typeof body?.jws !== 'string') throw new EdgeError('ERR_REMOTE', 'the controller answered the policy request without a signed snapshot');
    const snapshot = verifySignedSnapshot(body.jws, this.cas, Date.now());
    if (snapshot.routerId !== this.opts.routerId) throw new EdgeError('ERR_POLICY_SIGNATURE', `policy snapshot refused: it was made for router ${snapshot.routerId}, not ${this.opts.routerId}`);
    await writeFileAtomic(this.cacheFile, body.jws + '\n', 0o600);
    const changed = snapshot.revision !== this.view?.revision;
    this.view = this.viewOf(snapshot);
    if (changed) this.log.info({ revision: snapshot.revision, notAfter: snapshot.notAfter, hosted: [...this.view.hostedServices().keys()] }, 'policy updated');
    else this.log.debug({ revision: snapshot.revision, notAfter: snapshot.notAfter }, 'policy re-signed');
    this.opts.onUpdate(this.view);
  }

  private get(url: string, waitMs: number): Promise<HttpResponse> {
    return request(url, { agent: this.agent, headers: { 'zt-session': this.token ?? '' }, timeoutMs: waitMs + 15_000 });
  }

  private async login(): Promise<void> {
    const { identity, key } = this.opts;
    const url = `${identity.apiUrl}${CLIENT}/authenticate?method=cert`;
    const init = { ca: identity.caPem, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' };
    const res = identity.key.kind === 'pem'
      ? await request(url, { ...init, cert: identity.certPem, key: identity.key.pem })
      : await requestWithProof(url, { key, certPem: identity.certPem }, init);
    const data = jsonOf<{ token?: unknown } | undefined>(res);
    if (typeof data?.token !== 'string') throw new EdgeError('ERR_REMOTE', 'the controller answered the router login without a session token');
    this.token = data.token;
  }

  private viewOf(snapshot: PolicySnapshot): SnapshotPolicyView {
    return new SnapshotPolicyView(snapshot, this.opts.keepAfterExpiry === true);
  }

  private async readCache(): Promise<PolicySnapshot | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.cacheFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ file: this.cacheFile, err: (err as Error).message }, 'policy cache cannot be read; ignoring it');
      return undefined;
    }
    try {
      const snapshot = verifySignedSnapshot(text, this.cas, Date.now());
      if (snapshot.routerId !== this.opts.routerId) throw new EdgeError('ERR_POLICY_SIGNATURE', `policy snapshot refused: it was made for router ${snapshot.routerId}, not ${this.opts.routerId}`);
      this.log.info({ file: this.cacheFile, revision: snapshot.revision, issuedAt: snapshot.issuedAt, notAfter: snapshot.notAfter }, 'policy loaded from cache');
      return snapshot;
    } catch (err) {
      // Never half-use a damaged or foreign cache: start without it and fetch a fresh copy.
      this.log.error({ file: this.cacheFile, err: (err as Error).message, code: (err as EdgeError).code }, 'policy cache refused; ignoring it');
      return undefined;
    }
  }
}
