//! Entry ids: the value the LPM tries return, and the index of the entry's hit counters.
//!
//! Ids are reused after removal (the hit counter array has one slot per possible id), and a
//! restarted daemon gives each network the id the previous daemon's tries had for it, so its
//! hit counts, kept in the pinned HITS map, carry over.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ipnet::IpNet;

pub struct Ids {
    by_net: BTreeMap<IpNet, u32>,
    by_id: HashMap<u32, IpNet>,
    /// Released ids, reused first (lowest first).
    free: BTreeSet<u32>,
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
            by_net: BTreeMap::new(),
            by_id: HashMap::new(),
            free: BTreeSet::new(),
            next: 1,
            capacity,
            reserved: inherited.values().copied().collect(),
            inherited,
        }
    }

    pub fn assign(&mut self, net: IpNet) -> Option<Assigned> {
        if let Some(id) = self.inherited.remove(&net) {
            self.reserved.remove(&id);
            self.insert(net, id);
            return Some(Assigned { id, fresh: false });
        }
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                // Skip ids in use (inherited ones can lie anywhere) or held for an inherited
                // network that has not come up yet.
                while self.by_id.contains_key(&self.next) || self.reserved.contains(&self.next) {
                    self.next += 1;
                }
                if self.next > self.capacity {
                    return None;
                }
                self.next += 1;
                self.next - 1
            }
        };
        self.insert(net, id);
        Some(Assigned { id, fresh: true })
    }

    fn insert(&mut self, net: IpNet, id: u32) {
        self.by_net.insert(net, id);
        self.by_id.insert(id, net);
    }

    pub fn release(&mut self, net: &IpNet) {
        if let Some(id) = self.by_net.remove(net) {
            self.by_id.remove(&id);
            // Ids the search has not reached yet are found by it again.
            if id < self.next {
                self.free.insert(id);
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

    pub fn net(&self, id: u32) -> Option<IpNet> {
        self.by_id.get(&id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &u32)> {
        self.by_net.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn ids_are_reused_and_inherited() {
        let mut ids = Ids::new(4, HashMap::from([(net("198.18.1.0/24"), 3)]));
        let a = ids.assign(net("198.18.2.0/24")).unwrap();
        assert_eq!((a.id, a.fresh), (1, true));
        let b = ids.assign(net("198.18.1.0/24")).unwrap();
        assert_eq!(
            (b.id, b.fresh),
            (3, false),
            "the previous daemon's id, counts kept"
        );
        assert_eq!(ids.assign(net("198.18.3.0/24")).unwrap().id, 2);
        assert_eq!(
            ids.assign(net("198.18.4.0/24")).unwrap().id,
            4,
            "3 is taken"
        );
        assert!(ids.assign(net("198.18.5.0/24")).is_none(), "capacity");
        // An inherited id above the search point, released, is not handed out twice.
        let mut ids2 = Ids::new(4, HashMap::from([(net("198.18.1.0/24"), 3)]));
        ids2.assign(net("198.18.1.0/24")).unwrap();
        ids2.release(&net("198.18.1.0/24"));
        ids2.forget_inherited();
        let got: Vec<u32> = (0..4)
            .map(|i| {
                ids2.assign(net(&format!("198.18.{}.0/24", 10 + i)))
                    .unwrap()
                    .id
            })
            .collect();
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(ids2.assign(net("198.18.20.0/24")).is_none());
        ids.release(&net("198.18.2.0/24"));
        let again = ids.assign(net("198.18.5.0/24")).unwrap();
        assert_eq!((again.id, again.fresh), (1, true));
        assert_eq!(ids.net(1), Some(net("198.18.5.0/24")));
    }

    #[test]
    fn unused_inherited_ids_are_freed_after_the_first_apply() {
        let mut ids = Ids::new(2, HashMap::from([(net("198.18.1.0/24"), 1)]));
        assert_eq!(ids.assign(net("198.18.2.0/24")).unwrap().id, 2);
        assert!(ids.assign(net("198.18.3.0/24")).is_none());
        ids.forget_inherited();
        let reused = ids.assign(net("198.18.3.0/24")).unwrap();
        assert_eq!((reused.id, reused.fresh), (1, true));
    }
}
