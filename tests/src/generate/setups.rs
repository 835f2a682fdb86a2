//! Random allowlist setups, as the config would accept them (no entry covers another), with
//! entries that look like they overlap: siblings and neighbours of other entries, halves of a
//! /24, wide IPv6 entries that turn the IPv6 prefilter off, single hosts.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Rng, percent, pick, weighted};
use crate::model::Setup;

/// A fresh setup.
pub fn fresh(rng: &mut Rng) -> Setup {
    let mut setup = Setup {
        active: percent(rng, 85),
        ports: BTreeSet::new(),
        entries: Vec::new(),
        emergency: percent(rng, 15),
    };
    let ports = weighted(rng, &[8, 40, 30, 22]) + usize::from(percent(rng, 10)) * 3;
    for _ in 0..ports {
        setup.ports.insert(port(rng));
    }
    for _ in 0..rng.usize(0..=12) {
        add_v4(rng, &mut setup.entries);
    }
    for _ in 0..rng.usize(0..=12) {
        add_v6(rng, &mut setup.entries);
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
    if percent(rng, 10) {
        setup.active = !setup.active;
    }
    if percent(rng, 15) {
        setup.emergency = !setup.emergency;
    }
    if percent(rng, 20) {
        if !setup.ports.is_empty() && percent(rng, 50) {
            let drop = rng.usize(..setup.ports.len());
            let port = *setup.ports.iter().nth(drop).expect("index below len");
            setup.ports.remove(&port);
        } else {
            setup.ports.insert(port(rng));
        }
    }
    for _ in 0..rng.usize(0..=3) {
        if !setup.entries.is_empty() {
            setup.entries.remove(rng.usize(..setup.entries.len()));
        }
    }
    for _ in 0..rng.usize(0..=3) {
        if percent(rng, 50) {
            add_v4(rng, &mut setup.entries);
        } else {
            add_v6(rng, &mut setup.entries);
        }
    }
    setup
}

fn port(rng: &mut Rng) -> u16 {
    match rng.u32(0..3) {
        0 => pick([22, 2222, 443, 8443, 1, 65535], rng),
        _ => rng.u16(1..),
    }
}

/// Adds a random IPv4 entry unless it would cover or be covered by one already there.
fn add_v4(rng: &mut Rng, entries: &mut Vec<IpNet>) {
    // Wide entries are rarer: the daemon marks every /24 they hold in the prefilter, which a
    // debug build takes a while to do for millions of them.
    let len = match weighted(rng, &[25, 15, 25, 22, 10, 3]) {
        0 => 32,
        1 => 24,
        2 => rng.u8(25..=31),
        3 => rng.u8(16..=23),
        4 => rng.u8(10..=15),
        _ => rng.u8(2..=9),
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
