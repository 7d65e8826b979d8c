/**
 * The list filter language (src/controller/filter.ts): operators, precedence,
 * literals, and that every malformed filter is refused as
 * ERR_INVALID_ARGUMENT (HTTP 400), never as another error (HTTP 500).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compileFilter, type FieldGetter } from '../../src/controller/filter.js';
import { isEdgeError } from '../../src/errors.js';

interface Row {
  name: string;
  type: string;
  isAdmin: boolean;
  count: number;
  roleAttributes: string[];
  externalId: string | null;
  a: number;
  b: number;
  c: number;
}

const FIELDS: Record<string, FieldGetter<Row>> = {
  name: (r) => r.name,
  type: (r) => r.type,
  isAdmin: (r) => r.isAdmin,
  count: (r) => r.count,
  roleAttributes: (r) => r.roleAttributes,
  externalId: (r) => r.externalId,
  a: (r) => r.a,
  b: (r) => r.b,
  c: (r) => r.c,
};

function row(over: Partial<Row> = {}): Row {
  return { name: 'plc-7', type: 'Device', isAdmin: false, count: 3, roleAttributes: ['plant-a', 'plc'], externalId: null, a: 0, b: 0, c: 0, ...over };
}

const ROWS: Row[] = [
  row({ name: 'plc-7', type: 'Device', roleAttributes: ['plant-a', 'plc'], count: 3 }),
  row({ name: 'Admin Console', type: 'User', isAdmin: true, roleAttributes: ['ops'], count: 10 }),
  row({ name: 'say "hi"', type: 'Service', roleAttributes: [], count: 0, externalId: 'ext-1' }),
];

/** Names of the rows a filter keeps. */
function names(src: string, rows: Row[] = ROWS): string[] {
  return rows.filter(compileFilter(src, FIELDS)).map((r) => r.name);
}

/** Asserts `fn` throws an EdgeError with ERR_INVALID_ARGUMENT whose message matches `why`. */
function assertInvalid(src: string, why?: RegExp): void {
  assert.throws(() => compileFilter(src, FIELDS), (err: unknown) => {
    assert.ok(isEdgeError(err), `expected an EdgeError for ${JSON.stringify(src)}, got ${String(err)}`);
    assert.equal(err.code, 'ERR_INVALID_ARGUMENT');
    if (why !== undefined) assert.match(err.message, why);
    return true;
  });
}

describe('compileFilter operators', () => {
  test('= on strings', () => {
    assert.deepEqual(names('name = "plc-7"'), ['plc-7']);
    assert.deepEqual(names('type = "User"'), ['Admin Console']);
    assert.deepEqual(names('name = "nobody"'), []);
  });

  test('= is case-sensitive', () => {
    assert.deepEqual(names('type = "user"'), []);
  });

  test('!= negates =', () => {
    assert.deepEqual(names('type != "Device"'), ['Admin Console', 'say "hi"']);
  });

  test('= on an array field matches any element', () => {
    assert.deepEqual(names('roleAttributes = "plc"'), ['plc-7']);
    assert.deepEqual(names('roleAttributes = "pl"'), [], '= on arrays is exact, not a substring');
  });

  test('contains on arrays is element membership', () => {
    assert.deepEqual(names('roleAttributes contains "ops"'), ['Admin Console']);
    assert.deepEqual(names('roleAttributes contains "op"'), [], 'no substring match inside array elements');
  });

  test('contains on strings is a case-sensitive substring match', () => {
    assert.deepEqual(names('name contains "Console"'), ['Admin Console']);
    assert.deepEqual(names('name contains "console"'), []);
    assert.deepEqual(names('name contains "-"'), ['plc-7']);
  });

  test('icontains ignores case', () => {
    assert.deepEqual(names('name icontains "CONSOLE"'), ['Admin Console']);
    assert.deepEqual(names('name ICONTAINS "plc"'), ['plc-7'], 'operator words are case-insensitive');
  });

  test('startswith', () => {
    assert.deepEqual(names('name startswith "plc"'), ['plc-7']);
    assert.deepEqual(names('name startswith "7"'), []);
  });

  test('numbers compare as numbers and as their text', () => {
    assert.deepEqual(names('count = 10'), ['Admin Console']);
    assert.deepEqual(names('count != 0'), ['plc-7', 'Admin Console']);
    assert.deepEqual(names('count = -1'), []);
    assert.deepEqual(names('count = 3.5'), []);
    assert.deepEqual(names('count = "3"'), ['plc-7'], 'a quoted number still matches the numeric field by text');
  });

  test('booleans compare strictly', () => {
    assert.deepEqual(names('isAdmin = true'), ['Admin Console']);
    assert.deepEqual(names('isAdmin = false'), ['plc-7', 'say "hi"']);
    assert.deepEqual(names('isAdmin = "true"'), ['Admin Console'], 'quoted "true" is text and matches the text of true');
    assert.deepEqual(names('name = true', [row({ name: 'true' })]), [], 'a boolean literal never matches a string');
  });

  test('null literal', () => {
    assert.deepEqual(names('externalId = null'), ['plc-7', 'Admin Console']);
    assert.deepEqual(names('externalId != null'), ['say "hi"']);
  });

  test('bare words are string values', () => {
    assert.deepEqual(names('type = Device'), ['plc-7']);
    assert.deepEqual(names('name = plc-7'), ['plc-7']);
  });

  test('"true" alone matches everything', () => {
    assert.deepEqual(names('true'), ROWS.map((r) => r.name));
    assert.deepEqual(names('TRUE'), ROWS.map((r) => r.name));
    assert.deepEqual(names('true and type = "User"'), ['Admin Console']);
  });
});

describe('compileFilter strings', () => {
  test('double- and single-quoted strings may hold spaces', () => {
    assert.deepEqual(names('name = "Admin Console"'), ['Admin Console']);
    assert.deepEqual(names("name = 'Admin Console'"), ['Admin Console']);
  });

  test('escaped quotes inside strings', () => {
    assert.deepEqual(names('name = "say \\"hi\\""'), ['say "hi"']);
    assert.deepEqual(names("name = 'say \"hi\"'"), ['say "hi"'], 'the other quote needs no escape');
    assert.deepEqual(names('name = "a\\\\b"', [row({ name: 'a\\b' })]), ['a\\b'], 'an escaped backslash');
  });

  test('operators and keywords inside strings are text', () => {
    const rows = [row({ name: 'x and y = (z)' }), row({ name: 'other' })];
    assert.deepEqual(names('name = "x and y = (z)"', rows), ['x and y = (z)']);
  });
});

describe('compileFilter and/or', () => {
  const grid: Row[] = [];
  for (const a of [0, 1]) for (const b of [0, 1]) for (const c of [0, 1]) grid.push(row({ name: `${a}${b}${c}`, a, b, c }));

  test('and binds tighter than or', () => {
    // a or (b and c), not (a or b) and c: "100" tells them apart.
    assert.deepEqual(names('a = 1 or b = 1 and c = 1', grid), ['011', '100', '101', '110', '111']);
    assert.deepEqual(names('a = 1 and b = 1 or c = 1', grid), ['001', '011', '101', '110', '111']);
  });

  test('parentheses override precedence', () => {
    assert.deepEqual(names('(a = 1 or b = 1) and c = 1', grid), ['011', '101', '111']);
    assert.deepEqual(names('a = 1 and (b = 1 or c = 1)', grid), ['101', '110', '111']);
    assert.deepEqual(names('((a = 1))', grid), ['100', '101', '110', '111']);
  });

  test('and/or keywords are case-insensitive', () => {
    assert.deepEqual(names('a = 1 AND b = 1 Or c = 9', grid), ['110', '111']);
  });

  test('chains of the same connective', () => {
    assert.deepEqual(names('a = 1 and b = 1 and c = 1', grid), ['111']);
    assert.deepEqual(names('a = 1 or b = 1 or c = 1', grid), grid.map((r) => r.name).filter((n) => n !== '000'));
  });

  test('whitespace is free', () => {
    assert.deepEqual(names('(a=1)and(b=1)', grid), ['110', '111']);
    assert.deepEqual(names('\ta = 1\nand b = 1 ', grid), ['110', '111']);
  });
});

describe('compileFilter malformed input', () => {
  test('unterminated string', () => {
    assertInvalid('name = "plc', /unterminated string/);
    assertInvalid("name = 'plc", /unterminated string/);
    assertInvalid('name = "plc\\"', /unterminated string/);
  });

  test('unknown field names the filterable ones', () => {
    assertInvalid('colour = "red"', /unknown field "colour".*name, type/);
  });

  test('Object.prototype keys are not fields', () => {
    // Without an own-key check these resolved to Object.prototype members:
    // "__proto__" compiled and then threw a TypeError per row (an HTTP 500).
    for (const f of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) assertInvalid(`${f} = 1`, /unknown field/);
  });

  test('missing value', () => {
    assertInvalid('name =', /expected a value/);
    assertInvalid('name = )', /expected a value/);
    assertInvalid('name = = "x"', /expected a value/);
  });

  test('missing operator or condition', () => {
    assertInvalid('name', /expected an operator/);
    assertInvalid('', /expected a condition/);
    assertInvalid('name = "x" and', /expected a condition/);
    assertInvalid('()', /expected a field name/);
  });

  test('trailing garbage', () => {
    assertInvalid('name = "x" "y"', /unexpected/);
    assertInvalid('name = "x" )', /unexpected "\)"/);
    assertInvalid('true name', /unexpected "name"/);
  });

  test('unknown operator', () => {
    assertInvalid('name like "x"', /unknown operator "like"/);
    assertInvalid('name > 3', /unexpected character ">"|unknown operator/);
    assertInvalid('name ! "x"', /unexpected character "!"/);
  });

  test('unbalanced parentheses', () => {
    assertInvalid('(name = "x"', /expected "\)"/);
    assertInvalid('name = "x")', /unexpected/);
  });

  test('the message names the position', () => {
    assertInvalid('name = "x" and colour = 1', /position 15/);
  });

  test('deep nesting is refused, not a stack overflow', () => {
    // The API accepts filters up to 4096 characters; 4096 "(" used to overflow the stack (RangeError → HTTP 500).
    assertInvalid('('.repeat(4096), /nested deeper/);
    assertInvalid(`${'('.repeat(4000)}a = 1${')'.repeat(4000)}`, /nested deeper/);
    assert.deepEqual(names(`${'('.repeat(32)}name = "plc-7"${')'.repeat(32)}`), ['plc-7'], 'reasonable nesting still works');
  });
});

describe('compileFilter properties', () => {
  /** Assorted pieces of the language, so random filters often get past the tokenizer. */
  const piece = fc.constantFrom(
    'name', 'type', 'count', 'roleAttributes', 'isAdmin', 'externalId', 'colour', '__proto__', 'constructor',
    '=', '!=', '!', 'contains', 'icontains', 'startswith', 'like', 'and', 'or', 'AND', 'true', 'false', 'null',
    '(', ')', '"', "'", '\\', '"x y"', "'q'", '"a\\"b"', '3', '-1', '2.5', ' ', '\t',
  );
  /** Filters built from the grammar, so a good share compile and their predicates run. */
  const wellFormed = fc.letrec<{ filter: string }>((tie) => ({
    filter: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.tuple(
        fc.constantFrom('name', 'type', 'count', 'roleAttributes', 'isAdmin', 'externalId', '__proto__'),
        fc.constantFrom('=', '!=', 'contains', 'icontains', 'startswith'),
        fc.oneof(fc.string({ maxLength: 8 }).map((v) => JSON.stringify(v)), fc.constantFrom('true', 'false', 'null', '3', '-1', '2.5', 'plc')),
      ).map(([f, op, v]) => `${f} ${op} ${v}`),
      fc.constant('true'),
      fc.tuple(tie('filter'), fc.constantFrom('and', 'or'), tie('filter')).map(([l, k, r]) => `${l} ${k} ${r}`),
      tie('filter').map((f) => `(${f})`),
    ),
  })).filter;
  /** A well-formed filter with one piece inserted or one character removed. */
  const mutated = fc.tuple(wellFormed, fc.nat(), piece, fc.boolean()).map(([f, at, p, insert]) => {
    const i = at % (f.length + 1);
    return insert ? `${f.slice(0, i)} ${p} ${f.slice(i)}` : f.slice(0, i) + f.slice(i + 1);
  });
  const filterText = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.array(piece, { maxLength: 14 }).map((p) => p.join(' ')),
    fc.array(piece, { maxLength: 14 }).map((p) => p.join('')),
    wellFormed,
    mutated,
  );

  test('any string compiles to a total predicate or throws ERR_INVALID_ARGUMENT', () => {
    let compiled = 0;
    let refused = 0;
    fc.assert(
      fc.property(filterText, (src) => {
        let pred: ((r: Row) => boolean) | undefined;
        try {
          pred = compileFilter(src, FIELDS);
        } catch (err) {
          if (!isEdgeError(err) || err.code !== 'ERR_INVALID_ARGUMENT') return false;
          refused++;
          return true;
        }
        compiled++;
        if (typeof pred !== 'function') return false;
        // A compiled filter must also run on every row without throwing.
        return ROWS.every((r) => typeof pred(r) === 'boolean');
      }),
      { numRuns: 500, seed: 0x5eed },
    );
    // The generator must exercise both outcomes, or the property proves little.
    assert.ok(compiled > 10, `only ${compiled} filters compiled`);
    assert.ok(refused > 10, `only ${refused} filters refused`);
  });

  test('a quoted value round-trips through escaping', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (value) => {
        const quoted = `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
        const pred = compileFilter(`name = ${quoted}`, FIELDS);
        return pred(row({ name: value })) && !pred(row({ name: `${value}!` }));
      }),
      { numRuns: 300, seed: 0x5eed },
    );
  });
});
