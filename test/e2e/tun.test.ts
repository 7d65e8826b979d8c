/**
 * The TUN device against the real kernel: src/tun (addon, Linux device,
 * netconf) in a network namespace this test creates and deletes, so no
 * packet leaves it. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for netns),
 * /dev/net/tun, iproute2 and ping (iputils-ping).
 *
 * The same file is the child process: run with ZT_TUN_E2E_CHILD set, it
 * opens the TUN inside the namespace, configures it with TunNetconf and
 * answers ICMP echo requests by rewriting them in JavaScript, talking to
 * the test over JSON lines (stdout) and commands (stdin).
 *
 *   test ──ip netns exec NS taskset -c 0 node … (child)──► TUN zte2e0 100.64.0.1/10
 *   test ──ip netns exec NS ping 100.64.0.2 / 198.18.0.7──► kernel ─► TUN ─► child ─► echo reply
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EdgeError } from '../../src/errors.js';
import { TunNetconf, openLinuxTun, type TunDevice } from '../../src/tun/index.js';

const DEV = 'zte2e0';
const FULL_DEV = 'zte2e1';
const MTU = 1420;
const PLAN = { device: DEV, mtu: MTU, addresses: ['100.64.0.1/10', 'fd00:7a::1/64'], routes: ['198.18.0.0/24', 'fd00:7b::/48'] };

// ---------------------------------------------------------------- child side

/** One's-complement sum over bytes [off, off+len) (RFC 1071), folded and inverted. */
function checksum(buf: Buffer, off: number, len: number): number {
  let sum = 0;
  for (let i = 0; i + 1 < len; i += 2) sum += buf.readUInt16BE(off + i);
  if (len % 2 === 1) sum += buf[off + len - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Turns an IPv4 ICMP echo request (RFC 792 type 8) into its reply in place:
 * addresses swapped (the IPv4 header checksum is unchanged by a swap of
 * 16-bit words), type 0, ICMP checksum recomputed. False for anything else.
 */
function echoReplyInPlace(pkt: Buffer): boolean {
  if (pkt.length < 28 || pkt[0]! >> 4 !== 4 || pkt[9] !== 1) return false;
  const ihl = (pkt[0]! & 0x0f) * 4;
  if (pkt[ihl] !== 8) return false;
  const src = pkt.readUInt32BE(12);
  pkt.writeUInt32BE(pkt.readUInt32BE(16), 12);
  pkt.writeUInt32BE(src, 16);
  pkt[ihl] = 0;
  pkt.writeUInt16BE(0, ihl + 2);
  pkt.writeUInt16BE(checksum(pkt, ihl, pkt.length - ihl), ihl + 2);
  return true;
}

/** An IPv4 packet 10.99.0.2 → 10.99.0.1 carrying `body` (protocol `proto`). */
function ipv4Packet(proto: number, body: Buffer): Buffer {
  const p = Buffer.alloc(20 + body.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = proto;
  p.writeUInt32BE(0x0a630002, 12);
  p.writeUInt32BE(0x0a630001, 16);
  p.writeUInt16BE(checksum(p, 0, 20), 10);
  body.copy(p, 20);
  return p;
}

/** UDP 1234 → 9 (discard) with `payload` zero bytes, checksum 0 (RFC 768: none). */
function udpPacket(payload: number): Buffer {
  const udp = Buffer.alloc(8 + payload);
  udp.writeUInt16BE(1234, 0);
  udp.writeUInt16BE(9, 2);
  udp.writeUInt16BE(udp.length, 4);
  return ipv4Packet(17, udp);
}

/** ICMP echo request (RFC 792 type 8); the kernel answers it, unlike UDP errors, without rate limiting. */
function echoRequest(): Buffer {
  const icmp = Buffer.alloc(16);
  icmp[0] = 8;
  icmp.writeUInt16BE(0x7a7a, 4);
  icmp.writeUInt16BE(1, 6);
  icmp.writeUInt16BE(checksum(icmp, 0, icmp.length), 2);
  return ipv4Packet(1, icmp);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function send(msg: object): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

function errorShape(fn: () => unknown): { code: string; message: string } | null {
  try {
    (fn() as TunDevice).close();
    return null;
  } catch (err) {
    return { code: (err as EdgeError).code, message: (err as Error).message };
  }
}

/**
 * Writes a flood of packets into a TUN whose kernel send buffer is one byte
 * and whose received packets RPS hands to another CPU (rps_cpus): every
 * packet still queued there holds the buffer, so writes hit EAGAIN.
 */
async function floodFullQueue(): Promise<object> {
  const dev = openLinuxTun({ name: FULL_DEV, sndbufBytes: 1 });
  const net = new TunNetconf();
  try {
    await net.apply({ device: dev.name, addresses: ['10.99.0.1/24'], routes: [] });
    writeFileSync(`/sys/class/net/${dev.name}/queues/rx-0/rps_cpus`, '2');
    const p = udpPacket(1000);
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 50_000; i++) {
      if (dev.write(p)) accepted++;
      else refused++;
    }
    const flood = { accepted, refused, counters: { ...dev.counters } };
    // Close from inside the packet handler, while the addon is in its read
    // batch: the reader must stop at once and the fd must go.
    let handled = 0;
    dev.onPackets(() => {
      handled++;
      dev.close();
    });
    for (let i = 0; i < 100 && !dev.write(echoRequest()); i++) await sleep(10); // the 1-byte sndbuf drains
    for (let i = 0; i < 200 && !dev.closed; i++) await sleep(10);
    await sleep(100); // time for a (wrong) second delivery
    // The device is gone with its fd: undo must count its address as removed.
    await net.undo();
    return { ...flood, handled, closedInHandler: dev.closed, undoLeft: net.added.length };
  } finally {
    await net.undo();
    dev.close();
  }
}

async function runChild(mode: string): Promise<void> {
  if (mode === 'eperm') {
    send({ event: 'eperm', error: errorShape(() => openLinuxTun({ name: 'zteperm0' })) });
    return;
  }
  if (mode === 'deleted') {
    const gone = openLinuxTun({ name: 'ztedel0' });
    gone.onPackets(() => undefined);
    gone.onError((err) => {
      send({ event: 'deleted', code: (err as EdgeError).code, message: err.message, rxErrors: gone.counters.rxErrors, write: gone.write(echoRequest()) });
      gone.close();
    });
    spawnSync('ip', ['link', 'del', 'ztedel0']);
    return;
  }
  const dev = openLinuxTun({ name: DEV, mtu: MTU });
  const net = new TunNetconf();
  await net.apply(PLAN);
  let echoes = 0;
  dev.onPackets((pkt) => {
    // The packet is ours (owned): rewrite it in place and send it back.
    if (echoReplyInPlace(pkt) && dev.write(pkt)) echoes++;
  });
  process.on('SIGTERM', () => {
    net.undo().then(() => send({ event: 'undone', left: net.added.length }), (err: Error) => send({ event: 'undone', error: err.message }));
  });
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (cmd) => {
    if (cmd === 'stats') send({ event: 'stats', echoes, counters: { ...dev.counters } });
    if (cmd === 'full') floodFullQueue().then((r) => send({ event: 'full', ...r }), (err: Error) => send({ event: 'full', error: err.message }));
    if (cmd === 'close') {
      dev.close();
      lines.close();
      process.stdin.destroy();
      // Nothing else should keep the process alive now: the addon's poll handle must be closed.
    }
  });
  send({
    event: 'ready',
    name: dev.name,
    busy: errorShape(() => openLinuxTun({ name: DEV })),
    notTun: errorShape(() => openLinuxTun({ name: 'lo' })),
  });
}

// ----------------------------------------------------------------- test side

const NS = `zt-tun-${process.pid}`;
const SELF = fileURLToPath(import.meta.url);

function ip(...args: string[]): { code: number; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** Why the kernel tests cannot run here, or null. */
function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for a network namespace)';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun (modprobe tun)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'no ip command (apt-get install iproute2)';
  return null;
}

/** A child process speaking JSON lines. */
class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly #events: Record<string, unknown>[] = [];
  readonly #waiters: (() => void)[] = [];
  stderr = '';
  exited: Promise<number | null>;

  constructor(args: string[], mode: string) {
    this.proc = spawn('ip', ['netns', 'exec', NS, ...args, process.execPath, '--import', 'tsx', SELF], {
      env: { ...process.env, ZT_TUN_E2E_CHILD: mode },
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    this.proc.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      this.#events.push(JSON.parse(line) as Record<string, unknown>);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  async next(event: string, timeoutMs = 30_000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#events.findIndex((e) => e['event'] === event);
      if (i >= 0) return this.#events.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`no "${event}" from the child in ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.#waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  command(cmd: string): void {
    this.proc.stdin.write(`${cmd}\n`);
  }
}

function ping(args: string[]): { code: number; out: string; ms: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('ip', ['netns', 'exec', NS, 'ping', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

function defineTests(): void {
  test('opening with a bad name, or without the addon, is ERR_TUN (no kernel needed)', () => {
    assert.throws(() => openLinuxTun({ name: 'bad name' }), (err: EdgeError) => err.code === 'ERR_TUN' && /invalid TUN device name "bad name"/.test(err.message));
    assert.throws(() => openLinuxTun({ name: 'zt0', addonPath: '/nonexistent/ztedge_tun.node' }),
      (err: EdgeError) => err.code === 'ERR_TUN' && /TUN addon .* cannot be loaded.*npm rebuild @ztedge\/tun/.test(err.message));
  });

  const skip = skipReason();
  describe('TUN in a network namespace', { skip: skip ?? false }, () => {
    let child: Child | undefined;

    before(() => {
      assert.equal(spawnSync('ping', ['-V']).status, 0, 'ping is needed: apt-get install iputils-ping');
      const add = ip('netns', 'add', NS);
      assert.equal(add.code, 0, `ip netns add ${NS}: ${add.out}`);
      ip('-n', NS, 'link', 'set', 'lo', 'up');
      // taskset pins the child to CPU 0, so RPS can hand its packets to CPU 1 (the full-queue test).
      child = new Child(['taskset', '-c', '0'], 'main');
    });

    after(async () => {
      if (child !== undefined && child.proc.exitCode === null) {
        child.proc.kill('SIGKILL');
        await child.exited;
      }
      ip('netns', 'del', NS);
    });

    test('the device is created, configured by netconf, and the kernel refuses a second open and a non-TUN name', async () => {
      const ready = await child!.next('ready');
      assert.equal(ready['name'], DEV);
      assert.equal(ready['busy']?.code, 'ERR_TUN');
      assert.match(ready['busy'].message, /in use by another TUN.*EBUSY/);
      assert.equal(ready['notTun']?.code, 'ERR_TUN');
      assert.match(ready['notTun'].message, /"lo": an interface of that name exists and is not a TUN device.*EINVAL/);
      const link = ip('-n', NS, 'link', 'show', 'dev', DEV).out;
      assert.match(link, new RegExp(`mtu ${MTU}\\b`));
      assert.match(link, /[<,]UP[,>]/);
      const addrs = ip('-n', NS, 'addr', 'show', 'dev', DEV).out;
      assert.match(addrs, /inet 100\.64\.0\.1\/10 /);
      assert.match(addrs, /inet6 fd00:7a::1\/64 /);
      assert.match(ip('-n', NS, 'route', 'show', 'dev', DEV).out, /^198\.18\.0\.0\/24 /m);
      assert.match(ip('-n', NS, '-6', 'route', 'show', 'dev', DEV).out, /^fd00:7b::\/48 /m);
    });

    test('ping through the TUN is answered by JavaScript (connected and routed destinations)', async () => {
      for (const dst of ['100.64.0.2', '198.18.0.7']) {
        const r = ping(['-c', '3', '-W', '1', dst]);
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /3 packets transmitted, 3 received/);
      }
      const stats = await (child!.command('stats'), child!.next('stats'));
      assert.equal(stats['echoes'], 6);
      assert.ok(stats['counters'].rxPackets >= 6);
      assert.equal(stats['counters'].txPackets, 6);
      assert.equal(stats['counters'].txErrors, 0);
    });

    test('flood ping: round trips through the JavaScript reader and writer (rate reported, not timed)', async (t) => {
      const before = await (child!.command('stats'), child!.next('stats'));
      const count = 20_000;
      const r = ping(['-f', '-q', '-c', String(count), '-W', '1', '100.64.0.2']);
      const after = await (child!.command('stats'), child!.next('stats'));
      const received = Number(/(\d+) received/.exec(r.out)?.[1] ?? 0);
      const echoes = after['echoes'] - before['echoes'];
      t.diagnostic(`ping -f -c ${count}: ${received} replies in ${r.ms.toFixed(0)} ms = ${Math.round(echoes / (r.ms / 1000))} round trips/s (one read + one write each)`);
      assert.ok(received >= count * 0.9, r.out);
      assert.ok(echoes >= received, `the child answered ${echoes}`);
    });

    test('writing into a full kernel queue returns false and is counted, never thrown; close inside the handler', async (t) => {
      if (availableParallelism() < 2) {
        t.skip('needs two CPUs: the queue fills only while RPS holds packets on another CPU');
        return;
      }
      child!.command('full');
      const full = await child!.next('full');
      assert.equal(full['error'], undefined, full['error']);
      t.diagnostic(`50,000 writes: ${full['accepted']} accepted, ${full['refused']} refused (EAGAIN)`);
      assert.ok(full['refused'] > 0, 'some writes met a full queue');
      assert.equal(full['counters'].txDropped, full['refused']);
      assert.equal(full['counters'].txPackets, full['accepted']);
      assert.equal(full['counters'].txErrors, 0);
      assert.equal(full['handled'], 1, 'closing inside the handler stops delivery at once');
      assert.equal(full['closedInHandler'], true);
      assert.equal(full['undoLeft'], 0, 'undo after the device vanished counts its address as removed');
      assert.notEqual(ip('-n', NS, 'link', 'show', FULL_DEV).code, 0, 'the second device is gone after close');
    });

    test('without CAP_NET_ADMIN, opening is ERR_TUN naming the capability', async (t) => {
      if (spawnSync('setpriv', ['--version']).status !== 0) {
        t.skip('no setpriv (util-linux)');
        return;
      }
      const unprivileged = new Child(['setpriv', '--bounding-set', '-net_admin', '--inh-caps', '-net_admin'], 'eperm');
      const r = await unprivileged.next('eperm');
      assert.equal(await unprivileged.exited, 0, unprivileged.stderr);
      assert.equal(r['error']?.code, 'ERR_TUN');
      assert.match(r['error'].message, /permission denied: creating a TUN device needs CAP_NET_ADMIN.*EPERM/);
    });

    test('a device deleted under the reader reports ERR_TUN through onError once, and the process can end', async () => {
      const deleted = new Child([], 'deleted');
      const r = await deleted.next('deleted');
      assert.equal(await deleted.exited, 0, deleted.stderr);
      assert.equal(r['code'], 'ERR_TUN');
      assert.match(r['message'], /reading TUN device ztedel0 failed: EBADFD? \(was the device deleted\?\)/);
      assert.equal(r['rxErrors'], 1);
      assert.equal(r['write'], false, 'writes to the dead fd are refused, not thrown');
    });

    test('after SIGTERM the child removed what it added; after close the device is gone and the child exits', async () => {
      child!.proc.kill('SIGTERM');
      const undone = await child!.next('undone');
      assert.deepEqual(undone, { event: 'undone', left: 0 });
      assert.equal(ip('-n', NS, 'link', 'show', 'dev', DEV).code, 0, 'the device is still open');
      const addrs = ip('-n', NS, 'addr', 'show', 'dev', DEV).out;
      assert.doesNotMatch(addrs, /100\.64\.0\.1|fd00:7a::1/);
      assert.equal(ip('-n', NS, 'route', 'show', 'dev', DEV).out.trim(), '');
      assert.doesNotMatch(ip('-n', NS, '-6', 'route', 'show', 'dev', DEV).out, /fd00:7b/);
      child!.command('close');
      // The child ends on its own: a poll handle left open by the addon would keep it alive.
      assert.equal(await child!.exited, 0, child!.stderr);
      assert.notEqual(ip('-n', NS, 'link', 'show', 'dev', DEV).code, 0, 'the device went away with its fd');
    });
  });
}

const childMode = process.env['ZT_TUN_E2E_CHILD'];
if (childMode !== undefined) await runChild(childMode);
else defineTests();
