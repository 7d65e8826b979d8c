/**
 * PKCS#11 key references, pure parsing. Two spellings are read:
 *
 *   RFC 7512:  pkcs11:token=ztedge;object=device-key;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/ztedge/pin
 *   OpenZiti:  pkcs11:///usr/lib/softhsm/libsofthsm2.so?slot=0&pin=1234&id=0102&label=device-key
 *              (the C SDK's form: module path as the URL path; id in hex; slot a number)
 *
 * Attributes we do not use (manufacturer, model, serial, type, library-*)
 * are accepted and ignored, as RFC 7512 §2.3 asks of unknown attributes'
 * neighbours; duplicate attributes are an error (§2.3).
 */
import { EdgeError } from '../errors.js';

export interface Pkcs11Ref {
  modulePath: string;
  /** CKA_LABEL of the token (RFC 7512 `token`). */
  tokenLabel?: string;
  /** Slot id (RFC 7512 `slot-id`, OpenZiti `slot`). */
  slotId?: number;
  /** CKA_LABEL of the key objects (RFC 7512 `object`, OpenZiti `label`). */
  objectLabel?: string;
  /** CKA_ID of the key objects (RFC 7512 `id`, percent-encoded; OpenZiti `id`, hex). */
  objectId?: Buffer;
  /** Where the PIN comes from: `file:/path` or a path (RFC 7512 `pin-source`). */
  pinSource?: string;
  /** The PIN itself, only if the user insisted on putting it in the URI. */
  pinValue?: string;
}

function bad(uri: string, why: string): EdgeError {
  return new EdgeError('ERR_KEY', `invalid PKCS#11 URI (${why}): ${maskPins(uri)}`);
}

/**
 * The URI with every PIN value replaced by `***`, so it can be quoted in an
 * error. Attributes are cut where the parsers cut them (`;` in the path,
 * `&` only in the query: a PIN may contain `;`) and names are compared
 * percent-decoded (URLSearchParams decodes them in the OpenZiti form).
 */
function maskPins(uri: string): string {
  const maskPart = (part: string): string => {
    const eq = part.indexOf('=');
    if (eq === -1) return part;
    let name = part.slice(0, eq);
    try {
      name = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch { /* keep it raw */ }
    return /^\s*pin(-value)?\s*$/i.test(name) ? `${part.slice(0, eq)}=***` : part;
  };
  const q = uri.indexOf('?');
  const path = (q === -1 ? uri : uri.slice(0, q)).split(';').map(maskPart).join(';');
  return q === -1 ? path : `${path}?${uri.slice(q + 1).split('&').map(maskPart).join('&')}`;
}

/** `secret`: the value is a PIN, so the error must not quote any of it. */
function pctDecode(s: string, uri: string, secret = false): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw bad(uri, secret ? 'bad percent-encoding in the PIN' : `bad percent-encoding near "${s.slice(i, i + 3)}"`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(c, 'utf8')) out.push(b);
    }
  }
  return Buffer.from(out);
}

/** Parses either spelling; throws ERR_KEY with the reason (PINs masked). */
export function parsePkcs11Uri(uri: string): Pkcs11Ref {
  if (uri.startsWith('pkcs11://')) return parseOpenZitiForm(uri);
  if (!uri.startsWith('pkcs11:')) throw bad(uri, 'it must start with pkcs11:');
  const body = uri.slice('pkcs11:'.length);
  const q = body.indexOf('?');
  const path = q === -1 ? body : body.slice(0, q);
  const query = q === -1 ? '' : body.slice(q + 1);
  const ref: Partial<Pkcs11Ref> = {};
  const seen = new Set<string>();
  const take = (name: string): void => {
    if (seen.has(name)) throw bad(uri, `attribute "${name}" appears twice`);
    seen.add(name);
  };
  for (const part of path === '' ? [] : path.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw bad(uri, `"${part}" is not name=value`);
    const name = part.slice(0, eq);
    const value = pctDecode(part.slice(eq + 1), uri);
    take(name);
    switch (name) {
      case 'token': ref.tokenLabel = value.toString('utf8'); break;
      case 'object': ref.objectLabel = value.toString('utf8'); break;
      case 'id': ref.objectId = value; break;
      case 'slot-id': {
        // RFC 7512 §2.3: slot-id = 1*DIGIT. Number() would read "" as slot 0.
        const text = value.toString('utf8');
        const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
        if (!Number.isSafeInteger(n)) throw bad(uri, 'slot-id must be a non-negative decimal integer');
        ref.slotId = n;
        break;
      }
      case 'type': {
        const t = value.toString('utf8');
        if (t !== 'private' && t !== 'public' && t !== 'cert') throw bad(uri, `type "${t}" is not private, public or cert`);
        break;
      }
      default: break; // manufacturer, model, serial, library-*: not needed to find the key
    }
  }
  for (const part of query === '' ? [] : query.split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw bad(uri, `"${part}" is not name=value`);
    const name = part.slice(0, eq);
    const value = pctDecode(part.slice(eq + 1), uri, name === 'pin-value').toString('utf8');
    take(name);
    switch (name) {
      case 'module-path': ref.modulePath = value; break;
      case 'pin-source': ref.pinSource = value; break;
      case 'pin-value': ref.pinValue = value; break;
      case 'module-name': if (ref.modulePath === undefined) ref.modulePath = value; break;
      default: break;
    }
  }
  if (ref.modulePath === undefined || ref.modulePath === '') throw bad(uri, 'module-path is required (for example ?module-path=/usr/lib/softhsm/libsofthsm2.so)');
  if (ref.tokenLabel === undefined && ref.slotId === undefined) throw bad(uri, 'name the token (token=LABEL) or the slot (slot-id=N)');
  if (ref.objectLabel === undefined && ref.objectId === undefined) throw bad(uri, 'name the key (object=LABEL or id=…)');
  return ref as Pkcs11Ref;
}

function parseOpenZitiForm(uri: string): Pkcs11Ref {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw bad(uri, 'not a URL');
  }
  let modulePath: string;
  try {
    modulePath = decodeURIComponent(u.pathname).replace(/^\/([A-Za-z]:\/)/, '$1');
  } catch {
    throw bad(uri, 'bad percent-encoding in the module path');
  }
  if (modulePath === '' || modulePath === '/') throw bad(uri, 'the module path is missing (pkcs11:///path/to/module.so?…)');
  const ref: Pkcs11Ref = { modulePath };
  const slot = u.searchParams.get('slot');
  if (slot !== null) {
    // The C SDK accepts decimal or 0x-prefixed hex slot numbers.
    // Number() would read "" as slot 0 and accept " 5" or "1e3".
    const n = /^0x[0-9a-f]+$/i.test(slot) ? parseInt(slot, 16) : /^[0-9]+$/.test(slot) ? Number(slot) : NaN;
    if (!Number.isSafeInteger(n)) throw bad(uri, `slot "${slot}" is not a number`);
    ref.slotId = n;
  }
  const id = u.searchParams.get('id');
  if (id !== null) {
    if (!/^([0-9a-fA-F]{2})+$/.test(id)) throw bad(uri, 'id must be hex');
    ref.objectId = Buffer.from(id, 'hex');
  }
  const label = u.searchParams.get('label');
  if (label !== null) ref.objectLabel = label;
  const pin = u.searchParams.get('pin');
  if (pin !== null) ref.pinValue = pin;
  const token = u.searchParams.get('token');
  if (token !== null) ref.tokenLabel = token;
  if (ref.tokenLabel === undefined && ref.slotId === undefined) throw bad(uri, 'name the slot (slot=N)');
  if (ref.objectLabel === undefined && ref.objectId === undefined) throw bad(uri, 'name the key (label=… or id=…)');
  return ref;
}

/** Writes a reference back as an RFC 7512 URI (the form ztedge writes into identity files). */
export function formatPkcs11Uri(ref: Pkcs11Ref): string {
  const enc = (s: string | Buffer): string => {
    const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    let out = '';
    for (const b of bytes) {
      const c = String.fromCharCode(b);
      out += typeof s === 'string' && /[A-Za-z0-9\-._~:/@!$'()*+,]/.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
    }
    return out;
  };
  const path: string[] = [];
  if (ref.tokenLabel !== undefined) path.push(`token=${enc(ref.tokenLabel)}`);
  if (ref.slotId !== undefined) path.push(`slot-id=${ref.slotId}`);
  if (ref.objectLabel !== undefined) path.push(`object=${enc(ref.objectLabel)}`);
  if (ref.objectId !== undefined) path.push(`id=${enc(ref.objectId)}`);
  const query = [`module-path=${enc(ref.modulePath)}`];
  if (ref.pinSource !== undefined) query.push(`pin-source=${enc(ref.pinSource)}`);
  if (ref.pinValue !== undefined) query.push(`pin-value=${enc(ref.pinValue)}`);
  return `pkcs11:${path.join(';')}?${query.join('&')}`;
}
