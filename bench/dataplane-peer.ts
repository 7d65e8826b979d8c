/**
 * The small TCP programs bench/dataplane.ts runs inside its network
 * namespaces, beside iperf3: an echo server, and the clients that measure
 * what iperf3 cannot (round-trip time, new connections per second, memory
 * with many flows open).
 *
 *   client ns ──────────── path under test ────────────▶ server ns (or 127.0.0.1 for ztedge)
 *   node peer.mjs rtt|rate|hold HOST PORT …                node peer.mjs echo HOST PORT
 *
 * bench/dataplane.ts bundles this file with esbuild and runs it with plain
 * `node` under `ip netns exec` (no tsx loader: a faster start, and the
 * loader's memory stays out of the figures). Every mode prints exactly one
 * JSON line on stdout when it has its result (or is ready), and reports
 * failures as `{"error":"…"}` with exit code 1:
 *
 *   echo HOST PORT                 listens (PORT 0: kernel's choice), echoes every byte;
 *                                  prints {"port":P}; runs until SIGTERM
 *   rtt HOST PORT COUNT WARMUP     one connection; WARMUP untimed then COUNT timed
 *                                  sequential 64-byte round trips, each checked;
 *                                  prints {"medianUs","p99Us","count"}
 *   rate HOST PORT COUNT           COUNT sequential connections, each: connect, one
 *                                  1-byte echo, close; prints {"count","seconds","perSecond"}
 *   hold HOST PORT COUNT           opens COUNT connections (at most 64 dials at once),
 *                                  one 1-byte echo on each, prints {"open":COUNT,"seconds"},
 *                                  then holds them until stdin closes or SIGTERM
 *
 * HOST may be a name: it is resolved once (getaddrinfo, so the namespace's
 * resolv.conf applies) before anything is timed.
 */
import { lookup } from 'node:dns/promises';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

const RTT_BYTES = 64;
/** Dials in flight at once in `hold`: a burst of 1,000 SYNs would measure the SYN queues, not memory. */
const HOLD_DIALS_IN_FLIGHT = 64;
const DIAL_TIMEOUT_MS = 10_000;

function print(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(err: unknown): never {
  print({ error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

function positiveInt(s: string | undefined, what: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) fail(`${what} must be a whole number, got ${JSON.stringify(s)}`);
  return n;
}

/** Connects with Nagle off; rejects on error or after DIAL_TIMEOUT_MS. */
function dial(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true });
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`connect ${host}:${port}: no answer in ${DIAL_TIMEOUT_MS} ms`)); }, DIAL_TIMEOUT_MS);
    s.once('connect', () => { clearTimeout(timer); s.off('error', reject); resolve(s); });
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/**
 * Reads from `s` until `want` bytes came back, each equal to `expect`
 * (the echo of what was written). One reader per socket, reused for every
 * exchange, so a round trip allocates nothing but the chunks Node reads.
 */
class EchoReader {
  private want = 0;
  private got = 0;
  private expect: Buffer = Buffer.alloc(0);
  private resolve: (() => void) | undefined = undefined;
  private reject: ((err: Error) => void) | undefined = undefined;

  constructor(private readonly s: Socket) {
    s.on('data', (c: Buffer) => this.onData(c));
    s.on('close', () => this.reject?.(new Error(`connection closed after ${this.got} of ${this.want} echoed bytes`)));
    s.on('error', () => undefined); // 'close' follows and reports
  }

  /** Writes `msg` and resolves once it has come back whole and unchanged. */
  exchange(msg: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.want = msg.length;
      this.got = 0;
      this.expect = msg;
      this.resolve = resolve;
      this.reject = reject;
      this.s.write(msg);
    });
  }

  private onData(c: Buffer): void {
    if (this.got + c.length > this.want) return this.reject?.(new Error(`echo sent ${this.got + c.length} bytes for ${this.want}`));
    if (!c.equals(this.expect.subarray(this.got, this.got + c.length))) return this.reject?.(new Error('echo came back different'));
    this.got += c.length;
    if (this.got === this.want) {
      const done = this.resolve;
      this.resolve = undefined;
      this.reject = undefined;
      done?.();
    }
  }
}

/** The value at percentile `p` of ascending `sorted` (nearest rank). */
function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function echo(host: string, port: number): void {
  const server = createServer({ noDelay: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.on('error', fail);
  server.listen(port, host, () => print({ port: (server.address() as { port: number }).port }));
  process.on('SIGTERM', () => process.exit(0));
}

async function rtt(host: string, port: number, count: number, warmup: number): Promise<void> {
  const s = await dial(host, port);
  const reader = new EchoReader(s);
  const msg = Buffer.alloc(RTT_BYTES);
  const us = new Float64Array(count);
  for (let i = 0; i < warmup + count; i++) {
    msg.writeUInt32BE(i, 0); // each message differs, so a stale echo cannot pass
    msg.fill(i & 0xff, 4);
    const t = performance.now();
    await reader.exchange(msg);
    if (i >= warmup) us[i - warmup] = (performance.now() - t) * 1000;
  }
  s.destroy();
  us.sort();
  print({ medianUs: percentile(us, 50), p99Us: percentile(us, 99), count });
}

async function rate(host: string, port: number, count: number): Promise<void> {
  const one = Buffer.from([0x2a]);
  const t = performance.now();
  for (let i = 0; i < count; i++) {
    const s = await dial(host, port);
    await new EchoReader(s).exchange(one);
    const closed = new Promise((r) => s.once('close', r));
    s.end();
    await closed;
  }
  const seconds = (performance.now() - t) / 1000;
  print({ count, seconds, perSecond: count / seconds });
}

async function hold(host: string, port: number, count: number): Promise<void> {
  const sockets: Socket[] = [];
  const one = Buffer.from([0x2a]);
  const t = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const s = await dial(host, port);
      sockets.push(s);
      await new EchoReader(s).exchange(one);
    }
  };
  await Promise.all(Array.from({ length: Math.min(HOLD_DIALS_IN_FLIGHT, count) }, worker));
  print({ open: sockets.length, seconds: (performance.now() - t) / 1000 });
  const release = (): void => {
    for (const s of sockets) s.destroy();
    process.exit(0);
  };
  process.stdin.on('end', release).resume();
  process.on('SIGTERM', release);
}

async function main(): Promise<void> {
  const [mode, hostArg, portArg, a, b] = process.argv.slice(2);
  if (hostArg === undefined) fail('usage: peer.mjs echo|rtt|rate|hold HOST PORT [COUNT [WARMUP]]');
  const port = positiveInt(portArg, 'PORT');
  if (mode === 'echo') return echo(hostArg, port);
  const { address: host } = await lookup(hostArg, { family: 4 });
  switch (mode) {
    case 'rtt': return rtt(host, port, Math.max(1, positiveInt(a, 'COUNT')), positiveInt(b ?? '0', 'WARMUP'));
    case 'rate': return rate(host, port, Math.max(1, positiveInt(a, 'COUNT')));
    case 'hold': return hold(host, port, Math.max(1, positiveInt(a, 'COUNT')));
    default: fail(`unknown mode ${JSON.stringify(mode)}`);
  }
}

main().catch(fail);
