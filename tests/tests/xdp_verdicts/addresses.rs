//! IPv4-mapped IPv6 sources and the edges of every entry.

use super::*;

#[test]
fn ipv4_mapped_ipv6_sources() {
    if !allowlist_tests::require_root("ipv4_mapped_ipv6_sources") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    lab.expect(
        "::ffff:198.18.1.2 (lab A)",
        &mapped(ALLOWED4, 22),
        PassAllowedV4,
    );
    lab.expect(
        "::ffff:198.18.2.2 (outside)",
        &mapped(BLOCKED4, 22),
        DropSynV4,
    );
    lab.expect(
        "::ffff:198.18.5.8 (lab B)",
        &mapped(v4("198.18.5.8"), 2222),
        PassAllowedV4,
    );
    lab.expect(
        "::ffff:198.18.9.7 (bastion)",
        &mapped(v4("198.18.9.7"), 22),
        PassAllowedV4,
    );
    lab.expect(
        "::ffff:198.18.9.8 (next to it)",
        &mapped(v4("198.18.9.8"), 22),
        DropSynV4,
    );
    lab.expect(
        "::ffff:198.18.2.2 to port 80",
        &mapped(BLOCKED4, 80),
        PassUnprotectedPort,
    );
    lab.expect(
        "::ffff:198.18.2.2 behind QinQ and hop-by-hop",
        &mapped(BLOCKED4, 22)
            .vlan(TPID_8021AD, 3)
            .vlan(TPID_8021Q, 4)
            .ext(Ext::HopByHop { len: 0 }),
        DropSynV4,
    );
    // Looks like a mapped address in its last 48 bits, but has a prefix: IPv6.
    lab.expect(
        "2001:db8::ffff:198.18.1.2 is not mapped",
        &syn6(v6("2001:db8::ffff:198.18.1.2"), 22),
        DropSynV6,
    );
    lab.finish();
}

#[test]
fn prefix_boundaries() {
    if !allowlist_tests::require_root("prefix_boundaries") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let v4_cases = [
        ("198.18.0.255", false, "just below lab A"),
        ("198.18.1.0", true, "first of lab A"),
        ("198.18.1.255", true, "last of lab A"),
        ("198.18.2.0", false, "just above lab A"),
        ("198.18.3.255", false, "just below lab B /22"),
        ("198.18.4.0", true, "first of lab B"),
        ("198.18.5.7", true, "inside lab B"),
        ("198.18.5.8", true, "inside lab B"),
        ("198.18.7.255", true, "last of lab B"),
        ("198.18.8.0", false, "just above lab B"),
        ("198.18.9.6", false, "below the bastion /32"),
        ("198.18.9.7", true, "the bastion"),
        ("198.18.9.8", false, "above the bastion"),
        ("198.18.9.0", false, "same /24 as the bastion"),
        ("198.18.10.0", false, "lower half of 198.18.10.0/24"),
        ("198.18.10.127", false, "last of the lower half"),
        ("198.18.10.128", true, "first of the upper half /25"),
        ("198.18.10.255", true, "last of the upper half"),
        ("198.18.11.0", false, "after the upper half"),
        ("198.19.63.255", false, "just below the /18"),
        ("198.19.64.0", true, "first of the /18"),
        ("198.19.100.100", true, "inside the /18"),
        ("198.19.127.255", true, "last of the /18"),
        ("198.19.128.0", false, "just above the /18"),
        ("198.18.0.0", false, "first of 198.18.0.0/15"),
        ("198.19.255.255", false, "last of 198.18.0.0/15"),
    ];
    for (addr, allowed, what) in v4_cases {
        let want = if allowed { PassAllowedV4 } else { DropSynV4 };
        lab.expect(&format!("{addr} ({what})"), &syn4(v4(addr), 22), want);
        lab.expect(
            &format!("::ffff:{addr} ({what})"),
            &mapped(v4(addr), 22),
            want,
        );
    }
    let v6_cases = [
        (
            "2001:db8:0:ffff:ffff:ffff:ffff:ffff",
            false,
            "just below lab A v6",
        ),
        ("2001:db8:1::", true, "first of lab A v6"),
        (
            "2001:db8:1:ffff:ffff:ffff:ffff:ffff",
            true,
            "last of lab A v6",
        ),
        ("2001:db8:2::", false, "just above lab A v6"),
        ("2001:db8::9", false, "below the v6 bastion"),
        ("2001:db8::a", true, "the v6 bastion"),
        ("2001:db8::b", false, "above the v6 bastion"),
        (
            "2001:db8:ff:ffff:ffff:ffff:ffff:ffff",
            false,
            "just below the /40",
        ),
        ("2001:db8:100::", true, "first of the /40"),
        (
            "2001:db8:1ff:ffff:ffff:ffff:ffff:ffff",
            true,
            "last of the /40",
        ),
        ("2001:db8:200::", false, "just above the /40"),
        (
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            false,
            "last of 2001:db8::/32",
        ),
    ];
    for (addr, allowed, what) in v6_cases {
        let want = if allowed { PassAllowedV6 } else { DropSynV6 };
        lab.expect(&format!("{addr} ({what})"), &syn6(v6(addr), 22), want);
    }
    lab.finish();
}
