//! Map names, layouts and the prefilter's addressing, shared by the program and the daemon.

use crate::verdict::{ListMask, Proto, REASON_COUNT};

/// IPv4 LPM trie of every entry but single addresses: key `Key<[u8; 4]>` (network order),
/// value: entry id.
pub const ALLOW_V4: &str = "ALLOW_V4";
/// IPv6 LPM trie of every entry but single addresses: key `Key<[u8; 16]>`, value: entry id.
pub const ALLOW_V6: &str = "ALLOW_V6";
/// Hash map of single IPv4 addresses (/32 entries), key `[u8; 4]`, value: entry id. Most
/// entries of a long list are single addresses; a hash lookup costs a fraction of a trie
/// walk, and a hash insert a fraction of a trie insert.
pub const EXACT_V4: &str = "EXACT_V4";
/// Hash map of single IPv6 addresses (/128 entries), key `[u8; 16]`, value: entry id.
pub const EXACT_V6: &str = "EXACT_V6";
/// Which list protects each TCP and UDP port: a byte per port, the list's number + 1 (0: no
/// list), eight to a u64 word (see [`port_list_position`]). One read tells a SYN or datagram
/// whether its port is protected and by which list.
pub const PORT_LISTS: &str = "PORT_LISTS";
/// The lists each entry id's network is in, as a mask, counting the lists of every entry
/// whose network contains it (the daemon computes them): the maps return the most specific
/// network covering a source, and its mask answers for every list at once. u32 per id,
/// sized like a CPU's block of [`HITS`].
pub const ENTRY_LISTS: &str = "ENTRY_LISTS";
/// How many lists the kernel tells apart: the bits of a [`crate::verdict::ListMask`].
pub const MAX_LISTS: usize = 32;
/// The lists an entry id's network is in only until a deadline ([`TimedLists`]), for the ids
/// of timed entries and of every network inside one: key u32 id. `ENTRY_LISTS` holds only
/// the lists that last. A hash map without preallocation, read only while
/// [`Settings::timed`] is set: a config without timed entries pays nothing for it.
pub const ENTRY_TIMED: &str = "ENTRY_TIMED";
/// How many ids may have [`TimedLists`] at once: timed entries and the entries inside them.
pub const MAX_TIMED_IDS: u32 = 65536;
/// How many different deadlines [`TimedLists`] holds: during a change, those of the old
/// rules and the new together, so a network may lie in timed entries of at most half as
/// many different ends ([`MAX_ENDS_PER_NETWORK`]).
pub const TIMED_STEPS: usize = 8;
pub const MAX_ENDS_PER_NETWORK: usize = TIMED_STEPS / 2;
/// One [`Settings`] at index 0.
pub const SETTINGS: &str = "SETTINGS";
/// Per-CPU [`Counters`] indexed by ingress ifindex, or 0 for an ifindex of
/// [`COUNTER_SLOTS`] or more. An array, not a hash map: every packet is counted, and an array
/// lookup is a few instructions the verifier inlines.
pub const COUNTERS: &str = "COUNTERS";
/// Interfaces beyond this ifindex share slot 0 (ifindexes count per network namespace, so
/// only a host that has created thousands of interfaces gets there).
pub const COUNTER_SLOTS: u32 = 4096;
/// [`HitStat`]s indexed by `cpu * hit_slots + entry id` (the id the tries and hash maps
/// return), a block per CPU so that CPUs never write the same cache line. Pinned, so that
/// hit counts outlive the daemon. A plain array rather than a per-CPU one: the kernel
/// allocates a per-CPU array element by element, seconds for millions of entries. A slot
/// counts the hits of one list, the first that let a connection in through the id's
/// network ([`HitStat::list`]); hits of any other list go to [`LIST_HITS`].
pub const HITS: &str = "HITS";
/// Per-CPU hash of the hits of an entry id's network for a list other than the one its
/// [`HITS`] slot counts ([`ListHit`] → [`HitStat`]), which only a network in several lists
/// has. The program adds a key at its first such hit; the daemon removes those of an id it
/// frees. Pinned like [`HITS`]. When full, such hits are counted only per list.
pub const LIST_HITS: &str = "LIST_HITS";
pub const MAX_LIST_HITS: u32 = 65536;
/// Each list number's name ([`ListName`]: NUL-padded, all NUL while the number is free),
/// written before any mask holds the number. The program never reads it: it is pinned so
/// that the next daemon gives each list the number it had, and [`HITS`] keeps counting each
/// list's hits as its own across a handover.
pub const LIST_NAMES: &str = "LIST_NAMES";
/// A list's name as [`LIST_NAMES`] holds it (names are at most 32 bytes).
pub type ListName = [u8; 32];
/// The global (in the program's .rodata) holding `hit_slots`: entry ids + 1.
pub const HIT_SLOTS: &str = "HIT_SLOTS";
/// Ring buffer of [`BlockedEvent`]s for the daemon's "blocked sources" view.
pub const BLOCKED: &str = "BLOCKED";
/// Per-CPU [`CpuState`] (index 0): what the program keeps per CPU besides the interface
/// counters, in one value so that a drop or an allowed connection looks up one map.
pub const CPU_STATE: &str = "CPU_STATE";

/// Events each CPU may report per second (and its burst): enough to see who is knocking,
/// bounded so that a flood cannot swamp the daemon.
pub const EVENTS_PER_SEC_PER_CPU: u64 = 200;
/// IPv4 prefilter: two bits per /24 (see [`V4Slot`]), read only for /24s [`PER24_BITS_V4`] marks.
pub const PER24_STATES_V4: &str = "PER24_STATES_V4";
/// IPv4 prefilter, /24 level: one bit per /24, set when its [`PER24_STATES_V4`] state is not
/// `None`. Most sources of a flood are decided by the levels above and this bit, which take
/// 2.5 MiB where the states take 4 (a random read costs more the larger the table:
/// BENCHMARKS.md).
pub const PER24_BITS_V4: &str = "PER24_BITS_V4";
/// The single addresses of [`EXACT_V4`] as a Bloom filter whose four probes share one word
/// (see [`host_v4_marks`]): a source in a /24 that holds single addresses asks the hash map
/// only when its bits are set: a random miss in a large hash map costs far more than one
/// read here, and the filter passes about one source in 80 that is not listed.
pub const HOSTS_V4: &str = "HOSTS_V4";
/// IPv4 prefilter, /22 level, between [`PER16_BITS_V4`] and [`PER24_BITS_V4`]: one bit per /22, set
/// while any of its four /24s has its [`PER24_BITS_V4`] bit. 512 KiB, small enough to stay in a
/// core's own second-level cache, where the 2 MiB of [`PER24_BITS_V4`] live in the shared third
/// level and lose to neighbours.
pub const PER22_BITS_V4: &str = "PER22_BITS_V4";
/// IPv4 prefilter, /16 level (read first): one bit per /16, set while any /24 in it has its
/// [`PER24_BITS_V4`] bit. 8 KiB, which stays in the first-level cache: a flood against a short
/// list is decided here without a cache miss.
pub const PER16_BITS_V4: &str = "PER16_BITS_V4";
/// IPv6 prefilter: a Bloom filter of the /32s and /48s entries may cover (see [`v6_marks`]).
pub const PREFILTER_V6: &str = "PREFILTER_V6";
/// A second, larger Bloom filter of the same marks, read only for the sources the first one
/// passes: a million marks let about 2% of random sources through the first, and a hash map
/// and trie lookup at that size cost far more than a read here.
pub const CONFIRM_V6: &str = "CONFIRM_V6";
/// The id of the entry covering each whole IPv4 /24 (u32 per /24, 0: ask the trie), so that a
/// SYN from a covered /24 finds the entry to count its hit against without a trie walk.
/// Sized 2^24 by the daemon for long lists, 1 (unused) for short ones, whose trie is cheap.
pub const WHOLE_V4: &str = "WHOLE_V4";
pub const WHOLE_V4_SLOTS: u32 = 1 << 24;

/// 65,536 ports a protocol, 8 a word: TCP's words, then UDP's.
pub const PORT_LISTS_WORDS: u32 = 2 * 65536 / 8;

/// 2^24 /24 networks, 2 bits each, 32 per u64 word: 4 MiB.
pub const PER24_STATES_V4_WORDS: u32 = (1 << 24) * 2 / 64;
/// 2^24 /24 networks, 1 bit each: 2 MiB.
pub const PER24_BITS_V4_WORDS: u32 = (1 << 24) / 64;
/// 2^22 /22 networks, 1 bit each: 512 KiB.
pub const PER22_BITS_V4_WORDS: u32 = (1 << 22) / 64;
/// 1 MiB (see [`HOSTS_V4`]).
pub const HOSTS_V4_WORDS: u32 = 1 << 17;
/// 2^16 /16 networks, 1 bit each: 8 KiB.
pub const PER16_BITS_V4_WORDS: u32 = (1 << 16) / 64;
/// 1 MiB, to stay in a core's own cache (see [`PER22_BITS_V4`]). Each mark sets four bits of one
/// word: a million marks fill ~37% of the bits, and a random source passes only if all four
/// of its bits are set, about one in 50.
pub const PREFILTER_V6_WORDS: u32 = 1 << 17;
/// 4 MiB: a million marks fill ~12% of its bits; one source in 5,000 of those the first
/// filter passed gets through.
pub const CONFIRM_V6_WORDS: u32 = 1 << 19;
/// An IPv6 entry of this length or longer marks at most 2^(32-20) = 4096 /32s in the IPv6
/// prefilter; a shorter one turns the prefilter off (see [`Settings::v6_wide_entries`]).
pub const V6_PREFILTER_MIN_PREFIX: u8 = 20;
/// Entries this long or longer mark their /48 in the IPv6 prefilter; shorter ones their /32s.
pub const V6_PREFILTER_FINE_PREFIX: u8 = 48;

/// The classes of marks in the IPv6 prefilter ([`Settings::v6_classes`]): the program tests
/// a source only against the classes some entry uses.
pub const V6_CLASS_32: u32 = 1;
pub const V6_CLASS_48: u32 = 2;

/// The state of one IPv4 /24 in the prefilter. Only `Whole` and `None` decide on their own;
/// the daemon moves a slot through `Partial` around every change so that neither a wrong drop
/// nor a wrong allow is possible at any instant.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V4Slot {
    /// No entry covers any address in this /24: an uncovered source, decided in one read.
    None = 0,
    /// Only single addresses (/32 entries) lie in it: the hash map of addresses decides.
    Hosts = 1,
    /// An entry of length /24 or shorter covers all of it.
    Whole = 2,
    /// Entries of /25 to /31 lie in it (or a change is under way): ask the hash map, then
    /// the LPM trie.
    Partial = 3,
}

impl V4Slot {
    pub const fn from_bits(bits: u64) -> V4Slot {
        match bits & 3 {
            0 => V4Slot::None,
            1 => V4Slot::Hosts,
            2 => V4Slot::Whole,
            _ => V4Slot::Partial,
        }
    }
}

/// A /24 of the IPv4 prefilter, numbered by its first three bytes (`u32::from(addr) >> 8`).
/// Every IPv4 prefilter level is addressed through it, by the program (from a source) and
/// the daemon (from the /24s an entry touches) alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot24(pub u32);

impl Slot24 {
    #[inline(always)]
    pub const fn of(addr: [u8; 4]) -> Slot24 {
        Slot24((addr[0] as u32) << 16 | (addr[1] as u32) << 8 | addr[2] as u32)
    }

    /// The /16 holding it: its bit in [`PER16_BITS_V4`], and the daemon's count per /16.
    #[inline(always)]
    pub const fn sixteen(self) -> u32 {
        self.0 >> 8
    }

    /// Word index and bit of its /16 in [`PER16_BITS_V4`].
    #[inline(always)]
    pub const fn per16_bit(self) -> (u32, u64) {
        bit_of(self.sixteen())
    }

    /// Word index and bit of its /22 in [`PER22_BITS_V4`].
    #[inline(always)]
    pub const fn per22_bit(self) -> (u32, u64) {
        bit_of(self.0 >> 2)
    }

    /// Word index and bit of it in [`PER24_BITS_V4`].
    #[inline(always)]
    pub const fn per24_bit(self) -> (u32, u64) {
        bit_of(self.0)
    }

    /// The bits of the four /24s of its /22 in its [`PER24_BITS_V4`] word (they share one).
    #[inline(always)]
    pub const fn per22_quad(self) -> u64 {
        0b1111 << ((self.0 % 64) & !3)
    }

    /// Word index and bit shift of its 2-bit [`V4Slot`] state in [`PER24_STATES_V4`].
    #[inline(always)]
    pub const fn state_position(self) -> (u32, u32) {
        (self.0 / 32, (self.0 % 32) * 2)
    }
}

/// Word index and bit of bit `index` of a bitmap of u64 words.
#[inline(always)]
const fn bit_of(index: u32) -> (u32, u64) {
    (index / 64, 1 << (index % 64))
}

/// Word index and bit shift of the byte of `port` of `proto` in [`PORT_LISTS`].
#[inline(always)]
pub const fn port_list_position(proto: Proto, port: u16) -> (u32, u32) {
    let base = match proto {
        Proto::Tcp => 0,
        Proto::Udp => 65536 / 8,
    };
    (base + port as u32 / 8, (port as u32 % 8) * 8)
}

/// The byte [`port_list_position`] found in a [`PORT_LISTS`] word, as the list's mask.
#[inline(always)]
pub const fn port_list_mask(word: u64, shift: u32) -> ListMask {
    let number = (word >> shift) & 0xff;
    if number == 0 || number > MAX_LISTS as u64 {
        0
    } else {
        1 << (number - 1)
    }
}

/// The [`PORT_LISTS`] byte of list `number` (`None`: unprotected).
#[inline(always)]
pub const fn port_list_byte(number: Option<u8>) -> u64 {
    match number {
        Some(n) => n as u64 + 1,
        None => 0,
    }
}

/// The first 12 bytes of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), which is judged as
/// `a.b.c.d` by the program, the daemon's live verdict and the reference model's inputs.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Where a /32 (`class` [`V6_CLASS_32`], `prefix` its first 32 bits) or a /48
/// ([`V6_CLASS_48`], its first 48 bits) is marked in [`PREFILTER_V6`] and [`CONFIRM_V6`]: in
/// each a word and four bits of it (a Bloom filter whose probes share one word, so that
/// testing a source reads one word). The top bits of 64-bit multiplicative hashes: a multiply
/// in BPF, and they spread allocations that sit next to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6Marks {
    pub word: u32,
    pub bits: u64,
    pub confirm_word: u32,
    pub confirm_bits: u64,
}

#[inline(always)]
pub const fn v6_marks(class: u32, prefix: u64) -> V6Marks {
    let x = (prefix ^ (class as u64) << 60).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let y = (x ^ x >> 29).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    V6Marks {
        word: (x >> 47) as u32, // 17 bits: PREFILTER_V6_WORDS
        bits: four_bits(x >> 23),
        confirm_word: (y >> 45) as u32, // 19 bits: CONFIRM_V6_WORDS
        confirm_bits: four_bits(y >> 21),
    }
}

/// Where the single address `addr` is marked in [`HOSTS_V4`]: a word and four bits of it.
#[inline(always)]
pub const fn host_v4_marks(addr: [u8; 4]) -> (u32, u64) {
    let x = (u32::from_be_bytes(addr) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((x >> 47) as u32, four_bits(x >> 23)) // 17 bits: HOSTS_V4_WORDS
}

/// Four bit positions from the low 24 bits of `x`.
#[inline(always)]
const fn four_bits(x: u64) -> u64 {
    1 << (x & 63) | 1 << (x >> 6 & 63) | 1 << (x >> 12 & 63) | 1 << (x >> 18 & 63)
}

/// The first 32 and 48 bits of `addr`, as [`v6_marks`] takes them.
#[inline(always)]
pub const fn v6_prefixes(addr: &[u8; 16]) -> (u64, u64) {
    let first32 = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]) as u64;
    let first48 = first32 << 16 | u16::from_be_bytes([addr[4], addr[5]]) as u64;
    (first32, first48)
}

/// Global settings, index 0 of `SETTINGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Lists in enforce mode.
    pub enforcing: ListMask,
    /// Lists in monitor mode (what they would drop is passed and counted).
    pub monitoring: ListMask,
    /// Lists protecting any TCP port, and any UDP port: a fragment that hides its port is
    /// judged against all of them.
    pub tcp_lists: ListMask,
    pub udp_lists: ListMask,
    /// IPv6 entries shorter than [`V6_PREFILTER_MIN_PREFIX`]: too wide to mark in the IPv6
    /// prefilter, so while any exists every IPv6 source goes to the trie.
    pub v6_wide_entries: u32,
    /// Which mark classes (`V6_CLASS_*`) IPv6 entries use.
    pub v6_classes: u32,
    /// Until when an emergency disable lifts enforcement: `bpf_ktime_get_boot_ns()` time;
    /// 0 = none.
    pub emergency_until_ns: u64,
    /// Whether [`ENTRY_TIMED`] may hold anything (set before the first record is written,
    /// cleared after the last is deleted).
    pub timed: u32,
    pub _padding: u32,
}

impl Settings {
    /// Whether an emergency disable is in force at boot time `now_ns`. Boot time keeps
    /// counting through suspend, so a deadline "four hours from now" ends four hours of wall
    /// time later.
    #[inline(always)]
    pub const fn emergency_in_force(&self, now_ns: u64) -> bool {
        self.emergency_until_ns != 0 && now_ns < self.emergency_until_ns
    }
}

/// The lists an entry id's network is in until a deadline (see [`ENTRY_TIMED`]): list mask
/// `lists[i]` while boot time is before `until_ns[i]`. Unused steps are 0 and 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimedLists {
    pub until_ns: [u64; TIMED_STEPS],
    pub lists: [ListMask; TIMED_STEPS],
}

impl TimedLists {
    /// The lists still in force at boot time `now_ns` (the clock of
    /// `bpf_ktime_get_boot_ns()`, as the emergency deadline's): a deadline ends its lists
    /// at that very nanosecond, dead daemon or not.
    #[inline(always)]
    pub fn lists_at(&self, now_ns: u64) -> ListMask {
        let mut lists = 0;
        let mut i = 0;
        while i < TIMED_STEPS {
            if now_ns < self.until_ns[i] {
                lists |= self.lists[i];
            }
            i += 1;
        }
        lists
    }
}

/// Per-interface (in [`COUNTERS`]) or per-list (in [`CpuState`]), per-CPU packet counts by
/// [`crate::verdict::Reason`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    pub by_reason: [u64; REASON_COUNT],
}

impl Counters {
    /// The sum of several CPUs' or interfaces' counts.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Counters>) -> Counters {
        let mut sum = Counters::default();
        for counters in all {
            for (total, n) in sum.by_reason.iter_mut().zip(counters.by_reason) {
                *total += n;
            }
        }
        sum
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            by_reason: [0; REASON_COUNT],
        }
    }
}

/// New connections an entry id's network let in for one list, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitStat {
    /// The count, and in [`HITS`] the list it counts for in the top bits (see [`HitStat::list`]).
    pub tagged: u64,
    /// CLOCK_MONOTONIC ns (bpf_ktime_get_ns(), read once a tick, so to a tick) of the
    /// latest one; 0 if none.
    pub last_seen_ns: u64,
}

impl HitStat {
    const LIST_SHIFT: u32 = 58;
    const COUNT: u64 = (1 << Self::LIST_SHIFT) - 1;

    /// A count for `list` (None: untagged, as in [`LIST_HITS`]).
    pub const fn new(list: Option<usize>, packets: u64, last_seen_ns: u64) -> HitStat {
        let tag = match list {
            Some(list) => (list as u64 + 1) << Self::LIST_SHIFT,
            None => 0,
        };
        HitStat {
            tagged: tag | (packets & Self::COUNT),
            last_seen_ns,
        }
    }

    pub const fn packets(&self) -> u64 {
        self.tagged & Self::COUNT
    }

    /// The list a [`HITS`] slot counts for: None while it has counted nothing, and for
    /// counts kept by a daemon from before lists were told apart.
    pub const fn list(&self) -> Option<usize> {
        match self.tagged >> Self::LIST_SHIFT {
            0 => None,
            tag => Some(tag as usize - 1),
        }
    }

    /// Whether a hit for `list` is counted here: a [`HITS`] slot takes the first list that
    /// counts in it and keeps it.
    #[inline(always)]
    pub const fn counts_for(&self, list: usize) -> bool {
        self.tagged == 0 || self.tagged >> Self::LIST_SHIFT == list as u64 + 1
    }

    /// One more hit for `list`, at `now_ns`.
    #[inline(always)]
    pub fn count(&mut self, list: usize, now_ns: u64) {
        *self = HitStat::new(Some(list), self.packets() + 1, now_ns);
    }
}

/// The key of [`LIST_HITS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListHit {
    pub id: u32,
    pub list: u32,
}

/// One dropped connection attempt, as reported to the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockedEvent {
    /// Source address: IPv4 in the first 4 bytes when `family` is 4.
    pub addr: [u8; 16],
    /// Destination port; 0 when a fragment hid it.
    pub port: u16,
    pub family: u8,
    /// The [`crate::verdict::Reason`] of the drop (or of what monitor mode would drop).
    pub reason: u8,
    pub ifindex: u32,
    /// The number of the list that dropped it (or would have).
    pub list: u8,
    pub _padding: [u8; 3],
}

/// One CPU's state: the event budget, its last reading of the clock, and what each
/// list judged (from `pass_inactive` on), counted against the list that decided it
/// ([`crate::verdict::deciding_list`]), by list number.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuState {
    pub budget: EventBudget,
    /// `bpf_jiffies64()` when `clock_ns` was read.
    pub clock_jiffies: u64,
    /// `bpf_ktime_get_ns()`, read once per jiffy.
    pub clock_ns: u64,
    pub lists: [Counters; MAX_LISTS],
}

impl Default for CpuState {
    fn default() -> Self {
        CpuState {
            budget: EventBudget::default(),
            clock_jiffies: 0,
            clock_ns: 0,
            lists: [Counters::default(); MAX_LISTS],
        }
    }
}

/// A per-CPU token bucket, and what it let through and held back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBudget {
    pub tokens: u64,
    pub refilled_ns: u64,
    pub sent: u64,
    pub suppressed: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are #[repr(C)], made only of integers, with no implicit padding.
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::HitStat {}
    unsafe impl aya::Pod for super::ListHit {}
    unsafe impl aya::Pod for super::BlockedEvent {}
    unsafe impl aya::Pod for super::EventBudget {}
    unsafe impl aya::Pod for super::CpuState {}
    unsafe impl aya::Pod for super::TimedLists {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_slot_keeps_the_first_list_that_counts_in_it() {
        let mut stat = HitStat::default();
        assert_eq!((stat.list(), stat.packets()), (None, 0));
        assert!(stat.counts_for(0) && stat.counts_for(31));
        stat.count(31, 7);
        stat.count(31, 9);
        assert_eq!(
            (stat.list(), stat.packets(), stat.last_seen_ns),
            (Some(31), 2, 9)
        );
        assert!(stat.counts_for(31) && !stat.counts_for(0));
        // A count kept by a daemon from before lists were told apart has no list.
        let old = HitStat {
            tagged: 5,
            last_seen_ns: 0,
        };
        assert_eq!((old.list(), old.packets()), (None, 5));
        assert!(!old.counts_for(0));
    }

    #[test]
    fn a_slot_addresses_each_level_by_its_own_prefix() {
        let slot = Slot24::of([198, 18, 5, 77]);
        assert_eq!(slot, Slot24((198 << 16) | (18 << 8) | 5));
        assert_eq!(slot.sixteen(), (198 << 8) | 18);
        // Every /24 of a /22 shares the /22's bit; the next /22 does not.
        let first = Slot24::of([198, 18, 4, 0]);
        for third in 4..8 {
            assert_eq!(
                Slot24::of([198, 18, third, 1]).per22_bit(),
                first.per22_bit()
            );
        }
        assert_ne!(Slot24::of([198, 18, 8, 0]).per22_bit(), first.per22_bit());
        // ...and its four PER24_BITS_V4 bits are the ones `per22_quad` names.
        let quad = (4..8).fold(0, |acc, third| {
            acc | Slot24::of([198, 18, third, 0]).per24_bit().1
        });
        assert_eq!(quad, slot.per22_quad());
        assert_eq!(
            Slot24::of([198, 18, 4, 0]).per24_bit().0,
            slot.per24_bit().0
        );
        // 32 two-bit states per word.
        assert_eq!(Slot24(33).state_position(), (1, 2));
    }

    #[test]
    fn ports_and_emergency() {
        let (word, shift) = port_list_position(Proto::Udp, 65535);
        assert_eq!((word, shift), (PORT_LISTS_WORDS - 1, 56));
        assert_eq!(port_list_position(Proto::Tcp, 22), (2, 48));
        let word = port_list_byte(Some(31)) << 56 | port_list_byte(Some(0)) << 48;
        assert_eq!(port_list_mask(word, 56), 1 << 31);
        assert_eq!(port_list_mask(word, 48), 1);
        assert_eq!(port_list_mask(word, 40), 0, "unprotected");
        let settings = |until| Settings {
            emergency_until_ns: until,
            ..Settings::default()
        };
        assert!(!settings(0).emergency_in_force(5));
        assert!(settings(10).emergency_in_force(9));
        assert!(!settings(10).emergency_in_force(10));
    }

    #[test]
    fn timed_lists_end_at_their_deadline() {
        let mut timed = TimedLists::default();
        timed.until_ns[0] = 100;
        timed.lists[0] = 0b01;
        timed.until_ns[1] = 200;
        timed.lists[1] = 0b11;
        assert_eq!(timed.lists_at(99), 0b11);
        assert_eq!(timed.lists_at(100), 0b11, "list 1 lasts until 200");
        assert_eq!(timed.lists_at(199), 0b11);
        assert_eq!(timed.lists_at(200), 0);
        timed.until_ns[1] = 150;
        timed.lists[1] = 0b10;
        assert_eq!(timed.lists_at(100), 0b10);
        assert_eq!(timed.lists_at(150), 0);
    }
}
