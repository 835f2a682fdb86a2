//! Hit counts per network and list, as `HITS` and `LIST_HITS` keep them (see
//! `allowlist_common::maps::HITS`), and the names of the list numbers their tags name
//! (`LIST_NAMES`), which the next daemon inherits with the counts.

use std::collections::{HashMap, HashSet};

use allowlist_common::maps::{self as names, HitStat, ListHit, ListName, MAX_LISTS};
use anyhow::{Context, Result};
use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuHashMap, PerCpuValues};
use ipnet::IpNet;

use super::{Filter, batch, lists_of, map, map_fd, map_mut, remove_pin};
use allowlist_common::verdict::ListMask;

/// Above this many networks `hits_of` reads every counter in batches rather than theirs one
/// lookup at a time (a few per network: one per CPU, and one in `LIST_HITS`).
const READ_ONE_BY_ONE: usize = 8192;

/// One network's hits for each list that let a connection in through it (`None`: counts kept
/// before lists were told apart, or for a list gone since).
pub type ListHits = HashMap<(IpNet, Option<String>), HitStat>;

/// The names `LIST_NAMES` gives list numbers.
pub(super) fn read_names(ebpf: &Ebpf) -> Result<Vec<(u8, String)>> {
    let names: Array<_, ListName> = Array::try_from(map(ebpf, names::LIST_NAMES)?)?;
    let mut out = Vec::new();
    for n in 0..MAX_LISTS as u8 {
        let bytes = names.get(&u32::from(n), 0).context("reading LIST_NAMES")?;
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        if len > 0 {
            out.push((n, String::from_utf8_lossy(&bytes[..len]).into_owned()));
        }
    }
    Ok(out)
}

/// Names list numbers (an empty name frees one).
pub(super) fn write_names<'a>(
    ebpf: &mut Ebpf,
    numbered: impl Iterator<Item = (u8, &'a str)>,
) -> Result<()> {
    let mut names: Array<_, ListName> = Array::try_from(map_mut(ebpf, names::LIST_NAMES)?)?;
    for (n, name) in numbered {
        let mut bytes: ListName = [0; 32];
        let len = name.len().min(bytes.len());
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        names
            .set(u32::from(n), bytes, 0)
            .context("writing LIST_NAMES")?;
    }
    Ok(())
}

/// Drops a previous daemon's pinned LIST_HITS and LIST_NAMES unless they have this build's
/// layout (or when its HITS was dropped: their counts go with it).
pub(super) fn check_pins(maps_dir: &std::path::Path, hits_kept: bool) -> Result<()> {
    let fits = |name: &str, key: usize, value: usize, max: u32| {
        MapData::from_pin(maps_dir.join(name))
            .ok()
            .and_then(|old| old.info().ok())
            .is_some_and(|i| {
                i.key_size() as usize == key
                    && i.value_size() as usize == value
                    && i.max_entries() == max
            })
    };
    let list_hits = fits(
        names::LIST_HITS,
        size_of::<ListHit>(),
        size_of::<HitStat>(),
        names::MAX_LIST_HITS,
    );
    if !(hits_kept && list_hits) {
        remove_pin(&maps_dir.join(names::LIST_HITS))?;
    }
    if !fits(
        names::LIST_NAMES,
        4,
        size_of::<ListName>(),
        MAX_LISTS as u32,
    ) {
        remove_pin(&maps_dir.join(names::LIST_NAMES))?;
    }
    Ok(())
}

/// Adds `stat`'s packets and latest time to `sum` (whose count is untagged).
fn add_to(sum: &mut HitStat, stat: &HitStat) {
    sum.tagged += stat.packets();
    sum.last_seen_ns = sum.last_seen_ns.max(stat.last_seen_ns);
}

impl Filter {
    /// Hits with any, per network and list: new connections let in, summed over CPUs, and the
    /// boot-time ns of the latest.
    pub fn hits(&self) -> Result<ListHits> {
        // By id, then by list.
        let mut by_id: HashMap<u32, HashMap<Option<usize>, HitStat>> = HashMap::new();
        let mut add = |id, list, stat: &HitStat| {
            add_to(by_id.entry(id).or_default().entry(list).or_default(), stat);
        };
        batch::for_each_array(map_fd(&self.ebpf, names::HITS)?, |index, stat: &HitStat| {
            if stat.packets() != 0 {
                add(index % self.hit_slots, stat.list(), stat);
            }
        })
        .context("reading the hit counters")?;
        let list_hits: PerCpuHashMap<_, ListHit, HitStat> =
            PerCpuHashMap::try_from(map(&self.ebpf, names::LIST_HITS)?)?;
        for item in list_hits.iter() {
            let (key, per_cpu) = item.context("reading the hit counters of shared networks")?;
            for stat in per_cpu.iter() {
                add(key.id, Some(key.list as usize), stat);
            }
        }
        let mut out = ListHits::new();
        for &(net, id, _) in self.ids.entries() {
            for (&list, stat) in by_id.get(&id).into_iter().flatten() {
                let name = list.and_then(|n| self.numbers.name(n as u8));
                // A hit counts for the entry of its list that holds the network the kernel
                // found (the most specific of any list): that network, or one around it.
                let entry = match list {
                    Some(n) => self.entry_of(net, 1 << n).unwrap_or(net),
                    None => net,
                };
                add_to(
                    out.entry((entry, name.map(str::to_owned))).or_default(),
                    stat,
                );
            }
        }
        Ok(out)
    }

    /// What `hits` says of these entries (network, list name), and maybe of others: a page of
    /// `list` at a million entries reads only the counters of the networks inside its
    /// entries, unless they are so many that reading every slot of every CPU at once is
    /// cheaper.
    pub fn hits_of<'a>(
        &self,
        entries: impl IntoIterator<Item = (IpNet, &'a str)>,
    ) -> Result<ListHits> {
        let entries: Vec<_> = entries
            .into_iter()
            .map(|(entry, name)| (entry, name, self.ids.within(entry)))
            .collect();
        let networks: usize = entries.iter().map(|(_, _, inside)| inside.len()).sum();
        if networks > READ_ONE_BY_ONE {
            return self.hits();
        }
        let slots: Array<_, HitStat> = Array::try_from(map(&self.ebpf, names::HITS)?)?;
        let list_hits: PerCpuHashMap<_, ListHit, HitStat> =
            PerCpuHashMap::try_from(map(&self.ebpf, names::LIST_HITS)?)?;
        let mut out = ListHits::new();
        let mut untagged_read = HashSet::new();
        for (entry, name, inside) in entries {
            let Some(n) = self.numbers.number(name).map(usize::from) else {
                continue;
            };
            // A network inside the entry counts for it unless an entry of the same list
            // between them holds it (`entry_of`, as `hits` attributes).
            for &(net, id, _) in inside {
                let (mut tagged, mut untagged) = (HitStat::default(), HitStat::default());
                for cpu in 0..self.cpus {
                    let stat = slots
                        .get(&(cpu * self.hit_slots + id), 0)
                        .context("reading the hit counters")?;
                    match stat.list() {
                        Some(list) if list == n => add_to(&mut tagged, &stat),
                        None if net == entry => add_to(&mut untagged, &stat),
                        _ => {}
                    }
                }
                match list_hits.get(&ListHit { id, list: n as u32 }, 0) {
                    Ok(per_cpu) => per_cpu.iter().for_each(|stat| add_to(&mut tagged, stat)),
                    Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(e) => {
                        return Err(e).context("reading the hit counters of shared networks");
                    }
                }
                if tagged.tagged != 0 && self.entry_of(net, 1 << n) == Some(entry) {
                    add_to(
                        out.entry((entry, Some(name.to_owned()))).or_default(),
                        &tagged,
                    );
                }
                // Counts from before lists were told apart belong to each list of the
                // network: read once however many of its lists are asked for.
                if untagged.tagged != 0 && untagged_read.insert(id) {
                    add_to(out.entry((entry, None)).or_default(), &untagged);
                }
            }
        }
        Ok(out)
    }

    /// The most specific network containing `net` that is an entry, lasting or timed, of
    /// one of `lists`.
    fn entry_of(&self, net: IpNet, lists: ListMask) -> Option<IpNet> {
        (0..=net.prefix_len()).rev().find_map(|len| {
            let around = IpNet::new(net.addr(), len).ok()?.trunc();
            let lasting = self.ids.own(&around)?;
            let timed = self.ends_own.get(&around).map_or(0, |ends| lists_of(ends));
            ((lasting | timed) & lists != 0).then_some(around)
        })
    }

    /// Zeroes the hit counters of `ids` (new entries reusing an id).
    pub(super) fn clear_hits(&mut self, ids: &[u32]) -> Result<()> {
        let slots = self.hit_slots;
        let keys: Vec<u32> = (0..self.cpus)
            .flat_map(|cpu| ids.iter().map(move |id| cpu * slots + id))
            .collect();
        let zeros = vec![HitStat::default(); keys.len()];
        batch::update(map_fd(&self.ebpf, names::HITS)?, &keys, &zeros)
            .context("clearing the hit counters of new entries")?;
        let ids: HashSet<u32> = ids.iter().copied().collect();
        let mut list_hits: PerCpuHashMap<_, ListHit, HitStat> =
            PerCpuHashMap::try_from(map_mut(&mut self.ebpf, names::LIST_HITS)?)?;
        let stale: Vec<ListHit> = list_hits
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| ids.contains(&key.id))
            .collect();
        for key in stale {
            list_hits
                .remove(&key)
                .context("clearing the hit counters of new entries")?;
        }
        Ok(())
    }

    /// Zeroes what each id counted for lists its mask no longer holds (`lists`: id → the
    /// lists that now cover it). The program counts no more such hits: the mask is written.
    pub(super) fn clear_stale_hits(&mut self, lists: &HashMap<u32, ListMask>) -> Result<()> {
        if lists.is_empty() {
            return Ok(());
        }
        let stale = |id: u32, list: usize| lists.get(&id).is_some_and(|m| m & 1 << list == 0);
        let mut zeroed = Vec::new();
        {
            let hits: Array<_, HitStat> = Array::try_from(map(&self.ebpf, names::HITS)?)?;
            for &id in lists.keys() {
                for cpu in 0..self.cpus {
                    let slot = cpu * self.hit_slots + id;
                    let stat = hits.get(&slot, 0).context("reading HITS")?;
                    if stat.list().is_some_and(|list| stale(id, list)) {
                        zeroed.push(slot);
                    }
                }
            }
        }
        let zeros = vec![HitStat::default(); zeroed.len()];
        batch::update(map_fd(&self.ebpf, names::HITS)?, &zeroed, &zeros)
            .context("clearing the hits of lists gone")?;
        let mut list_hits: PerCpuHashMap<_, ListHit, HitStat> =
            PerCpuHashMap::try_from(map_mut(&mut self.ebpf, names::LIST_HITS)?)?;
        let gone: Vec<ListHit> = list_hits
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| stale(key.id, key.list as usize))
            .collect();
        for key in gone {
            list_hits
                .remove(&key)
                .context("clearing the hits of lists gone")?;
        }
        Ok(())
    }

    /// Puts saved hit counts back for networks the maps hold (others are skipped), without a
    /// time: the kernel's clock cannot express one from before this boot, so the caller keeps
    /// it. Only for new, empty counters, before the program sees traffic: the counts are
    /// written, not added, on CPU 0 (`hits` sums the CPUs).
    pub fn restore_hits<'a>(
        &mut self,
        counts: impl Iterator<Item = (IpNet, Option<&'a str>, u64)>,
    ) -> Result<()> {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let mut shared = Vec::new();
        let mut slotted = HashSet::new();
        for (net, list, packets) in counts {
            let Some(id) = self.ids.id(&net) else {
                continue;
            };
            let number = match list {
                Some(name) => match self.numbers.number(name) {
                    Some(n) => Some(usize::from(n)),
                    None => continue,
                },
                None => None,
            };
            // The first list of a network gets its HITS slot, any other one LIST_HITS.
            match (slotted.insert(id), number) {
                (true, _) => {
                    keys.push(id);
                    values.push(HitStat::new(number, packets, 0));
                }
                (false, Some(n)) => shared.push((ListHit { id, list: n as u32 }, packets)),
                (false, None) => {}
            }
        }
        batch::update(map_fd(&self.ebpf, names::HITS)?, &keys, &values)
            .context("restoring the saved hit counts")?;
        let cpus = self.cpus as usize;
        let mut list_hits: PerCpuHashMap<_, ListHit, HitStat> =
            PerCpuHashMap::try_from(map_mut(&mut self.ebpf, names::LIST_HITS)?)?;
        for (key, packets) in shared {
            let mut per_cpu = vec![HitStat::default(); cpus];
            per_cpu[0] = HitStat::new(Some(key.list as usize), packets, 0);
            let values = PerCpuValues::try_from(per_cpu)?;
            list_hits
                .insert(key, values, 0)
                .context("restoring the saved hit counts")?;
        }
        Ok(())
    }
}
