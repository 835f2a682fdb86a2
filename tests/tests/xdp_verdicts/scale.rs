//! A program sized for a million entries.

use super::*;

#[test]
fn a_million_entry_program_with_100k_entries() {
    if !allowlist_tests::require_root("a_million_entry_program_with_100k_entries") {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::with_capacity(1_048_576, lab_rules());
    let loaded = started.elapsed();
    // 32,768 IPv4 hosts (the odd addresses of 198.19.0.0/16; the lab's 198.19.64.0/18 would
    // cover some of them, so it is left out), 128 IPv4 /24s covering 198.18.128.0/17, and
    // 67,200 IPv6 hosts (even addresses under 2001:db8:2::/64), on top of the lab entries.
    let mut rules = lab_rules();
    rules.lists[0].entries.remove(&net("198.19.64.0/18"));
    for host in (1..65536u32).step_by(2) {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) | host);
        rules.lists[0]
            .entries
            .insert(IpNet::from(std::net::IpAddr::V4(addr)));
    }
    for third in 128..=255u8 {
        rules.lists[0]
            .entries
            .insert(net(&format!("198.18.{third}.0/24")));
    }
    let v6_base = u128::from(v6("2001:db8:2::"));
    for i in 0..67_200u128 {
        let addr = Ipv6Addr::from(v6_base | (i * 2));
        rules.lists[0]
            .entries
            .insert(IpNet::from(std::net::IpAddr::V6(addr)));
    }
    assert!(
        rules.lists[0].entries.len() >= 100_000,
        "{}",
        rules.lists[0].entries.len()
    );
    let applying = Instant::now();
    lab.apply(rules);
    let applied = applying.elapsed();
    eprintln!(
        "{} entries: load {loaded:?}, apply {applied:?}",
        lab.rules.lists[0].entries.len()
    );

    // Hand-written expectations: the reference would scan 100,000 entries per frame.
    let cases: Vec<(String, Frame, Reason)> = vec![
        ("lab A".into(), syn4(ALLOWED4, 22), PassAllowedV4),
        ("outside".into(), syn4(BLOCKED4, 22), DropSynV4),
        (
            "198.19.64.0 (the /18 left out)".into(),
            syn4(v4("198.19.64.0"), 22),
            DropSynV4,
        ),
        (
            "198.18.200.1 (a /24)".into(),
            syn4(v4("198.18.200.1"), 22),
            PassAllowedV4,
        ),
        (
            "198.18.127.255".into(),
            syn4(v4("198.18.127.255"), 22),
            DropSynV4,
        ),
        ("v6 lab A".into(), syn6(ALLOWED6, 22), PassAllowedV6),
        (
            "2001:db8:2::1:0".into(),
            syn6(v6("2001:db8:2::1:0"), 22),
            PassAllowedV6,
        ),
        (
            "2001:db8:2::1:1".into(),
            syn6(v6("2001:db8:2::1:1"), 22),
            DropSynV6,
        ),
        (
            "2001:db8:2::2:cfe (the last)".into(),
            syn6(v6("2001:db8:2::2:cfe"), 22),
            PassAllowedV6,
        ),
        (
            "2001:db8:2::2:d00 (past the last)".into(),
            syn6(v6("2001:db8:2::2:d00"), 22),
            DropSynV6,
        ),
    ];
    for (name, frame, want) in &cases {
        lab.check_against(name, frame, *want);
    }
    // Every host of the first and last two /24s of 198.19.0.0/16: odd ones allowed, even ones
    // not.
    for host in (0..512u32).chain(65024..65536) {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) | host);
        let want = if host % 2 == 1 {
            PassAllowedV4
        } else {
            DropSynV4
        };
        lab.check_against(&format!("{addr}"), &syn4(addr, 22), want);
    }
    let total = started.elapsed();
    eprintln!("total {total:?}");
    lab.finish();
}
