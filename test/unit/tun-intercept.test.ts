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
 * window-based flow control both ways (§3.8.6), resets both ways (a cut
 * circuit is RST, never a FIN that passes for a complete transfer), bytes
 * left unread at a normal close, pending timeouts, connection limits; UDP flows per 4-tuple, tombstones, idle ends, ICMP
 * port unreachable (RFC 792, RFC 1812 §4.3.2); DNS over UDP and TCP at the
 * in-stack address (RFC 7766); ICMP echo (RFC 792); malformed input counted
 * by reason (fast-check); virtio_net_hdr with TSO both ways; 2 % loss with
 * reordering.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { CircuitEnd, CircuitError, type CircuitStream } from '../../src/router/mux.js';
import { RecordDecoder, recordHeader } from '../../src/router/datagram.js';
import { TcpFlags, TcpState } from '../../src/stack/tcp/index.js';
import { IpProtocol, VNET_HDR_BYTES, internetChecksum, ipv4PseudoSum, ipv4ToString, parseIpv4Address, refreshIpv4Checksum } from '../../src/wire/index.js';
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

/** The device uploads `bytes` to an echoing far end and then ends: everything must come back byte for byte, then a normal close. */
async function echoExchange(rig: Rig, bytes: number, seed: number, what: string, timeoutMs: number): Promise<void> {
  rig.device.trace = false;
  rig.dialer.policy = (dial) => dial.accept(echo);
  const data = patternBytes(bytes, seed);
  const d = rig.device.connect(SVC_IP, 80);
  upload(d, data, true);
  await waitFor(() => d.receivedBytes >= data.length, `${what}: the echo of ${bytes} bytes`, timeoutMs, () => `${d.receivedBytes} bytes back`);
  assert.ok(d.data.equals(data), `${what}: the echo is byte-exact`);
  await closedNormally(d, what);
}

/** Far end of a UDP circuit: decodes the records into datagrams, sends datagrams back as records. */
class UdpFar {
  readonly datagrams: Buffer[] = [];
  ended = false;
  private readonly decoder = new RecordDecoder();

  constructor(readonly stream: CircuitStream) {
    stream.on('data', (chunk: Buffer) => this.decoder.push(chunk, this));
    stream.on('end', () => { this.ended = true; });
    stream.resume();
  }

  onRecord(payload: Buffer): void {
    this.datagrams.push(Buffer.from(payload));
  }

  send(payload: Buffer): void {
    this.stream.write(recordHeader(payload.length));
    if (payload.length > 0) this.stream.write(payload);
  }
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
    await echoExchange(rig, 4 * 1024 * 1024, 11, 'plain echo', 10_000);
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

test('tcp: the far end ends first; what the device sends before its FIN waits in the flow until read, not dropped at the close', async () => {
  await withRig({}, async (rig) => {
    let far: Sink | undefined;
    // Accepted later, as over a link; the far end has nothing to say and reads only when the test lets it.
    rig.dialer.policy = (dial) => setTimeout(() => dial.accept((s) => { far = new Sink(s, false); s.end(); }), 1);
    const up = patternBytes(200_000, 6);
    const d = rig.device.connect(SVC_IP, 80);
    await waitFor(() => d.ended, 'the far end FIN at the device');
    upload(d, up, true);
    await closedNormally(d, 'far end first');
    assert.equal(far!.bytes, 0, 'the far end has read nothing yet');
    assert.equal(far!.stream.destroyed, false, 'the flow outlives the TCP connection while it holds unread bytes');
    far!.resume();
    await waitFor(() => far!.ended, 'the end of the stream at the far end');
    assert.ok(far!.data.equals(up), 'every byte the device saw acknowledged reached the far end');
    await waitFor(() => far!.stream.destroyed, 'the flow closed once read');
    rig.assertClean();
  });
});

test('tcp: a far end accepted from inside the dial may speak first and end at once (a banner, then FIN)', async () => {
  await withRig({}, async (rig) => {
    rig.dialer.policy = (dial) => dial.accept((s) => { s.resume(); s.end('220 ztedge ESMTP\r\n'); });
    const d = rig.device.connect(SVC_IP, 80);
    await waitFor(() => d.ended, 'the FIN after the banner');
    assert.equal(d.opened, true, 'the handshake completed (no RST)');
    assert.equal(d.data.toString(), '220 ztedge ESMTP\r\n');
    d.end();
    await closedNormally(d, 'banner');
    rig.assertClean();
  });
});

test('tcp: a device that stops reading holds the far end writes back (write() false, then drain), with nothing lost', async () => {
  await withRig({}, async (rig) => {
    let far: CircuitStream | undefined;
    rig.dialer.policy = (dial) => dial.accept((s) => { far = s; s.resume(); });
    const d = rig.device.connect(SVC_IP, 80);
    d.autoConsume = false;
    await waitFor(() => far !== undefined && d.opened, 'the connection');
    const down = patternBytes(1024 * 1024, 7);
    let blocked = 0;
    let offset = 0;
    const pump = (): void => {
      while (offset < down.length) {
        const piece = down.subarray(offset, offset + 32 * 1024);
        offset += piece.length;
        if (!far!.write(piece)) {
          blocked++;
          far!.once('drain', pump);
          return;
        }
      }
      far!.end();
    };
    pump();
    const shellConn = rig.shellConn(d)!;
    await waitFor(() => shellConn.sndWnd === 0 && d.receivedBytes > 0, 'the device window closed', 5000, () => `sndWnd ${shellConn.sndWnd}`);
    await sleep(100);
    assert.ok(blocked > 0, 'the far end was told to wait');
    assert.ok(offset < down.length, 'and it did: it has not written everything');
    assert.ok(far!.writableLength <= 64 * 1024, `the flow buffers little (${far!.writableLength} bytes)`);
    assert.ok(shellConn.queuedBytes <= rig.shell.tcp.config.sendBufferBytes);
    d.autoConsume = true;
    d.consumeAll();
    await waitFor(() => d.ended, 'the rest after the device read again', 10_000, () => `${d.receivedBytes} bytes`);
    assert.ok(d.data.equals(down), 'byte-exact');
    d.end();
    await closedNormally(d, 'device backpressure');
    rig.assertClean();
  });
});

test('tcp: a dial not answered within pendingTimeoutMs is refused (RST), and a late answer changes nothing', async () => {
  await withRig({ shellTcp: { pendingTimeoutMs: 60 } }, async (rig) => {
    const d = rig.device.connect(SVC_IP, 80);
    await waitFor(() => d.closeReason !== undefined, 'the refusal after the pending timeout');
    assert.equal(d.closeReason, 'reset');
    const dial = rig.dialer.last();
    await waitFor(() => dial.stream.destroyed, 'the captured stream ended');
    dial.accept(echo); // the far end answers too late
    await sleep(20);
    assert.equal(rig.shell.tcp.size, 0);
    assert.equal(rig.device.segmentsTo(d.conn.localPort).length, 1, 'only the RST went to the device');
    rig.assertClean();
  });
});

test('tcp and udp: stop() resets every TCP flow and ends every UDP flow', async () => {
  const rig = new Rig();
  try {
    const farUdp: UdpFar[] = [];
    rig.dialer.policy = (dial) => dial.accept((s) => { if (dial.req.protocol === 'udp') farUdp.push(new UdpFar(s)); else echo(s); });
    const d = rig.device.connect(SVC_IP, 80);
    d.send(Buffer.from('x'));
    rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from('y'));
    await waitFor(() => d.receivedBytes === 1 && farUdp.length === 1 && farUdp[0]!.datagrams.length === 1, 'both flows up');
    rig.shell.stop();
    await waitFor(() => d.closeReason !== undefined, 'the RST');
    assert.equal(d.closeReason, 'reset');
    assert.ok(rig.dials.every((x) => x.stream.destroyed), 'every captured stream ended');
    assert.equal(rig.shell.tcp.size, 0);
    assert.equal(rig.shell.udpFlowCount, 0);
  } finally {
    rig.close();
  }
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

test('tcp: a circuit reset by the far router is RST to the device, never a FIN that passes for a complete transfer', async () => {
  await withRig({}, async (rig) => {
    let far: Sink | undefined;
    rig.dialer.policy = (dial) => dial.accept((s) => { far = new Sink(s); s.write(patternBytes(50_000, 2)); });
    const d = rig.device.connect(SVC_IP, 80);
    d.send(Buffer.from('request'));
    await waitFor(() => d.receivedBytes === 50_000 && far!.bytes === 7, 'a partial response');
    rig.dials[0]!.reset();
    await waitFor(() => d.closeReason !== undefined, 'the end of the device connection');
    assert.equal(d.closeReason, 'reset', 'truncation shows as a reset');
    assert.equal(d.ended, false, 'no FIN reached the device');
    rig.assertClean();
  });
});

test('tcp: device data arriving after the circuit went away (destroyed without an error) is answered with RST, not held forever', async () => {
  await withRig({}, async (rig) => {
    rig.dialer.policy = (dial) => dial.accept((s) => new Sink(s));
    const d = rig.device.connect(SVC_IP, 80);
    d.send(Buffer.from('first'));
    await waitFor(() => rig.dials.length === 1 && rig.shell.tcp.counters.bytesDelivered === 5, 'the first bytes');
    rig.dials[0]!.stream.destroy(); // as LinkMux does to every circuit of a link that closed
    await waitFor(() => d.ended, 'the FIN of the gone circuit');
    // The device keeps sending (a half-close from the far side): nobody can take these bytes any more.
    upload(d, patternBytes(600_000, 12));
    await waitFor(() => d.closeReason !== undefined, 'the end of the device connection', 5000, () => `${stateOf(d)}, sndWnd ${d.conn.sndWnd}`);
    assert.equal(d.closeReason, 'reset');
    await waitFor(() => rig.shell.tcp.size === 0, 'the connection released');
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

// ---- UDP ------------------------------------------------------------------------------

test('udp: one flow per 4-tuple, datagrams both ways with their boundaries kept', async () => {
  await withRig({}, async (rig) => {
    const far: UdpFar[] = [];
    // Accepted a little later, as a real dial is: what the device sent meanwhile waits in the circuit.
    rig.dialer.policy = (dial) => setTimeout(() => dial.accept((s) => far.push(new UdpFar(s))), 5);
    const sizes = [0, 1, 1400, 300, 1472];
    for (const n of sizes) rig.device.sendUdp(5000, SVC_IP, 9000, patternBytes(n, n + 1));
    rig.device.sendUdp(5001, SVC_IP, 9000, Buffer.from('other port'));
    rig.device.sendUdp(5000, SVC_IP, 9001, Buffer.from('other service port'));
    await waitFor(() => far.length === 3 && far[0]!.datagrams.length === sizes.length && far[1]!.datagrams.length === 1 && far[2]!.datagrams.length === 1,
      'three flows and their datagrams');
    assert.deepEqual(rig.dials.map((d) => d.req), [
      { service: 'sensor', identity: 'router-1', protocol: 'udp', dstAddress: '10.20.0.7', dstPort: 9000 },
      { service: 'sensor', identity: 'router-1', protocol: 'udp', dstAddress: '10.20.0.7', dstPort: 9000 },
      { service: 'sensor', identity: 'router-1', protocol: 'udp', dstAddress: '10.20.0.7', dstPort: 9001 },
    ]);
    assert.deepEqual(far[0]!.datagrams, sizes.map((n) => patternBytes(n, n + 1)), 'in order, each datagram whole');
    assert.equal(far[1]!.datagrams[0]!.toString(), 'other port');
    assert.equal(far[2]!.datagrams[0]!.toString(), 'other service port');
    assert.equal(rig.shell.udpFlowCount, 3);
    assert.equal(rig.shell.counters.udpFlowsOpened, 3);

    const back = [patternBytes(1200, 9), Buffer.alloc(0), Buffer.from('ok')];
    for (const b of back) far[0]!.send(b);
    far[2]!.send(Buffer.from('from 9001'));
    await waitFor(() => rig.device.datagramsTo(5000).length === 4, 'the replies');
    const got = rig.device.datagramsTo(5000);
    assert.deepEqual(got.filter((d) => d.srcPort === 9000).map((d) => d.payload), back, 'replies keep their boundaries');
    for (const d of got) {
      assert.equal(d.src, SVC_IP, 'replies come from the address the device sent to');
      assert.equal(d.dst, DEVICE_IP);
    }
    assert.equal(got.find((d) => d.srcPort === 9001)?.payload.toString(), 'from 9001');
    assert.deepEqual(rig.device.datagramsTo(5001), [], 'no cross-talk between flows');
    rig.assertClean();
  });
});

test('udp: a refused flow is a tombstone: datagrams dropped and counted, no dial per datagram, until it expires', async () => {
  await withRig({ udpIdleMs: 300 }, async (rig) => {
    rig.dialer.policy = (dial) => dial.refuse(CircuitError.DENIED, 'not for you');
    for (let i = 0; i < 5; i++) rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from(`datagram ${i}`));
    await waitFor(() => rig.shell.udpCounters.refusedDrops === 4, 'four dropped on the tombstone', 3000, () => JSON.stringify(rig.shell.udpCounters));
    assert.equal(rig.dials.length, 1, 'one dial for five datagrams');
    assert.equal(rig.shell.udpFlowCount, 1, 'the tombstone holds the 4-tuple');
    // The tombstone lasts min(idle, 5 s): then the device may try again.
    await waitFor(() => rig.shell.udpFlowCount === 0, 'the tombstone expired', 3000);
    rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from('again'));
    await waitFor(() => rig.dials.length === 2, 'a new dial after the tombstone');
    rig.assertClean();
  });
});

test('udp: maxUdpFlows is enforced; an idle flow ends (FIN to the far end) and frees its slot', async () => {
  await withRig({ maxUdpFlows: 2, udpIdleMs: 120 }, async (rig) => {
    const far: UdpFar[] = [];
    rig.dialer.policy = (dial) => dial.accept((s) => far.push(new UdpFar(s)));
    rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from('a'));
    rig.device.sendUdp(5001, SVC_IP, 9000, Buffer.from('b'));
    rig.device.sendUdp(5002, SVC_IP, 9000, Buffer.from('c'));
    await waitFor(() => rig.shell.counters.udpFlowLimit === 1, 'the third flow refused by the limit');
    assert.equal(rig.dials.length, 2);
    assert.equal(rig.shell.udpFlowCount, 2);

    await waitFor(() => far.length === 2 && far.every((f) => f.ended), 'both flows ended for idleness', 3000);
    assert.equal(rig.shell.udpCounters.idleTimeouts, 2);
    // The far ends never answer the FIN: the sweeper cuts them one tick later.
    await waitFor(() => rig.shell.udpFlowCount === 0, 'slots freed');
    rig.device.sendUdp(5002, SVC_IP, 9000, Buffer.from('c again'));
    await waitFor(() => far.length === 3 && far[2]!.datagrams.length === 1, 'a new flow in a freed slot');
    assert.equal(far[2]!.datagrams[0]!.toString(), 'c again');
    rig.assertClean();
  });
});

test('udp: a datagram to a port or address nothing intercepts gets ICMP port unreachable from the TUN address', async () => {
  await withRig({}, async (rig) => {
    rig.device.sendUdp(5000, SVC_IP, 9999, Buffer.from('nobody home'));
    rig.device.sendUdp(5001, OUTSIDE_IP, 9000, Buffer.from('nobody here either'));
    await waitFor(() => rig.device.icmp.length === 2, 'two ICMP errors');
    const ports = [9999, 9000];
    const dsts = [SVC_IP, OUTSIDE_IP];
    rig.device.icmp.forEach(({ ip, msg }, i) => {
      assert.equal(msg.type, 3, 'destination unreachable');
      assert.equal(msg.code, 3, 'port unreachable');
      assert.equal(ip.src, TUN_IP);
      assert.equal(ip.dst, DEVICE_IP);
      // The quote: the original IP header and the first 8 bytes of its UDP header (RFC 792).
      const q = msg.body;
      assert.equal(q.length, 28);
      assert.equal(q[9], IpProtocol.UDP);
      assert.equal(q.readUInt32BE(16), dsts[i]);
      assert.equal(q.readUInt16BE(20), 5000 + i);
      assert.equal(q.readUInt16BE(22), ports[i]);
    });
    assert.equal(rig.shell.counters.udpNoService, 2);
    assert.equal(rig.dials.length, 0);
    rig.assertClean();
  });
});

// ---- DNS in the stack ---------------------------------------------------------------

test('dns: a UDP query to the in-stack address gets a pool address for an intercepted name, REFUSED for others', async () => {
  await withRig({}, async (rig) => {
    const db = await resolve(rig, 'db.plant.internal', 6000);
    assert.equal(db.rcode, 'NOERROR');
    assert.equal(db.addresses.length, 1);
    const ip = parseIpv4Address(db.addresses[0]!)!;
    assert.ok(rig.dns.inPool(ip) && ip !== TUN_IP && ip !== DNS_IP, `${db.addresses[0]} is a pool address, not a reserved one`);
    assert.equal(rig.dns.nameOf(ip), 'db.plant.internal');
    const again = await resolve(rig, 'DB.plant.internal', 6001);
    assert.deepEqual(again.addresses, db.addresses, 'stable while in use, case-insensitive');
    const wild = await resolve(rig, 'a.b.plc.internal', 6002);
    assert.equal(wild.rcode, 'NOERROR');
    assert.notDeepEqual(wild.addresses, db.addresses);
    const other = await resolve(rig, 'example.com', 6003);
    assert.equal(other.rcode, 'REFUSED', 'no upstream: REFUSED');
    assert.deepEqual(other.addresses, []);
    assert.equal(rig.shell.counters.dnsQueries, 4);
    assert.equal(rig.dials.length, 0);
    rig.assertClean();
  });
});

test('dns: DNS over TCP to the in-stack address (RFC 7766): length-prefixed queries answered, then a normal close', async () => {
  await withRig({}, async (rig) => {
    const udp = await resolve(rig, 'web.plant.internal', 6000);
    const d = rig.device.connect(DNS_IP, 53);
    const framed = (id: number, name: string): Buffer => {
      const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(q.length);
      return Buffer.concat([prefix, q]);
    };
    // Two queries in one write, the second cut across two writes.
    const second = framed(2, 'nothing.example');
    d.send(Buffer.concat([framed(1, 'web.plant.internal'), second.subarray(0, 5)]));
    d.send(second.subarray(5));
    const replies: dnsPacket.Packet[] = [];
    await waitFor(() => {
      replies.length = 0;
      let b = d.data;
      while (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) {
        replies.push(dnsPacket.decode(b.subarray(2, 2 + b.readUInt16BE(0))));
        b = b.subarray(2 + b.readUInt16BE(0));
      }
      return replies.length === 2;
    }, 'two answers over TCP');
    const byId = new Map(replies.map((r) => [r.id, r]));
    assert.deepEqual(byId.get(1)!.answers!.map((a) => a.data), udp.addresses, 'the same address as over UDP');
    assert.equal(byId.get(2)!.rcode, 'REFUSED');
    d.end();
    await closedNormally(d, 'DNS over TCP');
    assert.equal(rig.shell.counters.dnsTcpConnections, 1);
    assert.equal(rig.dials.length, 0, 'DNS over TCP ends in the stack, no circuit');
    rig.assertClean();
  });
});

// ---- ICMP ------------------------------------------------------------------------------

test('icmp: echo to an intercepted address (IP, CIDR, pool, DNS) is answered; to others, or not an echo, ignored and counted', async () => {
  await withRig({}, async (rig) => {
    const pool = parseIpv4Address((await resolve(rig, 'db.plant.internal', 6000)).addresses[0]!)!;
    const data = patternBytes(56, 8);
    rig.device.sendEcho(OUTSIDE_IP, 7, 1, data);
    rig.device.sendEcho(SVC_IP, 7, 2, data, 13); // timestamp request: not an echo
    const targets = [SVC_IP, CIDR_IP, pool, DNS_IP];
    targets.forEach((dst, i) => rig.device.sendEcho(dst, 7, 10 + i, data));
    await waitFor(() => rig.device.icmp.length === targets.length, 'the echo replies');
    await sleep(10);
    assert.equal(rig.device.icmp.length, targets.length, 'nothing else answered');
    rig.device.icmp.forEach(({ ip, msg }, i) => {
      assert.equal(msg.type, 0, 'echo reply');
      assert.equal(ip.src, targets[i], `the reply comes from ${ipv4ToString(targets[i]!)}`);
      assert.equal(ip.dst, DEVICE_IP);
      assert.equal(msg.id, 7);
      assert.equal(msg.sequence, 10 + i);
      assert.ok(msg.body.equals(data), 'the data is echoed');
    });
    assert.equal(rig.shell.counters.icmpEchoReplies, targets.length);
    assert.equal(rig.shell.counters.icmpIgnored, 2);
    rig.assertClean();
  });
});

test('udp: a datagram arriving after the idle end (FIN sent, flow not yet cut) starts a new flow instead of being lost', async () => {
  await withRig({ udpIdleMs: 120 }, async (rig) => {
    const far: UdpFar[] = [];
    rig.dialer.policy = (dial) => dial.accept((s) => far.push(new UdpFar(s)));
    rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from('first'));
    await waitFor(() => far.length === 1 && far[0]!.ended, 'the idle end');
    // The sweeper cuts the flow one tick (30 ms here) after its FIN; this datagram comes before.
    rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from('second'));
    await waitFor(() => far.length === 2 && far[1]!.datagrams.length === 1, 'a new flow for the datagram', 1000,
      () => JSON.stringify(rig.shell.udpCounters));
    assert.equal(far[1]!.datagrams[0]!.toString(), 'second');
    assert.equal(rig.shell.udpCounters.closingDrops, 0);
    rig.assertClean();
  });
});

// ---- malformed input ----------------------------------------------------------------

/** Recomputes the TCP or UDP checksum of a (possibly edited) IPv4 packet, when its headers allow. */
function fixTransportChecksum(pkt: Buffer): Buffer {
  if (pkt.length < 20) return pkt;
  const ihl = (pkt[0]! & 0x0f) * 4;
  const total = Math.min(pkt.readUInt16BE(2), pkt.length);
  const protocol = pkt[9]!;
  const at = protocol === IpProtocol.TCP ? 16 : protocol === IpProtocol.UDP ? 6 : -1;
  const len = total - ihl;
  if (at < 0 || ihl < 20 || len < at + 2) return pkt;
  pkt.writeUInt16BE(0, ihl + at);
  pkt.writeUInt16BE(internetChecksum(pkt, ihl, len, ipv4PseudoSum(pkt.readUInt32BE(12), pkt.readUInt32BE(16), protocol, len)), ihl + at);
  return pkt;
}

/** Recomputes the IPv4 header checksum, when the header fits the buffer. */
function fixIpChecksum(pkt: Buffer): Buffer {
  if (pkt.length >= 20 && pkt[0]! >>> 4 === 4 && (pkt[0]! & 0x0f) >= 5 && (pkt[0]! & 0x0f) * 4 <= pkt.length) refreshIpv4Checksum(pkt, 0);
  return pkt;
}

const dnsQuery = dnsPacket.encode({ type: 'query', id: 5, questions: [{ name: 'db.plant.internal', type: 'A', class: 'IN' }] });

/** Well-formed packets of every kind the shell handles, as seeds for mutation. */
const VALID: readonly Buffer[] = [
  tcpPacket(SVC_IP, { dstPort: 80 }),
  tcpPacket(CIDR_IP, { dstPort: 22, options: { mss: 1460, windowScale: 7, sackPermitted: true, timestamps: [1, 0] } }),
  tcpPacket(SVC_IP, { dstPort: 80, flags: ACK | PSH, seq: 5, ack: 9, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') }),
  tcpPacket(SVC_IP, { dstPort: 80, flags: FIN | ACK }),
  tcpPacket(DNS_IP, { dstPort: 53 }),
  udpPacket(SVC_IP, 9000, Buffer.from('reading=21.5')),
  udpPacket(DNS_IP, 53, dnsQuery),
  udpPacket(OUTSIDE_IP, 1234, Buffer.from('x')),
  icmpPacket(DEVICE_IP, SVC_IP, 8, 1, 1, Buffer.from('ping')),
];

test('malformed: each kind of bad packet is counted by its reason, never thrown', async () => {
  await withRig({}, async (rig) => {
    const inject = (p: Buffer): void => rig.shellTun.inject(p);
    const syn = (): Buffer => tcpPacket(SVC_IP, { dstPort: 80 });
    inject(syn().subarray(0, 12)); // truncated IP header
    inject(syn().subarray(0, 30)); // Total Length past the buffer
    const badIpSum = syn();
    badIpSum[10]! ^= 0xff;
    inject(badIpSum);
    const badTcpSum = tcpPacket(SVC_IP, { dstPort: 80, flags: ACK, payload: Buffer.from('data') });
    badTcpSum[badTcpSum.length - 1]! ^= 1;
    inject(badTcpSum);
    const fragment = syn();
    fragment.writeUInt16BE(0x2000, 6); // MF
    inject(fixIpChecksum(fragment));
    const laterFragment = syn();
    laterFragment.writeUInt16BE(0x0010, 6); // offset 128
    inject(fixIpChecksum(laterFragment));
    const badOptions = tcpPacket(SVC_IP, { dstPort: 80, options: { mss: 1460 } });
    badOptions[41] = 1; // MSS option length 1 (RFC 9293 §3.2 MUST-7: must not crash)
    inject(fixTransportChecksum(badOptions));
    const badIhl = syn();
    badIhl[0] = 0x44;
    inject(badIhl);
    const badUdpLength = udpPacket(SVC_IP, 9000, Buffer.from('abc'));
    badUdpLength.writeUInt16BE(200, 24);
    inject(badUdpLength);
    const shortIcmp = icmpPacket(DEVICE_IP, SVC_IP, 8, 1, 1, Buffer.alloc(0)).subarray(0, 24);
    shortIcmp.writeUInt16BE(24, 2);
    inject(fixIpChecksum(shortIcmp));
    const ipv6 = Buffer.alloc(60);
    ipv6[0] = 0x60;
    ipv6[6] = IpProtocol.TCP;
    ipv6.writeUInt16BE(20, 4);
    inject(ipv6);
    inject(Buffer.alloc(0));
    const gre = udpPacket(SVC_IP, 9000, Buffer.from('tunnel'));
    gre[9] = 47;
    inject(fixIpChecksum(gre));

    assert.deepEqual(rig.shell.counters.wireDrops, {
      'short': 2, 'bad-total-length': 1, 'bad-checksum': 2, 'fragment': 2, 'bad-options': 1, 'bad-header-length': 1, 'bad-length': 1,
    });
    assert.equal(rig.shell.counters.notIpv4, 2, 'IPv6 and an empty read');
    assert.equal(rig.shell.counters.otherProtocol, 1);
    assert.equal(rig.shell.counters.packetsIn, 13);
    assert.equal(classified(rig), 13, 'every packet counted exactly once');
    assert.equal(rig.shell.tcp.counters.segmentsIn, 0, 'nothing malformed reached TCP');
    assert.equal(rig.dials.length, 0);
    await sleep(10);
    assert.equal(rig.device.segments.length + rig.device.datagrams.length + rig.device.icmp.length, 0, 'no answer to garbage');
  });
});

/** Random bytes, or a valid packet with a few bytes overwritten, maybe cut short, with checksums maybe made right again. */
const anyPacket = fc.oneof(
  fc.uint8Array({ maxLength: 160 }).map((b) => Buffer.from(b)),
  fc.record({
    base: fc.constantFrom(...VALID),
    edits: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
    fix: fc.constantFrom(0, 1, 2),
  }).map(({ base, edits, cut, fix }) => {
    let p = Buffer.from(base);
    for (const [at, v] of edits) p[at % p.length] = v;
    if (cut !== undefined) p = p.subarray(0, cut % (p.length + 1));
    if (fix === 2) fixTransportChecksum(p);
    if (fix >= 1) fixIpChecksum(p);
    return p;
  }),
);

/** One packet in: no throw, and exactly one counter of the shell moved. */
function feedCounted(rig: Rig, inject: () => void): void {
  const seen = rig.shell.counters.packetsIn;
  const counted = classified(rig);
  inject();
  assert.equal(rig.shell.counters.packetsIn, seen + 1);
  assert.equal(classified(rig), counted + 1, 'the packet was counted once, by what happened to it');
}

test('malformed (property): random and mutated packets never throw, each is counted once, and what the shell answers is well-formed', async () => {
  await withRig({}, async (rig) => {
    rig.dialer.policy = (dial) => dial.refuse(CircuitError.DENIED, 'fuzz');
    fc.assert(fc.property(anyPacket, (p) => feedCounted(rig, () => rig.shellTun.inject(p))), { numRuns: 3000, seed: 0x7e57 });
    assert.ok(Object.keys(rig.shell.counters.wireDrops).length >= 5, 'the mutations reached many drop reasons');
    assert.ok(rig.shell.tcp.counters.segmentsIn > 0 && rig.shell.counters.udpFlowsOpened > 0 && rig.shell.counters.icmpEchoReplies > 0,
      'and valid packets of each kind got through');
    await sleep(30);
    rig.assertClean();
  });
});

test('malformed (property): with a virtio_net_hdr, random headers in front of random and mutated packets never throw', async () => {
  await withRig({ vnet: true }, async (rig) => {
    rig.dialer.policy = (dial) => dial.refuse(CircuitError.DENIED, 'fuzz');
    const header = fc.uint8Array({ minLength: VNET_HDR_BYTES, maxLength: VNET_HDR_BYTES });
    fc.assert(fc.property(header, anyPacket, fc.boolean(), (h, p, partial) => {
      const raw = Buffer.concat([Buffer.from(h), p]);
      if (partial) raw[0] = 1; // NEEDS_CSUM: the shell skips checksums, so more garbage reaches TCP and UDP
      feedCounted(rig, () => rig.shellTun.injectRaw(raw));
    }), { numRuns: 2000, seed: 0x7e58 });
    feedCounted(rig, () => rig.shellTun.injectRaw(Buffer.alloc(VNET_HDR_BYTES - 1)));
    assert.ok((rig.shell.counters.wireDrops.short ?? 0) >= 1, 'a read shorter than the vnet header is short');
    await sleep(30);
    rig.assertClean();
  });
});

// ---- virtio_net_hdr and TSO ------------------------------------------------------------

test('vnet: with a 10-byte virtio_net_hdr both ways, TSO super-segments go out and come in; 4 MB echoed byte for byte', async () => {
  await withRig({ vnet: true }, async (rig) => {
    await echoExchange(rig, 4 * 1024 * 1024, 21, 'vnet echo', 10_000);
    // Out: the shell wrote super-segments (gso_size = MSS) that the device cut as the kernel would, checksums and all.
    assert.ok(rig.device.superSegmentsIn > 0, 'the shell sent TSO super-segments');
    assert.ok(rig.device.partialChecksumsIn > 0, 'and single segments with NEEDS_CSUM');
    // In: the device's own super-segments were taken whole by the shell's TCP.
    assert.ok(rig.device.superSegmentsOut > 0, 'the device sent super-segments');
    rig.assertClean();
  });
});

test('vnet: UDP, in-stack DNS and ICMP carry a plain virtio_net_hdr both ways', async () => {
  await withRig({ vnet: true }, async (rig) => {
    const far: UdpFar[] = [];
    rig.dialer.policy = (dial) => dial.accept((s) => far.push(new UdpFar(s)));
    const db = await resolve(rig, 'db.plant.internal', 6000);
    assert.equal(db.addresses.length, 1);
    rig.device.sendUdp(5000, SVC_IP, 9000, Buffer.from('over vnet'));
    await waitFor(() => far.length === 1 && far[0]!.datagrams.length === 1, 'the datagram');
    far[0]!.send(Buffer.from('back over vnet'));
    rig.device.sendEcho(SVC_IP, 3, 4, Buffer.from('ping'));
    await waitFor(() => rig.device.datagramsTo(5000).length === 1 && rig.device.icmp.length === 1, 'the reply and the echo reply');
    assert.equal(rig.device.datagramsTo(5000)[0]!.payload.toString(), 'back over vnet');
    assert.equal(rig.device.icmp[0]!.msg.type, 0);
    rig.assertClean();
  });
});

// ---- a lossy link ----------------------------------------------------------------------

test('lossy link: 2 % loss and reordering each way, 2 MB echoed byte for byte', async () => {
  await withRig({ link: { lossRate: 0.02, reorderRate: 0.02, seed: 7 } }, async (rig) => {
    await echoExchange(rig, 2 * 1024 * 1024, 31, 'lossy echo', 12_000);
    assert.ok(rig.shellTun.inner.lost > 0 && rig.deviceTun.lost > 0, 'packets were lost both ways');
    assert.ok(rig.shellTun.inner.reordered + rig.deviceTun.reordered > 0, 'packets were reordered');
    assert.ok(rig.shell.tcp.counters.retransmits > 0 && rig.device.table.counters.retransmits > 0, 'both ends retransmitted');
    rig.assertClean();
  });
});

test('lossy link with TSO: 2 % loss and reordering over a vnet link, 2 MB echoed byte for byte', async () => {
  await withRig({ vnet: true, link: { lossRate: 0.02, reorderRate: 0.02, seed: 13 } }, async (rig) => {
    await echoExchange(rig, 2 * 1024 * 1024, 41, 'lossy vnet echo', 12_000);
    // Super-segments make few packets (about 500 each way): the loss is asserted over both directions.
    assert.ok(rig.shellTun.inner.lost + rig.deviceTun.lost > 0, 'packets were lost');
    assert.ok(rig.device.superSegmentsIn > 0 && rig.device.superSegmentsOut > 0, 'super-segments both ways');
    assert.ok(rig.shell.tcp.counters.retransmits + rig.device.table.counters.retransmits > 0, 'lost data was retransmitted');
    rig.assertClean();
  });
});

test('no timers or immediates left behind', async () => {
  await sleep(20);
  assert.deepEqual(process.getActiveResourcesInfo().filter((r) => /Immediate|Timeout/.test(r)), []);
});
