//! Random allowlist setups, as the config would accept them: one to four lists usually, up
//! to 32 sometimes, in any mode, each with its own TCP and UDP ports (no port of a protocol in
//! two lists; some lists with ports of one protocol only, or none) and its own entries. Within
//! a list no entry covers another (the config refuses that), but entries of different lists
//! overlap on purpose: the same network in two lists, a host or /24 inside another list's /24
//! or /16, a wider network around another list's entry (IPv6 alike). Entries also look like
//! they overlap within a list: siblings and neighbours of other entries, halves of a /24, wide
//! IPv6 entries that turn the IPv6 prefilter off, single hosts.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Rng, percent, pick, weighted};
use crate::model::{Mode, ModelList, Setup};

/// The kernel's bound on lists.
pub const MAX_LISTS: usize = 32;

/// A fresh setup.
pub fn fresh(rng: &mut Rng) -> Setup {
    let count = if percent(rng, 6) {
        rng.usize(5..=MAX_LISTS)
    } else {
        1 + weighted(rng, &[40, 30, 15, 15])
    };
    let mut setup = Setup {
        lists: Vec::new(),
        emergency: percent(rng, 15),
    };
    for _ in 0..count {
        add_list(rng, &mut setup);
    }
    setup
}

/// The next setup of a run: mostly a small change of `previous` (as reloads and `allowlistctl`
/// make, which `Filter::apply` turns into map updates), sometimes a fresh one.
pub fn next(rng: &mut Rng, previous: &Setup) -> Setup {
    if percent(rng, 30) {
        return fresh(rng);
    }
    let mut setup = previous.clone();
    if percent(rng, 15) {
        setup.emergency = !setup.emergency;
    }
    if percent(rng, 8) && setup.lists.len() < MAX_LISTS {
        add_list(rng, &mut setup);
    }
    if percent(rng, 8) && setup.lists.len() > 1 {
        setup.lists.remove(rng.usize(..setup.lists.len()));
    }
    let lists = setup.lists.len();
    if percent(rng, 15) {
        setup.lists[rng.usize(..lists)].mode = mode(rng);
    }
    if percent(rng, 25) {
        let i = rng.usize(..lists);
        let udp = percent(rng, 40);
        let ports = if udp {
            &mut setup.lists[i].udp_ports
        } else {
            &mut setup.lists[i].tcp_ports
        };
        if !ports.is_empty() && percent(rng, 50) {
            let at = rng.usize(..ports.len());
            let port = *ports.iter().nth(at).expect("index below len");
            ports.remove(&port);
        } else {
            let port = free_port(rng, &setup, udp);
            let list = &mut setup.lists[i];
            if udp {
                list.udp_ports.insert(port);
            } else {
                list.tcp_ports.insert(port);
            }
        }
    }
    for _ in 0..rng.usize(0..=3) {
        let list = &mut setup.lists[rng.usize(..lists)];
        if !list.entries.is_empty() {
            list.entries.remove(rng.usize(..list.entries.len()));
        }
    }
    for _ in 0..rng.usize(0..=3) {
        let i = rng.usize(..lists);
        add_entry(rng, &mut setup, i);
    }
    setup
}

fn mode(rng: &mut Rng) -> Mode {
    match weighted(rng, &[60, 25, 15]) {
        0 => Mode::Enforce,
        1 => Mode::Monitor,
        _ => Mode::Off,
    }
}

/// Appends a list with ports no other list has and entries that often overlap theirs.
fn add_list(rng: &mut Rng, setup: &mut Setup) {
    let many = setup.lists.len() >= 4;
    setup.lists.push(ModelList {
        mode: mode(rng),
        ..ModelList::default()
    });
    let (tcp, udp) = match weighted(rng, &[45, 20, 25, 10]) {
        0 => (true, true),
        1 => (false, true),
        2 => (true, false),
        _ => (false, false),
    };
    let count =
        |rng: &mut Rng| 1 + weighted(rng, &[45, 30, 15, 10]) + usize::from(percent(rng, 5)) * 4;
    if tcp {
        for _ in 0..count(rng) {
            let port = free_port(rng, setup, false);
            setup
                .lists
                .last_mut()
                .expect("pushed")
                .tcp_ports
                .insert(port);
        }
    }
    if udp {
        for _ in 0..count(rng) {
            let port = free_port(rng, setup, true);
            setup
                .lists
                .last_mut()
                .expect("pushed")
                .udp_ports
                .insert(port);
        }
    }
    let i = setup.lists.len() - 1;
    // Fewer entries a list when there are many lists, to stay within the test program's
    // capacity and keep applying a setup quick.
    let most = if many { 4 } else { 8 };
    for _ in 0..rng.usize(0..=2 * most) {
        add_entry(rng, setup, i);
    }
}

/// A port of `udp`'s protocol that no list protects yet.
fn free_port(rng: &mut Rng, setup: &Setup, udp: bool) -> u16 {
    loop {
        let port = match rng.u32(0..3) {
            0 if udp => pick([53, 123, 443, 51820, 500, 4500, 1, 65535], rng),
            0 => pick([22, 2222, 443, 8443, 1, 65535], rng),
            _ => rng.u16(1..),
        };
        let taken = setup.lists.iter().any(|list| {
            if udp {
                list.udp_ports.contains(&port)
            } else {
                list.tcp_ports.contains(&port)
            }
        });
        if !taken {
            return port;
        }
    }
}

/// Adds an entry to list `i`: often one derived from another list's entry (equal, inside it,
/// around it), otherwise a fresh one, IPv4 or IPv6 alike.
fn add_entry(rng: &mut Rng, setup: &mut Setup, i: usize) {
    let others: Vec<IpNet> = setup
        .lists
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .flat_map(|(_, list)| list.entries.iter().copied())
        .collect();
    let entries = &mut setup.lists[i].entries;
    if !others.is_empty() && percent(rng, 40) {
        let other = others[rng.usize(..others.len())];
        let net = related(rng, other);
        insert_unless_overlapping(entries, net);
    } else if percent(rng, 50) {
        add_v4(rng, entries);
    } else {
        add_v6(rng, entries);
    }
}

/// A network related to `other` (of another list): the same, one inside it (a host, a /24 in
/// a /16, ...) or one around it.
fn related(rng: &mut Rng, other: IpNet) -> IpNet {
    let (bits, len) = match other {
        IpNet::V4(_) => (32u8, other.prefix_len()),
        IpNet::V6(_) => (128u8, other.prefix_len()),
    };
    // An IPv4 entry wider than a /10 costs seconds to mark in a debug build: rarely again.
    let wide = bits == 32 && len < 10;
    let new_len = match weighted(rng, &[30, 45, 25]) {
        _ if wide && !percent(rng, 10) => rng.u8(16..=32),
        0 => len,
        1 if len < bits => {
            // Inside: a host, the next /8 boundary, or any longer prefix.
            match rng.u32(0..3) {
                0 => bits,
                1 => (len + 8).min(bits),
                _ => rng.u8(len + 1..=bits),
            }
        }
        // Around, mostly at most 8 bits wider and rarely wider than a /16 (IPv4) or /20
        // (IPv6): the daemon marks every /24 of an IPv4 entry in the prefilter, which a debug
        // build takes a while to do for millions of them.
        _ if len > 1 => {
            let floor = if bits == 32 { 16 } else { 20 };
            let floor = if percent(rng, 10) { floor - 6 } else { floor };
            let lowest = len.saturating_sub(8).max(floor).min(len - 1);
            rng.u8(lowest..len)
        }
        _ => len,
    };
    match other {
        IpNet::V4(net) => {
            let host = u32::from(net.network()) | (rng.u32(..) & !mask32(len));
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(host), new_len)
                    .expect("length at most 32")
                    .trunc(),
            )
        }
        IpNet::V6(net) => {
            let host = u128::from(net.network()) | (rng.u128(..) & !mask128(len));
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(host), new_len)
                    .expect("length at most 128")
                    .trunc(),
            )
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}
/// Adds a random IPv4 entry unless it would cover or be covered by one already there.
fn add_v4(rng: &mut Rng, entries: &mut Vec<IpNet>) {
    // Wide entries are rarer: the daemon marks every /24 they hold in the prefilter, which a
    // debug build takes a while to do for millions of them.
    let len = match weighted(rng, &[25, 15, 25, 22, 6, 2]) {
        0 => 32,
        1 => 24,
        2 => rng.u8(25..=31),
        3 => rng.u8(16..=23),
        4 => rng.u8(10..=15),
        // A /2 holds 4 million /24s: seconds to mark or unmark in a debug build.
        _ if percent(rng, 10) => rng.u8(2..=5),
        _ => rng.u8(6..=9),
    };
    let base = match neighbour(rng, entries, 32, |n| match n {
        IpNet::V4(n) => Some((u128::from(u32::from(n.network())), n.prefix_len())),
        IpNet::V6(_) => None,
    }) {
        Some(addr) => addr as u32,
        None if percent(rng, 85) => u32::from(Ipv4Addr::new(198, 18, 0, 0)) | rng.u32(..1 << 17),
        None => rng.u32(..),
    };
    let net = Ipv4Net::new(Ipv4Addr::from(base), len)
        .expect("length at most 32")
        .trunc();
    insert_unless_overlapping(entries, IpNet::V4(net));
}

fn add_v6(rng: &mut Rng, entries: &mut Vec<IpNet>) {
    let len = match weighted(rng, &[25, 15, 15, 20, 15, 10]) {
        0 => 128,
        1 => 64,
        2 => 48,
        3 => rng.u8(33..=127),
        4 => rng.u8(20..=32),
        // Wider than the IPv6 prefilter can mark.
        _ => rng.u8(4..=19),
    };
    let base = match neighbour(rng, entries, 128, |n| match n {
        IpNet::V6(n) => Some((u128::from(n.network()), n.prefix_len())),
        IpNet::V4(_) => None,
    }) {
        Some(addr) => addr,
        None if percent(rng, 80) => {
            u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) | rng.u128(..1 << 96)
        }
        None => rng.u128(..),
    };
    let net = Ipv6Net::new(Ipv6Addr::from(base), len)
        .expect("length at most 128")
        .trunc();
    insert_unless_overlapping(entries, IpNet::V6(net));
}

/// Half the time, an address next to an existing entry of the family: its sibling (the last
/// prefix bit flipped) or the address just past it, so that the new entry borders it.
fn neighbour(
    rng: &mut Rng,
    entries: &[IpNet],
    bits: u32,
    family: impl Fn(&IpNet) -> Option<(u128, u8)>,
) -> Option<u128> {
    let candidates: Vec<(u128, u8)> = entries.iter().filter_map(family).collect();
    if candidates.is_empty() || percent(rng, 50) {
        return None;
    }
    let (network, len) = candidates[rng.usize(..candidates.len())];
    let host_bits = bits - u32::from(len);
    let sibling = match len {
        0 => network,
        _ => network ^ (1u128 << host_bits),
    };
    let past = network.wrapping_add(1u128.checked_shl(host_bits).unwrap_or(0));
    Some(if percent(rng, 50) { sibling } else { past })
}

fn insert_unless_overlapping(entries: &mut Vec<IpNet>, net: IpNet) {
    if !entries.iter().any(|e| e.contains(&net) || net.contains(e)) {
        entries.push(net);
    }
}
