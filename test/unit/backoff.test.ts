import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs } from '../../src/router/backoff.js';

test('backoff doubles its ceiling per attempt up to the maximum, with full jitter', () => {
  assert.equal(backoffMs(0, 500, 30_000, () => 0.999999), 499);
  assert.equal(backoffMs(3, 500, 30_000, () => 0.999999), 3999);
  assert.equal(backoffMs(20, 500, 30_000, () => 0.999999), 29_999);
  assert.equal(backoffMs(1000, 500, 30_000, () => 0.5), 15_000, 'huge attempt counts do not overflow');
  assert.equal(backoffMs(5, 500, 30_000, () => 0), 0);
  const spread = new Set(Array.from({ length: 50 }, () => backoffMs(4, 500, 30_000)));
  assert.ok(spread.size > 10, 'delays are spread, not in lockstep');
});
