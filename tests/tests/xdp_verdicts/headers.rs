//! VLAN tags, IPv4 options and IPv6 extension headers in front of the TCP header.

use super::*;

#[test]
fn vlan_and_qinq() {
    if !allowlist_tests::require_root("vlan_and_qinq") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let stacks: [&[(u16, u16)]; 7] = [
        &[(TPID_8021Q, 10)],
        &[(TPID_8021Q, 0)], // priority tag
        &[(TPID_8021AD, 4095)],
        &[(TPID_8021AD, 100), (TPID_8021Q, 10)], // QinQ
        &[(TPID_8021Q, 100), (TPID_8021Q, 10)],  // double 802.1Q
        &[(TPID_8021Q, 100), (TPID_8021AD, 10)], // tags in the other order
        &[(TPID_8021AD, 100), (TPID_8021AD, 10)],
    ];
    let tag = |mut frame: Frame, stack: &[(u16, u16)]| {
        for &(tpid, vid) in stack {
            frame = frame.vlan(tpid, vid);
        }
        frame
    };
    for stack in stacks {
        let name = |what: &str| format!("{what} behind tags {stack:04x?}");
        lab.expect(
            &name("v4 SYN from lab A"),
            &tag(syn4(ALLOWED4, 22), stack),
            PassAllowedV4,
        );
        lab.expect(
            &name("v4 SYN from outside"),
            &tag(syn4(BLOCKED4, 22), stack),
            DropSynV4,
        );
        lab.expect(
            &name("v6 SYN from lab A"),
            &tag(syn6(ALLOWED6, 22), stack),
            PassAllowedV6,
        );
        lab.expect(
            &name("v6 SYN from outside"),
            &tag(syn6(BLOCKED6, 2222), stack),
            DropSynV6,
        );
        lab.expect(
            &name("v4 SYN+ACK from outside"),
            &tag(syn4(BLOCKED4, 22).flags(SYN | ACK), stack),
            PassNotSyn,
        );
        lab.expect(
            &name("v4 SYN to port 80"),
            &tag(syn4(BLOCKED4, 80), stack),
            PassUnprotectedPort,
        );
    }
    // A third tag is more than the parser follows: the frame is not IP to it.
    let three: [&[(u16, u16)]; 3] = [
        &[(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)],
        &[(TPID_8021Q, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)],
        &[(TPID_8021AD, 1), (TPID_8021AD, 2), (TPID_8021AD, 3)],
    ];
    for stack in three {
        let name = |what: &str| format!("{what} behind three tags {stack:04x?}");
        lab.expect(
            &name("v4 SYN from outside"),
            &tag(syn4(BLOCKED4, 22), stack),
            PassNotIp,
        );
        lab.expect(
            &name("v4 SYN from lab A"),
            &tag(syn4(ALLOWED4, 22), stack),
            PassNotIp,
        );
        lab.expect(
            &name("v6 SYN from outside"),
            &tag(syn6(BLOCKED6, 22), stack),
            PassNotIp,
        );
    }
    lab.expect(
        "ARP behind one tag",
        &Frame::arp(BLOCKED4, DST4).vlan(TPID_8021Q, 5),
        PassNotIp,
    );
    lab.finish();
}

#[test]
fn ipv4_options() {
    if !allowlist_tests::require_root("ipv4_options") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for ihl in 5..=15 {
        let name = |what: &str| format!("{what}, IHL {ihl}");
        lab.expect(
            &name("SYN from outside"),
            &syn4(BLOCKED4, 22).ipv4_ihl(ihl),
            DropSynV4,
        );
        lab.expect(
            &name("SYN from lab A"),
            &syn4(ALLOWED4, 22).ipv4_ihl(ihl),
            PassAllowedV4,
        );
        lab.expect(
            &name("SYN+ACK from outside"),
            &syn4(BLOCKED4, 22).ipv4_ihl(ihl).flags(SYN | ACK),
            PassNotSyn,
        );
        lab.expect(
            &name("SYN to port 80"),
            &syn4(BLOCKED4, 80).ipv4_ihl(ihl),
            PassUnprotectedPort,
        );
        lab.expect(
            &name("SYN from outside with TCP options"),
            &syn4(BLOCKED4, 2222).ipv4_ihl(ihl).tcp_options(&SYN_OPTIONS),
            DropSynV4,
        );
    }
    // Real options rather than NOPs: router alert; record route with room for 9 addresses;
    // a timestamp option.
    let router_alert = [0x94, 4, 0, 0];
    let mut record_route = vec![7, 39, 4];
    record_route.resize(39, 0);
    let timestamp = [68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for (what, options) in [
        ("router alert", &router_alert[..]),
        ("record route", &record_route[..]),
        ("timestamp", &timestamp[..]),
    ] {
        lab.expect(
            &format!("SYN from outside with {what}"),
            &syn4(BLOCKED4, 22).ipv4_options(options),
            DropSynV4,
        );
        lab.expect(
            &format!("SYN from lab A with {what}"),
            &syn4(ALLOWED4, 22).ipv4_options(options),
            PassAllowedV4,
        );
    }
    lab.finish();
}

#[test]
fn ipv6_extension_headers() {
    if !allowlist_tests::require_root("ipv6_extension_headers") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for (what, ext) in ext_kinds() {
        let name = |s: &str| format!("{s} behind {what}");
        lab.expect(
            &name("SYN from outside"),
            &syn6(BLOCKED6, 22).ext(ext),
            DropSynV6,
        );
        lab.expect(
            &name("SYN from lab A"),
            &syn6(ALLOWED6, 22).ext(ext),
            PassAllowedV6,
        );
        lab.expect(
            &name("SYN+ACK from outside"),
            &syn6(BLOCKED6, 22).ext(ext).flags(SYN | ACK),
            PassNotSyn,
        );
        lab.expect(
            &name("SYN to port 80"),
            &syn6(BLOCKED6, 80).ext(ext),
            PassUnprotectedPort,
        );
        lab.expect(
            &name("mapped SYN from outside"),
            &mapped(BLOCKED4, 22).ext(ext),
            DropSynV4,
        );
        lab.expect(
            &name("UDP to port 22"),
            &Frame::udp_v6(BLOCKED6, DST6, 5000, 22).ext(ext),
            PassUnprotectedPort,
        );
    }
    let several: [&[Ext]; 4] = [
        &[Ext::HopByHop { len: 0 }, Ext::DestOpts { len: 0 }],
        &[
            Ext::HopByHop { len: 1 },
            Ext::Routing {
                len: 0,
                segments_left: 0,
            },
            Ext::Fragment {
                offset: 0,
                more: false,
                id: 1,
            },
        ],
        &[
            Ext::Ah { len: 4 },
            Ext::DestOpts { len: 2 },
            Ext::Ah { len: 2 },
        ],
        &six_ext(),
    ];
    for chain in several {
        let name = |s: &str| format!("{s} behind {} headers {chain:?}", chain.len());
        lab.expect(
            &name("SYN from outside"),
            &with_ext(syn6(BLOCKED6, 22), chain),
            DropSynV6,
        );
        lab.expect(
            &name("SYN from lab A"),
            &with_ext(syn6(ALLOWED6, 22), chain),
            PassAllowedV6,
        );
        lab.expect(
            &name("ACK from outside"),
            &with_ext(syn6(BLOCKED6, 22).flags(ACK), chain),
            PassNotSyn,
        );
        lab.expect(
            &name("SYN to port 443"),
            &with_ext(syn6(BLOCKED6, 443), chain),
            PassUnprotectedPort,
        );
    }
    lab.finish();
}

#[test]
fn ipv6_header_chain_bound() {
    if !allowlist_tests::require_root("ipv6_header_chain_bound") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    // Exactly the bound: judged as usual.
    let six = six_ext();
    lab.expect(
        "SYN from outside behind 6 headers",
        &with_ext(syn6(BLOCKED6, 22), &six),
        DropSynV6,
    );
    lab.expect(
        "UDP from outside behind 6 headers",
        &with_ext(Frame::udp_v6(BLOCKED6, DST6, 5000, 22), &six),
        PassUnprotectedPort,
    );
    // Past the bound the parser cannot see what follows: it could be a SYN to any port.
    for extra in [1, 2, 4] {
        let mut chain = six.clone();
        chain.extend(std::iter::repeat_n(Ext::DestOpts { len: 0 }, extra));
        let n = chain.len();
        let name = |s: &str| format!("{s} behind {n} headers");
        lab.expect(
            &name("SYN from outside to 22"),
            &with_ext(syn6(BLOCKED6, 22), &chain),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("SYN from outside to 80 (port unseen)"),
            &with_ext(syn6(BLOCKED6, 80), &chain),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("SYN+ACK from outside (flags unseen)"),
            &with_ext(syn6(BLOCKED6, 22).flags(SYN | ACK), &chain),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("UDP from outside (protocol unseen)"),
            &with_ext(Frame::udp_v6(BLOCKED6, DST6, 5000, 53), &chain),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("SYN from lab A"),
            &with_ext(syn6(ALLOWED6, 22), &chain),
            PassAllowedV6,
        );
        lab.expect(
            &name("mapped SYN from outside"),
            &with_ext(mapped(BLOCKED4, 22), &chain),
            DropFragmentEvasion,
        );
        lab.expect(
            &name("mapped SYN from lab A"),
            &with_ext(mapped(ALLOWED4, 22), &chain),
            PassAllowedV4,
        );
    }
    // The seventh header is a non-first fragment header: still past the bound.
    let mut chain = six.clone();
    chain.push(Ext::Fragment {
        offset: 100,
        more: false,
        id: 3,
    });
    lab.expect(
        "7th header a non-first fragment header",
        &with_ext(syn6(BLOCKED6, 22), &chain),
        DropFragmentEvasion,
    );
    // A non-first fragment header inside the bound decides first.
    let mut chain = six.clone();
    chain[3] = Ext::Fragment {
        offset: 100,
        more: true,
        id: 3,
    };
    chain.push(Ext::DestOpts { len: 0 });
    lab.expect(
        "non-first fragment header 4th of 7",
        &with_ext(syn6(BLOCKED6, 22), &chain),
        PassNonFirstFragment,
    );
    lab.finish();
}
