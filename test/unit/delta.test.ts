/**
 * Snapshot revisions and deltas: the revision depends on the logical content
 * only (not key or list order); a delta from A to B applied to A gives B and
 * B's revision; a delta applied to anything else is refused with a reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyDelta, canonicalJson, contentRevision, diffContent, parseDelta, type Content } from '../../src/policy/delta.js';

test('canonical JSON sorts keys at every depth, drops undefined, keeps array order', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: undefined, b: null } }), '{"a":{"b":null,"d":[2,1]},"b":1}');
  assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  assert.equal(canonicalJson(undefined), 'null');
});

test('the revision ignores key order and collection order, and changes with any value', () => {
  const a: Content = { v: 1, routerId: 'r', items: [{ id: 'x', n: 1, tags: ['p'] }, { id: 'y', n: 2 }] };
  const b: Content = { routerId: 'r', items: [{ n: 2, id: 'y' }, { tags: ['p'], n: 1, id: 'x' }], v: 1 };
  assert.equal(contentRevision(a), contentRevision(b));
  assert.notEqual(contentRevision(a), contentRevision({ ...a, routerId: 's' }));
  assert.notEqual(contentRevision(a), contentRevision({ ...a, items: [{ id: 'x', n: 1, tags: ['q'] }, { id: 'y', n: 2 }] }));
  assert.match(contentRevision(a), /^[A-Za-z0-9_-]{22}$/);
});

const entity = fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), n: fc.integer({ min: 0, max: 3 }), tag: fc.option(fc.constantFrom('x', 'y'), { nil: undefined }) });
const collection = fc.uniqueArray(entity, { selector: (e) => e.id, maxLength: 6 });
const contentArb = fc.record({ v: fc.constant(1), routerId: fc.constant('r'), identities: collection, services: collection });

test('diff then apply reproduces the target and its revision (fast-check)', () => {
  fc.assert(fc.property(contentArb, contentArb, (from, to) => {
    const base = from as unknown as Content;
    const target = to as unknown as Content;
    const delta = diffContent(base, target, contentRevision(base), contentRevision(target));
    assert.ok(delta !== undefined);
    const applied = applyDelta(base, contentRevision(base), JSON.parse(JSON.stringify(delta)));
    assert.ok('content' in applied, 'reason' in applied ? applied.reason : '');
    assert.equal(contentRevision(applied.content), contentRevision(target));
  }), { numRuns: 300 });
});

test('a delta for another base, or one that does not lead to its revision, is refused with the reason', () => {
  const a: Content = { v: 1, routerId: 'r', items: [{ id: 'x', n: 1 }] };
  const b: Content = { v: 1, routerId: 'r', items: [{ id: 'x', n: 2 }] };
  const delta = diffContent(a, b, contentRevision(a), contentRevision(b))!;
  const wrongBase = applyDelta(b, contentRevision(b), delta);
  assert.ok('reason' in wrongBase && /delta is from revision/.test(wrongBase.reason));
  const forged = applyDelta(a, contentRevision(a), { ...delta, upsert: { items: [{ id: 'x', n: 3 }] } });
  assert.ok('reason' in forged && /applying the delta gives revision/.test(forged.reason));
  // Scalars cannot change through a delta: a new router id needs a full snapshot.
  assert.equal(diffContent(a, { ...a, routerId: 's' }, 'x', 'y'), undefined);
});

test('parseDelta accepts only the documented shape', () => {
  const good = { baseRevision: 'a', revision: 'b', upsert: { items: [{ id: 'x' }] }, remove: { items: ['y'] } };
  assert.deepEqual(parseDelta(good), good);
  for (const bad of [null, 5, {}, { ...good, revision: 1 }, { ...good, upsert: { items: [{ noid: 1 }] } }, { ...good, remove: { items: [1] } }, { ...good, upsert: null }]) {
    assert.equal(parseDelta(bad), undefined, JSON.stringify(bad));
  }
});
