/**
 * Crash safety: kill -9 the controller while writes are in flight; after a
 * restart on the same data folder, everything the API had answered with
 * success is there, consumed tokens stay consumed, and the PKI and admin
 * password are the same.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createCsr, FileKeyStore, generatePrivateKeyPem } from '../../src/keys/index.js';
import { adminToken, api, removeDir, startControllerProcess, tempDir } from '../helpers/controller.js';

const M = '/edge/management/v1';
const dir = tempDir();
after(() => removeDir(dir));

test('kill -9 during writes loses nothing that was answered', async () => {
  const dataDir = join(dir, 'ctrl');
  const first = await startControllerProcess(dataDir);
  after(() => first.stop('SIGKILL'));
  const token = await adminToken(first);
  const csr = await createCsr(FileKeyStore.fromPem(generatePrivateKeyPem('ec-p256'), 'mem'), 'CN=x');

  // Answered writes: identity creations and token consumptions.
  const created = new Set<string>();
  const consumed: string[] = [];
  for (let i = 0; i < 10; i++) {
    const r = await api(first, 'POST', `${M}/identities`, { token, body: { name: `dev-${i}`, isAdmin: false, enrollment: { ott: true } } });
    assert.equal(r.status, 201);
    created.add(r.body.data.id);
    if (i % 3 === 0) {
      const d = await api(first, 'GET', `${M}/identities/${r.body.data.id}`, { token });
      const t = d.body.data.enrollment.ott.token as string;
      assert.equal((await api(first, 'POST', `/edge/client/v1/enroll?method=ott&token=${t}`, { rawBody: csr })).status, 200);
      consumed.push(t);
    }
  }
  // A burst of concurrent creations; the controller dies right after the first of them answers.
  let killed = false;
  const burst = Array.from({ length: 40 }, (_, i) =>
    api(first, 'POST', `${M}/identities`, { token, body: { name: `burst-${i}`, isAdmin: false } }).then(
      (r) => {
        if (r.status === 201) created.add(r.body.data.id);
        if (!killed) { killed = true; first.child.kill('SIGKILL'); }
      },
      () => undefined, // cut off by the kill: not answered, so not promised
    ));
  await Promise.all(burst);
  await first.stop();
  assert.equal(first.child.signalCode, 'SIGKILL');

  const second = await startControllerProcess(dataDir);
  try {
    assert.equal(second.adminPassword, first.adminPassword, 'the admin password is not regenerated');
    assert.equal(second.ca, first.ca, 'the PKI survives');
    assert.equal(second.logs.filter((l) => l.initialAdminPassword !== undefined).length, 0, 'the password is logged on first start only');
    const t2 = await adminToken(second);
    const list = await api(second, 'GET', `${M}/identities?limit=500`, { token: t2 });
    const ids = new Set((list.body.data as { id: string }[]).map((i) => i.id));
    for (const id of created) assert.ok(ids.has(id), `identity ${id} answered 201 before the crash but is gone`);
    for (const t of consumed) {
      const r = await api(second, 'POST', `/edge/client/v1/enroll?method=ott&token=${t}`, { rawBody: csr });
      assert.equal(r.status, 410, 'a consumed token stays consumed');
    }
    // The session made before the crash is still valid (sessions are persisted).
    assert.equal((await api(second, 'GET', `${M}/summary`, { token })).status, 200);
  } finally {
    await second.stop();
  }
});
