/**
 * Smoke test of the token set-up scripts (hw/softhsm-init.sh,
 * hw/tpm-init.sh --swtpm) through the test helpers: the token is there for
 * pkcs11-tool, a second run changes nothing, PIN files are private, and
 * nothing is left running or on disk afterwards.
 */
import { after, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SOFTHSM_INIT, TPM_INIT, runScript, setupSoftHsm, setupSwtpm, shellUnquote, stopSwtpm, type TokenEnv } from '../helpers/tokens.js';

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function pkcs11Tool(t: TokenEnv, args: string[]): string {
  const r = spawnSync('pkcs11-tool', ['--module', t.module, ...args], { env: { ...process.env, ...t.env }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `pkcs11-tool ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Labels of the initialised tokens, as pkcs11-tool --list-slots shows them. */
function tokenLabels(t: TokenEnv): string[] {
  return [...pkcs11Tool(t, ['--list-slots']).matchAll(/^\s*token label\s*:\s*(.*?)\s*$/gm)].map((m) => m[1]!);
}

/** Makes a P-256 key pair labelled `label` in the token (to see that a re-run keeps the token's contents). */
function makeProbeKey(t: TokenEnv, label: string): void {
  pkcs11Tool(t, ['--token-label', t.label, '--login', '--pin', t.pin, '--keypairgen', '--key-type', 'EC:prime256v1', '--label', label]);
}

function privateKeyLabels(t: TokenEnv): string {
  return pkcs11Tool(t, ['--token-label', t.label, '--login', '--pin', t.pin, '--list-objects', '--type', 'privkey']);
}

/** True when the process is gone, or a zombie (exited, not yet reaped by its parent). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Live (non-zombie) processes whose command line contains every one of `parts`. */
function processesWith(...parts: string[]): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (parts.every((p) => cmd.includes(p)) && !processGone(Number(e))) found.push(Number(e));
    } catch { /* gone meanwhile */ }
  }
  return found;
}

async function timed<T>(t: TestContext, what: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const v = await fn();
  t.diagnostic(`${what}: ${(performance.now() - t0).toFixed(0)} ms`);
  return v;
}

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  for (const d of dirs) assert.ok(!existsSync(d), `${d} removed`);
});

describe('helpers', () => {
  test('shell values printed by the scripts are unquoted', () => {
    assert.equal(shellUnquote('/tmp/a/softhsm2.conf'), '/tmp/a/softhsm2.conf');
    assert.equal(shellUnquote(`'/tmp/it'\\''s x/softhsm2.conf'`), "/tmp/it's x/softhsm2.conf");
    assert.equal(shellUnquote('swtpm:host=127.0.0.1\\,port=1'), 'swtpm:host=127.0.0.1,port=1');
  });

  test('both scripts answer --help, and refuse unknown arguments', async () => {
    for (const script of [SOFTHSM_INIT, TPM_INIT]) {
      const help = await runScript(script, ['--help']);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: /);
      const bad = await runScript(script, ['--no-such-option']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /unknown argument: --no-such-option/);
    }
  });
});

describe('softhsm-init.sh', () => {
  test('makes a token found by label; a second run keeps it as it is', async (t) => {
    const dir = tempDir('ztedge-softhsm-');
    const tok = await timed(t, 'softhsm set-up', () => setupSoftHsm(dir, 'ztedge-test'));
    assert.match(tok.module, /\/libsofthsm2\.so$/);
    assert.deepEqual(Object.keys(tok.env), ['SOFTHSM2_CONF']);
    assert.equal(tok.env.SOFTHSM2_CONF, join(dir, 'softhsm2.conf'));
    assert.match(readFileSync(tok.env.SOFTHSM2_CONF!, 'utf8'), new RegExp(`directories\\.tokendir = ${join(dir, 'tokens')}/`));
    assert.deepEqual(tokenLabels(tok), ['ztedge-test']);
    assert.equal(tok.uri('device-key'), `pkcs11:token=ztedge-test;object=device-key?module-path=${tok.module}&pin-source=file:${join(dir, 'user.pin')}`);
    assert.equal(tok.uri('a b;c'), `pkcs11:token=ztedge-test;object=a%20b%3Bc?module-path=${tok.module}&pin-source=file:${join(dir, 'user.pin')}`);
    makeProbeKey(tok, 'probe');

    const again = await timed(t, 'softhsm set-up, second run', () => setupSoftHsm(dir, 'ztedge-test'));
    assert.equal(again.pin, tok.pin);
    assert.deepEqual(again.env, tok.env);
    assert.deepEqual(tokenLabels(again), ['ztedge-test'], 'still one token');
    assert.match(privateKeyLabels(again), /label:\s+probe/, 'the token was not re-initialised');
  });

  test('a --pin-file that does not exist is made with a random PIN, mode 0600', async () => {
    const dir = tempDir('ztedge-softhsm-pin-');
    const pinFile = join(dir, 'secrets', 'user.pin');
    const soPinFile = join(dir, 'secrets', 'so.pin');
    const r = await runScript(SOFTHSM_INIT, ['--dir', join(dir, 'hsm'), '--pin-file', pinFile, '--so-pin-file', soPinFile]);
    assert.equal(r.code, 0, r.stderr);
    for (const f of [pinFile, soPinFile]) {
      assert.equal(statSync(f).mode & 0o777, 0o600, f);
      assert.match(readFileSync(f, 'utf8'), /^[0-9a-f]{16}\n$/);
    }
    assert.notEqual(readFileSync(pinFile, 'utf8'), readFileSync(soPinFile, 'utf8'));
    assert.ok(r.stdout.split('\n').includes(`pkcs11:token=ztedge;object=device-key?module-path=${/module-path=([^&]+)/.exec(r.stdout)![1]}&pin-source=file:${pinFile}`), r.stdout);
    // An existing token whose PIN file went missing is an error, not a new random PIN.
    rmSync(pinFile);
    const lost = await runScript(SOFTHSM_INIT, ['--dir', join(dir, 'hsm'), '--pin-file', pinFile, '--so-pin-file', soPinFile]);
    assert.equal(lost.code, 1);
    assert.match(lost.stderr, /exists .* but the PIN file .* does not/);
    assert.ok(!existsSync(pinFile));
  });
});

describe('tpm-init.sh --swtpm', () => {
  let dir: string | undefined;
  after(async () => {
    if (dir !== undefined) await stopSwtpm(dir);
  });

  test('makes a token on swtpm, idempotently, and --stop leaves nothing running', async (t) => {
    dir = tempDir('ztedge-swtpm-');
    const tok = await timed(t, 'swtpm set-up incl. provisioning', () => setupSwtpm(dir!, 'ztedge-tpm'));
    const port = Number(readFileSync(join(dir, 'swtpm.port'), 'utf8'));
    assert.ok(port >= 23321, String(port));
    assert.deepEqual(tok.env, {
      TPM2_PKCS11_STORE: join(dir, 'store'),
      TPM2_PKCS11_TCTI: `swtpm:host=127.0.0.1,port=${port}`,
      TPM2_PKCS11_LOG_LEVEL: '0',
    });
    assert.match(tok.module, /^\/usr\/lib\/[^/]+\/pkcs11\/libtpm2_pkcs11\.so$/);
    assert.equal(tok.uri('device-key'), `pkcs11:token=ztedge-tpm;object=device-key?module-path=${tok.module}&pin-source=file:${join(dir, 'user.pin')}`);
    assert.equal(statSync(tok.pinFile).mode & 0o777, 0o600);

    // Provisioning helpers are gone; swtpm runs, on loopback only.
    const pid = Number(readFileSync(join(dir, 'swtpm.pid'), 'utf8'));
    assert.ok(!processGone(pid), 'swtpm runs');
    assert.deepEqual(processesWith('tpm2-abrmd', `port=${port}`), [], 'tpm2-abrmd was stopped');
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /bindaddr=127\.0\.0\.1\0--ctrl\0type=tcp,port=\d+,bindaddr=127\.0\.0\.1/);

    assert.ok(tokenLabels(tok).includes('ztedge-tpm'), 'pkcs11-tool sees the token');
    makeProbeKey(tok, 'probe');

    const again = await timed(t, 'swtpm set-up, second run (running swtpm)', () => setupSwtpm(dir!, 'ztedge-tpm'));
    assert.deepEqual(again.env, tok.env);
    assert.equal(again.pin, tok.pin);
    assert.equal(Number(readFileSync(join(dir, 'swtpm.pid'), 'utf8')), pid, 'the same swtpm');
    assert.deepEqual(tokenLabels(again).filter((l) => l === 'ztedge-tpm'), ['ztedge-tpm'], 'still one token');
    assert.match(privateKeyLabels(again), /label:\s+probe/, 'the token was not re-made');

    // Stop, then start again: same port (a loaded module keeps its TCTI), same token and key.
    await timed(t, 'swtpm stop', () => stopSwtpm(dir!));
    assert.ok(processGone(pid), `swtpm ${pid} is gone`);
    assert.ok(!existsSync(join(dir, 'swtpm.pid')));
    await stopSwtpm(dir); // idempotent
    const back = await timed(t, 'swtpm set-up after a stop', () => setupSwtpm(dir!, 'ztedge-tpm'));
    assert.deepEqual(back.env, tok.env);
    assert.match(privateKeyLabels(back), /label:\s+probe/);
    const pid2 = Number(readFileSync(join(dir, 'swtpm.pid'), 'utf8'));
    assert.notEqual(pid2, pid);

    await stopSwtpm(dir);
    assert.ok(processGone(pid2), `swtpm ${pid2} is gone`);
    assert.deepEqual(processesWith('swtpm', join(dir, 'state')), [], 'no swtpm left on this state');
    rmSync(dir, { recursive: true, force: true });
    assert.ok(!existsSync(dir));
    dir = undefined;
  });
});
