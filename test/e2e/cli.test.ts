/**
 * The command line as a new user runs it: `ztedge edge …` against a real
 * controller process, `ztedge enroll` with the token it wrote, and
 * `ztedge quickstart`. Errors must be one clear line with a code.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, decodeJwt } from 'jose';
import { generateKeyPairSync } from 'node:crypto';
import { api, openssl, removeDir, runCli, startControllerProcess, tempDir, type ControllerProcess } from '../helpers/controller.js';
import { freePort } from '../helpers/overlay.js';

let dir: string;
let ctrl: ControllerProcess;
let env: Record<string, string>;

function cli(...args: string[]) {
  return runCli(args, env, dir);
}

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'));
  env = { ZTEDGE_CONFIG_DIR: join(dir, 'cfg') };
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

describe('help and usage', () => {
  test('ztedge --help and each command --help list what they do', () => {
    const top = cli('--help');
    assert.equal(top.code, 0);
    for (const c of ['quickstart', 'controller', 'router', 'enroll', 'edge']) assert.match(top.stdout, new RegExp(`\\b${c}\\b`));
    for (const c of ['quickstart', 'controller', 'router', 'enroll', 'edge']) {
      const h = cli(c, '--help');
      assert.equal(h.code, 0, c);
      assert.match(h.stdout, /Usage: ztedge/);
    }
  });

  test('unknown commands and flags exit 2 with a hint', () => {
    const r = cli('frobnicate');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
    const f = cli('enroll', '--bogus');
    assert.equal(f.code, 2);
    assert.match(f.stderr, /--help/);
    const c = cli('controller');
    assert.equal(c.code, 2);
    assert.match(c.stderr, /--data DIR is required/);
  });

  test('commands that need a session say how to get one', () => {
    const r = cli('edge', 'list', 'identities');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ztedge edge login/);
  });
});

describe('edge, enroll', () => {
  test('login refuses an unconfirmed CA without a TTY, and accepts -y or --ca', () => {
    const pw = join(ctrl.dataDir, 'admin.password');
    const noTrust = cli('edge', 'login', ctrl.url, '-u', 'admin', '--password-file', pw);
    assert.notEqual(noTrust.code, 0);
    assert.match(noTrust.stderr, /-y|--ca/);
    const wrong = cli('edge', 'login', ctrl.url, '-u', 'admin', '-p', 'wrong-password', '-y');
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /ERR_INVALID_AUTH/);
    const ok = cli('edge', 'login', ctrl.url, '-u', 'admin', '--password-file', pw, '-y');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Logged in/);
    assert.equal(statSync(join(dir, 'cfg', 'cli.json')).mode & 0o777, 0o600);
  });

  test('create identity writes a token that enroll turns into a working identity', () => {
    const c = cli('edge', 'create', 'identity', 'device', 'plc-7', '--role-attributes', 'plc,line1', '-o', 'plc-7.jwt');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /New identity plc-7 created with id: (\S+)/);
    const id = /id: (\S+)/.exec(c.stdout)![1]!;
    const jwt = readFileSync(join(dir, 'plc-7.jwt'), 'utf8').trim();
    assert.equal(decodeJwt(jwt).sub, id);

    const e = cli('enroll', '--jwt', 'plc-7.jwt', '--out', 'plc-7.json');
    assert.equal(e.code, 0, e.stderr);
    const idFile = JSON.parse(readFileSync(join(dir, 'plc-7.json'), 'utf8'));
    assert.equal(idFile.ztAPI, ctrl.url);
    assert.match(idFile.id.cert, /^file:\/\//);
    assert.match(idFile.id.key, /^file:\/\//);
    assert.match(idFile.id.ca, /^file:\/\//);
    assert.equal(statSync(join(dir, 'plc-7.key.pem')).mode & 0o777, 0o600);
    const v = openssl(['verify', '-CAfile', join(dir, 'plc-7.ca.pem'), join(dir, 'plc-7.cert.pem')]);
    assert.equal(v.code, 0, v.stderr);
    // The key never left: the certificate's key is the local key.
    const certKey = openssl(['x509', '-in', join(dir, 'plc-7.cert.pem'), '-noout', '-pubkey']).stdout;
    const localKey = openssl(['pkey', '-in', join(dir, 'plc-7.key.pem'), '-pubout']).stdout;
    assert.equal(certKey, localKey);

    const again = cli('enroll', '--jwt', 'plc-7.jwt', '--out', 'plc-7-again.json');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already been used/);
    assert.equal(existsSync(join(dir, 'plc-7-again.json')), false);
  });

  test('list, summary and delete', () => {
    const l = cli('edge', 'list', 'identities');
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /plc-7\s+Device\s+line1,plc/);
    const f = cli('edge', 'list', 'identities', 'roleAttributes contains "plc"', '--json');
    assert.deepEqual(JSON.parse(f.stdout).map((i: { name: string }) => i.name), ['plc-7']);
    const s = cli('edge', 'list', 'summary');
    assert.match(s.stdout, /identities\s+2/);
    cli('edge', 'create', 'identity', 'user', 'carol', '--updb', 'carol');
    const carolId = JSON.parse(cli('edge', 'list', 'identities', 'name="carol"', '--json').stdout)[0].id as string;
    const en = cli('edge', 'list', 'enrollments');
    assert.match(en.stdout, /updb\s+carol/);
    const d = cli('edge', 'delete', 'enrollment', 'where', `identity=${carolId}`);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /Deleted 1 enrollment/);
    assert.match(cli('edge', 'list', 'enrollments').stdout, /results: 0/);
    const di = cli('edge', 'delete', 'identity', 'plc-7');
    assert.equal(di.code, 0, di.stderr);
    assert.doesNotMatch(cli('edge', 'list', 'identities').stdout, /plc-7/);
    const missing = cli('edge', 'delete', 'identity', 'plc-7');
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /no identity/);
  });

  test('--qr prints the token as a terminal QR code', () => {
    const r = cli('edge', 'create', 'identity', 'qr-dev', '--qr');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.split('\n').filter((l) => /[▀▄█]/.test(l)).length > 20);
  });

  test('login with an enrolled admin identity file uses its certificate', () => {
    cli('edge', 'create', 'identity', 'user', 'ops', '--admin', '-o', 'ops.jwt');
    assert.equal(cli('enroll', '--jwt', 'ops.jwt', '--out', 'ops.json').code, 0);
    const r = cli('edge', 'login', '--file', 'ops.json');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /as ops/);
    assert.equal(cli('edge', 'list', 'identities').code, 0);
  });

  test('enroll refuses bad tokens with clear errors and writes nothing', async () => {
    writeFileSync(join(dir, 'garbage.jwt'), 'not a jwt');
    const g = cli('enroll', '--jwt', 'garbage.jwt', '--out', 'g.json');
    assert.equal(g.code, 1);
    assert.match(g.stderr, /ERR_JWT_INVALID/);
    // A token with the right shape but signed by a key the controller does not hold.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forged = await new SignJWT({ em: 'ott' }).setProtectedHeader({ alg: 'ES256' }).setIssuer(ctrl.url).setSubject('x').setJti('00000000-0000-4000-8000-000000000000').setExpirationTime('1h').sign(privateKey);
    writeFileSync(join(dir, 'forged.jwt'), forged);
    const f = cli('enroll', '--jwt', 'forged.jwt', '--out', 'f.json');
    assert.equal(f.code, 1);
    assert.match(f.stderr, /ERR_TRUST_BOOTSTRAP/);
    const expired = await new SignJWT({ em: 'ott' }).setProtectedHeader({ alg: 'ES256' }).setIssuer(ctrl.url).setSubject('x').setJti('y').setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(privateKey);
    writeFileSync(join(dir, 'expired.jwt'), expired);
    const x = cli('enroll', '--jwt', 'expired.jwt', '--out', 'x.json');
    assert.equal(x.code, 1);
    assert.match(x.stderr, /expired/);
    for (const f of ['g.json', 'f.json', 'x.json', 'g.key.pem', 'f.key.pem', 'x.key.pem']) assert.equal(existsSync(join(dir, f)), false, f);
    const noFile = cli('enroll', '--jwt', 'nope.jwt', '--out', 'n.json');
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /cannot read --jwt/);
  });

  test('the API still answers after all of the above', async () => {
    assert.equal((await api(ctrl, 'GET', '/version')).status, 200);
  });
});

describe('quickstart', () => {
  test('runs the whole overlay: a request flows edge → hub → host, is refused without the Dial policy, flows again; a second run reuses the data', async () => {
    const qsEnv = { ZTEDGE_CONFIG_DIR: join(dir, 'qs-cfg') };
    const port = await freePort();
    const args = ['quickstart', '--data', join(dir, 'qs'), '--listen', `127.0.0.1:${port}`, '--hub-port', '0', '--proxy-port', '0', '--exit'];
    const r = runCli(args, qsEnv, dir);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /controller running at https:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stdout, /enrolled with a one-time token/);
    assert.match(r.stdout, /authenticated to the client API with its certificate/);
    assert.match(r.stdout, /routers hub, host, edge created and enrolled/);
    assert.match(r.stdout, /→ edge → hub → host → demo: HTTP 200 in [\d.]+ ms: "hello from the demo service/);
    assert.match(r.stdout, /Dial policy demo-dial removed → the same request is refused/);
    assert.match(r.stdout, /demo-dial created again → HTTP 200/);
    const v = openssl(['verify', '-CAfile', join(dir, 'qs', 'demo-device.ca.pem'), join(dir, 'qs', 'demo-device.cert.pem')]);
    assert.equal(v.code, 0, v.stderr);
    // The router configs it wrote are the ones a user would run.
    assert.match(readFileSync(join(dir, 'qs', 'edge.yml'), 'utf8'), /mode: proxy/);
    const again = runCli(args, qsEnv, dir);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.match(again.stdout, /already enrolled/);
    assert.match(again.stdout, /routers hub, host, edge already enrolled/);
    assert.match(again.stdout, /HTTP 200/);
  });
});
