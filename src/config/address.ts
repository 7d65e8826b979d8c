/**
 * Address strings of the router config, parsed exactly: `HOST:PORT`,
 * `tls:HOST:PORT` and IPv4 CIDR. The config validator uses these for its
 * messages, and subsystems use them to turn a validated string into parts,
 * so there is one parser for every address the config can hold.
 *
 * Parsers return `{ ok: false, reason }` instead of throwing: the validator
 * collects every problem before it reports.
 *
 *   HOST:PORT      host = name | IPv4 | "[" IPv6 "]"      port = 0..65535 (see options)
 *   tls:HOST:PORT  the link transport prefix, then HOST:PORT
 *   A.B.C.D/LEN    LEN = 0..32, host bits zero (RFC 4632 §3.1)
 */
import { isIPv4, isIPv6 } from 'node:net';

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/** A parsed `HOST:PORT`. `host` has no brackets; `family` is 0 for a name. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
  readonly family: 0 | 4 | 6;
}

/** A parsed `tls:HOST:PORT` link endpoint. */
export interface Endpoint extends HostPort {
  readonly transport: 'tls';
}

/** A parsed IPv4 network. `network` is the address as an unsigned 32-bit number. */
export interface Ipv4Cidr {
  readonly network: number;
  readonly prefixLength: number;
  /** Number of addresses in the network (2^(32 - prefixLength)). */
  readonly size: number;
}

export interface HostPortOptions {
  /** Accept port 0 ("pick a free port"); only meaningful when listening. Default false. */
  allowPortZero?: boolean;
  /** Reject host names: the host must be an IP address (a resolver's address, for example). Default false. */
  requireIp?: boolean;
  /** Accept 0.0.0.0 and [::] (every address); only meaningful when listening. Default true. */
  allowUnspecified?: boolean;
}

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value });
const fail = <T>(reason: string): ParseResult<T> => ({ ok: false, reason });

/** RFC 1123 §2.1 labels; underscores are accepted too, as container and service names use them. */
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

function isHostName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  // An all-numeric dotted name is a broken IPv4 address, not a name (RFC 1123 §2.1).
  if (/^[0-9.]+$/.test(name)) return false;
  return name.split('.').every((label) => LABEL.test(label));
}

/**
 * Parses `HOST:PORT` (IPv6 in brackets).
 *
 * @example
 * ```ts
 * parseHostPort('[::1]:53')          // { ok: true, value: { host: '::1', port: 53, family: 6 } }
 * parseHostPort('127.0.0.1:70000')   // { ok: false, reason: 'port 70000 is out of range 1–65535' }
 * ```
 */
export function parseHostPort(text: string, opts: HostPortOptions = {}): ParseResult<HostPort> {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail('the "[" before the IPv6 address has no closing "]"');
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest === '') return fail('the port is missing: write [IPV6]:PORT');
    if (!rest.startsWith(':')) return fail('expected ":PORT" after the "]"');
    portText = rest.slice(1);
    if (!isIPv6(host)) return fail(`"${host}" in brackets is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return fail('the port is missing: write HOST:PORT');
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) {
      return isIPv6(host)
        ? fail(`an IPv6 address goes in brackets: [${host}]:${portText}`)
        : fail('too many ":"; write HOST:PORT, with an IPv6 address in brackets');
    }
    if (host === '') return fail('the host is missing (use 0.0.0.0 to listen on every IPv4 address)');
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return fail(portText === '' ? 'the port is missing' : `port "${portText}" is not a number`);
  const port = Number(portText);
  const minPort = opts.allowPortZero === true ? 0 : 1;
  if (port < minPort || port > 65535) return fail(`port ${port} is out of range ${minPort}–65535`);

  let family: 0 | 4 | 6;
  if (text.startsWith('[')) family = 6;
  else if (isIPv4(host)) family = 4;
  else if (/^[0-9.]+$/.test(host)) return fail(`"${host}" is not a valid IPv4 address`);
  else if (isHostName(host)) family = 0;
  else return fail(`"${host}" is not a valid host name or IP address`);

  if (opts.requireIp === true && family === 0) return fail(`"${host}" is a name; an IP address is needed here`);
  if (opts.allowUnspecified === false && isUnspecified(host, family)) {
    return fail(`${family === 6 ? '[::]' : host} means "every address" and can only be listened on; give an address to connect to`);
  }
  return ok({ host, port, family });
}

function isUnspecified(host: string, family: 0 | 4 | 6): boolean {
  if (family === 4) return host === '0.0.0.0';
  if (family === 6) return /^[0:]+$/.test(host);
  return false;
}

/**
 * Parses a link endpoint `tls:HOST:PORT`.
 *
 * @example
 * ```ts
 * parseEndpoint('tls:hub.example:3022') // { ok: true, value: { transport: 'tls', host: 'hub.example', port: 3022, family: 0 } }
 * ```
 */
export function parseEndpoint(text: string, opts: HostPortOptions = {}): ParseResult<Endpoint> {
  if (text.startsWith('tls://')) return fail(`write tls:HOST:PORT without "//", for example tls:${text.slice(6)}`);
  if (!text.startsWith('tls:')) {
    const scheme = /^([A-Za-z][A-Za-z0-9+-]*):(?!\d+$)/.exec(text);
    if (scheme !== null) return fail(`transport "${scheme[1]!}" is not supported; links use tls:`);
    const hp = parseHostPort(text, opts);
    return fail(hp.ok ? `the transport is missing: write tls:${text}` : `the transport is missing (write tls:HOST:PORT), and ${hp.reason}`);
  }
  const hp = parseHostPort(text.slice(4), opts);
  return hp.ok ? ok({ transport: 'tls', ...hp.value }) : hp;
}

/**
 * Parses an IPv4 network in CIDR notation; host bits must be zero.
 *
 * @example
 * ```ts
 * parseIpv4Cidr('100.64.0.0/10') // { ok: true, value: { network: 0x64400000, prefixLength: 10, size: 4194304 } }
 * parseIpv4Cidr('100.64.0.1/10') // { ok: false, reason: 'host bits are set; the network is 100.64.0.0/10' }
 * ```
 */
export function parseIpv4Cidr(text: string): ParseResult<Ipv4Cidr> {
  const slash = text.indexOf('/');
  if (slash < 0) return fail(isIPv4(text) ? `the prefix length is missing: write ${text}/LEN` : 'expected A.B.C.D/LEN');
  const addr = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (isIPv6(addr)) return fail('an IPv6 network is not supported here; give an IPv4 network');
  if (!isIPv4(addr)) return fail(`"${addr}" is not a valid IPv4 address`);
  if (!/^[0-9]{1,2}$/.test(lenText) || Number(lenText) > 32) return fail(`prefix length "${lenText}" is not a number from 0 to 32`);
  const prefixLength = Number(lenText);
  const value = addr.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const size = 2 ** (32 - prefixLength);
  const network = value - (value % size);
  if (network !== value) return fail(`host bits are set; the network is ${formatIpv4(network)}/${prefixLength}`);
  return ok({ network, prefixLength, size });
}

/** Dotted-quad text of an unsigned 32-bit IPv4 address. */
export function formatIpv4(value: number): string {
  return `${Math.floor(value / 0x1000000) % 256}.${Math.floor(value / 0x10000) % 256}.${Math.floor(value / 0x100) % 256}.${value % 256}`;
}
