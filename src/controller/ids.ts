/** Entity ids and one-time tokens. */
import { randomBytes, randomUUID } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A 10-character base62 id (~59 bits), the short form OpenZiti users are used to. */
export function newId(): string {
  const bytes = randomBytes(10);
  let out = '';
  for (const b of bytes) out += ALPHABET[b % 62];
  return out;
}

/** A one-time enrollment token or API session token (UUID v4, 122 random bits). */
export function newToken(): string {
  return randomUUID();
}
