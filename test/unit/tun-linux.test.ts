/**
 * The Linux device's TypeScript half (src/tun/linux.ts) over a fake addon:
 * open errors become ERR_TUN with the cause and the fix, write return codes
 * become counters (never exceptions), read errors reach onError once. The
 * real addon and kernel are exercised by test/e2e/tun.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { EdgeError } from '../../src/errors.js';
import { checkTunName, loadTunAddon, openLinuxTun, type TunAddon } from '../../src/tun/index.js';

const E = constants.errno;

/** A fake addon: open fails with `openErrno` if set; write answers from `writeResults`. */
function fakeAddon(opts: { openErrno?: string } = {}) {
  const calls: string[] = [];
  let reader: ((pkt: Buffer | null, negErrno?: number) => void) | null = null;
  const writeResults: number[] = [];
  const addon: TunAddon = {
    open(name, flags) {
      calls.push(`open ${name} ${flags}`);
      if (opts.openErrno !== undefined) {
        throw Object.assign(new Error(`cannot create the TUN device: ${opts.openErrno} (ioctl(TUNSETIFF))`), { code: opts.openErrno, syscall: 'ioctl(TUNSETIFF)' });
      }
      return { fd: 7, name: name.replace('%d', '3') };
    },
    startReading(fd, cb, maxBatch) {
      calls.push(`startReading ${fd} ${maxBatch}`);
      reader = cb;
    },
    stopReading(fd) {
      calls.push(`stopReading ${fd}`);
      return true;
    },
    write(fd, pkt) {
      calls.push(`write ${fd} ${pkt.length}`);
      return writeResults.shift() ?? pkt.length;
    },
    writev(fd, parts) {
      calls.push(`writev ${fd} ${parts.length}`);
      return writeResults.shift() ?? parts.reduce((n, p) => n + p.length, 0);
    },
    close(fd) {
      calls.push(`close ${fd}`);
      return 0;
    },
    setOffload(fd, flags) {
      calls.push(`setOffload ${fd} ${flags}`);
      if (flags & 0x80) throw Object.assign(new Error('the kernel refused these offloads: Invalid argument (ioctl(TUNSETOFFLOAD))'), { code: 'EINVAL' });
    },
    setSndbuf(fd, bytes) {
      calls.push(`setSndbuf ${fd} ${bytes}`);
    },
    constants: {
      IFF_TUN: 1, IFF_NO_PI: 0x1000, IFF_VNET_HDR: 0x4000, IFF_MULTI_QUEUE: 0x100, IFF_NAPI: 0x10, IFNAMSIZ: 16,
      TUN_F_CSUM: 1, TUN_F_TSO4: 2, TUN_F_TSO6: 4, TUN_F_TSO_ECN: 8, TUN_F_USO4: 0x20, TUN_F_USO6: 0x40,
      READ_BUF_BYTES: 65600, MAX_WRITEV_PARTS: 16,
    },
  };
  return { addon, calls, writeResults, deliver: (pkt: Buffer | null, negErrno?: number) => reader!(pkt, negErrno) };
}

const isTunError = (pattern: RegExp) => (err: EdgeError): boolean => {
  assert.equal(err.code, 'ERR_TUN');
  assert.match(err.message, pattern);
  return true;
};

test('open: each kernel refusal is ERR_TUN naming the cause and the fix', () => {
  const cases: [string, RegExp][] = [
    ['EPERM', /cannot open TUN device "zt0": permission denied: .*CAP_NET_ADMIN.*AmbientCapabilities/],
    ['EACCES', /CAP_NET_ADMIN/],
    ['ENOENT', /\/dev\/net\/tun is missing: load the tun kernel module \(modprobe tun; on OpenWrt install kmod-tun\)/],
    ['EBUSY', /in use by another TUN .* choose another tunnel\.tun\.name/],
    ['EINVAL', /exists and is not a TUN device/],
    ['EMFILE', /the kernel refused it \(cannot create the TUN device: EMFILE/],
  ];
  for (const [code, pattern] of cases) {
    const { addon } = fakeAddon({ openErrno: code });
    assert.throws(() => openLinuxTun({ name: 'zt0', addon }), isTunError(pattern), code);
  }
});

test('open: bad names are refused before the kernel is asked', () => {
  for (const name of ['', 'a'.repeat(16), '-zt', '.zt', 'zt 0', 'zt/0', 'zt:0', 'zt%s', 'zt%d%d', 'é'.repeat(8)]) {
    const { addon, calls } = fakeAddon();
    assert.throws(() => openLinuxTun({ name, addon }), isTunError(/invalid TUN device name/), name);
    assert.deepEqual(calls, []);
  }
  assert.equal(checkTunName('zt0'), null);
  assert.equal(checkTunName('zt%d'), null);
  assert.equal(checkTunName('a'.repeat(15)), null);
  assert.equal(checkTunName('zt_lan-1.2'), null);
});

test('open: flags, offload and sndbuf reach the addon; a refused offload closes the fd', () => {
  const ok = fakeAddon();
  const dev = openLinuxTun({ name: 'zt%d', addon: ok.addon, vnetHdr: true, offload: 0x7, sndbufBytes: 65536, maxBatch: 32, mtu: 1420 });
  assert.equal(dev.name, 'zt3');
  assert.equal(dev.mtu, 1420);
  assert.equal(dev.vnetHdrBytes, 10);
  assert.deepEqual(ok.calls, ['open zt%d 16384', 'setOffload 7 7', 'setSndbuf 7 65536']);

  const refused = fakeAddon();
  assert.throws(() => openLinuxTun({ name: 'zt0', addon: refused.addon, vnetHdr: true, offload: 0x80 }), isTunError(/TUN device zt0: the kernel refused these offloads/));
  assert.deepEqual(refused.calls, ['open zt0 16384', 'setOffload 7 128', 'close 7']);

  assert.throws(() => openLinuxTun({ name: 'zt0', addon: fakeAddon().addon, offload: 1 }), isTunError(/offloads need vnetHdr/));
  assert.throws(() => openLinuxTun({ name: 'zt0', addon: fakeAddon().addon, mtu: 67 }), isTunError(/invalid TUN MTU 67/));
});

test('open: a missing addon is ERR_TUN telling how to build it or to use proxy mode', () => {
  assert.throws(() => loadTunAddon('/nonexistent/ztedge_tun.node'),
    isTunError(/the TUN addon \(\/nonexistent\/ztedge_tun\.node\) cannot be loaded: Cannot find module.*npm rebuild @ztedge\/tun.*tunnel\.mode: proxy/));
  assert.throws(() => openLinuxTun({ name: 'zt0', addonPath: '/nonexistent/ztedge_tun.node' }), isTunError(/cannot be loaded/));
});

test('write: accepted packets are counted; a full queue and other refusals return false, never throw', () => {
  const { addon, writeResults } = fakeAddon();
  const dev = openLinuxTun({ name: 'zt0', addon });
  const p = Buffer.alloc(100);
  writeResults.push(100, -E.EAGAIN, -E.ENOBUFS, -E.EIO, -E.EINVAL);
  assert.deepEqual([dev.write(p), dev.write(p), dev.write(p), dev.write(p), dev.write(p)], [true, false, false, false, false]);
  writeResults.push(-E.EAGAIN);
  assert.equal(dev.writev([p, p]), false);
  assert.equal(dev.writev([p, p]), true);
  assert.equal(dev.counters.txPackets, 2);
  assert.equal(dev.counters.txBytes, 300);
  assert.equal(dev.counters.txDropped, 3);
  assert.equal(dev.counters.txErrors, 2);
  dev.close();
  assert.equal(dev.write(p), false);
  assert.equal(dev.writev([p]), false);
  assert.equal(dev.counters.txErrors, 4);
});

test('read: reading starts with the first handler; packets reach it in order; none without a handler', () => {
  const { addon, calls, deliver } = fakeAddon();
  const dev = openLinuxTun({ name: 'zt0', addon, maxBatch: 8 });
  assert.deepEqual(calls, ['open zt0 0'], 'no reader before a handler');
  const got: number[] = [];
  dev.onPackets((pkt) => got.push(pkt[0]!));
  dev.onPackets((pkt) => got.push(pkt[0]! + 100)); // replaces, does not start a second reader
  assert.deepEqual(calls, ['open zt0 0', 'startReading 7 8']);
  deliver(Buffer.from([1, 0]));
  deliver(Buffer.from([2, 0, 0]));
  dev.onPackets(null);
  deliver(Buffer.from([3]));
  assert.deepEqual(got, [101, 102]);
  assert.equal(dev.counters.rxPackets, 2);
  assert.equal(dev.counters.rxBytes, 5);
  assert.equal(dev.counters.rxNoHandler, 1);
  dev.close();
  dev.close();
  assert.equal(dev.closed, true);
  assert.deepEqual(calls.slice(2), ['close 7'], 'closed once; the addon stops the reader itself');
});

test('read: a read error reaches onError as ERR_TUN with the errno name, and is counted', () => {
  const { addon, deliver } = fakeAddon();
  const dev = openLinuxTun({ name: 'zt0', addon });
  const errors: Error[] = [];
  dev.onError((err) => errors.push(err));
  dev.onPackets(() => assert.fail('no packet expected'));
  deliver(null, -77); // EBADFD: the device was deleted
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as EdgeError).code, 'ERR_TUN');
  assert.match(errors[0]!.message, /reading TUN device zt0 failed: EBADFD/);
  assert.equal(dev.counters.rxErrors, 1);
  deliver(null, -E.EIO);
  assert.match(errors[1]!.message, /failed: EIO/);
});
