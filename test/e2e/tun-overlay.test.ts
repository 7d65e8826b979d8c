/**
 * tun mode end to end, with the Linux kernel as the device's TCP/UDP stack:
 * a controller, a hosting router and an edge router run as real processes
 * on 127.0.0.1; the edge router's TUN is moved into a client namespace the
 * test creates (`tunnel.tun.netns`), where curl, dig, ping and mosquitto
 * clients reach services by name through the router's DNS and stack.
 *
 *   client netns: curl web.ztedge.test ─▶ zt TUN ══▶ edge router ─link─▶ host router ─▶ 127.0.0.1 servers
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import dnsPacket from 'dns-packet';
import { Overlay, freePort } from '../helpers/overlay.js';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Netns, cleanupNetns, ifName, netnsSkipReason, vethPair } from '../helpers/netns.js';

/** A deterministic body of `n` bytes (a 1 MiB random block repeated) and its sha256, for downloads. */
const BLOCK = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 2654435761) >>> 24));
function blobSha(n: number): string {
  const h = createHash('sha256');
  for (let left = n; left > 0; left -= BLOCK.length) h.update(left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left));
  return h.digest('hex');
}

const skip = netnsSkipReason();
let o: Overlay;
let client: Netns;
/** A namespace with no ztedge software behind the client namespace, which acts as its subnet gateway. */
let sensor: Netns;
let sensorVeth: { a: string; b: string };
let iperf: ChildProcess | undefined;
let iperfPort: number;
let http: Server;
let httpPort: number;
let upstream: DgramSocket;
let udpEcho: DgramSocket;
let mosquitto: ChildProcess | undefined;
let mqttPort: number;

/** A service with intercept.v1 + host.v1, bound by `host`, dialable by `edge`. */
async function tunService(name: string, intercept: Record<string, unknown>, hostData: Record<string, unknown>, dial = true): Promise<void> {
  const icfg = await o.mgmt<{ id: string }>('POST', '/configs', { name: `${name}-intercept`, configTypeId: 'intercept.v1', data: intercept });
  const hcfg = await o.mgmt<{ id: string }>('POST', '/configs', { name: `${name}-host`, configTypeId: 'host.v1', data: hostData });
  await o.mgmt('POST', '/services', { name, configs: [icfg.id, hcfg.id] });
  await o.mgmt('POST', '/service-policies', { name: `${name}-bind`, type: 'Bind', semantic: 'AnyOf', identityRoles: ['@host'], serviceRoles: [`@${name}`] });
  await o.mgmt('POST', '/service-edge-router-policies', { name: `${name}-routers`, semantic: 'AnyOf', edgeRouterRoles: ['#all'], serviceRoles: [`@${name}`] });
  if (dial) await o.allowDial(name, 'edge');
}

before(async () => {
  if (skip !== false) return;
  http = createServer((req, res) => {
    // POST: the sha256 of the body; GET /blob?n=BYTES: a deterministic body; else a greeting.
    if (req.method === 'POST') {
      const h = createHash('sha256');
      req.on('data', (c: Buffer) => h.update(c));
      req.on('end', () => res.end(h.digest('hex')));
      return;
    }
    const m = /^\/blob\?n=(\d+)$/.exec(req.url ?? '');
    if (m !== null) {
      let left = Number(m[1]);
      res.setHeader('content-length', left);
      const more = (): void => {
        while (left > 0) {
          const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
          left -= chunk.length;
          if (!res.write(chunk)) { res.once('drain', more); return; }
        }
        res.end();
      };
      more();
      return;
    }
    res.end(`hello ${req.url} from the hosted web service\n`);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  httpPort = (http.address() as { port: number }).port;
  // An upstream resolver on loopback: answers every A query with 192.0.2.77.
  upstream = createSocket('udp4');
  upstream.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const answers = (q.questions ?? []).filter((x) => x.type === 'A').map((x) => ({ type: 'A' as const, name: x.name, ttl: 30, data: '192.0.2.77' }));
    upstream.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers }), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', r));
  udpEcho = createSocket('udp4');
  udpEcho.on('message', (msg, rinfo) => udpEcho.send(Buffer.concat([Buffer.from('echo:'), msg]), rinfo.port, rinfo.address));
  await new Promise<void>((r) => udpEcho.bind(0, '127.0.0.1', r));
  mqttPort = await freePort();
  mosquitto = spawn('mosquitto', ['-p', String(mqttPort)], { stdio: 'ignore' });
  iperfPort = await freePort();
  iperf = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(iperfPort)], { stdio: 'ignore' });

  o = await Overlay.start();
  await o.addRouter({ name: 'host', listen: true, logLevel: 'info' });
  client = Netns.create('cli');
  client.setResolvConf(['100.64.0.2']);
  // Subnet gateway: the sensor's only way out is the client namespace, which forwards into the TUN.
  sensor = Netns.create('sen');
  sensorVeth = vethPair(client, '192.168.77.1/24', sensor, '192.168.77.2/24');
  client.execOk(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  sensor.execOk(['ip', 'route', 'add', 'default', 'via', '192.168.77.1']);
  sensor.setResolvConf(['100.64.0.2']);
  const up = upstream.address();
  await o.addRouter({
    name: 'edge', links: ['host'], logLevel: 'info',
    extraYaml: ['tunnel:', '  mode: tun', '  tun:', `    name: ${ifName('zt')}`, `    netns: ${client.name}`, `    upstream: [127.0.0.1:${up.port}]`].join('\n'),
  });
  await tunService('web', { protocols: ['tcp'], addresses: ['web.ztedge.test', '10.77.0.0/24'], portRanges: [{ low: 80, high: 80 }] }, { protocol: 'tcp', address: '127.0.0.1', port: httpPort });
  await tunService('mqtt', { protocols: ['tcp'], addresses: ['*.plant.test'], portRanges: [{ low: 1883, high: 1883 }] }, { protocol: 'tcp', address: '127.0.0.1', port: mqttPort });
  await tunService('iperf', { protocols: ['tcp'], addresses: ['iperf.ztedge.test'], portRanges: [{ low: 5201, high: 5201 }] }, { protocol: 'tcp', address: '127.0.0.1', port: iperfPort });
  await tunService('udpecho', { protocols: ['udp'], addresses: ['echo.ztedge.test'], portRanges: [{ low: 7, high: 7 }] }, { protocol: 'udp', address: '127.0.0.1', port: udpEcho.address().port });
  const closed = await freePort();
  await tunService('closed', { protocols: ['tcp'], addresses: ['closed.ztedge.test'], portRanges: [{ low: 80, high: 80 }] }, { protocol: 'tcp', address: '127.0.0.1', port: closed });
  await tunService('secret', { protocols: ['tcp'], addresses: ['secret.ztedge.test'], portRanges: [{ low: 80, high: 80 }] }, { protocol: 'tcp', address: '127.0.0.1', port: httpPort }, false);
  await o.waitLog('edge', (l) => l.msg === 'DNS intercepts updated' && Number(l.names) >= 5, 15_000);
});

after(async () => {
  if (skip !== false) return;
  await o?.killRouter('edge', 'SIGTERM').catch(() => undefined);
  for (const name of o?.routers.keys() ?? []) await o.killRouter(name);
  await o?.ctrl.stop().catch(() => undefined);
  mosquitto?.kill();
  iperf?.kill();
  http?.close();
  upstream?.close();
  udpEcho?.close();
  await cleanupNetns();
});

test('curl reaches a service by name through the TUN', { skip }, async () => {
  const r = await client.run(['curl', '-sS', '--max-time', '10', 'http://web.ztedge.test/a?b=1'], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hello /a?b=1 from the hosted web service\n');
});

test('curl reaches a service by an intercepted CIDR address', { skip }, async () => {
  const r = await client.run(['curl', '-sS', '--max-time', '10', 'http://10.77.0.9/cidr'], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /hello \/cidr/);
});

test('dig: intercepted, wildcard, forwarded and not-dialable names', { skip }, async () => {
  const a = await client.run(['dig', '+short', '+time=2', '+tries=1', '@100.64.0.2', 'web.ztedge.test']);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout.trim(), /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+$/);
  const again = await client.run(['dig', '+short', '@100.64.0.2', 'WEB.ztedge.test']);
  assert.equal(again.stdout.trim(), a.stdout.trim(), 'the same name keeps its address');
  const w = await client.run(['dig', '+short', '@100.64.0.2', 'pump7.plant.test']);
  assert.match(w.stdout.trim(), /^100\./);
  assert.notEqual(w.stdout.trim(), a.stdout.trim());
  const f = await client.run(['dig', '+short', '@100.64.0.2', 'elsewhere.example']);
  assert.equal(f.stdout.trim(), '192.0.2.77', 'forwarded to the upstream');
  const tcp = await client.run(['dig', '+short', '+tcp', '@100.64.0.2', 'web.ztedge.test']);
  assert.equal(tcp.stdout.trim(), a.stdout.trim(), 'DNS over TCP to the in-stack address');
  const tcpFwd = await client.run(['dig', '+short', '+tcp', '@100.64.0.2', 'elsewhere.example']);
  assert.equal(tcpFwd.stdout.trim(), '192.0.2.77', 'forwarded over TCP');
  // No Dial policy: not intercepted, so it goes upstream like any other name.
  const s = await client.run(['dig', '+short', '@100.64.0.2', 'secret.ztedge.test']);
  assert.equal(s.stdout.trim(), '192.0.2.77');
});

test('UDP: datagrams to a service name come back with their boundaries', { skip }, async () => {
  const script = join(o.dir, 'udp.cjs');
  writeFileSync(script, `
const dgram = require('node:dgram'); const dns = require('node:dns');
dns.lookup('echo.ztedge.test', 4, (err, ip) => {
  if (err) { console.log('lookup failed', err.message); process.exit(1); }
  const s = dgram.createSocket('udp4'); const got = [];
  const timer = setTimeout(() => { console.log(JSON.stringify(got)); process.exit(1); }, 10000);
  s.on('message', (m) => { got.push(m.toString()); if (got.length === 3) { clearTimeout(timer); console.log(JSON.stringify(got.sort())); process.exit(0); } });
  for (const p of ['a', 'bb', 'x'.repeat(1200)]) s.send(p, 7, ip);
});
`);
  const r = await client.run([process.execPath, script], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), ['echo:a', 'echo:bb', `echo:${'x'.repeat(1200)}`]);
});

test('mosquitto_pub/sub through a wildcard name', { skip }, async () => {
  const sub = client.spawn(['mosquitto_sub', '-h', 'broker.plant.test', '-p', '1883', '-t', 'plant/temp', '-C', '1', '-W', '15']);
  // Retry publishing until the subscriber is in (its connect also goes through the overlay).
  let got = '';
  for (let i = 0; i < 20 && got === ''; i++) {
    const p = await client.run(['mosquitto_pub', '-h', 'broker.plant.test', '-p', '1883', '-t', 'plant/temp', '-m', '21.5'], { timeoutMs: 10_000 });
    assert.equal(p.code, 0, p.stderr);
    got = await Promise.race([sub.waitFor(/21\.5/, 500).then(() => '21.5').catch(() => ''), new Promise<string>((r) => setTimeout(() => r(''), 600))]);
  }
  assert.equal(got, '21.5');
  await sub.stop();
});

test('a dial the hosting router refuses is seen as RST (connection refused)', { skip }, async () => {
  const r = await client.run(['curl', '-sS', '--max-time', '10', 'http://closed.ztedge.test/'], { timeoutMs: 15_000 });
  assert.equal(r.code, 7, `curl exit 7 = failed to connect; got ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /Connection refused|Couldn't connect/i);
});

test('ping of an intercepted address is answered by the router', { skip }, async () => {
  const r = await client.run(['ping', '-c', '2', '-W', '2', '10.77.0.9'], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /2 received/);
});

test('iperf3: 200 MB upload through the TUN arrives whole', { skip }, async () => {
  const r = await client.run(['iperf3', '-c', 'iperf.ztedge.test', '-p', '5201', '-n', '200M', '-J'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout.slice(-500) + r.stderr);
  const j = JSON.parse(r.stdout) as { end: { sum_sent: { bytes: number }; sum_received: { bytes: number; bits_per_second: number } } };
  assert.equal(j.end.sum_sent.bytes, 200 * 1024 * 1024);
  // iperf3's server stops counting when the client's end-of-test arrives on the control connection, so
  // bytes still in the buffers between them (TCP windows, circuit credit) are not in its sum. Byte-exact
  // delivery is what the sha256 tests check.
  assert.ok(j.end.sum_received.bytes > j.end.sum_sent.bytes - 8 * 1024 * 1024, `received ${j.end.sum_received.bytes} of ${j.end.sum_sent.bytes}`);
  console.log(`# iperf3 200 MiB through tun mode: ${(j.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
});

test('download and upload bodies keep their sha256', { skip }, async () => {
  const n = 32 * 1024 * 1024;
  const down = await client.run(['sh', '-c', `curl -sS --max-time 60 http://web.ztedge.test/blob?n=${n} | sha256sum`], { timeoutMs: 90_000 });
  assert.equal(down.code, 0, down.stderr);
  assert.equal(down.stdout.split(' ')[0], blobSha(n));
  const file = join(o.dir, 'up.bin');
  writeFileSync(file, BLOCK.subarray(0, 5 * 1024 * 1024 + 17));
  const up = await client.run(['curl', '-sS', '--max-time', '60', '--data-binary', `@${file}`, 'http://web.ztedge.test/up'], { timeoutMs: 90_000 });
  assert.equal(up.code, 0, up.stderr);
  assert.equal(up.stdout, createHash('sha256').update(BLOCK.subarray(0, 5 * 1024 * 1024 + 17)).digest('hex'));
});

test('1,000 concurrent connections through the TUN, each answered', { skip }, async () => {
  const script = join(o.dir, 'many.cjs');
  writeFileSync(script, `
const net = require('node:net');
const N = 1000; let open = 0, done = 0, failed = 0; const socks = [];
const timer = setTimeout(() => { console.log(JSON.stringify({ open, done, failed, timeout: true })); process.exit(1); }, 60000);
for (let i = 0; i < N; i++) {
  const s = net.connect(80, '10.77.0.' + (1 + (i % 250)));
  let body = '';
  s.on('connect', () => { if (++open === N) for (const t of socks) t.write('GET /c HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'); });
  s.on('data', (d) => { body += d; });
  s.on('end', () => { if (body.includes('hello /c')) done++; else failed++; finish(); });
  s.on('error', () => { failed++; finish(); });
  socks.push(s);
}
function finish() { if (done + failed === N) { clearTimeout(timer); console.log(JSON.stringify({ open, done, failed })); process.exit(failed === 0 ? 0 : 1); } }
`);
  const r = await client.run([process.execPath, script], { timeoutMs: 90_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { open: 1000, done: 1000, failed: 0 });
});

test('subnet gateway: a sensor namespace with no ztedge software reaches services by name', { skip }, async () => {
  const r = await sensor.run(['curl', '-sS', '--max-time', '10', 'http://web.ztedge.test/from-sensor'], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /hello \/from-sensor/);
  const d = await sensor.run(['dig', '+short', '@100.64.0.2', 'pump1.plant.test']);
  assert.match(d.stdout.trim(), /^100\./);
});

test('2 % loss and reordering on the gateway link (tc netem, or nft + htb where netem is missing): bodies still arrive intact', { skip }, async () => {
  const links = [impairLink(client, sensorVeth.a), impairLink(sensor, sensorVeth.b)];
  try {
    const n = 8 * 1024 * 1024;
    const down = await sensor.run(['sh', '-c', `curl -sS --max-time 90 http://web.ztedge.test/blob?n=${n} | sha256sum`], { timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout.split(' ')[0], blobSha(n), 'download intact');
    const file = join(o.dir, 'lossy.bin');
    writeFileSync(file, BLOCK.subarray(0, 3 * 1024 * 1024 + 5));
    const up = await sensor.run(['curl', '-sS', '--max-time', '90', '--data-binary', `@${file}`, 'http://web.ztedge.test/up'], { timeoutMs: 120_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.stdout, createHash('sha256').update(BLOCK.subarray(0, 3 * 1024 * 1024 + 5)).digest('hex'), 'upload intact');
    assert.ok(links[0]!.impaired() > 50 && links[1]!.impaired() > 50, `packets dropped or delayed: ${links.map((l) => l.impaired()).join(', ')}`);
  } finally {
    for (const l of links) l.undo();
  }
});

/**
 * 2 % loss and reordering on `dev`'s egress. With netem: `delay 2ms 1ms loss 2% reorder 10% 50%`. This
 * machine's kernel has no netem (CONFIG_NET_SCH_NETEM is not set), so the fallback does the same with
 * what is built in: nftables drops 2 % of the packets at random (numgen), and sends another 10 % into a
 * slow HTB lane (5 Mbit/s) that the other packets overtake. Returns the undo.
 */
function impairLink(ns: Netns, dev: string): { undo: () => void; impaired: () => number } {
  const netem = ns.exec(['tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', '2ms', '1ms', 'loss', '2%', 'reorder', '10%', '50%']);
  if (netem.code === 0) {
    return {
      undo: () => void ns.exec(['tc', 'qdisc', 'del', 'dev', dev, 'root']),
      impaired: () => Number(/dropped (\d+)/.exec(ns.exec(['tc', '-s', 'qdisc', 'show', 'dev', dev]).stdout)?.[1] ?? 0),
    };
  }
  ns.execOk(['tc', 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '1']);
  ns.execOk(['tc', 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '10gbit']);
  ns.execOk(['tc', 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '5mbit', 'ceil', '5mbit', 'burst', '1600', 'cburst', '1600']);
  const table = `impair_${dev}`;
  ns.execOk(['nft', 'add', 'table', 'inet', table]);
  ns.execOk(['nft', 'add', 'chain', 'inet', table, 'out', '{ type filter hook postrouting priority 0; }']);
  ns.execOk(['nft', 'add', 'rule', 'inet', table, 'out', 'oifname', dev, 'numgen', 'random', 'mod', '100', '<', '2', 'counter', 'drop']);
  ns.execOk(['nft', 'add', 'rule', 'inet', table, 'out', 'oifname', dev, 'numgen', 'random', 'mod', '100', '<', '10', 'counter', 'meta', 'priority', 'set', '1:2']);
  return {
    undo: () => {
      ns.exec(['nft', 'delete', 'table', 'inet', table]);
      ns.exec(['tc', 'qdisc', 'del', 'dev', dev, 'root']);
    },
    // Packets dropped plus packets sent down the slow lane.
    impaired: () => [...ns.exec(['nft', 'list', 'table', 'inet', table]).stdout.matchAll(/counter packets (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0),
  };
}

test('SIGTERM: the router removes its device from the namespace', { skip }, async () => {
  await o.killRouter('edge', 'SIGTERM');
  assert.equal(o.routers.get('edge')?.forcedKill, undefined, 'stopped within the grace period');
  const links = await client.run(['ip', '-o', 'link', 'show']);
  assert.doesNotMatch(links.stdout, new RegExp(ifName('zt')));
});
