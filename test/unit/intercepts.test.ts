import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InterceptTable } from '../../src/router/intercepts.js';
import { parseIpv4Address } from '../../src/wire/index.js';

const ip = (text: string): number => parseIpv4Address(text)!;
const all = [{ low: 1, high: 65535 }];

const table = new InterceptTable([
  { service: 'web', protocols: ['tcp'], addresses: ['web.plant.internal', '10.9.0.0/16'], portRanges: [{ low: 80, high: 80 }, { low: 443, high: 443 }] },
  { service: 'plc', protocols: ['tcp', 'udp'], addresses: ['*.plant.internal', '10.9.1.7'], portRanges: [{ low: 502, high: 502 }] },
  { service: 'deep', protocols: ['tcp'], addresses: ['*.line1.plant.internal'], portRanges: all },
  { service: 'mqtt', protocols: ['tcp'], addresses: ['MQTT.Plant.Internal.', '10.1.2.3/8'], portRanges: [{ low: 1883, high: 1883 }] },
  { service: 'v6', protocols: ['tcp'], addresses: ['fd00::1', 'fd00::/64', '  '], portRanges: all },
]);

test('intercepts_exact_name_by_protocol_and_port', () => {
  assert.equal(table.match('tcp', ip('100.64.0.5'), 80, 'web.plant.internal'), 'web');
  assert.equal(table.match('tcp', ip('100.64.0.5'), 443, 'WEB.plant.internal.'), 'web');
  // Port 502 is not web's: the wildcard of plc takes it.
  assert.equal(table.match('tcp', ip('100.64.0.5'), 502, 'web.plant.internal'), 'plc');
  assert.equal(table.match('udp', ip('100.64.0.5'), 80, 'web.plant.internal'), undefined);
  assert.equal(table.match('tcp', ip('100.64.0.6'), 1883, 'mqtt.plant.internal'), 'mqtt');
});

test('intercepts_wildcard_any_depth_longest_suffix_first', () => {
  assert.equal(table.match('udp', ip('100.64.0.7'), 502, 'a.plant.internal'), 'plc');
  assert.equal(table.match('tcp', ip('100.64.0.7'), 502, 'x.y.plant.internal'), 'plc');
  // *.line1.plant.internal is longer than *.plant.internal.
  assert.equal(table.match('tcp', ip('100.64.0.7'), 502, 'pump.line1.plant.internal'), 'deep');
  // The wildcard does not match the bare domain.
  assert.equal(table.match('tcp', ip('100.64.0.7'), 502, 'plant.internal'), undefined);
  assert.equal(table.match('tcp', ip('100.64.0.7'), 502, 'evilplant.internal'), undefined);
});

test('intercepts_ip_and_cidr_most_specific_first', () => {
  assert.equal(table.match('tcp', ip('10.9.1.7'), 502, undefined), 'plc');
  assert.equal(table.match('tcp', ip('10.9.1.7'), 80, undefined), 'web');
  assert.equal(table.match('tcp', ip('10.9.200.1'), 80, undefined), 'web');
  // 10.1.2.3/8 is taken as 10.0.0.0/8.
  assert.equal(table.match('tcp', ip('10.200.0.1'), 1883, undefined), 'mqtt');
  assert.equal(table.match('tcp', ip('11.0.0.1'), 1883, undefined), undefined);
  assert.equal(table.match('tcp', ip('10.9.200.1'), 22, undefined), undefined);
});

test('intercepts_claims_address_and_routes', () => {
  assert.equal(table.claimsAddress(ip('100.64.0.9'), 'z.plant.internal'), true);
  assert.equal(table.claimsAddress(ip('100.64.0.9'), 'other.example'), false);
  assert.equal(table.claimsAddress(ip('10.9.3.3'), undefined), true);
  assert.equal(table.claimsAddress(ip('192.168.1.1'), undefined), false);
  assert.deepEqual(table.routes().map((r) => r.cidr).sort(), ['10.0.0.0/8', '10.9.0.0/16', '10.9.1.7/32']);
  assert.deepEqual([...table.names].sort(), ['*.line1.plant.internal', '*.plant.internal', 'MQTT.Plant.Internal.', 'web.plant.internal']);
});

test('intercepts_empty_table_matches_nothing', () => {
  const empty = new InterceptTable([]);
  assert.equal(empty.match('tcp', ip('10.0.0.1'), 80, 'x'), undefined);
  assert.deepEqual(empty.routes(), []);
});
