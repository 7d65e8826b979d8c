/**
 * Config data checks (src/controller/config-types.ts): intercept.v1 and
 * host.v1 accept what routers can act on and refuse the rest with
 * ERR_INVALID_ARGUMENT naming the field; the JSON Schema served for each
 * type agrees with the controller on every structural case.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { CONFIG_TYPES, validateConfigData } from '../../src/controller/config-types.js';
import { isCidr, isHostname, isMatchAddress } from '../../src/controller/addresses.js';
import { isEdgeError } from '../../src/errors.js';

const intercept = CONFIG_TYPES.get('intercept.v1')!;
const host = CONFIG_TYPES.get('host.v1')!;

function refusal(type: typeof intercept, data: unknown): { field: string; message: string } | undefined {
  try {
    validateConfigData(type, data);
    return undefined;
  } catch (err) {
    assert.ok(isEdgeError(err), String(err));
    assert.equal(err.code, 'ERR_INVALID_ARGUMENT');
    return { field: String(err.details?.field), message: err.message };
  }
}

const goodIntercept = { protocols: ['tcp'], addresses: ['web.plant'], portRanges: [{ low: 80, high: 80 }] };
const goodHost = { protocol: 'tcp', address: '127.0.0.1', port: 8080 };

describe('addresses', () => {
  test('hostnames, wildcards, IPs and CIDRs', () => {
    for (const ok of ['localhost', 'web.plant', 'a-b.c1.example', '*.plant.example', '10.1.2.3', '::1', 'fd00::1', '10.0.0.0/8', 'fd00::/64', '0.0.0.0/0']) assert.ok(isMatchAddress(ok), ok);
    for (const bad of ['', '*', '*.', 'a..b', '-a.b', 'a-.b', 'under_score.x', 'a b', '1.2.3', '10.0.0.0/33', '::/129', 'fe80::1%eth0', 'x.*.y', 'http://x', 'a'.repeat(64)]) assert.ok(!isMatchAddress(bad), bad);
    assert.ok(isHostname('x'.repeat(63) + '.y'));
    assert.ok(!isCidr('10.0.0.1'));
  });
});

describe('intercept.v1', () => {
  test('accepts the documented shape with optional dialOptions and sourceIp', () => {
    assert.equal(refusal(intercept, goodIntercept), undefined);
    assert.equal(refusal(intercept, {
      protocols: ['tcp', 'udp'], addresses: ['*.plant.example', '10.20.0.0/16', 'fd00::7', 'historian'],
      portRanges: [{ low: 1, high: 65535 }, { low: 502, high: 502 }], dialOptions: { connectTimeoutSeconds: 5, identity: 'host-a' }, sourceIp: '10.0.0.1:0',
    }), undefined);
  });

  test('each bad field is named', () => {
    const cases: [unknown, string][] = [
      [{ ...goodIntercept, protocols: ['icmp'] }, 'data.protocols[0]'],
      [{ ...goodIntercept, protocols: [] }, 'data.protocols'],
      [{ ...goodIntercept, protocols: ['tcp', 'tcp'] }, 'data.protocols'],
      [{ ...goodIntercept, addresses: ['ok.example', 'bad_host!'] }, 'data.addresses[1]'],
      [{ ...goodIntercept, addresses: [] }, 'data.addresses'],
      [{ ...goodIntercept, portRanges: [{ low: 0, high: 10 }] }, 'data.portRanges[0].low'],
      [{ ...goodIntercept, portRanges: [{ low: 10, high: 65536 }] }, 'data.portRanges[0].high'],
      [{ ...goodIntercept, portRanges: [{ low: 80, high: 80 }, { low: 2000, high: 1000 }] }, 'data.portRanges[1]'],
      [{ ...goodIntercept, portRanges: [{ low: 1.5, high: 2 }] }, 'data.portRanges[0].low'],
      [{ ...goodIntercept, portRanges: [{ low: 1 }] }, 'data.portRanges[0].high'],
      [{ protocols: ['tcp'], portRanges: [{ low: 1, high: 2 }] }, 'data.addresses'],
      [{ ...goodIntercept, extra: 1 }, 'data.extra'],
      [{ ...goodIntercept, dialOptions: { connectTimeoutSeconds: 0 } }, 'data.dialOptions.connectTimeoutSeconds'],
    ];
    for (const [data, field] of cases) {
      const r = refusal(intercept, data);
      assert.ok(r !== undefined, `accepted ${JSON.stringify(data)}`);
      assert.equal(r.field, field, r.message);
      assert.ok(r.message.includes(field), r.message);
      assert.match(r.message, /^invalid intercept\.v1 config: /);
    }
  });
});

describe('host.v1', () => {
  test('fixed target, forwarded target, listenOptions', () => {
    assert.equal(refusal(host, goodHost), undefined);
    assert.equal(refusal(host, { protocol: 'udp', address: 'historian.plant', port: 514, forwardProtocol: false }), undefined);
    assert.equal(refusal(host, {
      forwardProtocol: true, allowedProtocols: ['tcp', 'udp'], forwardAddress: true, allowedAddresses: ['10.0.0.0/24', '*.plant'],
      forwardPort: true, allowedPortRanges: [{ low: 1, high: 1024 }], listenOptions: { precedence: 'required', cost: 10, maxConnections: 3 },
    }), undefined);
  });

  test('each pair is exclusive and complete, and named when not', () => {
    const cases: [unknown, string][] = [
      [{ ...goodHost, forwardProtocol: true, allowedProtocols: ['tcp'] }, 'data.protocol'],
      [{ address: 'x', port: 1, forwardProtocol: true }, 'data.allowedProtocols'],
      [{ ...goodHost, allowedProtocols: ['tcp'] }, 'data.allowedProtocols'],
      [{ address: 'x', port: 1 }, 'data.protocol'],
      [{ protocol: 'tcp', port: 1, forwardAddress: true }, 'data.allowedAddresses'],
      [{ ...goodHost, port: undefined, allowedPortRanges: [{ low: 1, high: 2 }] }, 'data.allowedPortRanges'],
      [{ ...goodHost, port: 0 }, 'data.port'],
      [{ ...goodHost, port: 70000 }, 'data.port'],
      [{ ...goodHost, address: '*.plant' }, 'data.address'],
      [{ ...goodHost, address: '10.0.0.0/8' }, 'data.address'],
      [{ protocol: 'tcp', port: 1, forwardAddress: true, allowedAddresses: ['ok', 'no way'] }, 'data.allowedAddresses[1]'],
      [{ protocol: 'tcp', address: 'x', forwardPort: true, allowedPortRanges: [{ low: 9, high: 8 }] }, 'data.allowedPortRanges[0]'],
      [{ ...goodHost, listenOptions: { precedence: 'always' } }, 'data.listenOptions.precedence'],
      [{ ...goodHost, protocol: 'sctp' }, 'data.protocol'],
    ];
    for (const [data, field] of cases) {
      const r = refusal(host, data);
      assert.ok(r !== undefined, `accepted ${JSON.stringify(data)}`);
      assert.equal(r.field, field, `${JSON.stringify(data)}: ${r.message}`);
    }
  });
});

describe('the served JSON Schemas', () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const samples: [typeof intercept, unknown][] = [
    [intercept, goodIntercept],
    [intercept, { ...goodIntercept, protocols: ['icmp'] }],
    [intercept, { ...goodIntercept, extra: true }],
    [intercept, { protocols: ['tcp'], addresses: ['x'] }],
    [intercept, { ...goodIntercept, portRanges: [{ low: 0, high: 1 }] }],
    [host, goodHost],
    [host, { address: 'x', port: 1 }],
    [host, { ...goodHost, forwardProtocol: true, allowedProtocols: ['tcp'] }],
    [host, { ...goodHost, forwardProtocol: false }],
    [host, { address: 'x', port: 1, forwardProtocol: true }],
    [host, { address: 'x', port: 1, forwardProtocol: true, allowedProtocols: ['udp'] }],
    [host, { ...goodHost, allowedProtocols: ['udp'] }],
    [host, { protocol: 'tcp', address: 'x', forwardPort: true, allowedPortRanges: [{ low: 1, high: 2 }] }],
    [host, { protocol: 'tcp', forwardAddress: true, allowedAddresses: ['x'], forwardPort: true, allowedPortRanges: [{ low: 1, high: 2 }] }],
    [host, { protocol: 'tcp', forwardAddress: true, allowedAddresses: ['x'], address: 'y', port: 1 }],
  ];

  test('agree with the controller on structure and the forward* pairs', () => {
    const compiled = new Map([intercept, host].map((t) => [t, ajv.compile(JSON.parse(JSON.stringify(t.schema)))]));
    for (const [type, data] of samples) {
      const served = compiled.get(type)!(data);
      const ours = refusal(type, data) === undefined;
      assert.equal(served, ours, `${type.name} ${JSON.stringify(data)}: served schema says ${served}, controller says ${ours}`);
    }
  });
});
