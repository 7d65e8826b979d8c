/**
 * The tun mode's DNS server end to end on loopback, asked by the real `dig`
 * over UDP and TCP (`+tcp`): intercepted exact and wildcard names, PTR,
 * names forwarded to a tiny authoritative upstream written here with
 * dns-packet (UDP and TCP, and a truncated UDP answer fetched again over TCP),
 * REFUSED without upstream, SERVFAIL within the timeout when the upstream is
 * down; then raw sockets for TCP pipelining, the idle timeout and the
 * connection cap; bind failures; and no handles left behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { promisify } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { pino } from 'pino';
import { DnsService, MessageReader, writeMessage, type InterceptSpec } from '../../src/dns/index.js';

const run = promisify(execFile);
const log = pino({ level: 'silent' });
const INTERCEPTS: InterceptSpec[] = [
  { service: 'db', addresses: ['db.plant.internal'], portRanges: [{ low: 5432, high: 5432 }], protocols: ['tcp'] },
  { service: 'plc', addresses: ['*.plant.internal'], portRanges: [{ low: 502, high: 502 }], protocols: ['tcp'] },
];
/** A TXT answer too big for 512 bytes, small enough for EDNS 1232. */
const BIG_TXT = ['x'.repeat(200), 'y'.repeat(200), 'z'.repeat(200)];

interface DigResult {
  status: string;
  answers: string[];
  flags: string;
  ms: number;
}

async function dig(port: number, name: string, type = 'A', ...extra: string[]): Promise<DigResult> {
  const started = performance.now();
  let stdout: string;
  try {
    ({ stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=3', ...extra, name, type]));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('dig is missing: apt-get install bind9-dnsutils');
    throw err;
  }
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? `no status in:\n${stdout}`;
  const flags = /;; flags: ([^;]*);/.exec(stdout)?.[1] ?? '';
  const section = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(stdout)?.[1] ?? '';
  const answers = section.split('\n').filter((l) => l.length > 0).map((l) => l.split(/\s+/).slice(3).join(' '));
  return { status, answers, flags, ms: performance.now() - started };
}

/** A tiny authoritative server for `example.test` on UDP and TCP: A, big TXT (truncated over UDP), NXDOMAIN otherwise. */
class Upstream {
  udp!: UdpSocket;
  tcp!: Server;
  port = 0;
  udpQueries = 0;
  tcpQueries = 0;

  async start(): Promise<void> {
    this.udp = createSocket('udp4');
    this.udp.on('message', (msg, rinfo) => {
      this.udpQueries++;
      const out = this.answer(msg, true);
      if (out !== undefined) this.udp.send(out, rinfo.port, rinfo.address);
    });
    this.udp.bind(0, '127.0.0.1');
    await once(this.udp, 'listening');
    this.port = this.udp.address().port;
    this.tcp = createServer((socket) => {
      const reader = new MessageReader();
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk);
        for (let msg = reader.next(); msg !== undefined; msg = reader.next()) {
          this.tcpQueries++;
          const out = this.answer(msg, false);
          if (out !== undefined) writeMessage(socket, out);
        }
      });
    });
    this.tcp.listen(this.port, '127.0.0.1');
    await once(this.tcp, 'listening');
  }

  private answer(msg: Buffer, udp: boolean): Buffer | undefined {
    const q = dnsPacket.decode(msg);
    const question = q.questions![0]!;
    const name = question.name.toLowerCase();
    const base = { type: 'response' as const, id: q.id, questions: q.questions, flags: dnsPacket.AUTHORITATIVE_ANSWER };
    if (name === 'www.example.test' && question.type === 'A') {
      return dnsPacket.encode({ ...base, answers: [{ name: question.name, type: 'A', ttl: 300, data: '192.0.2.10' }] });
    }
    if (name === 'big.example.test') {
      // Always truncated over UDP, whatever the size: the forwarder must fetch it again over TCP.
      if (udp) return dnsPacket.encode({ ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE });
      return dnsPacket.encode({ ...base, answers: [{ name: question.name, type: 'TXT', ttl: 300, data: BIG_TXT }] });
    }
    if (name === 'silent.example.test') return undefined;
    return dnsPacket.encode({ ...base, flags: base.flags | 3 });
  }

  private stopped = false;

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await new Promise<void>((resolve) => this.udp.close(() => resolve()));
    await new Promise<void>((resolve) => this.tcp.close(() => resolve()));
  }
}

/** A loopback port with nothing listening on it (UDP or TCP). */
async function deadPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const upstream = new Upstream();
let forwarding: DnsService;
let refusing: DnsService;
let fwdPort: number;
let refPort: number;
const UPSTREAM_TIMEOUT_MS = 300;

before(async () => {
  await upstream.start();
  forwarding = new DnsService({
    listen: ['127.0.0.1:0'], upstream: [`127.0.0.1:${upstream.port}`], range: '100.64.0.0/10',
    reserved: ['100.64.0.1', '100.64.0.2'], log, tcpIdleMs: 400, maxTcpConnections: 3,
  });
  forwarding.setIntercepts(INTERCEPTS);
  await forwarding.start();
  fwdPort = forwarding.addresses[0]!.port;
  refusing = new DnsService({ listen: ['127.0.0.1:0'], upstream: [], range: '100.64.0.0/10', reserved: ['100.64.0.1', '100.64.0.2'], log });
  refusing.setIntercepts(INTERCEPTS);
  await refusing.start();
  refPort = refusing.addresses[0]!.port;
});

after(async () => {
  await forwarding.stop();
  await refusing.stop();
  await upstream.stop();
});

for (const transport of ['udp', 'tcp'] as const) {
  const extra = transport === 'tcp' ? ['+tcp'] : [];

  test(`${transport}: an exact intercepted name gets a pool address, stable, with a 60 s TTL and aa`, async () => {
    const first = await dig(fwdPort, 'db.plant.internal', 'A', ...extra);
    assert.equal(first.status, 'NOERROR');
    assert.match(first.flags, /\baa\b/);
    assert.equal(first.answers.length, 1);
    const [type, address] = first.answers[0]!.split(' ');
    assert.equal(type, 'A');
    assert.match(address!, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+$/);
    const again = await dig(fwdPort, 'DB.Plant.Internal.', 'A', ...extra);
    assert.equal(again.answers[0]!.split(' ')[1], address, 'same address for the same name');
    const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(fwdPort), '+tries=1', '+time=3', ...extra, '+noall', '+answer', 'db.plant.internal']);
    assert.match(stdout, /\s60\s+IN\s+A\s/);
    // The packet path's view of that address.
    const ip = address!.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
    assert.equal(forwarding.nameOf(ip), 'db.plant.internal');
    assert.equal(forwarding.serviceOf(ip, 'tcp', 5432), 'db');
    assert.equal(forwarding.serviceOf(ip, 'tcp', 80), undefined);
  });

  test(`${transport}: wildcard names at any depth; AAAA is NOERROR with no answer; PTR names the pool address`, async () => {
    const one = await dig(fwdPort, `sensor-${transport}.plant.internal`, 'A', ...extra);
    assert.equal(one.status, 'NOERROR');
    assert.equal(one.answers.length, 1);
    const deep = await dig(fwdPort, `a.b.${transport}.plant.internal`, 'A', ...extra);
    assert.equal(deep.status, 'NOERROR');
    const address = deep.answers[0]!.split(' ')[1]!;
    assert.notEqual(address, one.answers[0]!.split(' ')[1]);
    const aaaa = await dig(fwdPort, `a.b.${transport}.plant.internal`, 'AAAA', ...extra);
    assert.equal(aaaa.status, 'NOERROR');
    assert.deepEqual(aaaa.answers, []);
    const ptr = await dig(fwdPort, address.split('.').reverse().join('.') + '.in-addr.arpa', 'PTR', ...extra);
    assert.equal(ptr.status, 'NOERROR');
    assert.deepEqual(ptr.answers, [`PTR a.b.${transport}.plant.internal.`]);
    const ip = address.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
    assert.equal(forwarding.serviceOf(ip, 'tcp', 502), 'plc');
  });

  test(`${transport}: other names are forwarded upstream, answers and NXDOMAIN passed back`, async () => {
    const before = transport === 'udp' ? upstream.udpQueries : upstream.tcpQueries;
    const www = await dig(fwdPort, 'www.example.test', 'A', ...extra);
    assert.equal(www.status, 'NOERROR');
    assert.deepEqual(www.answers, ['A 192.0.2.10']);
    assert.match(www.flags, /\baa\b/, 'the upstream answer is passed on as it came');
    const none = await dig(fwdPort, 'nothing.example.test', 'A', ...extra);
    assert.equal(none.status, 'NXDOMAIN');
    assert.equal((transport === 'udp' ? upstream.udpQueries : upstream.tcpQueries) - before, 2, `asked upstream over ${transport}`);
  });

  test(`${transport}: REFUSED for other names when no upstream is set`, async () => {
    const r = await dig(refPort, 'www.example.test', 'A', ...extra);
    assert.equal(r.status, 'REFUSED');
    assert.deepEqual(r.answers, []);
    assert.equal((await dig(refPort, 'db.plant.internal', 'A', ...extra)).status, 'NOERROR', 'intercepted names are still answered');
  });

  test(`${transport}: upstream down → SERVFAIL within the timeout`, async () => {
    const dead = new DnsService({
      listen: ['127.0.0.1:0'], upstream: [`127.0.0.1:${await deadPort()}`], range: '100.64.0.0/24', reserved: [],
      log, upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS,
    });
    await dead.start();
    try {
      const r = await dig(dead.addresses[0]!.port, 'www.example.test', 'A', ...extra);
      assert.equal(r.status, 'SERVFAIL');
      // Two tries (one upstream is asked twice) of 300 ms, plus the coarse timer and dig's start-up.
      assert.ok(r.ms < 2 * UPSTREAM_TIMEOUT_MS + 1500, `took ${Math.round(r.ms)} ms`);
      assert.equal(dead.counters.forwarder?.servfail, 1);
    } finally {
      await dead.stop();
    }
  });
}

test('udp: a truncated upstream answer is fetched again over TCP and passed on when it fits the client', async () => {
  const fallbacks = forwarding.counters.forwarder!.tcpFallback;
  const r = await dig(fwdPort, 'big.example.test', 'TXT', '+bufsize=1232', '+ignore');
  assert.equal(r.status, 'NOERROR');
  assert.doesNotMatch(r.flags, /\btc\b/, 'not truncated: it fits 1232 bytes');
  assert.equal(r.answers.length, 1);
  assert.equal(forwarding.counters.forwarder!.tcpFallback, fallbacks + 1);
  // Without EDNS the client takes 512 bytes: it gets the truncated answer (and would retry over TCP itself).
  const small = await dig(fwdPort, 'big.example.test', 'TXT', '+noedns', '+ignore');
  assert.match(small.flags, /\btc\b/);
  assert.deepEqual(small.answers, []);
});

test('udp: a silent upstream → SERVFAIL after the tries, other queries unaffected', async () => {
  const service = new DnsService({
    listen: ['127.0.0.1:0'], upstream: [`127.0.0.1:${upstream.port}`], range: '100.64.0.0/24', reserved: [], log, upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS,
  });
  await service.start();
  try {
    const port = service.addresses[0]!.port;
    const [silent, www] = await Promise.all([dig(port, 'silent.example.test'), dig(port, 'www.example.test')]);
    assert.equal(silent.status, 'SERVFAIL');
    assert.equal(www.status, 'NOERROR');
    assert.equal(service.counters.forwarder?.retried, 1);
  } finally {
    await service.stop();
  }
});

test('query(): datagrams from inside the TUN are answered, forwarded, cut to fit, or dropped', async () => {
  const ask = (q: Buffer, maxReplyBytes?: number): Promise<Buffer | undefined> =>
    new Promise((resolve) => forwarding.query(q, resolve, maxReplyBytes));
  const q = (id: number, name: string, type = 'A'): Buffer => dnsPacket.encode({ type: 'query', id, questions: [{ name, type }] });
  const local = dnsPacket.decode((await ask(q(1, 'db.plant.internal')))!);
  assert.equal(local.id, 1);
  assert.match(String(local.answers?.[0]?.data), /^100\./);
  const forwarded = dnsPacket.decode((await ask(q(2, 'www.example.test')))!);
  assert.equal(forwarded.id, 2);
  assert.equal(forwarded.answers?.[0]?.data, '192.0.2.10');
  // A reply bigger than one TUN packet: header and question only, TC set.
  const cut = dnsPacket.decode((await ask(q(3, 'db.plant.internal'), 40))!);
  assert.equal(cut.flag_tc, true);
  assert.deepEqual(cut.answers, []);
  const big = dnsPacket.decode((await ask(q(4, 'big.example.test', 'TXT'), 300))!);
  assert.equal(big.id, 4);
  assert.equal(big.flag_tc, true);
  const response = dnsPacket.encode({ type: 'response', id: 5, questions: [{ name: 'x', type: 'A' }] });
  assert.equal(await ask(response), undefined);
});

/** Opens a raw TCP connection to the DNS server and reads framed messages. */
async function rawTcp(port: number): Promise<{ socket: TcpSocket; next: () => Promise<Buffer>; closed: Promise<void> }> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  const reader = new MessageReader();
  const waiting: ((b: Buffer) => void)[] = [];
  const ready: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk);
    for (let m = reader.next(); m !== undefined; m = reader.next()) {
      const w = waiting.shift();
      if (w !== undefined) w(m);
      else ready.push(m);
    }
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => undefined);
  const next = (): Promise<Buffer> => {
    const m = ready.shift();
    return m !== undefined ? Promise.resolve(m) : new Promise((resolve) => waiting.push(resolve));
  };
  return { socket, next, closed };
}

test('tcp: pipelined queries in one write, split across writes, all answered with their ids', async () => {
  const { socket, next } = await rawTcp(fwdPort);
  const q = (id: number, name: string): Buffer => dnsPacket.streamEncode({ type: 'query', id, questions: [{ name, type: 'A' }] });
  // Three queries in one segment, the middle one forwarded: answers may come in any order (RFC 7766 §7).
  socket.write(Buffer.concat([q(1, 'db.plant.internal'), q(2, 'www.example.test'), q(3, 'x.plant.internal')]));
  // A fourth split inside its length prefix and its body.
  const fourth = q(4, 'db.plant.internal');
  socket.write(fourth.subarray(0, 1));
  await new Promise((r) => setTimeout(r, 20));
  socket.write(fourth.subarray(1, 9));
  await new Promise((r) => setTimeout(r, 20));
  socket.write(fourth.subarray(9));
  const got = new Map<number, dnsPacket.Packet>();
  for (let i = 0; i < 4; i++) {
    const m = dnsPacket.decode(await next());
    got.set(m.id!, m);
  }
  assert.deepEqual([...got.keys()].sort(), [1, 2, 3, 4]);
  assert.equal(got.get(2)?.answers?.[0]?.data, '192.0.2.10');
  assert.equal(got.get(1)?.answers?.[0]?.data, got.get(4)?.answers?.[0]?.data);
  socket.destroy();
});

test('tcp: past maxTcpInflight forwarded queries a connection stops being read until answers come back', async () => {
  const q = (id: number, name: string): Buffer => dnsPacket.streamEncode({ type: 'query', id, questions: [{ name, type: 'A' }] });
  const order = async (maxTcpInflight: number): Promise<number[]> => {
    const service = new DnsService({
      listen: ['127.0.0.1:0'], upstream: [`127.0.0.1:${upstream.port}`], range: '100.64.0.0/24', reserved: [], log, maxTcpInflight,
    });
    service.setIntercepts(INTERCEPTS);
    await service.start();
    try {
      const { socket, next } = await rawTcp(service.addresses[0]!.port);
      // Two forwarded queries, then one answered locally at once.
      socket.write(Buffer.concat([q(1, 'www.example.test'), q(2, 'www.example.test'), q(3, 'db.plant.internal')]));
      const ids: number[] = [];
      for (let i = 0; i < 3; i++) ids.push(dnsPacket.decode(await next()).id!);
      socket.destroy();
      return ids;
    } finally {
      await service.stop();
    }
  };
  // Room for both: the local answer overtakes the forwarded ones.
  assert.equal((await order(16))[0], 3);
  // Room for one: query 2 waits for answer 1, query 3 for answer 2.
  assert.deepEqual(await order(1), [1, 2, 3]);
});

test('tcp: an idle connection is closed by the server; past the cap new connections are refused', async () => {
  const idle = await rawTcp(fwdPort);
  const started = performance.now();
  await idle.closed;
  const waited = performance.now() - started;
  assert.ok(waited >= 300 && waited < 2000, `closed after ${Math.round(waited)} ms (idle timeout 400 ms)`);

  const open = await Promise.all([rawTcp(fwdPort), rawTcp(fwdPort), rawTcp(fwdPort)]);
  const extra = await rawTcp(fwdPort); // the kernel accepts it; the server closes it at once
  await extra.closed;
  // The three under the cap still work.
  open[0]!.socket.write(dnsPacket.streamEncode({ type: 'query', id: 9, questions: [{ name: 'db.plant.internal', type: 'A' }] }));
  assert.equal(dnsPacket.decode(await open[0]!.next()).id, 9);
  for (const c of open) c.socket.destroy();
  await Promise.all(open.map((c) => c.closed));
});

test('bind failures are EdgeError ERR_DNS naming the address', async () => {
  const taken = forwarding.addresses[0]!;
  const clash = new DnsService({ listen: [`127.0.0.1:${taken.port}`], upstream: [], range: '100.64.0.0/24', reserved: [], log });
  await assert.rejects(clash.start(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_DNS');
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${taken.port}`));
    assert.match(err.message, /another process holds it/);
    return true;
  });
  const notLocal = new DnsService({ listen: ['192.0.2.1:5353'], upstream: [], range: '100.64.0.0/24', reserved: [], log });
  await assert.rejects(notLocal.start(), /cannot listen for DNS on 192\.0\.2\.1:5353 \(udp\): no interface has this address/);
  assert.throws(() => new DnsService({ listen: ['127.0.0.1:0'], upstream: ['resolver.lan:53'], range: '100.64.0.0/24', reserved: [], log }),
    (err: Error & { code?: string }) => err.code === 'ERR_DNS' && /resolver\.lan:53/.test(err.message));
});

test('MessageReader: messages split at every byte boundary come out whole', () => {
  const a = dnsPacket.streamEncode({ type: 'query', id: 1, questions: [{ name: 'a.example', type: 'A' }] });
  const b = dnsPacket.streamEncode({ type: 'query', id: 2, questions: [{ name: 'bb.example', type: 'AAAA' }] });
  const stream = Buffer.concat([a, b]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const reader = new MessageReader();
    reader.push(stream.subarray(0, cut));
    const out: Buffer[] = [];
    for (let m = reader.next(); m !== undefined; m = reader.next()) out.push(m);
    reader.push(stream.subarray(cut));
    for (let m = reader.next(); m !== undefined; m = reader.next()) out.push(m);
    assert.deepEqual(out.map((m) => dnsPacket.decode(m).id), [1, 2], `cut at ${cut}`);
    assert.equal(reader.pendingBytes, 0);
  }
});

test('no sockets or timers left once every service stopped', async () => {
  await forwarding.stop();
  await refusing.stop();
  await upstream.stop();
  // Handles leave the list a moment after their close callbacks ran.
  await new Promise((r) => setTimeout(r, 100));
  const left = process.getActiveResourcesInfo().filter((r) => /UDP|TCP|Timeout/i.test(r));
  assert.deepEqual(left, []);
  // after() stops them again: stopping twice is harmless.
});
