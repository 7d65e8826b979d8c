/**
 * Error codes: every code is documented for operators (docs/errors.md), the
 * HTTP status table answers what it should, and `isEdgeError` tells ours
 * from foreign errors by code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ALL_ERROR_CODES, EdgeError, RemoteError, httpStatusOf, isEdgeError } from '../../src/errors.js';

const DOC = readFileSync(resolve(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

test('every error code is documented in docs/errors.md', () => {
  assert.ok(ALL_ERROR_CODES.length >= 28, `expected the full code list, got ${ALL_ERROR_CODES.length}`);
  // A code must appear as a table row of its own, not merely as a substring of a longer code.
  const documented = new Set([...DOC.matchAll(/^\|\s*`(ERR_[A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]));
  const missing = ALL_ERROR_CODES.filter((c) => !documented.has(c));
  assert.deepEqual(missing, [], `codes missing from docs/errors.md: ${missing.join(', ')}`);
});

test('docs/errors.md documents no code that does not exist', () => {
  const documented = [...DOC.matchAll(/^\|\s*`(ERR_[A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]!);
  const unknown = documented.filter((c) => !ALL_ERROR_CODES.includes(c as never));
  assert.deepEqual(unknown, []);
});

test('docs/errors.md states the HTTP status the code table maps to', () => {
  for (const code of ALL_ERROR_CODES) {
    const row = new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*([^|]+?)\\s*\\|`, 'm').exec(DOC);
    assert.ok(row, `no row for ${code}`);
    const cell = row[1]!;
    if (cell === 'local') assert.equal(httpStatusOf(code), 500, `${code} is local: it has no status of its own`);
    else assert.equal(Number(cell), httpStatusOf(code), `${code}: doc says ${cell}`);
  }
});

test('ALL_ERROR_CODES has no duplicates', () => {
  assert.equal(new Set(ALL_ERROR_CODES).size, ALL_ERROR_CODES.length);
});

test('httpStatusOf maps known control-plane codes', () => {
  const expected: Record<string, number> = {
    ERR_INVALID_ARGUMENT: 400,
    ERR_COULD_NOT_PARSE_BODY: 400,
    ERR_UNSUPPORTED_MEDIA_TYPE: 415,
    ERR_PAYLOAD_TOO_LARGE: 413,
    ERR_NOT_FOUND: 404,
    ERR_UNAUTHORIZED: 401,
    ERR_INVALID_AUTH: 401,
    ERR_FORBIDDEN: 403,
    ERR_NAME_IN_USE: 409,
    ERR_CONFLICT: 409,
    ERR_ENROLLMENT_TOKEN_USED: 410,
    ERR_ENROLLMENT_EXPIRED: 410,
    ERR_CSR_INVALID: 400,
    ERR_CSR_WEAK_KEY: 400,
    ERR_STORE: 500,
    ERR_INTERNAL: 500,
  };
  for (const [code, status] of Object.entries(expected)) assert.equal(httpStatusOf(code), status, code);
});

test('httpStatusOf defaults to 500 for local and unknown codes', () => {
  assert.equal(httpStatusOf('ERR_CONFIG'), 500);
  assert.equal(httpStatusOf('ERR_KEY'), 500);
  assert.equal(httpStatusOf('ERR_NO_SUCH_CODE'), 500);
  assert.equal(httpStatusOf(''), 500);
  // Inherited Object.prototype keys are not statuses.
  assert.equal(httpStatusOf('constructor'), 500);
  assert.equal(httpStatusOf('__proto__'), 500);
});

test('EdgeError keeps code, message, cause and details', () => {
  const cause = new Error('disk full');
  const e = new EdgeError('ERR_STORE', 'store write failed', { cause, details: { path: '/x' } });
  assert.equal(e.code, 'ERR_STORE');
  assert.equal(e.message, 'store write failed');
  assert.equal(e.cause, cause);
  assert.deepEqual(e.details, { path: '/x' });
  assert.equal(e.name, 'EdgeError');
  assert.ok(e instanceof Error);
  assert.equal('cause' in new EdgeError('ERR_STORE', 'x'), false, 'no cause property unless one is given');
});

test('RemoteError keeps the server code and status under ERR_REMOTE', () => {
  const e = new RemoteError(401, 'ERR_INVALID_AUTH', 'invalid username or password');
  assert.equal(e.code, 'ERR_REMOTE');
  assert.equal(e.status, 401);
  assert.equal(e.remoteCode, 'ERR_INVALID_AUTH');
  assert.match(e.message, /^ERR_INVALID_AUTH: invalid username or password \(HTTP 401\)$/);
  assert.deepEqual(e.details, { status: 401, remoteCode: 'ERR_INVALID_AUTH' });
});

test('isEdgeError is true for EdgeError and RemoteError', () => {
  assert.equal(isEdgeError(new EdgeError('ERR_CONFIG', 'x')), true);
  assert.equal(isEdgeError(new RemoteError(500, 'ERR_INTERNAL', 'x')), true);
});

test('isEdgeError is false for plain errors and non-errors', () => {
  assert.equal(isEdgeError(new Error('x')), false);
  assert.equal(isEdgeError(new TypeError('x')), false);
  const sys = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  assert.equal(isEdgeError(sys), false, 'a Node system error code is not one of ours');
  const node = Object.assign(new Error('bad arg'), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.equal(isEdgeError(node), false, 'a Node ERR_* code is not one of ours');
  assert.equal(isEdgeError(null), false);
  assert.equal(isEdgeError(undefined), false);
  assert.equal(isEdgeError('ERR_CONFIG'), false);
  assert.equal(isEdgeError({ code: 42 }), false);
});
