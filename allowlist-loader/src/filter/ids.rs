//! Entry ids: the value the maps return for an entry, and the index of its hit counters.
//!
//! Ids are reused after removal (the hit counter array has one slot per possible id), and a
//! restarted daemon gives each network the id the previous daemon's maps had for it, so its
//! hit counts, kept in the pinned HITS map, carry over.
//!
//! The entries the maps hold are kept as one vector sorted by network, ids and lists
//! alongside: at a million entries that is 28 MB, where ordered maps in both directions took
//! several times that, and a change is a merge of two sorted lists.

use std::collections::{HashMap, HashSet};

use allowlist_common::verdict::ListMask;
use ipnet::IpNet;

/// A network the maps hold, its id, and the lists whose entries hold it.
pub type Held = (IpNet, u32, ListMask);

pub struct Ids {
    /// What the maps hold, sorted by network.
    entries: Vec<Held>,
    /// A bit per id (0..=capacity): set while an entry has it.
    used: Vec<u64>,
    /// Released ids, reused first.
    free: Vec<u32>,
    /// Where the search for a never-used id goes on.
    next: u32,
    capacity: u32,
    /// Ids the previous daemon gave these networks, held back until `forget_inherited`.
    inherited: HashMap<IpNet, u32>,
    reserved: HashSet<u32>,
}

/// An id for a new entry; `fresh` when its hit counters may hold a former entry's counts.
pub struct Assigned {
    pub id: u32,
    pub fresh: bool,
}

impl Ids {
    /// Ids 1..=capacity (0 means "no entry").
    pub fn new(capacity: u32, inherited: HashMap<IpNet, u32>) -> Ids {
        let inherited: HashMap<IpNet, u32> = inherited
            .into_iter()
            .filter(|(_, id)| (1..=capacity).contains(id))
            .collect();
        Ids {
            entries: Vec::new(),
            used: vec![0; capacity as usize / 64 + 1],
            free: Vec::new(),
            next: 1,
            capacity,
            reserved: inherited.values().copied().collect(),
            inherited,
        }
    }

    fn is_used(&self, id: u32) -> bool {
        self.used[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn set_used(&mut self, id: u32, used: bool) {
        let word = &mut self.used[id as usize / 64];
        if used {
            *word |= 1 << (id % 64);
        } else {
            *word &= !(1 << (id % 64));
        }
    }

    /// An id for `net`, which the maps are about to gain; `record` makes it part of what
    /// they hold.
    pub fn assign(&mut self, net: IpNet) -> Option<Assigned> {
        if let Some(id) = self.inherited.remove(&net) {
            self.reserved.remove(&id);
            self.set_used(id, true);
            return Some(Assigned { id, fresh: false });
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                // Skip ids in use (inherited ones can lie anywhere) or held for an inherited
                // network that has not come up yet.
                while self.next <= self.capacity
                    && (self.is_used(self.next) || self.reserved.contains(&self.next))
                {
                    self.next += 1;
                }
                if self.next > self.capacity {
                    return None;
                }
                self.next += 1;
                self.next - 1
            }
        };
        self.set_used(id, true);
        Some(Assigned { id, fresh: true })
    }

    /// Gives back ids `assign` handed out for entries that never reached the maps.
    pub fn unassign(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            self.set_used(id, false);
            self.free.push(id);
        }
    }

    /// The maps now hold `added` (with the ids `assign` gave them) and no longer `removed`
    /// (sorted); their ids are released. Both are merged in place: a second vector of a
    /// million entries would double what the list costs at every reload.
    pub fn record(&mut self, mut added: Vec<Held>, removed: &[IpNet]) {
        if self.entries.is_empty() {
            // The first apply: nothing to merge with. Room for a reload's worth of additions.
            added.sort_unstable();
            added.reserve(added.len() / 16);
            self.entries = added;
            return;
        }
        if !removed.is_empty() {
            let mut removed = removed.iter().peekable();
            let mut released = Vec::new();
            self.entries.retain(|(net, id, _)| {
                while removed.next_if(|r| *r < net).is_some() {}
                let gone = removed.next_if_eq(&net).is_some();
                if gone {
                    released.push(*id);
                }
                !gone
            });
            for id in released {
                self.set_used(id, false);
                // Ids the search has not reached yet are found by it again.
                if id < self.next {
                    self.free.push(id);
                }
            }
        }
        if added.is_empty() {
            return;
        }
        added.sort_unstable();
        // Merged from the back into the grown vector: every element moves at most once.
        let (mut old, mut new) = (self.entries.len(), added.len());
        self.entries.extend_from_slice(&added);
        let entries = &mut self.entries;
        while new > 0 {
            let write = old + new - 1;
            if old > 0 && entries[old - 1].0 > added[new - 1].0 {
                entries[write] = entries[old - 1];
                old -= 1;
            } else {
                entries[write] = added[new - 1];
                new -= 1;
            }
        }
    }

    /// After the first apply: inherited ids of networks no longer listed become free.
    pub fn forget_inherited(&mut self) {
        let next = self.next;
        self.free.extend(
            self.inherited
                .drain()
                .map(|(_, id)| id)
                .filter(|id| *id < next),
        );
        self.reserved.clear();
    }

    pub fn id(&self, net: &IpNet) -> Option<u32> {
        self.find(net).map(|index| self.entries[index].1)
    }

    fn find(&self, net: &IpNet) -> Option<usize> {
        self.entries
            .binary_search_by(|(held, _, _)| held.cmp(net))
            .ok()
    }

    /// The lists holding `net` (held) are now `own`.
    pub fn set_own(&mut self, net: &IpNet, own: ListMask) {
        if let Some(index) = self.find(net) {
            self.entries[index].2 = own;
        }
    }

    /// The entry with id `id` that covers `ip`: the maps answer a lookup with an id only.
    pub fn covering(&self, ip: std::net::IpAddr, id: u32) -> Option<IpNet> {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (0..=max).rev().find_map(|len| {
            let net = IpNet::new(ip, len).ok()?.trunc();
            (self.id(&net) == Some(id)).then_some(net)
        })
    }

    /// The lists whose lasting entries hold `net`, if it is held.
    pub fn own(&self, net: &IpNet) -> Option<ListMask> {
        self.find(net).map(|index| self.entries[index].2)
    }

    pub fn entries(&self) -> &[Held] {
        &self.entries
    }

    /// The held networks inside `net`, itself included: sorted by address then prefix,
    /// they lie together from `net` on.
    pub fn within(&self, net: IpNet) -> &[Held] {
        let start = self.entries.partition_point(|(held, _, _)| *held < net);
        let len = self.entries[start..]
            .iter()
            .take_while(|(held, _, _)| net.contains(held))
            .count();
        &self.entries[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// Assigns and records one network, as an apply does.
    fn add(ids: &mut Ids, s: &str) -> Option<(u32, bool)> {
        let a = ids.assign(net(s))?;
        ids.record(vec![(net(s), a.id, 1)], &[]);
        Some((a.id, a.fresh))
    }

    fn remove(ids: &mut Ids, s: &str) {
        ids.record(Vec::new(), &[net(s)]);
    }

    #[test]
    fn changes_merge_in_place_into_network_order() {
        let mut ids = Ids::new(2000, HashMap::new());
        let mut model = std::collections::BTreeMap::new();
        // A multiplicative walk over /24s: each change adds and removes networks in between
        // the held ones, at both ends, and none.
        let nets = |from: u32, n: u32| -> Vec<IpNet> {
            (from..from + n)
                .map(|i| {
                    IpNet::new(
                        std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761) & !0xff).into(),
                        24,
                    )
                    .unwrap()
                })
                .collect()
        };
        for step in 0..12u32 {
            let mut removed: Vec<IpNet> = model
                .keys()
                .copied()
                .step_by(3)
                .take(step as usize * 7)
                .collect();
            removed.sort();
            let added: Vec<Held> = nets(step * 100, 90)
                .into_iter()
                .filter(|n| !model.contains_key(n))
                .map(|n| (n, ids.assign(n).unwrap().id, step))
                .collect();
            ids.record(added.clone(), &removed);
            for n in &removed {
                model.remove(n);
            }
            model.extend(added.iter().map(|&(n, id, own)| (n, (id, own))));
            let held: Vec<Held> = model.iter().map(|(n, (id, own))| (*n, *id, *own)).collect();
            assert_eq!(ids.entries(), held.as_slice(), "after step {step}");
        }
    }

    #[test]
    fn ids_are_reused_and_inherited() {
        let mut ids = Ids::new(4, HashMap::from([(net("198.18.1.0/24"), 3)]));
        assert_eq!(add(&mut ids, "198.18.2.0/24"), Some((1, true)));
        assert_eq!(
            add(&mut ids, "198.18.1.0/24"),
            Some((3, false)),
            "the previous daemon's id, counts kept"
        );
        assert_eq!(add(&mut ids, "198.18.3.0/24").unwrap().0, 2);
        assert_eq!(add(&mut ids, "198.18.4.0/24").unwrap().0, 4, "3 is taken");
        assert!(add(&mut ids, "198.18.5.0/24").is_none(), "capacity");
        // An inherited id above the search point, released, is not handed out twice.
        let mut ids2 = Ids::new(4, HashMap::from([(net("198.18.1.0/24"), 3)]));
        add(&mut ids2, "198.18.1.0/24").unwrap();
        remove(&mut ids2, "198.18.1.0/24");
        ids2.forget_inherited();
        let got: Vec<u32> = (0..4)
            .map(|i| {
                add(&mut ids2, &format!("198.18.{}.0/24", 10 + i))
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(add(&mut ids2, "198.18.20.0/24").is_none());
        remove(&mut ids, "198.18.2.0/24");
        assert_eq!(add(&mut ids, "198.18.5.0/24"), Some((1, true)));
        assert_eq!(ids.id(&net("198.18.5.0/24")), Some(1));
        assert_eq!(
            ids.covering("198.18.5.77".parse().unwrap(), 1),
            Some(net("198.18.5.0/24"))
        );
    }

    #[test]
    fn unused_inherited_ids_are_freed_after_the_first_apply() {
        let mut ids = Ids::new(2, HashMap::from([(net("198.18.1.0/24"), 1)]));
        assert_eq!(add(&mut ids, "198.18.2.0/24").unwrap().0, 2);
        assert!(add(&mut ids, "198.18.3.0/24").is_none());
        ids.forget_inherited();
        assert_eq!(add(&mut ids, "198.18.3.0/24"), Some((1, true)));
    }

    #[test]
    fn within_is_every_held_network_inside_one() {
        let mut ids = Ids::new(64, HashMap::new());
        let held = [
            "198.18.0.0/15",
            "198.18.0.0/16",
            "198.18.0.0/24",
            "198.18.0.7/32",
            "198.18.1.0/24",
            "198.18.255.255/32",
            "198.19.0.0/16",
            "198.20.0.0/24",
            "2001:db8::/32",
            "2001:db8::1/128",
            "2001:db9::/32",
        ];
        for n in held {
            add(&mut ids, n).unwrap();
        }
        let within = |s: &str| -> Vec<String> {
            ids.within(net(s))
                .iter()
                .map(|(n, _, _)| n.to_string())
                .collect()
        };
        assert_eq!(
            within("198.18.0.0/16"),
            [
                "198.18.0.0/16",
                "198.18.0.0/24",
                "198.18.0.7/32",
                "198.18.1.0/24",
                "198.18.255.255/32"
            ]
        );
        assert_eq!(within("198.18.0.0/15").len(), 7);
        assert_eq!(within("198.18.1.0/24"), ["198.18.1.0/24"]);
        assert_eq!(
            within("2001:db8::/32"),
            ["2001:db8::/32", "2001:db8::1/128"]
        );
        assert!(
            within("198.18.2.0/24").is_empty(),
            "not held, nothing inside"
        );
        assert_eq!(
            within("0.0.0.0/0").len(),
            8,
            "every IPv4 network, no IPv6 one"
        );
    }

    #[test]
    fn unassigned_ids_are_handed_out_again() {
        let mut ids = Ids::new(2, HashMap::new());
        let a = ids.assign(net("198.18.1.0/24")).unwrap();
        ids.unassign([a.id]);
        assert_eq!(add(&mut ids, "198.18.2.0/24").unwrap().0, a.id);
    }
}
