/**
 * A small subset of OpenZiti's list filter language, enough for the habits
 * people bring from `ziti edge list … 'name = "x"'`:
 *
 *   filter  := clause (("and" | "or") clause)*      ("and" binds tighter)
 *   clause  := field op value | "(" filter ")" | "true"
 *   op      := "=" | "!=" | "contains" | "icontains" | "startswith"
 *   value   := "quoted" | number | true | false | null | bare-word
 *
 * Parsing is pure: a bad filter throws ERR_INVALID_ARGUMENT naming the spot.
 */
import { EdgeError } from '../errors.js';

export type FieldGetter<T> = (entity: T) => unknown;
export type Predicate<T> = (entity: T) => boolean;

type Token = { kind: 'word' | 'string' | 'op' | 'paren'; text: string; at: number };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === ' ' || c === '\t' || c === '\n') { i++; continue; }
    if (c === '(' || c === ')') { out.push({ kind: 'paren', text: c, at: i }); i++; continue; }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let text = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) j++;
        text += src[j];
        j++;
      }
      if (j >= src.length) throw bad(src, i, 'unterminated string');
      out.push({ kind: 'string', text, at: i });
      i = j + 1;
      continue;
    }
    if (c === '=' ) { out.push({ kind: 'op', text: '=', at: i }); i++; continue; }
    if (c === '!' && src[i + 1] === '=') { out.push({ kind: 'op', text: '!=', at: i }); i += 2; continue; }
    let j = i;
    while (j < src.length && !' \t\n()="\'!'.includes(src[j]!)) j++;
    if (j === i) throw bad(src, i, `unexpected character "${c}"`);
    out.push({ kind: 'word', text: src.slice(i, j), at: i });
    i = j;
  }
  return out;
}

function bad(src: string, at: number, why: string): EdgeError {
  return new EdgeError('ERR_INVALID_ARGUMENT', `invalid filter at position ${at} (${why}): ${src}`);
}

const WORD_OPS = new Set(['contains', 'icontains', 'startswith']);

/**
 * Deepest parenthesis nesting accepted. The parser recurses per level, and a
 * 4096-character filter of "(" would otherwise overflow the stack (a
 * RangeError, answered as HTTP 500) instead of being refused as a bad filter.
 */
const MAX_NESTING = 64;

/**
 * Compiles `src` into a predicate over entities whose fields are read
 * through `fields` (filterable field name → getter).
 */
export function compileFilter<T>(src: string, fields: Record<string, FieldGetter<T>>): Predicate<T> {
  const toks = tokenize(src);
  let pos = 0;
  let depth = 0;
  const peek = (): Token | undefined => toks[pos];
  const atEnd = (): boolean => pos >= toks.length;

  function parseOr(): Predicate<T> {
    let left = parseAnd();
    while (!atEnd() && peek()!.kind === 'word' && peek()!.text.toLowerCase() === 'or') {
      pos++;
      const l = left; const r = parseAnd();
      left = (e) => l(e) || r(e);
    }
    return left;
  }
  function parseAnd(): Predicate<T> {
    let left = parseClause();
    while (!atEnd() && peek()!.kind === 'word' && peek()!.text.toLowerCase() === 'and') {
      pos++;
      const l = left; const r = parseClause();
      left = (e) => l(e) && r(e);
    }
    return left;
  }
  function parseClause(): Predicate<T> {
    const t = toks[pos++];
    if (t === undefined) throw bad(src, src.length, 'expected a condition');
    if (t.kind === 'paren' && t.text === '(') {
      if (++depth > MAX_NESTING) throw bad(src, t.at, `parentheses nested deeper than ${MAX_NESTING}`);
      const inner = parseOr();
      depth--;
      const close = toks[pos++];
      if (close?.text !== ')') throw bad(src, close?.at ?? src.length, 'expected ")"');
      return inner;
    }
    if (t.kind === 'word' && t.text.toLowerCase() === 'true' && (atEnd() || peek()!.kind !== 'op')) return () => true;
    if (t.kind !== 'word') throw bad(src, t.at, 'expected a field name');
    // Own keys only: "constructor" or "__proto__" must not resolve through Object.prototype.
    const getter = Object.hasOwn(fields, t.text) ? fields[t.text] : undefined;
    if (getter === undefined) {
      throw bad(src, t.at, `unknown field "${t.text}"; filterable: ${Object.keys(fields).join(', ')}`);
    }
    const opTok = toks[pos++];
    if (opTok === undefined) throw bad(src, src.length, 'expected an operator');
    const op = opTok.kind === 'op' ? opTok.text : opTok.text.toLowerCase();
    if (opTok.kind !== 'op' && !WORD_OPS.has(op)) throw bad(src, opTok.at, `unknown operator "${opTok.text}"`);
    const valTok = toks[pos++];
    if (valTok === undefined || valTok.kind === 'paren' || valTok.kind === 'op') throw bad(src, valTok?.at ?? src.length, 'expected a value');
    const value = valTok.kind === 'string' ? valTok.text : literal(valTok.text);
    return matcher(getter, op, value);
  }

  const pred = parseOr();
  if (!atEnd()) throw bad(src, peek()!.at, `unexpected "${peek()!.text}"`);
  return pred;
}

function literal(word: string): unknown {
  if (word === 'true') return true;
  if (word === 'false') return false;
  if (word === 'null') return null;
  if (/^-?\d+(\.\d+)?$/.test(word)) return Number(word);
  return word;
}

function matcher<T>(get: FieldGetter<T>, op: string, value: unknown): Predicate<T> {
  const eq = (a: unknown): boolean => (Array.isArray(a) ? a.some((x) => x === value) : a === value || (a !== null && a !== undefined && String(a) === String(value) && typeof value !== 'boolean'));
  switch (op) {
    case '=': return (e) => eq(get(e));
    case '!=': return (e) => !eq(get(e));
    case 'contains': return (e) => { const a = get(e); return Array.isArray(a) ? a.includes(value) : String(a ?? '').includes(String(value)); };
    case 'icontains': return (e) => String(get(e) ?? '').toLowerCase().includes(String(value).toLowerCase());
    default: return (e) => String(get(e) ?? '').startsWith(String(value));
  }
}
