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
/// wider) exist, and how many long ones (/25../32) sit in each /24.
#[derive(Default)]
pub struct V4Prefilter {
    wide: HashSet<(u32, u8)>,
    wide_by_len: [u32; 25],
    narrow_per_slot: HashMap<u32, u32>,
}

impl V4Prefilter {
    fn state(&self, slot: u32) -> V4Slot {
        let addr = slot << 8;
        for len in 0..=24u8 {
            if self.wide_by_len[len as usize] == 0 {
                continue;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            if self.wide.contains(&(addr & mask, len)) {
                return V4Slot::Whole;
            }
        }
        if self.narrow_per_slot.contains_key(&slot) {
            V4Slot::Partial
        } else {
            V4Slot::None
        }
    }

    /// Phase 1 of an insert: slots the new entries touch send their sources to the trie.
    pub fn before_insert(&mut self, words: &[AtomicU64], nets: &[Ipv4Net]) {
        for net in nets {
            for slot in v4_slots(net) {
                if read_slot(words, slot) == V4Slot::None {
                    write_slot(words, slot, V4Slot::Partial);
                }
            }
            let len = net.prefix_len();
            if len <= 24 {
                self.wide.insert((u32::from(net.network()), len));
                self.wide_by_len[len as usize] += 1;
            } else {
                *self
                    .narrow_per_slot
                    .entry(u32::from(net.network()) >> 8)
                    .or_default() += 1;
            }
        }
    }

    /// Phase 2 of an insert, once the trie holds the new entries: final states.
    pub fn after_insert(&self, words: &[AtomicU64], nets: &[Ipv4Net]) {
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
                if let Some(count) = self.narrow_per_slot.get_mut(&slot) {
                    *count -= 1;
                    if *count == 0 {
                        self.narrow_per_slot.remove(&slot);
                    }
                }
            }
        }
    }

    /// Phase 2 of a removal, once the trie no longer holds the entries: final states.
    pub fn after_remove(&self, words: &[AtomicU64], nets: &[Ipv4Net]) {
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
        assert_eq!(read_slot(&w, slot("198.18.9.1")), V4Slot::Partial);
        assert_eq!(read_slot(&w, slot("198.18.8.1")), V4Slot::None);
        assert_eq!(read_slot(&w, slot("198.18.3.255")), V4Slot::None);

        // A /32 inside a whole /24 keeps it whole; removing the /22 leaves it partial.
        insert(&mut p, &w, &[v4("198.18.5.5/32")]);
        remove(&mut p, &w, &[v4("198.18.4.0/22")]);
        assert_eq!(read_slot(&w, slot("198.18.5.5")), V4Slot::Partial);
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
