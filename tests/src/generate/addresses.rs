//! Source addresses and ports where verdicts change: the first and last address of an entry
//! (of any list) and one outside each end, the /24 around it (the IPv4 prefilter's unit), the
//! test ranges, anywhere at all, and the IPv4-mapped form and its look-alikes. As entries of
//! different lists nest, an address drawn in one list's entry is often outside another's.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{Rng, percent, pick, weighted};
use crate::model::Setup;

pub fn v4(rng: &mut Rng, setup: &Setup) -> Ipv4Addr {
    let entries: Vec<(u32, u32)> = setup
        .entries()
        .filter_map(|net| match net {
            IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(_) => None,
        })
        .collect();
    let around = |rng: &mut Rng, (first, last): (u32, u32)| match rng.u32(0..8) {
        0 => first,
        1 => last,
        2 => first.wrapping_sub(1),
        3 => last.wrapping_add(1),
        4 => first & !0xff,
        5 => last | 0xff,
        _ => rng.u32(first..=last),
    };
    let addr = match weighted(rng, &[55, 25, 10, 10]) {
        0 if !entries.is_empty() => {
            let entry = entries[rng.usize(..entries.len())];
            around(rng, entry)
        }
        1 => u32::from(Ipv4Addr::new(198, 18, 0, 0)) | rng.u32(..1 << 17),
        2 => rng.u32(..),
        _ => pick(
            [
                0,
                u32::MAX,
                0xc612_0000,
                0xc613_ffff,
                0x00ff_ffff,
                0xff00_0000,
            ],
            rng,
        ),
    };
    Ipv4Addr::from(addr)
}

pub fn v6(rng: &mut Rng, setup: &Setup) -> Ipv6Addr {
    let entries: Vec<(u128, u128)> = setup
        .entries()
        .filter_map(|net| match net {
            IpNet::V6(n) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
            IpNet::V4(_) => None,
        })
        .collect();
    let around = |rng: &mut Rng, (first, last): (u128, u128)| match rng.u32(0..6) {
        0 => first,
        1 => last,
        2 => first.wrapping_sub(1),
        3 => last.wrapping_add(1),
        _ => rng.u128(first..=last),
    };
    let addr = match weighted(rng, &[45, 20, 15, 10, 10]) {
        0 if !entries.is_empty() => {
            let entry = entries[rng.usize(..entries.len())];
            around(rng, entry)
        }
        1 => u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) | rng.u128(..1 << 96),
        2 => u128::from(v4(rng, setup).to_ipv6_mapped()),
        // Look-alikes of the mapped form that are plain IPv6 addresses.
        3 => {
            let low = u128::from(u32::from(v4(rng, setup)));
            let prefix: u128 = pick([0, 0xfffe, 0xffff_0000, 0x1_ffff, 0x64_ff9b << 64], rng);
            prefix << 32 | low
        }
        _ => rng.u128(..),
    };
    Ipv6Addr::from(addr)
}

/// A destination port of TCP (`udp` false) or UDP: mostly one a list protects for that
/// protocol or its neighbours, sometimes one protected for the other protocol only.
pub fn port(rng: &mut Rng, setup: &Setup, udp: bool) -> u16 {
    let of = |udp: bool| -> Vec<u16> {
        setup
            .lists
            .iter()
            .flat_map(|list| {
                if udp {
                    &list.udp_ports
                } else {
                    &list.tcp_ports
                }
            })
            .copied()
            .collect()
    };
    let ports = if percent(rng, 8) { of(!udp) } else { of(udp) };
    if !ports.is_empty() && percent(rng, 65) {
        let port = ports[rng.usize(..ports.len())];
        return match rng.u32(0..8) {
            0 => port.wrapping_sub(1),
            1 => port.wrapping_add(1),
            _ => port,
        };
    }
    match rng.u32(0..4) {
        0 => pick([0, 1, 22, 53, 443, 65535], rng),
        _ => rng.u16(..),
    }
}
