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
import { Netns, cleanupNetns, ifName, netnsSkipReason } from '../helpers/netns.js';

const skip = netnsSkipReason();
let o: Overlay;
let client: Netns;
let http: Server;
let httpPort: number;
let upstream: DgramSocket;
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
  http = createServer((req, res) => res.end(`hello ${req.url} from the hosted web service\n`));
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
  mqttPort = await freePort();
  mosquitto = spawn('mosquitto', ['-p', String(mqttPort)], { stdio: 'ignore' });

  o = await Overlay.start();
  await o.addRouter({ name: 'host', listen: true, logLevel: 'info' });
  client = Netns.create('cli');
  client.setResolvConf(['100.64.0.2']);
  const up = upstream.address();
  await o.addRouter({
    name: 'edge', links: ['host'], logLevel: 'info',
    extraYaml: ['tunnel:', '  mode: tun', '  tun:', `    name: ${ifName('zt')}`, `    netns: ${client.name}`, `    upstream: [127.0.0.1:${up.port}]`].join('\n'),
  });
  await tunService('web', { protocols: ['tcp'], addresses: ['web.ztedge.test', '10.77.0.0/24'], portRanges: [{ low: 80, high: 80 }] }, { protocol: 'tcp', address: '127.0.0.1', port: httpPort });
  await tunService('mqtt', { protocols: ['tcp'], addresses: ['*.plant.test'], portRanges: [{ low: 1883, high: 1883 }] }, { protocol: 'tcp', address: '127.0.0.1', port: mqttPort });
  const closed = await freePort();
  await tunService('closed', { protocols: ['tcp'], addresses: ['closed.ztedge.test'], portRanges: [{ low: 80, high: 80 }] }, { protocol: 'tcp', address: '127.0.0.1', port: closed });
  await tunService('secret', { protocols: ['tcp'], addresses: ['secret.ztedge.test'], portRanges: [{ low: 80, high: 80 }] }, { protocol: 'tcp', address: '127.0.0.1', port: httpPort }, false);
  await o.waitLog('edge', (l) => l.msg === 'DNS intercepts updated' && Number(l.names) >= 3, 15_000);
});

after(async () => {
  if (skip !== false) return;
  await o?.killRouter('edge', 'SIGTERM').catch(() => undefined);
  for (const name of o?.routers.keys() ?? []) await o.killRouter(name);
  await o?.ctrl.stop().catch(() => undefined);
  mosquitto?.kill();
  http?.close();
  upstream?.close();
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
  // No Dial policy: not intercepted, so it goes upstream like any other name.
  const s = await client.run(['dig', '+short', '@100.64.0.2', 'secret.ztedge.test']);
  assert.equal(s.stdout.trim(), '192.0.2.77');
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

test('SIGTERM: the router removes its device from the namespace', { skip }, async () => {
  await o.killRouter('edge', 'SIGTERM');
  assert.equal(o.routers.get('edge')?.forcedKill, undefined, 'stopped within the grace period');
  const links = await client.run(['ip', '-o', 'link', 'show']);
  assert.doesNotMatch(links.stdout, new RegExp(ifName('zt')));
});
