//! Random allowlist setups, as the config would accept them: one to four lists usually, up
//! to 32 sometimes, in any mode, each with its own TCP and UDP ports (no port of a protocol in
//! two lists; some lists with ports of one protocol only, or none) and its own entries. Within
//! a list no entry covers another (the config refuses that), but entries of different lists
//! overlap on purpose: the same network in two lists, a host or /24 inside another list's /24
//! or /16, a wider network around another list's entry (IPv6 alike). Entries also look like
//! they overlap within a list: siblings and neighbours of other entries, halves of a /24, wide
//! IPv6 entries that turn the IPv6 prefilter off, single hosts.
//!
//! About a third of the entries are timed, with ends long past (some before boot), a little
//! before the setup is applied, among the instants its frames are judged at, a little after
//! those and far ahead; a fifth of the ends are another entry's (equal ends). As entries of
//! different lists nest, timed entries nest in and contain lasting and timed entries of other
//! lists; now and then a chain of four nested timed entries of four lists puts a network at
//! the kernel's bound of ends. A change keeps an entry's end, or gives a lasting entry one,
//! moves it or takes it away. No network lies in timed entries of more than
//! [`MAX_ENDS_PER_NETWORK`] different ends, except in [`over_limit`], which the filter must
//! refuse.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Rng, percent, pick, weighted};
use crate::model::{Mode, ModelList, Setup};

/// The kernel's bound on lists.
pub const MAX_LISTS: usize = 32;

/// The kernel's bound on the different ends of the timed entries a network lies in (its own
/// and those containing it, in any list).
pub const MAX_ENDS_PER_NETWORK: usize = 4;

const MICROSECOND: i64 = 1_000;
const MILLISECOND: i64 = 1_000_000;
const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;

/// When a setup is made, for the ends of its timed entries (ns on the clock of the model's
/// ends: the differential test's boot clock).
#[derive(Clone, Copy, Debug)]
pub struct Time {
    /// About when the setup is applied.
    pub now: i64,
    /// About how long applying it and judging its frames take: ends "among its frames" fall
    /// in `now..now + window`.
    pub window: i64,
}

/// A fresh setup.
pub fn fresh(rng: &mut Rng, time: Time) -> Setup {
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
        add_list(rng, &mut setup, time);
    }
    if percent(rng, 10) {
        chain(rng, &mut setup, time, MAX_ENDS_PER_NETWORK);
    }
    fit_ends(&mut setup);
    setup
}

/// The next setup of a run: mostly a small change of `previous` (as reloads and `allowlistctl`
/// make, which `Filter::apply` turns into map updates), sometimes a fresh one.
pub fn next(rng: &mut Rng, previous: &Setup, time: Time) -> Setup {
    if percent(rng, 30) {
        return fresh(rng, time);
    }
    let mut setup = previous.clone();
    if percent(rng, 15) {
        setup.emergency = !setup.emergency;
    }
    if percent(rng, 8) && setup.lists.len() < MAX_LISTS {
        add_list(rng, &mut setup, time);
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
            let net = list.entries.remove(rng.usize(..list.entries.len()));
            list.ends.remove(&net);
        }
    }
    for _ in 0..rng.usize(0..=3) {
        let i = rng.usize(..lists);
        add_entry(rng, &mut setup, i, time);
    }
    // Ends given, moved and taken away.
    if percent(rng, 60) {
        for _ in 0..rng.usize(1..=4) {
            let i = rng.usize(..lists);
            if setup.lists[i].entries.is_empty() {
                continue;
            }
            let net = setup.lists[i].entries[rng.usize(..setup.lists[i].entries.len())];
            if percent(rng, 30) {
                setup.lists[i].ends.remove(&net);
            } else {
                let end = end(rng, &setup, time);
                setup.lists[i].ends.insert(net, end);
            }
        }
    }
    if percent(rng, 5) {
        chain(rng, &mut setup, time, MAX_ENDS_PER_NETWORK);
    }
    fit_ends(&mut setup);
    setup
}

/// `setup` with a chain of nested timed entries of five different ends, one more than a
/// network may lie in. The filter must refuse it before writing anything. `None` if no free
/// range for the chain turned up.
pub fn over_limit(rng: &mut Rng, setup: &Setup, time: Time) -> Option<Setup> {
    let mut setup = setup.clone();
    (0..20)
        .any(|_| chain(rng, &mut setup, time, MAX_ENDS_PER_NETWORK + 1))
        .then_some(setup)
}

/// Adds `depth` nested timed entries, each of another list (lists with a TCP port each are
/// added until there are enough) and each with an end of its own (far ahead, so that the
/// kernel's deadlines differ too), in a range no list has entries in yet; whether such a
/// range turned up.
fn chain(rng: &mut Rng, setup: &mut Setup, time: Time, depth: usize) -> bool {
    while setup.lists.len() < depth {
        let port = free_port(rng, setup, false);
        setup.lists.push(ModelList {
            mode: mode(rng),
            tcp_ports: BTreeSet::from([port]),
            ..ModelList::default()
        });
    }
    let lists = setup.lists.len();
    // A /20 nested down to a /28 and beyond, or an IPv6 /48 down to a /80 and beyond, mostly
    // in the test ranges.
    let v4 = percent(rng, 60);
    let anywhere = percent(rng, 30);
    let (outer, step): (IpNet, u8) = if v4 {
        let base = match anywhere {
            true => rng.u32(..),
            false => u32::from(Ipv4Addr::new(198, 18, 0, 0)) | rng.u32(..1 << 17),
        };
        let net = Ipv4Net::new(Ipv4Addr::from(base), 20)
            .expect("valid")
            .trunc();
        (IpNet::V4(net), 2)
    } else {
        let base = match anywhere {
            true => rng.u128(..),
            false => {
                u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) | rng.u128(..1 << 96)
            }
        };
        let net = Ipv6Net::new(Ipv6Addr::from(base), 48)
            .expect("valid")
            .trunc();
        (IpNet::V6(net), 8)
    };
    let taken = setup
        .entries()
        .any(|e| e.contains(&outer) || outer.contains(e));
    if taken {
        return false;
    }
    let first = rng.usize(..lists);
    let start = time.now + rng.i64(SECOND..=DAY);
    let mut net = outer;
    for level in 0..depth {
        let list = &mut setup.lists[(first + level) % lists];
        list.entries.push(net);
        list.ends.insert(net, start + level as i64 * SECOND);
        let inner = net.prefix_len() + step;
        net = match net {
            IpNet::V4(n) => IpNet::V4(Ipv4Net::new(n.network(), inner).expect("at most /30")),
            IpNet::V6(n) => IpNet::V6(Ipv6Net::new(n.network(), inner).expect("at most /88")),
        };
    }
    true
}

/// An end for a timed entry: another entry's, or one long past, a little before `time.now`,
/// among the frames, a little after them, or far ahead.
fn end(rng: &mut Rng, setup: &Setup, time: Time) -> i64 {
    let ends = setup.ends();
    if !ends.is_empty() && percent(rng, 20) {
        return *ends.iter().nth(rng.usize(..ends.len())).expect("below len");
    }
    // Drawn without a range that depends on the window, so that the draws (and with them the
    // frames of a seed) do not depend on timing.
    let fraction =
        |rng: &mut Rng, of: i64| ((i128::from(rng.u32(..)) * i128::from(of)) >> 32) as i64;
    match weighted(rng, &[5, 10, 10, 45, 12, 18]) {
        // Before boot: the filter writes the smallest deadline there is.
        0 => -rng.i64(SECOND..=10 * 365 * DAY),
        1 => time.now - rng.i64(SECOND..=30 * DAY),
        2 => time.now - rng.i64(MICROSECOND..=10 * MILLISECOND),
        3 => time.now + fraction(rng, time.window),
        4 => time.now + time.window + rng.i64(MICROSECOND..=50 * MILLISECOND),
        _ => time.now + rng.i64(SECOND..=30 * DAY),
    }
}

/// The most different ends of the timed entries any one network lies in (its own and those
/// containing it, in any list).
pub fn most_ends(setup: &Setup) -> usize {
    setup
        .entries()
        .map(|net| {
            let ends: BTreeSet<i64> = setup
                .lists
                .iter()
                .flat_map(|list| list.ends.iter())
                .filter(|(timed, _)| timed.contains(net))
                .map(|(_, end)| *end)
                .collect();
            ends.len()
        })
        .max()
        .unwrap_or(0)
}

/// Brings every network within [`MAX_ENDS_PER_NETWORK`] different ends of the timed entries
/// it lies in, taking ends one at a time from the entries around a network that is over: the
/// innermost entry whose end none of the others has takes the end of one around it (or stops
/// being timed, if none is); if every end is shared, the innermost end's entries stop being
/// timed. Either takes an end from the network and gives no network one it lacked (what is
/// around a network is nested), so it ends.
fn fit_ends(setup: &mut Setup) {
    loop {
        let timed: Vec<(usize, IpNet, i64)> = setup
            .lists
            .iter()
            .enumerate()
            .flat_map(|(i, list)| list.ends.iter().map(move |(net, end)| (i, *net, *end)))
            .collect();
        let over = setup.entries().find_map(|net| {
            let mut around: Vec<(usize, IpNet, i64)> = timed
                .iter()
                .filter(|(_, t, _)| t.contains(net))
                .copied()
                .collect();
            let ends: BTreeSet<i64> = around.iter().map(|(_, _, end)| *end).collect();
            if ends.len() <= MAX_ENDS_PER_NETWORK {
                return None;
            }
            // Innermost first.
            around.sort_by_key(|(_, net, _)| std::cmp::Reverse(net.prefix_len()));
            let alone = |end: i64| around.iter().filter(|(_, _, e)| *e == end).count() == 1;
            let changes: Vec<(usize, IpNet, Option<i64>)> =
                match around.iter().position(|(_, _, end)| alone(*end)) {
                    Some(at) => {
                        let (i, inner, _) = around[at];
                        let outer = around[at + 1..].first().map(|(_, _, end)| *end);
                        vec![(i, inner, outer)]
                    }
                    None => {
                        let own = around[0].2;
                        around
                            .iter()
                            .filter(|(_, _, end)| *end == own)
                            .map(|(i, net, _)| (*i, *net, None))
                            .collect()
                    }
                };
            Some(changes)
        });
        let Some(changes) = over else {
            return;
        };
        for (i, net, end) in changes {
            match end {
                Some(end) => setup.lists[i].ends.insert(net, end),
                None => setup.lists[i].ends.remove(&net),
            };
        }
    }
}

fn mode(rng: &mut Rng) -> Mode {
    match weighted(rng, &[60, 25, 15]) {
        0 => Mode::Enforce,
        1 => Mode::Monitor,
        _ => Mode::Off,
    }
}

/// Appends a list with ports no other list has and entries that often overlap theirs.
fn add_list(rng: &mut Rng, setup: &mut Setup, time: Time) {
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
        add_entry(rng, setup, i, time);
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
/// around it), otherwise a fresh one, IPv4 or IPv6 alike; timed a third of the time.
fn add_entry(rng: &mut Rng, setup: &mut Setup, i: usize, time: Time) {
    let others: Vec<IpNet> = setup
        .lists
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .flat_map(|(_, list)| list.entries.iter().copied())
        .collect();
    let entries = &mut setup.lists[i].entries;
    let before = entries.len();
    if !others.is_empty() && percent(rng, 40) {
        let other = others[rng.usize(..others.len())];
        let net = related(rng, other);
        insert_unless_overlapping(entries, net);
    } else if percent(rng, 50) {
        add_v4(rng, entries);
    } else {
        add_v6(rng, entries);
    }
    if percent(rng, 35) && setup.lists[i].entries.len() > before {
        let net = *setup.lists[i].entries.last().expect("just added");
        let end = end(rng, setup, time);
        setup.lists[i].ends.insert(net, end);
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
