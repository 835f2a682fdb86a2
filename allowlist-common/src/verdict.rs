//! The decision, apart from packet parsing and map access, so that a userspace reference
//! model can be checked against exactly what the kernel runs.

/// Why a packet got its verdict. The discriminant indexes [`crate::maps::Counters`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    PassNotIp = 0,
    /// Shorter than its headers claim, or malformed: the kernel's own checks discard it.
    PassTruncated = 1,
    /// IP but not TCP (ICMP, ND, UDP, ...).
    PassNotTcp = 2,
    /// TCP but not a connection opener (anything but SYN without ACK).
    PassNotSyn = 3,
    /// A fragment other than the first: it cannot open a connection without the first one.
    PassNonFirstFragment = 4,
    /// A SYN to a port that is not protected.
    PassUnprotectedPort = 5,
    /// The list is inactive.
    PassInactive = 6,
    /// A SYN (or opaque first fragment) from a covered IPv4 source.
    PassAllowedV4 = 7,
    /// A SYN (or opaque first fragment) from a covered IPv6 source.
    PassAllowedV6 = 8,
    /// A SYN to a protected port from an IPv4 source no entry covers.
    DropSynV4 = 9,
    /// A SYN to a protected port from an IPv6 source no entry covers.
    DropSynV6 = 10,
    /// A first fragment too short to show the TCP flags, or an IPv6 header chain longer than
    /// the parser's bound, that could be TCP to a protected port, from an uncovered source.
    DropFragmentEvasion = 11,
    /// Would have been dropped, but an emergency disable is in force.
    PassEmergency = 12,
}

pub const REASON_COUNT: usize = 13;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT] = [
        Reason::PassNotIp,
        Reason::PassTruncated,
        Reason::PassNotTcp,
        Reason::PassNotSyn,
        Reason::PassNonFirstFragment,
        Reason::PassUnprotectedPort,
        Reason::PassInactive,
        Reason::PassAllowedV4,
        Reason::PassAllowedV6,
        Reason::DropSynV4,
        Reason::DropSynV6,
        Reason::DropFragmentEvasion,
        Reason::PassEmergency,
    ];

    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Reason::DropSynV4 | Reason::DropSynV6 | Reason::DropFragmentEvasion
        )
    }

    /// Stable snake_case name, used in logs, `allowlistctl status` and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassNotTcp => "pass_not_tcp",
            Reason::PassNotSyn => "pass_not_syn",
            Reason::PassNonFirstFragment => "pass_non_first_fragment",
            Reason::PassUnprotectedPort => "pass_unprotected_port",
            Reason::PassInactive => "pass_inactive",
            Reason::PassAllowedV4 => "pass_allowed_v4",
            Reason::PassAllowedV6 => "pass_allowed_v6",
            Reason::DropSynV4 => "drop_syn_v4",
            Reason::DropSynV6 => "drop_syn_v6",
            Reason::DropFragmentEvasion => "drop_fragment_evasion",
            Reason::PassEmergency => "pass_emergency",
        }
    }
}

/// A source address as it appears on the wire (network byte order). IPv4-mapped IPv6
/// sources are turned into `V4` by the parser, so IPv4 entries judge them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Source {
    /// `::ffff:a.b.c.d` becomes `a.b.c.d`; any other IPv6 address stays as it is.
    pub fn from_v6(addr: [u8; 16]) -> Source {
        if addr[..12] == crate::maps::V4_MAPPED_PREFIX {
            Source::V4([addr[12], addr[13], addr[14], addr[15]])
        } else {
            Source::V6(addr)
        }
    }
}

/// What the decision needs to know of a source besides whether it is covered.
pub trait Family {
    fn is_v4(&self) -> bool;
}

impl Family for Source {
    fn is_v4(&self) -> bool {
        matches!(self, Source::V4(_))
    }
}

/// What the parser learned about a frame: only what the decision needs. `S` is the source
/// as the rules look it up: the address itself in userspace; in the XDP program, where the
/// address sits in the frame (see its `SrcAt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<S = Source> {
    NotIp,
    Truncated,
    NotTcp,
    NotSyn,
    NonFirstFragment,
    /// A TCP segment with SYN set and ACK clear.
    Syn {
        src: S,
        dport: u16,
    },
    /// A first fragment or header chain that might be a SYN but does not show enough to tell:
    /// `dport` is known when the fragment holds at least the TCP ports.
    Opaque {
        src: S,
        dport: Option<u16>,
    },
}

/// What the decision looks up: the kernel answers from its maps, the daemon's live verdict
/// from the same maps, a reference model from a config's rules.
pub trait Lookups<S = Source> {
    fn active(&self) -> bool;
    fn protected(&self, port: u16) -> bool;
    fn any_protected(&self) -> bool;
    fn covered(&self, src: &S) -> bool;
    /// A timed emergency disable is in force (its deadline has not passed).
    fn emergency(&self) -> bool;
}

/// The verdict for one parsed frame. Cheap checks come first so that most traffic is decided
/// before any address lookup.
#[inline(always)]
pub fn decide<S: Copy + Family>(parsed: Parsed<S>, rules: &impl Lookups<S>) -> Reason {
    let (src, port_matters) = match parsed {
        Parsed::NotIp => return Reason::PassNotIp,
        Parsed::Truncated => return Reason::PassTruncated,
        Parsed::NotTcp => return Reason::PassNotTcp,
        Parsed::NotSyn => return Reason::PassNotSyn,
        Parsed::NonFirstFragment => return Reason::PassNonFirstFragment,
        Parsed::Syn { src, dport } => (src, rules.protected(dport)),
        Parsed::Opaque {
            src,
            dport: Some(dport),
        } => (src, rules.protected(dport)),
        Parsed::Opaque { src, dport: None } => (src, rules.any_protected()),
    };
    if !port_matters {
        return Reason::PassUnprotectedPort;
    }
    if !rules.active() {
        return Reason::PassInactive;
    }
    if rules.covered(&src) {
        return if src.is_v4() {
            Reason::PassAllowedV4
        } else {
            Reason::PassAllowedV6
        };
    }
    // Checked last, so that during an emergency the counters still tell covered sources from
    // the ones let in only by the emergency.
    if rules.emergency() {
        return Reason::PassEmergency;
    }
    match parsed {
        Parsed::Opaque { .. } => Reason::DropFragmentEvasion,
        _ if src.is_v4() => Reason::DropSynV4,
        _ => Reason::DropSynV6,
    }
}
