/**
 * The comparison processes of bench/link.ts: a minimal two-process Node TLS
 * relay, and the benchmark targets. Plain `node:net`/`node:tls` and `pipe()`,
 * nothing of ztedge, so the relay is the floor a Node data plane can reach.
 *
 *   client ──TCP──▶ relay `in` ──TLS 1.3──▶ relay `out` ──TCP──▶ targets
 *   client ──TCP──▶ relay `in` ──TLS──▶ relay `mid` ──TLS──▶ relay `out` ──▶ targets
 *
 * The second, three-process form has as many TLS links and processes as
 * ztedge's edge → hub → host, so it prices what the hub's extra hop costs.
 *
 * bench/link.ts bundles this file with esbuild into its temp folder and runs
 * it with plain `node` (no tsx loader in the measured processes, as the
 * routers run the bundle dist/ztedge.cjs):
 *
 *   node relay.mjs in      '{"to":PORT,"ca":"FILE"}'
 *   node relay.mjs mid     '{"to":PORT,"ca":"FILE","cert":"FILE","key":"FILE"}'
 *   node relay.mjs out     '{"to":PORT,"cert":"FILE","key":"FILE"}'
 *   node relay.mjs targets '{}'
 *
 * Each prints one JSON line `{"ready":true,"port":P}` once it listens on
 * 127.0.0.1:P (a kernel-chosen port), and exits on SIGTERM/SIGINT through
 * process.exit, so `--cpu-prof` in NODE_OPTIONS writes its profile.
 *
 * Targets (one port; the client's first byte picks the behaviour, so one
 * relay pair and one ztedge service serve every test):
 *   'S' sink:   discards; answers one byte per MiB received (the client's
 *               progress: bytes that reached the target, not bytes buffered
 *               in between).
 *   'O' source: sends 64 KiB chunks as fast as the connection takes them,
 *               until the client goes away.
 *   'E' echo:   sends back what it receives.
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';

/** Sink progress unit: one ack byte per this many bytes received. */
export const ACK_UNIT_BYTES = 1024 * 1024;
const SOURCE_CHUNK = Buffer.alloc(64 * 1024, 0x5a);

interface Options {
  to?: number;
  ca?: string;
  cert?: string;
  key?: string;
}

/** Two sockets that live and die together: an error or close on one destroys the other. */
function splice(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
  const kill = (): void => { a.destroy(); b.destroy(); };
  a.on('error', kill);
  b.on('error', kill);
  a.on('close', kill);
  b.on('close', kill);
}

/** Accepts TCP (`in`) or TLS (`mid`, `out`); connects TLS (`in`, `mid`) or TCP (`out`) to port `to`. */
function relay(mode: 'in' | 'mid' | 'out', o: Options): Server {
  const ca = mode === 'out' ? undefined : readFileSync(o.ca!, 'utf8');
  const onward = (): Socket => (ca === undefined ? netConnect(o.to!, '127.0.0.1') : tlsConnect({ host: '127.0.0.1', port: o.to!, ca, minVersion: 'TLSv1.3' }));
  if (mode === 'in') return netServer((client) => splice(client, onward()));
  return tlsServer({ cert: readFileSync(o.cert!, 'utf8'), key: readFileSync(o.key!, 'utf8'), minVersion: 'TLSv1.3' }, (tls) => splice(tls, onward()));
}

function targets(): Server {
  return netServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => undefined);
    s.once('data', (first: Buffer) => {
      const mode = first[0];
      const rest = first.subarray(1);
      if (mode === 0x53 /* S */) return sink(s, rest);
      if (mode === 0x4f /* O */) return source(s);
      if (mode === 0x45 /* E */) {
        if (rest.length > 0) s.write(rest);
        s.pipe(s);
        return;
      }
      s.destroy();
    });
  });
}

function sink(s: Socket, first: Buffer): void {
  let received = 0;
  let acked = 0;
  const onData = (c: Buffer): void => {
    received += c.length;
    const due = Math.floor(received / ACK_UNIT_BYTES) - acked;
    if (due > 0) {
      acked += due;
      s.write(Buffer.alloc(due, 0x61));
    }
  };
  onData(first);
  s.on('data', onData);
}

function source(s: Socket): void {
  const pump = (): void => {
    while (!s.destroyed && s.write(SOURCE_CHUNK)) { /* until the socket buffer is full */ }
  };
  s.on('drain', pump);
  pump();
}

function main(): void {
  const [mode, json] = process.argv.slice(2);
  const o = JSON.parse(json ?? '{}') as Options;
  const server = mode === 'in' || mode === 'mid' || mode === 'out' ? relay(mode, o) : mode === 'targets' ? targets() : undefined;
  if (server === undefined) {
    process.stderr.write(`relay: unknown mode ${mode ?? '(none)'} (in | mid | out | targets)\n`);
    process.exit(2);
  }
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ ready: true, port: (server.address() as { port: number }).port })}\n`);
  });
  const stop = (): void => process.exit(0);
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// Only when run as a process (bench/link.ts imports ACK_UNIT_BYTES).
if (process.argv[1] !== undefined && /relay\.(ts|mjs)$/.test(process.argv[1])) main();
