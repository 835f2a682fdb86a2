//! The XDP program: parse just enough of each frame to find TCP connection openers, then let
//! `allowlist_common::verdict::decide` judge them against the maps the daemon fills.
//!
//! Parsing decisions (also in the README's verdict table):
//! - UDP has no opener: every datagram (or first fragment showing its ports) to a protected
//!   UDP port is judged.
//! - Frames shorter than their headers or than the IP packet they claim to carry, or with a
//!   malformed IP header, pass: the kernel's IP layer discards them, and dropping here would
//!   only hide them from its counters.
//! - Nothing past the end of the IP packet (Ethernet padding, a trailer) is read as a header:
//!   the kernel trims it, so a tiny fragment cannot borrow TCP flags from its padding.
//! - Non-first fragments pass: without the first fragment they cannot open a connection.
//! - A first fragment too short to show the TCP flags (RFC 1858's tiny-fragment attack), or an
//!   IPv6 header chain longer than `MAX_V6_EXT_HEADERS`, is judged as a possible SYN: dropped
//!   from uncovered sources when it could reach a protected port. A UDP first fragment too
//!   short to show its ports likewise, for the protected UDP ports.
#![no_std]
#![no_main]

use core::{cell::Cell, mem::size_of};

use allowlist_common::{
    maps::{
        BlockedEvent, CONFIRM_V6_WORDS, COUNTER_SLOTS, Counters, CpuState, EVENTS_PER_SEC_PER_CPU,
        HOSTS_V4_WORDS, HitStat, ListHit, ListName, MAX_LIST_HITS, MAX_LISTS, MAX_TIMED_IDS,
        PER16_BITS_V4_WORDS, PER22_BITS_V4_WORDS, PER24_BITS_V4_WORDS, PER24_STATES_V4_WORDS,
        PORT_LISTS_WORDS, PREFILTER_V6_WORDS, Settings, Slot24, TimedLists, V4_MAPPED_PREFIX,
        V4Slot, V6_CLASS_32, V6_CLASS_48, V6Marks, host_v4_marks, port_list_mask,
        port_list_position, v6_marks, v6_prefixes,
    },
    verdict::{Family, ListMask, Lookups, Parsed, Proto, Reach, Reason, decide, deciding_list},
};
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_NOEXIST, xdp_action},
    helpers::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_boot_ns, bpf_ktime_get_ns},
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};

// Sizes of the tries and hash maps are placeholders: the daemon sets them from `max_entries`
// at load time.
#[map]
static ALLOW_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1024, 0);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1024, 0);
// Not preallocated: a preallocated map of a million elements per family costs its full size
// (and seconds to create) however short the list.
#[map]
static EXACT_V4: HashMap<[u8; 4], u32> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);
#[map]
static EXACT_V6: HashMap<[u8; 16], u32> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);
// Memory-mappable so the daemon updates prefilter bits with plain stores, not one syscall each.
#[map]
static PER24_STATES_V4: Array<u64> = Array::with_max_entries(PER24_STATES_V4_WORDS, BPF_F_MMAPABLE);
#[map]
static PER16_BITS_V4: Array<u64> = Array::with_max_entries(PER16_BITS_V4_WORDS, BPF_F_MMAPABLE);
#[map]
static PER22_BITS_V4: Array<u64> = Array::with_max_entries(PER22_BITS_V4_WORDS, BPF_F_MMAPABLE);
#[map]
static PER24_BITS_V4: Array<u64> = Array::with_max_entries(PER24_BITS_V4_WORDS, BPF_F_MMAPABLE);
#[map]
static PREFILTER_V6: Array<u64> = Array::with_max_entries(PREFILTER_V6_WORDS, BPF_F_MMAPABLE);
#[map]
static CONFIRM_V6: Array<u64> = Array::with_max_entries(CONFIRM_V6_WORDS, BPF_F_MMAPABLE);
#[map]
static HOSTS_V4: Array<u64> = Array::with_max_entries(HOSTS_V4_WORDS, BPF_F_MMAPABLE);
#[map]
static WHOLE_V4: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static PORT_LISTS: Array<u64> = Array::with_max_entries(PORT_LISTS_WORDS, 0);
/// Sized by the daemon, like a CPU's block of HITS.
#[map]
static ENTRY_LISTS: Array<u32> = Array::with_max_entries(2049, 0);
/// Replaced whole by the daemon (a hash map's update is atomic for readers, an array's is not).
#[map]
static ENTRY_TIMED: HashMap<u32, TimedLists> =
    HashMap::with_max_entries(MAX_TIMED_IDS, BPF_F_NO_PREALLOC);
#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
static BLOCKED: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);
#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);
/// Sized by the daemon: `HIT_SLOTS` per possible CPU.
#[map]
static HITS: Array<HitStat> = Array::with_max_entries(2049, 0);
#[map]
static LIST_HITS: PerCpuHashMap<ListHit, HitStat> =
    PerCpuHashMap::with_max_entries(MAX_LIST_HITS, BPF_F_NO_PREALLOC);
/// Read only by the daemon (see `maps::LIST_NAMES`).
#[map]
static LIST_NAMES: Array<ListName> = Array::with_max_entries(MAX_LISTS as u32, 0);
/// Entry ids + 1, set by the daemon at load time (see `maps::HITS`).
#[unsafe(no_mangle)]
static HIT_SLOTS: u32 = 2049;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Real traffic carries one or two extension headers; six leaves room for odd but legitimate
/// stacks while keeping the verifier's work bounded. Longer chains are judged as opaque.
const MAX_V6_EXT_HEADERS: usize = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Bytes of TCP header up to and including the flags byte.
const TCP_THROUGH_FLAGS: usize = 14;
const UDP_HEADER: usize = 8;
/// Bytes of a transport header through the destination port (TCP and UDP alike).
const THROUGH_PORTS: usize = 4;

#[xdp]
pub fn allowlist(ctx: XdpContext) -> u32 {
    let found = match plain_v4(&ctx) {
        Plain::NotSyn => {
            count(&ctx, Reason::PassNotSyn);
            return xdp_action::XDP_PASS;
        }
        Plain::Syn(dport) => Found::plain(Kind::Syn, dport),
        Plain::Datagram(dport) => Found::plain(Kind::Datagram, dport),
        Plain::Other => parse(&ctx),
    };
    let rules = KernelMaps {
        ctx: &ctx,
        settings: Cell::new(None),
        entry: Cell::new(0),
        needed: Cell::new(0),
        covering: Cell::new(0),
    };
    let reason = decide(found.parsed(), &rules);
    count(&ctx, reason);
    // Reasons before `PassInactive` are decided before any list is asked.
    if (reason as u32) < Reason::PassInactive as u32 {
        return xdp_action::XDP_PASS;
    }
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return action_of(reason);
    };
    // SAFETY: a per-CPU value: no other program instance writes it concurrently.
    let state = unsafe { &mut *state };
    let settings = rules.settings();
    let list = deciding_list(
        reason,
        rules.needed.get(),
        settings.enforcing,
        settings.monitoring,
        rules.covering.get(),
    )
    .unwrap_or(0);
    // Masked for the verifier, which cannot see that `deciding_list` (a table lookup of
    // trailing_zeros) stays below 32; read volatile so that LLVM, which can, keeps the mask.
    // SAFETY: reads a local.
    let index = unsafe { core::ptr::read_volatile(&list) } as usize & (MAX_LISTS - 1);
    if let Some(n) = state
        .lists
        .get_mut(index)
        .and_then(|counters| counters.by_reason.get_mut(reason as usize))
    {
        *n += 1;
    }
    if matches!(reason, Reason::PassAllowedV4 | Reason::PassAllowedV6) {
        // The first list the frame could reach that covers it (the only one, but for a
        // fragment hiding its port), masked for the verifier as `index` is.
        let covered = rules.needed.get() & rules.covering.get();
        // SAFETY: reads a local.
        let hit_list = unsafe { core::ptr::read_volatile(&covered) }.trailing_zeros() as usize;
        count_hit(rules.entry.get(), hit_list & (MAX_LISTS - 1), state);
    }
    if reason.is_drop() || reason.is_would_drop() {
        report_blocked(&ctx, &found, reason, list, state);
    }
    action_of(reason)
}

#[inline(always)]
fn action_of(reason: Reason) -> u32 {
    if reason.is_drop() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// What `plain_v4` saw.
enum Plain {
    /// Not a connection opener: established traffic, most of what arrives.
    NotSyn,
    /// A lone SYN to this port.
    Syn(u16),
    /// A UDP datagram to this port.
    Datagram(u16),
    /// Anything else: the general parser decides.
    Other,
}

/// Frames of the kind nearly all traffic is made of, recognised before the general parser:
/// untagged Ethernet, IPv4 without options, TCP or UDP, not a later fragment, the TCP header
/// through its flags (or the UDP header) inside the packet. For them this finds what the
/// parser would. (The differential test holds both to the model.)
#[inline(always)]
fn plain_v4(ctx: &XdpContext) -> Plain {
    const IP: usize = ETH_HLEN;
    const TCP: usize = IP + 20;
    const FLAGS: usize = TCP + TCP_THROUGH_FLAGS - 1;
    let len = frame_len(ctx);
    let Some(h) = bytes::<{ FLAGS + 1 }>(ctx, 0, len) else {
        return Plain::Other;
    };
    let total_len = usize::from(be16(h[IP + 2], h[IP + 3]));
    let plain = be16(h[12], h[13]) == ETH_P_IP
        && h[IP] == 0x45
        && IP + total_len <= len
        && be16(h[IP + 6], h[IP + 7]) & 0x1fff == 0;
    let dport = be16(h[TCP + 2], h[TCP + 3]);
    let flags = h[FLAGS];
    if !plain {
        Plain::Other
    } else if h[IP + 9] == IPPROTO_UDP && total_len >= 20 + UDP_HEADER {
        Plain::Datagram(dport)
    } else if h[IP + 9] != IPPROTO_TCP || total_len < 20 + TCP_THROUGH_FLAGS {
        Plain::Other
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
        Plain::Syn(dport)
    } else {
        Plain::NotSyn
    }
}

/// Bytes `offset..offset + N` of the frame, or `None` past `end` (the end of the IP packet,
/// so Ethernet padding or a trailer is never read as a header) or past the frame. Every read
/// goes through here, so no header is ever read before its bounds are checked.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, offset: usize, end: usize) -> Option<[u8; N]> {
    if offset + N > end {
        return None;
    }
    let start = ctx.data() + offset;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the range was just checked against data_end; [u8; N] has alignment 1.
    Some(unsafe { *(start as *const [u8; N]) })
}

/// The frame's length for the scalar checks against IP lengths. Read with volatile loads so
/// that the compiler cannot prove the pointer check in `bytes` redundant and drop it: the
/// verifier accepts packet reads only after a check on the pointer itself.
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    // SAFETY: ctx points at the kernel's xdp_md for this invocation.
    unsafe {
        let md = ctx.ctx;
        core::ptr::read_volatile(&raw const (*md).data_end) as usize
            - core::ptr::read_volatile(&raw const (*md).data) as usize
    }
}

#[inline(always)]
fn be16(b0: u8, b1: u8) -> u16 {
    u16::from_be_bytes([b0, b1])
}

/// Where the source address sits in the frame, and whether it is IPv4 (an IPv4-mapped IPv6
/// source is: its last four bytes). The parser hands this on, not the address: returning a
/// 16-byte address through the parser's many exits made LLVM store all of it at every one of
/// them, dozens of stores for every frame. `covered` reads the address, for the few frames
/// that get that far.
#[derive(Clone, Copy)]
struct SrcAt {
    offset: u16,
    v4: bool,
}

impl Family for SrcAt {
    #[inline(always)]
    fn is_v4(&self) -> bool {
        self.v4
    }
}

/// What the parser found. A struct with every field always set rather than a `Parsed`: the
/// variants of an enum without a payload leave it undefined, and where the parser's many exits
/// join, LLVM fills it with whatever register is at hand, a packet pointer that the verifier
/// then refuses to see spilled or masked. `parsed` builds the `Parsed` for `decide` after the
/// joins.
#[derive(Clone, Copy)]
struct Found {
    kind: Kind,
    src: SrcAt,
    /// For `Syn` and `Opaque`.
    dport: u16,
}

#[derive(Clone, Copy)]
enum Kind {
    NotIp,
    Truncated,
    OtherProtocol,
    NotSyn,
    NonFirstFragment,
    Syn,
    Datagram,
    /// A TCP first fragment that shows the destination port but not the flags.
    Opaque,
    /// One that does not show the port either.
    OpaqueAnyTcp,
    /// A UDP first fragment too short to show its port.
    OpaqueAnyUdp,
    /// An IPv6 header chain that does not show its transport protocol.
    OpaqueAny,
}

impl Found {
    const NOT_IP: Found = Found::bare(Kind::NotIp);
    const TRUNCATED: Found = Found::bare(Kind::Truncated);
    const OTHER_PROTOCOL: Found = Found::bare(Kind::OtherProtocol);
    const NOT_SYN: Found = Found::bare(Kind::NotSyn);
    const NON_FIRST_FRAGMENT: Found = Found::bare(Kind::NonFirstFragment);

    const fn bare(kind: Kind) -> Found {
        Found {
            kind,
            src: SrcAt {
                offset: 0,
                v4: false,
            },
            dport: 0,
        }
    }

    const fn with_src(kind: Kind, src: SrcAt) -> Found {
        Found {
            kind,
            src,
            dport: 0,
        }
    }

    /// What `plain_v4` found: its source is at a fixed place.
    const fn plain(kind: Kind, dport: u16) -> Found {
        Found {
            kind,
            src: SrcAt {
                offset: (ETH_HLEN + 12) as u16,
                v4: true,
            },
            dport,
        }
    }

    #[inline(always)]
    fn parsed(self) -> Parsed<SrcAt> {
        let (src, dport) = (self.src, self.dport);
        match self.kind {
            Kind::NotIp => Parsed::NotIp,
            Kind::Truncated => Parsed::Truncated,
            Kind::OtherProtocol => Parsed::OtherProtocol,
            Kind::NotSyn => Parsed::NotSyn,
            Kind::NonFirstFragment => Parsed::NonFirstFragment,
            Kind::Syn => Parsed::Syn { src, dport },
            Kind::Datagram => Parsed::Datagram { src, dport },
            Kind::Opaque => Parsed::Opaque {
                src,
                reach: Reach::TcpPort(dport),
            },
            Kind::OpaqueAnyTcp => Parsed::Opaque {
                src,
                reach: Reach::AnyTcp,
            },
            Kind::OpaqueAnyUdp => Parsed::Opaque {
                src,
                reach: Reach::AnyUdp,
            },
            Kind::OpaqueAny => Parsed::Opaque {
                src,
                reach: Reach::Any,
            },
        }
    }
}

fn parse(ctx: &XdpContext) -> Found {
    let len = frame_len(ctx);
    let Some(eth) = bytes::<ETH_HLEN>(ctx, 0, len) else {
        return Found::TRUNCATED;
    };
    let mut ethertype = be16(eth[12], eth[13]);
    let mut offset = ETH_HLEN;
    // Up to two tags (802.1Q, or QinQ with 802.1ad outside); a third tag stays a VLAN
    // ethertype below and passes as non-IP.
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let Some(tag) = bytes::<4>(ctx, offset, len) else {
            return Found::TRUNCATED;
        };
        ethertype = be16(tag[2], tag[3]);
        offset += 4;
    }
    match ethertype {
        ETH_P_IP => parse_v4(ctx, offset),
        ETH_P_IPV6 => parse_v6(ctx, offset),
        _ => Found::NOT_IP,
    }
}

fn parse_v4(ctx: &XdpContext, offset: usize) -> Found {
    let Some(ip) = bytes::<20>(ctx, offset, frame_len(ctx)) else {
        return Found::TRUNCATED;
    };
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(be16(ip[2], ip[3]));
    // A packet longer than the frame, or shorter than its own header, is discarded by the
    // kernel's IP layer; judging it here could only be fooled by it.
    if ip[0] >> 4 != 4 || header_len < 20 || total_len < header_len {
        return Found::TRUNCATED;
    }
    let end = offset + total_len;
    if end > frame_len(ctx) {
        return Found::TRUNCATED;
    }
    let udp = ip[9] == IPPROTO_UDP;
    if ip[9] != IPPROTO_TCP && !udp {
        return Found::OTHER_PROTOCOL;
    }
    let frag = be16(ip[6], ip[7]);
    if frag & 0x1fff != 0 {
        return Found::NON_FIRST_FRAGMENT;
    }
    let more_fragments = frag & 0x2000 != 0;
    let src = SrcAt {
        offset: (offset + 12) as u16,
        v4: true,
    };
    if udp {
        return parse_udp(ctx, offset + header_len, end, src, more_fragments);
    }
    parse_tcp(ctx, offset + header_len, end, src, more_fragments)
}

fn parse_v6(ctx: &XdpContext, offset: usize) -> Found {
    let Some(ip) = bytes::<40>(ctx, offset, frame_len(ctx)) else {
        return Found::TRUNCATED;
    };
    // Payload length 0 would mean a jumbogram, which cannot arrive over Ethernet: the kernel
    // then sees a bare header, as the parser does.
    let end = offset + 40 + usize::from(be16(ip[4], ip[5]));
    if ip[0] >> 4 != 6 || end > frame_len(ctx) {
        return Found::TRUNCATED;
    }
    // IPv4-mapped (::ffff:a.b.c.d): judged as a.b.c.d.
    let mapped = ip[8..20] == V4_MAPPED_PREFIX;
    let src = if mapped {
        SrcAt {
            offset: (offset + 20) as u16,
            v4: true,
        }
    } else {
        SrcAt {
            offset: (offset + 8) as u16,
            v4: false,
        }
    };
    let mut next = ip[6];
    let mut offset = offset + 40;
    let mut more_fragments = false;
    // A cut-off chain is opaque in a first fragment (the rest may follow in the next one) and
    // merely truncated otherwise.
    let cut = |more_fragments: bool| {
        if more_fragments {
            Found::with_src(Kind::OpaqueAny, src)
        } else {
            Found::TRUNCATED
        }
    };
    for _ in 0..MAX_V6_EXT_HEADERS {
        match next {
            IPPROTO_TCP => return parse_tcp(ctx, offset, end, src, more_fragments),
            IPPROTO_UDP => return parse_udp(ctx, offset, end, src, more_fragments),
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let Some(ext) = bytes::<2>(ctx, offset, end) else {
                    return cut(more_fragments);
                };
                next = ext[0];
                offset += (usize::from(ext[1]) + 1) * 8;
            }
            NEXTHDR_AUTH => {
                let Some(ext) = bytes::<2>(ctx, offset, end) else {
                    return cut(more_fragments);
                };
                next = ext[0];
                offset += (usize::from(ext[1]) + 2) * 4;
            }
            NEXTHDR_FRAGMENT => {
                let Some(frag) = bytes::<8>(ctx, offset, end) else {
                    return cut(more_fragments);
                };
                if be16(frag[2], frag[3]) >> 3 != 0 {
                    return Found::NON_FIRST_FRAGMENT;
                }
                next = frag[0];
                // Sticky: a later fragment header cannot undo an earlier one's "more".
                more_fragments |= frag[3] & 1 != 0;
                offset += 8;
            }
            _ => return Found::OTHER_PROTOCOL,
        }
    }
    if next == IPPROTO_TCP {
        return parse_tcp(ctx, offset, end, src, more_fragments);
    }
    if next == IPPROTO_UDP {
        return parse_udp(ctx, offset, end, src, more_fragments);
    }
    if matches!(
        next,
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT
    ) {
        // Longer than the bound: whatever follows could be TCP or UDP.
        return Found::with_src(Kind::OpaqueAny, src);
    }
    Found::OTHER_PROTOCOL
}

fn parse_tcp(
    ctx: &XdpContext,
    offset: usize,
    end: usize,
    src: SrcAt,
    more_fragments: bool,
) -> Found {
    if let Some(tcp) = bytes::<TCP_THROUGH_FLAGS>(ctx, offset, end) {
        let flags = tcp[13];
        return if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            Found {
                kind: Kind::Syn,
                src,
                dport: be16(tcp[2], tcp[3]),
            }
        } else {
            Found::NOT_SYN
        };
    }
    if !more_fragments {
        return Found::TRUNCATED;
    }
    // A tiny first fragment: the flags arrive later, so it could be a SYN (RFC 1858).
    match bytes::<THROUGH_PORTS>(ctx, offset, end) {
        Some(ports) => Found {
            kind: Kind::Opaque,
            src,
            dport: be16(ports[2], ports[3]),
        },
        None => Found::with_src(Kind::OpaqueAnyTcp, src),
    }
}

fn parse_udp(
    ctx: &XdpContext,
    offset: usize,
    end: usize,
    src: SrcAt,
    more_fragments: bool,
) -> Found {
    // A whole datagram needs its whole header; a first fragment only has to show the port.
    let shown = if more_fragments {
        bytes::<THROUGH_PORTS>(ctx, offset, end)
    } else {
        bytes::<UDP_HEADER>(ctx, offset, end).map(|h| [h[0], h[1], h[2], h[3]])
    };
    match shown {
        Some(ports) => Found {
            kind: Kind::Datagram,
            src,
            dport: be16(ports[2], ports[3]),
        },
        None if more_fragments => Found::with_src(Kind::OpaqueAnyUdp, src),
        None => Found::TRUNCATED,
    }
}

/// The decision's view of the maps. `covering` notes the id of the entry it found, for the
/// per-entry hit counters.
/// `port_list` and `lists_with_ports` note the lists the frame could reach, and `covering`
/// the lists covering its source, for the list the verdict is counted against.
struct KernelMaps<'a> {
    ctx: &'a XdpContext,
    /// SETTINGS, read once when first asked.
    settings: Cell<Option<Settings>>,
    entry: Cell<u32>,
    needed: Cell<ListMask>,
    covering: Cell<ListMask>,
}

impl KernelMaps<'_> {
    #[inline(always)]
    fn settings(&self) -> Settings {
        if let Some(settings) = self.settings.get() {
            return settings;
        }
        let settings = SETTINGS.get(0).copied().unwrap_or_default();
        self.settings.set(Some(settings));
        settings
    }

    #[inline(always)]
    fn emergency_in_force(&self) -> bool {
        let settings = self.settings();
        // The clock is read only while a deadline is set.
        // SAFETY: a helper without arguments, available to XDP programs.
        settings.emergency_until_ns != 0
            && settings.emergency_in_force(unsafe { bpf_ktime_get_boot_ns() })
    }
}

impl Lookups<SrcAt> for KernelMaps<'_> {
    #[inline(always)]
    fn port_list(&self, proto: Proto, port: u16) -> ListMask {
        let (word, shift) = port_list_position(proto, port);
        let list = port_list_mask(PORT_LISTS.get(word).copied().unwrap_or(0), shift);
        self.needed.set(list);
        list
    }

    #[inline(always)]
    fn lists_with_ports(&self, proto: Proto) -> ListMask {
        let settings = self.settings();
        let lists = match proto {
            Proto::Tcp => settings.tcp_lists,
            Proto::Udp => settings.udp_lists,
        };
        self.needed.set(self.needed.get() | lists);
        lists
    }

    #[inline(always)]
    fn enforcing(&self) -> ListMask {
        self.settings().enforcing
    }

    #[inline(always)]
    fn monitoring(&self) -> ListMask {
        self.settings().monitoring
    }

    #[inline(always)]
    fn covering(&self, src: &SrcAt) -> ListMask {
        // The parser checked these bytes are in the frame: the `None`s never happen.
        let id = if src.v4 {
            source_v4(self.ctx, usize::from(src.offset)).and_then(covering_v4)
        } else {
            let settings = self.settings();
            source_v6(self.ctx, usize::from(src.offset)).and_then(|a| covering_v6(a, &settings))
        };
        let Some(id) = id else {
            return 0;
        };
        self.entry.set(id);
        let mut lists = ENTRY_LISTS.get(id).copied().unwrap_or(0);
        // The clock is read only for an id some timed entry reaches.
        // SAFETY: the value is plain integers, copied out at once; the helper has no arguments.
        if self.settings().timed != 0
            && let Some(timed) = unsafe { ENTRY_TIMED.get(&id) }
        {
            lists |= timed.lists_at(unsafe { bpf_ktime_get_boot_ns() });
        }
        self.covering.set(lists);
        lists
    }

    #[inline(always)]
    fn emergency(&self) -> bool {
        self.emergency_in_force()
    }
}

/// The id of the most specific entry covering `addr`, whose `ENTRY_LISTS` mask holds every
/// list covering it.
#[inline(always)]
fn covering_v4(addr: [u8; 4]) -> Option<u32> {
    let slot24 = Slot24::of(addr);
    if !has_bits(&PER16_BITS_V4, slot24.per16_bit())
        || !has_bits(&PER22_BITS_V4, slot24.per22_bit())
        || !has_bits(&PER24_BITS_V4, slot24.per24_bit())
    {
        return None;
    }
    let (word, shift) = slot24.state_position();
    let bits = PER24_STATES_V4.get(word).copied().unwrap_or(0) >> shift;
    let slot = V4Slot::from_bits(bits);
    if slot == V4Slot::None {
        return None;
    }
    // A `Whole` /24 holds no longer entries, so no single address in it is listed.
    // SAFETY: the value is a u32 the daemon wrote; it is copied out at once.
    if slot != V4Slot::Whole
        && host_may_be_listed(addr)
        && let Some(id) = unsafe { EXACT_V4.get(addr) }
    {
        return Some(*id);
    }
    if slot == V4Slot::Hosts {
        return None;
    }
    // The id of the entry covering a whole /24 comes from WHOLE_V4 where the daemon keeps
    // it, else from the trie.
    if slot == V4Slot::Whole {
        let index = u32::from_be_bytes([0, addr[0], addr[1], addr[2]]);
        if let Some(&id) = WHOLE_V4.get(index)
            && id != 0
        {
            return Some(id);
        }
    }
    ALLOW_V4.get(Key::new(32, addr)).copied()
}

#[inline(always)]
fn covering_v6(addr: [u8; 16], settings: &Settings) -> Option<u32> {
    if settings.v6_wide_entries == 0 {
        let (first32, first48) = v6_prefixes(&addr);
        let fine =
            settings.v6_classes & V6_CLASS_48 != 0 && v6_marked(v6_marks(V6_CLASS_48, first48));
        let coarse =
            settings.v6_classes & V6_CLASS_32 != 0 && v6_marked(v6_marks(V6_CLASS_32, first32));
        if !fine && !coarse {
            return None;
        }
    }
    // SAFETY: as for EXACT_V4.
    if let Some(id) = unsafe { EXACT_V6.get(addr) } {
        return Some(*id);
    }
    ALLOW_V6.get(Key::new(128, addr)).copied()
}

/// Whether HOSTS_V4 has all the bits of `addr`: if not, EXACT_V4 does not have it.
#[inline(always)]
fn host_may_be_listed(addr: [u8; 4]) -> bool {
    has_bits(&HOSTS_V4, host_v4_marks(addr))
}

/// Whether word `word` of `map` has every bit of `bits` set (a word past the end has none).
#[inline(always)]
fn has_bits(map: &Array<u64>, (word, bits): (u32, u64)) -> bool {
    map.get(word).copied().unwrap_or(0) & bits == bits
}

/// Whether both IPv6 Bloom filters have all the bits of `marks`.
#[inline(always)]
fn v6_marked(marks: V6Marks) -> bool {
    has_bits(&PREFILTER_V6, (marks.word, marks.bits))
        && has_bits(&CONFIRM_V6, (marks.confirm_word, marks.confirm_bits))
}

/// Tells the daemon who was blocked, within this CPU's event budget; what exceeds it is only
/// counted.
#[inline(always)]
fn report_blocked(
    ctx: &XdpContext,
    found: &Found,
    reason: Reason,
    list: u32,
    state: &mut CpuState,
) {
    // A tick's resolution is enough for a budget per second.
    let now = coarse_now(state);
    let budget = &mut state.budget;
    let interval = 1_000_000_000 / EVENTS_PER_SEC_PER_CPU;
    let earned = (now - budget.refilled_ns) / interval;
    if earned > 0 {
        budget.tokens = (budget.tokens + earned).min(EVENTS_PER_SEC_PER_CPU);
        budget.refilled_ns = now;
    }
    if budget.tokens == 0 {
        budget.suppressed += 1;
        return;
    }
    // The source is read from the frame again, not taken from the verdict: bench builds
    // judge a drawn source instead.
    let offset = usize::from(found.src.offset);
    let (family, addr) = if found.src.v4 {
        let Some(a) = bytes::<4>(ctx, offset, frame_len(ctx)) else {
            return;
        };
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        (4, addr)
    } else {
        let Some(addr) = bytes::<16>(ctx, offset, frame_len(ctx)) else {
            return;
        };
        (6, addr)
    };
    let event = BlockedEvent {
        addr,
        port: found.dport,
        family,
        reason: reason as u8,
        ifindex: ctx.ingress_ifindex() as u32,
        list: list as u8,
        _padding: [0; 3],
    };
    if BLOCKED.output::<BlockedEvent>(&event, 0).is_ok() {
        budget.tokens -= 1;
        budget.sent += 1;
    } else {
        budget.suppressed += 1;
    }
}

/// CLOCK_MONOTONIC to a tick: each CPU reads it once a jiffy and keeps the reading with the
/// jiffies it was taken at, so under a flood, where every drop and every allowed SYN wants the
/// time, it costs one load (the verifier inlines bpf_jiffies64) instead of a helper call. (Not
/// bpf_ktime_get_coarse_ns, which would do as well but arrived only in Linux 5.11, after
/// Debian 11's kernel.)
#[inline(always)]
fn coarse_now(state: &mut CpuState) -> u64 {
    // SAFETY (the helpers here): they take no arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    if state.clock_jiffies != jiffies {
        state.clock_jiffies = jiffies;
        state.clock_ns = unsafe { bpf_ktime_get_ns() };
    }
    state.clock_ns
}

#[inline(always)]
fn count_hit(id: u32, list: usize, state: &mut CpuState) {
    // SAFETY: reads a global the loader wrote; helpers without arguments.
    let (slots, cpu) = unsafe {
        (
            core::ptr::read_volatile(&raw const HIT_SLOTS),
            bpf_get_smp_processor_id(),
        )
    };
    let Some(stat) = HITS.get_ptr_mut(cpu * slots + id) else {
        return;
    };
    let now = coarse_now(state);
    // SAFETY: this CPU's block: no other program instance writes it concurrently.
    unsafe {
        if (*stat).counts_for(list) {
            (*stat).count(list, now);
            return;
        }
    }
    // A network in several lists, let in for another list than its slot's.
    let key = ListHit {
        id,
        list: list as u32,
    };
    match LIST_HITS.get_ptr_mut(&key) {
        // SAFETY: this CPU's value of a per-CPU hash map.
        Some(other) => unsafe { (*other).count(list, now) },
        None => {
            // When full, the hit is counted only in the list's counters.
            let _ = LIST_HITS.insert(&key, &HitStat::new(Some(list), 1, now), BPF_NOEXIST.into());
        }
    }
}

#[inline(always)]
fn count(ctx: &XdpContext, reason: Reason) {
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = if ifindex < COUNTER_SLOTS { ifindex } else { 0 };
    if let Some(counters) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU value: no other program instance writes it concurrently.
        if let Some(n) = unsafe { (*counters).by_reason.get_mut(reason as usize) } {
            *n += 1;
        }
    }
}

/// The IPv4 source address at `offset`. Bench builds (`--features random-source`, see `cargo
/// xtask bench`) draw a new one for every packet instead, as a flood of spoofed SYNs brings:
/// BPF_PROG_TEST_RUN repeats one frame, which would keep every cache warm.
#[inline(always)]
fn source_v4(ctx: &XdpContext, offset: usize) -> Option<[u8; 4]> {
    #[cfg(feature = "random-source")]
    {
        let _ = (ctx, offset);
        // SAFETY: a helper without arguments.
        Some(allowlist_common::random_source::v4(unsafe {
            aya_ebpf::helpers::bpf_get_prandom_u32()
        }))
    }
    #[cfg(not(feature = "random-source"))]
    bytes::<4>(ctx, offset, frame_len(ctx))
}

/// The IPv6 source address at `offset` (drawn in bench builds, as for IPv4).
#[inline(always)]
fn source_v6(ctx: &XdpContext, offset: usize) -> Option<[u8; 16]> {
    #[cfg(feature = "random-source")]
    {
        use aya_ebpf::helpers::bpf_get_prandom_u32;
        let _ = (ctx, offset);
        // SAFETY: helpers without arguments.
        Some(unsafe {
            allowlist_common::random_source::v6(bpf_get_prandom_u32(), bpf_get_prandom_u32())
        })
    }
    #[cfg(not(feature = "random-source"))]
    bytes::<16>(ctx, offset, frame_len(ctx))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

const _: () = assert!(size_of::<Settings>() == 40);
