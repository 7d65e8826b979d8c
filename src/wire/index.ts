/** Pure codecs: link frames and control bodies (no I/O). */
export {
  CloseCode, DEFAULT_MAX_BODY_BYTES, FRAME_VERSION, FrameDecoder, FrameFlags, FrameType, HEADER_BYTES,
  allocWithHeadroom, decodeCredit, encodeCredit, encodeFrame, header, joinWithHeadroom, withHeader, writeHeader,
  type CloseCodeValue, type FrameHandler, type FrameTypeValue,
} from './frame.js';
export { bytes, decodeControl, encodeControl, num, str, strList } from './control.js';

/** IP packet codecs for tun mode (pure; parsers return a WireDrop instead of throwing). */
export {
  checksumUpdate16, checksumUpdate32, finishSum, foldSum, internetChecksum, ipv4PseudoSum, ipv6PseudoSum, onesSum,
} from './checksum.js';
export {
  IPV4_DEFAULT_TTL, IPV4_HEADER_BYTES, IpProtocol, WIRE_DROPS,
  emitIpv4Header, ipVersion, ipv4CidrContains, ipv4Mask, ipv4ToString, isDrop, parseIpv4, parseIpv4Address, parseIpv4Cidr,
  refreshIpv4Checksum,
  type Ipv4Cidr, type Ipv4Envelope, type Ipv4Packet, type WireDrop,
} from './ipv4.js';
export {
  IPV6_DEFAULT_HOP_LIMIT, IPV6_HEADER_BYTES,
  emitIpv6Header, ipv6CidrContains, ipv6ToString, parseIpv6, parseIpv6Address, parseIpv6Cidr,
  type Ipv6Cidr, type Ipv6Envelope, type Ipv6Packet,
} from './ipv6.js';
export {
  TCP_HEADER_BYTES, TCP_MAX_WINDOW_SCALE,
  emitTcpIpv4, emitTcpIpv6, parseTcp, parseTcpIpv4, parseTcpIpv6, tcpIpv4PacketBytes, tcpIpv6PacketBytes, tcpOptionsBytes,
  tcpSegmentBytes,
} from './tcp.js';
export {
  UDP_HEADER_BYTES,
  emitUdpIpv4, emitUdpIpv6, parseUdp, parseUdpIpv4, parseUdpIpv6, udpIpv4PacketBytes, udpIpv6PacketBytes,
  type UdpDatagram,
} from './udp.js';
export {
  ICMP_HEADER_BYTES, Icmpv4Type, Icmpv4Unreachable, Icmpv6Type,
  emitIcmpv4EchoReply, emitIcmpv4Unreachable, emitIcmpv6EchoReply, icmpv4EchoReply, icmpv4ErrorAllowed,
  icmpv4UnreachableBytes, parseIcmpv4, parseIcmpv6,
  type IcmpMessage,
} from './icmp.js';
export {
  VNET_GSO_ECN, VNET_HDR_BYTES, VnetFlags, VnetGso,
  completeVnetChecksum, emitPlainVnetHeader, emitVnetHeader, parseVnetHeader, splitTcpGso, tcpGsoSegmentCount, tcpOffloadVnetHeader,
  type VnetHeader,
} from './vnet.js';
