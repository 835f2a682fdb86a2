//! Inactive lists, no protected ports, changes applied to a loaded program, the emergency deadline, the counters.

use super::*;

/// Frames that the lab rules drop, and some they pass, for tests that change the rules.
fn battery() -> Vec<(&'static str, Frame)> {
    let mut six_plus = six_ext();
    six_plus.push(Ext::HopByHop { len: 0 });
    vec![
        ("v4 SYN from outside", syn4(BLOCKED4, 22)),
        ("v4 SYN from lab A", syn4(ALLOWED4, 22)),
        ("v6 SYN from outside", syn6(BLOCKED6, 2222)),
        ("v6 SYN from lab A", syn6(ALLOWED6, 2222)),
        ("mapped SYN from outside", mapped(BLOCKED4, 22)),
        (
            "QinQ v4 SYN from outside",
            syn4(BLOCKED4, 22).vlan(TPID_8021AD, 1).vlan(TPID_8021Q, 2),
        ),
        ("v4 SYN with IHL 15", syn4(BLOCKED4, 22).ipv4_ihl(15)),
        (
            "v6 SYN behind headers",
            with_ext(syn6(BLOCKED6, 22), &six_ext()),
        ),
        (
            "v6 chain past the bound",
            with_ext(syn6(BLOCKED6, 22), &six_plus),
        ),
        (
            "v4 tiny first fragment, no ports",
            syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(2),
        ),
        (
            "v4 tiny first fragment with ports",
            syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(8),
        ),
        (
            "v6 tiny first fragment",
            syn6(BLOCKED6, 22).fragment(0, true).l4_bytes(8),
        ),
        (
            "v6 tiny first fragment, no ports",
            syn6(BLOCKED6, 22).fragment(0, true).l4_bytes(0),
        ),
        ("v4 SYN+ACK", syn4(BLOCKED4, 22).flags(SYN | ACK)),
        ("v4 SYN to port 80", syn4(BLOCKED4, 80)),
        (
            "v4 non-first fragment",
            syn4(BLOCKED4, 22).fragment(3, false),
        ),
        ("ARP", Frame::arp(BLOCKED4, DST4)),
        ("v6 UDP", Frame::udp_v6(BLOCKED6, DST6, 1, 22)),
    ]
}

#[test]
fn inactive_list_passes_everything() {
    if !allowlist_tests::require_root("inactive_list_passes_everything") {
        return;
    }
    let mut lab = Lab::new(lab_with(|list| list.mode = Mode::Off));
    for (name, frame) in battery() {
        let reason = lab.check(name, &frame);
        assert!(
            !reason.is_drop(),
            "{name}: the reference drops with the list inactive"
        );
    }
    lab.expect(
        "v4 SYN from outside, inactive",
        &syn4(BLOCKED4, 22),
        PassInactive,
    );
    lab.expect(
        "v6 SYN from outside, inactive",
        &syn6(BLOCKED6, 22),
        PassInactive,
    );
    lab.expect(
        "v4 tiny fragment, inactive",
        &syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(2),
        PassInactive,
    );
    // Inactive and no port protected: the port check comes first.
    lab.apply(lab_with(|list| {
        list.mode = Mode::Off;
        list.tcp_ports.clear();
    }));
    lab.expect(
        "v4 SYN, nothing protected",
        &syn4(BLOCKED4, 22),
        PassUnprotectedPort,
    );
    for (name, frame) in battery() {
        let reason = lab.check(name, &frame);
        assert!(
            !reason.is_drop(),
            "{name}: the reference drops with the list inactive"
        );
    }
    lab.finish();
}

#[test]
fn no_protected_ports_passes_everything() {
    if !allowlist_tests::require_root("no_protected_ports_passes_everything") {
        return;
    }
    let mut lab = Lab::new(lab_with(|list| list.tcp_ports.clear()));
    for (name, frame) in battery() {
        let reason = lab.check(name, &frame);
        assert!(
            !reason.is_drop(),
            "{name}: the reference drops with no port protected"
        );
    }
    lab.expect(
        "v4 tiny fragment without ports, nothing protected",
        &syn4(BLOCKED4, 22).fragment(0, true).l4_bytes(2),
        PassUnprotectedPort,
    );
    lab.finish();
}

#[test]
fn apply_flips_verdicts() {
    if !allowlist_tests::require_root("apply_flips_verdicts") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let src4 = v4("198.18.2.77");
    let src6 = v6("2001:db8:2::77");
    lab.expect("before: v4 outside", &syn4(src4, 22), DropSynV4);
    lab.expect("before: v6 outside", &syn6(src6, 22), DropSynV6);

    let mut rules = lab_rules();
    rules.lists[0].entries.insert(net("198.18.2.0/24"));
    rules.lists[0].entries.insert(net("2001:db8:2::/48"));
    lab.apply(rules);
    lab.expect("after adding: v4", &syn4(src4, 22), PassAllowedV4);
    lab.expect("after adding: v6", &syn6(src6, 22), PassAllowedV6);
    lab.expect(
        "after adding: lab A still",
        &syn4(ALLOWED4, 22),
        PassAllowedV4,
    );
    lab.expect(
        "after adding: neighbour",
        &syn4(v4("198.18.3.1"), 22),
        DropSynV4,
    );

    // A host entry inside a /24 that had none (the prefilter slot turns partial).
    let mut rules = lab_rules();
    rules.lists[0].entries.insert(net("198.18.2.77/32"));
    lab.apply(rules);
    lab.expect(
        "/24 replaced by /32: the host",
        &syn4(src4, 22),
        PassAllowedV4,
    );
    lab.expect(
        "/24 replaced by /32: next host",
        &syn4(v4("198.18.2.78"), 22),
        DropSynV4,
    );
    lab.expect("/48 removed: v6", &syn6(src6, 22), DropSynV6);

    lab.apply(lab_rules());
    lab.expect("after removing: v4", &syn4(src4, 22), DropSynV4);
    lab.expect("after removing: v6", &syn6(src6, 22), DropSynV6);

    // Ports.
    let mut rules = lab_rules();
    rules.lists[0].tcp_ports.insert(80);
    rules.lists[0].tcp_ports.remove(&2222);
    lab.apply(rules);
    lab.expect("port 80 protected", &syn4(src4, 80), DropSynV4);
    lab.expect(
        "port 2222 unprotected",
        &syn4(src4, 2222),
        PassUnprotectedPort,
    );
    lab.apply(lab_rules());
    lab.expect(
        "port 80 unprotected again",
        &syn4(src4, 80),
        PassUnprotectedPort,
    );
    lab.expect("port 2222 protected again", &syn4(src4, 2222), DropSynV4);

    // Active flag.
    lab.apply(lab_with(|list| list.mode = Mode::Off));
    lab.expect("deactivated", &syn4(src4, 22), PassInactive);
    lab.apply(lab_rules());
    lab.expect("reactivated", &syn4(src4, 22), DropSynV4);

    // No IPv6 entry at all, then one, then none: the v6 prefilter is empty, then not.
    let mut v4_only = lab_rules();
    v4_only.lists[0]
        .entries
        .retain(|net| matches!(net, IpNet::V4(_)));
    lab.apply(v4_only.clone());
    lab.expect(
        "no v6 entries: the v6 bastion",
        &syn6(v6("2001:db8::a"), 22),
        DropSynV6,
    );
    let mut one = v4_only.clone();
    one.lists[0].entries.insert(net("2001:db8::a/128"));
    lab.apply(one);
    lab.expect(
        "one v6 entry: the v6 bastion",
        &syn6(v6("2001:db8::a"), 22),
        PassAllowedV6,
    );
    lab.expect(
        "one v6 entry: next to it",
        &syn6(v6("2001:db8::b"), 22),
        DropSynV6,
    );
    lab.apply(v4_only);
    lab.expect("v6 entry removed", &syn6(v6("2001:db8::a"), 22), DropSynV6);

    // Everything removed.
    lab.apply(lab_with(|list| list.entries.clear()));
    lab.expect("empty list: lab A", &syn4(ALLOWED4, 22), DropSynV4);
    lab.expect("empty list: lab A v6", &syn6(ALLOWED6, 22), DropSynV6);
    lab.apply(lab_rules());
    lab.expect("restored: lab A", &syn4(ALLOWED4, 22), PassAllowedV4);
    lab.finish();
}

/// An emergency disable lets SYNs that would be dropped through while its boot-time deadline
/// is ahead (counted as pass_emergency; covered sources still count as allowed), and the
/// program itself drops again once the deadline has passed: no daemon needed.
#[test]
fn emergency_deadline_in_the_kernel() {
    if !allowlist_tests::require_root("emergency_deadline_in_the_kernel") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let now = allowlist_loader::clock::boot_ns();
    lab.filter()
        .set_emergency(now + 60_000_000_000)
        .expect("setting an emergency deadline");
    lab.check_against(
        "blocked v4 SYN during an emergency",
        &syn4(v4("198.18.2.2"), 22),
        Reason::PassEmergency,
    );
    lab.check_against(
        "blocked v6 SYN during an emergency",
        &syn6(v6("2001:db8:2::2"), 22),
        Reason::PassEmergency,
    );
    lab.check_against(
        "covered SYN during an emergency",
        &syn4(v4("198.18.1.2"), 22),
        Reason::PassAllowedV4,
    );
    lab.check_against(
        "unprotected port during an emergency",
        &syn4(v4("198.18.2.2"), 80),
        Reason::PassUnprotectedPort,
    );
    // A deadline 300 ms ahead: let in now, dropped once it has passed, by the kernel alone.
    lab.filter()
        .set_emergency(allowlist_loader::clock::boot_ns() + 300_000_000)
        .expect("setting a short emergency deadline");
    lab.check_against(
        "blocked SYN before a short deadline",
        &syn4(v4("198.18.2.2"), 22),
        Reason::PassEmergency,
    );
    std::thread::sleep(std::time::Duration::from_millis(400));
    lab.check_against(
        "blocked SYN after the deadline passed",
        &syn4(v4("198.18.2.2"), 22),
        Reason::DropSynV4,
    );
    lab.filter()
        .set_emergency(0)
        .expect("clearing the emergency");
    lab.check_against(
        "blocked SYN with no emergency",
        &syn6(v6("2001:db8:2::2"), 22),
        Reason::DropSynV6,
    );
    lab.finish();
}

#[test]
fn counters_count_each_reason() {
    if !allowlist_tests::require_root("counters_count_each_reason") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let mut six_plus = six_ext();
    six_plus.push(Ext::HopByHop { len: 0 });
    let batch: Vec<(Frame, Reason, u64)> = vec![
        (Frame::arp(BLOCKED4, DST4), PassNotIp, 3),
        (syn4(BLOCKED4, 22).l4_bytes(10), PassTruncated, 2),
        (Frame::icmp_v4(BLOCKED4, DST4), PassOtherProtocol, 4),
        (syn6(BLOCKED6, 22).flags(ACK), PassNotSyn, 5),
        (
            syn4(BLOCKED4, 22).fragment(8, false),
            PassNonFirstFragment,
            1,
        ),
        (syn4(BLOCKED4, 80), PassUnprotectedPort, 6),
        (syn4(ALLOWED4, 22), PassAllowedV4, 7),
        (syn6(ALLOWED6, 22), PassAllowedV6, 8),
        (syn4(BLOCKED4, 22), DropSynV4, 9),
        (syn6(BLOCKED6, 22), DropSynV6, 10),
        (
            with_ext(syn6(BLOCKED6, 22), &six_plus),
            DropFragmentEvasion,
            11,
        ),
    ];
    let mut want = [0u64; REASON_COUNT];
    for (frame, reason, times) in &batch {
        assert_eq!(frame.expected_reason(&ReferenceRules(&lab.rules)), *reason);
        want[*reason as usize] += times;
        for _ in 0..*times {
            let verdict = lab
                .program
                .action(&frame.build())
                .expect("BPF_PROG_TEST_RUN");
            assert_eq!(verdict, action_of(*reason), "{frame:?}");
        }
    }
    // `repeat` runs the program that many times on the same frame: each run counts.
    lab.apply(lab_with(|list| list.mode = Mode::Off));
    let result = lab
        .filter()
        .program()
        .test_run(TestRunOptions {
            data_in: Some(&syn4(BLOCKED4, 22).build()),
            repeat: 12,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN with repeat");
    assert_eq!(result.return_value, XDP_PASS);
    want[PassInactive as usize] += 12;

    let counters = lab.filter().counters().expect("reading COUNTERS");
    // BPF_PROG_TEST_RUN without a context runs as if received on the loopback device.
    let ifindexes: Vec<u32> = counters.keys().copied().collect();
    assert_eq!(
        ifindexes,
        [1],
        "test runs are counted under the loopback's ifindex"
    );
    let got = counters[&1].by_reason;
    for reason in Reason::ALL {
        assert_eq!(
            got[reason as usize],
            want[reason as usize],
            "{}: counted {} times, expected {}\nall counters: {got:?}\nexpected:     {want:?}",
            reason.name(),
            got[reason as usize],
            want[reason as usize]
        );
    }
}
