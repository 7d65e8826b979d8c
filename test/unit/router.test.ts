/**
 * Three routers in one process over real TLS links on loopback: an edge with
 * a proxy port, a hub, and a host in front of a TCP echo server. Routes come
 * from announcements only; the host checks policy before it connects; when
 * the hub comes back after a restart the edge relinks and traffic resumes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Pki } from '../../src/controller/pki.js';
import { issueListener, roundTrip, startEcho } from '../helpers/fabric.js';
import { policy, routerOptions as makeOptions, until } from '../helpers/routers.js';
import { Router, type HostTarget, type RouterOptions } from '../../src/router/router.js';

const log = pino({ level: 'silent' });
let dir: string;
let pki: Pki;
let echo: NetServer;
let hub: Router;
let host: Router;
let edge: Router;
let hubPort: number;

const routerOptions = (id: string, extra: Partial<RouterOptions>): Promise<RouterOptions> => makeOptions(pki, log, id, extra);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ztedge-router-'));
  pki = await Pki.loadOrCreate(dir, ['127.0.0.1'], log);
  echo = await startEcho();
  const echoTarget: HostTarget = { protocol: 'tcp', address: '127.0.0.1', port: (echo.address() as { port: number }).port };

  hub = new Router(await routerOptions('hub', { listeners: [{ host: '127.0.0.1', port: 0 }], server: await issueListener(pki, 'hub') }));
  await hub.start();
  hubPort = hub.boundPorts()[0]!;
  host = new Router(await routerOptions('host', {
    links: [{ host: '127.0.0.1', port: hubPort }],
    policy: policy({ echo: echoTarget, secret: echoTarget }, { echo: ['edge'], secret: ['someone-else'] }),
  }));
  await host.start();
  edge = new Router(await routerOptions('edge', {
    links: [{ host: '127.0.0.1', port: hubPort }],
    proxy: [{ service: 'echo', host: '127.0.0.1', port: 0 }, { service: 'secret', host: '127.0.0.1', port: 0 }],
  }));
  await edge.start();
  await until(() => edge.routes.next('echo') !== undefined && edge.routes.next('secret') !== undefined);
});

after(async () => {
  await edge?.stop();
  await host?.stop();
  await hub?.stop();
  echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the edge learns the route to the host through the hub from announcements alone', () => {
  assert.deepEqual(edge.routes.next('echo'), { local: false, linkId: 'hub', hostRouterId: 'host', hops: 2 });
  assert.deepEqual(hub.routes.next('echo'), { local: false, linkId: 'host', hostRouterId: 'host', hops: 1 });
});

test('a client on the edge proxy port reaches the hosted service', async () => {
  const data = Buffer.from('hello through the overlay');
  assert.ok((await roundTrip(edge.boundPorts()[0]!, data)).equals(data));
});

test('the hosting router refuses an identity that policy does not allow', async () => {
  await assert.rejects(roundTrip(edge.boundPorts()[1]!, Buffer.from('let me in'), 3000), /closed at 0/);
});

test('when the hub restarts, the edge and host relink by themselves and traffic resumes', async () => {
  await hub.stop();
  await until(() => edge.routes.next('echo') === undefined, 3000);
  hub = new Router(await routerOptions('hub', { listeners: [{ host: '127.0.0.1', port: hubPort }], server: await issueListener(pki, 'hub') }));
  await hub.start();
  await until(() => edge.routes.next('echo') !== undefined, 5000);
  const data = Buffer.from('back again');
  assert.ok((await roundTrip(edge.boundPorts()[0]!, data)).equals(data));
});
