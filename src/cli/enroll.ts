/** `ztedge enroll`: turns an enrollment token into an identity file (key made on this device). */
import { promises as fs } from 'node:fs';
import { EdgeError } from '../errors.js';
import { enroll, identityPaths } from '../identity/enroll.js';
import type { KeyAlgorithm } from '../keys/index.js';
import { out, parse, str, type Command } from './command.js';

const HELP = `Usage: ztedge enroll --jwt FILE --out NAME.json [options]

Enrolls this device with the controller that issued the token. The key is
made here and never leaves the device: only a CSR is sent. The identity file
NAME.json is written with NAME.cert.pem, NAME.key.pem (0600) and NAME.ca.pem
beside it.

Trust: the controller is accepted only if its TLS key verified the token's
signature; after that only the CA bundle it serves is trusted.

Options:
  --jwt FILE            enrollment token (from "ztedge edge create identity … -o FILE")  [required]
  --out FILE            identity file to write                                        [required for ott]
  --key-type TYPE       ec-p256 | ec-p384 | rsa-2048 | ed25519                          [ec-p256]
  --password-file FILE  updb tokens: the password to set for the username
  --cert FILE --key FILE  ottca tokens: this device's certificate and key from the 3rd-party CA
  -h, --help            this help

Example:
  ztedge enroll --jwt plc-7.jwt --out /etc/ztedge/plc-7.json`;

const KEY_TYPES: KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'];

export const enrollCommand: Command = {
  name: 'enroll',
  summary: 'enroll this device from a one-time token (key made locally)',
  help: HELP,
  async run(argv) {
    const { values } = parse(argv, { jwt: { type: 'string' }, out: { type: 'string' }, 'key-type': { type: 'string' }, 'password-file': { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' } }, 'enroll');
    if (values.help === true) { out(HELP); return 0; }
    const jwtFile = str(values.jwt);
    if (jwtFile === undefined) throw new EdgeError('ERR_USAGE', '--jwt FILE is required\nRun "ztedge enroll --help" for usage.');
    const keyType = (str(values['key-type']) ?? 'ec-p256') as KeyAlgorithm;
    if (!KEY_TYPES.includes(keyType)) throw new EdgeError('ERR_USAGE', `--key-type must be one of ${KEY_TYPES.join(', ')}`);
    let jwt: string;
    try {
      jwt = await fs.readFile(jwtFile, 'utf8');
    } catch (err) {
      throw new EdgeError('ERR_USAGE', `cannot read --jwt ${jwtFile}: ${(err as Error).message}`);
    }
    const passwordFile = str(values['password-file']);
    const password = passwordFile === undefined ? undefined : (await fs.readFile(passwordFile, 'utf8')).replace(/\r?\n$/, '');
    const outFile = str(values.out) ?? (password !== undefined ? 'unused.json' : undefined);
    if (outFile === undefined) throw new EdgeError('ERR_USAGE', '--out NAME.json is required\nRun "ztedge enroll --help" for usage.');
    const result = await enroll({ jwt, out: outFile, keyAlgorithm: keyType, password, certFile: str(values.cert), keyFile: str(values.key) });
    if (result.method === 'updb') {
      out(`Enrolled identity ${result.identityId}: its password is set; log in with "ztedge edge login URL -u USERNAME".`);
      return 0;
    }
    const p = identityPaths(outFile);
    out(`Enrolled identity ${result.identityId}`);
    out(`  identity file: ${p.json}`);
    out(`  certificate:   ${result.method === 'ottca' ? str(values.cert) : p.cert}`);
    out(`  key:           ${result.keyRef ?? p.key}${result.keyCreated === false ? ' (existing key reused)' : ''}`);
    out(`  CA bundle:     ${p.ca}`);
    return 0;
  },
};
