/**
 * host.v1 resolution (src/router/host-target.ts): fixed values, forwarded
 * protocol/address/port within the allowed values, and the refusals with
 * reasons naming what was outside them. A table of cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressMatcher, resolveHostTarget, type DialDestination } from '../../src/router/host-target.js';
import type { HostTarget } from '../../src/policy/snapshot.js';

const fixedTcp: HostTarget = { protocol: 'tcp', address: '127.0.0.1', port: 8080 };
const fixedUdp: HostTarget = { protocol: 'udp', address: 'dns.internal', port: 53, listenOptions: { connectTimeoutSeconds: 2 } };
const subnet: HostTarget = {
  forwardProtocol: true, allowedProtocols: ['tcp', 'udp'],
  forwardAddress: true, allowedAddresses: ['10.0.0.0/8', '192.168.1.7', 'db.example.com', '*.corp.example', '2001:db8::/32', '::1'],
  forwardPort: true, allowedPortRanges: [{ low: 22, high: 22 }, { low: 8000, high: 8999 }],
};
const tcpOnlyForward: HostTarget = { forwardProtocol: true, allowedProtocols: ['tcp'], address: '10.0.0.1', port: 80 };
const broken: HostTarget = { protocol: 'tcp', port: 80 };
const noPort: HostTarget = { protocol: 'tcp', address: 'x' };

type Expect = { protocol: 'tcp' | 'udp'; address: string; port: number; connectTimeoutMs?: number } | { kind: 'denied' | 'misconfigured'; reason: RegExp };

const cases: [string, HostTarget, DialDestination, Expect][] = [
  ['fixed tcp, no protocol in the dial (old peer)', fixedTcp, {}, { protocol: 'tcp', address: '127.0.0.1', port: 8080, connectTimeoutMs: 5000 }],
  ['fixed tcp ignores a dial destination', fixedTcp, { protocol: 'tcp', dstAddress: '10.9.9.9', dstPort: 1 }, { protocol: 'tcp', address: '127.0.0.1', port: 8080 }],
  ['fixed udp with its connect timeout', fixedUdp, { protocol: 'udp' }, { protocol: 'udp', address: 'dns.internal', port: 53, connectTimeoutMs: 2000 }],
  ['fixed tcp refuses a udp dial', fixedTcp, { protocol: 'udp' }, { kind: 'denied', reason: /service svc is hosted as tcp, but the dial asked for udp/ }],
  ['fixed udp refuses a tcp dial', fixedUdp, {}, { kind: 'denied', reason: /hosted as udp, but the dial asked for tcp/ }],
  ['forwarded protocol within the allowed', subnet, { protocol: 'udp', dstAddress: '10.1.2.3', dstPort: 8053 }, { protocol: 'udp', address: '10.1.2.3', port: 8053 }],
  ['forwarded protocol outside the allowed', tcpOnlyForward, { protocol: 'udp' }, { kind: 'denied', reason: /protocol udp is outside the allowed protocols of service svc \(tcp\)/ }],
  ['forwarded protocol, absent in the dial, is tcp', tcpOnlyForward, {}, { protocol: 'tcp', address: '10.0.0.1', port: 80 }],
  ['IPv4 in a CIDR', subnet, { dstAddress: '10.255.255.255', dstPort: 22 }, { protocol: 'tcp', address: '10.255.255.255', port: 22 }],
  ['IPv4 outside every CIDR', subnet, { dstAddress: '11.0.0.1', dstPort: 22 }, { kind: 'denied', reason: /destination address 11\.0\.0\.1 is outside the allowed addresses of service svc \(10\.0\.0\.0\/8, 192\.168\.1\.7/ }],
  ['exact IPv4', subnet, { dstAddress: '192.168.1.7', dstPort: 22 }, { protocol: 'tcp', address: '192.168.1.7', port: 22 }],
  ['a neighbour of an exact IPv4', subnet, { dstAddress: '192.168.1.8', dstPort: 22 }, { kind: 'denied', reason: /192\.168\.1\.8 is outside the allowed addresses/ }],
  ['IPv6 in a CIDR', subnet, { dstAddress: '2001:db8:1::5', dstPort: 8000 }, { protocol: 'tcp', address: '2001:db8:1::5', port: 8000 }],
  ['exact IPv6', subnet, { dstAddress: '::1', dstPort: 8999 }, { protocol: 'tcp', address: '::1', port: 8999 }],
  ['IPv6 outside', subnet, { dstAddress: '2001:db9::1', dstPort: 22 }, { kind: 'denied', reason: /2001:db9::1 is outside the allowed addresses/ }],
  ['exact hostname, any case, trailing dot', subnet, { dstAddress: 'DB.Example.com.', dstPort: 22 }, { protocol: 'tcp', address: 'DB.Example.com.', port: 22 }],
  ['another name in the same domain', subnet, { dstAddress: 'www.example.com', dstPort: 22 }, { kind: 'denied', reason: /www\.example\.com is outside the allowed addresses/ }],
  ['wildcard: a subdomain', subnet, { dstAddress: 'git.corp.example', dstPort: 22 }, { protocol: 'tcp', address: 'git.corp.example', port: 22 }],
  ['wildcard: a deeper subdomain', subnet, { dstAddress: 'a.b.corp.example', dstPort: 22 }, { protocol: 'tcp', address: 'a.b.corp.example', port: 22 }],
  ['wildcard: not the domain itself', subnet, { dstAddress: 'corp.example', dstPort: 22 }, { kind: 'denied', reason: /corp\.example is outside the allowed addresses/ }],
  ['wildcard: not a name that merely ends alike', subnet, { dstAddress: 'evilcorp.example', dstPort: 22 }, { kind: 'denied', reason: /evilcorp\.example is outside/ }],
  ['wildcard: not a malformed name', subnet, { dstAddress: 'a/..corp.example', dstPort: 22 }, { kind: 'denied', reason: /is outside the allowed addresses/ }],
  ['a hostname never matches a CIDR', subnet, { dstAddress: '10.example', dstPort: 22 }, { kind: 'denied', reason: /10\.example is outside/ }],
  ['forwarded address missing from the dial', subnet, { dstPort: 22 }, { kind: 'denied', reason: /service svc forwards the destination address, but the dial carried none/ }],
  ['port at the edges of a range', subnet, { dstAddress: '10.0.0.1', dstPort: 8999 }, { protocol: 'tcp', address: '10.0.0.1', port: 8999 }],
  ['port just outside a range', subnet, { dstAddress: '10.0.0.1', dstPort: 9000 }, { kind: 'denied', reason: /destination port 9000 is outside the allowed port ranges of service svc \(22, 8000-8999\)/ }],
  ['port 0 is never allowed', { ...subnet, allowedPortRanges: [{ low: 0, high: 10 }] }, { dstAddress: '10.0.0.1', dstPort: 0 }, { kind: 'denied', reason: /destination port 0 is outside/ }],
  ['forwarded port missing from the dial', subnet, { dstAddress: '10.0.0.1' }, { kind: 'denied', reason: /forwards the destination port, but the dial carried none/ }],
  ['no allowed ranges at all', { ...subnet, allowedPortRanges: undefined }, { dstAddress: '10.0.0.1', dstPort: 22 }, { kind: 'denied', reason: /allowed port ranges of service svc \(none\)/ }],
  ['host.v1 without an address', broken, {}, { kind: 'misconfigured', reason: /neither address nor forwardAddress/ }],
  ['host.v1 without a port', noPort, {}, { kind: 'misconfigured', reason: /neither a port/ }],
  ['host.v1 without a protocol', { address: 'x', port: 1 }, {}, { kind: 'misconfigured', reason: /neither protocol nor forwardProtocol/ }],
];

for (const [name, target, dial, expected] of cases) {
  test(`resolveHostTarget: ${name}`, () => {
    const r = resolveHostTarget('svc', target, dial);
    if ('kind' in expected) {
      assert.equal(r.ok, false, `resolved to ${JSON.stringify(r)}`);
      if (r.ok) return;
      assert.equal(r.kind, expected.kind);
      assert.match(r.reason, expected.reason);
    } else {
      assert.equal(r.ok, true, r.ok ? '' : r.reason);
      if (!r.ok) return;
      assert.equal(r.target.protocol, expected.protocol);
      assert.equal(r.target.address, expected.address);
      assert.equal(r.target.port, expected.port);
      if (expected.connectTimeoutMs !== undefined) assert.equal(r.target.connectTimeoutMs, expected.connectTimeoutMs);
    }
  });
}

test('AddressMatcher: entries that are not addresses, names or CIDRs match nothing', () => {
  const m = new AddressMatcher(['10.0.0.0/33', 'not a cidr/8', '', '  host.a  ']);
  assert.equal(m.matches('10.0.0.1'), false);
  assert.equal(m.matches('host.a'), true);
  assert.equal(m.matches(''), false);
});

test('AddressMatcher: an IPv4-mapped IPv6 destination matches its IPv4 rule', () => {
  assert.equal(new AddressMatcher(['192.0.2.0/24']).matches('::ffff:192.0.2.9'), true);
});

test('a long allowed list is cut short in the reason', () => {
  const allowedAddresses = Array.from({ length: 20 }, (_, i) => `10.0.0.${i}`);
  const r = resolveHostTarget('svc', { protocol: 'tcp', forwardAddress: true, allowedAddresses, port: 1 }, { dstAddress: '10.0.1.1' });
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.reason, /10\.0\.0\.7, … 12 more\)$/);
});
