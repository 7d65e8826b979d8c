/**
 * Helpers for tests that run several Routers in one process: policy as data,
 * router options with short link timers, and a bounded wait.
 */
import type { Logger } from 'pino';
import type { Pki } from '../../src/controller/pki.js';
import { DEFAULT_LINK_SETTINGS } from '../../src/link/index.js';
import type { HostTarget, PolicyView, RouterOptions } from '../../src/router/router.js';
import { issueIdentity } from './fabric.js';

/** Policy as data: which identities may dial which service; what this router hosts. */
export function policy(hosted: Record<string, HostTarget>, dialers: Record<string, string[]>): PolicyView {
  return {
    hostedServices: () => new Map(Object.entries(hosted)),
    mayDial: (identity, service) => (dialers[service]?.includes(identity)
      ? { allow: true, reason: `service policy grants ${identity} Dial on ${service}` }
      : { allow: false, reason: `no service policy grants ${identity} Dial on ${service}` }),
  };
}

/** Options for router `id` (identity issued by `pki`): no listeners, links or proxies, fast keepalive and redial; `extra` overrides. */
export async function routerOptions(pki: Pki, log: Logger, id: string, extra: Partial<RouterOptions>): Promise<RouterOptions> {
  const { key, certPem } = await issueIdentity(pki, id);
  return {
    id, key, certPem, caPem: pki.caBundlePem, listeners: [], links: [], proxy: [],
    link: { ...DEFAULT_LINK_SETTINGS, keepaliveMs: 200, deadAfterMs: 1000 }, reconnect: { initialMs: 50, maxMs: 400 },
    policy: policy({}, {}), log, ...extra,
  };
}

/** Resolves once `cond()` holds; rejects after `ms`. Polls every 20 ms. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
