//! The reference model of the differential test: the verdict a frame should get, read from
//! its raw bytes and written from the README's verdict table alone. It shares no code with the
//! XDP program, `verdict::decide` or the frame builders, so a disagreement points at one side
//! or the other, never at a helper both use.
//!
//! How the table is read where it leaves room:
//! - Tags: up to two VLAN tags (802.1Q or 802.1ad, any order); a third tag is a non-IP frame.
//! - "Shorter than its headers, or a malformed IP header": IPv4 needs its 20-byte header,
//!   version 4, IHL >= 5 and a total length from the header length up to what the frame holds;
//!   IPv6 needs its 40-byte header, version 6 and its payload length in the frame. Nothing after
//!   the IP packet (padding, trailers) is part of any header.
//! - IPv4: a protocol other than TCP and UDP is "other protocols" whatever its fragment fields;
//!   then, for TCP and UDP alike, a non-zero fragment offset is a non-first fragment; MF with
//!   offset 0 is a first fragment.
//! - IPv6: hop-by-hop, routing, destination options, fragment and AH headers are followed
//!   (lengths per RFC 8200 and RFC 4302); a 7th extension header makes the chain "longer than
//!   6" whether or not its bytes are there. A fragment header with a non-zero offset makes a
//!   non-first fragment, whatever follows it. Any fragment header with offset 0 and M set makes
//!   the packet a first fragment: the bytes after it are only the start of what reassembly
//!   yields, whatever later headers in the chain say. A chain cut short by the packet's end is
//!   opaque in a first fragment and malformed otherwise. An opaque chain (cut short, or longer
//!   than 6) could carry TCP or UDP: it could reach any protected port of either. Next headers
//!   other than TCP and UDP are "other protocols".
//! - TCP: the first 14 bytes show the flags; SYN without ACK opens a connection. A first
//!   fragment with fewer is the tiny fragment of the table (with its port when it holds 4
//!   bytes, else any protected TCP port); any other packet with fewer is shorter than its
//!   headers.
//! - UDP: every datagram is judged (it has no opener). An unfragmented packet needs the whole
//!   8-byte UDP header, else it is shorter than its headers; its length and checksum fields are
//!   not read. A first fragment showing the 4 bytes of the ports is a datagram to its port; one
//!   showing fewer is opaque and could reach any protected UDP port.
//! - Lists: each port of a protocol belongs to at most one list. What a frame could reach is
//!   the list of its port, or for an opaque frame every list with a port of the protocols it
//!   could carry. It passes if none (unprotected), if all of those are off (inactive), or if
//!   every one not off covers the source (allowed). Otherwise it is what enforcement drops; if
//!   only lists in monitor mode miss the source it is passed as the `would_drop_*` reason
//!   (whatever the emergency), else an emergency disable passes it as `pass_emergency`.
//! - Reasons, when several rows apply: what the frame is (not IP, malformed, other protocol,
//!   not a SYN, a non-first fragment, an unprotected port) comes first, then the lists being
//!   off, then a covered source, then monitor mode, then an emergency disable.
//! - Time: an entry may have an end (a timed entry). It covers a source only before its end:
//!   at its end, to the nanosecond, and after it, it no longer does. A timed entry's network
//!   covers what it contains, like any entry, for its own list only: a list covers a source at
//!   instant `now` if any of its entries that has not ended contains it, whatever other lists
//!   hold around or inside that entry. Only the covering changes with time: what a frame is,
//!   which lists it reaches and their modes do not.
//! - Hits: a frame passed as allowed counts a hit for the most specific network, among the
//!   entries of every list (whichever lists the port belongs to, and whatever their mode), that
//!   contains its source; lists holding the same network share its count. An entry that has
//!   ended is still written in its list until the daemon takes it out (which the model never
//!   does), so it still takes the hits of frames another list lets in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use allowlist_common::verdict::Reason;
use anyhow::{Context, Result, bail};
use ipnet::IpNet;

pub use allowlist_config::rules::Mode;

/// Everything the verdict depends on besides the frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// No two protect the same port of a protocol (the config refuses that).
    pub lists: Vec<ModelList>,
    /// An emergency disable is in force.
    pub emergency: bool,
}

/// One list: its mode, the ports it protects and the networks it lets in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelList {
    pub mode: Mode,
    pub tcp_ports: BTreeSet<u16>,
    pub udp_ports: BTreeSet<u16>,
    /// No entry of a list covers another of the same list (the config refuses or merges
    /// those); entries of different lists may be equal or nest.
    pub entries: Vec<IpNet>,
    /// The number the kernel gave the list. A frame that could reach several lists (a
    /// fragment hiding its port) counts its hit for the lowest-numbered one that covers it.
    pub number: u8,
    /// The timed ones among `entries`, each with its end: nanoseconds on the clock [`expected`]
    /// is given its `now` on (the differential test's is the boot clock; a replay line's ends
    /// count from the frame's instant).
    pub ends: BTreeMap<IpNet, i64>,
}

impl ModelList {
    /// Whether an entry of the list that has not ended at `now` contains `src`.
    fn covers_at(&self, src: IpAddr, now: i64) -> bool {
        self.entries
            .iter()
            .any(|net| covers(net, src) && self.ends.get(net).is_none_or(|end| now < *end))
    }
}

impl Setup {
    /// Every list's entries, in list order.
    pub fn entries(&self) -> impl Iterator<Item = &IpNet> {
        self.lists.iter().flat_map(|list| &list.entries)
    }

    /// Every end of a timed entry, each once, in order.
    pub fn ends(&self) -> BTreeSet<i64> {
        self.lists
            .iter()
            .flat_map(|list| list.ends.values().copied())
            .collect()
    }

    /// The setup with every end moved by `by` ns (to count them from another instant).
    pub fn shifted(&self, by: i64) -> Setup {
        let mut setup = self.clone();
        for list in &mut setup.lists {
            for end in list.ends.values_mut() {
                *end = end.saturating_add(by);
            }
        }
        setup
    }
}

/// What the model expects the program to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub drop: bool,
    pub reason: Reason,
    /// The entry a frame passed as allowed counts a hit for, and its list (an index into
    /// `Setup::lists`): of the lists the frame could reach that cover its source, the one of
    /// the lowest number, and its most specific entry holding the source.
    pub entry: Option<(IpNet, usize)>,
}

/// Which protected ports a frame that hides its transport header could reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hidden {
    TcpPort(u16),
    AnyTcp,
    AnyUdp,
    Any,
}

/// What a frame is, as far as the table cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    NotIp,
    Malformed,
    OtherProtocol,
    NotSyn,
    LaterFragment,
    Syn {
        src: IpAddr,
        port: u16,
    },
    Datagram {
        src: IpAddr,
        port: u16,
    },
    /// A first fragment or IPv6 chain that hides the flags or the port.
    Hidden {
        src: IpAddr,
        reach: Hidden,
    },
}

/// The expected verdict at instant `now` (on the clock of the setup's ends), or `None` for a
/// frame shorter than an Ethernet header (the kernel refuses to run a program on it).
pub fn expected(frame: &[u8], setup: &Setup, now: i64) -> Option<Expected> {
    if frame.len() < 14 {
        return None;
    }
    let pass = |reason| Expected {
        drop: false,
        reason,
        entry: None,
    };
    let kind = classify(frame);
    let src = match kind {
        Kind::NotIp => return Some(pass(Reason::PassNotIp)),
        Kind::Malformed => return Some(pass(Reason::PassTruncated)),
        Kind::OtherProtocol => return Some(pass(Reason::PassOtherProtocol)),
        Kind::NotSyn => return Some(pass(Reason::PassNotSyn)),
        Kind::LaterFragment => return Some(pass(Reason::PassNonFirstFragment)),
        Kind::Syn { src, .. } | Kind::Datagram { src, .. } | Kind::Hidden { src, .. } => src,
    };
    let reached: Vec<&ModelList> = setup.lists.iter().filter(|l| reaches(l, kind)).collect();
    if reached.is_empty() {
        return Some(pass(Reason::PassUnprotectedPort));
    }
    let on: Vec<&ModelList> = reached
        .into_iter()
        .filter(|l| l.mode != Mode::Off)
        .collect();
    if on.is_empty() {
        return Some(pass(Reason::PassInactive));
    }
    let missing: Vec<&ModelList> = on.into_iter().filter(|l| !l.covers_at(src, now)).collect();
    let v4 = src.is_ipv4();
    if missing.is_empty() {
        return Some(Expected {
            entry: hit_entry(setup, kind, src, now),
            ..pass(if v4 {
                Reason::PassAllowedV4
            } else {
                Reason::PassAllowedV6
            })
        });
    }
    let (dropped, would) = match (kind, v4) {
        (Kind::Hidden { .. }, _) => (
            Reason::DropFragmentEvasion,
            Reason::WouldDropFragmentEvasion,
        ),
        (Kind::Datagram { .. }, true) => (Reason::DropUdpV4, Reason::WouldDropUdpV4),
        (Kind::Datagram { .. }, false) => (Reason::DropUdpV6, Reason::WouldDropUdpV6),
        (_, true) => (Reason::DropSynV4, Reason::WouldDropSynV4),
        (_, false) => (Reason::DropSynV6, Reason::WouldDropSynV6),
    };
    if missing.iter().all(|l| l.mode == Mode::Monitor) {
        return Some(pass(would));
    }
    if setup.emergency {
        return Some(pass(Reason::PassEmergency));
    }
    Some(Expected {
        drop: true,
        reason: dropped,
        entry: None,
    })
}

/// Whether a frame of `kind` could reach a port `list` protects.
fn reaches(list: &ModelList, kind: Kind) -> bool {
    match kind {
        Kind::Syn { port, .. }
        | Kind::Hidden {
            reach: Hidden::TcpPort(port),
            ..
        } => list.tcp_ports.contains(&port),
        Kind::Datagram { port, .. } => list.udp_ports.contains(&port),
        Kind::Hidden { reach, .. } => {
            let tcp = !list.tcp_ports.is_empty();
            let udp = !list.udp_ports.is_empty();
            match reach {
                Hidden::AnyTcp => tcp,
                Hidden::AnyUdp => udp,
                _ => tcp || udp,
            }
        }
        _ => false,
    }
}

/// The longest entry of any list containing `src`, ended or not.
fn hit_entry(setup: &Setup, kind: Kind, src: IpAddr, now: i64) -> Option<(IpNet, usize)> {
    let (index, list) = setup
        .lists
        .iter()
        .enumerate()
        .filter(|(_, l)| reaches(l, kind) && l.covers_at(src, now))
        .min_by_key(|(index, l)| (l.number, *index))?;
    // The config merges nested entries of a list, but the most specific would take it.
    let entry = list
        .entries
        .iter()
        .filter(|net| covers(net, src))
        .max_by_key(|net| net.prefix_len())?;
    Some((*entry, index))
}

/// Prefix containment by plain integer masks (not `ipnet`'s, so that nothing is shared with
/// the daemon's own checks); IPv4 sources only by IPv4 entries.
fn covers(net: &IpNet, src: IpAddr) -> bool {
    match (net, src) {
        (IpNet::V4(net), IpAddr::V4(src)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            u32::from(src) & mask == u32::from(net.network())
        }
        (IpNet::V6(net), IpAddr::V6(src)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            u128::from(src) & mask == u128::from(net.network())
        }
        _ => false,
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn classify(frame: &[u8]) -> Kind {
    let mut ethertype = be16(frame, 12);
    let mut at = 14;
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        if frame.len() < at + 4 {
            return Kind::Malformed;
        }
        ethertype = be16(frame, at + 2);
        at += 4;
    }
    match ethertype {
        0x0800 => ipv4(&frame[at..]),
        0x86dd => ipv6(&frame[at..]),
        _ => Kind::NotIp,
    }
}

/// `rest`: the frame from the IPv4 header on.
fn ipv4(rest: &[u8]) -> Kind {
    if rest.len() < 20 {
        return Kind::Malformed;
    }
    let header_len = usize::from(rest[0] & 0x0f) * 4;
    let total_len = usize::from(be16(rest, 2));
    if rest[0] >> 4 != 4 || header_len < 20 || total_len < header_len || total_len > rest.len() {
        return Kind::Malformed;
    }
    let packet = &rest[..total_len];
    let protocol = packet[9];
    if protocol != 6 && protocol != 17 {
        return Kind::OtherProtocol;
    }
    let fragment = be16(packet, 6);
    if fragment & 0x1fff != 0 {
        return Kind::LaterFragment;
    }
    let src = IpAddr::V4(Ipv4Addr::new(
        packet[12], packet[13], packet[14], packet[15],
    ));
    let more = fragment & 0x2000 != 0;
    if protocol == 6 {
        tcp(&packet[header_len..], more, src)
    } else {
        udp(&packet[header_len..], more, src)
    }
}

/// `rest`: the frame from the IPv6 header on.
fn ipv6(rest: &[u8]) -> Kind {
    if rest.len() < 40 {
        return Kind::Malformed;
    }
    let end = 40 + usize::from(be16(rest, 4));
    if rest[0] >> 4 != 6 || end > rest.len() {
        return Kind::Malformed;
    }
    let packet = &rest[..end];
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&packet[8..24]);
    let addr = Ipv6Addr::from(addr);
    let src = match addr.segments() {
        [0, 0, 0, 0, 0, 0xffff, ..] => IpAddr::V4(Ipv4Addr::new(
            addr.octets()[12],
            addr.octets()[13],
            addr.octets()[14],
            addr.octets()[15],
        )),
        _ => IpAddr::V6(addr),
    };
    let hidden = Kind::Hidden {
        src,
        reach: Hidden::Any,
    };
    let mut next = packet[6];
    let mut at = 40;
    let mut headers = 0;
    let mut first_fragment = false;
    loop {
        let (read, len): (usize, fn(u8) -> usize) = match next {
            6 => return tcp(packet.get(at..).unwrap_or(&[]), first_fragment, src),
            17 => return udp(packet.get(at..).unwrap_or(&[]), first_fragment, src),
            // Hop-by-hop, routing, destination options: 8-byte units after the first 8.
            0 | 43 | 60 => (2, |l| (usize::from(l) + 1) * 8),
            // AH: 4-byte units, less 2.
            51 => (2, |l| (usize::from(l) + 2) * 4),
            44 => (8, |_| 8),
            _ => return Kind::OtherProtocol,
        };
        if headers == 6 {
            return hidden;
        }
        headers += 1;
        if at + read > end {
            return if first_fragment {
                hidden
            } else {
                Kind::Malformed
            };
        }
        if next == 44 {
            if be16(packet, at + 2) >> 3 != 0 {
                return Kind::LaterFragment;
            }
            let more = packet[at + 3] & 1 != 0;
            // Any fragment header with offset 0 and M set makes a first fragment.
            first_fragment |= more;
        }
        let header_len = len(packet[at + 1]);
        next = packet[at];
        at += header_len;
    }
}

/// `segment`: the TCP bytes in the packet.
fn tcp(segment: &[u8], first_fragment: bool, src: IpAddr) -> Kind {
    if segment.len() >= 14 {
        let flags = segment[13];
        return if flags & 0x02 != 0 && flags & 0x10 == 0 {
            Kind::Syn {
                src,
                port: be16(segment, 2),
            }
        } else {
            Kind::NotSyn
        };
    }
    if !first_fragment {
        return Kind::Malformed;
    }
    let reach = if segment.len() >= 4 {
        Hidden::TcpPort(be16(segment, 2))
    } else {
        Hidden::AnyTcp
    };
    Kind::Hidden { src, reach }
}

/// `segment`: the UDP bytes in the packet.
fn udp(segment: &[u8], first_fragment: bool, src: IpAddr) -> Kind {
    let shown = if first_fragment { 4 } else { 8 };
    if segment.len() >= shown {
        return Kind::Datagram {
            src,
            port: be16(segment, 2),
        };
    }
    if !first_fragment {
        return Kind::Malformed;
    }
    Kind::Hidden {
        src,
        reach: Hidden::AnyUdp,
    }
}

fn mode_named(name: &str) -> Result<Mode> {
    Ok(match name {
        "enforce" => Mode::Enforce,
        "monitor" => Mode::Monitor,
        "off" => Mode::Off,
        _ => bail!("mode `{name}` (enforce, monitor, off)"),
    })
}

fn joined<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One line, `emergency=… list=MODE tcp=… udp=… entries=… list=…`, that [`Setup::from_str`]
/// reads back: what a replay command carries. `tcp`, `udp` and `entries` belong to the `list`
/// before them; a timed entry is written `NETWORK@END` (its end in ns).
impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "emergency={}", self.emergency)?;
        for list in &self.lists {
            let entries = list.entries.iter().map(|net| match list.ends.get(net) {
                Some(end) => format!("{net}@{end}"),
                None => net.to_string(),
            });
            write!(
                f,
                " list={} tcp={} udp={} entries={}",
                list.mode.name(),
                joined(&list.tcp_ports),
                joined(&list.udp_ports),
                joined(entries)
            )?;
        }
        Ok(())
    }
}

/// Also reads the single-list line of before lists (`active=… emergency=… ports=… entries=…`):
/// `active` starts a list (enforce or off) and `ports` are its TCP ports.
impl std::str::FromStr for Setup {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Setup> {
        let mut setup = Setup::default();
        for field in text.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .with_context(|| format!("`{field}`: expected key=value"))?;
            let items = value.split(',').filter(|item| !item.is_empty());
            let ports = |what: &str| -> Result<BTreeSet<u16>> {
                items
                    .clone()
                    .map(|p| p.parse().with_context(|| format!("{what} port `{p}`")))
                    .collect()
            };
            if key == "emergency" {
                setup.emergency = value.parse().context("emergency")?;
                continue;
            }
            if key == "list" || key == "active" {
                let mode = match key {
                    "list" => mode_named(value)?,
                    _ if value.parse().context("active")? => Mode::Enforce,
                    _ => Mode::Off,
                };
                setup.lists.push(ModelList {
                    mode,
                    ..ModelList::default()
                });
                continue;
            }
            let Some(list) = setup.lists.last_mut() else {
                bail!("`{key}` before any `list=`");
            };
            match key {
                "tcp" | "ports" => list.tcp_ports = ports("TCP")?,
                "udp" => list.udp_ports = ports("UDP")?,
                "entries" => {
                    list.entries.clear();
                    list.ends.clear();
                    for item in items {
                        let (net, end) = match item.split_once('@') {
                            Some((net, end)) => (net, Some(end)),
                            None => (item, None),
                        };
                        let net: IpNet = net.parse().with_context(|| format!("entry `{item}`"))?;
                        if let Some(end) = end {
                            let end = end.parse().with_context(|| format!("end of `{item}`"))?;
                            list.ends.insert(net, end);
                        }
                        list.entries.push(net);
                    }
                }
                _ => bail!("unknown key `{key}` (emergency, list, tcp, udp, entries)"),
            }
        }
        Ok(setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        "emergency=false list=enforce tcp=22 udp= entries=198.18.1.0/24,2001:db8::/48 \
         list=monitor tcp=443 udp=53,51820 entries=198.18.0.0/16,198.18.1.7/32"
            .parse()
            .unwrap()
    }

    /// Ethernet, IPv4 (IHL 5) from `src`, protocol `protocol`, fragment field `fragment`,
    /// carrying `segment`.
    fn ipv4(src: [u8; 4], protocol: u8, fragment: u16, segment: &[u8]) -> Vec<u8> {
        let total = (20 + segment.len()) as u16;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        frame.extend_from_slice(&total.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&fragment.to_be_bytes());
        frame.extend_from_slice(&[64, protocol, 0, 0]);
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&[198, 18, 0, 1]);
        frame.extend_from_slice(segment);
        frame
    }

    /// TCP with `flags` to `port`.
    fn tcp4(src: [u8; 4], port: u16, flags: u8) -> Vec<u8> {
        let mut seg = vec![0x9c, 0x40];
        seg.extend_from_slice(&port.to_be_bytes());
        seg.extend_from_slice(&[0; 8]);
        seg.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        ipv4(src, 6, 0, &seg)
    }

    fn udp_segment(port: u16) -> Vec<u8> {
        let mut seg = vec![0x9c, 0x40];
        seg.extend_from_slice(&port.to_be_bytes());
        seg.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
        seg
    }

    fn reason(frame: &[u8], setup: &Setup) -> Reason {
        expected(frame, setup, 0).unwrap().reason
    }

    #[test]
    fn tcp_on_hand_made_frames() {
        let s = setup();
        assert_eq!(
            reason(&tcp4([198, 18, 1, 9], 22, 0x02), &s),
            Reason::PassAllowedV4
        );
        assert_eq!(
            reason(&tcp4([198, 18, 2, 9], 22, 0x02), &s),
            Reason::DropSynV4
        );
        assert_eq!(
            reason(&tcp4([198, 18, 2, 9], 22, 0x12), &s),
            Reason::PassNotSyn
        );
        assert_eq!(
            reason(&tcp4([198, 18, 2, 9], 23, 0x02), &s),
            Reason::PassUnprotectedPort
        );
        let mut short = tcp4([198, 18, 2, 9], 22, 0x02);
        short.truncate(50);
        assert_eq!(reason(&short, &s), Reason::PassTruncated);
        let emergency = Setup {
            emergency: true,
            ..s.clone()
        };
        assert_eq!(
            reason(&tcp4([198, 18, 2, 9], 22, 0x02), &emergency),
            Reason::PassEmergency
        );
        assert_eq!(
            reason(&ipv4([198, 18, 2, 9], 1, 0, &[8, 0, 0, 0]), &s),
            Reason::PassOtherProtocol
        );
        assert_eq!(expected(&[0; 13], &s, 0), None);
    }

    #[test]
    fn monitor_mode_passes_what_it_would_drop() {
        let s = setup();
        // Port 443 is the monitor list's: 10.0.0.1 is in no entry.
        assert_eq!(
            reason(&tcp4([10, 0, 0, 1], 443, 0x02), &s),
            Reason::WouldDropSynV4
        );
        let emergency = Setup {
            emergency: true,
            ..s.clone()
        };
        assert_eq!(
            reason(&tcp4([10, 0, 0, 1], 443, 0x02), &emergency),
            Reason::WouldDropSynV4,
            "monitor mode comes before the emergency"
        );
        // Covered by the monitor list's /16, not by the enforcing list's /24.
        let e = expected(&tcp4([198, 18, 9, 9], 443, 0x02), &s, 0).unwrap();
        assert_eq!(
            (e.reason, e.entry),
            (Reason::PassAllowedV4, Some((net("198.18.0.0/16"), 1)))
        );
        assert_eq!(
            reason(&tcp4([198, 18, 9, 9], 22, 0x02), &s),
            Reason::DropSynV4
        );
        let mut off = s.clone();
        off.lists[0].mode = Mode::Off;
        assert_eq!(
            reason(&tcp4([198, 18, 9, 9], 22, 0x02), &off),
            Reason::PassInactive
        );
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn hits_go_to_the_entry_of_the_list_that_let_it_in() {
        let s = setup();
        // 198.18.1.7 is in the enforcing list's /24, the monitor list's /16 and its /32:
        // the SSH port's list let it in through its /24, the monitor list through its /32.
        let e = expected(&tcp4([198, 18, 1, 7], 22, 0x02), &s, 0).unwrap();
        assert_eq!(
            (e.reason, e.entry),
            (Reason::PassAllowedV4, Some((net("198.18.1.0/24"), 0)))
        );
        let e = expected(&tcp4([198, 18, 1, 7], 443, 0x02), &s, 0).unwrap();
        assert_eq!(e.entry, Some((net("198.18.1.7/32"), 1)));
        let e = expected(&tcp4([198, 18, 1, 8], 22, 0x02), &s, 0).unwrap();
        assert_eq!(e.entry, Some((net("198.18.1.0/24"), 0)));
        assert_eq!(
            expected(&tcp4([198, 18, 2, 8], 22, 0x02), &s, 0)
                .unwrap()
                .entry,
            None
        );
    }

    #[test]
    fn udp_datagrams_and_fragments() {
        let s = setup();
        let mut enforced = s.clone();
        enforced.lists[1].mode = Mode::Enforce;
        let datagram = ipv4([10, 0, 0, 1], 17, 0, &udp_segment(53));
        assert_eq!(reason(&datagram, &s), Reason::WouldDropUdpV4);
        assert_eq!(reason(&datagram, &enforced), Reason::DropUdpV4);
        assert!(expected(&datagram, &enforced, 0).unwrap().drop);
        let covered = ipv4([198, 18, 5, 5], 17, 0, &udp_segment(53));
        assert_eq!(reason(&covered, &enforced), Reason::PassAllowedV4);
        // UDP 22 is not protected: only TCP 22 is.
        let other = ipv4([10, 0, 0, 1], 17, 0, &udp_segment(22));
        assert_eq!(reason(&other, &enforced), Reason::PassUnprotectedPort);
        // Unfragmented, the header must be whole; a first fragment needs only the ports.
        let short = ipv4([10, 0, 0, 1], 17, 0, &udp_segment(53)[..6]);
        assert_eq!(reason(&short, &enforced), Reason::PassTruncated);
        let first = ipv4([10, 0, 0, 1], 17, 0x2000, &udp_segment(53)[..4]);
        assert_eq!(reason(&first, &enforced), Reason::DropUdpV4);
        let tiny = ipv4([10, 0, 0, 1], 17, 0x2000, &udp_segment(22)[..3]);
        assert_eq!(reason(&tiny, &enforced), Reason::DropFragmentEvasion);
        assert_eq!(reason(&tiny, &s), Reason::WouldDropFragmentEvasion);
        let later = ipv4([10, 0, 0, 1], 17, 0x2001, &udp_segment(53));
        assert_eq!(reason(&later, &enforced), Reason::PassNonFirstFragment);
        // Covered by the UDP list but not the TCP one: a fragment hiding its port that might
        // be either (here: only UDP).
        let tiny_covered = ipv4([198, 18, 5, 5], 17, 0x2000, &[]);
        assert_eq!(reason(&tiny_covered, &enforced), Reason::PassAllowedV4);
        let tiny_tcp = ipv4([198, 18, 5, 5], 6, 0x2000, &[]);
        assert_eq!(reason(&tiny_tcp, &enforced), Reason::DropFragmentEvasion);
    }

    #[test]
    fn an_opaque_ipv6_chain_reaches_tcp_and_udp_lists() {
        // Only a UDP list: an IPv6 first fragment whose chain is cut off could still reach it.
        let s: Setup = "emergency=false list=enforce udp=53 entries=2001:db8::/32"
            .parse()
            .unwrap();
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 9, 44, 64]);
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x02;
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&[0; 16]);
        // A fragment header (offset 0, M), then one byte of a hop-by-hop header: the packet
        // ends before its length.
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 17]);
        assert_eq!(reason(&frame, &s), Reason::DropFragmentEvasion);
    }

    #[test]
    fn a_timed_entry_covers_only_before_its_end() {
        // The enforcing list (TCP 22) holds 198.18.1.0/24 until 1000, 198.18.3.3/32 until
        // 2000 (inside the monitor list's lasting /16) and 198.19.0.0/16, which ended before
        // 0; the monitor list (TCP 443) holds 198.19.4.0/24 until 500, inside that /16.
        let s: Setup = "emergency=false list=enforce tcp=22 udp= \
                        entries=198.18.1.0/24@1000,198.18.3.3/32@2000,198.19.0.0/16@-5 \
                        list=monitor tcp=443 udp= entries=198.18.0.0/16,198.19.4.0/24@500"
            .parse()
            .unwrap();
        let syn = |addr: [u8; 4], port| tcp4(addr, port, 0x02);
        let at = |frame: &[u8], now| expected(frame, &s, now).unwrap();
        assert_eq!(
            at(&syn([198, 18, 1, 9], 22), 999).reason,
            Reason::PassAllowedV4
        );
        assert_eq!(
            at(&syn([198, 18, 1, 9], 22), 1000).reason,
            Reason::DropSynV4
        );
        assert_eq!(
            at(&syn([198, 18, 1, 9], 22), 1001).reason,
            Reason::DropSynV4
        );
        assert_eq!(
            at(&syn([198, 18, 3, 3], 22), 1999).reason,
            Reason::PassAllowedV4
        );
        assert_eq!(
            at(&syn([198, 18, 3, 3], 22), 2000).reason,
            Reason::DropSynV4
        );
        // The monitor list's lasting /16 is not ended by the timed /32 inside it, and takes
        // the hit.
        let e = at(&syn([198, 18, 3, 3], 443), 5000);
        assert_eq!(
            (e.reason, e.entry),
            (Reason::PassAllowedV4, Some((net("198.18.0.0/16"), 1)))
        );
        // An entry that ended before the clock's zero never covers; a timed entry inside
        // another list's timed one ends at its own end only.
        assert_eq!(at(&syn([198, 19, 4, 1], 22), 0).reason, Reason::DropSynV4);
        assert_eq!(
            at(&syn([198, 19, 4, 1], 443), 499).reason,
            Reason::PassAllowedV4
        );
        assert_eq!(
            at(&syn([198, 19, 4, 1], 443), 500).reason,
            Reason::WouldDropSynV4
        );
        assert_eq!(s.ends(), BTreeSet::from([-5, 500, 1000, 2000]));
        let shifted = s.shifted(-1000);
        assert_eq!(
            expected(&syn([198, 18, 1, 9], 22), &shifted, -1)
                .unwrap()
                .reason,
            Reason::PassAllowedV4
        );
        assert_eq!(
            expected(&syn([198, 18, 1, 9], 22), &shifted, 0)
                .unwrap()
                .reason,
            Reason::DropSynV4
        );
        assert_eq!(s.to_string().parse::<Setup>().unwrap(), s);
    }

    #[test]
    fn setup_round_trips_through_its_line() {
        let s = setup();
        assert_eq!(s.to_string().parse::<Setup>().unwrap(), s);
        let empty: Setup = "emergency=true".parse().unwrap();
        assert_eq!(empty.to_string().parse::<Setup>().unwrap(), empty);
        assert!("colour=blue".parse::<Setup>().is_err());
        assert!("tcp=22".parse::<Setup>().is_err(), "a port needs a list");
        let old: Setup = "active=true emergency=false ports=22 entries=198.18.1.0/24"
            .parse()
            .unwrap();
        assert_eq!(old.lists.len(), 1);
        assert_eq!(old.lists[0].mode, Mode::Enforce);
        assert_eq!(old.lists[0].tcp_ports, BTreeSet::from([22]));
    }
}
