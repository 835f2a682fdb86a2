//! Frames that are not TCP, not IP, malformed, truncated or longer than their packet.

use super::*;

#[test]
fn non_tcp_and_non_ip_pass() {
    if !allowlist_tests::require_root("non_tcp_and_non_ip_pass") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    lab.expect("ARP", &Frame::arp(BLOCKED4, DST4), PassNotIp);
    lab.expect(
        "LLDP",
        &Frame::ethertype(ETHERTYPE_LLDP, &[0; 46]),
        PassNotIp,
    );
    lab.expect(
        "ethertype 0x0000 (no payload)",
        &Frame::ethertype(0, &[]),
        PassNotIp,
    );
    lab.expect(
        "ICMP echo",
        &Frame::icmp_v4(BLOCKED4, DST4),
        PassOtherProtocol,
    );
    lab.expect(
        "UDP to 22",
        &Frame::udp_v4(BLOCKED4, DST4, 5000, 22),
        PassUnprotectedPort,
    );
    lab.expect(
        "ESP",
        &Frame::ipv4(
            BLOCKED4,
            DST4,
            L4::Other {
                protocol: PROTO_ESP,
                payload: vec![0; 24],
            },
        ),
        PassOtherProtocol,
    );
    lab.expect(
        "UDP to 22 with IHL 15",
        &Frame::udp_v4(BLOCKED4, DST4, 5000, 22).ipv4_ihl(15),
        PassUnprotectedPort,
    );
    lab.expect(
        "ICMPv6 echo",
        &Frame::icmp_v6(BLOCKED6, DST6),
        PassOtherProtocol,
    );
    lab.expect(
        "ICMPv6 behind hop-by-hop (as MLD)",
        &Frame::icmp_v6(BLOCKED6, DST6).ext(Ext::HopByHop { len: 0 }),
        PassOtherProtocol,
    );
    lab.expect(
        "UDPv6 to 22",
        &Frame::udp_v6(BLOCKED6, DST6, 5000, 22),
        PassUnprotectedPort,
    );
    lab.expect(
        "IPv6 no next header",
        &Frame::ipv6(
            BLOCKED6,
            DST6,
            L4::Other {
                protocol: PROTO_NONE,
                payload: Vec::new(),
            },
        ),
        PassOtherProtocol,
    );
    lab.expect(
        "IPv6 no next header behind destination options",
        &Frame::ipv6(
            BLOCKED6,
            DST6,
            L4::Other {
                protocol: PROTO_NONE,
                payload: Vec::new(),
            },
        )
        .ext(Ext::DestOpts { len: 0 }),
        PassOtherProtocol,
    );
    lab.expect(
        "IPv6 ESP",
        &Frame::ipv6(
            BLOCKED6,
            DST6,
            L4::Other {
                protocol: PROTO_ESP,
                payload: vec![0; 24],
            },
        ),
        PassOtherProtocol,
    );
    lab.finish();
}

#[test]
fn malformed_ip_headers_pass() {
    if !allowlist_tests::require_root("malformed_ip_headers_pass") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for version in [0, 6, 15] {
        lab.expect(
            &format!("IPv4 ethertype, version {version}"),
            &syn4(BLOCKED4, 22).ip_version(version),
            PassTruncated,
        );
    }
    for ihl in 0..5 {
        lab.expect(
            &format!("IPv4 SYN with IHL {ihl}"),
            &syn4(BLOCKED4, 22).ipv4_bad_ihl(ihl),
            PassTruncated,
        );
    }
    for version in [0, 4, 15] {
        lab.expect(
            &format!("IPv6 ethertype, version {version}"),
            &syn6(BLOCKED6, 22).ip_version(version),
            PassTruncated,
        );
    }
    lab.finish();
}

#[test]
fn truncated_frames_at_every_length() {
    if !allowlist_tests::require_root("truncated_frames_at_every_length") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    // Cut anywhere before its end, a frame is shorter than the IP packet its length fields
    // claim (or than its Ethernet, VLAN or fixed IP header): the kernel's IP layer discards it,
    // so it passes as truncated, even once the TCP flags of a SYN are in it. Only the whole
    // frame is judged as a SYN.
    let v4_options = syn4(BLOCKED4, 22).ipv4_ihl(8).tcp_options(&SYN_OPTIONS);
    let v6_ext = syn6(BLOCKED6, 22)
        .ext(Ext::HopByHop { len: 0 })
        .ext(Ext::DestOpts { len: 1 });
    let vlan = syn4(BLOCKED4, 2222).vlan(TPID_8021Q, 42);
    let qinq_v6 = syn6(BLOCKED6, 22)
        .vlan(TPID_8021AD, 1)
        .vlan(TPID_8021Q, 2)
        .ext(Ext::Routing {
            len: 0,
            segments_left: 0,
        });
    // First fragments too: cut, they are not tiny fragments (which the kernel would keep for
    // reassembly) but broken packets, even when the frame ends before the TCP flags.
    let v4_fragment = syn4(BLOCKED4, 22).fragment(0, true);
    let v6_fragment = syn6(BLOCKED6, 22)
        .ext(Ext::HopByHop { len: 0 })
        .fragment(0, true);
    let cases = [
        ("v4 SYN with IHL 8 and TCP options", v4_options, DropSynV4),
        (
            "v6 SYN behind hop-by-hop and destination options",
            v6_ext,
            DropSynV6,
        ),
        ("802.1Q v4 SYN", vlan, DropSynV4),
        ("QinQ v6 SYN behind a routing header", qinq_v6, DropSynV6),
        ("v4 first fragment", v4_fragment, DropSynV4),
        (
            "v6 first fragment behind hop-by-hop",
            v6_fragment,
            DropSynV6,
        ),
    ];
    for (what, frame, syn) in cases {
        let full = frame.full_len();
        for len in 0..=full {
            let cut = frame.clone().cut(len);
            let name = format!("{what} cut to {len} of {full} bytes");
            if len < 14 {
                // The kernel refuses to run XDP on less than an Ethernet header.
                lab.expect_refused(&name, &cut.build());
                continue;
            }
            let want = if len == full { syn } else { PassTruncated };
            lab.expect(&name, &cut, want);
        }
    }
    // The same with no data at all.
    lab.expect_refused("an empty frame", &[]);
    // Refused frames are not counted.
    let totals = lab.program.totals();
    assert_eq!(
        totals,
        lab.program.seen(),
        "a refused run moved the counters"
    );
    lab.finish();
}

/// The IPv4 length checks, made right after reading the fixed header and before the protocol
/// and fragment fields: version 4, IHL >= 5 (`malformed_ip_headers_pass`), a total length at
/// least the header length (IHL * 4), and the whole packet (total length) in the frame, else
/// the frame passes as truncated: the kernel's IP layer discards it.
#[test]
fn ipv4_header_and_total_length() {
    if !allowlist_tests::require_root("ipv4_header_and_total_length") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    // IHL 15 (40 bytes of options), the frame ending inside the options: the fixed header is
    // there, the rest of the header and of the packet is not.
    let ihl15 = [
        ("SYN", syn4(BLOCKED4, 22).ipv4_ihl(15)),
        (
            "first fragment",
            syn4(BLOCKED4, 22).ipv4_ihl(15).fragment(0, true),
        ),
        (
            "tiny first fragment (8 TCP bytes)",
            syn4(BLOCKED4, 22)
                .ipv4_ihl(15)
                .fragment(0, true)
                .l4_bytes(8),
        ),
        ("UDP", Frame::udp_v4(BLOCKED4, DST4, 5000, 22).ipv4_ihl(15)),
    ];
    for (what, frame) in &ihl15 {
        for len in 14 + 20..14 + 60 {
            lab.expect(
                &format!("{what} with IHL 15 cut to {len} bytes (inside the options)"),
                &frame.clone().cut(len),
                PassTruncated,
            );
        }
    }
    // A total length below the header length, the whole built packet still in the frame.
    for total in [0, 1, 19, 20, 21, 40, 56, 59] {
        lab.expect(
            &format!("SYN with IHL 15 and total length {total}"),
            &syn4(BLOCKED4, 22).ipv4_ihl(15).ipv4_total_len(total),
            PassTruncated,
        );
        lab.expect(
            &format!("first fragment with IHL 15 and total length {total}"),
            &syn4(BLOCKED4, 22)
                .ipv4_ihl(15)
                .fragment(0, true)
                .ipv4_total_len(total),
            PassTruncated,
        );
        lab.expect(
            &format!("non-first fragment with IHL 15 and total length {total}"),
            &syn4(BLOCKED4, 22)
                .ipv4_ihl(15)
                .fragment(8, true)
                .ipv4_total_len(total),
            PassTruncated,
        );
        lab.expect(
            &format!("UDP with IHL 15 and total length {total}"),
            &Frame::udp_v4(BLOCKED4, DST4, 5000, 22)
                .ipv4_ihl(15)
                .ipv4_total_len(total),
            PassTruncated,
        );
    }
    for total in [0, 1, 19] {
        lab.expect(
            &format!("SYN with IHL 5 and total length {total}"),
            &syn4(BLOCKED4, 22).ipv4_total_len(total),
            PassTruncated,
        );
        lab.expect(
            &format!("ICMP with IHL 5 and total length {total}"),
            &Frame::icmp_v4(BLOCKED4, DST4).ipv4_total_len(total),
            PassTruncated,
        );
    }
    // A total length of exactly the header: a packet without TCP bytes.
    lab.expect(
        "SYN with IHL 15 and total length 60 (no TCP bytes)",
        &syn4(BLOCKED4, 22).ipv4_ihl(15).ipv4_total_len(60),
        PassTruncated,
    );
    lab.expect(
        "first fragment with IHL 15 and total length 60 (no TCP bytes), from outside",
        &syn4(BLOCKED4, 80)
            .ipv4_ihl(15)
            .fragment(0, true)
            .ipv4_total_len(60),
        DropFragmentEvasion,
    );
    lab.expect(
        "first fragment with IHL 15 and total length 60 (no TCP bytes), from lab A",
        &syn4(ALLOWED4, 22)
            .ipv4_ihl(15)
            .fragment(0, true)
            .ipv4_total_len(60),
        PassAllowedV4,
    );
    lab.expect(
        "UDP with IHL 15 and total length 60",
        &Frame::udp_v4(BLOCKED4, DST4, 5000, 22)
            .ipv4_ihl(15)
            .ipv4_total_len(60),
        PassTruncated,
    );
    // A total length past the frame: a frame shorter than the packet it claims.
    for ihl in [5, 15] {
        let frame = syn4(BLOCKED4, 22).ipv4_ihl(ihl);
        let built = frame.ip_len() as u16;
        for total in [built + 1, built + 6, 1500, 65535] {
            lab.expect(
                &format!("SYN with IHL {ihl}, total length {total} of {built} bytes built"),
                &frame.clone().ipv4_total_len(total),
                PassTruncated,
            );
            lab.expect(
                &format!("first fragment with IHL {ihl}, total length {total} of {built}"),
                &frame.clone().fragment(0, true).ipv4_total_len(total),
                PassTruncated,
            );
            lab.expect(
                &format!("non-first fragment with IHL {ihl}, total length {total} of {built}"),
                &frame.clone().fragment(8, false).ipv4_total_len(total),
                PassTruncated,
            );
        }
        lab.expect(
            &format!("UDP with IHL {ihl}, total length 1500"),
            &Frame::udp_v4(BLOCKED4, DST4, 5000, 22)
                .ipv4_ihl(ihl)
                .ipv4_total_len(1500),
            PassTruncated,
        );
        // The written total length equal to the real one changes nothing.
        lab.expect(
            &format!("SYN with IHL {ihl}, total length {built} written explicitly"),
            &frame.clone().ipv4_total_len(built),
            DropSynV4,
        );
    }
    lab.finish();
}

/// The IPv6 length check: the whole packet (40 + payload length) in the frame, else the
/// frame passes as truncated.
#[test]
fn ipv6_payload_length() {
    if !allowlist_tests::require_root("ipv6_payload_length") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for (what, frame) in [
        ("SYN", syn6(BLOCKED6, 22)),
        ("first fragment", syn6(BLOCKED6, 22).fragment(0, true)),
        (
            "tiny first fragment (8 TCP bytes)",
            syn6(BLOCKED6, 22).fragment(0, true).l4_bytes(8),
        ),
        (
            "SYN behind hop-by-hop",
            syn6(BLOCKED6, 22).ext(Ext::HopByHop { len: 0 }),
        ),
        ("mapped SYN", mapped(BLOCKED4, 22)),
        ("UDP", Frame::udp_v6(BLOCKED6, DST6, 5000, 22)),
    ] {
        let built = (frame.ip_len() - 40) as u16;
        for payload in [built + 1, built + 6, 1500, 65535] {
            lab.expect(
                &format!("{what}, payload length {payload} of {built} bytes built"),
                &frame.clone().ipv6_payload_len(payload),
                PassTruncated,
            );
        }
        // The fixed header is there, the packet is not.
        let full = frame.full_len();
        for len in [14 + 40, full - 1] {
            lab.expect(
                &format!("{what} cut to {len} of {full} bytes"),
                &frame.clone().cut(len),
                PassTruncated,
            );
        }
    }
    // Shorter payload lengths: the packet ends early, the rest of the built bytes follow it.
    lab.expect(
        "SYN with payload length 0 (a bare header)",
        &syn6(BLOCKED6, 22).ipv6_payload_len(0),
        PassTruncated,
    );
    lab.expect(
        "SYN with payload length 13 (no flags), not a fragment",
        &syn6(BLOCKED6, 22).ipv6_payload_len(13),
        PassTruncated,
    );
    lab.expect(
        "first fragment with payload length 8 + 13 (no flags), from outside",
        &syn6(BLOCKED6, 22)
            .fragment(0, true)
            .ipv6_payload_len(8 + 13),
        DropFragmentEvasion,
    );
    lab.expect(
        "first fragment with payload length 8 + 4 (the ports), to port 80",
        &syn6(BLOCKED6, 80).fragment(0, true).ipv6_payload_len(8 + 4),
        PassUnprotectedPort,
    );
    lab.expect(
        "UDP with payload length 0",
        &Frame::udp_v6(BLOCKED6, DST6, 5000, 22).ipv6_payload_len(0),
        PassTruncated,
    );
    lab.finish();
}

/// Bytes after the IP packet: Ethernet pads frames shorter than 60 bytes with zeros (and XDP
/// sees the padding), a sender may append anything after the length its IP header declares,
/// and a packet whose length field is shorter than its bytes leaves the rest in the frame. The
/// parser reads nothing past the IP packet (IPv4 total length, IPv6 payload length), as the
/// kernel trims it before reassembly: such bytes change no verdict.
#[test]
fn bytes_after_the_ip_packet_are_ignored() {
    if !allowlist_tests::require_root("bytes_after_the_ip_packet_are_ignored") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    // Trailing bytes that would read as a SYN to port 22, or as flags with every bit set.
    let syn_header: [u8; 20] = [
        0x9c, 0x40, 0, 22, 1, 2, 3, 4, 0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let ones = [0xff; 20];
    // Whole segments: judged on the packet alone, whatever follows.
    let whole = [
        ("v4 SYN from outside", syn4(BLOCKED4, 22), DropSynV4),
        ("v4 SYN from lab A", syn4(ALLOWED4, 22), PassAllowedV4),
        ("v4 SYN to port 80", syn4(BLOCKED4, 80), PassUnprotectedPort),
        (
            "v4 ACK from outside",
            syn4(BLOCKED4, 22).flags(ACK),
            PassNotSyn,
        ),
        (
            "802.1Q v4 SYN from outside with IHL 15",
            syn4(BLOCKED4, 2222).vlan(TPID_8021Q, 42).ipv4_ihl(15),
            DropSynV4,
        ),
        (
            "v4 first fragment, SYN from outside",
            syn4(BLOCKED4, 22).fragment(0, true),
            DropSynV4,
        ),
        (
            "v4 non-first fragment",
            syn4(BLOCKED4, 22).fragment(8, false).l4_bytes(8),
            PassNonFirstFragment,
        ),
        (
            "v4 UDP to 22",
            Frame::udp_v4(BLOCKED4, DST4, 5000, 22),
            PassUnprotectedPort,
        ),
        ("v6 SYN from outside", syn6(BLOCKED6, 22), DropSynV6),
        ("v6 SYN from lab A", syn6(ALLOWED6, 22), PassAllowedV6),
        (
            "v6 SYN+ACK from outside",
            syn6(BLOCKED6, 22).flags(SYN | ACK),
            PassNotSyn,
        ),
        (
            "v6 SYN from outside behind hop-by-hop",
            syn6(BLOCKED6, 2222).ext(Ext::HopByHop { len: 0 }),
            DropSynV6,
        ),
        ("mapped SYN from outside", mapped(BLOCKED4, 22), DropSynV4),
    ];
    for (what, frame, want) in whole {
        let padded = (frame.len() + 6).max(60);
        lab.expect(
            &format!("{what}, padded to {padded} bytes"),
            &frame.clone().pad_to(padded),
            want,
        );
        lab.expect(
            &format!("{what}, padded to 1514 bytes"),
            &frame.clone().pad_to(1514),
            want,
        );
        lab.expect(
            &format!("{what}, a SYN header as trailer"),
            &frame.clone().trailer(&syn_header),
            want,
        );
        lab.expect(
            &format!("{what}, 0xff trailer and padding"),
            &frame.clone().trailer(&ones[..3]).pad_to(padded),
            want,
        );
    }
    // Short packets: padding does not complete the TCP header, nor supply the ports.
    for n in [0, 2, 4, 8, 13] {
        let pad = |frame: Frame| {
            let padded = (frame.len() + 6).max(60);
            frame.pad_to(padded)
        };
        let tiny4 = |src, port| syn4(src, port).fragment(0, true).l4_bytes(n);
        let tiny6 = |src, port| syn6(src, port).fragment(0, true).l4_bytes(n);
        let name = |what: &str| format!("{what} with {n} TCP bytes, padded");
        let unseen_port = if n >= 4 {
            PassUnprotectedPort
        } else {
            DropFragmentEvasion
        };
        lab.expect(
            &name("tiny v4 first fragment from outside"),
            &pad(tiny4(BLOCKED4, 22)),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("tiny v4 first fragment from outside to port 80"),
            &pad(tiny4(BLOCKED4, 80)),
            unseen_port,
        );
        lab.expect(
            &name("tiny v4 first fragment from lab A"),
            &pad(tiny4(ALLOWED4, 22)),
            PassAllowedV4,
        );
        lab.expect(
            &name("tiny v6 first fragment from outside"),
            &pad(tiny6(BLOCKED6, 22)),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("tiny v6 first fragment from outside to port 80"),
            &pad(tiny6(BLOCKED6, 80)),
            unseen_port,
        );
        lab.expect(
            &name("v4 SYN (not a fragment)"),
            &pad(syn4(BLOCKED4, 22).l4_bytes(n)),
            PassTruncated,
        );
        lab.expect(
            &name("v6 SYN (not a fragment)"),
            &pad(syn6(BLOCKED6, 22).l4_bytes(n)),
            PassTruncated,
        );
    }
    // A length field ending the packet after 8 TCP bytes, the rest of the built segment still
    // in the frame after it: its flags are not read.
    let v4_short = |frame: Frame| frame.ipv4_total_len(20 + 8);
    let v6_short = |frame: Frame| frame.ipv6_payload_len(8 + 8);
    lab.expect(
        "v4 first fragment ending after 8 TCP bytes, a SYN after it, from outside",
        &v4_short(syn4(BLOCKED4, 22).fragment(0, true)),
        DropFragmentEvasion,
    );
    lab.expect(
        "v4 first fragment ending after 8 TCP bytes, an ACK after it, from outside",
        &v4_short(syn4(BLOCKED4, 22).fragment(0, true).flags(ACK)),
        DropFragmentEvasion,
    );
    lab.expect(
        "v4 first fragment ending after 8 TCP bytes, to port 80",
        &v4_short(syn4(BLOCKED4, 80).fragment(0, true)),
        PassUnprotectedPort,
    );
    lab.expect(
        "v4 SYN ending after 8 TCP bytes (not a fragment)",
        &v4_short(syn4(BLOCKED4, 22)),
        PassTruncated,
    );
    lab.expect(
        "v6 first fragment ending after 8 TCP bytes, a SYN after it, from outside",
        &v6_short(syn6(BLOCKED6, 22).fragment(0, true)),
        DropFragmentEvasion,
    );
    lab.expect(
        "v6 first fragment ending after 8 TCP bytes, an ACK after it, from outside",
        &v6_short(syn6(BLOCKED6, 22).fragment(0, true).flags(ACK)),
        DropFragmentEvasion,
    );
    lab.expect(
        "v6 SYN behind an atomic fragment header ending after 8 TCP bytes",
        &v6_short(syn6(BLOCKED6, 22).fragment(0, false)),
        PassTruncated,
    );
    lab.finish();
}
