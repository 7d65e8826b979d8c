/**
 * The controller: opens the store, loads or makes the PKI, creates the
 * default admin on first start, and serves the management and client APIs
 * over HTTPS. `startController` is used by `ztedge controller` and, embedded,
 * by `ztedge quickstart`.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { ControllerContext, ControllerSettings } from './context.js';
import { createHttpApp } from './http.js';
import { newId } from './ids.js';
import { defaultAuthPolicy } from './auth-policy.js';
import { hashPassword, MIN_PASSWORD_LENGTH } from './passwords.js';
import { Pki, writeFileAtomic } from './pki.js';
import { registerAuthPolicyRoutes } from './routes/auth-policies.js';
import { registerAuthRoutes } from './routes/auth.js';
import { registerCaRoutes } from './routes/cas.js';
import { registerConfigRoutes } from './routes/configs.js';
import { registerCurrentIdentityRoutes } from './routes/current-identity.js';
import { registerEdgeRouterPolicyRoutes } from './routes/edge-router-policies.js';
import { registerEdgeRouterRoutes } from './routes/edge-routers.js';
import { registerEnrollmentRoutes } from './routes/enrollments.js';
import { registerEnrollRoutes } from './routes/enroll.js';
import { registerIdentityRoutes } from './routes/identities.js';
import { registerMetaRoutes } from './routes/meta.js';
import { registerIdentityMfaRoutes, registerMfaRoutes } from './routes/mfa.js';
import { registerPostureCheckRoutes } from './routes/posture-checks.js';
import { registerPostureDataRoutes } from './routes/posture-data.js';
import { registerServicePolicyRoutes } from './routes/service-policies.js';
import { DEFAULT_OFFLINE_WINDOW_MS } from '../policy/snapshot.js';
import { ControlPlane } from './control-plane.js';
import { registerRouterPolicyRoutes } from './routes/router-policy.js';
import { registerServiceRoutes } from './routes/services.js';
import { Sessions } from './sessions.js';
import { Store } from './store.js';

export const MANAGEMENT_PREFIX = '/edge/management/v1';
export const CLIENT_PREFIX = '/edge/client/v1';

export interface ControllerOptions {
  dataDir: string;
  /** host:port to listen on. */
  listen: string;
  /** host:port clients use to reach the API (defaults to `listen`). */
  advertise?: string;
  /** File holding the first admin's password; generated when absent. */
  adminPasswordFile?: string;
  enrollmentDurationMs?: number;
  certValidityDays?: number;
  sessionIdleMs?: number;
  /** notAfter of router policy snapshots, from their issue time (default 72 h). */
  policyOfflineWindowMs?: number;
  log: Logger;
}

export interface RunningController {
  readonly url: string;
  readonly dataDir: string;
  readonly context: ControllerContext;
  /** Path of the generated admin password file, when one was written this start. */
  readonly adminPasswordPath: string | undefined;
  /** Router control links (policy push). */
  readonly controlPlane: ControlPlane;
  close(): Promise<void>;
}

export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || m[1] === '' || port < 0 || port > 65535) throw new EdgeError('ERR_CONFIG', `${what} must be host:port (for example 127.0.0.1:1280), got "${value}"`);
  return { host: m[1]!, port };
}

export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startController(opts: ControllerOptions): Promise<RunningController> {
  const log = opts.log.child({ subsys: 'controller' });
  const dataDir = resolve(opts.dataDir);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const listen = parseHostPort(opts.listen, '--listen');
  const advertised = parseHostPort(opts.advertise ?? opts.listen, '--advertise');
  if (advertised.host === '0.0.0.0' || advertised.host === '::') {
    throw new EdgeError('ERR_CONFIG', `listening on ${advertised.host} needs --advertise with the address clients use (for example --advertise ctrl.example:1280)`);
  }

  const store = new Store(dataDir);
  let app: FastifyInstance | undefined;
  try {
    const pki = await Pki.loadOrCreate(dataDir, [advertised.host], log);
    const settings: ControllerSettings = {
      issuer: `https://${formatHostPort(advertised.host, advertised.port)}`,
      enrollmentDurationMs: opts.enrollmentDurationMs ?? 3 * 3_600_000,
      certValidityDays: opts.certValidityDays ?? 365,
      sessionIdleMs: opts.sessionIdleMs ?? 30 * 60_000,
      policyOfflineWindowMs: opts.policyOfflineWindowMs ?? DEFAULT_OFFLINE_WINDOW_MS,
    };
    const ctx: ControllerContext = { store, pki, sessions: new Sessions(store, settings.sessionIdleMs), settings, log };
    await store.ensureAuthPolicy(defaultAuthPolicy(new Date().toISOString()));
    const adminPasswordPath = await ensureDefaultAdmin(ctx, dataDir, opts.adminPasswordFile);

    app = createHttpApp(ctx);
    registerMetaRoutes(app, ctx, ['', MANAGEMENT_PREFIX, CLIENT_PREFIX]);
    registerAuthRoutes(app, ctx, MANAGEMENT_PREFIX, true);
    registerAuthRoutes(app, ctx, CLIENT_PREFIX, false);
    for (const prefix of [MANAGEMENT_PREFIX, CLIENT_PREFIX]) {
      registerCurrentIdentityRoutes(app, ctx, prefix);
      registerMfaRoutes(app, ctx, prefix);
    }
    registerIdentityMfaRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerAuthPolicyRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerIdentityRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerEnrollmentRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerCaRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerEdgeRouterRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerConfigRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerServiceRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerServicePolicyRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerEdgeRouterPolicyRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerPostureCheckRoutes(app, ctx, MANAGEMENT_PREFIX);
    registerPostureDataRoutes(app, ctx, CLIENT_PREFIX, MANAGEMENT_PREFIX);
    registerRouterPolicyRoutes(app, ctx, CLIENT_PREFIX);
    registerEnrollRoutes(app, ctx, CLIENT_PREFIX);
    const controlPlane = new ControlPlane(ctx);
    app.server.on('upgrade', (req, socket, head) => controlPlane.handleUpgrade(req, socket, head));
    try {
      await app.listen({ host: listen.host, port: listen.port });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const hint = code === 'EADDRINUSE' ? ' (address in use: is another controller running? pick another with --listen)' : '';
      throw new EdgeError('ERR_CONFIG', `cannot listen on ${opts.listen}: ${(err as Error).message}${hint}`, { cause: err });
    }
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : listen.port;
    // With --listen …:0 the real port is known only now; the issuer follows it.
    if (advertised.port === 0) settings.issuer = `https://${formatHostPort(advertised.host, port)}`;
    log.info({ listen: formatHostPort(listen.host, port), issuer: settings.issuer, dataDir }, 'controller ready');
    const running = app;
    return {
      url: settings.issuer,
      dataDir,
      context: ctx,
      adminPasswordPath,
      controlPlane,
      async close() {
        controlPlane.close();
        await running.close();
        await store.close();
        log.info('controller stopped');
      },
    };
  } catch (err) {
    await app?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Creates the default admin (`admin`, updb) on first start. The password
 * comes from `passwordFile`, or is generated, written once to
 * DATA/admin.password (0600) and logged once.
 */
async function ensureDefaultAdmin(ctx: ControllerContext, dataDir: string, passwordFile: string | undefined): Promise<string | undefined> {
  if (ctx.store.getMeta<boolean>('defaultAdminCreated') === true || ctx.store.identityIdByName('admin') !== undefined) return undefined;
  let password: string;
  let writtenTo: string | undefined;
  if (passwordFile !== undefined) {
    try {
      password = (await fs.readFile(passwordFile, 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      throw new EdgeError('ERR_CONFIG', `cannot read --admin-password-file ${passwordFile}: ${(err as Error).message}`, { cause: err });
    }
    if (password.length < MIN_PASSWORD_LENGTH) throw new EdgeError('ERR_CONFIG', `the admin password in ${passwordFile} is shorter than ${MIN_PASSWORD_LENGTH} characters`);
  } else {
    password = randomBytes(18).toString('base64url');
    writtenTo = join(dataDir, 'admin.password');
    await writeFileAtomic(writtenTo, password + '\n', 0o600);
  }
  const iso = new Date().toISOString();
  const id = newId();
  await ctx.store.createIdentity(
    { id, name: 'admin', type: 'User', isAdmin: true, isDefaultAdmin: true, roleAttributes: [], externalId: null, tags: {}, appData: {}, authPolicyId: 'default', disabled: false, createdAt: iso, updatedAt: iso },
    [],
    [{ id: newId(), identityId: id, method: 'updb', fingerprint: null, certPem: null, username: 'admin', passwordHash: await hashPassword(password), createdAt: iso, updatedAt: iso }],
  );
  await ctx.store.putMeta('defaultAdminCreated', true);
  if (writtenTo !== undefined) {
    // Shown once, on the first start only, so the operator can log in; the file keeps it.
    ctx.log.warn({ username: 'admin', passwordFile: writtenTo, initialAdminPassword: password }, 'created default admin with a generated password');
  } else {
    ctx.log.info({ username: 'admin' }, 'created default admin');
  }
  return writtenTo;
}
