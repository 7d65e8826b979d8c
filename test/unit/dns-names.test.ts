/**
 * The intercepted-name table (src/dns/names.ts): exact names, wildcards at
 * any depth with the longest suffix first, case and trailing dot, the split
 * of intercept.v1 addresses, services by protocol and port, and policy
 * updates that keep pool addresses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressPool, InterceptedNames, NameTable, normalizeName, splitAddresses, type InterceptSpec } from '../../src/dns/index.js';

const spec = (service: string, addresses: string[], ports: [number, number][] = [[1, 65535]], protocols = ['tcp', 'udp']): InterceptSpec => ({
  service, addresses, protocols, portRanges: ports.map(([low, high]) => ({ low, high })),
});

test('normalizeName lower-cases ASCII, drops one trailing dot, refuses root and non-ASCII', () => {
  assert.equal(normalizeName('DB.Plant.Internal.'), 'db.plant.internal');
  assert.equal(normalizeName('db'), 'db');
  assert.equal(normalizeName('.'), undefined);
  assert.equal(normalizeName(''), undefined);
  // U+212A KELVIN SIGN lower-cases to ASCII "k" in Unicode, but DNS case rules are ASCII only (RFC 4343).
  assert.equal(normalizeName('\u212Aafka.lan'), undefined);
});

test('splitAddresses sorts hostnames, wildcard suffixes, IPs, CIDRs and the rest', () => {
  assert.deepEqual(
    splitAddresses(['db.lan', '*.Plant.Internal', '10.0.0.5', 'fd00::1', '10.1.0.0/16', 'fd00::/64', 'DB2.LAN.', '*.', 'bad name', '*']),
    {
      hostnames: ['db.lan', 'db2.lan'],
      wildcards: ['plant.internal'],
      ips: ['10.0.0.5', 'fd00::1'],
      cidrs: ['10.1.0.0/16', 'fd00::/64'],
      invalid: ['*.', 'bad name', '*'],
    },
  );
});

test('exact names match case-insensitively, with or without the trailing dot', () => {
  const table = new NameTable([spec('db', ['db.plant.internal'])]);
  for (const q of ['db.plant.internal', 'DB.Plant.INTERNAL', 'db.plant.internal.']) {
    const m = table.lookup(q);
    assert.equal(m?.name, 'db.plant.internal', q);
    assert.equal(m?.rule, 'db.plant.internal');
    assert.deepEqual(m?.intercepts.map((s) => s.service), ['db']);
  }
  assert.equal(table.lookup('x.db.plant.internal'), undefined, 'an exact name has no subdomains');
  assert.equal(table.lookup('plant.internal'), undefined);
  assert.equal(table.lookup('.'), undefined);
});

test('a wildcard matches subdomains at any depth, not its own suffix', () => {
  const table = new NameTable([spec('plant', ['*.plant.internal'])]);
  assert.equal(table.lookup('a.plant.internal')?.rule, '*.plant.internal');
  assert.equal(table.lookup('x.y.plant.internal')?.rule, '*.plant.internal');
  assert.equal(table.lookup('X.Y.PLANT.internal.')?.name, 'x.y.plant.internal');
  assert.equal(table.lookup('plant.internal'), undefined);
  assert.equal(table.lookup('aplant.internal'), undefined, 'a suffix match is on a label boundary');
  assert.equal(table.lookup('a.plant.internal.evil'), undefined);
});

test('exact first, then the longest wildcard suffix; all claiming intercepts in that order', () => {
  const table = new NameTable([
    spec('wide', ['*.internal']),
    spec('plant', ['*.plant.internal']),
    spec('db', ['db.plant.internal']),
    spec('line', ['*.line1.plant.internal']),
  ]);
  assert.equal(table.lookup('db.plant.internal')?.rule, 'db.plant.internal');
  assert.deepEqual(table.lookup('db.plant.internal')?.intercepts.map((s) => s.service), ['db', 'plant', 'wide']);
  assert.equal(table.lookup('robot.line1.plant.internal')?.rule, '*.line1.plant.internal');
  assert.deepEqual(table.lookup('robot.line1.plant.internal')?.intercepts.map((s) => s.service), ['line', 'plant', 'wide']);
  assert.equal(table.lookup('office.internal')?.rule, '*.internal');
  assert.equal(table.size, 4);
});

test('several services on one name: the first whose protocol and ports cover the flow', () => {
  const pool = new AddressPool({ range: '100.64.0.0/24' });
  const names = new InterceptedNames(pool, [
    spec('db-pg', ['db.lan'], [[5432, 5432]], ['tcp']),
    spec('db-web', ['db.lan'], [[80, 80], [443, 443]], ['tcp']),
    spec('lan-dns', ['*.lan'], [[53, 53]], ['udp']),
  ]);
  const ip = pool.addressFor(names.lookup('db.lan')!.name, 0) as number;
  assert.equal(names.serviceOf(ip, 'tcp', 5432), 'db-pg');
  assert.equal(names.serviceOf(ip, 'tcp', 443), 'db-web');
  assert.equal(names.serviceOf(ip, 'udp', 53), 'lan-dns', 'a wider wildcard still claims what the exact name does not');
  assert.equal(names.serviceOf(ip, 'udp', 5432), undefined);
  assert.equal(names.serviceOf(ip + 1, 'tcp', 5432), undefined, 'an address nobody holds');
  assert.equal(names.nameOf(ip), 'db.lan');
});

test('a policy update keeps the addresses of names still present and drops the services of removed ones', () => {
  const pool = new AddressPool({ range: '100.64.0.0/29', idleMs: 60_000 });
  // Capacity 6.
  const names = new InterceptedNames(pool, [spec('a', ['a.lan']), spec('w', ['*.w.lan'])]);
  const a = pool.addressFor(names.lookup('a.lan')!.name, 0) as number;
  const x = pool.addressFor(names.lookup('x.w.lan')!.name, 1) as number;
  names.setIntercepts([spec('a2', ['A.lan']), spec('b', ['b.lan'])]);
  assert.equal(names.lookup('a.lan')?.intercepts[0]?.service, 'a2');
  assert.equal(pool.addressOf('a.lan'), a, 'a.lan keeps its address');
  assert.equal(names.serviceOf(a, 'tcp', 80), 'a2');
  assert.equal(names.lookup('x.w.lan'), undefined);
  assert.equal(names.serviceOf(x, 'tcp', 80), undefined, 'x.w.lan is no longer intercepted');
  assert.deepEqual(names.interceptsOf(x), []);
  // Fill the pool: x.w.lan's address is the first to be reused.
  for (const n of ['b.lan', 'c', 'd', 'e']) pool.addressFor(n, 2);
  assert.equal(pool.addressFor('f', 3), x);
  assert.equal(pool.addressOf('a.lan'), a);
});
