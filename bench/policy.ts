/**
 * Policy at scale: what a router's policy costs and how fast a change
 * reaches routers.
 *
 *   npm run bench:policy -- [--identities 10000] [--services 1000] [--policies 1000] [--routers 50] [--changes 5]
 *
 * Part 1 (in process, pure code): a synthetic snapshot of N identities, S
 * services and P policies (Dial and Bind; selectors by attribute, by id and
 * #all). Measured: snapshot size (JSON and signed JWS), sign and verify
 * time, parse + index time, and the time of one authorization per dial —
 * both decide() over every policy and the router's indexed view
 * (SnapshotPolicyView.mayDial, what a router runs) — over random
 * (identity, service) pairs.
 *
 * Part 2 (real processes): a `ztedge controller` process filled through its
 * REST API with the same numbers of identities, services and policies; R
 * routers enrolled (erott) and connected over control links (PolicySync, all
 * in this process); then `--changes` times: create a Dial policy through
 * the API and time until every router holds the new revision (enforcement:
 * the hosting router authorizes from that copy). Reported: median and max
 * over the changes of the slowest router's delay.
 *
 * Targets (issue #6): decide() under 5 µs median; propagation under 1 s.
 * Every loop is bounded; the controller and temp folder are removed on
 * every path.
 */

import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Pki } from '../src/controller/pki.js';
import { enroll } from '../src/identity/enroll.js';
import { loadIdentityFile } from '../src/identity/file.js';
import { FileKeyStore } from '../src/keys/index.js';
import { parsePemBundle } from '../src/link/trust.js';
import { decide, type ServicePolicy } from '../src/policy/index.js';
import { signSnapshot, verifySignedSnapshot } from '../src/policy/signed.js';
import { sealSnapshot, SnapshotPolicyView, type PolicySnapshot } from '../src/policy/snapshot.js';
import { PolicySync } from '../src/router/policy-sync.js';
import { adminToken, api, removeDir, startControllerProcess, tempDir, type ControllerProcess } from '../test/helpers/controller.js';

const { values } = parseArgs({
  options: {
    identities: { type: 'string', default: '10000' },
    services: { type: 'string', default: '1000' },
    policies: { type: 'string', default: '1000' },
    routers: { type: 'string', default: '50' },
    changes: { type: 'string', default: '5' },
    dials: { type: 'string', default: '200000' },
  },
});
const N = Number(values.identities);
const S = Number(values.services);
const P = Number(values.policies);
const R = Number(values.routers);
const CHANGES = Number(values.changes);
const DIALS = Number(values.dials);
const ATTRS = 100;

const silent = pino({ level: 'silent' });
const rows: [string, string, string][] = [];
const row = (what: string, value: string, target = ''): void => { rows.push([what, value, target]); };

/** A deterministic pseudo-random generator (mulberry32): the same snapshot every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Identities, services and policies with the shapes real fleets have: a few attributes each, selectors mostly by attribute. */
function synthetic(): { identities: { id: string; name: string; roleAttributes: string[] }[]; services: { id: string; name: string; roleAttributes: string[] }[]; policies: Omit<ServicePolicy, 'id'>[] } {
  const r = rng(42);
  const pick = (n: number): number => Math.floor(r() * n);
  const attrs = (k: number): string[] => [...new Set(Array.from({ length: k }, () => `a${pick(ATTRS)}`))];
  const identities = Array.from({ length: N }, (_, i) => ({ id: `id${String(i).padStart(6, '0')}`, name: `device-${i}`, roleAttributes: attrs(1 + pick(3)) }));
  const services = Array.from({ length: S }, (_, i) => ({ id: `sv${String(i).padStart(6, '0')}`, name: `svc-${i}`, roleAttributes: attrs(1 + pick(2)) }));
  const policies = Array.from({ length: P }, (_, i): Omit<ServicePolicy, 'id'> => {
    const type = i % 10 === 0 ? 'Bind' : 'Dial';
    const kind = pick(10);
    const identityRoles = kind === 0 ? [`@${identities[pick(N)]!.name}`] : kind === 1 ? ['#all'] : attrs(1 + pick(2)).map((a) => `#${a}`);
    const serviceRoles = kind === 2 ? [`@${services[pick(S)]!.name}`] : attrs(1).map((a) => `#${a}`);
    return { name: `policy-${i}`, type, semantic: pick(2) === 0 ? 'AnyOf' : 'AllOf', identityRoles, serviceRoles };
  });
  return { identities, services, policies };
}

function stats(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length * 0.5)]!, p99: s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]! };
}

const fmt = (n: number, digits = 2): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function part1(dir: string): Promise<void> {
  const { identities, services, policies } = synthetic();
  const snapshot: PolicySnapshot = sealSnapshot({
    v: 1,
    routerId: identities[0]!.id,
    identities: identities.map((i) => ({ ...i, disabled: false })),
    services,
    servicePolicies: policies.map((p, i) => ({ id: `po${String(i).padStart(6, '0')}`, ...p, postureCheckRoles: [] })),
    postureChecks: [],
    serviceEdgeRouterPolicies: [{ id: 'serp-all', name: 'all', semantic: 'AnyOf', edgeRouterRoles: ['#all'], serviceRoles: ['#all'] }],
  }, new Date());
  const pki = await Pki.loadOrCreate(join(dir, 'pki'), ['127.0.0.1'], silent);
  const cas = parsePemBundle(pki.caBundlePem);
  const json = JSON.stringify(snapshot);
  let t = performance.now();
  const jws = signSnapshot(snapshot, pki.policySigner);
  const signMs = performance.now() - t;
  t = performance.now();
  const verified = verifySignedSnapshot(jws, cas, Date.now());
  const verifyMs = performance.now() - t;
  t = performance.now();
  const view = new SnapshotPolicyView(verified);
  const indexMs = performance.now() - t;
  row('snapshot size (JSON / signed JWS)', `${fmt(json.length / 1024 / 1024)} MiB / ${fmt(jws.length / 1024 / 1024)} MiB`);
  row('sign (JSON + ES256)', `${fmt(signMs, 1)} ms`);
  row('verify + parse (router)', `${fmt(verifyMs, 1)} ms`);
  row('build the router\'s index', `${fmt(indexMs, 1)} ms`);

  // Dials: random pairs, the same sequence for both measurements.
  const r = rng(7);
  const pairs = Array.from({ length: Math.min(DIALS, 1_000_000) }, () => [Math.floor(r() * N), Math.floor(r() * S)] as const);
  const dial = verified.servicePolicies.filter((p) => p.type === 'Dial');
  const ids = verified.identities;
  const svcs = verified.services;
  // decide() over every Dial policy (no index): a bounded sample, it is the slow path.
  const rawSamples: number[] = [];
  let allowed = 0;
  const rawCount = Math.min(pairs.length, 20_000);
  for (let k = 0; k < rawCount; k++) {
    const [i, s] = pairs[k]!;
    const t0 = performance.now();
    const d = decide({ identity: ids[i]!, service: svcs[s]!, type: 'Dial' }, dial);
    rawSamples.push(performance.now() - t0);
    if (d.allow) allowed++;
  }
  const raw = stats(rawSamples);
  // The router's path: mayDial on the indexed view. Warm the per-service index first, as a running router has.
  for (const s of svcs) view.mayDial(ids[0]!.id, s.name);
  const viewSamples: number[] = [];
  let viewAllowed = 0;
  for (let k = 0; k < pairs.length; k++) {
    const [i, s] = pairs[k]!;
    const t0 = performance.now();
    const d = view.mayDial(ids[i]!.id, svcs[s]!.name);
    viewSamples.push(performance.now() - t0);
    if (d.allow) viewAllowed++;
  }
  const v = stats(viewSamples);
  row(`decide() over all ${dial.length} Dial policies, p50 / p99`, `${fmt(raw.p50 * 1000, 1)} / ${fmt(raw.p99 * 1000, 1)} µs`, `(${rawCount.toLocaleString()} dials, ${fmt((100 * allowed) / rawCount, 1)} % allowed)`);
  row('router mayDial (indexed view), p50 / p99', `${fmt(v.p50 * 1000, 1)} / ${fmt(v.p99 * 1000, 1)} µs`, `${v.p50 * 1000 < 5 ? 'PASS' : 'MISS'} < 5 µs (${pairs.length.toLocaleString()} dials, ${fmt((100 * viewAllowed) / pairs.length, 1)} % allowed)`);
}

/** Runs `fn` over `items` with `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function part2(dir: string): Promise<void> {
  let ctrl: ControllerProcess | undefined;
  const syncs: PolicySync[] = [];
  try {
    ctrl = await startControllerProcess(join(dir, 'ctrl'));
    const token = await adminToken(ctrl);
    const c = ctrl;
    const post = async (path: string, body: unknown): Promise<string> => {
      const res = await api(c, 'POST', `/edge/management/v1${path}`, { token, body });
      if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.data.id as string;
    };
    const { identities, services, policies } = synthetic();
    let t = performance.now();
    await pool(identities, 16, async (i) => { await post('/identities', { name: i.name, type: 'Device', isAdmin: false, roleAttributes: i.roleAttributes }); });
    await pool(services, 16, async (s) => { await post('/services', { name: s.name, roleAttributes: s.roleAttributes }); });
    await pool(policies, 16, async (p) => { await post('/service-policies', { name: p.name, type: p.type, semantic: p.semantic, identityRoles: p.identityRoles, serviceRoles: p.serviceRoles }); });
    row('fill the controller through the API', `${fmt((performance.now() - t) / 1000, 1)} s`, `(${(N + S + P).toLocaleString()} POSTs, 16 in flight)`);

    t = performance.now();
    const routerIds: string[] = [];
    await pool(Array.from({ length: R }, (_, i) => i), 8, async (i) => {
      const id = await post('/edge-routers', { name: `bench-router-${i}` });
      const detail = await api(c, 'GET', `/edge/management/v1/edge-routers/${id}`, { token });
      const out = join(dir, `r${i}.json`);
      await enroll({ jwt: detail.body.data.enrollmentJwt as string, out, serverSans: ['127.0.0.1'] });
      routerIds[i] = id;
    });
    const revisions: (string | undefined)[] = new Array<string | undefined>(R).fill(undefined);
    const reached: number[] = new Array<number>(R).fill(0);
    for (let i = 0; i < R; i++) {
      const identity = await loadIdentityFile(join(dir, `r${i}.json`));
      const key = FileKeyStore.fromPem(identity.key.kind === 'pem' ? identity.key.pem : '', 'mem');
      const sync = new PolicySync({
        identity, routerId: routerIds[i]!, key, dataDir: join(dir, `r${i}-data`), log: silent,
        onUpdate: (v) => { revisions[i] = v.revision; reached[i] = performance.now(); },
      });
      syncs.push(sync);
    }
    await Promise.all(syncs.map((s) => s.start(60_000)));
    const connected = syncs.filter((s) => s.connected).length;
    row(`${R} routers enrolled and connected (control links)`, `${fmt((performance.now() - t) / 1000, 1)} s`, `${connected}/${R} connected`);
    const snapBytes = JSON.stringify(syncs[0]!.current()!.snapshot).length;
    row('one router\'s snapshot from the controller', `${fmt(snapBytes / 1024 / 1024)} MiB`);

    const delays: number[] = [];
    for (let k = 0; k < CHANGES; k++) {
      const before = [...revisions];
      const t0 = performance.now();
      await post('/service-policies', { name: `change-${k}`, type: 'Dial', semantic: 'AnyOf', identityRoles: [`@${identities[k]!.name}`], serviceRoles: [`@${services[k]!.name}`] });
      const deadline = Date.now() + 30_000;
      while (revisions.some((r, i) => r === before[i]) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 2));
      const missing = revisions.filter((r, i) => r === before[i]).length;
      if (missing > 0) throw new Error(`${missing} routers did not get change ${k} within 30 s`);
      delays.push(Math.max(...reached) - t0);
      await new Promise((res) => setTimeout(res, 200));
    }
    const d = stats(delays);
    const worst = Math.max(...delays);
    row(`API change → all ${R} routers hold it (slowest router), median / max of ${CHANGES}`, `${fmt(d.p50, 0)} / ${fmt(worst, 0)} ms`, `${worst < 1000 ? 'PASS' : 'MISS'} < 1 s`);
  } finally {
    for (const s of syncs) s.stop();
    await ctrl?.stop();
  }
}

async function main(): Promise<number> {
  const dir = tempDir('ztedge-bench-policy-');
  const cleanup = (): void => removeDir(dir);
  process.once('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    await part1(dir);
    await part2(dir);
  } catch (err) {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  } finally {
    cleanup();
  }
  const args = process.argv.slice(2).join(' ');
  process.stdout.write(`\n## ztedge policy bench — ${N.toLocaleString()} identities, ${S.toLocaleString()} services, ${P.toLocaleString()} policies, ${R} routers\n`);
  process.stdout.write(`${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n\n`);
  process.stdout.write('| measure | value | target / note |\n|---|--:|---|\n');
  for (const [a, b, c] of rows) process.stdout.write(`| ${a} | ${b} | ${c} |\n`);
  process.stdout.write(`\nreproduce: npm run bench:policy${args === '' ? '' : ` -- ${args}`}\n`);
  return 0;
}

main().then((code) => process.exit(code), (err: unknown) => { process.stderr.write(String(err) + '\n'); process.exit(1); });
