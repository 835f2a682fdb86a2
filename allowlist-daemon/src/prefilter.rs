//! Bookkeeping for the cache-resident prefilters in front of the LPM tries.
//!
//! The XDP program decides most sources with one read: an IPv4 /24 marked `None` or `Whole`,
//! or a clear bit for an IPv6 /32, never reaches the trie. That is only correct if the marks
//! never claim more than the tries hold, at any instant of an update. So every change runs in
//! phases around the trie writes: marks are widened to "ask the trie" before entries go in or
//! out, and narrowed to their final state only once the trie is settled.

use std::collections::HashMap;
use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

use allowlist_common::maps::{V4Slot, V6_PREFILTER_MIN_PREFIX, v6_bit};
use ipnet::{Ipv4Net, Ipv6Net};

/// Which /24 slots (address >> 8) an IPv4 network touches.
fn v4_slots(net: &Ipv4Net) -> RangeInclusive<u32> {
    let first = u32::from(net.network()) >> 8;
    let last = u32::from(net.broadcast()) >> 8;
    first..=last
}

fn read_slot(words: &[AtomicU64], slot: u32) -> V4Slot {
    let (word, shift) = (slot / 32, (slot % 32) * 2);
    V4Slot::from_bits(words[word as usize].load(Ordering::Acquire) >> shift)
}

fn write_slot(words: &[AtomicU64], slot: u32, state: V4Slot) {
    let (word, shift) = (slot / 32, (slot % 32) * 2);
    let word = &words[word as usize];
    // Only the daemon writes, and from one thread: load-modify-store cannot lose an update.
    let old = word.load(Ordering::Acquire);
    let new = (old & !(3 << shift)) | ((state as u64) << shift);
    if new != old {
        word.store(new, Ordering::Release);
    }
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
}

impl Default for V4Prefilter {
    fn default() -> Self {
        V4Prefilter {
            wide: HashSet::new(),
            wide_by_len: [0; 25],
            whole: vec![0; (1 << 24) / 64],
            hosts_per_slot: HashMap::new(),
            nets_per_slot: HashMap::new(),
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

    fn state(&self, slot: u32) -> V4Slot {
        if self.is_whole(slot) {
            V4Slot::Whole
        } else if self.nets_per_slot.contains_key(&slot) {
            V4Slot::Partial
        } else if self.hosts_per_slot.contains_key(&slot) {
            V4Slot::Hosts
        } else {
            V4Slot::None
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
    pub fn before_insert(&mut self, words: &[AtomicU64], nets: &[Ipv4Net]) {
        for net in nets {
            for slot in v4_slots(net) {
                if matches!(read_slot(words, slot), V4Slot::None | V4Slot::Hosts) {
                    write_slot(words, slot, V4Slot::Partial);
                }
            }
            let len = net.prefix_len();
            if len <= 24 {
                self.wide.insert((u32::from(net.network()), len));
                self.wide_by_len[len as usize] += 1;
            } else {
                let slot = u32::from(net.network()) >> 8;
                *self.narrow_counts(net).entry(slot).or_default() += 1;
            }
        }
    }

    /// Phase 2 of an insert, once the maps hold the new entries: final states.
    pub fn after_insert(&mut self, words: &[AtomicU64], nets: &[Ipv4Net]) {
        for net in nets.iter().filter(|net| net.prefix_len() <= 24) {
            for slot in v4_slots(net) {
                self.set_whole(slot, true);
            }
        }
        self.settle(words, nets);
    }

    /// Phase 1 of a removal: a /24 that is whole now may not stay whole, so ask the trie.
    pub fn before_remove(&mut self, words: &[AtomicU64], nets: &[Ipv4Net]) {
        for net in nets {
            for slot in v4_slots(net) {
                if read_slot(words, slot) == V4Slot::Whole {
                    write_slot(words, slot, V4Slot::Partial);
                }
            }
            let len = net.prefix_len();
            if len <= 24 {
                if self.wide.remove(&(u32::from(net.network()), len)) {
                    self.wide_by_len[len as usize] -= 1;
                }
            } else {
                let slot = u32::from(net.network()) >> 8;
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
    pub fn after_remove(&mut self, words: &[AtomicU64], nets: &[Ipv4Net]) {
        for net in nets.iter().filter(|net| net.prefix_len() <= 24) {
            for slot in v4_slots(net) {
                let whole = self.covered_by_wide(slot);
                self.set_whole(slot, whole);
            }
        }
        self.settle(words, nets);
    }

    fn settle(&self, words: &[AtomicU64], nets: &[Ipv4Net]) {
        for net in nets {
            for slot in v4_slots(net) {
                write_slot(words, slot, self.state(slot));
            }
        }
    }
}

/// The IPv6 prefilter: a bit per hashed /32, reference counted because several entries (and
/// hash collisions) share bits. Entries wider than /20 would mark too many bits; while any
/// exists the program skips the prefilter (the caller publishes `wide()` in the settings).
#[derive(Default)]
pub struct V6Prefilter {
    bits: HashMap<u32, u32>,
    wide: u32,
}

impl V6Prefilter {
    /// Number of entries too wide for the prefilter.
    pub fn wide(&self) -> u32 {
        self.wide
    }

    fn bits_of(net: &Ipv6Net) -> Option<RangeInclusive<u32>> {
        let len = net.prefix_len();
        if len < V6_PREFILTER_MIN_PREFIX {
            return None;
        }
        let first = (u128::from(net.network()) >> 96) as u32;
        let last = (u128::from(net.broadcast()) >> 96) as u32;
        Some(first..=last)
    }

    /// Before the trie gains `nets`: set their bits (so their sources reach the trie).
    pub fn before_insert(&mut self, words: &[AtomicU64], nets: &[Ipv6Net]) {
        for net in nets {
            let Some(prefixes) = Self::bits_of(net) else {
                self.wide += 1;
                continue;
            };
            for first32 in prefixes {
                let bit = v6_bit(first32);
                let count = self.bits.entry(bit).or_default();
                if *count == 0 {
                    words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::AcqRel);
                }
                *count += 1;
            }
        }
    }

    /// After the trie lost `nets`: clear bits no remaining entry needs.
    pub fn after_remove(&mut self, words: &[AtomicU64], nets: &[Ipv6Net]) {
        for net in nets {
            let Some(prefixes) = Self::bits_of(net) else {
                self.wide -= 1;
                continue;
            };
            for first32 in prefixes {
                let bit = v6_bit(first32);
                let Some(count) = self.bits.get_mut(&bit) else {
                    continue;
                };
                *count -= 1;
                if *count == 0 {
                    self.bits.remove(&bit);
                    words[(bit / 64) as usize].fetch_and(!(1 << (bit % 64)), Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allowlist_common::maps::{PREFILTER_V4_WORDS, PREFILTER_V6_WORDS, v6_first32};

    fn words(n: u32) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn slot(addr: &str) -> u32 {
        u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap()) >> 8
    }

    fn insert(p: &mut V4Prefilter, w: &[AtomicU64], nets: &[Ipv4Net]) {
        p.before_insert(w, nets);
        p.after_insert(w, nets);
    }

    fn remove(p: &mut V4Prefilter, w: &[AtomicU64], nets: &[Ipv4Net]) {
        p.before_remove(w, nets);
        p.after_remove(w, nets);
    }

    #[test]
    fn v4_states_follow_entries() {
        let w = words(PREFILTER_V4_WORDS);
        let mut p = V4Prefilter::default();
        insert(&mut p, &w, &[v4("198.18.4.0/22"), v4("198.18.9.7/32")]);
        for a in ["198.18.4.1", "198.18.5.1", "198.18.7.255"] {
            assert_eq!(read_slot(&w, slot(a)), V4Slot::Whole, "{a}");
        }
        assert_eq!(read_slot(&w, slot("198.18.9.1")), V4Slot::Hosts);
        assert_eq!(read_slot(&w, slot("198.18.8.1")), V4Slot::None);
        assert_eq!(read_slot(&w, slot("198.18.3.255")), V4Slot::None);

        // A /32 inside a whole /24 keeps it whole; removing the /22 leaves only the host.
        insert(&mut p, &w, &[v4("198.18.5.5/32")]);
        remove(&mut p, &w, &[v4("198.18.4.0/22")]);
        assert_eq!(read_slot(&w, slot("198.18.5.5")), V4Slot::Hosts);
        // A /25 next to a host sends the /24 to the trie as well.
        insert(&mut p, &w, &[v4("198.18.5.128/25")]);
        assert_eq!(read_slot(&w, slot("198.18.5.5")), V4Slot::Partial);
        remove(&mut p, &w, &[v4("198.18.5.128/25")]);
        assert_eq!(read_slot(&w, slot("198.18.5.5")), V4Slot::Hosts);
        assert_eq!(read_slot(&w, slot("198.18.4.1")), V4Slot::None);
        remove(&mut p, &w, &[v4("198.18.5.5/32"), v4("198.18.9.7/32")]);
        assert!(w.iter().all(|x| x.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn v4_phases_never_claim_more_than_the_trie() {
        let w = words(PREFILTER_V4_WORDS);
        let mut p = V4Prefilter::default();
        let net = [v4("198.18.0.0/23")];
        p.before_insert(&w, &net);
        // Before the trie has the entry, its sources must be asked about, not allowed.
        assert_eq!(read_slot(&w, slot("198.18.1.1")), V4Slot::Partial);
        p.after_insert(&w, &net);
        assert_eq!(read_slot(&w, slot("198.18.1.1")), V4Slot::Whole);
        p.before_remove(&w, &net);
        // While the trie still has it, its sources must not be dropped unasked either.
        assert_eq!(read_slot(&w, slot("198.18.1.1")), V4Slot::Partial);
        p.after_remove(&w, &net);
        assert_eq!(read_slot(&w, slot("198.18.1.1")), V4Slot::None);
    }

    #[test]
    fn v4_a_network_joining_hosts_is_asked_about_before_it_lands() {
        let w = words(PREFILTER_V4_WORDS);
        let mut p = V4Prefilter::default();
        insert(&mut p, &w, &[v4("198.18.0.1/32")]);
        assert_eq!(read_slot(&w, slot("198.18.0.1")), V4Slot::Hosts);
        let net = [v4("198.18.0.64/26")];
        p.before_insert(&w, &net);
        // `Hosts` would skip the trie the /26 is about to enter.
        assert_eq!(read_slot(&w, slot("198.18.0.1")), V4Slot::Partial);
        p.after_insert(&w, &net);
        assert_eq!(read_slot(&w, slot("198.18.0.1")), V4Slot::Partial);
    }

    #[test]
    fn v4_wide_entry_covers_many_slots() {
        let w = words(PREFILTER_V4_WORDS);
        let mut p = V4Prefilter::default();
        insert(&mut p, &w, &[v4("198.18.0.0/15")]);
        assert_eq!(read_slot(&w, slot("198.19.255.1")), V4Slot::Whole);
        assert_eq!(read_slot(&w, slot("198.20.0.1")), V4Slot::None);
        remove(&mut p, &w, &[v4("198.18.0.0/15")]);
        assert_eq!(read_slot(&w, slot("198.19.255.1")), V4Slot::None);
    }

    #[test]
    fn v6_bits_are_reference_counted() {
        let w = words(PREFILTER_V6_WORDS);
        let mut p = V6Prefilter::default();
        let a: Ipv6Net = "2001:db8:1::/48".parse().unwrap();
        let b: Ipv6Net = "2001:db8::a/128".parse().unwrap();
        let bit = v6_bit(v6_first32(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        ));
        let is_set = |w: &[AtomicU64]| {
            w[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
        };
        p.before_insert(&w, &[a, b]);
        assert!(is_set(&w));
        p.after_remove(&w, &[a]);
        assert!(is_set(&w), "still needed by the /128");
        p.after_remove(&w, &[b]);
        assert!(!is_set(&w));
        assert!(w.iter().all(|x| x.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn v6_wide_entries_switch_the_prefilter_off() {
        let w = words(PREFILTER_V6_WORDS);
        let mut p = V6Prefilter::default();
        let wide: Ipv6Net = "2001:d00::/19".parse().unwrap();
        let allocation: Ipv6Net = "2001:db8::/29".parse().unwrap();
        p.before_insert(&w, &[wide, allocation]);
        assert_eq!(p.wide(), 1);
        let set: u32 = w
            .iter()
            .map(|x| x.load(Ordering::Relaxed).count_ones())
            .sum();
        assert!(set > 1 && set <= 8, "a /29 marks its 8 /32s: {set}");
        p.after_remove(&w, &[wide, allocation]);
        assert_eq!(p.wide(), 0);
    }
}
