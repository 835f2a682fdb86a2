//! Seeded, deterministic allowlists of realistic shape, spread over the whole address space,
//! without overlaps (a list-file line covered by another would be merged, changing the
//! counts), and the files the daemon, `nft -f` and `ipset restore` read them from.
//!
//! IPv4: 80% /32, 15% /24, 5% /16–/23 (uniform length), bases uniform over 1.0.0.0–223.255.255.255.
//! IPv6: 40% /128, 30% /64, 15% /56, 15% /48, uniform over 2000::/3.
//! Both leave out the lab's own networks (198.18.0.0/15, 2001:db8::/32) and then add the lab's
//! allowlisted client networks ([`LAB_V4`], [`LAB_V6`]) so a lab client is always allowed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Entries every generated list holds: the lab's allowlisted client (198.18.1.2, 2001:db8::a).
pub const LAB_V4: &str = "198.18.1.0/24";
pub const LAB_V6: &str = "2001:db8::a/128";

/// splitmix64: small, fast, and good enough to spread addresses.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Non-overlapping intervals of one family, as `start -> end` (inclusive).
#[derive(Default, Debug, Clone)]
pub struct Intervals(BTreeMap<u128, u128>);

impl Intervals {
    /// Inserts [start, end] unless it overlaps something already there.
    pub fn try_insert(&mut self, start: u128, end: u128) -> bool {
        if let Some((_, &prev_end)) = self.0.range(..=end).next_back()
            && prev_end >= start
        {
            return false;
        }
        self.0.insert(start, end);
        true
    }

    pub fn remove(&mut self, start: u128) {
        self.0.remove(&start);
    }

    /// Whether any interval holds `addr`.
    pub fn covers(&self, addr: u128) -> bool {
        self.0
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, &end)| end >= addr)
    }
}

/// A generated list of one family, and the generator state to extend it.
#[derive(Debug, Clone)]
pub struct List {
    pub nets: Vec<IpNet>,
    intervals: Intervals,
    rng: Rng,
    v6: bool,
}

fn v4_interval(net: &Ipv4Net) -> (u128, u128) {
    (
        u128::from(u32::from(net.network())),
        u128::from(u32::from(net.broadcast())),
    )
}

fn v6_interval(net: &Ipv6Net) -> (u128, u128) {
    (
        u128::from(net.network()),
        u128::from(net.network())
            | u128::MAX
                .checked_shr(u32::from(net.prefix_len()))
                .unwrap_or(0),
    )
}

fn interval(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => v4_interval(n),
        IpNet::V6(n) => v6_interval(n),
    }
}

impl List {
    /// `count` IPv4 entries (the lab's included) from `seed`.
    pub fn v4(count: usize, seed: u64) -> List {
        let mut list = List::empty(false, seed);
        let lab: IpNet = LAB_V4.parse().expect("a valid network");
        list.push_checked(lab);
        list.grow(count.saturating_sub(1));
        list
    }

    /// `count` IPv6 entries (the lab's included) from `seed`.
    pub fn v6(count: usize, seed: u64) -> List {
        let mut list = List::empty(true, seed);
        let lab: IpNet = LAB_V6.parse().expect("a valid network");
        list.push_checked(lab);
        list.grow(count.saturating_sub(1));
        list
    }

    fn empty(v6: bool, seed: u64) -> List {
        let mut intervals = Intervals::default();
        // Keep the lab's own networks out of the random part (the lab entries go in first).
        if v6 {
            let lab: Ipv6Net = "2001:db8::/32".parse().expect("valid");
            let (s, e) = v6_interval(&lab);
            intervals.0.insert(s, e);
        } else {
            let lab: Ipv4Net = "198.18.0.0/15".parse().expect("valid");
            let (s, e) = v4_interval(&lab);
            intervals.0.insert(s, e);
        }
        List {
            nets: Vec::new(),
            intervals,
            rng: Rng::new(seed ^ if v6 { 0x66 } else { 0x44 }),
            v6,
        }
    }

    fn push_checked(&mut self, net: IpNet) {
        let (s, e) = interval(&net);
        // The lab's entries sit inside the reserved lab interval: bypass the overlap check.
        self.intervals.0.insert(s, e);
        self.nets.push(net);
    }

    /// Adds `n` more entries, none overlapping any present one.
    pub fn grow(&mut self, n: usize) -> Vec<IpNet> {
        let mut added = Vec::with_capacity(n);
        while added.len() < n {
            let net = if self.v6 {
                self.draw_v6()
            } else {
                self.draw_v4()
            };
            let (s, e) = interval(&net);
            if self.intervals.try_insert(s, e) {
                added.push(net);
            }
        }
        self.nets.extend_from_slice(&added);
        added
    }

    /// Removes `n` entries picked at random (never the lab's, which is first) and returns them.
    pub fn shrink(&mut self, n: usize) -> Vec<IpNet> {
        let mut removed = Vec::with_capacity(n);
        for _ in 0..n.min(self.nets.len().saturating_sub(1)) {
            let i = 1 + self.rng.below(self.nets.len() as u64 - 1) as usize;
            let net = self.nets.swap_remove(i);
            self.intervals.remove(interval(&net).0);
            removed.push(net);
        }
        removed
    }

    /// Whether an entry covers `addr` (IPv4 as u32 in a u128, IPv6 as u128).
    pub fn covers(&self, addr: u128) -> bool {
        self.intervals.covers(addr) && !self.in_lab_gap(addr)
    }

    /// The reserved lab network minus the lab entry: not covered.
    fn in_lab_gap(&self, addr: u128) -> bool {
        let lab = if self.v6 { LAB_V6 } else { LAB_V4 };
        let lab: IpNet = lab.parse().expect("valid");
        let (ls, le) = interval(&lab);
        let reserved = if self.v6 {
            v6_interval(&"2001:db8::/32".parse().expect("valid"))
        } else {
            v4_interval(&"198.18.0.0/15".parse().expect("valid"))
        };
        addr >= reserved.0 && addr <= reserved.1 && !(addr >= ls && addr <= le)
    }

    fn draw_v4(&mut self) -> IpNet {
        let roll = self.rng.below(100);
        let len = match roll {
            0..80 => 32,
            80..95 => 24,
            _ => 16 + self.rng.below(8) as u8,
        };
        // 1.0.0.0 up to 223.255.255.255.
        let addr = (1u32 << 24) + self.rng.below(u64::from(0xE000_0000u32 - (1 << 24))) as u32;
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len)
            .expect("prefix length <= 32")
            .trunc();
        IpNet::V4(net)
    }

    fn draw_v6(&mut self) -> IpNet {
        let roll = self.rng.below(100);
        let len = match roll {
            0..40 => 128,
            40..70 => 64,
            70..85 => 56,
            _ => 48,
        };
        let high = 0x2000_0000_0000_0000u64 | (self.rng.next_u64() >> 3);
        let addr = u128::from(high) << 64 | u128::from(self.rng.next_u64());
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len)
            .expect("prefix length <= 128")
            .trunc();
        IpNet::V6(net)
    }
}

/// A list file for the daemon: one network per line.
pub fn list_file(nets: &[IpNet]) -> String {
    let mut out = String::with_capacity(nets.len() * 20);
    for net in nets {
        let _ = writeln!(out, "{net}");
    }
    out
}

/// `nft -f` input: table `TABLE` (family `family`) with interval sets `allow4` and `allow6`
/// holding `v4` and `v6`, and `chains` (complete chain definitions) after them.
pub fn nft_file(family: &str, table: &str, v4: &[IpNet], v6: &[IpNet], chains: &str) -> String {
    let mut out = String::with_capacity((v4.len() + v6.len()) * 24);
    let _ = writeln!(out, "table {family} {table} {{");
    for (name, ty, nets) in [("allow4", "ipv4_addr", v4), ("allow6", "ipv6_addr", v6)] {
        let _ = writeln!(out, "  set {name} {{\n    type {ty}\n    flags interval");
        if !nets.is_empty() {
            out.push_str("    elements = {\n");
            for net in nets {
                let _ = writeln!(out, "      {net},");
            }
            out.push_str("    }\n");
        }
        out.push_str("  }\n");
    }
    out.push_str(chains);
    out.push_str("}\n");
    out
}

/// `ipset restore` input: hash:net sets `allow4` and `allow6`.
pub fn ipset_file(v4: &[IpNet], v6: &[IpNet]) -> String {
    let mut out = String::with_capacity((v4.len() + v6.len()) * 24);
    for (name, family, nets) in [("allow4", "inet", v4), ("allow6", "inet6", v6)] {
        let size = (nets.len().max(1024) as u64).next_power_of_two();
        let _ = writeln!(
            out,
            "create {name} hash:net family {family} hashsize {size} maxelem {}",
            size * 2
        );
        for net in nets {
            let _ = writeln!(out, "add {name} {net}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_have_the_promised_shape_and_no_overlaps() {
        for list in [List::v4(20_000, 7), List::v6(20_000, 7)] {
            assert_eq!(list.nets.len(), 20_000);
            let mut sorted: Vec<(u128, u128)> = list.nets.iter().map(interval).collect();
            sorted.sort_unstable();
            for pair in sorted.windows(2) {
                assert!(pair[0].1 < pair[1].0, "overlap: {pair:?}");
            }
        }
        let v4 = List::v4(20_000, 7);
        let host = v4.nets.iter().filter(|n| n.prefix_len() == 32).count();
        assert!((15_000..17_000).contains(&host), "{host} /32s of 20,000");
        assert_eq!(List::v4(1000, 3).nets, List::v4(1000, 3).nets, "seeded");
    }

    #[test]
    fn a_diff_keeps_the_size_and_stays_disjoint() {
        let mut list = List::v4(10_000, 1);
        let removed = list.shrink(100);
        let added = list.grow(100);
        assert_eq!(
            (removed.len(), added.len(), list.nets.len()),
            (100, 100, 10_000)
        );
        assert!(list.nets[0] == LAB_V4.parse::<IpNet>().unwrap());
    }
}
