/**
 * Loading `router.yml`: read the file, parse YAML 1.2 keeping positions,
 * then hand the data to validate.ts with a `locate` function so that every
 * problem names its line. File and syntax problems are ERR_CONFIG too, in the
 * same `file:line:col: message` form.
 *
 * This is the only place that reads the config file; subsystems receive typed,
 * frozen slices of the result.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import { configError, type ConfigProblem, type KeyPath } from './problems.js';
import type { RouterConfig } from './schema.js';
import { validateRouterConfig, type SourcePosition } from './validate.js';

/** Config files are a few kilobytes; anything this large is the wrong file. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Loads, validates and freezes a router config file. Defaults are applied and
 * `identity`, `dataDir`, `server.cert` and `server.key` are made absolute
 * against the folder of the config file. The files they name are not opened
 * here; their users report on them.
 *
 * @throws EdgeError `ERR_CONFIG` naming the file, and for each problem its
 *   line, key path, what was expected and what was found; all problems at once.
 * @example
 * ```ts
 * const cfg = await loadRouterConfig('/etc/ztedge/router.yml');
 * startLinks(cfg.links, cfg.link);   // typed, frozen slices
 * ```
 */
export async function loadRouterConfig(path: string): Promise<Readonly<RouterConfig>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw fileError(path, `cannot read the config file: ${readFailure(err)}`, err);
  }
  if (bytes.length > MAX_CONFIG_BYTES) {
    throw fileError(path, `the file is ${bytes.length} bytes; a router config is at most ${MAX_CONFIG_BYTES} bytes`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw fileError(path, 'the file is not UTF-8 text', err);
  }
  return parseRouterConfig(text, path);
}

/**
 * Parses and validates config text as if read from `source` (relative paths
 * resolve against the folder of `source`). For callers that hold the text
 * already, such as a config pushed over the REST API or written by quickstart.
 *
 * @throws EdgeError `ERR_CONFIG`, as {@link loadRouterConfig}.
 */
export function parseRouterConfig(text: string, source: string): Readonly<RouterConfig> {
  const lineCounter = new LineCounter();
  // YAML 1.2 core schema: `on`/`yes` stay strings and 1:30 is not a number.
  // Tags such as !!binary are left unresolved, which makes them errors below.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, resolveKnownTags: false, version: '1.2' });
  const at = (offset: number | undefined): SourcePosition | undefined => (offset === undefined ? undefined : lineCounter.linePos(offset));

  const syntax: ConfigProblem[] = [...doc.errors, ...doc.warnings].map((e) => ({
    path: [],
    key: '',
    message: `YAML: ${e.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '')}`,
    ...at(e.pos[0]),
  }));
  if (syntax.length > 0) throw configError(source, syntax);
  if (doc.contents === null) {
    throw fileError(source, 'the file is empty; expected settings such as "identity: ./router.json" (see packaging/router.example.yml)');
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Only alias bombs get here ("Excessive alias count").
    throw fileError(source, `YAML: ${(err as Error).message}`, err);
  }
  return validateRouterConfig(data, {
    source,
    baseDir: dirname(resolve(source)),
    locate: (path) => locate(doc, path, at),
  });
}

/**
 * Position of the key at `path` (a map key, or a sequence item), or of the
 * deepest part of the path that exists in the document; undefined when not
 * even the first key exists.
 */
function locate(doc: Document, path: KeyPath, at: (offset: number | undefined) => SourcePosition | undefined): SourcePosition | undefined {
  let node: unknown = doc.contents;
  let found: SourcePosition | undefined;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair === undefined) return found;
      found = at((pair.key as YamlNode).range?.[0]) ?? found;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (item === undefined) return found;
      found = at(item.range?.[0]) ?? found;
      node = item;
    } else {
      return found;
    }
  }
  return found;
}

function fileError(source: string, message: string, cause?: unknown): Error {
  return configError(source, [{ path: [], key: '', message }], cause);
}

function readFailure(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT': return 'no such file (ENOENT)';
    case 'EACCES': return 'permission denied (EACCES)';
    case 'EISDIR': return 'it is a folder, not a file (EISDIR)';
    default: return (err as Error).message;
  }
}
