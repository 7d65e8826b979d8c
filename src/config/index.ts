/**
 * Router configuration: the only public door of src/config.
 *
 * `router.yml` → {@link loadRouterConfig} → frozen {@link RouterConfig} →
 * typed slices (`cfg.tunnel`, `cfg.link`, …) passed to each subsystem. Inner
 * code never reads YAML or `process.env` for settings. Keys, types and
 * defaults: docs/config.md; a commented example: packaging/router.example.yml.
 *
 * @example
 * ```ts
 * import { loadRouterConfig } from '../config/index.js';
 * const cfg = await loadRouterConfig(argv.config);   // throws ERR_CONFIG listing every problem
 * if (cfg.tunnel.mode === 'proxy') for (const p of cfg.tunnel.proxy) listen(p.listen, p.service);
 * ```
 */
export { loadRouterConfig, parseRouterConfig, MAX_CONFIG_BYTES } from './load.js';
export { validateRouterConfig, type ValidateOptions, type SourcePosition } from './validate.js';
export type { ConfigProblem, KeyPath } from './problems.js';
export {
  RouterConfigSchema,
  TUNNEL_MODES,
  LOG_LEVELS,
  type RouterConfig,
  type RouterConfigFile,
  type TunnelConfig,
  type TunnelMode,
  type ProxyEntry,
  type TunConfig,
  type ServerConfig,
  type LinkConfig,
  type LogConfig,
  type PolicyConfig,
  type LogLevel,
} from './schema.js';
export {
  parseHostPort,
  parseEndpoint,
  parseIpv4Cidr,
  formatIpv4,
  type HostPort,
  type HostPortOptions,
  type Endpoint,
  type Ipv4Cidr,
  type ParseResult,
} from './address.js';
