/**
 * The tun-mode packet shell (src/router/tun-intercept.ts) in one process,
 * without root: a TunIntercept over one end of a memory TUN pair, a device
 * on the other end (a second TcpTable doing active opens, plus hand-built
 * UDP, ICMP and DNS packets), and a fake overlay dialer that accepts into
 * in-memory far ends (echo, sink, scripted writers) or refuses with a code.
 * The harness is tun-intercept-harness.ts; the kernel-backed twin of these
 * tests is test/e2e/tun-overlay.test.ts.
 *
 * Covered: the TCP handshake ordering against the dial (RFC 9293 §3.10.7.2,
 * refusals as RST|ACK per §3.10.7.1), echo and half-close byte for byte,
 * window-based flow control with a stalled far end (§3.8.6), resets both
 * ways, connection limits; UDP flows per 4-tuple, tombstones, idle ends, ICMP
 * port unreachable (RFC 792, RFC 1812 §4.3.2); DNS over UDP and TCP at the
 * in-stack address (RFC 7766); ICMP echo (RFC 792); malformed input counted
 * by reason (fast-check); virtio_net_hdr with TSO both ways; 2 % loss with
 * reordering.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { CircuitEnd, CircuitError } from '../../src/router/mux.js';
import { RecordDecoder, recordHeader } from '../../src/router/datagram.js';
import { TcpFlags, TcpState } from '../../src/stack/tcp/index.js';
import { IpProtocol, VNET_HDR_BYTES, internetChecksum, ipv4PseudoSum, ipv4ToString, parseIpv4Address } from '../../src/wire/index.js';
import type { CircuitStream } from '../../src/router/mux.js';
import {
  CIDR_IP, DEVICE_IP, DNS_IP, OUTSIDE_IP, Rig, SVC_IP, Sink, TUN_IP,
  chunks, classified, echo, icmpPacket, patternBytes, sleep, stateOf, tcpPacket, udpPacket, waitFor,
  type DeviceConn,
} from './tun-intercept-harness.js';

const { SYN, ACK, RST, FIN, PSH } = TcpFlags;

/** Runs `body` with a fresh rig and always tears it down. */
async function withRig(opts: ConstructorParameters<typeof Rig>[0], body: (rig: Rig) => Promise<void>): Promise<void> {
  const rig = new Rig(opts);
  try {
    await body(rig);
  } finally {
    rig.close();
  }
}

/** Sends `data` from the device in 16 KiB writes, then FIN when `end`. */
function upload(d: DeviceConn, data: Buffer, end = false): void {
  for (const c of chunks(data, 16 * 1024)) d.send(c);
  if (end) d.end();
}

async function closedNormally(d: DeviceConn, what: string): Promise<void> {
  await waitFor(() => d.closeReason !== undefined, `${what}: close`, 5000, () => stateOf(d));
  assert.equal(d.closeReason, 'normal', `${what}: closed normally`);
  assert.equal(d.ended, true, `${what}: the device saw FIN`);
}

// ---- TCP ------------------------------------------------------------------------------

test('tcp: a SYN to an intercepted address dials first; the SYN-ACK goes out only once the dial is accepted', async () => {
  await withRig({}, async (rig) => {
    const d = rig.device.connect(SVC_IP, 80);
    await waitFor(() => rig.dials.length === 1, 'the dial');
    const dial = rig.dialer.last();
    assert.deepEqual(dial.req, { service: 'web', identity: 'router-1', dstAddress: '10.20.0.7', dstPort: 80 });
    await sleep(30);
    assert.equal(d.opened, false, 'the device is still connecting');
    assert.deepEqual(rig.device.segmentsTo(d.conn.localPort), [], 'nothing answered the SYN while the dial is pending');
    assert.equal(rig.shellConn(d)?.state, TcpState.PENDING);

    dial.accept(echo);
    await waitFor(() => d.opened, 'the handshake');
    const first = rig.device.segmentsTo(d.conn.localPort)[0]!;
    assert.equal(first.flags, SYN | ACK);
    assert.equal(first.src, SVC_IP, 'the SYN-ACK comes from the address the device dialled');
    d.send(Buffer.from('hello through the overlay'));
    await waitFor(() => d.receivedBytes === 25, 'the echo');
    assert.equal(d.data.toString(), 'hello through the overlay');
    d.end();
    await closedNormally(d, 'echo');
    assert.equal(rig.shell.counters.tcpNoService + rig.shell.counters.tcpDialRefused, 0);
    rig.assertClean();
  });
});

test('tcp: a refused dial is RST|ACK to the device ("connection refused"), whether refused at once or later', async () => {
  await withRig({}, async (rig) => {
    rig.dialer.policy = (dial) => dial.refuse(CircuitError.DENIED, 'policy says no');
    const now = rig.device.connect(SVC_IP, 80);
    await waitFor(() => now.closeReason !== undefined, 'the synchronous refusal');

    rig.dialer.policy = () => undefined;
    const later = rig.device.connect(SVC_IP, 80);
    await waitFor(() => rig.dials.length === 2, 'the second dial');
    await sleep(10);
    assert.equal(later.closeReason, undefined, 'still waiting for the far end');
    rig.dialer.last().refuse(CircuitError.CONNECT_FAILED, 'connect ECONNREFUSED');
    await waitFor(() => later.closeReason !== undefined, 'the later refusal');

    for (const d of [now, later]) {
      assert.equal(d.closeReason, 'reset');
      assert.equal(d.opened, false);
      const segs = rig.device.segmentsTo(d.conn.localPort);
      assert.equal(segs.length, 1, 'one segment: the RST');
      assert.equal(segs[0]!.flags, RST | ACK);
    }
    assert.equal(rig.shell.counters.tcpDialRefused, 2);
    assert.equal(rig.shell.tcp.size, 0, 'refused connections are not kept');
    rig.assertClean();
  });
});

test('tcp: a SYN to an address or port nothing intercepts is reset without a dial', async () => {
  await withRig({}, async (rig) => {
    const outside = rig.device.connect(OUTSIDE_IP, 80);
    const wrongPort = rig.device.connect(SVC_IP, 81);
    await waitFor(() => outside.closeReason !== undefined && wrongPort.closeReason !== undefined, 'both resets');
    assert.equal(outside.closeReason, 'reset');
    assert.equal(wrongPort.closeReason, 'reset');
    assert.equal(rig.device.segmentsTo(outside.conn.localPort)[0]!.flags, RST | ACK);
    assert.equal(rig.dials.length, 0);
    assert.equal(rig.shell.counters.tcpNoService, 2);
    rig.assertClean();
  });
});

/** Resolves `name` through the in-stack DNS address over UDP; returns the rcode and the A records. */
async function resolve(rig: Rig, name: string, srcPort: number, type: 'A' | 'AAAA' = 'A'): Promise<{ rcode: string | undefined; addresses: string[]; id: number }> {
  const id = (srcPort * 7) & 0xffff;
  const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });
  const before = rig.device.datagramsTo(srcPort).length;
  rig.device.sendUdp(srcPort, DNS_IP, 53, q);
  await waitFor(() => rig.device.datagramsTo(srcPort).length > before, `the DNS answer for ${name}`);
  const d = rig.device.datagramsTo(srcPort)[before]!;
  assert.equal(d.src, DNS_IP, 'the answer comes from the DNS address');
  assert.equal(d.srcPort, 53);
  const r = dnsPacket.decode(d.payload);
  const addresses = (r.answers ?? []).filter((a) => a.type === 'A').map((a) => a.data as string);
  return { rcode: r.rcode, addresses, id: r.id ?? -1 };
}

test('tcp: the dial carries the original destination: the hostname behind a pool address, the IP otherwise, and the port', async () => {
  await withRig({}, async (rig) => {
    const db = await resolve(rig, 'db.plant.internal', 6000);
    const plc = await resolve(rig, 'press-7.plc.internal', 6001);
    const dbIp = parseIpv4Address(db.addresses[0]!)!;
    const plcIp = parseIpv4Address(plc.addresses[0]!)!;
    rig.device.connect(dbIp, 5432);
    rig.device.connect(plcIp, 502);
    rig.device.connect(CIDR_IP, 8080);
    const wrong = rig.device.connect(dbIp, 80); // db is intercepted on 5432 only
    await waitFor(() => rig.dials.length === 3 && wrong.closeReason !== undefined, 'three dials and one reset');
    assert.deepEqual(rig.dials.map((d) => d.req), [
      { service: 'db', identity: 'router-1', dstAddress: 'db.plant.internal', dstPort: 5432 },
      { service: 'plc', identity: 'router-1', dstAddress: 'press-7.plc.internal', dstPort: 502 },
      { service: 'lab', identity: 'router-1', dstAddress: '10.30.1.2', dstPort: 8080 },
    ]);
    assert.equal(wrong.closeReason, 'reset');
    for (const d of rig.dials) d.refuse(CircuitError.NO_ROUTE, 'test over');
    rig.assertClean();
  });
});

test('tcp: 4 MB echoed byte for byte both ways, then a normal close', async () => {
  await withRig({}, async (rig) => {
    rig.device.trace = false;
    rig.dialer.policy = (dial) => dial.accept(echo);
    const data = patternBytes(4 * 1024 * 1024, 11);
    const d = rig.device.connect(SVC_IP, 80);
    upload(d, data, true);
    await waitFor(() => d.receivedBytes >= data.length, 'the echo of 4 MB', 10_000, () => `${d.receivedBytes} bytes back`);
    assert.ok(d.data.equals(data), 'the echo is byte-exact');
    await closedNormally(d, '4 MB echo');
    assert.equal(rig.shell.tcp.counters.retransmits, 0, 'a lossless link needs no retransmission');
    rig.assertClean();
  });
});

test('tcp: half-close: the device sends FIN, the far end keeps sending, then ends', async () => {
  await withRig({}, async (rig) => {
    let far: Sink | undefined;
    rig.dialer.policy = (dial) => dial.accept((s) => { far = new Sink(s); });
    const up = patternBytes(300_000, 3);
    const down = patternBytes(200_000, 4);
    const d = rig.device.connect(SVC_IP, 80);
    upload(d, up, true);
    await waitFor(() => far !== undefined && far.ended, 'the device FIN at the far end');
    assert.ok(far!.data.equals(up), 'the far end got every byte before the end');
    await waitFor(() => d.stateName === 'FIN-WAIT-2', 'FIN-WAIT-2', 3000, () => d.stateName);

    far!.stream.write(down.subarray(0, 100_000));
    await waitFor(() => d.receivedBytes === 100_000, 'the first half after the device FIN');
    assert.equal(d.stateName, 'FIN-WAIT-2', 'the device is half-closed and still receiving');
    assert.equal(d.ended, false);
    await sleep(20);
    far!.stream.end(down.subarray(100_000));
    await closedNormally(d, 'half-close');
    assert.ok(d.data.equals(down), 'everything the far end sent after the FIN arrived');
    rig.assertClean();
  });
});

test('tcp: a far end that stops reading closes the device window with nothing lost; reading again resumes', async () => {
  await withRig({}, async (rig) => {
    let far: Sink | undefined;
    rig.dialer.policy = (dial) => dial.accept((s) => { far = new Sink(s, false); });
    const data = patternBytes(2 * 1024 * 1024, 5);
    const d = rig.device.connect(SVC_IP, 80);
    upload(d, data, true);
    await waitFor(() => d.opened && d.conn.sndWnd === 0 && d.conn.queuedBytes > 0, 'a closed window', 5000,
      () => `sndWnd ${d.conn.sndWnd}, queued ${d.conn.queuedBytes}`);
    const shellConn = rig.shellConn(d)!;
    // What is left of the window is less than one unit of the scaled field (RFC 7323 §2.3): the device reads 0.
    assert.ok(shellConn.rcvWnd < 1 << shellConn.rcvShift, `the shell's window is shut (${shellConn.rcvWnd} bytes left)`);
    const held = far!.stream.readableLength;
    const sent = rig.shell.tcp.counters.bytesDelivered;
    // Stalled for a while: the device probes the window (RFC 9293 §3.8.6.1) and the connection lives on.
    await sleep(400);
    assert.equal(far!.bytes, 0, 'the far end read nothing');
    assert.equal(rig.shell.tcp.counters.bytesDelivered, sent, 'nothing was taken past the window');
    assert.ok(held <= 64 * 1024 + shellConn.unconsumedBytes + 2 * 1460, `the flow holds a bounded amount (${held} bytes)`);
    assert.equal(shellConn.state, TcpState.ESTABLISHED);
    assert.equal(d.closeReason, undefined);

    far!.resume();
    await waitFor(() => far!.bytes === data.length && far!.ended, 'every byte after the window reopened', 10_000, () => `${far!.bytes} bytes`);
    assert.ok(far!.data.equals(data), 'nothing lost or reordered');
    far!.stream.end();
    await closedNormally(d, 'flow control');
    rig.assertClean();
  });
});

test('tcp: a circuit destroyed with an error resets the device; a device reset errors the circuit', async () => {
  await withRig({}, async (rig) => {
    rig.dialer.policy = (dial) => dial.accept(echo);
    const a = rig.device.connect(SVC_IP, 80);
    a.send(Buffer.from('ping'));
    await waitFor(() => a.receivedBytes === 4, 'the echo');
    rig.dials[0]!.stream.destroy(new Error('link down'));
    await waitFor(() => a.closeReason !== undefined, 'the RST');
    assert.equal(a.closeReason, 'reset');
    const last = rig.device.segmentsTo(a.conn.localPort).at(-1)!;
    assert.equal(last.flags & RST, RST);

    const b = rig.device.connect(SVC_IP, 80);
    b.send(Buffer.from('pong'));
    await waitFor(() => b.receivedBytes === 4, 'the second echo');
    b.conn.abort(performance.now());
    const dial = rig.dials[1]!;
    await waitFor(() => dial.stream.destroyed, 'the circuit ended');
    assert.equal(dial.errors.length, 1);
    assert.ok(dial.errors[0] instanceof CircuitEnd);
    assert.equal((dial.errors[0] as CircuitEnd).code, CircuitError.RESET_BY_PEER);
    await waitFor(() => rig.shell.tcp.size === 0, 'both connections released');
    rig.assertClean();
  });
});

test('tcp: maxTcpFlows is enforced (pending connections count), and slots free up', async () => {
  await withRig({ maxTcpFlows: 2 }, async (rig) => {
    const a = rig.device.connect(SVC_IP, 80);
    const b = rig.device.connect(SVC_IP, 80);
    await waitFor(() => rig.dials.length === 2, 'two dials');
    const c = rig.device.connect(SVC_IP, 80);
    await waitFor(() => c.closeReason !== undefined, 'the third reset');
    assert.equal(c.closeReason, 'reset');
    assert.equal(rig.shell.tcp.counters.drops.connectionLimit, 1);
    assert.equal(rig.dials.length, 2, 'no dial beyond the limit');
    rig.dials[0]!.refuse(CircuitError.REFUSED, 'done');
    await waitFor(() => a.closeReason !== undefined, 'a refused');
    const d = rig.device.connect(SVC_IP, 80);
    await waitFor(() => rig.dials.length === 3, 'a dial in the freed slot');
    rig.dials[1]!.refuse(CircuitError.REFUSED, 'done');
    rig.dials[2]!.refuse(CircuitError.REFUSED, 'done');
    await waitFor(() => b.closeReason !== undefined && d.closeReason !== undefined, 'all refused');
    rig.assertClean();
  });
});
