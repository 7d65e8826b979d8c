/**
 * Policy when the controller comes and goes, with real processes and a
 * short offline window (--policy-offline-hours 0.002 = 7.2 s):
 *
 *   - a revocation reaches a connected hosting router and cuts an open
 *     circuit within a second (the client sees a reset);
 *   - a router that was down when policy changed applies the change when it
 *     comes back (cache first, then the delta from its revision);
 *   - connected routers are re-signed before their window ends;
 *   - with the controller gone, past notAfter a router fails closed, while a
 *     router configured with keepAfterExpiry keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Server } from 'node:net';
import { portOf, startEcho } from '../helpers/fabric.js';
import { freePort, Overlay } from '../helpers/overlay.js';

const WINDOW_MS = 0.002 * 3600_000;
const KEEP = 'policy: { keepAfterExpiry: true }';
let o: Overlay;
let echo: Server;
let strictPort: number;
let lenientPort: number;

/** true when a round trip through 127.0.0.1:port works, false when the circuit is refused. */
function dialWorks(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, 3000);
    s.on('error', () => undefined);
    s.once('data', () => { clearTimeout(timer); s.destroy(); resolve(true); });
    s.once('close', () => { clearTimeout(timer); resolve(false); });
    s.write('ping');
  });
}

async function expectDial(port: number, want: boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if ((await dialWorks(port)) === want) return;
    if (Date.now() > end) throw new Error(`${what}: dial ${want ? 'still refused' : 'still allowed'} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  echo = await startEcho();
  o = await Overlay.start(['--policy-offline-hours', '0.002']);
  // Only `strict` fails closed; the others keep their last policy, so the path to `lenient` survives expiry.
  await o.addRouter({ name: 'hub', listen: true, extraYaml: KEEP });
  await o.addRouter({ name: 'strict', links: ['hub'] });
  await o.addRouter({ name: 'lenient', links: ['hub'], extraYaml: KEEP });
  strictPort = await freePort();
  lenientPort = await freePort();
  await o.addRouter({ name: 'edge', links: ['hub'], proxy: [{ service: 'svc-strict', port: strictPort }, { service: 'svc-lenient', port: lenientPort }], extraYaml: KEEP });
  await o.hostService('svc-strict', { protocol: 'tcp', address: '127.0.0.1', port: portOf(echo) }, 'strict');
  await o.hostService('svc-lenient', { protocol: 'tcp', address: '127.0.0.1', port: portOf(echo) }, 'lenient');
  await o.allowDial('svc-strict', 'edge', 'dial-strict');
  await o.allowDial('svc-lenient', 'edge', 'dial-lenient');
  await expectDial(strictPort, true, 'strict service');
  await expectDial(lenientPort, true, 'lenient service');
});

after(async () => {
  await o?.stop();
  echo?.close();
});

async function policyId(name: string): Promise<string> {
  const list = await o.mgmt<{ id: string }[]>('GET', `/service-policies?filter=${encodeURIComponent(`name = "${name}"`)}`);
  assert.equal(list.length, 1, name);
  return list[0]!.id;
}

test('a revocation reaches the connected hosting router and cuts an open circuit within a second', async () => {
  const s = netConnect(strictPort, '127.0.0.1');
  let error: NodeJS.ErrnoException | undefined;
  s.on('error', (err) => { error = err; });
  s.write('hello');
  await new Promise((r) => s.once('data', r));
  const since = o.routers.get('strict')!.logs.length;
  const closed = new Promise((r) => s.once('close', r));
  const t0 = Date.now();
  await o.mgmt('DELETE', `/service-policies/${await policyId('dial-strict')}`);
  const apiMs = Date.now() - t0;
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('circuit not cut within 1 s')), 1000 + apiMs))]);
  const cutMs = Date.now() - t0;
  assert.equal(error?.code, 'ECONNRESET', 'the client sees a reset, not a clean end');
  const revoked = await o.waitLog('strict', (l) => l.msg === 'circuit revoked', 2000, since);
  assert.match(String(revoked.reason), /no Dial policy/);
  assert.equal(await dialWorks(strictPort), false);
  process.stdout.write(`# revocation: API call ${apiMs} ms, circuit cut ${cutMs} ms after the call started\n`);
});

test('a router that was down when policy changed applies the change when it comes back', async () => {
  await o.allowDial('svc-strict', 'edge', 'dial-strict');
  await expectDial(strictPort, true, 'dial policy back');
  await o.killRouter('strict');
  await o.mgmt('DELETE', `/service-policies/${await policyId('dial-strict')}`);
  const since = o.routers.get('strict')!.logs.length;
  await o.startRouter('strict');
  await o.waitLog('strict', (l) => l.msg === 'policy loaded from cache', 5000, since);
  await o.waitLog('strict', (l) => l.msg === 'control link up', 5000, since);
  await expectDial(strictPort, false, 'the change made while it was down');
  // And back again, pushed to it now that it is connected.
  await o.allowDial('svc-strict', 'edge', 'dial-strict');
  await expectDial(strictPort, true, 'pushed after reconnect');
});

test('disabling the dialing identity cuts its open circuit; enabling it restores access', async () => {
  const s = netConnect(strictPort, '127.0.0.1');
  s.on('error', () => undefined);
  s.write('hello');
  await new Promise((r) => s.once('data', r));
  const closed = new Promise((r) => s.once('close', r));
  const edgeId = o.routers.get('edge')!.id;
  const t0 = Date.now();
  await o.mgmt('POST', `/identities/${edgeId}/disable`, { durationMinutes: 0 });
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('circuit not cut within 1 s of disabling')), 1000))]);
  process.stdout.write(`# disable: circuit cut ${Date.now() - t0} ms after the call started\n`);
  assert.equal(await dialWorks(strictPort), false);
  await o.mgmt('POST', `/identities/${edgeId}/enable`, {});
  await expectDial(strictPort, true, 'enabled again', 15_000);
});

test('connected routers are re-signed before their offline window ends', async () => {
  const since = o.routers.get('strict')!.logs.length;
  await o.waitLog('strict', (l) => l.msg === 'policy re-signed', WINDOW_MS, since);
  const start = Date.now();
  // Past a whole window since the last full snapshot: still authorizing, because re-signed.
  while (Date.now() - start < WINDOW_MS * 0.6) await new Promise((r) => setTimeout(r, 200));
  assert.equal(await dialWorks(strictPort), true);
});

test('controller gone: past notAfter the strict router fails closed; the lenient one keeps serving', async () => {
  await o.stopController();
  const stoppedAt = Date.now();
  // Within the window both still serve from their copies.
  assert.equal(await dialWorks(strictPort), true, 'strict, inside the window');
  assert.equal(await dialWorks(lenientPort), true, 'lenient, inside the window');
  const since = o.routers.get('strict')!.logs.length;
  await o.waitLog('strict', (l) => l.msg === 'policy expired: the controller was out of reach for the whole offline window; refusing circuits until it answers', WINDOW_MS + 3000, since);
  await expectDial(strictPort, false, 'strict past notAfter', 3000);
  assert.ok(Date.now() - stoppedAt <= WINDOW_MS + 4000);
  assert.equal(await dialWorks(lenientPort), true, 'lenient past notAfter (keepAfterExpiry)');
});
