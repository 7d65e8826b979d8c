/**
 * TOTP (src/controller/totp.ts) against the published vectors: RFC 4226
 * Appendix D (HOTP), RFC 6238 Appendix B (TOTP, 8 digits, SHA-1/256/512),
 * our 6-digit SHA-1 variant of the same times, RFC 4648 §10 (base32); then
 * the window of ±1 step and the otpauth:// URL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base32Decode, base32Encode, hotp, matchTotp, provisioningUrl, totp, totpStep } from '../../src/controller/totp.js';

const SEED = {
  sha1: Buffer.from('12345678901234567890'),
  sha256: Buffer.from('12345678901234567890123456789012'),
  sha512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
};

test('HOTP: RFC 4226 Appendix D', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => assert.equal(hotp(SEED.sha1, counter), code, `counter ${counter}`));
});

// RFC 6238 Appendix B: time (s) → TOTP (8 digits) for SHA-1, SHA-256, SHA-512.
const RFC6238: [time: number, step: string, sha1: string, sha256: string, sha512: string][] = [
  [59, '0000000000000001', '94287082', '46119246', '90693936'],
  [1111111109, '00000000023523EC', '07081804', '68084774', '25091201'],
  [1111111111, '00000000023523ED', '14050471', '67062674', '99943326'],
  [1234567890, '000000000273EF07', '89005924', '91819424', '93441116'],
  [2000000000, '0000000003F940AA', '69279037', '90698825', '38618901'],
  [20000000000, '0000000027BC86AA', '65353130', '77737706', '47863826'],
];

test('TOTP: RFC 6238 Appendix B, 8 digits, SHA-1, SHA-256 and SHA-512', () => {
  for (const [time, step, sha1, sha256, sha512] of RFC6238) {
    assert.equal(totpStep(time * 1000), parseInt(step, 16), `T at ${time}`);
    assert.equal(totp(SEED.sha1, time * 1000, { digits: 8 }), sha1, `SHA-1 at ${time}`);
    assert.equal(totp(SEED.sha256, time * 1000, { digits: 8, algorithm: 'sha256' }), sha256, `SHA-256 at ${time}`);
    assert.equal(totp(SEED.sha512, time * 1000, { digits: 8, algorithm: 'sha512' }), sha512, `SHA-512 at ${time}`);
  }
});

test('TOTP: our 6-digit SHA-1 variant is the low six digits of the RFC values', () => {
  const sixDigits = ['287082', '081804', '050471', '005924', '279037', '353130'];
  RFC6238.forEach(([time, , sha1], i) => {
    assert.equal(totp(SEED.sha1, time * 1000), sixDigits[i], `at ${time}`);
    assert.equal(totp(SEED.sha1, time * 1000), sha1.slice(2));
  });
  // Any moment within a step gives that step's code.
  assert.equal(totp(SEED.sha1, 1111111110_000), totp(SEED.sha1, 1111111119_999));
});

test('matchTotp accepts the codes of the previous, current and next step only, and says which step', () => {
  const now = 1234567890_000;
  const step = totpStep(now);
  for (const d of [-1, 0, 1]) assert.equal(matchTotp(SEED.sha1, hotp(SEED.sha1, step + d), now), step + d);
  for (const d of [-3, -2, 2, 3]) assert.equal(matchTotp(SEED.sha1, hotp(SEED.sha1, step + d), now), undefined, `step ${d}`);
  for (const bad of ['', '12345', '1234567', 'abcdef', ' 05924', hotp(SEED.sha1, step).replace(/^./, (c) => String((Number(c) + 1) % 10))]) {
    assert.equal(matchTotp(SEED.sha1, bad, now), undefined, JSON.stringify(bad));
  }
});

test('base32: RFC 4648 §10 vectors (unpadded), and back', () => {
  const vectors: [string, string][] = [['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']];
  for (const [plain, encoded] of vectors) {
    assert.equal(base32Encode(Buffer.from(plain)), encoded);
    assert.equal(base32Decode(encoded).toString(), plain);
    assert.equal(base32Decode(encoded.toLowerCase() + '===').toString(), plain);
  }
  assert.equal(base32Encode(SEED.sha1), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
  assert.throws(() => base32Decode('MZ1W'), RangeError);
});

test('provisioning URL: the otpauth:// form authenticator apps scan', () => {
  const url = new URL(provisioningUrl(SEED.sha1, 'ztedge', 'plc 7'));
  assert.equal(url.protocol, 'otpauth:');
  assert.equal(url.host, 'totp');
  assert.equal(decodeURIComponent(url.pathname), '/ztedge:plc 7');
  assert.deepEqual(Object.fromEntries(url.searchParams), { secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', issuer: 'ztedge', algorithm: 'SHA1', digits: '6', period: '30' });
});
