//! Bookkeeping for the cache-resident prefilters in front of the LPM tries.
//!
//! The XDP program decides most sources in small tables: an IPv4 /16, /22 or /24 no entry
//! touches, a /24 marked `Whole`, an address missing from the Bloom filter of single addresses,
//! or an IPv6 /32 or /48 missing from its Bloom filters never reaches the hash maps and tries.
//! That is only correct if the marks never claim more than the maps hold, at any instant of an
//! update. So every change runs in phases around the trie writes: marks are widened to "ask
//! the trie" before entries go in or out, and narrowed to their final state only once the trie
//! is settled.

use std::collections::HashMap;
use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

use allowlist_common::maps::{
    CONFIRM_V6_WORDS, HOSTS_V4_WORDS, PREFILTER_V6_WORDS, Slot24, V4Slot, V6_CLASS_32, V6_CLASS_48,
    V6_PREFILTER_FINE_PREFIX, V6_PREFILTER_MIN_PREFIX, host_v4_marks, v6_marks,
};
use ipnet::{Ipv4Net, Ipv6Net};

/// Which /24 slots ([`Slot24`] numbers) an IPv4 network touches.
pub fn v4_slots(net: &Ipv4Net) -> RangeInclusive<u32> {
    Slot24::of(net.network().octets()).0..=Slot24::of(net.broadcast().octets()).0
}

/// The IPv4 prefilter's mapped arrays, in the order the program reads them: a bit per /16
/// and one per /22 saying whether any /24 in it is touched (`maps::PER16_BITS_V4`,
/// `maps::PER22_BITS_V4`), a bit per /24 saying whether any entry touches it (`maps::PER24_BITS_V4`),
/// and the /24's state (`maps::PER24_STATES_V4`). Beside them, the Bloom filter of single
/// addresses (`maps::HOSTS_V4`).
#[derive(Clone, Copy)]
pub struct V4Words<'a> {
    pub hosts: &'a [AtomicU64],
    pub per16: &'a [AtomicU64],
    pub per22: &'a [AtomicU64],
    pub per24: &'a [AtomicU64],
    pub states: &'a [AtomicU64],
}

fn bit_is_set(words: &[AtomicU64], (word, bit): (u32, u64)) -> bool {
    words[word as usize].load(Ordering::Acquire) & bit != 0
}

fn set_bit(words: &[AtomicU64], (word, bit): (u32, u64), set: bool) {
    let word = &words[word as usize];
    if set {
        word.fetch_or(bit, Ordering::AcqRel);
    } else {
        word.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// A /24's state as the program sees it.
fn read_slot(words: V4Words, slot: u32) -> V4Slot {
    let slot = Slot24(slot);
    if !bit_is_set(words.per16, slot.per16_bit())
        || !bit_is_set(words.per22, slot.per22_bit())
        || !bit_is_set(words.per24, slot.per24_bit())
    {
        return V4Slot::None;
    }
    let (word, shift) = slot.state_position();
    V4Slot::from_bits(words.states[word as usize].load(Ordering::Acquire) >> shift)
}

/// What the IPv4 prefilter must know to compute a /24's state: which short entries (/24 or
/// wider) exist, which /24s they cover, and how many long ones sit in each /24.
pub struct V4Prefilter {
    wide: HashSet<(u32, u8)>,
    wide_by_len: [u32; 25],
    /// A bit per /24 covered by a wide entry: a million-entry list covers millions of /24s,
    /// and asking `wide` at every length for each would dominate a load.
    whole: Vec<u64>,
    /// /32 entries per /24.
    hosts_per_slot: HashMap<u32, u32>,
    /// /25 to /31 entries per /24.
    nets_per_slot: HashMap<u32, u32>,
    /// Touched /24s per /16.
    touched_per16: Vec<u16>,
    hosts: WordCounts,
}

impl Default for V4Prefilter {
    fn default() -> Self {
        V4Prefilter {
            wide: HashSet::new(),
            wide_by_len: [0; 25],
            whole: vec![0; (1 << 24) / 64],
            hosts_per_slot: HashMap::new(),
            nets_per_slot: HashMap::new(),
            touched_per16: vec![0; 1 << 16],
            hosts: WordCounts(vec![0; HOSTS_V4_WORDS as usize]),
        }
    }
}

impl V4Prefilter {
    fn is_whole(&self, slot: u32) -> bool {
        self.whole[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set_whole(&mut self, slot: u32, whole: bool) {
        let word = &mut self.whole[(slot / 64) as usize];
        if whole {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }

    /// Whether some remaining wide entry covers `slot`: the slow way, after a removal.
    fn covered_by_wide(&self, slot: u32) -> bool {
        let addr = slot << 8;
        (0..=24u8).any(|len| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            self.wide_by_len[len as usize] != 0 && self.wide.contains(&(addr & mask, len))
        })
    }

    /// The length of the longest wide entry covering `slot`, if any: the entry whose id
    /// `maps::WHOLE_V4` must hold for it, since its mask holds the lists of the wider ones.
    pub fn longest_wide(&self, slot: u32) -> Option<u8> {
        let addr = slot << 8;
        (0..=24u8).rev().find(|&len| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            self.wide_by_len[len as usize] != 0 && self.wide.contains(&(addr & mask, len))
        })
    }

    /// A /24 is `Whole` only while no longer entry lies in it: a longer one may be in other
    /// lists than the wide one, so its sources must find it in the hash map or the trie.
    fn state(&self, slot: u32) -> V4Slot {
        let nets = self.nets_per_slot.contains_key(&slot);
        let hosts = self.hosts_per_slot.contains_key(&slot);
        let whole = self.is_whole(slot);
        if nets || (hosts && whole) {
            V4Slot::Partial
        } else if hosts {
            V4Slot::Hosts
        } else if whole {
            V4Slot::Whole
        } else {
            V4Slot::None
        }
    }

    /// Writes a /24's state, then the bits above it. Set after the state, a source that sees
    /// them set sees the new state or a wider one; cleared after it too, as a slot becomes
    /// `None` only once no entry covers it.
    fn write_slot(&mut self, words: V4Words, slot: u32, state: V4Slot) {
        let slot = Slot24(slot);
        let (word, shift) = slot.state_position();
        let word = &words.states[word as usize];
        // Only the daemon writes, and from one thread: load-modify-store cannot lose an update.
        let old = word.load(Ordering::Acquire);
        let new = (old & !(3 << shift)) | ((state as u64) << shift);
        if new != old {
            word.store(new, Ordering::Release);
        }
        let touched = state != V4Slot::None;
        if bit_is_set(words.per24, slot.per24_bit()) == touched {
            return;
        }
        set_bit(words.per24, slot.per24_bit(), touched);
        // A /22's four /24s share a word of PER24_BITS_V4, so its bit needs no count.
        let (per24_word, _) = slot.per24_bit();
        let any_in_block =
            words.per24[per24_word as usize].load(Ordering::Acquire) & slot.per22_quad() != 0;
        if bit_is_set(words.per22, slot.per22_bit()) != any_in_block {
            set_bit(words.per22, slot.per22_bit(), any_in_block);
        }
        let count = &mut self.touched_per16[slot.sixteen() as usize];
        if touched {
            *count += 1;
            if *count == 1 {
                set_bit(words.per16, slot.per16_bit(), true);
            }
        } else {
            *count -= 1;
            if *count == 0 {
                set_bit(words.per16, slot.per16_bit(), false);
            }
        }
    }

    fn narrow_counts(&mut self, net: &Ipv4Net) -> &mut HashMap<u32, u32> {
        if net.prefix_len() == 32 {
            &mut self.hosts_per_slot
        } else {
            &mut self.nets_per_slot
        }
    }

    /// Phase 1 of an insert: slots the new entries touch send their sources to the hash map
    /// and the trie.
    pub fn before_insert(&mut self, words: V4Words, nets: &[Ipv4Net]) {
        for net in nets {
            if net.prefix_len() == 32 {
                let (word, bits) = host_v4_marks(net.addr().octets());
                self.hosts.mark(words.hosts, word, bits);
            }
            // A longer entry landing in a whole /24 sends its sources to the maps too.
            let longer = net.prefix_len() > 24;
            for slot in v4_slots(net) {
                let state = read_slot(words, slot);
                if matches!(state, V4Slot::None | V4Slot::Hosts)
                    || (longer && state == V4Slot::Whole)
                {
                    self.write_slot(words, slot, V4Slot::Partial);
                }
            }
            let len = net.prefix_len();
            if len <= 24 {
                self.wide.insert((u32::from(net.network()), len));
                self.wide_by_len[len as usize] += 1;
            } else {
                let slot = Slot24::of(net.network().octets()).0;
                *self.narrow_counts(net).entry(slot).or_default() += 1;
            }
        }
    }

    /// Phase 2 of an insert, once the maps hold the new entries: final states.
    pub fn after_insert(&mut self, words: V4Words, nets: &[Ipv4Net]) {
        for net in nets.iter().filter(|net| net.prefix_len() <= 24) {
            for slot in v4_slots(net) {
                self.set_whole(slot, true);
            }
        }
        self.settle(words, nets);
    }

    /// Phase 1 of a removal: a /24 that is whole now may not stay whole, so ask the trie.
    pub fn before_remove(&mut self, words: V4Words, nets: &[Ipv4Net]) {
        for net in nets {
            for slot in v4_slots(net) {
                if read_slot(words, slot) == V4Slot::Whole {
                    self.write_slot(words, slot, V4Slot::Partial);
                }
            }
            let len = net.prefix_len();
            if len <= 24 {
                if self.wide.remove(&(u32::from(net.network()), len)) {
                    self.wide_by_len[len as usize] -= 1;
                }
            } else {
                let slot = Slot24::of(net.network().octets()).0;
                let counts = self.narrow_counts(net);
                if let Some(count) = counts.get_mut(&slot) {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(&slot);
                    }
                }
            }
        }
    }

    /// Phase 2 of a removal, once the maps no longer hold the entries: final states.
    pub fn after_remove(&mut self, words: V4Words, nets: &[Ipv4Net]) {
        for net in nets.iter().filter(|net| net.prefix_len() == 32) {
            self.hosts
                .unmark(words.hosts, host_v4_marks(net.addr().octets()).0);
        }
        for net in nets.iter().filter(|net| net.prefix_len() <= 24) {
            for slot in v4_slots(net) {
                let whole = self.covered_by_wide(slot);
                self.set_whole(slot, whole);
            }
        }
        self.settle(words, nets);
    }

    fn settle(&mut self, words: V4Words, nets: &[Ipv4Net]) {
        for net in nets {
            for slot in v4_slots(net) {
                let state = self.state(slot);
                self.write_slot(words, slot, state);
            }
        }
    }
}

/// The IPv6 prefilter's two mapped Bloom filters (`maps::PREFILTER_V6`, `maps::CONFIRM_V6`).
#[derive(Clone, Copy)]
pub struct V6Words<'a> {
    pub first: &'a [AtomicU64],
    pub confirm: &'a [AtomicU64],
}

/// Marks per word of one Bloom filter (saturating: a word that ever reached the maximum is
/// never cleared). A word is cleared when its count returns to zero, so marks need no count
/// of their own.
struct WordCounts(Vec<u16>);

impl WordCounts {
    fn mark(&mut self, words: &[AtomicU64], word: u32, bits: u64) {
        let count = &mut self.0[word as usize];
        *count = count.saturating_add(1);
        words[word as usize].fetch_or(bits, Ordering::AcqRel);
    }

    fn unmark(&mut self, words: &[AtomicU64], word: u32) {
        let count = &mut self.0[word as usize];
        if *count == u16::MAX {
            return;
        }
        *count -= 1;
        if *count == 0 {
            words[word as usize].store(0, Ordering::Release);
        }
    }
}

/// The IPv6 prefilter (see `maps::v6_marks`): each entry marks its /48, or each /32 it
/// touches if it is wider than that. Entries wider than /20 would mark too many /32s; while
/// any exists the program skips the prefilter (the caller publishes `wide()` in the settings,
/// and `classes()`, so that the program tests only the kinds of marks in use).
pub struct V6Prefilter {
    first: WordCounts,
    confirm: WordCounts,
    wide: u32,
    /// Entries marking /32s and /48s.
    per_class: [u32; 2],
}

impl Default for V6Prefilter {
    fn default() -> Self {
        V6Prefilter {
            first: WordCounts(vec![0; PREFILTER_V6_WORDS as usize]),
            confirm: WordCounts(vec![0; CONFIRM_V6_WORDS as usize]),
            wide: 0,
            per_class: [0; 2],
        }
    }
}

/// Where an IPv6 entry is marked: its class and the prefixes it marks, or `None` when it
/// is too wide to mark.
fn v6_mark_prefixes(net: &Ipv6Net) -> Option<(usize, RangeInclusive<u64>)> {
    let len = net.prefix_len();
    let first = u128::from(net.network());
    if len < V6_PREFILTER_MIN_PREFIX {
        None
    } else if len < V6_PREFILTER_FINE_PREFIX {
        let last = u128::from(net.broadcast());
        Some((0, (first >> 96) as u64..=(last >> 96) as u64))
    } else {
        let first48 = (first >> 80) as u64;
        Some((1, first48..=first48))
    }
}

const V6_CLASSES: [u32; 2] = [V6_CLASS_32, V6_CLASS_48];

impl V6Prefilter {
    /// Number of entries too wide for the prefilter.
    pub fn wide(&self) -> u32 {
        self.wide
    }

    /// The `V6_CLASS_*` bits of the marks in use.
    pub fn classes(&self) -> u32 {
        (0..2)
            .filter(|&c| self.per_class[c] != 0)
            .fold(0, |bits, c| bits | V6_CLASSES[c])
    }

    /// Before the maps gain `nets`: mark them (so that their sources are looked up).
    pub fn before_insert(&mut self, words: V6Words, nets: &[Ipv6Net]) {
        for net in nets {
            let Some((class, prefixes)) = v6_mark_prefixes(net) else {
                self.wide += 1;
                continue;
            };
            self.per_class[class] += 1;
            for prefix in prefixes {
                let marks = v6_marks(V6_CLASSES[class], prefix);
                // The second filter first: a source that passes the first must find its bits.
                self.confirm
                    .mark(words.confirm, marks.confirm_word, marks.confirm_bits);
                self.first.mark(words.first, marks.word, marks.bits);
            }
        }
    }

    /// After the maps lost `nets`: clear words no remaining entry marks.
    pub fn after_remove(&mut self, words: V6Words, nets: &[Ipv6Net]) {
        for net in nets {
            let Some((class, prefixes)) = v6_mark_prefixes(net) else {
                self.wide -= 1;
                continue;
            };
            self.per_class[class] -= 1;
            for prefix in prefixes {
                let marks = v6_marks(V6_CLASSES[class], prefix);
                self.first.unmark(words.first, marks.word);
                self.confirm.unmark(words.confirm, marks.confirm_word);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allowlist_common::maps::{
        PER16_BITS_V4_WORDS, PER22_BITS_V4_WORDS, PER24_BITS_V4_WORDS, PER24_STATES_V4_WORDS,
    };

    fn words(n: u32) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn slot(addr: &str) -> u32 {
        Slot24::of(addr.parse::<std::net::Ipv4Addr>().unwrap().octets()).0
    }

    /// Both IPv4 arrays, as the program has them.
    struct V4Maps {
        hosts: Vec<AtomicU64>,
        per16: Vec<AtomicU64>,
        per22: Vec<AtomicU64>,
        per24: Vec<AtomicU64>,
        states: Vec<AtomicU64>,
    }

    impl V4Maps {
        fn new() -> V4Maps {
            V4Maps {
                hosts: words(HOSTS_V4_WORDS),
                per16: words(PER16_BITS_V4_WORDS),
                per22: words(PER22_BITS_V4_WORDS),
                per24: words(PER24_BITS_V4_WORDS),
                states: words(PER24_STATES_V4_WORDS),
            }
        }

        fn view(&self) -> V4Words<'_> {
            V4Words {
                hosts: &self.hosts,
                per16: &self.per16,
                per22: &self.per22,
                per24: &self.per24,
                states: &self.states,
            }
        }

        fn empty(&self) -> bool {
            self.hosts
                .iter()
                .chain(&self.per16)
                .chain(&self.per22)
                .chain(&self.per24)
                .chain(&self.states)
                .all(|x| x.load(Ordering::Relaxed) == 0)
        }
    }

    fn insert(p: &mut V4Prefilter, w: V4Words, nets: &[Ipv4Net]) {
        p.before_insert(w, nets);
        p.after_insert(w, nets);
    }

    fn remove(p: &mut V4Prefilter, w: V4Words, nets: &[Ipv4Net]) {
        p.before_remove(w, nets);
        p.after_remove(w, nets);
    }

    #[test]
    fn v4_states_follow_entries() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        insert(&mut p, w, &[v4("198.18.4.0/22"), v4("198.18.9.7/32")]);
        for a in ["198.18.4.1", "198.18.5.1", "198.18.7.255"] {
            assert_eq!(read_slot(w, slot(a)), V4Slot::Whole, "{a}");
        }
        assert_eq!(read_slot(w, slot("198.18.9.1")), V4Slot::Hosts);
        assert_eq!(read_slot(w, slot("198.18.8.1")), V4Slot::None);
        assert_eq!(read_slot(w, slot("198.18.3.255")), V4Slot::None);

        // A /32 inside a whole /24 sends its sources to the maps (it may be in other lists);
        // removing the /22 leaves only the host.
        insert(&mut p, w, &[v4("198.18.5.5/32")]);
        assert_eq!(read_slot(w, slot("198.18.5.1")), V4Slot::Partial);
        assert_eq!(read_slot(w, slot("198.18.4.1")), V4Slot::Whole);
        remove(&mut p, w, &[v4("198.18.4.0/22")]);
        assert_eq!(read_slot(w, slot("198.18.5.5")), V4Slot::Hosts);
        // A /25 next to a host sends the /24 to the trie as well.
        insert(&mut p, w, &[v4("198.18.5.128/25")]);
        assert_eq!(read_slot(w, slot("198.18.5.5")), V4Slot::Partial);
        remove(&mut p, w, &[v4("198.18.5.128/25")]);
        assert_eq!(read_slot(w, slot("198.18.5.5")), V4Slot::Hosts);
        assert_eq!(read_slot(w, slot("198.18.4.1")), V4Slot::None);
        remove(&mut p, w, &[v4("198.18.5.5/32"), v4("198.18.9.7/32")]);
        assert!(maps.empty());
    }

    #[test]
    fn v4_a_block_stays_marked_while_any_of_its_four_slots_is_touched() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        let block = |a: &str| bit_is_set(w.per22, Slot24(slot(a)).per22_bit());
        // 198.18.4.0-198.18.7.255 is one /22; 198.18.8.0 starts the next.
        insert(&mut p, w, &[v4("198.18.5.1/32"), v4("198.18.7.9/32")]);
        assert!(block("198.18.4.0") && block("198.18.7.255"));
        assert!(!block("198.18.8.0") && !block("198.18.3.255"));
        remove(&mut p, w, &[v4("198.18.5.1/32")]);
        assert!(block("198.18.4.0"), "198.18.7.9 still sits in the /22");
        remove(&mut p, w, &[v4("198.18.7.9/32")]);
        assert!(!block("198.18.4.0"));
        assert!(maps.empty());
    }

    #[test]
    fn v4_phases_never_claim_more_than_the_trie() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        let net = [v4("198.18.0.0/23")];
        p.before_insert(w, &net);
        // Before the trie has the entry, its sources must be asked about, not allowed.
        assert_eq!(read_slot(w, slot("198.18.1.1")), V4Slot::Partial);
        p.after_insert(w, &net);
        assert_eq!(read_slot(w, slot("198.18.1.1")), V4Slot::Whole);
        p.before_remove(w, &net);
        // While the trie still has it, its sources must not be dropped unasked either.
        assert_eq!(read_slot(w, slot("198.18.1.1")), V4Slot::Partial);
        p.after_remove(w, &net);
        assert_eq!(read_slot(w, slot("198.18.1.1")), V4Slot::None);
    }

    #[test]
    fn v4_a_network_joining_hosts_is_asked_about_before_it_lands() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        insert(&mut p, w, &[v4("198.18.0.1/32")]);
        assert_eq!(read_slot(w, slot("198.18.0.1")), V4Slot::Hosts);
        let net = [v4("198.18.0.64/26")];
        p.before_insert(w, &net);
        // `Hosts` would skip the trie the /26 is about to enter.
        assert_eq!(read_slot(w, slot("198.18.0.1")), V4Slot::Partial);
        p.after_insert(w, &net);
        assert_eq!(read_slot(w, slot("198.18.0.1")), V4Slot::Partial);
    }

    #[test]
    fn v4_hosts_are_marked_from_before_they_land_until_they_are_gone() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        let host = [v4("198.18.9.7/32")];
        let marked = || {
            let (word, bits) = host_v4_marks(host[0].addr().octets());
            w.hosts[word as usize].load(Ordering::Relaxed) & bits == bits
        };
        p.before_insert(w, &host);
        assert!(marked(), "marked before the hash map has it");
        p.after_insert(w, &host);
        p.before_remove(w, &host);
        assert!(marked(), "still marked while the hash map has it");
        p.after_remove(w, &host);
        assert!(maps.empty());
    }

    #[test]
    fn v4_a_longer_entry_is_asked_about_from_before_it_lands_in_a_whole_slot() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        insert(&mut p, w, &[v4("198.18.0.0/16"), v4("198.18.1.0/24")]);
        assert_eq!(p.longest_wide(slot("198.18.1.9")), Some(24));
        assert_eq!(p.longest_wide(slot("198.18.2.9")), Some(16));
        assert_eq!(read_slot(w, slot("198.18.1.9")), V4Slot::Whole);
        let net = [v4("198.18.1.128/25")];
        p.before_insert(w, &net);
        assert_eq!(read_slot(w, slot("198.18.1.9")), V4Slot::Partial);
        p.after_insert(w, &net);
        assert_eq!(read_slot(w, slot("198.18.1.9")), V4Slot::Partial);
        remove(&mut p, w, &net);
        assert_eq!(read_slot(w, slot("198.18.1.9")), V4Slot::Whole);
    }

    #[test]
    fn v4_wide_entry_covers_many_slots() {
        let maps = V4Maps::new();
        let w = maps.view();
        let mut p = V4Prefilter::default();
        insert(&mut p, w, &[v4("198.18.0.0/15")]);
        assert_eq!(read_slot(w, slot("198.19.255.1")), V4Slot::Whole);
        assert_eq!(read_slot(w, slot("198.20.0.1")), V4Slot::None);
        remove(&mut p, w, &[v4("198.18.0.0/15")]);
        assert_eq!(read_slot(w, slot("198.19.255.1")), V4Slot::None);
    }

    /// Both IPv6 filters, as the program has them.
    struct V6Maps {
        first: Vec<AtomicU64>,
        confirm: Vec<AtomicU64>,
    }

    impl V6Maps {
        fn new() -> V6Maps {
            V6Maps {
                first: words(PREFILTER_V6_WORDS),
                confirm: words(CONFIRM_V6_WORDS),
            }
        }

        fn view(&self) -> V6Words<'_> {
            V6Words {
                first: &self.first,
                confirm: &self.confirm,
            }
        }

        fn bits_set(&self) -> (u32, u32) {
            let ones = |w: &[AtomicU64]| -> u32 {
                w.iter()
                    .map(|x| x.load(Ordering::Relaxed).count_ones())
                    .sum()
            };
            (ones(&self.first), ones(&self.confirm))
        }
    }

    /// What the program asks: are all of a source's bits set in both filters?
    fn marked(w: V6Words, classes: u32, addr: &str) -> bool {
        let addr = addr.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let (first32, first48) = allowlist_common::maps::v6_prefixes(&addr);
        let has = |words: &[AtomicU64], word: u32, bits: u64| {
            words[word as usize].load(Ordering::Relaxed) & bits == bits
        };
        [(V6_CLASS_32, first32), (V6_CLASS_48, first48)]
            .iter()
            .any(|&(class, prefix)| {
                let m = v6_marks(class, prefix);
                classes & class != 0
                    && has(w.first, m.word, m.bits)
                    && has(w.confirm, m.confirm_word, m.confirm_bits)
            })
    }

    #[test]
    fn v6_marks_are_counted_per_word() {
        let maps = V6Maps::new();
        let w = maps.view();
        let mut p = V6Prefilter::default();
        let a: Ipv6Net = "2001:db8:1::/48".parse().unwrap();
        let b: Ipv6Net = "2001:db8:1::a/128".parse().unwrap();
        let c: Ipv6Net = "2001:db8:100::/40".parse().unwrap();
        p.before_insert(w, &[a, b, c]);
        assert_eq!(p.classes(), V6_CLASS_32 | V6_CLASS_48);
        assert!(marked(w, p.classes(), "2001:db8:1::77"));
        assert!(marked(w, p.classes(), "2001:db8:1ff::1"), "the /40's /32");
        p.after_remove(w, &[a, c]);
        assert_eq!(p.classes(), V6_CLASS_48);
        assert!(
            marked(w, p.classes(), "2001:db8:1::a"),
            "still needed by the /128"
        );
        p.after_remove(w, &[b]);
        assert_eq!(p.classes(), 0);
        assert_eq!(maps.bits_set(), (0, 0));
    }

    #[test]
    fn v6_random_sources_rarely_pass_a_full_prefilter() {
        let maps = V6Maps::new();
        let w = maps.view();
        let mut p = V6Prefilter::default();
        let nets: Vec<Ipv6Net> = (0..200_000u64)
            .map(|i| {
                let addr =
                    (0x2000u128 << 112) | u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) << 64;
                Ipv6Net::new(addr.into(), 64).unwrap()
            })
            .collect();
        p.before_insert(w, &nets);
        let passed = (0..100_000u64)
            .filter(|i| {
                let addr =
                    (0x3000u128 << 112) | u128::from(i.wrapping_mul(0xD1B5_4A32_D192_ED03)) << 48;
                marked(w, p.classes(), &std::net::Ipv6Addr::from(addr).to_string())
            })
            .count();
        // 200,000 entries set about 4.5% of the second filter's bits, and a source needs all
        // four of its own in both filters: almost none pass.
        assert!(passed < 20, "{passed} of 100,000 random sources passed");
    }

    #[test]
    fn v6_wide_entries_switch_the_prefilter_off() {
        let maps = V6Maps::new();
        let w = maps.view();
        let mut p = V6Prefilter::default();
        let wide: Ipv6Net = "2001:d00::/19".parse().unwrap();
        let allocation: Ipv6Net = "2001:db8::/29".parse().unwrap();
        p.before_insert(w, &[wide, allocation]);
        assert_eq!(p.wide(), 1);
        let (first, confirm) = maps.bits_set();
        assert!(
            (8..=32).contains(&first) && (8..=32).contains(&confirm),
            "a /29 marks its 8 /32s, up to four bits each in each filter: {first}, {confirm}"
        );
        p.after_remove(w, &[wide, allocation]);
        assert_eq!(p.wide(), 0);
    }
}
