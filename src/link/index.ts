/** Links between routers: framed, authenticated TLS connections (see link.ts). */
export { DEFAULT_LINK_SETTINGS, Link, LINK_PROTOCOL_VERSION, type CircuitFrameHandler, type LinkIdentity, type LinkSettings } from './link.js';
export { identityOf, parsePemBundle } from './trust.js';
