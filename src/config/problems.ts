/**
 * Config problems: one record per thing wrong with a config, and the words
 * used to report it. The validator collects every problem (schema errors,
 * cross-field checks, YAML syntax) and the loader throws them together in one
 * ERR_CONFIG, so an operator fixes a file in one pass instead of one error per
 * restart.
 *
 * A problem's message reads `KEY: what is wrong; expected X, found Y`, where
 * KEY is a path such as `tunnel.proxy[0].listen`.
 */
import type { TSchema } from '@sinclair/typebox';
import { EdgeError } from '../errors.js';
import { PATTERN_MEANING } from './schema.js';

/** A key path: object keys and array indexes, from the top of the document. */
export type KeyPath = readonly (string | number)[];

/** One thing wrong with a config. Safe to show: configs hold paths and addresses, never secrets. */
export interface ConfigProblem {
  /** Where, as segments (`['tunnel', 'proxy', 0, 'listen']`). Empty for the document itself. */
  readonly path: KeyPath;
  /** The same, as text (`tunnel.proxy[0].listen`; `(top level)` for the document; empty for file and syntax problems). */
  readonly key: string;
  /** What is wrong, without the key: `expected HOST:PORT …, found "x"`. */
  readonly message: string;
  /** 1-based line and column in the file, when known. */
  readonly line?: number;
  readonly col?: number;
}

/** Most problems listed in an error message; `details.problems` keeps them all. */
const MAX_LISTED = 40;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `['tunnel', 'proxy', 0, 'listen']` → `tunnel.proxy[0].listen`. */
export function formatKeyPath(path: KeyPath): string {
  if (path.length === 0) return '(top level)';
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENTIFIER.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Short, bounded text for a value found in a config (never the whole of a large value). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  if (typeof value === 'number') return `the number ${String(value)}`;
  if (typeof value === 'boolean') return `${String(value)} (a boolean)`;
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `a list of ${value.length} item${value.length === 1 ? '' : 's'}`;
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value}`;
}

/** What a schema accepts, in words. */
export function describeSchema(schema: TSchema): string {
  const s = schema as Record<string, unknown> & TSchema;
  if (Array.isArray(s.anyOf) && (s.anyOf as Record<string, unknown>[]).every((x) => 'const' in x)) {
    const names = (s.anyOf as Record<string, unknown>[]).map((x) => JSON.stringify(x.const));
    return `one of ${names.slice(0, -1).join(', ')} or ${names[names.length - 1]!}`;
  }
  switch (s.type) {
    case 'string': {
      if (typeof s.pattern === 'string') return PATTERN_MEANING.get(s.pattern) ?? `a string matching /${s.pattern}/`;
      return s.minLength === 1 ? 'a non-empty string' : 'a string';
    }
    case 'integer':
    case 'number': {
      const what = s.type === 'integer' ? 'a whole number' : 'a number';
      if (typeof s.minimum === 'number' && typeof s.maximum === 'number') return `${what} from ${s.minimum} to ${s.maximum}`;
      if (typeof s.minimum === 'number') return `${what} of at least ${s.minimum}`;
      return what;
    }
    case 'boolean':
      return 'true or false';
    case 'array':
      return `a list, each item ${describeSchema(s.items as TSchema)}`;
    case 'object':
      return 'a mapping (indented "key: value" lines or { key: value })';
    default:
      return 'a valid value';
  }
}

/**
 * Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions), so `mdoe` is 1 from `mode`. Letter case counts.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[(i - 1) * cols + j]! + 1, d[i * cols + j - 1]! + 1, d[(i - 1) * cols + j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}

/** The known key closest to `unknown`, if within edit distance 2 (and closer than the key's own length). */
export function suggestKey(unknown: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = Math.min(editDistance(unknown, k), editDistance(unknown.toLowerCase(), k.toLowerCase()));
    if (d < bestDistance && d < unknown.length) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Builds the ERR_CONFIG that reports every problem of `source` (a file name),
 * in file order, one per line in `file:line:col: key: message` form (the form
 * editors and terminals link to).
 */
export function configError(source: string, problems: readonly ConfigProblem[], cause?: unknown): EdgeError {
  const sorted = [...problems].sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.col ?? 0) - (b.col ?? 0));
  const lines = sorted.slice(0, MAX_LISTED).map((p) => `${where(source, p)} ${p.key === '' ? '' : `${p.key}: `}${p.message}`);
  if (sorted.length > MAX_LISTED) lines.push(`... and ${sorted.length - MAX_LISTED} more`);
  const message = sorted.length === 1 ? lines[0]! : `${source}: ${sorted.length} problems:\n  ${lines.join('\n  ')}`;
  return new EdgeError('ERR_CONFIG', message, {
    ...(cause === undefined ? {} : { cause }),
    details: { file: source, problems: sorted },
  });
}

function where(source: string, p: ConfigProblem): string {
  if (p.line === undefined) return `${source}:`;
  return `${source}:${p.line}:${p.col ?? 1}:`;
}
