// Bundles src/main.ts into one file, dist/ztedge.cjs, with esbuild.
// Native addons are not bundled: lmdb (controller store) is loaded from
// node_modules beside the bundle, and only by the controller.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

/** Kept in step with ROUTER_ENV in src/router/node-flags.ts (a test compares them). */
const ROUTER_ENV = { MALLOC_ARENA_MAX: '1' };

const started = Date.now();
await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/ztedge.cjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  // Whitespace and comments out: V8 keeps the source text in every process (a few non-ASCII
  // characters in comments made it store 3.4 MB as two-byte text, 6.8 MiB of heap). Names stay.
  minifyWhitespace: true,
  legalComments: 'linked',
  // env -S: set the environment and pass a V8 flag from the shebang, for every command run as
  // ./ztedge.cjs (see src/router/node-flags.ts for why; spawners and the systemd unit set them too).
  banner: { js: `#!/usr/bin/env -S ${Object.entries(ROUTER_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} node --initial-old-space-size=64` },
  external: ['lmdb', 'msgpackr-extract', 'pkcs11js', '@ztedge/tun'],
  logLevel: 'warning',
});
chmodSync('dist/ztedge.cjs', 0o755);
console.log(`built dist/ztedge.cjs in ${Date.now() - started} ms`);
