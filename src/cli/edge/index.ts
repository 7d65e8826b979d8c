/**
 * `ztedge edge …`: the management CLI, with the verbs of `ziti edge …`
 * (login, create, list, update, delete) over the management REST API:
 * identities, CAs and enrollments; edge routers, configs, services, service
 * policies, edge router policies, service edge router policies, posture
 * checks and auth policies.
 */
import { promises as fs } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import qrcode from 'qrcode-terminal';
import { EdgeError } from '../../errors.js';
import { out, parse, str, type Command } from '../command.js';
import { clearState, describeBundle, fetchCaBundleUnverified, login, ManagementClient, normalizeUrl, statePath } from './client.js';

const HELP = `Usage: ztedge edge <verb> <noun> [args] [options]

Manage the overlay through the controller's management API.

  login [URL] -u USER (-p PASS | --password-file F)   log in with a password (URL default https://127.0.0.1:1280)
  login [URL] --file IDENTITY.json                    log in with an enrolled admin identity's certificate
        --ca FILE   trust this CA bundle   -y   trust the bundle the controller serves without asking
        --mfa-code CODE   when the identity must pass MFA (asked for on a terminal when not given)
  logout                                              end the session
  create identity [device|service|user] NAME          new identity with a one-time enrollment token
        --role-attributes a,b   --admin   --updb USERNAME   --external-id ID
        -o FILE (write the enrollment JWT)   --qr (print it as a QR code)
        --ottca CA_NAME_OR_ID (enroll with a certificate from a registered 3rd-party CA)
        --auth-policy NAME_OR_ID (default: the built-in "Default")
  update identity NAME|ID [--auth-policy NAME_OR_ID] [--role-attributes a,b]
  create ca NAME CERT.pem [--identity-roles a,b] [--no-auth] [--no-ottca]   register a 3rd-party CA
  verify ca NAME|ID --cert PROOF.pem                  prove the CA's key: a cert with CN = its verificationToken
  create edge-router NAME [--role-attributes a,b] [--tunneler-enabled] [-o router.jwt]
                                                      new router (also an identity for policies) with an erott token
  create config NAME intercept.v1|host.v1 'JSON'      config data, checked against its type
  create service NAME [--configs a,b] [--role-attributes a,b]   configs by name or id
  create service-policy NAME Dial|Bind --identity-roles '#attr,@name' --service-roles '#attr,@name'
        [--semantic AllOf|AnyOf] [--posture-check-roles '#attr,@name']
                                                      selectors: #attr, @name or @id, #all (default semantic AllOf)
  create edge-router-policy NAME --edge-router-roles '#attr,@name' --identity-roles '#attr,@name' [--semantic …]
                                                      which routers the identities may connect to
  create service-edge-router-policy NAME --edge-router-roles '#attr,@name' --service-roles '#attr,@name' [--semantic …]
                                                      which routers may carry the services
  create posture-check NAME TYPE [--role-attributes a,b]   a check service policies can require (--posture-check-roles):
        mac --mac-addresses aa:bb:cc:dd:ee:ff,…       os --os 'Linux:>=5.10,6.1' [--os 'Windows:10.0.19041']
        process --path /usr/bin/x [--os-type Linux] [--hash SHA512,…] [--signer SHA1]
        process-multi --path /a --path /b [--semantic AllOf|AnyOf] [--os-type Linux]
        domain --domains corp.example,…              mfa [--timeout-seconds N] [--prompt-on-wake] [--prompt-on-unlock]
  create auth-policy NAME [--no-cert] [--no-updb] [--no-ext-jwt] [--allow-expired-certs] [--require-totp]
        [--min-password-length N] [--require-mixed-case] [--require-number] [--require-special]
        [--max-attempts N] [--lockout-minutes N]      which logins its identities may use (0 attempts: no lockout;
                                                      0 minutes: locked until an admin enables the identity)
  list identities [FILTER]                            e.g. 'name contains "plc"'
  list enrollments [FILTER]
  list cas [FILTER]
  list edge-routers [FILTER]
  list configs [FILTER]                               e.g. 'type = "host.v1"'
  list services [FILTER]
  list service-policies [FILTER]                      e.g. 'type = "Dial"'
  list edge-router-policies [FILTER]
  list service-edge-router-policies [FILTER]
  list posture-checks [FILTER]                        e.g. 'typeId = "MAC"'
  list auth-policies [FILTER]
  list summary
  delete identity NAME|ID
  delete ca NAME|ID
  delete enrollment ID | where FILTER                 e.g. delete enrollment where 'identity="ID"'
  delete edge-router|config|service|service-policy NAME|ID
  delete edge-router-policy|service-edge-router-policy|posture-check|auth-policy NAME|ID

  --json   print JSON instead of a table (list)

Examples:
  ztedge edge login https://127.0.0.1:1280 -u admin --password-file ./data/admin.password -y
  ztedge edge create identity device plc-7 --role-attributes plc,line1 -o plc-7.jwt
  ztedge edge list identities 'roleAttributes contains "plc"'
  ztedge edge delete identity plc-7
  ztedge edge create ca plant-ca plant-ca.pem && ztedge edge verify ca plant-ca --cert proof.pem
  ztedge edge create edge-router hub-1 --role-attributes hubs -o hub-1.jwt
  ztedge edge create config web-host host.v1 '{"protocol":"tcp","address":"127.0.0.1","port":8080}'
  ztedge edge create service web --configs web-host,web-intercept --role-attributes demo
  ztedge edge create service-policy web-bind Bind --identity-roles '@hosting-router' --service-roles '@web'`;

const OPTIONS = {
  username: { type: 'string', short: 'u' }, password: { type: 'string', short: 'p' }, 'password-file': { type: 'string' },
  file: { type: 'string' }, ca: { type: 'string' }, yes: { type: 'boolean', short: 'y' },
  'role-attributes': { type: 'string', short: 'a' }, admin: { type: 'boolean' }, updb: { type: 'string' },
  'external-id': { type: 'string' }, ottca: { type: 'string' }, cert: { type: 'string' },
  'identity-roles': { type: 'string' }, 'no-auth': { type: 'boolean' }, 'no-ottca': { type: 'boolean' }, output: { type: 'string', short: 'o' }, qr: { type: 'boolean' }, json: { type: 'boolean' },
  'tunneler-enabled': { type: 'boolean' }, configs: { type: 'string' }, 'service-roles': { type: 'string' }, semantic: { type: 'string' },
  'edge-router-roles': { type: 'string' }, 'posture-check-roles': { type: 'string' },
  'mac-addresses': { type: 'string' }, os: { type: 'string', multiple: true }, path: { type: 'string', multiple: true }, 'os-type': { type: 'string' },
  hash: { type: 'string' }, signer: { type: 'string' }, domains: { type: 'string' }, 'timeout-seconds': { type: 'string' },
  'prompt-on-wake': { type: 'boolean' }, 'prompt-on-unlock': { type: 'boolean' },
  'auth-policy': { type: 'string' }, 'no-cert': { type: 'boolean' }, 'no-updb': { type: 'boolean' }, 'no-ext-jwt': { type: 'boolean' },
  'allow-expired-certs': { type: 'boolean' }, 'require-totp': { type: 'boolean' }, 'min-password-length': { type: 'string' },
  'require-mixed-case': { type: 'boolean' }, 'require-number': { type: 'boolean' }, 'require-special': { type: 'boolean' },
  'max-attempts': { type: 'string' }, 'lockout-minutes': { type: 'string' }, 'mfa-code': { type: 'string' },
} as const;

type Values = Record<string, string | boolean | string[] | undefined>;

const IDENTITY_TYPES: Record<string, string> = { device: 'Device', service: 'Service', user: 'User', default: 'Default', router: 'Router' };

export const edgeCommand: Command = {
  name: 'edge',
  summary: 'manage identities, routers, services and policies (login, create, list, update, delete)',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parse(argv, OPTIONS, 'edge');
    const [verb, noun, ...rest] = positionals;
    if (values.help === true || verb === undefined) { out(HELP); return verb === undefined && values.help !== true ? 2 : 0; }
    switch (verb) {
      case 'login': return doLogin(noun, values);
      case 'logout': return doLogout();
      case 'create': return doCreate(noun, rest, values);
      case 'list': return doList(noun, rest, values);
      case 'update': return doUpdate(noun, rest, values);
      case 'delete': return doDelete(noun, rest);
      case 'verify': return doVerify(noun, rest, values);
      default: throw new EdgeError('ERR_USAGE', `unknown verb "${verb}"\nRun "ztedge edge --help" for usage.`);
    }
  },
};

async function readSecretFile(path: string): Promise<string> {
  try {
    return (await fs.readFile(path, 'utf8')).replace(/\r?\n$/, '');
  } catch (err) {
    throw new EdgeError('ERR_USAGE', `cannot read ${path}: ${(err as Error).message}`);
  }
}

async function doLogin(urlArg: string | undefined, v: Values): Promise<number> {
  const file = str(v.file);
  let url = urlArg !== undefined ? normalizeUrl(urlArg) : undefined;
  let ca: string | undefined;
  if (file !== undefined) {
    const { loadIdentityFile } = await import('../../identity/file.js');
    const id = await loadIdentityFile(file);
    url ??= id.apiUrl;
    ca = id.caPem;
  }
  url ??= 'https://127.0.0.1:1280';
  const caFile = str(v.ca);
  if (caFile !== undefined) ca = await readSecretFile(caFile);
  if (ca === undefined) {
    const bundle = await fetchCaBundleUnverified(url);
    if (v.yes !== true) {
      out(`The controller at ${url} serves this CA bundle:`);
      for (const line of describeBundle(bundle)) out(`  ${line}`);
      if (!process.stdin.isTTY) throw new EdgeError('ERR_USAGE', 'not trusted: confirm with -y, or pass --ca FILE');
      const rl = createInterface({ input: process.stdin, output: process.stdout });
      const answer = await rl.question('Trust it? [y/N] ');
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) return 1;
    }
    ca = bundle;
  }
  let password = str(v.password);
  const pf = str(v['password-file']);
  if (pf !== undefined) password = await readSecretFile(pf);
  const mfaCode = async (): Promise<string | undefined> => {
    const given = str(v['mfa-code']);
    if (given !== undefined || !process.stdin.isTTY) return given;
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question('MFA code: ');
    rl.close();
    return answer.trim();
  };
  const { identityName } = await login({ url, ca, username: str(v.username), password, identityFile: file, mfaCode });
  out(`Logged in to ${url} as ${identityName} (session saved in ${statePath()})`);
  return 0;
}

async function doLogout(): Promise<number> {
  try {
    const client = await ManagementClient.fromState();
    await client.call('DELETE', '/current-api-session').catch(() => undefined);
  } catch { /* not logged in: nothing to end */ }
  await clearState();
  out('Logged out');
  return 0;
}

async function findOne(client: ManagementClient, collection: string, key: string, what: string): Promise<Row> {
  const byName = await client.list<Row>(collection, `name = ${JSON.stringify(key)}`);
  const found = byName[0] ?? (await client.list<Row>(collection, `id = ${JSON.stringify(key)}`))[0];
  if (found === undefined) throw new EdgeError('ERR_USAGE', `no ${what} named or with id "${key}"`);
  return found;
}

async function doCreateCa(rest: string[], v: Values): Promise<number> {
  const [name, certFile] = rest;
  if (name === undefined || certFile === undefined || rest.length !== 2) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create ca NAME CERT.pem [--identity-roles a,b] [--no-auth] [--no-ottca]');
  const certPem = await readSecretFile(certFile);
  const client = await ManagementClient.fromState();
  const roles = str(v['identity-roles'])?.split(',').map((a) => a.trim()).filter((a) => a !== '') ?? [];
  const created = await client.call<{ id: string }>('POST', '/cas', {
    name, certPem, identityRoles: roles, isAutoCaEnrollmentEnabled: false,
    isOttCaEnrollmentEnabled: v['no-ottca'] !== true, isAuthEnabled: v['no-auth'] !== true,
  });
  const ca = await client.call<{ verificationToken: string; fingerprint: string }>('GET', `/cas/${created.id}`);
  out(`New CA ${name} created with id: ${created.id} (fingerprint ${ca.fingerprint})`);
  out(`Not yet verified. Prove you hold its key: sign a certificate with CN=${ca.verificationToken} with this CA, then`);
  out(`  ztedge edge verify ca ${name} --cert proof.pem`);
  return 0;
}

async function doVerify(noun: string | undefined, rest: string[], v: Values): Promise<number> {
  const certFile = str(v.cert);
  if (noun !== 'ca' || rest.length !== 1 || certFile === undefined) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge verify ca NAME|ID --cert PROOF.pem');
  const client = await ManagementClient.fromState();
  const ca = await findOne(client, 'cas', rest[0]!, 'CA');
  await client.callText('POST', `/cas/${String(ca.id)}/verify`, await readSecretFile(certFile));
  out(`CA ${String(ca.name)} verified`);
  return 0;
}

/** "a, b,,c" → ["a","b","c"]; undefined when the option was not given. */
function list(v: unknown): string[] | undefined {
  return str(v)?.split(',').map((a) => a.trim()).filter((a) => a !== '');
}

async function writeToken(output: string | undefined, jwt: string, expiresAt: string): Promise<void> {
  if (output !== undefined) {
    await fs.writeFile(output, jwt + '\n', { mode: 0o600 });
    out(`Enrollment expires at ${expiresAt}; token written to ${output}`);
  } else {
    out(`Enrollment expires at ${expiresAt}`);
  }
}

async function doCreateEdgeRouter(rest: string[], v: Values): Promise<number> {
  const [name] = rest;
  if (name === undefined || rest.length !== 1) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create edge-router NAME [--role-attributes a,b] [--tunneler-enabled] [-o router.jwt]');
  const client = await ManagementClient.fromState();
  const created = await client.call<{ id: string }>('POST', '/edge-routers', {
    name, roleAttributes: list(v['role-attributes']) ?? [], isTunnelerEnabled: v['tunneler-enabled'] === true,
  });
  const detail = await client.call<{ enrollmentJwt: string | null; enrollmentExpiresAt: string | null }>('GET', `/edge-routers/${created.id}`);
  out(`New edge router ${name} created with id: ${created.id}`);
  if (detail.enrollmentJwt !== null) await writeToken(str(v.output), detail.enrollmentJwt, detail.enrollmentExpiresAt ?? '');
  return 0;
}

async function doCreateConfig(rest: string[]): Promise<number> {
  const [name, type, json] = rest;
  if (name === undefined || type === undefined || json === undefined || rest.length !== 3) {
    throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create config NAME intercept.v1|host.v1 \'JSON\'');
  }
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (err) {
    throw new EdgeError('ERR_USAGE', `the config data is not JSON: ${(err as Error).message}`);
  }
  const client = await ManagementClient.fromState();
  const created = await client.call<{ id: string }>('POST', '/configs', { name, configTypeId: type, data });
  out(`New config ${name} (${type}) created with id: ${created.id}`);
  return 0;
}

async function doCreateService(rest: string[], v: Values): Promise<number> {
  const [name] = rest;
  if (name === undefined || rest.length !== 1) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create service NAME [--configs a,b] [--role-attributes a,b]');
  const client = await ManagementClient.fromState();
  const created = await client.call<{ id: string }>('POST', '/services', {
    name, configs: list(v.configs) ?? [], roleAttributes: list(v['role-attributes']) ?? [], encryptionRequired: true,
  });
  out(`New service ${name} created with id: ${created.id}`);
  return 0;
}

async function doCreateServicePolicy(rest: string[], v: Values): Promise<number> {
  const [name, type] = rest;
  const usage = 'usage: ztedge edge create service-policy NAME Dial|Bind --identity-roles \'#attr,@name\' --service-roles \'#attr,@name\' [--semantic AllOf|AnyOf]';
  if (name === undefined || type === undefined || rest.length !== 2) throw new EdgeError('ERR_USAGE', usage);
  const policyType = { dial: 'Dial', bind: 'Bind' }[type.toLowerCase()];
  if (policyType === undefined) throw new EdgeError('ERR_USAGE', `the policy type must be Dial or Bind, not "${type}"\n${usage}`);
  const client = await ManagementClient.fromState();
  const created = await client.call<{ id: string }>('POST', '/service-policies', {
    name, type: policyType, semantic: semanticOf(v), identityRoles: list(v['identity-roles']) ?? [], serviceRoles: list(v['service-roles']) ?? [],
    postureCheckRoles: list(v['posture-check-roles']) ?? [],
  });
  out(`New service policy ${name} (${policyType}) created with id: ${created.id}`);
  return 0;
}

/** --semantic, AllOf by default. */
function semanticOf(v: Values): string {
  const arg = str(v.semantic);
  const semantic = arg === undefined ? 'AllOf' : { allof: 'AllOf', anyof: 'AnyOf' }[arg.toLowerCase()];
  if (semantic === undefined) throw new EdgeError('ERR_USAGE', `--semantic must be AllOf or AnyOf, not "${arg ?? ''}"`);
  return semantic;
}

/** Edge router policies (identities → routers) and service edge router policies (services → routers). */
async function doCreateRouterPolicy(noun: 'edge-router-policy' | 'service-edge-router-policy', rest: string[], v: Values): Promise<number> {
  const [name] = rest;
  const other = noun === 'edge-router-policy' ? 'identity-roles' : 'service-roles';
  if (name === undefined || rest.length !== 1) throw new EdgeError('ERR_USAGE', `usage: ztedge edge create ${noun} NAME --edge-router-roles '#attr,@name' --${other} '#attr,@name' [--semantic AllOf|AnyOf]`);
  const client = await ManagementClient.fromState();
  const { collection, what } = DELETABLE[noun];
  const created = await client.call<{ id: string }>('POST', `/${collection}`, {
    name, semantic: semanticOf(v), edgeRouterRoles: list(v['edge-router-roles']) ?? [],
    [noun === 'edge-router-policy' ? 'identityRoles' : 'serviceRoles']: list(v[other]) ?? [],
  });
  out(`New ${what} ${name} created with id: ${created.id}`);
  return 0;
}

/** `--os 'Linux:>=5.10,6.1'` → {type: 'Linux', versions: ['>=5.10', '6.1']}; no versions: any version. */
function operatingSystem(arg: string): { type: string; versions: string[] } {
  const at = arg.indexOf(':');
  return at < 0 ? { type: arg.trim(), versions: [] } : { type: arg.slice(0, at).trim(), versions: list(arg.slice(at + 1)) ?? [] };
}

/** The data fields of a posture check of `type`, from the command line. */
function postureCheckFields(type: string, v: Values): Record<string, unknown> {
  const need = (flag: string): string => {
    const x = str(v[flag]);
    if (x === undefined) throw new EdgeError('ERR_USAGE', `a ${type} posture check needs --${flag}`);
    return x;
  };
  const paths = (v.path as string[] | undefined) ?? [];
  if ((type === 'process' || type === 'process-multi') && paths.length === 0) throw new EdgeError('ERR_USAGE', `a ${type} posture check needs --path`);
  const osType = str(v['os-type']) ?? 'Linux';
  switch (type) {
    case 'mac': return { typeId: 'MAC', macAddresses: list(need('mac-addresses')) };
    case 'os': {
      const oses = (v.os as string[] | undefined) ?? [];
      if (oses.length === 0) throw new EdgeError('ERR_USAGE', "an os posture check needs --os 'TYPE[:VERSION,…]' (TYPE: Windows, WindowsServer, Android, iOS, Linux, macOS)");
      return { typeId: 'OS', operatingSystems: oses.map(operatingSystem) };
    }
    case 'process': {
      if (paths.length !== 1) throw new EdgeError('ERR_USAGE', 'a process posture check takes one --path (process-multi takes several)');
      const hashes = list(v.hash);
      const signer = str(v.signer);
      return { typeId: 'PROCESS', process: { osType, path: paths[0], ...(hashes !== undefined ? { hashes } : {}), ...(signer !== undefined ? { signerFingerprint: signer } : {}) } };
    }
    case 'process-multi': return { typeId: 'PROCESS_MULTI', semantic: semanticOf(v), processes: paths.map((path) => ({ osType, path })) };
    case 'domain': return { typeId: 'DOMAIN', domains: list(need('domains')) };
    case 'mfa': {
      const t = str(v['timeout-seconds']);
      if (t !== undefined && !/^-?\d+$/.test(t)) throw new EdgeError('ERR_USAGE', `--timeout-seconds must be a whole number (-1: no timeout), not "${t}"`);
      return { typeId: 'MFA', timeoutSeconds: t === undefined ? -1 : Number(t), promptOnWake: v['prompt-on-wake'] === true, promptOnUnlock: v['prompt-on-unlock'] === true, ignoreLegacyEndpoints: false };
    }
    default: throw new EdgeError('ERR_USAGE', `unknown posture check type "${type}" (mac, os, process, process-multi, domain, mfa)`);
  }
}

async function doCreatePostureCheck(rest: string[], v: Values): Promise<number> {
  const [name, type] = rest;
  if (name === undefined || type === undefined || rest.length !== 2) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create posture-check NAME mac|os|process|process-multi|domain|mfa [options] (see --help)');
  const body: Record<string, unknown> = { name, roleAttributes: list(v['role-attributes']) ?? [], ...postureCheckFields(type.toLowerCase(), v) };
  const client = await ManagementClient.fromState();
  const created = await client.call<{ id: string }>('POST', '/posture-checks', body);
  out(`New posture check ${name} (${String(body.typeId)}) created with id: ${created.id}`);
  return 0;
}

/** A whole number option (undefined when not given). */
function wholeNumber(v: Values, flag: string): number | undefined {
  const x = str(v[flag]);
  if (x !== undefined && !/^\d+$/.test(x)) throw new EdgeError('ERR_USAGE', `--${flag} must be a whole number, not "${x}"`);
  return x === undefined ? undefined : Number(x);
}

async function doCreateAuthPolicy(rest: string[], v: Values): Promise<number> {
  const [name] = rest;
  if (name === undefined || rest.length !== 1) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create auth-policy NAME [--no-cert] [--no-updb] [--require-totp] … (see --help)');
  const updb: Record<string, unknown> = {
    allowed: v['no-updb'] !== true, requireMixedCase: v['require-mixed-case'] === true,
    requireNumberChar: v['require-number'] === true, requireSpecialChar: v['require-special'] === true,
    minPasswordLength: wholeNumber(v, 'min-password-length'), maxAttempts: wholeNumber(v, 'max-attempts'), lockoutDurationMinutes: wholeNumber(v, 'lockout-minutes'),
  };
  const client = await ManagementClient.fromState();
  const created = await client.call<{ id: string }>('POST', '/auth-policies', {
    name,
    primary: {
      cert: { allowed: v['no-cert'] !== true, allowExpiredCerts: v['allow-expired-certs'] === true },
      extJwt: { allowed: v['no-ext-jwt'] !== true, allowedSigners: [] },
      updb: Object.fromEntries(Object.entries(updb).filter(([, x]) => x !== undefined)),
    },
    secondary: { requireTotp: v['require-totp'] === true, requireExtJwtSigner: null },
  });
  out(`New auth policy ${name} created with id: ${created.id}`);
  return 0;
}

async function doUpdate(noun: string | undefined, rest: string[], v: Values): Promise<number> {
  const usage = 'usage: ztedge edge update identity NAME|ID [--auth-policy NAME_OR_ID] [--role-attributes a,b]';
  if (noun !== 'identity' || rest.length !== 1) throw new EdgeError('ERR_USAGE', usage);
  const client = await ManagementClient.fromState();
  const target = await findOne(client, 'identities', rest[0]!, 'identity');
  const patch: Record<string, unknown> = {};
  const authPolicy = str(v['auth-policy']);
  if (authPolicy !== undefined) patch.authPolicyId = String((await findOne(client, 'auth-policies', authPolicy, 'auth policy')).id);
  const attrs = list(v['role-attributes']);
  if (attrs !== undefined) patch.roleAttributes = attrs;
  if (Object.keys(patch).length === 0) throw new EdgeError('ERR_USAGE', `nothing to change\n${usage}`);
  await client.call('PATCH', `/identities/${String(target.id)}`, patch);
  out(`Updated identity ${String(target.name)} (${String(target.id)}): ${Object.keys(patch).join(', ')}`);
  return 0;
}

async function doCreate(noun: string | undefined, rest: string[], v: Values): Promise<number> {
  switch (noun) {
    case 'ca': return doCreateCa(rest, v);
    case 'edge-router': return doCreateEdgeRouter(rest, v);
    case 'config': return doCreateConfig(rest);
    case 'service': return doCreateService(rest, v);
    case 'service-policy': return doCreateServicePolicy(rest, v);
    case 'edge-router-policy': case 'service-edge-router-policy': return doCreateRouterPolicy(noun, rest, v);
    case 'posture-check': return doCreatePostureCheck(rest, v);
    case 'auth-policy': return doCreateAuthPolicy(rest, v);
    case 'identity': break;
    default: throw new EdgeError('ERR_USAGE', `cannot create "${noun ?? ''}" (identity, ca, edge-router, config, service, service-policy, edge-router-policy, service-edge-router-policy, posture-check, auth-policy)\nRun "ztedge edge --help" for usage.`);
  }
  let type = 'Default';
  let name = rest[0];
  if (rest.length >= 2 && IDENTITY_TYPES[rest[0]!.toLowerCase()] !== undefined) {
    type = IDENTITY_TYPES[rest[0]!.toLowerCase()]!;
    name = rest[1];
  }
  if (name === undefined || rest.length > (type === 'Default' && name === rest[0] ? 1 : 2)) {
    throw new EdgeError('ERR_USAGE', 'usage: ztedge edge create identity [device|service|user] NAME [options]');
  }
  const updb = str(v.updb);
  const ottcaKey = str(v.ottca);
  const attrs = str(v['role-attributes'])?.split(',').map((a) => a.trim()).filter((a) => a !== '') ?? [];
  const body: Record<string, unknown> = {
    name, type, isAdmin: v.admin === true, roleAttributes: attrs,
    enrollment: updb !== undefined ? { updb } : { ott: true },
  };
  const client = await ManagementClient.fromState();
  if (ottcaKey !== undefined) body.enrollment = { ottca: String((await findOne(client, 'cas', ottcaKey, 'CA')).id) };
  const externalId = str(v['external-id']);
  if (externalId !== undefined) body.externalId = externalId;
  const authPolicy = str(v['auth-policy']);
  if (authPolicy !== undefined) body.authPolicyId = String((await findOne(client, 'auth-policies', authPolicy, 'auth policy')).id);
  const created = await client.call<{ id: string }>('POST', '/identities', body);
  const detail = await client.call<{ enrollment: Record<string, { jwt: string; expiresAt: string }> }>('GET', `/identities/${created.id}`);
  const enrollment = detail.enrollment[updb !== undefined ? 'updb' : ottcaKey !== undefined ? 'ottca' : 'ott'];
  out(`New identity ${name} created with id: ${created.id}`);
  if (enrollment !== undefined) {
    await writeToken(str(v.output), enrollment.jwt, enrollment.expiresAt);
    if (v.qr === true) qrcode.generate(enrollment.jwt, { small: true }, (code) => out(code));
  }
  return 0;
}

type Row = Record<string, unknown>;

type Columns = [string, (r: Row) => unknown][];

function table(rows: Row[], columns: Columns): void {
  const cells = rows.map((r) => columns.map(([, f]) => { const x = f(r); return Array.isArray(x) ? x.join(',') : String(x ?? ''); }));
  const widths = columns.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd();
  out(line(columns.map(([h]) => h)));
  for (const c of cells) out(line(c));
  out(`results: ${rows.length}`);
}

async function doList(noun: string | undefined, rest: string[], v: Values): Promise<number> {
  const client = await ManagementClient.fromState();
  const filter = rest.join(' ');
  switch (noun) {
    case 'identities': case 'identity': {
      const rows = await client.list<Row>('identities', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      table(rows, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['TYPE', (r) => r.typeId], ['ATTRIBUTES', (r) => r.roleAttributes], ['ADMIN', (r) => r.isAdmin],
        ['ENROLLMENT', (r) => Object.keys(r.enrollment as object).join(',') || '-'], ['AUTH', (r) => Object.keys(r.authenticators as object).join(',') || '-']]);
      return 0;
    }
    case 'enrollments': case 'enrollment': {
      const rows = await client.list<Row>('enrollments', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      table(rows, [['ID', (r) => r.id], ['METHOD', (r) => r.method], ['IDENTITY', (r) => (r.identity as Row).name], ['IDENTITY ID', (r) => r.identityId], ['EXPIRES AT', (r) => r.expiresAt]]);
      return 0;
    }
    case 'cas': case 'ca': {
      const rows = await client.list<Row>('cas', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      table(rows, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['VERIFIED', (r) => r.isVerified], ['AUTH', (r) => r.isAuthEnabled], ['OTTCA', (r) => r.isOttCaEnrollmentEnabled], ['FINGERPRINT', (r) => r.fingerprint]]);
      return 0;
    }
    case 'edge-routers': case 'edge-router': {
      const rows = await client.list<Row>('edge-routers', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      table(rows, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['ATTRIBUTES', (r) => r.roleAttributes], ['TUNNELER', (r) => r.isTunnelerEnabled],
        ['VERIFIED', (r) => r.isVerified], ['ENROLLMENT EXPIRES', (r) => r.enrollmentExpiresAt ?? '-']]);
      return 0;
    }
    case 'configs': case 'config': {
      const rows = await client.list<Row>('configs', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      table(rows, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['TYPE', (r) => r.configTypeId], ['DATA', (r) => JSON.stringify(r.data)]]);
      return 0;
    }
    case 'services': case 'service': {
      const rows = await client.list<Row>('services', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      const names = new Map((await client.list<Row>('configs')).map((c) => [String(c.id), String(c.name)]));
      table(rows, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['ATTRIBUTES', (r) => r.roleAttributes],
        ['CONFIGS', (r) => (r.configs as string[]).map((id) => names.get(id) ?? id)], ['ENCRYPTION', (r) => r.encryptionRequired]]);
      return 0;
    }
    case 'service-policies': case 'service-policy': {
      const rows = await client.list<Row>('service-policies', filter);
      if (v.json === true) { out(JSON.stringify(rows, null, 2)); return 0; }
      table(rows, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['TYPE', (r) => r.type], ['SEMANTIC', (r) => r.semantic],
        ['IDENTITY ROLES', (r) => shownRoles(r.identityRolesDisplay)], ['SERVICE ROLES', (r) => shownRoles(r.serviceRolesDisplay)]]);
      return 0;
    }
    case 'edge-router-policies': case 'edge-router-policy':
      return listTable(client, 'edge-router-policies', filter, v, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['SEMANTIC', (r) => r.semantic],
        ['IDENTITY ROLES', (r) => shownRoles(r.identityRolesDisplay)], ['EDGE ROUTER ROLES', (r) => shownRoles(r.edgeRouterRolesDisplay)]]);
    case 'service-edge-router-policies': case 'service-edge-router-policy':
      return listTable(client, 'service-edge-router-policies', filter, v, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['SEMANTIC', (r) => r.semantic],
        ['SERVICE ROLES', (r) => shownRoles(r.serviceRolesDisplay)], ['EDGE ROUTER ROLES', (r) => shownRoles(r.edgeRouterRolesDisplay)]]);
    case 'posture-checks': case 'posture-check': {
      const base = new Set(['id', 'createdAt', 'updatedAt', '_links', 'tags', 'name', 'typeId', 'version', 'roleAttributes']);
      return listTable(client, 'posture-checks', filter, v, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['TYPE', (r) => r.typeId], ['ATTRIBUTES', (r) => r.roleAttributes],
        ['DATA', (r) => JSON.stringify(Object.fromEntries(Object.entries(r).filter(([k]) => !base.has(k))))]]);
    }
    case 'auth-policies': case 'auth-policy': {
      type P = { cert: { allowed: boolean }; updb: { allowed: boolean; maxAttempts: number; lockoutDurationMinutes: number } };
      const methods = (r: Row): string => { const p = r.primary as P; return [p.cert.allowed ? 'cert' : '', p.updb.allowed ? 'updb' : ''].filter((m) => m !== '').join(',') || '-'; };
      return listTable(client, 'auth-policies', filter, v, [['ID', (r) => r.id], ['NAME', (r) => r.name], ['METHODS', methods],
        ['TOTP', (r) => (r.secondary as { requireTotp: boolean }).requireTotp],
        ['LOCKOUT', (r) => { const u = (r.primary as P).updb; return u.maxAttempts === 0 ? '-' : `${u.maxAttempts} tries/${u.lockoutDurationMinutes === 0 ? 'until enabled' : `${u.lockoutDurationMinutes} min`}`; }]]);
    }
    case 'summary': {
      const data = await client.call<Record<string, number>>('GET', '/summary');
      if (v.json === true) { out(JSON.stringify(data, null, 2)); return 0; }
      table(Object.entries(data).map(([k, n]) => ({ k, n })), [['ENTITY', (r) => r.k], ['COUNT', (r) => r.n]]);
      return 0;
    }
    default: throw new EdgeError('ERR_USAGE', `cannot list "${noun ?? ''}" (identities, enrollments, cas, edge-routers, configs, services, service-policies, edge-router-policies, service-edge-router-policies, posture-checks, auth-policies, summary)`);
  }
}

/** A list as JSON (--json) or as a table. */
async function listTable(client: ManagementClient, collection: string, filter: string, v: Values, columns: Columns): Promise<number> {
  const rows = await client.list<Row>(collection, filter);
  if (v.json === true) out(JSON.stringify(rows, null, 2));
  else table(rows, columns);
  return 0;
}

/** Selectors as their names (`@plc-1` rather than `@id`), from a policy's …RolesDisplay. */
function shownRoles(display: unknown): string[] {
  return (display as { name: string }[]).map((x) => x.name);
}

const DELETABLE = {
  'edge-router': { collection: 'edge-routers', what: 'edge router' },
  config: { collection: 'configs', what: 'config' },
  service: { collection: 'services', what: 'service' },
  'service-policy': { collection: 'service-policies', what: 'service policy' },
  'edge-router-policy': { collection: 'edge-router-policies', what: 'edge router policy' },
  'service-edge-router-policy': { collection: 'service-edge-router-policies', what: 'service edge router policy' },
  'posture-check': { collection: 'posture-checks', what: 'posture check' },
  'auth-policy': { collection: 'auth-policies', what: 'auth policy' },
} as const;

async function doDelete(noun: string | undefined, rest: string[]): Promise<number> {
  const client = await ManagementClient.fromState();
  switch (noun) {
    case 'identity': {
      const key = rest[0];
      if (key === undefined || rest.length !== 1) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge delete identity NAME|ID');
      const target = await findOne(client, 'identities', key, 'identity');
      await client.call('DELETE', `/identities/${String(target.id)}`);
      out(`Deleted identity ${String(target.name)} (${String(target.id)})`);
      return 0;
    }
    case 'enrollment': case 'enrollments': {
      let ids: string[];
      if (rest[0] === 'where') {
        const filter = rest.slice(1).join(' ');
        if (filter === '') throw new EdgeError('ERR_USAGE', 'usage: ztedge edge delete enrollment where FILTER');
        ids = (await client.list<Row>('enrollments', filter)).map((r) => String(r.id));
      } else {
        if (rest.length === 0) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge delete enrollment ID | where FILTER');
        ids = rest;
      }
      for (const id of ids) await client.call('DELETE', `/enrollments/${encodeURIComponent(id)}`);
      out(`Deleted ${ids.length} enrollment(s)`);
      return 0;
    }
    case 'ca': {
      if (rest.length !== 1) throw new EdgeError('ERR_USAGE', 'usage: ztedge edge delete ca NAME|ID');
      const ca = await findOne(client, 'cas', rest[0]!, 'CA');
      await client.call('DELETE', `/cas/${String(ca.id)}`);
      out(`Deleted CA ${String(ca.name)} (${String(ca.id)})`);
      return 0;
    }
    case 'edge-router': case 'config': case 'service': case 'service-policy': case 'edge-router-policy': case 'service-edge-router-policy': case 'posture-check': case 'auth-policy': {
      const { collection, what } = DELETABLE[noun];
      if (rest.length !== 1) throw new EdgeError('ERR_USAGE', `usage: ztedge edge delete ${noun} NAME|ID`);
      const target = await findOne(client, collection, rest[0]!, what);
      await client.call('DELETE', `/${collection}/${String(target.id)}`);
      out(`Deleted ${what} ${String(target.name)} (${String(target.id)})`);
      return 0;
    }
    default: throw new EdgeError('ERR_USAGE', `cannot delete "${noun ?? ''}" (identity, enrollment, ca, edge-router, config, service, service-policy, edge-router-policy, service-edge-router-policy, posture-check, auth-policy)`);
  }
}
