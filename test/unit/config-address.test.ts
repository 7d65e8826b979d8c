/**
 * Address parsers of src/config (HOST:PORT, tls:HOST:PORT, IPv4 CIDR): what
 * they accept and the reason they give otherwise, and that the loose patterns
 * in the JSON Schema accept everything the exact parsers accept (so a value
 * never passes our check and fails an editor's or the REST API's).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RouterConfigSchema, formatIpv4, parseEndpoint, parseHostPort, parseIpv4Cidr } from '../../src/config/index.js';

test('parseHostPort accepts names, IPv4 and bracketed IPv6', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:18080'), { ok: true, value: { host: '127.0.0.1', port: 18080, family: 4 } });
  assert.deepEqual(parseHostPort('[::1]:53'), { ok: true, value: { host: '::1', port: 53, family: 6 } });
  assert.deepEqual(parseHostPort('[fe80::1%eth0]:53'), { ok: true, value: { host: 'fe80::1%eth0', port: 53, family: 6 } });
  assert.deepEqual(parseHostPort('hub.example.:65535'), { ok: true, value: { host: 'hub.example.', port: 65535, family: 0 } });
  assert.deepEqual(parseHostPort('my_service:80'), { ok: true, value: { host: 'my_service', port: 80, family: 0 } });
  assert.deepEqual(parseHostPort('0.0.0.0:0', { allowPortZero: true }), { ok: true, value: { host: '0.0.0.0', port: 0, family: 4 } });
});

test('parseHostPort gives a reason for each refusal', () => {
  const reason = (text: string, opts = {}): string => {
    const r = parseHostPort(text, opts);
    assert.equal(r.ok, false, text);
    return r.ok ? '' : r.reason;
  };
  assert.equal(reason('localhost'), 'the port is missing: write HOST:PORT');
  assert.equal(reason('::1:53'), 'an IPv6 address goes in brackets: [::1]:53');
  assert.equal(reason('a:b:53'), 'too many ":"; write HOST:PORT, with an IPv6 address in brackets');
  assert.equal(reason('[::1]53'), 'expected ":PORT" after the "]"');
  assert.equal(reason('[::1]'), 'the port is missing: write [IPV6]:PORT');
  assert.equal(reason('[1.2.3.4]:1'), '"1.2.3.4" in brackets is not an IPv6 address');
  assert.equal(reason('h:'), 'the port is missing');
  assert.equal(reason('h:-1'), 'port "-1" is not a number');
  assert.equal(reason('h:0'), 'port 0 is out of range 1–65535');
  assert.equal(reason('h:65536', { allowPortZero: true }), 'port 65536 is out of range 0–65535');
  assert.equal(reason('1.2.3:80'), '"1.2.3" is not a valid IPv4 address');
  assert.equal(reason('01.2.3.4:80'), '"01.2.3.4" is not a valid IPv4 address');
  assert.equal(reason('-bad.example:80'), '"-bad.example" is not a valid host name or IP address');
  assert.equal(reason(`${'a'.repeat(64)}.example:80`), `"${'a'.repeat(64)}.example" is not a valid host name or IP address`);
  assert.equal(reason('a..b:80'), '"a..b" is not a valid host name or IP address');
  assert.equal(reason('dns.example:53', { requireIp: true }), '"dns.example" is a name; an IP address is needed here');
  assert.equal(reason('[::]:53', { allowUnspecified: false }), '[::] means "every address" and can only be listened on; give an address to connect to');
  assert.equal(reason('[0:0::0]:53', { allowUnspecified: false }), '[::] means "every address" and can only be listened on; give an address to connect to');
});

test('parseEndpoint wants the tls: transport', () => {
  assert.deepEqual(parseEndpoint('tls:hub.example:3022'), { ok: true, value: { transport: 'tls', host: 'hub.example', port: 3022, family: 0 } });
  assert.deepEqual(parseEndpoint('tls:[2001:db8::1]:443'), { ok: true, value: { transport: 'tls', host: '2001:db8::1', port: 443, family: 6 } });
  const reason = (text: string): string => {
    const r = parseEndpoint(text);
    return r.ok ? '' : r.reason;
  };
  assert.equal(reason('localhost:3022'), 'the transport is missing: write tls:localhost:3022');
  assert.equal(reason('hub:99999'), 'the transport is missing (write tls:HOST:PORT), and port 99999 is out of range 1–65535');
  assert.equal(reason('quic:hub:3022'), 'transport "quic" is not supported; links use tls:');
  assert.equal(reason('tls://hub:3022'), 'write tls:HOST:PORT without "//", for example tls:hub:3022');
  assert.equal(reason('tls:hub'), 'the port is missing: write HOST:PORT');
});

test('parseIpv4Cidr checks the address, the prefix and the host bits', () => {
  assert.deepEqual(parseIpv4Cidr('100.64.0.0/10'), { ok: true, value: { network: 0x64400000, prefixLength: 10, size: 4194304 } });
  assert.deepEqual(parseIpv4Cidr('0.0.0.0/0'), { ok: true, value: { network: 0, prefixLength: 0, size: 2 ** 32 } });
  assert.deepEqual(parseIpv4Cidr('255.255.255.255/32'), { ok: true, value: { network: 0xffffffff, prefixLength: 32, size: 1 } });
  const reason = (text: string): string => {
    const r = parseIpv4Cidr(text);
    return r.ok ? '' : r.reason;
  };
  assert.equal(reason('10.0.0.1/8'), 'host bits are set; the network is 10.0.0.0/8');
  assert.equal(reason('10.0.0.0/'), 'prefix length "" is not a number from 0 to 32');
  assert.equal(reason('10.0.0.0/-1'), 'prefix length "-1" is not a number from 0 to 32');
  assert.equal(formatIpv4(0xc0000235), '192.0.2.53');
});

test('the schema patterns accept everything the exact parsers accept', () => {
  const s = RouterConfigSchema.properties;
  const hostPort = new RegExp(s.tunnel.properties.proxy.items.properties.listen.pattern!);
  const endpoint = new RegExp(s.links.items.pattern!);
  const cidr = new RegExp(s.tunnel.properties.tun.properties.dnsRange.pattern!);
  const piece = fc.constantFrom('tls:', '[', ']', ':', '::', '.', '0', '1', '53', '65535', '255', '256', '/', '32', 'a', 'Z', '-', '_', 'fe80', '%', 'eth0', ' ', '\n', 'x.y');
  const text = fc.oneof(fc.array(piece, { maxLength: 10 }).map((p) => p.join('')), fc.string({ maxLength: 30 }));
  fc.assert(fc.property(text, fc.boolean(), (t, zero) => {
    if (parseHostPort(t, { allowPortZero: zero }).ok) assert.match(t, hostPort);
    if (parseEndpoint(t, { allowPortZero: zero }).ok) assert.match(t, endpoint);
    if (parseIpv4Cidr(t).ok) assert.match(t, cidr);
  }), { numRuns: 3000 });
  // And the generator does reach valid values of each kind.
  assert.match('tls:[fe80::1%eth0]:0', endpoint);
  assert.equal(parseEndpoint('tls:[fe80::1%eth0]:0', { allowPortZero: true }).ok, true);
});
