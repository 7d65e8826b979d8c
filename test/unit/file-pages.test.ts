/**
 * Unmapping a quiet router's untouched file pages (src/router/file-pages.ts):
 * which mappings are chosen from /proc/self/smaps (only clean, read-only file
 * mappings: a wrong choice would throw away written pages), and the real
 * madvise through the `@ztedge/tun` addon on this very process, which must
 * keep running correctly afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseSmaps, unmapIdleFilePages, unmappableFileMappings, type UnmapFn } from '../../src/router/file-pages.js';
import { loadTunAddon } from '../../src/tun/index.js';

function mapping(range: string, perms: string, path: string, rssKb: number, anonymousKb: number | undefined): string {
  const lines = [`${range} ${perms} 00000000 08:01 123456${path === '' ? '' : '                    ' + path}`, 'Size:               1024 kB', `Rss:                ${rssKb} kB`, 'Pss:                 100 kB'];
  if (anonymousKb !== undefined) lines.push(`Anonymous:          ${anonymousKb} kB`);
  lines.push('VmFlags: rd ex mr mw me sd');
  return lines.join('\n');
}

const SAMPLE = [
  mapping('55d4c0000000-55d4c1000000', 'r--p', '/usr/bin/node', 14000, 0),
  mapping('55d4c1000000-55d4c2000000', 'r-xp', '/usr/bin/node', 17000, 0),
  mapping('55d4c2000000-55d4c2100000', 'r--p', '/usr/bin/node', 400, 400), // RELRO: written by the loader
  mapping('55d4c2100000-55d4c2120000', 'rw-p', '/usr/bin/node', 120, 120),
  mapping('55d4c3000000-55d4c4000000', 'rw-p', '[heap]', 2700, 2700),
  mapping('7f0000000000-7f0000100000', 'r-xp', '/usr/lib/x86_64-linux-gnu/libc.so.6', 1000, 0),
  mapping('7f0000100000-7f0000101000', 'r--p', '/usr/lib/x86_64-linux-gnu/libc.so.6', 0, 0), // nothing resident
  mapping('7f0000200000-7f0000300000', 'rw-s', '/dev/shm/x', 50, 0),
  mapping('7f0000300000-7f0000301000', 'r--s', '/dev/dri/card0', 4, 0),
  mapping('7f0000400000-7f0000401000', 'r--p', '/memfd:v8 (deleted)', 4, 0),
  mapping('7f0000500000-7f0000600000', 'rw-p', '', 3600, 3600),
  mapping('7ffd00000000-7ffd00002000', 'r-xp', '[vdso]', 8, 0),
  mapping('7f0000600000-7f0000700000', 'r-xp', '/usr/lib/libodd.so', 64, undefined), // no Anonymous line
].join('\n');

test('parseSmaps: every mapping with its range, permissions, path and sizes', () => {
  const ms = parseSmaps(SAMPLE);
  assert.equal(ms.length, 13);
  assert.deepEqual(ms[1], { start: 0x55d4c1000000, end: 0x55d4c2000000, perms: 'r-xp', path: '/usr/bin/node', rssKb: 17000, anonymousKb: 0 });
  assert.equal(ms[9]!.path, '/memfd:v8 (deleted)');
  assert.equal(ms[10]!.path, '');
  assert.equal(ms[12]!.anonymousKb, -1, 'a missing line reads as unknown');
});

test('only clean, read-only, resident file mappings are chosen (never RELRO, writable, device, memfd or special ones)', () => {
  const chosen = unmappableFileMappings(parseSmaps(SAMPLE)).map((m) => `${m.perms} ${m.path} ${m.rssKb}`);
  assert.deepEqual(chosen, ['r--p /usr/bin/node 14000', 'r-xp /usr/bin/node 17000', 'r-xp /usr/lib/x86_64-linux-gnu/libc.so.6 1000']);
});

test('malformed smaps text chooses nothing and throws nothing', () => {
  for (const text of ['', 'garbage\n\n', 'Rss: 12 kB\nAnonymous: 0 kB', '55d4c0000000-55d4c1000000 r--p 0 08:01 1 /usr/bin/node\nRss: many kB\nAnonymous: 0 kB',
    'zzzz-yyyy r--p 00000000 08:01 1 /x\nRss: 4 kB\nAnonymous: 0 kB', '1000-0800 r--p 00000000 08:01 1 /x\nRss: 4 kB\nAnonymous: 0 kB']) {
    assert.deepEqual(unmappableFileMappings(parseSmaps(text)), [], JSON.stringify(text));
  }
});

test('unmapIdleFilePages: calls unmap per chosen mapping, counts refusals, does nothing without /proc', () => {
  const calls: Array<[number, number]> = [];
  const unmap: UnmapFn = (addr, len) => { calls.push([addr, len]); return addr === 0x7f0000000000 ? -22 : 0; };
  assert.deepEqual(unmapIdleFilePages(unmap, () => SAMPLE), { mappings: 2, kb: 31000, failed: 1 });
  assert.deepEqual(calls, [[0x55d4c0000000, 0x1000000], [0x55d4c1000000, 0x1000000], [0x7f0000000000, 0x100000]]);
  assert.deepEqual(unmapIdleFilePages(() => { throw new Error('not called'); }, () => undefined), { mappings: 0, kb: 0, failed: 0 });
});

function rssFileKb(): number {
  return Number(/^RssFile:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}

test('the addon unmaps this process\'s file pages for real, and the process keeps working', () => {
  const addon = loadTunAddon();
  const unmap = addon.unmapFilePages;
  assert.ok(unmap !== undefined, 'this build of the addon exports unmapFilePages');
  const bound: UnmapFn = (a, l) => unmap.call(addon, a, l);
  // Work done before: the same work after must give the same answers (nothing written was lost).
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const data = Buffer.alloc(1 << 20, 0x5a);
  const digest = createHash('sha256').update(data).digest('hex');
  const before = rssFileKb();
  const r = unmapIdleFilePages(bound);
  const after = rssFileKb();
  assert.equal(r.failed, 0);
  assert.ok(r.mappings >= 2 && r.kb > 10_000, `unmapped ${r.mappings} mappings, ${r.kb} kB`);
  assert.ok(before - after > 10_000, `RssFile ${before} → ${after} kB`);
  assert.equal(createHash('sha256').update(data).digest('hex'), digest);
  const sig = sign('sha256', data, keys.privateKey);
  assert.ok(verify('sha256', data, keys.publicKey, sig));
  assert.equal(JSON.parse(JSON.stringify({ a: [1, 2, 3] })).a[2], 3);
  assert.ok(rssFileKb() < before, 'pages come back only as they are touched');
});

test('the addon\'s unmapFilePages checks its arguments and returns -errno rather than throwing', () => {
  const addon = loadTunAddon();
  const unmap = addon.unmapFilePages!.bind(addon);
  assert.throws(() => unmap(4097, 4096), { name: 'TypeError', message: /whole pages/ });
  assert.throws(() => unmap(4096, 100), { name: 'TypeError', message: /whole pages/ });
  assert.throws(() => unmap(-4096, 4096), { name: 'TypeError', message: /addr/ });
  assert.throws(() => (unmap as (a: unknown, b: unknown) => number)('x', 4096), { name: 'TypeError' });
  // An address range with nothing mapped: madvise says ENOMEM (12).
  assert.equal(unmap(4096, 4096), -12);
});
