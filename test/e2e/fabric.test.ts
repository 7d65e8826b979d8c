/**
 * The data plane end to end, with real processes on loopback: a
 * `ztedge controller`, three `ztedge router` processes enrolled through the
 * management API (hub listens; host links to the hub and hosts services;
 * edge links to the hub and has proxy ports), and real clients and servers
 * behind them (curl, node:http, mosquitto, TCP sources and an echo server).
 *
 *   curl / mosquitto_* / node clients
 *        │ 127.0.0.1:PROXYPORT
 *      edge ══link══ hub ══link══ host ──► 127.0.0.1:SERVICEPORT
 *
 * One topology serves every test, in order; the last one stops the
 * controller. Figures (MB/s, fail-over and relink times, policy latency)
 * are reported with t.diagnostic.
 *
 * Needs `npm run build` first (the processes run dist/ztedge.cjs), and
 * mosquitto + mosquitto-clients (scripts/test-deps.sh, run by `npm test`).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer as httpServer, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as netServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { CloseCode, DEFAULT_MAX_BODY_BYTES, FrameType, HEADER_BYTES, decodeControl, encodeControl, encodeFrame, header, num } from '../../src/wire/index.js';
import { removeDir, tempDir } from '../helpers/controller.js';
import { portOf, roundTrip, startEcho } from '../helpers/fabric.js';
import { freePort, Overlay } from '../helpers/overlay.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;
const MOSQUITTO = '/usr/sbin/mosquitto';
const INSTALL_HINT = 'install mosquitto and mosquitto-clients (bash scripts/test-deps.sh, which `npm test` runs, or apt-get install mosquitto mosquitto-clients)';

/** Every service hosted behind `host`, each with a proxy port on `edge`. `gated` has no Dial policy at first. */
const SERVICES = ['web', 'mqtt', 'bulk', 'bulk32', 'stream', 'burst', 'echo', 'gated'] as const;
type Service = (typeof SERVICES)[number];

let o: Overlay;
const proxy = {} as Record<Service, number>;
let web: HttpServer;
let echo: NetServer;
let bulk: Source;
let bulk32: Source;
let stream: Source;
let burst: Source;
let mqttPort: number;
const children: ChildProcess[] = [];
const sockets = new Set<Socket>();
const dirs: string[] = [];

// ---- deterministic data -----------------------------------------------------

const BLOCK_BYTES = MiB;
const ZEROS = Buffer.alloc(BLOCK_BYTES);
const IV = Buffer.alloc(16);

function sha256(data: string | Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * A pseudo-random byte stream named by `seed`, one block at a time and never
 * all in memory: block i is the AES-256-CTR keystream under k_i, where
 * k_0 = sha256(seed) and k_i = sha256(k_(i-1)) (a hash chain).
 */
class BlockStream {
  private key: Buffer;
  constructor(seed: string) {
    this.key = sha256(seed);
  }

  /** The next block (owned by the caller). */
  next(): Buffer {
    this.key = sha256(this.key);
    return createCipheriv('aes-256-ctr', this.key, IV).update(ZEROS);
  }
}

/** The first `n` bytes of BlockStream(seed), n ≤ BLOCK_BYTES. */
function payload(seed: string, n: number): Buffer {
  return new BlockStream(seed).next().subarray(0, n);
}

/** sha256 of the first `totalBytes` of BlockStream(seed), computed here without the network. */
function expectedSha256(seed: string, totalBytes: number): string {
  const gen = new BlockStream(seed);
  const h = createHash('sha256');
  for (let left = totalBytes; left > 0; left -= BLOCK_BYTES) {
    const b = gen.next();
    h.update(left < BLOCK_BYTES ? b.subarray(0, left) : b);
  }
  return h.digest('hex');
}

// ---- servers behind the host ------------------------------------------------

interface Source {
  server: NetServer;
  /** Bytes written to each connection so far, in accept order. */
  sent: number[];
}

/**
 * A TCP source: each connection gets the first `totalBytes` of
 * BlockStream(seed) (Infinity: endless). Respects backpressure, so a reader
 * that stops reading stops the source, and `sent` shows how much the path
 * buffered. With `fin`, the source closes its side right after the last
 * byte; without it, it waits for the client to hang up (the client counts
 * the bytes), which keeps the transfer tests clear of the half-close bug
 * shown by the "known bug" tests.
 */
async function startSource(seed: string, totalBytes: number, fin: boolean): Promise<Source> {
  const src: Source = { server: netServer(), sent: [] };
  src.server.on('connection', (sock) => {
    track(sock);
    const index = src.sent.push(0) - 1;
    const gen = new BlockStream(seed);
    const pump = (): void => {
      while (!sock.destroyed) {
        const left = totalBytes - src.sent[index]!;
        if (left <= 0) { if (fin) sock.end(); return; }
        const b = gen.next();
        const chunk = left < BLOCK_BYTES ? b.subarray(0, left) : b;
        src.sent[index]! += chunk.length;
        if (!sock.write(chunk)) { sock.once('drain', pump); return; }
      }
    };
    pump();
  });
  src.server.listen(0, '127.0.0.1');
  await new Promise((r) => src.server.once('listening', r));
  return src;
}

function track(sock: Socket): Socket {
  sockets.add(sock);
  sock.on('error', () => undefined);
  sock.once('close', () => sockets.delete(sock));
  return sock;
}

// ---- clients ------------------------------------------------------------------

/**
 * Reads from 127.0.0.1:`port` (sending nothing) and hashes what arrives:
 * until the server's FIN, or with `expectBytes` until that many bytes came
 * (then the client hangs up; an early FIN is an error). `bytesPerSecond`
 * makes a slow reader, so the path stays full and data waits in the
 * routers.
 */
function download(port: number, timeoutMs: number, opts: { expectBytes?: number; bytesPerSecond?: number } = {}): Promise<{ bytes: number; sha256: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const h = createHash('sha256');
    let bytes = 0;
    let done = false;
    const finish = (err: Error | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (err !== undefined) reject(err);
      else resolve({ bytes, sha256: h.digest('hex'), ms: Date.now() - start });
    };
    const s = track(netConnect(port, '127.0.0.1'));
    const timer = setTimeout(() => finish(new Error(`download from ${port}: timeout after ${bytes} bytes`)), timeoutMs);
    const rate = opts.bytesPerSecond;
    s.on('data', (c: Buffer) => {
      bytes += c.length;
      h.update(c);
      if (opts.expectBytes !== undefined && bytes >= opts.expectBytes) return finish(undefined);
      // Slow reader: ahead of the allowed rate, stop reading until the schedule catches up.
      const aheadMs = rate === undefined ? 0 : (bytes / rate) * 1000 - (Date.now() - start);
      if (aheadMs > 1) {
        s.pause();
        setTimeout(() => s.resume(), aheadMs).unref();
      }
    });
    s.once('end', () => finish(opts.expectBytes === undefined ? undefined : new Error(`download from ${port}: FIN after ${bytes} of ${opts.expectBytes} bytes`)));
    s.once('close', () => finish(new Error(`download from ${port}: closed without FIN after ${bytes} bytes`)));
  });
}

/** Connects to a proxy port, sends nothing, and waits for the router to close it: resolves with the bytes received and the time it took. */
function closedBy(port: number, timeoutMs = 5000): Promise<{ bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    let bytes = 0;
    const s = track(netConnect(port, '127.0.0.1'));
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`port ${port} still open after ${timeoutMs} ms (${bytes} bytes received)`)); }, timeoutMs);
    s.on('data', (c: Buffer) => { bytes += c.length; });
    s.once('close', () => { clearTimeout(timer); resolve({ bytes, ms: Date.now() - start }); });
  });
}

/** Retries `attempt` until it resolves: at most `tries` times and `ms` milliseconds. Returns its value and the time taken. */
async function until<T>(what: string, attempt: () => Promise<T>, ms: number, tries = 200, pauseMs = 50): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  let last: unknown;
  for (let i = 0; i < tries && Date.now() - start < ms; i++) {
    try {
      return { value: await attempt(), ms: Date.now() - start };
    } catch (err) {
      last = err;
      await sleep(pauseMs);
    }
  }
  throw new Error(`${what}: not within ${ms} ms / ${tries} tries; last error: ${(last as Error | undefined)?.message}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One echo round trip through the edge (a new circuit). */
async function echoOnce(timeoutMs = 2000): Promise<void> {
  const data = payload(`probe-${Date.now()}`, 1024);
  const back = await roundTrip(proxy.echo, data, timeoutMs);
  assert.ok(back.equals(data), 'echo came back different');
}

function logsOf(name: string, since = 0): Record<string, unknown>[] {
  return o.routers.get(name)!.logs.slice(since);
}

// ---- topology -------------------------------------------------------------------

before(async () => {
  o = await Overlay.start();
  await o.addRouter({ name: 'hub', listen: true });
  await o.addRouter({ name: 'host', links: ['hub'] });
  for (const s of SERVICES) proxy[s] = await freePort();
  await o.addRouter({ name: 'edge', links: ['hub'], proxy: SERVICES.map((service) => ({ service, port: proxy[service] })) });

  web = httpServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/hello') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('hello from behind the host router\n');
      } else if (req.method === 'POST' && req.url === '/sha256') {
        res.writeHead(201, { 'content-type': 'text/plain' });
        res.end(createHash('sha256').update(Buffer.concat(parts)).digest('hex'));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('no such page\n');
      }
    });
  });
  web.listen(0, '127.0.0.1');
  await new Promise((r) => web.once('listening', r));
  echo = await startEcho();
  echo.on('connection', track);
  bulk = await startSource('bulk', 200 * MiB, true);
  bulk32 = await startSource('bulk32', 32 * MiB, true);
  stream = await startSource('stream', Infinity, false);
  burst = await startSource('burst', 8 * MiB, true);
  mqttPort = await freePort(); // mosquitto starts in its own test, so a missing broker fails that test only

  const target: Record<Service, number> = {
    web: portOf(web), mqtt: mqttPort, bulk: portOf(bulk.server), bulk32: portOf(bulk32.server), stream: portOf(stream.server), burst: portOf(burst.server), echo: portOf(echo), gated: portOf(echo),
  };
  for (const s of SERVICES) await o.hostService(s, { protocol: 'tcp', address: '127.0.0.1', port: target[s] }, 'host');
  // echo's Dial policy last: once echo works, the host has every earlier policy too.
  for (const s of SERVICES) if (s !== 'gated' && s !== 'echo') await o.allowDial(s, 'edge');
  await o.allowDial('echo', 'edge');
  await o.waitLog('host', (l) => l.msg === 'policy updated' && Array.isArray(l.hosted) && SERVICES.every((s) => (l.hosted as string[]).includes(s)), 10_000);
  await until('first echo through edge → hub → host', () => echoOnce(), 10_000);
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of sockets) s.destroy();
  web?.closeAllConnections();
  for (const srv of [web, echo, bulk?.server, bulk32?.server, stream?.server, burst?.server]) srv?.close();
  await o?.stop();
  for (const d of dirs) removeDir(d);
});

// ---- half-close: no byte lost when an end sends FIN ------------------------------------
// First, while TCP on loopback is fresh: later in the run Linux autotunes socket buffers so
// large that the kernel could hold a tail the routers dropped, which would hide a loss.

test('a source that closes right after its last byte: the client still gets every byte', async () => {
  // A slow reader (4 MiB/s, well below what the path carries even on a busy box) keeps the path
  // full, so when the source's FIN comes the tail is still in the edge and hub.
  const got = await download(proxy.burst, 15_000, { bytesPerSecond: 4 * MiB });
  assert.equal(got.bytes, 8 * MiB);
  assert.equal(got.sha256, expectedSha256('burst', 8 * MiB));
});

test('half-close from the client: request, FIN, then the whole response', async () => {
  const request = payload('half-close', MiB);
  const back = await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = track(netConnect({ port: proxy.echo, host: '127.0.0.1', allowHalfOpen: true }));
    const timer = setTimeout(() => { s.destroy(); reject(new Error('timeout')); }, 10_000);
    s.on('data', (c: Buffer) => parts.push(c));
    s.once('end', () => { clearTimeout(timer); s.end(); resolve(Buffer.concat(parts)); });
    s.once('close', () => { clearTimeout(timer); resolve(Buffer.concat(parts)); });
    s.end(request); // write, then FIN: "that is my whole request"
  });
  assert.equal(back.length, request.length);
  assert.ok(back.equals(request));
});

// ---- tests ------------------------------------------------------------------------

test('1. HTTP: curl through the edge proxy port reaches a node:http server behind the host', async () => {
  const base = `http://127.0.0.1:${proxy.web}`;
  const curl = async (args: string[]): Promise<{ status: number; body: string }> => {
    const { stdout } = await execFileP('curl', ['-sS', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', ...args], { maxBuffer: 4 * MiB });
    const nl = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl) };
  };
  assert.deepEqual(await curl([`${base}/hello`]), { status: 200, body: 'hello from behind the host router\n' });
  assert.deepEqual(await curl([`${base}/nowhere`]), { status: 404, body: 'no such page\n' });
  // A request body through the circuit too: 1 MiB up, its hash back.
  const dir = tempDir('ztedge-fabric-http-');
  dirs.push(dir);
  const body = payload('http-body', MiB);
  writeFileSync(join(dir, 'body.bin'), body);
  assert.deepEqual(await curl(['--data-binary', `@${join(dir, 'body.bin')}`, '-H', 'content-type: application/octet-stream', `${base}/sha256`]),
    { status: 201, body: sha256(body).toString('hex') });
});

test('2. MQTT: mosquitto_sub and mosquitto_pub through edge proxy ports to a mosquitto broker behind the host', async (t) => {
  assert.ok(existsSync(MOSQUITTO), `${MOSQUITTO} not found: ${INSTALL_HINT}`);
  await execFileP('mosquitto_pub', ['--help']).catch((err: NodeJS.ErrnoException & { code?: unknown }) => {
    // mosquitto_pub --help exits 1 but exists; a missing binary is ENOENT.
    assert.notEqual(err.code, 'ENOENT', `mosquitto_pub not found: ${INSTALL_HINT}`);
  });
  const dir = tempDir('ztedge-fabric-mqtt-');
  dirs.push(dir);
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${mqttPort} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n`);
  const broker = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(broker);
  let brokerLog = '';
  broker.stderr!.on('data', (c: Buffer) => { brokerLog += c.toString(); });
  await until('mosquitto listening', () => new Promise<void>((resolve, reject) => {
    if (broker.exitCode !== null) { reject(new Error(`mosquitto exited ${broker.exitCode}: ${brokerLog}`)); return; }
    const s = netConnect(mqttPort, '127.0.0.1', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  }), 10_000);

  const topic = 'ztedge/fabric';
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(proxy.mqtt), '-t', topic, '-q', '1', '-i', 'ztedge-sub'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(sub);
  const lines: string[] = [];
  let subErr = '';
  let partial = '';
  sub.stdout!.on('data', (c: Buffer) => {
    partial += c.toString();
    const all = partial.split('\n');
    partial = all.pop()!;
    lines.push(...all);
  });
  sub.stderr!.on('data', (c: Buffer) => { subErr += c.toString(); });
  const pub = async (args: string[], input?: string): Promise<void> => {
    const p = execFileP('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(proxy.mqtt), '-t', topic, '-q', '1', ...args], { timeout: 10_000 });
    if (input !== undefined) p.child.stdin!.end(input);
    await p;
  };
  // mosquitto_sub has no "subscribed" signal: publish probes until one arrives.
  await until('subscriber receives a probe', async () => {
    if (sub.exitCode !== null) throw new Error(`mosquitto_sub exited ${sub.exitCode}: ${subErr}`);
    await pub(['-m', 'probe']);
    await sleep(150);
    if (!lines.includes('probe')) throw new Error('no probe yet');
  }, 10_000, 40, 0);
  const expected = Array.from({ length: 20 }, (_, i) => `msg-${String(i).padStart(2, '0')}`);
  await pub(['-l'], expected.join('\n') + '\n'); // one connection, 20 messages in order
  await until('subscriber receives 20 messages', async () => {
    if (lines.filter((l) => l.startsWith('msg-')).length < expected.length) throw new Error(`got ${lines.filter((l) => l.startsWith('msg-')).length}`);
  }, 10_000, 200, 50);
  assert.deepEqual(lines.filter((l) => l.startsWith('msg-')), expected);
  t.diagnostic(`broker on 127.0.0.1:${mqttPort}, clients on proxy port ${proxy.mqtt}`);
  sub.kill('SIGTERM');
  broker.kill('SIGTERM');
  await Promise.all([sub, broker].map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
});

test('3. 200 MiB from a source behind the host arrive intact (sha256)', async (t) => {
  const total = 200 * MiB;
  const expected = expectedSha256('bulk', total);
  const got = await download(proxy.bulk, 90_000, { expectBytes: total });
  assert.equal(got.bytes, total);
  assert.equal(got.sha256, expected);
  const mbps = total / 1e6 / (got.ms / 1000);
  t.diagnostic(`200 MiB in ${got.ms} ms: ${mbps.toFixed(1)} MB/s (edge ← hub ← host, TLS links, 2 hops)`);
});

/** A router's memory figures now (kill -USR2 → one "memory figures" log line). */
async function memoryFiguresOf(name: string): Promise<{ releases: number; circuits: number; memory: { proc?: { rssAnon: number; rssFile: number } } }> {
  const r = o.routers.get(name)!;
  const since = r.logs.length;
  process.kill(r.child!.pid!, 'SIGUSR2');
  for (let i = 0; i < 40; i++) {
    const line = r.logs.slice(since).find((l) => l.msg === 'memory figures');
    if (line !== undefined) return line as unknown as { releases: number; circuits: number; memory: { proc?: { rssAnon: number; rssFile: number } } };
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`${name} logged no memory figures within 2 s of SIGUSR2`);
}

test('3b. once the transfer is over, each router gives memory back within seconds, and says so on SIGUSR2', async (t) => {
  const names = ['edge', 'hub', 'host'] as const;
  const atEnd = new Map<string, Awaited<ReturnType<typeof memoryFiguresOf>>>();
  for (const n of names) atEnd.set(n, await memoryFiguresOf(n));
  // The 200 MiB left garbage behind; a release comes 3–4 s after traffic stops (docs/memory.md).
  const deadline = Date.now() + 20_000;
  const pending = new Set<string>(names);
  const figures: string[] = [];
  while (pending.size > 0 && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 1000));
    for (const n of [...pending]) {
      const f = await memoryFiguresOf(n);
      if (f.releases > atEnd.get(n)!.releases) {
        pending.delete(n);
        figures.push(`${n}: RssAnon ${atEnd.get(n)!.memory.proc?.rssAnon} → ${f.memory.proc?.rssAnon} MiB, RssFile ${f.memory.proc?.rssFile} MiB, ${f.circuits} circuits`);
        assert.equal(f.circuits, 0, `${n}: no circuit left open after the transfer`);
        assert.ok(f.memory.proc === undefined || f.memory.proc.rssAnon < atEnd.get(n)!.memory.proc!.rssAnon, `${n}: RssAnon went down`);
      }
    }
  }
  assert.deepEqual([...pending], [], 'every router released memory within 20 s of the transfer');
  t.diagnostic(figures.join('; '));
});

test('4. 200 concurrent circuits to an echo service, each with its own 16 KiB, all come back exact', async (t) => {
  const start = Date.now();
  const payloads = Array.from({ length: 200 }, (_, i) => payload(`circuit-${i}`, 16 * 1024));
  const results = await Promise.allSettled(payloads.map((p) => roundTrip(proxy.echo, p, 30_000)));
  const failed = results.map((r, i) => (r.status === 'rejected' ? `#${i}: ${(r.reason as Error).message}` : r.value.equals(payloads[i]!) ? undefined : `#${i}: different bytes`)).filter((x) => x !== undefined);
  assert.deepEqual(failed, []);
  t.diagnostic(`200 × 16 KiB echoed in ${Date.now() - start} ms`);
});

test('5. a stalled reader does not hold up other circuits, and buffering stays bounded', async (t) => {
  const stallIndex = stream.sent.length;
  let stalledBytes = 0;
  const stalled = track(netConnect(proxy.stream, '127.0.0.1'));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the endless source sent nothing')), 10_000);
    stalled.on('data', (c: Buffer) => { stalledBytes += c.length; stalled.pause(); clearTimeout(timer); resolve(); });
  });
  await sleep(500); // let every buffer on the stalled path fill
  const routers = ['host', 'hub', 'edge'];
  const peak: Record<string, number> = Object.fromEntries(routers.map((n) => [n, o.rssBytes(n)]));
  const sampler = setInterval(() => { for (const n of routers) peak[n] = Math.max(peak[n]!, o.rssBytes(n)); }, 100);
  try {
    const got = await download(proxy.bulk32, 15_000, { expectBytes: 32 * MiB });
    assert.equal(got.bytes, 32 * MiB);
    assert.equal(got.sha256, expectedSha256('bulk32', 32 * MiB));
    assert.ok(got.ms < 15_000, `32 MiB took ${got.ms} ms next to a stalled circuit`);
    t.diagnostic(`32 MiB next to a stalled circuit: ${got.ms} ms`);
  } finally {
    clearInterval(sampler);
  }
  for (const n of routers) peak[n] = Math.max(peak[n]!, o.rssBytes(n));
  const sourceSent = stream.sent[stallIndex]!;
  t.diagnostic(`stalled circuit: source wrote ${(sourceSent / MiB).toFixed(1)} MiB, reader took ${(stalledBytes / 1024).toFixed(0)} KiB; peak RSS ${routers.map((n) => `${n} ${(peak[n]! / MiB).toFixed(0)} MiB`).join(', ')}`);
  assert.ok(!stalled.destroyed, 'the stalled circuit was closed');
  for (const n of routers) assert.ok(peak[n]! < 150 * MiB, `${n} RSS reached ${(peak[n]! / MiB).toFixed(0)} MiB`);
  // What the source got rid of sits in buffers along the path (kernel + link windows): bounded, not the endless stream.
  assert.ok(sourceSent < 48 * MiB, `the source pushed ${(sourceSent / MiB).toFixed(1)} MiB into a stalled circuit`);
  await sleep(300);
  assert.ok(stream.sent[stallIndex]! - sourceSent <= 2 * BLOCK_BYTES, 'the source kept sending into the stalled circuit');
  stalled.destroy();
});

test('6. Dial policy: refused without one (reason logged), allowed within ~2 s of creating it, refused again after deleting it', async (t) => {
  const marks = { edge: logsOf('edge').length, host: logsOf('host').length };
  const refused = await closedBy(proxy.gated);
  assert.equal(refused.bytes, 0);
  // The host decides and logs why; the edge logs the refusal it got back (both at info).
  const denied = await o.waitLog('host', (l) => l.msg === 'dial denied' && l.service === 'gated', 3000, marks.host);
  assert.equal(denied.identity, o.routers.get('edge')!.id);
  assert.match(String(denied.reason), /^Dial denied: no Dial policy naming identity "edge" .* names service "gated"/);
  const refusal = await o.waitLog('edge', (l) => l.msg === 'proxy dial refused' && l.service === 'gated', 3000, marks.edge);
  assert.equal(refusal.code, 3, 'CircuitError.DENIED'); // src/router/mux.ts
  assert.equal(refusal.reason, denied.reason);
  t.diagnostic(`host logged: ${String(denied.reason)}`);

  const created = Date.now();
  const policyId = await o.allowDial('gated', 'edge');
  const answered = Date.now();
  await until('dial allowed after the policy was created', async () => assert.equal(await probeGated(), 'open'), 5000, 100, 50);
  const allowMs = Date.now() - created;
  assert.ok(allowMs < 2500, `the new Dial policy took ${allowMs} ms to work`);

  const deleted = Date.now();
  await o.mgmt('DELETE', `/service-policies/${policyId}`);
  await until('dial refused after the policy was deleted', async () => assert.equal(await probeGated(), 'refused'), 5000, 100, 50);
  const denyMs = Date.now() - deleted;
  for (let i = 0; i < 3; i++) assert.equal(await probeGated(), 'refused', 'a dial after the refusal was let through');
  t.diagnostic(`policy create → working dial: ${allowMs} ms (${created + allowMs - answered} ms after the API answered); delete → refused: ${denyMs} ms`);

  /** One dial of `gated` with 4 KiB: "open" if it echoes, "refused" if the edge closes it with nothing, an error otherwise. */
  async function probeGated(): Promise<'open' | 'refused'> {
    const mark = logsOf('edge').length;
    const data = payload(`gated-${Date.now()}`, 4096);
    try {
      const back = await roundTrip(proxy.gated, data, 2000);
      assert.ok(back.equals(data), 'gated echoed different bytes');
      return 'open';
    } catch (err) {
      if (!/closed at 0\//.test((err as Error).message)) throw err;
      // Closed with nothing: a refusal only if the edge logged one for this dial.
      await o.waitLog('edge', (l) => l.msg === 'proxy dial refused' && l.service === 'gated', 1000, mark);
      return 'refused';
    }
  }
});

test('7. hub killed mid-transfer: circuits fail fast, dials are refused, traffic resumes after the hub restarts', async (t) => {
  let bytes = 0;
  const client = track(netConnect(proxy.stream, '127.0.0.1'));
  client.on('data', (c: Buffer) => { bytes += c.length; });
  const closed = new Promise<number>((r) => client.once('close', () => r(Date.now())));
  await until('long transfer running', async () => { if (bytes < 4 * MiB) throw new Error(`${bytes} bytes`); }, 10_000, 500, 20);

  const killedAt = Date.now();
  await o.killRouter('hub', 'SIGKILL');
  const closedAt = await Promise.race([closed, sleep(3000).then(() => undefined)]);
  assert.ok(closedAt !== undefined, `the client's circuit was still open 3 s after the hub died (${bytes} bytes so far)`);
  const failMs = closedAt - killedAt;

  // New dials while the hub is down: closed, nothing received.
  const during = await closedBy(proxy.echo, 3000);
  assert.equal(during.bytes, 0);

  const marks = { edge: logsOf('edge').length, host: logsOf('host').length };
  const restartAt = Date.now();
  await o.startRouter('hub'); // same port, same dataDir
  const readyMs = Date.now() - restartAt;
  const resumed = await until('echo through the restarted hub', () => echoOnce(), 10_000, 400, 50);
  const relinkMs = Date.now() - restartAt;
  assert.ok(relinkMs < 10_000);
  // Both spokes redialed the hub on their own (backoff), each with a new link.
  const linkUpMs = await Promise.all((['edge', 'host'] as const).map(async (n) => {
    const l = await o.waitLog(n, (x) => x.msg === 'link up', 1000, marks[n]);
    return `${n} ${Date.parse(String(l.time)) - restartAt} ms`;
  }));
  t.diagnostic(`circuit failed ${failMs} ms after SIGKILL (at ${(bytes / MiB).toFixed(0)} MiB); dial while down closed in ${during.ms} ms; hub restart → ready ${readyMs} ms, link up: ${linkUpMs.join(', ')}, first round trip ${relinkMs} ms (${resumed.ms} ms after ready)`);
});

test('8. hostile TLS peers at the hub link listener are cut off; the hub keeps serving', async (t) => {
  const hubPort = o.routers.get('hub')!.listenPort!;
  const since = logsOf('hub').length;
  /** A TLS client that trusts the controller CA, sends `data` and waits for the hub to close; returns the hub's CLOSE code (if it sent one). */
  const peer = (data: Buffer | undefined, timeoutMs: number): Promise<{ closeCode: number | undefined; ms: number; reply: number }> =>
    new Promise((resolve, reject) => {
      const start = Date.now();
      const parts: Buffer[] = [];
      const s = tlsConnect({ host: '127.0.0.1', port: hubPort, ca: o.ctrl.ca, minVersion: 'TLSv1.3' });
      s.on('error', () => undefined);
      const timer = setTimeout(() => { s.destroy(); reject(new Error(`the hub kept the connection open for ${timeoutMs} ms`)); }, timeoutMs);
      s.once('secureConnect', () => { if (data !== undefined) s.write(data); });
      s.on('data', (c: Buffer) => parts.push(c));
      s.once('close', () => {
        clearTimeout(timer);
        const r = Buffer.concat(parts);
        const isClose = r.length >= HEADER_BYTES && r[0] === 1 && r[1] === FrameType.CLOSE && r.length >= HEADER_BYTES + r.readUInt32BE(8);
        const m = isClose ? decodeControl(r.subarray(HEADER_BYTES, HEADER_BYTES + r.readUInt32BE(8))) : undefined;
        resolve({ closeCode: m && num(m, 'code'), ms: Date.now() - start, reply: r.length });
      });
    });
  const random = payload('hostile', 8192);
  random[0] = 0x9c; // not version 1, so the very first header is rejected
  const cases: [string, Buffer | undefined, number | undefined, number][] = [
    ['random bytes', random, CloseCode.PROTOCOL_VERSION, 5000],
    ['header announcing a 4 GiB body', header(FrameType.HELLO, 0, 0, 0xffff_fff0), CloseCode.FRAME_TOO_LARGE, 5000],
    ['header one byte over the body limit', header(FrameType.HELLO, 0, 0, DEFAULT_MAX_BODY_BYTES + 1), CloseCode.FRAME_TOO_LARGE, 5000],
    ['unknown frame type 0x7e before HELLO', encodeFrame(0x7e, 0, 0, encodeControl({ v: 1 })), CloseCode.UNKNOWN_TYPE, 5000],
    ['DIAL before HELLO', encodeFrame(FrameType.DIAL, 0, 1, encodeControl({ service: 'echo', identity: 'x' })), CloseCode.AUTH_FAILED, 5000],
    ['HELLO without cert or proof', encodeFrame(FrameType.HELLO, 0, 0, encodeControl({ v: 1, id: 'mallory' })), CloseCode.MALFORMED_BODY, 5000],
    // Silent peer: the hub's hello timeout (10 s, src/cli/router.ts) cuts it off.
    ['nothing at all', undefined, CloseCode.AUTH_FAILED, 13_000],
  ];
  const results = await Promise.all(cases.map(([, data, , ms]) => peer(data, ms)));
  const report: string[] = [];
  cases.forEach(([name, , code], i) => {
    const r = results[i]!;
    report.push(`${name}: CLOSE ${String(r.closeCode)} after ${r.ms} ms`);
    assert.equal(r.closeCode, code, `${name}: the hub answered CLOSE ${String(r.closeCode)} (${r.reply} bytes), expected ${String(code)}`);
  });
  // A peer that completes TLS and hangs up at once.
  await new Promise<void>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: hubPort, ca: o.ctrl.ca }, () => { s.destroy(); resolve(); });
    s.on('error', () => resolve());
  });
  assert.ok(o.isRunning('hub'), 'the hub process died');
  const errors = logsOf('hub', since).filter((l) => l.msg === 'link protocol error').map((l) => l.code);
  assert.deepEqual(new Set(errors), new Set([CloseCode.PROTOCOL_VERSION, CloseCode.FRAME_TOO_LARGE, CloseCode.UNKNOWN_TYPE]));
  await until('round trip edge → hub → host after the hostile peers', () => echoOnce(), 5000, 50, 50);
  t.diagnostic(report.join('; '));
});

test('9. controller down: routers keep serving from policy, and a restarted host hosts from its cache', async (t) => {
  await o.stopController('SIGTERM');
  for (let i = 0; i < 3; i++) await echoOnce(3000); // new circuits, decided from the routers' policy
  const gated = await closedBy(proxy.gated, 3000);
  assert.equal(gated.bytes, 0, 'a service without a Dial policy opened while the controller was down');

  await o.killRouter('host', 'SIGTERM');
  assert.ok(!o.routers.get('host')!.forcedKill, 'the host did not exit within 5 s of SIGTERM');
  const since = logsOf('host').length;
  const restartAt = Date.now();
  await o.startRouter('host');
  // The cache file is the policy-sync's business (src/router/policy-sync.ts); its log lines say it was used.
  const loaded = logsOf('host', since).find((l) => l.msg === 'policy loaded from cache');
  assert.ok(loaded !== undefined && String(loaded.file).includes('host-data'), `the restarted host did not load its cached policy: ${JSON.stringify(logsOf('host', since).map((l) => l.msg))}`);
  const warned = logsOf('host', since).find((l) => l.msg === 'controller unreachable; running from the cached policy');
  assert.ok(warned !== undefined, `the restarted host did not say it runs from its cache: ${JSON.stringify(logsOf('host', since).map((l) => l.msg))}`);
  const started = logsOf('host', since).find((l) => l.msg === 'router started');
  assert.ok(Array.isArray(started?.hosted) && SERVICES.every((s) => (started.hosted as string[]).includes(s)), `hosted from cache: ${JSON.stringify(started?.hosted)}`);
  const readyMs = Date.now() - restartAt;
  await until('round trip through the restarted host', () => echoOnce(), 10_000, 400, 50);
  const firstMs = Date.now() - restartAt;
  const body = await download(proxy.bulk32, 15_000, { expectBytes: 32 * MiB });
  assert.equal(body.sha256, expectedSha256('bulk32', 32 * MiB));
  t.diagnostic(`host restarted without controller: ready in ${readyMs} ms, first round trip at ${firstMs} ms`);
});
