/**
 * The built-in config types and the checks of config data, at the edge of
 * the management API (`POST/PATCH /configs`), so routers only ever read
 * valid data.
 *
 *   intercept.v1  what a dialing router intercepts: protocols, addresses, port ranges
 *   host.v1       where a hosting router connects: a fixed target, or one the
 *                 dialer chooses (forward*) within allowed values
 *
 * Each schema is written once with TypeBox: it is served as JSON Schema by
 * `GET /config-types/ID` and compiled here to check data. What JSON Schema
 * cannot say well (address syntax, low ≤ high, the forward* pairs) is checked
 * by code below; the served schema states the pairs too (allOf/oneOf), so a
 * client validating with it never accepts data the controller refuses except
 * for address syntax, which the descriptions name.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { EdgeError } from '../errors.js';
import { isHostname, isIpAddress, isMatchAddress } from './addresses.js';

const Protocol = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);
const Protocols = Type.Array(Protocol, { minItems: 1, uniqueItems: true });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const PortRange = Type.Object({ low: Port, high: Port }, { additionalProperties: false, description: '1 ≤ low ≤ high ≤ 65535' });
const PortRanges = Type.Array(PortRange, { minItems: 1, maxItems: 256 });
const MatchAddress = Type.String({ minLength: 1, maxLength: 253, description: 'a hostname, *.wildcard hostname, IPv4 or IPv6 address, or CIDR' });
const MatchAddresses = Type.Array(MatchAddress, { minItems: 1, maxItems: 1024, uniqueItems: true });
const TargetAddress = Type.String({ minLength: 1, maxLength: 253, description: 'a hostname or an IPv4 or IPv6 address' });
const TimeoutSeconds = Type.Integer({ minimum: 1, maximum: 3600 });

export const InterceptV1 = Type.Object({
  protocols: Protocols,
  addresses: MatchAddresses,
  portRanges: PortRanges,
  dialOptions: Type.Optional(Type.Object({
    connectTimeoutSeconds: Type.Optional(TimeoutSeconds),
    identity: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'the hosting identity to dial (name)' })),
  }, { additionalProperties: false })),
  sourceIp: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'source address the hosting router presents to the target' })),
}, { additionalProperties: false, $id: 'intercept.v1', description: 'Intercept: traffic to these addresses and ports enters the service' });

/** For host.v1: exactly one of `fixed` or (`forward`: true with `allowed`). */
function pair(fixed: string, forward: string, allowed: string): TSchema {
  return {
    oneOf: [
      { required: [fixed], not: { anyOf: [{ required: [allowed] }, { required: [forward], properties: { [forward]: { const: true } } }] } },
      { required: [forward, allowed], properties: { [forward]: { const: true } }, not: { required: [fixed] } },
    ],
  } as unknown as TSchema;
}

export const HostV1 = Type.Object({
  protocol: Type.Optional(Protocol),
  forwardProtocol: Type.Optional(Type.Boolean()),
  allowedProtocols: Type.Optional(Protocols),
  address: Type.Optional(TargetAddress),
  forwardAddress: Type.Optional(Type.Boolean()),
  allowedAddresses: Type.Optional(MatchAddresses),
  port: Type.Optional(Port),
  forwardPort: Type.Optional(Type.Boolean()),
  allowedPortRanges: Type.Optional(PortRanges),
  listenOptions: Type.Optional(Type.Object({
    bindUsingEdgeIdentity: Type.Optional(Type.Boolean()),
    connectTimeoutSeconds: Type.Optional(TimeoutSeconds),
    cost: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    identity: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    maxConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    precedence: Type.Optional(Type.Union([Type.Literal('default'), Type.Literal('required'), Type.Literal('failed')])),
  }, { additionalProperties: false })),
}, {
  additionalProperties: false,
  $id: 'host.v1',
  description: 'Host: where a hosting router connects accepted circuits. Each of protocol, address and port is either fixed, or forwarded from the dialer (forwardX: true) within allowedX.',
  allOf: [pair('protocol', 'forwardProtocol', 'allowedProtocols'), pair('address', 'forwardAddress', 'allowedAddresses'), pair('port', 'forwardPort', 'allowedPortRanges')],
});

export type InterceptV1Data = Static<typeof InterceptV1>;
export type HostV1Data = Static<typeof HostV1>;

export interface ConfigType {
  /** Built-in types use their name as id. */
  id: string;
  name: string;
  schema: TSchema;
  target: 'service';
  check: TypeCheck<TSchema>;
  /** Semantic checks after the schema: returns the first problem as [field path, message]. */
  semantic: (data: never) => [string, string] | undefined;
}

/** Built-in types exist from the first start and cannot change. */
export const BUILT_IN_AT = '1970-01-01T00:00:00.000Z';

export const CONFIG_TYPES: ReadonlyMap<string, ConfigType> = new Map([
  ['intercept.v1', { id: 'intercept.v1', name: 'intercept.v1', schema: InterceptV1, target: 'service' as const, check: TypeCompiler.Compile(InterceptV1) as TypeCheck<TSchema>, semantic: checkIntercept as (d: never) => [string, string] | undefined }],
  ['host.v1', { id: 'host.v1', name: 'host.v1', schema: HostV1, target: 'service' as const, check: TypeCompiler.Compile(HostV1) as TypeCheck<TSchema>, semantic: checkHost as (d: never) => [string, string] | undefined }],
]);

/** TypeBox error path "/portRanges/0/low" under `root` → "data.portRanges[0].low" (under '': "portRanges[0].low"). */
function fieldOf(root: string, path: string): string {
  const field = root + path.split('/').slice(1).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p.replace(/~1/g, '/').replace(/~0/g, '~')}`)).join('');
  return field.startsWith('.') ? field.slice(1) : field;
}

/** TypeBox's message, said the way an operator reads it. */
function explain(schema: TSchema, message: string, value: unknown, what: string): string {
  const options = (schema.anyOf as TSchema[] | undefined)?.map((s) => s.const as unknown);
  if (options !== undefined && options.every((o) => typeof o === 'string')) {
    const choices = options.map((o) => `"${String(o)}"`).join(', ');
    return value === undefined ? `is required (one of ${choices})` : `must be one of ${choices}`;
  }
  if (message === 'Expected required property') return 'is required';
  if (message === 'Unexpected property') return `is not a field of ${what}`;
  return message.charAt(0).toLowerCase() + message.slice(1);
}

/**
 * The first problem TypeBox finds in `value`, as [field path under `root`,
 * message], or undefined. `what` names the shape for unexpected fields
 * ("is not a field of WHAT").
 */
export function firstSchemaProblem(check: TypeCheck<TSchema>, value: unknown, root: string, what: string): [string, string] | undefined {
  const first = check.Errors(value).First();
  return first === undefined ? undefined : [fieldOf(root, first.path), explain(first.schema, first.message, first.value, what)];
}

/**
 * Checks config data against its type; throws ERR_INVALID_ARGUMENT naming
 * the first bad field (for example `data.portRanges[0].high`).
 */
export function validateConfigData(type: ConfigType, data: unknown): void {
  const bad = firstSchemaProblem(type.check, data, 'data', 'this config type') ?? type.semantic(data as never);
  if (bad !== undefined) {
    throw new EdgeError('ERR_INVALID_ARGUMENT', `invalid ${type.name} config: ${bad[0]}: ${bad[1]}`, { details: { field: bad[0] } });
  }
}

function checkAddresses(list: readonly string[] | undefined, field: string): [string, string] | undefined {
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) {
    if (!isMatchAddress(list[i]!)) return [`data.${field}[${i}]`, `"${list[i]}" is not a hostname, *.wildcard, IP address or CIDR`];
  }
  return undefined;
}

function checkRanges(list: readonly { low: number; high: number }[] | undefined, field: string): [string, string] | undefined {
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) {
    const r = list[i]!;
    if (r.low > r.high) return [`data.${field}[${i}]`, `low (${r.low}) is greater than high (${r.high})`];
  }
  return undefined;
}

function checkIntercept(d: InterceptV1Data): [string, string] | undefined {
  return checkAddresses(d.addresses, 'addresses') ?? checkRanges(d.portRanges, 'portRanges');
}

/** One host.v1 pair: a fixed value, or forwarding with allowed values; never both, never neither. */
function checkPair(d: Record<string, unknown>, fixed: string, forward: string, allowed: string): [string, string] | undefined {
  const forwarding = d[forward] === true;
  if (forwarding && d[fixed] !== undefined) return [`data.${fixed}`, `set either ${fixed} or ${forward}, not both`];
  if (forwarding && d[allowed] === undefined) return [`data.${allowed}`, `is required when ${forward} is true`];
  if (!forwarding && d[allowed] !== undefined) return [`data.${allowed}`, `is only allowed when ${forward} is true`];
  if (!forwarding && d[fixed] === undefined) return [`data.${fixed}`, `is required (or set ${forward}: true with ${allowed})`];
  return undefined;
}

function checkHost(d: HostV1Data): [string, string] | undefined {
  const rec = d as Record<string, unknown>;
  return checkPair(rec, 'protocol', 'forwardProtocol', 'allowedProtocols')
    ?? checkPair(rec, 'address', 'forwardAddress', 'allowedAddresses')
    ?? checkPair(rec, 'port', 'forwardPort', 'allowedPortRanges')
    ?? (d.address !== undefined && !isIpAddress(d.address) && !isHostname(d.address) ? ['data.address', `"${d.address}" is not a hostname or IP address`] : undefined)
    ?? checkAddresses(d.allowedAddresses, 'allowedAddresses')
    ?? checkRanges(d.allowedPortRanges, 'allowedPortRanges');
}
