//! Seeded random frames against the reference parse.

use super::*;

use allowlist_tests::generate::{Rng, bytes, percent};

/// One of `items`, uniformly.
fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

const INTERESTING_V4: [&str; 16] = [
    "198.18.1.2",
    "198.18.0.255",
    "198.18.2.0",
    "198.18.3.255",
    "198.18.4.0",
    "198.18.7.255",
    "198.18.8.0",
    "198.18.9.6",
    "198.18.9.7",
    "198.18.9.8",
    "198.18.10.127",
    "198.18.10.128",
    "198.19.63.255",
    "198.19.64.0",
    "198.19.127.255",
    "198.19.128.0",
];

const INTERESTING_V6: [&str; 10] = [
    "2001:db8:1::2",
    "2001:db8:0:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:2::",
    "2001:db8::9",
    "2001:db8::a",
    "2001:db8::b",
    "2001:db8:ff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:100::",
    "2001:db8:1ff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:200::",
];

fn random_v4(rng: &mut Rng) -> Ipv4Addr {
    if percent(rng, 40) {
        return v4(pick(rng, &INTERESTING_V4));
    }
    // Anywhere in 198.18.0.0/15, often near the entries.
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let host = if percent(rng, 50) {
        rng.u64(..16 * 256) as u32
    } else {
        rng.u64(..1 << 17) as u32
    };
    Ipv4Addr::from(base | host)
}

fn random_v6(rng: &mut Rng) -> Ipv6Addr {
    if percent(rng, 40) {
        return v6(pick(rng, &INTERESTING_V6));
    }
    let third = match rng.u64(..4) {
        0 => 0,
        1 => 1,
        2 => 0x100 + rng.u64(..0x100) as u16,
        _ => rng.u64(..) as u16,
    };
    let mut segments = [0x2001, 0xdb8, third, 0, 0, 0, 0, 0];
    if percent(rng, 50) {
        for s in &mut segments[3..] {
            *s = rng.u64(..) as u16;
        }
    } else {
        segments[7] = rng.u64(..16) as u16;
    }
    Ipv6Addr::from(segments)
}

fn random_ext(rng: &mut Rng) -> Ext {
    match rng.u64(..4) {
        0 => Ext::HopByHop {
            len: rng.u64(..4) as u8,
        },
        1 => Ext::Routing {
            len: rng.u64(..4) as u8,
            segments_left: rng.u64(..3) as u8,
        },
        2 => Ext::DestOpts {
            len: rng.u64(..4) as u8,
        },
        _ => Ext::Ah {
            len: pick(rng, &[2, 4, 6]),
        },
    }
}

fn random_fragment_offset(rng: &mut Rng) -> u16 {
    if percent(rng, 60) {
        0
    } else {
        1 + rng.u64(..8191) as u16
    }
}

/// A random frame: any family, source, port, flags, tags, options, extension headers,
/// fragment fields, tiny first fragments, IP length fields shorter or longer than the packet,
/// padding and trailers, and cuts.
fn random_frame(rng: &mut Rng) -> Frame {
    let any_port = rng.u64(..) as u16;
    let dport = pick(
        rng,
        &[22, 2222, 22, 2222, 80, 443, 443, 443, 21, 23, 0, any_port],
    );
    let sport = 1024 + rng.u64(..64512) as u16;
    let any_flags = rng.u64(..) as u8;
    let flags = pick(
        rng,
        &[
            SYN,
            SYN,
            SYN,
            SYN | ACK,
            ACK,
            RST,
            RST | ACK,
            FIN | ACK,
            PSH | ACK,
            SYN | FIN,
            SYN | ECE | CWR,
            any_flags,
        ],
    );
    let l4 = match rng.u64(..100) {
        0..80 => L4::Tcp(Tcp {
            sport,
            dport,
            flags,
            seq: rng.u64(..) as u32,
            ack: if flags & ACK != 0 {
                rng.u64(..) as u32
            } else {
                0
            },
            options: vec![1; 4 * rng.u64(..6) as usize],
            payload: {
                let n = if percent(rng, 70) {
                    0
                } else {
                    rng.u64(..64) as usize
                };
                bytes(rng, n)
            },
        }),
        80..95 => L4::Udp {
            sport,
            dport: pick(rng, &[53, 53, 22, 443, 443, dport]),
            payload: {
                let n = rng.u64(..32) as usize;
                bytes(rng, n)
            },
        },
        95..98 => L4::Icmp {
            payload: bytes(rng, 8),
        },
        _ => L4::Other {
            protocol: pick(rng, &[PROTO_NONE, PROTO_ESP, 47, 132]),
            payload: {
                let n = rng.u64(..16) as usize;
                bytes(rng, n)
            },
        },
    };
    let mut first_fragment = false;
    let mut frame = match rng.u64(..100) {
        0..5 => {
            if percent(rng, 50) {
                Frame::arp(random_v4(rng), DST4)
            } else {
                Frame::ethertype(ETHERTYPE_LLDP, &bytes(rng, 46))
            }
        }
        5..47 => {
            let mut frame = Frame::ipv4(random_v4(rng), DST4, l4);
            if percent(rng, 25) {
                let n = 4 * (1 + rng.u64(..10) as usize);
                frame = frame.ipv4_options(&bytes(rng, n));
            }
            if percent(rng, 20) {
                frame = frame.dont_fragment();
            }
            if percent(rng, 25) {
                let offset = random_fragment_offset(rng);
                let more = percent(rng, 70);
                first_fragment = offset == 0 && more;
                frame = frame.fragment(offset, more);
            }
            if percent(rng, 2) {
                frame = frame.ip_version(pick(rng, &[0, 6, 15]));
            } else if percent(rng, 2) {
                frame = frame.ipv4_bad_ihl(rng.u64(..5) as u8);
            }
            frame
        }
        p => {
            let src = if p < 90 {
                random_v6(rng)
            } else {
                random_v4(rng).to_ipv6_mapped()
            };
            let mut frame = Frame::ipv6(src, DST6, l4);
            if percent(rng, 40) {
                let n = match rng.u64(..10) {
                    0..6 => 1,
                    6..8 => 2 + rng.u64(..3),
                    _ => 5 + rng.u64(..4),
                };
                let mut chain: Vec<Ext> = (0..n).map(|_| random_ext(rng)).collect();
                if percent(rng, 30) {
                    let offset = random_fragment_offset(rng);
                    let more = percent(rng, 70);
                    let at = rng.u64(..n + 1) as usize;
                    first_fragment = offset == 0 && more;
                    chain.insert(
                        at.min(chain.len()),
                        Ext::Fragment {
                            offset,
                            more,
                            id: rng.u64(..) as u32,
                        },
                    );
                }
                frame = with_ext(frame, &chain);
            } else if percent(rng, 20) {
                let offset = random_fragment_offset(rng);
                let more = percent(rng, 70);
                first_fragment = offset == 0 && more;
                frame = frame.fragment(offset, more);
            }
            if percent(rng, 2) {
                frame = frame.ip_version(pick(rng, &[0, 4, 15]));
            }
            frame
        }
    };
    if first_fragment && percent(rng, 60) {
        // A tiny first fragment, often shorter than the flags.
        let len = frame.l4_segment_len();
        frame = frame.l4_bytes(rng.u64(..len.min(24) as u64 + 1) as usize);
    }
    // A length field other than the packet's: shorter (ending the packet early, the built
    // bytes after it staying in the frame) or longer (a frame shorter than the packet).
    let mut overlong = false;
    if matches!(frame.net, Net::V4(_) | Net::V6(_)) && percent(rng, 8) {
        let header = if matches!(frame.net, Net::V4(_)) {
            0
        } else {
            40
        };
        let built = (frame.ip_len() - header) as u64;
        let n = if percent(rng, 25) {
            overlong = true;
            built + 1 + rng.u64(..64)
        } else {
            rng.u64(..built + 1)
        } as u16;
        frame = match frame.net {
            Net::V4(_) => frame.ipv4_total_len(n),
            _ => frame.ipv6_payload_len(n),
        };
    }
    for _ in 0..pick(rng, &[0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3]) {
        frame = frame.vlan(
            pick(rng, &[TPID_8021Q, TPID_8021AD]),
            rng.u64(..4096) as u16,
        );
    }
    // Bytes after the packet (not after an overlong one: the reference does not judge them
    // as part of a packet). Ethernet pads to 60 bytes; a trailer can be anything.
    if !overlong && percent(rng, 15) {
        if percent(rng, 50) {
            let n = rng.u64(..24) as usize + 1;
            frame = frame.trailer(&bytes(rng, n));
        }
        if percent(rng, 70) {
            frame = frame.pad_to(60);
        }
    }
    if percent(rng, 10) {
        let len = frame.len();
        frame = frame.cut(14 + rng.u64(..(len - 14) as u64 + 1) as usize);
    }
    frame
}

#[test]
fn random_frames_match_the_reference() {
    if !allowlist_tests::require_root("random_frames_match_the_reference") {
        return;
    }
    let seed = std::env::var("ALLOWLIST_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_a110_u64);
    eprintln!("seed {seed} (set ALLOWLIST_TEST_SEED=<decimal> to replay another)");
    let mut rng = Rng::with_seed(seed);
    let variants = [
        ("lab rules", lab_rules()),
        ("service lists", lists_rules()),
        (
            "only port 22",
            lab_with(|list| list.tcp_ports = BTreeSet::from([22])),
        ),
        ("inactive", lab_with(|list| list.mode = Mode::Off)),
        ("no ports", lab_with(|list| list.tcp_ports.clear())),
    ];
    let mut lab = Lab::new(lab_rules());
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen_parsed = BTreeSet::new();
    for round in 0..3000 {
        // Mostly the lab rules and the service lists; every 1000 frames 250 under a variant.
        let (variant, rules) = &variants[match round % 1000 {
            0..250 | 600..750 => 0,
            250..600 => 1,
            _ => 2 + (round / 1000) % 3,
        }];
        if lab.rules != *rules {
            lab.apply(rules.clone());
        }
        let frame = random_frame(&mut rng);
        seen_parsed.insert(parsed_kind(frame.expected_parsed()));
        let reason = lab.check(
            &format!("random frame #{round} under {variant} (seed {seed})"),
            &frame,
        );
        *histogram.entry(reason.name()).or_default() += 1;
    }
    eprintln!("reference reasons: {histogram:?}");
    eprintln!("reference parses: {seen_parsed:?}");
    // The reference never runs under an emergency disable: emergency_deadline_in_the_kernel
    // covers pass_emergency.
    for reason in Reason::ALL
        .into_iter()
        .filter(|r| *r != Reason::PassEmergency)
    {
        assert!(
            histogram.contains_key(reason.name()),
            "the random frames never reached {}: widen the generator",
            reason.name()
        );
    }
    lab.finish();
}

fn parsed_kind(parsed: Parsed) -> &'static str {
    match parsed {
        Parsed::NotIp => "not ip",
        Parsed::Truncated => "truncated",
        Parsed::OtherProtocol => "other protocol",
        Parsed::NotSyn => "not syn",
        Parsed::NonFirstFragment => "non-first fragment",
        Parsed::Syn { .. } => "syn",
        Parsed::Datagram { .. } => "datagram",
        Parsed::Opaque {
            reach: Reach::TcpPort(_),
            ..
        } => "opaque with TCP port",
        Parsed::Opaque {
            reach: Reach::AnyTcp,
            ..
        } => "opaque without TCP port",
        Parsed::Opaque {
            reach: Reach::AnyUdp,
            ..
        } => "opaque without UDP port",
        Parsed::Opaque {
            reach: Reach::Any, ..
        } => "opaque chain",
    }
}
