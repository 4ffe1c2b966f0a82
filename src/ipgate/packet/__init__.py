"""Packet codecs: the lowest layer of the packet path.

Bytes in, parsed headers or a drop reason out, and in-place rewrites that keep
every checksum right.  Plain functions over buffers (`struct` on bytearray or
memoryview); nothing here raises on a malformed packet.

    drop      DropReason (the kernel's SKB_DROP_REASON_* names), Mib, Counters
    checksum  RFC 1071 sums, RFC 1624 updates (csum_replace2/4, deltas, UDP's 0)
    ipv4      parse_ipv4 (ip_rcv_core + ip_options_compile), header rewrites
    l4        parse_tcp/udp/icmp, icmp_error_inner, *_csum_ok, port/id/MSS rewrites
    rewrite   nf_nat_ipv4_manip_pkt (slow path), FlowRewrite (precomputed, per flow)
    frag      Defrag (ip_defrag and its queues), ip_fragment (ip_do_fragment)
    build     builders, icmp_error_packet (__icmp_send)
"""
