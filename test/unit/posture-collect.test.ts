/**
 * The router's posture collector (src/router/posture.ts) on this machine:
 * the running node binary is reported running with its SHA-512, a missing
 * path is not, MACs agree with `ip -o link`, OS agrees with uname, hashes are
 * cached by file identity, size and mtime, and PostureWatcher reports only
 * changes and leaves no timer behind. Linux only (the router's platform).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyPostureResponses, evaluatePostureCheck, type PostureCheck, type PostureResponse } from '../../src/policy/index.js';
import { collectPosture, FileHashCache, hostMacAddresses, PostureWatcher } from '../../src/router/posture.js';

const dir = mkdtempSync(join(tmpdir(), 'ztedge-posture-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha512 = (path: string): string => createHash('sha512').update(readFileSync(path)).digest('hex');

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' });
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed (install iproute2 and coreutils: apt-get install iproute2 coreutils)`, { cause: err });
  }
}

function processItem(responses: PostureResponse[], path: string): Extract<PostureResponse, { typeId: 'PROCESS' }> {
  const p = responses.find((r) => r.typeId === 'PROCESS' && r.path === path);
  assert.ok(p !== undefined && p.typeId === 'PROCESS', `no PROCESS item for ${path}`);
  return p;
}

describe('collectPosture', { skip: process.platform !== 'linux' && 'Linux only' }, () => {
  test('the node binary running this test is running, with its SHA-512; a missing path is not', async () => {
    const missing = join(dir, 'no-such-binary');
    const responses = await collectPosture({ processPaths: [process.execPath, missing, process.execPath], hashCache: new FileHashCache() });
    assert.deepEqual(responses.map((r) => r.id), ['mac', 'os', `process:${process.execPath}`, `process:${missing}`, 'domain']);
    assert.deepEqual(processItem(responses, process.execPath), {
      id: `process:${process.execPath}`, typeId: 'PROCESS', path: process.execPath, isRunning: true, hash: sha512(process.execPath),
    });
    assert.deepEqual(processItem(responses, missing), { id: `process:${missing}`, typeId: 'PROCESS', path: missing, isRunning: false });
  });

  test('a symlink to a running binary counts as running (exe links name the real path)', async () => {
    const link = join(dir, 'node-link');
    symlinkSync(process.execPath, link);
    const p = processItem(await collectPosture({ processPaths: [link] }), link);
    assert.equal(p.isRunning, true);
    assert.equal(p.hash, sha512(process.execPath));
  });

  test('an existing file nobody runs is not running and is not hashed', async () => {
    const idle = join(dir, 'idle.sh');
    writeFileSync(idle, '#!/bin/sh\n');
    const cache = new FileHashCache();
    assert.deepEqual(processItem(await collectPosture({ processPaths: [idle], hashCache: cache }), idle), { id: `process:${idle}`, typeId: 'PROCESS', path: idle, isRunning: false });
    assert.equal(cache.hashesComputed, 0);
  });

  test('MACs are those `ip -o link` shows for the interfaces that have addresses', async () => {
    const linkMac = new Map<string, string>();
    for (const line of run('ip', ['-o', 'link']).split('\n')) {
      const m = /^\d+:\s+([^:@\s]+)(?:@\S+)?:.*link\/ether ([0-9a-f:]{17})/.exec(line);
      if (m !== null) linkMac.set(m[1] as string, m[2] as string);
    }
    const withAddress = new Set<string>();
    for (const line of run('ip', ['-o', 'addr']).split('\n')) {
      const m = /^\d+:\s+([^:@\s]+)/.exec(line);
      if (m !== null) withAddress.add(m[1] as string);
    }
    const expected = [...new Set([...withAddress].map((n) => linkMac.get(n)).filter((m): m is string => m !== undefined && m !== '00:00:00:00:00:00'))].sort();
    const responses = await collectPosture({ processPaths: [] });
    assert.deepEqual(responses[0], { id: 'mac', typeId: 'MAC', macAddresses: expected });
    assert.deepEqual(hostMacAddresses(), expected);
    for (const mac of expected) assert.ok([...linkMac.values()].includes(mac));
  });

  test('OS is uname: Linux, kernel release as version, kernel version as build; domain is empty', async () => {
    const responses = await collectPosture({ processPaths: [] });
    assert.deepEqual(responses[1], { id: 'os', typeId: 'OS', type: 'Linux', version: run('uname', ['-r']).trim(), build: run('uname', ['-v']).trim() });
    assert.deepEqual(responses[2], { id: 'domain', typeId: 'DOMAIN', domain: '' });
  });

  test('what it reports passes the checks written for this host', async () => {
    const hash = sha512(process.execPath);
    const responses = await collectPosture({ processPaths: [process.execPath] });
    const now = Date.now();
    const data = applyPostureResponses(undefined, responses, new Date(now).toISOString());
    const macs = hostMacAddresses();
    const checks: PostureCheck[] = [
      { id: 'p', name: 'node', typeId: 'PROCESS', roleAttributes: [], data: { process: { osType: 'Linux', path: process.execPath, hashes: [hash.toUpperCase()] } } },
      { id: 'o', name: 'kernel', typeId: 'OS', roleAttributes: [], data: { operatingSystems: [{ type: 'Linux', versions: ['>=3.0'] }] } },
      ...(macs.length > 0 ? [{ id: 'm', name: 'macs', typeId: 'MAC' as const, roleAttributes: [], data: { macAddresses: [macs[0]!.toUpperCase().replaceAll(':', '-')] } }] : []),
    ];
    for (const c of checks) {
      const r = evaluatePostureCheck(c, data, now);
      assert.equal(r.pass, true, r.reason);
    }
    const wrong = evaluatePostureCheck({ ...checks[0]!, data: { process: { osType: 'Linux', path: process.execPath, hashes: ['00'.repeat(64)] } } } as PostureCheck, data, now);
    assert.match(wrong.reason, new RegExp(`has SHA-512 ${hash.slice(0, 16)}…`));
  });
});

describe('FileHashCache', () => {
  test('hashes once per file identity, size and mtime', async () => {
    const f = join(dir, 'blob');
    writeFileSync(f, 'one');
    const cache = new FileHashCache();
    assert.equal(await cache.sha512(f), sha512(f));
    assert.equal(await cache.sha512(f), sha512(f));
    assert.equal(cache.hashesComputed, 1);
    writeFileSync(f, 'three');
    assert.equal(await cache.sha512(f), sha512(f), 'size changed');
    assert.equal(cache.hashesComputed, 2);
    writeFileSync(f, 'THREE');
    utimesSync(f, new Date(Date.now() + 60_000), new Date(Date.now() + 60_000));
    assert.equal(await cache.sha512(f), sha512(f), 'same size, new mtime');
    assert.equal(cache.hashesComputed, 3);
    assert.equal(await cache.sha512(join(dir, 'absent')), undefined);
    assert.equal(await cache.sha512(dir), undefined, 'a directory has no hash');
  });

  test('keeps at most maxEntries files', async () => {
    const cache = new FileHashCache(2);
    const files = ['x1', 'x2', 'x3'].map((n) => join(dir, n));
    for (const f of files) writeFileSync(f, f);
    for (const f of files) await cache.sha512(f);
    await cache.sha512(files[2]!);
    assert.equal(cache.hashesComputed, 3, 'the newest stays cached');
    await cache.sha512(files[0]!);
    assert.equal(cache.hashesComputed, 4, 'the oldest was evicted');
  });
});

describe('PostureWatcher', () => {
  const item = (version: string): PostureResponse[] => [{ id: 'os', typeId: 'OS', type: 'Linux', version }];

  test('reports the first collection and then only changes', async () => {
    const versions = ['6.1', '6.1', '6.2', '6.2', '6.1'];
    const seen: string[] = [];
    const w = new PostureWatcher({
      processPaths: [],
      onChange: (r) => seen.push((r[0] as { version: string }).version),
      collect: async () => item(versions.shift() ?? 'end'),
    });
    const changed: boolean[] = [];
    for (let i = 0; i < 5; i++) changed.push(await w.poll());
    assert.deepEqual(changed, [true, false, true, false, true]);
    assert.deepEqual(seen, ['6.1', '6.2', '6.1']);
    assert.deepEqual(w.latest, item('6.1'));
  });

  test('overlapping polls share one collection', async () => {
    let calls = 0;
    const w = new PostureWatcher({ processPaths: [], onChange: () => {}, collect: async () => { calls++; await new Promise((r) => setImmediate(r)); return item('1'); } });
    const [a, b] = await Promise.all([w.poll(), w.poll()]);
    assert.deepEqual([a, b, calls], [true, true, 1]);
  });

  test('start collects at once and every interval; errors go to onError; stop leaves no timer', async () => {
    const paths: string[][] = [];
    const errors: unknown[] = [];
    let n = 0;
    const changes: PostureResponse[][] = [];
    const w = new PostureWatcher({
      processPaths: ['/a'],
      intervalMs: 5,
      onChange: (r) => changes.push(r),
      onError: (err) => errors.push(err),
      collect: async (p) => {
        paths.push([...p]);
        n++;
        if (n === 2) throw new Error('proc unreadable');
        return item(String(Math.min(n, 4)));
      },
    });
    w.start();
    w.start();
    while (n < 6) await new Promise((r) => setTimeout(r, 5));
    w.setProcessPaths(['/a', '/b']);
    while (!paths.some((p) => p.length === 2)) await new Promise((r) => setTimeout(r, 5));
    w.stop();
    await new Promise((r) => setTimeout(r, 20));
    const after = n;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(n, after, 'no collection after stop');
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /proc unreadable/);
    assert.deepEqual(changes.map((c) => (c[0] as { version: string }).version), ['1', '3', '4']);
    assert.deepEqual(paths[0], ['/a']);
    assert.deepEqual(paths.at(-1), ['/a', '/b']);
    assert.deepEqual(process.getActiveResourcesInfo().filter((r) => /Timeout/.test(r)), []);
  });
});
