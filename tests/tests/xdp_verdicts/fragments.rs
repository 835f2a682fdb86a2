//! IPv4 and IPv6 fragments: first fragments judged like segments, later ones passed, tiny ones.

use super::*;

/// What the fragment cases that read the same in both families need of one.
struct Family<A> {
    syn: fn(A, u16) -> Frame,
    allowed: A,
    blocked: A,
    drop_syn: Reason,
    pass_allowed: Reason,
}

const V4: Family<Ipv4Addr> = Family {
    syn: syn4,
    allowed: ALLOWED4,
    blocked: BLOCKED4,
    drop_syn: DropSynV4,
    pass_allowed: PassAllowedV4,
};

const V6: Family<Ipv6Addr> = Family {
    syn: syn6,
    allowed: ALLOWED6,
    blocked: BLOCKED6,
    drop_syn: DropSynV6,
    pass_allowed: PassAllowedV6,
};

/// A first fragment that holds the whole TCP header is judged like any segment.
fn first_fragments_are_judged_like_segments<A: Copy>(lab: &mut Lab, family: &Family<A>) {
    let first = |src, port| {
        (family.syn)(src, port)
            .tcp_options(&SYN_OPTIONS)
            .fragment(0, true)
    };
    lab.expect(
        "first fragment, SYN from outside",
        &first(family.blocked, 22),
        family.drop_syn,
    );
    lab.expect(
        "first fragment, SYN from lab A",
        &first(family.allowed, 22),
        family.pass_allowed,
    );
    lab.expect(
        "first fragment, SYN+ACK from outside",
        &first(family.blocked, 22).flags(SYN | ACK),
        PassNotSyn,
    );
    lab.expect(
        "first fragment, SYN to port 80",
        &first(family.blocked, 80),
        PassUnprotectedPort,
    );
}

/// Tiny first fragments (RFC 1858): the flags are not there, so it could be a SYN.
fn tiny_first_fragments<A: Copy>(lab: &mut Lab, family: &Family<A>) {
    let tiny = |src, port, n| (family.syn)(src, port).fragment(0, true).l4_bytes(n);
    for n in 4..14 {
        let name = format!("tiny first fragment with {n} TCP bytes");
        lab.expect(
            &format!("{name} from outside to 22"),
            &tiny(family.blocked, 22, n),
            DropFragmentEvasion,
        );
        lab.expect(
            &format!("{name} from outside to 80"),
            &tiny(family.blocked, 80, n),
            PassUnprotectedPort,
        );
        lab.expect(
            &format!("{name} from lab A"),
            &tiny(family.allowed, 22, n),
            family.pass_allowed,
        );
    }
    // Without the ports, any protected port could be the target.
    for n in 0..4 {
        let name = format!("tiny first fragment with {n} TCP bytes");
        lab.expect(
            &format!("{name} from outside to 22"),
            &tiny(family.blocked, 22, n),
            DropFragmentEvasion,
        );
        lab.expect(
            &format!("{name} from outside to 80"),
            &tiny(family.blocked, 80, n),
            DropFragmentEvasion,
        );
        lab.expect(
            &format!("{name} from lab A"),
            &tiny(family.allowed, 80, n),
            family.pass_allowed,
        );
    }
}

#[test]
fn ipv4_fragments() {
    if !allowlist_tests::require_root("ipv4_fragments") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    first_fragments_are_judged_like_segments(&mut lab, &V4);
    lab.expect(
        "first fragment with 14 TCP bytes (flags just visible), SYN from outside",
        &syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(14),
        DropSynV4,
    );
    lab.expect(
        "first fragment with 14 TCP bytes, ACK from outside",
        &syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(14).flags(ACK),
        PassNotSyn,
    );
    // Non-first fragments pass, whatever their bytes look like.
    for (offset, more) in [(1, true), (1, false), (185, true), (8191, false)] {
        let name = format!("fragment at offset {offset} (MF {more})");
        lab.expect(
            &format!("{name}, SYN-looking bytes from outside"),
            &syn4(BLOCKED4, 22).fragment(offset, more),
            PassNonFirstFragment,
        );
        lab.expect(
            &format!("{name}, 2 bytes"),
            &syn4(BLOCKED4, 22).fragment(offset, more).l4_bytes(2),
            PassNonFirstFragment,
        );
        lab.expect(
            &format!("{name}, UDP"),
            &Frame::udp_v4(BLOCKED4, DST4, 5000, 22).fragment(offset, more),
            PassNonFirstFragment,
        );
    }
    tiny_first_fragments(&mut lab, &V4);
    // Without the flags, an ACK is no better than a SYN.
    for n in 4..14 {
        lab.expect(
            &format!("tiny first fragment with {n} TCP bytes from outside to 2222, ACK"),
            &syn4(BLOCKED4, 2222)
                .fragment(0, true)
                .l4_bytes(n)
                .flags(ACK),
            DropFragmentEvasion,
        );
    }
    lab.expect(
        "tiny first fragment with IHL 15, from outside",
        &syn4(BLOCKED4, 22)
            .ipv4_ihl(15)
            .fragment(0, true)
            .l4_bytes(8),
        DropFragmentEvasion,
    );
    lab.expect(
        "tiny first fragment behind QinQ, from outside",
        &syn4(BLOCKED4, 22)
            .vlan(TPID_8021AD, 1)
            .vlan(TPID_8021Q, 2)
            .fragment(0, true)
            .l4_bytes(8),
        DropFragmentEvasion,
    );
    // The same bytes without MF are just a short packet.
    lab.expect(
        "8 TCP bytes, not a fragment",
        &syn4(BLOCKED4, 22).l4_bytes(8),
        PassTruncated,
    );
    lab.expect(
        "8 TCP bytes with DF",
        &syn4(BLOCKED4, 22).dont_fragment().l4_bytes(8),
        PassTruncated,
    );
    lab.expect(
        "tiny first fragment of UDP",
        &Frame::udp_v4(BLOCKED4, DST4, 5000, 22)
            .fragment(0, true)
            .l4_bytes(2),
        PassUnprotectedPort,
    );
    lab.finish();
}

#[test]
fn ipv6_fragments() {
    if !allowlist_tests::require_root("ipv6_fragments") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    first_fragments_are_judged_like_segments(&mut lab, &V6);
    lab.expect(
        "first fragment with 14 TCP bytes, SYN from outside",
        &syn6(BLOCKED6, 22).fragment(0, true).l4_bytes(14),
        DropSynV6,
    );
    for (offset, more) in [(1, true), (1, false), (185, true), (8191, false)] {
        let name = format!("fragment at offset {offset} (M {more})");
        lab.expect(
            &format!("{name}, SYN-looking bytes from outside"),
            &syn6(BLOCKED6, 22).fragment(offset, more),
            PassNonFirstFragment,
        );
        lab.expect(
            &format!("{name} behind hop-by-hop"),
            &syn6(BLOCKED6, 22)
                .ext(Ext::HopByHop { len: 0 })
                .fragment(offset, more),
            PassNonFirstFragment,
        );
        lab.expect(
            &format!("{name}, UDP"),
            &Frame::udp_v6(BLOCKED6, DST6, 5000, 22).fragment(offset, more),
            PassNonFirstFragment,
        );
    }
    tiny_first_fragments(&mut lab, &V6);
    // Mapped sources are judged as IPv4 ones, behind a fragment header too.
    for n in 4..14 {
        let name = format!("tiny first fragment with {n} TCP bytes");
        lab.expect(
            &format!("{name}, mapped from outside"),
            &mapped(BLOCKED4, 22).fragment(0, true).l4_bytes(n),
            DropFragmentEvasion,
        );
        lab.expect(
            &format!("{name}, mapped from lab A"),
            &mapped(ALLOWED4, 22).fragment(0, true).l4_bytes(n),
            PassAllowedV4,
        );
    }
    // A first fragment whose header chain ends inside the fragment: the rest (and the TCP
    // header) would follow in the next fragment. Its payload length ends one byte into the
    // destination options header (after the 8-byte fragment header); the rest of the built
    // bytes stay in the frame, after the packet, and are not read.
    let chain_cut = |src, more| {
        syn6(src, 22)
            .fragment(0, more)
            .ext(Ext::DestOpts { len: 1 })
            .vlan(TPID_8021Q, 7)
            .ipv6_payload_len(8 + 1)
    };
    lab.expect(
        "first fragment whose chain ends in a destination options header, from outside",
        &chain_cut(BLOCKED6, true),
        DropFragmentEvasion,
    );
    lab.expect(
        "first fragment whose chain ends early, from lab A",
        &chain_cut(ALLOWED6, true),
        PassAllowedV6,
    );
    lab.expect(
        "first fragment whose chain ends early, to port 80 (port unseen)",
        &syn6(BLOCKED6, 80)
            .fragment(0, true)
            .ext(Ext::DestOpts { len: 1 })
            .ipv6_payload_len(8 + 1),
        DropFragmentEvasion,
    );
    lab.expect(
        "atomic fragment (M clear) whose chain ends early",
        &chain_cut(BLOCKED6, false),
        PassTruncated,
    );
    lab.expect(
        "payload length ending inside the fragment header (M unseen)",
        &syn6(BLOCKED6, 22)
            .fragment(0, true)
            .ext(Ext::DestOpts { len: 1 })
            .ipv6_payload_len(4),
        PassTruncated,
    );
    // The same first fragment with its real payload length, in a frame that ends one byte
    // into the destination options header: shorter than the packet it claims, so discarded by
    // the kernel's IP layer, and passed.
    let frame = syn6(BLOCKED6, 22)
        .fragment(0, true)
        .ext(Ext::DestOpts { len: 1 })
        .vlan(TPID_8021Q, 7);
    let keep = frame.l4_offset() - 16 + 1;
    lab.expect(
        "first fragment cut inside its chain (frame shorter than the packet), from outside",
        &frame.cut(keep),
        PassTruncated,
    );
    lab.expect(
        "8 TCP bytes behind an atomic fragment header",
        &syn6(BLOCKED6, 22).fragment(0, false).l4_bytes(8),
        PassTruncated,
    );
    lab.expect(
        "8 TCP bytes, no fragment header",
        &syn6(BLOCKED6, 22).l4_bytes(8),
        PassTruncated,
    );
    lab.expect(
        "tiny first fragment of UDP",
        &Frame::udp_v6(BLOCKED6, DST6, 5000, 22)
            .fragment(0, true)
            .l4_bytes(2),
        PassUnprotectedPort,
    );
    lab.finish();
}

/// The attack the third rule stops: a tiny first fragment (no TCP flags in the packet)
/// followed by bytes after the IP packet, Ethernet padding or a trailer, looks to a parser
/// bounded by the frame rather than the packet like a whole TCP header whose flags are
/// whatever the trailing bytes say, e.g. ACK or zero: "not a SYN", passed, and reassembled
/// behind the filter into a SYN. The parser reads nothing past the packet, so these frames
/// stay tiny fragments, dropped from sources outside the list.
#[test]
fn tiny_fragment_with_trailing_bytes() {
    if !allowlist_tests::require_root("tiny_fragment_with_trailing_bytes") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    // The rest of a TCP header with the ACK flag: the trailer a parser reads as TCP bytes
    // n.. of an n-byte fragment.
    let ack_header: [u8; 20] = [
        0x9c, 0x40, 0, 22, 1, 2, 3, 4, 0, 0, 0, 0, 0x50, ACK, 0xff, 0xff, 0, 0, 0, 0,
    ];
    for n in [0, 2, 8, 13] {
        let name = format!("tiny v4 first fragment with {n} TCP bytes");
        let frame = syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(n);
        lab.expect(
            &format!("{name}, padded to 60 bytes"),
            &frame.clone().pad_to(60),
            DropFragmentEvasion,
        );
        lab.expect(
            &format!("{name}, trailer with ACK flags"),
            &frame.trailer(&ack_header[n..]),
            DropFragmentEvasion,
        );
    }
    let frame = syn6(BLOCKED6, 22).fragment(0, true).l4_bytes(8);
    lab.expect(
        "tiny v6 first fragment with 8 TCP bytes, trailer with ACK flags",
        &frame.trailer(&ack_header[8..]),
        DropFragmentEvasion,
    );
    // Trailing bytes after a whole segment change nothing.
    lab.expect(
        "v4 SYN with a trailer",
        &syn4(BLOCKED4, 22).trailer(&ack_header).pad_to(60),
        DropSynV4,
    );
    lab.finish();
}
