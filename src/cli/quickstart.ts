/**
 * `ztedge quickstart`: a working controller on one machine with the embedded
 * defaults, an admin session for the CLI, and a demo device identity enrolled
 * end to end, then it keeps the controller running for you to explore.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { startController } from '../controller/index.js';
import { EdgeError } from '../errors.js';
import { enroll } from '../identity/enroll.js';
import { loadIdentityFile } from '../identity/file.js';
import { jsonOf, request } from '../identity/https.js';
import { createRootLogger } from '../log/index.js';
import { out, parse, str, type Command } from './command.js';
import { login, ManagementClient } from './edge/client.js';

const HELP = `Usage: ztedge quickstart [options]

Starts a controller with the embedded defaults, logs the CLI in as admin,
creates and enrolls a demo device identity, prints what happened and what to
try next, then keeps the controller running until Ctrl-C. Run it again to
pick up where it left off: the data folder is reused.

Options:
  --data DIR           data folder                      [./ztedge-quickstart]
  --listen HOST:PORT   controller address               [127.0.0.1:1280]
  --exit               stop after the demo instead of keeping the controller running
  -h, --help           this help`;

export const quickstartCommand: Command = {
  name: 'quickstart',
  summary: 'a controller plus an enrolled demo identity, on this machine',
  help: HELP,
  async run(argv) {
    const { values } = parse(argv, { data: { type: 'string' }, listen: { type: 'string' }, exit: { type: 'boolean' } }, 'quickstart');
    if (values.help === true) { out(HELP); return 0; }
    const dataDir = resolve(str(values.data) ?? 'ztedge-quickstart');
    const ctrlDir = join(dataDir, 'controller');
    const logFile = join(dataDir, 'controller.log');
    const rel = (p: string): string => relative(process.cwd(), p) || '.';
    const log = createRootLogger({ file: logFile });
    out(`ztedge quickstart — data folder ${rel(dataDir)}`);
    let step = 0;
    const say = (line: string): void => out(`${++step}. ${line}`);
    const ctrl = await startController({ dataDir: ctrlDir, listen: str(values.listen) ?? '127.0.0.1:1280', log });
    try {
      const passwordFile = join(ctrlDir, 'admin.password');
      say(`controller running at ${ctrl.url}  (logs: ${rel(logFile)})`);
      out(`   PKI: root CA + signing intermediate in ${rel(join(ctrlDir, 'pki'))}; admin password in ${rel(passwordFile)}`);
      if (!existsSync(passwordFile)) throw new EdgeError('ERR_CONFIG', `${passwordFile} is missing: this data folder was not made by quickstart`);
      const password = (await fs.readFile(passwordFile, 'utf8')).trim();
      await login({ url: ctrl.url, ca: ctrl.context.pki.caBundlePem, username: 'admin', password });
      say('CLI logged in as admin (ztedge edge … commands now work)');

      const name = 'demo-device';
      const identityFile = join(dataDir, `${name}.json`);
      const client = await ManagementClient.fromState();
      const existing = (await client.list<{ id: string }>('identities', `name = "${name}"`))[0];
      if (existing !== undefined && existsSync(identityFile)) {
        say(`identity ${name} (${existing.id}) already enrolled: ${rel(identityFile)}`);
      } else {
        if (existing !== undefined) await client.call('DELETE', `/identities/${existing.id}`);
        for (const f of ['json', 'cert.pem', 'key.pem', 'ca.pem']) await fs.rm(join(dataDir, `${name}.${f}`), { force: true });
        const created = await client.call<{ id: string }>('POST', '/identities', { name, type: 'Device', isAdmin: false, roleAttributes: ['demo'], enrollment: { ott: true } });
        const detail = await client.call<{ enrollment: { ott: { jwt: string; expiresAt: string } } }>('GET', `/identities/${created.id}`);
        const jwtFile = join(dataDir, `${name}.jwt`);
        await fs.writeFile(jwtFile, detail.enrollment.ott.jwt + '\n', { mode: 0o600 });
        say(`created identity ${name} (${created.id}) with a one-time token: ${rel(jwtFile)}`);
        await enroll({ jwt: detail.enrollment.ott.jwt, out: identityFile });
        say(`enrolled it: key made locally (${rel(join(dataDir, `${name}.key.pem`))}, never sent), certificate issued from a CSR`);
        out(`   identity file: ${rel(identityFile)}`);
      }
      const id = await loadIdentityFile(identityFile);
      if (id.key.kind !== 'pem') throw new EdgeError('ERR_IDENTITY_FILE', 'the demo identity has no file key');
      const res = await request(`${ctrl.url}/edge/client/v1/authenticate?method=cert`, {
        ca: id.caPem, cert: id.certPem, key: id.key.pem, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
      });
      const session = jsonOf<{ identity: { name: string } }>(res);
      say(`${session.identity.name} authenticated to the client API with its certificate (mutual TLS)`);
      out('');
      const z = selfCommand();
      out(`Try next (in another terminal${z === 'ztedge' ? '' : '; "npm link" makes this just "ztedge"'}):`);
      out(`  ${z} edge list identities`);
      out(`  ${z} edge create identity device plc-7 --role-attributes plc -o plc-7.jwt`);
      out(`  ${z} enroll --jwt plc-7.jwt --out plc-7.json`);
      out(`  curl -sk ${ctrl.url}/.well-known/est/cacerts | base64 -d | openssl pkcs7 -inform DER -print_certs`);
      out(`  openssl verify -CAfile ${rel(join(dataDir, `${name}.ca.pem`))} ${rel(join(dataDir, `${name}.cert.pem`))}`);
      if (values.exit === true) return 0;
      out('');
      out('Controller running; press Ctrl-C to stop.');
      await new Promise<void>((r) => { process.once('SIGINT', () => r()); process.once('SIGTERM', () => r()); });
      return 0;
    } finally {
      await ctrl.close();
      log.flush();
    }
  },
};

/** How to call this binary from the user's shell: `ztedge` if it is on PATH, else `node <bundle>`. */
function selfCommand(): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'ztedge'))) return 'ztedge';
  }
  const script = process.argv[1];
  return script === undefined ? 'ztedge' : `node ${relative(process.cwd(), script) || script}`;
}
