//! Timed entries in the kernel: the lists a network is in only until a deadline.
//!
//! ENTRY_LISTS holds each network's lasting lists; ENTRY_TIMED, for every network a timed
//! entry reaches (its own, or one containing it), each deadline with the lists it ends
//! ([`TimedLists`]). The program adds the lists whose deadline is still ahead, so a timed
//! entry stops admitting at its deadline with no daemon running.
//!
//! While a change is applied a network's deadlines are the old and the new together (what
//! either allows). The two maps are written in the order that keeps every moment between
//! the old and the new: when widening, the lasting mask first (a list moving from timed to
//! lasting is never missing); when narrowing, the deadlines first (a list moving from lasting
//! to timed is never missing).

use std::collections::HashMap;

use allowlist_common::maps::{self as names, MAX_ENDS_PER_NETWORK, TIMED_STEPS, TimedLists};
use allowlist_common::verdict::ListMask;
use anyhow::{Context, Result, bail};
use aya::Ebpf;
use aya::maps::HashMap as BpfHashMap;
use ipnet::IpNet;

/// Deadlines (boot-time ns) and the lists each ends, by deadline, each deadline once.
pub type Ends = Vec<(u64, ListMask)>;

/// The deadlines of both.
pub fn union(a: &[(u64, ListMask)], b: &[(u64, ListMask)]) -> Ends {
    let mut ends: Ends = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                (i, j) = (i + 1, j + 1);
                (x.0, x.1 | y.1)
            }
            (Some(x), Some(y)) if x.0 > y.0 => {
                j += 1;
                *y
            }
            (Some(x), _) => {
                i += 1;
                *x
            }
            (None, y) => {
                j += 1;
                *y.expect("j < b.len()")
            }
        };
        ends.push(next);
    }
    ends
}

/// Each network's deadlines, counting those of the timed networks containing it, for
/// networks given in order (see `lists::Masks`): only timed networks are kept on the stack.
#[derive(Default)]
pub struct EndsWalk {
    containing: Vec<(IpNet, Ends)>,
}

impl EndsWalk {
    pub fn next(&mut self, net: IpNet, own: &[(u64, ListMask)]) -> Ends {
        while let Some((outer, _)) = self.containing.last() {
            if outer.contains(&net) {
                break;
            }
            self.containing.pop();
        }
        let inherited = self.containing.last().map_or(&[][..], |(_, e)| e);
        if own.is_empty() && inherited.is_empty() {
            return Ends::new();
        }
        let ends = union(own, inherited);
        self.containing.push((net, ends.clone()));
        ends
    }
}

/// The kernel's record of `ends`.
pub fn record(net: IpNet, ends: &[(u64, ListMask)]) -> Result<TimedLists> {
    if ends.len() > TIMED_STEPS {
        bail!(
            "{net} lies in timed entries with {} different ends between the old and the new \
             rules: at most {TIMED_STEPS}; make the change in two steps",
            ends.len()
        );
    }
    let mut timed = TimedLists::default();
    for (i, &(until, lists)) in ends.iter().enumerate() {
        timed.until_ns[i] = until;
        timed.lists[i] = lists;
    }
    Ok(timed)
}

/// Checks a network's deadlines under the new rules alone (a change needs room for the old
/// ones beside them).
pub fn check_new(net: IpNet, ends: &[(u64, ListMask)]) -> Result<()> {
    if ends.len() > MAX_ENDS_PER_NETWORK {
        bail!(
            "{net} lies in timed entries with {} different ends: at most \
             {MAX_ENDS_PER_NETWORK} a network, counting the timed entries containing it; give \
             some of them the same `expires`",
            ends.len()
        );
    }
    Ok(())
}

/// What ENTRY_TIMED holds, by entry id.
#[derive(Default)]
pub struct Written {
    records: HashMap<u32, TimedLists>,
}

impl Written {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn has(&self, id: u32) -> bool {
        self.records.contains_key(&id)
    }

    /// The lists `id` holds until a deadline, passed or not.
    pub fn lists(&self, id: u32) -> ListMask {
        self.records
            .get(&id)
            .map_or(0, |r| r.lists.iter().fold(0, |mask, lists| mask | lists))
    }

    /// Makes id's record `ends` (none if empty), writing only what differs.
    pub fn set(
        &mut self,
        ebpf: &mut Ebpf,
        id: u32,
        net: IpNet,
        ends: &[(u64, ListMask)],
    ) -> Result<()> {
        if ends.is_empty() {
            return self.clear(ebpf, id);
        }
        let timed = record(net, ends)?;
        if self.records.get(&id) == Some(&timed) {
            return Ok(());
        }
        if !self.records.contains_key(&id) && self.records.len() >= names::MAX_TIMED_IDS as usize {
            bail!(
                "more than {} networks lie in timed entries (the timed entries and every entry \
                 inside one): shorten the timed entries that contain many others",
                names::MAX_TIMED_IDS
            );
        }
        map(ebpf)?
            .insert(id, timed, 0)
            .with_context(|| format!("writing the deadlines of {net}"))?;
        self.records.insert(id, timed);
        Ok(())
    }

    pub fn clear(&mut self, ebpf: &mut Ebpf, id: u32) -> Result<()> {
        if self.records.remove(&id).is_some() {
            let result = map(ebpf)?.remove(&id);
            let missing = matches!(&result, Err(aya::maps::MapError::KeyNotFound))
                || matches!(
                    &result,
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ENOENT)
                );
            if !missing {
                result.context("removing deadlines from the kernel")?;
            }
        }
        Ok(())
    }
}

fn map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut aya::maps::MapData, u32, TimedLists>> {
    let map = ebpf
        .map_mut(names::ENTRY_TIMED)
        .context("the XDP object has no map ENTRY_TIMED")?;
    Ok(BpfHashMap::try_from(map)?)
}

/// Reads id's record from the live map, for the daemon's verdict.
pub fn live(ebpf: &Ebpf, id: u32) -> Result<Option<TimedLists>> {
    let map = ebpf
        .map(names::ENTRY_TIMED)
        .context("the XDP object has no map ENTRY_TIMED")?;
    let map: BpfHashMap<_, u32, TimedLists> = BpfHashMap::try_from(map)?;
    match map.get(&id, 0) {
        Ok(timed) => Ok(Some(timed)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e).context("reading the deadlines of an entry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn deadlines_are_merged_and_inherited() {
        assert_eq!(
            union(&[(10, 1), (30, 2)], &[(20, 4), (30, 8)]),
            [(10, 1), (20, 4), (30, 10)]
        );
        let mut walk = EndsWalk::default();
        let ends: Vec<Ends> = [
            ("198.18.0.0/16", vec![(50, 1)]),
            ("198.18.1.0/24", vec![]),
            ("198.18.1.5/32", vec![(20, 2)]),
            ("198.19.0.0/16", vec![]),
            ("198.19.0.1/32", vec![(50, 4)]),
        ]
        .iter()
        .map(|(n, own)| walk.next(net(n), own))
        .collect();
        assert_eq!(
            ends,
            [
                vec![(50, 1)],
                vec![(50, 1)],
                vec![(20, 2), (50, 1)],
                vec![],
                vec![(50, 4)]
            ]
        );
        let five: Ends = (1..=5).map(|i| (i, 1)).collect();
        assert!(check_new(net("198.18.0.1/32"), &five[..4]).is_ok());
        let error = check_new(net("198.18.0.1/32"), &five).unwrap_err();
        assert!(error.to_string().contains("5 different ends"), "{error}");
    }
}
