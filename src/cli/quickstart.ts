/**
 * `ztedge quickstart`: a whole overlay on one machine with the embedded
 * defaults: a controller, an admin session for the CLI, a demo device
 * enrolled end to end, and three routers (hub, edge with a proxy port, host
 * in front of a demo HTTP service) as separate `ztedge router` processes.
 * It sends a request through the overlay, shows it refused once the Dial
 * policy is removed, puts the policy back, and keeps everything running.
 */
import { existsSync, promises as fs } from 'node:fs';
import type { Server } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { startController } from '../controller/index.js';
import { EdgeError } from '../errors.js';
import { enroll } from '../identity/enroll.js';
import { loadIdentityFile } from '../identity/file.js';
import { jsonOf, request } from '../identity/https.js';
import { createRootLogger } from '../log/index.js';
import { out, parse, str, untilStopSignal, type Command } from './command.js';
import { login, ManagementClient } from './edge/client.js';
import { ensureRouter, getUntil, portOrFree, startDemoService, startRouterProcess, stopRouters, writeRouterConfig, type QuickRouter } from './quickstart-fabric.js';

const HELP = `Usage: ztedge quickstart [options]

Starts a whole overlay on this machine with the embedded defaults:
  - a controller, and the CLI logged in as admin;
  - a demo device identity, enrolled with a one-time token (key made locally);
  - three routers, each its own "ztedge router --config" process: a hub that
    accepts links, a host router in front of a demo HTTP service, and an edge
    router with a proxy port for that service;
  - the service "demo" with a Bind policy (host) and a Dial policy (edge).
Then it sends a request through edge → hub → host, removes the Dial policy
to show the request refused, puts it back, and keeps everything running
until Ctrl-C. Run it again to pick up where it left off (the data folder is
reused). Router configs and logs are written to the data folder.

Options:
  --data DIR           data folder                                   [./ztedge-quickstart]
  --listen HOST:PORT   controller address                            [127.0.0.1:1280]
  --hub-port N         hub router link listener on 127.0.0.1         [3022; 0 = any free port]
  --proxy-port N       edge router proxy port for the demo service   [18080; 0 = any free port]
  --exit               stop after the demo instead of keeping everything running
  -h, --help           this help`;

function portOption(v: string | undefined, flag: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new EdgeError('ERR_USAGE', `${flag} must be a port number 0–65535, got "${v}"`);
  return n;
}

export const quickstartCommand: Command = {
  name: 'quickstart',
  summary: 'a whole overlay on this machine: controller, routers, a demo service and its policies',
  help: HELP,
  async run(argv) {
    const { values } = parse(argv, { data: { type: 'string' }, listen: { type: 'string' }, exit: { type: 'boolean' }, 'hub-port': { type: 'string' }, 'proxy-port': { type: 'string' } }, 'quickstart');
    if (values.help === true) { out(HELP); return 0; }
    const dataDir = resolve(str(values.data) ?? 'ztedge-quickstart');
    const ctrlDir = join(dataDir, 'controller');
    const logFile = join(dataDir, 'controller.log');
    const listen = str(values.listen) ?? '127.0.0.1:1280';
    // A controller on port 0 (tests, parallel runs) means: any free port everywhere.
    const anyPort = /:0$/.test(listen);
    const hubPort = await portOrFree(portOption(str(values['hub-port']), '--hub-port', anyPort ? 0 : 3022));
    const proxyPort = await portOrFree(portOption(str(values['proxy-port']), '--proxy-port', anyPort ? 0 : 18080));
    const rel = (p: string): string => relative(process.cwd(), p) || '.';
    await fs.mkdir(dataDir, { recursive: true });
    const log = createRootLogger({ file: logFile });
    out(`ztedge quickstart — data folder ${rel(dataDir)}`);
    let step = 0;
    const say = (line: string): void => out(`${++step}. ${line}`);
    const ctrl = await startController({ dataDir: ctrlDir, listen, log });
    const routers: QuickRouter[] = [];
    let demo: Server | undefined;
    try {
      const passwordFile = join(ctrlDir, 'admin.password');
      say(`controller running at ${ctrl.url}  (logs: ${rel(logFile)})`);
      out(`   PKI: root CA + signing intermediate in ${rel(join(ctrlDir, 'pki'))}; admin password in ${rel(passwordFile)}`);
      if (!existsSync(passwordFile)) throw new EdgeError('ERR_CONFIG', `${passwordFile} is missing: this data folder was not made by quickstart`);
      const password = (await fs.readFile(passwordFile, 'utf8')).trim();
      await login({ url: ctrl.url, ca: ctrl.context.pki.caBundlePem, username: 'admin', password });
      say('CLI logged in as admin (ztedge edge … commands now work)');
      const client = await ManagementClient.fromState();

      await demoDevice(client, dataDir, ctrl.url, say, rel);

      // ---- the overlay ----
      demo = await startDemoService();
      const demoPort = (demo.address() as { port: number }).port;
      say(`demo service (HTTP) listening on 127.0.0.1:${demoPort}, reachable only through the overlay's host router`);
      const enrolled: string[] = [];
      for (const [name, attrs] of [['hub', ['hubs']], ['host', ['hosts']], ['edge', ['edges']]] as const) {
        if ((await ensureRouter(client, dataDir, name, ctrl.url, [...attrs])).created) enrolled.push(name);
      }
      say(enrolled.length > 0
        ? `routers ${enrolled.join(', ')} created and enrolled (erott: client + listener certificates from CSRs; keys made locally)`
        : 'routers hub, host, edge already enrolled');
      const hubCfg = await writeRouterConfig(dataDir, 'hub', [`listeners: [tls:127.0.0.1:${hubPort}]`]);
      const hostCfg = await writeRouterConfig(dataDir, 'host', [`links: [tls:127.0.0.1:${hubPort}]`]);
      const edgeCfg = await writeRouterConfig(dataDir, 'edge', [
        `links: [tls:127.0.0.1:${hubPort}]`, 'tunnel:', '  mode: proxy', '  proxy:', `    - { service: demo, listen: 127.0.0.1:${proxyPort} }`,
      ]);
      await ensureService(client, demoPort);
      say('service "demo" (host.v1 → the demo service), policies demo-bind (Bind: @host), demo-dial (Dial: @edge), demo-routers (service edge router policy: #all routers)');
      routers.push(await startRouterProcess(dataDir, 'hub', hubCfg));
      routers.push(await startRouterProcess(dataDir, 'host', hostCfg));
      routers.push(await startRouterProcess(dataDir, 'edge', edgeCfg));
      say(`routers running: hub (links on 127.0.0.1:${hubPort}), host, edge (proxy 127.0.0.1:${proxyPort} → demo)  (configs and logs: ${rel(join(dataDir, '{hub,host,edge}.{yml,log}'))})`);

      const allowed = await getUntil(proxyPort, (r) => r.ok && r.status === 200, 15_000);
      if (!allowed.ok || allowed.status !== 200) throw new EdgeError('ERR_INTERNAL', `the request through the overlay failed: ${allowed.ok ? `HTTP ${allowed.status}` : allowed.error}; see the router logs in ${rel(dataDir)}`);
      say(`GET http://127.0.0.1:${proxyPort}/ → edge → hub → host → demo: HTTP ${allowed.status} in ${allowed.ms.toFixed(1)} ms: "${allowed.body.trim()}"`);

      const dial = (await client.list<{ id: string }>('service-policies', 'name = "demo-dial"'))[0];
      if (dial !== undefined) await client.call('DELETE', `/service-policies/${dial.id}`);
      const refused = await getUntil(proxyPort, (r) => !r.ok, 5_000);
      if (refused.ok) throw new EdgeError('ERR_INTERNAL', 'the request still went through after the Dial policy was removed');
      const reason = [...(routers[1]?.logs ?? []), ...(routers[2]?.logs ?? [])].reverse().find((l) => typeof l.reason === 'string' && /denied/i.test(l.reason as string))?.reason;
      say(`Dial policy demo-dial removed → the same request is refused (${refused.error})${typeof reason === 'string' ? `: ${reason}` : ''}`);
      await createDialPolicy(client);
      const back = await getUntil(proxyPort, (r) => r.ok && r.status === 200, 10_000);
      say(`demo-dial created again → ${back.ok ? `HTTP ${back.status} in ${back.ms.toFixed(1)} ms` : `still refused: ${back.error}`}`);

      out('');
      const z = selfCommand();
      out(`Try next (in another terminal${z === 'ztedge' ? '' : '; "npm link" makes this just "ztedge"'}):`);
      out(`  curl http://127.0.0.1:${proxyPort}/`);
      out(`  ${z} edge list service-policies`);
      out(`  ${z} edge delete service-policy demo-dial        # and curl again: refused`);
      out(`  ${z} edge create service-policy demo-dial Dial --identity-roles '@edge' --service-roles '@demo'`);
      out(`  ${z} edge list edge-routers`);
      out(`  ${z} edge create identity device plc-7 --role-attributes plc -o plc-7.jwt && ${z} enroll --jwt plc-7.jwt --out plc-7.json`);
      if (values.exit === true) return 0;
      out('');
      out('Controller and routers running; press Ctrl-C to stop.');
      await untilStopSignal();
      return 0;
    } finally {
      await stopRouters(routers);
      demo?.close();
      await ctrl.close();
      log.flush();
    }
  },
};

/** The ott demo: a device identity enrolled with a one-time token, then authenticated with its certificate. */
async function demoDevice(client: ManagementClient, dataDir: string, url: string, say: (l: string) => void, rel: (p: string) => string): Promise<void> {
  const name = 'demo-device';
  const identityFile = join(dataDir, `${name}.json`);
  const existing = (await client.list<{ id: string }>('identities', `name = "${name}"`))[0];
  if (existing !== undefined && existsSync(identityFile) && (await loadIdentityFile(identityFile)).apiUrl === url) {
    say(`identity ${name} (${existing.id}) already enrolled: ${rel(identityFile)}`);
  } else {
    if (existing !== undefined) await client.call('DELETE', `/identities/${existing.id}`);
    for (const f of ['json', 'cert.pem', 'key.pem', 'ca.pem']) await fs.rm(join(dataDir, `${name}.${f}`), { force: true });
    const created = await client.call<{ id: string }>('POST', '/identities', { name, type: 'Device', isAdmin: false, roleAttributes: ['demo'], enrollment: { ott: true } });
    const detail = await client.call<{ enrollment: { ott: { jwt: string; expiresAt: string } } }>('GET', `/identities/${created.id}`);
    const jwtFile = join(dataDir, `${name}.jwt`);
    await fs.writeFile(jwtFile, detail.enrollment.ott.jwt + '\n', { mode: 0o600 });
    await enroll({ jwt: detail.enrollment.ott.jwt, out: identityFile });
    say(`identity ${name} (${created.id}) enrolled with a one-time token: key made locally (${rel(join(dataDir, `${name}.key.pem`))}, never sent), certificate from a CSR`);
  }
  const id = await loadIdentityFile(identityFile);
  if (id.key.kind !== 'pem') throw new EdgeError('ERR_IDENTITY_FILE', 'the demo identity has no file key');
  const res = await request(`${url}/edge/client/v1/authenticate?method=cert`, {
    ca: id.caPem, cert: id.certPem, key: id.key.pem, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
  });
  const session = jsonOf<{ identity: { name: string } }>(res);
  say(`${session.identity.name} authenticated to the client API with its certificate (mutual TLS)`);
}

/** The demo service, its host.v1 config (pointing at this run's demo port) and both policies. */
async function ensureService(client: ManagementClient, demoPort: number): Promise<void> {
  const data = { protocol: 'tcp', address: '127.0.0.1', port: demoPort };
  const cfg = (await client.list<{ id: string }>('configs', 'name = "demo-host"'))[0];
  const cfgId = cfg !== undefined
    ? (await client.call('PATCH', `/configs/${cfg.id}`, { data }), cfg.id)
    : (await client.call<{ id: string }>('POST', '/configs', { name: 'demo-host', configTypeId: 'host.v1', data })).id;
  if ((await client.list('services', 'name = "demo"')).length === 0) await client.call('POST', '/services', { name: 'demo', configs: [cfgId], roleAttributes: ['demo'] });
  if ((await client.list('service-policies', 'name = "demo-bind"')).length === 0) {
    await client.call('POST', '/service-policies', { name: 'demo-bind', type: 'Bind', semantic: 'AnyOf', identityRoles: ['@host'], serviceRoles: ['@demo'] });
  }
  if ((await client.list('service-policies', 'name = "demo-dial"')).length === 0) await createDialPolicy(client);
  // A service may use no router unless a service edge router policy allows it (as in OpenZiti).
  if ((await client.list('service-edge-router-policies', 'name = "demo-routers"')).length === 0) {
    await client.call('POST', '/service-edge-router-policies', { name: 'demo-routers', semantic: 'AnyOf', edgeRouterRoles: ['#all'], serviceRoles: ['@demo'] });
  }
}

async function createDialPolicy(client: ManagementClient): Promise<void> {
  await client.call('POST', '/service-policies', { name: 'demo-dial', type: 'Dial', semantic: 'AnyOf', identityRoles: ['@edge'], serviceRoles: ['@demo'] });
}

/** How to call this binary from the user's shell: `ztedge` if it is on PATH, else `node <bundle>`. */
function selfCommand(): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'ztedge'))) return 'ztedge';
  }
  const script = process.argv[1];
  return script === undefined ? 'ztedge' : `node ${relative(process.cwd(), script) || script}`;
}
