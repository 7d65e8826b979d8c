/**
 * Enrollment JWTs from both ends: the client reading one without trusting it
 * (src/identity/enroll.ts parseEnrollmentJwt) and the controller signing one
 * (src/controller/enrollment-jwt.ts signEnrollmentJwt).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { parseEnrollmentJwt } from '../../src/identity/enroll.js';
import { jwsAlgorithmFor, signEnrollmentJwt } from '../../src/controller/enrollment-jwt.js';
import { isEdgeError } from '../../src/errors.js';

const ISS = 'https://127.0.0.1:1280';
const EXP = Math.floor(Date.UTC(2030, 0, 1) / 1000);
const GOOD: JWTPayload & { em: string } = { em: 'ott', iss: ISS, sub: 'id-123', jti: 'tok-abc', exp: EXP };

let es256: CryptoKey;

before(async () => {
  es256 = (await generateKeyPair('ES256')).privateKey;
});

function sign(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).sign(es256);
}

function without(k: string): Record<string, unknown> {
  const c: Record<string, unknown> = { ...GOOD };
  delete c[k];
  return c;
}

function assertJwtInvalid(jwt: string, why: RegExp): void {
  assert.throws(() => parseEnrollmentJwt(jwt), (err: unknown) => {
    assert.ok(isEdgeError(err), `expected an EdgeError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_JWT_INVALID');
    assert.match(err.message, why);
    return true;
  });
}

describe('parseEnrollmentJwt', () => {
  test('reads em, iss, sub, jti and exp from an ES256 JWT', async () => {
    const jwt = await sign(GOOD);
    const t = parseEnrollmentJwt(jwt);
    assert.deepEqual(t, { method: 'ott', issuer: ISS, subject: 'id-123', token: 'tok-abc', expiresAt: new Date(EXP * 1000), raw: jwt });
  });

  test('trims surrounding whitespace (pasted tokens)', async () => {
    const jwt = await sign(GOOD);
    assert.equal(parseEnrollmentJwt(`\n  ${jwt}\n`).raw, jwt);
  });

  test('accepts a trailing slash on the issuer and drops it', async () => {
    assert.equal(parseEnrollmentJwt(await sign({ ...GOOD, iss: `${ISS}/` })).issuer, ISS);
  });

  test('accepts a host name and an IPv6 issuer', async () => {
    assert.equal(parseEnrollmentJwt(await sign({ ...GOOD, iss: 'https://ctrl.plant.example:1280' })).issuer, 'https://ctrl.plant.example:1280');
    assert.equal(parseEnrollmentJwt(await sign({ ...GOOD, iss: 'https://[::1]:1280' })).issuer, 'https://[::1]:1280');
  });

  test('does not check expiry (the caller does, with its clock)', async () => {
    const t = parseEnrollmentJwt(await sign({ ...GOOD, exp: 1 }));
    assert.equal(t.expiresAt.getTime(), 1000);
  });

  test('rejects garbage text', () => {
    for (const junk of ['', 'hello', 'not.a.jwt', 'a.b.c', 'eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.sig', '{"em":"ott"}']) {
      assertJwtInvalid(junk, /not an enrollment JWT/);
    }
  });

  for (const claim of ['em', 'iss', 'sub', 'jti']) {
    test(`rejects a JWT without "${claim}"`, async () => {
      assertJwtInvalid(await sign(without(claim)), new RegExp(`no "${claim}" claim`));
    });
    test(`rejects an empty or non-string "${claim}"`, async () => {
      assertJwtInvalid(await sign({ ...GOOD, [claim]: '' }), new RegExp(`no "${claim}" claim`));
      assertJwtInvalid(await sign({ ...GOOD, [claim]: 7 }), new RegExp(`no "${claim}" claim`));
    });
  }

  test('rejects a JWT without "exp"', async () => {
    assertJwtInvalid(await sign(without('exp')), /no "exp" claim/);
  });

  test('rejects an http:// issuer', async () => {
    assertJwtInvalid(await sign({ ...GOOD, iss: 'http://127.0.0.1:1280' }), /must be https:\/\/host:port/);
  });

  test('rejects an issuer with a path', async () => {
    assertJwtInvalid(await sign({ ...GOOD, iss: 'https://127.0.0.1:1280/edge/client/v1' }), /must be https:\/\/host:port/);
    assertJwtInvalid(await sign({ ...GOOD, iss: 'https://127.0.0.1:1280/x/' }), /must be https:\/\/host:port/);
  });

  test('rejects an issuer that is not a URL', async () => {
    assertJwtInvalid(await sign({ ...GOOD, iss: 'ctrl:1280' }), /must be https:\/\/host:port/);
    assertJwtInvalid(await sign({ ...GOOD, iss: 'https://' }), /must be https:\/\/host:port/);
  });
});

describe('signEnrollmentJwt', () => {
  const claims = { method: 'ott', issuer: ISS, subject: 'id-777', token: 'one-time-token', expiresAt: new Date(EXP * 1000) };
  const KID = 'a'.repeat(40);

  async function checkSigned(priv: KeyObject, alg: string): Promise<void> {
    const jwt = await signEnrollmentJwt(claims, priv, KID);
    const header = decodeProtectedHeader(jwt);
    assert.equal(header.alg, alg);
    assert.equal(header.kid, KID);
    assert.equal(header.typ, 'JWT');
    const { payload } = await jwtVerify(jwt, createPublicKey(priv), { algorithms: [alg], issuer: ISS, currentDate: new Date(Date.UTC(2029, 0, 1)) });
    assert.equal(payload.em, 'ott');
    assert.equal(payload.iss, ISS);
    assert.equal(payload.sub, 'id-777');
    assert.equal(payload.jti, 'one-time-token');
    assert.equal(payload.exp, EXP);
    assert.deepEqual(payload.aud, ['']);
    assert.deepEqual(payload.ctrls, [ISS]);
    // What the controller signs, the client reads back unchanged.
    const t = parseEnrollmentJwt(jwt);
    assert.deepEqual([t.method, t.issuer, t.subject, t.token, t.expiresAt.getTime()], ['ott', ISS, 'id-777', 'one-time-token', EXP * 1000]);
  }

  test('ES256 for a P-256 key', async () => {
    await checkSigned(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ES256');
  });

  test('RS256 for an RSA key', async () => {
    await checkSigned(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256');
  });

  test('ES384 for a P-384 key', async () => {
    await checkSigned(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, 'ES384');
  });

  test('jwsAlgorithmFor by key type and curve', () => {
    assert.equal(jwsAlgorithmFor(generateKeyPairSync('ec', { namedCurve: 'P-521' }).privateKey), 'ES512');
    assert.equal(jwsAlgorithmFor(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey), 'ES256');
  });

  test('the signature does not verify with another key', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const jwt = await signEnrollmentJwt(claims, privateKey, KID);
    await assert.rejects(jwtVerify(jwt, other, { currentDate: new Date(Date.UTC(2029, 0, 1)) }), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  });

  test('exp is whole seconds', async () => {
    const jwt = await signEnrollmentJwt({ ...claims, expiresAt: new Date(EXP * 1000 + 999) }, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, KID);
    assert.equal(decodeJwt(jwt).exp, EXP);
  });
});
