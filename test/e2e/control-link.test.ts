/**
 * Router control links against the real controller process: a router's
 * PolicySync gets a signed full snapshot, then signed deltas within a
 * second of each API change; its cache (the signed chain) serves it while
 * the controller is down; a damaged, truncated or foreign cache is refused
 * whole; a deleted router is cut off.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import { loadIdentityFile, type LoadedIdentity } from '../../src/identity/file.js';
import { FileKeyStore } from '../../src/keys/index.js';
import { signSnapshot } from '../../src/policy/signed.js';
import { sealSnapshot, type SnapshotPolicyView } from '../../src/policy/snapshot.js';
import { PolicySync } from '../../src/router/policy-sync.js';
import { adminToken, api, removeDir, runCli, startControllerProcess, tempDir, type ControllerProcess } from '../helpers/controller.js';

const M = '/edge/management/v1';
let dir: string;
let ctrl: ControllerProcess;
let admin: string;
let identity: LoadedIdentity;
let routerId: string;
const lines: Record<string, unknown>[] = [];
const log = pino({ level: 'debug' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>); } });

before(async () => {
  dir = tempDir();
  ctrl = await startControllerProcess(join(dir, 'ctrl'));
  admin = await adminToken(ctrl);
  const r = await api(ctrl, 'POST', `${M}/edge-routers`, { token: admin, body: { name: 'r1' } });
  routerId = r.body.data.id;
  const d = await api(ctrl, 'GET', `${M}/edge-routers/${routerId}`, { token: admin });
  writeFileSync(join(dir, 'r1.jwt'), d.body.data.enrollmentJwt);
  const e = runCli(['enroll', '--jwt', join(dir, 'r1.jwt'), '--out', join(dir, 'r1.json')]);
  assert.equal(e.code, 0, e.stderr);
  identity = await loadIdentityFile(join(dir, 'r1.json'));
});

after(async () => {
  await ctrl?.stop();
  removeDir(dir);
});

function startSync(dataDir: string, updates: SnapshotPolicyView[]): PolicySync {
  const key = FileKeyStore.fromPem(identity.key.kind === 'pem' ? identity.key.pem : '', 'mem');
  return new PolicySync({ identity, routerId, key, dataDir, log, reconnect: { initialMs: 50, maxMs: 300 }, onUpdate: (v) => updates.push(v) });
}

async function until(cond: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - t0;
}

test('a full snapshot on connect, then a signed delta within a second of each change; the cache holds the signed chain', async () => {
  const updates: SnapshotPolicyView[] = [];
  const sync = startSync(join(dir, 'd1'), updates);
  try {
    await sync.start();
    assert.equal(sync.connected, true);
    assert.ok(sync.current()!.snapshot.identities.some((i) => i.id === routerId));
    const before = updates.length;
    const svc = await api(ctrl, 'POST', `${M}/services`, { token: admin, body: { name: 'pushed' } });
    assert.equal(svc.status, 201);
    const ms = await until(() => sync.current()!.snapshot.services.some((s) => s.name === 'pushed'), 1000, 'service pushed');
    assert.ok(updates.length > before);
    // The router's revision equals what the controller computes for it.
    const session = await routerSessionRevision();
    assert.equal(sync.current()!.revision, session);
    assert.equal(readFileSync(join(dir, 'd1', 'policy.jws'), 'utf8').trim().split('\n').length, 1, 'the full snapshot');
    assert.ok(readFileSync(join(dir, 'd1', 'policy.deltas'), 'utf8').trim().split('\n').length >= 1, 'then at least one delta');
    const del = await api(ctrl, 'DELETE', `${M}/services/${svc.body.data.id}`, { token: admin });
    assert.equal(del.status, 200);
    await until(() => !sync.current()!.snapshot.services.some((s) => s.name === 'pushed'), 1000, 'removal pushed');
    process.stdout.write(`# change to router: ${ms} ms\n`);
  } finally {
    sync.stop();
  }
});

/** The revision the controller's HTTP policy endpoint gives this router (logged in with its certificate). */
async function routerSessionRevision(): Promise<string> {
  const { request } = await import('../../src/identity/https.js');
  const res = await request(`${ctrl.url}/edge/client/v1/authenticate?method=cert`, {
    ca: identity.caPem, cert: identity.certPem, key: identity.key.kind === 'pem' ? identity.key.pem : '', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
  });
  const token = JSON.parse(res.body.toString()).data.token as string;
  const r = await api(ctrl, 'GET', '/edge/client/v1/router/policy', { token });
  return r.body.data.revision as string;
}

test('with the controller down the router starts from its verified cache; damaged, truncated or foreign caches are refused whole', async () => {
  const updates: SnapshotPolicyView[] = [];
  const first = startSync(join(dir, 'd2'), updates);
  await first.start();
  await api(ctrl, 'POST', `${M}/services`, { token: admin, body: { name: 'cached-1' } });
  await until(() => first.current()!.snapshot.services.some((s) => s.name === 'cached-1'), 2000, 'cached-1');
  const revision = first.current()!.revision;
  first.stop();
  await new Promise((r) => setTimeout(r, 100));
  const cacheFile = join(dir, 'd2', 'policy.jws');
  const deltasFile = join(dir, 'd2', 'policy.deltas');
  // The signed chain: the full snapshot, then the deltas (kept in a second file). The damaged
  // copies below are written as one file, which the router reads the same way.
  const good = readFileSync(cacheFile, 'utf8') + readFileSync(deltasFile, 'utf8');
  assert.ok(good.trim().split('\n').length >= 2, 'a full snapshot and a delta');

  // A controller that is not there: an unused port in the identity.
  const offline: LoadedIdentity = { ...identity, apiUrl: 'https://127.0.0.1:9' };
  const fromCache = (): PolicySync => new PolicySync({ identity: offline, routerId, key: FileKeyStore.fromPem(identity.key.kind === 'pem' ? identity.key.pem : '', 'mem'), dataDir: join(dir, 'd2'), log, reconnect: { initialMs: 1000, maxMs: 1000 }, onUpdate: () => undefined });
  let s = fromCache();
  await s.start(300);
  assert.equal(s.current()?.revision, revision, 'served from the cache');
  assert.equal(s.current()?.mayDial(routerId, 'cached-1').allow, false, 'closed by default, from the cache too');
  s.stop();

  const cases: [string, string][] = [
    ['a flipped byte in a delta', good.replace(/\.([A-Za-z0-9_-])([A-Za-z0-9_-]*)\n$/, (_m, c: string, rest: string) => `.${c === 'A' ? 'B' : 'A'}${rest}\n`)],
    ['truncated', good.slice(0, Math.floor(good.length / 2))],
    ['not JWS', 'hello\n'],
    ['empty', ''],
  ];
  const other = await Pki.loadOrCreate(join(dir, 'other'), ['127.0.0.1'], pino({ level: 'silent' }));
  cases.push(['signed by another controller', signSnapshot(sealSnapshot({ v: 1, routerId, identities: [], services: [], servicePolicies: [], postureChecks: [], serviceEdgeRouterPolicies: [] }, new Date()), other.policySigner) + '\n']);
  rmSync(deltasFile);
  for (const [name, text] of cases) {
    writeFileSync(cacheFile, text);
    lines.length = 0;
    s = fromCache();
    await s.start(200);
    assert.equal(s.current(), undefined, `${name}: refused`);
    assert.ok(lines.some((l) => l.msg === 'policy cache refused; ignoring it'), `${name}: logged`);
    s.stop();
  }
  // A delta appended for another revision: the chain does not line up.
  writeFileSync(cacheFile, good);
  appendFileSync(cacheFile, good.trim().split('\n').slice(-1)[0] + '\n');
  s = fromCache();
  await s.start(200);
  assert.equal(s.current(), undefined, 'a replayed delta breaks the chain: refused whole');
  s.stop();
});

test('a deleted router is cut off: its control link closes and redials are refused', async () => {
  const r = await api(ctrl, 'POST', `${M}/edge-routers`, { token: admin, body: { name: 'r-doomed' } });
  const id = r.body.data.id as string;
  const d = await api(ctrl, 'GET', `${M}/edge-routers/${id}`, { token: admin });
  writeFileSync(join(dir, 'doomed.jwt'), d.body.data.enrollmentJwt);
  assert.equal(runCli(['enroll', '--jwt', join(dir, 'doomed.jwt'), '--out', join(dir, 'doomed.json')]).code, 0);
  const doomed = await loadIdentityFile(join(dir, 'doomed.json'));
  const sync = new PolicySync({ identity: doomed, routerId: id, key: FileKeyStore.fromPem(doomed.key.kind === 'pem' ? doomed.key.pem : '', 'mem'), dataDir: join(dir, 'd3'), log, reconnect: { initialMs: 50, maxMs: 200 }, onUpdate: () => undefined });
  try {
    await sync.start();
    assert.equal(sync.connected, true);
    lines.length = 0;
    assert.equal((await api(ctrl, 'DELETE', `${M}/edge-routers/${id}`, { token: admin })).status, 200);
    await until(() => !sync.connected, 2000, 'control link closed');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sync.connected, false, 'redials are refused');
    assert.ok(lines.some((l) => typeof l.err === 'string' && /deleted or disabled|not an edge router/.test(l.err)), JSON.stringify(lines.slice(-3)));
  } finally {
    sync.stop();
  }
});
