/**
 * The DNS query handler (src/dns/server.ts), fed encoded queries: A from the
 * pool for exact and wildcard names, AAAA and other types as NODATA, PTR for
 * pool addresses, REFUSED or forward for the rest, FORMERR / NOTIMP / BADVERS
 * for what it cannot serve, drops for what it must not answer; and a
 * fast-check fuzz of random and mutated queries (never throws, keeps the id,
 * replies decode).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as dnsPacket from 'dns-packet';
import { AddressPool, DnsHandler, InterceptedNames, Rcode, errorReply, formatIpv4, parseIpv4, truncateReply, type DnsDecision, type InterceptSpec } from '../../src/dns/index.js';

const INTERCEPTS: InterceptSpec[] = [
  { service: 'db', addresses: ['db.plant.internal', '10.0.0.5'], portRanges: [{ low: 5432, high: 5432 }], protocols: ['tcp'] },
  { service: 'plc', addresses: ['*.plant.internal'], portRanges: [{ low: 502, high: 502 }], protocols: ['tcp'] },
];

function setup(forwarding: boolean, range = '100.64.0.0/10'): { handler: DnsHandler; pool: AddressPool } {
  const pool = new AddressPool({ range, reserved: [parseIpv4('100.64.0.1')!, parseIpv4('100.64.0.2')!] });
  const handler = new DnsHandler(new InterceptedNames(pool, INTERCEPTS), { forwarding });
  return { handler, pool };
}

function query(name: string, type = 'A', opts: { id?: number; edns?: { version?: number; do?: boolean }; klass?: string } = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: opts.klass ?? 'IN' }],
    additionals: opts.edns === undefined ? [] : [{
      name: '.', type: 'OPT', udpPayloadSize: 4096, ednsVersion: opts.edns.version ?? 0, flags: opts.edns.do === true ? dnsPacket.DNSSEC_OK : 0, options: [],
    }],
  });
}

function reply(d: DnsDecision): dnsPacket.Packet & { raw: Buffer } {
  assert.equal(d.kind, 'reply', `expected a reply, got ${d.kind}`);
  if (d.kind !== 'reply') throw new Error('unreachable');
  return Object.assign(dnsPacket.decode(d.reply), { raw: d.reply });
}

const rcodeOf = (raw: Buffer): number => raw.readUInt16BE(2) & 0xf;

test('A for an exact intercepted name: pool address, short TTL, AA, id and question kept', () => {
  const { handler, pool } = setup(false);
  const r = reply(handler.answer(query('DB.plant.internal', 'A', { id: 0xbeef }), 0));
  assert.equal(r.id, 0xbeef);
  assert.equal(r.type, 'response');
  assert.equal(r.rcode, 'NOERROR');
  assert.equal(r.flag_aa, true);
  assert.equal(r.flag_rd, true, 'RD is copied');
  assert.equal(r.flag_ra, false, 'no recursion without upstream');
  assert.deepEqual(r.questions, [{ name: 'DB.plant.internal', type: 'A', class: 'IN' }], 'the question is echoed, case included');
  assert.equal(r.answers?.length, 1);
  const a = r.answers![0]!;
  assert.equal(a.type, 'A');
  assert.equal(a.name, 'DB.plant.internal');
  assert.equal(a.ttl, 60);
  assert.equal(a.data, '100.64.0.3');
  assert.equal(pool.nameOf(parseIpv4('100.64.0.3')!), 'db.plant.internal');
  // Asked again (any case): same address.
  assert.equal(reply(handler.answer(query('db.plant.internal.'), 1000)).answers![0]!.data, '100.64.0.3');
  assert.equal(handler.counters.answered, 2);
});

test('A for wildcard names at any depth; each name its own address', () => {
  const { handler } = setup(false);
  const a = reply(handler.answer(query('robot.plant.internal'), 0)).answers![0]!.data;
  const b = reply(handler.answer(query('x.y.plant.internal'), 0)).answers![0]!.data;
  assert.equal(a, '100.64.0.3');
  assert.equal(b, '100.64.0.4');
  assert.equal(rcodeOf(reply(handler.answer(query('plant.internal'), 0)).raw), Rcode.REFUSED, 'the suffix itself is not intercepted');
});

test('AAAA and other types for intercepted names: NOERROR with no answer; ANY gets the A', () => {
  const { handler } = setup(true);
  for (const type of ['AAAA', 'MX', 'TXT', 'HTTPS']) {
    const r = reply(handler.answer(query('db.plant.internal', type), 0));
    assert.equal(r.rcode, 'NOERROR', type);
    assert.equal(r.flag_aa, true);
    assert.deepEqual(r.answers, [], type);
  }
  const any = reply(handler.answer(query('db.plant.internal', 'ANY'), 0));
  assert.equal(any.answers?.[0]?.type, 'A');
  assert.equal(handler.counters.nodata, 4);
});

test('PTR for pool addresses: the name, NXDOMAIN when unused; other reverse names are not ours', () => {
  const { handler } = setup(false);
  reply(handler.answer(query('db.plant.internal'), 0));
  const r = reply(handler.answer(query('3.0.64.100.in-addr.arpa', 'PTR'), 0));
  assert.equal(r.rcode, 'NOERROR');
  assert.equal(r.flag_aa, true);
  assert.equal(r.answers?.[0]?.type, 'PTR');
  assert.equal(r.answers?.[0]?.data, 'db.plant.internal');
  assert.equal(reply(handler.answer(query('9.0.64.100.IN-ADDR.ARPA', 'PTR'), 0)).rcode, 'NXDOMAIN');
  assert.equal(reply(handler.answer(query('1.0.0.10.in-addr.arpa', 'PTR'), 0)).rcode, 'REFUSED');
  assert.equal(reply(handler.answer(query('64.100.in-addr.arpa', 'PTR'), 0)).rcode, 'REFUSED');
});

test('names not intercepted: REFUSED without upstream, forwarded with one', () => {
  const refusing = setup(false).handler;
  const r = reply(refusing.answer(query('example.com', 'A', { id: 7 }), 0));
  assert.equal(r.rcode, 'REFUSED');
  assert.equal(r.id, 7);
  assert.equal(r.flag_aa, false);
  assert.deepEqual(r.answers, []);
  const forwarding = setup(true).handler;
  const q = query('example.com', 'A', { edns: {} });
  const d = forwarding.answer(q, 0);
  assert.equal(d.kind, 'forward');
  if (d.kind === 'forward') {
    assert.equal(d.query, q, 'the very query buffer is handed on');
    assert.equal(d.edns, true);
    assert.equal(d.maxUdpBytes, 4096);
  }
  // Other classes (CHAOS) are never ours.
  assert.equal(forwarding.answer(query('db.plant.internal', 'TXT', { klass: 'CH' }), 0).kind, 'forward');
  assert.equal(reply(forwarding.answer(query('db.plant.internal'), 0)).flag_ra, true, 'RA with an upstream');
});

test('FORMERR keeps the id: garbage, short header, truncated question, two questions, bad labels, impossible counts', () => {
  const { handler } = setup(true);
  const valid = query('db.plant.internal', 'A', { id: 0xabcd });
  const twoQuestions = dnsPacket.encode({ type: 'query', id: 0xabcd, questions: [{ name: 'a', type: 'A' }, { name: 'b', type: 'A' }] });
  const noQuestion = dnsPacket.encode({ type: 'query', id: 0xabcd, questions: [] });
  const pointerName = Buffer.concat([valid.subarray(0, 12), Buffer.from([0xc0, 0x00, 0, 1, 0, 1])]);
  const reservedLabel = Buffer.concat([valid.subarray(0, 12), Buffer.from([0x41, 0x61, 0, 0, 1, 0, 1])]);
  const hugeCounts = Buffer.from(valid);
  hugeCounts.writeUInt16BE(0xffff, 10);
  const cases: [string, Buffer][] = [
    ['garbage', Buffer.from([0xab, 0xcd, 0x01, 0x02, 0x03])],
    ['header only, 11 bytes', valid.subarray(0, 11)],
    ['question cut', valid.subarray(0, valid.length - 3)],
    ['name runs off the end', valid.subarray(0, 16)],
    ['two questions', twoQuestions],
    ['no question', noQuestion],
    ['compression pointer in the question', pointerName],
    ['0x40 label type', reservedLabel],
    ['ARCOUNT 65535', hugeCounts],
  ];
  for (const [what, q] of cases) {
    const d = handler.answer(q, 0);
    assert.equal(d.kind, 'reply', what);
    if (d.kind !== 'reply') continue;
    assert.equal(d.reply.readUInt16BE(0), 0xabcd, what);
    assert.equal(rcodeOf(d.reply), Rcode.FORMERR, what);
    assert.equal(d.reply[2]! & 0x80, 0x80, `${what}: QR set`);
    assert.doesNotThrow(() => dnsPacket.decode(d.reply), what);
  }
  assert.equal(handler.counters.formerr, cases.length);
});

test('drops: fewer than 2 bytes, and responses (answering them could loop)', () => {
  const { handler } = setup(true);
  assert.deepEqual(handler.answer(Buffer.alloc(0), 0), { kind: 'drop', reason: 'short' });
  assert.deepEqual(handler.answer(Buffer.from([1]), 0), { kind: 'drop', reason: 'short' });
  const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'db.plant.internal', type: 'A' }] });
  assert.deepEqual(handler.answer(response, 0), { kind: 'drop', reason: 'response' });
  assert.deepEqual(handler.answer(Buffer.from([0, 1, 0x80]), 0), { kind: 'drop', reason: 'response' });
});

test('opcodes other than QUERY get NOTIMP, opcode kept', () => {
  const { handler } = setup(true);
  const notify = query('db.plant.internal');
  notify.writeUInt16BE((4 << 11) | 0x0100, 2); // NOTIFY (RFC 1996)
  const d = handler.answer(notify, 0);
  assert.equal(d.kind, 'reply');
  if (d.kind !== 'reply') return;
  assert.equal(rcodeOf(d.reply), Rcode.NOTIMP);
  assert.equal((d.reply.readUInt16BE(2) >> 11) & 0xf, 4);
});

test('EDNS: OPT answered with our payload size and DO copied; version 1 gets BADVERS; two OPTs FORMERR', () => {
  const { handler } = setup(false);
  const r = reply(handler.answer(query('db.plant.internal', 'A', { edns: { do: true } }), 0));
  const opt = r.additionals?.find((a) => a.type === 'OPT');
  assert.ok(opt, 'OPT in the reply');
  assert.equal(opt.udpPayloadSize, 1232);
  assert.equal((opt.flags ?? 0) & dnsPacket.DNSSEC_OK, dnsPacket.DNSSEC_OK);
  assert.equal(reply(handler.answer(query('db.plant.internal'), 0)).additionals?.length, 0, 'no OPT when the query had none');
  const bad = reply(handler.answer(query('db.plant.internal', 'A', { edns: { version: 1 } }), 0));
  const badOpt = bad.additionals?.find((a) => a.type === 'OPT');
  // BADVERS = 16: header RCODE 0, OPT extended RCODE 1 (RFC 6891 §6.1.3).
  assert.equal(rcodeOf(bad.raw), 0);
  assert.equal(badOpt?.extendedRcode, 1);
  assert.deepEqual(bad.answers, []);
  const two = dnsPacket.encode({
    type: 'query', id: 5, questions: [{ name: 'db.plant.internal', type: 'A' }],
    additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 512, options: [] }, { name: '.', type: 'OPT', udpPayloadSize: 512, options: [] }],
  });
  assert.equal(rcodeOf(reply(handler.answer(two, 0)).raw), Rcode.FORMERR);
});

test('an exhausted pool answers SERVFAIL for new names and keeps serving held ones', () => {
  const pool = new AddressPool({ range: '100.64.0.0/30', reserved: [parseIpv4('100.64.0.1')!] });
  const handler = new DnsHandler(new InterceptedNames(pool, INTERCEPTS), { forwarding: false });
  assert.equal(reply(handler.answer(query('a.plant.internal'), 0)).answers?.[0]?.data, '100.64.0.2');
  assert.equal(reply(handler.answer(query('b.plant.internal'), 1)).rcode, 'SERVFAIL');
  assert.equal(reply(handler.answer(query('a.plant.internal'), 2)).answers?.[0]?.data, '100.64.0.2');
  assert.equal(handler.counters.poolExhausted, 1);
});

test('errorReply: SERVFAIL echoing the question, with OPT when asked; nothing for a query without an id', () => {
  const q = query('example.com', 'A', { id: 99 });
  const r = dnsPacket.decode(errorReply(q, Rcode.SERVFAIL, true, true)!);
  assert.equal(r.id, 99);
  assert.equal(r.rcode, 'SERVFAIL');
  assert.equal(r.flag_ra, true);
  assert.deepEqual(r.questions, [{ name: 'example.com', type: 'A', class: 'IN' }]);
  assert.equal(r.additionals?.[0]?.type, 'OPT');
  assert.equal(errorReply(Buffer.from([1]), Rcode.SERVFAIL), undefined);
  assert.equal(dnsPacket.decode(errorReply(Buffer.from([0, 7, 1]), Rcode.FORMERR)!).id, 7);
});

test('truncateReply keeps id, flags and question, sets TC and drops every record', () => {
  const { handler } = setup(false);
  const full = reply(handler.answer(query('db.plant.internal', 'A', { id: 42, edns: {} }), 0));
  const cut = dnsPacket.decode(truncateReply(full.raw));
  assert.equal(cut.id, 42);
  assert.equal(cut.flag_tc, true);
  assert.equal(cut.flag_aa, true);
  assert.deepEqual(cut.questions, full.questions);
  assert.deepEqual([cut.answers, cut.authorities, cut.additionals], [[], [], []]);
  // Even a reply without a readable question gives a well-formed header.
  assert.equal(dnsPacket.decode(truncateReply(Buffer.from([0, 9, 0x81, 0x80]))).id, 9);
});

/** Checks every property a decision must have for `q`. */
function checkDecision(q: Buffer, d: DnsDecision): void {
  if (d.kind === 'drop') {
    assert.ok(q.length < 2 || (q[2]! & 0x80) !== 0, 'only short queries and responses are dropped');
    return;
  }
  if (d.kind === 'forward') {
    assert.equal(d.query, q);
    return;
  }
  assert.equal(d.reply.readUInt16BE(0), q.readUInt16BE(0), 'reply id = query id');
  assert.equal(d.reply[2]! & 0x80, 0x80, 'QR set');
  dnsPacket.decode(d.reply); // our replies are always well-formed
}

test('fuzz: random bytes never throw; replies keep the id and decode', () => {
  const { handler } = setup(true, '100.64.0.0/28');
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
    const q = Buffer.from(bytes);
    checkDecision(q, handler.answer(q, 0));
  }), { numRuns: 3000 });
});

test('fuzz: mutated valid queries (flipped bytes, cuts, spliced tails) never throw; replies keep the id and decode', () => {
  const { handler } = setup(false, '100.64.0.0/28');
  const names = fc.constantFrom('db.plant.internal', 'a.plant.internal', 'x.y.plant.internal', 'example.com', '3.0.64.100.in-addr.arpa', '.');
  const types = fc.constantFrom('A', 'AAAA', 'PTR', 'ANY', 'MX', 'TXT', 'SRV', 'CNAME');
  const base = fc.tuple(names, types, fc.integer({ min: 0, max: 0xffff }), fc.boolean())
    .map(([name, type, id, edns]) => query(name, type, { id, edns: edns ? {} : undefined }));
  const mutation = fc.record({
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    cut: fc.option(fc.nat()),
    tail: fc.uint8Array({ maxLength: 40 }),
  });
  fc.assert(fc.property(base, mutation, (valid, m) => {
    let q = Buffer.concat([valid, Buffer.from(m.tail)]);
    for (const [at, value] of m.flips) q[at % q.length] = value;
    if (m.cut !== null) q = q.subarray(0, m.cut % (q.length + 1));
    checkDecision(q, handler.answer(q, 0));
  }), { numRuns: 3000 });
});

test('A answers parse back to addresses inside the pool', () => {
  const { handler, pool } = setup(false, '100.64.0.0/24');
  for (let i = 0; i < 20; i++) {
    const data = reply(handler.answer(query(`n${i}.plant.internal`), i)).answers?.[0]?.data;
    const ip = parseIpv4(String(data))!;
    assert.ok(pool.contains(ip));
    assert.equal(formatIpv4(ip), data);
  }
});
