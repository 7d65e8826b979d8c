/**
 * Posture checks end to end with real processes: the edge router reports
 * its host's posture (MACs, OS, watched processes) over its control link,
 * the controller stores it and pushes it in the signed snapshot, and the
 * hosting router evaluates each Dial policy's posture checks at circuit
 * set-up — and again when the posture or the checks change. Each check
 * type passes and fails as it should, with the failing check in the reason.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Server } from 'node:net';
import { hostMacAddresses } from '../../src/router/posture.js';
import { portOf, startEcho } from '../helpers/fabric.js';
import { freePort, Overlay } from '../helpers/overlay.js';

let o: Overlay;
let echo: Server;
let proxyPort: number;
let policyId: string;
const nodeSha512 = createHash('sha512').update(readFileSync(process.execPath)).digest('hex');

/** true when a round trip through the edge works, false when the circuit is refused. */
function dialWorks(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(proxyPort, '127.0.0.1');
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, 3000);
    s.on('error', () => undefined);
    s.once('data', () => { clearTimeout(timer); s.destroy(); resolve(true); });
    s.once('close', () => { clearTimeout(timer); resolve(false); });
    s.write('ping');
  });
}

/** Waits until dialing gives `want` (policy, posture reports and deltas take a moment to travel). */
async function expectDial(want: boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if ((await dialWorks()) === want) return;
    if (Date.now() > end) throw new Error(`${what}: dial ${want ? 'still refused' : 'still allowed'} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Points the Dial policy's posture requirement at check `name` (created here with `body`). */
async function requireCheck(name: string, body: Record<string, unknown>): Promise<void> {
  const check = await o.mgmt<{ id: string }>('POST', '/posture-checks', { name, ...body });
  await o.mgmt('PATCH', `/service-policies/${policyId}`, { postureCheckRoles: [`@${check.id}`] });
}

before(async () => {
  echo = await startEcho();
  o = await Overlay.start();
  await o.addRouter({ name: 'hub', listen: true });
  await o.addRouter({ name: 'host', links: ['hub'] });
  proxyPort = await freePort();
  await o.addRouter({ name: 'edge', links: ['hub'], proxy: [{ service: 'echo', port: proxyPort }] });
  await o.hostService('echo', { protocol: 'tcp', address: '127.0.0.1', port: portOf(echo) }, 'host');
  policyId = await o.allowDial('echo', 'edge');
  await expectDial(true, 'no posture required');
});

after(async () => {
  await o?.stop();
  echo?.close();
});

test('PROCESS: fails for a path that is not running; passes while the watched binary runs with the listed SHA-512', async () => {
  // Each step goes from refused to allowed or back, so no answer can come from the policy before the change.
  const since = o.routers.get('host')!.logs.length;
  await requireCheck('ghost-running', { typeId: 'PROCESS', process: { osType: 'Linux', path: '/usr/local/bin/not-installed-here' } });
  await expectDial(false, 'a process that is not running');
  // Refused at set-up, or (for a circuit open when the requirement changed) ended by revalidation.
  const denied = await o.waitLog('host', (l) => (l.msg === 'dial denied' || l.msg === 'circuit revoked') && /posture/.test(String(l.reason)), 5000, since);
  assert.match(String(denied.reason), /PROCESS check "ghost-running"/);
  await requireCheck('node-running', { typeId: 'PROCESS', process: { osType: 'Linux', path: process.execPath, hashes: [nodeSha512] } });
  await expectDial(true, 'node is running (the router itself)');
  // The edge's posture, as the controller stored it: the process it was asked to watch, running.
  const edgeId = o.routers.get('edge')!.id;
  const data = await o.mgmt<{ processes?: { path: string; isRunning: boolean }[] }>('GET', `/identities/${edgeId}/posture-data`);
  assert.ok(data.processes?.some((p) => p.path === process.execPath && p.isRunning), JSON.stringify(data));
});

test('PROCESS with a wrong hash fails', async () => {
  await requireCheck('node-wrong-hash', { typeId: 'PROCESS', process: { osType: 'Linux', path: process.execPath, hashes: ['0'.repeat(128)] } });
  await expectDial(false, 'hash mismatch');
});

test('MAC: one of the host\'s addresses passes; a foreign address fails', async () => {
  const macs = hostMacAddresses();
  assert.ok(macs.length > 0, 'this host has a MAC address');
  await requireCheck('mac-ok', { typeId: 'MAC', macAddresses: [macs[0]!.toUpperCase()] });
  await expectDial(true, 'own MAC');
  await requireCheck('mac-foreign', { typeId: 'MAC', macAddresses: ['02:00:5e:10:00:99'] });
  await expectDial(false, 'foreign MAC');
});

test('OS: Linux at any version passes; a version range above the kernel and another OS fail', async () => {
  await requireCheck('os-linux', { typeId: 'OS', operatingSystems: [{ type: 'Linux', versions: ['>=2.0.0'] }] });
  await expectDial(true, 'Linux >= 2.0.0');
  await requireCheck('os-future', { typeId: 'OS', operatingSystems: [{ type: 'Linux', versions: ['>=999.0.0'] }] });
  await expectDial(false, 'kernel >= 999');
  await requireCheck('os-windows', { typeId: 'OS', operatingSystems: [{ type: 'Windows', versions: [] }] });
  await expectDial(false, 'Windows only');
});

test('DOMAIN and MFA fail for a router host (no Windows domain, no MFA session); removing the requirement restores access', async () => {
  await requireCheck('domain-corp', { typeId: 'DOMAIN', domains: ['corp.example'] });
  await expectDial(false, 'domain');
  await requireCheck('mfa', { typeId: 'MFA', timeoutSeconds: 600 });
  await expectDial(false, 'mfa');
  await o.mgmt('PATCH', `/service-policies/${policyId}`, { postureCheckRoles: [] });
  await expectDial(true, 'no posture required again');
});
