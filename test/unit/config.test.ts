/**
 * Router config (src/config): valid files load with defaults and absolute
 * paths and come back deep-frozen; every kind of bad file is ERR_CONFIG with a
 * message naming the file, the line, the key path, what was expected and what
 * was found, all problems at once; the commented example and docs/config.md
 * stay in step with the schema; and no input makes the loader throw anything
 * but ERR_CONFIG (fast-check).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { Ajv } from 'ajv';
import { stringify as toYaml } from 'yaml';
import type { TSchema } from '@sinclair/typebox';
import {
  LOG_LEVELS,
  RouterConfigSchema,
  TUNNEL_MODES,
  loadRouterConfig,
  parseRouterConfig,
  validateRouterConfig,
  type ConfigProblem,
  type LinkConfig,
  type RouterConfig,
  type TunnelMode,
} from '../../src/config/index.js';
import { isEdgeError } from '../../src/errors.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const EXAMPLE = join(ROOT, 'packaging', 'router.example.yml');
const DOCS = readFileSync(join(ROOT, 'docs', 'config.md'), 'utf8');

let dir: string;
let n = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-config-'));
  mkdirSync(join(dir, 'etc'));
});

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  // Leak check: no file handles or timers may outlive the suite.
  const open = (): string[] => process.getActiveResourcesInfo().filter((r) => /FileHandle|FSReq|Timeout|Immediate/.test(r));
  const deadline = Date.now() + 2000;
  let left = open();
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    left = open();
  }
  assert.deepEqual(left, []);
});

/** Writes `text` as a new file under DIR/etc and returns its path. */
function file(text: string | Buffer, name = `router-${n++}.yml`): string {
  const path = join(dir, 'etc', name);
  writeFileSync(path, text);
  return path;
}

/** Loads `text` and expects ERR_CONFIG; returns the message and problems. */
async function rejects(text: string, ...expected: (string | RegExp)[]): Promise<{ message: string; problems: ConfigProblem[]; path: string }> {
  const path = file(text);
  return rejectsAt(path, ...expected);
}

async function rejectsAt(path: string, ...expected: (string | RegExp)[]): Promise<{ message: string; problems: ConfigProblem[]; path: string }> {
  let caught: unknown;
  try {
    await loadRouterConfig(path);
  } catch (err) {
    caught = err;
  }
  assert.ok(isEdgeError(caught), `expected ERR_CONFIG, got ${String(caught)}`);
  assert.equal(caught.code, 'ERR_CONFIG');
  assert.ok(caught.message.includes(path), `the message names the file: ${caught.message}`);
  for (const e of expected) {
    if (typeof e === 'string') assert.ok(caught.message.includes(e), `message lacks ${JSON.stringify(e)}:\n${caught.message}`);
    else assert.match(caught.message, e);
  }
  const problems = (caught.details?.problems ?? []) as ConfigProblem[];
  return { message: caught.message, problems, path };
}

const DEFAULTS = {
  dataDir: 'ztedge-data',
  listeners: [],
  links: [],
  tunnel: {
    mode: 'none',
    proxy: [],
    tun: { name: 'zt0', dnsRange: '100.64.0.0/10', dnsListen: ['100.64.0.2:53'], upstream: [], mtu: 1500, offload: true, maxTcpFlows: 16384, maxUdpFlows: 4096, udpIdleSeconds: 60 },
  },
  link: { keepaliveMs: 15000, deadAfterMs: 45000, maxFrameBytes: 262144, reconnect: { initialMs: 500, maxMs: 30000 } },
  policy: { keepAfterExpiry: false },
  log: { level: 'info' },
} as const;

const FULL = `# every key set away from its default
identity: ../keys/edge1.json
dataDir: /var/lib/ztedge
listeners: [tls:0.0.0.0:3022, "tls:[::]:0"]
links:
  - tls:hub.example:3022
  - "tls:[2001:db8::1]:443"
tunnel:
  mode: proxy
  proxy:
    - { service: demo, listen: 127.0.0.1:18080 }
    - service: mqtt
      listen: "[::1]:1883"
      protocol: udp
  tun:
    name: ztgw0
    dnsRange: 10.99.0.0/16
    dnsListen: [10.99.0.2:53, 192.168.1.1:5353]
    upstream: [192.0.2.53:53, "[2001:db8::53]:53"]
server:
  cert: certs/server.pem
  key: /etc/ztedge/server.key
link:
  keepaliveMs: 1000
  deadAfterMs: 3000
  maxFrameBytes: 65536
  reconnect: { initialMs: 100, maxMs: 5000 }
log:
  level: debug
`;

describe('valid configs', () => {
  test('a minimal config gets every default, with paths made absolute against the file folder', async () => {
    const path = file('identity: ./edge1.json\n');
    const cfg = await loadRouterConfig(path);
    assert.deepEqual(cfg, {
      ...DEFAULTS,
      identity: join(dir, 'etc', 'edge1.json'),
      dataDir: join(dir, 'etc', 'ztedge-data'),
    });
    assert.equal('server' in cfg, false, 'server has no default');
  });

  test('a proxy entry is tcp unless it says udp', async () => {
    const cfg = await loadRouterConfig(file('identity: id.json\ntunnel:\n  proxy:\n    - { service: web, listen: 127.0.0.1:8080 }\n    - { service: dns, listen: 127.0.0.1:5353, protocol: udp }\n    - { service: ssh, listen: 127.0.0.1:2222, protocol: tcp }\n'));
    assert.deepEqual(cfg.tunnel.proxy.map((p) => p.protocol), ['tcp', 'udp', 'tcp']);
  });

  test('a full config keeps every value it sets', async () => {
    const cfg = await loadRouterConfig(file(FULL));
    assert.equal(cfg.identity, join(dir, 'keys', 'edge1.json'));
    assert.equal(cfg.dataDir, '/var/lib/ztedge');
    assert.deepEqual(cfg.listeners, ['tls:0.0.0.0:3022', 'tls:[::]:0']);
    assert.deepEqual(cfg.links, ['tls:hub.example:3022', 'tls:[2001:db8::1]:443']);
    assert.deepEqual(cfg.tunnel, {
      mode: 'proxy',
      proxy: [{ service: 'demo', listen: '127.0.0.1:18080', protocol: 'tcp' }, { service: 'mqtt', listen: '[::1]:1883', protocol: 'udp' }],
      tun: { name: 'ztgw0', dnsRange: '10.99.0.0/16', dnsListen: ['10.99.0.2:53', '192.168.1.1:5353'], upstream: ['192.0.2.53:53', '[2001:db8::53]:53'], mtu: 1500, offload: true, maxTcpFlows: 16384, maxUdpFlows: 4096, udpIdleSeconds: 60 },
    });
    assert.deepEqual(cfg.server, { cert: join(dir, 'etc', 'certs', 'server.pem'), key: '/etc/ztedge/server.key' });
    assert.deepEqual(cfg.link, { keepaliveMs: 1000, deadAfterMs: 3000, maxFrameBytes: 65536, reconnect: { initialMs: 100, maxMs: 5000 } });
    assert.equal(cfg.log.level, 'debug');
  });

  test('the router.yml contract of issue #5 and the tunnel.tun keys of issue #7 load as written', async () => {
    const fabric = await loadRouterConfig(file(`identity: ./edge1.json        # identity file written by \`ztedge enroll\`
dataDir: ./edge1-data         # policy cache and state
listeners: [tls:0.0.0.0:3022] # accept links from other routers (omit behind NAT)
links: [tls:hub.example:3022] # routers to dial; edge routers only dial out
tunnel:
  mode: proxy                 # none | proxy | tun
  proxy:                      # proxy mode: local ports for services this router may Dial
    - { service: demo, listen: 127.0.0.1:18080 }
`));
    assert.equal(fabric.tunnel.mode, 'proxy');
    assert.deepEqual(fabric.tunnel.proxy, [{ service: 'demo', listen: '127.0.0.1:18080', protocol: 'tcp' }]);
    assert.deepEqual(fabric.listeners, ['tls:0.0.0.0:3022']);
    assert.equal(fabric.dataDir, join(dir, 'etc', 'edge1-data'));

    const tun = await loadRouterConfig(file(`identity: id.json
tunnel:
  mode: tun
  tun:
    name: zt0                      # device name
    dnsRange: 100.64.0.0/10        # pool for intercepted hostnames
    dnsListen: [100.64.0.2:53]     # add a LAN address to serve clientless devices
    upstream: [192.0.2.53:53]      # resolvers for everything else; empty: REFUSED
`));
    assert.deepEqual(tun.tunnel.tun, { name: 'zt0', dnsRange: '100.64.0.0/10', dnsListen: ['100.64.0.2:53'], upstream: ['192.0.2.53:53'], mtu: 1500, offload: true, maxTcpFlows: 16384, maxUdpFlows: 4096, udpIdleSeconds: 60 });
  });

  test('a key with an empty value counts as absent, so its defaults apply', async () => {
    const cfg = await loadRouterConfig(file('identity: id.json\ntunnel:\n  # mode: proxy\nlink:\n  reconnect:\nlog:\n'));
    assert.deepEqual(cfg.tunnel, DEFAULTS.tunnel);
    assert.deepEqual(cfg.link, DEFAULTS.link);
    assert.deepEqual(cfg.log, DEFAULTS.log);
  });

  test('JSON is YAML: a JSON config loads too', async () => {
    const cfg = await loadRouterConfig(file(JSON.stringify({ identity: 'id.json', tunnel: { mode: 'tun' } })));
    assert.equal(cfg.tunnel.mode, 'tun');
  });

  test('port 0 is accepted for listeners only', async () => {
    const cfg = await loadRouterConfig(file('identity: id.json\nlisteners: [tls:127.0.0.1:0, tls:127.0.0.1:0]\n'));
    assert.deepEqual(cfg.listeners, ['tls:127.0.0.1:0', 'tls:127.0.0.1:0'], 'two port-0 listeners do not clash');
    await rejects('identity: id.json\nlinks: [tls:hub:0]\n', 'links[0]: expected tls:HOST:PORT, found "tls:hub:0": port 0 is out of range 1–65535');
  });

  test('the result is deep-frozen, and two loads share nothing', async () => {
    const path = file('identity: id.json\ntunnel: { mode: proxy, proxy: [{ service: a, listen: "127.0.0.1:1" }] }\n');
    const a = await loadRouterConfig(path);
    const frozen: unknown[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'object' && v !== null) {
        frozen.push(v);
        Object.values(v).forEach(walk);
      }
    };
    walk(a);
    assert.ok(frozen.length >= 10);
    for (const obj of frozen) assert.ok(Object.isFrozen(obj), `not frozen: ${JSON.stringify(obj)}`);
    assert.throws(() => { (a as { identity: string }).identity = 'x'; }, TypeError);
    assert.throws(() => { (a.tunnel.tun.dnsListen as string[]).push('x'); }, TypeError);
    assert.throws(() => { (a.link.reconnect as { maxMs: number }).maxMs = 1; }, TypeError);
    const b = await loadRouterConfig(path);
    assert.deepEqual(a, b);
    assert.notEqual(a.tunnel.tun, b.tunnel.tun);
    assert.notEqual(a.tunnel.tun.dnsListen, b.tunnel.tun.dnsListen);
    assert.equal(Object.isFrozen(RouterConfigSchema.properties.link), false, 'freezing the result must not freeze the schema defaults');
  });

  test('validateRouterConfig takes parsed data, resolves against baseDir and leaves its input alone', () => {
    const input = { identity: 'id.json', tunnel: { mode: 'tun' } };
    const before = structuredClone(input);
    const cfg = validateRouterConfig(input, { baseDir: '/etc/ztedge' });
    assert.equal(cfg.identity, '/etc/ztedge/id.json');
    assert.equal(cfg.dataDir, '/etc/ztedge/ztedge-data');
    assert.equal(cfg.tunnel.tun.name, 'zt0');
    assert.deepEqual(input, before);
    assert.throws(() => validateRouterConfig({}, { source: 'REST body' }), (err: unknown) => {
      assert.ok(isEdgeError(err));
      assert.equal(err.code, 'ERR_CONFIG');
      assert.match(err.message, /^REST body: identity: required key/);
      return true;
    });
  });

  test('parseRouterConfig takes text and resolves against the folder of its source', () => {
    const cfg = parseRouterConfig('identity: id.json\n', '/srv/gw/router.yml');
    assert.equal(cfg.identity, '/srv/gw/id.json');
  });

  test('the resolved types: defaulted keys are present, server is optional, slices are typed', async () => {
    const cfg = await loadRouterConfig(file('identity: id.json\n'));
    // Compile-time checks: these lines only type-check if the types are right.
    const dataDir: string = cfg.dataDir;
    const mode: TunnelMode = cfg.tunnel.mode;
    const level: (typeof LOG_LEVELS)[number] = cfg.log.level;
    const link: LinkConfig = cfg.link;
    const keepalive: number = link.keepaliveMs;
    const serverKey: string | undefined = cfg.server?.key;
    const modes: readonly TunnelMode[] = TUNNEL_MODES;
    assert.equal(typeof dataDir + mode + level + keepalive + String(serverKey) + String(modes), 'string' + 'none' + 'info' + '15000' + 'undefined' + 'none,proxy,tun');
    // Type errors expected by tsc; never run.
    const mistakes = (c: RouterConfig): unknown[] => [
      // @ts-expect-error server may be absent
      c.server.cert,
      // @ts-expect-error the config is read-only
      (c.log = { level: 'debug' }),
      // @ts-expect-error slices are read-only too
      c.listeners.push('tls:a:1'),
    ];
    void mistakes;
  });
});

describe('each bad input is ERR_CONFIG with a precise message', () => {
  test('missing identity', async () => {
    const { message, problems } = await rejects('dataDir: ./d\n', 'identity: required key (identity file written by `ztedge enroll`');
    assert.match(message, /expected a non-empty string, found nothing$/);
    assert.equal(problems.length, 1);
    assert.deepEqual(problems[0]!.path, ['identity']);
    await rejects('identity:\n', 'identity: required key', 'found an empty value');
    await rejects('identity: ""\n', /:1:1: identity: expected a non-empty string, found ""/);
  });

  test('bad mode, with the closest mode suggested', async () => {
    const { path } = await rejects('identity: id.json\ntunnel:\n  mode: prox\n');
    await rejectsAt(path, `${path}:3:3: tunnel.mode: expected one of "none", "proxy" or "tun", found "prox"; did you mean "proxy"?`);
    await rejects('identity: id.json\ntunnel: { mode: 3 }\n', 'tunnel.mode: expected one of "none", "proxy" or "tun", found the number 3');
    await rejects('identity: id.json\nlog: { level: verbose }\n', 'log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace" or "silent", found "verbose"');
  });

  test('bad addresses say what is wrong with them', async () => {
    const cases: [string, string][] = [
      ['links: [hub.example:3022]', 'links[0]: expected tls:HOST:PORT, found "hub.example:3022": the transport is missing: write tls:hub.example:3022'],
      ['links: ["tls://hub:3022"]', 'links[0]: expected tls:HOST:PORT, found "tls://hub:3022": write tls:HOST:PORT without "//", for example tls:hub:3022'],
      ['links: [tcp:hub:3022]', 'transport "tcp" is not supported; links use tls:'],
      ['links: [tls:hub]', 'links[0]: expected tls:HOST:PORT, found "tls:hub": the port is missing: write HOST:PORT'],
      ['links: [tls:0.0.0.0:3022]', '0.0.0.0 means "every address" and can only be listened on'],
      ['links: ["tls:[::]:3022"]', '[::] means "every address"'],
      ['listeners: ["tls:::1:3022"]', 'an IPv6 address goes in brackets: [::1]:3022'],
      ['listeners: ["tls:[::1:3022"]', 'the "[" before the IPv6 address has no closing "]"'],
      ['listeners: ["tls:[fe80::zz]:1"]', '"fe80::zz" in brackets is not an IPv6 address'],
      ['listeners: [tls:300.1.1.1:1]', '"300.1.1.1" is not a valid IPv4 address'],
      ['listeners: [tls:bad_host!:1]', 'listeners[0]: expected tls:HOST:PORT, found "tls:bad_host!:1": "bad_host!" is not a valid host name or IP address'],
      ['listeners: [tls::1]', 'the host is missing'],
      ['listeners: [tls:h:http]', 'port "http" is not a number'],
      ['tunnel: { proxy: [{ service: s, listen: "8080" }] }', 'tunnel.proxy[0].listen: expected HOST:PORT, found "8080": the port is missing: write HOST:PORT'],
      ['tunnel: { tun: { dnsListen: [":53"] } }', 'tunnel.tun.dnsListen[0]: expected HOST:PORT, found ":53": the host is missing'],
      ['tunnel: { tun: { upstream: [dns.example:53] } }', 'tunnel.tun.upstream[0]: expected IP:PORT, found "dns.example:53": "dns.example" is a name; an IP address is needed here'],
      ['tunnel: { tun: { upstream: [0.0.0.0:53] } }', 'tunnel.tun.upstream[0]: expected IP:PORT, found "0.0.0.0:53": 0.0.0.0 means "every address"'],
    ];
    for (const [yaml, expected] of cases) await rejects(`identity: id.json\n${yaml}\n`, expected);
  });

  test('ports out of range', async () => {
    await rejects('identity: id.json\nlisteners: [tls:0.0.0.0:65536]\n', 'listeners[0]: expected tls:HOST:PORT, found "tls:0.0.0.0:65536": port 65536 is out of range 0–65535');
    await rejects('identity: id.json\ntunnel: { proxy: [{ service: s, listen: "127.0.0.1:70000" }] }\n', 'tunnel.proxy[0].listen: expected HOST:PORT, found "127.0.0.1:70000": port 70000 is out of range 1–65535');
    await rejects('identity: id.json\ntunnel: { proxy: [{ service: s, listen: "127.0.0.1:0" }] }\n', 'port 0 is out of range 1–65535');
    await rejects('identity: id.json\ntunnel: { tun: { dnsListen: ["[::1]:999999"] } }\n', 'port "999999" is not a number');
  });

  test('bad CIDR', async () => {
    const cases: [string, string][] = [
      ['100.64.0.1/10', 'host bits are set; the network is 100.64.0.0/10'],
      ['100.64.0.0/33', 'prefix length "33" is not a number from 0 to 32'],
      ['100.64.0.0', 'the prefix length is missing: write 100.64.0.0/LEN'],
      ['256.0.0.0/8', '"256.0.0.0" is not a valid IPv4 address'],
      ['fd00::/8', 'an IPv6 network is not supported here'],
      ['pool', 'expected A.B.C.D/LEN'],
    ];
    for (const [cidr, why] of cases) {
      await rejects(`identity: id.json\ntunnel:\n  tun:\n    dnsRange: "${cidr}"\n`,
        `:4:5: tunnel.tun.dnsRange: expected an IPv4 network A.B.C.D/LEN, found ${JSON.stringify(cidr)}: ${why}`);
    }
  });

  test('a proxy entry\'s protocol is tcp or udp', async () => {
    await rejects('identity: id.json\ntunnel: { proxy: [{ service: s, listen: "127.0.0.1:53", protocol: sctp }] }\n',
      'tunnel.proxy[0].protocol: expected one of "tcp" or "udp", found "sctp"');
    await rejects('identity: id.json\ntunnel: { proxy: [{ service: s, listen: "127.0.0.1:53", protocol: UDP }] }\n',
      'tunnel.proxy[0].protocol: expected one of "tcp" or "udp", found "UDP"');
  });

  test('proxy mode without proxy entries', async () => {
    const expected = 'tunnel.proxy: tunnel.mode is "proxy", so at least one entry is needed';
    await rejects('identity: id.json\ntunnel: { mode: proxy }\n', expected);
    await rejects('identity: id.json\ntunnel: { mode: proxy, proxy: [] }\n', expected);
  });

  test('proxy, listener and DNS addresses must not clash', async () => {
    await rejects(`identity: id.json
tunnel:
  proxy:
    - { service: a, listen: 127.0.0.1:8080 }
    - { service: b, listen: 127.0.0.1:8080 }
`, ':5:21: tunnel.proxy[1].listen: expected an address no other tcp proxy port uses, found "127.0.0.1:8080", which tunnel.proxy[0].listen uses already');
    await rejects(`identity: id.json
tunnel:
  proxy:
    - { service: a, listen: 0.0.0.0:8080 }
    - { service: b, listen: 127.0.0.1:8080 }
    - { service: c, listen: 127.0.0.1:8081 }
`, 'tunnel.proxy[1].listen: expected an address no other tcp proxy port uses, found "127.0.0.1:8080", which clashes with tunnel.proxy[0].listen: "0.0.0.0:8080" takes port 8080 on every address');
    await rejects(`identity: id.json
tunnel:
  proxy:
    - { service: a, listen: 127.0.0.1:53, protocol: udp }
    - { service: b, listen: 127.0.0.1:53, protocol: udp }
`, 'tunnel.proxy[1].listen: expected an address no other udp proxy port uses');
    await rejects('identity: id.json\nlisteners: [tls:a.example:1, tls:A.example.:1]\n', 'listeners[1]: expected an address no other listener uses');
    await rejects('identity: id.json\ntunnel: { tun: { dnsListen: ["[::]:53", 10.0.0.1:53] } }\n', 'tunnel.tun.dnsListen[1]: expected an address no other DNS listener uses, found "10.0.0.1:53", which clashes with tunnel.tun.dnsListen[0]: "[::]:53" takes port 53');
  });

  test('a tcp and a udp proxy port may share an address', async () => {
    const cfg = parseRouterConfig(`identity: id.json
tunnel:
  mode: proxy
  proxy:
    - { service: dns, listen: 127.0.0.1:53 }
    - { service: dns, listen: 127.0.0.1:53, protocol: udp }
`, '/etc/ztedge/router.yml');
    assert.deepEqual(cfg.tunnel.proxy.map((p) => p.protocol), ['tcp', 'udp']);
  });

  test('timer relations', async () => {
    await rejects('identity: id.json\nlink: { keepaliveMs: 5000, deadAfterMs: 5000 }\n', 'link.deadAfterMs: expected more than link.keepaliveMs (5000), found the number 5000');
    await rejects('identity: id.json\nlink: { deadAfterMs: 10000 }\n', 'link.deadAfterMs: expected more than link.keepaliveMs (15000), found the number 10000');
    await rejects('identity: id.json\nlink: { reconnect: { initialMs: 2000, maxMs: 1000 } }\n', 'link.reconnect.maxMs: expected at least link.reconnect.initialMs (2000), found the number 1000');
    await rejects('identity: id.json\nlink: { keepaliveMs: 2147483648 }\n', 'link.keepaliveMs: expected a whole number from 10 to 2147483647, found the number 2147483648');
    await rejects('identity: id.json\nlink: { maxFrameBytes: 512 }\n', 'link.maxFrameBytes: expected a whole number from 1024 to 16777216, found the number 512');
  });

  test('unknown keys are errors, with the nearest known key suggested', async () => {
    await rejects('identity: id.json\ndataDri: ./d\n', /:2:1: dataDri: unknown key; did you mean "dataDir"\?$/);
    await rejects('identity: id.json\nlink:\n  keepalive: 1000\n', ':3:3: link.keepalive: unknown key; did you mean "keepaliveMs"?');
    await rejects('identity: id.json\ntunnel:\n  mdoe: tun\n', 'tunnel.mdoe: unknown key; did you mean "mode"?');
    await rejects('identity: id.json\nListeners: []\n', 'Listeners: unknown key; did you mean "listeners"?');
    await rejects('identity: id.json\ntunnel: { tun: { dns_range: 10.0.0.0/8 } }\n', 'tunnel.tun.dns_range: unknown key; did you mean "dnsRange"?');
    // At the wrong level: point to where the key belongs.
    await rejects('identity: id.json\nmode: proxy\n', 'mode: unknown key here; did you mean tunnel.mode?');
    await rejects('identity: id.json\nlevel: debug\n', 'level: unknown key here; did you mean log.level?');
    // Nothing close: list what is allowed there.
    await rejects('identity: id.json\nlink: { colour: blue }\n', 'link.colour: unknown key; link takes keepaliveMs, deadAfterMs, maxFrameBytes, reconnect');
    await rejects('identity: id.json\nzzzzzz: 1\n', 'zzzzzz: unknown key; the top level takes identity, dataDir, listeners, links, tunnel, server, link, policy, log');
    await rejects('identity: id.json\ntunnel: { proxy: [{ service: s, listen: "127.0.0.1:1", port: 2 }] }\n', 'tunnel.proxy[0].port: unknown key; tunnel.proxy[0] takes service, listen, protocol');
    await rejects('identity: id.json\n"odd key": 1\n', '["odd key"]: unknown key');
  });

  test('__proto__ is an unknown key, never a prototype', async () => {
    await rejects('identity: id.json\n__proto__: { polluted: 1 }\n', '__proto__: unknown key');
    await rejects('identity: id.json\nlink: { __proto__: { keepaliveMs: 1 } }\n', 'link.__proto__: unknown key');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('wrong types', async () => {
    const cases: [string, string][] = [
      ['listeners: tls:0.0.0.0:3022', 'listeners: expected a list, each item tls:HOST:PORT (IPv6 in brackets), for example tls:hub.example:3022, found "tls:0.0.0.0:3022"'],
      ['links: [1]', 'links[0]: expected tls:HOST:PORT (IPv6 in brackets), for example tls:hub.example:3022, found the number 1'],
      ['links: [null]', 'links[0]: expected tls:HOST:PORT (IPv6 in brackets), for example tls:hub.example:3022, found an empty value'],
      ['tunnel: []', 'tunnel: expected a mapping (indented "key: value" lines or { key: value }), found an empty list'],
      ['link: { reconnect: [] }', 'link.reconnect: expected a mapping (indented "key: value" lines or { key: value }), found an empty list'],
      ['tunnel: proxy', 'tunnel: expected a mapping (indented "key: value" lines or { key: value }), found "proxy"'],
      ['link: { keepaliveMs: "15000" }', 'link.keepaliveMs: expected a whole number from 10 to 2147483647, found "15000"; write numbers without quotes'],
      ['link: { keepaliveMs: 1.5 }', 'link.keepaliveMs: expected a whole number from 10 to 2147483647, found the number 1.5'],
      ['link: { keepaliveMs: .inf }', 'found the number Infinity'],
      ['log: { level: true }', 'log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace" or "silent", found true (a boolean)'],
      ['dataDir: [a, b]', 'dataDir: expected a non-empty string, found a list of 2 items'],
      ['tunnel: { proxy: [demo] }', 'tunnel.proxy[0]: expected a mapping (indented "key: value" lines or { key: value }), found "demo"'],
      ['tunnel: { proxy: [{ listen: "127.0.0.1:1" }] }', 'tunnel.proxy[0].service: required key (name of a service this router\'s identity may Dial); expected a non-empty string, found nothing'],
      ['tunnel: { tun: { name: -zt0 } }', 'tunnel.tun.name: expected an interface name of 1–15 letters, digits, "_", "." or "-", not starting with "." or "-", found "-zt0"'],
      ['tunnel: { tun: { name: abcdefghijklmnop } }', 'tunnel.tun.name: expected an interface name of 1–15'],
      ['server: { cert: a.pem }', 'server.key: required key (PEM file with the listener private key); expected a non-empty string, found nothing'],
    ];
    for (const [yaml, expected] of cases) await rejects(`identity: id.json\n${yaml}\n`, expected);
    await rejects('- identity: id.json\n', '(top level): expected a mapping (indented "key: value" lines or { key: value }), found a list of 1 item');
    await rejects('just text\n', '(top level): expected a mapping');
    await rejects('~\n', '(top level): expected a mapping (indented "key: value" lines or { key: value }), found an empty value');
  });

  test('YAML syntax errors give their line and column', async () => {
    const { path, problems } = await rejects('identity: id.json\nlinks: [tls:a:1\nlog: { level: info }\n', 'YAML: ');
    assert.ok(problems.length >= 1);
    assert.ok(problems.every((p) => typeof p.line === 'number' && p.line >= 2), JSON.stringify(problems));
    await rejectsAt(path, new RegExp(`${path}:[23]:\\d+: YAML: `));
    await rejects('identity: id.json\n  dataDir: x\n', /:1:\d+: YAML: Nested mappings are not allowed/);
    await rejects('identity: a\nidentity: b\n', /:2:1: YAML: Map keys must be unique/);
    await rejects('identity: a\n---\nidentity: b\n', /:2:1: YAML: Source contains multiple documents/);
    await rejects('identity: !!binary aWQ=\n', /:1:11: YAML: Unresolved tag: tag:yaml.org,2002:binary/);
    await rejects('identity: !secret x\n', /:1:11: YAML: Unresolved tag: !secret/);
    // Unquoted IPv6 inside a flow list: [ and ] are YAML syntax there.
    await rejects('identity: a\nlisteners: [tls:[::1]:3022]\n', /:2:\d+: YAML: /);
  });

  test('an empty file, a file of comments, a missing file, a folder, binary and oversized files', async () => {
    await rejects('', 'the file is empty; expected settings such as "identity: ./router.json"');
    await rejects('# identity: x\n\n', 'the file is empty');
    const missing = join(dir, 'etc', 'nope.yml');
    const m = await rejectsAt(missing, `${missing}: cannot read the config file: no such file (ENOENT)`);
    assert.equal(m.message, `${missing}: cannot read the config file: no such file (ENOENT)`);
    await rejectsAt(join(dir, 'etc'), 'it is a folder, not a file (EISDIR)');
    await rejectsAt(file(Buffer.from([0x69, 0x64, 0x3a, 0x20, 0xff, 0xfe, 0x0a])), 'the file is not UTF-8 text');
    await rejectsAt(file(`identity: x\n#${'x'.repeat(1024 * 1024)}\n`), 'a router config is at most 1048576 bytes');
    if (process.getuid?.() !== 0) {
      const locked = file('identity: x\n');
      chmodSync(locked, 0o000);
      await rejectsAt(locked, 'permission denied (EACCES)');
    }
  });

  test('YAML alias bombs are refused', async () => {
    const bomb = ['identity: x', 'a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`);
    await rejects(`${bomb.join('\n')}\n`, /YAML: .*alias/i);
  });

  test('a YAML alias that contains itself is a problem, not a stack overflow', async () => {
    await rejects('identity: id.json\nlinks: &a [tls:a:1, *a]\n', ':2:21: links[1]: expected a value, found a YAML alias that contains itself');
    await rejects('identity: id.json\nlink: &l { reconnect: *l }\n', 'link.reconnect: expected a value, found a YAML alias that contains itself');
    // Aliases that only share a value are fine.
    const cfg = await loadRouterConfig(file('identity: id.json\nlisteners: &l [tls:0.0.0.0:3022]\ntunnel: { tun: { dnsListen: &d [1.2.3.4:53], upstream: *d } }\n'));
    assert.deepEqual(cfg.tunnel.tun.upstream, ['1.2.3.4:53']);
  });

  test('all problems are reported together, in file order, each with line, key, expected and found', async () => {
    const { path, message, problems } = await rejects(`identity: ""
dataDri: ./d
links: [tls:hub.example:99999]
tunnel:
  mode: proxy
  proxy: []
  tun:
    dnsRange: 100.64.0.0/40
link:
  keepaliveMs: "1000"
log: { level: loud }
`);
    const expected = [
      `${path}:1:1: identity: expected a non-empty string, found ""`,
      `${path}:2:1: dataDri: unknown key; did you mean "dataDir"?`,
      `${path}:3:9: links[0]: expected tls:HOST:PORT, found "tls:hub.example:99999": port 99999 is out of range 1–65535`,
      `${path}:6:3: tunnel.proxy: tunnel.mode is "proxy", so at least one entry is needed, for example "- { service: demo, listen: 127.0.0.1:18080 }"; found none`,
      `${path}:8:5: tunnel.tun.dnsRange: expected an IPv4 network A.B.C.D/LEN, found "100.64.0.0/40": prefix length "40" is not a number from 0 to 32`,
      `${path}:10:3: link.keepaliveMs: expected a whole number from 10 to 2147483647, found "1000"; write numbers without quotes`,
      `${path}:11:8: log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace" or "silent", found "loud"`,
    ];
    assert.equal(message, `${path}: ${expected.length} problems:\n  ${expected.join('\n  ')}`);
    assert.deepEqual(problems.map((p) => p.key), ['identity', 'dataDri', 'links[0]', 'tunnel.proxy', 'tunnel.tun.dnsRange', 'link.keepaliveMs', 'log.level']);
    assert.deepEqual(problems[2]!.path, ['links', 0]);
  });

  test('a flood of problems is listed up to a limit, and kept whole in details', async () => {
    const links = Array.from({ length: 60 }, (_, i) => `  - bad${i}`).join('\n');
    const { message, problems } = await rejects(`identity: x\nlinks:\n${links}\n`, '... and 20 more');
    assert.equal(problems.length, 60);
    assert.equal(message.split('\n').length, 1 + 40 + 1);
  });
});

describe('the example file and the docs follow the schema', () => {
  /** Every key path of the schema (`tunnel.proxy[].listen`) with its default, if any. */
  function schemaKeys(): { key: string; def: unknown; hasDefault: boolean }[] {
    const out: { key: string; def: unknown; hasDefault: boolean }[] = [];
    const walk = (schema: TSchema, prefix: string): void => {
      const s = schema as TSchema & { properties?: Record<string, TSchema>; items?: TSchema };
      if (s.items !== undefined) walk(s.items, `${prefix}[]`);
      for (const [k, child] of Object.entries(s.properties ?? {})) {
        const key = prefix === '' ? k : `${prefix}.${k}`;
        const section = 'properties' in child && 'default' in child;
        if (!section) out.push({ key, def: (child as { default?: unknown }).default, hasDefault: 'default' in child });
        walk(child, key);
      }
    };
    walk(RouterConfigSchema, '');
    return out;
  }

  test('packaging/router.example.yml loads, and its values are exactly the defaults', async () => {
    const example = await loadRouterConfig(EXAMPLE);
    const minimal = parseRouterConfig('identity: ./router.json\n', EXAMPLE);
    assert.deepEqual(example, minimal);
  });

  test('packaging/router.example.yml mentions every key', () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    for (const { key } of schemaKeys()) {
      const name = key.slice(key.lastIndexOf('.') + 1);
      assert.match(text, new RegExp(`(^|[\\s{,#])${name}:`, 'm'), `${key} is not in the example`);
    }
  });

  test('docs/config.md has a row for every key, with its default', () => {
    const rows = new Map([...DOCS.matchAll(/^\| `([^`]+)` \| ([^|]+(?:\\\|[^|]+)*) \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[3]!.trim()]));
    for (const { key, def, hasDefault } of schemaKeys()) {
      assert.ok(rows.has(key), `docs/config.md has no row for ${key}`);
      if (!hasDefault) continue;
      const shown = Array.isArray(def) ? `\`[${def.join(', ')}]\`` : typeof def === 'object' ? undefined : `\`${String(def)}\``;
      if (shown !== undefined) assert.equal(rows.get(key), shown, `docs/config.md default of ${key}`);
    }
    const known = new Set(schemaKeys().map((k) => k.key));
    for (const key of rows.keys()) assert.ok(known.has(key), `docs/config.md documents ${key}, which the schema does not have`);
  });

  test('the schema is plain JSON Schema: ajv compiles it strictly and fills the same defaults', () => {
    const ajv = new Ajv({ strict: true, useDefaults: true, allErrors: true });
    const validate = ajv.compile(JSON.parse(JSON.stringify(RouterConfigSchema)) as object);
    const data: Record<string, unknown> = { identity: '/x/id.json', dataDir: '/x/ztedge-data' };
    assert.equal(validate(data), true, JSON.stringify(validate.errors));
    assert.deepEqual(data, { ...DEFAULTS, identity: '/x/id.json', dataDir: '/x/ztedge-data' });
    assert.equal(validate({ identity: 'x', tunnel: { mdoe: 'tun' } }), false);
  });

  test('every schema key has a description', () => {
    const walk = (schema: TSchema, key: string): void => {
      const s = schema as TSchema & { properties?: Record<string, TSchema>; items?: TSchema; description?: string };
      assert.ok(typeof s.description === 'string' && s.description.length > 0, `${key} has no description`);
      for (const [k, child] of Object.entries(s.properties ?? {})) walk(child, key === '' ? k : `${key}.${k}`);
    };
    walk(RouterConfigSchema, '');
  });
});

describe('fast-check: any input loads or is ERR_CONFIG, nothing else', () => {
  /** Loads `data` written as JSON or YAML; returns 'ok' or 'config', or fails the property. */
  async function outcome(text: string): Promise<'ok' | 'config'> {
    const path = file(text, 'fuzz.yml');
    try {
      const cfg = await loadRouterConfig(path);
      assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.tunnel.tun.dnsListen));
      return 'ok';
    } catch (err) {
      if (isEdgeError(err) && err.code === 'ERR_CONFIG' && err.message.includes(path)) return 'config';
      throw err;
    }
  }

  const schemaCheck = new Ajv({ strict: true, allErrors: true }).compile(JSON.parse(JSON.stringify(RouterConfigSchema)) as object);
  const withoutEmptyKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(withoutEmptyKeys);
    if (typeof v !== 'object' || v === null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, c] of Object.entries(v)) {
      if (c !== null) Object.defineProperty(out, k, { value: withoutEmptyKeys(c), enumerable: true, writable: true, configurable: true });
    }
    return out;
  };

  const asText = (data: unknown, yaml: boolean): string => (yaml ? toYaml(data) : JSON.stringify(data) ?? '');

  test('arbitrary JSON values', async () => {
    await fc.assert(fc.asyncProperty(fc.jsonValue(), fc.boolean(), async (data, yaml) => {
      await outcome(asText(data, yaml));
    }), { numRuns: 200 });
  });

  test('valid configs with one part replaced, removed or added', async () => {
    const base = {
      identity: 'id.json',
      listeners: ['tls:0.0.0.0:3022'],
      links: ['tls:hub.example:3022'],
      tunnel: { mode: 'proxy', proxy: [{ service: 'demo', listen: '127.0.0.1:18080' }], tun: { name: 'zt0', dnsRange: '100.64.0.0/10', dnsListen: ['100.64.0.2:53'], upstream: [], mtu: 1500, offload: true, maxTcpFlows: 16384, maxUdpFlows: 4096, udpIdleSeconds: 60 } },
      server: { cert: 'c.pem', key: 'k.pem' },
      link: { keepaliveMs: 15000, deadAfterMs: 45000, maxFrameBytes: 262144, reconnect: { initialMs: 500, maxMs: 30000 } },
      policy: { keepAfterExpiry: false },
      log: { level: 'info' },
    };
    const paths: string[][] = [];
    const walk = (v: unknown, p: string[]): void => {
      paths.push(p);
      if (typeof v === 'object' && v !== null) for (const [k, c] of Object.entries(v)) walk(c, [...p, k]);
    };
    walk(base, []);
    const addresses = fc.oneof(
      fc.constantFrom('tls:', '[', ']', ':', '::', '.', '0', '65535', '65536', '255', '256', '/', 'a', '-', '_', '100.64.0.0', '::1', '%eth0', ' '),
    );
    const weird = fc.array(addresses, { maxLength: 8 }).map((parts) => parts.join(''));
    const replacement = fc.oneof(fc.jsonValue(), weird, fc.integer(), fc.constantFrom(null, '', [], {}));
    const mutation = fc.record({
      path: fc.constantFrom(...paths.filter((p) => p.length > 0)),
      op: fc.constantFrom('replace', 'remove', 'add'),
      value: replacement,
      key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'mode', 'listen', 'keepalive')),
    });
    let loaded = 0;
    await fc.assert(fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.boolean(), async (mutations, yaml) => {
      const data = structuredClone(base) as Record<string, unknown>;
      for (const m of mutations) {
        let node: unknown = data;
        for (const seg of m.path.slice(0, -1)) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[seg] : undefined;
        if (typeof node !== 'object' || node === null) continue;
        const last = m.path[m.path.length - 1]!;
        const obj = node as Record<string, unknown>;
        if (m.op === 'replace') obj[last] = m.value;
        else if (m.op === 'remove') delete obj[last];
        else if (typeof obj[last] === 'object' && obj[last] !== null && !Array.isArray(obj[last])) {
          Object.defineProperty(obj[last], m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
        }
      }
      const result = await outcome(asText(data, yaml));
      // Independent oracle: whatever loads is valid for ajv too (keys with an empty value count as absent).
      if (result === 'ok') {
        loaded++;
        assert.ok(schemaCheck(withoutEmptyKeys(structuredClone(data))), `loaded, but ajv says: ${JSON.stringify(schemaCheck.errors)}`);
      }
    }), { numRuns: 200 });
    assert.ok(loaded > 0, 'some mutations (a removed optional key, say) still load');
  });

  test('YAML token soup: anchors, aliases, tags, flow and block collections', async () => {
    const token = fc.constantFrom(
      'identity: x\n', 'links: ', 'tunnel:\n', 'link: ', 'reconnect: ', 'mode: ', 'proxy', 'tls:h:1', '127.0.0.1:80',
      '&a ', '*a', '&b ', '*b', '[', ']', '{', '}', ', ', ': ', '- ', '\n', '  ', '    ', '!!binary ', '!!str ', '!x ',
      '~', '"', "'", '---\n', '...\n', '# c', '<<: ', '? ', '|\n', '>\n', '%YAML 1.2\n', '0x1f', '.inf', '1e999', '__proto__: ',
    );
    await fc.assert(fc.asyncProperty(fc.array(token, { maxLength: 40 }), async (tokens) => {
      await outcome(tokens.join(''));
    }), { numRuns: 200 });
  });

  test('arbitrary text', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 200 }), async (text) => {
      await outcome(text);
    }), { numRuns: 200 });
  });
});
