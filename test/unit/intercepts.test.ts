import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InterceptTable } from '../../src/router/intercepts.js';
import { parseIpv4Address } from '../../src/wire/index.js';

const ip = (text: string): number => parseIpv4Address(text)!;
const all = [{ low: 1, high: 65535 }];

const table = new InterceptTable([
  { service: 'web', protocols: ['tcp'], addresses: ['web.plant.internal', '10.9.0.0/16'], portRanges: [{ low: 80, high: 80 }, { low: 443, high: 443 }] },
  { service: 'plc', protocols: ['tcp', 'udp'], addresses: ['*.plant.internal', '10.9.1.7'], portRanges: [{ low: 502, high: 502 }] },
  { service: 'mqtt', protocols: ['tcp'], addresses: ['MQTT.Plant.Internal.', '10.1.2.3/8'], portRanges: [{ low: 1883, high: 1883 }] },
  { service: 'v6', protocols: ['tcp'], addresses: ['fd00::1', 'fd00::/64', '  '], portRanges: all },
]);

test('intercepts_ip_and_cidr_most_specific_first', () => {
  assert.equal(table.match('tcp', ip('10.9.1.7'), 502), 'plc');
  assert.equal(table.match('udp', ip('10.9.1.7'), 502), 'plc');
  assert.equal(table.match('tcp', ip('10.9.1.7'), 80), 'web');
  assert.equal(table.match('tcp', ip('10.9.200.1'), 80), 'web');
  assert.equal(table.match('udp', ip('10.9.200.1'), 80), undefined);
  // 10.1.2.3/8 is taken as 10.0.0.0/8.
  assert.equal(table.match('tcp', ip('10.200.0.1'), 1883), 'mqtt');
  assert.equal(table.match('tcp', ip('11.0.0.1'), 1883), undefined);
  assert.equal(table.match('tcp', ip('10.9.200.1'), 22), undefined);
});

test('intercepts_names_are_left_to_dns', () => {
  // Hostnames and wildcards match through the DNS pool (src/dns/names.ts), never as addresses here.
  assert.equal(table.match('tcp', ip('100.64.0.5'), 80), undefined);
  assert.equal(table.claimsAddress(ip('100.64.0.5')), false);
});

test('intercepts_claims_address_and_routes', () => {
  assert.equal(table.claimsAddress(ip('10.9.3.3')), true);
  assert.equal(table.claimsAddress(ip('192.168.1.1')), false);
  assert.deepEqual(table.routes().map((r) => r.cidr).sort(), ['10.0.0.0/8', '10.9.0.0/16', '10.9.1.7/32']);
});

test('intercepts_empty_table_matches_nothing', () => {
  const empty = new InterceptTable([]);
  assert.equal(empty.match('tcp', ip('10.0.0.1'), 80), undefined);
  assert.deepEqual(empty.routes(), []);
});
