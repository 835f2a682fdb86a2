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
    /// IP but neither TCP nor UDP (ICMP, ND, GRE, ...).
    PassOtherProtocol = 2,
    /// TCP but not a connection opener (anything but SYN without ACK).
    PassNotSyn = 3,
    /// A fragment other than the first: it cannot open a connection without the first one.
    PassNonFirstFragment = 4,
    /// A SYN or datagram to a port no list protects.
    PassUnprotectedPort = 5,
    /// The port's list is off (`mode = "off"`, or `active = false`).
    PassInactive = 6,
    /// From an IPv4 source the port's list covers.
    PassAllowedV4 = 7,
    /// From an IPv6 source the port's list covers.
    PassAllowedV6 = 8,
    /// A SYN to a protected port from an IPv4 source its list does not cover.
    DropSynV4 = 9,
    /// A SYN to a protected port from an IPv6 source its list does not cover.
    DropSynV6 = 10,
    /// A first fragment too short to show the TCP flags (or the UDP port), or an IPv6 header
    /// chain longer than the parser's bound, that could reach a protected port from a source
    /// its list does not cover.
    DropFragmentEvasion = 11,
    /// Would have been dropped, but an emergency disable is in force.
    PassEmergency = 12,
    /// A UDP datagram to a protected port from an IPv4 source its list does not cover.
    DropUdpV4 = 13,
    /// A UDP datagram to a protected port from an IPv6 source its list does not cover.
    DropUdpV6 = 14,
    /// `DropSynV4`, but the list is in monitor mode: passed and counted.
    WouldDropSynV4 = 15,
    /// `DropSynV6` in monitor mode.
    WouldDropSynV6 = 16,
    /// `DropUdpV4` in monitor mode.
    WouldDropUdpV4 = 17,
    /// `DropUdpV6` in monitor mode.
    WouldDropUdpV6 = 18,
    /// `DropFragmentEvasion` in monitor mode.
    WouldDropFragmentEvasion = 19,
}

pub const REASON_COUNT: usize = 20;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT] = [
        Reason::PassNotIp,
        Reason::PassTruncated,
        Reason::PassOtherProtocol,
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
        Reason::DropUdpV4,
        Reason::DropUdpV6,
        Reason::WouldDropSynV4,
        Reason::WouldDropSynV6,
        Reason::WouldDropUdpV4,
        Reason::WouldDropUdpV6,
        Reason::WouldDropFragmentEvasion,
    ];

    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Reason::DropSynV4
                | Reason::DropSynV6
                | Reason::DropUdpV4
                | Reason::DropUdpV6
                | Reason::DropFragmentEvasion
        )
    }

    /// What monitor mode passed that enforcement would have dropped.
    pub const fn is_would_drop(self) -> bool {
        matches!(
            self,
            Reason::WouldDropSynV4
                | Reason::WouldDropSynV6
                | Reason::WouldDropUdpV4
                | Reason::WouldDropUdpV6
                | Reason::WouldDropFragmentEvasion
        )
    }

    /// The reason monitor mode gives what enforcement would drop for `self`.
    pub const fn as_would_drop(self) -> Reason {
        match self {
            Reason::DropSynV4 => Reason::WouldDropSynV4,
            Reason::DropSynV6 => Reason::WouldDropSynV6,
            Reason::DropUdpV4 => Reason::WouldDropUdpV4,
            Reason::DropUdpV6 => Reason::WouldDropUdpV6,
            Reason::DropFragmentEvasion => Reason::WouldDropFragmentEvasion,
            other => other,
        }
    }

    /// Stable snake_case name, used in logs, `allowlistctl status` and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassOtherProtocol => "pass_other_protocol",
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
            Reason::DropUdpV4 => "drop_udp_v4",
            Reason::DropUdpV6 => "drop_udp_v6",
            Reason::WouldDropSynV4 => "would_drop_syn_v4",
            Reason::WouldDropSynV6 => "would_drop_syn_v6",
            Reason::WouldDropUdpV4 => "would_drop_udp_v4",
            Reason::WouldDropUdpV6 => "would_drop_udp_v6",
            Reason::WouldDropFragmentEvasion => "would_drop_fragment_evasion",
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

/// The transport protocols whose ports lists protect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Which protected ports a frame that hides its transport header could reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A TCP first fragment showing its port but not its flags.
    TcpPort(u16),
    /// A TCP first fragment too short to show its port.
    AnyTcp,
    /// A UDP first fragment too short to show its port.
    AnyUdp,
    /// An IPv6 header chain cut off or longer than the parser follows: TCP or UDP.
    Any,
}

/// What the parser learned about a frame: only what the decision needs. `S` is the source
/// as the rules look it up: the address itself in userspace; in the XDP program, where the
/// address sits in the frame (see its `SrcAt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<S = Source> {
    NotIp,
    Truncated,
    OtherProtocol,
    NotSyn,
    NonFirstFragment,
    /// A TCP segment with SYN set and ACK clear.
    Syn {
        src: S,
        dport: u16,
    },
    /// A UDP datagram (or a first fragment showing its port): UDP has no opener, so every
    /// datagram to a protected port is judged.
    Datagram {
        src: S,
        dport: u16,
    },
    /// A first fragment or header chain that might open a connection but does not show
    /// enough to tell.
    Opaque {
        src: S,
        reach: Reach,
    },
}

/// Lists are numbered 0..[`crate::maps::MAX_LISTS`] in the kernel, and sets of them are masks
/// of `1 << number`.
pub type ListMask = u32;

/// What the decision looks up: the kernel answers from its maps, the daemon's live verdict
/// from the same maps, a reference model from a config's rules.
pub trait Lookups<S = Source> {
    /// The list protecting `port` (its bit), or 0.
    fn port_list(&self, proto: Proto, port: u16) -> ListMask;
    /// Every list protecting some port of `proto`.
    fn lists_with_ports(&self, proto: Proto) -> ListMask;
    /// Lists in enforce mode.
    fn enforcing(&self) -> ListMask;
    /// Lists in monitor mode.
    fn monitoring(&self) -> ListMask;
    /// The lists whose entries cover `src` (0: none).
    fn covering(&self, src: &S) -> ListMask;
    /// A timed emergency disable is in force (its deadline has not passed).
    fn emergency(&self) -> bool;
}

/// The verdict for one parsed frame. Cheap checks come first so that most traffic is decided
/// before any address lookup. A frame that could reach the ports of several lists (a fragment
/// hiding its port) passes only if every one of them that is on covers its source.
#[inline(always)]
pub fn decide<S: Copy + Family>(parsed: Parsed<S>, rules: &impl Lookups<S>) -> Reason {
    let (src, needed) = match parsed {
        Parsed::NotIp => return Reason::PassNotIp,
        Parsed::Truncated => return Reason::PassTruncated,
        Parsed::OtherProtocol => return Reason::PassOtherProtocol,
        Parsed::NotSyn => return Reason::PassNotSyn,
        Parsed::NonFirstFragment => return Reason::PassNonFirstFragment,
        Parsed::Syn { src, dport } => (src, rules.port_list(Proto::Tcp, dport)),
        Parsed::Datagram { src, dport } => (src, rules.port_list(Proto::Udp, dport)),
        Parsed::Opaque { src, reach } => (
            src,
            match reach {
                Reach::TcpPort(dport) => rules.port_list(Proto::Tcp, dport),
                Reach::AnyTcp => rules.lists_with_ports(Proto::Tcp),
                Reach::AnyUdp => rules.lists_with_ports(Proto::Udp),
                Reach::Any => {
                    rules.lists_with_ports(Proto::Tcp) | rules.lists_with_ports(Proto::Udp)
                }
            },
        ),
    };
    if needed == 0 {
        return Reason::PassUnprotectedPort;
    }
    let enforced = needed & rules.enforcing();
    let monitored = needed & rules.monitoring();
    if enforced | monitored == 0 {
        return Reason::PassInactive;
    }
    let missing = (enforced | monitored) & !rules.covering(&src);
    if missing == 0 {
        return if src.is_v4() {
            Reason::PassAllowedV4
        } else {
            Reason::PassAllowedV6
        };
    }
    let drop = match parsed {
        Parsed::Opaque { .. } => Reason::DropFragmentEvasion,
        Parsed::Datagram { .. } if src.is_v4() => Reason::DropUdpV4,
        Parsed::Datagram { .. } => Reason::DropUdpV6,
        _ if src.is_v4() => Reason::DropSynV4,
        _ => Reason::DropSynV6,
    };
    if missing & enforced == 0 {
        return drop.as_would_drop();
    }
    // Checked last, so that during an emergency the counters still tell covered sources from
    // the ones let in only by the emergency.
    if rules.emergency() {
        return Reason::PassEmergency;
    }
    drop
}

/// The list a verdict is counted against (its number), for the lists that decided it: for a
/// drop the first enforcing list that does not cover the source, for a would-drop the first
/// monitoring one, otherwise the first list the frame could reach.
#[inline(always)]
pub fn deciding_list(
    reason: Reason,
    needed: ListMask,
    enforcing: ListMask,
    monitoring: ListMask,
    covering: ListMask,
) -> Option<u32> {
    let lists = if reason.is_drop() || reason == Reason::PassEmergency {
        needed & enforcing & !covering
    } else if reason.is_would_drop() {
        needed & monitoring & !covering
    } else {
        needed
    };
    (lists != 0).then(|| lists.trailing_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two lists: 0 enforcing TCP 22, 1 monitoring UDP 53; `covered` lists cover every source.
    struct Two {
        covered: ListMask,
    }

    impl Lookups for Two {
        fn port_list(&self, proto: Proto, port: u16) -> ListMask {
            match (proto, port) {
                (Proto::Tcp, 22) => 1,
                (Proto::Udp, 53) => 2,
                _ => 0,
            }
        }
        fn lists_with_ports(&self, proto: Proto) -> ListMask {
            match proto {
                Proto::Tcp => 1,
                Proto::Udp => 2,
            }
        }
        fn enforcing(&self) -> ListMask {
            1
        }
        fn monitoring(&self) -> ListMask {
            2
        }
        fn covering(&self, _: &Source) -> ListMask {
            self.covered
        }
        fn emergency(&self) -> bool {
            false
        }
    }

    #[test]
    fn each_port_answers_to_its_list_and_its_mode() {
        let src = Source::V4([198, 18, 0, 1]);
        let syn = Parsed::Syn { src, dport: 22 };
        let datagram = Parsed::Datagram { src, dport: 53 };
        let any = Parsed::Opaque {
            src,
            reach: Reach::Any,
        };
        let only = |covered| Two { covered };
        assert_eq!(decide(syn, &only(0)), Reason::DropSynV4);
        assert_eq!(
            decide(syn, &only(2)),
            Reason::DropSynV4,
            "another list's entry"
        );
        assert_eq!(decide(syn, &only(1)), Reason::PassAllowedV4);
        assert_eq!(decide(datagram, &only(1)), Reason::WouldDropUdpV4);
        assert_eq!(decide(datagram, &only(2)), Reason::PassAllowedV4);
        // A fragment hiding its protocol needs every list it could reach.
        assert_eq!(decide(any, &only(1)), Reason::WouldDropFragmentEvasion);
        assert_eq!(decide(any, &only(2)), Reason::DropFragmentEvasion);
        assert_eq!(decide(any, &only(3)), Reason::PassAllowedV4);
        assert_eq!(
            deciding_list(Reason::DropFragmentEvasion, 3, 1, 2, 2),
            Some(0)
        );
        assert_eq!(
            deciding_list(Reason::WouldDropFragmentEvasion, 3, 1, 2, 1),
            Some(1)
        );
        assert_eq!(deciding_list(Reason::PassAllowedV4, 2, 1, 2, 3), Some(1));
        assert_eq!(deciding_list(Reason::PassUnprotectedPort, 0, 1, 2, 3), None);
    }
}
