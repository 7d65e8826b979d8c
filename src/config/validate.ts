/**
 * Validation of a parsed router config: plain data in, frozen `RouterConfig`
 * out, or one ERR_CONFIG listing every problem.
 *
 *   parsed data ─► plain copy ─► defaults ─┬─► compiled TypeBox check ─┬─► problems? ── yes ─► throw ERR_CONFIG
 *                  (`key:` with             └─► cross-field checks ─────┘        │
 *                   no value = absent)                                             no ─► absolute paths ─► deep-freeze
 *
 * The TypeBox validator is compiled once, on first use, and reused.
 */
import { isAbsolute, resolve } from 'node:path';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import type { TObject, TSchema } from '@sinclair/typebox';
import { crossFieldChecks } from './checks.js';
import { describeSchema, describeValue, formatKeyPath, suggestKey, configError, type ConfigProblem, type KeyPath } from './problems.js';
import { RouterConfigSchema, type RouterConfig } from './schema.js';

/** Line and column (1-based) of a place in the source text. */
export interface SourcePosition {
  readonly line: number;
  readonly col: number;
}

export interface ValidateOptions {
  /** Name of the config in messages, usually the file path. Default "router config". */
  source?: string;
  /** Folder that relative paths (identity, dataDir, server.cert, server.key) are resolved against. Default: the working directory. */
  baseDir?: string;
  /**
   * Position of the key at `path` in the source (or of its closest existing
   * parent), for messages. The YAML loader supplies one.
   */
  locate?: (path: KeyPath) => SourcePosition | undefined;
}

let compiled: TypeCheck<typeof RouterConfigSchema> | undefined;

function checker(): TypeCheck<typeof RouterConfigSchema> {
  compiled ??= TypeCompiler.Compile(RouterConfigSchema);
  return compiled;
}

/**
 * Validates parsed config data (for example from YAML or a REST body),
 * applies defaults, resolves relative paths against `opts.baseDir` and returns
 * the deep-frozen result. `input` is not modified.
 *
 * @throws EdgeError `ERR_CONFIG` listing every problem; `details.problems` holds them as {@link ConfigProblem}s.
 * @example
 * ```ts
 * const cfg = validateRouterConfig({ identity: 'edge1.json' }, { baseDir: '/etc/ztedge' });
 * cfg.identity        // '/etc/ztedge/edge1.json'
 * cfg.link.keepaliveMs // 15000
 * ```
 */
export function validateRouterConfig(input: unknown, opts: ValidateOptions = {}): Readonly<RouterConfig> {
  const source = opts.source ?? 'router config';
  const problems: ConfigProblem[] = [];
  const problemAt = new Map<string, number>();
  const add = (path: KeyPath, message: string, replace = false): void => {
    const key = formatKeyPath(path);
    const known = problemAt.get(key);
    if (known !== undefined && !replace) return;
    const pos = opts.locate?.(path);
    const problem: ConfigProblem = { path, key, message, ...(pos === undefined ? {} : { line: pos.line, col: pos.col }) };
    if (known !== undefined) problems[known] = problem;
    else {
      problemAt.set(key, problems.length);
      problems.push(problem);
    }
  };

  const empty = new Set<string>();
  const data = plainCopy(input, [], empty, add);
  const value = applyDefaults(RouterConfigSchema, data);

  const patternAt = new Set<string>();
  for (const err of checker().Errors(value)) {
    const path = pointerToPath(err.path, value);
    if (err.type === ValueErrorType.StringPattern) patternAt.add(formatKeyPath(path));
    add(path, schemaMessage(err, path, empty));
  }
  // The exact parsers say precisely what is wrong where a pattern only says "no match".
  crossFieldChecks(value, (path, message) => add(path, message, patternAt.has(formatKeyPath(path))));

  if (problems.length > 0) throw configError(source, problems);
  const config = value as { -readonly [K in keyof RouterConfig]: RouterConfig[K] };
  const baseDir = opts.baseDir ?? process.cwd();
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.identity = abs(config.identity);
  config.dataDir = abs(config.dataDir);
  if (config.server !== undefined) config.server = { cert: abs(config.server.cert), key: abs(config.server.key) };
  return deepFreeze(config);
}

/**
 * Copies `value` as plain JSON-like data. A mapping key with an empty value
 * (`tunnel:` with every child commented out) counts as absent, so defaults
 * apply; its path is remembered for messages. `__proto__` stays an ordinary
 * (unknown) key rather than a prototype. A YAML alias that contains itself
 * (`links: &a [*a]`) would make a cycle: it is a problem, not a stack overflow.
 */
function plainCopy(
  value: unknown,
  path: (string | number)[],
  empty: Set<string>,
  add: (path: KeyPath, message: string) => void,
  inside: Set<object> = new Set(),
): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean' || typeof value === 'number') return value;
  if (typeof value !== 'object' || (!Array.isArray(value) && Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null)) {
    const kind = value instanceof Uint8Array ? 'binary data' : value instanceof Date ? 'a date' : `a ${typeof value}`;
    add(path, `expected plain text, numbers, lists or mappings, found ${kind}`);
    return null;
  }
  if (inside.has(value)) {
    add(path, 'expected a value, found a YAML alias that contains itself');
    return null;
  }
  inside.add(value);
  let out: unknown;
  if (Array.isArray(value)) {
    out = value.map((item, i) => plainCopy(item, [...path, i], empty, add, inside));
  } else {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === null || item === undefined) {
        empty.add(formatKeyPath([...path, key]));
        continue;
      }
      Object.defineProperty(copy, key, { value: plainCopy(item, [...path, key], empty, add, inside), enumerable: true, writable: true, configurable: true });
    }
    out = copy;
  }
  inside.delete(value);
  return out;
}

type SchemaShape = TSchema & { type?: unknown; default?: unknown; properties?: Record<string, TSchema>; items?: TSchema };

/**
 * Fills absent keys from the schema's `default`s, in place (on our own copy).
 * Not TypeBox's `Value.Default`: that one turns a list given where a mapping
 * belongs (`tunnel: []`) into the default mapping, hiding the mistake. Here a
 * value of the wrong type is left alone for the schema check to report.
 */
function applyDefaults(schema: TSchema, value: unknown): unknown {
  const s = schema as SchemaShape;
  const v = value === undefined && 'default' in s ? structuredClone(s.default) : value;
  if (s.type === 'object' && typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const record = v as Record<string, unknown>;
    for (const [key, child] of Object.entries(s.properties ?? {})) {
      const filled = applyDefaults(child, Object.hasOwn(record, key) ? record[key] : undefined);
      if (filled !== undefined) record[key] = filled;
    }
  } else if (s.type === 'array' && s.items !== undefined && Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = applyDefaults(s.items, v[i]);
  }
  return v;
}

/** `/tunnel/proxy/0/listen` → `['tunnel', 'proxy', 0, 'listen']`, numbers only where the data holds an array. */
function pointerToPath(pointer: string, root: unknown): KeyPath {
  if (pointer === '') return [];
  const path: (string | number)[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      path.push(Number(seg));
      node = node[Number(seg)];
    } else {
      path.push(seg);
      node = typeof node === 'object' && node !== null && Object.hasOwn(node, seg) ? (node as Record<string, unknown>)[seg] : undefined;
    }
  }
  return path;
}

/** Where each key name is known in the schema (`mode` → `tunnel.mode`), for keys put at the wrong level. */
let keyHomes: Map<string, string[]> | undefined;

function homesOf(name: string): readonly string[] {
  if (keyHomes === undefined) {
    const homes = new Map<string, string[]>();
    const walk = (schema: TSchema, prefix: string): void => {
      const s = schema as TSchema & { properties?: Record<string, TSchema>; items?: TSchema };
      if (s.items !== undefined) walk(s.items, `${prefix}[]`);
      for (const [key, child] of Object.entries(s.properties ?? {})) {
        const full = prefix === '' ? key : `${prefix}.${key}`;
        homes.set(key, [...(homes.get(key) ?? []), full]);
        walk(child, full);
      }
    };
    walk(RouterConfigSchema, '');
    keyHomes = homes;
  }
  return keyHomes.get(name) ?? [];
}

function schemaMessage(err: ValueError, path: KeyPath, empty: ReadonlySet<string>): string {
  const schema = err.schema as TSchema & { description?: string; anyOf?: { const?: unknown }[] };
  switch (err.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const name = String(path[path.length - 1]);
      const known = Object.keys((schema as TObject).properties);
      const near = suggestKey(name, known);
      if (near !== undefined) return `unknown key; did you mean "${near}"?`;
      const parent = formatKeyPath(path.slice(0, -1));
      const elsewhere = homesOf(name);
      if (elsewhere.length > 0) return `unknown key here; did you mean ${elsewhere.join(' or ')}?`;
      return `unknown key; ${path.length === 1 ? 'the top level' : parent} takes ${known.join(', ')}`;
    }
    case ValueErrorType.ObjectRequiredProperty: {
      const found = empty.has(formatKeyPath(path)) ? 'an empty value' : 'nothing';
      const what = schema.description === undefined ? '' : ` (${firstSentence(schema.description)})`;
      return `required key${what}; expected ${describeSchema(schema)}, found ${found}`;
    }
    default: {
      let message = `expected ${describeSchema(schema)}, found ${describeValue(err.value)}`;
      const type = (schema as { type?: unknown }).type;
      if ((type === 'integer' || type === 'number') && typeof err.value === 'string' && err.value.trim() !== '' && Number.isFinite(Number(err.value))) {
        message += '; write numbers without quotes';
      }
      if (Array.isArray(schema.anyOf) && typeof err.value === 'string') {
        const near = suggestKey(err.value, schema.anyOf.map((x) => String(x.const)));
        if (near !== undefined) message += `; did you mean "${near}"?`;
      }
      return message;
    }
  }
}

/** "Identity file written by …. Relative to …" → "identity file written by …". */
const firstSentence = (text: string): string => {
  const end = text.search(/\.(\s|$)/);
  const sentence = end < 0 ? text : text.slice(0, end);
  return /^[A-Z][a-z]/.test(sentence) ? sentence[0]!.toLowerCase() + sentence.slice(1) : sentence;
};

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
