/**
 * PKCS#11 key references (src/keys/pkcs11-uri.ts): the RFC 7512 spelling,
 * OpenZiti's pkcs11:///module?slot=… spelling, the coded errors (which must
 * never quote a PIN), and the round trip parse(format(ref)) = ref that the
 * identity file relies on.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Ref } from '../../src/keys/pkcs11-uri.js';
import { isEdgeError } from '../../src/errors.js';

const SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so';
const MP = `module-path=${SOFTHSM}`;

/** Asserts that parsing `uri` throws ERR_KEY whose message matches `why`; returns the message. */
function parseError(uri: string, why?: RegExp): string {
  let caught: unknown;
  try {
    parsePkcs11Uri(uri);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected ${uri} to be rejected`);
  assert.ok(isEdgeError(caught), `expected an EdgeError for ${uri}, got ${String(caught)}`);
  assert.equal(caught.code, 'ERR_KEY');
  if (why !== undefined) assert.match(caught.message, why);
  return caught.message;
}

describe('parsePkcs11Uri: RFC 7512', () => {
  test('token, object and a percent-encoded id', () => {
    assert.deepEqual(parsePkcs11Uri(`pkcs11:token=ztedge;object=device-key;id=%01%02?${MP}`), {
      tokenLabel: 'ztedge', objectLabel: 'device-key', objectId: Buffer.from([1, 2]), modulePath: SOFTHSM,
    });
  });

  test('§3 example: percent-encoded token label, mixed-case hex in id, unknown attributes ignored', () => {
    // RFC 7512 §3, with module-path added (ztedge needs the module).
    const ref = parsePkcs11Uri('pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;'
      + `model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin&${MP}`);
    assert.deepEqual(ref, {
      tokenLabel: 'The Software PKCS#11 Softtoken',
      objectLabel: 'my-certificate',
      objectId: Buffer.from('69953e5cf4bdec91', 'hex'),
      pinSource: 'file:/etc/token_pin',
      modulePath: SOFTHSM,
    });
    assert.deepEqual(parsePkcs11Uri(`pkcs11:token=t;id=%01%02%03%Ba%dd%Ef%fe?${MP}`).objectId, Buffer.from('010203baddeffe', 'hex'));
  });

  test('§3 examples: "%25%3B" and UTF-8 in labels', () => {
    assert.equal(parsePkcs11Uri(`pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert?${MP}`).tokenLabel, 'A name with a substring %;');
    assert.equal(parsePkcs11Uri(`pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=k?${MP}`).tokenLabel, 'Name with a small A with acute: á');
  });

  test('§3 example: vendor attributes in path and query are ignored', () => {
    assert.deepEqual(parsePkcs11Uri(`pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a?pin-source=file:/etc/token_pin&vendor-bbb=value-b&${MP}`), {
      tokenLabel: 'my-token', objectLabel: 'my-certificate', pinSource: 'file:/etc/token_pin', modulePath: SOFTHSM,
    });
    const ref = parsePkcs11Uri(`pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23;slot-description=Sun%20Metaslot;token=t;object=k?${MP}`);
    assert.deepEqual(ref, { tokenLabel: 't', objectLabel: 'k', modulePath: SOFTHSM });
  });

  test('slot-id instead of a token label', () => {
    assert.deepEqual(parsePkcs11Uri(`pkcs11:slot-id=1622324469;object=k?${MP}`), { slotId: 1622324469, objectLabel: 'k', modulePath: SOFTHSM });
    assert.equal(parsePkcs11Uri(`pkcs11:slot-id=0;id=%ff?${MP}`).slotId, 0);
  });

  test('type=private, public and cert are accepted; other types are not', () => {
    for (const type of ['private', 'public', 'cert']) {
      assert.equal(parsePkcs11Uri(`pkcs11:token=t;object=k;type=${type}?${MP}`).objectLabel, 'k');
    }
    parseError(`pkcs11:token=t;object=k;type=secret-key?${MP}`, /type "secret-key"/);
  });

  test('pin-source and pin-value', () => {
    assert.equal(parsePkcs11Uri(`pkcs11:token=t;object=k?${MP}&pin-source=file:/etc/ztedge/pin`).pinSource, 'file:/etc/ztedge/pin');
    assert.equal(parsePkcs11Uri(`pkcs11:token=t;object=k?${MP}&pin-value=12%2634`).pinValue, '12&34');
  });

  test('module-path is percent-decoded; module-name is used only without module-path', () => {
    assert.equal(parsePkcs11Uri('pkcs11:token=t;object=k?module-path=/opt/my%20hsm/lib.so').modulePath, '/opt/my hsm/lib.so');
    assert.equal(parsePkcs11Uri('pkcs11:token=t;object=k?module-name=mypkcs11').modulePath, 'mypkcs11');
    assert.equal(parsePkcs11Uri(`pkcs11:token=t;object=k?module-name=mypkcs11&${MP}`).modulePath, SOFTHSM);
    assert.equal(parsePkcs11Uri(`pkcs11:token=t;object=k?${MP}&module-name=mypkcs11`).modulePath, SOFTHSM);
  });
});

describe('parsePkcs11Uri: OpenZiti pkcs11:///module?…', () => {
  test('the C SDK form: slot, pin, hex id, label', () => {
    assert.deepEqual(parsePkcs11Uri('pkcs11:///usr/lib/softhsm/libsofthsm2.so?slot=0&pin=1234&id=0102&label=k'), {
      modulePath: SOFTHSM, slotId: 0, pinValue: '1234', objectId: Buffer.from([1, 2]), objectLabel: 'k',
    });
  });

  test('slot in 0x hex', () => {
    assert.equal(parsePkcs11Uri(`pkcs11://${SOFTHSM}?slot=0x1&id=01`).slotId, 1);
    assert.equal(parsePkcs11Uri(`pkcs11://${SOFTHSM}?slot=0X1f&label=k`).slotId, 31);
  });

  test('a Windows module path loses the leading slash', () => {
    assert.deepEqual(parsePkcs11Uri('pkcs11:///C:/Program%20Files/x/y.dll?slot=2&label=k'), { modulePath: 'C:/Program Files/x/y.dll', slotId: 2, objectLabel: 'k' });
    assert.equal(parsePkcs11Uri('pkcs11:///C:/x/y.dll?slot=0&id=ab').modulePath, 'C:/x/y.dll');
  });

  test('token instead of slot', () => {
    assert.deepEqual(parsePkcs11Uri(`pkcs11://${SOFTHSM}?token=ztedge&label=k`), { modulePath: SOFTHSM, tokenLabel: 'ztedge', objectLabel: 'k' });
  });
});

describe('parsePkcs11Uri: errors', () => {
  test('missing module path', () => {
    parseError('pkcs11:token=t;object=k', /module-path is required/);
    parseError('pkcs11:token=t;object=k?module-path=', /module-path is required/);
    parseError('pkcs11:token=t;object=k?pin-source=file:/p', /module-path is required/);
    parseError('pkcs11:///?slot=0&id=01', /module path is missing/);
    parseError('pkcs11://', /module path is missing/);
  });

  test('no token and no slot', () => {
    parseError(`pkcs11:object=k?${MP}`, /name the token/);
    parseError(`pkcs11://${SOFTHSM}?label=k`, /name the slot/);
  });

  test('no object and no id', () => {
    parseError(`pkcs11:token=t?${MP}`, /name the key/);
    parseError(`pkcs11:token=t;type=private?${MP}`, /name the key/);
    parseError(`pkcs11://${SOFTHSM}?slot=0`, /name the key/);
  });

  test('bad percent escapes', () => {
    for (const bad of ['%zz', '%4', '%', 'a%g1']) parseError(`pkcs11:token=t;object=${bad}?${MP}`, /bad percent-encoding/);
    parseError(`pkcs11:token=t;object=k?module-path=/x%2`, /bad percent-encoding/);
    parseError('pkcs11:///usr/lib/%E0.so?slot=0&id=01', /bad percent-encoding in the module path/);
    parseError('pkcs11:///%?slot=0&id=01', /bad percent-encoding in the module path/);
  });

  test('an attribute given twice (RFC 7512 §2.3)', () => {
    parseError(`pkcs11:token=t;object=a;object=b?${MP}`, /"object" appears twice/);
    parseError(`pkcs11:token=t;object=k?${MP}&${MP}`, /"module-path" appears twice/);
    parseError(`pkcs11:token=t;object=k?${MP}&pin-value=1&pin-value=2`, /"pin-value" appears twice/);
  });

  test('attributes that are not name=value', () => {
    parseError(`pkcs11:token=t;object?${MP}`, /not name=value/);
    parseError(`pkcs11:token=t;=k?${MP}`, /not name=value/);
    parseError(`pkcs11:token=t;object=k?${MP}&flag`, /not name=value/);
  });

  test('bad slot-id and slot', () => {
    // Number() would have read "" as slot 0, "1e3" as 1000 and " 5" as 5.
    for (const bad of ['abc', '-1', '1.5', '', '1e3', '0x1', '%205', '99999999999999999999']) {
      parseError(`pkcs11:slot-id=${bad};object=k?${MP}`, /slot-id must be/);
    }
    for (const bad of ['abc', '-1', '1.5', '', '1e3', '0x', '0xg', '%205']) {
      parseError(`pkcs11://${SOFTHSM}?slot=${bad}&id=01`, /is not a number/);
    }
  });

  test('bad hex id in the OpenZiti form', () => {
    for (const bad of ['xyz', '123', '0g', '', '%01']) parseError(`pkcs11://${SOFTHSM}?slot=0&id=${bad}`, /id must be hex/);
  });

  test('other schemes', () => {
    for (const uri of ['file:///etc/ztedge/key.pem', 'pkcs12:token=t;object=k', 'pkcs11', '', ' pkcs11:token=t;object=k?module-path=/m', '/usr/lib/softhsm/libsofthsm2.so']) {
      parseError(uri, /must start with pkcs11:|not a URL/);
    }
  });

  test('no error message quotes the PIN', () => {
    const pin = 'secret123';
    const uris = [
      `pkcs11:token=t?${MP}&pin-value=${pin}`,
      `pkcs11:object=k?${MP}&pin-value=${pin}`,
      `pkcs11:token=t;object=k?pin-value=${pin}`,
      `pkcs11:token=t;object=k?pin-value=${pin}&${MP}&${MP}`,
      `pkcs11:token=t;object=k?${MP}&pin-value=${pin}&pin-value=${pin}`,
      `pkcs11:token=t;object=k;id=%zz?${MP}&pin-value=${pin}`,
      `pkcs11:slot-id=x;object=k?pin-value=${pin}&${MP}`,
      `pkcs11:token=t;object=k?${MP}&pin-value=${pin}%zz`, // the bad escape is inside the PIN
      `pkcs11:token=t?${MP}&pin-value=x;${pin}`, // ";" does not end a query attribute
      `pkcs11:token=t;object=k;pin-value=${pin}?module-path=`,
      `pkcs11://${SOFTHSM}?slot=0&pin=${pin}`,
      `pkcs11://${SOFTHSM}?slot=bad&pin=${pin}&id=01`,
      `pkcs11://${SOFTHSM}?pin=${pin}&slot=0&id=xyz`,
      `pkcs11://${SOFTHSM}?slot=bad&pin=x;${pin}`,
      `pkcs11://${SOFTHSM}?slot=bad&p%69n=${pin}`, // URLSearchParams decodes the name: this is the PIN
      `pkcs11:///%E0?slot=0&pin=${pin}`,
      `pkcs11:///?slot=0&pin=${pin}`,
    ];
    for (const uri of uris) {
      const message = parseError(uri);
      assert.ok(!message.includes(pin), `the message for ${uri} quotes the PIN: ${message}`);
    }
  });

  test('property: no error message quotes a PIN that sits in the query', () => {
    // A marker in front makes an accidental match with other text impossible.
    const pinChar = fc.constantFrom(...'abcXYZ019;:/?=#%+ -_.~!$\'()*,@[]|é'.split(''));
    const pinArb = fc.string({ unit: pinChar, maxLength: 20 }).map((s) => `Qz7${s}`);
    const broken = fc.constantFrom(
      (pin: string) => `pkcs11:token=t?${MP}&pin-value=${pin}`,
      (pin: string) => `pkcs11:slot-id=-1;object=k?pin-value=${pin}&${MP}`,
      (pin: string) => `pkcs11:token=t;object=k?pin-value=${pin}`,
      (pin: string) => `pkcs11://${SOFTHSM}?slot=x&pin=${pin}`,
      (pin: string) => `pkcs11://${SOFTHSM}?pin=${pin}&slot=0&id=zz`,
    );
    fc.assert(fc.property(pinArb, broken, (pin, make) => {
      const uri = make(pin);
      let message = '';
      try {
        parsePkcs11Uri(uri);
        // A '#' can cut the query short in the OpenZiti form, leaving a URI that parses.
        return;
      } catch (err) {
        assert.ok(isEdgeError(err) && err.code === 'ERR_KEY', String(err));
        message = err.message;
      }
      assert.ok(!message.includes('Qz7'), `the message for ${uri} quotes the PIN: ${message}`);
    }), { numRuns: 300 });
  });
});

describe('formatPkcs11Uri', () => {
  test('writes the RFC 7512 form with percent-encoded labels and id', () => {
    assert.equal(
      formatPkcs11Uri({ modulePath: SOFTHSM, tokenLabel: 'my token', objectLabel: 'k;1', objectId: Buffer.from([0xab, 0x01]), pinSource: 'file:/etc/ztedge/pin' }),
      `pkcs11:token=my%20token;object=k%3b1;id=%ab%01?${MP}&pin-source=file:/etc/ztedge/pin`,
    );
    // The id is always percent-encoded, even bytes that are printable.
    assert.equal(formatPkcs11Uri({ modulePath: '/m.so', slotId: 3, objectId: Buffer.from('AZ') }), 'pkcs11:slot-id=3;id=%41%5a?module-path=/m.so');
  });

  const refs: Pkcs11Ref[] = [
    { modulePath: SOFTHSM, tokenLabel: 'ztedge', objectLabel: 'device-key', objectId: Buffer.from([1, 2]) },
    { modulePath: SOFTHSM, tokenLabel: 'a;b?c&d%e f', objectLabel: 'x=y;z?&%25 %', pinValue: '12;34&56%78' },
    { modulePath: '/opt/my hsm/lib?.so', slotId: 0, objectLabel: 'clé ключ 鍵 🔑', pinSource: 'file:/etc/pin file' },
    { modulePath: 'C:/Program Files/x/y.dll', slotId: 1622324469, objectId: Buffer.alloc(0), tokenLabel: '' },
    { modulePath: '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so', tokenLabel: 'tpm', objectId: Buffer.from('00ff25263b3f', 'hex') },
  ];
  for (const [i, ref] of refs.entries()) {
    test(`round trip ${i}: parse(format(ref)) = ref`, () => {
      assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(ref)), ref);
    });
  }

  test('property: parse(format(ref)) = ref', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 24 });
    const opt = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
    const refArb = fc.record({
      modulePath: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
      tokenLabel: opt(text),
      slotId: opt(fc.nat()),
      objectLabel: opt(text),
      objectId: opt(fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a))),
      pinSource: opt(text),
      pinValue: opt(text),
    }).filter((r) => (r.tokenLabel !== undefined || r.slotId !== undefined) && (r.objectLabel !== undefined || r.objectId !== undefined))
      // Absent fields are left out, as the parser leaves them out.
      .map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as unknown as Pkcs11Ref);
    fc.assert(fc.property(refArb, (ref) => {
      assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(ref)), ref);
    }), { numRuns: 300 });
  });
});

describe('parsePkcs11Uri on arbitrary input', () => {
  test('property: returns a reference or throws ERR_KEY, nothing else', () => {
    // Mostly URI-ish characters, so the parser gets past its first checks.
    const uriChar = fc.constantFrom(...'/?&;=%0aAfFzZ:.-_ é'.split(''), 'token=', 'object=', 'id=', 'slot-id=', 'slot=', 'module-path=', 'pin-value=', 'pin=', 'label=', '0x', '%2', '%E0');
    const tail = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.string({ unit: uriChar, maxLength: 30 }),
    );
    const prefix = fc.constantFrom('pkcs11:', 'pkcs11:/', 'pkcs11://', 'pkcs11:///');
    fc.assert(fc.property(prefix, tail, (p, s) => {
      try {
        const ref = parsePkcs11Uri(p + s);
        assert.equal(typeof ref.modulePath, 'string');
        assert.ok(ref.modulePath.length > 0);
        assert.ok(ref.tokenLabel !== undefined || ref.slotId !== undefined);
        assert.ok(ref.objectLabel !== undefined || ref.objectId !== undefined);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(isEdgeError(err), `not an EdgeError for ${JSON.stringify(p + s)}: ${String(err)}`);
        assert.equal(err.code, 'ERR_KEY');
      }
    }), { numRuns: 300 });
  });
});
