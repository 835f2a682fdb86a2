//! The loaded XDP program and its maps, kept in step with a [`Rules`].
//!
//! `apply` writes only the difference from what the maps hold, in an order that never blocks
//! a source both the old and the new rules allow: new entries go in before old ones come out,
//! the prefilters are widened before and narrowed after every trie change, and the lists'
//! masks, ports and modes pass through a state that allows what either allows (`lists`).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use allowlist_common::maps::{
    self as names, CONFIRM_V6_WORDS, Counters, CpuState, EventBudget, HOSTS_V4_WORDS, MAX_LISTS,
    PER16_BITS_V4_WORDS, PER22_BITS_V4_WORDS, PER24_BITS_V4_WORDS, PER24_STATES_V4_WORDS,
    PREFILTER_V6_WORDS, Settings, port_list_mask, port_list_position,
};
use allowlist_common::verdict::{self, ListMask, Parsed, Proto, Reason, Source};
use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap as BpfHashMap, LpmTrie, Map, MapData, MapType, PerCpuArray, RingBuf,
        lpm_trie::Key,
    },
    programs::Xdp,
};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use crate::prefilter::{V4Prefilter, V4Words, V6Prefilter, V6Words, v4_slots};
use allowlist_config::rules::{Mode, Protocol, Rules};

mod batch;
mod hits;
mod ids;
pub mod lists;
mod timed;

pub use hits::ListHits;
use ids::{Held, Ids};
pub use lists::{AppliedList, ListSpec};
use lists::{Masks, Numbers};
use timed::{Ends, EndsWalk};

/// The compiled XDP object, built by `cargo xtask build` and embedded by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("ALLOWLIST_EBPF_OBJECT"));
const PROGRAM: &str = "allowlist";
/// Where the previous release pinned the IPv4 prefilter's levels. A daemon taking over from it
/// fills maps of its own before it attaches, so these are only removed.
const PREVIOUS_PIN_NAMES: [&str; 5] = [
    "SUMMARY_V4",
    "BLOCKS_V4",
    "TOUCHED_V4",
    "PREFILTER_V4",
    "PORTS",
];
/// Every map, for pinning.
pub const MAP_NAMES: [&str; 20] = [
    names::ALLOW_V4,
    names::ALLOW_V6,
    names::EXACT_V4,
    names::EXACT_V6,
    names::PER24_STATES_V4,
    names::PER16_BITS_V4,
    names::PER22_BITS_V4,
    names::HOSTS_V4,
    names::PER24_BITS_V4,
    names::PREFILTER_V6,
    names::CONFIRM_V6,
    names::WHOLE_V4,
    names::PORT_LISTS,
    names::ENTRY_LISTS,
    names::ENTRY_TIMED,
    names::SETTINGS,
    names::COUNTERS,
    names::HITS,
    names::LIST_HITS,
    names::LIST_NAMES,
];

/// A memory-mapped BPF array of u64 words (created with BPF_F_MMAPABLE).
struct MappedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
}

impl MappedWords {
    fn new(map: &Map, words: u32) -> Result<Self> {
        let Map::Array(data) = map else {
            bail!("prefilter map is not an array");
        };
        let bytes = NonZeroUsize::new(words as usize * 8).context("empty prefilter map")?;
        // SAFETY: maps the whole array, which the kernel sized to `words` u64 values; the
        // mapping lives until Drop, and only atomics touch it.
        let ptr = unsafe {
            mmap(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                data.fd().as_fd(),
                0,
            )
        }
        .context("mmap of a prefilter map")?;
        Ok(MappedWords {
            ptr: ptr.cast(),
            len: words as usize,
        })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: see new(); AtomicU64 has the layout of u64.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what new() mapped; no slice outlives self.
        let _ = unsafe { munmap(self.ptr.cast(), self.len * 8) };
    }
}

/// The IPv4 prefilter's arrays (see `prefilter::V4Words`).
struct V4Mapped {
    hosts: MappedWords,
    per16: MappedWords,
    per22: MappedWords,
    per24: MappedWords,
    states: MappedWords,
}

impl V4Mapped {
    fn words(&self) -> V4Words<'_> {
        V4Words {
            hosts: self.hosts.words(),
            per16: self.per16.words(),
            per22: self.per22.words(),
            per24: self.per24.words(),
            states: self.states.words(),
        }
    }
}

/// The IPv6 prefilter's arrays (see `prefilter::V6Words`).
struct V6Mapped {
    first: MappedWords,
    confirm: MappedWords,
}

impl V6Mapped {
    fn words(&self) -> V6Words<'_> {
        V6Words {
            first: self.first.words(),
            confirm: self.confirm.words(),
        }
    }
}

pub struct Filter {
    ebpf: Ebpf,
    prefilter_v4: V4Mapped,
    prefilter_v6: V6Mapped,
    v4: V4Prefilter,
    v6: V6Prefilter,
    /// The lists as the maps have them, and their numbers.
    lists: Vec<AppliedList>,
    numbers: Numbers,
    /// Each list number's counts when its list got it: CPU_STATE counts from the program's
    /// start, and a number goes to a new list when an old one is gone.
    list_baseline: [Counters; MAX_LISTS],
    ids: Ids,
    /// What ENTRY_TIMED holds, and each held network's own deadlines.
    timed: timed::Written,
    ends_own: HashMap<IpNet, Ends>,
    /// Boot time minus wall time, as deadlines were last converted (see `boot_deadline`).
    boot_offset: Option<i128>,
    settings: Settings,
    capacity: u32,
    /// Entry ids + 1: the length of each CPU's block of HITS.
    hit_slots: u32,
    /// Ids from here on have never counted a hit in HITS: a new entry there needs no clearing.
    hits_clean_from: u32,
    /// HITS is a previous daemon's pinned map, counts and all.
    hits_inherited: bool,
    cpus: u32,
}

impl Filter {
    /// Loads the program with fresh, empty maps sized for `max_entries` per address family;
    /// nothing is attached or pinned yet.
    pub fn load(max_entries: u32) -> Result<Filter> {
        Filter::load_with(max_entries, None)
    }

    /// Like `load`, but continuing what a previous daemon pinned under `pin_dir`: its hit
    /// and interface counters are shared (the same pinned maps), and each network keeps the
    /// entry id it had, so its hit counts carry over.
    pub fn load_with(max_entries: u32, pin_dir: Option<&Path>) -> Result<Filter> {
        Filter::load_object_with(OBJECT, max_entries, pin_dir)
    }

    /// Like `load`, from another build of the program (`cargo xtask bench` loads its
    /// `random-source` variant this way, so that `apply` fills it exactly as the daemon does).
    pub fn load_object(object: &[u8], max_entries: u32) -> Result<Filter> {
        Filter::load_object_with(object, max_entries, None)
    }

    fn load_object_with(object: &[u8], max_entries: u32, pin_dir: Option<&Path>) -> Result<Filter> {
        // One line on a kernel too old, rather than the verifier's dump (the tests and the
        // benchmarks load through here too; the daemon asks earlier, before it creates anything).
        crate::kernel::require_features()?;
        // Every entry of both families needs an id; 0 means none.
        let id_capacity = max_entries * 2;
        let hit_slots = id_capacity + 1;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)? as u32;
        let hits_len = hit_slots
            .checked_mul(cpus)
            .context("max_entries too large for the hit counters of this many CPUs")?;
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(names::ALLOW_V4, max_entries)
            .map_max_entries(names::ALLOW_V6, max_entries)
            .map_max_entries(names::EXACT_V4, max_entries)
            .map_max_entries(names::EXACT_V6, max_entries)
            .map_max_entries(names::HITS, hits_len)
            .map_max_entries(names::ENTRY_LISTS, hit_slots)
            .map_max_entries(names::WHOLE_V4, whole_slots(max_entries))
            .override_global(names::HIT_SLOTS, &hit_slots, true);
        let mut inherited = HashMap::new();
        let (hits_pin, list_hits_pin, list_names_pin);
        let counters_pin;
        let mut hits_inherited = false;
        if let Some(dir) = pin_dir {
            let maps_dir = dir.join("maps");
            std::fs::create_dir_all(&maps_dir)
                .with_context(|| format!("creating {}", maps_dir.display()))?;
            inherited = previous_ids(&maps_dir)?;
            hits_pin = maps_dir.join(names::HITS);
            if let Ok(old) = MapData::from_pin(&hits_pin)
                && old
                    .info()
                    .ok()
                    .is_none_or(|i| i.max_entries() != hits_len || !is_array(i.map_type()))
            {
                tracing::warn!(
                    "max_entries (or the counters' layout) changed: per-entry hit counters \
                     start from zero"
                );
                remove_pin(&hits_pin)?;
            }
            hits_inherited = hits_pin.exists();
            hits::check_pins(&maps_dir, hits_inherited)?;
            list_hits_pin = maps_dir.join(names::LIST_HITS);
            list_names_pin = maps_dir.join(names::LIST_NAMES);
            counters_pin = maps_dir.join(names::COUNTERS);
            if let Ok(old) = MapData::from_pin(&counters_pin)
                && old.info().ok().is_none_or(|i| {
                    !matches!(i.map_type(), Ok(MapType::PerCpuArray))
                        || i.value_size() as usize != size_of::<Counters>()
                })
            {
                tracing::warn!("the interface counters' layout changed: they start from zero");
                remove_pin(&counters_pin)?;
            }
            loader
                .map_pin_path(names::HITS, hits_pin.as_path())
                .map_pin_path(names::LIST_HITS, list_hits_pin.as_path())
                .map_pin_path(names::LIST_NAMES, list_names_pin.as_path())
                .map_pin_path(names::COUNTERS, counters_pin.as_path());
        }
        let mut ebpf = loader
            .load(object)
            .context("loading the XDP object into the kernel")?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .context("the XDP object has no program `allowlist`")?
            .try_into()?;
        program
            .load()
            .context("the kernel refused the XDP program")?;
        let prefilter_v4 = V4Mapped {
            hosts: MappedWords::new(map(&ebpf, names::HOSTS_V4)?, HOSTS_V4_WORDS)?,
            per16: MappedWords::new(map(&ebpf, names::PER16_BITS_V4)?, PER16_BITS_V4_WORDS)?,
            per22: MappedWords::new(map(&ebpf, names::PER22_BITS_V4)?, PER22_BITS_V4_WORDS)?,
            per24: MappedWords::new(map(&ebpf, names::PER24_BITS_V4)?, PER24_BITS_V4_WORDS)?,
            states: MappedWords::new(map(&ebpf, names::PER24_STATES_V4)?, PER24_STATES_V4_WORDS)?,
        };
        let prefilter_v6 = V6Mapped {
            first: MappedWords::new(map(&ebpf, names::PREFILTER_V6)?, PREFILTER_V6_WORDS)?,
            confirm: MappedWords::new(map(&ebpf, names::CONFIRM_V6)?, CONFIRM_V6_WORDS)?,
        };
        // A previous daemon's numbers, so that its counts stay with their lists.
        let numbers = Numbers::inherit(hits::read_names(&ebpf)?);
        Ok(Filter {
            ebpf,
            prefilter_v4,
            prefilter_v6,
            v4: V4Prefilter::default(),
            v6: V6Prefilter::default(),
            lists: Vec::new(),
            numbers,
            list_baseline: [Counters::default(); MAX_LISTS],
            ids: Ids::new(id_capacity, inherited),
            timed: timed::Written::default(),
            ends_own: HashMap::new(),
            boot_offset: None,
            settings: Settings::default(),
            capacity: max_entries,
            hit_slots,
            hits_clean_from: if hits_inherited { hit_slots } else { 0 },
            hits_inherited,
            cpus,
        })
    }

    pub fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("load() checked the program exists and is XDP")
    }

    /// Whether any list is enforced.
    pub fn active(&self) -> bool {
        self.lists.iter().any(|l| l.mode == Mode::Enforce)
    }

    /// The lists as the maps have them, in the order of the last `apply`.
    pub fn lists(&self) -> &[AppliedList] {
        &self.lists
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Brings the maps from what they hold to `rules`.
    pub fn apply(&mut self, rules: &Rules) -> Result<()> {
        let mut nets: BTreeMap<IpNet, u32> = BTreeMap::new();
        let mut ends: Timed = BTreeMap::new();
        for (position, list) in rules.lists.iter().enumerate() {
            for net in &list.entries {
                *nets.entry(*net).or_default() |= 1 << position;
            }
            for (net, end) in &list.ends {
                ends.entry(*net).or_default().push((1 << position, *end));
            }
        }
        let lists: Vec<ListSpec> = rules.lists.iter().map(ListSpec::from).collect();
        self.apply_parts(&lists, nets.into_iter(), &ends)
    }

    /// `apply`, with each network once, in network order, with the positions in `lists` of
    /// the lists holding it as a mask (as a config's `entries_by_net` gives them): a
    /// million-entry config need not be copied into a set first. `ends` holds the timed
    /// networks: for each, the positions of the lists holding it only until a (wall-clock)
    /// time.
    pub fn apply_parts(
        &mut self,
        lists: &[ListSpec],
        entries: impl Iterator<Item = (IpNet, u32)>,
        ends: &Timed,
    ) -> Result<()> {
        if lists.len() > MAX_LISTS {
            bail!(
                "{} lists: the kernel tells at most {MAX_LISTS} apart",
                lists.len()
            );
        }
        let mut fresh = Vec::new();
        let numbers = self
            .numbers
            .assign(lists.iter().map(|l| l.name), &mut fresh)?;
        hits::write_names(
            &mut self.ebpf,
            fresh
                .iter()
                .filter_map(|&n| Some((n, self.numbers.name(n)?))),
        )?;
        // A number a removed list had counts for starts from zero for its new list.
        if !fresh.is_empty() {
            let now = self.list_counts()?;
            for n in fresh {
                self.list_baseline[usize::from(n)] = now[usize::from(n)];
            }
        }
        let target_ends = self.target_ends(ends, &numbers);
        let single = match target_ends.is_empty() && self.ends_own.is_empty() {
            true => self.single_list(&numbers),
            false => None,
        };
        let plan = self.plan(
            entries.map(|(net, positions)| (net, lists::to_numbers(positions, &numbers))),
            &target_ends,
            single,
        )?;
        let applied: Vec<AppliedList> = lists
            .iter()
            .zip(&numbers)
            .map(|(l, &number)| AppliedList {
                name: l.name.to_owned(),
                number,
                mode: l.mode,
                tcp_ports: l.tcp_ports.clone(),
                udp_ports: l.udp_ports.clone(),
            })
            .collect();
        if plan.timed.iter().any(|t| !t.mid.is_empty()) && self.settings.timed == 0 {
            self.settings.timed = 1;
            self.write_settings()?;
        }
        // Widening: lasting masks, then deadlines (see `timed`).
        self.write_entry_lists(&plan.before)?;
        for t in &plan.timed {
            if let Some(id) = t.id {
                self.timed.set(&mut self.ebpf, id, t.net, &t.mid)?;
            }
        }
        let added_mid: HashMap<IpNet, &Ends> = plan
            .timed
            .iter()
            .filter(|t| t.id.is_none())
            .map(|t| (t.net, &t.mid))
            .collect();
        self.insert_entries(plan.added, &added_mid)?;
        let settings = lists::settings(&applied, self.settings);
        if applied != self.lists {
            self.settings = lists::settings_between(&self.settings, &settings);
            self.write_settings()?;
            self.write_ports(&applied)?;
        }
        self.settings = settings;
        self.write_settings()?;
        self.lists = applied;
        self.remove_entries(&plan.removed)?;
        // Narrowing: deadlines, then lasting masks.
        for t in &plan.timed {
            match self.ids.id(&t.net) {
                Some(id) => self.timed.set(&mut self.ebpf, id, t.net, &t.then)?,
                None => {
                    if let Some(id) = t.id {
                        self.timed.clear(&mut self.ebpf, id)?;
                    }
                }
            }
        }
        let mut after = plan.after;
        for (net, mask) in plan.added_after {
            if let Some(id) = self.ids.id(&net) {
                after.push((id, mask));
            }
        }
        self.write_entry_lists(&after)?;
        // Networks that no longer lie in a list lose the hits they counted for it: they
        // were its entry's, which is gone.
        let mut narrowed: HashMap<u32, ListMask> = after.iter().copied().collect();
        for t in &plan.timed {
            if let Some(id) = self.ids.id(&t.net)
                && !narrowed.contains_key(&id)
            {
                narrowed.insert(id, self.entry_lists(id)?);
            }
        }
        for (id, mask) in narrowed.iter_mut() {
            *mask |= self.timed.lists(*id);
        }
        self.clear_stale_hits(&narrowed)?;
        for (net, own) in plan.own {
            self.ids.set_own(&net, own);
        }
        self.ends_own = target_ends;
        if self.timed.is_empty() && self.settings.timed != 0 {
            self.settings.timed = 0;
            self.write_settings()?;
        }
        let released = self.numbers.release(lists.iter().map(|l| l.name));
        hits::write_names(&mut self.ebpf, released.into_iter().map(|n| (n, "")))?;
        self.ids.forget_inherited();
        Ok(())
    }

    /// Each timed network's own deadlines, in boot time and list numbers.
    fn target_ends(&mut self, ends: &Timed, numbers: &[u8]) -> HashMap<IpNet, Ends> {
        let mut target = HashMap::with_capacity(ends.len());
        for (net, timed) in ends {
            let mut own: Ends = Vec::new();
            for &(positions, end) in timed {
                let until = self.boot_deadline(end);
                own = timed::union(&own, &[(until, lists::to_numbers(positions, numbers))]);
            }
            target.insert(*net, own);
        }
        target
    }

    /// Boot time minus wall-clock time (ns) with which `apply` converts each `expires` end
    /// into the program's deadline (the end's ns since the epoch plus this, see
    /// `boot_deadline`), once it has converted one: the differential test places ends at
    /// exact boot instants with it.
    pub fn boot_offset(&self) -> Option<i128> {
        self.boot_offset
    }

    /// Boot time (the program's clock) at wall-clock time `end`; 1 if it has passed. The
    /// offset between the clocks is kept while it moves less than a second, so that the same
    /// end gives the same deadline at every apply and a reload rewrites no deadline.
    fn boot_deadline(&mut self, end: std::time::SystemTime) -> u64 {
        let wall = |t: std::time::SystemTime| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let offset = i128::from(crate::clock::boot_ns()) - wall(std::time::SystemTime::now());
        let offset = match self.boot_offset {
            Some(kept) if (kept - offset).abs() < 1_000_000_000 => kept,
            _ => offset,
        };
        self.boot_offset = Some(offset);
        (wall(end) + offset).clamp(1, i128::from(u64::MAX)) as u64
    }

    /// The one list's bit when the maps hold at most one list and the change keeps just that
    /// one (`numbers` are the new lists'): every network's mask is then that bit, and a change
    /// of a million-entry single list need not walk the masks.
    fn single_list(&self, numbers: &[u8]) -> Option<ListMask> {
        let bit = match (self.lists.as_slice(), numbers) {
            ([], [n]) => 1 << n,
            ([held], [n]) if held.number == *n => 1 << n,
            _ => return None,
        };
        // An apply that failed half-way may have left networks of other lists.
        let held = self.ids.entries().iter().all(|&(_, _, own)| own == bit);
        held.then_some(bit)
    }

    /// What a change to `target` (networks in order, each with its lists) writes: a walk of
    /// the held and the target networks together, in network order. With `single`, every
    /// network's mask is that list's bit before, while and after.
    fn plan(
        &self,
        target: impl Iterator<Item = (IpNet, ListMask)>,
        target_ends: &HashMap<IpNet, Ends>,
        single: Option<ListMask>,
    ) -> Result<Plan> {
        let mut plan = Plan::default();
        // Masks as the maps have them, as they will be, and while the change is applied.
        let (mut old, mut new, mut between) =
            (Masks::default(), Masks::default(), Masks::default());
        // Deadlines likewise, walked only where any timed entry is or was.
        let timed = !(target_ends.is_empty() && self.ends_own.is_empty() && self.timed.is_empty());
        let (mut old_ends, mut new_ends, mut between_ends) = (
            EndsWalk::default(),
            EndsWalk::default(),
            EndsWalk::default(),
        );
        let mut held = self.ids.entries().iter().copied().peekable();
        let mut target = target.peekable();
        loop {
            let (net, was, will) = match (held.peek().copied(), target.peek().copied()) {
                (None, None) => break,
                (Some((h, id, own)), Some((t, to))) if h == t => {
                    held.next();
                    target.next();
                    (h, Some((id, own)), Some(to))
                }
                (Some((h, id, own)), Some((t, _))) if h < t => {
                    held.next();
                    (h, Some((id, own)), None)
                }
                (Some((h, id, own)), None) => {
                    held.next();
                    (h, Some((id, own)), None)
                }
                (_, Some((t, to))) => {
                    target.next();
                    (t, None, Some(to))
                }
            };
            // A timed network's own mask holds only its lasting lists.
            let own_ends = timed
                .then(|| target_ends.get(&net))
                .flatten()
                .filter(|_| will.is_some());
            let will = will.map(|own| own & !own_ends.map_or(0, |e| lists_of(e)));
            let (mid, now, then) = match single {
                Some(bit) => (bit, was.map(|_| bit), will.map(|_| bit)),
                None => (
                    between.next(net, was.map_or(0, |(_, own)| own) | will.unwrap_or(0)),
                    was.map(|(_, own)| old.next(net, own)),
                    will.map(|own| new.next(net, own)),
                ),
            };
            if timed {
                let held_ends = was.and_then(|_| self.ends_own.get(&net));
                let no: &[(u64, ListMask)] = &[];
                let (held_ends, own_ends) = (
                    held_ends.map_or(no, Vec::as_slice),
                    own_ends.map_or(no, Vec::as_slice),
                );
                if was.is_some() {
                    old_ends.next(net, held_ends);
                }
                let then = match will {
                    Some(_) => new_ends.next(net, own_ends),
                    None => Ends::new(),
                };
                timed::check_new(net, &then)?;
                let mid = between_ends.next(net, &timed::union(held_ends, own_ends));
                let id = was.map(|(id, _)| id);
                if !mid.is_empty() || !then.is_empty() || id.is_some_and(|id| self.timed.has(id)) {
                    plan.timed.push(TimedPlan { net, id, mid, then });
                }
            }
            match (was, now, will, then) {
                (Some((id, own)), Some(now), Some(will), Some(then)) => {
                    if mid != now {
                        plan.before.push((id, mid));
                    }
                    if then != mid {
                        plan.after.push((id, then));
                    }
                    if will != own {
                        plan.own.push((net, will));
                    }
                }
                (Some((id, _)), Some(now), None, _) => {
                    if mid != now {
                        plan.before.push((id, mid));
                    }
                    plan.removed.push(net);
                }
                (None, _, Some(own), Some(then)) => {
                    plan.added.push((net, own, mid));
                    if then != mid {
                        plan.added_after.push((net, then));
                    }
                }
                _ => unreachable!("every network is held, wanted or both"),
            }
        }
        Ok(plan)
    }

    /// The lasting lists ENTRY_LISTS holds for `id`.
    fn entry_lists(&self, id: u32) -> Result<ListMask> {
        let masks: Array<_, ListMask> = Array::try_from(map(&self.ebpf, names::ENTRY_LISTS)?)?;
        masks.get(&id, 0).context("reading ENTRY_LISTS")
    }

    /// Writes entry ids' masks of lists (ENTRY_LISTS), in chunks.
    fn write_entry_lists(&self, masks: &[(u32, ListMask)]) -> Result<()> {
        let fd = map_fd(&self.ebpf, names::ENTRY_LISTS)?;
        for chunk in masks.chunks(1 << 16) {
            let (ids, values): (Vec<u32>, Vec<ListMask>) = chunk.iter().copied().unzip();
            batch::update(fd, &ids, &values).context("writing the entries' lists")?;
        }
        Ok(())
    }

    /// Inserts `added` (network, lists holding it, mask while the change is applied), with
    /// the deadlines of those a timed entry reaches while the change is applied.
    fn insert_entries(
        &mut self,
        added: Vec<(IpNet, ListMask, ListMask)>,
        timed_mid: &HashMap<IpNet, &Ends>,
    ) -> Result<()> {
        let (v4, v6) = split(added.iter().map(|(net, _, _)| *net));
        self.v4.before_insert(self.prefilter_v4.words(), &v4);
        self.v6.before_insert(self.prefilter_v6.words(), &v6);
        self.publish_v6_prefilter()?;
        let mut writes = Writes::default();
        let mut fresh = Vec::new();
        let mut masks = Vec::with_capacity(added.len().min(1 << 16));
        let mut assigned: Vec<Held> = Vec::with_capacity(added.len());
        let mut result = Ok(());
        for (net, own, mid) in added {
            let Some(new) = self.ids.assign(net) else {
                result = Err(anyhow!("no entry id left for {net}"));
                break;
            };
            if new.fresh && new.id < self.hits_clean_from {
                fresh.push(new.id);
            }
            writes.push(net, new.id);
            masks.push((new.id, mid));
            assigned.push((net, new.id, own));
            if masks.len() == 1 << 16 {
                result = self.write_entry_lists(&masks);
                masks.clear();
                if result.is_err() {
                    break;
                }
            }
        }
        // A reused id must not inherit a removed entry's counts. The masks, deadlines and the
        // ids of whole /24s are written before the entries land and the /24s turn whole.
        let written = result
            .and_then(|()| self.write_entry_lists(&masks))
            .and_then(|()| {
                for &(net, id, _) in &assigned {
                    let ends = timed_mid.get(&net).map_or(&[][..], |e| e.as_slice());
                    self.timed.set(&mut self.ebpf, id, net, ends)?;
                }
                Ok(())
            })
            .and_then(|()| self.clear_hits(&fresh))
            .and_then(|()| writes.write(&self.ebpf))
            .and_then(|()| {
                self.write_whole_ids(assigned.iter().map(|&(net, id, _)| (net, id)), true)
            });
        if let Err(err) = written {
            // Not recorded: the next apply writes them all again (writes overwrite).
            self.ids.unassign(assigned.iter().map(|(_, id, _)| *id));
            return Err(err);
        }
        if let Some(max) = assigned.iter().map(|(_, id, _)| id + 1).max() {
            self.hits_clean_from = self.hits_clean_from.max(max);
        }
        self.ids.record(assigned, &[]);
        self.v4.after_insert(self.prefilter_v4.words(), &v4);
        Ok(())
    }

    fn remove_entries(&mut self, nets: &[IpNet]) -> Result<()> {
        let (v4, v6) = split(nets.iter().copied());
        self.v4.before_remove(self.prefilter_v4.words(), &v4);
        // The /24s are no longer whole, so their ids are not read any more.
        self.write_whole_ids(nets.iter().map(|&net| (net, 0)), false)?;
        for net in nets {
            let result = match net {
                IpNet::V4(n) if n.prefix_len() == 32 => {
                    exact_v4(&mut self.ebpf)?.remove(&n.addr().octets())
                }
                IpNet::V6(n) if n.prefix_len() == 128 => {
                    exact_v6(&mut self.ebpf)?.remove(&n.addr().octets())
                }
                IpNet::V4(n) => trie_v4(&mut self.ebpf)?
                    .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets())),
                IpNet::V6(n) => trie_v6(&mut self.ebpf)?
                    .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets())),
            };
            // Already gone: an earlier apply failed after removing it.
            let missing = matches!(
                &result,
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT)
            );
            if !missing {
                result.with_context(|| format!("removing {net} from the kernel's allowlist"))?;
            }
        }
        self.ids.record(Vec::new(), nets);
        self.v4.after_remove(self.prefilter_v4.words(), &v4);
        self.v6.after_remove(self.prefilter_v6.words(), &v6);
        self.publish_v6_prefilter()
    }

    /// Tells the program which IPv6 prefilter marks to test, and whether to test at all.
    fn publish_v6_prefilter(&mut self) -> Result<()> {
        let (wide, classes) = (self.v6.wide(), self.v6.classes());
        if (wide, classes) != (self.settings.v6_wide_entries, self.settings.v6_classes) {
            self.settings.v6_wide_entries = wide;
            self.settings.v6_classes = classes;
            self.write_settings()?;
        }
        Ok(())
    }

    /// Writes `id` as the entry of every /24 of each IPv4 network of /24 or wider, in
    /// chunks (a /8 has 65,536 /24s), where WHOLE_V4 is in use. With `most_specific`, only
    /// to the /24s no longer wide entry covers (0 is always safe: the trie answers).
    fn write_whole_ids(
        &self,
        entries: impl Iterator<Item = (IpNet, u32)>,
        most_specific: bool,
    ) -> Result<()> {
        if whole_slots(self.capacity) == 1 {
            return Ok(());
        }
        const CHUNK: usize = 1 << 16;
        let fd = map_fd(&self.ebpf, names::WHOLE_V4)?;
        let (mut slots, mut ids) = (Vec::new(), Vec::new());
        for (net, id) in entries {
            let IpNet::V4(net) = net else { continue };
            if net.prefix_len() > 24 {
                continue;
            }
            for slot in v4_slots(&net) {
                if most_specific && self.v4.longest_wide(slot) != Some(net.prefix_len()) {
                    continue;
                }
                slots.push(slot);
                ids.push(id);
                if slots.len() == CHUNK {
                    batch::update(fd, &slots, &ids).context("writing the ids of whole /24s")?;
                    slots.clear();
                    ids.clear();
                }
            }
        }
        batch::update(fd, &slots, &ids).context("writing the ids of whole /24s")
    }

    /// Writes the words of PORT_LISTS that differ from what the maps have: each port moves
    /// from its old list to its new one in one store.
    fn write_ports(&mut self, lists: &[AppliedList]) -> Result<()> {
        let new = lists::port_words(lists);
        let old = lists::port_words(&self.lists);
        let mut map: Array<_, u64> = Array::try_from(map_mut(&mut self.ebpf, names::PORT_LISTS)?)?;
        for (index, (new, old)) in new.iter().zip(old.iter()).enumerate() {
            if new != old {
                map.set(index as u32, new, 0)
                    .context("writing the protected ports")?;
            }
        }
        Ok(())
    }

    /// Sets (or with 0 clears) the boot-time deadline of an emergency disable.
    pub fn set_emergency(&mut self, until_boot_ns: u64) -> Result<()> {
        self.settings.emergency_until_ns = until_boot_ns;
        self.write_settings()
    }

    fn write_settings(&mut self) -> Result<()> {
        let mut map: Array<_, Settings> =
            Array::try_from(map_mut(&mut self.ebpf, names::SETTINGS)?)?;
        map.set(0, self.settings, 0)
            .context("writing the settings map")
    }

    /// Each CPU's state, as the program keeps it.
    fn cpu_states(&self) -> Result<Vec<CpuState>> {
        let states: PerCpuArray<_, CpuState> =
            PerCpuArray::try_from(map(&self.ebpf, names::CPU_STATE)?)?;
        let per_cpu = states.get(&0, 0).context("reading the per-CPU state")?;
        Ok(per_cpu.iter().copied().collect())
    }

    /// Every list number's counts since the program started, summed over CPUs.
    fn list_counts(&self) -> Result<[Counters; MAX_LISTS]> {
        let states = self.cpu_states()?;
        Ok(std::array::from_fn(|n| {
            Counters::total(states.iter().map(|s| &s.lists[n]))
        }))
    }

    /// Packet counts per list, summed over CPUs, by list name: what each list judged since it
    /// was created (or since the daemon started).
    pub fn list_counters(&self) -> Result<BTreeMap<String, Counters>> {
        let counts = self.list_counts()?;
        Ok(self
            .lists
            .iter()
            .map(|list| {
                let n = usize::from(list.number);
                let mut since = counts[n];
                for (count, base) in since
                    .by_reason
                    .iter_mut()
                    .zip(self.list_baseline[n].by_reason)
                {
                    *count -= base;
                }
                (list.name.clone(), since)
            })
            .collect())
    }

    /// Packet counts per ingress ifindex (0: interfaces of ifindex `COUNTER_SLOTS` or
    /// more), summed over CPUs; interfaces with none are left out. Only the slots up to the
    /// highest ifindex there is now are read: usually a handful of the 4096.
    pub fn counters(&self) -> Result<BTreeMap<u32, Counters>> {
        let mut out = BTreeMap::new();
        let fd = map_fd(&self.ebpf, names::COUNTERS)?;
        let last = nix::net::if_::if_nameindex()
            .map(|all| all.iter().map(|i| i.index()).max().unwrap_or(0))
            .unwrap_or(names::COUNTER_SLOTS - 1)
            .min(names::COUNTER_SLOTS - 1);
        let cpus = self.cpus as usize;
        batch::for_each_array_per_cpu(fd, cpus, last, |ifindex, per_cpu: &[Counters]| {
            let sum = Counters::total(per_cpu);
            if sum.by_reason.iter().any(|&n| n != 0) {
                out.insert(ifindex, sum);
            }
        })
        .context("reading the counters map")?;
        Ok(out)
    }

    /// The ring buffer of blocked-connection events, for the daemon to read (once).
    pub fn take_blocked_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(names::BLOCKED)
            .context("the XDP object has no map BLOCKED")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Blocked-connection events sent to the ring buffer and held back by the per-CPU
    /// budget, summed over CPUs.
    pub fn event_budget(&self) -> Result<EventBudget> {
        Ok(self
            .cpu_states()?
            .iter()
            .map(|s| &s.budget)
            .fold(EventBudget::default(), |sum, cpu| EventBudget {
                sent: sum.sent + cpu.sent,
                suppressed: sum.suppressed + cpu.suppressed,
                ..sum
            }))
    }

    /// Whether the hit counters are a previous daemon's (a handover, a crash, or
    /// `detach_on_exit = false`), rather than new and empty.
    pub fn hits_inherited(&self) -> bool {
        self.hits_inherited
    }

    /// What the kernel would do now with a SYN (or a UDP datagram) from `ip` to `port`, read
    /// from the live maps (not from any config) and judged by the same `decide` the program
    /// runs; with the most specific entry network covering `ip`, if any.
    pub fn verdict(
        &self,
        ip: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Result<(Reason, Option<IpNet>)> {
        let settings: Array<_, Settings> = Array::try_from(map(&self.ebpf, names::SETTINGS)?)?;
        let ports: Array<_, u64> = Array::try_from(map(&self.ebpf, names::PORT_LISTS)?)?;
        let entry_lists: Array<_, u32> = Array::try_from(map(&self.ebpf, names::ENTRY_LISTS)?)?;
        let src = match ip {
            IpAddr::V4(a) => Source::V4(a.octets()),
            IpAddr::V6(a) => Source::from_v6(a.octets()),
        };
        let id = match src {
            Source::V4(a) => match exact(&self.ebpf, names::EXACT_V4, a)? {
                Some(id) => Some(id),
                None => lookup(&trie_v4_ref(&self.ebpf)?, Key::new(32, a))?,
            },
            Source::V6(a) => match exact(&self.ebpf, names::EXACT_V6, a)? {
                Some(id) => Some(id),
                None => lookup(&trie_v6_ref(&self.ebpf)?, Key::new(128, a))?,
            },
        };
        let settings = settings.get(&0, 0).context("reading the settings map")?;
        let proto = match protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
        };
        let (word_index, shift) = port_list_position(proto, port);
        let word = ports.get(&word_index, 0).context("reading the ports map")?;
        let covering = match id {
            Some(id) => {
                let lasting = entry_lists
                    .get(&id, 0)
                    .context("reading the entries' lists")?;
                let timed = match settings.timed {
                    0 => None,
                    _ => timed::live(&self.ebpf, id)?,
                };
                lasting | timed.map_or(0, |t| t.lists_at(crate::clock::boot_ns()))
            }
            None => 0,
        };
        let view = MapView {
            settings,
            port_list: port_list_mask(word, shift),
            covering,
        };
        let parsed = match proto {
            Proto::Tcp => Parsed::Syn { src, dport: port },
            Proto::Udp => Parsed::Datagram { src, dport: port },
        };
        let reason = verdict::decide(parsed, &view);
        let network = id.and_then(|id| self.ids.covering(ip_of(src), id));
        Ok((reason, network))
    }

    /// Pins the program and every map under `dir` (which must exist), replacing older pins
    /// of the same names (a previous daemon's, whose program this one has replaced).
    pub fn pin(&mut self, dir: &Path) -> Result<()> {
        let maps_dir = dir.join("maps");
        std::fs::create_dir_all(&maps_dir)
            .with_context(|| format!("creating {}", maps_dir.display()))?;
        for name in MAP_NAMES {
            let path = maps_dir.join(name);
            remove_pin(&path)?;
            map(&self.ebpf, name)?
                .pin(&path)
                .with_context(|| format!("pinning map {}", path.display()))?;
        }
        for name in PREVIOUS_PIN_NAMES {
            remove_pin(&maps_dir.join(name))?;
        }
        let prog_path = dir.join("prog");
        remove_pin(&prog_path)?;
        self.program()
            .pin(&prog_path)
            .with_context(|| format!("pinning the program at {}", prog_path.display()))
    }
}

pub fn remove_pin(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing pin {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The ids a previous daemon's pinned tries give each network, if it left them.
fn previous_ids(maps_dir: &Path) -> Result<HashMap<IpNet, u32>> {
    let mut ids = HashMap::new();
    let v4 = maps_dir.join(names::ALLOW_V4);
    if let Ok(data) = MapData::from_pin(&v4) {
        let trie: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(Map::LpmTrie(data))?;
        for item in trie.iter() {
            let (key, id) = item.context("reading the previous IPv4 allowlist")?;
            if let Ok(net) = Ipv4Net::new(key.data().into(), key.prefix_len() as u8) {
                ids.insert(IpNet::V4(net), id);
            }
        }
    }
    if let Ok(data) = MapData::from_pin(maps_dir.join(names::EXACT_V4)) {
        let map: BpfHashMap<_, [u8; 4], u32> = BpfHashMap::try_from(Map::HashMap(data))?;
        for item in map.iter() {
            let (addr, id) = item.context("reading the previous IPv4 addresses")?;
            ids.insert(IpNet::V4(Ipv4Net::from(std::net::Ipv4Addr::from(addr))), id);
        }
    }
    if let Ok(data) = MapData::from_pin(maps_dir.join(names::EXACT_V6)) {
        let map: BpfHashMap<_, [u8; 16], u32> = BpfHashMap::try_from(Map::HashMap(data))?;
        for item in map.iter() {
            let (addr, id) = item.context("reading the previous IPv6 addresses")?;
            ids.insert(IpNet::V6(Ipv6Net::from(std::net::Ipv6Addr::from(addr))), id);
        }
    }
    let v6 = maps_dir.join(names::ALLOW_V6);
    if let Ok(data) = MapData::from_pin(&v6) {
        let trie: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(Map::LpmTrie(data))?;
        for item in trie.iter() {
            let (key, id) = item.context("reading the previous IPv6 allowlist")?;
            if let Ok(net) = Ipv6Net::new(key.data().into(), key.prefix_len() as u8) {
                ids.insert(IpNet::V6(net), id);
            }
        }
    }
    Ok(ids)
}

fn split(nets: impl Iterator<Item = IpNet>) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for net in nets {
        match net {
            IpNet::V4(n) => v4.push(n),
            IpNet::V6(n) => v6.push(n),
        }
    }
    (v4, v6)
}

fn map<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Map> {
    ebpf.map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map {name}"))
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("the XDP object has no map {name}"))
}

fn ip_of(src: Source) -> IpAddr {
    match src {
        Source::V4(a) => IpAddr::from(a),
        Source::V6(a) => IpAddr::from(a),
    }
}

/// WHOLE_V4's size: a slot per /24 (64 MiB of kernel memory) only where lists are long
/// enough for a trie walk per allowed SYN to matter.
fn whole_slots(max_entries: u32) -> u32 {
    if max_entries >= 65_536 {
        names::WHOLE_V4_SLOTS
    } else {
        1
    }
}

fn is_array(map_type: Result<MapType, aya::maps::MapError>) -> bool {
    matches!(map_type, Ok(MapType::Array))
}

fn map_fd<'a>(ebpf: &'a Ebpf, name: &str) -> Result<BorrowedFd<'a>> {
    match map(ebpf, name)? {
        Map::Array(data) | Map::PerCpuArray(data) | Map::HashMap(data) | Map::LpmTrie(data) => {
            Ok(data.fd().as_fd())
        }
        _ => bail!("map {name} is not an array, hash map or trie"),
    }
}

fn exact<K: aya::Pod>(ebpf: &Ebpf, name: &str, key: K) -> Result<Option<u32>> {
    let map: BpfHashMap<_, K, u32> = BpfHashMap::try_from(map(ebpf, name)?)?;
    match map.get(&key, 0) {
        Ok(id) => Ok(Some(id)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e).context("looking up the kernel's allowlist"),
    }
}

fn exact_v4(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, [u8; 4], u32>> {
    Ok(BpfHashMap::try_from(map_mut(ebpf, names::EXACT_V4)?)?)
}

fn exact_v6(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, [u8; 16], u32>> {
    Ok(BpfHashMap::try_from(map_mut(ebpf, names::EXACT_V6)?)?)
}

/// What a change writes (see `Filter::plan`).
#[derive(Default)]
struct Plan {
    /// New networks: the lists holding them, and their mask while the change is applied.
    added: Vec<(IpNet, ListMask, ListMask)>,
    /// New networks whose final mask differs from that.
    added_after: Vec<(IpNet, ListMask)>,
    removed: Vec<IpNet>,
    /// Masks of held ids to write before the maps change, and after.
    before: Vec<(u32, ListMask)>,
    after: Vec<(u32, ListMask)>,
    /// Held networks now held by other lists.
    own: Vec<(IpNet, ListMask)>,
    /// Networks a timed entry reaches (or reached).
    timed: Vec<TimedPlan>,
}

/// The deadlines of a network a timed entry reaches before, while or after a change.
struct TimedPlan {
    net: IpNet,
    /// Its id, if held before the change.
    id: Option<u32>,
    mid: Ends,
    then: Ends,
}

/// The timed networks of a change: for each, the positions of lists holding it only until a
/// wall-clock time (see [`Filter::apply_parts`]).
pub type Timed = BTreeMap<IpNet, Vec<(u32, std::time::SystemTime)>>;

/// Every list of `ends`.
fn lists_of(ends: &[(u64, ListMask)]) -> ListMask {
    ends.iter().fold(0, |mask, (_, lists)| mask | lists)
}

/// New entries sorted by the map they go to, written one batch per map.
#[derive(Default)]
struct Writes {
    exact_v4: (Vec<[u8; 4]>, Vec<u32>),
    exact_v6: (Vec<[u8; 16]>, Vec<u32>),
    trie_v4: (Vec<Key<[u8; 4]>>, Vec<u32>),
    trie_v6: (Vec<Key<[u8; 16]>>, Vec<u32>),
}

impl Writes {
    fn push(&mut self, net: IpNet, id: u32) {
        match net {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                self.exact_v4.0.push(n.addr().octets());
                self.exact_v4.1.push(id);
            }
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.exact_v6.0.push(n.addr().octets());
                self.exact_v6.1.push(id);
            }
            IpNet::V4(n) => {
                let key = Key::new(u32::from(n.prefix_len()), n.network().octets());
                self.trie_v4.0.push(key);
                self.trie_v4.1.push(id);
            }
            IpNet::V6(n) => {
                let key = Key::new(u32::from(n.prefix_len()), n.network().octets());
                self.trie_v6.0.push(key);
                self.trie_v6.1.push(id);
            }
        }
    }

    fn write(&self, ebpf: &Ebpf) -> Result<()> {
        let write = |name, result: std::io::Result<()>, count: usize, what| {
            result.with_context(|| {
                format!("inserting {count} {what} into the kernel's allowlist ({name})")
            })
        };
        let (keys, ids) = &self.exact_v4;
        let result = batch::update(map_fd(ebpf, names::EXACT_V4)?, keys, ids);
        write(names::EXACT_V4, result, keys.len(), "IPv4 addresses")?;
        let (keys, ids) = &self.exact_v6;
        let result = batch::update(map_fd(ebpf, names::EXACT_V6)?, keys, ids);
        write(names::EXACT_V6, result, keys.len(), "IPv6 addresses")?;
        let (keys, ids) = &self.trie_v4;
        let result = batch::update(map_fd(ebpf, names::ALLOW_V4)?, keys, ids);
        write(names::ALLOW_V4, result, keys.len(), "IPv4 networks")?;
        let (keys, ids) = &self.trie_v6;
        let result = batch::update(map_fd(ebpf, names::ALLOW_V6)?, keys, ids);
        write(names::ALLOW_V6, result, keys.len(), "IPv6 networks")
    }
}

fn lookup<K: aya::Pod>(trie: &LpmTrie<&MapData, K, u32>, key: Key<K>) -> Result<Option<u32>> {
    match trie.get(&key, 0) {
        Ok(id) => Ok(Some(id)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e).context("looking up the kernel's allowlist"),
    }
}

/// The live maps seen through the decision's `Lookups`, for one SYN or datagram: its port's
/// list and its source's lists are read up front.
struct MapView {
    settings: Settings,
    port_list: ListMask,
    covering: ListMask,
}

impl verdict::Lookups for MapView {
    fn port_list(&self, _: Proto, _: u16) -> ListMask {
        self.port_list
    }

    fn lists_with_ports(&self, proto: Proto) -> ListMask {
        match proto {
            Proto::Tcp => self.settings.tcp_lists,
            Proto::Udp => self.settings.udp_lists,
        }
    }

    fn enforcing(&self) -> ListMask {
        self.settings.enforcing
    }

    fn monitoring(&self) -> ListMask {
        self.settings.monitoring
    }

    fn covering(&self, _: &Source) -> ListMask {
        self.covering
    }

    fn emergency(&self) -> bool {
        self.settings.emergency_in_force(crate::clock::boot_ns())
    }
}

fn trie_v4_ref(ebpf: &Ebpf) -> Result<LpmTrie<&MapData, [u8; 4], u32>> {
    Ok(LpmTrie::try_from(map(ebpf, names::ALLOW_V4)?)?)
}

fn trie_v6_ref(ebpf: &Ebpf) -> Result<LpmTrie<&MapData, [u8; 16], u32>> {
    Ok(LpmTrie::try_from(map(ebpf, names::ALLOW_V6)?)?)
}

fn trie_v4(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, [u8; 4], u32>> {
    Ok(LpmTrie::try_from(map_mut(ebpf, names::ALLOW_V4)?)?)
}

fn trie_v6(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, [u8; 16], u32>> {
    Ok(LpmTrie::try_from(map_mut(ebpf, names::ALLOW_V6)?)?)
}
