/** `ztedge enroll`: turns an enrollment token into an identity file (key made on this device). */
import { promises as fs } from 'node:fs';
import { EdgeError } from '../errors.js';
import { enroll, identityPaths } from '../identity/enroll.js';
import { FileKeyStore, type KeyAlgorithm, type KeyStore } from '../keys/index.js';
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
  --key URI|FILE        where the key lives: a PKCS#11 URI (the key is made inside the token,
                        e.g. 'pkcs11:token=ztedge;object=device-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/ztedge/pin';
                        OpenZiti's pkcs11:///module.so?slot=…&label=… works too), or a key file   [NAME.key.pem]
  --key-type TYPE       ec-p256 | ec-p384 | rsa-2048 | ed25519 (tokens: ec-p256, ec-p384, rsa-2048)  [ec-p256]
  --password-file FILE  updb tokens: the password to set for the username
  --cert FILE --key FILE  ottca tokens: this device's certificate and key from the 3rd-party CA
  --san NAME|IP         router tokens (erott): a name or address other routers dial this router's
                        listeners by; repeat for each. Written to NAME.server.cert.pem with its key
                        NAME.server.key.pem (a file key).   [localhost, 127.0.0.1, ::1, this host's name]
  -h, --help            this help

Example:
  ztedge enroll --jwt plc-7.jwt --out /etc/ztedge/plc-7.json
  ztedge enroll --jwt hub.jwt --out /etc/ztedge/hub.json --san hub.example --san 10.0.0.1
  ztedge enroll --jwt plc-7.jwt --out plc-7.json --key 'pkcs11:token=ztedge;object=plc-7?module-path=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so&pin-source=file:/etc/ztedge/pin'`;

const KEY_TYPES: KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'];

export const enrollCommand: Command = {
  name: 'enroll',
  summary: 'enroll this device from a one-time token (key made locally)',
  help: HELP,
  async run(argv) {
    const { values } = parse(argv, { jwt: { type: 'string' }, out: { type: 'string' }, 'key-type': { type: 'string' }, 'password-file': { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, san: { type: 'string', multiple: true } }, 'enroll');
    const keyArg = str(values.key);
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
    const isOttca = str(values.cert) !== undefined;
    let keyStore: KeyStore | undefined;
    let keyStoreCreated: boolean | undefined;
    if (keyArg !== undefined && !isOttca) {
      if (keyArg.startsWith('pkcs11:')) {
        // Made inside the token, or an existing token key; never a silent fallback to a file key.
        const { Pkcs11KeyStore } = await import('../keys/pkcs11.js');
        const p11 = Pkcs11KeyStore.open(keyArg, { create: true, algorithm: keyType });
        keyStore = p11;
        keyStoreCreated = p11.created;
      } else {
        const opened = await FileKeyStore.openOrCreate(keyArg, keyType);
        keyStore = opened.store;
        keyStoreCreated = opened.created;
      }
    }
    let result;
    try {
      result = await enroll({ jwt, out: outFile, keyAlgorithm: keyType, password, keyStore, keyStoreCreated, certFile: str(values.cert), keyFile: isOttca ? keyArg : undefined, serverSans: values.san as string[] | undefined });
    } finally {
      await keyStore?.close();
    }
    if (result.method === 'updb') {
      out(`Enrolled identity ${result.identityId}: its password is set; log in with "ztedge edge login URL -u USERNAME".`);
      return 0;
    }
    const p = identityPaths(outFile);
    out(`Enrolled identity ${result.identityId}`);
    out(`  identity file: ${p.json}`);
    out(`  certificate:   ${result.method === 'ottca' ? str(values.cert) : p.cert}`);
    out(`  key:           ${result.keyRef ?? p.key}${result.keyCreated === false ? ' (existing key reused)' : result.keyRef?.startsWith('pkcs11:') ? ' (made inside the token, not extractable)' : ''}`);
    out(`  CA bundle:     ${p.ca}`);
    if (result.serverSans !== undefined) out(`  listener cert: ${p.serverCert} (${result.serverSans.join(', ')}), key ${p.serverKey}`);
    return 0;
  },
};
