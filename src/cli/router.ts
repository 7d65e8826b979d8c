/** `ztedge router --config router.yml`: runs a router in the foreground until SIGINT/SIGTERM. */
import { X509Certificate } from 'node:crypto';
import { loadRouterConfig, parseEndpoint, parseHostPort, type RouterConfig } from '../config/index.js';
import { MAX_TIMER_MS } from '../config/schema.js';
import { HEADER_BYTES } from '../wire/index.js';
import { EdgeError } from '../errors.js';
import { loadIdentityFile, type LoadedIdentity } from '../identity/file.js';
import { FileKeyStore } from '../keys/file.js';
import type { KeyStore } from '../keys/types.js';
import { createRootLogger } from '../log/index.js';
import type { SnapshotPolicyView } from '../policy/snapshot.js';
import { processPathsOf } from '../policy/posture.js';
import { PolicySync } from '../router/policy-sync.js';
import { PostureWatcher } from '../router/posture.js';
import { Router, type HostTarget, type PolicyView } from '../router/router.js';
import { TunMode } from '../router/tun-mode.js';
import { MemoryReleaser, findAddonFunction, reportMemoryOnSignal } from '../router/memory.js';
import { unmapIdleFilePages, type UnmapFn } from '../router/file-pages.js';
import { loadTunAddon } from '../tun/index.js';
import { parse, str, untilStopSignal, type Command } from './command.js';
import { promises as fs } from 'node:fs';

const HELP = `Usage: ztedge router --config FILE

Runs a router: links to other routers, circuits, interception of the
services this router may Dial (proxy ports, or in tun mode a TUN device
with a DNS server and a userspace TCP/UDP stack, for devices that run no
ztedge software), and hosting of the services it may Bind (every service
with a host.v1 config that a Bind policy grants it).

Tun mode needs CAP_NET_ADMIN (root) and /dev/net/tun; every address and
route it adds is removed when the router stops (SIGINT/SIGTERM).

Policy comes from the controller named in the identity file and is cached
in dataDir: the router keeps authorizing from its cache while the
controller is unreachable. A router that has never reached its controller
allows nothing.

Options:
  --config FILE   router config (YAML); every key is documented in
                  packaging/router.example.yml and docs/config.md     [required]
  --check         validate the config and identity, print a summary, and exit
  -h, --help      this help

Set-up:
  ztedge edge create edge-router hub --role-attributes hubs -o hub.jwt   (on the admin's machine)
  ztedge enroll --jwt hub.jwt --out hub.json --san hub.example            (on the router)
  ztedge router --config router.yml`;

export const routerCommand: Command = {
  name: 'router',
  summary: 'run a router (links, circuits, proxy or tun interception, hosting)',
  help: HELP,
  async run(argv) {
    const { values } = parse(argv, { config: { type: 'string' }, check: { type: 'boolean' } }, 'router');
    if (values.help === true) { process.stdout.write(HELP + '\n'); return 0; }
    const configPath = str(values.config);
    if (configPath === undefined) throw new EdgeError('ERR_USAGE', '--config FILE is required\nRun "ztedge router --help" for usage.');
    const config = await loadRouterConfig(configPath);
    const identity = await loadIdentityFile(config.identity);
    const routerId = commonName(identity);
    const server = await serverCredentials(config, identity, configPath);
    if (values.check === true) {
      process.stdout.write(`${configPath}: OK\n  router id: ${routerId}\n  controller: ${identity.apiUrl}\n  listeners: ${config.listeners.join(', ') || '(none)'}\n  links: ${config.links.join(', ') || '(none)'}\n  proxy ports: ${config.tunnel.proxy.map((p) => `${p.listen} → ${p.service}`).join(', ') || '(none)'}\n${tunSummary(config)}`);
      return 0;
    }
    const log = createRootLogger({ level: config.log.level });
    const key = await openKey(identity);
    let view: SnapshotPolicyView | undefined;
    const live: PolicyView = {
      hostedServices: () => view?.hostedServices() ?? NO_HOSTED,
      mayDial: (identityId, service) => view?.mayDial(identityId, service) ?? { allow: false, reason: 'Dial denied: this router has no policy yet (controller never reached)' },
      // Closed by default: before its first policy a router accepts no links either.
      mayLink: (id) => view?.mayLink(id) ?? { allow: false, reason: 'link refused: this router has no policy yet (controller never reached)' },
      mayIntercept: (service) => view?.mayIntercept(service) ?? { allow: false, reason: 'Dial denied: this router has no policy yet (controller never reached)' },
    };
    let router: Router | undefined;
    let tun: TunMode | undefined;
    // At the snapshot's notAfter, hosted circuits are re-checked (fail closed) unless a newer one came first.
    let expiryTimer: NodeJS.Timeout | undefined;
    const watchExpiry = (v: SnapshotPolicyView): void => {
      clearTimeout(expiryTimer);
      if (!Number.isFinite(v.expiresAtMs)) return;
      expiryTimer = setTimeout(() => {
        log.warn({ notAfter: new Date(v.expiresAtMs).toISOString() }, 'policy expired: the controller was out of reach for the whole offline window; refusing circuits until it answers');
        router?.revalidate();
      }, Math.min(Math.max(0, v.expiresAtMs - Date.now() + 1), MAX_TIMER_MS));
      expiryTimer.unref();
    };
    // Posture: collected only while some posture check exists, and reported on change (and
    // every few minutes, so the controller's copy never goes stale while this router runs).
    let posture: PostureWatcher | undefined;
    let postureRefresh: NodeJS.Timeout | undefined;
    const watchPosture = (v: SnapshotPolicyView): void => {
      const checks = v.snapshot.postureChecks;
      if (checks.length === 0) {
        posture?.stop();
        clearInterval(postureRefresh);
        posture = undefined;
        return;
      }
      const paths = processPathsOf(checks, 'Linux');
      if (posture !== undefined) { posture.setProcessPaths(paths); return; }
      posture = new PostureWatcher({ processPaths: paths, onChange: (r) => sync.reportPosture(r), onError: (err) => log.warn({ err: (err as Error).message }, 'posture collection failed') });
      posture.start();
      postureRefresh = setInterval(() => { const latest = posture?.latest; if (latest !== undefined) sync.reportPosture(latest); }, POSTURE_REFRESH_MS);
      postureRefresh.unref();
    };
    const sync = new PolicySync({
      identity, routerId, key, dataDir: config.dataDir, log, reconnect: config.link.reconnect, keepAfterExpiry: config.policy.keepAfterExpiry,
      maxOfflineMs: config.policy.maxOfflineHours === undefined ? undefined : config.policy.maxOfflineHours * 3600_000,
      onUpdate: (v) => { view = v; watchExpiry(v); watchPosture(v); router?.refreshHosted(); void tun?.update(v); },
    });
    await sync.start();
    view = sync.current();
    if (view !== undefined) { watchExpiry(view); watchPosture(view); }
    router = new Router({
      id: routerId,
      key,
      certPem: identity.certPem,
      caPem: identity.caPem,
      server,
      listeners: config.listeners.map((l) => endpoint(l)),
      links: config.links.map((l) => endpoint(l)),
      proxy: config.tunnel.mode === 'proxy' ? config.tunnel.proxy.map((p) => ({ ...p, ...hostPort(p.listen) })) : [],
      link: { keepaliveMs: config.link.keepaliveMs, deadAfterMs: config.link.deadAfterMs, helloTimeoutMs: 10_000, maxBodyBytes: config.link.maxFrameBytes - HEADER_BYTES },
      reconnect: config.link.reconnect,
      policy: live,
      log,
    });
    await router.start();
    if (config.tunnel.mode === 'tun') {
      const r = router;
      try {
        tun = await TunMode.start({ config: config.tunnel.tun, routerId, log, initialView: view, dial: (stream, req, done) => r.dialLocal(stream, req, done) });
      } catch (err) {
        sync.stop();
        await router.stop();
        await key.close();
        throw err;
      }
      await tun.update(view);
    }
    log.info({ routerId, controller: identity.apiUrl, ports: router.boundPorts() }, 'router ready');
    // Memory (docs/memory.md): `kill -USR2 PID` logs where it goes; once traffic has been quiet for
    // a few seconds, freed memory goes back to the OS where the TUN addon offers malloc_trim (glibc),
    // and the node binary's pages the router stopped touching are unmapped.
    const memLog = log.child({ subsys: 'memory' });
    const mibOf = (bytes: number): number => Math.round(bytes / 10485.76) / 100;
    const trim = findAddonFunction<() => unknown>(() => loadTunAddon(), 'mallocTrim');
    const unmap = findAddonFunction<UnmapFn>(() => loadTunAddon(), 'unmapFilePages');
    const releaser = trim === undefined ? undefined : new MemoryReleaser({
      trim,
      unmapFilePages: unmap === undefined ? undefined : () => unmapIdleFilePages(unmap),
      onRelease: ({ rssBeforeBytes, rssAfterBytes, waitMs, full }) => memLog.debug({ rssBefore: mibOf(rssBeforeBytes), rssAfter: mibOf(rssAfterBytes), waitMs, fullGc: full }, 'memory released'),
    });
    releaser?.start();
    const stopMemoryReport = reportMemoryOnSignal(log, releaser, () => router.linkCircuitCount());
    await untilStopSignal(log);
    releaser?.stop();
    stopMemoryReport();
    await tun?.stop();
    sync.stop();
    posture?.stop();
    clearInterval(postureRefresh);
    clearTimeout(expiryTimer);
    await router.stop();
    await key.close();
    log.flush();
    return 0;
  },
};

const NO_HOSTED = new Map<string, HostTarget>();

function tunSummary(config: RouterConfig): string {
  if (config.tunnel.mode !== 'tun') return '';
  const t = config.tunnel.tun;
  return `  tun: ${t.name} (mtu ${t.mtu}${t.netns === undefined ? '' : `, in netns ${t.netns}`}), pool ${t.dnsRange}, DNS ${t.dnsListen.join(', ')}, upstream ${t.upstream.join(', ') || '(none: REFUSED)'}\n`;
}
/** Re-report unchanged posture this often: well inside the 10 min after which posture data counts as stale. */
const POSTURE_REFRESH_MS = 4 * 60_000;

function commonName(identity: LoadedIdentity): string {
  const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(identity.certPem)?.[0];
  const cn = leaf === undefined ? undefined : /(?:^|\n)CN=([^\n]+)/.exec(new X509Certificate(leaf).subject)?.[1];
  if (cn === undefined) throw new EdgeError('ERR_IDENTITY_FILE', `${identity.path}: the certificate has no common name (router id)`);
  return cn;
}

async function serverCredentials(config: RouterConfig, identity: LoadedIdentity, configPath: string): Promise<{ certPem: string; keyPem: string } | undefined> {
  if (config.server !== undefined) {
    try {
      return { certPem: await fs.readFile(config.server.cert, 'utf8'), keyPem: await fs.readFile(config.server.key, 'utf8') };
    } catch (err) {
      throw new EdgeError('ERR_CONFIG', `${configPath}: server: ${(err as Error).message}`, { cause: err });
    }
  }
  if (identity.server !== undefined) return identity.server;
  if (config.listeners.length > 0) {
    throw new EdgeError('ERR_CONFIG', `${configPath}: listeners need a server certificate; enroll this router with its edge-router token (ztedge enroll --jwt ROUTER.jwt), which issues one, or set server.cert and server.key`);
  }
  return undefined;
}

async function openKey(identity: LoadedIdentity): Promise<KeyStore> {
  if (identity.key.kind === 'pem') return FileKeyStore.fromPem(identity.key.pem, identity.key.ref);
  const { Pkcs11KeyStore } = await import('../keys/pkcs11.js');
  return Pkcs11KeyStore.open(identity.key.uri);
}

function endpoint(text: string): { host: string; port: number } {
  const r = parseEndpoint(text);
  if (!r.ok) throw new EdgeError('ERR_CONFIG', `bad endpoint ${text}`);
  return { host: r.value.host, port: r.value.port };
}

function hostPort(text: string): { host: string; port: number } {
  const r = parseHostPort(text);
  if (!r.ok) throw new EdgeError('ERR_CONFIG', `bad address ${text}`);
  return { host: r.value.host, port: r.value.port };
}
