/**
 * The service policy evaluator (src/policy): role selectors, the AllOf and
 * AnyOf semantics, #all, @id and @name, closed by default, the reason strings,
 * and a fast-check property that nothing is allowed to an identity no policy
 * names.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decide, matchesRoles, parseRole, type PolicyEntity, type ServicePolicy } from '../../src/policy/index.js';

const plc: PolicyEntity = { id: 'id-plc7', name: 'plc-7', roleAttributes: ['line1', 'plc'] };
const hmi: PolicyEntity = { id: 'id-hmi', name: 'hmi', roleAttributes: ['line1'] };
const historian: PolicyEntity = { id: 'svc-hist', name: 'historian', roleAttributes: ['ot', 'db'] };
const web: PolicyEntity = { id: 'svc-web', name: 'web', roleAttributes: [] };

function policy(over: Partial<ServicePolicy> & Pick<ServicePolicy, 'identityRoles' | 'serviceRoles'>): ServicePolicy {
  return { id: 'pol-1', name: 'p1', type: 'Dial', semantic: 'AllOf', ...over };
}

describe('parseRole', () => {
  test('#all, #attr and @ref', () => {
    assert.deepEqual(parseRole('#all'), { kind: 'all' });
    assert.deepEqual(parseRole('#plc'), { kind: 'attribute', attribute: 'plc' });
    assert.deepEqual(parseRole('@plc-7'), { kind: 'entity', ref: 'plc-7' });
    assert.deepEqual(parseRole('@id with spaces'), { kind: 'entity', ref: 'id with spaces' });
  });

  test('malformed selectors get a reason, not an exception', () => {
    for (const bad of ['', 'plc', '#', '@', '# plc', '@ plc', '#plc ', 'all']) {
      const r = parseRole(bad);
      assert.equal(typeof r, 'string', bad);
      assert.match(r as string, /role/);
    }
  });
});

describe('matchesRoles', () => {
  test('#attr under AllOf needs every attribute, under AnyOf one', () => {
    assert.equal(matchesRoles(['#plc', '#line1'], 'AllOf', plc), true);
    assert.equal(matchesRoles(['#plc', '#line1'], 'AllOf', hmi), false);
    assert.equal(matchesRoles(['#plc', '#line1'], 'AnyOf', hmi), true);
    assert.equal(matchesRoles(['#plc', '#line2'], 'AnyOf', plc), true);
    assert.equal(matchesRoles(['#line2'], 'AnyOf', plc), false);
  });

  test('#all matches everything, under both semantics and beside other roles', () => {
    for (const s of ['AllOf', 'AnyOf'] as const) {
      assert.equal(matchesRoles(['#all'], s, web), true);
      assert.equal(matchesRoles(['#nope', '#all'], s, web), true);
    }
  });

  test('@id and @name match one entity, whatever the semantic', () => {
    assert.equal(matchesRoles(['@id-plc7'], 'AllOf', plc), true);
    assert.equal(matchesRoles(['@plc-7'], 'AllOf', plc), true);
    assert.equal(matchesRoles(['@plc-7'], 'AllOf', hmi), false);
    // OpenZiti: @ selectors are not combined by the semantic; they add their entity.
    assert.equal(matchesRoles(['@hmi', '#plc'], 'AllOf', hmi), true);
    assert.equal(matchesRoles(['@hmi', '#plc'], 'AllOf', plc), true);
    assert.equal(matchesRoles(['@hmi', '#plc', '#line2'], 'AllOf', plc), false);
  });

  test('an empty list and malformed selectors match nothing', () => {
    for (const s of ['AllOf', 'AnyOf'] as const) {
      assert.equal(matchesRoles([], s, plc), false);
      assert.equal(matchesRoles(['plc', '#', '@'], s, plc), false);
    }
    assert.equal(matchesRoles(['@'], 'AnyOf', { id: '', name: '', roleAttributes: [] }), false);
  });

  test('attributes are compared exactly (case and prefix)', () => {
    assert.equal(matchesRoles(['#PLC'], 'AnyOf', plc), false);
    assert.equal(matchesRoles(['#pl'], 'AnyOf', plc), false);
  });
});

describe('decide', () => {
  test('closed by default: no policies, no access', () => {
    const d = decide({ identity: plc, service: historian, type: 'Dial' }, []);
    assert.deepEqual(d, { allow: false, reason: 'Dial denied: no Dial policy names identity "plc-7" (id-plc7)', ruleId: null });
  });

  test('a matching policy grants and is named in the reason', () => {
    const p = policy({ id: 'pol-9', name: 'plc-to-historian', identityRoles: ['#plc'], serviceRoles: ['@historian'] });
    const d = decide({ identity: plc, service: historian, type: 'Dial' }, [p]);
    assert.deepEqual(d, { allow: true, reason: 'Dial allowed by service policy "plc-to-historian" (pol-9)', ruleId: 'pol-9' });
  });

  test('the type must match: a Dial policy does not grant Bind', () => {
    const p = policy({ identityRoles: ['#all'], serviceRoles: ['#all'] });
    assert.equal(decide({ identity: plc, service: web, type: 'Dial' }, [p]).allow, true);
    const bind = decide({ identity: plc, service: web, type: 'Bind' }, [p]);
    assert.equal(bind.allow, false);
    assert.equal(bind.reason, 'Bind denied: no Bind policy names identity "plc-7" (id-plc7)');
  });

  test('naming the identity is not enough: the service must match too', () => {
    const p = policy({ identityRoles: ['#plc'], serviceRoles: ['#db'] });
    const d = decide({ identity: plc, service: web, type: 'Dial' }, [p]);
    assert.equal(d.allow, false);
    assert.equal(d.ruleId, null);
    assert.equal(d.reason, 'Dial denied: no Dial policy naming identity "plc-7" (id-plc7) names service "web" (svc-web)');
  });

  test('identity and service roles of one policy are judged with its semantic', () => {
    const anyOf = policy({ semantic: 'AnyOf', identityRoles: ['#plc', '#nope'], serviceRoles: ['#ot', '#nope'] });
    assert.equal(decide({ identity: plc, service: historian, type: 'Dial' }, [anyOf]).allow, true);
    const allOf = policy({ semantic: 'AllOf', identityRoles: ['#plc', '#nope'], serviceRoles: ['#ot'] });
    assert.equal(decide({ identity: plc, service: historian, type: 'Dial' }, [allOf]).allow, false);
  });

  test('any granting policy grants; the first granting one is reported', () => {
    const miss = policy({ id: 'a', name: 'a', identityRoles: ['#hmi'], serviceRoles: ['#all'] });
    const hit1 = policy({ id: 'b', name: 'b', identityRoles: ['@plc-7'], serviceRoles: ['#all'] });
    const hit2 = policy({ id: 'c', name: 'c', identityRoles: ['#all'], serviceRoles: ['@svc-hist'] });
    assert.equal(decide({ identity: plc, service: historian, type: 'Dial' }, [miss, hit1, hit2]).ruleId, 'b');
    assert.equal(decide({ identity: plc, service: historian, type: 'Dial' }, [hit2, miss, hit1]).ruleId, 'c');
  });

  test('a policy requiring posture checks does not grant (they are not evaluated)', () => {
    const p = policy({ id: 'pc', name: 'with-posture', identityRoles: ['#all'], serviceRoles: ['#all'], postureCheckRoles: ['#mfa'] });
    const d = decide({ identity: plc, service: web, type: 'Dial' }, [p]);
    assert.equal(d.allow, false);
    assert.match(d.reason, /"with-posture" \(pc\) requires posture checks/);
    const plain = policy({ id: 'ok', identityRoles: ['#all'], serviceRoles: ['#all'], postureCheckRoles: [] });
    assert.equal(decide({ identity: plc, service: web, type: 'Dial' }, [p, plain]).ruleId, 'ok');
  });

  test('an entity whose name is its id is described once', () => {
    const same: PolicyEntity = { id: 'x', name: 'x', roleAttributes: [] };
    assert.equal(decide({ identity: same, service: web, type: 'Bind' }, []).reason, 'Bind denied: no Bind policy names identity "x"');
  });
});

describe('decide, properties', () => {
  const word = fc.constantFrom('a', 'b', 'c', 'plc', 'ot', 'line1', 'all', 'x-1');
  const role = fc.oneof(word.map((w) => `#${w}`), word.map((w) => `@${w}`), fc.constant('#all'), word);
  const entity = fc.record({ id: word, name: word, roleAttributes: fc.uniqueArray(word, { maxLength: 4 }) });
  const pol = fc.record({
    id: word, name: word,
    type: fc.constantFrom('Dial' as const, 'Bind' as const),
    semantic: fc.constantFrom('AllOf' as const, 'AnyOf' as const),
    identityRoles: fc.array(role, { maxLength: 5 }),
    serviceRoles: fc.array(role, { maxLength: 5 }),
  });

  /** Does any selector of `roles` name `e` (by #all, by @id/@name, or by one of its attributes)? */
  function named(roles: readonly string[], e: PolicyEntity): boolean {
    return roles.some((r) => r === '#all' || r === `@${e.id}` || r === `@${e.name}` || (r.startsWith('#') && e.roleAttributes.includes(r.slice(1))));
  }

  test('never allows an identity that no policy names', () => {
    fc.assert(fc.property(entity, entity, fc.array(pol, { maxLength: 8 }), fc.constantFrom('Dial' as const, 'Bind' as const), (identity, service, policies, type) => {
      const unnamed = policies.filter((p) => !named(p.identityRoles, identity));
      const d = decide({ identity, service, type }, unnamed);
      return !d.allow && d.ruleId === null;
    }), { numRuns: 2000 });
  });

  test('an allow always comes from a policy of the type that names both', () => {
    fc.assert(fc.property(entity, entity, fc.array(pol, { maxLength: 8 }), fc.constantFrom('Dial' as const, 'Bind' as const), (identity, service, policies, type) => {
      const d = decide({ identity, service, type }, policies);
      if (!d.allow) return d.ruleId === null;
      return policies.some((x) => x.id === d.ruleId && x.type === type && named(x.identityRoles, identity) && named(x.serviceRoles, service));
    }), { numRuns: 2000 });
  });

  test('the answer does not depend on policy order', () => {
    fc.assert(fc.property(entity, entity, fc.array(pol, { maxLength: 8 }), (identity, service, policies) => {
      const a = decide({ identity, service, type: 'Dial' }, policies).allow;
      const b = decide({ identity, service, type: 'Dial' }, [...policies].reverse()).allow;
      return a === b;
    }), { numRuns: 1000 });
  });
});
