/**
 * Control-frame bodies: MessagePack maps (msgpackr), decoded and checked into
 * typed messages. Pure: bad bodies return undefined (the caller closes the
 * link with CloseCode.MALFORMED_BODY), never throw.
 */
import { Packr } from 'msgpackr';

// Plain maps only: no records, no structured clone, no extension types from peers.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false });

export function encodeControl(message: object): Buffer {
  return packr.pack(message);
}

/** Decodes a MessagePack map; anything else (arrays, scalars, garbage) is undefined. */
export function decodeControl(body: Buffer): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = packr.unpack(body);
  } catch {
    return undefined;
  }
  // Only plain maps: msgpackr turns reserved bytes (0xc1) and extensions into class instances.
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  return value as Record<string, unknown>;
}

/** Field readers that reject wrong types (the caller treats undefined as malformed). */
export function str(m: Record<string, unknown>, key: string, maxLength = 1024): string | undefined {
  const v = m[key];
  return typeof v === 'string' && v.length <= maxLength ? v : undefined;
}

export function num(m: Record<string, unknown>, key: string): number | undefined {
  const v = m[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function bytes(m: Record<string, unknown>, key: string, maxLength = 65536): Buffer | undefined {
  const v = m[key];
  if (v instanceof Uint8Array && v.length <= maxLength) return Buffer.from(v.buffer, v.byteOffset, v.length);
  return undefined;
}

export function strList(m: Record<string, unknown>, key: string, maxItems = 4096): string[] | undefined {
  const v = m[key];
  if (!Array.isArray(v) || v.length > maxItems || !v.every((x) => typeof x === 'string')) return undefined;
  return v as string[];
}
