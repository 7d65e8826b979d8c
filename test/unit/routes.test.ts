/**
 * Service routing by announcements: a simulated fabric of routers exchanging
 * ANNOUNCE tables until they settle, shortest paths, split horizon, link
 * loss, and a randomized comparison with breadth-first search.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_HOPS, ServiceRoutes, WITHDRAWN } from '../../src/router/routes.js';

/** Routers exchange full tables over `edges` until nothing changes; returns the tables. */
function converge(names: string[], edges: [string, string][], hosting: Record<string, string[]>): Map<string, ServiceRoutes> {
  const r = new Map(names.map((n) => [n, new ServiceRoutes(n)]));
  for (const [n, services] of Object.entries(hosting)) r.get(n)!.setLocal(services);
  for (let round = 0; round < 50; round++) {
    let changed = false;
    for (const [a, b] of edges) {
      for (const [from, to] of [[a, b], [b, a]] as const) {
        const msg = r.get(from)!.announcementsFor(to);
        if (r.get(to)!.applyAnnouncement(from, msg, true)) changed = true;
      }
    }
    if (!changed) return r;
  }
  throw new Error('did not converge');
}

test('a chain edge – hub – host finds the host through the hub', () => {
  const r = converge(['edge', 'hub', 'host'], [['edge', 'hub'], ['hub', 'host']], { host: ['demo'] });
  assert.deepEqual(r.get('edge')!.next('demo'), { local: false, linkId: 'hub', hostRouterId: 'host', hops: 2 });
  assert.deepEqual(r.get('hub')!.next('demo'), { local: false, linkId: 'host', hostRouterId: 'host', hops: 1 });
  assert.deepEqual(r.get('host')!.next('demo'), { local: true });
  assert.equal(r.get('edge')!.next('nothing'), undefined);
});

test('the shorter of two paths wins, and the other takes over when a link drops', () => {
  const edges: [string, string][] = [['edge', 'a'], ['a', 'host'], ['edge', 'b'], ['b', 'c'], ['c', 'host']];
  const r = converge(['edge', 'a', 'b', 'c', 'host'], edges, { host: ['svc'] });
  assert.equal((r.get('edge')!.next('svc') as { linkId: string }).linkId, 'a');
  const r2 = converge(['edge', 'a', 'b', 'c', 'host'], edges.filter(([x, y]) => !(x === 'a' && y === 'host')), { host: ['svc'] });
  const n = r2.get('edge')!.next('svc') as { linkId: string; hops: number };
  assert.equal(n.linkId, 'b');
  assert.equal(n.hops, 3);
});

test('split horizon: a route is withdrawn toward the link it came from', () => {
  const hub = new ServiceRoutes('hub');
  hub.applyAnnouncement('host', [{ service: 'demo', hostRouterId: 'host', hops: 0 }], true);
  assert.deepEqual(hub.announcementsFor('host'), [{ service: 'demo', hostRouterId: 'host', hops: WITHDRAWN }]);
  assert.deepEqual(hub.announcementsFor('edge'), [{ service: 'demo', hostRouterId: 'host', hops: 1 }]);
});

test('link down forgets its routes; withdrawals remove one route; self and overlong routes are ignored', () => {
  const x = new ServiceRoutes('x');
  assert.equal(x.applyAnnouncement('l1', [{ service: 's', hostRouterId: 'h', hops: 0 }, { service: 't', hostRouterId: 'h', hops: 0 }], true), true);
  assert.equal(x.applyAnnouncement('l1', [{ service: 's', hostRouterId: 'h', hops: WITHDRAWN }], false), true);
  assert.equal(x.next('s'), undefined);
  assert.equal(x.linkDown('l1'), true);
  assert.equal(x.next('t'), undefined);
  assert.equal(x.applyAnnouncement('l2', [{ service: 'loop', hostRouterId: 'x', hops: 0 }], true), false);
  assert.equal(x.applyAnnouncement('l2', [{ service: 'far', hostRouterId: 'h', hops: MAX_HOPS }], true), false);
  assert.equal(x.applyAnnouncement('l2', [{ service: 'neg', hostRouterId: 'h', hops: -1 }, { service: 'frac', hostRouterId: 'h', hops: 0.5 }], true), false);
});

test('random fabrics: every router reaches every hosted service by a shortest path (compared with BFS)', () => {
  fc.assert(fc.property(
    fc.integer({ min: 2, max: 8 }).chain((n) => fc.tuple(
      fc.constant(n),
      fc.array(fc.tuple(fc.nat(n - 1), fc.nat(n - 1)), { maxLength: 14 }),
      fc.array(fc.tuple(fc.nat(n - 1), fc.constantFrom('s1', 's2', 's3')), { maxLength: 4 }),
    )),
    ([n, rawEdges, hosts]) => {
      const names = Array.from({ length: n }, (_, i) => `r${i}`);
      const edges = [...new Set(rawEdges.filter(([a, b]) => a !== b).map(([a, b]) => (a < b ? `${a}-${b}` : `${b}-${a}`)))]
        .map((e) => e.split('-').map((i) => `r${i}`) as [string, string]);
      const hosting: Record<string, string[]> = {};
      for (const [h, s] of hosts) (hosting[`r${h}`] ??= []).push(s);
      const tables = converge(names, edges, hosting);
      const adj = new Map(names.map((x) => [x, [] as string[]]));
      for (const [a, b] of edges) { adj.get(a)!.push(b); adj.get(b)!.push(a); }
      for (const from of names) {
        for (const service of ['s1', 's2', 's3']) {
          // BFS distance to the nearest host of `service`.
          const dist = new Map([[from, 0]]);
          const queue = [from];
          let best: number | undefined;
          while (queue.length > 0) {
            const cur = queue.shift()!;
            if (hosting[cur]?.includes(service)) { best = dist.get(cur); break; }
            for (const nb of adj.get(cur)!) if (!dist.has(nb)) { dist.set(nb, dist.get(cur)! + 1); queue.push(nb); }
          }
          const got = tables.get(from)!.next(service);
          if (best === undefined) assert.equal(got, undefined, `${from} ${service}`);
          else if (best === 0) assert.deepEqual(got, { local: true });
          else assert.equal((got as { hops: number }).hops, best, `${from} ${service}`);
        }
      }
    },
  ), { numRuns: 200, seed: 3 });
});
