//! Connection openers from allowed and blocked sources, later segments, unprotected ports.

use super::*;

#[test]
fn syn_v4_allowed_and_blocked() {
    if !allowlist_tests::require_root("syn_v4_allowed_and_blocked") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for port in [22, 2222] {
        lab.expect("v4 SYN from lab A", &syn4(ALLOWED4, port), PassAllowedV4);
        lab.expect("v4 SYN from outside", &syn4(BLOCKED4, port), DropSynV4);
    }
    let linux_syn = |src| syn4(src, 22).tcp_options(&SYN_OPTIONS).dont_fragment();
    lab.expect(
        "v4 SYN with options from lab A",
        &linux_syn(ALLOWED4),
        PassAllowedV4,
    );
    lab.expect(
        "v4 SYN with options from outside",
        &linux_syn(BLOCKED4),
        DropSynV4,
    );
    lab.expect(
        "v4 SYN with data (TFO) from outside",
        &linux_syn(BLOCKED4).payload(b"GET / HTTP/1.0\r\n\r\n"),
        DropSynV4,
    );
    lab.expect(
        "v4 SYN from outside, source port 22",
        &Frame::tcp_v4(BLOCKED4, DST4, 22, 22),
        DropSynV4,
    );
    lab.finish();
}

#[test]
fn syn_v6_allowed_and_blocked() {
    if !allowlist_tests::require_root("syn_v6_allowed_and_blocked") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for port in [22, 2222] {
        lab.expect("v6 SYN from lab A", &syn6(ALLOWED6, port), PassAllowedV6);
        lab.expect(
            "v6 SYN from the v6 bastion",
            &syn6(v6("2001:db8::a"), port),
            PassAllowedV6,
        );
        lab.expect("v6 SYN from outside", &syn6(BLOCKED6, port), DropSynV6);
    }
    lab.expect(
        "v6 SYN with options from outside",
        &syn6(BLOCKED6, 22).tcp_options(&SYN_OPTIONS),
        DropSynV6,
    );
    lab.expect(
        "v6 SYN with options from lab A",
        &syn6(ALLOWED6, 22).tcp_options(&SYN_OPTIONS),
        PassAllowedV6,
    );
    lab.finish();
}

#[test]
fn non_syn_segments_pass_from_blocked_sources() {
    if !allowlist_tests::require_root("non_syn_segments_pass_from_blocked_sources") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let not_openers = [
        ("SYN+ACK", SYN | ACK),
        ("ACK", ACK),
        ("RST", RST),
        ("RST+ACK", RST | ACK),
        ("FIN", FIN),
        ("FIN+ACK", FIN | ACK),
        ("PSH+ACK", PSH | ACK),
        ("no flags", 0),
        ("FIN+PSH+URG", FIN | PSH | URG),
        ("every flag", 0xff),
        ("SYN+ACK+ECE", SYN | ACK | ECE),
    ];
    for (what, flags) in not_openers {
        lab.expect(
            &format!("v4 {what}"),
            &syn4(BLOCKED4, 22).flags(flags),
            PassNotSyn,
        );
        lab.expect(
            &format!("v6 {what}"),
            &syn6(BLOCKED6, 22).flags(flags),
            PassNotSyn,
        );
        lab.expect(
            &format!("mapped {what}"),
            &mapped(BLOCKED4, 22).flags(flags),
            PassNotSyn,
        );
    }
    // Anything with SYN and without ACK opens a connection (or tries to).
    let openers = [
        ("SYN+FIN", SYN | FIN),
        ("SYN+RST", SYN | RST),
        ("SYN+PSH", SYN | PSH),
        ("SYN+URG", SYN | URG),
        ("SYN+ECE+CWR (ECN setup)", SYN | ECE | CWR),
        ("every flag but ACK", !ACK),
    ];
    for (what, flags) in openers {
        lab.expect(
            &format!("v4 {what}"),
            &syn4(BLOCKED4, 22).flags(flags),
            DropSynV4,
        );
        lab.expect(
            &format!("v6 {what}"),
            &syn6(BLOCKED6, 22).flags(flags),
            DropSynV6,
        );
    }
    lab.finish();
}

#[test]
fn unprotected_ports_pass() {
    if !allowlist_tests::require_root("unprotected_ports_pass") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    for port in [0, 1, 21, 23, 80, 443, 2221, 2223, 8022, 65535] {
        let name = format!("SYN to port {port}");
        lab.expect(
            &format!("v4 {name}"),
            &syn4(BLOCKED4, port),
            PassUnprotectedPort,
        );
        lab.expect(
            &format!("v6 {name}"),
            &syn6(BLOCKED6, port),
            PassUnprotectedPort,
        );
        lab.expect(
            &format!("mapped {name}"),
            &mapped(BLOCKED4, port),
            PassUnprotectedPort,
        );
    }
    lab.finish();
}
