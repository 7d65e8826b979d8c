/**
 * The tun mode's DNS address pool (src/dns/pool.ts): reserved addresses,
 * stable addresses per name, reuse only when full and least recently used
 * first, exhaustion, the entry cap, and the IPv4 text helpers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AddressPool, TOUCH_RESOLUTION_MS, formatIpv4, parseIpv4 } from '../../src/dns/index.js';

const ip = (text: string): number => {
  const v = parseIpv4(text);
  assert.ok(v !== undefined, text);
  return v;
};
const MIN = 60_000;

test('parseIpv4 and formatIpv4 round-trip; bad text is refused', () => {
  assert.equal(parseIpv4('100.64.0.1'), 0x64400001);
  assert.equal(parseIpv4('255.255.255.255'), 0xffffffff);
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.4 ', '', 'a.b.c.d']) assert.equal(parseIpv4(bad), undefined, bad);
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => parseIpv4(formatIpv4(v)) === v), { numRuns: 500 });
});

test('network, broadcast and reserved addresses are never handed out', () => {
  const pool = new AddressPool({ range: '10.9.0.0/29', reserved: [ip('10.9.0.1'), ip('10.9.0.2'), ip('192.0.2.1')] });
  // /29: 8 addresses − network − broadcast − 2 reserved (the one outside the range does not count).
  assert.equal(pool.capacity, 4);
  const got = ['a', 'b', 'c', 'd'].map((n) => pool.addressFor(n, 0));
  assert.deepEqual(got.map((v) => formatIpv4(v as number)), ['10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
  assert.equal(pool.addressFor('e', 0), 'exhausted');
});

test('a /31 and a /32 have no network or broadcast address (RFC 3021)', () => {
  assert.equal(new AddressPool({ range: '10.0.0.0/31' }).capacity, 2);
  const one = new AddressPool({ range: '10.0.0.7/32' });
  assert.equal(formatIpv4(one.addressFor('x', 0) as number), '10.0.0.7');
});

test('a name keeps its address while in use; nameOf is the reverse', () => {
  const pool = new AddressPool({ range: '100.64.0.0/10', reserved: [ip('100.64.0.1'), ip('100.64.0.2')] });
  const a = pool.addressFor('db.plant.internal', 0);
  const b = pool.addressFor('plc.plant.internal', 1);
  assert.equal(formatIpv4(a as number), '100.64.0.3');
  assert.equal(formatIpv4(b as number), '100.64.0.4');
  assert.equal(pool.addressFor('db.plant.internal', 5 * MIN), a);
  assert.equal(pool.nameOf(a as number), 'db.plant.internal');
  assert.equal(pool.nameOf(ip('100.64.0.9')), undefined);
  assert.equal(pool.addressOf('plc.plant.internal'), b);
  assert.equal(pool.entries, 2);
  assert.ok(pool.contains(ip('100.127.255.255')));
  assert.ok(!pool.contains(ip('100.128.0.0')));
});

test('when full, the least recently used idle name gives up its address; touch counts as use', () => {
  const pool = new AddressPool({ range: '10.0.0.0/29', reserved: [ip('10.0.0.1')], idleMs: 10 * MIN });
  // Capacity 5: .2 … .6
  const names = ['n0', 'n1', 'n2', 'n3', 'n4'];
  const addrs = names.map((n, i) => pool.addressFor(n, i) as number);
  assert.equal(pool.addressFor('late', 1 * MIN), 'exhausted', 'nothing idle yet: no reuse');
  // Traffic keeps n0 and n2 busy.
  assert.ok(pool.touch(addrs[0]!, 9 * MIN));
  assert.ok(pool.touch(addrs[2]!, 9 * MIN));
  assert.equal(pool.touch(ip('10.0.0.7'), 9 * MIN), false);
  // At 11 min, n1, n3, n4 are idle; n1 was used longest ago.
  const reused = pool.addressFor('late', 11 * MIN);
  assert.equal(reused, addrs[1]);
  assert.equal(pool.nameOf(addrs[1]!), 'late');
  assert.equal(pool.addressOf('n1'), undefined);
  assert.equal(pool.addressFor('later', 11 * MIN), addrs[3]);
  assert.equal(pool.reused, 2);
  // n0 and n2 are still held.
  assert.equal(pool.addressOf('n0'), addrs[0]);
  assert.equal(pool.addressOf('n2'), addrs[2]);
});

test('touch moves recency at most once per resolution interval', () => {
  const pool = new AddressPool({ range: '10.0.0.0/30', idleMs: 1000 });
  // Capacity 2: .1 .2
  const a = pool.addressFor('a', 0) as number;
  pool.addressFor('b', 10);
  pool.touch(a, TOUCH_RESOLUTION_MS - 1); // too soon after 0: not recorded, so a is idle at 1005
  assert.equal(pool.addressFor('c', 1005), a);
  // b is idle too by 2010, unless traffic touched it a full interval after its last use.
  assert.ok(pool.touch(pool.addressOf('b')!, 10 + TOUCH_RESOLUTION_MS));
  assert.equal(pool.addressFor('d', 2000), 'exhausted', 'b was just used and c is fresh');
});

test('names no longer intercepted are reused first, but only when the pool is full', () => {
  const pool = new AddressPool({ range: '10.0.0.0/29', idleMs: 60 * MIN });
  // Capacity 6: .1 … .6
  const addrs = ['a', 'b', 'c', 'd'].map((n, i) => pool.addressFor(n, i) as number);
  pool.retain((name) => name !== 'b' && name !== 'c');
  // Free addresses are still left: new names get fresh ones, b and c keep theirs.
  assert.equal(formatIpv4(pool.addressFor('e', 10) as number), '10.0.0.5');
  assert.equal(formatIpv4(pool.addressFor('f', 11) as number), '10.0.0.6');
  assert.equal(pool.addressOf('b'), addrs[1]);
  // b comes back before anyone needs its address: same address.
  pool.retain((name) => name !== 'c');
  assert.equal(pool.addressFor('b', 12), addrs[1]);
  // Full now: c (no longer intercepted) goes first although a (intercepted, not idle) is older.
  assert.equal(pool.addressFor('g', 13), addrs[2]);
  assert.equal(pool.addressFor('h', 14), 'exhausted');
});

test('between two reclaimable entries the older one goes first, whatever made it reclaimable', () => {
  const pool = new AddressPool({ range: '10.0.0.0/30', idleMs: 100 });
  const old = pool.addressFor('old-active', 0) as number;
  pool.addressFor('removed', 50);
  pool.retain((name) => name !== 'removed');
  // At 200: old-active idle since 0, removed (inactive) last used at 50 → old-active is older.
  assert.equal(pool.addressFor('new', 200), old);
});

test('maxEntries caps memory below the network size', () => {
  const pool = new AddressPool({ range: '100.64.0.0/10', maxEntries: 3, idleMs: 1000 });
  assert.equal(pool.capacity, 3);
  for (const n of ['a', 'b', 'c']) assert.equal(typeof pool.addressFor(n, 0), 'number');
  assert.equal(pool.addressFor('d', 1), 'exhausted');
  const a = pool.addressOf('a');
  assert.equal(pool.addressFor('d', 2000), a, 'an idle entry makes room');
  assert.equal(pool.entries, 3);
});

test('a bad range is refused with the reason', () => {
  assert.throws(() => new AddressPool({ range: '100.64.0.1/10' }), /host bits are set/);
});

test('fuzz: addresses stay unique, in range, off the reserved list, and nameOf/addressOf agree', () => {
  const reserved = [ip('10.1.0.1'), ip('10.1.0.2')];
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.constantFrom('ask', 'touch', 'retain'), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 5000 })), { maxLength: 200 }),
    (ops) => {
      const pool = new AddressPool({ range: '10.1.0.0/28', reserved, idleMs: 1000, maxEntries: 10 });
      let now = 0;
      for (const [op, n, dt] of ops) {
        now += dt;
        if (op === 'ask') pool.addressFor(`n${n}`, now);
        else if (op === 'touch') pool.touch(ip('10.1.0.0') + n, now);
        else pool.retain((name) => Number(name.slice(1)) % 3 !== n % 3);
      }
      const seen = new Set<number>();
      for (let n = 0; n <= 20; n++) {
        const a = pool.addressOf(`n${n}`);
        if (a === undefined) continue;
        assert.ok(!seen.has(a), 'unique');
        seen.add(a);
        assert.ok(a > ip('10.1.0.0') && a < ip('10.1.0.15'), 'inside, not network or broadcast');
        assert.ok(!reserved.includes(a), 'not reserved');
        assert.equal(pool.nameOf(a), `n${n}`);
      }
      assert.equal(seen.size, pool.entries);
      assert.ok(pool.entries <= 10);
    },
  ), { numRuns: 300 });
});
