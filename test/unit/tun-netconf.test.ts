/**
 * Configuring the TUN through `ip` (src/tun/netconf.ts): the argument lists
 * (pure), and the apply/undo bookkeeping against a scripted fake `ip` that
 * answers with iproute2's real messages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EdgeError } from '../../src/errors.js';
import { TunNetconf, execIp, planTunNetwork, type IpRunner } from '../../src/tun/index.js';
import { parseCidr } from '../../src/tun/netconf.js';

const argv = (steps: ReturnType<typeof planTunNetwork>): string[] => steps.map((s) => s.args.join(' '));

test('plan: MTU, addresses, link up, then routes, each with its inverse', () => {
  const steps = planTunNetwork({ device: 'zt0', mtu: 1420, addresses: ['100.64.0.1/10'], routes: ['10.20.0.0/16', '192.168.7.0/24'] });
  assert.deepEqual(argv(steps), [
    'link set dev zt0 mtu 1420',
    'addr add 100.64.0.1/10 dev zt0',
    'link set dev zt0 up',
    'route add 10.20.0.0/16 dev zt0',
    'route add 192.168.7.0/24 dev zt0',
  ]);
  assert.deepEqual(steps.map((s) => s.undo?.join(' ') ?? null), [
    null,
    'addr del 100.64.0.1/10 dev zt0',
    null,
    'route del 10.20.0.0/16 dev zt0',
    'route del 192.168.7.0/24 dev zt0',
  ]);
  assert.deepEqual(steps.map((s) => s.kind), ['mtu', 'address', 'up', 'route', 'route']);
});

test('plan: routes are normalised, deduplicated, and the connected networks skipped (IPv4 and IPv6)', () => {
  const steps = planTunNetwork({
    device: 'zt0',
    addresses: ['100.64.0.1/10', 'fd00:7a::1/64'],
    routes: ['10.20.3.4/16', '10.20.0.0/16', '100.64.0.0/10', '100.127.0.0/10', 'FD00:7A:0:0::/64', '2001:db8:0:0:1::/80', '0.0.0.0/0'],
  });
  assert.deepEqual(argv(steps), [
    'addr add 100.64.0.1/10 dev zt0',
    'addr add fd00:7a::1/64 dev zt0',
    'link set dev zt0 up',
    'route add 10.20.0.0/16 dev zt0',
    'route add 2001:db8:0:0:1::/80 dev zt0',
    'route add 0.0.0.0/0 dev zt0',
  ]);
});

test('plan: a namespace moves the device first and every later command runs there', () => {
  const steps = planTunNetwork({ device: 'zt0', netns: 'sensors', mtu: 1500, addresses: ['100.64.0.1/32'], routes: ['100.64.0.0/10'] });
  assert.deepEqual(argv(steps), [
    'link set dev zt0 netns sensors',
    '-n sensors link set dev zt0 mtu 1500',
    '-n sensors addr add 100.64.0.1/32 dev zt0',
    '-n sensors link set dev zt0 up',
    '-n sensors route add 100.64.0.0/10 dev zt0',
  ]);
  assert.deepEqual(steps[4]!.undo, ['-n', 'sensors', 'route', 'del', '100.64.0.0/10', 'dev', 'zt0']);
  // Later applies (routes for new services) run there without moving the device again.
  const later = planTunNetwork({ device: 'zt0', netnsOnly: 'sensors', addresses: [], routes: ['10.9.0.0/16'] });
  assert.deepEqual(argv(later), ['-n sensors link set dev zt0 up', '-n sensors route add 10.9.0.0/16 dev zt0']);
});

test('plan: invalid input is ERR_TUN naming the value', () => {
  const bad: [Parameters<typeof planTunNetwork>[0], RegExp][] = [
    [{ device: 'zt0', addresses: ['100.64.0.1'], routes: [] }, /invalid address "100\.64\.0\.1"/],
    [{ device: 'zt0', addresses: ['100.64.0.1/33'], routes: [] }, /invalid address/],
    [{ device: 'zt0', addresses: [], routes: ['10.0.0.0/x'] }, /invalid route "10\.0\.0\.0\/x"/],
    [{ device: 'zt0', addresses: [], routes: ['fe80::1%eth0/64'] }, /invalid route/],
    [{ device: 'zt0', addresses: [], routes: ['host.example/24'] }, /invalid route/],
    [{ device: 'zt0; rm -rf /', addresses: [], routes: [] }, /invalid device name/],
    [{ device: 'averyveryverylongname', addresses: [], routes: [] }, /invalid device name/],
    [{ device: 'zt%d', addresses: [], routes: [] }, /the name the kernel chose/],
    [{ device: 'zt0', mtu: 40, addresses: [], routes: [] }, /invalid MTU 40/],
    [{ device: 'zt0', netns: '../etc', addresses: [], routes: [] }, /namespace/],
    [{ device: 'zt0', netnsOnly: '-all', addresses: [], routes: [] }, /invalid network namespace name "-all"/],
  ];
  for (const [plan, message] of bad) {
    assert.throws(() => planTunNetwork(plan), (err: EdgeError) => err.code === 'ERR_TUN' && message.test(err.message), JSON.stringify(plan));
  }
});

test('parseCidr: RFC 5952 text for IPv6 networks, host bits cleared', () => {
  assert.equal(parseCidr('2001:DB8:0:0:0:0:0:1/32', 'route').network, '2001:db8::/32');
  assert.equal(parseCidr('::ffff:10.1.2.3/120', 'route').network, '::ffff:a01:200/120');
  assert.equal(parseCidr('1:0:0:2:0:0:0:3/128', 'route').network, '1:0:0:2::3/128');
  assert.equal(parseCidr('1:0:0:2:0:0:3:4/128', 'route').network, '1::2:0:0:3:4/128');
  assert.equal(parseCidr('::/0', 'route').network, '::/0');
  assert.equal(parseCidr('1:2:3:4:5:6:7:8/127', 'route').network, '1:2:3:4:5:6:7:8/127');
  assert.equal(parseCidr('255.255.255.255/1', 'route').network, '128.0.0.0/1');
  assert.equal(parseCidr('10.1.2.3/32', 'route').family, 4);
});

/**
 * A scripted `ip`: records every call and answers from `state`, with the
 * messages iproute2 6.1 prints (checked by hand on this kernel).
 */
function fakeIp(): { run: IpRunner; calls: string[]; addrs: Set<string>; routes: Map<string, string>; failOn: Set<string> } {
  const calls: string[] = [];
  const addrs = new Set<string>();
  const routes = new Map<string, string>();
  const failOn = new Set<string>();
  const fail = (args: readonly string[], stderr: string): Promise<never> =>
    Promise.reject(new EdgeError('ERR_TUN', `\`ip ${args.join(' ')}\` failed: ${stderr}`, { details: { stderr } }));
  const run: IpRunner = (args) => {
    const line = args.join(' ');
    calls.push(line);
    if (failOn.has(line)) return fail(args, 'Error: something unexpected.');
    const [obj, verb, target] = args;
    if (obj === 'addr' && verb === 'add') {
      if (addrs.has(target!)) return fail(args, 'Error: ipv4: Address already assigned.');
      addrs.add(target!);
    } else if (obj === 'addr' && verb === 'del') {
      if (!addrs.delete(target!)) return fail(args, 'Error: ipv4: Address not found.');
    } else if (obj === 'route' && verb === 'add') {
      if (routes.has(target!)) return fail(args, 'RTNETLINK answers: File exists');
      routes.set(target!, args[4]!);
    } else if (obj === 'route' && verb === 'del') {
      if (!routes.delete(target!)) return fail(args, 'RTNETLINK answers: No such process');
    } else if (obj === 'route' && verb === 'show') {
      const net = args[3]!;
      return Promise.resolve(routes.has(net) ? `${net} dev ${routes.get(net)} scope link\n` : '');
    }
    return Promise.resolve('');
  };
  return { run, calls, addrs, routes, failOn };
}

const PLAN = { device: 'zt0', mtu: 1420, addresses: ['100.64.0.1/10'], routes: ['10.20.0.0/16', '10.30.0.0/16'] };

test('netconf: apply records what it added; undo removes exactly that, newest first; twice is a no-op', async () => {
  const ip = fakeIp();
  const net = new TunNetconf({ run: ip.run });
  await net.apply(PLAN);
  assert.deepEqual(net.added.map((s) => s.kind), ['address', 'route', 'route']);
  assert.deepEqual([...ip.addrs], ['100.64.0.1/10']);
  ip.calls.length = 0;
  await net.undo();
  assert.deepEqual(ip.calls, ['route del 10.30.0.0/16 dev zt0', 'route del 10.20.0.0/16 dev zt0', 'addr del 100.64.0.1/10 dev zt0']);
  assert.equal(ip.addrs.size + ip.routes.size, 0);
  ip.calls.length = 0;
  await net.undo();
  assert.deepEqual(ip.calls, []);
});

test('netconf: successive applies (routes for new services) accumulate; a failed one rolls back only itself', async () => {
  const ip = fakeIp();
  const net = new TunNetconf({ run: ip.run });
  await net.apply(PLAN);
  await net.apply({ device: 'zt0', addresses: [], routes: ['10.40.0.0/16'] });
  ip.failOn.add('route add 10.60.0.0/16 dev zt0');
  await assert.rejects(net.apply({ device: 'zt0', addresses: [], routes: ['10.50.0.0/16', '10.60.0.0/16'] }), /10\.60\.0\.0\/16/);
  assert.deepEqual([...ip.routes.keys()], ['10.20.0.0/16', '10.30.0.0/16', '10.40.0.0/16']);
  ip.calls.length = 0;
  await net.undo();
  assert.deepEqual(ip.calls, ['route del 10.40.0.0/16 dev zt0', 'route del 10.30.0.0/16 dev zt0', 'route del 10.20.0.0/16 dev zt0', 'addr del 100.64.0.1/10 dev zt0']);
});

test('netconf: undo counts what is already gone as removed', async () => {
  const ip = fakeIp();
  const net = new TunNetconf({ run: ip.run });
  await net.apply(PLAN);
  ip.routes.delete('10.20.0.0/16'); // removed by hand
  ip.addrs.clear(); // device deleted
  await net.undo();
  assert.deepEqual(net.added, []);
  assert.equal(ip.routes.size, 0);
});

test('netconf: an undo step that fails is kept for a retry, the others still run, the error names the command', async () => {
  const ip = fakeIp();
  const net = new TunNetconf({ run: ip.run });
  await net.apply(PLAN);
  ip.failOn.add('route del 10.30.0.0/16 dev zt0');
  await assert.rejects(net.undo(), (err: EdgeError) => err.code === 'ERR_TUN' && err.message.includes('`ip route del 10.30.0.0/16 dev zt0` failed: Error: something unexpected.'));
  assert.deepEqual(net.added.map((s) => s.args.join(' ')), ['route add 10.30.0.0/16 dev zt0']);
  assert.deepEqual([...ip.routes.keys()], ['10.30.0.0/16']);
  ip.failOn.clear();
  await net.undo();
  assert.deepEqual(net.added, []);
  assert.equal(ip.routes.size, 0);
});

test('netconf: a failing step rolls back what this apply added, then throws', async () => {
  const ip = fakeIp();
  const net = new TunNetconf({ run: ip.run });
  ip.failOn.add('route add 10.30.0.0/16 dev zt0');
  await assert.rejects(net.apply(PLAN), /`ip route add 10\.30\.0\.0\/16 dev zt0` failed/);
  assert.deepEqual(net.added, []);
  assert.equal(ip.addrs.size + ip.routes.size, 0, 'the address and first route were removed again');
});

test('netconf: an address already present is not ours: kept through undo', async () => {
  const ip = fakeIp();
  ip.addrs.add('100.64.0.1/10');
  const net = new TunNetconf({ run: ip.run });
  await net.apply(PLAN);
  assert.deepEqual(net.added.map((s) => s.kind), ['route', 'route']);
  await net.undo();
  assert.deepEqual([...ip.addrs], ['100.64.0.1/10']);
});

test('netconf: an existing route into our device is accepted (not recorded); one elsewhere is a conflict', async () => {
  const ip = fakeIp();
  ip.routes.set('10.20.0.0/16', 'zt0');
  const net = new TunNetconf({ run: ip.run });
  await net.apply(PLAN);
  assert.deepEqual(net.added.map((s) => s.args.join(' ')), ['addr add 100.64.0.1/10 dev zt0', 'route add 10.30.0.0/16 dev zt0']);
  await net.undo();
  assert.deepEqual([...ip.routes.keys()], ['10.20.0.0/16']);

  const other = fakeIp();
  other.routes.set('10.30.0.0/16', 'eth1');
  const net2 = new TunNetconf({ run: other.run });
  await assert.rejects(net2.apply(PLAN), (err: EdgeError) => err.code === 'ERR_TUN'
    && /a route for 10\.30\.0\.0\/16 already exists and does not go into zt0 \(10\.30\.0\.0\/16 dev eth1/.test(err.message));
  assert.deepEqual([...other.routes.keys()], ['10.30.0.0/16'], 'the foreign route is untouched');
  assert.equal(other.addrs.size, 0, 'rolled back');
});

test('execIp: runs without a shell and reports stderr, a missing binary, and a non-zero exit', async () => {
  // /bin/sh stands in for ip: its arguments arrive as given, never re-parsed.
  const sh = execIp('/bin/sh');
  assert.equal(await sh(['-c', 'echo "$0"', 'a;b $(x)']), 'a;b $(x)\n');
  await assert.rejects(sh(['-c', 'echo "RTNETLINK answers: File exists" >&2; exit 2']),
    (err: EdgeError) => err.code === 'ERR_TUN' && err.message.endsWith('failed: RTNETLINK answers: File exists') && err.details?.['stderr'] === 'RTNETLINK answers: File exists');
  await assert.rejects(execIp('/nonexistent/ip')(['link']), (err: EdgeError) => err.code === 'ERR_TUN' && /ip command was not found/.test(err.message));
  await assert.rejects(sh(['-c', 'exit 3']), (err: EdgeError) => err.code === 'ERR_TUN' && /Command failed/.test(err.message));
});
