/**
 * Policy snapshots as routers receive them: shape checks that never let a
 * half-valid snapshot through, stable revisions, and the view a router
 * authorizes from (hosting from Bind, Dial decisions, disabled and unknown
 * identities refused).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeError } from '../../src/errors.js';
import { decide } from '../../src/policy/index.js';
import { parseSnapshot, sealSnapshot, SnapshotPolicyView, type SnapshotContent } from '../../src/policy/snapshot.js';

const content: SnapshotContent = {
  v: 1,
  routerId: 'r-host',
  identities: [
    { id: 'r-host', name: 'host', roleAttributes: ['hosts'], disabled: false },
    { id: 'r-edge', name: 'edge', roleAttributes: ['edges'], disabled: false },
    { id: 'i-off', name: 'off', roleAttributes: ['edges'], disabled: true },
  ],
  services: [
    { id: 's-web', name: 'web', roleAttributes: ['demo'], host: { protocol: 'tcp', address: '127.0.0.1', port: 8080 } },
    { id: 's-nohost', name: 'nohost', roleAttributes: ['demo'] },
    { id: 's-other', name: 'other', roleAttributes: [], host: { protocol: 'tcp', address: '127.0.0.1', port: 9090 } },
  ],
  servicePolicies: [
    { id: 'p-bind', name: 'bind', type: 'Bind', semantic: 'AnyOf', identityRoles: ['#hosts'], serviceRoles: ['#demo'] },
    { id: 'p-dial', name: 'dial', type: 'Dial', semantic: 'AnyOf', identityRoles: ['#edges'], serviceRoles: ['@s-web'] },
  ],
  postureChecks: [],
  serviceEdgeRouterPolicies: [{ id: 'serp', name: 'serp', semantic: 'AnyOf', edgeRouterRoles: ['#hosts'], serviceRoles: ['#all'] }],
};

test('the revision is a hash of the content: equal content, equal revision; any change moves it', () => {
  const a = sealSnapshot(content, new Date(0));
  const b = sealSnapshot(content, new Date(1000));
  assert.equal(a.revision, b.revision);
  const changed = sealSnapshot({ ...content, servicePolicies: content.servicePolicies.slice(1) }, new Date(0));
  assert.notEqual(changed.revision, a.revision);
});

test('the view hosts what Bind grants and has a host.v1 config; Dial follows policy; disabled and unknown identities are refused', () => {
  const view = new SnapshotPolicyView(parseSnapshot(JSON.parse(JSON.stringify(sealSnapshot(content, new Date())))));
  assert.deepEqual([...view.hostedServices().keys()], ['web']);
  assert.equal(view.mayDial('r-edge', 'web').allow, true);
  assert.equal(view.mayDial('r-edge', 'web').ruleId, 'p-dial');
  assert.equal(view.mayDial('r-host', 'web').allow, false);
  assert.match(view.mayDial('i-off', 'web').reason, /disabled/);
  assert.match(view.mayDial('nobody', 'web').reason, /unknown/);
  assert.match(view.mayDial('r-edge', 'missing').reason, /service "missing" is unknown/);
  assert.equal(view.mayDial('r-edge', 'other').allow, false);
});

test('service edge router policies: no SERP, no hosting and no interception here (closed by default)', () => {
  const none = new SnapshotPolicyView(sealSnapshot({ ...content, serviceEdgeRouterPolicies: [] }, new Date()));
  assert.equal(none.hostedServices().size, 0);
  const edgeView = new SnapshotPolicyView(sealSnapshot({ ...content, routerId: 'r-edge', serviceEdgeRouterPolicies: [] }, new Date()));
  assert.match(edgeView.mayIntercept('web').reason, /no service edge router policy lets service "web" use this router/);
  const allowed = new SnapshotPolicyView(sealSnapshot({ ...content, routerId: 'r-edge', serviceEdgeRouterPolicies: [{ id: 'x', name: 'x', semantic: 'AnyOf', edgeRouterRoles: ['@edge'], serviceRoles: ['@s-web'] }] }, new Date()));
  assert.equal(allowed.mayIntercept('web').allow, true);
  assert.equal(allowed.mayIntercept('other').allow, false);
  assert.match(allowed.mayIntercept('missing').reason, /unknown/);
});

test('a router that is disabled or absent from its own snapshot hosts nothing', () => {
  const disabled = sealSnapshot({ ...content, identities: content.identities.map((i) => (i.id === 'r-host' ? { ...i, disabled: true } : i)) }, new Date());
  assert.equal(new SnapshotPolicyView(disabled).hostedServices().size, 0);
  const absent = sealSnapshot({ ...content, routerId: 'r-gone' }, new Date());
  assert.equal(new SnapshotPolicyView(absent).hostedServices().size, 0);
});

test('malformed snapshots are refused whole with ERR_POLICY_SNAPSHOT naming the problem', () => {
  const good = JSON.parse(JSON.stringify(sealSnapshot(content, new Date()))) as Record<string, any>;
  const cases: [string, (s: Record<string, any>) => unknown, RegExp][] = [
    ['null', () => null, /not an object/],
    ['array', () => [], /unsupported version/],
    ['version', (s) => ({ ...s, v: 2 }), /unsupported version 2/],
    ['revision', (s) => ({ ...s, revision: 5 }), /revision/],
    ['identities', (s) => ({ ...s, identities: {} }), /not a list/],
    ['identity id', (s) => ({ ...s, identities: [{ name: 'x', roleAttributes: [] }] }), /identities\[0\]\.id/],
    ['attributes', (s) => ({ ...s, services: [{ id: 'a', name: 'a', roleAttributes: 'x' }] }), /services\[0\]\.roleAttributes/],
    ['host', (s) => ({ ...s, services: [{ id: 'a', name: 'a', roleAttributes: [], host: 'x' }] }), /services\[0\]\.host/],
    ['type', (s) => ({ ...s, servicePolicies: [{ ...s.servicePolicies[0], type: 'Allow' }] }), /type must be Dial or Bind/],
    ['semantic', (s) => ({ ...s, servicePolicies: [{ ...s.servicePolicies[0], semantic: 'Some' }] }), /semantic/],
    ['roles', (s) => ({ ...s, servicePolicies: [{ ...s.servicePolicies[0], identityRoles: [1] }] }), /roles/],
  ];
  for (const [name, mutate, message] of cases) {
    assert.throws(() => parseSnapshot(mutate(structuredClone(good))), (err: unknown) => isEdgeError(err) && err.code === 'ERR_POLICY_SNAPSHOT' && message.test(err.message), name);
  }
  assert.equal(parseSnapshot(good).revision, good.revision);
});

test('links: only known, enabled identities may link, and only while the snapshot is valid', () => {
  const view = new SnapshotPolicyView(sealSnapshot(content, new Date()));
  assert.equal(view.mayLink('r-edge').allow, true);
  assert.match(view.mayLink('i-off').reason, /disabled/);
  assert.match(view.mayLink('gone').reason, /not a known identity/);
  const expired = new SnapshotPolicyView(sealSnapshot(content, new Date(Date.now() - 10_000), 1000));
  assert.match(expired.mayLink('r-edge').reason, /expired/);
});

test('the candidate indexes give exactly what decide() over every policy gives: grant, rule and reason (fast-check)', () => {
  const attrs = ['a', 'b', 'c', 'd'];
  const role = fc.oneof(fc.constantFrom(...attrs.map((a) => `#${a}`)), fc.constantFrom('#all', '@s0', '@s1', '@svc-2', '@i0', '@id-1', '#zz'));
  const policyArb = fc.record({
    type: fc.constantFrom('Dial' as const, 'Bind' as const),
    semantic: fc.constantFrom('AnyOf' as const, 'AllOf' as const),
    identityRoles: fc.array(role, { maxLength: 3 }),
    serviceRoles: fc.array(role, { maxLength: 3 }),
  });
  const attrSet = fc.subarray(attrs);
  fc.assert(fc.property(fc.array(attrSet, { minLength: 3, maxLength: 3 }), fc.array(attrSet, { minLength: 3, maxLength: 3 }), fc.array(policyArb, { maxLength: 8 }), (idAttrs, svcAttrs, raw) => {
    const snap = sealSnapshot({
      v: 1,
      routerId: 'id-0',
      identities: idAttrs.map((a, i) => ({ id: `id-${i}`, name: `i${i}`, roleAttributes: a, disabled: false })),
      services: svcAttrs.map((a, i) => ({ id: `svc-${i}`, name: `s${i}`, roleAttributes: a })),
      servicePolicies: raw.map((p, i) => ({ id: `p${i}`, name: `p${i}`, ...p })),
      postureChecks: [],
      serviceEdgeRouterPolicies: [],
    }, new Date());
    const view = new SnapshotPolicyView(snap);
    const dial = snap.servicePolicies.filter((p) => p.type === 'Dial');
    for (const i of snap.identities) {
      for (const s of snap.services) {
        const expected = decide({ identity: i, service: s, type: 'Dial' }, dial);
        const got = view.mayDial(i.id, s.name);
        assert.equal(got.allow, expected.allow);
        assert.equal(got.ruleId, expected.ruleId);
        assert.equal(got.reason, expected.reason);
      }
    }
  }), { numRuns: 300 });
});

test('a router\'s own offline window only shortens the snapshot\'s', () => {
  const snap = sealSnapshot(content, new Date(Date.now() - 2 * 3600_000), 72 * 3600_000);
  assert.equal(new SnapshotPolicyView(snap, false, Date.now(), 3600_000).mayDial('r-edge', 'web').allow, false, '1 h own window: expired');
  assert.match(new SnapshotPolicyView(snap, false, Date.now(), 3600_000).mayDial('r-edge', 'web').reason, /expired/);
  assert.equal(new SnapshotPolicyView(snap, false, Date.now(), 1000 * 3600_000).mayDial('r-edge', 'web').allow, true, 'a longer own window changes nothing');
  assert.equal(new SnapshotPolicyView(snap, false).mayDial('r-edge', 'web').allow, true);
});
