//! Timed entries end in the kernel: at its deadline an entry stops admitting, with no daemon
//! involved, including where it nests in (or contains) a lasting entry of another list.

use std::time::{Duration, Instant, SystemTime};

use super::*;

/// The lab list (TCP 22) with timed entries, beside `api` (TCP 8443), which lets in
/// 198.18.0.0/16 for good and one host inside a timed /24 of the lab list.
fn timed_rules(short: SystemTime, long: SystemTime) -> Rules {
    let mut rules = lab_with(|lab| {
        for (cidr, end) in [
            ("198.18.2.2/32", short),
            ("2001:db8:2::2/128", short),
            ("198.18.3.0/24", long),
            ("198.18.12.1/32", SystemTime::now() - Duration::from_secs(1)),
        ] {
            lab.entries.insert(net(cidr));
            lab.ends.insert(net(cidr), end);
        }
    });
    rules.lists.push(ListRules {
        name: "api".into(),
        mode: Mode::Enforce,
        tcp_ports: BTreeSet::from([8443]),
        entries: BTreeSet::from([net("198.18.0.0/16"), net("198.18.3.7/32")]),
        ..ListRules::default()
    });
    rules
}

fn sleep_until(deadline: Instant) {
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

#[test]
fn timed_entries_end_at_their_deadline_in_the_kernel() {
    if !allowlist_tests::require_root("timed_entries_end_at_their_deadline_in_the_kernel") {
        return;
    }
    // Loaded first: verifying the program takes seconds on a slow (emulated) machine.
    let mut lab = Lab::new(lab_rules());
    let start = Instant::now();
    let (short, long) = (Duration::from_secs(3), Duration::from_secs(6));
    let now = SystemTime::now();
    lab.apply(timed_rules(now + short, now + long));
    let cases = [
        ("timed host", syn4(v4("198.18.2.2"), 22)),
        (
            "timed host, on the other list's port",
            syn4(v4("198.18.2.2"), 8443),
        ),
        ("timed IPv6 host", syn6(v6("2001:db8:2::2"), 22)),
        (
            "api's host inside the timed /24",
            syn4(v4("198.18.3.7"), 22),
        ),
        ("another host of the timed /24", syn4(v4("198.18.3.9"), 22)),
        (
            "api's host inside the timed /24, api's port",
            syn4(v4("198.18.3.7"), 8443),
        ),
        ("an entry that had ended", syn4(v4("198.18.12.1"), 22)),
    ];
    let expect = |lab: &mut Lab, phase: &str, reasons: [Reason; 7]| {
        for ((name, frame), want) in cases.iter().zip(reasons) {
            lab.check_against(&format!("{phase}: {name}"), frame, want);
            let (ip, port) = frame_target(frame);
            let (live, _) = lab
                .filter()
                .verdict(ip, allowlist_config::rules::Protocol::Tcp, port)
                .expect("the daemon's live verdict");
            assert_eq!(live, want, "{phase}: {name}: the daemon's live verdict");
        }
    };
    expect(
        &mut lab,
        "before both deadlines",
        [
            PassAllowedV4,
            PassAllowedV4,
            PassAllowedV6,
            PassAllowedV4,
            PassAllowedV4,
            PassAllowedV4,
            DropSynV4,
        ],
    );
    assert!(start.elapsed() < short, "the first checks took too long");
    sleep_until(start + short + Duration::from_millis(200));
    expect(
        &mut lab,
        "after the first deadline",
        [
            DropSynV4,
            PassAllowedV4,
            DropSynV6,
            PassAllowedV4,
            PassAllowedV4,
            PassAllowedV4,
            DropSynV4,
        ],
    );
    sleep_until(start + long + Duration::from_millis(200));
    let ended = [
        DropSynV4,
        PassAllowedV4,
        DropSynV6,
        DropSynV4,
        DropSynV4,
        PassAllowedV4,
        DropSynV4,
    ];
    expect(&mut lab, "after both deadlines", ended);
    // A change that gives the entries a later end opens them again; one that takes the
    // timed entries out leaves the lists as they were.
    let later = SystemTime::now() + Duration::from_secs(3600);
    lab.apply(timed_rules(later, later));
    expect(
        &mut lab,
        "with later ends",
        [
            PassAllowedV4,
            PassAllowedV4,
            PassAllowedV6,
            PassAllowedV4,
            PassAllowedV4,
            PassAllowedV4,
            DropSynV4,
        ],
    );
    let mut without = timed_rules(later, later);
    let timed: Vec<IpNet> = without.lists[0].ends.keys().copied().collect();
    for net in timed {
        without.lists[0].entries.remove(&net);
    }
    without.lists[0].ends.clear();
    lab.apply(without);
    expect(&mut lab, "without the timed entries", ended);
    lab.finish();
}

/// A network may lie in timed entries of at most four different ends: the kernel keeps the
/// old and the new ends together while a change is applied. More is refused before anything
/// is written.
#[test]
fn too_many_nested_ends_are_refused() {
    if !allowlist_tests::require_root("too_many_nested_ends_are_refused") {
        return;
    }
    let mut lab = Lab::new(lab_rules());
    let now = SystemTime::now() + Duration::from_secs(600);
    let mut nested = lab_rules();
    for (i, cidr) in [
        "198.18.32.0/19",
        "198.18.32.0/20",
        "198.18.32.0/21",
        "198.18.32.0/22",
        "198.18.32.0/23",
    ]
    .iter()
    .enumerate()
    {
        let list = &mut nested.lists[0];
        list.entries.insert(net(cidr));
        list.ends
            .insert(net(cidr), now + Duration::from_secs(i as u64));
    }
    let error = lab.filter().apply(&nested).unwrap_err();
    assert!(
        format!("{error:#}").contains("198.18.32.0/23 lies in timed entries with 5 different ends"),
        "{error:#}"
    );
    lab.check_against(
        "the refused change wrote nothing",
        &syn4(v4("198.18.32.1"), 22),
        DropSynV4,
    );
    lab.finish();
}

/// The destination port and source of a SYN built by `syn4`/`syn6`.
fn frame_target(frame: &Frame) -> (std::net::IpAddr, u16) {
    match frame.expected_parsed() {
        Parsed::Syn { src, dport } => (
            match src {
                allowlist_common::verdict::Source::V4(a) => Ipv4Addr::from(a).into(),
                allowlist_common::verdict::Source::V6(a) => Ipv6Addr::from(a).into(),
            },
            dport,
        ),
        other => panic!("not a SYN: {other:?}"),
    }
}
