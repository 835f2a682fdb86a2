//! The compiled XDP program against crafted frames, through `BPF_PROG_TEST_RUN` (nothing is
//! attached): every verdict, and the reason the program counted, must be what the
//! specification says, and what `decide` gives on the reference parse of the frame
//! (`Frame::expected_parsed`, derived from the builder's parameters) with rules judged by
//! `ipnet` containment (`ReferenceRules`).
//!
//! Each test loads its own program with fresh maps, so tests run in parallel safely.
//!
//! What the kernel does with frames shorter than an Ethernet header (found on 6.18, asserted
//! in `truncated_frames_at_every_length`): `BPF_PROG_TEST_RUN` refuses them with EINVAL
//! before the program runs (`bpf_test_init` requires `ETH_HLEN` bytes), so no verdict and no
//! counter exists for them; on a real interface the driver never hands them to XDP either.
//! Debian 11's 5.10 runs them, and the program passes them as truncated: either is accepted.
//!
//! Addresses: only 198.18.0.0/15 and 2001:db8::/32 (and their `::ffff:` mapped forms).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use allowlist_common::verdict::{
    Parsed, REASON_COUNT, Reach,
    Reason::{self, *},
};
use allowlist_config::rules::{ListRules, Mode, Rules};
use allowlist_loader::filter::Filter;
use allowlist_tests::frames::{
    ACK, CWR, ECE, ETHERTYPE_LLDP, Ext, FIN, Frame, L4, Net, PROTO_ESP, PROTO_NONE, PSH, RST,
    ReferenceRules, SYN, TPID_8021AD, TPID_8021Q, Tcp, URG, hex,
};
use allowlist_tests::test_run::{TestProgram, XDP_PASS, action_name, action_of};
use aya::{TestRun, TestRunOptions, programs::ProgramError, sys::SyscallError};
use ipnet::IpNet;

/// The protected host.
const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// In lab A (198.18.1.0/24).
const ALLOWED4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// In no entry.
const BLOCKED4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// In 2001:db8:1::/48.
const ALLOWED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// In no entry.
const BLOCKED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

/// MSS 1460, SACK permitted, timestamps, NOP, window scale 7: what Linux sends in a SYN.
const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The rules most tests run under. No entry covers another (the config refuses that), so
/// prefix boundaries are exercised between neighbours instead.
fn lab_rules() -> Rules {
    let entries = [
        ("198.18.1.0/24", "lab A: a whole /24"),
        ("198.18.4.0/22", "lab B: four whole /24s"),
        ("198.18.9.7/32", "bastion: one host in a /24"),
        ("198.18.10.128/25", "upper half of a /24"),
        ("198.19.64.0/18", "wide: 64 /24s"),
        ("2001:db8:1::/48", "lab A v6"),
        ("2001:db8::a/128", "bastion v6"),
        ("2001:db8:100::/40", "wide v6"),
    ];
    Rules::single(
        true,
        BTreeSet::from([22, 2222]),
        entries.into_iter().map(|(n, _what)| net(n)).collect(),
    )
}

/// The lab rules with their one list changed by `change`.
fn lab_with(change: impl FnOnce(&mut ListRules)) -> Rules {
    let mut rules = lab_rules();
    change(&mut rules.lists[0]);
    rules
}

/// The lab list and two more, whose entries nest in or around the lab's: `dns` (enforce)
/// protects UDP 53 and 22 (TCP 22 stays the lab's) and lets in lab A, the bastion's /24 and
/// their IPv6 counterparts; `web` (monitor) protects TCP and UDP 443 and lets in
/// 198.18.0.0/20 and 2001:db8::/44, around most lab entries.
fn lists_rules() -> Rules {
    let nets = |list: &[&str]| list.iter().map(|n| net(n)).collect();
    let mut rules = lab_rules();
    rules.lists.push(ListRules {
        name: "dns".into(),
        mode: Mode::Enforce,
        tcp_ports: BTreeSet::new(),
        udp_ports: BTreeSet::from([53, 22]),
        entries: nets(&[
            "198.18.1.0/24",
            "198.18.9.0/24",
            "2001:db8:1::/48",
            "2001:db8::a/128",
        ]),
        ..ListRules::default()
    });
    rules.lists.push(ListRules {
        name: "web".into(),
        mode: Mode::Monitor,
        tcp_ports: BTreeSet::from([443]),
        udp_ports: BTreeSet::from([443]),
        entries: nets(&["198.18.0.0/20", "2001:db8::/44"]),
        ..ListRules::default()
    });
    rules
}

fn syn4(src: Ipv4Addr, dport: u16) -> Frame {
    Frame::tcp_v4(src, DST4, 40000, dport)
}

fn syn6(src: Ipv6Addr, dport: u16) -> Frame {
    Frame::tcp_v6(src, DST6, 40000, dport)
}

fn mapped(src: Ipv4Addr, dport: u16) -> Frame {
    Frame::tcp_v6(src.to_ipv6_mapped(), DST6, 40000, dport)
}

fn ext_kinds() -> [(&'static str, Ext); 9] {
    [
        ("hop-by-hop", Ext::HopByHop { len: 0 }),
        ("hop-by-hop (32 bytes)", Ext::HopByHop { len: 3 }),
        (
            "routing",
            Ext::Routing {
                len: 0,
                segments_left: 0,
            },
        ),
        (
            "routing (24 bytes)",
            Ext::Routing {
                len: 2,
                segments_left: 1,
            },
        ),
        ("destination options", Ext::DestOpts { len: 0 }),
        ("destination options (48 bytes)", Ext::DestOpts { len: 5 }),
        (
            "atomic fragment",
            Ext::Fragment {
                offset: 0,
                more: false,
                id: 7,
            },
        ),
        ("AH (24 bytes)", Ext::Ah { len: 4 }),
        ("AH (16 bytes)", Ext::Ah { len: 2 }),
    ]
}

/// Six extension headers, one of each kind and a second destination options header: as
/// many as the parser follows.
fn six_ext() -> Vec<Ext> {
    vec![
        Ext::HopByHop { len: 0 },
        Ext::DestOpts { len: 1 },
        Ext::Routing {
            len: 2,
            segments_left: 1,
        },
        Ext::Fragment {
            offset: 0,
            more: false,
            id: 9,
        },
        Ext::Ah { len: 4 },
        Ext::DestOpts { len: 0 },
    ]
}

fn with_ext(mut frame: Frame, ext: &[Ext]) -> Frame {
    for e in ext {
        frame = frame.ext(*e);
    }
    frame
}

mod addresses;
mod fragments;
mod headers;
mod lab;
mod malformed;
mod random;
mod scale;
mod settings;
mod syn;
mod timed;

use lab::Lab;
