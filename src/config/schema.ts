/**
 * The router config schema: the one source of truth for what `router.yml`
 * may say. The TypeScript type (`RouterConfig`), the JSON Schema (for the REST
 * API, the CLI and editors) and the defaults all come from the TypeBox schema
 * below; nothing else in ztedge lists config keys.
 *
 * Pipeline: YAML text → load.ts (parse, locate) → validate.ts (this schema,
 * then the cross-field checks of checks.ts) → frozen `RouterConfig` → typed
 * slices (`config.tunnel`, `config.link`, …) handed to each subsystem.
 *
 * Defaults live here, in each key's `default`. A key wrapped in `withDefault`
 * is optional in the file and always present in `RouterConfig`; a key wrapped
 * in `Type.Optional` alone (only `server`) may be absent from both.
 *
 * Patterns here are deliberately loose shapes (for editors and JSON Schema
 * users); the exact rules (port ranges, IPv4 octets, prefix lengths) are in
 * address.ts and give the precise messages. Anything the exact parser accepts
 * also matches its pattern (a unit test checks this).
 */
import { Type, type Static, type TArray, type TObject, type TOptional, type TProperties, type TSchema } from '@sinclair/typebox';

// ---------------------------------------------------------------------------
// Shapes of address strings.

/** `HOST:PORT`: a name, an IPv4 address or an IPv6 address in brackets. */
export const HOST_PORT_PATTERN = '^(?:\\[[^\\]\\s]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$';
/** `tls:HOST:PORT`: a link endpoint; TLS is the only transport. */
export const ENDPOINT_PATTERN = '^tls:(?:\\[[^\\]\\s]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$';
/** `A.B.C.D/LEN`: an IPv4 network in CIDR notation. */
export const IPV4_CIDR_PATTERN = '^[0-9]{1,3}(?:\\.[0-9]{1,3}){3}/[0-9]{1,2}$';
/**
 * A Linux interface name: 1–15 bytes (IFNAMSIZ is 16 with the NUL). We are
 * stricter than the kernel: the name is passed to `ip(8)` as an argument, so
 * it may not start with '-' (it would read as an option) or '.'.
 */
export const TUN_NAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$';
/** `ip netns` names: a file name under /run/netns. */
export const NETNS_NAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$';

/** What each pattern means, in words, for error messages. */
export const PATTERN_MEANING: ReadonlyMap<string, string> = new Map([
  [HOST_PORT_PATTERN, 'HOST:PORT (IPv6 in brackets), for example 127.0.0.1:18080 or [::1]:53'],
  [ENDPOINT_PATTERN, 'tls:HOST:PORT (IPv6 in brackets), for example tls:hub.example:3022'],
  [IPV4_CIDR_PATTERN, 'an IPv4 network A.B.C.D/LEN, for example 100.64.0.0/10'],
  [TUN_NAME_PATTERN, 'an interface name of 1–15 letters, digits, "_", "." or "-", not starting with "." or "-"'],
  [NETNS_NAME_PATTERN, 'a network namespace name of 1–64 letters, digits, "_", "." or "-", not starting with "." or "-"'],
]);

/** setTimeout's ceiling (2^31 - 1 ms, about 24.8 days); longer delays fire at once in Node. */
export const MAX_TIMER_MS = 2_147_483_647;

// ---------------------------------------------------------------------------
// Defaults: optional in the file, present in the resolved config.

declare const DefaultedBrand: unique symbol;
/** Type-level mark of a key that the loader fills from its schema `default` (no runtime field). */
export type TDefaulted<T extends TSchema> = TOptional<T> & { readonly [DefaultedBrand]: true };

/** Makes `schema` optional in the file with `value` as its default; `RouterConfig` then always has it. */
function withDefault<T extends TSchema>(schema: T, value: Static<T>): TDefaulted<T> {
  const optional = Type.Optional(schema) as TOptional<T> & { default?: unknown };
  optional.default = value;
  return optional as TDefaulted<T>;
}

type Flatten<T> = { [K in keyof T]: T[K] } & {};
type IsDefaulted<S> = S extends { readonly [DefaultedBrand]: true } ? true : false;
type IsOptional<S> = S extends TOptional<TSchema> ? (IsDefaulted<S> extends true ? false : true) : false;

/** The value a schema describes once defaults are applied: defaulted keys are present, and everything is read-only. */
export type Resolved<S> =
  S extends TObject<infer P extends TProperties> ? ResolvedObject<P>
    : S extends TArray<infer I extends TSchema> ? ReadonlyArray<Resolved<I>>
      : S extends TSchema ? Static<S>
        : never;
type ResolvedObject<P extends TProperties> = Flatten<
  { readonly [K in keyof P as IsOptional<P[K]> extends true ? never : K]: Resolved<P[K]> }
  & { readonly [K in keyof P as IsOptional<P[K]> extends true ? K : never]?: Resolved<P[K]> }
>;

// ---------------------------------------------------------------------------
// Building blocks.

const path = (description: string): ReturnType<typeof Type.String> => Type.String({ minLength: 1, description });
const hostPort = (description: string): ReturnType<typeof Type.String> => Type.String({ pattern: HOST_PORT_PATTERN, description });
const endpoint = (description: string): ReturnType<typeof Type.String> => Type.String({ pattern: ENDPOINT_PATTERN, description });
const ms = (description: string, minimum: number): ReturnType<typeof Type.Integer> => Type.Integer({ minimum, maximum: MAX_TIMER_MS, description });
const strict = { additionalProperties: false } as const;

/** The interception modes of `tunnel.mode`. */
export const TUNNEL_MODES = ['none', 'proxy', 'tun'] as const;
/** pino levels accepted by `log.level`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

// ---------------------------------------------------------------------------
// The schema.

/** The transport protocols of `tunnel.proxy[].protocol`. */
export const PROXY_PROTOCOLS = ['tcp', 'udp'] as const;

/** One local proxy port: connections (tcp) or datagrams (udp) on `listen` are carried to `service` over the overlay. */
export const ProxyEntrySchema = Type.Object({
  /** Name of a service this router's identity may Dial. */
  service: Type.String({ minLength: 1, description: 'Name of a service this router\'s identity may Dial.' }),
  /** Local address to accept connections or datagrams on. */
  listen: hostPort('Local address (HOST:PORT) to accept TCP connections (or UDP datagrams) on; each is carried to the service. Port 1–65535.'),
  /** tcp: a circuit per connection; udp: a circuit per client address and port. */
  protocol: withDefault(Type.Union(PROXY_PROTOCOLS.map((p) => Type.Literal(p)), {
    description: 'tcp: each connection is a circuit. udp: each client address:port is a session with its own circuit, ended after 60 s without datagrams; at most 1024 sessions per port.',
  }), 'tcp'),
}, { ...strict, description: 'A local proxy port for one service.' });

/** TUN interception: a virtual interface, a DNS server that hands out addresses for service names, and forwarding. */
export const TunSchema = Type.Object({
  /** Device name. */
  name: withDefault(Type.String({ pattern: TUN_NAME_PATTERN, description: 'Name of the TUN device the router creates (1–15 characters).' }), 'zt0'),
  /** Pool for intercepted hostnames. */
  dnsRange: withDefault(Type.String({
    pattern: IPV4_CIDR_PATTERN,
    description: 'IPv4 network (CIDR) from which intercepted hostnames get their addresses; routed into the TUN.',
  }), '100.64.0.0/10'),
  /** Where the DNS server listens. */
  dnsListen: withDefault(Type.Array(hostPort('HOST:PORT'), {
    description: 'Addresses (HOST:PORT) the DNS server listens on (UDP and TCP). Add a LAN address to serve clientless devices behind a subnet gateway.',
  }), ['100.64.0.2:53']),
  /** Resolvers for everything else. */
  upstream: withDefault(Type.Array(hostPort('IP:PORT'), {
    description: 'Resolvers (IP:PORT) for names that are not intercepted. Empty: such queries are answered REFUSED.',
  }), []),
  /** Device MTU. */
  mtu: withDefault(Type.Integer({ minimum: 576, maximum: 65535, description: 'MTU of the TUN device, 576–65535. Devices on a LAN send at most their own MTU; local programs (same host) send up to this, so a larger value moves more bytes per packet.' }), 1500),
  /** Kernel offloads. */
  offload: withDefault(Type.Boolean({ description: 'Let the kernel hand TCP super-segments (up to 64 KB) and partial checksums to the router through a virtio_net_hdr (IFF_VNET_HDR + TUNSETOFFLOAD): far fewer reads per byte. Turn off only to debug.' }), true),
  /** Move the device into this network namespace. */
  netns: Type.Optional(Type.String({ pattern: NETNS_NAME_PATTERN, description: 'Name of an existing network namespace (ip netns) to move the TUN device into after creating it: the router keeps its links in its own namespace while the devices it serves live in another (containers, tests). Absent: the device stays in the router\'s namespace.' })),
  /** Flow limits. */
  maxTcpFlows: withDefault(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'TCP connections intercepted at once; a SYN beyond the limit is answered with RST (and counted).' }), 16384),
  maxUdpFlows: withDefault(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'UDP flows (source address:port to destination address:port) open at once; datagrams of new flows beyond the limit are dropped (and counted).' }), 4096),
  /** UDP flow idle time. */
  udpIdleSeconds: withDefault(Type.Integer({ minimum: 1, maximum: 86_400, description: 'A UDP flow (and its circuit) ends after this many seconds without a datagram either way.' }), 60),
}, { ...strict, description: 'Settings of the tun interception mode.' });

/** How this router captures traffic for services it may Dial. */
export const TunnelSchema = Type.Object({
  /** Interception mode. */
  mode: withDefault(Type.Union(TUNNEL_MODES.map((m) => Type.Literal(m)), {
    description: 'Interception mode: none (host services only), proxy (local ports, no privileges) or tun (TUN device with DNS; needs CAP_NET_ADMIN).',
  }), 'none'),
  /** Proxy ports (proxy mode). */
  proxy: withDefault(Type.Array(ProxyEntrySchema, {
    description: 'Local proxy ports, one per service and address. Used in proxy mode, which needs at least one.',
  }), []),
  /** TUN settings (tun mode). */
  tun: withDefault(TunSchema, {}),
}, { ...strict, description: 'Interception: how this router captures traffic for services it may Dial.' });

/** The certificate a router presents on its listeners. */
export const ServerSchema = Type.Object({
  /** PEM certificate chain file. */
  cert: path('PEM file with the listener certificate (and chain), issued to this router at enrollment. Relative to this file.'),
  /** PEM private key file. */
  key: path('PEM file with the listener private key. A file key even when the identity key is in a token, as Node\'s TLS server cannot use a token key. Relative to this file.'),
}, { ...strict, description: 'Listener TLS certificate. Only for routers with listeners; when absent, the router uses the server certificate stored at enrollment.' });

/** Reconnection of dialed links: exponential backoff with jitter. */
export const ReconnectSchema = Type.Object({
  /** First delay. */
  initialMs: withDefault(ms('Delay before the first redial of a lost link, in milliseconds; doubled (with jitter) after each failure.', 1), 500),
  /** Ceiling. */
  maxMs: withDefault(ms('Longest delay between redials, in milliseconds. At least initialMs.', 1), 30_000),
}, { ...strict, description: 'Redial backoff for links this router dials.' });

/** Link behaviour: liveness, framing limits and redial. */
export const LinkSchema = Type.Object({
  /** Keepalive interval. */
  keepaliveMs: withDefault(ms('Send a keepalive on an idle link after this many milliseconds.', 10), 15_000),
  /** Dead-peer timeout. */
  deadAfterMs: withDefault(ms('Close a link that has received nothing for this many milliseconds. Must exceed keepaliveMs.', 10), 45_000),
  /** Largest frame accepted. */
  maxFrameBytes: withDefault(Type.Integer({
    minimum: 1024,
    maximum: 16 * 1024 * 1024,
    description: 'Largest link frame (header and payload) sent or accepted, in bytes; a peer that sends a larger one is disconnected.',
  }), 262_144),
  /** Redial backoff. */
  reconnect: withDefault(ReconnectSchema, {}),
}, { ...strict, description: 'Router-to-router link settings.' });

/** What the router does with its signed policy snapshot when the controller stays out of reach. */
export const PolicySchema = Type.Object({
  /** Keep authorizing past notAfter. */
  keepAfterExpiry: withDefault(Type.Boolean({
    description: 'Past the snapshot\'s notAfter (the controller\'s offline window, 72 h by default), false: refuse new circuits and end hosted ones (fail closed); true: keep authorizing from the last policy (availability over revocation: a revoked identity keeps access until the controller is back).',
  }), false),
  /** Shorter offline window for this router. */
  maxOfflineHours: Type.Optional(Type.Number({
    exclusiveMinimum: 0,
    maximum: 8760,
    description: 'This router\'s own offline window, in hours: it stops authorizing this long after its policy was signed, or at the snapshot\'s notAfter if that comes first. Only shortens the controller\'s window (ztedge controller --policy-offline-hours), never lengthens it.',
  })),
}, { ...strict, description: 'Policy cache behaviour while the controller is unreachable.' });

/** Logging. */
export const LogSchema = Type.Object({
  /** pino level. */
  level: withDefault(Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)), {
    description: 'Lowest level written: fatal, error, warn, info, debug, trace or silent.',
  }), 'info'),
}, { ...strict, description: 'Logging (JSON lines on stdout).' });

/**
 * The whole router config (`ztedge router --config router.yml`).
 *
 * @example
 * ```yaml
 * identity: ./edge1.json
 * links: [tls:hub.example:3022]
 * tunnel:
 *   mode: proxy
 *   proxy:
 *     - { service: demo, listen: 127.0.0.1:18080 }
 * ```
 */
export const RouterConfigSchema = Type.Object({
  /** Identity file written by `ztedge enroll`. */
  identity: path('Identity file written by `ztedge enroll`: certificate, key reference and controller URL. Relative to this file.'),
  /** Policy cache and state. */
  dataDir: withDefault(path('Folder for the policy cache and state. Relative to this file.'), './ztedge-data'),
  /** Link listeners. */
  listeners: withDefault(Type.Array(endpoint('tls:HOST:PORT'), {
    description: 'Addresses (tls:HOST:PORT) to accept links from other routers on. Port 0 picks a free port. Omit behind NAT.',
  }), []),
  /** Routers to dial. */
  links: withDefault(Type.Array(endpoint('tls:HOST:PORT'), {
    description: 'Routers to dial (tls:HOST:PORT). Edge routers only dial out.',
  }), []),
  /** Interception. */
  tunnel: withDefault(TunnelSchema, {}),
  /** Listener certificate; optional. */
  server: Type.Optional(ServerSchema),
  /** Link tuning. */
  link: withDefault(LinkSchema, {}),
  /** Offline policy behaviour. */
  policy: withDefault(PolicySchema, {}),
  /** Logging. */
  log: withDefault(LogSchema, {}),
}, { ...strict, $id: 'https://ztedge.dev/schemas/router-config.json', title: 'ztedge router config', description: 'Settings of `ztedge router`.' });

/** The config file as written: defaulted keys may be missing. */
export type RouterConfigFile = Static<typeof RouterConfigSchema>;
/** The resolved, validated, frozen config: defaults applied, paths absolute. */
export type RouterConfig = Resolved<typeof RouterConfigSchema>;
/** `tunnel` slice, for the interception code. */
export type TunnelConfig = RouterConfig['tunnel'];
/** `tunnel.proxy[n]`. */
export type ProxyEntry = TunnelConfig['proxy'][number];
/** `tunnel.tun` slice, for the TUN, DNS and stack code. */
export type TunConfig = TunnelConfig['tun'];
/** `server` slice, for the link listener. */
export type ServerConfig = NonNullable<RouterConfig['server']>;
/** `link` slice, for src/link. */
export type LinkConfig = RouterConfig['link'];
/** `policy` slice. */
export type PolicyConfig = RouterConfig['policy'];
/** `log` slice. */
export type LogConfig = RouterConfig['log'];
export type TunnelMode = (typeof TUNNEL_MODES)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];
