/**
 * The systemd units in systemd/: router units start node with the V8 flags
 * routers run with everywhere else (src/router/node-flags.ts), the tun-mode
 * unit grants exactly what tun mode needs, and every unit passes
 * `systemd-analyze verify` where systemd is installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROUTER_NODE_FLAGS } from '../../src/router/node-flags.js';

const DIR = join(import.meta.dirname, '..', '..', 'systemd');
const units = readdirSync(DIR).filter((f) => f.endsWith('.service'));

function directive(text: string, key: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

test('router units run node with the router V8 flags', () => {
  const routers = units.filter((u) => u.startsWith('ztedge-router'));
  assert.ok(routers.length >= 2, `router units: ${routers.join(', ')}`);
  for (const u of routers) {
    const exec = directive(readFileSync(join(DIR, u), 'utf8'), 'ExecStart')[0] ?? '';
    assert.match(exec, /ztedge\.cjs router --config /, u);
    for (const flag of ROUTER_NODE_FLAGS) assert.ok(exec.includes(flag), `${u}: ExecStart lacks ${flag}`);
  }
});

test('the tun-mode unit grants CAP_NET_ADMIN and /dev/net/tun, nothing more', () => {
  const text = readFileSync(join(DIR, 'ztedge-router-tun.service'), 'utf8');
  assert.deepEqual(directive(text, 'AmbientCapabilities'), ['CAP_NET_ADMIN']);
  assert.deepEqual(directive(text, 'CapabilityBoundingSet'), ['CAP_NET_ADMIN']);
  assert.deepEqual(directive(text, 'DeviceAllow'), ['/dev/net/tun rw']);
  assert.match(directive(text, 'RestrictAddressFamilies')[0] ?? '', /AF_NETLINK/);
  // The plain router unit keeps no capability at all.
  assert.deepEqual(directive(readFileSync(join(DIR, 'ztedge-router.service'), 'utf8'), 'CapabilityBoundingSet'), ['']);
});

const verify = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
test('systemd-analyze verify accepts every unit', { skip: verify.status === 0 ? false : 'systemd-analyze is not installed' }, () => {
  for (const u of units) {
    const r = spawnSync('systemd-analyze', ['verify', join(DIR, u)], { encoding: 'utf8' });
    // A missing /usr/bin/node or /opt/ztedge path is a warning about this machine, not the unit.
    const problems = (r.stderr + r.stdout).split('\n').filter((l) => l.trim() !== '' && !/is not executable|No such file|not found|Failed to prepare filename/.test(l));
    assert.deepEqual(problems, [], `${u}: ${r.stderr}`);
  }
});
