/**
 * Cross-field and exact-value checks of the router config: the rules a JSON
 * Schema cannot say well (address syntax down to the port range, CIDR host
 * bits, "proxy mode needs a proxy entry", unique listen addresses, timer
 * relations). Runs after defaults are applied, on a value that may still have
 * schema errors, so every access is guarded by a type check: a wrong type is
 * the schema's to report, not ours.
 */
import { parseEndpoint, parseHostPort, parseIpv4Cidr, type HostPort, type HostPortOptions, type ParseResult } from './address.js';
import { describeValue, formatKeyPath, type KeyPath } from './problems.js';

/** Records one problem at `path`; `message` is the text after the key. */
export type AddProblem = (path: KeyPath, message: string) => void;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isWholeNumber = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function get(root: unknown, ...path: string[]): unknown {
  let node = root;
  for (const key of path) {
    if (!isRecord(node) || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

/** Every check; `add` is called once per problem found. */
export function crossFieldChecks(cfg: unknown, add: AddProblem): void {
  checkEndpoints(cfg, 'listeners', { allowPortZero: true }, add);
  checkEndpoints(cfg, 'links', { allowUnspecified: false }, add);
  checkTunnel(cfg, add);
  checkLink(cfg, add);
}

function checkEndpoints(cfg: unknown, key: 'listeners' | 'links', opts: HostPortOptions, add: AddProblem): void {
  const list = get(cfg, key);
  if (!Array.isArray(list)) return;
  const parsed = list.map((item, i) => {
    if (typeof item !== 'string') return undefined;
    return checked([key, i], item, 'tls:HOST:PORT', parseEndpoint(item, opts), add);
  });
  if (key === 'listeners') checkBindClashes([key], parsed, add, 'listener');
}

/** Reports a failed parse as `expected WHAT, found "x": reason`; returns the value on success. */
function checked<T>(path: KeyPath, text: string, what: string, result: ParseResult<T>, add: AddProblem): T | undefined {
  if (result.ok) return result.value;
  add(path, `expected ${what}, found ${describeValue(text)}: ${result.reason}`);
  return undefined;
}

function checkTunnel(cfg: unknown, add: AddProblem): void {
  const mode = get(cfg, 'tunnel', 'mode');
  const proxy = get(cfg, 'tunnel', 'proxy');
  if (Array.isArray(proxy)) {
    const listens = proxy.map((entry, i) => {
      const listen = isRecord(entry) ? entry.listen : undefined;
      if (typeof listen !== 'string') return undefined;
      return checked(['tunnel', 'proxy', i, 'listen'], listen, 'HOST:PORT', parseHostPort(listen), add);
    });
    // TCP and UDP ports are separate: 53/tcp and 53/udp may share an address.
    const protocolOf = (entry: unknown): string => (isRecord(entry) && entry.protocol === 'udp' ? 'udp' : 'tcp');
    for (const protocol of ['tcp', 'udp']) {
      checkBindClashes(['tunnel', 'proxy'], listens.map((l, i) => (protocolOf(proxy[i]) === protocol ? l : undefined)), add, `${protocol} proxy port`, 'listen');
    }
    if (mode === 'proxy' && proxy.length === 0) {
      add(['tunnel', 'proxy'], 'tunnel.mode is "proxy", so at least one entry is needed, '
        + 'for example "- { service: demo, listen: 127.0.0.1:18080 }"; found none');
    }
  }

  const tun = get(cfg, 'tunnel', 'tun');
  const dnsRange = get(tun, 'dnsRange');
  if (typeof dnsRange === 'string') checked(['tunnel', 'tun', 'dnsRange'], dnsRange, 'an IPv4 network A.B.C.D/LEN', parseIpv4Cidr(dnsRange), add);
  const dnsListen = get(tun, 'dnsListen');
  if (Array.isArray(dnsListen)) {
    const parsed = dnsListen.map((item, i) => typeof item === 'string'
      ? checked(['tunnel', 'tun', 'dnsListen', i], item, 'HOST:PORT', parseHostPort(item), add)
      : undefined);
    checkBindClashes(['tunnel', 'tun', 'dnsListen'], parsed, add, 'DNS listener');
  }
  const upstream = get(tun, 'upstream');
  if (Array.isArray(upstream)) {
    upstream.forEach((item, i) => {
      if (typeof item === 'string') {
        checked(['tunnel', 'tun', 'upstream', i], item, 'IP:PORT', parseHostPort(item, { requireIp: true, allowUnspecified: false }), add);
      }
    });
  }
}

/**
 * Two sockets cannot listen on the same address and port, and a wildcard
 * (0.0.0.0 or [::], which is dual-stack on Linux by default) takes the port on
 * every address. Port 0 never clashes: each gets its own free port.
 */
function checkBindClashes(listPath: KeyPath, items: readonly (HostPort | undefined)[], add: AddProblem, what: string, field?: string): void {
  const seen: { i: number; hp: HostPort }[] = [];
  items.forEach((hp, i) => {
    if (hp === undefined || hp.port === 0) return;
    const here: KeyPath = field === undefined ? [...listPath, i] : [...listPath, i, field];
    for (const prev of seen) {
      if (prev.hp.port !== hp.port) continue;
      const same = normHost(prev.hp) === normHost(hp);
      if (!same && !isWildcard(prev.hp) && !isWildcard(hp)) continue;
      const other = formatKeyPath(field === undefined ? [...listPath, prev.i] : [...listPath, prev.i, field]);
      add(here, same
        ? `expected an address no other ${what} uses, found ${show(hp)}, which ${other} uses already`
        : `expected an address no other ${what} uses, found ${show(hp)}, which clashes with ${other}: `
          + `${show(isWildcard(prev.hp) ? prev.hp : hp)} takes port ${hp.port} on every address`);
      return;
    }
    seen.push({ i, hp });
  });
}

const normHost = (hp: HostPort): string => hp.host.toLowerCase().replace(/\.$/, '');
const isWildcard = (hp: HostPort): boolean => hp.host === '0.0.0.0' || (hp.family === 6 && /^[0:]+$/.test(hp.host));
const show = (hp: HostPort): string => (hp.family === 6 ? `"[${hp.host}]:${hp.port}"` : `"${hp.host}:${hp.port}"`);

function checkLink(cfg: unknown, add: AddProblem): void {
  const keepaliveMs = get(cfg, 'link', 'keepaliveMs');
  const deadAfterMs = get(cfg, 'link', 'deadAfterMs');
  if (isWholeNumber(keepaliveMs) && isWholeNumber(deadAfterMs) && deadAfterMs <= keepaliveMs) {
    add(['link', 'deadAfterMs'], `expected more than link.keepaliveMs (${keepaliveMs}), found ${describeValue(deadAfterMs)}: `
      + 'a live but idle peer would be declared dead before its next keepalive');
  }
  const initialMs = get(cfg, 'link', 'reconnect', 'initialMs');
  const maxMs = get(cfg, 'link', 'reconnect', 'maxMs');
  if (isWholeNumber(initialMs) && isWholeNumber(maxMs) && maxMs < initialMs) {
    add(['link', 'reconnect', 'maxMs'], `expected at least link.reconnect.initialMs (${initialMs}), found ${describeValue(maxMs)}`);
  }
}
