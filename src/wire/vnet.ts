/**
 * The virtio_net_hdr that precedes every packet on a TUN opened with
 * IFF_VNET_HDR (BUILD-NOTES §4), and the two jobs it hands to user space:
 * finishing a partial checksum (NEEDS_CSUM) and cutting a TCP GSO
 * super-segment (up to 64 KB, one read) into MSS-sized packets the stack
 * can take one by one. Pure functions over caller-provided buffers.
 *
 *   byte  0        1          2–3       4–5       6–7         8–9
 *       +--------+----------+---------+---------+-----------+------------+
 *       | flags  | gso_type | hdr_len | gso_size| csum_start| csum_offset|
 *       +--------+----------+---------+---------+-----------+------------+
 *   16-bit fields little-endian: legacy virtio uses host order, and the
 *   hosts we run on are little-endian (x86, ARM). A big-endian (MIPS) router
 *   must set TUNSETVNETLE on the fd so this stays true.
 *
 * Field meanings (include/uapi/linux/virtio_net.h, virtio spec 1.2 §5.1.6):
 * with NEEDS_CSUM, the transport checksum at `csum_start + csum_offset`
 * holds only the folded pseudo-header sum, and the checksum must be computed
 * from `csum_start` to the end of the packet; with a GSO type, the packet is
 * one TCP segment whose payload is to be cut into `gso_size` pieces, each
 * with a copy of the headers (`hdr_len` bytes; a hint, recomputed here).
 */
import { finishSum, ipv4PseudoSum, ipv6PseudoSum, onesSum, put16, put32, u16, u32 } from './checksum.js';
import { IPV4_HEADER_BYTES, IpProtocol, refreshIpv4Checksum, type WireDrop } from './ipv4.js';
import { IPV6_HEADER_BYTES } from './ipv6.js';
import { TCP_HEADER_BYTES } from './tcp.js';

export const VNET_HDR_BYTES = 10;

/** virtio_net_hdr flags. */
export const VnetFlags = {
  /** The transport checksum is partial: see {@link completeVnetChecksum}. */
  NEEDS_CSUM: 1,
  /** The kernel validated the checksum (receive only). */
  DATA_VALID: 2,
} as const;

/** virtio_net_hdr gso_type values (without the ECN bit, {@link VNET_GSO_ECN}). */
export const VnetGso = {
  NONE: 0,
  TCPV4: 1,
  /** UFO, long deprecated. */
  UDP: 3,
  TCPV6: 4,
  /** USO (Linux 6.2+; BUILD-NOTES §4 defines the TUN_F_USO* bits by hand). */
  UDP_L4: 5,
} as const;

/** gso_type bit: the super-segment had CWR set (ECN, RFC 3168). */
export const VNET_GSO_ECN = 0x80;

/** A virtio_net_hdr. */
export interface VnetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** Reads the 10-byte header at `buf[off]`. */
export function parseVnetHeader(buf: Uint8Array, off = 0): VnetHeader | WireDrop {
  if (off < 0 || off + VNET_HDR_BYTES > buf.length) return 'short';
  return {
    flags: buf[off]!,
    gsoType: buf[off + 1]!,
    hdrLen: buf[off + 2]! | (buf[off + 3]! << 8),
    gsoSize: buf[off + 4]! | (buf[off + 5]! << 8),
    csumStart: buf[off + 6]! | (buf[off + 7]! << 8),
    csumOffset: buf[off + 8]! | (buf[off + 9]! << 8),
  };
}

function putLe16(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
}

/** Writes `h` at `buf[off]`; returns 10. */
export function emitVnetHeader(h: VnetHeader, buf: Uint8Array, off: number): number {
  buf[off] = h.flags;
  buf[off + 1] = h.gsoType;
  putLe16(buf, off + 2, h.hdrLen);
  putLe16(buf, off + 4, h.gsoSize);
  putLe16(buf, off + 6, h.csumStart);
  putLe16(buf, off + 8, h.csumOffset);
  return VNET_HDR_BYTES;
}

/** Writes an all-zero header (no offload: a complete, checksummed packet follows); returns 10. */
export function emitPlainVnetHeader(buf: Uint8Array, off: number): number {
  buf.fill(0, off, off + VNET_HDR_BYTES);
  return VNET_HDR_BYTES;
}

/**
 * Finishes the partial checksum of `pkt` (the bytes after the vnet header,
 * from the IP header on) when `h` has NEEDS_CSUM: sums `pkt[csumStart, end)`,
 * whose checksum field already holds the pseudo-header sum, and stores the
 * result. Returns 'bad-vnet' when the offsets do not fit in `pkt`, else
 * undefined (also when there was nothing to do).
 *
 * A result of 0 is stored as 0xffff: the same value in ones' complement for
 * TCP, and the only correct one for UDP (RFC 768), as Linux does.
 */
export function completeVnetChecksum(pkt: Uint8Array, h: VnetHeader): WireDrop | undefined {
  if ((h.flags & VnetFlags.NEEDS_CSUM) === 0) return undefined;
  const field = h.csumStart + h.csumOffset;
  if (field + 2 > pkt.length) return 'bad-vnet';
  const ck = finishSum(onesSum(pkt, h.csumStart, pkt.length - h.csumStart));
  put16(pkt, field, ck === 0 ? 0xffff : ck);
  return undefined;
}

// ---------------------------------------------------------------------------
// TCP segmentation (GSO), the user-space half of TSO

const FIN_PSH = 0x01 | 0x08;
const CWR = 0x80;

/** Where the headers of a TCP super-segment end and its payload lies. */
interface GsoLayout {
  v6: boolean;
  /** IP header bytes: where the TCP header starts. */
  ipBytes: number;
  /** IP + TCP header bytes: copied in front of every piece. */
  hdrBytes: number;
  /** End of the packet per its IP length field (link padding excluded). */
  end: number;
}

/** Checks `pkt` is a whole IPv4 or IPv6 (no extensions) TCP packet that matches `h`; its layout or a drop reason. */
function gsoLayout(pkt: Uint8Array, h: VnetHeader): GsoLayout | WireDrop {
  const gso = h.gsoType & ~VNET_GSO_ECN;
  if ((gso !== VnetGso.TCPV4 && gso !== VnetGso.TCPV6) || h.gsoSize === 0) return 'bad-vnet';
  if (pkt.length < 1) return 'short';
  const version = pkt[0]! >>> 4;
  let ipBytes: number;
  let end: number;
  if (version === 4 && gso === VnetGso.TCPV4) {
    if (pkt.length < IPV4_HEADER_BYTES) return 'short';
    ipBytes = (pkt[0]! & 0x0f) << 2;
    if (ipBytes < IPV4_HEADER_BYTES) return 'bad-header-length';
    end = u16(pkt, 2);
    if ((u16(pkt, 6) & 0x3fff) !== 0) return 'fragment';
    if (pkt[9] !== IpProtocol.TCP) return 'bad-vnet';
  } else if (version === 6 && gso === VnetGso.TCPV6) {
    if (pkt.length < IPV6_HEADER_BYTES) return 'short';
    ipBytes = IPV6_HEADER_BYTES;
    end = IPV6_HEADER_BYTES + u16(pkt, 4);
    if (pkt[6] !== IpProtocol.TCP) return 'unsupported-extension';
  } else {
    return 'bad-version';
  }
  if (end > pkt.length || end < ipBytes + TCP_HEADER_BYTES) return 'bad-total-length';
  const tcpBytes = (pkt[ipBytes + 12]! >>> 4) << 2;
  if (tcpBytes < TCP_HEADER_BYTES || ipBytes + tcpBytes > end) return 'bad-header-length';
  return { v6: version === 6, ipBytes, hdrBytes: ipBytes + tcpBytes, end };
}

/**
 * The virtio_net_hdr to send in front of the IPv4 or IPv6 TCP packet `pkt`
 * (as emitTcpIpv4/6 wrote it, with `partialChecksum` or not) so the kernel
 * finishes its checksum and, when its payload is longer than `mss`, cuts it
 * into `mss`-byte segments itself (TSO: one write for up to 64 KB). The TCP
 * checksum field is set to the partial (pseudo-header) sum NEEDS_CSUM calls
 * for, so a packet emitted with a full checksum works too.
 *
 * @example
 *   const n = emitTcpIpv4(flow.ip, bigSeg, out, VNET_HDR_BYTES, true);
 *   const h = tcpOffloadVnetHeader(out.subarray(VNET_HDR_BYTES, VNET_HDR_BYTES + n), flow.mss);
 *   if (typeof h !== 'string') emitVnetHeader(h, out, 0);
 */
export function tcpOffloadVnetHeader(pkt: Uint8Array, mss: number): VnetHeader | WireDrop {
  const v6 = pkt.length > 0 && pkt[0]! >>> 4 === 6;
  const probe: VnetHeader = { flags: 0, gsoType: v6 ? VnetGso.TCPV6 : VnetGso.TCPV4, hdrLen: 0, gsoSize: Math.max(1, mss), csumStart: 0, csumOffset: 0 };
  const l = gsoLayout(pkt, probe);
  if (typeof l === 'string') return l;
  const tcpLen = l.end - l.ipBytes;
  const pseudo = l.v6
    ? ipv6PseudoSum(pkt, 8, pkt, 24, IpProtocol.TCP, tcpLen)
    : ipv4PseudoSum(u32(pkt, 12), u32(pkt, 16), IpProtocol.TCP, tcpLen);
  put16(pkt, l.ipBytes + 16, pseudo);
  probe.flags = VnetFlags.NEEDS_CSUM;
  if (l.end - l.hdrBytes > mss) {
    probe.hdrLen = l.hdrBytes;
  } else {
    // One segment: no GSO; the kernel writes zero sizes then, and so do we.
    probe.gsoType = VnetGso.NONE;
    probe.gsoSize = 0;
  }
  probe.csumStart = l.ipBytes;
  probe.csumOffset = 16; // offsetof(struct tcphdr, check)
  return probe;
}

/**
 * How many packets {@link splitTcpGso} makes of `pkt`, and so how many
 * buffers it needs; or why `pkt` cannot be split.
 */
export function tcpGsoSegmentCount(pkt: Uint8Array, h: VnetHeader): number | WireDrop {
  const l = gsoLayout(pkt, h);
  if (typeof l === 'string') return l;
  return Math.max(1, Math.ceil((l.end - l.hdrBytes) / h.gsoSize));
}

/**
 * Cuts the TCP super-segment `pkt` (bytes after the vnet header `h`, whose
 * gso_type is TCPV4 or TCPV6) into packets of at most `h.gsoSize` payload
 * bytes, as the kernel's tcp_gso_segment would: the headers are copied into
 * each, sequence numbers advance by the bytes before, the IPv4 id increments
 * by one a packet, FIN and PSH stay on the last packet only and CWR on the
 * first only (RFC 3168 §6.1.2), and every checksum is computed afresh (the
 * partial one of NEEDS_CSUM is not needed).
 *
 * Packet `i` is written at `out[i][outOff]` (leave `outOff` bytes of headroom
 * for a vnet header when echoing them back) and its length stored in
 * `lengths[i]` (a plain array grows; a Uint32Array must hold them all).
 * Returns the packet count, or a drop reason: 'bad-vnet' also when `out`
 * has too few or too small buffers (size them with {@link
 * tcpGsoSegmentCount} and `outOff + headers + gsoSize`).
 *
 * @example
 *   const n = splitTcpGso(pkt, h, pool.mtuBuffers, 0, lens);
 *   if (typeof n === 'string') drops[n]++;
 *   else for (let i = 0; i < n; i++) stack.input(pool.mtuBuffers[i].subarray(0, lens[i]));
 */
export function splitTcpGso(pkt: Uint8Array, h: VnetHeader, out: readonly Uint8Array[], outOff: number, lengths: number[] | Uint32Array): number | WireDrop {
  const l = gsoLayout(pkt, h);
  if (typeof l === 'string') return l;
  const { ipBytes, hdrBytes, end } = l;
  const mss = h.gsoSize;
  const payloadBytes = end - hdrBytes;
  const count = Math.max(1, Math.ceil(payloadBytes / mss));
  if (out.length < count || (!Array.isArray(lengths) && lengths.length < count)) return 'bad-vnet';
  for (let i = 0; i < count; i++) {
    if (out[i]!.length < outOff + hdrBytes + Math.min(mss, payloadBytes - i * mss)) return 'bad-vnet';
  }
  const pseudo = l.v6
    ? ipv6PseudoSum(pkt, 8, pkt, 24, IpProtocol.TCP, 0)
    : ipv4PseudoSum(u32(pkt, 12), u32(pkt, 16), IpProtocol.TCP, 0);
  const seq0 = u32(pkt, ipBytes + 4);
  const id0 = l.v6 ? 0 : u16(pkt, 4);
  const flags0 = pkt[ipBytes + 13]!;
  const headers = pkt.subarray(0, hdrBytes);
  for (let i = 0; i < count; i++) {
    const b = out[i]!;
    const start = hdrBytes + i * mss;
    const chunk = Math.min(mss, end - start);
    b.set(headers, outOff);
    b.set(pkt.subarray(start, start + chunk), outOff + hdrBytes);
    const ip = outOff;
    const tcp = outOff + ipBytes;
    const segBytes = hdrBytes - ipBytes + chunk;
    if (l.v6) {
      put16(b, ip + 4, segBytes);
    } else {
      put16(b, ip + 2, hdrBytes + chunk);
      put16(b, ip + 4, id0 + i);
      refreshIpv4Checksum(b, ip);
    }
    put32(b, tcp + 4, seq0 + i * mss);
    let flags = flags0;
    if (i < count - 1) flags &= ~FIN_PSH;
    if (i > 0) flags &= ~CWR;
    b[tcp + 13] = flags;
    put16(b, tcp + 16, 0);
    put16(b, tcp + 16, finishSum(onesSum(b, tcp, segBytes, pseudo + segBytes)));
    lengths[i] = hdrBytes + chunk;
  }
  return count;
}
