/**
 * Signature rates of the identity-key backends, through the KeyStore
 * interface the router uses (FileKeyStore, Pkcs11KeyStore):
 *
 *   npm run bench:keys
 *
 * Rows: a P-256 file key; a P-256 key in SoftHSM2 (one after another, and 16
 * calls in flight); a P-256 key in a software TPM (swtpm through
 * tpm2-pkcs11; one after another, and 4 in flight). A Pkcs11KeyStore runs one
 * operation at a time on its session, so calls "in flight" queue inside the
 * store: that row shows what the queue costs, not parallel signing, and its
 * p50 includes the wait in the queue.
 *
 * Set-up (untimed): the tokens are made in a temp folder by the same scripts
 * users run (test/helpers/tokens.ts → hw/softhsm-init.sh, hw/tpm-init.sh
 * --swtpm). A PKCS#11 module reads its environment (SOFTHSM2_CONF,
 * TPM2_PKCS11_STORE, TPM2_PKCS11_TCTI) once, when it is first loaded, so
 * both tokens' variables go into process.env before any key is opened.
 *
 * Every row is bounded by count and time (MAX_OPS, MAX_MS). Signatures are
 * checked with node:crypto (a sample of each row, P1363 r‖s), so a broken
 * signer fails the bench instead of producing a fast number.
 *
 * Exit code: 0 on success, 1 if a signer failed or produced a bad signature,
 * 2 if the bench could not be set up. swtpm and the temp folder are removed
 * on every path, Ctrl-C included.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FileKeyStore, type KeyStore } from '../src/keys/index.js';
import { Pkcs11KeyStore } from '../src/keys/pkcs11.js';
import { applyTokenEnv, setupSoftHsm, setupSwtpm, stopSwtpm, type TokenEnv } from '../test/helpers/tokens.js';

/** Bounds of every row: whichever comes first. */
const MAX_OPS = 20_000;
const MAX_MS = 2_000;
/** Untimed signatures before each row (first-use costs: session, key handle, thread pool). */
const WARMUP_OPS = 8;
/** Signatures per row checked with node:crypto after the row. */
const VERIFY_SAMPLE = 16;

interface Row {
  signer: string;
  mode: string;
  ops: number;
  seconds: number;
  p50Ms: number;
}

interface Skipped {
  signer: string;
  why: string;
}

// ---- set-up and clean-up ----------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'ztedge-bench-keys-'));
const softhsmDir = join(tmp, 'softhsm');
const tpmDir = join(tmp, 'tpm');
let swtpmStarted = false;
const stores: KeyStore[] = [];
let cleaned: Promise<void> | undefined;
/** Set by Ctrl-C: the stores close under the running row, which then fails; that is not a signer failure. */
let interrupted = false;

function cleanup(): Promise<void> {
  cleaned ??= (async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    if (swtpmStarted) {
      try {
        await stopSwtpm(tpmDir);
      } catch (err) {
        process.stderr.write(`bench:keys: could not stop swtpm: ${(err as Error).message}\n`);
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaned;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    process.stderr.write(`bench:keys: ${signal}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

/** swtpm and tpm2_ptool are needed for the TPM rows; without them the rows are skipped, not failed. */
function missingTpmTools(): string[] {
  return ['swtpm', 'swtpm_setup', 'tpm2_ptool', 'tpm2-abrmd', 'dbus-daemon']
    .filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0);
}

// ---- measuring --------------------------------------------------------

/** The message of the i-th signature: distinct per call, so a stale result cannot pass the check. */
function message(i: number): Buffer {
  return Buffer.from(`ztedge bench:keys message ${i}`, 'latin1');
}

function publicKeyOf(store: KeyStore): KeyObject {
  return createPublicKey({ key: store.publicKeySpki(), format: 'der', type: 'spki' });
}

/** Throws unless `sig` is `store`'s P-256 signature (SHA-256, IEEE P1363 r‖s) of `msg`. */
function checkSignature(name: string, key: KeyObject, msg: Buffer, sig: Buffer): void {
  if (sig.length !== 64) throw new Error(`${name}: signature is ${sig.length} bytes, not the 64 of P-256 r‖s`);
  if (!cryptoVerify('sha256', msg, { key, dsaEncoding: 'ieee-p1363' }, sig)) {
    throw new Error(`${name}: node:crypto rejects the signature of "${msg.toString('latin1')}"`);
  }
}

/**
 * Signs with `inFlight` workers sharing one counter until MAX_OPS are
 * started or MAX_MS have passed. Latency is per call, from the call to its
 * result (queueing in the store included).
 */
async function measure(signer: string, mode: string, store: KeyStore, inFlight: number): Promise<Row> {
  const key = publicKeyOf(store);
  for (let i = 0; i < WARMUP_OPS; i++) checkSignature(signer, key, message(-1 - i), await store.sign(message(-1 - i)));

  const latencyMs = new Float64Array(MAX_OPS);
  const sample = new Map<number, Buffer>();
  const sampleEvery = 1 + Math.floor(MAX_OPS / VERIFY_SAMPLE);
  let started = 0;
  let done = 0;
  const t0 = performance.now();
  const deadline = t0 + MAX_MS;
  const worker = async (): Promise<void> => {
    while (started < MAX_OPS && performance.now() < deadline) {
      const i = started++;
      const msg = message(i);
      const s = performance.now();
      const sig = await store.sign(msg);
      latencyMs[i] = performance.now() - s;
      done++;
      if (i % sampleEvery === 0 || i < 2) sample.set(i, sig);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = (performance.now() - t0) / 1000;

  if (done !== started) throw new Error(`${signer}: ${started} signatures started, ${done} finished`);
  for (const [i, sig] of sample) checkSignature(signer, key, message(i), sig);
  const sorted = latencyMs.subarray(0, done).sort();
  return { signer, mode, ops: done, seconds, p50Ms: sorted[Math.floor((done - 1) / 2)] ?? NaN };
}

// ---- output -----------------------------------------------------------

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–';
}

function printTable(rows: Row[], skipped: Skipped[]): void {
  const lines = [
    '| signer | mode | signatures | seconds | per second | p50 ms |',
    '|---|---|--:|--:|--:|--:|',
    ...rows.map((r) => `| ${r.signer} | ${r.mode} | ${r.ops} | ${fixed(r.seconds, 2)} | ${Math.round(r.ops / r.seconds).toLocaleString('en-US')} | ${fixed(r.p50Ms, 3)} |`),
    ...skipped.map((s) => `| ${s.signer} | skipped | – | – | – | – |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n\n`);
  for (const s of skipped) process.stdout.write(`Skipped ${s.signer}: ${s.why}\n`);
  const cpu = cpus();
  process.stdout.write(`Bounds: ${MAX_OPS} signatures or ${MAX_MS / 1000} s per row, whichever comes first; ${WARMUP_OPS} untimed warm-up signatures per row.\n`);
  process.stdout.write(`In-flight rows: one PKCS#11 session per store, so concurrent calls queue in the store; their p50 includes the wait.\n`);
  process.stdout.write(`CPU: ${cpu[0]?.model ?? 'unknown'} (${cpu.length} logical CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})\n`);
  process.stdout.write(`Node: ${process.version} (${process.platform}-${process.arch})\n`);
  process.stdout.write('Reproduce: npm run bench:keys\n');
}

// ---- main -------------------------------------------------------------

async function main(): Promise<number> {
  const skipped: Skipped[] = [];
  let softhsm: TokenEnv;
  let tpm: TokenEnv | undefined;
  try {
    process.stderr.write('bench:keys: making a SoftHSM2 token…\n');
    softhsm = await setupSoftHsm(softhsmDir, 'ztedge-bench');
    const missing = missingTpmTools();
    if (missing.length > 0) {
      skipped.push({ signer: 'TPM (swtpm) P-256', why: `${missing.join(', ')} not installed (apt-get install swtpm swtpm-tools tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtss2-tcti-swtpm0 dbus)` });
    } else {
      process.stderr.write('bench:keys: making a software TPM token (swtpm)…\n');
      swtpmStarted = true; // stop it even if set-up fails halfway: the script may have started it
      tpm = await setupSwtpm(tpmDir, 'ztedge-bench-tpm');
    }
  } catch (err) {
    process.stderr.write(`bench:keys: set-up failed: ${(err as Error).message}\n`);
    return 2;
  }

  // Every module reads its environment on first load: set all of it before opening any key.
  applyTokenEnv(softhsm);
  if (tpm !== undefined) applyTokenEnv(tpm);

  const rows: Row[] = [];
  try {
    const { store: file } = await FileKeyStore.openOrCreate(join(tmp, 'file-p256.key.pem'), 'ec-p256');
    stores.push(file);
    const soft = Pkcs11KeyStore.open(softhsm.uri('bench-p256'), { create: true, algorithm: 'ec-p256' });
    stores.push(soft);
    const tpmKey = tpm === undefined ? undefined : Pkcs11KeyStore.open(tpm.uri('bench-p256'), { create: true, algorithm: 'ec-p256' });
    if (tpmKey !== undefined) stores.push(tpmKey);
    for (const s of stores) {
      if (s.algorithm !== 'ec-p256') throw new Error(`${s.ref}: key is ${s.algorithm}, not ec-p256`);
    }

    process.stderr.write('bench:keys: measuring…\n');
    rows.push(await measure('file P-256', 'sequential', file, 1));
    rows.push(await measure('SoftHSM P-256', 'sequential', soft, 1));
    rows.push(await measure('SoftHSM P-256', '16 in flight', soft, 16));
    if (tpmKey !== undefined) {
      rows.push(await measure('TPM (swtpm) P-256', 'sequential', tpmKey, 1));
      rows.push(await measure('TPM (swtpm) P-256', '4 in flight', tpmKey, 4));
    }
  } catch (err) {
    if (interrupted) return 130;
    if (rows.length > 0) printTable(rows, skipped);
    process.stderr.write(`bench:keys: FAILED: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
  printTable(rows, skipped);
  return 0;
}

let code = 2;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`bench:keys: ${(err as Error).stack ?? String(err)}\n`);
} finally {
  await cleanup();
}
process.exitCode = code;
