import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { MemoryReleaser, findAddonFunction, fullGc, memoryFigures, readProcStatus, reportMemoryOnSignal, youngGc } from '../../src/router/memory.js';
import { ROUTER_ENV, ROUTER_NODE_FLAGS } from '../../src/router/node-flags.js';

const ROOT = join(import.meta.dirname, '..', '..');
const MiB = 1024 * 1024;

test('memory figures: process, heap spaces and code in MiB, /proc on Linux', () => {
  const f = memoryFigures();
  assert.ok(f.rss > 1 && f.heapUsed > 0 && f.heapUsed <= f.heapTotal, JSON.stringify(f));
  assert.ok(Number.isFinite(f.external) && Number.isFinite(f.arrayBuffers));
  assert.ok(f.spaces.old !== undefined && f.spaces.new !== undefined, `spaces: ${Object.keys(f.spaces).join(', ')}`);
  for (const s of Object.values(f.spaces)) assert.ok(s.used >= 0 && s.resident >= 0);
  assert.ok(f.code.bytecode > 0 && f.code.machineCode > 0);
  if (process.platform === 'linux') {
    assert.ok(f.proc !== undefined && f.proc.rssAnon > 0 && f.proc.rssFile > 0, JSON.stringify(f.proc));
    assert.ok(f.proc.rssAnon + f.proc.rssFile <= f.rss + 2, 'anon + file is (about) the RSS');
  }
});

test('readProcStatus takes RssAnon and RssFile from status text, undefined without them', () => {
  const text = 'Name:\tnode\nVmRSS:\t   65000 kB\nRssAnon:\t   22528 kB\nRssFile:\t   41984 kB\nRssShmem:\t       0 kB\n';
  assert.deepEqual(readProcStatus(text), { rssAnon: 22, rssFile: 41 });
  assert.equal(readProcStatus('Name:\tnode\nVmRSS:\t 1 kB\n'), undefined);
});

test('kill -USR2 logs one line of figures; the returned function removes the handler', () => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } });
  const before = process.listenerCount('SIGUSR2');
  const stop = reportMemoryOnSignal(log);
  assert.equal(process.listenerCount('SIGUSR2'), before + 1);
  process.emit('SIGUSR2', 'SIGUSR2');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.msg, 'memory figures');
  assert.equal(lines[0]!.subsys, 'memory');
  assert.ok(((lines[0]!.memory as { rss: number }).rss) > 1);
  assert.equal(lines[0]!.releases, undefined);
  stop();
  assert.equal(process.listenerCount('SIGUSR2'), before);
  const stop2 = reportMemoryOnSignal(log, { releases: 3 });
  process.emit('SIGUSR2', 'SIGUSR2');
  assert.equal(lines[1]!.releases, 3, 'releases counted when a releaser runs');
  stop2();
  assert.equal(process.listenerCount('SIGUSR2'), before);
});

/** A releaser over fake readings and a fake clock: the test sets `rss`, `busy` and `now`; calls are recorded in order. */
function fakeReleaser() {
  const state = { rss: 60 * MiB, busy: 0, now: 0, calls: [] as string[] };
  const r = new MemoryReleaser({
    gc: () => { state.calls.push('gc'); },
    fullGc: () => { state.calls.push('fullGc'); },
    arrayBufferBytes: () => 0,
    trim: () => { state.calls.push('trim'); state.rss -= 20 * MiB; },
    rssBytes: () => state.rss,
    busyRatio: () => state.busy,
    nowMs: () => state.now,
    checkEveryMs: 60_000,
    quietForMs: 30_000,
    growthBytes: 8 * MiB,
    followUpBytes: 100 * MiB, // follow-ups have a test of their own
    maxUnproductiveFollowUps: 0,
  });
  return { r, state };
}

test('releaser: start-up garbage goes on the first two ticks (scavenge, then trim)', () => {
  const { r, state } = fakeReleaser();
  r.start();
  assert.deepEqual(state.calls, []);
  assert.equal(r.check(), 'collected');
  assert.equal(r.check(), 'trimmed');
  assert.deepEqual(state.calls, ['gc', 'trim']);
  assert.equal(r.releases, 1);
  r.stop();
});

test('releaser: a release that freed 2 MiB or more is followed by another after 3 s more of quiet; one that freed less, by one more after 12 s', () => {
  let freeable = [12, 5, 1, 0].map((n) => n * MiB);
  const state = { rss: 50 * MiB, busy: 0, now: 0 };
  const r = new MemoryReleaser({
    gc: () => undefined,
    arrayBufferBytes: () => 0,
    trim: () => { state.rss -= freeable.shift() ?? 0; },
    rssBytes: () => state.rss,
    busyRatio: () => state.busy,
    nowMs: () => state.now,
    checkEveryMs: 60_000,
  });
  const steps: string[] = [];
  r.waitMs = 12_000; // backed off by earlier bursts: follow-ups still come 3 s apart
  r.start();
  for (let i = 0; i < 40; i++) { state.now += 1000; const step = r.check(); if (step !== 'none') steps.push(`${i}:${step}`); }
  // start-up (12 MiB freed) → follow-up 3 s later (5 MiB) → another (1 MiB: under 2) → one more after 12 s
  // (0 MiB) → none: two in a row freed too little, and no growth.
  assert.deepEqual(steps, ['0:collected', '1:trimmed', '5:collected', '6:trimmed', '10:collected', '11:trimmed', '24:collected', '25:trimmed']);
  assert.equal(state.rss, 32 * MiB);
  freeable = [];
  r.stop();
});

test('releaser: after load, scavenge once quiet for 30 s and grown by 8 MiB, trim on the next tick', () => {
  const { r, state } = fakeReleaser();
  r.start();
  r.check(); // start-up release: scavenge…
  r.check(); // …and trim: floor 40 MiB
  state.calls.length = 0;
  // A burst: busy ticks, the RSS grows.
  state.rss = 90 * MiB;
  state.busy = 0.7;
  for (let i = 0; i < 5; i++) { state.now += 1000; assert.equal(r.check(), 'none', 'never under load'); }
  // Quiet, but not for long enough yet; a short burst restarts the count.
  state.busy = 0.01;
  state.now += 1000;
  assert.equal(r.check(), 'none');
  state.now += 20_000;
  assert.equal(r.check(), 'none');
  state.busy = 0.5;
  state.now += 1000;
  assert.equal(r.check(), 'none');
  state.busy = 0.01;
  state.now += 1000;
  assert.equal(r.check(), 'none', 'quiet again: the 30 s start over');
  state.now += 29_000;
  assert.equal(r.check(), 'none');
  state.now += 1000;
  assert.equal(r.check(), 'collected', '30 s quiet and 50 MiB over the floor');
  state.now += 1000;
  state.busy = 0.9;
  assert.equal(r.check(), 'trimmed', 'the trim follows on the next tick, busy or not');
  assert.deepEqual(state.calls, ['gc', 'trim']);
  assert.equal(r.releases, 2);
  // Floor now 70 MiB: still quiet later, but 75 MiB is not 8 MiB of growth.
  state.busy = 0;
  state.rss = 75 * MiB;
  for (let i = 0; i < 40; i++) { state.now += 1000; assert.equal(r.check(), 'none'); }
  r.stop();
});

test('releaser: what a release freed is judged on RssAnon: unmapped file pages that come back do not keep follow-ups going', () => {
  const state = { file: 40 * MiB, anon: 30 * MiB, busy: 0, now: 0 };
  const r = new MemoryReleaser({
    gc: () => undefined,
    arrayBufferBytes: () => 0,
    trim: () => { state.anon -= MiB / 2; },
    unmapFilePages: () => { state.file -= 10 * MiB; },
    rssBytes: () => state.file + state.anon,
    anonBytes: () => state.anon,
    busyRatio: () => state.busy,
    nowMs: () => state.now,
    checkEveryMs: 60_000,
  });
  r.start();
  let releases = 0;
  for (let i = 0; i < 60; i++) {
    state.now += 1000;
    state.file = Math.min(state.file + 2 * MiB, 40 * MiB); // idle code maps its pages again
    if (r.check() === 'trimmed') releases++;
  }
  assert.equal(releases, 2, 'the start-up release and its one follow-up: VmRSS fell and grew back by 10 MiB, RssAnon by 0.5');
  r.stop();
});

test('releaser: waits 3 s by default; RSS grown back soon after a release doubles the wait, a release that holds halves it', () => {
  const state = { rss: 60 * MiB, busy: 0, now: 0, calls: [] as string[], released: [] as Array<{ rssBeforeBytes: number; rssAfterBytes: number; waitMs: number }> };
  const r = new MemoryReleaser({
    gc: () => { state.calls.push('gc'); },
    arrayBufferBytes: () => 0,
    trim: () => { state.calls.push('trim'); state.rss -= 20 * MiB; },
    unmapFilePages: () => { state.calls.push('unmap'); },
    onRelease: (info) => { state.released.push(info); },
    followUpBytes: 100 * MiB,
    maxUnproductiveFollowUps: 0,
    rssBytes: () => state.rss,
    busyRatio: () => state.busy,
    nowMs: () => state.now,
    checkEveryMs: 60_000,
  });
  const tick = (busy: number, ms = 1000): string => { state.busy = busy; state.now += ms; return r.check(); };
  const burst = (): void => { state.rss += 30 * MiB; for (let i = 0; i < 3; i++) assert.equal(tick(0.8), 'none'); };
  /** Quiet ticks until a release begins; returns how many it took. */
  const quietUntilRelease = (): number => {
    for (let i = 1; i <= 120; i++) if (tick(0.01) === 'collected') { assert.equal(tick(0.01), 'trimmed'); return i; }
    return -1;
  };
  r.start();
  assert.equal(r.check(), 'collected');
  assert.equal(r.check(), 'trimmed');
  assert.deepEqual(state.calls, ['gc', 'trim', 'unmap'], 'file pages unmapped with every trim, start-up too');
  assert.equal(r.waitMs, 3000);
  burst();
  assert.equal(quietUntilRelease(), 4, 'first quiet tick starts the count; released 3 s later');
  assert.deepEqual(state.released.at(-1), { rssBeforeBytes: 70 * MiB, rssAfterBytes: 50 * MiB, waitMs: 3000, full: false });
  burst();
  assert.equal(r.waitMs, 6000, 'RSS grown back within 30 s of the release: wait twice as long');
  assert.equal(quietUntilRelease(), 7);
  burst();
  assert.equal(r.waitMs, 12_000);
  for (let i = 0; i < 6; i++) { burst(); for (let q = 0; q < 2; q++) tick(0.01); }
  assert.equal(r.waitMs, 12_000, 'bursts 3 s apart: no release in their gaps, so nothing to judge');
  assert.equal(quietUntilRelease(), 11, 'the quiet count began in the last gap (2 ticks)');
  for (let i = 0; i < 40; i++) assert.equal(tick(0), 'none', 'quiet: no release without growth');
  assert.equal(r.waitMs, 6000, 'the release held for 30 s: the wait halves');
  state.rss += 2 * MiB;
  for (let i = 0; i < 5; i++) tick(0.5);
  burst();
  assert.equal(quietUntilRelease(), 7);
  for (let i = 0; i < 40; i++) tick(0);
  assert.equal(r.waitMs, 3000, 'never below quietForMs');
  for (let i = 0; i < 6; i++) { burst(); assert.ok(quietUntilRelease() > 0); }
  burst();
  assert.equal(r.waitMs, 12_000, 'capped at 12 s');
  assert.equal(state.calls.filter((c) => c === 'unmap').length, r.releases);
  assert.equal(state.released.length, r.releases, 'told of every release, the start-up one too');
  r.stop();
});

test('releaser: one full GC per quiet spell, after 20 s of quiet, while 4 MiB or more of ArrayBuffers are still held', () => {
  const state = { ab: 10 * MiB, busy: 0, now: 0, calls: [] as string[], full: [] as boolean[] };
  const r = new MemoryReleaser({
    onRelease: ({ full }) => { state.full.push(full); },
    gc: () => { state.calls.push('gc'); },
    fullGc: () => { state.calls.push('fullGc'); state.ab = MiB / 2; },
    arrayBufferBytes: () => state.ab,
    trim: () => { state.calls.push('trim'); },
    rssBytes: () => 40 * MiB,
    busyRatio: () => state.busy,
    nowMs: () => state.now,
    checkEveryMs: 60_000,
    maxUnproductiveFollowUps: 0,
  });
  const tick = (busy: number): string => { state.busy = busy; state.now += 1000; return r.check(); };
  r.start();
  r.check();
  r.check(); // start-up release
  const steps: string[] = [];
  for (let i = 1; i <= 80; i++) { const step = tick(0.01); if (step !== 'none') steps.push(`${i}:${step}`); }
  assert.deepEqual(steps, ['21:collected', '22:trimmed'], 'the spell began on the first quiet tick; 20 s later the full GC, then the trim');
  assert.deepEqual(state.calls, ['gc', 'trim', 'fullGc', 'trim'], 'once per spell, however long it lasts');
  assert.deepEqual(state.full, [false, true], 'the release is told it began with the full GC');
  // Traffic ends the spell; the next one gets its own full GC, but only while Buffers are still held.
  tick(0.6);
  state.ab = 3 * MiB;
  for (let i = 0; i < 40; i++) assert.equal(tick(0.01), 'none', 'under 4 MiB held: no full GC');
  tick(0.6);
  state.ab = 12 * MiB;
  for (let i = 0; i < 20; i++) assert.equal(tick(0.01), 'none');
  assert.equal(tick(0.01), 'collected');
  assert.equal(tick(0.01), 'trimmed');
  assert.equal(state.calls.filter((c) => c === 'fullGc').length, 2);
  r.stop();
});

/** 16 MiB of Buffers kept past three scavenges (promoted to the old generation), then dropped; nothing of them stays on the caller's stack. */
function promoteAndDrop(): void {
  const held: Buffer[] = [];
  for (let i = 0; i < 64; i++) held.push(Buffer.allocUnsafeSlow(256 * 1024).fill(i));
  for (let i = 0; i < 3; i++) youngGc();
  held.length = 0;
}

test('fullGc frees Buffers that reached the old generation before they died, which a scavenge leaves', async () => {
  fullGc();
  const before = process.memoryUsage().arrayBuffers;
  promoteAndDrop();
  youngGc();
  youngGc();
  const afterScavenges = process.memoryUsage().arrayBuffers;
  assert.ok(afterScavenges - before >= 15 * MiB, `promoted Buffers outlive scavenges (${((afterScavenges - before) / MiB).toFixed(1)} MiB held)`);
  fullGc();
  // V8 may finish freeing the backing stores on its sweeper thread: give it a few turns of the loop.
  for (let i = 0; i < 50 && process.memoryUsage().arrayBuffers >= before + 4 * MiB; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(process.memoryUsage().arrayBuffers < before + 4 * MiB, `the full GC freed them (${((process.memoryUsage().arrayBuffers - before) / MiB).toFixed(1)} MiB left)`);
});

test('releaser: stop() drops a trim still due', () => {
  const { r, state } = fakeReleaser();
  r.start();
  r.stop();
  assert.equal(r.check(), 'none');
  assert.deepEqual(state.calls, []);
});

test('releaser timer is unref\'d (keeps no process alive), started once, removed by stop()', () => {
  const { r } = fakeReleaser();
  const timerOf = (): NodeJS.Timeout | undefined => (r as unknown as { timer?: NodeJS.Timeout }).timer;
  const before = process.getActiveResourcesInfo().length;
  r.start();
  const t = timerOf();
  assert.ok(t !== undefined && !t.hasRef());
  r.start();
  assert.equal(timerOf(), t, 'one timer, however often start() is called');
  assert.equal(process.getActiveResourcesInfo().length, before);
  r.stop();
  assert.equal(timerOf(), undefined);
});

test('findAddonFunction: the addon\'s function bound to it; undefined when the addon is missing or lacks it', () => {
  assert.equal(findAddonFunction(() => { throw new Error('Cannot find module'); }, 'mallocTrim'), undefined);
  assert.equal(findAddonFunction(() => ({ open: () => 0 }), 'mallocTrim'), undefined);
  const addon = { released: 0, mallocTrim(this: { released: number }) { this.released++; return true; } };
  const trim = findAddonFunction<() => unknown>(() => addon, 'mallocTrim');
  assert.ok(trim !== undefined);
  assert.equal(trim(), true);
  assert.equal(addon.released, 1, 'called on the addon object');
  assert.equal(findAddonFunction(() => addon, 'unmapFilePages'), undefined);
});

test('youngGc frees Buffers that died young, without leaving a gc global behind', () => {
  const hadGlobal = typeof (globalThis as { gc?: unknown }).gc === 'function';
  youngGc();
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 64; i++) Buffer.allocUnsafeSlow(256 * 1024).fill(i);
  const piled = process.memoryUsage().arrayBuffers;
  youngGc();
  youngGc();
  assert.ok(piled - before >= 15 * MiB, `64 × 256 KiB allocated (${(piled - before) / MiB} MiB)`);
  assert.ok(process.memoryUsage().arrayBuffers < before + 4 * MiB, 'dead Buffers freed');
  assert.equal(typeof (globalThis as { gc?: unknown }).gc === 'function', hadGlobal);
});

test('the bundle shebang and the systemd units start routers as ROUTER_NODE_FLAGS and ROUTER_ENV say', () => {
  const build = readFileSync(join(ROOT, 'scripts', 'build.mjs'), 'utf8');
  const literal = /const ROUTER_ENV = (\{[^}]*\});/.exec(build)?.[1];
  assert.ok(literal !== undefined, 'scripts/build.mjs declares ROUTER_ENV');
  assert.deepEqual(JSON.parse(literal.replace(/'/g, '"').replace(/(\w+):/g, '"$1":')), { ...ROUTER_ENV });
  const units = readdirSync(join(ROOT, 'systemd')).filter((f) => f.startsWith('ztedge-router') && f.endsWith('.service'));
  assert.ok(units.length >= 2, units.join(', '));
  for (const u of units) {
    const unit = readFileSync(join(ROOT, 'systemd', u), 'utf8');
    for (const [k, v] of Object.entries(ROUTER_ENV)) assert.match(unit, new RegExp(`^Environment=${k}=${v}$`, 'm'), u);
    const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
    for (const flag of ROUTER_NODE_FLAGS) assert.ok(exec.includes(` ${flag} `), `${u}: ExecStart has ${flag}`);
  }
});
