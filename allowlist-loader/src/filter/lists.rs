//! The kernel's side of service lists: each list's number (its bit in every mask), the
//! settings and port table they make, and each network's mask of lists.
//!
//! A source's lists are the mask of the most specific network covering it, so each network's
//! mask holds the lists of every entry containing it (`Masks` walks the networks in order:
//! a network sorts after every network containing it). While a change is applied the masks
//! are those of the old and the new entries together, and only lists enforcing both before
//! and after enforce: whatever moment a packet sees, every source that both the old and the
//! new rules let in is let in.

use std::collections::{BTreeMap, BTreeSet};

use allowlist_common::maps::{MAX_LISTS, Settings, port_list_byte, port_list_position};
use allowlist_common::verdict::{ListMask, Proto};
use allowlist_config::rules::{ListRules, Mode};
use anyhow::{Result, bail};
use ipnet::IpNet;

/// What the kernel needs of one list besides its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSpec<'a> {
    pub name: &'a str,
    pub mode: Mode,
    pub tcp_ports: &'a BTreeSet<u16>,
    pub udp_ports: &'a BTreeSet<u16>,
}

impl<'a> From<&'a ListRules> for ListSpec<'a> {
    fn from(list: &'a ListRules) -> Self {
        ListSpec {
            name: &list.name,
            mode: list.mode,
            tcp_ports: &list.tcp_ports,
            udp_ports: &list.udp_ports,
        }
    }
}

/// A list as the maps have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedList {
    pub name: String,
    pub number: u8,
    pub mode: Mode,
    pub tcp_ports: BTreeSet<u16>,
    pub udp_ports: BTreeSet<u16>,
}

impl AppliedList {
    pub fn bit(&self) -> ListMask {
        1 << self.number
    }
}

/// Gives each list name a number that stays while the list exists, so that a change never
/// renumbers the masks the maps hold.
#[derive(Default)]
pub struct Numbers {
    by_name: BTreeMap<String, u8>,
}

impl Numbers {
    /// Starts from the numbers a previous daemon gave its lists.
    pub fn inherit(named: Vec<(u8, String)>) -> Numbers {
        Numbers {
            by_name: named.into_iter().map(|(n, name)| (name, n)).collect(),
        }
    }

    pub fn number(&self, name: &str) -> Option<u8> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, number: u8) -> Option<&str> {
        self.by_name
            .iter()
            .find(|(_, n)| **n == number)
            .map(|(name, _)| name.as_str())
    }

    /// Numbers for `names` (in order), keeping the ones held; new names get free numbers
    /// (listed in `fresh`). Held names not among `names` keep theirs until `release`.
    pub fn assign<'a>(
        &mut self,
        names: impl Iterator<Item = &'a str>,
        fresh: &mut Vec<u8>,
    ) -> Result<Vec<u8>> {
        let names: Vec<&str> = names.collect();
        let mut numbers = Vec::with_capacity(names.len());
        for name in names.iter().copied() {
            if let Some(&n) = self.by_name.get(name) {
                numbers.push(n);
                continue;
            }
            let taken: BTreeSet<u8> = self.by_name.values().copied().collect();
            let Some(n) = (0..MAX_LISTS as u8).find(|n| !taken.contains(n)) else {
                bail!(
                    "more than {MAX_LISTS} lists between the old and the new rules: remove the \
                     old lists in one change and add the new ones in the next"
                );
            };
            self.by_name.insert(name.to_owned(), n);
            fresh.push(n);
            numbers.push(n);
        }
        Ok(numbers)
    }

    /// Forgets every name but `names`, once no map refers to them; returns the numbers freed.
    pub fn release<'a>(&mut self, names: impl Iterator<Item = &'a str>) -> Vec<u8> {
        let keep: BTreeSet<&str> = names.collect();
        let mut freed = Vec::new();
        self.by_name.retain(|name, n| {
            let kept = keep.contains(name.as_str());
            if !kept {
                freed.push(*n);
            }
            kept
        });
        freed
    }
}

/// Translates a mask of positions in the caller's list of lists into list numbers.
pub fn to_numbers(positions: u32, numbers: &[u8]) -> ListMask {
    numbers
        .iter()
        .enumerate()
        .filter(|(position, _)| positions & (1 << position) != 0)
        .fold(0, |mask, (_, &n)| mask | 1 << n)
}

/// The settings the lists make (the IPv6 prefilter's and the emergency's fields are kept).
pub fn settings(lists: &[AppliedList], mut settings: Settings) -> Settings {
    let mask = |pick: &dyn Fn(&AppliedList) -> bool| {
        lists
            .iter()
            .filter(|l| pick(l))
            .fold(0, |mask, l| mask | l.bit())
    };
    settings.enforcing = mask(&|l| l.mode == Mode::Enforce);
    settings.monitoring = mask(&|l| l.mode == Mode::Monitor);
    settings.tcp_lists = mask(&|l| !l.tcp_ports.is_empty());
    settings.udp_lists = mask(&|l| !l.udp_ports.is_empty());
    settings
}

/// The settings while a change from `old` to `new` is applied: only what enforces in both
/// enforces, and a fragment hiding its port answers to the lists of either.
pub fn settings_between(old: &Settings, new: &Settings) -> Settings {
    let enforcing = old.enforcing & new.enforcing;
    Settings {
        enforcing,
        monitoring: (old.monitoring | new.monitoring) & !enforcing,
        tcp_lists: old.tcp_lists | new.tcp_lists,
        udp_lists: old.udp_lists | new.udp_lists,
        ..*new
    }
}

/// The PORT_LISTS words the lists make.
pub fn port_words(lists: &[AppliedList]) -> Vec<u64> {
    let mut words = vec![0u64; allowlist_common::maps::PORT_LISTS_WORDS as usize];
    for list in lists {
        let tcp = list.tcp_ports.iter().map(|&p| (Proto::Tcp, p));
        for (proto, port) in tcp.chain(list.udp_ports.iter().map(|&p| (Proto::Udp, p))) {
            let (word, shift) = port_list_position(proto, port);
            words[word as usize] |= port_list_byte(Some(list.number)) << shift;
        }
    }
    words
}

/// Each network's mask of lists, counting those of the networks containing it, for networks
/// given in order (IpNet's order puts a network after every network containing it).
#[derive(Default)]
pub struct Masks {
    containing: Vec<(IpNet, ListMask)>,
}

impl Masks {
    /// The mask of `net`, whose own entries are in the lists `own`.
    pub fn next(&mut self, net: IpNet, own: ListMask) -> ListMask {
        while let Some((outer, _)) = self.containing.last() {
            if outer.contains(&net) {
                break;
            }
            self.containing.pop();
        }
        let mask = own | self.containing.last().map_or(0, |(_, m)| *m);
        self.containing.push((net, mask));
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_inherits_the_lists_of_the_networks_containing_it() {
        let mut masks = Masks::default();
        let walk: Vec<ListMask> = [
            ("198.18.0.0/16", 1),
            ("198.18.1.0/24", 2),
            ("198.18.1.5/32", 4),
            ("198.18.2.0/24", 0),
            ("198.19.0.1/32", 8),
            ("2001:db8::/32", 16),
            ("2001:db8::1/128", 0),
        ]
        .iter()
        .map(|(n, own)| masks.next(net(n), *own))
        .collect();
        assert_eq!(walk, [1, 3, 7, 1, 8, 16, 16]);
    }

    #[test]
    fn numbers_stay_while_a_list_exists() {
        let mut numbers = Numbers::default();
        let mut fresh = Vec::new();
        let mut assign = |numbers: &mut Numbers, names: [&str; 2]| {
            fresh.clear();
            let got = numbers.assign(names.into_iter(), &mut fresh).unwrap();
            (got, fresh.clone())
        };
        assert_eq!(
            assign(&mut numbers, ["ssh", "api"]),
            (vec![0, 1], vec![0, 1])
        );
        // `db` arrives while `ssh` goes: `ssh` keeps its number until released.
        assert_eq!(assign(&mut numbers, ["api", "db"]), (vec![1, 2], vec![2]));
        numbers.release(["api", "db"].into_iter());
        assert_eq!(assign(&mut numbers, ["web", "api"]), (vec![0, 1], vec![0]));
        assert_eq!(to_numbers(0b11, &[5, 0]), 0b10_0001);
        let many: Vec<String> = (0..=MAX_LISTS).map(|i| format!("l{i}")).collect();
        let error = Numbers::default()
            .assign(many.iter().map(String::as_str), &mut Vec::new())
            .unwrap_err();
        assert!(error.to_string().contains("more than 32 lists"), "{error}");
    }

    #[test]
    fn between_two_settings_only_what_enforces_in_both_enforces() {
        let old = Settings {
            enforcing: 0b011,
            monitoring: 0b100,
            tcp_lists: 0b001,
            ..Settings::default()
        };
        let new = Settings {
            enforcing: 0b110,
            monitoring: 0b001,
            udp_lists: 0b100,
            ..Settings::default()
        };
        let mid = settings_between(&old, &new);
        assert_eq!(mid.enforcing, 0b010);
        assert_eq!(mid.monitoring, 0b101);
        assert_eq!((mid.tcp_lists, mid.udp_lists), (0b001, 0b100));
    }
}
