/**
 * Policy snapshot revisions and deltas (pure).
 *
 * A snapshot's content is a few scalars (v, routerId) and collections: lists
 * of entities with an `id` (identities, services, servicePolicies, and any
 * collection added later). The revision is a hash of the canonical JSON of
 * the content (keys sorted, undefined left out, collections sorted by id),
 * so controller and router compute the same revision from the same data,
 * whatever the key order of the objects they hold.
 *
 * A delta says how to go from one revision to the next: per collection, the
 * entities added or changed (whole) and the ids removed. The router applies
 * it to the content it holds and recomputes the revision; a mismatch means
 * its copy differs from the controller's, and it asks for a full snapshot.
 */
import { createHash } from 'node:crypto';

export type Entity = { readonly id: string } & Record<string, unknown>;
export type Content = Record<string, unknown>;

export interface Delta {
  readonly baseRevision: string;
  readonly revision: string;
  readonly upsert: Record<string, Entity[]>;
  readonly remove: Record<string, string[]>;
}

/** JSON.stringify replacer that rebuilds each plain object with its keys sorted (arrays keep their order). */
function sortedKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) out[k] = (value as Record<string, unknown>)[k];
  return out;
}

/**
 * JSON with object keys sorted and undefined values left out: one text per
 * logical value. (JSON.stringify with a replacer: 2–4× faster than building
 * the text by hand, which matters for 10,000-identity snapshots.)
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, sortedKeys) ?? 'null';
}

function isEntityList(v: unknown): v is Entity[] {
  return Array.isArray(v) && v.every((e) => e !== null && typeof e === 'object' && typeof (e as { id?: unknown }).id === 'string');
}

const byId = (a: Entity, b: Entity): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Hashes of collections, by array: a controller pushing to many routers hashes each shared collection once. */
const collectionHashes = new WeakMap<readonly unknown[], string>();

function collectionHash(list: Entity[]): string {
  let h = collectionHashes.get(list);
  if (h === undefined) {
    h = createHash('sha256').update(canonicalJson([...list].sort(byId))).digest('base64url');
    collectionHashes.set(list, h);
  }
  return h;
}

/**
 * The revision of `content`, 22 base64url characters: SHA-256 over the
 * canonical JSON of the content in which each collection (sorted by id) is
 * replaced by its own SHA-256. Equal logical content, equal revision.
 */
export function contentRevision(content: Content): string {
  const folded: Content = {};
  for (const [k, v] of Object.entries(content)) folded[k] = isEntityList(v) ? `sha256:${collectionHash(v)}` : v;
  return createHash('sha256').update(canonicalJson(folded)).digest('base64url').slice(0, 22);
}

/** Per-collection diffs, by (previous array, next array): routers on the same base share one diff. */
const diffs = new WeakMap<readonly unknown[], WeakMap<readonly unknown[], { changed: Entity[]; gone: string[] }>>();

function diffCollection(a: Entity[], b: Entity[]): { changed: Entity[]; gone: string[] } {
  let byNext = diffs.get(a);
  const hit = byNext?.get(b);
  if (hit !== undefined) return hit;
  const before = new Map(a.map((e) => [e.id, canonicalJson(e)]));
  const changed = b.filter((e) => before.get(e.id) !== canonicalJson(e));
  const present = new Set(b.map((e) => e.id));
  const gone = a.filter((e) => !present.has(e.id)).map((e) => e.id);
  const result = { changed, gone };
  if (byNext === undefined) diffs.set(a, (byNext = new WeakMap()));
  byNext.set(b, result);
  return result;
}

/** What changed from `prev` to `next` (both contents), per collection. Scalars must be equal (a new routerId or version needs a full snapshot). */
export function diffContent(prev: Content, next: Content, baseRevision: string, revision: string): Delta | undefined {
  const upsert: Record<string, Entity[]> = {};
  const remove: Record<string, string[]> = {};
  for (const key of new Set([...Object.keys(prev), ...Object.keys(next)])) {
    const a = prev[key];
    const b = next[key];
    if (!isEntityList(a) || !isEntityList(b)) {
      if (canonicalJson(a) !== canonicalJson(b)) return undefined;
      continue;
    }
    if (a === b) continue;
    const { changed, gone } = diffCollection(a, b);
    if (changed.length > 0) upsert[key] = changed;
    if (gone.length > 0) remove[key] = gone;
  }
  return { baseRevision, revision, upsert, remove };
}

/**
 * Applies `delta` to `base` (a content) and returns the new content, or a
 * reason when it does not lead to `delta.revision` (the copies differ).
 */
export function applyDelta(base: Content, baseRevision: string, delta: Delta): { content: Content } | { reason: string } {
  if (delta.baseRevision !== baseRevision) return { reason: `delta is from revision ${delta.baseRevision}, this router has ${baseRevision}` };
  const next: Content = { ...base };
  for (const key of new Set([...Object.keys(delta.upsert), ...Object.keys(delta.remove)])) {
    const current = base[key] ?? [];
    if (!isEntityList(current)) return { reason: `delta changes ${key}, which is not a collection` };
    const items = new Map(current.map((e) => [e.id, e]));
    for (const id of delta.remove[key] ?? []) items.delete(id);
    for (const e of delta.upsert[key] ?? []) items.set(e.id, e);
    next[key] = [...items.values()].sort(byId);
  }
  const revision = contentRevision(next);
  if (revision !== delta.revision) return { reason: `applying the delta gives revision ${revision}, not ${delta.revision}` };
  return { content: next };
}

/** Shape check of a delta received from the wire (after its signature verified). */
export function parseDelta(raw: unknown): Delta | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const d = raw as Record<string, unknown>;
  if (typeof d.baseRevision !== 'string' || typeof d.revision !== 'string') return undefined;
  const upsert = d.upsert;
  const remove = d.remove;
  if (upsert === null || typeof upsert !== 'object' || remove === null || typeof remove !== 'object') return undefined;
  for (const v of Object.values(upsert)) if (!isEntityList(v)) return undefined;
  for (const v of Object.values(remove)) if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return undefined;
  return { baseRevision: d.baseRevision, revision: d.revision, upsert: upsert as Record<string, Entity[]>, remove: remove as Record<string, string[]> };
}
