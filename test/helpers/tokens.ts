/**
 * Test helpers: real PKCS#11 tokens made by the project's own set-up scripts,
 * `hw/softhsm-init.sh` (SoftHSM2 in a private directory) and
 * `hw/tpm-init.sh --swtpm` (a software TPM on 127.0.0.1 through tpm2-pkcs11).
 *
 * The helpers run the scripts exactly as a user would and read back what they
 * print (the `export NAME=VALUE` lines and the `pkcs11:` URI line), so a test
 * that uses them also checks that output.
 *
 * **Environment.** A PKCS#11 module reads its configuration from the
 * environment of the process that loads it, when it is initialised
 * (`C_Initialize`): SoftHSM2 reads `SOFTHSM2_CONF`, tpm2-pkcs11 reads
 * `TPM2_PKCS11_STORE`, `TPM2_PKCS11_TCTI` and `TPM2_PKCS11_LOG_LEVEL`. So:
 *  - for a child process (`ztedge enroll …`, `pkcs11-tool …`) pass
 *    `{ ...process.env, ...token.env }` as its environment;
 *  - for an in-process test, copy `token.env` into `process.env` (see
 *    {@link applyTokenEnv}) *before* the module is first initialised in this
 *    process. Changing the variables afterwards has no effect until the module
 *    is finalised, and one process can only see one SoftHSM configuration and
 *    one tpm2-pkcs11 store at a time.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const HW_DIR = resolve(import.meta.dirname, '..', '..', 'hw');
export const SOFTHSM_INIT = join(HW_DIR, 'softhsm-init.sh');
export const TPM_INIT = join(HW_DIR, 'tpm-init.sh');

/** First swtpm command port tried; the control port is always the next one. */
export const SWTPM_BASE_PORT = 23321;

/** A token made by one of the set-up scripts, and how to reach it. */
export interface TokenEnv {
  /** Absolute path of the PKCS#11 module (`module-path` in the URI). */
  module: string;
  /** Token label (`token` in the URI). */
  label: string;
  /** The user PIN (as read from {@link TokenEnv.pinFile}). */
  pin: string;
  /** Absolute path of the user PIN file (`pin-source=file:…` in the URI). */
  pinFile: string;
  /**
   * The variables the module needs, exactly as the script printed them:
   * `SOFTHSM2_CONF` for SoftHSM2; `TPM2_PKCS11_STORE`, `TPM2_PKCS11_TCTI` and
   * `TPM2_PKCS11_LOG_LEVEL` for tpm2-pkcs11. The module reads them in the
   * process that loads it, at `C_Initialize`: pass them to child processes,
   * or put them in `process.env` before an in-process test first loads the
   * module (see the module comment and {@link applyTokenEnv}).
   */
  env: Record<string, string>;
  /**
   * RFC 7512 URI of the key object `object` in this token:
   * `pkcs11:token=LABEL;object=OBJECT?module-path=MODULE&pin-source=file:PINFILE`.
   * The PIN stays in the file; it is never put in the URI.
   */
  uri(object: string): string;
}

export interface ScriptResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a set-up script (bash) to completion without blocking the event loop. */
export function runScript(script: string, args: string[], timeoutMs = 120_000, env: NodeJS.ProcessEnv = process.env): Promise<ScriptResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`${script} ${args.join(' ')}: no answer in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code) => { clearTimeout(timer); resolveRun({ code, stdout, stderr }); });
  });
}

/** Undoes the shell quoting the scripts use: bare words, '…' (with '\'' for a quote) and \x escapes. */
export function shellUnquote(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "'") {
      const close = value.indexOf("'", i + 1);
      if (close === -1) throw new Error(`unbalanced quote in shell value: ${value}`);
      out += value.slice(i + 1, close);
      i = close;
    } else if (c === '\\') {
      if (i + 1 >= value.length) throw new Error(`trailing backslash in shell value: ${value}`);
      out += value[++i];
    } else {
      out += c;
    }
  }
  return out;
}

/** RFC 7512 percent-encoding. Path values keep unreserved characters; query values also keep '/' and ':'. */
function pct(value: string, keep: RegExp): string {
  let out = '';
  for (const ch of value) {
    if (keep.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
const PATH_KEEP = /^[A-Za-z0-9._~-]$/;
const QUERY_KEEP = /^[A-Za-z0-9._~/:-]$/;

/** Builds the URI the scripts print, for any object label. */
export function tokenUri(label: string, object: string, module: string, pinFile: string): string {
  return `pkcs11:token=${pct(label, PATH_KEEP)};object=${pct(object, PATH_KEEP)}?module-path=${pct(module, QUERY_KEEP)}&pin-source=file:${pct(pinFile, QUERY_KEEP)}`;
}

/** Reads a script's stdout: `export NAME=VALUE` lines and the `pkcs11:` URI line. */
export function parseScriptOutput(stdout: string): { env: Record<string, string>; uri: string } {
  const env: Record<string, string> = {};
  let uri: string | undefined;
  for (const line of stdout.split('\n')) {
    const exp = /^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (exp) env[exp[1]!] = shellUnquote(exp[2]!);
    else if (line.startsWith('pkcs11:')) uri = line;
  }
  if (uri === undefined) throw new Error(`no pkcs11: URI line in the script's output:\n${stdout}`);
  return { env, uri };
}

function tokenFromOutput(stdout: string, label: string): TokenEnv {
  const { env, uri: printed } = parseScriptOutput(stdout);
  const m = /^pkcs11:token=([^;?]*);object=device-key\?module-path=([^&]*)&pin-source=file:(.*)$/.exec(printed);
  if (!m) throw new Error(`unexpected URI line: ${printed}`);
  const module = decodeURIComponent(m[2]!);
  const pinFile = decodeURIComponent(m[3]!);
  if (decodeURIComponent(m[1]!) !== label) throw new Error(`the script made token "${m[1]}", not "${label}"`);
  const build = (object: string): string => tokenUri(label, object, module, pinFile);
  if (build('device-key') !== printed) throw new Error(`URI mismatch: script printed ${printed}, helper builds ${build('device-key')}`);
  const pin = readFileSync(pinFile, 'utf8').replace(/\r?\n$/, '');
  return { module, label, pin, pinFile, env, uri: build };
}

/**
 * Makes (or finds) a SoftHSM2 token labelled `label` in `dir`:
 * `hw/softhsm-init.sh --dir DIR --label LABEL --pin-file DIR/user.pin --so-pin-file DIR/so.pin`.
 * Idempotent. The token store lives in DIR/tokens; /var/lib/softhsm is not touched.
 */
export async function setupSoftHsm(dir: string, label = 'ztedge'): Promise<TokenEnv> {
  const r = await runScript(SOFTHSM_INIT, ['--dir', dir, '--label', label, '--pin-file', join(dir, 'user.pin'), '--so-pin-file', join(dir, 'so.pin')]);
  if (r.code !== 0) throw new Error(`softhsm-init.sh exited with ${r.code}:\n${r.stderr}${r.stdout}`);
  return tokenFromOutput(r.stdout, label);
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolveFree(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolveFree(true)));
  });
}

/**
 * A pair of free loopback ports (P for swtpm's commands, P+1 for its control
 * channel) at or above {@link SWTPM_BASE_PORT}. The search starts at a random
 * even offset so parallel test runs rarely race for the same pair; the script
 * still fails cleanly (exit 3) if someone else takes it first, and
 * {@link setupSwtpm} then tries another pair.
 */
export async function freePortPair(base = SWTPM_BASE_PORT, span = 1000): Promise<number> {
  const start = Math.floor(Math.random() * (span / 2)) * 2;
  for (let i = 0; i < span; i += 2) {
    const p = base + ((start + i) % span);
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
  throw new Error(`no free pair of 127.0.0.1 ports in ${base}..${base + span}`);
}

/**
 * Makes (or finds) a tpm2-pkcs11 token labelled `label` on a software TPM kept
 * in `dir`, and leaves swtpm running on 127.0.0.1 (stop it with
 * {@link stopSwtpm}):
 * `hw/tpm-init.sh --swtpm DIR --label LABEL [--port P] --pin-file DIR/user.pin --so-pin-file DIR/so.pin`.
 *
 * Port: `port` if given; otherwise the one swtpm of `dir` used before
 * (DIR/swtpm.port), so a stopped swtpm comes back where a loaded module
 * expects it; otherwise a free pair found by {@link freePortPair}.
 *
 * The returned `env` has `TPM2_PKCS11_TCTI=swtpm:host=127.0.0.1,port=P`: the
 * module talks to swtpm directly, and swtpm serves one client at a time.
 */
export async function setupSwtpm(dir: string, label = 'ztedge-tpm', port?: number): Promise<TokenEnv> {
  const pinArgs = ['--pin-file', join(dir, 'user.pin'), '--so-pin-file', join(dir, 'so.pin')];
  const pickPort = port === undefined && !existsSync(join(dir, 'swtpm.port'));
  for (let attempt = 0; ; attempt++) {
    const p = pickPort ? await freePortPair() : port;
    const args = ['--swtpm', dir, '--label', label, ...(p === undefined ? [] : ['--port', String(p)]), ...pinArgs];
    const r = await runScript(TPM_INIT, args);
    if (r.code === 0) return tokenFromOutput(r.stdout, label);
    // 3: the port pair was taken between our probe and swtpm's bind.
    if (r.code === 3 && pickPort && attempt < 5) continue;
    throw new Error(`tpm-init.sh exited with ${r.code}:\n${r.stderr}${r.stdout}`);
  }
}

/** Stops the swtpm of `dir` (`hw/tpm-init.sh --swtpm DIR --stop`) and waits until it is gone. Idempotent. */
export async function stopSwtpm(dir: string): Promise<void> {
  const r = await runScript(TPM_INIT, ['--swtpm', dir, '--stop'], 30_000);
  if (r.code !== 0) throw new Error(`tpm-init.sh --stop exited with ${r.code}:\n${r.stderr}`);
}

/**
 * Copies `token.env` into `process.env`, for tests that load the PKCS#11
 * module in this process; returns a function that restores the previous
 * values. Call it before the module is first initialised here: the module
 * reads these variables once, at `C_Initialize`.
 */
export function applyTokenEnv(token: TokenEnv): () => void {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(token.env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}
