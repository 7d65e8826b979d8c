/**
 * One circuit over a link with a long round trip: what the per-circuit
 * window lets through, fixed at 256 KiB against growing (src/router/mux.ts,
 * docs/wire.md "Growing windows"). The link is a real TLS 1.3 link between
 * two LinkMux ends in this process, through a TCP proxy on 127.0.0.1 that
 * holds every chunk for --delay-ms in each direction (this kernel has no
 * netem). CPU is not what limits these rates: the window per round trip is.
 *
 *   npm run bench:window -- [--delays-ms 5,10,25] [--mib 24] [--time-limit 300]
 *
 * Prints a table and the reproduce command. Exit code 0 when measured, 1 when
 * bytes went missing, 2 when the bench could not run.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Pki } from '../src/controller/pki.js';
import { DEFAULT_LINK_SETTINGS, Link, parsePemBundle } from '../src/link/index.js';
import { DEFAULT_WINDOW_BYTES, LinkMux, MAX_WINDOW_BYTES } from '../src/router/mux.js';
import { issueIdentity, issueListener } from '../test/helpers/fabric.js';

const MiB = 1024 * 1024;

function usage(message?: string, exitCode = 2): never {
  if (message !== undefined) process.stderr.write(`bench:window: ${message}\n`);
  process.stderr.write(`Usage: npm run bench:window -- [options]
  --delays-ms LIST   one-way delays of the link, ms, comma-separated      [5,10,25]
  --mib N            MiB sent through the circuit per measurement, 1..512  [24]
  --time-limit S     hard limit for the whole bench, seconds              [300]
`);
  process.exit(exitCode);
}

const args = (() => {
  try {
    return parseArgs({ options: { 'delays-ms': { type: 'string' }, mib: { type: 'string' }, 'time-limit': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values;
  } catch (err) {
    return usage((err as Error).message);
  }
})();
if (args.help === true) usage(undefined, 0);
const DELAYS = (args['delays-ms'] ?? '5,10,25').split(',').map((x) => (/^\d+$/.test(x.trim()) ? Number(x) : NaN));
if (DELAYS.some((d) => !(d >= 1 && d <= 500))) usage(`--delays-ms must be whole numbers from 1 to 500, got "${args['delays-ms']}"`);
const MIB = /^\d+$/.test(args.mib ?? '24') ? Number(args.mib ?? '24') : NaN;
if (!(MIB >= 1 && MIB <= 512)) usage(`--mib must be from 1 to 512, got "${args.mib}"`);
const TIME_LIMIT_S = /^\d+$/.test(args['time-limit'] ?? '300') ? Number(args['time-limit'] ?? '300') : NaN;
if (!(TIME_LIMIT_S >= 10 && TIME_LIMIT_S <= 3600)) usage(`--time-limit must be from 10 to 3600 s, got "${args['time-limit']}"`);

const log = pino({ level: 'silent' });

/** A TCP proxy that forwards each chunk `delayMs` after it arrived, both ways, in order. */
function delayProxy(targetPort: number, delayMs: number): Server {
  const forward = (from: Socket, to: Socket): void => {
    from.on('data', (c: Buffer) => { setTimeout(() => { if (!to.destroyed) to.write(c); }, delayMs); });
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), delayMs));
  };
  return netServer((client) => {
    const server = netConnect(targetPort, '127.0.0.1');
    client.setNoDelay(true);
    server.setNoDelay(true);
    forward(client, server);
    forward(server, client);
  });
}

/** A local stream that takes everything written to it and counts it; `whenGot(n)` resolves once n bytes arrived. */
function countingSink(): Duplex & { got: number; whenGot: (n: number) => Promise<void> } {
  let waiter: { n: number; resolve: () => void } | undefined;
  const s = new Duplex({
    read() { /* nothing */ },
    write(chunk: Buffer, _enc, cb) {
      s.got += chunk.length;
      if (waiter !== undefined && s.got >= waiter.n) waiter.resolve();
      cb();
    },
  }) as Duplex & { got: number; whenGot: (n: number) => Promise<void> };
  s.got = 0;
  s.whenGot = (n) => (s.got >= n ? Promise.resolve() : new Promise<void>((resolve) => { waiter = { n, resolve }; }));
  return s;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

interface Result { delayMs: number; mode: 'fixed' | 'growing'; mbit: number; seconds: number }

async function measure(pki: Pki, delayMs: number, maxWindow: number): Promise<Result> {
  const cas = parsePemBundle(pki.caBundlePem);
  const sink = countingSink();
  const hub = tlsServer({ ...(await issueListener(pki, 'hub')), minVersion: 'TLSv1.3' }, (socket) => {
    const link = new Link(socket, 'listener', { id: 'hub' }, cas, DEFAULT_LINK_SETTINGS, log);
    new LinkMux(link, 'listener', (_req, accept) => accept(sink), DEFAULT_WINDOW_BYTES, maxWindow);
  });
  const hubPort = await listen(hub);
  const proxy = delayProxy(hubPort, delayMs);
  const proxyPort = await listen(proxy);
  const { key, certPem } = await issueIdentity(pki, 'edge');
  const tls = tlsConnect({ host: '127.0.0.1', port: proxyPort, ca: pki.caBundlePem, minVersion: 'TLSv1.3' });
  tls.setNoDelay(true);
  await once(tls, 'secureConnect');
  const link = new Link(tls, 'dialer', { id: 'edge', key, certPem }, cas, DEFAULT_LINK_SETTINGS, log);
  const mux = new LinkMux(link, 'dialer', (_r, _a, refuse) => refuse(1, 'nothing hosted'), DEFAULT_WINDOW_BYTES, maxWindow);
  await once(link, 'up');
  try {
    const bytes = MIB * MiB;
    const source = new Duplex({ read() { /* pushed below */ }, write(_c, _e, cb) { cb(); } });
    await new Promise<void>((resolve, reject) => mux.dial(source, { service: 'bench', identity: 'edge' }, (err) => (err === undefined ? resolve() : reject(new Error(err.reason)))));
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    const start = performance.now();
    let pushed = 0;
    const pump = (): void => {
      while (pushed < bytes) {
        pushed += chunk.length;
        if (!source.push(chunk)) return;
      }
    };
    source._read = pump;
    pump();
    await Promise.race([
      sink.whenGot(bytes),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${sink.got} of ${bytes} bytes arrived within 120 s`)), 120_000).unref()),
    ]);
    const seconds = (performance.now() - start) / 1000;
    return { delayMs, mode: maxWindow > DEFAULT_WINDOW_BYTES ? 'growing' : 'fixed', mbit: (bytes * 8) / 1e6 / seconds, seconds };
  } finally {
    tls.destroy();
    proxy.close();
    hub.close();
  }
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'ztedge-bench-window-'));
  const limit = setTimeout(() => { process.stderr.write(`bench:window: over the ${TIME_LIMIT_S} s limit, stopping\n`); rmSync(dir, { recursive: true, force: true }); process.exit(2); }, TIME_LIMIT_S * 1000);
  limit.unref();
  try {
    const pki = await Pki.loadOrCreate(dir, ['127.0.0.1'], log);
    const results: Result[] = [];
    for (const d of DELAYS) {
      for (const max of [DEFAULT_WINDOW_BYTES, MAX_WINDOW_BYTES]) {
        const r = await measure(pki, d, max);
        results.push(r);
        process.stderr.write(`one-way ${d} ms, ${r.mode} window: ${r.mbit.toFixed(0)} Mbit/s (${MIB} MiB in ${r.seconds.toFixed(2)} s)\n`);
      }
    }
    const L: string[] = ['', '## One circuit over a link with a long round trip (bench:window)', ''];
    L.push(`Real TLS 1.3 link between two LinkMux ends through a delaying proxy on 127.0.0.1; ${MIB} MiB through one circuit per cell. Window ${DEFAULT_WINDOW_BYTES / 1024} KiB fixed, or growing up to ${MAX_WINDOW_BYTES / MiB} MiB.`);
    L.push('');
    L.push('| one-way delay (link round trip) | fixed window, Mbit/s | growing window, Mbit/s | growing / fixed | fixed: window per round trip, Mbit/s |');
    L.push('|---|--:|--:|--:|--:|');
    for (const d of DELAYS) {
      const f = results.find((r) => r.delayMs === d && r.mode === 'fixed')!;
      const g = results.find((r) => r.delayMs === d && r.mode === 'growing')!;
      L.push(`| ${d} ms (${2 * d} ms) | ${f.mbit.toFixed(0)} | ${g.mbit.toFixed(0)} | ${(g.mbit / f.mbit).toFixed(2)} | ${((DEFAULT_WINDOW_BYTES * 8) / 1e6 / ((2 * d) / 1000)).toFixed(0)} |`);
    }
    L.push('');
    L.push(`Reproduce: npm run bench:window -- --delays-ms ${DELAYS.join(',')} --mib ${MIB}`);
    process.stdout.write(`${L.join('\n')}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`bench:window: ${(err as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(limit);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code), (err: unknown) => { process.stderr.write(`bench:window: ${String(err)}\n`); process.exit(2); });
