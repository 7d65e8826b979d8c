#!/usr/bin/env python3
"""Captures packets the Linux kernel writes into a TUN, as test vectors for
src/wire (test/unit/wire-ip.test.ts reads the .hex files this writes).

Run it as root inside a throwaway network namespace, so nothing leaves it:

    ip netns add ztwire
    ip netns exec ztwire python3 test/vectors/capture-tun.py test/vectors
    ip netns del ztwire

Two TUNs: `ztw0` (IFF_TUN | IFF_NO_PI: what the stack reads without
offload; the kernel computed every checksum) and `ztw1` (IFF_VNET_HDR with
TUNSETOFFLOAD CSUM|TSO4|TSO6: each read starts with a 10-byte
virtio_net_hdr, checksums are left partial and TCP data comes as a GSO
super-segment). To get data segments, this script plays the far TCP peer:
it answers the kernel's SYN with a SYN-ACK it builds itself, with its own
checksum code (independent of the TypeScript one under test).

Each vector is one file: '#' comment lines, then the packet as hex.
"""
import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04

OUT = sys.argv[1] if len(sys.argv) > 1 else "."


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


def open_tun(name, flags):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    return fd


def read_matching(fd, want, what, timeout=3.0):
    """Reads packets until want(pkt) holds (the kernel also sends IPv6 RS/MLD)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
        if not r:
            break
        try:
            pkt = os.read(fd, 70000)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                continue
            raise
        if want(pkt):
            return pkt
    raise SystemExit("no packet for " + what)


def save(name, pkt, comment):
    path = os.path.join(OUT, name + ".hex")
    with open(path, "w") as f:
        for line in comment.strip().splitlines():
            f.write("# " + line + "\n")
        h = pkt.hex()
        for i in range(0, len(h), 64):
            f.write(h[i:i + 64] + "\n")
    print("wrote", path, len(pkt), "bytes")


def csum(data):
    """RFC 1071, the plain way: 16-bit big-endian words, end-around carry."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn_ack4(syn, mss):
    """A SYN-ACK answering the IPv4 SYN `syn`, with one MSS option."""
    ihl = (syn[0] & 15) * 4
    src, dst = syn[12:16], syn[16:20]
    sport, dport, seq = struct.unpack("!HHI", syn[ihl:ihl + 8])
    tcp = struct.pack("!HHIIBBHHH", dport, sport, 0x10000000, (seq + 1) & 0xFFFFFFFF, 6 << 4, 0x12, 65535, 0, 0)
    tcp += struct.pack("!BBH", 2, 4, mss)
    pseudo = dst + src + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, dst, src)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def bring_up(dev, *addrs):
    for a in addrs:
        sh("ip %s addr add %s dev %s%s" % ("-6" if ":" in a else "", a, dev, " nodad" if ":" in a else ""))
    sh("ip link set %s up mtu 1500" % dev)
    time.sleep(0.2)


def start_connect(family, addr):
    """A non-blocking connect: the kernel sends its SYN into the TUN and waits."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex(addr)
    return s


def is_tcp4_to(port, flags_mask=None):
    def want(p):
        if len(p) < 40 or p[0] >> 4 != 4 or p[9] != 6:
            return False
        ihl = (p[0] & 15) * 4
        if struct.unpack("!H", p[ihl + 2:ihl + 4])[0] != port:
            return False
        return flags_mask is None or (p[ihl + 13] & flags_mask) == flags_mask
    return want


def plain_tun():
    fd = open_tun("ztw0", IFF_TUN | IFF_NO_PI)
    bring_up("ztw0", "10.77.0.1/24", "fd00:77::1/64")

    # TCP SYN (Linux options: MSS, SACK-permitted, timestamps, NOP, window scale).
    s = start_connect(socket.AF_INET, ("10.77.0.2", 8080))
    syn = read_matching(fd, is_tcp4_to(8080, 0x02), "tcp4 syn")
    save("ipv4-tcp-syn", syn, "Linux TCP SYN 10.77.0.1 -> 10.77.0.2:8080, from a TUN (no offload)")
    # Answer it; the kernel ACKs, then sends our data with PSH.
    os.write(fd, syn_ack4(syn, 1460))
    time.sleep(0.1)
    s.send(b"GET / HTTP/1.0\r\n\r\n")
    data = read_matching(fd, lambda p: is_tcp4_to(8080)(p) and len(p) > 20 + ((p[32] >> 4) * 4), "tcp4 data")
    save("ipv4-tcp-data", data, "Linux TCP data segment (ACK|PSH; no timestamps: our SYN-ACK offered none) carrying 'GET / HTTP/1.0\\r\\n\\r\\n'")
    s.close()

    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"hello ztedge", ("10.77.0.2", 5353))
    udp = read_matching(fd, lambda p: p[0] >> 4 == 4 and p[9] == 17, "udp4")
    save("ipv4-udp", udp, "Linux UDP 10.77.0.1 -> 10.77.0.2:5353 'hello ztedge'")

    # ICMP echo built by the kernel (ping socket, as ping(8) uses).
    sh("sysctl -q -w net.ipv4.ping_group_range='0 0'")
    ps = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    ps.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"ztedge-ping-0123456789abcdef", ("10.77.0.2", 0))
    echo = read_matching(fd, lambda p: p[0] >> 4 == 4 and p[9] == 1, "icmp4 echo")
    save("ipv4-icmp-echo", echo, "Linux ICMP echo request 10.77.0.1 -> 10.77.0.2 (ping socket), data 'ztedge-ping-0123456789abcdef'")

    s6 = start_connect(socket.AF_INET6, ("fd00:77::2", 8080))
    syn6 = read_matching(fd, lambda p: p[0] >> 4 == 6 and p[6] == 6, "tcp6 syn")
    save("ipv6-tcp-syn", syn6, "Linux TCP SYN fd00:77::1 -> [fd00:77::2]:8080")
    s6.close()

    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.sendto(b"hello ztedge v6", ("fd00:77::2", 5353))
    udp6 = read_matching(fd, lambda p: p[0] >> 4 == 6 and p[6] == 17, "udp6")
    save("ipv6-udp", udp6, "Linux UDP fd00:77::1 -> [fd00:77::2]:5353 'hello ztedge v6'")

    ps6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    ps6.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, 7) + b"ztedge-ping6", ("fd00:77::2", 0))
    echo6 = read_matching(fd, lambda p: p[0] >> 4 == 6 and p[6] == 58 and len(p) > 40 and p[40] == 128, "icmp6 echo")
    save("ipv6-icmp-echo", echo6, "Linux ICMPv6 echo request fd00:77::1 -> fd00:77::2, sequence 7, data 'ztedge-ping6'")
    os.close(fd)


def vnet_tun():
    fd = open_tun("ztw1", IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    bring_up("ztw1", "10.78.0.1/24")
    s = start_connect(socket.AF_INET, ("10.78.0.2", 9000))
    syn = read_matching(fd, lambda p: is_tcp4_to(9000, 0x02)(p[10:]), "vnet syn")
    save("vnet-tcp-syn", syn, "virtio_net_hdr + Linux TCP SYN 10.78.0.1 -> 10.78.0.2:9000 on a TUN with CSUM|TSO4|TSO6 (partial checksum)")
    os.write(fd, bytes(10) + syn_ack4(syn[10:], 1400))
    time.sleep(0.1)
    s.setblocking(True)
    s.sendall(bytes((i * 7 + 3) & 0xFF for i in range(5000)))
    gso = read_matching(fd, lambda p: is_tcp4_to(9000)(p[10:]) and len(p) > 10 + 1400 + 40, "vnet gso")
    save("vnet-tcp-gso", gso, "virtio_net_hdr + Linux TCP super-segment (GSO TCPV4, gso_size 1400) carrying 5000 bytes, byte i = (7i + 3) mod 256")
    s.close()
    os.close(fd)


plain_tun()
vnet_tun()
